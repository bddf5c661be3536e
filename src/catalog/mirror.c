/* The catalog's in-memory mirror: nodes sorted by id and the shard map as node indexes, built from LMDB
 * at open/restore and updated from each apply's stage after its commit, so the hot reads (owner of a
 * shard, a node's addresses) never touch LMDB.
 *
 * Happy path: commands stage what they changed (cv_stage_*); before the commit cv_mirror_reserve makes
 * room for new nodes; after it cv_mirror_publish moves the stage in, which cannot fail. A node that
 * joins renumbers the shard map's indexes (rare; cheaper than an indirection on every read).
 * Failure modes: loading fails with CV_EPROTO on inconsistent records and CV_ENOMEM/CV_ELMDB; the
 * stage only with CV_ENOMEM (the apply is then aborted and the stage dropped). */
#include "catalog/mirror.h"

#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"
#include "util/be.h"
#include "util/buf.h"
#include "util/log.h"

void cv_mirror_free(struct cv_mirror *m)
{
    free(m->nodes);
    free(m->smap);
    memset(m, 0, sizeof *m);
}

size_t cv_mirror_find(const struct cv_mirror *m, const char *id, bool *found)
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

static int mirror__load_nodes(MDB_txn *txn, const MDB_dbi *dbi, struct cv_mirror *m)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, dbi[CV_DB_NODES], &cur);
    if (rc != 0) return cv_store_lmdb_err(rc, "cursor nodes");
    int rv = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        struct cv_store_node sn;
        rv = cv_array_grow((void **)&m->nodes, &m->cap, m->n + 1, sizeof *m->nodes);
        if (rv == 0) rv = cv_store_node_read(txn, dbi, k.mv_data, k.mv_size, &sn);
        if (rv != 0) goto err_after_cursor;
        m->nodes[m->n++] = sn.n;
    }
    if (rc != MDB_NOTFOUND) rv = cv_store_lmdb_err(rc, "cursor nodes");
err_after_cursor:
    mdb_cursor_close(cur);
    return rv;
}

static int mirror__load_shard(struct cv_mirror *m, const MDB_val *k, const MDB_val *v)
{
    struct cv_store_shard r;
    bool found;
    if (k->mv_size != 4) return CV_EPROTO;
    uint32_t shard = cv_be32_get(k->mv_data);
    if (shard >= m->shards) return CV_EPROTO;
    int rv = cv_store_shard_decode(v, &r);
    if (rv != 0) return rv;
    struct cv_slot *s = &m->smap[shard];
    s->epoch = r.epoch;
    s->released_epoch = r.released_epoch;
    s->pinned = r.pinned;
    if (r.target[0] != '\0') {
        size_t idx = cv_mirror_find(m, r.target, &found);
        if (!found) {
            CV_ERROR("catalog: shard %u targets unknown node '%s'", shard, r.target);
            return CV_EPROTO;
        }
        s->target = (int32_t)idx;
    }
    if (r.released_by[0] != '\0') {
        size_t idx = cv_mirror_find(m, r.released_by, &found);
        if (!found) {
            CV_ERROR("catalog: shard %u released by unknown node '%s'", shard, r.released_by);
            return CV_EPROTO;
        }
        s->released_by = (int32_t)idx;
    }
    if (r.owner[0] == '\0') return 0;
    size_t idx = cv_mirror_find(m, r.owner, &found);
    if (!found) {
        CV_ERROR("catalog: shard %u owned by unknown node '%s'", shard, r.owner);
        return CV_EPROTO;
    }
    s->owner = (int32_t)idx;
    m->nodes[idx].shards_owned++;
    return 0;
}

static int mirror__load_shards(MDB_txn *txn, const MDB_dbi *dbi, struct cv_mirror *m)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, dbi[CV_DB_SHARDS], &cur);
    if (rc != 0) return cv_store_lmdb_err(rc, "cursor shards");
    int rv = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        rv = mirror__load_shard(m, &k, &v);
        if (rv != 0) goto err_after_cursor;
    }
    if (rc != MDB_NOTFOUND) rv = cv_store_lmdb_err(rc, "cursor shards");
err_after_cursor:
    mdb_cursor_close(cur);
    return rv;
}

int cv_mirror_load(MDB_txn *txn, const MDB_dbi *dbi, uint32_t shards, struct cv_mirror *m)
{
    bool found;
    memset(m, 0, sizeof *m);
    m->shards = shards;
    m->smap = malloc((size_t)shards * sizeof *m->smap);
    if (!m->smap) return CV_ENOMEM;
    for (uint32_t s = 0; s < shards; s++)
        m->smap[s] = (struct cv_slot){.owner = -1, .released_by = -1, .target = -1};
    int rv = cv_store_meta_get(txn, dbi[CV_DB_META], CV_META_APPLIED, 8, &m->applied, &found);
    if (rv == 0) rv = cv_store_meta_get(txn, dbi[CV_DB_META], CV_META_FP, 8, &m->fingerprint, &found);
    if (rv == 0) rv = mirror__load_nodes(txn, dbi, m);
    if (rv == 0) rv = mirror__load_shards(txn, dbi, m);
    if (rv != 0) cv_mirror_free(m);
    return rv;
}

int cv_mirror_reserve(struct cv_mirror *m, const struct cv_stage *st)
{
    size_t add = 0;
    bool found;
    for (size_t i = 0; i < st->n_nodes; i++) {
        cv_mirror_find(m, st->nodes[i].id, &found);
        add += !found;
    }
    return cv_array_grow((void **)&m->nodes, &m->cap, m->n + add, sizeof *m->nodes);
}

static void mirror__upsert_node(struct cv_mirror *m, const struct cv_catalog_node *n)
{
    bool found;
    size_t pos = cv_mirror_find(m, n->id, &found);
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
    for (uint32_t s = 0; s < m->shards; s++) {
        if (m->smap[s].owner >= (int32_t)pos) m->smap[s].owner++;
        if (m->smap[s].released_by >= (int32_t)pos) m->smap[s].released_by++;
        if (m->smap[s].target >= (int32_t)pos) m->smap[s].target++;
    }
}

/* Mirror index of a staged node id ("" = -1). The ids were checked against LMDB = mirror + stage. */
static int32_t mirror__index(const struct cv_mirror *m, const char *id, uint32_t shard)
{
    bool found;
    if (id[0] == '\0') return -1;
    size_t idx = cv_mirror_find(m, id, &found);
    if (!found) CV_ERROR("catalog: BUG: staged node '%s' of shard %u not in the mirror", id, shard);
    return found ? (int32_t)idx : -1;
}

static void mirror__set_shard(struct cv_mirror *m, const struct cv_shard_change *ch)
{
    struct cv_slot *s = &m->smap[ch->shard];
    s->target = mirror__index(m, ch->r.target, ch->shard);
    s->pinned = ch->r.pinned;
    if (ch->same_owner) {
        s->released_epoch = ch->r.released_epoch;
        return;
    }
    if (ch->r.epoch <= s->epoch) /* cannot happen: every owner change bumps the epoch read from LMDB */
        CV_ERROR("catalog: BUG: shard %u epoch %llu -> %llu", ch->shard, (unsigned long long)s->epoch,
                 (unsigned long long)ch->r.epoch);
    if (s->owner >= 0) m->nodes[s->owner].shards_owned--;
    s->epoch = ch->r.epoch;
    s->released_by = mirror__index(m, ch->r.released_by, ch->shard);
    s->released_epoch = ch->r.released_epoch;
    s->owner = mirror__index(m, ch->r.owner, ch->shard);
    if (s->owner >= 0) m->nodes[s->owner].shards_owned++;
}

void cv_mirror_publish(struct cv_mirror *m, const struct cv_stage *st, uint64_t index)
{
    for (size_t i = 0; i < st->n_nodes; i++)
        mirror__upsert_node(m, &st->nodes[i]);
    for (size_t i = 0; i < st->n_shards; i++)
        mirror__set_shard(m, &st->shards[i]);
    if (st->fp_set) m->fingerprint = st->fp;
    m->applied = index;
}

/* ---- the stage ---- */

void cv_stage_reset(struct cv_stage *st)
{
    st->n_nodes = 0;
    st->n_shards = 0;
    st->fp_set = false;
}

void cv_stage_free(struct cv_stage *st)
{
    free(st->nodes);
    free(st->shards);
    memset(st, 0, sizeof *st);
}

int cv_stage_node(struct cv_stage *st, const struct cv_catalog_node *n)
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

int cv_stage_shard(struct cv_stage *st, uint32_t shard, const struct cv_store_shard *r, bool same_owner)
{
    int rv = cv_array_grow((void **)&st->shards, &st->cap_shards, st->n_shards + 1, sizeof *st->shards);
    if (rv != 0) return rv;
    struct cv_shard_change *ch = &st->shards[st->n_shards++];
    ch->shard = shard;
    ch->same_owner = same_owner;
    ch->r = *r;
    return 0;
}

/* ---- checks ---- */

static bool mirror__node_equal(const struct cv_catalog_node *a, const struct cv_catalog_node *b)
{
    return strcmp(a->id, b->id) == 0 && strcmp(a->grpc_addr, b->grpc_addr) == 0 &&
           strcmp(a->advertise_addr, b->advertise_addr) == 0 && strcmp(a->http_addr, b->http_addr) == 0 &&
           strcmp(a->raft_addr, b->raft_addr) == 0 && a->raft_id == b->raft_id && a->role == b->role &&
           a->alive == b->alive && a->draining == b->draining && a->drain_shutdown == b->drain_shutdown && a->incarnation == b->incarnation &&
           a->removed == b->removed &&
           a->lease_expiry_ms == b->lease_expiry_ms && a->lease_renewed_ms == b->lease_renewed_ms &&
           a->shards_owned == b->shards_owned;
}

const char *cv_mirror_diff(const struct cv_mirror *a, const struct cv_mirror *b)
{
    if (a->applied != b->applied) return "applied index";
    if (a->fingerprint != b->fingerprint) return "fingerprint";
    if (a->n != b->n) return "node count";
    for (size_t i = 0; i < a->n; i++)
        if (!mirror__node_equal(&a->nodes[i], &b->nodes[i])) return "a node";
    for (uint32_t s = 0; s < a->shards; s++)
        if (a->smap[s].owner != b->smap[s].owner || a->smap[s].epoch != b->smap[s].epoch ||
            a->smap[s].released_by != b->smap[s].released_by ||
            a->smap[s].released_epoch != b->smap[s].released_epoch || a->smap[s].target != b->smap[s].target ||
            a->smap[s].pinned != b->smap[s].pinned)
            return "a shard";
    return NULL;
}

static const char *mirror__node_differs(const struct cv_mirror *m, MDB_txn *txn, const MDB_dbi *dbi,
                                        const char *id, int *rv)
{
    struct cv_store_node sn;
    bool found;
    size_t i = cv_mirror_find(m, id, &found);
    if (!found) return "a node";
    *rv = cv_store_node_read(txn, dbi, id, strlen(id), &sn);
    if (*rv == CV_ENOTFOUND)
        *rv = 0;
    else if (*rv == 0)
        sn.n.shards_owned = m->nodes[i].shards_owned; /* derived: the invariants count it */
    return *rv == 0 && mirror__node_equal(&m->nodes[i], &sn.n) ? NULL : "a node";
}

static const char *mirror__slot_differs(const struct cv_mirror *m, MDB_txn *txn, const MDB_dbi *dbi,
                                        uint32_t shard, int *rv)
{
    struct cv_store_shard r;
    const struct cv_slot *sl = &m->smap[shard];
    *rv = cv_store_shard_read(txn, dbi, shard, &r);
    if (*rv != 0) return NULL;
    const char *owner = sl->owner >= 0 ? m->nodes[sl->owner].id : "";
    const char *rel = sl->released_by >= 0 ? m->nodes[sl->released_by].id : "";
    const char *target = sl->target >= 0 ? m->nodes[sl->target].id : "";
    bool same = strcmp(owner, r.owner) == 0 && strcmp(rel, r.released_by) == 0 && sl->epoch == r.epoch &&
                sl->released_epoch == r.released_epoch && strcmp(target, r.target) == 0 &&
                sl->pinned == r.pinned;
    return same ? NULL : "a shard";
}

int cv_mirror_check_stage(const struct cv_mirror *m, const struct cv_stage *st, MDB_txn *txn,
                          const MDB_dbi *dbi, const char **bad)
{
    uint64_t applied, fp;
    bool found;
    int rv = cv_store_meta_get(txn, dbi[CV_DB_META], CV_META_APPLIED, 8, &applied, &found);
    if (rv == 0) rv = cv_store_meta_get(txn, dbi[CV_DB_META], CV_META_FP, 8, &fp, &found);
    *bad = NULL;
    if (rv != 0) return rv;
    if (applied != m->applied)
        *bad = "applied index";
    else if (fp != m->fingerprint)
        *bad = "fingerprint";
    for (size_t i = 0; i < st->n_nodes && !*bad && rv == 0; i++)
        *bad = mirror__node_differs(m, txn, dbi, st->nodes[i].id, &rv);
    for (size_t i = 0; i < st->n_shards && !*bad && rv == 0; i++)
        *bad = mirror__slot_differs(m, txn, dbi, st->shards[i].shard, &rv);
    return rv;
}

void cv_mirror_shard_view(const struct cv_mirror *m, uint32_t shard, struct cv_shard_view *v)
{
    const struct cv_slot *sl = &m->smap[shard];
    *v = (struct cv_shard_view){
        .owner = sl->owner >= 0,
        .owner_live = sl->owner >= 0 && m->nodes[sl->owner].alive,
        .epoch = sl->epoch,
        .released_by = sl->released_by >= 0,
        .releaser_live = sl->released_by >= 0 && m->nodes[sl->released_by].alive,
        .released_epoch = sl->released_epoch,
    };
}

/* Every node's shards_owned against a count of the shard map; NULL or what broke. */
static const char *mirror__owned_counts(const struct cv_mirror *m)
{
    uint32_t *count = calloc(m->n ? m->n : 1, sizeof *count);
    const char *bad = NULL;
    if (!count) return NULL; /* a debug check only: skip it rather than fail */
    for (uint32_t s = 0; s < m->shards; s++)
        if (m->smap[s].owner >= 0) count[m->smap[s].owner]++;
    for (size_t i = 0; i < m->n && !bad; i++)
        if (count[i] != m->nodes[i].shards_owned) bad = "shards_owned does not add up";
    free(count);
    return bad;
}

const char *cv_mirror_invariants(const struct cv_mirror *m)
{
    struct cv_shard_view v;
    for (uint32_t s = 0; s < m->shards; s++) {
        const struct cv_slot *sl = &m->smap[s];
        if (sl->owner < -1 || sl->owner >= (int64_t)m->n) return "owner index out of range";
        if (sl->released_by < -1 || sl->released_by >= (int64_t)m->n) return "released_by out of range";
        if (sl->target < -1 || sl->target >= (int64_t)m->n) return "target out of range";
        cv_mirror_shard_view(m, s, &v);
        const char *bad = cv_shard_invariant(&v);
        if (bad) return bad;
    }
    for (size_t i = 1; i < m->n; i++)
        if (strcmp(m->nodes[i - 1].id, m->nodes[i].id) >= 0) return "nodes not sorted";
    return mirror__owned_counts(m);
}
