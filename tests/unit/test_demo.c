/* Unit tests of src/demo: the four demo types driven through a real cv_runtime on a libuv loop, the pure
 * helpers directly, and the loadable module cverse-demo.so through dlopen (path in $CVERSE_DEMO_MODULE;
 * this executable exports its symbols for the module, as cverse-node does).
 *
 * Most tests give the runtime a minimal host (struct cv_host_hooks): a one-node cluster whose "catalog"
 * commits a create on the next loop iteration and then activates the object in the same runtime; the
 * process log (stderr, where cv_object_log writes) is captured so the demo README's log lines can be
 * checked (tests/log_capture.h). One test runs the bare
 * runtime (no hooks): the cluster services then answer CV_EUNAVAIL / 0. Waiting runs the loop until a
 * condition holds, with a deadline. */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "core/hash.h"
#include "cverse/error.h"
#include "cverse/object.h"
#include "demo/demo.h"
#include "log_capture.h"
#include "lsan_check.h"
#include "objects/runtime.h"
#include "sharding_demo.pb-c.h"
#include "util/log.h"

#define SHARDS 64
#define DEADLINE_MS 10000
#define MAX_CREATES 512

/* The in-test host: a one-node cluster. */
struct pending_create {
    char type[64], id[64];
    cv_host_done_cb cb;
    void *cb_data;
};

struct host {
    bool split;      /* this node owns the even shards only (else every shard) */
    bool fail_first; /* the first create of each id fails (no raft leader yet, say) */
    struct pending_create q[MAX_CREATES];
    size_t nq;
    uv_idle_t commit; /* completes the queued creates on the next loop iteration */
    int creates;      /* create_object calls */
    char failed[MAX_CREATES][64];
    size_t n_failed;
};

static struct {
    uv_loop_t loop;
    uv_timer_t wake; /* bounds each uv_run while polling, so time-based conditions are re-checked */
    struct cv_runtime *rt;
    int closed;
    void *module; /* dlopen handle, closed after the runtime */
    struct host host;
} g;

static bool host_owns(void *data, uint32_t shard)
{
    return !g.host.split || shard % 2 == 0;
}

static bool failed_before(const char *id)
{
    struct host *h = &g.host;
    for (size_t i = 0; i < h->n_failed; i++)
        if (!strcmp(h->failed[i], id)) return true;
    snprintf(h->failed[h->n_failed++], sizeof h->failed[0], "%s", id);
    return false;
}

/* "Commit" every queued create, then activate the object where it lives (here) and report. */
static void host_commit(uv_idle_t *idle)
{
    struct host *h = &g.host;
    size_t n = h->nq;
    h->nq = 0;
    uv_idle_stop(idle);
    for (size_t i = 0; i < n; i++) {
        struct pending_create *c = &h->q[i];
        int rv = h->fail_first && !failed_before(c->id) ? CV_EUNAVAIL : 0;
        if (rv == 0) rv = cv_runtime_activate(g.rt, c->type, c->id, true);
        c->cb(c->cb_data, rv, rv ? cv_strerror(rv) : NULL);
    }
}

static int host_create(void *data, const char *type, const char *id, cv_host_done_cb cb, void *cb_data)
{
    struct host *h = &g.host;
    cr_assert_lt(h->nq, MAX_CREATES);
    struct pending_create *c = &h->q[h->nq++];
    snprintf(c->type, sizeof c->type, "%s", type);
    snprintf(c->id, sizeof c->id, "%s", id);
    c->cb = cb;
    c->cb_data = cb_data;
    h->creates++;
    uv_idle_start(&h->commit, host_commit);
    return 0;
}

static uint32_t host_node_shards(void *data) { return g.host.split ? SHARDS / 2 : SHARDS; }
static size_t host_cluster_nodes(void *data) { return 3; }
static size_t host_cluster_objects(void *data) { return 4242; }

static const struct cv_host_hooks hooks = {
    .create_object = host_create,
    .node_shards = host_node_shards,
    .cluster_nodes = host_cluster_nodes,
    .cluster_objects = host_cluster_objects,
};

/* How many log lines contain text (cv_object_log writes to the log; the demo suite captures it). */
static size_t logged(const char *text)
{
    return cv_log_capture_count_lines(text, 0);
}

static void start_runtime(bool with_demo, bool with_hooks)
{
    struct cv_runtime_opts o = {.node_id = "node-1", .shards = SHARDS, .owns = host_owns,
                                .hooks = with_hooks ? &hooks : NULL};
    cr_assert_eq(cv_runtime_init(&g.loop, &o, &g.rt), 0);
    if (with_demo) cr_assert_eq(cv_demo_register(cv_runtime_registry(g.rt)), 0);
}

static void wake_cb(uv_timer_t *t) {}

/* The wake timer runs for the whole test: polls nest (a condition may itself make a call and wait). */
static void init_loop(void)
{
    memset(&g, 0, sizeof g);
    cr_assert_eq(uv_loop_init(&g.loop), 0);
    uv_timer_init(&g.loop, &g.wake);
    uv_timer_start(&g.wake, wake_cb, 5, 5);
    uv_idle_init(&g.loop, &g.host.commit);
}

static void setup(void)
{
    cv_log_capture_start();
    init_loop();
    start_runtime(true, true);
    cv_runtime_start(g.rt);
}

static void setup_bare(void)
{
    init_loop();
    start_runtime(true, false);
    cv_runtime_start(g.rt);
}

static bool poll_until(bool (*cond)(void *), void *data, uint64_t ms)
{
    uint64_t deadline = cv_mono_ms() + ms;
    while (!cond(data) && cv_mono_ms() < deadline) uv_run(&g.loop, UV_RUN_ONCE);
    return cond(data);
}

static bool flag_set(void *data) { return *(int *)data != 0; }
static void closed_cb(struct cv_runtime *rt, void *data) { g.closed = 1; }
static void set_flag_cb(struct cv_runtime *rt, void *data) { *(int *)data = 1; }

static void teardown(void)
{
    if (g.rt) {
        cv_runtime_close(g.rt, closed_cb, NULL);
        cr_assert(poll_until(flag_set, &g.closed, DEADLINE_MS), "runtime close did not complete");
    }
    uv_close((uv_handle_t *)&g.wake, NULL);
    uv_close((uv_handle_t *)&g.host.commit, NULL);
    uv_run(&g.loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&g.loop), 0, "a handle was left open");
    if (g.module) dlclose(g.module);
    cv_log_capture_stop();
    cv_lsan_check();
}

TestSuite(demo, .init = setup, .fini = teardown);
TestSuite(demo_bare, .init = setup_bare, .fini = teardown);
TestSuite(demo_helpers, .fini = cv_lsan_check);

/* ---- calls ---- */

struct call {
    int done, status;
    char error[256];
    uint8_t *resp;
    size_t len;
};

static void call_cb(void *data, int status, const char *error, const uint8_t *resp, size_t len)
{
    struct call *c = data;
    c->status = status;
    snprintf(c->error, sizeof c->error, "%s", error ? error : "");
    c->resp = malloc(len ? len : 1);
    cr_assert_not_null(c->resp);
    memcpy(c->resp, resp, len);
    c->len = len;
    c->done = 1;
}

static int call_start(const char *type, const char *id, const char *method, const ProtobufCMessage *req,
                      struct call *c)
{
    uint8_t buf[256];
    size_t len = protobuf_c_message_pack(req, buf);
    memset(c, 0, sizeof *c);
    return cv_runtime_call(g.rt, type, id, method, buf, len, call_cb, c);
}

/* Calls and waits; returns the status; on 0 *out is the decoded response (free it with msg_free). */
static int call(const char *type, const char *id, const char *method, const ProtobufCMessage *req,
                const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **out)
{
    struct call c;
    int rv = call_start(type, id, method, req, &c);
    if (rv != 0) return rv;
    cr_assert(poll_until(flag_set, &c.done, DEADLINE_MS), "%s %s.%s did not complete", type, id, method);
    if (c.status == 0 && out) {
        *out = protobuf_c_message_unpack(resp_desc, NULL, c.len, c.resp);
        cr_assert_not_null(*out, "response of %s.%s does not decode", type, method);
    }
    free(c.resp);
    return c.status;
}

static void msg_free(void *m) { protobuf_c_message_free_unpacked(m, NULL); }

static int64_t increment(const char *id)
{
    ShardingDemo__IncrementRequest q = SHARDING_DEMO__INCREMENT_REQUEST__INIT;
    ProtobufCMessage *out = NULL;
    cr_assert_eq(call("SimpleCounter", id, "Increment", &q.base, &sharding_demo__increment_response__descriptor,
                      &out), 0);
    int64_t v = ((ShardingDemo__IncrementResponse *)out)->value;
    msg_free(out);
    return v;
}

static int64_t get_value(const char *id)
{
    ShardingDemo__GetValueRequest q = SHARDING_DEMO__GET_VALUE_REQUEST__INIT;
    ProtobufCMessage *out = NULL;
    cr_assert_eq(call("SimpleCounter", id, "GetValue", &q.base, &sharding_demo__get_value_response__descriptor,
                      &out), 0);
    int64_t v = ((ShardingDemo__GetValueResponse *)out)->value;
    msg_free(out);
    return v;
}

/* ---- SimpleCounter ---- */

Test(demo, counter_increments_and_reads)
{
    cr_expect_eq(get_value("SimpleCounter-Counter-001"), 0, "a new counter starts at 0");
    for (int64_t i = 1; i <= 5; i++) cr_expect_eq(increment("SimpleCounter-Counter-001"), i);
    cr_expect_eq(get_value("SimpleCounter-Counter-001"), 5);
    cr_expect_eq(increment("SimpleCounter-Counter-002"), 1, "counters are independent");
    cr_expect_eq(get_value("SimpleCounter-Counter-001"), 5);
}

/* Many increments queued at once run one at a time in arrival order: the i-th answer is i. */
Test(demo, counter_calls_run_in_order)
{
    enum { N = 200 };
    static struct call c[N];
    ShardingDemo__IncrementRequest q = SHARDING_DEMO__INCREMENT_REQUEST__INIT;
    for (int i = 0; i < N; i++) cr_assert_eq(call_start("SimpleCounter", "burst", "Increment", &q.base, &c[i]), 0);
    for (int i = 0; i < N; i++) {
        cr_assert(poll_until(flag_set, &c[i].done, DEADLINE_MS));
        cr_assert_eq(c[i].status, 0, "%s", c[i].error);
        ShardingDemo__IncrementResponse *r =
            sharding_demo__increment_response__unpack(NULL, c[i].len, c[i].resp);
        cr_assert_not_null(r);
        cr_expect_eq(r->value, i + 1, "answer %d is %lld", i, (long long)r->value);
        sharding_demo__increment_response__free_unpacked(r, NULL);
        free(c[i].resp);
    }
    cr_expect_eq(get_value("burst"), N);
}

Test(demo, unknown_method_and_wrong_request_are_refused)
{
    ShardingDemo__GetValueRequest q = SHARDING_DEMO__GET_VALUE_REQUEST__INIT;
    cr_expect_eq(call("SimpleCounter", "c", "Decrement", &q.base, NULL, NULL), CV_ENOTFOUND);
    cr_expect_eq(call("NoSuchType", "c", "GetValue", &q.base, NULL, NULL), CV_ENOTFOUND);
    /* A request that does not decode as the method's message is refused before it is queued. */
    struct call c;
    static const uint8_t junk[] = {0x0a, 0x05, 0x01}; /* field 1, length 5, but only 1 byte follows */
    cr_expect_eq(cv_runtime_call(g.rt, "SimpleCounter", "c", "Increment", junk, sizeof junk, call_cb, &c),
                 CV_EPROTO);
}

/* ---- ShardMonitor ---- */

static ShardingDemo__GetStatsResponse *shard_stats(const char *id)
{
    ShardingDemo__GetStatsRequest q = SHARDING_DEMO__GET_STATS_REQUEST__INIT;
    ProtobufCMessage *out = NULL;
    cr_assert_eq(call("ShardMonitor", id, "GetStats", &q.base, &sharding_demo__get_stats_response__descriptor,
                      &out), 0);
    return (ShardingDemo__GetStatsResponse *)out;
}

/* An id (other than the monitor's) in shard `shard`. */
static void id_in_shard(uint32_t shard, int nth, char *buf, size_t len)
{
    for (int i = 0;; i++) {
        snprintf(buf, len, "obj-%d", i);
        if (cv_shard_of(buf, SHARDS) == shard && nth-- == 0) return;
    }
}

Test(demo, shard_monitor_reports_its_shard_and_live_count)
{
    ShardingDemo__GetStatsResponse *s = shard_stats("shard#6/ShardMonitor");
    cr_expect_eq(s->shard_id, 6);
    cr_expect_eq(s->object_count, 1, "only the monitor itself is active in shard 6");
    msg_free(s);
    cr_expect_eq(logged("ShardMonitor created for shard 6"), 1);

    char id[32];
    for (int i = 0; i < 3; i++) {
        id_in_shard(6, i, id, sizeof id);
        increment(id);
    }
    id_in_shard(7, 0, id, sizeof id); /* another shard: not counted */
    increment(id);
    s = shard_stats("shard#6/ShardMonitor");
    cr_expect_eq(s->object_count, 4, "monitor + 3 counters, got %d", s->object_count);
    msg_free(s);

    s = shard_stats("shard#63/ShardMonitor");
    cr_expect_eq(s->shard_id, 63);
    msg_free(s);
    s = shard_stats("plain-monitor");
    cr_expect_eq(s->shard_id, -1, "an id without shard#N/ has no shard of its own (as in Goverse)");
    cr_expect_eq(s->object_count, 0);
    msg_free(s);
    cr_expect_eq(logged("ShardMonitor created for shard -1"), 1);
}

Test(demo, shard_monitor_accepts_reported_counts)
{
    ShardingDemo__UpdateObjectCountRequest q = SHARDING_DEMO__UPDATE_OBJECT_COUNT_REQUEST__INIT;
    q.count = 42;
    ProtobufCMessage *out = NULL;
    cr_assert_eq(call("ShardMonitor", "shard#7/ShardMonitor", "UpdateObjectCount", &q.base,
                      &sharding_demo__update_object_count_response__descriptor, &out), 0);
    cr_expect_eq(out->descriptor, &sharding_demo__update_object_count_response__descriptor);
    msg_free(out);
    ShardingDemo__GetStatsResponse *s = shard_stats("shard#7/ShardMonitor");
    cr_expect_eq(s->shard_id, 7);
    msg_free(s);
}

/* ---- GlobalMonitor ---- */

/* Parses Go's duration format back to ns; -1 if s is not in it. */
static int64_t parse_go_duration(const char *s)
{
    static const struct {
        const char *unit;
        int64_t ns;
    } units[] = {{"h", 3600000000000LL}, {"m", 60000000000LL}, {"s", 1000000000LL},
                 {"ms", 1000000LL},      {"\xc2\xb5s", 1000LL}, {"ns", 1LL}};
    int64_t total = 0;
    if (!*s) return -1;
    while (*s) {
        char *end;
        double v = strtod(s, &end);
        if (end == s) return -1;
        size_t best = 0, best_len = 0;
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
            size_t l = strlen(units[i].unit);
            if (strncmp(end, units[i].unit, l) == 0 && l > best_len) best = i, best_len = l;
        }
        if (!best_len) return -1;
        total += (int64_t)(v * (double)units[best].ns + 0.5);
        s = end + best_len;
    }
    return total;
}

static int64_t uptime_ns(void)
{
    ShardingDemo__GetUptimeRequest q = SHARDING_DEMO__GET_UPTIME_REQUEST__INIT;
    ProtobufCMessage *out = NULL;
    cr_assert_eq(call("GlobalMonitor", "GlobalMonitor", "GetUptime", &q.base,
                      &sharding_demo__get_uptime_response__descriptor, &out), 0);
    const char *u = ((ShardingDemo__GetUptimeResponse *)out)->uptime;
    int64_t ns = parse_go_duration(u);
    cr_expect_geq(ns, 0, "uptime \"%s\" is not a Go duration", u);
    msg_free(out);
    return ns;
}

struct uptime_wait {
    int64_t first, last;
};

static bool uptime_passed(void *data)
{
    struct uptime_wait *w = data;
    w->last = uptime_ns();
    return w->last >= w->first + 20000000; /* 20 ms later */
}

Test(demo, global_monitor_uptime_grows_in_go_format)
{
    struct uptime_wait w = {uptime_ns(), 0};
    cr_expect_lt(w.first, 5000000000LL, "a fresh monitor has been up for less than 5 s");
    cr_assert(poll_until(uptime_passed, &w, DEADLINE_MS), "uptime stuck at %lld ns", (long long)w.last);
    cr_expect_lt(w.last, w.first + (int64_t)DEADLINE_MS * 1000000);
}

struct log_wait {
    const char *text;
    size_t n;
};

static bool logged_n(void *data)
{
    struct log_wait *w = data;
    return logged(w->text) >= w->n;
}

Test(demo, global_monitor_logs_creation_and_cluster_totals)
{
    setenv("CVERSE_DEMO_GLOBAL_LOG_MS", "20", 1);
    uptime_ns();
    /* "GlobalMonitor created at 2024-01-15T10:30:00Z" */
    cr_assert_eq(logged("GlobalMonitor created at "), 1);
    char line[256];
    cr_assert(cv_log_capture_last("GlobalMonitor created at ", line, sizeof line));
    int y, mo, d, h, mi, se, end = 0;
    cr_expect_eq(sscanf(line, "GlobalMonitor created at %4d-%2d-%2dT%2d:%2d:%2dZ%n", &y, &mo, &d, &h, &mi, &se,
                        &end), 6, "%s", line);
    cr_expect_eq((size_t)end, strlen(line), "%s", line);
    cr_expect_geq(y, 2024);

    struct log_wait w = {"Global Stats: Uptime=", 2};
    cr_assert(poll_until(logged_n, &w, DEADLINE_MS), "no periodic stats line");
    cr_expect_geq(logged("Global Stats: Uptime=0s, nodes=3, objects=4242"), 1, "totals come from the host");
}

/* ---- NodeMonitor ---- */
/* ---- NodeMonitor ---- */

static char *node_stats(const char *id)
{
    ShardingDemo__GetNodeStatsRequest q = SHARDING_DEMO__GET_NODE_STATS_REQUEST__INIT;
    ProtobufCMessage *out = NULL;
    int rv = call("NodeMonitor", id, "GetStats", &q.base, &sharding_demo__get_node_stats_response__descriptor,
                  &out);
    cr_assert_eq(rv, 0, "%s", cv_strerror(rv));
    char *status = strdup(((ShardingDemo__GetNodeStatsResponse *)out)->status);
    msg_free(out);
    return status;
}

Test(demo, node_monitor_reports_node_counts)
{
    char *st = node_stats("node-1/NodeMonitor");
    size_t objects;
    unsigned shards;
    int end = 0;
    cr_expect_eq(sscanf(st, "node node-1: %zu objects, %u shards%n", &objects, &shards, &end), 2, "status \"%s\"",
                 st);
    cr_expect_eq((size_t)end, strlen(st), "status \"%s\" has trailing text", st);
    free(st);
    /* Pinned to another node: the runtime refuses it here. */
    ShardingDemo__GetNodeStatsRequest q = SHARDING_DEMO__GET_NODE_STATS_REQUEST__INIT;
    cr_expect_eq(call("NodeMonitor", "node-2/NodeMonitor", "GetStats", &q.base, NULL, NULL), CV_EREDIRECT);
}

struct count_type {
    const char *type;
    size_t n;
};

static void count_visit(void *data, const struct cv_object_info *info)
{
    struct count_type *c = data;
    if (strcmp(info->type, c->type) == 0) c->n++;
}

static size_t active_of(const char *type)
{
    struct count_type c = {type, 0};
    cv_runtime_list(g.rt, count_visit, &c);
    return c.n;
}

struct scan_wait {
    size_t counters, scans;
};

static bool scans_done(void *data)
{
    struct scan_wait *w = data;
    return active_of("SimpleCounter") >= w->counters &&
           logged("NodeMonitor node-1/NodeMonitor: Scanning counter list for objects to create...") >= w->scans;
}

static bool owns_even(void *data, uint32_t shard) { return shard % 2 == 0; }

/* The node owns the even shards: its NodeMonitor creates exactly the counters hashing there, each once,
 * however many scans run, and logs the README's lines. */
Test(demo, node_monitor_creates_the_counters_of_its_shards_once)
{
    g.host.split = true;
    setenv("CVERSE_DEMO_SCAN_MS", "10", 1);
    unsigned ks[CV_DEMO_COUNTERS];
    size_t want = cv_demo_counters_owned(SHARDS, owns_even, NULL, ks);
    cr_assert(want > 10 && want < 90, "a split with %zu counters proves little", want);

    char *st = node_stats("node-1/NodeMonitor"); /* activates it */
    free(st);
    cr_expect_eq(logged("NodeMonitor node-1/NodeMonitor created, will periodically create counters"), 1);
    struct scan_wait w = {want, 5};
    cr_assert(poll_until(scans_done, &w, DEADLINE_MS), "%zu/%zu counters, %zu scans", active_of("SimpleCounter"),
              want, logged("Scanning counter list"));

    cr_expect_eq(active_of("SimpleCounter"), want);
    cr_expect_eq((size_t)g.host.creates, want, "each counter is created once, not once per scan");
    for (size_t i = 0; i < want; i++) {
        char id[32], line[96];
        cv_demo_counter_id(ks[i], id, sizeof id);
        snprintf(line, sizeof line, "Created counter %s (shard %u)", id, cv_shard_of(id, SHARDS));
        cr_expect_eq(logged(line), 1, "\"%s\" logged %zu times", line, logged(line));
        struct cv_object_info info;
        cr_expect_eq(cv_runtime_lookup(g.rt, id, &info), 0, "%s is not active", id);
    }
    char summary[96];
    snprintf(summary, sizeof summary, "NodeMonitor node-1/NodeMonitor: Created %zu new counters", want);
    cr_expect_eq(logged(summary), 1, "no \"%s\"", summary);

    /* GetStats: objects active here (counters + the monitor) and the shards this node owns. */
    st = node_stats("node-1/NodeMonitor");
    char expect[96];
    snprintf(expect, sizeof expect, "node node-1: %zu objects, %d shards", want + 1, SHARDS / 2);
    cr_expect_str_eq(st, expect);
    free(st);
}

/* Creations that fail (no leader yet, say) are retried on the next scan until they succeed. */
Test(demo, node_monitor_retries_failed_creations)
{
    g.host.fail_first = true;
    setenv("CVERSE_DEMO_SCAN_MS", "10", 1);
    free(node_stats("node-1/NodeMonitor"));
    struct scan_wait w = {CV_DEMO_COUNTERS, 3};
    cr_assert(poll_until(scans_done, &w, DEADLINE_MS), "%zu counters", active_of("SimpleCounter"));
    cr_expect_eq(g.host.creates, 2 * CV_DEMO_COUNTERS, "one failed and one successful create per counter");
    cr_expect_eq(logged("Created counter "), CV_DEMO_COUNTERS);
}

/* Without a host (a bare runtime) there is nobody to commit a creation: cv_object_create answers
 * CV_EUNAVAIL, scans create nothing, and the cluster totals are 0. The monitors keep answering. */
Test(demo_bare, cluster_services_unavailable)
{
    cv_log_capture_start();
    setenv("CVERSE_DEMO_SCAN_MS", "10", 1);
    setenv("CVERSE_DEMO_GLOBAL_LOG_MS", "10", 1);
    char *st = node_stats("node-1/NodeMonitor");
    cr_expect_str_eq(st, "node node-1: 1 objects, 0 shards");
    free(st);
    int64_t first = uptime_ns();
    struct uptime_wait w = {first + 100000000, 0}; /* 100 ms: ~10 scans and stats lines */
    cr_assert(poll_until(uptime_passed, &w, DEADLINE_MS));
    cr_expect_eq(active_of("SimpleCounter"), 0);
    cr_expect_eq(active_of("NodeMonitor"), 1, "scans that fail do not hurt the monitor");
    cr_expect_eq(active_of("GlobalMonitor"), 1);
    cr_expect_geq(logged("Global Stats: Uptime="), 1, "the monitors' lines go to the process log");
}

/* ---- the module ---- */

Test(demo, module_registers_the_same_types)
{
    /* A runtime without the built-in registration, filled by cverse-demo.so's cverse_module_init. */
    cv_runtime_close(g.rt, closed_cb, NULL);
    cr_assert(poll_until(flag_set, &g.closed, DEADLINE_MS));
    g.closed = 0;
    start_runtime(false, true);
    const char *path = getenv("CVERSE_DEMO_MODULE");
    cr_assert_not_null(path, "CVERSE_DEMO_MODULE is not set (run through meson test)");
    g.module = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    cr_assert_not_null(g.module, "dlopen: %s", dlerror());
    cv_module_init_fn init = (cv_module_init_fn)(uintptr_t)dlsym(g.module, CV_MODULE_INIT_SYMBOL);
    cr_assert_not_null(init, "%s not exported", CV_MODULE_INIT_SYMBOL);
    cr_assert_eq(init(cv_runtime_registry(g.rt)), 0);
    cr_expect_eq(init(cv_runtime_registry(g.rt)), CV_EEXIST, "registering twice is refused");
    cv_runtime_start(g.rt);
    cr_expect_eq(increment("SimpleCounter-Counter-042"), 1);
    cr_expect_eq(increment("SimpleCounter-Counter-042"), 2);
    ShardingDemo__GetStatsResponse *s = shard_stats("shard#9/ShardMonitor");
    cr_expect_eq(s->shard_id, 9);
    msg_free(s);
}

Test(demo, register_twice_is_refused)
{
    struct cv_runtime *rt;
    struct cv_runtime_opts o = {.node_id = "node-x", .shards = SHARDS};
    cr_assert_eq(cv_runtime_init(&g.loop, &o, &rt), 0);
    cr_expect_eq(cv_demo_register(cv_runtime_registry(rt)), 0);
    cr_expect_eq(cv_demo_register(cv_runtime_registry(rt)), CV_EEXIST);
    cv_runtime_start(rt);
    cr_expect_eq(cv_demo_register(cv_runtime_registry(rt)), CV_EINVAL, "the registry froze at start");
    int closed = 0;
    cv_runtime_close(rt, set_flag_cb, &closed);
    cr_assert(poll_until(flag_set, &closed, DEADLINE_MS));
}

/* ---- pure helpers ---- */

Test(demo_helpers, duration_format_matches_go)
{
    /* Go's own table (time/time_test.go, durationTests) plus a few uptimes. */
    static const struct {
        const char *want;
        int64_t ns;
    } cases[] = {
        {"0s", 0},
        {"1ns", 1},
        {"1.1\xc2\xb5s", 1100},
        {"2.2ms", 2200000},
        {"3.3s", 3300000000LL},
        {"4m5s", 4 * 60000000000LL + 5000000000LL},
        {"4m5.001s", 4 * 60000000000LL + 5001000000LL},
        {"5h6m7.001s", 5 * 3600000000000LL + 6 * 60000000000LL + 7001000000LL},
        {"8m0.000000001s", 8 * 60000000000LL + 1},
        {"2562047h47m16.854775807s", INT64_MAX},
        {"-2562047h47m16.854775808s", INT64_MIN},
        {"1h0m0s", 3600000000000LL},
        {"1h2m3s", 3723000000000LL},
        {"999ms", 999000000},
        {"-1.5s", -1500000000LL},
        {"1\xc2\xb5s", 1000},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[40];
        int n = cv_demo_format_duration(cases[i].ns, buf, sizeof buf);
        cr_expect_str_eq(buf, cases[i].want);
        cr_expect_eq(n, (int)strlen(cases[i].want));
    }
    char small[4];
    cr_expect_eq(cv_demo_format_duration(3600000000000LL, small, sizeof small), CV_ERANGE, "1h0m0s needs 7 bytes");
    cr_expect_eq(cv_demo_format_duration(1, small, sizeof small), 3, "1ns fits in 4 bytes");
    cr_expect_str_eq(small, "1ns");
}

Test(demo_helpers, counter_ids)
{
    char id[32];
    cr_expect_eq(cv_demo_counter_id(1, id, sizeof id), 0);
    cr_expect_str_eq(id, "SimpleCounter-Counter-001");
    cr_expect_eq(cv_demo_counter_id(42, id, sizeof id), 0);
    cr_expect_str_eq(id, "SimpleCounter-Counter-042");
    cr_expect_eq(cv_demo_counter_id(100, id, sizeof id), 0);
    cr_expect_str_eq(id, "SimpleCounter-Counter-100");
    cr_expect_eq(cv_demo_counter_id(0, id, sizeof id), CV_ERANGE);
    cr_expect_eq(cv_demo_counter_id(101, id, sizeof id), CV_ERANGE);
    cr_expect_eq(cv_demo_counter_id(1, id, 25), CV_ERANGE, "25 bytes leave no room for the NUL");
}

static bool owns_all(void *data, uint32_t shard) { return true; }
static bool owns_none(void *data, uint32_t shard) { return false; }
static bool owns_parity(void *data, uint32_t shard) { return shard % 2 == *(uint32_t *)data; }

Test(demo_helpers, counters_a_node_creates)
{
    unsigned ks[CV_DEMO_COUNTERS];
    cr_expect_eq(cv_demo_counters_owned(SHARDS, owns_all, NULL, ks), CV_DEMO_COUNTERS);
    for (unsigned i = 0; i < CV_DEMO_COUNTERS; i++) cr_expect_eq(ks[i], i + 1);
    cr_expect_eq(cv_demo_counters_owned(SHARDS, owns_none, NULL, ks), 0);
    cr_expect_eq(cv_demo_counters_owned(0, owns_all, NULL, ks), 0, "no shard count: nothing to create");

    /* Two nodes splitting the shards by parity create disjoint sets covering all 100 counters, each
     * counter on the node owning FNV-1a(id) % shards. */
    bool seen[CV_DEMO_COUNTERS + 1] = {false};
    size_t total = 0;
    for (uint32_t parity = 0; parity < 2; parity++) {
        size_t n = cv_demo_counters_owned(SHARDS, owns_parity, &parity, ks);
        total += n;
        for (size_t i = 0; i < n; i++) {
            char id[32];
            cv_demo_counter_id(ks[i], id, sizeof id);
            cr_expect_eq(cv_fnv1a32(id, strlen(id)) % SHARDS % 2, parity, "%s on the wrong node", id);
            cr_expect_not(seen[ks[i]], "%s created by both nodes", id);
            seen[ks[i]] = true;
            if (i > 0) cr_expect_gt(ks[i], ks[i - 1], "ascending");
        }
    }
    cr_expect_eq(total, CV_DEMO_COUNTERS);
    /* With many shards (Goverse's 8192) they spread: no shard gets more than a few. */
    uint32_t hits[8192] = {0};
    for (unsigned k = 1; k <= CV_DEMO_COUNTERS; k++) {
        char id[32];
        cv_demo_counter_id(k, id, sizeof id);
        hits[cv_shard_of(id, 8192)]++;
    }
    for (unsigned s = 0; s < 8192; s++) cr_expect_leq(hits[s], 3, "shard %u holds %u counters", s, hits[s]);
}
