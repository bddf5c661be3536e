/* The gate's metrics page, written with the shared Prometheus writer (util/prom.h). Happy path: one
 * family line per metric, then its samples from the stats snapshot. Failure mode: out of memory while
 * writing sets the buffer's oom flag; the page is then NULL and the HTTP front end answers 500. */
#include "gate/metrics.h"

#include <stdio.h>
#include <stdlib.h>

#include "auth/guard.h"
#include "util/hist.h"
#include "util/prom.h"

static void metrics__results(const struct cv_gate_stats *s, struct cv_buf *b)
{
    const char *c = "cverse_gate_requests_total";
    char labels[96];
    cv_prom_family(b, c, "counter", "Client requests answered, by operation and result code.");
    for (int op = 0; op < CV_GATE_N_OPS; op++)
        for (int k = 0; k < CV_STATUS_N; k++) {
            if (!s->results[op][k] && k != CV_STATUS_OK) continue;
            snprintf(labels, sizeof labels, "op=\"%s\",result=\"%s\"", cv_gate_op_names[op],
                     cv_status_name((enum cv_status)k));
            cv_prom_sample_u64(b, c, labels, s->results[op][k]);
        }
}

static void metrics__retries(const struct cv_gate_stats *s, struct cv_buf *b)
{
    cv_prom_counters(b, "cverse_gate_retries_total", "Forwards retried, by cause.", "reason", cv_gate_retry_names,
                     s->retries, CV_GATE_N_RETRY);
}

const char *const cv_gate_cut_names[CV_GATE_N_CUT] = {"request_timeout", "idle_timeout", "max_connections",
                                                      "tls_failed"};

/* The client ports' limits (docs/security.md "TLS and limits"). */
static void metrics__limits(const struct cv_gate_stats *s, struct cv_buf *b)
{
    cv_prom_counters(b, "cverse_gate_connections_cut_total", "Client connections the gate cut, by reason.",
                     "reason", cv_gate_cut_names, s->cut, CV_GATE_N_CUT);
    cv_prom_counter(b, "cverse_gate_rate_limited_total", "Client requests answered 429 by the per-client rate limit.",
                    s->rate_limited);
}

static void metrics__latency(const struct cv_gate_stats *s, struct cv_buf *b)
{
    const char *h = "cverse_gate_request_seconds";
    char labels[32];
    cv_prom_family(b, h, "histogram", "Time from receiving a client request to answering it.");
    for (int op = 0; op < CV_GATE_N_OPS; op++) {
        snprintf(labels, sizeof labels, "op=\"%s\"", cv_gate_op_names[op]);
        cv_hist_prom(b, h, labels, &s->lat[op]);
    }
}

/* A gauge whose value is an integer (printed exactly). */
static void metrics__gauge(struct cv_buf *b, const char *name, const char *help, uint64_t v)
{
    cv_prom_family(b, name, "gauge", help);
    cv_prom_sample_u64(b, name, NULL, v);
}

char *cv_gate_metrics_text(const struct cv_gate_stats *s, const struct cv_gate_push_stats *ps, size_t *len)
{
    struct cv_buf b = {0};
    metrics__results(s, &b);
    metrics__retries(s, &b);
    metrics__latency(s, &b);
    metrics__gauge(&b, "cverse_gate_map_applied_index", "Applied index of the gate's shard map.", s->map_index);
    cv_prom_counter(&b, "cverse_gate_maps_applied_total", "Shard maps applied.", s->maps_applied);
    metrics__gauge(&b, "cverse_gate_shards_unassigned", "Shards without an owner in the gate's map.",
                   s->unassigned);
    metrics__gauge(&b, "cverse_gate_node_connections", "Nodes the gate is connected to.", s->connections);
    metrics__gauge(&b, "cverse_gate_requests_in_flight", "Client requests being processed.", s->inflight);
    metrics__gauge(&b, "cverse_gate_client_connections", "Client connections open (HTTP and native ports).", s->client_conns);
    metrics__limits(s, &b);
    if (s->etcd_up >= 0)
        metrics__gauge(&b, "cverse_etcd_up", "1 if etcd (discovery) answered the last call, else 0.", s->etcd_up);
    cv_prom_counter(&b, "cverse_gate_maps_ignored_total", "Shard maps ignored (not newer than the gate's).",
                    s->maps_ignored);
    cv_prom_counter(&b, "cverse_gate_subscriptions_total", "Shard-map subscriptions established (failovers + 1).",
                    s->sub_switches);
    cv_prom_counter(&b, "cverse_gate_subscription_stalls_total",
                    "Shard-map subscriptions given up because their node fell silent (no heartbeat).", s->sub_stalls);
    cv_prom_counter(&b, "cverse_gate_resends_total",
                    "Calls sent again because their node was declared dead while they were pending.", s->resends);
    if (ps) {
        cv_prom_counter(&b, "cverse_gate_push_delivered_total", "Pushed messages written to a client's stream.",
                        ps->delivered);
        cv_prom_counter(&b, "cverse_gate_push_dropped_total",
                        "Pushed messages dropped: a client's queue full (oldest first), or the client unknown.",
                        ps->dropped);
        metrics__gauge(&b, "cverse_gate_clients", "Push clients connected (event streams).", ps->clients);
    }
    cv_guard_metrics(&b); /* the gate's handshakes with nodes (auth/guard.h) */
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}
