/* Object runtime: activates objects on demand and runs their mailboxes one entry at a time.
 *
 * Happy path: cv_runtime_call validates the target (type, method, placement, ownership), decodes the
 * request, creates the object in ACTIVATING if it is not in the table, appends the call to its mailbox
 * and puts the object on the ready list. A uv_idle "pump" pops ready objects round-robin: an ACTIVATING
 * object runs its created/activated hooks and becomes ACTIVE; an ACTIVE object without a call in flight
 * pops one entry and runs it (object.c). Callers are never called back from inside cv_runtime_call
 * (everything runs from the pump or from a reply). cv_runtime_activate enters an object without a call
 * (auto-load, a create applied on the owner). The SDK's cluster services and every cv_object_call go
 * through the host hooks when the hosting node gave them (services.c).
 *
 * Failure modes: synchronous rejection (CV_ENOTFOUND, CV_EPROTO, CV_EBUSY when the bounded mailbox is
 * full, CV_EREDIRECT for a shard we do not own or an object being deactivated); a failing activation
 * hook fails the queued calls with its code; deactivation fails queued calls with CV_EREDIRECT (close:
 * CV_ECLOSED) and waits for the call in flight before the deactivated hook runs. The object lifecycle
 * is the cv_sm table of object.h; a deactivation asked for while ACTIVATING is its own state,
 * DEACTIVATE_PENDING, shown to callers as DEACTIVATING. */
#include "objects/runtime.h"

#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"
#include "objects/object.h"
#include "util/actlog.h"
#include "util/log.h"

#define RUNTIME__PUMP_BUDGET 4096 /* entries run per loop iteration before I/O gets its turn again */

/* ---- table of active objects (uthash by id) ---- */

static struct cv_object *runtime__find(const struct cv_runtime *rt, const char *id)
{
    struct cv_object *o;
    HASH_FIND(hh, rt->table, id, strlen(id), o);
    return o;
}

static void runtime__remove(struct cv_runtime *rt, struct cv_object *o)
{
    HASH_DEL(rt->table, o);
    if (!o->pinned) rt->shard_count[o->shard]--;
}

/* ---- runtime lifecycle ---- */

static void runtime__maybe_finish(struct cv_runtime *rt);
static void runtime__pump_cb(uv_idle_t *h);
static void runtime__deactivate_cb(struct cv_object *o, int status);

int cv_runtime_init(uv_loop_t *loop, const struct cv_runtime_opts *opts, struct cv_runtime **out)
{
    if (!loop || !opts || !out || !opts->node_id || !opts->node_id[0] || opts->shards == 0)
        return CV_EINVAL;
    struct cv_runtime *rt = calloc(1, sizeof *rt);
    if (!rt) return CV_ENOMEM;
    rt->node_id = strdup(opts->node_id);
    if (!rt->node_id) goto err_after_rt;
    rt->shard_count = calloc(opts->shards, sizeof *rt->shard_count);
    if (!rt->shard_count) goto err_after_id;
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
    rt->serve_until = opts->serve_until;
    rt->serve_data = opts->serve_data;
    if (opts->hooks) rt->hooks = *opts->hooks;
    rt->policies = opts->policies;
    rt->n_policies = opts->n_policies;
    rt->state_max = opts->state_max_bytes ? opts->state_max_bytes : CV_STATE_MAX_DEFAULT;
    rt->call_window = opts->call_window > 0 ? (uint32_t)opts->call_window : opts->call_window ? 0 : CV_CALL_WINDOW_DEFAULT;
    rt->call_window_ms = opts->call_window_ms ? opts->call_window_ms : CV_CALL_WINDOW_MS_DEFAULT;
    rt->ops = (struct obj__owner_ops){
        .pump = runtime__pump_cb, .released = runtime__maybe_finish, .deactivate = runtime__deactivate_cb};
    uv_idle_init(loop, &rt->pump);
    rt->pump.data = rt;
    *out = rt;
    return 0;

err_after_counts:
    free(rt->shard_count);
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

static void runtime__pump_closed(uv_handle_t *h)
{
    struct cv_runtime *rt = h->data;
    if (rt->close_cb) rt->close_cb(rt, rt->close_data);
    if (rt->own_reg) cv_registry_free(rt->reg);
    free(rt->shard_count);
    free(rt->node_id);
    free(rt);
}

/* Close completes once no object memory is left: every callback that could name an object ran. */
static void runtime__maybe_finish(struct cv_runtime *rt)
{
    if (!rt->closing || rt->finishing || rt->live != 0) return;
    rt->finishing = true;
    uv_close((uv_handle_t *)&rt->pump, runtime__pump_closed);
}

/* ---- serving window and activation log ---- */

/* May the pump run anything at all now (the node's serving window)? */
static bool runtime__may_serve(const struct cv_runtime *rt)
{
    return !rt->serve_until || cv_mono_ms() < rt->serve_until(rt->serve_data);
}

/* The activation log's end of o: now, or the end of the serving window if that came first (nothing of o
 * ran after it: runtime__may_serve). */
static void runtime__log_end(struct cv_object *o)
{
    if (!o->logged) return;
    uint64_t now = cv_mono_ns(), until = o->rt->serve_until ? o->rt->serve_until(o->rt->serve_data) : UINT64_MAX;
    if (until <= now / 1000000u) now = until * 1000000u;
    cv_actlog('D', o->rt->node_id, o->id, now);
    o->logged = false;
}

/* ---- the lifecycle's moves that run hooks ---- */

/* ACTIVATING or DEACTIVATE_PENDING -> GONE when a hook failed or deactivation came first: no further
 * hook runs. */
static void runtime__abort_activation(struct cv_object *o, int status)
{
    obj__drain(o, status);
    obj__stop_timers(o);
    runtime__log_end(o);
    obj__move(o, OBJ_GONE);
    runtime__remove(o->rt, o);
    obj__unref(o);
}

static void runtime__start_deactivation(struct cv_object *o)
{
    obj__stop_timers(o);
    obj__move(o, OBJ_DEACTIVATING);
    obj__ready(o);
}

/* A new object whose shard moved away before its hooks ran: created / activated run all the same (then it
 * deactivates and its state is saved before the shard is released): its `created` runs exactly once,
 * here, since the next owner only sees an existing object. Not when it was deleted or the node fenced. */
static bool runtime__create_anyway(const struct cv_object *o)
{
    return o->run_created && o->rt->created_explicit && !o->destroy && o->drain_status == CV_EREDIRECT;
}

static void runtime__activate(struct cv_object *o)
{
    if (obj__state(o) == OBJ_DEACTIVATE_PENDING && !runtime__create_anyway(o)) {
        runtime__abort_activation(o, o->drain_status);
        return;
    }
    if (!runtime__may_serve(o->rt)) {
        runtime__abort_activation(o, CV_EUNAVAIL);
        return;
    }
    cv_actlog('A', o->rt->node_id, o->id, cv_mono_ns());
    o->logged = true;
    int rv = obj__state_load(o); /* a persisted state is there before any hook runs */
    /* created: a new object. In a node, the activation by the entry that created it, or (a persisted
     * type) any activation while the catalog has no state of it yet — the entry's activation may have
     * been skipped (the node fenced, or was not serving, right then); its first save records that it
     * ran (an object that only reads is saved once for it). */
    bool created = !o->rt->created_explicit || o->run_created || o->fresh;
    if (rv == 0 && created && o->type->created) {
        rv = o->type->created(o);
        if (o->persist != CV_PERSIST_NONE) o->x->dirty = true; /* persisted: o->x exists */
    }
    if (rv == 0 && o->type->activated) rv = o->type->activated(o);
    if (rv != 0) {
        if (rv > 0) rv = CV_EUNAVAIL;
        CV_WARN("objects: activation of %s (%s) failed: %s", o->id, o->type->name, cv_strerror(rv));
        runtime__abort_activation(o, rv);
        return;
    }
    if (obj__state(o) == OBJ_DEACTIVATE_PENDING) { /* asked for from inside a hook */
        runtime__start_deactivation(o);
        return;
    }
    obj__move(o, OBJ_ACTIVE);
    /* A hook may have changed the state: saved now, or with the first entry's change (one commit) */
    if (!o->mail) obj__state_after(o);
    obj__run_next(o);
}

/* DEACTIVATING with nothing in flight: the last hooks, the last save (the object stays in the table, so
 * its shard is not released, until that save completed), then out of the table. */
static void runtime__finalize(struct cv_object *o)
{
    if (!o->hooks_done) {
        o->hooks_done = true;
        if (o->type->deactivated) o->type->deactivated(o);
        if (o->destroy && o->type->destroyed) o->type->destroyed(o);
        runtime__log_end(o); /* it runs nothing more: what follows is only its last save */
    }
    if (obj__state_settle(o)) return; /* its completion makes o ready again */
    obj__move(o, OBJ_GONE);
    runtime__remove(o->rt, o);
    obj__unref(o);
}

static void runtime__step(struct cv_object *o)
{
    switch (obj__state(o)) {
    case OBJ_ACTIVATING:
    case OBJ_DEACTIVATE_PENDING: runtime__activate(o); break;
    case OBJ_ACTIVE:
        if (o->in_flight) break;
        if (runtime__may_serve(o->rt)) {
            obj__run_next(o);
        } else { /* the window ended (e.g. the process was stopped): fail the mailbox, run nothing */
            o->drain_status = CV_EUNAVAIL;
            runtime__start_deactivation(o);
        }
        break;
    case OBJ_DEACTIVATING:
        obj__drain(o, o->drain_status);
        if (!o->in_flight) runtime__finalize(o);
        break;
    case OBJ_GONE:
    case OBJ_N_STATES: break;
    }
}

static void runtime__pump_cb(uv_idle_t *h)
{
    struct cv_runtime *rt = h->data;
    struct cv_object *o;
    for (int budget = RUNTIME__PUMP_BUDGET; budget > 0 && (o = obj__ready_pop(rt)); budget--) runtime__step(o);
    if (!rt->ready_head && !rt->finishing) uv_idle_stop(&rt->pump);
}

const char *const cv_activation_reason_names[CV_ACT_N] = {"call", "created", "load", "reminder"};
const char *const cv_deactivation_reason_names[CV_DEACT_N] = {"idle",   "moved",   "fenced", "deleted",
                                                              "failed", "closing", "other"};

static void runtime__deactivate(struct cv_object *o, int status, bool destroy, enum cv_deactivation_reason why)
{
    if (destroy) o->destroy = true;
    enum obj__state s = obj__state(o);
    if (s != OBJ_ACTIVATING && s != OBJ_ACTIVE) return; /* already on its way out */
    o->rt->counts.deactivations[why]++;
    o->drain_status = status;
    if (s == OBJ_ACTIVATING) {
        obj__move(o, OBJ_DEACTIVATE_PENDING); /* decided when the pump (or the running hook) gets to it */
        obj__ready(o);
        return;
    }
    runtime__start_deactivation(o);
}

static void runtime__deactivate_cb(struct cv_object *o, int status)
{
    runtime__deactivate(o, status, false, CV_DEACT_FAILED);
}

void cv_runtime_close(struct cv_runtime *rt, cv_runtime_close_cb cb, void *data)
{
    rt->closing = true;
    rt->close_cb = cb;
    rt->close_data = data;
    struct cv_object *o, *tmp;
    HASH_ITER(hh, rt->table, o, tmp) runtime__deactivate(o, CV_ECLOSED, false, CV_DEACT_CLOSING);
    runtime__maybe_finish(rt);
}

/* ---- calls ---- */

static int runtime__target(struct cv_runtime *rt, const char *id, struct cv_placement *p)
{
    int rv = cv_placement_parse(id, rt->shards, p);
    if (rv != 0) return CV_EINVAL;
    if (p->kind == CV_PLACE_NODE && !cv_placement_on_node(p, rt->node_id)) return CV_EREDIRECT;
    if (p->kind != CV_PLACE_NODE && rt->owns && !rt->owns(rt->owns_data, p->shard)) return CV_EREDIRECT;
    return 0;
}

/* The common front of a call and an activation of (t, id): where it lands (placement) and the live
 * object, if any (*out, or NULL). Fails with runtime__target's codes, CV_ECONFLICT when id is live as
 * another type, CV_EREDIRECT while the object is on its way out (the caller retries at the next owner). */
static int runtime__lookup(struct cv_runtime *rt, const struct cv_object_type *t, const char *id,
                           struct cv_placement *p, struct cv_object **out)
{
    int rv = runtime__target(rt, id, p);
    if (rv != 0) return rv;
    struct cv_object *o = runtime__find(rt, id);
    if (o && o->type != t) return CV_ECONFLICT;
    if (o && obj__state(o) != OBJ_ACTIVATING && obj__state(o) != OBJ_ACTIVE) return CV_EREDIRECT;
    *out = o;
    return 0;
}

int cv_runtime_call(struct cv_runtime *rt, const char *type, const char *id, const char *method,
                    const uint8_t *req, size_t len, cv_runtime_call_cb cb, void *data)
{
    return cv_runtime_call_id(rt, type, id, method, req, len, NULL, cb, data);
}

/* Queues a call of method m to o (NULL: a new object of type t at placement p, activated by this call).
 * 0, CV_EBUSY (mailbox full), CV_EPROTO (request does not decode), CV_ENOMEM. */
static int runtime__enqueue(struct cv_runtime *rt, struct cv_object *o, const struct cv_object_type *t,
                            const struct cv_method *m, const char *id, const struct cv_placement *p,
                            const uint8_t *req, size_t len, const struct cv_call_ctx *ctx, cv_runtime_call_cb cb,
                            void *data)
{
    const char *call_id = ctx ? ctx->call_id : NULL, *client_id = ctx ? ctx->client_id : NULL;
    if (o && o->queued >= rt->capacity) return CV_EBUSY;
    struct obj__mail *mail = calloc(1, sizeof *mail);
    if (!mail) return CV_ENOMEM;
    mail->req = protobuf_c_message_unpack(m->request, NULL, len, req ? req : (const uint8_t *)"");
    if (!mail->req) {
        free(mail);
        return CV_EPROTO;
    }
    if ((call_id && *call_id && !(mail->call_id = strdup(call_id))) ||
        (client_id && *client_id && !(mail->client_id = strdup(client_id))) ||
        (ctx && ctx->caller && !(mail->caller = cv_caller_dup(ctx->caller)))) {
        obj__mail_free(mail);
        return CV_ENOMEM;
    }
    if (!o && !(o = obj__new(rt, t, id, p))) {
        obj__mail_free(mail);
        return CV_ENOMEM;
    }
    if (obj__state(o) == OBJ_ACTIVATING && !o->counted) { /* activated by this call */
        o->counted = true;
        rt->counts.activations[CV_ACT_CALL]++;
    }
    mail->method = m;
    mail->cb = cb;
    mail->data = data;
    obj__mail_push(o, mail);
    if (!o->in_flight) obj__ready(o);
    obj__check(o);
    return 0;
}

int cv_runtime_call_id(struct cv_runtime *rt, const char *type, const char *id, const char *method,
                       const uint8_t *req, size_t len, const char *call_id, cv_runtime_call_cb cb, void *data)
{
    struct cv_call_ctx ctx = {.call_id = call_id};
    return cv_runtime_call_ctx(rt, type, id, method, req, len, &ctx, cb, data);
}

int cv_runtime_call_ctx(struct cv_runtime *rt, const char *type, const char *id, const char *method,
                        const uint8_t *req, size_t len, const struct cv_call_ctx *ctx, cv_runtime_call_cb cb,
                        void *data)
{
    if (!rt->started) return CV_EUNAVAIL;
    if (rt->closing) return CV_ECLOSED;
    if (!type || !id || !method || !cb || (!req && len)) return CV_EINVAL;
    const struct cv_object_type *t = cv_registry_type(rt->reg, type);
    const struct cv_method *m = t ? cv_type_method(t, method) : NULL;
    if (!m) return CV_ENOTFOUND;
    struct cv_placement p;
    struct cv_object *o;
    int rv = runtime__lookup(rt, t, id, &p, &o);
    if (rv != 0) return rv;
    return runtime__enqueue(rt, o, t, m, id, &p, req, len, ctx, cb, data);
}

int cv_runtime_call_active(struct cv_runtime *rt, const struct cv_object_type *t, const struct cv_method *m,
                           const char *id, const uint8_t *req, size_t len, const struct cv_call_ctx *ctx,
                           cv_runtime_call_cb cb, void *data)
{
    if (!rt->started || rt->closing || !t || !m || !id || !cb || (!req && len)) return CV_ENOTFOUND;
    struct cv_object *o = runtime__find(rt, id);
    if (!o || o->type != t || obj__state(o) != OBJ_ACTIVE) return CV_ENOTFOUND;
    return runtime__enqueue(rt, o, t, m, id, NULL, req, len, ctx, cb, data);
}

int cv_runtime_activate(struct cv_runtime *rt, const char *type, const char *id, bool created)
{
    if (!rt->started) return CV_EUNAVAIL;
    if (rt->closing) return CV_ECLOSED;
    if (!type || !id) return CV_EINVAL;
    const struct cv_object_type *t = cv_registry_type(rt->reg, type);
    if (!t) return CV_ENOTFOUND;
    struct cv_placement p;
    struct cv_object *o;
    int rv = runtime__lookup(rt, t, id, &p, &o);
    if (rv != 0) return rv;
    if (o) return 0;
    if (!(o = obj__new(rt, t, id, &p))) return CV_ENOMEM;
    o->run_created = created;
    o->counted = true;
    rt->counts.activations[created && rt->created_explicit ? CV_ACT_CREATED : CV_ACT_LOAD]++;
    obj__ready(o); /* the pump runs the hooks; the mailbox is empty */
    obj__check(o);
    return 0;
}

int cv_runtime_remind(struct cv_runtime *rt, const char *type, const char *id, const char *name, uint64_t due_ms)
{
    if (!rt->started) return CV_EUNAVAIL;
    if (rt->closing) return CV_ECLOSED;
    if (!type || !id || !name) return CV_EINVAL;
    const struct cv_object_type *t = cv_registry_type(rt->reg, type);
    if (!t) return CV_ENOTFOUND;
    struct cv_placement p;
    struct cv_object *o;
    int rv = runtime__lookup(rt, t, id, &p, &o);
    if (rv != 0) return rv;
    if (o && o->queued >= rt->capacity) return CV_EBUSY;
    struct obj__mail *mail = calloc(1, sizeof *mail);
    if (!mail || !(mail->remind = strdup(name))) {
        free(mail);
        return CV_ENOMEM;
    }
    mail->remind_due = due_ms;
    if (!o && !(o = obj__new(rt, t, id, &p))) {
        obj__mail_free(mail);
        return CV_ENOMEM;
    }
    if (obj__state(o) == OBJ_ACTIVATING && !o->counted) {
        o->counted = true;
        rt->counts.activations[CV_ACT_REMINDER]++;
    }
    obj__mail_push(o, mail); /* counted as a tick: it bypasses the calls' capacity */
    if (!o->in_flight) obj__ready(o);
    obj__check(o);
    return 0;
}

/* ---- deactivation, listing ---- */

static int runtime__deactivate_id(struct cv_runtime *rt, const char *id, bool destroy)
{
    if (!id) return CV_EINVAL;
    struct cv_object *o = runtime__find(rt, id);
    if (!o) return CV_ENOTFOUND;
    runtime__deactivate(o, CV_EREDIRECT, destroy, destroy ? CV_DEACT_DELETED : CV_DEACT_OTHER);
    return 0;
}

int cv_runtime_deactivate(struct cv_runtime *rt, const char *id)
{
    return runtime__deactivate_id(rt, id, false);
}

int cv_runtime_destroy(struct cv_runtime *rt, const char *id)
{
    return runtime__deactivate_id(rt, id, true);
}

static bool runtime__listed(const struct cv_object *o)
{
    return obj__state(o) == OBJ_ACTIVATING || obj__state(o) == OBJ_ACTIVE;
}

int cv_runtime_deactivate_all(struct cv_runtime *rt, int status)
{
    int n = 0;
    struct cv_object *o, *tmp;
    HASH_ITER(hh, rt->table, o, tmp) {
        if (!runtime__listed(o)) continue;
        runtime__deactivate(o, status, false, CV_DEACT_FENCED);
        n++;
    }
    return n;
}

int cv_runtime_deactivate_unowned(struct cv_runtime *rt)
{
    int n = 0;
    if (!rt->owns) return 0;
    struct cv_object *o, *tmp;
    HASH_ITER(hh, rt->table, o, tmp) {
        if (o->pinned || !runtime__listed(o) || rt->owns(rt->owns_data, o->shard)) continue;
        runtime__deactivate(o, CV_EREDIRECT, false, CV_DEACT_MOVED);
        n++;
    }
    return n;
}

int cv_runtime_deactivate_idle(struct cv_runtime *rt)
{
    int n = 0;
    uint64_t now = uv_now(rt->loop);
    struct cv_object *o, *tmp;
    HASH_ITER(hh, rt->table, o, tmp) {
        const struct obj__side *x = o->x; /* an idle timeout has one */
        if (!x || !x->idle_ms || obj__state(o) != OBJ_ACTIVE || o->in_flight || o->mail || x->held ||
            x->saving || now - x->last_used < x->idle_ms)
            continue;
        runtime__deactivate(o, CV_EREDIRECT, false, CV_DEACT_IDLE); /* a final save follows if dirty */
        n++;
    }
    return n;
}

void cv_runtime_counts(const struct cv_runtime *rt, struct cv_runtime_counts *out)
{
    *out = rt->counts;
}

static void runtime__info(const struct cv_object *o, struct cv_object_info *info)
{
    enum obj__state s = obj__state(o);
    *info = (struct cv_object_info){o->type->name, o->id, o->shard, (enum cv_object_state)s,
                                    o->queued + o->ticks, o->in_flight};
    if (s == OBJ_DEACTIVATE_PENDING) info->state = CV_OBJ_DEACTIVATING; /* how callers see it */
}

int cv_runtime_lookup(struct cv_runtime *rt, const char *id, struct cv_object_info *info)
{
    if (!id) return CV_EINVAL;
    struct cv_object *o = runtime__find(rt, id);
    if (!o) return CV_ENOTFOUND;
    runtime__info(o, info);
    return 0;
}

size_t cv_runtime_list(struct cv_runtime *rt, void (*fn)(void *data, const struct cv_object_info *info),
                       void *data)
{
    size_t n = 0;
    for (struct cv_object *o = rt->table; o; o = o->hh.next) {
        if (!runtime__listed(o)) continue;
        struct cv_object_info info;
        runtime__info(o, &info);
        if (fn) fn(data, &info);
        n++;
    }
    return n;
}

size_t cv_runtime_count(const struct cv_runtime *rt)
{
    return HASH_COUNT(rt->table);
}

size_t cv_runtime_shard_count(const struct cv_runtime *rt, uint32_t shard)
{
    return shard < rt->shards ? rt->shard_count[shard] : 0;
}

const char *cv_object_state_name(enum cv_object_state s)
{
    return cv_sm_state_name(&cv_object_sm_conf, (int)s);
}
