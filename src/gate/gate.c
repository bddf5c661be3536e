/* The gate process's server: creates the forwarder core (forwarder.c), listens with the native front end
 * (native.c) on the gate's grpc_addr and the HTTP front end (httpapi.c) on its http_addr, and runs the
 * stop sequence. It is the only file that knows all of them; the front ends know only the forwarder.
 *
 * Happy path: cv_gate_start allocates the forwarder, binds both listeners, then starts the forwarder
 * (node connections, shard-map subscription). Stop (SIGTERM or cv_gate_stop): the forwarder refuses new
 * requests (CV_EUNAVAIL), requests in flight get drain_ms (the forwarder's on_idle cuts the wait short
 * when the last one ends), then the servers and signals close, the forwarder closes (whatever is still
 * pending fails with CV_ECANCELED), and once every close callback ran (the servers' included) "gate
 * stopped" is logged, on_stopped runs and the struct is freed. The servers' data is the gate (not the
 * forwarder) so that their close callbacks find it: the forwarder may be freed before they run.
 * With cluster.provider etcd the gate registers <prefix>/gates/<id> once listening and revokes it at stop
 * (discovery/disc.h); its id held by another live process stops it (exit 1 through opts->exit_code).
 *
 * Failure modes: out of memory or an address in use at start close whatever was opened; the loop then
 * runs empty and on_stopped is not called. Single-threaded: everything runs on the loop. */
#include "gate/gate.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"
#include "discovery/disc.h"
#include "gate/auth.h"
#include "gate/forwarder.h"
#include "gate/httpapi.h"
#include "gate/native.h"
#include "gate/push.h"
#include "net/http.h"
#include "net/rpc.h"
#include "net/tls.h"
#include "util/log.h"

#define HTTP_MAX_BODY (1u << 20) /* 1 MiB: larger bodies get 413 */

struct cv_gate {
    uv_loop_t *loop;
    char *id;                /* for the last log line, when the forwarder is gone */
    struct cv_forwarder *fw;
    struct cv_gate_push *push; /* push clients (docs/push.md) */
    struct cv_gate_fronts fronts; /* what the front ends get: fw and push */
    struct cv_rpc_server *rpc;
    struct cv_http_server *http;
    struct cv_tls_ctx *tls;  /* gates[].tls_cert_file: the HTTP port speaks TLS; NULL: plain */
    unsigned drain_ms;
    bool stopping, closing;
    uv_timer_t drain_timer;
    bool signals;
    uv_signal_t sigterm, sigint;
    struct cv_disc *disc; /* etcd registration (cluster.provider etcd), else NULL */
    int *failed;          /* opts' exit_code */
    int handles; /* handles and components whose close callback has not run yet */
    void (*on_stopped)(void *data);
    void *data;
};

/* ---------------------------------------------------------------------------------------------------
 * Lifetime: the gate is freed after the last close callback. */

static void gate__unref(struct cv_gate *g)
{
    if (--g->handles > 0 || !g->closing) return;
    CV_INFO("gate %s stopped", g->id);
    cv_gate_auth_free(g->fronts.auth);
    if (g->on_stopped) g->on_stopped(g->data);
    cv_tls_ctx_free(g->tls); /* after the HTTP server closed: its connections held references anyway */
    free(g->id);
    free(g);
}

static void gate__handle_closed(uv_handle_t *h)
{
    gate__unref(h->data);
}

/* The forwarder's and both servers' close callbacks (the servers' data is the gate). */
static void gate__part_closed(void *data)
{
    gate__unref(data);
}

/* Closes whatever cv_gate_start opened (it may have failed half way); g is freed by the last callback. */
static void gate__shutdown(struct cv_gate *g)
{
    if (g->closing) return;
    g->closing = g->stopping = true;
    uv_close((uv_handle_t *)&g->drain_timer, gate__handle_closed);
    if (g->signals) {
        uv_close((uv_handle_t *)&g->sigterm, gate__handle_closed);
        uv_close((uv_handle_t *)&g->sigint, gate__handle_closed);
    }
    /* The push clients' streams end first (while the HTTP server still owns them). */
    if (g->push) {
        g->handles++;
        cv_gate_push_close(g->push, gate__part_closed, g);
        g->push = g->fronts.push = NULL;
    }
    /* The servers call no handler once closing; answers to their requests become no-ops. Each counts
     * until its close callback ran (never from in here). */
    if (g->http) {
        g->handles++;
        cv_http_server_close(g->http, gate__part_closed);
    }
    if (g->rpc) {
        g->handles++;
        cv_rpc_server_close(g->rpc, gate__part_closed);
    }
    g->http = NULL;
    g->rpc = NULL;
    if (g->disc) {
        g->handles++;
        cv_disc_close(g->disc, gate__part_closed, g); /* revokes our lease: the key goes at once */
        g->disc = NULL;
        g->fronts.disc = NULL;
    }
    g->handles++;
    cv_forwarder_close(g->fw, gate__part_closed, g); /* never calls back from in here */
    g->fw = g->fronts.fw = NULL;
}

static void gate__drain_cb(uv_timer_t *t)
{
    gate__shutdown(t->data);
}

/* The last request in flight of a stopping gate ended: shut down now, through the timer (we may be deep
 * inside a client callback here). */
/* A node's gate.push event (forwarder.h on_push): queued for our clients; nothing before the registry exists. */
static void gate__push(void *data, const uint8_t *body, size_t len)
{
    struct cv_gate *g = data;
    if (g->push && cv_gate_push_batch(g->push, body, len)) CV_WARN("a node sent an undecodable PushBatch: dropped");
}

/* The client ports' counters for /metrics (forwarder.h on_stats). */
static void gate__stats(void *data, struct cv_gate_stats *out)
{
    struct cv_gate *g = data;
    struct cv_http_server_stats hs;
    struct cv_rpc_server_stats rs = {0};
    if (!g->http) return;
    cv_http_server_stats(g->http, &hs);
    if (g->rpc) cv_rpc_server_stats(g->rpc, &rs);
    out->client_conns = hs.connections + rs.connections; /* both client ports, counted alike */
    out->cut[CV_GATE_CUT_REQUEST_TIMEOUT] = hs.request_timeouts + rs.request_timeouts;
    out->cut[CV_GATE_CUT_IDLE] = hs.idle_closed + rs.idle_closed;
    out->cut[CV_GATE_CUT_MAX_CONNS] = hs.refused + rs.refused;
    out->cut[CV_GATE_CUT_TLS] = hs.tls_failures + rs.tls_failures;
    out->rate_limited = hs.rate_limited + rs.rate_limited;
}

static void gate__idle(void *data)
{
    struct cv_gate *g = data;
    if (!g->closing) uv_timer_start(&g->drain_timer, gate__drain_cb, 0, 0);
}

void cv_gate_stop(struct cv_gate *g)
{
    if (g->stopping) return;
    g->stopping = true;
    size_t inflight = cv_forwarder_stop(g->fw);
    if (inflight) CV_INFO("stopping: waiting up to %u ms for %zu requests in flight", g->drain_ms, inflight);
    /* Through the timer: cv_gate_stop may be called from a callback of something it closes. */
    uv_timer_start(&g->drain_timer, gate__drain_cb, inflight ? g->drain_ms : 0, 0);
}

/* The front ends get the forwarder; the servers hold the gate (see the top of the file). */
/* The rate limit's client (gates[].rate_limit_per_sec): an authenticated user is charged as one client
 * wherever they connect from; anyone else by their IP address (the key http.c starts with). */
static void gate__rate_key(void *data, const struct cv_http_request *req, char *key, size_t cap)
{
    struct cv_gate *g = data;
    struct cv_gate_caller who;
    if (!cv_gate_auth_on(g->fronts.auth) ||
        cv_gate_auth_check(g->fronts.auth, "http", req->authorization, req->path, &who) || !who.user[0])
        return;
    snprintf(key, cap, "user:%s", who.user);
}

/* The same for the native port: a connection that passed gate.auth is charged as its user. */
static void gate__rpc_rate_key(void *data, struct cv_rpc_conn *conn, char *key, size_t cap)
{
    struct cv_gate *g = data;
    const struct cv_gate_caller *who;
    if (!cv_gate_auth_on(g->fronts.auth) || !(who = cv_gate_auth_conn(g->fronts.auth, conn)) || !who->user[0]) return;
    snprintf(key, cap, "user:%s", who->user);
}

static void gate__on_http(void *data, struct cv_http_exchange *x, const struct cv_http_request *req)
{
    struct cv_gate *g = data;
    if (!g->fronts.fw) { /* closing: no front end any more */
        cv_http_respond_error(x, CV_STATUS_UNAVAILABLE, "gate is shutting down", NULL);
        return;
    }
    cv_gate_http_handler(&g->fronts, x, req);
}

static void gate__on_rpc(void *data, struct cv_rpc_conn *conn, uint64_t id, const char *method,
                         const uint8_t *body, size_t len, uint32_t deadline_ms)
{
    struct cv_gate *g = data;
    if (!g->fronts.fw) {
        cv_rpc_respond(conn, id, CV_EUNAVAIL, "gate is shutting down", NULL, 0);
        return;
    }
    cv_gate_native_on_request(&g->fronts, conn, id, method, body, len, deadline_ms);
}

/* A native connection closed: a push client on it leaves at once. */
static void gate__on_rpc_closed(void *data, struct cv_rpc_conn *conn)
{
    struct cv_gate *g = data;
    if (g->push) cv_gate_push_conn_closed(g->push, conn);
    cv_gate_auth_conn_closed(g->fronts.auth, conn);
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

/* ---------------------------------------------------------------------------------------------------
 * Start. */

/* gates[].tls_cert_file / tls_key_file: a certificate or key that does not load is a config error (the
 * process exits 2), reported as "FILE:LINE: gates[].tls_cert_file: reason". */
static int gate__tls(struct cv_gate *g, const struct cv_config *cfg, const struct cv_gate_cfg *self)
{
    char err[1400];
    if (!self->tls_cert_file) return 0;
    int rv = cv_tls_ctx_server(self->tls_cert_file, self->tls_key_file, err, sizeof err, &g->tls);
    if (rv == CV_EIO) {
        CV_ERROR("%s:%d: gates[%td].tls_cert_file: %s", cfg->path ? cfg->path : "config", self->tls_line,
                 self - cfg->gates, err);
        return CV_ECONFIG;
    }
    if (rv == 0) CV_INFO("gate %s: TLS on its HTTP and native ports", self->id);
    return rv;
}

static int gate__listen(struct cv_gate *g, const struct cv_gate_opts *o, const struct cv_gate_cfg *self)
{
    const char *grpc = o->grpc_addr ? o->grpc_addr : self->grpc_addr;
    const char *http = o->http_addr ? o->http_addr : self->http_addr;
    int rv = gate__tls(g, o->cfg, self);
    if (rv == 0) rv = cv_rpc_server_init(g->loop, gate__on_rpc, gate__on_rpc_closed, g, &g->rpc);
    if (rv) return rv;
    if (g->tls) cv_rpc_server_set_tls(g->rpc, g->tls);
    struct cv_rpc_limits rl = {.max_connections = self->max_connections, .request_timeout_ms = self->request_timeout_ms,
                               .idle_timeout_ms = self->idle_timeout_ms, .rate_key = gate__rpc_rate_key,
                               .rate = {.per_sec = self->rate_limit_per_sec, .burst = self->rate_limit_burst}};
    if ((rv = cv_rpc_server_set_limits(g->rpc, &rl))) return rv;
    if ((rv = cv_rpc_server_listen(g->rpc, grpc))) return rv;
    struct cv_http_opts ho = {.max_body = HTTP_MAX_BODY, .cors_origin = "*",
                              .request_timeout_ms = self->request_timeout_ms, .idle_timeout_ms = self->idle_timeout_ms,
                              .max_connections = self->max_connections,
                              .rate = {.per_sec = self->rate_limit_per_sec, .burst = self->rate_limit_burst},
                              .tls = g->tls, .rate_key = gate__rate_key};
    rv = cv_http_server_init(g->loop, &ho, gate__on_http, g, &g->http);
    if (rv == 0) rv = cv_http_server_listen(g->http, http);
    if (rv) return rv;
    CV_INFO("gate %s: native protocol%s on %s (port %d), HTTP%s on %s (port %d), %zu nodes, %u shards", o->gate_id,
            g->tls ? " over TLS" : "", grpc, cv_rpc_server_port(g->rpc), g->tls ? "S" : "", http, cv_http_server_port(g->http),
            o->cfg->n_nodes, (unsigned)o->cfg->shards);
    return 0;
}

/* etcd found our id held by another live process: a start error, found once etcd answered. */
static void gate__duplicate(void *data, const char *holder)
{
    struct cv_gate *g = data;
    CV_ERROR("gate id %s is already registered in etcd by another process (%s): duplicate id, stopping", g->id,
             holder);
    if (g->failed) *g->failed = 1;
    cv_gate_stop(g);
}

/* cluster.provider etcd: register <prefix>/gates/<id> once listening (docs/discovery.md). */
static int gate__register(struct cv_gate *g, const struct cv_gate_opts *o, const struct cv_gate_cfg *self)
{
    const struct cv_config *cfg = o->cfg;
    if (cfg->provider != CV_PROVIDER_ETCD || !cfg->n_etcd_endpoints) return 0;
    char value[1024];
    snprintf(value, sizeof value, "{\"id\":\"%s\",\"role\":\"gate\",\"advertise\":\"%s\",\"http\":\"%s\","
             "\"version\":\"%s\"}", self->id, self->advertise_addr, self->http_addr, o->version ? o->version : "");
    struct cv_disc_opts d = {.loop = o->loop, .endpoints = (const char *const *)cfg->etcd_endpoints,
                             .n_endpoints = cfg->n_etcd_endpoints, .prefix = cfg->etcd_prefix,
                             .ttl_ms = cfg->etcd_ttl_ms, .kind = "gates", .id = self->id, .value = value,
                             .on_conflict = gate__duplicate, .data = g};
    int rv = cv_disc_init(&d, &g->disc);
    if (rv) CV_ERROR("etcd registration: %s", cv_strerror(rv));
    else cv_disc_start(g->disc);
    g->fronts.disc = rv ? NULL : g->disc;
    return rv;
}

static void gate__init_handles(struct cv_gate *g, bool signals)
{
    uv_timer_init(g->loop, &g->drain_timer);
    g->drain_timer.data = g;
    g->handles++;
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
    if (!g) return CV_ENOMEM;
    *g = (struct cv_gate){.loop = o->loop, .drain_ms = o->drain_ms ? o->drain_ms : CV_GATE_DRAIN_MS,
                          .id = strdup(o->gate_id)};
    if (!g->id) {
        free(g);
        return CV_ENOMEM;
    }
    struct cv_forwarder_opts fo = {
        .loop = o->loop, .cfg = o->cfg, .gate_id = o->gate_id, .on_idle = gate__idle, .on_push = gate__push, .on_stats = gate__stats,
        .data = g,
        .default_timeout_ms = o->default_timeout_ms ? o->default_timeout_ms : CV_GATE_DEFAULT_TIMEOUT_MS};
    int rv = cv_forwarder_init(&fo, &g->fw);
    if (!rv && (rv = cv_gate_auth_init(o->tokens, o->hooks, &g->fronts.auth))) cv_forwarder_close(g->fw, NULL, NULL);
    if (rv) {
        free(g->id);
        free(g);
        return rv;
    }
    g->fronts.rules = &o->cfg->access_rules;
    if (cv_gate_auth_on(g->fronts.auth))
        CV_INFO("gate %s: clients authenticate (%s%s%s)", o->gate_id, o->tokens ? "tokens file" : "",
                o->tokens && o->hooks ? " and " : "", o->hooks ? "a module's authorise hook" : "");
    gate__init_handles(g, o->handle_signals);
    g->fronts.fw = g->fw;
    struct cv_gate_push_opts po = {.loop = o->loop, .gate_id = o->gate_id, .heartbeat_ms = self->push_heartbeat_ms,
                                   .queue_max = self->push_queue};
    rv = cv_gate_push_init(&po, &g->push);
    g->fronts.push = g->push;
    if (rv == 0) rv = gate__listen(g, o, self);
    if (rv == 0) rv = cv_forwarder_start(g->fw);
    g->failed = o->exit_code;
    if (rv == 0) rv = gate__register(g, o, self);
    if (rv) {
        gate__shutdown(g); /* frees g once the handles closed; on_stopped is not set yet */
        return rv;
    }
    g->on_stopped = o->on_stopped;
    g->data = o->data;
    *out = g;
    return 0;
}
