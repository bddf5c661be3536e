/* Integration: a real 3-node cluster and a gate with cluster.provider etcd against a real etcd started by the
 * test (docs/discovery.md).
 * - every node and the gate register <prefix>/nodes/<id> / <prefix>/gates/<id> under a lease; the raft
 *   leader writes <prefix>/leader; /metrics says cverse_etcd_up 1;
 * - kill -9 of a node: its key is gone within the TTL; a clean stop (SIGTERM): gone at once;
 * - etcd killed and restarted mid-run: calls through the gate never fail, /metrics says cverse_etcd_up 0
 *   meanwhile, registrations are there again afterwards;
 * - a node whose id is held in etcd by another live process (another address) exits 1, "duplicate id".
 * Polls with deadlines; never sleeps as synchronisation. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <time.h>

#include "discovery/codec.h"
#include "harness.h"

#define READY_MS 30000
#define TTL_MS 3000
#define PREFIX "/cvt"

static struct h_cluster C;
static struct h_etcd E;

static void teardown(void)
{
    h_cluster_destroy(&C);
    h_etcd_stop(&E);
}

TestSuite(etcd_cluster, .fini = teardown, .timeout = 300);

/* ---- reading etcd --------------------------------------------------------------------------------------- */

/* The value of key ("" when absent, NULL when no member answered); owned by the caller. */
static char *etcd_value(const char *key)
{
    char *body = cv_etcd_enc_range_key(key);
    for (int i = 0; i < E.n; i++) {
        if (E.pid[i] <= 0) continue;
        long st = 0;
        char *t = h_post(E.client_port[i], "/v3/kv/range", body, strlen(body), &st);
        struct cv_etcd_reply r;
        if (st == 200 && t && !cv_etcd_parse(t, strlen(t), &r)) {
            char *v = strdup(r.n_kvs ? r.kvs[0].value : "");
            cv_etcd_reply_free(&r);
            free(t);
            free(body);
            return v;
        }
        free(t);
    }
    free(body);
    return NULL;
}

struct want {
    const char *key;
    const char *has; /* NULL: the key must be absent */
};

static bool key_is(void *arg)
{
    struct want *w = arg;
    char *v = etcd_value(w->key);
    bool ok = v && (w->has ? *v && strstr(v, w->has) : !*v);
    free(v);
    return ok;
}

static bool registered(const char *kind, const char *id, unsigned ms)
{
    char key[128];
    snprintf(key, sizeof key, PREFIX "/%s/%s", kind, id);
    struct want w = {key, "\"incarnation\""};
    return h_poll(ms, key_is, &w);
}

static bool gone(const char *kind, const char *id, unsigned ms)
{
    char key[128];
    snprintf(key, sizeof key, PREFIX "/%s/%s", kind, id);
    struct want w = {key, NULL};
    return h_poll(ms, key_is, &w);
}

/* cverse_etcd_up's value on node i's /metrics, or the gate's for i = -1 (-1 when absent). */
static int etcd_up(int i)
{
    long st;
    char *t = i < 0 ? h_get_port(h_gate_http_port(&C, 0), "/metrics", &st) : h_get_text(&C, i, "/metrics", &st);
    int v = -1;
    char *p = t ? strstr(t, "\ncverse_etcd_up ") : NULL;
    if (p) v = atoi(p + strlen("\ncverse_etcd_up "));
    free(t);
    return v;
}

struct up_arg {
    int node, want;
};

static bool up_is(void *arg)
{
    struct up_arg *u = arg;
    return etcd_up(u->node) == u->want;
}

static void start_cluster(void)
{
    h_etcd_start(&E, 1);
    struct h_opts o = {.gates = 1};
    h_cluster_init_ex(&C, 3, 3, 1000, &o);
    h_config_etcd(&C, &E, PREFIX, TTL_MS);
    for (int i = 0; i < 3; i++) h_node_start(&C, i);
    h_gate_start(&C, 0);
    cr_assert(h_poll(READY_MS, h_all_ready, &C), "nodes and gate did not become ready");
}

/* ---- tests ---------------------------------------------------------------------------------------------- */

Test(etcd_cluster, register_leader_and_expiry)
{
    start_cluster();
    for (int i = 0; i < 3; i++) cr_assert(registered("nodes", C.id[i], 10000), "%s not registered", C.id[i]);
    cr_assert(registered("gates", "gate-1", 10000), "gate-1 not registered");
    char *v = etcd_value(PREFIX "/nodes/node-2");
    cr_assert(strstr(v, "\"role\":\"node\"") && strstr(v, "\"raft\":") && strstr(v, "\"version\":"), "%s", v);
    free(v);
    char leader[64] = "", want[96];
    h_leader_of(&C, 0, leader, sizeof leader);
    cr_assert(leader[0], "no raft leader");
    snprintf(want, sizeof want, "\"node\":\"%s\"", leader);
    struct want lw = {PREFIX "/leader", want};
    cr_assert(h_poll(10000, key_is, &lw), "%s/leader does not name %s", PREFIX, leader);
    struct up_arg u = {0, 1};
    cr_assert(h_poll(5000, up_is, &u), "cverse_etcd_up is %d, not 1", etcd_up(0));
    struct up_arg gu = {-1, 1};
    cr_assert(h_poll(5000, up_is, &gu), "the gate's cverse_etcd_up is %d, not 1", etcd_up(-1));
    /* kill -9: no revoke; the lease expires within the TTL (+ etcd's own check interval). */
    int victim = h_index_of(&C, leader) == 2 ? 1 : 2;
    unsigned long long t0 = h_now_ms();
    h_node_signal(&C, victim, SIGKILL);
    cr_assert(gone("nodes", C.id[victim], TTL_MS + 2000), "%s still registered %llu ms after kill -9",
              C.id[victim], h_now_ms() - t0);
    /* A clean stop revokes its lease: gone at once (well before the TTL). */
    h_cluster_stop_all(&C);
    cr_assert(gone("gates", "gate-1", 1000), "gate-1 still registered after a clean stop");
    for (int i = 0; i < 3; i++) cr_assert(gone("nodes", C.id[i], 1000), "%s registered after a clean stop", C.id[i]);
}

Test(etcd_cluster, etcd_restart_mid_run)
{
    start_cluster();
    for (int i = 0; i < 3; i++) cr_assert(registered("nodes", C.id[i], 10000));
    long st;
    int calls = 0, failed = 0;
    h_etcd_kill(&E, 0);
    struct up_arg u = {1, 0};
    /* Calls flow while etcd is down and the nodes notice it. */
    unsigned long long until = h_now_ms() + 2 * TTL_MS;
    while (h_now_ms() < until || !up_is(&u)) {
        char id[32];
        snprintf(id, sizeof id, "etcd-down-%d", calls % 16);
        calls++;
        if (h_increment_within(&C, id, 5000, &st) < 0) failed++;
        cr_assert(h_now_ms() < until + 20000, "cverse_etcd_up never went to 0");
    }
    cr_assert_eq(failed, 0, "%d of %d calls failed with etcd down", failed, calls);
    struct up_arg gu = {-1, 0};
    cr_assert(h_poll(2 * TTL_MS, up_is, &gu), "the gate's cverse_etcd_up is %d with etcd down", etcd_up(-1));
    h_etcd_restart(&E, 0);
    u.want = 1;
    cr_assert(h_poll(20000, up_is, &u), "cverse_etcd_up not back to 1");
    for (int i = 0; i < 3; i++) cr_assert(registered("nodes", C.id[i], 20000), "%s not registered again", C.id[i]);
    cr_assert(registered("gates", "gate-1", 20000), "gate-1 not registered again");
    for (int k = 0; k < 16; k++) {
        char id[32];
        snprintf(id, sizeof id, "etcd-down-%d", k);
        cr_assert_gt(h_increment_within(&C, id, 5000, &st), 0, "call after etcd came back: %ld", st);
    }
}

Test(etcd_cluster, duplicate_id_is_a_start_error)
{
    h_etcd_start(&E, 1);
    struct h_opts o = {0};
    h_cluster_init_ex(&C, 1, 1, 1000, &o);
    h_config_etcd(&C, &E, PREFIX, TTL_MS);
    /* Another live process holds node-1: a lease kept for the whole test, another address. */
    long st;
    char *t = h_post(E.client_port[0], "/v3/lease/grant", "{\"TTL\":\"300\"}", 13, &st);
    struct cv_etcd_reply r;
    cr_assert(st == 200 && t && !cv_etcd_parse(t, strlen(t), &r) && r.id, "lease grant: %s", t ? t : "");
    free(t);
    char *body = cv_etcd_enc_put(PREFIX "/nodes/node-1", "{\"advertise\":\"10.9.9.9:1\",\"incarnation\":\"x\"}", r.id);
    t = h_post(E.client_port[0], "/v3/kv/put", body, strlen(body), &st);
    cr_assert_eq(st, 200, "put: %s", t ? t : "");
    free(t);
    free(body);
    h_node_start(&C, 0);
    int status = 0;
    unsigned long long until = h_now_ms() + 20000;
    while (waitpid(C.pid[0], &status, WNOHANG) == 0) {
        cr_assert(h_now_ms() < until, "node-1 still running with its id held by another process");
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL); /* poll interval: waitpid decides */
    }
    C.pid[0] = 0;
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 1, "exit status %d", status);
    char log[400];
    snprintf(log, sizeof log, "%s/node-1.log", C.dir);
    FILE *f = fopen(log, "r");
    cr_assert_not_null(f);
    char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    cr_assert(strstr(buf, "duplicate id"), "no duplicate id message in the log");
    char *v = etcd_value(PREFIX "/nodes/node-1");
    cr_assert(v && strstr(v, "10.9.9.9:1"), "the other process' key was overwritten: %s", v ? v : "");
    free(v);
}

/* ---- the flag form -------------------------------------------------------------------------------------- */

static pid_t spawn_flags_gate(int grpc_port, int http_port, const char *log)
{
    const char *bin = getenv("CVERSE_GATE_BIN");
    cr_assert_not_null(bin);
    char listen[32], http[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", grpc_port);
    snprintf(http, sizeof http, "127.0.0.1:%d", http_port);
    char *argv[] = {(char *)bin, "--etcd", E.endpoints, "--etcd-prefix", PREFIX, "--listen", listen,
                    "--http-listen", http, NULL};
    return h_spawn(log, argv);
}

struct port_ready {
    int port;
};

static bool http_ready(void *arg)
{
    long st = 0;
    free(h_get_port(((struct port_ready *)arg)->port, "/ready", &st));
    return st == 200;
}

Test(etcd_cluster, gate_with_only_etcd_routes)
{
    start_cluster();
    for (int i = 0; i < 3; i++) cr_assert(registered("nodes", C.id[i], 10000));
    /* Only node-1 in etcd (as while the others are still starting): the gate gets every member from it. */
    for (int i = 1; i < 3; i++) {
        char key[64], *body;
        long st;
        snprintf(key, sizeof key, PREFIX "/nodes/%s", C.id[i]);
        body = cv_etcd_enc_delete(key);
        free(h_post(E.client_port[0], "/v3/kv/deleterange", body, strlen(body), &st));
        free(body);
        cr_assert_eq(st, 200);
    }
    /* Free ports next to the cluster's: the harness's gate-2 slots (this cluster has one gate). */
    int grpc = h_gate_grpc_port(&C, 1), http = h_gate_http_port(&C, 1);
    char log[400], id[64];
    snprintf(log, sizeof log, "%s/flag-gate.log", C.dir);
    pid_t pid = spawn_flags_gate(grpc, http, log);
    struct port_ready pr = {http};
    bool ready = h_poll(READY_MS, http_ready, &pr);
    if (!ready) kill(pid, SIGKILL), waitpid(pid, NULL, 0);
    cr_assert(ready, "the flag-form gate did not become ready (log %s)", log);
    snprintf(id, sizeof id, "gate-127.0.0.1-%d", grpc);
    cr_assert(registered("gates", id, 10000), "the flag-form gate did not register as %s", id);
    int failed = 0;
    for (int k = 0; k < 32; k++) {
        char path[160];
        long st;
        snprintf(path, sizeof path, "/api/v1/objects/call/SimpleCounter/flag-%d/Increment?timeout_ms=5000", k);
        char *t = h_post(http, path, "{\"request\":{}}", 14, &st);
        if (h_response_value(t, st) != 1) failed++;
    }
    int status = 0;
    kill(pid, SIGTERM);
    waitpid(pid, &status, 0);
    cr_assert_eq(failed, 0, "%d of 32 calls through the flag-form gate failed", failed);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "flag-form gate exit status %d", status);
    cr_assert(gone("gates", id, 1000), "the flag-form gate's key outlived its clean stop");
}

/* ---- etcd absent at start; the leader key across a failover ---------------------------------------------- */

Test(etcd_cluster, starts_without_etcd_and_registers_later)
{
    h_etcd_start(&E, 1);
    h_etcd_kill(&E, 0); /* the endpoint exists in the config, nothing answers there */
    struct h_opts o = {.gates = 1};
    h_cluster_init_ex(&C, 3, 3, 1000, &o);
    h_config_etcd(&C, &E, PREFIX, TTL_MS);
    for (int i = 0; i < 3; i++) h_node_start(&C, i);
    h_gate_start(&C, 0);
    cr_assert(h_poll(READY_MS, h_all_ready, &C), "the cluster did not become ready without etcd");
    long st;
    cr_assert_eq(h_increment_within(&C, "no-etcd", 5000, &st), 1, "a call without etcd: HTTP %ld", st);
    struct up_arg u = {0, 0};
    cr_assert(up_is(&u), "cverse_etcd_up is %d without etcd", etcd_up(0));
    h_etcd_restart(&E, 0);
    for (int i = 0; i < 3; i++) cr_assert(registered("nodes", C.id[i], 20000), "%s never registered", C.id[i]);
    cr_assert(registered("gates", "gate-1", 20000), "gate-1 never registered");
    struct want lw = {PREFIX "/leader", "\"node\":\"node-"};
    cr_assert(h_poll(20000, key_is, &lw), "no leader key once etcd came up");
}

/* The term in the leader key's value (0 when absent). */
static unsigned long long leader_term(char *node, size_t len)
{
    char *v = etcd_value(PREFIX "/leader");
    json_t *j = v ? json_loads(v, 0, NULL) : NULL;
    const char *t = json_string_value(json_object_get(j, "term"));
    const char *n = json_string_value(json_object_get(j, "node"));
    unsigned long long term = t ? strtoull(t, NULL, 10) : 0;
    snprintf(node, len, "%s", n ? n : "");
    json_decref(j);
    free(v);
    return term;
}

struct newer {
    unsigned long long than;
    const char *not_node;
};

static bool leader_newer(void *arg)
{
    struct newer *w = arg;
    char node[64];
    return leader_term(node, sizeof node) > w->than && strcmp(node, w->not_node) != 0;
}

Test(etcd_cluster, leader_key_follows_a_failover)
{
    start_cluster();
    char leader[64] = "", want[96], node[64];
    h_leader_of(&C, 0, leader, sizeof leader);
    snprintf(want, sizeof want, "\"node\":\"%s\"", leader);
    struct want lw = {PREFIX "/leader", want};
    cr_assert(h_poll(10000, key_is, &lw), "%s/leader does not name %s", PREFIX, leader);
    unsigned long long term = leader_term(node, sizeof node);
    cr_assert_gt(term, 0);
    h_node_signal(&C, h_index_of(&C, leader), SIGKILL);
    struct newer w = {term, leader};
    cr_assert(h_poll(20000, leader_newer, &w), "the leader key still names %s (term %llu) after its kill -9",
              leader, term);
}
