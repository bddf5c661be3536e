/* The catalog's in-memory mirror (nodes sorted by id, the shard map) and the stage of an apply's changes. */
#ifndef CV_CATALOG_MIRROR_H
#define CV_CATALOG_MIRROR_H

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "catalog/types.h"
#include "catalog/store.h"
#include "core/shard.h"

/* One shard in the mirror. A shard without an LMDB record is unassigned with epoch 0, no target, not
 * pinned; a record exists from the first owner change on (epoch >= 1), also after it was unassigned
 * again, or from the first MoveShard / PinShard (possibly at epoch 0). */
struct cv_slot {
    int32_t owner; /* index into mirror.nodes, -1 = unassigned */
    uint64_t epoch;
    int32_t released_by;     /* index into mirror.nodes, -1 = none (see ShardRecord) */
    uint64_t released_epoch; /* == epoch: released_by confirmed the release */
    int32_t target;          /* index into mirror.nodes, -1 = none: the operator's chosen owner */
    bool pinned;
};

struct cv_mirror {
    struct cv_catalog_node *nodes; /* owned; sorted by id in byte order (= LMDB key order); never shrinks */
    size_t n, cap;
    struct cv_slot *smap; /* owned; `shards` entries */
    uint32_t shards;
    uint64_t applied, fingerprint;
};

struct cv_shard_change {
    uint32_t shard;
    bool same_owner; /* ReleaseShards, MoveShard, PinShard: owner, epoch and released_by are unchanged */
    struct cv_store_shard r;
};

/* What the apply in progress changed; published into the mirror after the commit. */
struct cv_stage {
    struct cv_catalog_node *nodes; /* owned; latest value of every touched node, one per id */
    size_t n_nodes, cap_nodes;
    struct cv_shard_change *shards; /* owned; in order; a later change of the same shard wins */
    size_t n_shards, cap_shards;
    bool fp_set;
    uint64_t fp;
};

/* Builds *m from what txn sees (dbi: the CV_DB__COUNT handles). CV_EPROTO if the records are
 * inconsistent (a shard names an unknown node, a record does not decode). */
int cv_mirror_load(MDB_txn *txn, const MDB_dbi *dbi, uint32_t shards, struct cv_mirror *m);
void cv_mirror_free(struct cv_mirror *m);
/* Binary search by id: the node's index (*found) or where it would be inserted. */
size_t cv_mirror_find(const struct cv_mirror *m, const char *id, bool *found);
/* Makes room for the stage's new nodes, so that publishing after the commit cannot fail. */
int cv_mirror_reserve(struct cv_mirror *m, const struct cv_stage *st);
/* Applies the stage (after cv_mirror_reserve) and records index as applied. Cannot fail. */
void cv_mirror_publish(struct cv_mirror *m, const struct cv_stage *st, uint64_t index);
/* The lifecycle view of a shard (shard < m->shards): its record and the alive flags of its nodes. */
void cv_mirror_shard_view(const struct cv_mirror *m, uint32_t shard, struct cv_shard_view *v);
/* What differs between two mirrors of the same shard count (a static description), or NULL. */
const char *cv_mirror_diff(const struct cv_mirror *a, const struct cv_mirror *b);
/* What the stage (just published) changed against LMDB as txn sees it: the meta integers, every staged
 * node and shard. *bad: NULL or a static description of what differs. Returns 0, or an error of
 * reading LMDB (CV_EPROTO: a record does not decode). Covers everything a publish touches unless a
 * node joined (that renumbers the whole shard map: check it all with cv_mirror_diff then). */
int cv_mirror_check_stage(const struct cv_mirror *m, const struct cv_stage *st, MDB_txn *txn,
                          const MDB_dbi *dbi, const char **bad);
/* NULL when the mirror is consistent: node indexes in range, every shard record consistent
 * (cv_shard_invariant), every node's shards_owned is the number of shards it owns, nodes sorted.
 * Else a static description. In memory, O(shards + nodes). */
const char *cv_mirror_invariants(const struct cv_mirror *m);

void cv_stage_reset(struct cv_stage *st);
void cv_stage_free(struct cv_stage *st);
/* Records the latest value of a node (one entry per id). CV_ENOMEM. */
int cv_stage_node(struct cv_stage *st, const struct cv_catalog_node *n);
/* Records a shard's new record. CV_ENOMEM. */
int cv_stage_shard(struct cv_stage *st, uint32_t shard, const struct cv_store_shard *r, bool same_owner);

#endif
