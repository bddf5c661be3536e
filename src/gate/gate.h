/* A cverse gate process's server: wires the forwarder core to its native and HTTP front ends, listens, stops. */
#ifndef CV_GATE_H
#define CV_GATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config/config.h"
#include "config/tokens.h"
#include "cverse/gate.h"

#define CV_GATE_DEFAULT_TIMEOUT_MS 30000u /* a call's deadline when the client gives none */
#define CV_GATE_DRAIN_MS 10000u           /* how long a stopping gate waits for calls in flight */

struct cv_gate;

struct cv_gate_opts {
    uv_loop_t *loop;
    const struct cv_config *cfg;  /* outlives the gate */
    const char *gate_id;          /* an entry of cfg->gates (copied) */
    const char *grpc_addr;        /* listen address override (tests: "127.0.0.1:0"); NULL = config's */
    const char *http_addr;        /* same for HTTP */
    unsigned default_timeout_ms;  /* 0 = CV_GATE_DEFAULT_TIMEOUT_MS */
    unsigned drain_ms;            /* 0 = CV_GATE_DRAIN_MS */
    bool handle_signals;          /* SIGTERM / SIGINT call cv_gate_stop */
    const char *version;          /* registered in etcd (cluster.provider etcd); NULL: "" */
    int *exit_code;               /* NULL, or set to 1 when the gate stops for a start error found later
                                   * (its id held in etcd by another live process) */
    struct cv_tokens *tokens;     /* client tokens (config/tokens.h), taken (emptied) by cv_gate_start;
                                   * NULL or empty: none (gate/auth.h) */
    const struct cv_gate_hooks *hooks; /* a module's hooks (cverse/gate.h), copied; NULL: none */
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

#endif
