/* Unit tests for src/core: FNV-1a hashing, object-id placement, shard assignment, lease rules. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "core/access.h"
#include "core/assign.h"
#include "core/hash.h"
#include "core/lease.h"
#include "core/sm.h"
#include "cverse/error.h"

#include "lsan_check.h"

TestSuite(hash, .fini = cv_lsan_check);
TestSuite(placement, .fini = cv_lsan_check);
TestSuite(assign, .fini = cv_lsan_check);
TestSuite(lease, .fini = cv_lsan_check);
TestSuite(errors, .fini = cv_lsan_check);
TestSuite(sm, .fini = cv_lsan_check);

/* ---- hashing ---------------------------------------------------------------------------------- */

Test(hash, fnv1a32_known_vectors)
{
    cr_assert_eq(cv_fnv1a32("", 0), 2166136261u);
    cr_assert_eq(cv_fnv1a32("a", 1), 0xe40c292cu);
    cr_assert_eq(cv_fnv1a32("foobar", 6), 0xbf9cf968u);
}

Test(hash, fnv1a32_hashes_bytes_not_strings)
{
    /* Embedded NUL and high bytes are data; a C-string hash would stop at the NUL. */
    cr_assert_neq(cv_fnv1a32("a\0b", 3), cv_fnv1a32("a", 1));
    const unsigned char hi[] = {0xff, 0x80};
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < sizeof hi; i++) h = (h ^ hi[i]) * 16777619u;
    cr_assert_eq(cv_fnv1a32(hi, sizeof hi), h);
}

Test(hash, shard_of_matches_goverse)
{
    cr_assert_eq(cv_shard_of("hello", 8192), 3243u);
    cr_assert_eq(cv_shard_of("foobar", 8192), 0xbf9cf968u % 8192);
    cr_assert_eq(cv_shard_of("foobar", 1), 0u);
    cr_assert_eq(cv_shard_of("", 64), 2166136261u % 64);
}

/* ---- placement parsing ------------------------------------------------------------------------ */

static struct cv_placement parse_ok(const char *id, uint32_t shards)
{
    struct cv_placement p;
    int rv = cv_placement_parse(id, shards, &p);
    cr_assert_eq(rv, 0, "parse('%s', %u) = %s", id, shards, cv_errname(rv));
    return p;
}

static void parse_fails(const char *id, uint32_t shards, int want)
{
    struct cv_placement p = {.kind = CV_PLACE_NODE, .shard = 777, .node = "x", .node_len = 1};
    int rv = cv_placement_parse(id, shards, &p);
    cr_assert_eq(rv, want, "parse('%s', %u) = %s, want %s", id ? id : "(null)", shards, cv_errname(rv),
                 cv_errname(want));
    cr_assert_eq(p.shard, 777u, "out must be untouched on error");
}

Test(placement, plain_id_is_hashed)
{
    struct cv_placement p = parse_ok("hello", 8192);
    cr_assert_eq(p.kind, CV_PLACE_HASH);
    cr_assert_eq(p.shard, 3243u);
    cr_assert_eq(p.node, NULL);
    cr_assert_eq(parse_ok("shard", 64).kind, CV_PLACE_HASH);
}

Test(placement, shard_prefix)
{
    struct cv_placement p = parse_ok("shard#5/ShardMonitor", 8192);
    cr_assert_eq(p.kind, CV_PLACE_SHARD);
    cr_assert_eq(p.shard, 5u);
    cr_assert_eq(parse_ok("shard#0/x", 8192).shard, 0u);
    cr_assert_eq(parse_ok("shard#8191/x", 8192).shard, 8191u);
    cr_assert_eq(parse_ok("shard#007/x", 8192).shard, 7u);
    cr_assert_eq(parse_ok("shard#3/a/b", 4).shard, 3u);
    cr_assert_eq(parse_ok("shard#3/", 4).shard, 3u, "empty rest is accepted, as in Goverse");
}

Test(placement, shard_prefix_out_of_range)
{
    parse_fails("shard#8192/x", 8192, CV_ERANGE);
    parse_fails("shard#64/x", 64, CV_ERANGE);
    parse_fails("shard#4294967295/x", 8192, CV_ERANGE);
    parse_fails("shard#99999999999999999999999/x", 8192, CV_ERANGE);
}

Test(placement, shard_prefix_malformed)
{
    parse_fails("shard#/x", 8192, CV_EINVAL);
    parse_fails("shard#12", 8192, CV_EINVAL);
    parse_fails("shard#1x/y", 8192, CV_EINVAL);
    parse_fails("shard#-1/y", 8192, CV_EINVAL);
    parse_fails("shard#+1/y", 8192, CV_EINVAL);
    parse_fails("shard# 1/y", 8192, CV_EINVAL);
    parse_fails("shard#", 8192, CV_EINVAL);
    parse_fails("shard#abc", 8192, CV_EINVAL);
    parse_fails("shard#99999999999999999999x/y", 8192, CV_EINVAL);
}

Test(placement, node_pinned)
{
    const char *id = "localhost:7001/client-1";
    struct cv_placement p = parse_ok(id, 8192);
    cr_assert_eq(p.kind, CV_PLACE_NODE);
    cr_assert_eq(p.node, id, "node points into the id");
    cr_assert_eq(p.node_len, strlen("localhost:7001"));
    cr_assert_eq(p.shard, cv_shard_of(id, 8192));

    p = parse_ok("n/a/b", 8192);
    cr_assert_eq(p.kind, CV_PLACE_NODE);
    cr_assert_eq(p.node_len, 1u, "the node is everything before the first '/'");
    p = parse_ok("Shard#5/x", 8192);
    cr_assert_eq(p.kind, CV_PLACE_NODE, "the shard prefix is case-sensitive");
    cr_assert_eq(p.node_len, 7u);
}

Test(placement, invalid_ids)
{
    parse_fails("", 8192, CV_EINVAL);
    parse_fails("/x", 8192, CV_EINVAL);
    parse_fails("/", 8192, CV_EINVAL);
    parse_fails("x", 0, CV_EINVAL);
    parse_fails(NULL, 8192, CV_EINVAL);
    cr_assert_eq(cv_placement_parse("x", 8192, NULL), CV_EINVAL);
}

/* ---- assignment ------------------------------------------------------------------------------- */

#define MAXN 1024

/* What any correct balanced assignment must satisfy, computed without the implementation's choices.
 * With L live nodes, q = S / L, r = S % L: balance forces exactly r nodes to q+1 and the rest to q.
 * A live node i holding c_i shards keeps at most min(c_i, quota_i); the best +1 placement gains one
 * kept shard per +1 given to a node with c_i > q, i.e. min(r, #{c_i > q}). So
 *   min_moves = S - sum_i min(c_i, q) - min(r, #{i live: c_i > q})
 * (shards owned by dead nodes / none / out-of-range owners count as not kept). */
static uint32_t min_moves(const int32_t *cur, uint32_t shards, const uint8_t *live, uint32_t n)
{
    uint32_t c[MAXN] = {0}, L = 0, kept = 0, over = 0;

    for (uint32_t i = 0; i < n; i++) L += live[i] != 0;
    if (L == 0) {
        uint32_t m = 0;
        for (uint32_t s = 0; s < shards; s++) m += cur[s] != CV_ASSIGN_NONE;
        return m;
    }
    for (uint32_t s = 0; s < shards; s++)
        if (cur[s] >= 0 && (uint32_t)cur[s] < n && live[cur[s]]) c[cur[s]]++;
    uint32_t q = shards / L, r = shards % L;
    for (uint32_t i = 0; i < n; i++) {
        if (!live[i]) continue;
        kept += c[i] < q ? c[i] : q;
        over += c[i] > q;
    }
    kept += r < over ? r : over;
    return shards - kept;
}

static uint32_t count_changed(const int32_t *a, const int32_t *b, uint32_t shards)
{
    uint32_t m = 0;
    for (uint32_t s = 0; s < shards; s++) m += a[s] != b[s];
    return m;
}

/* Runs the assignment and checks every guarantee of assign.h; returns the moved count. */
static uint32_t assign_checked(int32_t *map, uint32_t shards, const uint8_t *live, uint32_t n)
{
    int32_t *out = malloc(shards * sizeof *out), *again = malloc(shards * sizeof *again);
    uint32_t cnt[MAXN] = {0}, L = 0, want = min_moves(map, shards, live, n);
    cr_assert(out && again);

    uint32_t moved = cv_assign_shards(map, shards, live, n, out);
    cr_assert_eq(cv_assign_shards(map, shards, live, n, again), moved, "deterministic return");
    cr_assert_eq(memcmp(out, again, shards * sizeof *out), 0, "deterministic result");
    cr_assert_eq(moved, count_changed(map, out, shards), "return value = shards whose owner changed");
    cr_assert_eq(moved, want, "moved %u, minimum is %u", moved, want);

    for (uint32_t i = 0; i < n; i++) L += live[i] != 0;
    for (uint32_t s = 0; s < shards; s++) {
        if (L == 0) {
            cr_assert_eq(out[s], CV_ASSIGN_NONE);
            continue;
        }
        cr_assert(out[s] >= 0 && (uint32_t)out[s] < n && live[out[s]], "shard %u owner %d not live", s,
                  out[s]);
        cnt[out[s]]++;
    }
    if (L > 0) {
        uint32_t lo = UINT32_MAX, hi = 0;
        for (uint32_t i = 0; i < n; i++) {
            if (!live[i]) continue;
            lo = cnt[i] < lo ? cnt[i] : lo;
            hi = cnt[i] > hi ? cnt[i] : hi;
        }
        cr_assert_leq(hi - lo, 1u, "unbalanced: max %u min %u", hi, lo);
    }
    memcpy(map, out, shards * sizeof *out);
    free(out);
    free(again);
    return moved;
}

static void fill_none(int32_t *map, uint32_t shards)
{
    for (uint32_t s = 0; s < shards; s++) map[s] = CV_ASSIGN_NONE;
}

static uint32_t owned_by(const int32_t *map, uint32_t shards, int32_t node)
{
    uint32_t c = 0;
    for (uint32_t s = 0; s < shards; s++) c += map[s] == node;
    return c;
}

Test(assign, from_empty_is_balanced_and_moves_every_shard)
{
    static const uint32_t sizes[] = {1, 7, 64, 8192};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        for (uint32_t n = 1; n <= 12; n++) {
            uint32_t shards = sizes[k];
            int32_t map[8192];
            uint8_t live[12];
            memset(live, 1, n);
            fill_none(map, shards);
            cr_assert_eq(assign_checked(map, shards, live, n), shards);
            for (uint32_t i = 0; i < n; i++) {
                uint32_t c = owned_by(map, shards, (int32_t)i);
                cr_assert(c == shards / n || c == shards / n + 1);
            }
        }
    }
}

Test(assign, from_empty_deterministic_layout)
{
    /* 10 shards over 3 nodes: quotas 4,3,3 (tie broken by index); orphans fill node 0 first. */
    int32_t map[10];
    uint8_t live[3] = {1, 1, 1};
    fill_none(map, 10);
    cr_assert_eq(cv_assign_shards(map, 10, live, 3, map), 10u);
    static const int32_t want[10] = {0, 0, 0, 0, 1, 1, 1, 2, 2, 2};
    cr_assert_arr_eq(map, want, sizeof want);
}

Test(assign, stable_when_nothing_changes)
{
    int32_t map[8192];
    uint8_t live[5] = {1, 1, 1, 1, 1};
    fill_none(map, 8192);
    assign_checked(map, 8192, live, 5);
    cr_assert_eq(assign_checked(map, 8192, live, 5), 0u);
}

Test(assign, join_moves_exactly_the_minimum)
{
    /* Balanced on k nodes, then node k joins. Old counts are floor(S/k) or ceil(S/k) >= floor(S/(k+1)),
     * so the newcomer can claim only floor(S/(k+1)) shards (a +1 quota would go to an old node that
     * can fill it without a move) and everything it gets moves: moves = floor(S / (k+1)). */
    static const uint32_t sizes[] = {1, 5, 63, 64, 100, 8192};
    for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
        uint32_t S = sizes[z];
        for (uint32_t k = 1; k < 12; k++) {
            int32_t map[8192];
            uint8_t live[12] = {0};
            memset(live, 1, k);
            fill_none(map, S);
            assign_checked(map, S, live, 12);
            live[k] = 1;
            uint32_t moved = assign_checked(map, S, live, 12);
            cr_assert_eq(moved, S / (k + 1), "S=%u k=%u: moved %u", S, k, moved);
            cr_assert_eq(owned_by(map, S, (int32_t)k), S / (k + 1));
        }
    }
}

Test(assign, leave_moves_only_the_leavers_shards)
{
    static const uint32_t sizes[] = {5, 64, 100, 8192};
    for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
        uint32_t S = sizes[z];
        for (uint32_t k = 2; k <= 12; k++) {
            for (uint32_t x = 0; x < k; x++) {
                int32_t map[8192], before[8192];
                uint8_t live[12] = {0};
                memset(live, 1, k);
                fill_none(map, S);
                assign_checked(map, S, live, k);
                memcpy(before, map, S * sizeof *map);
                uint32_t had = owned_by(map, S, (int32_t)x);
                live[x] = 0;
                cr_assert_eq(assign_checked(map, S, live, k), had);
                for (uint32_t s = 0; s < S; s++)
                    if (before[s] != (int32_t)x) cr_assert_eq(map[s], before[s], "shard %u moved", s);
            }
        }
    }
}

Test(assign, over_quota_node_sheds_its_highest_shards)
{
    /* Node 0 holds all 8 shards, node 1 joins: node 0 keeps 0..3, shards 4..7 go to node 1. */
    int32_t map[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    uint8_t live[2] = {1, 1};
    cr_assert_eq(cv_assign_shards(map, 8, live, 2, map), 4u);
    static const int32_t want[8] = {0, 0, 0, 0, 1, 1, 1, 1};
    cr_assert_arr_eq(map, want, sizeof want);
}

Test(assign, plus_one_quota_goes_to_the_fuller_node)
{
    /* 7 shards on 2 nodes: node 1 holds 5, node 0 holds 2. Quotas must be 3 (node 0) and 4 (node 1),
     * not 4/3 by index: that moves 1 shard instead of 2. */
    int32_t map[7] = {0, 1, 1, 0, 1, 1, 1};
    uint8_t live[2] = {1, 1};
    cr_assert_eq(assign_checked(map, 7, live, 2), 1u);
    cr_assert_eq(owned_by(map, 7, 1), 4u);
    static const int32_t want[7] = {0, 1, 1, 0, 1, 1, 0};
    cr_assert_arr_eq(map, want, sizeof want);
}

Test(assign, invalid_and_dead_owners_are_reassigned)
{
    int32_t map[6] = {5, -7, 2, CV_ASSIGN_NONE, 1, 0};
    uint8_t live[3] = {1, 1, 0};
    cr_assert_eq(assign_checked(map, 6, live, 3), 4u);
    cr_assert_eq(map[4], 1);
    cr_assert_eq(map[5], 0);
}

Test(assign, no_live_node_clears_the_map)
{
    int32_t map[4] = {0, 1, CV_ASSIGN_NONE, 1};
    uint8_t live[2] = {0, 0};
    cr_assert_eq(cv_assign_shards(map, 4, live, 2, map), 3u);
    for (int s = 0; s < 4; s++) cr_assert_eq(map[s], CV_ASSIGN_NONE);
    cr_assert_eq(cv_assign_shards(map, 4, live, 2, map), 0u);
    cr_assert_eq(cv_assign_shards(map, 4, NULL, 0, map), 0u, "zero nodes: nothing to do");
    cr_assert_eq(cv_assign_shards(NULL, 0, live, 2, NULL), 0u, "zero shards");
}

Test(assign, out_separate_from_cur_leaves_cur_alone)
{
    int32_t cur[16], out[16], copy[16];
    uint8_t live[3] = {1, 0, 1};
    for (int s = 0; s < 16; s++) cur[s] = s % 3;
    memcpy(copy, cur, sizeof cur);
    uint32_t moved = cv_assign_shards(cur, 16, live, 3, out);
    cr_assert_arr_eq(cur, copy, sizeof cur);
    cr_assert_eq(moved, count_changed(cur, out, 16));
    cr_assert_eq(cv_assign_shards(cur, 16, live, 3, cur), moved, "aliasing gives the same answer");
    cr_assert_arr_eq(cur, out, sizeof cur);
}

Test(assign, limits_1m_shards_1024_nodes)
{
    const uint32_t S = 1048576;
    int32_t *map = malloc(S * sizeof *map);
    uint8_t live[MAXN];
    cr_assert(map);
    memset(live, 1, sizeof live);
    fill_none(map, S);
    cr_assert_eq(assign_checked(map, S, live, MAXN), S);
    cr_assert_eq(owned_by(map, S, 1023), S / MAXN);
    live[17] = 0;
    cr_assert_eq(assign_checked(map, S, live, MAXN), S / MAXN, "only the leaver's shards move");
    live[17] = 1;
    cr_assert_eq(assign_checked(map, S, live, MAXN), S / MAXN, "rejoin takes back floor(S/n)");
    free(map);
}

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64*: fixed seed, so a failure reproduces. */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

/* Seeded random join/leave over a table of 12 nodes. Besides the checks in assign_checked (live owners,
 * balance, moved == minimum, determinism), a single join into a balanced non-empty cluster must move
 * exactly floor(S / L_new) shards and a single leave exactly the leaver's shards. */
static void random_membership_walk(uint32_t shards, uint64_t seed, int steps)
{
    enum { N = 12 };
    int32_t *map = malloc(shards * sizeof *map);
    uint8_t live[N] = {0};
    uint32_t joins = 0, leaves = 0;
    cr_assert(map);
    fill_none(map, shards);
    for (int step = 0; step < steps; step++) {
        uint32_t L = 0, who = (uint32_t)(rng_next(&seed) % N);
        for (uint32_t i = 0; i < N; i++) L += live[i];
        uint32_t had = owned_by(map, shards, (int32_t)who);
        int single = rng_next(&seed) % 8 != 0;
        live[who] ^= 1;
        if (!single) live[(who + 1 + rng_next(&seed) % (N - 1)) % N] ^= 1; /* two changes at once */
        uint32_t moved = assign_checked(map, shards, live, N);
        if (!single || L == 0) continue;
        if (live[who]) {
            cr_assert_eq(moved, shards / (L + 1), "step %d: join moved %u", step, moved);
            joins++;
        } else {
            cr_assert_eq(moved, had, "step %d: leave moved %u, leaver had %u", step, moved, had);
            leaves++;
        }
    }
    cr_assert_gt(joins, 50u);
    cr_assert_gt(leaves, 50u);
    free(map);
}

Test(assign, random_join_leave_64_shards) { random_membership_walk(64, 0x9e3779b97f4a7c15ull, 600); }

Test(assign, random_join_leave_8192_shards) { random_membership_walk(8192, 0xc0ffee1234567ull, 600); }

Test(assign, random_arbitrary_maps)
{
    /* Unbalanced, partly invalid starting maps: the minimum still holds (checked by assign_checked). */
    uint64_t seed = 42;
    for (int round = 0; round < 500; round++) {
        uint32_t n = 1 + (uint32_t)(rng_next(&seed) % 12);
        uint32_t shards = (uint32_t)(rng_next(&seed) % 300);
        uint32_t skew = 1 + (uint32_t)(rng_next(&seed) % n);
        int32_t map[300];
        uint8_t live[12];
        for (uint32_t i = 0; i < n; i++) live[i] = rng_next(&seed) % 4 != 0;
        for (uint32_t s = 0; s < shards; s++) {
            uint64_t v = rng_next(&seed) % 16;
            map[s] = v == 0 ? CV_ASSIGN_NONE : v == 1 ? (int32_t)n + 3 : (int32_t)(rng_next(&seed) % skew);
        }
        assign_checked(map, shards, live, n);
    }
}

/* ---- leases ------------------------------------------------------------------------------------ */

/* ---- two-phase handoff ------------------------------------------------------------------------- */

Test(assign, handoff_rules_per_shard)
{
    /* Nodes 0, 1 live, 2 dead. */
    uint8_t live[3] = {1, 1, 0};
    enum { N = CV_ASSIGN_NONE };
    /*                        same  live->  dead->  none,   none,    none,    none,   bad */
    int32_t cur[8] = {0, 0, 2, N, N, N, N, 7};
    int32_t next[8] = {0, 1, 1, 1, 1, 1, 0, 1};
    int32_t waiting[8] = {N, N, N, N, 0, 2, 1, N};
    int32_t out[8];
    static const int32_t want[8] = {0, N, 1, 1, N, 1, N, 1};
    cr_assert_eq(cv_assign_handoff(cur, next, waiting, 8, live, 3, out), 5u);
    cr_assert_arr_eq(out, want, sizeof want);
    cr_assert_eq(cv_assign_handoff(cur, next, waiting, 8, live, 3, next), 5u, "out may alias next");
    cr_assert_arr_eq(next, want, sizeof want);
}

Test(assign, handoff_join_releases_first_then_assigns)
{
    /* Node 0 holds all 8 shards, node 1 joins. */
    int32_t cur[8] = {0, 0, 0, 0, 0, 0, 0, 0}, next[8], waiting[8];
    uint8_t live[2] = {1, 1};
    for (int s = 0; s < 8; s++) waiting[s] = CV_ASSIGN_NONE;
    cv_assign_shards(cur, 8, live, 2, next);
    cr_assert_eq(cv_assign_handoff(cur, next, waiting, 8, live, 2, next), 4u);
    static const int32_t phase1[8] = {0, 0, 0, 0, CV_ASSIGN_NONE, CV_ASSIGN_NONE, CV_ASSIGN_NONE, CV_ASSIGN_NONE};
    cr_assert_arr_eq(next, phase1, sizeof phase1, "phase 1: the leaving shards are unassigned");
    /* Applied: shards 4..7 unassigned, waiting for node 0. Nothing more until it releases them. */
    memcpy(cur, next, sizeof cur);
    for (int s = 4; s < 8; s++) waiting[s] = 0;
    cv_assign_shards(cur, 8, live, 2, next);
    cr_assert_eq(cv_assign_handoff(cur, next, waiting, 8, live, 2, next), 0u);
    cr_assert_arr_eq(next, cur, sizeof cur);
    /* Node 0 released 6 and 7 only: they move to node 1. */
    waiting[6] = waiting[7] = CV_ASSIGN_NONE;
    cv_assign_shards(cur, 8, live, 2, next);
    cr_assert_eq(cv_assign_handoff(cur, next, waiting, 8, live, 2, next), 2u);
    cr_assert_eq(next[6], 1);
    cr_assert_eq(next[7], 1);
    cr_assert_eq(next[4], CV_ASSIGN_NONE);
    /* Node 0 dies before releasing 4 and 5: it is not waited for. Every shard goes to node 1. */
    memcpy(cur, next, sizeof cur);
    live[0] = 0;
    cv_assign_shards(cur, 8, live, 2, next);
    cr_assert_eq(cv_assign_handoff(cur, next, waiting, 8, live, 2, next), 6u);
    for (int s = 0; s < 8; s++) cr_assert_eq(next[s], 1, "shard %d", s);
}

Test(assign, handoff_random_never_two_live_owners)
{
    /* Whatever the inputs: a shard changes hands directly only from a non-live owner, and never gets a
     * live owner while a live node still has to release it. */
    uint64_t seed = 0x5eed;
    for (int round = 0; round < 2000; round++) {
        enum { S = 64, N = 6 };
        int32_t cur[S], next[S], waiting[S], out[S];
        uint8_t live[N];
        for (int i = 0; i < N; i++) live[i] = (uint8_t)(rng_next(&seed) % 3 != 0);
        for (int s = 0; s < S; s++) {
            cur[s] = (int32_t)(rng_next(&seed) % (N + 1)) - 1;
            waiting[s] = cur[s] == CV_ASSIGN_NONE ? (int32_t)(rng_next(&seed) % (N + 1)) - 1 : CV_ASSIGN_NONE;
        }
        cv_assign_shards(cur, S, live, N, next);
        uint32_t changed = cv_assign_handoff(cur, next, waiting, S, live, N, out), count = 0;
        for (int s = 0; s < S; s++) {
            count += out[s] != cur[s];
            if (out[s] == cur[s]) continue;
            cr_assert(out[s] == next[s] || out[s] == CV_ASSIGN_NONE);
            bool cur_live = cur[s] >= 0 && live[cur[s]];
            if (cur_live) cr_assert_eq(out[s], CV_ASSIGN_NONE, "a live owner releases first");
            if (out[s] >= 0) cr_assert(!(waiting[s] >= 0 && live[waiting[s]]), "waits for a live release");
        }
        cr_assert_eq(changed, count);
    }
}

Test(lease, margin_covers_drift_and_slack)
{
    cr_assert_eq(cv_lease_margin(1500), 1500 / 100 + 1 + CV_LEASE_SLACK_MS);
    cr_assert_eq(cv_lease_margin(10000), 101 + CV_LEASE_SLACK_MS);
    cr_assert_geq(cv_lease_margin(0), 1u, "never 0");
    cr_assert_geq(100 - cv_lease_margin(100), 100 / 3, "the config's smallest TTL leaves a window");
}

Test(lease, leader_expires_after_ttl_plus_margin_from_seen_or_leadership)
{
    const uint64_t ttl = 3000, m = cv_lease_margin(ttl);
    /* Leader since long ago: TTL + margin after the renewal it saw applied, strictly after. */
    cr_assert_not(cv_lease_may_expire(10000, 0, ttl, 10000 + ttl + m - 1));
    cr_assert_not(cv_lease_may_expire(10000, 0, ttl, 10000 + ttl + m));
    cr_assert(cv_lease_may_expire(10000, 0, ttl, 10000 + ttl + m + 1));
    /* New leader at 9000 that applied the renewal at 8000 (as a follower): TTL + margin from 8000, not
     * from its election — a later renewal it had not applied fails the ExpireNode's compare-and-set. */
    cr_assert_not(cv_lease_may_expire(8000, 9000, ttl, 8000 + ttl + m));
    cr_assert(cv_lease_may_expire(8000, 9000, ttl, 8000 + ttl + m + 1));
    cr_assert_lt(8000 + ttl + m + 1, 9000 + ttl + m, "earlier than the old rule");
    /* A renewal applied at 5000: its window ran out before the election; declared dead once the grace
     * that lets renewals stalled by the election through (liveness) is over. */
    cr_assert_not(cv_lease_may_expire(5000, 9000, ttl, 9000 + cv_lease_grace(ttl)));
    cr_assert(cv_lease_may_expire(5000, 9000, ttl, 9000 + cv_lease_grace(ttl) + 1));
    cr_assert_lt(cv_lease_grace(ttl), ttl + m, "the grace is shorter than the old wait");
    /* A node this process never saw renewed (state from a snapshot, or a restart): from leadership. */
    cr_assert_not(cv_lease_may_expire(0, 9000, ttl, 12000));
    cr_assert_not(cv_lease_may_expire(0, 9000, ttl, 9000 + ttl + m));
    cr_assert(cv_lease_may_expire(0, 9000, ttl, 9000 + ttl + m + 1), "a node never seen: from leadership");
    /* A renewal seen after the leadership began counts from when it was seen. */
    cr_assert_not(cv_lease_may_expire(11000, 9000, ttl, 9000 + ttl + m + 1));
    cr_assert(cv_lease_may_expire(11000, 9000, ttl, 11000 + ttl + m + 1));
}

/* The leader wakes at cv_lease_expires_at: exactly the first instant cv_lease_may_expire allows. */
Test(lease, expires_at_is_the_first_instant_may_expire_allows)
{
    const uint64_t ttl = 700;
    const uint64_t cases[][2] = {{10000, 0}, {8000, 9000}, {5000, 9000}, {0, 9000}, {11000, 9000}, {1, 1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t seen = cases[i][0], since = cases[i][1], at = cv_lease_expires_at(seen, since, ttl, true);
        cr_assert_not(cv_lease_may_expire(seen, since, ttl, at - 1), "case %zu: not before %llu", i,
                      (unsigned long long)at);
        cr_assert(cv_lease_may_expire(seen, since, ttl, at), "case %zu: at %llu", i, (unsigned long long)at);
    }
    cr_assert_eq(cv_lease_expires_at(0, UINT64_MAX - 10, ttl, true), UINT64_MAX, "saturates: never");
    /* Without the grace (the leader it replaced): ttl + margin after seen, even before since + grace; a
     * node never seen still counts from since. */
    const uint64_t m = cv_lease_margin(ttl);
    cr_assert_eq(cv_lease_expires_at(8500, 9000, ttl, false), 8500 + ttl + m + 1);
    cr_assert_eq(cv_lease_expires_at(8500, 9000, ttl, true), 9000 + cv_lease_grace(ttl) + 1);
    cr_assert_eq(cv_lease_expires_at(0, 9000, ttl, false), 9000 + ttl + m + 1);
}

Test(lease, no_wraparound)
{
    cr_assert_not(cv_lease_may_expire(0, UINT64_MAX - 10, 100, UINT64_MAX - 1),
                  "leader_since + ttl must saturate, not wrap to a small number");
    cr_assert_not(cv_lease_may_expire(0, 5, UINT64_MAX, 1000));
    struct cv_lease l;
    cv_lease_init(&l, UINT64_MAX, "n1");
    cr_assert_eq(cv_lease_grant(&l, 10, 20, true), CV_LEASE_VALID);
    cr_assert_gt(l.valid_until_ms, 10u, "the window does not wrap");
    cr_assert(cv_lease_serving(&l, UINT64_MAX / 2));
}

Test(lease, view_table)
{
    const struct cv_sm_conf *c = cv_lease_sm();
    cr_assert_eq(cv_sm_conf_check(c), 0);
    cr_assert(cv_sm_allowed(c, CV_LEASE_VALID, CV_LEASE_SUSPECT));
    cr_assert(cv_sm_allowed(c, CV_LEASE_VALID, CV_LEASE_FENCED), "a stopped process jumps straight to fenced");
    cr_assert(cv_sm_allowed(c, CV_LEASE_FENCED, CV_LEASE_VALID));
    cr_assert_not(cv_sm_allowed(c, CV_LEASE_FENCED, CV_LEASE_SUSPECT), "back only through a fresh grant");
    cr_assert_not(cv_sm_allowed(c, CV_LEASE_SUSPECT, CV_LEASE_NONE));
}

/* The node's view over simulated time: grant -> valid -> suspect -> fenced -> a fresh grant. */
Test(lease, view_over_time)
{
    const uint64_t ttl = 1500, m = cv_lease_margin(ttl);
    struct cv_lease l;
    cv_lease_init(&l, ttl, "n1");
    cr_assert_eq(cv_lease_state(&l), CV_LEASE_NONE);
    cr_assert_not(cv_lease_serving(&l, 1000), "never granted: not serving");
    cr_assert_eq(cv_lease_next_change(&l, 1000), 0);
    /* Sent at 1000, applied at 1010: the window counts from the send. */
    cr_assert_eq(cv_lease_grant(&l, 1000, 1010, true), CV_LEASE_VALID);
    cr_assert_eq(l.valid_until_ms, 1000 + ttl - m);
    cr_assert(cv_lease_serving(&l, 1010));
    cr_assert_eq(cv_lease_next_change(&l, 1010), 1000 + ttl - m - ttl / 3 - 1010, "wakes when suspect");
    cr_assert_eq(cv_lease_tick(&l, 1000 + ttl - m - ttl / 3 - 1), CV_LEASE_VALID);
    cr_assert_eq(cv_lease_tick(&l, 1000 + ttl - m - ttl / 3 + 1), CV_LEASE_SUSPECT);
    cr_assert(cv_lease_serving(&l, 1000 + ttl - m - 1), "suspect still serves");
    cr_assert_not(cv_lease_serving(&l, 1000 + ttl - m), "not one ms past the window, even before a tick");
    /* The process was stopped: time jumps far past the window. */
    cr_assert_eq(cv_lease_tick(&l, 9000), CV_LEASE_FENCED);
    cr_assert_eq(l.fenced_at_ms, 1000 + ttl - m, "fenced from the window's end, not from when noticed");
    cr_assert_not(cv_lease_serving(&l, 9000));
    /* A renewal sent before the stop and applied after it is stale: still fenced. */
    cr_assert_eq(cv_lease_grant(&l, 1400, 9001, false), CV_LEASE_FENCED);
    /* A fresh one unfences. */
    cr_assert_eq(cv_lease_grant(&l, 9000, 9005, false), CV_LEASE_VALID);
    cr_assert(cv_lease_serving(&l, 9005));
    /* An older grant never shortens the window. */
    uint64_t until = l.valid_until_ms;
    cr_assert_eq(cv_lease_grant(&l, 8990, 9006, false), CV_LEASE_VALID);
    cr_assert_eq(l.valid_until_ms, until);
}

Test(lease, revoked_comes_back_only_by_registration)
{
    const uint64_t ttl = 1500;
    struct cv_lease l;
    cv_lease_init(&l, ttl, "n1");
    cv_lease_grant(&l, 1000, 1001, true);
    cr_assert_eq(cv_lease_revoke(&l, 1200), CV_LEASE_FENCED);
    cr_assert_not(cv_lease_serving(&l, 1200), "declared dead: stop at once, window or not");
    cr_assert_eq(l.fenced_at_ms, 1200);
    cr_assert_eq(cv_lease_grant(&l, 1250, 1260, false), CV_LEASE_FENCED, "a renewal does not revive");
    cr_assert_eq(cv_lease_tick(&l, 1300), CV_LEASE_FENCED);
    cr_assert_eq(cv_lease_grant(&l, 1300, 1310, true), CV_LEASE_VALID, "a registration does");
    cr_assert_not(l.revoked);
}

/* One renewal, then silence, on clocks that run at different rates. Real time is in microseconds;
 * each process reads its own monotonic clock (ms, truncated) = offset + rate * real. Returns the margin
 * in real µs between the node's last serving instant and the leader's first allowed expiry (negative:
 * the windows overlapped). */
static long long lease_sim(double node_rate, double leader_rate, unsigned apply_delay_us, uint64_t ttl)
{
    const uint64_t node_off = 123456, leader_off = 987; /* unrelated clock values */
    struct cv_lease l;
    cv_lease_init(&l, ttl, "sim");
    const long long p = 1000000; /* real µs of the proposal */
#define NODE_MS(t) (node_off + (uint64_t)(node_rate * (double)(t) / 1000.0))
#define LEADER_MS(t) (leader_off + (uint64_t)(leader_rate * (double)(t) / 1000.0))
    uint64_t sent = NODE_MS(p);
    long long a = p + apply_delay_us; /* the leader and the node apply at the same real instant */
    uint64_t seen = LEADER_MS(a);
    cv_lease_grant(&l, sent, NODE_MS(a), false);
    long long last_serve = -1, first_expire = -1;
    for (long long t = a; t < a + 4 * (long long)ttl * 1000; t += 50) {
        if (cv_lease_serving(&l, NODE_MS(t))) last_serve = t;
        if (first_expire < 0 && cv_lease_may_expire(seen, 0, ttl, LEADER_MS(t))) first_expire = t;
    }
#undef NODE_MS
#undef LEADER_MS
    cr_assert_geq(last_serve, 0, "the grant was served for a while");
    cr_assert_geq(first_expire, 0, "the leader expires it eventually");
    return first_expire - last_serve;
}

Test(lease, windows_never_overlap_within_the_drift_bound)
{
    const double rho = CV_LEASE_DRIFT_PPM / 1e6;
    const double rates[] = {1.0 - rho, 1.0, 1.0 + rho};
    const uint64_t ttls[] = {300, 1500, 10000};
    for (size_t k = 0; k < 3; k++)
        for (size_t i = 0; i < 3; i++)
            for (size_t j = 0; j < 3; j++)
                for (unsigned d = 0; d <= 200000; d += 100000) {
                    long long gap = lease_sim(rates[i], rates[j], d, ttls[k]);
                    cr_assert_gt(gap, 0, "ttl %llu node rate %f leader rate %f delay %u us: overlap %lld us",
                                 (unsigned long long)ttls[k], rates[i], rates[j], d, -gap);
                }
    /* At the worst corner the gap is still at least the slack's share: a node clock 1% slow, a leader
     * clock 1% fast, no delay. */
    cr_assert_gt(lease_sim(1.0 - rho, 1.0 + rho, 0, 1500), 0);
}

/* A leader change: the node X proposes its last renewal at real time p (X's clock), the follower L
 * applies it apply_delay_us later (lagging followers apply late), L is elected elect_us after p and
 * takes duty then (since = that reading of L's clock), and applies nothing of X after. Returns the real
 * µs between X's last serving instant and L's first allowed expiry (negative: overlap). */
static long long lease_sim_new_leader(double node_rate, double leader_rate, long long apply_delay_us,
                                      long long elect_us, uint64_t ttl, bool seen_known, bool grace)
{
    const uint64_t node_off = 5550, leader_off = 77; /* unrelated clock values */
    struct cv_lease l;
    cv_lease_init(&l, ttl, "sim");
    const long long p = 2000000;
#define NODE_MS(t) (node_off + (uint64_t)(node_rate * (double)(t) / 1000.0))
#define LEADER_MS(t) (leader_off + (uint64_t)(leader_rate * (double)(t) / 1000.0))
    uint64_t sent = NODE_MS(p);
    cv_lease_grant(&l, sent, NODE_MS(p + 1000), false); /* X applies it at once (the old leader's commit) */
    long long a = p + apply_delay_us, b = p + elect_us;
    uint64_t seen = seen_known ? LEADER_MS(a) : 0, since = LEADER_MS(b);
    long long last_serve = -1, first_expire = -1;
    for (long long t = p; t < p + 6 * (long long)ttl * 1000; t += 50) {
        if (cv_lease_serving(&l, NODE_MS(t))) last_serve = t;
        /* L decides only once it leads, and only on renewals it has applied by then */
        if (first_expire < 0 && t >= b && t >= a && LEADER_MS(t) >= cv_lease_expires_at(seen, since, ttl, grace))
            first_expire = t;
    }
#undef NODE_MS
#undef LEADER_MS
    cr_assert_geq(last_serve, 0);
    cr_assert_geq(first_expire, 0);
    return first_expire - last_serve;
}

Test(lease, new_leader_counts_from_the_renewal_it_applied_as_a_follower)
{
    const double rho = CV_LEASE_DRIFT_PPM / 1e6;
    const double rates[] = {1.0 - rho, 1.0, 1.0 + rho};
    const uint64_t ttl = 600;
    const long long delays[] = {0, 30000, 400000};          /* the follower's apply lag */
    const long long elects[] = {0, 200000, 450000, 2000000}; /* election after the renewal */
    for (size_t i = 0; i < 3; i++)
        for (size_t j = 0; j < 3; j++)
            for (size_t d = 0; d < 3; d++)
                for (size_t e = 0; e < 4; e++) {
                    if (elects[e] < delays[d]) continue; /* a leader has applied what it had committed */
                    long long gap =
                        lease_sim_new_leader(rates[i], rates[j], delays[d], elects[e], ttl, true, true);
                    cr_assert_gt(gap, 0, "node rate %f leader rate %f lag %lld elect %lld: overlap %lld us",
                                 rates[i], rates[j], delays[d], elects[e], -gap);
                    long long blind =
                        lease_sim_new_leader(rates[i], rates[j], delays[d], elects[e], ttl, false, true);
                    cr_assert_gt(blind, 0);
                    cr_assert_geq(blind, gap, "counting from the applied renewal is never slower");
                    /* the leader it replaced gets no grace: still no overlap, never later */
                    long long old =
                        lease_sim_new_leader(rates[i], rates[j], delays[d], elects[e], ttl, true, false);
                    cr_assert_gt(old, 0, "no grace: node rate %f leader rate %f lag %lld elect %lld: overlap %lld us",
                                 rates[i], rates[j], delays[d], elects[e], -old);
                    cr_assert_leq(old, gap);
                }
    /* What it buys: a leader elected 450 ms after the node's last renewal, which it applied at once,
     * may declare the node dead max(ttl + margin after that renewal, grace after its election) = 750 ms
     * after the renewal, not ttl + margin after its election (1107 ms). */
    long long fast = lease_sim_new_leader(1.0, 1.0, 0, 450000, ttl, true, true);
    long long blind = lease_sim_new_leader(1.0, 1.0, 0, 450000, ttl, false, true);
    cr_assert_lt(fast, blind - 300000, "fast %lld us, blind %lld us", fast, blind);
    /* And for the leader it replaced, the grace no longer adds to a slow election: elected 450 ms after
     * that node's renewal, it may declare it dead ttl + margin (658 ms) after the renewal, not 750. */
    long long old = lease_sim_new_leader(1.0, 1.0, 0, 450000, ttl, true, false);
    cr_assert_lt(old, fast - 50000, "old leader %lld us, with grace %lld us", old, fast);
}

Test(lease, windows_may_overlap_beyond_the_drift_bound)
{
    /* The check has teeth: clocks 10x further apart than assumed break the argument. */
    const double rho = 10 * CV_LEASE_DRIFT_PPM / 1e6;
    cr_assert_lt(lease_sim(1.0 - rho, 1.0 + rho, 0, 1500), 0);
}

Test(lease, renew_interval_is_a_fifth)
{
    cr_assert_eq(cv_lease_renew_interval(3000), 600u);
    cr_assert_eq(cv_lease_renew_interval(10000), 2000u);
    cr_assert_eq(cv_lease_renew_interval(650), 130u);
    cr_assert_eq(cv_lease_renew_interval(5), 1u);
    cr_assert_eq(cv_lease_renew_interval(3), 1u, "never 0");
    cr_assert_eq(cv_lease_renew_interval(2), 1u, "never 0");
    cr_assert_eq(cv_lease_renew_interval(0), 1u, "never 0");
}

Test(lease, renewals_are_aligned_on_the_wall_clock)
{
    /* Two nodes whose ticks fire at different instants renew at the same next multiple of the interval. */
    const uint64_t b = 140u * 7143u; /* a boundary */
    cr_assert_eq(b + cv_lease_renew_delay(b, 140), b + 140, "on a boundary: the next one");
    cr_assert_eq(b + 1 + cv_lease_renew_delay(b + 1, 140), b + 140);
    cr_assert_eq(b + 63 + cv_lease_renew_delay(b + 63, 140), b + 140);
    cr_assert_eq(cv_lease_renew_delay(b + 139, 140), 141u, "less than 5 ms ahead: the boundary after");
    cr_assert_eq(cv_lease_renew_delay(b + 135, 140), 5u, "5 ms ahead is kept");
    /* Never longer than an interval plus the minimum, never 0. */
    for (uint64_t now = 0; now < 1000; now++) {
        uint64_t d = cv_lease_renew_delay(now, 140);
        cr_assert(d >= CV_LEASE_ALIGN_MIN_MS && d <= 140 + CV_LEASE_ALIGN_MIN_MS, "delay %llu at %llu",
                  (unsigned long long)d, (unsigned long long)now);
    }
    cr_assert_eq(cv_lease_renew_delay(12345, 1), 1u, "an interval of 1 ms");
    cr_assert_eq(cv_lease_renew_delay(12345, 0), 1u, "never 0");
}

Test(placement, on_node_matches_the_exact_node_only)
{
    struct cv_placement p;
    cr_assert_eq(cv_placement_parse("node-1/x", 64, &p), 0);
    cr_expect(cv_placement_on_node(&p, "node-1"));
    cr_expect(!cv_placement_on_node(&p, "node-10"));
    cr_expect(!cv_placement_on_node(&p, "node-"));
    cr_assert_eq(cv_placement_parse("shard#3/x", 64, &p), 0);
    cr_expect(!cv_placement_on_node(&p, "shard#3"));
}

/* ---------------------------------------------------------------- the error table */

static const int all_errors[] = {
#define ERR_VALUE(name, value, status, retry, reroute, msg) value,
    CV_ERRNO_MAP(ERR_VALUE)
#undef ERR_VALUE
};

Test(errors, every_code_has_a_status_http_and_consistent_retry_rules)
{
    for (size_t i = 0; i < sizeof all_errors / sizeof all_errors[0]; i++) {
        int e = all_errors[i];
        enum cv_status st = cv_err_code(e);
        cr_assert_lt((unsigned)st, CV_STATUS_N);
        cr_assert_str_eq(cv_err_status(e), cv_status_name(st));
        cr_assert_eq(cv_err_http(e), cv_status_http(st));
        cr_assert_neq(strcmp(cv_errname(e), "CV_EUNKNOWN"), 0);
        /* A forwarder only re-routes what a caller could retry itself. */
        if (cv_err_reroute(e)) cr_assert(cv_err_retryable(e), "%s", cv_errname(e));
        /* Only errors are >= 400; Retry-After only on retryable statuses. */
        if (e) cr_assert_geq(cv_err_http(e), 400, "%s", cv_errname(e));
        if (cv_status_retry_after(st)) cr_assert(cv_err_retryable(e), "%s", cv_errname(e));
    }
    cr_assert_eq(cv_err_http(0), 200);
}

Test(errors, documented_mapping)
{
    /* docs/protocol.md's table: the client-facing status and HTTP status of each code. */
    static const struct {
        int err;
        const char *status;
        int http;
    } cases[] = {
        {CV_EINVAL, "INVALID_ARGUMENT", 400},   {CV_EPROTO, "INVALID_ARGUMENT", 400},
        {CV_ERANGE, "INVALID_ARGUMENT", 400},   {CV_ETOOBIG, "INVALID_ARGUMENT", 400},
        {CV_ENOTFOUND, "NOT_FOUND", 404},       {CV_EEXIST, "ALREADY_EXISTS", 409},
        {CV_ECONFLICT, "FAILED_PRECONDITION", 409}, {CV_EBUSY, "RESOURCE_EXHAUSTED", 429},
        {CV_EUNAVAIL, "UNAVAILABLE", 503},      {CV_EREDIRECT, "UNAVAILABLE", 503},
        {CV_ECLOSED, "UNAVAILABLE", 503},       {CV_ECANCELED, "UNAVAILABLE", 503},
        {CV_ENOTLEADER, "UNAVAILABLE", 503},    {CV_ERETRY, "UNAVAILABLE", 503},
        {CV_ETIMEDOUT, "DEADLINE_EXCEEDED", 504}, {CV_ENOMEM, "INTERNAL", 500},
        {CV_EIO, "INTERNAL", 500},              {-12345, "INTERNAL", 500},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_expect_str_eq(cv_err_status(cases[i].err), cases[i].status, "%s", cv_errname(cases[i].err));
        cr_expect_eq(cv_err_http(cases[i].err), cases[i].http, "%s", cv_errname(cases[i].err));
    }
    cr_assert(cv_status_retry_after(CV_STATUS_RESOURCE_EXHAUSTED));
    cr_assert(cv_status_retry_after(CV_STATUS_UNAVAILABLE));
    cr_assert(!cv_status_retry_after(CV_STATUS_DEADLINE_EXCEEDED));
    cr_assert_str_eq(cv_status_name((enum cv_status)999), "INTERNAL");
}


Test(errors, auth_rows)
{
    /* docs/protocol.md's rows for token-guarded endpoints (the inspector's actions). */
    cr_assert_str_eq(cv_err_status(CV_EAUTH), "UNAUTHENTICATED");
    cr_assert_eq(cv_err_http(CV_EAUTH), 401);
    cr_assert_str_eq(cv_err_status(CV_EPERM), "PERMISSION_DENIED");
    cr_assert_eq(cv_err_http(CV_EPERM), 403);
    cr_assert(!cv_err_retryable(CV_EAUTH) && !cv_err_retryable(CV_EPERM));
    cr_assert(!cv_err_reroute(CV_EAUTH) && !cv_err_reroute(CV_EPERM));
    cr_assert_eq(cv_status_http(CV_STATUS_UNAUTHENTICATED), 401);
    cr_assert_eq(cv_status_http(CV_STATUS_PERMISSION_DENIED), 403);
    cr_assert(!cv_status_retry_after(CV_STATUS_UNAUTHENTICATED));
    cr_assert_str_eq(cv_errname(CV_EPERM), "CV_EPERM");
}

/* ---------------------------------------------------------------- the state-machine helper */

enum { T_ON, T_OFF, T_GONE, T_N };
static const struct cv_sm_state t_states[T_N] = {
    [T_ON] = {"on", CV_SM_INITIAL, CV_SM_BIT(T_OFF)},
    [T_OFF] = {"off", 0, CV_SM_BIT(T_ON) | CV_SM_BIT(T_GONE)},
    [T_GONE] = {"gone", CV_SM_FINAL, 0},
};
static const struct cv_sm_conf t_conf = {"toggle", t_states, T_N};

struct toggle {
    struct cv_sm sm;
    int flips;
};

static const char *toggle_inv(const struct cv_sm *m, int prev)
{
    const struct toggle *t = (const struct toggle *)m; /* sm is the first member */
    if (prev == T_ON && m->state == T_OFF && t->flips < 1) return "flipped off without counting";
    return NULL;
}

Test(sm, moves_through_the_table)
{
    cr_assert_eq(cv_sm_conf_check(&t_conf), 0);
    struct toggle t = {0};
    cv_sm_init(&t.sm, &t_conf, T_ON, toggle_inv, "t1");
    t.flips++;
    cv_sm_move(&t.sm, T_OFF);
    cv_sm_move(&t.sm, T_ON);
    t.flips++;
    cv_sm_move(&t.sm, T_OFF);
    cv_sm_move(&t.sm, T_GONE);
    cr_assert_eq(cv_sm_state(&t.sm), T_GONE);
    cv_sm_fini(&t.sm);
    cr_assert(cv_sm_allowed(&t_conf, T_OFF, T_GONE));
    cr_assert(!cv_sm_allowed(&t_conf, T_ON, T_GONE));
    cr_assert(!cv_sm_allowed(&t_conf, T_ON, 99));
    cr_assert_str_eq(cv_sm_state_name(&t_conf, T_OFF), "off");
    cr_assert_str_eq(cv_sm_state_name(&t_conf, -1), "?");
}

Test(sm, conf_check_finds_bad_tables)
{
    static const struct cv_sm_state no_initial[2] = {{"a", 0, CV_SM_BIT(1)}, {"b", 0, 0}};
    static const struct cv_sm_state out_of_range[2] = {{"a", CV_SM_INITIAL, CV_SM_BIT(5)}, {"b", 0, 0}};
    static const struct cv_sm_state unnamed[2] = {{"a", CV_SM_INITIAL, 0}, {NULL, 0, 0}};
    cr_assert_neq(cv_sm_conf_check(&(struct cv_sm_conf){"x", no_initial, 2}), 0);
    cr_assert_eq(cv_sm_conf_check(&(struct cv_sm_conf){"x", out_of_range, 2}), 1);
    cr_assert_eq(cv_sm_conf_check(&(struct cv_sm_conf){"x", unnamed, 2}), 2);
}

#ifdef CV_CHECKS
Test(sm, illegal_move_aborts_in_debug_builds, .signal = SIGABRT)
{
    struct toggle t = {0};
    cv_sm_init(&t.sm, &t_conf, T_ON, toggle_inv, "t2");
    t.flips++;
    cv_sm_move(&t.sm, T_GONE); /* on -> gone is not in the table */
}

Test(sm, broken_invariant_aborts_in_debug_builds, .signal = SIGABRT)
{
    struct toggle t = {0};
    cv_sm_init(&t.sm, &t_conf, T_ON, toggle_inv, "t3");
    cv_sm_move(&t.sm, T_OFF); /* flips not counted */
}

Test(sm, ending_in_a_non_final_state_aborts, .signal = SIGABRT)
{
    struct toggle t = {0};
    cv_sm_init(&t.sm, &t_conf, T_ON, toggle_inv, "t4");
    cv_sm_fini(&t.sm);
}
#endif

/* FNV-1a 64-bit: the reference vectors (Fowler/Noll/Vo test suite), and continuing a hash over pieces
 * equals hashing their concatenation (the config fingerprint hashes its canonical text piece by piece). */
Test(hash, fnv1a64_known_vectors)
{
    cr_assert_eq(cv_fnv1a64("", 0), 0xcbf29ce484222325ull);
    cr_assert_eq(cv_fnv1a64("", 0), CV_FNV64_OFFSET);
    cr_assert_eq(cv_fnv1a64("a", 1), 0xaf63dc4c8601ec8cull);
    cr_assert_eq(cv_fnv1a64("foobar", 6), 0x85944171f73967e8ull);
    cr_assert_eq(cv_fnv1a64("\0", 1), 0xaf63bd4c8601b7dfull, "bytes, not C strings");
    uint64_t h = cv_fnv1a64_more(CV_FNV64_OFFSET, "foo", 3);
    cr_assert_eq(cv_fnv1a64_more(h, "bar", 3), cv_fnv1a64("foobar", 6));
    cr_assert_eq(cv_fnv1a64_more(h, "", 0), h);
}

/* ---- constrained assignment (fixed owners, eligibility) ----------------------------------------- */

/* The fixed owner a shard really has: fixed[s] if that node is eligible, else none (balanced). */
static int32_t fixed_owner(const int32_t *fixed, uint32_t s, const uint8_t *elig, uint32_t n)
{
    return fixed && fixed[s] >= 0 && (uint32_t)fixed[s] < n && elig[fixed[s]] ? fixed[s] : CV_ASSIGN_NONE;
}

/* The minimum moves of any result meeting cv_assign_constrained's guarantees, computed by a linear scan
 * for the fill level instead of the implementation's search: fixed shards not on their owner move;
 * the unfixed ones fill eligible nodes to a level L (a node with F_i >= L gets none); node i keeps at
 * most min(c_i, base_i) and each +1 of the R left over keeps one more where c_i > base_i. */
static uint32_t min_moves_constrained(const int32_t *cur, const int32_t *fixed, uint32_t shards,
                                      const uint8_t *elig, uint32_t n)
{
    uint32_t F[MAXN] = {0}, c[MAXN] = {0}, unfixed = 0, moved = 0, E = 0;
    for (uint32_t i = 0; i < n; i++) E += elig[i] != 0;
    if (E == 0) {
        for (uint32_t s = 0; s < shards; s++) moved += cur[s] != CV_ASSIGN_NONE;
        return moved;
    }
    for (uint32_t s = 0; s < shards; s++) {
        int32_t f = fixed_owner(fixed, s, elig, n);
        if (f >= 0) {
            F[f]++;
            moved += cur[s] != f;
        } else {
            unfixed++;
            if (cur[s] >= 0 && (uint32_t)cur[s] < n && elig[cur[s]]) c[cur[s]]++;
        }
    }
    uint32_t L = 0;
    for (;;) { /* the highest level whose fill fits */
        uint64_t need = 0;
        for (uint32_t i = 0; i < n; i++)
            if (elig[i] && F[i] < L + 1) need += L + 1 - F[i];
        if (need > unfixed) break;
        L++;
    }
    uint32_t kept = 0, gain = 0, left = unfixed;
    for (uint32_t i = 0; i < n; i++) {
        if (!elig[i]) continue;
        uint32_t base = F[i] < L ? L - F[i] : 0;
        left -= base;
        kept += c[i] < base ? c[i] : base;
        gain += F[i] <= L && c[i] > base;
    }
    kept += left < gain ? left : gain;
    return moved + unfixed - kept;
}

/* Runs cv_assign_constrained and checks every guarantee of assign.h; map becomes the result. */
static uint32_t constrained_checked(int32_t *map, const int32_t *fixed, uint32_t shards, const uint8_t *elig,
                                    uint32_t n)
{
    int32_t *out = malloc((shards + 1) * sizeof *out), *again = malloc((shards + 1) * sizeof *again);
    uint32_t load[MAXN] = {0}, unf[MAXN] = {0}, E = 0, want = min_moves_constrained(map, fixed, shards, elig, n);
    cr_assert(out && again);
    uint32_t moved = cv_assign_constrained(map, fixed, shards, elig, n, out);
    cr_assert_eq(cv_assign_constrained(map, fixed, shards, elig, n, again), moved, "deterministic return");
    cr_assert_eq(memcmp(out, again, shards * sizeof *out), 0, "deterministic result");
    cr_assert_eq(moved, count_changed(map, out, shards), "return value = shards whose owner changed");
    cr_assert_eq(moved, want, "moved %u, minimum is %u", moved, want);
    for (uint32_t i = 0; i < n; i++) E += elig[i] != 0;
    for (uint32_t s = 0; s < shards; s++) {
        if (E == 0) {
            cr_assert_eq(out[s], CV_ASSIGN_NONE);
            continue;
        }
        int32_t f = fixed_owner(fixed, s, elig, n);
        if (f >= 0) cr_assert_eq(out[s], f, "shard %u is fixed to %d", s, f);
        cr_assert(out[s] >= 0 && (uint32_t)out[s] < n && elig[out[s]], "shard %u owner %d not eligible", s, out[s]);
        load[out[s]]++;
        unf[out[s]] += f < 0;
    }
    /* Balance: a node that got an unfixed shard is at most one above the least loaded eligible node. */
    uint32_t lo = UINT32_MAX;
    for (uint32_t i = 0; i < n; i++)
        if (elig[i] && load[i] < lo) lo = load[i];
    for (uint32_t i = 0; i < n; i++)
        if (elig[i] && unf[i] > 0) cr_assert_leq(load[i], lo + 1, "node %u: load %u, least %u", i, load[i], lo);
    memcpy(map, out, shards * sizeof *out);
    free(out);
    free(again);
    return moved;
}

Test(assign, constrained_without_fixed_is_cv_assign_shards)
{
    uint64_t seed = 7;
    for (int round = 0; round < 300; round++) {
        uint32_t n = 1 + (uint32_t)(rng_next(&seed) % 12), shards = (uint32_t)(rng_next(&seed) % 300);
        int32_t map[300], fixed[300], a[300], b[300], c[300];
        uint8_t live[12];
        for (uint32_t i = 0; i < n; i++) live[i] = rng_next(&seed) % 4 != 0;
        for (uint32_t s = 0; s < shards; s++) {
            map[s] = (int32_t)(rng_next(&seed) % (n + 2)) - 1;
            fixed[s] = CV_ASSIGN_NONE;
        }
        uint32_t ma = cv_assign_shards(map, shards, live, n, a);
        cr_assert_eq(cv_assign_constrained(map, NULL, shards, live, n, b), ma);
        cr_assert_eq(cv_assign_constrained(map, fixed, shards, live, n, c), ma);
        cr_assert_eq(memcmp(a, b, shards * sizeof *a), 0);
        cr_assert_eq(memcmp(a, c, shards * sizeof *a), 0);
    }
}

Test(assign, constrained_fixed_shards_count_in_the_load)
{
    enum { N = CV_ASSIGN_NONE };
    /* 12 shards over 3 nodes, 4 fixed to node 0: node 0 takes no other shard, 1 and 2 take 4 each. */
    int32_t map[12], fixed[12];
    uint8_t elig[3] = {1, 1, 1};
    for (int s = 0; s < 12; s++) {
        map[s] = N;
        fixed[s] = s < 4 ? 0 : N;
    }
    cr_assert_eq(constrained_checked(map, fixed, 12, elig, 3), 12u);
    cr_assert_eq(owned_by(map, 12, 0), 4u);
    cr_assert_eq(owned_by(map, 12, 1), 4u);
    cr_assert_eq(owned_by(map, 12, 2), 4u);
    /* 8 of 10 fixed to node 0: it is over-full, node 1 gets the other 2 (shard 8 leaves node 0). */
    int32_t m2[10], f2[10];
    uint8_t e2[2] = {1, 1};
    for (int s = 0; s < 10; s++) {
        m2[s] = s % 2;
        f2[s] = s < 8 ? 0 : N;
    }
    cr_assert_eq(constrained_checked(m2, f2, 10, e2, 2), 5u, "1, 3, 5, 7 move to node 0, 8 to node 1");
    cr_assert_eq(owned_by(m2, 10, 0), 8u);
    cr_assert_eq(m2[8], 1);
    cr_assert_eq(m2[9], 1);
    cr_assert_eq(m2[8 - 8], 0);
}

Test(assign, constrained_ineligible_nodes_keep_only_what_is_fixed_to_eligible_nodes)
{
    enum { N = CV_ASSIGN_NONE };
    /* Node 1 drains (ineligible, still live): its shards go to 0 and 2; a shard fixed to node 1 is not
     * honoured (a fixed owner must be eligible). */
    int32_t map[9] = {0, 0, 0, 1, 1, 1, 2, 2, 2}, fixed[9] = {N, N, N, 1, N, N, N, N, N};
    uint8_t elig[3] = {1, 0, 1};
    cr_assert_eq(constrained_checked(map, fixed, 9, elig, 3), 3u);
    cr_assert_eq(owned_by(map, 9, 1), 0u);
    cr_assert_eq(owned_by(map, 9, 0) + owned_by(map, 9, 2), 9u);
    /* Nothing eligible: nothing owns anything, fixed or not. */
    uint8_t none[3] = {0, 0, 0};
    int32_t f2[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};
    cr_assert_eq(cv_assign_constrained(map, f2, 9, none, 3, map), 9u);
    for (int s = 0; s < 9; s++) cr_assert_eq(map[s], N);
}

Test(assign, constrained_move_one_shard_moves_only_it)
{
    /* A balanced map; fixing one shard to another node moves that shard and, to rebalance, one shard of
     * the receiving node's at most. */
    enum { S = 64, NN = 3 };
    int32_t map[S], fixed[S];
    uint8_t elig[NN] = {1, 1, 1};
    for (int s = 0; s < S; s++) {
        map[s] = CV_ASSIGN_NONE;
        fixed[s] = CV_ASSIGN_NONE;
    }
    constrained_checked(map, NULL, S, elig, NN);
    int32_t was = map[5], to = (was + 1) % NN;
    fixed[5] = to;
    uint32_t moved = constrained_checked(map, fixed, S, elig, NN);
    cr_assert_eq(map[5], to);
    cr_assert_leq(moved, 2u);
    cr_assert_eq(constrained_checked(map, fixed, S, elig, NN), 0u, "stable once applied");
}

/* Seeded random walk: eligibility flips, shards get fixed and unfixed (also to ineligible nodes and out
 * of range), the map follows every result; constrained_checked checks each step against the minimum. */
static void random_constrained_walk(uint32_t shards, uint64_t seed, int steps)
{
    enum { NN = 10 };
    int32_t *map = malloc(shards * sizeof *map), *fixed = malloc(shards * sizeof *fixed);
    uint8_t elig[NN] = {0};
    cr_assert(map && fixed);
    fill_none(map, shards);
    fill_none(fixed, shards);
    for (int step = 0; step < steps; step++) {
        switch (rng_next(&seed) % 4) {
        case 0: elig[rng_next(&seed) % NN] ^= 1; break;
        case 1:
        case 2: {
            uint32_t k = 1 + (uint32_t)(rng_next(&seed) % 4);
            for (uint32_t j = 0; j < k; j++) {
                uint32_t s = (uint32_t)(rng_next(&seed) % shards);
                fixed[s] = rng_next(&seed) % 3 ? (int32_t)(rng_next(&seed) % (NN + 1)) : CV_ASSIGN_NONE;
            }
            break;
        }
        default: fixed[rng_next(&seed) % shards] = CV_ASSIGN_NONE;
        }
        constrained_checked(map, fixed, shards, elig, NN);
    }
    free(map);
    free(fixed);
}

Test(assign, constrained_random_walk_64_shards) { random_constrained_walk(64, 0xabcdef12345ull, 1500); }

Test(assign, constrained_random_walk_8192_shards) { random_constrained_walk(8192, 0x1234567abcull, 300); }

Test(assign, constrained_random_arbitrary_inputs)
{
    uint64_t seed = 99;
    for (int round = 0; round < 1000; round++) {
        uint32_t n = 1 + (uint32_t)(rng_next(&seed) % 8), shards = (uint32_t)(rng_next(&seed) % 200);
        uint32_t skew = 1 + (uint32_t)(rng_next(&seed) % n);
        int32_t map[200], fixed[200];
        uint8_t elig[8];
        for (uint32_t i = 0; i < n; i++) elig[i] = rng_next(&seed) % 4 != 0;
        for (uint32_t s = 0; s < shards; s++) {
            uint64_t v = rng_next(&seed) % 16;
            map[s] = v == 0 ? CV_ASSIGN_NONE : v == 1 ? (int32_t)n + 3 : (int32_t)(rng_next(&seed) % skew);
            v = rng_next(&seed) % 10;
            fixed[s] = v < 6 ? CV_ASSIGN_NONE : v < 9 ? (int32_t)(rng_next(&seed) % skew) : (int32_t)n + 1;
        }
        constrained_checked(map, fixed, shards, elig, n);
    }
}

/* ---- access: Goverse's object access / lifecycle rules (issue 14) ---- */

TestSuite(access, .fini = cv_lsan_check);

Test(access, patterns_literal_regex_anchored_absent)
{
    struct cv_pattern lit, re, any, bad;
    char err[200] = "";
    cr_assert_eq(cv_pattern_init(&lit, "ExactMatch", err, sizeof err), 0);
    cr_assert(cv_pattern_match(&lit, "ExactMatch"));
    cr_assert_not(cv_pattern_match(&lit, "ExactMatchExtra"));
    cr_assert_not(cv_pattern_match(&lit, "exactmatch"));
    cr_assert_eq(cv_pattern_init(&re, "/ChatRoom-[a-zA-Z0-9_-]+/", err, sizeof err), 0);
    cr_assert(cv_pattern_match(&re, "ChatRoom-General"));
    cr_assert_not(cv_pattern_match(&re, "ChatRoom-"));
    cr_assert_not(cv_pattern_match(&re, "PrefixChatRoom-x")); /* anchored at the start */
    cr_assert_not(cv_pattern_match(&re, "ChatRoom-x y"));     /* ... and at the end */
    cr_assert_eq(cv_pattern_init(&any, NULL, err, sizeof err), 0);
    cr_assert(cv_pattern_match(&any, ""));
    cr_assert(cv_pattern_match(&any, "whatever"));
    cr_assert_eq(cv_pattern_init(&bad, "/(a/", err, sizeof err), CV_EINVAL);
    cr_assert_not_null(strstr(err, "/(a/"));
    cr_assert_eq(cv_pattern_init(&bad, "/", err, sizeof err), 0); /* too short for /re/: a literal "/" */
    cr_assert(cv_pattern_match(&bad, "/"));
    cv_pattern_free(&bad);
    cv_pattern_free(&lit);
    cv_pattern_free(&re);
    cv_pattern_free(&any);
}

Test(access, levels)
{
    enum cv_access a;
    cr_assert_eq(cv_access_parse("INTERNAL", &a), 0);
    cr_assert_eq(a, CV_ACCESS_INTERNAL);
    cr_assert_eq(cv_access_parse("allow", &a), CV_EINVAL);
    cr_assert_not(cv_access_lets(CV_ACCESS_REJECT, false));
    cr_assert_not(cv_access_lets(CV_ACCESS_REJECT, true));
    cr_assert(cv_access_lets(CV_ACCESS_INTERNAL, true));
    cr_assert_not(cv_access_lets(CV_ACCESS_INTERNAL, false));
    cr_assert(cv_access_lets(CV_ACCESS_EXTERNAL, false));
    cr_assert_not(cv_access_lets(CV_ACCESS_EXTERNAL, true));
    cr_assert(cv_access_lets(CV_ACCESS_ALLOW, true) && cv_access_lets(CV_ACCESS_ALLOW, false));
    int op;
    cr_assert_eq(cv_life_parse("ALL", &op), 0);
    cr_assert_eq(op, CV_LIFE_CREATE | CV_LIFE_DELETE);
}

static void rule(struct cv_access_rule *r, const char *type, const char *id, const char *method, enum cv_access a,
                 int life)
{
    char err[200];
    cr_assert_eq(cv_pattern_init(&r->type, type, err, sizeof err), 0);
    cr_assert_eq(cv_pattern_init(&r->id, id, err, sizeof err), 0);
    cr_assert_eq(cv_pattern_init(&r->method, method, err, sizeof err), 0);
    r->access = a;
    r->life = life;
}

Test(access, first_match_wins_and_defaults)
{
    struct cv_access_rules rs = {.calls = calloc(3, sizeof(struct cv_access_rule)), .n_calls = 3,
                                 .life = calloc(2, sizeof(struct cv_access_rule)), .n_life = 2};
    rule(&rs.calls[0], "/Chat.*/", NULL, "Join", CV_ACCESS_ALLOW, 0);
    rule(&rs.calls[1], "/Chat.*/", NULL, NULL, CV_ACCESS_INTERNAL, 0);
    rule(&rs.calls[2], "Counter", "/c-[0-9]+/", "Only", CV_ACCESS_EXTERNAL, 0);
    rule(&rs.life[0], "Chat", NULL, NULL, CV_ACCESS_ALLOW, CV_LIFE_DELETE);
    rule(&rs.life[1], "Sched", NULL, NULL, CV_ACCESS_INTERNAL, CV_LIFE_ALL);
    cr_assert_eq(cv_access_call(&rs, "ChatRoom", "r1", "Join", false), 0);
    cr_assert_eq(cv_access_call(&rs, "ChatRoom", "r1", "Notify", false), CV_EPERM);
    cr_assert_eq(cv_access_call(&rs, "ChatRoom", "r1", "Notify", true), 0);
    cr_assert_eq(cv_access_call(&rs, "Counter", "c-1", "Only", false), 0);
    cr_assert_eq(cv_access_call(&rs, "Counter", "c-1", "Only", true), CV_EPERM);
    cr_assert_eq(cv_access_call(&rs, "Counter", "x", "Only", false), CV_EPERM); /* no match: denied */
    cr_assert_eq(cv_access_life(&rs, CV_LIFE_CREATE, "Chat", "a", false), 0);  /* no CREATE match: allowed */
    cr_assert_eq(cv_access_life(&rs, CV_LIFE_DELETE, "Chat", "a", false), 0);
    cr_assert_eq(cv_access_life(&rs, CV_LIFE_DELETE, "Other", "a", false), CV_EPERM); /* no DELETE match */
    cr_assert_eq(cv_access_life(&rs, CV_LIFE_DELETE, "Other", "a", true), 0);
    cr_assert_eq(cv_access_life(&rs, CV_LIFE_CREATE, "Sched", "a", false), CV_EPERM);
    cr_assert_eq(cv_access_life(&rs, CV_LIFE_CREATE, "Sched", "a", true), 0);
    struct cv_access_rules none = {0};
    cr_assert_eq(cv_access_call(&none, "X", "y", "z", false), 0); /* no rules: as before */
    cr_assert_eq(cv_access_life(NULL, CV_LIFE_DELETE, "X", "y", false), 0);
    cv_access_rules_free(&rs);
}
