/* cverse-stress's verdict (see report.h).
 *
 * Happy path: the correctness checks (history: exact counts and linearizable counters; the activation-log
 * checker; the end state; processes that exited unasked; nodes that did not come back), then the
 * availability rules (graceful churn modes and no churn: not one failed attempt; sigkill / sigstop: only
 * retryable errors, each inside the error window after a churn event), then the figures: per phase
 * p50/p90/p99/p999, errors by code, every churn event with the node's way back to /ready and the
 * longest operation that started after it (retries included: the gates retry on their own, so a
 * client sees unavailability as latency more often than as errors).
 * Failure modes: each failure is printed as one "FAIL ..." line with the object or node, the values and
 * the time (seconds since the tool started). */
#include "stress/report.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "util/actcheck.h"
#include "util/actlog.h"
#include "util/buf.h"

static const char *phase_names[] = {"steady", "churn", "after"};

static double rel(const struct cv_stress_report_in *in, uint64_t ns)
{
    return ns > in->l->hist.t0_ns ? (double)(ns - in->l->hist.t0_ns) / 1e9 : 0;
}

static uint64_t window_ns(const struct cv_stress_report_in *in)
{
    if (in->o->error_window_ms) return in->o->error_window_ms * 1000000ull;
    return (2ull * in->c->cfg->lease_ttl_ms + in->o->churn_downtime_ms + 3000ull) * 1000000ull;
}

/* The churn event whose error window holds t, or -1. */
static int event_of(const struct cv_stress_report_in *in, uint64_t t)
{
    for (unsigned k = in->ch->n_ev; k-- > 0;) {
        const struct cv_stress_event *e = &in->ch->ev[k];
        uint64_t back = e->ready_ns ? e->ready_ns : in->run_end;
        if (t >= e->t_ns && t <= back + window_ns(in)) return (int)k;
    }
    return -1;
}

static void phases(FILE *out, const struct cv_stress_report_in *in)
{
    fprintf(out, "  phase     ops        ok  errors  p50 ms  p90 ms  p99 ms  p999 ms  errors by code\n");
    for (int p = 0; p < CV_PHASES; p++) {
        const struct cv_bench_window *w = &in->l->phase[p];
        if (!w->ok && !w->failed) continue;
        struct cv_bench_summary s;
        cv_bench_summarize(w, 1.0, &s);
        fprintf(out, "  %-7s %9" PRIu64 " %9" PRIu64 " %7" PRIu64 " %7.2f %7.2f %7.2f %8.2f ", phase_names[p], s.ok + s.failed,
                s.ok, s.failed, s.p50_ms, s.p90_ms, s.p99_ms, s.p999_ms);
        for (unsigned k = 0; k < w->n_err; k++) fprintf(out, " %s=%" PRIu64, w->err_name[k], w->err_count[k]);
        fprintf(out, "\n");
    }
}

static void events(FILE *out, const struct cv_stress_report_in *in)
{
    const struct cv_stress_churn *ch = in->ch;
    if (!ch->n_ev) return;
    fprintf(out, "  churn events (%s): time s, node, back to /ready after s, longest op s, errors\n", ch->ev[0].mode);
    for (unsigned k = 0; k < ch->n_ev; k++) {
        const struct cv_stress_event *e = &ch->ev[k];
        uint64_t until = k + 1 < ch->n_ev ? ch->ev[k + 1].t_ns : UINT64_MAX, longest = 0, errs = 0;
        for (size_t i = 0; i < in->l->hist.n; i++) {
            const struct cv_stress_op *op = &in->l->hist.ops[i];
            if (op->start_ns >= e->t_ns && op->start_ns < until && op->end_ns - op->start_ns > longest)
                longest = op->end_ns - op->start_ns;
        }
        for (size_t i = 0; i < in->l->n_errs; i++) errs += in->l->errs[i].t_ns >= e->t_ns && in->l->errs[i].t_ns < until;
        fprintf(out, "    %8.1f  %-10s %8.2f  %8.2f  %" PRIu64 "\n", rel(in, e->t_ns), e->node,
                e->ready_ns ? (double)(e->ready_ns - e->t_ns) / 1e9 : -1.0, (double)longest / 1e9, errs);
    }
}

/* Availability: returns the number of errors that break the rules, printing the first few. */
static size_t availability(FILE *out, const struct cv_stress_report_in *in)
{
    bool graceful = cv_stress_churn_graceful(in->o->churn_mode) || !in->o->churn;
    size_t bad = 0;
    for (size_t i = 0; i < in->l->n_errs; i++) {
        const struct cv_stress_err *e = &in->l->errs[i];
        if (e->t_ns < in->run_start) continue; /* creates and the probe */
        const char *why = graceful ? "a failed call under graceful churn (or none)"
                          : !e->retryable ? "a non-retryable error"
                          : event_of(in, e->t_ns) < 0 ? "an error outside every churn event's window" : NULL;
        if (!why) continue;
        if (bad++ < 10) fprintf(out, "  BUDGET %s: %s at %.3f s\n", why, e->code, rel(in, e->t_ns));
    }
    if (bad > 10) fprintf(out, "  BUDGET ... and %zu more\n", bad - 10);
    return bad;
}

static size_t correctness(FILE *out, const struct cv_stress_report_in *in)
{
    struct cv_buf b = {0}, f = {0};
    uint64_t extra = 0;
    size_t fails = cv_stress_check(&in->l->hist, in->l->finals, in->l->ids, in->strict, 20, &b, &f, &extra);
    if (fails) fprintf(out, "  FAIL counters (%zu):\n%s", fails, b.p ? b.p : "");
    if (extra)
        fprintf(out, "  finding: final - acked = %" PRIu64 " double-applied retries (increments applied without their own "
                     "acknowledgement; %s):\n%s", extra, in->strict ? "a failure: strict count" : "reported, not failed: count not strict",
                f.p ? f.p : "");
    free(b.p);
    free(f.p);
    char rep[2048];
    size_t acts = 0;
    int over = cv_actcheck_file(in->c->actlog, rep, sizeof rep, &acts);
    if (!in->c->actlog[0]) fprintf(out, "  activations: not checked (attached, and no $%s names the cluster's log)\n", CV_ACTLOG_ENV);
    else fprintf(out, "  activations: %zu in the log, %d overlapping\n", acts, over < 0 ? 0 : over);
    if (over) fprintf(out, "  FAIL one activation: %s\n%s", over < 0 ? "the log could not be read" : "overlaps", rep);
    fails += over != 0;
    if (!in->es->ok) fprintf(out, "  FAIL end state did not converge: %s\n", in->es->report);
    else fprintf(out, "  end state: converged after %.1f s (shard maps, one running owner per shard, catalog views)\n",
                 in->es->converged_s);
    fails += !in->es->ok;
    for (unsigned i = 0; i < in->c->n_nodes + in->c->n_gates; i++)
        if (in->c->p[i].unexpected_exits) {
            fprintf(out, "  FAIL %s exited unasked or badly %u time(s) (last: %s)\n", in->c->p[i].id,
                    in->c->p[i].unexpected_exits, in->c->p[i].last_exit);
            fails++;
        }
    if (in->ch->failed) fprintf(out, "  FAIL churn: %s\n", in->ch->failure);
    fails += in->ch->failed;
    if (in->l->oom) fprintf(out, "  FAIL the history is incomplete (out of memory)\n");
    return fails + in->l->oom;
}

int cv_stress_report(FILE *out, const struct cv_stress_report_in *in)
{
    const struct cv_stress_opts *o = in->o;
    uint64_t inc = 0, get = 0, unacked = 0;
    for (size_t i = 0; i < in->l->hist.n; i++) {
        inc += in->l->hist.ops[i].kind == CV_OP_INC;
        get += in->l->hist.ops[i].kind == CV_OP_GET;
        unacked += !in->l->hist.ops[i].ok;
    }
    fprintf(out, "cverse-stress: %u clients, %u counters, %.1f s, mix %s, churn %s, seed %" PRIu64 ", call ids %s\n",
            o->clients, o->objects, (double)(in->run_end - in->run_start) / 1e9, o->mix == CV_MIX_GOVERSE ? "goverse" : "counters",
            o->churn ? cv_stress_churn_name(o->churn_mode) : "off", o->seed, in->l->ids ? "yes" : "no");
    fprintf(out, "  operations %zu (Increment %" PRIu64 ", GetValue %" PRIu64 "), unacknowledged %" PRIu64 "\n",
            in->l->hist.n, inc, get, unacked);
    phases(out, in);
    events(out, in);
    size_t fails = correctness(out, in);
    size_t budget = availability(out, in);
    int code = fails ? 1 : budget ? 2 : 0;
    fprintf(out, "verdict: %s (exit %d)\n", code == 0 ? "PASS" : code == 1 ? "FAIL: correctness" : "FAIL: error budget exceeded", code);
    return code;
}
