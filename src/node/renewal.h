/* The node's own lease as an explicit state machine: whether this process is registered in the catalog
 * and whether a RegisterNode / RenewLease proposal is in flight. Pure: node.c proposes, this decides. */
#ifndef CV_NODE_RENEWAL_H
#define CV_NODE_RENEWAL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/sm.h"

/* UNREGISTERED: not registered in this process' life (or the catalog lost us); EXPIRED: our lease was
 * declared dead while we live (we come back as a new incarnation); REGISTERING: a proposal in flight
 * while not registered; REGISTERED: our last renewal applied, none in flight; RENEWING: registered, a
 * renewal in flight; STOPPED: the node is stopping, nothing more is proposed. The coming fencing work
 * adds states here (e.g. a lease that ran out locally before the leader declared it). */
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
    uint64_t last_ok_ms; /* monotonic time of the last applied renewal; 0 before the first */
};

/* The machine's definition (for tests: cv_sm_conf_check, cv_sm_allowed). */
const struct cv_sm_conf *cv_renewal_sm(void);

/* Starts unregistered. node_id: borrowed (named in the state machine's messages), valid until r is no
 * longer used. */
void cv_renewal_init(struct cv_renewal *r, const char *node_id);
static inline enum cv_renewal_state cv_renewal_state(const struct cv_renewal *r)
{
    return (enum cv_renewal_state)cv_sm_state(&r->sm);
}
/* Registered in the catalog by this process (REGISTERED or RENEWING). */
bool cv_renewal_registered(const struct cv_renewal *r);

/* Whether to propose now: false while a proposal is in flight or stopped. Else *register_node says
 * which command (RegisterNode when not registered or when the catalog lacks us: in_catalog false). */
bool cv_renewal_due(const struct cv_renewal *r, bool in_catalog, bool *register_node);
/* The proposal decided by cv_renewal_due was accepted by the consensus: now in flight. */
void cv_renewal_sent(struct cv_renewal *r);
/* Its outcome: 0 applied (now_ms: monotonic), CV_ENOTFOUND (the catalog lost us: register again), any
 * other code (a failed renewal: the state it had before). Ignored when stopped. */
void cv_renewal_done(struct cv_renewal *r, int status, uint64_t now_ms);
/* Our ExpireNode was applied (declared dead while alive). Returns true if a renewal should start now. */
bool cv_renewal_expired(struct cv_renewal *r);
/* The node stops: no more proposals. */
void cv_renewal_stop(struct cv_renewal *r);

#endif
