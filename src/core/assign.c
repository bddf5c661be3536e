/* Shard assignment: maps every shard to a live node, balanced and with as few moves as possible.
 *
 * Happy path, O(shards + n_nodes log n_nodes) time, no heap allocation:
 *   1. count the shards each live node owns now;
 *   2. quotas: with L live nodes every node gets q = shards / L and r = shards % L of them get q + 1.
 *      A +1 is only worth a kept shard to a node that already holds more than q, so the +1s go to the
 *      nodes holding the most shards (ties: lower index). This choice maximises sum(min(count, quota)),
 *      i.e. the number of shards that stay, so the moves are the minimum any balanced result needs;
 *   3. in shard order, a shard stays if its owner is live and still under quota; otherwise it is an
 *      orphan (owner dead, none, out of range, or over quota: the highest-numbered shards of an
 *      over-quota node are the ones that leave);
 *   4. orphans, in shard order, fill the under-quota nodes in node-index order.
 * Every step is deterministic, so every replica computing this from the same map agrees.
 * Failure modes: none. With no live node every shard becomes CV_ASSIGN_NONE. Scratch space is three
 * stack arrays of n_nodes entries (16 bytes a node), so n_nodes is capped at ASSIGN_MAX_NODES: nodes at
 * or past the cap are treated as not live (16 KiB of stack at most)..
 *
 * cv_assign_handoff filters that target per shard by the shard's lifecycle state (core/shard.h,
 * cv_shard_step): a shard leaving a live owner is first unassigned, and an unassigned shard whose
 * previous live owner has not released it yet stays so. */
#include "core/assign.h"

#include <stdbool.h>

#include "core/shard.h"

#define ASSIGN_MAX_NODES 1024u

static bool assign__owned_by_live(int32_t o, const uint8_t *live, uint32_t n_nodes)
{
    return o >= 0 && (uint32_t)o < n_nodes && live[o];
}

/* No live node: nothing may own a shard. */
static uint32_t assign__clear(const int32_t *cur, uint32_t shards, int32_t *out)
{
    uint32_t moved = 0;
    for (uint32_t s = 0; s < shards; s++) {
        moved += cur[s] != CV_ASSIGN_NONE;
        out[s] = CV_ASSIGN_NONE;
    }
    return moved;
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

/* quota[i] for every node: 0 for dead nodes, q or q+1 for live ones; the r = shards % n_live +1s go to
 * the live nodes with the highest count (ties: lower index). The sort key packs (count desc, index asc)
 * into one integer so an ascending sort yields exactly that order. */
static void assign__quotas(const uint32_t *count, const uint8_t *live, uint32_t n_nodes, uint32_t n_live,
                           uint32_t shards, uint32_t *quota)
{
    uint64_t key[n_nodes];
    uint32_t q = shards / n_live, r = shards % n_live, k = 0;

    for (uint32_t i = 0; i < n_nodes; i++) {
        quota[i] = live[i] ? q : 0;
        if (live[i]) key[k++] = ((uint64_t)(UINT32_MAX - count[i]) << 32) | i;
    }
    assign__sort(key, k);
    for (uint32_t j = 0; j < r; j++)
        quota[(uint32_t)key[j]]++;
}

/* Step 3: keeps what fits under the quotas (lowest-numbered shards first), marks the rest as orphans
 * with CV_ASSIGN_NONE in out. kept[] is filled with the per-node kept counts. Returns the orphans. */
static uint32_t assign__keep(const int32_t *cur, uint32_t shards, const uint8_t *live, uint32_t n_nodes,
                             const uint32_t *quota, uint32_t *kept, int32_t *out)
{
    uint32_t orphans = 0;

    for (uint32_t i = 0; i < n_nodes; i++)
        kept[i] = 0;
    for (uint32_t s = 0; s < shards; s++) {
        int32_t o = cur[s]; /* read before writing: out may alias cur */
        if (assign__owned_by_live(o, live, n_nodes) && kept[o] < quota[o]) {
            kept[o]++;
            out[s] = o;
        } else {
            out[s] = CV_ASSIGN_NONE;
            orphans++;
        }
    }
    return orphans;
}

/* Step 4. The quotas sum to shards, so there is exactly one free slot per orphan and n never runs
 * past the end; an orphan never returns to its old owner (that owner was dead or already full). */
static void assign__place_orphans(int32_t *out, uint32_t shards, uint32_t n_nodes, const uint32_t *quota,
                                  uint32_t *kept)
{
    uint32_t n = 0;

    for (uint32_t s = 0; s < shards; s++) {
        if (out[s] != CV_ASSIGN_NONE) continue;
        while (n < n_nodes && kept[n] >= quota[n])
            n++;
        if (n == n_nodes) return; /* unreachable: sum(quota) == shards */
        out[s] = (int32_t)n;
        kept[n]++;
    }
}

uint32_t cv_assign_shards(const int32_t *cur, uint32_t shards, const uint8_t *live, uint32_t n_nodes,
                          int32_t *out)
{
    uint32_t n_live = 0;

    if (n_nodes > ASSIGN_MAX_NODES) n_nodes = ASSIGN_MAX_NODES;
    for (uint32_t i = 0; i < n_nodes; i++)
        n_live += live[i] != 0;
    if (n_live == 0) return assign__clear(cur, shards, out);

    uint32_t count[n_nodes], quota[n_nodes];
    for (uint32_t i = 0; i < n_nodes; i++)
        count[i] = 0;
    for (uint32_t s = 0; s < shards; s++)
        if (assign__owned_by_live(cur[s], live, n_nodes)) count[cur[s]]++;

    assign__quotas(count, live, n_nodes, n_live, shards, quota);
    uint32_t moved = assign__keep(cur, shards, live, n_nodes, quota, count, out);
    assign__place_orphans(out, shards, n_nodes, quota, count);
    return moved;
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
