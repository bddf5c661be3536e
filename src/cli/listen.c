/* `cverse listen` (docs/push.md): connects to a gate with the client library, registers (gate.register),
 * prints {"clientId":…} and then every pushed message as one JSON line, flushed at once so that a pipe
 * reader sees it.
 *
 * Happy path: connect, register, loop on cv_client_next_push until --count messages (or forever).
 * Failure modes: bad options exit 2; no connection exit 3; a lost connection, a protocol error or
 * --timeout without a message exit 1 with the reason on stderr. */
#include "cli/listen.h"
#include "cli/token.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cverse/client.h"
#include "cverse/error.h"

struct listen_opts {
    const char *gate;
    unsigned long count;   /* 0: no limit */
    unsigned long timeout; /* ms, 0: none */
};

static int listen__usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "cverse listen: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nUsage: cverse listen %s\n", CV_CLI_LISTEN_ARGS);
    return 2;
}

/* Strict decimal in 1..max. */
static int listen__num(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = s[0] >= '0' && s[0] <= '9' ? strtoul(s, &end, 10) : 0;
    if (!v || *end || errno || v > max) return -1;
    *out = v;
    return 0;
}

/* 0, 2 (usage), or -1: --help was printed. */
static int listen__parse(int argc, char **argv, struct listen_opts *o)
{
    const char *env = getenv("CVERSE_GATE");
    *o = (struct listen_opts){.gate = env && *env ? env : "localhost:47101"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("Usage: cverse listen %s\n%s", CV_CLI_LISTEN_ARGS, CV_CLI_LISTEN_HELP);
            return -1;
        }
        bool gate = !strcmp(a, "--gate"), count = !strcmp(a, "--count"), timeout = !strcmp(a, "--timeout");
        if (!gate && !count && !timeout) return listen__usage("unexpected argument '%s'", a);
        if (i + 1 >= argc) return listen__usage("%s needs a value", a);
        const char *v = argv[++i];
        if (gate) o->gate = v;
        else if (count && listen__num(v, 1000000000ul, &o->count)) return listen__usage("bad --count '%s'", v);
        else if (timeout && listen__num(v, 3600000ul, &o->timeout)) return listen__usage("bad --timeout '%s'", v);
    }
    return 0;
}

/* One message as a line: the node's JSON as the payload. */
static void listen__print(const struct cv_client_push *p)
{
    if (p->dropped) printf("{\"dropped\":%llu}\n", (unsigned long long)p->dropped);
    printf("{\"type\":\"%s\",\"payload\":%s}\n", p->type, p->json[0] ? p->json : "{}");
    fflush(stdout);
}

int cv_cli_listen(const struct command *cmd, int argc, char **argv)
{
    (void)cmd;
    struct listen_opts o;
    int rv = listen__parse(argc, argv, &o);
    if (rv) return rv < 0 ? 0 : rv;
    char err[512], id[256];
    cv_client *c;
    if ((rv = cv_client_connect(o.gate, 5000, &c))) {
        fprintf(stderr, "cverse: cannot connect to the gate at %s: %s\n", o.gate, cv_strerror(rv));
        return 3;
    }
    if ((rv = cv_cli_token(c, NULL))) { /* $CVERSE_TOKEN_FILE */
        cv_client_close(c);
        return rv;
    }
    if ((rv = cv_client_register(c, id, sizeof id, 10000, err, sizeof err))) {
        fprintf(stderr, "cverse: register: %s\n", err);
        cv_client_close(c);
        return rv == CV_EUNAVAIL ? 3 : 1;
    }
    printf("{\"clientId\":\"%s\"}\n", id);
    fflush(stdout);
    for (unsigned long n = 0; !o.count || n < o.count; n++) {
        struct cv_client_push *p;
        if ((rv = cv_client_next_push(c, &p, (unsigned)o.timeout, err, sizeof err))) {
            fprintf(stderr, "cverse: %s\n", err);
            break;
        }
        listen__print(p);
        cv_client_push_free(p);
    }
    cv_client_close(c);
    return rv ? 1 : 0;
}
