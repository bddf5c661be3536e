/* The gate process: keeps a copy of the shard map, forwards object calls to the owning node and retries
 * them transparently while shards move; serves the native protocol (gate.*) and the HTTP API.
 *
 * Happy path: at start one RPC client per configured node (dialed right away, so that the gate knows
 * which nodes it can reach) and a "catalog.subscribe" to
 * the first node: its ShardMap response and every "catalog.shard_map" push it sends afterwards replace
 * the gate's map when newer. A client request becomes a forward (struct fwd): route the id with the map
 * (route.h), send objects.call/create/delete to the owner, hand the answer back.
 *
 * Failure modes: a node answering CV_EREDIRECT (body Redirect{applied_index}) makes the forward wait
 * until the map reaches that index (a map push wakes it) or a backoff of 20..500 ms passed, then route
 * again; an unassigned shard, an owner the gate has no connection to, or a retryable error
 * (route.h: cv_gate_retryable) waits the backoff and routes again. All of this until the call's
 * deadline: then the last cause is returned (CV_EUNAVAIL / CV_EREDIRECT: 503), or CV_ETIMEDOUT (504)
 * when the deadline passed while the node was executing the call. The subscription moves to the next
 * node (config order) when a subscribe fails or the subscribed node's connection drops, and to a node
 * whose redirects show a newer map when the gate's map stays behind it (the subscribed node lags).
 *
 * Stop (SIGTERM): new requests are refused (CV_EUNAVAIL), requests in flight get drain_ms, then the
 * listeners, timers and clients close; whatever is still pending fails with CV_ECANCELED; the struct is
 * freed once every handle's close callback ran. Single-threaded: everything runs on the loop. */
#include "gate/gate.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"
#include "gate/codec.h"
#include "gate/httpapi.h"
#include "gate/route.h"
#include "net/http.h"
#include "net/rpc.h"
#include "rpc.pb-c.h"
#include "util/buf.h"
#include "util/log.h"

#define SUB_TIMEOUT_MS 2000u     /* a subscribe that takes longer moves on to the next node */
#define SUB_DIAL_TIMEOUT_MS 500u /* same, to a node we are not connected to (it may be down) */
#define SUB_LAG_MS 2000u         /* resubscribe when redirects say our map lags for this long */
#define SUB_NEXT_MS 20u          /* pause before trying the next node */
#define SUB_ROUND_MS 500u        /* pause after every node failed once */
#define HTTP_MAX_BODY (1u << 20) /* 1 MiB: larger bodies get 413 */

enum retry_reason { RETRY_REDIRECT = 0, RETRY_UNAVAILABLE, RETRY_NO_OWNER, N_RETRY_REASONS };
static const char *const retry_reason_names[N_RETRY_REASONS] = {"redirect", "unavailable", "no_owner"};
static const char *const op_names[CV_GATE_N_OPS] = {"call", "create", "delete"};
static const char *const op_methods[CV_GATE_N_OPS] = {"objects.call", "objects.create", "objects.delete"};

/* Latency histogram bounds, seconds (+Inf implied). */
static const double lat_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
#define N_LAT (sizeof lat_bounds / sizeof lat_bounds[0] + 1)

struct gate_node {
    struct cv_gate *g;
    const struct cv_node_cfg *cfg;
    struct cv_rpc_client *cli;
    size_t index;
    bool connected;
};

enum fwd_state { FWD_IDLE = 0, FWD_WAITING, FWD_SENT };

/* One forwarded operation, from cv_gate_forward to its callback. */
struct fwd {
    struct cv_gate *g;
    struct fwd *prev, *next; /* g->calls */
    enum cv_gate_op op;
    enum fwd_state state;
    char *type, *id, *method;
    uint8_t *req;
    size_t req_len;
    uint64_t deadline_ms; /* cv_mono_ms() */
    uint64_t want_index;  /* from redirects: wait for a map at least this recent */
    size_t node;          /* SENT: index of the node the call went to */
    unsigned retries;
    int last_err;         /* cause of the last wait, 0 if none */
    char last_msg[256];
    uv_timer_t timer;     /* first attempt and retries */
    cv_gate_done_cb cb;
    void *data;
};

struct cv_gate {
    uv_loop_t *loop;
    const struct cv_config *cfg;
    const struct cv_gate_cfg *self;
    char *id;
    struct cv_gate_types *types;
    unsigned default_timeout_ms, drain_ms;
    struct cv_rpc_server *rpc;
    struct cv_http_server *http;
    struct gate_node *nodes;
    size_t n_nodes;
    struct cv_gate_map map;
    bool shards_warned;

    /* shard-map subscription */
    int sub_node;      /* index of the node we are subscribed to, -1 if none */
    size_t sub_next;   /* node to try next */
    bool sub_inflight;
    unsigned sub_failures;
    uv_timer_t sub_timer;
    uint64_t lag_since;   /* cv_mono_ms() when a redirect first said a newer map exists; 0 = not lagging */
    uint64_t lag_index;   /* the newest index redirects reported */
    size_t lag_node;      /* the node that reported it */

    struct fwd *calls;
    size_t inflight; /* client requests between cv_gate_begin and cv_gate_end */
    uint64_t rng;

    bool stopping, closing;
    uv_timer_t drain_timer;
    bool signals;
    uv_signal_t sigterm, sigint;
    int handles; /* handles and components whose close callback has not run yet */
    void (*on_stopped)(void *data);
    void *data;

    /* metrics */
    uint64_t results[CV_GATE_N_OPS][CV_GATE_N_CODES];
    uint64_t retries[N_RETRY_REASONS];
    uint64_t lat[CV_GATE_N_OPS][N_LAT];
    double lat_sum[CV_GATE_N_OPS];
    uint64_t maps_applied, maps_ignored, sub_switches;
};

static void gate__shutdown(struct cv_gate *g);

/* ---------------------------------------------------------------------------------------------------
 * Lifetime: the gate is freed after the last close callback. */

static void gate__free(struct cv_gate *g)
{
    if (g->on_stopped) g->on_stopped(g->data);
    cv_gate_map_free(&g->map);
    free(g->nodes);
    free(g->id);
    free(g);
}

static void gate__unref(struct cv_gate *g)
{
    if (--g->handles == 0 && g->closing) gate__free(g);
}

static void gate__handle_closed(uv_handle_t *h)
{
    gate__unref(h->data);
}

static double gate__jitter(struct cv_gate *g)
{
    g->rng ^= g->rng << 13; /* xorshift64 */
    g->rng ^= g->rng >> 7;
    g->rng ^= g->rng << 17;
    return (double)(g->rng >> 11) / (double)(1ull << 53);
}

static struct gate_node *gate__node(struct cv_gate *g, const char *id)
{
    for (size_t i = 0; i < g->n_nodes; i++)
        if (strcmp(g->nodes[i].cfg->id, id) == 0) return &g->nodes[i];
    return NULL;
}

/* ---------------------------------------------------------------------------------------------------
 * Forwarding. */

static void fwd__try(struct fwd *f);

static void fwd__closed(uv_handle_t *h)
{
    struct fwd *f = h->data;
    struct cv_gate *g = f->g;
    free(f->type);
    free(f->id);
    free(f->method);
    free(f->req);
    free(f);
    gate__unref(g);
}

static void fwd__finish(struct fwd *f, int status, const char *error, const uint8_t *body, size_t len)
{
    struct cv_gate *g = f->g;
    if (f->prev) f->prev->next = f->next;
    else g->calls = f->next;
    if (f->next) f->next->prev = f->prev;
    f->prev = f->next = NULL;
    uv_timer_stop(&f->timer);
    if (status != 0 && !error) error = cv_strerror(status);
    f->cb(f->data, status, error, status == 0 && body ? body : (const uint8_t *)"", status == 0 ? len : 0);
    uv_close((uv_handle_t *)&f->timer, fwd__closed);
}

static void fwd__timer_cb(uv_timer_t *t)
{
    fwd__try(t->data);
}

/* Waits before routing again: the backoff, or less if a map push arrives first (see gate__map_applied). */
static void fwd__retry_later(struct fwd *f, int err, const char *msg, enum retry_reason why)
{
    struct cv_gate *g = f->g;
    f->last_err = err;
    snprintf(f->last_msg, sizeof f->last_msg, "%s", msg ? msg : cv_strerror(err));
    uint64_t now = cv_mono_ms();
    uint64_t remaining = f->deadline_ms > now ? f->deadline_ms - now : 0;
    unsigned delay = cv_gate_backoff_ms(f->retries, gate__jitter(g), remaining);
    f->retries++;
    g->retries[why]++;
    f->state = FWD_WAITING;
    CV_DEBUG("%s %s/%s: retry %u in %u ms: %s", op_names[f->op], f->type, f->id, f->retries, delay, f->last_msg);
    uv_timer_start(&f->timer, fwd__timer_cb, delay, 0);
}

static void sub__start(struct cv_gate *g, unsigned delay_ms);

/* A redirect said node `from` applied `index`. If our map stays behind that for SUB_LAG_MS, the map we
 * get lags (the subscribed node is cut off from the raft group, or a push was lost): subscribe to `from`,
 * which has the newer map (possibly the subscribed node itself: a new subscribe answers its current
 * map). */
static void gate__note_lag(struct cv_gate *g, size_t from, uint64_t index)
{
    uint64_t now = cv_mono_ms();
    if (index <= cv_gate_map_index(&g->map)) return;
    if (!g->lag_since) g->lag_since = now;
    if (index >= g->lag_index) {
        g->lag_index = index;
        g->lag_node = from;
    }
    if (now - g->lag_since < SUB_LAG_MS || g->sub_node < 0) return;
    CV_WARN("the shard map from node %s lags (index %llu, node %s has %llu): subscribing to node %s",
            g->nodes[g->sub_node].cfg->id, (unsigned long long)cv_gate_map_index(&g->map),
            g->nodes[g->lag_node].cfg->id, (unsigned long long)g->lag_index, g->nodes[g->lag_node].cfg->id);
    g->sub_node = -1;
    g->sub_next = g->lag_node;
    g->lag_since = 0;
    sub__start(g, 0);
}

static void fwd__reply(void *data, int status, const char *error, const uint8_t *body, size_t len)
{
    struct fwd *f = data;
    struct cv_gate *g = f->g;
    f->state = FWD_IDLE;
    if (status == CV_EREDIRECT && !g->closing) {
        Cverse__Rpc__Redirect *r = cverse__rpc__redirect__unpack(NULL, len, body);
        if (r && r->applied_index > f->want_index) f->want_index = r->applied_index;
        if (r) gate__note_lag(g, f->node, r->applied_index);
        if (r) cverse__rpc__redirect__free_unpacked(r, NULL);
        fwd__retry_later(f, status, error, RETRY_REDIRECT);
    } else if (cv_gate_retryable(status) && !g->closing) {
        fwd__retry_later(f, status, error, RETRY_UNAVAILABLE);
    } else {
        fwd__finish(f, status, error, body, len);
    }
}

static int fwd__pack(const struct fwd *f, uint64_t map_index, uint8_t **out, size_t *len)
{
    Cverse__Rpc__CallRequest call = CVERSE__RPC__CALL_REQUEST__INIT;
    Cverse__Rpc__CreateRequest create = CVERSE__RPC__CREATE_REQUEST__INIT;
    Cverse__Rpc__DeleteRequest del = CVERSE__RPC__DELETE_REQUEST__INIT;
    ProtobufCMessage *m;
    if (f->op == CV_GATE_CALL) {
        call.type = f->type;
        call.id = f->id;
        call.method = f->method;
        call.request.data = f->req;
        call.request.len = f->req_len;
        call.map_index = map_index;
        m = &call.base;
    } else if (f->op == CV_GATE_CREATE) {
        create.type = f->type;
        create.id = f->id;
        m = &create.base;
    } else {
        del.type = f->type;
        del.id = f->id;
        m = &del.base;
    }
    *len = protobuf_c_message_get_packed_size(m);
    if (!(*out = malloc(*len ? *len : 1))) return CV_ENOMEM;
    protobuf_c_message_pack(m, *out);
    return 0;
}

/* The deadline passed while the forward was waiting: the cause it waited for is the answer. */
static void fwd__expire(struct fwd *f)
{
    char msg[400];
    if (!f->last_err) {
        fwd__finish(f, CV_ETIMEDOUT, "deadline exceeded before the call could be sent", NULL, 0);
        return;
    }
    snprintf(msg, sizeof msg, "%s (gave up at the call's deadline after %u retries)", f->last_msg, f->retries);
    fwd__finish(f, f->last_err, msg, NULL, 0);
}

static void fwd__send(struct fwd *f, struct gate_node *n, uint64_t remaining)
{
    struct cv_gate *g = f->g;
    uint8_t *body;
    size_t len;
    int rv = fwd__pack(f, cv_gate_map_index(&g->map), &body, &len);
    if (rv == 0) {
        rv = cv_rpc_call(n->cli, op_methods[f->op], body, len, (unsigned)remaining, fwd__reply, f);
        free(body);
    }
    if (rv) {
        fwd__finish(f, rv, NULL, NULL, 0);
        return;
    }
    f->state = FWD_SENT;
    f->node = n->index;
}

static void fwd__try(struct fwd *f)
{
    struct cv_gate *g = f->g;
    char msg[256];
    f->state = FWD_IDLE;
    if (g->closing) {
        fwd__finish(f, CV_ECANCELED, "gate is shutting down", NULL, 0);
        return;
    }
    uint64_t now = cv_mono_ms();
    if (now >= f->deadline_ms) {
        fwd__expire(f);
        return;
    }
    struct cv_route r;
    cv_gate_route(&g->map, g->cfg, f->id, &r);
    if (r.action == CV_ROUTE_FAIL) {
        fwd__finish(f, r.err, r.why, NULL, 0);
        return;
    }
    if (r.action == CV_ROUTE_WAIT) {
        fwd__retry_later(f, r.err, r.why, RETRY_NO_OWNER);
        return;
    }
    struct gate_node *n = gate__node(g, r.node);
    if (!n || !n->connected) {
        snprintf(msg, sizeof msg, "no connection to node %s (owner of shard %u)", r.node, (unsigned)r.shard);
        if (!n) snprintf(msg, sizeof msg, "node %s owns shard %u but is not in the gate's config", r.node,
                         (unsigned)r.shard);
        fwd__retry_later(f, CV_EUNAVAIL, msg, RETRY_UNAVAILABLE);
        return;
    }
    fwd__send(f, n, f->deadline_ms - now);
}

static char *gate__strdup0(const char *s)
{
    return strdup(s ? s : "");
}

int cv_gate_forward(struct cv_gate *g, enum cv_gate_op op, const char *type, const char *id, const char *method,
                    const uint8_t *req, size_t len, unsigned timeout_ms, cv_gate_done_cb cb, void *data)
{
    if (g->stopping) return CV_EUNAVAIL;
    if ((unsigned)op >= CV_GATE_N_OPS || !type || !id || !cb) return CV_EINVAL;
    struct fwd *f = calloc(1, sizeof *f);
    if (!f) return CV_ENOMEM;
    f->type = strdup(type);
    f->id = strdup(id);
    f->method = gate__strdup0(op == CV_GATE_CALL ? method : "");
    f->req = malloc(len ? len : 1);
    if (!f->type || !f->id || !f->method || !f->req) {
        free(f->type);
        free(f->id);
        free(f->method);
        free(f->req);
        free(f);
        return CV_ENOMEM;
    }
    if (len) memcpy(f->req, req, len);
    f->req_len = len;
    f->g = g;
    f->op = op;
    f->cb = cb;
    f->data = data;
    f->deadline_ms = cv_mono_ms() + (timeout_ms ? timeout_ms : g->default_timeout_ms);
    uv_timer_init(g->loop, &f->timer);
    f->timer.data = f;
    g->handles++;
    f->next = g->calls;
    if (g->calls) g->calls->prev = f;
    g->calls = f;
    f->state = FWD_WAITING;
    uv_timer_start(&f->timer, fwd__timer_cb, 0, 0); /* the callback must never run from in here */
    return 0;
}

/* ---------------------------------------------------------------------------------------------------
 * Shard map and subscription. */

/* Retries now the waiting forwards the current map may unblock (those not waiting for a newer map),
 * through their timers so that no callback runs from here. */
static void gate__wake(struct cv_gate *g)
{
    uint64_t index = cv_gate_map_index(&g->map);
    for (struct fwd *f = g->calls; f; f = f->next)
        if (f->state == FWD_WAITING && f->want_index <= index) uv_timer_start(&f->timer, fwd__timer_cb, 0, 0);
}

static void gate__map_applied(struct cv_gate *g, uint32_t prev_unassigned, bool first)
{
    const Cverse__Rpc__ShardMap *pb = g->map.pb;
    uint32_t unassigned = cv_gate_map_unassigned(&g->map);
    g->maps_applied++;
    if (pb->applied_index >= g->lag_index) g->lag_since = 0;
    if (first || (prev_unassigned == 0) != (unassigned == 0))
        CV_INFO("shard map at index %llu: %u shards, %u unassigned, %zu nodes, leader %s",
                (unsigned long long)pb->applied_index, (unsigned)pb->shards, (unsigned)unassigned, pb->n_nodes,
                pb->leader[0] ? pb->leader : "unknown");
    else
        CV_DEBUG("shard map at index %llu (%u unassigned)", (unsigned long long)pb->applied_index,
                 (unsigned)unassigned);
    if (pb->shards != g->cfg->shards && !g->shards_warned) {
        CV_WARN("the cluster has %u shards but the config says %u: routing by the cluster's map",
                (unsigned)pb->shards, (unsigned)g->cfg->shards);
        g->shards_warned = true;
    }
    gate__wake(g);
}

static int gate__apply(struct cv_gate *g, const struct gate_node *from, const uint8_t *body, size_t len)
{
    uint32_t prev = cv_gate_map_unassigned(&g->map);
    bool first = g->map.pb == NULL;
    int rv = cv_gate_map_apply(&g->map, body, len);
    if (rv < 0) {
        CV_WARN("ignoring a malformed shard map from node %s", from->cfg->id);
        return rv;
    }
    if (rv == 0) g->maps_ignored++;
    else gate__map_applied(g, prev, first);
    return 0;
}

static void sub__done(void *data, int status, const char *error, const uint8_t *body, size_t len)
{
    struct gate_node *n = data;
    struct cv_gate *g = n->g;
    g->sub_inflight = false;
    if (g->closing) return;
    if (status == 0 && gate__apply(g, n, body, len) == 0) {
        g->sub_node = (int)n->index;
        g->sub_failures = 0;
        g->sub_switches++;
        CV_INFO("subscribed to the shard map of node %s (gate at index %llu)", n->cfg->id,
                (unsigned long long)cv_gate_map_index(&g->map));
        return;
    }
    if (status == 0) error = "malformed ShardMap";
    g->sub_failures++;
    /* Quiet while the cluster starts: one warning per round of nodes, details at debug level. */
    if (g->sub_failures % g->n_nodes == 1 || g->n_nodes == 1)
        CV_WARN("shard-map subscription to node %s failed: %s (trying the next node)", n->cfg->id, error);
    else
        CV_DEBUG("shard-map subscription to node %s failed: %s", n->cfg->id, error);
    g->sub_next = (n->index + 1) % g->n_nodes;
    sub__start(g, g->sub_next == 0 ? SUB_ROUND_MS : SUB_NEXT_MS);
}

static void sub__try(struct cv_gate *g)
{
    if (g->closing || g->sub_inflight || g->sub_node >= 0) return;
    struct gate_node *n = &g->nodes[g->sub_next];
    Cverse__Rpc__SubscribeRequest req = CVERSE__RPC__SUBSCRIBE_REQUEST__INIT;
    req.gate_id = g->id;
    uint8_t buf[128];
    size_t len = cverse__rpc__subscribe_request__get_packed_size(&req);
    if (len > sizeof buf) return; /* gate ids are short (config) */
    cverse__rpc__subscribe_request__pack(&req, buf);
    unsigned timeout = n->connected ? SUB_TIMEOUT_MS : SUB_DIAL_TIMEOUT_MS;
    if (cv_rpc_call(n->cli, "catalog.subscribe", buf, len, timeout, sub__done, n) == 0)
        g->sub_inflight = true;
    else
        sub__start(g, SUB_ROUND_MS);
}

static void sub__timer_cb(uv_timer_t *t)
{
    sub__try(t->data);
}

static void sub__start(struct cv_gate *g, unsigned delay_ms)
{
    if (!g->closing) uv_timer_start(&g->sub_timer, sub__timer_cb, delay_ms, 0);
}

static void node__on_event(void *data, const char *method, const uint8_t *body, size_t len)
{
    struct gate_node *n = data;
    if (strcmp(method, "catalog.shard_map") == 0) gate__apply(n->g, n, body, len);
    else CV_DEBUG("ignoring event %s from node %s", method, n->cfg->id);
}

static void node__on_state(void *data, int connected)
{
    struct gate_node *n = data;
    struct cv_gate *g = n->g;
    n->connected = connected != 0;
    CV_DEBUG("connection to node %s %s", n->cfg->id, connected ? "up" : "down");
    if (connected && !g->closing) gate__wake(g); /* forwards may have waited for this node */
    if (connected || g->closing || g->sub_node != (int)n->index) return;
    g->sub_node = -1;
    g->sub_next = (n->index + 1) % g->n_nodes;
    CV_WARN("lost the shard-map subscription (node %s disconnected); trying node %s", n->cfg->id,
            g->nodes[g->sub_next].cfg->id);
    sub__start(g, 0);
}

/* ---------------------------------------------------------------------------------------------------
 * Native protocol server: gate.call, gate.create, gate.delete, gate.status. */

struct nreq {
    struct cv_gate *g;
    struct cv_rpc_conn *conn;
    uint64_t id;
    enum cv_gate_op op;
    uint64_t start_ns;
    const struct cv_method *m; /* CALL */
    bool json;                 /* CALL with request_json: answer response_json */
};

static void native__answer(struct cv_gate *g, struct cv_rpc_conn *conn, uint64_t id, enum cv_gate_op op,
                           uint64_t start_ns, int status, const char *error, const void *body, size_t len)
{
    if (cv_rpc_respond(conn, id, status, error, body, len) == CV_ETOOBIG) {
        status = CV_ETOOBIG;
        cv_rpc_respond(conn, id, status, "response too large for a frame", NULL, 0);
    }
    cv_gate_end(g, op, status, start_ns);
}

/* Maps a CallResponse's bytes to CallResponse{response_json} and answers. */
static void native__answer_json(struct nreq *r, const uint8_t *body, size_t len)
{
    char err[256], *json = NULL;
    int rv = CV_EIO;
    Cverse__Rpc__CallResponse *cr = cverse__rpc__call_response__unpack(NULL, len, body);
    if (cr) {
        rv = cv_gate_bytes_to_json_text(r->m->response, cr->response.data, cr->response.len, &json, err, sizeof err);
        cverse__rpc__call_response__free_unpacked(cr, NULL);
        if (rv == CV_EPROTO) rv = CV_EIO; /* the node's bytes, not the client's */
    } else {
        snprintf(err, sizeof err, "malformed CallResponse from the node");
    }
    if (rv) {
        native__answer(r->g, r->conn, r->id, r->op, r->start_ns, rv, err, NULL, 0);
        return;
    }
    Cverse__Rpc__CallResponse out = CVERSE__RPC__CALL_RESPONSE__INIT;
    out.response_json = json;
    size_t n = cverse__rpc__call_response__get_packed_size(&out);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf) cverse__rpc__call_response__pack(&out, buf);
    native__answer(r->g, r->conn, r->id, r->op, r->start_ns, buf ? 0 : CV_ENOMEM, buf ? NULL : "out of memory",
                   buf, buf ? n : 0);
    free(buf);
    free(json);
}

static void native__done(void *data, int status, const char *error, const uint8_t *body, size_t len)
{
    struct nreq *r = data;
    if (status == 0 && r->json) native__answer_json(r, body, len);
    else native__answer(r->g, r->conn, r->id, r->op, r->start_ns, status, error, body, len);
    cv_rpc_conn_unref(r->conn);
    free(r);
}

/* Validates a gate.call and builds the request bytes; 0, or an error code with a message in err. */
static int native__prepare_call(struct cv_gate *g, const Cverse__Rpc__CallRequest *c, struct nreq *r,
                                uint8_t **req, size_t *len, char *err, size_t errlen)
{
    if (!c->type[0] || !c->id[0] || !c->method[0]) {
        snprintf(err, errlen, "type, id and method must not be empty");
        return CV_EINVAL;
    }
    int rv = cv_gate_types_method(g->types, c->type, c->method, &r->m, err, errlen);
    if (rv) return rv;
    if (c->request_json[0]) {
        r->json = true;
        return cv_gate_json_text_to_bytes(r->m->request, c->request_json, req, len, err, errlen);
    }
    *req = NULL;
    *len = 0;
    return 0;
}

/* Unpacks the request of op and starts the forward; 0 or an error with a message in err. */
static int native__start(struct cv_gate *g, struct nreq *r, const uint8_t *body, size_t len, uint32_t deadline_ms,
                         char *err, size_t errlen)
{
    int rv;
    if (r->op == CV_GATE_CALL) {
        Cverse__Rpc__CallRequest *c = cverse__rpc__call_request__unpack(NULL, len, body);
        if (!c) {
            snprintf(err, errlen, "malformed CallRequest");
            return CV_EPROTO;
        }
        uint8_t *req = NULL;
        size_t rlen = 0;
        rv = native__prepare_call(g, c, r, &req, &rlen, err, errlen);
        if (rv == 0)
            rv = cv_gate_forward(g, r->op, c->type, c->id, c->method, req ? req : c->request.data,
                                 req ? rlen : c->request.len, deadline_ms, native__done, r);
        free(req);
        cverse__rpc__call_request__free_unpacked(c, NULL);
        if (rv && !err[0]) snprintf(err, errlen, "%s", cv_strerror(rv));
        return rv;
    }
    /* CreateRequest and DeleteRequest have the same fields. */
    Cverse__Rpc__CreateRequest *c = cverse__rpc__create_request__unpack(NULL, len, body);
    if (!c) {
        snprintf(err, errlen, "malformed %s request", op_names[r->op]);
        return CV_EPROTO;
    }
    if (!c->type[0] || !c->id[0]) {
        snprintf(err, errlen, "type and id must not be empty");
        rv = CV_EINVAL;
    } else if ((rv = cv_gate_types_find(g->types, c->type, err, errlen)) == 0) {
        rv = cv_gate_forward(g, r->op, c->type, c->id, NULL, NULL, 0, deadline_ms, native__done, r);
        if (rv) snprintf(err, errlen, "%s", cv_strerror(rv));
    }
    cverse__rpc__create_request__free_unpacked(c, NULL);
    return rv;
}

static void native__status(struct cv_gate *g, struct cv_rpc_conn *conn, uint64_t id)
{
    Cverse__Rpc__StatusResponse st = CVERSE__RPC__STATUS_RESPONSE__INIT;
    Cverse__Rpc__ShardMap empty = CVERSE__RPC__SHARD_MAP__INIT;
    st.map = g->map.pb ? g->map.pb : &empty;
    st.gate_id = g->id;
    Cverse__Rpc__GateInfo *infos = calloc(g->cfg->n_gates ? g->cfg->n_gates : 1, sizeof *infos);
    Cverse__Rpc__GateInfo **ptrs = calloc(g->cfg->n_gates ? g->cfg->n_gates : 1, sizeof *ptrs);
    uint8_t *buf = NULL;
    size_t n = 0;
    if (infos && ptrs) {
        for (size_t i = 0; i < g->cfg->n_gates; i++) {
            const struct cv_gate_cfg *gc = &g->cfg->gates[i];
            cverse__rpc__gate_info__init(&infos[i]);
            infos[i].id = gc->id;
            infos[i].grpc_addr = gc->advertise_addr ? gc->advertise_addr : gc->grpc_addr;
            infos[i].http_addr = gc->http_addr;
            infos[i].connected = gc == g->self && g->sub_node >= 0; /* only known for this gate */
            ptrs[i] = &infos[i];
        }
        st.n_gates = g->cfg->n_gates;
        st.gates = ptrs;
        n = cverse__rpc__status_response__get_packed_size(&st);
        if ((buf = malloc(n ? n : 1))) cverse__rpc__status_response__pack(&st, buf);
    }
    if (buf) cv_rpc_respond(conn, id, 0, NULL, buf, n);
    else cv_rpc_respond(conn, id, CV_ENOMEM, "out of memory", NULL, 0);
    free(buf);
    free(ptrs);
    free(infos);
}

static void native__on_request(void *data, struct cv_rpc_conn *conn, uint64_t id, const char *method,
                               const uint8_t *body, size_t len, uint32_t deadline_ms)
{
    struct cv_gate *g = data;
    enum cv_gate_op op;
    char err[512] = "";
    if (!strcmp(method, "gate.status")) {
        native__status(g, conn, id);
        return;
    } else if (!strcmp(method, "gate.call")) op = CV_GATE_CALL;
    else if (!strcmp(method, "gate.create")) op = CV_GATE_CREATE;
    else if (!strcmp(method, "gate.delete")) op = CV_GATE_DELETE;
    else {
        snprintf(err, sizeof err, "unknown method \"%.100s\"", method);
        cv_rpc_respond(conn, id, CV_ENOTFOUND, err, NULL, 0);
        return;
    }
    uint64_t start = cv_mono_ns();
    if (cv_gate_begin(g)) {
        cv_rpc_respond(conn, id, CV_EUNAVAIL, "gate is shutting down", NULL, 0);
        return;
    }
    struct nreq *r = calloc(1, sizeof *r);
    if (!r) {
        native__answer(g, conn, id, op, start, CV_ENOMEM, "out of memory", NULL, 0);
        return;
    }
    *r = (struct nreq){.g = g, .conn = conn, .id = id, .op = op, .start_ns = start};
    int rv = native__start(g, r, body, len, deadline_ms, err, sizeof err);
    if (rv) {
        free(r);
        native__answer(g, conn, id, op, start, rv, err, NULL, 0);
        return;
    }
    cv_rpc_conn_ref(conn);
}

/* ---------------------------------------------------------------------------------------------------
 * Requests, readiness, metrics. */

int cv_gate_begin(struct cv_gate *g)
{
    if (g->stopping) return CV_EUNAVAIL;
    g->inflight++;
    return 0;
}

static void gate__drain_cb(uv_timer_t *t)
{
    gate__shutdown(t->data);
}

void cv_gate_end(struct cv_gate *g, enum cv_gate_op op, int status, uint64_t start_ns)
{
    if ((unsigned)op < CV_GATE_N_OPS) {
        double s = (double)(cv_mono_ns() - start_ns) / 1e9;
        size_t b = 0;
        while (b < N_LAT - 1 && s > lat_bounds[b]) b++;
        g->lat[op][b]++;
        g->lat_sum[op] += s;
        g->results[op][cv_gate_code_of(status)]++;
    }
    if (g->inflight > 0) g->inflight--;
    /* Through the timer: we may be deep inside a client callback here. */
    if (g->stopping && !g->closing && g->inflight == 0) uv_timer_start(&g->drain_timer, gate__drain_cb, 0, 0);
}

struct cv_gate_types *cv_gate_types_of(struct cv_gate *g)
{
    return g->types;
}

const char *cv_gate_id(const struct cv_gate *g)
{
    return g->id;
}

bool cv_gate_ready(const struct cv_gate *g, const char **why)
{
    size_t up = 0;
    for (size_t i = 0; i < g->n_nodes; i++) up += g->nodes[i].connected;
    if (g->stopping) *why = "gate is shutting down";
    else if (!g->map.pb) *why = "no shard map yet (not subscribed to any node)";
    else if (cv_gate_map_unassigned(&g->map) > 0) *why = "shards are unassigned";
    else if (up == 0) *why = "no connection to any node";
    else return true;
    return false;
}

static void metrics__latency(const struct cv_gate *g, struct cv_buf *b)
{
    const char *h = "cverse_gate_request_seconds";
    cv_buf_printf(b, "# HELP %s Time from receiving a client request to answering it.\n# TYPE %s histogram\n", h, h);
    for (int op = 0; op < CV_GATE_N_OPS; op++) {
        uint64_t cum = 0;
        for (size_t i = 0; i < N_LAT; i++) {
            cum += g->lat[op][i];
            if (i == N_LAT - 1) cv_buf_printf(b, "%s_bucket{op=\"%s\",le=\"+Inf\"} %llu\n", h, op_names[op],
                                        (unsigned long long)cum);
            else cv_buf_printf(b, "%s_bucket{op=\"%s\",le=\"%g\"} %llu\n", h, op_names[op], lat_bounds[i],
                         (unsigned long long)cum);
        }
        cv_buf_printf(b, "%s_sum{op=\"%s\"} %.9g\n%s_count{op=\"%s\"} %llu\n", h, op_names[op], g->lat_sum[op], h,
                op_names[op], (unsigned long long)cum);
    }
}

char *cv_gate_metrics(const struct cv_gate *g, size_t *len)
{
    struct cv_buf b = {0};
    const char *c = "cverse_gate_requests_total";
    cv_buf_printf(&b, "# HELP %s Client requests answered, by operation and result code.\n# TYPE %s counter\n", c, c);
    for (int op = 0; op < CV_GATE_N_OPS; op++)
        for (int k = 0; k < CV_GATE_N_CODES; k++)
            if (g->results[op][k] || k == CV_GATE_CODE_OK)
                cv_buf_printf(&b, "%s{op=\"%s\",result=\"%s\"} %llu\n", c, op_names[op],
                        k == CV_GATE_CODE_OK ? "OK" : cv_gate_error_info((enum cv_gate_code)k)->code,
                        (unsigned long long)g->results[op][k]);
    c = "cverse_gate_retries_total";
    cv_buf_printf(&b, "# HELP %s Forwards retried, by cause.\n# TYPE %s counter\n", c, c);
    for (int i = 0; i < N_RETRY_REASONS; i++)
        cv_buf_printf(&b, "%s{reason=\"%s\"} %llu\n", c, retry_reason_names[i], (unsigned long long)g->retries[i]);
    metrics__latency(g, &b);
    size_t up = 0;
    for (size_t i = 0; i < g->n_nodes; i++) up += g->nodes[i].connected;
    cv_buf_printf(&b, "# HELP cverse_gate_map_applied_index Applied index of the gate's shard map.\n"
                "# TYPE cverse_gate_map_applied_index gauge\ncverse_gate_map_applied_index %llu\n"
                "# HELP cverse_gate_maps_applied_total Shard maps applied.\n"
                "# TYPE cverse_gate_maps_applied_total counter\ncverse_gate_maps_applied_total %llu\n"
                "# HELP cverse_gate_shards_unassigned Shards without an owner in the gate's map.\n"
                "# TYPE cverse_gate_shards_unassigned gauge\ncverse_gate_shards_unassigned %u\n"
                "# HELP cverse_gate_node_connections Nodes the gate is connected to.\n"
                "# TYPE cverse_gate_node_connections gauge\ncverse_gate_node_connections %zu\n"
                "# HELP cverse_gate_requests_in_flight Client requests being processed.\n"
                "# TYPE cverse_gate_requests_in_flight gauge\ncverse_gate_requests_in_flight %zu\n",
            (unsigned long long)cv_gate_map_index(&g->map), (unsigned long long)g->maps_applied,
            g->map.pb ? (unsigned)cv_gate_map_unassigned(&g->map) : (unsigned)g->cfg->shards, up, g->inflight);
    cv_buf_printf(&b, "# HELP cverse_gate_maps_ignored_total Shard maps ignored (not newer than the gate's).\n"
                "# TYPE cverse_gate_maps_ignored_total counter\ncverse_gate_maps_ignored_total %llu\n"
                "# HELP cverse_gate_subscriptions_total Shard-map subscriptions established (failovers + 1).\n"
                "# TYPE cverse_gate_subscriptions_total counter\ncverse_gate_subscriptions_total %llu\n",
            (unsigned long long)g->maps_ignored, (unsigned long long)g->sub_switches);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}

/* ---------------------------------------------------------------------------------------------------
 * Start and stop. */

static void gate__client_closed(struct cv_rpc_client *cli)
{
    struct gate_node *n = cv_rpc_client_data(cli);
    n->cli = NULL;
    gate__unref(n->g);
}

static void gate__on_signal(uv_signal_t *s, int signum)
{
    CV_INFO("received %s: stopping", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    cv_gate_stop(s->data);
}

int cv_gate_grpc_port(const struct cv_gate *g)
{
    return g->rpc ? cv_rpc_server_port(g->rpc) : CV_EINVAL;
}

int cv_gate_http_port(const struct cv_gate *g)
{
    return g->http ? cv_http_server_port(g->http) : CV_EINVAL;
}

/* Closes whatever cv_gate_start opened (it may have failed half way); g is freed by the last callback. */
static void gate__shutdown(struct cv_gate *g)
{
    if (g->closing) return;
    if (g->inflight > 0) CV_WARN("canceling %zu requests still in flight", g->inflight);
    g->closing = g->stopping = true;
    uv_close((uv_handle_t *)&g->sub_timer, gate__handle_closed);
    uv_close((uv_handle_t *)&g->drain_timer, gate__handle_closed);
    if (g->signals) {
        uv_close((uv_handle_t *)&g->sigterm, gate__handle_closed);
        uv_close((uv_handle_t *)&g->sigint, gate__handle_closed);
    }
    /* The servers call nothing of ours once closing; answers to their requests become no-ops. */
    if (g->http) cv_http_server_close(g->http, NULL);
    if (g->rpc) cv_rpc_server_close(g->rpc, NULL);
    g->http = NULL;
    g->rpc = NULL;
    /* Waiting forwards fail now (their callbacks only answer and count), sent ones when their client
     * closes below. */
    for (struct fwd *f = g->calls, *next; f; f = next) {
        next = f->next;
        if (f->state != FWD_SENT) fwd__finish(f, CV_ECANCELED, "gate is shutting down", NULL, 0);
    }
    for (size_t i = 0; i < g->n_nodes; i++)
        if (g->nodes[i].cli) cv_rpc_client_close(g->nodes[i].cli, gate__client_closed);
    CV_INFO("gate %s stopped", g->id);
}

void cv_gate_stop(struct cv_gate *g)
{
    if (g->stopping) return;
    g->stopping = true;
    if (g->inflight) CV_INFO("stopping: waiting up to %u ms for %zu requests in flight", g->drain_ms, g->inflight);
    /* Through the timer: cv_gate_stop may be called from a callback of something it closes. */
    uv_timer_start(&g->drain_timer, gate__drain_cb, g->inflight ? g->drain_ms : 0, 0);
}

static int gate__init_nodes(struct cv_gate *g)
{
    /* The count only after the table exists: the shutdown of a failed start walks it. */
    g->nodes = calloc(g->cfg->n_nodes, sizeof *g->nodes);
    if (!g->nodes) return CV_ENOMEM;
    g->n_nodes = g->cfg->n_nodes;
    for (size_t i = 0; i < g->n_nodes; i++) {
        struct gate_node *n = &g->nodes[i];
        *n = (struct gate_node){.g = g, .cfg = &g->cfg->nodes[i], .index = i};
        struct cv_rpc_client_opts o = {.addr = n->cfg->advertise_addr, .on_event = node__on_event,
                                       .on_state = node__on_state, .data = n};
        int rv = cv_rpc_client_init(g->loop, &o, &n->cli);
        if (rv) return rv;
        g->handles++;
    }
    return 0;
}

static int gate__listen(struct cv_gate *g, const struct cv_gate_opts *o)
{
    const char *grpc = o->grpc_addr ? o->grpc_addr : g->self->grpc_addr;
    const char *http = o->http_addr ? o->http_addr : g->self->http_addr;
    int rv = cv_rpc_server_init(g->loop, native__on_request, NULL, g, &g->rpc);
    if (rv == 0) rv = cv_rpc_server_listen(g->rpc, grpc);
    if (rv) return rv;
    struct cv_http_opts ho = {.max_body = HTTP_MAX_BODY, .cors_origin = "*"};
    rv = cv_http_server_init(g->loop, &ho, cv_gate_http_handler, g, &g->http);
    if (rv == 0) rv = cv_http_server_listen(g->http, http);
    if (rv) return rv;
    CV_INFO("gate %s: native protocol on %s (port %d), HTTP on %s (port %d), %zu nodes, %u shards", g->id, grpc,
            cv_rpc_server_port(g->rpc), http, cv_http_server_port(g->http), g->n_nodes, (unsigned)g->cfg->shards);
    return 0;
}

static void gate__init_handles(struct cv_gate *g, bool signals)
{
    uv_timer_init(g->loop, &g->sub_timer);
    uv_timer_init(g->loop, &g->drain_timer);
    g->sub_timer.data = g->drain_timer.data = g;
    g->handles += 2;
    if (!signals) return;
    g->signals = true;
    uv_signal_init(g->loop, &g->sigterm);
    uv_signal_init(g->loop, &g->sigint);
    g->sigterm.data = g->sigint.data = g;
    g->handles += 2;
    uv_signal_start(&g->sigterm, gate__on_signal, SIGTERM);
    uv_signal_start(&g->sigint, gate__on_signal, SIGINT);
}

int cv_gate_start(const struct cv_gate_opts *o, struct cv_gate **out)
{
    if (!o || !o->loop || !o->cfg || !o->gate_id || !out || o->cfg->n_nodes == 0) return CV_EINVAL;
    const struct cv_gate_cfg *self = cv_config_gate(o->cfg, o->gate_id);
    if (!self) {
        CV_ERROR("no gate \"%s\" in %s (gates[].id)", o->gate_id, o->cfg->path ? o->cfg->path : "the config");
        return CV_EINVAL;
    }
    struct cv_gate *g = calloc(1, sizeof *g);
    if (!g || !(g->id = strdup(o->gate_id))) {
        free(g);
        return CV_ENOMEM;
    }
    g->loop = o->loop;
    g->cfg = o->cfg;
    g->self = self;
    g->types = o->types;
    g->default_timeout_ms = o->default_timeout_ms ? o->default_timeout_ms : CV_GATE_DEFAULT_TIMEOUT_MS;
    g->drain_ms = o->drain_ms ? o->drain_ms : CV_GATE_DRAIN_MS;
    g->sub_node = -1;
    g->rng = cv_mono_ns() | 1;
    gate__init_handles(g, o->handle_signals);
    int rv = gate__init_nodes(g);
    if (rv == 0) rv = gate__listen(g, o);
    if (rv) {
        gate__shutdown(g); /* frees g once the handles closed; on_stopped is not set yet */
        return rv;
    }
    g->on_stopped = o->on_stopped;
    g->data = o->data;
    for (size_t i = 0; i < g->n_nodes; i++) /* dial every node now: routing needs to know who is reachable */
        cv_rpc_client_connect(g->nodes[i].cli);
    sub__start(g, 0);
    *out = g;
    return 0;
}
