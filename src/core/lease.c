/* Node lease rules (lease.h): the margin, the leader's rule for declaring a node dead, and the node's
 * own view of its lease as a state machine.
 *
 * Happy path: a node proposes a renewal every ttl/5 and reads its monotonic clock before sending; when
 * the renewal applies, its window runs to sent + ttl - margin (VALID). A leader declares a node dead only
 * once its own monotonic clock passed ttl + margin after it applied the node's latest renewal — applied
 * here, as leader or still as a follower, so a new leader does not wait a whole TTL from its election. The proof
 * that the node's window ends first is in docs/architecture.md ("Leases and liveness").
 * Failure modes: none (pure). Sums saturate so that a huge ttl or time errs towards "not expired" on the
 * leader; on the node a saturated window is simply long (the config bounds the TTL). */
#include "core/lease.h"

#include <stddef.h>

static uint64_t lease__add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

uint64_t cv_lease_margin(uint64_t ttl_ms)
{
    uint64_t drift = ttl_ms / (1000000u / CV_LEASE_DRIFT_PPM) + 1; /* rounded up */
    return lease__add_sat(drift, CV_LEASE_SLACK_MS);
}

uint64_t cv_lease_grace(uint64_t ttl_ms)
{
    return ttl_ms / 2;
}

bool cv_lease_may_expire(uint64_t seen_ms, uint64_t since_ms, uint64_t ttl_ms, uint64_t now_ms)
{
    uint64_t m = cv_lease_margin(ttl_ms);
    /* Only a node never seen applied here counts from leadership (its renewal may predate this run). */
    if (!seen_ms) return now_ms > lease__add_sat(lease__add_sat(since_ms, ttl_ms), m);
    /* seen was read at (or after) this process applied the node's latest renewal: later than its
     * proposal, whoever led then. Safety needs nothing more; the grace after our election is liveness:
     * renewals stalled by the election get through to us before we judge anyone. */
    return now_ms > lease__add_sat(lease__add_sat(seen_ms, ttl_ms), m) &&
           now_ms > lease__add_sat(since_ms, cv_lease_grace(ttl_ms));
}

uint64_t cv_lease_expires_at(uint64_t seen_ms, uint64_t since_ms, uint64_t ttl_ms, bool grace)
{
    uint64_t m = cv_lease_margin(ttl_ms), at;
    if (!seen_ms) {
        at = lease__add_sat(lease__add_sat(since_ms, ttl_ms), m);
    } else {
        uint64_t a = lease__add_sat(lease__add_sat(seen_ms, ttl_ms), m);
        uint64_t b = grace ? lease__add_sat(since_ms, cv_lease_grace(ttl_ms)) : 0;
        at = a > b ? a : b;
    }
    return lease__add_sat(at, 1); /* may_expire wants now strictly past both */
}

uint64_t cv_lease_renew_interval(uint64_t ttl_ms)
{
    uint64_t iv = ttl_ms / 5;
    return iv ? iv : 1; /* never 0: a zero period would spin the renewal timer */
}

uint64_t cv_lease_renew_delay(uint64_t now_ms, uint64_t interval)
{
    if (!interval) interval = 1;
    uint64_t d = interval - now_ms % interval;
    return d < CV_LEASE_ALIGN_MIN_MS && interval > CV_LEASE_ALIGN_MIN_MS ? d + interval : d;
}

/* ---- the node-side view ---- */

#define S(x) CV_SM_BIT(CV_LEASE_##x)
static const struct cv_sm_state lease__states[CV_LEASE_N] = {
    [CV_LEASE_NONE] = {"none", CV_SM_INITIAL | CV_SM_FINAL, S(VALID) | S(FENCED)},
    [CV_LEASE_VALID] = {"valid", CV_SM_FINAL, S(SUSPECT) | S(FENCED)},
    [CV_LEASE_SUSPECT] = {"suspect", CV_SM_FINAL, S(VALID) | S(FENCED)},
    [CV_LEASE_FENCED] = {"fenced", CV_SM_FINAL, S(VALID)},
};
#undef S
static const struct cv_sm_conf lease__conf = {"lease-view", lease__states, CV_LEASE_N};

const struct cv_sm_conf *cv_lease_sm(void)
{
    return &lease__conf;
}

/* Serving states have a window; a revoked lease is fenced. */
static const char *lease__invariant(const struct cv_sm *m, int prev)
{
    const struct cv_lease *l = (const struct cv_lease *)((const char *)m - offsetof(struct cv_lease, sm));
    if ((m->state == CV_LEASE_VALID || m->state == CV_LEASE_SUSPECT) && l->valid_until_ms == 0)
        return "serving without a granted window";
    if (l->revoked && m->state != CV_LEASE_FENCED) return "revoked but not fenced";
    return NULL;
}

void cv_lease_init(struct cv_lease *l, uint64_t ttl_ms, const char *id)
{
    l->ttl_ms = ttl_ms;
    l->margin_ms = cv_lease_margin(ttl_ms);
    l->valid_until_ms = 0;
    l->fenced_at_ms = 0;
    l->revoked = false;
    cv_sm_init(&l->sm, &lease__conf, CV_LEASE_NONE, lease__invariant, id);
}

/* The state the window says at now (for a lease that is not revoked). */
static enum cv_lease_state lease__due(const struct cv_lease *l, uint64_t now_ms)
{
    if (l->valid_until_ms == 0) return CV_LEASE_NONE;
    if (now_ms >= l->valid_until_ms) return CV_LEASE_FENCED;
    return l->valid_until_ms - now_ms < l->ttl_ms / 3 ? CV_LEASE_SUSPECT : CV_LEASE_VALID;
}

static void lease__move(struct cv_lease *l, enum cv_lease_state to, uint64_t now_ms)
{
    enum cv_lease_state s = cv_lease_state(l);
    if (to == s || to == CV_LEASE_NONE) return;
    if (to == CV_LEASE_SUSPECT && s != CV_LEASE_VALID) to = CV_LEASE_VALID; /* a fresh grant */
    if (to == CV_LEASE_FENCED) {
        /* The window's end, not the instant we noticed: nothing was served after it. */
        l->fenced_at_ms = l->valid_until_ms && l->valid_until_ms < now_ms ? l->valid_until_ms : now_ms;
    }
    cv_sm_move(&l->sm, to);
}

enum cv_lease_state cv_lease_tick(struct cv_lease *l, uint64_t now_ms)
{
    if (!l->revoked) lease__move(l, lease__due(l, now_ms), now_ms);
    return cv_lease_state(l);
}

enum cv_lease_state cv_lease_grant(struct cv_lease *l, uint64_t sent_ms, uint64_t now_ms, bool registration)
{
    if (l->revoked && !registration) return cv_lease_state(l);
    uint64_t until = lease__add_sat(sent_ms, l->ttl_ms > l->margin_ms ? l->ttl_ms - l->margin_ms : 0);
    if (until <= now_ms) return cv_lease_tick(l, now_ms); /* stale: its window is already over */
    if (until > l->valid_until_ms) l->valid_until_ms = until;
    l->revoked = false;
    return cv_lease_tick(l, now_ms);
}

enum cv_lease_state cv_lease_revoke(struct cv_lease *l, uint64_t now_ms)
{
    l->revoked = true;
    l->valid_until_ms = l->valid_until_ms < now_ms ? l->valid_until_ms : now_ms;
    if (cv_lease_state(l) != CV_LEASE_FENCED) {
        l->fenced_at_ms = now_ms;
        cv_sm_move(&l->sm, CV_LEASE_FENCED);
    }
    return CV_LEASE_FENCED;
}

bool cv_lease_serving(const struct cv_lease *l, uint64_t now_ms)
{
    enum cv_lease_state s = cv_lease_state(l);
    return (s == CV_LEASE_VALID || s == CV_LEASE_SUSPECT) && now_ms < l->valid_until_ms;
}

uint64_t cv_lease_next_change(const struct cv_lease *l, uint64_t now_ms)
{
    enum cv_lease_state s = cv_lease_state(l);
    if (s != CV_LEASE_VALID && s != CV_LEASE_SUSPECT) return 0;
    if (now_ms >= l->valid_until_ms) return 1;
    uint64_t left = l->valid_until_ms - now_ms, third = l->ttl_ms / 3;
    return s == CV_LEASE_VALID && left > third ? left - third : left;
}
