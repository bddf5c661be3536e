/* Unit tests for src/core/shard: the shard lifecycle's table, the state of every record shape, the
 * invariants, the predicates the leader and a releasing node use, and the debug check of a move. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>

#include "core/shard.h"

#define S(x) CV_SHARD_##x

Test(shard, table_is_well_formed_and_named)
{
    cr_assert_eq(cv_sm_conf_check(&cv_shard_sm), 0);
    cr_assert_eq(cv_shard_sm.n_states, CV_SHARD__COUNT);
    cr_assert_str_eq(cv_sm_state_name(&cv_shard_sm, S(UNASSIGNED)), "unassigned");
    cr_assert_str_eq(cv_sm_state_name(&cv_shard_sm, S(RELEASER_DEAD)), "releaser-dead");
    for (int s = 0; s < CV_SHARD__COUNT; s++) {
        bool initial = cv_shard_sm.states[s].flags & CV_SM_INITIAL;
        cr_assert_eq(initial, s == S(UNASSIGNED), "state %d", s);
    }
}

/* The table, as the lifecycle documentation states it: every allowed pair and nothing else. */
Test(shard, table_allows_exactly_the_documented_moves)
{
    static const int moves[][2] = {
        /* assign from scratch */
        {S(UNASSIGNED), S(OWNED)},
        {S(UNASSIGNED), S(OWNER_DEAD)},
        /* live owner: moved straight (the catalog accepts it), declared dead, unassigned (phase 1) */
        {S(OWNED), S(OWNED)},
        {S(OWNED), S(OWNER_DEAD)},
        {S(OWNED), S(RELEASING)},
        /* ... declared dead: ExpireNode unassigns its shards in the same entry */
        {S(OWNED), S(RELEASER_DEAD)},
        /* dead owner: replaced straight away, renews, unassigned (ExpireNode, or its RegisterNode
         * unassigns what an AssignShards gave it after its death: never owned by the new incarnation) */
        {S(OWNER_DEAD), S(OWNED)},
        {S(OWNER_DEAD), S(OWNER_DEAD)},
        {S(OWNER_DEAD), S(RELEASER_DEAD)},
        {S(OWNER_DEAD), S(RELEASING)},
        /* releasing: confirmed, the releaser dies, or assigned anyway (accepted, never proposed) */
        {S(RELEASING), S(RELEASED)},
        {S(RELEASING), S(RELEASER_DEAD)},
        {S(RELEASING), S(OWNED)},
        {S(RELEASING), S(OWNER_DEAD)},
        /* the releaser died: a late confirmation, it renews, the next owner (phase 2) */
        {S(RELEASER_DEAD), S(RELEASED)},
        {S(RELEASER_DEAD), S(RELEASING)},
        {S(RELEASER_DEAD), S(OWNED)},
        {S(RELEASER_DEAD), S(OWNER_DEAD)},
        /* released: the next owner (phase 2) */
        {S(RELEASED), S(OWNED)},
        {S(RELEASED), S(OWNER_DEAD)},
    };
    bool want[CV_SHARD__COUNT][CV_SHARD__COUNT] = {{false}};
    for (size_t i = 0; i < sizeof moves / sizeof moves[0]; i++)
        want[moves[i][0]][moves[i][1]] = true;
    for (int a = 0; a < CV_SHARD__COUNT; a++)
        for (int b = 0; b < CV_SHARD__COUNT; b++)
            cr_assert_eq(cv_sm_allowed(&cv_shard_sm, a, b), want[a][b], "%s -> %s",
                         cv_sm_state_name(&cv_shard_sm, a), cv_sm_state_name(&cv_shard_sm, b));
    /* Never back to "never assigned", never from released back to releasing. */
    cr_assert(!cv_sm_allowed(&cv_shard_sm, S(RELEASED), S(UNASSIGNED)));
    cr_assert(!cv_sm_allowed(&cv_shard_sm, S(RELEASED), S(RELEASING)));
    cr_assert(!cv_sm_allowed(&cv_shard_sm, S(OWNED), S(RELEASED)), "a release needs the unassignment first");
}

/* Every combination of the view's fields: presence and liveness of both nodes, and the epochs
 * (0, 1, 2 for each: confirmed, unconfirmed, released_epoch past the epoch). */
Test(shard, state_of_every_record_shape)
{
    int seen[CV_SHARD__COUNT] = {0};
    for (int bits = 0; bits < 16; bits++) {
        for (uint64_t e = 0; e < 3; e++) {
            for (uint64_t re = 0; re < 3; re++) {
                struct cv_shard_view v = {.owner = bits & 1,
                                          .owner_live = bits & 2,
                                          .epoch = e,
                                          .released_by = bits & 4,
                                          .releaser_live = bits & 8,
                                          .released_epoch = re};
                bool pending = v.released_by && re != e;
                enum cv_shard_state want;
                if (v.owner && v.owner_live)
                    want = S(OWNED);
                else if (pending && v.releaser_live)
                    want = S(RELEASING);
                else if (v.owner)
                    want = S(OWNER_DEAD);
                else if (pending)
                    want = S(RELEASER_DEAD);
                else if (v.released_by)
                    want = S(RELEASED);
                else
                    want = S(UNASSIGNED);
                enum cv_shard_state got = cv_shard_state(&v);
                cr_assert_eq(got, want, "bits %x epoch %llu released_epoch %llu", bits, (unsigned long long)e,
                             (unsigned long long)re);
                bool consistent = cv_shard_invariant(&v) == NULL;
                bool want_consistent = re <= e && !(v.owner && e == 0) && !(v.owner && v.released_by) &&
                                       !(v.released_by && e == 0) && !(!v.released_by && re != 0);
                cr_assert_eq(consistent, want_consistent, "bits %x epoch %llu released_epoch %llu", bits,
                             (unsigned long long)e, (unsigned long long)re);
                if (consistent) seen[got]++;
            }
        }
    }
    for (int s = 0; s < CV_SHARD__COUNT; s++)
        cr_assert_gt(seen[s], 0, "no consistent record is %d", s);
}

Test(shard, consistent_records_name_their_state)
{
    struct cv_shard_view never = {0};
    struct cv_shard_view owned = {.owner = true, .owner_live = true, .epoch = 1};
    struct cv_shard_view releasing = {.epoch = 2, .released_by = true, .releaser_live = true};
    struct cv_shard_view released = {.epoch = 2, .released_by = true, .released_epoch = 2};
    cr_assert_eq(cv_shard_state(&never), S(UNASSIGNED));
    cr_assert_eq(cv_shard_state(&owned), S(OWNED));
    owned.owner_live = false;
    cr_assert_eq(cv_shard_state(&owned), S(OWNER_DEAD));
    cr_assert_eq(cv_shard_state(&releasing), S(RELEASING));
    releasing.releaser_live = false;
    cr_assert_eq(cv_shard_state(&releasing), S(RELEASER_DEAD));
    cr_assert_eq(cv_shard_state(&released), S(RELEASED));
    released.releaser_live = true; /* liveness does not matter once confirmed */
    cr_assert_eq(cv_shard_state(&released), S(RELEASED));
    cr_assert_str_eq(cv_shard_invariant(&(struct cv_shard_view){.epoch = 1, .released_epoch = 2}),
                     "released_epoch past the epoch");
    cr_assert_str_eq(
        cv_shard_invariant(&(struct cv_shard_view){.owner = true, .epoch = 3, .released_by = true}),
        "owned shard waits for a release");
}

Test(shard, predicates)
{
    /* state: may_assign, must_confirm, waits, step */
    static const struct {
        int s;
        bool assign, confirm, waits;
        enum cv_shard_step step;
    } rows[] = {
        {S(UNASSIGNED), true, false, false, CV_SHARD_STEP_ASSIGN},
        {S(OWNED), false, false, false, CV_SHARD_STEP_RELEASE},
        {S(OWNER_DEAD), true, false, false, CV_SHARD_STEP_ASSIGN},
        {S(RELEASING), false, true, true, CV_SHARD_STEP_WAIT},
        {S(RELEASER_DEAD), true, true, false, CV_SHARD_STEP_ASSIGN},
        {S(RELEASED), true, false, false, CV_SHARD_STEP_ASSIGN},
    };
    cr_assert_eq(sizeof rows / sizeof rows[0], CV_SHARD__COUNT);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        enum cv_shard_state s = (enum cv_shard_state)rows[i].s;
        const char *name = cv_sm_state_name(&cv_shard_sm, rows[i].s);
        cr_assert_eq(cv_shard_may_assign(s), rows[i].assign, "%s", name);
        cr_assert_eq(cv_shard_must_confirm(s), rows[i].confirm, "%s", name);
        cr_assert_eq(cv_shard_waits(s), rows[i].waits, "%s", name);
        cr_assert_eq(cv_shard_step(s), rows[i].step, "%s", name);
        /* Assigning now and waiting exclude each other; an owned shard is neither. */
        cr_assert(!(cv_shard_may_assign(s) && cv_shard_waits(s)), "%s", name);
    }
}

/* The full lifecycle through legal moves: cv_shard_check_move returns for each. */
Test(shard, check_move_accepts_the_lifecycle)
{
    struct cv_shard_view never = {0}, a = {.owner = true, .owner_live = true, .epoch = 1};
    struct cv_shard_view rel = {.epoch = 2, .released_by = true, .releaser_live = true};
    struct cv_shard_view done = {.epoch = 2, .released_by = true, .releaser_live = true, .released_epoch = 2};
    struct cv_shard_view b = {.owner = true, .owner_live = true, .epoch = 3};
    cv_shard_check_move(0, "assign", &never, &a);
    cv_shard_check_move(0, "assign", &a, &rel);
    cv_shard_check_move(0, "release", &rel, &done);
    cv_shard_check_move(0, "assign", &done, &b);
    struct cv_shard_view rel_dead = rel;
    rel_dead.releaser_live = false;
    cv_shard_check_move(0, "assign", &rel_dead, &b); /* the releaser died mid-release */
    cr_assert_eq(cv_shard_state(&b), S(OWNED));
}

#ifdef CV_CHECKS
Test(shard, check_move_aborts_on_an_illegal_move, .signal = SIGABRT)
{
    struct cv_shard_view a = {.owner = true, .owner_live = true, .epoch = 1};
    struct cv_shard_view done = {.epoch = 1, .released_by = true, .released_epoch = 1};
    cv_shard_check_move(7, "test", &a, &done); /* owned -> released without the unassignment */
}

Test(shard, check_move_aborts_on_a_broken_record, .signal = SIGABRT)
{
    struct cv_shard_view never = {0};
    struct cv_shard_view bad = {.owner = true, .owner_live = true, .epoch = 0};
    cv_shard_check_move(7, "test", &never, &bad); /* owned at epoch 0 */
}
#endif
