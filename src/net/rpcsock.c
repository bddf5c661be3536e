/* The framed TCP stream of rpc.c (rpcsock.h): coalesced writes, the frame reader, the handshake phase.
 *
 * Happy path: frames queued while a write is in flight (or while a read callback is still dispatching)
 * are coalesced into the next single uv_write; deferred sockets leave the write to their owner's
 * flusher. With a cluster secret, the socket first runs the handshake (auth/handshake.h): its bytes go
 * out raw, before any frame; bytes read feed the handshake until it is done, and what follows them in
 * the same read is the first frames. A client marks itself connected only then, so no call is written
 * before the peer proved itself, and a server reads no request before that.
 * Failure modes: a malformed or oversized frame closes the connection with a log line; a failed
 * handshake (wrong magic, wrong proof, the peer left midway) is counted and logged rate-limited
 * (auth/guard.h) and closes the connection before any method runs.
 * TLS (cv_rpc_sock_tls): the output buffer holds plaintext (frames, handshake bytes) that a flush
 * enciphers into the write buffer; bytes read are fed to the session and its plaintext goes through the
 * same path as a plain socket's bytes. A failed TLS handshake or record keeps its reason (tls_err), sends
 * the alert OpenSSL queued, and closes. */
#include "net/rpcsock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/guard.h"
#include "cverse/error.h"
#include "net/tcplive.h"
#include "util/buf.h"
#include "util/log.h"

#define RPC__BUF_KEEP (256 * 1024) /* a drained write buffer larger than this is given back */
#define RPC__BUF_MIN 4096u        /* first size of an output buffer */

static void rpc__read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

int cv_rpc_sock_init(uv_loop_t *loop, struct cv_rpc_sock *s, const struct sockaddr *dial, char *rbuf,
                          cv_rpc_frame_fn on_frame, uv_close_cb on_close)
{
    int rv = dial ? cv_tcp_live_init(loop, &s->tcp, dial) : uv_tcp_init(loop, &s->tcp);
    if (rv) return CV_EIO;
    s->tcp.data = s;
    s->wreq.data = s;
    cv_frame_reader_init(&s->rd, CV_FRAME_MAX);
    s->rbuf = rbuf;
    s->on_frame = on_frame;
    s->on_close = on_close;
    s->last_io = uv_now(loop);
    return 0;
}

void cv_rpc_sock_free(struct cv_rpc_sock *s)
{
    free(s->hs);
    s->hs = NULL;
    cv_tls_free(s->tls);
    s->tls = NULL;
    cv_frame_reader_free(&s->rd);
    free(s->out.p);
    free(s->wr.p);
    s->out = s->wr = (struct cv_rpc_buf){0};
}

void cv_rpc_sock_peer(const struct cv_rpc_sock *s, char *out, size_t n)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    char host[64] = "?";
    int port = 0;
    if (uv_tcp_getpeername(&s->tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&ss, host, sizeof host);
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        } else {
            uv_ip4_name((struct sockaddr_in *)&ss, host, sizeof host);
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        }
    }
    snprintf(out, n, "%s:%d", host, port);
}


void cv_rpc_sock_close(struct cv_rpc_sock *s)
{
    if (s->closing) return;
    cv_rpc_sock_flush(s); /* what waits for the flusher leaves first (a reply sent just before a close) */
    if (s->closing) return; /* the flush failed and closed s */
    s->closing = 1;
    uv_close((uv_handle_t *)&s->tcp, s->on_close);
}

static void rpc__write_cb(uv_write_t *req, int status);
static int rpc__buf_reserve(struct cv_rpc_buf *b, size_t n);

/* TLS: enciphers the queued plaintext and moves the session's ciphertext into the (idle) write buffer. */
static int sock__tls_out(struct cv_rpc_sock *s)
{
    if (s->out.len) {
        int rv = cv_tls_write(s->tls, s->out.p, s->out.len);
        if (rv) return rv;
        s->out.len = 0;
    }
    size_t n = cv_tls_pending(s->tls);
    if (n == 0) return 0;
    if (rpc__buf_reserve(&s->wr, n)) return CV_ENOMEM;
    s->wr.len = cv_tls_take(s->tls, s->wr.p, n);
    return 0;
}

/* Starts a write of everything queued, unless one is in flight (its callback will come back here). */
void cv_rpc_sock_flush(struct cv_rpc_sock *s)
{
    if (s->writing || s->corked || s->closing) return;
    if (s->tls) {
        if (sock__tls_out(s)) {
            CV_WARN("rpc: TLS write failed");
            s->closing = 1;
            uv_close((uv_handle_t *)&s->tcp, s->on_close);
            return;
        }
        if (s->wr.len == 0) return;
    } else {
        if (s->out.len == 0) return;
        struct cv_rpc_buf tmp = s->wr;
        s->wr = s->out;
        s->out = tmp;
        s->out.len = 0;
    }
    uv_buf_t b = uv_buf_init((char *)s->wr.p, (unsigned)s->wr.len);
    int rv = uv_write(&s->wreq, (uv_stream_t *)&s->tcp, &b, 1, rpc__write_cb);
    if (rv) {
        CV_WARN("rpc: write failed: %s", uv_strerror(rv));
        cv_rpc_sock_close(s);
        return;
    }
    s->writing = 1;
}

static void rpc__write_cb(uv_write_t *req, int status)
{
    struct cv_rpc_sock *s = req->data;
    s->writing = 0;
    s->wr.len = 0;
    s->last_io = uv_now(s->tcp.loop);
    if (s->wr.cap > RPC__BUF_KEEP) {
        free(s->wr.p);
        s->wr = (struct cv_rpc_buf){0};
    }
    if (status < 0) {
        if (!s->closing) CV_INFO("rpc: write failed: %s", uv_strerror(status));
        cv_rpc_sock_close(s);
        return;
    }
    cv_rpc_sock_flush(s);
}

/* Room for n more bytes: doubling, from 4096 bytes (asking for at least that many keeps the first
 * allocation at 4096, as cv_array_grow would otherwise start at 8). */
static int rpc__buf_reserve(struct cv_rpc_buf *b, size_t n)
{
    size_t want = b->len + n < RPC__BUF_MIN ? RPC__BUF_MIN : b->len + n;
    return cv_array_grow((void **)&b->p, &b->cap, want, 1);
}

/* Encodes f (length prefix included) at the end of the output buffer and flushes if possible. */
int cv_rpc_sock_send(struct cv_rpc_sock *s, const Cverse__Rpc__Frame *f)
{
    if (s->closing) return CV_ECLOSED;
    size_t blen = cv_frame_size(f);
    if (blen > CV_FRAME_MAX) return CV_ETOOBIG;
    if (rpc__buf_reserve(&s->out, CV_FRAME_PREFIX + blen)) return CV_ENOMEM;
    cv_frame_pack(f, blen, s->out.p + s->out.len);
    s->out.len += CV_FRAME_PREFIX + blen;
    if (!s->deferred) cv_rpc_sock_flush(s);
    return 0;
}

static void rpc__alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct cv_rpc_sock *s = h->data;
    *buf = uv_buf_init(s->rbuf, CV_RPC_READ_CHUNK);
}

/* Queues the handshake's pending bytes (raw, before any frame) and writes them now. */
static int sock__hs_out(struct cv_rpc_sock *s)
{
    uint8_t tmp[sizeof s->hs->out];
    size_t n = cv_auth_hs_take(s->hs, tmp);
    if (n == 0) return 0;
    if (rpc__buf_reserve(&s->out, n)) return CV_ENOMEM;
    memcpy(s->out.p + s->out.len, tmp, n);
    s->out.len += n;
    cv_rpc_sock_flush(s);
    return 0;
}

static void sock__hs_fail(struct cv_rpc_sock *s, int reason)
{
    char peer[96];
    cv_rpc_sock_peer(s, peer, sizeof peer);
    cv_guard_fail(reason, "rpc", peer);
    free(s->hs);
    s->hs = NULL;
    cv_rpc_sock_close(s);
}

/* Feeds read bytes to the handshake: 1 while it goes on (or s closed), 0 once done with *p / *n left
 * for the frame reader. */
static int sock__hs_feed(struct cv_rpc_sock *s, const char **p, size_t *n)
{
    size_t used = 0;
    int rv = cv_auth_hs_feed(s->hs, *p, *n, &used);
    if (rv < 0 || sock__hs_out(s)) {
        sock__hs_fail(s, rv < 0 ? s->hs->reason : CV_AUTH_R_CLOSED);
        return 1;
    }
    *p += used;
    *n -= used;
    if (rv != CV_AUTH_HS_DONE) return 1;
    free(s->hs);
    s->hs = NULL;
    if (s->on_ready) s->on_ready(s); /* may close s */
    return s->closing;
}

int cv_rpc_sock_handshake(struct cv_rpc_sock *s, const struct cv_secret *sec, enum cv_auth_role role,
                          cv_rpc_ready_fn on_ready)
{
    s->hs = malloc(sizeof *s->hs);
    if (!s->hs) return CV_ENOMEM;
    cv_auth_hs_init(s->hs, sec, role);
    s->on_ready = on_ready;
    return sock__hs_out(s);
}

/* Plaintext bytes read: the handshake's first, then the frame reader's; each whole frame is dispatched. */
static void sock__bytes(struct cv_rpc_sock *s, const char *p, size_t n)
{
    char peer[96];
    if (s->hs && (sock__hs_feed(s, &p, &n) || n == 0)) return;
    int rv = cv_frame_reader_feed(&s->rd, p, n);
    struct cv_frame_view v;
    s->corked++;
    while (rv == 0 && !s->closing) {
        rv = cv_frame_reader_view(&s->rd, &v);
        if (rv != 1) break;
        s->on_frame(s, v.f); /* may close s (or its owner); s stays allocated until the close callback */
        cv_frame_view_done(&v);
        rv = 0;
    }
    s->corked--;
    if (rv < 0 && !s->closing) {
        cv_rpc_sock_peer(s, peer, sizeof peer);
        CV_WARN("rpc: closing connection with %s: %s", peer, cv_strerror(rv));
        cv_rpc_sock_close(s);
    }
}

/* TLS fails: the reason is kept, the alert OpenSSL queued leaves, then the socket closes. */
static void sock__tls_fail(struct cv_rpc_sock *s, const char *why)
{
    char peer[96];
    cv_rpc_sock_peer(s, peer, sizeof peer);
    snprintf(s->tls_err, sizeof s->tls_err, "%s", *why ? why : "TLS error");
    CV_DEBUG("rpc: TLS with %s failed: %s", peer, s->tls_err);
    cv_rpc_sock_close(s);
}

/* TLS: feeds the ciphertext read, then runs every deciphered byte through sock__bytes. */
static void sock__tls_in(struct cv_rpc_sock *s, const char *p, size_t n)
{
    char plain[16384];
    if (cv_tls_feed(s->tls, p, n)) {
        sock__tls_fail(s, cv_tls_error(s->tls));
        return;
    }
    if (!s->tls_up && cv_tls_ready(s->tls)) {
        s->tls_up = 1;
        if (s->on_tls) s->on_tls(s); /* may start the cluster handshake, mark a client ready, or close s */
    }
    s->corked++; /* what the frames of this read answer leaves in one write */
    while (!s->closing) {
        ssize_t got = cv_tls_read(s->tls, plain, sizeof plain);
        if (got == 0) break;
        if (got < 0) {
            if (got == CV_ECLOSED) cv_rpc_sock_close(s);
            else sock__tls_fail(s, cv_tls_error(s->tls));
            break;
        }
        sock__bytes(s, plain, (size_t)got);
    }
    s->corked--;
}

static void rpc__read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct cv_rpc_sock *s = st->data;
    if (nread == 0) return;
    if (nread < 0) {
        if (nread != UV_EOF) CV_INFO("rpc: read failed: %s", uv_strerror((int)nread));
        if (s->hs && !s->closing) sock__hs_fail(s, CV_AUTH_R_CLOSED); /* left (or refused us) midway */
        cv_rpc_sock_close(s);
        return;
    }
    s->last_io = uv_now(s->tcp.loop);
    if (s->tls) sock__tls_in(s, buf->base, (size_t)nread);
    else sock__bytes(s, buf->base, (size_t)nread);
    if (s->rd.len == s->rd.off) s->partial_since = 0; /* every frame read whole */
    else if (!s->partial_since) s->partial_since = s->last_io;
    cv_rpc_sock_flush(s);
}

int cv_rpc_sock_overdue(const struct cv_rpc_sock *s, uint64_t now, unsigned request_ms, unsigned idle_ms)
{
    if (request_ms && s->partial_since && now - s->partial_since >= request_ms) return CV_RPC_CUT_REQUEST;
    if (idle_ms && !s->writing && now - s->last_io >= idle_ms) return CV_RPC_CUT_IDLE;
    return 0;
}

int cv_rpc_sock_tls(struct cv_rpc_sock *s, struct cv_tls_ctx *ctx, const char *host, cv_rpc_ready_fn on_tls)
{
    int rv = cv_tls_new(ctx, host, &s->tls);
    if (rv) return rv;
    s->on_tls = on_tls;
    cv_rpc_sock_flush(s); /* a client's hello */
    return 0;
}

int cv_rpc_sock_start(struct cv_rpc_sock *s)
{
    uv_tcp_nodelay(&s->tcp, 1);
    cv_tcp_live((uv_stream_t *)&s->tcp); /* a partition's silent connection ends, and is dialled again */
    int rv = uv_read_start((uv_stream_t *)&s->tcp, rpc__alloc_cb, rpc__read_cb);
    return rv ? CV_EIO : 0;
}

