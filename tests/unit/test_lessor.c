/* The leader's lease rounds (core/lessor.h), driven directly: what a round grants, when, and what it
 * never grants. */
#include <criterion/criterion.h>
#include <string.h>

#include "core/lessor.h"
#include "cverse/error.h"

static struct {
    uint64_t token[64];
    int status[64];
    size_t n;
} got;

static void answer(void *data, uint64_t token, int status)
{
    (void)data;
    cr_assert_lt(got.n, 64);
    got.token[got.n] = token;
    got.status[got.n++] = status;
}

/* The catalog's view: "dead" is declared dead there, "gone" is no member, every other node is alive in
 * its incarnation 1. */
static int standing(void *data, const char *node_id, uint64_t incarnation)
{
    (void)data;
    if (!strcmp(node_id, "gone")) return CV_ENOTFOUND;
    return !strcmp(node_id, "dead") || incarnation != 1 ? CV_ECONFLICT : 0;
}

static struct cv_lessor L;
static const char *const V3[] = {"a", "b", "c"};

static void setup(void)
{
    memset(&got, 0, sizeof got);
    cv_lessor_init(&L, answer, standing, NULL, "test");
}

static void teardown(void)
{
    cv_lessor_fini(&L);
}

/* Leading term 5 since t=1000, barrier applied. */
static void lead(void)
{
    cv_lessor_lead(&L, 5, 1000);
    cv_lessor_barrier(&L, 5);
    cr_assert_eq(cv_lessor_state(&L), CV_LESSOR_IDLE);
}

TestSuite(lessor, .init = setup, .fini = teardown);

Test(lessor, the_table_is_well_formed)
{
    cr_assert_eq(cv_sm_conf_check(cv_lessor_sm()), 0);
}

Test(lessor, a_follower_refuses_renewals)
{
    cr_assert_eq(cv_lessor_renew(&L, "x", 1, 1, 10), CV_ENOTLEADER);
    cr_assert_not(cv_lessor_round_due(&L));
    cr_assert_eq(got.n, 0);
}

Test(lessor, nothing_is_granted_before_the_barrier)
{
    cv_lessor_lead(&L, 5, 1000);
    cr_assert_eq(cv_lessor_renew(&L, "x", 1, 1, 1001), 0);
    cr_assert_not(cv_lessor_round_due(&L), "no round before an entry of our term applied");
    uint64_t r;
    cr_assert_eq(cv_lessor_round_start(&L, "a", V3, 3, 1002, &r), CV_EINVAL);
    cv_lessor_barrier(&L, 4); /* an older term's entry is no barrier */
    cr_assert_not(cv_lessor_round_due(&L));
    cv_lessor_barrier(&L, 5);
    cr_assert(cv_lessor_round_due(&L));
    cr_assert_eq(got.n, 0);
}

Test(lessor, a_majority_grants_what_arrived_before_the_round)
{
    lead();
    cr_assert_eq(cv_lessor_renew(&L, "x", 1, 1, 1100), 0);
    cr_assert_eq(cv_lessor_renew(&L, "y", 1, 2, 1110), 0);
    uint64_t r;
    cr_assert_eq(cv_lessor_round_start(&L, "a", V3, 3, 1120, &r), 0);
    cr_assert_eq(cv_lessor_state(&L), CV_LESSOR_CONFIRMING);
    cr_assert_eq(cv_lessor_renew(&L, "z", 1, 3, 1121), 0, "arrives during the round");
    cr_assert_not(cv_lessor_round_due(&L), "one round at a time");
    cv_lessor_confirm(&L, r, "b", true); /* a + b: 2 of 3 */
    cr_assert_eq(got.n, 2);
    cr_assert_eq(got.token[0], 1);
    cr_assert_eq(got.status[0], 0);
    cr_assert_eq(got.token[1], 2);
    cr_assert_eq(cv_lessor_seen(&L, "x"), 1100, "seen is the renewal's arrival, not the grant");
    cr_assert_eq(cv_lessor_seen(&L, "y"), 1110);
    cr_assert_eq(cv_lessor_seen(&L, "z"), 0, "not granted yet");
    cr_assert(cv_lessor_round_due(&L), "z waits for the next round");
    cv_lessor_confirm(&L, r, "c", true); /* late answer of a finished round */
    cr_assert_eq(got.n, 2);
    cr_assert_eq(cv_lessor_round_start(&L, "a", V3, 3, 1200, &r), 0);
    cv_lessor_confirm(&L, r, "c", true);
    cr_assert_eq(got.n, 3);
    cr_assert_eq(got.token[2], 3);
    cr_assert_eq(cv_lessor_seen(&L, "z"), 1121);
}

Test(lessor, one_yes_is_not_a_majority_of_five_and_a_voter_counts_once)
{
    static const char *const v5[] = {"a", "b", "c", "d", "e"};
    lead();
    cv_lessor_renew(&L, "x", 1, 1, 1100);
    uint64_t r;
    cv_lessor_round_start(&L, "a", v5, 5, 1101, &r);
    cv_lessor_confirm(&L, r, "b", true);
    cv_lessor_confirm(&L, r, "b", true); /* twice */
    cv_lessor_confirm(&L, r, "zz", true); /* never asked */
    cv_lessor_confirm(&L, r + 1, "c", true); /* another round */
    cr_assert_eq(got.n, 0, "a + b is 2 of 5");
    cv_lessor_confirm(&L, r, "c", true);
    cr_assert_eq(got.n, 1);
}

Test(lessor, no_majority_left_or_a_timeout_ends_the_round_and_the_renewals_wait)
{
    lead();
    cv_lessor_renew(&L, "x", 1, 1, 1100);
    uint64_t r;
    cv_lessor_round_start(&L, "a", V3, 3, 1101, &r);
    cv_lessor_confirm(&L, r, "b", false);
    cr_assert_eq(cv_lessor_state(&L), CV_LESSOR_CONFIRMING, "a + c can still make it: one no is not the end");
    cv_lessor_confirm(&L, r, "c", true);
    cr_assert_eq(got.n, 1, "a and c granted it");
    cv_lessor_renew(&L, "x", 1, 2, 1150);
    cv_lessor_round_start(&L, "a", V3, 3, 1160, &r);
    cv_lessor_confirm(&L, r, "b", false);
    cv_lessor_confirm(&L, r, "c", false);
    cr_assert_eq(cv_lessor_state(&L), CV_LESSOR_IDLE, "two no's of three: out of reach");
    cr_assert_eq(got.n, 1);
    cr_assert(cv_lessor_round_due(&L));
    cv_lessor_round_start(&L, "a", V3, 3, 1200, &r);
    cv_lessor_round_failed(&L, r);
    cr_assert_eq(got.n, 1);
    cr_assert(cv_lessor_round_due(&L));
}

Test(lessor, losing_leadership_answers_everything_not_leader_and_forgets)
{
    lead();
    cv_lessor_renew(&L, "x", 1, 1, 1100);
    uint64_t r;
    cv_lessor_round_start(&L, "a", V3, 3, 1101, &r);
    cv_lessor_confirm(&L, r, "b", true);
    cr_assert_eq(cv_lessor_seen(&L, "x"), 1100);
    cv_lessor_renew(&L, "x", 1, 2, 1150);
    cv_lessor_follow(&L);
    cr_assert_eq(got.n, 2);
    cr_assert_eq(got.status[1], CV_ENOTLEADER);
    cr_assert_eq(cv_lessor_renew(&L, "x", 1, 3, 1160), CV_ENOTLEADER);
    cv_lessor_lead(&L, 7, 2000);
    cr_assert_eq(cv_lessor_seen(&L, "x"), 0, "a new term counts every node from its start");
}

Test(lessor, a_node_declared_dead_is_refused_until_it_registers)
{
    lead();
    cv_lessor_renew(&L, "x", 1, 1, 1100);
    cv_lessor_renew(&L, "y", 1, 2, 1101);
    cv_lessor_expire(&L, "x");
    cr_assert_eq(got.n, 1);
    cr_assert_eq(got.token[0], 1);
    cr_assert_eq(got.status[0], CV_ECONFLICT);
    cr_assert_eq(cv_lessor_renew(&L, "x", 1, 3, 1102), CV_ECONFLICT);
    uint64_t r;
    cv_lessor_round_start(&L, "a", V3, 3, 1103, &r);
    cv_lessor_confirm(&L, r, "c", true);
    cr_assert_eq(got.n, 2, "y granted");
    cr_assert_eq(cv_lessor_seen(&L, "x"), 0);
    cv_lessor_registered(&L, "x");
    cr_assert_eq(cv_lessor_renew(&L, "x", 1, 4, 1104), 0);
    cv_lessor_expire(&L, "x");
    cv_lessor_lead(&L, 6, 2000);
    cr_assert_eq(cv_lessor_renew(&L, "x", 1, 5, 2001), 0, "a new term forgets the mark (the catalog decides)");
}

Test(lessor, a_single_voter_grants_at_once)
{
    static const char *const v1[] = {"a"};
    lead();
    cv_lessor_renew(&L, "a", 1, 1, 1100);
    uint64_t r;
    cr_assert_eq(cv_lessor_round_start(&L, "a", v1, 1, 1100, &r), 0);
    cr_assert_eq(got.n, 1);
    cr_assert_eq(cv_lessor_state(&L), CV_LESSOR_IDLE);
}

Test(lessor, a_leader_that_is_not_a_voter_needs_a_majority_of_the_others)
{
    lead();
    cv_lessor_renew(&L, "x", 1, 1, 1100);
    uint64_t r;
    cv_lessor_round_start(&L, "s", V3, 3, 1101, &r); /* "s" (a removed voter) leads */
    cv_lessor_confirm(&L, r, "a", true);
    cr_assert_eq(got.n, 0);
    cv_lessor_confirm(&L, r, "b", true);
    cr_assert_eq(got.n, 1);
}

Test(lessor, fini_answers_what_waits)
{
    lead();
    cv_lessor_renew(&L, "x", 1, 9, 1100);
    cv_lessor_fini(&L);
    cr_assert_eq(got.n, 1);
    cr_assert_eq(got.status[0], CV_ENOTLEADER);
    cv_lessor_init(&L, answer, standing, NULL, "again"); /* for teardown */
}

/* A new leader never saw the expiry an earlier leader applied: the catalog's word decides at grant time. */
Test(lessor, a_node_the_catalog_holds_dead_or_unknown_is_not_granted)
{
    lead();
    cr_assert_eq(cv_lessor_renew(&L, "dead", 1, 1, 1100), 0);
    cr_assert_eq(cv_lessor_renew(&L, "gone", 1, 2, 1100), 0);
    cr_assert_eq(cv_lessor_renew(&L, "x", 1, 3, 1100), 0);
    uint64_t round;
    cr_assert_eq(cv_lessor_round_start(&L, "a", V3, 3, 1200, &round), 0);
    cv_lessor_confirm(&L, round, "b", true);
    cr_assert_eq(got.n, 3);
    cr_assert_eq(got.status[0], CV_ECONFLICT);
    cr_assert_eq(got.status[1], CV_ENOTFOUND);
    cr_assert_eq(got.status[2], 0);
    cr_assert_eq(cv_lessor_seen(&L, "dead"), 0, "a refused renewal counts for nothing");
    cr_assert_eq(cv_lessor_seen(&L, "x"), 1100);
}

/* A voter the leader cannot name (a member it has no record of) still counts toward the majority. */
Test(lessor, voters_without_a_name_count_toward_the_majority_and_duplicates_once)
{
    static const char *const v4[] = {"a", "b", "#3", "#4"}; /* two voters nobody can ask */
    lead();
    cv_lessor_renew(&L, "x", 1, 1, 1100);
    uint64_t r;
    cv_lessor_round_start(&L, "a", v4, 4, 1101, &r);
    cv_lessor_confirm(&L, r, "b", true);
    cr_assert_eq(got.n, 0, "a + b is 2 of 4, not a majority");
    cr_assert_eq(cv_lessor_state(&L), CV_LESSOR_CONFIRMING);
    cv_lessor_round_failed(&L, r);
    static const char *const dup[] = {"a", "b", "b", "c"}; /* 3 voters, b listed twice */
    cv_lessor_round_start(&L, "a", dup, 4, 1200, &r);
    cv_lessor_confirm(&L, r, "b", true);
    cr_assert_eq(got.n, 1, "a + b is 2 of 3");
}

/* Arrival order decides, not the millisecond: a renewal that came after the round started, even in the
 * same millisecond, waits for the next round. */
Test(lessor, a_renewal_after_the_start_in_the_same_millisecond_waits)
{
    lead();
    cv_lessor_renew(&L, "x", 1, 1, 1100);
    uint64_t r;
    cv_lessor_round_start(&L, "a", V3, 3, 1100, &r);
    cv_lessor_renew(&L, "y", 1, 2, 1100);
    cv_lessor_confirm(&L, r, "b", true);
    cr_assert_eq(got.n, 1);
    cr_assert_eq(got.token[0], 1);
    cr_assert(cv_lessor_round_due(&L), "y waits");
}

Test(lessor, renewals_older_than_the_ttl_are_answered_timed_out)
{
    lead();
    cv_lessor_renew(&L, "x", 1, 1, 1100);
    cv_lessor_renew(&L, "y", 1, 2, 1500);
    cv_lessor_prune(&L, 1800, 700);
    cr_assert_eq(got.n, 0, "700 ms old: not older than the TTL yet");
    cv_lessor_prune(&L, 1801, 700);
    cr_assert_eq(got.n, 1);
    cr_assert_eq(got.token[0], 1);
    cr_assert_eq(got.status[0], CV_ETIMEDOUT);
    cr_assert(cv_lessor_round_due(&L), "y still waits");
}

/* A renewal of a replaced incarnation (a zombie process of the node) is refused at grant time. */
Test(lessor, a_replaced_incarnation_is_not_granted)
{
    lead();
    cv_lessor_renew(&L, "x", 2, 1, 1100);
    uint64_t r;
    cv_lessor_round_start(&L, "a", V3, 3, 1101, &r);
    cv_lessor_confirm(&L, r, "b", true);
    cr_assert_eq(got.n, 1);
    cr_assert_eq(got.status[0], CV_ECONFLICT);
    cr_assert_eq(cv_lessor_seen(&L, "x"), 0);
}
