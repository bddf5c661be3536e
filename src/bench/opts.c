/* cverse-bench's flag parsing.
 *
 * Happy path: walk argv once; each flag takes its value from the next argument or after '=' (--flag=v);
 * numbers and durations are checked for range; then the cross-flag rules (exactly one target, the op
 * fits the target, --body only with calls) and the defaults that depend on the target.
 * Failure modes: an unknown flag, a missing or malformed value, or flags that contradict each other
 * return CV_EINVAL with one line naming the flag and what was expected; main prints it and exits 2.
 * Pure: no I/O (usage text is printed by main). */
#include "bench/opts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"
#include "util/addr.h"

const char cv_bench_usage[] =
    "usage: cverse-bench (--gate HOST:PORT | --http URL | --etcd URL) [options]\n"
    "Load generator for a cverse gate (native protocol or HTTP API), or etcd's JSON gateway.\n"
    "\n"
    "target (exactly one):\n"
    "  --gate HOST:PORT    a gate's native port (grpc_addr), many calls in flight per connection\n"
    "  --http URL          a gate's HTTP API (http_addr), e.g. http://127.0.0.1:48101 or https://...\n"
    "  --etcd URL          etcd v3 JSON gateway, e.g. http://127.0.0.1:2379 (op put)\n"
    "what:\n"
    "  --op call|create|put  call (default; put with --etcd), create: one new object per request\n"
    "  --type T            object type (default SimpleCounter)\n"
    "  --method M          method (default Increment)\n"
    "  --body JSON         the request as proto3 JSON (default: the empty request)\n"
    "  --objects N         distinct ids (or etcd keys) used round-robin (default 1024)\n"
    "  --id-prefix P       ids are P0 .. P(N-1) (default \"bench-\"; create: \"bench-<pid>-<time>-\")\n"
    "  --no-create         do not create the N objects before the run\n"
    "how:\n"
    "  --concurrency C     requests in flight at most (default 16); closed loop without --rps\n"
    "  --rps R             open loop: R requests per second, latency from each one's intended start\n"
    "  --duration D        measured time (default 10s; units ms, s, m)\n"
    "  --warmup D          load before measuring, not counted (default 1s)\n"
    "  --connections K     native: TCP connections (default 1); HTTP uses C connections\n"
    "  --timeout D         per request (default 10s)\n"
    "TLS (--http, --gate):\n"
    "  --tls               TLS to the gate's native port, or even with an http:// URL (https:// implies it)\n"
    "  --ca FILE           CA certificates (PEM) that verify the server (default: the system's store);\n"
    "                      the certificate must name the URL's or --gate's host (DNS name or IP address)\n"
    "output:\n"
    "  --json              the final report as one JSON object on stdout\n"
    "  --progress          one line per second even when stderr is not a terminal\n"
    "  --quiet             no per-second lines\n"
    "exit: 0 ran (errors are in the report), 1 the run failed (e.g. objects could not be created),\n"
    "      2 bad flags, 3 the target is unreachable.\n";

#define MAX_CONCURRENCY 100000u
#define MAX_CONNECTIONS 1024u
#define MAX_OBJECTS 100000000ull

static int fail(char *err, size_t errlen, const char *fmt, const char *a, const char *b)
{
    snprintf(err, errlen, fmt, a, b);
    return CV_EINVAL;
}

int cv_bench_parse_duration(const char *s, uint64_t *ms)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !(v >= 0) || v > 1e7) return CV_EINVAL;
    double mul = 1000;
    if (strcmp(end, "ms") == 0) mul = 1;
    else if (strcmp(end, "m") == 0) mul = 60000;
    else if (*end && strcmp(end, "s") != 0) return CV_EINVAL;
    *ms = (uint64_t)(v * mul + 0.5);
    return 0;
}

static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    errno = 0;
    if (*s == '-' || *s == '\0') return CV_EINVAL;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || errno || v < lo || v > hi) return CV_EINVAL;
    *out = v;
    return 0;
}

/* "http://HOST:PORT" or "https://HOST:PORT" with an optional trailing '/' into host/port (and tls). */
static int parse_url(const char *url, struct cv_bench_opts *o, char *err, size_t errlen)
{
    size_t skip = strncmp(url, "https://", 8) == 0 ? 8 : 7;
    if (skip == 7 && strncmp(url, "http://", 7) != 0)
        return fail(err, errlen, "%s: expected http://HOST:PORT or https://HOST:PORT (%s)", url, "no http:// scheme");
    if (skip == 8) o->tls = true;
    char hp[300];
    size_t n = strlen(url + skip);
    if (n >= sizeof hp) return fail(err, errlen, "%s: URL too long%s", url, "");
    memcpy(hp, url + skip, n + 1);
    if (n && hp[n - 1] == '/') hp[--n] = '\0';
    if (strchr(hp, '/')) return fail(err, errlen, "%s: give the base URL without a path%s", url, "");
    if (cv_addr_split(hp, o->host, sizeof o->host, &o->port) < 0)
        return fail(err, errlen, "%s: expected http://HOST:PORT with a port 1..65535%s", url, "");
    return 0;
}

static int set_target(struct cv_bench_opts *o, enum cv_bench_target t, const char *v, char *err, size_t errlen)
{
    if (o->addr) return fail(err, errlen, "give one target: --gate, --http or --etcd (%s and %s)", o->addr, v);
    o->target = t;
    o->addr = v;
    if (t != CV_BENCH_NATIVE) return parse_url(v, o, err, errlen);
    if (cv_addr_split(v, o->host, sizeof o->host, &o->port) < 0)
        return fail(err, errlen, "--gate %s: expected HOST:PORT with a port 1..65535%s", v, "");
    return 0;
}

static int set_op(struct cv_bench_opts *o, const char *v, char *err, size_t errlen)
{
    if (strcmp(v, "call") == 0) o->op = CV_BENCH_CALL;
    else if (strcmp(v, "create") == 0) o->op = CV_BENCH_CREATE;
    else if (strcmp(v, "put") == 0) o->op = CV_BENCH_PUT;
    else return fail(err, errlen, "--op %s: expected call, create or put%s", v, "");
    return 0;
}

/* One flag with its value v (NULL for the switches). 0, or CV_EINVAL. */
static int flag(struct cv_bench_opts *o, const char *name, const char *v, char *err, size_t errlen)
{
    uint64_t u;
    const char *bad = NULL;
    if (strcmp(name, "gate") == 0) return set_target(o, CV_BENCH_NATIVE, v, err, errlen);
    if (strcmp(name, "http") == 0) return set_target(o, CV_BENCH_HTTP, v, err, errlen);
    if (strcmp(name, "etcd") == 0) return set_target(o, CV_BENCH_ETCD, v, err, errlen);
    if (strcmp(name, "op") == 0) return set_op(o, v, err, errlen);
    if (strcmp(name, "type") == 0) o->type = v;
    else if (strcmp(name, "method") == 0) o->method = v;
    else if (strcmp(name, "body") == 0) o->body = v;
    else if (strcmp(name, "id-prefix") == 0) o->id_prefix = v;
    else if (strcmp(name, "ca") == 0) o->ca = v;
    else if (strcmp(name, "objects") == 0) {
        if (parse_u64(v, 1, MAX_OBJECTS, &o->objects) < 0) bad = "a count 1..100000000";
    } else if (strcmp(name, "concurrency") == 0) {
        if (parse_u64(v, 1, MAX_CONCURRENCY, &u) < 0) bad = "a count 1..100000";
        o->concurrency = (unsigned)u;
    } else if (strcmp(name, "connections") == 0) {
        if (parse_u64(v, 1, MAX_CONNECTIONS, &u) < 0) bad = "a count 1..1024";
        o->connections = (unsigned)u;
    } else if (strcmp(name, "rps") == 0) {
        char *end;
        errno = 0;
        o->rps = strtod(v, &end);
        if (end == v || *end || errno || !(o->rps > 0) || o->rps > 1e8) bad = "a rate > 0 (requests per second)";
    } else if (strcmp(name, "duration") == 0) {
        if (cv_bench_parse_duration(v, &o->duration_ms) < 0 || o->duration_ms == 0) bad = "a duration > 0 (10s, 500ms, 2m)";
    } else if (strcmp(name, "warmup") == 0) {
        if (cv_bench_parse_duration(v, &o->warmup_ms) < 0) bad = "a duration (0, 1s, 500ms)";
    } else if (strcmp(name, "timeout") == 0) {
        if (cv_bench_parse_duration(v, &u) < 0 || u == 0 || u > 3600000) bad = "a duration 1ms..1h";
        o->timeout_ms = (unsigned)u;
    } else return fail(err, errlen, "unknown flag --%s%s (see --help)", name, "");
    if (bad) return fail(err, errlen, "--%s: expected %s", name, bad);
    return 0;
}

/* Flags without a value; the enum is their index in switches[]. */
enum { SW_NO_CREATE, SW_JSON, SW_PROGRESS, SW_QUIET, SW_HELP, SW_VERSION, SW_TLS };
static const char *const switches[] = {"no-create", "json", "progress", "quiet", "help", "version", "tls", NULL};

static void defaults(struct cv_bench_opts *o)
{
    memset(o, 0, sizeof *o);
    o->op = CV_BENCH_CALL;
    o->type = "SimpleCounter";
    o->method = "Increment";
    o->objects = 1024;
    o->concurrency = 16;
    o->duration_ms = 10000;
    o->warmup_ms = 1000;
    o->connections = 1;
    o->timeout_ms = 10000;
    o->progress = -1;
}

/* The rules between flags, once all are read. */
static int check(struct cv_bench_opts *o, bool op_given, char *err, size_t errlen)
{
    if (!o->addr) return fail(err, errlen, "no target: give --gate HOST:PORT, --http URL or --etcd URL%s%s", "", "");
    if (o->target == CV_BENCH_ETCD) {
        if (!op_given) o->op = CV_BENCH_PUT;
        if (o->op != CV_BENCH_PUT) return fail(err, errlen, "--etcd supports --op put only%s%s", "", "");
    } else if (o->op == CV_BENCH_PUT) {
        return fail(err, errlen, "--op put is for --etcd only%s%s", "", "");
    }
    if (o->body && o->op != CV_BENCH_CALL) return fail(err, errlen, "--body is for --op call only%s%s", "", "");
    if (o->ca && !o->tls) return fail(err, errlen, "--ca %s: needs TLS (an https:// URL or --tls)%s", o->ca, "");
    if (!*o->type || strlen(o->type) >= 128) return fail(err, errlen, "--type: expected 1..127 bytes%s%s", "", "");
    if (!*o->method || strchr(o->method, '/'))
        return fail(err, errlen, "--method %s: expected a method name%s", o->method, "");
    if (o->id_prefix && strlen(o->id_prefix) > 400)
        return fail(err, errlen, "--id-prefix: at most 400 bytes (ids are < 512)%s%s", "", "");
    return 0;
}

int cv_bench_opts_parse(int argc, char **argv, struct cv_bench_opts *o, char *err, size_t errlen)
{
    defaults(o);
    bool op_given = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0 || !a[2])
            return fail(err, errlen, "unexpected argument \"%s\" (flags start with --; see --help)%s", a, "");
        char name[32];
        const char *eq = strchr(a + 2, '='), *v = NULL;
        size_t n = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (n >= sizeof name) return fail(err, errlen, "unknown flag %s (see --help)%s", a, "");
        memcpy(name, a + 2, n);
        name[n] = '\0';
        size_t s = 0;
        while (switches[s] && strcmp(switches[s], name) != 0) s++;
        if (switches[s]) {
            if (eq) return fail(err, errlen, "--%s takes no value%s", name, "");
            if (s == SW_HELP || s == SW_VERSION) return 1;
            if (s == SW_NO_CREATE) o->no_create = true;
            else if (s == SW_JSON) o->json = true;
            else if (s == SW_TLS) o->tls = true;
            else o->progress = s == SW_PROGRESS; /* --quiet: 0 */
            continue;
        }
        if (eq) v = eq + 1;
        else if (i + 1 < argc) v = argv[++i];
        else return fail(err, errlen, "--%s needs a value%s", name, "");
        if (strcmp(name, "op") == 0) op_given = true;
        int rc = flag(o, name, v, err, errlen);
        if (rc < 0) return rc;
    }
    return check(o, op_given, err, errlen);
}
