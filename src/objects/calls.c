/* Reliable calls of one object (docs/durable-state.md, exactly-once): the window of call ids it answered,
 * each with its answer, so that a repeated id gets the recorded answer instead of a second run.
 *
 * Happy path: a call with an id runs; when it replies, and it changed the state (a CV_METHOD_WRITES
 * method, or cv_object_mark_dirty), the id and its answer are recorded here with version 0. The next
 * capture of the state (state.c) hands every uncaptured record to the host with that state, so the id
 * is committed in the same CmdSaveState item as the change it made: both or neither survive a crash.
 * A later call with the same id finds the record before its method would run and is answered with it
 * (held like a read-only answer while the original's commit is pending). A new activation (another
 * owner after a move or a failover, a restart) loads the committed window from the catalog with the
 * state. Memory-only types keep the window in memory for the activation's life.
 *
 * Failure modes: an id trimmed from the window (count or age) leaves its 64-bit hash behind (at most
 * 4x the window): a repeat then answers CV_ECALLEXPIRED instead of running again. Past that, an old id
 * is indistinguishable from a new one and runs. A record that cannot be allocated is not kept (the
 * call stays at-least-once). */
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "cverse/error.h"
#include "objects/object.h"
#include "util/log.h"

void obj__calls_free(struct cv_object *o)
{
    if (!o->x) return;
    for (struct obj__callrec *r = o->x->calls, *next; r; r = next) {
        next = r->next;
        free(r);
    }
    o->x->calls = NULL;
    o->x->calls_tail = &o->x->calls;
    o->x->n_calls = 0;
    free(o->x->expired);
    o->x->expired = NULL;
    o->x->n_expired = o->x->cap_expired = 0;
}

static void calls__expire(struct cv_object *o, uint64_t hash)
{
    size_t cap = (size_t)o->x->call_window * 4;
    if (!cap) return;
    if (o->x->n_expired == cap) { /* the oldest goes first */
        memmove(o->x->expired, o->x->expired + 1, (cap - 1) * sizeof *o->x->expired);
        o->x->n_expired--;
    }
    if (o->x->n_expired == o->x->cap_expired) {
        size_t n = o->x->cap_expired ? o->x->cap_expired * 2 : 16;
        if (n > cap) n = cap;
        uint64_t *e = realloc(o->x->expired, n * sizeof *e);
        if (!e) return;
        o->x->expired = e;
        o->x->cap_expired = n;
    }
    o->x->expired[o->x->n_expired++] = hash;
}

/* Trims the window as the catalog does at apply time (count, then age against now). */
static void calls__trim(struct cv_object *o, uint64_t now)
{
    while (o->x->calls && (o->x->n_calls > o->x->call_window ||
                        (o->x->call_window_ms && o->x->calls->at_ms + o->x->call_window_ms < now))) {
        struct obj__callrec *r = o->x->calls;
        o->x->calls = r->next;
        if (!o->x->calls) o->x->calls_tail = &o->x->calls;
        o->x->n_calls--;
        calls__expire(o, cv_fnv1a64(r->id, strlen(r->id)));
        free(r);
    }
}

static struct obj__callrec *calls__add(struct cv_object *o, const char *id, int status, const char *error,
                                       const uint8_t *resp, size_t len, uint64_t at_ms, uint64_t version)
{
    size_t idlen = strlen(id), elen = error ? strlen(error) : 0;
    struct obj__callrec *r = malloc(sizeof *r + len + idlen + 1 + elen + 1);
    if (!r) return NULL;
    *r = (struct obj__callrec){.status = status, .len = len, .at_ms = at_ms, .version = version};
    if (len) memcpy(r->data, resp, len);
    r->id = (char *)r->data + len;
    memcpy(r->id, id, idlen + 1);
    r->error = r->id + idlen + 1;
    memcpy(r->error, error ? error : "", elen + 1);
    *o->x->calls_tail = r;
    o->x->calls_tail = &r->next;
    o->x->n_calls++;
    return r;
}

static void calls__loaded(void *data, const struct cv_call_record *c)
{
    calls__add(data, c->id, c->status, c->error, c->resp, c->len, c->at_ms, OBJ_CALL_COMMITTED);
}

static void calls__loaded_expired(void *data, uint64_t hash)
{
    calls__expire(data, hash);
}

int obj__calls_load(struct cv_object *o)
{
    struct cv_runtime *rt = o->rt;
    if (o->persist == CV_PERSIST_NONE || !rt->hooks.load_calls || !o->x->call_window) return 0; /* has o->x */
    return rt->hooks.load_calls(rt->hooks.data, o->id, calls__loaded, calls__loaded_expired, o);
}

static const struct cv_method calls__replay = {.name = "(recorded answer)"}; /* read-only */

bool obj__calls_repeat(struct cv_object *o, struct obj__mail *m)
{
    if (!m->call_id || !o->x) return false; /* no side structure: no record, nothing expired */
    const struct obj__callrec *r = o->x->calls;
    while (r && strcmp(r->id, m->call_id) != 0) r = r->next;
    if (r) {
        const char *err = r->status ? r->error : NULL;
        CV_DEBUG("objects: %s: call id %s answered again from its record", o->id, m->call_id);
        if (!obj__state_reply(o, &calls__replay, r->status, err, r->data, r->len, m->cb, m->data))
            m->cb(m->data, r->status, err, r->data, r->len);
        return true;
    }
    uint64_t h = cv_fnv1a64(m->call_id, strlen(m->call_id));
    for (size_t i = 0; i < o->x->n_expired; i++)
        if (o->x->expired[i] == h) {
            m->cb(m->data, CV_ECALLEXPIRED, "call id is older than the object's call-id window: not run again",
                  (const uint8_t *)"", 0);
            return true;
        }
    return false;
}

void obj__calls_record(struct cv_object *o, const struct obj__mail *m, int status, const char *error,
                       const uint8_t *resp, size_t len)
{
    bool mem = o->persist == CV_PERSIST_NONE;
    if (!m->call_id) return;
    if (!obj__side(o)) { /* its first call id: the window is allocated now */
        CV_WARN("objects: %s: no memory to record call id %s", o->id, m->call_id);
        return;
    }
    if (!o->x->call_window || o->x->broken) return;
    if (!mem && !(m->method->flags & CV_METHOD_WRITES) && !o->x->dirty) return; /* read-only: runs again */
    uint64_t now = cv_now_ms();
    if (!calls__add(o, m->call_id, status, error, resp, len, now, mem ? OBJ_CALL_COMMITTED : 0))
        CV_WARN("objects: %s: no memory to record call id %s", o->id, m->call_id);
    else if (!mem)
        o->x->dirty = true; /* the record itself must be committed */
    calls__trim(o, now);
}

size_t obj__calls_capture(struct cv_object *o, uint64_t version, struct cv_call_record **out)
{
    size_t n = 0, i = 0;
    *out = NULL;
    for (struct obj__callrec *r = o->x->calls; r; r = r->next) n += r->version == 0;
    if (!n || !(*out = calloc(n, sizeof **out))) return 0;
    for (struct obj__callrec *r = o->x->calls; r; r = r->next) {
        if (r->version) continue;
        r->version = version;
        (*out)[i++] = (struct cv_call_record){r->id, r->status, r->error, r->data, r->len, r->at_ms};
    }
    return n;
}
