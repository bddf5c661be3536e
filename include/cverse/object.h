/* cverse object SDK: how a user defines a virtual-object type in C (state, lifecycle hooks, protobuf-c
 * methods), answers calls, sets timers and calls other objects. */
#ifndef CVERSE_OBJECT_H
#define CVERSE_OBJECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include <cverse/error.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One activation of an object (an id) on one node. Owned by the runtime: valid from the `created` /
 * `activated` hook until the `deactivated` / `destroyed` hook returned, and inside every callback the
 * runtime hands it to. Never free it, never keep it beyond deactivation. */
typedef struct cv_object cv_object;
/* The answer slot of one call. Valid from the handler's start until cv_reply_ok/cv_reply_error. */
typedef struct cv_reply cv_reply;
/* Where types are registered (one per runtime). */
typedef struct cv_registry cv_registry;

/* Execution model (per object, on the node's single libuv loop):
 *   - An object runs ONE thing at a time: a method call, or a timer callback. The next mailbox entry
 *     starts only after the current method replied (cv_reply_*), even if the handler returned long
 *     before (an async handler replies later, e.g. from a uv timer or a cv_object_call callback).
 *   - Entries run in arrival order. Different objects interleave freely.
 *   - Nothing blocks: a handler that waits must return and reply later. An object that calls itself
 *     (directly or through a cycle) and waits for that answer before replying deadlocks its mailbox. */

/* ---- Methods: two forms.
 *
 * The service form (docs/objects.md teaches it): the type's methods are a `service` in its .proto, e.g.
 *     service Wallet { rpc Deposit(DepositRequest) returns (BalanceReply); ... }
 * protoc-c generates the service descriptor (method names, request and response messages) and a struct of
 * typed handler pointers (Wallet__Wallet_Service) with its WALLET__WALLET__INIT(prefix_) initialiser.
 * A handler is a function `prefix_<method in snake case>`:
 *     static void wallet_deposit(Wallet__Wallet_Service *svc, const Wallet__DepositRequest *in,
 *                                Wallet__BalanceReply_Closure done, void *call)
 * `in` is the decoded request (valid until the call is answered); the handler answers, now or later,
 * exactly once: done(&reply, call) (a NULL reply fails the call with CV_EINVAL), or cv_call_fail /
 * cv_call_fail_app. `call` identifies the call: cv_call_object(call) is the object. A handler of the wrong
 * request or response type does not compile (an incompatible pointer in the initialiser: an error with
 * -Werror=incompatible-pointer-types, the default of GCC 14). The type names it with CV_SERVICE:
 *     .service = CV_SERVICE(Wallet__Wallet_Service, WALLET__WALLET__INIT(wallet_)),
 *     .writes = CV_WRITES("Deposit", "Withdraw"),
 *
 * The table form: `methods` (struct cv_method rows with untyped handlers), for generated code and
 * existing modules. A type uses one form or the other. */

/* A static service struct from protoc-c's initialiser (a file-scope compound literal: static storage). */
#define CV_SERVICE(svc_struct_type, ...) (&((svc_struct_type)__VA_ARGS__).base)
/* The names of the methods of a service-form type that write its state (CV_METHOD_WRITES). */
#define CV_WRITES(...) ((const char *const[]){__VA_ARGS__, NULL})

/* The object a service-form call is for (call: the handler's closure_data); valid as cv_object is. */
cv_object *cv_call_object(void *call);
/* cv_object_state(cv_call_object(call)). */
void *cv_call_state(void *call);
/* Fails the call with a cverse code (cv_reply_error). Answers the call: `call` is gone afterwards. */
int cv_call_fail(void *call, int code, const char *msg);
/* Fails the call with an application error (cv_reply_app_error): code e.g. "INSUFFICIENT_FUNDS", the
 * message printf-formatted (cut at 1023 bytes). Answers the call. */
int cv_call_fail_app(void *call, const char *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The same with structured details (a protobuf message, packed now; NULL: none). */
int cv_call_fail_app_details(void *call, const char *code, const ProtobufCMessage *details, const char *fmt,
                             ...) __attribute__((format(printf, 4, 5)));

/* A method answers through `reply`, now or later, exactly once. `req` is decoded with the method's
 * request descriptor and stays valid until the reply was sent. */
typedef void (*cv_method_handler)(cv_object *o, const ProtobufCMessage *req, cv_reply *reply);

/* cv_method.flags */
#define CV_METHOD_WRITES 0x1u /* the method changes the object's state: a persisted type saves it after
                               * the method replied (on_write: before the reply is released). A method
                               * without it is read-only unless it calls cv_object_mark_dirty. */

struct cv_method {
    const char *name;                             /* e.g. "Add"; unique within its type */
    const ProtobufCMessageDescriptor *request;    /* e.g. &my__add_request__descriptor */
    const ProtobufCMessageDescriptor *response;
    cv_method_handler handler;
    unsigned flags;                               /* CV_METHOD_WRITES or 0 */
};

/* How a type's state outlives its activation (docs/durable-state.md). The cluster config can override a
 * type's choice (object_types: in docs/configuration.md). */
enum cv_persist {
    CV_PERSIST_NONE = 0, /* memory only: a new activation starts from an empty state */
    CV_PERSIST_ON_WRITE, /* committed through the catalog's raft log before the reply of a method that
                          * changed it is released: an acknowledged call is never lost */
    CV_PERSIST_PERIODIC, /* saved save_interval_ms after the first change, and when the activation ends
                          * (shard moves, drain, stop): a crash loses at most that interval */
};
#define CV_SAVE_INTERVAL_DEFAULT_MS 5000

/* A type is a static description: the registry keeps the pointer (not a copy), so the struct, its
 * methods and its strings must outlive the runtime (static tables in the module, typically). */
struct cv_object_type {
    const char *name;       /* e.g. "Counter"; unique per registry */
    size_t state_size;      /* bytes of zeroed per-object state, see cv_object_state; may be 0 */
    /* Hooks, all optional (NULL), all run inside the object's turn (never during a method):
     * created:     the object is new. In a node: once, on the shard's owner, when the CreateObject (an
     *              explicit create, or the object's first call) is applied (not when the object is
     *              activated again after a restart, a shard move or by a call); a persisted type's also
     *              on any activation that finds no committed state of it (its first save records it).
     *              In a bare runtime: on every activation. Runs before activated. Nonzero fails
     *              activation.
     * activated:   every activation. Nonzero (a CV_E* code) fails activation: queued calls fail with it.
     * deactivated: the activation ends (shard moved away, node closing, deleted); timers are stopped.
     * destroyed:   the object is deleted for good (cv_runtime_destroy); runs after deactivated. */
    int (*created)(cv_object *o);
    int (*activated)(cv_object *o);
    void (*deactivated)(cv_object *o);
    void (*destroyed)(cv_object *o);
    /* The table form: methods and their count (NULL, 0 with a service). */
    const struct cv_method *methods;
    size_t n_methods;
    /* Durable state (optional). state_message: the state is a protobuf-c message of this type, allocated
     * and initialised by the runtime (cv_object_state returns it; state_size is then 0 or its
     * sizeof_message). Memory its fields point to (strings, bytes, repeated fields, sub-messages) must be
     * malloc'ed: the runtime frees the state with protobuf_c_message_free_unpacked. With a persist policy
     * other than NONE the state is loaded from the catalog before the created/activated hooks run, and
     * saved as the policy says. */
    const ProtobufCMessageDescriptor *state_message;
    enum cv_persist persist;
    uint64_t save_interval_ms; /* PERIODIC: 0 = CV_SAVE_INTERVAL_DEFAULT_MS */
    /* A durable reminder of the object fell due (cv_object_reminder_set): runs in the object's turn, on
     * whichever node owns it (activating it). due_ms: the due time it fires for (wall clock ms). */
    void (*reminder)(cv_object *o, const char *name, uint64_t due_ms);
    /* The service form: protoc-c's service struct with the handlers (CV_SERVICE), one per method of its
     * descriptor, none NULL; and the names of the methods that write (CV_WRITES; NULL: none). */
    const ProtobufCService *service;
    const char *const *writes;
};

/* Registers a type. CV_EINVAL if the description is incomplete (no name, a method without name,
 * descriptors or handler, duplicate method names, a persist policy without state_message or out of range,
 * a state_size that is not state_message's; a service with a NULL handler or together with `methods`, a
 * `writes` name the service does not have) or the runtime already started; CV_EEXIST if a type
 * of that name exists; CV_ENOMEM. A service-form type is kept as a copy with its method table built
 * from the service descriptor (owned by the registry); a table-form type by its pointer. */
int cv_register_type(cv_registry *reg, const struct cv_object_type *t);

/* Module convention: a shared object loaded with dlopen() exports
 *     int cverse_module_init(cv_registry *reg);
 * which registers its types with cv_register_type and returns 0 or a CV_E* code (the node then refuses
 * to start). It is called once, before the runtime starts; the module stays loaded for the life of the
 * process (types are referenced, not copied). */
#define CV_MODULE_INIT_SYMBOL "cverse_module_init"
typedef int (*cv_module_init_fn)(cv_registry *reg);

/* Answers the current call with resp, which must be of the method's response type: the same descriptor
 * or one with the same full message name (a module carries its own copy of shared generated code). It
 * is packed right away, so resp may be freed or reused on return. Returns 0; CV_EINVAL if resp has the
 * wrong type (the caller then gets CV_EINVAL). Either way the reply handle is consumed. */
int cv_reply_ok(cv_reply *r, const ProtobufCMessage *resp);
/* Answers the current call with an error: code is a negative CV_E* (anything else is sent as
 * CV_EINVAL), msg an optional detail (copied; NULL gives cv_strerror(code)). Consumes the handle. */
int cv_reply_error(cv_reply *r, int code, const char *msg);
/* Answers the current call with an application error (CV_EAPP, HTTP 422, never retried): code is the
 * application's own (1..CV_APP_CODE_MAX bytes of [A-Za-z0-9_.-], e.g. "INSUFFICIENT_FUNDS"), msg for
 * humans (copied; NULL: ""), details an optional protobuf message (packed now; NULL: none) that callers
 * receive with its full type name. Returns 0; CV_EINVAL for an invalid code (the call then fails with
 * CV_EINVAL). A reliable call records it like any answer. Consumes the handle. */
int cv_reply_app_error(cv_reply *r, const char *code, const char *msg, const ProtobufCMessage *details);

/* Accessors; the strings live as long as the object. */
/* The type's state_message (loaded from the catalog when persisted), else state_size zeroed bytes; NULL
 * when the type has neither. Change it only inside the object's turn (a method before it replies, a
 * timer callback, a hook). */
void *cv_object_state(cv_object *o);
/* The state changed outside a CV_METHOD_WRITES method (a timer, or a method that writes only sometimes):
 * it is saved as the type's policy says once the current method replied or the callback returned (an
 * on_write method's reply then waits for the commit). No effect for a type that does not persist. */
void cv_object_mark_dirty(cv_object *o);
const char *cv_object_id(const cv_object *o);
const char *cv_object_type_name(const cv_object *o);
uint32_t cv_object_shard(const cv_object *o);
const char *cv_object_node_id(const cv_object *o); /* the node hosting this activation */
/* The client id of the current call's caller ("<gate-id>/<unique>", docs/push.md): the gate's X-Client-ID
 * header, or a native client's registered id. "" when the call has none, NULL outside a method (valid
 * while the method's handler runs: copy it to keep it, e.g. a room's member list). */
const char *cv_object_caller_client(const cv_object *o);
/* Who called the running method (docs/security.md): the user its gate authenticated (token file or the
 * gate's auth hook) and their roles, carried unchanged across object-to-object calls, which set internal. */
struct cv_caller {
    const char *user_id; /* "" = no authenticated user (a gate without authentication, or an object's own) */
    const char *roles;   /* comma-separated, "" = none */
    bool internal;       /* true: another object made this call (object-to-object) */
};
/* The current call's caller, borrowed: valid until the method's handler returns (copy what you keep);
 * NULL outside a method. */
const struct cv_caller *cv_object_caller(const cv_object *o);
/* true if caller (may be NULL) has role among its roles. */
bool cv_caller_has_role(const struct cv_caller *caller, const char *role);

/* Timers. When a timer fires, its callback is queued into the object's mailbox like a call, so it never
 * overlaps a method; if a tick of the same timer is still queued, the new tick is dropped (a slow
 * object sees fewer ticks, never an unbounded backlog). repeat_ms 0 = one shot (the timer ends after
 * its callback ran). All timers stop when the object deactivates. *id (optional) receives a handle for
 * cv_object_timer_stop. CV_ECLOSED if the object is deactivating; CV_EINVAL; CV_ENOMEM. */
typedef void (*cv_timer_cb)(cv_object *o, void *data);
int cv_object_timer_start(cv_object *o, uint64_t timeout_ms, uint64_t repeat_ms, cv_timer_cb cb,
                          void *data, uint64_t *id);
/* Stops a timer; a tick already queued does not run. CV_ENOTFOUND if no such live timer. */
int cv_object_timer_stop(cv_object *o, uint64_t id);

/* Durable reminders (docs/durable-state.md): unlike timers they outlive the activation. A reminder is
 * part of the object's persisted record: set/clear change it like a write (committed with the state by
 * the next save: under on_write the current method's answer waits for it), and the owner of the
 * object's shard fires it, activating the object if needed, after moves, failovers and restarts too.
 * It fires due_in_ms from now, then every period_ms (0: once), calling the type's `reminder` hook; a
 * tick missed while no node owned the object (or while the owner was down) fires once when an owner
 * takes over. Setting an existing name replaces it. Precision: about 50 ms on a running owner.
 * CV_EINVAL (empty name or longer than 128 bytes, or the type has no reminder hook), CV_EUNAVAIL (the
 * type does not persist its state: a reminder must survive the activation), CV_ECLOSED (deactivating),
 * CV_ENOMEM. */
int cv_object_reminder_set(cv_object *o, const char *name, uint64_t due_in_ms, uint64_t period_ms);
/* Removes a reminder (committed like a write). CV_ENOTFOUND if the object has none of that name. */
int cv_object_reminder_clear(cv_object *o, const char *name);

/* Result of cv_object_call. status 0: resp is the decoded response (valid during the callback only).
 * Negative: a CV_E* code, error is its message (never NULL), resp is NULL. The callback runs on the
 * loop as a continuation of whatever the caller is doing (it does not wait for a mailbox turn, so an
 * async handler can reply from it); `caller` stays valid until it returned, even if it deactivated. */
typedef void (*cv_object_call_cb)(cv_object *caller, void *data, int status, const char *error,
                                  const ProtobufCMessage *resp);
/* Inside a cv_object_call callback with status CV_EAPP: the application error (code, message, details);
 * valid until the callback returns. NULL anywhere else. */
const struct cv_app_error *cv_object_call_app_error(const cv_object *caller);
/* Calls method of object (type, id) on behalf of object o. req is packed before return; it must be of
 * the method's request type (the same descriptor or the same full message name: a module carries its
 * own copy of shared generated code). Objects on other nodes are reached through the hosting node
 * (objects.call to the owner; redirects and unavailable owners are retried until a 30 s deadline, then
 * CV_EUNAVAIL). The target must exist in the catalog (else CV_ENOTFOUND). In a bare runtime (no node)
 * only local objects are reachable: CV_EREDIRECT if its `owns` callback refuses the target's shard.
 * The callback fires exactly once, never from inside cv_object_call; on a negative return it never
 * fires: CV_ENOTFOUND (unknown type or method), CV_EINVAL (bad id or request of the wrong type),
 * CV_EBUSY (target mailbox full), CV_ECLOSED, CV_ENOMEM. */
int cv_object_call(cv_object *o, const char *type, const char *id, const char *method,
                   const ProtobufCMessage *req, cv_object_call_cb cb, void *data);

/* cv_object_call as a reliable call (docs/durable-state.md, "Exactly-once reliable calls"): call_id (at
 * most CV_CALL_ID_MAX bytes; NULL or "" = none, which is cv_object_call) names this call. The target's
 * owner records the id with its answer in the same commit as the state change the method made; calling
 * again with the same id (after a timeout, a failover, a restart of the caller) returns the recorded
 * answer without running the method again. An id older than the target's window answers
 * CV_ECALLEXPIRED. Use a fresh id per logical call (e.g. "<caller id>/<sequence>"). CV_EINVAL for an
 * id that is too long; otherwise as cv_object_call. */
#define CV_CALL_ID_MAX 128
int cv_object_call_reliable(cv_object *o, const char *type, const char *id, const char *method,
                            const ProtobufCMessage *req, const char *call_id, cv_object_call_cb cb, void *data);

/* ---- Cluster services for objects, provided by the hosting node (cverse-node). Outside a node (e.g. in
 * a bare runtime in unit tests) they return CV_EUNAVAIL / 0 / false, except the shard facts below. */

/* Outcome of cv_object_create / cv_object_delete. status 0 or a CV_E* code; error never NULL on failure. */
typedef void (*cv_object_done_cb)(cv_object *caller, void *data, int status, const char *error);
/* Creates object (type, id) in the cluster: committed to the catalog through raft (idempotent: creating
 * an existing object of the same type succeeds; another type gives CV_EEXIST), then activated on its
 * shard's owner. cb fires exactly once, never from inside the call; on a negative return never. */
int cv_object_create(cv_object *o, const char *type, const char *id, cv_object_done_cb cb, void *data);
/* Deletes object (type, id) from the catalog (idempotent) and destroys its activation. */
int cv_object_delete(cv_object *o, const char *type, const char *id, cv_object_done_cb cb, void *data);

uint32_t cv_object_cluster_shards(const cv_object *o);              /* cluster.shards */
/* By this node's shard map. Outside a node: a bare runtime without an `owns` callback owns every shard
 * (true, and cluster.shards); with one, owns() decides and the count is 0. */
bool cv_object_node_owns_shard(const cv_object *o, uint32_t shard);
uint32_t cv_object_node_shard_count(const cv_object *o);            /* shards this node owns */
size_t cv_object_node_object_count(const cv_object *o);             /* objects active on this node */
size_t cv_object_shard_object_count(const cv_object *o, uint32_t shard); /* active in shard, here */
/* Cluster totals as the hosting node's catalog knows them. */
size_t cv_object_cluster_node_count(const cv_object *o);            /* live nodes */
size_t cv_object_cluster_object_count(const cv_object *o);          /* objects in the catalog */
/* Push to clients (docs/push.md): msg (borrowed: packed, and mapped to proto3 JSON, before return) goes to
 * client_id's gate, which delivers it on the client's stream (SSE event `message`, or the native
 * gate.push_event). Best effort: 0 means queued; a client gone, its gate down, or its queue full (oldest
 * dropped, counted, and the client told) loses it. Batched per gate per loop iteration. CV_EINVAL (NULL
 * msg, or client_id not "<gate-id>/<unique>"), CV_ENOMEM, CV_EUNAVAIL outside a node. */
int cv_object_push(cv_object *o, const char *client_id, const ProtobufCMessage *msg);
/* Pushes msg to every client of every configured gate (each gate gets it once). As cv_object_push. */
int cv_object_broadcast(cv_object *o, const ProtobufCMessage *msg);
/* Writes one line to the node's log: "<time> INFO [<node>] <message>". */
void cv_object_log(const cv_object *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A module setting from the environment of the node process (e.g. "CVERSE_DEMO_SCAN_MS"), or dflt. */
uint64_t cv_object_setting_u64(const char *name, uint64_t dflt);

#ifdef __cplusplus
}
#endif
#endif
