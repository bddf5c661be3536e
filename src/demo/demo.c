/* The Goverse sharding demo on the cverse object SDK: four object types, message for message the same
 * as Goverse's samples/sharding_demo (proto/sharding_demo.proto).
 *
 * Happy path: cv_demo_register adds four static types. SimpleCounter counts, durably (on_write). ShardMonitor
 * ("shard#N/ShardMonitor", one per shard) answers its shard and how many objects are active in it.
 * NodeMonitor ("<node>/NodeMonitor", one per node) wakes up on a timer, and asks the cluster to create
 * those of the 100 counters whose shard its node owns, remembering which succeeded. GlobalMonitor (one
 * per cluster) answers its uptime and logs the cluster totals on a timer. Everything is logged through
 * cv_object_log, so the lines land in node.log as the demo README shows them.
 *
 * Failure modes: a counter creation that fails (shard moved, no raft leader, catalog busy) is silently
 * retried on the next scan, as in Goverse. Outside a node (a bare runtime without host hooks)
 * cv_object_create answers CV_EUNAVAIL, so the NodeMonitor creates nothing, and the cluster totals are 0.
 * A timer that cannot start fails the activation with its code.
 *
 * Every type's methods are a `service` of proto/sharding_demo.proto with typed handlers (the SDK's service
 * form: CV_SERVICE with protoc-c's generated initialiser, CV_WRITES for the methods that write).
 *
 * Only the public SDK (cverse/object.h) and core/hash.c are used, so this file also builds as the
 * loadable module cverse-demo.so (CV_DEMO_MODULE adds cverse_module_init). */
#include "demo/demo.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/hash.h"
#include "cverse/error.h"
#include "sharding_demo.pb-c.h"

#define NS_PER_SEC 1000000000ull

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

/* ---- pure helpers ---- */

/* Go's fmtFrac: the prec lowest decimal digits of *v as a fraction without trailing zeros (nothing at
 * all when they are all zero), written backwards ending at w; *v keeps the integer part. */
static size_t fmt_frac(char *buf, size_t w, uint64_t *v, int prec)
{
    bool print = false;
    for (int i = 0; i < prec; i++) {
        unsigned digit = (unsigned)(*v % 10);
        print = print || digit != 0;
        if (print) buf[--w] = (char)('0' + digit);
        *v /= 10;
    }
    if (print) buf[--w] = '.';
    return w;
}

static size_t fmt_int(char *buf, size_t w, uint64_t v)
{
    do {
        buf[--w] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    return w;
}

/* Below one second Go switches to the largest unit that keeps an integer part: ns, µs or ms. */
static size_t fmt_subsecond(char *buf, size_t w, uint64_t u)
{
    int prec;
    if (u < 1000) {
        prec = 0;
        buf[--w] = 'n';
    } else if (u < 1000000) {
        prec = 3;
        buf[--w] = '\xb5'; /* U+00B5 MICRO SIGN in UTF-8, as Go writes it */
        buf[--w] = '\xc2';
    } else {
        prec = 6;
        buf[--w] = 'm';
    }
    w = fmt_frac(buf, w, &u, prec);
    return fmt_int(buf, w, u);
}

int cv_demo_format_duration(int64_t ns, char *buf, size_t len)
{
    char tmp[40];
    size_t w = sizeof tmp;
    bool neg = ns < 0;
    uint64_t u = neg ? 0 - (uint64_t)ns : (uint64_t)ns; /* INT64_MIN included */
    tmp[--w] = 's';
    if (u == 0) {
        tmp[--w] = '0';
    } else if (u < NS_PER_SEC) {
        w = fmt_subsecond(tmp, w, u);
    } else {
        w = fmt_frac(tmp, w, &u, 9); /* u is now whole seconds */
        w = fmt_int(tmp, w, u % 60);
        u /= 60; /* minutes */
        if (u > 0) {
            tmp[--w] = 'm';
            w = fmt_int(tmp, w, u % 60);
            u /= 60; /* hours */
            if (u > 0) {
                tmp[--w] = 'h';
                w = fmt_int(tmp, w, u);
            }
        }
    }
    if (neg) tmp[--w] = '-';
    size_t n = sizeof tmp - w;
    if (!buf || n + 1 > len) return CV_ERANGE;
    memcpy(buf, tmp + w, n);
    buf[n] = '\0';
    return (int)n;
}

int cv_demo_counter_id(unsigned k, char *buf, size_t len)
{
    if (k < 1 || k > CV_DEMO_COUNTERS || !buf) return CV_ERANGE;
    int n = snprintf(buf, len, "SimpleCounter-Counter-%03u", k);
    return n < 0 || (size_t)n >= len ? CV_ERANGE : 0;
}

size_t cv_demo_counters_owned(uint32_t shards, bool (*owns)(void *data, uint32_t shard), void *data,
                              unsigned *out)
{
    size_t n = 0;
    if (shards == 0) return 0;
    for (unsigned k = 1; k <= CV_DEMO_COUNTERS; k++) {
        char id[32];
        cv_demo_counter_id(k, id, sizeof id);
        if (owns(data, cv_shard_of(id, shards))) out[n++] = k;
    }
    return n;
}

/* RFC 3339 in UTC, seconds precision, as Go's time.RFC3339 prints a UTC time. */
static void format_rfc3339(time_t t, char *buf, size_t len)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* A period from the environment; 0 (or unparsable, which the host maps to the default) means default. */
static uint64_t setting_ms(const char *name, uint64_t dflt)
{
    uint64_t v = cv_object_setting_u64(name, dflt);
    return v ? v : dflt;
}

/* ---- SimpleCounter ---- */

/* Its state is Goverse's persisted SimpleCounterData, committed on every Increment (on_write) before
 * the answer leaves: no acknowledged increment is lost to a crash, a move or a restart. GetValue writes
 * nothing and commits nothing. */
static int counter_created(cv_object *o)
{
    cv_object_log(o, "SimpleCounter %s created", cv_object_id(o));
    return 0;
}

static void counter_increment(ShardingDemo__SimpleCounter_Service *svc, const ShardingDemo__IncrementRequest *in,
                              ShardingDemo__IncrementResponse_Closure done, void *call)
{
    ShardingDemo__SimpleCounterData *c = cv_call_state(call);
    ShardingDemo__IncrementResponse resp = SHARDING_DEMO__INCREMENT_RESPONSE__INIT;
    resp.value = ++c->value;
    done(&resp, call);
}

static void counter_get_value(ShardingDemo__SimpleCounter_Service *svc, const ShardingDemo__GetValueRequest *in,
                              ShardingDemo__GetValueResponse_Closure done, void *call)
{
    ShardingDemo__SimpleCounterData *c = cv_call_state(call);
    ShardingDemo__GetValueResponse resp = SHARDING_DEMO__GET_VALUE_RESPONSE__INIT;
    resp.value = c->value;
    done(&resp, call);
}

static const struct cv_object_type counter_type = {
    .name = "SimpleCounter",
    .created = counter_created,
    .service = CV_SERVICE(ShardingDemo__SimpleCounter_Service, SHARDING_DEMO__SIMPLE_COUNTER__INIT(counter_)),
    .writes = CV_WRITES("Increment"),
    .state_message = &sharding_demo__simple_counter_data__descriptor,
    .persist = CV_PERSIST_ON_WRITE,
};

/* ---- ShardMonitor ---- */

struct shard_monitor {
    int32_t shard_id; /* -1 when the id is not "shard#N/..." (Goverse does the same) */
};

/* The runtime placed "shard#N/x" in shard N already; any other id has no shard of its own. */
static int32_t monitor_shard(const cv_object *o)
{
    return strncmp(cv_object_id(o), "shard#", 6) == 0 ? (int32_t)cv_object_shard(o) : -1;
}

static int shard_monitor_created(cv_object *o)
{
    int32_t shard = monitor_shard(o);
    if (shard < 0) cv_object_log(o, "ShardMonitor: failed to parse shard ID from object ID %s", cv_object_id(o));
    cv_object_log(o, "ShardMonitor created for shard %d", (int)shard);
    return 0;
}

static int shard_monitor_activated(cv_object *o)
{
    struct shard_monitor *s = cv_object_state(o);
    s->shard_id = monitor_shard(o);
    return 0;
}

/* Kept for Goverse compatibility, and ignored: GetStats reports the live count, which cannot go stale. */
static void shard_monitor_update_object_count(ShardingDemo__ShardMonitor_Service *svc,
                                             const ShardingDemo__UpdateObjectCountRequest *in,
                                             ShardingDemo__UpdateObjectCountResponse_Closure done, void *call)
{
    ShardingDemo__UpdateObjectCountResponse resp = SHARDING_DEMO__UPDATE_OBJECT_COUNT_RESPONSE__INIT;
    done(&resp, call);
}

static void shard_monitor_get_stats(ShardingDemo__ShardMonitor_Service *svc, const ShardingDemo__GetStatsRequest *in,
                                    ShardingDemo__GetStatsResponse_Closure done, void *call)
{
    cv_object *o = cv_call_object(call);
    struct shard_monitor *s = cv_object_state(o);
    ShardingDemo__GetStatsResponse resp = SHARDING_DEMO__GET_STATS_RESPONSE__INIT;
    resp.shard_id = s->shard_id;
    if (s->shard_id >= 0) {
        size_t n = cv_object_shard_object_count(o, (uint32_t)s->shard_id);
        resp.object_count = n > INT32_MAX ? INT32_MAX : (int32_t)n;
    }
    done(&resp, call);
}

static const struct cv_object_type shard_monitor_type = {
    .name = "ShardMonitor",
    .state_size = sizeof(struct shard_monitor),
    .created = shard_monitor_created,
    .activated = shard_monitor_activated,
    .service = CV_SERVICE(ShardingDemo__ShardMonitor_Service, SHARDING_DEMO__SHARD_MONITOR__INIT(shard_monitor_)),
};

/* ---- NodeMonitor ---- */

struct node_monitor {
    bool created[CV_DEMO_COUNTERS + 1]; /* [k]: this activation saw counter k's creation succeed */
    bool pending[CV_DEMO_COUNTERS + 1]; /* [k]: a cv_object_create is in flight */
    unsigned in_flight, new_this_round;
};

static bool node_monitor_owns(void *data, uint32_t shard)
{
    return cv_object_node_owns_shard(data, shard);
}

/* Runs outside the object's turn (a continuation of the create), which is safe: it only touches
 * bookkeeping no method reads mid-flight. */
static void node_monitor_create_done(cv_object *o, void *data, int status, const char *error)
{
    struct node_monitor *nm = cv_object_state(o);
    unsigned k = (unsigned)(uintptr_t)data;
    nm->pending[k] = false;
    nm->in_flight--;
    if (status == 0 && !nm->created[k]) {
        char id[32];
        cv_demo_counter_id(k, id, sizeof id);
        nm->created[k] = true;
        nm->new_this_round++;
        cv_object_log(o, "Created counter %s (shard %u)", id, cv_shard_of(id, cv_object_cluster_shards(o)));
    }
    if (nm->in_flight == 0 && nm->new_this_round > 0) {
        cv_object_log(o, "NodeMonitor %s: Created %u new counters", cv_object_id(o), nm->new_this_round);
        nm->new_this_round = 0;
    }
}

static void node_monitor_scan(cv_object *o, void *data)
{
    struct node_monitor *nm = cv_object_state(o);
    unsigned ks[CV_DEMO_COUNTERS];
    cv_object_log(o, "NodeMonitor %s: Scanning counter list for objects to create...", cv_object_id(o));
    size_t n = cv_demo_counters_owned(cv_object_cluster_shards(o), node_monitor_owns, o, ks);
    for (size_t i = 0; i < n; i++) {
        unsigned k = ks[i];
        if (nm->created[k] || nm->pending[k]) continue;
        char id[32];
        cv_demo_counter_id(k, id, sizeof id);
        if (cv_object_create(o, "SimpleCounter", id, node_monitor_create_done, (void *)(uintptr_t)k) != 0)
            continue; /* refused right away (no leader yet, closing): the next scan retries */
        nm->pending[k] = true;
        nm->in_flight++;
    }
}

static int node_monitor_created(cv_object *o)
{
    cv_object_log(o, "NodeMonitor %s created, will periodically create counters", cv_object_id(o));
    return 0;
}

/* Every activation scans on its own timer (timers end with the activation). */
static int node_monitor_activated(cv_object *o)
{
    uint64_t every = setting_ms("CVERSE_DEMO_SCAN_MS", CV_DEMO_SCAN_MS_DEFAULT);
    uint64_t first = every < CV_DEMO_FIRST_SCAN_MS ? every : CV_DEMO_FIRST_SCAN_MS;
    return cv_object_timer_start(o, first, every, node_monitor_scan, NULL, NULL);
}

static void node_monitor_get_stats(ShardingDemo__NodeMonitor_Service *svc, const ShardingDemo__GetNodeStatsRequest *in,
                                   ShardingDemo__GetNodeStatsResponse_Closure done, void *call)
{
    cv_object *o = cv_call_object(call);
    char status[256];
    snprintf(status, sizeof status, "node %s: %zu objects, %u shards", cv_object_node_id(o),
             cv_object_node_object_count(o), (unsigned)cv_object_node_shard_count(o));
    ShardingDemo__GetNodeStatsResponse resp = SHARDING_DEMO__GET_NODE_STATS_RESPONSE__INIT;
    resp.status = status;
    done(&resp, call);
}

static const struct cv_object_type node_monitor_type = {
    .name = "NodeMonitor",
    .state_size = sizeof(struct node_monitor),
    .created = node_monitor_created,
    .activated = node_monitor_activated,
    .service = CV_SERVICE(ShardingDemo__NodeMonitor_Service, SHARDING_DEMO__NODE_MONITOR__INIT(node_monitor_)),
};

/* ---- GlobalMonitor ---- */

struct global_monitor {
    uint64_t start_ns; /* monotonic; set by the first hook of the activation */
};

static void global_monitor_start(cv_object *o)
{
    struct global_monitor *g = cv_object_state(o);
    if (!g->start_ns) g->start_ns = mono_ns();
}

static int global_monitor_created(cv_object *o)
{
    char when[32];
    global_monitor_start(o);
    format_rfc3339(time(NULL), when, sizeof when);
    cv_object_log(o, "GlobalMonitor created at %s", when);
    return 0;
}

static void global_monitor_tick(cv_object *o, void *data)
{
    struct global_monitor *g = cv_object_state(o);
    uint64_t up = mono_ns() - g->start_ns;
    char uptime[40];
    cv_demo_format_duration((int64_t)((up + NS_PER_SEC / 2) / NS_PER_SEC * NS_PER_SEC), uptime, sizeof uptime);
    cv_object_log(o, "Global Stats: Uptime=%s, nodes=%zu, objects=%zu", uptime, cv_object_cluster_node_count(o),
                  cv_object_cluster_object_count(o));
}

static int global_monitor_activated(cv_object *o)
{
    uint64_t every = setting_ms("CVERSE_DEMO_GLOBAL_LOG_MS", CV_DEMO_GLOBAL_LOG_MS_DEFAULT);
    global_monitor_start(o);
    return cv_object_timer_start(o, every, every, global_monitor_tick, NULL, NULL);
}

static void global_monitor_get_uptime(ShardingDemo__GlobalMonitor_Service *svc, const ShardingDemo__GetUptimeRequest *in,
                                      ShardingDemo__GetUptimeResponse_Closure done, void *call)
{
    struct global_monitor *g = cv_call_state(call);
    char uptime[40];
    cv_demo_format_duration((int64_t)(mono_ns() - g->start_ns), uptime, sizeof uptime);
    ShardingDemo__GetUptimeResponse resp = SHARDING_DEMO__GET_UPTIME_RESPONSE__INIT;
    resp.uptime = uptime;
    done(&resp, call);
}

static const struct cv_object_type global_monitor_type = {
    .name = "GlobalMonitor",
    .state_size = sizeof(struct global_monitor),
    .created = global_monitor_created,
    .activated = global_monitor_activated,
    .service = CV_SERVICE(ShardingDemo__GlobalMonitor_Service, SHARDING_DEMO__GLOBAL_MONITOR__INIT(global_monitor_)),
};

/* ---- Alarm: durable reminders ---- */

/* Set registers a reminder (committed before the answer: on_write), its reminder hook appends the due
 * time it fired for to the state (so a test sees every firing, once per due time) and logs a line. */
#define ALARM_KEEP 1000

static void alarm_set(ShardingDemo__Alarm_Service *svc, const ShardingDemo__SetAlarmRequest *in,
                      ShardingDemo__SetAlarmResponse_Closure done, void *call)
{
    int rv = cv_object_reminder_set(cv_call_object(call), in->name, in->due_in_ms, in->period_ms);
    if (rv) {
        cv_call_fail(call, rv, NULL);
        return;
    }
    ShardingDemo__SetAlarmResponse resp = SHARDING_DEMO__SET_ALARM_RESPONSE__INIT;
    done(&resp, call);
}

static void alarm_clear(ShardingDemo__Alarm_Service *svc, const ShardingDemo__ClearAlarmRequest *in,
                        ShardingDemo__ClearAlarmResponse_Closure done, void *call)
{
    ShardingDemo__ClearAlarmResponse resp = SHARDING_DEMO__CLEAR_ALARM_RESPONSE__INIT;
    resp.cleared = cv_object_reminder_clear(cv_call_object(call), in->name) == 0;
    done(&resp, call);
}

static void alarm_get(ShardingDemo__Alarm_Service *svc, const ShardingDemo__GetAlarmsRequest *in,
                      ShardingDemo__GetAlarmsResponse_Closure done, void *call)
{
    ShardingDemo__AlarmData *a = cv_call_state(call);
    ShardingDemo__GetAlarmsResponse resp = SHARDING_DEMO__GET_ALARMS_RESPONSE__INIT;
    resp.fired = a->fired;
    resp.n_fired = a->n_fired;
    done(&resp, call);
}

static void alarm_reminder(cv_object *o, const char *name, uint64_t due_ms)
{
    ShardingDemo__AlarmData *a = cv_object_state(o);
    if (a->n_fired == ALARM_KEEP) {
        memmove(a->fired, a->fired + 1, (ALARM_KEEP - 1) * sizeof *a->fired);
        a->n_fired--;
    }
    uint64_t *f = realloc(a->fired, (a->n_fired + 1) * sizeof *f); /* malloc'ed, as the SDK asks */
    if (!f) return;
    a->fired = f;
    a->fired[a->n_fired++] = due_ms;
    cv_object_mark_dirty(o);
    cv_object_log(o, "Alarm %s: reminder %s fired for due time %llu", cv_object_id(o), name,
                  (unsigned long long)due_ms);
}

static const struct cv_object_type alarm_type = {
    .name = "Alarm",
    .service = CV_SERVICE(ShardingDemo__Alarm_Service, SHARDING_DEMO__ALARM__INIT(alarm_)),
    .writes = CV_WRITES("Set", "Clear"),
    .state_message = &sharding_demo__alarm_data__descriptor,
    .persist = CV_PERSIST_ON_WRITE,
    .reminder = alarm_reminder,
};

/* ---- registration ---- */

int cv_demo_register(cv_registry *reg)
{
    static const struct cv_object_type *const types[] = {&counter_type, &shard_monitor_type,
                                                         &node_monitor_type, &global_monitor_type, &alarm_type,
                                                         &cv_demo_chat_type};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        int rv = cv_register_type(reg, types[i]);
        if (rv != 0) return rv;
    }
    return 0;
}

#ifdef CV_DEMO_MODULE
/* The dlopen entry point (see CV_MODULE_INIT_SYMBOL in cverse/object.h); the only symbol the module
 * exports (it is built with hidden visibility). */
__attribute__((visibility("default"))) int cverse_module_init(cv_registry *reg);

int cverse_module_init(cv_registry *reg)
{
    return cv_demo_register(reg);
}
#endif
