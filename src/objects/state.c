/* One object's durable state: its protobuf message, loading it at activation, and saving it as the type's
 * policy says (docs/durable-state.md), through the host's load_state / save_state hooks.
 *
 * Happy path (on_write). A method flagged CV_METHOD_WRITES (or one that called cv_object_mark_dirty)
 * replies: its answer is held on the object, and the state is captured (packed, version + 1) and handed
 * to the host, which commits it through the catalog's raft log. When the host reports the commit, every
 * held answer that saw that version or an older one is delivered, in call order. Meanwhile the mailbox
 * goes on: calls that run while a save is in flight are held too and covered by ONE next capture (a hot
 * object commits once per round trip, whatever its call rate); a read-only answer is held only when it
 * may have seen uncommitted state (so nobody reads what a crash could still lose). Periodic: a change
 * arms a one-shot timer (a mailbox tick, so the capture never sees a half-done method) and answers are
 * not held. At deactivation (shard moved, drain, close) a dirty state is saved once more and the object
 * stays in the table until that save completed: the old owner releases a shard only after its states
 * are committed.
 *
 * Failure modes: a state larger than the runtime's limit fails the answers with CV_ESTATESIZE; a save
 * the host reports failed fails them with its code (re-routed when it certainly did not commit, a
 * timeout when unknown). Either way the object is broken: no more saves, and it is deactivated, so
 * the next activation starts again from the last committed state instead of a memory the log lacks.
 * A stored state that does not decode fails the activation (CV_EPROTO); it is never silently reset. */
#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"
#include "objects/object.h"
#include "util/log.h"

static bool state__message(const struct cv_object *o)
{
    return o->type->state_message != NULL;
}

enum cv_persist cv_runtime_type_persist(const struct cv_runtime *rt, const struct cv_object_type *t,
                                        uint64_t *interval_ms)
{
    enum cv_persist p = t->persist;
    uint64_t iv = t->save_interval_ms;
    for (size_t i = 0; i < rt->n_policies; i++) {
        const struct cv_type_policy *tp = &rt->policies[i];
        if (strcmp(tp->type, t->name) != 0) continue;
        if (tp->persist >= 0) p = (enum cv_persist)tp->persist;
        if (tp->save_interval_ms) iv = tp->save_interval_ms;
    }
    if (!t->state_message || !rt->hooks.save_state) p = CV_PERSIST_NONE; /* nothing to save, or nowhere */
    if (interval_ms) *interval_ms = iv ? iv : CV_SAVE_INTERVAL_DEFAULT_MS;
    return p;
}

uint64_t cv_runtime_type_idle(const struct cv_runtime *rt, const struct cv_object_type *t)
{
    int64_t idle = -1;
    for (size_t i = 0; i < rt->n_policies; i++)
        if (strcmp(rt->policies[i].type, t->name) == 0 && rt->policies[i].idle_timeout_ms >= 0)
            idle = rt->policies[i].idle_timeout_ms;
    if (idle >= 0) return (uint64_t)idle;
    return cv_runtime_type_persist(rt, t, NULL) != CV_PERSIST_NONE ? CV_IDLE_DEFAULT_MS : 0;
}

/* The type's reliable-call window: config override, else the runtime's default. */
static void state__call_window(const struct cv_runtime *rt, const struct cv_object_type *t, uint32_t *count,
                               uint64_t *ms)
{
    *count = rt->call_window;
    *ms = rt->call_window_ms;
    for (size_t i = 0; i < rt->n_policies; i++) {
        const struct cv_type_policy *tp = &rt->policies[i];
        if (strcmp(tp->type, t->name) != 0) continue;
        if (tp->call_window) *count = tp->call_window > 0 ? (uint32_t)tp->call_window : 0;
        if (tp->call_window_ms) *ms = tp->call_window_ms;
    }
}

int obj__state_alloc(struct cv_object *o)
{
    const struct cv_object_type *t = o->type;
    o->persist = cv_runtime_type_persist(o->rt, t, &o->save_interval);
    o->held_tail = &o->held;
    o->calls_tail = &o->calls;
    state__call_window(o->rt, t, &o->call_window, &o->call_window_ms);
    o->idle_ms = cv_runtime_type_idle(o->rt, t);
    o->last_used = uv_now(o->rt->loop);
    if (t->state_message) {
        o->state_mem = malloc(t->state_message->sizeof_message);
        if (o->state_mem) protobuf_c_message_init(t->state_message, o->state_mem);
    } else if (t->state_size) {
        o->state_mem = calloc(1, t->state_size);
    }
    return o->state_mem || (!t->state_message && !t->state_size) ? 0 : CV_ENOMEM;
}

void obj__state_free(struct cv_object *o)
{
    if (o->state_mem && state__message(o)) protobuf_c_message_free_unpacked(o->state_mem, NULL);
    else free(o->state_mem);
    o->state_mem = NULL;
}

void obj__state_release_all(struct cv_object *o)
{
    obj__state_free(o);
    obj__calls_free(o);
    obj__reminders_free(o);
}

int obj__state_load(struct cv_object *o)
{
    struct cv_runtime *rt = o->rt;
    uint8_t *buf = NULL;
    size_t len = 0;
    uint64_t version = 0;
    if (o->persist == CV_PERSIST_NONE || !rt->hooks.load_state) return 0;
    int rv = rt->hooks.load_state(rt->hooks.data, o->type->name, o->id, &buf, &len, &version);
    if (rv == CV_ENOTFOUND) { /* never saved: the empty state, of a new object */
        o->fresh = true;
        rv = obj__calls_load(o);
        return rv ? rv : obj__reminders_load(o);
    }
    if (rv != 0) return rv;
    ProtobufCMessage *m = protobuf_c_message_unpack(o->type->state_message, NULL, len, buf ? buf : (uint8_t *)"");
    free(buf);
    if (!m) {
        CV_ERROR("objects: the stored state of %s (%s, version %llu) is not a valid %s", o->id, o->type->name,
                 (unsigned long long)version, o->type->state_message->name);
        return CV_EPROTO;
    }
    obj__state_free(o);
    o->state_mem = m;
    o->version = o->saved_version = version;
    rv = obj__calls_load(o);
    return rv ? rv : obj__reminders_load(o);
}

void cv_object_mark_dirty(cv_object *o)
{
    if (o && o->persist != CV_PERSIST_NONE) o->dirty = true;
}

/* ---- held answers ---- */

static void state__deliver(struct obj__held *h, int status, const char *error)
{
    if (status == 0) h->cb(h->data, h->status, h->error, h->resp, h->len);
    else h->cb(h->data, status, error, (const uint8_t *)"", 0);
    free(h->error);
    free(h);
}

/* Delivers the held answers, in order, up to the first one not covered by a commit of `upto` (0:
 * none). With status != 0 every held answer fails with it instead. Callbacks may call into the runtime. */
static void state__release(struct cv_object *o, uint64_t upto, int status, const char *error)
{
    while (o->held && (status != 0 || (o->held->version && o->held->version <= upto))) {
        struct obj__held *h = o->held;
        o->held = h->next;
        if (!o->held) o->held_tail = &o->held;
        o->n_held--;
        state__deliver(h, status, error);
    }
}

bool obj__state_reply(struct cv_object *o, const struct cv_method *method, int status, const char *error,
                      const uint8_t *resp, size_t len, cv_runtime_call_cb cb, void *data)
{
    if (o->persist == CV_PERSIST_NONE) return false;
    if (o->broken && o->persist == CV_PERSIST_ON_WRITE) {
        /* A call that ran after a save failed (an async one in flight then) ran on a memory that is
         * being dropped: its effect will not exist, so it is answered as never run. */
        cb(data, CV_EUNAVAIL, "object state could not be saved; call again", (const uint8_t *)"", 0);
        return true;
    }
    if (method->flags & CV_METHOD_WRITES) o->dirty = true;
    /* Held: a change to commit, an earlier answer still held (order), or state that may be uncommitted
     * (a change of a timer, a save in flight) which this answer could have read. */
    if (o->persist != CV_PERSIST_ON_WRITE || (!o->dirty && !o->held && o->saved_version >= o->version))
        return false;
    struct obj__held *h = malloc(sizeof *h + len);
    char *err = status && error ? strdup(error) : NULL;
    if (!h || (status && error && !err)) { /* cannot hold it: deliver it now rather than lose it */
        free(h);
        return false;
    }
    *h = (struct obj__held){.version = o->dirty ? 0 : o->version, .cb = cb, .data = data, .status = status,
                            .error = err, .len = len};
    memcpy(h->resp, resp, len);
    *o->held_tail = h;
    o->held_tail = &h->next;
    o->n_held++;
    return true;
}

/* ---- saves ---- */

static void state__save(struct cv_object *o);

/* The object cannot keep a memory the log may lack: fail what waits, deactivate it. */
static void state__break(struct cv_object *o, int status, const char *error)
{
    o->broken = true;
    o->dirty = o->resave = false;
    state__release(o, 0, status, error);
    o->rt->ops.deactivate(o, CV_EUNAVAIL);
}

static void state__saved(void *data, int status, const char *error)
{
    struct cv_object *o = data;
    o->saving = false;
    if (status == 0) {
        o->saved_version = o->saving_version;
        state__release(o, o->saved_version, 0, NULL);
    } else {
        CV_WARN("objects: saving %s (%s) version %llu failed: %s", o->id, o->type->name,
                (unsigned long long)o->saving_version, error ? error : cv_strerror(status));
        state__break(o, status, error ? error : cv_strerror(status));
    }
    if (o->resave && !o->broken) state__save(o);
    enum obj__state s = obj__state(o);
    if (s == OBJ_DEACTIVATING) obj__ready(o); /* it waited for this save to leave */
    obj__unref(o);
}

/* Captures the state now (no method is half-way: the caller ran between entries) and hands it to the
 * host; a capture while a save or a call is in flight waits for it (resave). */
static void state__save(struct cv_object *o)
{
    struct cv_runtime *rt = o->rt;
    if (o->saving || o->in_flight) {
        o->resave = true;
        return;
    }
    o->resave = o->dirty = false;
    size_t len = protobuf_c_message_get_packed_size(o->state_mem);
    if (len > rt->state_max) {
        CV_WARN("objects: state of %s (%s) is %zu bytes, over the limit of %zu: the change is dropped", o->id,
                o->type->name, len, rt->state_max);
        state__break(o, CV_ESTATESIZE, "object state exceeds the size limit (object_state_max_bytes)");
        return;
    }
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        state__break(o, CV_ENOMEM, cv_strerror(CV_ENOMEM));
        return;
    }
    protobuf_c_message_pack(o->state_mem, buf);
    o->saving_version = ++o->version;
    for (struct obj__held *h = o->held; h; h = h->next)
        if (!h->version) h->version = o->version;
    o->saving = true;
    o->refs++; /* released in state__saved */
    struct cv_call_record *recs;
    struct cv_save_extra calls = {.window = o->call_window, .window_ms = o->call_window_ms, .now_ms = cv_now_ms()};
    calls.n = obj__calls_capture(o, o->version, &recs);
    calls.calls = recs;
    struct cv_reminder *rems;
    obj__reminders_capture(o, &calls, &rems);
    int rv = rt->hooks.save_state(rt->hooks.data, o->type->name, o->id, o->version, buf, len, &calls,
                                  state__saved, o);
    free(recs);
    free(rems);
    if (rv != 0) {
        o->saving = false;
        o->refs--;
        state__break(o, rv, cv_strerror(rv));
    }
}

static void state__tick(cv_object *o, void *data)
{
    (void)data;
    o->save_armed = false;
    if (o->dirty) state__save(o);
}

void obj__state_after(struct cv_object *o)
{
    if (o->persist == CV_PERSIST_NONE || o->broken) return;
    if (o->resave || (o->dirty && o->persist == CV_PERSIST_ON_WRITE)) {
        state__save(o);
        return;
    }
    if (!o->dirty || o->save_armed || obj__state(o) != OBJ_ACTIVE) return;
    if (cv_object_timer_start(o, o->save_interval, 0, state__tick, NULL, NULL) == 0) o->save_armed = true;
}

bool obj__state_settle(struct cv_object *o)
{
    if (o->saving) return true;
    /* A final save: not for a deleted object (its state is gone), nor once the node is fenced (its
     * saves would be refused or late; a crash would lose the same). */
    bool final = o->persist != CV_PERSIST_NONE && !o->broken && !o->destroy && o->drain_status != CV_EUNAVAIL;
    if (final && (o->dirty || o->resave)) {
        state__save(o);
        if (o->saving) return true;
    }
    state__release(o, o->saved_version, 0, NULL);
    if (o->held) state__release(o, 0, CV_EUNAVAIL, "object deactivated before its state was saved");
    return false;
}

int cv_runtime_state_info(struct cv_runtime *rt, const char *id, struct cv_object_state_info *out)
{
    struct cv_object *o = NULL;
    if (!id) return CV_EINVAL;
    HASH_FIND(hh, rt->table, id, strlen(id), o);
    if (!o || (obj__state(o) != OBJ_ACTIVE && obj__state(o) != OBJ_ACTIVATING)) return CV_ENOTFOUND;
    *out = (struct cv_object_state_info){.type = o->type,
                                         .state = state__message(o) ? o->state_mem : NULL,
                                         .persist = o->persist,
                                         .version = o->version,
                                         .saved_version = o->saved_version,
                                         .dirty = o->dirty,
                                         .saving = o->saving,
                                         .held = o->n_held};
    return 0;
}
