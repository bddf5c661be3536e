/* What the object host's parts (incall, outcall, ops, autoload, handoff, mapfeed) share: the borrowed
 * components, the serving state, the count of callbacks still owed, and ownership/activation helpers. */
#ifndef CV_NODE_HCTX_H
#define CV_NODE_HCTX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "catalog/catalog.h"
#include "config/config.h"
#include "consensus/consensus.h"
#include "core/hash.h"
#include "objects/runtime.h"

#define CV_HOST_TYPE_MAX 128
#define CV_HOST_ID_MAX 512
#define CV_HOST_PROPOSE_TIMEOUT_MS 10000

struct cv_peers;
struct cv_node_stats;
struct cv_incall;

struct cv_hctx {
    /* Borrowed; valid until the host's close callback ran. */
    uv_loop_t *loop;
    const struct cv_config *cfg;
    const char *self;             /* this node's id */
    struct cv_catalog *cat;
    struct cv_consensus *cons;
    struct cv_peers *peers;
    cv_registry *reg;
    struct cv_runtime *rt;        /* owned by the host */
    struct cv_node_stats *stats;  /* owned by the host; NULL when CVERSE_NODE_STATS=0 (measurement) */
    struct cv_incall *in;         /* the host's incoming calls (first-call activation); set by its init */

    /* End of the node's serving window (cv_mono_ms; the node's lease), or NULL: unbounded. */
    uint64_t (*serve_until)(void *data);
    void *serve_data;

    bool started;  /* the node was ready once: activations and auto-load run */
    bool fenced;   /* the node's lease is not confirmed: nothing is served, activated or auto-loaded */
    bool stopping; /* the node is stopping: calls are refused */
    bool closing;  /* the host is closing: everything completes with CV_ECLOSED */
    size_t ops;    /* callbacks into the host still owed (proposals, calls, operations) */
    int parts;     /* handles and components still closing */
    void (*settle)(struct cv_hctx *x); /* the host: may free itself once closing, ops and parts are 0 */
};

/* An operation that calls back into the host began / ended (ending may free the host when closing). */
static inline void cv_hctx_hold(struct cv_hctx *x)
{
    x->ops++;
}
void cv_hctx_release(struct cv_hctx *x);
/* A handle or component of the host finished closing. */
void cv_hctx_part_closed(struct cv_hctx *x);
/* uv_close callback for a handle whose data is a struct whose FIRST member is a struct cv_hctx *. */
void cv_hctx_handle_closed(uv_handle_t *h);

/* May this node serve objects now: not fenced, and its serving window (read with a fresh clock) still
 * open — a process resumed after SIGSTOP answers no before its fence timer ran. */
bool cv_hctx_serving(const struct cv_hctx *x);
/* Does this node own shard (catalog)? */
bool cv_hctx_owns(void *x, uint32_t shard);
/* Owner of id into owner (CV_NODE_ID_MAX bytes; "" = unassigned) and its placement. CV_EINVAL for a bad
 * id, CV_ENOTFOUND if it is pinned to a node the configuration does not have. */
int cv_hctx_owner(const struct cv_hctx *x, const char *id, struct cv_placement *p, char *owner);
/* Activates (type, id) here if the node was ready once, the host is open and it is not active yet
 * (created: a new object, its `created` hook runs). */
void cv_hctx_ensure_active(struct cv_hctx *x, const char *type, const char *id, bool created);
/* After entry `index` applied a CreateObject of (type, id) with status 0: activates it here if we own it,
 * as a new object only if that entry is the one that created it. */
void cv_hctx_activate_applied(struct cv_hctx *x, const char *type, const char *id, uint64_t index);
/* Work for the host's tick appeared (a retry, a scan, a subscriber): the next one runs within
 * CV_CONSENSUS_TICK_MS instead of at the host's next deadline (consensus.h, on_tick). */
static inline void cv_hctx_wake(struct cv_hctx *x)
{
    if (!x->closing && x->cons) cv_consensus_tick_soon(x->cons, CV_CONSENSUS_TICK_MS); /* no consensus: unit tests */
}
/* Starts the one-shot timer t unless it is already pending. */
void cv_hctx_timer_again(uv_timer_t *t, uv_timer_cb cb, uint64_t ms);

#endif
