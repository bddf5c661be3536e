/* Per-node object runtime: registry of object types, table of active objects, per-object bounded
 * mailboxes executed one entry at a time on the node's libuv loop. Single-threaded. */
#ifndef CV_OBJECTS_RUNTIME_H
#define CV_OBJECTS_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "cverse/object.h"

#define CV_MAILBOX_DEFAULT 1024

struct cv_runtime;

/* Object lifecycle. ACTIVATING (hooks pending) -> ACTIVE (runs its mailbox) -> DEACTIVATING (queued
 * calls failed, waits for the call in flight) -> GONE (hooks ran, out of the table). ACTIVATING may go
 * straight to GONE when a hook fails. No other transition exists (checked under CV_CHECKS). */
enum cv_object_state { CV_OBJ_ACTIVATING = 0, CV_OBJ_ACTIVE, CV_OBJ_DEACTIVATING, CV_OBJ_GONE };

struct cv_runtime_opts {
    const char *node_id;     /* copied; pinned ids "<node>/x" with another node give CV_EREDIRECT */
    uint32_t shards;         /* cluster.shards, > 0 */
    size_t mailbox_capacity; /* queued calls per object (not counting the one running); 0 = 1024 */
    /* Does this node own shard? NULL = every shard. Consulted on every call (the shard map changes). */
    bool (*owns)(void *data, uint32_t shard);
    void *owns_data;
};

/* Outcome of cv_runtime_call. status 0: resp/len are the packed response (valid during the callback
 * only), error NULL. Negative: CV_E* from the handler (error = its message) or from the runtime:
 * CV_EREDIRECT (the object was deactivated before the call ran: retry, maybe elsewhere), CV_ECLOSED
 * (runtime closing), or the activation hook's code. error is then never NULL; resp is never NULL. */
typedef void (*cv_runtime_call_cb)(void *data, int status, const char *error, const uint8_t *resp,
                                   size_t len);
typedef void (*cv_runtime_close_cb)(struct cv_runtime *rt, void *data);

/* One entry of cv_runtime_list; strings valid during the visit only. */
struct cv_object_info {
    const char *type, *id;
    uint32_t shard;
    enum cv_object_state state;
    size_t queued; /* mailbox entries waiting (calls and timer ticks) */
    bool busy;     /* a call is in flight */
};

/* Lifecycle: init -> register types (cv_runtime_registry) -> start -> calls -> close(cb).
 * init allocates *out (freed by close); CV_EINVAL for bad opts, CV_ENOMEM. The loop must outlive rt. */
int cv_runtime_init(uv_loop_t *loop, const struct cv_runtime_opts *opts, struct cv_runtime **out);
/* The registry to pass to cv_register_type / cverse_module_init; frozen by cv_runtime_start. */
cv_registry *cv_runtime_registry(struct cv_runtime *rt);
/* Accepts calls from now on. */
void cv_runtime_start(struct cv_runtime *rt);
/* Refuses new calls (CV_ECLOSED), fails queued ones with CV_ECLOSED, deactivates every object (their
 * calls in flight finish first: a handler that never replies keeps close from completing), closes the
 * loop handles, then calls cb (optional) and frees rt. Call once. */
void cv_runtime_close(struct cv_runtime *rt, cv_runtime_close_cb cb, void *data);

/* Calls method of object (type, id) with a packed request; activates the object if needed. The callback
 * fires exactly once, never from inside this function; on a negative return it never fires:
 * CV_EUNAVAIL (not started), CV_ECLOSED (closing), CV_EINVAL (bad id), CV_EREDIRECT (shard not owned,
 * id pinned to another node, or the object is deactivating), CV_ENOTFOUND (unknown type or method),
 * CV_ECONFLICT (the id is active with another type), CV_EPROTO (req does not decode), CV_EBUSY (mailbox
 * full: RESOURCE_EXHAUSTED), CV_ENOMEM. req is decoded before return (the caller keeps ownership). */
int cv_runtime_call(struct cv_runtime *rt, const char *type, const char *id, const char *method,
                    const uint8_t *req, size_t len, cv_runtime_call_cb cb, void *data);

/* Ends the activation of id: queued calls fail with CV_EREDIRECT right away (asynchronously), timers
 * stop, the deactivated hook runs once the call in flight (if any) replied. New calls get CV_EREDIRECT
 * until the object is GONE; after that a call activates it again. CV_ENOTFOUND if not active. */
int cv_runtime_deactivate(struct cv_runtime *rt, const char *id);
/* Like cv_runtime_deactivate, then the destroyed hook runs too (the object is deleted for good). */
int cv_runtime_destroy(struct cv_runtime *rt, const char *id);
/* Deactivates every object of shard (the shard moved away); returns how many (>= 0). */
int cv_runtime_deactivate_shard(struct cv_runtime *rt, uint32_t shard);

/* Visits every object in the table that is ACTIVATING or ACTIVE (for GET /v1/objects); returns how
 * many were visited. fn must not call into the runtime. */
size_t cv_runtime_list(struct cv_runtime *rt, void (*fn)(void *data, const struct cv_object_info *info),
                       void *data);
/* Objects in the table (any state but GONE). */
size_t cv_runtime_count(const struct cv_runtime *rt);
const char *cv_object_state_name(enum cv_object_state s);

#endif
