/* A test module (loaded with --module): "Probe" objects record how many of their own calls were in flight
 * at once (must be 1: one method at a time per object) and how many Probe calls of the whole node process
 * were in flight at once (> 1 when different objects interleave). Enter stays in flight until a call to
 * its sink object (a SimpleCounter "<probe id>-sink") returns, so the loop runs other work meanwhile.
 * Overdraw always answers the application error INSUFFICIENT_FUNDS ("balance 5, withdraw 10", details a
 * GetValueResponse{value: 5}); Relay calls Overdraw of Probe "<id>-target" and answers what it got, as
 * "relayed: <message>" (an application error through cv_object_call). Push (SetAlarmRequest reused: name =
 * the client id, "" the caller's, "*" everyone; due_in_ms = how many; period_ms = padding bytes) pushes
 * GetUptimeResponse{uptime: "<i>:<padding of x>"} and answers how many pushes returned 0; Caller answers
 * the caller's client id (GetNodeStatsResponse.status); Stamp broadcasts due_in_ms messages
 * GetUptimeResponse{uptime: CLOCK_MONOTONIC in µs at the push} (the push fan-out bench). Who answers the
 * authenticated caller (cv_object_caller) as "user=U roles=R internal=0|1" (GetNodeStatsResponse.status);
 * AskWho calls Who of Probe "<id>-target" (object-to-object) and answers that (docs/security.md). Built
 * in the table form on purpose: existing modules keep working. */
#include <cverse/object.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sharding_demo.pb-c.h"

struct probe {
    int inflight, max;
};

static int g_inflight, g_max; /* all Probe objects of this process */

static void pinged(cv_object *caller, void *data, int status, const char *error, const ProtobufCMessage *resp)
{
    cv_reply *r = data;
    struct probe *p = cv_object_state(caller);
    p->inflight--;
    g_inflight--;
    if (status) {
        cv_reply_error(r, status, error);
        return;
    }
    ShardingDemo__IncrementResponse out = SHARDING_DEMO__INCREMENT_RESPONSE__INIT;
    cv_reply_ok(r, &out.base);
}

static void enter(cv_object *o, const ProtobufCMessage *req, cv_reply *r)
{
    struct probe *p = cv_object_state(o);
    p->inflight++;
    g_inflight++;
    if (p->inflight > p->max) p->max = p->inflight;
    if (g_inflight > g_max) g_max = g_inflight;
    char sink[256];
    snprintf(sink, sizeof sink, "%s-sink", cv_object_id(o));
    ShardingDemo__GetValueRequest ping = SHARDING_DEMO__GET_VALUE_REQUEST__INIT;
    int rv = cv_object_call(o, "SimpleCounter", sink, "GetValue", &ping.base, pinged, r);
    if (rv) {
        p->inflight--;
        g_inflight--;
        cv_reply_error(r, rv, "probe: call to the sink failed");
    }
}

/* value = (max calls of this object in flight at once) * 1000 + (max Probe calls of the process). */
static void get_value(cv_object *o, const ProtobufCMessage *req, cv_reply *r)
{
    struct probe *p = cv_object_state(o);
    ShardingDemo__GetValueResponse out = SHARDING_DEMO__GET_VALUE_RESPONSE__INIT;
    out.value = (int64_t)p->max * 1000 + g_max;
    cv_reply_ok(r, &out.base);
}

static void overdraw(cv_object *o, const ProtobufCMessage *req, cv_reply *r)
{
    ShardingDemo__GetValueResponse details = SHARDING_DEMO__GET_VALUE_RESPONSE__INIT;
    details.value = 5;
    cv_reply_app_error(r, "INSUFFICIENT_FUNDS", "balance 5, withdraw 10", &details.base);
}

static void relayed(cv_object *caller, void *data, int status, const char *error, const ProtobufCMessage *resp)
{
    const struct cv_app_error *e = cv_object_call_app_error(caller);
    char msg[512];
    if (status != CV_EAPP || !e || strcmp(e->details_type, "sharding_demo.GetValueResponse") != 0 ||
        e->details_len != 2) {
        snprintf(msg, sizeof msg, "relay: expected an application error, got %d (%s)", status, error ? error : "");
        cv_reply_error(data, CV_EPROTO, msg);
        return;
    }
    snprintf(msg, sizeof msg, "relayed: %s", e->message);
    cv_reply_app_error(data, e->code, msg, NULL);
}

static void relay(cv_object *o, const ProtobufCMessage *req, cv_reply *r)
{
    char target[256];
    snprintf(target, sizeof target, "%s-target", cv_object_id(o));
    ShardingDemo__IncrementRequest q = SHARDING_DEMO__INCREMENT_REQUEST__INIT;
    int rv = cv_object_call(o, "Probe", target, "Overdraw", &q.base, relayed, r);
    if (rv) cv_reply_error(r, rv, "probe: relay call failed");
}

static void push(cv_object *o, const ProtobufCMessage *req, cv_reply *r)
{
    const ShardingDemo__SetAlarmRequest *q = (const ShardingDemo__SetAlarmRequest *)req;
    const char *to = q->name[0] ? q->name : cv_object_caller_client(o);
    size_t pad = q->period_ms > (1u << 20) ? (1u << 20) : (size_t)q->period_ms;
    char *text = malloc(pad + 32);
    int64_t ok = 0;
    for (uint64_t i = 0; text && i < q->due_in_ms; i++) {
        int n = snprintf(text, 32, "%llu:", (unsigned long long)i);
        memset(text + n, 'x', pad);
        text[(size_t)n + pad] = 0;
        ShardingDemo__GetUptimeResponse m = SHARDING_DEMO__GET_UPTIME_RESPONSE__INIT;
        m.uptime = text;
        int rv = strcmp(to, "*") == 0 ? cv_object_broadcast(o, &m.base) : cv_object_push(o, to, &m.base);
        ok += rv == 0;
    }
    free(text);
    ShardingDemo__IncrementResponse out = SHARDING_DEMO__INCREMENT_RESPONSE__INIT;
    out.value = ok;
    cv_reply_ok(r, &out.base);
}

static void stamp(cv_object *o, const ProtobufCMessage *req, cv_reply *r)
{
    const ShardingDemo__SetAlarmRequest *q = (const ShardingDemo__SetAlarmRequest *)req;
    int64_t ok = 0;
    for (uint64_t i = 0; i < q->due_in_ms; i++) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        char text[32];
        snprintf(text, sizeof text, "%lld", (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
        ShardingDemo__GetUptimeResponse m = SHARDING_DEMO__GET_UPTIME_RESPONSE__INIT;
        m.uptime = text;
        ok += cv_object_broadcast(o, &m.base) == 0;
    }
    ShardingDemo__IncrementResponse out = SHARDING_DEMO__INCREMENT_RESPONSE__INIT;
    out.value = ok;
    cv_reply_ok(r, &out.base);
}

static void caller(cv_object *o, const ProtobufCMessage *req, cv_reply *r)
{
    ShardingDemo__GetNodeStatsResponse out = SHARDING_DEMO__GET_NODE_STATS_RESPONSE__INIT;
    char buf[256];
    snprintf(buf, sizeof buf, "client=%s", cv_object_caller_client(o));
    out.status = buf;
    cv_reply_ok(r, &out.base);
}

static void who(cv_object *o, const ProtobufCMessage *req, cv_reply *r)
{
    const struct cv_caller *c = cv_object_caller(o);
    ShardingDemo__GetNodeStatsResponse out = SHARDING_DEMO__GET_NODE_STATS_RESPONSE__INIT;
    char buf[512];
    snprintf(buf, sizeof buf, "user=%s roles=%s internal=%d admin=%d", c ? c->user_id : "?", c ? c->roles : "?",
             c ? c->internal : -1, cv_caller_has_role(c, "admin"));
    out.status = buf;
    cv_reply_ok(r, &out.base);
}

static void asked(cv_object *caller, void *data, int status, const char *error, const ProtobufCMessage *resp)
{
    if (status) cv_reply_error(data, status, error);
    else cv_reply_ok(data, resp);
}

static void ask_who(cv_object *o, const ProtobufCMessage *req, cv_reply *r)
{
    char target[256];
    snprintf(target, sizeof target, "%s-target", cv_object_id(o));
    ShardingDemo__GetNodeStatsRequest q = SHARDING_DEMO__GET_NODE_STATS_REQUEST__INIT;
    int rv = cv_object_call(o, "Probe", target, "Who", &q.base, asked, r);
    if (rv) cv_reply_error(r, rv, "probe: AskWho's call failed");
}

static const struct cv_method probe_methods[] = {
    {"Who", &sharding_demo__get_node_stats_request__descriptor, &sharding_demo__get_node_stats_response__descriptor,
     who},
    {"AskWho", &sharding_demo__get_node_stats_request__descriptor,
     &sharding_demo__get_node_stats_response__descriptor, ask_who},
    {"Push", &sharding_demo__set_alarm_request__descriptor, &sharding_demo__increment_response__descriptor, push},
    {"Stamp", &sharding_demo__set_alarm_request__descriptor, &sharding_demo__increment_response__descriptor, stamp},
    {"Caller", &sharding_demo__get_node_stats_request__descriptor,
     &sharding_demo__get_node_stats_response__descriptor, caller},
    {"Overdraw", &sharding_demo__increment_request__descriptor, &sharding_demo__increment_response__descriptor,
     overdraw},
    {"Relay", &sharding_demo__increment_request__descriptor, &sharding_demo__increment_response__descriptor,
     relay},
    {"Enter", &sharding_demo__increment_request__descriptor, &sharding_demo__increment_response__descriptor,
     enter},
    {"GetValue", &sharding_demo__get_value_request__descriptor, &sharding_demo__get_value_response__descriptor,
     get_value},
};

static const struct cv_object_type probe_type = {
    .name = "Probe",
    .state_size = sizeof(struct probe),
    .methods = probe_methods,
    .n_methods = sizeof probe_methods / sizeof probe_methods[0],
};

__attribute__((visibility("default"))) int cverse_module_init(cv_registry *reg)
{
    return cv_register_type(reg, &probe_type);
}
