/* HTTP/1.1 server on libuv + http_parser, for the admin / JSON API.
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
 * instead of a reset caused by the bytes we did not read. Idle keep-alive connections are closed after
 * HTTP__IDLE_MS. If the connection goes away while the handler works, the exchange is detached and
 * cv_http_respond only frees it.
 *
 * Streams (cv_http_stream_begin): the head goes out without Content-Length and with Connection: close;
 * the connection keeps reading only to notice the peer closing (bytes it sends are discarded), takes no
 * further request, and is never closed as idle. A peer that does not read (more than
 * CV_HTTP_STREAM_MAX_QUEUE bytes queued) is closed. */
#include "net/http.h"

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
#include "util/pct.h"
#include "util/addr.h"
#include "util/buf.h"
#include "util/log.h"

#define HTTP__DEFAULT_MAX_BODY (1024u * 1024u)
#define HTTP__DEFAULT_MAX_HEADER (16u * 1024u)
#define HTTP__READ_CHUNK (64u * 1024u)
#define HTTP__BACKLOG 128
#define HTTP__SWEEP_MS 1000
#define HTTP__IDLE_MS 60000    /* keep-alive connections idle that long are closed */
#define HTTP__LINGER_MS 2000   /* how long a closing connection is drained */
/* Bytes a closing connection drains at most. Large: a client still sending a refused body (413) sees a
 * reset instead of our answer if we close with its bytes unread; the time bound above keeps the cost low. */
#define HTTP__LINGER_MAX (64u * 1024u * 1024u)

struct http__buf {
    char *p;
    size_t len, cap;
};

struct cv_http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_timer_t sweep;             /* idle and linger timeouts */
    struct cv_http_opts opts;     /* cors_origin copied */
    cv_http_handler handler;
    void *data;
    struct http__conn *conns;     /* connections whose close callback has not run */
    int port;
    int closing;
    unsigned handles;             /* listener + sweep until their close callbacks ran */
    cv_http_close_cb close_cb;
};

/* The request headers handed to the handler (struct cv_http_request); the rest are skipped. */
enum { HTTP__CONTENT_TYPE, HTTP__ORIGIN, HTTP__DEADLINE, HTTP__CALL_ID, HTTP__AUTH, HTTP__LAST_ID,
       HTTP__IF_NONE_MATCH, HTTP__CLIENT_ID, HTTP__N_HDRS };
static const char *const http__hdr_names[HTTP__N_HDRS] = {
    "Content-Type", "Origin", "X-Cverse-Deadline-Ms", "X-Cverse-Call-Id", "Authorization", "Last-Event-ID",
    "If-None-Match", "X-Client-ID"};

struct http__conn {
    uv_tcp_t tcp;
    uv_shutdown_t sreq;
    struct cv_http_server *srv;
    http_parser parser;
    struct http__buf in;          /* bytes in.p[in_off, in.len) are read but not parsed yet */
    size_t in_off;
    /* The request being parsed. */
    struct http__buf url, field, value, body;
    char *hdr[HTTP__N_HDRS];      /* the headers we read (NULL = absent), moved to the exchange */
    int in_value, expect_continue;
    size_t header_bytes;
    enum cv_status err;           /* our refusal when a callback stops the parser (when err_msg is set); */
    const char *err_msg;          /* the table gives its HTTP status */
    struct cv_http_exchange *ready;   /* parsed, not handed out yet (parser paused) */
    struct cv_http_exchange *pending; /* with the handler, awaiting cv_http_respond */
    struct cv_http_stream *stream;    /* a streaming response in progress */
    unsigned writes;              /* uv_write requests in flight */
    int in_process, reading, closing;
    int close_after_write;        /* last response queued: close once written */
    int peer_eof, lingering;
    size_t drained;
    uint64_t last_activity;       /* uv_now() of the last read, or of the linger start */
    struct http__conn *prev, *next;
};

struct cv_http_exchange {
    struct http__conn *conn;      /* NULL once the connection is gone */
    struct cv_http_request req;
    char *path, *raw_path, *query, *body, *hdr[HTTP__N_HDRS];
    int keep_alive, http10, head, options;
};

struct cv_http_stream {
    struct http__conn *conn; /* NULL once ended */
    cv_http_stream_close_cb on_close;
    void *data;
};

struct http__wreq {
    uv_write_t req;
    struct http__conn *conn;
    char *buf;
};

static void conn__process(struct http__conn *c);
static void conn__close(struct http__conn *c);
static void conn__check_done(struct http__conn *c);
static void server__maybe_finish(struct cv_http_server *srv);

/* ---------------------------------------------------------------------------------------------------
 * Buffers and small helpers. */

/* Room for n more bytes and a NUL. The check stays inline (the common case); growth doubles from 256
 * (cv_array_grow doubles from 8, so asking for at least 256 gives the same capacities). */
static int buf__reserve(struct http__buf *b, size_t n)
{
    if (b->cap - b->len > n) return 0; /* strictly greater: room for the NUL */
    if (n > SIZE_MAX - b->len - 1) return CV_ENOMEM;
    size_t want = b->len + n + 1;
    return cv_array_grow((void **)&b->p, &b->cap, want < 256 ? 256 : want, 1);
}

static int buf__append(struct http__buf *b, const char *data, size_t n)
{
    if (buf__reserve(b, n)) return CV_ENOMEM;
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static int buf__appendf(struct http__buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int buf__appendf(struct http__buf *b, const char *fmt, ...)
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

static void buf__free(struct http__buf *b)
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

/* Queues b's bytes (taking the buffer) for writing; closes the connection on failure. */
static void conn__write(struct http__conn *c, struct http__buf *b)
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
                              "OPTIONS\r\nAccess-Control-Allow-Headers: Content-Type, X-Cverse-Deadline-Ms, X-Cverse-Call-Id, X-Client-ID\r\n", cors);
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
static void conn__refuse(struct http__conn *c, enum cv_status st, const char *msg)
{
    char body[256];
    int n = snprintf(body, sizeof body, "{\"error\":\"%s\",\"code\":\"%s\"}", msg, cv_status_name(st));
    struct http__resp r = {.status = cv_status_http(st), .content_type = "application/json", .body = body,
                           .len = (size_t)n};
    conn__send(c, &r);
}

/* ---------------------------------------------------------------------------------------------------
 * Parser callbacks: they assemble the request in the connection. */

static const char http__msg_header[] = "request header section too large";
static const char http__msg_bad[] = "malformed HTTP request";
static const char http__msg_body[] = "request body too large";

/* Stops the parser with our refusal (answered by conn__refuse_parse_error). */
static int conn__fail(struct http__conn *c, enum cv_status st, const char *msg)
{
    c->err = st;
    c->err_msg = msg;
    return -1;
}

static int conn__count_header(struct http__conn *c, size_t n)
{
    c->header_bytes += n;
    if (c->header_bytes <= c->srv->opts.max_header) return 0;
    return conn__fail(c, CV_STATUS_HEADER_TOO_LARGE, http__msg_header);
}

static void hdrs__free(char **hdr)
{
    for (int i = 0; i < HTTP__N_HDRS; i++) {
        free(hdr[i]);
        hdr[i] = NULL;
    }
}

static int conn__header_done(struct http__conn *c)
{
    const char *f = c->field.p ? c->field.p : "", *v = c->value.p ? c->value.p : "";
    for (int i = 0; i < HTTP__N_HDRS; i++) {
        if (strcasecmp(f, http__hdr_names[i]) != 0) continue;
        free(c->hdr[i]);
        c->hdr[i] = strndup(v, c->value.len);
        break;
    }
    if (!strcasecmp(f, "Expect")) c->expect_continue = !strcasecmp(v, "100-continue");
    c->field.len = c->value.len = 0;
    c->in_value = 0;
    return conn__count_header(c, 4); /* ": " and CRLF */
}

static int http__on_message_begin(http_parser *p)
{
    struct http__conn *c = p->data;
    c->url.len = c->field.len = c->value.len = c->body.len = 0;
    hdrs__free(c->hdr);
    c->in_value = c->expect_continue = 0;
    c->header_bytes = 0;
    return 0;
}

static int http__on_url(http_parser *p, const char *at, size_t len)
{
    struct http__conn *c = p->data;
    if (conn__count_header(c, len)) return -1;
    return buf__append(&c->url, at, len) ? -1 : 0;
}

static int http__on_header_field(http_parser *p, const char *at, size_t len)
{
    struct http__conn *c = p->data;
    if (c->in_value && conn__header_done(c)) return -1;
    if (conn__count_header(c, len)) return -1;
    return buf__append(&c->field, at, len) ? -1 : 0;
}

static int http__on_header_value(http_parser *p, const char *at, size_t len)
{
    struct http__conn *c = p->data;
    c->in_value = 1;
    if (conn__count_header(c, len)) return -1;
    return buf__append(&c->value, at, len) ? -1 : 0;
}

static int http__on_headers_complete(http_parser *p)
{
    struct http__conn *c = p->data;
    if (c->in_value && conn__header_done(c)) return -1;
    int chunked = (p->flags & F_CHUNKED) != 0;
    if (!chunked && p->content_length != ULLONG_MAX && p->content_length > c->srv->opts.max_body)
        return conn__fail(c, CV_STATUS_PAYLOAD_TOO_LARGE, http__msg_body);
    int has_body = chunked || (p->content_length != ULLONG_MAX && p->content_length > 0);
    if (c->expect_continue && has_body && p->http_major == 1 && p->http_minor >= 1) {
        struct http__buf b = {0};
        if (buf__append(&b, "HTTP/1.1 100 Continue\r\n\r\n", 25)) return -1;
        conn__write(c, &b);
    }
    return 0;
}

static int http__on_body(http_parser *p, const char *at, size_t len)
{
    struct http__conn *c = p->data;
    if (c->body.len + len > c->srv->opts.max_body)
        return conn__fail(c, CV_STATUS_PAYLOAD_TOO_LARGE, http__msg_body);
    return buf__append(&c->body, at, len) ? -1 : 0;
}

static void exchange__free(struct cv_http_exchange *x)
{
    free(x->path);
    free(x->raw_path);
    free(x->query);
    free(x->body);
    hdrs__free(x->hdr);
    free(x);
}

/* Fills path and query from the request target; 0, or the refusal (conn__fail). */
static int exchange__set_url(struct http__conn *c, struct cv_http_exchange *x, const struct http__buf *url,
                             int is_connect)
{
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (url->len > UINT16_MAX) /* the parser's offsets are 16-bit */
        return conn__fail(c, CV_STATUS_URI_TOO_LONG, "request target too long");
    if (!url->p || http_parser_parse_url(url->p, url->len, is_connect, &u))
        return conn__fail(c, CV_STATUS_INVALID_ARGUMENT, http__msg_bad);
    if (u.field_set & (1u << UF_PATH)) {
        int err;
        x->path = cv_pct_decode_dup(url->p + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len, false, &err);
        x->raw_path = strndup(url->p + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
    } else {
        x->path = strdup("/");
        x->raw_path = strdup("/");
    }
    if (u.field_set & (1u << UF_QUERY))
        x->query = strndup(url->p + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
    else
        x->query = strdup("");
    if (!x->path || !x->raw_path || !x->query) return conn__fail(c, CV_STATUS_INVALID_ARGUMENT, http__msg_bad);
    return 0;
}

static int http__on_message_complete(http_parser *p)
{
    struct http__conn *c = p->data;
    struct cv_http_exchange *x = calloc(1, sizeof *x);
    if (!x) return -1;
    if (exchange__set_url(c, x, &c->url, p->method == HTTP_CONNECT) ||
        (!c->body.p && buf__reserve(&c->body, 0) && conn__fail(c, CV_STATUS_INTERNAL, "out of memory"))) {
        exchange__free(x);
        return -1;
    }
    x->body = c->body.p; /* the body buffer moves to the exchange, NUL-terminated by buf__append */
    x->req.body_len = c->body.len;
    x->body[x->req.body_len] = '\0';
    c->body = (struct http__buf){0};
    memcpy(x->hdr, c->hdr, sizeof x->hdr);
    memset(c->hdr, 0, sizeof c->hdr);
    x->req.method = http_method_str((enum http_method)p->method);
    x->req.path = x->path;
    x->req.raw_path = x->raw_path;
    x->req.query = x->query;
    x->req.body = x->body;
#define HTTP__HDR(k) (x->hdr[k] ? x->hdr[k] : "")
    x->req.content_type = HTTP__HDR(HTTP__CONTENT_TYPE);
    x->req.origin = HTTP__HDR(HTTP__ORIGIN);
    x->req.deadline_ms = HTTP__HDR(HTTP__DEADLINE);
    x->req.call_id = HTTP__HDR(HTTP__CALL_ID);
    x->req.authorization = HTTP__HDR(HTTP__AUTH);
    x->req.last_event_id = HTTP__HDR(HTTP__LAST_ID);
    x->req.if_none_match = HTTP__HDR(HTTP__IF_NONE_MATCH);
    x->req.client_id = HTTP__HDR(HTTP__CLIENT_ID);
#undef HTTP__HDR
    x->keep_alive = http_should_keep_alive(p) && !p->upgrade; /* no protocol switching here */
    x->http10 = p->http_major == 1 && p->http_minor == 0;
    x->head = p->method == HTTP_HEAD;
    x->options = p->method == HTTP_OPTIONS;
    x->conn = c;
    c->ready = x;
    http_parser_pause(p, 1); /* one request at a time: the rest stays in the input buffer */
    return 0;
}

static const http_parser_settings http__settings = {
    .on_message_begin = http__on_message_begin,
    .on_url = http__on_url,
    .on_header_field = http__on_header_field,
    .on_header_value = http__on_header_value,
    .on_headers_complete = http__on_headers_complete,
    .on_body = http__on_body,
    .on_message_complete = http__on_message_complete,
};

/* ---------------------------------------------------------------------------------------------------
 * Connection lifecycle. */

static void conn__alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct http__conn *c = h->data;
    if (c->in_off == c->in.len) c->in_off = c->in.len = 0;
    if (c->in_off > 0 && c->in.cap - c->in.len < HTTP__READ_CHUNK) {
        memmove(c->in.p, c->in.p + c->in_off, c->in.len - c->in_off);
        c->in.len -= c->in_off;
        c->in_off = 0;
    }
    if (buf__reserve(&c->in, HTTP__READ_CHUNK)) {
        *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS to the read callback */
        return;
    }
    *buf = uv_buf_init(c->in.p + c->in.len, HTTP__READ_CHUNK);
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
    c->in.len += (size_t)nread;
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
    c->sreq.data = c;
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, conn__shutdown_cb)) conn__close(c);
}

static void conn__refuse_parse_error(struct http__conn *c)
{
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (!c->err_msg && e == HPE_HEADER_OVERFLOW) conn__fail(c, CV_STATUS_HEADER_TOO_LARGE, http__msg_header);
    else if (!c->err_msg) conn__fail(c, CV_STATUS_INVALID_ARGUMENT, http__msg_bad);
    if (c->err == CV_STATUS_INVALID_ARGUMENT) CV_DEBUG("http: bad request: %s", http_errno_description(e));
    conn__refuse(c, c->err, c->err_msg);
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
    buf__free(&c->in);
    buf__free(&c->url);
    buf__free(&c->field);
    buf__free(&c->value);
    buf__free(&c->body);
    hdrs__free(c->hdr);
    free(c);
    server__maybe_finish(srv);
}

static void conn__close(struct http__conn *c)
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
    free((char *)srv->opts.cors_origin);
    free(srv);
}

static void server__handle_closed(uv_handle_t *h)
{
    struct cv_http_server *srv = h->data;
    srv->handles--;
    server__maybe_finish(srv);
}

/* Closes keep-alive connections idle for too long and lingering ones drained for long enough. */
static void server__sweep_cb(uv_timer_t *t)
{
    struct cv_http_server *srv = t->data;
    uint64_t now = uv_now(srv->loop);
    for (struct http__conn *c = srv->conns; c; c = c->next) {
        if (c->closing || c->pending || c->writes || c->stream) continue;
        uint64_t limit = c->lingering ? HTTP__LINGER_MS : HTTP__IDLE_MS;
        if (now - c->last_activity >= limit) conn__close(c);
    }
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
    if (uv_accept(l, (uv_stream_t *)&c->tcp)) {
        conn__close(c);
        return;
    }
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
    if (srv->opts.cors_origin && !(srv->opts.cors_origin = strdup(srv->opts.cors_origin))) {
        free(srv);
        return CV_ENOMEM;
    }
    if (uv_tcp_init(loop, &srv->listener)) {
        free((char *)srv->opts.cors_origin);
        free(srv);
        return CV_EIO;
    }
    uv_timer_init(loop, &srv->sweep);
    srv->listener.data = srv->sweep.data = srv;
    srv->handles = 2;
    srv->loop = loop;
    srv->handler = handler;
    srv->data = data;
    *out = srv;
    return 0;
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
    uv_timer_start(&srv->sweep, server__sweep_cb, HTTP__SWEEP_MS, HTTP__SWEEP_MS);
    return 0;
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
    int rv = buf__appendf(&hdrs, "%s%s", cv_status_retry_after(st) ? "Retry-After: 1\r\n" : "",
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
