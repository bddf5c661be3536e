/* The shard lifecycle: derives a shard's state from its record and its nodes' liveness, lists the moves
 * the catalog's commands and lease changes may make, and answers the handoff questions of the leader
 * and of a releasing node.
 *
 * Happy path of a move away from a live node X to Y (two AssignShards entries and one ReleaseShards):
 *   OWNED(X) --assign ""--> RELEASING(X) --X: release--> RELEASED --assign Y--> OWNED(Y).
 * X declared dead on the way: its ExpireNode unassigns what it owns, OWNED -> RELEASER_DEAD --assign
 * Y--> OWNED(Y), and RELEASING -> RELEASER_DEAD --assign Y--> OWNED(Y); nobody waits for a dead node
 * (lease fencing keeps it from serving), and a dead node that registers again owns nothing.
 *
 * Failure modes: none here (pure). A record that breaks an invariant still gets a state (the safe
 * reading, see cv_shard_state); cv_shard_check_move aborts in debug builds on a move the table lacks or
 * a record that breaks an invariant, because only a bug in a command produces one. */
#include "core/shard.h"

#include <stdio.h>
#include <stdlib.h>

#define B CV_SM_BIT
/* Every owner change may land on a live or a dead node (the catalog accepts any known node), so each
 * "-> OWNED" comes with "-> OWNER_DEAD". Lease changes flip OWNED <-> OWNER_DEAD and
 * RELEASING <-> RELEASER_DEAD; and a node declared dead owns nothing: ExpireNode unassigns its shards in
 * the same entry (OWNED -> RELEASER_DEAD), a RegisterNode of a dead node unassigns what an AssignShards
 * gave it after its death (OWNER_DEAD -> RELEASING), so a new incarnation never inherits a shard. */
static const struct cv_sm_state shard__states[CV_SHARD__COUNT] = {
    [CV_SHARD_UNASSIGNED] = {"unassigned", CV_SM_INITIAL, B(CV_SHARD_OWNED) | B(CV_SHARD_OWNER_DEAD)},
    [CV_SHARD_OWNED] = {"owned", 0,
                        B(CV_SHARD_OWNED) | B(CV_SHARD_OWNER_DEAD) | B(CV_SHARD_RELEASING) |
                            B(CV_SHARD_RELEASER_DEAD)},
    [CV_SHARD_OWNER_DEAD] = {"owner-dead", 0,
                             B(CV_SHARD_OWNED) | B(CV_SHARD_OWNER_DEAD) | B(CV_SHARD_RELEASER_DEAD) |
                                 B(CV_SHARD_RELEASING)},
    [CV_SHARD_RELEASING] = {"releasing", 0,
                            B(CV_SHARD_RELEASED) | B(CV_SHARD_RELEASER_DEAD) | B(CV_SHARD_OWNED) |
                                B(CV_SHARD_OWNER_DEAD)},
    [CV_SHARD_RELEASER_DEAD] = {"releaser-dead", 0,
                                B(CV_SHARD_RELEASED) | B(CV_SHARD_RELEASING) | B(CV_SHARD_OWNED) |
                                    B(CV_SHARD_OWNER_DEAD)},
    [CV_SHARD_RELEASED] = {"released", 0, B(CV_SHARD_OWNED) | B(CV_SHARD_OWNER_DEAD)},
};
#undef B

const struct cv_sm_conf cv_shard_sm = {"shard", shard__states, CV_SHARD__COUNT};

enum cv_shard_state cv_shard_state(const struct cv_shard_view *v)
{
    bool pending = v->released_by && v->released_epoch != v->epoch;
    if (v->owner && v->owner_live) return CV_SHARD_OWNED;
    if (pending && v->releaser_live) return CV_SHARD_RELEASING;
    if (v->owner) return CV_SHARD_OWNER_DEAD;
    if (pending) return CV_SHARD_RELEASER_DEAD;
    return v->released_by ? CV_SHARD_RELEASED : CV_SHARD_UNASSIGNED;
}

const char *cv_shard_invariant(const struct cv_shard_view *v)
{
    if (v->released_epoch > v->epoch) return "released_epoch past the epoch";
    if (v->owner && v->epoch == 0) return "owned shard with epoch 0";
    if (v->owner && v->released_by) return "owned shard waits for a release";
    if (v->released_by && v->epoch == 0) return "release pending at epoch 0";
    if (!v->released_by && v->released_epoch != 0) return "released_epoch without released_by";
    return NULL;
}

void cv_shard_check_move(uint32_t shard, const char *what, const struct cv_shard_view *from,
                         const struct cv_shard_view *to)
{
#ifdef CV_CHECKS
    enum cv_shard_state a = cv_shard_state(from), b = cv_shard_state(to);
    const char *bad = cv_shard_invariant(to);
    if (!bad && !cv_sm_allowed(&cv_shard_sm, (int)a, (int)b)) bad = "illegal transition";
    if (!bad) return;
    fprintf(stderr, "cverse: shard %u: %s: %s (%s -> %s)\n", shard, what, bad,
            cv_sm_state_name(&cv_shard_sm, (int)a), cv_sm_state_name(&cv_shard_sm, (int)b));
    abort();
#else
    (void)shard, (void)what, (void)from, (void)to;
#endif
}

bool cv_shard_may_assign(enum cv_shard_state s)
{
    return s == CV_SHARD_UNASSIGNED || s == CV_SHARD_OWNER_DEAD || s == CV_SHARD_RELEASER_DEAD ||
           s == CV_SHARD_RELEASED;
}

bool cv_shard_must_confirm(enum cv_shard_state s)
{
    return s == CV_SHARD_RELEASING || s == CV_SHARD_RELEASER_DEAD;
}

enum cv_shard_step cv_shard_step(enum cv_shard_state s)
{
    if (s == CV_SHARD_OWNED) return CV_SHARD_STEP_RELEASE;
    return cv_shard_waits(s) ? CV_SHARD_STEP_WAIT : CV_SHARD_STEP_ASSIGN;
}
