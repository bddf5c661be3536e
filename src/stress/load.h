/* cverse-stress's clients: logical clients, one operation in flight each, over the gates' native port
 * and HTTP API (mixed), retrying an operation until its deadline and recording every one in the history. */
#ifndef CV_STRESS_LOAD_H
#define CV_STRESS_LOAD_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "bench/stats.h"
#include "stress/history.h"
#include "stress/opts.h"

enum cv_stress_phase { CV_PHASE_STEADY, CV_PHASE_CHURN, CV_PHASE_AFTER, CV_PHASES };

/* A failed attempt (for the availability check): when, its status name, whether retryable. */
struct cv_stress_err {
    uint64_t t_ns;
    char code[32];
    bool retryable;
};

struct cv_stress_load;
typedef void (*cv_stress_load_cb)(struct cv_stress_load *l, void *data);

struct cv_stress_load {
    uv_loop_t *loop;
    const struct cv_stress_opts *o; /* borrowed, valid until closed */
    char prefix[96];                /* object ids are <prefix><k> */
    struct cv_stress_history hist;  /* every run-phase operation */
    struct cv_bench_window phase[CV_PHASES], interval; /* latency of successful ops, errors per attempt */
    enum cv_stress_phase cur_phase;
    struct cv_stress_err *errs;     /* owned */
    size_t n_errs, cap_errs;
    int64_t *finals;                /* o->objects values read by cv_stress_load_final (-1: unread) */
    bool ids;                       /* the cluster answers a repeated X-Cverse-Call-Id with the recorded answer */
    bool oom;
    struct client *clients;         /* owned */
    unsigned n_clients, busy;
    cv_stress_load_cb cb;           /* the current step's completion */
    void *cb_data;
};

/* Sets up the clients: client i calls gate (i % gates) over the native port (even i) or HTTP (odd i)
 * unless --transport says otherwise. gates: "127.0.0.1:port" native and HTTP addresses (borrowed, valid
 * until closed). 0 or CV_ENOMEM / CV_EINVAL. */
int cv_stress_load_init(struct cv_stress_load *l, uv_loop_t *loop, const struct cv_stress_opts *o,
                        const char *const *gate_grpc, const char *const *gate_http, unsigned gates, uint64_t t0_ns);
/* Creates the o->objects counters; cb once all exist (or failed: *failed_creates then > 0). */
void cv_stress_load_create(struct cv_stress_load *l, cv_stress_load_cb cb, void *data);
unsigned cv_stress_load_failed_creates(const struct cv_stress_load *l);
/* Sends one Increment twice with one call id over HTTP to a probe object; sets l->ids; then cb. */
void cv_stress_load_probe_ids(struct cv_stress_load *l, cv_stress_load_cb cb, void *data);
/* Runs the mix until cv_stress_load_stop; cb once every client is idle after the stop. */
void cv_stress_load_run(struct cv_stress_load *l);
void cv_stress_load_stop(struct cv_stress_load *l, cv_stress_load_cb cb, void *data);
/* Reads every counter (GetValue, retried) into l->finals; then cb. */
void cv_stress_load_final(struct cv_stress_load *l, cv_stress_load_cb cb, void *data);
/* Closes every connection and timer; cb once all closed (l's memory is the caller's, freed after). */
void cv_stress_load_close(struct cv_stress_load *l, cv_stress_load_cb cb, void *data);

#endif
