/* cverse-gate: command line, config, then the gate's event loop until SIGTERM/SIGINT. The gate has no
 * object types (the owner node maps JSON and Any with its own): --module and --no-builtin-types /
 * --no-demo-types are accepted so that one command line serves nodes and gates, and ignored with a
 * notice. Exit codes: 0 stopped cleanly, 1 runtime failure (e.g. a port in use), 2 bad arguments or
 * config. */
#include <getopt.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "cverse/error.h"
#include "gate/gate.h"
#include "util/log.h"

#ifndef CV_VERSION
#define CV_VERSION "0.0.0"
#endif

#define MAX_MODULES 32

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: cverse-gate --config FILE --gate-id ID [--log-level LEVEL]\n"
            "\n"
            "Runs one cverse gate: clients call objects through it (native protocol on the gate's grpc_addr,\n"
            "HTTP on its http_addr); it routes each call to the node that owns the object's shard and\n"
            "retries transparently while shards move.\n"
            "\n"
            "  -c, --config FILE     cluster configuration (YAML, Goverse schema)\n"
            "  -g, --gate-id ID      which of the config's gates this process is (--node-id ID also works,\n"
            "                        as with Goverse's gate)\n"
            "  -m, --module PATH.so  not needed any more, accepted and ignored: the gate has no object\n"
            "                        types, the node that owns an object maps JSON and Any with its\n"
            "                        types, so a gate serves every type the nodes load\n"
            "      --no-demo-types   (or --no-builtin-types) accepted and ignored, as --module: give it to\n"
            "                        the nodes (or set cluster.demo_types: false)\n"
            "  -l, --log-level L     debug, info (default), warn, error\n"
            "  -h, --help            show this help\n"
            "  -V, --version         show the version\n");
}

static int bad_usage(const char *msg, const char *arg)
{
    fprintf(stderr, "cverse-gate: %s%s%s\nTry 'cverse-gate --help'.\n", msg, arg ? ": " : "", arg ? arg : "");
    return 2;
}

struct args {
    const char *config, *gate_id;
    const char *modules[MAX_MODULES];
    int n_modules;
    bool no_builtin;
    enum cv_log_level level;
};

/* Returns -1 to continue, or an exit code. */
static int parse_args(int argc, char **argv, struct args *a)
{
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'},    {"gate-id", required_argument, 0, 'g'},
        {"node-id", required_argument, 0, 'g'},   {"module", required_argument, 0, 'm'},
        {"log-level", required_argument, 0, 'l'}, {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},         {"no-builtin-types", no_argument, 0, 'B'},
        {"no-demo-types", no_argument, 0, 'B'},   {0, 0, 0, 0}};
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, ":c:g:m:l:hV", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': a->config = optarg; break;
        case 'g': a->gate_id = optarg; break;
        case 'm':
            if (a->n_modules == MAX_MODULES) return bad_usage("too many --module options", optarg);
            a->modules[a->n_modules++] = optarg;
            break;
        case 'l':
            if (cv_log_level_parse(optarg, &a->level)) return bad_usage("unknown log level", optarg);
            break;
        case 'B': a->no_builtin = true; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("cverse-gate %s\n", CV_VERSION); return 0;
        case ':': return bad_usage("option needs a value", argv[optind - 1]);
        default: return bad_usage("unknown option", argv[optind - 1]);
        }
    }
    if (optind < argc) return bad_usage("unexpected argument", argv[optind]);
    if (!a->config) return bad_usage("missing --config FILE", NULL);
    if (!a->gate_id) return bad_usage("missing --gate-id ID", NULL);
    return -1;
}

/* The options a node needs and a gate does not: a notice each, so that a user sees the gate ignores them. */
static void note_type_options(const struct args *a)
{
    for (int i = 0; i < a->n_modules; i++)
        CV_INFO("--module %s: ignored, gates need no modules (the owner node maps JSON and Any)",
                a->modules[i]);
    if (a->no_builtin) CV_INFO("--no-demo-types: ignored, gates have no object types");
}

static int run(const struct cv_config *cfg, const struct args *a)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct cv_gate *g;
    struct cv_gate_opts o = {.loop = &loop, .cfg = cfg, .gate_id = a->gate_id,
                             .handle_signals = true};
    int rv = cv_gate_start(&o, &g), code = 0;
    if (rv) {
        CV_ERROR("gate failed to start: %s", cv_strerror(rv));
        code = 1;
    }
    uv_run(&loop, UV_RUN_DEFAULT); /* until the gate stopped (or, after a failed start, closed) */
    if (uv_loop_close(&loop)) CV_WARN("event loop closed with handles still open");
    return code;
}

int main(int argc, char **argv)
{
    struct args a = {.level = CV_LOG_INFO};
    int rv = parse_args(argc, argv, &a);
    if (rv >= 0) return rv;
    struct cv_config *cfg;
    char err[512];
    if (cv_config_load(a.config, &cfg, err, sizeof err)) {
        fprintf(stderr, "cverse-gate: %s\n", err);
        return 2;
    }
    if (!cv_config_gate(cfg, a.gate_id)) {
        fprintf(stderr, "cverse-gate: %s: no gate \"%s\" in the config (gates[].id)\n", a.config, a.gate_id);
        cv_config_free(cfg);
        return 2;
    }
    cv_log_init(a.gate_id, a.level);
    signal(SIGPIPE, SIG_IGN); /* a client that went away must not kill us through a write */
    for (size_t i = 0; i < cfg->n_warnings; i++) CV_WARN("%s", cfg->warnings[i]);
    note_type_options(&a);
    int code = run(cfg, &a);
    cv_config_free(cfg);
    return code;
}
