/* cverse-node: command line parsing, config loading, then the node's event loop until it stops.
 * Exit codes: 0 stopped cleanly, 1 runtime failure (e.g. a port in use), 2 bad arguments or config. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "cverse/error.h"
#include "node/node.h"
#include "util/log.h"

#ifndef CV_VERSION
#define CV_VERSION "0.0.0"
#endif

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: cverse-node --config FILE --node-id ID [--data-dir DIR] [--log-level LEVEL]\n"
            "       cverse-node --config FILE --list-nodes\n"
            "\n"
            "Runs one cverse node: a member of the cluster's raft group that holds the catalog\n"
            "(node registry, shard map, leases, objects) and serves the node HTTP API.\n"
            "\n"
            "  -c, --config FILE     cluster configuration (YAML, Goverse schema)\n"
            "  -n, --node-id ID      which of the config's nodes this process is\n"
            "  -d, --data-dir DIR    data directory of this node (default: <cluster.data_dir>/<ID>)\n"
            "  -l, --log-level L     debug, info (default), warn, error\n"
            "      --list-nodes      print \"ID HTTP_ADDR\" for every node in the config and exit\n"
            "  -h, --help            show this help\n"
            "  -V, --version         show the version\n");
}

static int bad_usage(const char *msg, const char *arg)
{
    fprintf(stderr, "cverse-node: %s%s%s\nTry 'cverse-node --help'.\n", msg, arg ? ": " : "",
            arg ? arg : "");
    return 2;
}

struct args {
    const char *config, *node_id, *data_dir;
    enum cv_log_level level;
    int list_nodes;
};

static int parse_level(const char *s, enum cv_log_level *out)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, names[i])) {
            *out = (enum cv_log_level)i;
            return 0;
        }
    return -1;
}

/* Returns -1 to continue, or an exit code. */
static int parse_args(int argc, char **argv, struct args *a)
{
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'},   {"node-id", required_argument, 0, 'n'},
        {"data-dir", required_argument, 0, 'd'}, {"log-level", required_argument, 0, 'l'},
        {"list-nodes", no_argument, 0, 'L'},     {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},        {0, 0, 0, 0}};
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, ":c:n:d:l:hV", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': a->config = optarg; break;
        case 'n': a->node_id = optarg; break;
        case 'd': a->data_dir = optarg; break;
        case 'l':
            if (parse_level(optarg, &a->level)) return bad_usage("unknown log level", optarg);
            break;
        case 'L': a->list_nodes = 1; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("cverse-node %s\n", CV_VERSION); return 0;
        case ':': return bad_usage("option needs a value", argv[optind - 1]);
        default: return bad_usage("unknown option", argv[optind - 1]);
        }
    }
    if (optind < argc) return bad_usage("unexpected argument", argv[optind]);
    if (!a->config) return bad_usage("missing --config FILE", NULL);
    if (!a->list_nodes && !a->node_id) return bad_usage("missing --node-id ID", NULL);
    return -1;
}

int main(int argc, char **argv)
{
    struct args a = {.level = CV_LOG_INFO};
    int rv = parse_args(argc, argv, &a);
    if (rv >= 0) return rv;
    struct cv_config *cfg;
    char err[512];
    if (cv_config_load(a.config, &cfg, err, sizeof err)) {
        fprintf(stderr, "cverse-node: %s\n", err);
        return 2;
    }
    if (a.list_nodes) {
        for (size_t i = 0; i < cfg->n_nodes; i++) printf("%s %s\n", cfg->nodes[i].id, cfg->nodes[i].http_addr);
        cv_config_free(cfg);
        return 0;
    }
    if (!cv_config_node(cfg, a.node_id)) {
        fprintf(stderr, "cverse-node: %s: no node \"%s\" in the config (nodes[].id)\n", a.config, a.node_id);
        cv_config_free(cfg);
        return 2;
    }
    cv_log_init(a.node_id, a.level);
    signal(SIGPIPE, SIG_IGN); /* a peer that died must not kill us through a write: libuv reports EPIPE */
    for (size_t i = 0; i < cfg->n_warnings; i++) CV_WARN("%s", cfg->warnings[i]);
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct cv_node node;
    struct cv_node_opts o = {.loop = &loop, .cfg = cfg, .node_id = a.node_id, .data_dir = a.data_dir};
    int code = 0;
    if ((rv = cv_node_start(&node, &o))) {
        CV_ERROR("node failed to start: %s", cv_strerror(rv));
        code = 1;
        cv_node_stop(&node);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    cv_node_free(&node);
    if (uv_loop_close(&loop)) CV_WARN("event loop closed with handles still open");
    cv_config_free(cfg);
    return code;
}
