/* Lease renewals without raft log entries: the RPCs "lease.renew" (a node -> the raft leader) and
 * "lease.confirm" (the leader -> the other voters), the leader's rounds (core/lessor.h), and this node's
 * own renewal call. */
#ifndef CV_CONSENSUS_LEASES_H
#define CV_CONSENSUS_LEASES_H

#include <raft.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct cv_peers;
struct cv_rpc_conn;
struct cv_leases;

struct cv_leases_opts {
    struct raft *raft;          /* borrowed: state, term, leader, configuration; valid until free */
    struct cv_peers *peers;     /* borrowed: valid until the settle callback ran (see cv_leases_close) */
    const char *self_id;        /* copied */
    raft_id self_raft_id;
    unsigned round_timeout_ms;  /* a round without its majority this long fails (an election timeout) */
    unsigned max_wait_ms;       /* a renewal waiting this long is answered timed out (the lease TTL) */
    const char *(*member_id)(void *data, raft_id id); /* raft id -> node id (NULL: unknown); data: below */
    /* Whether a node may be granted a renewal by the catalog (core/lessor.h cv_lessor_standing_cb). */
    int (*standing)(void *data, const char *node_id, uint64_t incarnation);
    /* Closing, and the last call in flight completed: the owner may free (cv_leases_free). */
    void (*settle)(void *data);
    void *data;
};

/* *out owned by the caller (cv_leases_free). CV_ENOMEM. */
int cv_leases_init(const struct cv_leases_opts *opts, struct cv_leases **out);
/* No new calls; waiting renewals answered CV_ENOTLEADER. Calls in flight complete when the owner closes
 * the peer pool; settle runs once none is left (at once if none is). */
void cv_leases_close(struct cv_leases *l);
/* Calls in flight (the owner frees l only at 0, after cv_leases_close). */
size_t cv_leases_inflight(const struct cv_leases *l);
void cv_leases_free(struct cv_leases *l);

/* After each consensus tick: follows raft's leadership (a new term leads from its barrier: a raft
 * barrier is started; no longer leading answers what waits NOT_LEADER), starts a due round, fails one
 * past its timeout. */
void cv_leases_tick(struct cv_leases *l);

/* RPC handlers (body valid during the call; each answers exactly once). */
void cv_leases_handle_renew(struct cv_leases *l, struct cv_rpc_conn *conn, uint64_t id, const uint8_t *body,
                            size_t len);
void cv_leases_handle_confirm(struct cv_leases *l, struct cv_rpc_conn *conn, uint64_t id, const uint8_t *body,
                              size_t len);

/* This node (its incarnation, as its registration applied) renews its lease through the leader (itself
 * included); one renewal at a time. cb(data,
 * status) exactly once, never from inside the call, unless it returns an error: 0 granted, CV_ECONFLICT
 * declared dead, CV_ENOTFOUND no member, CV_ENOTLEADER / CV_ETIMEDOUT / CV_EUNAVAIL: not renewed (try
 * again). A call to a leader that raft replaced meanwhile is answered CV_ENOTLEADER at the next tick,
 * not after its timeout. Returns CV_ENOTLEADER (no leader known),
 * CV_EUNAVAIL, CV_ENOMEM, CV_ECLOSED. */
int cv_leases_renew(struct cv_leases *l, uint64_t incarnation, unsigned timeout_ms,
                    void (*cb)(void *data, int status), void *data);

/* Whether this node leads raft's current term past its barrier (*term, and *since_ms: our monotonic
 * clock when we took it): the only state in which leader duties may judge leases. */
bool cv_leases_leading(const struct cv_leases *l, uint64_t *term, uint64_t *since_ms);
/* Leader duties: when this leader granted node_id's latest renewal (its arrival; 0: none in this term);
 * node_id is being declared dead (its renewals are refused until it registered again). */
uint64_t cv_leases_seen(const struct cv_leases *l, const char *node_id);
/* For views: how long ago (ms) this leader granted node_id's latest renewal; -1 when it is not leading
 * (or not past its barrier) or granted none in its term. */
int64_t cv_leases_granted_ago(const struct cv_leases *l, const char *node_id);
void cv_leases_expire(struct cv_leases *l, const char *node_id);
void cv_leases_registered(struct cv_leases *l, const char *node_id);

#endif
