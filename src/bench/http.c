/* cverse-bench's HTTP transport: the gate's HTTP API (/api/v1/objects/call|create/...) and etcd's v3 JSON
 * gateway (/v3/kv/put), over keep-alive HTTP/1.1 connections on libuv, responses parsed by libhttp-parser.
 *
 * Why libuv + http_parser rather than libcurl multi (src/net/httpc.h): on a 2-core machine the load
 * tool shares the CPU with the system it measures, so its own cost per request is part of every figure.
 * Here a request is one snprintf into a stack buffer and one uv_try_write on a connection that stays
 * open, and a response one http_parser_execute over the bytes read; libcurl's multi interface adds an
 * easy handle per transfer, its own header parsing and socket/timer callbacks through uv_poll, several
 * times the work per request (wrk, the tool the issue measured with, is built the same way as this).
 * The parser is the project's own dependency (the servers in src/net/http.c use it); nothing is
 * hand-parsed.
 * Happy path: C connections (C = --concurrency) are dialed at init; each carries one request at a
 * time: send takes an idle connection, writes the request, and the response's message-complete
 * callback reports success (2xx) or the error's status name, then the connection is idle again.
 * Failure modes: a refused or lost connection fails its request with UNAVAILABLE and is redialed
 * 100 ms later; a request without an answer after --timeout fails with DEADLINE_EXCEEDED and its
 * connection is closed (an HTTP/1.1 connection cannot drop one request); a response the parser rejects
 * closes the connection (PROTOCOL); a non-2xx answer is named by the "code" of its JSON error body
 * (the gate's {"error","code"}), else HTTP_<status>. "Connection: close" answers redial at once.
 * TLS (https:// or --tls): each connection puts a net/tls.h session between its socket and the parser
 * (requests are encrypted before the write, bytes read are decrypted before parsing); the server's
 * certificate is verified against --ca (or the system's store) and the URL's host. A failed handshake
 * fails the connection's request as TLS (its reason logged once) and the connection is redialed. */
#include <http_parser.h>
#include <jansson.h>
#include <sodium.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "bench/driver.h"
#include "cverse/error.h"
#include "core/sm.h"
#include "net/tls.h"
#include "util/addr.h"
#include "util/log.h"

#define REDIAL_MS 100u
#define SWEEP_MS 50u
#define ERR_BODY_MAX 512u
#define PUT_VALUE "cverse-bench-value"

/* A connection's lifecycle: DOWN -> CONNECTING -> IDLE <-> BUSY, any of those -> CLOSING (socket being
 * closed) -> DOWN (redialed by the sweep). */
enum conn_state { C_DOWN, C_CONNECTING, C_IDLE, C_BUSY, C_CLOSING };
static const struct cv_sm_state conn_states[] = {
    [C_DOWN] = {"down", CV_SM_INITIAL | CV_SM_FINAL, CV_SM_BIT(C_CONNECTING)},
    [C_CONNECTING] = {"connecting", 0, CV_SM_BIT(C_IDLE) | CV_SM_BIT(C_CLOSING)},
    [C_IDLE] = {"idle", 0, CV_SM_BIT(C_BUSY) | CV_SM_BIT(C_CLOSING)},
    [C_BUSY] = {"busy", 0, CV_SM_BIT(C_IDLE) | CV_SM_BIT(C_CLOSING)},
    [C_CLOSING] = {"closing", 0, CV_SM_BIT(C_DOWN)},
};
static const struct cv_sm_conf conn_sm = {"bench-http-conn", conn_states, 5};

struct conn {
    struct hdrv *d;
    uv_tcp_t tcp;
    uv_connect_t creq;
    http_parser p;
    struct cv_sm sm; /* enum conn_state */
    bool handle_open, in_idle, complete;
    uint64_t start_ns, sent_ms, redial_ms;
    size_t elen;
    char ebody[ERR_BODY_MAX];
    char rbuf[16384];
    struct cv_tls *tls; /* TLS: the session of this socket, NULL when plain */
    struct conn *next_idle;
};

struct hdrv {
    struct cv_bench_driver base;
    uv_loop_t *loop;
    struct sockaddr_storage ss;
    struct conn *conns;
    unsigned n;
    struct conn *idle;
    uv_timer_t sweep;
    unsigned handles; /* open: the sweep timer and every conn with handle_open */
    bool closing;
    cv_bench_closed_cb closed;
    http_parser_settings settings;
    struct cv_tls_ctx *tls;  /* TLS: the client context (--ca), NULL when plain */
    bool tls_logged;         /* the first handshake failure was logged */
    char type[400], method[400], prefix[1300], host[300]; /* path segments percent-encoded; Host header */
    char *call_body;                                      /* the body of every call */
};

/* Percent-encodes one path segment (RFC 3986 unreserved characters stay). */
static void seg(const char *s, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t j = 0;
    for (; *s && j + 4 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || strchr("-._~", c)) {
            out[j++] = (char)c;
        } else {
            out[j++] = '%';
            out[j++] = hex[c >> 4];
            out[j++] = hex[c & 15];
        }
    }
    out[j] = '\0';
}

static void dial(struct conn *c);

static enum conn_state st(const struct conn *c)
{
    return (enum conn_state)cv_sm_state(&c->sm);
}

/* The socket is open exactly while connecting, idle, busy or closing. */
static const char *conn_invariant(const struct cv_sm *m, int prev)
{
    const struct conn *c = (const struct conn *)((const char *)m - offsetof(struct conn, sm));
    bool open = m->state != C_DOWN;
    return c->handle_open == open ? NULL : "the socket is open exactly when the connection is not down";
}

static void push_idle(struct conn *c)
{
    cv_sm_move(&c->sm, C_IDLE);
    if (c->in_idle) return;
    c->in_idle = true;
    c->next_idle = c->d->idle;
    c->d->idle = c;
}

static void handle_closed(struct hdrv *d)
{
    if (--d->handles) return;
    cv_bench_closed_cb closed = d->closed;
    void *data = d->base.data;
    for (unsigned i = 0; i < d->n; i++) cv_sm_fini(&d->conns[i].sm);
    cv_tls_ctx_free(d->tls);
    free(d->call_body);
    free(d->conns);
    free(d);
    if (closed) closed(data);
}

static void on_tcp_close(uv_handle_t *h)
{
    struct conn *c = h->data;
    struct hdrv *d = c->d;
    c->handle_open = false;
    cv_tls_free(c->tls);
    c->tls = NULL;
    cv_sm_move(&c->sm, C_DOWN);
    handle_closed(d);
}

/* Closes c's socket; a request on it fails with err (NULL: it had none or it is already reported). The
 * connection is redialed after delay_ms by the sweep. */
static void drop(struct conn *c, const char *err, unsigned delay_ms)
{
    if (st(c) == C_DOWN || st(c) == C_CLOSING) return;
    bool had = st(c) == C_BUSY;
    uint64_t start = c->start_ns;
    cv_sm_move(&c->sm, C_CLOSING);
    c->redial_ms = cv_mono_ms() + delay_ms;
    uv_close((uv_handle_t *)&c->tcp, on_tcp_close);
    if (had && err) c->d->base.done(c->d->base.data, start, err);
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    size_t room = ERR_BODY_MAX - 1 - c->elen;
    if (len > room) len = room;
    memcpy(c->ebody + c->elen, at, len);
    c->elen += len;
    return 0;
}

static int on_complete(http_parser *p)
{
    ((struct conn *)p->data)->complete = true;
    http_parser_pause(p, 1); /* one response per request: stop here */
    return 0;
}

/* The status name of a non-2xx answer: the "code" string of a JSON error body, else HTTP_<status>. */
static void error_name(struct conn *c, char *out, size_t cap)
{
    snprintf(out, cap, "HTTP_%u", c->p.status_code);
    json_t *j = json_loadb(c->ebody, c->elen, 0, NULL);
    const char *code = json_string_value(json_object_get(j, "code"));
    if (code && *code) snprintf(out, cap, "%s", code);
    json_decref(j);
}

static void finish(struct conn *c)
{
    char name[64];
    const char *err = NULL;
    if (c->p.status_code < 200 || c->p.status_code > 299) {
        error_name(c, name, sizeof name);
        err = name;
    }
    uint64_t start = c->start_ns;
    bool keep = http_should_keep_alive(&c->p);
    c->complete = false;
    c->elen = 0;
    http_parser_init(&c->p, HTTP_RESPONSE);
    c->p.data = c;
    if (keep) push_idle(c);
    else drop(c, NULL, 0);
    c->d->base.done(c->d->base.data, start, err);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct conn *c = h->data;
    *buf = uv_buf_init(c->rbuf, sizeof c->rbuf);
}

/* Response bytes (plaintext) into the parser. */
static void parse(struct conn *c, const char *p, size_t n)
{
    if (st(c) != C_BUSY) { /* bytes nobody asked for */
        drop(c, NULL, 0);
        return;
    }
    size_t done = http_parser_execute(&c->p, &c->d->settings, p, n);
    if (c->complete) {
        if (done < n) drop(c, "PROTOCOL", 0); /* more than one response: not ours */
        else finish(c);
    } else if (HTTP_PARSER_ERRNO(&c->p) != HPE_OK) {
        drop(c, "PROTOCOL", REDIAL_MS);
    }
}

static int put_raw(struct conn *c, const char *buf, size_t len);

/* TLS: sends what the session has for the server (handshake messages, encrypted requests). */
static int tls_flush(struct conn *c)
{
    char out[16384];
    size_t n;
    while ((n = cv_tls_take(c->tls, out, sizeof out)) > 0)
        if (put_raw(c, out, n) < 0) return CV_EUNAVAIL;
    return 0;
}

/* TLS: ciphertext read; the plaintext it gives is parsed (a piece at a time: rbuf holds the ciphertext). */
static void tls_in(struct conn *c, size_t n)
{
    char plain[16384];
    int rv = cv_tls_feed(c->tls, c->rbuf, n);
    if (rv == 0) rv = tls_flush(c);
    ssize_t got = 0;
    while (rv == 0 && st(c) != C_CLOSING && (got = cv_tls_read(c->tls, plain, sizeof plain)) > 0)
        parse(c, plain, (size_t)got);
    if (got < 0) rv = (int)got;
    if (rv == 0 && st(c) != C_CLOSING) rv = tls_flush(c); /* what reading made the session say (TLS 1.3) */
    if (rv == 0 || st(c) == C_CLOSING) return;
    if (!c->d->tls_logged) {
        c->d->tls_logged = true;
        CV_ERROR("TLS with %s failed: %s", c->d->base.o->addr, cv_tls_error(c->tls));
    }
    drop(c, "TLS", REDIAL_MS);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    if (nread == 0) return;
    if (nread < 0) {
        drop(c, "UNAVAILABLE", st(c) == C_BUSY ? REDIAL_MS : 0);
        return;
    }
    if (c->tls) tls_in(c, (size_t)nread);
    else parse(c, buf->base, (size_t)nread);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    if (c->d->closing || !c->handle_open || uv_is_closing((uv_handle_t *)&c->tcp)) return;
    if (status < 0) {
        drop(c, NULL, REDIAL_MS);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0 ||
        (c->d->tls && (cv_tls_new(c->d->tls, c->d->base.o->host, &c->tls) < 0 || tls_flush(c) < 0))) {
        drop(c, NULL, REDIAL_MS);
        return;
    }
    push_idle(c); /* with TLS a request sent now waits in the session until the handshake ended */
}

static void dial(struct conn *c)
{
    struct hdrv *d = c->d;
    if (uv_tcp_init(d->loop, &c->tcp) < 0) return; /* retried by the sweep */
    c->tcp.data = c;
    c->handle_open = true;
    d->handles++;
    cv_sm_move(&c->sm, C_CONNECTING);
    c->creq.data = c;
    if (uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&d->ss, on_connect) < 0) drop(c, NULL, REDIAL_MS);
}

/* Deadlines of busy connections, redials of closed ones. */
static void on_sweep(uv_timer_t *t)
{
    struct hdrv *d = t->data;
    uint64_t now = cv_mono_ms();
    for (unsigned i = 0; i < d->n; i++) {
        struct conn *c = &d->conns[i];
        if (st(c) == C_BUSY && now - c->sent_ms >= d->base.o->timeout_ms) drop(c, "DEADLINE_EXCEEDED", 0);
        else if (st(c) == C_DOWN && now >= c->redial_ms) dial(c);
    }
}

static bool http_can_send(struct cv_bench_driver *base)
{
    struct hdrv *d = (struct hdrv *)base;
    while (d->idle && st(d->idle) != C_IDLE) { /* closed since it went idle */
        d->idle->in_idle = false;
        d->idle = d->idle->next_idle;
    }
    return d->idle != NULL;
}

/* The request's bytes into buf; its length (> cap: did not fit). */
static int build(struct hdrv *d, enum cv_bench_kind kind, uint64_t n, char *buf, size_t cap)
{
    unsigned long long id = (unsigned long long)n;
    unsigned tmo = d->base.o->timeout_ms;
    if (kind == CV_BENCH_REQ_CALL)
        return snprintf(buf, cap,
                        "POST /api/v1/objects/call/%s/%s%llu/%s?timeout_ms=%u HTTP/1.1\r\nHost: %s\r\n"
                        "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                        d->type, d->prefix, id, d->method, tmo, d->host, strlen(d->call_body), d->call_body);
    if (kind == CV_BENCH_REQ_CREATE)
        return snprintf(buf, cap,
                        "POST /api/v1/objects/create/%s/%s%llu?timeout_ms=%u HTTP/1.1\r\nHost: %s\r\n"
                        "Content-Length: 0\r\n\r\n",
                        d->type, d->prefix, id, tmo, d->host);
    char key[512], k64[700], v64[64];
    int kl = snprintf(key, sizeof key, "%s%llu", d->base.prefix, id);
    sodium_bin2base64(k64, sizeof k64, (const unsigned char *)key, (size_t)kl, sodium_base64_VARIANT_ORIGINAL);
    sodium_bin2base64(v64, sizeof v64, (const unsigned char *)PUT_VALUE, strlen(PUT_VALUE),
                      sodium_base64_VARIANT_ORIGINAL);
    int bl = (int)(strlen(k64) + strlen(v64) + 21);
    return snprintf(buf, cap,
                    "POST /v3/kv/put HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                    "Content-Length: %d\r\n\r\n{\"key\":\"%s\",\"value\":\"%s\"}",
                    d->host, bl, k64, v64);
}

static void on_written(uv_write_t *w, int status)
{
    free(w); /* the bytes follow the request in the same allocation; a failure shows up as a read error */
}

/* Writes len bytes at buf on c: what the kernel does not take at once is copied and queued. */
static int put_raw(struct conn *c, const char *buf, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
    int w = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (w == (int)len) return 0;
    if (w < 0 && w != UV_EAGAIN) return CV_EUNAVAIL;
    size_t off = w > 0 ? (size_t)w : 0;
    uv_write_t *req = malloc(sizeof *req + len - off);
    if (!req) return CV_ENOMEM;
    memcpy(req + 1, buf + off, len - off);
    b = uv_buf_init((char *)(req + 1), (unsigned)(len - off));
    if (uv_write(req, (uv_stream_t *)&c->tcp, &b, 1, on_written) < 0) {
        free(req);
        return CV_EUNAVAIL;
    }
    return 0;
}

/* Sends a request's bytes: as they are, or through the TLS session. */
static int put(struct conn *c, const char *buf, size_t len)
{
    if (!c->tls) return put_raw(c, buf, len);
    if (cv_tls_write(c->tls, buf, len) < 0) return CV_EUNAVAIL;
    return tls_flush(c);
}

static int http_send(struct cv_bench_driver *base, enum cv_bench_kind kind, uint64_t n, uint64_t start_ns)
{
    struct hdrv *d = (struct hdrv *)base;
    if (!http_can_send(base)) return CV_EBUSY;
    struct conn *c = d->idle;
    char small[4096], *buf = small;
    int len = build(d, kind, n, small, sizeof small);
    if (len < 0) return CV_EINVAL;
    if ((size_t)len >= sizeof small) {
        if (!(buf = malloc((size_t)len + 1))) return CV_ENOMEM;
        build(d, kind, n, buf, (size_t)len + 1);
    }
    int rc = put(c, buf, (size_t)len);
    if (buf != small) free(buf);
    if (rc < 0) { /* this connection is broken: the next send takes another one */
        drop(c, NULL, REDIAL_MS);
        return rc;
    }
    d->idle = c->next_idle;
    c->in_idle = false;
    cv_sm_move(&c->sm, C_BUSY);
    c->start_ns = start_ns;
    c->sent_ms = cv_mono_ms();
    return 0;
}

static void on_sweep_closed(uv_handle_t *h)
{
    handle_closed(h->data);
}

static void http_close(struct cv_bench_driver *base, cv_bench_closed_cb closed)
{
    struct hdrv *d = (struct hdrv *)base;
    d->closing = true;
    d->closed = closed;
    for (unsigned i = 0; i < d->n; i++) drop(&d->conns[i], "CANCELED", 0);
    uv_close((uv_handle_t *)&d->sweep, on_sweep_closed);
}

static const struct cv_bench_driver_ops http_ops = {http_can_send, http_send, http_close};

/* The body of every call: {"request":BODY}, or {} (the empty request). */
static char *call_body(const char *body)
{
    if (!body || !*body) return strdup("{}");
    size_t n = strlen(body) + 16;
    char *s = malloc(n);
    if (s) snprintf(s, n, "{\"request\":%s}", body);
    return s;
}

/* The TLS client context: --ca (or the system's store). CV_EINVAL with the reason logged. */
static int bench_tls(struct hdrv *d, const struct cv_bench_opts *o)
{
    char err[1200];
    int rv = cv_tls_ctx_client(o->ca, err, sizeof err, &d->tls);
    if (rv == CV_EIO) CV_ERROR("--ca: %s", err);
    return rv == CV_EIO ? CV_EINVAL : rv;
}

int cv_bench_http_init(uv_loop_t *loop, const struct cv_bench_opts *o, const char *prefix,
                       cv_bench_done_cb done, void *data, struct cv_bench_driver **out)
{
    char hp[300];
    snprintf(hp, sizeof hp, strchr(o->host, ':') ? "[%s]:%u" : "%s:%u", o->host, o->port);
    if (sodium_init() < 0) return CV_ENOMEM;
    struct hdrv *d = calloc(1, sizeof *d);
    int rv = CV_ENOMEM;
    if (!d) return CV_ENOMEM;
    d->base = (struct cv_bench_driver){&http_ops, o, prefix, done, data};
    d->loop = loop;
    d->n = o->concurrency;
    snprintf(d->host, sizeof d->host, "%s", hp);
    if (cv_addr_resolve(hp, &d->ss) < 0) goto err_after_alloc;
    seg(o->type, d->type, sizeof d->type);
    seg(o->method, d->method, sizeof d->method);
    seg(prefix, d->prefix, sizeof d->prefix);
    d->settings.on_body = on_body;
    d->settings.on_message_complete = on_complete;
    d->call_body = call_body(o->body);
    d->conns = calloc(d->n, sizeof *d->conns);
    if (!d->call_body || !d->conns) goto err_after_alloc;
    if (o->tls && (rv = bench_tls(d, o)) < 0) goto err_after_alloc;
    uv_timer_init(loop, &d->sweep);
    d->sweep.data = d;
    d->handles = 1;
    uv_timer_start(&d->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    for (unsigned i = 0; i < d->n; i++) {
        struct conn *c = &d->conns[i];
        c->d = d;
        cv_sm_init(&c->sm, &conn_sm, C_DOWN, conn_invariant, NULL);
        http_parser_init(&c->p, HTTP_RESPONSE);
        c->p.data = c;
        dial(c);
    }
    *out = &d->base;
    return 0;
err_after_alloc:
    free(d->call_body);
    free(d->conns);
    free(d);
    return rv;
}
