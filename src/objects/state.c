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

struct obj__side *obj__side(struct cv_object *o)
{
    if (o->x) return o->x;
    struct obj__side *x = calloc(1, sizeof *x);
    if (!x) return NULL;
    (void)cv_runtime_type_persist(o->rt, o->type, &x->save_interval);
    x->held_tail = &x->held;
    x->calls_tail = &x->calls;
    state__call_window(o->rt, o->type, &x->call_window, &x->call_window_ms);
    x->idle_ms = cv_runtime_type_idle(o->rt, o->type);
    x->last_used = uv_now(o->rt->loop);
    o->x = x;
    return x;
}

size_t obj__state_inline(const struct cv_object_type *t)
{
    return t->state_message ? t->state_message->sizeof_message : t->state_size;
}

/* A protobuf-c message holds nothing wider than a pointer, an int64 or a double; a state_size struct
 * may hold anything. */
#define STATE__MSG_ALIGN                                                                                     \
    (_Alignof(uint64_t) > _Alignof(double) ? (_Alignof(uint64_t) > _Alignof(void *) ? _Alignof(uint64_t)   \
                                                                                    : _Alignof(void *))     \
                                           : (_Alignof(double) > _Alignof(void *) ? _Alignof(double)       \
                                                                                  : _Alignof(void *)))

size_t obj__state_offset(const struct cv_object_type *t, size_t idlen)
{
    const size_t align = t->state_message ? STATE__MSG_ALIGN : _Alignof(max_align_t);
    return (sizeof(struct cv_object) + idlen + 1 + align - 1) / align * align;
}

/* The state's memory inside the object's allocation (until a stored state replaces it); NULL: none. */
static void *state__inline_mem(const struct cv_object *o)
{
    return obj__state_inline(o->type) ? (char *)o + obj__state_offset(o->type, strlen(o->id)) : NULL;
}

int obj__state_alloc(struct cv_object *o)
{
    const struct cv_object_type *t = o->type;
    o->persist = (uint8_t)cv_runtime_type_persist(o->rt, t, NULL);
    /* A persisted type keeps its durable bookkeeping there, and an idle timeout counts from last_used. */
    if ((o->persist != CV_PERSIST_NONE || cv_runtime_type_idle(o->rt, t)) && !obj__side(o)) return CV_ENOMEM;
    if (!obj__state_inline(t)) return 0;
    /* A state_size state is zeroed already (obj__new's calloc). */
    if (t->state_message) protobuf_c_message_init(t->state_message, state__inline_mem(o));
    return 0;
}

void *obj__state_mem(const struct cv_object *o)
{
    return o->x && o->x->state ? o->x->state : state__inline_mem(o);
}

static void *state__malloc(void *inline_mem, size_t n)
{
    (void)inline_mem;
    return malloc(n);
}

static void state__free_apart(void *inline_mem, void *p)
{
    if (p != inline_mem) free(p);
}

void obj__state_free(struct cv_object *o)
{
    void *inl = state__inline_mem(o), *mem = obj__state_mem(o);
    if (mem && state__message(o)) { /* a state_size state is always inline: nothing to free */
        /* Its fields were allocated apart (malloc, as protobuf-c's default allocator does); the message
         * itself may be inside the object, which is then left initialised (no field to free twice). */
        ProtobufCAllocator a = {state__malloc, state__free_apart, inl};
        protobuf_c_message_free_unpacked(mem, &a);
        if (mem == inl) protobuf_c_message_init(o->type->state_message, inl);
    }
    if (o->x) o->x->state = NULL;
}

void obj__state_release_all(struct cv_object *o)
{
    obj__state_free(o);
    obj__calls_free(o);
    obj__reminders_free(o);
    free(o->x); /* no timer is left: each held a reference */
    o->x = NULL;
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
    o->x->state = m;
    o->x->version = o->x->saved_version = version;
    rv = obj__calls_load(o);
    return rv ? rv : obj__reminders_load(o);
}

void cv_object_mark_dirty(cv_object *o)
{
    if (o && o->persist != CV_PERSIST_NONE) o->x->dirty = true; /* persisted: o->x exists */
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
    while (o->x->held && (status != 0 || (o->x->held->version && o->x->held->version <= upto))) {
        struct obj__held *h = o->x->held;
        o->x->held = h->next;
        if (!o->x->held) o->x->held_tail = &o->x->held;
        o->x->n_held--;
        state__deliver(h, status, error);
    }
}

bool obj__state_reply(struct cv_object *o, const struct cv_method *method, int status, const char *error,
                      const uint8_t *resp, size_t len, cv_runtime_call_cb cb, void *data)
{
    if (o->persist == CV_PERSIST_NONE) return false;
    if (o->x->broken && o->persist == CV_PERSIST_ON_WRITE) {
        /* A call that ran after a save failed (an async one in flight then) ran on a memory that is
         * being dropped: its effect will not exist, so it is answered as never run. */
        cb(data, CV_EUNAVAIL, "object state could not be saved; call again", (const uint8_t *)"", 0);
        return true;
    }
    if (method->flags & CV_METHOD_WRITES) o->x->dirty = true;
    /* Held: a change to commit, an earlier answer still held (order), or state that may be uncommitted
     * (a change of a timer, a save in flight) which this answer could have read. */
    struct obj__side *x = o->x;
    if (o->persist != CV_PERSIST_ON_WRITE || (!x->dirty && !x->held && x->saved_version >= x->version))
        return false;
    struct obj__held *h = malloc(sizeof *h + len);
    char *err = status && error ? strdup(error) : NULL;
    if (!h || (status && error && !err)) { /* cannot hold it: deliver it now rather than lose it */
        free(h);
        return false;
    }
    *h = (struct obj__held){.version = x->dirty ? 0 : x->version, .cb = cb, .data = data, .status = status,
                            .error = err, .len = len};
    memcpy(h->resp, resp, len);
    *o->x->held_tail = h;
    o->x->held_tail = &h->next;
    o->x->n_held++;
    return true;
}

/* ---- saves ---- */

static void state__save(struct cv_object *o);

/* The object cannot keep a memory the log may lack: fail what waits, deactivate it. */
static void state__break(struct cv_object *o, int status, const char *error)
{
    o->x->broken = true;
    o->x->dirty = o->x->resave = false;
    state__release(o, 0, status, error);
    o->rt->ops.deactivate(o, CV_EUNAVAIL);
}

static void state__saved(void *data, int status, const char *error)
{
    struct cv_object *o = data;
    o->x->saving = false;
    if (status == 0) {
        o->x->saved_version = o->x->saving_version;
        state__release(o, o->x->saved_version, 0, NULL);
    } else {
        CV_WARN("objects: saving %s (%s) version %llu failed: %s", o->id, o->type->name,
                (unsigned long long)o->x->saving_version, error ? error : cv_strerror(status));
        state__break(o, status, error ? error : cv_strerror(status));
    }
    if (o->x->resave && !o->x->broken) state__save(o);
    enum obj__state s = obj__state(o);
    if (s == OBJ_DEACTIVATING) obj__ready(o); /* it waited for this save to leave */
    obj__unref(o);
}

/* Captures the state now (no method is half-way: the caller ran between entries) and hands it to the
 * host; a capture while a save or a call is in flight waits for it (resave). */
static void state__save(struct cv_object *o)
{
    struct cv_runtime *rt = o->rt;
    if (o->x->saving || o->in_flight) {
        o->x->resave = true;
        return;
    }
    o->x->resave = o->x->dirty = false;
    void *mem = obj__state_mem(o);
    size_t len = protobuf_c_message_get_packed_size(mem);
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
    protobuf_c_message_pack(mem, buf);
    o->x->saving_version = ++o->x->version;
    for (struct obj__held *h = o->x->held; h; h = h->next)
        if (!h->version) h->version = o->x->version;
    o->x->saving = true;
    o->refs++; /* released in state__saved */
    struct cv_call_record *recs;
    struct cv_save_extra calls = {
        .window = o->x->call_window, .window_ms = o->x->call_window_ms, .now_ms = cv_now_ms()};
    calls.n = obj__calls_capture(o, o->x->version, &recs);
    calls.calls = recs;
    struct cv_reminder *rems;
    obj__reminders_capture(o, &calls, &rems);
    int rv = rt->hooks.save_state(rt->hooks.data, o->type->name, o->id, o->x->version, buf, len, &calls,
                                  state__saved, o);
    free(recs);
    free(rems);
    if (rv != 0) {
        o->x->saving = false;
        o->refs--;
        state__break(o, rv, cv_strerror(rv));
    }
}

static void state__tick(cv_object *o, void *data)
{
    (void)data;
    o->x->save_armed = false;
    if (o->x->dirty) state__save(o);
}

void obj__state_after(struct cv_object *o)
{
    if (o->persist == CV_PERSIST_NONE || o->x->broken) return;
    if (o->x->resave || (o->x->dirty && o->persist == CV_PERSIST_ON_WRITE)) {
        state__save(o);
        return;
    }
    if (!o->x->dirty || o->x->save_armed || obj__state(o) != OBJ_ACTIVE) return;
    if (cv_object_timer_start(o, o->x->save_interval, 0, state__tick, NULL, NULL) == 0)
        o->x->save_armed = true;
}

bool obj__state_settle(struct cv_object *o)
{
    if (!o->x) return false; /* memory-only, nothing held */
    if (o->x->saving) return true;
    /* A final save: not for a deleted object (its state is gone), nor once the node is fenced (its
     * saves would be refused or late; a crash would lose the same). */
    bool final =
        o->persist != CV_PERSIST_NONE && !o->x->broken && !o->destroy && o->drain_status != CV_EUNAVAIL;
    if (final && (o->x->dirty || o->x->resave)) {
        state__save(o);
        if (o->x->saving) return true;
    }
    state__release(o, o->x->saved_version, 0, NULL);
    if (o->x->held) state__release(o, 0, CV_EUNAVAIL, "object deactivated before its state was saved");
    return false;
}

int cv_runtime_state_info(struct cv_runtime *rt, const char *id, struct cv_object_state_info *out)
{
    struct cv_object *o = NULL;
    if (!id) return CV_EINVAL;
    HASH_FIND(hh, rt->table, id, strlen(id), o);
    if (!o || (obj__state(o) != OBJ_ACTIVE && obj__state(o) != OBJ_ACTIVATING)) return CV_ENOTFOUND;
    const struct obj__side none = {0}, *x = o->x ? o->x : &none;
    *out = (struct cv_object_state_info){.type = o->type,
                                         .state = state__message(o) ? obj__state_mem(o) : NULL,
                                         .persist = (enum cv_persist)o->persist,
                                         .version = x->version,
                                         .saved_version = x->saved_version,
                                         .dirty = x->dirty,
                                         .saving = x->saving,
                                         .held = x->n_held};
    return 0;
}
