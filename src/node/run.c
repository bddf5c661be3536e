/* cv_node_main (include/cverse/node.h): the cverse-node process. Command line parsing, config loading,
 * the object types (built-in demo types, the program's own, --module shared objects), then the node's
 * event loop until it stops.
 * Exit codes: 0 stopped cleanly, 1 runtime failure (e.g. a port in use), 2 bad arguments, config or
 * module (cannot be loaded, lacks cverse_module_init, or its init failed), or an auto-load object of a
 * type nobody registered. */
#include <dlfcn.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/guard.h"
#include "config/check.h"
#include "config/config.h"
#include "cverse/error.h"
#include "cverse/node.h"
#include "node/bootstrap.h"
#include "node/flags.h"
#include "node/node.h"
#include "objects/registry.h"
#include "util/log.h"
#include "demo/demo.h"

#ifndef CV_VERSION
#define CV_VERSION "0.0.0"
#endif

#define MAX_MODULES 32

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: cverse-node --config FILE --node-id ID [--data-dir DIR] [--log-level LEVEL]\n"
            "                   [--module PATH.so]... [--no-demo-types]\n"
            "       cverse-node --config FILE --list-nodes | --list-gates | --list-etcd\n"
            "       cverse-node --node-id ID --listen ADDR --http-listen ADDR (--join HOST:PORT | --etcd EPS)\n"
            "                   [--advertise ADDR] [--raft-listen ADDR] [--shards N] [--etcd-prefix P] [...]\n"
            "\n"
            "Runs one cverse node: a member of the cluster's raft group that holds the catalog\n"
            "(node registry, shard map, leases, objects), hosts the objects of the shards it owns\n"
            "and serves the node HTTP API.\n"
            "\n"
            "  -c, --config FILE       cluster configuration (YAML, Goverse schema)\n"
            "  -n, --node-id ID        which of the config's nodes this process is\n"
            "  -d, --data-dir DIR      data directory of this node (default: <cluster.data_dir>/<ID>)\n"
            "  -l, --log-level L       debug, info (default), warn, error\n"
            "  -m, --module PATH.so    load object types from a shared object exporting\n"
            "                          cverse_module_init (repeatable)\n"
            "      --no-demo-types     do not register the built-in demo types (SimpleCounter,\n"
            "                          ShardMonitor, NodeMonitor, GlobalMonitor); also\n"
            "                          --no-builtin-types, or cluster.demo_types: false in the config\n"
            "      --list-nodes        print \"ID HTTP_ADDR\" for every node in the config and exit\n"
            "      --list-gates        print \"ID HTTP_ADDR GRPC_ADDR\" for every gate in the config and exit\n"
            "      --list-etcd         print every cluster.etcd endpoint (one a line) when cluster.provider is\n"
            "                          etcd, nothing otherwise, and exit\n"
            "Without --config (Goverse's flag form, docs/operations.md): a node that no config lists joins a\n"
            "running cluster (cluster settings at their defaults; --shards must match the cluster's):\n"
            "      --listen ADDR       native protocol listen address\n"
            "      --advertise ADDR    address others dial (default: the connectable form of --listen)\n"
            "      --http-listen ADDR  HTTP API listen address\n"
            "      --raft-listen ADDR  raft address (default: --listen's port + 2000)\n"
            "      --shards N          the cluster's shard count (default 8192)\n"
            "      --join HOST:PORT    a member's native address to ask for membership\n"
            "      --etcd EPS          etcd endpoints host:port, comma-separated: register there and find the\n"
            "                          members there (without --join)\n"
            "      --etcd-prefix P     key prefix in etcd (default /cverse)\n"
            "  -h, --help              show this help\n"
            "  -V, --version           show the version\n");
}

static int run__bad_usage(const char *msg, const char *arg)
{
    fprintf(stderr, "cverse-node: %s%s%s\nTry 'cverse-node --help'.\n", msg, arg ? ": " : "",
            arg ? arg : "");
    return 2;
}

struct args {
    const char *config, *node_id, *data_dir;
    enum cv_log_level level;
    int list_nodes, list_gates, list_etcd, no_builtin;
    const char *modules[MAX_MODULES];
    int n_modules;
    struct cv_node_flags flags; /* the flag form (no --config) */
    const char *join;           /* --join HOST:PORT */
};

/* Returns -1 to continue, or an exit code. */
static int run__parse_args(int argc, char **argv, struct args *a)
{
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'},   {"node-id", required_argument, 0, 'n'},
        {"data-dir", required_argument, 0, 'd'}, {"log-level", required_argument, 0, 'l'},
        {"module", required_argument, 0, 'm'},   {"no-builtin-types", no_argument, 0, 'B'},
        {"list-nodes", no_argument, 0, 'L'},     {"list-gates", no_argument, 0, 'G'},     {"help", no_argument, 0, 'h'},
        {"list-etcd", no_argument, 0, 'Q'},
        {"version", no_argument, 0, 'V'},        {"no-demo-types", no_argument, 0, 'B'},
        {"listen", required_argument, 0, 1},     {"advertise", required_argument, 0, 2},
        {"http-listen", required_argument, 0, 3}, {"raft-listen", required_argument, 0, 4},
        {"shards", required_argument, 0, 5},     {"etcd", required_argument, 0, 6},
        {"etcd-prefix", required_argument, 0, 7}, {"join", required_argument, 0, 8},   {0, 0, 0, 0}};
    struct cv_node_flags *fl = &a->flags;
    opterr = 0;
    optind = 1; /* cv_node_main may be called after the program parsed its own options */
    int ch;
    while ((ch = getopt_long(argc, argv, ":c:n:d:l:m:hV", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': a->config = optarg; break;
        case 'n': a->node_id = optarg; break;
        case 'd': a->data_dir = optarg; break;
        case 'l':
            if (cv_log_level_parse(optarg, &a->level)) return run__bad_usage("unknown log level", optarg);
            break;
        case 'm':
            if (a->n_modules == MAX_MODULES) return run__bad_usage("too many --module options (max 32)", optarg);
            a->modules[a->n_modules++] = optarg;
            break;
        case 'B': a->no_builtin = 1; break;
        case 'L': a->list_nodes = 1; break;
        case 'G': a->list_gates = 1; break;
        case 'Q': a->list_etcd = 1; break;
        case 1: fl->listen = optarg; break;
        case 2: fl->advertise = optarg; break;
        case 3: fl->http_listen = optarg; break;
        case 4: fl->raft_listen = optarg; break;
        case 5: fl->shards = optarg; break;
        case 6: fl->etcd = optarg; break;
        case 7: fl->prefix = optarg; break;
        case 8: a->join = optarg; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("cverse-node %s\n", CV_VERSION); return 0;
        case ':': return run__bad_usage("option needs a value", argv[optind - 1]);
        default: return run__bad_usage("unknown option", argv[optind - 1]);
        }
    }
    if (optind < argc) return run__bad_usage("unexpected argument", argv[optind]);
    bool flag_form = fl->listen || fl->http_listen || fl->etcd || a->join;
    if (a->config && flag_form) return run__bad_usage("--config and the flag form (--listen ...) are exclusive", NULL);
    if (flag_form && (!fl->listen || !fl->http_listen || !a->node_id))
        return run__bad_usage("the flag form needs --node-id, --listen and --http-listen", NULL);
    if (flag_form && !a->join && !fl->etcd)
        return run__bad_usage("the flag form needs --join HOST:PORT or --etcd to find the cluster", NULL);
    fl->id = a->node_id;
    fl->data_dir = NULL; /* --data-dir is the node's own directory, not cluster.data_dir */
    if (flag_form) return -1;
    if (!a->config) return run__bad_usage("missing --config FILE", NULL);
    if (!a->list_nodes && !a->list_gates && !a->list_etcd && !a->node_id) return run__bad_usage("missing --node-id ID", NULL);
    return -1;
}

/* ---------------------------------------------------------------- object types */

/* Fills reg with the built-in, the program's and the modules' types; an exit code on failure. */
static int run__register_types(const struct args *a, cv_module_init_fn extra, cv_registry *reg, void **handles)
{
    int rv;
    if (!a->no_builtin && (rv = cv_demo_register(reg))) {
        fprintf(stderr, "cverse-node: registering the built-in demo types failed: %s\n", cv_strerror(rv));
        return 2;
    }
    if (extra && (rv = extra(reg))) {
        fprintf(stderr, "cverse-node: registering the program's object types failed: %s (%s)\n",
                cv_strerror(rv), cv_errname(rv));
        return 2;
    }
    char err[512];
    for (int i = 0; i < a->n_modules; i++)
        if (cv_registry_load_module(reg, a->modules[i], &handles[i], err, sizeof err)) {
            fprintf(stderr, "cverse-node: %s%s\n", err,
                    strstr(err, "already registered") ? " (see --no-demo-types)" : "");
            return 2;
        }
    return 0;
}

static bool run__type_known(void *data, const char *type)
{
    return cv_registry_type(data, type) != NULL;
}

/* Every auto-load object needs a registered type (config/check.h: the message names the file's line). */
static int run__check_autoload(const struct cv_config *cfg, const cv_registry *reg)
{
    char err[512];
    if (!cv_config_check_types(cfg, run__type_known, (void *)reg, err, sizeof err)) return 0;
    fprintf(stderr, "cverse-node: %s\n", err);
    return 2;
}

/* The flag form's config (node/flags.h), parsed like a file. */
static int run__flags_config(const struct cv_node_flags *f, struct cv_config **cfg, char *err, size_t errlen)
{
    char *yaml = cv_node_flags_yaml(f);
    if (!yaml) {
        snprintf(err, errlen, "out of memory");
        return CV_ENOMEM;
    }
    int rv = cv_config_parse(yaml, strlen(yaml), "flags", cfg, err, errlen);
    free(yaml);
    /* The voter target is the cluster's, not this one-node file's (the parser caps it at its node count):
     * the default, so that a flag-form leader keeps 3 voters as nodes join (docs/operations.md). */
    if (rv == 0) (*cfg)->raft.voters = 3;
    return rv;
}

/* ---------------------------------------------------------------- the process */

struct run_ctx {
    uv_loop_t loop;
    const struct args *a;
    const struct cv_config *cfg;
    cv_registry *reg;
    struct cv_node *node;
    int code;
};

/* join: the flag form joins a running cluster (node/join.h); else the config's members (or the one that
 * won the bootstrap) bootstrap raft when their data dir is pristine. */
static void run__start_node(struct run_ctx *r, bool join)
{
    const struct args *a = r->a;
    struct cv_node_opts o = {.loop = &r->loop, .cfg = r->cfg, .node_id = a->node_id, .data_dir = a->data_dir,
                             .registry = r->reg, .join = join, .join_addr = a->join};
    int rv = cv_node_init(&o, &r->node);
    if (rv) {
        CV_ERROR("node failed to start: %s", cv_strerror(rv)); /* nothing was created: nothing to stop */
        r->code = 1;
    } else if ((rv = cv_node_start(r->node))) {
        CV_ERROR("node failed to start: %s", cv_strerror(rv));
        r->code = 1;
        cv_node_stop(r->node);
    }
}

static void run__decided(void *data, bool first)
{
    run__start_node(data, !first);
}

static int run(const struct args *a, const struct cv_config *cfg, cv_registry *reg)
{
    struct run_ctx r = {.a = a, .cfg = cfg, .reg = reg};
    uv_loop_init(&r.loop);
    /* The flag form with etcd and no --join: etcd says whether we create the cluster or join it. */
    if (!a->config && !a->join) {
        int rv = cv_bootstrap_decide(&r.loop, cfg, a->node_id, run__decided, &r);
        if (rv) CV_ERROR("cannot ask etcd who bootstraps the cluster: %s", cv_strerror(rv));
        r.code = rv ? 1 : 0;
    } else {
        run__start_node(&r, !a->config);
    }
    uv_run(&r.loop, UV_RUN_DEFAULT);
    if (r.node && cv_node_failed(r.node)) r.code = 1;
    cv_node_free(r.node);
    if (uv_loop_close(&r.loop)) CV_WARN("event loop closed with handles still open");
    return r.code;
}

int cv_node_main(int argc, char **argv, cv_module_init_fn extra_types)
{
    struct args a = {.level = CV_LOG_INFO};
    int rv = run__parse_args(argc, argv, &a);
    if (rv >= 0) return rv;
    struct cv_config *cfg;
    char err[512];
    if (a.config ? cv_config_load(a.config, &cfg, err, sizeof err) : run__flags_config(&a.flags, &cfg, err, sizeof err)) {
        fprintf(stderr, "cverse-node: %s\n", err);
        return 2;
    }
    if (a.list_nodes || a.list_gates || a.list_etcd) {
        for (size_t i = 0; a.list_etcd && cfg->provider == CV_PROVIDER_ETCD && i < cfg->n_etcd_endpoints; i++)
            printf("%s\n", cfg->etcd_endpoints[i]);
        for (size_t i = 0; a.list_nodes && i < cfg->n_nodes; i++)
            printf("%s %s\n", cfg->nodes[i].id, cfg->nodes[i].http_addr);
        for (size_t i = 0; a.list_gates && i < cfg->n_gates; i++)
            printf("%s %s %s\n", cfg->gates[i].id, cfg->gates[i].http_addr, cfg->gates[i].grpc_addr);
        cv_config_free(cfg);
        return 0;
    }
    if (!cv_config_node(cfg, a.node_id)) {
        fprintf(stderr, "cverse-node: %s: no node \"%s\" in the config (nodes[].id)\n", cfg->path, a.node_id);
        cv_config_free(cfg);
        return 2;
    }
    void *handles[MAX_MODULES] = {0};
    if (cfg->no_demo_types) a.no_builtin = 1; /* cluster.demo_types: false */
    cv_registry *reg = cv_registry_new();
    int code = reg ? run__register_types(&a, extra_types, reg, handles) : 1;
    if (!reg) fprintf(stderr, "cverse-node: out of memory\n");
    if (code == 0) code = run__check_autoload(cfg, reg);
    if (code == 0) {
        cv_log_init(a.node_id, a.level);
        if (cv_guard_setup(cfg->secret_file, cfg->insecure, 1, err, sizeof err)) { /* auth/guard.h */
            fprintf(stderr, "cverse-node: %s\n", err);
            code = 2;
        }
    }
    if (code == 0) {
        signal(SIGPIPE, SIG_IGN); /* a peer that died must not kill us through a write: libuv reports EPIPE */
        for (size_t i = 0; i < cfg->n_warnings; i++) CV_WARN("%s", cfg->warnings[i]);
        for (int i = 0; i < a.n_modules; i++) CV_INFO("loaded module %s", a.modules[i]);
        code = run(&a, cfg, reg);
    }
    cv_registry_free(reg);
    for (int i = 0; i < a.n_modules; i++) /* types are referenced by the registry: unload after it */
        if (handles[i]) dlclose(handles[i]);
    cv_config_free(cfg);
    return code;
}
