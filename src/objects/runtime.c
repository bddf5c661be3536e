/* Object runtime: activates objects on demand and runs their mailboxes one entry at a time.
 *
 * Happy path: cv_runtime_call validates the target (type, method, placement, ownership), decodes the
 * request, creates the object in ACTIVATING if it is not in the table, appends the call to its mailbox
 * and puts the object on the ready list. A uv_idle "pump" pops ready objects round-robin: an ACTIVATING
 * object runs its created/activated hooks and becomes ACTIVE; an ACTIVE object without a call in flight
 * pops one entry and runs it (a method call, or a timer tick). A call stays "in flight" until the
 * handler replies; only then is the object put back on the ready list, which is what serialises async
 * handlers. Callers are never called back from inside cv_runtime_call (everything runs from the pump or
 * from a reply).
 *
 * Failure modes: synchronous rejection (CV_ENOTFOUND, CV_EPROTO, CV_EBUSY when the bounded mailbox is
 * full, CV_EREDIRECT for a shard we do not own or an object being deactivated); a failing activation
 * hook fails the queued calls with its code; deactivation fails queued calls with CV_EREDIRECT (close:
 * CV_ECLOSED) and waits for the call in flight before the deactivated hook runs. Objects are reference
 * counted (table, live timers, outgoing calls) so that memory outlives every callback that names it. */
#include "objects/runtime.h"

#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "cverse/error.h"
#include "util/log.h"

#define PUMP_BUDGET 4096 /* entries run per loop iteration before I/O gets its turn again */
#define TABLE_MIN 64

struct cv_registry {
    const struct cv_object_type **types;
    size_t n, cap;
    bool frozen; /* set by cv_runtime_start */
};

struct obj_timer {
    uv_timer_t handle;
    struct cv_object *o;
    struct obj_timer *next; /* o->timers, while live */
    uint64_t id;
    cv_timer_cb cb;
    void *data;
    bool repeat, live, pending;
    int refs; /* the uv handle until closed + a queued tick */
};

/* One mailbox entry: a call (method != NULL) or a timer tick. */
struct mail {
    struct mail *next;
    const struct cv_method *method;
    ProtobufCMessage *req;
    cv_runtime_call_cb cb;
    void *data;
    struct obj_timer *timer;
};

struct cv_reply {
    struct cv_object *o;
    struct mail *m;
};

struct cv_object {
    struct cv_runtime *rt;
    const struct cv_object_type *type;
    char *id;
    uint32_t shard, hash;
    enum cv_object_state state;
    struct cv_object *hnext, *rnext; /* table chain, ready list */
    bool on_ready, want_deactivate, destroy;
    int drain_status; /* what queued calls fail with when deactivating */
    struct mail *head, *tail;
    size_t queued, ticks; /* calls (bounded by the capacity) and timer ticks (<= live timers) */
    cv_reply *in_flight;
    struct obj_timer *timers;
    uint64_t next_timer_id;
    int refs;
    void *state_mem;
};

struct cv_runtime {
    uv_loop_t *loop;
    uv_idle_t pump;
    char *node_id;
    uint32_t shards;
    size_t capacity;
    bool (*owns)(void *data, uint32_t shard);
    void *owns_data;
    struct cv_registry reg;
    struct cv_object **buckets;
    size_t nbuckets, count; /* objects in the table */
    size_t live;            /* objects allocated (table + GONE ones still referenced) */
    struct cv_object *ready_head, *ready_tail;
    bool started, closing, finishing;
    cv_runtime_close_cb close_cb;
    void *close_data;
};

static void obj_check(const struct cv_object *o);

/* ---- registry ---- */

static const struct cv_object_type *reg_find(const struct cv_registry *reg, const char *name)
{
    for (size_t i = 0; i < reg->n; i++)
        if (strcmp(reg->types[i]->name, name) == 0) return reg->types[i];
    return NULL;
}

static const struct cv_method *method_find(const struct cv_object_type *t, const char *name)
{
    for (size_t i = 0; i < t->n_methods; i++)
        if (strcmp(t->methods[i].name, name) == 0) return &t->methods[i];
    return NULL;
}

static int type_validate(const struct cv_object_type *t)
{
    if (!t || !t->name || !t->name[0] || (t->n_methods && !t->methods)) return CV_EINVAL;
    for (size_t i = 0; i < t->n_methods; i++) {
        const struct cv_method *m = &t->methods[i];
        if (!m->name || !m->name[0] || !m->request || !m->response || !m->handler) return CV_EINVAL;
        for (size_t j = 0; j < i; j++)
            if (strcmp(t->methods[j].name, m->name) == 0) return CV_EINVAL;
    }
    return 0;
}

int cv_register_type(cv_registry *reg, const struct cv_object_type *t)
{
    if (!reg || reg->frozen) return CV_EINVAL;
    int rv = type_validate(t);
    if (rv != 0) return rv;
    if (reg_find(reg, t->name)) return CV_EEXIST;
    if (reg->n == reg->cap) {
        size_t cap = reg->cap ? reg->cap * 2 : 8;
        const struct cv_object_type **types = realloc(reg->types, cap * sizeof *types);
        if (!types) return CV_ENOMEM;
        reg->types = types;
        reg->cap = cap;
    }
    reg->types[reg->n++] = t;
    return 0;
}

/* ---- table of active objects (chained hash by FNV-1a of the id) ---- */

static struct cv_object *tab_find(const struct cv_runtime *rt, const char *id, uint32_t hash)
{
    for (struct cv_object *o = rt->buckets[hash & (rt->nbuckets - 1)]; o; o = o->hnext)
        if (o->hash == hash && strcmp(o->id, id) == 0) return o;
    return NULL;
}

/* Doubles the bucket array; on ENOMEM the chains just get longer (never fails the caller). */
static void tab_grow(struct cv_runtime *rt)
{
    size_t n = rt->nbuckets * 2;
    struct cv_object **b = calloc(n, sizeof *b);
    if (!b) return;
    for (size_t i = 0; i < rt->nbuckets; i++) {
        struct cv_object *o = rt->buckets[i], *next;
        for (; o; o = next) {
            next = o->hnext;
            o->hnext = b[o->hash & (n - 1)];
            b[o->hash & (n - 1)] = o;
        }
    }
    free(rt->buckets);
    rt->buckets = b;
    rt->nbuckets = n;
}

static void tab_insert(struct cv_runtime *rt, struct cv_object *o)
{
    if (rt->count >= rt->nbuckets) tab_grow(rt);
    struct cv_object **slot = &rt->buckets[o->hash & (rt->nbuckets - 1)];
    o->hnext = *slot;
    *slot = o;
    rt->count++;
}

static void tab_remove(struct cv_runtime *rt, struct cv_object *o)
{
    struct cv_object **p = &rt->buckets[o->hash & (rt->nbuckets - 1)];
    while (*p != o) p = &(*p)->hnext;
    *p = o->hnext;
    o->hnext = NULL;
    rt->count--;
}

/* ---- runtime lifecycle ---- */

static void pump_cb(uv_idle_t *h);

int cv_runtime_init(uv_loop_t *loop, const struct cv_runtime_opts *opts, struct cv_runtime **out)
{
    if (!loop || !opts || !out || !opts->node_id || !opts->node_id[0] || opts->shards == 0)
        return CV_EINVAL;
    struct cv_runtime *rt = calloc(1, sizeof *rt);
    if (!rt) return CV_ENOMEM;
    rt->node_id = strdup(opts->node_id);
    if (!rt->node_id) goto err_after_rt;
    rt->nbuckets = TABLE_MIN;
    rt->buckets = calloc(rt->nbuckets, sizeof *rt->buckets);
    if (!rt->buckets) goto err_after_id;
    rt->loop = loop;
    rt->shards = opts->shards;
    rt->capacity = opts->mailbox_capacity ? opts->mailbox_capacity : CV_MAILBOX_DEFAULT;
    rt->owns = opts->owns;
    rt->owns_data = opts->owns_data;
    uv_idle_init(loop, &rt->pump);
    rt->pump.data = rt;
    *out = rt;
    return 0;

err_after_id:
    free(rt->node_id);
err_after_rt:
    free(rt);
    return CV_ENOMEM;
}

cv_registry *cv_runtime_registry(struct cv_runtime *rt)
{
    return &rt->reg;
}

void cv_runtime_start(struct cv_runtime *rt)
{
    rt->reg.frozen = true;
    rt->started = true;
}

static void pump_closed(uv_handle_t *h)
{
    struct cv_runtime *rt = h->data;
    if (rt->close_cb) rt->close_cb(rt, rt->close_data);
    free(rt->reg.types);
    free(rt->buckets);
    free(rt->node_id);
    free(rt);
}

/* Close completes once no object memory is left: every callback that could name an object ran. */
static void rt_maybe_finish(struct cv_runtime *rt)
{
    if (!rt->closing || rt->finishing || rt->live != 0) return;
    rt->finishing = true;
    uv_close((uv_handle_t *)&rt->pump, pump_closed);
}

/* ---- objects: state machine, references, ready list ---- */

static void obj_set_state(struct cv_object *o, enum cv_object_state to)
{
#ifdef CV_CHECKS
    static const bool allowed[4][4] = {
        [CV_OBJ_ACTIVATING] = {[CV_OBJ_ACTIVE] = true, [CV_OBJ_GONE] = true},
        [CV_OBJ_ACTIVE] = {[CV_OBJ_DEACTIVATING] = true},
        [CV_OBJ_DEACTIVATING] = {[CV_OBJ_GONE] = true},
    };
    if (!allowed[o->state][to]) {
        CV_ERROR("objects: illegal transition %s -> %s for %s", cv_object_state_name(o->state),
                 cv_object_state_name(to), o->id);
        abort();
    }
#endif
    o->state = to;
    obj_check(o);
}

static struct cv_object *obj_new(struct cv_runtime *rt, const struct cv_object_type *t, const char *id,
                                 uint32_t shard, uint32_t hash)
{
    struct cv_object *o = calloc(1, sizeof *o);
    if (!o) return NULL;
    o->id = strdup(id);
    if (!o->id) goto err_after_o;
    if (t->state_size) {
        o->state_mem = calloc(1, t->state_size);
        if (!o->state_mem) goto err_after_id;
    }
    o->rt = rt;
    o->type = t;
    o->shard = shard;
    o->hash = hash;
    o->state = CV_OBJ_ACTIVATING;
    o->refs = 1; /* the table's */
    tab_insert(rt, o);
    rt->live++;
    return o;

err_after_id:
    free(o->id);
err_after_o:
    free(o);
    return NULL;
}

static void obj_unref(struct cv_object *o)
{
    if (--o->refs > 0) return;
    struct cv_runtime *rt = o->rt;
    free(o->state_mem);
    free(o->id);
    free(o);
    rt->live--;
    rt_maybe_finish(rt);
}

static void ready_push(struct cv_object *o)
{
    struct cv_runtime *rt = o->rt;
    if (o->on_ready || o->state == CV_OBJ_GONE) return;
    o->on_ready = true;
    o->rnext = NULL;
    if (rt->ready_tail) rt->ready_tail->rnext = o;
    else rt->ready_head = o;
    rt->ready_tail = o;
    uv_idle_start(&rt->pump, pump_cb);
}

static struct cv_object *ready_pop(struct cv_runtime *rt)
{
    struct cv_object *o = rt->ready_head;
    if (!o) return NULL;
    rt->ready_head = o->rnext;
    if (!rt->ready_head) rt->ready_tail = NULL;
    o->on_ready = false;
    o->rnext = NULL;
    return o;
}

/* ---- mailbox ---- */

static void mail_push(struct cv_object *o, struct mail *m)
{
    m->next = NULL;
    if (o->tail) o->tail->next = m;
    else o->head = m;
    o->tail = m;
    if (m->method) o->queued++;
    else o->ticks++;
}

static struct mail *mail_pop(struct cv_object *o)
{
    struct mail *m = o->head;
    if (!m) return NULL;
    o->head = m->next;
    if (!o->head) o->tail = NULL;
    if (m->method) o->queued--;
    else o->ticks--;
    return m;
}

static void mail_free(struct mail *m)
{
    if (m->req) protobuf_c_message_free_unpacked(m->req, NULL);
    free(m);
}

static void timer_unref(struct obj_timer *t);

/* Fails every queued call with status and drops queued ticks. Entries are popped before their callback
 * runs, so a callback may call into the runtime (it gets CV_EREDIRECT/CV_ECLOSED for this object). */
static void obj_drain(struct cv_object *o, int status)
{
    struct mail *m;
    while ((m = mail_pop(o))) {
        if (m->method) {
            m->cb(m->data, status, cv_strerror(status), (const uint8_t *)"", 0);
        } else {
            m->timer->pending = false;
            timer_unref(m->timer);
        }
        mail_free(m);
    }
}

/* ---- timers ---- */

static void timer_unref(struct obj_timer *t)
{
    if (--t->refs > 0) return;
    struct cv_object *o = t->o;
    free(t);
    obj_unref(o);
}

static void timer_closed(uv_handle_t *h)
{
    timer_unref(h->data);
}

static void timer_kill(struct obj_timer *t)
{
    if (!t->live) return;
    t->live = false;
    struct obj_timer **p = &t->o->timers;
    while (*p != t) p = &(*p)->next;
    *p = t->next;
    uv_timer_stop(&t->handle);
    uv_close((uv_handle_t *)&t->handle, timer_closed);
}

static void timer_fired(uv_timer_t *h)
{
    struct obj_timer *t = h->data;
    struct cv_object *o = t->o;
    if (!t->live || o->state != CV_OBJ_ACTIVE || t->pending) return; /* coalesce slow ticks */
    struct mail *m = calloc(1, sizeof *m);
    if (!m) {
        CV_WARN("objects: %s: timer tick dropped (out of memory)", o->id);
        return;
    }
    m->timer = t;
    t->pending = true;
    t->refs++;
    mail_push(o, m);
    ready_push(o);
}

int cv_object_timer_start(cv_object *o, uint64_t timeout_ms, uint64_t repeat_ms, cv_timer_cb cb,
                          void *data, uint64_t *id)
{
    if (!o || !cb) return CV_EINVAL;
    if (o->state != CV_OBJ_ACTIVATING && o->state != CV_OBJ_ACTIVE) return CV_ECLOSED;
    if (o->want_deactivate) return CV_ECLOSED;
    struct obj_timer *t = calloc(1, sizeof *t);
    if (!t) return CV_ENOMEM;
    uv_timer_init(o->rt->loop, &t->handle);
    t->handle.data = t;
    t->o = o;
    t->id = ++o->next_timer_id;
    t->cb = cb;
    t->data = data;
    t->repeat = repeat_ms != 0;
    t->live = true;
    t->refs = 1;
    t->next = o->timers;
    o->timers = t;
    o->refs++;
    uv_timer_start(&t->handle, timer_fired, timeout_ms, repeat_ms);
    if (id) *id = t->id;
    return 0;
}

int cv_object_timer_stop(cv_object *o, uint64_t id)
{
    for (struct obj_timer *t = o->timers; t; t = t->next) {
        if (t->id == id) {
            timer_kill(t);
            return 0;
        }
    }
    return CV_ENOTFOUND;
}

static void obj_run_tick(struct cv_object *o, struct obj_timer *t)
{
    t->pending = false;
    if (t->live) {
        t->cb(o, t->data);
        if (!t->repeat) timer_kill(t);
    }
    timer_unref(t);
}

/* ---- running the mailbox ---- */

static void reply_finish(cv_reply *r, int status, const char *error, const uint8_t *resp, size_t len)
{
    struct cv_object *o = r->o;
    struct mail *m = r->m;
    o->in_flight = NULL; /* before the callback: it may call this object again */
    free(r);
    m->cb(m->data, status, error, resp, len);
    mail_free(m);
    if (o->head || o->state == CV_OBJ_DEACTIVATING) ready_push(o);
    obj_check(o);
}

int cv_reply_ok(cv_reply *r, const ProtobufCMessage *resp)
{
    if (!resp || resp->descriptor != r->m->method->response) {
        CV_WARN("objects: %s.%s replied with the wrong message type", r->o->type->name, r->m->method->name);
        reply_finish(r, CV_EINVAL, "handler replied with the wrong message type", (const uint8_t *)"", 0);
        return CV_EINVAL;
    }
    size_t len = protobuf_c_message_get_packed_size(resp);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        reply_finish(r, CV_ENOMEM, cv_strerror(CV_ENOMEM), (const uint8_t *)"", 0);
        return 0;
    }
    protobuf_c_message_pack(resp, buf);
    reply_finish(r, 0, NULL, buf, len);
    free(buf);
    return 0;
}

int cv_reply_error(cv_reply *r, int code, const char *msg)
{
    if (code >= 0) code = CV_EINVAL;
    reply_finish(r, code, msg ? msg : cv_strerror(code), (const uint8_t *)"", 0);
    return 0;
}

static void obj_run_next(struct cv_object *o)
{
    struct mail *m = mail_pop(o);
    if (!m) return;
    if (!m->method) {
        struct obj_timer *t = m->timer;
        free(m);
        obj_run_tick(o, t);
        if (o->head && o->state == CV_OBJ_ACTIVE) ready_push(o);
        return;
    }
    cv_reply *r = malloc(sizeof *r);
    if (!r) {
        m->cb(m->data, CV_ENOMEM, cv_strerror(CV_ENOMEM), (const uint8_t *)"", 0);
        mail_free(m);
        if (o->head) ready_push(o);
        return;
    }
    r->o = o;
    r->m = m;
    o->in_flight = r;
    m->method->handler(o, m->req, r); /* may reply now (reply_finish) or later */
}

/* ACTIVATING -> GONE when a hook failed or deactivation came first: no further hook runs. */
static void obj_abort_activation(struct cv_object *o, int status)
{
    obj_drain(o, status);
    while (o->timers) timer_kill(o->timers);
    obj_set_state(o, CV_OBJ_GONE);
    tab_remove(o->rt, o);
    obj_unref(o);
}

static void obj_start_deactivation(struct cv_object *o)
{
    while (o->timers) timer_kill(o->timers);
    obj_set_state(o, CV_OBJ_DEACTIVATING);
    ready_push(o);
}

static void obj_activate(struct cv_object *o)
{
    if (o->want_deactivate) {
        obj_abort_activation(o, o->drain_status);
        return;
    }
    int rv = o->type->created ? o->type->created(o) : 0;
    if (rv == 0 && o->type->activated) rv = o->type->activated(o);
    if (rv != 0) {
        if (rv > 0) rv = CV_EUNAVAIL;
        CV_WARN("objects: activation of %s (%s) failed: %s", o->id, o->type->name, cv_strerror(rv));
        obj_abort_activation(o, rv);
        return;
    }
    obj_set_state(o, CV_OBJ_ACTIVE);
    if (o->want_deactivate) obj_start_deactivation(o); /* asked for from inside a hook */
    else obj_run_next(o);
}

/* DEACTIVATING with nothing in flight: the last hooks, then out of the table. */
static void obj_finalize(struct cv_object *o)
{
    if (o->type->deactivated) o->type->deactivated(o);
    if (o->destroy && o->type->destroyed) o->type->destroyed(o);
    obj_set_state(o, CV_OBJ_GONE);
    tab_remove(o->rt, o);
    obj_unref(o);
}

static void obj_step(struct cv_object *o)
{
    switch (o->state) {
    case CV_OBJ_ACTIVATING: obj_activate(o); break;
    case CV_OBJ_ACTIVE:
        if (!o->in_flight) obj_run_next(o);
        break;
    case CV_OBJ_DEACTIVATING:
        obj_drain(o, o->drain_status);
        if (!o->in_flight) obj_finalize(o);
        break;
    case CV_OBJ_GONE: break;
    }
}

static void pump_cb(uv_idle_t *h)
{
    struct cv_runtime *rt = h->data;
    struct cv_object *o;
    for (int budget = PUMP_BUDGET; budget > 0 && (o = ready_pop(rt)); budget--) obj_step(o);
    if (!rt->ready_head && !rt->finishing) uv_idle_stop(&rt->pump);
}

static void obj_deactivate(struct cv_object *o, int status, bool destroy)
{
    if (destroy) o->destroy = true;
    if (o->want_deactivate || o->state == CV_OBJ_DEACTIVATING || o->state == CV_OBJ_GONE) return;
    o->drain_status = status;
    if (o->state == CV_OBJ_ACTIVATING) {
        o->want_deactivate = true; /* decided when the pump (or the running hook) gets to it */
        ready_push(o);
        return;
    }
    obj_start_deactivation(o);
}

void cv_runtime_close(struct cv_runtime *rt, cv_runtime_close_cb cb, void *data)
{
    rt->closing = true;
    rt->close_cb = cb;
    rt->close_data = data;
    for (size_t i = 0; i < rt->nbuckets; i++)
        for (struct cv_object *o = rt->buckets[i]; o; o = o->hnext) obj_deactivate(o, CV_ECLOSED, false);
    rt_maybe_finish(rt);
}

/* ---- calls ---- */

static int call_target(struct cv_runtime *rt, const char *id, uint32_t *shard)
{
    struct cv_placement p;
    int rv = cv_placement_parse(id, rt->shards, &p);
    if (rv != 0) return CV_EINVAL;
    if (p.kind == CV_PLACE_NODE &&
        (strlen(rt->node_id) != p.node_len || memcmp(rt->node_id, p.node, p.node_len) != 0))
        return CV_EREDIRECT;
    if (p.kind != CV_PLACE_NODE && rt->owns && !rt->owns(rt->owns_data, p.shard)) return CV_EREDIRECT;
    *shard = p.shard;
    return 0;
}

int cv_runtime_call(struct cv_runtime *rt, const char *type, const char *id, const char *method,
                    const uint8_t *req, size_t len, cv_runtime_call_cb cb, void *data)
{
    if (!rt->started) return CV_EUNAVAIL;
    if (rt->closing) return CV_ECLOSED;
    if (!type || !id || !method || !cb || (!req && len)) return CV_EINVAL;
    const struct cv_object_type *t = reg_find(&rt->reg, type);
    const struct cv_method *m = t ? method_find(t, method) : NULL;
    if (!m) return CV_ENOTFOUND;
    uint32_t shard, hash = cv_fnv1a32(id, strlen(id));
    int rv = call_target(rt, id, &shard);
    if (rv != 0) return rv;
    struct cv_object *o = tab_find(rt, id, hash);
    if (o && o->type != t) return CV_ECONFLICT;
    if (o && (o->want_deactivate || o->state == CV_OBJ_DEACTIVATING)) return CV_EREDIRECT;
    if (o && o->queued >= rt->capacity) return CV_EBUSY;

    struct mail *mail = calloc(1, sizeof *mail);
    if (!mail) return CV_ENOMEM;
    mail->req = protobuf_c_message_unpack(m->request, NULL, len, req ? req : (const uint8_t *)"");
    if (!mail->req) {
        free(mail);
        return CV_EPROTO;
    }
    if (!o && !(o = obj_new(rt, t, id, shard, hash))) {
        mail_free(mail);
        return CV_ENOMEM;
    }
    mail->method = m;
    mail->cb = cb;
    mail->data = data;
    mail_push(o, mail);
    if (!o->in_flight) ready_push(o);
    obj_check(o);
    return 0;
}

/* An object-to-object call: the packed path of cv_runtime_call, decoded again for the caller. */
struct ocall {
    struct cv_object *caller;
    cv_object_call_cb cb;
    void *data;
    const ProtobufCMessageDescriptor *response;
};

static void ocall_done(void *data, int status, const char *error, const uint8_t *resp, size_t len)
{
    struct ocall *c = data;
    ProtobufCMessage *msg = NULL;
    if (status == 0) {
        msg = protobuf_c_message_unpack(c->response, NULL, len, resp);
        if (!msg) status = CV_EPROTO;
    }
    if (status != 0 && !error) error = cv_strerror(status);
    c->cb(c->caller, c->data, status, status == 0 ? NULL : error, msg);
    if (msg) protobuf_c_message_free_unpacked(msg, NULL);
    obj_unref(c->caller);
    free(c);
}

int cv_object_call(cv_object *o, const char *type, const char *id, const char *method,
                   const ProtobufCMessage *req, cv_object_call_cb cb, void *data)
{
    if (!o || !type || !id || !method || !req || !cb) return CV_EINVAL;
    const struct cv_object_type *t = reg_find(&o->rt->reg, type);
    const struct cv_method *m = t ? method_find(t, method) : NULL;
    if (!m) return CV_ENOTFOUND;
    if (req->descriptor != m->request) return CV_EINVAL;
    size_t len = protobuf_c_message_get_packed_size(req);
    uint8_t *buf = malloc(len ? len : 1);
    struct ocall *c = malloc(sizeof *c);
    int rv = CV_ENOMEM;
    if (!buf || !c) goto err;
    protobuf_c_message_pack(req, buf);
    *c = (struct ocall){o, cb, data, m->response};
    rv = cv_runtime_call(o->rt, type, id, method, buf, len, ocall_done, c);
    if (rv != 0) goto err;
    o->refs++; /* released in ocall_done */
    free(buf);
    return 0;

err:
    free(c);
    free(buf);
    return rv;
}

/* ---- deactivation, listing ---- */

static int deactivate_id(struct cv_runtime *rt, const char *id, bool destroy)
{
    if (!id) return CV_EINVAL;
    struct cv_object *o = tab_find(rt, id, cv_fnv1a32(id, strlen(id)));
    if (!o) return CV_ENOTFOUND;
    obj_deactivate(o, CV_EREDIRECT, destroy);
    return 0;
}

int cv_runtime_deactivate(struct cv_runtime *rt, const char *id)
{
    return deactivate_id(rt, id, false);
}

int cv_runtime_destroy(struct cv_runtime *rt, const char *id)
{
    return deactivate_id(rt, id, true);
}

static bool obj_listed(const struct cv_object *o)
{
    return !o->want_deactivate && (o->state == CV_OBJ_ACTIVATING || o->state == CV_OBJ_ACTIVE);
}

int cv_runtime_deactivate_shard(struct cv_runtime *rt, uint32_t shard)
{
    int n = 0;
    for (size_t i = 0; i < rt->nbuckets; i++) {
        for (struct cv_object *o = rt->buckets[i]; o; o = o->hnext) {
            if (o->shard != shard || !obj_listed(o)) continue;
            obj_deactivate(o, CV_EREDIRECT, false);
            n++;
        }
    }
    return n;
}

size_t cv_runtime_list(struct cv_runtime *rt, void (*fn)(void *data, const struct cv_object_info *info),
                       void *data)
{
    size_t n = 0;
    for (size_t i = 0; i < rt->nbuckets; i++) {
        for (struct cv_object *o = rt->buckets[i]; o; o = o->hnext) {
            if (!obj_listed(o)) continue;
            struct cv_object_info info = {o->type->name, o->id, o->shard, o->state,
                                          o->queued + o->ticks, o->in_flight != NULL};
            if (fn) fn(data, &info);
            n++;
        }
    }
    return n;
}

size_t cv_runtime_count(const struct cv_runtime *rt)
{
    return rt->count;
}

const char *cv_object_state_name(enum cv_object_state s)
{
    switch (s) {
    case CV_OBJ_ACTIVATING: return "ACTIVATING";
    case CV_OBJ_ACTIVE: return "ACTIVE";
    case CV_OBJ_DEACTIVATING: return "DEACTIVATING";
    case CV_OBJ_GONE: return "GONE";
    }
    return "?";
}

/* ---- accessors ---- */

void *cv_object_state(cv_object *o) { return o->state_mem; }
const char *cv_object_id(const cv_object *o) { return o->id; }
const char *cv_object_type_name(const cv_object *o) { return o->type->name; }
uint32_t cv_object_shard(const cv_object *o) { return o->shard; }
const char *cv_object_node_id(const cv_object *o) { return o->rt->node_id; }

/* ---- invariants ---- */

static void obj_check(const struct cv_object *o)
{
#ifdef CV_CHECKS
    size_t n = 0;
    const char *bad = NULL;
    for (const struct mail *m = o->head; m; m = m->next) n++;
    if (n != o->queued + o->ticks) bad = "mailbox count";
    else if (o->queued > o->rt->capacity) bad = "mailbox over capacity";
    else if (o->state == CV_OBJ_ACTIVATING && o->in_flight) bad = "call in flight while activating";
    else if (o->state == CV_OBJ_DEACTIVATING && o->timers) bad = "live timer while deactivating";
    else if (o->state == CV_OBJ_GONE && (o->in_flight || o->head || o->timers)) bad = "GONE with work";
    else if (o->refs < 1) bad = "no reference";
    if (bad) {
        CV_ERROR("objects: invariant broken for %s (%s): %s", o->id, cv_object_state_name(o->state), bad);
        abort();
    }
#else
    (void)o;
#endif
}
