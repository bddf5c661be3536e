/* One object: its lifecycle state machine, references, ready list, mailbox, timers and replies.
 *
 * Happy path: runtime.c creates an object (obj__new, ACTIVATING), appends calls to its mailbox and puts
 * it on the ready list; the pump runs one entry at a time (obj__run_next). A call stays in flight until
 * the handler replies (cv_reply_ok/cv_reply_error), only then is the object ready again, which is what
 * serialises async handlers. Timers enqueue ticks into the same mailbox (a slow tick is coalesced).
 *
 * A service-form type's handler comes from its protoc-c service struct and answers through a closure
 * that is cv_reply_ok (closure_data is the cv_reply); an application error (cv_reply_app_error) is the
 * status CV_EAPP with the packed code and details as the answer's body (core/apperr.h).
 *
 * Failure modes: a reply with the wrong message type (or an invalid application code) fails the call with
 * CV_EINVAL; an out-of-memory
 * tick is dropped with a warning. Every move of the lifecycle goes through cv_sm: an illegal move or a
 * broken invariant (mailbox counts, work in the wrong state) aborts debug builds. Objects are reference
 * counted (table, live timers, outgoing calls, host operations and a state save in flight) so that
 * memory outlives every callback that names it. A persisted type's answers may be held until the state
 * they saw is committed (state.c).
 *
 * Memory: one allocation holds the object, its id and its state; what only some objects need (timers,
 * durable state, call ids, reminders, an idle timeout) is in o->x, allocated on first use, so that an idle
 * object of a memory-only type costs about 200 bytes (docs/benchmarks.md, P6). */
#include "objects/object.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/apperr.h"
#include "cverse/error.h"
#include "util/log.h"

static const struct cv_sm_state obj__states[OBJ_N_STATES] = {
    [OBJ_ACTIVATING] = {"ACTIVATING", CV_SM_INITIAL,
                        CV_SM_BIT(OBJ_ACTIVE) | CV_SM_BIT(OBJ_GONE) | CV_SM_BIT(OBJ_DEACTIVATE_PENDING)},
    [OBJ_DEACTIVATE_PENDING] = {"DEACTIVATE_PENDING", 0, CV_SM_BIT(OBJ_GONE) | CV_SM_BIT(OBJ_DEACTIVATING)},
    [OBJ_ACTIVE] = {"ACTIVE", 0, CV_SM_BIT(OBJ_DEACTIVATING)},
    [OBJ_DEACTIVATING] = {"DEACTIVATING", 0, CV_SM_BIT(OBJ_GONE)},
    [OBJ_GONE] = {"GONE", CV_SM_FINAL, 0},
};

const struct cv_sm_conf cv_object_sm_conf = {"object", obj__states, OBJ_N_STATES};

static struct obj__timer *obj__timers(const struct cv_object *o)
{
    return o->x ? o->x->timers : NULL;
}

/* What each state promises about the object's data. */
static const char *obj__invariant(const struct cv_sm *m, int prev)
{
    const struct cv_object *o = (const struct cv_object *)m; /* sm is the first member */
    size_t n = 0;
    for (const struct obj__mail *e = obj__mail_first(o); e; e = e == o->mail ? NULL : e->next) n++;
    enum obj__state s = obj__state(o);
    if (n != o->queued + o->ticks) return "mailbox count";
    if (o->queued > o->rt->capacity) return "mailbox over capacity";
    if ((s == OBJ_ACTIVATING || s == OBJ_DEACTIVATE_PENDING) && o->in_flight)
        return "call in flight while activating";
    if (s == OBJ_DEACTIVATING && obj__timers(o)) return "live timer while deactivating";
    if (s == OBJ_GONE && (o->in_flight || o->mail || obj__timers(o))) return "GONE with work";
    if (o->refs < 1) return "no reference";
    return NULL;
}

void obj__move(struct cv_object *o, enum obj__state to)
{
    cv_sm_move(&o->sm, (int)to);
}

void obj__check(const struct cv_object *o)
{
    cv_sm_check(&o->sm);
}

/* ---- life and references ---- */

struct cv_object *obj__new(struct cv_runtime *rt, const struct cv_object_type *t, const char *id,
                           const struct cv_placement *p)
{
    /* One allocation: the object, its id and (inline) its state. */
    size_t idlen = strlen(id), inl = obj__state_inline(t);
    struct cv_object *o = calloc(1, inl ? obj__state_offset(t, idlen) + inl : sizeof *o + idlen + 1);
    if (!o) return NULL;
    memcpy(o->id, id, idlen + 1);
    o->rt = rt;
    o->type = t;
    if (obj__state_alloc(o) != 0) goto err_after_o;
    o->shard = p->shard;
    o->pinned = p->kind == CV_PLACE_NODE;
    o->refs = 1; /* the table's */
    HASH_ADD_KEYPTR(hh, rt->table, o->id, idlen, o);
    if (!o->hh.tbl) goto err_after_state;
    if (!o->pinned) rt->shard_count[o->shard]++;
    rt->live++;
    cv_sm_init(&o->sm, &cv_object_sm_conf, OBJ_ACTIVATING, obj__invariant, o->id);
    return o;

err_after_state:
    obj__state_release_all(o);
err_after_o:
    free(o);
    return NULL;
}

void obj__unref(struct cv_object *o)
{
    if (--o->refs > 0) return;
    struct cv_runtime *rt = o->rt;
    cv_sm_fini(&o->sm);
    obj__state_release_all(o);
    free(o);
    rt->live--;
    rt->ops.released(rt); /* a closing runtime may finish now */
}

/* ---- ready list ---- */

void obj__ready(struct cv_object *o)
{
    struct cv_runtime *rt = o->rt;
    if (o->on_ready || obj__state(o) == OBJ_GONE) return;
    o->on_ready = true;
    o->rnext = NULL;
    if (rt->ready_tail) rt->ready_tail->rnext = o;
    else rt->ready_head = o;
    rt->ready_tail = o;
    uv_idle_start(&rt->pump, rt->ops.pump);
}

struct cv_object *obj__ready_pop(struct cv_runtime *rt)
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

void obj__mail_push(struct cv_object *o, struct obj__mail *m)
{
    m->next = o->mail ? o->mail->next : m; /* the ring's first */
    if (o->mail) o->mail->next = m;
    o->mail = m;
    if (m->method) o->queued++;
    else o->ticks++;
}

static struct obj__mail *obj__mail_pop(struct cv_object *o)
{
    struct obj__mail *m = obj__mail_first(o);
    if (!m) return NULL;
    if (m == o->mail) o->mail = NULL;
    else o->mail->next = m->next;
    m->next = NULL;
    if (m->method) o->queued--;
    else o->ticks--;
    return m;
}

void obj__mail_free(struct obj__mail *m)
{
    if (m->req) protobuf_c_message_free_unpacked(m->req, NULL);
    free(m->call_id);
    free(m->client_id);
    free(m->caller);
    free(m->remind);
    free(m);
}

static void obj__timer_unref(struct obj__timer *t);

/* Entries are popped before their callback runs, so a callback may call into the runtime (it gets
 * CV_EREDIRECT/CV_ECLOSED for this object). */
void obj__drain(struct cv_object *o, int status)
{
    struct obj__mail *m;
    while ((m = obj__mail_pop(o))) {
        if (m->method) {
            m->cb(m->data, status, cv_strerror(status), (const uint8_t *)"", 0);
        } else if (m->timer) { /* a reminder entry has none: the scheduler fires it again at the next owner */
            m->timer->pending = false;
            obj__timer_unref(m->timer);
        }
        obj__mail_free(m);
    }
}

/* ---- timers ---- */

static void obj__timer_unref(struct obj__timer *t)
{
    if (--t->refs > 0) return;
    struct cv_object *o = t->o;
    free(t);
    obj__unref(o);
}

static void obj__timer_closed(uv_handle_t *h)
{
    obj__timer_unref(h->data);
}

static void obj__timer_kill(struct obj__timer *t)
{
    if (!t->live) return;
    t->live = false;
    struct obj__timer **p = &t->o->x->timers; /* a live timer: o->x exists */
    while (*p != t) p = &(*p)->next;
    *p = t->next;
    uv_timer_stop(&t->handle);
    uv_close((uv_handle_t *)&t->handle, obj__timer_closed);
}

void obj__stop_timers(struct cv_object *o)
{
    while (obj__timers(o)) obj__timer_kill(o->x->timers);
}

static void obj__timer_fired(uv_timer_t *h)
{
    struct obj__timer *t = h->data;
    struct cv_object *o = t->o;
    if (!t->live || obj__state(o) != OBJ_ACTIVE || t->pending) return; /* coalesce slow ticks */
    struct obj__mail *m = calloc(1, sizeof *m);
    if (!m) {
        CV_WARN("objects: %s: timer tick dropped (out of memory)", o->id);
        return;
    }
    m->timer = t;
    t->pending = true;
    t->refs++;
    obj__mail_push(o, m);
    obj__ready(o);
}

int cv_object_timer_start(cv_object *o, uint64_t timeout_ms, uint64_t repeat_ms, cv_timer_cb cb,
                          void *data, uint64_t *id)
{
    if (!o || !cb) return CV_EINVAL;
    if (obj__state(o) != OBJ_ACTIVATING && obj__state(o) != OBJ_ACTIVE) return CV_ECLOSED;
    struct obj__side *x = obj__side(o); /* the object's first timer allocates it */
    struct obj__timer *t = x ? calloc(1, sizeof *t) : NULL;
    if (!t) return CV_ENOMEM;
    uv_timer_init(o->rt->loop, &t->handle);
    t->handle.data = t;
    t->o = o;
    t->id = ++x->next_timer_id;
    t->cb = cb;
    t->data = data;
    t->repeat = repeat_ms != 0;
    t->live = true;
    t->refs = 1;
    t->next = x->timers;
    x->timers = t;
    o->refs++;
    uv_timer_start(&t->handle, obj__timer_fired, timeout_ms, repeat_ms);
    if (id) *id = t->id;
    return 0;
}

int cv_object_timer_stop(cv_object *o, uint64_t id)
{
    for (struct obj__timer *t = obj__timers(o); t; t = t->next) {
        if (t->id == id) {
            obj__timer_kill(t);
            return 0;
        }
    }
    return CV_ENOTFOUND;
}

static void obj__run_tick(struct cv_object *o, struct obj__timer *t)
{
    t->pending = false;
    if (t->live) {
        t->cb(o, t->data);
        if (!t->repeat) obj__timer_kill(t);
    }
    obj__timer_unref(t);
}

/* ---- running the mailbox, replies ---- */

/* A module usually carries its own copy of the generated code of a shared .proto (its descriptors are
 * then other addresses than the node's); the wire format is what both sides agree on. */
bool obj__same_message(const ProtobufCMessageDescriptor *a, const ProtobufCMessageDescriptor *b)
{
    return a == b ||
           (a && b && a->magic == PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC && strcmp(a->name, b->name) == 0);
}

static void obj__reply_finish(cv_reply *r, int status, const char *error, const uint8_t *resp, size_t len)
{
    struct cv_object *o = r->o;
    struct obj__mail *m = r->m;
    struct cv_runtime *rt = o->rt;
    o->in_flight = false; /* before the callback: it may call this object again */
    free(r);
    obj__calls_record(o, m, status, error, resp, len); /* committed with the state it changed */
    /* A persisted state (on_write): the answer waits for its commit (state.c), which is what makes it
     * true whenever it is released. */
    bool held = obj__state_reply(o, m->method, status, error, resp, len, m->cb, m->data);
    /* A reply after the node's serving window (the process stopped inside the handler) is never
     * acknowledged: the caller retries at the shard's next owner, and this copy's memory, deactivated
     * once the node fences, never shows the effect. */
    if (!held && rt->serve_until && cv_mono_ms() >= rt->serve_until(rt->serve_data)) {
        status = CV_EUNAVAIL;
        error = "node fenced: lease not confirmed";
        resp = (const uint8_t *)"";
        len = 0;
    }
    if (!held) m->cb(m->data, status, error, resp, len);
    obj__mail_free(m);
    obj__state_after(o);
    if (o->mail || obj__state(o) == OBJ_DEACTIVATING) obj__ready(o);
    obj__check(o);
}

int cv_reply_ok(cv_reply *r, const ProtobufCMessage *resp)
{
    if (!resp || !obj__same_message(resp->descriptor, r->m->method->response)) {
        CV_WARN("objects: %s.%s replied with the wrong message type", r->o->type->name, r->m->method->name);
        obj__reply_finish(r, CV_EINVAL, "handler replied with the wrong message type", (const uint8_t *)"", 0);
        return CV_EINVAL;
    }
    size_t len = protobuf_c_message_get_packed_size(resp);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        obj__reply_finish(r, CV_ENOMEM, cv_strerror(CV_ENOMEM), (const uint8_t *)"", 0);
        return 0;
    }
    protobuf_c_message_pack(resp, buf);
    obj__reply_finish(r, 0, NULL, buf, len);
    free(buf);
    return 0;
}

int cv_reply_error(cv_reply *r, int code, const char *msg)
{
    if (code >= 0) code = CV_EINVAL;
    obj__reply_finish(r, code, msg ? msg : cv_strerror(code), (const uint8_t *)"", 0);
    return 0;
}

/* The answer's body is the packed code and details (core/apperr.h), its error string the message. */
int cv_reply_app_error(cv_reply *r, const char *code, const char *msg, const ProtobufCMessage *details)
{
    if (!cv_apperr_code_valid(code)) {
        CV_WARN("objects: %s.%s answered an invalid application code", r->o->type->name, r->m->method->name);
        obj__reply_finish(r, CV_EINVAL, "handler answered an invalid application error code", (const uint8_t *)"", 0);
        return CV_EINVAL;
    }
    size_t dlen = details ? protobuf_c_message_get_packed_size(details) : 0;
    uint8_t *dbuf = details ? malloc(dlen ? dlen : 1) : NULL, *body = NULL;
    size_t len = 0;
    if (dbuf) protobuf_c_message_pack(details, dbuf);
    struct cv_app_error e = {code, "", details ? details->descriptor->name : "", dbuf, dlen};
    int rv = details && !dbuf ? CV_ENOMEM : cv_apperr_pack(&e, &body, &len);
    free(dbuf);
    if (rv != 0) {
        obj__reply_finish(r, rv, cv_strerror(rv), (const uint8_t *)"", 0);
        return 0;
    }
    obj__reply_finish(r, CV_EAPP, msg ? msg : "", body, len);
    free(body);
    return 0;
}

/* ---- the service form: handlers from protoc-c's service struct, answering through a closure ---- */

cv_object *cv_call_object(void *call) { return ((cv_reply *)call)->o; }
void *cv_call_state(void *call) { return obj__state_mem(((cv_reply *)call)->o); }
int cv_call_fail(void *call, int code, const char *msg) { return cv_reply_error(call, code, msg); }

static int obj__fail_app(void *call, const char *code, const ProtobufCMessage *details, const char *fmt,
                         va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt ? fmt : "", ap);
    return cv_reply_app_error(call, code, msg, details);
}

int cv_call_fail_app(void *call, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rv = obj__fail_app(call, code, NULL, fmt, ap);
    va_end(ap);
    return rv;
}

int cv_call_fail_app_details(void *call, const char *code, const ProtobufCMessage *details, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rv = obj__fail_app(call, code, details, fmt, ap);
    va_end(ap);
    return rv;
}

/* The closure every service handler gets: its answer (NULL: a failure without a message). */
static void obj__closure(const ProtobufCMessage *msg, void *call)
{
    if (msg) cv_reply_ok(call, msg);
    else cv_reply_error(call, CV_EINVAL, "handler answered without a message");
}

/* Calls the service handler of r's method: the rows of a service-form type's table are in descriptor
 * order (registry.c), and the handlers follow the service's base in that order (protoc-c's layout). */
static void obj__invoke(struct cv_object *o, cv_reply *r)
{
    typedef void (*handler_fn)(ProtobufCService *svc, const ProtobufCMessage *in, ProtobufCClosure done,
                               void *call);
    ProtobufCService *svc = (ProtobufCService *)o->type->service; /* handlers take it non-const */
    const handler_fn *h = (const handler_fn *)(svc + 1);
    h[r->m->method - o->type->methods](svc, r->m->req, obj__closure, r);
}

void obj__run_next(struct cv_object *o)
{
    struct obj__mail *m = obj__mail_pop(o);
    if (!m) return;
    if (o->x) o->x->last_used = uv_now(o->rt->loop); /* idle deactivation counts from here */
    if (m->remind) {
        obj__run_reminder(o, m);
        obj__mail_free(m);
        obj__state_after(o);
        if (o->mail && obj__state(o) == OBJ_ACTIVE) obj__ready(o);
        return;
    }
    if (!m->method) {
        struct obj__timer *t = m->timer;
        free(m);
        obj__run_tick(o, t);
        obj__state_after(o);
        if (o->mail && obj__state(o) == OBJ_ACTIVE) obj__ready(o);
        return;
    }
    if (obj__calls_repeat(o, m)) { /* a repeated call id: answered from its record, not run */
        obj__mail_free(m);
        obj__state_after(o);
        if (o->mail) obj__ready(o);
        return;
    }
    cv_reply *r = malloc(sizeof *r);
    if (!r) {
        m->cb(m->data, CV_ENOMEM, cv_strerror(CV_ENOMEM), (const uint8_t *)"", 0);
        obj__mail_free(m);
        if (o->mail) obj__ready(o);
        return;
    }
    r->o = o;
    r->m = m;
    o->in_flight = true;
    /* may reply now (obj__reply_finish) or later; the caller's client id is readable while the handler
     * runs (cv_object_caller_client): a handler that replies later keeps it from here if it needs it */
    struct cv_runtime *rt = o->rt;
    char *client = m->client_id; /* taken: a reply from inside the handler frees m */
    m->client_id = NULL;
    struct cv_caller *caller = m->caller; /* taken too */
    m->caller = NULL;
    static const struct cv_caller anonymous = {"", "", false};
    const char *outer = rt->caller_client; /* a handler may run inside another's callback */
    const struct cv_caller *outer_caller = rt->caller;
    rt->caller_client = client ? client : "";
    rt->caller = caller ? caller : &anonymous;
    if (o->type->service) obj__invoke(o, r);
    else m->method->handler(o, m->req, r);
    rt->caller_client = outer;
    rt->caller = outer_caller;
    free(client);
    free(caller);
}

/* ---- accessors ---- */

void *cv_object_state(cv_object *o) { return obj__state_mem(o); }
const char *cv_object_id(const cv_object *o) { return o->id; }
const char *cv_object_type_name(const cv_object *o) { return o->type->name; }
uint32_t cv_object_shard(const cv_object *o) { return o->shard; }
const char *cv_object_node_id(const cv_object *o) { return o->rt->node_id; }
const char *cv_object_caller_client(const cv_object *o) { return o ? o->rt->caller_client : NULL; }
const struct cv_caller *cv_object_caller(const cv_object *o) { return o ? o->rt->caller : NULL; }

bool cv_caller_has_role(const struct cv_caller *c, const char *role)
{
    size_t n = role ? strlen(role) : 0;
    for (const char *p = c && c->roles ? c->roles : ""; n && *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && !memcmp(p, role, n)) return true;
        p += len + (end != NULL);
    }
    return false;
}

struct cv_caller *cv_caller_dup(const struct cv_caller *c)
{
    const char *user = c && c->user_id ? c->user_id : "", *roles = c && c->roles ? c->roles : "";
    size_t ul = strlen(user) + 1, rl = strlen(roles) + 1;
    struct cv_caller *d = malloc(sizeof *d + ul + rl);
    if (!d) return NULL;
    char *s = (char *)(d + 1);
    memcpy(s, user, ul);
    memcpy(s + ul, roles, rl);
    *d = (struct cv_caller){.user_id = s, .roles = s + ul, .internal = c && c->internal};
    return d;
}
