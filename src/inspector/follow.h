/* The inspector's follower of a node's catalog change feed (GET /v1/events): turns its entries into the
 * inspector's events (moves with their duration) and tells when the feed has a gap. Pure: no I/O. */
#ifndef CV_INSPECTOR_FOLLOW_H
#define CV_INSPECTOR_FOLLOW_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "inspector/model.h"

struct cv_insp_follow {
    bool have_cursor;   /* a first answer set the cursor */
    uint64_t cursor;    /* every change up to this applied index was turned into events */
    uint32_t n_shards;
    uint64_t *unassigned_ms; /* [n_shards] when the shard was taken from its owner (0: not pending) */
    char (*unassigned_from)[64];
    uint64_t *unassigned_epoch;
};

/* What one answer did. */
enum cv_insp_follow_result {
    CV_INSP_FOLLOW_FIRST,  /* the first answer: it set the cursor (history before it is the snapshot's) */
    CV_INSP_FOLLOW_OK,     /* every change since the cursor became events */
    CV_INSP_FOLLOW_GAP,    /* changes after the cursor fell out of the node's ring: the cursor jumps to the
                            * node's applied index; the caller diffs snapshots and emits a resync */
    CV_INSP_FOLLOW_BAD,    /* not a feed answer: nothing changed */
};

int cv_insp_follow_init(struct cv_insp_follow *f, uint32_t n_shards);
void cv_insp_follow_free(struct cv_insp_follow *f);
/* The query for the next read: after=cursor (0 before the first answer). */
uint64_t cv_insp_follow_after(const struct cv_insp_follow *f);
/* Takes one /v1/events answer (borrowed) read with after = cv_insp_follow_after: emits node_registered,
 * node_expired, node_drain, node_role, leader_changed, shard_target, shard_pinned and shard_moved (from the
 * owner it was taken from, to the new one, with duration_ms from the unassignment to the new owner, null
 * for a direct reassignment such as a dead owner's shard; at
 * most max_moves, then one shards_moved summary) events, each with the feed's "index". */
enum cv_insp_follow_result cv_insp_follow_take(struct cv_insp_follow *f, const json_t *doc, size_t max_moves,
                                               cv_insp_emit_fn emit, void *data);

#endif
