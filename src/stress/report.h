/* cverse-stress's verdict and final report: runs the checks over what the run collected and prints
 * phases, errors, churn events and every failure found. */
#ifndef CV_STRESS_REPORT_H
#define CV_STRESS_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "stress/churn.h"
#include "stress/endstate.h"
#include "stress/load.h"

struct cv_stress_report_in { /* all borrowed for the call */
    const struct cv_stress_opts *o;
    const struct cv_stress_cluster *c;
    const struct cv_stress_load *l;
    const struct cv_stress_churn *ch;
    const struct cv_stress_endstate *es;
    bool strict;
    uint64_t run_start, run_end; /* uv_hrtime() ns of the measured time */
};

/* Prints the report to out and returns the exit code: 0 pass, 1 a correctness failure, 2 the error
 * budget exceeded (1 wins over 2). */
int cv_stress_report(FILE *out, const struct cv_stress_report_in *in);

#endif
