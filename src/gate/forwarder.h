/* The gate's forwarder core: shard-map subscription, node connections, forwarding with transparent retries, and the bracket of every client request. */
#ifndef CV_GATE_FORWARDER_H
#define CV_GATE_FORWARDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config/config.h"
#include "core/sm.h"
#include "cverse/error.h"
#include "rpc.pb-c.h"
#include "util/hist.h"

enum cv_gate_op { CV_GATE_CALL = 0, CV_GATE_CREATE, CV_GATE_DELETE, CV_GATE_N_OPS };
extern const char *const cv_gate_op_names[CV_GATE_N_OPS]; /* "call", "create", "delete" (metric labels) */

/* Why a forward was retried (metric label "reason"). */
enum cv_gate_retry { CV_GATE_RETRY_REDIRECT = 0, CV_GATE_RETRY_UNAVAILABLE, CV_GATE_RETRY_NO_OWNER, CV_GATE_N_RETRY };
extern const char *const cv_gate_retry_names[CV_GATE_N_RETRY]; /* "redirect", "unavailable", "no_owner" */

/* A forward's lifecycle (checked with core/sm.h in debug builds):
 *   QUEUED --> ROUTING --> SENT --> DONE            (the happy path)
 *   ROUTING --> BACKOFF | AWAIT_MAP --> ROUTING     (no owner / unreachable / redirect: wait, route again)
 *   SENT --> BACKOFF | AWAIT_MAP                    (the node answered a rerouted error, or BACKOFF: a
 *                                                    new map shows it declared dead, the shard moved)
 *   QUEUED | ROUTING | BACKOFF | AWAIT_MAP --> DONE (deadline, routing failure, gate closing)
 * AWAIT_MAP waits for a shard map at least as new as a redirect reported (a map push ends the wait
 * early), BACKOFF for its backoff (a map push or a node connecting ends it early). */
enum cv_gate_fwd_state {
    CV_FWD_QUEUED = 0, /* created; the first attempt is scheduled (never run from cv_forwarder_forward) */
    CV_FWD_ROUTING,    /* deciding where to send it (transient, inside a timer callback) */
    CV_FWD_SENT,       /* in flight to a node */
    CV_FWD_BACKOFF,    /* waiting before routing again */
    CV_FWD_AWAIT_MAP,  /* waiting for a newer shard map (or the backoff) before routing again */
    CV_FWD_DONE,       /* its callback ran; its timer closes */
    CV_FWD_N_STATES
};
extern const struct cv_sm_conf cv_gate_fwd_sm;

/* Why the gate cut a client connection (cverse_gate_connections_cut_total{reason}). */
enum cv_gate_cut { CV_GATE_CUT_REQUEST_TIMEOUT, CV_GATE_CUT_IDLE, CV_GATE_CUT_MAX_CONNS, CV_GATE_CUT_TLS, CV_GATE_N_CUT };
extern const char *const cv_gate_cut_names[CV_GATE_N_CUT];

/* Counters and gauges of a forwarder (a copy: see cv_forwarder_stats). */
struct cv_gate_stats {
    uint64_t results[CV_GATE_N_OPS][CV_STATUS_N]; /* client requests answered, by client status */
    struct cv_hist lat[CV_GATE_N_OPS];            /* request latency (util/hist.h buckets) */
    uint64_t retries[CV_GATE_N_RETRY];
    uint64_t maps_applied, maps_ignored, sub_switches;
    uint64_t sub_stalls; /* subscriptions given up because their node fell silent */
    uint64_t resends;    /* forwards sent again because their node was declared dead while they waited */
    uint64_t fwd_moves[CV_FWD_N_STATES]; /* moves of forwards into each state (their paths; not on /metrics) */
    uint64_t map_index;   /* 0 without a map */
    uint32_t unassigned;  /* shards without owner; the configured shard count without a map */
    size_t connections;   /* nodes connected */
    size_t inflight;      /* client requests between begin and end */
    int etcd_up;          /* 1/0: etcd answered the registration's last call; -1: no etcd (not the forwarder's) */
    /* The client ports' limits (net/http.h cv_http_server_stats; not the forwarder's: on_stats fills them). */
    uint64_t client_conns;                       /* client connections open now */
    uint64_t cut[CV_GATE_N_CUT];                 /* client connections cut, by enum cv_gate_cut */
    uint64_t rate_limited;                       /* requests answered 429 by the per-client rate limit */
};

struct cv_forwarder;

struct cv_forwarder_opts {
    uv_loop_t *loop;
    const struct cv_config *cfg;  /* borrowed: outlives the forwarder */
    const char *gate_id;          /* an entry of cfg->gates (copied) */
    unsigned default_timeout_ms;  /* a call's deadline when the client gives none */
    /* Runs when the forwarder is stopping and the last client request ended (from cv_forwarder_end,
     * possibly deep inside a client callback: defer real work). Optional. */
    void (*on_idle)(void *data);
    /* A "gate.push" event from a node (a PushBatch for this gate's clients: gate/push.h). Optional. The
     * forwarder names the gate on each node connection when it comes up (gate.attach), so nodes send
     * pushes on these connections. */
    void (*on_push)(void *data, const uint8_t *body, size_t len);
    /* Fills in the stats that are not the forwarder's (the client ports' counters) at the end of
     * cv_forwarder_stats. Optional. */
    void (*on_stats)(void *data, struct cv_gate_stats *out);
    void *data;
};

/* Allocates a forwarder (memory only, nothing runs). CV_EINVAL (gate id not in the config, no nodes),
 * CV_ENOMEM. Then cv_forwarder_start, and in every case cv_forwarder_close. */
int cv_forwarder_init(const struct cv_forwarder_opts *o, struct cv_forwarder **out);
/* Creates one RPC client per configured node, dials them all and subscribes to the shard map (nodes in
 * config order, moving to the next on failure or disconnect). CV_ENOMEM (close it anyway). */
int cv_forwarder_start(struct cv_forwarder *fw);
/* Refuses new requests and forwards from now on (CV_EUNAVAIL) and makes it not ready; idempotent.
 * Returns the number of client requests in flight (on_idle runs when it reaches 0). */
size_t cv_forwarder_stop(struct cv_forwarder *fw);
/* Fails waiting forwards with CV_ECANCELED now and sent ones as their connections close, closes the
 * clients and timers; cb(data) runs once every handle closed, then fw is freed. Works after a failed
 * or missing start. Never calls cb from inside this function. */
void cv_forwarder_close(struct cv_forwarder *fw, void (*cb)(void *data), void *data);

/* Outcome of a forwarded operation. status 0: body is the node's response (CallResponse, CreateResponse
 * or DeleteResponse, packed; valid during the callback only). Negative: a CV_E* code and its message
 * (never NULL); body is then empty. */
typedef void (*cv_gate_done_cb)(void *data, int status, const char *error, const uint8_t *body, size_t len);

/* Sends objects.create / objects.delete (method, req ignored) or objects.call in form BYTES (op CALL:
 * req/len is the packed request message of method) to the node that owns id, routing again
 * (cv_err_reroute) until the deadline (timeout_ms from now, 0 = the default). cb fires exactly once,
 * never from inside this function; on a negative return never: CV_EUNAVAIL (stopping), CV_EINVAL,
 * CV_ENOMEM. */
int cv_forwarder_forward(struct cv_forwarder *fw, enum cv_gate_op op, const char *type, const char *id,
                         const char *method, const uint8_t *req, size_t len, unsigned timeout_ms,
                         cv_gate_done_cb cb, void *data);

/* An object call as the gate forwards it (everything borrowed, copied by cv_forwarder_forward_call). The
 * gate has no types: the owner node maps JSON and Any with its own (CallRequest.form, docs/protocol.md). */
struct cv_gate_call {
    const char *type, *id, *method;
    Cverse__Rpc__CallForm form; /* BYTES: req is the packed request message; ANY: a serialized Any of it;
                                 * JSON: its proto3 JSON text (len bytes, not NUL-terminated; 0 = empty) */
    const uint8_t *req;
    size_t len;
    bool compact;        /* JSON: the response without zero-valued fields */
    const char *call_id; /* reliable call id, NULL or "" = none */
    const char *client_id; /* the caller's client id (docs/push.md), NULL or "" = none */
    const char *user, *roles; /* the authenticated caller (gate/auth.h), NULL or "" = none */
};

/* cv_forwarder_forward of a call: the id (if any) is sent with every attempt (docs/durable-state.md),
 * and a call with an id is also routed again after a retryable error whose outcome is unknown, since the
 * owner answers a repeat from its record. The node's CallResponse comes back in the call's form. */
int cv_forwarder_forward_call(struct cv_forwarder *fw, const struct cv_gate_call *c, unsigned timeout_ms,
                              cv_gate_done_cb cb, void *data);

/* Every client request (native or HTTP) is bracketed by begin/end, for draining and metrics. begin
 * returns CV_EUNAVAIL while stopping (refuse the request). end records the result (0 or a CV_E* code,
 * counted by its client status) and the latency since start_ns (cv_mono_ns() at begin). */
int cv_forwarder_begin(struct cv_forwarder *fw);
void cv_forwarder_end(struct cv_forwarder *fw, enum cv_gate_op op, int status, uint64_t start_ns);

/* true when there is a shard map without unassigned shards and a connection to at least one node, and
 * not stopping; else false and a static reason in *why. */
bool cv_forwarder_ready(const struct cv_forwarder *fw, const char **why);
void cv_forwarder_stats(const struct cv_forwarder *fw, struct cv_gate_stats *out);

/* Borrowed, valid while fw lives. */
const char *cv_forwarder_id(const struct cv_forwarder *fw);
const struct cv_config *cv_forwarder_config(const struct cv_forwarder *fw);
const struct cv_gate_cfg *cv_forwarder_self(const struct cv_forwarder *fw);
/* The current shard map, NULL before the first one (valid until the next map applies). */
const Cverse__Rpc__ShardMap *cv_forwarder_map(const struct cv_forwarder *fw);
/* true while subscribed to some node's shard map. */
bool cv_forwarder_subscribed(const struct cv_forwarder *fw);

#endif
