/* The gate's forwarder core: keeps a copy of the shard map, forwards object calls to the owning node and
 * routes them again, transparently, while shards move. The front ends (native.c, httpapi.c) bracket each
 * client request with cv_forwarder_begin/end and hand the operation to cv_forwarder_forward.
 *
 * Happy path: at start one RPC client per configured node (dialed right away, so that the gate knows
 * which nodes it can reach) and a "catalog.subscribe" to the first node: its ShardMap response and every
 * "catalog.shard_map" push it sends afterwards replace the gate's map when newer. A forward (struct fwd,
 * lifecycle cv_gate_fwd_sm) is queued, routed with the map (route.h), sent to the owner as
 * objects.call/create/delete, and the answer goes back through its callback.
 *
 * Failure modes: a node answering CV_EREDIRECT (body Redirect{applied_index}) makes the forward wait
 * until the map reaches that index (a map push wakes it) or a backoff of 20..500 ms passed, then route
 * again; an unassigned shard, an owner the gate has no connection to, or an error the table marks as
 * rerouted (cv_err_reroute) waits the backoff and routes again. All of this until the call's deadline:
 * then the last cause is returned (CV_EUNAVAIL / CV_EREDIRECT: 503), or CV_ETIMEDOUT (504) when the
 * deadline passed while the node was executing the call. The subscription moves to the next node
 * (config order) when a subscribe fails or the subscribed node's connection drops, to the map's leader
 * (else the next connected node) when a node that sends heartbeats fell silent for SUB_STALL_MS (frozen,
 * fenced, or cut off: its TCP connection may well stay up), and to a node whose redirects show a newer
 * map when the gate's map stays behind it (the subscribed node lags). A forward already SENT is never
 * sent a second time while its node might still run it (it may have started: double execution); a
 * frozen owner answers it UNAVAILABLE when it resumes (its lease check reads a fresh clock), which
 * routes it again at once. Once a map shows that node declared dead and the shard gone from it
 * (cv_gate_may_resend: its lease ended, it ran the call before or never will), the forward is routed
 * again at once and a late answer to the old send is dropped (struct fwd_send); at-least-once if that
 * node ran it and the answer was lost — unless the call carries a reliable call id (X-Cverse-Call-Id,
 * CallRequest.call_id): the id goes with every attempt, the owner answers a repeat from the record it
 * committed with the call's state change, so such a call is exactly-once, and one whose outcome is
 * unknown (a retryable error that is not a reroute) is routed again too. Else it ends at its deadline. Closing
 * fails waiting forwards with CV_ECANCELED at once and sent ones when their client closes; the struct
 * is freed after the last handle's close callback. Single-threaded: everything runs on the loop. */
#include "gate/forwarder.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/guard.h"
#include "gate/route.h"
#include "net/frame.h"
#include "net/rpc.h"
#include "util/buf.h"
#include "util/log.h"

#define SUB_TIMEOUT_MS 1000u     /* a subscribe that takes longer moves on to the next node */
#define SUB_DIAL_TIMEOUT_MS 500u /* same, to a node we are not connected to (it may be down) */
#define SUB_LAG_MS 2000u         /* resubscribe when redirects say our map lags for this long */
#define SUB_NEXT_MS 20u          /* pause before trying the next node */
#define SUB_ROUND_MS 500u        /* pause after every node failed once */
#define SUB_STALL_MS 800u        /* a node that sends heartbeats and was silent this long is given up */
#define SUB_WATCH_MS 100u        /* how often the subscription's silence is checked */

const char *const cv_gate_op_names[CV_GATE_N_OPS] = {"call", "create", "delete"};
const char *const cv_gate_retry_names[CV_GATE_N_RETRY] = {"redirect", "unavailable", "no_owner"};
static const char *const op_methods[CV_GATE_N_OPS] = {"objects.call", "objects.create", "objects.delete"};

#define WAITING (CV_SM_BIT(CV_FWD_ROUTING) | CV_SM_BIT(CV_FWD_DONE))
#define AFTER_SEND (CV_SM_BIT(CV_FWD_BACKOFF) | CV_SM_BIT(CV_FWD_AWAIT_MAP) | CV_SM_BIT(CV_FWD_DONE))
static const struct cv_sm_state fwd_states[CV_FWD_N_STATES] = {
    [CV_FWD_QUEUED] = {"queued", CV_SM_INITIAL, WAITING},
    [CV_FWD_ROUTING] = {"routing", 0, AFTER_SEND | CV_SM_BIT(CV_FWD_SENT)},
    [CV_FWD_SENT] = {"sent", 0, AFTER_SEND},
    [CV_FWD_BACKOFF] = {"backoff", 0, WAITING},
    [CV_FWD_AWAIT_MAP] = {"await_map", 0, WAITING},
    [CV_FWD_DONE] = {"done", CV_SM_FINAL, 0},
};
const struct cv_sm_conf cv_gate_fwd_sm = {"gate forward", fwd_states, CV_FWD_N_STATES};

struct gate_node {
    struct cv_forwarder *fw;
    char *id, *addr;           /* the config's node, or one the shard map listed (it joined later) */
    struct cv_rpc_client *cli;
    size_t index;
    bool connected;
};

struct fwd;

/* One send of a forward: the data of its RPC. A forward sent again while the earlier send is still
 * unanswered (its node was declared dead) leaves the old one with f = NULL: its answer, if it ever comes,
 * is dropped. */
struct fwd_send {
    struct fwd *f;
};

/* One forwarded operation, from cv_forwarder_forward to its callback. */
struct fwd {
    struct cv_sm sm; /* first: the invariant casts back */
    struct cv_forwarder *fw;
    struct fwd *prev, *next; /* fw->calls */
    enum cv_gate_op op;
    char *type, *id, *method;
    char *call_id;        /* reliable call id ("" = none): sent with every attempt */
    char *client_id;      /* the caller's client id ("" = none) */
    char *user, *roles;   /* the authenticated caller ("" = none): CallRequest caller_user / caller_roles */
    Cverse__Rpc__CallForm form;
    bool compact;
    uint8_t *req;         /* form JSON: the text, NUL-terminated */
    size_t req_len;       /* type, id, method, call_id and req point into mem: one allocation per call */
    uint64_t deadline_ms; /* cv_mono_ms() */
    uint64_t want_index;  /* from redirects: wait for a map at least this recent */
    size_t node;          /* SENT: index of the node the call went to */
    struct fwd_send *send; /* SENT: the unanswered send */
    unsigned retries;
    int last_err;         /* cause of the last wait, 0 if none */
    char last_msg[256];
    uv_timer_t timer;     /* first attempt and retries */
    cv_gate_done_cb cb;
    void *data;
    char mem[];
};

struct cv_forwarder {
    uv_loop_t *loop;
    const struct cv_config *cfg;
    const struct cv_gate_cfg *self;
    char *id;
    unsigned default_timeout_ms;
    struct gate_node **nodes;  /* one allocation each: a client's data stays valid as the table grows */
    size_t n_nodes, cap_nodes;
    struct cv_gate_map map;
    bool shards_warned;

    /* shard-map subscription */
    int sub_node;      /* index of the node we are subscribed to, -1 if none */
    size_t sub_next;   /* node to try next */
    bool sub_inflight;
    unsigned sub_failures;
    uv_timer_t sub_timer;
    bool started;         /* sub_timer and watch_timer initialised */
    uint64_t sub_heard_ms; /* cv_mono_ms() of the subscription's answer, last push or heartbeat */
    bool sub_beats;       /* the subscribed node sends heartbeats (node/mapfeed.h): its silence counts */
    uv_timer_t watch_timer; /* every SUB_WATCH_MS: is the subscription silent (node frozen, fenced)? */
    uint64_t lag_since;   /* cv_mono_ms() when a redirect first said a newer map exists; 0 = not lagging */
    uint64_t lag_index;   /* the newest index redirects reported */
    size_t lag_node;      /* the node that reported it */

    struct fwd *calls;
    uint64_t rng;
    bool stopping, closing;
    int handles; /* handles and clients whose close callback has not run yet */
    void (*on_idle)(void *data);
    void (*on_push)(void *data, const uint8_t *body, size_t len);
    void (*on_stats)(void *data, struct cv_gate_stats *out);
    void (*on_closed)(void *data);
    void *data, *closed_data;
    struct cv_gate_stats stats; /* counters only; gauges are filled by cv_forwarder_stats */
};

/* ---------------------------------------------------------------------------------------------------
 * Lifetime: the forwarder is freed after the last close callback. */

static void forwarder__free(struct cv_forwarder *fw)
{
    if (fw->on_closed) fw->on_closed(fw->closed_data);
    cv_gate_map_free(&fw->map);
    for (size_t i = 0; i < fw->n_nodes; i++) {
        free(fw->nodes[i]->id);
        free(fw->nodes[i]->addr);
        free(fw->nodes[i]);
    }
    free(fw->nodes);
    free(fw->id);
    free(fw);
}

static void forwarder__unref(struct cv_forwarder *fw)
{
    if (--fw->handles == 0 && fw->closing) forwarder__free(fw);
}

static void forwarder__handle_closed(uv_handle_t *h)
{
    forwarder__unref(h->data);
}

static double forwarder__jitter(struct cv_forwarder *fw)
{
    fw->rng ^= fw->rng << 13; /* xorshift64 */
    fw->rng ^= fw->rng >> 7;
    fw->rng ^= fw->rng << 17;
    return (double)(fw->rng >> 11) / (double)(1ull << 53);
}

static struct gate_node *forwarder__node(struct cv_forwarder *fw, const char *id)
{
    for (size_t i = 0; i < fw->n_nodes; i++)
        if (strcmp(fw->nodes[i]->id, id) == 0) return fw->nodes[i];
    return NULL;
}

/* Appends a node to the table (not dialed); NULL out of memory. */
static struct gate_node *forwarder__add_node(struct cv_forwarder *fw, const char *id, const char *addr)
{
    if (cv_array_grow((void **)&fw->nodes, &fw->cap_nodes, fw->n_nodes + 1, sizeof *fw->nodes)) return NULL;
    struct gate_node *n = calloc(1, sizeof *n);
    if (!n || !(n->id = strdup(id)) || !(n->addr = strdup(addr))) {
        if (n) free(n->id);
        free(n);
        return NULL;
    }
    n->fw = fw;
    n->index = fw->n_nodes;
    fw->nodes[fw->n_nodes++] = n;
    return n;
}

static void fwnode__on_event(void *data, const char *method, const uint8_t *body, size_t len);
static void fwnode__on_state(void *data, int connected);

/* Creates node n's client and dials it: routing needs to know who is reachable. */
static int forwarder__dial(struct cv_forwarder *fw, struct gate_node *n)
{
    struct cv_rpc_client_opts o = {.addr = n->addr, .on_event = fwnode__on_event, .on_state = fwnode__on_state,
                                   .data = n, .guard = cv_guard_cluster()};
    int rv = cv_rpc_client_init(fw->loop, &o, &n->cli);
    if (rv) return rv;
    fw->handles++;
    cv_rpc_client_connect(n->cli);
    return 0;
}

/* Live nodes the map lists that the table lacks (they joined the cluster after the gate started): added
 * and dialed, so that calls route to them like to the config's (a joined node is listed once it
 * registered: it owns no shard before). */
static void forwarder__learn(struct cv_forwarder *fw)
{
    const Cverse__Rpc__ShardMap *pb = fw->map.pb;
    for (size_t i = 0; i < pb->n_nodes && !fw->closing; i++) {
        const Cverse__Rpc__NodeAddr *na = pb->nodes[i];
        if (!na->alive || !na->id[0] || !na->advertise_addr[0] || forwarder__node(fw, na->id)) continue;
        struct gate_node *n = forwarder__add_node(fw, na->id, na->advertise_addr);
        if (!n || forwarder__dial(fw, n)) {
            CV_WARN("cannot add node %s (%s) from the shard map", na->id, na->advertise_addr);
            continue;
        }
        CV_INFO("node %s (%s) joined the cluster: routing to it", na->id, na->advertise_addr);
    }
}

/* ---------------------------------------------------------------------------------------------------
 * Forwarding. */

static const char *fwd__invariant(const struct cv_sm *m, int prev)
{
    const struct fwd *f = (const struct fwd *)m;
    bool armed = uv_is_active((const uv_handle_t *)&f->timer);
    bool listed = f->prev || f->next || f->fw->calls == f;
    (void)prev;
    switch (m->state) {
    case CV_FWD_QUEUED: return f->retries == 0 && armed ? NULL : "queued without its first attempt scheduled";
    case CV_FWD_ROUTING: return armed ? "routing with a retry still scheduled" : NULL;
    case CV_FWD_SENT: return f->node < f->fw->n_nodes && !armed ? NULL : "sent to no node";
    case CV_FWD_BACKOFF:
        return f->last_err && armed && f->want_index <= cv_gate_map_index(&f->fw->map)
                   ? NULL
                   : "backing off without a cause or a timer, or while a newer map is due";
    case CV_FWD_AWAIT_MAP:
        return f->last_err && armed && f->want_index > cv_gate_map_index(&f->fw->map)
                   ? NULL
                   : "waiting for a map without a cause, a timer or an index to wait for";
    case CV_FWD_DONE: return listed || armed ? "done but still listed or scheduled" : NULL;
    default: return "unknown state";
    }
}

/* Every move of a forward goes through here: checked (debug builds) and counted. */
static void fwd__move(struct fwd *f, enum cv_gate_fwd_state to)
{
    cv_sm_move(&f->sm, (int)to);
    f->fw->stats.fwd_moves[to]++;
}

static void fwd__try(struct fwd *f);

static void fwd__free(struct fwd *f)
{
    free(f); /* its strings and request live in f->mem */
}

static void fwd__closed(uv_handle_t *h)
{
    struct fwd *f = h->data;
    struct cv_forwarder *fw = f->fw;
    cv_sm_fini(&f->sm);
    fwd__free(f);
    forwarder__unref(fw);
}

static void fwd__finish(struct fwd *f, int status, const char *error, const uint8_t *body, size_t len)
{
    struct cv_forwarder *fw = f->fw;
    if (f->prev) f->prev->next = f->next;
    else fw->calls = f->next;
    if (f->next) f->next->prev = f->prev;
    f->prev = f->next = NULL;
    uv_timer_stop(&f->timer);
    fwd__move(f, CV_FWD_DONE);
    if (status != 0 && !error) error = cv_strerror(status);
    bool body_too = (status == 0 || status == CV_EAPP) && body; /* CV_EAPP: the packed application error */
    f->cb(f->data, status, error, body_too ? body : (const uint8_t *)"", body_too ? len : 0);
    uv_close((uv_handle_t *)&f->timer, fwd__closed);
}

static void fwd__timer_cb(uv_timer_t *t)
{
    fwd__try(t->data);
}

/* Waits before routing again: the backoff, or less if a map push arrives first (see forwarder__wake). */
static void fwd__retry_later(struct fwd *f, int err, const char *msg, enum cv_gate_retry why)
{
    struct cv_forwarder *fw = f->fw;
    f->last_err = err;
    snprintf(f->last_msg, sizeof f->last_msg, "%s", msg ? msg : cv_strerror(err));
    uint64_t now = cv_mono_ms();
    uint64_t remaining = f->deadline_ms > now ? f->deadline_ms - now : 0;
    unsigned delay = cv_gate_backoff_ms(f->retries, forwarder__jitter(fw), remaining);
    f->retries++;
    fw->stats.retries[why]++;
    CV_DEBUG("%s %s/%s: retry %u in %u ms: %s", cv_gate_op_names[f->op], f->type, f->id, f->retries, delay,
             f->last_msg);
    uv_timer_start(&f->timer, fwd__timer_cb, delay, 0);
    fwd__move(f, f->want_index > cv_gate_map_index(&fw->map) ? CV_FWD_AWAIT_MAP : CV_FWD_BACKOFF);
}

static void sub__start(struct cv_forwarder *fw, unsigned delay_ms);

/* A redirect said node `from` applied `index`. If our map stays behind that for SUB_LAG_MS, the map we
 * get lags (the subscribed node is cut off from the raft group, or a push was lost): subscribe to `from`,
 * which has the newer map (possibly the subscribed node itself: a new subscribe answers its current
 * map). */
static void forwarder__note_lag(struct cv_forwarder *fw, size_t from, uint64_t index)
{
    uint64_t now = cv_mono_ms();
    if (index <= cv_gate_map_index(&fw->map)) return;
    if (!fw->lag_since) fw->lag_since = now;
    if (index >= fw->lag_index) {
        fw->lag_index = index;
        fw->lag_node = from;
    }
    if (now - fw->lag_since < SUB_LAG_MS || fw->sub_node < 0) return;
    CV_WARN("the shard map from node %s lags (index %llu, node %s has %llu): subscribing to node %s",
            fw->nodes[fw->sub_node]->id, (unsigned long long)cv_gate_map_index(&fw->map),
            fw->nodes[fw->lag_node]->id, (unsigned long long)fw->lag_index, fw->nodes[fw->lag_node]->id);
    fw->sub_node = -1;
    fw->sub_next = fw->lag_node;
    fw->lag_since = 0;
    sub__start(fw, 0);
}

static void fwd__reply(void *data, int status, const char *error, const uint8_t *body, size_t len)
{
    struct fwd_send *s = data;
    struct fwd *f = s->f;
    free(s);
    if (!f) return; /* sent again elsewhere meanwhile (forwarder__resend_orphans) */
    f->send = NULL;
    struct cv_forwarder *fw = f->fw;
    if (status == CV_EREDIRECT && !fw->closing) {
        Cverse__Rpc__Redirect *r = cverse__rpc__redirect__unpack(NULL, len, body);
        if (r && r->applied_index > f->want_index) f->want_index = r->applied_index;
        if (r) forwarder__note_lag(fw, f->node, r->applied_index);
        /* The node lags the map we routed with: it applies that index within milliseconds, so retry
         * soon instead of after the backoff an outage built up (0.3-0.45 s more per failover, measured). */
        if (r && r->applied_index < cv_gate_map_index(&fw->map) && f->retries > 1) f->retries = 1;
        if (r) cverse__rpc__redirect__free_unpacked(r, NULL);
        fwd__retry_later(f, status, error, CV_GATE_RETRY_REDIRECT);
    } else if (cv_err_reroute(status) && !fw->closing) {
        fwd__retry_later(f, status, error, CV_GATE_RETRY_UNAVAILABLE);
    } else if (f->call_id[0] && cv_err_retryable(status) && !fw->closing) {
        /* A reliable call whose outcome is unknown (a save that may have committed, a lost answer): the
         * owner answers a repeat of its id from its record, so sending it again is safe. */
        fwd__retry_later(f, status, error, CV_GATE_RETRY_UNAVAILABLE);
    } else {
        fwd__finish(f, status, error, body, len);
    }
}

/* Packs f's request for its node into buf (bufsize bytes) when it fits, else into a malloc'ed buffer;
 * *out is either. */
static int fwd__pack(const struct fwd *f, uint64_t map_index, uint8_t *buf, size_t bufsize, uint8_t **out,
                     size_t *len)
{
    Cverse__Rpc__CallRequest call = CVERSE__RPC__CALL_REQUEST__INIT;
    Cverse__Rpc__CreateRequest create = CVERSE__RPC__CREATE_REQUEST__INIT;
    Cverse__Rpc__DeleteRequest del = CVERSE__RPC__DELETE_REQUEST__INIT;
    ProtobufCMessage *m;
    if (f->op == CV_GATE_CALL) {
        call.type = f->type;
        call.id = f->id;
        call.method = f->method;
        if (f->form == CVERSE__RPC__CALL_FORM__CALL_FORM_JSON) {
            call.request_json = (char *)f->req;
        } else {
            call.request.data = f->req;
            call.request.len = f->req_len;
        }
        call.map_index = map_index;
        call.call_id = f->call_id;
        call.client_id = f->client_id;
        call.caller_user = f->user;
        call.caller_roles = f->roles;
        call.form = f->form;
        call.compact = f->compact;
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
    *len = f->op == CV_GATE_CALL ? cv_call_size(&call) : protobuf_c_message_get_packed_size(m);
    *out = *len <= bufsize ? buf : malloc(*len);
    if (!*out) return CV_ENOMEM;
    if (f->op == CV_GATE_CALL) cv_call_pack(&call, *out); /* the hot one: without protobuf-c's reflection */
    else protobuf_c_message_pack(m, *out);
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
    struct cv_forwarder *fw = f->fw;
    uint8_t buf[1024], *body; /* cv_rpc_call copies the body */
    size_t len;
    f->node = n->index;
    fwd__move(f, CV_FWD_SENT); /* its answer never comes from inside cv_rpc_call; a failure ends it */
    struct fwd_send *s = malloc(sizeof *s);
    int rv = s ? fwd__pack(f, cv_gate_map_index(&fw->map), buf, sizeof buf, &body, &len) : CV_ENOMEM;
    if (rv == 0) {
        s->f = f;
        rv = cv_rpc_call(n->cli, op_methods[f->op], body, len, (unsigned)remaining, fwd__reply, s);
        if (body != buf) free(body);
    }
    if (rv) {
        free(s);
        fwd__finish(f, rv, NULL, NULL, 0);
        return;
    }
    f->send = s;
}

/* Routes f with the current map: send, wait and route again, or fail. */
static void fwd__route(struct fwd *f, uint64_t remaining)
{
    struct cv_forwarder *fw = f->fw;
    char msg[256];
    struct cv_route r;
    cv_gate_route(&fw->map, fw->cfg, f->id, &r);
    if (r.action == CV_ROUTE_FAIL) {
        fwd__finish(f, r.err, r.why, NULL, 0);
        return;
    }
    if (r.action == CV_ROUTE_WAIT) {
        fwd__retry_later(f, r.err, r.why, CV_GATE_RETRY_NO_OWNER);
        return;
    }
    struct gate_node *n = forwarder__node(fw, r.node);
    if (!n || !n->connected) {
        snprintf(msg, sizeof msg, "no connection to node %s (owner of shard %u)", r.node, (unsigned)r.shard);
        if (!n) snprintf(msg, sizeof msg, "node %s owns shard %u but is not in the gate's config", r.node,
                         (unsigned)r.shard);
        fwd__retry_later(f, CV_EUNAVAIL, msg, CV_GATE_RETRY_UNAVAILABLE);
        return;
    }
    fwd__send(f, n, remaining);
}

static void fwd__try(struct fwd *f)
{
    struct cv_forwarder *fw = f->fw;
    fwd__move(f, CV_FWD_ROUTING);
    if (fw->closing) {
        fwd__finish(f, CV_ECANCELED, "gate is shutting down", NULL, 0);
        return;
    }
    uint64_t now = cv_mono_ms();
    if (now >= f->deadline_ms) fwd__expire(f);
    else fwd__route(f, f->deadline_ms - now);
}

/* Queues a forward of op (c->method, call_id, form and req only for CALL); see cv_forwarder_forward. */
static int forwarder__add(struct cv_forwarder *fw, enum cv_gate_op op, const struct cv_gate_call *c,
                          unsigned timeout_ms, cv_gate_done_cb cb, void *data)
{
    if (fw->stopping) return CV_EUNAVAIL;
    if ((unsigned)op >= CV_GATE_N_OPS || !c->type || !c->id || !cb || (c->len && !c->req)) return CV_EINVAL;
    bool call = op == CV_GATE_CALL;
    const char *method = call && c->method ? c->method : "", *call_id = call && c->call_id ? c->call_id : "";
    const char *client = call && c->client_id ? c->client_id : "";
    const char *user = call && c->user ? c->user : "", *roles = call && c->roles ? c->roles : "";
    const char *str[7] = {c->type, c->id, method, call_id, client, user, roles};
    size_t n[7], len = call ? c->len : 0, total = len + 1;
    for (int i = 0; i < 7; i++) total += (n[i] = strlen(str[i]) + 1);
    struct fwd *f = calloc(1, sizeof *f + total);
    if (!f) return CV_ENOMEM;
    char *p = f->mem;
    char **dst[7] = {&f->type, &f->id, &f->method, &f->call_id, &f->client_id, &f->user, &f->roles};
    for (int i = 0; i < 7; i++) {
        *dst[i] = memcpy(p, str[i], n[i]);
        p += n[i];
    }
    f->req = (uint8_t *)p;
    if (len) memcpy(f->req, c->req, len);
    f->req[len] = 0; /* form JSON: request_json */
    f->req_len = len;
    f->form = call ? c->form : CVERSE__RPC__CALL_FORM__CALL_FORM_BYTES;
    f->compact = call && c->compact;
    f->fw = fw;
    f->op = op;
    f->cb = cb;
    f->data = data;
    f->deadline_ms = cv_mono_ms() + (timeout_ms ? timeout_ms : fw->default_timeout_ms);
    uv_timer_init(fw->loop, &f->timer);
    f->timer.data = f;
    fw->handles++;
    f->next = fw->calls;
    if (fw->calls) fw->calls->prev = f;
    fw->calls = f;
    uv_timer_start(&f->timer, fwd__timer_cb, 0, 0); /* the callback must never run from in here */
    cv_sm_init(&f->sm, &cv_gate_fwd_sm, CV_FWD_QUEUED, fwd__invariant, f->id);
    fw->stats.fwd_moves[CV_FWD_QUEUED]++;
    return 0;
}

int cv_forwarder_forward(struct cv_forwarder *fw, enum cv_gate_op op, const char *type, const char *id,
                         const char *method, const uint8_t *req, size_t len, unsigned timeout_ms,
                         cv_gate_done_cb cb, void *data)
{
    struct cv_gate_call c = {.type = type, .id = id, .method = method, .req = req, .len = len};
    return forwarder__add(fw, op, &c, timeout_ms, cb, data);
}

int cv_forwarder_forward_call(struct cv_forwarder *fw, const struct cv_gate_call *c, unsigned timeout_ms,
                              cv_gate_done_cb cb, void *data)
{
    return forwarder__add(fw, CV_GATE_CALL, c, timeout_ms, cb, data);
}

/* ---------------------------------------------------------------------------------------------------
 * Shard map and subscription. */

/* Routes again now the waiting forwards the current map may unblock (those not waiting for a newer
 * map), through their timers so that no callback runs from here. */
static void forwarder__wake(struct cv_forwarder *fw)
{
    uint64_t index = cv_gate_map_index(&fw->map);
    for (struct fwd *f = fw->calls; f; f = f->next) {
        int s = cv_sm_state(&f->sm);
        if ((s == CV_FWD_BACKOFF || s == CV_FWD_AWAIT_MAP) && f->want_index <= index)
            uv_timer_start(&f->timer, fwd__timer_cb, 0, 0);
    }
}

/* Forwards SENT to a node this map shows declared dead, whose shard it gives to another node or to none
 * yet (cv_gate_may_resend): that node fenced itself before it was declared dead, so it ran the call
 * before its lease ended or never will. Route them again now rather than at their deadline (through
 * their timers). If it ran the call and the answer was lost, the call runs twice: at-least-once in that
 * case only (docs/architecture.md, gates and routing). */
static void forwarder__resend_orphans(struct cv_forwarder *fw)
{
    for (struct fwd *f = fw->calls; f; f = f->next) {
        const char *to = fw->nodes[f->node]->id;
        if (cv_sm_state(&f->sm) != CV_FWD_SENT || !cv_gate_may_resend(&fw->map, fw->cfg, f->id, to)) continue;
        f->send->f = NULL; /* its answer, if any, is dropped */
        f->send = NULL;
        f->last_err = CV_EUNAVAIL;
        snprintf(f->last_msg, sizeof f->last_msg, "node %s was declared dead while the call was pending", to);
        f->retries++;
        fw->stats.retries[CV_GATE_RETRY_UNAVAILABLE]++;
        fw->stats.resends++;
        CV_INFO("%s %s/%s: node %s declared dead with the call pending: routing it again", cv_gate_op_names[f->op],
                f->type, f->id, to);
        uv_timer_start(&f->timer, fwd__timer_cb, 0, 0);
        fwd__move(f, CV_FWD_BACKOFF);
    }
}

static void forwarder__map_applied(struct cv_forwarder *fw, uint32_t prev_unassigned, bool first)
{
    const Cverse__Rpc__ShardMap *pb = fw->map.pb;
    uint32_t unassigned = cv_gate_map_unassigned(&fw->map);
    fw->stats.maps_applied++;
    if (pb->applied_index >= fw->lag_index) fw->lag_since = 0;
    if (first || (prev_unassigned == 0) != (unassigned == 0))
        CV_INFO("shard map at index %llu: %u shards, %u unassigned, %zu nodes, leader %s",
                (unsigned long long)pb->applied_index, (unsigned)pb->shards, (unsigned)unassigned, pb->n_nodes,
                pb->leader[0] ? pb->leader : "unknown");
    else
        CV_DEBUG("shard map at index %llu (%u unassigned)", (unsigned long long)pb->applied_index,
                 (unsigned)unassigned);
    if (pb->shards != fw->cfg->shards && !fw->shards_warned) {
        CV_WARN("the cluster has %u shards but the config says %u: routing by the cluster's map",
                (unsigned)pb->shards, (unsigned)fw->cfg->shards);
        fw->shards_warned = true;
    }
    forwarder__learn(fw);
    forwarder__resend_orphans(fw);
    forwarder__wake(fw);
}

static int forwarder__apply(struct cv_forwarder *fw, const struct gate_node *from, const uint8_t *body, size_t len)
{
    uint32_t prev = cv_gate_map_unassigned(&fw->map);
    bool first = fw->map.pb == NULL;
    int rv = cv_gate_map_apply(&fw->map, body, len);
    if (rv < 0) {
        CV_WARN("ignoring a malformed shard map from node %s", from->id);
        return rv;
    }
    if (rv == 0) fw->stats.maps_ignored++;
    else forwarder__map_applied(fw, prev, first);
    return 0;
}

static void sub__done(void *data, int status, const char *error, const uint8_t *body, size_t len)
{
    struct gate_node *n = data;
    struct cv_forwarder *fw = n->fw;
    fw->sub_inflight = false;
    if (fw->closing) return;
    if (status == 0 && forwarder__apply(fw, n, body, len) == 0) {
        fw->sub_node = (int)n->index;
        fw->sub_failures = 0;
        fw->sub_heard_ms = cv_mono_ms();
        fw->sub_beats = false;
        fw->stats.sub_switches++;
        CV_INFO("subscribed to the shard map of node %s (gate at index %llu)", n->id,
                (unsigned long long)cv_gate_map_index(&fw->map));
        return;
    }
    if (status == 0) error = "malformed ShardMap";
    fw->sub_failures++;
    /* Quiet while the cluster starts: one warning per round of nodes, details at debug level. */
    if (fw->sub_failures % fw->n_nodes == 1 || fw->n_nodes == 1)
        CV_WARN("shard-map subscription to node %s failed: %s (trying the next node)", n->id, error);
    else
        CV_DEBUG("shard-map subscription to node %s failed: %s", n->id, error);
    fw->sub_next = (n->index + 1) % fw->n_nodes;
    sub__start(fw, fw->sub_next == 0 ? SUB_ROUND_MS : SUB_NEXT_MS);
}

static void sub__try(struct cv_forwarder *fw)
{
    if (fw->closing || fw->sub_inflight || fw->sub_node >= 0) return;
    struct gate_node *n = fw->nodes[fw->sub_next];
    Cverse__Rpc__SubscribeRequest req = CVERSE__RPC__SUBSCRIBE_REQUEST__INIT;
    req.gate_id = fw->id;
    uint8_t buf[128];
    size_t len = cverse__rpc__subscribe_request__get_packed_size(&req);
    if (len > sizeof buf) return; /* gate ids are short (config) */
    cverse__rpc__subscribe_request__pack(&req, buf);
    unsigned timeout = n->connected ? SUB_TIMEOUT_MS : SUB_DIAL_TIMEOUT_MS;
    if (cv_rpc_call(n->cli, "catalog.subscribe", buf, len, timeout, sub__done, n) == 0)
        fw->sub_inflight = true;
    else
        sub__start(fw, SUB_ROUND_MS);
}

static void sub__timer_cb(uv_timer_t *t)
{
    sub__try(t->data);
}

static void sub__start(struct cv_forwarder *fw, unsigned delay_ms)
{
    if (!fw->closing) uv_timer_start(&fw->sub_timer, sub__timer_cb, delay_ms, 0);
}

/* fwnode__: callbacks of the forwarder's client to one node (struct gate_node), not the node module. */
static void fwnode__on_event(void *data, const char *method, const uint8_t *body, size_t len)
{
    struct gate_node *n = data;
    struct cv_forwarder *fw = n->fw;
    bool beat = strcmp(method, "catalog.heartbeat") == 0;
    if (fw->sub_node == (int)n->index && (beat || strcmp(method, "catalog.shard_map") == 0)) {
        fw->sub_heard_ms = cv_mono_ms();
        fw->sub_beats |= beat;
    }
    if (strcmp(method, "catalog.shard_map") == 0) forwarder__apply(fw, n, body, len);
    else if (strcmp(method, "gate.push") == 0 && fw->on_push) fw->on_push(fw->data, body, len);
    else if (!beat) CV_DEBUG("ignoring event %s from node %s", method, n->id);
}

static void fwnode__attached(void *data, int status, const char *error, const uint8_t *body, size_t len)
{
    struct gate_node *n = data;
    (void)body;
    (void)len;
    if (status && status != CV_ECANCELED)
        CV_WARN("gate.attach on node %s failed: %s (its pushes to our clients drop until it reconnects)", n->id,
                error);
}

/* Names this gate on n's connection, which just came up: the node sends the pushes for our clients on
 * it (node/push.c). Every connection is named anew: a node that restarted forgot the old one. */
static void fwnode__attach(struct cv_forwarder *fw, struct gate_node *n)
{
    Cverse__Rpc__AttachRequest req = CVERSE__RPC__ATTACH_REQUEST__INIT;
    req.gate_id = fw->id;
    uint8_t buf[160];
    size_t len = cverse__rpc__attach_request__get_packed_size(&req);
    if (len > sizeof buf) return; /* gate ids are short (config) */
    cverse__rpc__attach_request__pack(&req, buf);
    if (cv_rpc_call(n->cli, "gate.attach", buf, len, SUB_TIMEOUT_MS, fwnode__attached, n))
        CV_WARN("cannot name this gate to node %s: its pushes to our clients drop", n->id);
}

/* The node to subscribe to instead of `from`: the leader the map names, if connected; else the next
 * connected node in config order; else simply the next one. */
static size_t sub__successor(struct cv_forwarder *fw, size_t from)
{
    const char *leader = fw->map.pb ? fw->map.pb->leader : "";
    struct gate_node *l = leader[0] ? forwarder__node(fw, leader) : NULL;
    if (l && l->index != from && l->connected) return l->index;
    for (size_t k = 1; k < fw->n_nodes; k++) {
        size_t i = (from + k) % fw->n_nodes;
        if (fw->nodes[i]->connected) return i;
    }
    return (from + 1) % fw->n_nodes;
}

static void sub__watch(uv_timer_t *t)
{
    struct cv_forwarder *fw = t->data;
    uint64_t now = cv_mono_ms();
    if (fw->closing || fw->sub_node < 0 || !fw->sub_beats || fw->n_nodes < 2 ||
        now - fw->sub_heard_ms < SUB_STALL_MS)
        return;
    size_t from = (size_t)fw->sub_node;
    fw->sub_node = -1;
    fw->sub_next = sub__successor(fw, from);
    fw->stats.sub_stalls++;
    CV_WARN("the shard-map subscription to node %s is silent for %llu ms (frozen, fenced or cut off): "
            "subscribing to node %s", fw->nodes[from]->id, (unsigned long long)(now - fw->sub_heard_ms),
            fw->nodes[fw->sub_next]->id);
    sub__start(fw, 0);
}

static void fwnode__on_state(void *data, int connected)
{
    struct gate_node *n = data;
    struct cv_forwarder *fw = n->fw;
    n->connected = connected != 0;
    CV_DEBUG("connection to node %s %s", n->id, connected ? "up" : "down");
    if (connected && !fw->closing && fw->on_push) fwnode__attach(fw, n);
    if (connected && !fw->closing) forwarder__wake(fw); /* forwards may have waited for this node */
    if (connected || fw->closing || fw->sub_node != (int)n->index) return;
    fw->sub_node = -1;
    fw->sub_next = (n->index + 1) % fw->n_nodes;
    CV_WARN("lost the shard-map subscription (node %s disconnected); trying node %s", n->id,
            fw->nodes[fw->sub_next]->id);
    sub__start(fw, 0);
}

/* ---------------------------------------------------------------------------------------------------
 * Client requests, readiness, counters. */

int cv_forwarder_begin(struct cv_forwarder *fw)
{
    if (fw->stopping) return CV_EUNAVAIL;
    fw->stats.inflight++;
    return 0;
}

void cv_forwarder_end(struct cv_forwarder *fw, enum cv_gate_op op, int status, uint64_t start_ns)
{
    if ((unsigned)op < CV_GATE_N_OPS) {
        cv_hist_record(&fw->stats.lat[op], (double)(cv_mono_ns() - start_ns) / 1e9);
        fw->stats.results[op][cv_err_code(status)]++;
    }
    if (fw->stats.inflight > 0) fw->stats.inflight--;
    if (fw->stopping && !fw->closing && fw->stats.inflight == 0 && fw->on_idle) fw->on_idle(fw->data);
}

static size_t forwarder__connections(const struct cv_forwarder *fw)
{
    size_t up = 0;
    for (size_t i = 0; i < fw->n_nodes; i++) up += fw->nodes[i]->connected;
    return up;
}

bool cv_forwarder_ready(const struct cv_forwarder *fw, const char **why)
{
    if (fw->stopping) *why = "gate is shutting down";
    else if (!fw->map.pb) *why = "no shard map yet (not subscribed to any node)";
    else if (cv_gate_map_unassigned(&fw->map) > 0) *why = "shards are unassigned";
    else if (forwarder__connections(fw) == 0) *why = "no connection to any node";
    else return true;
    return false;
}

void cv_forwarder_stats(const struct cv_forwarder *fw, struct cv_gate_stats *out)
{
    *out = fw->stats;
    out->etcd_up = -1; /* the gate's registration is not the forwarder's: the caller fills it in */
    out->map_index = cv_gate_map_index(&fw->map);
    out->unassigned = fw->map.pb ? cv_gate_map_unassigned(&fw->map) : (uint32_t)fw->cfg->shards;
    out->connections = forwarder__connections(fw);
    if (fw->on_stats) fw->on_stats(fw->data, out);
}

const char *cv_forwarder_id(const struct cv_forwarder *fw) { return fw->id; }
const struct cv_config *cv_forwarder_config(const struct cv_forwarder *fw) { return fw->cfg; }
const struct cv_gate_cfg *cv_forwarder_self(const struct cv_forwarder *fw) { return fw->self; }
const Cverse__Rpc__ShardMap *cv_forwarder_map(const struct cv_forwarder *fw) { return fw->map.pb; }
bool cv_forwarder_subscribed(const struct cv_forwarder *fw) { return fw->sub_node >= 0; }

/* ---------------------------------------------------------------------------------------------------
 * Init, start, stop, close. */

int cv_forwarder_init(const struct cv_forwarder_opts *o, struct cv_forwarder **out)
{
    if (!o || !o->loop || !o->cfg || !o->gate_id || !out || o->cfg->n_nodes == 0) return CV_EINVAL;
    const struct cv_gate_cfg *self = cv_config_gate(o->cfg, o->gate_id);
    if (!self) return CV_EINVAL;
    struct cv_forwarder *fw = calloc(1, sizeof *fw);
    if (!fw) return CV_ENOMEM;
    /* the table grows node by node: closing walks only what exists (defect 2) */
    fw->id = strdup(o->gate_id);
    if (!fw->id || cv_array_grow((void **)&fw->nodes, &fw->cap_nodes, o->cfg->n_nodes, sizeof *fw->nodes))
        goto err_after_alloc; /* the config's nodes: their table first (a count too large fails here) */
    for (size_t i = 0; i < o->cfg->n_nodes; i++)
        if (!forwarder__add_node(fw, o->cfg->nodes[i].id, o->cfg->nodes[i].advertise_addr)) goto err_after_alloc;
    fw->loop = o->loop;
    fw->cfg = o->cfg;
    fw->self = self;
    fw->default_timeout_ms = o->default_timeout_ms;
    fw->on_idle = o->on_idle;
    fw->on_push = o->on_push;
    fw->on_stats = o->on_stats;
    fw->data = o->data;
    fw->sub_node = -1;
    fw->rng = cv_mono_ns() | 1;
    *out = fw;
    return 0;

err_after_alloc:
    fw->on_closed = NULL;
    forwarder__free(fw);
    return CV_ENOMEM;
}

int cv_forwarder_start(struct cv_forwarder *fw)
{
    uv_timer_init(fw->loop, &fw->sub_timer);
    fw->sub_timer.data = fw;
    uv_timer_init(fw->loop, &fw->watch_timer);
    fw->watch_timer.data = fw;
    fw->handles += 2;
    fw->started = true;
    uv_timer_start(&fw->watch_timer, sub__watch, SUB_WATCH_MS, SUB_WATCH_MS);
    for (size_t i = 0; i < fw->n_nodes; i++) {
        int rv = forwarder__dial(fw, fw->nodes[i]);
        if (rv) return rv;
    }
    sub__start(fw, 0);
    return 0;
}

size_t cv_forwarder_stop(struct cv_forwarder *fw)
{
    fw->stopping = true;
    return fw->stats.inflight;
}

static void forwarder__client_closed(struct cv_rpc_client *cli)
{
    struct gate_node *n = cv_rpc_client_data(cli);
    n->cli = NULL;
    forwarder__unref(n->fw);
}

static void forwarder__unstarted_closed(uv_handle_t *h)
{
    forwarder__free(h->data);
}

void cv_forwarder_close(struct cv_forwarder *fw, void (*cb)(void *data), void *data)
{
    if (fw->closing) return;
    if (fw->stats.inflight > 0) CV_WARN("canceling %zu requests still in flight", fw->stats.inflight);
    fw->closing = fw->stopping = true;
    fw->on_closed = cb;
    fw->closed_data = data;
    if (!fw->started) {
        /* Nothing runs yet; a throwaway timer keeps "cb never from inside" without a special case. */
        uv_timer_init(fw->loop, &fw->sub_timer);
        fw->sub_timer.data = fw;
        uv_close((uv_handle_t *)&fw->sub_timer, forwarder__unstarted_closed);
        return;
    }
    fw->handles++; /* held while we walk: callbacks below may close the last handle */
    uv_close((uv_handle_t *)&fw->sub_timer, forwarder__handle_closed);
    uv_close((uv_handle_t *)&fw->watch_timer, forwarder__handle_closed);
    /* Waiting forwards fail now (their callbacks only answer and count), sent ones when their client
     * closes below. */
    for (struct fwd *f = fw->calls, *next; f; f = next) {
        next = f->next;
        if (cv_sm_state(&f->sm) != CV_FWD_SENT) fwd__finish(f, CV_ECANCELED, "gate is shutting down", NULL, 0);
    }
    for (size_t i = 0; i < fw->n_nodes; i++)
        if (fw->nodes[i]->cli) cv_rpc_client_close(fw->nodes[i]->cli, forwarder__client_closed);
    forwarder__unref(fw);
}
