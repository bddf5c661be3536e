/* cverse-bench's measurements: latencies and errors by code, the per-second line, the final report as
 * text or JSON (pure: formats into a cv_buf, prints nothing). */
#ifndef CV_BENCH_STATS_H
#define CV_BENCH_STATS_H

#include <stdint.h>

#include "util/buf.h"
#include "util/hist.h"

#define CV_BENCH_ERR_KINDS 16 /* distinct error codes kept; more are counted as "OTHER" */
#define CV_BENCH_ERR_NAME 32

/* Counters of one window (the whole run, or the last second). Latencies are of successful requests. */
struct cv_bench_window {
    struct cv_hist_fine lat; /* nanoseconds */
    uint64_t ok, failed;
    char err_name[CV_BENCH_ERR_KINDS][CV_BENCH_ERR_NAME];
    uint64_t err_count[CV_BENCH_ERR_KINDS];
    unsigned n_err;
};

/* Records one finished request: err NULL for success, else its status name ("UNAVAILABLE",
 * "DEADLINE_EXCEEDED", "HTTP_502", ...; characters other than [A-Za-z0-9_] become '_'). */
void cv_bench_window_record(struct cv_bench_window *w, const char *err, uint64_t latency_ns);
/* Adds src into dst. */
void cv_bench_window_merge(struct cv_bench_window *dst, const struct cv_bench_window *src);

/* The figures of a window over elapsed_s seconds. */
struct cv_bench_summary {
    uint64_t calls, ok, failed;
    double rate;                               /* successful requests per second */
    double p50_ms, p90_ms, p99_ms, p999_ms, max_ms, mean_ms;
};
void cv_bench_summarize(const struct cv_bench_window *w, double elapsed_s, struct cv_bench_summary *s);

/* "   3s   41234/s  p50 1.210 ms  p99 3.400 ms  errors 0\n" (t = seconds since the start). */
void cv_bench_second_line(struct cv_buf *b, double t, const struct cv_bench_window *w, double elapsed_s);
/* The final report, several lines; title names what was measured (one line, no newline). */
void cv_bench_report_text(struct cv_buf *b, const char *title, const struct cv_bench_window *w, double elapsed_s);
/* The same as one JSON object and a newline: {"calls","ok","errors":{CODE:n},"rate","p50_ms","p90_ms",
 * "p99_ms","p999_ms","max_ms","mean_ms","duration_s"} followed by extra (NULL or "\"k\":v,..." members). */
void cv_bench_report_json(struct cv_buf *b, const struct cv_bench_window *w, double elapsed_s, const char *extra);

#endif
