/* A fixed-bucket latency histogram (the one histogram of the gate's and the nodes' statistics): record,
 * merge, estimate quantiles, write as Prometheus text; and its fine-grained sibling for load tools. */
#ifndef CV_UTIL_HIST_H
#define CV_UTIL_HIST_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

/* Buckets: upper bounds in seconds (1 ms .. 30 s); the last bucket is +Inf (its bound, 0, is unused). */
#define CV_HIST_N 15
extern const double cv_hist_bounds[CV_HIST_N];

/* Zero-initialised it is an empty histogram; plain data (copy it to take a snapshot). */
struct cv_hist {
    uint64_t counts[CV_HIST_N]; /* per bucket, not cumulative: bucket i holds values <= bounds[i] (and
                                 * > bounds[i-1]) */
    double sum_s;               /* sum of the recorded values, seconds */
};

/* Records one value (negative values count as 0). No allocation, no I/O. */
void cv_hist_record(struct cv_hist *h, double seconds);
void cv_hist_record_us(struct cv_hist *h, uint64_t us);
/* Adds src's counts and sum to dst. */
void cv_hist_merge(struct cv_hist *dst, const struct cv_hist *src);
/* Values recorded. */
uint64_t cv_hist_count(const struct cv_hist *h);
/* Estimate of quantile q (0..1) in seconds: linear interpolation inside the bucket that holds the rank
 * q*count (the first bucket starts at 0); a rank in the +Inf bucket gives the last finite bound. 0 when
 * the histogram is empty. */
double cv_hist_quantile(const struct cv_hist *h, double q);
/* The samples of one Prometheus histogram series (the family line is the caller's; util/prom.h). */
void cv_hist_prom(struct cv_buf *b, const char *name, const char *labels, const struct cv_hist *h);

/* The fine-grained histogram (cverse-bench): the 15 buckets above cannot tell 30 us from 900 us, nor
 * estimate p999. Log-linear buckets over nanoseconds: values below 2^(CV_HIST_FINE_BITS+1) ns exact,
 * above that 2^CV_HIST_FINE_BITS buckets per power of two (relative error < 1/128 = 0.8%), up to
 * 2^CV_HIST_FINE_TOP ns (~18 min; larger values are clamped). About 34 KiB: allocate it, not on a
 * small stack. Zero-initialised it is empty; plain data (copy to snapshot, memset to reset). */
#define CV_HIST_FINE_BITS 7
#define CV_HIST_FINE_TOP 40
#define CV_HIST_FINE_N ((CV_HIST_FINE_TOP - CV_HIST_FINE_BITS + 1) << CV_HIST_FINE_BITS)
struct cv_hist_fine {
    uint64_t counts[CV_HIST_FINE_N];
    uint64_t n, max_ns, min_ns; /* min_ns is meaningful when n > 0 */
    double sum_ns;
};

void cv_hist_fine_record(struct cv_hist_fine *h, uint64_t ns);
void cv_hist_fine_merge(struct cv_hist_fine *dst, const struct cv_hist_fine *src);
/* The value at quantile q (0..1), nanoseconds: the upper bound of the bucket holding the ceil(q*n)-th
 * smallest value (never above the largest value recorded), so it errs high by < 0.8%. 0 when empty. */
uint64_t cv_hist_fine_quantile(const struct cv_hist_fine *h, double q);

#endif
