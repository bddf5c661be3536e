/* Integration: the node's admin endpoints on a real 3-node raft group (64 shards) with a gate.
 * - a shard moved to another node (by id, and by advertise address) is owned by it on every node's
 *   /v1/shards within a deadline, and calls through the gate to an object on that shard never fail
 *   while it moves (the object then runs on the new owner);
 * - a pinned shard stays pinned, but draining its owner moves it away anyway: drain wins over pin (a
 *   draining node keeps nothing); an undrained node gets shards back;
 * - strict requests: 400 for bad JSON, unknown or missing keys, wrong types and shards out of range,
 *   404 for an unknown node or admin path, 405 for GET.
 * Polls with deadlines; never sleeps as synchronisation. */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "harness.h"

#define READY_MS 30000
#define MOVE_MS 15000
#define SHARDS 64

static struct h_cluster C;

static void teardown(void)
{
    h_cluster_destroy(&C);
}

TestSuite(admin, .fini = teardown, .timeout = 240);

/* ---------------------------------------------------------------- helpers */

/* Node i's HTTP port and advertise address, as harness.c lays out the ports. */
static int node_port(int i)
{
    return C.base + 100 + i;
}


static void start(void)
{
    struct h_opts o = {.gates = 1};
    h_cluster_init_ex(&C, 3, 3, 1000, &o);
    for (int i = 0; i < 3; i++) h_node_start(&C, i);
    h_gate_start(&C, 0);
    cr_assert(h_poll(READY_MS, h_all_ready, &C), "nodes and gate did not become ready");
}

/* POSTs body to an admin path of node i; returns the parsed answer (NULL if not JSON), *st the status. */
static json_t *admin(int i, const char *path, const char *body, long *st)
{
    char *t = h_post(node_port(i), path, body, strlen(body), st);
    json_t *j = t ? json_loads(t, 0, NULL) : NULL;
    free(t);
    return j;
}

/* An admin request that must succeed: 200 {"index":N} with N > 0. */
static void admin_ok(int i, const char *path, const char *body)
{
    long st;
    json_t *j = admin(i, path, body, &st);
    cr_assert_eq(st, 200, "%s %s -> %ld", path, body, st);
    cr_assert(json_integer_value(json_object_get(j, "index")) > 0, "%s: no index", path);
    json_decref(j);
}

/* An admin request that must fail with status want and an error body naming code. */
static void admin_err(int i, const char *path, const char *body, long want, const char *code)
{
    long st;
    json_t *j = admin(i, path, body, &st);
    cr_assert_eq(st, want, "%s %s -> %ld, want %ld", path, body, st, want);
    cr_assert_str_eq(json_string_value(json_object_get(j, "code")), code, "%s %s", path, body);
    cr_assert(json_is_string(json_object_get(j, "error")));
    json_decref(j);
}

/* Field `key` of shard s in node i's /v1/shards (a new reference, NULL if unreachable). */
static json_t *shard_field(int i, const char *key, int s)
{
    long st;
    json_t *j = h_get_json(&C, i, "/v1/shards", &st);
    if (!j) return NULL;
    json_t *v = json_incref(json_array_get(json_object_get(j, key), (size_t)s));
    json_decref(j);
    return v;
}

static const char *owner_of(int i, int s, char *buf, size_t len)
{
    json_t *v = shard_field(i, "owners", s);
    snprintf(buf, len, "%s", json_is_string(v) ? json_string_value(v) : "");
    json_decref(v);
    return buf;
}

/* Shards node id owns according to node i's /v1/cluster (-1 if unreachable). */
static int shards_of(int i, const char *id, bool *draining)
{
    long st;
    json_t *j = h_get_json(&C, i, "/v1/cluster", &st), *n;
    size_t k;
    int count = -1;
    if (!j) return -1;
    json_array_foreach(json_object_get(j, "nodes"), k, n)
    {
        if (strcmp(json_string_value(json_object_get(n, "id")), id) != 0) continue;
        count = (int)json_integer_value(json_object_get(n, "shards"));
        if (draining) *draining = json_is_true(json_object_get(n, "draining"));
    }
    json_decref(j);
    return count;
}

struct count_want {
    const char *id;
    int lo, hi;
};

/* Every node sees node id owning between lo and hi shards, and no shard is unassigned. */
static bool count_everywhere(void *arg)
{
    struct count_want *w = arg;
    for (int i = 0; i < C.n; i++) {
        int c = shards_of(i, w->id, NULL);
        if (c < w->lo || c > w->hi) return false;
        long st;
        json_t *j = h_get_json(&C, i, "/v1/cluster", &st);
        bool full = j && json_integer_value(json_object_get(j, "unassigned_shards")) == 0;
        json_decref(j);
        if (!full) return false;
    }
    return true;
}

static long call_increment(const char *id, char **body)
{
    char path[256];
    long st;
    char *eid = curl_easy_escape(NULL, id, 0);
    snprintf(path, sizeof path, "/api/v1/objects/call/SimpleCounter/%s/Increment", eid);
    curl_free(eid);
    *body = h_post(h_gate_http_port(&C, 0), path, "{\"request\":{}}", 14, &st);
    return st;
}

static void create_counter(const char *id)
{
    char path[256];
    long st;
    char *eid = curl_easy_escape(NULL, id, 0);
    snprintf(path, sizeof path, "/api/v1/objects/create/SimpleCounter/%s", eid);
    curl_free(eid);
    char *t = h_post(h_gate_http_port(&C, 0), path, "{}", 2, &st);
    cr_assert_eq(st, 200, "create %s -> %ld: %s", id, st, t ? t : "(no answer)");
    free(t);
}

/* ---------------------------------------------------------------- tests */

Test(admin, bad_requests_are_refused)
{
    start();
    const char *mv = "/v1/admin/shards/move", *pin = "/v1/admin/shards/pin", *dr = "/v1/admin/nodes/drain";
    admin_err(0, mv, "{\"shard\":5,", 400, "INVALID_ARGUMENT");
    admin_err(0, mv, "[5]", 400, "INVALID_ARGUMENT");
    admin_err(0, mv, "{\"shard\":64,\"node\":\"node-2\"}", 400, "INVALID_ARGUMENT");
    admin_err(0, mv, "{\"shard\":-1,\"node\":\"node-2\"}", 400, "INVALID_ARGUMENT");
    admin_err(0, mv, "{\"shard\":\"5\",\"node\":\"node-2\"}", 400, "INVALID_ARGUMENT");
    admin_err(0, mv, "{\"shard\":5.5,\"node\":\"node-2\"}", 400, "INVALID_ARGUMENT");
    admin_err(0, mv, "{\"shard\":5,\"node\":\"node-2\",\"force\":true}", 400, "INVALID_ARGUMENT");
    admin_err(0, mv, "{\"shard\":5}", 400, "INVALID_ARGUMENT");
    admin_err(0, mv, "{\"shard\":5,\"node\":\"node-2\",\"shard\":6}", 400, "INVALID_ARGUMENT");
    admin_err(1, mv, "{\"shard\":5,\"node\":\"node-9\"}", 404, "NOT_FOUND");
    admin_err(1, mv, "{\"shard\":5,\"node\":\"127.0.0.1:1\"}", 404, "NOT_FOUND");
    admin_err(2, pin, "{\"shard\":5,\"pinned\":1}", 400, "INVALID_ARGUMENT");
    admin_err(2, pin, "{\"shard\":99,\"pinned\":true}", 400, "INVALID_ARGUMENT");
    admin_err(2, dr, "{\"node\":\"nobody\",\"drain\":true}", 404, "NOT_FOUND");
    admin_err(2, dr, "{\"node\":\"\",\"drain\":true}", 400, "INVALID_ARGUMENT");
    admin_err(2, dr, "{\"node\":\"node-1\",\"drain\":\"yes\"}", 400, "INVALID_ARGUMENT");
    admin_err(0, "/v1/admin/shards/teleport", "{}", 404, "NOT_FOUND");
    long st;
    json_t *j = h_get_json(&C, 0, mv, &st);
    cr_assert_eq(st, 405);
    json_decref(j);
    /* Nothing of that changed the catalog. */
    for (int s = 0; s < SHARDS; s++) {
        json_t *t = shard_field(0, "targets", s), *p = shard_field(0, "pinned", s);
        cr_assert(json_is_null(t) && json_is_false(p), "shard %d changed", s);
        json_decref(t);
        json_decref(p);
    }
    h_cluster_stop_all(&C);
}

Test(admin, move_keeps_calls_flowing)
{
    start();
    const char *obj = "shard#5/moved-counter";
    char from[32], to[32], *body;
    owner_of(0, 5, from, sizeof from);
    cr_assert(from[0], "shard 5 has no owner");
    int to_i = (h_index_of(&C, from) + 1) % 3;
    snprintf(to, sizeof to, "%s", C.id[to_i]);
    create_counter(obj);
    cr_assert_eq(call_increment(obj, &body), 200, "first call: %s", body ? body : "");
    free(body);
    int calls = 1;

    /* Move by advertise address through a node that is neither owner nor target. */
    char req[128];
    snprintf(req, sizeof req, "{\"shard\":5,\"node\":\"127.0.0.1:%d\"}", C.base + to_i);
    admin_ok((to_i + 1) % 3, "/v1/admin/shards/move", req);
    struct h_owned o = {&C, 5, to};
    bool moved = false;
    for (int round = 0; round < 2000 && !moved; round++) {
        moved = h_shard_owned_everywhere(&o);
        long st = call_increment(obj, &body);
        cr_assert_eq(st, 200, "call %d failed during the move: %ld %s", calls, st, body ? body : "");
        free(body);
        calls++;
    }
    cr_assert(moved || h_poll(MOVE_MS, h_shard_owned_everywhere, &o), "shard 5 did not move to %s", to);
    for (int i = 0; i < 3; i++) {
        json_t *t = shard_field(i, "targets", 5);
        cr_assert_str_eq(json_string_value(t), to, "node %d: target of shard 5", i);
        json_decref(t);
    }
    /* The object now runs on the new owner (its state is not durable yet: a move starts it afresh). */
    long st = call_increment(obj, &body);
    cr_assert_eq(st, 200);
    free(body);
    json_t *j = h_get_json(&C, to_i, "/v1/objects?type=SimpleCounter", &st), *ob;
    size_t k;
    bool found = false;
    json_array_foreach(json_object_get(j, "objects"), k, ob) found |= !strcmp(json_string_value(json_object_get(ob, "id")), obj);
    cr_assert(found, "%s is not active on %s", obj, to);
    json_decref(j);
    cr_assert_gt(calls, 1);

    /* By id, back to where it was; then clearing the target leaves it to the balancer. */
    snprintf(req, sizeof req, "{\"shard\":5,\"node\":\"%s\"}", from);
    admin_ok(0, "/v1/admin/shards/move", req);
    o.node = from;
    cr_assert(h_poll(MOVE_MS, h_shard_owned_everywhere, &o), "shard 5 did not move back to %s", from);
    admin_ok(1, "/v1/admin/shards/move", "{\"shard\":5,\"node\":\"\"}");
    json_t *t = shard_field(1, "targets", 5);
    cr_assert(json_is_null(t), "the target is cleared on the node that answered");
    json_decref(t);
    struct count_want w = {from, 21, 22};
    cr_assert(h_poll(MOVE_MS, count_everywhere, &w), "the map is not balanced again");
    h_cluster_stop_all(&C);
}

Test(admin, drain_wins_over_pin)
{
    start();
    char owner[32];
    owner_of(0, 10, owner, sizeof owner);
    cr_assert(owner[0]);
    admin_ok(1, "/v1/admin/shards/pin", "{\"shard\":10,\"pinned\":true}");
    json_t *p = shard_field(1, "pinned", 10);
    cr_assert(json_is_true(p), "pinned on the node that answered");
    json_decref(p);

    /* Drain the pinned shard's owner: it ends with no shard at all, the pinned one included. */
    char req[128];
    snprintf(req, sizeof req, "{\"node\":\"%s\",\"drain\":true}", owner);
    admin_ok(2, "/v1/admin/nodes/drain", req);
    struct count_want w = {owner, 0, 0};
    cr_assert(h_poll(MOVE_MS, count_everywhere, &w), "%s still owns shards while draining", owner);
    char now[32];
    cr_assert_str_neq(owner_of(0, 10, now, sizeof now), owner, "drain wins over pin");
    bool draining = false;
    cr_assert_eq(shards_of(0, owner, &draining), 0);
    cr_assert(draining, "/v1/cluster shows the node draining");
    for (int i = 0; i < 3; i++) {
        json_t *pi = shard_field(i, "pinned", 10);
        cr_assert(json_is_true(pi), "node %d: shard 10 stays pinned (to its new owner)", i);
        json_decref(pi);
    }
    /* The other two share the 64 shards. */
    for (int i = 0; i < 3; i++)
        if (strcmp(C.id[i], owner) != 0) cr_assert_eq(shards_of(0, C.id[i], NULL), 32);

    /* Undrain: it gets shards back; the pinned shard stays where the drain put it. */
    char pinned_at[32];
    owner_of(0, 10, pinned_at, sizeof pinned_at);
    snprintf(req, sizeof req, "{\"node\":\"%s\",\"drain\":false}", owner);
    admin_ok(0, "/v1/admin/nodes/drain", req);
    w = (struct count_want){owner, 21, 22};
    cr_assert(h_poll(MOVE_MS, count_everywhere, &w), "%s did not get shards back", owner);
    char after[32];
    cr_assert_str_eq(owner_of(0, 10, after, sizeof after), pinned_at, "the pin keeps shard 10 in place");
    cr_assert_eq(shards_of(0, owner, &draining), shards_of(1, owner, NULL));
    cr_assert(!draining);
    h_cluster_stop_all(&C);
}

/* The CLI against a real gate: options before the command are the command's, and shard-of hashes with
 * the cluster's shard count (64 here) when a gate answers, without a note. */
Test(admin, cli_takes_global_options_and_asks_the_gate_for_the_shard_count)
{
    start();
    char args[256], want[32];
    int code;
    snprintf(args, sizeof args, "--gate 127.0.0.1:%d shard-of hello", h_gate_grpc_port(&C, 0));
    char *out = h_cli(args, &code);
    snprintf(want, sizeof want, "%u\n", cv_shard_of("hello", SHARDS));
    cr_assert_eq(code, 0, "%s -> %d: %s", args, code, out);
    cr_assert_str_eq(out, want, "shard-of with the gate's shard count (and no note)");
    free(out);
    snprintf(args, sizeof args, "--gate 127.0.0.1:%d --json status", h_gate_grpc_port(&C, 0));
    out = h_cli(args, &code);
    cr_assert_eq(code, 0, "%s -> %d: %s", args, code, out);
    json_t *j = json_loads(out, 0, NULL);
    cr_assert_eq(json_integer_value(json_object_get(j, "shards")), SHARDS, "status --json: %s", out);
    json_decref(j);
    free(out);
}

/* GET path from node i with If-None-Match: etag; returns the status, *etag_out the new etag on a 200. */
static long get_if(int i, const char *path, const char *etag, char *etag_out, size_t len)
{
    char hdr[96];
    long st;
    snprintf(hdr, sizeof hdr, "If-None-Match: %s", etag);
    char *t = h_get_header(&C, i, path, hdr, &st);
    if (st == 304) cr_assert_str_eq(t, "", "%s: a 304 has no body", path);
    if (st == 200) {
        json_t *j = json_loads(t, 0, NULL);
        const char *e = json_string_value(json_object_get(j, "etag"));
        cr_assert_not_null(e, "%s: no etag in %s", path, t);
        snprintf(etag_out, len, "%s", e);
        json_decref(j);
    }
    free(t);
    return st;
}

struct changed {
    int node;
    const char *path, *etag;
    char now[64];
};

static bool etag_changed(void *arg)
{
    struct changed *c = arg;
    return get_if(c->node, c->path, c->etag, c->now, sizeof c->now) == 200;
}

/* The inspector polls /v1/shards and /v1/objects of every node every second: a node answers 304 with no
 * body while what they list is unchanged (other entries may advance the applied index meanwhile), and 200 with
 * a new etag once a shard moved or an object was activated. */
Test(admin, shard_map_and_objects_answer_304_while_unchanged)
{
    start();
    char e1[64], e2[64], o1[64], o2[64];
    cr_assert_eq(get_if(0, "/v1/shards", "\"none\"", e1, sizeof e1), 200);
    cr_assert_eq(get_if(0, "/v1/objects", "\"none\"", o1, sizeof o1), 200);
    struct changed c = {0, "/v1/shards", e1, ""};
    cr_assert_eq(get_if(0, "/v1/shards", e1, e2, sizeof e2), 304, "unchanged map: 304");
    cr_assert_eq(get_if(0, "/v1/objects", o1, o2, sizeof o2), 304, "unchanged objects: 304");

    char from[32], req[96];
    owner_of(0, 7, from, sizeof from);
    cr_assert(from[0], "shard 7 has no owner");
    int to_i = (h_index_of(&C, from) + 1) % 3;
    snprintf(req, sizeof req, "{\"shard\":7,\"node\":\"%s\"}", C.id[to_i]);
    admin_ok(0, "/v1/admin/shards/move", req);
    cr_assert(h_poll(MOVE_MS, etag_changed, &c), "the move did not change node-1's /v1/shards etag");
    cr_assert_str_neq(c.now, e1);

    /* An object activated on node-1: a shard it owns, by the map. */
    int s = 0;
    for (char own[32]; s < SHARDS && strcmp(owner_of(0, s, own, sizeof own), C.id[0]) != 0; s++) {}
    cr_assert_lt(s, SHARDS, "node-1 owns no shard");
    char obj[48];
    snprintf(obj, sizeof obj, "shard#%d/etag-counter", s);
    create_counter(obj);
    struct changed co = {0, "/v1/objects", o1, ""};
    cr_assert(h_poll(MOVE_MS, etag_changed, &co), "a new object did not change node-1's /v1/objects etag");
    h_cluster_stop_all(&C);
}
