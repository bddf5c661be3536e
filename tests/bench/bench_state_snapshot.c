/* bench_state_snapshot: what object states cost the catalog's raft snapshots (docs/durable-state.md).
 * Fills a catalog in a temp dir with N objects of S state bytes (saves batched 1000 per entry, as one
 * node's saves of one loop iteration would be), then times cv_catalog_snapshot (taken synchronously on a
 * node's loop every snapshot_threshold entries) and cv_catalog_restore into a fresh catalog (a follower
 * installing it). Not a test.
 *
 * Usage: bench_state_snapshot N S */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "catalog/catalog.h"
#include "cverse/error.h"
#include "util/log.h"

#include "tmpdir.h"

#define SHARDS 64
#define PER_ENTRY 1000

static uint64_t next_index = 1;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void apply(struct cv_catalog *cat, Cverse__Catalog__Command **cmds, size_t n)
{
    Cverse__Catalog__Batch b = CVERSE__CATALOG__BATCH__INIT;
    b.commands = cmds;
    b.n_commands = n;
    size_t len = cverse__catalog__batch__get_packed_size(&b);
    uint8_t *buf = malloc(len);
    cverse__catalog__batch__pack(&b, buf);
    int rv = cv_catalog_apply(cat, next_index++, buf, len, NULL);
    free(buf);
    if (rv) {
        fprintf(stderr, "apply: %s\n", cv_strerror(rv));
        exit(1);
    }
}

static void setup_node(struct cv_catalog *cat)
{
    Cverse__Catalog__NodeInfo info = CVERSE__CATALOG__NODE_INFO__INIT;
    info.id = "n1";
    Cverse__Catalog__CmdRegisterNode r = CVERSE__CATALOG__CMD_REGISTER_NODE__INIT;
    r.info = &info;
    r.ttl_ms = 1u << 30;
    Cverse__Catalog__Command c = CVERSE__CATALOG__COMMAND__INIT, *cp = &c;
    c.cmd_case = CVERSE__CATALOG__COMMAND__CMD_REGISTER_NODE;
    c.register_node = &r;
    apply(cat, &cp, 1);
    Cverse__Catalog__ShardAssignment a[SHARDS], *ap[SHARDS];
    for (int s = 0; s < SHARDS; s++) {
        cverse__catalog__shard_assignment__init(&a[s]);
        a[s].shard = (uint32_t)s;
        a[s].owner = "n1";
        ap[s] = &a[s];
    }
    Cverse__Catalog__CmdAssignShards as = CVERSE__CATALOG__CMD_ASSIGN_SHARDS__INIT;
    as.shards = ap;
    as.n_shards = SHARDS;
    c.cmd_case = CVERSE__CATALOG__COMMAND__CMD_ASSIGN_SHARDS;
    c.assign_shards = &as;
    apply(cat, &cp, 1);
}

/* Objects [from, from + n) created and saved (epoch 1: the first assignment). */
static void fill(struct cv_catalog *cat, size_t from, size_t n, uint8_t *state, size_t size)
{
    static char ids[PER_ENTRY][32];
    Cverse__Catalog__Command cc[PER_ENTRY], *cp[PER_ENTRY];
    Cverse__Catalog__CmdCreateObject co[PER_ENTRY];
    Cverse__Catalog__ObjectSave sv[PER_ENTRY], *svp[PER_ENTRY];
    for (size_t i = 0; i < n; i++) {
        snprintf(ids[i], sizeof ids[i], "obj-%08zu", from + i);
        cverse__catalog__cmd_create_object__init(&co[i]);
        co[i].type = "T";
        co[i].id = ids[i];
        cverse__catalog__command__init(&cc[i]);
        cc[i].cmd_case = CVERSE__CATALOG__COMMAND__CMD_CREATE_OBJECT;
        cc[i].create_object = &co[i];
        cp[i] = &cc[i];
        cverse__catalog__object_save__init(&sv[i]);
        sv[i].id = ids[i];
        sv[i].type = "T";
        sv[i].epoch = 1;
        sv[i].version = 1;
        sv[i].state = (ProtobufCBinaryData){size, state};
        svp[i] = &sv[i];
    }
    apply(cat, cp, n);
    Cverse__Catalog__CmdSaveState ss = CVERSE__CATALOG__CMD_SAVE_STATE__INIT;
    ss.node = "n1";
    ss.saves = svp;
    ss.n_saves = n;
    Cverse__Catalog__Command c = CVERSE__CATALOG__COMMAND__INIT, *p = &c;
    c.cmd_case = CVERSE__CATALOG__COMMAND__CMD_SAVE_STATE;
    c.save_state = &ss;
    apply(cat, &p, 1);
}

int main(int argc, char **argv)
{
    if (argc != 3) return fprintf(stderr, "usage: bench_state_snapshot N S\n"), 2;
    size_t n = strtoull(argv[1], NULL, 10), size = strtoull(argv[2], NULL, 10);
    char root[] = "/tmp/cv-snapbench-XXXXXX", a[64], b[64];
    if (!mkdtemp(root)) return 1;
    snprintf(a, sizeof a, "%s/a", root);
    snprintf(b, sizeof b, "%s/b", root);
    cv_log_init("bench", CV_LOG_ERROR);
    struct cv_catalog *cat, *fresh;
    struct cv_catalog_opts o = {.dir = a, .shards = SHARDS, .map_size = (size_t)8 << 30};
    if (cv_catalog_open(&o, &cat)) return 1;
    setup_node(cat);
    uint8_t *state = malloc(size ? size : 1);
    for (size_t i = 0; i < size; i++) state[i] = (uint8_t)(i * 131 + 7);
    double t0 = now_s();
    for (size_t from = 0; from < n; from += PER_ENTRY) fill(cat, from, n - from < PER_ENTRY ? n - from : PER_ENTRY, state, size);
    double t1 = now_s();
    void *snap;
    size_t len;
    if (cv_catalog_snapshot(cat, &snap, &len)) return 1;
    double t2 = now_s();
    o.dir = b;
    if (cv_catalog_open(&o, &fresh)) return 1;
    bool ignored;
    if (cv_catalog_restore(fresh, snap, len, &ignored) || ignored) return 1;
    double t3 = now_s();
    size_t count;
    uint64_t bytes;
    cv_catalog_state_stats(cat, &count, &bytes);
    printf("%zu objects x %zu B: fill %.2f s, snapshot %.1f MB in %.3f s, restore %.3f s; states db %.1f MB\n", n,
           size, t1 - t0, (double)len / 1e6, t2 - t1, t3 - t2, (double)bytes / 1e6);
    free(snap);
    free(state);
    cv_catalog_close(fresh);
    cv_catalog_close(cat);
    cv_tmpdir_remove(root);
    return 0;
}
