/* The etcd JSON-gateway encoding (src/discovery/codec.h) against canned request and reply texts; the
 * discovery state machines' tables; the gate's flag-form config (src/gate/flagmode.h). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"
#include "config/config.h"
#include "discovery/codec.h"
#include "discovery/disc.h"
#include "discovery/members.h"
#include "gate/flagmode.h"

static json_t *load(char *s)
{
    cr_assert_not_null(s);
    json_t *j = json_loads(s, 0, NULL);
    free(s);
    cr_assert_not_null(j);
    return j;
}

static const char *str(json_t *o, const char *path)
{
    json_t *v = o;
    char buf[128], *save = NULL;
    snprintf(buf, sizeof buf, "%s", path);
    for (char *k = strtok_r(buf, ".", &save); k && v; k = strtok_r(NULL, ".", &save))
        v = json_is_array(v) ? json_array_get(v, (size_t)atoi(k)) : json_object_get(v, k);
    return json_string_value(v);
}

Test(codec, prefix_end)
{
    char *e = cv_etcd_prefix_end("/cverse/nodes/");
    cr_assert_str_eq(e, "/cverse/nodes0");
    free(e);
    e = cv_etcd_prefix_end("a\xff");
    cr_assert_str_eq(e, "b");
    free(e);
}

Test(codec, put_base64_and_int64_strings)
{
    json_t *j = load(cv_etcd_enc_put("/p/b", "v1", 5007618203112171781LL));
    cr_assert_str_eq(str(j, "key"), "L3AvYg==");
    cr_assert_str_eq(str(j, "value"), "djE=");
    cr_assert_str_eq(str(j, "lease"), "5007618203112171781");
    json_decref(j);
    j = load(cv_etcd_enc_put("/p/b", "v1", 0)); /* default lease: omitted */
    cr_assert_null(json_object_get(j, "lease"));
    json_decref(j);
}

Test(codec, range_prefix_and_watch)
{
    json_t *j = load(cv_etcd_enc_range_prefix("/p/"));
    cr_assert_str_eq(str(j, "key"), "L3Av");
    cr_assert_str_eq(str(j, "range_end"), "L3Aw"); /* "/p0" */
    json_decref(j);
    j = load(cv_etcd_enc_watch("/p/", 42));
    cr_assert_str_eq(str(j, "create_request.key"), "L3Av");
    cr_assert_str_eq(str(j, "create_request.start_revision"), "42");
    json_decref(j);
    j = load(cv_etcd_enc_watch("/p/", 0));
    cr_assert_null(json_object_get(json_object_get(j, "create_request"), "start_revision"));
    json_decref(j);
}

Test(codec, txn_create_and_less)
{
    json_t *j = load(cv_etcd_enc_create("/p/b", "v1", 7));
    cr_assert_str_eq(str(j, "compare.0.target"), "CREATE");
    cr_assert_str_eq(str(j, "compare.0.create_revision"), "0");
    cr_assert_str_eq(str(j, "success.0.request_put.value"), "djE=");
    cr_assert_str_eq(str(j, "success.0.request_put.lease"), "7");
    cr_assert_str_eq(str(j, "failure.0.request_range.key"), "L3AvYg==");
    json_decref(j);
    j = load(cv_etcd_enc_put_if_less("/p/b", "v1"));
    cr_assert_str_eq(str(j, "compare.0.target"), "VALUE");
    cr_assert_str_eq(str(j, "compare.0.result"), "LESS");
    cr_assert_str_eq(str(j, "compare.0.value"), "djE=");
    json_decref(j);
    j = load(cv_etcd_enc_grant(15));
    cr_assert_str_eq(str(j, "TTL"), "15");
    json_decref(j);
    j = load(cv_etcd_enc_lease(-2)); /* ids are int64: negative ones survive the string form */
    cr_assert_str_eq(str(j, "ID"), "-2");
    json_decref(j);
}

Test(codec, txn_create_unless_another_key_exists)
{
    json_t *j = load(cv_etcd_enc_create_unless("/p/b", "v1", "/p/l"));
    cr_assert_str_eq(str(j, "compare.0.key"), "L3AvYg=="); /* "/p/b" */
    cr_assert_str_eq(str(j, "compare.0.target"), "CREATE");
    cr_assert_str_eq(str(j, "compare.0.create_revision"), "0");
    cr_assert_str_eq(str(j, "compare.1.key"), "L3AvbA=="); /* "/p/l" */
    cr_assert_str_eq(str(j, "compare.1.target"), "CREATE");
    cr_assert_str_eq(str(j, "compare.1.create_revision"), "0");
    cr_assert_str_eq(str(j, "success.0.request_put.key"), "L3AvYg==");
    cr_assert_str_eq(str(j, "success.0.request_put.value"), "djE=");
    cr_assert_null(json_object_get(json_object_get(json_array_get(json_object_get(j, "success"), 0), "request_put"),
                                   "lease"), "no lease: the key outlives its writer");
    cr_assert_str_eq(str(j, "failure.0.request_range.key"), "L3AvYg==");
    json_decref(j);
}

static const char range_reply[] =
    "{\"header\":{\"cluster_id\":\"7801232528081817440\",\"member_id\":\"13458989633860879742\",\"revision\":\"2\","
    "\"raft_term\":\"2\"},\"kvs\":[{\"key\":\"L3AvYg==\",\"create_revision\":\"2\",\"mod_revision\":\"2\","
    "\"version\":\"1\",\"value\":\"djE=\"}],\"count\":\"1\"}";

Test(codec, parse_range)
{
    struct cv_etcd_reply r;
    cr_assert_eq(cv_etcd_parse(range_reply, strlen(range_reply), &r), 0);
    cr_assert_eq(r.revision, 2);
    cr_assert_eq(r.raft_term, 2);
    cr_assert_eq(r.n_kvs, 1);
    cr_assert_str_eq(r.kvs[0].key, "/p/b");
    cr_assert_str_eq(r.kvs[0].value, "v1");
    cr_assert_eq(r.kvs[0].value_len, 2);
    cr_assert_eq(r.kvs[0].lease, 0); /* omitted default */
    cr_assert_eq(r.count, 1);
    cr_assert_eq(r.code, 0);
    cv_etcd_reply_free(&r);
}

Test(codec, parse_txn_failure_carries_the_range)
{
    const char *s = "{\"header\":{\"revision\":\"2\"},\"responses\":[{\"response_range\":{\"header\":{\"revision\":\"2\"},"
                    "\"kvs\":[{\"key\":\"L3AvYg==\",\"create_revision\":\"2\",\"mod_revision\":\"2\",\"version\":\"1\","
                    "\"value\":\"djE=\",\"lease\":\"9\"}],\"count\":\"1\"}}]}";
    struct cv_etcd_reply r;
    cr_assert_eq(cv_etcd_parse(s, strlen(s), &r), 0);
    cr_assert_not(r.succeeded); /* omitted false */
    cr_assert_eq(r.n_kvs, 1);
    cr_assert_eq(r.kvs[0].lease, 9);
    cv_etcd_reply_free(&r);
    s = "{\"header\":{\"revision\":\"3\"},\"succeeded\":true,\"responses\":[{\"response_put\":{\"header\":{}}}]}";
    cr_assert_eq(cv_etcd_parse(s, strlen(s), &r), 0);
    cr_assert(r.succeeded);
    cr_assert_eq(r.n_kvs, 0);
    cv_etcd_reply_free(&r);
}

Test(codec, parse_result_wrappers)
{
    const char *ka = "{\"result\":{\"header\":{\"revision\":\"2\"},\"ID\":\"5007618203112171781\",\"TTL\":\"5\"}}";
    struct cv_etcd_reply r;
    cr_assert_eq(cv_etcd_parse(ka, strlen(ka), &r), 0);
    cr_assert_eq(r.id, 5007618203112171781LL);
    cr_assert_eq(r.ttl, 5);
    cv_etcd_reply_free(&r);
    const char *gone = "{\"result\":{\"header\":{\"revision\":\"2\"},\"ID\":\"1\"}}"; /* TTL omitted: lease gone */
    cr_assert_eq(cv_etcd_parse(gone, strlen(gone), &r), 0);
    cr_assert_eq(r.ttl, 0);
    cv_etcd_reply_free(&r);
    const char *ev = "{\"result\":{\"header\":{\"revision\":\"5\"},\"events\":[{\"kv\":{\"key\":\"L3AveA==\","
                     "\"create_revision\":\"4\",\"mod_revision\":\"4\",\"version\":\"1\",\"value\":\"djE=\"}},"
                     "{\"type\":\"DELETE\",\"kv\":{\"key\":\"L3AveA==\",\"mod_revision\":\"5\"}}]}}";
    cr_assert_eq(cv_etcd_parse(ev, strlen(ev), &r), 0);
    cr_assert_eq(r.n_events, 2);
    cr_assert_not(r.events[0].deleted);
    cr_assert_str_eq(r.events[0].kv.value, "v1");
    cr_assert(r.events[1].deleted);
    cr_assert_str_eq(r.events[1].kv.key, "/p/x");
    cr_assert_str_eq(r.events[1].kv.value, "");
    cr_assert_eq(r.events[1].kv.mod_revision, 5);
    cv_etcd_reply_free(&r);
    const char *cc = "{\"result\":{\"header\":{\"raft_term\":\"2\"},\"canceled\":true,\"compact_revision\":\"4\"}}";
    cr_assert_eq(cv_etcd_parse(cc, strlen(cc), &r), 0);
    cr_assert(r.canceled);
    cr_assert_eq(r.compact_revision, 4);
    cv_etcd_reply_free(&r);
}

Test(codec, parse_errors)
{
    const char *e = "{\"error\":\"etcdserver: requested lease not found\",\"message\":\"etcdserver: requested lease not "
                    "found\",\"code\":5}";
    struct cv_etcd_reply r;
    cr_assert_eq(cv_etcd_parse(e, strlen(e), &r), 0);
    cr_assert_eq(r.code, 5);
    cr_assert_str_eq(r.error, "etcdserver: requested lease not found");
    cv_etcd_reply_free(&r);
    const char *se = "{\"error\":{\"grpc_code\":14,\"http_code\":503,\"message\":\"no leader\"}}";
    cr_assert_eq(cv_etcd_parse(se, strlen(se), &r), 0);
    cr_assert_eq(r.code, 14);
    cr_assert_str_eq(r.error, "no leader");
    cv_etcd_reply_free(&r);
    cr_assert_eq(cv_etcd_parse("[1]", 3, &r), CV_EPROTO);
    cv_etcd_reply_free(&r);
    const char *bad = "{\"kvs\":[{\"key\":\"%%%\"}]}";
    cr_assert_eq(cv_etcd_parse(bad, strlen(bad), &r), CV_EPROTO);
    cv_etcd_reply_free(&r);
}

struct got {
    char lines[4][64];
    int n;
};

static bool collect(void *data, const char *line, size_t len)
{
    struct got *g = data;
    snprintf(g->lines[g->n++], sizeof g->lines[0], "%.*s", (int)len, line);
    return g->n < 3;
}

static int feed(struct cv_etcd_lines *l, const char *s, struct got *g)
{
    return cv_etcd_lines_feed(l, s, strlen(s), collect, g);
}

Test(codec, lines_split_across_chunks)
{
    struct cv_etcd_lines l = {0};
    struct got g = {0};
    cr_assert_eq(feed(&l, "{\"a\":", &g), 0);
    cr_assert_eq(g.n, 0);
    cr_assert_eq(feed(&l, "1}\n{\"b\":2}\n{\"c\"", &g), 0);
    cr_assert_eq(g.n, 2);
    cr_assert_str_eq(g.lines[0], "{\"a\":1}");
    cr_assert_str_eq(g.lines[1], "{\"b\":2}");
    cr_assert_eq(feed(&l, ":3}\n{\"d\":4}\n", &g), 0);
    cr_assert_eq(g.n, 3); /* collect said stop after the third */
    cr_assert_str_eq(g.lines[2], "{\"c\":3}");
    cv_etcd_lines_free(&l);
}

/* ---- the state machines' tables ------------------------------------------------------------------------- */

Test(discovery, state_machine_tables)
{
    cr_assert_eq(cv_sm_conf_check(cv_disc_sm_conf()), 0);
    cr_assert_eq(cv_sm_conf_check(cv_members_sm_conf()), 0);
}

/* ---- the gate's flag form: its config from registrations ------------------------------------------------ */

Test(discovery, gate_flags_yaml_parses_as_a_config)
{
    const char *ids[] = {"n1", "n2", "bad"};
    const char *values[] = {
        "{\"id\":\"n1\",\"advertise\":\"127.0.0.1:7001\",\"http\":\"127.0.0.1:8001\",\"raft\":\"127.0.0.1:9001\","
        "\"shards\":64,\"incarnation\":\"a\"}",
        "{\"id\":\"n2\",\"advertise\":\"127.0.0.1:7002\",\"http\":\"0.0.0.0:8002\",\"raft\":\"127.0.0.1:9002\","
        "\"shards\":64}",
        "not json"};
    struct cv_gate_flags f = {.listen = "0.0.0.0:49000", .http_listen = "127.0.0.1:48000",
                              .etcd = "127.0.0.1:2379,127.0.0.1:2381", .prefix = "/p"};
    char *id = NULL, err[512];
    char *yaml = cv_gate_flags_yaml(&f, ids, values, 3, &id);
    cr_assert_not_null(yaml);
    cr_assert_str_eq(id, "gate-127.0.0.1-49000"); /* from the connectable form of --listen */
    struct cv_config *cfg;
    cr_assert_eq(cv_config_parse(yaml, strlen(yaml), "flags", &cfg, err, sizeof err), 0, "%s\n%s", err, yaml);
    cr_assert_eq(cfg->provider, CV_PROVIDER_ETCD);
    cr_assert_eq(cfg->shards, 64);
    cr_assert_eq(cfg->n_nodes, 2, "the unparsable registration must be skipped");
    cr_assert_str_eq(cfg->nodes[1].raft_addr, "127.0.0.1:9002");
    cr_assert_eq(cfg->n_etcd_endpoints, 2);
    cr_assert_str_eq(cfg->etcd_prefix, "/p");
    const struct cv_gate_cfg *g = cv_config_gate(cfg, id);
    cr_assert_not_null(g);
    cr_assert_str_eq(g->advertise_addr, "127.0.0.1:49000");
    cv_config_free(cfg);
    free(yaml);
    free(id);
    f.id = "edge-1";
    f.advertise = "10.0.0.9:49000";
    yaml = cv_gate_flags_yaml(&f, ids, values, 1, &id);
    cr_assert_str_eq(id, "edge-1");
    cr_assert_eq(cv_config_parse(yaml, strlen(yaml), "flags", &cfg, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(cv_config_gate(cfg, "edge-1")->advertise_addr, "10.0.0.9:49000");
    cv_config_free(cfg);
    free(yaml);
    free(id);
}

Test(discovery, gate_flags_members_from_a_nodes_cluster_answer)
{
    const char *body = "{\"leader\":\"n1\",\"shards\":64,\"nodes\":[{\"id\":\"n1\",\"grpc_addr\":\"0.0.0.0:7001\","
                       "\"advertise_addr\":\"127.0.0.1:7001\",\"raft_addr\":\"127.0.0.1:9001\",\"http_addr\":\"127.0.0.1:8001\"},"
                       "{\"id\":\"n2\",\"advertise_addr\":\"127.0.0.1:7002\",\"raft_addr\":\"127.0.0.1:9002\","
                       "\"http_addr\":\"127.0.0.1:8002\"}]}";
    char **ids, **values, *id, err[512];
    size_t n;
    cr_assert_eq(cv_gate_flags_from_cluster(body, &ids, &values, &n), 0);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(ids[1], "n2");
    struct cv_gate_flags f = {.listen = "127.0.0.1:49000", .http_listen = "127.0.0.1:48000", .etcd = "127.0.0.1:2379"};
    char *yaml = cv_gate_flags_yaml(&f, (const char *const *)ids, (const char *const *)values, n, &id);
    struct cv_config *cfg;
    cr_assert_eq(cv_config_parse(yaml, strlen(yaml), "flags", &cfg, err, sizeof err), 0, "%s\n%s", err, yaml);
    cr_assert_eq(cfg->n_nodes, 2);
    cr_assert_eq(cfg->shards, 64);
    cr_assert_str_eq(cfg->nodes[0].advertise_addr, "127.0.0.1:7001");
    cr_assert_str_eq(cfg->nodes[1].http_addr, "127.0.0.1:8002");
    cv_config_free(cfg);
    free(yaml);
    free(id);
    cv_gate_flags_free_list(ids, n);
    cv_gate_flags_free_list(values, n);
    cr_assert_eq(cv_gate_flags_from_cluster("{\"nodes\":[]}", &ids, &values, &n), CV_EPROTO);
    cr_assert_eq(cv_gate_flags_from_cluster("<html>", &ids, &values, &n), CV_EPROTO);
}
