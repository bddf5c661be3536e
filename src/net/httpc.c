/* Asynchronous HTTP client: one CURLM in multi-socket mode whose sockets are watched by uv_poll handles
 * and whose timeout is a uv_timer, so requests run on the caller's loop without threads.
 *
 * Happy path: cv_httpc_request builds an easy handle (URL, method, body, headers, timeout, a write
 * callback collecting the body) and adds it to the multi handle; curl asks for a timeout (timer_cb) and
 * for socket watches (socket_cb); readiness and timer expiry call curl_multi_socket_action; finished
 * transfers are read from curl_multi_info_read and their callbacks run with status and body.
 *
 * Failure modes: connection refused / reset are CV_EUNAVAIL, a timeout CV_ETIMEDOUT, a body over max_body
 * or any other curl failure CV_EIO — each with curl's error text. cv_httpc_close fails every pending
 * request with CV_ECANCELED. curl's callbacks never call back into curl: the timer callback only arms the
 * uv_timer (a 0 ms timeout runs on the next loop iteration), as libcurl requires.
 *
 * Lifetime: a uv_poll per socket (struct sock) is closed when curl says CURL_POLL_REMOVE and freed in its
 * close callback; the client is freed after its timer and every poll closed. */
#include "net/httpc.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"
#include "util/buf.h"

#define HTTPC_DEFAULT_TIMEOUT_MS 10000u
#define HTTPC_DEFAULT_MAX_BODY (16u << 20)

struct cv_httpc {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    size_t pending;   /* requests not yet completed */
    int handles;      /* uv handles whose close callback has not run */
    bool closing;
    struct xfer *head; /* requests in flight (doubly linked) */
    struct sock *socks; /* uv_poll watches not closing yet */
    cv_httpc_close_cb close_cb;
    void *close_data;
};

struct sock {
    uv_poll_t poll;
    struct cv_httpc *c;
    struct sock *prev, *next; /* the client's open watches */
    curl_socket_t fd;
};

struct xfer {
    struct cv_httpc *c;
    struct xfer *prev, *next;
    CURL *easy;
    struct curl_slist *headers;
    char *body; /* request body copy */
    struct cv_buf resp;
    size_t max_body;
    bool too_big;
    bool (*on_data)(void *data, const char *chunk, size_t len); /* streaming: body pieces go here */
    bool stopped; /* on_data returned false */
    char errbuf[CURL_ERROR_SIZE];
    cv_httpc_cb cb;
    void *data;
};

static void httpc__unref(struct cv_httpc *c)
{
    if (--c->handles > 0 || !c->closing) return;
    cv_httpc_close_cb cb = c->close_cb;
    void *data = c->close_data;
    free(c);
    if (cb) cb(data);
}

static void httpc__handle_closed(uv_handle_t *h)
{
    struct cv_httpc *c;
    if (h->type == UV_POLL) {
        struct sock *s = h->data;
        c = s->c;
        free(s);
    } else {
        c = h->data;
    }
    httpc__unref(c);
}

static void sock__close(struct sock *s)
{
    struct cv_httpc *c = s->c;
    if (s->prev) s->prev->next = s->next;
    else c->socks = s->next;
    if (s->next) s->next->prev = s->prev;
    uv_close((uv_handle_t *)&s->poll, httpc__handle_closed);
}

/* ---- finishing transfers ------------------------------------------------------------------------------ */

/* Takes x out of the client (list and multi handle): a callback that closes the client sees it no more. */
static void xfer__detach(struct xfer *x)
{
    struct cv_httpc *c = x->c;
    if (x->prev) x->prev->next = x->next;
    else c->head = x->next;
    if (x->next) x->next->prev = x->prev;
    curl_multi_remove_handle(c->multi, x->easy);
}

static void xfer__free(struct xfer *x)
{
    curl_easy_cleanup(x->easy);
    curl_slist_free_all(x->headers);
    free(x->body);
    free(x->resp.p);
    x->c->pending--;
    free(x);
}

static int xfer__err(CURLcode rc, const struct xfer *x)
{
    if (x->too_big || x->resp.oom) return CV_EIO;
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT: return CV_ETIMEDOUT;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR: return CV_EUNAVAIL;
    default: return CV_EIO;
    }
}

/* Runs the callback with the outcome, then frees the transfer. */
static void xfer__complete(struct xfer *x, CURLcode rc, int forced)
{
    struct cv_httpc_response r = {.body = "", .error = ""};
    if (forced) {
        r.err = forced;
        r.error = "request canceled: client closing";
    } else if (x->stopped) {
        r.err = CV_ECANCELED;
        r.error = "stream ended by its reader";
    } else if (rc != CURLE_OK || x->too_big || x->resp.oom) {
        r.err = xfer__err(rc, x);
        r.error = x->too_big ? "response body too large" : x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);
    } else {
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &r.status);
        if (x->resp.p) {
            r.body = x->resp.p;
            r.len = x->resp.len;
        }
    }
    /* The response strings live in x: detach, call, then free. */
    xfer__detach(x);
    x->cb(x->data, &r);
    xfer__free(x);
}

static void httpc__drain(struct cv_httpc *c)
{
    CURLMsg *m;
    int left;
    while (!c->closing && (m = curl_multi_info_read(c->multi, &left))) {
        if (m->msg != CURLMSG_DONE) continue;
        struct xfer *x;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        xfer__complete(x, m->data.result, 0);
    }
}

/* ---- curl <-> libuv ----------------------------------------------------------------------------------- */

static void httpc__on_timer(uv_timer_t *t)
{
    struct cv_httpc *c = t->data;
    int running;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    httpc__drain(c);
}

static int httpc__timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct cv_httpc *c = userp;
    if (timeout_ms < 0) uv_timer_stop(&c->timer);
    else uv_timer_start(&c->timer, httpc__on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

static void httpc__on_poll(uv_poll_t *p, int status, int events)
{
    struct sock *s = p->data;
    struct cv_httpc *c = s->c;
    int flags = 0, running;
    if (status < 0) flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(c->multi, s->fd, flags, &running);
    httpc__drain(c);
}

static int httpc__socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct cv_httpc *c = userp;
    struct sock *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            curl_multi_assign(c->multi, fd, NULL);
            sock__close(s);
        }
        return 0;
    }
    if (!s) {
        if (!(s = calloc(1, sizeof *s))) return -1;
        if (uv_poll_init_socket(c->loop, &s->poll, fd)) {
            free(s);
            return -1;
        }
        s->c = c;
        s->fd = fd;
        s->poll.data = s;
        s->next = c->socks;
        if (c->socks) c->socks->prev = s;
        c->socks = s;
        c->handles++;
        curl_multi_assign(c->multi, fd, s);
    }
    int ev = (what & CURL_POLL_IN ? UV_READABLE : 0) | (what & CURL_POLL_OUT ? UV_WRITABLE : 0);
    uv_poll_start(&s->poll, ev, httpc__on_poll);
    return 0;
}

static size_t httpc__write_cb(char *ptr, size_t size, size_t n, void *userp)
{
    struct xfer *x = userp;
    size_t len = size * n;
    if (x->on_data) {
        x->stopped = !x->on_data(x->data, ptr, len);
        return x->stopped ? 0 : len;
    }
    if (x->resp.len + len > x->max_body) {
        x->too_big = true;
        return 0; /* makes curl fail the transfer with CURLE_WRITE_ERROR */
    }
    cv_buf_printf(&x->resp, "%.*s", (int)len, ptr);
    return x->resp.oom ? 0 : len;
}

/* ---- public API --------------------------------------------------------------------------------------- */

int cv_httpc_init(uv_loop_t *loop, struct cv_httpc **out)
{
    static bool global;
    if (!global) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT)) return CV_EIO;
        global = true;
    }
    struct cv_httpc *c = calloc(1, sizeof *c);
    if (!c) return CV_ENOMEM;
    if (!(c->multi = curl_multi_init())) {
        free(c);
        return CV_ENOMEM;
    }
    c->loop = loop;
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    c->handles = 1;
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, httpc__socket_cb);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, httpc__timer_cb);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    *out = c;
    return 0;
}

static int xfer__setup(struct xfer *x, const struct cv_httpc_req *req)
{
    CURL *e = x->easy;
    const char *method = req->method ? req->method : "GET";
    curl_easy_setopt(e, CURLOPT_URL, req->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, httpc__write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(req->timeout_ms ? req->timeout_ms : HTTPC_DEFAULT_TIMEOUT_MS));
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    if (req->body) {
        if (!(x->body = malloc(req->body_len + 1))) return CV_ENOMEM;
        memcpy(x->body, req->body, req->body_len);
        x->body[req->body_len] = 0;
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    }
    if (strcmp(method, "GET") != 0) curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    struct cv_buf h = {0};
    if (req->body) cv_buf_printf(&h, "Content-Type: %s\r\n", req->content_type ? req->content_type : "application/json");
    if (req->extra_headers) cv_buf_printf(&h, "%s", req->extra_headers);
    cv_buf_printf(&h, "Expect:\r\n"); /* no 100-continue round trip for POST bodies */
    if (h.oom) {
        free(h.p);
        return CV_ENOMEM;
    }
    int rv = 0;
    for (char *line = strtok(h.p, "\r\n"); line && !rv; line = strtok(NULL, "\r\n")) {
        struct curl_slist *n = curl_slist_append(x->headers, line);
        if (!n) rv = CV_ENOMEM;
        else x->headers = n;
    }
    free(h.p);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
    return rv;
}

int cv_httpc_request(struct cv_httpc *c, const struct cv_httpc_req *req, cv_httpc_cb cb, void *data)
{
    if (!c || !req || !req->url || !cb) return CV_EINVAL;
    if (c->closing) return CV_ECLOSED;
    struct xfer *x = calloc(1, sizeof *x);
    if (!x) return CV_ENOMEM;
    *x = (struct xfer){.c = c, .cb = cb, .data = data,
                       .max_body = req->max_body ? req->max_body : HTTPC_DEFAULT_MAX_BODY,
                       .on_data = req->on_data};
    int rv = CV_ENOMEM;
    if (!(x->easy = curl_easy_init())) goto err_after_alloc;
    if ((rv = xfer__setup(x, req))) goto err_after_easy;
    if (curl_multi_add_handle(c->multi, x->easy) != CURLM_OK) {
        rv = CV_EIO;
        goto err_after_easy;
    }
    x->next = c->head;
    if (c->head) c->head->prev = x;
    c->head = x;
    c->pending++;
    return 0;

err_after_easy:
    curl_easy_cleanup(x->easy);
    curl_slist_free_all(x->headers);
    free(x->body);
err_after_alloc:
    free(x);
    return rv;
}

int cv_httpc_get(struct cv_httpc *c, const char *url, unsigned timeout_ms, cv_httpc_cb cb, void *data)
{
    struct cv_httpc_req r = {.url = url, .timeout_ms = timeout_ms};
    return cv_httpc_request(c, &r, cb, data);
}

int cv_httpc_post_json(struct cv_httpc *c, const char *url, const char *json, const char *extra_headers,
                       unsigned timeout_ms, cv_httpc_cb cb, void *data)
{
    struct cv_httpc_req r = {.method = "POST", .url = url, .body = json ? json : "",
                             .body_len = json ? strlen(json) : 0, .extra_headers = extra_headers,
                             .timeout_ms = timeout_ms};
    return cv_httpc_request(c, &r, cb, data);
}

size_t cv_httpc_pending(const struct cv_httpc *c)
{
    return c->pending;
}

void cv_httpc_close(struct cv_httpc *c, cv_httpc_close_cb cb, void *data)
{
    if (c->closing) return;
    c->closing = true;
    c->close_cb = cb;
    c->close_data = data;
    while (c->head) xfer__complete(c->head, CURLE_OK, CV_ECANCELED);
    curl_multi_cleanup(c->multi); /* may still report CURL_POLL_REMOVE for cached connections */
    c->multi = NULL;
    while (c->socks) sock__close(c->socks); /* sockets curl kept in its connection cache */
    uv_close((uv_handle_t *)&c->timer, httpc__handle_closed);
}
