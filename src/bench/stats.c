/* cverse-bench's measurements and reports.
 *
 * Happy path: every finished request goes into a window (the fine histogram of util/hist.h for its
 * latency, or the error table by status name); the load loop keeps one window per second (printed and
 * merged into the run's window) and formats the run's at the end, as text or as JSON.
 * Failure modes: more than CV_BENCH_ERR_KINDS distinct error names: the rest count under "OTHER";
 * an out-of-memory buffer is the caller's to check (cv_buf.oom). */
#include "bench/stats.h"

#include <string.h>

static void err_name(char *dst, const char *src)
{
    size_t i = 0;
    for (; src[i] && i < CV_BENCH_ERR_NAME - 1; i++) {
        char c = src[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
        dst[i] = ok ? c : '_';
    }
    dst[i] = '\0';
}

static void err_add(struct cv_bench_window *w, const char *name, uint64_t n)
{
    char clean[CV_BENCH_ERR_NAME];
    err_name(clean, name);
    unsigned i = 0;
    while (i < w->n_err && strcmp(w->err_name[i], clean) != 0) i++;
    if (i == w->n_err) {
        if (w->n_err == CV_BENCH_ERR_KINDS) {
            i = CV_BENCH_ERR_KINDS - 1; /* the last slot becomes OTHER */
            strcpy(w->err_name[i], "OTHER");
        } else {
            strcpy(w->err_name[i], clean);
            w->err_count[i] = 0;
            w->n_err++;
        }
    }
    w->err_count[i] += n;
    w->failed += n;
}

void cv_bench_window_record(struct cv_bench_window *w, const char *err, uint64_t latency_ns)
{
    if (err) {
        err_add(w, err, 1);
        return;
    }
    w->ok++;
    cv_hist_fine_record(&w->lat, latency_ns);
}

void cv_bench_window_merge(struct cv_bench_window *dst, const struct cv_bench_window *src)
{
    cv_hist_fine_merge(&dst->lat, &src->lat);
    dst->ok += src->ok;
    for (unsigned i = 0; i < src->n_err; i++) err_add(dst, src->err_name[i], src->err_count[i]);
}

void cv_bench_summarize(const struct cv_bench_window *w, double elapsed_s, struct cv_bench_summary *s)
{
    const struct cv_hist_fine *h = &w->lat;
    s->ok = w->ok;
    s->failed = w->failed;
    s->calls = w->ok + w->failed;
    s->rate = elapsed_s > 0 ? (double)w->ok / elapsed_s : 0;
    s->p50_ms = (double)cv_hist_fine_quantile(h, 0.50) / 1e6;
    s->p90_ms = (double)cv_hist_fine_quantile(h, 0.90) / 1e6;
    s->p99_ms = (double)cv_hist_fine_quantile(h, 0.99) / 1e6;
    s->p999_ms = (double)cv_hist_fine_quantile(h, 0.999) / 1e6;
    s->max_ms = (double)h->max_ns / 1e6;
    s->mean_ms = h->n ? h->sum_ns / (double)h->n / 1e6 : 0;
}

void cv_bench_second_line(struct cv_buf *b, double t, const struct cv_bench_window *w, double elapsed_s)
{
    struct cv_bench_summary s;
    cv_bench_summarize(w, elapsed_s, &s);
    cv_buf_printf(b, "%5.0fs %9.0f/s  p50 %.3f ms  p99 %.3f ms  errors %llu\n", t, s.rate, s.p50_ms, s.p99_ms,
                  (unsigned long long)s.failed);
}

void cv_bench_report_text(struct cv_buf *b, const char *title, const struct cv_bench_window *w, double elapsed_s)
{
    struct cv_bench_summary s;
    cv_bench_summarize(w, elapsed_s, &s);
    cv_buf_printf(b, "%s\n", title);
    cv_buf_printf(b, "  calls    %llu in %.2f s (%llu ok, %llu errors)\n", (unsigned long long)s.calls, elapsed_s,
                  (unsigned long long)s.ok, (unsigned long long)s.failed);
    cv_buf_printf(b, "  rate     %.1f/s\n", s.rate);
    cv_buf_printf(b, "  latency  p50 %.3f  p90 %.3f  p99 %.3f  p999 %.3f  max %.3f  mean %.3f ms\n", s.p50_ms,
                  s.p90_ms, s.p99_ms, s.p999_ms, s.max_ms, s.mean_ms);
    if (!w->n_err) return;
    cv_buf_printf(b, "  errors  ");
    for (unsigned i = 0; i < w->n_err; i++)
        cv_buf_printf(b, " %s %llu%s", w->err_name[i], (unsigned long long)w->err_count[i],
                      i + 1 < w->n_err ? "," : "\n");
}

void cv_bench_report_json(struct cv_buf *b, const struct cv_bench_window *w, double elapsed_s, const char *extra)
{
    struct cv_bench_summary s;
    cv_bench_summarize(w, elapsed_s, &s);
    cv_buf_printf(b, "{\"calls\":%llu,\"ok\":%llu,\"errors\":{", (unsigned long long)s.calls,
                  (unsigned long long)s.ok);
    for (unsigned i = 0; i < w->n_err; i++)
        cv_buf_printf(b, "%s\"%s\":%llu", i ? "," : "", w->err_name[i], (unsigned long long)w->err_count[i]);
    cv_buf_printf(b,
                  "},\"rate\":%.1f,\"p50_ms\":%.4f,\"p90_ms\":%.4f,\"p99_ms\":%.4f,\"p999_ms\":%.4f,"
                  "\"max_ms\":%.4f,\"mean_ms\":%.4f,\"duration_s\":%.3f%s%s}\n",
                  s.rate, s.p50_ms, s.p90_ms, s.p99_ms, s.p999_ms, s.max_ms, s.mean_ms, elapsed_s,
                  extra && *extra ? "," : "", extra ? extra : "");
}
