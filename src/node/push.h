/* A node's pushes to clients: messages objects push (cv_object_push / cv_object_broadcast), packed and mapped to proto3 JSON once, batched per gate per loop iteration, sent as gate.push over pooled connections. */
#ifndef CV_NODE_PUSH_H
#define CV_NODE_PUSH_H

#include <protobuf-c/protobuf-c.h>
#include <stdint.h>
#include <uv.h>

#include "config/config.h"

#define CV_PUSH_TIMEOUT_MS 5000u    /* a gate.push batch not answered by then counts as dropped */
#define CV_PUSH_INFLIGHT_MAX 64u    /* batches in flight per gate; beyond that new pushes drop */
#define CV_PUSH_BATCH_BYTES (1u << 20) /* a gate's batch goes early once it holds this much */

struct cv_pusher;

/* Counters (/metrics). */
struct cv_push_counts {
    uint64_t sent;    /* messages a gate accepted */
    uint64_t dropped; /* messages dropped: unknown gate, gate down or slow, batch failed */
};

/* Allocates the pusher and dials every configured gate (cfg->gates[].advertise_addr). cfg borrowed:
 * outlives the pusher. CV_ENOMEM. Then cv_pusher_close in every case. */
int cv_pusher_init(uv_loop_t *loop, const struct cv_config *cfg, struct cv_pusher **out);
/* Queues msg (borrowed: packed and mapped before return) for client_id's gate ("<gate-id>/<unique>"), or
 * for every gate (client_id NULL: broadcast). 0 (queued; an unknown or unreachable gate drops it,
 * counted), CV_EINVAL (malformed client id), CV_ENOMEM. Sent at the next loop iteration. */
int cv_pusher_push(struct cv_pusher *p, const char *client_id, const ProtobufCMessage *msg);
void cv_pusher_counts(const struct cv_pusher *p, struct cv_push_counts *out);
/* Drops what is queued (counted), closes the connections; cb(data) runs once everything closed (never
 * from in here), then p is freed. */
void cv_pusher_close(struct cv_pusher *p, void (*cb)(void *data), void *data);

#endif
