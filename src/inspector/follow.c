/* The inspector's follower of a node's catalog change feed.
 *
 * Happy path: the poller reads GET /v1/events?after=CURSOR from one node each round; every entry becomes
 * an event of the inspector, in the order the catalog applied them, so a shard moved twice within a
 * second shows both moves. A shard taken from its owner (shard_unassigned) is remembered with the time;
 * when it gets its new owner (shard_assigned) one shard_moved event says from whom to whom and how long
 * the handoff took. The cursor then advances to the node's applied index (or to the last entry's index
 * when the answer was one page of several). The log indices are the same on every node, so after a
 * failover the next node continues from the same cursor.
 *
 * Failure modes: an answer whose first_index is above cursor + 1 (the node's ring dropped changes, or the
 * node restarted) is a gap: the cursor jumps and the caller falls back to diffing snapshots and emits a
 * resync; an answer that is not a feed is ignored (the next round asks again). */
#include "inspector/follow.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"

int cv_insp_follow_init(struct cv_insp_follow *f, uint32_t n_shards)
{
    *f = (struct cv_insp_follow){.n_shards = n_shards};
    size_t n = n_shards ? n_shards : 1;
    f->unassigned_ms = calloc(n, sizeof *f->unassigned_ms);
    f->unassigned_from = calloc(n, sizeof *f->unassigned_from);
    f->unassigned_epoch = calloc(n, sizeof *f->unassigned_epoch);
    if (f->unassigned_ms && f->unassigned_from && f->unassigned_epoch) return 0;
    cv_insp_follow_free(f);
    return CV_ENOMEM;
}

void cv_insp_follow_free(struct cv_insp_follow *f)
{
    free(f->unassigned_ms);
    free(f->unassigned_from);
    free(f->unassigned_epoch);
    f->unassigned_ms = NULL;
    f->unassigned_from = NULL;
    f->unassigned_epoch = NULL;
}

uint64_t cv_insp_follow_after(const struct cv_insp_follow *f)
{
    return f->have_cursor ? f->cursor : 0;
}

static uint64_t num(const json_t *o, const char *k)
{
    json_int_t v = json_integer_value(json_object_get(o, k));
    return v > 0 ? (uint64_t)v : 0;
}

/* Emits type with the entry's fields (those listed) plus its index. */
static void follow__pass(const json_t *e, const char *type, const char *const *keys, cv_insp_emit_fn emit,
                         void *data)
{
    json_t *f = json_object();
    for (const char *const *k = keys; *k; k++) {
        json_t *v = json_object_get(e, *k);
        if (v) json_object_set(f, *k, v);
    }
    json_object_set(f, "index", json_object_get(e, "index"));
    emit(data, type, f);
    json_decref(f);
}

struct moves {
    size_t n, max;
};

static void follow__assigned(struct cv_insp_follow *f, const json_t *e, uint32_t s, struct moves *mv,
                             cv_insp_emit_fn emit, void *data)
{
    const char *from = json_string_value(json_object_get(e, "from"));
    uint64_t prev_epoch = num(e, "old_epoch");
    json_t *duration = json_null(); /* a direct reassignment (its owner declared dead): no handoff to time */
    if (f->unassigned_ms[s]) { /* the handoff: taken from its owner, now given to the next */
        from = f->unassigned_from[s];
        prev_epoch = f->unassigned_epoch[s];
        uint64_t t = num(e, "time_ms");
        duration = json_integer(t > f->unassigned_ms[s] ? (json_int_t)(t - f->unassigned_ms[s]) : 0);
        f->unassigned_ms[s] = 0;
    }
    if (mv->n++ >= mv->max) {
        json_decref(duration);
        return;
    }
    json_t *o = json_pack("{s:I,s:s?,s:O,s:I,s:I,s:o,s:O}", "shard", (json_int_t)s, "from", from, "to",
                          json_object_get(e, "to"), "epoch", (json_int_t)num(e, "epoch"), "previous_epoch",
                          (json_int_t)prev_epoch, "duration_ms", duration, "index",
                          json_object_get(e, "index"));
    emit(data, "shard_moved", o);
    json_decref(o);
}

static void follow__entry(struct cv_insp_follow *f, const json_t *e, struct moves *mv, cv_insp_emit_fn emit,
                          void *data)
{
    static const char *const node_keys[] = {"node", "incarnation", "drain", "role", NULL};
    static const char *const leader_keys[] = {"leader", "previous", "term", NULL};
    static const char *const shard_keys[] = {"shard", "from", "to", "pinned", NULL};
    const char *kind = json_string_value(json_object_get(e, "kind"));
    if (!kind) return;
    uint64_t s = num(e, "shard");
    if (!strncmp(kind, "node_", 5)) follow__pass(e, kind, node_keys, emit, data);
    else if (!strcmp(kind, "leader_changed")) follow__pass(e, kind, leader_keys, emit, data);
    else if (s >= f->n_shards) return;
    else if (!strcmp(kind, "shard_target") || !strcmp(kind, "shard_pinned"))
        follow__pass(e, kind, shard_keys, emit, data);
    else if (!strcmp(kind, "shard_unassigned")) {
        const char *from = json_string_value(json_object_get(e, "from"));
        f->unassigned_ms[s] = num(e, "time_ms") ? num(e, "time_ms") : 1;
        snprintf(f->unassigned_from[s], sizeof f->unassigned_from[s], "%s", from ? from : "");
        f->unassigned_epoch[s] = num(e, "old_epoch");
    } else if (!strcmp(kind, "shard_assigned")) {
        follow__assigned(f, e, (uint32_t)s, mv, emit, data);
    } /* shard_released: the old owner confirmed; the move completes with shard_assigned */
}

enum cv_insp_follow_result cv_insp_follow_take(struct cv_insp_follow *f, const json_t *doc, size_t max_moves,
                                               cv_insp_emit_fn emit, void *data)
{
    const json_t *events = json_object_get(doc, "events");
    if (!json_is_array(events) || !json_is_integer(json_object_get(doc, "first_index"))) return CV_INSP_FOLLOW_BAD;
    uint64_t first = num(doc, "first_index"), applied = num(doc, "applied_index");
    bool more = json_is_true(json_object_get(doc, "more"));
    size_t n = json_array_size(events);
    uint64_t last = n ? num(json_array_get(events, n - 1), "index") : 0;
    uint64_t next = more ? last : (applied > last ? applied : last);
    if (!f->have_cursor || f->cursor + 1 < first) {
        enum cv_insp_follow_result r = f->have_cursor ? CV_INSP_FOLLOW_GAP : CV_INSP_FOLLOW_FIRST;
        f->have_cursor = true;
        f->cursor = applied > last ? applied : last; /* what came before is the snapshot's */
        memset(f->unassigned_ms, 0, f->n_shards * sizeof *f->unassigned_ms);
        return r;
    }
    struct moves mv = {0, max_moves};
    size_t i;
    json_t *e;
    json_array_foreach(events, i, e) {
        if (num(e, "index") > f->cursor) follow__entry(f, e, &mv, emit, data);
    }
    if (mv.n > max_moves) {
        json_t *o = json_pack("{s:I,s:I}", "count", (json_int_t)mv.n, "not_listed", (json_int_t)(mv.n - max_moves));
        emit(data, "shards_moved", o);
        json_decref(o);
    }
    if (next > f->cursor) f->cursor = next;
    return CV_INSP_FOLLOW_OK;
}
