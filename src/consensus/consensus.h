/* Raft glue: runs the node's raft instance (libraft + libuv TCP transport) with the catalog as its FSM,
 * batches catalog commands into log entries, forwards proposals to the leader, and reports each proposal's
 * outcome once ITS command was applied locally. */
#ifndef CV_CONSENSUS_H
#define CV_CONSENSUS_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "catalog/catalog.h"
#include "config/config.h"
#include "net/rpc.h"

#define CV_CONSENSUS_TICK_MS 20 /* the consensus' tick while there is work (see on_tick) */

struct cv_consensus;

struct cv_peers;
struct cv_sm_conf;

/* Raft roles of a member (the values of raft.h's RAFT_STANDBY, RAFT_VOTER, RAFT_SPARE, so that nothing
 * outside this module needs <raft.h>). */
enum cv_member_role {
    CV_MEMBER_NONE = -1, /* not a member */
    CV_MEMBER_STANDBY = 0,
    CV_MEMBER_VOTER = 1,
    CV_MEMBER_SPARE = 2,
};

/* Called after every applied entry (from the catalog observer), after proposals were completed. */
typedef void (*cv_consensus_applied_cb)(void *data, uint64_t index, const Cverse__Catalog__Batch *batch,
                                        const struct cv_cmd_result *results);
/* Leadership of this node changed (is_leader) or the known leader changed. */
typedef void (*cv_consensus_leader_cb)(void *data, bool is_leader);

struct cv_consensus_opts {
    /* Borrowed, valid until cv_consensus_free (raft's handles finish closing in the loop after the close
     * callback; the caller runs the loop empty, then frees). */
    uv_loop_t *loop;
    const struct cv_config *cfg;
    struct cv_catalog *catalog;   /* the FSM */
    struct cv_peers *peers;       /* connections to the other nodes (forwarding): valid only until the
                                   * close callback ran; the owner closes it together with the consensus
                                   * (forwards in flight hold the close until the pool fails them) */
    /* Read during cv_consensus_init only (copied or looked up). */
    const char *node_id;          /* this node; must be in cfg */
    /* 0: an initial member, whose raft id is its index in cfg->nodes + 1 (and so are the others'); the
     * raft log is bootstrapped with cfg->nodes when pristine. Else this node joined a running cluster with
     * this raft id (cluster.join): no bootstrap, and other members are known by their catalog records only. */
    uint64_t raft_id;
    const char *raft_dir;         /* raft log + snapshots; created if missing */
    cv_consensus_applied_cb on_applied;
    cv_consensus_leader_cb on_leader;
    /* After each consensus tick, while raft runs and the consensus is not closing: the owner's periodic
     * work, without a timer of its own. Returns in how many ms the owner wants the next tick (its next
     * deadline; CV_CONSENSUS_TICK_MS while it retries or polls); the consensus ticks then or earlier (at
     * most every 10 ms, at least every second; every CV_CONSENSUS_TICK_MS while it leads or proposals
     * are pending). Work that appears between ticks asks for one with cv_consensus_tick_soon. May be NULL. */
    unsigned (*on_tick)(void *data);
    /* The raft log cannot be written (consensus/iowrap.h): fence; the process exits 1 on return. May be
     * NULL. */
    void (*on_log_failed)(void *data, const char *why);
    void *data;
};

struct cv_consensus_status {
    bool is_leader;
    bool has_leader;
    char leader_id[CV_NODE_ID_MAX]; /* "" if unknown */
    char prev_leader_id[CV_NODE_ID_MAX]; /* the last OTHER node seen leading ("" if none): while this
                                          * node leads, the leader it replaced */
    uint64_t term, commit_index, last_applied, last_index;
    uint64_t leader_since_ms;       /* wall clock when this node became leader (0 if not leader) */
    const char *state;              /* "leader", "follower", "candidate", "unavailable" */
    uint64_t snapshots_taken, snapshots_restored;
    uint64_t entries_applied;       /* entries applied by this process (not skipped) */
    uint64_t heartbeats_sent, heartbeats_skipped; /* as leader, to standbys (consensus/quiet.h) */
    uint64_t voter_heartbeats_skipped;            /* as leader, to voters while the log is idle */
    uint64_t raft_ticks, ticks; /* raft's timer ticks (consensus/snapguard.h); the consensus' own ticks */
};

/* Apply latency histogram buckets (µs upper bounds); counts are cumulative as in Prometheus. */
#define CV_APPLY_BUCKETS 12
extern const double cv_apply_bucket_le_us[CV_APPLY_BUCKETS];
struct cv_apply_histogram {
    uint64_t buckets[CV_APPLY_BUCKETS]; /* non-cumulative counts per bucket */
    uint64_t count;
    double sum_us;
};

/* Allocates the consensus and its timers; starts nothing (no raft, no I/O). CV_EINVAL, CV_ENOMEM. */
int cv_consensus_init(const struct cv_consensus_opts *opts, struct cv_consensus **out);
/* The next consensus tick (and the owner's on_tick) runs within ms (at most every 10 ms). From any
 * callback of the loop; nothing once closing. */
void cv_consensus_tick_soon(struct cv_consensus *c, unsigned ms);
/* Creates the raft directory, initialises raft (bootstrapping a pristine data dir with the configured
 * membership: the first cfg->raft.voters nodes as voters, the rest as standbys) and starts it. On failure
 * (CV_EIO, CV_ERAFT) close as usual: cv_consensus_close releases whatever was set up. */
int cv_consensus_start(struct cv_consensus *c);
/* Fails pending proposals with CV_ECANCELED, closes the timers and raft (if started). cb runs once raft's
 * close callback fired and every forwarded proposal's call came back (close the peer pool too); the caller
 * then runs the loop until it is empty and calls cv_consensus_free. Never runs the loop itself. */
void cv_consensus_close(struct cv_consensus *c, void (*cb)(void *data), void *data);
void cv_consensus_free(struct cv_consensus *c);

/* Outcome of a proposal: status is the command's result as applied (0 or a business error such as
 * CV_ECONFLICT), or CV_ERETRY (leadership changed; the command was NOT applied), CV_ETIMEDOUT /
 * CV_EUNAVAIL (outcome unknown), CV_ECANCELED (shutting down). index: the entry that applied it, or 0. */
typedef void (*cv_propose_cb)(void *data, int status, uint64_t index);

/* Proposes one catalog command from this node. origin and seq are filled in here; the command is
 * serialized before returning (the caller keeps ownership of cmd). cb fires exactly once, never from
 * inside this call. timeout_ms 0 = default 5000. */
int cv_consensus_propose(struct cv_consensus *c, Cverse__Catalog__Command *cmd, unsigned timeout_ms,
                         cv_propose_cb cb, void *data);
/* The same, bound to a term (0: none): appended only by this node as the leader of that term, never
 * forwarded, re-proposed to another leader or queued again in a later term — a leader's decision (an
 * expiry) must not commit under a leader that did not take it (see docs/architecture.md, "Leases and
 * liveness"). CV_ENOTLEADER at once when we do not lead that term; cb CV_ENOTLEADER when we stop leading
 * it before the command was appended. */
int cv_consensus_propose_in_term(struct cv_consensus *c, Cverse__Catalog__Command *cmd, uint64_t term,
                                 unsigned timeout_ms, cv_propose_cb cb, void *data);

/* Handles the "catalog.propose" RPC (a forwarded proposal) arriving on the node's RPC server. */
void cv_consensus_handle_propose(struct cv_consensus *c, struct cv_rpc_conn *conn, uint64_t id,
                                 const uint8_t *body, size_t len);

void cv_consensus_status(struct cv_consensus *c, struct cv_consensus_status *st);
/* The early commit notices (consensus/notice.h): the leader sends them after each apply; a proposer
 * watches the seq that cv_consensus_propose put in its command. Valid until cv_consensus_free. */
struct cv_notices *cv_consensus_notices(struct cv_consensus *c);
/* Lease renewals without log entries (consensus/leases.h): set once raft started (NULL before); valid
 * until cv_consensus_free. */
struct cv_leases *cv_consensus_leases(struct cv_consensus *c);
/* Whether a raft leader is known (cv_consensus_status's has_leader, without building the rest: the call
 * path asks it per call). */
bool cv_consensus_has_leader(struct cv_consensus *c);
const struct cv_apply_histogram *cv_consensus_apply_histogram(const struct cv_consensus *c);

/* The proposals' state machine (its table, for tests). */
const struct cv_sm_conf *cv_consensus_proposal_sm(void);

/* Membership (leader only). Role of a member (enum cv_member_role) in the current raft configuration, or
 * CV_MEMBER_NONE. */
int cv_consensus_member_role(struct cv_consensus *c, const char *node_id);
/* Starts a role change (raft_assign). CV_EBUSY while another change runs, CV_ENOTLEADER. cb may be NULL;
 * status is 0 or CV_ERAFT. */
int cv_consensus_assign(struct cv_consensus *c, const char *node_id, int raft_role,
                        void (*cb)(void *data, int status), void *data);
bool cv_consensus_change_pending(const struct cv_consensus *c);
/* Adds a node to the raft configuration as a spare (raft_add; the leader's membership duty makes it a
 * standby, which catches up). CV_EBUSY while another change runs, CV_ENOTLEADER, CV_EEXIST (the raft id
 * is a member already). cb may be NULL; status is 0 or CV_ERAFT. */
int cv_consensus_add(struct cv_consensus *c, const char *node_id, uint64_t raft_id, const char *raft_addr,
                     void (*cb)(void *data, int status), void *data);
/* Takes a member out of the raft configuration (raft_remove; never this node). CV_EBUSY, CV_ENOTLEADER,
 * CV_EINVAL (self or not a member). */
int cv_consensus_remove(struct cv_consensus *c, const char *node_id);
/* Hands leadership to another voter (raft_transfer with automatic choice). cb fires when done or when
 * the election timeout elapsed; CV_ENOTLEADER / CV_ENOTFOUND (no other voter). */
int cv_consensus_transfer(struct cv_consensus *c, void (*cb)(void *data), void *data);

#endif
