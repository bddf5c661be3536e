/* cverse client library: blocking calls to objects through a gate over the native protocol. */
#ifndef CVERSE_CLIENT_H
#define CVERSE_CLIENT_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include <cverse/error.h>

#include "rpc.pb-c.h" /* generated from proto/rpc.proto: Cverse__Rpc__StatusResponse */

#ifdef __cplusplus
extern "C" {
#endif

/* One TCP connection to a gate's grpc_addr (or to a node: the framing is the same, see cv_client_rpc).
 *
 * Threads: thread-compatible, not thread-safe. Use one cv_client per thread (or lock around every
 * call); different clients share nothing. No signal handlers are installed; writes use MSG_NOSIGNAL,
 * so a peer that went away never raises SIGPIPE.
 *
 * Calls are blocking and one at a time. Every request carries a fresh id; a response with another id
 * is a protocol error (CV_EPROTO). One-way events the peer pushes are skipped.
 *
 * Connection loss: a call whose connection breaks (peer closed, protocol error, or the call timed out
 * locally: a late answer must not be taken for the next call's) fails, and the connection is closed.
 * The next call redials the same address transparently, within its own deadline. So a call that failed
 * with CV_EUNAVAIL or CV_ETIMEDOUT may or may not have run: retry only idempotent operations blindly.
 *
 * Errors: every call returns 0 or a negative CV_E* code (include/cverse/error.h). When err is not NULL
 * and errlen > 0, a failing call writes a NUL-terminated message into err (truncated to errlen): the
 * peer's Frame.error for a remote error (cv_strerror of the code when the peer sent none), or a local
 * description ("cannot connect to 127.0.0.1:47101: Connection refused", "no response within 500 ms").
 * An application error (CV_EAPP: the object's method refused the call with a code of its own, e.g.
 * "INSUFFICIENT_FUNDS") writes its message into err; cv_client_app_error gives its code and details.
 * Local failures: CV_EUNAVAIL (cannot connect, connection lost), CV_ETIMEDOUT (deadline passed),
 * CV_EPROTO (undecodable or unexpected frame), CV_ETOOBIG, CV_EINVAL (bad argument), CV_ENOMEM.
 *
 * Deadlines (deadline_ms): 0 means no deadline (the gate then applies its default, 30 s). Otherwise
 * the request carries deadline_ms, so the gate stops retrying when the caller stops waiting, and the
 * client waits CV_CLIENT_GRACE_MS longer than that before failing with CV_ETIMEDOUT: when both give up
 * together, the gate's answer says why (e.g. which shard was unavailable). */
typedef struct cv_client cv_client;

#define CV_CLIENT_GRACE_MS 250u

/* Connects to hostport ("127.0.0.1:47101", "[::1]:47101" or "localhost:47101"; names other than
 * localhost are not resolved), waiting at most timeout_ms (0 = as long as the OS tries); later redials
 * (after a lost connection) are bounded by the same timeout and by the call's deadline.
 * Returns 0 and *out (free with cv_client_close), or CV_EINVAL (malformed address), CV_EUNAVAIL (refused,
 * unreachable), CV_ETIMEDOUT, CV_ENOMEM. On CV_EUNAVAIL and CV_ETIMEDOUT, errno holds the socket error
 * (ECONNREFUSED, ETIMEDOUT, ...) so a caller can say what happened. *out is NULL on failure. */
int cv_client_connect(const char *hostport, unsigned timeout_ms, cv_client **out);
/* The same over TLS (the gate's native port with gates[].tls_cert_file; docs/security.md). The gate's
 * certificate is always verified: against the CAs in ca_file (PEM), or the system's trust store when it
 * is NULL, and for the name host (NULL: the host part of hostport, a name or an IP address). err (may be
 * NULL) gets a line on failure. Besides cv_client_connect's codes: CV_EAUTH when the certificate does
 * not verify ("TLS with ADDR failed: certificate verify failed: self-signed certificate ..."), CV_EIO
 * when ca_file does not load. Every redial runs the handshake again. */
struct cv_client_tls {
    const char *ca_file; /* borrowed during the call */
    const char *host;
};
int cv_client_connect_tls(const char *hostport, unsigned timeout_ms, const struct cv_client_tls *tls, char *err,
                          size_t errlen, cv_client **out);
/* The gate's client token (docs/security.md; NULL or "" = none, copied): before the first call on each
 * connection the client sends gate.auth with it, and a wrong token fails that call with CV_EAUTH
 * (UNAUTHENTICATED). A gate without authentication accepts any token. 0, CV_EINVAL, CV_ENOMEM. */
int cv_client_set_token(cv_client *c, const char *token);
/* Closes the connection and frees c. NULL is allowed. */
void cv_client_close(cv_client *c);
/* After a call that failed with CV_EAPP: the application error (code, message, details_type and the packed
 * details), owned by c and valid until the next call on c or cv_client_close. NULL after any other
 * outcome (success, another error, no call yet). */
const struct cv_app_error *cv_client_app_error(const cv_client *c);

/* Generic request of any native method (e.g. "gate.status", or "objects.call" on a node). body may be
 * NULL when len is 0. On return *out is NULL or a malloc'ed buffer of *outlen bytes that the caller
 * frees (free()), whatever the return value: the response body on success, and on a remote error the
 * error response's body when it has one (e.g. a Redirect with CV_EREDIRECT). */
int cv_client_rpc(cv_client *c, const char *method, const void *body, size_t len, uint8_t **out,
                  size_t *outlen, unsigned deadline_ms, char *err, size_t errlen);

/* Calls method of object (type, id) through the gate ("gate.call"): req is serialized (NULL = empty
 * request) and the response decoded with resp_desc. On success *resp is the decoded message, owned by
 * the caller: free with protobuf_c_message_free_unpacked(*resp, NULL). *resp is NULL on failure.
 * resp_desc and resp may both be NULL to ignore the response. */
int cv_client_call(cv_client *c, const char *type, const char *id, const char *method,
                   const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
                   ProtobufCMessage **resp, unsigned deadline_ms, char *err, size_t errlen);
/* Same with serialized messages: req of req_len bytes (may be NULL when 0) in; *resp (malloc'ed, free
 * with free(); NULL on failure, and possibly NULL with *resp_len 0 for an empty response) out. */
int cv_client_call_raw(cv_client *c, const char *type, const char *id, const char *method,
                       const void *req, size_t req_len, uint8_t **resp, size_t *resp_len,
                       unsigned deadline_ms, char *err, size_t errlen);
/* Same with proto3 JSON: json_req (NULL or "" = "{}") is mapped by the gate through the method's
 * request descriptor; *json_resp is the response as proto3 JSON, a NUL-terminated malloc'ed string the
 * caller frees (free()); NULL on failure. A malformed or mismatching json_req fails with the gate's
 * CV_EINVAL. */
int cv_client_call_json(cv_client *c, const char *type, const char *id, const char *method,
                        const char *json_req, char **json_resp, unsigned deadline_ms, char *err,
                        size_t errlen);

/* Reliable calls (docs/durable-state.md): the same with a call id (NULL or "" = none, at most 128
 * bytes), sent as CallRequest.call_id. The object's owner records the id with its answer in the commit of
 * the state change; calling again with the same id (after a timeout or a lost connection, even to a new
 * owner after a failover) returns the recorded answer without running the method again. An id older
 * than the object's window fails with CV_ECALLEXPIRED. Use one fresh id per logical call. */
int cv_client_call_raw_id(cv_client *c, const char *type, const char *id, const char *method,
                          const void *req, size_t req_len, const char *call_id, uint8_t **resp,
                          size_t *resp_len, unsigned deadline_ms, char *err, size_t errlen);
int cv_client_call_json_id(cv_client *c, const char *type, const char *id, const char *method,
                           const char *json_req, const char *call_id, char **json_resp, unsigned deadline_ms,
                           char *err, size_t errlen);

/* Creates object (type, id) in the catalog ("gate.create"); idempotent: an existing object is success. */
int cv_client_create(cv_client *c, const char *type, const char *id, unsigned deadline_ms, char *err,
                     size_t errlen);
/* Deletes object (type, id) ("gate.delete"); idempotent. */
int cv_client_delete(cv_client *c, const char *type, const char *id, unsigned deadline_ms, char *err,
                     size_t errlen);
/* The gate's view of the cluster ("gate.status"): nodes, shard owners, leader, gates. On success *out is
 * owned by the caller: free with cverse__rpc__status_response__free_unpacked(*out, NULL). */
int cv_client_status(cv_client *c, Cverse__Rpc__StatusResponse **out, unsigned deadline_ms, char *err,
                     size_t errlen);

/* ---- Push to clients (docs/push.md) ----
 * cv_client_register makes this connection a push client of its gate: the gate answers its client id
 * ("<gate-id>/<unique>"), which every later call on this connection carries (CallRequest.client_id:
 * objects read it with cv_object_caller_client), and objects' pushes to it arrive on the connection.
 * Events that arrive while a call waits are kept (at most CV_CLIENT_PUSH_QUEUE; the oldest go, counted)
 * for cv_client_next_push. A lost connection loses the registration (the gate forgets the id): register
 * again after a redial. */
#define CV_CLIENT_PUSH_QUEUE 1024

struct cv_client_push {
    struct cv_client_push *next; /* internal */
    char *type;                  /* full message name, e.g. "chat.ChatMessage" */
    uint8_t *payload;            /* the packed message */
    size_t len;
    char *json;                  /* its proto3 JSON (mapped by the node that pushed) */
    bool broadcast;              /* sent to every client */
    uint64_t dropped;            /* messages lost (gate or client queue full) since the previous one */
};
/* Registers (gate.register); client_id (may be NULL) receives the id, truncated to len. */
int cv_client_register(cv_client *c, char *client_id, size_t len, unsigned deadline_ms, char *err, size_t errlen);
/* The registered client id, "" when not registered on the current connection. */
const char *cv_client_id(const cv_client *c);
/* The next pushed message (*out owned: cv_client_push_free), waiting up to timeout_ms (0 = no limit).
 * CV_ETIMEDOUT (nothing came), CV_EUNAVAIL (not registered, or the connection was lost), CV_EPROTO. */
int cv_client_next_push(cv_client *c, struct cv_client_push **out, unsigned timeout_ms, char *err, size_t errlen);
void cv_client_push_free(struct cv_client_push *p);

#ifdef __cplusplus
}
#endif
#endif
