/* A fixed-bucket latency histogram (the one histogram of the gate's and the nodes' statistics): record,
 * merge, estimate quantiles, write as Prometheus text. */
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

#endif
