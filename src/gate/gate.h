/* A cverse gate: shard-map subscription, node connections, call forwarding with transparent retries,
 * the native protocol server (gate.*) and the HTTP API (httpapi.c). */
#ifndef CV_GATE_H
#define CV_GATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config/config.h"
#include "gate/types.h"

#define CV_GATE_DEFAULT_TIMEOUT_MS 30000u /* a call's deadline when the client gives none */
#define CV_GATE_DRAIN_MS 10000u           /* how long a stopping gate waits for calls in flight */

struct cv_gate;

struct cv_gate_opts {
    uv_loop_t *loop;
    const struct cv_config *cfg;  /* outlives the gate */
    const char *gate_id;          /* an entry of cfg->gates (copied) */
    struct cv_gate_types *types;  /* outlives the gate; NULL = no types known (every call gets 404) */
    const char *grpc_addr;        /* listen address override (tests: "127.0.0.1:0"); NULL = config's */
    const char *http_addr;        /* same for HTTP */
    unsigned default_timeout_ms;  /* 0 = CV_GATE_DEFAULT_TIMEOUT_MS */
    unsigned drain_ms;            /* 0 = CV_GATE_DRAIN_MS */
    bool handle_signals;          /* SIGTERM / SIGINT call cv_gate_stop */
    void (*on_stopped)(void *data); /* optional: runs once everything closed, just before g is freed */
    void *data;
};

/* Binds both listeners, creates one RPC client per configured node and subscribes to the shard map
 * (nodes in config order, moving to the next on failure or disconnect). CV_EINVAL (gate id not in the
 * config), CV_EIO (address in use), CV_ENOMEM. On failure nothing is left running (the loop runs
 * empty after the handles closed) and on_stopped is not called. */
int cv_gate_start(const struct cv_gate_opts *opts, struct cv_gate **out);
/* Graceful stop (SIGTERM path): not ready any more, new calls are refused with CV_EUNAVAIL (HTTP 503),
 * calls in flight get up to drain_ms to finish, then the listeners and node connections close, the
 * remaining calls fail with CV_ECANCELED, on_stopped runs and g is freed. Idempotent. */
void cv_gate_stop(struct cv_gate *g);

/* Ports actually bound (after listening on port 0), or CV_EINVAL. */
int cv_gate_grpc_port(const struct cv_gate *g);
int cv_gate_http_port(const struct cv_gate *g);

/* ---- used by the HTTP API (httpapi.c) and the native handlers ---- */

enum cv_gate_op { CV_GATE_CALL = 0, CV_GATE_CREATE, CV_GATE_DELETE, CV_GATE_N_OPS };

/* Outcome of a forwarded operation. status 0: body is the node's response (CallResponse, CreateResponse
 * or DeleteResponse, packed; valid during the callback only). Negative: a CV_E* code and its message
 * (never NULL); body is then empty. */
typedef void (*cv_gate_done_cb)(void *data, int status, const char *error, const uint8_t *body, size_t len);

/* Sends objects.call (op CALL: req/len is the packed request message of method) or objects.create /
 * objects.delete (method, req ignored) to the node that owns id, retrying on redirects and unavailable
 * shards until the deadline (timeout_ms from now, 0 = the default). cb fires exactly once, never from
 * inside this function; on a negative return never: CV_EUNAVAIL (gate stopping), CV_ENOMEM. */
int cv_gate_forward(struct cv_gate *g, enum cv_gate_op op, const char *type, const char *id, const char *method,
                    const uint8_t *req, size_t len, unsigned timeout_ms, cv_gate_done_cb cb, void *data);

/* Every client request (native or HTTP) is bracketed by begin/end, for draining and metrics. begin
 * returns CV_EUNAVAIL while stopping (refuse the request). end records the result (status of the
 * operation, CV_E* or 0) and the latency since start_ns (cv_mono_ns() at begin). */
int cv_gate_begin(struct cv_gate *g);
void cv_gate_end(struct cv_gate *g, enum cv_gate_op op, int status, uint64_t start_ns);

struct cv_gate_types *cv_gate_types_of(struct cv_gate *g);
const char *cv_gate_id(const struct cv_gate *g);
/* true when the gate has a shard map without unassigned shards and a connection to at least one node,
 * and is not stopping; else false and a static reason in *why. */
bool cv_gate_ready(const struct cv_gate *g, const char **why);
/* Prometheus text exposition of the gate's metrics (malloc'ed, NUL-terminated, caller frees) or NULL. */
char *cv_gate_metrics(const struct cv_gate *g, size_t *len);

#endif
