/* One object's internals (object.c), shared with runtime.c (table, pump, calls) and services.c (the SDK's
 * cluster side): lifecycle state machine, references, ready list, mailbox, timers, replies. Internal. */
#ifndef CV_OBJECTS_OBJECT_H
#define CV_OBJECTS_OBJECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define HASH_NONFATAL_OOM 1 /* a failed add leaves hh.tbl NULL instead of exiting */
#include <uthash.h>

#include "core/hash.h"
#include "core/sm.h"
#include "objects/runtime.h"

/* The object lifecycle (cv_sm). The four public states (enum cv_object_state, same values) plus
 * DEACTIVATE_PENDING: deactivation was asked for while ACTIVATING; the pump (or the hook that asked)
 * decides what follows. Callers see it as DEACTIVATING (cv_runtime_lookup). Moves:
 *   ACTIVATING -> ACTIVE (hooks ran) | GONE (a hook failed) | DEACTIVATE_PENDING (deactivate)
 *   DEACTIVATE_PENDING -> GONE (no hook ran yet, or a hook failed) | DEACTIVATING (asked from inside a
 *                         successful hook: the deactivated hook must run)
 *   ACTIVE -> DEACTIVATING (queued calls failed, timers stopped) -> GONE (hooks ran, out of the table) */
enum obj__state {
    OBJ_ACTIVATING = CV_OBJ_ACTIVATING,
    OBJ_ACTIVE = CV_OBJ_ACTIVE,
    OBJ_DEACTIVATING = CV_OBJ_DEACTIVATING,
    OBJ_GONE = CV_OBJ_GONE,
    OBJ_DEACTIVATE_PENDING,
    OBJ_N_STATES
};
extern const struct cv_sm_conf cv_object_sm_conf; /* the table above (exported for its unit test) */

/* Owned by the timer itself: freed when its last reference (refs) goes; holds one reference on o. */
struct obj__timer {
    uv_timer_t handle;
    struct cv_object *o;     /* a reference (dropped when the timer is freed) */
    struct obj__timer *next; /* borrowed: o->timers list link, while live */
    uint64_t id;
    cv_timer_cb cb;
    void *data;              /* borrowed: the SDK caller's, handed back to cb */
    bool repeat, live, pending;
    int refs; /* the uv handle until closed + a queued tick */
};

/* One mailbox entry: a call (method != NULL) or a timer tick. Owned by the mailbox while queued, then by
 * whoever popped it (the reply of a call in flight); freed by obj__mail_free. */
struct obj__mail {
    struct obj__mail *next;
    const struct cv_method *method; /* borrowed from the type (registry), valid while rt lives */
    ProtobufCMessage *req;          /* owned: the decoded request (freed with the entry) */
    cv_runtime_call_cb cb;
    void *data;                     /* borrowed: the caller's, handed back to cb */
    struct obj__timer *timer;       /* a tick: holds a reference on the timer (pending) */
    char *call_id;                  /* owned: the caller's reliable-call id, NULL when none (calls.c) */
    char *client_id;                /* owned: the calling client's id, NULL when none (push) */
    struct cv_caller *caller;       /* owned: the authenticated caller, NULL = anonymous client */
    char *remind;                   /* owned: a reminder entry (no method, no timer): its name */
    uint64_t remind_due;            /* ... and the due time it fires for */
};

/* One durable reminder of an object (reminders.c), in o->reminders. */
struct obj__reminder {
    struct obj__reminder *next;
    uint64_t due_ms, period_ms;
    char name[];
};

/* One answered reliable call (calls.c): its id and answer, in o->calls (oldest first). */
#define OBJ_CALL_COMMITTED UINT64_MAX /* version of a record loaded from the catalog, or kept in memory only */
struct obj__callrec {
    struct obj__callrec *next;
    char *id, *error;  /* point into data (after the response) */
    int status;
    size_t len;        /* of the packed response at data */
    uint64_t at_ms;    /* wall clock when answered (the window's age) */
    uint64_t version;  /* the state version that carries it; 0 = not captured yet */
    uint8_t data[];
};

/* The handle a handler gets for a call in flight (o->in_flight); owned by the call: borrowed by the
 * handler until it replies (cv_reply_ok / cv_reply_error frees it). */
struct cv_reply {
    struct cv_object *o; /* borrowed: the object stays in memory while a call is in flight */
    struct obj__mail *m; /* owned: the popped entry, freed after its callback */
};

/* What only some objects need, allocated on first use (obj__side) so that an idle object of a
 * memory-only type (no timer, no call id, no idle timeout) carries none of it: durable state
 * bookkeeping, the reliable-call window, reminders, timers and the idle timeout. Owned by the object. */
struct obj__side {
    struct obj__timer *timers; /* live timers; each timer owns itself and holds a reference on o */
    uint64_t next_timer_id;
    uint64_t idle_ms;          /* idle timeout (0: never) */
    uint64_t last_used;        /* uv_now when its last call or tick began (or it was created) */
    /* Durable state (state.c). */
    uint64_t save_interval;      /* PERIODIC: ms after the first change */
    uint64_t version;            /* the last version captured (or loaded) */
    uint64_t saved_version;      /* the last version known committed */
    uint64_t saving_version;     /* the version of the save in flight (saving) */
    bool dirty : 1;              /* changed since the last capture */
    bool resave : 1;             /* a capture is owed once the save or the call in flight ended */
    bool saving : 1;             /* a save in flight (holds a reference) */
    bool save_armed : 1;         /* PERIODIC: the save timer runs */
    bool broken : 1;             /* a save failed or the state outgrew the limit: no more saves */
    bool reminders_changed : 1;  /* the next capture carries them (they replace the stored set) */
    uint32_t call_window;        /* ids kept (0: call ids are not recorded) */
    void *state;                 /* owned: the stored state loaded at activation (in place of the one
                                  * inside the object), or NULL */
    struct obj__held *held, **held_tail; /* owned: replies waiting for a commit, in call order */
    size_t n_held;
    /* Reliable calls (calls.c): the window of answered call ids, and hashes of those trimmed from it. */
    struct obj__callrec *calls, **calls_tail; /* owned */
    size_t n_calls;
    uint64_t call_window_ms;  /* ... none older than this (0: no age limit) */
    uint64_t *expired;        /* owned */
    size_t n_expired, cap_expired;
    struct obj__reminder *reminders; /* owned (reminders.c) */
};

/* One allocation per object: this, then the id, then its state (obj__state_mem: the type's state_message
 * or state_size zeroed bytes, until a stored state replaces it). Kept
 * small, what every active object needs (issue 11's P6: runtime heap per idle object <= 256 B). */
struct cv_object {
    struct cv_sm sm; /* first member: the invariant finds the object from it; state: enum obj__state */
    struct cv_runtime *rt;             /* borrowed: outlives every object (its close waits for rt->live 0) */
    const struct cv_object_type *type; /* borrowed from the registry, valid while rt lives */
    UT_hash_handle hh;       /* in rt->table, keyed by id */
    struct cv_object *rnext; /* borrowed: ready list link */
    struct obj__mail *mail; /* owned: the mailbox's last entry (a ring: mail->next is the first), or NULL */
    struct obj__side *x; /* owned: NULL until first needed (always there for persisted types, or with an
                          * idle timeout) */
    uint32_t shard;
    uint32_t queued, ticks; /* calls (bounded by the capacity) and timer ticks (<= live timers) */
    int refs; /* the table's, live timers', outgoing calls' and host operations'; the last frees o */
    int drain_status; /* what queued calls fail with when deactivating */
    bool on_ready : 1, destroy : 1;
    bool in_flight : 1;   /* a call is being handled (its cv_reply is the handler's until it replies) */
    bool pinned : 1;      /* "<node>/x": belongs to no shard */
    bool run_created : 1; /* created_explicit: this activation runs the created hook */
    bool logged : 1;      /* its activation start is in the activation log (util/actlog.h) */
    bool counted : 1;     /* its activation was counted (cv_runtime_counts) */
    bool fresh : 1;       /* persisted type, and the catalog has no state of it: its `created` has not run */
    bool hooks_done : 1;  /* deactivated/destroyed hooks ran (a final save may follow) */
    uint8_t persist;      /* enum cv_persist, the effective policy: NONE without the host's save hook */
    char id[];            /* NUL-terminated; also the table's key */
};

/* A reply held until the state it saw is committed (on_write). version 0: not captured yet. */
struct obj__held {
    struct obj__held *next;
    uint64_t version;
    cv_runtime_call_cb cb;
    void *data; /* borrowed: the caller's */
    int status;
    char *error; /* owned copy, NULL on success */
    size_t len;
    uint8_t resp[]; /* the packed response */
};

/* What object.c needs from the runtime that owns the objects, given by runtime.c at init (so that
 * object.c names nothing in runtime.c: runtime.c uses object.c, not the other way round). */
struct obj__owner_ops {
    uv_idle_cb pump;                      /* the pump's callback: obj__ready starts rt->pump with it */
    void (*released)(struct cv_runtime *rt); /* an object's memory was freed (rt->live dropped) */
    void (*deactivate)(struct cv_object *o, int status); /* ends o's activation (queued calls fail) */
};

struct cv_runtime {
    uv_loop_t *loop;
    uv_idle_t pump;
    struct obj__owner_ops ops;
    char *node_id; /* owned copy */
    uint32_t shards;
    size_t capacity;
    bool (*owns)(void *data, uint32_t shard);
    void *owns_data; /* borrowed: the host's */
    cv_registry *reg; /* owned if own_reg, else borrowed (must outlive rt) */
    bool own_reg, created_explicit;
    uint64_t (*serve_until)(void *data); /* NULL: unbounded */
    void *serve_data;
    struct cv_host_hooks hooks; /* copied; hooks.data borrowed */
    struct cv_object *table; /* objects in the table (uthash by id); each holds the table's reference */
    uint32_t *shard_count;   /* owned: objects in the table per shard (pinned ones excluded) */
    size_t live;             /* objects allocated (table + GONE ones still referenced) */
    struct cv_object *ready_head, *ready_tail; /* borrowed: the ready list (objects are the table's) */
    bool started, closing, finishing;
    const struct cv_type_policy *policies; /* borrowed (opts) */
    uint32_t call_window;    /* reliable-call ids kept per object (opts, default CV_CALL_WINDOW_DEFAULT) */
    struct cv_runtime_counts counts; /* activations / deactivations by reason */
    const struct cv_app_error *call_app; /* borrowed: during a cv_object_call callback with CV_EAPP */
    const char *caller_client; /* borrowed: the running method's caller client id (push), else NULL */
    const struct cv_caller *caller; /* borrowed: the running method's caller (cv_object_caller), else NULL */
    uint64_t call_window_ms;
    size_t n_policies, state_max;
    cv_runtime_close_cb close_cb;
    void *close_data; /* borrowed: the closer's */
};

static inline enum obj__state obj__state(const struct cv_object *o) { return (enum obj__state)cv_sm_state(&o->sm); }

/* Allocates an ACTIVATING object (one allocation with its id and state, see obj__state_inline) with one
 * reference (the table's) and enters it in rt's table. NULL on ENOMEM. */
struct cv_object *obj__new(struct cv_runtime *rt, const struct cv_object_type *t, const char *id,
                           const struct cv_placement *p);
/* Drops a reference; the last one frees the object (and may let a closing runtime finish). */
void obj__unref(struct cv_object *o);
/* Moves o through the lifecycle table (checked in debug builds, with the invariant). */
void obj__move(struct cv_object *o, enum obj__state to);
/* Runs the invariant after the data it covers changed (debug builds). */
void obj__check(const struct cv_object *o);
/* Puts o on the ready list (no-op when already there or GONE) and starts the pump. */
void obj__ready(struct cv_object *o);
struct cv_object *obj__ready_pop(struct cv_runtime *rt);

static inline struct obj__mail *obj__mail_first(const struct cv_object *o)
{
    return o->mail ? o->mail->next : NULL;
}
void obj__mail_push(struct cv_object *o, struct obj__mail *m);
void obj__mail_free(struct obj__mail *m);
/* Fails every queued call with status and drops queued ticks (a callback may call into the runtime). */
void obj__drain(struct cv_object *o, int status);
/* Runs the next mailbox entry: a timer tick, or a call that stays in flight until its reply. */
void obj__run_next(struct cv_object *o);
/* Same message type: the same descriptor, or one with the same full name (a module's own copy). */
bool obj__same_message(const ProtobufCMessageDescriptor *a, const ProtobufCMessageDescriptor *b);
/* Stops every timer of o (their memory goes with their close callbacks). */
void obj__stop_timers(struct cv_object *o);

/* o's side structure, allocated (its fields set from the type's policies) on first use; NULL on ENOMEM. */
struct obj__side *obj__side(struct cv_object *o);

/* ---- durable state (state.c) ---- */
/* The bytes obj__new reserves after the id for the state of type t (0: none, the type has no state),
 * and their offset in the object's allocation for an id of idlen bytes. */
size_t obj__state_inline(const struct cv_object_type *t);
size_t obj__state_offset(const struct cv_object_type *t, size_t idlen);
/* Sets o's effective policy and side structure (persisted types, idle timeout) and initialises its
 * state: the type's message, or state_size zeroed bytes, inside o when obj__state_inline said so.
 * CV_ENOMEM. */
int obj__state_alloc(struct cv_object *o);
/* o's state: the stored one loaded (o->x->state), else the one inside o; NULL for a type without one. */
void *obj__state_mem(const struct cv_object *o);
void obj__state_free(struct cv_object *o);
/* The object's memory goes: its state, its call-id window, its reminders and o->x. */
void obj__state_release_all(struct cv_object *o);
/* Loads the stored state before the activation hooks run (persisted types): 0, or the code the
 * activation fails with. */
int obj__state_load(struct cv_object *o);
/* A call of o ended with this answer (method: whether it writes). Returns true if state.c took the
 * answer (held until a commit, or failed because the object's state could not be saved: the caller
 * must not deliver it), false to deliver it now. */
bool obj__state_reply(struct cv_object *o, const struct cv_method *method, int status, const char *error,
                      const uint8_t *resp, size_t len, cv_runtime_call_cb cb, void *data);
/* After a mailbox entry, a reply or the activation hooks: saves or arms the periodic save as the
 * policy says, when the state is dirty or a capture is owed. */
void obj__state_after(struct cv_object *o);
/* Deactivation, after the hooks: true while a (final) save is in flight (its completion makes o ready
 * again); false when o may leave (every held reply answered). */
bool obj__state_settle(struct cv_object *o);

/* ---- reliable calls (calls.c) ---- */
/* Loads the committed call-id window with the state (persisted types). 0 or a code failing activation. */
int obj__calls_load(struct cv_object *o);
void obj__calls_free(struct cv_object *o);
/* Before m runs: a repeated call id is answered from its record (or CV_ECALLEXPIRED) and true is
 * returned (m is not run; the caller frees it); false: run it. */
bool obj__calls_repeat(struct cv_object *o, struct obj__mail *m);
/* m replied: records its call id with the answer when it changed the state (any call of a memory-only
 * type), to be committed with the state's next capture. */
void obj__calls_record(struct cv_object *o, const struct obj__mail *m, int status, const char *error,
                       const uint8_t *resp, size_t len);
/* The records not captured yet, now part of `version`: *out (calloc'ed, pointing into the records,
 * valid until the object changes) and their count. */
size_t obj__calls_capture(struct cv_object *o, uint64_t version, struct cv_call_record **out);

/* ---- durable reminders (reminders.c) ---- */
int obj__reminders_load(struct cv_object *o);
void obj__reminders_free(struct cv_object *o);
/* When they changed: *out (calloc'ed, names borrowed from the object, valid until it changes) and the
 * count; extra->reminders_set. */
void obj__reminders_capture(struct cv_object *o, struct cv_save_extra *extra, struct cv_reminder **out);
/* Runs a reminder entry m (popped): the hook, then the reminder advances (the caller frees m). */
void obj__run_reminder(struct cv_object *o, struct obj__mail *m);

#endif
