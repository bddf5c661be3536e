/* Fixed-bucket latency histogram.
 *
 * Happy path: a counter array of CV_HIST_N buckets with fixed bounds (the gate's request buckets since
 * issue 4: 1 ms .. 30 s and +Inf) gets one increment per recorded value, found by a short linear scan
 * (15 bounds: cheaper than a binary search at this size), and the sum in seconds. Readers copy the
 * struct, merge copies, estimate p50/p99 by linear interpolation inside a bucket (as Prometheus's
 * histogram_quantile does) and write it through util/prom.h.
 * Failure modes: none; a value beyond the last finite bound lands in +Inf, a quantile that falls there
 * is reported as the last finite bound (the estimate cannot say more). */
#include "util/hist.h"

#include "util/prom.h"

const double cv_hist_bounds[CV_HIST_N] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                          0.5,   1,      2.5,   5,    10,   30,    0};

void cv_hist_record(struct cv_hist *h, double seconds)
{
    if (!(seconds > 0)) seconds = 0; /* negative or NaN */
    size_t b = 0;
    while (b < CV_HIST_N - 1 && seconds > cv_hist_bounds[b]) b++;
    h->counts[b]++;
    h->sum_s += seconds;
}

void cv_hist_record_us(struct cv_hist *h, uint64_t us)
{
    cv_hist_record(h, (double)us / 1e6);
}

void cv_hist_merge(struct cv_hist *dst, const struct cv_hist *src)
{
    for (size_t i = 0; i < CV_HIST_N; i++) dst->counts[i] += src->counts[i];
    dst->sum_s += src->sum_s;
}

uint64_t cv_hist_count(const struct cv_hist *h)
{
    uint64_t n = 0;
    for (size_t i = 0; i < CV_HIST_N; i++) n += h->counts[i];
    return n;
}

double cv_hist_quantile(const struct cv_hist *h, double q)
{
    uint64_t n = cv_hist_count(h);
    if (n == 0) return 0;
    if (q < 0) q = 0;
    if (q > 1) q = 1;
    double rank = q * (double)n, below = 0;
    for (size_t i = 0; i < CV_HIST_N; i++) {
        double c = (double)h->counts[i];
        if (c == 0 || below + c < rank) {
            below += c;
            continue;
        }
        if (i == CV_HIST_N - 1) return cv_hist_bounds[CV_HIST_N - 2];
        double lo = i ? cv_hist_bounds[i - 1] : 0, hi = cv_hist_bounds[i];
        return lo + (hi - lo) * (rank - below) / c;
    }
    return cv_hist_bounds[CV_HIST_N - 2]; /* not reached: rank <= n */
}

void cv_hist_prom(struct cv_buf *b, const char *name, const char *labels, const struct cv_hist *h)
{
    cv_prom_histogram(b, name, labels, cv_hist_bounds, h->counts, CV_HIST_N, h->sum_s);
}
