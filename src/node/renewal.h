/* The node's own lease as two explicit state machines: the registration (whether this process is
 * registered in the catalog, whether a RegisterNode proposal or a lease.renew call is in flight) and, embedded,
 * the serving window those proposals grant (core/lease.h: VALID / SUSPECT / FENCED). Pure: node.c
 * proposes and fences, this decides. */
#ifndef CV_NODE_RENEWAL_H
#define CV_NODE_RENEWAL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/lease.h"
#include "core/sm.h"

/* UNREGISTERED: not registered in this process' life (or the catalog lost us); EXPIRED: our lease was
 * declared dead while we live (we come back as a new incarnation); REGISTERING: a proposal in flight
 * while not registered; REGISTERED: our last renewal granted, none in flight; RENEWING: registered, a
 * renewal in flight; STOPPED: the node is stopping, nothing more is proposed. Whether the node may
 * serve is the embedded lease view's business (lease): a registration says nothing about time, the
 * window does. A lease that ran out locally before the leader declared it is FENCED there while this
 * machine stays REGISTERED (renewals go on and unfence it if they are still welcome). A renewal the
 * catalog refuses because we were declared dead meanwhile (CV_ECONFLICT) makes us EXPIRED. */
enum cv_renewal_state {
    CV_RENEWAL_UNREGISTERED,
    CV_RENEWAL_EXPIRED,
    CV_RENEWAL_REGISTERING,
    CV_RENEWAL_REGISTERED,
    CV_RENEWAL_RENEWING,
    CV_RENEWAL_STOPPED,
    CV_RENEWAL_N
};

struct cv_renewal {
    struct cv_sm sm;
    uint64_t last_ok_ms; /* monotonic time of the last granted renewal; 0 before the first */
    uint64_t sent_ms;    /* monotonic time read before the proposal in flight was sent */
    bool sent_register;  /* the proposal in flight is a RegisterNode */
    struct cv_lease lease; /* the serving window */
};

/* The machine's definition (for tests: cv_sm_conf_check, cv_sm_allowed). */
const struct cv_sm_conf *cv_renewal_sm(void);

/* Starts unregistered, with no window. node_id: borrowed (named in the state machines' messages), valid
 * until r is no longer used. ttl_ms: cluster.lease_ttl_ms. */
void cv_renewal_init(struct cv_renewal *r, const char *node_id, uint64_t ttl_ms);
static inline enum cv_renewal_state cv_renewal_state(const struct cv_renewal *r)
{
    return (enum cv_renewal_state)cv_sm_state(&r->sm);
}
/* Registered in the catalog by this process (REGISTERED or RENEWING). */
bool cv_renewal_registered(const struct cv_renewal *r);

/* Whether to propose now: false while a proposal is in flight or stopped. Else *register_node says
 * which command (RegisterNode when not registered or when the catalog lacks us: in_catalog false). */
bool cv_renewal_due(const struct cv_renewal *r, bool in_catalog, bool *register_node);
/* The proposal decided by cv_renewal_due (register_node: which one) was accepted by the consensus: now
 * in flight. sent_ms: the monotonic time read BEFORE proposing (the window counts from it). */
void cv_renewal_sent(struct cv_renewal *r, bool register_node, uint64_t sent_ms);
/* Its outcome: 0 applied or granted (now_ms: monotonic; the window grows to sent + ttl - margin), CV_ENOTFOUND (the
 * catalog lost us: register again), CV_ECONFLICT for a renewal (declared dead meanwhile: EXPIRED, fenced,
 * register again now), any other code (a failed renewal: the state it had before). Ignored when
 * stopped. */
void cv_renewal_done(struct cv_renewal *r, int status, uint64_t now_ms);
/* Our ExpireNode was applied (declared dead while alive): fenced at once. Returns true if a renewal
 * should start now. */
bool cv_renewal_expired(struct cv_renewal *r, uint64_t now_ms);
/* The window re-evaluated at now (VALID -> SUSPECT -> FENCED). */
static inline enum cv_lease_state cv_renewal_tick(struct cv_renewal *r, uint64_t now_ms)
{
    return cv_lease_tick(&r->lease, now_ms);
}
/* May the node serve at now (a fresh clock reading)? */
static inline bool cv_renewal_serving(const struct cv_renewal *r, uint64_t now_ms)
{
    return cv_lease_serving(&r->lease, now_ms);
}
/* The node stops: no more proposals. */
void cv_renewal_stop(struct cv_renewal *r);

#endif
