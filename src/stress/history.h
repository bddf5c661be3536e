/* cverse-stress's record of every operation and the checks over it: exact counts and linearizable
 * counters (pure: no I/O; failures are formatted into a cv_buf). */
#ifndef CV_STRESS_HISTORY_H
#define CV_STRESS_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

enum cv_stress_kind { CV_OP_INC, CV_OP_GET, CV_OP_CREATE };

/* One logical operation of a client (all its attempts). Times: uv_hrtime() nanoseconds. */
struct cv_stress_op {
    uint32_t obj, client;
    uint8_t kind;      /* enum cv_stress_kind */
    bool ok;           /* an answer with a value arrived (else every attempt failed: outcome unknown) */
    uint16_t attempts; /* sent attempts (each may have been applied unless they carried one call id) */
    int64_t value;     /* ok INC: the value it returned; ok GET: the value read */
    uint64_t start_ns, end_ns; /* first attempt sent .. answer (or giving up) */
};

struct cv_stress_history {
    struct cv_stress_op *ops;
    size_t n, cap;
    uint32_t n_objects;
    uint64_t t0_ns; /* start of the run, for times in messages */
};

/* 0 or CV_ENOMEM. */
int cv_stress_history_add(struct cv_stress_history *h, const struct cv_stress_op *op);
void cv_stress_history_free(struct cv_stress_history *h);

/* Checks every object; appends one line per failure (capped at max_lines, then a count) to out. ids:
 * increments carried call ids (a retried one applies once). strict: final must equal acked exactly;
 * when not strict an object's final - acked is allowed, as slack of the upper bound too, and findings
 * gets, per such object, the first operation that saw a value above the increments started (where the
 * double application shows). finals: n_objects values read at the end (-1 unread). *extra gets
 * sum(final - acked) over the objects where it is positive. Returns the number of failures. */
size_t cv_stress_check(const struct cv_stress_history *h, const int64_t *finals, bool ids, bool strict,
                       size_t max_lines, struct cv_buf *out, struct cv_buf *findings, uint64_t *extra);

#endif
