/* The node process' lifecycle: wires the catalog, the peer pool, the consensus, the object host, the RPC
 * and HTTP servers, lease renewal and leader duties, and reacts to applied catalog entries.
 *
 * Init allocates the node and its own handles only. Start: open the catalog (LMDB) -> create the peer
 * pool and the consensus (which starts nothing) -> create and start the object host (host.h) -> start
 * raft (bootstrapping a pristine data dir) -> bind the RPC listener (grpc_addr: forwarded proposals and
 * object calls from other nodes) and the HTTP API (http_addr) -> renew this node's lease every ttl/3
 * through the catalog (renewal.h: the first renewal is a RegisterNode carrying our addresses) -> run
 * leader duties while leading. With cluster.provider etcd the node also registers in etcd once its
 * listeners are bound and, while leading, publishes <prefix>/leader (discovery/disc.h; etcd being down
 * delays only that); a registration that finds our id held by another live process stops the node, exit 1.
 * Drain (SIGTERM/SIGINT, cv_node_drain): /ready answers 503 "draining" at once; the node proposes
 * DrainNode(self, shutdown) and keeps serving and renewing its lease while the leader moves its shards
 * away through the two-phase handoff (each shard's objects deactivate here, their calls in flight
 * finished, before it is released; gates then route to the new owner); once it owns and owes no shard
 * it stops. Bounded by cluster.drain_timeout_ms (then it stops anyway, logged); with no other live,
 * undrained node (nowhere to move) it stops at once, and when nothing commits for 4 election timeouts
 * and 2 lease TTLs (at least 1 s: nothing can move) too; a second signal stops at once. Its next process'
 * RegisterNode (fresh) clears a shutdown drain, so it gets shards back; an operator's drain persists.
 * Stop (after the drain, cv_node_stop): stop answering ready, hand over leadership if we lead (bounded by
 * the election timeout), then close every component through its close callback; "node stopped" is
 * logged when the last one reported closed, and the loop runs empty so that main exits 0.
 * Failure modes: a start step that fails (raft bootstrap, a listener that cannot bind) fails start (exit
 * 1 with the cause in the log); the caller then stops the node like any other, and only what was created
 * is closed. Losing the leader only delays renewals; a fatal catalog write error exits inside the FSM
 * (consensus.c). */
#include "node/node.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/guard.h"
#include "catalog/catalog.h"
#include "consensus/consensus.h"
#include "consensus/notice.h"
#include "core/lease.h"
#include "cverse/error.h"
#include "discovery/disc.h"
#include "net/http.h"
#include "net/peers.h"
#include "net/rpc.h"
#include "node/api.h"
#include "node/host.h"
#include "node/join.h"
#include "node/leader.h"
#include "node/renewal.h"
#include "consensus/leases.h"
#include "util/actlog.h"
#include "util/log.h"

struct cv_node {
    uv_loop_t *loop;
    const struct cv_config *cfg;     /* borrowed, valid until cv_node_free */
    const struct cv_node_cfg *self;
    char data_dir[512];
    cv_registry *registry;           /* borrowed, or own_registry */
    void (*on_stopped)(void *data);
    void *data;

    struct cv_catalog *catalog;
    struct cv_peers *peers;
    struct cv_consensus *consensus;
    struct cv_host *host;
    struct cv_rpc_server *rpc;
    struct cv_http_server *http;
    struct cv_leader *leader;
    cv_registry *own_registry;       /* when the opts gave none */
    struct cv_api api;               /* what the HTTP handler reads */
    struct cv_disc *disc;            /* etcd registration (cluster.provider etcd), else NULL */
    bool failed;                     /* stopped for a start error found later (duplicate id in etcd) */
    uint64_t raft_id;                /* ours: the config index + 1, or (joining) from <data_dir>/raft-id */
    bool joining;                    /* not an initial member: joins a running cluster (cluster.join) */
    char join_addr[128];             /* a member to ask ("" = the nodes registered in etcd) */
    struct cv_joiner *joiner;        /* asks until we are a member, else NULL */
    struct cv_join_member jm;        /* what answering cluster.join needs */

    uv_timer_t lease_timer;
    uv_timer_t fence_timer;          /* wakes when the lease view may change by time alone */
    uv_signal_t sigterm, sigint;
    uv_timer_t drain_timer;          /* polls a drain's progress */
    uint64_t drain_start_ms;         /* cv_mono_ms when the drain began */
    bool draining;                   /* a shutdown drain runs (cv_node_drain); stopping follows */
    bool drain_inflight;             /* our DrainNode proposal is pending */
    uint64_t drain_progress_ms;      /* cv_mono_ms when a drain last saw the log advance under a leader */
    uint64_t drain_applied;          /* the applied index it saw then */
    uint64_t drain_renewed;          /* and our last granted renewal (renewal.last_ok_ms) */
    bool registered_once;            /* a registration of this process applied: later ones are not fresh */
    struct cv_renewal renewal;
    bool fenced;                     /* the host was told the lease is not confirmed */
    uint64_t fencings;               /* times this process fenced itself (/metrics) */
    char why[96];                    /* readiness reason with a number in it */
    bool stopping;
    bool shut;                       /* closing of the components started */
    int open_parts;                  /* components and handles still closing */
};

/* ---------------------------------------------------------------- lease renewal and fencing */

static void renew(struct cv_node *n);

static void node__fence_tick(uv_timer_t *t);

/* Re-evaluates the lease view now; tells the host when it fenced or unfenced (one log line each, with
 * the duration) and arms the timer for the next change by time alone. */
static void node__lease_eval(struct cv_node *n)
{
    uint64_t now = cv_mono_ms();
    enum cv_lease_state st = cv_renewal_tick(&n->renewal, now);
    bool fenced = st == CV_LEASE_FENCED;
    if (fenced != n->fenced && n->host && !n->stopping) {
        const struct cv_lease *l = &n->renewal.lease;
        n->fenced = fenced;
        n->fencings += fenced;
        int k = cv_host_fence(n->host, fenced);
        if (fenced && !n->renewal.last_ok_ms) /* a new process declared dead before its first renewal */
            CV_WARN("fenced: lease not confirmed yet by this process (%s); %d objects deactivated",
                    l->revoked ? "declared dead" : "no renewal applied in time", k);
        else if (fenced)
            CV_WARN("fenced: lease not confirmed for %llu ms (window ended %llu ms ago, %s); %d objects "
                    "deactivated, calls refused until a renewal applies",
                    (unsigned long long)(now - n->renewal.last_ok_ms), (unsigned long long)(now - l->fenced_at_ms),
                    l->revoked ? "declared dead" : "no renewal applied in time", k);
        else
            CV_WARN("unfenced: lease confirmed again after %llu ms fenced", (unsigned long long)(now - l->fenced_at_ms));
    }
    uint64_t next = cv_lease_next_change(&n->renewal.lease, now);
    if (next && !n->shut) uv_timer_start(&n->fence_timer, node__fence_tick, next, 0);
}

static void node__fence_tick(uv_timer_t *t)
{
    node__lease_eval(t->data);
}

static uint64_t node__serve_until(void *data)
{
    struct cv_node *n = data;
    return n->renewal.lease.valid_until_ms;
}

static void node__renew_done(void *data, int status, uint64_t index)
{
    struct cv_node *n = data;
    bool was = cv_renewal_registered(&n->renewal);
    cv_renewal_done(&n->renewal, status, cv_mono_ms());
    if (status == 0) n->registered_once = true;
    if (n->stopping) return;
    node__lease_eval(n);
    if (status == 0 && cv_renewal_state(&n->renewal) == CV_RENEWAL_UNREGISTERED) {
        CV_WARN("registration applied at index %llu too late to open a lease window (declared dead "
                "meanwhile); registering again", (unsigned long long)index);
        renew(n);
    } else if (status == 0 && !was) CV_INFO("registered in the catalog at index %llu", (unsigned long long)index);
    else if (cv_renewal_state(&n->renewal) == CV_RENEWAL_EXPIRED) {
        CV_WARN("lease renewal refused: this node was declared dead; registering again");
        renew(n);
    } else if (status && status != CV_ENOTFOUND) CV_DEBUG("lease renewal failed: %s", cv_strerror(status));
}

static void node__renewed(void *data, int status)
{
    node__renew_done(data, status, 0);
}

static void renew(struct cv_node *n)
{
    const struct cv_node_cfg *s = n->self;
    const struct cv_catalog_node *me = cv_catalog_node_get(n->catalog, s->id);
    bool reg_cmd;
    if (n->stopping || !cv_renewal_due(&n->renewal, me != NULL, &reg_cmd)) return;
    /* The window counts from before the request leaves: whenever it is granted, we were alive then. A
     * renewal older than the TTL is useless: give up on it in time for the next one. */
    uint64_t sent = cv_mono_ms(), ttl = n->cfg->lease_ttl_ms;
    int rv;
    if (reg_cmd) { /* a registration is a log entry */
        Cverse__Catalog__Command cmd = CVERSE__CATALOG__COMMAND__INIT;
        Cverse__Catalog__CmdRegisterNode reg = CVERSE__CATALOG__CMD_REGISTER_NODE__INIT;
        Cverse__Catalog__NodeInfo info = CVERSE__CATALOG__NODE_INFO__INIT;
        info.id = s->id;
        info.grpc_addr = s->grpc_addr;
        info.advertise_addr = s->advertise_addr;
        info.http_addr = s->http_addr;
        info.raft_addr = s->raft_addr;
        info.raft_id = n->raft_id;
        reg.info = &info;
        reg.now_ms = cv_now_ms();
        reg.ttl_ms = ttl;
        reg.fresh = !n->registered_once; /* a new process: a shutdown drain of the previous one ends */
        cmd.cmd_case = CVERSE__CATALOG__COMMAND__CMD_REGISTER_NODE;
        cmd.register_node = &reg;
        rv = cv_consensus_propose(n->consensus, &cmd, (unsigned)ttl, node__renew_done, n);
    } else { /* a renewal is no log entry: the leader grants it in a round (consensus/leases.h) */
        rv = cv_leases_renew(cv_consensus_leases(n->consensus), me->incarnation, (unsigned)ttl, node__renewed, n);
    }
    if (rv == 0) cv_renewal_sent(&n->renewal, reg_cmd, sent);
}

/* One-shot, re-armed at the next aligned instant (cv_lease_renew_delay): a repeating libuv timer would
 * drift off the other nodes' instants by its lateness each time. */
static void node__lease_arm(struct cv_node *n);

static void node__lease_tick(uv_timer_t *t)
{
    struct cv_node *n = t->data;
    renew(n);
    if (!n->stopping) node__lease_arm(n); /* stopping: the timer is the leadership transfer's bound */
}

static void node__lease_arm(struct cv_node *n)
{
    uint64_t iv = cv_lease_renew_interval(n->cfg->lease_ttl_ms);
    uv_timer_start(&n->lease_timer, node__lease_tick, cv_lease_renew_delay(cv_now_ms(), iv), 0);
}

/* ---------------------------------------------------------------- consensus callbacks */

static void node__removed_tick(uv_timer_t *t)
{
    cv_node_stop(t->data);
}

static void node__on_applied(void *data, uint64_t index, const Cverse__Catalog__Batch *batch,
                       const struct cv_cmd_result *results)
{
    struct cv_node *n = data;
    if (n->leader && !n->shut) cv_leader_changed(n->leader); /* the duties look at the new catalog */
    for (size_t i = 0; i < batch->n_commands; i++) {
        const Cverse__Catalog__Command *c = batch->commands[i];
        if (results[i].status) continue;
        if (n->leader && c->cmd_case == CVERSE__CATALOG__COMMAND__CMD_RENEW_LEASE)
            cv_leader_renewal_seen(n->leader, c->renew_lease->node, cv_mono_ms());
        if (n->leader && c->cmd_case == CVERSE__CATALOG__COMMAND__CMD_REGISTER_NODE)
            cv_leader_renewal_seen(n->leader, c->register_node->info->id, cv_mono_ms());
        if (c->cmd_case == CVERSE__CATALOG__COMMAND__CMD_REGISTER_NODE)
            cv_leases_registered(cv_consensus_leases(n->consensus), c->register_node->info->id);
        if (c->cmd_case == CVERSE__CATALOG__COMMAND__CMD_EXPIRE_NODE) {
            CV_INFO("node %s declared dead (lease expired) at index %llu", c->expire_node->node,
                    (unsigned long long)index);
            if (n->leader) cv_leader_node_died(n->leader, c->expire_node->node, cv_mono_ms());
            /* we are alive after all: fenced at once, then back with a new incarnation */
            if (!strcmp(c->expire_node->node, n->self->id)) {
                bool again = cv_renewal_expired(&n->renewal, cv_mono_ms());
                node__lease_eval(n);
                if (again) renew(n);
            }
        } else if (c->cmd_case == CVERSE__CATALOG__COMMAND__CMD_REMOVE_NODE) {
            CV_INFO("node %s removed from the cluster at index %llu", c->remove_node->node, (unsigned long long)index);
            if (!strcmp(c->remove_node->node, n->self->id) && !n->stopping) {
                CV_INFO("this node was removed from the cluster: stopping");
                /* Not from inside the apply: stopping closes the consensus. Nothing to drain: a node is
                 * removed once no shard names it. */
                uv_timer_start(&n->drain_timer, node__removed_tick, 0, 0);
            }
        } else if (c->cmd_case == CVERSE__CATALOG__COMMAND__CMD_REGISTER_NODE) {
            CV_INFO("node %s registered at index %llu", c->register_node->info->id,
                    (unsigned long long)index);
        } else if (c->cmd_case == CVERSE__CATALOG__COMMAND__CMD_ASSIGN_SHARDS) {
            const struct cv_catalog_node *me = cv_catalog_node_get(n->catalog, n->self->id);
            CV_INFO("shard map changed at index %llu (%zu shards moved); this node owns %u shards",
                    (unsigned long long)index, c->assign_shards->n_shards, me ? me->shards_owned : 0);
        } else if (c->cmd_case == CVERSE__CATALOG__COMMAND__CMD_RELEASE_SHARDS) {
            if (n->leader && !n->shut) cv_leader_kick(n->leader); /* the leader may assign them now */
        }
    }
    if (n->host) cv_host_applied(n->host, index, batch, results);
}

static void node__member_added(void *data)
{
    struct cv_node *n = data;
    if (n->leader && !n->shut) cv_leader_kick(n->leader); /* a spare to make a standby */
}

static unsigned node__on_tick(void *data)
{
    struct cv_node *n = data;
    return n->host ? cv_host_tick(n->host) : UINT_MAX;
}

static void node__on_leader(void *data, bool is_leader)
{
    struct cv_node *n = data;
    if (is_leader && n->leader) cv_leader_kick(n->leader);
    if (is_leader && n->disc) {
        struct cv_consensus_status st;
        cv_consensus_status(n->consensus, &st);
        cv_disc_leader(n->disc, n->self->id, st.term);
    }
    if (n->host) cv_host_leader_changed(n->host);
    renew(n); /* a new leader: renew through it right away instead of waiting for the next tick */
}

/* ---------------------------------------------------------------- RPC */

static void node__on_rpc(void *data, struct cv_rpc_conn *conn, uint64_t id, const char *method,
                   const uint8_t *body, size_t len, uint32_t deadline_ms)
{
    struct cv_node *n = data;
    if (!strcmp(method, "catalog.propose")) {
        cv_consensus_handle_propose(n->consensus, conn, id, body, len);
        return;
    }
    if (!strcmp(method, "lease.renew") || !strcmp(method, "lease.confirm")) {
        struct cv_leases *ls = cv_consensus_leases(n->consensus);
        if (!ls) cv_rpc_respond(conn, id, CV_EUNAVAIL, "raft is not running", NULL, 0);
        else if (method[6] == 'r') cv_leases_handle_renew(ls, conn, id, body, len);
        else cv_leases_handle_confirm(ls, conn, id, body, len);
        return;
    }
    if (!strcmp(method, "cluster.join")) {
        cv_join_handle(&n->jm, conn, id, body, len);
        return;
    }
    if (!strcmp(method, "catalog.applied")) {
        cv_notices_handle(cv_consensus_notices(n->consensus), conn, id, body, len);
        return;
    }
    if (n->host && cv_host_handle_rpc(n->host, conn, id, method, body, len, deadline_ms)) return;
    char msg[160];
    snprintf(msg, sizeof msg, "unknown method \"%.100s\"", method);
    cv_rpc_respond(conn, id, CV_ENOTFOUND, msg, NULL, 0);
}

static void node__on_conn_close(void *data, struct cv_rpc_conn *conn)
{
    struct cv_node *n = data;
    if (n->host) cv_host_conn_closed(n->host, conn);
}

/* ---------------------------------------------------------------- readiness */

bool cv_node_ready(struct cv_node *n, const char **why)
{
    return cv_node_catalog_ready(n, why) && cv_host_ready(n->host, why);
}

static bool node__ready(void *data, const char **why)
{
    return cv_node_ready(data, why);
}

/* The API's view of our own lease (/v1/cluster, /metrics). */
static void node__lease_view(void *data, struct cv_api_lease *out)
{
    static const char *const names[CV_LEASE_N] = {"none", "valid", "suspect", "fenced"};
    struct cv_node *n = data;
    node__lease_eval(n); /* a change by time alone reaches the host first */
    uint64_t now = cv_mono_ms();
    const struct cv_lease *l = &n->renewal.lease;
    enum cv_lease_state st = cv_lease_state(l);
    out->state = names[st];
    out->state_index = (int)st;
    out->registration = cv_sm_state_name(cv_renewal_sm(), (int)cv_renewal_state(&n->renewal));
    out->remaining_ms = cv_lease_serving(l, now) ? l->valid_until_ms - now : 0;
    out->fencings = n->fencings;
    out->leader = n->leader ? cv_leader_stats(n->leader) : NULL;
}

static bool node__catalog_ready(void *data, const char **why)
{
    return cv_node_catalog_ready(data, why);
}

static bool node__fenced_why(struct cv_node *n, uint64_t now, const char **why)
{
    const struct cv_lease *l = &n->renewal.lease;
    uint64_t since = l->valid_until_ms < now ? l->valid_until_ms : now;
    snprintf(n->why, sizeof n->why, "fenced: lease not confirmed for %llu ms", (unsigned long long)(now - since));
    *why = n->why;
    return false;
}

bool cv_node_catalog_ready(struct cv_node *n, const char **why)
{
    struct cv_consensus_status st;
    if (n->stopping || n->draining || !n->consensus || !n->host) {
        *why = n->draining ? "draining" : n->stopping ? "node is shutting down" : "node is starting";
        return false;
    }
    /* A node that had a lease and lost it says so first: cut off, it knows no leader either, but
     * "fenced" is why it serves nothing. */
    uint64_t now = cv_mono_ms();
    if (cv_lease_state(&n->renewal.lease) != CV_LEASE_NONE && !cv_renewal_serving(&n->renewal, now))
        return node__fenced_why(n, now, why);
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
    if (!me || !me->alive || !cv_renewal_registered(&n->renewal)) {
        *why = "node not registered in the catalog yet";
        return false;
    }
    now = cv_mono_ms();
    if (!cv_renewal_serving(&n->renewal, now)) {
        if (cv_lease_state(&n->renewal.lease) != CV_LEASE_NONE) return node__fenced_why(n, now, why);
        *why = "lease not granted yet";
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

static int node__open_catalog(struct cv_node *n)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/catalog", n->data_dir);
    struct cv_catalog_opts o = {.dir = dir, .shards = n->cfg->shards};
    int rv = cv_catalog_open(&o, &n->catalog);
    if (rv) CV_ERROR("cannot open the catalog in %s: %s", dir, cv_strerror(rv));
    return rv;
}

/* The raft log cannot be written (consensus/iowrap.h; the line is logged, the process exits 1 when this
 * returns): serve nothing more — every object deactivated (their ends logged), then a K line for the
 * activation checker, since this process' activations all end here. */
static void node__log_failed(void *data, const char *why)
{
    struct cv_node *n = data;
    (void)why;
    n->fencings += n->host && !n->fenced;
    if (n->host) cv_host_fence(n->host, true);
    n->fenced = true;
    cv_actlog('K', n->self->id, "-", cv_mono_ns());
}

/* The peer pool's address of a member the config does not list (it joined later): its catalog record's. */
static const char *node__peer_addr(void *data, const char *id)
{
    struct cv_node *n = data;
    const struct cv_catalog_node *cn = cv_catalog_node_get(n->catalog, id);
    return cn ? cn->advertise_addr : NULL;
}

/* The peer pool and the consensus: created, nothing started. */
static int node__create_consensus(struct cv_node *n)
{
    size_t nn = n->cfg->n_nodes;
    const char *addrs[nn ? nn : 1], *ids[nn ? nn : 1];
    for (size_t i = 0; i < nn; i++) {
        addrs[i] = n->cfg->nodes[i].advertise_addr;
        ids[i] = n->cfg->nodes[i].id;
    }
    struct cv_peers_opts po = {.loop = n->loop,
                               .addrs = addrs,
                               .ids = ids,
                               .n = nn,
                               .self = (size_t)cv_config_node_index(n->cfg, n->self->id),
                               .self_id = n->self->id,
                               .resolve = node__peer_addr,
                               .resolve_data = n};
    int rv = cv_peers_init(&po, &n->peers);
    if (rv) return rv;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/raft", n->data_dir);
    struct cv_consensus_opts o = {.loop = n->loop,
                                  .cfg = n->cfg,
                                  .node_id = n->self->id,
                                  .raft_id = n->joining ? n->raft_id : 0,
                                  .raft_dir = dir,
                                  .catalog = n->catalog,
                                  .peers = n->peers,
                                  .on_applied = node__on_applied,
                                  .on_leader = node__on_leader,
                                  .on_tick = node__on_tick,
                                  .on_log_failed = node__log_failed,
                                  .data = n};
    return cv_consensus_init(&o, &n->consensus);
}

static int node__create_host(struct cv_node *n)
{
    cv_registry *reg = n->registry;
    if (!reg && !(reg = n->own_registry = cv_registry_new())) return CV_ENOMEM;
    struct cv_host_opts o = {.loop = n->loop,
                             .cfg = n->cfg,
                             .self = n->self,
                             .catalog = n->catalog,
                             .consensus = n->consensus,
                             .peers = n->peers,
                             .registry = reg,
                             .catalog_ready = node__catalog_ready,
                             .serve_until = node__serve_until,
                             .data = n};
    int rv = cv_host_init(&o, &n->host);
    if (rv) CV_ERROR("cannot start the object host: %s", cv_strerror(rv));
    return rv;
}

/* etcd found our id held by another live process: a start error, found once etcd answered. */
static void node__duplicate(void *data, const char *holder)
{
    struct cv_node *n = data;
    CV_ERROR("node id %s is already registered in etcd by another process (%s): duplicate id, stopping",
             n->self->id, holder);
    n->failed = true;
    cv_node_stop(n);
}

/* cluster.provider etcd: our registration (docs/discovery.md); started once the listeners are bound. */
static int node__register(struct cv_node *n)
{
    const struct cv_config *cfg = n->cfg;
    if (cfg->provider != CV_PROVIDER_ETCD || !cfg->n_etcd_endpoints) return 0;
    char value[1024];
    snprintf(value, sizeof value,
             "{\"id\":\"%s\",\"role\":\"node\",\"advertise\":\"%s\",\"http\":\"%s\",\"raft\":\"%s\","
             "\"shards\":%u,\"version\":\"%s\"}",
             n->self->id, n->self->advertise_addr, n->self->http_addr, n->self->raft_addr, (unsigned)cfg->shards,
             CV_VERSION);
    struct cv_disc_opts o = {.loop = n->loop, .endpoints = (const char *const *)cfg->etcd_endpoints,
                             .n_endpoints = cfg->n_etcd_endpoints, .prefix = cfg->etcd_prefix,
                             .ttl_ms = cfg->etcd_ttl_ms, .kind = "nodes", .id = n->self->id, .value = value,
                             .on_conflict = node__duplicate, .data = n};
    int rv = cv_disc_init(&o, &n->disc);
    if (rv) CV_ERROR("etcd registration: %s", cv_strerror(rv));
    return rv;
}


/* The HTTP port's peers: in protected mode only loopback ones (counted and logged as refused, like the
 * native and raft ports' peers); with a secret or cluster.insecure, everyone. */
static int node__http_admit(void *data, const struct sockaddr *peer)
{
    return cv_guard_admit(cv_guard_cluster(), peer, "http");
}

static int node__start_listeners(struct cv_node *n)
{
    int rv = cv_rpc_server_init(n->loop, node__on_rpc, node__on_conn_close, n, &n->rpc);
    if (!rv) cv_rpc_server_set_guard(n->rpc, cv_guard_cluster()); /* a cluster port (auth/guard.h) */
    if (!rv) rv = cv_rpc_server_listen(n->rpc, n->self->grpc_addr);
    if (rv) {
        CV_ERROR("cannot listen for RPC on %s: %s", n->self->grpc_addr, cv_strerror(rv));
        return rv;
    }
    n->api = (struct cv_api){.cfg = n->cfg,
                             .self = n->self,
                             .catalog = n->catalog,
                             .consensus = n->consensus,
                             .host = n->host,
                             .ready = node__ready,
                             .lease = node__lease_view,
                             .disc = n->disc,
                             .data = n};
    struct cv_http_opts ho = {.max_body = 1 << 20, .admit = node__http_admit};
    char http[128]; /* protected mode: a wildcard bind narrowed to loopback (auth/guard.h) */
    if (cv_guard_http_listen(cv_guard_cluster(), n->self->http_addr, http, sizeof http))
        CV_INFO("protected mode: the HTTP API on %s answers peers on loopback addresses only", http);
    else if (strcmp(http, n->self->http_addr)) CV_INFO("protected mode: the HTTP API listens on %s only", http);
    rv = cv_http_server_init(n->loop, &ho, cv_api_handle, &n->api, &n->http);
    if (!rv) rv = cv_http_server_listen(n->http, http);
    if (rv) CV_ERROR("cannot listen for HTTP on %s: %s", http, cv_strerror(rv));
    return rv;
}

/* ---------------------------------------------------------------- joining a running cluster */

/* A joining node's raft id: the one in <data_dir>/raft-id (an earlier start chose it), else a new random
 * one (above 2^32: never an initial member's config index + 1), written there durably before raft uses it. */
static int node__join_raft_id(struct cv_node *n)
{
    char path[600];
    snprintf(path, sizeof path, "%s/raft-id", n->data_dir);
    FILE *f = fopen(path, "r");
    unsigned long long id = 0;
    if (f) {
        int ok = fscanf(f, "%llu", &id) == 1 && id > 0;
        fclose(f);
        if (!ok) CV_ERROR("%s: not a raft id", path);
        n->raft_id = id;
        return ok ? 0 : CV_EIO;
    }
    FILE *r = fopen("/dev/urandom", "rb");
    size_t got = r ? fread(&id, sizeof id, 1, r) : 0;
    if (r) fclose(r);
    if (got != 1) return CV_EIO;
    n->raft_id = (id >> 2) | (1ull << 32);
    if (!(f = fopen(path, "w")) || fprintf(f, "%llu\n", (unsigned long long)n->raft_id) < 0 || fflush(f) ||
        fsync(fileno(f))) {
        CV_ERROR("cannot write %s: %s", path, strerror(errno));
        if (f) fclose(f);
        return CV_EIO;
    }
    fclose(f);
    CV_INFO("joining node: chose raft id %llu (kept in %s)", (unsigned long long)n->raft_id, path);
    return 0;
}

/* Joined: our record is in our catalog (the log reached us) and a leader is known. */
static bool node__joined(void *data)
{
    struct cv_node *n = data;
    const struct cv_catalog_node *me = cv_catalog_node_get(n->catalog, n->self->id);
    return me && me->raft_id == n->raft_id && cv_consensus_has_leader(n->consensus);
}

static void node__join_refused(void *data, const char *msg)
{
    struct cv_node *n = data;
    CV_ERROR("the cluster refused to add this node: %s; stopping", msg);
    n->failed = true;
    cv_node_stop(n);
}

static int node__start_join(struct cv_node *n)
{
    if (!n->joining) return 0;
    const struct cv_config *cfg = n->cfg;
    struct cv_joiner_opts o = {.loop = n->loop,
                               .join_addr = n->join_addr[0] ? n->join_addr : NULL,
                               .etcd_endpoints = (const char *const *)cfg->etcd_endpoints,
                               .n_etcd_endpoints = cfg->provider == CV_PROVIDER_ETCD ? cfg->n_etcd_endpoints : 0,
                               .etcd_prefix = cfg->etcd_prefix,
                               .self = n->self,
                               .raft_id = n->raft_id,
                               .joined = node__joined,
                               .refused = node__join_refused,
                               .data = n};
    int rv = cv_joiner_start(&o, &n->joiner);
    if (rv) CV_ERROR("cannot join: %s (give --join HOST:PORT or --etcd)", cv_strerror(rv));
    return rv;
}

/* ---------------------------------------------------------------- drain (graceful stop) */

/* Another live node that may take shards (alive, not draining): else a drain has nowhere to go. */
static bool node__others_can_take(struct cv_node *n)
{
    for (size_t i = 0; i < cv_catalog_node_count(n->catalog); i++) {
        const struct cv_catalog_node *cn = cv_catalog_node_at(n->catalog, i);
        if (cn && cn->alive && !cn->draining && strcmp(cn->id, n->self->id) != 0) return true;
    }
    return false;
}

/* True when the cluster has made no progress for a while during a drain: no shard can move (typically
 * the whole cluster was stopped at once and the voters are gone). Progress is the applied index moving
 * or a renewal of ours granted (a working leader grants one every ttl/5; renewals are no log entries, so
 * an idle log stands still), under a known leader: a standby never campaigns, so it may keep naming a
 * leader that is gone. A while = 4 election timeouts and 2 lease TTLs, at least 1 s: longer than an
 * election and than a renewal round. */
static bool node__drain_stalled(struct cv_node *n)
{
    struct cv_consensus_status st;
    cv_consensus_status(n->consensus, &st);
    uint64_t now = cv_mono_ms();
    bool moved = st.last_applied != n->drain_applied || n->renewal.last_ok_ms != n->drain_renewed;
    if (!n->drain_progress_ms || (st.has_leader && moved)) {
        n->drain_progress_ms = now;
        n->drain_applied = st.last_applied;
        n->drain_renewed = n->renewal.last_ok_ms;
        return false;
    }
    uint64_t limit = 4ull * n->cfg->raft.election_timeout_ms, leases = 2ull * n->cfg->lease_ttl_ms;
    if (leases > limit) limit = leases;
    return now - n->drain_progress_ms >= (limit > 1000 ? limit : 1000);
}

/* Shards we still own or still have to release (their objects not all gone yet). */
static uint32_t node__shards_left(struct cv_node *n, uint32_t *releasing)
{
    const struct cv_catalog_node *me = cv_catalog_node_get(n->catalog, n->self->id);
    uint32_t owned = me ? me->shards_owned : 0;
    *releasing = 0;
    for (uint32_t s = 0; owned == 0 && s < cv_catalog_shards(n->catalog); s++)
        *releasing += cv_catalog_shard_to_release(n->catalog, s, n->self->id, NULL);
    return owned + *releasing;
}

static void node__drain_proposed(void *data, int status, uint64_t index)
{
    struct cv_node *n = data;
    n->drain_inflight = false;
    if (status == 0) CV_INFO("drain recorded in the catalog at index %llu", (unsigned long long)index);
    else if (!n->stopping) CV_WARN("drain proposal failed (%s): trying again", cv_strerror(status));
}

static void node__drain_propose(struct cv_node *n)
{
    Cverse__Catalog__Command cmd = CVERSE__CATALOG__COMMAND__INIT;
    Cverse__Catalog__CmdDrainNode d = CVERSE__CATALOG__CMD_DRAIN_NODE__INIT;
    d.node = (char *)n->self->id;
    d.drain = true;
    d.reason = CVERSE__CATALOG__DRAIN_REASON__DRAIN_SHUTDOWN;
    cmd.cmd_case = CVERSE__CATALOG__COMMAND__CMD_DRAIN_NODE;
    cmd.drain_node = &d;
    if (cv_consensus_propose(n->consensus, &cmd, 1000, node__drain_proposed, n) == 0) n->drain_inflight = true;
}

/* Every 50 ms while draining: (re)propose until the drain applied, then stop once nothing is left, the
 * timeout passed or nobody can take our shards any more. */
static void node__drain_tick(uv_timer_t *t)
{
    struct cv_node *n = t->data;
    const struct cv_catalog_node *me = cv_catalog_node_get(n->catalog, n->self->id);
    uint64_t took = cv_mono_ms() - n->drain_start_ms;
    uint32_t releasing, left = node__shards_left(n, &releasing);
    if (!me || !me->draining) {
        if (!n->drain_inflight) node__drain_propose(n);
    } else if (left == 0) {
        CV_INFO("drained in %llu ms: no shard left here; stopping", (unsigned long long)took);
        cv_node_stop(n);
        return;
    }
    if (took >= n->cfg->drain_timeout_ms) {
        CV_WARN("drain timed out after %llu ms (cluster.drain_timeout_ms) with %u shards owned and %u to "
                "release; stopping anyway", (unsigned long long)took, left - releasing, releasing);
        cv_node_stop(n);
    } else if (!node__others_can_take(n)) {
        CV_WARN("drain: no other live node can take our %u shards any more; stopping", left);
        cv_node_stop(n);
    } else if (node__drain_stalled(n)) {
        CV_WARN("drain: nothing committed for %llu ms (the whole cluster is stopping?): nothing can move our %u "
                "shards; stopping", (unsigned long long)(cv_mono_ms() - n->drain_progress_ms), left);
        cv_node_stop(n);
    }
}

void cv_node_drain(struct cv_node *n)
{
    if (n->stopping || n->draining) return;
    const char *why = !n->host || !n->leader                                        ? "the node is not started"
                      : !cv_catalog_node_get(n->catalog, n->self->id)               ? "not registered yet"
                      : n->cfg->drain_timeout_ms == 0                               ? "cluster.drain_timeout_ms is 0"
                      : !node__others_can_take(n) ? "no other live node can take our shards" : NULL;
    if (why) {
        CV_INFO("no drain: %s; stopping at once", why);
        cv_node_stop(n);
        return;
    }
    n->draining = true;
    n->drain_start_ms = cv_mono_ms();
    CV_INFO("draining: moving our shards to other nodes (up to %u ms), then stopping", n->cfg->drain_timeout_ms);
    node__drain_propose(n);
    uv_timer_start(&n->drain_timer, node__drain_tick, 50, 50);
}

static void node__on_signal(uv_signal_t *s, int signum)
{
    struct cv_node *n = s->data;
    const char *sig = signum == SIGTERM ? "SIGTERM" : "SIGINT";
    if (n->draining && !n->stopping) {
        CV_WARN("received %s again while draining: stopping at once", sig);
        cv_node_stop(n);
        return;
    }
    CV_INFO("received %s: %s", sig, n->stopping ? "already stopping" : "draining, then stopping");
    cv_node_drain(n);
}

int cv_node_init(const struct cv_node_opts *opts, struct cv_node **out)
{
    const struct cv_node_cfg *self = cv_config_node(opts->cfg, opts->node_id);
    if (!self) return CV_EINVAL;
    struct cv_node *n = calloc(1, sizeof *n);
    if (!n) return CV_ENOMEM;
    n->loop = opts->loop;
    n->cfg = opts->cfg;
    n->self = self;
    n->registry = opts->registry;
    n->on_stopped = opts->on_stopped;
    n->data = opts->data;
    n->joining = opts->join;
    n->raft_id = (uint64_t)cv_config_node_index(opts->cfg, self->id) + 1;
    snprintf(n->join_addr, sizeof n->join_addr, "%s", opts->join_addr ? opts->join_addr : "");
    if (opts->data_dir)
        snprintf(n->data_dir, sizeof n->data_dir, "%s", opts->data_dir);
    else
        snprintf(n->data_dir, sizeof n->data_dir, "%s/%s", opts->cfg->data_dir, opts->node_id);
    cv_renewal_init(&n->renewal, self->id, opts->cfg->lease_ttl_ms);
    /* The node's own handles exist from here on, so that cv_node_stop can always close them. */
    uv_timer_init(n->loop, &n->lease_timer);
    uv_timer_init(n->loop, &n->fence_timer);
    uv_signal_init(n->loop, &n->sigterm);
    uv_signal_init(n->loop, &n->sigint);
    uv_timer_init(n->loop, &n->drain_timer);
    n->lease_timer.data = n->fence_timer.data = n->sigterm.data = n->sigint.data = n->drain_timer.data = n;
    *out = n;
    return 0;
}

int cv_node_start(struct cv_node *n)
{
    CV_INFO("starting node %s (data dir %s, %u shards, %zu nodes, lease ttl %u ms)", n->self->id,
            n->data_dir, n->cfg->shards, n->cfg->n_nodes, n->cfg->lease_ttl_ms);
    int rv;
    if ((rv = node__open_catalog(n))) return rv;
    if (n->joining && (rv = node__join_raft_id(n))) return rv;
    if ((rv = node__create_consensus(n))) return rv;
    if ((rv = node__create_host(n))) return rv;
    cv_host_start(n->host);
    if ((rv = cv_consensus_start(n->consensus))) return rv;
    if ((rv = node__register(n))) return rv;
    if ((rv = node__start_listeners(n))) return rv;
    cv_disc_start_if(n->disc);
    n->jm = (struct cv_join_member){.cfg = n->cfg, .catalog = n->catalog, .consensus = n->consensus, .peers = n->peers,
                                    .added = node__member_added, .data = n};
    if ((rv = node__start_join(n))) return rv;
    struct cv_leader_opts lo = {.loop = n->loop, .cfg = n->cfg, .self = n->self, .catalog = n->catalog,
                                .consensus = n->consensus, .joined = n->joining};
    if ((rv = cv_leader_init(&lo, &n->leader))) return rv;
    cv_leader_start(n->leader);
    uv_timer_start(&n->lease_timer, node__lease_tick, 0, 0); /* register at once, then at aligned instants */
    uv_signal_start(&n->sigterm, node__on_signal, SIGTERM);
    uv_signal_start(&n->sigint, node__on_signal, SIGINT);
    return 0;
}

/* ---------------------------------------------------------------- stop */

/* One part closed; the last one ends the stop. */
static void node__part_closed(struct cv_node *n)
{
    if (--n->open_parts > 0) return;
    CV_INFO("node %s stopped", n->self->id);
    if (n->on_stopped) n->on_stopped(n->data);
}

static void node__handle_closed(uv_handle_t *h)
{
    node__part_closed(h->data);
}

static void node__closed(void *data)
{
    node__part_closed(data);
}

static void node__host_closed(void *data)
{
    struct cv_node *n = data;
    n->host = NULL;
    node__part_closed(n);
}

static void node__rpc_closed(void *data)
{
    node__part_closed(data);
}

static void node__http_closed(void *data)
{
    const struct cv_api *api = data; /* the HTTP server's data is the API; the API's is the node */
    node__part_closed(api->data);
}

/* Closes whatever cv_node_start got to create (it may have failed half way). Every part counts: the
 * node reports stopped only once all of them called back. */
static void node__shutdown(void *data)
{
    struct cv_node *n = data;
    if (n->shut) return; /* the transfer callback and its fallback timer may both get here */
    n->shut = true;
    n->open_parts = 1 + 5 + (n->leader != NULL) + (n->consensus != NULL) + (n->host != NULL) +
                    (n->rpc != NULL) + (n->http != NULL) + (n->peers != NULL) + (n->disc != NULL) +
                    (n->joiner != NULL);
    if (n->joiner) cv_joiner_close(n->joiner, node__closed, n);
    n->joiner = NULL;
    if (n->disc) cv_disc_close(n->disc, node__closed, n); /* revokes our lease: the key goes at once */
    n->disc = NULL;
    n->api.disc = NULL;
    if (n->http) cv_http_server_close(n->http, node__http_closed);
    if (n->rpc) cv_rpc_server_close(n->rpc, node__rpc_closed);
    n->http = NULL;
    n->rpc = NULL;
    uv_close((uv_handle_t *)&n->lease_timer, node__handle_closed);
    uv_close((uv_handle_t *)&n->fence_timer, node__handle_closed);
    uv_close((uv_handle_t *)&n->sigterm, node__handle_closed);
    uv_close((uv_handle_t *)&n->sigint, node__handle_closed);
    uv_close((uv_handle_t *)&n->drain_timer, node__handle_closed);
    if (n->leader) cv_leader_close(n->leader, node__closed, n);
    n->leader = NULL;
    if (n->host) cv_host_close(n->host, node__host_closed, n); /* n->host stays set until it closed */
    if (n->consensus) cv_consensus_close(n->consensus, node__closed, n);
    if (n->peers) cv_peers_close(n->peers, node__closed, n); /* fails the calls the others wait for */
    n->peers = NULL;
    node__part_closed(n);
}

static void node__transfer_timeout(uv_timer_t *t)
{
    node__shutdown(t->data);
}

void cv_node_stop(struct cv_node *n)
{
    if (n->stopping) return;
    n->stopping = true;
    cv_renewal_stop(&n->renewal);
    uv_timer_stop(&n->drain_timer);
    uv_timer_stop(&n->lease_timer);
    uv_timer_stop(&n->fence_timer);
    if (n->leader) cv_leader_stop(n->leader);
    if (n->host) cv_host_stop(n->host);
    int rv = n->consensus ? cv_consensus_transfer(n->consensus, node__shutdown, n) : CV_EINVAL;
    if (rv == 0) {
        /* libraft does not call back when leadership is lost meanwhile (e.g. every node is stopping):
         * bound the wait ourselves. */
        CV_INFO("transferring raft leadership before exiting");
        uv_timer_start(&n->lease_timer, node__transfer_timeout, 2u * n->cfg->raft.election_timeout_ms + 100u, 0);
        return;
    }
    node__shutdown(n);
}

bool cv_node_failed(const struct cv_node *n)
{
    return n->failed;
}

void cv_node_free(struct cv_node *n)
{
    if (!n) return;
    cv_consensus_free(n->consensus);
    if (n->catalog) cv_catalog_close(n->catalog);
    cv_registry_free(n->own_registry);
    free(n);
}
