/* The inspector's call statistics: rates, error rates and latency percentiles derived from two successive
 * reads of the nodes' cumulative GET /v1/stats, per node, per type/method and per shard, and a history of
 * the cluster's totals for the overview's charts. Pure: no I/O. */
#ifndef CV_INSPECTOR_STATS_H
#define CV_INSPECTOR_STATS_H

#include <jansson.h>

#include "config/config.h"
#include "inspector/model.h"

/* Points of the cluster's history (one per poll round: ~5 minutes at the default 1 s). */
#define CV_INSP_STATS_HISTORY 300

struct cv_insp_stats;

/* For cfg's nodes and shards (cfg borrowed, outlives s). CV_ENOMEM. */
int cv_insp_stats_new(const struct cv_config *cfg, struct cv_insp_stats **out);
void cv_insp_stats_free(struct cv_insp_stats *s); /* NULL ok */

/* Takes a finished round: each node's /v1/stats answer (m->nodes[i].doc[CV_INSP_STATS], borrowed) against
 * the node's previous one. Rates are per second of the node's own uptime between the two reads; a node
 * without an answer, or whose counters went back (it restarted), starts again from this read (no rate
 * until its next one). Percentiles come from the latency buckets of the calls between the two reads. */
void cv_insp_stats_update(struct cv_insp_stats *s, const struct cv_insp_model *m);

/* {"time_ms","calls_s","errors_s","p50_ms","p99_ms" (null without calls),
 *  "nodes":[{"id","live","calls_s","errors_s","error_rate","p50_ms","p99_ms","uptime_ms","calls","errors","rss_bytes",
 *   "cpu_pct" (% of one core between the two reads, null without)}] (the config's order), "methods":[{"type","method","calls_s","errors_s","calls","errors","p50_ms",
 *   "p99_ms"}], "types":[{"type","calls_s","errors_s","calls","errors","p50_ms","p99_ms","active"}]
 *   (active: objects of the type in the model's /v1/objects lists), "shard_calls_s":[per shard],
 *  "history":{"time_ms":[…],"calls_s":[…],"errors_s":[…],"p50_ms":[…],"p99_ms":[…]}} (oldest first).
 * New reference; NULL out of memory. */
json_t *cv_insp_stats_json(const struct cv_insp_stats *s, const struct cv_insp_model *m);

#endif
