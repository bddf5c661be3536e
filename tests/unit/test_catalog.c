/* Unit tests for src/catalog: every command and its business errors, the replay guard, determinism,
 * snapshot/restore, corrupt entries, LMDB failures, a large round trip, and apply throughput. Real LMDB
 * environments in temp dirs under /tmp (removed by the fixture). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog/catalog.h"
#include "core/assign.h"
#include "core/hash.h"
#include "cverse/error.h"
#include "util/log.h"

#include "lsan_check.h"
#include "tmpdir.h"

typedef Cverse__Catalog__Command Cmd;

/* ---- fixture: one temp root per test ---------------------------------------------------------- */

static char root[64];

static void setup(void)
{
    strcpy(root, "/tmp/cv-catalog-XXXXXX");
    cr_assert_not_null(mkdtemp(root));
    cv_log_init("test", CV_LOG_ERROR + 1); /* the tests provoke errors on purpose: keep the log quiet */
}

static void teardown(void)
{
    cv_tmpdir_remove(root);
    cv_lsan_check();
}

/* A shard's handoff as the tests read it: *from the node it was unassigned from while that node owned
 * it ("" if it has an owner or was never taken from one), *done that node confirmed the release. */
static int release_state(struct cv_catalog *cat, uint32_t shard, const char **from, bool *done)
{
    struct cv_catalog_shard sh;
    int rv = cv_catalog_shard_get(cat, shard, &sh);
    if (rv) return rv;
    bool waiting = !*sh.owner && *sh.released_by;
    *from = waiting ? sh.released_by : "";
    *done = waiting && sh.released_epoch == sh.epoch;
    return 0;
}

TestSuite(catalog, .init = setup, .fini = teardown);

static const char *subdir(const char *name)
{
    static char bufs[4][128];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, 128, "%s/%s", root, name);
    return b;
}

/* ---- observer --------------------------------------------------------------------------------- */

#define OBS_MAX 1024
struct obs {
    int calls;
    uint64_t index;
    size_t n;
    int status[OBS_MAX];
    uint64_t seq[OBS_MAX];
    char origin0[32];
};

static void on_apply(void *data, uint64_t index, const Cverse__Catalog__Batch *b, const struct cv_cmd_result *r)
{
    struct obs *o = data;
    o->calls++;
    o->index = index;
    o->n = b->n_commands;
    for (size_t i = 0; i < b->n_commands && i < OBS_MAX; i++) {
        o->status[i] = r[i].status;
        o->seq[i] = r[i].seq;
    }
    snprintf(o->origin0, sizeof o->origin0, "%s", b->n_commands ? r[0].origin : "");
}

struct tcat {
    struct cv_catalog *cat;
    struct obs obs;
};

static void topen_opts(struct tcat *t, const char *dir, uint32_t shards, bool sync)
{
    struct cv_catalog_opts o = {.dir = dir, .shards = shards, .sync_each_txn = sync};
    int rv = cv_catalog_open(&o, &t->cat);
    cr_assert_eq(rv, 0, "open %s: %s", dir, cv_errname(rv));
    memset(&t->obs, 0, sizeof t->obs);
    cv_catalog_set_observer(t->cat, on_apply, &t->obs);
}

static void topen(struct tcat *t, const char *dir, uint32_t shards)
{
    topen_opts(t, dir, shards, false);
}

static void tclose(struct tcat *t)
{
    cv_catalog_close(t->cat);
    t->cat = NULL;
}

/* ---- batch builder: a packed Batch is the concatenation of its packed Commands (field 1) ---------- */

struct tb {
    uint8_t *buf;
    size_t len, cap;
    size_t n;
    uint64_t seq;
};

static void tb_raw(struct tb *t, const Cmd *c)
{
    size_t n = cverse__catalog__command__get_packed_size(c);
    if (t->len + n + 11 > t->cap) {
        t->cap = (t->len + n + 11) * 2;
        t->buf = realloc(t->buf, t->cap);
        cr_assert_not_null(t->buf);
    }
    t->buf[t->len++] = 0x0a; /* field 1, length-delimited */
    for (size_t v = n; ; v >>= 7) {
        t->buf[t->len++] = (uint8_t)((v & 0x7f) | (v >= 0x80 ? 0x80 : 0));
        if (v < 0x80) break;
    }
    t->len += cverse__catalog__command__pack(c, t->buf + t->len);
    t->n++;
}

static void tb_free(struct tb *t)
{
    free(t->buf);
    memset(t, 0, sizeof *t);
}

static void tb_reset(struct tb *t)
{
    t->len = 0;
    t->n = 0;
}

static Cmd tb_cmd(struct tb *t)
{
    Cmd c = CVERSE__CATALOG__COMMAND__INIT;
    c.origin = "tester";
    c.seq = ++t->seq;
    return c;
}

static void tb_config(struct tb *t, uint64_t fp, uint32_t shards)
{
    Cverse__Catalog__CmdSetConfig x = CVERSE__CATALOG__CMD_SET_CONFIG__INIT;
    x.fingerprint = fp;
    x.shards = shards;
    Cmd c = tb_cmd(t);
    c.cmd_case = CVERSE__CATALOG__COMMAND__CMD_SET_CONFIG;
    c.set_config = &x;
    tb_raw(t, &c);
}

static bool tb_fresh; /* the next registrations are a new process' first (RegisterNode.fresh) */

static void tb_register_info(struct tb *t, Cverse__Catalog__NodeInfo *info, uint64_t now, uint64_t ttl)
{
    Cverse__Catalog__CmdRegisterNode x = CVERSE__CATALOG__CMD_REGISTER_NODE__INIT;
    x.info = info;
    x.fresh = tb_fresh;
    x.now_ms = now;
    x.ttl_ms = ttl;
    Cmd c = tb_cmd(t);
    c.cmd_case = CVERSE__CATALOG__COMMAND__CMD_REGISTER_NODE;
    c.register_node = &x;
    tb_raw(t, &c);
}

static void tb_register(struct tb *t, const char *id, uint64_t now, uint64_t ttl)
{
    char grpc[64], raft[64];
    Cverse__Catalog__NodeInfo info = CVERSE__CATALOG__NODE_INFO__INIT;
    snprintf(grpc, sizeof grpc, "127.0.0.1:%u", 7000 + (unsigned)(cv_fnv1a32(id, strlen(id)) % 1000));
    snprintf(raft, sizeof raft, "127.0.0.1:%u", 8000 + (unsigned)(cv_fnv1a32(id, strlen(id)) % 1000));
    info.id = (char *)id;
    info.grpc_addr = grpc;
    info.advertise_addr = grpc;
    info.http_addr = "127.0.0.1:9000";
    info.raft_addr = raft;
    info.raft_id = cv_fnv1a32(id, strlen(id));
    tb_register_info(t, &info, now, ttl);
}

static void tb_renew(struct tb *t, const char *node, uint64_t now, uint64_t ttl)
{
    Cverse__Catalog__CmdRenewLease x = CVERSE__CATALOG__CMD_RENEW_LEASE__INIT;
    x.node = (char *)node;
    x.now_ms = now;
    x.ttl_ms = ttl;
    Cmd c = tb_cmd(t);
    c.cmd_case = CVERSE__CATALOG__COMMAND__CMD_RENEW_LEASE;
    c.renew_lease = &x;
    tb_raw(t, &c);
}

static void tb_expire(struct tb *t, const char *node, uint64_t expiry)
{
    Cverse__Catalog__CmdExpireNode x = CVERSE__CATALOG__CMD_EXPIRE_NODE__INIT;
    x.node = (char *)node;
    x.expiry_ms = expiry;
    Cmd c = tb_cmd(t);
    c.cmd_case = CVERSE__CATALOG__COMMAND__CMD_EXPIRE_NODE;
    c.expire_node = &x;
    tb_raw(t, &c);
}

static void tb_role(struct tb *t, const char *node, int role)
{
    Cverse__Catalog__CmdSetRole x = CVERSE__CATALOG__CMD_SET_ROLE__INIT;
    x.node = (char *)node;
    x.role = (Cverse__Catalog__Role)role;
    Cmd c = tb_cmd(t);
    c.cmd_case = CVERSE__CATALOG__COMMAND__CMD_SET_ROLE;
    c.set_role = &x;
    tb_raw(t, &c);
}

/* n assignments: shard[i] -> owner[i] (owners may be NULL: all to owner0), expecting epoch[i]. */
static void tb_assign(struct tb *t, size_t n, const uint32_t *shard, const char *const *owner, const char *owner0,
                      const uint64_t *epoch)
{
    Cverse__Catalog__ShardAssignment *a = calloc(n ? n : 1, sizeof *a);
    Cverse__Catalog__ShardAssignment **p = calloc(n ? n : 1, sizeof *p);
    cr_assert(a && p);
    for (size_t i = 0; i < n; i++) {
        cverse__catalog__shard_assignment__init(&a[i]);
        a[i].shard = shard[i];
        a[i].owner = (char *)(owner ? owner[i] : owner0);
        a[i].expect_epoch = epoch ? epoch[i] : 0;
        p[i] = &a[i];
    }
    Cverse__Catalog__CmdAssignShards x = CVERSE__CATALOG__CMD_ASSIGN_SHARDS__INIT;
    x.n_shards = n;
    x.shards = p;
    Cmd c = tb_cmd(t);
    c.cmd_case = CVERSE__CATALOG__COMMAND__CMD_ASSIGN_SHARDS;
    c.assign_shards = &x;
    tb_raw(t, &c);
    free(p);
    free(a);
}

static void tb_assign1(struct tb *t, uint32_t shard, const char *owner, uint64_t epoch)
{
    tb_assign(t, 1, &shard, NULL, owner, &epoch);
}

/* node releases n shards, expecting epoch[i] each (epoch NULL: no epochs at all). */
static void tb_release(struct tb *t, const char *node, size_t n, const uint32_t *shard, const uint64_t *epoch)
{
    Cverse__Catalog__CmdReleaseShards x = CVERSE__CATALOG__CMD_RELEASE_SHARDS__INIT;
    x.node = (char *)node;
    x.n_shards = n;
    x.n_epochs = epoch ? n : 0; /* NULL: a malformed command */
    x.shards = (uint32_t *)shard;
    x.epochs = (uint64_t *)epoch;
    Cmd c = tb_cmd(t);
    c.cmd_case = CVERSE__CATALOG__COMMAND__CMD_RELEASE_SHARDS;
    c.release_shards = &x;
    tb_raw(t, &c);
}

static void tb_release1(struct tb *t, const char *node, uint32_t shard, uint64_t epoch)
{
    tb_release(t, node, 1, &shard, &epoch);
}

static void tb_move(struct tb *t, uint32_t shard, const char *node)
{
    Cverse__Catalog__CmdMoveShard x = CVERSE__CATALOG__CMD_MOVE_SHARD__INIT;
    x.shard = shard;
    x.node = (char *)node;
    Cmd c = tb_cmd(t);
    c.cmd_case = CVERSE__CATALOG__COMMAND__CMD_MOVE_SHARD;
    c.move_shard = &x;
    tb_raw(t, &c);
}

static void tb_pin(struct tb *t, uint32_t shard, bool pinned)
{
    Cverse__Catalog__CmdPinShard x = CVERSE__CATALOG__CMD_PIN_SHARD__INIT;
    x.shard = shard;
    x.pinned = pinned;
    Cmd c = tb_cmd(t);
    c.cmd_case = CVERSE__CATALOG__COMMAND__CMD_PIN_SHARD;
    c.pin_shard = &x;
    tb_raw(t, &c);
}

static void tb_drain_why(struct tb *t, const char *node, bool drain, bool shutdown)
{
    Cverse__Catalog__CmdDrainNode x = CVERSE__CATALOG__CMD_DRAIN_NODE__INIT;
    x.node = (char *)node;
    x.drain = drain;
    x.reason = shutdown ? CVERSE__CATALOG__DRAIN_REASON__DRAIN_SHUTDOWN : CVERSE__CATALOG__DRAIN_REASON__DRAIN_OPERATOR;
    Cmd c = tb_cmd(t);
    c.cmd_case = CVERSE__CATALOG__COMMAND__CMD_DRAIN_NODE;
    c.drain_node = &x;
    tb_raw(t, &c);
}

static void tb_drain(struct tb *t, const char *node, bool drain)
{
    tb_drain_why(t, node, drain, false);
}

static void tb_create(struct tb *t, const char *type, const char *id)
{
    Cverse__Catalog__CmdCreateObject x = CVERSE__CATALOG__CMD_CREATE_OBJECT__INIT;
    x.type = (char *)type;
    x.id = (char *)id;
    Cmd c = tb_cmd(t);
    c.cmd_case = CVERSE__CATALOG__COMMAND__CMD_CREATE_OBJECT;
    c.create_object = &x;
    tb_raw(t, &c);
}

static void tb_delete_typed(struct tb *t, const char *id, const char *type)
{
    Cverse__Catalog__CmdDeleteObject x = CVERSE__CATALOG__CMD_DELETE_OBJECT__INIT;
    x.id = (char *)id;
    x.type = (char *)type;
    Cmd c = tb_cmd(t);
    c.cmd_case = CVERSE__CATALOG__COMMAND__CMD_DELETE_OBJECT;
    c.delete_object = &x;
    tb_raw(t, &c);
}

static void tb_delete(struct tb *t, const char *id)
{
    tb_delete_typed(t, id, "");
}

/* Applies the builder's batch at `index` (must not be skipped) and resets the builder. */
static void tb_apply(struct tcat *c, uint64_t index, struct tb *t)
{
    bool skipped = true;
    int calls = c->obs.calls;
    int rv = cv_catalog_apply(c->cat, index, t->buf ? t->buf : (uint8_t *)"", t->len, &skipped);
    cr_assert_eq(rv, 0, "apply %llu: %s", (unsigned long long)index, cv_errname(rv));
    cr_assert(!skipped);
    cr_assert_eq(c->obs.calls, calls + 1);
    cr_assert_eq(c->obs.index, index);
    cr_assert_eq(c->obs.n, t->n);
    cr_assert_eq(cv_catalog_applied_index(c->cat), index);
    tb_reset(t);
}

/* Applies one-command batches and returns the command's status. */
static int one(struct tcat *c, uint64_t index, struct tb *t)
{
    cr_assert_eq(t->n, 1);
    tb_apply(c, index, t);
    return c->obs.status[0];
}

#define ASSERT_STATUS(c, index, tb, want)                                                               \
    do {                                                                                                \
        int st_ = one((c), (index), (tb));                                                              \
        cr_assert_eq(st_, (want), "entry %llu: status %s, want %s", (unsigned long long)(index),        \
                     cv_errname(st_), cv_errname(want));                                                \
    } while (0)

/* ---- comparisons ------------------------------------------------------------------------------ */

static void snap(struct tcat *c, void **buf, size_t *len)
{
    int rv = cv_catalog_snapshot(c->cat, buf, len);
    cr_assert_eq(rv, 0, "snapshot: %s", cv_errname(rv));
}

static void assert_same_snapshot(struct tcat *a, struct tcat *b)
{
    void *x, *y;
    size_t xl, yl;
    snap(a, &x, &xl);
    snap(b, &y, &yl);
    cr_assert_eq(xl, yl, "snapshot sizes %zu vs %zu", xl, yl);
    cr_assert(memcmp(x, y, xl) == 0, "snapshots differ");
    free(x);
    free(y);
}

static void assert_node_eq(const struct cv_catalog_node *a, const struct cv_catalog_node *b)
{
    cr_assert_str_eq(a->id, b->id);
    cr_assert_str_eq(a->grpc_addr, b->grpc_addr);
    cr_assert_str_eq(a->advertise_addr, b->advertise_addr);
    cr_assert_str_eq(a->http_addr, b->http_addr);
    cr_assert_str_eq(a->raft_addr, b->raft_addr);
    cr_assert_eq(a->raft_id, b->raft_id);
    cr_assert_eq(a->role, b->role);
    cr_assert_eq(a->alive, b->alive);
    cr_assert_eq(a->draining, b->draining);
    cr_assert_eq(a->drain_shutdown, b->drain_shutdown);
    cr_assert_eq(a->incarnation, b->incarnation);
    cr_assert_eq(a->lease_expiry_ms, b->lease_expiry_ms);
    cr_assert_eq(a->lease_renewed_ms, b->lease_renewed_ms);
    cr_assert_eq(a->shards_owned, b->shards_owned);
}

/* A copy of everything the mirror shows, to compare a catalog with itself across a reopen. */
struct view {
    size_t n;
    struct cv_catalog_node *nodes;
    char (*owner)[CV_NODE_ID_MAX], (*from)[CV_NODE_ID_MAX], (*target)[CV_NODE_ID_MAX];
    uint64_t *epoch;
    bool *done, *pinned;
    uint32_t shards, unassigned;
    uint64_t applied, fp;
};

static void view_take(struct tcat *c, struct view *v)
{
    v->n = cv_catalog_node_count(c->cat);
    v->shards = cv_catalog_shards(c->cat);
    v->nodes = calloc(v->n + 1, sizeof *v->nodes);
    v->owner = calloc(v->shards, sizeof *v->owner);
    v->epoch = calloc(v->shards, sizeof *v->epoch);
    v->from = calloc(v->shards, sizeof *v->from);
    v->done = calloc(v->shards, sizeof *v->done);
    v->target = calloc(v->shards, sizeof *v->target);
    v->pinned = calloc(v->shards, sizeof *v->pinned);
    cr_assert(v->nodes && v->owner && v->epoch && v->from && v->done && v->target && v->pinned);
    for (size_t i = 0; i < v->n; i++) v->nodes[i] = *cv_catalog_node_at(c->cat, i);
    for (uint32_t s = 0; s < v->shards; s++) {
        const char *o = cv_catalog_shard_owner(c->cat, s, &v->epoch[s]);
        cr_assert_not_null(o);
        snprintf(v->owner[s], CV_NODE_ID_MAX, "%s", o);
        const char *from = "";
        cr_assert_eq(release_state(c->cat, s, &from, &v->done[s]), 0);
        snprintf(v->from[s], CV_NODE_ID_MAX, "%s", from);
        struct cv_catalog_shard sh;
        cr_assert_eq(cv_catalog_shard_get(c->cat, s, &sh), 0);
        snprintf(v->target[s], CV_NODE_ID_MAX, "%s", sh.target);
        v->pinned[s] = sh.pinned;
    }
    v->unassigned = cv_catalog_unassigned_shards(c->cat);
    v->applied = cv_catalog_applied_index(c->cat);
    v->fp = cv_catalog_config_fingerprint(c->cat);
}

static void view_free(struct view *v)
{
    free(v->nodes);
    free(v->owner);
    free(v->epoch);
    free(v->from);
    free(v->done);
    free(v->target);
    free(v->pinned);
}

static void assert_view_eq(struct view *a, struct view *b)
{
    cr_assert_eq(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) assert_node_eq(&a->nodes[i], &b->nodes[i]);
    cr_assert_eq(a->shards, b->shards);
    for (uint32_t s = 0; s < a->shards; s++) {
        cr_assert_str_eq(a->owner[s], b->owner[s], "owner of shard %u", s);
        cr_assert_eq(a->epoch[s], b->epoch[s], "epoch of shard %u", s);
        cr_assert_str_eq(a->from[s], b->from[s], "released_by of shard %u", s);
        cr_assert_eq(a->done[s], b->done[s], "release of shard %u", s);
        cr_assert_str_eq(a->target[s], b->target[s], "target of shard %u", s);
        cr_assert_eq(a->pinned[s], b->pinned[s], "pin of shard %u", s);
    }
    cr_assert_eq(a->unassigned, b->unassigned);
    cr_assert_eq(a->applied, b->applied);
    cr_assert_eq(a->fp, b->fp);
}

static void assert_same_reads(struct tcat *a, struct tcat *b)
{
    struct view x, y;
    view_take(a, &x);
    view_take(b, &y);
    assert_view_eq(&x, &y);
    view_free(&x);
    view_free(&y);
    cr_assert_eq(cv_catalog_object_count(a->cat), cv_catalog_object_count(b->cat));
}

static void assert_check(struct tcat *c)
{
    int rv = cv_catalog_check(c->cat);
    cr_assert_eq(rv, 0, "check: %s", cv_errname(rv));
}

/* ---- a deterministic script of entries touching every command ----------------------------------- */

struct entries {
    size_t n;
    uint8_t **buf;
    size_t *len;
};

static uint64_t lcg(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

static void script_add(struct entries *e, struct tb *t)
{
    e->buf = realloc(e->buf, (e->n + 1) * sizeof *e->buf);
    e->len = realloc(e->len, (e->n + 1) * sizeof *e->len);
    e->buf[e->n] = malloc(t->len ? t->len : 1);
    memcpy(e->buf[e->n], t->buf, t->len);
    e->len[e->n++] = t->len;
    tb_reset(t);
}

/* n entries of up to 8 commands; successful and failing commands mixed. Shards: 64. */
static void script_build(struct entries *e, size_t n)
{
    static const char *nodes[] = {"n0", "n1", "n2", "n3", "n4"};
    struct tb t = {0};
    uint64_t s = 42, now = 1000;
    char id[64];
    memset(e, 0, sizeof *e);
    tb_config(&t, 0xfeedull, 64);
    for (int i = 0; i < 5; i++) tb_register(&t, nodes[i], now, 3000);
    script_add(e, &t);
    while (e->n < n) {
        size_t k = 1 + lcg(&s) % 8;
        for (size_t i = 0; i < k; i++) {
            const char *nd = nodes[lcg(&s) % 5];
            now += lcg(&s) % 50;
            switch (lcg(&s) % 9) {
            case 0: tb_renew(&t, nd, now, 3000); break;
            case 1: tb_expire(&t, nd, lcg(&s) % 2 ? now : 0); break;
            case 2: tb_role(&t, nd, (int)(lcg(&s) % 4)); break;
            case 3: tb_assign1(&t, (uint32_t)(lcg(&s) % 70), lcg(&s) % 6 ? nd : "", lcg(&s) % 3); break;
            case 4: tb_register(&t, nd, now, 3000); break;
            case 6: tb_release1(&t, nd, (uint32_t)(lcg(&s) % 70), lcg(&s) % 4); break;
            case 5: tb_delete(&t, (snprintf(id, sizeof id, "o%llu", (unsigned long long)(lcg(&s) % 50)), id)); break;
            case 7: /* an operator's wishes, valid or not (unknown node, shard out of range) */
                switch (lcg(&s) % 3) {
                case 0: tb_move(&t, (uint32_t)(lcg(&s) % 70), lcg(&s) % 4 ? (lcg(&s) % 5 ? nd : "zz") : ""); break;
                case 1: tb_pin(&t, (uint32_t)(lcg(&s) % 70), lcg(&s) % 2); break;
                default: tb_drain(&t, lcg(&s) % 6 ? nd : "zz", lcg(&s) % 3 == 0);
                }
                break;
            default:
                snprintf(id, sizeof id, "o%llu", (unsigned long long)(lcg(&s) % 50));
                tb_create(&t, lcg(&s) % 5 ? "Counter" : "Chat", id);
            }
        }
        script_add(e, &t);
    }
    tb_free(&t);
}

static void script_free(struct entries *e)
{
    for (size_t i = 0; i < e->n; i++) free(e->buf[i]);
    free(e->buf);
    free(e->len);
}

/* Feeds entries [from, to) at indexes base+i; returns how many were skipped. */
static size_t script_feed(struct tcat *c, const struct entries *e, size_t from, size_t to, uint64_t base)
{
    size_t skipped_n = 0;
    for (size_t i = from; i < to; i++) {
        bool skipped;
        int rv = cv_catalog_apply(c->cat, base + i, e->buf[i], e->len[i], &skipped);
        cr_assert_eq(rv, 0, "entry %zu: %s", i, cv_errname(rv));
        skipped_n += skipped;
    }
    return skipped_n;
}

/* ---- commands --------------------------------------------------------------------------------- */

Test(catalog, open_creates_dirs_and_starts_empty)
{
    struct tcat c;
    topen(&c, subdir("a/b/c"), 16);
    cr_assert_eq(access(subdir("a/b/c/data.mdb"), F_OK), 0);
    cr_assert_eq(cv_catalog_applied_index(c.cat), 0);
    cr_assert_eq(cv_catalog_shards(c.cat), 16);
    cr_assert_eq(cv_catalog_node_count(c.cat), 0);
    cr_assert_eq(cv_catalog_unassigned_shards(c.cat), 16);
    cr_assert_eq(cv_catalog_config_fingerprint(c.cat), 0);
    cr_assert_eq(cv_catalog_object_count(c.cat), 0);
    uint64_t epoch = 99;
    cr_assert_str_eq(cv_catalog_shard_owner(c.cat, 15, &epoch), "");
    cr_assert_eq(epoch, 0);
    cr_assert_null(cv_catalog_shard_owner(c.cat, 16, &epoch));
    cr_assert_null(cv_catalog_node_get(c.cat, "nope"));
    cr_assert_null(cv_catalog_node_at(c.cat, 0));
    assert_check(&c);
    tclose(&c);

    struct cv_catalog *cat;
    struct cv_catalog_opts bad = {.dir = subdir("x"), .shards = 0};
    cr_assert_eq(cv_catalog_open(&bad, &cat), CV_EINVAL);
}

Test(catalog, set_config)
{
    struct tcat c;
    struct tb t = {0};
    topen(&c, subdir("c"), 16);
    tb_config(&t, 0xabc, 8);
    ASSERT_STATUS(&c, 1, &t, CV_ECONFIG); /* shard count differs from the catalog's */
    cr_assert_eq(cv_catalog_config_fingerprint(c.cat), 0);
    tb_config(&t, 0xabc, 16);
    ASSERT_STATUS(&c, 2, &t, 0);
    cr_assert_eq(cv_catalog_config_fingerprint(c.cat), 0xabc);
    tb_config(&t, 0xabc, 16);
    ASSERT_STATUS(&c, 3, &t, 0);
    tb_config(&t, 0xdef, 16); /* a config change replaces it */
    ASSERT_STATUS(&c, 4, &t, 0);
    cr_assert_eq(cv_catalog_config_fingerprint(c.cat), 0xdef);
    tb_config(&t, 0x123, 32);
    ASSERT_STATUS(&c, 5, &t, CV_ECONFIG);
    cr_assert_eq(cv_catalog_config_fingerprint(c.cat), 0xdef);
    assert_check(&c);
    tclose(&c);
    topen(&c, subdir("c"), 16);
    cr_assert_eq(cv_catalog_config_fingerprint(c.cat), 0xdef);
    tclose(&c);
    tb_free(&t);
}

Test(catalog, register_node_and_leases)
{
    struct tcat c;
    struct tb t = {0};
    topen(&c, subdir("c"), 16);
    tb_register(&t, "n1", 1000, 500);
    ASSERT_STATUS(&c, 1, &t, 0);
    const struct cv_catalog_node *n = cv_catalog_node_get(c.cat, "n1");
    cr_assert_not_null(n);
    cr_assert(n->alive);
    cr_assert_eq(n->incarnation, 1);
    cr_assert_eq(n->role, CVERSE__CATALOG__ROLE__ROLE_UNKNOWN);
    cr_assert_eq(n->lease_expiry_ms, 1500);
    cr_assert_eq(n->lease_renewed_ms, 1000);
    cr_assert_eq(n->raft_id, cv_fnv1a32("n1", 2));
    cr_assert_str_eq(n->http_addr, "127.0.0.1:9000");
    cr_assert_eq(n->shards_owned, 0);

    tb_renew(&t, "n1", 1100, 500);
    ASSERT_STATUS(&c, 2, &t, 0);
    n = cv_catalog_node_get(c.cat, "n1");
    cr_assert_eq(n->lease_expiry_ms, 1600);
    cr_assert_eq(n->lease_renewed_ms, 1100);
    tb_renew(&t, "n1", 900, 100); /* a late renewal never moves the lease backwards... */
    ASSERT_STATUS(&c, 3, &t, 0);
    n = cv_catalog_node_get(c.cat, "n1");
    cr_assert_eq(n->lease_expiry_ms, 1601, "...but every renewal moves it (ExpireNode's compare-and-set)");
    cr_assert_eq(n->lease_renewed_ms, 1100);
    tb_renew(&t, "n1", UINT64_MAX - 5, 100); /* saturates instead of wrapping */
    ASSERT_STATUS(&c, 4, &t, 0);
    cr_assert_eq(cv_catalog_node_get(c.cat, "n1")->lease_expiry_ms, UINT64_MAX);

    tb_renew(&t, "ghost", 1000, 10);
    ASSERT_STATUS(&c, 5, &t, CV_ENOTFOUND);
    tb_renew(&t, "", 1000, 10);
    ASSERT_STATUS(&c, 6, &t, CV_EINVAL);
    cr_assert_null(cv_catalog_node_get(c.cat, "ghost"));

    /* Nodes are kept sorted by id. */
    tb_register(&t, "n0", 1000, 500);
    tb_register(&t, "n2", 1000, 500);
    tb_apply(&c, 7, &t);
    cr_assert_eq(cv_catalog_node_count(c.cat), 3);
    cr_assert_str_eq(cv_catalog_node_at(c.cat, 0)->id, "n0");
    cr_assert_str_eq(cv_catalog_node_at(c.cat, 1)->id, "n1");
    cr_assert_str_eq(cv_catalog_node_at(c.cat, 2)->id, "n2");
    assert_check(&c);
    tclose(&c);
    tb_free(&t);
}

static void tb_add_node(struct tb *t, const char *id, uint64_t raft_id)
{
    Cverse__Catalog__NodeInfo info = CVERSE__CATALOG__NODE_INFO__INIT;
    info.id = (char *)id;
    info.grpc_addr = info.advertise_addr = "127.0.0.1:7999";
    info.http_addr = "127.0.0.1:9000";
    info.raft_addr = "127.0.0.1:8999";
    info.raft_id = raft_id;
    Cverse__Catalog__CmdAddNode x = CVERSE__CATALOG__CMD_ADD_NODE__INIT;
    x.info = &info;
    Cmd c = tb_cmd(t);
    c.cmd_case = CVERSE__CATALOG__COMMAND__CMD_ADD_NODE;
    c.add_node = &x;
    tb_raw(t, &c);
}

static void tb_remove_node(struct tb *t, const char *id)
{
    Cverse__Catalog__CmdRemoveNode x = CVERSE__CATALOG__CMD_REMOVE_NODE__INIT;
    x.node = (char *)id;
    Cmd c = tb_cmd(t);
    c.cmd_case = CVERSE__CATALOG__COMMAND__CMD_REMOVE_NODE;
    c.remove_node = &x;
    tb_raw(t, &c);
}

/* A joining node's record (AddNode) until its own registration; a member removed for good (RemoveNode). */
Test(catalog, add_node_then_register_then_remove)
{
    struct tcat c;
    struct tb t = {0};
    topen(&c, subdir("c"), 16);
    tb_add_node(&t, "j1", 77);
    ASSERT_STATUS(&c, 1, &t, 0);
    const struct cv_catalog_node *n = cv_catalog_node_get(c.cat, "j1");
    cr_assert_not_null(n);
    cr_assert(!n->alive, "no lease before its own registration");
    cr_assert(!n->removed);
    cr_assert_eq(n->raft_id, 77);
    cr_assert_str_eq(n->raft_addr, "127.0.0.1:8999");
    cr_assert_eq(cv_catalog_node_by_raft_id(c.cat, 77), n);
    cr_assert_null(cv_catalog_node_by_raft_id(c.cat, 0));
    tb_add_node(&t, "j1", 77); /* asked again: no change */
    ASSERT_STATUS(&c, 2, &t, 0);
    tb_add_node(&t, "j1", 78); /* the id is another node's */
    ASSERT_STATUS(&c, 3, &t, CV_EEXIST);
    tb_add_node(&t, "j2", 0);
    ASSERT_STATUS(&c, 4, &t, CV_EINVAL);
    cr_assert_eq(cv_catalog_node_get(c.cat, "j1")->raft_id, 77);

    tb_register(&t, "n1", 1000, 500);
    ASSERT_STATUS(&c, 5, &t, 0);
    tb_assign(&t, 1, (const uint32_t[]){0}, NULL, "n1", (const uint64_t[]){0});
    ASSERT_STATUS(&c, 6, &t, 0);
    tb_remove_node(&t, "n1"); /* a shard names it */
    ASSERT_STATUS(&c, 7, &t, CV_ECONFLICT);
    cr_assert(!cv_catalog_node_get(c.cat, "n1")->removed);
    tb_remove_node(&t, "ghost");
    ASSERT_STATUS(&c, 8, &t, CV_ENOTFOUND);

    tb_remove_node(&t, "j1");
    ASSERT_STATUS(&c, 9, &t, 0);
    n = cv_catalog_node_get(c.cat, "j1");
    cr_assert(n->removed && !n->alive);
    tb_renew(&t, "j1", 1000, 500);
    ASSERT_STATUS(&c, 10, &t, CV_ECONFLICT);
    Cverse__Catalog__NodeInfo info = CVERSE__CATALOG__NODE_INFO__INIT;
    info.id = "j1";
    info.grpc_addr = info.advertise_addr = info.http_addr = info.raft_addr = "127.0.0.1:1";
    info.raft_id = 77;
    tb_register_info(&t, &info, 1000, 500); /* removed for good: never registers again */
    ASSERT_STATUS(&c, 11, &t, CV_ECONFLICT);
    cr_assert(!cv_catalog_node_get(c.cat, "j1")->alive);
    tb_add_node(&t, "j1", 77);
    ASSERT_STATUS(&c, 12, &t, 0);
    cr_assert(cv_catalog_node_get(c.cat, "j1")->removed, "an add does not bring it back");
    assert_check(&c);
    tclose(&c);
    tb_free(&t);
}

Test(catalog, register_node_rejects_bad_info)
{
    struct tcat c;
    struct tb t = {0};
    char longid[CV_NODE_ID_MAX + 1], longaddr[200];
    memset(longid, 'x', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    memset(longaddr, '1', sizeof longaddr - 1);
    longaddr[sizeof longaddr - 1] = '\0';
    topen(&c, subdir("c"), 16);

    tb_register_info(&t, NULL, 1, 1);
    ASSERT_STATUS(&c, 1, &t, CV_EINVAL);
    tb_register(&t, "", 1, 1);
    ASSERT_STATUS(&c, 2, &t, CV_EINVAL);
    tb_register(&t, longid, 1, 1);
    ASSERT_STATUS(&c, 3, &t, CV_EINVAL);
    Cverse__Catalog__NodeInfo info = CVERSE__CATALOG__NODE_INFO__INIT;
    info.id = "n1";
    info.raft_addr = longaddr;
    tb_register_info(&t, &info, 1, 1);
    ASSERT_STATUS(&c, 4, &t, CV_EINVAL);
    cr_assert_eq(cv_catalog_node_count(c.cat), 0);
    longid[CV_NODE_ID_MAX - 1] = '\0'; /* the longest id that fits */
    tb_register(&t, longid, 1, 1);
    ASSERT_STATUS(&c, 5, &t, 0);
    cr_assert_not_null(cv_catalog_node_get(c.cat, longid));
    assert_check(&c);
    tclose(&c);
    tb_free(&t);
}

Test(catalog, expire_renew_and_reregister)
{
    struct tcat c;
    struct tb t = {0};
    topen(&c, subdir("c"), 16);
    tb_register(&t, "n1", 1000, 500);
    tb_role(&t, "n1", CVERSE__CATALOG__ROLE__ROLE_VOTER);
    tb_assign1(&t, 3, "n1", 0);
    tb_apply(&c, 1, &t);
    cr_assert_eq(c.obs.status[0] | c.obs.status[1] | c.obs.status[2], 0);

    tb_expire(&t, "n1", 1499); /* stale view of the lease: the lease wins */
    ASSERT_STATUS(&c, 2, &t, CV_ECONFLICT);
    cr_assert(cv_catalog_node_get(c.cat, "n1")->alive);
    tb_expire(&t, "ghost", 1500);
    ASSERT_STATUS(&c, 3, &t, CV_ENOTFOUND);
    tb_expire(&t, "n1", 1500);
    ASSERT_STATUS(&c, 4, &t, 0);
    const struct cv_catalog_node *n = cv_catalog_node_get(c.cat, "n1");
    cr_assert(!n->alive);
    cr_assert_eq(n->incarnation, 1);
    /* A node declared dead owns nothing from that entry on: its shards are unassigned from it (the
     * safety gap of part 1: a re-registration before the leader's AssignShards committed gave them
     * back to it while the new owner was being activated). */
    cr_assert_eq(n->shards_owned, 0, "expiry unassigns the dead node's shards");
    uint64_t ep = 0;
    cr_assert_str_eq(cv_catalog_shard_owner(c.cat, 3, &ep), "");
    cr_assert_eq(ep, 2, "a new epoch: an AssignShards decided before the expiry fails its compare-and-set");
    cr_assert_eq(cv_catalog_shard_state(c.cat, 3), CV_SHARD_RELEASER_DEAD, "assignable at once");
    tb_expire(&t, "n1", 1500); /* again: no-op */
    ASSERT_STATUS(&c, 5, &t, 0);
    cr_assert_eq(cv_catalog_shard_owner(c.cat, 3, &ep)[0], '\0');
    cr_assert_eq(ep, 2, "a second expiry changes nothing");

    /* A late renewal does not revive a node declared dead (the defect: it handed shards to a node
     * behind the log); the node must register again, as a new incarnation. */
    tb_renew(&t, "n1", 2000, 500);
    ASSERT_STATUS(&c, 6, &t, CV_ECONFLICT);
    n = cv_catalog_node_get(c.cat, "n1");
    cr_assert(!n->alive);
    cr_assert_eq(n->incarnation, 1);
    cr_assert_eq(n->lease_expiry_ms, 1500, "a refused renewal writes nothing");
    cr_assert_str_eq(cv_catalog_shard_owner(c.cat, 3, NULL), "");
    cr_assert_eq(cv_catalog_shard_state(c.cat, 3), CV_SHARD_RELEASER_DEAD, "its shards stay reassignable");
    tb_register(&t, "n1", 2000, 500); /* back from the dead: new incarnation */
    ASSERT_STATUS(&c, 7, &t, 0);
    n = cv_catalog_node_get(c.cat, "n1");
    cr_assert(n->alive);
    cr_assert_eq(n->incarnation, 2);
    cr_assert_eq(n->lease_expiry_ms, 2500);
    /* ... and it does not own its old shard again: only an AssignShards gives it one. */
    cr_assert_eq(n->shards_owned, 0);
    cr_assert_str_eq(cv_catalog_shard_owner(c.cat, 3, &ep), "");
    cr_assert_eq(ep, 2);
    cr_assert_eq(cv_catalog_shard_state(c.cat, 3), CV_SHARD_RELEASING, "it confirms (it holds nothing)");

    tb_register(&t, "n1", 3000, 500); /* re-registration while alive: same incarnation, role kept */
    ASSERT_STATUS(&c, 8, &t, 0);
    n = cv_catalog_node_get(c.cat, "n1");
    cr_assert_eq(n->incarnation, 2);
    cr_assert_eq(n->role, CVERSE__CATALOG__ROLE__ROLE_VOTER);
    tb_expire(&t, "n1", 3500);
    tb_register(&t, "n1", 4000, 100);
    tb_apply(&c, 9, &t);
    cr_assert_eq(c.obs.status[0] | c.obs.status[1], 0);
    n = cv_catalog_node_get(c.cat, "n1");
    cr_assert(n->alive);
    cr_assert_eq(n->incarnation, 3);
    cr_assert_eq(n->lease_expiry_ms, 4100);
    assert_check(&c);
    tclose(&c);
    tb_free(&t);
}

/* The new-leader rule (docs/architecture.md, "Leases and liveness") relies on ExpireNode failing after
 * ANY renewal or registration the leader had not applied when it decided: every one of them moves a
 * live node's recorded expiry strictly forward, whatever the proposer's clock says. */
Test(catalog, every_renewal_and_registration_moves_a_live_expiry_forward)
{
    struct tcat c;
    struct tb t = {0};
    topen(&c, subdir("c"), 16);
    tb_register(&t, "n1", 5000, 500);
    ASSERT_STATUS(&c, 1, &t, 0);
    cr_assert_eq(cv_catalog_node_get(c.cat, "n1")->lease_expiry_ms, 5500);
    tb_register(&t, "n1", 4000, 500); /* a restarted process whose wall clock is behind */
    ASSERT_STATUS(&c, 2, &t, 0);
    cr_assert_eq(cv_catalog_node_get(c.cat, "n1")->lease_expiry_ms, 5501, "never backwards, never equal");
    tb_renew(&t, "n1", 4000, 500);
    ASSERT_STATUS(&c, 3, &t, 0);
    cr_assert_eq(cv_catalog_node_get(c.cat, "n1")->lease_expiry_ms, 5502);
    tb_expire(&t, "n1", 5501); /* decided on the registration, before the renewal applied */
    ASSERT_STATUS(&c, 4, &t, CV_ECONFLICT);
    cr_assert(cv_catalog_node_get(c.cat, "n1")->alive, "the renewal the leader did not see wins");
    tb_register(&t, "n1", 9000, 500);
    ASSERT_STATUS(&c, 5, &t, 0);
    cr_assert_eq(cv_catalog_node_get(c.cat, "n1")->lease_expiry_ms, 9500, "a later clock counts as is");
    assert_check(&c);
    tclose(&c);
    tb_free(&t);
}

Test(catalog, set_role)
{
    struct tcat c;
    struct tb t = {0};
    topen(&c, subdir("c"), 16);
    tb_register(&t, "n1", 1, 1);
    ASSERT_STATUS(&c, 1, &t, 0);
    tb_role(&t, "n1", CVERSE__CATALOG__ROLE__ROLE_STANDBY);
    ASSERT_STATUS(&c, 2, &t, 0);
    cr_assert_eq(cv_catalog_node_get(c.cat, "n1")->role, CVERSE__CATALOG__ROLE__ROLE_STANDBY);
    tb_role(&t, "ghost", CVERSE__CATALOG__ROLE__ROLE_VOTER);
    ASSERT_STATUS(&c, 3, &t, CV_ENOTFOUND);
    tb_role(&t, "n1", 7);
    ASSERT_STATUS(&c, 4, &t, CV_EINVAL);
    cr_assert_eq(cv_catalog_node_get(c.cat, "n1")->role, CVERSE__CATALOG__ROLE__ROLE_STANDBY);
    assert_check(&c);
    tclose(&c);
    tb_free(&t);
}

Test(catalog, assign_shards_compare_and_set)
{
    struct tcat c;
    struct tb t = {0};
    uint64_t epoch;
    topen(&c, subdir("c"), 16);
    tb_register(&t, "a", 1, 1);
    tb_register(&t, "b", 1, 1);
    tb_apply(&c, 1, &t);

    uint32_t sh[] = {0, 1, 2};
    tb_assign(&t, 3, sh, NULL, "a", NULL);
    ASSERT_STATUS(&c, 2, &t, 0);
    cr_assert_str_eq(cv_catalog_shard_owner(c.cat, 1, &epoch), "a");
    cr_assert_eq(epoch, 1);
    cr_assert_eq(cv_catalog_node_get(c.cat, "a")->shards_owned, 3);
    cr_assert_eq(cv_catalog_unassigned_shards(c.cat), 13);

    /* All or nothing: shard 0 would succeed, shard 1 has a stale epoch. */
    uint32_t sh2[] = {0, 1};
    uint64_t ep2[] = {1, 0};
    tb_assign(&t, 2, sh2, NULL, "b", ep2);
    ASSERT_STATUS(&c, 3, &t, CV_ECONFLICT);
    cr_assert_str_eq(cv_catalog_shard_owner(c.cat, 0, &epoch), "a");
    cr_assert_eq(epoch, 1);

    tb_assign1(&t, 16, "a", 0);
    ASSERT_STATUS(&c, 4, &t, CV_EINVAL); /* out of range */
    tb_assign1(&t, 5, "ghost", 0);
    ASSERT_STATUS(&c, 5, &t, CV_EINVAL); /* unknown owner */
    uint32_t dup[] = {5, 5};
    tb_assign(&t, 2, dup, NULL, "a", NULL);
    ASSERT_STATUS(&c, 6, &t, CV_EINVAL); /* the same shard twice */
    cr_assert_str_eq(cv_catalog_shard_owner(c.cat, 5, &epoch), "");
    cr_assert_eq(epoch, 0);

    uint64_t ep1[] = {1, 1};
    tb_assign(&t, 2, sh2, NULL, "b", ep1); /* a move: epoch bumps */
    ASSERT_STATUS(&c, 7, &t, 0);
    cr_assert_str_eq(cv_catalog_shard_owner(c.cat, 0, &epoch), "b");
    cr_assert_eq(epoch, 2);
    cr_assert_eq(cv_catalog_node_get(c.cat, "a")->shards_owned, 1);
    cr_assert_eq(cv_catalog_node_get(c.cat, "b")->shards_owned, 2);

    tb_assign1(&t, 0, "b", 2); /* unchanged owner: no-op, epoch stays */
    ASSERT_STATUS(&c, 8, &t, 0);
    cr_assert_str_eq(cv_catalog_shard_owner(c.cat, 0, &epoch), "b");
    cr_assert_eq(epoch, 2);
    tb_assign1(&t, 0, "", 2); /* unassign */
    ASSERT_STATUS(&c, 9, &t, 0);
    cr_assert_str_eq(cv_catalog_shard_owner(c.cat, 0, &epoch), "");
    cr_assert_eq(epoch, 3);
    cr_assert_eq(cv_catalog_node_get(c.cat, "b")->shards_owned, 1);
    cr_assert_eq(cv_catalog_unassigned_shards(c.cat), 14);
    tb_assign(&t, 0, NULL, NULL, "", NULL); /* empty: nothing to do */
    ASSERT_STATUS(&c, 10, &t, 0);

    /* Within one batch, later commands see earlier ones: a new node takes shards right away, and the
     * second assignment must expect the epoch the first one produced. */
    tb_register(&t, "0first", 1, 1); /* sorts before "a": shifts every owner index in the mirror */
    tb_assign1(&t, 2, "0first", 1);
    tb_assign1(&t, 2, "b", 1);
    tb_assign1(&t, 2, "b", 2);
    tb_apply(&c, 11, &t);
    cr_assert_eq(c.obs.status[0], 0);
    cr_assert_eq(c.obs.status[1], 0);
    cr_assert_eq(c.obs.status[2], CV_ECONFLICT);
    cr_assert_eq(c.obs.status[3], 0);
    cr_assert_str_eq(cv_catalog_shard_owner(c.cat, 2, &epoch), "b");
    cr_assert_eq(epoch, 3);
    cr_assert_str_eq(cv_catalog_shard_owner(c.cat, 1, &epoch), "b");
    cr_assert_eq(cv_catalog_node_get(c.cat, "0first")->shards_owned, 0);
    cr_assert_eq(cv_catalog_node_get(c.cat, "b")->shards_owned, 2);
    cr_assert_eq(cv_catalog_node_get(c.cat, "a")->shards_owned, 0);
    assert_check(&c);
    tclose(&c);
    tb_free(&t);
}

Test(catalog, release_shards)
{
    struct tcat c;
    struct tb t = {0};
    const char *from = "";
    bool done;
    uint64_t epoch;
    topen(&c, subdir("c"), 8);
    tb_register(&t, "a", 1, 1);
    tb_register(&t, "b", 1, 1);
    uint32_t sh[] = {0, 1, 2};
    tb_assign(&t, 3, sh, NULL, "a", NULL);
    tb_apply(&c, 1, &t);
    cr_assert_eq(release_state(c.cat, 0, &from, &done), 0);
    cr_assert_str_eq(from, "");
    cr_assert(!done);
    cr_assert_eq(release_state(c.cat, 8, &from, &done), CV_EINVAL);

    /* Phase 1: a -> "" records a as the node to wait for; never assigned shards record nobody. */
    uint64_t ep1[] = {1, 1, 0};
    uint32_t sh3[] = {0, 1, 3};
    const char *none[] = {"", "", ""};
    tb_assign(&t, 3, sh3, none, NULL, ep1);
    ASSERT_STATUS(&c, 2, &t, 0);
    cr_assert_str_eq(cv_catalog_shard_owner(c.cat, 0, &epoch), "");
    cr_assert_eq(epoch, 2);
    release_state(c.cat, 0, &from, &done);
    cr_assert_str_eq(from, "a");
    cr_assert(!done);
    release_state(c.cat, 3, &from, &done);
    cr_assert_str_eq(from, "", "shard 3 had no owner");
    assert_check(&c);

    /* Compare-and-set: wrong node, wrong epoch, an owned shard, a shard twice, bad arguments. */
    tb_release1(&t, "b", 0, 2);
    ASSERT_STATUS(&c, 3, &t, CV_ECONFLICT);
    tb_release1(&t, "a", 0, 1);
    ASSERT_STATUS(&c, 4, &t, CV_ECONFLICT);
    uint32_t mixed[] = {0, 2};
    uint64_t mixed_ep[] = {2, 1};
    tb_release(&t, "a", 2, mixed, mixed_ep); /* shard 2 is still owned by a: all or nothing */
    ASSERT_STATUS(&c, 5, &t, CV_ECONFLICT);
    release_state(c.cat, 0, &from, &done);
    cr_assert(!done, "nothing applied");
    uint32_t twice[] = {0, 0};
    uint64_t twice_ep[] = {2, 2};
    tb_release(&t, "a", 2, twice, twice_ep);
    ASSERT_STATUS(&c, 6, &t, CV_EINVAL);
    tb_release1(&t, "a", 8, 2);
    ASSERT_STATUS(&c, 7, &t, CV_EINVAL);
    tb_release(&t, "a", 1, sh, NULL); /* one shard, no epoch */
    ASSERT_STATUS(&c, 8, &t, CV_EINVAL);
    tb_release1(&t, "", 0, 2);
    ASSERT_STATUS(&c, 9, &t, CV_EINVAL);

    /* The release; a retried one at the same epoch is 0 too. Epochs and owners do not change. */
    uint32_t rel[] = {0, 1};
    uint64_t rel_ep[] = {2, 2};
    tb_release(&t, "a", 2, rel, rel_ep);
    ASSERT_STATUS(&c, 10, &t, 0);
    release_state(c.cat, 1, &from, &done);
    cr_assert_str_eq(from, "a");
    cr_assert(done);
    cr_assert_str_eq(cv_catalog_shard_owner(c.cat, 1, &epoch), "");
    cr_assert_eq(epoch, 2);
    tb_release1(&t, "a", 1, 2);
    ASSERT_STATUS(&c, 11, &t, 0);
    assert_check(&c);

    /* Kept across a reopen (LMDB) and a snapshot restored into another catalog. */
    struct view before, after;
    view_take(&c, &before);
    tclose(&c);
    topen(&c, subdir("c"), 8);
    view_take(&c, &after);
    assert_view_eq(&before, &after);
    view_free(&after);
    struct tcat d;
    void *buf;
    size_t len;
    bool ignored = true;
    topen(&d, subdir("d"), 8);
    snap(&c, &buf, &len);
    cr_assert_eq(cv_catalog_restore(d.cat, buf, len, &ignored), 0);
    cr_assert(!ignored);
    free(buf);
    view_take(&d, &after);
    assert_view_eq(&before, &after);
    view_free(&after);
    view_free(&before);
    assert_check(&d);
    tclose(&d);

    /* Phase 2: assigning an owner clears the release state; the old release no longer applies. A node
     * registered later (sorting first) renumbers the mirror: released_by must follow. */
    tb_register(&t, "0new", 1, 1);
    tb_assign1(&t, 0, "b", 2);
    tb_apply(&c, 12, &t);
    cr_assert_eq(c.obs.status[1], 0);
    release_state(c.cat, 0, &from, &done);
    cr_assert_str_eq(from, "");
    cr_assert(!done);
    release_state(c.cat, 1, &from, &done);
    cr_assert_str_eq(from, "a", "after renumbering");
    tb_release1(&t, "a", 0, 3);
    ASSERT_STATUS(&c, 13, &t, CV_ECONFLICT);
    assert_check(&c);
    tclose(&c);
    tb_free(&t);
}

struct collected {
    int n;
    char ids[8][32];
    uint32_t shards[8];
};

static int collect(void *data, const char *type, const char *id, uint32_t shard)
{
    struct collected *c = data;
    cr_assert_str_neq(type, "");
    snprintf(c->ids[c->n], 32, "%s", id);
    c->shards[c->n] = shard;
    return ++c->n == 8;
}

/* The shard's target ("" none) and pin as the mirror reads them. */
static const char *shard_target(struct tcat *c, uint32_t shard, bool *pinned)
{
    struct cv_catalog_shard sh;
    cr_assert_eq(cv_catalog_shard_get(c->cat, shard, &sh), 0);
    if (pinned) *pinned = sh.pinned;
    return sh.target;
}

Test(catalog, move_shard_sets_and_clears_the_target)
{
    struct tcat c;
    struct tb t = {0};
    uint64_t epoch;
    topen(&c, subdir("c"), 16);
    tb_register(&t, "n1", 1, 1);
    tb_register(&t, "n2", 1, 1);
    tb_assign1(&t, 3, "n1", 0);
    tb_apply(&c, 1, &t);

    tb_move(&t, 3, "n2");
    ASSERT_STATUS(&c, 2, &t, 0);
    cr_assert_str_eq(shard_target(&c, 3, NULL), "n2");
    cr_assert_str_eq(cv_catalog_shard_owner(c.cat, 3, &epoch), "n1", "a target moves no owner by itself");
    cr_assert_eq(epoch, 1);
    cr_assert_eq(cv_catalog_shard_state(c.cat, 3), CV_SHARD_OWNED);

    tb_move(&t, 16, "n2");
    ASSERT_STATUS(&c, 3, &t, CV_EINVAL); /* shard out of range */
    tb_move(&t, 4, "ghost");
    ASSERT_STATUS(&c, 4, &t, CV_ENOTFOUND);
    tb_move(&t, 4, "a-node-id-that-is-far-too-long-for-the-catalog-to-ever-store-it-anywhere");
    ASSERT_STATUS(&c, 5, &t, CV_ENOTFOUND);
    cr_assert_str_eq(shard_target(&c, 4, NULL), "");

    /* A shard never assigned gets a record at epoch 0: still unassigned, the check passes. */
    tb_move(&t, 4, "n1");
    ASSERT_STATUS(&c, 6, &t, 0);
    cr_assert_str_eq(shard_target(&c, 4, NULL), "n1");
    cr_assert_str_eq(cv_catalog_shard_owner(c.cat, 4, &epoch), "");
    cr_assert_eq(epoch, 0);
    cr_assert_eq(cv_catalog_unassigned_shards(c.cat), 15);
    tb_move(&t, 4, "n1"); /* idempotent */
    ASSERT_STATUS(&c, 7, &t, 0);

    /* Owner changes keep the target; a node joining (sorts first: renumbers the mirror) keeps it. */
    tb_assign1(&t, 3, "", 1);
    tb_release1(&t, "n1", 3, 2);
    tb_assign1(&t, 3, "n2", 2);
    tb_register(&t, "0first", 1, 1);
    tb_apply(&c, 8, &t);
    cr_assert_str_eq(cv_catalog_shard_owner(c.cat, 3, &epoch), "n2");
    cr_assert_eq(epoch, 3);
    cr_assert_str_eq(shard_target(&c, 3, NULL), "n2");
    cr_assert_str_eq(shard_target(&c, 4, NULL), "n1");
    assert_check(&c);

    tb_move(&t, 3, ""); /* clears */
    ASSERT_STATUS(&c, 9, &t, 0);
    cr_assert_str_eq(shard_target(&c, 3, NULL), "");
    cr_assert_str_eq(cv_catalog_shard_owner(c.cat, 3, NULL), "n2");
    assert_check(&c);

    tclose(&c); /* survives a reopen (LMDB holds it) */
    topen(&c, subdir("c"), 16);
    cr_assert_str_eq(shard_target(&c, 3, NULL), "");
    cr_assert_str_eq(shard_target(&c, 4, NULL), "n1");
    assert_check(&c);
    tclose(&c);
    tb_free(&t);
}

Test(catalog, pin_shard)
{
    struct tcat c;
    struct tb t = {0};
    bool pinned = true;
    uint64_t epoch;
    topen(&c, subdir("c"), 16);
    tb_register(&t, "n1", 1, 1);
    tb_assign1(&t, 5, "n1", 0);
    tb_apply(&c, 1, &t);
    shard_target(&c, 5, &pinned);
    cr_assert(!pinned);

    tb_pin(&t, 5, true);
    ASSERT_STATUS(&c, 2, &t, 0);
    shard_target(&c, 5, &pinned);
    cr_assert(pinned);
    cr_assert_str_eq(cv_catalog_shard_owner(c.cat, 5, &epoch), "n1");
    cr_assert_eq(epoch, 1);
    tb_pin(&t, 16, true);
    ASSERT_STATUS(&c, 3, &t, CV_EINVAL);
    tb_pin(&t, 5, true); /* idempotent */
    ASSERT_STATUS(&c, 4, &t, 0);

    tb_assign1(&t, 5, "", 1); /* an owner change keeps the pin */
    ASSERT_STATUS(&c, 5, &t, 0);
    shard_target(&c, 5, &pinned);
    cr_assert(pinned);
    assert_check(&c);
    tclose(&c);
    topen(&c, subdir("c"), 16);
    shard_target(&c, 5, &pinned);
    cr_assert(pinned);
    tb_pin(&t, 5, false);
    ASSERT_STATUS(&c, 6, &t, 0);
    shard_target(&c, 5, &pinned);
    cr_assert(!pinned);
    assert_check(&c);
    tclose(&c);
    tb_free(&t);
}

/* A node that drains to stop (SIGTERM) gets shards again with its next process: RegisterNode.fresh clears
 * a shutdown drain, and only that; an operator's drain persists and is never weakened to a shutdown one. */
Test(catalog, shutdown_drain_ends_with_the_next_process)
{
    struct tcat c;
    struct tb t = {0};
    const struct cv_catalog_node *n;
    topen(&c, subdir("c"), 16);
    tb_register(&t, "n1", 1000, 100);
    tb_drain_why(&t, "n1", true, true);
    tb_apply(&c, 1, &t);
    n = cv_catalog_node_get(c.cat, "n1");
    cr_assert(n->draining && n->drain_shutdown);
    tb_register(&t, "n1", 1050, 100); /* the same process registering again (declared dead meanwhile) */
    ASSERT_STATUS(&c, 2, &t, 0);
    n = cv_catalog_node_get(c.cat, "n1");
    cr_assert(n->draining && n->drain_shutdown, "only a new process clears a shutdown drain");
    tclose(&c);
    topen(&c, subdir("c"), 16);
    n = cv_catalog_node_get(c.cat, "n1");
    cr_assert(n->draining && n->drain_shutdown, "the reason is stored");
    tb_fresh = true;
    tb_register(&t, "n1", 1100, 100);
    tb_fresh = false;
    ASSERT_STATUS(&c, 3, &t, 0);
    n = cv_catalog_node_get(c.cat, "n1");
    cr_assert(!n->draining && !n->drain_shutdown, "a fresh registration clears a shutdown drain");

    /* An operator's drain: a shutdown drain on top keeps it an operator's, a new process keeps it. */
    tb_drain_why(&t, "n1", true, true);
    tb_drain(&t, "n1", true);
    tb_drain_why(&t, "n1", true, true);
    tb_fresh = true;
    tb_register(&t, "n1", 1200, 100);
    tb_fresh = false;
    tb_apply(&c, 4, &t);
    n = cv_catalog_node_get(c.cat, "n1");
    cr_assert(n->draining && !n->drain_shutdown, "an operator's drain persists");
    tb_drain(&t, "n1", false);
    ASSERT_STATUS(&c, 5, &t, 0);
    n = cv_catalog_node_get(c.cat, "n1");
    cr_assert(!n->draining && !n->drain_shutdown);
    assert_check(&c);
    tclose(&c);
    tb_free(&t);
}

Test(catalog, drain_node)
{
    struct tcat c;
    struct tb t = {0};
    topen(&c, subdir("c"), 16);
    tb_register(&t, "n1", 1000, 100);
    tb_apply(&c, 1, &t);
    cr_assert(!cv_catalog_node_get(c.cat, "n1")->draining);

    tb_drain(&t, "n1", true);
    ASSERT_STATUS(&c, 2, &t, 0);
    cr_assert(cv_catalog_node_get(c.cat, "n1")->draining);
    tb_drain(&t, "ghost", true);
    ASSERT_STATUS(&c, 3, &t, CV_ENOTFOUND);
    tb_drain(&t, "", true);
    ASSERT_STATUS(&c, 4, &t, CV_EINVAL);
    tb_drain(&t, "n1", true); /* idempotent */
    ASSERT_STATUS(&c, 5, &t, 0);

    /* An operator's decision outlives leases: renew, death and re-registration keep it. */
    tb_renew(&t, "n1", 1050, 100);
    tb_expire(&t, "n1", 1150);
    tb_apply(&c, 6, &t);
    cr_assert(!cv_catalog_node_get(c.cat, "n1")->alive);
    cr_assert(cv_catalog_node_get(c.cat, "n1")->draining);
    tb_register(&t, "n1", 2000, 100);
    ASSERT_STATUS(&c, 7, &t, 0);
    cr_assert(cv_catalog_node_get(c.cat, "n1")->draining);
    assert_check(&c);
    tclose(&c);
    topen(&c, subdir("c"), 16);
    cr_assert(cv_catalog_node_get(c.cat, "n1")->draining);
    tb_drain(&t, "n1", false);
    ASSERT_STATUS(&c, 8, &t, 0);
    cr_assert(!cv_catalog_node_get(c.cat, "n1")->draining);
    assert_check(&c);
    tclose(&c);
    tb_free(&t);
}

Test(catalog, wishes_travel_in_snapshots)
{
    struct tcat a, b;
    struct tb t = {0};
    bool pinned;
    topen(&a, subdir("a"), 16);
    tb_register(&t, "n1", 1, 1);
    tb_register(&t, "n2", 1, 1);
    tb_move(&t, 7, "n2");
    tb_pin(&t, 9, true);
    tb_drain(&t, "n1", true);
    tb_apply(&a, 1, &t);
    void *s;
    size_t len;
    snap(&a, &s, &len);
    topen(&b, subdir("b"), 16);
    bool ignored = true;
    cr_assert_eq(cv_catalog_restore(b.cat, s, len, &ignored), 0);
    cr_assert(!ignored);
    cr_assert_str_eq(shard_target(&b, 7, NULL), "n2");
    shard_target(&b, 9, &pinned);
    cr_assert(pinned);
    cr_assert(cv_catalog_node_get(b.cat, "n1")->draining);
    cr_assert(!cv_catalog_node_get(b.cat, "n2")->draining);
    assert_same_reads(&a, &b);
    assert_check(&b);
    free(s);
    tclose(&a);
    tclose(&b);
    tb_free(&t);
}

Test(catalog, objects)
{
    struct tcat c;
    struct tb t = {0};
    char type[16];
    uint32_t shard;
    topen(&c, subdir("c"), 16);
    tb_create(&t, "Counter", "c1");
    ASSERT_STATUS(&c, 1, &t, 0);
    cr_assert_eq(cv_catalog_object_get(c.cat, "c1", type, sizeof type, &shard), 0);
    cr_assert_str_eq(type, "Counter");
    cr_assert_eq(shard, cv_shard_of("c1", 16));
    cr_assert_eq(cv_catalog_object_get(c.cat, "c1", type, 4, &shard), 0);
    cr_assert_str_eq(type, "Cou", "truncated to typelen");

    tb_create(&t, "Counter", "c1");
    ASSERT_STATUS(&c, 2, &t, 0); /* idempotent */
    tb_create(&t, "Chat", "c1");
    ASSERT_STATUS(&c, 3, &t, CV_EEXIST);
    cr_assert_eq(cv_catalog_object_get(c.cat, "c1", type, sizeof type, NULL), 0);
    cr_assert_str_eq(type, "Counter");

    tb_create(&t, "Chat", "shard#7/room");
    ASSERT_STATUS(&c, 4, &t, 0);
    cr_assert_eq(cv_catalog_object_get(c.cat, "shard#7/room", NULL, 0, &shard), 0);
    cr_assert_eq(shard, 7);
    tb_create(&t, "Chat", "shard#16/room");
    ASSERT_STATUS(&c, 5, &t, CV_EINVAL); /* shard out of range */
    tb_create(&t, "Chat", "shard#x/room");
    ASSERT_STATUS(&c, 6, &t, CV_EINVAL);
    tb_create(&t, "Pinned", "n9/thing"); /* node-pinned: hash % shards; the node need not exist */
    ASSERT_STATUS(&c, 7, &t, 0);
    cr_assert_eq(cv_catalog_object_get(c.cat, "n9/thing", NULL, 0, &shard), 0);
    cr_assert_eq(shard, cv_shard_of("n9/thing", 16));
    tb_create(&t, "", "x");
    ASSERT_STATUS(&c, 8, &t, CV_EINVAL);
    tb_create(&t, "T", "");
    ASSERT_STATUS(&c, 9, &t, CV_EINVAL);
    char huge[600];
    memset(huge, 'k', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    tb_create(&t, "T", huge); /* longer than an LMDB key: a business error, not a wedged FSM */
    ASSERT_STATUS(&c, 10, &t, CV_EINVAL);
    cr_assert_eq(cv_catalog_object_count(c.cat), 3);

    struct collected col = {0};
    cr_assert_eq(cv_catalog_object_foreach(c.cat, collect, &col), 0);
    cr_assert_eq(col.n, 3);
    cr_assert_str_eq(col.ids[0], "c1"); /* id order */
    cr_assert_str_eq(col.ids[1], "n9/thing");
    cr_assert_str_eq(col.ids[2], "shard#7/room");
    cr_assert_eq(col.shards[2], 7);

    tb_delete(&t, "c1");
    ASSERT_STATUS(&c, 11, &t, 0);
    cr_assert_eq(cv_catalog_object_get(c.cat, "c1", type, sizeof type, &shard), CV_ENOTFOUND);
    tb_delete(&t, "c1");
    ASSERT_STATUS(&c, 12, &t, 0); /* idempotent */
    tb_delete(&t, "");
    ASSERT_STATUS(&c, 13, &t, CV_EINVAL);
    tb_delete(&t, huge);
    ASSERT_STATUS(&c, 14, &t, CV_EINVAL);
    cr_assert_eq(cv_catalog_object_count(c.cat), 2);
    cr_assert_eq(cv_catalog_object_get(c.cat, "", type, sizeof type, &shard), CV_EINVAL);
    tb_create(&t, "Chat", "c1"); /* deleted ids can be created again, with another type */
    ASSERT_STATUS(&c, 15, &t, 0);
    /* A typed delete (what nodes propose) keeps an object of another type, and is idempotent. */
    tb_delete_typed(&t, "c1", "Counter");
    ASSERT_STATUS(&c, 16, &t, CV_ENOTFOUND);
    cr_assert_eq(cv_catalog_object_get(c.cat, "c1", type, sizeof type, &shard), 0);
    cr_assert_str_eq(type, "Chat");
    tb_delete_typed(&t, "c1", "Chat");
    ASSERT_STATUS(&c, 17, &t, 0);
    cr_assert_eq(cv_catalog_object_get(c.cat, "c1", type, sizeof type, &shard), CV_ENOTFOUND);
    tb_delete_typed(&t, "c1", "Chat");
    ASSERT_STATUS(&c, 18, &t, 0);
    tclose(&c);
    tb_free(&t);
}

/* created_index: the entry that created the object; an idempotent re-create keeps it, a delete and a
 * new create replace it, a snapshot carries it. */
Test(catalog, object_created_index)
{
    struct tcat c, d;
    struct tb t = {0};
    char type[16];
    uint32_t shard = 0;
    uint64_t created = 0;
    topen(&c, subdir("c"), 16);
    cr_assert_eq(cv_catalog_object_get_ex(c.cat, "c1", type, sizeof type, &shard, &created), CV_ENOTFOUND);
    tb_create(&t, "Counter", "c1");
    ASSERT_STATUS(&c, 4, &t, 0);
    cr_assert_eq(cv_catalog_object_get_ex(c.cat, "c1", type, sizeof type, &shard, &created), 0);
    cr_assert_str_eq(type, "Counter");
    cr_assert_eq(shard, cv_shard_of("c1", 16));
    cr_assert_eq(created, 4);
    tb_create(&t, "Counter", "c1");
    ASSERT_STATUS(&c, 5, &t, 0); /* idempotent: still the entry that created it */
    cr_assert_eq(cv_catalog_object_get_ex(c.cat, "c1", NULL, 0, NULL, &created), 0);
    cr_assert_eq(created, 4);
    tb_create(&t, "Chat", "c1");
    ASSERT_STATUS(&c, 6, &t, CV_EEXIST);
    cr_assert_eq(cv_catalog_object_get_ex(c.cat, "c1", NULL, 0, NULL, &created), 0);
    cr_assert_eq(created, 4);
    tb_delete(&t, "c1");
    tb_create(&t, "Chat", "c1"); /* deleted and created again in one entry */
    tb_apply(&c, 7, &t);
    cr_assert_eq(cv_catalog_object_get_ex(c.cat, "c1", type, sizeof type, NULL, &created), 0);
    cr_assert_str_eq(type, "Chat");
    cr_assert_eq(created, 7);
    cr_assert_eq(cv_catalog_object_get_ex(c.cat, "", NULL, 0, NULL, &created), CV_EINVAL);

    void *s;
    size_t len;
    bool ignored = true;
    snap(&c, &s, &len);
    topen(&d, subdir("d"), 16);
    cr_assert_eq(cv_catalog_restore(d.cat, s, len, &ignored), 0);
    cr_assert(!ignored);
    created = 0;
    cr_assert_eq(cv_catalog_object_get_ex(d.cat, "c1", NULL, 0, NULL, &created), 0);
    cr_assert_eq(created, 7, "a snapshot carries created_index");
    free(s);
    tclose(&d);
    tclose(&c);
    tb_free(&t);
}

Test(catalog, foreach_stops_when_callback_says_so)
{
    struct tcat c;
    struct tb t = {0};
    char id[16];
    topen(&c, subdir("c"), 16);
    for (int i = 0; i < 20; i++) tb_create(&t, "T", (snprintf(id, sizeof id, "o%02d", i), id));
    tb_apply(&c, 1, &t);
    struct collected col = {0};
    cr_assert_eq(cv_catalog_object_foreach(c.cat, collect, &col), 1, "returns the callback's value");
    cr_assert_eq(col.n, 8);
    cr_assert_str_eq(col.ids[7], "o07");
    tclose(&c);
    tb_free(&t);
}

Test(catalog, observer_results_and_empty_commands)
{
    struct tcat c;
    struct tb t = {0};
    topen(&c, subdir("c"), 16);
    Cmd empty = tb_cmd(&t); /* no command set (e.g. from a newer version) */
    empty.origin = "n7";
    tb_raw(&t, &empty);
    tb_renew(&t, "ghost", 1, 1);
    tb_create(&t, "T", "x");
    tb_apply(&c, 5, &t);
    cr_assert_eq(c.obs.status[0], CV_EINVAL);
    cr_assert_eq(c.obs.status[1], CV_ENOTFOUND);
    cr_assert_eq(c.obs.status[2], 0);
    cr_assert_eq(c.obs.seq[0], 1);
    cr_assert_eq(c.obs.seq[2], 3);
    cr_assert_str_eq(c.obs.origin0, "n7");
    tb_apply(&c, 6, &t); /* an empty batch is applied too */
    cr_assert_eq(c.obs.n, 0);

    /* Skip rule: an older or equal index changes nothing and is not observed. */
    bool skipped = false;
    tb_create(&t, "T", "late");
    cr_assert_eq(cv_catalog_apply(c.cat, 6, t.buf, t.len, &skipped), 0);
    cr_assert(skipped);
    cr_assert_eq(c.obs.calls, 2);
    cr_assert_eq(cv_catalog_object_get(c.cat, "late", NULL, 0, NULL), CV_ENOTFOUND);
    tb_reset(&t);

    cr_assert_eq(cv_catalog_apply_noop(c.cat, 9), 0);
    cr_assert_eq(cv_catalog_applied_index(c.cat), 9);
    cr_assert_eq(cv_catalog_apply_noop(c.cat, 8), 0);
    cr_assert_eq(cv_catalog_applied_index(c.cat), 9);
    cr_assert_eq(c.obs.calls, 2);
    tclose(&c);
    topen(&c, subdir("c"), 16);
    cr_assert_eq(cv_catalog_applied_index(c.cat), 9);
    tclose(&c);
    tb_free(&t);
}

Test(catalog, corrupt_entry_is_recorded_and_skipped)
{
    struct tcat c;
    struct tb t = {0};
    topen(&c, subdir("c"), 16);
    tb_create(&t, "T", "a");
    tb_apply(&c, 1, &t);
    void *before;
    size_t before_len;
    snap(&c, &before, &before_len);

    static const uint8_t junk[] = {0x0a, 0x7f, 0x01, 0x02}; /* length runs past the end */
    bool skipped = true;
    cr_assert_eq(cv_catalog_apply(c.cat, 2, junk, sizeof junk, &skipped), CV_EPROTO);
    cr_assert(!skipped);
    cr_assert_eq(cv_catalog_applied_index(c.cat), 2);
    cr_assert_eq(c.obs.calls, 1, "not observed");
    cr_assert_eq(cv_catalog_apply(c.cat, 2, junk, sizeof junk, &skipped), 0);
    cr_assert(skipped, "a replay of the bad entry is skipped like any other");
    cr_assert_eq(cv_catalog_object_count(c.cat), 1);

    tb_create(&t, "T", "b");
    tb_apply(&c, 3, &t);
    cr_assert_eq(cv_catalog_object_count(c.cat), 2);
    assert_check(&c);
    tclose(&c);
    topen(&c, subdir("c"), 16);
    cr_assert_eq(cv_catalog_applied_index(c.cat), 3);
    tclose(&c);
    free(before);
    tb_free(&t);
}

/* ---- LMDB failure: nothing changes, in LMDB or in the mirror --------------------------------------- */

Test(catalog, lmdb_failure_leaves_state_unchanged)
{
    struct tcat c;
    struct tb t = {0};
    struct cv_catalog_opts o = {.dir = subdir("small"), .shards = 64, .map_size = 256 * 1024};
    cr_assert_eq(cv_catalog_open(&o, &c.cat), 0);
    memset(&c.obs, 0, sizeof c.obs);
    cv_catalog_set_observer(c.cat, on_apply, &c.obs);
    tb_register(&t, "m", 1, 1);
    tb_assign1(&t, 1, "m", 0);
    tb_apply(&c, 1, &t);
    struct view before, after;
    view_take(&c, &before);
    void *s0;
    size_t s0_len;
    snap(&c, &s0, &s0_len);

    /* A new node, shard moves, a lease change, then far more objects than the map holds. */
    tb_register(&t, "0new", 5, 5);
    uint32_t sh[] = {0, 1, 2};
    uint64_t ep[] = {0, 1, 0};
    tb_assign(&t, 3, sh, NULL, "0new", ep);
    tb_renew(&t, "m", 100, 100);
    tb_config(&t, 77, 64);
    char id[64], type[300];
    memset(type, 't', sizeof type - 1);
    type[sizeof type - 1] = '\0';
    for (int i = 0; i < 1000; i++) tb_create(&t, type, (snprintf(id, sizeof id, "obj-%04d", i), id));
    bool skipped = true;
    cr_assert_eq(cv_catalog_apply(c.cat, 2, t.buf, t.len, &skipped), CV_ELMDB);
    cr_assert(!skipped);
    cr_assert_eq(c.obs.calls, 1, "a failed entry is not observed");
    view_take(&c, &after);
    assert_view_eq(&before, &after);
    assert_check(&c);
    void *s1;
    size_t s1_len;
    snap(&c, &s1, &s1_len);
    cr_assert(s0_len == s1_len && memcmp(s0, s1, s0_len) == 0);

    /* The catalog still works (the raft glue retries the same entry). */
    tb_reset(&t);
    tb_register(&t, "0new", 5, 5);
    tb_assign(&t, 3, sh, NULL, "0new", ep);
    tb_apply(&c, 2, &t);
    cr_assert_eq(c.obs.status[1], 0);
    cr_assert_eq(cv_catalog_node_get(c.cat, "0new")->shards_owned, 3);
    cr_assert_str_eq(cv_catalog_shard_owner(c.cat, 1, NULL), "0new");
    assert_check(&c);
    view_free(&before);
    view_free(&after);
    free(s0);
    free(s1);
    tclose(&c);
    tb_free(&t);
}

/* ---- replay, determinism, snapshots ------------------------------------------------------------ */

Test(catalog, replay_after_reopen_is_skipped)
{
    struct tcat c;
    struct entries e;
    script_build(&e, 120);
    topen(&c, subdir("c"), 64);
    cr_assert_eq(script_feed(&c, &e, 0, 100, 1), 0);
    cr_assert_eq(cv_catalog_applied_index(c.cat), 100);
    cr_assert_gt(cv_catalog_node_count(c.cat), 0);
    cr_assert_lt(cv_catalog_unassigned_shards(c.cat), 64, "the script assigns some shards");
    struct view before, after;
    view_take(&c, &before);
    void *s0;
    size_t s0_len;
    snap(&c, &s0, &s0_len);
    tclose(&c);

    topen(&c, subdir("c"), 64);
    view_take(&c, &after);
    assert_view_eq(&before, &after); /* the mirror rebuilt from LMDB equals the incremental one */
    view_free(&after);
    cr_assert_eq(script_feed(&c, &e, 0, 100, 1), 100, "every replayed entry is skipped");
    cr_assert_eq(c.obs.calls, 0);
    view_take(&c, &after);
    assert_view_eq(&before, &after);
    void *s1;
    size_t s1_len;
    snap(&c, &s1, &s1_len);
    cr_assert(s0_len == s1_len && memcmp(s0, s1, s0_len) == 0);
    cr_assert_eq(script_feed(&c, &e, 100, 101, 1), 0);
    cr_assert_eq(cv_catalog_applied_index(c.cat), 101);
    cr_assert_eq(c.obs.calls, 1);
    assert_check(&c);
    view_free(&before);
    view_free(&after);
    free(s0);
    free(s1);
    tclose(&c);
    script_free(&e);
}

Test(catalog, deterministic_and_idempotent)
{
    struct tcat a, b, twice;
    struct entries e;
    script_build(&e, 200);
    topen(&a, subdir("a"), 64);
    topen(&b, subdir("b"), 64);
    topen(&twice, subdir("twice"), 64);
    script_feed(&a, &e, 0, e.n, 1);
    script_feed(&b, &e, 0, e.n, 1);
    for (size_t i = 0; i < e.n; i += 10) { /* each chunk fed twice: the second time is skipped */
        size_t to = i + 10 < e.n ? i + 10 : e.n;
        cr_assert_eq(script_feed(&twice, &e, i, to, 1), 0);
        cr_assert_eq(script_feed(&twice, &e, i, to, 1), to - i);
    }
    assert_same_snapshot(&a, &b);
    assert_same_snapshot(&a, &twice);
    assert_same_reads(&a, &b);
    assert_same_reads(&a, &twice);
    cr_assert_gt(cv_catalog_object_count(a.cat), 0);
    assert_check(&a);
    tclose(&a);
    tclose(&b);
    tclose(&twice);
    script_free(&e);
}

struct objlist {
    size_t n, cap;
    char **lines;
};

static int objlist_add(void *data, const char *type, const char *id, uint32_t shard)
{
    struct objlist *l = data;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->lines = realloc(l->lines, l->cap * sizeof *l->lines);
    }
    cr_assert(asprintf(&l->lines[l->n++], "%s|%s|%u", type, id, shard) > 0);
    return 0;
}

static void objlist_free(struct objlist *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->lines[i]);
    free(l->lines);
}

static void assert_same_objects(struct tcat *a, struct tcat *b)
{
    struct objlist x = {0}, y = {0};
    cr_assert_eq(cv_catalog_object_foreach(a->cat, objlist_add, &x), 0);
    cr_assert_eq(cv_catalog_object_foreach(b->cat, objlist_add, &y), 0);
    cr_assert_eq(x.n, y.n);
    for (size_t i = 0; i < x.n; i++) cr_assert_str_eq(x.lines[i], y.lines[i]);
    objlist_free(&x);
    objlist_free(&y);
}

Test(catalog, snapshot_restore_round_trip)
{
    struct tcat a, b;
    struct entries e;
    script_build(&e, 150);
    topen(&a, subdir("a"), 64);
    script_feed(&a, &e, 0, 150, 1);
    void *s;
    size_t len;
    snap(&a, &s, &len);

    topen(&b, subdir("b"), 64);
    bool ignored = true;
    cr_assert_eq(cv_catalog_restore(b.cat, s, len, &ignored), 0);
    cr_assert(!ignored);
    cr_assert_eq(cv_catalog_applied_index(b.cat), 150);
    assert_same_reads(&a, &b);
    assert_same_objects(&a, &b);
    assert_same_snapshot(&a, &b);
    assert_check(&b);

    /* Restore over a catalog with other content replaces everything, and survives a reopen. */
    struct tcat c;
    struct tb t = {0};
    topen(&c, subdir("c"), 64);
    tb_register(&t, "zz-other", 1, 1);
    tb_create(&t, "T", "only-in-c");
    tb_apply(&c, 3, &t);
    cr_assert_eq(cv_catalog_restore(c.cat, s, len, &ignored), 0);
    cr_assert(!ignored);
    cr_assert_null(cv_catalog_node_get(c.cat, "zz-other"));
    cr_assert_eq(cv_catalog_object_get(c.cat, "only-in-c", NULL, 0, NULL), CV_ENOTFOUND);
    tclose(&c);
    topen(&c, subdir("c"), 64);
    assert_same_reads(&a, &c);
    assert_same_snapshot(&a, &c);
    /* Both continue identically. */
    script_free(&e);
    script_build(&e, 170);
    script_feed(&a, &e, 150, 170, 1);
    script_feed(&c, &e, 150, 170, 1);
    assert_same_snapshot(&a, &c);
    tclose(&c);
    tclose(&a);
    tclose(&b);
    free(s);
    script_free(&e);
    tb_free(&t);
}

Test(catalog, restore_of_older_snapshot_is_ignored)
{
    struct tcat a;
    struct entries e;
    script_build(&e, 40);
    topen(&a, subdir("a"), 64);
    script_feed(&a, &e, 0, 20, 1);
    void *s20, *s40;
    size_t l20, l40;
    snap(&a, &s20, &l20);
    script_feed(&a, &e, 20, 40, 1);
    snap(&a, &s40, &l40);
    bool ignored = false;
    cr_assert_eq(cv_catalog_restore(a.cat, s20, l20, &ignored), 0);
    cr_assert(ignored);
    cr_assert_eq(cv_catalog_applied_index(a.cat), 40);
    ignored = false;
    cr_assert_eq(cv_catalog_restore(a.cat, s40, l40, &ignored), 0);
    cr_assert(ignored, "equal index: ignored too");
    void *now;
    size_t lnow;
    snap(&a, &now, &lnow);
    cr_assert(lnow == l40 && memcmp(now, s40, l40) == 0);

    /* A newer one replaces, an undecodable one is rejected. */
    struct tcat b;
    topen(&b, subdir("b"), 64);
    script_feed(&b, &e, 0, 10, 1);
    cr_assert_eq(cv_catalog_restore(b.cat, s20, l20, &ignored), 0);
    cr_assert(!ignored);
    cr_assert_eq(cv_catalog_applied_index(b.cat), 20);
    cr_assert_eq(cv_catalog_restore(b.cat, "\x0a\x7f", 2, &ignored), CV_EPROTO);
    cr_assert_eq(cv_catalog_applied_index(b.cat), 20);
    tclose(&a);
    tclose(&b);
    free(s20);
    free(s40);
    free(now);
    script_free(&e);
}

Test(catalog, mismatched_shard_count)
{
    struct tcat a, b;
    struct tb t = {0};
    topen(&a, subdir("a"), 64);
    tb_create(&t, "T", "x");
    tb_apply(&a, 1, &t);
    tclose(&a);
    struct cv_catalog *cat = NULL;
    struct cv_catalog_opts o = {.dir = subdir("a"), .shards = 32};
    cr_assert_eq(cv_catalog_open(&o, &cat), CV_ECONFIG);
    cr_assert_null(cat);

    topen(&a, subdir("a"), 64);
    void *s;
    size_t len;
    snap(&a, &s, &len);
    topen(&b, subdir("b"), 32);
    bool ignored = true;
    cr_assert_eq(cv_catalog_restore(b.cat, s, len, &ignored), CV_ECONFIG);
    cr_assert(!ignored);
    cr_assert_eq(cv_catalog_applied_index(b.cat), 0);
    cr_assert_eq(cv_catalog_object_count(b.cat), 0);
    tclose(&a);
    tclose(&b);
    free(s);
    tb_free(&t);
}

Test(catalog, restore_rejects_inconsistent_snapshot)
{
    /* A shard owned by a node the snapshot does not contain: refused, nothing changes. */
    uint8_t key[4] = {0, 0, 0, 3};
    uint8_t val[64];
    Cverse__Catalog__ShardRecord rec = CVERSE__CATALOG__SHARD_RECORD__INIT;
    rec.owner = "ghost";
    rec.epoch = 1;
    size_t vlen = cverse__catalog__shard_record__pack(&rec, val);
    Cverse__Catalog__SnapshotEntry ent = CVERSE__CATALOG__SNAPSHOT_ENTRY__INIT, *pe = &ent;
    ent.db = "shards";
    ent.key = (ProtobufCBinaryData){4, key};
    ent.value = (ProtobufCBinaryData){vlen, val};
    Cverse__Catalog__Snapshot sn = CVERSE__CATALOG__SNAPSHOT__INIT;
    sn.applied_index = 10;
    sn.shards = 16;
    sn.n_entries = 1;
    sn.entries = &pe;
    uint8_t buf[256];
    size_t len = cverse__catalog__snapshot__pack(&sn, buf);

    struct tcat c;
    struct tb t = {0};
    topen(&c, subdir("c"), 16);
    tb_create(&t, "T", "keep");
    tb_apply(&c, 1, &t);
    bool ignored;
    cr_assert_eq(cv_catalog_restore(c.cat, buf, len, &ignored), CV_EPROTO);
    ent.db = "bogus";
    len = cverse__catalog__snapshot__pack(&sn, buf);
    cr_assert_eq(cv_catalog_restore(c.cat, buf, len, &ignored), CV_EPROTO);
    cr_assert_eq(cv_catalog_applied_index(c.cat), 1);
    cr_assert_eq(cv_catalog_object_get(c.cat, "keep", NULL, 0, NULL), 0);
    assert_check(&c);
    tclose(&c);
    tb_free(&t);
}

/* ---- the shard lifecycle (core/shard.h) on real commands --------------------------------------- */

#define SST(x) CV_SHARD_##x

/* Asserts a shard's state, and that it got there by a move the table allows from *prev. */
static void assert_state(struct tcat *c, uint32_t shard, int want, int *prev)
{
    int got = cv_catalog_shard_state(c->cat, shard);
    cr_assert_eq(got, want, "shard %u: %s, want %s", shard, cv_sm_state_name(&cv_shard_sm, got),
                 cv_sm_state_name(&cv_shard_sm, want));
    if (prev && *prev != got)
        cr_assert(cv_sm_allowed(&cv_shard_sm, *prev, got), "shard %u: %s -> %s not in the table", shard,
                  cv_sm_state_name(&cv_shard_sm, *prev), cv_sm_state_name(&cv_shard_sm, got));
    if (prev) *prev = got;
}

/* What the leader would propose for one shard: the handoff over the catalog's view (cur, waiting, live)
 * as load_state builds it, for a target owner `next`. */
static int32_t handoff_of(struct tcat *c, uint32_t shard, const char *const *ids, uint32_t n, int32_t next)
{
    struct cv_catalog_shard sh;
    int32_t cur = CV_ASSIGN_NONE, waiting = CV_ASSIGN_NONE, out;
    uint8_t live[8];
    cr_assert_eq(cv_catalog_shard_get(c->cat, shard, &sh), 0);
    for (uint32_t i = 0; i < n; i++) {
        const struct cv_catalog_node *cn = cv_catalog_node_get(c->cat, ids[i]);
        live[i] = cn && cn->alive;
        if (strcmp(sh.owner, ids[i]) == 0) cur = (int32_t)i;
        if (cv_shard_must_confirm(sh.state) && strcmp(sh.released_by, ids[i]) == 0) waiting = (int32_t)i;
    }
    cv_assign_handoff(&cur, &next, &waiting, 1, live, n, &out);
    return out;
}

Test(catalog, shard_lifecycle_full_handoff)
{
    static const char *const ids[] = {"a", "b", "c"};
    struct tcat c;
    struct tb t = {0};
    struct cv_catalog_shard sh;
    uint64_t epoch = 99, idx = 1;
    int st = SST(UNASSIGNED);
    topen(&c, subdir("c"), 4);
    for (int i = 0; i < 3; i++) tb_register(&t, ids[i], 1000, 3000);
    tb_apply(&c, idx++, &t);
    assert_state(&c, 0, SST(UNASSIGNED), &st);
    cr_assert_eq(cv_catalog_shard_state(c.cat, 4), CV_EINVAL);
    cr_assert_eq(cv_catalog_shard_get(c.cat, 4, &sh), CV_EINVAL);
    cr_assert(!cv_catalog_shard_to_release(c.cat, 4, "a", NULL));
    cr_assert(cv_shard_may_assign(SST(UNASSIGNED)));
    cr_assert_eq(handoff_of(&c, 0, ids, 3, 0), 0, "from nobody: assign straight away");

    tb_assign1(&t, 0, "a", 0);
    ASSERT_STATUS(&c, idx++, &t, 0);
    assert_state(&c, 0, SST(OWNED), &st);
    cr_assert_eq(cv_catalog_shard_get(c.cat, 0, &sh), 0);
    cr_assert_str_eq(sh.owner, "a");
    cr_assert_eq(sh.epoch, 1);
    cr_assert_str_eq(sh.released_by, "");
    cr_assert_eq(handoff_of(&c, 0, ids, 3, 1), CV_ASSIGN_NONE, "a live owner releases first");

    /* Phase 1: a -> "". a must confirm; nobody may own it meanwhile. */
    tb_assign1(&t, 0, "", 1);
    ASSERT_STATUS(&c, idx++, &t, 0);
    assert_state(&c, 0, SST(RELEASING), &st);
    cr_assert(cv_catalog_shard_to_release(c.cat, 0, "a", &epoch));
    cr_assert_eq(epoch, 2);
    cr_assert(!cv_catalog_shard_to_release(c.cat, 0, "b", NULL), "only the releasing node confirms");
    cr_assert_eq(handoff_of(&c, 0, ids, 3, 1), CV_ASSIGN_NONE, "waits for a's release");

    /* A confirmation at a stale epoch changes nothing; the right one releases it. */
    tb_release1(&t, "a", 0, 1);
    ASSERT_STATUS(&c, idx++, &t, CV_ECONFLICT);
    assert_state(&c, 0, SST(RELEASING), &st);
    tb_release1(&t, "a", 0, epoch);
    ASSERT_STATUS(&c, idx++, &t, 0);
    assert_state(&c, 0, SST(RELEASED), &st);
    cr_assert(!cv_catalog_shard_to_release(c.cat, 0, "a", NULL), "confirmed");
    cr_assert_eq(handoff_of(&c, 0, ids, 3, 1), 1, "phase 2: b gets it");

    /* Phase 2: b owns it at the next epoch; the release state is cleared. */
    tb_assign1(&t, 0, "b", 2);
    ASSERT_STATUS(&c, idx++, &t, 0);
    assert_state(&c, 0, SST(OWNED), &st);
    cv_catalog_shard_get(c.cat, 0, &sh);
    cr_assert_str_eq(sh.owner, "b");
    cr_assert_eq(sh.epoch, 3);
    cr_assert_str_eq(sh.released_by, "");
    cr_assert_eq(sh.released_epoch, 0);

    /* The owner declared dead: unassigned from it in the same entry, replaced straight away; a
     * registration does not make it the owner again (it confirms, as any releaser). */
    tb_expire(&t, "b", 4000);
    ASSERT_STATUS(&c, idx++, &t, 0);
    assert_state(&c, 0, SST(RELEASER_DEAD), &st);
    cr_assert_eq(handoff_of(&c, 0, ids, 3, 2), 2, "a dead owner is not waited for");
    tb_renew(&t, "b", 5000, 3000);
    ASSERT_STATUS(&c, idx++, &t, CV_ECONFLICT);
    assert_state(&c, 0, SST(RELEASER_DEAD), &st);
    tb_register(&t, "b", 5000, 3000);
    ASSERT_STATUS(&c, idx++, &t, 0);
    assert_state(&c, 0, SST(RELEASING), &st);
    cr_assert_str_eq(cv_catalog_shard_owner(c.cat, 0, NULL), "", "the new incarnation owns nothing");
    tb_release1(&t, "b", 0, 4);
    ASSERT_STATUS(&c, idx++, &t, 0);
    assert_state(&c, 0, SST(RELEASED), &st);
    tb_assign1(&t, 0, "b", 4);
    ASSERT_STATUS(&c, idx++, &t, 0);
    assert_state(&c, 0, SST(OWNED), &st);
    tb_expire(&t, "b", 8000);
    ASSERT_STATUS(&c, idx++, &t, 0);
    assert_state(&c, 0, SST(RELEASER_DEAD), &st);
    tb_assign1(&t, 0, "c", 6);
    ASSERT_STATUS(&c, idx++, &t, 0);
    assert_state(&c, 0, SST(OWNED), &st);
    assert_check(&c);
    tclose(&c);
    tb_free(&t);
}

Test(catalog, shard_lifecycle_owner_dies_mid_release)
{
    static const char *const ids[] = {"a", "b"};
    struct tcat c;
    struct tb t = {0};
    uint64_t epoch, idx = 1;
    int st[3];
    topen(&c, subdir("c"), 4);
    tb_register(&t, "a", 1000, 3000);
    tb_register(&t, "b", 1000, 3000);
    uint32_t sh[] = {0, 1, 2};
    tb_assign(&t, 3, sh, NULL, "a", NULL);
    tb_apply(&c, idx++, &t);
    for (uint32_t s = 0; s < 3; s++) {
        st[s] = SST(UNASSIGNED);
        assert_state(&c, s, SST(OWNED), &st[s]);
    }
    const char *none[] = {"", "", ""};
    uint64_t ep[] = {1, 1, 1};
    tb_assign(&t, 3, sh, none, NULL, ep);
    ASSERT_STATUS(&c, idx++, &t, 0);
    for (uint32_t s = 0; s < 3; s++) assert_state(&c, s, SST(RELEASING), &st[s]);

    /* a dies before confirming: the shards may be assigned now, and a (if still running) may still
     * confirm them. */
    tb_expire(&t, "a", 4000);
    ASSERT_STATUS(&c, idx++, &t, 0);
    for (uint32_t s = 0; s < 3; s++) assert_state(&c, s, SST(RELEASER_DEAD), &st[s]);
    cr_assert(cv_shard_may_assign((enum cv_shard_state)cv_catalog_shard_state(c.cat, 0)));
    cr_assert_eq(handoff_of(&c, 0, ids, 2, 1), 1, "nobody to wait for");
    cr_assert(cv_catalog_shard_to_release(c.cat, 1, "a", &epoch));
    cr_assert_eq(epoch, 2);
    tb_assign1(&t, 0, "b", 2);
    ASSERT_STATUS(&c, idx++, &t, 0);
    assert_state(&c, 0, SST(OWNED), &st[0]);
    tb_release1(&t, "a", 1, 2); /* a late confirmation from the dead node is accepted */
    ASSERT_STATUS(&c, idx++, &t, 0);
    assert_state(&c, 1, SST(RELEASED), &st[1]);
    tb_release1(&t, "a", 0, 2); /* shard 0 has moved on */
    ASSERT_STATUS(&c, idx++, &t, CV_ECONFLICT);

    /* A releaser that comes back before anybody took the shard is waited for again. */
    tb_register(&t, "a", 9000, 3000);
    ASSERT_STATUS(&c, idx++, &t, 0);
    assert_state(&c, 2, SST(RELEASING), &st[2]);
    cr_assert_eq(handoff_of(&c, 2, ids, 2, 1), CV_ASSIGN_NONE, "waits for a again");
    assert_state(&c, 1, SST(RELEASED), &st[1]);
    tb_release1(&t, "a", 2, 2);
    ASSERT_STATUS(&c, idx++, &t, 0);
    assert_state(&c, 2, SST(RELEASED), &st[2]);
    cr_assert_eq(handoff_of(&c, 2, ids, 2, 1), 1);
    assert_check(&c);
    tclose(&c);
    tb_free(&t);
}

/* ExpireNode and RegisterNode flip a node's liveness, which moves the shards naming it: owned ones
 * OWNED <-> OWNER_DEAD, pending releases RELEASING <-> RELEASER_DEAD. Debug builds check each of those
 * moves against the table inside the apply (cmd.c, cmd__check_liveness; it aborts on a move the table
 * lacks); here the states they reach are asserted, and that other nodes' shards stay put. */
Test(catalog, shard_lifecycle_expire_and_reregister_flip_liveness)
{
    struct tcat c;
    struct tb t = {0};
    uint64_t idx = 1;
    int st[4];
    topen(&c, subdir("c"), 64);
    tb_register(&t, "a", 1000, 3000);
    tb_register(&t, "b", 1000, 3000);
    uint32_t sh[] = {0, 1, 2, 3};
    const char *own[] = {"a", "a", "b", "b"};
    tb_assign(&t, 4, sh, own, NULL, NULL);
    tb_apply(&c, idx++, &t);
    tb_assign1(&t, 1, "", 1); /* a releases shard 1 */
    ASSERT_STATUS(&c, idx++, &t, 0);
    tb_assign1(&t, 3, "", 1); /* b releases shard 3 */
    ASSERT_STATUS(&c, idx++, &t, 0);
    const int before[] = {SST(OWNED), SST(RELEASING), SST(OWNED), SST(RELEASING)};
    for (uint32_t s = 0; s < 4; s++) {
        assert_state(&c, s, before[s], NULL);
        st[s] = before[s];
    }

    tb_expire(&t, "a", 4000); /* its owned shard is unassigned from it in the same entry */
    ASSERT_STATUS(&c, idx++, &t, 0);
    assert_state(&c, 0, SST(RELEASER_DEAD), &st[0]);
    assert_state(&c, 1, SST(RELEASER_DEAD), &st[1]);
    assert_state(&c, 2, SST(OWNED), &st[2]);
    assert_state(&c, 3, SST(RELEASING), &st[3]);
    tb_expire(&t, "a", 4000); /* already dead: no flip, nothing moves */
    ASSERT_STATUS(&c, idx++, &t, 0);
    assert_state(&c, 0, SST(RELEASER_DEAD), &st[0]);

    tb_register(&t, "a", 5000, 3000); /* a comes back before anybody took its shards: owns none */
    ASSERT_STATUS(&c, idx++, &t, 0);
    assert_state(&c, 0, SST(RELEASING), &st[0]);
    assert_state(&c, 1, SST(RELEASING), &st[1]);
    assert_state(&c, 2, SST(OWNED), &st[2]);
    assert_state(&c, 3, SST(RELEASING), &st[3]);
    cr_assert_eq(cv_catalog_node_get(c.cat, "a")->incarnation, 2);
    cr_assert_eq(cv_catalog_node_get(c.cat, "a")->shards_owned, 0);
    tb_register(&t, "a", 5100, 3000); /* alive already: no flip */
    ASSERT_STATUS(&c, idx++, &t, 0);
    assert_state(&c, 0, SST(RELEASING), &st[0]);

    /* An AssignShards decided while b lived commits after b's ExpireNode (OWNER_DEAD): b's
     * registration unassigns it, it never owns the shard as a new incarnation. */
    tb_expire(&t, "b", 4000);
    ASSERT_STATUS(&c, idx++, &t, 0);
    assert_state(&c, 2, SST(RELEASER_DEAD), &st[2]);
    assert_state(&c, 3, SST(RELEASER_DEAD), &st[3]);
    assert_state(&c, 0, SST(RELEASING), &st[0]);
    uint64_t ep = 0;
    cv_catalog_shard_owner(c.cat, 2, &ep);
    tb_assign1(&t, 2, "b", ep);
    ASSERT_STATUS(&c, idx++, &t, 0);
    assert_state(&c, 2, SST(OWNER_DEAD), &st[2]);
    tb_register(&t, "b", 6000, 3000);
    ASSERT_STATUS(&c, idx++, &t, 0);
    assert_state(&c, 2, SST(RELEASING), &st[2]);
    assert_state(&c, 3, SST(RELEASING), &st[3]);
    cr_assert_str_eq(cv_catalog_shard_owner(c.cat, 2, NULL), "");
    cr_assert_eq(cv_catalog_node_get(c.cat, "b")->shards_owned, 0);
    assert_check(&c);
    tclose(&c);
    tb_free(&t);
}

/* Single-command entries of every kind at random: every state a shard passes through is reached by a
 * move the table allows (record moves and lease moves alike), and the check holds throughout. */
Test(catalog, shard_lifecycle_random_moves_follow_the_table)
{
    static const char *nodes[] = {"n0", "n1", "n2", "n3"};
    enum { SHARDS = 16 };
    struct tcat c;
    struct tb t = {0};
    uint64_t s = 7, now = 1000;
    int st[SHARDS];
    topen(&c, subdir("c"), SHARDS);
    for (int i = 0; i < 4; i++) tb_register(&t, nodes[i], now, 3000);
    tb_apply(&c, 1, &t);
    for (uint32_t sh = 0; sh < SHARDS; sh++) st[sh] = cv_catalog_shard_state(c.cat, sh);
    int seen[CV_SHARD__COUNT] = {0};
    for (uint64_t idx = 2; idx < 3000; idx++) {
        const char *nd = nodes[lcg(&s) % 4];
        uint32_t sh = (uint32_t)(lcg(&s) % SHARDS);
        const struct cv_catalog_node *cn = cv_catalog_node_get(c.cat, nd);
        uint64_t ep;
        now += 10;
        switch (lcg(&s) % 6) {
        case 0: /* as a node does: a dead one comes back by registering (its renewal is refused) */
            if (cn->alive) tb_renew(&t, nd, now, 3000);
            else tb_register(&t, nd, now, 3000);
            break;
        case 1: tb_expire(&t, nd, cn->lease_expiry_ms); break;
        case 2: tb_release1(&t, nd, sh, (cv_catalog_shard_owner(c.cat, sh, &ep), ep)); break;
        default:
            cv_catalog_shard_owner(c.cat, sh, &ep);
            tb_assign1(&t, sh, lcg(&s) % 3 ? nd : "", ep);
        }
        tb_apply(&c, idx, &t);
        for (uint32_t k = 0; k < SHARDS; k++) {
            assert_state(&c, k, cv_catalog_shard_state(c.cat, k), &st[k]);
            seen[st[k]]++;
        }
    }
    for (int k = 0; k < CV_SHARD__COUNT; k++)
        cr_assert_gt(seen[k], 0, "state %s never reached", cv_sm_state_name(&cv_shard_sm, k));
    assert_check(&c);
    tclose(&c);
    tb_free(&t);
}

/* ---- a larger case ------------------------------------------------------------------------------ */

Test(catalog, large_round_trip, .timeout = 300)
{
    enum { SHARDS = 8192, NODES = 10, OBJECTS = 10000 };
    struct tcat a, b;
    struct tb t = {0};
    char ids[NODES][16];
    const char *owners[SHARDS];
    uint32_t sh[SHARDS];
    topen(&a, subdir("a"), SHARDS);
    tb_config(&t, 0x5eed, SHARDS);
    for (int i = 0; i < NODES; i++) tb_register(&t, (snprintf(ids[i], 16, "node-%02d", i), ids[i]), 1000, 5000);
    tb_apply(&a, 1, &t);
    for (uint32_t s = 0; s < SHARDS; s++) {
        sh[s] = s;
        owners[s] = ids[s % NODES];
    }
    tb_assign(&t, SHARDS, sh, owners, NULL, NULL);
    tb_apply(&a, 2, &t);
    cr_assert_eq(a.obs.status[0], 0);
    cr_assert_eq(cv_catalog_unassigned_shards(a.cat), 0);
    cr_assert_eq(cv_catalog_node_get(a.cat, "node-00")->shards_owned, (SHARDS + NODES - 1) / NODES);
    uint64_t index = 3;
    char id[32];
    for (int i = 0; i < OBJECTS; i++) {
        tb_create(&t, i % 3 ? "Counter" : "Chat", (snprintf(id, sizeof id, "obj-%05d", i), id));
        if (t.n == 500) tb_apply(&a, index++, &t);
    }
    cr_assert_eq(cv_catalog_object_count(a.cat), OBJECTS);

    uint64_t t0 = cv_mono_ns();
    void *s;
    size_t len;
    snap(&a, &s, &len);
    uint64_t t1 = cv_mono_ns();
    topen(&b, subdir("b"), SHARDS);
    bool ignored = true;
    cr_assert_eq(cv_catalog_restore(b.cat, s, len, &ignored), 0);
    uint64_t t2 = cv_mono_ns();
    cr_assert(!ignored);
    printf("large: snapshot %zu bytes, %.1f ms; restore %.1f ms\n", len, (double)(t1 - t0) / 1e6,
           (double)(t2 - t1) / 1e6);
    assert_same_reads(&a, &b);
    assert_same_objects(&a, &b);
    assert_same_snapshot(&a, &b);
    assert_check(&b);
    uint32_t shard;
    cr_assert_eq(cv_catalog_object_get(b.cat, "obj-04242", NULL, 0, &shard), 0);
    cr_assert_eq(shard, cv_shard_of("obj-04242", SHARDS));
    tclose(&b);
    topen(&b, subdir("b"), SHARDS);
    assert_same_reads(&a, &b);
    tclose(&a);
    tclose(&b);
    free(s);
    tb_free(&t);
}

/* ---- throughput (printed, not asserted) ---------------------------------------------------------- */

static double measure(const char *dir, bool sync, int entries)
{
    struct tcat c;
    struct tb t = {0};
    char id[32];
    topen_opts(&c, dir, 256, sync);
    uint64_t t0 = cv_mono_ns();
    for (int e = 0; e < entries; e++) {
        for (int i = 0; i < 64; i++) tb_create(&t, "Counter", (snprintf(id, sizeof id, "o-%d-%d", e, i), id));
        tb_apply(&c, (uint64_t)e + 1, &t);
    }
    double secs = (double)(cv_mono_ns() - t0) / 1e9;
    cr_assert_eq(cv_catalog_object_count(c.cat), (size_t)entries * 64);
    tclose(&c);
    tb_free(&t);
    return secs;
}

Test(catalog, apply_throughput, .timeout = 300)
{
    int n_nosync = 2000, n_sync = 300;
    double a = measure(subdir("nosync"), false, n_nosync);
    double b = measure(subdir("sync"), true, n_sync);
    printf("apply throughput, batches of 64 create_object (%s):\n"
           "  MDB_NOSYNC:    %6.0f entries/s = %8.0f commands/s (%.3f ms/entry)\n"
           "  sync_each_txn: %6.0f entries/s = %8.0f commands/s (%.3f ms/entry)\n",
#ifdef CV_CHECKS
           "CV_CHECKS on: every apply is followed by cv_catalog_check",
#else
           "CV_CHECKS off",
#endif
           n_nosync / a, n_nosync * 64 / a, a * 1e3 / n_nosync, n_sync / b, n_sync * 64 / b, b * 1e3 / n_sync);
    fflush(stdout);
    cr_assert_gt(a, 0);
}
