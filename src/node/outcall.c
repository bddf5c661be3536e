/* Calls made by objects, routed by the host.
 *
 * Happy path: the owner of the target id (catalog shard owner, or the node a "<node>/x" id is pinned
 * to) is this node -> the incall checks and cv_runtime_call; another node -> objects.call to it over the
 * peer pool (sent only while its connection is up, so that a call to a dead owner is routed again when
 * its shard moves instead of waiting for that node to come back); the response goes to the caller.
 * Failure modes: errors after which the call certainly did not run (cv_err_reroute: redirect, owner
 * unavailable, connection closed), no owner yet or no connection are retried with backoff (10..200 ms)
 * until the deadline (30 s by default), which then gives the last error (a target of a known type the
 * catalog lacks is created by the call, incall.c); every other error is final. Closing completes every call with
 * CV_ECLOSED. A final error always carries a message (cv_strerror's when nothing better is known). */
#include "node/outcall.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"
#include "net/peers.h"
#include "node/incall.h"
#include "rpc.pb-c.h"
#include "util/log.h"

/* A call made by an object, routed by the host. */
struct rcall {
    struct cv_outcall_link link; /* first: oc->calls */
    struct cv_outcall *oc;
    char *type, *id, *method;
    char *call_id; /* owned; NULL when none */
    struct cv_caller *caller; /* owned: the original caller's identity (cv_caller_dup), internal set */
    uint8_t *req;
    size_t len;
    cv_runtime_call_cb cb;
    void *data;
    uint64_t deadline, retry_at;
    unsigned backoff;
    bool waiting;
    int last_status;
    char last_error[256];
};

void cv_outcall_init(struct cv_outcall *oc, struct cv_hctx *x, unsigned timeout_ms)
{
    oc->x = x;
    oc->timeout_ms = timeout_ms;
    oc->calls.next = oc->calls.prev = &oc->calls;
}

bool cv_outcall_busy(const struct cv_outcall *oc)
{
    return oc->calls.next != &oc->calls;
}

static void outcall__free(struct rcall *rc)
{
    struct cv_hctx *x = rc->oc->x;
    rc->link.prev->next = rc->link.next;
    rc->link.next->prev = rc->link.prev;
    free(rc->type);
    free(rc->id);
    free(rc->method);
    free(rc->call_id);
    free(rc->caller);
    free(rc->req);
    free(rc);
    cv_hctx_release(x);
}

static void outcall__complete(struct rcall *rc, int status, const char *error, const uint8_t *resp, size_t len)
{
    rc->cb(rc->data, status, status ? (error && *error ? error : cv_strerror(status)) : NULL,
           resp ? resp : (const uint8_t *)"", len);
    outcall__free(rc);
}

static void outcall__wait(struct rcall *rc, int status, const char *error)
{
    rc->last_status = status;
    snprintf(rc->last_error, sizeof rc->last_error, "%s", error ? error : cv_strerror(status));
    rc->waiting = true;
    rc->retry_at = cv_mono_ms() + rc->backoff;
    rc->backoff = rc->backoff * 2 > CV_OUTCALL_RETRY_MAX_MS ? CV_OUTCALL_RETRY_MAX_MS : rc->backoff * 2;
    cv_hctx_wake(rc->oc->x); /* retried from the host's tick */
}

static void outcall__local_done(void *data, int status, const char *error, const uint8_t *resp, size_t len)
{
    struct rcall *rc = data;
    if (status == CV_EREDIRECT && !rc->oc->x->closing) { /* deactivated before it ran: find it again */
        outcall__wait(rc, status, error);
        return;
    }
    outcall__complete(rc, status, error, resp, len);
}

static void outcall__remote_done(void *data, int status, const char *error, const uint8_t *body, size_t len)
{
    struct rcall *rc = data;
    if (rc->oc->x->closing || status == CV_ECANCELED) {
        outcall__complete(rc, CV_ECLOSED, "node is shutting down", NULL, 0);
    } else if (cv_err_reroute(status)) { /* it did not run there: route it again */
        outcall__wait(rc, status, error);
    } else if (status != 0) { /* CV_EAPP's body: the packed application error (core/apperr.h) */
        outcall__complete(rc, status, error, status == CV_EAPP ? body : NULL, status == CV_EAPP ? len : 0);
    } else {
        Cverse__Rpc__CallResponse *r = cverse__rpc__call_response__unpack(NULL, len, body);
        if (!r) {
            outcall__complete(rc, CV_EPROTO, "undecodable CallResponse", NULL, 0);
            return;
        }
        outcall__complete(rc, 0, NULL, r->response.data, r->response.len);
        cverse__rpc__call_response__free_unpacked(r, NULL);
    }
}

static int outcall__send(struct cv_hctx *h, struct rcall *rc, const char *owner, uint64_t now)
{
    /* Calls are only sent while the owner's connection is up, so that a call to a dead owner is routed
     * again when its shard moves instead of waiting for that node to come back. */
    struct cv_rpc_client *cli = cv_peers_by_id_up(h->peers, owner);
    if (!cli) {
        char msg[CV_NODE_ID_MAX + 32];
        snprintf(msg, sizeof msg, "no connection to %s", owner);
        outcall__wait(rc, CV_EUNAVAIL, msg);
        return 0;
    }
    Cverse__Rpc__CallRequest q = CVERSE__RPC__CALL_REQUEST__INIT;
    q.type = rc->type;
    q.id = rc->id;
    q.method = rc->method;
    q.request.data = rc->req;
    q.request.len = rc->len;
    q.map_index = cv_catalog_applied_index(h->cat);
    q.call_id = rc->call_id ? rc->call_id : (char *)"";
    q.caller_user = (char *)rc->caller->user_id;
    q.caller_roles = (char *)rc->caller->roles;
    q.internal = rc->caller->internal;
    size_t n = cverse__rpc__call_request__get_packed_size(&q);
    uint8_t *buf = malloc(n ? n : 1);
    int rv = buf ? 0 : CV_ENOMEM;
    if (buf) {
        cverse__rpc__call_request__pack(&q, buf);
        rv = cv_rpc_call(cli, "objects.call", buf, n, (unsigned)(rc->deadline - now), outcall__remote_done, rc);
        free(buf);
    }
    if (rv) /* a final answer: it carries its own message, not the last attempt's */
        snprintf(rc->last_error, sizeof rc->last_error, "cannot call %.100s on %s: %s", rc->id, owner,
                 cv_strerror(rv));
    return rv;
}

/* One routing attempt: 0 when the call is under way or waits for a retry; a final code otherwise (the
 * message is in rc->last_error). */
static int outcall__attempt(struct rcall *rc)
{
    struct cv_hctx *h = rc->oc->x;
    uint64_t now = cv_mono_ms();
    rc->waiting = false;
    if (h->closing) return CV_ECLOSED;
    if (now >= rc->deadline) {
        int st = rc->last_status == CV_ENOTFOUND ? CV_ENOTFOUND : CV_EUNAVAIL;
        char last[sizeof rc->last_error];
        snprintf(last, sizeof last, "%s", rc->last_error);
        snprintf(rc->last_error, sizeof rc->last_error, "%.40s %.60s: no answer within %u ms (last: %.100s)",
                 rc->type, rc->id, rc->oc->timeout_ms, last);
        return st;
    }
    struct cv_placement p;
    char owner[CV_NODE_ID_MAX];
    int rv = cv_hctx_owner(h, rc->id, &p, owner);
    if (rv) {
        snprintf(rc->last_error, sizeof rc->last_error, "%s", rv == CV_EINVAL ? "invalid object id"
                 : "object id is pinned to an unknown node");
        return rv == CV_EINVAL ? CV_EINVAL : CV_ENOTFOUND;
    }
    if (!owner[0]) {
        outcall__wait(rc, CV_EUNAVAIL, "shard has no owner");
        return 0;
    }
    if (strcmp(owner, h->self) != 0) return outcall__send(h, rc, owner, now);
    struct cv_verdict v;
    struct cv_call_ctx ctx = {.call_id = rc->call_id, .caller = rc->caller};
    rv = cv_incall_local(h, rc->type, rc->id, rc->method, rc->req, rc->len, &ctx, outcall__local_done, rc, &v);
    if (rv == 0) return 0;
    if (rv == CV_EREDIRECT || rv == CV_EUNAVAIL) {
        outcall__wait(rc, rv, v.msg);
        return 0;
    }
    snprintf(rc->last_error, sizeof rc->last_error, "%s", v.msg);
    return rv;
}

int cv_outcall_call(struct cv_outcall *oc, const char *type, const char *id, const char *method, const uint8_t *req,
                     size_t len, const struct cv_call_ctx *ctx, cv_runtime_call_cb cb, void *cb_data)
{
    struct cv_hctx *h = oc->x;
    const char *call_id = ctx ? ctx->call_id : NULL;
    struct cv_caller internal = {"", "", true}; /* a call without a context is still an object's */
    if (h->closing) return CV_ECLOSED;
    struct rcall *rc = calloc(1, sizeof *rc);
    if (!rc) return CV_ENOMEM;
    rc->type = strdup(type);
    rc->id = strdup(id);
    rc->method = strdup(method);
    rc->req = malloc(len ? len : 1);
    rc->call_id = call_id ? strdup(call_id) : NULL;
    rc->caller = cv_caller_dup(ctx && ctx->caller ? ctx->caller : &internal);
    if (rc->caller) rc->caller->internal = true; /* every call made here is an object's */
    if (!rc->type || !rc->id || !rc->method || !rc->req || (call_id && !rc->call_id) || !rc->caller) {
        free(rc->call_id);
        free(rc->caller);
        free(rc->type);
        free(rc->id);
        free(rc->method);
        free(rc->req);
        free(rc);
        return CV_ENOMEM;
    }
    memcpy(rc->req, req, len);
    rc->len = len;
    rc->oc = oc;
    rc->cb = cb;
    rc->data = cb_data;
    rc->deadline = cv_mono_ms() + oc->timeout_ms;
    rc->backoff = CV_OUTCALL_RETRY_MIN_MS;
    rc->link.next = oc->calls.next; /* at the head: a retry pass in progress does not visit it */
    rc->link.prev = &oc->calls;
    rc->link.next->prev = &rc->link;
    oc->calls.next = &rc->link;
    cv_hctx_hold(h);
    int rv = outcall__attempt(rc);
    if (rv != 0) {
        rc->cb = NULL;
        outcall__free(rc); /* a final answer on the first attempt: returned, never called back */
    }
    return rv;
}

void cv_outcall_retry(struct cv_outcall *oc)
{
    uint64_t now = cv_mono_ms();
    for (struct cv_outcall_link *l = oc->calls.next, *next; l != &oc->calls; l = next) {
        struct rcall *rc = (struct rcall *)l;
        next = l->next;
        if (!rc->waiting || (now < rc->retry_at && now < rc->deadline && !oc->x->closing)) continue;
        int rv = outcall__attempt(rc);
        if (rv != 0) outcall__complete(rc, rv, rc->last_error, NULL, 0);
    }
}

