/* libFuzzer target: the HTTP request path (src/net/http.c over http_parser, with the percent-decoding
 * and query helpers every handler uses, and the gate's own parsers of the object path, the deadline, the
 * body and the bearer token), through a real loopback socket.
 *
 * One server (cv_http_server on 127.0.0.1:0) serves the whole run. Each input is sent as the bytes of one
 * client connection, which then shuts down its write side; the loop runs until the server closed the
 * connection. The handler splits the raw path and decodes each segment and a few query parameters (as
 * the gate's call paths do), then answers in one of three ways chosen by the path: at once, on the next
 * loop turn (asynchronously, as a forwarded call does), or as a stream (SSE). Whatever the bytes, the
 * server answers or closes — a connection it keeps open after the peer finished is a hang, which
 * libFuzzer reports through -timeout — and what it sends starts with an HTTP/1.1 status line. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "config/tokens.h"
#include "gate/httpapi.h"
#include "net/http.h"
#include "util/pct.h"

#define CHECK(c)                                                                                             \
    do {                                                                                                     \
        if (!(c)) __builtin_trap();                                                                          \
    } while (0)

static uv_loop_t loop;
static struct cv_http_server *srv;
static struct cv_tokens tokens; /* a gate's tokens file: the Authorization header is looked up in it */
static struct sockaddr_in addr;

struct later {
    uv_timer_t t;
    struct cv_http_exchange *x;
};

static void later_closed(uv_handle_t *h)
{
    free(h->data);
}

static void later_fire(uv_timer_t *t)
{
    struct later *l = t->data;
    cv_http_respond_json(l->x, 200, "{\"later\":true}");
    uv_close((uv_handle_t *)t, later_closed);
}

static void decode_segments(const char *raw)
{
    const char *p = raw;
    while (*p) {
        const char *s = strchr(p + 1, '/');
        size_t n = s ? (size_t)(s - p) : strlen(p);
        int err = 0;
        char *seg = cv_pct_decode_dup(p, n, false, &err);
        CHECK((seg == NULL) == (err != 0));
        free(seg);
        if (!s) break;
        p = s + 1;
    }
}

/* What the gate does with a request before it forwards it (src/gate/httpapi.c, config/tokens.c): the
 * object path, the per-call deadline, the body (JSON or base64 Any), the bearer token. */
static void gate_parsers(const struct cv_http_request *req)
{
    char err[256];
    struct cv_gate_target t;
    int rv = cv_gate_parse_path(req->path, &t, err, sizeof err);
    if (rv == 0) {
        CHECK(t.type && t.type[0] && t.id && t.id[0]);
        cv_gate_target_free(&t);
    }
    unsigned ms = 0;
    if (cv_gate_parse_timeout(req->query, req->deadline_ms[0] ? req->deadline_ms : NULL, &ms, err, sizeof err) == 0)
        CHECK(ms <= CV_GATE_MAX_TIMEOUT_MS);
    struct cv_gate_body b;
    if (cv_gate_parse_body(req->body, req->body_len, &b, err, sizeof err) == 0) cv_gate_body_free(&b);
    if (strncmp(req->authorization, "Bearer ", 7) == 0) {
        const struct cv_token *k = cv_tokens_find(&tokens, req->authorization + 7, strlen(req->authorization + 7));
        if (k) CHECK(strcmp(req->authorization + 7, "tok-alice") == 0 || strcmp(req->authorization + 7, "tok-bob") == 0);
    }
}

static void handle(void *data, struct cv_http_exchange *x, const struct cv_http_request *req)
{
    CHECK(req->method && req->path && req->raw_path && req->query && req->body);
    CHECK(req->body[req->body_len] == '\0');
    decode_segments(req->raw_path);
    gate_parsers(req);
    char v[64];
    static const char *const keys[] = {"timeout_ms", "format", "since", ""};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) cv_pct_query_param(req->query, keys[i], v, sizeof v);
    if (strncmp(req->path, "/stream", 7) == 0) {
        struct cv_http_stream *s = cv_http_stream_begin(x, 200, "text/event-stream", NULL, NULL, NULL);
        if (s) {
            cv_http_stream_write(s, "event: x\ndata: y\n\n", 18);
            cv_http_stream_end(s);
        }
    } else if (strncmp(req->path, "/later", 6) == 0) {
        struct later *l = calloc(1, sizeof *l);
        CHECK(l);
        l->x = x;
        uv_timer_init(&loop, &l->t);
        l->t.data = l;
        uv_timer_start(&l->t, later_fire, 0, 0);
    } else if (strncmp(req->path, "/error", 6) == 0) {
        cv_http_respond_error(x, CV_STATUS_NOT_FOUND, req->path, NULL);
    } else {
        cv_http_respond(x, 200, "text/plain", req->body, req->body_len, NULL);
    }
}

struct client {
    uv_tcp_t tcp;
    uv_connect_t conn;
    uv_write_t wr;
    uv_shutdown_t sh;
    const uint8_t *data;
    size_t size;
    char head[16];
    size_t got;
    int closed;
};

static void client_closed(uv_handle_t *h)
{
    ((struct client *)h->data)->closed = 1;
}

static void client_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    static char buf[65536];
    b->base = buf, b->len = sizeof buf;
}

static void client_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct client *c = s->data;
    if (n > 0) {
        for (ssize_t i = 0; i < n && c->got < sizeof c->head; i++) c->head[c->got++] = b->base[i];
        if (c->got >= 9) CHECK(memcmp(c->head, "HTTP/1.1 ", 9) == 0);
    } else if (n < 0) {
        uv_close((uv_handle_t *)s, client_closed);
    }
}

static void client_shut(uv_shutdown_t *r, int status) {}

static void client_written(uv_write_t *w, int status)
{
    struct client *c = w->data;
    if (status == 0) uv_shutdown(&c->sh, (uv_stream_t *)&c->tcp, client_shut);
}

static void client_connected(uv_connect_t *r, int status)
{
    struct client *c = r->data;
    CHECK(status == 0);
    uv_read_start((uv_stream_t *)&c->tcp, client_alloc, client_read);
    uv_buf_t b = uv_buf_init((char *)c->data, (unsigned)c->size);
    c->wr.data = c;
    if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, client_written)) uv_close((uv_handle_t *)&c->tcp, client_closed);
}

static void setup(void)
{
    static const char file[] = "# users\ntok-alice alice admin,ops\ntok-bob bob\n";
    char err[256];
    CHECK(cv_tokens_parse(file, sizeof file - 1, "tokens", &tokens, err, sizeof err) == 0);
    CHECK(uv_loop_init(&loop) == 0);
    struct cv_http_opts o = {.max_body = 4096, .max_header = 2048, .cors_origin = "*"};
    CHECK(cv_http_server_init(&loop, &o, handle, NULL, &srv) == 0);
    CHECK(cv_http_server_listen(srv, "127.0.0.1:0") == 0);
    uv_ip4_addr("127.0.0.1", cv_http_server_port(srv), &addr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!srv) setup();
    if (size == 0 || size > 16384) return 0;
    struct client c = {.data = data, .size = size};
    CHECK(uv_tcp_init(&loop, &c.tcp) == 0);
    c.tcp.data = c.conn.data = &c;
    CHECK(uv_tcp_connect(&c.conn, &c.tcp, (const struct sockaddr *)&addr, client_connected) == 0);
    while (!c.closed) uv_run(&loop, UV_RUN_ONCE);
    /* let the server finish its side of the connection (lingering close, timers) before the next input */
    uv_run(&loop, UV_RUN_NOWAIT);
    return 0;
}
