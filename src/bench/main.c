/* cverse-bench: a load generator for a cverse gate (native port or HTTP API) and, as a baseline, etcd's
 * JSON gateway. Manual: docs/bench.md.
 *
 * Happy path: parse the flags (opts.c); dial the target once to see it answers; start the transport
 * (native.c or http.c); create the --objects ids (calls only, unless --no-create); run --warmup
 * unmeasured, then --duration measured; print the report (stats.c) as text or --json; exit 0.
 * Load shapes: closed loop (--concurrency C requests in flight; each finished request starts the
 * next, latency from its send) or open loop (--rps R: request i is due at start + i/R and its latency
 * counts from then, so time spent waiting for a free slot or connection is measured, not hidden;
 * C caps the requests in flight). A 1 ms timer paces the open loop (its lateness is in the latencies:
 * prefer the closed loop for sub-millisecond figures) and a 5 ms one refills the closed loop when a
 * connection comes up; both also end phases and print the per-second line (stderr, on a terminal).
 * Failure modes: bad flags: message, exit 2. The target refuses or does not answer the first dial
 * within 3 s: what to check, exit 3. Creates that fail: the first error, exit 1. Requests that fail
 * during the run are counted by status name and reported; they do not stop it. Ctrl-C ends the
 * measurement early and reports what was measured. */
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench/driver.h"
#include "bench/opts.h"
#include "bench/stats.h"
#include "core/sm.h"
#include "cverse/error.h"
#include "util/addr.h"
#include "util/log.h"

#ifndef CV_VERSION
#define CV_VERSION "unknown"
#endif

#define EXIT_FAILED 1
#define EXIT_USAGE 2
#define EXIT_UNREACHABLE 3
#define DIAL_MS 3000u

/* The run's lifecycle: DIAL -> [CREATE] -> [WARMUP] -> MEASURE -> DONE; any phase may end in DONE
 * (unreachable target, failed creates, Ctrl-C). */
enum phase { P_DIAL, P_CREATE, P_WARMUP, P_MEASURE, P_DONE };
static const struct cv_sm_state phase_states[] = {
    [P_DIAL] = {"dial", CV_SM_INITIAL, CV_SM_BIT(P_CREATE) | CV_SM_BIT(P_WARMUP) | CV_SM_BIT(P_MEASURE) | CV_SM_BIT(P_DONE)},
    [P_CREATE] = {"create", 0, CV_SM_BIT(P_WARMUP) | CV_SM_BIT(P_MEASURE) | CV_SM_BIT(P_DONE)},
    [P_WARMUP] = {"warmup", 0, CV_SM_BIT(P_MEASURE) | CV_SM_BIT(P_DONE)},
    [P_MEASURE] = {"measure", 0, CV_SM_BIT(P_DONE)},
    [P_DONE] = {"done", CV_SM_FINAL, 0},
};
static const struct cv_sm_conf phase_sm = {"bench-run", phase_states, 5};

struct run {
    uv_loop_t *loop;
    struct cv_bench_opts o;
    char prefix[512];
    struct cv_bench_driver *drv;
    struct cv_sm sm;           /* enum phase */
    uint64_t phase_ns, sec_ns; /* start of the phase / of the current second */
    uint64_t next, seq;        /* requests started in the phase; creates started in the run (unique ids) */
    uint64_t inflight, created, create_failed;
    char create_err[CV_BENCH_ERR_NAME];
    struct cv_bench_window *all, *sec;
    bool progress, dial_timed_out;
    int exit_code;
    uv_timer_t tick, dial_timer;
    uv_tcp_t dial;
    uv_connect_t dial_req;
    uv_signal_t sigint;
};

static void phase_start(struct run *r, enum phase p);
static void create_done(struct run *r, const char *err);

static enum phase phase(const struct run *r)
{
    return (enum phase)cv_sm_state(&r->sm);
}

/* Requests flow only while a transport exists; the create phase never goes past the N objects. */
static const char *run_invariant(const struct cv_sm *m, int prev)
{
    const struct run *r = (const struct run *)((const char *)m - offsetof(struct run, sm));
    if ((m->state == P_CREATE || m->state == P_WARMUP || m->state == P_MEASURE) && !r->drv)
        return "a load phase without a transport";
    if (m->state == P_CREATE && r->next > r->o.objects) return "more creates than objects";
    return NULL;
}

static const char *target_name(const struct cv_bench_opts *o)
{
    static const char *const names[] = {"native", "http", "etcd"};
    return names[o->target];
}

static enum cv_bench_kind measured_kind(const struct cv_bench_opts *o)
{
    static const enum cv_bench_kind kinds[] = {CV_BENCH_REQ_CALL, CV_BENCH_REQ_CREATE, CV_BENCH_REQ_PUT};
    return kinds[o->op];
}

/* Starts as many requests as the load shape allows now. */
static void pump(struct run *r)
{
    if (phase(r) < P_CREATE || phase(r) > P_MEASURE) return;
    const struct cv_bench_opts *o = &r->o;
    uint64_t now = cv_mono_ns();
    while (r->inflight < o->concurrency && r->drv->ops->can_send(r->drv)) {
        uint64_t start = now, n;
        enum cv_bench_kind kind = measured_kind(o);
        if (phase(r) == P_CREATE) {
            if (r->next >= o->objects) return;
            kind = CV_BENCH_REQ_CREATE;
            n = r->next;
        } else {
            if (o->rps > 0) {
                double at = (double)r->next * 1e9 / o->rps;
                if (at > (double)(now - r->phase_ns)) return; /* not due yet */
                start = r->phase_ns + (uint64_t)at;
            }
            n = kind == CV_BENCH_REQ_CREATE ? r->seq++ : r->next % o->objects;
        }
        int rc = r->drv->ops->send(r->drv, kind, n, start);
        if (rc == CV_EBUSY) return;
        r->next++;
        if (rc < 0) { /* counted as failed, not in flight; the next tick tries again (no busy loop) */
            if (phase(r) == P_MEASURE) cv_bench_window_record(r->sec, cv_err_status(rc), 0);
            if (phase(r) == P_CREATE) create_done(r, cv_err_status(rc));
            return;
        }
        r->inflight++;
    }
}

static void create_done(struct run *r, const char *err)
{
    if (err) {
        if (!r->create_failed++) snprintf(r->create_err, sizeof r->create_err, "%s", err);
    } else {
        r->created++;
    }
    if (r->created + r->create_failed < r->o.objects) return;
    if (r->create_failed) {
        fprintf(stderr,
                "cverse-bench: %llu of %llu creates failed (first: %s); is type %s known to the gate "
                "(built in, or loaded with --module)?\n",
                (unsigned long long)r->create_failed, (unsigned long long)r->o.objects, r->create_err, r->o.type);
        r->exit_code = EXIT_FAILED;
        phase_start(r, P_DONE);
        return;
    }
    phase_start(r, r->o.warmup_ms ? P_WARMUP : P_MEASURE);
}

static void on_done(void *data, uint64_t start_ns, const char *err)
{
    struct run *r = data;
    r->inflight--;
    if (phase(r) == P_CREATE) create_done(r, err);
    else if (phase(r) == P_MEASURE && start_ns >= r->phase_ns) {
        uint64_t now = cv_mono_ns();
        cv_bench_window_record(r->sec, err, now > start_ns ? now - start_ns : 0);
    }
    pump(r);
}

static void title(const struct run *r, char *buf, size_t len)
{
    const struct cv_bench_opts *o = &r->o;
    char what[300], shape[80];
    if (o->op == CV_BENCH_CALL)
        snprintf(what, sizeof what, "call %s.%s on %llu objects", o->type, o->method, (unsigned long long)o->objects);
    else if (o->op == CV_BENCH_CREATE) snprintf(what, sizeof what, "create %s", o->type);
    else snprintf(what, sizeof what, "put on %llu keys", (unsigned long long)o->objects);
    if (o->rps > 0) snprintf(shape, sizeof shape, "open loop %.0f/s (at most %u in flight)", o->rps, o->concurrency);
    else snprintf(shape, sizeof shape, "closed loop, concurrency %u", o->concurrency);
    snprintf(buf, len, "cverse-bench: %s %s, %s, %s, warmup %.1f s", target_name(o), o->addr, what, shape,
             (double)o->warmup_ms / 1000);
}

static void report(struct run *r, double elapsed_s)
{
    struct cv_buf b = {0};
    if (r->o.json) {
        char extra[256];
        snprintf(extra, sizeof extra,
                 "\"target\":\"%s\",\"op\":\"%s\",\"concurrency\":%u,\"rps\":%.1f,\"objects\":%llu",
                 target_name(&r->o), (const char *[]){"call", "create", "put"}[r->o.op], r->o.concurrency, r->o.rps,
                 (unsigned long long)r->o.objects);
        cv_bench_report_json(&b, r->all, elapsed_s, extra);
    } else {
        char t[512];
        title(r, t, sizeof t);
        cv_bench_report_text(&b, t, r->all, elapsed_s);
    }
    if (b.p) fputs(b.p, stdout);
    fflush(stdout);
    free(b.p);
}

static void on_handle_closed(uv_handle_t *h)
{
}

static void on_driver_closed(void *data)
{
    struct run *r = data;
    r->drv = NULL;
    uv_close((uv_handle_t *)&r->tick, on_handle_closed);
    uv_close((uv_handle_t *)&r->sigint, on_handle_closed);
}

/* The measured phase ends (its time is up, or Ctrl-C): report and close everything. */
static void finish(struct run *r)
{
    uint64_t now = cv_mono_ns();
    cv_bench_window_merge(r->all, r->sec);
    report(r, (double)(now - r->phase_ns) / 1e9);
    phase_start(r, P_DONE);
}

static void second(struct run *r, uint64_t now)
{
    double t = (double)(now - r->phase_ns) / 1e9, el = (double)(now - r->sec_ns) / 1e9;
    if (r->progress) {
        struct cv_buf b = {0};
        cv_bench_second_line(&b, t, r->sec, el);
        if (b.p) fputs(b.p, stderr);
        free(b.p);
    }
    cv_bench_window_merge(r->all, r->sec);
    memset(r->sec, 0, sizeof *r->sec);
    r->sec_ns = now;
}

static void on_tick(uv_timer_t *t)
{
    struct run *r = t->data;
    uint64_t now = cv_mono_ns(), el_ms = (now - r->phase_ns) / 1000000;
    if (phase(r) == P_WARMUP && el_ms >= r->o.warmup_ms) phase_start(r, P_MEASURE);
    else if (phase(r) == P_MEASURE && el_ms >= r->o.duration_ms) finish(r);
    else if (phase(r) == P_MEASURE && now - r->sec_ns >= 1000000000u) second(r, now);
    pump(r);
}

static void phase_start(struct run *r, enum phase p)
{
    r->next = 0;
    cv_sm_move(&r->sm, p);
    r->phase_ns = r->sec_ns = cv_mono_ns();
    if (p == P_DONE) {
        if (r->drv) r->drv->ops->close(r->drv, on_driver_closed);
        else on_driver_closed(r);
        return;
    }
    if (r->progress && p == P_CREATE)
        fprintf(stderr, "creating %llu objects %s...\n", (unsigned long long)r->o.objects, r->prefix);
    if (r->progress && p == P_WARMUP) fprintf(stderr, "warming up for %.1f s...\n", (double)r->o.warmup_ms / 1000);
    if (p == P_MEASURE) memset(r->sec, 0, sizeof *r->sec);
    pump(r);
}

static void on_sigint(uv_signal_t *s, int signum)
{
    struct run *r = s->data;
    if (phase(r) == P_MEASURE) finish(r);
    else if (phase(r) != P_DONE) phase_start(r, P_DONE);
}

/* What to check when the target does not answer. */
static void unreachable(struct run *r, const char *why)
{
    static const char *const hints[] = {
        "is cverse-gate running, and is this its grpc_addr (the gates: section of the cluster config)?",
        "is cverse-gate running, and is this its http_addr (the gates: section of the cluster config)?",
        "is etcd running, and is this one of its --listen-client-urls?"};
    fprintf(stderr, "cverse-bench: cannot connect to %s: %s\n  %s\n", r->o.addr, why, hints[r->o.target]);
    r->exit_code = EXIT_UNREACHABLE;
}

static void start_load(struct run *r)
{
    int rc = r->o.target == CV_BENCH_NATIVE
                 ? cv_bench_native_init(r->loop, &r->o, r->prefix, on_done, r, &r->drv)
                 : cv_bench_http_init(r->loop, &r->o, r->prefix, on_done, r, &r->drv);
    if (rc < 0) {
        fprintf(stderr, "cverse-bench: cannot start: %s\n", cv_strerror(rc));
        r->exit_code = EXIT_FAILED;
        phase_start(r, P_DONE);
        return;
    }
    uv_timer_start(&r->tick, on_tick, 1, r->o.rps > 0 ? 1 : 5);
    bool create = r->o.op == CV_BENCH_CALL && !r->o.no_create;
    phase_start(r, create ? P_CREATE : r->o.warmup_ms ? P_WARMUP : P_MEASURE);
}

static void on_dial_closed(uv_handle_t *h)
{
    struct run *r = h->data;
    if (r->exit_code) phase_start(r, P_DONE);
    else start_load(r);
}

static void on_dialed(uv_connect_t *req, int status)
{
    struct run *r = req->data;
    uv_close((uv_handle_t *)&r->dial_timer, NULL);
    if (status < 0) unreachable(r, r->dial_timed_out ? "no answer within 3 s" : uv_strerror(status));
    if (!uv_is_closing((uv_handle_t *)&r->dial)) uv_close((uv_handle_t *)&r->dial, on_dial_closed);
}

static void on_dial_timeout(uv_timer_t *t)
{
    struct run *r = t->data;
    r->dial_timed_out = true;
    uv_close((uv_handle_t *)&r->dial, on_dial_closed); /* on_dialed runs first, with UV_ECANCELED */
}

/* One TCP connection to the target before anything else, to tell "unreachable" apart from failing calls. */
static int dial(struct run *r)
{
    struct sockaddr_storage ss;
    char hp[300];
    snprintf(hp, sizeof hp, strchr(r->o.host, ':') ? "[%s]:%u" : "%s:%u", r->o.host, r->o.port);
    if (cv_addr_resolve(hp, &ss) < 0) return CV_EINVAL;
    uv_tcp_init(r->loop, &r->dial);
    uv_timer_init(r->loop, &r->dial_timer);
    r->dial.data = r->dial_timer.data = r->dial_req.data = r;
    uv_timer_start(&r->dial_timer, on_dial_timeout, DIAL_MS, 0);
    int rc = uv_tcp_connect(&r->dial_req, &r->dial, (const struct sockaddr *)&ss, on_dialed);
    if (rc < 0) {
        unreachable(r, uv_strerror(rc));
        uv_close((uv_handle_t *)&r->dial_timer, NULL);
        uv_close((uv_handle_t *)&r->dial, on_dial_closed);
    }
    return 0;
}

static void default_prefix(struct run *r)
{
    if (r->o.id_prefix) snprintf(r->prefix, sizeof r->prefix, "%s", r->o.id_prefix);
    else if (r->o.op == CV_BENCH_CREATE)
        snprintf(r->prefix, sizeof r->prefix, "bench-%ld-%lld-", (long)getpid(), (long long)time(NULL));
    else snprintf(r->prefix, sizeof r->prefix, "bench-");
}

int main(int argc, char **argv)
{
    static struct run r;
    char err[512];
    int rc = cv_bench_opts_parse(argc, argv, &r.o, err, sizeof err);
    if (rc == 1) {
        printf("%scverse-bench %s\n", cv_bench_usage, CV_VERSION);
        return 0;
    }
    if (rc < 0) {
        fprintf(stderr, "cverse-bench: %s\n", err);
        return EXIT_USAGE;
    }
    cv_log_init("cverse-bench", CV_LOG_ERROR);
    signal(SIGPIPE, SIG_IGN);
    default_prefix(&r);
    r.progress = r.o.progress < 0 ? isatty(STDERR_FILENO) : r.o.progress;
    r.all = calloc(1, sizeof *r.all);
    r.sec = calloc(1, sizeof *r.sec);
    if (!r.all || !r.sec) return EXIT_FAILED;
    cv_sm_init(&r.sm, &phase_sm, P_DIAL, run_invariant, NULL);
    r.loop = uv_default_loop();
    uv_timer_init(r.loop, &r.tick);
    uv_signal_init(r.loop, &r.sigint);
    r.tick.data = r.sigint.data = &r;
    uv_signal_start(&r.sigint, on_sigint, SIGINT);
    if (dial(&r) < 0) {
        fprintf(stderr, "cverse-bench: %s: only numeric addresses and localhost are supported\n", r.o.addr);
        return EXIT_USAGE;
    }
    uv_run(r.loop, UV_RUN_DEFAULT);
    uv_loop_close(r.loop);
    cv_sm_fini(&r.sm);
    free(r.all);
    free(r.sec);
    return r.exit_code;
}
