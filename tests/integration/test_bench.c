/* Integration: cverse-bench (src/bench) against a real 3-node raft group with a gate.
 * - native and HTTP calls for ~2 s each: calls > 0, no errors, every field of --json present, exit 0,
 *   per-second lines with --progress, and the counters really moved (their sum is at least the calls
 *   the tool counted);
 * - creates (one Raft commit each) and an open loop at a fixed rate (about rate x duration requests);
 * - an unreachable gate exits 3 saying what to check; a bad flag exits 2 naming it.
 * The tool runs as a child process (CVERSE_BENCH_BIN); its stdout and stderr go to files in the
 * cluster's temp dir. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define READY_MS 30000
#define OBJECTS 40

static struct h_cluster C;

static void teardown(void)
{
    h_cluster_destroy(&C);
}

TestSuite(bench, .fini = teardown, .timeout = 240);

static void start(void)
{
    struct h_opts o = {.gates = 1};
    h_cluster_init_ex(&C, 3, 3, 1000, &o);
    for (int i = 0; i < 3; i++) h_node_start(&C, i);
    h_gate_start(&C, 0);
    cr_assert(h_poll(READY_MS, h_all_ready, &C), "nodes and gate did not become ready");
}

/* Reads a whole file (malloc'ed, "" when absent). */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    char *s = calloc(1, 1 << 16);
    cr_assert_not_null(s);
    if (f) {
        size_t n = fread(s, 1, (1 << 16) - 1, f);
        s[n] = '\0';
        fclose(f);
    }
    return s;
}

/* Runs cverse-bench with args (NULL-terminated); returns its exit status, *out / *err its stdout and
 * stderr (malloc'ed). */
static int bench(char **out, char **err, const char *const *args)
{
    const char *bin = getenv("CVERSE_BENCH_BIN");
    cr_assert_not_null(bin, "CVERSE_BENCH_BIN not set");
    char po[400], pe[400];
    snprintf(po, sizeof po, "%s/bench.out", C.dir);
    snprintf(pe, sizeof pe, "%s/bench.err", C.dir);
    const char *argv[32] = {bin};
    int n = 1;
    while (args[n - 1] && n < 31) argv[n] = args[n - 1], n++;
    argv[n] = NULL;
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        int fo = open(po, O_WRONLY | O_CREAT | O_TRUNC, 0644), fe = open(pe, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fo < 0 || fe < 0 || dup2(fo, 1) < 0 || dup2(fe, 2) < 0) _exit(126);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    *out = slurp(po);
    *err = slurp(pe);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Parses --json output and checks the fields every report has; returns it (caller json_decref's). */
static json_t *report(const char *out)
{
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    cr_assert_not_null(j, "--json output is not JSON (%s): %s", je.text, out);
    const char *num[] = {"calls", "ok", "rate", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "duration_s"};
    for (size_t i = 0; i < sizeof num / sizeof *num; i++)
        cr_assert(json_is_number(json_object_get(j, num[i])), "field %s missing: %s", num[i], out);
    cr_assert(json_is_object(json_object_get(j, "errors")), "errors missing: %s", out);
    double p50 = json_number_value(json_object_get(j, "p50_ms")), p99 = json_number_value(json_object_get(j, "p99_ms"));
    double mx = json_number_value(json_object_get(j, "max_ms"));
    cr_assert(p50 > 0 && p50 <= p99 && p99 <= mx, "p50 %f p99 %f max %f", p50, p99, mx);
    return j;
}

static json_int_t num(json_t *j, const char *k)
{
    return (json_int_t)json_number_value(json_object_get(j, k));
}

/* The sum of the counters prefix0 .. prefix(OBJECTS-1), read over the gate's HTTP API. */
static long long counters(const char *prefix)
{
    long long sum = 0;
    for (int i = 0; i < OBJECTS; i++) {
        char path[256];
        snprintf(path, sizeof path, "/api/v1/objects/call/SimpleCounter/%s%d/GetValue", prefix, i);
        long st;
        char *body = h_post(h_gate_http_port(&C, 0), path, "{}", 2, &st);
        cr_assert_eq(st, 200, "GetValue %s%d: %ld %s", prefix, i, st, body ? body : "");
        json_t *j = json_loads(body, 0, NULL);
        json_t *v = json_object_get(json_object_get(j, "response"), "value");
        sum += v ? strtoll(json_is_string(v) ? json_string_value(v) : "0", NULL, 10) : 0;
        json_decref(j);
        free(body);
    }
    return sum;
}

/* Calls for 2 s through target (--gate or --http) at addr with ids prefix<n>: no errors, the counters moved. */
static void calls(const char *target, const char *addr, const char *prefix, const char *name)
{
    char *out, *err;
    const char *args[] = {target,     addr,    "--concurrency", "8",    "--objects", "40", "--id-prefix", prefix,
                          "--duration", "2s",  "--warmup",      "500ms", "--json",   "--progress", NULL};
    int rc = bench(&out, &err, args);
    cr_assert_eq(rc, 0, "exit %d\nstdout: %s\nstderr: %s", rc, out, err);
    json_t *j = report(out);
    cr_assert_gt(num(j, "calls"), 0, "%s", out);
    cr_assert_eq(num(j, "ok"), num(j, "calls"), "%s", out);
    cr_assert_eq(json_object_size(json_object_get(j, "errors")), 0, "errors: %s", out);
    cr_assert_str_eq(json_string_value(json_object_get(j, "target")), name);
    cr_assert_not_null(strstr(err, "1s "), "a line for the first second on stderr: %s", err);
    cr_assert_not_null(strstr(err, "/s  p50 "), "per-second lines with rate and p50: %s", err);
    long long sum = counters(prefix);
    cr_assert_geq(sum, num(j, "calls"), "counters sum %lld < calls counted %lld", sum, (long long)num(j, "calls"));
    json_decref(j);
    free(out);
    free(err);
}

Test(bench, native_and_http_calls_creates_and_an_open_loop)
{
    start();
    char gate[64], http[64];
    snprintf(gate, sizeof gate, "127.0.0.1:%d", h_gate_grpc_port(&C, 0));
    snprintf(http, sizeof http, "http://127.0.0.1:%d", h_gate_http_port(&C, 0));
    calls("--gate", gate, "nat-", "native");
    calls("--http", http, "http-", "http");

    char *out, *err;
    const char *create[] = {"--gate", gate, "--op", "create", "--concurrency", "4", "--duration", "1s",
                            "--warmup", "0", "--json", NULL};
    int rc = bench(&out, &err, create);
    cr_assert_eq(rc, 0, "exit %d: %s", rc, err);
    json_t *j = report(out);
    cr_assert_gt(num(j, "calls"), 0);
    cr_assert_eq(json_object_size(json_object_get(j, "errors")), 0, "errors: %s", out);
    json_decref(j);
    free(out);
    free(err);

    /* Open loop: 200/s for 1.5 s is 300 requests due; the few still in flight at the end are not counted. */
    const char *open[] = {"--http", http,    "--rps",   "200", "--concurrency", "8",  "--objects",
                          "40",     "--id-prefix", "http-", "--no-create", "--duration", "1500ms", "--warmup",
                          "0",      "--json", NULL};
    rc = bench(&out, &err, open);
    cr_assert_eq(rc, 0, "exit %d: %s", rc, err);
    j = report(out);
    cr_assert(num(j, "calls") >= 200 && num(j, "calls") <= 301, "open loop made %lld calls: %s",
              (long long)num(j, "calls"), out);
    cr_assert_float_eq(json_number_value(json_object_get(j, "rps")), 200, 1e-9);
    json_decref(j);
    free(out);
    free(err);
}

Test(bench, unreachable_gate_exits_3_and_bad_flags_2)
{
    /* No cluster: a port nothing listens on (the harness' ports are chosen from the pid; this one is
     * the test's own, never bound). */
    h_cluster_init_ex(&C, 1, 1, 1000, &(struct h_opts){.gates = 1});
    char gate[64];
    snprintf(gate, sizeof gate, "127.0.0.1:%d", h_gate_grpc_port(&C, 0));
    char *out, *err;
    const char *args[] = {"--gate", gate, "--duration", "1s", NULL};
    int rc = bench(&out, &err, args);
    cr_assert_eq(rc, 3, "exit %d: %s", rc, err);
    cr_assert_not_null(strstr(err, "cannot connect to"), "%s", err);
    cr_assert_not_null(strstr(err, "grpc_addr"), "says what to check: %s", err);
    cr_assert_str_eq(out, "", "no report");
    free(out);
    free(err);
    const char *bad[] = {"--gate", gate, "--concurrency", "none", NULL};
    rc = bench(&out, &err, bad);
    cr_assert_eq(rc, 2, "exit %d: %s", rc, err);
    cr_assert_not_null(strstr(err, "--concurrency"), "%s", err);
    free(out);
    free(err);
}
