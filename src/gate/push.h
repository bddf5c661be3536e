/* The gate's push clients: the registry of connected clients (SSE streams), their bounded queues, delivery of the nodes' gate.push batches, heartbeats and counters. */
#ifndef CV_GATE_PUSH_H
#define CV_GATE_PUSH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "net/http.h"
#include "net/rpc.h"

#define CV_GATE_PUSH_HEARTBEAT_MS 30000u /* gates[].push_heartbeat_ms default */
#define CV_GATE_PUSH_QUEUE 256u          /* gates[].push_queue default: messages queued per client */
#define CV_GATE_PUSH_BACKLOG (64u << 10) /* bytes a client's socket may lag before its queue holds messages */
#define CV_GATE_PUSH_ID_MAX 200          /* longest client id ("<gate-id>/<unique>") */

struct cv_gate_push;
struct cv_forwarder;

/* What the gate's front ends (httpapi.c, native.c) are handed: the forwarder and the push registry. */
struct cv_disc;
struct cv_gate_auth;
struct cv_access_rules;
struct cv_gate_fronts {
    struct cv_forwarder *fw;
    struct cv_gate_push *push;
    struct cv_gate_auth *auth;            /* client authentication (gate/auth.h); never NULL once started */
    const struct cv_access_rules *rules;  /* the config's object access / lifecycle rules (core/access.h) */
    const struct cv_disc *disc; /* the gate's etcd registration, NULL without etcd (for /metrics) */
};

struct cv_gate_push_opts {
    uv_loop_t *loop;       /* borrowed, outlives the registry */
    const char *gate_id;   /* copied: the prefix of the client ids it assigns */
    unsigned heartbeat_ms; /* 0 = CV_GATE_PUSH_HEARTBEAT_MS */
    unsigned queue_max;    /* 0 = CV_GATE_PUSH_QUEUE */
};

/* Counters and gauges (/metrics). */
struct cv_gate_push_stats {
    uint64_t delivered; /* messages written to a client's stream */
    uint64_t dropped;   /* messages dropped: queue full (oldest first), or the client unknown */
    uint64_t clients;   /* connected now */
};

/* Allocates the registry and starts its timers. CV_ENOMEM. Then cv_gate_push_close in every case. */
int cv_gate_push_init(const struct cv_gate_push_opts *o, struct cv_gate_push **out);
/* Ends every client's stream, stops the timers; cb(data) runs once their handles closed (never from in
 * here), then p is freed. */
void cv_gate_push_close(struct cv_gate_push *p, void (*cb)(void *data), void *data);

/* GET /api/v1/events/stream: registers a client and answers x with its SSE stream (event `register`
 * first). ?format=json: messages carry proto3 JSON payloads instead of a base64 Any. */
void cv_gate_push_sse(struct cv_gate_push *p, struct cv_http_exchange *x, const struct cv_http_request *req,
                      const char *user);
/* gate.register on a native connection: registers it as a client (once: again gives the same id) and
 * writes its id into id (idlen >= CV_GATE_PUSH_ID_MAX). Its pushes go as KIND_EVENT "gate.push_event"
 * (a packed Push) on conn. 0 or CV_ENOMEM. */
int cv_gate_push_register(struct cv_gate_push *p, struct cv_rpc_conn *conn, const char *user, char *id,
                          size_t idlen);
/* true if client_id is a client of this gate registered by user (user: the authenticated user of the
 * stream or connection that registered it, "" without authentication; copied). With authentication on,
 * a call's X-Client-ID / client_id must pass this (else 403): one user cannot claim another's client. */
bool cv_gate_push_owned(const struct cv_gate_push *p, const char *client_id, const char *user);
/* A native connection closed: its client (if any) leaves, its queue is freed. */
void cv_gate_push_conn_closed(struct cv_gate_push *p, struct cv_rpc_conn *conn);
/* A gate.push body (PushBatch) from a node: each push queued for its client, broadcasts for every
 * client. 0, or CV_EPROTO for an undecodable body. */
int cv_gate_push_batch(struct cv_gate_push *p, const uint8_t *body, size_t len);
void cv_gate_push_stats(const struct cv_gate_push *p, struct cv_gate_push_stats *out);

#endif
