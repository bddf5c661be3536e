/* Object hosting in a node: the runtime plus everything that ties it to the catalog and the network.
 *
 * Happy path.
 *  - objects.call (from a gate or another node): known type and method -> this node owns the id (shard
 *    owner in the catalog, or the node an id "<node>/x" is pinned to) -> the node is caught up -> the
 *    catalog has the object with that type -> cv_runtime_call; the response goes back when the handler
 *    replied. Not the owner: CV_EREDIRECT with a Redirect body (our applied index, the owner we know).
 *  - objects.create / objects.delete and cv_object_create / cv_object_delete: an object the local
 *    catalog already has (create) or lacks (delete) is answered at once; otherwise a CreateObject /
 *    DeleteObject is proposed and answered once applied here. Every node applies it; the owner activates
 *    a created object (its `created` hook runs there, once), every node destroys a deleted one.
 *  - Objects calling objects (runtime hook `call`): local targets go through the same checks as
 *    objects.call; remote ones are sent as objects.call to the owner. CV_EREDIRECT / CV_EUNAVAIL are
 *    retried with backoff (10..200 ms) until the call's deadline (30 s).
 *  - Shards: after every applied AssignShards (and after a raft snapshot was installed) objects of
 *    shards we no longer own are deactivated, and shards we gained get their auto-load objects.
 *  - Release (phase 1 of a shard move, docs/architecture.md): a shard the leader took from us is
 *    unassigned and waits for us. Once the runtime holds none of its objects any more (calls in flight
 *    replied, deactivated hooks ran: polled each tick), one ReleaseShards for all such shards is
 *    proposed; only then may the leader give the shard to its new owner. Failed proposals are retried
 *    while the catalog still says we have to release. This does not need the node to be started: a
 *    node that never hosted (restarted) releases at once, or it could block its own readiness.
 *  - Auto-load objects (cluster.auto_load_objects): once the node is first ready, a queue of (entry,
 *    shard) items is worked off, at most 256 CreateObject proposals in flight (the consensus batches
 *    what arrives in one loop iteration into one entry). /ready waits for the queue to drain.
 *  - catalog.subscribe: the answer is the current ShardMap; the connection then gets a KIND_EVENT
 *    "catalog.shard_map" with the full map after changes of nodes, owners or leader, at most one per
 *    50 ms.
 *
 * Two copies of an object never coexist while the old owner is alive: it gives a shard up in one entry
 * (owner -> none), deactivates, and confirms with ReleaseShards before the leader assigns the new owner
 * in a later entry; a new owner activates only after it applied that assignment. A node declared dead
 * is not waited for: if it was only partitioned, lease fencing (roadmap) must stop it serving.
 *
 * Failure modes: malformed requests -> CV_EPROTO; unknown type/method/object -> CV_ENOTFOUND (a call to
 * an object the catalog lacks first waits up to 500 ms for this node to catch up with the log, so that
 * a create committed through another node is seen); proposals that fail or time out are reported to
 * the caller (auto-load items are queued again); a full mailbox -> CV_EBUSY. */
#include "node/host.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "cverse/error.h"
#include "net/peers.h"
#include "rpc.pb-c.h"
#include "util/log.h"

#define TICK_MS 20
#define PROPOSE_TIMEOUT_MS 10000
#define PARK_MS 500     /* a call to an absent object waits this long for the log to catch up */
#define PARK_MAX 1024   /* calls parked at once; more get CV_ENOTFOUND right away */
#define RETRY_MIN_MS 10
#define RETRY_MAX_MS 200
#define RELEASE_RETRY_MS 100 /* after a failed ReleaseShards proposal */
#define AL_NODE UINT32_MAX /* auto-load item not tied to a shard (per-node, pinned singleton) */
#define TYPE_MAX 128
#define ID_MAX 512

/* ---------------------------------------------------------------- types */

struct verdict {
    int status;
    bool absent; /* CV_ENOTFOUND because the catalog has no such object */
    char owner[CV_NODE_ID_MAX];
    uint32_t shard;
    char msg[256];
};

/* An objects.call being served (in the runtime, or parked until the log catches up). */
struct icall {
    struct cv_host *h;
    struct cv_rpc_conn *conn;
    uint64_t id;
    struct icall *next; /* parked list */
    uint8_t *body;      /* parked: the request, copied */
    size_t len;
    uint32_t shard;     /* of the object, once accepted (for a late redirect) */
    uint64_t min_index, deadline;
};

/* A call made by an object, routed by the host. */
struct rcall {
    struct cv_host *h;
    struct rcall *next, *prev; /* h->rcalls */
    char *type, *id, *method;
    uint8_t *req;
    size_t len;
    cv_runtime_call_cb cb;
    void *data;
    uint64_t deadline, retry_at;
    unsigned backoff;
    bool waiting, absent_retried;
    int last_status;
    char last_error[256];
};

/* objects.create / objects.delete, from the RPC (conn) or an object (cb). */
struct op {
    struct cv_host *h;
    struct op *next; /* soon list */
    bool create;
    char type[TYPE_MAX], id[ID_MAX];
    struct cv_rpc_conn *conn;
    uint64_t rid;
    cv_host_done_cb cb;
    void *data;
    int status;
    char msg[256];
};

struct al_item {
    uint32_t entry, shard;
};

struct al_prop {
    struct cv_host *h;
    struct al_item it;
};

struct cv_host {
    struct cv_host_opts o;        /* borrowed components */
    uv_loop_t *loop;
    struct cv_catalog *cat;
    struct cv_consensus *cons;
    struct cv_peers *peers;
    bool stopping;                /* the node is stopping: calls are refused */
    const struct cv_config *cfg;
    const char *self;
    struct cv_runtime *rt;
    cv_registry *reg;
    unsigned call_timeout_ms, al_max;
    uv_timer_t tick, push_timer, soon_timer, al_timer;

    struct cv_rpc_conn **subs;
    size_t n_subs, cap_subs;
    uint64_t last_push_ms, nodes_sig, restored_seen;

    struct rcall rcalls;          /* sentinel */
    struct icall *parked;
    size_t n_parked;
    struct op *soon, **soon_tail;

    uint8_t *owned;   /* shards whose gain was processed (auto-load queued) */
    bool started;     /* the node was ready once: activations and auto-load run */
    bool al_reported; /* "auto-load objects ready" logged */
    uint64_t started_ms;
    uint32_t *al_shard; /* per auto-load entry: the singleton's shard (AL_NODE if pinned/not singleton) */
    bool *al_ok;        /* per entry: its type is registered */
    struct al_item *alq;
    size_t al_head, al_tail, al_cap, al_inflight;

    bool rel_scan;     /* the catalog may hold shards waiting for our release */
    bool rel_inflight; /* one ReleaseShards proposal at a time */
    uint64_t rel_retry_ms;
    uint32_t *rel_shards; /* scratch for the proposal: shards and their epochs */
    uint64_t *rel_epochs;

    bool closing;
    size_t ops;       /* outstanding callbacks into the host (proposals, calls, ops) */
    int close_parts;  /* handles, peer clients and the runtime still closing */
    void (*done)(void *data);
    void *done_data;
};

static void maybe_freed(struct cv_host *h);

/* ---------------------------------------------------------------- small helpers */

static int fail(struct verdict *v, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct verdict *v, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->msg, sizeof v->msg, fmt, ap);
    va_end(ap);
    return v->status = status;
}

static bool owns_shard(void *data, uint32_t shard)
{
    struct cv_host *h = data;
    const char *o = cv_catalog_shard_owner(h->cat, shard, NULL);
    return o && strcmp(o, h->self) == 0;
}

/* Owner of id into owner ("" = unassigned). CV_EINVAL for a bad id, CV_ENOTFOUND if it is pinned to a
 * node the configuration does not have. */
static int target_owner(struct cv_host *h, const char *id, struct cv_placement *p, char *owner)
{
    if (cv_placement_parse(id, h->cfg->shards, p) != 0) return CV_EINVAL;
    if (p->kind == CV_PLACE_NODE) {
        if (p->node_len >= CV_NODE_ID_MAX) return CV_ENOTFOUND;
        memcpy(owner, p->node, p->node_len);
        owner[p->node_len] = '\0';
        return cv_config_node(h->cfg, owner) ? 0 : CV_ENOTFOUND;
    }
    const char *o = cv_catalog_shard_owner(h->cat, p->shard, NULL);
    snprintf(owner, CV_NODE_ID_MAX, "%s", o ? o : "");
    return 0;
}

static void timer_again(uv_timer_t *t, uv_timer_cb cb, uint64_t ms)
{
    if (!uv_is_active((uv_handle_t *)t)) uv_timer_start(t, cb, ms, 0);
}

/* Activates (type, id) here if we own it and it is not in the table (created: a new object). */
static void ensure_active(struct cv_host *h, const char *type, const char *id, bool created)
{
    struct cv_object_info info;
    if (!h->started || h->closing || cv_runtime_lookup(h->rt, id, &info) == 0) return;
    int rv = cv_runtime_activate(h->rt, type, id, created);
    if (rv == 0) CV_DEBUG("activated %s (%s)%s", id, type, created ? ", new" : "");
    else if (rv != CV_EREDIRECT) CV_WARN("cannot activate %s (%s): %s", id, type, cv_strerror(rv));
}

/* After entry `index` applied a CreateObject of (type, id) with status 0: activates it here if we own it,
 * as a new object (its `created` hook runs) only if that entry is the one that created it. A duplicate
 * CreateObject of an existing object (a proposer whose catalog lagged) reports 0 too, but the catalog
 * keeps the first entry's index, so the hook never runs twice. Called both from the proposer's callback
 * and from the apply observer, always right after the entry's commit, so the catalog is at `index`. */
static void activate_applied(struct cv_host *h, const char *type, const char *id, uint64_t index)
{
    char have[TYPE_MAX];
    uint64_t created_index = 0;
    int rv = cv_catalog_object_get_ex(h->cat, id, have, sizeof have, NULL, &created_index);
    if (rv != 0 || strcmp(have, type) != 0) { /* deleted or replaced since: nothing to activate */
        if (rv != CV_ENOTFOUND) CV_DEBUG("not activating %s (%s): %s", id, type, rv ? cv_strerror(rv) : have);
        return;
    }
    ensure_active(h, type, id, created_index == index);
}

/* ---------------------------------------------------------------- local calls */

/* Whether this node may execute calls: it was caught up with the log once (h->started) and still follows
 * a leader. Being an entry or two behind is the normal replication window (and during an apply raft's
 * last_applied lags the commit index), so it is not required to be caught up at this very instant. */
static bool serving(struct cv_host *h, const char **why)
{
    struct cv_consensus_status st;
    if (!h->started) {
        *why = "not caught up with the catalog yet";
        return false;
    }
    cv_consensus_status(h->cons, &st);
    if (!st.has_leader || h->stopping) {
        *why = h->stopping ? "shutting down" : "no raft leader known";
        return false;
    }
    return true;
}

/* The checks of a call to an object that should live here, then cv_runtime_call. Returns v->status:
 * 0 (cb fires later) or a code with v->msg (and v->owner/shard for CV_EREDIRECT). */
static int local_call(struct cv_host *h, const char *type, const char *id, const char *method,
                      const uint8_t *req, size_t len, cv_runtime_call_cb cb, void *data, struct verdict *v)
{
    memset(v, 0, sizeof *v);
    const struct cv_object_type *t = cv_registry_type(h->reg, type);
    if (!t) return fail(v, CV_ENOTFOUND, "unknown object type \"%.100s\"", type);
    const struct cv_method *m = cv_type_method(t, method);
    if (!m) return fail(v, CV_ENOTFOUND, "object type %s has no method \"%.100s\"", type, method);
    struct cv_placement p;
    int rv = target_owner(h, id, &p, v->owner);
    if (rv == CV_EINVAL) return fail(v, CV_EINVAL, "invalid object id \"%.100s\"", id);
    if (rv) return fail(v, CV_ENOTFOUND, "object id \"%.100s\" is pinned to an unknown node", id);
    v->shard = p.shard;
    if (strcmp(v->owner, h->self) != 0)
        return fail(v, CV_EREDIRECT, "%s is not the owner of %.100s (shard %u, owner %s)", h->self, id,
                    p.shard, v->owner[0] ? v->owner : "none");
    const char *why;
    if (!serving(h, &why)) return fail(v, CV_EUNAVAIL, "node %s is not ready: %s", h->self, why);
    char have[TYPE_MAX];
    rv = cv_catalog_object_get(h->cat, id, have, sizeof have, NULL);
    if (rv == CV_ENOTFOUND) {
        v->absent = true;
        return fail(v, CV_ENOTFOUND, "object not found: %.100s", id);
    }
    if (rv == CV_EINVAL) return fail(v, CV_EINVAL, "invalid object id \"%.100s\"", id);
    if (rv) return fail(v, rv, "catalog lookup of %.100s failed: %s", id, cv_strerror(rv));
    if (strcmp(have, type) != 0)
        return fail(v, CV_ENOTFOUND, "object %.100s is a %s, not a %s", id, have, type);
    rv = cv_runtime_call(h->rt, type, id, method, req, len, cb, data);
    switch (rv) {
    case 0: return v->status = 0;
    case CV_EREDIRECT: return fail(v, rv, "object %.100s is being deactivated", id);
    case CV_EBUSY: return fail(v, rv, "mailbox of %.100s is full; retry later", id);
    case CV_EPROTO: return fail(v, rv, "request is not a valid %s", m->request->name);
    case CV_ECONFLICT: return fail(v, rv, "object %.100s is active with another type", id);
    default: return fail(v, rv, "%s", cv_strerror(rv));
    }
}

/* ---------------------------------------------------------------- objects.call (incoming) */

static void respond_redirect(struct cv_host *h, struct cv_rpc_conn *conn, uint64_t id, const struct verdict *v)
{
    Cverse__Rpc__Redirect rd = CVERSE__RPC__REDIRECT__INIT;
    rd.applied_index = cv_catalog_applied_index(h->cat);
    rd.owner = (char *)v->owner;
    rd.shard = v->shard;
    uint8_t buf[128];
    size_t n = cverse__rpc__redirect__pack(&rd, buf);
    cv_rpc_respond(conn, id, CV_EREDIRECT, v->msg, buf, n);
}

static void icall_free(struct icall *ic)
{
    struct cv_host *h = ic->h;
    cv_rpc_conn_unref(ic->conn);
    free(ic->body);
    free(ic);
    h->ops--;
    maybe_freed(h);
}

static void icall_done(void *data, int status, const char *error, const uint8_t *resp, size_t len)
{
    struct icall *ic = data;
    if (status == 0) {
        Cverse__Rpc__CallResponse r = CVERSE__RPC__CALL_RESPONSE__INIT;
        r.response.data = (uint8_t *)resp;
        r.response.len = len;
        size_t n = cverse__rpc__call_response__get_packed_size(&r);
        uint8_t *buf = malloc(n ? n : 1);
        if (buf) {
            cverse__rpc__call_response__pack(&r, buf);
            if (cv_rpc_respond(ic->conn, ic->id, 0, NULL, buf, n) == CV_ETOOBIG)
                cv_rpc_respond(ic->conn, ic->id, CV_ETOOBIG, "response too large", NULL, 0);
        } else {
            cv_rpc_respond(ic->conn, ic->id, CV_ENOMEM, cv_strerror(CV_ENOMEM), NULL, 0);
        }
        free(buf);
    } else if (status == CV_EREDIRECT) { /* deactivated before it ran: the caller retries */
        struct verdict v = {.status = status, .shard = ic->shard};
        const char *owner = cv_catalog_shard_owner(ic->h->cat, ic->shard, NULL);
        snprintf(v.msg, sizeof v.msg, "%s", error);
        snprintf(v.owner, sizeof v.owner, "%s", owner ? owner : "");
        respond_redirect(ic->h, ic->conn, ic->id, &v);
    } else {
        cv_rpc_respond(ic->conn, ic->id, status, error, NULL, 0);
    }
    icall_free(ic);
}

static void park(struct cv_host *h, struct icall *ic, const uint8_t *body, size_t len, uint32_t deadline_ms)
{
    struct cv_consensus_status st;
    cv_consensus_status(h->cons, &st);
    uint64_t applied = cv_catalog_applied_index(h->cat);
    unsigned wait = deadline_ms && deadline_ms < PARK_MS ? deadline_ms : PARK_MS;
    ic->min_index = st.commit_index > applied ? st.commit_index : applied + 1;
    ic->deadline = cv_mono_ms() + wait;
    ic->len = len;
    memcpy(ic->body, body, len);
    ic->next = h->parked;
    h->parked = ic;
    h->n_parked++;
}

/* Serves one objects.call; a call to an absent object may be parked (may_park) and served again later. */
static void serve_call(struct cv_host *h, struct icall *ic, const uint8_t *body, size_t len, bool may_park,
                       uint32_t deadline_ms)
{
    Cverse__Rpc__CallRequest *req = cverse__rpc__call_request__unpack(NULL, len, body);
    if (!req) {
        cv_rpc_respond(ic->conn, ic->id, CV_EPROTO, "undecodable CallRequest", NULL, 0);
        icall_free(ic);
        return;
    }
    struct verdict v;
    int rv = local_call(h, req->type, req->id, req->method, req->request.data, req->request.len, icall_done,
                        ic, &v);
    cverse__rpc__call_request__free_unpacked(req, NULL);
    ic->shard = v.shard;
    if (rv == 0) return;
    if (v.absent && may_park && h->n_parked < PARK_MAX && (ic->body || (ic->body = malloc(len ? len : 1)))) {
        park(h, ic, body, len, deadline_ms);
        return;
    }
    if (rv == CV_EREDIRECT) respond_redirect(h, ic->conn, ic->id, &v);
    else cv_rpc_respond(ic->conn, ic->id, rv, v.msg, NULL, 0);
    icall_free(ic);
}

static void handle_call(struct cv_host *h, struct cv_rpc_conn *conn, uint64_t id, const uint8_t *body,
                        size_t len, uint32_t deadline_ms)
{
    struct icall *ic = calloc(1, sizeof *ic);
    if (!ic) {
        cv_rpc_respond(conn, id, CV_ENOMEM, cv_strerror(CV_ENOMEM), NULL, 0);
        return;
    }
    ic->h = h;
    ic->conn = conn;
    ic->id = id;
    cv_rpc_conn_ref(conn);
    h->ops++;
    serve_call(h, ic, body, len, true, deadline_ms);
}

/* Serves parked calls again once the log reached their index or their wait is over (or all: closing). */
static void unpark(struct cv_host *h, bool all)
{
    uint64_t applied = cv_catalog_applied_index(h->cat), now = cv_mono_ms();
    struct icall **pp = &h->parked, *due = NULL;
    while (*pp) {
        struct icall *ic = *pp;
        if (all || applied >= ic->min_index || now >= ic->deadline) {
            *pp = ic->next;
            ic->next = due;
            due = ic;
            h->n_parked--;
        } else {
            pp = &ic->next;
        }
    }
    while (due) {
        struct icall *ic = due;
        due = ic->next;
        if (h->closing) {
            cv_rpc_respond(ic->conn, ic->id, CV_ECLOSED, "node is shutting down", NULL, 0);
            icall_free(ic);
        } else {
            serve_call(h, ic, ic->body, ic->len, false, 0);
        }
    }
}

/* ---------------------------------------------------------------- calls made by objects */

static void rcall_free(struct rcall *rc)
{
    struct cv_host *h = rc->h;
    rc->prev->next = rc->next;
    rc->next->prev = rc->prev;
    free(rc->type);
    free(rc->id);
    free(rc->method);
    free(rc->req);
    free(rc);
    h->ops--;
    maybe_freed(h);
}

static void rcall_complete(struct rcall *rc, int status, const char *error, const uint8_t *resp, size_t len)
{
    rc->cb(rc->data, status, status ? (error && *error ? error : cv_strerror(status)) : NULL,
           resp ? resp : (const uint8_t *)"", len);
    rcall_free(rc);
}

static void rcall_wait(struct rcall *rc, int status, const char *error)
{
    rc->last_status = status;
    snprintf(rc->last_error, sizeof rc->last_error, "%s", error ? error : cv_strerror(status));
    rc->waiting = true;
    rc->retry_at = cv_mono_ms() + rc->backoff;
    rc->backoff = rc->backoff * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : rc->backoff * 2;
}

static void rcall_local_done(void *data, int status, const char *error, const uint8_t *resp, size_t len)
{
    struct rcall *rc = data;
    if (status == CV_EREDIRECT && !rc->h->closing) { /* deactivated before it ran: find it again */
        rcall_wait(rc, status, error);
        return;
    }
    rcall_complete(rc, status, error, resp, len);
}

static void rcall_remote_done(void *data, int status, const char *error, const uint8_t *body, size_t len)
{
    struct rcall *rc = data;
    if (rc->h->closing || status == CV_ECANCELED) {
        rcall_complete(rc, CV_ECLOSED, "node is shutting down", NULL, 0);
    } else if (cv_err_reroute(status)) { /* it did not run there: route it again */
        rcall_wait(rc, status, error);
    } else if (status != 0) {
        rcall_complete(rc, status, error, NULL, 0);
    } else {
        Cverse__Rpc__CallResponse *r = cverse__rpc__call_response__unpack(NULL, len, body);
        if (!r) {
            rcall_complete(rc, CV_EPROTO, "undecodable CallResponse", NULL, 0);
            return;
        }
        rcall_complete(rc, 0, NULL, r->response.data, r->response.len);
        cverse__rpc__call_response__free_unpacked(r, NULL);
    }
}

static int rcall_send(struct cv_host *h, struct rcall *rc, const char *owner, uint64_t now)
{
    /* Calls are only sent while the owner's connection is up, so that a call to a dead owner is routed
     * again when its shard moves instead of waiting for that node to come back. */
    int idx = cv_config_node_index(h->cfg, owner);
    struct cv_rpc_client *cli = idx >= 0 ? cv_peers_client_up(h->peers, (size_t)idx) : NULL;
    if (!cli) {
        char msg[CV_NODE_ID_MAX + 32];
        snprintf(msg, sizeof msg, "no connection to %s", owner);
        rcall_wait(rc, CV_EUNAVAIL, msg);
        return 0;
    }
    Cverse__Rpc__CallRequest q = CVERSE__RPC__CALL_REQUEST__INIT;
    q.type = rc->type;
    q.id = rc->id;
    q.method = rc->method;
    q.request.data = rc->req;
    q.request.len = rc->len;
    q.map_index = cv_catalog_applied_index(h->cat);
    size_t n = cverse__rpc__call_request__get_packed_size(&q);
    uint8_t *buf = malloc(n ? n : 1);
    int rv = buf ? 0 : CV_ENOMEM;
    if (buf) {
        cverse__rpc__call_request__pack(&q, buf);
        rv = cv_rpc_call(cli, "objects.call", buf, n, (unsigned)(rc->deadline - now), rcall_remote_done, rc);
        free(buf);
    }
    if (rv) /* a final answer: it carries its own message, not the last attempt's */
        snprintf(rc->last_error, sizeof rc->last_error, "cannot call %.100s on %s: %s", rc->id, owner,
                 cv_strerror(rv));
    return rv;
}

/* One routing attempt: 0 when the call is under way or waits for a retry; a final code otherwise (the
 * message is in rc->last_error). */
static int rcall_attempt(struct rcall *rc)
{
    struct cv_host *h = rc->h;
    uint64_t now = cv_mono_ms();
    rc->waiting = false;
    if (h->closing) return CV_ECLOSED;
    if (now >= rc->deadline) {
        int st = rc->last_status == CV_ENOTFOUND ? CV_ENOTFOUND : CV_EUNAVAIL;
        char last[sizeof rc->last_error];
        snprintf(last, sizeof last, "%s", rc->last_error);
        snprintf(rc->last_error, sizeof rc->last_error, "%.40s %.60s: no answer within %u ms (last: %.100s)",
                 rc->type, rc->id, h->call_timeout_ms, last);
        return st;
    }
    struct cv_placement p;
    char owner[CV_NODE_ID_MAX];
    int rv = target_owner(h, rc->id, &p, owner);
    if (rv) {
        snprintf(rc->last_error, sizeof rc->last_error, "%s", rv == CV_EINVAL ? "invalid object id"
                 : "object id is pinned to an unknown node");
        return rv == CV_EINVAL ? CV_EINVAL : CV_ENOTFOUND;
    }
    if (!owner[0]) {
        rcall_wait(rc, CV_EUNAVAIL, "shard has no owner");
        return 0;
    }
    if (strcmp(owner, h->self) != 0) return rcall_send(h, rc, owner, now);
    struct verdict v;
    rv = local_call(h, rc->type, rc->id, rc->method, rc->req, rc->len, rcall_local_done, rc, &v);
    if (rv == 0) return 0;
    if (rv == CV_EREDIRECT || rv == CV_EUNAVAIL || (v.absent && !rc->absent_retried)) {
        rc->absent_retried |= v.absent; /* absent: once more after the log moved on (see PARK_MS) */
        rcall_wait(rc, rv, v.msg);
        if (v.absent) rc->retry_at = now + PARK_MS / 2;
        return 0;
    }
    snprintf(rc->last_error, sizeof rc->last_error, "%s", v.msg);
    return rv;
}

/* Runtime hook `call`. */
static int host_call(void *data, const char *type, const char *id, const char *method, const uint8_t *req,
                     size_t len, cv_runtime_call_cb cb, void *cb_data)
{
    struct cv_host *h = data;
    if (h->closing) return CV_ECLOSED;
    struct rcall *rc = calloc(1, sizeof *rc);
    if (!rc) return CV_ENOMEM;
    rc->type = strdup(type);
    rc->id = strdup(id);
    rc->method = strdup(method);
    rc->req = malloc(len ? len : 1);
    if (!rc->type || !rc->id || !rc->method || !rc->req) {
        free(rc->type);
        free(rc->id);
        free(rc->method);
        free(rc->req);
        free(rc);
        return CV_ENOMEM;
    }
    memcpy(rc->req, req, len);
    rc->len = len;
    rc->h = h;
    rc->cb = cb;
    rc->data = cb_data;
    rc->deadline = cv_mono_ms() + h->call_timeout_ms;
    rc->backoff = RETRY_MIN_MS;
    rc->next = h->rcalls.next; /* at the head: a retry pass in progress does not visit it */
    rc->prev = &h->rcalls;
    rc->next->prev = rc;
    h->rcalls.next = rc;
    h->ops++;
    int rv = rcall_attempt(rc);
    if (rv != 0) {
        rc->cb = NULL;
        rcall_free(rc); /* a final answer on the first attempt: returned, never called back */
    }
    return rv;
}

static void retry_calls(struct cv_host *h)
{
    uint64_t now = cv_mono_ms();
    for (struct rcall *rc = h->rcalls.next, *next; rc != &h->rcalls; rc = next) {
        next = rc->next;
        if (!rc->waiting || (now < rc->retry_at && now < rc->deadline && !h->closing)) continue;
        int rv = rcall_attempt(rc);
        if (rv != 0) rcall_complete(rc, rv, rc->last_error, NULL, 0);
    }
}

/* ---------------------------------------------------------------- create / delete */

static void op_finish(struct op *op)
{
    struct cv_host *h = op->h;
    if (op->conn) {
        if (op->status != 0) {
            cv_rpc_respond(op->conn, op->rid, op->status, op->msg, NULL, 0);
        } else if (op->create) {
            Cverse__Rpc__CreateResponse r = CVERSE__RPC__CREATE_RESPONSE__INIT;
            r.id = op->id;
            uint8_t buf[ID_MAX + 16];
            cv_rpc_respond(op->conn, op->rid, 0, NULL, buf, cverse__rpc__create_response__pack(&r, buf));
        } else {
            Cverse__Rpc__DeleteResponse r = CVERSE__RPC__DELETE_RESPONSE__INIT;
            r.success = true;
            uint8_t buf[16];
            cv_rpc_respond(op->conn, op->rid, 0, NULL, buf, cverse__rpc__delete_response__pack(&r, buf));
        }
        cv_rpc_conn_unref(op->conn);
    } else if (op->cb) {
        op->cb(op->data, op->status, op->status ? op->msg : NULL);
    }
    free(op);
    h->ops--;
    maybe_freed(h);
}

static void soon_cb(uv_timer_t *t)
{
    struct cv_host *h = t->data;
    struct op *list = h->soon;
    h->soon = NULL;
    h->soon_tail = &h->soon;
    while (list) {
        struct op *op = list;
        list = op->next;
        op_finish(op);
    }
}

/* Completes op from the next loop iteration (never from inside the call that started it). */
static void op_soon(struct op *op, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void op_soon(struct op *op, int status, const char *fmt, ...)
{
    struct cv_host *h = op->h;
    op->status = status;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(op->msg, sizeof op->msg, fmt, ap);
        va_end(ap);
    }
    if (h->closing) { /* the soon timer is closed: only RPC callers get here (hooks refuse first) */
        op_finish(op);
        return;
    }
    op->next = NULL;
    *h->soon_tail = op;
    h->soon_tail = &op->next;
    timer_again(&h->soon_timer, soon_cb, 0);
}

static void op_proposed(void *data, int status, uint64_t index)
{
    struct op *op = data;
    op->status = status;
    if (status == 0 && op->create) activate_applied(op->h, op->type, op->id, index);
    else if (status == CV_EEXIST)
        snprintf(op->msg, sizeof op->msg, "object %.200s exists with another type", op->id);
    else if (status) snprintf(op->msg, sizeof op->msg, "catalog update failed: %s", cv_strerror(status));
    op_finish(op);
}

static void op_propose(struct op *op)
{
    struct cv_host *h = op->h;
    Cverse__Catalog__Command cmd = CVERSE__CATALOG__COMMAND__INIT;
    Cverse__Catalog__CmdCreateObject co = CVERSE__CATALOG__CMD_CREATE_OBJECT__INIT;
    Cverse__Catalog__CmdDeleteObject d = CVERSE__CATALOG__CMD_DELETE_OBJECT__INIT;
    if (op->create) {
        co.type = op->type;
        co.id = op->id;
        cmd.cmd_case = CVERSE__CATALOG__COMMAND__CMD_CREATE_OBJECT;
        cmd.create_object = &co;
    } else {
        d.id = op->id;
        cmd.cmd_case = CVERSE__CATALOG__COMMAND__CMD_DELETE_OBJECT;
        cmd.delete_object = &d;
    }
    int rv = cv_consensus_propose(h->cons, &cmd, PROPOSE_TIMEOUT_MS, op_proposed, op);
    if (rv) op_soon(op, rv, "cannot propose: %s", cv_strerror(rv));
}

/* Decides a create or delete: answered from the local catalog, or proposed. Always completes later. */
static void op_start(struct op *op)
{
    struct cv_host *h = op->h;
    struct cv_placement p;
    char owner[CV_NODE_ID_MAX], have[TYPE_MAX];
    if (h->closing) return op_soon(op, CV_ECLOSED, "node is shutting down");
    if (op->create && !cv_registry_type(h->reg, op->type))
        return op_soon(op, CV_ENOTFOUND, "unknown object type \"%.100s\"", op->type);
    int rv = target_owner(h, op->id, &p, owner);
    if (rv == CV_EINVAL) return op_soon(op, CV_EINVAL, "invalid object id \"%.100s\"", op->id);
    if (rv) return op_soon(op, CV_ENOTFOUND, "object id \"%.100s\" is pinned to an unknown node", op->id);
    rv = cv_catalog_object_get(h->cat, op->id, have, sizeof have, NULL);
    if (rv == CV_EINVAL) return op_soon(op, CV_EINVAL, "invalid object id \"%.100s\"", op->id);
    if (rv && rv != CV_ENOTFOUND) return op_soon(op, rv, "catalog lookup failed: %s", cv_strerror(rv));
    bool same = rv == 0 && strcmp(have, op->type) == 0;
    if (op->create && same) {
        ensure_active(h, op->type, op->id, false); /* exists: make sure it is live on its owner */
        return op_soon(op, 0, NULL);
    }
    if (op->create && rv == 0)
        return op_soon(op, CV_EEXIST, "object %.100s exists with type %s", op->id, have);
    if (!op->create && rv == CV_ENOTFOUND) return op_soon(op, 0, NULL); /* idempotent */
    if (!op->create && !same)
        return op_soon(op, CV_ENOTFOUND, "object %.100s is a %s, not a %.100s", op->id, have, op->type);
    op_propose(op);
}

static struct op *op_new(struct cv_host *h, bool create, const char *type, const char *id)
{
    struct op *op = calloc(1, sizeof *op);
    if (!op) return NULL;
    op->h = h;
    op->create = create;
    snprintf(op->type, sizeof op->type, "%s", type);
    snprintf(op->id, sizeof op->id, "%s", id);
    h->ops++;
    return op;
}

static int hook_op(struct cv_host *h, bool create, const char *type, const char *id, cv_host_done_cb cb,
                   void *data)
{
    if (h->closing) return CV_ECLOSED;
    if (strlen(type) >= TYPE_MAX || strlen(id) >= ID_MAX) return CV_EINVAL;
    struct op *op = op_new(h, create, type, id);
    if (!op) return CV_ENOMEM;
    op->cb = cb;
    op->data = data;
    op_start(op);
    return 0;
}

static int hook_create(void *data, const char *type, const char *id, cv_host_done_cb cb, void *cb_data)
{
    return hook_op(data, true, type, id, cb, cb_data);
}

static int hook_delete(void *data, const char *type, const char *id, cv_host_done_cb cb, void *cb_data)
{
    return hook_op(data, false, type, id, cb, cb_data);
}

static void handle_op(struct cv_host *h, bool create, struct cv_rpc_conn *conn, uint64_t id,
                      const uint8_t *body, size_t len)
{
    /* CreateRequest and DeleteRequest have the same fields. */
    Cverse__Rpc__CreateRequest *c = NULL;
    Cverse__Rpc__DeleteRequest *d = NULL;
    ProtobufCMessage *msg;
    const char *type, *oid;
    if (create) {
        msg = (ProtobufCMessage *)(c = cverse__rpc__create_request__unpack(NULL, len, body));
        type = c ? c->type : NULL;
        oid = c ? c->id : NULL;
    } else {
        msg = (ProtobufCMessage *)(d = cverse__rpc__delete_request__unpack(NULL, len, body));
        type = d ? d->type : NULL;
        oid = d ? d->id : NULL;
    }
    if (!msg) {
        cv_rpc_respond(conn, id, CV_EPROTO, create ? "undecodable CreateRequest" : "undecodable DeleteRequest",
                       NULL, 0);
        return;
    }
    struct op *op = NULL;
    if (!*type || !*oid || strlen(type) >= TYPE_MAX || strlen(oid) >= ID_MAX)
        cv_rpc_respond(conn, id, CV_EINVAL, "type and id are required (type < 128, id < 512 bytes)", NULL, 0);
    else if (!(op = op_new(h, create, type, oid)))
        cv_rpc_respond(conn, id, CV_ENOMEM, cv_strerror(CV_ENOMEM), NULL, 0);
    protobuf_c_message_free_unpacked(msg, NULL);
    if (!op) return;
    op->conn = conn;
    op->rid = id;
    cv_rpc_conn_ref(conn);
    op_start(op);
}

/* ---------------------------------------------------------------- shard map subscriptions */

static const char *role_name(int role)
{
    switch (role) {
    case CVERSE__CATALOG__ROLE__ROLE_VOTER: return "voter";
    case CVERSE__CATALOG__ROLE__ROLE_STANDBY: return "standby";
    case CVERSE__CATALOG__ROLE__ROLE_SPARE: return "spare";
    default: return "none";
    }
}

/* The current ShardMap, packed into a malloc'ed buffer. */
static int pack_map(struct cv_host *h, uint8_t **out, size_t *len)
{
    struct cv_catalog *cat = h->cat;
    struct cv_consensus_status st;
    cv_consensus_status(h->cons, &st);
    size_t nn = cv_catalog_node_count(cat);
    Cverse__Rpc__ShardMap m = CVERSE__RPC__SHARD_MAP__INIT;
    m.applied_index = cv_catalog_applied_index(cat);
    m.shards = h->cfg->shards;
    m.leader = st.leader_id;
    m.term = st.term;
    m.owners = malloc(h->cfg->shards * sizeof *m.owners);
    Cverse__Rpc__NodeAddr *addrs = calloc(nn ? nn : 1, sizeof *addrs);
    m.nodes = calloc(nn ? nn : 1, sizeof *m.nodes);
    int rv = CV_ENOMEM;
    if (!m.owners || !addrs || !m.nodes) goto out;
    m.n_owners = h->cfg->shards;
    for (uint32_t s = 0; s < h->cfg->shards; s++) {
        const char *o = cv_catalog_shard_owner(cat, s, NULL);
        m.owners[s] = (char *)(o ? o : "");
    }
    m.n_nodes = nn;
    for (size_t i = 0; i < nn; i++) {
        const struct cv_catalog_node *cn = cv_catalog_node_at(cat, i);
        cverse__rpc__node_addr__init(&addrs[i]);
        addrs[i].id = (char *)cn->id;
        addrs[i].advertise_addr = (char *)cn->advertise_addr;
        addrs[i].alive = cn->alive;
        addrs[i].role = (char *)role_name(cn->role);
        addrs[i].shards = cn->shards_owned;
        addrs[i].http_addr = (char *)cn->http_addr;
        m.nodes[i] = &addrs[i];
    }
    *len = cverse__rpc__shard_map__get_packed_size(&m);
    if ((*out = malloc(*len ? *len : 1))) {
        cverse__rpc__shard_map__pack(&m, *out);
        rv = 0;
    }
out:
    free(m.owners);
    free(m.nodes);
    free(addrs);
    return rv;
}

static void drop_sub(struct cv_host *h, size_t i)
{
    cv_rpc_conn_unref(h->subs[i]);
    h->subs[i] = h->subs[--h->n_subs];
}

static void push_cb(uv_timer_t *t)
{
    struct cv_host *h = t->data;
    h->last_push_ms = cv_mono_ms();
    if (h->n_subs == 0 || h->closing) return;
    uint8_t *buf;
    size_t len;
    if (pack_map(h, &buf, &len)) {
        CV_WARN("cannot build the shard map for subscribers: out of memory");
        return;
    }
    for (size_t i = h->n_subs; i-- > 0;) {
        int rv = cv_rpc_send_event(h->subs[i], "catalog.shard_map", buf, len);
        if (rv == CV_ECLOSED) drop_sub(h, i);
        else if (rv) CV_WARN("shard map push failed: %s", cv_strerror(rv));
    }
    free(buf);
}

/* Something subscribers see changed: push within CV_HOST_PUSH_MIN_MS of the previous push. */
static void map_changed(struct cv_host *h)
{
    if (h->closing || uv_is_active((uv_handle_t *)&h->push_timer)) return;
    uint64_t now = cv_mono_ms(), next = h->last_push_ms + CV_HOST_PUSH_MIN_MS;
    uv_timer_start(&h->push_timer, push_cb, next > now ? next - now : 0, 0);
}

static void handle_subscribe(struct cv_host *h, struct cv_rpc_conn *conn, uint64_t id, const uint8_t *body,
                             size_t len)
{
    Cverse__Rpc__SubscribeRequest *req = cverse__rpc__subscribe_request__unpack(NULL, len, body);
    if (!req) {
        cv_rpc_respond(conn, id, CV_EPROTO, "undecodable SubscribeRequest", NULL, 0);
        return;
    }
    bool known = false;
    for (size_t i = 0; i < h->n_subs; i++) known |= h->subs[i] == conn;
    if (!known && h->n_subs == h->cap_subs) {
        size_t cap = h->cap_subs ? 2 * h->cap_subs : 8;
        struct cv_rpc_conn **subs = realloc(h->subs, cap * sizeof *subs);
        if (!subs) goto nomem;
        h->subs = subs;
        h->cap_subs = cap;
    }
    uint8_t *buf;
    size_t n;
    if (pack_map(h, &buf, &n)) goto nomem;
    if (!known) {
        cv_rpc_conn_ref(conn);
        h->subs[h->n_subs++] = conn;
        CV_INFO("%s subscribed to the shard map", req->gate_id[0] ? req->gate_id : "a client");
    }
    cv_rpc_respond(conn, id, 0, NULL, buf, n);
    free(buf);
    cverse__rpc__subscribe_request__free_unpacked(req, NULL);
    return;

nomem:
    cv_rpc_respond(conn, id, CV_ENOMEM, cv_strerror(CV_ENOMEM), NULL, 0);
    cverse__rpc__subscribe_request__free_unpacked(req, NULL);
}

void cv_host_conn_closed(struct cv_host *h, struct cv_rpc_conn *conn)
{
    for (size_t i = 0; i < h->n_subs; i++) {
        if (h->subs[i] != conn) continue;
        drop_sub(h, i);
        return;
    }
}

static uint64_t fnv64(uint64_t x, const void *p, size_t len)
{
    for (size_t i = 0; i < len; i++) x = (x ^ ((const uint8_t *)p)[i]) * 1099511628211ull;
    return x;
}

/* FNV-1a over what subscribers see of the nodes (ids, addresses, liveness, roles, shard counts). */
static uint64_t nodes_signature(struct cv_host *h)
{
    uint64_t x = 1469598103934665603ull;
    for (size_t i = 0; i < cv_catalog_node_count(h->cat); i++) {
        const struct cv_catalog_node *cn = cv_catalog_node_at(h->cat, i);
        uint32_t parts[3] = {cn->alive, (uint32_t)cn->role, cn->shards_owned};
        x = fnv64(x, cn->id, strlen(cn->id) + 1);
        x = fnv64(x, cn->advertise_addr, strlen(cn->advertise_addr) + 1);
        x = fnv64(x, cn->http_addr, strlen(cn->http_addr) + 1);
        x = fnv64(x, parts, sizeof parts);
    }
    return x;
}

/* ---------------------------------------------------------------- auto-load objects */

static size_t al_pending(const struct cv_host *h)
{
    return h->al_tail - h->al_head + h->al_inflight;
}

static void al_push(struct cv_host *h, uint32_t entry, uint32_t shard)
{
    if (h->al_tail == h->al_cap) {
        if (h->al_head > 0) { /* slide the live part down before growing */
            memmove(h->alq, h->alq + h->al_head, (h->al_tail - h->al_head) * sizeof *h->alq);
            h->al_tail -= h->al_head;
            h->al_head = 0;
        }
        if (h->al_tail == h->al_cap) {
            size_t cap = h->al_cap ? 2 * h->al_cap : 256;
            struct al_item *q = realloc(h->alq, cap * sizeof *q);
            if (!q) abort(); /* ~8 bytes per shard */
            h->alq = q;
            h->al_cap = cap;
        }
    }
    h->alq[h->al_tail++] = (struct al_item){entry, shard};
}

static void al_id(struct cv_host *h, struct al_item it, char *buf, size_t len)
{
    const struct cv_autoload_cfg *e = &h->cfg->autoload[it.entry];
    if (e->per_shard) snprintf(buf, len, "shard#%u/%s", it.shard, e->id);
    else if (e->per_node) snprintf(buf, len, "%s/%s", h->self, e->id);
    else snprintf(buf, len, "%s", e->id);
}

static void al_check_done(struct cv_host *h)
{
    if (h->al_reported || !h->started || al_pending(h) > 0) return;
    h->al_reported = true;
    CV_INFO("auto-load objects of this node are created (%zu objects active, %llu ms after ready)",
            cv_runtime_count(h->rt), (unsigned long long)(cv_mono_ms() - h->started_ms));
}

static void al_schedule(struct cv_host *h);

static void al_created(void *data, int status, uint64_t index)
{
    struct al_prop *ap = data;
    struct cv_host *h = ap->h;
    const struct cv_autoload_cfg *e = &h->cfg->autoload[ap->it.entry];
    h->al_inflight--;
    h->ops--;
    if (!h->closing) {
        char id[ID_MAX];
        al_id(h, ap->it, id, sizeof id);
        if (status == 0) activate_applied(h, e->type, id, index);
        else if (status == CV_EEXIST)
            CV_ERROR("auto-load object %s: exists with a type other than %s", id, e->type);
        else al_push(h, ap->it.entry, ap->it.shard); /* not applied (or unknown): again, idempotent */
        al_schedule(h);
        al_check_done(h);
    }
    free(ap);
    maybe_freed(h);
}

/* One item: drop it if the shard is no longer ours, activate it if the catalog has it, else propose.
 * Returns false if the consensus refused the proposal (the item is back in the queue). */
static bool al_process(struct cv_host *h, struct al_item it)
{
    const struct cv_autoload_cfg *e = &h->cfg->autoload[it.entry];
    char id[ID_MAX], have[TYPE_MAX];
    if (it.shard != AL_NODE && !owns_shard(h, it.shard)) return true;
    al_id(h, it, id, sizeof id);
    int rv = cv_catalog_object_get(h->cat, id, have, sizeof have, NULL);
    if (rv == 0) {
        if (strcmp(have, e->type) != 0) CV_ERROR("auto-load object %s: the catalog has it as a %s", id, have);
        else ensure_active(h, e->type, id, false);
        return true;
    }
    if (rv != CV_ENOTFOUND) {
        CV_ERROR("auto-load object %s: catalog lookup failed: %s", id, cv_strerror(rv));
        return true;
    }
    struct al_prop *ap = malloc(sizeof *ap);
    Cverse__Catalog__Command cmd = CVERSE__CATALOG__COMMAND__INIT;
    Cverse__Catalog__CmdCreateObject co = CVERSE__CATALOG__CMD_CREATE_OBJECT__INIT;
    co.type = e->type;
    co.id = id;
    cmd.cmd_case = CVERSE__CATALOG__COMMAND__CMD_CREATE_OBJECT;
    cmd.create_object = &co;
    rv = ap ? cv_consensus_propose(h->cons, &cmd, PROPOSE_TIMEOUT_MS, al_created, ap) : CV_ENOMEM;
    if (rv) {
        free(ap);
        al_push(h, it.entry, it.shard);
        CV_WARN("auto-load object %s: cannot propose: %s", id, cv_strerror(rv));
        return false;
    }
    ap->h = h;
    ap->it = it;
    h->al_inflight++;
    h->ops++;
    return true;
}

static void al_pump(uv_timer_t *t)
{
    struct cv_host *h = t->data;
    if (h->closing) return;
    uint64_t t0 = cv_mono_ns();
    unsigned n = 0;
    while (h->al_inflight < h->al_max && h->al_head < h->al_tail) {
        struct al_item it = h->alq[h->al_head++];
        n++;
        if (!al_process(h, it)) break; /* retried from the tick */
    }
    if (n > 32)
        CV_DEBUG("auto-load: %u items in %.2f ms, %zu in flight, %zu queued", n,
                 (double)(cv_mono_ns() - t0) / 1e6, h->al_inflight, h->al_tail - h->al_head);
    al_check_done(h);
}

static void al_schedule(struct cv_host *h)
{
    if (!h->closing && h->al_head < h->al_tail && h->al_inflight < h->al_max)
        timer_again(&h->al_timer, al_pump, 0);
}

/* Shards that became ours get their per-shard and singleton auto-load objects; lost ones are forgotten
 * (their objects were deactivated by cv_runtime_deactivate_unowned). */
static void reconcile(struct cv_host *h)
{
    uint32_t gained = 0, lost = 0;
    size_t queued = al_pending(h);
    for (uint32_t s = 0; s < h->cfg->shards; s++) {
        bool own = owns_shard(h, s);
        if (own == (bool)h->owned[s]) continue;
        h->owned[s] = own;
        if (!own) {
            lost++;
            continue;
        }
        gained++;
        for (uint32_t e = 0; e < h->cfg->n_autoload; e++)
            if (h->al_ok[e] && (h->cfg->autoload[e].per_shard || h->al_shard[e] == s)) al_push(h, e, s);
    }
    if (gained || lost)
        CV_INFO("shards: gained %u, lost %u; %zu auto-load objects queued", gained, lost,
                al_pending(h) - queued);
    al_schedule(h);
}

static void start_autoload(struct cv_host *h)
{
    h->started = true;
    h->started_ms = cv_mono_ms();
    for (uint32_t e = 0; e < h->cfg->n_autoload; e++) {
        const struct cv_autoload_cfg *a = &h->cfg->autoload[e];
        struct cv_placement p;
        if (!h->al_ok[e]) continue;
        if (a->per_node) al_push(h, e, AL_NODE);
        else if (!a->per_shard && cv_placement_parse(a->id, h->cfg->shards, &p) == 0 &&
                 cv_placement_on_node(&p, h->self))
            al_push(h, e, AL_NODE); /* a singleton pinned to this node */
    }
    CV_INFO("node is ready: hosting objects (%zu auto-load entries)", h->cfg->n_autoload);
    reconcile(h);
    al_check_done(h);
}

/* ---------------------------------------------------------------- releasing shards (handoff phase 1) */

static void release_done(void *data, int status, uint64_t index)
{
    struct cv_host *h = data;
    h->rel_inflight = false;
    h->rel_scan = true; /* success: the scan finds them released; failure: proposed again */
    h->ops--;
    if (status == 0) CV_DEBUG("release of shards applied at index %llu", (unsigned long long)index);
    else if (!h->closing) {
        h->rel_retry_ms = cv_mono_ms() + RELEASE_RETRY_MS;
        if (status != CV_ECONFLICT) CV_WARN("releasing shards failed: %s; retrying", cv_strerror(status));
    }
    maybe_freed(h);
}

static void release_propose(struct cv_host *h, uint32_t n)
{
    Cverse__Catalog__CmdReleaseShards rs = CVERSE__CATALOG__CMD_RELEASE_SHARDS__INIT;
    rs.node = (char *)h->self;
    rs.n_shards = rs.n_epochs = n;
    rs.shards = h->rel_shards;
    rs.epochs = h->rel_epochs;
    Cverse__Catalog__Command cmd = CVERSE__CATALOG__COMMAND__INIT;
    cmd.cmd_case = CVERSE__CATALOG__COMMAND__CMD_RELEASE_SHARDS;
    cmd.release_shards = &rs;
    int rv = cv_consensus_propose(h->cons, &cmd, PROPOSE_TIMEOUT_MS, release_done, h);
    if (rv) {
        h->rel_retry_ms = cv_mono_ms() + RELEASE_RETRY_MS;
        CV_DEBUG("cannot propose the release of %u shards: %s", n, cv_strerror(rv));
        return;
    }
    h->rel_inflight = true;
    h->ops++;
    CV_INFO("shards: released %u (their objects are deactivated); proposing ReleaseShards", n);
}

/* Proposes the release of every shard that waits for us and has no object left in the runtime. Keeps
 * scanning (each tick) while some still have objects deactivating. */
static void release_scan(struct cv_host *h)
{
    struct cv_catalog *cat = h->cat;
    if (!h->rel_scan || h->rel_inflight || h->closing || cv_mono_ms() < h->rel_retry_ms)
        return;
    uint32_t waiting = 0, ready = 0;
    for (uint32_t s = 0; s < h->cfg->shards; s++) {
        const char *from;
        bool done;
        uint64_t epoch;
        if (cv_catalog_shard_release_state(cat, s, &from, &done) || done || strcmp(from, h->self) != 0)
            continue;
        waiting++;
        if (cv_runtime_shard_count(h->rt, s) > 0) continue;
        cv_catalog_shard_owner(cat, s, &epoch);
        h->rel_shards[ready] = s;
        h->rel_epochs[ready++] = epoch;
    }
    h->rel_scan = waiting > 0;
    if (ready > 0) release_propose(h, ready);
}

/* ---------------------------------------------------------------- catalog changes */

static void shards_changed(struct cv_host *h)
{
    int n = cv_runtime_deactivate_unowned(h->rt);
    if (n > 0) CV_INFO("deactivating %d objects of shards that moved away", n);
    if (h->started) reconcile(h);
    h->rel_scan = true;
    release_scan(h); /* shards without active objects are released right away */
    map_changed(h);
}

void cv_host_applied(struct cv_host *h, uint64_t index, const Cverse__Catalog__Batch *batch,
                     const struct cv_cmd_result *results)
{
    if (h->closing) return;
    bool moved = false;
    for (size_t i = 0; i < batch->n_commands; i++) {
        const Cverse__Catalog__Command *c = batch->commands[i];
        if (results[i].status != 0) continue;
        switch (c->cmd_case) {
        case CVERSE__CATALOG__COMMAND__CMD_ASSIGN_SHARDS: moved = true; break;
        case CVERSE__CATALOG__COMMAND__CMD_CREATE_OBJECT:
            activate_applied(h, c->create_object->type, c->create_object->id, index);
            break;
        case CVERSE__CATALOG__COMMAND__CMD_DELETE_OBJECT:
            if (cv_runtime_destroy(h->rt, c->delete_object->id) == 0)
                CV_INFO("object %s deleted at index %llu: destroying it", c->delete_object->id,
                        (unsigned long long)index);
            break;
        default: break;
        }
    }
    if (moved) shards_changed(h);
    uint64_t sig = nodes_signature(h);
    if (sig != h->nodes_sig) {
        h->nodes_sig = sig;
        map_changed(h);
    }
    if (h->parked) unpark(h, false);
}

void cv_host_leader_changed(struct cv_host *h)
{
    map_changed(h);
}

static void tick_cb(uv_timer_t *t)
{
    struct cv_host *h = t->data;
    const char *why;
    if (h->closing) return;
    if (!h->started && h->o.catalog_ready(h->o.data, &why)) start_autoload(h);
    struct cv_consensus_status st;
    cv_consensus_status(h->cons, &st);
    if (st.snapshots_restored != h->restored_seen) { /* the catalog was replaced wholesale */
        h->restored_seen = st.snapshots_restored;
        shards_changed(h);
    }
    if (h->parked) unpark(h, false);
    if (h->rcalls.next != &h->rcalls) retry_calls(h);
    release_scan(h);
    al_schedule(h);
}

/* ---------------------------------------------------------------- runtime hooks: cluster facts */

static uint32_t hook_node_shards(void *data)
{
    struct cv_host *h = data;
    const struct cv_catalog_node *me = cv_catalog_node_get(h->cat, h->self);
    return me ? me->shards_owned : 0;
}

static size_t hook_cluster_nodes(void *data)
{
    struct cv_host *h = data;
    size_t alive = 0;
    for (size_t i = 0; i < cv_catalog_node_count(h->cat); i++)
        alive += cv_catalog_node_at(h->cat, i)->alive;
    return alive;
}

static size_t hook_cluster_objects(void *data)
{
    struct cv_host *h = data;
    return cv_catalog_object_count(h->cat);
}

/* ---------------------------------------------------------------- public */

bool cv_host_handle_rpc(struct cv_host *h, struct cv_rpc_conn *conn, uint64_t id, const char *method,
                        const uint8_t *body, size_t len, uint32_t deadline_ms)
{
    if (strncmp(method, "objects.", 8) != 0 && strcmp(method, "catalog.subscribe") != 0) return false;
    if (h->closing) cv_rpc_respond(conn, id, CV_ECLOSED, "node is shutting down", NULL, 0);
    else if (strcmp(method, "objects.call") == 0) handle_call(h, conn, id, body, len, deadline_ms);
    else if (strcmp(method, "objects.create") == 0) handle_op(h, true, conn, id, body, len);
    else if (strcmp(method, "objects.delete") == 0) handle_op(h, false, conn, id, body, len);
    else if (strcmp(method, "catalog.subscribe") == 0) handle_subscribe(h, conn, id, body, len);
    else return false;
    return true;
}

bool cv_host_ready(struct cv_host *h, const char **why)
{
    if (!h->started) {
        *why = "auto-load objects not created yet";
        return false;
    }
    if (al_pending(h) > 0) {
        *why = "creating auto-load objects";
        return false;
    }
    return true;
}

struct cv_runtime *cv_host_runtime(struct cv_host *h)
{
    return h->rt;
}

static int autoload_init(struct cv_host *h)
{
    size_t n = h->cfg->n_autoload;
    h->al_shard = calloc(n ? n : 1, sizeof *h->al_shard);
    h->al_ok = calloc(n ? n : 1, sizeof *h->al_ok);
    h->owned = calloc(h->cfg->shards, 1);
    h->rel_shards = calloc(h->cfg->shards, sizeof *h->rel_shards);
    h->rel_epochs = calloc(h->cfg->shards, sizeof *h->rel_epochs);
    if (!h->al_shard || !h->al_ok || !h->owned || !h->rel_shards || !h->rel_epochs) return CV_ENOMEM;
    h->rel_scan = true; /* a restarted node may have shards to release */
    for (size_t e = 0; e < n; e++) {
        const struct cv_autoload_cfg *a = &h->cfg->autoload[e];
        struct cv_placement p;
        h->al_ok[e] = cv_registry_type(h->reg, a->type) != NULL;
        if (!h->al_ok[e]) CV_ERROR("auto-load object %s: unknown type %s (skipped)", a->id, a->type);
        h->al_shard[e] = AL_NODE;
        if (!a->per_shard && !a->per_node && cv_placement_parse(a->id, h->cfg->shards, &p) == 0 &&
            p.kind != CV_PLACE_NODE)
            h->al_shard[e] = p.shard;
    }
    return 0;
}

static void host_free(struct cv_host *h)
{
    free(h->al_shard);
    free(h->al_ok);
    free(h->owned);
    free(h->rel_shards);
    free(h->rel_epochs);
    free(h->alq);
    free(h->subs);
    free(h);
}

int cv_host_init(const struct cv_host_opts *opts, struct cv_host **out)
{
    if (!opts->registry || !opts->catalog_ready) return CV_EINVAL;
    struct cv_host *h = calloc(1, sizeof *h);
    if (!h) return CV_ENOMEM;
    h->o = *opts;
    h->loop = opts->loop;
    h->cat = opts->catalog;
    h->cons = opts->consensus;
    h->peers = opts->peers;
    h->cfg = opts->cfg;
    h->self = opts->self->id;
    h->reg = opts->registry;
    h->call_timeout_ms = opts->call_timeout_ms ? opts->call_timeout_ms : CV_HOST_CALL_TIMEOUT_MS;
    h->al_max = opts->autoload_inflight ? opts->autoload_inflight : CV_HOST_AUTOLOAD_INFLIGHT;
    h->rcalls.next = h->rcalls.prev = &h->rcalls;
    h->soon_tail = &h->soon;
    int rv = autoload_init(h);
    if (rv) goto err_after_h;
    struct cv_host_hooks hooks = {.data = h,
                                  .call = host_call,
                                  .create_object = hook_create,
                                  .delete_object = hook_delete,
                                  .node_shards = hook_node_shards,
                                  .cluster_nodes = hook_cluster_nodes,
                                  .cluster_objects = hook_cluster_objects};
    struct cv_runtime_opts ro = {.node_id = h->self,
                                 .shards = h->cfg->shards,
                                 .owns = owns_shard,
                                 .owns_data = h,
                                 .registry = h->reg,
                                 .hooks = &hooks,
                                 .created_explicit = true};
    if ((rv = cv_runtime_init(h->loop, &ro, &h->rt))) goto err_after_h;
    uv_timer_t *timers[] = {&h->tick, &h->push_timer, &h->soon_timer, &h->al_timer};
    for (int i = 0; i < 4; i++) {
        uv_timer_init(h->loop, timers[i]);
        timers[i]->data = h;
    }
    *out = h;
    return 0;

err_after_h:
    host_free(h);
    return rv;
}

void cv_host_start(struct cv_host *h)
{
    cv_runtime_start(h->rt);
    uv_timer_start(&h->tick, tick_cb, TICK_MS, TICK_MS);
}

void cv_host_stop(struct cv_host *h)
{
    h->stopping = true;
}

/* ---------------------------------------------------------------- close */

static void maybe_freed(struct cv_host *h)
{
    if (!h->closing || h->ops > 0 || h->close_parts > 0) return;
    void (*done)(void *) = h->done;
    void *data = h->done_data;
    host_free(h);
    if (done) done(data);
}

static void part_closed(struct cv_host *h)
{
    h->close_parts--;
    maybe_freed(h);
}

static void timer_closed(uv_handle_t *t)
{
    part_closed(t->data);
}

static void rt_closed(struct cv_runtime *rt, void *data)
{
    struct cv_host *h = data;
    h->rt = NULL;
    part_closed(h);
}

void cv_host_close(struct cv_host *h, void (*done)(void *data), void *data)
{
    h->closing = true;
    h->done = done;
    h->done_data = data;
    h->close_parts = 1; /* held until everything below was started */
    while (h->n_subs) drop_sub(h, h->n_subs - 1);
    unpark(h, true);
    retry_calls(h); /* closing: every waiting call completes with CV_ECLOSED */
    soon_cb(&h->soon_timer);
    uv_timer_t *timers[] = {&h->tick, &h->push_timer, &h->soon_timer, &h->al_timer};
    for (int i = 0; i < 4; i++) {
        h->close_parts++;
        uv_close((uv_handle_t *)timers[i], timer_closed);
    }
    h->close_parts++;
    cv_runtime_close(h->rt, rt_closed, h);
    part_closed(h);
}
