/* The shard lifecycle (pure): a shard record's state, the moves between states and the handoff rules. */
#ifndef CV_CORE_SHARD_H
#define CV_CORE_SHARD_H

#include <stdbool.h>
#include <stdint.h>

#include "core/sm.h"

/* A shard record is (owner, epoch, released_by, released_epoch) in the catalog (proto ShardRecord);
 * its state also depends on whether the nodes it names are alive (their lease was not declared
 * expired). docs/architecture.md, "Shard moves", describes the two-phase handoff these states encode.
 *
 *   UNASSIGNED     no owner, nobody to wait for (a shard never assigned: epoch 0)
 *   OWNED          owner X, alive
 *   OWNER_DEAD     owner X declared dead: the shard may be given to another node straight away.
 *                  Transient at most: ExpireNode unassigns a dead node's shards in its own entry, so
 *                  only an AssignShards to a node that died before it committed (or a record from an
 *                  older version) reaches it, and X's RegisterNode unassigns it (-> RELEASING)
 *   RELEASING      unassigned from X (released_by = X), X alive and not confirmed yet
 *                  (released_epoch != epoch): nobody may own it until X confirmed or died
 *   RELEASER_DEAD  as RELEASING, but X was declared dead before it confirmed: not waited for
 *   RELEASED       X confirmed with ReleaseShards (released_epoch == epoch): ready for its next owner
 *
 * A command changes the record (AssignShards, ReleaseShards; ExpireNode and the RegisterNode of a dead
 * node unassign that node's shards); a lease change (RegisterNode, RenewLease, ExpireNode) changes the
 * liveness of the nodes it names. The table (cv_shard_sm) allows
 * every move either can make; it is deliberately no stricter than the catalog, which accepts any
 * assignment whose epoch matches. The handoff protocol (a live owner releases first, a live releaser
 * is waited for) is what the leader follows: cv_shard_step. A record's operator fields (target, pinned;
 * MoveShard, PinShard) change no owner and no epoch: they are not part of the state, only of what the
 * leader's assignment aims for (core/assign.h, cv_assign_constrained). */
enum cv_shard_state {
    CV_SHARD_UNASSIGNED,
    CV_SHARD_OWNED,
    CV_SHARD_OWNER_DEAD,
    CV_SHARD_RELEASING,
    CV_SHARD_RELEASER_DEAD,
    CV_SHARD_RELEASED,
    CV_SHARD__COUNT
};

/* The transition table (for cv_sm_allowed / cv_sm_state_name; a shard's state is derived from its
 * record, so there is no cv_sm instance). UNASSIGNED is the only initial state; none is final. */
extern const struct cv_sm_conf cv_shard_sm;

/* What the state depends on, taken from a record and the liveness of the nodes it names. */
struct cv_shard_view {
    bool owner;              /* the record names an owner */
    bool owner_live;         /* ... and that node is alive (meaningless without an owner) */
    uint64_t epoch;          /* bumped on every owner change */
    bool released_by;        /* the record names the node the shard was unassigned from */
    bool releaser_live;      /* ... and that node is alive */
    uint64_t released_epoch; /* == epoch: released_by confirmed */
};

/* The state of a record. Total: a record that breaks the invariants (e.g. an owner and a pending
 * release at once) gets the safe reading, in this order: a live owner owns it; else a live node that
 * has not confirmed its release is waited for; else a dead owner may be replaced; else released_by
 * decides (confirmed, or dead); else it is unassigned. cv_assign_handoff relies on exactly this order. */
enum cv_shard_state cv_shard_state(const struct cv_shard_view *v);

/* NULL when the record is consistent, else a static description of what broke: released_epoch past
 * the epoch, an owner with epoch 0, an owned shard with a pending release (released_by set), a
 * released_by with epoch 0, or a released_epoch without released_by. Liveness plays no part. */
const char *cv_shard_invariant(const struct cv_shard_view *v);

/* A command's effect on one record, checked in debug builds (CV_CHECKS): `to` must be consistent and
 * the move from `from` must be in the table, both taken under the same liveness. On a violation logs
 * what (with the shard number and `what`, e.g. "assign") and aborts: a bug, never input. No-op in
 * release builds. */
void cv_shard_check_move(uint32_t shard, const char *what, const struct cv_shard_view *from,
                         const struct cv_shard_view *to);

/* ---- predicates for the places that act on a shard's state ---- */

/* May the shard be given a new owner now (without waiting for anybody)? UNASSIGNED, OWNER_DEAD,
 * RELEASER_DEAD, RELEASED. OWNED: its live owner releases it first; RELEASING: wait. */
bool cv_shard_may_assign(enum cv_shard_state s);

/* Does the node named released_by still have to confirm the release (propose ReleaseShards at the
 * current epoch)? RELEASING and RELEASER_DEAD (a node declared dead but still running confirms too:
 * the catalog accepts it, and it keeps the record tidy). */
bool cv_shard_must_confirm(enum cv_shard_state s);

/* Does a live node's release hold the shard unassigned? RELEASING only. */
static inline bool cv_shard_waits(enum cv_shard_state s)
{
    return s == CV_SHARD_RELEASING;
}

/* Two-phase handoff: what the leader proposes for a shard whose target owner differs from its owner. */
enum cv_shard_step {
    CV_SHARD_STEP_RELEASE, /* OWNED: unassign it first (phase 1); its owner deactivates and confirms */
    CV_SHARD_STEP_WAIT,    /* RELEASING: propose nothing until the releaser confirmed or died */
    CV_SHARD_STEP_ASSIGN,  /* the rest: give it its target owner now (phase 2, or from a dead owner) */
};
enum cv_shard_step cv_shard_step(enum cv_shard_state s);

#endif
