/* The node process' lifecycle.
 *
 * Start: open the catalog (LMDB) -> init + start raft (bootstrapping a pristine data dir) -> bind the RPC
 * listener (grpc_addr: forwarded proposals from other nodes) and the HTTP API (http_addr) -> renew this
 * node's lease every ttl/3 through the catalog (the first renewal is a RegisterNode carrying our
 * addresses) -> run leader duties while leading. The object host (host.c) is created right after the
 * catalog; it sees every applied entry and serves the objects.* RPC methods.
 * Stop (SIGTERM/SIGINT): stop answering ready, hand over leadership if we lead (bounded by the election
 * timeout), then close HTTP, RPC, timers and raft; the loop runs empty and main exits 0.
 * Failure modes: a listener that cannot bind fails start (exit 1 with the address in the log); losing
 * the leader only delays renewals; a fatal catalog write error exits inside the FSM (consensus.c).
 */
#include "node/node.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/lease.h"
#include "cverse/error.h"
#include "node/host.h"
#include "node/leader.h"
#include "util/log.h"

/* ---------------------------------------------------------------- lease renewal */

static void renew_done(void *data, int status, uint64_t index)
{
    struct cv_node *n = data;
    n->lease_inflight = false;
    if (n->stopping) return;
    if (status == 0) {
        if (!n->registered) CV_INFO("registered in the catalog at index %llu", (unsigned long long)index);
        n->registered = true;
        n->last_renew_ok_ms = cv_mono_ms();
    } else if (status == CV_ENOTFOUND) {
        n->registered = false; /* the catalog lost us (e.g. restored): register again */
    } else {
        CV_DEBUG("lease renewal failed: %s", cv_strerror(status));
    }
}

static void renew(struct cv_node *n)
{
    if (n->lease_inflight || n->stopping) return;
    const struct cv_node_cfg *s = n->self;
    Cverse__Catalog__Command cmd = CVERSE__CATALOG__COMMAND__INIT;
    Cverse__Catalog__CmdRegisterNode reg = CVERSE__CATALOG__CMD_REGISTER_NODE__INIT;
    Cverse__Catalog__NodeInfo info = CVERSE__CATALOG__NODE_INFO__INIT;
    Cverse__Catalog__CmdRenewLease rl = CVERSE__CATALOG__CMD_RENEW_LEASE__INIT;
    uint64_t now = cv_now_ms(), ttl = n->cfg->lease_ttl_ms;
    const struct cv_catalog_node *me = cv_catalog_node_get(n->catalog, s->id);
    if (!n->registered || !me) {
        info.id = s->id;
        info.grpc_addr = s->grpc_addr;
        info.advertise_addr = s->advertise_addr;
        info.http_addr = s->http_addr;
        info.raft_addr = s->raft_addr;
        info.raft_id = (uint64_t)cv_config_node_index(n->cfg, s->id) + 1;
        reg.info = &info;
        reg.now_ms = now;
        reg.ttl_ms = ttl;
        cmd.cmd_case = CVERSE__CATALOG__COMMAND__CMD_REGISTER_NODE;
        cmd.register_node = &reg;
    } else {
        rl.node = s->id;
        rl.now_ms = now;
        rl.ttl_ms = ttl;
        cmd.cmd_case = CVERSE__CATALOG__COMMAND__CMD_RENEW_LEASE;
        cmd.renew_lease = &rl;
    }
    /* A renewal older than the TTL is useless: give up on it in time for the next one. */
    if (cv_consensus_propose(n->consensus, &cmd, (unsigned)ttl, renew_done, n) == 0)
        n->lease_inflight = true;
}

static void lease_tick(uv_timer_t *t)
{
    renew(t->data);
}

/* ---------------------------------------------------------------- consensus callbacks */

static void on_applied(void *data, uint64_t index, const Cverse__Catalog__Batch *batch,
                       const struct cv_cmd_result *results)
{
    struct cv_node *n = data;
    for (size_t i = 0; i < batch->n_commands; i++) {
        const Cverse__Catalog__Command *c = batch->commands[i];
        if (results[i].status) continue;
        if (c->cmd_case == CVERSE__CATALOG__COMMAND__CMD_EXPIRE_NODE) {
            CV_INFO("node %s declared dead (lease expired) at index %llu", c->expire_node->node,
                    (unsigned long long)index);
            if (!strcmp(c->expire_node->node, n->self->id)) {
                n->registered = false; /* we are alive after all: come back with a new incarnation */
                renew(n);
            }
        } else if (c->cmd_case == CVERSE__CATALOG__COMMAND__CMD_REGISTER_NODE) {
            CV_INFO("node %s registered at index %llu", c->register_node->info->id,
                    (unsigned long long)index);
        } else if (c->cmd_case == CVERSE__CATALOG__COMMAND__CMD_ASSIGN_SHARDS) {
            const struct cv_catalog_node *me = cv_catalog_node_get(n->catalog, n->self->id);
            CV_INFO("shard map changed at index %llu (%zu shards moved); this node owns %u shards",
                    (unsigned long long)index, c->assign_shards->n_shards, me ? me->shards_owned : 0);
        }
    }
    if (n->host) cv_host_applied(n->host, index, batch, results);
}

static void on_leader(void *data, bool is_leader)
{
    struct cv_node *n = data;
    if (is_leader && n->leader) cv_leader_kick(n->leader);
    if (n->host) cv_host_leader_changed(n->host);
    renew(n); /* a new leader: renew through it right away instead of waiting for the next tick */
}

/* ---------------------------------------------------------------- RPC */

static void on_rpc(void *data, struct cv_rpc_conn *conn, uint64_t id, const char *method,
                   const uint8_t *body, size_t len, uint32_t deadline_ms)
{
    struct cv_node *n = data;
    if (!strcmp(method, "catalog.propose")) {
        cv_consensus_handle_propose(n->consensus, conn, id, body, len);
        return;
    }
    if (n->host && cv_host_handle_rpc(n->host, conn, id, method, body, len, deadline_ms)) return;
    char msg[160];
    snprintf(msg, sizeof msg, "unknown method \"%.100s\"", method);
    cv_rpc_respond(conn, id, CV_ENOTFOUND, msg, NULL, 0);
}

static void on_conn_close(void *data, struct cv_rpc_conn *conn)
{
    struct cv_node *n = data;
    if (n->host) cv_host_conn_closed(n->host, conn);
}

/* ---------------------------------------------------------------- readiness */

bool cv_node_ready(struct cv_node *n, const char **why)
{
    return cv_node_catalog_ready(n, why) && cv_host_ready(n->host, why);
}

bool cv_node_catalog_ready(struct cv_node *n, const char **why)
{
    struct cv_consensus_status st;
    if (n->stopping || !n->consensus || !n->host) {
        *why = n->stopping ? "node is shutting down" : "node is starting";
        return false;
    }
    cv_consensus_status(n->consensus, &st);
    if (!st.has_leader) {
        *why = "no raft leader known";
        return false;
    }
    if (st.commit_index == 0 || st.last_applied < st.commit_index) {
        *why = "catching up with the raft log";
        return false;
    }
    const struct cv_catalog_node *me = cv_catalog_node_get(n->catalog, n->self->id);
    if (!me || !me->alive || !n->registered) {
        *why = "node not registered in the catalog yet";
        return false;
    }
    if (cv_catalog_unassigned_shards(n->catalog) > 0) {
        *why = "shards are unassigned";
        return false;
    }
    *why = NULL;
    return true;
}

/* ---------------------------------------------------------------- start */

static int open_catalog(struct cv_node *n)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/catalog", n->data_dir);
    struct cv_catalog_opts o = {.dir = dir, .shards = n->cfg->shards};
    int rv = cv_catalog_open(&o, &n->catalog);
    if (rv) CV_ERROR("cannot open the catalog in %s: %s", dir, cv_strerror(rv));
    return rv;
}

static int start_consensus(struct cv_node *n)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/raft", n->data_dir);
    struct cv_consensus_opts o = {.loop = n->loop,
                                  .cfg = n->cfg,
                                  .node_id = n->self->id,
                                  .raft_dir = dir,
                                  .catalog = n->catalog,
                                  .on_applied = on_applied,
                                  .on_leader = on_leader,
                                  .data = n};
    int rv = cv_consensus_init(&o, &n->consensus);
    if (rv) return rv;
    return cv_consensus_start(n->consensus);
}

static int start_listeners(struct cv_node *n)
{
    int rv = cv_rpc_server_init(n->loop, on_rpc, on_conn_close, n, &n->rpc);
    if (!rv) rv = cv_rpc_server_listen(n->rpc, n->self->grpc_addr);
    if (rv) {
        CV_ERROR("cannot listen for RPC on %s: %s", n->self->grpc_addr, cv_strerror(rv));
        return rv;
    }
    struct cv_http_opts ho = {.max_body = 1 << 20};
    rv = cv_http_server_init(n->loop, &ho, cv_node_http_handler, n, &n->http);
    if (!rv) rv = cv_http_server_listen(n->http, n->self->http_addr);
    if (rv) CV_ERROR("cannot listen for HTTP on %s: %s", n->self->http_addr, cv_strerror(rv));
    return rv;
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct cv_node *n = s->data;
    CV_INFO("received %s: stopping", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    cv_node_stop(n);
}

static int start_host(struct cv_node *n, cv_registry *reg)
{
    struct cv_host_opts o = {.registry = reg};
    int rv = cv_host_init(n, &o, &n->host);
    if (rv) CV_ERROR("cannot start the object host: %s", cv_strerror(rv));
    return rv;
}

int cv_node_start(struct cv_node *n, const struct cv_node_opts *opts)
{
    memset(n, 0, sizeof *n);
    n->loop = opts->loop;
    n->cfg = opts->cfg;
    n->self = cv_config_node(opts->cfg, opts->node_id);
    if (!n->self) return CV_EINVAL;
    if (opts->data_dir)
        snprintf(n->data_dir, sizeof n->data_dir, "%s", opts->data_dir);
    else
        snprintf(n->data_dir, sizeof n->data_dir, "%s/%s", opts->cfg->data_dir, opts->node_id);
    CV_INFO("starting node %s (data dir %s, %u shards, %zu nodes, lease ttl %u ms)", n->self->id,
            n->data_dir, n->cfg->shards, n->cfg->n_nodes, n->cfg->lease_ttl_ms);
    /* Handles first, so that cv_node_stop can close whatever part of the start succeeded. */
    uv_timer_init(n->loop, &n->lease_timer);
    uv_signal_init(n->loop, &n->sigterm);
    uv_signal_init(n->loop, &n->sigint);
    n->lease_timer.data = n->sigterm.data = n->sigint.data = n;
    int rv;
    if ((rv = open_catalog(n))) return rv;
    cv_registry *reg = opts->registry;
    if (!reg && !(reg = n->own_registry = cv_registry_new())) return CV_ENOMEM;
    if ((rv = start_host(n, reg))) return rv;
    if ((rv = start_consensus(n))) return rv;
    if ((rv = start_listeners(n))) return rv;
    if ((rv = cv_leader_init(n, &n->leader))) return rv;
    cv_leader_start(n->leader);
    uv_timer_start(&n->lease_timer, lease_tick, 0, cv_lease_renew_interval(n->cfg->lease_ttl_ms));
    uv_signal_start(&n->sigterm, on_signal, SIGTERM);
    uv_signal_start(&n->sigint, on_signal, SIGINT);
    return 0;
}

/* ---------------------------------------------------------------- stop */

static void close_step(struct cv_node *n)
{
    if (--n->open_handles == 0) CV_INFO("node %s stopped", n->self->id);
}

static void handle_closed(uv_handle_t *h)
{
    close_step(h->data);
}

static void consensus_closed(void *data)
{
    close_step(data);
}

static void leader_closed(void *data)
{
    struct cv_node *n = data;
    close_step(n);
}

static void host_closed(void *data)
{
    struct cv_node *n = data;
    n->host = NULL;
    close_step(n);
}

static void rpc_closed(struct cv_rpc_server *s)
{
    (void)s;
}

static void http_closed(struct cv_http_server *s)
{
    (void)s;
}

/* Closes whatever cv_node_start got to open (it may have failed half way). */
static void shutdown_all(void *data)
{
    struct cv_node *n = data;
    if (n->shut) return; /* the transfer callback and its fallback timer may both get here */
    n->shut = true;
    n->open_handles = 3 + (n->leader != NULL) + (n->consensus != NULL) + (n->host != NULL);
    if (n->http) cv_http_server_close(n->http, http_closed);
    if (n->rpc) cv_rpc_server_close(n->rpc, rpc_closed);
    n->http = NULL;
    n->rpc = NULL;
    uv_close((uv_handle_t *)&n->lease_timer, handle_closed);
    uv_close((uv_handle_t *)&n->sigterm, handle_closed);
    uv_close((uv_handle_t *)&n->sigint, handle_closed);
    if (n->leader) cv_leader_close(n->leader, leader_closed, n);
    n->leader = NULL;
    if (n->host) cv_host_close(n->host, host_closed, n); /* n->host stays set until it closed */
    if (n->consensus) cv_consensus_close(n->consensus, consensus_closed, n);
}

static void transfer_timeout(uv_timer_t *t)
{
    shutdown_all(t->data);
}

void cv_node_stop(struct cv_node *n)
{
    if (n->stopping) return;
    n->stopping = true;
    uv_timer_stop(&n->lease_timer);
    int rv = n->consensus ? cv_consensus_transfer(n->consensus, shutdown_all, n) : CV_EINVAL;
    if (rv == 0) {
        /* libraft does not call back when leadership is lost meanwhile (e.g. every node is stopping):
         * bound the wait ourselves. */
        CV_INFO("transferring raft leadership before exiting");
        uv_timer_start(&n->lease_timer, transfer_timeout, 2u * n->cfg->raft.election_timeout_ms + 100u, 0);
        return;
    }
    shutdown_all(n);
}

void cv_node_free(struct cv_node *n)
{
    cv_consensus_free(n->consensus);
    n->consensus = NULL;
    if (n->catalog) cv_catalog_close(n->catalog);
    n->catalog = NULL;
    cv_registry_free(n->own_registry);
    n->own_registry = NULL;
}
