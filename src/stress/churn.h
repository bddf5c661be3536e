/* cverse-stress's churn: one event at a time takes a node down (SIGTERM, SIGKILL, SIGSTOP, the leader,
 * every node in turn, or its network link), brings it back after the downtime and waits for its /ready. */
#ifndef CV_STRESS_CHURN_H
#define CV_STRESS_CHURN_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "net/httpc.h"
#include "stress/procs.h"

#define CV_STRESS_MAX_EVENTS 4096

struct cv_stress_event {
    uint64_t t_ns;      /* the node was signalled (rolling: the first node) */
    uint64_t ready_ns;  /* the last node it took down answered /ready again; 0: never */
    char node[64];      /* "node-2" (rolling: "all") */
    const char *mode;   /* static */
};

struct cv_stress_churn;
typedef void (*cv_stress_churn_cb)(struct cv_stress_churn *ch, void *data);

struct cv_stress_churn {
    uv_loop_t *loop;
    struct cv_stress_cluster *c;   /* borrowed, valid until closed */
    const struct cv_stress_opts *o;
    struct cv_httpc *http;         /* borrowed: /ready and /v1/cluster polls */
    uv_timer_t timer;
    uint64_t rng;
    int step;                      /* internal state (churn.c) */
    unsigned node;                 /* the node of the step */
    struct cv_stress_event ev[CV_STRESS_MAX_EVENTS];
    unsigned n_ev;
    bool failed;                   /* a node did not come back within --ready-timeout */
    char failure[256];
    cv_stress_churn_cb idle_cb;    /* cv_stress_churn_stop's */
    void *idle_data;
};

void cv_stress_churn_init(struct cv_stress_churn *ch, uv_loop_t *loop, struct cv_stress_cluster *c,
                          const struct cv_stress_opts *o, struct cv_httpc *http);
/* Starts an event now unless one is in progress (then false). */
bool cv_stress_churn_fire(struct cv_stress_churn *ch);
bool cv_stress_churn_busy(const struct cv_stress_churn *ch);
/* A process of c exited (forwarded from the cluster's exit callback). */
void cv_stress_churn_on_exit(struct cv_stress_churn *ch, struct cv_stress_proc *p);
/* cb once no event is in progress (at once if none). */
void cv_stress_churn_stop(struct cv_stress_churn *ch, cv_stress_churn_cb cb, void *data);
/* Closes the timer (cb after). */
void cv_stress_churn_close(struct cv_stress_churn *ch, void (*cb)(uv_handle_t *));

#endif
