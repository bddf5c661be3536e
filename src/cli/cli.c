/* cverse: the command-line tool. `cverse <command> [options] [args]`, one entry per command in a table.
 *
 * Happy path: find the command in the table, let it parse its own options and run, exit with its code.
 * Failure modes: bad usage (unknown command or flag, missing or extra argument, invalid value) prints
 * one line naming the problem and a usage hint on stderr and exits 2; a command that fails while
 * running exits 1. --help output goes to stdout and exits 0.
 * Commands for now: shard-of. Later: call, create, delete, status, shards. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "cverse/error.h"

#ifndef CV_VERSION
#define CV_VERSION "unknown"
#endif

#define EXIT_USAGE 2
#define DEFAULT_SHARDS 8192u
#define MAX_SHARDS 1048576u
#define HELP_SHOWN (-1) /* option parsers: --help was printed, exit 0 */

struct command {
    const char *name;
    const char *args;    /* usage after the command name */
    const char *summary; /* one line for `cverse --help` */
    const char *details; /* extra text for `cverse <command> --help`, may be NULL */
    int (*run)(const struct command *cmd, int argc, char **argv); /* argv[0] is the command name */
};

static int cmd_shard_of(const struct command *cmd, int argc, char **argv);

static const struct command commands[] = {
    {"shard-of", "[--shards N] OBJECT-ID", "print the shard an object id maps to",
     "  --shards N   number of shards in the cluster, 1..1048576 (default 8192)\n"
     "An id \"shard#N/rest\" is on shard N; \"NODE/rest\" is pinned to node NODE (the hash shard is\n"
     "printed and a note goes to stderr); any other id is on shard fnv1a32(id) % N.\n",
     cmd_shard_of},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void print_usage(FILE *f)
{
    fprintf(f, "Usage: cverse <command> [options] [args]\n"
               "       cverse --help | --version\n\nCommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nRun 'cverse <command> --help' for a command's options.\n");
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

static int shard_of_opts(const struct command *cmd, int argc, char **argv, uint32_t *shards,
                         const char **id)
{
    int i = 1;

    for (; i < argc && argv[i][0] == '-' && argv[i][1] != '\0'; i++) {
        const char *val = NULL;
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        }
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            print_cmd_usage(stdout, cmd);
            fputs(cmd->details, stdout);
            return HELP_SHOWN;
        }
        if (strcmp(argv[i], "--shards") == 0) {
            if (++i == argc) return usage_error(cmd, "--shards needs a value");
            val = argv[i];
        } else if (strncmp(argv[i], "--shards=", 9) == 0) {
            val = argv[i] + 9;
        } else {
            return usage_error(cmd, "unknown option '%s'", argv[i]);
        }
        if (parse_u32(val, 1, MAX_SHARDS, shards) != 0)
            return usage_error(cmd, "--shards must be an integer from 1 to %u, got '%s'", MAX_SHARDS, val);
    }
    if (i == argc) return usage_error(cmd, "missing OBJECT-ID");
    if (i + 1 < argc) return usage_error(cmd, "unexpected argument '%s'", argv[i + 1]);
    *id = argv[i];
    return 0;
}

/* Why cv_placement_parse() said CV_EINVAL, in words. */
static const char *placement_problem(const char *id)
{
    if (id[0] == '\0') return "it is empty";
    if (strncmp(id, "shard#", 6) == 0) return "expected shard#N/NAME with N a decimal number";
    return "the node name before '/' is empty";
}

static int cmd_shard_of(const struct command *cmd, int argc, char **argv)
{
    uint32_t shards = DEFAULT_SHARDS;
    const char *id = NULL;
    struct cv_placement pl;
    int rv = shard_of_opts(cmd, argc, argv, &shards, &id);

    if (rv != 0) return rv == HELP_SHOWN ? 0 : rv;
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
    if (argv[1][0] == '-') return usage_error(NULL, "unknown option '%s'", argv[1]);
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(&commands[i], argc - 1, argv + 1);
    return usage_error(NULL, "unknown command '%s'", argv[1]);
}
