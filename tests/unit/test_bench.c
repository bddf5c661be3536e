/* Unit tests of cverse-bench's pure parts (src/bench): flag parsing (opts.c) and the measurements and
 * reports (stats.c). The tool against a live cluster is tests/integration/test_bench.c. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "bench/opts.h"
#include "bench/stats.h"
#include "cverse/error.h"

#include "lsan_check.h"

TestSuite(opts, .fini = cv_lsan_check);
TestSuite(stats, .fini = cv_lsan_check);

/* Parses a NULL-terminated list of arguments (argv[0] is added). */
#define PARSE(o, err, ...)                                                                                  \
    ({                                                                                                      \
        char *argv_[] = {"cverse-bench", __VA_ARGS__, NULL};                                                \
        cv_bench_opts_parse((int)(sizeof argv_ / sizeof *argv_) - 1, argv_, (o), (err), sizeof(err));       \
    })

Test(opts, defaults_for_a_gate)
{
    struct cv_bench_opts o;
    char err[256] = "";
    cr_assert_eq(PARSE(&o, err, "--gate", "127.0.0.1:47101"), 0, "%s", err);
    cr_assert_eq(o.target, CV_BENCH_NATIVE);
    cr_assert_str_eq(o.host, "127.0.0.1");
    cr_assert_eq(o.port, 47101);
    cr_assert_eq(o.op, CV_BENCH_CALL);
    cr_assert_str_eq(o.type, "SimpleCounter");
    cr_assert_str_eq(o.method, "Increment");
    cr_assert_null(o.body);
    cr_assert_null(o.id_prefix);
    cr_assert_eq(o.objects, 1024);
    cr_assert_eq(o.concurrency, 16);
    cr_assert_eq(o.rps, 0);
    cr_assert_eq(o.duration_ms, 10000);
    cr_assert_eq(o.warmup_ms, 1000);
    cr_assert_eq(o.connections, 1);
    cr_assert_eq(o.timeout_ms, 10000);
    cr_assert(!o.json && !o.no_create);
    cr_assert_eq(o.progress, -1);
}

Test(opts, every_flag_both_spellings)
{
    struct cv_bench_opts o;
    char err[256] = "";
    int rc = PARSE(&o, err, "--http=http://[::1]:8080/", "--op", "call", "--type", "Probe", "--method=Echo", "--body",
                   "{\"n\":1}", "--objects", "50", "--id-prefix", "p/", "--no-create", "--concurrency=64", "--rps",
                   "2500.5", "--duration", "1500ms", "--warmup", "0", "--connections", "4", "--timeout", "2m",
                   "--json", "--quiet");
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_eq(o.target, CV_BENCH_HTTP);
    cr_assert_str_eq(o.host, "::1");
    cr_assert_eq(o.port, 8080);
    cr_assert_str_eq(o.type, "Probe");
    cr_assert_str_eq(o.method, "Echo");
    cr_assert_str_eq(o.body, "{\"n\":1}");
    cr_assert_eq(o.objects, 50);
    cr_assert_str_eq(o.id_prefix, "p/");
    cr_assert(o.no_create && o.json);
    cr_assert_eq(o.concurrency, 64);
    cr_assert_float_eq(o.rps, 2500.5, 1e-9);
    cr_assert_eq(o.duration_ms, 1500);
    cr_assert_eq(o.warmup_ms, 0);
    cr_assert_eq(o.connections, 4);
    cr_assert_eq(o.timeout_ms, 120000);
    cr_assert_eq(o.progress, 0);
}

Test(opts, https_and_tls_flags)
{
    struct cv_bench_opts o;
    char err[256] = "";
    cr_assert_eq(PARSE(&o, err, "--http", "https://localhost:8443/", "--ca", "/tmp/ca.pem"), 0, "%s", err);
    cr_assert(o.tls);
    cr_assert_str_eq(o.host, "localhost");
    cr_assert_eq(o.port, 8443);
    cr_assert_str_eq(o.ca, "/tmp/ca.pem");
    cr_assert_eq(PARSE(&o, err, "--http", "http://127.0.0.1:8080", "--tls"), 0, "%s", err);
    cr_assert(o.tls);
    cr_assert_null(o.ca, "the system's store by default");
    cr_assert_eq(PARSE(&o, err, "--http", "http://127.0.0.1:8080"), 0, "%s", err);
    cr_assert(!o.tls);
}

Test(opts, etcd_defaults_to_put)
{
    struct cv_bench_opts o;
    char err[256] = "";
    cr_assert_eq(PARSE(&o, err, "--etcd", "http://localhost:2379", "--progress"), 0, "%s", err);
    cr_assert_eq(o.target, CV_BENCH_ETCD);
    cr_assert_eq(o.op, CV_BENCH_PUT);
    cr_assert_str_eq(o.host, "localhost");
    cr_assert_eq(o.progress, 1);
}

Test(opts, gate_with_tls_and_ca)
{
    struct cv_bench_opts o;
    char err[256] = "";
    cr_assert_eq(PARSE(&o, err, "--gate", "127.0.0.1:1", "--tls", "--ca", "ca.pem"), 0, "%s", err);
    cr_assert_eq(o.target, CV_BENCH_NATIVE);
    cr_assert(o.tls);
    cr_assert_str_eq(o.ca, "ca.pem");
}

Test(opts, help_and_version)
{
    struct cv_bench_opts o;
    char err[256] = "";
    cr_assert_eq(PARSE(&o, err, "--help"), 1);
    cr_assert_eq(PARSE(&o, err, "--gate", "x:1", "--version"), 1);
    cr_assert_not_null(strstr(cv_bench_usage, "--concurrency"));
}

/* Each bad command line fails with CV_EINVAL and a message containing want. */
static void refused(const char *want, int argc, char **argv)
{
    struct cv_bench_opts o;
    char err[256] = "";
    cr_assert_eq(cv_bench_opts_parse(argc, argv, &o, err, sizeof err), CV_EINVAL, "accepted, want \"%s\"", want);
    cr_assert_not_null(strstr(err, want), "message \"%s\", want \"%s\"", err, want);
}
#define REFUSED(want, ...)                                                                                  \
    do {                                                                                                    \
        char *argv_[] = {"cverse-bench", __VA_ARGS__, NULL};                                                \
        refused(want, (int)(sizeof argv_ / sizeof *argv_) - 1, argv_);                                      \
    } while (0)

Test(opts, bad_flags_name_the_problem)
{
    REFUSED("no target", "--concurrency", "4");
    REFUSED("give one target", "--gate", "127.0.0.1:1", "--http", "http://127.0.0.1:2");
    REFUSED("--gate 1.2.3", "--gate", "1.2.3");
    REFUSED("no http:// scheme", "--http", "ftp://127.0.0.1:443");
    REFUSED("--ca ca.pem: needs TLS", "--gate", "127.0.0.1:1", "--ca", "ca.pem"); /* native: --tls --ca */
    REFUSED("--ca ca.pem: needs TLS", "--http", "http://127.0.0.1:80", "--ca", "ca.pem");
    REFUSED("no http:// scheme", "--etcd", "127.0.0.1:2379");
    REFUSED("without a path", "--http", "http://127.0.0.1:80/api");
    REFUSED("unknown flag --conncurrency", "--gate", "h:1", "--conncurrency", "4");
    REFUSED("--concurrency needs a value", "--gate", "h:1", "--concurrency");
    REFUSED("--concurrency: expected a count", "--gate", "h:1", "--concurrency", "0");
    REFUSED("--concurrency: expected a count", "--gate", "h:1", "--concurrency", "-3");
    REFUSED("--objects: expected", "--gate", "h:1", "--objects", "12x");
    REFUSED("--rps: expected a rate", "--gate", "h:1", "--rps", "0");
    REFUSED("--duration: expected", "--gate", "h:1", "--duration", "10h");
    REFUSED("--duration: expected", "--gate", "h:1", "--duration", "0");
    REFUSED("--warmup: expected", "--gate", "h:1", "--warmup", "-1s");
    REFUSED("--timeout: expected", "--gate", "h:1", "--timeout", "2h");
    REFUSED("--op send: expected", "--gate", "h:1", "--op", "send");
    REFUSED("--op put is for --etcd", "--gate", "h:1", "--op", "put");
    REFUSED("--etcd supports --op put only", "--etcd", "http://h:1", "--op", "create");
    REFUSED("--body is for --op call", "--gate", "h:1", "--op", "create", "--body", "{}");
    REFUSED("--json takes no value", "--gate", "h:1", "--json=1");
    REFUSED("unexpected argument \"extra\"", "--gate", "h:1", "extra");
    REFUSED("--method a/b", "--gate", "h:1", "--method", "a/b");
}

Test(opts, durations)
{
    uint64_t ms;
    cr_assert_eq(cv_bench_parse_duration("10", &ms), 0);
    cr_assert_eq(ms, 10000);
    cr_assert_eq(cv_bench_parse_duration("2.5s", &ms), 0);
    cr_assert_eq(ms, 2500);
    cr_assert_eq(cv_bench_parse_duration("250ms", &ms), 0);
    cr_assert_eq(ms, 250);
    cr_assert_eq(cv_bench_parse_duration("2m", &ms), 0);
    cr_assert_eq(ms, 120000);
    cr_assert_eq(cv_bench_parse_duration("", &ms), CV_EINVAL);
    cr_assert_eq(cv_bench_parse_duration("5x", &ms), CV_EINVAL);
    cr_assert_eq(cv_bench_parse_duration("nan", &ms), CV_EINVAL);
}

static struct cv_bench_window *window(void)
{
    struct cv_bench_window *w = calloc(1, sizeof *w);
    cr_assert_not_null(w);
    return w;
}

Test(stats, percentiles_rate_and_errors)
{
    struct cv_bench_window *w = window();
    for (uint64_t i = 1; i <= 1000; i++) cv_bench_window_record(w, NULL, i * 1000); /* 1 us .. 1 ms */
    cv_bench_window_record(w, "UNAVAILABLE", 0);
    cv_bench_window_record(w, "UNAVAILABLE", 0);
    cv_bench_window_record(w, "HTTP 502/x", 0); /* sanitized into a JSON-safe name */
    struct cv_bench_summary s;
    cv_bench_summarize(w, 2.0, &s);
    cr_assert_eq(s.calls, 1003);
    cr_assert_eq(s.ok, 1000);
    cr_assert_eq(s.failed, 3);
    cr_assert_float_eq(s.rate, 500, 1e-9, "successful requests per second");
    cr_assert(s.p50_ms >= 0.5 && s.p50_ms <= 0.5 * 1.008, "p50 %f", s.p50_ms);
    cr_assert(s.p90_ms >= 0.9 && s.p90_ms <= 0.9 * 1.008, "p90 %f", s.p90_ms);
    cr_assert(s.p99_ms >= 0.99 && s.p99_ms <= 0.99 * 1.008, "p99 %f", s.p99_ms);
    cr_assert(s.p999_ms >= 0.999 && s.p999_ms <= 1.0, "p999 %f", s.p999_ms);
    cr_assert_float_eq(s.max_ms, 1.0, 1e-12);
    cr_assert_float_eq(s.mean_ms, 0.5005, 1e-9);
    cr_assert_eq(w->n_err, 2);
    cr_assert_str_eq(w->err_name[0], "UNAVAILABLE");
    cr_assert_eq(w->err_count[0], 2);
    cr_assert_str_eq(w->err_name[1], "HTTP_502_x");
    free(w);
}

Test(stats, json_report_has_the_issues_fields)
{
    struct cv_bench_window *w = window();
    cv_bench_window_record(w, NULL, 2000000); /* 2 ms */
    cv_bench_window_record(w, "DEADLINE_EXCEEDED", 0);
    struct cv_buf b = {0};
    cv_bench_report_json(&b, w, 1.0, "\"target\":\"native\"");
    cr_assert(!b.oom);
    cr_assert_eq(b.p[b.len - 1], '\n', "one line");
    json_error_t je;
    json_t *j = json_loads(b.p, 0, &je);
    cr_assert_not_null(j, "not JSON (%s): %s", je.text, b.p);
    cr_assert_eq(json_integer_value(json_object_get(j, "calls")), 2);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(j, "errors"), "DEADLINE_EXCEEDED")), 1);
    cr_assert_float_eq(json_number_value(json_object_get(j, "rate")), 1.0, 1e-9);
    const char *ms[] = {"p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms"};
    for (size_t i = 0; i < 5; i++) {
        json_t *v = json_object_get(j, ms[i]);
        cr_assert(json_is_number(v), "%s missing: %s", ms[i], b.p);
        cr_assert(json_number_value(v) >= 2.0 && json_number_value(v) <= 2.0 * 1.008, "%s", ms[i]);
    }
    cr_assert_str_eq(json_string_value(json_object_get(j, "target")), "native");
    json_decref(j);
    free(b.p);
    free(w);
}

Test(stats, merge_text_report_and_second_line)
{
    struct cv_bench_window *all = window(), *sec = window();
    cv_bench_window_record(sec, NULL, 1000000);
    cv_bench_window_record(sec, "UNAVAILABLE", 0);
    struct cv_buf line = {0};
    cv_bench_second_line(&line, 3, sec, 1.0);
    cr_assert_not_null(strstr(line.p, "3s"), "%s", line.p);
    cr_assert_not_null(strstr(line.p, "1/s"), "%s", line.p);
    cr_assert_not_null(strstr(line.p, "errors 1"), "%s", line.p);
    cv_bench_window_merge(all, sec);
    cv_bench_window_merge(all, sec);
    cr_assert_eq(all->ok, 2);
    cr_assert_eq(all->failed, 2);
    cr_assert_eq(all->err_count[0], 2);
    cr_assert_eq(all->lat.n, 2);
    struct cv_buf b = {0};
    cv_bench_report_text(&b, "title", all, 2.0);
    cr_assert_not_null(strstr(b.p, "title\n"), "%s", b.p);
    cr_assert_not_null(strstr(b.p, "calls    4 in 2.00 s (2 ok, 2 errors)"), "%s", b.p);
    cr_assert_not_null(strstr(b.p, "p999 1.000"), "%s", b.p);
    cr_assert_not_null(strstr(b.p, "UNAVAILABLE 2"), "%s", b.p);
    free(line.p);
    free(b.p);
    free(all);
    free(sec);
}

Test(stats, too_many_error_kinds_count_as_other)
{
    struct cv_bench_window *w = window();
    char name[16];
    for (int i = 0; i < CV_BENCH_ERR_KINDS + 4; i++) {
        snprintf(name, sizeof name, "E%d", i);
        cv_bench_window_record(w, name, 0);
    }
    cr_assert_eq(w->n_err, CV_BENCH_ERR_KINDS);
    cr_assert_str_eq(w->err_name[CV_BENCH_ERR_KINDS - 1], "OTHER");
    cr_assert_eq(w->failed, CV_BENCH_ERR_KINDS + 4, "every error counted");
    uint64_t sum = 0;
    for (unsigned i = 0; i < w->n_err; i++) sum += w->err_count[i];
    cr_assert_eq(sum, w->failed);
    free(w);
}
