/* A cverse node process: catalog + raft + RPC server + HTTP API + lease renewal + leader duties + the
 * objects it hosts (host.h), wired together and started and stopped as one. */
#ifndef CV_NODE_H
#define CV_NODE_H

#include <stdbool.h>
#include <uv.h>

#include "config/config.h"
#include "objects/registry.h"

struct cv_node; /* private to node.c */

struct cv_node_opts {
    uv_loop_t *loop;               /* borrowed, valid until cv_node_free */
    const struct cv_config *cfg;   /* borrowed, valid until cv_node_free */
    const char *node_id;           /* read during init only: must name one of cfg's nodes */
    /* A node that no configuration of the cluster lists (the flag form: cfg lists this node only): it
     * joins the running cluster (node/join.h) instead of bootstrapping raft, asking join_addr (a member's
     * native address, copied) or, when NULL, the nodes registered in etcd (cfg's provider etcd). */
    bool join;
    const char *join_addr;
    const char *data_dir;          /* copied; NULL: <cfg->data_dir>/<node_id> */
    cv_registry *registry;         /* object types; borrowed, valid until cv_node_free; NULL: an empty
                                    * one, owned by the node */
    void (*on_stopped)(void *data); /* optional: everything closed ("node stopped"); then free */
    void *data;
};

/* Allocates the node and its own handles (timers, signals); opens nothing. CV_EINVAL (node_id not in the
 * config), CV_ENOMEM. On success the node must be stopped (cv_node_stop) and freed (cv_node_free). */
int cv_node_init(const struct cv_node_opts *opts, struct cv_node **out);
/* Opens the catalog, starts raft (bootstrapping a pristine data dir), the object host, the RPC and HTTP
 * listeners, lease renewal and leader duties. On failure (logged) the caller stops the node as usual. */
int cv_node_start(struct cv_node *n);
/* Graceful stop (SIGTERM path): /ready says "draining", DrainNode(self, shutdown) moves our shards to
 * other nodes, then cv_node_stop; bounded by cluster.drain_timeout_ms. Stops at once when the node is
 * not started, the timeout is 0 or no other live, undrained node exists. A second call does nothing. */
void cv_node_drain(struct cv_node *n);
/* Stop at once (after a drain, or a second signal): not ready, a leader hands over leadership, then
 * everything closes; the loop then runs empty. Safe whatever part of cv_node_start succeeded. */
void cv_node_stop(struct cv_node *n);
/* The node stopped for a start error found after cv_node_start returned (its id held by another live
 * process in etcd): the process should exit 1. */
bool cv_node_failed(const struct cv_node *n);
/* After uv_run returned: frees what the close callbacks left, and n. */
void cv_node_free(struct cv_node *n);

/* Readiness: true if ready, else a reason string via *why (static, or the node's buffer: valid until the
 * next call). Ready = catalog-ready (below) and the node's auto-load objects exist (cv_host_ready). */
bool cv_node_ready(struct cv_node *n, const char **why);
/* The catalog part of readiness: a leader is known, the log is applied up to the commit index learned
 * from it, this node is registered and alive, no shard is unassigned. Objects are served only then. */
bool cv_node_catalog_ready(struct cv_node *n, const char **why);

#endif
