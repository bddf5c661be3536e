/* Integration: a node that no config lists joins a running 3-node cluster (issue 13 step 4), real
 * processes, one gate, calls flowing through the gate the whole time.
 * - started from flags only with --join <a member's native address>: it is added to raft (a standby), its
 *   record appears on every node, it becomes ready, the balancer gives it its share of shards, the gate
 *   routes calls to it (it hosts objects), and no call fails meanwhile;
 * - a join under an id of the config (another member's) is refused: exit 1.
 * The activation checker (harness) runs at the end of each test. Polls with deadlines; never sleeps as
 * synchronisation. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "harness.h"

#define READY_MS 30000
#define JOIN_MS 40000
#define N_OBJ 24

static struct h_cluster C;
static struct h_etcd E; /* the etcd test only */
static int calls, failed;

static void teardown(void)
{
    h_cluster_destroy(&C);
    if (E.n) h_etcd_stop(&E);
}

TestSuite(join, .fini = teardown, .timeout = 300);

static void obj_path(char *out, size_t len, const char *op, int k, const char *tail)
{
    snprintf(out, len, "/api/v1/objects/%s/SimpleCounter/join-%d%s", op, k, tail);
}

/* A 3-node cluster and a gate; with etcd (E started) its provider is etcd under /cvj. */
static void start_with(bool etcd)
{
    struct h_opts o = {.gates = 1};
    h_cluster_init_ex(&C, 3, 3, 1000, &o);
    if (etcd) h_config_etcd(&C, &E, "/cvj", 3000);
    for (int i = 0; i < 3; i++) h_node_start(&C, i);
    h_gate_start(&C, 0);
    cr_assert(h_poll(READY_MS, h_all_ready, &C), "nodes and gate did not become ready");
    for (int k = 0; k < N_OBJ; k++) {
        char path[128];
        long st;
        obj_path(path, sizeof path, "create", k, "");
        char *t = h_post(h_gate_http_port(&C, 0), path, "{}", 2, &st);
        cr_assert_eq(st, 200, "create join-%d -> %ld: %s", k, st, t ? t : "");
        free(t);
    }
    calls = failed = 0;
}

static void start(void)
{
    start_with(false);
}

/* One round of calls, one per object, through the gate; every failure is counted and reported. */
static void call_round(void)
{
    for (int k = 0; k < N_OBJ; k++) {
        char path[128];
        long st;
        obj_path(path, sizeof path, "call", k, "/Increment");
        char *t = h_post(h_gate_http_port(&C, 0), path, "{\"request\":{}}", 14, &st);
        calls++;
        if (st != 200) {
            failed++;
            cr_expect_eq(st, 200, "call %d (join-%d) failed: %ld %s", calls, k, st, t ? t : "(no answer)");
        }
        free(t);
    }
}

/* Polls pred while calls keep flowing. */
static bool poll_calling(unsigned ms, bool (*pred)(void *), void *arg)
{
    unsigned long deadline = h_now_ms() + ms;
    while (h_now_ms() < deadline) {
        if (pred(arg)) return true;
        call_round();
    }
    return pred(arg);
}

/* Node id as node i's /v1/cluster shows it: alive, shards owned and raft role. */
static bool node_view(int i, const char *id, bool *alive, int *shards, char *role, size_t len)
{
    long st;
    json_t *j = h_get_json(&C, i, "/v1/cluster", &st), *n;
    size_t k;
    bool found = false;
    json_array_foreach(j ? json_object_get(j, "nodes") : NULL, k, n)
    {
        if (strcmp(json_string_value(json_object_get(n, "id")), id) != 0) continue;
        found = true;
        *alive = json_is_true(json_object_get(n, "alive"));
        *shards = (int)json_integer_value(json_object_get(n, "shards"));
        snprintf(role, len, "%s", json_string_value(json_object_get(n, "role")) ?: "");
    }
    json_decref(j);
    return found;
}

/* Every running node sees node *arg alive with shards, and no shard is unassigned. */
static bool has_shards_everywhere(void *arg)
{
    int who = *(int *)arg;
    for (int i = 0; i < C.n; i++) {
        bool alive;
        int shards;
        char role[16];
        if (!h_node_running(&C, i)) return false;
        if (!node_view(i, C.id[who], &alive, &shards, role, sizeof role) || !alive || shards == 0) return false;
        long st;
        json_t *j = h_get_json(&C, i, "/v1/cluster", &st);
        bool full = j && json_integer_value(json_object_get(j, "unassigned_shards")) == 0;
        json_decref(j);
        if (!full) return false;
    }
    return true;
}

/* The gate routed calls to node *arg: it hosts at least one of our objects. */
static bool hosts_objects(void *arg)
{
    int who = *(int *)arg;
    long st;
    json_t *j = h_get_json(&C, who, "/v1/objects", &st);
    json_t *objs = j ? json_object_get(j, "objects") : NULL;
    bool yes = json_array_size(objs ? objs : j) > 0;
    json_decref(j);
    return yes && st == 200;
}

Test(join, a_node_from_flags_joins_and_gets_shards_with_zero_failed_calls)
{
    start();
    call_round();
    char join[32];
    snprintf(join, sizeof join, "127.0.0.1:%d", C.base + 1); /* any member: node-2 relays to the leader */
    const char *extra[] = {"--join", join, NULL};
    int j = h_node_join(&C, extra);
    cr_assert(poll_calling(JOIN_MS, h_all_ready, &C), "%s did not become ready", C.id[j]);
    cr_assert(poll_calling(JOIN_MS, has_shards_everywhere, &j), "%s got no shards", C.id[j]);
    bool alive;
    int shards;
    char role[16];
    cr_assert(node_view(0, C.id[j], &alive, &shards, role, sizeof role));
    cr_expect(!strcmp(role, "standby") || !strcmp(role, "voter"), "%s is a raft member (role %s)", C.id[j], role);
    cr_expect_geq(shards, 64 / 4 - 1, "%s has its share of the 64 shards (%d)", C.id[j], shards);
    cr_assert(poll_calling(JOIN_MS, hosts_objects, &j), "the gate never routed a call to %s", C.id[j]);
    for (int r = 0; r < 3; r++) call_round();
    cr_expect_eq(failed, 0, "%d of %d calls failed while %s joined", failed, calls, C.id[j]);
    cr_log_info("%s joined with %d shards; %d calls, %d failed", C.id[j], shards, calls, failed);
    h_cluster_stop_all(&C);
}

/* Every running node other than *arg sees it removed (not alive, no shard) and no shard unassigned. */
static bool removed_everywhere(void *arg)
{
    int who = *(int *)arg;
    for (int i = 0; i < C.n; i++) {
        if (i == who || !h_node_running(&C, i)) continue;
        long st;
        json_t *j = h_get_json(&C, i, "/v1/cluster", &st), *n;
        size_t k;
        bool ok = j && json_integer_value(json_object_get(j, "unassigned_shards")) == 0, seen = false;
        json_array_foreach(j ? json_object_get(j, "nodes") : NULL, k, n)
        {
            if (strcmp(json_string_value(json_object_get(n, "id")), C.id[who]) != 0) continue;
            seen = true;
            ok = ok && json_is_true(json_object_get(n, "removed")) && !json_is_true(json_object_get(n, "alive")) &&
                 json_integer_value(json_object_get(n, "shards")) == 0 && !strcmp(json_string_value(json_object_get(n, "role")) ?: "", "none");
        }
        json_decref(j);
        if (!ok || !seen) return false;
    }
    return true;
}

Test(join, remove_node_moves_its_shards_back_with_zero_failed_calls)
{
    start();
    char join[32];
    snprintf(join, sizeof join, "127.0.0.1:%d", C.base);
    const char *extra[] = {"--join", join, NULL};
    int j = h_node_join(&C, extra);
    cr_assert(poll_calling(JOIN_MS, has_shards_everywhere, &j), "%s got no shards", C.id[j]);
    /* cverse remove-node through node-2's HTTP API, in a child, while calls keep flowing here. */
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' remove-node --node-http 127.0.0.1:%d --timeout 30000 %s >%s/remove.log 2>&1",
             getenv("CVERSE_CLI_BIN"), C.base + 101, C.id[j], C.dir);
    pid_t cli = fork();
    cr_assert(cli >= 0);
    if (cli == 0) {
        int rc = system(cmd);
        _exit(WIFEXITED(rc) ? WEXITSTATUS(rc) : 99);
    }
    int cli_status = -1, node_status = -1;
    bool cli_done = false, node_done = false;
    unsigned long deadline = h_now_ms() + 40000;
    while (h_now_ms() < deadline && !(cli_done && node_done)) {
        if (!cli_done && waitpid(cli, &cli_status, WNOHANG) == cli) cli_done = true;
        if (!node_done && waitpid(C.pid[j], &node_status, WNOHANG) == C.pid[j]) {
            node_done = true;
            C.pid[j] = 0;
        }
        call_round();
    }
    cr_assert(cli_done, "cverse remove-node did not finish");
    cr_expect(WIFEXITED(cli_status) && WEXITSTATUS(cli_status) == 0, "cverse remove-node exited with %d", cli_status);
    cr_assert(node_done, "%s did not stop after its removal", C.id[j]);
    cr_expect(WIFEXITED(node_status) && WEXITSTATUS(node_status) == 0, "%s exited with %d", C.id[j], node_status);
    cr_assert(poll_calling(JOIN_MS, removed_everywhere, &j), "the others do not see %s removed", C.id[j]);
    for (int r = 0; r < 3; r++) call_round();
    cr_expect_eq(failed, 0, "%d of %d calls failed while %s was removed", failed, calls, C.id[j]);
    cr_log_info("%s removed; %d calls, %d failed", C.id[j], calls, failed);
    h_cluster_stop_all(&C);
}

Test(join, a_node_from_flags_finds_the_members_in_etcd)
{
    h_etcd_start(&E, 1);
    start_with(true);
    const char *extra[] = {"--etcd", E.endpoints, "--etcd-prefix", "/cvj", NULL};
    int j = h_node_join(&C, extra);
    cr_assert(poll_calling(JOIN_MS, h_all_ready, &C), "%s did not become ready", C.id[j]);
    cr_assert(poll_calling(JOIN_MS, has_shards_everywhere, &j), "%s got no shards", C.id[j]);
    cr_assert(poll_calling(JOIN_MS, hosts_objects, &j), "the gate never routed a call to %s", C.id[j]);
    for (int r = 0; r < 3; r++) call_round();
    cr_expect_eq(failed, 0, "%d of %d calls failed while %s joined through etcd", failed, calls, C.id[j]);
    h_cluster_stop_all(&C);
}

/* Both nodes' /v1/cluster name the same leader and list both nodes alive: one cluster. */
static bool one_cluster(void *arg)
{
    (void)arg;
    char leader[2][64];
    for (int i = 0; i < 2; i++) {
        long st;
        json_t *j = h_get_json(&C, i, "/v1/cluster", &st), *n;
        size_t k, alive = 0;
        snprintf(leader[i], sizeof leader[i], "%s", json_string_value(json_object_get(j, "leader")) ?: "");
        json_array_foreach(j ? json_object_get(j, "nodes") : NULL, k, n) alive += json_is_true(json_object_get(n, "alive"));
        json_decref(j);
        if (alive != 2 || !leader[i][0]) return false;
    }
    return strcmp(leader[0], leader[1]) == 0;
}

Test(join, two_nodes_racing_to_bootstrap_make_one_cluster)
{
    h_etcd_start(&E, 1);
    struct h_opts o = {0};
    h_cluster_init_ex(&C, 0, 1, 1000, &o); /* no config node: both start from flags, at once */
    const char *extra[] = {"--etcd", E.endpoints, "--etcd-prefix", "/cvb", NULL};
    h_node_join(&C, extra);
    h_node_join(&C, extra);
    cr_assert(h_poll(READY_MS, h_all_ready, &C), "the racing nodes did not become ready");
    cr_assert(h_poll(READY_MS, one_cluster, NULL), "the racing nodes did not make one cluster");
    int bootstrapped = 0;
    for (int i = 0; i < 2; i++) {
        char path[400], line[512];
        snprintf(path, sizeof path, "%s/node-%d.log", C.dir, i + 1);
        FILE *f = fopen(path, "r");
        while (f && fgets(line, sizeof line, f)) bootstrapped += strstr(line, "this node creates the cluster") != NULL;
        if (f) fclose(f);
    }
    cr_expect_eq(bootstrapped, 1, "%d nodes bootstrapped a cluster", bootstrapped);
    h_cluster_stop_all(&C);
}

Test(join, an_id_of_another_member_is_refused)
{
    start();
    const char *bin = getenv("CVERSE_NODE_BIN");
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "timeout 30 '%s' --node-id node-2 --listen 127.0.0.1:%d --http-listen 127.0.0.1:%d --shards 64 "
             "--data-dir %s/data/dup --join 127.0.0.1:%d >%s/dup.log 2>&1",
             bin, C.base + 5, C.base + 105, C.dir, C.base, C.dir);
    int rc = system(cmd);
    cr_assert(WIFEXITED(rc) && WEXITSTATUS(rc) == 1, "a join as node-2 (a member of the config) exited with %d, "
              "not 1", rc);
    h_cluster_stop_all(&C);
}
