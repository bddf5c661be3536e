/* LMDB records of the catalog: the meta integers, nodes (NodeRecord + LeaseRecord under the same id)
 * and shards (ShardRecord under the big-endian shard number), as protobuf.
 *
 * Happy path: a read decodes into a fixed-size struct (strings copied, bounded), a write packs straight
 * into LMDB's page. Failure modes: LMDB errors are logged and returned as CV_ELMDB; a record that does
 * not decode, or whose strings do not fit, is CV_EPROTO; an absent record is CV_ENOTFOUND (an absent
 * shard reads as never assigned). */
#include "catalog/store.h"

#include <string.h>

#include "cverse/error.h"
#include "util/be.h"
#include "util/log.h"

const char *const cv_store_db_names[CV_DB__COUNT] = {"meta", "nodes", "shards", "leases", "objects", "states",
                                                      "reminders"};

int cv_store_lmdb_err(int rc, const char *what)
{
    CV_ERROR("catalog: %s: %s", what, mdb_strerror(rc));
    return CV_ELMDB;
}

/* Copies a NUL-terminated string of at most cap-1 bytes; CV_EINVAL if it is longer. */
int cv_store_copy_str(char *dst, size_t cap, const char *src, size_t len)
{
    if (len >= cap) return CV_EINVAL;
    memcpy(dst, src, len);
    dst[len] = '\0';
    return 0;
}

bool cv_store_key_ok(size_t max_key, const char *s)
{
    size_t len = strlen(s);
    return len > 0 && len <= max_key;
}

/* ---- LMDB records ---- */

/* width is 4 or 8 (the meta keys' sizes, store.h). */
int cv_store_meta_get(MDB_txn *txn, MDB_dbi dbi, const char *key, size_t width, uint64_t *out, bool *found)
{
    MDB_val k = {strlen(key), (void *)key}, v;
    int rc = mdb_get(txn, dbi, &k, &v);
    *out = 0;
    *found = rc == 0;
    if (rc == MDB_NOTFOUND) return 0;
    if (rc != 0) return cv_store_lmdb_err(rc, "get meta");
    if (v.mv_size != width) {
        CV_ERROR("catalog: meta %s has %zu bytes, want %zu", key, v.mv_size, width);
        return CV_EPROTO;
    }
    *out = width == 4 ? cv_be32_get(v.mv_data) : cv_be64_get(v.mv_data);
    return 0;
}

int cv_store_meta_put(MDB_txn *txn, MDB_dbi dbi, const char *key, size_t width, uint64_t val)
{
    uint8_t b[8];
    if (width == 4)
        cv_be32_put(b, (uint32_t)val);
    else
        cv_be64_put(b, val);
    MDB_val k = {strlen(key), (void *)key}, v = {width, b};
    int rc = mdb_put(txn, dbi, &k, &v, 0);
    return rc ? cv_store_lmdb_err(rc, "put meta") : 0;
}

/* *out is protobuf-c unpacked (free with protobuf_c_message_free_unpacked). CV_ENOTFOUND if absent,
 * CV_EPROTO if the record does not decode. */
int cv_store_msg_get(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen,
                     const ProtobufCMessageDescriptor *desc, void **out)
{
    MDB_val k = {klen, (void *)key}, v;
    int rc = mdb_get(txn, dbi, &k, &v);
    if (rc == MDB_NOTFOUND) return CV_ENOTFOUND;
    if (rc != 0) return cv_store_lmdb_err(rc, "get");
    *out = protobuf_c_message_unpack(desc, NULL, v.mv_size, v.mv_data);
    if (!*out) {
        CV_ERROR("catalog: undecodable %s record", desc->short_name);
        return CV_EPROTO;
    }
    return 0;
}

/* Packs straight into LMDB's page (MDB_RESERVE): no intermediate buffer. */
int cv_store_msg_put(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen, const void *msg)
{
    MDB_val k = {klen, (void *)key}, v = {protobuf_c_message_get_packed_size(msg), NULL};
    int rc = mdb_put(txn, dbi, &k, &v, MDB_RESERVE);
    if (rc != 0) return cv_store_lmdb_err(rc, "put");
    protobuf_c_message_pack(msg, v.mv_data);
    return 0;
}

static int store__node_decode(const Cverse__Catalog__NodeRecord *rec,
                              const Cverse__Catalog__LeaseRecord *lease, struct cv_store_node *sn)
{
    const Cverse__Catalog__NodeInfo *info = rec->info;
    struct cv_catalog_node *n = &sn->n;
    memset(sn, 0, sizeof *sn);
    if (!info) return CV_EPROTO;
    if (cv_store_copy_str(n->id, sizeof n->id, info->id, strlen(info->id)) ||
        cv_store_copy_str(n->grpc_addr, sizeof n->grpc_addr, info->grpc_addr, strlen(info->grpc_addr)) ||
        cv_store_copy_str(n->advertise_addr, sizeof n->advertise_addr, info->advertise_addr,
                          strlen(info->advertise_addr)) ||
        cv_store_copy_str(n->http_addr, sizeof n->http_addr, info->http_addr, strlen(info->http_addr)) ||
        cv_store_copy_str(n->raft_addr, sizeof n->raft_addr, info->raft_addr, strlen(info->raft_addr)))
        return CV_EPROTO;
    n->raft_id = info->raft_id;
    n->role = (int)rec->role;
    n->alive = rec->alive;
    n->draining = rec->draining;
    n->drain_shutdown = rec->draining && rec->drain_reason == CVERSE__CATALOG__DRAIN_REASON__DRAIN_SHUTDOWN;
    n->incarnation = rec->incarnation;
    n->removed = rec->removed;
    sn->registered_index = rec->registered_index;
    if (lease) {
        n->lease_expiry_ms = lease->expiry_ms;
        n->lease_renewed_ms = lease->renewed_ms;
    }
    return 0;
}

/* Reads a node's NodeRecord and LeaseRecord (a missing lease reads as zeros). CV_ENOTFOUND if absent,
 * CV_EPROTO if a record is corrupt or its id differs from its key. */
int cv_store_node_read(MDB_txn *txn, const MDB_dbi *dbi, const char *id, size_t idlen,
                       struct cv_store_node *sn)
{
    Cverse__Catalog__NodeRecord *rec;
    Cverse__Catalog__LeaseRecord *lease = NULL;
    int rv = cv_store_msg_get(txn, dbi[CV_DB_NODES], id, idlen, &cverse__catalog__node_record__descriptor,
                              (void **)&rec);
    if (rv != 0) return rv;
    rv = cv_store_msg_get(txn, dbi[CV_DB_LEASES], id, idlen, &cverse__catalog__lease_record__descriptor,
                          (void **)&lease);
    if (rv == CV_ENOTFOUND) {
        lease = NULL;
        rv = 0;
    }
    if (rv != 0) goto err_after_rec;
    rv = store__node_decode(rec, lease, sn);
    if (rv == 0 && (strlen(sn->n.id) != idlen || memcmp(sn->n.id, id, idlen) != 0)) rv = CV_EPROTO;
    if (lease) cverse__catalog__lease_record__free_unpacked(lease, NULL);
err_after_rec:
    cverse__catalog__node_record__free_unpacked(rec, NULL);
    return rv;
}

int cv_store_node_write(MDB_txn *txn, const MDB_dbi *dbi, const struct cv_store_node *sn)
{
    const struct cv_catalog_node *n = &sn->n;
    Cverse__Catalog__NodeInfo info = CVERSE__CATALOG__NODE_INFO__INIT;
    info.id = (char *)n->id;
    info.grpc_addr = (char *)n->grpc_addr;
    info.advertise_addr = (char *)n->advertise_addr;
    info.http_addr = (char *)n->http_addr;
    info.raft_addr = (char *)n->raft_addr;
    info.raft_id = n->raft_id;
    Cverse__Catalog__NodeRecord rec = CVERSE__CATALOG__NODE_RECORD__INIT;
    rec.info = &info;
    rec.role = (Cverse__Catalog__Role)n->role;
    rec.alive = n->alive;
    rec.draining = n->draining;
    rec.drain_reason = n->draining && n->drain_shutdown ? CVERSE__CATALOG__DRAIN_REASON__DRAIN_SHUTDOWN
                                                        : CVERSE__CATALOG__DRAIN_REASON__DRAIN_OPERATOR;
    rec.incarnation = n->incarnation;
    rec.removed = n->removed;
    rec.registered_index = sn->registered_index;
    Cverse__Catalog__LeaseRecord lease = CVERSE__CATALOG__LEASE_RECORD__INIT;
    lease.holder = (char *)n->id;
    lease.expiry_ms = n->lease_expiry_ms;
    lease.renewed_ms = n->lease_renewed_ms;
    int rv = cv_store_msg_put(txn, dbi[CV_DB_NODES], n->id, strlen(n->id), &rec);
    if (rv == 0) rv = cv_store_msg_put(txn, dbi[CV_DB_LEASES], n->id, strlen(n->id), &lease);
    return rv;
}

int cv_store_node_exists(MDB_txn *txn, const MDB_dbi *dbi, const char *id, bool *found)
{
    MDB_val k = {strlen(id), (void *)id}, v;
    int rc = mdb_get(txn, dbi[CV_DB_NODES], &k, &v);
    *found = rc == 0;
    if (rc == 0 || rc == MDB_NOTFOUND) return 0;
    return cv_store_lmdb_err(rc, "get node");
}

int cv_store_shard_decode(const MDB_val *v, struct cv_store_shard *r)
{
    Cverse__Catalog__ShardRecord *rec = cverse__catalog__shard_record__unpack(NULL, v->mv_size, v->mv_data);
    if (!rec) return CV_EPROTO;
    int rv = cv_store_copy_str(r->owner, sizeof r->owner, rec->owner, strlen(rec->owner)) ||
                     cv_store_copy_str(r->released_by, sizeof r->released_by, rec->released_by,
                                       strlen(rec->released_by)) ||
                     cv_store_copy_str(r->target, sizeof r->target, rec->target, strlen(rec->target))
                 ? CV_EPROTO
                 : 0;
    r->epoch = rec->epoch;
    r->released_epoch = rec->released_epoch;
    r->pinned = rec->pinned;
    cverse__catalog__shard_record__free_unpacked(rec, NULL);
    return rv;
}

/* A shard without a record reads as unassigned, epoch 0, nothing to release. */
int cv_store_shard_read(MDB_txn *txn, const MDB_dbi *dbi, uint32_t shard, struct cv_store_shard *r)
{
    uint8_t kb[4];
    cv_be32_put(kb, shard);
    MDB_val k = {4, kb}, v;
    int rc = mdb_get(txn, dbi[CV_DB_SHARDS], &k, &v);
    memset(r, 0, sizeof *r);
    if (rc == MDB_NOTFOUND) return 0;
    if (rc != 0) return cv_store_lmdb_err(rc, "get shard");
    return cv_store_shard_decode(&v, r);
}

int cv_store_shard_write(MDB_txn *txn, const MDB_dbi *dbi, uint32_t shard, const struct cv_store_shard *r)
{
    uint8_t kb[4];
    cv_be32_put(kb, shard);
    Cverse__Catalog__ShardRecord rec = CVERSE__CATALOG__SHARD_RECORD__INIT;
    rec.owner = (char *)r->owner;
    rec.epoch = r->epoch;
    rec.released_by = (char *)r->released_by;
    rec.released_epoch = r->released_epoch;
    rec.target = (char *)r->target;
    rec.pinned = r->pinned;
    return cv_store_msg_put(txn, dbi[CV_DB_SHARDS], kb, 4, &rec);
}

void cv_store_shard_view(const struct cv_store_shard *r, bool owner_live, bool releaser_live,
                         struct cv_shard_view *v)
{
    *v = (struct cv_shard_view){
        .owner = r->owner[0] != '\0',
        .owner_live = owner_live,
        .epoch = r->epoch,
        .released_by = r->released_by[0] != '\0',
        .releaser_live = releaser_live,
        .released_epoch = r->released_epoch,
    };
}
