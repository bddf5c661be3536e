/* Asynchronous HTTP client on libuv: libcurl's multi-socket interface driven by uv_poll and a uv_timer. */
#ifndef CV_NET_HTTPC_H
#define CV_NET_HTTPC_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

struct cv_httpc;

/* What a request ended with. Valid until the callback returns (copy what you keep). */
struct cv_httpc_response {
    int err;           /* 0: an HTTP answer arrived (any status); else CV_ETIMEDOUT, CV_EUNAVAIL (could not
                        * connect, connection lost), CV_ECANCELED (client closed), CV_EIO (other) */
    long status;       /* HTTP status, 0 when err != 0 */
    const char *body;  /* NUL-terminated ("" when none); len excludes the NUL */
    size_t len;
    const char *error; /* err != 0: what went wrong (libcurl's text); "" otherwise */
};

/* Called exactly once per request, on the loop (never from inside cv_httpc_request). */
typedef void (*cv_httpc_cb)(void *data, const struct cv_httpc_response *r);
typedef void (*cv_httpc_close_cb)(void *data);

struct cv_httpc_req {
    const char *method;        /* "GET" (default when NULL) or "POST", ...; borrowed, copied */
    const char *url;           /* "http://host:port/path"; copied */
    const char *body;          /* POST body or NULL; copied */
    size_t body_len;
    const char *content_type;  /* default "application/json" when a body is given; copied */
    const char *extra_headers; /* NULL or "Name: value\r\n..." lines; copied */
    unsigned timeout_ms;       /* whole request; 0: 10 s */
    size_t max_body;           /* larger responses fail with CV_EIO; 0: 16 MiB */
    /* Streaming (an etcd watch): when set, each piece of the body is given here as it arrives (with the
     * request's data) instead of being collected, and the final response has an empty body. Return false to
     * end the transfer: it then completes with CV_ECANCELED. Runs inside libcurl: it must not start
     * requests nor close the client (defer such work, e.g. to a timer). */
    bool (*on_data)(void *data, const char *chunk, size_t len);
};

/* Creates a client on loop. *out is owned by the caller until cv_httpc_close's callback. */
int cv_httpc_init(uv_loop_t *loop, struct cv_httpc **out);
/* Starts a request; cb(data, ...) runs later on the loop. 0, CV_EINVAL (bad arguments), CV_ENOMEM or
 * CV_ECLOSED (client closing). On an error return cb is never called. */
int cv_httpc_request(struct cv_httpc *c, const struct cv_httpc_req *req, cv_httpc_cb cb, void *data);
/* Shorthands. */
int cv_httpc_get(struct cv_httpc *c, const char *url, unsigned timeout_ms, cv_httpc_cb cb, void *data);
int cv_httpc_post_json(struct cv_httpc *c, const char *url, const char *json, const char *extra_headers,
                       unsigned timeout_ms, cv_httpc_cb cb, void *data);
/* Requests in flight. */
size_t cv_httpc_pending(const struct cv_httpc *c);
/* Cancels what is pending (each callback runs with CV_ECANCELED, from inside this call) and frees the
 * client once its handles closed; cb (may be NULL) then runs. May be called from a response callback. */
void cv_httpc_close(struct cv_httpc *c, cv_httpc_close_cb cb, void *data);

#endif
