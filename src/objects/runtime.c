/* Object runtime: activates objects on demand and runs their mailboxes one entry at a time.
 *
 * Happy path: cv_runtime_call validates the target (type, method, placement, ownership), decodes the
 * request, creates the object in ACTIVATING if it is not in the table, appends the call to its mailbox
 * and puts the object on the ready list. A uv_idle "pump" pops ready objects round-robin: an ACTIVATING
 * object runs its created/activated hooks and becomes ACTIVE; an ACTIVE object without a call in flight
 * pops one entry and runs it (a method call, or a timer tick). A call stays "in flight" until the
 * handler replies; only then is the object put back on the ready list, which is what serialises async
 * handlers. Callers are never called back from inside cv_runtime_call (everything runs from the pump or
 * from a reply). cv_runtime_activate enters an object without a call (auto-load, a create applied on the
 * owner). The SDK's cluster services (cv_object_create, counts, cv_object_log, ...) and every
 * cv_object_call go through the host hooks when the hosting node gave them (host.c routes calls to other
 * nodes); without hooks the services answer as outside a node and calls stay local.
 *
 * Failure modes: synchronous rejection (CV_ENOTFOUND, CV_EPROTO, CV_EBUSY when the bounded mailbox is
 * full, CV_EREDIRECT for a shard we do not own or an object being deactivated); a failing activation
 * hook fails the queued calls with its code; deactivation fails queued calls with CV_EREDIRECT (close:
 * CV_ECLOSED) and waits for the call in flight before the deactivated hook runs. Objects are reference
 * counted (table, live timers, outgoing calls and host operations) so that memory outlives every
 * callback that names it. */
#include "objects/runtime.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "cverse/error.h"
#include "util/log.h"

#define PUMP_BUDGET 4096 /* entries run per loop iteration before I/O gets its turn again */
#define TABLE_MIN 64

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
    bool pinned;      /* "<node>/x": belongs to no shard */
    bool run_created; /* created_explicit: this activation runs the created hook */
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
    cv_registry *reg;
    bool own_reg, created_explicit;
    struct cv_host_hooks hooks;
    struct cv_object **buckets;
    size_t nbuckets, count; /* objects in the table */
    uint32_t *shard_count;  /* objects in the table per shard (pinned ones excluded) */
    size_t live;            /* objects allocated (table + GONE ones still referenced) */
    struct cv_object *ready_head, *ready_tail;
    bool started, closing, finishing;
    cv_runtime_close_cb close_cb;
    void *close_data;
};

static void obj_check(const struct cv_object *o);

/* ---- registry lookups ---- */

static const struct cv_object_type *reg_find(const struct cv_runtime *rt, const char *name)
{
    return cv_registry_type(rt->reg, name);
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
    if (!o->pinned) rt->shard_count[o->shard]++;
}

static void tab_remove(struct cv_runtime *rt, struct cv_object *o)
{
    struct cv_object **p = &rt->buckets[o->hash & (rt->nbuckets - 1)];
    while (*p != o) p = &(*p)->hnext;
    *p = o->hnext;
    o->hnext = NULL;
    rt->count--;
    if (!o->pinned) rt->shard_count[o->shard]--;
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
    rt->shard_count = calloc(opts->shards, sizeof *rt->shard_count);
    if (!rt->shard_count) goto err_after_buckets;
    rt->reg = opts->registry;
    if (!rt->reg) {
        if (!(rt->reg = cv_registry_new())) goto err_after_counts;
        rt->own_reg = true;
    }
    rt->loop = loop;
    rt->shards = opts->shards;
    rt->capacity = opts->mailbox_capacity ? opts->mailbox_capacity : CV_MAILBOX_DEFAULT;
    rt->owns = opts->owns;
    rt->owns_data = opts->owns_data;
    rt->created_explicit = opts->created_explicit;
    if (opts->hooks) rt->hooks = *opts->hooks;
    uv_idle_init(loop, &rt->pump);
    rt->pump.data = rt;
    *out = rt;
    return 0;

err_after_counts:
    free(rt->shard_count);
err_after_buckets:
    free(rt->buckets);
err_after_id:
    free(rt->node_id);
err_after_rt:
    free(rt);
    return CV_ENOMEM;
}

cv_registry *cv_runtime_registry(struct cv_runtime *rt)
{
    return rt->reg;
}

void cv_runtime_start(struct cv_runtime *rt)
{
    cv_registry_freeze(rt->reg);
    rt->started = true;
}

static void pump_closed(uv_handle_t *h)
{
    struct cv_runtime *rt = h->data;
    if (rt->close_cb) rt->close_cb(rt, rt->close_data);
    if (rt->own_reg) cv_registry_free(rt->reg);
    free(rt->shard_count);
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
                                 const struct cv_placement *p, uint32_t hash)
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
    o->shard = p->shard;
    o->pinned = p->kind == CV_PLACE_NODE;
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

/* Same message type: the same descriptor, or one with the same full name. A module usually carries its
 * own copy of the generated code of a shared .proto (its descriptors are then other addresses than the
 * node's); the wire format is what both sides agree on. */
static bool same_message(const ProtobufCMessageDescriptor *a, const ProtobufCMessageDescriptor *b)
{
    return a == b ||
           (a && b && a->magic == PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC && strcmp(a->name, b->name) == 0);
}

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
    if (!resp || !same_message(resp->descriptor, r->m->method->response)) {
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
    bool created = !o->rt->created_explicit || o->run_created;
    int rv = created && o->type->created ? o->type->created(o) : 0;
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

static int call_target(struct cv_runtime *rt, const char *id, struct cv_placement *p)
{
    int rv = cv_placement_parse(id, rt->shards, p);
    if (rv != 0) return CV_EINVAL;
    if (p->kind == CV_PLACE_NODE && !cv_placement_on_node(p, rt->node_id)) return CV_EREDIRECT;
    if (p->kind != CV_PLACE_NODE && rt->owns && !rt->owns(rt->owns_data, p->shard)) return CV_EREDIRECT;
    return 0;
}

/* The common front of a call and an activation of (t, id): where it lands (placement, hash) and the live
 * object, if any (*out, or NULL). Fails with call_target's codes, CV_ECONFLICT when id is live as another
 * type, CV_EREDIRECT while the object is on its way out (the caller retries at the next owner). */
static int call_lookup(struct cv_runtime *rt, const struct cv_object_type *t, const char *id,
                       struct cv_placement *p, uint32_t *hash, struct cv_object **out)
{
    *hash = cv_fnv1a32(id, strlen(id));
    int rv = call_target(rt, id, p);
    if (rv != 0) return rv;
    struct cv_object *o = tab_find(rt, id, *hash);
    if (o && o->type != t) return CV_ECONFLICT;
    if (o && (o->want_deactivate || o->state == CV_OBJ_DEACTIVATING)) return CV_EREDIRECT;
    *out = o;
    return 0;
}

int cv_runtime_call(struct cv_runtime *rt, const char *type, const char *id, const char *method,
                    const uint8_t *req, size_t len, cv_runtime_call_cb cb, void *data)
{
    if (!rt->started) return CV_EUNAVAIL;
    if (rt->closing) return CV_ECLOSED;
    if (!type || !id || !method || !cb || (!req && len)) return CV_EINVAL;
    const struct cv_object_type *t = reg_find(rt, type);
    const struct cv_method *m = t ? cv_type_method(t, method) : NULL;
    if (!m) return CV_ENOTFOUND;
    struct cv_placement p;
    uint32_t hash;
    struct cv_object *o;
    int rv = call_lookup(rt, t, id, &p, &hash, &o);
    if (rv != 0) return rv;
    if (o && o->queued >= rt->capacity) return CV_EBUSY;

    struct mail *mail = calloc(1, sizeof *mail);
    if (!mail) return CV_ENOMEM;
    mail->req = protobuf_c_message_unpack(m->request, NULL, len, req ? req : (const uint8_t *)"");
    if (!mail->req) {
        free(mail);
        return CV_EPROTO;
    }
    if (!o && !(o = obj_new(rt, t, id, &p, hash))) {
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
    struct cv_runtime *rt = o->rt;
    const struct cv_object_type *t = reg_find(rt, type);
    const struct cv_method *m = t ? cv_type_method(t, method) : NULL;
    if (!m) return CV_ENOTFOUND;
    if (!same_message(req->descriptor, m->request)) return CV_EINVAL;
    if (rt->closing) return CV_ECLOSED;
    size_t len = protobuf_c_message_get_packed_size(req);
    uint8_t *buf = malloc(len ? len : 1);
    struct ocall *c = malloc(sizeof *c);
    int rv = CV_ENOMEM;
    if (!buf || !c) goto err;
    protobuf_c_message_pack(req, buf);
    *c = (struct ocall){o, cb, data, m->response};
    if (rt->hooks.call) /* the host routes: here or another node */
        rv = rt->hooks.call(rt->hooks.data, type, id, method, buf, len, ocall_done, c);
    else
        rv = cv_runtime_call(rt, type, id, method, buf, len, ocall_done, c);
    if (rv != 0) goto err;
    o->refs++; /* released in ocall_done */
    free(buf);
    return 0;

err:
    free(c);
    free(buf);
    return rv;
}

int cv_runtime_activate(struct cv_runtime *rt, const char *type, const char *id, bool created)
{
    if (!rt->started) return CV_EUNAVAIL;
    if (rt->closing) return CV_ECLOSED;
    if (!type || !id) return CV_EINVAL;
    const struct cv_object_type *t = reg_find(rt, type);
    if (!t) return CV_ENOTFOUND;
    struct cv_placement p;
    uint32_t hash;
    struct cv_object *o;
    int rv = call_lookup(rt, t, id, &p, &hash, &o);
    if (rv != 0) return rv;
    if (o) return 0;
    if (!(o = obj_new(rt, t, id, &p, hash))) return CV_ENOMEM;
    o->run_created = created;
    ready_push(o); /* the pump runs the hooks; the mailbox is empty */
    obj_check(o);
    return 0;
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

int cv_runtime_deactivate_unowned(struct cv_runtime *rt)
{
    int n = 0;
    if (!rt->owns) return 0;
    for (size_t i = 0; i < rt->nbuckets; i++) {
        for (struct cv_object *o = rt->buckets[i]; o; o = o->hnext) {
            if (o->pinned || !obj_listed(o) || rt->owns(rt->owns_data, o->shard)) continue;
            obj_deactivate(o, CV_EREDIRECT, false);
            n++;
        }
    }
    return n;
}

static void obj_info(const struct cv_object *o, struct cv_object_info *info)
{
    *info = (struct cv_object_info){o->type->name, o->id, o->shard, o->state, o->queued + o->ticks,
                                    o->in_flight != NULL};
    if (o->want_deactivate) info->state = CV_OBJ_DEACTIVATING; /* how callers see it */
}

int cv_runtime_lookup(struct cv_runtime *rt, const char *id, struct cv_object_info *info)
{
    if (!id) return CV_EINVAL;
    struct cv_object *o = tab_find(rt, id, cv_fnv1a32(id, strlen(id)));
    if (!o) return CV_ENOTFOUND;
    obj_info(o, info);
    return 0;
}

size_t cv_runtime_list(struct cv_runtime *rt, void (*fn)(void *data, const struct cv_object_info *info),
                       void *data)
{
    size_t n = 0;
    for (size_t i = 0; i < rt->nbuckets; i++) {
        for (struct cv_object *o = rt->buckets[i]; o; o = o->hnext) {
            if (!obj_listed(o)) continue;
            struct cv_object_info info;
            obj_info(o, &info);
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

size_t cv_runtime_shard_count(const struct cv_runtime *rt, uint32_t shard)
{
    return shard < rt->shards ? rt->shard_count[shard] : 0;
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

/* ---- cluster services (object.h), through the host hooks ---- */

/* A create/delete on behalf of an object: holds a reference so that `caller` outlives the callback. */
struct odone {
    struct cv_object *caller;
    cv_object_done_cb cb;
    void *data;
};

static void odone_cb(void *data, int status, const char *error)
{
    struct odone *d = data;
    if (status != 0 && !error) error = cv_strerror(status);
    d->cb(d->caller, d->data, status, status ? error : NULL);
    obj_unref(d->caller);
    free(d);
}

typedef int (*host_op_fn)(void *data, const char *type, const char *id, cv_host_done_cb cb, void *cb_data);

static int host_op(cv_object *o, host_op_fn fn, const char *type, const char *id, cv_object_done_cb cb,
                   void *data)
{
    if (!o || !type || !id || !cb) return CV_EINVAL;
    struct cv_runtime *rt = o->rt;
    if (!fn) return CV_EUNAVAIL;
    if (rt->closing) return CV_ECLOSED;
    if (!reg_find(rt, type)) return CV_ENOTFOUND;
    struct cv_placement p;
    if (cv_placement_parse(id, rt->shards, &p) != 0) return CV_EINVAL;
    struct odone *d = malloc(sizeof *d);
    if (!d) return CV_ENOMEM;
    *d = (struct odone){o, cb, data};
    int rv = fn(rt->hooks.data, type, id, odone_cb, d);
    if (rv != 0) {
        free(d);
        return rv;
    }
    o->refs++; /* released in odone_cb */
    return 0;
}

int cv_object_create(cv_object *o, const char *type, const char *id, cv_object_done_cb cb, void *data)
{
    return host_op(o, o ? o->rt->hooks.create_object : NULL, type, id, cb, data);
}

int cv_object_delete(cv_object *o, const char *type, const char *id, cv_object_done_cb cb, void *data)
{
    return host_op(o, o ? o->rt->hooks.delete_object : NULL, type, id, cb, data);
}

uint32_t cv_object_cluster_shards(const cv_object *o)
{
    return o->rt->shards;
}

bool cv_object_node_owns_shard(const cv_object *o, uint32_t shard)
{
    const struct cv_runtime *rt = o->rt;
    if (shard >= rt->shards) return false;
    return rt->owns ? rt->owns(rt->owns_data, shard) : true; /* no owns: every shard (opts) */
}

uint32_t cv_object_node_shard_count(const cv_object *o)
{
    const struct cv_runtime *rt = o->rt;
    if (rt->hooks.node_shards) return rt->hooks.node_shards(rt->hooks.data);
    return rt->owns ? 0 : rt->shards;
}

size_t cv_object_node_object_count(const cv_object *o)
{
    return o->rt->count;
}

size_t cv_object_shard_object_count(const cv_object *o, uint32_t shard)
{
    return cv_runtime_shard_count(o->rt, shard);
}

size_t cv_object_cluster_node_count(const cv_object *o)
{
    const struct cv_runtime *rt = o->rt;
    return rt->hooks.cluster_nodes ? rt->hooks.cluster_nodes(rt->hooks.data) : 0;
}

size_t cv_object_cluster_object_count(const cv_object *o)
{
    const struct cv_runtime *rt = o->rt;
    return rt->hooks.cluster_objects ? rt->hooks.cluster_objects(rt->hooks.data) : 0;
}

void cv_object_log(const cv_object *o, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    const struct cv_runtime *rt = o->rt;
    if (rt->hooks.log) rt->hooks.log(rt->hooks.data, line);
    else CV_INFO("%s", line);
}

uint64_t cv_object_setting_u64(const char *name, uint64_t dflt)
{
    const char *v = name ? getenv(name) : NULL;
    if (!v || !*v) return dflt;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || *end || *v == '-') {
        CV_WARN("setting %s=\"%s\" is not an unsigned integer: using %llu", name, v, (unsigned long long)dflt);
        return dflt;
    }
    return (uint64_t)x;
}

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
