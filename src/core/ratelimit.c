/* Token buckets for per-client rate limits (core/ratelimit.h).
 *
 * Happy path: a client's first request creates its bucket full (burst tokens); every request takes one
 * token; tokens come back at per_sec per second, in thousandths, so that frequent small refills do not
 * round away. A request finding no token is refused with the time until the next one, which the HTTP
 * server sends as Retry-After.
 *
 * Failure modes: a clock going backwards refills nothing (no negative elapsed time). The table is bounded
 * (max_clients): buckets that refilled completely carry no state and are dropped by the sweep; a new
 * client arriving while the table is full is let through and counted, so that a flood of addresses
 * cannot make the table grow without bound nor lock out clients already known. */
#include "core/ratelimit.h"

#include <stdlib.h>
#include <string.h>

#include <uthash.h>

#include "cverse/error.h"

#define RL__DEFAULT_MAX 65536u

struct rl__client {
    struct cv_bucket b;
    UT_hash_handle hh;
    char key[]; /* NUL-terminated */
};

struct cv_ratelimit {
    struct cv_rate rate;
    size_t max;
    size_t n;
    uint64_t overflow;
    struct rl__client *clients;
};

static void bucket__refill(struct cv_bucket *b, const struct cv_rate *r, uint64_t now_ms)
{
    uint64_t cap = (uint64_t)r->burst * 1000u;
    if (now_ms > b->last_ms) {
        uint64_t add = (now_ms - b->last_ms) * (uint64_t)r->per_sec; /* per_sec/1000 tokens per ms */
        b->milli = add >= cap - b->milli ? cap : b->milli + add;
        b->last_ms = now_ms;
    }
    if (b->milli > cap) b->milli = cap; /* the rate changed under us */
}

void cv_bucket_init(struct cv_bucket *b, const struct cv_rate *r, uint64_t now_ms)
{
    b->milli = (uint64_t)r->burst * 1000u;
    b->last_ms = now_ms;
}

uint64_t cv_bucket_take(struct cv_bucket *b, const struct cv_rate *r, uint64_t now_ms)
{
    bucket__refill(b, r, now_ms);
    if (b->milli >= 1000u) {
        b->milli -= 1000u;
        return 0;
    }
    uint64_t missing = 1000u - b->milli;
    return (missing + r->per_sec - 1) / r->per_sec; /* ceil: trying again then finds a whole token */
}

bool cv_bucket_full(struct cv_bucket *b, const struct cv_rate *r, uint64_t now_ms)
{
    bucket__refill(b, r, now_ms);
    return b->milli >= (uint64_t)r->burst * 1000u;
}

int cv_ratelimit_new(const struct cv_rate *r, size_t max_clients, struct cv_ratelimit **out)
{
    if (!r || !r->per_sec || !r->burst || !out) return CV_EINVAL;
    struct cv_ratelimit *rl = calloc(1, sizeof *rl);
    if (!rl) return CV_ENOMEM;
    rl->rate = *r;
    rl->max = max_clients ? max_clients : RL__DEFAULT_MAX;
    *out = rl;
    return 0;
}

void cv_ratelimit_free(struct cv_ratelimit *rl)
{
    if (!rl) return;
    struct rl__client *c, *tmp;
    HASH_ITER(hh, rl->clients, c, tmp) {
        HASH_DEL(rl->clients, c);
        free(c);
    }
    free(rl);
}

uint64_t cv_ratelimit_take(struct cv_ratelimit *rl, const char *key, uint64_t now_ms)
{
    struct rl__client *c;
    HASH_FIND_STR(rl->clients, key, c);
    if (!c) {
        if (rl->n >= rl->max) {
            rl->overflow++;
            return 0;
        }
        size_t len = strlen(key);
        if (!(c = malloc(sizeof *c + len + 1))) return 0;
        memcpy(c->key, key, len + 1);
        cv_bucket_init(&c->b, &rl->rate, now_ms);
        HASH_ADD(hh, rl->clients, key[0], len, c);
        rl->n++;
    }
    return cv_bucket_take(&c->b, &rl->rate, now_ms);
}

size_t cv_ratelimit_sweep(struct cv_ratelimit *rl, uint64_t now_ms)
{
    struct rl__client *c, *tmp;
    HASH_ITER(hh, rl->clients, c, tmp) {
        if (!cv_bucket_full(&c->b, &rl->rate, now_ms)) continue;
        HASH_DEL(rl->clients, c);
        free(c);
        rl->n--;
    }
    return rl->n;
}

uint64_t cv_ratelimit_overflow(const struct cv_ratelimit *rl)
{
    return rl->overflow;
}
