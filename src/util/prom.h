/* Prometheus text exposition (format 0.0.4) into a cv_buf: the one writer of every /metrics page. */
#ifndef CV_UTIL_PROM_H
#define CV_UTIL_PROM_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

/* Content-Type of a metrics page. */
#define CV_PROM_CONTENT_TYPE "text/plain; version=0.0.4"

/* "# HELP name help" and "# TYPE name type" (type: "counter", "gauge", "histogram"). Once per family,
 * before its samples. */
void cv_prom_family(struct cv_buf *b, const char *name, const char *type, const char *help);

/* One sample "name{labels} value". labels: NULL or the inside of the braces, already escaped, e.g.
 * "op=\"call\",result=\"OK\"". Integral counters use the _u64 form (exact beyond 2^53). */
void cv_prom_sample(struct cv_buf *b, const char *name, const char *labels, double v);
void cv_prom_sample_u64(struct cv_buf *b, const char *name, const char *labels, uint64_t v);

/* A family with a single unlabelled sample. */
void cv_prom_gauge(struct cv_buf *b, const char *name, const char *help, double v);
void cv_prom_counter(struct cv_buf *b, const char *name, const char *help, uint64_t v);

/* A counter family with one label over an enumeration: name{label="names[i]"} values[i] for i < n (every
 * value, zeros included, so a dashboard sees each series from the start). */
void cv_prom_counters(struct cv_buf *b, const char *name, const char *help, const char *label,
                      const char *const *names, const uint64_t *values, size_t n);

/* The samples of one histogram series (the family line is written separately, once):
 * name_bucket{labels,le="…"} cumulated over counts[0..n) where le_s[i] is bucket i's upper bound in
 * seconds and the last bucket is +Inf (le_s[n-1] unused), then name_sum and name_count. counts are per
 * bucket, not cumulative. */
void cv_prom_histogram(struct cv_buf *b, const char *name, const char *labels, const double *le_s,
                       const uint64_t *counts, size_t n, double sum_s);

#endif
