/* The HTTP server's request assembly (net/httpint.h): http_parser callbacks that collect the request
 * target, the headers cv_http_request carries, and the body into the connection, then hand the whole
 * request to the connection as an exchange (pausing the parser: one request at a time).
 *
 * Happy path: message begin resets the request (and starts its timeout clock: http.c's sweep cuts a
 * request not whole in time); url, header and body callbacks append into growable buffers; message
 * complete moves them into a new exchange.
 *
 * Failure modes: header sections over max_header -> 431, bodies over max_body -> 413 (by Content-Length
 * before reading it, or while a chunked body arrives), a malformed request target or syntax -> 400: the
 * callback records the refusal (conn__fail) and stops the parser; conn__refuse_parse_error answers it
 * with Connection: close. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <http_parser.h>

#include "cverse/error.h"
#include "net/httpint.h"
#include "util/log.h"
#include "util/pct.h"

static const char *const http__hdr_names[HTTP__N_HDRS] = {
    "Content-Type", "Origin", "X-Cverse-Deadline-Ms", "X-Cverse-Call-Id", "Authorization", "Last-Event-ID",
    "If-None-Match", "X-Client-ID"};


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

void hdrs__free(char **hdr)
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
    c->req_start = uv_now(c->srv->loop); /* the request timeout runs from here */
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

void exchange__free(struct cv_http_exchange *x)
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
    c->req_start = 0; /* whole */
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
    memcpy(x->peer, c->peer, sizeof x->peer); /* the request may outlive the connection */
    x->req.peer = x->peer;
    x->keep_alive = http_should_keep_alive(p) && !p->upgrade; /* no protocol switching here */
    x->http10 = p->http_major == 1 && p->http_minor == 0;
    x->head = p->method == HTTP_HEAD;
    x->options = p->method == HTTP_OPTIONS;
    x->conn = c;
    c->ready = x;
    http_parser_pause(p, 1); /* one request at a time: the rest stays in the input buffer */
    return 0;
}

const http_parser_settings http__settings = {
    .on_message_begin = http__on_message_begin,
    .on_url = http__on_url,
    .on_header_field = http__on_header_field,
    .on_header_value = http__on_header_value,
    .on_headers_complete = http__on_headers_complete,
    .on_body = http__on_body,
    .on_message_complete = http__on_message_complete,
};


void conn__refuse_parse_error(struct http__conn *c)
{
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (!c->err_msg && e == HPE_HEADER_OVERFLOW) conn__fail(c, CV_STATUS_HEADER_TOO_LARGE, http__msg_header);
    else if (!c->err_msg) conn__fail(c, CV_STATUS_INVALID_ARGUMENT, http__msg_bad);
    if (c->err == CV_STATUS_INVALID_ARGUMENT) CV_DEBUG("http: bad request: %s", http_errno_description(e));
    conn__refuse(c, c->err, c->err_msg);
}
