/* The catalog's LMDB records: its dbs, big-endian integers in "meta", protobuf node, shard and state records. */
#ifndef CV_CATALOG_STORE_H
#define CV_CATALOG_STORE_H

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "catalog.pb-c.h"
#include "catalog/types.h"
#include "core/shard.h"

#define CV_STORE_ADDR_MAX 128

/* The dbs of the environment; also the order of a snapshot's entries. */
enum { CV_DB_META, CV_DB_NODES, CV_DB_SHARDS, CV_DB_LEASES, CV_DB_OBJECTS, CV_DB_STATES, CV_DB_REMINDERS, CV_DB__COUNT };
extern const char *const cv_store_db_names[CV_DB__COUNT];

/* Keys of "meta". */
#define CV_META_APPLIED "applied_index" /* u64 BE */
#define CV_META_SHARDS "shards"         /* u32 BE */
#define CV_META_FP "fingerprint"        /* u64 BE; absent until the first set_config */

/* A node as stored: the mirror's view plus what only LMDB keeps. */
struct cv_store_node {
    struct cv_catalog_node n;
    uint64_t registered_index;
};

/* A shard record as stored (proto ShardRecord); "" = no node. */
struct cv_store_shard {
    char owner[CV_NODE_ID_MAX], released_by[CV_NODE_ID_MAX], target[CV_NODE_ID_MAX];
    uint64_t epoch, released_epoch;
    bool pinned;
};

/* The lifecycle view of a record (core/shard.h), given whether the nodes it names are alive. */
void cv_store_shard_view(const struct cv_store_shard *r, bool owner_live, bool releaser_live,
                         struct cv_shard_view *v);

/* Logs an LMDB error with what failed; returns CV_ELMDB. */
int cv_store_lmdb_err(int rc, const char *what);
/* Copies a string of len bytes into dst (NUL-terminated); CV_EINVAL if it needs more than cap bytes. */
int cv_store_copy_str(char *dst, size_t cap, const char *src, size_t len);
/* A usable LMDB key: non-empty, at most max_key bytes. */
bool cv_store_key_ok(size_t max_key, const char *s);

/* A meta integer of width bytes (4 or 8, big-endian); absent reads as 0 with *found = false. CV_EPROTO: wrong size. */
int cv_store_meta_get(MDB_txn *txn, MDB_dbi dbi, const char *key, size_t width, uint64_t *out, bool *found);
int cv_store_meta_put(MDB_txn *txn, MDB_dbi dbi, const char *key, size_t width, uint64_t val);
/* *out is protobuf-c unpacked, owned by the caller (free with protobuf_c_message_free_unpacked).
 * CV_ENOTFOUND if absent, CV_EPROTO if the record does not decode. */
int cv_store_msg_get(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen,
                     const ProtobufCMessageDescriptor *desc, void **out);
/* Packs straight into LMDB's page (MDB_RESERVE). */
int cv_store_msg_put(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen, const void *msg);

/* dbi: the CV_DB__COUNT handles. A node's NodeRecord and LeaseRecord (a missing lease reads as zeros).
 * CV_ENOTFOUND if absent, CV_EPROTO if a record is corrupt or its id differs from its key. */
int cv_store_node_read(MDB_txn *txn, const MDB_dbi *dbi, const char *id, size_t idlen,
                       struct cv_store_node *sn);
int cv_store_node_write(MDB_txn *txn, const MDB_dbi *dbi, const struct cv_store_node *sn);
int cv_store_node_exists(MDB_txn *txn, const MDB_dbi *dbi, const char *id, bool *found);
int cv_store_shard_decode(const MDB_val *v, struct cv_store_shard *r);
/* A shard without a record reads as unassigned, epoch 0, nothing to release. */
int cv_store_shard_read(MDB_txn *txn, const MDB_dbi *dbi, uint32_t shard, struct cv_store_shard *r);
int cv_store_shard_write(MDB_txn *txn, const MDB_dbi *dbi, uint32_t shard, const struct cv_store_shard *r);

#endif
