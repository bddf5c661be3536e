/* Fixed-bucket latency histogram.
 *
 * Happy path: a counter array of CV_HIST_N buckets with fixed bounds (the gate's request buckets since
 * issue 4: 1 ms .. 30 s and +Inf) gets one increment per recorded value, found by a short linear scan
 * (15 bounds: cheaper than a binary search at this size), and the sum in seconds. Readers copy the
 * struct, merge copies, estimate p50/p99 by linear interpolation inside a bucket (as Prometheus's
 * histogram_quantile does) and write it through util/prom.h.
 * Failure modes: none; a value beyond the last finite bound lands in +Inf, a quantile that falls there
 * is reported as the last finite bound (the estimate cannot say more).
 *
 * The fine histogram (cv_hist_fine) is HdrHistogram's log-linear layout over nanoseconds: a value's
 * bucket is found with one count-leading-zeros and a shift (no scan), so recording stays O(1) at a
 * million values per second; quantiles walk the ~4k buckets once. */
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

/* Bucket of ns: exact below 2^(BITS+1); else the power of two k and the top BITS+1 bits of the value. */
static size_t fine_index(uint64_t ns)
{
    if (ns >= (1ull << CV_HIST_FINE_TOP)) ns = (1ull << CV_HIST_FINE_TOP) - 1;
    if (ns < (2ull << CV_HIST_FINE_BITS)) return (size_t)ns;
    unsigned k = 63u - (unsigned)__builtin_clzll(ns), shift = k - CV_HIST_FINE_BITS;
    return ((size_t)shift << CV_HIST_FINE_BITS) + (size_t)(ns >> shift);
}

/* Largest value that lands in bucket i. */
static uint64_t fine_upper(size_t i)
{
    if (i < (2u << CV_HIST_FINE_BITS)) return i;
    size_t shift = (i >> CV_HIST_FINE_BITS) - 1;
    uint64_t top = (uint64_t)(i - (shift << CV_HIST_FINE_BITS));
    return ((top + 1) << shift) - 1;
}

void cv_hist_fine_record(struct cv_hist_fine *h, uint64_t ns)
{
    h->counts[fine_index(ns)]++;
    if (h->n == 0 || ns < h->min_ns) h->min_ns = ns;
    if (ns > h->max_ns) h->max_ns = ns;
    h->n++;
    h->sum_ns += (double)ns;
}

void cv_hist_fine_merge(struct cv_hist_fine *dst, const struct cv_hist_fine *src)
{
    if (src->n == 0) return;
    for (size_t i = 0; i < CV_HIST_FINE_N; i++) dst->counts[i] += src->counts[i];
    if (dst->n == 0 || src->min_ns < dst->min_ns) dst->min_ns = src->min_ns;
    if (src->max_ns > dst->max_ns) dst->max_ns = src->max_ns;
    dst->n += src->n;
    dst->sum_ns += src->sum_ns;
}

uint64_t cv_hist_fine_quantile(const struct cv_hist_fine *h, double q)
{
    if (h->n == 0) return 0;
    if (!(q > 0)) return h->min_ns;
    if (q >= 1) return h->max_ns;
    uint64_t rank = (uint64_t)(q * (double)h->n), seen = 0;
    if ((double)rank < q * (double)h->n) rank++; /* ceil */
    if (rank == 0) rank = 1;
    for (size_t i = 0; i < CV_HIST_FINE_N; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t v = fine_upper(i);
            return v > h->max_ns ? h->max_ns : v;
        }
    }
    return h->max_ns; /* not reached: rank <= n */
}
