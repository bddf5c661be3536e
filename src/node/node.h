/* A cverse node process: catalog + raft + RPC server + HTTP API + lease renewal + leader duties + the
 * objects it hosts (host.h). */
#ifndef CV_NODE_H
#define CV_NODE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "catalog/catalog.h"
#include "config/config.h"
#include "consensus/consensus.h"
#include "net/http.h"
#include "net/rpc.h"
#include "objects/registry.h"

struct cv_leader; /* leader duties, see leader.h */
struct cv_host;   /* object hosting, see host.h */

struct cv_node {
    uv_loop_t *loop;
    const struct cv_config *cfg;     /* owned by the caller; outlives the node */
    const struct cv_node_cfg *self;
    char data_dir[512];

    struct cv_catalog *catalog;
    struct cv_consensus *consensus;
    struct cv_rpc_server *rpc;
    struct cv_http_server *http;
    struct cv_leader *leader;
    struct cv_host *host;
    cv_registry *own_registry;       /* when the opts gave none */

    uv_timer_t lease_timer;
    uv_signal_t sigterm, sigint;
    bool lease_inflight;
    bool registered;                 /* our RegisterNode was applied in this process' life */
    uint64_t last_renew_ok_ms;       /* monotonic */
    bool stopping;
    bool shut;                       /* shutdown of the components started */
    int exit_code;
    int open_handles;
};

struct cv_node_opts {
    uv_loop_t *loop;
    const struct cv_config *cfg;
    const char *node_id;
    const char *data_dir; /* NULL: <cfg->data_dir>/<node_id> */
    cv_registry *registry; /* object types; not owned, must outlive the node; NULL: an empty one */
};

/* Opens the catalog and raft, binds the RPC and HTTP listeners and starts everything. */
int cv_node_start(struct cv_node *n, const struct cv_node_opts *opts);
/* Graceful stop (SIGTERM path): not ready, a leader hands over leadership, then everything closes;
 * the loop then runs empty. */
void cv_node_stop(struct cv_node *n);
/* After uv_run returned: frees what the close callbacks left. */
void cv_node_free(struct cv_node *n);

/* Readiness: true if ready, else a static reason string via *why. Ready = catalog-ready (below) and
 * the node's auto-load objects exist (cv_host_ready). */
bool cv_node_ready(struct cv_node *n, const char **why);
/* The catalog part of readiness: a leader is known, the log is applied up to the commit index learned
 * from it, this node is registered and alive, no shard is unassigned. Objects are served only then. */
bool cv_node_catalog_ready(struct cv_node *n, const char **why);

/* HTTP API (api.c). */
void cv_node_http_handler(void *data, struct cv_http_exchange *x, const struct cv_http_request *req);

#endif
