/* The catalog: the Raft FSM. LMDB holds the truth (dbs "meta", "nodes", "shards", "leases", "objects",
 * "states"); an in-memory mirror (nodes sorted by id, shard map as node index + epoch) serves the hot reads.
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
 * reason. Records are protobuf; integers in "meta" are big-endian. Nothing here reads a clock.
 *
 * This file: open/close, apply, snapshot/restore, reads and the check. The records are store.c, the
 * mirror and stage mirror.c, the commands cmd.c. */
#include "catalog/catalog.h"

#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog/cmd.h"
#include "catalog/mirror.h"
#include "catalog/store.h"
#include "cverse/error.h"
#include "util/buf.h"
#include "util/fs.h"
#include "util/log.h"

#define CAT__DEFAULT_MAP_SIZE ((size_t)1 << 30)

struct cv_catalog {
    MDB_env *env;
    MDB_dbi dbi[CV_DB__COUNT];
    uint32_t shards;
    size_t max_key;
    struct cv_mirror m;
    struct cv_stage st;
    struct cv_cmd_result *results; /* scratch for the observer, grows */
    size_t cap_results;
    uint8_t *seen; /* shards bits: duplicate detection in assign_shards */
    cv_catalog_observer observer;
    void *observer_data;
    bool joined; /* the last apply added a node: the whole shard map was renumbered */
};

/* ---- apply ---- */

/* A commit that failed: LMDB reports the short write of a full disk as EIO, so the text comes from
 * cv_fs_strerror ("No space left on device"). */
static int catalog__commit_err(struct cv_catalog *cat, int rc, const char *what)
{
    const char *dir = NULL;
    if (rc <= 0 || mdb_env_get_path(cat->env, &dir) != 0) return cv_store_lmdb_err(rc, what);
    CV_ERROR("catalog: %s: %s (data dir %s)", what, cv_fs_strerror(rc, dir), dir);
    return CV_ELMDB;
}

#ifdef CV_CHECKS
/* After an apply: what its stage changed against LMDB, and the mirror's invariants (in memory). A
 * publish touches nothing else unless a node joined, so this finds what the full reload would, at
 * the cost of the entry's size instead of the catalog's; the full check still runs after a join,
 * after a restore and every 64th entry. */
static int catalog__check_stage(struct cv_catalog *cat)
{
    MDB_txn *txn;
    const char *bad;
    int rc = mdb_txn_begin(cat->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0) return cv_store_lmdb_err(rc, "begin check");
    int rv = cv_mirror_check_stage(&cat->m, &cat->st, txn, cat->dbi, &bad);
    mdb_txn_abort(txn);
    if (rv == CV_EPROTO)
        bad = "a record that does not decode";
    else if (rv != 0)
        return rv;
    if (bad)
        CV_ERROR("catalog check: mirror differs from LMDB in %s", bad);
    else if ((bad = cv_mirror_invariants(&cat->m)) != NULL)
        CV_ERROR("catalog check: %s", bad);
    return bad ? CV_ECONFLICT : 0;
}
#endif

/* Debug builds: a broken catalog after an apply or restore is a bug: stop at once. full: reload and
 * compare everything (cv_catalog_check), else only what the last apply staged. */
static void catalog__check_after(struct cv_catalog *cat, const char *what, bool full)
{
#ifdef CV_CHECKS
    full = full || cat->joined || cat->m.applied % 64 == 0;
    if ((full ? cv_catalog_check(cat) : catalog__check_stage(cat)) == CV_ECONFLICT) {
        CV_ERROR("catalog: invariants broken after %s", what);
        abort();
    }
#else
    (void)cat, (void)what, (void)full;
#endif
}

static int catalog__apply_batch(struct cv_catalog *cat, uint64_t index, const Cverse__Catalog__Batch *b)
{
    MDB_txn *txn;
    /* At least one slot: the observer never gets a NULL results pointer, even for an empty batch. */
    int rv =
        cv_array_grow((void **)&cat->results, &cat->cap_results, b->n_commands + 1, sizeof *cat->results);
    if (rv != 0) return rv;
    cv_stage_reset(&cat->st);
    int rc = mdb_txn_begin(cat->env, NULL, 0, &txn);
    if (rc != 0) return cv_store_lmdb_err(rc, "begin apply");
    struct cv_cmd_ctx c = {txn, cat->dbi, cat->shards, cat->max_key, &cat->st, cat->seen, index};
    for (size_t i = 0; i < b->n_commands; i++) {
        cat->results[i] = (struct cv_cmd_result){b->commands[i]->origin, b->commands[i]->seq, 0};
        rv = cv_cmd_run(&c, b->commands[i], &cat->results[i].status);
        if (rv != 0) goto err_after_txn;
    }
    rv = cv_store_meta_put(txn, cat->dbi[CV_DB_META], CV_META_APPLIED, 8, index);
    if (rv == 0) rv = cv_mirror_reserve(&cat->m, &cat->st);
    if (rv != 0) goto err_after_txn;
    rc = mdb_txn_commit(txn);
    if (rc != 0) return catalog__commit_err(cat, rc, "commit apply");
    size_t n_nodes = cat->m.n;
    cv_mirror_publish(&cat->m, &cat->st, index);
    cat->joined = cat->m.n != n_nodes;
    return 0;
err_after_txn:
    mdb_txn_abort(txn);
    return rv == CV_ENOMEM ? CV_ENOMEM : CV_ELMDB;
}

static int catalog__apply_noop(struct cv_catalog *cat, uint64_t index)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(cat->env, NULL, 0, &txn);
    if (rc != 0) return cv_store_lmdb_err(rc, "begin noop");
    int rv = cv_store_meta_put(txn, cat->dbi[CV_DB_META], CV_META_APPLIED, 8, index);
    if (rv != 0) {
        mdb_txn_abort(txn);
        return rv;
    }
    rc = mdb_txn_commit(txn);
    if (rc != 0) return catalog__commit_err(cat, rc, "commit noop");
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
        int rv = catalog__apply_noop(cat, index);
        return rv ? rv : CV_EPROTO;
    }
    int rv = catalog__apply_batch(cat, index, b);
    if (rv == 0 && cat->observer) cat->observer(cat->observer_data, index, b, cat->results);
    cverse__catalog__batch__free_unpacked(b, NULL);
    if (rv == 0) catalog__check_after(cat, "apply", false);
    return rv;
}

int cv_catalog_apply_noop(struct cv_catalog *cat, uint64_t index)
{
    if (index <= cat->m.applied) return 0;
    return catalog__apply_noop(cat, index);
}

/* ---- open / close ---- */

/* Opens the dbs, checks or records the shard count, loads the mirror: one write txn. */
static int catalog__open_dbs(struct cv_catalog *cat)
{
    MDB_txn *txn;
    uint64_t shards;
    bool found;
    int rc = mdb_txn_begin(cat->env, NULL, 0, &txn);
    if (rc != 0) return cv_store_lmdb_err(rc, "begin open");
    int rv = 0;
    for (int d = 0; d < CV_DB__COUNT && rv == 0; d++)
        if ((rc = mdb_dbi_open(txn, cv_store_db_names[d], MDB_CREATE, &cat->dbi[d])) != 0)
            rv = cv_store_lmdb_err(rc, "dbi open");
    if (rv == 0) rv = cv_store_meta_get(txn, cat->dbi[CV_DB_META], CV_META_SHARDS, 4, &shards, &found);
    if (rv == 0 && found && shards != cat->shards) {
        CV_ERROR("catalog: holds %llu shards, configured %u", (unsigned long long)shards, cat->shards);
        rv = CV_ECONFIG;
    }
    if (rv == 0 && !found) rv = cv_store_meta_put(txn, cat->dbi[CV_DB_META], CV_META_SHARDS, 4, cat->shards);
    if (rv == 0) rv = cv_mirror_load(txn, cat->dbi, cat->shards, &cat->m);
    if (rv != 0) goto err_after_txn;
    rc = mdb_txn_commit(txn);
    if (rc != 0) {
        cv_mirror_free(&cat->m);
        return cv_store_lmdb_err(rc, "commit open");
    }
    return 0;
err_after_txn:
    mdb_txn_abort(txn);
    return rv == CV_EPROTO ? CV_ELMDB : rv;
}

int cv_catalog_open(const struct cv_catalog_opts *opts, struct cv_catalog **out)
{
    if (!opts || !opts->dir || opts->shards == 0) return CV_EINVAL;
    int rv = cv_mkdir_p(opts->dir);
    if (rv != 0) return rv;
    struct cv_catalog *cat = calloc(1, sizeof *cat);
    if (!cat) return CV_ENOMEM;
    cat->shards = opts->shards;
    cat->seen = calloc(opts->shards / 8 + 1, 1);
    rv = CV_ENOMEM;
    if (!cat->seen) goto err_after_cat;
    int rc = mdb_env_create(&cat->env);
    if (rc != 0) goto err_after_cat_lmdb;
    if ((rc = mdb_env_set_maxdbs(cat->env, 16)) != 0 ||
        (rc = mdb_env_set_mapsize(cat->env, opts->map_size ? opts->map_size : CAT__DEFAULT_MAP_SIZE)) != 0 ||
        (rc = mdb_env_open(cat->env, opts->dir, opts->sync_each_txn ? 0 : MDB_NOSYNC, 0644)) != 0)
        goto err_after_env_lmdb;
    cat->max_key = (size_t)mdb_env_get_maxkeysize(cat->env);
    rv = catalog__open_dbs(cat);
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
    rv = cv_store_lmdb_err(rc, "env create");
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
    cv_mirror_free(&cat->m);
    cv_stage_free(&cat->st);
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
    return rc ? cv_store_lmdb_err(rc, "sync") : 0;
}

/* ---- snapshot / restore ---- */

/* Appends every (db, key, value) of db d; entries point into txn's pages. */
static int catalog__snapshot_db(struct cv_catalog *cat, MDB_txn *txn, int d,
                                Cverse__Catalog__SnapshotEntry *ents, size_t cap, size_t *n)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, cat->dbi[d], &cur);
    if (rc != 0) return cv_store_lmdb_err(rc, "cursor snapshot");
    int rv = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (*n == cap) { /* cannot happen: counted in the same txn */
            rv = CV_ELMDB;
            goto err_after_cursor;
        }
        Cverse__Catalog__SnapshotEntry *e = &ents[(*n)++];
        cverse__catalog__snapshot_entry__init(e);
        e->db = (char *)cv_store_db_names[d];
        e->key = (ProtobufCBinaryData){k.mv_size, k.mv_data};
        e->value = (ProtobufCBinaryData){v.mv_size, v.mv_data};
    }
    if (rc != MDB_NOTFOUND) rv = cv_store_lmdb_err(rc, "cursor snapshot");
err_after_cursor:
    mdb_cursor_close(cur);
    return rv;
}

static int catalog__snapshot_pack(struct cv_catalog *cat, MDB_txn *txn, size_t total, void **buf, size_t *len)
{
    Cverse__Catalog__Snapshot snap = CVERSE__CATALOG__SNAPSHOT__INIT;
    bool found;
    int rv = CV_ENOMEM;
    Cverse__Catalog__SnapshotEntry *ents = calloc(total ? total : 1, sizeof *ents);
    Cverse__Catalog__SnapshotEntry **ptrs = calloc(total ? total : 1, sizeof *ptrs);
    if (!ents || !ptrs) goto err_after_alloc;
    rv = 0;
    for (int d = 0; d < CV_DB__COUNT && rv == 0; d++)
        rv = catalog__snapshot_db(cat, txn, d, ents, total, &snap.n_entries);
    if (rv == 0)
        rv = cv_store_meta_get(txn, cat->dbi[CV_DB_META], CV_META_APPLIED, 8, &snap.applied_index, &found);
    if (rv != 0) goto err_after_alloc;
    for (size_t i = 0; i < snap.n_entries; i++)
        ptrs[i] = &ents[i];
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
    if (rc != 0) return cv_store_lmdb_err(rc, "begin snapshot");
    int rv = 0;
    for (int d = 0; d < CV_DB__COUNT && rv == 0; d++) {
        if ((rc = mdb_stat(txn, cat->dbi[d], &st)) != 0) rv = cv_store_lmdb_err(rc, "stat");
        total += st.ms_entries;
    }
    if (rv == 0) rv = catalog__snapshot_pack(cat, txn, total, buf, len);
    mdb_txn_abort(txn);
    return rv;
}

static int catalog__db_index(const char *name)
{
    for (int d = 0; d < CV_DB__COUNT; d++)
        if (strcmp(cv_store_db_names[d], name) == 0) return d;
    return -1;
}

static int catalog__restore_entries(struct cv_catalog *cat, MDB_txn *txn,
                                    const Cverse__Catalog__Snapshot *snap)
{
    for (int d = 0; d < CV_DB__COUNT; d++) {
        int rc = mdb_drop(txn, cat->dbi[d], 0);
        if (rc != 0) return cv_store_lmdb_err(rc, "drop");
    }
    for (size_t i = 0; i < snap->n_entries; i++) {
        const Cverse__Catalog__SnapshotEntry *e = snap->entries[i];
        int d = catalog__db_index(e->db);
        if (d < 0 || e->key.len == 0 || e->key.len > cat->max_key) {
            CV_ERROR("catalog: snapshot entry %zu: bad db '%s' or key size %zu", i, e->db, e->key.len);
            return CV_EPROTO;
        }
        MDB_val k = {e->key.len, e->key.data}, v = {e->value.len, e->value.data};
        int rc = mdb_put(txn, cat->dbi[d], &k, &v, 0);
        if (rc != 0) return cv_store_lmdb_err(rc, "put snapshot entry");
    }
    int rv = cv_store_meta_put(txn, cat->dbi[CV_DB_META], CV_META_APPLIED, 8, snap->applied_index);
    return rv ? rv : cv_store_meta_put(txn, cat->dbi[CV_DB_META], CV_META_SHARDS, 4, cat->shards);
}

/* One write txn; the new mirror is built inside it (which validates the records) and swapped in only
 * after the commit. */
static int catalog__restore_txn(struct cv_catalog *cat, const Cverse__Catalog__Snapshot *snap)
{
    MDB_txn *txn;
    struct cv_mirror fresh;
    int rc = mdb_txn_begin(cat->env, NULL, 0, &txn);
    if (rc != 0) return cv_store_lmdb_err(rc, "begin restore");
    int rv = catalog__restore_entries(cat, txn, snap);
    if (rv == 0) rv = cv_mirror_load(txn, cat->dbi, cat->shards, &fresh);
    if (rv != 0) goto err_after_txn;
    rc = mdb_txn_commit(txn);
    if (rc != 0) {
        cv_mirror_free(&fresh);
        return cv_store_lmdb_err(rc, "commit restore");
    }
    cv_mirror_free(&cat->m);
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
        rv = catalog__restore_txn(cat, snap);
    }
    cverse__catalog__snapshot__free_unpacked(snap, NULL);
    if (rv == 0 && !*ignored) catalog__check_after(cat, "restore", true);
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
    size_t i = cv_mirror_find(&cat->m, id, &found);
    return found ? &cat->m.nodes[i] : NULL;
}

const struct cv_catalog_node *cv_catalog_node_by_raft_id(const struct cv_catalog *cat, uint64_t raft_id)
{
    for (size_t i = 0; raft_id && i < cat->m.n; i++)
        if (cat->m.nodes[i].raft_id == raft_id) return &cat->m.nodes[i];
    return NULL;
}

const char *cv_catalog_shard_owner(const struct cv_catalog *cat, uint32_t shard, uint64_t *epoch)
{
    if (shard >= cat->shards) return NULL;
    const struct cv_slot *s = &cat->m.smap[shard];
    if (epoch) *epoch = s->epoch;
    return s->owner >= 0 ? cat->m.nodes[s->owner].id : "";
}

int cv_catalog_shard_get(const struct cv_catalog *cat, uint32_t shard, struct cv_catalog_shard *out)
{
    struct cv_shard_view v;
    if (shard >= cat->shards) return CV_EINVAL;
    const struct cv_slot *s = &cat->m.smap[shard];
    cv_mirror_shard_view(&cat->m, shard, &v);
    *out = (struct cv_catalog_shard){
        .state = cv_shard_state(&v),
        .owner = s->owner >= 0 ? cat->m.nodes[s->owner].id : "",
        .epoch = s->epoch,
        .released_by = s->released_by >= 0 ? cat->m.nodes[s->released_by].id : "",
        .released_epoch = s->released_epoch,
        .target = s->target >= 0 ? cat->m.nodes[s->target].id : "",
        .pinned = s->pinned,
    };
    return 0;
}

int cv_catalog_shard_state(const struct cv_catalog *cat, uint32_t shard)
{
    struct cv_catalog_shard sh;
    int rv = cv_catalog_shard_get(cat, shard, &sh);
    return rv ? rv : (int)sh.state;
}

bool cv_catalog_shard_to_release(const struct cv_catalog *cat, uint32_t shard, const char *node,
                                 uint64_t *epoch)
{
    struct cv_catalog_shard sh;
    if (cv_catalog_shard_get(cat, shard, &sh) != 0 || !cv_shard_must_confirm(sh.state) ||
        strcmp(sh.released_by, node) != 0)
        return false;
    if (epoch) *epoch = sh.epoch;
    return true;
}

uint32_t cv_catalog_unassigned_shards(const struct cv_catalog *cat)
{
    uint64_t owned = 0;
    for (size_t i = 0; i < cat->m.n; i++)
        owned += cat->m.nodes[i].shards_owned;
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
    if (!cv_store_key_ok(cat->max_key, id)) return CV_EINVAL;
    int rc = mdb_txn_begin(cat->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0) return cv_store_lmdb_err(rc, "begin read");
    int rv = cv_store_msg_get(txn, cat->dbi[CV_DB_OBJECTS], id, strlen(id),
                              &cverse__catalog__object_record__descriptor, (void **)&rec);
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

static int catalog__foreach_cursor(MDB_cursor *cur, cv_catalog_object_cb cb, void *data)
{
    MDB_val k, v;
    int rc;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        Cverse__Catalog__ObjectRecord *rec =
            cverse__catalog__object_record__unpack(NULL, v.mv_size, v.mv_data);
        if (!rec) {
            CV_ERROR("catalog: undecodable object record");
            return CV_ELMDB;
        }
        int stop = cb(data, rec->type, rec->id, rec->shard);
        cverse__catalog__object_record__free_unpacked(rec, NULL);
        if (stop) return stop;
    }
    return rc == MDB_NOTFOUND ? 0 : cv_store_lmdb_err(rc, "cursor objects");
}

int cv_catalog_object_foreach(struct cv_catalog *cat, cv_catalog_object_cb cb, void *data)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    int rc = mdb_txn_begin(cat->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0) return cv_store_lmdb_err(rc, "begin read");
    int rv;
    if ((rc = mdb_cursor_open(txn, cat->dbi[CV_DB_OBJECTS], &cur)) != 0) {
        rv = cv_store_lmdb_err(rc, "cursor objects");
        goto err_after_txn;
    }
    rv = catalog__foreach_cursor(cur, cb, data);
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
    int rc = mdb_stat(txn, cat->dbi[CV_DB_OBJECTS], &st);
    mdb_txn_abort(txn);
    return rc == 0 ? st.ms_entries : 0;
}

static int catalog__state_copy(const Cverse__Catalog__StateRecord *rec, struct cv_catalog_state *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->type, sizeof out->type, "%s", rec->type);
    snprintf(out->node, sizeof out->node, "%s", rec->node);
    out->version = rec->version;
    out->epoch = rec->epoch;
    out->saved_index = rec->saved_index;
    out->len = rec->state.len;
    if (out->len == 0) return 0;
    out->state = malloc(out->len);
    if (!out->state) return CV_ENOMEM;
    memcpy(out->state, rec->state.data, out->len);
    return 0;
}

/* Reads id's state record in a read transaction of its own: 0 and *rec (owned: free_unpacked), CV_ENOTFOUND,
 * CV_EINVAL for a bad id, an LMDB error. */
static int catalog__state_record(struct cv_catalog *cat, const char *id, Cverse__Catalog__StateRecord **rec)
{
    MDB_txn *txn;
    if (!id || !cv_store_key_ok(cat->max_key, id)) return CV_EINVAL;
    int rc = mdb_txn_begin(cat->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0) return cv_store_lmdb_err(rc, "begin read");
    int rv = cv_store_msg_get(txn, cat->dbi[CV_DB_STATES], id, strlen(id),
                              &cverse__catalog__state_record__descriptor, (void **)rec);
    mdb_txn_abort(txn);
    return rv;
}

int cv_catalog_state_get(struct cv_catalog *cat, const char *id, struct cv_catalog_state *out)
{
    Cverse__Catalog__StateRecord *rec;
    int rv = catalog__state_record(cat, id, &rec);
    if (rv != 0) return rv == CV_EPROTO ? CV_ELMDB : rv;
    rv = catalog__state_copy(rec, out);
    cverse__catalog__state_record__free_unpacked(rec, NULL);
    return rv;
}

int cv_catalog_state_calls(struct cv_catalog *cat, const char *id, const struct cv_catalog_call_visit *v)
{
    Cverse__Catalog__StateRecord *rec;
    int rv = catalog__state_record(cat, id, &rec);
    if (rv == CV_ENOTFOUND) return 0;
    if (rv != 0) return rv == CV_EPROTO ? CV_ELMDB : rv;
    for (size_t i = 0; i < rec->n_calls; i++) {
        const Cverse__Catalog__CallRecord *c = rec->calls[i];
        v->call(v->data, c->id, c->status, c->error, c->response.data, c->response.len, c->at_ms);
    }
    for (size_t i = 0; i < rec->n_expired_calls; i++) v->expired(v->data, rec->expired_calls[i]);
    cverse__catalog__state_record__free_unpacked(rec, NULL);
    return 0;
}

static int catalog__reminders_visit(const MDB_val *k, const MDB_val *v, cv_catalog_reminder_cb cb, void *data)
{
    char id[512]; /* LMDB keys are at most 511 bytes */
    if (k->mv_size >= sizeof id) return 0;
    memcpy(id, k->mv_data, k->mv_size);
    id[k->mv_size] = '\0';
    Cverse__Catalog__ReminderSet *set = cverse__catalog__reminder_set__unpack(NULL, v->mv_size, v->mv_data);
    if (!set) return CV_ELMDB;
    int stop = 0;
    for (size_t i = 0; i < set->n_reminders && !stop; i++) {
        const Cverse__Catalog__Reminder *r = set->reminders[i];
        stop = cb(data, set->type, id, r->name, r->due_ms, r->period_ms);
    }
    cverse__catalog__reminder_set__free_unpacked(set, NULL);
    return stop;
}

int cv_catalog_reminders_get(struct cv_catalog *cat, const char *id, cv_catalog_reminder_cb cb, void *data)
{
    MDB_txn *txn;
    if (!id || !cv_store_key_ok(cat->max_key, id)) return CV_EINVAL;
    int rc = mdb_txn_begin(cat->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0) return cv_store_lmdb_err(rc, "begin read");
    MDB_val k = {strlen(id), (void *)id}, v;
    rc = mdb_get(txn, cat->dbi[CV_DB_REMINDERS], &k, &v);
    int rv = rc == MDB_NOTFOUND ? 0 : rc ? cv_store_lmdb_err(rc, "get reminders") : catalog__reminders_visit(&k, &v, cb, data);
    mdb_txn_abort(txn);
    return rv;
}

int cv_catalog_reminder_foreach(struct cv_catalog *cat, cv_catalog_reminder_cb cb, void *data)
{
    MDB_txn *txn;
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = mdb_txn_begin(cat->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0) return cv_store_lmdb_err(rc, "begin read");
    int rv = 0;
    if ((rc = mdb_cursor_open(txn, cat->dbi[CV_DB_REMINDERS], &cur)) != 0) {
        rv = cv_store_lmdb_err(rc, "cursor reminders");
        goto err_after_txn;
    }
    while (rv == 0 && (rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) rv = catalog__reminders_visit(&k, &v, cb, data);
    if (rv == 0 && rc != MDB_NOTFOUND) rv = cv_store_lmdb_err(rc, "cursor reminders");
    mdb_cursor_close(cur);
err_after_txn:
    mdb_txn_abort(txn);
    return rv;
}

void cv_catalog_state_stats(struct cv_catalog *cat, size_t *count, uint64_t *bytes)
{
    MDB_txn *txn;
    MDB_stat st;
    *count = 0;
    *bytes = 0;
    if (mdb_txn_begin(cat->env, NULL, MDB_RDONLY, &txn) != 0) return;
    if (mdb_stat(txn, cat->dbi[CV_DB_STATES], &st) == 0) {
        *count = st.ms_entries;
        *bytes = (uint64_t)st.ms_psize * (st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages);
    }
    mdb_txn_abort(txn);
}

int cv_catalog_check(struct cv_catalog *cat)
{
    MDB_txn *txn;
    struct cv_mirror fresh;
    int rc = mdb_txn_begin(cat->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0) return cv_store_lmdb_err(rc, "begin check");
    int rv = cv_mirror_load(txn, cat->dbi, cat->shards, &fresh);
    mdb_txn_abort(txn);
    if (rv == CV_EPROTO) {
        CV_ERROR("catalog check: LMDB records are inconsistent");
        return CV_ECONFLICT;
    }
    if (rv != 0) return rv;
    const char *bad = cv_mirror_diff(&cat->m, &fresh);
    if (bad)
        CV_ERROR("catalog check: mirror differs from LMDB in %s", bad);
    else if ((bad = cv_mirror_invariants(&cat->m)) != NULL)
        CV_ERROR("catalog check: %s", bad);
    cv_mirror_free(&fresh);
    return bad ? CV_ECONFLICT : 0;
}
