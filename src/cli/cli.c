/* cverse: the command-line tool. `cverse <command> [options] [args]`, one entry per command in a table.
 *
 * Happy path: find the command in the table, let it parse its own options and run, exit with its code.
 * The gate commands (call, create, delete, status, shards) connect to a gate's native port (--gate,
 * else $CVERSE_GATE, else localhost:47101) with the client library, make one call and print the
 * result: JSON for call, a human table or (--json) one line of JSON for the others.
 * Failure modes, each with its own exit code: bad usage (unknown command or flag, missing or extra
 * argument, invalid value) prints one line naming the problem and a usage hint on stderr and exits 2;
 * no connection to the gate prints why and how to start one, exit 3; a call the cluster answered with
 * an error (or that timed out, or whose connection broke) prints "cverse: CODE: message" and a hint
 * where one is true, exit 1; an application error of the object prints its own code and message only. --help output goes to stdout and exits 0.
 * The node commands (drain) POST to a node's HTTP API instead (--node-http, else $CVERSE_NODE_HTTP, else
 * localhost:48001); any node will do, it proposes to the raft leader. Exit 3 when it cannot connect. */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cli/jsonout.h"
#include "cli/dial.h"
#include "cli/token.h"
#include "cli/listen.h"
#include "cli/nodeget.h"
#include "cli/nodehttp.h"
#include "cli/remove.h"
#include "core/hash.h"
#include "cverse/client.h"
#include "cverse/error.h"
#include "util/addr.h"

#ifndef CV_VERSION
#define CV_VERSION "unknown"
#endif

#define EXIT_FAILED 1     /* the call failed: remote error, timeout, connection lost */
#define EXIT_USAGE 2
#define EXIT_NO_GATE 3    /* could not connect to the gate */
#define DEFAULT_SHARDS 8192u
#define MAX_SHARDS 1048576u
#define DEFAULT_GATE "localhost:47101"
#define DEFAULT_NODE_HTTP "localhost:48001"
#define DEFAULT_TIMEOUT_MS 30000u
#define MAX_TIMEOUT_MS 3600000u
#define SHARD_OF_TIMEOUT_MS 1000u /* shard-of asks a gate for the shard count this long at most */
#define HELP_SHOWN (-1) /* option parsers: --help was printed, exit 0 */

struct command {
    const char *name;
    const char *args;    /* usage after the command name */
    const char *summary; /* one line for `cverse --help` */
    const char *details; /* extra text for `cverse <command> --help`, may be NULL */
    int (*run)(const struct command *cmd, int argc, char **argv); /* argv[0] is the command name */
};

static int cmd_shard_of(const struct command *cmd, int argc, char **argv);
static int cmd_call(const struct command *cmd, int argc, char **argv);
static int cmd_create(const struct command *cmd, int argc, char **argv);
static int cmd_delete(const struct command *cmd, int argc, char **argv);
static int cmd_status(const struct command *cmd, int argc, char **argv);
static int cmd_shards(const struct command *cmd, int argc, char **argv);
static int cmd_drain(const struct command *cmd, int argc, char **argv);

#define GATE_OPTS_HELP                                                                              \
    "  --gate HOST:PORT  the gate's native address (grpc_addr); default $CVERSE_GATE, then\n"        \
    "                    " DEFAULT_GATE " (numeric host or localhost)\n"                             \
    "  --token-file F    the gate's client token (first line of F); default $CVERSE_TOKEN_FILE\n"     \
    "  --tls             TLS to the gate (its certificate checked against the system's CAs)\n"        \
    "  --ca FILE         TLS, with the CAs of FILE (PEM); default $CVERSE_CA_FILE (implies --tls)\n"   \
    "  --timeout MS      how long to wait for the answer, 1..3600000 (default 30000)\n"
#define EXIT_CODES_HELP                                                                             \
    "Exit codes: 0 ok, 1 the call failed (the error, and a hint where one helps, go to stderr),\n"    \
    "2 usage error, 3 cannot connect to the gate.\n"

static const struct command commands[] = {
    {"call", "[--gate HOST:PORT] [--timeout MS] [--json] [--call-id ID] TYPE ID METHOD ['{JSON}']",
     "call a method of an object and print the JSON response",
     GATE_OPTS_HELP
     "  --json            print the response on one line, exactly as the gate sent it\n"
     "  --call-id ID      a reliable call id: run again with the same ID, the call is answered from the\n"
     "                    object's record instead of running twice (exactly-once; docs/durable-state.md)\n"
     "The request is the method's request message in proto3 JSON (default {}); int64 fields may be\n"
     "given as strings and are printed as strings. A new ID of a known TYPE is created by its first\n"
     "call ('cverse create' creates one ahead).\n"
     "Example: cverse call SimpleCounter Counter-001 Increment '{}'\n" EXIT_CODES_HELP,
     cmd_call},
    {"create", "[--gate HOST:PORT] [--timeout MS] [--json] TYPE ID", "create an object (idempotent)",
     GATE_OPTS_HELP "  --json            print {\"id\":ID} instead of a sentence\n" EXIT_CODES_HELP,
     cmd_create},
    {"delete", "[--gate HOST:PORT] [--timeout MS] [--json] TYPE ID", "delete an object (idempotent)",
     GATE_OPTS_HELP "  --json            print {\"success\":true} instead of a sentence\n" EXIT_CODES_HELP,
     cmd_delete},
    {"status", "[--gate HOST:PORT] [--timeout MS] [--json]",
     "show the cluster as a gate sees it: nodes, roles, leader, shards, gates",
     GATE_OPTS_HELP
     "  --json            one JSON object: gate_id, applied_index, term, shards, unassigned_shards,\n"
     "                    leader, nodes [{id, role, alive, shards, leader, advertise_addr,\n"
     "                    http_addr}], gates [{id, grpc_addr, http_addr, connected}]\n" EXIT_CODES_HELP,
     cmd_status},
    {"shards", "[--gate HOST:PORT] [--timeout MS] [--json]",
     "show which node owns each shard (ranges per node)",
     GATE_OPTS_HELP
     "  --json            {\"applied_index\":N,\"shards\":N,\"owners\":[...]}: the owner of every shard\n"
     "                    by index, null if unassigned\n" EXIT_CODES_HELP,
     cmd_shards},
    {"drain", "[--node-http HOST:PORT] [--timeout MS] [--json] [--undo] NODE",
     "drain a node (its shards move to the others; it takes none) or, with --undo, undrain it",
     "  --node-http HOST:PORT  any node's HTTP API (http_addr); default $CVERSE_NODE_HTTP, then\n"
     "                    " DEFAULT_NODE_HTTP " (numeric host or localhost)\n"
     "  --timeout MS      how long to wait for the answer, 1..3600000 (default 30000)\n"
     "  --undo            stop draining NODE: it takes shards again\n"
     "  --json            print the node's answer {\"index\":N} instead of a sentence\n"
     "An operator's drain persists across NODE's restarts until --undo. The leader moves NODE's shards\n"
     "away one by one (two-phase: calls keep being served); watch with 'cverse status'. To stop a node\n"
     "gracefully send it SIGTERM instead: it drains itself, then exits.\n"
     "Exit codes: 0 ok, 1 the node refused (the error goes to stderr), 2 usage error, 3 cannot connect\n"
     "to the node.\n",
     cmd_drain},
    {"remove-node", CV_CLI_REMOVE_ARGS, CV_CLI_REMOVE_SUMMARY, NULL, cv_cli_remove_node},
    {"node-get", CV_CLI_NODEGET_ARGS, CV_CLI_NODEGET_SUMMARY, NULL, cv_cli_node_get},
    {"shard-of", "[--shards N] [--gate HOST:PORT] [--timeout MS] OBJECT-ID", "print the shard an object id maps to",
     "  --shards N        number of shards in the cluster, 1..1048576; without it the gate (--gate, else\n"
     "                    $CVERSE_GATE, else " DEFAULT_GATE ") is asked, and if none answers within\n"
     "                    --timeout MS (default 1000) 8192 is assumed, with a note on stderr\n"
     "An id \"shard#N/rest\" is on shard N; \"NODE/rest\" is pinned to node NODE (the hash shard is\n"
     "printed and a note goes to stderr); any other id is on shard fnv1a32(id) % N.\n",
     cmd_shard_of},
    {"listen", CV_CLI_LISTEN_ARGS, CV_CLI_LISTEN_SUMMARY, CV_CLI_LISTEN_HELP, cv_cli_listen},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void print_usage(FILE *f)
{
    fprintf(f, "Usage: cverse [options] <command> [options] [args]\n"
               "       cverse --help | --version\n\nCommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nThe commands that talk to the cluster use a gate's native port: --gate HOST:PORT, else\n"
               "$CVERSE_GATE, else " DEFAULT_GATE "; drain, remove-node and node-get use a node's HTTP API\n"
               "(--node-http), signed with $CVERSE_CLUSTER_SECRET_FILE when it is set.\n"
               "Start a local cluster with cluster/run-cluster.sh.\n"
               "Run 'cverse <command> --help' for a command's options.\n");
}

static void print_cmd_usage(FILE *f, const struct command *cmd)
{
    fprintf(f, "Usage: cverse %s %s\n", cmd->name, cmd->args);
}

/* One line saying what is wrong, then how to get it right; returns the usage exit code. */
static int usage_error(const struct command *cmd, const char *fmt, ...)
{
    va_list ap;

    if (cmd)
        fprintf(stderr, "cverse %s: ", cmd->name);
    else
        fputs("cverse: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (cmd)
        print_cmd_usage(stderr, cmd);
    else
        fprintf(stderr, "Try 'cverse --help'.\n");
    return EXIT_USAGE;
}

/* Strict decimal: digits only (no sign, spaces or suffix), within [min, max]. */
static int parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
    char *end;
    unsigned long long v;

    if (s[0] < '0' || s[0] > '9') return CV_EINVAL;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (*end != '\0') return CV_EINVAL;
    if (errno == ERANGE || v < min || v > max) return CV_ERANGE;
    *out = (uint32_t)v;
    return 0;
}

struct shard_of_opts {
    uint32_t shards;   /* 0: not given, ask the gate */
    const char *gate;  /* --gate, NULL if not given */
    uint32_t timeout_ms;
    const char *id;
};

static int opt_value(const struct command *cmd, int argc, char **argv, int *i, const char *name,
                     const char **val);

/* --help of a command: its usage and details on stdout. */
static int show_help(const struct command *cmd)
{
    print_cmd_usage(stdout, cmd);
    fputs(cmd->details, stdout);
    return HELP_SHOWN;
}

/* --timeout MS at argv[*i]: -1 if it is another argument, 0 consumed into *out, else a usage exit code. */
static int opt_timeout(const struct command *cmd, int argc, char **argv, int *i, uint32_t *out)
{
    const char *val;
    int m = opt_value(cmd, argc, argv, i, "--timeout", &val);
    if (m == 0) return -1;
    if (m < 0) return EXIT_USAGE;
    if (parse_u32(val, 1, MAX_TIMEOUT_MS, out) != 0)
        return usage_error(cmd, "--timeout must be a number of milliseconds from 1 to %u, got '%s'", MAX_TIMEOUT_MS,
                           val);
    return 0;
}

/* One option of shard-of at argv[*i]: 0 consumed, HELP_SHOWN, or a usage exit code. */
static int shard_of_opt(const struct command *cmd, int argc, char **argv, int *i, struct shard_of_opts *o)
{
    const char *val;
    int m;
    if (strcmp(argv[*i], "--help") == 0 || strcmp(argv[*i], "-h") == 0) return show_help(cmd);
    if ((m = opt_value(cmd, argc, argv, i, "--gate", &val)) != 0) {
        o->gate = val;
        return m < 0 ? EXIT_USAGE : 0;
    }
    if ((m = opt_timeout(cmd, argc, argv, i, &o->timeout_ms)) >= 0) return m;
    if ((m = opt_value(cmd, argc, argv, i, "--shards", &val)) != 0) {
        if (m < 0) return EXIT_USAGE;
        if (parse_u32(val, 1, MAX_SHARDS, &o->shards) != 0)
            return usage_error(cmd, "--shards must be an integer from 1 to %u, got '%s'", MAX_SHARDS, val);
        return 0;
    }
    return usage_error(cmd, "unknown option '%s'", argv[*i]);
}

static int shard_of_opts_parse(const struct command *cmd, int argc, char **argv, struct shard_of_opts *o)
{
    int opts_done = 0;
    *o = (struct shard_of_opts){.timeout_ms = SHARD_OF_TIMEOUT_MS};
    for (int i = 1; i < argc; i++) {
        if (!opts_done && strcmp(argv[i], "--") == 0) {
            opts_done = 1;
        } else if (!opts_done && argv[i][0] == '-' && argv[i][1] != '\0') {
            int rv = shard_of_opt(cmd, argc, argv, &i, o);
            if (rv) return rv;
        } else if (o->id) {
            return usage_error(cmd, "unexpected argument '%s'", argv[i]);
        } else {
            o->id = argv[i];
        }
    }
    if (!o->id) return usage_error(cmd, "missing OBJECT-ID");
    return 0;
}

/* Why cv_placement_parse() said CV_EINVAL, in words. */
static const char *placement_problem(const char *id)
{
    if (id[0] == '\0') return "it is empty";
    if (strncmp(id, "shard#", 6) == 0) return "expected shard#N/NAME with N a decimal number";
    return "the node name before '/' is empty";
}

static int gate_shards(const char *gate, unsigned timeout_ms, uint32_t *shards, char *why, size_t len);

/* The shard count to hash with: --shards, else the gate's (when one answers), else the default with a
 * note (only when the id is hashed: an explicit shard#N needs no count beyond its range check). */
static uint32_t shard_of_count(const struct shard_of_opts *o, bool hashed)
{
    if (o->shards) return o->shards;
    const char *env = getenv("CVERSE_GATE");
    const char *gate = o->gate ? o->gate : env && *env ? env : DEFAULT_GATE;
    char why[256];
    uint32_t shards;
    if (gate_shards(gate, o->timeout_ms, &shards, why, sizeof why) == 0) return shards;
    if (hashed)
        fprintf(stderr, "note: no shard count from a gate at %s (%s); assuming %u shards (give --shards N)\n",
                gate, why, DEFAULT_SHARDS);
    return DEFAULT_SHARDS;
}

static int cmd_shard_of(const struct command *cmd, int argc, char **argv)
{
    struct shard_of_opts o;
    struct cv_placement pl;
    int rv = shard_of_opts_parse(cmd, argc, argv, &o);

    if (rv != 0) return rv == HELP_SHOWN ? 0 : rv;
    const char *id = o.id;
    if (o.gate) {
        struct sockaddr_storage ss;
        if (cv_addr_resolve(o.gate, &ss) != 0)
            return usage_error(cmd, "--gate must be HOST:PORT with a numeric host or localhost, got '%s'",
                               o.gate);
    }
    bool hashed = cv_placement_parse(id, MAX_SHARDS, &pl) == 0 && pl.kind != CV_PLACE_SHARD;
    uint32_t shards = shard_of_count(&o, hashed);
    rv = cv_placement_parse(id, shards, &pl);
    if (rv == CV_ERANGE)
        return usage_error(cmd, "shard number in '%s' is out of range (shards: %u)", id, shards);
    if (rv != 0) return usage_error(cmd, "invalid object id '%s': %s", id, placement_problem(id));
    if (pl.kind == CV_PLACE_NODE)
        fprintf(stderr, "note: '%s' is pinned to node '%.*s'; printing the shard its id hashes to\n", id,
                (int)pl.node_len, pl.node);
    printf("%u\n", pl.shard);
    return fflush(stdout) == 0 ? 0 : 1;
}

/* ---- commands that talk to a gate ------------------------------------------------------------------ */

#define MAX_POSITIONAL 4

struct gate_opts {
    const char *gate;        /* HOST:PORT */
    uint32_t timeout_ms;
    int json;                /* --json: machine-readable output */
    const char *call_id;     /* call --call-id: a reliable call id, NULL if none */
    const char *token_file;  /* --token-file, NULL: $CVERSE_TOKEN_FILE (cli/token.h) */
    struct cv_cli_tls tls;   /* --tls, --ca FILE (cli/dial.h) */
    char *args[MAX_POSITIONAL];
    int n_args;
};

/* If argv[*i] is option name ("--name V" or "--name=V"): 1 and *val (advancing *i past a separate
 * value). 0 if it is another argument; -1 (usage printed) if the value is missing. */
static int opt_value(const struct command *cmd, int argc, char **argv, int *i, const char *name,
                     const char **val)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0) return 0;
    if (argv[*i][n] == '=') {
        *val = argv[*i] + n + 1;
        return 1;
    }
    if (argv[*i][n] != '\0') return 0;
    if (++*i == argc) {
        usage_error(cmd, "%s needs a value", name);
        return -1;
    }
    *val = argv[*i];
    return 1;
}

/* Where to find the gate: --gate wins, then $CVERSE_GATE, then the default. Must resolve locally. */
static int gate_addr_check(const struct command *cmd, struct gate_opts *o, int from_flag)
{
    struct sockaddr_storage ss;
    if (!from_flag) {
        const char *env = getenv("CVERSE_GATE");
        o->gate = env && *env ? env : DEFAULT_GATE;
        if (cv_addr_resolve(o->gate, &ss) != 0)
            return usage_error(cmd, "$CVERSE_GATE must be HOST:PORT with a numeric host or localhost, "
                                    "got '%s'", o->gate);
        return 0;
    }
    if (cv_addr_resolve(o->gate, &ss) != 0)
        return usage_error(cmd, "--gate must be HOST:PORT with a numeric host or localhost, got '%s'",
                           o->gate);
    return 0;
}

/* One option of a gate command at argv[*i]: 0 consumed, HELP_SHOWN, or a usage exit code. */
static int gate_opt(const struct command *cmd, int argc, char **argv, int *i, struct gate_opts *o,
                    int *gate_flag)
{
    const char *val;
    int m;
    if (strcmp(argv[*i], "--help") == 0 || strcmp(argv[*i], "-h") == 0) return show_help(cmd);
    if (strcmp(argv[*i], "--json") == 0) {
        o->json = 1;
        return 0;
    }
    if ((m = opt_value(cmd, argc, argv, i, "--gate", &val)) != 0) {
        if (m < 0) return EXIT_USAGE;
        o->gate = val;
        *gate_flag = 1;
        return 0;
    }
    if ((m = opt_timeout(cmd, argc, argv, i, &o->timeout_ms)) >= 0) return m;
    if ((m = opt_value(cmd, argc, argv, i, "--token-file", &o->token_file)) != 0) return m < 0 ? EXIT_USAGE : 0;
    if (strcmp(argv[*i], "--tls") == 0) return o->tls.tls = 1, 0;
    if ((m = opt_value(cmd, argc, argv, i, "--ca", &o->tls.ca_file)) != 0) return m < 0 ? EXIT_USAGE : 0;
    if (strcmp(cmd->name, "call") == 0 && (m = opt_value(cmd, argc, argv, i, "--call-id", &val)) != 0) {
        if (m < 0) return EXIT_USAGE;
        if (!*val || strlen(val) > 128)
            return usage_error(cmd, "--call-id must be 1 to 128 bytes, got '%s'", val);
        o->call_id = val;
        return 0;
    }
    return usage_error(cmd, "unknown option '%s'", argv[*i]);
}

/* Options and positional arguments in any order ("--" ends the options). names[k] names the k-th
 * positional argument in messages; the first min of them are required. */
static int gate_opts_parse(const struct command *cmd, int argc, char **argv, const char *const *names,
                           int min, int max, struct gate_opts *o)
{
    int gate_flag = 0, opts_done = 0;
    memset(o, 0, sizeof *o);
    o->timeout_ms = DEFAULT_TIMEOUT_MS;
    for (int i = 1; i < argc; i++) {
        if (!opts_done && strcmp(argv[i], "--") == 0) {
            opts_done = 1;
        } else if (!opts_done && argv[i][0] == '-' && argv[i][1] != '\0') {
            int rv = gate_opt(cmd, argc, argv, &i, o, &gate_flag);
            if (rv) return rv;
        } else if (o->n_args == max) {
            return usage_error(cmd, "unexpected argument '%s'", argv[i]);
        } else {
            o->args[o->n_args++] = argv[i];
        }
    }
    if (o->n_args < min) return usage_error(cmd, "missing %s", names[o->n_args]);
    for (int k = 0; k < o->n_args && k < 2; k++)
        if (o->args[k][0] == '\0') return usage_error(cmd, "%s must not be empty", names[k]);
    return gate_addr_check(cmd, o, gate_flag);
}

static int connect_gate(const struct gate_opts *o, cv_client **c)
{
    char why[512];
    int rv = cv_cli_dial(o->gate, o->timeout_ms, &o->tls, why, sizeof why, c);
    if (rv == 0 && (rv = cv_cli_token(*c, o->token_file))) cv_client_close(*c);
    if (rv == 0 || rv == EXIT_USAGE) return rv;
    fprintf(stderr, "cverse: cannot connect to the gate at %s: %s\n", o->gate, why);
    if (strstr(why, "TLS"))
        fprintf(stderr, "hint: --ca FILE (or $CVERSE_CA_FILE) names the CA that signed the gate's certificate;\n"
                        "      a gate without tls_cert_file speaks plain: drop --tls.\n");
    else
        fprintf(stderr, "hint: is the gate running? Start a local cluster with cluster/run-cluster.sh, or point --gate\n"
                        "      (or $CVERSE_GATE) at a running gate's grpc_addr.\n");
    return EXIT_NO_GATE;
}

/* The code names the gate's HTTP API uses ({"code":...}), so both front ends say the same thing. */
/* What to do about err, for a human; NULL when nothing useful and true can be said. */
static const char *code_hint(const struct command *cmd, int err)
{
    int is_call = strcmp(cmd->name, "call") == 0;
    switch (err) {
    case CV_EINVAL:
    case CV_EPROTO:
    case CV_ERANGE:
        return is_call ? "the gate or the object found the request invalid (the message says why). A request\n"
                         "      is proto3 JSON of the method's request message (field names as in the .proto,\n"
                         "      int64 as \"123\")."
                       : "check TYPE and ID.";
    case CV_ETOOBIG: return "the request or its answer is too large (16 MiB at most).";
    case CV_ENOTFOUND:
        return is_call ? "TYPE and METHOD must be registered on the nodes (case matters); a new ID is created by\n"
                         "      its first call (or 'cverse create TYPE ID'); an ID that exists with another type\n"
                         "      is not found under this one."
                       : "is TYPE registered on the nodes (built in, or loaded with --module)? An id NODE/x\n"
                         "      needs a node of that name in the config.";
    case CV_EEXIST: return "the id exists with another type (ids are unique across types); pick another one.";
    case CV_ECONFLICT: return "the id is in use by another type, or the object changed meanwhile; check TYPE and ID.";
    case CV_ESTATESIZE: return "the call would make the object's state larger than the cluster allows; it was not applied.";
    case CV_ECALLEXPIRED:
        return "the call id is older than the object's call-id window: check the object's state before\n"
               "      calling again with a new --call-id.";
    case CV_EBUSY: return "the object is overloaded (its mailbox is full); retry in a second.";
    case CV_ETIMEDOUT:
        return "no answer in time; retry, or allow more with --timeout MS. The operation may still have\n"
               "      completed.";
    case CV_ECANCELED: return "the operation was canceled; retry.";
    default:
        if (cv_err_retryable(err))
            return "the cluster cannot serve this right now (nodes down, shards unassigned or moving);\n"
                   "      retry, check 'cverse status', or start a cluster with cluster/run-cluster.sh.";
        if (cv_err_code(err) == CV_STATUS_INTERNAL)
            return "this looks like a bug; see gate.log and node.log in the cluster's run directory.";
        return NULL;
    }
}

static int call_failed(const struct command *cmd, int err, const char *msg)
{
    const char *hint = code_hint(cmd, err);
    fprintf(stderr, "cverse: %s: %s\n", cv_err_status(err), msg);
    if (hint) fprintf(stderr, "hint: %s\n", hint);
    return EXIT_FAILED;
}

/* An application error: the object refused the call by its own rules; its code and message are all
 * there is to say (no hint: nothing is wrong with the cluster or the command). */
static int app_failed(const cv_client *c, const char *msg)
{
    const struct cv_app_error *e = cv_client_app_error(c);
    fprintf(stderr, "cverse: %s: %s\n", e ? e->code : cv_err_status(CV_EAPP), msg);
    return EXIT_FAILED;
}

static int flush_stdout(void)
{
    if (fflush(stdout) == 0) return 0;
    fprintf(stderr, "cverse: cannot write the output: %s\n", strerror(errno));
    return EXIT_FAILED;
}

/* Prints j compactly on one line and releases it. */
static int emit_json(json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(j);
    if (!s) {
        fputs("cverse: out of memory\n", stderr);
        return EXIT_FAILED;
    }
    puts(s);
    free(s);
    return flush_stdout();
}

/* The request argument must be a JSON object: caught here, it is a usage error with the exact spot. */
static int check_request_json(const struct command *cmd, const char *text)
{
    json_error_t jerr;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);
    if (!j) return usage_error(cmd, "the request is not valid JSON: %s (at character %d)", jerr.text,
                               jerr.position);
    int is_obj = json_is_object(j);
    json_decref(j);
    if (!is_obj) return usage_error(cmd, "the request must be a JSON object, like '{}', got '%s'", text);
    return 0;
}

static int cmd_call(const struct command *cmd, int argc, char **argv)
{
    static const char *const names[] = {"TYPE", "ID", "METHOD", "JSON"};
    struct gate_opts o;
    cv_client *c;
    char err[512], *resp;
    int rv = gate_opts_parse(cmd, argc, argv, names, 3, 4, &o);
    if (rv) return rv == HELP_SHOWN ? 0 : rv;
    if (o.args[2][0] == '\0') return usage_error(cmd, "METHOD must not be empty");
    const char *req = o.n_args == 4 ? o.args[3] : "{}";
    if ((rv = check_request_json(cmd, req)) != 0) return rv;
    if ((rv = connect_gate(&o, &c)) != 0) return rv;
    rv = cv_client_call_json_id(c, o.args[0], o.args[1], o.args[2], req, o.call_id, &resp, o.timeout_ms, err,
                                sizeof err);
    if (rv == CV_EAPP) rv = app_failed(c, err);
    else if (rv) rv = call_failed(cmd, rv, err);
    cv_client_close(c);
    if (rv) return rv;
    json_t *check = json_loads(resp, JSON_DECODE_ANY, NULL);
    if (o.json || !check)
        puts(resp); /* verbatim: --json asked for it, or it is not JSON we could lay out */
    else
        cv_cli_print_indented(resp);
    json_decref(check);
    free(resp);
    return flush_stdout();
}

/* create and delete: the same shape, a different call and message. */
static int create_or_delete(const struct command *cmd, int argc, char **argv, int create)
{
    static const char *const names[] = {"TYPE", "ID"};
    struct gate_opts o;
    cv_client *c;
    char err[512];
    int rv = gate_opts_parse(cmd, argc, argv, names, 2, 2, &o);
    if (rv) return rv == HELP_SHOWN ? 0 : rv;
    if ((rv = connect_gate(&o, &c)) != 0) return rv;
    rv = create ? cv_client_create(c, o.args[0], o.args[1], o.timeout_ms, err, sizeof err)
                : cv_client_delete(c, o.args[0], o.args[1], o.timeout_ms, err, sizeof err);
    cv_client_close(c);
    if (rv) return call_failed(cmd, rv, err);
    if (o.json)
        return emit_json(create ? json_pack("{s:s}", "id", o.args[1]) : json_pack("{s:b}", "success", 1));
    printf("%s %s %s\n", create ? "created" : "deleted", o.args[0], o.args[1]);
    return flush_stdout();
}

static int cmd_create(const struct command *cmd, int argc, char **argv)
{
    return create_or_delete(cmd, argc, argv, 1);
}

static int cmd_delete(const struct command *cmd, int argc, char **argv)
{
    return create_or_delete(cmd, argc, argv, 0);
}

/* status and shards: parse (no positional argument), connect, fetch the gate's status. */
static int node_cmp(const void *a, const void *b)
{
    const Cverse__Rpc__NodeAddr *x = *(Cverse__Rpc__NodeAddr *const *)a, *y = *(Cverse__Rpc__NodeAddr *const *)b;
    return strverscmp(x->id, y->id);
}

static int fetch_status(const struct command *cmd, int argc, char **argv, struct gate_opts *o,
                        Cverse__Rpc__StatusResponse **st)
{
    cv_client *c;
    char err[512];
    int rv = gate_opts_parse(cmd, argc, argv, NULL, 0, 0, o);
    if (rv) return rv;
    if ((rv = connect_gate(o, &c)) != 0) return rv;
    rv = cv_client_status(c, st, o->timeout_ms, err, sizeof err);
    cv_client_close(c);
    if (rv) return call_failed(cmd, rv, err);
    if (!(*st)->map) {
        cverse__rpc__status_response__free_unpacked(*st, NULL);
        *st = NULL;
        return call_failed(cmd, CV_EUNAVAIL, "the gate has no shard map yet (it has not reached a node)");
    }
    /* Natural order for people: node-2 before node-10 (the catalog sorts ids bytewise). */
    if ((*st)->map->n_nodes)
        qsort((*st)->map->nodes, (*st)->map->n_nodes, sizeof *(*st)->map->nodes, node_cmp);
    return 0;
}

/* shard-of: the shard count of the cluster behind gate (0, or a negative code and why in words). */
static int gate_shards(const char *gate, unsigned timeout_ms, uint32_t *shards, char *why, size_t len)
{
    struct sockaddr_storage ss;
    cv_client *c;
    Cverse__Rpc__StatusResponse *st;
    if (cv_addr_resolve(gate, &ss) != 0) {
        snprintf(why, len, "not HOST:PORT");
        return CV_EINVAL;
    }
    int rv = cv_cli_dial(gate, timeout_ms, NULL, why, len, &c); /* TLS: $CVERSE_CA_FILE */
    if (rv) return rv;
    rv = cv_cli_token(c, NULL) ? CV_EINVAL : cv_client_status(c, &st, timeout_ms, why, len);
    cv_client_close(c);
    if (rv) return rv;
    if (!st->map || !st->map->shards) {
        snprintf(why, len, "the gate has no shard map yet");
        rv = CV_EUNAVAIL;
    } else {
        *shards = st->map->shards;
    }
    cverse__rpc__status_response__free_unpacked(st, NULL);
    return rv;
}

/* Shards owned by node id according to the map's owner table (the count the `shards` command shows). */
static uint32_t owned_by(const Cverse__Rpc__ShardMap *m, const char *id)
{
    uint32_t n = 0;
    for (size_t i = 0; i < m->n_owners; i++) n += strcmp(m->owners[i], id) == 0;
    return n;
}

static uint32_t unassigned(const Cverse__Rpc__ShardMap *m)
{
    uint32_t n = m->shards > m->n_owners ? m->shards - (uint32_t)m->n_owners : 0;
    return n + owned_by(m, "");
}

/* A node's shard count: counted from the owner table when the gate sent one. */
static uint32_t node_shards(const Cverse__Rpc__ShardMap *m, const Cverse__Rpc__NodeAddr *n)
{
    return m->n_owners ? owned_by(m, n->id) : n->shards;
}

static json_t *json_str_or_null(const char *s)
{
    return s && *s ? json_string(s) : json_null();
}

static json_t *status_json(const Cverse__Rpc__StatusResponse *st)
{
    const Cverse__Rpc__ShardMap *m = st->map;
    json_t *nodes = json_array(), *gates = json_array();
    for (size_t i = 0; i < m->n_nodes; i++) {
        const Cverse__Rpc__NodeAddr *n = m->nodes[i];
        json_array_append_new(nodes, json_pack("{s:s,s:s,s:b,s:I,s:b,s:s,s:s}", "id", n->id, "role", n->role,
                                               "alive", n->alive, "shards", (json_int_t)node_shards(m, n),
                                               "leader", strcmp(n->id, m->leader) == 0, "advertise_addr",
                                               n->advertise_addr, "http_addr", n->http_addr));
    }
    for (size_t i = 0; i < st->n_gates; i++) {
        const Cverse__Rpc__GateInfo *g = st->gates[i];
        json_array_append_new(gates, json_pack("{s:s,s:s,s:s,s:b}", "id", g->id, "grpc_addr", g->grpc_addr,
                                               "http_addr", g->http_addr, "connected", g->connected));
    }
    return json_pack("{s:s,s:I,s:I,s:I,s:I,s:o,s:o,s:o}", "gate_id", st->gate_id, "applied_index",
                     (json_int_t)m->applied_index, "term", (json_int_t)m->term, "shards",
                     (json_int_t)m->shards, "unassigned_shards", (json_int_t)unassigned(m), "leader",
                     json_str_or_null(m->leader), "nodes", nodes, "gates", gates);
}

static int max_int(int a, int b)
{
    return a > b ? a : b;
}

static void print_nodes_table(const Cverse__Rpc__ShardMap *m)
{
    int wid = 4, wrole = 4, waddr = 7;
    for (size_t i = 0; i < m->n_nodes; i++) {
        wid = max_int(wid, (int)strlen(m->nodes[i]->id) + 1); /* +1: the leader mark */
        wrole = max_int(wrole, (int)strlen(m->nodes[i]->role));
        waddr = max_int(waddr, (int)strlen(m->nodes[i]->advertise_addr));
    }
    printf("%-*s  %-*s  %-5s  %6s  %-*s  %s\n", wid, "NODE", wrole, "ROLE", "ALIVE", "SHARDS", waddr,
           "ADDRESS", "HTTP");
    for (size_t i = 0; i < m->n_nodes; i++) {
        const Cverse__Rpc__NodeAddr *n = m->nodes[i];
        int leader = *m->leader && strcmp(n->id, m->leader) == 0;
        printf("%s%-*s  %-*s  %-5s  %6u  %-*s  %s\n", n->id, wid - (int)strlen(n->id), leader ? "*" : "",
               wrole, *n->role ? n->role : "-", n->alive ? "yes" : "no", node_shards(m, n), waddr,
               n->advertise_addr, *n->http_addr ? n->http_addr : "-");
    }
    if (*m->leader) printf("* raft leader\n");
}

static void print_gates_table(const Cverse__Rpc__StatusResponse *st)
{
    int wid = 4, waddr = 9;
    for (size_t i = 0; i < st->n_gates; i++) {
        wid = max_int(wid, (int)strlen(st->gates[i]->id));
        waddr = max_int(waddr, (int)strlen(st->gates[i]->grpc_addr));
    }
    printf("%-*s  %-9s  %-*s  %s\n", wid, "GATE", "CONNECTED", waddr, "GRPC_ADDR", "HTTP_ADDR");
    for (size_t i = 0; i < st->n_gates; i++) {
        const Cverse__Rpc__GateInfo *g = st->gates[i];
        printf("%-*s  %-9s  %-*s  %s\n", wid, g->id, g->connected ? "yes" : "no", waddr, g->grpc_addr,
               *g->http_addr ? g->http_addr : "-");
    }
}

static int cmd_status(const struct command *cmd, int argc, char **argv)
{
    struct gate_opts o;
    Cverse__Rpc__StatusResponse *st;
    int rv = fetch_status(cmd, argc, argv, &o, &st);
    if (rv) return rv == HELP_SHOWN ? 0 : rv;
    if (o.json) {
        rv = emit_json(status_json(st));
        cverse__rpc__status_response__free_unpacked(st, NULL);
        return rv;
    }
    const Cverse__Rpc__ShardMap *m = st->map;
    printf("gate %s at %s: %u shards (%u unassigned), leader %s, term %llu, map index %llu\n\n",
           *st->gate_id ? st->gate_id : "?", o.gate, m->shards, unassigned(m),
           *m->leader ? m->leader : "unknown", (unsigned long long)m->term,
           (unsigned long long)m->applied_index);
    print_nodes_table(m);
    putchar('\n');
    print_gates_table(st);
    cverse__rpc__status_response__free_unpacked(st, NULL);
    return flush_stdout();
}

static json_t *shards_json(const Cverse__Rpc__ShardMap *m)
{
    json_t *owners = json_array();
    for (uint32_t s = 0; s < m->shards; s++)
        json_array_append_new(owners, json_str_or_null(s < m->n_owners ? m->owners[s] : NULL));
    return json_pack("{s:I,s:I,s:o}", "applied_index", (json_int_t)m->applied_index, "shards",
                     (json_int_t)m->shards, "owners", owners);
}

static const char *owner_of(const Cverse__Rpc__ShardMap *m, uint32_t s)
{
    return s < m->n_owners ? m->owners[s] : "";
}

/* One line: owner, count, then the shards it owns as ranges ("0-818,1000"). */
static void print_owner_ranges(const Cverse__Rpc__ShardMap *m, const char *owner, int width)
{
    uint32_t count = 0;
    for (uint32_t s = 0; s < m->shards; s++) count += strcmp(owner_of(m, s), owner) == 0;
    if (count == 0 && !*owner) return; /* no unassigned shards: nothing to say */
    printf("%-*s  %6u  ", width, *owner ? owner : "(unassigned)", count);
    const char *sep = "";
    for (uint32_t s = 0; s < m->shards; s++) {
        if (strcmp(owner_of(m, s), owner) != 0) continue;
        uint32_t e = s;
        while (e + 1 < m->shards && strcmp(owner_of(m, e + 1), owner) == 0) e++;
        printf(e == s ? "%s%u" : "%s%u-%u", sep, s, e);
        sep = ",";
        s = e;
    }
    printf("%s\n", count ? "" : "-");
}

/* 1 if owner is a node of the map's node table, or an earlier shard's owner (already printed). */
static int owner_listed(const Cverse__Rpc__ShardMap *m, uint32_t shard)
{
    const char *owner = owner_of(m, shard);
    for (size_t i = 0; i < m->n_nodes; i++)
        if (strcmp(m->nodes[i]->id, owner) == 0) return 1;
    for (uint32_t s = 0; s < shard; s++)
        if (strcmp(owner_of(m, s), owner) == 0) return 1;
    return 0;
}

static int cmd_shards(const struct command *cmd, int argc, char **argv)
{
    struct gate_opts o;
    Cverse__Rpc__StatusResponse *st;
    int rv = fetch_status(cmd, argc, argv, &o, &st);
    if (rv) return rv == HELP_SHOWN ? 0 : rv;
    const Cverse__Rpc__ShardMap *m = st->map;
    if (o.json) {
        rv = emit_json(shards_json(m));
        cverse__rpc__status_response__free_unpacked(st, NULL);
        return rv;
    }
    int width = 12; /* "(unassigned)" */
    for (size_t i = 0; i < m->n_nodes; i++) width = max_int(width, (int)strlen(m->nodes[i]->id));
    printf("%u shards, %u unassigned, map index %llu\n%-*s  %6s  %s\n", m->shards, unassigned(m),
           (unsigned long long)m->applied_index, width, "OWNER", "SHARDS", "RANGES");
    /* Nodes in the map's order (nodes without shards too), then owners the node table lacks. */
    for (size_t i = 0; i < m->n_nodes; i++) print_owner_ranges(m, m->nodes[i]->id, width);
    for (uint32_t s = 0; s < m->shards; s++) {
        const char *owner = owner_of(m, s);
        if (*owner && (s == 0 || strcmp(owner, owner_of(m, s - 1)) != 0) && !owner_listed(m, s))
            print_owner_ranges(m, owner, width);
    }
    print_owner_ranges(m, "", width);
    cverse__rpc__status_response__free_unpacked(st, NULL);
    return flush_stdout();
}

/* ---- commands that talk to a node's HTTP API ------------------------------------------------------- */

struct node_opts {
    const char *addr; /* HOST:PORT of a node's http_addr */
    uint32_t timeout_ms;
    int json, undo;
    const char *node;
};

static int node_opt(const struct command *cmd, int argc, char **argv, int *i, struct node_opts *o)
{
    const char *val;
    int m;
    if (strcmp(argv[*i], "--help") == 0 || strcmp(argv[*i], "-h") == 0) return show_help(cmd);
    if (strcmp(argv[*i], "--json") == 0 || strcmp(argv[*i], "--undo") == 0) {
        *(argv[*i][2] == 'j' ? &o->json : &o->undo) = 1;
        return 0;
    }
    if ((m = opt_value(cmd, argc, argv, i, "--node-http", &val)) != 0) {
        o->addr = val;
        return m < 0 ? EXIT_USAGE : 0;
    }
    if ((m = opt_timeout(cmd, argc, argv, i, &o->timeout_ms)) >= 0) return m;
    return usage_error(cmd, "unknown option '%s'", argv[*i]);
}

static int node_opts_parse(const struct command *cmd, int argc, char **argv, struct node_opts *o)
{
    struct sockaddr_storage ss;
    const char *env = getenv("CVERSE_NODE_HTTP");
    int opts_done = 0;
    *o = (struct node_opts){.timeout_ms = DEFAULT_TIMEOUT_MS};
    for (int i = 1; i < argc; i++) {
        if (!opts_done && strcmp(argv[i], "--") == 0) {
            opts_done = 1;
        } else if (!opts_done && argv[i][0] == '-' && argv[i][1] != '\0') {
            int rv = node_opt(cmd, argc, argv, &i, o);
            if (rv) return rv;
        } else if (o->node) {
            return usage_error(cmd, "unexpected argument '%s'", argv[i]);
        } else {
            o->node = argv[i];
        }
    }
    if (!o->node || !o->node[0]) return usage_error(cmd, o->node ? "NODE must not be empty" : "missing NODE");
    const char *from = o->addr ? "--node-http" : "$CVERSE_NODE_HTTP";
    if (!o->addr) o->addr = env && *env ? env : DEFAULT_NODE_HTTP;
    if (cv_addr_resolve(o->addr, &ss) != 0)
        return usage_error(cmd, "%s must be HOST:PORT with a numeric host or localhost, got '%s'", from, o->addr);
    return 0;
}

/* The node's answer: {"index":N} on 200, else its error body {"error":..., "code":...}. */
static int drain_answer(const struct node_opts *o, int status, const char *body)
{
    json_t *j = json_loads(body, 0, NULL);
    if (status == 200 && j) {
        json_int_t index = json_integer_value(json_object_get(j, "index"));
        json_decref(j);
        if (o->json) return emit_json(json_pack("{s:s, s:b, s:I}", "node", o->node, "drain", !o->undo, "index", index));
        printf("%s: %s (catalog index %lld)\n", o->node,
               o->undo ? "no longer draining; it takes shards again" : "draining; its shards move to other nodes",
               (long long)index);
        return flush_stdout();
    }
    const char *code = json_string_value(json_object_get(j, "code")), *msg = json_string_value(json_object_get(j, "error"));
    fprintf(stderr, "cverse: %s: %s\n", code ? code : "HTTP", msg ? msg : body);
    if (code && strcmp(code, "NOT_FOUND") == 0) /* hints only where they are true */
        fprintf(stderr, "hint: is %s a node of the cluster's config? See 'cverse status'.\n", o->node);
    else if (code && (strcmp(code, "UNAVAILABLE") == 0 || strcmp(code, "DEADLINE_EXCEEDED") == 0))
        fprintf(stderr, "hint: retry; 'cverse status' shows whether the cluster has a leader.\n");
    json_decref(j);
    return EXIT_FAILED;
}

static int cmd_drain(const struct command *cmd, int argc, char **argv)
{
    struct node_opts o;
    int rv = node_opts_parse(cmd, argc, argv, &o), status;
    if (rv) return rv == HELP_SHOWN ? 0 : rv;
    json_t *req = json_pack("{s:s, s:b}", "node", o.node, "drain", !o.undo);
    char *body = req ? json_dumps(req, JSON_COMPACT) : NULL, resp[4096];
    json_decref(req);
    if (!body) return call_failed(cmd, CV_ENOMEM, "out of memory");
    rv = cv_cli_http_post(o.addr, "/v1/admin/nodes/drain", body, o.timeout_ms, &status, resp, sizeof resp);
    free(body);
    if (rv == CV_EUNAVAIL || rv == CV_EINVAL) {
        fprintf(stderr, "cverse: cannot connect to the node at %s: %s\n"
                        "hint: is the node running? Point --node-http (or $CVERSE_NODE_HTTP) at a running\n"
                        "      node's http_addr.\n", o.addr, rv == CV_EUNAVAIL ? strerror(errno) : "bad address");
        return EXIT_NO_GATE;
    }
    if (rv != 0) return call_failed(cmd, rv, rv == CV_ETIMEDOUT ? "no answer from the node in time" : cv_strerror(rv));
    return drain_answer(&o, status, resp);
}

/* Options given before the command (`cverse --gate H:P call ...`) are the command's own: moved after its
 * name, where the command parses them (and refuses one it does not take). Options with a value: */
static const char *const valued_opts[] = {"--gate", "--timeout", "--node-http", "--node", "--shards", "--call-id",
                                          "--token-file", "--ca", NULL};

static bool takes_value(const char *arg)
{
    for (const char *const *o = valued_opts; *o; o++)
        if (strcmp(arg, *o) == 0) return true;
    return false;
}

/* Reorders argv in place into [cverse, COMMAND, leading options..., rest...]; returns the command's
 * index before the move, or 0 if there is none (only options). */
static int hoist_command(int argc, char **argv)
{
    int k = 1;
    while (k < argc && argv[k][0] == '-' && strcmp(argv[k], "--") != 0) k += takes_value(argv[k]) && k + 1 < argc ? 2 : 1;
    if (k >= argc || argv[k][0] == '-') return 0;
    char *cmd = argv[k];
    memmove(argv + 2, argv + 1, (size_t)(k - 1) * sizeof *argv);
    argv[1] = cmd;
    return k;
}

int main(int argc, char **argv)
{
    if (argc < 2) return usage_error(NULL, "missing command");
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        print_usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("cverse %s\n", CV_VERSION);
        return 0;
    }
    if (argv[1][0] == '-' && hoist_command(argc, argv) == 0) {
        if (takes_value(argv[1]) || !strcmp(argv[1], "--json") || !strcmp(argv[1], "--tls"))
            return usage_error(NULL, "missing command");
        return usage_error(NULL, "unknown option '%s'", argv[1]);
    }
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(&commands[i], argc - 1, argv + 1);
    return usage_error(NULL, "unknown command '%s'", argv[1]);
}
