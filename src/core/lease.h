/* Node lease rules and the node-side lease view (pure): how long a node may serve after a renewal it
 * proposed, when a leader may declare a node dead, and how often a node renews. Every time here is a
 * reading of ONE process' monotonic clock (CLOCK_MONOTONIC ms); no two processes' clocks are compared. */
#ifndef CV_CORE_LEASE_H
#define CV_CORE_LEASE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/sm.h"

/* Assumed bound on how much two machines' monotonic clocks may disagree in RATE (not in value):
 * 1% = 10000 ppm (NTP-disciplined clocks drift < 0.05%; an undisciplined crystal < 0.01%). */
#define CV_LEASE_DRIFT_PPM 10000u
/* Scheduling slack inside the margin: a handler that started before the node's deadline may finish
 * after it; a node's loop iteration is bounded (a pump budget), so tens of ms cover it. */
#define CV_LEASE_SLACK_MS 50u

/* The safety margin for a TTL: drift over one TTL (rounded up) plus the slack. The node serves at most
 * ttl - margin after sending a renewal; a leader declares it dead no earlier than ttl + margin after a
 * reading it took after that renewal was sent (see docs/architecture.md, "Leases and liveness"). The config's smallest TTL
 * (100 ms) still leaves a window of more than a third of the TTL. */
uint64_t cv_lease_margin(uint64_t ttl_ms);

/* Leader rule. seen_ms: this process' monotonic time, read after the node sent the renewal or
 * registration that gave it its current window (node/leader.c takes the latest of: its own start of
 * leadership, the arrival of the node's latest renewal it granted, its apply of the node's latest
 * registration; 0: none); since_ms: its monotonic time when it took leadership. A node may be declared
 * dead once now is past seen + ttl + margin and, with grace, past since + cv_lease_grace (liveness
 * only). A node never seen: since + ttl + margin. See docs/architecture.md, "Leases and liveness". */
bool cv_lease_may_expire(uint64_t seen_ms, uint64_t since_ms, uint64_t ttl_ms, uint64_t now_ms);
/* The first instant at which a node may be declared expired (UINT64_MAX: never, saturated), so that a
 * leader can wake up then instead of polling. With grace it is exactly the first instant
 * cv_lease_may_expire allows; without, the grace after the election is skipped (the leader this node
 * replaced: the grace only lets live nodes' renewals through, and that node is the one most likely
 * gone). Skipping it never weakens safety: a seen node still waits ttl + margin from seen; a node never
 * seen waits ttl + margin from since either way. */
uint64_t cv_lease_expires_at(uint64_t seen_ms, uint64_t since_ms, uint64_t ttl_ms, bool grace);

/* How long a new leader lets live nodes renew through it before it declares any of them dead: half a
 * TTL (renewals go every fifth of it). Not part of the safety argument. */
uint64_t cv_lease_grace(uint64_t ttl_ms);

/* Renewal period for a TTL: a fifth of it, so that a node survives a leader election (no commits for
 * the election's duration) plus a late renewal without fencing. */
uint64_t cv_lease_renew_interval(uint64_t ttl_ms);

/* Delay from wall-clock instant now_ms to the node's next renewal: the next multiple of interval on the
 * wall clock (at least CV_LEASE_ALIGN_MIN_MS ahead, else the one after). Every node renews at the same
 * instants, so the leader commits their renewals together in one or two entries per interval instead of
 * one per node (10 nodes: 7 entries/s instead of 70, each appended and fsynced on every member). Only an
 * optimisation: clocks that disagree just batch less; the lease rules never read the wall clock. */
#define CV_LEASE_ALIGN_MIN_MS 5u
uint64_t cv_lease_renew_delay(uint64_t now_ms, uint64_t interval);

/* ---- the node-side view of its own lease (cv_sm "lease-view") ----
 * NONE: never granted in this process; VALID: serving; SUSPECT: still serving but less than a third of
 * the TTL is left (renewals are late); FENCED: the window ran out (or the catalog declared us dead):
 * nothing may be served. Back to VALID only through a grant that is still fresh (its window not over);
 * after a revocation (declared dead) only a registration grants. */
enum cv_lease_state { CV_LEASE_NONE, CV_LEASE_VALID, CV_LEASE_SUSPECT, CV_LEASE_FENCED, CV_LEASE_N };

struct cv_lease {
    struct cv_sm sm;
    uint64_t ttl_ms, margin_ms;
    uint64_t valid_until_ms; /* end of the serving window; 0 = never granted */
    uint64_t fenced_at_ms;   /* FENCED: when the window ended (or the revocation) */
    bool revoked;            /* declared dead: only a registration grants again */
};

const struct cv_sm_conf *cv_lease_sm(void);
/* Starts in NONE. id: borrowed, for the machine's messages, valid while l is used. */
void cv_lease_init(struct cv_lease *l, uint64_t ttl_ms, const char *id);
/* A renewal (registration: a RegisterNode) proposed at sent_ms — read BEFORE it was sent — was applied;
 * now_ms: the time of the apply. Extends the window to sent + ttl - margin (never shortens it), then
 * re-evaluates at now. A stale grant (window already over) changes nothing; so does a renewal after a
 * revocation. Returns the state. */
enum cv_lease_state cv_lease_grant(struct cv_lease *l, uint64_t sent_ms, uint64_t now_ms, bool registration);
/* Our lease was declared dead (ExpireNode applied, or the catalog refused a renewal): FENCED now. */
enum cv_lease_state cv_lease_revoke(struct cv_lease *l, uint64_t now_ms);
/* Re-evaluates at now (VALID -> SUSPECT -> FENCED as time passes). Returns the state. */
enum cv_lease_state cv_lease_tick(struct cv_lease *l, uint64_t now_ms);
/* May the node serve at now? Checked with a fresh clock reading at every serving point, so that a node
 * that was stopped (SIGSTOP) does not serve before its timers noticed. */
bool cv_lease_serving(const struct cv_lease *l, uint64_t now_ms);
/* Ms from now until the next state change by time alone (0: none pending). */
uint64_t cv_lease_next_change(const struct cv_lease *l, uint64_t now_ms);
static inline enum cv_lease_state cv_lease_state(const struct cv_lease *l)
{
    return (enum cv_lease_state)cv_sm_state(&l->sm);
}

#endif
