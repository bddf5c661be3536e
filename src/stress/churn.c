/* cverse-stress's churn events (see churn.h).
 *
 * Happy path, per mode:
 *   sigterm / leader: SIGTERM a random running node (leader: the one the nodes' /v1/cluster names),
 *     wait for its exit, wait --churn-downtime, start it again, poll its /ready every 200 ms;
 *   sigkill: the same with SIGKILL (and a K line in the activation log: it cannot log its own ends);
 *   sigstop: SIGSTOP, wait the downtime, SIGCONT, poll /ready;
 *   rolling: the sigterm cycle for node-1, node-2, ... in turn, each back to /ready before the next;
 *   partition: pull a random running node's link at the bridge (it can reach nobody, nobody reaches it;
 *     it keeps running), wait the downtime, plug it in again, poll /ready.
 * The event's time is the first signal; its ready time is when the (last) node answered /ready again.
 * Failure modes: a node that is not ready again within --ready-timeout marks the churn failed (the run
 * reports it and stops churning); a leader that cannot be found (no node names one) falls back to a
 * random node; a start that fails (binary gone) marks the churn failed. */
#include "stress/churn.h"

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cverse/error.h"

enum { S_IDLE, S_LEADER, S_EXITING, S_DOWN, S_STOPPED, S_CUT, S_READY };

static uint64_t rnd(struct cv_stress_churn *ch)
{
    ch->rng ^= ch->rng >> 12;
    ch->rng ^= ch->rng << 25;
    ch->rng ^= ch->rng >> 27;
    return ch->rng * 2685821657736338717ull;
}

static void take_down(struct cv_stress_churn *ch, unsigned node);

static void fail(struct cv_stress_churn *ch, const char *what)
{
    snprintf(ch->failure, sizeof ch->failure, "%s %s", ch->c->p[ch->node].id, what);
    ch->failed = true;
    ch->step = S_IDLE;
    if (ch->idle_cb) {
        cv_stress_churn_cb cb = ch->idle_cb;
        ch->idle_cb = NULL;
        cb(ch, ch->idle_data);
    }
}

static void event_done(struct cv_stress_churn *ch)
{
    struct cv_stress_event *e = &ch->ev[ch->n_ev - 1];
    e->ready_ns = uv_hrtime();
    if (ch->o->churn_mode == CV_CHURN_ROLLING && ch->node + 1 < ch->c->n_nodes) return take_down(ch, ch->node + 1);
    ch->step = S_IDLE;
    if (ch->idle_cb) {
        cv_stress_churn_cb cb = ch->idle_cb;
        ch->idle_cb = NULL;
        cb(ch, ch->idle_data);
    }
}

static void poll_ready(struct cv_stress_churn *ch);
static void poll_again(uv_timer_t *t) { poll_ready(t->data); }

static void on_ready(void *data, const struct cv_httpc_response *r)
{
    struct cv_stress_churn *ch = data;
    if (!r->err && r->status == 200) return event_done(ch);
    if (r->err == CV_ECANCELED) return;
    if (uv_hrtime() - ch->ev[ch->n_ev - 1].t_ns > (ch->o->ready_timeout_ms + ch->o->churn_downtime_ms) * 1000000ull)
        return fail(ch, "was not ready again within --ready-timeout");
    uv_timer_start(&ch->timer, poll_again, 200, 0);
}

static void poll_ready(struct cv_stress_churn *ch)
{
    char url[256];
    snprintf(url, sizeof url, "http://%s/ready", ch->c->p[ch->node].http);
    ch->step = S_READY;
    if (cv_httpc_get(ch->http, url, 1000, on_ready, ch) < 0) fail(ch, "could not be polled");
}

/* The downtime is over: bring the node back. */
static void on_downtime(uv_timer_t *t)
{
    struct cv_stress_churn *ch = t->data;
    if (ch->step == S_STOPPED) {
        cv_stress_proc_signal(ch->c, ch->node, SIGCONT);
        return poll_ready(ch);
    }
    if (ch->step == S_CUT) {
        if (cv_stress_proc_cut(ch->c, ch->node, false) < 0) return fail(ch, "could not be connected again");
        return poll_ready(ch);
    }
    if (cv_stress_proc_start(ch->c, ch->node) < 0) return fail(ch, "could not be restarted");
    poll_ready(ch);
}

void cv_stress_churn_on_exit(struct cv_stress_churn *ch, struct cv_stress_proc *p)
{
    if (ch->step != S_EXITING || p != &ch->c->p[ch->node]) return;
    ch->step = S_DOWN;
    uv_timer_start(&ch->timer, on_downtime, ch->o->churn_downtime_ms, 0);
}

static void take_down(struct cv_stress_churn *ch, unsigned node)
{
    ch->node = node;
    enum cv_stress_churn_mode m = ch->o->churn_mode;
    if (m == CV_CHURN_PARTITION) {
        ch->step = S_CUT;
        if (cv_stress_proc_cut(ch->c, node, true) < 0) return fail(ch, "could not be cut off");
        return (void)uv_timer_start(&ch->timer, on_downtime, ch->o->churn_downtime_ms, 0);
    }
    int sig = m == CV_CHURN_SIGKILL ? SIGKILL : m == CV_CHURN_SIGSTOP ? SIGSTOP : SIGTERM;
    ch->step = m == CV_CHURN_SIGSTOP ? S_STOPPED : S_EXITING;
    if (cv_stress_proc_signal(ch->c, node, sig) < 0) return fail(ch, "could not be signalled");
    if (m == CV_CHURN_SIGSTOP) uv_timer_start(&ch->timer, on_downtime, ch->o->churn_downtime_ms, 0);
}

static unsigned random_running(struct cv_stress_churn *ch)
{
    unsigned running[CV_STRESS_MAX_PROCS], n = 0;
    for (unsigned i = 0; i < ch->c->n_nodes; i++)
        if (ch->c->p[i].pid && !ch->c->p[i].stopped) running[n++] = i;
    return n ? running[rnd(ch) % n] : 0;
}

static void begin(struct cv_stress_churn *ch, unsigned node, const char *name)
{
    struct cv_stress_event *e = &ch->ev[ch->n_ev++];
    *e = (struct cv_stress_event){.t_ns = uv_hrtime(), .mode = cv_stress_churn_name(ch->o->churn_mode)};
    snprintf(e->node, sizeof e->node, "%s", name ? name : ch->c->p[node].id);
    take_down(ch, node);
}

static void on_cluster(void *data, const struct cv_httpc_response *r)
{
    struct cv_stress_churn *ch = data;
    if (r->err == CV_ECANCELED) return;
    unsigned node = random_running(ch);
    json_t *j = r->err ? NULL : json_loadb(r->body, r->len, 0, NULL);
    const char *leader = json_string_value(json_object_get(j, "leader"));
    for (unsigned i = 0; leader && i < ch->c->n_nodes; i++)
        if (!strcmp(ch->c->p[i].id, leader) && ch->c->p[i].pid) node = i;
    json_decref(j);
    begin(ch, node, NULL);
}

bool cv_stress_churn_fire(struct cv_stress_churn *ch)
{
    if (ch->step != S_IDLE || ch->failed || ch->n_ev == CV_STRESS_MAX_EVENTS) return false;
    enum cv_stress_churn_mode m = ch->o->churn_mode;
    if (m == CV_CHURN_ROLLING) return begin(ch, 0, "all"), true;
    if (m != CV_CHURN_LEADER) return begin(ch, random_running(ch), NULL), true;
    char url[256];
    snprintf(url, sizeof url, "http://%s/v1/cluster", ch->c->p[random_running(ch)].http);
    ch->step = S_LEADER;
    if (cv_stress_node_get(ch->c, ch->http, url, 2000, on_cluster, ch) < 0) begin(ch, random_running(ch), NULL);
    return true;
}

bool cv_stress_churn_busy(const struct cv_stress_churn *ch) { return ch->step != S_IDLE; }

void cv_stress_churn_init(struct cv_stress_churn *ch, uv_loop_t *loop, struct cv_stress_cluster *c,
                          const struct cv_stress_opts *o, struct cv_httpc *http)
{
    memset(ch, 0, sizeof *ch);
    ch->loop = loop;
    ch->c = c;
    ch->o = o;
    ch->http = http;
    ch->rng = o->seed * 0x2545F4914F6CDD1Dull + 12345;
    uv_timer_init(loop, &ch->timer);
    ch->timer.data = ch;
}

void cv_stress_churn_stop(struct cv_stress_churn *ch, cv_stress_churn_cb cb, void *data)
{
    if (ch->step == S_IDLE) return cb(ch, data);
    ch->idle_cb = cb;
    ch->idle_data = data;
}

void cv_stress_churn_close(struct cv_stress_churn *ch, void (*cb)(uv_handle_t *))
{
    uv_close((uv_handle_t *)&ch->timer, cb);
}
