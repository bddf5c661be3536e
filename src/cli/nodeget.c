/* cverse node-get PATH: GETs PATH (with its query) from a node's HTTP API and prints the body, as
 * `curl -s http://NODE/PATH` did before nodes with a cluster secret refused unsigned reads: the request is
 * signed with $CVERSE_CLUSTER_SECRET_FILE when it is set (cli/nodehttp.h), so scripts
 * (cluster/rolling-restart.sh, scripts/idle-cpu.sh, scripts/failover-bench.sh) and operators read
 * /v1/cluster, /v1/shards, /v1/objects, /v1/events, /v1/stats... the same way with or without a secret.
 *
 * Happy path: the node is --node (or --node-http) HOST:PORT, else the URL's HOST:PORT, else
 * $CVERSE_NODE_HTTP, else localhost:48001; one GET with Connection: close; a 2xx answer's body goes to
 * stdout as sent (a newline added if it has none).
 * Failure modes: bad usage (a PATH that does not start with "/", an https:// URL, a node both in the URL and
 * in --node, a bad --timeout or address) one line and the usage on stderr, exit 2; cannot connect exit 3;
 * another status exit 1 with the node's error ("cverse: CODE: message") and, for 401, what to set. */
#include "cli/nodeget.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "auth/secret.h"
#include "cli/nodehttp.h"
#include "cverse/error.h"
#include "util/addr.h"

#define NODEGET_HELP                                                                                          \
    "  --node HOST:PORT  the node's HTTP API (http_addr; --node-http is the same); default the URL's\n"        \
    "                    HOST:PORT, else $CVERSE_NODE_HTTP, else localhost:48001 (numeric host or localhost)\n" \
    "  --timeout MS      how long to wait for the whole answer, 1..3600000 (default 30000)\n"                  \
    "PATH is the request target with its query, e.g. /v1/cluster, /v1/objects?type=Chat, '/v1/events?after=0'.\n" \
    "With $CVERSE_CLUSTER_SECRET_FILE set, the request is signed with that cluster secret (nodes with a secret\n" \
    "answer only signed requests, but /health, /ready and /metrics; docs/security.md). The body is printed\n"    \
    "as the node sent it.\n"                                                                                   \
    "Example: cverse node-get --node 127.0.0.1:48001 /v1/cluster | jq .leader\n"                               \
    "Exit codes: 0 ok (2xx), 1 the node answered an error (it goes to stderr), 2 usage error, 3 cannot\n"      \
    "connect to the node.\n"

#define NODEGET_MAX_MS 3600000ul

struct nodeget_opts {
    const char *node; /* --node */
    unsigned long timeout_ms;
    const char *arg;  /* PATH or URL */
    char addr[256];   /* the node */
    const char *target;
};

static int nodeget__usage(const char *fmt, ...)
{
    va_list ap;
    fputs("cverse node-get: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nUsage: cverse node-get " CV_CLI_NODEGET_ARGS "\n", stderr);
    return 2;
}

/* One option at argv[*i]; 0, 1 (--help shown) or 2 (usage printed). */
static int nodeget__opt(int argc, char **argv, int *i, struct nodeget_opts *o)
{
    const char *a = argv[*i], *eq = strchr(a, '=');
    size_t n = eq ? (size_t)(eq - a) : strlen(a);
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
        fputs("Usage: cverse node-get " CV_CLI_NODEGET_ARGS "\n" NODEGET_HELP, stdout);
        return 1;
    }
    bool node = (n == 6 && !strncmp(a, "--node", n)) || (n == 11 && !strncmp(a, "--node-http", n));
    if (!node && !(n == 9 && !strncmp(a, "--timeout", n))) return nodeget__usage("unknown option '%s'", a);
    if (!eq && *i + 1 == argc) return nodeget__usage("%.*s needs a value", (int)n, a);
    const char *val = eq ? eq + 1 : argv[++*i];
    if (node) {
        o->node = val;
        return 0;
    }
    char *end;
    errno = 0;
    o->timeout_ms = val[0] >= '0' && val[0] <= '9' ? strtoul(val, &end, 10) : 0;
    if (!o->timeout_ms || *end || errno || o->timeout_ms > NODEGET_MAX_MS)
        return nodeget__usage("--timeout must be a number of milliseconds from 1 to %lu, got '%s'", NODEGET_MAX_MS, val);
    return 0;
}

/* The node and the target from the argument and the options; 0 or 2 (usage printed). */
static int nodeget__where(struct nodeget_opts *o)
{
    const char *env = getenv("CVERSE_NODE_HTTP"), *from = o->node ? "--node" : "$CVERSE_NODE_HTTP";
    struct sockaddr_storage ss;
    o->target = o->arg;
    if (!strncmp(o->arg, "https://", 8)) return nodeget__usage("nodes' HTTP API is plain http://, got '%s'", o->arg);
    if (!strncmp(o->arg, "http://", 7)) {
        const char *host = o->arg + 7, *slash = host + strcspn(host, "/?#");
        if (o->node) return nodeget__usage("the node is given twice: in '%s' and with --node", o->arg);
        if (slash == host || (size_t)(slash - host) >= sizeof o->addr)
            return nodeget__usage("no HOST:PORT in '%s'", o->arg);
        snprintf(o->addr, sizeof o->addr, "%.*s", (int)(slash - host), host);
        from = "the URL";
        o->target = *slash == '/' ? slash : NULL;
    } else {
        snprintf(o->addr, sizeof o->addr, "%s", o->node ? o->node : env && *env ? env : "localhost:48001");
    }
    if (!o->target || o->target[0] != '/')
        return nodeget__usage("PATH must start with '/' (like /v1/cluster), or be http://HOST:PORT/PATH; got '%s'",
                              o->arg);
    for (const char *p = o->target; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f || *p == '#')
            return nodeget__usage("PATH must not contain spaces, control characters or '#' (percent-encode them): '%s'",
                                  o->target);
    if (cv_addr_resolve(o->addr, &ss) != 0)
        return nodeget__usage("%s must be HOST:PORT with a numeric host or localhost, got '%s'", from, o->addr);
    return 0;
}

/* A refusal: the node's JSON error on stderr, with what to do about a 401. */
static int nodeget__refused(const struct nodeget_opts *o, const struct cv_cli_http_answer *a)
{
    json_t *j = json_loadb(a->body, a->len, 0, NULL);
    const char *code = json_string_value(json_object_get(j, "code")), *msg = json_string_value(json_object_get(j, "error"));
    fprintf(stderr, "cverse: %s: %s\n", code ? code : "HTTP", msg ? msg : a->len ? a->body : "(no body)");
    if (!code) fprintf(stderr, "cverse: the node at %s answered HTTP %d\n", o->addr, a->status);
    if (a->status == 401 && !cv_secret_path(NULL))
        fprintf(stderr, "hint: the node has a cluster secret: set %s to its file (cluster/run-cluster.sh\n"
                        "      prints it; the config's cluster.secret_file).\n", CV_SECRET_ENV);
    else if (a->status == 401)
        fprintf(stderr, "hint: is %s the cluster's secret, and this machine's clock within 60 s of the node's?\n",
                CV_SECRET_ENV);
    json_decref(j);
    return 1;
}

int cv_cli_node_get(const struct command *cmd, int argc, char **argv)
{
    (void)cmd;
    struct nodeget_opts o = {.timeout_ms = 30000};
    bool opts_done = false;
    for (int i = 1; i < argc; i++) {
        int rv = 0;
        if (!opts_done && !strcmp(argv[i], "--")) opts_done = true;
        else if (!opts_done && argv[i][0] == '-' && argv[i][1]) rv = nodeget__opt(argc, argv, &i, &o);
        else if (o.arg) return nodeget__usage("unexpected argument '%s'", argv[i]);
        else o.arg = argv[i];
        if (rv) return rv == 1 ? 0 : rv;
    }
    if (!o.arg || !*o.arg) return nodeget__usage(o.arg ? "PATH must not be empty" : "missing PATH");
    int rv = nodeget__where(&o);
    if (rv) return rv;
    struct cv_cli_http_answer a;
    rv = cv_cli_http_request(o.addr, "GET", o.target, NULL, (unsigned)o.timeout_ms, &a);
    if (rv == CV_EUNAVAIL || (rv == CV_EINVAL && !cv_secret_path(NULL))) {
        fprintf(stderr, "cverse: cannot connect to the node at %s: %s\n"
                        "hint: is the node running? Point --node (or $CVERSE_NODE_HTTP) at a running node's http_addr.\n",
                o.addr, rv == CV_EUNAVAIL ? strerror(errno) : "bad address");
        return 3;
    }
    if (rv != 0) {
        if (rv != CV_EINVAL) /* CV_EINVAL: the secret file's problem is printed already */
            fprintf(stderr, "cverse: %s: %s\n", cv_err_status(rv),
                    rv == CV_ETIMEDOUT ? "no answer from the node in time" : cv_strerror(rv));
        return 1;
    }
    int code = a.status == 304 || (a.status >= 200 && a.status < 300) ? 0 : nodeget__refused(&o, &a);
    if (code == 0) {
        fwrite(a.body, 1, a.len, stdout);
        if (a.len && a.body[a.len - 1] != '\n') fputc('\n', stdout);
        if (fflush(stdout)) code = 1, fprintf(stderr, "cverse: cannot write the output: %s\n", strerror(errno));
    }
    free(a.body);
    return code;
}
