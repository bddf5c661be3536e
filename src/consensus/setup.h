/* raft's settings from the cluster config: the membership a pristine log is bootstrapped with, the
 * timeouts, and the quiet heartbeats' keepalives. */
#ifndef CV_CONSENSUS_SETUP_H
#define CV_CONSENSUS_SETUP_H

#include <raft.h>

#include "config/config.h"
#include "consensus/quiet.h"

/* Bootstraps r (initialised, not started) with cfg's nodes: the first cfg->raft.voters as voters, the
 * rest as standbys, raft ids 1..n in config order. A log that is not pristine is left as it is (0).
 * 0, or CV_ERAFT (logged). */
int cv_setup_bootstrap(struct raft *r, const struct cv_config *cfg);
/* The election, heartbeat and install-snapshot timeouts, pre-vote and the snapshot policy of rc. */
void cv_setup_tune(struct raft *r, const struct cv_raft_cfg *rc);
/* cv_quiet_init for r with rc's keepalives: a standby half an election timeout (four once settled), an
 * idle voter two heartbeats (at most a third of an election timeout) after the log stood still for
 * voter_idle_ms. The caller may then set q->settled. */
void cv_setup_quiet(struct cv_quiet *q, const struct raft *r, const struct cv_raft_cfg *rc, uint64_t voter_idle_ms);

#endif
