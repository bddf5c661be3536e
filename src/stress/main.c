/* cverse-stress: drives clients against a cverse cluster while its nodes churn, then proves that no
 * acknowledged increment was lost, the counters were linearizable, no object was active twice, the
 * cluster stayed available and its end state converged (docs/stress.md).
 *
 * Happy path (one state machine, S_*): start the cluster (or attach), wait until every node and gate
 * answers /ready, create the counters, probe whether call ids work, run the mix for --duration with the
 * churn in the middle 60 % (steady / churn / after phases), stop the churn and the clients, wait for the
 * end state to converge, read every counter, stop the cluster, run the activation-log checker, check the
 * history, print the report and exit with its verdict.
 * Failure modes: bad flags or a harness error exit 4; a cluster that is never ready (or cannot create
 * the counters) exits 3; errors beyond the availability rules exit 2; any correctness failure exits 1
 * (it wins over 2). Ctrl-C ends the measured time early and still checks. */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/sm.h"
#include "cverse/error.h"
#include "stress/churn.h"
#include "stress/endstate.h"
#include "stress/load.h"
#include "stress/report.h"
#include "util/actcheck.h"
#include "util/log.h"

enum { S_START, S_READY, S_CREATE, S_PROBE, S_RUN, S_DRAIN, S_CONVERGE, S_FINAL, S_STOP, S_DONE };

#define B CV_SM_BIT
static const struct cv_sm_state run_states[] = {
    [S_START] = {"start", CV_SM_INITIAL, B(S_READY) | B(S_STOP)},
    [S_READY] = {"ready", 0, B(S_CREATE) | B(S_STOP)},
    [S_CREATE] = {"create", 0, B(S_PROBE) | B(S_STOP)},
    [S_PROBE] = {"probe", 0, B(S_RUN)},
    [S_RUN] = {"run", 0, B(S_DRAIN)},
    [S_DRAIN] = {"drain", 0, B(S_CONVERGE)},
    [S_CONVERGE] = {"converge", 0, B(S_FINAL)},
    [S_FINAL] = {"final", 0, B(S_STOP)},
    [S_STOP] = {"stop", 0, B(S_DONE)},
    [S_DONE] = {"done", CV_SM_FINAL, 0},
};
static const struct cv_sm_conf run_conf = {"stress-run", run_states, sizeof run_states / sizeof run_states[0]};

struct run {
    struct cv_sm sm;
    uv_loop_t loop;
    struct cv_stress_opts o;
    struct cv_stress_cluster c;
    struct cv_httpc *ctl;
    struct cv_stress_load l;
    bool load_up;
    struct cv_stress_churn ch;
    struct cv_stress_endstate es;
    bool es_up;
    uv_timer_t tick, stats, churn_t, after_t;
    uv_signal_t sigint, sigterm, sighup;
    uint64_t t0, run_start, run_end, stop_started;
    unsigned ready_pending, ready_ok;
    int exit_code;  /* 3 / 4 decided before the checks; 0 otherwise */
    char why[4400];
};

static void move(struct run *r, int s) { cv_sm_move(&r->sm, s); }
static void stop_cluster(struct run *r, int code, const char *why);
static void on_tick_ready(uv_timer_t *t);

static double now_s(const struct run *r) { return (double)(uv_hrtime() - r->t0) / 1e9; }

/* ---- readiness */

static void on_ready_answer(void *data, const struct cv_httpc_response *resp);

static void poll_ready(struct run *r)
{
    r->ready_pending = 1;
    r->ready_ok = 0;
    for (unsigned i = 0; i < r->c.n_nodes + r->c.n_gates; i++) {
        char url[256];
        snprintf(url, sizeof url, "http://%s/ready", r->c.p[i].http);
        r->ready_pending++;
        if (cv_httpc_get(r->ctl, url, 1000, on_ready_answer, r) < 0) r->ready_pending--;
    }
    struct cv_httpc_response none = {.err = CV_EIO};
    on_ready_answer(r, &none); /* drops the hold */
}

static void on_tick_ready(uv_timer_t *t) { poll_ready(t->data); }

static void on_created(struct cv_stress_load *l, void *data);

static void start_load(struct run *r)
{
    const char *grpc[CV_STRESS_MAX_PROCS], *http[CV_STRESS_MAX_PROCS];
    for (unsigned g = 0; g < r->c.n_gates; g++) {
        grpc[g] = r->c.p[r->c.n_nodes + g].grpc;
        http[g] = r->c.p[r->c.n_nodes + g].http;
    }
    if (cv_stress_load_init(&r->l, &r->loop, &r->o, grpc, http, r->c.n_gates, r->t0) < 0)
        return stop_cluster(r, 4, "could not set up the clients (out of memory)");
    r->load_up = true;
    fprintf(stderr, "cverse-stress: creating %u counters %s0..%u\n", r->o.objects, r->l.prefix, r->o.objects - 1);
    cv_stress_load_create(&r->l, on_created, r);
}

static void on_ready_answer(void *data, const struct cv_httpc_response *resp)
{
    struct run *r = data;
    if (!resp->err && resp->status == 200) r->ready_ok++;
    if (--r->ready_pending || cv_sm_state(&r->sm) != S_READY) return;
    if (r->ready_ok == r->c.n_nodes + r->c.n_gates) {
        fprintf(stderr, "cverse-stress: %u nodes and %u gates ready after %.1f s\n", r->c.n_nodes, r->c.n_gates, now_s(r));
        move(r, S_CREATE);
        return start_load(r);
    }
    if (uv_hrtime() - r->t0 > r->o.ready_timeout_ms * 1000000ull)
        return stop_cluster(r, 3, "the cluster was not ready within --ready-timeout (see the logs in the run dir)");
    uv_timer_start(&r->tick, on_tick_ready, 250, 0);
}

/* ---- the measured run */

static void on_probed(struct cv_stress_load *l, void *data);
static void on_end(uv_timer_t *t);
static void on_stats(uv_timer_t *t);
static void on_churn(uv_timer_t *t);
static void on_after(uv_timer_t *t);

static void on_created(struct cv_stress_load *l, void *data)
{
    struct run *r = data;
    unsigned failed = cv_stress_load_failed_creates(l);
    if (failed) {
        snprintf(r->why, sizeof r->why, "%u of %u counters could not be created", failed, r->o.objects);
        return stop_cluster(r, 3, r->why);
    }
    move(r, S_PROBE);
    cv_stress_load_probe_ids(l, on_probed, r);
}

static bool strict(const struct run *r) { return r->o.strict_count < 0 ? r->l.ids : r->o.strict_count; }

static void on_probed(struct cv_stress_load *l, void *data)
{
    struct run *r = data;
    fprintf(stderr, "cverse-stress: call ids %s; exact count check %s\n",
            l->ids ? "honoured (a repeated X-Cverse-Call-Id returns the recorded answer)" : "not honoured by the cluster",
            strict(r) ? "strict" : "reported (final - acked)");
    move(r, S_RUN);
    r->run_start = uv_hrtime();
    l->hist.t0_ns = r->run_start; /* times in the report: seconds into the measured time */
    cv_stress_load_run(l);
    uv_timer_start(&r->tick, on_end, r->o.duration_ms, 0);
    uv_timer_start(&r->stats, on_stats, r->o.stats_interval_ms, r->o.stats_interval_ms);
    if (r->o.churn) {
        uv_timer_start(&r->churn_t, on_churn, r->o.duration_ms / 5, r->o.churn_interval_ms);
        uv_timer_start(&r->after_t, on_after, r->o.duration_ms * 4 / 5, 0);
    }
}

static void on_stats(uv_timer_t *t)
{
    struct run *r = t->data;
    struct cv_bench_summary s;
    double secs = (double)r->o.stats_interval_ms / 1000.0;
    cv_bench_summarize(&r->l.interval, secs, &s);
    static const char *names[] = {"steady", "churn", "after"};
    fprintf(stderr, "[%6.1fs] %s  %8.1f ops/s  errors %-5" PRIu64 " p50 %7.2f ms  p99 %8.2f ms  churn events %u\n",
            (double)(uv_hrtime() - r->run_start) / 1e9, names[r->l.cur_phase], s.rate, s.failed, s.p50_ms, s.p99_ms,
            r->ch.n_ev);
    memset(&r->l.interval, 0, sizeof r->l.interval);
}

static void churn_idle_after(struct cv_stress_churn *ch, void *data)
{
    struct run *r = data;
    (void)ch;
    if (r->l.cur_phase == CV_PHASE_CHURN) r->l.cur_phase = CV_PHASE_AFTER;
}

/* The last 20 % of the measured time is the "after" phase: no new event; it begins once the last one
 * brought its node back. */
static void on_after(uv_timer_t *t)
{
    struct run *r = t->data;
    uv_timer_stop(&r->churn_t);
    cv_stress_churn_stop(&r->ch, churn_idle_after, r);
}

static void on_churn(uv_timer_t *t)
{
    struct run *r = t->data;
    uint64_t elapsed = (uv_hrtime() - r->run_start) / 1000000ull;
    r->l.cur_phase = CV_PHASE_CHURN;
    unsigned before = r->ch.n_ev;
    if (cv_stress_churn_fire(&r->ch)) /* leader: the node is known once /v1/cluster answered */
        fprintf(stderr, "[%6.1fs] churn: %s %s\n", (double)elapsed / 1000.0, cv_stress_churn_name(r->o.churn_mode),
                r->ch.n_ev > before ? r->ch.ev[r->ch.n_ev - 1].node : "(the leader)");
}

/* ---- after the measured time */

static void on_load_stopped(struct cv_stress_load *l, void *data);
static void on_converged(struct cv_stress_endstate *es, void *data);
static void on_final(struct cv_stress_load *l, void *data);

static void on_churn_stopped(struct cv_stress_churn *ch, void *data)
{
    struct run *r = data;
    (void)ch;
    cv_stress_load_stop(&r->l, on_load_stopped, r);
}

static void end_run(struct run *r)
{
    if (cv_sm_state(&r->sm) != S_RUN) return;
    move(r, S_DRAIN);
    r->run_end = uv_hrtime();
    uv_timer_stop(&r->stats);
    uv_timer_stop(&r->churn_t);
    uv_timer_stop(&r->after_t);
    fprintf(stderr, "cverse-stress: measured time over; waiting for the churn and the clients to finish\n");
    cv_stress_churn_stop(&r->ch, on_churn_stopped, r);
}

static void on_end(uv_timer_t *t) { end_run(t->data); }

static void on_load_stopped(struct cv_stress_load *l, void *data)
{
    struct run *r = data;
    (void)l;
    move(r, S_CONVERGE);
    r->es_up = true;
    cv_stress_endstate_start(&r->es, &r->loop, &r->c, r->ctl, 30000 + (unsigned)r->o.ready_timeout_ms, on_converged, r);
}

static void on_converged(struct cv_stress_endstate *es, void *data)
{
    struct run *r = data;
    fprintf(stderr, "cverse-stress: end state %s\n", es->ok ? "converged" : "did NOT converge");
    move(r, S_FINAL);
    cv_stress_load_final(&r->l, on_final, r);
}

static void on_final(struct cv_stress_load *l, void *data)
{
    (void)l;
    stop_cluster(data, 0, NULL);
}

/* ---- stopping and the verdict */

/* uv_run returns once every handle closed: the close callbacks have nothing left to do. */
static void load_closed(struct cv_stress_load *l, void *data)
{
    (void)l;
    (void)data;
}

static void finish(struct run *r)
{
    move(r, S_DONE);
    if (!r->exit_code) r->exit_code = cv_stress_report(stdout, &(struct cv_stress_report_in){
        .o = &r->o, .c = &r->c, .l = &r->l, .ch = &r->ch, .es = &r->es, .strict = strict(r),
        .run_start = r->run_start, .run_end = r->run_end});
    else fprintf(stderr, "cverse-stress: %s\n", r->why);
    fflush(stdout);
    uv_timer_stop(&r->tick);
    uv_close((uv_handle_t *)&r->tick, NULL);
    uv_close((uv_handle_t *)&r->stats, NULL);
    uv_close((uv_handle_t *)&r->churn_t, NULL);
    uv_close((uv_handle_t *)&r->after_t, NULL);
    uv_close((uv_handle_t *)&r->sigint, NULL);
    uv_close((uv_handle_t *)&r->sigterm, NULL);
    uv_close((uv_handle_t *)&r->sighup, NULL);
    cv_stress_churn_close(&r->ch, NULL);
    cv_stress_cluster_close(&r->c);
    if (r->es_up) cv_stress_endstate_close(&r->es, NULL);
    if (r->load_up) cv_stress_load_close(&r->l, load_closed, r);
    cv_httpc_close(r->ctl, NULL, NULL);
}

static void on_stop_tick(uv_timer_t *t)
{
    struct run *r = t->data;
    if (r->c.attached || cv_stress_cluster_running(&r->c) == 0) return finish(r); /* an attached cluster stays */
    if (uv_hrtime() - r->stop_started > 30000000000ull) cv_stress_cluster_stop(&r->c, SIGKILL);
    uv_timer_start(&r->tick, on_stop_tick, 100, 0);
}

static void stop_cluster(struct run *r, int code, const char *why)
{
    if (code) {
        r->exit_code = code;
        if (why != r->why) snprintf(r->why, sizeof r->why, "%s", why);
    }
    move(r, S_STOP);
    r->stop_started = uv_hrtime();
    if (!r->c.attached) cv_stress_cluster_stop(&r->c, SIGTERM);
    uv_timer_start(&r->tick, on_stop_tick, 100, 0);
}

static void on_exit_cb(struct cv_stress_cluster *c, struct cv_stress_proc *p)
{
    struct run *r = c->data;
    if (cv_sm_state(&r->sm) < S_STOP && !p->expect_exit && p->unexpected_exits)
        fprintf(stderr, "[%6.1fs] %s exited unasked (%s)\n", now_s(r), p->id, p->last_exit);
    cv_stress_churn_on_exit(&r->ch, p);
}

static void on_sigint(uv_signal_t *s, int sig)
{
    (void)sig;
    struct run *r = s->data;
    if (cv_sm_state(&r->sm) == S_RUN) end_run(r);
    else if (cv_sm_state(&r->sm) == S_READY) stop_cluster(r, 4, "interrupted before the cluster was ready");
}

static int setup(struct run *r, int argc, char **argv)
{
    char err[512];
    int rc = cv_stress_opts_parse(argc, argv, &r->o, err, sizeof err);
    if (rc == 1) {
        fputs(cv_stress_usage, stdout);
        exit(0);
    }
    if (rc < 0) return fprintf(stderr, "%s\n", err), 4;
    uv_loop_init(&r->loop);
    r->t0 = uv_hrtime();
    if (cv_stress_cluster_init(&r->c, &r->loop, &r->o, argv[0], err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err);
        cv_stress_cluster_free(&r->c, false); /* the namespaces, the run dir */
        return 4;
    }
    r->c.on_exit = on_exit_cb;
    r->c.data = r;
    if (cv_httpc_init(&r->loop, &r->ctl) < 0) return fprintf(stderr, "cverse-stress: HTTP client failed\n"), 4;
    uv_timer_t *timers[] = {&r->tick, &r->stats, &r->churn_t, &r->after_t};
    for (int i = 0; i < 4; i++) {
        uv_timer_init(&r->loop, timers[i]);
        timers[i]->data = r;
    }
    uv_signal_init(&r->loop, &r->sigint);
    r->sigint.data = r;
    uv_signal_start(&r->sigint, on_sigint, SIGINT);
    uv_signal_init(&r->loop, &r->sigterm);
    r->sigterm.data = r;
    uv_signal_start(&r->sigterm, on_sigint, SIGTERM); /* like Ctrl-C: end early, stop the cluster, check */
    uv_signal_init(&r->loop, &r->sighup);
    r->sighup.data = r;
    uv_signal_start(&r->sighup, on_sigint, SIGHUP); /* a closed terminal too: the namespaces must go */
    cv_stress_churn_init(&r->ch, &r->loop, &r->c, &r->o, r->ctl);
    r->ch.timer.data = &r->ch;
    return 0;
}

int main(int argc, char **argv)
{
    static struct run r;
    signal(SIGPIPE, SIG_IGN);
    cv_log_init("cverse-stress", CV_LOG_WARN); /* the clients' reconnects under churn are expected */
    cv_sm_init(&r.sm, &run_conf, S_START, NULL, "run");
    int rc = setup(&r, argc, argv);
    if (rc) return rc;
    fprintf(stderr, "cverse-stress: run dir %s, config %s, seed %" PRIu64 "\n", r.c.dir, r.c.config, r.o.seed);
    for (unsigned i = 0; !r.c.attached && i < r.c.n_nodes + r.c.n_gates; i++)
        if (cv_stress_proc_start(&r.c, i) < 0) {
            snprintf(r.why, sizeof r.why, "could not start %s (%s)", r.c.p[i].id, r.c.p[i].gate ? r.c.gate_bin : r.c.node_bin);
            stop_cluster(&r, 4, r.why);
            break;
        }
    if (cv_sm_state(&r.sm) == S_START) {
        move(&r, S_READY);
        poll_ready(&r);
    }
    uv_run(&r.loop, UV_RUN_DEFAULT);
    uv_loop_close(&r.loop);
    bool keep = r.o.keep || r.exit_code || (r.c.actlog[0] && r.exit_code);
    cv_stress_cluster_free(&r.c, keep);
    if (keep && !r.c.attached) fprintf(stderr, "cverse-stress: kept %s\n", r.c.dir);
    return r.exit_code;
}
