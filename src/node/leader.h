/* Leader duties, run periodically on the raft leader only: record the config fingerprint, expire
 * leases, reassign shards of dead nodes / to new nodes, and keep the voter count (promote standbys). */
#ifndef CV_NODE_LEADER_H
#define CV_NODE_LEADER_H

#include <uv.h>

#include "catalog/catalog.h"
#include "config/config.h"
#include "consensus/consensus.h"
#include "util/hist.h"

struct cv_leader;

struct cv_leader_opts {
    /* Borrowed; valid until the close callback (cv_leader_close's done) ran. */
    uv_loop_t *loop;
    const struct cv_config *cfg;
    const struct cv_node_cfg *self; /* this node (an entry of cfg->nodes) */
    struct cv_catalog *catalog;
    struct cv_consensus *consensus;
    bool joined;                    /* this node joined a running cluster: cfg (its flags) is not the
                                     * cluster's, so its fingerprint is not recorded */
};

/* Allocates the duty runner; it runs every interval while this node is the leader, once started. */
int cv_leader_init(const struct cv_leader_opts *opts, struct cv_leader **out);
/* Starts the periodic run. */
void cv_leader_start(struct cv_leader *l);
/* Stops running for good (the node is stopping); kicks are ignored from now on. */
void cv_leader_stop(struct cv_leader *l);
/* Stops for good and closes the timer. l is freed, and then done(data) called, once the timer closed and
 * every proposal of l completed: proposals still in flight hold the close until the consensus completes
 * them (cv_consensus_close fails them with CV_ECANCELED), so close both. */
void cv_leader_close(struct cv_leader *l, void (*done)(void *data), void *data);
/* Nudges the runner (e.g. after an apply that changed liveness) to run at the next loop iteration. */
void cv_leader_kick(struct cv_leader *l);
/* An entry was applied: while leading, the duties run again within RUN_MS of their last run. */
void cv_leader_changed(struct cv_leader *l);
/* A RenewLease or RegisterNode of node applied here at now_mono (cv_mono_ms). Every node records it, led
 * or not: the leader declares a node dead only ttl + margin after the latest one it saw (core/lease.h). */
void cv_leader_renewal_seen(struct cv_leader *l, const char *node, uint64_t now_mono);
/* An ExpireNode of node applied here at now_mono: its shards are unassigned and wait for new owners.
 * Every node records it; whoever leads when the last of them got an owner observes the failover. */
void cv_leader_node_died(struct cv_leader *l, const char *node, uint64_t now_mono);

/* What the leader observed while it led (plain data, for /metrics and /v1/cluster). */
struct cv_leader_stats {
    struct cv_hist failover;   /* a node's ExpireNode applied -> every shard it owned has a new owner */
    uint64_t failovers;        /* failovers observed (also the histogram's count) */
    uint64_t last_failover_ms; /* duration of the latest one */
    uint64_t shard_moves;      /* shards given a new owner by this node's applied AssignShards */
};
/* Valid until l is closed. */
const struct cv_leader_stats *cv_leader_stats(const struct cv_leader *l);

#endif
