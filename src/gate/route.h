/* Gate routing (pure, no I/O): the gate's copy of the shard map, where an object id goes, retry policy. */
#ifndef CV_GATE_ROUTE_H
#define CV_GATE_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "rpc.pb-c.h"

/* The latest ShardMap the gate applied (from the catalog.subscribe response or a catalog.shard_map push). */
struct cv_gate_map {
    Cverse__Rpc__ShardMap *pb; /* NULL until the first map; owned (protobuf-c unpacked) */
};

/* Applies a serialized ShardMap when it is the first one or its applied_index is greater than the
 * current one (pushes may arrive late or from a lagging node after a failover: never go back).
 * Returns 1 if applied, 0 if ignored (not newer), CV_EPROTO if buf does not decode or is inconsistent
 * (shards == 0, or as many owners as shards not given), CV_ENOMEM. */
int cv_gate_map_apply(struct cv_gate_map *m, const uint8_t *buf, size_t len);
void cv_gate_map_free(struct cv_gate_map *m);
/* applied_index of the map, 0 without a map. */
uint64_t cv_gate_map_index(const struct cv_gate_map *m);
/* Shards without an owner; UINT32_MAX without a map. */
uint32_t cv_gate_map_unassigned(const struct cv_gate_map *m);
/* The map's entry for node id (len bytes, not necessarily NUL-terminated), or NULL. */
const Cverse__Rpc__NodeAddr *cv_gate_map_node(const struct cv_gate_map *m, const char *id, size_t len);

enum cv_route_action {
    CV_ROUTE_SEND = 0, /* send to node `node` */
    CV_ROUTE_WAIT,     /* no owner now (no map yet, unassigned shard, pinned node not registered): retry */
    CV_ROUTE_FAIL      /* the id can never be routed: fail the call with err */
};

#define CV_GATE_NODE_ID_MAX 64 /* node ids are at most 63 characters (config) */

struct cv_route {
    enum cv_route_action action;
    char node[CV_GATE_NODE_ID_MAX]; /* SEND: the target node's id */
    uint32_t shard;                 /* the object's shard (when the id parsed) */
    int err;                        /* WAIT: CV_EUNAVAIL; FAIL: CV_EINVAL or CV_ENOTFOUND; SEND: 0 */
    char why[192];                  /* WAIT / FAIL: one line for logs and error messages */
};

/* Decides where object id goes (core/hash.h placement): a plain id goes to the owner of hash(id) %
 * shards, "shard#N/x" to the owner of shard N, "<node>/x" to that node. cfg (never NULL) gives the
 * shard count before the first map and the configured node ids: an id pinned to a configured node the
 * map does not list (yet) or lists as not alive waits, one pinned to a node that is not in the config
 * fails with CV_ENOTFOUND. A malformed id (empty, "shard#x/…", shard out of range) fails with CV_EINVAL. */
void cv_gate_route(const struct cv_gate_map *m, const struct cv_config *cfg, const char *id,
                   struct cv_route *out);

/* A call sent to node sent_to and not answered yet: may the gate send it again, by map m? True when m
 * lists sent_to as not alive (declared dead: its lease ended and it fenced itself before, so it ran the
 * call before that or never will) and the id no longer routes to it (its shard has another owner, or
 * none yet). Never for an id pinned to sent_to (nowhere else to go) or one that cannot be routed. */
bool cv_gate_may_resend(const struct cv_gate_map *m, const struct cv_config *cfg, const char *id,
                        const char *sent_to);

/* Retry policy for calls that met a redirect or an unavailable shard. */
#define CV_GATE_BACKOFF_BASE_MS 20u  /* first retry waits 20..50 ms */
#define CV_GATE_BACKOFF_STEP_CAP_MS 200u /* the growing part stops doubling here: waits stay <= 500 ms */

/* Delay before the retry that follows `attempt` earlier retries: d = min(20 * 2^attempt, 200) ms, plus
 * jitter * 1.5 * d (jitter in [0, 1), spreads retries of many calls), so 20..50 ms first, then growing,
 * never above 500 ms. Never more than remaining_ms (the time left before the call's deadline). */
unsigned cv_gate_backoff_ms(unsigned attempt, double jitter, uint64_t remaining_ms);

/* Which errors are routed again is the error table's cv_err_reroute (cverse/error.h). */

#endif
