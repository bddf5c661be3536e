/* Per-client request rate limits: token buckets keyed by client (pure: callers pass the time, no I/O). */
#ifndef CV_CORE_RATELIMIT_H
#define CV_CORE_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A rate: per_sec requests per second on average, bursts of up to burst at once. Both >= 1. */
struct cv_rate {
    uint32_t per_sec;
    uint32_t burst;
};

/* One token bucket. Tokens are counted in thousandths so that a refill over a few milliseconds is exact
 * in integers. */
struct cv_bucket {
    uint64_t milli;   /* tokens * 1000, at most burst * 1000 */
    uint64_t last_ms; /* time of the last refill */
};

/* A full bucket at now_ms. */
void cv_bucket_init(struct cv_bucket *b, const struct cv_rate *r, uint64_t now_ms);
/* Takes one token: 0 when there was one, else the milliseconds until one will be there (>= 1); the
 * bucket is then unchanged apart from its refill. A clock going backwards counts as no time passing. */
uint64_t cv_bucket_take(struct cv_bucket *b, const struct cv_rate *r, uint64_t now_ms);
/* Whether the bucket refilled completely by now_ms (it then carries no state worth keeping). */
bool cv_bucket_full(struct cv_bucket *b, const struct cv_rate *r, uint64_t now_ms);

/* Buckets keyed by a client name (a peer address, later an authenticated user), created on first use.
 * At most max_clients buckets are kept: full ones are dropped by cv_ratelimit_sweep, and a new client
 * over the cap is let through unlimited (counted in overflow) rather than making another client wait. */
struct cv_ratelimit;

/* CV_EINVAL (a rate of 0), CV_ENOMEM. max_clients 0: 65536. Free with cv_ratelimit_free. */
int cv_ratelimit_new(const struct cv_rate *r, size_t max_clients, struct cv_ratelimit **out);
void cv_ratelimit_free(struct cv_ratelimit *rl);
/* One request of client key (copied) at now_ms: 0 when allowed, else the milliseconds until the client may
 * try again (>= 1). Out of memory: allowed. */
uint64_t cv_ratelimit_take(struct cv_ratelimit *rl, const char *key, uint64_t now_ms);
/* Drops the buckets that refilled completely; returns how many are left. */
size_t cv_ratelimit_sweep(struct cv_ratelimit *rl, uint64_t now_ms);
/* New clients let through because the table was full. */
uint64_t cv_ratelimit_overflow(const struct cv_ratelimit *rl);

#endif
