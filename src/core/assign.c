/* Shard assignment: maps every shard to an eligible node, balanced and with as few moves as possible;
 * some shards may be fixed to a node (an operator's target or pin, decided by the leader).
 *
 * Happy path, O(shards + n_nodes log shards) time, no heap allocation:
 *   1. count per eligible node the shards fixed to it (F_i) and the unfixed shards it owns now (c_i);
 *   2. quotas of unfixed shards by water-filling (assign__quotas): every eligible node's load F_i + u_i
 *      reaches a common level L where it can (a node with F_i > L gets no unfixed shard), the remainder
 *      gives +1s to the nodes that would keep most by them. Without fixed shards that is q = S / L,
 *      r = S % L, the +1s to the nodes holding the most shards (ties: lower index). The choice
 *      maximises the shards that stay, so the moves are the minimum any balanced result needs;
 *   3. in shard order, a fixed shard goes to its fixed owner; an unfixed one stays if its owner is
 *      eligible and still under quota; otherwise it is an orphan (owner ineligible, none, out of range,
 *      or over quota: the highest-numbered shards of an over-quota node are the ones that leave);
 *   4. orphans, in shard order, fill the under-quota nodes in node-index order.
 * Every step is deterministic, so every replica computing this from the same map agrees.
 * Failure modes: none. With no eligible node every shard becomes CV_ASSIGN_NONE. Scratch space is four
 * stack arrays of n_nodes entries (20 bytes a node), so n_nodes is capped at ASSIGN_MAX_NODES: nodes at
 * or past the cap are treated as not eligible (20 KiB of stack at most).
 *
 * cv_assign_handoff filters that target per shard by the shard's lifecycle state (core/shard.h,
 * cv_shard_step): a shard leaving a live owner is first unassigned, and an unassigned shard whose
 * previous live owner has not released it yet stays so. */
#include "core/assign.h"

#include <stdbool.h>
#include <stddef.h>

#include "core/shard.h"

#define ASSIGN_MAX_NODES 1024u

/* Per-node counts the quotas are computed from (n_nodes entries each, on the caller's stack). */
struct assign__scratch {
    uint32_t *count; /* unfixed shards the node owns now (eligible nodes only) */
    uint32_t *fixed; /* shards fixed to the node */
};

static bool assign__owned_by_live(int32_t o, const uint8_t *live, uint32_t n_nodes)
{
    return o >= 0 && (uint32_t)o < n_nodes && live[o];
}

static void assign__sift_down(uint64_t *a, uint32_t root, uint32_t n)
{
    for (;;) {
        uint32_t child = 2 * root + 1;
        if (child >= n) return;
        if (child + 1 < n && a[child + 1] > a[child]) child++;
        if (a[root] >= a[child]) return;
        uint64_t t = a[root];
        a[root] = a[child];
        a[child] = t;
        root = child;
    }
}

/* In-place heapsort, ascending: O(n log n), no allocation (qsort may malloc). */
static void assign__sort(uint64_t *a, uint32_t n)
{
    for (uint32_t i = n / 2; i-- > 0;)
        assign__sift_down(a, i, n);
    for (uint32_t end = n; end-- > 1;) {
        uint64_t t = a[0];
        a[0] = a[end];
        a[end] = t;
        assign__sift_down(a, 0, end);
    }
}

/* Unfixed quotas by water-filling: the final load of an eligible node i is max(F_i, level), with the
 * level L as high as the U unfixed shards allow (sum of max(0, L - F_i) <= U); the R shards left over
 * raise R of the nodes at or under L by one more. A +1 is only worth a kept shard to a node whose
 * current unfixed count c_i exceeds its base quota L - F_i, so the +1s go to the largest surplus
 * c_i - (L - F_i) (ties: lower index). This choice maximises sum(min(c_i, quota_i)), i.e. the shards that
 * stay, so the moves are the minimum any balanced result needs. The sort key packs (surplus desc,
 * index asc) into one integer so an ascending sort yields exactly that order. Without fixed shards this
 * is q = S / L and r = S % L +1s to the nodes holding the most (the unconstrained rule). */
static void assign__quotas(const struct assign__scratch *w, const uint8_t *elig, uint32_t n_nodes,
                           uint32_t unfixed, uint32_t *quota)
{
    uint64_t key[n_nodes];
    uint32_t lo = 0, hi = unfixed, k = 0;

    for (uint32_t i = 0; i < n_nodes; i++) /* the level never passes unfixed + the least fixed load */
        if (elig[i] && w->fixed[i] > hi - unfixed) hi = unfixed + w->fixed[i];

    while (lo < hi) { /* the highest level whose fill fits in the unfixed shards */
        uint32_t mid = lo + (hi - lo + 1) / 2;
        uint64_t need = 0;
        for (uint32_t i = 0; i < n_nodes; i++)
            if (elig[i] && w->fixed[i] < mid) need += mid - w->fixed[i];
        if (need <= unfixed)
            lo = mid;
        else
            hi = mid - 1;
    }
    uint32_t left = unfixed;
    for (uint32_t i = 0; i < n_nodes; i++) {
        quota[i] = elig[i] && w->fixed[i] < lo ? lo - w->fixed[i] : 0;
        left -= quota[i];
        if (elig[i] && w->fixed[i] <= lo) {
            int64_t surplus = (int64_t)w->count[i] - quota[i];
            if (surplus > INT32_MAX) surplus = INT32_MAX; /* only the order matters: clamp into 32 bits */
            if (surplus < -INT32_MAX) surplus = -INT32_MAX;
            key[k++] = ((uint64_t)((int64_t)INT32_MAX - surplus) << 32) | i;
        }
    }
    assign__sort(key, k);
    for (uint32_t j = 0; j < left && j < k; j++) /* left < k: else the level would be one higher */
        quota[(uint32_t)key[j]]++;
}

/* The fixed owner of shard s, if it is an eligible node; else CV_ASSIGN_NONE (balanced). */
static int32_t assign__fixed_of(const int32_t *fixed, uint32_t s, const uint8_t *elig, uint32_t n_nodes)
{
    return fixed && assign__owned_by_live(fixed[s], elig, n_nodes) ? fixed[s] : CV_ASSIGN_NONE;
}

/* Step 3: fixed shards go to their fixed owner; the others stay if their owner is eligible and under
 * its quota (lowest-numbered shards first), else they are orphans (CV_ASSIGN_NONE in out). kept[] gets
 * the per-node kept counts. Returns the shards changed so far (fixed moves + orphans). */
static uint32_t assign__keep(const int32_t *cur, const int32_t *fixed, uint32_t shards, const uint8_t *elig,
                             uint32_t n_nodes, const uint32_t *quota, uint32_t *kept, int32_t *out)
{
    uint32_t changed = 0;

    for (uint32_t i = 0; i < n_nodes; i++)
        kept[i] = 0;
    for (uint32_t s = 0; s < shards; s++) {
        int32_t o = cur[s], f = assign__fixed_of(fixed, s, elig, n_nodes); /* before writing: aliasing */
        if (f != CV_ASSIGN_NONE) {
            out[s] = f;
            changed += f != o;
        } else if (assign__owned_by_live(o, elig, n_nodes) && kept[o] < quota[o]) {
            kept[o]++;
            out[s] = o;
        } else {
            out[s] = CV_ASSIGN_NONE;
            changed++;
        }
    }
    return changed;
}

/* Step 4. The quotas sum to the unfixed shards, so there is exactly one free slot per orphan and n
 * never runs past the end; an orphan never returns to its old owner (that owner was ineligible or
 * already full). Only unfixed orphans are CV_ASSIGN_NONE here: fixed owners are eligible nodes. */
static void assign__place_orphans(int32_t *out, uint32_t shards, uint32_t n_nodes, const uint32_t *quota,
                                  uint32_t *kept)
{
    uint32_t n = 0;

    for (uint32_t s = 0; s < shards; s++) {
        if (out[s] != CV_ASSIGN_NONE) continue;
        while (n < n_nodes && kept[n] >= quota[n])
            n++;
        if (n == n_nodes) return; /* unreachable: sum(quota) == unfixed shards */
        out[s] = (int32_t)n;
        kept[n]++;
    }
}

/* No eligible node: fixed shards have none either (a fixed owner must be eligible), so nothing may own
 * a shard. */
static uint32_t assign__clear(const int32_t *cur, uint32_t shards, int32_t *out)
{
    uint32_t moved = 0;
    for (uint32_t s = 0; s < shards; s++) {
        moved += cur[s] != CV_ASSIGN_NONE;
        out[s] = CV_ASSIGN_NONE;
    }
    return moved;
}

uint32_t cv_assign_constrained(const int32_t *cur, const int32_t *fixed, uint32_t shards, const uint8_t *elig,
                               uint32_t n_nodes, int32_t *out)
{
    uint32_t n_elig = 0, unfixed = shards;

    if (n_nodes > ASSIGN_MAX_NODES) n_nodes = ASSIGN_MAX_NODES;
    for (uint32_t i = 0; i < n_nodes; i++)
        n_elig += elig[i] != 0;
    if (n_elig == 0) return assign__clear(cur, shards, out);

    uint32_t count[n_nodes], fcount[n_nodes], quota[n_nodes];
    struct assign__scratch w = {count, fcount};
    for (uint32_t i = 0; i < n_nodes; i++)
        count[i] = fcount[i] = 0;
    for (uint32_t s = 0; s < shards; s++) {
        int32_t f = assign__fixed_of(fixed, s, elig, n_nodes);
        if (f != CV_ASSIGN_NONE) {
            fcount[f]++;
            unfixed--;
        } else if (assign__owned_by_live(cur[s], elig, n_nodes)) {
            count[cur[s]]++;
        }
    }

    assign__quotas(&w, elig, n_nodes, unfixed, quota);
    uint32_t moved = assign__keep(cur, fixed, shards, elig, n_nodes, quota, count, out);
    assign__place_orphans(out, shards, n_nodes, quota, count);
    return moved;
}

uint32_t cv_assign_shards(const int32_t *cur, uint32_t shards, const uint8_t *live, uint32_t n_nodes,
                          int32_t *out)
{
    return cv_assign_constrained(cur, NULL, shards, live, n_nodes, out);
}

/* The shard's state as far as the handoff sees it: an owner, and a node that has not confirmed its
 * release yet (waiting), each live or not. */
static enum cv_shard_state assign__state(int32_t cur, int32_t waiting, const uint8_t *live, uint32_t n_nodes)
{
    struct cv_shard_view v = {
        .owner = cur != CV_ASSIGN_NONE,
        .owner_live = assign__owned_by_live(cur, live, n_nodes),
        .epoch = 1, /* waiting means "not confirmed": released_epoch != epoch */
        .released_by = waiting != CV_ASSIGN_NONE,
        .releaser_live = assign__owned_by_live(waiting, live, n_nodes),
    };
    return cv_shard_state(&v);
}

uint32_t cv_assign_handoff(const int32_t *cur, const int32_t *next, const int32_t *waiting, uint32_t shards,
                           const uint8_t *live, uint32_t n_nodes, int32_t *out)
{
    uint32_t changed = 0;

    if (n_nodes > ASSIGN_MAX_NODES) n_nodes = ASSIGN_MAX_NODES;
    for (uint32_t s = 0; s < shards; s++) {
        int32_t o = next[s]; /* read before writing: out may alias next */
        if (o != cur[s]) {
            switch (cv_shard_step(assign__state(cur[s], waiting[s], live, n_nodes))) {
            case CV_SHARD_STEP_RELEASE: o = CV_ASSIGN_NONE; break; /* phase 1: the live owner releases */
            case CV_SHARD_STEP_WAIT: o = cur[s]; break;            /* a live node still releases it */
            case CV_SHARD_STEP_ASSIGN: break;
            }
        }
        out[s] = o;
        changed += o != cur[s];
    }
    return changed;
}
