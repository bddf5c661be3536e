/* Unit tests of src/objects: the object runtime on a real libuv loop. Request/response types reuse
 * cverse.rpc.ProposeResponse (index = argument/result, leader = a string argument). Waiting is done by
 * running the loop until a condition holds, with a deadline (never by sleeping); every test ends by
 * closing the runtime and checking uv_loop_close() == 0 (no handle left behind). */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "core/hash.h"
#include "cverse/error.h"
#include "cverse/object.h"
#include "log_capture.h"
#include "lsan_check.h"
#include "objects/object.h"
#include "objects/registry.h"
#include "objects/runtime.h"
#include "core/apperr.h"
#include "rpc.pb-c.h"
#include "sharding_demo.pb-c.h"
#include "util/actlog.h"
#include "util/log.h"

TestSuite(objects, .fini = cv_lsan_check);

typedef Cverse__Rpc__ProposeResponse Msg;
#define MSG_INIT CVERSE__RPC__PROPOSE_RESPONSE__INIT
#define MSG_DESC (&cverse__rpc__propose_response__descriptor)
#define NRES 2048
#define NHELD 16

struct result {
    int done, status;
    uint64_t value;
    int order; /* completion order */
};

static struct {
    uv_loop_t loop;
    struct cv_runtime *rt;
    int closed;
    struct result res[NRES];
    int completed;
    int created, activated, deactivated, destroyed;
    int inflight_all, max_inflight_all, max_inflight_obj, order_violations;
    int ticks, tick_overlaps;
    uint64_t delay_ms;
    cv_reply *held[NHELD];
    int n_held;
} g;

/* ---- object types ---- */

struct counter {
    uint64_t total;
};

static int counter_created(cv_object *o) { return g.created++, 0; }
static int counter_activated(cv_object *o) { return g.activated++, 0; }
static void counter_deactivated(cv_object *o) { g.deactivated++; }
static void counter_destroyed(cv_object *o) { g.destroyed++; }

static void counter_add(cv_object *o, const ProtobufCMessage *req, cv_reply *r)
{
    const Msg *q = (const Msg *)req;
    struct counter *c = cv_object_state(o);
    c->total += q->index;
    Msg resp = MSG_INIT;
    resp.index = c->total;
    cv_reply_ok(r, &resp.base);
}

static const struct cv_method counter_methods[] = {{"Add", MSG_DESC, MSG_DESC, counter_add}};
static const struct cv_object_type counter_type = {
    .name = "Counter", .state_size = sizeof(struct counter), .created = counter_created,
    .activated = counter_activated, .deactivated = counter_deactivated, .destroyed = counter_destroyed,
    .methods = counter_methods, .n_methods = 1};

/* "Slow": Echo replies from a uv timer after g.delay_ms; Hold parks the reply in g.held. */
struct slow {
    int in_flight;
    uint64_t last_seq;
};

struct pending_reply {
    uv_timer_t t;
    cv_object *o;
    cv_reply *r;
    uint64_t echo;
};

static void slow_enter(cv_object *o, uint64_t seq)
{
    struct slow *s = cv_object_state(o);
    if (seq != s->last_seq + 1) g.order_violations++;
    s->last_seq = seq;
    s->in_flight++;
    if (s->in_flight > g.max_inflight_obj) g.max_inflight_obj = s->in_flight;
    g.inflight_all++;
    if (g.inflight_all > g.max_inflight_all) g.max_inflight_all = g.inflight_all;
}

static void slow_leave(cv_object *o)
{
    struct slow *s = cv_object_state(o);
    s->in_flight--;
    g.inflight_all--;
}

static void pending_free(uv_handle_t *h) { free(h->data); }

static void echo_fire(uv_timer_t *t)
{
    struct pending_reply *p = t->data;
    slow_leave(p->o);
    Msg resp = MSG_INIT;
    resp.index = p->echo;
    cv_reply_ok(p->r, &resp.base);
    uv_close((uv_handle_t *)t, pending_free);
}

static void slow_echo(cv_object *o, const ProtobufCMessage *req, cv_reply *r)
{
    const Msg *q = (const Msg *)req;
    slow_enter(o, q->index);
    struct pending_reply *p = calloc(1, sizeof *p);
    cr_assert_not_null(p);
    *p = (struct pending_reply){.o = o, .r = r, .echo = q->index};
    uv_timer_init(&g.loop, &p->t);
    p->t.data = p;
    uv_timer_start(&p->t, echo_fire, g.delay_ms, 0);
}

static void slow_hold(cv_object *o, const ProtobufCMessage *req, cv_reply *r)
{
    cr_assert_lt(g.n_held, NHELD);
    slow_enter(o, ((const Msg *)req)->index);
    g.held[g.n_held++] = r;
}

static const struct cv_method slow_methods[] = {{"Echo", MSG_DESC, MSG_DESC, slow_echo},
                                                {"Hold", MSG_DESC, MSG_DESC, slow_hold}};
static const struct cv_object_type slow_type = {
    .name = "Slow", .state_size = sizeof(struct slow), .deactivated = counter_deactivated,
    .methods = slow_methods, .n_methods = 2};

/* "Ticker": Slow plus a 1 ms repeating timer started on activation; a tick during a method is a bug. */
static void ticker_tick(cv_object *o, void *data)
{
    struct slow *s = cv_object_state(o);
    if (s->in_flight) g.tick_overlaps++;
    g.ticks++;
}

static int ticker_activated(cv_object *o)
{
    return cv_object_timer_start(o, 1, 1, ticker_tick, NULL, NULL);
}

static const struct cv_object_type ticker_type = {
    .name = "Ticker", .state_size = sizeof(struct slow), .activated = ticker_activated,
    .methods = slow_methods, .n_methods = 2};

/* "Proxy": Fwd(leader = target id, index = delta) calls Counter.Add on the target and answers its
 * result + 1000. */
static void proxy_done(cv_object *caller, void *data, int status, const char *error,
                       const ProtobufCMessage *resp)
{
    cv_reply *r = data;
    if (status != 0) {
        cv_reply_error(r, status, error);
        return;
    }
    Msg out = MSG_INIT;
    out.index = ((const Msg *)resp)->index + 1000;
    cv_reply_ok(r, &out.base);
}

static void proxy_fwd(cv_object *o, const ProtobufCMessage *req, cv_reply *r)
{
    const Msg *q = (const Msg *)req;
    Msg add = MSG_INIT;
    add.index = q->index;
    int rv = cv_object_call(o, "Counter", q->leader, "Add", &add.base, proxy_done, r);
    if (rv != 0) cv_reply_error(r, rv, "forward refused");
}

static const struct cv_method proxy_methods[] = {{"Fwd", MSG_DESC, MSG_DESC, proxy_fwd}};
static const struct cv_object_type proxy_type = {.name = "Proxy", .methods = proxy_methods,
                                                 .n_methods = 1};

/* ---- harness ---- */

static int g_lost_shard = -1; /* a shard that moved away (owns_not_7 gives it up too) */
static bool owns_not_7(void *data, uint32_t shard) { return shard != 7 && (int)shard != g_lost_shard; }

static void setup_window(size_t capacity, uint64_t (*serve_until)(void *data))
{
    memset(&g, 0, sizeof g);
    g_lost_shard = -1;
    cv_log_init("test", CV_LOG_ERROR);
    cr_assert_eq(uv_loop_init(&g.loop), 0);
    struct cv_runtime_opts opts = {.node_id = "node-1", .shards = 64, .mailbox_capacity = capacity,
                                   .owns = owns_not_7, .serve_until = serve_until};
    cr_assert_eq(cv_runtime_init(&g.loop, &opts, &g.rt), 0);
    cv_registry *reg = cv_runtime_registry(g.rt);
    cr_assert_eq(cv_register_type(reg, &counter_type), 0);
    cr_assert_eq(cv_register_type(reg, &slow_type), 0);
    cr_assert_eq(cv_register_type(reg, &ticker_type), 0);
    cr_assert_eq(cv_register_type(reg, &proxy_type), 0);
    cv_runtime_start(g.rt);
}

static void setup(size_t capacity)
{
    setup_window(capacity, NULL);
}

static void guard_cb(uv_timer_t *t) {}

/* Runs the loop until *flag becomes nonzero or 10 s passed; a 5 ms guard timer keeps uv_run from
 * blocking forever when nothing else is pending. */
static bool run_until(const int *flag, int want)
{
    uv_timer_t guard;
    uv_timer_init(&g.loop, &guard);
    uv_timer_start(&guard, guard_cb, 5, 5);
    uint64_t deadline = cv_mono_ms() + 10000;
    while (*flag < want && cv_mono_ms() < deadline) uv_run(&g.loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(&g.loop, UV_RUN_NOWAIT);
    return *flag >= want;
}

static void closed_cb(struct cv_runtime *rt, void *data) { g.closed = 1; }

static void teardown(void)
{
    cv_runtime_close(g.rt, closed_cb, NULL);
    cr_assert(run_until(&g.closed, 1), "runtime close did not complete");
    uv_run(&g.loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&g.loop), 0, "a handle was left open");
}

static void on_result(void *data, int status, const char *error, const uint8_t *resp, size_t len)
{
    struct result *res = data;
    cr_assert_not_null(resp);
    cr_assert_eq(res->done, 0, "callback fired twice");
    res->done = 1;
    res->status = status;
    res->order = g.completed++;
    if (status == 0) {
        Msg *m = cverse__rpc__propose_response__unpack(NULL, len, resp);
        cr_assert_not_null(m);
        res->value = m->index;
        cverse__rpc__propose_response__free_unpacked(m, NULL);
    } else {
        cr_assert_not_null(error);
    }
}

/* Packs Msg{index, leader} and calls; returns cv_runtime_call's code. */
static int call(const char *type, const char *id, const char *method, uint64_t index, const char *leader,
                int slot)
{
    Msg m = MSG_INIT;
    m.index = index;
    if (leader) m.leader = (char *)leader;
    uint8_t buf[256];
    size_t len = cverse__rpc__propose_response__pack(&m, buf);
    return cv_runtime_call(g.rt, type, id, method, buf, len, on_result, &g.res[slot]);
}

static void release_held(int i, uint64_t value)
{
    Msg resp = MSG_INIT;
    resp.index = value;
    g.inflight_all--;
    cv_reply_ok(g.held[i], &resp.base);
}

/* ---- tests ---- */

Test(objects, counter_activates_once_and_keeps_state)
{
    setup(0);
    cr_assert_eq(call("Counter", "c1", "Add", 1, NULL, 0), 0);
    cr_assert_eq(call("Counter", "c1", "Add", 2, NULL, 1), 0);
    cr_assert_eq(call("Counter", "c1", "Add", 3, NULL, 2), 0);
    cr_assert_eq(g.completed, 0, "a callback ran inside cv_runtime_call");
    cr_assert(run_until(&g.completed, 3));
    cr_assert_eq(g.res[0].value, 1);
    cr_assert_eq(g.res[1].value, 3);
    cr_assert_eq(g.res[2].value, 6);
    cr_assert_eq(g.created, 1);
    cr_assert_eq(g.activated, 1);
    cr_assert_eq(cv_runtime_count(g.rt), 1);
    cr_assert_eq(cv_runtime_destroy(g.rt, "c1"), 0);
    teardown();
    cr_assert_eq(g.deactivated, 1);
    cr_assert_eq(g.destroyed, 1);
}

Test(objects, thousand_async_calls_to_one_object_are_serial_and_ordered)
{
    setup(0);
    g.delay_ms = 0; /* replies on a later loop iteration: the handler has returned long before */
    for (int i = 0; i < 1000; i++) cr_assert_eq(call("Slow", "one", "Echo", (uint64_t)i + 1, NULL, i), 0);
    cr_assert(run_until(&g.completed, 1000));
    cr_assert_eq(g.max_inflight_obj, 1, "two calls of one object overlapped");
    cr_assert_eq(g.order_violations, 0);
    for (int i = 0; i < 1000; i++) {
        cr_assert_eq(g.res[i].status, 0);
        cr_assert_eq(g.res[i].value, (uint64_t)i + 1);
        cr_assert_eq(g.res[i].order, i, "completion out of order");
    }
    teardown();
}

Test(objects, different_objects_interleave)
{
    setup(0);
    g.delay_ms = 1;
    char id[16];
    for (int i = 0; i < 20; i++)
        for (int k = 0; k < 10; k++) {
            snprintf(id, sizeof id, "obj-%d", k);
            cr_assert_eq(call("Slow", id, "Echo", (uint64_t)i + 1, NULL, k * 20 + i), 0);
        }
    cr_assert(run_until(&g.completed, 200));
    cr_assert_eq(g.max_inflight_obj, 1);
    cr_assert_gt(g.max_inflight_all, 1, "objects did not run concurrently");
    cr_assert_eq(g.order_violations, 0);
    cr_assert_eq(cv_runtime_count(g.rt), 10);
    teardown();
}

Test(objects, full_mailbox_is_ebusy)
{
    setup(4);
    for (int i = 0; i < 4; i++) cr_assert_eq(call("Slow", "m", "Hold", (uint64_t)i + 1, NULL, i), 0);
    cr_assert_eq(call("Slow", "m", "Hold", 5, NULL, 4), CV_EBUSY);
    cr_assert(run_until(&g.n_held, 1));
    /* one call running, three queued: one slot is free again */
    cr_assert_eq(call("Slow", "m", "Hold", 5, NULL, 4), 0);
    cr_assert_eq(call("Slow", "m", "Hold", 6, NULL, 5), CV_EBUSY);
    for (int i = 0; i < 5; i++) {
        cr_assert(run_until(&g.n_held, i + 1));
        cr_assert_eq(g.n_held, i + 1, "next call started before the reply");
        release_held(i, 100 + (uint64_t)i);
    }
    cr_assert(run_until(&g.completed, 5));
    for (int i = 0; i < 5; i++) cr_assert_eq(g.res[i].value, 100 + (uint64_t)i);
    cr_assert_eq(g.res[5].done, 0);
    teardown();
}

Test(objects, unknown_type_method_and_bad_bytes)
{
    setup(0);
    cr_assert_eq(call("Counter", "x", "Add", 1, NULL, 0), CV_EREDIRECT, "\"x\" is in shard 7");
    cr_assert_eq(call("Nope", "y", "Add", 1, NULL, 0), CV_ENOTFOUND);
    cr_assert_eq(call("Counter", "y", "Nope", 1, NULL, 0), CV_ENOTFOUND);
    static const uint8_t bad[] = {0x1a, 0x10, 'a', 'b'}; /* field 3, length 16, only 2 bytes */
    cr_assert_eq(cv_runtime_call(g.rt, "Counter", "y", "Add", bad, sizeof bad, on_result, &g.res[0]),
                 CV_EPROTO);
    cr_assert_eq(call("Counter", "", "Add", 1, NULL, 0), CV_EINVAL);
    cr_assert_eq(cv_runtime_count(g.rt), 0, "a rejected call activated an object");
    cr_assert_eq(call("Counter", "y", "Add", 1, NULL, 0), 0);
    cr_assert_eq(call("Slow", "y", "Echo", 1, NULL, 1), CV_ECONFLICT);
    cr_assert(run_until(&g.completed, 1));
    teardown();
    cr_assert_eq(g.res[1].done, 0);
}

Test(objects, registry_rejects_duplicates_and_late_types)
{
    setup(0);
    cv_registry *reg = cv_runtime_registry(g.rt);
    static const struct cv_object_type other = {.name = "Other"};
    cr_assert_eq(cv_register_type(reg, &other), CV_EINVAL, "registered after start");
    teardown();

    struct cv_runtime *rt;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct cv_runtime_opts opts = {.node_id = "n", .shards = 8};
    cr_assert_eq(cv_runtime_init(&loop, &opts, &rt), 0);
    reg = cv_runtime_registry(rt);
    static const struct cv_method dup[] = {{"A", MSG_DESC, MSG_DESC, counter_add},
                                           {"A", MSG_DESC, MSG_DESC, counter_add}};
    static const struct cv_object_type dupt = {.name = "Dup", .methods = dup, .n_methods = 2};
    cr_assert_eq(cv_register_type(reg, &dupt), CV_EINVAL);
    cr_assert_eq(cv_register_type(reg, &counter_type), 0);
    cr_assert_eq(cv_register_type(reg, &counter_type), CV_EEXIST);
    cr_assert_eq(cv_runtime_call(rt, "Counter", "a", "Add", NULL, 0, on_result, NULL), CV_EUNAVAIL);
    cv_runtime_close(rt, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&loop), 0);
}

Test(objects, timers_never_overlap_methods)
{
    setup(0);
    g.delay_ms = 2; /* each call spans a couple of 1 ms ticks */
    for (int i = 0; i < 50; i++) cr_assert_eq(call("Ticker", "t", "Echo", (uint64_t)i + 1, NULL, i), 0);
    cr_assert(run_until(&g.completed, 50));
    int want = g.ticks + 5;
    cr_assert(run_until(&g.ticks, want), "ticks stopped while the object is idle");
    cr_assert_eq(g.tick_overlaps, 0, "a timer callback ran during a method");
    cr_assert_eq(g.max_inflight_obj, 1);
    teardown(); /* uv_loop_close == 0: the timer was closed on deactivation */
}

Test(objects, deactivate_fails_queued_calls_and_waits_for_the_running_one)
{
    setup(0);
    cr_assert_eq(call("Slow", "d", "Hold", 1, NULL, 0), 0);
    for (int i = 1; i <= 5; i++) cr_assert_eq(call("Slow", "d", "Hold", (uint64_t)i + 1, NULL, i), 0);
    cr_assert(run_until(&g.n_held, 1));
    cr_assert_eq(cv_runtime_deactivate(g.rt, "d"), 0);
    cr_assert_eq(g.completed, 0, "callbacks ran inside cv_runtime_deactivate");
    cr_assert(run_until(&g.completed, 5));
    for (int i = 1; i <= 5; i++) cr_assert_eq(g.res[i].status, CV_EREDIRECT);
    cr_assert_eq(g.res[0].done, 0);
    cr_assert_eq(g.deactivated, 0, "deactivated ran while a call was in flight");
    cr_assert_eq(call("Slow", "d", "Hold", 9, NULL, 6), CV_EREDIRECT);
    cr_assert_eq(cv_runtime_list(g.rt, NULL, NULL), 0);

    release_held(0, 42);
    cr_assert(run_until(&g.deactivated, 1));
    cr_assert_eq(g.res[0].status, 0);
    cr_assert_eq(g.res[0].value, 42);
    cr_assert_eq(cv_runtime_count(g.rt), 0);
    cr_assert_eq(cv_runtime_deactivate(g.rt, "d"), CV_ENOTFOUND);

    g.delay_ms = 0;
    cr_assert_eq(call("Slow", "d", "Echo", 1, NULL, 7), 0); /* a fresh activation: seq restarts */
    cr_assert(run_until(&g.completed, 7));
    cr_assert_eq(g.res[7].status, 0);
    cr_assert_eq(g.order_violations, 0);
    teardown();
}

/* The node's serving window (its lease) ends while a call is in flight and others are queued: the
 * queued ones fail with CV_EUNAVAIL without running, the one in flight is not acknowledged, and the
 * activation log ends the activation at the window's end. */
static uint64_t g_until;
static uint64_t until_hook(void *data) { return g_until; }

Test(objects, nothing_runs_or_is_acknowledged_past_the_serving_window)
{
    char path[] = "/tmp/cv-actlog-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    setenv(CV_ACTLOG_ENV, path, 1); /* each criterion test runs in its own process */
    g_until = cv_mono_ms() + 60000;
    setup_window(0, until_hook);
    cr_assert_eq(call("Counter", "c1", "Add", 5, NULL, 0), 0);
    cr_assert_eq(call("Slow", "s1", "Hold", 1, NULL, 1), 0);
    cr_assert(run_until(&g.n_held, 1));
    cr_assert(run_until(&g.completed, 1));
    cr_assert_eq(g.res[0].value, 5);
    uint64_t ended = g_until = cv_mono_ms(); /* the window ends: e.g. the process was stopped */
    (void)ended;                             /* read by the activation log check (debug builds) */
    cr_assert_eq(call("Counter", "c1", "Add", 1, NULL, 2), 0, "accepting is the host's check, not ours");
    cr_assert_eq(call("Counter", "c1", "Add", 1, NULL, 3), 0);
    cr_assert_eq(call("Counter", "c2", "Add", 1, NULL, 4), 0);
    release_held(0, 7); /* the handler the process was stopped in replies after the window */
    cr_assert(run_until(&g.completed, 5));
    for (int i = 1; i <= 4; i++) cr_assert_eq(g.res[i].status, CV_EUNAVAIL, "call %d: %d", i, g.res[i].status);
    cr_assert_eq(g.activated, 1, "c2 was never activated");
    /* The pump deactivated c1 on its own; the host's fencing deactivates the rest (s1, idle). */
    cr_assert_eq(cv_runtime_deactivate_all(g.rt, CV_EUNAVAIL), 1);
    cr_assert(run_until(&g.deactivated, 2), "c1 and s1 deactivated");
    cr_assert_eq(cv_runtime_count(g.rt), 0);
    teardown();
#ifdef CV_CHECKS /* the activation log exists in debug and test builds only */
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    char line[256], ev, node[32], id[64];
    unsigned long long ts;
    long pid;
    int starts = 0, ends = 0;
    while (fgets(line, sizeof line, f)) {
        cr_assert_eq(sscanf(line, "%llu %c %31s %ld %63s", &ts, &ev, node, &pid, id), 5, "%s", line);
        cr_assert_str_eq(node, "node-1");
        if (ev == 'A') starts++;
        if (ev == 'D') {
            ends++;
            cr_assert_leq(ts, ended * 1000000ull, "%s ends at the window's end, not when noticed", id);
        }
    }
    fclose(f);
    cr_assert_eq(starts, 2, "c1 and s1 started");
    cr_assert_eq(ends, 2);
#endif
    unlink(path);
}

struct listing {
    int n;
    char ids[4][32];
};

static void collect(void *data, const struct cv_object_info *info)
{
    struct listing *l = data;
    cr_assert_str_eq(info->type, "Counter");
    cr_assert_eq(info->state, CV_OBJ_ACTIVE);
    snprintf(l->ids[l->n++], 32, "%s@%u", info->id, (unsigned)info->shard);
}

/* The shard moved away: cv_runtime_deactivate_unowned (what the node calls after the shard map changed)
 * deactivates the objects of every shard the node no longer owns. */
Test(objects, deactivate_shard_and_list)
{
    setup(0);
    cr_assert_eq(call("Counter", "shard#1/a", "Add", 1, NULL, 0), 0);
    cr_assert_eq(call("Counter", "shard#1/b", "Add", 1, NULL, 1), 0);
    cr_assert_eq(call("Counter", "shard#2/c", "Add", 1, NULL, 2), 0);
    cr_assert(run_until(&g.completed, 3));
    cr_assert_eq(cv_runtime_list(g.rt, NULL, NULL), 3);
    g_lost_shard = 1;
    cr_assert_eq(cv_runtime_deactivate_unowned(g.rt), 2);
    cr_assert(run_until(&g.deactivated, 2));
    struct listing l = {0};
    cr_assert_eq(cv_runtime_list(g.rt, collect, &l), 1);
    cr_assert_str_eq(l.ids[0], "shard#2/c@2");
    cr_assert_eq(cv_runtime_count(g.rt), 1);
    teardown();
}

Test(objects, placement_ownership_and_object_to_object_calls)
{
    setup(0);
    cr_assert_eq(call("Counter", "shard#7/x", "Add", 1, NULL, 0), CV_EREDIRECT, "shard 7 is not ours");
    cr_assert_eq(call("Counter", "node-2/x", "Add", 1, NULL, 0), CV_EREDIRECT, "pinned elsewhere");
    cr_assert_eq(call("Counter", "node-1/x", "Add", 5, NULL, 0), 0);
    cr_assert_eq(call("Proxy", "p", "Fwd", 3, "node-1/x", 1), 0);
    cr_assert_eq(call("Proxy", "p", "Fwd", 1, "shard#7/y", 2), 0);
    cr_assert_eq(call("Proxy", "p", "Fwd", 1, "shard#3/z", 3), 0);
    cr_assert(run_until(&g.completed, 4));
    cr_assert_eq(g.res[0].value, 5);
    cr_assert_eq(g.res[1].status, 0);
    cr_assert_eq(g.res[1].value, 1008, "proxy saw the counter's state");
    cr_assert_eq(g.res[2].status, CV_EREDIRECT, "remote object is not reachable yet");
    cr_assert_eq(g.res[3].value, 1001);
    teardown();
}

Test(objects, close_fails_queued_calls_and_waits_for_replies)
{
    setup(0);
    cr_assert_eq(call("Slow", "q", "Hold", 1, NULL, 0), 0);
    cr_assert_eq(call("Slow", "q", "Hold", 2, NULL, 1), 0);
    cr_assert(run_until(&g.n_held, 1));
    cv_runtime_close(g.rt, closed_cb, NULL);
    cr_assert(run_until(&g.completed, 1));
    cr_assert_eq(g.res[1].status, CV_ECLOSED);
    cr_assert_eq(g.closed, 0, "closed with a call in flight");
    release_held(0, 7);
    cr_assert(run_until(&g.closed, 1));
    cr_assert_eq(g.res[0].value, 7);
    cr_assert_eq(g.deactivated, 1);
    uv_run(&g.loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&g.loop), 0);
}

/* ---- standalone registry, external registry, explicit `created` (src/objects/registry.h) ---- */

Test(objects, standalone_registry_lookups_and_freeze)
{
    cv_registry *reg = cv_registry_new();
    cr_assert_not_null(reg);
    cr_assert_eq(cv_register_type(reg, &counter_type), 0);
    cr_assert_eq(cv_register_type(reg, &proxy_type), 0);
    cr_assert_eq(cv_register_type(reg, &counter_type), CV_EEXIST);
    cr_assert_eq(cv_registry_type(reg, "Counter"), &counter_type);
    cr_assert_null(cv_registry_type(reg, "Nope"));
    cr_assert_eq(cv_registry_method(reg, "Counter", "Add"), &counter_methods[0]);
    cr_assert_null(cv_registry_method(reg, "Counter", "Sub"));
    cr_assert_null(cv_registry_method(reg, "Nope", "Add"));
    cr_assert_eq(cv_type_method(&proxy_type, "Fwd"), &proxy_methods[0]);
    cr_assert_null(cv_type_method(NULL, "Fwd"));
    cr_assert_eq(cv_registry_count(reg), 2);
    cr_assert_eq(cv_registry_type_at(reg, 1), &proxy_type);
    cr_assert_null(cv_registry_type_at(reg, 2));
    cr_assert(!cv_registry_frozen(reg));
    cv_registry_freeze(reg);
    cr_assert_eq(cv_register_type(reg, &slow_type), CV_EINVAL, "a frozen registry takes no new type");
    cv_registry_free(reg);
    cv_registry_free(NULL);
}

static uint8_t g_owned[64]; /* owns_table: shard -> owned */
static bool owns_table(void *data, uint32_t shard) { return g_owned[shard]; }

/* A runtime over an external registry, created_explicit, owns_table and (optionally) host hooks. */
static void setup_ext(cv_registry *reg, const struct cv_host_hooks *hooks)
{
    memset(&g, 0, sizeof g);
    memset(g_owned, 1, sizeof g_owned);
    cv_log_init("test", CV_LOG_ERROR);
    cr_assert_eq(uv_loop_init(&g.loop), 0);
    struct cv_runtime_opts opts = {.node_id = "node-1", .shards = 64, .owns = owns_table, .registry = reg,
                                   .hooks = hooks, .created_explicit = true};
    cr_assert_eq(cv_runtime_init(&g.loop, &opts, &g.rt), 0);
    cr_assert_eq(cv_runtime_registry(g.rt), reg);
}

Test(objects, external_registry_and_explicit_created_hook)
{
    cv_registry *reg = cv_registry_new();
    cr_assert_eq(cv_register_type(reg, &counter_type), 0);
    setup_ext(reg, NULL);
    cr_assert_eq(cv_runtime_activate(g.rt, "Counter", "a", true), CV_EUNAVAIL, "not started");
    cv_runtime_start(g.rt);
    cr_assert(cv_registry_frozen(reg), "start freezes the external registry");
    /* Activation by a call is not a creation. */
    cr_assert_eq(call("Counter", "by-call", "Add", 2, NULL, 0), 0);
    cr_assert(run_until(&g.completed, 1));
    cr_assert_eq(g.created, 0);
    cr_assert_eq(g.activated, 1);
    /* cv_runtime_activate(created = true): the hook runs once, then the object is just active. */
    cr_assert_eq(cv_runtime_activate(g.rt, "Counter", "new", true), 0);
    cr_assert_eq(cv_runtime_activate(g.rt, "Counter", "new", true), 0, "already activating: no-op");
    cr_assert_eq(g.activated, 1, "hooks never run inside cv_runtime_activate");
    cr_assert(run_until(&g.activated, 2));
    cr_assert_eq(g.created, 1);
    cr_assert_eq(cv_runtime_activate(g.rt, "Counter", "new", true), 0);
    cr_assert_eq(cv_runtime_activate(g.rt, "Counter", "old", false), 0);
    cr_assert(run_until(&g.activated, 3));
    cr_assert_eq(g.created, 1, "activate(created = false) does not run created");
    cr_assert_eq(cv_runtime_activate(g.rt, "Nope", "x", true), CV_ENOTFOUND);
    cr_assert_eq(cv_runtime_activate(g.rt, "Counter", "", true), CV_EINVAL);
    cr_assert_eq(cv_runtime_activate(g.rt, "Counter", "node-2/x", true), CV_EREDIRECT);
    g_owned[9] = 0;
    cr_assert_eq(cv_runtime_activate(g.rt, "Counter", "shard#9/x", true), CV_EREDIRECT);
    cr_assert_eq(cv_runtime_destroy(g.rt, "old"), 0);
    cr_assert_eq(cv_runtime_activate(g.rt, "Counter", "old", false), CV_EREDIRECT, "deactivating");
    cr_assert_eq(cv_runtime_count(g.rt), 3);
    teardown();
    cr_assert_eq(cv_registry_type(reg, "Counter"), &counter_type, "the registry outlives the runtime");
    cv_registry_free(reg);
}

static bool seen_on_list(const char *id)
{
    struct cv_object_info info;
    return cv_runtime_lookup(g.rt, id, &info) == 0 && info.state != CV_OBJ_DEACTIVATING;
}

Test(objects, deactivate_unowned_lookup_and_shard_counts)
{
    cv_registry *reg = cv_registry_new();
    cr_assert_eq(cv_register_type(reg, &counter_type), 0);
    setup_ext(reg, NULL);
    cv_runtime_start(g.rt);
    const char *ids[] = {"shard#1/a", "shard#1/b", "shard#2/c", "node-1/pinned"};
    for (int i = 0; i < 4; i++) cr_assert_eq(cv_runtime_activate(g.rt, "Counter", ids[i], false), 0);
    cr_assert(run_until(&g.activated, 4));
    cr_assert_eq(cv_runtime_shard_count(g.rt, 1), 2);
    cr_assert_eq(cv_runtime_shard_count(g.rt, 2), 1);
    cr_assert_eq(cv_runtime_shard_count(g.rt, 64), 0, "out of range");
    struct cv_object_info info;
    cr_assert_eq(cv_runtime_lookup(g.rt, "shard#2/c", &info), 0);
    cr_assert_str_eq(info.type, "Counter");
    cr_assert_eq(info.shard, 2);
    cr_assert_eq(info.state, CV_OBJ_ACTIVE);
    cr_assert_eq(cv_runtime_lookup(g.rt, "nope", &info), CV_ENOTFOUND);
    /* Shard 1 and the pinned object's hash shard move away: only shard 1's objects go. */
    uint32_t pinned_shard = cv_fnv1a32("node-1/pinned", strlen("node-1/pinned")) % 64;
    cr_assert(pinned_shard != 1 && pinned_shard != 2, "test assumption: hash shard %u", pinned_shard);
    g_owned[1] = 0;
    g_owned[pinned_shard] = 0;
    cr_assert_eq(cv_runtime_deactivate_unowned(g.rt), 2);
    cr_assert_eq(cv_runtime_lookup(g.rt, "shard#1/a", &info), 0);
    cr_assert_eq(info.state, CV_OBJ_DEACTIVATING, "seen as deactivating right away");
    cr_assert(run_until(&g.deactivated, 2));
    cr_assert(!seen_on_list("shard#1/a") && !seen_on_list("shard#1/b"));
    cr_assert(seen_on_list("shard#2/c") && seen_on_list("node-1/pinned"), "pinned objects belong to no shard");
    cr_assert_eq(cv_runtime_shard_count(g.rt, 1), 0);
    cr_assert_eq(cv_runtime_deactivate_unowned(g.rt), 0);
    teardown();
    cv_registry_free(reg);
}

/* ---- host hooks: object calls routed by the host, cluster services ---- */

static struct {
    int calls, creates, deletes, done;
    int create_status;
    char last_id[64];
} hk;

struct hook_answer {
    uv_timer_t t;
    cv_runtime_call_cb call_cb;
    cv_host_done_cb done_cb;
    void *data;
};

static void hook_answer_fire(uv_timer_t *t)
{
    struct hook_answer *a = t->data;
    if (a->call_cb) {
        Msg m = MSG_INIT;
        m.index = 4242; /* what the "remote node" answers */
        uint8_t buf[64];
        a->call_cb(a->data, 0, NULL, buf, cverse__rpc__propose_response__pack(&m, buf));
    } else {
        a->done_cb(a->data, hk.create_status, hk.create_status ? "refused by the test" : NULL);
    }
    uv_close((uv_handle_t *)t, pending_free);
}

static void hook_answer_later(cv_runtime_call_cb ccb, cv_host_done_cb dcb, void *data)
{
    struct hook_answer *a = calloc(1, sizeof *a);
    cr_assert_not_null(a);
    *a = (struct hook_answer){.call_cb = ccb, .done_cb = dcb, .data = data};
    uv_timer_init(&g.loop, &a->t);
    a->t.data = a;
    uv_timer_start(&a->t, hook_answer_fire, 1, 0);
}

static int hk_call(void *data, const char *type, const char *id, const char *method, const uint8_t *req,
                   size_t len, const struct cv_call_ctx *ctx, cv_runtime_call_cb cb, void *cb_data)
{
    const char *call_id = ctx ? ctx->call_id : NULL;
    hk.calls++;
    snprintf(hk.last_id, sizeof hk.last_id, "%s", id);
    if (strncmp(id, "remote", 6) == 0) {
        hook_answer_later(cb, NULL, cb_data);
        return 0;
    }
    if (strcmp(id, "refused") == 0) return CV_EUNAVAIL;
    return cv_runtime_call_id(g.rt, type, id, method, req, len, call_id, cb, cb_data);
}

static int hk_create(void *data, const char *type, const char *id, cv_host_done_cb cb, void *cb_data)
{
    hk.creates++;
    snprintf(hk.last_id, sizeof hk.last_id, "%s", id);
    hook_answer_later(NULL, cb, cb_data);
    return 0;
}

static int hk_delete(void *data, const char *type, const char *id, cv_host_done_cb cb, void *cb_data)
{
    hk.deletes++;
    hook_answer_later(NULL, cb, cb_data);
    return 0;
}

static uint32_t hk_node_shards(void *data) { return 21; }
static size_t hk_cluster_nodes(void *data) { return 3; }
static size_t hk_cluster_objects(void *data) { return 100; }

static const struct cv_host_hooks test_hooks = {.call = hk_call, .create_object = hk_create,
                                                .delete_object = hk_delete, .node_shards = hk_node_shards,
                                                .cluster_nodes = hk_cluster_nodes,
                                                .cluster_objects = hk_cluster_objects};

/* "Svc".Do(index = op, leader = argument): 1 create Counter <arg>, 2 delete it, 3 cluster facts,
 * 4 log <arg>, 5 Counter.Add on <arg> with a request whose descriptor is a copy of the real one (as
 * a module with its own generated code has), answered with such a copy too. */
static ProtobufCMessageDescriptor msg_desc_copy;

static void svc_done(cv_object *caller, void *data, int status, const char *error)
{
    cv_reply *r = data;
    if (status) {
        cr_assert_not_null(error);
        cv_reply_error(r, status, error);
        return;
    }
    Msg out = MSG_INIT;
    out.index = 1;
    cv_reply_ok(r, &out.base);
}

static void svc_added(cv_object *caller, void *data, int status, const char *error, const ProtobufCMessage *resp)
{
    if (status) {
        cv_reply_error(data, status, error);
        return;
    }
    Msg out = MSG_INIT;
    out.base.descriptor = &msg_desc_copy;
    out.index = ((const Msg *)resp)->index;
    cv_reply_ok(data, &out.base);
}

static void svc_do(cv_object *o, const ProtobufCMessage *req, cv_reply *r)
{
    const Msg *q = (const Msg *)req;
    Msg out = MSG_INIT, add = MSG_INIT;
    int rv = 0;
    switch (q->index) {
    case 1: rv = cv_object_create(o, "Counter", q->leader, svc_done, r); break;
    case 2: rv = cv_object_delete(o, "Counter", q->leader, svc_done, r); break;
    case 3:
        out.index = cv_object_cluster_node_count(o) * 1000000 + cv_object_cluster_object_count(o) * 1000 +
                    cv_object_node_shard_count(o);
        cr_assert(cv_object_node_owns_shard(o, 3));
        cr_assert(!cv_object_node_owns_shard(o, 64));
        cr_assert_eq(cv_object_cluster_shards(o), 64);
        cv_reply_ok(r, &out.base);
        return;
    case 4:
        cv_object_log(o, "hello %s", q->leader);
        cv_reply_ok(r, &out.base);
        return;
    case 5:
        add.base.descriptor = &msg_desc_copy;
        add.index = 5;
        rv = cv_object_call(o, "Counter", q->leader, "Add", &add.base, svc_added, r);
        break;
    }
    if (rv) cv_reply_error(r, rv, "refused synchronously");
}

static const struct cv_method svc_methods[] = {{"Do", MSG_DESC, MSG_DESC, svc_do}};
static const struct cv_object_type svc_type = {.name = "Svc", .methods = svc_methods, .n_methods = 1};

static int svc(int op, const char *arg, int slot)
{
    return call("Svc", "svc", "Do", (uint64_t)op, arg, slot);
}

Test(objects, host_hooks_route_calls_and_provide_cluster_services)
{
    memset(&hk, 0, sizeof hk);
    msg_desc_copy = *MSG_DESC;
    cv_registry *reg = cv_registry_new();
    cr_assert_eq(cv_register_type(reg, &counter_type), 0);
    cr_assert_eq(cv_register_type(reg, &proxy_type), 0);
    cr_assert_eq(cv_register_type(reg, &svc_type), 0);
    setup_ext(reg, &test_hooks);
    cv_log_init("test", CV_LOG_INFO); /* cv_object_log's lines are INFO */
    cv_log_capture_start();
    cv_runtime_start(g.rt);
    /* Object-to-object calls all go through the host: local, "remote", refused synchronously. */
    cr_assert_eq(call("Proxy", "p", "Fwd", 3, "local-counter", 0), 0);
    cr_assert_eq(call("Proxy", "p", "Fwd", 3, "remote-counter", 1), 0);
    cr_assert_eq(call("Proxy", "p", "Fwd", 3, "refused", 2), 0);
    cr_assert(run_until(&g.completed, 3));
    cr_assert_eq(g.res[0].value, 1003);
    cr_assert_eq(g.res[1].value, 5242, "answered by the host's call hook");
    cr_assert_eq(g.res[2].status, CV_EUNAVAIL, "the hook's synchronous refusal reaches the caller");
    cr_assert_eq(hk.calls, 3);
    /* create / delete through the hooks, success and failure. */
    cr_assert_eq(svc(1, "made", 3), 0);
    cr_assert(run_until(&g.completed, 4));
    cr_assert_eq(g.res[3].status, 0);
    cr_assert_eq(hk.creates, 1);
    cr_assert_str_eq(hk.last_id, "made");
    hk.create_status = CV_EEXIST;
    cr_assert_eq(svc(2, "made", 4), 0);
    cr_assert(run_until(&g.completed, 5));
    cr_assert_eq(g.res[4].status, CV_EEXIST);
    cr_assert_eq(hk.deletes, 1);
    /* Facts from the hooks; cv_object_log writes to the process log (captured). */
    cr_assert_eq(svc(3, NULL, 5), 0);
    cr_assert_eq(svc(4, "world", 6), 0);
    cr_assert(run_until(&g.completed, 7));
    cr_assert_eq(g.res[5].value, 3100021);
    cr_assert_eq(cv_log_capture_count_lines("hello world", 1), 1, "cv_object_log writes one line to the log");
    /* A request and a reply with a copied descriptor of the same message type are accepted. */
    cr_assert_eq(svc(5, "local-counter", 7), 0);
    cr_assert(run_until(&g.completed, 8));
    cr_assert_eq(g.res[7].status, 0);
    cr_assert_eq(g.res[7].value, 8, "3 earlier + 5");
    cv_log_capture_stop();
    teardown();
    cv_registry_free(reg);
}

Test(objects, cluster_services_outside_a_node)
{
    setup(0);
    cr_assert_eq(cv_register_type(cv_runtime_registry(g.rt), &svc_type), CV_EINVAL, "frozen");
    teardown();
    cv_registry *reg = cv_registry_new();
    cr_assert_eq(cv_register_type(reg, &svc_type), 0);
    cr_assert_eq(cv_register_type(reg, &counter_type), 0);
    setup_ext(reg, NULL);
    cv_runtime_start(g.rt);
    cr_assert_eq(svc(1, "x", 0), 0);
    cr_assert_eq(svc(3, NULL, 1), 0);
    cr_assert(run_until(&g.completed, 2));
    cr_assert_eq(g.res[0].status, CV_EUNAVAIL, "no host: no create");
    cr_assert_eq(g.res[1].value, 0, "no host: counts are 0");
    teardown();
    cv_registry_free(reg);
}

Test(objects, setting_u64_reads_the_environment)
{
    unsetenv("CV_TEST_SETTING");
    cr_assert_eq(cv_object_setting_u64("CV_TEST_SETTING", 7), 7);
    setenv("CV_TEST_SETTING", "300", 1);
    cr_assert_eq(cv_object_setting_u64("CV_TEST_SETTING", 7), 300);
    setenv("CV_TEST_SETTING", "12ms", 1);
    cr_assert_eq(cv_object_setting_u64("CV_TEST_SETTING", 7), 7, "not a number: the default");
    setenv("CV_TEST_SETTING", "-1", 1);
    cr_assert_eq(cv_object_setting_u64("CV_TEST_SETTING", 7), 7);
    setenv("CV_TEST_SETTING", "", 1);
    cr_assert_eq(cv_object_setting_u64("CV_TEST_SETTING", 7), 7);
    unsetenv("CV_TEST_SETTING");
}

/* ---- modules ---- */

/* Defect 8: a module whose init fails was left loaded with nobody holding its handle (and its half
 * registration kept pointers into it). It must be unloaded again, with the types it registered gone. */
Test(objects, failed_module_init_unloads_the_module)
{
    const char *path = getenv("CVERSE_FAILING_MODULE");
    cr_assert_not_null(path, "CVERSE_FAILING_MODULE not set");
    for (int keep = 0; keep < 2; keep++) {
        cv_registry *reg = cv_registry_new();
        cr_assert_not_null(reg);
        void *handle = (void *)0x1, **hp = keep ? &handle : NULL;
        char err[512];
        cr_assert_eq(cv_registry_load_module(reg, path, hp, err, sizeof err), CV_EINVAL);
        cr_assert(strstr(err, "cverse_module_init failed") != NULL, "err: %s", err);
        if (keep) cr_assert_null(handle, "a handle was given out for an unloaded module");
        cr_assert_eq(cv_registry_count(reg), 0, "the failed module's type stayed registered");
        cr_assert_null(cv_registry_type(reg, "FailingModuleType"));
        void *still = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
        cr_assert_null(still, "the module stayed loaded after its init failed");
        cv_registry_free(reg);
    }
}

/* ---- the object lifecycle (cv_sm table of objects/object.h) ---- */

Test(objects, lifecycle_table)
{
    const struct cv_sm_conf *c = &cv_object_sm_conf;
    cr_assert_eq(cv_sm_conf_check(c), 0);
    cr_assert_eq(c->n_states, OBJ_N_STATES);
    cr_assert(cv_sm_allowed(c, OBJ_ACTIVATING, OBJ_ACTIVE));
    cr_assert(cv_sm_allowed(c, OBJ_ACTIVATING, OBJ_GONE), "a hook failed");
    cr_assert(cv_sm_allowed(c, OBJ_ACTIVATING, OBJ_DEACTIVATE_PENDING));
    cr_assert(cv_sm_allowed(c, OBJ_DEACTIVATE_PENDING, OBJ_GONE), "deactivated before the hooks ran");
    cr_assert(cv_sm_allowed(c, OBJ_DEACTIVATE_PENDING, OBJ_DEACTIVATING), "asked from inside a hook");
    cr_assert(cv_sm_allowed(c, OBJ_ACTIVE, OBJ_DEACTIVATING));
    cr_assert(cv_sm_allowed(c, OBJ_DEACTIVATING, OBJ_GONE));
    cr_assert(!cv_sm_allowed(c, OBJ_DEACTIVATE_PENDING, OBJ_ACTIVE), "no way back");
    cr_assert(!cv_sm_allowed(c, OBJ_ACTIVE, OBJ_GONE), "the deactivated hook always runs");
    cr_assert(!cv_sm_allowed(c, OBJ_DEACTIVATING, OBJ_ACTIVE));
    for (int s = 0; s < OBJ_N_STATES; s++) cr_assert(!cv_sm_allowed(c, OBJ_GONE, s), "GONE is final");
    /* The public names stay; the extra state has its own. */
    cr_assert_str_eq(cv_object_state_name(CV_OBJ_ACTIVATING), "ACTIVATING");
    cr_assert_str_eq(cv_object_state_name(CV_OBJ_ACTIVE), "ACTIVE");
    cr_assert_str_eq(cv_object_state_name(CV_OBJ_DEACTIVATING), "DEACTIVATING");
    cr_assert_str_eq(cv_object_state_name(CV_OBJ_GONE), "GONE");
    cr_assert_str_eq(cv_sm_state_name(c, OBJ_DEACTIVATE_PENDING), "DEACTIVATE_PENDING");
}

/* ACTIVATING -> DEACTIVATE_PENDING -> GONE: no hook runs, the queued call fails with CV_EREDIRECT, and
 * callers see the object as DEACTIVATING (not listed, new calls redirected) meanwhile. */
Test(objects, deactivate_while_activating_runs_no_hook)
{
    setup(0);
    cr_assert_eq(call("Counter", "a", "Add", 1, NULL, 0), 0);
    cr_assert_eq(cv_runtime_deactivate(g.rt, "a"), 0, "still ACTIVATING: the pump has not run");
    struct cv_object_info info;
    cr_assert_eq(cv_runtime_lookup(g.rt, "a", &info), 0);
    cr_assert_eq(info.state, CV_OBJ_DEACTIVATING, "the pending state is shown as DEACTIVATING");
    cr_assert_eq(cv_runtime_list(g.rt, NULL, NULL), 0);
    cr_assert_eq(call("Counter", "a", "Add", 1, NULL, 1), CV_EREDIRECT);
    cr_assert_eq(cv_runtime_deactivate(g.rt, "a"), 0, "asking twice changes nothing");
    cr_assert(run_until(&g.completed, 1));
    cr_assert_eq(g.res[0].status, CV_EREDIRECT);
    cr_assert_eq(cv_runtime_lookup(g.rt, "a", &info), CV_ENOTFOUND, "GONE");
    cr_assert_eq(g.created + g.activated + g.deactivated, 0, "no hook ran");
    /* After GONE a call activates it again. */
    cr_assert_eq(call("Counter", "a", "Add", 2, NULL, 2), 0);
    cr_assert(run_until(&g.completed, 2));
    cr_assert_eq(g.res[2].status, 0);
    cr_assert_eq(g.res[2].value, 2);
    teardown();
}

/* A hook that deactivates its own object: DEACTIVATE_PENDING -> DEACTIVATING once the hooks succeeded,
 * so the deactivated hook runs, the timer the hook started is stopped and the queued call redirected. */
static int selfstop_activated(cv_object *o)
{
    g.activated++;
    cr_assert_eq(cv_object_timer_start(o, 1, 1, ticker_tick, NULL, NULL), 0);
    cr_assert_eq(cv_runtime_deactivate(g.rt, cv_object_id(o)), 0);
    cr_assert_eq(cv_object_timer_start(o, 1, 1, ticker_tick, NULL, NULL), CV_ECLOSED, "on its way out");
    return 0;
}

static const struct cv_object_type selfstop_type = {
    .name = "SelfStop", .state_size = sizeof(struct slow), .activated = selfstop_activated,
    .deactivated = counter_deactivated, .methods = slow_methods, .n_methods = 2};

Test(objects, deactivate_from_inside_a_hook_runs_the_deactivated_hook)
{
    cv_registry *reg = cv_registry_new();
    cr_assert_eq(cv_register_type(reg, &selfstop_type), 0);
    setup_ext(reg, NULL);
    cv_runtime_start(g.rt);
    cr_assert_eq(call("SelfStop", "s", "Echo", 1, NULL, 0), 0);
    cr_assert(run_until(&g.deactivated, 1), "the deactivated hook ran");
    cr_assert(run_until(&g.completed, 1));
    cr_assert_eq(g.activated, 1);
    cr_assert_eq(g.res[0].status, CV_EREDIRECT);
    cr_assert_eq(g.ticks, 0, "the timer started in the hook never ticked");
    struct cv_object_info info;
    cr_assert_eq(cv_runtime_lookup(g.rt, "s", &info), CV_ENOTFOUND);
    teardown();
    cv_registry_free(reg);
}

/* ---- the service form (typed handlers from a protoc-c service) and application errors ---- */

/* "Typed" (service SimpleCounter): Increment counts; GetValue answers the value below 2, else the
 * application error TOO_HIGH with the value as details (a GetValueResponse). */
static void typed_increment(ShardingDemo__SimpleCounter_Service *svc, const ShardingDemo__IncrementRequest *in,
                            ShardingDemo__IncrementResponse_Closure done, void *call)
{
    ShardingDemo__SimpleCounterData *c = cv_call_state(call);
    cr_assert_eq(cv_object_state(cv_call_object(call)), c);
    ShardingDemo__IncrementResponse resp = SHARDING_DEMO__INCREMENT_RESPONSE__INIT;
    resp.value = ++c->value;
    done(&resp, call);
}

static void typed_get_value(ShardingDemo__SimpleCounter_Service *svc, const ShardingDemo__GetValueRequest *in,
                            ShardingDemo__GetValueResponse_Closure done, void *call)
{
    ShardingDemo__SimpleCounterData *c = cv_call_state(call);
    ShardingDemo__GetValueResponse resp = SHARDING_DEMO__GET_VALUE_RESPONSE__INIT;
    resp.value = c->value;
    if (c->value < 2) done(&resp, call);
    else cv_call_fail_app_details(call, "TOO_HIGH", &resp.base, "value %lld", (long long)c->value);
}

static const struct cv_object_type typed_type = {
    .name = "Typed",
    .state_message = &sharding_demo__simple_counter_data__descriptor,
    .service = CV_SERVICE(ShardingDemo__SimpleCounter_Service, SHARDING_DEMO__SIMPLE_COUNTER__INIT(typed_)),
    .writes = CV_WRITES("Increment"),
};

/* "Broken" (service ShardMonitor): answers without a message, or with an invalid application code. */
static void broken_update_object_count(ShardingDemo__ShardMonitor_Service *svc,
                                       const ShardingDemo__UpdateObjectCountRequest *in,
                                       ShardingDemo__UpdateObjectCountResponse_Closure done, void *call)
{
    done(NULL, call);
}

static void broken_get_stats(ShardingDemo__ShardMonitor_Service *svc, const ShardingDemo__GetStatsRequest *in,
                             ShardingDemo__GetStatsResponse_Closure done, void *call)
{
    cr_assert_eq(cv_call_fail_app(call, "no spaces allowed", "x"), CV_EINVAL);
}

static const struct cv_object_type broken_type = {
    .name = "Broken",
    .service = CV_SERVICE(ShardingDemo__ShardMonitor_Service, SHARDING_DEMO__SHARD_MONITOR__INIT(broken_)),
};

/* "Relay" (table form): Fwd calls Typed.GetValue of "t" and answers an application error it got as
 * RELAYED with "<code>: <message>", read through cv_object_call_app_error. */
static void relay_done(cv_object *caller, void *data, int status, const char *error, const ProtobufCMessage *resp)
{
    const struct cv_app_error *e = cv_object_call_app_error(caller);
    if (status != CV_EAPP || !e) {
        cv_reply_error(data, CV_EPROTO, "no application error");
        return;
    }
    cr_assert_str_eq(e->message, error);
    char msg[256];
    snprintf(msg, sizeof msg, "%s: %s (%s, %zu bytes)", e->code, e->message, e->details_type, e->details_len);
    cv_reply_app_error(data, "RELAYED", msg, NULL);
}

static void relay_fwd(cv_object *o, const ProtobufCMessage *req, cv_reply *r)
{
    cr_assert_null(cv_object_call_app_error(o), "only inside a callback");
    ShardingDemo__GetValueRequest q = SHARDING_DEMO__GET_VALUE_REQUEST__INIT;
    int rv = cv_object_call(o, "Typed", "t", "GetValue", &q.base, relay_done, r);
    if (rv != 0) cv_reply_error(r, rv, "forward refused");
}

static const struct cv_method relay_methods[] = {{"Fwd", MSG_DESC, MSG_DESC, relay_fwd}};
static const struct cv_object_type relay_type = {.name = "Relay", .methods = relay_methods, .n_methods = 1};

/* Raw answers of the tests below. */
static struct {
    int n, status[8];
    char error[8][256];
    uint8_t resp[8][64];
    size_t len[8];
} T;

static void raw_result(void *data, int status, const char *error, const uint8_t *resp, size_t len)
{
    int i = (int)(intptr_t)data;
    cr_assert(len <= sizeof T.resp[i]);
    T.status[i] = status;
    snprintf(T.error[i], sizeof T.error[i], "%s", error ? error : "");
    memcpy(T.resp[i], resp, len);
    T.len[i] = len;
    T.n++;
}

static void raw_call(const char *type, const char *id, const char *method, int slot)
{
    cr_assert_eq(cv_runtime_call(g.rt, type, id, method, NULL, 0, raw_result, (void *)(intptr_t)slot), 0);
}

Test(objects, service_form_dispatches_typed_handlers)
{
    memset(&T, 0, sizeof T);
    cv_registry *reg = cv_registry_new();
    cr_assert_eq(cv_register_type(reg, &typed_type), 0);
    cr_assert_eq(cv_register_type(reg, &broken_type), 0);
    /* The registry keeps a copy whose method table comes from the service descriptor. */
    const struct cv_object_type *t = cv_registry_type(reg, "Typed");
    cr_assert(t && t != &typed_type && t->n_methods == 2);
    cr_assert_str_eq(t->methods[0].name, "Increment");
    cr_assert_eq(t->methods[0].request, &sharding_demo__increment_request__descriptor);
    cr_assert_eq(t->methods[0].response, &sharding_demo__increment_response__descriptor);
    cr_assert_eq(t->methods[0].flags, CV_METHOD_WRITES);
    cr_assert_str_eq(t->methods[1].name, "GetValue");
    cr_assert_eq(t->methods[1].flags, 0, "not in writes");
    setup_ext(reg, NULL);
    cv_runtime_start(g.rt);
    raw_call("Typed", "t", "Increment", 0);
    raw_call("Typed", "t", "GetValue", 1);
    raw_call("Typed", "t", "Increment", 2);
    raw_call("Typed", "t", "GetValue", 3);
    raw_call("Broken", "b", "UpdateObjectCount", 4);
    raw_call("Broken", "b", "GetStats", 5);
    cr_assert(run_until(&T.n, 6));
    ShardingDemo__IncrementResponse *inc = sharding_demo__increment_response__unpack(NULL, T.len[2], T.resp[2]);
    ShardingDemo__GetValueResponse *val = sharding_demo__get_value_response__unpack(NULL, T.len[1], T.resp[1]);
    cr_assert(T.status[0] == 0 && T.status[1] == 0 && inc && inc->value == 2 && val && val->value == 1);
    sharding_demo__increment_response__free_unpacked(inc, NULL);
    sharding_demo__get_value_response__free_unpacked(val, NULL);
    /* The application error: status CV_EAPP, the message as error, code and details as the body. */
    cr_assert_eq(T.status[3], CV_EAPP);
    cr_assert_str_eq(T.error[3], "value 2");
    struct cv_app_error e;
    cr_assert_eq(cv_apperr_parse(T.resp[3], T.len[3], T.error[3], &e), 0);
    cr_assert_str_eq(e.code, "TOO_HIGH");
    cr_assert_str_eq(e.details_type, "sharding_demo.GetValueResponse");
    val = sharding_demo__get_value_response__unpack(NULL, e.details_len, e.details);
    cr_assert(val && val->value == 2, "the details decode");
    sharding_demo__get_value_response__free_unpacked(val, NULL);
    cr_assert_eq(T.status[4], CV_EINVAL);
    cr_assert_str_eq(T.error[4], "handler answered without a message");
    cr_assert_eq(T.status[5], CV_EINVAL, "an invalid application code");
    teardown();
    cv_registry_free(reg);
}

Test(objects, application_error_through_an_object_call)
{
    memset(&T, 0, sizeof T);
    cv_registry *reg = cv_registry_new();
    cr_assert_eq(cv_register_type(reg, &typed_type), 0);
    cr_assert_eq(cv_register_type(reg, &relay_type), 0);
    setup_ext(reg, NULL);
    cv_runtime_start(g.rt);
    raw_call("Typed", "t", "Increment", 0);
    raw_call("Typed", "t", "Increment", 1);
    raw_call("Relay", "r", "Fwd", 2);
    cr_assert(run_until(&T.n, 3));
    cr_assert_eq(T.status[2], CV_EAPP);
    cr_assert_str_eq(T.error[2], "TOO_HIGH: value 2 (sharding_demo.GetValueResponse, 2 bytes)");
    struct cv_app_error e;
    cr_assert_eq(cv_apperr_parse(T.resp[2], T.len[2], T.error[2], &e), 0);
    cr_assert_str_eq(e.code, "RELAYED");
    cr_assert_eq(e.details_len, 0);
    cr_assert_str_eq(e.details_type, "");
    teardown();
    cv_registry_free(reg);
}

Test(objects, registry_validates_service_form_types)
{
    cv_registry *reg = cv_registry_new();
    struct cv_object_type t = typed_type;
    t.writes = CV_WRITES("Increment", "Incremnet");
    cr_assert_eq(cv_register_type(reg, &t), CV_EINVAL, "a writes name the service does not have");
    t = typed_type;
    t.methods = relay_methods;
    t.n_methods = 1;
    cr_assert_eq(cv_register_type(reg, &t), CV_EINVAL, "a service and a method table");
    static ShardingDemo__SimpleCounter_Service half = SHARDING_DEMO__SIMPLE_COUNTER__INIT(typed_);
    half.get_value = NULL;
    t = typed_type;
    t.service = &half.base;
    cr_assert_eq(cv_register_type(reg, &t), CV_EINVAL, "a NULL handler");
    cr_assert_eq(cv_registry_count(reg), 0);
    cr_assert_eq(cv_register_type(reg, &typed_type), 0);
    cr_assert_eq(cv_register_type(reg, &typed_type), CV_EEXIST);
    cv_registry_free(reg); /* frees the copy (LeakSanitizer checks) */
}

/* core/apperr.h: the packed form a CV_EAPP answer carries between the runtime, node, gate and rpc. */
Test(objects, application_error_packing)
{
    uint8_t *buf;
    size_t len;
    struct cv_app_error in = {"INSUFFICIENT_FUNDS", "ignored", "wallet.Overdraft", (const uint8_t *)"\x08\x05", 2}, out;
    cr_assert_eq(cv_apperr_pack(&in, &buf, &len), 0);
    cr_assert_eq(len, sizeof "INSUFFICIENT_FUNDS" + sizeof "wallet.Overdraft" + 2);
    cr_assert_eq(cv_apperr_parse(buf, len, "balance 5", &out), 0);
    cr_assert_str_eq(out.code, "INSUFFICIENT_FUNDS");
    cr_assert_str_eq(out.message, "balance 5");
    cr_assert_str_eq(out.details_type, "wallet.Overdraft");
    cr_assert(out.details_len == 2 && memcmp(out.details, "\x08\x05", 2) == 0);
    free(buf);
    in = (struct cv_app_error){"A.b-9_z", NULL, NULL, NULL, 0};
    cr_assert_eq(cv_apperr_pack(&in, &buf, &len), 0, "no details");
    cr_assert_eq(cv_apperr_parse(buf, len, NULL, &out), 0);
    cr_assert(strcmp(out.message, "") == 0 && strcmp(out.details_type, "") == 0 && !out.details && !out.details_len);
    free(buf);
    static const char *const bad[] = {"", "has space", "x/y", "ÄÖ", NULL};
    for (int i = 0; bad[i]; i++) {
        in = (struct cv_app_error){bad[i], "", "", NULL, 0};
        cr_assert_eq(cv_apperr_pack(&in, &buf, &len), CV_EINVAL, "code '%s'", bad[i]);
    }
    char longcode[CV_APP_CODE_MAX + 2];
    memset(longcode, 'A', sizeof longcode - 1);
    longcode[sizeof longcode - 1] = 0;
    cr_assert_eq(cv_apperr_code_valid(longcode), 0);
    longcode[CV_APP_CODE_MAX] = 0;
    cr_assert_eq(cv_apperr_code_valid(longcode), 1);
    in = (struct cv_app_error){"E", "", "", (const uint8_t *)"x", 1};
    cr_assert_eq(cv_apperr_pack(&in, &buf, &len), CV_EINVAL, "details without a type");
    /* Malformed bodies: no terminator, one terminator, an empty or invalid code, details without type. */
    cr_assert_eq(cv_apperr_parse((const uint8_t *)"E", 1, NULL, &out), CV_EPROTO);
    cr_assert_eq(cv_apperr_parse((const uint8_t *)"E\0t", 3, NULL, &out), CV_EPROTO);
    cr_assert_eq(cv_apperr_parse((const uint8_t *)"\0\0", 2, NULL, &out), CV_EPROTO);
    cr_assert_eq(cv_apperr_parse((const uint8_t *)"a b\0\0", 5, NULL, &out), CV_EPROTO);
    cr_assert_eq(cv_apperr_parse((const uint8_t *)"E\0\0x", 4, NULL, &out), CV_EPROTO);
    cr_assert_eq(cv_apperr_parse((const uint8_t *)"", 0, NULL, &out), CV_EPROTO);
    cr_assert_eq(cv_apperr_parse((const uint8_t *)"E\0\0", 3, NULL, &out), 0);
}

/* A reliable call answered with an application error is recorded like any answer: its repeat gets the
 * same code, message and details, not a new run of the method. */
Test(objects, application_error_is_recorded_for_a_reliable_call)
{
    memset(&T, 0, sizeof T);
    cv_registry *reg = cv_registry_new();
    cr_assert_eq(cv_register_type(reg, &typed_type), 0);
    setup_ext(reg, NULL);
    cv_runtime_start(g.rt);
    raw_call("Typed", "t", "Increment", 0);
    raw_call("Typed", "t", "Increment", 1);
    cr_assert_eq(cv_runtime_call_id(g.rt, "Typed", "t", "GetValue", NULL, 0, "id-1", raw_result, (void *)(intptr_t)2), 0);
    raw_call("Typed", "t", "Increment", 3);
    cr_assert_eq(cv_runtime_call_id(g.rt, "Typed", "t", "GetValue", NULL, 0, "id-1", raw_result, (void *)(intptr_t)4), 0);
    raw_call("Typed", "t", "GetValue", 5);
    cr_assert(run_until(&T.n, 6));
    cr_assert_eq(T.status[2], CV_EAPP);
    cr_assert_eq(T.status[4], CV_EAPP);
    cr_assert_str_eq(T.error[4], "value 2", "the recorded answer, not a new run (value 3)");
    cr_assert(T.len[4] == T.len[2] && memcmp(T.resp[4], T.resp[2], T.len[2]) == 0, "same code and details");
    cr_assert_str_eq(T.error[5], "value 3", "without the id it runs");
    teardown();
    cv_registry_free(reg);
}

/* ---- push: the caller's client id, and the host's push hook ---- */

static struct {
    int pushes, broadcasts;
    char last_to[64];
    uint64_t last_index;
} ph;

static int push_hook(void *data, const char *client_id, const ProtobufCMessage *msg)
{
    const Msg *m = (const Msg *)msg;
    ph.last_index = m->index;
    if (!client_id) return ph.broadcasts++, 0;
    if (!strchr(client_id, '/')) return CV_EINVAL;
    snprintf(ph.last_to, sizeof ph.last_to, "%s", client_id);
    return ph.pushes++, 0;
}

/* Who: pushes Msg{index} to its caller and broadcasts it; answers Msg{index: 100 * push rv code +
 * broadcast rv code (negated), leader: the caller's client id}. */
static void who(cv_object *o, const ProtobufCMessage *req, cv_reply *r)
{
    const char *me = cv_object_caller_client(o);
    Msg m = MSG_INIT, resp = MSG_INIT;
    m.index = ((const Msg *)req)->index;
    int a = cv_object_push(o, me, &m.base), b = cv_object_broadcast(o, &m.base);
    resp.index = (uint64_t)(-a * 100 - b);
    char copy[64];
    snprintf(copy, sizeof copy, "%s", me ? me : "(null)");
    resp.leader = copy;
    cv_reply_ok(r, &resp.base);
}
static const struct cv_method who_methods[] = {{"Who", MSG_DESC, MSG_DESC, who}};
static const struct cv_object_type who_type = {.name = "Who", .methods = who_methods, .n_methods = 1};

static char g_who_leader[64];
static void on_who(void *data, int status, const char *error, const uint8_t *resp, size_t len)
{
    Msg *m = status == 0 ? cverse__rpc__propose_response__unpack(NULL, len, resp) : NULL;
    if (m) snprintf(g_who_leader, sizeof g_who_leader, "%s", m->leader);
    if (m) cverse__rpc__propose_response__free_unpacked(m, NULL);
    on_result(data, status, error, resp, len);
}

static int call_who(const char *client, int slot)
{
    Msg m = MSG_INIT;
    m.index = 42;
    uint8_t buf[64];
    size_t len = cverse__rpc__propose_response__pack(&m, buf);
    struct cv_call_ctx ctx = {.client_id = client};
    return cv_runtime_call_ctx(g.rt, "Who", "w", "Who", buf, len, &ctx, on_who, &g.res[slot]);
}

Test(objects, caller_client_id_and_push_hook)
{
    memset(&ph, 0, sizeof ph);
    cv_registry *reg = cv_registry_new();
    cr_assert_eq(cv_register_type(reg, &who_type), 0);
    struct cv_host_hooks hooks = {.push = push_hook};
    setup_ext(reg, &hooks);
    cv_runtime_start(g.rt);
    cr_assert_eq(call_who("gate-1/abc", 0), 0);
    cr_assert(run_until(&g.completed, 1));
    cr_assert_eq(g.res[0].status, 0);
    cr_assert_str_eq(g_who_leader, "gate-1/abc", "the method sees its caller's client id");
    cr_assert_eq(g.res[0].value, 0, "push and broadcast queued");
    cr_assert_eq(ph.pushes, 1);
    cr_assert_eq(ph.broadcasts, 1);
    cr_assert_str_eq(ph.last_to, "gate-1/abc");
    cr_assert_eq(ph.last_index, 42);
    /* Without a client id: "" for the method, and a push to "" is CV_EINVAL (the broadcast still goes). */
    cr_assert_eq(call_who(NULL, 1), 0);
    cr_assert(run_until(&g.completed, 2));
    cr_assert_str_eq(g_who_leader, "");
    cr_assert_eq(g.res[1].value, (uint64_t)(-CV_EINVAL * 100), "push to no client refused, broadcast ok");
    cr_assert_eq(ph.broadcasts, 2);
    teardown();
    cv_registry_free(reg);
    /* Outside a node (no push hook): both CV_EUNAVAIL. */
    reg = cv_registry_new();
    cr_assert_eq(cv_register_type(reg, &who_type), 0);
    setup_ext(reg, NULL);
    cv_runtime_start(g.rt);
    cr_assert_eq(call_who("gate-1/abc", 0), 0);
    cr_assert(run_until(&g.completed, 1));
    cr_assert_eq(g.res[0].value, (uint64_t)(-CV_EUNAVAIL * 100 - CV_EUNAVAIL));
    teardown();
    cv_registry_free(reg);
}

/* The caller identity (issue 14): an owned copy in one block, roles looked up as whole words. */
Test(objects, caller_dup_and_roles)
{
    struct cv_caller c = {.user_id = "alice", .roles = "admin,ops", .internal = true};
    struct cv_caller *d = cv_caller_dup(&c);
    cr_assert_not_null(d);
    cr_assert_str_eq(d->user_id, "alice");
    cr_assert_str_eq(d->roles, "admin,ops");
    cr_assert(d->internal);
    cr_assert(cv_caller_has_role(d, "admin"));
    cr_assert(cv_caller_has_role(d, "ops"));
    cr_assert_not(cv_caller_has_role(d, "adm"));
    cr_assert_not(cv_caller_has_role(d, "admin,ops"));
    cr_assert_not(cv_caller_has_role(d, ""));
    cr_assert_not(cv_caller_has_role(NULL, "admin"));
    free(d);
    struct cv_caller *anon = cv_caller_dup(NULL);
    cr_assert_not_null(anon);
    cr_assert_str_eq(anon->user_id, "");
    cr_assert_str_eq(anon->roles, "");
    cr_assert_not(anon->internal);
    free(anon);
}
