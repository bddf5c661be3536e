/* Integration: issue 9 part 2 on a real 3-node raft group with one gate (64 shards, the demo's
 * SimpleCounter, on_write), real processes, kill -9, no mocks:
 * - activation on first call: 1000 concurrent first calls (10 at once per id) to 100 never-created ids
 *   are all served, each id's `created` hook ran exactly once in the whole cluster (its node.log line),
 *   and every Increment ran exactly once (the final values);
 * - idle deactivation: counters idle longer than their idle_timeout_ms leave every node (metrics say
 *   why), and the next call reactivates them with their value;
 * - durable reminders (the demo's Alarm): a periodic reminder fires on the owner, keeps firing after its
 *   shard moved and after a whole-cluster restart, once per due time (no due time twice, all on the
 *   period's grid); on the new owner a reminder set after the move fires once and one cleared before
 *   its due time never fires (the scheduler follows each object's change, not a re-read of all); a
 *   one-shot reminder that fell due while the cluster was down fires once after it;
 * - kill -9 at random instants under load with call ids: every operation is retried with its id until
 *   acknowledged, and each counter's final value is exactly its number of operations (no loss, no
 *   double run);
 * - reliable calls: an Increment sent twice with the same X-Cverse-Call-Id runs once; sent again after
 *   kill -9 of the owner, the new owner answers it from the record committed with the state (still
 *   runs once); `cverse call --call-id` does the same from the CLI, and over the native protocol.
 */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define READY_MS 30000
#define TTL_MS 1000

static struct h_cluster C;

static void teardown(void)
{
    if (C.dir[0]) h_cluster_destroy(&C);
}

TestSuite(reliable, .fini = teardown, .timeout = 300);

static void start_ex(const char *extra)
{
    struct h_opts o = {.gates = 1, .config_extra = extra};
    h_cluster_init_ex(&C, 3, 3, TTL_MS, &o);
    for (int i = 0; i < 3; i++) h_node_start(&C, i);
    h_gate_start(&C, 0);
    cr_assert(h_poll(READY_MS, h_all_ready, &C), "nodes and gate did not become ready");
    /* no shard moves during a test (a move deactivates objects too: the idle test counts its own) */
    cr_assert(h_poll(READY_MS, h_shards_settled, &C), "the shard map did not settle");
}

static void start(void)
{
    start_ex(NULL);
}

static size_t collect(char *p, size_t sz, size_t n, void *ud)
{
    char **buf = ud;
    size_t old = *buf ? strlen(*buf) : 0, add = sz * n;
    char *b = realloc(*buf, old + add + 1);
    if (!b) return 0;
    memcpy(b + old, p, add);
    b[old + add] = '\0';
    *buf = b;
    return add;
}

/* POSTs a SimpleCounter call to the gate with an optional X-Cverse-Call-Id; the response's value, or
 * -1 (*st: the HTTP status, 0 if unreachable). */
static long long counter_call(const char *id, const char *method, const char *call_id, long *st)
{
    char url[512], hdr[200];
    char *eid = curl_easy_escape(NULL, id, 0);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/api/v1/objects/call/SimpleCounter/%s/%s?timeout_ms=10000",
             h_gate_http_port(&C, 0), eid, method);
    curl_free(eid);
    CURL *c = curl_easy_init();
    struct curl_slist *hs = curl_slist_append(NULL, "Content-Type: application/json");
    if (call_id) {
        snprintf(hdr, sizeof hdr, "X-Cverse-Call-Id: %s", call_id);
        hs = curl_slist_append(hs, hdr);
    }
    char *body = NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "{\"request\":{}}");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    *st = 0;
    if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, st);
    curl_slist_free_all(hs);
    curl_easy_cleanup(c);
    long long val = -1;
    json_t *j = body && *st == 200 ? json_loads(body, 0, NULL) : NULL;
    if (j) {
        json_t *v = json_object_get(json_object_get(j, "response"), "value");
        val = json_is_string(v) ? atoll(json_string_value(v)) : v ? json_integer_value(v) : 0;
        json_decref(j);
    }
    if (*st != 200) fprintf(stderr, "%s.%s (%s) -> %ld: %s\n", id, method, call_id ? call_id : "-", *st,
                            body ? body : "");
    free(body);
    return val;
}

/* Repeats a call until it is served (failover under way), within 20 s. */
static long long served(const char *id, const char *method, const char *call_id)
{
    long st = 0;
    long long v = -1;
    for (int k = 0; k < 200 && (v = counter_call(id, method, call_id, &st)) < 0; k++) usleep(100 * 1000);
    cr_assert_geq(v, 0, "%s.%s (%s) never served (HTTP %ld)", id, method, call_id ? call_id : "-", st);
    return v;
}

/* How many lines of the nodes' logs contain needle. */
static int log_count(const char *needle)
{
    int n = 0;
    char path[400], line[2048];
    for (int i = 0; i < C.n; i++) {
        snprintf(path, sizeof path, "%s/%s.log", C.dir, C.id[i]);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        while (fgets(line, sizeof line, f)) n += strstr(line, needle) != NULL;
        fclose(f);
    }
    return n;
}

/* ---------------------------------------------------------------- first calls */

#define F_IDS 100
#define F_PER_ID 10
#define F_THREADS 100

struct fthread {
    pthread_t th;
    int t, ok, fail;
};

/* Thread t makes F_PER_ID calls: round j goes to id (t % 10) * 10 + j, so every id gets its 10 calls
 * from 10 threads at about the same time (the race the test is about). */
static void *first_run(void *arg)
{
    struct fthread *f = arg;
    for (int j = 0; j < F_PER_ID; j++) {
        char id[32];
        long st;
        snprintf(id, sizeof id, "fc-%03d", (f->t % 10) * 10 + j);
        if (counter_call(id, "Increment", NULL, &st) > 0) f->ok++;
        else f->fail++;
    }
    return NULL;
}

Test(reliable, racing_first_calls_create_each_object_once)
{
    start();
    static struct fthread th[F_THREADS];
    for (int t = 0; t < F_THREADS; t++) {
        th[t] = (struct fthread){.t = t};
        cr_assert_eq(pthread_create(&th[t].th, NULL, first_run, &th[t]), 0);
    }
    int ok = 0, fail = 0;
    for (int t = 0; t < F_THREADS; t++) {
        pthread_join(th[t].th, NULL);
        ok += th[t].ok;
        fail += th[t].fail;
    }
    cr_assert_eq(ok, F_IDS * F_PER_ID, "%d first calls served, %d failed", ok, fail);
    char needle[64];
    for (int k = 0; k < F_IDS; k++) {
        char id[32];
        snprintf(id, sizeof id, "fc-%03d", k);
        cr_expect_eq(served(id, "GetValue", NULL), F_PER_ID, "%s: every Increment ran once", id);
        snprintf(needle, sizeof needle, "SimpleCounter %s created", id);
        cr_expect_eq(log_count(needle), 1, "%s: its created hook ran %d times", id, log_count(needle));
    }
    /* later calls pay nothing extra: the object exists, no CreateObject more */
    long st;
    cr_assert_eq(counter_call("fc-000", "Increment", NULL, &st), F_PER_ID + 1);
    cr_expect_eq(log_count("SimpleCounter fc-000 created"), 1);
}

/* ---------------------------------------------------------------- reliable calls */

static long long cli_value(const char *out)
{
    const char *v = strstr(out, "\"value\"");
    cr_assert_not_null(v, "no value in: %s", out);
    v += 7;
    while (*v && (*v == ':' || *v == ' ' || *v == '"')) v++;
    return atoll(v);
}

Test(reliable, a_repeated_call_id_runs_once_also_at_a_new_owner_after_kill9)
{
    start();
    const char *id = "shard#7/rel-1";
    long st;
    cr_assert_eq(counter_call(id, "Increment", "op-1", &st), 1, "first run (HTTP %ld)", st);
    cr_assert_eq(counter_call(id, "Increment", "op-1", &st), 1, "the same id: the recorded answer");
    cr_assert_eq(counter_call(id, "Increment", "op-2", &st), 2, "another id runs");
    cr_assert_eq(counter_call(id, "GetValue", NULL, &st), 2);

    /* kill -9 the owner: the new owner loads the state and the ids committed with it */
    char owner[32];
    h_shard_owner(&C, 0, 7, owner, sizeof owner);
    int k = h_index_of(&C, owner);
    cr_assert_geq(k, 0, "owner of shard 7: '%s'", owner);
    h_node_signal(&C, k, SIGKILL);
    cr_assert_eq(served(id, "Increment", "op-1"), 1, "op-1 at the new owner: recorded, not run");
    cr_assert_eq(served(id, "Increment", "op-2"), 2, "op-2 at the new owner: recorded, not run");
    cr_assert_eq(served(id, "GetValue", NULL), 2, "neither ran again");
    char now[32];
    h_shard_owner(&C, (k + 1) % 3, 7, now, sizeof now);
    cr_expect_str_neq(now, owner, "the shard moved away from the killed node");
    cr_assert_eq(served(id, "Increment", "op-3"), 3);

    /* the CLI: cverse call --call-id, twice */
    char args[512];
    int code;
    snprintf(args, sizeof args, "call --gate 127.0.0.1:%d --call-id cli-1 SimpleCounter '%s' Increment",
             h_gate_grpc_port(&C, 0), id);
    char *out = h_cli(args, &code);
    cr_assert_eq(code, 0, "cverse call: %s", out);
    cr_assert_eq(cli_value(out), 4, "%s", out);
    free(out);
    out = h_cli(args, &code);
    cr_assert_eq(code, 0, "cverse call again: %s", out);
    cr_assert_eq(cli_value(out), 4, "the recorded answer: %s", out);
    free(out);
    cr_assert_eq(served(id, "GetValue", NULL), 4);
    h_node_start(&C, k); /* the harness checks the activation log at teardown with every node up */
    cr_assert(h_poll(READY_MS, h_all_ready, &C), "the killed node did not come back");
}

/* ---------------------------------------------------------------- idle deactivation */

static bool active_anywhere(const char *id)
{
    char path[256];
    char *eid = curl_easy_escape(NULL, id, 0);
    snprintf(path, sizeof path, "/v1/objects/SimpleCounter/%s", eid);
    curl_free(eid);
    for (int i = 0; i < C.n; i++) {
        long st;
        json_t *j = h_get_json(&C, i, path, &st);
        json_decref(j);
        if (st == 200) return true;
    }
    return false;
}

static bool all_idle(void *arg)
{
    char id[32];
    for (int k = 0; k < 8; k++) {
        snprintf(id, sizeof id, "idle-%d", k);
        if (active_anywhere(id)) return false;
    }
    return true;
}

/* The sum over the nodes of a /metrics sample line "name{labels} value". */
static long long metric_sum(const char *sample)
{
    long long sum = 0;
    for (int i = 0; i < C.n; i++) {
        long st;
        char *m = h_get_text(&C, i, "/metrics", &st);
        const char *p = m ? strstr(m, sample) : NULL;
        if (p) sum += atoll(p + strlen(sample) + 1);
        free(m);
    }
    return sum;
}

Test(reliable, idle_counters_are_deactivated_and_come_back_with_their_values)
{
    start_ex("object_types: {SimpleCounter: {persist: periodic, save_interval_ms: 600000, idle_timeout_ms: 600}}\n");
    char id[32];
    for (int k = 0; k < 8; k++) {
        snprintf(id, sizeof id, "idle-%d", k);
        for (int r = 0; r <= k; r++) served(id, "Increment", NULL);
    }
    /* Whether a counter is still active now depends on how fast this machine is (600 ms idle):
     * count activations instead, each counter's first call activated it once. */
    long long act0 = metric_sum("cverse_object_activations_total{reason=\"call\"}");
    cr_assert_geq(act0 + metric_sum("cverse_object_activations_total{reason=\"created\"}"), 8,
                  "the first calls activated the counters");
    /* periodic with a 10 min interval: only the deactivation's own save keeps the values */
    cr_assert(h_poll(15000, all_idle, NULL), "idle counters stayed active");
    cr_assert_geq(metric_sum("cverse_object_deactivations_total{reason=\"idle\"}"), 8);
    for (int k = 0; k < 8; k++) {
        snprintf(id, sizeof id, "idle-%d", k);
        cr_expect_eq(served(id, "GetValue", NULL), k + 1, "%s after its idle deactivation", id);
    }
    cr_assert_geq(metric_sum("cverse_object_activations_total{reason=\"call\"}"), act0 + 8,
                  "reactivated by calls");
}

/* ---------------------------------------------------------------- durable reminders */

/* POSTs an Alarm call with a JSON request; the response object (a new reference) or NULL. */
static json_t *alarm_call(const char *id, const char *method, const char *req)
{
    char path[512], body[512];
    char *eid = curl_easy_escape(NULL, id, 0);
    snprintf(path, sizeof path, "/api/v1/objects/call/Alarm/%s/%s?timeout_ms=10000", eid, method);
    curl_free(eid);
    snprintf(body, sizeof body, "{\"request\":%s}", req);
    long st;
    char *t = h_post(h_gate_http_port(&C, 0), path, body, strlen(body), &st);
    json_t *j = t && st == 200 ? json_loads(t, 0, NULL) : NULL;
    free(t);
    json_t *r = j ? json_incref(json_object_get(j, "response")) : NULL;
    json_decref(j);
    return r;
}

/* The due times alarm id fired for (up to 256); -1 if it did not answer. */
static int fired_of(const char *id, unsigned long long *dues)
{
    json_t *r = alarm_call(id, "Get", "{}");
    if (!r) return -1;
    json_t *a = json_object_get(r, "fired"), *v;
    size_t k;
    int n = 0;
    json_array_foreach(a, k, v) if (n < 256) dues[n++] = strtoull(json_string_value(v), NULL, 10);
    json_decref(r);
    return n;
}

struct want_fired {
    const char *id;
    int n;
};

static bool fired_at_least(void *arg)
{
    struct want_fired *w = arg;
    unsigned long long d[256];
    return fired_of(w->id, d) >= w->n;
}

/* Every due time once, in order, on the period's grid from the first one. */
static int check_grid(const char *id, unsigned long long period, const char *when)
{
    unsigned long long d[256];
    int n = fired_of(id, d);
    cr_assert_geq(n, 1, "%s: %s: nothing fired", id, when);
    for (int i = 1; i < n; i++) {
        cr_assert_gt(d[i], d[i - 1], "%s: %s: due time %llu fired twice or out of order", id, when, d[i]);
        cr_assert_eq((d[i] - d[0]) % period, 0, "%s: %s: %llu is off the grid", id, when, d[i]);
    }
    return n;
}

static void admin_move(int shard, int to)
{
    char body[128];
    snprintf(body, sizeof body, "{\"shard\":%d,\"node\":\"%s\"}", shard, C.id[to]);
    long st;
    char *t = h_post(C.base + 100, "/v1/admin/shards/move", body, strlen(body), &st);
    cr_assert_eq(st, 200, "move: %ld: %s", st, t ? t : "");
    free(t);
}

#define A_PERIOD 400

Test(reliable, reminders_fire_once_per_due_time_after_a_move_and_a_restart)
{
    start();
    const char *id = "shard#9/alarm-1";
    json_t *r = alarm_call(id, "Set", "{\"name\":\"tick\",\"dueInMs\":\"200\",\"periodMs\":\"400\"}");
    cr_assert_not_null(r, "Alarm.Set failed");
    json_decref(r);
    struct want_fired w = {id, 3};
    cr_assert(h_poll(10000, fired_at_least, &w), "the reminder did not fire 3 times");
    int n = check_grid(id, A_PERIOD, "on its first owner");

    char owner[32];
    h_shard_owner(&C, 0, 9, owner, sizeof owner);
    int from = h_index_of(&C, owner), to = (from + 1) % 3;
    admin_move(9, to);
    struct h_owned o = {&C, 9, C.id[to]};
    cr_assert(h_poll(15000, h_shard_owned_everywhere, &o), "shard 9 did not move");
    w.n = n + 3;
    cr_assert(h_poll(10000, fired_at_least, &w), "the reminder stopped after the move");
    n = check_grid(id, A_PERIOD, "after the move");

    /* Reminders set and cleared on the new owner: the scheduler learns each change from the applied save
     * that carried it (it re-reads that object's record only): one set after the move fires once, one
     * cleared before its due time never fires. */
    const char *late = "shard#9/alarm-3", *gone = "shard#9/alarm-4";
    r = alarm_call(late, "Set", "{\"name\":\"soon\",\"dueInMs\":\"300\"}");
    cr_assert_not_null(r, "Alarm.Set on the new owner failed");
    json_decref(r);
    r = alarm_call(gone, "Set", "{\"name\":\"never\",\"dueInMs\":\"700\"}");
    cr_assert_not_null(r);
    json_decref(r);
    r = alarm_call(gone, "Clear", "{\"name\":\"never\"}");
    cr_assert(r && json_is_true(json_object_get(r, "cleared")));
    json_decref(r);
    struct want_fired w3 = {late, 1};
    cr_assert(h_poll(5000, fired_at_least, &w3), "a reminder set on the new owner did not fire");
    usleep(1200 * 1000); /* would the cleared one fire, or the one-shot again? (a negative check) */
    unsigned long long d3[256];
    cr_assert_eq(fired_of(late, d3), 1, "the one-shot reminder set after the move fired once");
    cr_assert_eq(fired_of(gone, d3), 0, "a cleared reminder fired");

    /* a one-shot reminder due while the cluster is down */
    const char *once = "shard#9/alarm-2";
    r = alarm_call(once, "Set", "{\"name\":\"once\",\"dueInMs\":\"1500\"}");
    cr_assert_not_null(r);
    json_decref(r);
    h_cluster_stop_all(&C);
    usleep(2000 * 1000); /* the scenario: both reminders fall due while nothing runs (not a sync) */
    for (int i = 0; i < 3; i++) h_node_start(&C, i);
    h_gate_start(&C, 0);
    cr_assert(h_poll(READY_MS, h_all_ready, &C), "not ready after the restart");
    w.n = n + 3;
    cr_assert(h_poll(15000, fired_at_least, &w), "the reminder did not fire after the restart");
    check_grid(id, A_PERIOD, "after a whole-cluster restart");
    struct want_fired w2 = {once, 1};
    cr_assert(h_poll(15000, fired_at_least, &w2), "the one-shot reminder missed while down never fired");
    usleep(1500 * 1000); /* would it fire again? (a negative check needs a span of time) */
    unsigned long long d[256];
    cr_assert_eq(fired_of(once, d), 1, "the one-shot reminder fired once");
    r = alarm_call(id, "Clear", "{\"name\":\"tick\"}");
    cr_assert(r && json_is_true(json_object_get(r, "cleared")));
    json_decref(r);
}

/* ---------------------------------------------------------------- kill -9 with call ids: exact */

#define X_COUNTERS 8
#define X_THREADS 4

struct xload {
    pthread_t th;
    volatile bool run;
    int t;
    long long done[X_COUNTERS]; /* operations acknowledged (each retried with its id until it was) */
    long long retries;
};

static unsigned long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000ull + (unsigned long long)ts.tv_nsec / 1000000ull;
}

static void *xload_run(void *arg)
{
    struct xload *l = arg;
    char id[32], cid[64];
    while (l->run)
        for (int k = l->t; k < X_COUNTERS && l->run; k += X_THREADS) {
            snprintf(id, sizeof id, "xk-%d", k);
            snprintf(cid, sizeof cid, "xk-%d-op-%lld", k, l->done[k] + 1);
            long st;
            /* the same id until acknowledged, also after run turned false: none is left half-done */
            for (int a = 0; a < 600 && counter_call(id, "Increment", cid, &st) <= 0; a++) {
                l->retries++;
                usleep(50 * 1000);
            }
            l->done[k]++;
        }
    return NULL;
}

Test(reliable, kill9_under_load_with_call_ids_is_exact)
{
    start();
    static struct xload l[X_THREADS];
    for (int t = 0; t < X_THREADS; t++) {
        l[t] = (struct xload){.run = true, .t = t};
        cr_assert_eq(pthread_create(&l[t].th, NULL, xload_run, &l[t]), 0);
    }
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    fprintf(stderr, "kill9 with call ids: seed %u\n", seed);
    for (int round = 0; round < 2; round++) {
        unsigned long long until = mono_ms() + 300 + rand_r(&seed) % 1200; /* a random instant of the load */
        while (mono_ms() < until) usleep(20 * 1000);
        int v = (int)(rand_r(&seed) % 3);
        h_node_signal(&C, v, SIGKILL);
        until = mono_ms() + 500 + rand_r(&seed) % 1000; /* load flows around the dead node */
        while (mono_ms() < until) usleep(20 * 1000);
        h_node_start(&C, v);
        cr_assert(h_poll(READY_MS, h_all_ready, &C), "round %d: %s did not come back", round, C.id[v]);
    }
    for (int t = 0; t < X_THREADS; t++) l[t].run = false;
    long long ops = 0, retries = 0;
    for (int t = 0; t < X_THREADS; t++) pthread_join(l[t].th, NULL);
    for (int k = 0; k < X_COUNTERS; k++) {
        char id[32];
        snprintf(id, sizeof id, "xk-%d", k);
        long long want = l[k % X_THREADS].done[k];
        cr_expect_eq(served(id, "GetValue", NULL), want, "%s: final value = its acknowledged operations", id);
        ops += want;
    }
    for (int t = 0; t < X_THREADS; t++) retries += l[t].retries;
    fprintf(stderr, "kill9 with call ids: %lld operations, %lld retries, every counter exact\n", ops, retries);
}
