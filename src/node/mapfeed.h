/* The shard-map feed: catalog.subscribe answers the current ShardMap, then pushes it to every subscribed
 * connection (a KIND_EVENT "catalog.shard_map") after changes of nodes, owners or leader. */
#ifndef CV_NODE_MAPFEED_H
#define CV_NODE_MAPFEED_H

#include "net/rpc.h"
#include "node/hctx.h"

#define CV_HOST_PUSH_MIN_MS 50 /* at most one shard-map push to subscribers per this interval */
/* A KIND_EVENT "catalog.heartbeat" (body: the applied index, 8 bytes big-endian) to every subscriber this
 * often while the node serves (not fenced): a gate that hears nothing from its subscription for a few
 * of these (CV_GATE_SUB_STALL_MS) subscribes to another node. */
#define CV_MAPFEED_HEARTBEAT_MS 200

struct cv_mapfeed {
    struct cv_hctx *x;            /* first member (cv_hctx_handle_closed); borrowed */
    struct cv_rpc_conn **subs;    /* referenced connections */
    size_t n_subs, cap_subs;
    uint64_t last_push_ms, nodes_sig;
    uint64_t last_beat_ms;        /* last push or heartbeat */
    uv_timer_t push_timer;
};

void cv_mapfeed_init(struct cv_mapfeed *f, struct cv_hctx *x);
/* The ShardMap of catalog cat (shards shards) with the leader and term of st, packed into a malloc'ed
 * buffer (owned by the caller). 0 or CV_ENOMEM. */
int cv_mapfeed_pack(struct cv_catalog *cat, uint32_t shards, const struct cv_consensus_status *st,
                    uint8_t **out, size_t *len);
/* FNV-1a over what subscribers see of the nodes (ids, addresses, liveness, roles, shard counts). */
uint64_t cv_mapfeed_nodes_signature(struct cv_catalog *cat);
/* Something subscribers see changed: push within CV_HOST_PUSH_MIN_MS of the previous push. */
void cv_mapfeed_changed(struct cv_mapfeed *f);
/* After an applied entry: pushes if what subscribers see of the nodes changed. */
void cv_mapfeed_check_nodes(struct cv_mapfeed *f);
/* From the host's periodic tick: a heartbeat to every subscriber when none went out for
 * CV_MAPFEED_HEARTBEAT_MS, unless the node is fenced (its map may be stale: gates must move on). */
void cv_mapfeed_tick(struct cv_mapfeed *f);
/* In how many ms cv_mapfeed_tick sends the next heartbeat (now: cv_mono_ms()); UINT_MAX: none due. */
unsigned cv_mapfeed_next_ms(const struct cv_mapfeed *f, uint64_t now);
/* Serves catalog.subscribe. */
void cv_mapfeed_subscribe(struct cv_mapfeed *f, struct cv_rpc_conn *conn, uint64_t id, const uint8_t *body,
                          size_t len);
/* A connection closed: forget its subscription. */
void cv_mapfeed_conn_closed(struct cv_mapfeed *f, struct cv_rpc_conn *conn);
/* Host closing: drops the subscribers and closes the timer (one part of the host). */
void cv_mapfeed_close(struct cv_mapfeed *f);

#endif
