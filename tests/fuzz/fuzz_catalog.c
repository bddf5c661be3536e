/* libFuzzer target: catalog command application against a real LMDB (src/catalog).
 *
 * The input is read as a program: each step is an opcode byte and a few argument bytes that build one
 * catalog command (register / renew / expire nodes, assign / release / move / pin shards, drain, create /
 * delete objects, save state, add / remove nodes, set config) from small pools of node ids, shards, epochs
 * and object ids, so that commands hit each other's preconditions instead of failing on shape. Steps are
 * grouped into batches (one log entry each, as the leader proposes them); some steps instead apply the
 * raw input bytes as an entry (what a corrupted or newer-version entry looks like). After every entry
 * cv_catalog_check must hold (the mirror equals LMDB, shard/lease/object invariants); at the end a
 * snapshot must restore into a catalog that snapshots the same entries (but the restamped applied index).
 *
 * One LMDB environment serves the whole run (opening one per input would be too slow): each input starts
 * by restoring the empty catalog's snapshot, re-stamped with a newer applied index. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog.pb-c.h"
#include "catalog/catalog.h"
#include "catalog/store.h"
#include "cverse/error.h"
#include "util/log.h"

#define CHECK(c)                                                                                             \
    do {                                                                                                     \
        if (!(c)) __builtin_trap();                                                                          \
    } while (0)

#define SHARDS 16
#define MAX_STEPS 64
#define MAX_BATCH 4

static struct cv_catalog *cat;
static Cverse__Catalog__Snapshot *empty; /* the empty catalog's snapshot, restamped per input */
static uint64_t idx;                     /* the next log index */

static const char *const nodes[] = {"n1", "n2", "n3", "n4", ""};
static const char *const objs[] = {"a", "b", "shard#3/x", "shard#15/y", "n1/pinned", "n2/p", "", "shard#99/z"};
static const char *const otypes[] = {"Counter", "Chat", ""};

struct in {
    const uint8_t *p;
    size_t n;
};

static unsigned take(struct in *in)
{
    if (!in->n) return 0;
    in->n--;
    return *in->p++;
}

#define PICK(in, arr) (arr[take(in) % (sizeof arr / sizeof arr[0])])

static void cleanup(void)
{
    cv_catalog_close(cat);
}

static void setup(void)
{
    cv_log_init("fuzz", CV_LOG_ERROR); /* undecodable entries are expected here: no warning per input */
    char dir[] = "/tmp/cverse-fuzz-catalog-XXXXXX";
    CHECK(mkdtemp(dir));
    struct cv_catalog_opts o = {.dir = dir, .shards = SHARDS, .map_size = 256u << 20};
    CHECK(cv_catalog_open(&o, &cat) == 0);
    void *buf;
    size_t len;
    CHECK(cv_catalog_snapshot(cat, &buf, &len) == 0);
    empty = cverse__catalog__snapshot__unpack(NULL, len, buf);
    CHECK(empty);
    free(buf);
    idx = cv_catalog_applied_index(cat) + 1;
    atexit(cleanup);
    /* the directory is removed at once: LMDB keeps its open files, nothing is left behind */
    char path[512];
    snprintf(path, sizeof path, "%s/data.mdb", dir), unlink(path);
    snprintf(path, sizeof path, "%s/lock.mdb", dir), unlink(path);
    rmdir(dir);
}

static void reset(void)
{
    empty->applied_index = idx++;
    size_t len = cverse__catalog__snapshot__get_packed_size(empty);
    uint8_t *buf = malloc(len ? len : 1);
    CHECK(buf);
    cverse__catalog__snapshot__pack(empty, buf);
    bool ignored = true;
    CHECK(cv_catalog_restore(cat, buf, len, &ignored) == 0 && !ignored);
    free(buf);
    CHECK(cv_catalog_check(cat) == 0);
}

/* One command from the input into *c (its sub-message in *u). */
union sub {
    Cverse__Catalog__CmdSetConfig sc;
    Cverse__Catalog__CmdRegisterNode rn;
    Cverse__Catalog__CmdRenewLease rl;
    Cverse__Catalog__CmdExpireNode en;
    Cverse__Catalog__CmdSetRole sr;
    Cverse__Catalog__CmdAssignShards as;
    Cverse__Catalog__CmdReleaseShards rs;
    Cverse__Catalog__CmdMoveShard ms;
    Cverse__Catalog__CmdPinShard ps;
    Cverse__Catalog__CmdDrainNode dn;
    Cverse__Catalog__CmdCreateObject co;
    Cverse__Catalog__CmdDeleteObject dl;
    Cverse__Catalog__CmdSaveState ss;
    Cverse__Catalog__CmdAddNode an;
    Cverse__Catalog__CmdRemoveNode rm;
};
struct cmd {
    Cverse__Catalog__Command c;
    union sub u;
    Cverse__Catalog__NodeInfo info;
    Cverse__Catalog__ShardAssignment sa[3], *sap[3];
    uint32_t shards[3];
    uint64_t epochs[3];
    Cverse__Catalog__ObjectSave save, *savep;
    uint8_t state[4];
};

static uint64_t now_ms = 1000;

static void build_node_cmd(struct cmd *k, unsigned op, struct in *in)
{
    Cverse__Catalog__Command *c = &k->c;
    union sub *u = &k->u;
    const char *node = PICK(in, nodes);
    switch (op) {
    case 0:
        cverse__catalog__cmd_register_node__init(&u->rn), cverse__catalog__node_info__init(&k->info);
        k->info.id = (char *)node, k->info.raft_id = take(in) % 5 + 1;
        k->info.grpc_addr = k->info.raft_addr = "127.0.0.1:1";
        u->rn.info = &k->info, u->rn.now_ms = now_ms, u->rn.ttl_ms = 1500, u->rn.fresh = take(in) & 1;
        c->cmd_case = CVERSE__CATALOG__COMMAND__CMD_REGISTER_NODE, c->register_node = &u->rn;
        break;
    case 1:
        cverse__catalog__cmd_renew_lease__init(&u->rl);
        u->rl.node = (char *)node, u->rl.now_ms = now_ms, u->rl.ttl_ms = 1500;
        c->cmd_case = CVERSE__CATALOG__COMMAND__CMD_RENEW_LEASE, c->renew_lease = &u->rl;
        break;
    case 2:
        cverse__catalog__cmd_expire_node__init(&u->en);
        u->en.node = (char *)node, u->en.expiry_ms = now_ms + 1500 - (take(in) % 3) * 1000;
        c->cmd_case = CVERSE__CATALOG__COMMAND__CMD_EXPIRE_NODE, c->expire_node = &u->en;
        break;
    case 3:
        cverse__catalog__cmd_set_role__init(&u->sr);
        u->sr.node = (char *)node, u->sr.role = take(in) % 5;
        c->cmd_case = CVERSE__CATALOG__COMMAND__CMD_SET_ROLE, c->set_role = &u->sr;
        break;
    case 4:
        cverse__catalog__cmd_drain_node__init(&u->dn);
        u->dn.node = (char *)node, u->dn.drain = take(in) & 1, u->dn.reason = take(in) % 2;
        c->cmd_case = CVERSE__CATALOG__COMMAND__CMD_DRAIN_NODE, c->drain_node = &u->dn;
        break;
    case 5:
        cverse__catalog__cmd_add_node__init(&u->an), cverse__catalog__node_info__init(&k->info);
        k->info.id = (char *)node, k->info.raft_id = take(in) % 7 + 1, k->info.raft_addr = "127.0.0.1:2";
        u->an.info = &k->info;
        c->cmd_case = CVERSE__CATALOG__COMMAND__CMD_ADD_NODE, c->add_node = &u->an;
        break;
    default:
        cverse__catalog__cmd_remove_node__init(&u->rm);
        u->rm.node = (char *)node;
        c->cmd_case = CVERSE__CATALOG__COMMAND__CMD_REMOVE_NODE, c->remove_node = &u->rm;
        break;
    }
}

static void build_shard_cmd(struct cmd *k, unsigned op, struct in *in)
{
    Cverse__Catalog__Command *c = &k->c;
    union sub *u = &k->u;
    size_t n = take(in) % 3 + 1;
    for (size_t i = 0; i < n; i++) {
        k->shards[i] = take(in) % (SHARDS + 2); /* sometimes out of range */
        k->epochs[i] = take(in) % 6;
        cverse__catalog__shard_assignment__init(&k->sa[i]);
        k->sa[i].shard = k->shards[i], k->sa[i].owner = (char *)PICK(in, nodes);
        k->sa[i].expect_epoch = k->epochs[i], k->sap[i] = &k->sa[i];
    }
    switch (op) {
    case 0:
        cverse__catalog__cmd_assign_shards__init(&u->as);
        u->as.n_shards = n, u->as.shards = k->sap;
        c->cmd_case = CVERSE__CATALOG__COMMAND__CMD_ASSIGN_SHARDS, c->assign_shards = &u->as;
        break;
    case 1:
        cverse__catalog__cmd_release_shards__init(&u->rs);
        u->rs.node = (char *)PICK(in, nodes), u->rs.n_shards = n, u->rs.shards = k->shards;
        u->rs.n_epochs = n - (take(in) % 8 == 0), u->rs.epochs = k->epochs;
        c->cmd_case = CVERSE__CATALOG__COMMAND__CMD_RELEASE_SHARDS, c->release_shards = &u->rs;
        break;
    case 2:
        cverse__catalog__cmd_move_shard__init(&u->ms);
        u->ms.shard = k->shards[0], u->ms.node = (char *)PICK(in, nodes);
        c->cmd_case = CVERSE__CATALOG__COMMAND__CMD_MOVE_SHARD, c->move_shard = &u->ms;
        break;
    default:
        cverse__catalog__cmd_pin_shard__init(&u->ps);
        u->ps.shard = k->shards[0], u->ps.pinned = take(in) & 1;
        c->cmd_case = CVERSE__CATALOG__COMMAND__CMD_PIN_SHARD, c->pin_shard = &u->ps;
        break;
    }
}

static void build_object_cmd(struct cmd *k, unsigned op, struct in *in)
{
    Cverse__Catalog__Command *c = &k->c;
    union sub *u = &k->u;
    switch (op) {
    case 0:
        cverse__catalog__cmd_create_object__init(&u->co);
        u->co.id = (char *)PICK(in, objs), u->co.type = (char *)PICK(in, otypes);
        if (take(in) & 1) u->co.owner = (char *)PICK(in, nodes), u->co.epoch = take(in) % 6;
        c->cmd_case = CVERSE__CATALOG__COMMAND__CMD_CREATE_OBJECT, c->create_object = &u->co;
        break;
    case 1:
        cverse__catalog__cmd_delete_object__init(&u->dl);
        u->dl.id = (char *)PICK(in, objs), u->dl.type = (char *)PICK(in, otypes);
        c->cmd_case = CVERSE__CATALOG__COMMAND__CMD_DELETE_OBJECT, c->delete_object = &u->dl;
        break;
    case 2:
        cverse__catalog__cmd_save_state__init(&u->ss), cverse__catalog__object_save__init(&k->save);
        u->ss.node = (char *)PICK(in, nodes);
        k->save.id = (char *)PICK(in, objs), k->save.type = (char *)PICK(in, otypes);
        k->save.epoch = take(in) % 6, k->save.version = take(in) % 4;
        for (size_t i = 0; i < sizeof k->state; i++) k->state[i] = take(in);
        k->save.state.data = k->state, k->save.state.len = take(in) % (sizeof k->state + 1);
        k->save.now_ms = now_ms, k->save.call_window = take(in) % 3;
        k->savep = &k->save, u->ss.n_saves = 1, u->ss.saves = &k->savep;
        c->cmd_case = CVERSE__CATALOG__COMMAND__CMD_SAVE_STATE, c->save_state = &u->ss;
        break;
    default:
        cverse__catalog__cmd_set_config__init(&u->sc);
        u->sc.shards = take(in) & 1 ? SHARDS : SHARDS * 2, u->sc.fingerprint = take(in);
        c->cmd_case = CVERSE__CATALOG__COMMAND__CMD_SET_CONFIG, c->set_config = &u->sc;
        break;
    }
}

static void apply_entry(const void *buf, size_t len)
{
    bool skipped = true;
    int rv = cv_catalog_apply(cat, idx++, buf, len, &skipped);
    CHECK(rv == 0 || rv == CV_EPROTO);
    CHECK(!skipped);
    CHECK(cv_catalog_check(cat) == 0);
}

static void run_batch(struct in *in, size_t n)
{
    struct cmd k[MAX_BATCH];
    Cverse__Catalog__Command *cp[MAX_BATCH];
    for (size_t i = 0; i < n; i++) {
        memset(&k[i], 0, sizeof k[i]);
        cverse__catalog__command__init(&k[i].c);
        k[i].c.origin = "fuzz", k[i].c.seq = idx * MAX_BATCH + i;
        unsigned op = take(in);
        switch (op % 3) {
        case 0: build_node_cmd(&k[i], (op / 3) % 7, in); break;
        case 1: build_shard_cmd(&k[i], (op / 3) % 4, in); break;
        default: build_object_cmd(&k[i], (op / 3) % 4, in); break;
        }
        cp[i] = &k[i].c;
    }
    Cverse__Catalog__Batch b = CVERSE__CATALOG__BATCH__INIT;
    b.n_commands = n, b.commands = cp;
    size_t len = cverse__catalog__batch__get_packed_size(&b);
    uint8_t *buf = malloc(len ? len : 1);
    CHECK(buf);
    cverse__catalog__batch__pack(&b, buf);
    apply_entry(buf, len);
    free(buf);
}

/* The snapshot restores into a catalog that snapshots the same content. */
static void check_snapshot(void)
{
    void *a, *b;
    size_t alen, blen;
    CHECK(cv_catalog_snapshot(cat, &a, &alen) == 0);
    Cverse__Catalog__Snapshot *s = cverse__catalog__snapshot__unpack(NULL, alen, a);
    CHECK(s);
    s->applied_index = idx++;
    size_t len = cverse__catalog__snapshot__get_packed_size(s);
    uint8_t *buf = malloc(len);
    CHECK(buf);
    cverse__catalog__snapshot__pack(s, buf);
    bool ignored = true;
    CHECK(cv_catalog_restore(cat, buf, len, &ignored) == 0 && !ignored);
    CHECK(cv_catalog_check(cat) == 0);
    CHECK(cv_catalog_snapshot(cat, &b, &blen) == 0);
    Cverse__Catalog__Snapshot *t = cverse__catalog__snapshot__unpack(NULL, blen, b);
    CHECK(t && t->applied_index == s->applied_index && t->n_entries == s->n_entries);
    for (size_t i = 0; i < t->n_entries; i++) {
        const Cverse__Catalog__SnapshotEntry *x = s->entries[i], *y = t->entries[i];
        CHECK(strcmp(x->db, y->db) == 0 && x->key.len == y->key.len);
        CHECK(x->key.len == 0 || memcmp(x->key.data, y->key.data, x->key.len) == 0);
        if (strcmp(x->db, "meta") == 0 && x->key.len == strlen(CV_META_APPLIED) &&
            memcmp(x->key.data, CV_META_APPLIED, x->key.len) == 0)
            continue; /* the applied index: restamped */
        CHECK(x->value.len == y->value.len);
        CHECK(x->value.len == 0 || memcmp(x->value.data, y->value.data, x->value.len) == 0);
    }
    cverse__catalog__snapshot__free_unpacked(t, NULL);
    cverse__catalog__snapshot__free_unpacked(s, NULL);
    free(buf);
    free(a);
    free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!cat) setup();
    reset();
    struct in in = {data, size};
    for (int step = 0; step < MAX_STEPS && in.n; step++) {
        unsigned h = take(&in);
        now_ms += h & 0x0f ? 10 : 2000; /* now and then a lease's whole TTL passes */
        if (h >> 4 == 0xf) {
            apply_entry(in.p, in.n < 32 ? in.n : 32); /* raw bytes as an entry */
            continue;
        }
        run_batch(&in, (h >> 4) % MAX_BATCH + 1);
    }
    check_snapshot();
    return 0;
}
