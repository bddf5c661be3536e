/* Unit tests of src/config: the two demo files, defaults, every error class (exact line and key),
 * warnings for Goverse keys cverse ignores, and the fingerprint. */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/check.h"
#include "config/config.h"
#include "config/tokens.h"
#include "core/access.h"
#include "cverse/error.h"

#include "lsan_check.h"

TestSuite(config, .fini = cv_lsan_check);

/* ---- helpers ----------------------------------------------------------------------------------------- */

/* The repository root: $CVERSE_SOURCE_ROOT, else -DCV_SOURCE_ROOT="...", else derived from this file's path
 * (meson compiles it as "../tests/unit/test_config.c" relative to the build dir, which is also meson test's
 * working directory; running the binary by hand from elsewhere needs one of the first two). */
static void source_root(char *out, size_t len)
{
    const char *env = getenv("CVERSE_SOURCE_ROOT");
#ifdef CV_SOURCE_ROOT
    if (!env || !*env) env = CV_SOURCE_ROOT;
#endif
    if (env && *env) {
        snprintf(out, len, "%s", env);
        return;
    }
    const char *file = __FILE__, *suffix = "tests/unit/test_config.c";
    size_t fl = strlen(file), sl = strlen(suffix);
    cr_assert(fl >= sl && !strcmp(file + fl - sl, suffix), "unexpected __FILE__ %s", file);
    snprintf(out, len, "%.*s.", (int)(fl - sl), file);
}

static void repo_path(char *out, size_t len, const char *rel)
{
    char root[PATH_MAX];
    source_root(root, sizeof root);
    cr_assert_lt(snprintf(out, len, "%s/%s", root, rel), (int)len, "path too long");
}

static struct cv_config *parse_ok(const char *yaml)
{
    struct cv_config *cfg = NULL;
    char err[512] = "";
    int rv = cv_config_parse(yaml, strlen(yaml), "t.yml", &cfg, err, sizeof err);
    cr_assert_eq(rv, 0, "parse failed (%d): %s", rv, err);
    cr_assert_not_null(cfg);
    return cfg;
}

/* The whole error line must match: it pins file, line, key path and message. */
static void expect_err(const char *yaml, const char *want)
{
    struct cv_config *cfg = (struct cv_config *)1;
    char err[512] = "";
    int rv = cv_config_parse(yaml, strlen(yaml), "t.yml", &cfg, err, sizeof err);
    cr_assert_eq(rv, CV_ECONFIG, "expected CV_ECONFIG, got %d (err \"%s\") for:\n%s", rv, err, yaml);
    cr_assert_null(cfg);
    cr_assert_str_eq(err, want);
    cr_assert_null(strchr(err, '\n'), "error must be one line");
}

static void expect_err_prefix(const char *yaml, const char *prefix)
{
    struct cv_config *cfg = NULL;
    char err[512] = "";
    int rv = cv_config_parse(yaml, strlen(yaml), "t.yml", &cfg, err, sizeof err);
    cr_assert_eq(rv, CV_ECONFIG, "expected CV_ECONFIG, got %d (err \"%s\")", rv, err);
    cr_assert_null(cfg);
    cr_assert(!strncmp(err, prefix, strlen(prefix)), "error \"%s\" does not start with \"%s\"", err, prefix);
    cr_assert_null(strchr(err, '\n'), "error must be one line");
}

static uint64_t fingerprint_of(const char *yaml)
{
    struct cv_config *cfg = parse_ok(yaml);
    uint64_t fp = cfg->fingerprint;
    cv_config_free(cfg);
    return fp;
}

/* One node at lines N..N+3 of whatever precedes it. */
#define NODES                                                                                                 \
    "nodes:\n"                                                                                                \
    "  - id: n1\n"                                                                                            \
    "    grpc_addr: 0.0.0.0:7001\n"                                                                           \
    "    http_addr: 0.0.0.0:8001\n"

/* ---- the demo files ---------------------------------------------------------------------------------- */

static void check_demo(const struct cv_config *cfg, enum cv_provider provider)
{
    char want[64];
    cr_assert_eq(cfg->version, 1);
    cr_assert_eq(cfg->shards, 8192);
    cr_assert_eq(cfg->provider, provider);
    cr_assert_eq(cfg->n_etcd_endpoints, 1);
    cr_assert_str_eq(cfg->etcd_endpoints[0], "127.0.0.1:2379");
    cr_assert_str_eq(cfg->etcd_prefix, "/goverse-demo");
    cr_assert_eq(cfg->n_autoload, 3);
    cr_assert_str_eq(cfg->autoload[0].type, "GlobalMonitor");
    cr_assert_str_eq(cfg->autoload[0].id, "GlobalMonitor");
    cr_assert(!cfg->autoload[0].per_shard && !cfg->autoload[0].per_node);
    cr_assert_str_eq(cfg->autoload[1].type, "ShardMonitor");
    cr_assert(cfg->autoload[1].per_shard && !cfg->autoload[1].per_node);
    cr_assert_str_eq(cfg->autoload[2].id, "NodeMonitor");
    cr_assert(!cfg->autoload[2].per_shard && cfg->autoload[2].per_node);
    cr_assert_eq(cfg->n_nodes, 10);
    for (size_t i = 0; i < 10; i++) {
        const struct cv_node_cfg *n = &cfg->nodes[i];
        snprintf(want, sizeof want, "node-%zu", i + 1);
        cr_assert_str_eq(n->id, want);
        snprintf(want, sizeof want, "0.0.0.0:%zu", 47001 + i);
        cr_assert_str_eq(n->grpc_addr, want);
        snprintf(want, sizeof want, "localhost:%zu", 47001 + i);
        cr_assert_str_eq(n->advertise_addr, want);
        snprintf(want, sizeof want, "0.0.0.0:%zu", 48001 + i);
        cr_assert_str_eq(n->http_addr, want);
        snprintf(want, sizeof want, "127.0.0.1:%zu", 49001 + i);
        cr_assert_str_eq(n->raft_addr, want);
        snprintf(want, sizeof want, "0.0.0.0:%zu", 49001 + i);
        cr_assert_str_eq(n->raft_bind_addr, want);
    }
    cr_assert_eq(cfg->n_gates, 5);
    cr_assert_str_eq(cfg->gates[0].id, "gate-1");
    cr_assert_str_eq(cfg->gates[4].grpc_addr, "0.0.0.0:47105");
    cr_assert_str_eq(cfg->gates[4].advertise_addr, "localhost:47105");
    cr_assert_str_eq(cfg->gates[4].http_addr, "0.0.0.0:48105");
    cr_assert(cfg->has_inspector);
    cr_assert_str_eq(cfg->inspector.grpc_addr, "0.0.0.0:47200");
    cr_assert_str_eq(cfg->inspector.http_addr, "0.0.0.0:48200");
    cr_assert_str_eq(cfg->inspector.advertise_addr, "localhost:47200");
    cr_assert_eq(cfg->raft.voters, 3);
    cr_assert_eq(cfg->n_warnings, 0, "unexpected warning: %s", cfg->n_warnings ? cfg->warnings[0] : "");
}

/* Goverse's demo config, byte for byte: shared/ beside the checkout when present, else the copy kept in
 * tests/data (a fresh clone has no shared/ beside it). */
static void goverse_demo_path(char *path, size_t len)
{
    repo_path(path, len, "../shared/goverse/demo-cluster.yml");
    if (access(path, R_OK) != 0) repo_path(path, len, "tests/data/goverse-demo-cluster.yml");
}

Test(config, goverse_demo_loads_unchanged)
{
    char path[PATH_MAX], err[512];
    struct cv_config *cfg;
    goverse_demo_path(path, sizeof path);
    cr_assert_eq(access(path, R_OK), 0, "Goverse demo config not found at %s", path);
    int rv = cv_config_load(path, &cfg, err, sizeof err);
    cr_assert_eq(rv, 0, "%s", err);
    check_demo(cfg, CV_PROVIDER_ETCD);
    cr_assert_str_eq(cfg->path, path);
    cr_assert_eq(cfg->nodes[0].line, 40);
    cr_assert_eq(cfg->gates[0].line, 91);
    cv_config_free(cfg);
}

Test(config, cverse_demo_loads_with_raft_provider)
{
    char path[PATH_MAX], gpath[PATH_MAX], err[512];
    struct cv_config *cfg, *gcfg;
    repo_path(path, sizeof path, "cluster/demo-cluster.yml");
    goverse_demo_path(gpath, sizeof gpath);
    cr_assert_eq(cv_config_load(path, &cfg, err, sizeof err), 0, "%s", err);
    check_demo(cfg, CV_PROVIDER_RAFT);
    cr_assert_eq(cfg->nodes[0].line, 41); /* one comment line more than Goverse's file */
    /* Same shards and nodes as Goverse's file: the provider is not part of what nodes must agree on. */
    cr_assert_eq(cv_config_load(gpath, &gcfg, err, sizeof err), 0, "%s", err);
    cr_assert_eq(cfg->fingerprint, gcfg->fingerprint);
    cv_config_free(gcfg);
    cv_config_free(cfg);
}

Test(config, unreadable_file_is_eio)
{
    struct cv_config *cfg = (struct cv_config *)1;
    char err[512];
    int rv = cv_config_load("/nonexistent/cverse.yml", &cfg, err, sizeof err);
    cr_assert_eq(rv, CV_EIO);
    cr_assert_null(cfg);
    cr_assert_str_eq(err, "/nonexistent/cverse.yml: cannot read: No such file or directory");
}

static void temp_file(char *path, size_t len, const char *content, off_t size)
{
    snprintf(path, len, "/tmp/cverse-test-config-XXXXXX");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    size_t n = strlen(content);
    cr_assert_eq(write(fd, content, n), (ssize_t)n);
    if (size) cr_assert_eq(ftruncate(fd, size), 0);
    close(fd);
}

Test(config, load_large_file_and_reject_huge_one)
{
    char path[64], err[512];
    struct cv_config *cfg;
    size_t comments = 20000, len = comments * 10 + 256, off = 0;
    char *text = malloc(len);
    cr_assert_not_null(text);
    for (size_t i = 0; i < comments; i++) off += (size_t)snprintf(text + off, len - off, "# padding\n");
    snprintf(text + off, len - off, "version: 1\n" NODES);
    temp_file(path, sizeof path, text, 0);
    free(text);
    int rv = cv_config_load(path, &cfg, err, sizeof err);
    unlink(path);
    cr_assert_eq(rv, 0, "%s", err);
    cr_assert_eq(cfg->nodes[0].line, (int)comments + 3);
    cv_config_free(cfg);

    temp_file(path, sizeof path, "version: 1\n", 17 << 20);
    rv = cv_config_load(path, &cfg, err, sizeof err);
    unlink(path);
    cr_assert_eq(rv, CV_ECONFIG);
    cr_assert_null(cfg);
    cr_assert(strstr(err, ": larger than 16777216 bytes"), "%s", err);
}

/* ---- defaults and values ----------------------------------------------------------------------------- */

Test(config, defaults)
{
    struct cv_config *cfg = parse_ok("version: 1\n" NODES);
    cr_assert_str_eq(cfg->path, "t.yml");
    cr_assert_eq(cfg->shards, 8192);
    cr_assert_eq(cfg->provider, CV_PROVIDER_RAFT);
    cr_assert_eq(cfg->n_etcd_endpoints, 0);
    cr_assert_str_eq(cfg->etcd_prefix, "/cverse");
    cr_assert_eq(cfg->etcd_ttl_ms, 15000);
    cr_assert_eq(cfg->n_autoload, 0);
    cr_assert_str_eq(cfg->data_dir, "cverse-data");
    cr_assert_eq(cfg->lease_ttl_ms, 700);
    cr_assert_eq(cfg->drain_timeout_ms, 10000);
    cr_assert_eq(cfg->raft.voters, 1); /* fewer than 3 nodes: every node votes */
    cr_assert_eq(cfg->raft.election_timeout_ms, 150);
    cr_assert_eq(cfg->raft.heartbeat_timeout_ms, 15);
    cr_assert_eq(cfg->raft.snapshot_threshold, 8192);
    cr_assert_eq(cfg->raft.snapshot_trailing, 1024);
    cr_assert(cfg->raft.pre_vote);
    cr_assert(cfg->raft.quiet_heartbeats);
    cr_assert_eq(cfg->n_nodes, 1);
    cr_assert_str_eq(cfg->nodes[0].advertise_addr, "127.0.0.1:7001");
    cr_assert_str_eq(cfg->nodes[0].raft_addr, "127.0.0.1:9001");
    cr_assert_str_eq(cfg->nodes[0].raft_bind_addr, "0.0.0.0:9001");
    cr_assert_eq(cfg->nodes[0].line, 3);
    cr_assert_eq(cfg->n_gates, 0);
    cr_assert_not(cfg->has_inspector);
    cr_assert_eq(cfg->n_warnings, 0);
    cv_config_free(cfg);
}

static unsigned voters_for(size_t nodes)
{
    char yaml[4096];
    size_t off = (size_t)snprintf(yaml, sizeof yaml, "version: 1\nnodes:\n");
    for (size_t i = 0; i < nodes; i++)
        off += (size_t)snprintf(yaml + off, sizeof yaml - off,
                                "  - {id: n%zu, grpc_addr: \"127.0.0.1:%zu\", http_addr: \"127.0.0.1:%zu\"}\n", i,
                                7000 + i, 8000 + i);
    struct cv_config *cfg = parse_ok(yaml);
    cr_assert_eq(cfg->n_nodes, nodes);
    unsigned v = cfg->raft.voters;
    cv_config_free(cfg);
    return v;
}

/* The leader's wait for an InstallSnapshot answer (config.h: why not libraft's 30 s): 20 election
 * timeouts, never under 2 s. */
Test(config, install_snapshot_timeout_follows_the_election_timeout)
{
    struct cv_raft_cfg r = {.election_timeout_ms = 150};
    cr_assert_eq(cv_raft_install_snapshot_timeout_ms(&r), 3000);
    r.election_timeout_ms = 50;
    cr_assert_eq(cv_raft_install_snapshot_timeout_ms(&r), 2000);
    r.election_timeout_ms = 600000;
    cr_assert_eq(cv_raft_install_snapshot_timeout_ms(&r), 12000000);
}

Test(config, voters_default_caps_at_three_or_node_count)
{
    cr_assert_eq(voters_for(1), 1);
    cr_assert_eq(voters_for(2), 2);
    cr_assert_eq(voters_for(3), 3);
    cr_assert_eq(voters_for(7), 3);
}

Test(config, cverse_settings_and_explicit_addresses)
{
    struct cv_config *cfg = parse_ok("version: 1\n"
                                     "cluster:\n"
                                     "  shards: 64\n"
                                     "  provider: raft\n"
                                     "  data_dir: /var/lib/cverse\n"
                                     "  lease_ttl_ms: 2500\n"
                                     "  drain_timeout_ms: 4000\n"
                                     "  raft:\n"
                                     "    voters: 2\n"
                                     "    election_timeout_ms: 1000\n"
                                     "    heartbeat_timeout_ms: 100\n"
                                     "    snapshot_threshold: 16\n"
                                     "    snapshot_trailing: 1\n"
                                     "    pre_vote: false\n"
                                     "    quiet_heartbeats: false\n"
                                     "nodes:\n"
                                     "  - id: a.B_c-1\n"
                                     "    grpc_addr: 10.0.0.1:5000\n"
                                     "    advertise_addr: a.example:5000\n"
                                     "    http_addr: 10.0.0.1:5080\n"
                                     "    raft_addr: 10.0.0.1:6000\n"
                                     "  - id: b\n"
                                     "    grpc_addr: \"[::]:5000\"\n"
                                     "    advertise_addr: \"[fd00::2]:5000\"\n"
                                     "    http_addr: \"[::]:5080\"\n"
                                     "  - id: c\n"
                                     "    grpc_addr: localhost:5100\n"
                                     "    http_addr: localhost:5180\n");
    cr_assert_eq(cfg->shards, 64);
    cr_assert_str_eq(cfg->data_dir, "/var/lib/cverse");
    cr_assert_eq(cfg->lease_ttl_ms, 2500);
    cr_assert_eq(cfg->drain_timeout_ms, 4000);
    cr_assert_eq(cfg->raft.voters, 2);
    cr_assert_eq(cfg->raft.election_timeout_ms, 1000);
    cr_assert_eq(cfg->raft.heartbeat_timeout_ms, 100);
    cr_assert_eq(cfg->raft.snapshot_threshold, 16);
    cr_assert_eq(cfg->raft.snapshot_trailing, 1);
    cr_assert_not(cfg->raft.pre_vote);
    cr_assert_not(cfg->raft.quiet_heartbeats);
    /* explicit raft_addr: raft binds grpc_addr's host at raft_addr's port */
    cr_assert_str_eq(cfg->nodes[0].raft_addr, "10.0.0.1:6000");
    cr_assert_str_eq(cfg->nodes[0].raft_bind_addr, "10.0.0.1:6000");
    cr_assert_str_eq(cfg->nodes[0].advertise_addr, "a.example:5000");
    /* IPv6: the default keeps the advertised host, brackets included */
    cr_assert_str_eq(cfg->nodes[1].raft_addr, "[fd00::2]:7000");
    cr_assert_str_eq(cfg->nodes[1].raft_bind_addr, "[::]:7000");
    /* "localhost" becomes numeric for raft's transport; the listen host stays as written for binding */
    cr_assert_str_eq(cfg->nodes[2].advertise_addr, "127.0.0.1:5100");
    cr_assert_str_eq(cfg->nodes[2].raft_addr, "127.0.0.1:7100");
    cr_assert_str_eq(cfg->nodes[2].raft_bind_addr, "localhost:7100");
    cv_config_free(cfg);
}

Test(config, null_values_count_as_absent)
{
    struct cv_config *cfg = parse_ok("version: 1\n"
                                     "cluster:\n"
                                     "  shards: ~\n"
                                     "  etcd:\n"
                                     "  auto_load_objects: []\n"
                                     "gates:\n"
                                     "inspector: null\n" NODES);
    cr_assert_eq(cfg->shards, 8192);
    cr_assert_eq(cfg->n_gates, 0);
    cr_assert_not(cfg->has_inspector);
    cv_config_free(cfg);
}

Test(config, lookups)
{
    char path[PATH_MAX], err[512];
    struct cv_config *cfg;
    repo_path(path, sizeof path, "cluster/demo-cluster.yml");
    cr_assert_eq(cv_config_load(path, &cfg, err, sizeof err), 0, "%s", err);
    cr_assert_eq(cv_config_node_index(cfg, "node-1"), 0);
    cr_assert_eq(cv_config_node_index(cfg, "node-10"), 9);
    cr_assert_eq(cv_config_node_index(cfg, "node-11"), -1);
    cr_assert_eq(cv_config_node_index(cfg, NULL), -1);
    cr_assert_eq(cv_config_node(cfg, "node-7"), &cfg->nodes[6]);
    cr_assert_null(cv_config_node(cfg, "gate-1"));
    cr_assert_eq(cv_config_gate(cfg, "gate-3"), &cfg->gates[2]);
    cr_assert_null(cv_config_gate(cfg, "node-1"));
    cr_assert_null(cv_config_gate(NULL, "gate-1"));
    cv_config_free(cfg);
}

/* ---- warnings: a real Goverse config loads --------------------------------------------------------------- */

Test(config, goverse_keys_are_warnings)
{
    struct cv_config *cfg = parse_ok("version: 1\n"
                                     "cluster:\n"
                                     "  shards: 8192\n"
                                     "  provider: \"etcd\"\n"
                                     "  etcd:\n"
                                     "    endpoints: [\"etcd-1:2379\", \"etcd-2:2379\"]\n"
                                     "    prefix: \"/goverse\"\n"
                                     "    dial_timeout: 5s\n"
                                     "postgres:\n"
                                     "  host: \"localhost\"\n"
                                     "  port: 5432\n"
                                     "nodes:\n"
                                     "  - id: \"node-1\"\n"
                                     "    grpc_addr: \"0.0.0.0:9101\"\n"
                                     "    advertise_addr: \"node-1.local:9101\"\n"
                                     "    http_addr: \"0.0.0.0:8101\"\n"
                                     "    enable_pprof: true\n"
                                     "inspector:\n"
                                     "  grpc_addr: \"127.0.0.1:8081\"\n"
                                     "  http_addr: \"127.0.0.1:8080\"\n"
                                     "  connect_addr: \"localhost:8081\"\n"
                                     "object_access_rules:\n"
                                     "  - type: /.*/\n"
                                     "    access: ALLOW\n"
                                     "object_lifecycle_rules:\n"
                                     "  - type: ChatRoom\n"
                                     "    lifecycle: CREATE\n"
                                     "    access: ALLOW\n");
    cr_assert_eq(cfg->provider, CV_PROVIDER_ETCD);
    cr_assert_eq(cfg->n_etcd_endpoints, 2);
    cr_assert_str_eq(cfg->etcd_endpoints[1], "etcd-2:2379");
    cr_assert_str_eq(cfg->etcd_prefix, "/goverse");
    cr_assert_str_eq(cfg->inspector.advertise_addr, "127.0.0.1:8081"); /* connect_addr is ignored */
    /* object_access_rules / object_lifecycle_rules are applied now (issue 14): read, not warned about */
    cr_assert_eq(cfg->n_warnings, 4);
    const char *want[] = {
        "t.yml:9: postgres: Goverse setting not used by cverse yet; ignored",
        "t.yml:8: cluster.etcd.dial_timeout: Goverse setting not used by cverse yet; ignored",
        "t.yml:17: nodes[0].enable_pprof: Goverse setting not used by cverse yet; ignored",
        "t.yml:21: inspector.connect_addr: Goverse setting not used by cverse yet; ignored",
    };
    for (size_t i = 0; i < 4; i++) cr_assert_str_eq(cfg->warnings[i], want[i]);
    cr_assert_eq(cfg->access_rules.n_calls, 1);
    cr_assert_eq(cfg->access_rules.n_life, 1);
    cv_config_free(cfg);
}

Test(config, wildcard_listeners_on_different_machines_do_not_clash)
{
    struct cv_config *cfg = parse_ok("version: 1\n"
                                     "nodes:\n"
                                     "  - {id: a, grpc_addr: \"0.0.0.0:50051\", advertise_addr: \"a.svc:50051\", "
                                     "http_addr: \"0.0.0.0:8080\"}\n"
                                     "  - {id: b, grpc_addr: \"0.0.0.0:50051\", advertise_addr: \"b.svc:50051\", "
                                     "http_addr: \"0.0.0.0:8080\"}\n");
    cr_assert_str_eq(cfg->nodes[1].raft_addr, "b.svc:52051");
    cv_config_free(cfg);
}

/* ---- errors: YAML level ------------------------------------------------------------------------------ */

Test(config, err_yaml_syntax)
{
    expect_err("version: 1\n"
               "cluster:\n"
               "  shards: [1, 2\n"
               "nodes: []\n",
               "t.yml:4: yaml: did not find expected ',' or ']' (while parsing a flow sequence at line 3; "
               "expected valid YAML)");
    expect_err_prefix("version: 1\n  bad: indent\n", "t.yml:2: yaml: ");
    expect_err_prefix("version: 1\nnodes: *nope\n", "t.yml:2: yaml: found undefined alias");
}

Test(config, err_document_shape)
{
    expect_err("", "t.yml:1: (root): empty file (expected a mapping with version, cluster, nodes)");
    expect_err("# only a comment\n", "t.yml:1: (root): empty file (expected a mapping with version, cluster, nodes)");
    expect_err("- a\n- b\n", "t.yml:1: (root): must be a mapping with version, cluster, nodes, got a list");
    expect_err("version: 1\n" NODES "---\nversion: 1\n",
               "t.yml:7: yaml: a second YAML document (expected exactly one)");
}

Test(config, err_version)
{
    expect_err(NODES, "t.yml:1: version: missing (required: version: 1)");
    expect_err("version: 2\n" NODES, "t.yml:1: version: unsupported (expected 1), got \"2\"");
    expect_err("version: \"1\"\n" NODES, "t.yml:1: version: unsupported (expected 1), got \"1\"");
}

/* cluster.demo_types: false switches the built-in demo types off on the nodes (--no-demo-types). */
Test(config, demo_types)
{
    struct cv_config *cfg = parse_ok("version: 1\n" NODES);
    cr_assert(!cfg->no_demo_types, "the demo types are on by default");
    cv_config_free(cfg);
    cfg = parse_ok("version: 1\ncluster:\n  demo_types: false\n" NODES);
    cr_assert(cfg->no_demo_types);
    cv_config_free(cfg);
    cfg = parse_ok("version: 1\ncluster:\n  demo_types: true\n  shards: 4\n" NODES);
    cr_assert(!cfg->no_demo_types);
    cr_assert_eq(cfg->shards, 4);
    cv_config_free(cfg);
    expect_err("version: 1\ncluster:\n  demo_types: no\n" NODES,
               "t.yml:3: cluster.demo_types: must be true or false, got \"no\"");
}

/* cluster.secret_file (relative to the config file's directory, read at load: a missing or short secret
 * is a config error at its line) and cluster.insecure (docs/security.md). */
Test(config, cluster_secret_and_insecure)
{
    struct cv_config *cfg = parse_ok("version: 1\n" NODES);
    cr_assert_null(cfg->secret_file);
    cr_assert(!cfg->insecure);
    cv_config_free(cfg);
    cfg = parse_ok("version: 1\ncluster:\n  insecure: true\n" NODES);
    cr_assert(cfg->insecure);
    cv_config_free(cfg);
    expect_err("version: 1\ncluster:\n  insecure: 1\n" NODES,
               "t.yml:3: cluster.insecure: must be true or false, got \"1\"");

    char secret[64], short_secret[64], yaml[512];
    temp_file(secret, sizeof secret, "0123456789abcdef0123\n", 0);
    temp_file(short_secret, sizeof short_secret, "tooshort\n", 0);
    snprintf(yaml, sizeof yaml, "version: 1\ncluster:\n  secret_file: %s\n" NODES, secret);
    cfg = parse_ok(yaml);
    cr_assert_str_eq(cfg->secret_file, secret);
    cv_config_free(cfg);
    /* relative: from the config file's directory (/tmp here), not the working directory */
    char rel_yaml[512], err[512] = "";
    snprintf(rel_yaml, sizeof rel_yaml, "version: 1\ncluster:\n  secret_file: %s\n" NODES, secret + 5);
    cfg = NULL;
    cr_assert_eq(cv_config_parse(rel_yaml, strlen(rel_yaml), "/tmp/t.yml", &cfg, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(cfg->secret_file, secret);
    cv_config_free(cfg);
    snprintf(yaml, sizeof yaml, "version: 1\ncluster:\n  secret_file: %s\n" NODES, short_secret);
    char want[512];
    snprintf(want, sizeof want, "t.yml:3: cluster.secret_file: %s: the cluster secret must be at least 16 bytes (has 8)",
             short_secret);
    expect_err(yaml, want);
    expect_err_prefix("version: 1\ncluster:\n  secret_file: /nonexistent/s\n" NODES,
                      "t.yml:3: cluster.secret_file: /nonexistent/s: cannot read the cluster secret");
    unlink(secret);
    unlink(short_secret);
}

Test(config, err_unknown_keys)
{
    expect_err("version: 1\n" NODES "gate: []\n",
               "t.yml:6: gate: unknown key (expected one of: version, cluster, nodes, gates, inspector, object_types, object_state_max_bytes, object_access_rules, object_lifecycle_rules)");
    expect_err("version: 1\ncluster:\n  shard: 4\n" NODES,
               "t.yml:3: cluster.shard: unknown key (expected one of: shards, provider, etcd, auto_load_objects, "
               "raft, data_dir, lease_ttl_ms, drain_timeout_ms, demo_types, secret_file, insecure)");
    expect_err("version: 1\ncluster:\n  raft:\n    voter: 1\n" NODES,
               "t.yml:4: cluster.raft.voter: unknown key (expected one of: voters, election_timeout_ms, "
               "heartbeat_timeout_ms, snapshot_threshold, snapshot_trailing, pre_vote, quiet_heartbeats)");
    expect_err("version: 1\n" NODES "    labels: {zone: a}\n",
               "t.yml:6: nodes[0].labels: unknown key (expected one of: id, grpc_addr, advertise_addr, http_addr, "
               "raft_addr)");
    expect_err("version: 1\ncluster:\n  auto_load_objects:\n    - {type: T, id: X, per_cluster: true}\n" NODES,
               "t.yml:4: cluster.auto_load_objects[0].per_cluster: unknown key (expected one of: type, id, "
               "per_shard, per_node)");
    expect_err("version: 1\n" NODES "inspector: {grpc_addr: \"0.0.0.0:1\", http_addr: \"0.0.0.0:2\", x: 1}\n",
               "t.yml:6: inspector.x: unknown key (expected one of: grpc_addr, http_addr, advertise_addr, "
               "admin_token_file)");
}

Test(config, err_duplicate_keys)
{
    expect_err("version: 1\ncluster:\n  shards: 4\n  shards: 8\n" NODES,
               "t.yml:4: cluster.shards: duplicate key (first given at line 3; expected once)");
    expect_err("version: 1\n" NODES "version: 1\n",
               "t.yml:6: version: duplicate key (first given at line 1; expected once)");
    expect_err("version: 1\n" NODES "    id: n2\n",
               "t.yml:6: nodes[0].id: duplicate key (first given at line 3; expected once)");
}

Test(config, err_wrong_type)
{
    expect_err("version: 1\ncluster: 5\n" NODES,
               "t.yml:2: cluster: must be a mapping of cluster settings, got \"5\"");
    expect_err("version: 1\ncluster:\n  data_dir: {a: 1}\n" NODES,
               "t.yml:3: cluster.data_dir: must be a directory path, got a mapping");
    expect_err("version: 1\ncluster:\n  etcd:\n    endpoints: localhost:2379\n" NODES,
               "t.yml:4: cluster.etcd.endpoints: must be a list of etcd endpoints host:port, got \"localhost:2379\"");
    expect_err("version: 1\nnodes: {id: n1}\n", "t.yml:2: nodes: must be a list of nodes, got a mapping");
    expect_err("version: 1\nnodes:\n  - n1\n",
               "t.yml:3: nodes[0]: must be a node (a mapping with id, grpc_addr, http_addr), got \"n1\"");
    expect_err("version: 1\ncluster:\n  provider: consul\n" NODES,
               "t.yml:3: cluster.provider: must be \"raft\" or \"etcd\", got \"consul\"");
    expect_err("version: 1\ncluster:\n  etcd:\n    prefix: \"\"\n" NODES,
               "t.yml:4: cluster.etcd.prefix: must not be empty (expected a key prefix such as \"/cverse\")");
    expect_err("version: 1\ncluster:\n  etcd:\n    ttl_ms: 500\n" NODES,
               "t.yml:4: cluster.etcd.ttl_ms: must be an integer 2000..3600000, got \"500\"");
}

Test(config, etcd_ttl_ms)
{
    struct cv_config *cfg = parse_ok("version: 1\ncluster:\n  provider: etcd\n  etcd:\n    endpoints: [\"a:1\"]\n"
                                     "    ttl_ms: 3000\n" NODES);
    cr_assert_eq(cfg->provider, CV_PROVIDER_ETCD);
    cr_assert_eq(cfg->etcd_ttl_ms, 3000);
    cr_assert_eq(cfg->n_warnings, 0);
    cv_config_free(cfg);
}

/* ---- errors: integers and booleans ------------------------------------------------------------------- */

static void expect_shards_err(const char *value, const char *got)
{
    char yaml[512], want[256];
    snprintf(yaml, sizeof yaml, "version: 1\ncluster:\n  provider: raft\n  shards: %s\n" NODES, value);
    snprintf(want, sizeof want, "t.yml:4: cluster.shards: must be an integer 1..1048576, got %s", got);
    expect_err(yaml, want);
}

Test(config, err_integers)
{
    expect_shards_err("abc", "\"abc\"");
    expect_shards_err("12abc", "\"12abc\"");
    expect_shards_err("-1", "\"-1\"");
    expect_shards_err("+8", "\"+8\"");
    expect_shards_err("0", "\"0\"");
    expect_shards_err("1048577", "\"1048577\"");
    expect_shards_err("0x100", "\"0x100\"");
    expect_shards_err("1.5", "\"1.5\"");
    expect_shards_err("99999999999999999999999", "\"99999999999999999999999\"");
    expect_shards_err("\"8192\"", "the string \"8192\"");
    expect_shards_err("[1]", "a list");
    expect_shards_err("|\n    8192", "the string \"8192?\""); /* a block scalar keeps its newline: shown as '?' */
    expect_err("version: 1\ncluster:\n  lease_ttl_ms: 99\n" NODES,
               "t.yml:3: cluster.lease_ttl_ms: must be an integer 100..3600000, got \"99\"");
    expect_err("version: 1\ncluster:\n  drain_timeout_ms: -1\n" NODES,
               "t.yml:3: cluster.drain_timeout_ms: must be an integer 0..3600000, got \"-1\"");
    expect_err("version: 1\ncluster:\n  raft:\n    election_timeout_ms: 49\n" NODES,
               "t.yml:4: cluster.raft.election_timeout_ms: must be an integer 50..600000, got \"49\"");
    expect_err("version: 1\ncluster:\n  raft:\n    snapshot_threshold: 15\n" NODES,
               "t.yml:4: cluster.raft.snapshot_threshold: must be an integer 16..1000000000, got \"15\"");
    expect_err("version: 1\ncluster:\n  raft:\n    snapshot_trailing: 0\n" NODES,
               "t.yml:4: cluster.raft.snapshot_trailing: must be an integer 1..1000000000, got \"0\"");
}

Test(config, err_raft_relations)
{
    expect_err("version: 1\ncluster:\n  raft:\n    heartbeat_timeout_ms: 300\n" NODES,
               "t.yml:4: cluster.raft.heartbeat_timeout_ms: must be less than election_timeout_ms (150), got 300");
    expect_err("version: 1\ncluster:\n  raft:\n    election_timeout_ms: 100\n    heartbeat_timeout_ms: 150\n" NODES,
               "t.yml:5: cluster.raft.heartbeat_timeout_ms: must be less than election_timeout_ms (100), got 150");
    expect_err("version: 1\ncluster:\n  raft:\n    voters: 2\n" NODES,
               "t.yml:4: cluster.raft.voters: must be an integer 1..1 (the number of nodes), got 2");
    expect_err("version: 1\ncluster:\n  raft:\n    voters: 0\n" NODES,
               "t.yml:4: cluster.raft.voters: must be an integer 1..1000000, got \"0\"");
}

Test(config, err_booleans_and_autoload)
{
    expect_err("version: 1\ncluster:\n  raft:\n    pre_vote: yes\n" NODES,
               "t.yml:4: cluster.raft.pre_vote: must be true or false, got \"yes\"");
    expect_err("version: 1\ncluster:\n  auto_load_objects:\n    - type: T\n      id: X\n      per_shard: true\n"
               "      per_node: true\n" NODES,
               "t.yml:7: cluster.auto_load_objects[0].per_node: per_shard and per_node are both true (expected at "
               "most one of them)");
    expect_err("version: 1\ncluster:\n  auto_load_objects:\n    - type: T\n    - id: X\n" NODES,
               "t.yml:4: cluster.auto_load_objects[0].id: missing (required: an object id)");
    expect_err("version: 1\ncluster:\n  auto_load_objects:\n    - type: T\n      id: X\n    - id: Y\n" NODES,
               "t.yml:6: cluster.auto_load_objects[1].type: missing (required: an object type name)");
    expect_err("version: 1\ncluster:\n  auto_load_objects:\n    - type: T\n      id: X\n      per_node: \"true\"\n" NODES,
               "t.yml:6: cluster.auto_load_objects[0].per_node: must be true or false, got \"true\"");
}

/* ---- errors: nodes, gates, inspector ----------------------------------------------------------------- */

Test(config, err_nodes_required)
{
    expect_err("version: 1\n", "t.yml:1: nodes: missing (expected at least one node)");
    expect_err("version: 1\nnodes: []\n", "t.yml:2: nodes: is empty (expected at least one node)");
}

Test(config, err_node_ids)
{
    expect_err("version: 1\nnodes:\n  - grpc_addr: 0.0.0.0:7001\n    http_addr: 0.0.0.0:8001\n",
               "t.yml:3: nodes[0].id: missing (required: an id of A-Z a-z 0-9 . _ -)");
    expect_err("version: 1\nnodes:\n  - id: \"node 1\"\n",
               "t.yml:3: nodes[0].id: \"node 1\" contains ' ' (expected only A-Z a-z 0-9 . _ -)");
    expect_err("version: 1\nnodes:\n  - id: a/b\n",
               "t.yml:3: nodes[0].id: \"a/b\" contains '/' (expected only A-Z a-z 0-9 . _ -)");
    expect_err("version: 1\nnodes:\n  - id: \"a\\nb\"\n",
               "t.yml:3: nodes[0].id: \"a?b\" contains byte 0x0a (expected only A-Z a-z 0-9 . _ -)");
    expect_err("version: 1\nnodes:\n  - id: n\xc3\xa9\n",
               "t.yml:3: nodes[0].id: \"n\xc3\xa9\" contains byte 0xc3 (expected only A-Z a-z 0-9 . _ -)");
    expect_err("version: 1\nnodes:\n  - id: shard#1\n",
               "t.yml:3: nodes[0].id: \"shard#1\" must not start with \"shard#\" (reserved for shard ids)");
    expect_err("version: 1\nnodes:\n  - id: a234567890123456789012345678901234567890123456789012345678901234\n",
               "t.yml:3: nodes[0].id: \"a2345678901234567890...\" is longer than 63 characters");
    expect_err("version: 1\n" NODES "  - id: n1\n    grpc_addr: 0.0.0.0:7002\n    http_addr: 0.0.0.0:8002\n",
               "t.yml:6: nodes[1].id: duplicate node id \"n1\" (first at line 3; expected unique ids)");
    /* exactly 63 characters is fine */
    struct cv_config *cfg = parse_ok("version: 1\nnodes:\n"
                                     "  - id: a23456789012345678901234567890123456789012345678901234567890123\n"
                                     "    grpc_addr: 0.0.0.0:7001\n    http_addr: 0.0.0.0:8001\n");
    cr_assert_eq(strlen(cfg->nodes[0].id), 63);
    cv_config_free(cfg);
}

Test(config, err_node_addresses)
{
    expect_err("version: 1\nnodes:\n  - id: n1\n    http_addr: 0.0.0.0:8001\n",
               "t.yml:3: nodes[0].grpc_addr: missing (required: an address host:port)");
    expect_err("version: 1\nnodes:\n  - id: n1\n    grpc_addr: 0.0.0.0:7001\n",
               "t.yml:3: nodes[0].http_addr: missing (required: an address host:port)");
    expect_err("version: 1\nnodes:\n  - id: n1\n    grpc_addr: nohost\n    http_addr: 0.0.0.0:8001\n",
               "t.yml:4: nodes[0].grpc_addr: must be host:port with a port 1..65535, got \"nohost\"");
    expect_err("version: 1\nnodes:\n  - id: n1\n    grpc_addr: 0.0.0.0:70000\n    http_addr: 0.0.0.0:8001\n",
               "t.yml:4: nodes[0].grpc_addr: must be host:port with a port 1..65535, got \"0.0.0.0:70000\"");
    expect_err("version: 1\n" NODES "    advertise_addr: \"host:0\"\n",
               "t.yml:6: nodes[0].advertise_addr: must be host:port with a port 1..65535, got \"host:0\"");
    expect_err("version: 1\n" NODES "    raft_addr: \"10.0.0.1:x\"\n",
               "t.yml:6: nodes[0].raft_addr: must be host:port with a port 1..65535, got \"10.0.0.1:x\"");
    expect_err("version: 1\nnodes:\n  - id: n1\n    grpc_addr: 0.0.0.0:64000\n    http_addr: 0.0.0.0:8001\n",
               "t.yml:4: nodes[0].raft_addr: default port 66000 (grpc port 64000 + 2000) is above 65535 (set "
               "raft_addr explicitly)");
    /* ... and setting it explicitly fixes that */
    struct cv_config *cfg = parse_ok("version: 1\nnodes:\n  - id: n1\n    grpc_addr: 0.0.0.0:64000\n"
                                     "    http_addr: 0.0.0.0:8001\n    raft_addr: 127.0.0.1:9000\n");
    cr_assert_str_eq(cfg->nodes[0].raft_bind_addr, "0.0.0.0:9000");
    cv_config_free(cfg);
}

Test(config, err_gates_and_inspector)
{
    expect_err("version: 1\n" NODES "gates:\n  - id: g1\n    grpc_addr: 0.0.0.0:7101\n",
               "t.yml:7: gates[0].http_addr: missing (required: an address host:port)");
    expect_err("version: 1\n" NODES "gates:\n"
               "  - {id: g1, grpc_addr: \"0.0.0.0:7101\", http_addr: \"0.0.0.0:8101\"}\n"
               "  - {id: g1, grpc_addr: \"0.0.0.0:7102\", http_addr: \"0.0.0.0:8102\"}\n",
               "t.yml:8: gates[1].id: duplicate gate id \"g1\" (first at line 7; expected unique ids)");
    expect_err("version: 1\n" NODES "inspector:\n  http_addr: 0.0.0.0:8200\n",
               "t.yml:7: inspector.grpc_addr: missing (required: an address host:port)");
    expect_err("version: 1\n" NODES "inspector: [1]\n",
               "t.yml:6: inspector: must be a mapping with grpc_addr, http_addr, got a list");
}

Test(config, err_port_clashes)
{
    /* two nodes, same grpc port on the same (loopback) machine */
    expect_err("version: 1\n" NODES "  - id: n2\n    grpc_addr: 127.0.0.1:7001\n    http_addr: 0.0.0.0:8002\n",
               "t.yml:7: nodes[1].grpc_addr: port 7001 on host 127.0.0.1 is already used by nodes[0].grpc_addr "
               "(line 4) (expected a port of its own)");
    /* a node's default raft port (7001 + 2000) collides with another node's http port */
    expect_err("version: 1\n" NODES "  - id: n2\n    grpc_addr: 0.0.0.0:7002\n    http_addr: localhost:9001\n",
               "t.yml:8: nodes[1].http_addr: port 9001 on host 127.0.0.1 is already used by nodes[0].raft_addr "
               "(line 4) (expected a port of its own)");
    /* a gate's http port equal to a node's http port */
    expect_err("version: 1\n" NODES "gates:\n  - id: g1\n    grpc_addr: 0.0.0.0:7101\n    http_addr: 0.0.0.0:8001\n",
               "t.yml:9: gates[0].http_addr: port 8001 on host 127.0.0.1 is already used by nodes[0].http_addr "
               "(line 5) (expected a port of its own)");
    /* the inspector against a gate */
    expect_err("version: 1\n" NODES "gates:\n  - {id: g1, grpc_addr: \"0.0.0.0:7101\", http_addr: \"0.0.0.0:8101\"}\n"
               "inspector:\n  grpc_addr: 0.0.0.0:7101\n  http_addr: 0.0.0.0:8200\n",
               "t.yml:9: inspector.grpc_addr: port 7101 on host 127.0.0.1 is already used by gates[0].grpc_addr "
               "(line 7) (expected a port of its own)");
    /* one node's grpc and http on the same port */
    expect_err("version: 1\nnodes:\n  - id: n1\n    grpc_addr: 0.0.0.0:7001\n    http_addr: 127.0.0.1:7001\n",
               "t.yml:5: nodes[0].http_addr: port 7001 on host 127.0.0.1 is already used by nodes[0].grpc_addr "
               "(line 4) (expected a port of its own)");
}

/* ---- fingerprint ------------------------------------------------------------------------------------- */

#define TWO_NODES(a, b)                                                                                       \
    "nodes:\n"                                                                                                \
    "  - {id: " a ", grpc_addr: \"0.0.0.0:7001\", http_addr: \"0.0.0.0:8001\"}\n"                             \
    "  - {id: " b ", grpc_addr: \"0.0.0.0:7002\", http_addr: \"0.0.0.0:8002\"}\n"

Test(config, fingerprint)
{
    const char *base = "version: 1\ncluster:\n  shards: 64\n" TWO_NODES("a", "b");
    uint64_t fp = fingerprint_of(base);
    cr_assert_neq(fp, 0);
    cr_assert_eq(fingerprint_of(base), fp, "same content, same fingerprint");
    /* formatting, comments, and settings outside shards + nodes' id/raft_addr do not matter */
    cr_assert_eq(fingerprint_of("# c\nversion: 1\ncluster: {shards: 64, provider: etcd, lease_ttl_ms: 900}\n"
                                TWO_NODES("a", "b") "gates: []\n"),
                 fp);
    cr_assert_eq(fingerprint_of("version: 1\ncluster:\n  shards: 64\nnodes:\n"
                                "  - {id: a, grpc_addr: \"0.0.0.0:7001\", http_addr: \"0.0.0.0:8801\"}\n"
                                "  - {id: b, grpc_addr: \"0.0.0.0:7002\", http_addr: \"0.0.0.0:8802\"}\n"),
                 fp);
    /* what every node must agree on does matter */
    cr_assert_neq(fingerprint_of("version: 1\ncluster:\n  shards: 65\n" TWO_NODES("a", "b")), fp);
    cr_assert_neq(fingerprint_of("version: 1\ncluster:\n  shards: 64\n" TWO_NODES("b", "a")), fp,
                  "node order is part of the fingerprint");
    cr_assert_neq(fingerprint_of("version: 1\ncluster:\n  shards: 64\n" TWO_NODES("a", "c")), fp);
    cr_assert_neq(fingerprint_of("version: 1\ncluster:\n  shards: 64\nnodes:\n"
                                 "  - {id: a, grpc_addr: \"0.0.0.0:7001\", http_addr: \"0.0.0.0:8001\"}\n"
                                 "  - {id: b, grpc_addr: \"0.0.0.0:7002\", http_addr: \"0.0.0.0:8002\", "
                                 "raft_addr: \"127.0.0.1:9999\"}\n"),
                  fp);
}

/* ---- robustness -------------------------------------------------------------------------------------- */

Test(config, aliases_and_odd_input_do_not_crash)
{
    /* a self-referencing anchor: the walk is bounded by the schema, so it terminates (here: cluster.etcd is
     * the cluster mapping again, whose "etcd" key is an extra etcd setting, i.e. a warning) */
    struct cv_config *cfg = parse_ok("version: 1\ncluster: &c\n  etcd: *c\n" NODES);
    cr_assert_eq(cfg->n_warnings, 1);
    cr_assert_str_eq(cfg->warnings[0], "t.yml:3: cluster.etcd.etcd: Goverse setting not used by cverse yet; ignored");
    cv_config_free(cfg);
    /* NUL inside a quoted string */
    expect_err("version: 1\nnodes:\n  - id: \"a\\0b\"\n",
               "t.yml:3: nodes[0].id: must not contain NUL characters (expected an id of A-Z a-z 0-9 . _ -)");
    /* an error buffer of 0 bytes or NULL is fine */
    cr_assert_eq(cv_config_parse("x", 1, "t.yml", &cfg, NULL, 0), CV_ECONFIG);
    char tiny[8];
    cr_assert_eq(cv_config_parse("x", 1, "t.yml", &cfg, tiny, sizeof tiny), CV_ECONFIG);
    cr_assert_str_eq(tiny, "t.yml:1");
}

/* inspector.admin_token_file (issue 7): optional, a non-empty path. */
Test(config, inspector_admin_token_file)
{
    const char *text = "version: 1\nnodes:\n  - id: n1\n    grpc_addr: 127.0.0.1:47001\n    http_addr: 127.0.0.1:48001\n"
                       "inspector: {grpc_addr: \"127.0.0.1:47200\", http_addr: \"127.0.0.1:48200\", "
                       "admin_token_file: token.txt}\n";
    struct cv_config *cfg;
    char err[256];
    cr_assert_eq(cv_config_parse(text, strlen(text), "t.yml", &cfg, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(cfg->inspector.admin_token_file, "token.txt");
    cv_config_free(cfg);
    const char *none = "version: 1\nnodes:\n  - id: n1\n    grpc_addr: 127.0.0.1:47001\n    http_addr: 127.0.0.1:48001\n"
                       "inspector: {grpc_addr: \"127.0.0.1:47200\", http_addr: \"127.0.0.1:48200\"}\n";
    cr_assert_eq(cv_config_parse(none, strlen(none), "t.yml", &cfg, err, sizeof err), 0, "%s", err);
    cr_assert_null(cfg->inspector.admin_token_file);
    cv_config_free(cfg);
}

/* ---- object_types and object_state_max_bytes (objtypes.c) ------------------------------------------- */

Test(config, object_types_override_persistence)
{
    struct cv_config *cfg = parse_ok("version: 1\n" NODES
                                     "object_types:\n"
                                     "  SimpleCounter: {persist: none}\n"
                                     "  Cart:\n"
                                     "    persist: periodic\n"
                                     "    save_interval_ms: 250\n"
                                     "    idle_timeout_ms: 900000\n"
                                     "  Plain: {}\n"
                                     "object_state_max_bytes: 4096\n");
    cr_assert_eq(cfg->n_object_types, 3);
    cr_assert_str_eq(cfg->object_types[0].name, "SimpleCounter");
    cr_assert_eq(cfg->object_types[0].persist, 0);
    cr_assert_eq(cfg->object_types[0].save_interval_ms, 0);
    cr_assert_eq(cfg->object_types[0].line, 7);
    cr_assert_str_eq(cfg->object_types[1].name, "Cart");
    cr_assert_eq(cfg->object_types[1].persist, 2);
    cr_assert_eq(cfg->object_types[1].save_interval_ms, 250);
    cr_assert(cfg->object_types[1].has_idle_timeout);
    cr_assert_eq(cfg->object_types[1].idle_timeout_ms, 900000);
    cr_assert_eq(cfg->object_types[2].persist, -1, "no persist key: the type's own policy");
    cr_assert(!cfg->object_types[2].has_idle_timeout);
    cr_assert_eq(cfg->object_state_max_bytes, 4096);
    cr_assert_eq(cfg->n_warnings, 0);
    cv_config_free(cfg);
    cfg = parse_ok("version: 1\n" NODES);
    cr_assert_eq(cfg->n_object_types, 0);
    cr_assert_eq(cfg->object_state_max_bytes, 1u << 20, "default 1 MiB");
    cv_config_free(cfg);
}

Test(config, object_types_errors_are_one_line_each)
{
    expect_err("version: 1\n" NODES "object_types:\n  SimpleCounter: {persist: sometimes}\n",
               "t.yml:7: object_types.SimpleCounter.persist: must be none, on_write or periodic, got \"sometimes\"");
    expect_err("version: 1\n" NODES "object_types:\n  C: {save_interval_ms: 5}\n",
               "t.yml:7: object_types.C.save_interval_ms: must be an integer 10..86400000, got \"5\"");
    expect_err("version: 1\n" NODES "object_types:\n  C: {idle_timeout_ms: -1}\n",
               "t.yml:7: object_types.C.idle_timeout_ms: must be an integer 0..604800000, got \"-1\"");
    expect_err("version: 1\n" NODES "object_types:\n  C: {persist: none, ttl: 3}\n",
               "t.yml:7: object_types.C: unknown key \"ttl\" (expected one of: persist, save_interval_ms, "
               "idle_timeout_ms, call_id_window, call_id_window_ms)");
    expect_err("version: 1\n" NODES "object_types:\n  C: {persist: none, persist: on_write}\n",
               "t.yml:7: object_types.C: duplicate key \"persist\" (expected once)");
    expect_err("version: 1\n" NODES "object_types:\n  C: on_write\n",
               "t.yml:7: object_types.C: must be a mapping of persist, save_interval_ms, idle_timeout_ms, "
               "call_id_window, call_id_window_ms");
    expect_err("version: 1\n" NODES "object_types:\n  C: {}\n  C: {}\n",
               "t.yml:8: object_types: type C given twice (first at line 7; expected once)");
    expect_err("version: 1\n" NODES "object_types: [a]\n",
               "t.yml:6: object_types: must be a mapping of type name to settings");
    expect_err("version: 1\n" NODES "object_state_max_bytes: \"100\"\n",
               "t.yml:6: object_state_max_bytes: must be an integer 64..268435456, got \"100\"");
    expect_err("version: 1\n" NODES "object_state_max_bytes: 1\n",
               "t.yml:6: object_state_max_bytes: must be an integer 64..268435456, got \"1\"");
    char many[4096] = "version: 1\n" NODES "object_types:\n";
    for (int i = 0; i <= CV_CONFIG_OBJECT_TYPES_MAX; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "  T%d: {}\n", i);
    expect_err(many, "t.yml:71: object_types: more than 64 types (expected at most 64)");
}

/* ---- checks against the process' object types (config/check.h) ------------------------------------- */

static bool known_demo(void *data, const char *type)
{
    (void)data;
    return strcmp(type, "GlobalMonitor") == 0 || strcmp(type, "ShardMonitor") == 0;
}

Test(config, unknown_autoload_type_names_its_line)
{
    static const char text[] = "version: 1\ncluster:\n  auto_load_objects:\n"
                               "    - type: GlobalMonitor\n      id: G\n"
                               "    - id: S\n      per_shard: true\n      type: ShardMonitr\n"
                               "nodes:\n  - {id: n1, grpc_addr: \"127.0.0.1:7001\", http_addr: \"127.0.0.1:7101\"}\n";
    struct cv_config *cfg;
    char err[512];
    cr_assert_eq(cv_config_parse(text, sizeof text - 1, "t.yml", &cfg, err, sizeof err), 0, "%s", err);
    cr_assert_eq(cfg->autoload[0].line, 4);
    cr_assert_eq(cfg->autoload[1].line, 8, "the line of the entry's type");
    cr_assert_eq(cv_config_check_types(cfg, known_demo, NULL, err, sizeof err), CV_ECONFIG);
    cr_assert_str_eq(err, "t.yml:8: cluster.auto_load_objects[1].type: unknown object type \"ShardMonitr\" (id "
                          "\"S\"; load the module that defines it with --module PATH.so)");
    cr_assert_eq(cv_config_check_types(cfg, known_demo, NULL, NULL, 0), CV_ECONFIG, "err may be NULL");
    free(cfg->autoload[1].type);
    cfg->autoload[1].type = strdup("ShardMonitor");
    err[0] = '\0';
    cr_assert_eq(cv_config_check_types(cfg, known_demo, NULL, err, sizeof err), 0);
    cr_assert_str_eq(err, "", "nothing written when every type is known");
    cv_config_free(cfg);
}

/* Push settings of a gate (docs/push.md): defaults, given values, range errors. */
Test(config, gate_push_settings)
{
    struct cv_config *cfg = parse_ok("version: 1\n" NODES "gates:\n"
                                     "  - {id: g1, grpc_addr: \"127.0.0.1:7101\", http_addr: \"127.0.0.1:8101\"}\n"
                                     "  - {id: g2, grpc_addr: \"127.0.0.1:7102\", http_addr: \"127.0.0.1:8102\",\n"
                                     "     push_heartbeat_ms: 500, push_queue: 16}\n");
    cr_assert_eq(cfg->gates[0].push_heartbeat_ms, 30000);
    cr_assert_eq(cfg->gates[0].push_queue, 256);
    cr_assert_eq(cfg->gates[1].push_heartbeat_ms, 500);
    cr_assert_eq(cfg->gates[1].push_queue, 16);
    cv_config_free(cfg);
    expect_err_prefix("version: 1\n" NODES "gates:\n"
                      "  - {id: g1, grpc_addr: \"127.0.0.1:7101\", http_addr: \"127.0.0.1:8101\", push_queue: 0}\n",
                      "t.yml:");
    expect_err_prefix("version: 1\n" NODES "gates:\n"
                      "  - {id: g1, grpc_addr: \"127.0.0.1:7101\", http_addr: \"127.0.0.1:8101\", push_heartbeat_ms: 5}\n",
                      "t.yml:");
}

#define GATE1 "gates:\n  - {id: g1, grpc_addr: \"127.0.0.1:7101\", http_addr: \"127.0.0.1:8101\""

Test(config, gate_limits)
{
    struct cv_config *cfg = parse_ok("version: 1\n" NODES GATE1 "}\n"
                                     "  - {id: g2, grpc_addr: \"127.0.0.1:7102\", http_addr: \"127.0.0.1:8102\",\n"
                                     "     request_timeout_ms: 300, idle_timeout_ms: 900, max_connections: 4,\n"
                                     "     rate_limit_per_sec: 5}\n"
                                     "  - {id: g3, grpc_addr: \"127.0.0.1:7103\", http_addr: \"127.0.0.1:8103\",\n"
                                     "     rate_limit_per_sec: 5, rate_limit_burst: 20}\n");
    cr_assert_eq(cfg->gates[0].request_timeout_ms, 10000);
    cr_assert_eq(cfg->gates[0].idle_timeout_ms, 60000);
    cr_assert_eq(cfg->gates[0].max_connections, 10000);
    cr_assert_eq(cfg->gates[0].rate_limit_per_sec, 0, "no rate limit by default");
    cr_assert_null(cfg->gates[0].tls_cert_file);
    cr_assert_eq(cfg->gates[1].request_timeout_ms, 300);
    cr_assert_eq(cfg->gates[1].idle_timeout_ms, 900);
    cr_assert_eq(cfg->gates[1].max_connections, 4);
    cr_assert_eq(cfg->gates[1].rate_limit_per_sec, 5);
    cr_assert_eq(cfg->gates[1].rate_limit_burst, 5, "the burst defaults to the rate");
    cr_assert_eq(cfg->gates[2].rate_limit_burst, 20);
    cv_config_free(cfg);
    expect_err("version: 1\n" NODES GATE1 ", max_connections: 0}\n",
               "t.yml:7: gates[0].max_connections: must be an integer 1..1000000, got \"0\"");
    expect_err("version: 1\n" NODES GATE1 ", rate_limit_burst: 3}\n",
               "t.yml:7: gates[0].rate_limit_burst: needs rate_limit_per_sec");
    expect_err("version: 1\n" NODES GATE1 ", tls_cert_file: c.pem}\n",
               "t.yml:7: gates[0].tls_key_file: missing (tls_cert_file and tls_key_file go together)");
}

Test(config, gate_tls_files_relative_to_the_config)
{
    char dir[] = "/tmp/cverse-test-cfgtls-XXXXXX", path[256], want[1024], err[512];
    cr_assert_not_null(mkdtemp(dir));
    const char *names[] = {"cert.pem", "key.pem"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        FILE *f = fopen(path, "w");
        cr_assert_not_null(f);
        fclose(f);
    }
    snprintf(path, sizeof path, "%s/cverse.yml", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f, "version: 1\n" NODES GATE1 ",\n     tls_cert_file: cert.pem, tls_key_file: %s/key.pem}\n", dir);
    fclose(f);
    struct cv_config *cfg = NULL;
    cr_assert_eq(cv_config_load(path, &cfg, err, sizeof err), 0, "%s", err);
    snprintf(want, sizeof want, "%s/cert.pem", dir);
    cr_assert_str_eq(cfg->gates[0].tls_cert_file, want);
    snprintf(want, sizeof want, "%s/key.pem", dir);
    cr_assert_str_eq(cfg->gates[0].tls_key_file, want, "absolute paths stay");
    cr_assert_eq(cfg->gates[0].tls_line, 8);
    cv_config_free(cfg);
    cfg = NULL;
    f = fopen(path, "w");
    fprintf(f, "version: 1\n" NODES GATE1 ",\n     tls_cert_file: missing.pem, tls_key_file: key.pem}\n");
    fclose(f);
    cr_assert_eq(cv_config_load(path, &cfg, err, sizeof err), CV_ECONFIG);
    snprintf(want, sizeof want, "%s:8: gates[0].tls_cert_file: cannot read %s/missing.pem: No such file or directory",
             path, dir);
    cr_assert_str_eq(err, want);
    for (int i = 0; i < 2; i++) {
        snprintf(want, sizeof want, "%s/%s", dir, names[i]);
        unlink(want);
    }
    unlink(path);
    rmdir(dir);
}

/* ---- issue 14: access rules and the gate's tokens file ---- */

static const char rules_head[] = "version: 1\n"
                                 "nodes:\n"
                                 "  - {id: n1, grpc_addr: \"127.0.0.1:9101\", http_addr: \"127.0.0.1:9102\"}\n";

static struct cv_config *parse_rules(const char *rules)
{
    char yaml[2048];
    snprintf(yaml, sizeof yaml, "%s%s", rules_head, rules);
    return parse_ok(yaml);
}

static void expect_rules_err(const char *rules, const char *want)
{
    char yaml[2048];
    snprintf(yaml, sizeof yaml, "%s%s", rules_head, rules);
    expect_err(yaml, want);
}

Test(config, access_rules_parsed_and_applied)
{
    struct cv_config *cfg = parse_rules("object_access_rules:\n"
                                        "  - {type: Counter, id: \"/c-[0-9]+/\", method: Get, access: ALLOW}\n"
                                        "  - {object: ChatRoomMgr0, method: /(List|Get)/, access: EXTERNAL}\n"
                                        "  - {type: Counter, access: INTERNAL}\n"
                                        "object_lifecycle_rules:\n"
                                        "  - {type: Counter, id: fixed, lifecycle: ALL, access: REJECT}\n");
    const struct cv_access_rules *r = &cfg->access_rules;
    cr_assert_eq(r->n_calls, 3);
    cr_assert_eq(r->calls[1].line, 6);
    cr_assert_eq(cv_access_call(r, "Counter", "c-12", "Get", false), 0);
    cr_assert_eq(cv_access_call(r, "Counter", "c-12", "Add", false), CV_EPERM);
    cr_assert_eq(cv_access_call(r, "Counter", "c-12", "Add", true), 0);
    cr_assert_eq(cv_access_call(r, "Any", "ChatRoomMgr0", "List", false), 0);
    cr_assert_eq(cv_access_call(r, "Any", "ChatRoomMgr0", "List", true), CV_EPERM);
    cr_assert_eq(cv_access_call(r, "Other", "x", "Get", true), CV_EPERM); /* no match: denied */
    cr_assert_eq(cv_access_life(r, CV_LIFE_CREATE, "Counter", "fixed", true), CV_EPERM);
    cr_assert_eq(cv_access_life(r, CV_LIFE_DELETE, "Counter", "fixed", false), CV_EPERM);
    cr_assert_eq(cv_access_life(r, CV_LIFE_CREATE, "Counter", "other", false), 0);
    cv_config_free(cfg);
}

Test(config, access_rules_errors)
{
    char yaml[512]; /* the regex library's own words follow the prefix */
    snprintf(yaml, sizeof yaml, "%sobject_access_rules:\n  - {type: \"/Chat[/\", access: ALLOW}\n", rules_head);
    expect_err_prefix(yaml, "t.yml:5: object_access_rules[0].type: invalid regular expression /Chat[/: ");
    expect_rules_err("object_access_rules:\n  - {type: A, access: MAYBE}\n",
                     "t.yml:5: object_access_rules[0]: access must be REJECT, INTERNAL, EXTERNAL or ALLOW, got \"MAYBE\"");
    expect_rules_err("object_access_rules:\n  - {method: M, access: ALLOW}\n",
                     "t.yml:5: object_access_rules[0]: missing type (required: a name or /regex/)");
    expect_rules_err("object_access_rules:\n  - {type: A, access: ALLOW, colour: red}\n",
                     "t.yml:5: object_access_rules[0]: unknown key \"colour\" (expected type, id, method, access "
                     "(or Goverse's object))");
    expect_rules_err("object_lifecycle_rules:\n  - {type: A, access: ALLOW}\n",
                     "t.yml:5: object_lifecycle_rules[0]: missing lifecycle (required: CREATE, DELETE or ALL)");
    expect_rules_err("object_lifecycle_rules:\n  - {type: A, lifecycle: MAKE, access: ALLOW}\n",
                     "t.yml:5: object_lifecycle_rules[0]: lifecycle must be CREATE, DELETE or ALL, got \"MAKE\"");
    expect_rules_err("object_access_rules: 3\n", "t.yml:4: object_access_rules: must be a list of rules");
}

Test(config, gate_auth_tokens_file_key)
{
    struct cv_config *cfg = parse_rules("gates:\n  - {id: g1, grpc_addr: \"127.0.0.1:9201\", http_addr: "
                                        "\"127.0.0.1:9202\", auth_tokens_file: tokens.txt}\n");
    cr_assert_str_eq(cfg->gates[0].auth_tokens_file, "tokens.txt");
    cv_config_free(cfg);
}

Test(config, tokens_file_parses)
{
    static const char text[] = "# clients\n\n  tok-alice alice admin,ops\ntok-bob\tbob\n";
    struct cv_tokens t;
    char err[256] = "";
    cr_assert_eq(cv_tokens_parse(text, strlen(text), "tok.txt", &t, err, sizeof err), 0, "%s", err);
    cr_assert_eq(t.n, 2);
    const struct cv_token *a = cv_tokens_find(&t, "tok-alice", 9);
    cr_assert_not_null(a);
    cr_assert_str_eq(a->user_id, "alice");
    cr_assert_str_eq(a->roles, "admin,ops");
    const struct cv_token *b = cv_tokens_find(&t, "tok-bob", 7);
    cr_assert_not_null(b);
    cr_assert_str_eq(b->user_id, "bob");
    cr_assert_str_eq(b->roles, "");
    cr_assert_null(cv_tokens_find(&t, "tok-bo", 6));
    cr_assert_null(cv_tokens_find(&t, "", 0));
    cv_tokens_free(&t);
}

static void expect_tokens_err(const char *text, const char *want)
{
    struct cv_tokens t;
    char err[256] = "";
    cr_assert_eq(cv_tokens_parse(text, strlen(text), "tok.txt", &t, err, sizeof err), CV_ECONFIG, "for %s", text);
    cr_assert_str_eq(err, want);
    cr_assert_null(t.v);
}

Test(config, tokens_file_errors)
{
    expect_tokens_err("a alice\nlonely\n", "tok.txt:2: 1 words (expected TOKEN USER_ID [ROLE,ROLE...])");
    expect_tokens_err("a alice r1 extra\n", "tok.txt:1: 4 words (expected TOKEN USER_ID [ROLE,ROLE...])");
    expect_tokens_err("a alice\n# x\na bob\n", "tok.txt:3: duplicate token (expected each token once)");
    expect_tokens_err("a alice r1,,r2\n", "tok.txt:1: bad role list \"r1,,r2\" (expected ROLE,ROLE... under 256 bytes)");
    expect_tokens_err("# nothing\n\n", "tok.txt:2: no token (expected TOKEN USER_ID lines)");
    struct cv_tokens t;
    char err[256];
    cr_assert_eq(cv_tokens_load("/nonexistent/tokens", &t, err, sizeof err), CV_EIO);
}
