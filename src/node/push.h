/* A node's pushes to clients: messages objects push (cv_object_push / cv_object_broadcast), packed and mapped to proto3 JSON once, batched per gate per loop iteration, sent as gate.push events on the connections the gates keep to the node. */
#ifndef CV_NODE_PUSH_H
#define CV_NODE_PUSH_H

#include <protobuf-c/protobuf-c.h>
#include <stdint.h>
#include <uv.h>

#include "net/rpc.h"

#define CV_PUSH_BACKLOG_BYTES (8u << 20) /* a gate connection with this much unwritten: its pushes drop */
#define CV_PUSH_BATCH_BYTES (1u << 20)   /* a gate's batch goes early once it holds this much */
#define CV_PUSH_GATE_ID_MAX 128          /* gate ids are shorter */

struct cv_pusher;

/* Counters (/metrics). */
struct cv_push_counts {
    uint64_t sent;    /* messages written to their gate's connection */
    uint64_t dropped; /* messages dropped: gate not attached (unknown, down), gate connection backed up */
};

/* Allocates the pusher. CV_ENOMEM. Then cv_pusher_close in every case. */
int cv_pusher_init(uv_loop_t *loop, struct cv_pusher **out);
/* gate.attach: conn (referenced until it closes or the gate attaches on another) is gate_id's. 0,
 * CV_EINVAL (empty, too long or with a '/'), CV_EUNAVAIL (closing), CV_ENOMEM. */
int cv_pusher_attach(struct cv_pusher *p, struct cv_rpc_conn *conn, const char *gate_id);
/* A server connection closed: the gate attached on it is forgotten (its pending pushes dropped). */
void cv_pusher_conn_closed(struct cv_pusher *p, struct cv_rpc_conn *conn);
/* Queues msg (borrowed: packed and mapped before return) for client_id's gate ("<gate-id>/<unique>"), or
 * for every gate (client_id NULL: broadcast). 0 (queued; an unknown or unreachable gate drops it,
 * counted), CV_EINVAL (malformed client id), CV_ENOMEM. Sent at the next loop iteration. */
int cv_pusher_push(struct cv_pusher *p, const char *client_id, const ProtobufCMessage *msg);
void cv_pusher_counts(const struct cv_pusher *p, struct cv_push_counts *out);
/* Drops what is queued (counted), releases the connections; cb(data) runs once the timer closed (never
 * from in here), then p is freed. */
void cv_pusher_close(struct cv_pusher *p, void (*cb)(void *data), void *data);

#endif
