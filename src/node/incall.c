/* Incoming object calls (objects.call).
 *
 * Happy path: known type and method -> (a call in form JSON or ANY, from a gate, which has no types:
 * the request mapped to the method's message with its descriptors, pbjson/codec.h) -> this node owns the
 * id (shard owner in the catalog, or the node an id "<node>/x" is pinned to) -> the node serves (ready
 * once, follows a leader) -> the catalog has the object with that type -> cv_runtime_call; the response
 * goes back when the handler replied.
 * Failure modes: the node is fenced (lease not confirmed) -> CV_EUNAVAIL, retryable; not the owner ->
 * CV_EREDIRECT with a Redirect body (our applied index, the owner we
 * know); malformed request -> CV_EPROTO; JSON or an Any that does not fit the method's request ->
 * CV_EINVAL (before the ownership checks); unknown type/method, or an id of another type -> CV_ENOTFOUND;
 * a full mailbox -> CV_EBUSY. An id of a known type the catalog lacks is activated by the call (first
 * call): the owner proposes a CreateObject fenced on its ownership at the shard's epoch (one per id in
 * flight: later first calls wait for the same), and serves the waiting calls once it applied; a create
 * refused because the shard moved, or one that did not commit, answers CV_EREDIRECT (routed again: the
 * create is idempotent and no call ran). The answer goes back in the call's form: packed bytes, proto3
 * JSON (a response that does not decode as the method's response: CV_EIO), or packed bytes with the
 * response's message name for the gate's Any.
 * Statistics: every answer but a redirect is counted (node/stats.h) when it is sent, with the type,
 * method and shard the verdict found and the time since this node took the call. */
#include "node/incall.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HASH_NONFATAL_OOM 1 /* a failed add leaves hh.tbl NULL instead of exiting */
#include <uthash.h>

#include "core/access.h"
#include "cverse/error.h"
#include "net/frame.h"
#include "node/stats.h"
#include "pbjson/codec.h"
#include "pbjson/encode.h"
#include "rpc.pb-c.h"
#include "util/log.h"

/* A call waiting for the first-call creation of its object (struct first). */
struct fwait {
    struct fwait *next;
    char *method, *call_id, *client_id; /* owned; call_id and client_id NULL when none */
    struct cv_caller *caller;           /* owned: the call's caller (cv_caller_dup) */
    uint8_t *req;           /* owned copy */
    size_t len;
    cv_runtime_call_cb cb;
    void *data; /* borrowed: the caller's */
};

/* A CreateObject this node proposed for an id a call found absent; every call to the id meanwhile waits
 * on it (one proposal per id however many first calls race). Owned by in->first until its answer. */
struct first {
    UT_hash_handle hh; /* in->first, keyed by id */
    struct cv_incall *in;
    uint64_t epoch; /* of the shard when proposed (the create's fence) */
    bool listed; /* in in->first (an add that found no memory leaves it out: later calls propose again) */
    char type[CV_HOST_TYPE_MAX];
    struct fwait *waiters, **tail;
    char id[]; /* the key */
};

/* An objects.call being served (in the runtime, or waiting for its object's first-call create). */
struct icall {
    struct cv_incall *in;
    struct cv_rpc_conn *conn;
    uint64_t id;
    uint32_t shard;     /* of the object, once accepted (for a late redirect) */
    /* statistics (node/stats.h): what the verdict knew, and when this node took the call */
    const struct cv_object_type *type;
    const struct cv_method *method;
    bool placed;
    uint64_t taken_ns;
    /* the call's form (CallRequest.form): JSON and ANY are mapped here, with method's descriptors */
    Cverse__Rpc__CallForm form;
    bool compact;
};

static int fail(struct cv_verdict *v, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct cv_verdict *v, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->msg, sizeof v->msg, fmt, ap);
    va_end(ap);
    return v->status = status;
}

void cv_incall_init(struct cv_incall *in, struct cv_hctx *x)
{
    *in = (struct cv_incall){.x = x};
    x->in = in;
}

/* Whether this node may execute calls: it was caught up with the log once (h->started) and still follows
 * a leader. Being an entry or two behind is the normal replication window (and during an apply raft's
 * last_applied lags the commit index), so it is not required to be caught up at this very instant. */
static bool serving(const struct cv_hctx *h, const char **why)
{
    if (!h->started) {
        *why = "not caught up with the catalog yet";
        return false;
    }
    if (!cv_hctx_serving(h)) { /* retryable: the gate routes elsewhere */
        *why = "fenced: lease not confirmed";
        return false;
    }
    if (h->stopping || !cv_consensus_has_leader(h->cons)) {
        *why = h->stopping ? "shutting down" : "no raft leader known";
        return false;
    }
    return true;
}

/* ---- activation on first call ---- */

static void fwait__free(struct fwait *w)
{
    free(w->method);
    free(w->call_id);
    free(w->client_id);
    free(w->caller);
    free(w->req);
    free(w);
}

/* The CreateObject of a first call committed (status 0, the catalog is at index) or failed: the
 * waiting calls go through the checks again (now finding the object) or fail. A failed or unknown
 * proposal certainly did not run any call and creating is idempotent: they are routed again. */
static void incall__first_done(void *data, int status, uint64_t index)
{
    struct first *f = data;
    struct cv_incall *in = f->in;
    struct cv_hctx *x = in->x;
    if (f->listed) HASH_DEL(in->first, f);
    if (status == 0) cv_hctx_activate_applied(x, f->type, f->id, index); /* `created` runs once, here */
    char msg[256];
    for (struct fwait *w = f->waiters, *next; w; w = next) {
        next = w->next;
        struct cv_verdict v;
        int rv = status;
        if (status == CV_EEXIST)
            snprintf(msg, sizeof msg, "object %.100s exists with another type", f->id);
        else if (status == CV_ECONFLICT)
            snprintf(msg, sizeof msg, "%.100s: its shard moved before its first call's create: call again", f->id);
        else if (status)
            snprintf(msg, sizeof msg, "creating %.100s on its first call did not commit (%s): call again",
                     f->id, cv_strerror(status));
        if (status == 0 && x->closing) {
            rv = CV_ECLOSED;
            snprintf(msg, sizeof msg, "node is shutting down");
        } else if (status == 0) {
            struct cv_call_ctx ctx = {.call_id = w->call_id, .client_id = w->client_id, .caller = w->caller};
            rv = cv_incall_local(x, f->type, f->id, w->method, w->req, w->len, &ctx, w->cb, w->data, &v);
            snprintf(msg, sizeof msg, "%s", v.msg);
        }
        if (rv == CV_EEXIST) rv = CV_ENOTFOUND;
        else if (rv && status) rv = x->closing ? CV_ECLOSED : CV_EREDIRECT;
        if (rv) w->cb(w->data, rv, msg, (const uint8_t *)"", 0);
        fwait__free(w);
    }
    free(f);
    cv_hctx_release(x);
}

static int incall__first_propose(struct first *f)
{
    Cverse__Catalog__Command cmd = CVERSE__CATALOG__COMMAND__INIT;
    Cverse__Catalog__CmdCreateObject co = CVERSE__CATALOG__CMD_CREATE_OBJECT__INIT;
    co.type = f->type;
    co.id = f->id;
    co.owner = (char *)f->in->x->self; /* fenced: applied only while we own the shard at this epoch */
    co.epoch = f->epoch;
    cmd.cmd_case = CVERSE__CATALOG__COMMAND__CMD_CREATE_OBJECT;
    cmd.create_object = &co;
    return cv_consensus_propose(f->in->x->cons, &cmd, CV_HOST_PROPOSE_TIMEOUT_MS, incall__first_done, f);
}

/* A call to an object of a known type the catalog lacks (this node owns it and serves): the call waits
 * for a CreateObject proposed here (one per id; later first calls join it). 0: cb fires later. */
static int incall__first(struct cv_incall *in, const struct cv_object_type *t, const struct cv_method *m,
                         const char *id, const uint8_t *req, size_t len, const struct cv_call_ctx *ctx,
                         cv_runtime_call_cb cb, void *data, struct cv_verdict *v)
{
    const char *call_id = ctx ? ctx->call_id : NULL, *client_id = ctx ? ctx->client_id : NULL;
    bool internal = ctx && ctx->caller && ctx->caller->internal;
    /* The call creates the object: object_lifecycle_rules' CREATE applies (docs/security.md) */
    if (cv_access_life(&in->x->cfg->access_rules, CV_LIFE_CREATE, t->name, id, internal))
        return fail(v, CV_EPERM, "creating %.100s %.100s is not permitted to %s callers (object_lifecycle_rules)",
                    t->name, id, internal ? "internal" : "external");
    size_t idlen = strlen(id);
    if (idlen >= CV_HOST_ID_MAX || strlen(t->name) >= CV_HOST_TYPE_MAX)
        return fail(v, CV_EINVAL, "object id or type too long");
    struct first *f = NULL;
    HASH_FIND(hh, in->first, id, idlen, f);
    struct fwait *w = calloc(1, sizeof *w);
    if (!w || !(w->method = strdup(m->name)) || !(w->req = malloc(len ? len : 1)) ||
        (call_id && !(w->call_id = strdup(call_id))) || (client_id && !(w->client_id = strdup(client_id))) ||
        !(w->caller = cv_caller_dup(ctx ? ctx->caller : NULL)))
        goto err_after_w;
    if (len) memcpy(w->req, req, len);
    *w = (struct fwait){.method = w->method, .call_id = w->call_id, .client_id = w->client_id,
                        .caller = w->caller, .req = w->req, .len = len, .cb = cb, .data = data};
    if (!f) {
        if (!(f = calloc(1, sizeof *f + idlen + 1))) goto err_after_w;
        f->in = in;
        memcpy(f->id, id, idlen + 1);
        snprintf(f->type, sizeof f->type, "%s", t->name);
        f->tail = &f->waiters;
        cv_catalog_shard_owner(in->x->cat, v->shard, &f->epoch);
        int rv = incall__first_propose(f);
        if (rv) {
            free(f);
            fwait__free(w);
            return fail(v, CV_EUNAVAIL, "cannot create %.100s on its first call: %s", id, cv_strerror(rv));
        }
        HASH_ADD(hh, in->first, id[0], idlen, f);
        f->listed = f->hh.tbl != NULL;
        cv_hctx_hold(in->x);
        in->first_created++;
    }
    *f->tail = w;
    f->tail = &w->next;
    return v->status = 0;

err_after_w:
    if (w) fwait__free(w);
    return fail(v, CV_ENOMEM, "%s", cv_strerror(CV_ENOMEM));
}

/* The verdict of handing a call to the runtime (rv: cv_runtime_call_id's or cv_runtime_call_active's). */
static int incall__queued(struct cv_verdict *v, int rv, const char *id, const struct cv_method *m)
{
    switch (rv) {
    case 0: return v->status = 0;
    case CV_EREDIRECT: return fail(v, rv, "object %.100s is being deactivated", id);
    case CV_EBUSY: return fail(v, rv, "mailbox of %.100s is full; retry later", id);
    case CV_EPROTO: return fail(v, rv, "request is not a valid %s", m->request->name);
    case CV_ECONFLICT: return fail(v, rv, "object %.100s is active with another type", id);
    default: return fail(v, rv, "%s", cv_strerror(rv));
    }
}

/* The type and method of a call into v->type/method, or CV_ENOTFOUND with the message every front end
 * answers (a gate has no types: its clients see these texts). */
static int incall__method(const struct cv_hctx *h, const char *type, const char *method, struct cv_verdict *v)
{
    v->type = cv_registry_type(h->reg, type);
    if (!v->type) return fail(v, CV_ENOTFOUND, "unknown object type \"%.100s\"", type);
    v->method = cv_type_method(v->type, method);
    if (!v->method)
        return fail(v, CV_ENOTFOUND, "object type \"%.100s\" has no method \"%.100s\"", type, method);
    return 0;
}

int cv_incall_local(struct cv_hctx *h, const char *type, const char *id, const char *method,
                    const uint8_t *req, size_t len, const struct cv_call_ctx *ctx, cv_runtime_call_cb cb,
                    void *data, struct cv_verdict *v)
{
    const char *call_id = ctx ? ctx->call_id : NULL;
    memset(v, 0, sizeof *v);
    if (incall__method(h, type, method, v)) return v->status;
    const struct cv_object_type *t = v->type;
    const struct cv_method *m = v->method;
    bool internal = ctx && ctx->caller && ctx->caller->internal;
    if (cv_access_call(&h->cfg->access_rules, type, id, method, internal))
        return fail(v, CV_EPERM, "%.100s.%.100s on %.100s is not permitted to %s callers (object_access_rules)", type,
                    method, id, internal ? "object-to-object" : "client");
    if (call_id && strlen(call_id) > CV_CALL_ID_MAX)
        return fail(v, CV_EINVAL, "call id longer than %d bytes", CV_CALL_ID_MAX);
    struct cv_placement p;
    int rv = cv_hctx_owner(h, id, &p, v->owner);
    if (rv == CV_EINVAL) return fail(v, CV_EINVAL, "invalid object id \"%.100s\"", id);
    if (rv) return fail(v, CV_ENOTFOUND, "object id \"%.100s\" is pinned to an unknown node", id);
    v->shard = p.shard;
    v->placed = true;
    if (strcmp(v->owner, h->self) != 0)
        return fail(v, CV_EREDIRECT, "%s is not the owner of %.100s (shard %u, owner %s)", h->self, id,
                    p.shard, v->owner[0] ? v->owner : "none");
    const char *why;
    if (!serving(h, &why)) return fail(v, CV_EUNAVAIL, "node %s is not ready: %s", h->self, why);
    /* The common case, an object active here as a t: no catalog read (see cv_runtime_call_active). */
    rv = cv_runtime_call_active(h->rt, t, m, id, req, len, ctx, cb, data);
    if (rv != CV_ENOTFOUND) return incall__queued(v, rv, id, m);
    char have[CV_HOST_TYPE_MAX];
    rv = cv_catalog_object_get(h->cat, id, have, sizeof have, NULL);
    if (rv == CV_ENOTFOUND) /* never created (or deleted): the call creates it */
        return incall__first(h->in, t, m, id, req, len, ctx, cb, data, v);
    if (rv == CV_EINVAL) return fail(v, CV_EINVAL, "invalid object id \"%.100s\"", id);
    if (rv) return fail(v, rv, "catalog lookup of %.100s failed: %s", id, cv_strerror(rv));
    if (strcmp(have, type) != 0)
        return fail(v, CV_ENOTFOUND, "object %.100s is a %s, not a %s", id, have, type);
    return incall__queued(v, cv_runtime_call_ctx(h->rt, type, id, method, req, len, ctx, cb, data), id, m);
}

static void incall__redirect(struct cv_hctx *x, struct cv_rpc_conn *conn, uint64_t id, const struct cv_verdict *v)
{
    Cverse__Rpc__Redirect rd = CVERSE__RPC__REDIRECT__INIT;
    rd.applied_index = cv_catalog_applied_index(x->cat);
    rd.owner = (char *)v->owner;
    rd.shard = v->shard;
    uint8_t buf[128];
    size_t n = cverse__rpc__redirect__pack(&rd, buf);
    cv_rpc_respond(conn, id, CV_EREDIRECT, v->msg, buf, n);
}

static void incall__free(struct icall *ic)
{
    struct cv_hctx *x = ic->in->x;
    cv_rpc_conn_unref(ic->conn);
    free(ic);
    cv_hctx_release(x);
}

/* The call was answered with status: counted (node/stats.h) unless it was a redirect (the call was not
 * served here, the owner counts it), then freed. */
static void incall__end(struct icall *ic, int status)
{
    struct cv_node_stats *st = ic->in->x->stats;
    if (st && status != CV_EREDIRECT) {
        uint64_t us = ic->taken_ns ? (cv_mono_ns() - ic->taken_ns) / 1000 : 0;
        cv_node_stats_count(st, ic->type, ic->method, ic->placed ? ic->shard : CV_STATS_NO_SHARD, status, us);
    }
    incall__free(ic);
}

/* Answers a call that ran with its response in the call's form: packed (BYTES), packed with the
 * message's name (ANY: the gate builds the Any), or proto3 JSON (JSON). The status it answered. */
static int incall__answer(struct icall *ic, const uint8_t *resp, size_t len)
{
    Cverse__Rpc__CallResponse r = CVERSE__RPC__CALL_RESPONSE__INIT;
    char err[256], *json = NULL;
    int status = 0;
    if (ic->form == CVERSE__RPC__CALL_FORM__CALL_FORM_JSON) {
        unsigned flags = ic->compact ? 0 : CV_PBJSON_EMIT_DEFAULTS;
        status = cv_pbjson_bytes_to_json_text(ic->method->response, resp, len, flags, &json, err, sizeof err);
        if (status == CV_EPROTO) status = CV_EIO; /* the handler's bytes, not the client's: 500 */
        if (status) {
            cv_rpc_respond(ic->conn, ic->id, status, err, NULL, 0);
            return status;
        }
        r.response_json = json;
    } else {
        r.response.data = (uint8_t *)resp;
        r.response.len = len;
        if (ic->form == CVERSE__RPC__CALL_FORM__CALL_FORM_ANY)
            r.response_type = (char *)ic->method->response->name;
    }
    size_t n = cverse__rpc__call_response__get_packed_size(&r);
    uint8_t small[512]; /* cv_rpc_respond copies: most answers need no allocation */
    uint8_t *buf = n <= sizeof small ? small : malloc(n);
    if (buf) {
        cverse__rpc__call_response__pack(&r, buf);
        if (cv_rpc_respond(ic->conn, ic->id, 0, NULL, buf, n) == CV_ETOOBIG) {
            cv_rpc_respond(ic->conn, ic->id, CV_ETOOBIG, "response too large", NULL, 0);
            status = CV_ETOOBIG;
        }
    } else {
        cv_rpc_respond(ic->conn, ic->id, CV_ENOMEM, cv_strerror(CV_ENOMEM), NULL, 0);
        status = CV_ENOMEM;
    }
    if (buf != small) free(buf);
    free(json);
    return status;
}

static void incall__done(void *data, int status, const char *error, const uint8_t *resp, size_t len)
{
    struct icall *ic = data;
    struct cv_hctx *x = ic->in->x;
    if (status == 0) {
        status = incall__answer(ic, resp, len);
    } else if (status == CV_EREDIRECT) { /* deactivated before it ran: the caller retries */
        struct cv_verdict v = {.status = status, .shard = ic->shard};
        const char *owner = cv_catalog_shard_owner(x->cat, ic->shard, NULL);
        snprintf(v.msg, sizeof v.msg, "%s", error);
        snprintf(v.owner, sizeof v.owner, "%s", owner ? owner : "");
        incall__redirect(x, ic->conn, ic->id, &v);
    } else {
        cv_rpc_respond(ic->conn, ic->id, status, error, resp, len); /* CV_EAPP: its packed code, details */
    }
    incall__end(ic, status);
}

/* The request bytes of a call in form JSON or ANY (*out malloc'ed; NULL for BYTES: req->request is
 * they), mapped with the method's request descriptor: 0, or an error in v (404 for an unknown type or
 * method, 400 for JSON or an Any that does not fit the message), before any routing check, as a gate
 * with the types answered them. */
static int incall__map_request(const struct cv_hctx *h, struct icall *ic, const Cverse__Rpc__CallRequest *req,
                               uint8_t **out, size_t *len, struct cv_verdict *v)
{
    memset(v, 0, sizeof *v);
    ic->form = req->form;
    ic->compact = req->compact;
    bool json = req->form == CVERSE__RPC__CALL_FORM__CALL_FORM_JSON;
    if (req->form == CVERSE__RPC__CALL_FORM__CALL_FORM_BYTES) return 0;
    if (!json && req->form != CVERSE__RPC__CALL_FORM__CALL_FORM_ANY)
        return fail(v, CV_EINVAL, "unknown call form %d", (int)req->form);
    if (incall__method(h, req->type, req->method, v)) return v->status;
    const ProtobufCMessageDescriptor *d = v->method->request;
    if (json)
        return v->status = cv_pbjson_json_text_to_bytes(d, req->request_json, strlen(req->request_json), out,
                                                        len, v->msg, sizeof v->msg);
    return v->status = cv_pbjson_any_to_bytes(d, req->request.data, req->request.len, out, len, v->msg,
                                              sizeof v->msg);
}

/* Serves one objects.call (answered now, or by the runtime's callback). */
static void incall__serve(struct cv_incall *in, struct icall *ic, const uint8_t *body, size_t len)
{
    if (in->x->stats) ic->taken_ns = cv_mono_ns();
    struct cv_call_view cv;
    if (cv_call_view(body, len, &cv)) {
        cv_rpc_respond(ic->conn, ic->id, CV_EPROTO, "undecodable CallRequest", NULL, 0);
        incall__end(ic, CV_EPROTO);
        return;
    }
    const Cverse__Rpc__CallRequest *req = cv.c;
    struct cv_verdict v;
    uint8_t *mapped = NULL;
    size_t mlen = 0;
    int rv = incall__map_request(in->x, ic, req, &mapped, &mlen, &v);
    struct cv_caller who = {req->caller_user, req->caller_roles, req->internal};
    struct cv_call_ctx ctx = {.call_id = req->call_id[0] ? req->call_id : NULL,
                              .client_id = req->client_id[0] ? req->client_id : NULL, .caller = &who};
    if (rv == 0)
        rv = cv_incall_local(in->x, req->type, req->id, req->method, mapped ? mapped : req->request.data,
                             mapped ? mlen : req->request.len, &ctx, incall__done, ic, &v);
    cv_call_view_done(&cv);
    free(mapped);
    ic->shard = v.shard;
    ic->type = v.type;
    ic->method = v.method;
    ic->placed = v.placed;
    if (rv == 0) return;
    if (rv == CV_EREDIRECT) incall__redirect(in->x, ic->conn, ic->id, &v);
    else cv_rpc_respond(ic->conn, ic->id, rv, v.msg, NULL, 0);
    incall__end(ic, rv);
}

void cv_incall_handle(struct cv_incall *in, struct cv_rpc_conn *conn, uint64_t id, const uint8_t *body,
                      size_t len, uint32_t deadline_ms)
{
    struct icall *ic = calloc(1, sizeof *ic);
    if (!ic) {
        cv_rpc_respond(conn, id, CV_ENOMEM, cv_strerror(CV_ENOMEM), NULL, 0);
        return;
    }
    ic->in = in;
    ic->conn = conn;
    ic->id = id;
    cv_rpc_conn_ref(conn);
    cv_hctx_hold(in->x);
    (void)deadline_ms; /* the gate's deadline bounds the call; the runtime has no use for it */
    incall__serve(in, ic, body, len);
}
