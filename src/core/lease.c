/* Node lease rules: when a leader may declare a node's lease expired, and how often a node renews.
 *
 * Pure arithmetic, no failure modes. Sums saturate instead of wrapping so that a huge ttl or
 * leader_since (e.g. a corrupt record) errs on the side of "not expired" rather than expiring everyone. */
#include "core/lease.h"

static uint64_t lease__add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

bool cv_lease_expired(uint64_t expiry_ms, uint64_t leader_since_ms, uint64_t ttl_ms, uint64_t now_ms)
{
    /* Grace: renewals could not commit while there was no leader, so nobody expires during the new
     * leader's first TTL even if their recorded expiry is long past. */
    uint64_t grace_end = lease__add_sat(leader_since_ms, ttl_ms);
    return now_ms > expiry_ms && now_ms > grace_end;
}

uint64_t cv_lease_renew_interval(uint64_t ttl_ms)
{
    uint64_t iv = ttl_ms / 3;
    return iv ? iv : 1; /* never 0: a zero period would spin the renewal timer */
}
