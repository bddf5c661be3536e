/* HTTP/1.1 server on libuv + http_parser, for the admin / JSON API (the parser callbacks that assemble a
 * request are in httpparse.c; the structures both use in httpint.h).
 *
 * Happy path: accept -> read into the connection's input buffer -> http_parser_execute; when a request
 * is complete the parser is paused and the request handed to the handler as an exchange. Until it is
 * answered (cv_http_respond, now or later) reading stops and later pipelined bytes stay buffered, so
 * requests are handled one at a time and answered in order. After the answer parsing resumes, or the
 * connection is closed when keep-alive is off (Connection: close, HTTP/1.0 without keep-alive).
 *
 * Failure modes: syntax errors -> 400, bodies over max_body -> 413 (by Content-Length before reading
 * the body, or while a chunked body arrives), header sections over max_header -> 431; each of these
 * is answered with Connection: close. Connections we close after a final response are shut down for
 * writing and drained for a short while first (a lingering close), so the peer reads the response
 * instead of a reset caused by the bytes we did not read. If the connection goes away while the handler
 * works, the exchange is detached and cv_http_respond only frees it.
 *
 * Limits (cv_http_opts): a request must arrive whole within request_timeout_ms of its first byte (a
 * client sending half a request and stalling is cut), keep-alive connections idle for idle_timeout_ms
 * are closed (both checked by one sweep timer), connections beyond max_connections are closed as soon
 * as accepted, and with a rate each request is charged to its client's token bucket (core/ratelimit.h)
 * before the handler: an empty bucket answers 429 with Retry-After. Each cut is counted
 * (cv_http_server_stats).
 *
 * TLS (opts.tls): the connection's bytes go through a net/tls.h transform: what is read is fed to it and
 * the plaintext it gives lands in the input buffer; what we write is encrypted first. The handshake must
 * end within request_timeout_ms of the accept; a failed one closes the connection (counted).
 *
 * Streams (cv_http_stream_begin): the head goes out without Content-Length and with Connection: close;
 * the connection keeps reading only to notice the peer closing (bytes it sends are discarded), takes no
 * further request, and is never closed as idle. A peer that does not read (more than
 * CV_HTTP_STREAM_MAX_QUEUE bytes queued) is closed. */
#include "net/http.h"
#include "net/httpint.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <http_parser.h>
#include <jansson.h>

#include "cverse/error.h"
#include "net/tls.h"
#include "util/pct.h"
#include "util/addr.h"
#include "util/buf.h"
#include "util/log.h"

#define HTTP__DEFAULT_MAX_BODY (1024u * 1024u)
#define HTTP__DEFAULT_MAX_HEADER (16u * 1024u)
#define HTTP__BACKLOG 128
#define HTTP__SWEEP_MS 1000    /* at most; shorter when a timeout is short (a quarter of it) */
#define HTTP__DEFAULT_REQUEST_MS 10000
#define HTTP__DEFAULT_IDLE_MS 60000
#define HTTP__DEFAULT_MAX_CONNS 10000
#define HTTP__RATE_KEY_MAX 256
/* TLS: ciphertext read at once; a record is at most 16 KiB + its overhead, and each connection keeps this
 * buffer besides its input buffer, so it stays small. */
#define HTTP__TLS_CHUNK (17u * 1024u)
#define HTTP__LINGER_MS 2000   /* how long a closing connection is drained */
/* Bytes a closing connection drains at most. Large: a client still sending a refused body (413) sees a
 * reset instead of our answer if we close with its bytes unread; the time bound above keeps the cost low. */
#define HTTP__LINGER_MAX (64u * 1024u * 1024u)

struct http__wreq {
    uv_write_t req;
    struct http__conn *conn;
    char *buf;
};

static void conn__process(struct http__conn *c);
static void conn__check_done(struct http__conn *c);
static void server__maybe_finish(struct cv_http_server *srv);

/* ---------------------------------------------------------------------------------------------------
 * Buffers and small helpers. */

/* Room for n more bytes and a NUL. The check stays inline (the common case); growth doubles from 256
 * (cv_array_grow doubles from 8, so asking for at least 256 gives the same capacities). */
int buf__reserve(struct http__buf *b, size_t n)
{
    if (b->cap - b->len > n) return 0; /* strictly greater: room for the NUL */
    if (n > SIZE_MAX - b->len - 1) return CV_ENOMEM;
    size_t want = b->len + n + 1;
    return cv_array_grow((void **)&b->p, &b->cap, want < 256 ? 256 : want, 1);
}

int buf__append(struct http__buf *b, const char *data, size_t n)
{
    if (buf__reserve(b, n)) return CV_ENOMEM;
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int buf__appendf(struct http__buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || buf__reserve(b, (size_t)n)) return CV_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void buf__free(struct http__buf *b)
{
    free(b->p);
    *b = (struct http__buf){0};
}

/* RFC 7231 IMF-fixdate, built by hand: strftime's names follow the locale. */
static void http__date(char *out, size_t n)
{
    static const char *days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *mons[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, n, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7], tm.tm_mday,
             mons[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static const char *http__reason(int status)
{
    const char *r = http_status_str((enum http_status)status);
    return (r && r[0] != '<') ? r : "Unknown";
}

/* ---------------------------------------------------------------------------------------------------
 * Writing. */

static void conn__write_cb(uv_write_t *req, int status)
{
    struct http__wreq *w = (struct http__wreq *)req;
    struct http__conn *c = w->conn;
    free(w->buf);
    free(w);
    c->writes--;
    if (status < 0) {
        if (!c->closing) CV_DEBUG("http: write failed: %s", uv_strerror(status));
        conn__close(c);
        return;
    }
    conn__check_done(c);
}

/* Queues b's bytes (taking the buffer) for the socket as they are; closes the connection on failure. */
static void conn__write_raw(struct http__conn *c, struct http__buf *b)
{
    struct http__wreq *w = malloc(sizeof *w);
    if (!w) {
        buf__free(b);
        conn__close(c);
        return;
    }
    w->conn = c;
    w->buf = b->p;
    uv_buf_t ub = uv_buf_init(b->p, (unsigned)b->len);
    *b = (struct http__buf){0};
    int rv = uv_write(&w->req, (uv_stream_t *)&c->tcp, &ub, 1, conn__write_cb);
    if (rv) {
        free(w->buf);
        free(w);
        conn__close(c);
        return;
    }
    c->writes++;
}

/* TLS: sends the ciphertext the session has for the peer (handshake messages, records, alerts). */
static void conn__tls_flush(struct http__conn *c)
{
    size_t n = cv_tls_pending(c->tls);
    struct http__buf b = {0};
    if (!n) return;
    if (buf__reserve(&b, n)) {
        conn__close(c);
        return;
    }
    b.len = cv_tls_take(c->tls, b.p, n);
    conn__write_raw(c, &b);
}

/* Queues b's bytes (taking the buffer) for the peer, encrypted with TLS; closes the connection on failure. */
void conn__write(struct http__conn *c, struct http__buf *b)
{
    if (!c->tls) {
        conn__write_raw(c, b);
        return;
    }
    int rv = cv_tls_write(c->tls, b->p, b->len);
    buf__free(b);
    if (rv) {
        conn__close(c);
        return;
    }
    conn__tls_flush(c);
}

struct http__resp {
    int status;
    const char *content_type;
    const char *body;
    size_t len;
    const char *extra;
    int keep_alive, http10, head;
};

static void conn__send(struct http__conn *c, const struct http__resp *r)
{
    struct http__buf b = {0};
    char date[64];
    const char *cors = c->srv ? c->srv->opts.cors_origin : NULL;
    /* RFC 7230 3.3.2: no Content-Length (and no body) on 1xx, 204 and 304. */
    int bodyless = r->status < 200 || r->status == 204 || r->status == 304;
    http__date(date, sizeof date);
    int rv = buf__appendf(&b, "HTTP/1.1 %d %s\r\nDate: %s\r\n", r->status, http__reason(r->status), date);
    if (!rv && !bodyless) rv = buf__appendf(&b, "Content-Length: %zu\r\n", r->len);
    if (!rv && r->content_type && *r->content_type)
        rv = buf__appendf(&b, "Content-Type: %s\r\n", r->content_type);
    if (!rv && !r->keep_alive) rv = buf__appendf(&b, "Connection: close\r\n");
    if (!rv && r->keep_alive && r->http10) rv = buf__appendf(&b, "Connection: keep-alive\r\n");
    if (!rv && cors)
        rv = buf__appendf(&b, "Access-Control-Allow-Origin: %s\r\nAccess-Control-Allow-Methods: GET, POST, "
                              "OPTIONS\r\nAccess-Control-Allow-Headers: Content-Type, X-Cverse-Deadline-Ms, "
                              "X-Cverse-Call-Id, X-Client-ID, Authorization\r\n", cors);
    if (!rv && r->extra) rv = buf__appendf(&b, "%s", r->extra);
    if (!rv) rv = buf__append(&b, "\r\n", 2);
    if (!rv && !bodyless && !r->head && r->len) rv = buf__append(&b, r->body, r->len);
    if (rv) {
        buf__free(&b);
        conn__close(c);
        return;
    }
    if (!r->keep_alive) c->close_after_write = 1;
    conn__write(c, &b);
}

/* Answers a request we refuse before it reaches the handler, and closes the connection after. */
void conn__refuse(struct http__conn *c, enum cv_status st, const char *msg)
{
    char body[256];
    int n = snprintf(body, sizeof body, "{\"error\":\"%s\",\"code\":\"%s\"}", msg, cv_status_name(st));
    struct http__resp r = {.status = cv_status_http(st), .content_type = "application/json", .body = body,
                           .len = (size_t)n};
    c->req_start = 0; /* answered: the request timeout no longer runs (the close follows the answer) */
    conn__send(c, &r);
}

/* ---------------------------------------------------------------------------------------------------
 * Connection lifecycle. */

/* Room for HTTP__READ_CHUNK more bytes in the input buffer, moving the unparsed bytes to its start. */
static int conn__in_room(struct http__conn *c)
{
    if (c->in_off == c->in.len) c->in_off = c->in.len = 0;
    if (c->in_off > 0 && c->in.cap - c->in.len < HTTP__READ_CHUNK) {
        memmove(c->in.p, c->in.p + c->in_off, c->in.len - c->in_off);
        c->in.len -= c->in_off;
        c->in_off = 0;
    }
    return buf__reserve(&c->in, HTTP__READ_CHUNK);
}

/* Plain: reads land in the input buffer. TLS: in the ciphertext buffer (conn__tls_in decrypts). */
static void conn__alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct http__conn *c = h->data;
    struct http__buf *b = c->tls ? &c->raw : &c->in;
    size_t chunk = c->tls ? HTTP__TLS_CHUNK : HTTP__READ_CHUNK;
    if (c->tls) c->raw.len = 0;
    if (c->tls ? buf__reserve(b, chunk) : conn__in_room(c)) {
        *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS to the read callback */
        return;
    }
    *buf = uv_buf_init(b->p + b->len, (unsigned)chunk);
}

/* TLS: feeds n bytes just read to the session, appends the plaintext to the input buffer and sends what
 * the session answers. 0, or -1 when the connection is closing (a failed handshake or record). */
static int conn__tls_in(struct http__conn *c, size_t n)
{
    int rv = cv_tls_feed(c->tls, c->raw.p, n);
    while (rv == 0) {
        if (!c->tls_done && cv_tls_ready(c->tls)) c->tls_done = 1, c->req_start = 0; /* handshake over */
        if (conn__in_room(c)) {
            rv = CV_ENOMEM;
            break;
        }
        ssize_t got = cv_tls_read(c->tls, c->in.p + c->in.len, c->in.cap - c->in.len - 1);
        if (got <= 0) {
            if (got == CV_ECLOSED) c->peer_eof = 1; /* the peer's close_notify: answer, then close */
            rv = got == CV_ECLOSED ? 0 : (int)got;
            break;
        }
        c->in.len += (size_t)got;
        c->in.p[c->in.len] = '\0';
    }
    conn__tls_flush(c);
    if (rv == 0) return 0;
    if (!c->closing) {
        c->srv->stats.tls_failures++;
        CV_DEBUG("http: TLS with %s failed: %s", c->peer, cv_tls_error(c->tls));
    }
    conn__close(c);
    return -1;
}

static void conn__read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct http__conn *c = st->data;
    if (nread == 0) return;
    if (nread < 0 && c->stream) nread = UV_ECONNRESET; /* the peer left the stream */
    if (nread < 0) {
        if (nread != UV_EOF || c->lingering) {
            conn__close(c);
            return;
        }
        c->peer_eof = 1; /* answer what was received, then close */
        conn__process(c);
        return;
    }
    if (c->stream) return; /* nothing is expected from a stream's peer */
    if (c->lingering) { /* draining after our last response: discard */
        c->drained += (size_t)nread;
        if (c->drained > HTTP__LINGER_MAX) conn__close(c);
        return;
    }
    if (!c->tls) c->in.len += (size_t)nread;
    else if (conn__tls_in(c, (size_t)nread)) return;
    c->last_activity = uv_now(c->srv->loop);
    conn__process(c);
}

/* Reads only when there is room for a new request (or to drain while lingering). */
static void conn__update_reading(struct http__conn *c)
{
    int want = !c->closing && !c->peer_eof &&
               (c->lingering || c->stream || (!c->pending && !c->ready && !c->close_after_write));
    if (want == c->reading) return;
    if (want && uv_read_start((uv_stream_t *)&c->tcp, conn__alloc_cb, conn__read_cb)) {
        conn__close(c);
        return;
    }
    if (!want) uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = want;
}

static void conn__shutdown_cb(uv_shutdown_t *req, int status)
{
    struct http__conn *c = req->data;
    if (status < 0 || c->peer_eof) {
        conn__close(c);
        return;
    }
    conn__update_reading(c);
}

/* Closes once nothing is left to say: the last response written, or the peer gone and idle. */
static void conn__check_done(struct http__conn *c)
{
    if (c->closing || c->lingering || c->pending || c->ready || c->writes || c->stream) return;
    if (c->peer_eof) {
        conn__close(c);
        return;
    }
    if (!c->close_after_write) return;
    c->lingering = 1;
    c->last_activity = uv_now(c->srv->loop);
    if (c->tls) { /* our close_notify goes before the FIN (uv_shutdown waits for the writes) */
        cv_tls_close_notify(c->tls);
        conn__tls_flush(c);
        if (c->closing) return;
    }
    c->sreq.data = c;
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, conn__shutdown_cb)) conn__close(c);
}

/* The rate limit: 0 when the request's client has a token, else the seconds to wait (Retry-After). */
static uint64_t server__rate_wait(struct cv_http_server *srv, const struct cv_http_request *req)
{
    char key[HTTP__RATE_KEY_MAX];
    if (!srv->rate) return 0;
    snprintf(key, sizeof key, "%s", req->peer);
    if (srv->opts.rate_key) srv->opts.rate_key(srv->data, req, key, sizeof key);
    key[sizeof key - 1] = '\0';
    uint64_t ms = cv_ratelimit_take(srv->rate, key, uv_now(srv->loop));
    return ms ? (ms + 999) / 1000 : 0;
}

static void conn__dispatch(struct http__conn *c)
{
    struct cv_http_exchange *x = c->ready;
    struct cv_http_server *srv = c->srv;
    c->ready = NULL;
    c->pending = x;
    if (x->options && srv->opts.cors_origin) {
        cv_http_respond(x, 204, NULL, NULL, 0, NULL); /* CORS preflight */
        return;
    }
    uint64_t wait_s = server__rate_wait(srv, &x->req);
    if (wait_s) {
        char hdr[64];
        srv->stats.rate_limited++;
        snprintf(hdr, sizeof hdr, "Retry-After: %llu\r\n", (unsigned long long)wait_s);
        /* CV_EBUSY's status from the error table, with our Retry-After instead of the default 1 s */
        cv_http_respond_error(x, cv_err_code(CV_EBUSY), "rate limit exceeded: retry later", hdr);
        return;
    }
    srv->handler(srv->data, x, &x->req);
}

/* Parses buffered bytes and hands out requests while no response is outstanding. Re-entrant calls
 * (a handler answering synchronously) return at once: the outer loop goes on. */
static void conn__process(struct http__conn *c)
{
    if (c->in_process) return;
    c->in_process = 1;
    while (!c->closing && !c->close_after_write && !c->pending && !c->stream) {
        if (c->ready) {
            conn__dispatch(c);
            continue;
        }
        size_t avail = c->in.len - c->in_off;
        if (avail == 0) break;
        size_t n = http_parser_execute(&c->parser, &http__settings, c->in.p + c->in_off, avail);
        c->in_off += n;
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (e == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
            continue;
        }
        if (e != HPE_OK) {
            conn__refuse_parse_error(c);
            break;
        }
        if (n < avail) { /* only after an upgrade request; that exchange closes the connection */
            c->in_off = c->in.len;
            break;
        }
    }
    c->in_process = 0;
    conn__update_reading(c);
    conn__check_done(c);
}

static void conn__closed(uv_handle_t *h)
{
    struct http__conn *c = h->data;
    struct cv_http_server *srv = c->srv;
    if (c->prev) c->prev->next = c->next;
    else srv->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    if (c->pending) c->pending->conn = NULL; /* its cv_http_respond will only free it */
    if (c->stream) {
        struct cv_http_stream *st = c->stream;
        st->conn = NULL;
        st->on_close(st->data, st);
        free(st);
    }
    if (c->ready) exchange__free(c->ready);
    cv_tls_free(c->tls);
    buf__free(&c->raw);
    srv->stats.connections--;
    buf__free(&c->in);
    buf__free(&c->url);
    buf__free(&c->field);
    buf__free(&c->value);
    buf__free(&c->body);
    hdrs__free(c->hdr);
    free(c);
    server__maybe_finish(srv);
}

void conn__close(struct http__conn *c)
{
    if (c->closing) return;
    c->closing = 1;
    uv_close((uv_handle_t *)&c->tcp, conn__closed);
}

/* ---------------------------------------------------------------------------------------------------
 * Server. */

static void server__maybe_finish(struct cv_http_server *srv)
{
    if (!srv->closing || srv->handles || srv->conns) return;
    if (srv->close_cb) srv->close_cb(srv->data);
    cv_ratelimit_free(srv->rate);
    free((char *)srv->opts.cors_origin);
    free(srv);
}

static void server__handle_closed(uv_handle_t *h)
{
    struct cv_http_server *srv = h->data;
    srv->handles--;
    server__maybe_finish(srv);
}

/* Cuts requests (and TLS handshakes) not whole in time, closes keep-alive connections idle for too long
 * and lingering ones drained for long enough; drops the rate buckets that refilled. */
static void server__sweep_cb(uv_timer_t *t)
{
    struct cv_http_server *srv = t->data;
    uint64_t now = uv_now(srv->loop);
    for (struct http__conn *c = srv->conns; c; c = c->next) {
        if (c->closing || c->pending || c->ready || c->stream) continue;
        if (c->req_start && !c->lingering && now - c->req_start >= srv->opts.request_timeout_ms) {
            srv->stats.request_timeouts++;
            CV_DEBUG("http: %s did not send its request within %u ms: cut", c->peer, srv->opts.request_timeout_ms);
            conn__close(c);
            continue;
        }
        if (c->writes) continue;
        uint64_t limit = c->lingering ? HTTP__LINGER_MS : srv->opts.idle_timeout_ms;
        if (now - c->last_activity < limit) continue;
        if (!c->lingering) srv->stats.idle_closed++;
        conn__close(c);
    }
    if (srv->rate) cv_ratelimit_sweep(srv->rate, now);
}

/* The sweep's period: a quarter of the shortest timeout, at most HTTP__SWEEP_MS, at least 5 ms. */
static uint64_t server__sweep_ms(const struct cv_http_server *srv)
{
    uint64_t ms = HTTP__SWEEP_MS;
    if (srv->opts.request_timeout_ms / 4 < ms) ms = srv->opts.request_timeout_ms / 4;
    if (srv->opts.idle_timeout_ms / 4 < ms) ms = srv->opts.idle_timeout_ms / 4;
    return ms < 5 ? 5 : ms;
}

/* Records the peer's address; 0, or -1 when opts.admit refuses that peer (nothing is read from it). */
static int conn__set_peer(struct http__conn *c)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len)) return c->srv->opts.admit ? -1 : 0;
    if (ss.ss_family == AF_INET) uv_ip4_name((struct sockaddr_in *)&ss, c->peer, sizeof c->peer);
    else if (ss.ss_family == AF_INET6) uv_ip6_name((struct sockaddr_in6 *)&ss, c->peer, sizeof c->peer);
    return c->srv->opts.admit && !c->srv->opts.admit(c->srv->data, (struct sockaddr *)&ss) ? -1 : 0;
}

/* An accepted connection: closed at once over max_connections (accepted only so that the backlog drains)
 * or when opts.admit refuses its peer, else given its peer's address and, with TLS, its session. 0, or -1 when it is closing. */
static int conn__admit(struct http__conn *c)
{
    struct cv_http_server *srv = c->srv;
    if (srv->stats.connections > srv->opts.max_connections) {
        srv->stats.refused++;
        CV_DEBUG("http: %u connections open: refusing another", srv->opts.max_connections);
        conn__close(c);
        return -1;
    }
    if (conn__set_peer(c)) {
        srv->stats.refused++;
        conn__close(c);
        return -1;
    }
    if (srv->opts.tls && cv_tls_new(srv->opts.tls, NULL, &c->tls)) {
        conn__close(c);
        return -1;
    }
    if (c->tls) c->req_start = c->last_activity; /* the handshake must end within the request timeout */
    return 0;
}

static void server__on_connection(uv_stream_t *l, int status)
{
    struct cv_http_server *srv = l->data;
    if (status < 0) {
        CV_WARN("http: accept failed: %s", uv_strerror(status));
        return;
    }
    struct http__conn *c = calloc(1, sizeof *c);
    if (!c || uv_tcp_init(srv->loop, &c->tcp)) {
        CV_ERROR("http: cannot allocate a connection");
        free(c);
        return;
    }
    c->tcp.data = c;
    c->srv = srv;
    c->last_activity = uv_now(srv->loop);
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->next = srv->conns;
    if (srv->conns) srv->conns->prev = c;
    srv->conns = c;
    srv->stats.connections++;
    srv->stats.accepted++;
    if (uv_accept(l, (uv_stream_t *)&c->tcp)) {
        conn__close(c);
        return;
    }
    if (conn__admit(c)) return;
    uv_tcp_nodelay(&c->tcp, 1);
    conn__update_reading(c);
}

int cv_http_server_init(uv_loop_t *loop, const struct cv_http_opts *opts, cv_http_handler handler,
                        void *data, struct cv_http_server **out)
{
    if (!loop || !handler || !out) return CV_EINVAL;
    struct cv_http_server *srv = calloc(1, sizeof *srv);
    if (!srv) return CV_ENOMEM;
    if (opts) srv->opts = *opts;
    if (!srv->opts.max_body) srv->opts.max_body = HTTP__DEFAULT_MAX_BODY;
    if (!srv->opts.max_header) srv->opts.max_header = HTTP__DEFAULT_MAX_HEADER;
    if (!srv->opts.request_timeout_ms) srv->opts.request_timeout_ms = HTTP__DEFAULT_REQUEST_MS;
    if (!srv->opts.idle_timeout_ms) srv->opts.idle_timeout_ms = HTTP__DEFAULT_IDLE_MS;
    if (!srv->opts.max_connections) srv->opts.max_connections = HTTP__DEFAULT_MAX_CONNS;
    if (srv->opts.rate.per_sec && cv_ratelimit_new(&srv->opts.rate, 0, &srv->rate)) {
        free(srv);
        return CV_ENOMEM;
    }
    int rv = CV_ENOMEM;
    if (srv->opts.cors_origin && !(srv->opts.cors_origin = strdup(srv->opts.cors_origin))) goto err_after_rate;
    rv = CV_EIO;
    if (uv_tcp_init(loop, &srv->listener)) goto err_after_cors;
    uv_timer_init(loop, &srv->sweep);
    srv->listener.data = srv->sweep.data = srv;
    srv->handles = 2;
    srv->loop = loop;
    srv->handler = handler;
    srv->data = data;
    *out = srv;
    return 0;
err_after_cors:
    free((char *)srv->opts.cors_origin);
err_after_rate:
    cv_ratelimit_free(srv->rate);
    free(srv);
    return rv;
}


int cv_http_server_listen(struct cv_http_server *srv, const char *addr)
{
    struct sockaddr_storage ss;
    if (srv->closing || srv->port > 0) return CV_EINVAL;
    if (!addr || cv_addr_resolve_listen(addr, &ss)) {
        CV_ERROR("http: bad listen address '%s'", addr ? addr : "(null)");
        return CV_EINVAL;
    }
    int rv = uv_tcp_bind(&srv->listener, (struct sockaddr *)&ss, 0);
    if (!rv) rv = uv_listen((uv_stream_t *)&srv->listener, HTTP__BACKLOG, server__on_connection);
    if (rv) {
        CV_ERROR("http: cannot listen on %s: %s", addr, uv_strerror(rv));
        return CV_EIO;
    }
    int len = sizeof ss;
    if (uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&ss, &len)) return CV_EIO;
    srv->port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                         : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    uint64_t sweep = server__sweep_ms(srv);
    uv_timer_start(&srv->sweep, server__sweep_cb, sweep, sweep);
    return 0;
}

void cv_http_server_stats(const struct cv_http_server *srv, struct cv_http_server_stats *out)
{
    *out = srv->stats;
}

int cv_http_server_port(const struct cv_http_server *srv)
{
    return srv->port > 0 ? srv->port : CV_EINVAL;
}

void cv_http_server_close(struct cv_http_server *srv, cv_http_close_cb cb)
{
    if (srv->closing) return;
    srv->closing = 1;
    srv->close_cb = cb;
    uv_close((uv_handle_t *)&srv->listener, server__handle_closed);
    uv_close((uv_handle_t *)&srv->sweep, server__handle_closed);
    for (struct http__conn *c = srv->conns; c; c = c->next) conn__close(c);
}

/* ---------------------------------------------------------------------------------------------------
 * Responses. */

void cv_http_respond(struct cv_http_exchange *x, int status, const char *content_type, const char *body,
                     size_t len, const char *extra_headers)
{
    struct http__conn *c = x->conn;
    if (!c || c->closing) {
        if (c && c->pending == x) c->pending = NULL;
        exchange__free(x);
        return;
    }
    struct http__resp r = {.status = status, .content_type = content_type, .body = body,
                           .len = body ? len : 0, .extra = extra_headers, .keep_alive = x->keep_alive,
                           .http10 = x->http10, .head = x->head};
    if (c->pending == x) c->pending = NULL;
    c->last_activity = uv_now(c->srv->loop); /* the idle clock starts after the answer */
    conn__send(c, &r); /* before freeing x: body or headers may point into the request */
    exchange__free(x);
    conn__process(c); /* next pipelined request, or the close; a no-op inside the handler call */
}

void cv_http_respond_json(struct cv_http_exchange *x, int status, const char *json)
{
    cv_http_respond(x, status, "application/json", json, json ? strlen(json) : 0, NULL);
}

void cv_http_respond_error(struct cv_http_exchange *x, enum cv_status st, const char *msg,
                           const char *extra_headers)
{
    struct http__buf hdrs = {0};
    json_t *o = json_pack("{s:s, s:s}", "error", msg ? msg : "", "code", cv_status_name(st));
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    int own = extra_headers && strcasestr(extra_headers, "Retry-After:"); /* the caller's wins */
    int rv = buf__appendf(&hdrs, "%s%s", cv_status_retry_after(st) && !own ? "Retry-After: 1\r\n" : "",
                          extra_headers ? extra_headers : "");
    if (s && !rv) cv_http_respond(x, cv_status_http(st), "application/json", s, strlen(s), hdrs.p);
    else cv_http_respond_json(x, 500, "{\"error\":\"out of memory\",\"code\":\"INTERNAL\"}");
    buf__free(&hdrs);
    free(s);
    json_decref(o);
}

/* ---------------------------------------------------------------------------------------------------
 * Streaming responses. */

struct cv_http_stream *cv_http_stream_begin(struct cv_http_exchange *x, int status, const char *content_type,
                                            const char *extra_headers, cv_http_stream_close_cb on_close,
                                            void *data)
{
    struct http__conn *c = x->conn;
    struct cv_http_stream *s = c && !c->closing ? calloc(1, sizeof *s) : NULL;
    if (!s) {
        cv_http_respond(x, 500, NULL, NULL, 0, NULL); /* a no-op when the connection is gone */
        return NULL;
    }
    *s = (struct cv_http_stream){.conn = c, .on_close = on_close, .data = data};
    struct http__buf b = {0};
    char date[64];
    http__date(date, sizeof date);
    int rv = buf__appendf(&b, "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: %s\r\nConnection: close\r\n%s\r\n",
                          status, http__reason(status), date, content_type, extra_headers ? extra_headers : "");
    if (c->pending == x) c->pending = NULL;
    exchange__free(x);
    if (rv) {
        buf__free(&b);
        free(s);
        conn__close(c);
        return NULL;
    }
    c->stream = s;
    conn__write(c, &b);
    conn__update_reading(c);
    return s;
}

int cv_http_stream_write(struct cv_http_stream *s, const char *data, size_t len)
{
    struct http__conn *c = s->conn;
    if (!c || c->closing) return CV_ECLOSED;
    if (c->tcp.write_queue_size > CV_HTTP_STREAM_MAX_QUEUE) {
        CV_DEBUG("http: stream peer fell %zu bytes behind: closing", c->tcp.write_queue_size);
        conn__close(c);
        return CV_ECLOSED;
    }
    struct http__buf b = {0};
    if (buf__append(&b, data, len)) {
        conn__close(c);
        return CV_ECLOSED;
    }
    conn__write(c, &b);
    return 0;
}

size_t cv_http_stream_backlog(const struct cv_http_stream *s)
{
    return s->conn && !s->conn->closing ? s->conn->tcp.write_queue_size : 0;
}

void cv_http_stream_end(struct cv_http_stream *s)
{
    struct http__conn *c = s->conn;
    free(s);
    if (!c) return;
    c->stream = NULL;
    c->close_after_write = 1;
    conn__update_reading(c);
    conn__check_done(c);
}
