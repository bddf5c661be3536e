/* Leader duties, run periodically on the raft leader only: record the config fingerprint, expire
 * leases, reassign shards of dead nodes / to new nodes, and keep the voter count (promote standbys). */
#ifndef CV_NODE_LEADER_H
#define CV_NODE_LEADER_H

#include "node/node.h"

/* Allocates the duty runner for node n; it runs every interval while n is the leader. */
int cv_leader_init(struct cv_node *n, struct cv_leader **out);
/* Starts/stops the periodic run. */
void cv_leader_start(struct cv_leader *l);
/* Closes the timer; frees l in the close callback. done(data) is called after. */
void cv_leader_close(struct cv_leader *l, void (*done)(void *data), void *data);
/* Nudges the runner (e.g. after an apply that changed liveness) to run at the next loop iteration. */
void cv_leader_kick(struct cv_leader *l);

#endif
