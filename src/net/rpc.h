/* Request/response RPC over TCP on libuv with the native framing: many requests in flight per
 * connection, matched by id; deadlines; one-way events. A server side and an auto-reconnecting client. */
#ifndef CV_NET_RPC_H
#define CV_NET_RPC_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct cv_rpc_server;
struct cv_rpc_conn;   /* an accepted connection; reference counted */
struct cv_rpc_client; /* an outgoing connection to one address */
struct cv_guard;      /* auth/guard.h: the cluster secret / protected mode of a cluster port */
struct cv_tls_ctx;    /* net/tls.h */

#include "core/ratelimit.h"

/* A request arrived on conn. The handler must answer exactly once with cv_rpc_respond (now or later);
 * body is valid only during the call. To answer later, take a reference (cv_rpc_conn_ref) and drop it
 * after responding. deadline_ms: how long the caller waits (0 = no deadline). */
typedef void (*cv_rpc_request_cb)(void *data, struct cv_rpc_conn *conn, uint64_t id, const char *method,
                                  const uint8_t *body, size_t len, uint32_t deadline_ms);
/* Connection closed (peer gone or server closing). Called once per accepted connection; optional. */
typedef void (*cv_rpc_conn_close_cb)(void *data, struct cv_rpc_conn *conn);
/* The server finished closing (srv is freed right after); data is the one given to cv_rpc_server_init. */
typedef void (*cv_rpc_server_close_cb)(void *data);

/* Allocates a server; freed when the close callback ran. */
int cv_rpc_server_init(uv_loop_t *loop, cv_rpc_request_cb on_request, cv_rpc_conn_close_cb on_conn_close,
                       void *data, struct cv_rpc_server **out);
/* Before listening: who may talk to the server (auth/guard.h). With g->secret every connection runs the
 * cluster handshake before its first frame; with g->loopback_only a peer not on a loopback address is
 * closed at accept. Refusals are counted and logged by the guard. Borrowed until the server's close
 * callback. Never set (NULL): any peer, no handshake -- a client-facing port (the gate's). */
void cv_rpc_server_set_guard(struct cv_rpc_server *srv, const struct cv_guard *g);
/* Before listening: every connection speaks TLS with ctx (net/tls.h; borrowed until the server's close
 * callback), under the cluster handshake if there is one. A peer whose TLS handshake fails, or has not
 * completed within CV_RPC_HANDSHAKE_MS of the accept, is closed and counted. */
void cv_rpc_server_set_tls(struct cv_rpc_server *srv, struct cv_tls_ctx *ctx);
/* Limits of a client-facing port (the gate's; docs/security.md "TLS and limits"). 0 in a field: none. */
struct cv_rpc_limits {
    unsigned max_connections;    /* one more is accepted and closed at once (counted in refused) */
    unsigned request_timeout_ms; /* a frame begun must arrive whole within it, else the connection is cut */
    unsigned idle_timeout_ms;    /* nothing read or written for this long, no request in flight and no
                                  * reference held (a pending answer, a push registration): closed */
    struct cv_rate rate;         /* requests per client; over it a request is answered CV_EBUSY */
    /* The rate's client of a request on conn: key holds the peer's IP address when called; the hook may
     * replace it (an authenticated user). Optional; data is the server's. */
    void (*rate_key)(void *data, struct cv_rpc_conn *conn, char *key, size_t cap);
};
/* Before listening; l is copied. CV_ENOMEM, CV_EINVAL (a rate with per_sec but no burst is given burst =
 * per_sec). */
int cv_rpc_server_set_limits(struct cv_rpc_server *srv, const struct cv_rpc_limits *l);
/* Counters since the start. */
struct cv_rpc_server_stats {
    uint64_t connections;      /* open now */
    uint64_t refused;          /* over max_connections */
    uint64_t request_timeouts; /* a frame not whole within request_timeout_ms */
    uint64_t idle_closed;      /* idle for idle_timeout_ms */
    uint64_t rate_limited;     /* requests answered CV_EBUSY by the rate limit */
    uint64_t tls_failures;     /* a failed or stalled TLS handshake or record */
};
void cv_rpc_server_stats(const struct cv_rpc_server *srv, struct cv_rpc_server_stats *out);
/* Binds and listens on "host:port". CV_EIO with a log line if the address is taken. Port 0 picks an
 * ephemeral port (see cv_rpc_server_port). */
int cv_rpc_server_listen(struct cv_rpc_server *srv, const char *addr);
/* The port the server listens on (useful after listening on port 0), or CV_EINVAL if not listening. */
int cv_rpc_server_port(const struct cv_rpc_server *srv);
/* Stops listening, closes every connection, then calls cb (may be NULL) and frees srv. */
void cv_rpc_server_close(struct cv_rpc_server *srv, cv_rpc_server_close_cb cb);

/* Sends the response to request id. CV_ECLOSED if the connection is gone (the response is dropped);
 * CV_ETOOBIG if the frame would exceed CV_FRAME_MAX (nothing sent: answer again with an error). error
 * and body are copied; body may be NULL when len is 0. With status CV_EAPP, body is the packed
 * application error (core/apperr.h): it travels as the Frame's app_code/app_details_type/app_details. */
int cv_rpc_respond(struct cv_rpc_conn *conn, uint64_t id, int status, const char *error, const void *body,
                   size_t len);
/* Pushes a one-way event to the peer of an accepted connection. */
int cv_rpc_send_event(struct cv_rpc_conn *conn, const char *method, const void *body, size_t len);
/* Bytes queued on conn and not yet taken by the kernel (a slow peer's backlog). */
size_t cv_rpc_conn_backlog(const struct cv_rpc_conn *conn);
void cv_rpc_conn_ref(struct cv_rpc_conn *conn);
void cv_rpc_conn_unref(struct cv_rpc_conn *conn);

/* Outcome of a call. status 0: body is the response (valid only during the call), error is NULL.
 * Negative: CV_E* from the peer (error then holds its message) or local: CV_ETIMEDOUT, CV_EUNAVAIL (could
 * not connect / connection lost before the response), CV_ECANCELED (client closing); error is then never
 * NULL. CV_EUNAVAIL for a call already written means the outcome is unknown: the peer may or may not
 * have executed it. body is never NULL (it may be empty). With CV_EAPP, body is the packed application
 * error (core/apperr.h) rebuilt from the Frame's app_* fields. */
typedef void (*cv_rpc_call_cb)(void *data, int status, const char *error, const uint8_t *body, size_t len);
/* An event pushed by the server. */
typedef void (*cv_rpc_event_cb)(void *data, const char *method, const uint8_t *body, size_t len);
/* The connection went up (connected = 1) or down (0). */
typedef void (*cv_rpc_state_cb)(void *data, int connected);
typedef void (*cv_rpc_client_close_cb)(struct cv_rpc_client *cli);

struct cv_rpc_client_opts {
    const char *addr;            /* "host:port" to dial; "localhost" allowed */
    unsigned reconnect_ms;       /* delay between connection attempts, default 100 */
    cv_rpc_event_cb on_event;    /* optional */
    cv_rpc_state_cb on_state;    /* optional */
    void *data;                  /* passed to on_event / on_state */
    const struct cv_guard *guard; /* optional, borrowed until the client's close callback: with a secret,
                                   * each connection runs the cluster handshake and counts as connected
                                   * (calls written, on_state(1)) only once it passed */
    struct cv_tls_ctx *tls;      /* optional, borrowed until the close callback: each connection speaks TLS
                                  * (before the cluster handshake); a certificate that does not verify fails
                                  * every call with CV_EAUTH "TLS with ADDR failed: reason" */
    const char *tls_host;        /* the name checked in the server's certificate; NULL: addr's host */
};

/* Allocates a client that connects lazily on the first call; from then on it keeps a connection up,
 * redialing every reconnect_ms after a failure or a loss (so subscribers get on_state(1) again).
 * CV_EINVAL if addr is not numeric or "localhost". */
int cv_rpc_client_init(uv_loop_t *loop, const struct cv_rpc_client_opts *opts, struct cv_rpc_client **out);
/* Dials now instead of at the first call (no-op while connecting or connected); like any connection of
 * the client, it is redialed every reconnect_ms after a failure or a loss. */
void cv_rpc_client_connect(struct cv_rpc_client *cli);
/* The opts->data the client was created with (also valid inside its close callback). */
void *cv_rpc_client_data(const struct cv_rpc_client *cli);
/* Starts a call; cb fires exactly once (never from inside cv_rpc_call). timeout_ms 0 = no deadline.
 * While the client is not connected, calls wait for the connection until their deadline. method and
 * body are copied. On a negative return (CV_ECLOSED while closing, CV_ETOOBIG, CV_EINVAL, CV_ENOMEM)
 * cb is never called. */
int cv_rpc_call(struct cv_rpc_client *cli, const char *method, const void *body, size_t len,
                unsigned timeout_ms, cv_rpc_call_cb cb, void *data);
/* Closes the socket and timers; once their close callbacks ran, fails pending calls with CV_ECANCELED,
 * calls cb (may be NULL) and frees cli. Calls started meanwhile return CV_ECLOSED. */
void cv_rpc_client_close(struct cv_rpc_client *cli, cv_rpc_client_close_cb cb);

#endif
