/* The node's lease state machine (renewal.h). node.c asks cv_renewal_due every ttl/5 (and when a leader
 * appears), sends what it names — a RegisterNode proposal, or a lease.renew call to the raft leader
 * (consensus/leases.h: renewals are no log entries) — and reports the outcome.
 *
 * Happy path: UNREGISTERED -> REGISTERING (RegisterNode) -> REGISTERED -> RENEWING (lease.renew) ->
 * REGISTERED ...; every applied registration or granted renewal gives the lease view a window from the
 * instant it was sent.
 * Failure modes: a failed renewal keeps the registration (the next tick tries again; the window lasts
 * ttl - margin from the last granted one, then the node is FENCED); CV_ENOTFOUND means the catalog lost
 * us (restored from an older state): UNREGISTERED; our own ExpireNode applied: fenced, EXPIRED and
 * re-register at once (or REGISTERING when a proposal is still in flight); a renewal refused because we
 * were declared dead (CV_ECONFLICT: a dead node is never revived by a renewal): EXPIRED. */
#include "node/renewal.h"

#include <stddef.h>

#include "cverse/error.h"

#define S(x) CV_SM_BIT(CV_RENEWAL_##x)
static const struct cv_sm_state renewal__states[CV_RENEWAL_N] = {
    [CV_RENEWAL_UNREGISTERED] = {"unregistered", CV_SM_INITIAL, S(REGISTERING) | S(STOPPED)},
    [CV_RENEWAL_EXPIRED] = {"expired", 0, S(REGISTERING) | S(STOPPED)},
    [CV_RENEWAL_REGISTERING] = {"registering", 0,
                                S(REGISTERED) | S(UNREGISTERED) | S(EXPIRED) | S(STOPPED)},
    [CV_RENEWAL_REGISTERED] = {"registered", 0, S(RENEWING) | S(EXPIRED) | S(STOPPED)},
    [CV_RENEWAL_RENEWING] = {"renewing", 0,
                             S(REGISTERED) | S(UNREGISTERED) | S(REGISTERING) | S(EXPIRED) | S(STOPPED)},
    [CV_RENEWAL_STOPPED] = {"stopped", CV_SM_FINAL, 0},
};
#undef S
static const struct cv_sm_conf renewal__conf = {"lease", renewal__states, CV_RENEWAL_N};

const struct cv_sm_conf *cv_renewal_sm(void)
{
    return &renewal__conf;
}

/* Registered states have seen a renewal applied. */
static const char *renewal__invariant(const struct cv_sm *m, int prev)
{
    const struct cv_renewal *r = (const struct cv_renewal *)((const char *)m - offsetof(struct cv_renewal, sm));
    if ((m->state == CV_RENEWAL_REGISTERED || m->state == CV_RENEWAL_RENEWING) && r->last_ok_ms == 0)
        return "registered without an applied renewal";
    return NULL;
}

void cv_renewal_init(struct cv_renewal *r, const char *node_id, uint64_t ttl_ms)
{
    r->last_ok_ms = r->sent_ms = 0;
    r->sent_register = false;
    cv_lease_init(&r->lease, ttl_ms, node_id);
    cv_sm_init(&r->sm, &renewal__conf, CV_RENEWAL_UNREGISTERED, renewal__invariant, node_id);
}

bool cv_renewal_registered(const struct cv_renewal *r)
{
    int s = cv_sm_state(&r->sm);
    return s == CV_RENEWAL_REGISTERED || s == CV_RENEWAL_RENEWING;
}

bool cv_renewal_due(const struct cv_renewal *r, bool in_catalog, bool *register_node)
{
    int s = cv_sm_state(&r->sm);
    if (s == CV_RENEWAL_REGISTERING || s == CV_RENEWAL_RENEWING || s == CV_RENEWAL_STOPPED) return false;
    *register_node = s != CV_RENEWAL_REGISTERED || !in_catalog;
    return true;
}

void cv_renewal_sent(struct cv_renewal *r, bool register_node, uint64_t sent_ms)
{
    r->sent_ms = sent_ms;
    r->sent_register = register_node;
    cv_sm_move(&r->sm, cv_sm_state(&r->sm) == CV_RENEWAL_REGISTERED ? CV_RENEWAL_RENEWING : CV_RENEWAL_REGISTERING);
}

void cv_renewal_done(struct cv_renewal *r, int status, uint64_t now_ms)
{
    int s = cv_sm_state(&r->sm);
    if (s == CV_RENEWAL_STOPPED) return;
    if (status == 0) {
        r->last_ok_ms = now_ms ? now_ms : 1;
        cv_lease_grant(&r->lease, r->sent_ms, now_ms, r->sent_register);
        /* A registration that applied too late to open a window, after our ExpireNode revoked the lease
         * (a restarted node racing its previous process' expiry): no renewal can lift the revocation
         * (cv_lease_grant), so register again rather than stay fenced while the catalog says alive. */
        cv_sm_move(&r->sm, r->lease.revoked ? CV_RENEWAL_UNREGISTERED : CV_RENEWAL_REGISTERED);
    } else if (status == CV_ECONFLICT && !r->sent_register) {
        cv_lease_revoke(&r->lease, now_ms); /* declared dead before our renewal committed */
        cv_sm_move(&r->sm, CV_RENEWAL_EXPIRED);
    } else if (status == CV_ENOTFOUND) {
        cv_sm_move(&r->sm, CV_RENEWAL_UNREGISTERED);
    } else {
        cv_sm_move(&r->sm, s == CV_RENEWAL_RENEWING ? CV_RENEWAL_REGISTERED : CV_RENEWAL_UNREGISTERED);
    }
}

bool cv_renewal_expired(struct cv_renewal *r, uint64_t now_ms)
{
    if (cv_sm_state(&r->sm) != CV_RENEWAL_STOPPED) cv_lease_revoke(&r->lease, now_ms);
    switch (cv_sm_state(&r->sm)) {
    case CV_RENEWAL_REGISTERED: cv_sm_move(&r->sm, CV_RENEWAL_EXPIRED); return true;
    case CV_RENEWAL_RENEWING: cv_sm_move(&r->sm, CV_RENEWAL_REGISTERING); return false;
    case CV_RENEWAL_UNREGISTERED:
    case CV_RENEWAL_EXPIRED: return true; /* not registered: register now */
    default: return false; /* REGISTERING (in flight), STOPPED */
    }
}

void cv_renewal_stop(struct cv_renewal *r)
{
    if (cv_sm_state(&r->sm) != CV_RENEWAL_STOPPED) cv_sm_move(&r->sm, CV_RENEWAL_STOPPED);
    cv_sm_fini(&r->sm);
}
