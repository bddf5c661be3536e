/* A node's call statistics for the inspector: calls, errors and latency per shard and per object
 * type/method, in fixed arrays sized once when the host starts (nothing allocated or sent per call). */
#ifndef CV_NODE_STATS_H
#define CV_NODE_STATS_H

#include <jansson.h>
#include <stdint.h>

#include "objects/registry.h"
#include "util/buf.h"
#include "util/hist.h"

/* One registered method's counters. */
struct cv_stats_method {
    const char *type, *method; /* borrowed from the registry's types (they outlive the node) */
    uint64_t calls, errors;
    struct cv_hist lat;
};

struct cv_node_stats;

/* Tables for shards shards and every method of reg's types (reg is frozen: the set never changes).
 * *out is owned by the caller (cv_node_stats_free). CV_ENOMEM, CV_EINVAL (shards 0). */
int cv_node_stats_new(const cv_registry *reg, uint32_t shards, struct cv_node_stats **out);
void cv_node_stats_free(struct cv_node_stats *s); /* NULL ok */

/* Counts one call this node answered: t/m the type and method as the registry gave them (NULL, or a
 * method not registered: counted in the totals only), shard < the shard count or CV_STATS_NO_SHARD,
 * status 0 (a call) or a CV_E* code (a call and an error), us the time from taking the call to the
 * answer. O(1): a lookup in a table built once, a few increments; no allocation. */
#define CV_STATS_NO_SHARD UINT32_MAX
void cv_node_stats_count(struct cv_node_stats *s, const struct cv_object_type *t, const struct cv_method *m,
                         uint32_t shard, int status, uint64_t us);

/* Readers (counters are cumulative since cv_node_stats_new). */
uint64_t cv_node_stats_calls(const struct cv_node_stats *s);
uint64_t cv_node_stats_errors(const struct cv_node_stats *s);
size_t cv_node_stats_n_methods(const struct cv_node_stats *s);
const struct cv_stats_method *cv_node_stats_method(const struct cv_node_stats *s, size_t i); /* borrowed */
/* Shard's counters (0 for a shard out of range). */
void cv_node_stats_shard(const struct cv_node_stats *s, uint32_t shard, uint64_t *calls, uint64_t *errors);

/* GET /v1/stats's body (docs/protocol.md): {"node","uptime_ms","rss_bytes","cpu_seconds" (the process's
 * resident memory and user + system CPU time so far),"calls","errors","shards":{"<n>":
 * {"calls","errors"}} (shards with calls only),"methods":[{"type","method","calls","errors","p50_ms",
 * "p99_ms","sum_ms","buckets":[per bucket],"le":[upper bounds in ms, null = +Inf]}]}. New reference,
 * NULL out of memory. */
json_t *cv_node_stats_json(const struct cv_node_stats *s, const char *node);
/* cverse_calls_total and cverse_call_errors_total (families and samples) on a metrics page. */
void cv_node_stats_prom(const struct cv_node_stats *s, struct cv_buf *b);

#endif
