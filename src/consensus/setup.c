/* raft's settings from the cluster config (setup.h).
 *
 * Happy path: a pristine data dir is bootstrapped with the config's membership (every node of the static
 * config does the same, so they agree); raft gets the config's timeouts; the quiet heartbeats get their
 * keepalives from the same timeouts (why each: consensus/quiet.c).
 * Failure modes: raft_bootstrap on a log that is not pristine answers RAFT_CANTBOOTSTRAP: an earlier run
 * bootstrapped it, nothing to do; any other error is logged and reported as CV_ERAFT. */
#include "consensus/setup.h"

#include "cverse/error.h"
#include "util/log.h"

int cv_setup_bootstrap(struct raft *r, const struct cv_config *cfg)
{
    struct raft_configuration conf;
    raft_configuration_init(&conf);
    int rv = 0;
    for (size_t i = 0; i < cfg->n_nodes && !rv; i++) {
        int role = i < cfg->raft.voters ? RAFT_VOTER : RAFT_STANDBY;
        rv = raft_configuration_add(&conf, i + 1, cfg->nodes[i].raft_addr, role);
    }
    if (!rv) rv = raft_bootstrap(r, &conf);
    raft_configuration_close(&conf);
    if (rv == RAFT_CANTBOOTSTRAP) return 0; /* not pristine: an earlier run bootstrapped */
    if (rv) {
        CV_ERROR("raft bootstrap failed: %s", raft_strerror(rv));
        return CV_ERAFT;
    }
    CV_INFO("bootstrapped raft with %zu members (%u voters)", cfg->n_nodes, cfg->raft.voters);
    return 0;
}

void cv_setup_tune(struct raft *r, const struct cv_raft_cfg *rc)
{
    raft_set_election_timeout(r, rc->election_timeout_ms);
    raft_set_heartbeat_timeout(r, rc->heartbeat_timeout_ms);
    raft_set_pre_vote(r, rc->pre_vote);
    raft_set_snapshot_threshold(r, rc->snapshot_threshold);
    raft_set_snapshot_trailing(r, rc->snapshot_trailing);
    raft_set_install_snapshot_timeout(r, cv_raft_install_snapshot_timeout_ms(rc)); /* config.h: why */
}

void cv_setup_quiet(struct cv_quiet *q, const struct raft *r, const struct cv_raft_cfg *rc, uint64_t voter_idle_ms)
{
    /* a standby: half an election timeout, so that one that does not know yet it became a standby (its
     * configuration entry lost on the way) hears from us before it would campaign; four once settled */
    cv_quiet_init(q, r, rc->election_timeout_ms / 2, 4ull * rc->election_timeout_ms, rc->quiet_heartbeats);
    uint64_t two_beats = 2ull * rc->heartbeat_timeout_ms, third = rc->election_timeout_ms / 3;
    q->voter_keepalive_ms = two_beats < third ? two_beats : third;
    q->voter_idle_ms = voter_idle_ms;
}
