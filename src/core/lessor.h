/* The leader's lease rounds (pure): node leases renewed without raft log entries. A renewal waits for a
 * round; a round asks the other voters whether this leader still leads its term; once a majority (this
 * leader included) said yes, every renewal that arrived before the round started is granted.
 *
 * Why a round, and why "arrived before it started" (the proof in full: docs/architecture.md, "Leases and
 * liveness"): a voter answers yes only while it follows this leader in
 * this term, so it has not voted in a later term yet. Any later leader needs the votes of a majority,
 * which shares a voter with the round's majority; that voter voted after its yes, which came after the
 * round started. So every later leader took over after the round started, after every renewal the round
 * grants was sent; a new leader counts every node from its own start at the least (node/leader.c), so
 * none of these windows can outlast its count. The majority is of ALL the voters, named or not.
 *
 * A leader grants nothing before an entry of its own term applied (cv_lessor_barrier): then every
 * ExpireNode in its log from an earlier term has applied (the node is dead in the catalog: refused by
 * standing), and one missing from it can never commit; an expiry is never proposed again under another
 * leader or term (cv_consensus_propose_in_term), so no grant of ours can be overtaken by an older
 * leader's expiry.
 *
 * All times are this process' monotonic clock (ms). Nothing here does I/O: the caller sends the
 * confirmations and the answers (answer callback). */
#ifndef CV_CORE_LESSOR_H
#define CV_CORE_LESSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/sm.h"

/* FOLLOWER: not leading (renewals refused: CV_ENOTLEADER); BARRIER: leading, no entry of our term
 * applied yet (renewals wait); IDLE: leading, no round in flight; CONFIRMING: a round in flight. */
enum cv_lessor_state { CV_LESSOR_FOLLOWER, CV_LESSOR_BARRIER, CV_LESSOR_IDLE, CV_LESSOR_CONFIRMING, CV_LESSOR_N };

#define CV_LESSOR_ID_MAX 64 /* node ids: CV_NODE_ID_MAX */

/* A renewal's outcome, given to the answer callback exactly once per accepted cv_lessor_renew: 0
 * (granted: the node's window runs from the instant it sent the renewal), CV_ENOTLEADER (leadership
 * lost before a round granted it: ask the new leader), CV_ECONFLICT (the node is being declared dead:
 * register again). token: the caller's, as given to cv_lessor_renew. */
typedef void (*cv_lessor_answer_cb)(void *data, uint64_t token, int status);
/* Whether incarnation `incarnation` of node_id may be granted a renewal now, by the replicated state
 * (the catalog): 0, CV_ECONFLICT (declared dead there, or that incarnation was replaced: it must
 * register again), CV_ENOTFOUND (not a member). Asked at grant time, so after the leadership barrier: an
 * earlier leader's expiry has applied by then, and a new leader that never saw it still refuses the dead
 * node. NULL: every node stands. */
typedef int (*cv_lessor_standing_cb)(void *data, const char *node_id, uint64_t incarnation);

struct cv_lessor_node {
    char id[CV_LESSOR_ID_MAX];
    uint64_t seen_ms; /* arrival of its latest renewal this leader granted in this term (0: none) */
    bool dead;        /* this leader declared it dead in this term (cv_lessor_expire), not registered since */
};

struct cv_lessor_req {
    uint64_t token;
    size_t node; /* index in nodes */
    uint64_t incarnation;
    uint64_t arrived_ms;
    uint64_t seq; /* arrival order: a round grants the renewals that arrived before it started */
};

struct cv_lessor {
    struct cv_sm sm;
    cv_lessor_answer_cb answer;
    cv_lessor_standing_cb standing;
    void *data;
    uint64_t term, since_ms;   /* leading: our term and when we took over */
    uint64_t round;            /* id of the current (or last) round */
    uint64_t round_start_ms;   /* CONFIRMING: when the round's confirmations were sent */
    uint64_t round_start_seq;  /* CONFIRMING: the first renewal seq that arrived after that */
    uint64_t next_seq;
    unsigned needed, yes;      /* CONFIRMING: majority of the voters, yes so far (ourselves included) */
    unsigned unanswered;       /* CONFIRMING: voters asked that have not answered yet */
    char (*asked)[CV_LESSOR_ID_MAX]; /* owned: the voters asked in this round, "" once answered */
    size_t n_asked, cap_asked;
    struct cv_lessor_node *nodes; /* owned */
    size_t n_nodes, cap_nodes;
    struct cv_lessor_req *reqs;   /* owned: renewals waiting for a round, in arrival order */
    size_t n_reqs, cap_reqs;
};

const struct cv_sm_conf *cv_lessor_sm(void);
/* Starts FOLLOWER. answer/standing/data: borrowed, valid while l is used. name: for the state machine's
 * messages (borrowed likewise). */
void cv_lessor_init(struct cv_lessor *l, cv_lessor_answer_cb answer, cv_lessor_standing_cb standing, void *data,
                    const char *name);
/* Answers every waiting renewal CV_ENOTLEADER and frees what l owns. */
void cv_lessor_fini(struct cv_lessor *l);

/* This process became leader of term at now (BARRIER): what an earlier term granted or declared dead is
 * forgotten (the catalog's standing answers for expiries that applied). */
void cv_lessor_lead(struct cv_lessor *l, uint64_t term, uint64_t now_ms);
/* An entry of term applied here (our leadership barrier): renewals may be granted from now on. */
void cv_lessor_barrier(struct cv_lessor *l, uint64_t term);
/* Leadership lost: every waiting renewal is answered CV_ENOTLEADER; FOLLOWER. */
void cv_lessor_follow(struct cv_lessor *l);

/* A renewal of node_id (its incarnation, as the node knows it) arrived at now. 0: it waits for a round
 * (answered later, once); CV_ENOTLEADER (FOLLOWER), CV_ECONFLICT (the node is dead here), CV_ENOMEM:
 * refused now, no answer will follow. A second renewal of a node already waiting replaces nothing: both
 * are answered by the same round. */
int cv_lessor_renew(struct cv_lessor *l, const char *node_id, uint64_t incarnation, uint64_t token,
                    uint64_t now_ms);
/* Answers CV_ETIMEDOUT every renewal that has waited longer than max_age_ms (its sender gave up on it:
 * a renewal older than the lease TTL opens no window), so that waiting renewals stay bounded when rounds
 * keep failing. */
void cv_lessor_prune(struct cv_lessor *l, uint64_t now_ms, uint64_t max_age_ms);

/* Whether a round should start: IDLE with renewals waiting. */
bool cv_lessor_round_due(const struct cv_lessor *l);
/* Starts a round at now (IDLE only) among ALL the cluster's voters (a voter the caller cannot name still
 * counts toward the majority: give it a name no answer will carry); self counts as a yes when it is one
 * of them; duplicates count once. The caller sends a confirmation carrying (term, *round) to every other
 * voter listed. voters: borrowed for the call. A majority of one (a single voter: ourselves) grants at
 * once. 0, CV_EINVAL (not IDLE, or no voters), CV_ENOMEM. */
int cv_lessor_round_start(struct cv_lessor *l, const char *self_id, const char *const *voters, size_t n_voters,
                          uint64_t now_ms, uint64_t *round);
/* A voter answered round (yes: it follows us in our term). A majority of yes grants every renewal that
 * arrived before the round started (by arrival order, not by the clock's millisecond) (each node's seen becomes that renewal's arrival) whose node stands (else it is answered with the
 * standing's code); the rest
 * wait for the next round. Enough no's that a majority is out of reach end the round (IDLE: renewals wait
 * for the next one). Answers of other rounds, or a second answer of a voter, change nothing. */
void cv_lessor_confirm(struct cv_lessor *l, uint64_t round, const char *voter, bool yes);
/* The round got no majority in time: IDLE, renewals wait for the next round. */
void cv_lessor_round_failed(struct cv_lessor *l, uint64_t round);

/* When this leader granted node_id's latest renewal (arrival time), 0 if it granted none in its term. */
uint64_t cv_lessor_seen(const struct cv_lessor *l, const char *node_id);
/* The leader decided to declare node_id dead: its waiting renewals are answered CV_ECONFLICT and later
 * ones refused until cv_lessor_registered (or a new term). */
void cv_lessor_expire(struct cv_lessor *l, const char *node_id);
/* node_id registered again (its RegisterNode applied after its expiry), or the expiry certainly did not
 * apply (refused, overwritten, never appended): its renewals may be granted again. */
void cv_lessor_registered(struct cv_lessor *l, const char *node_id);

static inline enum cv_lessor_state cv_lessor_state(const struct cv_lessor *l)
{
    return (enum cv_lessor_state)cv_sm_state(&l->sm);
}

#endif
