/* HTTP/1.1 server on libuv with http_parser: keep-alive, size limits, asynchronous responses. */
#ifndef CV_NET_HTTP_H
#define CV_NET_HTTP_H

#include <stddef.h>
#include <uv.h>

#include "core/ratelimit.h"
#include "cverse/error.h"

struct cv_http_server;
struct cv_tls_ctx;
struct cv_http_exchange; /* one request awaiting its response */

struct cv_http_request {
    const char *method;       /* "GET", "POST", ... */
    const char *path;         /* decoded path without the query, e.g. "/v1/cluster" */
    const char *raw_path;     /* the path as sent (still percent-encoded): split it before decoding */
    const char *query;        /* raw query string without '?', "" if none */
    const char *body;         /* NUL-terminated for convenience; body_len excludes the NUL */
    size_t body_len;
    const char *content_type; /* "" if absent */
    const char *origin;       /* Origin header, "" if absent (for CORS) */
    const char *deadline_ms;  /* X-Cverse-Deadline-Ms header (per-call deadline), "" if absent */
    const char *call_id;      /* X-Cverse-Call-Id header (reliable call id), "" if absent */
    const char *authorization; /* Authorization header, "" if absent */
    const char *last_event_id; /* Last-Event-ID header (an event stream's resume point), "" if absent */
    const char *if_none_match; /* If-None-Match header (a conditional GET's entity tag), "" if absent */
    const char *client_id;    /* X-Client-ID header (the caller's push client id, docs/push.md), "" if absent */
    const char *peer;         /* the peer's IP address ("127.0.0.1", "::1"), "" if unknown */
};

/* Called once per request. The request (and its strings) stays valid until cv_http_respond is called
 * for this exchange, which must happen exactly once (now or later). */
typedef void (*cv_http_handler)(void *data, struct cv_http_exchange *x, const struct cv_http_request *req);
/* The server finished closing (it is freed right after); data is the one given to cv_http_server_init. */
typedef void (*cv_http_close_cb)(void *data);

struct cv_http_opts {
    size_t max_body;     /* larger bodies get 413 without calling the handler; default 1 MiB */
    size_t max_header;   /* larger header sections get 431; default 16 KiB */
    const char *cors_origin; /* if set (copied), Access-Control-Allow-* headers are sent on every
                              * response and OPTIONS is answered 204 without calling the handler */
    /* Limits that protect the server (docs/security.md "TLS and limits"); 0 = the default. */
    unsigned request_timeout_ms; /* a request must arrive whole this long after its first byte (with TLS the
                                  * handshake too, from the accept), else the connection is cut; 10000 */
    unsigned idle_timeout_ms;    /* a keep-alive connection idle that long is closed; 60000 */
    unsigned max_connections;    /* connections beyond it are closed at once when accepted; 10000 */
    struct cv_rate rate;         /* requests per client (token bucket); per_sec 0: no limit (the default).
                                  * Over it: 429 RESOURCE_EXHAUSTED with Retry-After, the handler not called */
    /* The client a request is charged to: writes a NUL-terminated key of at most cap bytes. NULL: the
     * peer's IP address (req->peer). The hook for an authenticated user (e.g. "user:ID"); data is the
     * server's. Runs before the handler, only when rate is set. */
    void (*rate_key)(void *data, const struct cv_http_request *req, char *key, size_t cap);
    struct cv_tls_ctx *tls;      /* borrowed, outlives the server: every connection speaks TLS (net/tls.h);
                                  * NULL: plain HTTP */
    /* Who may connect: called at accept with the peer's address (data is the server's); 0 closes the
     * connection at once (counted as refused). NULL: everyone. A node's protected mode (auth/guard.h). */
    int (*admit)(void *data, const struct sockaddr *peer);
};

/* Counters of the limits (monotonic) and the connections open now. */
struct cv_http_server_stats {
    uint64_t accepted;          /* connections accepted (refused ones included) */
    uint64_t refused;           /* closed at accept: max_connections reached, or admit refused the peer */
    uint64_t request_timeouts;  /* cut: a request (or TLS handshake) not whole within request_timeout_ms */
    uint64_t idle_closed;       /* closed: idle keep-alive for idle_timeout_ms */
    uint64_t rate_limited;      /* requests answered 429 by the rate limit */
    uint64_t tls_failures;      /* connections closed by a failed TLS handshake or record */
    uint64_t connections;       /* open now */
};
void cv_http_server_stats(const struct cv_http_server *srv, struct cv_http_server_stats *out);

int cv_http_server_init(uv_loop_t *loop, const struct cv_http_opts *opts, cv_http_handler handler,
                        void *data, struct cv_http_server **out);
/* Binds and listens on "host:port" (port 0: ephemeral, see cv_http_server_port). CV_EIO with a log line
 * if the address is taken, CV_EINVAL on a bad address. */
int cv_http_server_listen(struct cv_http_server *srv, const char *addr);
/* The port the server listens on, or CV_EINVAL if not listening. */
int cv_http_server_port(const struct cv_http_server *srv);
/* Stops listening and closes connections; exchanges still unanswered are answered by nobody: their
 * cv_http_respond becomes a no-op that frees them. cb may be NULL. */
void cv_http_server_close(struct cv_http_server *srv, cv_http_close_cb cb);

/* Sends the response and frees the exchange. extra_headers: NULL or "Name: value\r\n..." lines.
 * Date, Content-Length (except on 1xx/204/304, which never carry a body), Connection and the CORS headers
 * are added; HEAD gets the headers only. All arguments are copied; they may point into the request. */
void cv_http_respond(struct cv_http_exchange *x, int status, const char *content_type, const char *body,
                     size_t len, const char *extra_headers);
/* Convenience: JSON body (Content-Type: application/json). */
void cv_http_respond_json(struct cv_http_exchange *x, int status, const char *json);
/* Convenience: {"error": msg, "code": cv_status_name(st)} with the status' HTTP status (and
 * "Retry-After: 1" where the error table says so, unless extra_headers has its own). extra_headers: NULL or "Name: value\r\n..." lines
 * sent as well (e.g. "Allow: GET\r\n" with a 405). Out of memory: a 500 {"error":"out of memory",...}. */
void cv_http_respond_error(struct cv_http_exchange *x, enum cv_status st, const char *msg,
                           const char *extra_headers);

/* Streaming responses (e.g. Server-Sent Events): the status line and headers now, then the body in
 * pieces as it comes; no Content-Length: the body ends when the connection closes. The connection
 * serves nothing else afterwards. */
struct cv_http_stream;
/* The stream ended without cv_http_stream_end: the peer closed the connection, a write failed, the
 * peer fell more than CV_HTTP_STREAM_MAX_QUEUE bytes behind, or the server closed. s is freed after. */
typedef void (*cv_http_stream_close_cb)(void *data, struct cv_http_stream *s);
#define CV_HTTP_STREAM_MAX_QUEUE (4u << 20)

/* Answers x with the head of a streaming response and frees x (arguments are copied). Returns the
 * stream (owned by the server: valid until on_close runs or cv_http_stream_end is called), or NULL when
 * the connection is gone or out of memory (on_close is then never called). */
struct cv_http_stream *cv_http_stream_begin(struct cv_http_exchange *x, int status, const char *content_type,
                                            const char *extra_headers, cv_http_stream_close_cb on_close,
                                            void *data);
/* Queues bytes of the body (copied). 0, or CV_ECLOSED when the stream is ending (on_close follows). */
int cv_http_stream_write(struct cv_http_stream *s, const char *data, size_t len);
/* Bytes written to the stream that the kernel has not taken yet (a slow peer's backlog); 0 when gone. */
size_t cv_http_stream_backlog(const struct cv_http_stream *s);
/* Ends the stream: what was written is sent, then the connection closes. on_close is not called. */
void cv_http_stream_end(struct cv_http_stream *s);

#endif
