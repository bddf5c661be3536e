/* Prometheus text exposition format (version 0.0.4): HELP/TYPE lines, samples with optional labels,
 * histogram series with cumulative buckets.
 *
 * Happy path: a metrics page (gate, node API) starts a cv_buf, writes each family's HELP/TYPE line and
 * its samples (cv_prom_gauge / cv_prom_counter do both for an unlabelled value), a histogram's per-bucket
 * counts are summed into cumulative _bucket lines (the last is le="+Inf"), then _sum and _count.
 * Failure modes: writes go through cv_buf, so running out of memory only sets the buffer's oom flag, which
 * the page's sender checks once; names, labels and help text are the caller's constants and are written
 * as given (no escaping). */
#include "util/prom.h"

#include <stdio.h>

#include <inttypes.h>

void cv_prom_family(struct cv_buf *b, const char *name, const char *type, const char *help)
{
    cv_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void cv_prom_sample(struct cv_buf *b, const char *name, const char *labels, double v)
{
    if (labels && *labels) cv_buf_printf(b, "%s{%s} %.17g\n", name, labels, v);
    else cv_buf_printf(b, "%s %.17g\n", name, v);
}

void cv_prom_sample_u64(struct cv_buf *b, const char *name, const char *labels, uint64_t v)
{
    if (labels && *labels) cv_buf_printf(b, "%s{%s} %" PRIu64 "\n", name, labels, v);
    else cv_buf_printf(b, "%s %" PRIu64 "\n", name, v);
}

void cv_prom_gauge(struct cv_buf *b, const char *name, const char *help, double v)
{
    cv_prom_family(b, name, "gauge", help);
    cv_prom_sample(b, name, NULL, v);
}

void cv_prom_counter(struct cv_buf *b, const char *name, const char *help, uint64_t v)
{
    cv_prom_family(b, name, "counter", help);
    cv_prom_sample_u64(b, name, NULL, v);
}

void cv_prom_counters(struct cv_buf *b, const char *name, const char *help, const char *label,
                      const char *const *names, const uint64_t *values, size_t n)
{
    char labels[128];
    cv_prom_family(b, name, "counter", help);
    for (size_t i = 0; i < n; i++) {
        snprintf(labels, sizeof labels, "%s=\"%s\"", label, names[i]);
        cv_prom_sample_u64(b, name, labels, values[i]);
    }
}

void cv_prom_histogram(struct cv_buf *b, const char *name, const char *labels, const double *le_s,
                       const uint64_t *counts, size_t n, double sum_s)
{
    const char *sep = labels && *labels ? "," : "";
    if (!labels) labels = "";
    uint64_t cum = 0;
    for (size_t i = 0; i < n; i++) {
        cum += counts[i];
        if (i == n - 1)
            cv_buf_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n", name, labels, sep, cum);
        else
            cv_buf_printf(b, "%s_bucket{%s%sle=\"%g\"} %" PRIu64 "\n", name, labels, sep, le_s[i], cum);
    }
    if (*labels) {
        cv_buf_printf(b, "%s_sum{%s} %.9g\n%s_count{%s} %" PRIu64 "\n", name, labels, sum_s, name, labels, cum);
    } else {
        cv_buf_printf(b, "%s_sum %.9g\n%s_count %" PRIu64 "\n", name, sum_s, name, cum);
    }
}
