/* The catalog: the Raft FSM. LMDB holds the truth (dbs "meta", "nodes", "shards", "leases", "objects");
 * an in-memory mirror (nodes sorted by id, shard map as node index + epoch) serves the hot reads.
 *
 * Happy path of cv_catalog_apply: decode the Batch, run every command against ONE write transaction
 * (commands read LMDB, never the mirror, so a command sees what earlier commands of the same batch
 * wrote), record each node/shard change in a stage, store the applied index, commit, then publish the
 * stage into the mirror (which cannot fail: memory is reserved before the commit) and call the observer.
 *
 * Failure modes: a command's business failure (bad argument, failed compare-and-set, unknown node) is
 * only that command's result and changes nothing for that command; an undecodable entry is recorded as
 * applied in its own transaction and reported as CV_EPROTO; any LMDB error aborts the transaction and
 * drops the stage, so LMDB and the mirror both stay exactly as they were (CV_ELMDB). Restore builds the
 * new mirror from inside its write transaction and swaps it in only after the commit, for the same
 * reason. Records are protobuf; integers in "meta" are big-endian. Nothing here reads a clock. */
#include "catalog/catalog.h"

#include <errno.h>
#include <limits.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/hash.h"
#include "cverse/error.h"
#include "util/buf.h"
#include "util/log.h"

#define CAT__DEFAULT_MAP_SIZE ((size_t)1 << 30)
#define CAT__ADDR_MAX 128

enum { DB_META, DB_NODES, DB_SHARDS, DB_LEASES, DB_OBJECTS, DB__COUNT };
/* Also the order of a snapshot's entries. */
static const char *const db_names[DB__COUNT] = {"meta", "nodes", "shards", "leases", "objects"};

static const char META_APPLIED[] = "applied_index"; /* u64 BE */
static const char META_SHARDS[] = "shards";         /* u32 BE */
static const char META_FP[] = "fingerprint";        /* u64 BE; absent until the first set_config */

/* One shard in the mirror. A shard without an LMDB record is unassigned with epoch 0; a record exists
 * from the first owner change on (epoch >= 1), also after it was unassigned again. */
struct slot {
    int32_t owner; /* index into mirror.nodes, -1 = unassigned */
    uint64_t epoch;
    int32_t released_by;     /* index into mirror.nodes, -1 = none (see ShardRecord) */
    uint64_t released_epoch; /* == epoch: released_by confirmed the release */
};

struct mirror {
    struct cv_catalog_node *nodes; /* sorted by id in byte order (= LMDB key order); never shrinks */
    size_t n, cap;
    struct slot *smap; /* cat->shards entries */
    uint64_t applied, fingerprint;
};

/* A node as stored: the mirror's view plus what only LMDB keeps. */
struct stored_node {
    struct cv_catalog_node n;
    uint64_t registered_index;
};

/* A shard record as stored. */
struct shard_rec {
    char owner[CV_NODE_ID_MAX], released_by[CV_NODE_ID_MAX];
    uint64_t epoch, released_epoch;
};

struct shard_change {
    uint32_t shard;
    bool release_only; /* ReleaseShards: only released_epoch changes */
    struct shard_rec r;
};

/* What the apply in progress changed; published into the mirror after the commit. */
struct stage {
    struct cv_catalog_node *nodes; /* latest value of every touched node, one per id */
    size_t n_nodes, cap_nodes;
    struct shard_change *shards; /* in order; a later change of the same shard wins */
    size_t n_shards, cap_shards;
    bool fp_set;
    uint64_t fp;
};

struct cv_catalog {
    MDB_env *env;
    MDB_dbi dbi[DB__COUNT];
    uint32_t shards;
    size_t max_key;
    struct mirror m;
    struct stage st;
    struct cv_cmd_result *results; /* scratch for the observer, grows */
    size_t cap_results;
    uint8_t *seen; /* shards bits: duplicate detection in assign_shards */
    cv_catalog_observer observer;
    void *observer_data;
};

struct apply_ctx {
    struct cv_catalog *cat;
    MDB_txn *txn;
    uint64_t index;
};

/* ---- small helpers ---- */

static int lmdb_err(int rc, const char *what)
{
    CV_ERROR("catalog: %s: %s", what, mdb_strerror(rc));
    return CV_ELMDB;
}

static void put_be(uint8_t *p, size_t width, uint64_t v)
{
    for (size_t i = width; i > 0; i--) {
        p[i - 1] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t get_be(const uint8_t *p, size_t width)
{
    uint64_t v = 0;
    for (size_t i = 0; i < width; i++) v = v << 8 | p[i];
    return v;
}

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* Copies a NUL-terminated string of at most cap-1 bytes; CV_EINVAL if it is longer. */
static int copy_str(char *dst, size_t cap, const char *src, size_t len)
{
    if (len >= cap) return CV_EINVAL;
    memcpy(dst, src, len);
    dst[len] = '\0';
    return 0;
}

static bool valid_key(const struct cv_catalog *cat, const char *s)
{
    size_t len = strlen(s);
    return len > 0 && len <= cat->max_key;
}

/* ---- LMDB records ---- */

static int meta_get(MDB_txn *txn, MDB_dbi dbi, const char *key, size_t width, uint64_t *out, bool *found)
{
    MDB_val k = {strlen(key), (void *)key}, v;
    int rc = mdb_get(txn, dbi, &k, &v);
    *out = 0;
    *found = rc == 0;
    if (rc == MDB_NOTFOUND) return 0;
    if (rc != 0) return lmdb_err(rc, "get meta");
    if (v.mv_size != width) {
        CV_ERROR("catalog: meta %s has %zu bytes, want %zu", key, v.mv_size, width);
        return CV_EPROTO;
    }
    *out = get_be(v.mv_data, width);
    return 0;
}

static int meta_put(MDB_txn *txn, MDB_dbi dbi, const char *key, size_t width, uint64_t val)
{
    uint8_t b[8];
    put_be(b, width, val);
    MDB_val k = {strlen(key), (void *)key}, v = {width, b};
    int rc = mdb_put(txn, dbi, &k, &v, 0);
    return rc ? lmdb_err(rc, "put meta") : 0;
}

/* *out is protobuf-c unpacked (free with protobuf_c_message_free_unpacked). CV_ENOTFOUND if absent,
 * CV_EPROTO if the record does not decode. */
static int msg_get(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen,
                   const ProtobufCMessageDescriptor *desc, void **out)
{
    MDB_val k = {klen, (void *)key}, v;
    int rc = mdb_get(txn, dbi, &k, &v);
    if (rc == MDB_NOTFOUND) return CV_ENOTFOUND;
    if (rc != 0) return lmdb_err(rc, "get");
    *out = protobuf_c_message_unpack(desc, NULL, v.mv_size, v.mv_data);
    if (!*out) {
        CV_ERROR("catalog: undecodable %s record", desc->short_name);
        return CV_EPROTO;
    }
    return 0;
}

/* Packs straight into LMDB's page (MDB_RESERVE): no intermediate buffer. */
static int msg_put(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t klen, const void *msg)
{
    MDB_val k = {klen, (void *)key}, v = {protobuf_c_message_get_packed_size(msg), NULL};
    int rc = mdb_put(txn, dbi, &k, &v, MDB_RESERVE);
    if (rc != 0) return lmdb_err(rc, "put");
    protobuf_c_message_pack(msg, v.mv_data);
    return 0;
}

static int node_from_records(const Cverse__Catalog__NodeRecord *rec, const Cverse__Catalog__LeaseRecord *lease,
                             struct stored_node *sn)
{
    const Cverse__Catalog__NodeInfo *info = rec->info;
    struct cv_catalog_node *n = &sn->n;
    memset(sn, 0, sizeof *sn);
    if (!info) return CV_EPROTO;
    if (copy_str(n->id, sizeof n->id, info->id, strlen(info->id)) ||
        copy_str(n->grpc_addr, sizeof n->grpc_addr, info->grpc_addr, strlen(info->grpc_addr)) ||
        copy_str(n->advertise_addr, sizeof n->advertise_addr, info->advertise_addr,
                 strlen(info->advertise_addr)) ||
        copy_str(n->http_addr, sizeof n->http_addr, info->http_addr, strlen(info->http_addr)) ||
        copy_str(n->raft_addr, sizeof n->raft_addr, info->raft_addr, strlen(info->raft_addr)))
        return CV_EPROTO;
    n->raft_id = info->raft_id;
    n->role = (int)rec->role;
    n->alive = rec->alive;
    n->incarnation = rec->incarnation;
    sn->registered_index = rec->registered_index;
    if (lease) {
        n->lease_expiry_ms = lease->expiry_ms;
        n->lease_renewed_ms = lease->renewed_ms;
    }
    return 0;
}

/* Reads a node's NodeRecord and LeaseRecord (a missing lease reads as zeros). CV_ENOTFOUND if absent,
 * CV_EPROTO if a record is corrupt or its id differs from its key. */
static int node_read(MDB_txn *txn, const MDB_dbi *dbi, const char *id, size_t idlen, struct stored_node *sn)
{
    Cverse__Catalog__NodeRecord *rec;
    Cverse__Catalog__LeaseRecord *lease = NULL;
    int rv = msg_get(txn, dbi[DB_NODES], id, idlen, &cverse__catalog__node_record__descriptor, (void **)&rec);
    if (rv != 0) return rv;
    rv = msg_get(txn, dbi[DB_LEASES], id, idlen, &cverse__catalog__lease_record__descriptor, (void **)&lease);
    if (rv == CV_ENOTFOUND) {
        lease = NULL;
        rv = 0;
    }
    if (rv != 0) goto err_after_rec;
    rv = node_from_records(rec, lease, sn);
    if (rv == 0 && (strlen(sn->n.id) != idlen || memcmp(sn->n.id, id, idlen) != 0)) rv = CV_EPROTO;
    if (lease) cverse__catalog__lease_record__free_unpacked(lease, NULL);
err_after_rec:
    cverse__catalog__node_record__free_unpacked(rec, NULL);
    return rv;
}

static int node_write(MDB_txn *txn, const MDB_dbi *dbi, const struct stored_node *sn)
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
    rec.incarnation = n->incarnation;
    rec.registered_index = sn->registered_index;
    Cverse__Catalog__LeaseRecord lease = CVERSE__CATALOG__LEASE_RECORD__INIT;
    lease.holder = (char *)n->id;
    lease.expiry_ms = n->lease_expiry_ms;
    lease.renewed_ms = n->lease_renewed_ms;
    int rv = msg_put(txn, dbi[DB_NODES], n->id, strlen(n->id), &rec);
    if (rv == 0) rv = msg_put(txn, dbi[DB_LEASES], n->id, strlen(n->id), &lease);
    return rv;
}

static int node_exists(MDB_txn *txn, const MDB_dbi *dbi, const char *id, bool *found)
{
    MDB_val k = {strlen(id), (void *)id}, v;
    int rc = mdb_get(txn, dbi[DB_NODES], &k, &v);
    *found = rc == 0;
    if (rc == 0 || rc == MDB_NOTFOUND) return 0;
    return lmdb_err(rc, "get node");
}

static int shard_decode(const MDB_val *v, struct shard_rec *r)
{
    Cverse__Catalog__ShardRecord *rec = cverse__catalog__shard_record__unpack(NULL, v->mv_size, v->mv_data);
    if (!rec) return CV_EPROTO;
    int rv = copy_str(r->owner, sizeof r->owner, rec->owner, strlen(rec->owner)) ||
                     copy_str(r->released_by, sizeof r->released_by, rec->released_by, strlen(rec->released_by))
                 ? CV_EPROTO
                 : 0;
    r->epoch = rec->epoch;
    r->released_epoch = rec->released_epoch;
    cverse__catalog__shard_record__free_unpacked(rec, NULL);
    return rv;
}

/* A shard without a record reads as unassigned, epoch 0, nothing to release. */
static int shard_read(MDB_txn *txn, const MDB_dbi *dbi, uint32_t shard, struct shard_rec *r)
{
    uint8_t kb[4];
    put_be(kb, 4, shard);
    MDB_val k = {4, kb}, v;
    int rc = mdb_get(txn, dbi[DB_SHARDS], &k, &v);
    memset(r, 0, sizeof *r);
    if (rc == MDB_NOTFOUND) return 0;
    if (rc != 0) return lmdb_err(rc, "get shard");
    return shard_decode(&v, r);
}

static int shard_write(MDB_txn *txn, const MDB_dbi *dbi, uint32_t shard, const struct shard_rec *r)
{
    uint8_t kb[4];
    put_be(kb, 4, shard);
    Cverse__Catalog__ShardRecord rec = CVERSE__CATALOG__SHARD_RECORD__INIT;
    rec.owner = (char *)r->owner;
    rec.epoch = r->epoch;
    rec.released_by = (char *)r->released_by;
    rec.released_epoch = r->released_epoch;
    return msg_put(txn, dbi[DB_SHARDS], kb, 4, &rec);
}

/* ---- the mirror ---- */

static void mirror_free(struct mirror *m)
{
    free(m->nodes);
    free(m->smap);
    memset(m, 0, sizeof *m);
}

/* Binary search by id: the node's index (*found) or where it would be inserted. */
static size_t mirror_find(const struct mirror *m, const char *id, bool *found)
{
    size_t lo = 0, hi = m->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(m->nodes[mid].id, id);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static int load_nodes(struct cv_catalog *cat, MDB_txn *txn, struct mirror *m)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, cat->dbi[DB_NODES], &cur);
    if (rc != 0) return lmdb_err(rc, "cursor nodes");
    int rv = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct stored_node sn;
        rv = cv_array_grow((void **)&m->nodes, &m->cap, m->n + 1, sizeof *m->nodes);
        if (rv == 0) rv = node_read(txn, cat->dbi, k.mv_data, k.mv_size, &sn);
        if (rv != 0) goto err_after_cursor;
        m->nodes[m->n++] = sn.n;
    }
    if (rc != MDB_NOTFOUND) rv = lmdb_err(rc, "cursor nodes");
err_after_cursor:
    mdb_cursor_close(cur);
    return rv;
}

static int load_shard(struct cv_catalog *cat, struct mirror *m, const MDB_val *k, const MDB_val *v)
{
    struct shard_rec r;
    bool found;
    if (k->mv_size != 4) return CV_EPROTO;
    uint32_t shard = (uint32_t)get_be(k->mv_data, 4);
    if (shard >= cat->shards) return CV_EPROTO;
    int rv = shard_decode(v, &r);
    if (rv != 0) return rv;
    struct slot *s = &m->smap[shard];
    s->epoch = r.epoch;
    s->released_epoch = r.released_epoch;
    if (r.released_by[0] != '\0') {
        size_t idx = mirror_find(m, r.released_by, &found);
        if (!found) {
            CV_ERROR("catalog: shard %u released by unknown node '%s'", shard, r.released_by);
            return CV_EPROTO;
        }
        s->released_by = (int32_t)idx;
    }
    if (r.owner[0] == '\0') return 0;
    size_t idx = mirror_find(m, r.owner, &found);
    if (!found) {
        CV_ERROR("catalog: shard %u owned by unknown node '%s'", shard, r.owner);
        return CV_EPROTO;
    }
    s->owner = (int32_t)idx;
    m->nodes[idx].shards_owned++;
    return 0;
}

static int load_shards(struct cv_catalog *cat, MDB_txn *txn, struct mirror *m)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, cat->dbi[DB_SHARDS], &cur);
    if (rc != 0) return lmdb_err(rc, "cursor shards");
    int rv = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        rv = load_shard(cat, m, &k, &v);
        if (rv != 0) goto err_after_cursor;
    }
    if (rc != MDB_NOTFOUND) rv = lmdb_err(rc, "cursor shards");
err_after_cursor:
    mdb_cursor_close(cur);
    return rv;
}

/* Builds a mirror from what txn sees. CV_EPROTO if the records are inconsistent. */
static int mirror_load(struct cv_catalog *cat, MDB_txn *txn, struct mirror *m)
{
    bool found;
    memset(m, 0, sizeof *m);
    m->smap = malloc((size_t)cat->shards * sizeof *m->smap);
    if (!m->smap) return CV_ENOMEM;
    for (uint32_t s = 0; s < cat->shards; s++) m->smap[s] = (struct slot){.owner = -1, .released_by = -1};
    int rv = meta_get(txn, cat->dbi[DB_META], META_APPLIED, 8, &m->applied, &found);
    if (rv == 0) rv = meta_get(txn, cat->dbi[DB_META], META_FP, 8, &m->fingerprint, &found);
    if (rv == 0) rv = load_nodes(cat, txn, m);
    if (rv == 0) rv = load_shards(cat, txn, m);
    if (rv != 0) mirror_free(m);
    return rv;
}

/* Makes room for the stage's new nodes, so that publishing after the commit cannot fail. */
static int mirror_reserve(struct mirror *m, const struct stage *st)
{
    size_t add = 0;
    bool found;
    for (size_t i = 0; i < st->n_nodes; i++) {
        mirror_find(m, st->nodes[i].id, &found);
        add += !found;
    }
    return cv_array_grow((void **)&m->nodes, &m->cap, m->n + add, sizeof *m->nodes);
}

static void mirror_upsert_node(struct mirror *m, uint32_t shards, const struct cv_catalog_node *n)
{
    bool found;
    size_t pos = mirror_find(m, n->id, &found);
    if (found) {
        uint32_t owned = m->nodes[pos].shards_owned;
        m->nodes[pos] = *n;
        m->nodes[pos].shards_owned = owned;
        return;
    }
    memmove(&m->nodes[pos + 1], &m->nodes[pos], (m->n - pos) * sizeof *m->nodes);
    m->nodes[pos] = *n;
    m->nodes[pos].shards_owned = 0;
    m->n++;
    /* Nodes join rarely: renumbering the shard map is cheaper than an indirection on every read. */
    for (uint32_t s = 0; s < shards; s++) {
        if (m->smap[s].owner >= (int32_t)pos) m->smap[s].owner++;
        if (m->smap[s].released_by >= (int32_t)pos) m->smap[s].released_by++;
    }
}

/* Mirror index of a staged node id ("" = -1). The ids were checked against LMDB = mirror + stage. */
static int32_t mirror_index(const struct mirror *m, const char *id, uint32_t shard)
{
    bool found;
    if (id[0] == '\0') return -1;
    size_t idx = mirror_find(m, id, &found);
    if (!found) CV_ERROR("catalog: BUG: staged node '%s' of shard %u not in the mirror", id, shard);
    return found ? (int32_t)idx : -1;
}

static void mirror_set_shard(struct mirror *m, const struct shard_change *ch)
{
    struct slot *s = &m->smap[ch->shard];
    if (ch->release_only) {
        s->released_epoch = ch->r.released_epoch;
        return;
    }
    if (ch->r.epoch <= s->epoch) /* cannot happen: every owner change bumps the epoch read from LMDB */
        CV_ERROR("catalog: BUG: shard %u epoch %llu -> %llu", ch->shard, (unsigned long long)s->epoch,
                 (unsigned long long)ch->r.epoch);
    if (s->owner >= 0) m->nodes[s->owner].shards_owned--;
    s->epoch = ch->r.epoch;
    s->released_by = mirror_index(m, ch->r.released_by, ch->shard);
    s->released_epoch = ch->r.released_epoch;
    s->owner = mirror_index(m, ch->r.owner, ch->shard);
    if (s->owner >= 0) m->nodes[s->owner].shards_owned++;
}

static void publish(struct cv_catalog *cat, uint64_t index)
{
    struct stage *st = &cat->st;
    for (size_t i = 0; i < st->n_nodes; i++) mirror_upsert_node(&cat->m, cat->shards, &st->nodes[i]);
    for (size_t i = 0; i < st->n_shards; i++) mirror_set_shard(&cat->m, &st->shards[i]);
    if (st->fp_set) cat->m.fingerprint = st->fp;
    cat->m.applied = index;
}

/* ---- the stage ---- */

static void stage_reset(struct stage *st)
{
    st->n_nodes = 0;
    st->n_shards = 0;
    st->fp_set = false;
}

static void stage_free(struct stage *st)
{
    free(st->nodes);
    free(st->shards);
    memset(st, 0, sizeof *st);
}

static int stage_node(struct stage *st, const struct cv_catalog_node *n)
{
    for (size_t i = 0; i < st->n_nodes; i++) {
        if (strcmp(st->nodes[i].id, n->id) == 0) {
            st->nodes[i] = *n;
            return 0;
        }
    }
    int rv = cv_array_grow((void **)&st->nodes, &st->cap_nodes, st->n_nodes + 1, sizeof *st->nodes);
    if (rv != 0) return rv;
    st->nodes[st->n_nodes++] = *n;
    return 0;
}

static int stage_shard(struct stage *st, uint32_t shard, const struct shard_rec *r, bool release_only)
{
    int rv = cv_array_grow((void **)&st->shards, &st->cap_shards, st->n_shards + 1, sizeof *st->shards);
    if (rv != 0) return rv;
    struct shard_change *ch = &st->shards[st->n_shards++];
    ch->shard = shard;
    ch->release_only = release_only;
    ch->r = *r;
    return 0;
}

/* ---- commands ----
 * Each returns 0 or a fatal error (LMDB, memory) that aborts the whole entry; the command's business
 * result goes to *status. A command that fails its checks writes nothing. */

static int node_commit(struct apply_ctx *c, const struct stored_node *sn)
{
    int rv = node_write(c->txn, c->cat->dbi, sn);
    return rv ? rv : stage_node(&c->cat->st, &sn->n);
}

/* Reads a node for a command; a missing node is the command's CV_ENOTFOUND, not a fatal error. */
static int node_for_cmd(struct apply_ctx *c, const char *id, struct stored_node *sn, int *status)
{
    if (strlen(id) == 0 || strlen(id) >= CV_NODE_ID_MAX) {
        *status = CV_EINVAL;
        return 0;
    }
    int rv = node_read(c->txn, c->cat->dbi, id, strlen(id), sn);
    if (rv == CV_ENOTFOUND) {
        *status = CV_ENOTFOUND;
        return 0;
    }
    return rv;
}

static int cmd_set_config(struct apply_ctx *c, const Cverse__Catalog__CmdSetConfig *cmd, int *status)
{
    MDB_dbi meta = c->cat->dbi[DB_META];
    uint64_t fp;
    bool found;
    if (cmd->shards != c->cat->shards) { /* the shard count of a cluster never changes */
        *status = CV_ECONFIG;
        return 0;
    }
    int rv = meta_get(c->txn, meta, META_FP, 8, &fp, &found);
    if (rv != 0 || (found && fp == cmd->fingerprint)) return rv;
    rv = meta_put(c->txn, meta, META_FP, 8, cmd->fingerprint);
    if (rv != 0) return rv;
    c->cat->st.fp_set = true;
    c->cat->st.fp = cmd->fingerprint;
    return 0;
}

static bool info_valid(const Cverse__Catalog__NodeInfo *info)
{
    return info && strlen(info->id) > 0 && strlen(info->id) < CV_NODE_ID_MAX &&
           strlen(info->grpc_addr) < CAT__ADDR_MAX && strlen(info->advertise_addr) < CAT__ADDR_MAX &&
           strlen(info->http_addr) < CAT__ADDR_MAX && strlen(info->raft_addr) < CAT__ADDR_MAX;
}

static int cmd_register(struct apply_ctx *c, const Cverse__Catalog__CmdRegisterNode *cmd, int *status)
{
    const Cverse__Catalog__NodeInfo *info = cmd->info;
    struct stored_node sn;
    if (!info_valid(info)) {
        *status = CV_EINVAL;
        return 0;
    }
    int rv = node_read(c->txn, c->cat->dbi, info->id, strlen(info->id), &sn);
    if (rv == CV_ENOTFOUND) { /* a new node: role unknown until the leader assigns one */
        memset(&sn, 0, sizeof sn);
        sn.n.role = CVERSE__CATALOG__ROLE__ROLE_UNKNOWN;
        sn.n.incarnation = 1;
        sn.n.alive = true;
    } else if (rv != 0) {
        return rv;
    }
    if (!sn.n.alive) sn.n.incarnation++;
    sn.n.alive = true;
    strcpy(sn.n.id, info->id); /* lengths checked by info_valid */
    strcpy(sn.n.grpc_addr, info->grpc_addr);
    strcpy(sn.n.advertise_addr, info->advertise_addr);
    strcpy(sn.n.http_addr, info->http_addr);
    strcpy(sn.n.raft_addr, info->raft_addr);
    sn.n.raft_id = info->raft_id;
    sn.n.lease_expiry_ms = sat_add(cmd->now_ms, cmd->ttl_ms);
    sn.n.lease_renewed_ms = cmd->now_ms;
    sn.registered_index = c->index; /* the entry of the latest registration */
    return node_commit(c, &sn);
}

static int cmd_renew(struct apply_ctx *c, const Cverse__Catalog__CmdRenewLease *cmd, int *status)
{
    struct stored_node sn;
    int rv = node_for_cmd(c, cmd->node, &sn, status);
    if (rv != 0 || *status != 0) return rv;
    uint64_t expiry = sat_add(cmd->now_ms, cmd->ttl_ms);
    if (expiry > sn.n.lease_expiry_ms) sn.n.lease_expiry_ms = expiry; /* never moves backwards */
    if (cmd->now_ms > sn.n.lease_renewed_ms) sn.n.lease_renewed_ms = cmd->now_ms;
    if (!sn.n.alive) sn.n.incarnation++;
    sn.n.alive = true;
    return node_commit(c, &sn);
}

static int cmd_expire(struct apply_ctx *c, const Cverse__Catalog__CmdExpireNode *cmd, int *status)
{
    struct stored_node sn;
    int rv = node_for_cmd(c, cmd->node, &sn, status);
    if (rv != 0 || *status != 0) return rv;
    if (sn.n.lease_expiry_ms != cmd->expiry_ms) { /* renewed meanwhile: the renewal wins */
        *status = CV_ECONFLICT;
        return 0;
    }
    if (!sn.n.alive) return 0;
    sn.n.alive = false; /* its shards stay put: the leader reassigns them with assign_shards */
    return node_commit(c, &sn);
}

static int cmd_set_role(struct apply_ctx *c, const Cverse__Catalog__CmdSetRole *cmd, int *status)
{
    struct stored_node sn;
    int rv = node_for_cmd(c, cmd->node, &sn, status);
    if (rv != 0 || *status != 0) return rv;
    if (cmd->role < CVERSE__CATALOG__ROLE__ROLE_UNKNOWN || cmd->role > CVERSE__CATALOG__ROLE__ROLE_SPARE) {
        *status = CV_EINVAL;
        return 0;
    }
    sn.n.role = (int)cmd->role;
    return node_commit(c, &sn);
}

/* Marks shard as seen by the command being applied; false if out of range or seen already. */
static bool shard_once(struct cv_catalog *cat, uint32_t shard)
{
    if (shard >= cat->shards || (cat->seen[shard / 8] & (1u << (shard % 8)))) return false;
    cat->seen[shard / 8] |= (uint8_t)(1u << (shard % 8));
    return true;
}

/* Checks one assignment against the state before the command. */
static int assign_check(struct apply_ctx *c, const Cverse__Catalog__ShardAssignment *a, int *status)
{
    struct cv_catalog *cat = c->cat;
    struct shard_rec r;
    bool found = true;
    if (!shard_once(cat, a->shard)) {
        *status = CV_EINVAL; /* out of range, or the same shard twice in one command */
        return 0;
    }
    if (strlen(a->owner) >= CV_NODE_ID_MAX) found = false;
    int rv = a->owner[0] && found ? node_exists(c->txn, cat->dbi, a->owner, &found) : 0;
    if (rv != 0) return rv;
    if (!found) {
        *status = CV_EINVAL;
        return 0;
    }
    rv = shard_read(c->txn, cat->dbi, a->shard, &r);
    if (rv == 0 && r.epoch != a->expect_epoch) *status = CV_ECONFLICT;
    return rv;
}

/* An owner change bumps the epoch. Unassigning from X records X as the node to wait for (released_by);
 * any other change clears it. */
static int cmd_assign(struct apply_ctx *c, const Cverse__Catalog__CmdAssignShards *cmd, int *status)
{
    struct cv_catalog *cat = c->cat;
    struct shard_rec r;
    int rv = 0;
    memset(cat->seen, 0, cat->shards / 8 + 1);
    for (size_t i = 0; i < cmd->n_shards && rv == 0 && *status == 0; i++)
        rv = assign_check(c, cmd->shards[i], status);
    if (rv != 0 || *status != 0) return rv; /* all or nothing */
    for (size_t i = 0; i < cmd->n_shards; i++) {
        const Cverse__Catalog__ShardAssignment *a = cmd->shards[i];
        rv = shard_read(c->txn, cat->dbi, a->shard, &r);
        if (rv != 0) return rv;
        if (strcmp(r.owner, a->owner) == 0) continue; /* unchanged owner: epoch unchanged too */
        if (a->owner[0] == '\0') strcpy(r.released_by, r.owner); /* X -> "": wait for X */
        else r.released_by[0] = '\0';
        strcpy(r.owner, a->owner); /* length checked by assign_check */
        r.epoch++;
        r.released_epoch = 0;
        rv = shard_write(c->txn, cat->dbi, a->shard, &r);
        if (rv == 0) rv = stage_shard(&cat->st, a->shard, &r, false);
        if (rv != 0) return rv;
    }
    return 0;
}

/* Checks one release: the shard is unassigned at that epoch and waits for node (or node already
 * released it at that epoch: a retried proposal). */
static int release_check(struct apply_ctx *c, const char *node, uint32_t shard, uint64_t epoch, int *status)
{
    struct shard_rec r;
    if (!shard_once(c->cat, shard)) {
        *status = CV_EINVAL;
        return 0;
    }
    int rv = shard_read(c->txn, c->cat->dbi, shard, &r);
    if (rv == 0 && (r.owner[0] != '\0' || r.epoch != epoch || strcmp(r.released_by, node) != 0))
        *status = CV_ECONFLICT;
    return rv;
}

static int cmd_release(struct apply_ctx *c, const Cverse__Catalog__CmdReleaseShards *cmd, int *status)
{
    struct cv_catalog *cat = c->cat;
    struct shard_rec r;
    int rv = 0;
    if (cmd->node[0] == '\0' || strlen(cmd->node) >= CV_NODE_ID_MAX || cmd->n_shards != cmd->n_epochs) {
        *status = CV_EINVAL;
        return 0;
    }
    memset(cat->seen, 0, cat->shards / 8 + 1);
    for (size_t i = 0; i < cmd->n_shards && rv == 0 && *status == 0; i++)
        rv = release_check(c, cmd->node, cmd->shards[i], cmd->epochs[i], status);
    if (rv != 0 || *status != 0) return rv; /* all or nothing */
    for (size_t i = 0; i < cmd->n_shards; i++) {
        rv = shard_read(c->txn, cat->dbi, cmd->shards[i], &r);
        if (rv != 0) return rv;
        if (r.released_epoch == r.epoch) continue; /* released already */
        r.released_epoch = r.epoch;
        rv = shard_write(c->txn, cat->dbi, cmd->shards[i], &r);
        if (rv == 0) rv = stage_shard(&cat->st, cmd->shards[i], &r, true);
        if (rv != 0) return rv;
    }
    return 0;
}

static int cmd_create_object(struct apply_ctx *c, const Cverse__Catalog__CmdCreateObject *cmd, int *status)
{
    struct cv_catalog *cat = c->cat;
    struct cv_placement p;
    Cverse__Catalog__ObjectRecord *old;
    if (cmd->type[0] == '\0' || !valid_key(cat, cmd->id) || cv_placement_parse(cmd->id, cat->shards, &p) != 0) {
        *status = CV_EINVAL;
        return 0;
    }
    int rv = msg_get(c->txn, cat->dbi[DB_OBJECTS], cmd->id, strlen(cmd->id),
                     &cverse__catalog__object_record__descriptor, (void **)&old);
    if (rv == 0) { /* idempotent for the same type */
        if (strcmp(old->type, cmd->type) != 0) *status = CV_EEXIST;
        cverse__catalog__object_record__free_unpacked(old, NULL);
        return 0;
    }
    if (rv != CV_ENOTFOUND) return rv;
    Cverse__Catalog__ObjectRecord rec = CVERSE__CATALOG__OBJECT_RECORD__INIT;
    rec.type = cmd->type;
    rec.id = cmd->id;
    rec.shard = p.shard; /* for a node-pinned id: hash % shards, as cv_placement_parse gives it */
    rec.created_index = c->index;
    return msg_put(c->txn, cat->dbi[DB_OBJECTS], cmd->id, strlen(cmd->id), &rec);
}

static int cmd_delete_object(struct apply_ctx *c, const Cverse__Catalog__CmdDeleteObject *cmd, int *status)
{
    if (!valid_key(c->cat, cmd->id)) {
        *status = CV_EINVAL;
        return 0;
    }
    MDB_val k = {strlen(cmd->id), cmd->id};
    int rc = mdb_del(c->txn, c->cat->dbi[DB_OBJECTS], &k, NULL);
    if (rc == 0 || rc == MDB_NOTFOUND) return 0;
    return lmdb_err(rc, "del object");
}

static int run_command(struct apply_ctx *c, const Cverse__Catalog__Command *cmd, int *status)
{
    *status = 0;
    switch (cmd->cmd_case) {
    case CVERSE__CATALOG__COMMAND__CMD_SET_CONFIG: return cmd_set_config(c, cmd->set_config, status);
    case CVERSE__CATALOG__COMMAND__CMD_REGISTER_NODE: return cmd_register(c, cmd->register_node, status);
    case CVERSE__CATALOG__COMMAND__CMD_RENEW_LEASE: return cmd_renew(c, cmd->renew_lease, status);
    case CVERSE__CATALOG__COMMAND__CMD_EXPIRE_NODE: return cmd_expire(c, cmd->expire_node, status);
    case CVERSE__CATALOG__COMMAND__CMD_SET_ROLE: return cmd_set_role(c, cmd->set_role, status);
    case CVERSE__CATALOG__COMMAND__CMD_ASSIGN_SHARDS: return cmd_assign(c, cmd->assign_shards, status);
    case CVERSE__CATALOG__COMMAND__CMD_CREATE_OBJECT: return cmd_create_object(c, cmd->create_object, status);
    case CVERSE__CATALOG__COMMAND__CMD_DELETE_OBJECT: return cmd_delete_object(c, cmd->delete_object, status);
    case CVERSE__CATALOG__COMMAND__CMD_RELEASE_SHARDS: return cmd_release(c, cmd->release_shards, status);
    default: *status = CV_EINVAL; /* no command, or one from a newer version */ return 0;
    }
}

/* ---- apply ---- */

static void check_after(struct cv_catalog *cat, const char *what)
{
#ifdef CV_CHECKS
    if (cv_catalog_check(cat) == CV_ECONFLICT) {
        CV_ERROR("catalog: invariants broken after %s", what);
        abort();
    }
#else
    (void)cat;
    (void)what;
#endif
}

static int apply_batch(struct cv_catalog *cat, uint64_t index, const Cverse__Catalog__Batch *b)
{
    MDB_txn *txn;
    /* At least one slot: the observer never gets a NULL results pointer, even for an empty batch. */
    int rv =
        cv_array_grow((void **)&cat->results, &cat->cap_results, b->n_commands + 1, sizeof *cat->results);
    if (rv != 0) return rv;
    stage_reset(&cat->st);
    int rc = mdb_txn_begin(cat->env, NULL, 0, &txn);
    if (rc != 0) return lmdb_err(rc, "begin apply");
    struct apply_ctx c = {cat, txn, index};
    for (size_t i = 0; i < b->n_commands; i++) {
        cat->results[i] = (struct cv_cmd_result){b->commands[i]->origin, b->commands[i]->seq, 0};
        rv = run_command(&c, b->commands[i], &cat->results[i].status);
        if (rv != 0) goto err_after_txn;
    }
    rv = meta_put(txn, cat->dbi[DB_META], META_APPLIED, 8, index);
    if (rv == 0) rv = mirror_reserve(&cat->m, &cat->st);
    if (rv != 0) goto err_after_txn;
    rc = mdb_txn_commit(txn);
    if (rc != 0) return lmdb_err(rc, "commit apply");
    publish(cat, index);
    return 0;
err_after_txn:
    mdb_txn_abort(txn);
    return rv == CV_ENOMEM ? CV_ENOMEM : CV_ELMDB;
}

static int apply_noop(struct cv_catalog *cat, uint64_t index)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(cat->env, NULL, 0, &txn);
    if (rc != 0) return lmdb_err(rc, "begin noop");
    int rv = meta_put(txn, cat->dbi[DB_META], META_APPLIED, 8, index);
    if (rv != 0) {
        mdb_txn_abort(txn);
        return rv;
    }
    rc = mdb_txn_commit(txn);
    if (rc != 0) return lmdb_err(rc, "commit noop");
    cat->m.applied = index;
    return 0;
}

int cv_catalog_apply(struct cv_catalog *cat, uint64_t index, const void *buf, size_t len, bool *skipped)
{
    bool dummy;
    if (!skipped) skipped = &dummy;
    *skipped = index <= cat->m.applied;
    if (*skipped) return 0;
    Cverse__Catalog__Batch *b = cverse__catalog__batch__unpack(NULL, len, buf);
    if (!b) {
        CV_WARN("catalog: entry %llu does not decode (%zu bytes): recorded as applied, ignored",
                (unsigned long long)index, len);
        int rv = apply_noop(cat, index);
        return rv ? rv : CV_EPROTO;
    }
    int rv = apply_batch(cat, index, b);
    if (rv == 0 && cat->observer) cat->observer(cat->observer_data, index, b, cat->results);
    cverse__catalog__batch__free_unpacked(b, NULL);
    if (rv == 0) check_after(cat, "apply");
    return rv;
}

int cv_catalog_apply_noop(struct cv_catalog *cat, uint64_t index)
{
    if (index <= cat->m.applied) return 0;
    return apply_noop(cat, index);
}

/* ---- open / close ---- */

static int mkdir_p(const char *dir)
{
    char path[PATH_MAX];
    if (copy_str(path, sizeof path, dir, strlen(dir)) != 0) return CV_EINVAL;
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST) {
            CV_ERROR("catalog: mkdir %s: %s", path, strerror(errno));
            return CV_EIO;
        }
        *p = saved;
        if (saved == '\0') return 0;
    }
}

/* Opens the dbs, checks or records the shard count, loads the mirror: one write txn. */
static int open_dbs(struct cv_catalog *cat)
{
    MDB_txn *txn;
    uint64_t shards;
    bool found;
    int rc = mdb_txn_begin(cat->env, NULL, 0, &txn);
    if (rc != 0) return lmdb_err(rc, "begin open");
    int rv = 0;
    for (int d = 0; d < DB__COUNT && rv == 0; d++)
        if ((rc = mdb_dbi_open(txn, db_names[d], MDB_CREATE, &cat->dbi[d])) != 0) rv = lmdb_err(rc, "dbi open");
    if (rv == 0) rv = meta_get(txn, cat->dbi[DB_META], META_SHARDS, 4, &shards, &found);
    if (rv == 0 && found && shards != cat->shards) {
        CV_ERROR("catalog: holds %llu shards, configured %u", (unsigned long long)shards, cat->shards);
        rv = CV_ECONFIG;
    }
    if (rv == 0 && !found) rv = meta_put(txn, cat->dbi[DB_META], META_SHARDS, 4, cat->shards);
    if (rv == 0) rv = mirror_load(cat, txn, &cat->m);
    if (rv != 0) goto err_after_txn;
    rc = mdb_txn_commit(txn);
    if (rc != 0) {
        mirror_free(&cat->m);
        return lmdb_err(rc, "commit open");
    }
    return 0;
err_after_txn:
    mdb_txn_abort(txn);
    return rv == CV_EPROTO ? CV_ELMDB : rv;
}

int cv_catalog_open(const struct cv_catalog_opts *opts, struct cv_catalog **out)
{
    if (!opts || !opts->dir || opts->shards == 0) return CV_EINVAL;
    int rv = mkdir_p(opts->dir);
    if (rv != 0) return rv;
    struct cv_catalog *cat = calloc(1, sizeof *cat);
    if (!cat) return CV_ENOMEM;
    cat->shards = opts->shards;
    cat->seen = calloc(opts->shards / 8 + 1, 1);
    rv = CV_ENOMEM;
    if (!cat->seen) goto err_after_cat;
    int rc = mdb_env_create(&cat->env);
    if (rc != 0) goto err_after_cat_lmdb;
    if ((rc = mdb_env_set_maxdbs(cat->env, 8)) != 0 ||
        (rc = mdb_env_set_mapsize(cat->env, opts->map_size ? opts->map_size : CAT__DEFAULT_MAP_SIZE)) != 0 ||
        (rc = mdb_env_open(cat->env, opts->dir, opts->sync_each_txn ? 0 : MDB_NOSYNC, 0644)) != 0)
        goto err_after_env_lmdb;
    cat->max_key = (size_t)mdb_env_get_maxkeysize(cat->env);
    rv = open_dbs(cat);
    if (rv != 0) goto err_after_env;
    *out = cat;
    return 0;
err_after_env_lmdb:
    rv = rc > 0 ? CV_EIO : CV_ELMDB; /* LMDB returns errno values for system errors */
    CV_ERROR("catalog: open %s: %s", opts->dir, mdb_strerror(rc));
err_after_env:
    mdb_env_close(cat->env);
    goto err_after_cat;
err_after_cat_lmdb:
    rv = lmdb_err(rc, "env create");
err_after_cat:
    free(cat->seen);
    free(cat);
    return rv;
}

void cv_catalog_close(struct cv_catalog *cat)
{
    if (!cat) return;
    int rc = mdb_env_sync(cat->env, 1); /* a clean shutdown leaves nothing to replay */
    if (rc != 0) CV_WARN("catalog: sync at close: %s", mdb_strerror(rc));
    mdb_env_close(cat->env);
    mirror_free(&cat->m);
    stage_free(&cat->st);
    free(cat->results);
    free(cat->seen);
    free(cat);
}

void cv_catalog_set_observer(struct cv_catalog *cat, cv_catalog_observer cb, void *data)
{
    cat->observer = cb;
    cat->observer_data = data;
}

int cv_catalog_sync(struct cv_catalog *cat)
{
    int rc = mdb_env_sync(cat->env, 1);
    return rc ? lmdb_err(rc, "sync") : 0;
}

/* ---- snapshot / restore ---- */

/* Appends every (db, key, value) of db d; entries point into txn's pages. */
static int snapshot_db(struct cv_catalog *cat, MDB_txn *txn, int d, Cverse__Catalog__SnapshotEntry *ents,
                       size_t cap, size_t *n)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, cat->dbi[d], &cur);
    if (rc != 0) return lmdb_err(rc, "cursor snapshot");
    int rv = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (*n == cap) { /* cannot happen: counted in the same txn */
            rv = CV_ELMDB;
            goto err_after_cursor;
        }
        Cverse__Catalog__SnapshotEntry *e = &ents[(*n)++];
        cverse__catalog__snapshot_entry__init(e);
        e->db = (char *)db_names[d];
        e->key = (ProtobufCBinaryData){k.mv_size, k.mv_data};
        e->value = (ProtobufCBinaryData){v.mv_size, v.mv_data};
    }
    if (rc != MDB_NOTFOUND) rv = lmdb_err(rc, "cursor snapshot");
err_after_cursor:
    mdb_cursor_close(cur);
    return rv;
}

static int snapshot_pack(struct cv_catalog *cat, MDB_txn *txn, size_t total, void **buf, size_t *len)
{
    Cverse__Catalog__Snapshot snap = CVERSE__CATALOG__SNAPSHOT__INIT;
    bool found;
    int rv = CV_ENOMEM;
    Cverse__Catalog__SnapshotEntry *ents = calloc(total ? total : 1, sizeof *ents);
    Cverse__Catalog__SnapshotEntry **ptrs = calloc(total ? total : 1, sizeof *ptrs);
    if (!ents || !ptrs) goto err_after_alloc;
    rv = 0;
    for (int d = 0; d < DB__COUNT && rv == 0; d++) rv = snapshot_db(cat, txn, d, ents, total, &snap.n_entries);
    if (rv == 0) rv = meta_get(txn, cat->dbi[DB_META], META_APPLIED, 8, &snap.applied_index, &found);
    if (rv != 0) goto err_after_alloc;
    for (size_t i = 0; i < snap.n_entries; i++) ptrs[i] = &ents[i];
    snap.entries = ptrs;
    snap.shards = cat->shards;
    *len = cverse__catalog__snapshot__get_packed_size(&snap);
    *buf = malloc(*len ? *len : 1);
    rv = *buf ? 0 : CV_ENOMEM;
    if (*buf) cverse__catalog__snapshot__pack(&snap, *buf);
err_after_alloc:
    free(ptrs);
    free(ents);
    return rv;
}

int cv_catalog_snapshot(struct cv_catalog *cat, void **buf, size_t *len)
{
    MDB_txn *txn;
    MDB_stat st;
    size_t total = 0;
    int rc = mdb_txn_begin(cat->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0) return lmdb_err(rc, "begin snapshot");
    int rv = 0;
    for (int d = 0; d < DB__COUNT && rv == 0; d++) {
        if ((rc = mdb_stat(txn, cat->dbi[d], &st)) != 0) rv = lmdb_err(rc, "stat");
        total += st.ms_entries;
    }
    if (rv == 0) rv = snapshot_pack(cat, txn, total, buf, len);
    mdb_txn_abort(txn);
    return rv;
}

static int db_index(const char *name)
{
    for (int d = 0; d < DB__COUNT; d++)
        if (strcmp(db_names[d], name) == 0) return d;
    return -1;
}

static int restore_entries(struct cv_catalog *cat, MDB_txn *txn, const Cverse__Catalog__Snapshot *snap)
{
    for (int d = 0; d < DB__COUNT; d++) {
        int rc = mdb_drop(txn, cat->dbi[d], 0);
        if (rc != 0) return lmdb_err(rc, "drop");
    }
    for (size_t i = 0; i < snap->n_entries; i++) {
        const Cverse__Catalog__SnapshotEntry *e = snap->entries[i];
        int d = db_index(e->db);
        if (d < 0 || e->key.len == 0 || e->key.len > cat->max_key) {
            CV_ERROR("catalog: snapshot entry %zu: bad db '%s' or key size %zu", i, e->db, e->key.len);
            return CV_EPROTO;
        }
        MDB_val k = {e->key.len, e->key.data}, v = {e->value.len, e->value.data};
        int rc = mdb_put(txn, cat->dbi[d], &k, &v, 0);
        if (rc != 0) return lmdb_err(rc, "put snapshot entry");
    }
    int rv = meta_put(txn, cat->dbi[DB_META], META_APPLIED, 8, snap->applied_index);
    return rv ? rv : meta_put(txn, cat->dbi[DB_META], META_SHARDS, 4, cat->shards);
}

/* One write txn; the new mirror is built inside it (which validates the records) and swapped in only
 * after the commit. */
static int restore_txn(struct cv_catalog *cat, const Cverse__Catalog__Snapshot *snap)
{
    MDB_txn *txn;
    struct mirror fresh;
    int rc = mdb_txn_begin(cat->env, NULL, 0, &txn);
    if (rc != 0) return lmdb_err(rc, "begin restore");
    int rv = restore_entries(cat, txn, snap);
    if (rv == 0) rv = mirror_load(cat, txn, &fresh);
    if (rv != 0) goto err_after_txn;
    rc = mdb_txn_commit(txn);
    if (rc != 0) {
        mirror_free(&fresh);
        return lmdb_err(rc, "commit restore");
    }
    mirror_free(&cat->m);
    cat->m = fresh;
    return 0;
err_after_txn:
    mdb_txn_abort(txn);
    return rv;
}

int cv_catalog_restore(struct cv_catalog *cat, const void *buf, size_t len, bool *ignored)
{
    bool dummy;
    if (!ignored) ignored = &dummy;
    *ignored = false;
    Cverse__Catalog__Snapshot *snap = cverse__catalog__snapshot__unpack(NULL, len, buf);
    if (!snap) return CV_EPROTO;
    int rv = 0;
    if (snap->shards != cat->shards) {
        CV_ERROR("catalog: snapshot has %u shards, configured %u", snap->shards, cat->shards);
        rv = CV_ECONFIG;
    } else if (snap->applied_index <= cat->m.applied) {
        *ignored = true;
    } else {
        rv = restore_txn(cat, snap);
    }
    cverse__catalog__snapshot__free_unpacked(snap, NULL);
    if (rv == 0 && !*ignored) check_after(cat, "restore");
    return rv;
}

/* ---- reads ---- */

uint64_t cv_catalog_applied_index(const struct cv_catalog *cat)
{
    return cat->m.applied;
}

uint32_t cv_catalog_shards(const struct cv_catalog *cat)
{
    return cat->shards;
}

uint64_t cv_catalog_config_fingerprint(const struct cv_catalog *cat)
{
    return cat->m.fingerprint;
}

size_t cv_catalog_node_count(const struct cv_catalog *cat)
{
    return cat->m.n;
}

const struct cv_catalog_node *cv_catalog_node_at(const struct cv_catalog *cat, size_t i)
{
    return i < cat->m.n ? &cat->m.nodes[i] : NULL;
}

const struct cv_catalog_node *cv_catalog_node_get(const struct cv_catalog *cat, const char *id)
{
    bool found;
    size_t i = mirror_find(&cat->m, id, &found);
    return found ? &cat->m.nodes[i] : NULL;
}

const char *cv_catalog_shard_owner(const struct cv_catalog *cat, uint32_t shard, uint64_t *epoch)
{
    if (shard >= cat->shards) return NULL;
    const struct slot *s = &cat->m.smap[shard];
    if (epoch) *epoch = s->epoch;
    return s->owner >= 0 ? cat->m.nodes[s->owner].id : "";
}

int cv_catalog_shard_release_state(const struct cv_catalog *cat, uint32_t shard, const char **from, bool *done)
{
    if (shard >= cat->shards) return CV_EINVAL;
    const struct slot *s = &cat->m.smap[shard];
    bool waiting = s->owner < 0 && s->released_by >= 0;
    if (from) *from = waiting ? cat->m.nodes[s->released_by].id : "";
    if (done) *done = waiting && s->released_epoch == s->epoch;
    return 0;
}

uint32_t cv_catalog_unassigned_shards(const struct cv_catalog *cat)
{
    uint64_t owned = 0;
    for (size_t i = 0; i < cat->m.n; i++) owned += cat->m.nodes[i].shards_owned;
    return cat->shards - (uint32_t)owned;
}

int cv_catalog_object_get(struct cv_catalog *cat, const char *id, char *type, size_t typelen, uint32_t *shard)
{
    return cv_catalog_object_get_ex(cat, id, type, typelen, shard, NULL);
}

int cv_catalog_object_get_ex(struct cv_catalog *cat, const char *id, char *type, size_t typelen,
                             uint32_t *shard, uint64_t *created_index)
{
    MDB_txn *txn;
    Cverse__Catalog__ObjectRecord *rec;
    if (!valid_key(cat, id)) return CV_EINVAL;
    int rc = mdb_txn_begin(cat->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0) return lmdb_err(rc, "begin read");
    int rv = msg_get(txn, cat->dbi[DB_OBJECTS], id, strlen(id), &cverse__catalog__object_record__descriptor,
                     (void **)&rec);
    mdb_txn_abort(txn);
    if (rv != 0) return rv == CV_EPROTO ? CV_ELMDB : rv;
    if (type && typelen > 0) {
        size_t n = strlen(rec->type) < typelen ? strlen(rec->type) : typelen - 1;
        memcpy(type, rec->type, n);
        type[n] = '\0';
    }
    if (shard) *shard = rec->shard;
    if (created_index) *created_index = rec->created_index;
    cverse__catalog__object_record__free_unpacked(rec, NULL);
    return 0;
}

static int foreach_cursor(MDB_cursor *cur, cv_catalog_object_cb cb, void *data)
{
    MDB_val k, v;
    int rc;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        Cverse__Catalog__ObjectRecord *rec = cverse__catalog__object_record__unpack(NULL, v.mv_size, v.mv_data);
        if (!rec) {
            CV_ERROR("catalog: undecodable object record");
            return CV_ELMDB;
        }
        int stop = cb(data, rec->type, rec->id, rec->shard);
        cverse__catalog__object_record__free_unpacked(rec, NULL);
        if (stop) return stop;
    }
    return rc == MDB_NOTFOUND ? 0 : lmdb_err(rc, "cursor objects");
}

int cv_catalog_object_foreach(struct cv_catalog *cat, cv_catalog_object_cb cb, void *data)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = mdb_txn_begin(cat->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0) return lmdb_err(rc, "begin read");
    int rv;
    if ((rc = mdb_cursor_open(txn, cat->dbi[DB_OBJECTS], &cur)) != 0) {
        rv = lmdb_err(rc, "cursor objects");
        goto err_after_txn;
    }
    rv = foreach_cursor(cur, cb, data);
    mdb_cursor_close(cur);
err_after_txn:
    mdb_txn_abort(txn);
    return rv;
}

size_t cv_catalog_object_count(struct cv_catalog *cat)
{
    MDB_txn *txn;
    MDB_stat st;
    if (mdb_txn_begin(cat->env, NULL, MDB_RDONLY, &txn) != 0) return 0;
    int rc = mdb_stat(txn, cat->dbi[DB_OBJECTS], &st);
    mdb_txn_abort(txn);
    return rc == 0 ? st.ms_entries : 0;
}

/* ---- checks ---- */

static bool node_equal(const struct cv_catalog_node *a, const struct cv_catalog_node *b)
{
    return strcmp(a->id, b->id) == 0 && strcmp(a->grpc_addr, b->grpc_addr) == 0 &&
           strcmp(a->advertise_addr, b->advertise_addr) == 0 && strcmp(a->http_addr, b->http_addr) == 0 &&
           strcmp(a->raft_addr, b->raft_addr) == 0 && a->raft_id == b->raft_id && a->role == b->role &&
           a->alive == b->alive && a->incarnation == b->incarnation &&
           a->lease_expiry_ms == b->lease_expiry_ms && a->lease_renewed_ms == b->lease_renewed_ms &&
           a->shards_owned == b->shards_owned;
}

static const char *mirror_diff(const struct mirror *a, const struct mirror *b, uint32_t shards)
{
    if (a->applied != b->applied) return "applied index";
    if (a->fingerprint != b->fingerprint) return "fingerprint";
    if (a->n != b->n) return "node count";
    for (size_t i = 0; i < a->n; i++)
        if (!node_equal(&a->nodes[i], &b->nodes[i])) return "a node";
    for (uint32_t s = 0; s < shards; s++)
        if (a->smap[s].owner != b->smap[s].owner || a->smap[s].epoch != b->smap[s].epoch ||
            a->smap[s].released_by != b->smap[s].released_by ||
            a->smap[s].released_epoch != b->smap[s].released_epoch)
            return "a shard";
    return NULL;
}

/* Owners are known nodes, an owned shard has had an owner change (epoch >= 1), shards_owned adds up. */
static const char *mirror_invariants(const struct mirror *m, uint32_t shards)
{
    uint64_t assigned = 0, owned = 0;
    for (uint32_t s = 0; s < shards; s++) {
        const struct slot *sl = &m->smap[s];
        if (sl->owner < -1 || sl->owner >= (int64_t)m->n) return "owner index out of range";
        if (sl->owner >= 0 && sl->epoch == 0) return "owned shard with epoch 0";
        if (sl->released_by < -1 || sl->released_by >= (int64_t)m->n) return "released_by out of range";
        if (sl->released_by >= 0 && sl->owner >= 0) return "owned shard waits for a release";
        if (sl->released_epoch > sl->epoch) return "released_epoch past the epoch";
        assigned += sl->owner >= 0;
    }
    for (size_t i = 0; i < m->n; i++) {
        owned += m->nodes[i].shards_owned;
        if (i > 0 && strcmp(m->nodes[i - 1].id, m->nodes[i].id) >= 0) return "nodes not sorted";
    }
    return assigned == owned ? NULL : "shards_owned does not add up";
}

int cv_catalog_check(struct cv_catalog *cat)
{
    MDB_txn *txn;
    struct mirror fresh;
    int rc = mdb_txn_begin(cat->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0) return lmdb_err(rc, "begin check");
    int rv = mirror_load(cat, txn, &fresh);
    mdb_txn_abort(txn);
    if (rv == CV_EPROTO) {
        CV_ERROR("catalog check: LMDB records are inconsistent");
        return CV_ECONFLICT;
    }
    if (rv != 0) return rv;
    const char *bad = mirror_diff(&cat->m, &fresh, cat->shards);
    if (bad)
        CV_ERROR("catalog check: mirror differs from LMDB in %s", bad);
    else if ((bad = mirror_invariants(&cat->m, cat->shards)) != NULL)
        CV_ERROR("catalog check: %s", bad);
    mirror_free(&fresh);
    return bad ? CV_ECONFLICT : 0;
}
