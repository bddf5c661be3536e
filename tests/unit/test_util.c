/* Unit tests of the shared helpers in src/util: percent-decoding, the Prometheus writer, mkdir -p,
 * big-endian integers, the latency histogram. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cverse/error.h"
#include "util/be.h"
#include "util/fs.h"
#include "util/hist.h"
#include "util/pct.h"
#include "util/prom.h"

#include "lsan_check.h"
#include "tmpdir.h"

TestSuite(pct, .fini = cv_lsan_check);
TestSuite(prom, .fini = cv_lsan_check);
TestSuite(fs, .fini = cv_lsan_check);
TestSuite(be, .fini = cv_lsan_check);

static void decodes(const char *in, bool plus, const char *want)
{
    char out[256];
    int n = cv_pct_decode(in, strlen(in), plus, out);
    cr_assert_geq(n, 0, "decode(%s) = %s", in, cv_errname(n));
    cr_assert_str_eq(out, want, "decode(%s)", in);
    cr_assert_eq((size_t)n, strlen(want));
}

static void refuses(const char *in)
{
    char out[256];
    cr_assert_eq(cv_pct_decode(in, strlen(in), false, out), CV_EINVAL, "decode(%s) must fail", in);
}

Test(pct, decodes_escapes_and_plus_only_when_asked)
{
    decodes("a%2Fb", false, "a/b");
    decodes("%41%62c", false, "Abc");
    decodes("x+y", false, "x+y");
    decodes("x+y%20z", true, "x y z");
    decodes("", false, "");
    decodes("%e2%82%ac", false, "\xe2\x82\xac");
}

Test(pct, refuses_malformed_and_nul)
{
    refuses("%");
    refuses("a%4");
    refuses("%zz");
    refuses("%g0");
    refuses("a%00b");
}

Test(pct, dup_and_query_param)
{
    int err = 0;
    char *s = cv_pct_decode_dup("id%2F1", 6, false, &err);
    cr_assert_str_eq(s, "id/1");
    free(s);
    cr_assert_null(cv_pct_decode_dup("%x", 2, false, &err));
    cr_assert_eq(err, CV_EINVAL);

    char v[16];
    cr_assert_eq(cv_pct_query_param("a=1&type=Simple%43+x&b", "type", v, sizeof v), 0);
    cr_assert_str_eq(v, "SimpleC x");
    cr_assert_eq(cv_pct_query_param("atype=1", "type", v, sizeof v), CV_ENOTFOUND);
    cr_assert_eq(cv_pct_query_param("", "type", v, sizeof v), CV_ENOTFOUND);
    cr_assert_eq(cv_pct_query_param("type=%zz", "type", v, sizeof v), CV_EINVAL);
    cr_assert_eq(cv_pct_query_param("type=1234567890123456", "type", v, sizeof v), CV_ERANGE);
    cr_assert_eq(cv_pct_query_param("type=", "type", v, sizeof v), 0);
    cr_assert_str_eq(v, "");
}

Test(prom, families_samples_and_histograms)
{
    struct cv_buf b = {0};
    cv_prom_gauge(&b, "g", "A gauge.", 1.5);
    cv_prom_counter(&b, "c_total", "A counter.", 18446744073709551615ull);
    cv_prom_family(&b, "h_seconds", "histogram", "A histogram.");
    const double le[] = {0.001, 0.01, 0};
    const uint64_t counts[] = {2, 3, 1};
    cv_prom_histogram(&b, "h_seconds", "op=\"call\"", le, counts, 3, 0.25);
    cv_prom_histogram(&b, "h_seconds", NULL, le, counts, 3, 0.5);
    cr_assert(!b.oom);
    cr_assert_str_eq(b.p, "# HELP g A gauge.\n# TYPE g gauge\ng 1.5\n"
                          "# HELP c_total A counter.\n# TYPE c_total counter\nc_total 18446744073709551615\n"
                          "# HELP h_seconds A histogram.\n# TYPE h_seconds histogram\n"
                          "h_seconds_bucket{op=\"call\",le=\"0.001\"} 2\n"
                          "h_seconds_bucket{op=\"call\",le=\"0.01\"} 5\n"
                          "h_seconds_bucket{op=\"call\",le=\"+Inf\"} 6\n"
                          "h_seconds_sum{op=\"call\"} 0.25\nh_seconds_count{op=\"call\"} 6\n"
                          "h_seconds_bucket{le=\"0.001\"} 2\nh_seconds_bucket{le=\"0.01\"} 5\n"
                          "h_seconds_bucket{le=\"+Inf\"} 6\nh_seconds_sum 0.5\nh_seconds_count 6\n");
    free(b.p);
}

Test(prom, counters_over_an_enumeration)
{
    struct cv_buf b = {0};
    const char *const names[] = {"idle", "moved"};
    const uint64_t values[] = {3, 0};
    cv_prom_counters(&b, "d_total", "By reason.", "reason", names, values, 2);
    cr_assert(!b.oom);
    cr_assert_str_eq(b.p, "# HELP d_total By reason.\n# TYPE d_total counter\n"
                          "d_total{reason=\"idle\"} 3\nd_total{reason=\"moved\"} 0\n");
    free(b.p);
}

Test(fs, mkdir_p_creates_parents_and_accepts_existing)
{
    char dir[] = "/tmp/cv-test-util-XXXXXX", path[512];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/a/b/c", dir);
    cr_assert_eq(cv_mkdir_p(path), 0);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert(S_ISDIR(st.st_mode));
    cr_assert_eq(cv_mkdir_p(path), 0, "an existing directory is fine");
    /* A component that is a file cannot become a directory. */
    snprintf(path, sizeof path, "%s/file", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fclose(f);
    snprintf(path, sizeof path, "%s/file/sub", dir);
    cr_assert_eq(cv_mkdir_p(path), CV_EIO);
    char longp[5000];
    memset(longp, 'a', sizeof longp - 1);
    longp[sizeof longp - 1] = '\0';
    cr_assert_eq(cv_mkdir_p(longp), CV_EINVAL);
    cv_tmpdir_remove(dir);
}

/* The full-disk branch runs on a real full tmpfs in test_disk (it needs root to mount one). */
Test(fs, strerror_names_a_full_disk_only_when_it_is_full)
{
    cr_assert_str_eq(cv_fs_strerror(EIO, "/tmp"), strerror(EIO), "/tmp has room: a real I/O error");
    cr_assert_str_eq(cv_fs_strerror(EIO, "/nonexistent/dir"), strerror(EIO), "cannot tell: the errno as is");
    cr_assert_str_eq(cv_fs_strerror(EIO, NULL), strerror(EIO));
    cr_assert_str_eq(cv_fs_strerror(ENOSPC, "/tmp"), strerror(ENOSPC));
    cr_assert_str_eq(cv_fs_strerror(EACCES, "/tmp"), strerror(EACCES));
}

/* ---- big-endian integers (util/be.h) ---- */

Test(be, round_trips_in_network_order_at_any_alignment)
{
    uint8_t buf[16];
    memset(buf, 0xEE, sizeof buf);
    cv_be32_put(buf + 1, 0x01020304u);
    const uint8_t want32[] = {0xEE, 0x01, 0x02, 0x03, 0x04, 0xEE};
    cr_assert_arr_eq(buf, want32, sizeof want32, "cv_be32_put writes most significant byte first, 4 bytes");
    cr_assert_eq(cv_be32_get(buf + 1), 0x01020304u);
    cv_be64_put(buf + 3, 0x0102030405060708ull);
    const uint8_t want64[] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0xEE};
    cr_assert_arr_eq(buf + 3, want64, sizeof want64);
    cr_assert_eq(cv_be64_get(buf + 3), 0x0102030405060708ull);
    cv_be32_put(buf, 0xFFFFFFFFu);
    cr_assert_eq(cv_be32_get(buf), 0xFFFFFFFFu, "no sign extension");
    cv_be64_put(buf, UINT64_MAX - 1);
    cr_assert_eq(cv_be64_get(buf), UINT64_MAX - 1);
    cr_assert_eq(buf[7], 0xFE);
}

/* ---------------------------------------------------------------------------------------------------
 * The latency histogram (util/hist.h). */

TestSuite(hist, .fini = cv_lsan_check);

Test(hist, records_into_the_gates_buckets)
{
    const double want[CV_HIST_N - 1] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                        0.25,  0.5,    1,     2.5,  5,     10,   30};
    for (size_t i = 0; i < CV_HIST_N - 1; i++) cr_assert_eq(cv_hist_bounds[i], want[i], "bound %zu", i);
    struct cv_hist h = {0};
    cv_hist_record(&h, 0.001);     /* on a bound: that bucket (le) */
    cv_hist_record(&h, 0.0010001); /* just above: the next one */
    cv_hist_record_us(&h, 7000);   /* 7 ms: (5 ms, 10 ms] */
    cv_hist_record(&h, 31);        /* beyond 30 s: +Inf */
    cv_hist_record(&h, -1);        /* a clock step backwards counts as 0 */
    cr_assert_eq(h.counts[0], 2);
    cr_assert_eq(h.counts[1], 1);
    cr_assert_eq(h.counts[3], 1);
    cr_assert_eq(h.counts[CV_HIST_N - 1], 1);
    cr_assert_eq(cv_hist_count(&h), 5);
    cr_assert_float_eq(h.sum_s, 0.001 + 0.0010001 + 0.007 + 31, 1e-12);
}

Test(hist, merge_adds_counts_and_sums)
{
    struct cv_hist a = {0}, b = {0};
    cv_hist_record(&a, 0.002);
    cv_hist_record(&b, 0.002);
    cv_hist_record(&b, 3);
    cv_hist_merge(&a, &b);
    cr_assert_eq(a.counts[1], 2);
    cr_assert_eq(a.counts[11], 1, "3 s is in (2.5, 5]");
    cr_assert_eq(cv_hist_count(&a), 3);
    cr_assert_float_eq(a.sum_s, 3.004, 1e-12);
    cr_assert_eq(cv_hist_count(&b), 2, "the source is unchanged");
}

Test(hist, quantiles_interpolate_inside_a_bucket)
{
    struct cv_hist h = {0};
    cr_assert_eq(cv_hist_quantile(&h, 0.5), 0, "empty");
    for (int i = 0; i < 100; i++) cv_hist_record(&h, 0.0005); /* 100 in [0, 1 ms] */
    cr_assert_float_eq(cv_hist_quantile(&h, 0.5), 0.0005, 1e-12, "rank 50 of 100 in [0, 1 ms]");
    cr_assert_float_eq(cv_hist_quantile(&h, 0.99), 0.00099, 1e-12);
    for (int i = 0; i < 100; i++) cv_hist_record(&h, 0.02); /* 100 in (10 ms, 25 ms] */
    cr_assert_float_eq(cv_hist_quantile(&h, 0.5), 0.001, 1e-12, "rank 100 is the top of the first bucket");
    cr_assert_float_eq(cv_hist_quantile(&h, 0.75), 0.0175, 1e-12, "rank 150: half-way into (10, 25] ms");
    cr_assert_float_eq(cv_hist_quantile(&h, 1), 0.025, 1e-12);
    struct cv_hist slow = {0};
    cv_hist_record(&slow, 100);
    cr_assert_eq(cv_hist_quantile(&slow, 0.99), 30, "+Inf reports the last finite bound");
}

Test(hist, prometheus_series_with_cumulative_buckets)
{
    struct cv_hist h = {0};
    cv_hist_record(&h, 0.0005);
    cv_hist_record(&h, 0.2);
    struct cv_buf b = {0};
    cv_hist_prom(&b, "x_seconds", "op=\"call\"", &h);
    cr_assert(!b.oom);
    cr_assert_not_null(strstr(b.p, "x_seconds_bucket{op=\"call\",le=\"0.001\"} 1\n"), "%s", b.p);
    cr_assert_not_null(strstr(b.p, "x_seconds_bucket{op=\"call\",le=\"0.1\"} 1\n"), "%s", b.p);
    cr_assert_not_null(strstr(b.p, "x_seconds_bucket{op=\"call\",le=\"0.25\"} 2\n"), "%s", b.p);
    cr_assert_not_null(strstr(b.p, "x_seconds_bucket{op=\"call\",le=\"+Inf\"} 2\n"), "%s", b.p);
    cr_assert_not_null(strstr(b.p, "x_seconds_count{op=\"call\"} 2\n"), "%s", b.p);
    free(b.p);
}

/* The fine histogram (cverse-bench's percentiles). */
Test(hist, fine_quantiles_within_one_percent)
{
    struct cv_hist_fine *h = calloc(1, sizeof *h);
    cr_assert_not_null(h);
    cr_assert_eq(cv_hist_fine_quantile(h, 0.5), 0, "empty");
    for (uint64_t v = 1; v <= 100000; v++) cv_hist_fine_record(h, v * 1000); /* 1 us .. 100 ms */
    cr_assert_eq(h->n, 100000);
    cr_assert_eq(h->min_ns, 1000);
    cr_assert_eq(h->max_ns, 100000000);
    const double qs[] = {0.5, 0.9, 0.99, 0.999};
    for (size_t i = 0; i < 4; i++) {
        double want = qs[i] * 100000 * 1000, got = (double)cv_hist_fine_quantile(h, qs[i]);
        cr_assert(got >= want && got <= want * 1.008, "q %.3f: %.0f, want %.0f (+0.8%%)", qs[i], got, want);
    }
    cr_assert_eq(cv_hist_fine_quantile(h, 1), 100000000, "q 1 is the max");
    cr_assert_eq(cv_hist_fine_quantile(h, 0), 1000, "q 0 is the min");
    free(h);
}

Test(hist, fine_small_values_exact_large_clamped_and_merge)
{
    struct cv_hist_fine *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    cr_assert(a && b);
    cv_hist_fine_record(a, 0);
    cv_hist_fine_record(a, 200); /* below 256 ns: its own bucket */
    cr_assert_eq(cv_hist_fine_quantile(a, 0.5), 0);
    cr_assert_eq(cv_hist_fine_quantile(a, 0.99), 200);
    cv_hist_fine_record(b, UINT64_MAX); /* clamped into the top bucket, max kept */
    cv_hist_fine_merge(a, b);
    cr_assert_eq(a->n, 3);
    cr_assert_eq(a->min_ns, 0);
    cr_assert_eq(a->max_ns, UINT64_MAX);
    cr_assert_eq(cv_hist_fine_quantile(a, 0.99), (1ull << CV_HIST_FINE_TOP) - 1, "top bucket's bound");
    cr_assert_eq(b->n, 1, "the source is unchanged");
    free(a);
    free(b);
}
