/* Object hosting inside a node: owns the object runtime and wires its parts (incall, outcall, ops,
 * autoload, handoff, mapfeed), which serve "objects.call" / "objects.create" / "objects.delete" /
 * "catalog.subscribe", create the auto-load objects, release shards that move away and give objects
 * their cluster services; reacts to applied catalog entries. */
#ifndef CV_NODE_HOST_H
#define CV_NODE_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "catalog/catalog.h"
#include "config/config.h"
#include "consensus/consensus.h"
#include "net/rpc.h"
#include "objects/runtime.h"

struct cv_host;
struct cv_peers;
struct cv_feed;
struct cv_node_stats;

#define CV_HOST_CALL_TIMEOUT_MS 30000 /* object-to-object calls, redirect retries included */

struct cv_host_opts {
    /* Borrowed, valid until cv_host_close's done ran. */
    uv_loop_t *loop;
    const struct cv_config *cfg;
    const struct cv_node_cfg *self;   /* this node */
    struct cv_catalog *catalog;
    struct cv_consensus *consensus;   /* created (cv_consensus_init); the host proposes once ready */
    struct cv_peers *peers;           /* connections to other nodes for objects' calls. The host never
                                       * closes it: the owner (the node) closes it together with the host;
                                       * calls in flight on it hold the host's close until the pool fails
                                       * them (CV_ECANCELED) */
    /* The node's catalog readiness (cv_node_catalog_ready): objects are activated and auto-loaded once
     * it said true the first time. */
    bool (*catalog_ready)(void *data, const char **why);
    void *data;
    /* End of the node's serving window (cv_mono_ms, its lease), read with data; NULL = unbounded. Calls,
     * activations and every mailbox entry are checked against it (runtime.h: serve_until). */
    uint64_t (*serve_until)(void *data);
    cv_registry *registry;     /* the object types; borrowed, valid until done ran; frozen at init */
    unsigned call_timeout_ms;  /* 0 = CV_HOST_CALL_TIMEOUT_MS */
    unsigned autoload_inflight; /* 0 = CV_HOST_AUTOLOAD_INFLIGHT (autoload.h) */
};

/* Creates the host (the catalog is open, the consensus created); starts nothing. *out is freed by
 * cv_host_close. CV_ENOMEM, CV_EINVAL. */
int cv_host_init(const struct cv_host_opts *opts, struct cv_host **out);
/* Starts the runtime; from now on cv_host_tick does the host's periodic work. */
void cv_host_start(struct cv_host *h);
/* The host's periodic work (retries, handoff scan, map-feed heartbeats, auto-load, reminders, idle
 * objects): the node calls it after each consensus tick. Returns in how many ms it wants the next one
 * (CV_CONSENSUS_TICK_MS while something retries or waits; else its next deadline): the consensus'
 * on_tick (consensus.h). Nothing before cv_host_start or once closing (UINT_MAX: no wish). */
unsigned cv_host_tick(struct cv_host *h);
/* The node is stopping: calls are refused from now on ("shutting down"); close follows. */
void cv_host_stop(struct cv_host *h);

/* Serves the host's RPC methods on the node's RPC server. Returns false (nothing done) for a method that
 * is not the host's. */
bool cv_host_handle_rpc(struct cv_host *h, struct cv_rpc_conn *conn, uint64_t id, const char *method,
                        const uint8_t *body, size_t len, uint32_t deadline_ms);
/* A connection of the node's RPC server closed: forget its subscription. */
void cv_host_conn_closed(struct cv_host *h, struct cv_rpc_conn *conn);

/* After every applied catalog entry (the node's consensus on_applied): activations of created objects,
 * destruction of deleted ones, shard moves, subscriber pushes. */
void cv_host_applied(struct cv_host *h, uint64_t index, const Cverse__Catalog__Batch *batch,
                     const struct cv_cmd_result *results);
/* The raft leader changed: subscribers get a fresh map (it names the leader). */
void cv_host_leader_changed(struct cv_host *h);

/* Ready once the auto-load objects of this node's shards (and its per-node ones) exist in the catalog
 * and are active here; false with a static reason otherwise. */
bool cv_host_ready(struct cv_host *h, const char **why);

/* The node's lease stopped (fenced true) or started again (false) being confirmed. Fencing deactivates
 * every object (their queued calls fail with CV_EUNAVAIL) and stops activations and auto-load; calls are
 * refused with CV_EUNAVAIL until unfenced, which resumes auto-load. Returns the objects deactivated. */
int cv_host_fence(struct cv_host *h, bool fenced);

/* The state saver's counters (GET /metrics): saves, committed, refused, failed, batches, bytes. */
struct cv_saver_counts {
    uint64_t saves, committed, refused, failed, batches, bytes;
};
void cv_host_saver_counts(struct cv_host *h, struct cv_saver_counts *out);
/* Pushes to clients sent and dropped (node/push.h; /metrics). */
struct cv_push_counts;
void cv_host_push_counts(struct cv_host *h, struct cv_push_counts *out);

/* The runtime (listing active objects for GET /v1/objects). */
struct cv_runtime *cv_host_runtime(struct cv_host *h);
/* The call statistics (node/stats.h; GET /v1/stats, /metrics), borrowed while h lives; NULL when the
 * environment says CVERSE_NODE_STATS=0 (only to measure what counting costs a call). */
struct cv_node_stats *cv_host_stats(struct cv_host *h);
/* The catalog change feed (node/feed.h; GET /v1/events), borrowed while h lives. */
struct cv_feed *cv_host_feed(struct cv_host *h);

/* Stops everything: pending calls and operations fail (CV_ECLOSED / CV_ECANCELED), subscribers are
 * dropped, the timers and the runtime close (objects deactivate). The peer pool is not the host's: calls
 * of objects still in flight on it hold the host open until the owner closes the pool (which fails them
 * with CV_ECANCELED), and proposals still pending hold it until the consensus fails them
 * (cv_consensus_close), so close the host, the pool and the consensus together. done(data) runs once all
 * of it finished and h was freed. */
void cv_host_close(struct cv_host *h, void (*done)(void *data), void *data);

#endif
