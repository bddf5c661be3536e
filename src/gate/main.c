/* cverse-gate: command line, config, then the gate's event loop until SIGTERM/SIGINT. The gate has no
 * object types (the owner node maps JSON and Any with its own): --no-builtin-types / --no-demo-types are
 * accepted so that one command line serves nodes and gates, and ignored with a notice; so is a --module
 * of object types. A --module exporting cverse_gate_module_init (cverse/gate.h) is a gate module: its hooks
 * (the authorise hook) are registered. The gate's tokens file (gates[].auth_tokens_file, relative to the
 * config file's directory) is read here. Exit codes: 0 stopped cleanly, 1 runtime failure (e.g. a port
 * in use), 2 bad arguments or config (a bad tokens file, a gate module that failed to initialise). */
#include <dlfcn.h>
#include <getopt.h>
#include <libgen.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/guard.h"
#include "config/config.h"
#include "cverse/error.h"
#include "gate/flagmode.h"
#include "gate/gate.h"
#include "net/httpc.h"
#include "util/log.h"

#ifndef CV_VERSION
#define CV_VERSION "0.0.0"
#endif

#define MAX_MODULES 32

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: cverse-gate --config FILE --gate-id ID [--log-level LEVEL]\n"
            "       cverse-gate --etcd HOST:PORT[,...] --listen ADDR --http-listen ADDR [--advertise ADDR]\n"
            "                   [--etcd-prefix PREFIX] [--gate-id ID] [...]\n"
            "\n"
            "Runs one cverse gate: clients call objects through it (native protocol on the gate's grpc_addr,\n"
            "HTTP on its http_addr); it routes each call to the node that owns the object's shard and\n"
            "retries transparently while shards move.\n"
            "\n"
            "  -c, --config FILE     cluster configuration (YAML, Goverse schema)\n"
            "  -g, --gate-id ID      which of the config's gates this process is (--node-id ID also works,\n"
            "                        as with Goverse's gate)\n"
            "  -m, --module PATH.so  a gate module (it exports cverse_gate_module_init: an authorise hook,\n"
            "                        docs/security.md); a module of object types is accepted and ignored:\n"
            "                        the node that owns an object maps JSON and Any with its types\n"
            "      --no-demo-types   (or --no-builtin-types) accepted and ignored, as --module: give it to\n"
            "                        the nodes (or set cluster.demo_types: false)\n"
            "  -l, --log-level L     debug, info (default), warn, error\n"
            "Without --config (Goverse's flag form, docs/discovery.md): the nodes are found in etcd.\n"
            "      --etcd EPS        etcd endpoints host:port, comma-separated (all used, with failover)\n"
            "      --etcd-prefix P   key prefix in etcd (default /cverse)\n"
            "      --listen ADDR     native protocol listen address\n"
            "      --advertise ADDR  address others dial (default: the connectable form of --listen)\n"
            "      --http-listen A   HTTP listen address\n"
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
    struct cv_gate_flags flags; /* the flag form (no --config) */
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
        {"etcd", required_argument, 0, 'E'},      {"etcd-prefix", required_argument, 0, 'P'},
        {"listen", required_argument, 0, 'L'},    {"advertise", required_argument, 0, 'A'},
        {"http-listen", required_argument, 0, 'H'}, {"no-demo-types", no_argument, 0, 'B'},
        {0, 0, 0, 0}};
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
        case 'E': a->flags.etcd = optarg; break;
        case 'P': a->flags.prefix = optarg; break;
        case 'L': a->flags.listen = optarg; break;
        case 'A': a->flags.advertise = optarg; break;
        case 'H': a->flags.http_listen = optarg; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("cverse-gate %s\n", CV_VERSION); return 0;
        case ':': return bad_usage("option needs a value", argv[optind - 1]);
        default: return bad_usage("unknown option", argv[optind - 1]);
        }
    }
    if (optind < argc) return bad_usage("unexpected argument", argv[optind]);
    a->flags.id = a->gate_id;
    if (!a->config && a->flags.etcd) { /* the flag form */
        if (!a->flags.listen) return bad_usage("missing --listen ADDR (with --etcd and no --config)", NULL);
        if (!a->flags.http_listen) return bad_usage("missing --http-listen ADDR (with --etcd and no --config)", NULL);
        return -1;
    }
    if (a->flags.listen || a->flags.advertise || a->flags.http_listen || a->flags.prefix)
        return bad_usage("--listen, --advertise, --http-listen and --etcd-prefix go with --etcd, without --config", NULL);
    if (!a->config) return bad_usage("missing --config FILE (or --etcd with --listen, --http-listen)", NULL);
    if (!a->gate_id) return bad_usage("missing --gate-id ID", NULL);
    return -1;
}

/* The options a node needs and a gate does not: a notice each, so that a user sees the gate ignores them. */
static void note_type_options(const struct args *a)
{
    if (a->no_builtin) CV_INFO("--no-demo-types: ignored, gates have no object types");
}

/* Each --module: a gate module (it exports cverse_gate_module_init) fills *hooks (at most one may); any other
 * (object types, for nodes) is ignored with a notice, as before. 0, or an exit code (2). */
static int load_modules(const struct args *a, struct cv_gate_hooks *hooks, bool *have)
{
    for (int i = 0; i < a->n_modules; i++) {
        void *h = dlopen(a->modules[i], RTLD_LAZY | RTLD_LOCAL);
        int (*init)(struct cv_gate_hooks *) = h ? (int (*)(struct cv_gate_hooks *))dlsym(h, "cverse_gate_module_init") : NULL;
        if (!init) {
            CV_INFO("--module %s: ignored, not a gate module (gates need no object types: the owner node maps "
                    "JSON and Any)", a->modules[i]);
            if (h) dlclose(h);
            continue;
        }
        if (*have) {
            fprintf(stderr, "cverse-gate: --module %s: a second gate module (expected at most one)\n", a->modules[i]);
            return 2;
        }
        int rv = init(hooks); /* the handle stays open: the hooks live in it */
        if (rv) {
            fprintf(stderr, "cverse-gate: --module %s: cverse_gate_module_init failed: %s\n", a->modules[i], cv_strerror(rv));
            return 2;
        }
        *have = true;
        CV_INFO("--module %s: gate module loaded%s", a->modules[i], hooks->authorise ? " (authorise hook)" : "");
    }
    return 0;
}

/* gates[].auth_tokens_file of gate_id (relative to the config file's directory) into *out (untouched
 * without the key). 0, or an exit code (2) with the message on stderr. */
static int load_tokens(const struct cv_config *cfg, const char *config_path, const char *gate_id,
                       struct cv_tokens *out)
{
    const struct cv_gate_cfg *g = cfg ? cv_config_gate(cfg, gate_id) : NULL;
    if (!g || !g->auth_tokens_file) return 0;
    char path[1024], err[512], *dir = strdup(config_path);
    if (!dir) return 1;
    if (g->auth_tokens_file[0] == '/') snprintf(path, sizeof path, "%s", g->auth_tokens_file);
    else snprintf(path, sizeof path, "%s/%s", dirname(dir), g->auth_tokens_file);
    free(dir);
    if (cv_tokens_load(path, out, err, sizeof err) == 0) return 0;
    fprintf(stderr, "cverse-gate: gates[%s].auth_tokens_file: %s\n", gate_id, err);
    return 2;
}

struct asked {
    bool done;
    char *yaml, *id;
};

static void on_asked(void *data, char *yaml, char *id)
{
    struct asked *r = data;
    *r = (struct asked){.done = true, .yaml = yaml, .id = id};
}

static void on_wake(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

/* The flag form: runs the loop until etcd shows a node and a registered node told the cluster's members
 * (retried every second), then parses the config made of them (*own, owned). An exit code. */
static int discover(uv_loop_t *loop, const struct args *a, uv_timer_t *pause, struct cv_members **view,
                    struct cv_config **own)
{
    struct cv_httpc *http = NULL;
    bool woke = false;
    int rv = cv_gate_flags_watch(loop, &a->flags, view);
    if (!rv) rv = cv_httpc_init(loop, &http);
    if (rv) {
        CV_ERROR("etcd: %s", cv_strerror(rv));
        return 1;
    }
    uv_timer_init(loop, pause); /* the caller's: it lives until the loop ran empty */
    pause->data = &woke;
    CV_INFO("looking for nodes in etcd (%s, prefix %s)", a->flags.etcd, a->flags.prefix ? a->flags.prefix : "/cverse");
    struct asked r = {0};
    while (!r.yaml) {
        while (!cv_members_synced(*view) || !cv_members_count(*view)) uv_run(loop, UV_RUN_ONCE);
        r = (struct asked){0};
        if (cv_gate_flags_ask(http, &a->flags, *view, on_asked, &r)) break;
        while (!r.done) uv_run(loop, UV_RUN_ONCE);
        if (r.yaml) break;
        woke = false; /* no registered node answered: ask again in a second */
        uv_timer_start(pause, on_wake, 1000, 0);
        while (!woke) uv_run(loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)pause, NULL);
    cv_httpc_close(http, NULL, NULL);
    char err[512];
    rv = r.yaml ? cv_config_parse(r.yaml, strlen(r.yaml), "(flags and etcd)", own, err, sizeof err) : CV_ENOMEM;
    if (rv) CV_ERROR("config from flags and etcd: %s", r.yaml ? err : "out of memory");
    else cv_log_init(r.id, a->level);
    if (!rv) CV_INFO("gate %s: %zu nodes, from %zu registered in etcd", r.id, (*own)->n_nodes, cv_members_count(*view));
    free(r.yaml);
    free(r.id);
    return rv ? 2 : 0;
}

static void stopped(void *data)
{
    struct cv_members *view = data;
    if (view) cv_members_close(view, NULL, NULL); /* the loop then runs empty */
}

static int run(const struct cv_config *cfg, const struct args *a, struct cv_tokens *tokens,
               const struct cv_gate_hooks *hooks)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct cv_gate *g;
    struct cv_members *view = NULL;
    struct cv_config *own = NULL;
    uv_timer_t pause;
    int code = cfg ? 0 : discover(&loop, a, &pause, &view, &own);
    if (!cfg) cfg = own;
    struct cv_gate_opts o = {.loop = &loop, .cfg = cfg, .gate_id = own ? own->gates[0].id : a->gate_id,
                             .handle_signals = true, .version = CV_VERSION, .exit_code = &code,
                             .tokens = tokens, .hooks = hooks, .on_stopped = stopped, .data = view};
    int rv = code ? 0 : cv_gate_start(&o, &g);
    if (rv) {
        CV_ERROR("gate failed to start: %s", cv_strerror(rv));
        code = rv == CV_ECONFIG ? 2 : 1; /* a certificate that does not load: as a config error */
    }
    if ((rv || code) && view) cv_members_close(view, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT); /* until the gate stopped (or, after a failed start, closed) */
    if (uv_loop_close(&loop)) CV_WARN("event loop closed with handles still open");
    cv_config_free(own);
    return code;
}

int main(int argc, char **argv)
{
    struct args a = {.level = CV_LOG_INFO};
    int rv = parse_args(argc, argv, &a);
    if (rv >= 0) return rv;
    struct cv_config *cfg = NULL;
    char err[512];
    if (a.config && cv_config_load(a.config, &cfg, err, sizeof err)) {
        fprintf(stderr, "cverse-gate: %s\n", err);
        return 2;
    }
    if (cfg && !cv_config_gate(cfg, a.gate_id)) {
        fprintf(stderr, "cverse-gate: %s: no gate \"%s\" in the config (gates[].id)\n", a.config, a.gate_id);
        cv_config_free(cfg);
        return 2;
    }
    cv_log_init(a.gate_id ? a.gate_id : "gate", a.level);
    /* its node connections authenticate with the cluster secret; its own ports are client-facing */
    if (cv_guard_setup(cfg ? cfg->secret_file : NULL, 0, 0, err, sizeof err)) {
        fprintf(stderr, "cverse-gate: %s\n", err);
        cv_config_free(cfg);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN); /* a client that went away must not kill us through a write */
    for (size_t i = 0; cfg && i < cfg->n_warnings; i++) CV_WARN("%s", cfg->warnings[i]);
    note_type_options(&a);
    struct cv_tokens tokens = {0};
    struct cv_gate_hooks hooks = {0};
    bool have_hooks = false;
    int code = load_tokens(cfg, a.config, a.gate_id, &tokens);
    if (!code) code = load_modules(&a, &hooks, &have_hooks);
    if (!code) code = run(cfg, &a, tokens.n ? &tokens : NULL, have_hooks ? &hooks : NULL);
    cv_tokens_free(&tokens); /* emptied by the gate if it took them */
    cv_config_free(cfg);
    return code;
}
