/* The node's catalog change feed: a bounded ring of recent applied catalog changes (GET /v1/events). */
#ifndef CV_NODE_FEED_H
#define CV_NODE_FEED_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "catalog/catalog.h"

struct cv_consensus;

#define CV_FEED_CAP 8192u   /* entries kept (fixed memory: ~48 bytes each) */
#define CV_FEED_NAMES 256u  /* node names the feed can tell apart ("?" after that) */
#define CV_FEED_PAGE 2000u  /* entries one answer carries (rounded up to a whole applied index) */

enum cv_feed_kind {
    CV_FEED_NODE_REGISTERED, /* node; epoch = its incarnation */
    CV_FEED_NODE_EXPIRED,    /* node: its lease expired, declared dead */
    CV_FEED_NODE_DRAIN,      /* node; flag = draining */
    CV_FEED_NODE_ROLE,       /* node; flag = Cverse__Catalog__Role */
    CV_FEED_SHARD_ASSIGNED,  /* shard from -> to (to != ""), old_epoch -> epoch */
    CV_FEED_SHARD_UNASSIGNED,/* shard from -> "" (the leader took it away), old_epoch -> epoch */
    CV_FEED_SHARD_RELEASED,  /* shard: node (the old owner) confirmed the release at epoch */
    CV_FEED_SHARD_TARGET,    /* shard: an operator's target from -> to ("" = none) */
    CV_FEED_SHARD_PINNED,    /* shard; flag = pinned */
    CV_FEED_LEADER,          /* node = the raft leader ("" unknown); epoch = term */
    CV_FEED_N_KINDS
};

/* One change; node/from/to are indices into the feed's name table (0 = ""). */
struct cv_feed_entry {
    uint64_t index;   /* the applied log index that made the change */
    uint64_t time_ms; /* this node's wall clock when it applied it */
    uint64_t old_epoch, epoch;
    uint32_t shard;
    uint16_t node, from, to;
    uint8_t kind, flag;
};

struct cv_feed;

/* A feed of cat's changes from its current applied index on (first_index is that + 1); reads its copy of
 * the shard map from cat (borrowed, only during the call). *out owned by the caller (cv_feed_free).
 * CV_ENOMEM, CV_EINVAL (0 shards). */
int cv_feed_new(const struct cv_catalog *cat, struct cv_feed **out);
void cv_feed_free(struct cv_feed *f); /* NULL ok */

/* Index in the name table for a node id (added if new; "" -> 0; a full table -> the "?" slot). */
uint16_t cv_feed_name(struct cv_feed *f, const char *id);
/* Appends e (its index must not be below the last one's). Overwriting the oldest entry raises
 * first_index past that entry's applied index. */
void cv_feed_push(struct cv_feed *f, const struct cv_feed_entry *e);

/* After catalog entry `index` was applied (the node's on_applied): appends what the batch changed, with
 * the old owner / epoch / target from the feed's own copy of the shard map, and a CV_FEED_LEADER entry
 * first when cons (may be NULL) names another leader or term than the last entry did. After a snapshot
 * was installed (cons's restore count moved) the ring restarts at index. O(commands + shards touched). */
void cv_feed_applied(struct cv_feed *f, const struct cv_catalog *cat, struct cv_consensus *cons, uint64_t index,
                     const Cverse__Catalog__Batch *batch, const struct cv_cmd_result *results);

/* The lowest applied index from which every change is still in the ring (a reader that has seen up to
 * `after` missed some when after + 1 < first_index), and the applied index of the newest entry (0: none). */
uint64_t cv_feed_first_index(const struct cv_feed *f);
uint64_t cv_feed_last_index(const struct cv_feed *f);
/* The kept entries with index > after, oldest first: at most max (0: CV_FEED_PAGE), but never part of an
 * applied index's entries. *more set when entries were left for the next read. Calls fn with each entry
 * and its names (borrowed, valid during the call); returns how many. */
typedef void (*cv_feed_fn)(void *data, const struct cv_feed_entry *e, const char *node, const char *from,
                           const char *to);
size_t cv_feed_since(const struct cv_feed *f, uint64_t after, size_t max, bool *more, cv_feed_fn fn, void *data);
/* GET /v1/events's body: {"node","first_index","last_index","applied_index","more","events":[{"index",
 * "time_ms","kind",...}]} (docs/protocol.md). New reference, NULL out of memory. */
json_t *cv_feed_json(const struct cv_feed *f, const char *self, uint64_t applied, uint64_t after);
const char *cv_feed_kind_name(enum cv_feed_kind k);

#endif
