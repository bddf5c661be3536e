/* cverse-inspector: command line, config, the admin token, then the inspector's event loop until
 * SIGTERM/SIGINT. Exit codes: 0 stopped cleanly, 1 runtime failure (e.g. the port in use), 2 bad
 * arguments, config or token file. */
#include <getopt.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/guard.h"
#include "config/config.h"
#include "cverse/error.h"
#include "inspector/inspector.h"
#include "util/addr.h"
#include "util/log.h"

#ifndef CV_VERSION
#define CV_VERSION "0.0.0"
#endif
#ifndef CV_INSPECTOR_WWW_SRC
#define CV_INSPECTOR_WWW_SRC "src/inspector/www"
#endif
#ifndef CV_INSPECTOR_WWW_DATA
#define CV_INSPECTOR_WWW_DATA "/usr/local/share/cverse/inspector"
#endif

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: cverse-inspector --config FILE [--http-listen ADDR] [--log-level LEVEL]\n"
            "\n"
            "Watches a cverse cluster: polls every node of the config's HTTP API about once a second and\n"
            "serves a live web UI and a JSON API (state, shards, graph, events stream) on inspector.http_addr.\n"
            "Actions (move / pin a shard, drain a node) need a token: inspector.admin_token_file in the config\n"
            "or CVERSE_INSPECTOR_TOKEN in the environment; without one the inspector is read-only.\n"
            "\n"
            "  -c, --config FILE        cluster configuration (YAML, Goverse schema)\n"
            "  -H, --http-listen ADDR   listen here instead of inspector.http_addr (host:port, port 0: any)\n"
            "  -l, --log-level L        debug, info (default), warn, error\n"
            "      --print-http-addr    print the connectable address it would listen on and exit\n"
            "  -h, --help               show this help\n"
            "  -V, --version            show the version\n");
}

static int bad_usage(const char *msg, const char *arg)
{
    fprintf(stderr, "cverse-inspector: %s%s%s\nTry 'cverse-inspector --help'.\n", msg, arg ? ": " : "",
            arg ? arg : "");
    return 2;
}

struct args {
    const char *config, *http;
    enum cv_log_level level;
    int print_addr;
};

/* Returns -1 to continue, or an exit code. */
static int parse_args(int argc, char **argv, struct args *a)
{
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'},    {"http-listen", required_argument, 0, 'H'},
        {"log-level", required_argument, 0, 'l'}, {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},         {"print-http-addr", no_argument, 0, 'P'},
        {0, 0, 0, 0}};
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, ":c:H:l:hV", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': a->config = optarg; break;
        case 'H': a->http = optarg; break;
        case 'l':
            if (cv_log_level_parse(optarg, &a->level)) return bad_usage("unknown log level", optarg);
            break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("cverse-inspector %s\n", CV_VERSION); return 0;
        case 'P': a->print_addr = 1; break;
        case ':': return bad_usage("option needs a value", argv[optind - 1]);
        default: return bad_usage("unknown option", argv[optind - 1]);
        }
    }
    if (optind < argc) return bad_usage("unexpected argument", argv[optind]);
    if (!a->config) return bad_usage("missing --config FILE", NULL);
    return -1;
}

/* The token: CVERSE_INSPECTOR_TOKEN, else the first line of inspector.admin_token_file (relative to the
 * config file's directory). *out NULL: none. 0, or 2 with a message. */
static int load_token(const struct cv_config *cfg, const char *config_path, char **out)
{
    *out = NULL;
    const char *env = getenv("CVERSE_INSPECTOR_TOKEN");
    if (env && *env) return (*out = strdup(env)) ? 0 : 1;
    const char *file = cfg->has_inspector ? cfg->inspector.admin_token_file : NULL;
    if (!file) return 0;
    char path[1024], *dir = strdup(config_path);
    if (!dir) return 1;
    if (file[0] == '/') snprintf(path, sizeof path, "%s", file);
    else snprintf(path, sizeof path, "%s/%s", dirname(dir), file);
    free(dir);
    FILE *f = fopen(path, "r");
    char line[512] = "";
    if (!f || !fgets(line, sizeof line, f)) {
        fprintf(stderr, "cverse-inspector: inspector.admin_token_file: cannot read %s\n", path);
        if (f) fclose(f);
        return 2;
    }
    fclose(f);
    line[strcspn(line, "\r\n")] = 0;
    if (strlen(line) < 8) {
        fprintf(stderr, "cverse-inspector: %s: the token must have at least 8 characters\n", path);
        return 2;
    }
    return (*out = strdup(line)) ? 0 : 1;
}

static int run(const struct cv_config *cfg, const struct args *a, const char *token)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    const char *www[] = {getenv("CVERSE_INSPECTOR_WWW"), CV_INSPECTOR_WWW_SRC, CV_INSPECTOR_WWW_DATA, NULL};
    const char *const *dirs = www[0] ? www : www + 1;
    struct cv_inspector *in;
    struct cv_inspector_opts o = {.loop = &loop, .cfg = cfg, .http_addr = a->http, .token = token,
                                  .www_dirs = dirs, .handle_signals = true};
    int code = 0;
    if (cv_inspector_start(&o, &in)) {
        CV_ERROR("inspector failed to start");
        code = 1;
    }
    uv_run(&loop, UV_RUN_DEFAULT); /* until the inspector stopped (or, after a failed start, closed) */
    if (uv_loop_close(&loop)) CV_WARN("event loop closed with handles still open");
    if (code == 0) CV_INFO("inspector stopped");
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
        fprintf(stderr, "cverse-inspector: %s\n", err);
        return 2;
    }
    const char *listen = a.http ? a.http : cfg->has_inspector ? cfg->inspector.http_addr : "127.0.0.1:48200";
    if (a.print_addr) { /* for scripts (cluster/run-cluster.sh): where to reach the UI */
        char addr[128];
        int bad = cv_addr_connectable(listen, addr, sizeof addr);
        if (!bad) printf("%s\n", addr);
        else fprintf(stderr, "cverse-inspector: bad HTTP address %s\n", listen);
        cv_config_free(cfg);
        return bad ? 2 : 0;
    }
    char *token;
    int code = load_token(cfg, a.config, &token);
    if (code == 0) {
        cv_log_init("inspector", a.level);
        signal(SIGPIPE, SIG_IGN); /* a browser that went away must not kill us through a write */
        /* the cluster secret signs its reads of nodes and the admin actions it forwards (auth/sign.h) */
        if (cv_guard_setup(cfg->secret_file, cfg->insecure, 0, err, sizeof err)) {
            fprintf(stderr, "cverse-inspector: %s\n", err);
            code = 2;
        }
    }
    if (code == 0) {
        code = run(cfg, &a, token);
    }
    free(token);
    cv_config_free(cfg);
    return code;
}
