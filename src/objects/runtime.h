/* Per-node object runtime: registry of object types, table of active objects, per-object bounded
 * mailboxes executed one entry at a time on the node's libuv loop. Single-threaded. */
#ifndef CV_OBJECTS_RUNTIME_H
#define CV_OBJECTS_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "cverse/object.h"
#include "objects/registry.h"

#define CV_MAILBOX_DEFAULT 1024

struct cv_runtime;

/* Object lifecycle as callers see it. ACTIVATING (hooks pending) -> ACTIVE (runs its mailbox) ->
 * DEACTIVATING (queued calls failed, waits for the call in flight) -> GONE (hooks ran, out of the
 * table). ACTIVATING may go straight to GONE when a hook fails. The full machine (objects/object.h)
 * has one more state, a deactivation asked for while ACTIVATING, reported as DEACTIVATING. */
enum cv_object_state { CV_OBJ_ACTIVATING = 0, CV_OBJ_ACTIVE, CV_OBJ_DEACTIVATING, CV_OBJ_GONE };

/* Outcome of cv_runtime_call. status 0: resp/len are the packed response (valid during the callback
 * only), error NULL. Negative: CV_E* from the handler (error = its message) or from the runtime:
 * CV_EREDIRECT (the object was deactivated before the call ran: retry, maybe elsewhere), CV_ECLOSED
 * (runtime closing), or the activation hook's code. error is then never NULL; resp is never NULL. */
typedef void (*cv_runtime_call_cb)(void *data, int status, const char *error, const uint8_t *resp,
                                   size_t len);
/* Outcome of a host operation (create/delete): status 0 or a CV_E* code; error never NULL on failure. */
typedef void (*cv_host_done_cb)(void *data, int status, const char *error);
/* Outcome of a state save: 0 = durable (committed); else the code the replies waiting for it fail with:
 * a re-routed one (CV_EUNAVAIL) when the save certainly did not commit (rejected: not the owner any
 * more), CV_ETIMEDOUT when its outcome is unknown. error never NULL on failure. */
typedef void (*cv_state_saved_cb)(void *data, int status, const char *error);
/* One answered reliable call (docs/durable-state.md): strings and resp borrowed (valid during the hook). */
struct cv_call_record {
    const char *id;
    int status;
    const char *error; /* "" on success */
    const uint8_t *resp;
    size_t len;
    uint64_t at_ms; /* wall clock (cv_now_ms) when answered */
};
/* A durable reminder (cv_object_reminder_set); name borrowed. */
struct cv_reminder {
    const char *name;
    uint64_t due_ms;    /* wall clock (cv_now_ms) */
    uint64_t period_ms; /* 0: once */
};
/* What a save carries besides the state: the call ids answered by this change, and the object's window
 * (the catalog trims the stored ids to it at apply time, against now_ms); the object's reminders when
 * they changed (reminders_set: they replace the stored ones). Everything borrowed: copy what you keep. */
struct cv_save_extra {
    const struct cv_call_record *calls;
    size_t n;
    uint32_t window;
    uint64_t window_ms, now_ms;
    const struct cv_reminder *reminders;
    size_t n_reminders;
    bool reminders_set;
};

/* Cluster services of the hosting node (cverse-node's host.c), through which the SDK's cluster functions
 * (object.h: cv_object_create, cv_object_delete, the counts) and object-to-object calls
 * are implemented. Every hook is optional: without it the SDK function answers as outside a node
 * (CV_EUNAVAIL / 0). Hooks run on the loop. The asynchronous ones follow the SDK contract: 0 and cb
 * fires exactly once, never from inside the hook; or a negative code and cb never fires. */
struct cv_call_ctx;
struct cv_host_hooks {
    void *data; /* first argument of every hook */
    /* Routes every cv_object_call (type and method already validated, req packed; copy it to keep it):
     * the host checks the catalog and calls cv_runtime_call here, or sends the call to the owner's node,
     * retrying redirects until its deadline. Without it, calls go to cv_runtime_call directly. */
    int (*call)(void *data, const char *type, const char *id, const char *method, const uint8_t *req,
                size_t len, const struct cv_call_ctx *ctx, cv_runtime_call_cb cb, void *cb_data);
    /* cv_object_create / cv_object_delete: committed to the catalog, then (de)activated on the owner. */
    int (*create_object)(void *data, const char *type, const char *id, cv_host_done_cb cb, void *cb_data);
    int (*delete_object)(void *data, const char *type, const char *id, cv_host_done_cb cb, void *cb_data);
    uint32_t (*node_shards)(void *data);   /* shards this node owns */
    size_t (*cluster_nodes)(void *data);   /* live nodes in the catalog */
    size_t (*cluster_objects)(void *data); /* objects in the catalog */
    /* Durable state (docs/durable-state.md); without save_state every type is memory-only.
     * load_state: the stored state of id, read synchronously (the host's catalog replica): 0 with *state
     * (malloc'ed, now the runtime's; NULL when *len is 0), *len and *version; CV_ENOTFOUND if none was
     * saved; another code fails the activation with it. */
    int (*load_state)(void *data, const char *type, const char *id, uint8_t **state, size_t *len,
                      uint64_t *version);
    /* save_state: commits state (malloc'ed; the host owns it from here on, also on error) as `version`
     * of id. 0 and cb fires exactly once, never from inside the hook; or a negative code and cb never
     * fires (the save failed as by that code). Saves of one object never overlap (the runtime waits). */
    int (*save_state)(void *data, const char *type, const char *id, uint64_t version, uint8_t *state,
                      size_t len, const struct cv_save_extra *calls, cv_state_saved_cb cb, void *cb_data);
    /* load_calls (optional): visits the committed call-id window of id (reliable calls): call for each
     * record, oldest first, expired for each hash of an id trimmed from it; o is handed back to both.
     * 0 (also when nothing was saved) or a code failing the activation. */
    int (*load_calls)(void *data, const char *id, void (*call)(void *o, const struct cv_call_record *r),
                      void (*expired)(void *o, uint64_t hash), void *o);
    /* load_reminders (optional): visits the committed reminders of id, handing o back to add. 0 or a code
     * failing the activation. Without it (or save_state) reminders cannot be set (CV_EUNAVAIL). */
    int (*load_reminders)(void *data, const char *id, void (*add)(void *o, const struct cv_reminder *r), void *o);
    /* push (optional): cv_object_push / cv_object_broadcast (client_id NULL). msg borrowed: the host packs
     * (and maps) it before returning. 0 (queued, best effort), CV_EINVAL (bad client id), CV_ENOMEM.
     * Without it both answer CV_EUNAVAIL. */
    int (*push)(void *data, const char *client_id, const ProtobufCMessage *msg);
};

/* What a call carries besides its request; everything borrowed (copied by the runtime). */
struct cv_call_ctx {
    const char *call_id;   /* reliable call id, NULL or "" = none */
    const char *client_id; /* the calling client (docs/push.md), NULL or "" = none: cv_object_caller_client */
    const struct cv_caller *caller; /* the authenticated caller (cv_object_caller), NULL = anonymous client */
};

/* An owned copy of c (one allocation: free() it), or NULL out of memory. c NULL: an anonymous external
 * caller. */
struct cv_caller *cv_caller_dup(const struct cv_caller *c);

/* A type's persistence as configured (config object_types), overriding the type's own choice. */
struct cv_type_policy {
    const char *type;          /* borrowed */
    int persist;               /* enum cv_persist, or -1: the type's own */
    uint64_t save_interval_ms; /* 0: the type's own */
    int64_t call_window;       /* reliable-call ids kept per object; 0: the runtime's; negative: none */
    uint64_t call_window_ms;   /* 0: the runtime's default */
    int64_t idle_timeout_ms;   /* idle deactivation; 0: never; negative: the default (CV_IDLE_DEFAULT_MS for
                                * persisted types, never for memory-only ones, whose state would be lost) */
};

#define CV_IDLE_DEFAULT_MS (15u * 60u * 1000u)

#define CV_CALL_WINDOW_DEFAULT 256                  /* reliable-call ids kept per object */
#define CV_CALL_WINDOW_MS_DEFAULT (3600u * 1000u)   /* ... for at most an hour */

#define CV_STATE_MAX_DEFAULT ((size_t)1 << 20) /* bytes of one object's packed state */

struct cv_runtime_opts {
    const char *node_id;     /* copied; pinned ids "<node>/x" with another node give CV_EREDIRECT */
    uint32_t shards;         /* cluster.shards, > 0 */
    size_t mailbox_capacity; /* queued calls per object (not counting the one running); 0 = 1024 */
    /* Does this node own shard? NULL = every shard. Consulted on every call (the shard map changes). */
    bool (*owns)(void *data, uint32_t shard);
    void *owns_data;
    /* Types: an external registry (borrowed; must outlive rt; frozen by cv_runtime_start), or NULL for
     * the runtime's own (see cv_runtime_registry). */
    cv_registry *registry;
    const struct cv_host_hooks *hooks; /* copied; NULL = none (a bare runtime) */
    /* false (default): the created hook runs on every activation (a bare runtime has no other memory of
     * an object). true: only for cv_runtime_activate(..., created = true): the host knows from the
     * catalog when an object is new, and an activation by a call (e.g. after a shard move) is not. */
    bool created_explicit;
    /* End of this node's serving window (cv_mono_ms; core/lease.h), read before every mailbox entry and
     * activation the pump runs: at or past it the object is deactivated instead (its queued calls fail
     * with CV_EUNAVAIL, retryable elsewhere), so nothing runs after the window even if the process was
     * stopped and its timers have not noticed yet. NULL = unbounded (a bare runtime). */
    uint64_t (*serve_until)(void *data);
    void *serve_data;
    /* Overrides of the types' persistence (borrowed; must outlive rt), and the largest packed state an
     * object may have (0 = CV_STATE_MAX_DEFAULT): a method whose change makes it larger fails with
     * CV_ESTATESIZE and the activation ends (its next one starts from the last saved state). */
    const struct cv_type_policy *policies;
    size_t n_policies;
    size_t state_max_bytes;
    /* Reliable calls: call ids kept per object (0 = the default CV_CALL_WINDOW_DEFAULT; negative: none
     * are recorded) and their maximum age (0 = CV_CALL_WINDOW_MS_DEFAULT); object_types overrides. */
    int64_t call_window;
    uint64_t call_window_ms;
};
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
/* The registry to pass to cv_register_type / cverse_module_init (the external one if opts gave one);
 * frozen by cv_runtime_start. */
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
/* cv_runtime_call with a reliable-call id (NULL or "" = none; copied): a repeat of an id the object
 * answered (within its window) gets the recorded answer and the method does not run again; an id
 * trimmed from the window gets CV_ECALLEXPIRED (docs/durable-state.md). */
int cv_runtime_call_id(struct cv_runtime *rt, const char *type, const char *id, const char *method,
                       const uint8_t *req, size_t len, const char *call_id, cv_runtime_call_cb cb, void *data);
/* cv_runtime_call_id with a call context (ctx NULL = none): the call id and the caller's client id. */
int cv_runtime_call_ctx(struct cv_runtime *rt, const char *type, const char *id, const char *method,
                        const uint8_t *req, size_t len, const struct cv_call_ctx *ctx, cv_runtime_call_cb cb,
                        void *data);

/* The fast path of a call its host already checked (t is registered here, m is a method of t, this node
 * owns id's shard or id is pinned here): if id is ACTIVE here as a t, the call is queued exactly as
 * cv_runtime_call_ctx would (0, CV_EBUSY, CV_EPROTO, CV_ENOMEM); otherwise (absent, activating, on its way
 * out, another type, runtime not running) it returns CV_ENOTFOUND and does nothing, and the host takes
 * the full path. Saves the registry lookups and the placement parse of cv_runtime_call_id, and lets the
 * host skip its catalog read: an object is active only if the catalog has it (activations come from
 * catalog records, a delete destroys it in the apply that commits it). */
int cv_runtime_call_active(struct cv_runtime *rt, const struct cv_object_type *t, const struct cv_method *m,
                           const char *id, const uint8_t *req, size_t len, const struct cv_call_ctx *ctx,
                           cv_runtime_call_cb cb, void *data);

/* A reminder of object (type, id) fell due (the host's scheduler, docs/durable-state.md): the object is
 * activated if needed (loading its state and reminders) and the reminder runs in its mailbox like a call:
 * the type's reminder hook, then the reminder advances (a periodic one to its first due time after now,
 * so missed ticks fire once; a one-shot one goes) and the object is saved. A reminder the object no
 * longer has at that due time (cleared, or fired already) does nothing. 0, or the codes of
 * cv_runtime_activate and CV_EBUSY (mailbox full). */
int cv_runtime_remind(struct cv_runtime *rt, const char *type, const char *id, const char *name, uint64_t due_ms);

/* Activates object (type, id) without a call (auto-load objects, a create applied on the owner): it
 * enters the table as ACTIVATING and its hooks run from the pump, `created` first if created is true
 * and opts.created_explicit is set. 0 also when it is already ACTIVATING/ACTIVE with that type (nothing
 * changes then). Never calls back. CV_EUNAVAIL (not started), CV_ECLOSED, CV_EINVAL (bad id),
 * CV_ENOTFOUND (unknown type), CV_EREDIRECT (not ours, or deactivating), CV_ECONFLICT (active with
 * another type), CV_ENOMEM. */
int cv_runtime_activate(struct cv_runtime *rt, const char *type, const char *id, bool created);

/* Ends the activation of id: queued calls fail with CV_EREDIRECT right away (asynchronously), timers
 * stop, the deactivated hook runs once the call in flight (if any) replied. New calls get CV_EREDIRECT
 * until the object is GONE; after that a call activates it again. CV_ENOTFOUND if not active. */
int cv_runtime_deactivate(struct cv_runtime *rt, const char *id);
/* Like cv_runtime_deactivate, then the destroyed hook runs too (the object is deleted for good). */
int cv_runtime_destroy(struct cv_runtime *rt, const char *id);

/* Deactivates every object, node-pinned ones too (the node fenced itself): queued calls fail with status
 * (e.g. CV_EUNAVAIL). Returns how many. */
int cv_runtime_deactivate_all(struct cv_runtime *rt, int status);
/* Deactivates every object whose shard opts.owns no longer accepts (one pass over the table; node-pinned
 * objects are not affected). Call after the shard map changed. Returns how many. */
int cv_runtime_deactivate_unowned(struct cv_runtime *rt);

/* Looks id up in the table (any state but GONE): fills *info (strings valid until the next call into the
 * runtime). CV_ENOTFOUND if absent. */
int cv_runtime_lookup(struct cv_runtime *rt, const char *id, struct cv_object_info *info);

/* Visits every object in the table that is ACTIVATING or ACTIVE (for GET /v1/objects); returns how
 * many were visited. fn must not call into the runtime. */
size_t cv_runtime_list(struct cv_runtime *rt, void (*fn)(void *data, const struct cv_object_info *info),
                       void *data);
/* An active object's state and its persistence, for GET /v1/objects/{type}/{id}; valid until the next call
 * into the runtime. */
struct cv_object_state_info {
    const struct cv_object_type *type;
    const ProtobufCMessage *state; /* NULL when the type has no state_message */
    enum cv_persist persist;       /* effective (config overrides applied) */
    uint64_t version;              /* the last version captured for a save (or loaded) */
    uint64_t saved_version;        /* the last version known committed */
    bool dirty;                    /* changed since the last capture */
    bool saving;                   /* a save is in flight */
    size_t held;                   /* replies waiting for a commit */
};
/* CV_ENOTFOUND unless id is ACTIVE (or ACTIVATING). */
int cv_runtime_state_info(struct cv_runtime *rt, const char *id, struct cv_object_state_info *out);
/* The effective policy of a registered type (config overrides applied); *interval_ms for PERIODIC. */
enum cv_persist cv_runtime_type_persist(const struct cv_runtime *rt, const struct cv_object_type *t,
                                        uint64_t *interval_ms);

/* Why objects were activated / deactivated (cv_runtime_counts; /metrics). */
enum cv_activation_reason {
    CV_ACT_CALL = 0, /* a call to an object that was not active */
    CV_ACT_CREATED,  /* a new object (its created hook ran) */
    CV_ACT_LOAD,     /* activated without a call: auto-load, a create of an existing object */
    CV_ACT_REMINDER, /* a reminder of an inactive object fell due */
    CV_ACT_N
};
enum cv_deactivation_reason {
    CV_DEACT_IDLE = 0, /* idle longer than its type's idle timeout */
    CV_DEACT_MOVED,    /* its shard moved away */
    CV_DEACT_FENCED,   /* the node fenced itself */
    CV_DEACT_DELETED,  /* deleted */
    CV_DEACT_FAILED,   /* its state could not be saved */
    CV_DEACT_CLOSING,  /* the node stops */
    CV_DEACT_OTHER,    /* cv_runtime_deactivate */
    CV_DEACT_N
};
extern const char *const cv_activation_reason_names[CV_ACT_N];
extern const char *const cv_deactivation_reason_names[CV_DEACT_N];
struct cv_runtime_counts {
    uint64_t activations[CV_ACT_N], deactivations[CV_DEACT_N];
};
void cv_runtime_counts(const struct cv_runtime *rt, struct cv_runtime_counts *out);

/* Deactivates every ACTIVE object that has been idle (no call or tick began) for its type's idle timeout,
 * with nothing queued, in flight or waiting for a commit; its state is saved as at any deactivation and
 * the next call activates it again. Returns how many. Call now and then (the host: every second). */
int cv_runtime_deactivate_idle(struct cv_runtime *rt);
/* The effective idle timeout of a type in ms (0 = never). */
uint64_t cv_runtime_type_idle(const struct cv_runtime *rt, const struct cv_object_type *t);

/* Objects in the table (any state but GONE). */
size_t cv_runtime_count(const struct cv_runtime *rt);
/* Objects in the table that belong to shard (node-pinned objects belong to no shard); 0 if out of range. */
size_t cv_runtime_shard_count(const struct cv_runtime *rt, uint32_t shard);
const char *cv_object_state_name(enum cv_object_state s);

#endif
