/* cverse-stress's end-state check (see endstate.h).
 *
 * Happy path: a round GETs /v1/shards and /v1/cluster of every running node; it passes when every answer
 * is 200, the owners and epochs of /v1/shards are identical on all nodes, no shard is unowned and every
 * owner is a running node, and the catalog view of /v1/cluster (leader, and each node's id, alive flag
 * and shard count) is identical on all nodes with every running node alive.
 * Failure modes: a round that does not pass is repeated after 500 ms; at the deadline the last
 * difference is the report (which node, which shard or field). */
#include "stress/endstate.h"

#include <stdio.h>
#include <string.h>

#include "cverse/error.h"

static void round_start(struct cv_stress_endstate *es);

static bool running(const struct cv_stress_cluster *c, unsigned i) { return cv_stress_proc_up(c, i); }

/* leader + [{id, alive, shards}] of a /v1/cluster answer (new reference). */
static json_t *summary(json_t *view)
{
    json_t *out = json_array();
    json_array_append(out, json_object_get(view, "leader"));
    size_t k;
    json_t *n;
    json_array_foreach(json_object_get(view, "nodes"), k, n)
        json_array_append_new(out, json_pack("{sOsOsO}", "id", json_object_get(n, "id"), "alive",
                                             json_object_get(n, "alive"), "shards", json_object_get(n, "shards")));
    return out;
}

static bool owners_live(struct cv_stress_endstate *es, json_t *owners, const char *node)
{
    size_t s;
    json_t *o;
    json_array_foreach(owners, s, o) {
        const char *id = json_string_value(o);
        int idx = id ? cv_config_node_index(es->c->cfg, id) : -1;
        if (idx < 0 || !running(es->c, (unsigned)idx)) {
            snprintf(es->report, sizeof es->report, "%s: shard %zu owned by %s, not a running node", node, s,
                     id ? id : "nobody");
            return false;
        }
    }
    return true;
}

static bool evaluate(struct cv_stress_endstate *es)
{
    struct cv_stress_cluster *c = es->c;
    int ref = -1;
    for (unsigned i = 0; i < c->n_nodes; i++) {
        if (!running(c, i)) continue;
        const char *id = c->p[i].id;
        json_t *owners = json_object_get(es->shards[i], "owners");
        if (!json_is_array(owners) || !es->view[i])
            return snprintf(es->report, sizeof es->report, "%s: no /v1/shards or /v1/cluster answer", id), false;
        if (!owners_live(es, owners, id)) return false;
        json_t *sum = summary(es->view[i]);
        bool same = true;
        if (ref >= 0) {
            json_t *rs = summary(es->view[ref]);
            same = json_equal(owners, json_object_get(es->shards[ref], "owners")) &&
                   json_equal(json_object_get(es->shards[i], "epochs"), json_object_get(es->shards[ref], "epochs"));
            if (!same) snprintf(es->report, sizeof es->report, "%s and %s: shard maps differ", id, c->p[ref].id);
            else if (!(same = json_equal(sum, rs)))
                snprintf(es->report, sizeof es->report, "%s and %s: catalog views (/v1/cluster) differ", id, c->p[ref].id);
            json_decref(rs);
        }
        size_t k;
        json_t *n;
        json_array_foreach(json_object_get(es->view[i], "nodes"), k, n) {
            int idx = cv_config_node_index(c->cfg, json_string_value(json_object_get(n, "id")));
            if (same && idx >= 0 && running(c, (unsigned)idx) && !json_is_true(json_object_get(n, "alive"))) {
                snprintf(es->report, sizeof es->report, "%s: running node %s is not alive in its view", id, c->p[idx].id);
                same = false;
            }
        }
        json_decref(sum);
        if (!same) return false;
        if (ref < 0) ref = (int)i;
    }
    return ref >= 0 || (snprintf(es->report, sizeof es->report, "no running node"), false);
}

static void round_clear(struct cv_stress_endstate *es)
{
    for (unsigned i = 0; i < CV_STRESS_MAX_PROCS; i++) {
        json_decref(es->shards[i]);
        json_decref(es->view[i]);
        es->shards[i] = es->view[i] = NULL;
    }
}

static void again(uv_timer_t *t) { round_start(t->data); }

static void round_end(struct cv_stress_endstate *es)
{
    es->ok = evaluate(es);
    round_clear(es);
    uint64_t now = uv_hrtime();
    if (!es->ok && now < es->deadline_ns) return (void)uv_timer_start(&es->timer, again, 500, 0);
    if (es->ok) es->converged_s = (double)(now - es->start_ns) / 1e9;
    es->cb(es, es->data);
}

static void on_answer(void *data, const struct cv_httpc_response *r)
{
    struct cv_stress_endstate_req *q = data;
    if (!r->err && r->status == 200) *q->slot = json_loadb(r->body, r->len, 0, NULL);
    if (--q->es->pending == 0) round_end(q->es);
}

static void round_start(struct cv_stress_endstate *es)
{
    es->pending = 1;
    for (unsigned i = 0; i < es->c->n_nodes; i++) {
        if (!running(es->c, i)) continue;
        for (int k = 0; k < 2; k++) {
            char url[256];
            snprintf(url, sizeof url, "http://%s/v1/%s", es->c->p[i].http, k ? "cluster" : "shards");
            struct cv_stress_endstate_req *q = &es->reqs[2 * i + (unsigned)k];
            *q = (struct cv_stress_endstate_req){es, k ? &es->view[i] : &es->shards[i]};
            es->pending++;
            if (cv_stress_node_get(es->c, es->http, url, 2000, on_answer, q) < 0) es->pending--;
        }
    }
    if (--es->pending == 0) round_end(es);
}

void cv_stress_endstate_start(struct cv_stress_endstate *es, uv_loop_t *loop, struct cv_stress_cluster *c,
                              struct cv_httpc *http, unsigned timeout_ms, cv_stress_endstate_cb cb, void *data)
{
    memset(es, 0, sizeof *es);
    es->c = c;
    es->http = http;
    es->cb = cb;
    es->data = data;
    es->start_ns = uv_hrtime();
    es->deadline_ns = es->start_ns + (uint64_t)timeout_ms * 1000000ull;
    uv_timer_init(loop, &es->timer);
    es->timer.data = es;
    round_start(es);
}

void cv_stress_endstate_close(struct cv_stress_endstate *es, void (*cb)(uv_handle_t *))
{
    uv_close((uv_handle_t *)&es->timer, cb);
}
