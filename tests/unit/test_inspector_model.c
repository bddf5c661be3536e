/* The inspector's pure parts: the events ring and the model built from node answers, and the events the
 * difference between two models makes. No sockets: the answers are JSON written here. */
#include <criterion/criterion.h>
#include <string.h>

#include "config/config.h"
#include "core/hash.h"
#include "cverse/error.h"
#include "inspector/api.h"
#include "inspector/events.h"
#include "inspector/follow.h"
#include "inspector/model.h"
#include "inspector/stats.h"

static const char yaml[] =
    "version: 1\ncluster:\n  shards: 4\nnodes:\n"
    "  - id: node-1\n    grpc_addr: 127.0.0.1:47001\n    http_addr: 127.0.0.1:48001\n"
    "  - id: node-2\n    grpc_addr: 127.0.0.1:47002\n    http_addr: 127.0.0.1:48002\n";

static struct cv_config *cfg;

static void setup(void)
{
    char err[256];
    cr_assert_eq(cv_config_parse(yaml, sizeof yaml - 1, "t.yml", &cfg, err, sizeof err), 0, "%s", err);
}

static void teardown(void)
{
    cv_config_free(cfg);
}

TestSuite(model, .init = setup, .fini = teardown);

/* ---- events ---------------------------------------------------------------------------------------- */

struct seen {
    uint64_t ids[16];
    int n;
};

static void collect(void *data, uint64_t id, const char *json)
{
    struct seen *s = data;
    cr_assert(strstr(json, "\"type\":\"t\""), "%s", json);
    s->ids[s->n++] = id;
}

Test(events, numbered_bounded_and_gaps_reported)
{
    struct cv_insp_events *e;
    cr_assert_eq(cv_insp_events_new(4, &e), 0);
    cr_assert_eq(cv_insp_events_last(e), 0);
    for (int i = 1; i <= 6; i++) cr_assert_eq(cv_insp_events_push(e, "t", NULL, 1000), (uint64_t)i);
    cr_assert_eq(cv_insp_events_oldest(e), 3, "ring of 4 keeps 3..6");
    struct seen s = {0};
    cr_assert_eq(cv_insp_events_since(e, 4, collect, &s), 2);
    cr_assert(s.ids[0] == 5 && s.ids[1] == 6);
    s.n = 0;
    cr_assert_eq(cv_insp_events_since(e, 2, collect, &s), 4, "after 2: 3..6 all kept");
    cr_assert_eq(cv_insp_events_since(e, 1, collect, &s), -1, "event 2 is gone: resync");
    cr_assert_eq(cv_insp_events_since(e, 6, collect, &s), 0);
    json_t *tail = cv_insp_events_tail(e, 2);
    cr_assert_eq(json_array_size(tail), 2);
    cr_assert_eq(json_integer_value(json_object_get(json_array_get(tail, 1), "id")), 6);
    json_decref(tail);
    cv_insp_events_free(e);
}

/* ---- model ----------------------------------------------------------------------------------------- */

static void answer(struct cv_insp_model *m, size_t i, const char *leader, const char *owners, int alive2)
{
    char c[512];
    snprintf(c, sizeof c,
             "{\"leader\":%s,\"state\":\"%s\",\"term\":3,\"commit_index\":10,\"applied_index\":%zu,"
             "\"nodes\":[{\"id\":\"node-1\",\"role\":\"voter\",\"alive\":true,\"registered\":true},"
             "{\"id\":\"node-2\",\"role\":\"voter\",\"alive\":%s,\"registered\":true}]}",
             leader, i == 0 ? "leader" : "follower", 10 + i, alive2 ? "true" : "false");
    cv_insp_model_set(m, i, CV_INSP_CLUSTER, json_loads(c, 0, NULL));
    snprintf(c, sizeof c, "{\"applied_index\":%zu,\"owners\":%s,\"epochs\":[1,1,2,2]}", 10 + i, owners);
    cv_insp_model_set(m, i, CV_INSP_SHARDS, json_loads(c, 0, NULL));
    cv_insp_model_set(m, i, CV_INSP_READY, json_loads("{\"ready\":false,\"reason\":\"x\"}", 0, NULL));
    cv_insp_model_set(m, i, CV_INSP_OBJECTS,
                      json_loads(i ? "{\"objects\":[{\"type\":\"T\",\"id\":\"<b>\",\"shard\":3}]}" : "{\"objects\":[]}",
                                 0, NULL));
}

struct got {
    char types[16][32];
    int n;
    json_t *last_move;
};

static void emit(void *data, const char *type, json_t *fields)
{
    struct got *g = data;
    snprintf(g->types[g->n++], sizeof g->types[0], "%s", type);
    if (!strcmp(type, "shard_moved")) {
        json_decref(g->last_move);
        g->last_move = json_incref(fields);
    }
}

static bool has(const struct got *g, const char *type)
{
    for (int i = 0; i < g->n; i++)
        if (!strcmp(g->types[i], type)) return true;
    return false;
}

Test(model, built_from_answers_and_diffed_into_events)
{
    struct cv_insp_model a, b;
    cr_assert_eq(cv_insp_model_init(&a, cfg), 0);
    cr_assert_eq(cv_insp_model_init(&b, cfg), 0);
    /* Round 1: both answer; node-2 is the most advanced, its map wins. */
    cv_insp_model_begin(&b);
    answer(&b, 0, "\"node-1\"", "[\"node-1\",\"node-1\",null,null]", 1);
    answer(&b, 1, "\"node-1\"", "[\"node-1\",\"node-1\",\"node-2\",\"node-2\"]", 1);
    cv_insp_model_finish(&b, NULL, 5000);
    cr_assert(b.have && b.has_map);
    cr_assert_eq(b.leader, 0);
    cr_assert_eq(b.owner[3], 1);
    cr_assert(b.nodes[0].up && b.nodes[1].up);
    cr_assert_eq(b.nodes[1].shards, 2);
    cr_assert_eq(b.objects_per_shard[3], 1);
    cr_assert_str_eq(b.nodes[1].objects[0].id, "<b>");
    struct got g = {0};
    cv_insp_model_diff(&a, &b, 8, emit, &g);
    cr_assert(has(&g, "node_up") && has(&g, "leader_changed"));
    cr_assert(!has(&g, "shard_moved"), "no map before: nothing moved");
    /* Round 2: node-2 unreachable; node-1's map (carried or its own) shows shard 3 moved to node-1. */
    cv_insp_model_begin(&a);
    answer(&a, 0, "\"node-1\"", "[\"node-1\",\"node-1\",\"node-2\",\"node-1\"]", 0);
    cv_insp_model_set_error(&a, 1, "connection refused");
    cv_insp_model_finish(&a, &b, 6000);
    cr_assert(!a.nodes[1].up && !a.nodes[1].reachable);
    cr_assert_str_eq(a.nodes[1].error, "connection refused");
    cr_assert_eq(a.nodes[1].last_seen_ms, 5000, "last seen carried over");
    g.n = 0;
    cv_insp_model_diff(&b, &a, 8, emit, &g);
    cr_assert(has(&g, "node_down"));
    cr_assert(has(&g, "shard_moved"));
    cr_assert_eq(json_integer_value(json_object_get(g.last_move, "shard")), 3);
    cr_assert_str_eq(json_string_value(json_object_get(g.last_move, "from")), "node-2");
    cr_assert_str_eq(json_string_value(json_object_get(g.last_move, "to")), "node-1");
    /* The Goverse /shards shape from the model. */
    json_t *sh = cv_insp_api_shards(&a);
    json_t *s3 = json_array_get(json_object_get(sh, "shards"), 3);
    cr_assert_str_eq(json_string_value(json_object_get(s3, "target_node")), "node-1");
    cr_assert_eq(json_array_size(json_object_get(sh, "nodes")), 2);
    json_decref(sh);
    cr_assert_eq(cv_insp_model_find(&a, "127.0.0.1:47002"), 1, "found by advertise address");
    cr_assert_eq(cv_insp_model_find(&a, "node-9"), CV_INSP_NO_NODE);
    json_decref(g.last_move);
    cv_insp_model_free(&a);
    cv_insp_model_free(&b);
}

Test(model, operator_wishes_targets_pins_and_draining)
{
    struct cv_insp_model m;
    cr_assert_eq(cv_insp_model_init(&m, cfg), 0);
    cv_insp_model_begin(&m);
    for (size_t i = 0; i < 2; i++) /* both answer (up) */
        cv_insp_model_set(&m, i, CV_INSP_CLUSTER,
                          json_loads("{\"leader\":\"node-1\",\"term\":2,\"applied_index\":7,\"nodes\":["
                                     "{\"id\":\"node-1\",\"alive\":true,\"registered\":true,\"draining\":false},"
                                     "{\"id\":\"node-2\",\"alive\":true,\"registered\":true,\"draining\":true}]}",
                                     0, NULL));
    cv_insp_model_set(&m, 0, CV_INSP_SHARDS,
                      json_loads("{\"applied_index\":7,\"owners\":[\"node-1\",\"node-2\",\"node-1\",null],"
                                 "\"epochs\":[1,1,1,0],\"targets\":[null,\"node-1\",null,null],"
                                 "\"pinned\":[false,false,true,false]}",
                                 0, NULL));
    cv_insp_model_set(&m, 1, CV_INSP_OBJECTS,
                      json_loads("{\"objects\":[{\"type\":\"T\",\"id\":\"shard#2/x\",\"shard\":2}]}", 0, NULL));
    cv_insp_model_finish(&m, NULL, 1000);
    cr_assert(!m.nodes[0].draining && m.nodes[1].draining);
    cr_assert_eq(m.target[0], CV_INSP_NO_NODE);
    cr_assert_eq(m.target[1], 0, "shard 1 is meant to move to node-1");
    cr_assert(m.pinned[2] && !m.pinned[1]);

    /* /shards: target_node is the operator's target (else the owner), flags name pinned / unassigned. */
    json_t *sh = cv_insp_api_shards(&m), *list = json_object_get(sh, "shards");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(list, 1), "target_node")), "node-1");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(list, 1), "current_node")), "node-2");
    json_t *f2 = json_object_get(json_array_get(list, 2), "flags"), *f3 = json_object_get(json_array_get(list, 3), "flags");
    cr_assert(json_array_size(f2) == 1 && !strcmp(json_string_value(json_array_get(f2, 0)), "pinned"));
    cr_assert(json_array_size(f3) == 1 && !strcmp(json_string_value(json_array_get(f3, 0)), "unassigned"));
    json_decref(sh);

    /* The object lookup: the nodes' placement, the shard's owner and wishes, active or not. */
    int err;
    json_t *o = cv_insp_api_object(&m, "T", "shard#2/x", &err);
    cr_assert_not_null(o);
    cr_assert_eq(json_integer_value(json_object_get(o, "shard")), 2);
    cr_assert_str_eq(json_string_value(json_object_get(o, "placement")), "shard");
    cr_assert_str_eq(json_string_value(json_object_get(o, "owner")), "node-1");
    cr_assert(json_is_true(json_object_get(o, "pinned")) && json_is_true(json_object_get(o, "active")));
    cr_assert_str_eq(json_string_value(json_object_get(o, "active_on")), "node-2");
    json_decref(o);
    o = cv_insp_api_object(&m, "U", "shard#2/x", &err);
    cr_assert(json_is_false(json_object_get(o, "active")), "another type is not this object");
    json_decref(o);
    o = cv_insp_api_object(&m, "", "plain-id", &err);
    cr_assert_eq(json_integer_value(json_object_get(o, "shard")), cv_shard_of("plain-id", 4), "FNV-1a placement");
    cr_assert_str_eq(json_string_value(json_object_get(o, "placement")), "hash");
    json_decref(o);
    o = cv_insp_api_object(&m, "T", "node-2/y", &err);
    cr_assert_str_eq(json_string_value(json_object_get(o, "owner")), "node-2", "a node-placed id lives on its node");
    cr_assert_str_eq(json_string_value(json_object_get(o, "placed_node")), "node-2");
    json_decref(o);
    cr_assert_null(cv_insp_api_object(&m, "T", "shard#9/x", &err));
    cr_assert_eq(err, CV_EINVAL);
    cr_assert_null(cv_insp_api_object(&m, "T", "", &err));

    /* The node the inspector asks for an object's state: where it is active, else its owner. */
    int nd;
    cr_assert_eq(cv_insp_api_state_node(&m, "T", "shard#2/x", &nd), 0);
    cr_assert_eq(nd, 1, "active on node-2 (its shard's owner is node-1)");
    cr_assert_eq(cv_insp_api_state_node(&m, "T", "shard#1/y", &nd), 0);
    cr_assert_eq(nd, 1, "not active: shard 1's owner, node-2");
    cr_assert_eq(cv_insp_api_state_node(&m, "T", "shard#3/y", &nd), 0);
    cr_assert_eq(nd, CV_INSP_NO_NODE, "shard 3 has no owner");
    cr_assert_eq(cv_insp_api_state_node(&m, "T", "node-1/z", &nd), 0);
    cr_assert_eq(nd, 0, "a node-placed id: its node");
    cr_assert_eq(cv_insp_api_state_node(&m, "T", "shard#9/x", &nd), CV_EINVAL);
    char path[48];
    cr_assert_eq(cv_insp_api_state_path("Simple.T", "shard#2/a b~", path, sizeof path), 0);
    cr_assert_str_eq(path, "/v1/objects/Simple.T/shard%232%2Fa%20b~", "both parts percent-encoded");
    cr_assert_eq(cv_insp_api_state_path("T", "0123456789012345678901234567890123456789", path, sizeof path),
                 CV_ERANGE);

    /* A round where no node answers /v1/shards carries the wishes over. */
    struct cv_insp_model n;
    cr_assert_eq(cv_insp_model_init(&n, cfg), 0);
    cv_insp_model_begin(&n);
    cv_insp_model_finish(&n, &m, 2000);
    cr_assert(n.has_map && n.target[1] == 0 && n.pinned[2]);
    cv_insp_model_free(&n);
    cv_insp_model_free(&m);
}

/* ---- statistics from cumulative /v1/stats reads ------------------------------------------------------ */

/* A round where node i (both answer /v1/cluster) reports uptime, calls, errors; T.M took `calls` calls
 * with latencies in bucket 1 (1..2.5 ms), shard 2 `calls` calls. */
static void stats_round(struct cv_insp_model *m, uint64_t up, uint64_t calls, uint64_t errors, bool node2, uint64_t now)
{
    char c[700];
    cv_insp_model_begin(m);
    for (size_t i = 0; i < 2; i++) {
        if (i == 1 && !node2) {
            cv_insp_model_set_error(m, 1, "connection refused");
            continue;
        }
        cv_insp_model_set(m, i, CV_INSP_CLUSTER,
                          json_loads("{\"leader\":\"node-1\",\"term\":1,\"applied_index\":5,\"nodes\":["
                                     "{\"id\":\"node-1\",\"alive\":true,\"registered\":true},"
                                     "{\"id\":\"node-2\",\"alive\":true,\"registered\":true}]}", 0, NULL));
        snprintf(c, sizeof c,
                 "{\"node\":\"x\",\"uptime_ms\":%llu,\"rss_bytes\":50000000,\"cpu_seconds\":%.3f,"
                 "\"calls\":%llu,\"errors\":%llu,"
                 "\"shards\":{\"2\":{\"calls\":%llu,\"errors\":0}},\"methods\":[{\"type\":\"T\",\"method\":\"M\","
                 "\"calls\":%llu,\"errors\":%llu,\"sum_ms\":%llu,\"buckets\":[0,%llu,0]}]}",
                 (unsigned long long)up, (double)up / 10000, (unsigned long long)calls, (unsigned long long)errors,
                 (unsigned long long)calls, (unsigned long long)calls, (unsigned long long)errors,
                 (unsigned long long)(2 * calls), (unsigned long long)calls);
        cv_insp_model_set(m, i, CV_INSP_STATS, json_loads(c, 0, NULL));
        cv_insp_model_set(m, i, CV_INSP_OBJECTS,
                          json_loads("{\"objects\":[{\"type\":\"T\",\"id\":\"a\",\"shard\":2}]}", 0, NULL));
    }
    cv_insp_model_finish(m, NULL, now);
}

static double num_at(json_t *o, const char *k)
{
    return json_number_value(json_object_get(o, k));
}

Test(model, stats_rates_between_reads_restarts_and_history)
{
    struct cv_insp_model m;
    struct cv_insp_stats *st;
    cr_assert_eq(cv_insp_model_init(&m, cfg), 0);
    cr_assert_eq(cv_insp_stats_new(cfg, &st), 0);
    stats_round(&m, 1000, 100, 10, true, 1000);
    cv_insp_stats_update(st, &m);
    json_t *j = cv_insp_stats_json(st, &m);
    cr_assert_eq(num_at(j, "calls_s"), 0, "one read: no rate yet");
    cr_assert(json_is_null(json_object_get(json_array_get(json_object_get(j, "nodes"), 0), "cpu_pct")));
    cr_assert(json_is_null(json_object_get(j, "p50_ms")));
    json_decref(j);

    /* 2 s later each node took 200 more calls, 20 more errors: 100 calls/s and 10 errors/s per node. */
    stats_round(&m, 3000, 300, 30, true, 3000);
    cv_insp_stats_update(st, &m);
    j = cv_insp_stats_json(st, &m);
    cr_assert_float_eq(num_at(j, "calls_s"), 200, 1e-9);
    cr_assert_float_eq(num_at(j, "errors_s"), 20, 1e-9);
    double p50 = num_at(j, "p50_ms");
    cr_assert(p50 > 1 && p50 <= 2.5, "p50 %f inside the (1, 2.5] ms bucket", p50);
    json_t *n1 = json_array_get(json_object_get(j, "nodes"), 0);
    cr_assert(json_is_true(json_object_get(n1, "live")));
    cr_assert_float_eq(num_at(n1, "calls_s"), 100, 1e-9);
    cr_assert_float_eq(num_at(n1, "error_rate"), 0.1, 1e-9);
    cr_assert_eq(json_integer_value(json_object_get(n1, "uptime_ms")), 3000);
    cr_assert_eq(json_integer_value(json_object_get(n1, "rss_bytes")), 50000000);
    cr_assert_float_eq(num_at(n1, "cpu_pct"), 10, 1e-6, "0.2 CPU seconds over 2 s");
    json_t *meth = json_array_get(json_object_get(j, "methods"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(meth, "method")), "M");
    cr_assert_float_eq(num_at(meth, "calls_s"), 200, 1e-9);
    cr_assert_eq(json_integer_value(json_object_get(meth, "errors")), 60, "cumulative errors over the nodes");
    json_t *ty = json_array_get(json_object_get(j, "types"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(ty, "type")), "T");
    cr_assert_eq(json_integer_value(json_object_get(ty, "active")), 2, "one active T on each node");
    cr_assert_float_eq(json_number_value(json_array_get(json_object_get(j, "shard_calls_s"), 2)), 200, 1e-9);
    cr_assert_eq(json_array_size(json_object_get(json_object_get(j, "history"), "calls_s")), 2);
    json_decref(j);

    /* node-2 down: the cluster's rate is node-1's alone (never negative); back, its first read is a new
     * baseline (no rate from it until its next read). */
    stats_round(&m, 4000, 400, 40, false, 4000);
    cv_insp_stats_update(st, &m);
    j = cv_insp_stats_json(st, &m);
    cr_assert_float_eq(num_at(j, "calls_s"), 100, 1e-9);
    json_decref(j);
    stats_round(&m, 5000, 500, 50, true, 5000);
    cv_insp_stats_update(st, &m);
    j = cv_insp_stats_json(st, &m);
    cr_assert(json_is_false(json_object_get(json_array_get(json_object_get(j, "nodes"), 1), "live")));
    cr_assert_float_eq(num_at(j, "calls_s"), 100, 1e-9, "node-2's first read after it was down gives no rate");
    json_decref(j);
    /* Both restarted (uptime and counters went back): no rate this round, rates again from the next. */
    stats_round(&m, 100, 5, 0, true, 6000);
    cv_insp_stats_update(st, &m);
    j = cv_insp_stats_json(st, &m);
    cr_assert_eq(num_at(j, "calls_s"), 0);
    json_decref(j);
    stats_round(&m, 1100, 105, 0, true, 7000);
    cv_insp_stats_update(st, &m);
    j = cv_insp_stats_json(st, &m);
    cr_assert_float_eq(num_at(j, "calls_s"), 200, 1e-9);
    cr_assert_eq(json_array_size(json_object_get(json_object_get(j, "history"), "calls_s")), 6);
    json_decref(j);
    cv_insp_stats_free(st);
    cv_insp_model_free(&m);
}

/* ---- the change feed's follower ----------------------------------------------------------------------- */

struct got_events {
    char types[16][24];
    json_t *ev[16];
    int n;
};

static void got_emit(void *data, const char *type, json_t *fields)
{
    struct got_events *g = data;
    if (g->n >= 16) return;
    snprintf(g->types[g->n], sizeof g->types[g->n], "%s", type);
    g->ev[g->n++] = json_incref(fields);
}

static void got_free(struct got_events *g)
{
    for (int i = 0; i < g->n; i++) json_decref(g->ev[i]);
    g->n = 0;
}

Test(model, follow_feed_moves_with_duration_and_gaps)
{
    struct cv_insp_follow f;
    cr_assert_eq(cv_insp_follow_init(&f, 16), 0);
    struct got_events g = {0};
    cr_assert_eq(cv_insp_follow_after(&f), 0);
    json_t *d = json_loads("{\"first_index\":1,\"applied_index\":10,\"more\":false,\"events\":["
                           "{\"index\":3,\"time_ms\":1,\"kind\":\"shard_assigned\",\"shard\":1,\"to\":\"a\"}]}", 0, NULL);
    cr_assert_eq(cv_insp_follow_take(&f, d, 8, got_emit, &g), CV_INSP_FOLLOW_FIRST);
    json_decref(d);
    cr_assert_eq(g.n, 0, "history before the first answer is the snapshot's");
    cr_assert_eq(cv_insp_follow_after(&f), 10);
    /* Shard 1 moved a -> b and b -> c within 400 ms: two moves, each with its duration. */
    d = json_loads("{\"first_index\":1,\"applied_index\":16,\"more\":false,\"events\":["
                   "{\"index\":11,\"time_ms\":1000,\"kind\":\"shard_target\",\"shard\":1,\"from\":null,\"to\":\"b\"},"
                   "{\"index\":11,\"time_ms\":1000,\"kind\":\"shard_unassigned\",\"shard\":1,\"from\":\"a\",\"to\":null,\"old_epoch\":1,\"epoch\":2},"
                   "{\"index\":12,\"time_ms\":1050,\"kind\":\"shard_released\",\"shard\":1,\"from\":\"a\",\"to\":null,\"old_epoch\":2,\"epoch\":2},"
                   "{\"index\":13,\"time_ms\":1100,\"kind\":\"shard_assigned\",\"shard\":1,\"from\":null,\"to\":\"b\",\"old_epoch\":2,\"epoch\":3},"
                   "{\"index\":14,\"time_ms\":1200,\"kind\":\"shard_unassigned\",\"shard\":1,\"from\":\"b\",\"to\":null,\"old_epoch\":3,\"epoch\":4},"
                   "{\"index\":15,\"time_ms\":1400,\"kind\":\"shard_assigned\",\"shard\":1,\"from\":null,\"to\":\"c\",\"old_epoch\":4,\"epoch\":5},"
                   "{\"index\":16,\"time_ms\":1400,\"kind\":\"node_expired\",\"node\":\"d\",\"incarnation\":2}]}", 0, NULL);
    cr_assert_eq(cv_insp_follow_take(&f, d, 8, got_emit, &g), CV_INSP_FOLLOW_OK);
    json_decref(d);
    cr_assert_eq(g.n, 4);
    cr_assert_str_eq(g.types[0], "shard_target");
    cr_assert_str_eq(g.types[1], "shard_moved");
    cr_assert_str_eq(json_string_value(json_object_get(g.ev[1], "from")), "a");
    cr_assert_str_eq(json_string_value(json_object_get(g.ev[1], "to")), "b");
    cr_assert_eq(json_integer_value(json_object_get(g.ev[1], "duration_ms")), 100);
    cr_assert_eq(json_integer_value(json_object_get(g.ev[1], "previous_epoch")), 1);
    cr_assert_eq(json_integer_value(json_object_get(g.ev[1], "epoch")), 3);
    cr_assert_eq(json_integer_value(json_object_get(g.ev[1], "index")), 13);
    cr_assert_str_eq(g.types[2], "shard_moved");
    cr_assert_str_eq(json_string_value(json_object_get(g.ev[2], "from")), "b");
    cr_assert_str_eq(json_string_value(json_object_get(g.ev[2], "to")), "c");
    cr_assert_eq(json_integer_value(json_object_get(g.ev[2], "duration_ms")), 200);
    cr_assert_str_eq(g.types[3], "node_expired");
    cr_assert_eq(cv_insp_follow_after(&f), 16);
    got_free(&g);
    /* A dead owner's shard given straight to another node: a move without a handoff to time. */
    d = json_loads("{\"first_index\":1,\"applied_index\":17,\"more\":false,\"events\":["
                   "{\"index\":17,\"time_ms\":1500,\"kind\":\"shard_assigned\",\"shard\":2,\"from\":\"d\",\"to\":\"a\",\"old_epoch\":1,\"epoch\":2}]}", 0, NULL);
    cr_assert_eq(cv_insp_follow_take(&f, d, 8, got_emit, &g), CV_INSP_FOLLOW_OK);
    json_decref(d);
    cr_assert_eq(g.n, 1);
    cr_assert_str_eq(json_string_value(json_object_get(g.ev[0], "from")), "d");
    cr_assert(json_is_null(json_object_get(g.ev[0], "duration_ms")));
    cr_assert_eq(cv_insp_follow_after(&f), 17);
    got_free(&g);
    /* The same answer again (another node, same cursor): nothing twice. */
    d = json_loads("{\"first_index\":1,\"applied_index\":17,\"more\":false,\"events\":["
                   "{\"index\":16,\"time_ms\":1400,\"kind\":\"node_expired\",\"node\":\"d\"}]}", 0, NULL);
    cr_assert_eq(cv_insp_follow_take(&f, d, 8, got_emit, &g), CV_INSP_FOLLOW_OK);
    json_decref(d);
    cr_assert_eq(g.n, 0);
    /* A node whose ring starts after the cursor: a gap, the cursor jumps. */
    d = json_loads("{\"first_index\":30,\"applied_index\":40,\"more\":false,\"events\":[]}", 0, NULL);
    cr_assert_eq(cv_insp_follow_take(&f, d, 8, got_emit, &g), CV_INSP_FOLLOW_GAP);
    json_decref(d);
    cr_assert_eq(cv_insp_follow_after(&f), 40);
    d = json_loads("{\"error\":\"x\"}", 0, NULL);
    cr_assert_eq(cv_insp_follow_take(&f, d, 8, got_emit, &g), CV_INSP_FOLLOW_BAD);
    json_decref(d);
    cr_assert_eq(cv_insp_follow_after(&f), 40);
    got_free(&g);
    cv_insp_follow_free(&f);
}
