/* The gate's /metrics page: Prometheus text of a forwarder's counters and gauges (pure, no I/O). */
#ifndef CV_GATE_METRICS_H
#define CV_GATE_METRICS_H

#include <stddef.h>

#include "gate/forwarder.h"
#include "gate/push.h"

/* The page for stats (malloc'ed, NUL-terminated, owned by the caller), or NULL out of memory. Families:
 * cverse_gate_requests_total{op,result} (result: a client status name; OK always listed, the others once
 * seen), cverse_gate_retries_total{reason}, cverse_gate_request_seconds{op} (histogram), and the map,
 * connection and in-flight gauges and counters listed in docs/protocol.md. */
/* ps (NULL: none): the push clients' families cverse_gate_push_delivered_total, cverse_gate_push_dropped_total
 * and cverse_gate_clients (docs/push.md). */
char *cv_gate_metrics_text(const struct cv_gate_stats *s, const struct cv_gate_push_stats *ps, size_t *len);

#endif
