/* cverse-stress's end-state check: every running node's shard map and catalog view converge to one, every
 * shard has exactly one owner and it is a running node. */
#ifndef CV_STRESS_ENDSTATE_H
#define CV_STRESS_ENDSTATE_H

#include <jansson.h>
#include <stdbool.h>
#include <uv.h>

#include "net/httpc.h"
#include "stress/procs.h"

struct cv_stress_endstate;
typedef void (*cv_stress_endstate_cb)(struct cv_stress_endstate *es, void *data);

struct cv_stress_endstate_req {
    struct cv_stress_endstate *es;
    json_t **slot;
};

struct cv_stress_endstate {
    struct cv_stress_cluster *c; /* borrowed, valid until cb */
    struct cv_httpc *http;       /* borrowed */
    uv_timer_t timer;
    uint64_t deadline_ns, start_ns;
    unsigned pending;
    json_t *shards[CV_STRESS_MAX_PROCS], *view[CV_STRESS_MAX_PROCS]; /* owned, per node, this round */
    struct cv_stress_endstate_req reqs[2 * CV_STRESS_MAX_PROCS];
    bool ok;
    double converged_s;          /* ok: seconds it took */
    char report[1024];           /* !ok: the last difference seen */
    cv_stress_endstate_cb cb;
    void *data;
};

/* Polls every 500 ms until converged or timeout_ms; then cb (es->ok, es->report). Close the timer with
 * cv_stress_endstate_close after. */
void cv_stress_endstate_start(struct cv_stress_endstate *es, uv_loop_t *loop, struct cv_stress_cluster *c,
                              struct cv_httpc *http, unsigned timeout_ms, cv_stress_endstate_cb cb, void *data);
void cv_stress_endstate_close(struct cv_stress_endstate *es, void (*cb)(uv_handle_t *));

#endif
