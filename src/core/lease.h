/* Node lease rules (pure): when a lease counts as expired, when to renew. Times are ms on the
 * leader's monotonic-ish wall clock (CLOCK_REALTIME ms, replicated inside commands). */
#ifndef CV_CORE_LEASE_H
#define CV_CORE_LEASE_H

#include <stdbool.h>
#include <stdint.h>

/* A node's lease may be declared expired by a leader only when now is past both the recorded expiry
 * and leader_since + ttl: a new leader first gives every node one full TTL to renew through it,
 * because renewals could not commit while there was no leader. */
bool cv_lease_expired(uint64_t expiry_ms, uint64_t leader_since_ms, uint64_t ttl_ms, uint64_t now_ms);

/* Renewal period for a TTL: a third of it, so two renewals may be lost before expiry. */
uint64_t cv_lease_renew_interval(uint64_t ttl_ms);

#endif
