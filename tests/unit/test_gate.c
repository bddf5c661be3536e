/* Unit tests of the gate (src/gate): the pure parts (HTTP paths, timeouts and bodies, error mapping,
 * routing decisions given a shard map, the retry backoff, JSON/Any mapping), then a real gate against
 * fake nodes in the same process: the gate and two fake nodes (RPC servers answering catalog.subscribe,
 * objects.call/create/delete by script) run on one libuv loop in a second thread, the test thread is the
 * client (libcurl for HTTP, a blocking socket with the native framing). Waiting is bounded; nothing
 * sleeps as synchronisation. The object type used is a test type whose messages come from rpc.proto
 * (request CreateRequest, response CreateResponse): the gate has no types, the fake nodes map JSON and
 * Any with its descriptors (pbjson/codec.h) as a real owner node does. */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "config/config.h"
#include "core/hash.h"
#include "cverse/error.h"
#include "cverse/object.h"
#include "gate/auth.h"
#include "gate/forwarder.h"
#include "gate/gate.h"
#include "gate/httpapi.h"
#include "gate/metrics.h"
#include "gate/route.h"
#include "net/frame.h"
#include "net/rpc.h"
#include "pbjson/codec.h"
#include "pbjson/pbjson.h"
#include "rpc.pb-c.h"
#include "util/log.h"

#include "log_capture.h"
#include "lsan_check.h"

TestSuite(gate_path, .fini = cv_lsan_check);
TestSuite(gate_parse, .fini = cv_lsan_check);
TestSuite(gate_route, .fini = cv_lsan_check);
TestSuite(gate_codec, .fini = cv_lsan_check);
TestSuite(gate_live, .fini = cv_lsan_check);
TestSuite(gate_metrics, .fini = cv_lsan_check);

/* ---------------------------------------------------------------------------------------------------
 * HTTP paths. */

/* The gate parses the path the HTTP server already percent-decoded (cv_http_request.path); escapes
 * themselves are the server's job (util/pct.h), checked end to end in gate_live.http_errors. */
static int parse(const char *path, struct cv_gate_target *t)
{
    char err[256];
    return cv_gate_parse_path(path, t, err, sizeof err);
}

Test(gate_path, call_create_delete)
{
    struct cv_gate_target t;
    cr_assert_eq(parse("/api/v1/objects/call/SimpleCounter/Counter-1/Increment", &t), 0);
    cr_assert_eq(t.op, CV_GATE_CALL);
    cr_assert_str_eq(t.type, "SimpleCounter");
    cr_assert_str_eq(t.id, "Counter-1");
    cr_assert_str_eq(t.method, "Increment");
    cv_gate_target_free(&t);
    cr_assert_eq(parse("/api/v1/objects/create/T/x", &t), 0);
    cr_assert_eq(t.op, CV_GATE_CREATE);
    cr_assert_str_eq(t.id, "x");
    cr_assert_null(t.method);
    cv_gate_target_free(&t);
    cr_assert_eq(parse("/api/v1/objects/delete/T/x", &t), 0);
    cr_assert_eq(t.op, CV_GATE_DELETE);
    cv_gate_target_free(&t);
}

Test(gate_path, missing_or_empty_parts_are_refused)
{
    struct cv_gate_target t;
    const char *bad[] = {
        "/api/v1/objects/call/T/x",     /* no method */
        "/api/v1/objects/call/T//M",    /* empty id */
        "/api/v1/objects/call//x/M",    /* empty type */
        "/api/v1/objects/call/T/x/M/",  /* trailing slash: empty method */
        "/api/v1/objects/create/T",     /* no id */
        "/api/v1/objects/create/T/",    /* empty id */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[256] = "";
        cr_assert_eq(cv_gate_parse_path(bad[i], &t, err, sizeof err), CV_EINVAL, "%s", bad[i]);
        cr_assert(err[0] != '\0');
    }
}

Test(gate_path, decoded_form_keeps_slashes_in_the_id)
{
    struct cv_gate_target t;
    cr_assert_eq(parse("/api/v1/objects/call/ShardMonitor/shard#3/ShardMonitor/GetStats", &t), 0);
    cr_assert_str_eq(t.type, "ShardMonitor");
    cr_assert_str_eq(t.id, "shard#3/ShardMonitor");
    cr_assert_str_eq(t.method, "GetStats");
    cv_gate_target_free(&t);
    cr_assert_eq(parse("/api/v1/objects/delete/NodeMonitor/node-1/NodeMonitor", &t), 0);
    cr_assert_str_eq(t.id, "node-1/NodeMonitor");
    cv_gate_target_free(&t);
    cr_assert_eq(parse("/api/v1/objects/call/T/x", &t), CV_EINVAL);
    cr_assert_eq(parse("/api/v1/objects/call/T/x/", &t), CV_EINVAL);
    cr_assert_eq(parse("/api/v1/objects/create/T/", &t), CV_EINVAL);
    cr_assert_eq(parse("/api/v1/objects/create//x", &t), CV_EINVAL);
}

Test(gate_path, unknown_routes)
{
    struct cv_gate_target t;
    cr_assert_eq(parse("/", &t), CV_ENOTFOUND);
    cr_assert_eq(parse("/api/v1/objects/list/T/x", &t), CV_ENOTFOUND);
    cr_assert_eq(parse("/api/v1/objects/call", &t), CV_ENOTFOUND);
    cr_assert_eq(parse("/api/v2/objects/call/T/x/M", &t), CV_ENOTFOUND);
}

/* ---------------------------------------------------------------------------------------------------
 * Timeouts, bodies, error mapping. */

Test(gate_parse, query_flags)
{
    cr_assert(cv_gate_query_flag("compact=1", "compact"));
    cr_assert(cv_gate_query_flag("timeout_ms=5&compact=true", "compact"));
    cr_assert_not(cv_gate_query_flag("compact=0", "compact"));
    cr_assert_not(cv_gate_query_flag("compact=yes", "compact"));
    cr_assert_not(cv_gate_query_flag("compact", "compact"));
    cr_assert_not(cv_gate_query_flag("xcompact=1", "compact"));
    cr_assert_not(cv_gate_query_flag("compactx=1", "compact"));
    cr_assert_not(cv_gate_query_flag("", "compact"));
    cr_assert_not(cv_gate_query_flag(NULL, "compact"));
}

Test(gate_parse, timeouts)
{
    unsigned ms;
    char err[256];
    cr_assert_eq(cv_gate_parse_timeout("", NULL, &ms, err, sizeof err), 0);
    cr_assert_eq(ms, 0);
    cr_assert_eq(cv_gate_parse_timeout("a=1&timeout_ms=250&b=2", NULL, &ms, err, sizeof err), 0);
    cr_assert_eq(ms, 250);
    cr_assert_eq(cv_gate_parse_timeout("timeout_ms=250", " 1500 ", &ms, err, sizeof err), 0);
    cr_assert_eq(ms, 1500, "the header wins over the query");
    cr_assert_eq(cv_gate_parse_timeout("xtimeout_ms=5", NULL, &ms, err, sizeof err), 0);
    cr_assert_eq(ms, 0);
    const char *bad[] = {"timeout_ms=", "timeout_ms=0", "timeout_ms=-1", "timeout_ms=1e3", "timeout_ms=3600001",
                         "timeout_ms=99999999999999999999", "timeout_ms=12ms"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(cv_gate_parse_timeout(bad[i], NULL, &ms, err, sizeof err), CV_EINVAL, "%s", bad[i]);
    cr_assert_eq(cv_gate_parse_timeout("", "abc", &ms, err, sizeof err), CV_EINVAL);
    cr_assert(strstr(err, "X-Cverse-Deadline-Ms") != NULL);
}

static int body(const char *s, struct cv_gate_body *b)
{
    char err[256];
    return cv_gate_parse_body(s, strlen(s), b, err, sizeof err);
}

Test(gate_parse, bodies)
{
    struct cv_gate_body b;
    const char *empty[] = {"", "  \n", "{}", "{\"request\":null}"};
    for (size_t i = 0; i < 4; i++) {
        cr_assert_eq(body(empty[i], &b), 0, "%s", empty[i]);
        cr_assert_eq(b.kind, CV_GATE_BODY_EMPTY);
        cv_gate_body_free(&b);
    }
    cr_assert_eq(body("{\"request\":{\"id\":\"x\"}}", &b), 0);
    cr_assert_eq(b.kind, CV_GATE_BODY_JSON);
    cr_assert_str_eq(json_string_value(json_object_get(b.request, "id")), "x");
    cv_gate_body_free(&b);
    cr_assert_eq(body("{\"request\":\"AAEC\"}", &b), 0);
    cr_assert_eq(b.kind, CV_GATE_BODY_ANY);
    cr_assert_eq(b.any_len, 3);
    cr_assert_eq(b.any[2], 2);
    cv_gate_body_free(&b);
}

Test(gate_parse, bad_bodies)
{
    struct cv_gate_body b;
    const char *bad[] = {"{", "[]", "\"x\"", "{\"request\":1}", "{\"request\":[]}", "{\"request\":\"!!\"}",
                         "{\"request\":\"AAE\"}", "{\"other\":{}}", "{\"request\":{},\"request\":{}}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[256] = "";
        cr_assert_eq(cv_gate_parse_body(bad[i], strlen(bad[i]), &b, err, sizeof err), CV_EINVAL, "%s", bad[i]);
        cr_assert(err[0], "%s", bad[i]);
        cr_assert_null(b.root);
    }
}

Test(gate_parse, error_mapping)
{
    struct {
        int err, http;
        const char *code;
        bool retry;
    } cases[] = {
        {CV_EINVAL, 400, "INVALID_ARGUMENT", false},   {CV_EPROTO, 400, "INVALID_ARGUMENT", false},
        {CV_ERANGE, 400, "INVALID_ARGUMENT", false},   {CV_ENOTFOUND, 404, "NOT_FOUND", false},
        {CV_EEXIST, 409, "ALREADY_EXISTS", false},     {CV_EBUSY, 429, "RESOURCE_EXHAUSTED", true},
        {CV_EUNAVAIL, 503, "UNAVAILABLE", true},       {CV_EREDIRECT, 503, "UNAVAILABLE", true},
        {CV_ETIMEDOUT, 504, "DEADLINE_EXCEEDED", false}, {CV_EIO, 500, "INTERNAL", false},
        {CV_ENOMEM, 500, "INTERNAL", false},           {-999, 500, "INTERNAL", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_assert_eq(cv_err_http(cases[i].err), cases[i].http, "%d", cases[i].err);
        cr_assert_str_eq(cv_err_status(cases[i].err), cases[i].code);
        cr_assert_eq(cv_status_retry_after(cv_err_code(cases[i].err)), cases[i].retry);
    }
    cr_assert_eq(cv_err_code(0), CV_STATUS_OK);
}

/* ---------------------------------------------------------------------------------------------------
 * Shard maps, routing, backoff. */

/* Packs a ShardMap: owners[i] for shard i, the listed nodes (all alive). */
static uint8_t *mkmap(uint64_t index, uint32_t shards, const char *const *owners, const char *const *nodes,
                      size_t n_nodes, size_t *len)
{
    Cverse__Rpc__ShardMap m = CVERSE__RPC__SHARD_MAP__INIT;
    Cverse__Rpc__NodeAddr na[8], *nap[8];
    m.applied_index = index;
    m.shards = shards;
    m.n_owners = shards;
    m.owners = (char **)owners;
    for (size_t i = 0; i < n_nodes; i++) {
        cverse__rpc__node_addr__init(&na[i]);
        na[i].id = (char *)nodes[i];
        na[i].alive = 1;
        nap[i] = &na[i];
    }
    m.n_nodes = n_nodes;
    m.nodes = nap;
    *len = cverse__rpc__shard_map__get_packed_size(&m);
    uint8_t *buf = malloc(*len + 1);
    cverse__rpc__shard_map__pack(&m, buf);
    return buf;
}

static struct cv_config *cfg2(void)
{
    static const char text[] = "version: 1\ncluster:\n  shards: 4\nnodes:\n"
                               "  - {id: n1, grpc_addr: \"127.0.0.1:7001\", http_addr: \"127.0.0.1:7101\"}\n"
                               "  - {id: n2, grpc_addr: \"127.0.0.1:7002\", http_addr: \"127.0.0.1:7102\"}\n"
                               "  - {id: n3, grpc_addr: \"127.0.0.1:7003\", http_addr: \"127.0.0.1:7103\"}\n";
    struct cv_config *cfg;
    char err[256];
    cr_assert_eq(cv_config_parse(text, sizeof text - 1, "t.yml", &cfg, err, sizeof err), 0, "%s", err);
    return cfg;
}

static int apply(struct cv_gate_map *m, uint64_t index, const char *const *owners, uint32_t shards)
{
    static const char *const nodes[] = {"n1", "n2"};
    size_t len;
    uint8_t *buf = mkmap(index, shards, owners, nodes, 2, &len);
    int rv = cv_gate_map_apply(m, buf, len);
    free(buf);
    return rv;
}

Test(gate_route, map_apply_only_moves_forward)
{
    struct cv_gate_map m = {0};
    const char *const o1[] = {"n1", "n1", "n2", ""};
    const char *const o2[] = {"n2", "n2", "n2", "n2"};
    cr_assert_eq(cv_gate_map_index(&m), 0);
    cr_assert_eq(cv_gate_map_unassigned(&m), UINT32_MAX);
    cr_assert_eq(apply(&m, 10, o1, 4), 1);
    cr_assert_eq(cv_gate_map_unassigned(&m), 1);
    cr_assert_eq(apply(&m, 9, o2, 4), 0, "older map ignored");
    cr_assert_eq(apply(&m, 10, o2, 4), 0, "same index ignored");
    cr_assert_str_eq(m.pb->owners[0], "n1");
    cr_assert_eq(apply(&m, 11, o2, 4), 1);
    cr_assert_eq(cv_gate_map_index(&m), 11);
    cr_assert_eq(cv_gate_map_unassigned(&m), 0);
    cr_assert_eq(cv_gate_map_apply(&m, (const uint8_t *)"\xff\xff", 2), CV_EPROTO);
    cr_assert_eq(apply(&m, 12, o2, 0), CV_EPROTO, "zero shards refused");
    size_t len;
    static const char *const nodes[] = {"n1"};
    uint8_t *buf = mkmap(13, 4, o2, nodes, 1, &len);
    Cverse__Rpc__ShardMap *pb = cverse__rpc__shard_map__unpack(NULL, len, buf);
    pb->n_owners = 3; /* fewer owners than shards */
    uint8_t *bad = malloc(cverse__rpc__shard_map__get_packed_size(pb));
    size_t blen = cverse__rpc__shard_map__pack(pb, bad);
    cr_assert_eq(cv_gate_map_apply(&m, bad, blen), CV_EPROTO);
    pb->n_owners = 4;
    cverse__rpc__shard_map__free_unpacked(pb, NULL);
    free(bad);
    free(buf);
    cr_assert_eq(cv_gate_map_index(&m), 11, "a refused map leaves the current one");
    cv_gate_map_free(&m);
}

Test(gate_route, decisions)
{
    struct cv_config *cfg = cfg2();
    struct cv_gate_map m = {0};
    struct cv_route r;
    cv_gate_route(&m, cfg, "Counter-1", &r);
    cr_assert_eq(r.action, CV_ROUTE_WAIT, "no map yet");
    cr_assert_eq(r.err, CV_EUNAVAIL);
    cv_gate_route(&m, cfg, "shard#9/x", &r);
    cr_assert_eq(r.action, CV_ROUTE_FAIL, "bad ids fail even before a map");
    cr_assert_eq(r.err, CV_EINVAL);

    const char *const owners[] = {"n1", "n2", "", "n1"};
    cr_assert_eq(apply(&m, 5, owners, 4), 1);
    for (uint32_t k = 0; k < 32; k++) { /* plain ids: the owner of fnv1a32(id) % 4 */
        char id[32];
        snprintf(id, sizeof id, "Counter-%u", (unsigned)k);
        uint32_t s = cv_shard_of(id, 4);
        cv_gate_route(&m, cfg, id, &r);
        cr_assert_eq(r.shard, s);
        if (s == 2) {
            cr_assert_eq(r.action, CV_ROUTE_WAIT, "unassigned shard");
            cr_assert(strstr(r.why, "no owner") != NULL);
        } else {
            cr_assert_eq(r.action, CV_ROUTE_SEND);
            cr_assert_str_eq(r.node, owners[s]);
        }
    }
    cv_gate_route(&m, cfg, "shard#1/ShardMonitor", &r);
    cr_assert_eq(r.action, CV_ROUTE_SEND);
    cr_assert_str_eq(r.node, "n2");
    cr_assert_eq(r.shard, 1);
    cv_gate_route(&m, cfg, "shard#2/ShardMonitor", &r);
    cr_assert_eq(r.action, CV_ROUTE_WAIT);
    cv_gate_route(&m, cfg, "shard#4/ShardMonitor", &r);
    cr_assert_eq(r.action, CV_ROUTE_FAIL);
    cr_assert_eq(r.err, CV_EINVAL);
    cv_gate_route(&m, cfg, "", &r);
    cr_assert_eq(r.action, CV_ROUTE_FAIL);

    cv_gate_route(&m, cfg, "n2/NodeMonitor", &r);
    cr_assert_eq(r.action, CV_ROUTE_SEND, "pinned to a node in the map");
    cr_assert_str_eq(r.node, "n2");
    cv_gate_route(&m, cfg, "n3/NodeMonitor", &r);
    cr_assert_eq(r.action, CV_ROUTE_WAIT, "configured but not in the map yet");
    cv_gate_route(&m, cfg, "n9/NodeMonitor", &r);
    cr_assert_eq(r.action, CV_ROUTE_FAIL, "not a node of the cluster");
    cr_assert_eq(r.err, CV_ENOTFOUND);
    cv_gate_map_free(&m);
    cv_config_free(cfg);
}

/* A pending call may be sent again only when its node is declared dead and the id routes elsewhere. */
Test(gate_route, resend_only_away_from_a_dead_node)
{
    struct cv_config *cfg = cfg2();
    struct cv_gate_map m = {0};
    const char *const owners[] = {"n1", "n2", "", "n1"};
    static const char *const nodes[] = {"n1", "n2"};
    size_t len;
    uint8_t *buf = mkmap(7, 4, owners, nodes, 2, &len);
    Cverse__Rpc__ShardMap *pb = cverse__rpc__shard_map__unpack(NULL, len, buf);
    pb->nodes[0]->alive = 0; /* n1 declared dead, still owner of shards 0 and 3 in this map */
    uint8_t *dead = malloc(cverse__rpc__shard_map__get_packed_size(pb));
    cr_assert_eq(cv_gate_map_apply(&m, dead, cverse__rpc__shard_map__pack(pb, dead)), 1);
    cr_assert(!cv_gate_may_resend(&m, cfg, "shard#0/x", "n1"), "its shard still names it: the map is not there yet");
    cr_assert(cv_gate_may_resend(&m, cfg, "shard#1/x", "n1"), "the shard has another owner");
    cr_assert(cv_gate_may_resend(&m, cfg, "shard#2/x", "n1"), "the shard waits for a new owner");
    cr_assert(!cv_gate_may_resend(&m, cfg, "shard#1/x", "n2"), "n2 is alive: it may still run the call");
    cr_assert(!cv_gate_may_resend(&m, cfg, "shard#2/x", "n3"), "n3 is not in the map");
    cr_assert(!cv_gate_may_resend(&m, cfg, "n1/NodeMonitor", "n1"), "pinned to the dead node: nowhere else");
    cr_assert(cv_gate_may_resend(&m, cfg, "n2/NodeMonitor", "n1"));
    cr_assert(!cv_gate_may_resend(&m, cfg, "shard#9/x", "n1"), "an id that cannot be routed");
    cverse__rpc__shard_map__free_unpacked(pb, NULL);
    free(dead);
    free(buf);
    cv_gate_map_free(&m);
    cv_config_free(cfg);
}

Test(gate_route, backoff_policy)
{
    unsigned a0lo = cv_gate_backoff_ms(0, 0.0, 100000), a0hi = cv_gate_backoff_ms(0, 0.9999, 100000);
    cr_assert_eq(a0lo, 20);
    cr_assert(a0hi >= 49 && a0hi <= 50, "%u", a0hi);
    cr_assert_eq(cv_gate_backoff_ms(1, 0.0, 100000), 40);
    cr_assert_eq(cv_gate_backoff_ms(2, 0.0, 100000), 80);
    unsigned prev = 0;
    for (unsigned a = 0; a < 40; a++) {
        unsigned d = cv_gate_backoff_ms(a, 0.5, 100000);
        cr_assert(d >= prev, "backoff never shrinks (attempt %u)", a);
        cr_assert(d <= 500, "capped (attempt %u: %u)", a, d);
        prev = d;
    }
    cr_assert_eq(cv_gate_backoff_ms(1000, 0.9999, 100000) <= 500, 1);
    cr_assert_eq(cv_gate_backoff_ms(5, 0.5, 7), 7, "never past the deadline");
    cr_assert_eq(cv_gate_backoff_ms(0, 0.5, 0), 0);
}

Test(gate_route, rerouted_errors)
{
    /* The gate routes these again until the call's deadline (error table: cv_err_reroute). */
    cr_assert(cv_err_reroute(CV_EREDIRECT));
    cr_assert(cv_err_reroute(CV_EUNAVAIL));
    cr_assert(cv_err_reroute(CV_ECLOSED));
    cr_assert(cv_err_reroute(CV_ENOTLEADER));
    cr_assert(cv_err_reroute(CV_ERETRY));
    cr_assert(!cv_err_reroute(CV_ETIMEDOUT), "the outcome of a timed-out call is unknown");
    cr_assert(!cv_err_reroute(CV_EBUSY), "overload goes back to the client (429)");
    cr_assert(!cv_err_reroute(CV_ENOTFOUND));
    cr_assert(!cv_err_reroute(0));
}

/* ---------------------------------------------------------------------------------------------------
 * JSON / Any mapping (with rpc.proto messages as the method's request and response). */

Test(gate_codec, json_and_any_round_trips)
{
    char err[256];
    uint8_t *bytes;
    size_t len;
    static const char text[] = "{\"type\":\"T\",\"id\":\"x\"}";
    cr_assert_eq(cv_pbjson_json_text_to_bytes(&cverse__rpc__create_request__descriptor, text, strlen(text), &bytes,
                                              &len, err, sizeof err), 0, "%s", err);
    Cverse__Rpc__CreateRequest *cr = cverse__rpc__create_request__unpack(NULL, len, bytes);
    cr_assert_not_null(cr);
    cr_assert_str_eq(cr->id, "x");
    cverse__rpc__create_request__free_unpacked(cr, NULL);

    char *json;
    cr_assert_eq(cv_pbjson_bytes_to_json_text(&cverse__rpc__create_request__descriptor, bytes, len, 0, &json, err,
                                              sizeof err), 0);
    cr_assert_str_eq(json, "{\"type\":\"T\",\"id\":\"x\"}");
    free(json);

    /* The gate's Any of a response: the node's bytes wrapped with the type it names. */
    uint8_t *any, *back;
    size_t alen, blen;
    cr_assert_eq(cv_pbjson_any_wrap(cverse__rpc__create_request__descriptor.name, bytes, len, &any, &alen), 0);
    cr_assert_eq(cv_pbjson_any_to_bytes(&cverse__rpc__create_request__descriptor, any, alen, &back, &blen, err,
                                        sizeof err), 0, "%s", err);
    cr_assert_eq(blen, len);
    cr_assert_eq(memcmp(back, bytes, len), 0);
    free(back);
    uint8_t *packed;
    size_t plen;
    cr_assert_eq(cv_pbjson_any_unpack(&cverse__rpc__create_request__descriptor, any, alen, (ProtobufCMessage **)&cr,
                                      err, sizeof err), 0, "%s", err);
    cr_assert_eq(cv_pbjson_any_pack(&cr->base, &packed, &plen), 0);
    cr_assert_eq(plen, alen);
    cr_assert_eq(memcmp(packed, any, alen), 0, "any_wrap writes any_pack's bytes");
    free(packed);
    cverse__rpc__create_request__free_unpacked(cr, NULL);
    cr_assert_eq(cv_pbjson_any_to_bytes(&cverse__rpc__create_response__descriptor, any, alen, &back, &blen, err,
                                        sizeof err), CV_EINVAL, "an Any of another type");
    cr_assert_eq(cv_pbjson_any_wrap("", bytes, len, &back, &blen), CV_EINVAL);
    free(any);
    free(bytes);
}

Test(gate_codec, errors)
{
    char err[256];
    uint8_t *bytes;
    size_t len;
    cr_assert_eq(cv_pbjson_json_text_to_bytes(&cverse__rpc__create_request__descriptor, "{\"nope\":1}", 10, &bytes,
                                              &len, err, sizeof err), CV_EINVAL);
    cr_assert(strstr(err, "nope") != NULL, "%s", err);
    cr_assert_eq(cv_pbjson_json_text_to_bytes(&cverse__rpc__create_request__descriptor, "{", 1, &bytes, &len, err,
                                              sizeof err), CV_EINVAL);
    cr_assert_eq(cv_pbjson_json_text_to_bytes(&cverse__rpc__create_request__descriptor, "", 0, &bytes, &len, err,
                                              sizeof err), 0, "empty JSON = empty message");
    cr_assert_eq(len, 0);
    free(bytes);
    json_t *j;
    cr_assert_eq(cv_pbjson_bytes_to_json(&cverse__rpc__create_request__descriptor, (const uint8_t *)"\xff", 1, 0, &j,
                                         err, sizeof err), CV_EPROTO);
    cr_assert_eq(cv_pbjson_any_to_bytes(&cverse__rpc__create_request__descriptor, (const uint8_t *)"\x0a", 1, &bytes,
                                        &len, err, sizeof err), CV_EINVAL);
}

/* ---------------------------------------------------------------------------------------------------
 * A live gate against fake nodes. */

static void echo_handler(cv_object *o, const ProtobufCMessage *req, cv_reply *reply)
{
    (void)o, (void)req, (void)reply; /* never runs: the fake nodes only read descriptors */
}

static const struct cv_method echo_methods[] = {
    {"Echo", &cverse__rpc__create_request__descriptor, &cverse__rpc__create_response__descriptor, echo_handler},
};
static const struct cv_object_type echo_type = {.name = "Echo", .methods = echo_methods, .n_methods = 1};

#define SHARDS 4

/* A fake node: an RPC server that owns the shards `truth` says it owns. */
struct fake_node {
    const char *id;
    struct cv_rpc_server *srv;
    int port;
    struct cv_rpc_conn *sub; /* the gate's subscription, if it subscribed here */
    int calls, redirects, subscribes;
    bool beating; /* sends "catalog.heartbeat" to its subscriber every 100 ms (node/mapfeed.h) */
};

struct world {
    uv_loop_t loop;
    uv_async_t async;      /* stops everything */
    uv_async_t stop_gate;  /* stops only the gate (drain tests) */
    pthread_t thread;
    struct fake_node nodes[2];
    const char *truth[SHARDS]; /* the real owners */
    uint64_t truth_index;
    const char *sub_owners[SHARDS]; /* what the subscribe answer says (may be stale) */
    uint64_t sub_index;
    bool push_on_redirect; /* after answering a redirect, push the true map to the subscriber */
    bool refuse_subscribe_n1; /* node n1 answers catalog.subscribe with an error */
    bool resubscribe_truth;   /* a node's second and later subscribes get the true map */
    bool n2_truth;            /* n2's subscribe answer is the true map */
    uv_timer_t beat;          /* the fake nodes' heartbeats */
    struct cv_config *cfg;
    struct cv_gate *gate;
    int grpc_port, http_port;
    bool stopped;
    pthread_mutex_t mu;
};

static struct world W;

static void fake_send_map(struct fake_node *n, struct cv_rpc_conn *conn, uint64_t id, bool event,
                          const char *const *owners, uint64_t index)
{
    static const char *const ids[] = {"n1", "n2"};
    size_t len;
    uint8_t *buf = mkmap(index, SHARDS, owners, ids, 2, &len);
    if (event) cv_rpc_send_event(conn, "catalog.shard_map", buf, len);
    else cv_rpc_respond(conn, id, 0, NULL, buf, len);
    free(buf);
    (void)n;
}

static void fake_redirect(struct fake_node *n, struct cv_rpc_conn *conn, uint64_t id, uint32_t shard)
{
    Cverse__Rpc__Redirect r = CVERSE__RPC__REDIRECT__INIT;
    r.applied_index = W.truth_index;
    r.owner = (char *)W.truth[shard];
    r.shard = shard;
    uint8_t buf[128];
    size_t len = cverse__rpc__redirect__pack(&r, buf);
    cv_rpc_respond(conn, id, CV_EREDIRECT, "not the owner", buf, len);
    n->redirects++;
    for (int i = 0; i < 2 && W.push_on_redirect; i++)
        if (W.nodes[i].sub) fake_send_map(&W.nodes[i], W.nodes[i].sub, 0, true, W.truth, W.truth_index);
}

/* The request bytes of a call, mapped from its form as an owner node does (node/incall.c); 0, or an
 * answer sent (unknown type or method 404, a request that does not fit 400). *out malloc'ed or NULL. */
static int fake_map(struct cv_rpc_conn *conn, uint64_t id, const Cverse__Rpc__CallRequest *c, uint8_t **out,
                    size_t *len)
{
    char err[256];
    int rv = 0;
    const struct cv_method *m = &echo_methods[0];
    *out = NULL;
    if (strcmp(c->type, echo_type.name) != 0) {
        rv = CV_ENOTFOUND;
        snprintf(err, sizeof err, "unknown object type \"%s\"", c->type);
    } else if (strcmp(c->method, m->name) != 0) {
        rv = CV_ENOTFOUND;
        snprintf(err, sizeof err, "object type \"%s\" has no method \"%s\"", c->type, c->method);
    } else if (c->form == CVERSE__RPC__CALL_FORM__CALL_FORM_JSON) {
        rv = cv_pbjson_json_text_to_bytes(m->request, c->request_json, strlen(c->request_json), out, len, err,
                                          sizeof err);
    } else if (c->form == CVERSE__RPC__CALL_FORM__CALL_FORM_ANY) {
        rv = cv_pbjson_any_to_bytes(m->request, c->request.data, c->request.len, out, len, err, sizeof err);
    }
    if (rv) cv_rpc_respond(conn, id, rv, err, NULL, 0);
    return rv;
}

/* A CallResponse of resp (of id) in the call's form, answered. */
static void fake_answer(struct cv_rpc_conn *conn, uint64_t id, const Cverse__Rpc__CallRequest *c, const char *resp_id)
{
    Cverse__Rpc__CreateResponse resp = CVERSE__RPC__CREATE_RESPONSE__INIT;
    resp.id = (char *)resp_id;
    uint8_t inner[256], outer[600];
    char err[256], *json = NULL;
    Cverse__Rpc__CallResponse cr = CVERSE__RPC__CALL_RESPONSE__INIT;
    cr.response.data = inner;
    cr.response.len = cverse__rpc__create_response__pack(&resp, inner);
    if (c->form == CVERSE__RPC__CALL_FORM__CALL_FORM_ANY) cr.response_type = (char *)resp.base.descriptor->name;
    if (c->form == CVERSE__RPC__CALL_FORM__CALL_FORM_JSON) {
        cr_assert_eq(cv_pbjson_bytes_to_json_text(resp.base.descriptor, inner, cr.response.len,
                                                  c->compact ? 0 : CV_PBJSON_EMIT_DEFAULTS, &json, err, sizeof err),
                     0);
        cr.response_json = json;
        cr.response.len = 0;
    }
    cv_rpc_respond(conn, id, 0, NULL, outer, cverse__rpc__call_response__pack(&cr, outer));
    free(json);
}

/* objects.call: answers CreateResponse{id = "<node>:<id>:<request id>"} in the call's form. */
static void fake_call(struct fake_node *n, struct cv_rpc_conn *conn, uint64_t id, const uint8_t *body, size_t len)
{
    Cverse__Rpc__CallRequest *c = cverse__rpc__call_request__unpack(NULL, len, body);
    if (!c) {
        cv_rpc_respond(conn, id, CV_EPROTO, "bad CallRequest", NULL, 0);
        return;
    }
    uint8_t *mapped;
    size_t mlen = 0;
    struct cv_placement p;
    cv_placement_parse(c->id, SHARDS, &p);
    if (fake_map(conn, id, c, &mapped, &mlen)) {
        /* answered */
    } else if (strcmp(W.truth[p.shard], n->id) != 0) {
        fake_redirect(n, conn, id, p.shard);
    } else if (!strcmp(c->id, "missing")) {
        cv_rpc_respond(conn, id, CV_ENOTFOUND, "object not found", NULL, 0);
    } else {
        const uint8_t *req = mapped ? mapped : c->request.data;
        Cverse__Rpc__CreateRequest *in = cverse__rpc__create_request__unpack(NULL, mapped ? mlen : c->request.len,
                                                                             req ? req : (const uint8_t *)"");
        char out_id[160];
        snprintf(out_id, sizeof out_id, "%s:%s:%s", n->id, c->id, in ? in->id : "?");
        if (in) cverse__rpc__create_request__free_unpacked(in, NULL);
        fake_answer(conn, id, c, out_id);
        n->calls++;
    }
    free(mapped);
    cverse__rpc__call_request__free_unpacked(c, NULL);
}

static void fake_on_request(void *data, struct cv_rpc_conn *conn, uint64_t id, const char *method,
                            const uint8_t *body, size_t len, uint32_t deadline_ms)
{
    struct fake_node *n = data;
    (void)deadline_ms;
    pthread_mutex_lock(&W.mu);
    if (!strcmp(method, "catalog.subscribe")) {
        n->subscribes++;
        if (W.refuse_subscribe_n1 && !strcmp(n->id, "n1")) {
            cv_rpc_respond(conn, id, CV_EUNAVAIL, "not ready", NULL, 0);
        } else {
            if (n->sub) cv_rpc_conn_unref(n->sub);
            n->sub = conn;
            cv_rpc_conn_ref(conn);
            bool truth = (W.resubscribe_truth && n->subscribes > 1) || (W.n2_truth && !strcmp(n->id, "n2"));
            fake_send_map(n, conn, id, false, truth ? W.truth : W.sub_owners, truth ? W.truth_index : W.sub_index);
        }
    } else if (!strcmp(method, "objects.call")) {
        fake_call(n, conn, id, body, len);
    } else if (!strcmp(method, "objects.create")) {
        Cverse__Rpc__CreateRequest *c = cverse__rpc__create_request__unpack(NULL, len, body);
        Cverse__Rpc__CreateResponse r = CVERSE__RPC__CREATE_RESPONSE__INIT;
        r.id = c ? c->id : "";
        uint8_t buf[256];
        if (c && strcmp(c->type, echo_type.name) != 0) /* the node knows the types: a gate has none */
            cv_rpc_respond(conn, id, CV_ENOTFOUND, "unknown object type", NULL, 0);
        else
            cv_rpc_respond(conn, id, 0, NULL, buf, cverse__rpc__create_response__pack(&r, buf));
        if (c) cverse__rpc__create_request__free_unpacked(c, NULL);
    } else if (!strcmp(method, "objects.delete")) {
        Cverse__Rpc__DeleteResponse r = CVERSE__RPC__DELETE_RESPONSE__INIT;
        r.success = 1;
        uint8_t buf[16];
        cv_rpc_respond(conn, id, 0, NULL, buf, cverse__rpc__delete_response__pack(&r, buf));
    } else {
        cv_rpc_respond(conn, id, CV_ENOTFOUND, "unknown method", NULL, 0);
    }
    pthread_mutex_unlock(&W.mu);
}

static void world_stopped(void *data)
{
    (void)data;
    W.stopped = true;
}

static void stop_gate_cb(uv_async_t *a)
{
    (void)a;
    if (!W.stopped) cv_gate_stop(W.gate);
}

static void world_close_fakes(void);

static void beat_cb(uv_timer_t *t)
{
    uint8_t body[8] = {0};
    (void)t;
    pthread_mutex_lock(&W.mu);
    for (int i = 0; i < 2; i++)
        if (W.nodes[i].beating && W.nodes[i].sub) cv_rpc_send_event(W.nodes[i].sub, "catalog.heartbeat", body, 8);
    pthread_mutex_unlock(&W.mu);
}

static void async_cb(uv_async_t *a)
{
    (void)a;
    uv_close((uv_handle_t *)&W.beat, NULL);
    if (!W.stopped) cv_gate_stop(W.gate);
    uv_close((uv_handle_t *)&W.stop_gate, NULL);
    world_close_fakes();
    uv_close((uv_handle_t *)&W.async, NULL);
}

static void *loop_main(void *arg)
{
    (void)arg;
    uv_run(&W.loop, UV_RUN_DEFAULT);
    return NULL;
}

/* Two fake nodes listening on W.loop (not running yet) and W.cfg naming them. */
static void world_fakes(const char *const *truth, uint64_t truth_index, const char *const *sub_owners,
                        uint64_t sub_index, bool refuse_subscribe_n1)
{
    memset(&W, 0, sizeof W);
    W.refuse_subscribe_n1 = refuse_subscribe_n1;
    pthread_mutex_init(&W.mu, NULL);
    cr_assert_eq(uv_loop_init(&W.loop), 0);
    memcpy(W.truth, truth, sizeof W.truth);
    memcpy(W.sub_owners, sub_owners, sizeof W.sub_owners);
    W.truth_index = truth_index;
    W.sub_index = sub_index;
    const char *ids[] = {"n1", "n2"};
    for (int i = 0; i < 2; i++) {
        W.nodes[i].id = ids[i];
        cr_assert_eq(cv_rpc_server_init(&W.loop, fake_on_request, NULL, &W.nodes[i], &W.nodes[i].srv), 0);
        cr_assert_eq(cv_rpc_server_listen(W.nodes[i].srv, "127.0.0.1:0"), 0);
        W.nodes[i].port = cv_rpc_server_port(W.nodes[i].srv);
    }
    char text[1024];
    int n = snprintf(text, sizeof text,
                     "version: 1\ncluster:\n  shards: %d\nnodes:\n"
                     "  - {id: n1, grpc_addr: \"127.0.0.1:%d\", http_addr: \"127.0.0.1:1\"}\n"
                     "  - {id: n2, grpc_addr: \"127.0.0.1:%d\", http_addr: \"127.0.0.1:2\"}\n"
                     "gates:\n  - {id: gate-1, grpc_addr: \"127.0.0.1:3\", http_addr: \"127.0.0.1:4\"}\n",
                     SHARDS, W.nodes[0].port, W.nodes[1].port);
    char err[256];
    cr_assert_eq(cv_config_parse(text, (size_t)n, "test.yml", &W.cfg, err, sizeof err), 0, "%s", err);
}

/* Closes the fake nodes (run the loop afterwards). */
static void world_close_fakes(void)
{
    for (int i = 0; i < 2; i++) {
        if (W.nodes[i].sub) cv_rpc_conn_unref(W.nodes[i].sub);
        W.nodes[i].sub = NULL;
        cv_rpc_server_close(W.nodes[i].srv, NULL);
    }
}

/* Starts two fake nodes and a gate (subscribed to n1 unless refused) on a loop in a second thread. */
static void world_start_ex(const char *const *truth, uint64_t truth_index, const char *const *sub_owners,
                           uint64_t sub_index, bool refuse_subscribe_n1)
{
    world_fakes(truth, truth_index, sub_owners, sub_index, refuse_subscribe_n1);
    struct cv_gate_opts o = {.loop = &W.loop, .cfg = W.cfg, .gate_id = "gate-1",
                             .grpc_addr = "127.0.0.1:0", .http_addr = "127.0.0.1:0", .drain_ms = 8000,
                             .on_stopped = world_stopped};
    cr_assert_eq(cv_gate_start(&o, &W.gate), 0);
    W.grpc_port = cv_gate_grpc_port(W.gate);
    W.http_port = cv_gate_http_port(W.gate);
    cr_assert(W.grpc_port > 0 && W.http_port > 0);
    uv_async_init(&W.loop, &W.async, async_cb);
    uv_async_init(&W.loop, &W.stop_gate, stop_gate_cb);
    uv_timer_init(&W.loop, &W.beat);
    uv_timer_start(&W.beat, beat_cb, 100, 100);
    cr_assert_eq(pthread_create(&W.thread, NULL, loop_main, NULL), 0);
}

static void world_start(const char *const *truth, uint64_t truth_index, const char *const *sub_owners,
                        uint64_t sub_index)
{
    world_start_ex(truth, truth_index, sub_owners, sub_index, false);
}

static void world_stop(void)
{
    uv_async_send(&W.async);
    pthread_join(W.thread, NULL);
    cr_assert(W.stopped, "the gate ran its on_stopped callback");
    cr_assert_eq(uv_loop_close(&W.loop), 0, "every handle closed");
    cv_config_free(W.cfg);
    pthread_mutex_destroy(&W.mu);
}

/* ---- HTTP client (libcurl) ---- */

struct resp {
    long status;
    char body[65536];
    size_t len;
    char retry_after[16];
    char allow[64];
};

static size_t on_body(char *p, size_t size, size_t n, void *data)
{
    struct resp *r = data;
    size_t k = size * n;
    if (r->len + k >= sizeof r->body) k = sizeof r->body - 1 - r->len;
    memcpy(r->body + r->len, p, k);
    r->len += k;
    r->body[r->len] = '\0';
    return size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *data)
{
    struct resp *r = data;
    if (size * n > 13 && !strncasecmp(p, "Retry-After:", 12)) sscanf(p + 12, " %15s", r->retry_after);
    if (size * n > 7 && !strncasecmp(p, "Allow:", 6)) sscanf(p + 6, " %63[^\r\n]", r->allow);
    return size * n;
}

static void http(const char *method, const char *path, const char *body, struct resp *r)
{
    memset(r, 0, sizeof *r);
    char url[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", W.http_port, path);
    CURL *c = curl_easy_init();
    cr_assert_not_null(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body) curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    else if (!strcmp(method, "POST")) curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
    CURLcode rc = curl_easy_perform(c);
    cr_assert_eq(rc, CURLE_OK, "%s: %s", path, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_cleanup(c);
}

static json_t *json_of(const struct resp *r)
{
    json_t *j = json_loads(r->body, 0, NULL);
    cr_assert_not_null(j, "not JSON: %s", r->body);
    return j;
}

/* Polls GET /ready until 200 (10 s). */
static void wait_ready(void)
{
    struct resp r;
    for (int i = 0; i < 1000; i++) {
        http("GET", "/ready", NULL, &r);
        if (r.status == 200) return;
        struct pollfd none;
        poll(&none, 0, 10); /* pacing the poll loop, not synchronisation: the loop re-checks /ready */
    }
    cr_assert_fail("gate never became ready: %s", r.body);
}

/* An id of shard s (plain ids hash). */
static void id_on_shard(uint32_t s, char *buf, size_t len)
{
    for (unsigned k = 0;; k++) {
        snprintf(buf, len, "obj-%u", k);
        if (cv_shard_of(buf, SHARDS) == s) return;
    }
}

static const char *const ALL_N1[SHARDS] = {"n1", "n1", "n1", "n1"};

Test(gate_live, http_json_and_any_calls)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    world_start(ALL_N1, 5, ALL_N1, 5);
    wait_ready();
    struct resp r;
    http("POST", "/api/v1/objects/call/Echo/abc/Echo", "{\"request\":{\"id\":\"in\"}}", &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    json_t *j = json_of(&r);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "response"), "id")), "n1:abc:in");
    json_decref(j);

    /* Goverse form: base64 of a serialized Any in, the same form out. */
    Cverse__Rpc__CreateRequest req = CVERSE__RPC__CREATE_REQUEST__INIT;
    req.id = "any";
    uint8_t *any;
    size_t alen;
    char *b64, bodytext[512];
    cr_assert_eq(cv_pbjson_any_pack(&req.base, &any, &alen), 0);
    cr_assert_eq(cv_pbjson_b64_encode(any, alen, &b64, NULL), 0);
    snprintf(bodytext, sizeof bodytext, "{\"request\":\"%s\"}", b64);
    http("POST", "/api/v1/objects/call/Echo/abc/Echo", bodytext, &r);
    free(any);
    free(b64);
    cr_assert_eq(r.status, 200, "%s", r.body);
    j = json_of(&r);
    const char *out = json_string_value(json_object_get(j, "response"));
    cr_assert_not_null(out, "%s", r.body);
    uint8_t *raw;
    size_t rlen;
    cr_assert_eq(cv_pbjson_b64_decode(out, strlen(out), &raw, &rlen), 0);
    ProtobufCMessage *m;
    char err[256];
    cr_assert_eq(cv_pbjson_any_unpack(&cverse__rpc__create_response__descriptor, raw, rlen, &m, err, sizeof err), 0,
                 "%s", err);
    cr_assert_str_eq(((Cverse__Rpc__CreateResponse *)m)->id, "n1:abc:any");
    protobuf_c_message_free_unpacked(m, NULL);
    free(raw);
    json_decref(j);

    /* Empty body: the empty request message. An id with '/' and '#' percent-encoded. */
    http("POST", "/api/v1/objects/call/Echo/shard%231%2FEcho/Echo", NULL, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert(strstr(r.body, "n1:shard#1/Echo:") != NULL, "%s", r.body);
    world_stop();
    curl_global_cleanup();
}

Test(gate_live, http_errors)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    world_start(ALL_N1, 5, ALL_N1, 5);
    wait_ready();
    struct {
        const char *method, *path, *body;
        long status;
        const char *code;
    } cases[] = {
        {"POST", "/api/v1/objects/call/Nope/x/Echo", "{}", 404, "NOT_FOUND"},
        {"POST", "/api/v1/objects/call/Echo/x/Nope", "{}", 404, "NOT_FOUND"},
        {"POST", "/api/v1/objects/call/Echo/missing/Echo", "{}", 404, "NOT_FOUND"},
        {"POST", "/api/v1/objects/call/Echo/x/Echo", "{\"request\":", 400, "INVALID_ARGUMENT"},
        {"POST", "/api/v1/objects/call/Echo/x/Echo", "{\"request\":\"%%%\"}", 400, "INVALID_ARGUMENT"},
        {"POST", "/api/v1/objects/call/Echo/x/Echo", "{\"request\":\"CgA=\"}", 400, "INVALID_ARGUMENT"},
        {"POST", "/api/v1/objects/call/Echo/x/Echo", "{\"request\":{\"bogus\":1}}", 400, "INVALID_ARGUMENT"},
        {"POST", "/api/v1/objects/call/Echo/x/Echo?timeout_ms=0", "{}", 400, "INVALID_ARGUMENT"},
        {"POST", "/api/v1/objects/call/Echo/shard%239%2Fx/Echo", "{}", 400, "INVALID_ARGUMENT"},
        {"POST", "/api/v1/objects/call/Echo/nX%2Fy/Echo", "{}", 404, "NOT_FOUND"},
        {"POST", "/api/v1/objects/call/Echo", "{}", 400, "INVALID_ARGUMENT"},
        {"POST", "/api/v1/objects/call/Echo/%zz/Echo", "{}", 400, "INVALID_ARGUMENT"},  /* bad escape */
        {"POST", "/api/v1/objects/call/Echo/a%00/Echo", "{}", 400, "INVALID_ARGUMENT"}, /* encoded NUL */
        {"POST", "/api/v1/objects/call/Echo/a%2/Echo", "{}", 400, "INVALID_ARGUMENT"},  /* truncated */
        {"GET", "/api/v1/objects/call/Echo/x/Echo", NULL, 405, "METHOD_NOT_ALLOWED"},
        {"POST", "/healthz", "", 405, "METHOD_NOT_ALLOWED"},
        {"GET", "/nowhere", NULL, 404, "NOT_FOUND"},
        {"POST", "/api/v1/objects/create/Nope/x", NULL, 404, "NOT_FOUND"},
    };
    struct resp r;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        http(cases[i].method, cases[i].path, cases[i].body, &r);
        cr_assert_eq(r.status, cases[i].status, "%s %s: %ld %s", cases[i].method, cases[i].path, r.status, r.body);
        json_t *j = json_of(&r);
        cr_assert_str_eq(json_string_value(json_object_get(j, "code")), cases[i].code, "%s", cases[i].path);
        cr_assert(json_string_length(json_object_get(j, "error")) > 0);
        json_decref(j);
    }
    /* A 405 says what is allowed (RFC 9110 15.5.6). */
    http("GET", "/api/v1/objects/call/Echo/x/Echo", NULL, &r);
    cr_assert_str_eq(r.allow, "POST, OPTIONS");
    http("POST", "/healthz", "", &r);
    cr_assert_str_eq(r.allow, "GET, HEAD");
    /* Oversized body: 413 from the HTTP server. */
    char *big = malloc((1u << 20) + 100);
    memset(big, ' ', (1u << 20) + 99);
    big[(1u << 20) + 99] = '\0';
    http("POST", "/api/v1/objects/call/Echo/x/Echo", big, &r);
    free(big);
    cr_assert_eq(r.status, 413);
    /* The 404s and 400s above were counted. */
    http("GET", "/metrics", NULL, &r);
    cr_assert(strstr(r.body, "cverse_gate_requests_total{op=\"call\",result=\"NOT_FOUND\"} 4") != NULL, "%s", r.body);
    world_stop();
    curl_global_cleanup();
}

/* Jansson allocates through this while jansson_fail is set: allocation then fails (out of memory cannot
 * be produced for real; what is tested is the gate's answer to it). */
static volatile int jansson_fail;

static void *jansson_malloc(size_t n)
{
    return __atomic_load_n(&jansson_fail, __ATOMIC_SEQ_CST) ? NULL : malloc(n);
}

/* When the JSON of an answer cannot be built, the 500 body is exactly the error JSON: no trailing NUL
 * (the gate once sent 44 bytes for its 43-byte literal). */
Test(gate_live, out_of_memory_answer_is_exact_json)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    world_start(ALL_N1, 5, ALL_N1, 5);
    wait_ready();
    json_set_alloc_funcs(jansson_malloc, free);
    struct resp r;
    __atomic_store_n(&jansson_fail, 1, __ATOMIC_SEQ_CST);
    http("GET", "/healthz", NULL, &r);
    __atomic_store_n(&jansson_fail, 0, __ATOMIC_SEQ_CST);
    cr_assert_eq(r.status, 500);
    cr_assert_eq(r.len, strlen(r.body), "%zu bytes for a %zu-byte body", r.len, strlen(r.body));
    cr_assert_str_eq(r.body, "{\"error\":\"out of memory\",\"code\":\"INTERNAL\"}");
    world_stop();
    curl_global_cleanup();
}

Test(gate_live, create_delete_and_ops_endpoints)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    world_start(ALL_N1, 5, ALL_N1, 5);
    wait_ready();
    struct resp r;
    http("POST", "/api/v1/objects/create/Echo/c1", NULL, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(r.body, "{\"id\":\"c1\"}");
    http("POST", "/api/v1/objects/delete/Echo/c1", NULL, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    cr_assert_str_eq(r.body, "{\"success\":true}");
    http("GET", "/healthz", NULL, &r);
    cr_assert_eq(r.status, 200);
    http("GET", "/metrics", NULL, &r);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.body, "cverse_gate_map_applied_index 5") != NULL, "%s", r.body);
    cr_assert(strstr(r.body, "cverse_gate_requests_total{op=\"create\",result=\"OK\"} 1") != NULL);
    cr_assert(strstr(r.body, "cverse_gate_request_seconds_count{op=\"delete\"} 1") != NULL);
    world_stop();
    curl_global_cleanup();
}

Test(gate_live, stale_map_redirect_then_retry)
{
    /* The gate subscribes with a map (index 5) saying n1 owns every shard; the truth (index 9) gives
     * shard 2 to n2. A call for shard 2 goes to n1, is redirected, and once the fake pushes the new map
     * the gate retries on n2 and succeeds, transparently for the client. */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const char *const truth[SHARDS] = {"n1", "n1", "n2", "n1"};
    world_start(truth, 9, ALL_N1, 5);
    W.push_on_redirect = true;
    wait_ready();
    char id[32], path[128];
    id_on_shard(2, id, sizeof id);
    snprintf(path, sizeof path, "/api/v1/objects/call/Echo/%s/Echo", id);
    struct resp r;
    http("POST", path, "{\"request\":{}}", &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    char want[64];
    snprintf(want, sizeof want, "n2:%s:", id);
    cr_assert(strstr(r.body, want) != NULL, "%s", r.body);
    pthread_mutex_lock(&W.mu);
    cr_assert_eq(W.nodes[0].redirects, 1);
    cr_assert_eq(W.nodes[1].calls, 1);
    pthread_mutex_unlock(&W.mu);
    http("GET", "/metrics", NULL, &r);
    cr_assert(strstr(r.body, "cverse_gate_retries_total{reason=\"redirect\"} 1") != NULL, "%s", r.body);
    cr_assert(strstr(r.body, "cverse_gate_map_applied_index 9") != NULL, "%s", r.body);
    world_stop();
    curl_global_cleanup();
}

Test(gate_live, redirect_without_push_retries_until_the_deadline)
{
    /* No push ever comes: the gate keeps retrying with backoff and gives up at the call's deadline
     * with 503 UNAVAILABLE + Retry-After, having retried several times. */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const char *const truth[SHARDS] = {"n2", "n2", "n2", "n2"};
    world_start(truth, 9, ALL_N1, 5);
    wait_ready();
    struct resp r;
    uint64_t t0 = cv_mono_ms();
    http("POST", "/api/v1/objects/call/Echo/x/Echo?timeout_ms=1000", "{}", &r);
    uint64_t took = cv_mono_ms() - t0;
    cr_assert_eq(r.status, 503, "%s", r.body);
    cr_assert_str_eq(r.retry_after, "1");
    cr_assert(strstr(r.body, "gave up at the call's deadline") != NULL, "%s", r.body);
    cr_assert(took >= 990 && took < 6000, "took %llu ms", (unsigned long long)took);
    pthread_mutex_lock(&W.mu);
    cr_assert(W.nodes[0].redirects >= 3, "%d redirects", W.nodes[0].redirects);
    pthread_mutex_unlock(&W.mu);
    world_stop();
    curl_global_cleanup();
}

Test(gate_live, lagging_map_resubscribes_to_the_node_with_the_newer_one)
{
    /* n1's subscription answer is stale (index 5) and it never pushes, though it knows index 9 (shard 2
     * moved to n2) and says so in its redirects. After SUB_LAG_MS behind, the gate subscribes to n1
     * again, gets index 9, and the call (long deadline) succeeds on n2. */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const char *const truth[SHARDS] = {"n1", "n1", "n2", "n1"};
    world_start(truth, 9, ALL_N1, 5);
    pthread_mutex_lock(&W.mu);
    W.resubscribe_truth = true;
    pthread_mutex_unlock(&W.mu);
    wait_ready();
    char id[32], path[160];
    id_on_shard(2, id, sizeof id);
    snprintf(path, sizeof path, "/api/v1/objects/call/Echo/%s/Echo?timeout_ms=15000", id);
    struct resp r;
    uint64_t t0 = cv_mono_ms();
    http("POST", path, "{}", &r);
    uint64_t took = cv_mono_ms() - t0;
    cr_assert_eq(r.status, 200, "%s", r.body);
    const char *want = "{\"response\":{\"id\":\"n2:";
    cr_assert(strncmp(r.body, want, strlen(want)) == 0, "%s", r.body);
    cr_assert(took >= 1900 && took < 10000, "took %llu ms", (unsigned long long)took);
    pthread_mutex_lock(&W.mu);
    cr_assert(W.nodes[0].redirects >= 2, "%d", W.nodes[0].redirects);
    cr_assert_eq(W.nodes[0].subscribes, 2);
    pthread_mutex_unlock(&W.mu);
    http("GET", "/metrics", NULL, &r);
    cr_assert(strstr(r.body, "cverse_gate_subscriptions_total 2") != NULL, "%s", r.body);
    cr_assert(strstr(r.body, "cverse_gate_map_applied_index 9") != NULL, "%s", r.body);
    world_stop();
    curl_global_cleanup();
}

Test(gate_live, silent_subscription_node_is_given_up)
{
    /* n1 sends heartbeats, then falls silent while its connection stays up (a frozen or fenced node:
     * SIGSTOP keeps the socket open). Within SUB_STALL_MS (+ the watch period) the gate subscribes to n2,
     * whose map (index 9) moved shard 2 to n2: a call to shard 2 with a short deadline reaches n2. A node
     * that never sent a heartbeat (every other test) is never given up for its silence. */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const char *const truth[SHARDS] = {"n1", "n1", "n2", "n1"};
    world_start(truth, 9, ALL_N1, 5);
    pthread_mutex_lock(&W.mu);
    W.n2_truth = true;
    W.nodes[0].beating = true;
    pthread_mutex_unlock(&W.mu);
    wait_ready();
    uint64_t t0 = cv_mono_ms();
    /* Not a synchronisation: an observation window longer than the 800 ms silence bound, during which
     * heartbeats flow and n1 must be kept. */
    while (cv_mono_ms() - t0 < 1500) uv_sleep(50);
    pthread_mutex_lock(&W.mu);
    cr_assert_eq(W.nodes[1].subscribes, 0, "a beating subscription is kept");
    W.nodes[0].beating = false; /* "frozen" */
    pthread_mutex_unlock(&W.mu);
    t0 = cv_mono_ms();
    int subs = 0;
    while (cv_mono_ms() - t0 < 5000 && subs == 0) {
        uv_sleep(20);
        pthread_mutex_lock(&W.mu);
        subs = W.nodes[1].subscribes;
        pthread_mutex_unlock(&W.mu);
    }
    uint64_t took = cv_mono_ms() - t0;
    cr_assert_eq(subs, 1, "subscribed to n2 after n1 fell silent");
    cr_assert(took >= 700 && took < 2000, "took %llu ms", (unsigned long long)took);
    char id[32], path[160];
    id_on_shard(2, id, sizeof id);
    snprintf(path, sizeof path, "/api/v1/objects/call/Echo/%s/Echo?timeout_ms=3000", id);
    struct resp r;
    http("POST", path, "{}", &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    const char *want = "{\"response\":{\"id\":\"n2:";
    cr_assert(strncmp(r.body, want, strlen(want)) == 0, "%s", r.body);
    http("GET", "/metrics", NULL, &r);
    cr_assert(strstr(r.body, "cverse_gate_subscription_stalls_total 1") != NULL, "%s", r.body);
    world_stop();
    curl_global_cleanup();
}

Test(gate_live, subscription_fails_over_to_the_next_node)
{
    /* n1 (first in the config) refuses: the gate moves on to n2, gets its map and becomes ready. */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    world_start_ex(ALL_N1, 5, ALL_N1, 5, true);
    wait_ready();
    pthread_mutex_lock(&W.mu);
    cr_assert(W.nodes[0].subscribes >= 1);
    cr_assert_null(W.nodes[0].sub);
    cr_assert_not_null(W.nodes[1].sub);
    pthread_mutex_unlock(&W.mu);
    world_stop();
    curl_global_cleanup();
}

/* ---- native protocol client: a blocking socket with the framing ---- */

static int native_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)W.grpc_port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

static void native_send(int fd, uint64_t id, const char *method, ProtobufCMessage *body, uint32_t deadline_ms)
{
    uint8_t bbuf[4096];
    Cverse__Rpc__Frame f = CVERSE__RPC__FRAME__INIT;
    f.id = id;
    f.kind = CVERSE__RPC__KIND__KIND_REQUEST;
    f.method = (char *)method;
    f.body.data = bbuf;
    f.body.len = body ? protobuf_c_message_pack(body, bbuf) : 0;
    f.deadline_ms = deadline_ms;
    uint8_t *out;
    size_t len;
    cr_assert_eq(cv_frame_encode(&f, &out, &len), 0);
    cr_assert_eq(send(fd, out, len, MSG_NOSIGNAL), (ssize_t)len);
    free(out);
}

/* Reads the next frame (20 s at most); rd keeps bytes of later frames. Caller frees the frame. */
static Cverse__Rpc__Frame *native_recv(int fd, struct cv_frame_reader *rd)
{
    Cverse__Rpc__Frame *resp = NULL;
    while (cv_frame_reader_next(rd, &resp) == 0) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        cr_assert_eq(poll(&p, 1, 20000), 1, "no answer from the gate");
        uint8_t buf[4096];
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        cr_assert(n > 0, "the gate closed the connection");
        cv_frame_reader_feed(rd, buf, (size_t)n);
    }
    cr_assert_not_null(resp);
    cr_assert_eq(resp->kind, CVERSE__RPC__KIND__KIND_RESPONSE);
    return resp;
}

/* Sends one request and returns its response frame (caller frees). */
static Cverse__Rpc__Frame *native_call(int fd, uint64_t id, const char *method, ProtobufCMessage *body,
                                       uint32_t deadline_ms)
{
    native_send(fd, id, method, body, deadline_ms);
    struct cv_frame_reader rd;
    cv_frame_reader_init(&rd, 0);
    Cverse__Rpc__Frame *resp = native_recv(fd, &rd);
    cv_frame_reader_free(&rd);
    cr_assert_eq(resp->id, id);
    return resp;
}

Test(gate_live, native_call_create_delete_status)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const char *const owners[SHARDS] = {"n1", "n2", "n1", "n2"};
    world_start(owners, 5, owners, 5);
    wait_ready();
    int fd = native_connect();

    Cverse__Rpc__CallRequest c = CVERSE__RPC__CALL_REQUEST__INIT;
    c.type = "Echo";
    c.id = "shard#1/e";
    c.method = "Echo";
    c.request_json = "{\"id\":\"j\"}";
    Cverse__Rpc__Frame *f = native_call(fd, 1, "gate.call", &c.base, 5000);
    cr_assert_eq(f->status, 0, "%s", f->error);
    Cverse__Rpc__CallResponse *cr = cverse__rpc__call_response__unpack(NULL, f->body.len, f->body.data);
    cr_assert_str_eq(cr->response_json, "{\"id\":\"n2:shard#1/e:j\"}");
    cverse__rpc__call_response__free_unpacked(cr, NULL);
    cverse__rpc__frame__free_unpacked(f, NULL);

    /* Bytes in, bytes out. */
    Cverse__Rpc__CreateRequest in = CVERSE__RPC__CREATE_REQUEST__INIT;
    in.id = "b";
    uint8_t ib[64];
    c.request_json = "";
    c.request.data = ib;
    c.request.len = cverse__rpc__create_request__pack(&in, ib);
    c.id = "shard#0/e";
    f = native_call(fd, 2, "gate.call", &c.base, 0);
    cr_assert_eq(f->status, 0, "%s", f->error);
    cr = cverse__rpc__call_response__unpack(NULL, f->body.len, f->body.data);
    Cverse__Rpc__CreateResponse *out = cverse__rpc__create_response__unpack(NULL, cr->response.len, cr->response.data);
    cr_assert_str_eq(out->id, "n1:shard#0/e:b");
    cverse__rpc__create_response__free_unpacked(out, NULL);
    cverse__rpc__call_response__free_unpacked(cr, NULL);
    cverse__rpc__frame__free_unpacked(f, NULL);

    /* Form ANY: the Any's bytes go through the gate; the node names the response's type. */
    uint8_t *any;
    size_t alen;
    in.id = "a";
    cr_assert_eq(cv_pbjson_any_pack(&in.base, &any, &alen), 0);
    c.form = CVERSE__RPC__CALL_FORM__CALL_FORM_ANY;
    c.request.data = any;
    c.request.len = alen;
    f = native_call(fd, 8, "gate.call", &c.base, 0);
    free(any);
    cr_assert_eq(f->status, 0, "%s", f->error);
    cr = cverse__rpc__call_response__unpack(NULL, f->body.len, f->body.data);
    cr_assert_str_eq(cr->response_type, "cverse.rpc.CreateResponse");
    out = cverse__rpc__create_response__unpack(NULL, cr->response.len, cr->response.data);
    cr_assert_str_eq(out->id, "n1:shard#0/e:a");
    cverse__rpc__create_response__free_unpacked(out, NULL);
    cverse__rpc__call_response__free_unpacked(cr, NULL);
    cverse__rpc__frame__free_unpacked(f, NULL);
    c.form = CVERSE__RPC__CALL_FORM__CALL_FORM_BYTES;
    c.request.data = ib;
    c.request.len = cverse__rpc__create_request__pack(&in, ib);

    c.method = "Nope";
    f = native_call(fd, 3, "gate.call", &c.base, 0);
    cr_assert_eq(f->status, CV_ENOTFOUND);
    cr_assert(strstr(f->error, "Nope") != NULL);
    cverse__rpc__frame__free_unpacked(f, NULL);

    /* A type only the nodes know: the gate forwards it, the owner's 404 comes back. */
    c.type = "Other";
    f = native_call(fd, 9, "gate.call", &c.base, 0);
    cr_assert_eq(f->status, CV_ENOTFOUND);
    cr_assert_str_eq(f->error, "unknown object type \"Other\"");
    cverse__rpc__frame__free_unpacked(f, NULL);

    Cverse__Rpc__CreateRequest cq = CVERSE__RPC__CREATE_REQUEST__INIT;
    cq.type = "Echo";
    cq.id = "made";
    f = native_call(fd, 4, "gate.create", &cq.base, 0);
    cr_assert_eq(f->status, 0, "%s", f->error);
    Cverse__Rpc__CreateResponse *cresp = cverse__rpc__create_response__unpack(NULL, f->body.len, f->body.data);
    cr_assert_str_eq(cresp->id, "made");
    cverse__rpc__create_response__free_unpacked(cresp, NULL);
    cverse__rpc__frame__free_unpacked(f, NULL);

    f = native_call(fd, 5, "gate.delete", &cq.base, 0);
    cr_assert_eq(f->status, 0, "%s", f->error);
    cverse__rpc__frame__free_unpacked(f, NULL);

    Cverse__Rpc__StatusRequest sq = CVERSE__RPC__STATUS_REQUEST__INIT;
    f = native_call(fd, 6, "gate.status", &sq.base, 0);
    cr_assert_eq(f->status, 0);
    Cverse__Rpc__StatusResponse *st = cverse__rpc__status_response__unpack(NULL, f->body.len, f->body.data);
    cr_assert_str_eq(st->gate_id, "gate-1");
    cr_assert_eq(st->map->applied_index, 5);
    cr_assert_eq(st->map->n_owners, SHARDS);
    cr_assert_str_eq(st->map->owners[1], "n2");
    cr_assert_eq(st->n_gates, 1);
    cr_assert(st->gates[0]->connected);
    cverse__rpc__status_response__free_unpacked(st, NULL);
    cverse__rpc__frame__free_unpacked(f, NULL);

    f = native_call(fd, 7, "gate.bogus", NULL, 0);
    cr_assert_eq(f->status, CV_ENOTFOUND);
    cverse__rpc__frame__free_unpacked(f, NULL);
    close(fd);
    world_stop();
    curl_global_cleanup();
}

Test(gate_live, stop_refuses_new_calls_and_drains_the_ones_in_flight)
{
    /* Shard 3 has no owner: a call to it waits (retrying). The gate is told to stop meanwhile: a new call
     * is refused at once, the waiting one still ends normally at its own deadline (within the drain
     * bound), then the gate closes. */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const char *const owners[SHARDS] = {"n1", "n1", "n1", ""};
    world_start(owners, 5, owners, 5);
    int fd = native_connect();
    struct cv_frame_reader rd;
    cv_frame_reader_init(&rd, 0);
    char id[32];
    id_on_shard(3, id, sizeof id);
    Cverse__Rpc__CallRequest c = CVERSE__RPC__CALL_REQUEST__INIT;
    c.type = "Echo";
    c.id = id;
    c.method = "Echo";
    native_send(fd, 1, "gate.call", &c.base, 3000);
    /* The gate.status answer proves the call above was received (same connection, in order). */
    Cverse__Rpc__StatusRequest sq = CVERSE__RPC__STATUS_REQUEST__INIT;
    native_send(fd, 2, "gate.status", &sq.base, 0);
    Cverse__Rpc__Frame *f = native_recv(fd, &rd);
    cr_assert_eq(f->id, 2);
    cverse__rpc__frame__free_unpacked(f, NULL);

    uint64_t t0 = cv_mono_ms();
    uv_async_send(&W.stop_gate);
    struct resp r;
    for (int i = 0; i < 1000; i++) { /* /ready says so once the loop thread saw the stop */
        http("GET", "/ready", NULL, &r);
        if (strstr(r.body, "shutting down")) break;
    }
    cr_assert_eq(r.status, 503);
    cr_assert(strstr(r.body, "gate is shutting down") != NULL, "%s", r.body);
    native_send(fd, 10, "gate.call", &c.base, 3000);
    f = native_recv(fd, &rd);
    cr_assert_eq(f->id, 10, "a new call is answered at once");
    cr_assert_eq(f->status, CV_EUNAVAIL);
    cr_assert_str_eq(f->error, "gate is shutting down");
    cverse__rpc__frame__free_unpacked(f, NULL);
    Cverse__Rpc__Frame *first = native_recv(fd, &rd);
    cr_assert_eq(first->id, 1);
    cr_assert_eq(first->status, CV_EUNAVAIL, "%d %s", first->status, first->error);
    cr_assert(strstr(first->error, "no owner") != NULL, "%s", first->error);
    cverse__rpc__frame__free_unpacked(first, NULL);
    cr_assert(cv_mono_ms() - t0 < 7500, "drained by the calls' own deadlines, not the 8 s drain bound");
    cv_frame_reader_free(&rd);
    close(fd);
    world_stop();
    curl_global_cleanup();
}

/* One truth for status names: the names and HTTP statuses the gate answers with (cv_err_status,
 * cv_err_http) are the core table's client status of each code (which the CLI prints) for every CV_E*
 * code, and every name is upper case. */
Test(gate_errors, status_names_match_the_core_table)
{
    for (int e = -1; e >= -20; e--) {
        enum cv_status st = cv_err_code(e);
        cr_expect_str_eq(cv_err_status(e), cv_status_name(st), "code %d (%s)", e, cv_errname(e));
        cr_expect_eq(cv_err_http(e), cv_status_http(st), "code %d (%s)", e, cv_errname(e));
        for (const char *c = cv_err_status(e); *c; c++)
            cr_expect(*c == '_' || (*c >= 'A' && *c <= 'Z'), "code %d: %s", e, cv_err_status(e));
    }
}

/* ---------------------------------------------------------------------------------------------------
 * Stop: "gate stopped" and on_stopped come only after every handle of the gate (its HTTP and native
 * servers' included) finished closing. */

TestSuite(gate_stop, .fini = cv_lsan_check);

static struct {
    uv_loop_t loop;
    uv_check_t check; /* the test's own handle: runs every iteration, before that iteration's close callbacks */
    bool stopped;
    int handles_at_stopped;
    int logged_early; /* iterations that saw "stopped" logged while the gate still had handles open */
} S;

static void stop_count(uv_handle_t *h, void *arg)
{
    if (h != (uv_handle_t *)&S.check) ++*(int *)arg; /* closing or not: its close callback has not run */
}

static int stop_gate_handles(void)
{
    int n = 0;
    uv_walk(&S.loop, stop_count, &n);
    return n;
}

static void stop_check_cb(uv_check_t *c)
{
    (void)c;
    if (cv_log_capture_count_lines("gate gate-1 stopped", 1) > 0 && stop_gate_handles() > 0) S.logged_early++;
}

static void stop_on_stopped(void *data)
{
    (void)data;
    S.stopped = true;
    S.handles_at_stopped = stop_gate_handles();
}

/* A started gate (its node unreachable) is stopped; an HTTP and a native connection are open. */
Test(gate_stop, stopped_after_every_handle_closed, .timeout = 30)
{
    memset(&S, 0, sizeof S);
    S.handles_at_stopped = -1;
    static const char text[] = "version: 1\ncluster:\n  shards: 4\nnodes:\n"
                               "  - {id: n1, grpc_addr: \"127.0.0.1:1\", http_addr: \"127.0.0.1:2\"}\n"
                               "gates:\n  - {id: gate-1, grpc_addr: \"127.0.0.1:3\", http_addr: \"127.0.0.1:4\"}\n";
    struct cv_config *cfg;
    char err[256];
    cr_assert_eq(cv_config_parse(text, strlen(text), "test.yml", &cfg, err, sizeof err), 0, "%s", err);
    cr_assert_eq(uv_loop_init(&S.loop), 0);
    uv_check_init(&S.loop, &S.check);
    uv_check_start(&S.check, stop_check_cb);
    uv_unref((uv_handle_t *)&S.check);
    cv_log_capture_start();
    struct cv_gate *g = NULL;
    struct cv_gate_opts o = {.loop = &S.loop, .cfg = cfg, .gate_id = "gate-1", .grpc_addr = "127.0.0.1:0",
                             .http_addr = "127.0.0.1:0", .on_stopped = stop_on_stopped};
    cr_assert_eq(cv_gate_start(&o, &g), 0);
    int ports[2] = {cv_gate_http_port(g), cv_gate_grpc_port(g)}, fds[2];
    for (int i = 0; i < 2; i++) { /* the kernel completes the handshake; the gate accepts on its loop */
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)ports[i]),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        cr_assert_eq(connect(fds[i], (struct sockaddr *)&a, sizeof a), 0);
    }
    for (int i = 0; i < 20; i++) uv_run(&S.loop, UV_RUN_NOWAIT);
    cv_gate_stop(g);
    uv_run(&S.loop, UV_RUN_DEFAULT);
    size_t logged = cv_log_capture_count_lines("gate gate-1 stopped", 1);
    cv_log_capture_stop();
    cr_assert(S.stopped, "on_stopped ran");
    cr_assert_eq(S.handles_at_stopped, 0, "on_stopped ran with %d handles still open", S.handles_at_stopped);
    cr_assert_eq(S.logged_early, 0, "\"gate stopped\" was logged while handles were still closing");
    cr_assert_eq(logged, 1);
    uv_close((uv_handle_t *)&S.check, NULL);
    uv_run(&S.loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&S.loop), 0, "every handle closed");
    close(fds[0]);
    close(fds[1]);
    cv_config_free(cfg);
}

/* ---------------------------------------------------------------------------------------------------
 * The forward state machine (forwarder.h): its table, and the path real forwards take through it. */

TestSuite(gate_fwd, .fini = cv_lsan_check);

Test(gate_fwd, table)
{
    const struct cv_sm_conf *c = &cv_gate_fwd_sm;
    cr_assert_eq(cv_sm_conf_check(c), 0);
    cr_assert_eq(c->n_states, CV_FWD_N_STATES);
    cr_assert(c->states[CV_FWD_QUEUED].flags & CV_SM_INITIAL);
    for (int s = 0; s < CV_FWD_N_STATES; s++) {
        cr_assert_eq((c->states[s].flags & CV_SM_INITIAL) != 0, s == CV_FWD_QUEUED, "%s", c->states[s].name);
        cr_assert_eq((c->states[s].flags & CV_SM_FINAL) != 0, s == CV_FWD_DONE, "%s", c->states[s].name);
        cr_assert(s == CV_FWD_DONE || cv_sm_allowed(c, s, CV_FWD_DONE), "%s can end (deadline, closing)",
                  c->states[s].name);
        cr_assert(!cv_sm_allowed(c, CV_FWD_DONE, s), "done is the end");
    }
    /* Only routing sends; every wait ends in routing again; a sent forward never routes without a wait. */
    for (int s = 0; s < CV_FWD_N_STATES; s++)
        cr_assert_eq(cv_sm_allowed(c, s, CV_FWD_SENT), s == CV_FWD_ROUTING, "%s -> sent", c->states[s].name);
    cr_assert(cv_sm_allowed(c, CV_FWD_BACKOFF, CV_FWD_ROUTING));
    cr_assert(cv_sm_allowed(c, CV_FWD_AWAIT_MAP, CV_FWD_ROUTING));
    cr_assert(!cv_sm_allowed(c, CV_FWD_SENT, CV_FWD_ROUTING));
    cr_assert(!cv_sm_allowed(c, CV_FWD_QUEUED, CV_FWD_BACKOFF));
    cr_assert(!cv_sm_allowed(c, CV_FWD_BACKOFF, CV_FWD_AWAIT_MAP));
    /* The documented paths are walks through the table. */
    static const int paths[][8] = {
        {CV_FWD_QUEUED, CV_FWD_ROUTING, CV_FWD_SENT, CV_FWD_DONE, -1},
        {CV_FWD_QUEUED, CV_FWD_ROUTING, CV_FWD_SENT, CV_FWD_AWAIT_MAP, CV_FWD_ROUTING, CV_FWD_SENT, CV_FWD_DONE, -1},
        {CV_FWD_QUEUED, CV_FWD_ROUTING, CV_FWD_BACKOFF, CV_FWD_ROUTING, CV_FWD_DONE, -1},
        {CV_FWD_QUEUED, CV_FWD_DONE, -1},
    };
    for (size_t p = 0; p < sizeof paths / sizeof paths[0]; p++)
        for (int i = 1; paths[p][i] >= 0; i++)
            cr_assert(cv_sm_allowed(c, paths[p][i - 1], paths[p][i]), "path %zu step %d", p, i);
}

struct fwd_result {
    bool done;
    int status;
    char body[256];
};

static void fwd_done(void *data, int status, const char *error, const uint8_t *body, size_t len)
{
    struct fwd_result *r = data;
    r->done = true;
    r->status = status;
    snprintf(r->body, sizeof r->body, "%.*s", status ? (int)strlen(error) : (int)len,
             status ? error : (const char *)body);
}

static void fwd_closed(void *data)
{
    *(bool *)data = true;
}

/* Runs W.loop until *flag (10 s at most). */
static void run_until(const bool *flag, const char *what)
{
    uint64_t end = cv_mono_ms() + 10000;
    while (!*flag && cv_mono_ms() < end) uv_run(&W.loop, UV_RUN_ONCE);
    cr_assert(*flag, "timed out waiting for %s", what);
}

/* A forwarder on its own against the fake nodes: subscribed to a stale map (index 5, n1 owns every
 * shard) while the truth (index 9) gives shard 2 to n2. A call for shard 2 goes to n1, is redirected,
 * waits for the newer map the fake pushes, then goes to n2: queued, routing, sent, await_map, routing,
 * sent, done — and nothing else. */
Test(gate_fwd, redirected_forward_path)
{
    const char *const truth[SHARDS] = {"n1", "n1", "n2", "n1"};
    world_fakes(truth, 9, ALL_N1, 5, false);
    W.push_on_redirect = true;
    struct cv_forwarder *fw;
    struct cv_forwarder_opts o = {.loop = &W.loop, .cfg = W.cfg, .gate_id = "gate-1", .default_timeout_ms = 5000};
    cr_assert_eq(cv_forwarder_init(&o, &fw), 0);
    cr_assert_eq(cv_forwarder_start(fw), 0);
    struct cv_gate_stats st;
    uint64_t end = cv_mono_ms() + 10000;
    do {
        uv_run(&W.loop, UV_RUN_ONCE);
        cv_forwarder_stats(fw, &st);
    } while ((st.map_index != 5 || st.connections != 2) && cv_mono_ms() < end);
    cr_assert(st.map_index == 5 && st.connections == 2, "subscribed and connected");
    char id[32];
    id_on_shard(2, id, sizeof id);
    struct fwd_result r = {0};
    cr_assert_eq(cv_forwarder_forward(fw, CV_GATE_CALL, "Echo", id, "Echo", NULL, 0, 0, fwd_done, &r), 0);
    cr_assert(!r.done, "never answered from inside cv_forwarder_forward");
    run_until(&r.done, "the forward");
    cr_assert_eq(r.status, 0, "%s", r.body);
    cv_forwarder_stats(fw, &st);
    const uint64_t want[CV_FWD_N_STATES] = {[CV_FWD_QUEUED] = 1, [CV_FWD_ROUTING] = 2, [CV_FWD_SENT] = 2,
                                            [CV_FWD_AWAIT_MAP] = 1, [CV_FWD_BACKOFF] = 0, [CV_FWD_DONE] = 1};
    for (int s = 0; s < CV_FWD_N_STATES; s++)
        cr_assert_eq(st.fwd_moves[s], want[s], "moves into %s: %llu", cv_sm_state_name(&cv_gate_fwd_sm, s),
                     (unsigned long long)st.fwd_moves[s]);
    cr_assert_eq(st.retries[CV_GATE_RETRY_REDIRECT], 1);
    cr_assert_eq(st.map_index, 9);
    cr_assert_eq(W.nodes[1].calls, 1, "answered by n2");
    bool closed = false;
    cv_forwarder_close(fw, fwd_closed, &closed);
    cr_assert(!closed, "never called back from inside cv_forwarder_close");
    world_close_fakes();
    uv_run(&W.loop, UV_RUN_DEFAULT);
    cr_assert(closed);
    cr_assert_eq(uv_loop_close(&W.loop), 0, "every handle closed");
    cv_config_free(W.cfg);
    pthread_mutex_destroy(&W.mu);
}

/* Closing cancels a waiting forward (shard 3 has no owner): backoff, then done with CV_ECANCELED. */
Test(gate_fwd, close_cancels_a_waiting_forward)
{
    const char *const owners[SHARDS] = {"n1", "n1", "n1", ""};
    world_fakes(owners, 5, owners, 5, false);
    struct cv_forwarder *fw;
    struct cv_forwarder_opts o = {.loop = &W.loop, .cfg = W.cfg, .gate_id = "gate-1", .default_timeout_ms = 5000};
    cr_assert_eq(cv_forwarder_init(&o, &fw), 0);
    cr_assert_eq(cv_forwarder_start(fw), 0);
    char id[32];
    id_on_shard(3, id, sizeof id);
    struct fwd_result r = {0};
    cr_assert_eq(cv_forwarder_forward(fw, CV_GATE_DELETE, "Echo", id, NULL, NULL, 0, 0, fwd_done, &r), 0);
    struct cv_gate_stats st;
    uint64_t end = cv_mono_ms() + 10000;
    do {
        uv_run(&W.loop, UV_RUN_ONCE);
        cv_forwarder_stats(fw, &st);
    } while (st.fwd_moves[CV_FWD_BACKOFF] == 0 && cv_mono_ms() < end);
    cr_assert(st.fwd_moves[CV_FWD_BACKOFF] > 0, "the forward waits for an owner");
    bool closed = false;
    cv_forwarder_close(fw, fwd_closed, &closed);
    cr_assert(r.done, "waiting forwards fail at once");
    cr_assert_eq(r.status, CV_ECANCELED);
    world_close_fakes();
    uv_run(&W.loop, UV_RUN_DEFAULT);
    cr_assert(closed);
    cr_assert_eq(uv_loop_close(&W.loop), 0, "every handle closed");
    cv_config_free(W.cfg);
    pthread_mutex_destroy(&W.mu);
}

/* ---------------------------------------------------------------------------------------------------
 * The metrics page from a stats snapshot (metrics.h). */

Test(gate_metrics, page_from_stats)
{
    struct cv_gate_stats st = {0};
    st.results[CV_GATE_CALL][CV_STATUS_NOT_FOUND] = 4;
    st.results[CV_GATE_CREATE][CV_STATUS_OK] = 1;
    st.lat[CV_GATE_DELETE].counts[0] = 1;
    st.lat[CV_GATE_DELETE].sum_s = 0.0005;
    st.retries[CV_GATE_RETRY_REDIRECT] = 1;
    st.map_index = 9;
    st.unassigned = 2;
    st.connections = 2;
    st.sub_switches = 2;
    size_t len;
    char *p = cv_gate_metrics_text(&st, NULL, &len);
    cr_assert_not_null(p);
    cr_assert_eq(strlen(p), len);
    const char *want[] = {
        "# TYPE cverse_gate_requests_total counter\n",
        "cverse_gate_requests_total{op=\"call\",result=\"OK\"} 0\n",
        "cverse_gate_requests_total{op=\"call\",result=\"NOT_FOUND\"} 4\n",
        "cverse_gate_requests_total{op=\"create\",result=\"OK\"} 1\n",
        "cverse_gate_retries_total{reason=\"redirect\"} 1\n",
        "cverse_gate_retries_total{reason=\"no_owner\"} 0\n",
        "# TYPE cverse_gate_request_seconds histogram\n",
        "cverse_gate_request_seconds_bucket{op=\"delete\",le=\"0.001\"} 1\n",
        "cverse_gate_request_seconds_bucket{op=\"delete\",le=\"+Inf\"} 1\n",
        "cverse_gate_request_seconds_count{op=\"delete\"} 1\n",
        "cverse_gate_map_applied_index 9\n",
        "cverse_gate_shards_unassigned 2\n",
        "cverse_gate_node_connections 2\n",
        "cverse_gate_requests_in_flight 0\n",
        "# TYPE cverse_gate_maps_applied_total counter\n",
        "cverse_gate_maps_ignored_total 0\n",
        "cverse_gate_subscriptions_total 2\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        cr_assert(strstr(p, want[i]) != NULL, "missing %s in:\n%s", want[i], p);
    cr_assert_null(strstr(p, "result=\"INTERNAL\""), "statuses never seen are left out");
    free(p);
}

/* The push families appear with the push registry's counts, and only then. */
Test(gate, metrics_push_families)
{
    struct cv_gate_stats st = {0};
    struct cv_gate_push_stats ps = {.delivered = 7, .dropped = 3, .clients = 2};
    size_t len;
    char *p = cv_gate_metrics_text(&st, &ps, &len);
    cr_assert_not_null(p);
    cr_assert_not_null(strstr(p, "\ncverse_gate_push_delivered_total 7\n"), "%s", p);
    cr_assert_not_null(strstr(p, "\ncverse_gate_push_dropped_total 3\n"));
    cr_assert_not_null(strstr(p, "# TYPE cverse_gate_clients gauge\ncverse_gate_clients 2\n"));
    free(p);
    p = cv_gate_metrics_text(&st, NULL, &len);
    cr_assert_null(strstr(p, "cverse_gate_clients"), "without a registry: no push families");
    free(p);
}

/* The client ports' limits: connections open, cuts by reason (every reason listed), 429s. */
Test(gate, metrics_limit_families)
{
    struct cv_gate_stats st = {0};
    st.client_conns = 5;
    st.cut[CV_GATE_CUT_REQUEST_TIMEOUT] = 2;
    st.cut[CV_GATE_CUT_TLS] = 1;
    st.rate_limited = 9;
    size_t len;
    char *p = cv_gate_metrics_text(&st, NULL, &len);
    cr_assert_not_null(p);
    const char *want[] = {
        "# TYPE cverse_gate_client_connections gauge\ncverse_gate_client_connections 5\n",
        "# TYPE cverse_gate_connections_cut_total counter\n",
        "cverse_gate_connections_cut_total{reason=\"request_timeout\"} 2\n",
        "cverse_gate_connections_cut_total{reason=\"idle_timeout\"} 0\n",
        "cverse_gate_connections_cut_total{reason=\"max_connections\"} 0\n",
        "cverse_gate_connections_cut_total{reason=\"tls_failed\"} 1\n",
        "\ncverse_gate_rate_limited_total 9\n",
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        cr_assert(strstr(p, want[i]) != NULL, "missing %s in:\n%s", want[i], p);
    free(p);
}

/* ---- gate/auth (issue 14): tokens, the hook's precedence, native connections ---- */

TestSuite(gateauth, .fini = cv_lsan_check);

static int hook_calls;
static int test_authorise(void *data, const struct cv_gate_request *req, struct cv_gate_identity *who)
{
    hook_calls++;
    cr_assert_str_eq(data, "hookdata");
    if (!strcmp(req->authorization, "Bearer no")) return CV_EAUTH;
    if (strcmp(req->authorization, "Bearer h")) return CV_ENOTFOUND;
    snprintf(who->user_id, sizeof who->user_id, "hooked-%s", req->transport);
    return 0;
}

Test(gateauth, tokens_hook_and_connections)
{
    struct cv_gate_caller who;
    cr_assert_not(cv_gate_auth_on(NULL));
    struct cv_gate_auth *open;
    cr_assert_eq(cv_gate_auth_init(NULL, NULL, &open), 0);
    cr_assert_not(cv_gate_auth_on(open));
    cr_assert_eq(cv_gate_auth_check(open, "http", "", "/x", &who), 0, "an open gate lets everyone in");
    cr_assert_str_eq(who.user, "");
    cv_gate_auth_free(open);

    static const char text[] = "t1 alice admin\nt2 bob\n";
    struct cv_tokens t;
    char err[200];
    cr_assert_eq(cv_tokens_parse(text, strlen(text), "tok", &t, err, sizeof err), 0, "%s", err);
    struct cv_gate_hooks hooks = {.authorise = test_authorise, .data = "hookdata"};
    struct cv_gate_auth *a;
    cr_assert_eq(cv_gate_auth_init(&t, &hooks, &a), 0);
    cr_assert_null(t.v, "the tokens were taken");
    cr_assert(cv_gate_auth_on(a));
    cr_assert_eq(cv_gate_auth_check(a, "http", "Bearer t1", "/x", &who), 0);
    cr_assert_str_eq(who.user, "alice");
    cr_assert_str_eq(who.roles, "admin");
    cr_assert_eq(cv_gate_auth_check(a, "http", "bearer  t2 ", "/x", &who), 0, "scheme case, blanks");
    cr_assert_str_eq(who.user, "bob");
    cr_assert_eq(cv_gate_auth_check(a, "http", "Bearer t3", "/x", &who), CV_EAUTH);
    cr_assert_eq(cv_gate_auth_check(a, "http", "Basic dDE6", "/x", &who), CV_EAUTH);
    cr_assert_eq(cv_gate_auth_check(a, "http", "", "/x", &who), CV_EAUTH);
    cr_assert_eq(cv_gate_auth_check(a, "http", "Bearer h", "/x", &who), 0, "the hook decides first");
    cr_assert_str_eq(who.user, "hooked-http");
    cr_assert_eq(cv_gate_auth_check(a, "http", "Bearer no", "/x", &who), CV_EAUTH, "the hook refuses");

    /* native: gate.auth remembers the connection (any pointer identifies one here) */
    struct cv_rpc_conn *conn = (struct cv_rpc_conn *)&hooks;
    uint8_t buf[64];
    Cverse__Rpc__AuthRequest q = CVERSE__RPC__AUTH_REQUEST__INIT;
    q.token = "wrong";
    size_t n = cverse__rpc__auth_request__pack(&q, buf);
    cr_assert_eq(cv_gate_auth_conn_login(a, conn, buf, n, &who), CV_EAUTH);
    cr_assert_null(cv_gate_auth_conn(a, conn));
    q.token = "t2";
    n = cverse__rpc__auth_request__pack(&q, buf);
    cr_assert_eq(cv_gate_auth_conn_login(a, conn, buf, n, &who), 0);
    cr_assert_str_eq(cv_gate_auth_conn(a, conn)->user, "bob");
    q.token = "h";
    n = cverse__rpc__auth_request__pack(&q, buf);
    cr_assert_eq(cv_gate_auth_conn_login(a, conn, buf, n, &who), 0);
    cr_assert_str_eq(cv_gate_auth_conn(a, conn)->user, "hooked-native", "a later gate.auth replaces it");
    cr_assert_eq(cv_gate_auth_conn_login(a, conn, (const uint8_t *)"\xff", 1, &who), CV_EPROTO);
    cv_gate_auth_conn_closed(a, conn);
    cr_assert_null(cv_gate_auth_conn(a, conn));
    cr_assert_gt(hook_calls, 5);
    cv_gate_auth_free(a);
}
