/* Leader duties, run periodically on the raft leader only: record the config fingerprint, expire
 * leases, reassign shards of dead nodes / to new nodes, and keep the voter count (promote standbys). */
#ifndef CV_NODE_LEADER_H
#define CV_NODE_LEADER_H

#include <uv.h>

#include "catalog/catalog.h"
#include "config/config.h"
#include "consensus/consensus.h"

struct cv_leader;

struct cv_leader_opts {
    uv_loop_t *loop;                /* borrowed, like everything here: must outlive the runner */
    const struct cv_config *cfg;
    const struct cv_node_cfg *self; /* this node (an entry of cfg->nodes) */
    struct cv_catalog *catalog;
    struct cv_consensus *consensus;
};

/* Allocates the duty runner; it runs every interval while this node is the leader, once started. */
int cv_leader_init(const struct cv_leader_opts *opts, struct cv_leader **out);
/* Starts the periodic run. */
void cv_leader_start(struct cv_leader *l);
/* Stops running for good (the node is stopping); kicks are ignored from now on. */
void cv_leader_stop(struct cv_leader *l);
/* Closes the timer; frees l in the close callback. done(data) is called after. */
void cv_leader_close(struct cv_leader *l, void (*done)(void *data), void *data);
/* Nudges the runner (e.g. after an apply that changed liveness) to run at the next loop iteration. */
void cv_leader_kick(struct cv_leader *l);

#endif
