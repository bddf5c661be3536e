/* The gate's native front end: gate.call, gate.create, gate.delete and gate.status over the cverse RPC protocol. */
#ifndef CV_GATE_NATIVE_H
#define CV_GATE_NATIVE_H

#include <stddef.h>
#include <stdint.h>

#include "gate/forwarder.h"
#include "gate/push.h"
#include "net/rpc.h"

/* cv_rpc_request_cb of the gate's RPC server; data is the struct cv_forwarder (borrowed). */
void cv_gate_native_on_request(void *data, struct cv_rpc_conn *conn, uint64_t id, const char *method,
                               const uint8_t *body, size_t len, uint32_t deadline_ms);

#endif
