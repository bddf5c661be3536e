/* Quiet heartbeats: which of the raft leader's heartbeats to a standby can stay unsent because they tell
 * it nothing it was not told already (pure: no I/O; the raft_io shim asks it for every message). */
#ifndef CV_CONSENSUS_QUIET_H
#define CV_CONSENSUS_QUIET_H

#include <raft.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What the leader last let through to one follower. */
struct cv_quiet_peer {
    raft_id id;
    raft_term term;
    raft_index upto;   /* prev_log_index + n_entries of the last AppendEntries sent */
    raft_index commit; /* its leader_commit */
    uint64_t sent_ms;  /* when (0: nothing known: the next message goes out) */
    uint64_t changed_ms; /* when the last message with a new term, index or commit went out */
};

struct cv_quiet {
    const struct raft *raft; /* borrowed: the roles of the current configuration; valid while q is used */
    bool enabled;
    uint64_t keepalive_ms;       /* a standby hears from its leader at least this often */
    uint64_t settled_ms;         /* ... and a settled one (it has our configuration) at least this often */
    /* Whether standby id is settled: cv_quiet_init's asks cv_quiet_has_config(raft, id); the consensus
     * adds "and it renewed its lease lately" (settled_data: the consensus); tests replace it. */
    bool (*settled)(void *data, raft_id id);
    void *settled_data;
    /* A voter's heartbeats are left out only while the log stands still: nothing new went to it for
     * voter_idle_ms; then it hears at least every voter_keepalive_ms. 0 (cv_quiet_init's): never. */
    uint64_t voter_keepalive_ms, voter_idle_ms;
    struct cv_quiet_peer *peers; /* owned */
    size_t n, cap;
    uint64_t sent, skipped; /* heartbeats to standbys let through / left unsent, since init */
    uint64_t voter_skipped; /* heartbeats to voters left unsent */
};

/* keepalive_ms: the longest a standby goes without a message (the consensus uses half an election timeout);
 * settled_ms: the same for a standby that has the current configuration (four election timeouts).
 * enabled false: nothing is ever skipped. r is borrowed (see above). */
void cv_quiet_init(struct cv_quiet *q, const struct raft *r, uint64_t keepalive_ms, uint64_t settled_ms,
                   bool enabled);
void cv_quiet_fini(struct cv_quiet *q);
/* Whether follower id has stored the entry of r's current configuration (raft_match_index: only a leader
 * knows; anything else, and a configuration known only from a snapshot, is false). */
bool cv_quiet_has_config(const struct raft *r, raft_id id);

/* The rule, on one follower's record: an AppendEntries without entries is redundant when the last
 * message let through to that follower had the same term, ended at the same index (prev_log_index) and
 * carried the same commit index, less than keepalive_ms ago. */
bool cv_quiet_redundant(const struct cv_quiet_peer *last, const struct raft_append_entries *ae, uint64_t now_ms,
                        uint64_t keepalive_ms);

/* Called for every message raft sends (m borrowed for the call). true: leave it unsent — the caller
 * reports it sent, as the network would for a message it then lost. Only heartbeats are ever skipped (to
 * standbys; to voters while the log is idle); every message let through updates its destination's record
 * (any other message type to a follower forgets its record, so the next heartbeat goes out). */
bool cv_quiet_skip(struct cv_quiet *q, const struct raft_message *m, uint64_t now_ms);

#endif
