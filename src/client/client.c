/* Blocking client of the native protocol (include/cverse/client.h): one socket, one call at a time.
 *
 * Happy path: connect once (non-blocking connect bounded by poll), then per call: wrap the arguments in
 * their request message, encode one Frame with a fresh id (src/net/frame.c), write it, and read frames
 * until the response with that id arrives; unwrap its body. Every wait is a poll() bounded by the
 * call's deadline, so nothing blocks longer than the caller asked.
 *
 * Failure modes: connect refused/unreachable -> CV_EUNAVAIL (errno kept for the caller); deadline ->
 * CV_ETIMEDOUT; peer closed or reset -> CV_EUNAVAIL; a frame that does not decode, a response with an
 * id we did not ask for, or a body that is not the expected message -> CV_EPROTO. Any of these breaks
 * the connection (a late or unmatched frame would otherwise be read as the next call's answer): it is
 * closed and the next call redials. A remote error (Frame.status < 0) leaves the connection usable.
 *
 * TLS (cv_client_connect_tls): net/tls.h sits between the socket and the framing. Each dial runs the
 * handshake to its end before the first frame (bounded by the same deadline); frames are enciphered
 * before send and reads deciphered before the frame reader. A certificate that does not verify fails with
 * CV_EAUTH and OpenSSL's reason ("TLS with ADDR failed: certificate verify failed: ..."). */
#include "cverse/client.h"

#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cverse/error.h"
#include "net/frame.h"
#include "net/tls.h"
#include "util/addr.h"

#define CLIENT__ADDR_MAX 280 /* "[" + 256-byte host + "]:65535" */
#define CLIENT__READ_CHUNK 16384

struct cv_client {
    int fd; /* -1 while disconnected: the next call redials */
    struct sockaddr_storage ss;
    socklen_t sslen;
    char addr[CLIENT__ADDR_MAX]; /* as the user gave it, for messages */
    unsigned connect_timeout_ms; /* also bounds redials */
    uint64_t next_id;            /* ids start at 1: 0 is what an uninitialised frame carries */
    struct cv_frame_reader rd;
    /* The last call's application error (CV_EAPP), owned copies; app.code NULL after any other outcome. */
    struct cv_app_error app;
    char *app_strings; /* code, message, details_type (NUL-separated), then the details bytes */
    /* Push (cv_client_register): the id the gate gave ("" = not registered on this connection), events
     * received while waiting for a response (bounded: the oldest go, counted in dropped), drops not told. */
    char client_id[256];
    struct cv_client_push *events, **events_tail;
    size_t n_events;
    uint64_t dropped;
    char *token;  /* cv_client_set_token: sent with gate.auth on each connection before its first call */
    bool authed;  /* this connection passed gate.auth */
    struct cv_tls_ctx *tls_ctx; /* owned; NULL: plain */
    struct cv_tls *tls;         /* owned: this connection's session, while connected with TLS */
    char tls_host[256];         /* the name checked in the gate's certificate */
};

static void client__app_clear(cv_client *c)
{
    free(c->app_strings);
    c->app_strings = NULL;
    c->app = (struct cv_app_error){0};
}

/* Keeps a CV_EAPP frame's code, message and details for cv_client_app_error. */
static void client__app_keep(cv_client *c, const Cverse__Rpc__Frame *f)
{
    const char *s[3] = {f->app_code ? f->app_code : "", f->error ? f->error : "",
                        f->app_details_type ? f->app_details_type : ""};
    size_t n[3] = {strlen(s[0]) + 1, strlen(s[1]) + 1, strlen(s[2]) + 1};
    char *p = malloc(n[0] + n[1] + n[2] + f->app_details.len);
    if (!p) return; /* the error's code and message are still returned */
    memcpy(p, s[0], n[0]);
    memcpy(p + n[0], s[1], n[1]);
    memcpy(p + n[0] + n[1], s[2], n[2]);
    uint8_t *d = (uint8_t *)p + n[0] + n[1] + n[2];
    if (f->app_details.len) memcpy(d, f->app_details.data, f->app_details.len);
    c->app_strings = p;
    c->app = (struct cv_app_error){p, p + n[0], p + n[0] + n[1], f->app_details.len ? d : NULL, f->app_details.len};
}

const struct cv_app_error *cv_client_app_error(const cv_client *c)
{
    return c && c->app.code ? &c->app : NULL;
}

static uint64_t client__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Absolute monotonic deadline for a wait of ms from now; 0 = none. */
static uint64_t client__until(unsigned ms)
{
    return ms ? client__now_ms() + ms : 0;
}

/* The earlier of two deadlines, 0 meaning none. */
static uint64_t client__min_until(uint64_t a, uint64_t b)
{
    if (!a) return b;
    if (!b) return a;
    return a < b ? a : b;
}

static int client__fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int client__fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* Waits until fd is ready for events or until passes: 1 ready, 0 deadline, CV_EIO on poll failure. */
static int client__wait(int fd, short events, uint64_t until)
{
    for (;;) {
        int timeout = -1;
        if (until) {
            uint64_t now = client__now_ms();
            if (now >= until) return 0;
            timeout = until - now > INT_MAX ? INT_MAX : (int)(until - now);
        }
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, timeout);
        if (n > 0) return 1; /* POLLERR/POLLHUP too: the following I/O call reports what happened */
        if (n < 0 && errno != EINTR) return CV_EIO;
    }
}

static void client__disconnect(cv_client *c)
{
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    cv_tls_free(c->tls);
    c->tls = NULL;
    c->client_id[0] = 0; /* the gate forgets a registration with its connection */
    c->authed = false;   /* ... and its authentication */
    cv_frame_reader_free(&c->rd);
    cv_frame_reader_init(&c->rd, 0);
}

/* Completes a non-blocking connect on fd: 0, or CV_EUNAVAIL/CV_ETIMEDOUT with errno set. */
static int client__finish_connect(int fd, uint64_t until)
{
    int rv = client__wait(fd, POLLOUT, until);
    if (rv == 0) {
        errno = ETIMEDOUT;
        return CV_ETIMEDOUT;
    }
    if (rv < 0) return CV_EUNAVAIL;
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0) return CV_EUNAVAIL;
    if (soerr) {
        errno = soerr;
        return CV_EUNAVAIL;
    }
    return 0;
}

static int client__tls_start(cv_client *c, uint64_t until, char *err, size_t errlen);

/* Opens the connection to c->ss (and runs the TLS handshake if any), bounded by until. errno describes a failure. */
static int client__dial(cv_client *c, uint64_t until, char *err, size_t errlen)
{
    int fd = socket(c->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return client__fail(err, errlen, CV_EUNAVAIL, "socket: %s", strerror(errno));
    int rv = 0;
    if (connect(fd, (struct sockaddr *)&c->ss, c->sslen) != 0) {
        rv = errno == EINPROGRESS ? client__finish_connect(fd, until) : CV_EUNAVAIL;
    }
    if (rv) {
        int saved = errno;
        close(fd);
        errno = saved;
        return client__fail(err, errlen, rv, "cannot connect to %s: %s", c->addr, strerror(saved));
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* small request frames: no Nagle delay */
    c->fd = fd;
    if (c->tls_ctx && (rv = client__tls_start(c, until, err, errlen))) {
        client__disconnect(c);
        return rv;
    }
    return 0;
}

static int client__send_raw(cv_client *c, const uint8_t *buf, size_t len, uint64_t until, unsigned ms,
                            char *err, size_t errlen)
{
    while (len > 0) {
        ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return client__fail(err, errlen, CV_EUNAVAIL, "connection to %s lost: %s", c->addr,
                                strerror(errno));
        int rv = client__wait(c->fd, POLLOUT, until);
        if (rv == 0) return client__fail(err, errlen, CV_ETIMEDOUT, "could not send within %u ms", ms);
        if (rv < 0) return client__fail(err, errlen, rv, "poll: %s", strerror(errno));
    }
    return 0;
}

/* Sends the ciphertext the TLS session has for the peer. */
static int client__tls_flush(cv_client *c, uint64_t until, unsigned ms, char *err, size_t errlen)
{
    uint8_t chunk[CLIENT__READ_CHUNK];
    while (cv_tls_pending(c->tls) > 0) {
        size_t n = cv_tls_take(c->tls, chunk, sizeof chunk);
        int rv = client__send_raw(c, chunk, n, until, ms, err, errlen);
        if (rv) return rv;
    }
    return 0;
}

static int client__send_all(cv_client *c, const uint8_t *buf, size_t len, uint64_t until, unsigned ms,
                            char *err, size_t errlen)
{
    if (!c->tls) return client__send_raw(c, buf, len, until, ms, err, errlen);
    int rv = cv_tls_write(c->tls, buf, len);
    if (rv) return client__fail(err, errlen, rv, "TLS with %s failed: %s", c->addr, cv_tls_error(c->tls));
    return client__tls_flush(c, until, ms, err, errlen);
}

/* Bytes read: fed to the TLS session (whose plaintext goes to the frame reader), or to the reader itself. */
static int client__got(cv_client *c, const uint8_t *p, size_t n, char *err, size_t errlen)
{
    uint8_t plain[CLIENT__READ_CHUNK];
    if (!c->tls) {
        int rv = cv_frame_reader_feed(&c->rd, p, n);
        return rv ? client__fail(err, errlen, rv, "out of memory") : 0;
    }
    if (cv_tls_feed(c->tls, p, n))
        return client__fail(err, errlen, CV_EAUTH, "TLS with %s failed: %s", c->addr, cv_tls_error(c->tls));
    for (;;) {
        ssize_t got = cv_tls_read(c->tls, plain, sizeof plain);
        if (got == 0) return 0;
        if (got == CV_ECLOSED)
            return client__fail(err, errlen, CV_EUNAVAIL, "connection to %s closed by the peer", c->addr);
        if (got < 0)
            return client__fail(err, errlen, CV_EPROTO, "TLS with %s failed: %s", c->addr, cv_tls_error(c->tls));
        int rv = cv_frame_reader_feed(&c->rd, plain, (size_t)got);
        if (rv) return client__fail(err, errlen, rv, "out of memory");
    }
}

/* Reads what the socket has into the frame reader (through TLS if any), waiting until something came. */
static int client__read_some(cv_client *c, uint64_t until, unsigned ms, char *err, size_t errlen)
{
    uint8_t chunk[CLIENT__READ_CHUNK];
    for (;;) {
        ssize_t n = recv(c->fd, chunk, sizeof chunk, 0);
        if (n > 0) return client__got(c, chunk, (size_t)n, err, errlen);
        if (n == 0)
            return client__fail(err, errlen, CV_EUNAVAIL, "connection to %s closed by the peer", c->addr);
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return client__fail(err, errlen, CV_EUNAVAIL, "connection to %s lost: %s", c->addr,
                                strerror(errno));
        int rv = client__wait(c->fd, POLLIN, until);
        if (rv == 0) return client__fail(err, errlen, CV_ETIMEDOUT, "no response within %u ms", ms);
        if (rv < 0) return client__fail(err, errlen, rv, "poll: %s", strerror(errno));
    }
}

/* Runs the TLS handshake of a fresh connection to its end (the server's certificate verified). */
static int client__tls_start(cv_client *c, uint64_t until, char *err, size_t errlen)
{
    int rv = cv_tls_new(c->tls_ctx, c->tls_host, &c->tls);
    if (rv) return client__fail(err, errlen, rv, "TLS: %s", cv_strerror(rv));
    while (!cv_tls_ready(c->tls)) {
        if ((rv = client__tls_flush(c, until, 0, err, errlen))) return rv;
        if ((rv = client__read_some(c, until, 0, err, errlen))) {
            if (rv == CV_ETIMEDOUT) client__fail(err, errlen, rv, "no TLS handshake with %s in time", c->addr);
            else if (rv == CV_EUNAVAIL) /* a server that is not TLS closes on our hello */
                client__fail(err, errlen, rv, "TLS with %s failed: the peer closed during the handshake", c->addr);
            return rv;
        }
    }
    return client__tls_flush(c, until, 0, err, errlen); /* our Finished */
}

/* Reads until one whole frame is decoded: 0 and *out, or a negative code (connection unusable). */
static int client__recv_frame(cv_client *c, uint64_t until, unsigned ms, Cverse__Rpc__Frame **out,
                              char *err, size_t errlen)
{
    for (;;) {
        int rv = cv_frame_reader_next(&c->rd, out);
        if (rv == 1) return 0;
        if (rv == CV_ETOOBIG)
            return client__fail(err, errlen, rv, "%s sent a frame over %u bytes", c->addr, CV_FRAME_MAX);
        if (rv < 0) return client__fail(err, errlen, rv, "%s sent an undecodable frame", c->addr);
        if ((rv = client__read_some(c, until, ms, err, errlen))) return rv;
    }
}

/* ---- push events (cv_client_register) ---- */

void cv_client_push_free(struct cv_client_push *p)
{
    if (!p) return;
    free(p->type);
    free(p->payload);
    free(p->json);
    free(p);
}

/* A gate.push_event (queued, bounded) or gate.push_dropped (counted); other events are skipped. */
static void client__event(cv_client *c, const Cverse__Rpc__Frame *f)
{
    if (!strcmp(f->method, "gate.push_dropped")) {
        Cverse__Rpc__PushDropped *d = cverse__rpc__push_dropped__unpack(NULL, f->body.len, f->body.data);
        if (d) c->dropped += d->count;
        if (d) cverse__rpc__push_dropped__free_unpacked(d, NULL);
        return;
    }
    if (strcmp(f->method, "gate.push_event") != 0) return;
    Cverse__Rpc__Push *m = cverse__rpc__push__unpack(NULL, f->body.len, f->body.data);
    struct cv_client_push *p = m ? calloc(1, sizeof *p) : NULL;
    if (p && (!(p->type = strdup(m->type)) || !(p->json = strdup(m->json)) ||
              !(p->payload = malloc(m->payload.len ? m->payload.len : 1)))) {
        cv_client_push_free(p);
        p = NULL;
    }
    if (p) {
        memcpy(p->payload, m->payload.data, m->payload.len);
        p->len = m->payload.len;
        p->broadcast = m->broadcast;
    }
    if (m) cverse__rpc__push__free_unpacked(m, NULL);
    if (!p) {
        c->dropped++;
        return;
    }
    if (c->n_events >= CV_CLIENT_PUSH_QUEUE) { /* the oldest goes */
        struct cv_client_push *old = c->events;
        c->events = old->next;
        if (!c->events) c->events_tail = &c->events;
        c->n_events--;
        c->dropped++;
        cv_client_push_free(old);
    }
    if (!c->events) c->events_tail = &c->events;
    *c->events_tail = p;
    c->events_tail = &p->next;
    c->n_events++;
}

/* Reads frames until the response to id: queues push events, refuses anything else. */
static int client__await(cv_client *c, uint64_t id, uint64_t until, unsigned ms, Cverse__Rpc__Frame **out,
                         char *err, size_t errlen)
{
    for (;;) {
        Cverse__Rpc__Frame *f;
        int rv = client__recv_frame(c, until, ms, &f, err, errlen);
        if (rv) return rv;
        if (f->kind == CVERSE__RPC__KIND__KIND_EVENT) {
            client__event(c, f);
            cverse__rpc__frame__free_unpacked(f, NULL);
            continue;
        }
        if (f->kind != CVERSE__RPC__KIND__KIND_RESPONSE || f->id != id) {
            rv = client__fail(err, errlen, CV_EPROTO, "%s answered request %llu with a %s frame for id %llu",
                              c->addr, (unsigned long long)id,
                              f->kind == CVERSE__RPC__KIND__KIND_RESPONSE ? "response" : "non-response",
                              (unsigned long long)f->id);
            cverse__rpc__frame__free_unpacked(f, NULL);
            return rv;
        }
        *out = f;
        return 0;
    }
}

/* Sends one request and waits for its response frame. Returns the response's status (0, or the remote
 * CV_E* code with err filled) and *rf (caller frees), or a local negative code with *rf NULL. */
static int client__roundtrip(cv_client *c, const char *method, const void *body, size_t len,
                             unsigned deadline_ms, Cverse__Rpc__Frame **rf, char *err, size_t errlen);

/* gate.auth with the token, on a connection that has not passed it yet (docs/protocol.md). */
static int client__login(cv_client *c, unsigned deadline_ms, char *err, size_t errlen)
{
    Cverse__Rpc__AuthRequest a = CVERSE__RPC__AUTH_REQUEST__INIT;
    a.token = c->token;
    size_t n = cverse__rpc__auth_request__get_packed_size(&a);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) return client__fail(err, errlen, CV_ENOMEM, "out of memory");
    cverse__rpc__auth_request__pack(&a, buf);
    Cverse__Rpc__Frame *rf;
    int rv = client__roundtrip(c, "gate.auth", buf, n, deadline_ms, &rf, err, errlen);
    free(buf);
    if (rf) cverse__rpc__frame__free_unpacked(rf, NULL);
    c->authed = rv == 0;
    return rv;
}

/* Whether the peer closed the connection in order while we were not calling (the gate's
 * idle_timeout_ms): nothing left to read but its end. The next call then redials at once instead of
 * failing on a connection the gate left on purpose. A reset or an error is not this: that call fails. */
static bool client__peer_gone(cv_client *c)
{
    struct pollfd p = {.fd = c->fd, .events = POLLIN | POLLRDHUP};
    uint8_t b;
    if (poll(&p, 1, 0) <= 0 || (p.revents & (POLLERR | POLLNVAL))) return false;
    return recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

static int client__roundtrip(cv_client *c, const char *method, const void *body, size_t len,
                             unsigned deadline_ms, Cverse__Rpc__Frame **rf, char *err, size_t errlen)
{
    *rf = NULL;
    if (c->fd >= 0 && client__peer_gone(c)) client__disconnect(c);
    if (c->token && !c->authed && method && strcmp(method, "gate.auth") != 0) {
        int lrv = client__login(c, deadline_ms, err, errlen);
        if (lrv) return lrv;
    }
    client__app_clear(c);
    if (!method || (len && !body)) return client__fail(err, errlen, CV_EINVAL, "invalid argument");
    /* Wait a grace period past the deadline we send, so the peer's own verdict can still arrive. */
    unsigned ms = deadline_ms == 0                          ? 0
                  : deadline_ms > UINT_MAX - CV_CLIENT_GRACE_MS ? UINT_MAX
                                                                : deadline_ms + CV_CLIENT_GRACE_MS;
    uint64_t until = client__until(ms);
    int rv;
    if (c->fd < 0) {
        rv = client__dial(c, client__min_until(until, client__until(c->connect_timeout_ms)), err, errlen);
        if (rv) return rv;
    }
    Cverse__Rpc__Frame req = CVERSE__RPC__FRAME__INIT;
    req.id = c->next_id++;
    req.kind = CVERSE__RPC__KIND__KIND_REQUEST;
    req.method = (char *)method;
    req.body.data = (uint8_t *)body;
    req.body.len = len;
    req.deadline_ms = deadline_ms;
    uint8_t *buf;
    size_t blen;
    rv = cv_frame_encode(&req, &buf, &blen);
    if (rv) return client__fail(err, errlen, rv, "request too large to encode (%zu bytes)", len);
    rv = client__send_all(c, buf, blen, until, ms, err, errlen);
    free(buf);
    if (!rv) rv = client__await(c, req.id, until, ms, rf, err, errlen);
    if (rv) {
        client__disconnect(c);
        return rv;
    }
    int status = (*rf)->status;
    if (status > 0) {
        cverse__rpc__frame__free_unpacked(*rf, NULL);
        *rf = NULL;
        client__disconnect(c); /* a peer that sends nonsense statuses is not trusted for the next call */
        return client__fail(err, errlen, CV_EPROTO, "%s answered with invalid status %d", c->addr, status);
    }
    if (status < 0) {
        const char *msg = (*rf)->error && *(*rf)->error ? (*rf)->error : cv_strerror(status);
        client__fail(err, errlen, status, "%s", msg);
    }
    if (status == CV_EAPP) client__app_keep(c, *rf);
    return status;
}

int cv_client_connect(const char *hostport, unsigned timeout_ms, cv_client **out)
{
    return cv_client_connect_tls(hostport, timeout_ms, NULL, NULL, 0, out);
}

/* The TLS context and the name to check: tls->host, else hostport's host. */
static int client__tls_init(cv_client *c, const struct cv_client_tls *tls, char *err, size_t errlen)
{
    uint16_t port;
    if (tls->host) snprintf(c->tls_host, sizeof c->tls_host, "%s", tls->host);
    else if (cv_addr_split(c->addr, c->tls_host, sizeof c->tls_host, &port)) return CV_EINVAL;
    char why[256] = "";
    int rv = cv_tls_ctx_client(tls->ca_file, why, sizeof why, &c->tls_ctx);
    return rv ? client__fail(err, errlen, rv, "TLS: %s", why) : 0;
}

int cv_client_connect_tls(const char *hostport, unsigned timeout_ms, const struct cv_client_tls *tls, char *err,
                          size_t errlen, cv_client **out)
{
    *out = NULL;
    if (!hostport || strlen(hostport) >= CLIENT__ADDR_MAX) return CV_EINVAL;
    cv_client *c = calloc(1, sizeof *c);
    if (!c) return CV_ENOMEM;
    c->fd = -1;
    c->next_id = 1;
    c->connect_timeout_ms = timeout_ms;
    strcpy(c->addr, hostport);
    cv_frame_reader_init(&c->rd, 0);
    int rv = cv_addr_resolve(hostport, &c->ss);
    if (rv) {
        rv = CV_EINVAL;
        goto err_after_alloc;
    }
    c->sslen = c->ss.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    if (tls && (rv = client__tls_init(c, tls, err, errlen))) goto err_after_alloc;
    rv = client__dial(c, client__until(timeout_ms), err, errlen);
    if (rv) goto err_after_alloc;
    *out = c;
    return 0;

err_after_alloc:;
    int saved = errno;
    cv_client_close(c);
    errno = saved;
    return rv;
}

void cv_client_close(cv_client *c)
{
    if (!c) return;
    if (c->fd >= 0) close(c->fd);
    cv_tls_free(c->tls);
    cv_tls_ctx_free(c->tls_ctx);
    cv_frame_reader_free(&c->rd);
    client__app_clear(c);
    free(c->token);
    for (struct cv_client_push *p = c->events, *next; p; p = next) {
        next = p->next;
        cv_client_push_free(p);
    }
    free(c);
}

int cv_client_rpc(cv_client *c, const char *method, const void *body, size_t len, uint8_t **out,
                  size_t *outlen, unsigned deadline_ms, char *err, size_t errlen)
{
    Cverse__Rpc__Frame *rf;
    *out = NULL;
    *outlen = 0;
    int rv = client__roundtrip(c, method, body, len, deadline_ms, &rf, err, errlen);
    if (!rf) return rv;
    if (rf->body.len) {
        *out = malloc(rf->body.len);
        if (*out) {
            memcpy(*out, rf->body.data, rf->body.len);
            *outlen = rf->body.len;
        } else if (rv == 0) {
            rv = client__fail(err, errlen, CV_ENOMEM, "out of memory");
        }
    }
    cverse__rpc__frame__free_unpacked(rf, NULL);
    return rv;
}

/* Serializes m into a malloc'ed buffer (NULL when empty). */
static int client__pack(const ProtobufCMessage *m, uint8_t **buf, size_t *len)
{
    *buf = NULL;
    *len = m ? protobuf_c_message_get_packed_size(m) : 0;
    if (*len == 0) return 0;
    *buf = malloc(*len);
    if (!*buf) return CV_ENOMEM;
    protobuf_c_message_pack(m, *buf);
    return 0;
}

/* One request whose body is message req and whose response body must decode with resp_desc. */
static int client__invoke(cv_client *c, const char *method, const ProtobufCMessage *req,
                          const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                          unsigned deadline_ms, char *err, size_t errlen)
{
    uint8_t *body;
    size_t len;
    Cverse__Rpc__Frame *rf;
    *resp = NULL;
    if (client__pack(req, &body, &len)) return client__fail(err, errlen, CV_ENOMEM, "out of memory");
    int rv = client__roundtrip(c, method, body, len, deadline_ms, &rf, err, errlen);
    free(body);
    if (rv) goto out;
    *resp = protobuf_c_message_unpack(resp_desc, NULL, rf->body.len, rf->body.data);
    if (!*resp)
        rv = client__fail(err, errlen, CV_EPROTO, "the answer to %s is not a valid %s", method,
                          resp_desc->name);
out:
    if (rf) cverse__rpc__frame__free_unpacked(rf, NULL);
    return rv;
}

static int client__bad_args(const char *type, const char *id, char *err, size_t errlen)
{
    if (type && *type && id && *id) return 0;
    return client__fail(err, errlen, CV_EINVAL, "object type and id must not be empty");
}

/* "gate.call" with a prepared CallRequest; *out is the decoded CallResponse. */
static int client__gate_call(cv_client *c, Cverse__Rpc__CallRequest *cr, Cverse__Rpc__CallResponse **out,
                             unsigned deadline_ms, char *err, size_t errlen)
{
    *out = NULL;
    int rv = client__bad_args(cr->type, cr->id, err, errlen);
    if (rv) return rv;
    if (!cr->method || !*cr->method) return client__fail(err, errlen, CV_EINVAL, "method must not be empty");
    ProtobufCMessage *m;
    rv = client__invoke(c, "gate.call", &cr->base, &cverse__rpc__call_response__descriptor, &m, deadline_ms,
                        err, errlen);
    *out = (Cverse__Rpc__CallResponse *)m;
    return rv;
}

int cv_client_call_raw(cv_client *c, const char *type, const char *id, const char *method, const void *req,
                       size_t req_len, uint8_t **resp, size_t *resp_len, unsigned deadline_ms, char *err,
                       size_t errlen)
{
    return cv_client_call_raw_id(c, type, id, method, req, req_len, NULL, resp, resp_len, deadline_ms, err, errlen);
}

int cv_client_call_raw_id(cv_client *c, const char *type, const char *id, const char *method, const void *req,
                          size_t req_len, const char *call_id, uint8_t **resp, size_t *resp_len,
                          unsigned deadline_ms, char *err, size_t errlen)
{
    Cverse__Rpc__CallRequest cr = CVERSE__RPC__CALL_REQUEST__INIT;
    cr.call_id = (char *)(call_id ? call_id : "");
    cr.client_id = c->client_id;
    Cverse__Rpc__CallResponse *out;
    *resp = NULL;
    *resp_len = 0;
    if (req_len && !req) return client__fail(err, errlen, CV_EINVAL, "request bytes missing");
    cr.type = (char *)type;
    cr.id = (char *)id;
    cr.method = (char *)method;
    cr.request.data = (uint8_t *)req;
    cr.request.len = req_len;
    int rv = client__gate_call(c, &cr, &out, deadline_ms, err, errlen);
    if (rv) return rv;
    if (out->response.len) {
        *resp = malloc(out->response.len);
        if (*resp) {
            memcpy(*resp, out->response.data, out->response.len);
            *resp_len = out->response.len;
        } else {
            rv = client__fail(err, errlen, CV_ENOMEM, "out of memory");
        }
    }
    cverse__rpc__call_response__free_unpacked(out, NULL);
    return rv;
}

int cv_client_call(cv_client *c, const char *type, const char *id, const char *method,
                   const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
                   ProtobufCMessage **resp, unsigned deadline_ms, char *err, size_t errlen)
{
    uint8_t *body, *rbody;
    size_t len, rlen;
    if (resp) *resp = NULL;
    if (!resp != !resp_desc)
        return client__fail(err, errlen, CV_EINVAL, "resp and resp_desc must both be given or both NULL");
    if (client__pack(req, &body, &len)) return client__fail(err, errlen, CV_ENOMEM, "out of memory");
    int rv = cv_client_call_raw(c, type, id, method, body, len, &rbody, &rlen, deadline_ms, err, errlen);
    free(body);
    if (rv || !resp) goto out;
    *resp = protobuf_c_message_unpack(resp_desc, NULL, rlen, rbody);
    if (!*resp)
        rv = client__fail(err, errlen, CV_EPROTO, "the response of %s.%s is not a valid %s", type, method,
                          resp_desc->name);
out:
    free(rbody);
    return rv;
}

int cv_client_call_json(cv_client *c, const char *type, const char *id, const char *method,
                        const char *json_req, char **json_resp, unsigned deadline_ms, char *err,
                        size_t errlen)
{
    return cv_client_call_json_id(c, type, id, method, json_req, NULL, json_resp, deadline_ms, err, errlen);
}

int cv_client_call_json_id(cv_client *c, const char *type, const char *id, const char *method,
                           const char *json_req, const char *call_id, char **json_resp, unsigned deadline_ms,
                           char *err, size_t errlen)
{
    Cverse__Rpc__CallRequest cr = CVERSE__RPC__CALL_REQUEST__INIT;
    cr.call_id = (char *)(call_id ? call_id : "");
    cr.client_id = c->client_id;
    Cverse__Rpc__CallResponse *out;
    *json_resp = NULL;
    cr.type = (char *)type;
    cr.id = (char *)id;
    cr.method = (char *)method;
    /* A non-empty request_json is what tells the gate to map JSON both ways. */
    cr.request_json = (char *)(json_req && *json_req ? json_req : "{}");
    int rv = client__gate_call(c, &cr, &out, deadline_ms, err, errlen);
    if (rv) return rv;
    /* An empty message is "{}" in proto3 JSON; accept a gate that sends nothing for it. */
    *json_resp = strdup(out->response_json && *out->response_json ? out->response_json : "{}");
    if (!*json_resp) rv = client__fail(err, errlen, CV_ENOMEM, "out of memory");
    cverse__rpc__call_response__free_unpacked(out, NULL);
    return rv;
}

/* gate.create / gate.delete: a prepared request for (type, id) whose answer carries nothing we return. */
static int client__object_op(cv_client *c, const char *method, const ProtobufCMessage *req,
                             const ProtobufCMessageDescriptor *resp_desc, const char *type, const char *id,
                             unsigned deadline_ms, char *err, size_t errlen)
{
    ProtobufCMessage *resp;
    int rv = client__bad_args(type, id, err, errlen);
    if (rv) return rv;
    rv = client__invoke(c, method, req, resp_desc, &resp, deadline_ms, err, errlen);
    if (resp) protobuf_c_message_free_unpacked(resp, NULL);
    return rv;
}

int cv_client_create(cv_client *c, const char *type, const char *id, unsigned deadline_ms, char *err,
                     size_t errlen)
{
    Cverse__Rpc__CreateRequest req = CVERSE__RPC__CREATE_REQUEST__INIT;
    req.type = (char *)type;
    req.id = (char *)id;
    return client__object_op(c, "gate.create", &req.base, &cverse__rpc__create_response__descriptor, type, id,
                             deadline_ms, err, errlen);
}

int cv_client_delete(cv_client *c, const char *type, const char *id, unsigned deadline_ms, char *err,
                     size_t errlen)
{
    Cverse__Rpc__DeleteRequest req = CVERSE__RPC__DELETE_REQUEST__INIT;
    req.type = (char *)type;
    req.id = (char *)id;
    return client__object_op(c, "gate.delete", &req.base, &cverse__rpc__delete_response__descriptor, type, id,
                             deadline_ms, err, errlen);
}

int cv_client_status(cv_client *c, Cverse__Rpc__StatusResponse **out, unsigned deadline_ms, char *err,
                     size_t errlen)
{
    Cverse__Rpc__StatusRequest req = CVERSE__RPC__STATUS_REQUEST__INIT;
    ProtobufCMessage *resp;
    int rv = client__invoke(c, "gate.status", &req.base, &cverse__rpc__status_response__descriptor, &resp,
                            deadline_ms, err, errlen);
    *out = (Cverse__Rpc__StatusResponse *)resp;
    return rv;
}

int cv_client_register(cv_client *c, char *client_id, size_t len, unsigned deadline_ms, char *err, size_t errlen)
{
    if (!c) return client__fail(err, errlen, CV_EINVAL, "invalid argument");
    Cverse__Rpc__RegisterRequest req = CVERSE__RPC__REGISTER_REQUEST__INIT;
    ProtobufCMessage *m;
    int rv = client__invoke(c, "gate.register", &req.base, &cverse__rpc__register_response__descriptor, &m,
                            deadline_ms, err, errlen);
    if (rv) return rv;
    Cverse__Rpc__RegisterResponse *r = (Cverse__Rpc__RegisterResponse *)m;
    snprintf(c->client_id, sizeof c->client_id, "%s", r->client_id);
    if (client_id && len) snprintf(client_id, len, "%s", r->client_id);
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}

const char *cv_client_id(const cv_client *c)
{
    return c ? c->client_id : "";
}

int cv_client_next_push(cv_client *c, struct cv_client_push **out, unsigned timeout_ms, char *err, size_t errlen)
{
    *out = NULL;
    if (!c->events && !c->client_id[0])
        return client__fail(err, errlen, CV_EUNAVAIL, "not registered (cv_client_register) on this connection");
    uint64_t until = client__until(timeout_ms);
    while (!c->events) {
        Cverse__Rpc__Frame *f;
        int rv = client__recv_frame(c, until, timeout_ms, &f, err, errlen);
        if (rv) {
            if (rv != CV_ETIMEDOUT) client__disconnect(c);
            return rv;
        }
        bool event = f->kind == CVERSE__RPC__KIND__KIND_EVENT;
        if (event) client__event(c, f);
        cverse__rpc__frame__free_unpacked(f, NULL);
        if (!event) {
            client__disconnect(c);
            return client__fail(err, errlen, CV_EPROTO, "%s sent an unexpected frame", c->addr);
        }
    }
    struct cv_client_push *p = c->events;
    c->events = p->next;
    c->n_events--;
    p->next = NULL;
    p->dropped = c->dropped;
    c->dropped = 0;
    *out = p;
    return 0;
}

int cv_client_set_token(cv_client *c, const char *token)
{
    if (!c) return CV_EINVAL;
    char *t = token && *token ? strdup(token) : NULL;
    if (token && *token && !t) return CV_ENOMEM;
    free(c->token);
    c->token = t;
    c->authed = false; /* the next call authenticates again, with this token */
    return 0;
}
