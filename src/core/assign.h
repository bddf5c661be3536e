/* Shard assignment: balanced (max - min <= 1) and minimal-movement mapping of shards to live nodes,
 * optionally with shards fixed to a node. Pure: no I/O, no allocation beyond what the caller passes in. */
#ifndef CV_CORE_ASSIGN_H
#define CV_CORE_ASSIGN_H

#include <stdint.h>

/* Owners are small integers: an index into the caller's node table, or CV_ASSIGN_NONE. */
#define CV_ASSIGN_NONE (-1)

/* Computes the new owner of every shard.
 *   cur[shards]: current owner of each shard (an index < n_nodes, or CV_ASSIGN_NONE).
 *   live[n_nodes]: nonzero for nodes that may own shards.
 *   out[shards]: the result (may alias cur).
 * Guarantees, when at least one node is live: every shard gets a live owner; the owned counts of live
 * nodes differ by at most 1; a shard keeps its owner whenever that is compatible with balance, so the
 * number of moved shards is the minimum possible. Deterministic: the same inputs give the same output
 * (ties broken by node index). With no live node, every shard becomes CV_ASSIGN_NONE.
 * Returns the number of shards whose owner changed.
 * Limits: shards up to 1,048,576 (any uint32 works; time is linear); n_nodes up to 1024, because the
 * scratch space is on the stack (16 bytes a node): nodes at index >= 1024 are treated as not live.
 * An owner in cur that is out of range or dead counts as no owner (the shard is reassigned). */
uint32_t cv_assign_shards(const int32_t *cur, uint32_t shards, const uint8_t *live, uint32_t n_nodes,
                          int32_t *out);

/* cv_assign_shards with constraints (docs/architecture.md, "Shard assignment"):
 *   fixed[shards] (NULL: none fixed): the owner a shard must get (an index < n_nodes), or
 *     CV_ASSIGN_NONE to balance it; a fixed owner that is not eligible (or out of range) counts as none;
 *   elig[n_nodes]: nonzero for nodes that may own shards (the leader: live and not draining).
 * Guarantees, when at least one node is eligible: every fixed shard gets its fixed owner; every other
 * shard gets an eligible owner; counting fixed shards in each node's load, the loads of eligible nodes
 * that are not over-full with fixed shards alone differ by at most 1, and a node over-full with fixed
 * shards gets no other shard; as many unfixed shards as that balance allows keep their owner (minimal
 * movement); deterministic. With no eligible node every shard becomes CV_ASSIGN_NONE. With fixed ==
 * NULL this is exactly cv_assign_shards (same result, same return). Returns the number of shards whose
 * owner changed. out may alias cur (not fixed). Same limits as cv_assign_shards. */
uint32_t cv_assign_constrained(const int32_t *cur, const int32_t *fixed, uint32_t shards, const uint8_t *elig,
                               uint32_t n_nodes, int32_t *out);

/* Two-phase handoff (docs/architecture.md, shard moves): of the target map next (from cv_assign_shards),
 * what may be proposed now, so that a shard's objects are never active on two live nodes.
 *   cur[shards]: current owners; next[shards]: targets;
 *   waiting[shards]: for an unassigned shard, the node it was taken from that has not confirmed the
 *     release of its objects yet (CV_ASSIGN_NONE: nobody to wait for);
 *   live[n_nodes]: as for cv_assign_shards; out[shards]: the result (may alias next, not cur).
 * Per shard: next == cur -> cur; cur is a live node -> CV_ASSIGN_NONE (phase 1: release); cur is none
 * or dead and waiting is a live node -> cur (unchanged: wait for the release, or for that node's lease
 * to expire); otherwise -> next (phase 2, or straight from a dead owner). That is cv_shard_step
 * (core/shard.h) of the shard's state: RELEASE, WAIT, ASSIGN.
 * Returns the number of shards with out != cur. Same node limit as cv_assign_shards. */
uint32_t cv_assign_handoff(const int32_t *cur, const int32_t *next, const int32_t *waiting, uint32_t shards,
                           const uint8_t *live, uint32_t n_nodes, int32_t *out);

#endif
