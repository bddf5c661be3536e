/* Auto-load objects (cluster.auto_load_objects): which objects this node must create (per shard it owns,
 * per node, singletons on their shard's owner or pinned here) and a queue of CreateObject proposals
 * worked off with a bounded number in flight. */
#ifndef CV_NODE_AUTOLOAD_H
#define CV_NODE_AUTOLOAD_H

#include "node/hctx.h"

#define CV_HOST_AUTOLOAD_INFLIGHT 256 /* auto-load CreateObject proposals in flight at once */
#define CV_AUTOLOAD_NODE UINT32_MAX   /* item not tied to a shard (per-node, pinned singleton) */

struct cv_al_item {
    uint32_t entry, shard; /* index into cfg->autoload; the shard, or CV_AUTOLOAD_NODE */
};

struct cv_autoload {
    struct cv_hctx *x;     /* first member (cv_hctx_handle_closed); borrowed */
    unsigned max;          /* proposals in flight at once */
    uv_timer_t timer;
    uint8_t *owned;        /* per shard: its gain was processed (items queued) */
    uint32_t *entry_shard; /* per entry: the singleton's shard (CV_AUTOLOAD_NODE if pinned/not singleton) */
    bool *entry_ok;        /* per entry: its type is registered */
    struct cv_al_item *q;  /* queue [head, tail) */
    size_t head, tail, cap, inflight;
    size_t lost;           /* items that could not be queued (out of memory): pending, planned again */
    bool lost_node;        /* some of them are per-node or pinned items */
    bool reported;         /* "auto-load objects ready" logged */
    uint64_t started_ms;
};

/* Allocates the tables (from x->cfg and x->reg); no handle yet. CV_ENOMEM (then cv_autoload_free). */
int cv_autoload_init(struct cv_autoload *al, struct cv_hctx *x, unsigned max);
/* Initialises the timer (cannot fail). Once it ran, al is freed only after cv_autoload_close called back:
 * call it after every step of the owner's init that can fail. */
void cv_autoload_init_timer(struct cv_autoload *al);
/* The node is ready the first time (x->started is set): queues the per-node and pinned items and those of
 * the shards we own. */
void cv_autoload_start(struct cv_autoload *al);
/* Shards that became ours get their per-shard and singleton items queued; lost ones are forgotten. */
void cv_autoload_reconcile(struct cv_autoload *al);
/* Works the queue off from the next loop iteration if it has items and room in flight. */
void cv_autoload_schedule(struct cv_autoload *al);
/* The host's tick: plans again the items that could not be queued (out of memory), then schedules. */
void cv_autoload_tick(struct cv_autoload *al);
/* Items queued, in flight or lost to out of memory (to be planned again). */
size_t cv_autoload_pending(const struct cv_autoload *al);
/* The object id of an item into buf. */
void cv_autoload_id(const struct cv_config *cfg, const char *self, struct cv_al_item it, char *buf, size_t len);
/* Host closing: closes the timer (one part of the host). */
void cv_autoload_close(struct cv_autoload *al);
/* Frees the tables (after close, or after a failed init). */
void cv_autoload_free(struct cv_autoload *al);

#endif
