/* Request/response RPC over libuv TCP with the native framing (frame.h).
 *
 * Happy path, server: listen -> accept -> each connection feeds a frame reader; KIND_REQUEST frames go
 * to on_request; cv_rpc_respond encodes the answer into the connection's output buffer. Client: the
 * first cv_rpc_call dials; calls are kept in an id -> call hash map (uthash) and, when they have a
 * deadline, in a min-heap driving one uv_timer; responses are matched by id; KIND_EVENT frames go to
 * on_event. Both sides share rpc__sock: frames queued while a write is in flight (or while a read
 * callback is still dispatching) are coalesced into the next single uv_write; frames sent from anywhere
 * else (a timer, the object runtime's pump, another connection's callback) wait for the owner's
 * uv_prepare "flusher", which runs once per loop iteration just before the loop polls, so every
 * connection gets at most one write per loop iteration (no other uv_prepare handle sends frames).
 *
 * Guard (cv_rpc_server_set_guard, cv_rpc_client_opts.guard; auth/guard.h): a guarded server closes a peer
 * that protected mode refuses at accept, and with a secret runs the cluster handshake (net/rpcsock.c)
 * before reading any request, closing connections that have not passed it within CV_RPC_HANDSHAKE_MS (a
 * sweep timer); a guarded client counts as connected -- writes its calls, reports on_state(1) -- only
 * once the server proved itself, and redials one that does not within CV_RPC_HANDSHAKE_MS.
 *
 * TLS (cv_rpc_server_set_tls, cv_rpc_client_opts.tls; net/rpcsock.c does the transform): every connection
 * runs the TLS handshake first, the cluster handshake (if any) inside it. A client whose TLS fails (the
 * certificate does not verify) fails all its calls with CV_EAUTH and the reason instead of waiting.
 * Limits (cv_rpc_server_set_limits, a client-facing port): the connection bound is checked at accept;
 * the sweep timer cuts a stalled partial frame and an idle connection (one holding no reference: no
 * pending answer, no push registration); each request is charged to its client's token bucket before
 * on_request and answered CV_EBUSY when it is empty.
 *
 * Failure modes: a malformed or oversized frame closes that connection with a log line. A server
 * connection is reference counted, so a handler may answer after the peer left: cv_rpc_respond then
 * returns CV_ECLOSED. On the client, losing the connection fails every call already written with
 * CV_EUNAVAIL (the peer may or may not have executed it), calls not yet written keep waiting for the
 * reconnect (every reconnect_ms; an attempt without an answer is abandoned after CV_TCP_CONNECT_MS, so a
 * healed partition is noticed at the next attempt, not at TCP's next SYN retransmission) until their
 * deadline (CV_ETIMEDOUT). Failures are reported from libuv callbacks only (the socket's close
 * callback), never from inside cv_rpc_call. An application error (CV_EAPP) is a body in the API and
 * Frame fields on the wire (core/apperr.h): a malformed one from a peer completes the call as CV_EPROTO. Memory is freed only after every uv handle's close callback
 * ran, then the user's close callback runs. */
#include "net/rpc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HASH_NONFATAL_OOM 1
#include <uthash.h>

#include "core/apperr.h"
#include "cverse/error.h"
#include "auth/guard.h"
#include "net/frame.h"
#include "net/rpcsock.h"
#include "net/tcplive.h"
#include "util/addr.h"
#include "util/buf.h"
#include "util/log.h"

#define RPC__BACKLOG 128
#define RPC__RECONNECT_MS 100
#define CV_RPC_HANDSHAKE_MS 3000 /* a client's bound on the handshake after the connect */

static const uint8_t rpc__empty[1];

/* Binds and listens; returns the bound port (> 0) or CV_EINVAL / CV_EIO. */
static int rpc__listen(uv_tcp_t *tcp, const char *what, const char *addr, uv_connection_cb cb)
{
    struct sockaddr_storage ss;
    if (!addr || cv_addr_resolve_listen(addr, &ss)) {
        CV_ERROR("%s: bad listen address '%s'", what, addr ? addr : "(null)");
        return CV_EINVAL;
    }
    int rv = uv_tcp_bind(tcp, (struct sockaddr *)&ss, 0);
    if (!rv) rv = uv_listen((uv_stream_t *)tcp, RPC__BACKLOG, cb);
    if (rv) {
        CV_ERROR("%s: cannot listen on %s: %s", what, addr, uv_strerror(rv));
        return CV_EIO;
    }
    int len = sizeof ss;
    if (uv_tcp_getsockname(tcp, (struct sockaddr *)&ss, &len)) return CV_EIO;
    return ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                    : ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* ---------------------------------------------------------------------------------------------------
 * Server. */

struct cv_rpc_conn {
    struct cv_rpc_sock s;          /* first member */
    struct cv_rpc_server *srv;   /* NULL once the connection is closed */
    unsigned refs;               /* 1 for the open socket + one per cv_rpc_conn_ref */
    uint64_t accepted;           /* uv_now at accept: the handshake's deadline counts from it */
    struct cv_rpc_conn *prev, *next;
};

struct cv_rpc_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_prepare_t flusher;        /* writes every connection's queued frames before the loop polls */
    uv_timer_t sweep;            /* with a secret: closes connections stalled in the handshake */
    cv_rpc_request_cb on_request;
    cv_rpc_conn_close_cb on_conn_close;
    void *data;
    const struct cv_guard *guard; /* borrowed; NULL: any peer, no handshake */
    struct cv_tls_ctx *tls;      /* borrowed; NULL: plain */
    struct cv_rpc_limits lim;    /* cv_rpc_server_set_limits; zero: none */
    struct cv_ratelimit *rate;   /* owned, with lim.rate */
    struct cv_rpc_server_stats stats;
    struct cv_rpc_conn *conns;   /* connections whose close callback has not run yet */
    int port;                    /* > 0 once listening */
    int closing, listener_closed, flusher_closed, sweep_closed;
    cv_rpc_server_close_cb close_cb;
    char rbuf[CV_RPC_READ_CHUNK];
};

static void srv__flush_cb(uv_prepare_t *h)
{
    struct cv_rpc_server *srv = h->data;
    for (struct cv_rpc_conn *c = srv->conns; c; c = c->next) cv_rpc_sock_flush(&c->s);
}

int cv_rpc_server_init(uv_loop_t *loop, cv_rpc_request_cb on_request, cv_rpc_conn_close_cb on_conn_close,
                       void *data, struct cv_rpc_server **out)
{
    if (!loop || !on_request || !out) return CV_EINVAL;
    struct cv_rpc_server *srv = calloc(1, sizeof *srv);
    if (!srv) return CV_ENOMEM;
    if (uv_tcp_init(loop, &srv->listener)) {
        free(srv);
        return CV_EIO;
    }
    srv->listener.data = srv;
    uv_prepare_init(loop, &srv->flusher);
    srv->flusher.data = srv;
    uv_prepare_start(&srv->flusher, srv__flush_cb);
    uv_unref((uv_handle_t *)&srv->flusher); /* it never keeps a loop alive on its own */
    uv_timer_init(loop, &srv->sweep);
    srv->sweep.data = srv;
    uv_unref((uv_handle_t *)&srv->sweep);
    srv->loop = loop;
    srv->on_request = on_request;
    srv->on_conn_close = on_conn_close;
    srv->data = data;
    *out = srv;
    return 0;
}

/* The rate limit (lim.rate): 0 when the request's client has a token, else the ms until it will. */
static uint64_t srv__rate_wait(struct cv_rpc_server *srv, struct cv_rpc_conn *conn)
{
    char key[300];
    cv_rpc_sock_peer(&conn->s, key, sizeof key);
    char *colon = strrchr(key, ':'); /* the IP address: every connection of a host is one client */
    if (colon) *colon = '\0';
    if (srv->lim.rate_key) srv->lim.rate_key(srv->data, conn, key, sizeof key);
    return cv_ratelimit_take(srv->rate, key, uv_now(srv->loop));
}

static void srv__on_frame(struct cv_rpc_sock *s, Cverse__Rpc__Frame *f)
{
    struct cv_rpc_conn *conn = (struct cv_rpc_conn *)s;
    if (f->kind != CVERSE__RPC__KIND__KIND_REQUEST) {
        CV_DEBUG("rpc: server ignores a frame of kind %d", (int)f->kind);
        return;
    }
    uint64_t wait = conn->srv->rate ? srv__rate_wait(conn->srv, conn) : 0;
    if (wait) {
        char msg[96];
        conn->srv->stats.rate_limited++;
        snprintf(msg, sizeof msg, "rate limit exceeded: retry in %llu ms", (unsigned long long)wait);
        cv_rpc_respond(conn, f->id, CV_EBUSY, msg, NULL, 0);
        return;
    }
    const uint8_t *body = f->body.len ? f->body.data : rpc__empty;
    conn->srv->on_request(conn->srv->data, conn, f->id, f->method, body, f->body.len, f->deadline_ms);
}

static void srv__maybe_finish(struct cv_rpc_server *srv)
{
    if (!srv->closing || !srv->listener_closed || !srv->flusher_closed || !srv->sweep_closed || srv->conns) return;
    if (srv->close_cb) srv->close_cb(srv->data);
    cv_ratelimit_free(srv->rate);
    free(srv);
}

static void srv__conn_closed(uv_handle_t *h)
{
    struct cv_rpc_conn *conn = h->data;
    struct cv_rpc_server *srv = conn->srv;
    if (conn->prev) conn->prev->next = conn->next;
    else srv->conns = conn->next;
    if (conn->next) conn->next->prev = conn->prev;
    conn->prev = conn->next = NULL;
    if (conn->s.tls && (conn->s.tls_err[0] || !conn->s.tls_up)) srv->stats.tls_failures++; /* or left midway */
    srv->stats.connections--;
    cv_rpc_sock_free(&conn->s);
    if (srv->on_conn_close) srv->on_conn_close(srv->data, conn);
    conn->srv = NULL;
    cv_rpc_conn_unref(conn);
    srv__maybe_finish(srv);
}

/* The accepted connection passes the server's guard: protected mode checks the peer's address now; with
 * a secret, the handshake starts (srv__on_frame sees frames only once it passed). */
static void srv__guard(struct cv_rpc_server *srv, struct cv_rpc_conn *conn)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (!srv->guard) return;
    if (uv_tcp_getpeername(&conn->s.tcp, (struct sockaddr *)&ss, &len) ||
        !cv_guard_admit(srv->guard, (struct sockaddr *)&ss, "rpc")) {
        cv_rpc_sock_close(&conn->s);
        return;
    }
    if (srv->guard->secret && cv_rpc_sock_handshake(&conn->s, srv->guard->secret, CV_AUTH_SERVER, NULL))
        cv_rpc_sock_close(&conn->s);
}

static void srv__on_connection(uv_stream_t *l, int status)
{
    struct cv_rpc_server *srv = l->data;
    if (status < 0) {
        CV_WARN("rpc: accept failed: %s", uv_strerror(status));
        return;
    }
    struct cv_rpc_conn *conn = calloc(1, sizeof *conn);
    if (!conn || cv_rpc_sock_init(srv->loop, &conn->s, NULL, srv->rbuf, srv__on_frame, srv__conn_closed)) {
        CV_ERROR("rpc: cannot allocate a connection");
        free(conn);
        return;
    }
    conn->s.deferred = 1;
    conn->srv = srv;
    conn->refs = 1;
    conn->accepted = uv_now(srv->loop);
    conn->next = srv->conns;
    if (srv->conns) srv->conns->prev = conn;
    srv->conns = conn;
    srv->stats.connections++; /* until its close callback */
    if (uv_accept(l, (uv_stream_t *)&conn->s.tcp) || cv_rpc_sock_start(&conn->s)) {
        CV_WARN("rpc: cannot accept a connection");
        cv_rpc_sock_close(&conn->s);
        return;
    }
    if (srv->lim.max_connections && srv->stats.connections > srv->lim.max_connections) {
        srv->stats.refused++; /* accepted and closed at once: the backlog does not fill with it */
        cv_rpc_sock_close(&conn->s);
        return;
    }
    if (srv->tls && cv_rpc_sock_tls(&conn->s, srv->tls, NULL, NULL)) {
        cv_rpc_sock_close(&conn->s);
        return;
    }
    srv__guard(srv, conn);
}

/* A peer that connected and stalls before proving itself (or never speaks) does not keep its connection. */
static void srv__sweep_cb(uv_timer_t *t)
{
    struct cv_rpc_server *srv = t->data;
    uint64_t now = uv_now(srv->loop);
    for (struct cv_rpc_conn *c = srv->conns; c; c = c->next) {
        int why = c->s.closing || c->s.hs ? 0 : cv_rpc_sock_overdue(&c->s, now, srv->lim.request_timeout_ms,
                                                                     c->refs > 1 ? 0 : srv->lim.idle_timeout_ms);
        if (why) {
            if (why == CV_RPC_CUT_REQUEST) srv->stats.request_timeouts++;
            else srv->stats.idle_closed++;
            cv_rpc_sock_close(&c->s);
            continue;
        }
        int tls_stalled = c->s.tls && !c->s.tls_up;
        if ((!c->s.hs && !tls_stalled) || c->s.closing || now - c->accepted < CV_RPC_HANDSHAKE_MS) continue;
        char peer[96];
        cv_rpc_sock_peer(&c->s, peer, sizeof peer);
        if (tls_stalled) snprintf(c->s.tls_err, sizeof c->s.tls_err, "no TLS handshake in time");
        else cv_guard_fail(CV_AUTH_R_CLOSED, "rpc", peer);
        cv_rpc_sock_close(&c->s);
    }
    if (srv->rate) cv_ratelimit_sweep(srv->rate, now);
}

void cv_rpc_server_set_guard(struct cv_rpc_server *srv, const struct cv_guard *g)
{
    srv->guard = g;
    if (g && g->secret && !uv_is_active((uv_handle_t *)&srv->sweep)) uv_timer_start(&srv->sweep, srv__sweep_cb, CV_RPC_HANDSHAKE_MS / 2, CV_RPC_HANDSHAKE_MS / 2);
}

void cv_rpc_server_set_tls(struct cv_rpc_server *srv, struct cv_tls_ctx *ctx)
{
    srv->tls = ctx;
    if (ctx && !uv_is_active((uv_handle_t *)&srv->sweep)) uv_timer_start(&srv->sweep, srv__sweep_cb, CV_RPC_HANDSHAKE_MS / 2, CV_RPC_HANDSHAKE_MS / 2);
}

int cv_rpc_server_set_limits(struct cv_rpc_server *srv, const struct cv_rpc_limits *l)
{
    srv->lim = *l;
    if (l->rate.per_sec && !srv->lim.rate.burst) srv->lim.rate.burst = l->rate.per_sec;
    if (l->rate.per_sec && cv_ratelimit_new(&srv->lim.rate, 0, &srv->rate)) return CV_ENOMEM;
    uint64_t ms = CV_RPC_HANDSHAKE_MS / 2; /* the sweep: a quarter of the shortest timeout, 5 ms at least */
    if (l->request_timeout_ms && l->request_timeout_ms / 4 < ms) ms = l->request_timeout_ms / 4;
    if (l->idle_timeout_ms && l->idle_timeout_ms / 4 < ms) ms = l->idle_timeout_ms / 4;
    if (ms < 5) ms = 5;
    if (l->request_timeout_ms || l->idle_timeout_ms || l->rate.per_sec) uv_timer_start(&srv->sweep, srv__sweep_cb, ms, ms);
    return 0;
}

void cv_rpc_server_stats(const struct cv_rpc_server *srv, struct cv_rpc_server_stats *out)
{
    *out = srv->stats;
}

int cv_rpc_server_listen(struct cv_rpc_server *srv, const char *addr)
{
    if (srv->closing || srv->port > 0) return CV_EINVAL;
    int rv = rpc__listen(&srv->listener, "rpc", addr, srv__on_connection);
    if (rv < 0) return rv;
    srv->port = rv;
    return 0;
}

int cv_rpc_server_port(const struct cv_rpc_server *srv)
{
    return srv->port > 0 ? srv->port : CV_EINVAL;
}

static void srv__listener_closed(uv_handle_t *h)
{
    struct cv_rpc_server *srv = h->data;
    if (h == (uv_handle_t *)&srv->flusher) srv->flusher_closed = 1;
    else if (h == (uv_handle_t *)&srv->sweep) srv->sweep_closed = 1;
    else srv->listener_closed = 1;
    srv__maybe_finish(srv);
}

void cv_rpc_server_close(struct cv_rpc_server *srv, cv_rpc_server_close_cb cb)
{
    if (srv->closing) return;
    srv->closing = 1;
    srv->close_cb = cb;
    uv_close((uv_handle_t *)&srv->listener, srv__listener_closed);
    uv_close((uv_handle_t *)&srv->flusher, srv__listener_closed);
    uv_close((uv_handle_t *)&srv->sweep, srv__listener_closed);
    for (struct cv_rpc_conn *c = srv->conns; c; c = c->next) cv_rpc_sock_close(&c->s);
}

int cv_rpc_respond(struct cv_rpc_conn *conn, uint64_t id, int status, const char *error, const void *body,
                   size_t len)
{
    if (conn->s.closing) return CV_ECLOSED;
    Cverse__Rpc__Frame f = CVERSE__RPC__FRAME__INIT;
    f.id = id;
    f.kind = CVERSE__RPC__KIND__KIND_RESPONSE;
    f.status = status;
    f.error = (char *)(error ? error : "");
    struct cv_app_error app;
    if (status == CV_EAPP && cv_apperr_parse(body, body ? len : 0, error, &app) == 0) {
        f.app_code = (char *)app.code; /* on the wire as Frame fields, not as the body */
        f.app_details_type = (char *)app.details_type;
        f.app_details.data = (uint8_t *)app.details;
        f.app_details.len = app.details_len;
        return cv_rpc_sock_send(&conn->s, &f);
    }
    f.body.data = (uint8_t *)body;
    f.body.len = body ? len : 0;
    return cv_rpc_sock_send(&conn->s, &f);
}

int cv_rpc_send_event(struct cv_rpc_conn *conn, const char *method, const void *body, size_t len)
{
    if (conn->s.closing) return CV_ECLOSED;
    Cverse__Rpc__Frame f = CVERSE__RPC__FRAME__INIT;
    f.kind = CVERSE__RPC__KIND__KIND_EVENT;
    f.method = (char *)(method ? method : "");
    f.body.data = (uint8_t *)body;
    f.body.len = body ? len : 0;
    return cv_rpc_sock_send(&conn->s, &f);
}

size_t cv_rpc_conn_backlog(const struct cv_rpc_conn *conn)
{
    return conn->s.out.len + conn->s.wr.len + conn->s.tcp.write_queue_size;
}

void cv_rpc_conn_ref(struct cv_rpc_conn *conn)
{
    conn->refs++;
}

void cv_rpc_conn_unref(struct cv_rpc_conn *conn)
{
    if (conn->refs == 0) {
        CV_ERROR("rpc: cv_rpc_conn_unref on a connection without references");
        return;
    }
    if (--conn->refs == 0) free(conn);
}

/* ---------------------------------------------------------------------------------------------------
 * Client: calls, the id map and the deadline heap. */

struct rpc__call {
    uint64_t id;
    uint64_t deadline;           /* uv_now() based, ms; 0 = none */
    size_t heap_pos;             /* index in the deadline heap, SIZE_MAX if not there */
    cv_rpc_call_cb cb;
    void *data;
    int sent;                    /* written to the current connection */
    char *method;                /* copies kept while waiting for a connection */
    uint8_t *body;
    size_t len;
    struct rpc__call *qprev, *qnext; /* waiting queue; qnext also links a batch being failed */
    UT_hash_handle hh;           /* in cv_rpc_client.calls, by id */
};

/* The id -> call map is a uthash table (HASH_NONFATAL_OOM: a failed add leaves hh.tbl NULL). */
static int map__put(struct rpc__call **m, struct rpc__call *c)
{
    HASH_ADD(hh, *m, id, sizeof c->id, c);
    return c->hh.tbl ? 0 : CV_ENOMEM;
}

static struct rpc__call *map__get(struct rpc__call *m, uint64_t id)
{
    struct rpc__call *c;
    HASH_FIND(hh, m, &id, sizeof id, c);
    return c;
}

struct rpc__heap {
    struct rpc__call **v;
    size_t len, cap;
};

static void heap__set(struct rpc__heap *h, size_t i, struct rpc__call *c)
{
    h->v[i] = c;
    c->heap_pos = i;
}

static void heap__up(struct rpc__heap *h, size_t i)
{
    struct rpc__call *c = h->v[i];
    while (i > 0 && h->v[(i - 1) / 2]->deadline > c->deadline) {
        heap__set(h, i, h->v[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    heap__set(h, i, c);
}

static void heap__down(struct rpc__heap *h, size_t i)
{
    struct rpc__call *c = h->v[i];
    for (;;) {
        size_t l = 2 * i + 1, m = l;
        if (l >= h->len) break;
        if (l + 1 < h->len && h->v[l + 1]->deadline < h->v[l]->deadline) m = l + 1;
        if (h->v[m]->deadline >= c->deadline) break;
        heap__set(h, i, h->v[m]);
        i = m;
    }
    heap__set(h, i, c);
}

static int heap__push(struct rpc__heap *h, struct rpc__call *c)
{
    int rv = cv_array_grow((void **)&h->v, &h->cap, h->len + 1, sizeof *h->v);
    if (rv != 0) return rv;
    heap__set(h, h->len++, c);
    heap__up(h, h->len - 1);
    return 0;
}

static void heap__remove(struct rpc__heap *h, struct rpc__call *c)
{
    size_t i = c->heap_pos;
    if (i == SIZE_MAX) return;
    c->heap_pos = SIZE_MAX;
    struct rpc__call *last = h->v[--h->len];
    if (i == h->len) return;
    heap__set(h, i, last);
    heap__up(h, i);
    heap__down(h, last->heap_pos);
}

/* ---------------------------------------------------------------------------------------------------
 * Client: connection management. */

struct rpc__cconn {
    struct cv_rpc_sock s;          /* first member */
    struct cv_rpc_client *cli;
    uv_connect_t creq;
    int connected;
};

struct cv_rpc_client {
    uv_loop_t *loop;
    char *addr;
    struct sockaddr_storage ss;
    unsigned reconnect_ms;
    cv_rpc_event_cb on_event;
    cv_rpc_state_cb on_state;
    void *data;
    const struct cv_guard *guard; /* borrowed; NULL or no secret: no handshake */
    struct cv_tls_ctx *tls;      /* borrowed; NULL: plain */
    char *tls_host;              /* the name the server's certificate must carry */
    struct rpc__cconn *conn;     /* connecting or connected; NULL when down. Never two at once. */
    uv_timer_t retry;            /* runs while waiting to reconnect, and as a connect's deadline */
    uv_timer_t deadline;         /* armed for the earliest call deadline */
    uv_prepare_t flusher;        /* writes the connection's queued frames before the loop polls */
    struct rpc__call *calls;     /* every unfinished call, sent or waiting (uthash by id) */
    struct rpc__heap heap;       /* unfinished calls with a deadline */
    struct rpc__call *qhead, *qtail; /* calls waiting for a connection, oldest first */
    uint64_t next_id;
    unsigned handles;            /* uv handles not yet through their close callback */
    int closing;
    cv_rpc_client_close_cb close_cb;
    char rbuf[CV_RPC_READ_CHUNK];
};

static void cli__queue_unlink(struct cv_rpc_client *cli, struct rpc__call *c)
{
    if (c->qprev) c->qprev->qnext = c->qnext;
    else cli->qhead = c->qnext;
    if (c->qnext) c->qnext->qprev = c->qprev;
    else cli->qtail = c->qprev;
    c->qprev = c->qnext = NULL;
}

/* Removes c from every index; it is then owned by whoever completes it. */
static void cli__detach(struct cv_rpc_client *cli, struct rpc__call *c)
{
    HASH_DEL(cli->calls, c);
    heap__remove(&cli->heap, c);
    if (!c->sent) cli__queue_unlink(cli, c);
}

static void cli__complete(struct rpc__call *c, int status, const char *error, const uint8_t *body,
                          size_t len)
{
    c->cb(c->data, status, error, body ? body : rpc__empty, len);
    free(c->method);
    free(c->body);
    free(c);
}

/* Fails every call that was written (sent_only) or every call. All of them are detached first, so the
 * callbacks may start new calls (they land in the fresh state) or close the client. */
static void cli__fail_calls(struct cv_rpc_client *cli, int sent_only, int status, const char *error)
{
    struct rpc__call *list = NULL, *c, *tmp;
    HASH_ITER(hh, cli->calls, c, tmp) {
        if (sent_only && !c->sent) continue;
        HASH_DEL(cli->calls, c); /* safe while iterating with HASH_ITER */
        heap__remove(&cli->heap, c);
        if (!c->sent) cli__queue_unlink(cli, c);
        c->qnext = list;
        list = c;
    }
    while (list) {
        c = list;
        list = c->qnext;
        cli__complete(c, status, error, NULL, 0);
    }
}

static void cli__deadline_cb(uv_timer_t *t);

static void cli__arm(struct cv_rpc_client *cli)
{
    if (cli->closing) return;
    if (cli->heap.len == 0) {
        uv_timer_stop(&cli->deadline);
        return;
    }
    uint64_t now = uv_now(cli->loop), at = cli->heap.v[0]->deadline;
    uv_timer_start(&cli->deadline, cli__deadline_cb, at > now ? at - now : 0, 0);
}

static void cli__deadline_cb(uv_timer_t *t)
{
    struct cv_rpc_client *cli = t->data;
    uint64_t now = uv_now(cli->loop);
    while (!cli->closing && cli->heap.len && cli->heap.v[0]->deadline <= now) {
        struct rpc__call *c = cli->heap.v[0];
        cli__detach(cli, c);
        cli__complete(c, CV_ETIMEDOUT, cv_strerror(CV_ETIMEDOUT), NULL, 0);
    }
    cli__arm(cli);
}

/* Writes call c on the connected socket, with the time its caller still waits. */
static int cli__send(struct cv_rpc_client *cli, struct rpc__call *c, const char *method, const void *body,
                     size_t len)
{
    Cverse__Rpc__Frame f = CVERSE__RPC__FRAME__INIT;
    f.id = c->id;
    f.kind = CVERSE__RPC__KIND__KIND_REQUEST;
    f.method = (char *)method;
    f.body.data = (uint8_t *)body;
    f.body.len = len;
    if (c->deadline) {
        uint64_t now = uv_now(cli->loop);
        f.deadline_ms = c->deadline > now ? (uint32_t)(c->deadline - now) : 1;
    }
    int rv = cv_rpc_sock_send(&cli->conn->s, &f);
    if (rv == 0) c->sent = 1;
    return rv;
}

static int cli__connected(const struct cv_rpc_client *cli)
{
    return cli->conn && cli->conn->connected && !cli->conn->s.closing;
}

/* Writes the calls that waited for the connection, oldest first, in one batch. */
static void cli__flush_queue(struct cv_rpc_client *cli)
{
    struct cv_rpc_sock *s = &cli->conn->s;
    s->corked++;
    while (cli->qhead && cli__connected(cli)) {
        struct rpc__call *c = cli->qhead;
        cli__queue_unlink(cli, c);
        int rv = cli__send(cli, c, c->method, c->body, c->len);
        if (rv) {
            HASH_DEL(cli->calls, c);
            heap__remove(&cli->heap, c);
            cli__complete(c, rv, cv_strerror(rv), NULL, 0);
            continue;
        }
        free(c->method);
        free(c->body);
        c->method = NULL;
        c->body = NULL;
    }
    s->corked--;
    cv_rpc_sock_flush(s);
}

/* A CV_EAPP response: its Frame fields go back into the packed body (core/apperr.h) the callers pass
 * on. A frame with an invalid app_code (a peer that is not cverse) completes as CV_EPROTO. */
static void cli__complete_app(struct rpc__call *c, const Cverse__Rpc__Frame *f, const char *err)
{
    struct cv_app_error app = {f->app_code, err, f->app_details_type, f->app_details.data, f->app_details.len};
    uint8_t *body;
    size_t len;
    int rv = cv_apperr_pack(&app, &body, &len);
    if (rv == 0) {
        cli__complete(c, CV_EAPP, err, body, len);
        free(body);
    } else {
        cli__complete(c, rv == CV_ENOMEM ? rv : CV_EPROTO, "malformed application error", NULL, 0);
    }
}

static void cli__on_frame(struct cv_rpc_sock *s, Cverse__Rpc__Frame *f)
{
    struct cv_rpc_client *cli = ((struct rpc__cconn *)s)->cli;
    const uint8_t *body = f->body.len ? f->body.data : rpc__empty;
    if (f->kind == CVERSE__RPC__KIND__KIND_RESPONSE) {
        struct rpc__call *c = map__get(cli->calls, f->id);
        if (!c || !c->sent) return; /* timed out meanwhile: the late answer is dropped */
        cli__detach(cli, c);
        const char *err = f->status == 0 ? NULL : (*f->error ? f->error : cv_strerror(f->status));
        if (f->status == CV_EAPP) {
            cli__complete_app(c, f, err);
            return;
        }
        cli__complete(c, f->status, err, body, f->body.len);
    } else if (f->kind == CVERSE__RPC__KIND__KIND_EVENT) {
        if (cli->on_event) cli->on_event(cli->data, f->method, body, f->body.len);
    } else {
        CV_DEBUG("rpc: client ignores a frame of kind %d", (int)f->kind);
    }
}

static void cli__maybe_finish(struct cv_rpc_client *cli)
{
    if (cli->handles > 0) return;
    cli__fail_calls(cli, 0, CV_ECANCELED, cv_strerror(CV_ECANCELED));
    if (cli->close_cb) cli->close_cb(cli);
    free(cli->heap.v);
    free(cli->addr);
    free(cli->tls_host);
    free(cli);
}

static void cli__retry_cb(uv_timer_t *t);

/* The socket is gone: calls it carried fail (their outcome is unknown), waiting calls stay queued. */
static void cli__conn_closed(uv_handle_t *h)
{
    struct rpc__cconn *cc = h->data;
    struct cv_rpc_client *cli = cc->cli;
    int was_connected = cc->connected;
    if (cli->conn == cc) cli->conn = NULL;
    char tls_err[sizeof cc->s.tls_err + 96];
    tls_err[0] = 0;
    if (cc->s.tls_err[0]) snprintf(tls_err, sizeof tls_err, "TLS with %s failed: %s", cli->addr, cc->s.tls_err);
    cv_rpc_sock_free(&cc->s);
    free(cc);
    cli->handles--;
    if (cli->closing) {
        cli__maybe_finish(cli);
        return;
    }
    if (was_connected) CV_INFO("rpc: connection to %s lost", cli->addr);
    /* Armed before the callbacks so that a call they start waits for it instead of dialing now. */
    uv_timer_start(&cli->retry, cli__retry_cb, cli->reconnect_ms, 0);
    if (tls_err[0] && !was_connected) cli__fail_calls(cli, 0, CV_EAUTH, tls_err); /* redialling would not help */
    else cli__fail_calls(cli, 1, CV_EUNAVAIL, "connection lost (the peer may have executed the call)");
    if (was_connected && !cli->closing && cli->on_state) cli->on_state(cli->data, 0);
}

/* A peer that accepted but does not finish the handshake (not cverse, or stalled) is left and dialled
 * again, as an unanswered connect is. */
static void cli__hs_deadline_cb(uv_timer_t *t)
{
    struct cv_rpc_client *cli = t->data;
    struct rpc__cconn *cc = cli->conn;
    if (!cc || cc->connected || cc->s.closing) return;
    CV_INFO("rpc: %s did not finish the %s handshake in %u ms", cli->addr,
            cc->s.tls && !cc->s.tls_up ? "TLS" : "cluster", CV_RPC_HANDSHAKE_MS);
    cv_rpc_sock_close(&cc->s);
}

/* Connected, and past the handshake if there is one: the waiting calls go out. */
static void cli__ready(struct cv_rpc_sock *s)
{
    struct rpc__cconn *cc = (struct rpc__cconn *)s;
    struct cv_rpc_client *cli = cc->cli;
    uv_timer_stop(&cli->retry); /* the handshake deadline */
    cc->connected = 1;
    cli__flush_queue(cli);
    if (cli__connected(cli) && cli->on_state) cli->on_state(cli->data, 1);
}

/* Connected (inside TLS when there is one): the cluster handshake if there is a secret, else ready. */
static void cli__after_tls(struct cv_rpc_sock *s)
{
    struct rpc__cconn *cc = (struct rpc__cconn *)s;
    struct cv_rpc_client *cli = cc->cli;
    const struct cv_secret *sec = cli->guard ? cli->guard->secret : NULL;
    if (!sec) {
        cli__ready(s);
        return;
    }
    if (cv_rpc_sock_handshake(s, sec, CV_AUTH_CLIENT, cli__ready)) {
        cv_rpc_sock_close(s);
        return;
    }
    uv_timer_start(&cli->retry, cli__hs_deadline_cb, CV_RPC_HANDSHAKE_MS, 0);
}

static void cli__connect_cb(uv_connect_t *req, int status)
{
    struct rpc__cconn *cc = req->data;
    struct cv_rpc_client *cli = cc->cli;
    if (cc->s.closing) return; /* canceled by cv_rpc_client_close or by the connect deadline */
    if (status < 0) {
        CV_DEBUG("rpc: connect to %s failed: %s", cli->addr, uv_strerror(status));
        cv_rpc_sock_close(&cc->s);
        return;
    }
    uv_timer_stop(&cli->retry); /* the connect deadline */
    if (cv_rpc_sock_start(&cc->s)) {
        cv_rpc_sock_close(&cc->s);
        return;
    }
    if (!cli->tls) {
        cli__after_tls(&cc->s);
        return;
    }
    if (cv_rpc_sock_tls(&cc->s, cli->tls, cli->tls_host, cli__after_tls)) cv_rpc_sock_close(&cc->s);
    else uv_timer_start(&cli->retry, cli__hs_deadline_cb, CV_RPC_HANDSHAKE_MS, 0);
}

/* The connect deadline (the retry timer, idle while an attempt is in flight): an attempt whose SYN got no
 * answer in CV_TCP_CONNECT_MS is closed; the close callback schedules the next one (reconnect_ms). A
 * partition dropped its SYN, and TCP would resend it only after 1, 3, 7 ... s: after a heal the next
 * attempt is at most CV_TCP_CONNECT_MS + reconnect_ms away. */
static void cli__connect_deadline_cb(uv_timer_t *t)
{
    struct cv_rpc_client *cli = t->data;
    struct rpc__cconn *cc = cli->conn;
    if (!cc || cc->connected || cc->s.closing || !cv_tcp_connecting(&cc->s.tcp)) return;
    CV_DEBUG("rpc: connect to %s: no answer in %u ms, dialling again", cli->addr, CV_TCP_CONNECT_MS);
    cv_rpc_sock_close(&cc->s);
}

static void cli__connect(struct cv_rpc_client *cli)
{
    struct rpc__cconn *cc = calloc(1, sizeof *cc);
    const struct sockaddr *sa = (const struct sockaddr *)&cli->ss;
    if (!cc || cv_rpc_sock_init(cli->loop, &cc->s, sa, cli->rbuf, cli__on_frame, cli__conn_closed)) {
        CV_ERROR("rpc: cannot allocate a connection to %s", cli->addr);
        free(cc);
        uv_timer_start(&cli->retry, cli__retry_cb, cli->reconnect_ms, 0);
        return;
    }
    cc->s.deferred = 1;
    cc->cli = cli;
    cc->creq.data = cc;
    cli->conn = cc;
    cli->handles++;
    int rv = uv_tcp_connect(&cc->creq, &cc->s.tcp, sa, cli__connect_cb);
    if (rv) {
        CV_DEBUG("rpc: connect to %s failed: %s", cli->addr, uv_strerror(rv));
        cv_rpc_sock_close(&cc->s); /* the close callback schedules the retry */
        return;
    }
    uv_timer_start(&cli->retry, cli__connect_deadline_cb, CV_TCP_CONNECT_MS, 0);
}

static void cli__retry_cb(uv_timer_t *t)
{
    struct cv_rpc_client *cli = t->data;
    if (!cli->closing && !cli->conn) cli__connect(cli);
}

static void cli__ensure_connecting(struct cv_rpc_client *cli)
{
    if (cli->conn || uv_is_active((uv_handle_t *)&cli->retry)) return;
    cli__connect(cli);
}

void cv_rpc_client_connect(struct cv_rpc_client *cli)
{
    if (!cli->closing) cli__ensure_connecting(cli);
}

static void cli__flush_cb(uv_prepare_t *h)
{
    struct cv_rpc_client *cli = h->data;
    if (cli->conn && cli->conn->connected) cv_rpc_sock_flush(&cli->conn->s);
}

/* The name a client checks in the server's certificate: tls_host, else the host part of addr (copied). */
static char *rpc__tls_host(const char *tls_host, const char *addr)
{
    char host[256];
    uint16_t port;
    if (tls_host) return strdup(tls_host);
    if (cv_addr_split(addr, host, sizeof host, &port)) return strdup(addr);
    return strdup(host);
}

int cv_rpc_client_init(uv_loop_t *loop, const struct cv_rpc_client_opts *opts, struct cv_rpc_client **out)
{
    if (!loop || !opts || !opts->addr || !out) return CV_EINVAL;
    struct cv_rpc_client *cli = calloc(1, sizeof *cli);
    if (!cli) return CV_ENOMEM;
    if (cv_addr_resolve(opts->addr, &cli->ss)) {
        CV_ERROR("rpc: bad address '%s'", opts->addr);
        free(cli);
        return CV_EINVAL;
    }
    cli->addr = strdup(opts->addr);
    if (!cli->addr) {
        free(cli);
        return CV_ENOMEM;
    }
    cli->loop = loop;
    cli->reconnect_ms = opts->reconnect_ms ? opts->reconnect_ms : RPC__RECONNECT_MS;
    cli->on_event = opts->on_event;
    cli->on_state = opts->on_state;
    cli->data = opts->data;
    cli->guard = opts->guard;
    cli->tls = opts->tls;
    if (opts->tls && !(cli->tls_host = rpc__tls_host(opts->tls_host, opts->addr))) {
        free(cli->addr);
        free(cli);
        return CV_ENOMEM;
    }
    uv_timer_init(loop, &cli->retry);
    uv_timer_init(loop, &cli->deadline);
    uv_prepare_init(loop, &cli->flusher);
    cli->retry.data = cli->deadline.data = cli->flusher.data = cli;
    uv_prepare_start(&cli->flusher, cli__flush_cb);
    uv_unref((uv_handle_t *)&cli->flusher); /* it never keeps a loop alive on its own */
    cli->handles = 3;
    *out = cli;
    return 0;
}

/* Keeps copies of method and body until the call can be written. */
static int cli__enqueue(struct cv_rpc_client *cli, struct rpc__call *c, const char *method,
                        const void *body, size_t len)
{
    c->method = strdup(method);
    c->body = malloc(len ? len : 1);
    if (!c->method || !c->body) return CV_ENOMEM;
    if (len) memcpy(c->body, body, len);
    c->len = len;
    c->qprev = cli->qtail;
    if (cli->qtail) cli->qtail->qnext = c;
    else cli->qhead = c;
    cli->qtail = c;
    return 0;
}

/* Refuses frames that could never be written, so a queued call cannot fail on that later. */
static int cli__check_size(const char *method, const void *body, size_t len, unsigned timeout_ms)
{
    if (len > CV_FRAME_MAX) return CV_ETOOBIG;
    Cverse__Rpc__Frame f = CVERSE__RPC__FRAME__INIT;
    f.id = UINT64_MAX;
    f.kind = CVERSE__RPC__KIND__KIND_REQUEST;
    f.method = (char *)method;
    f.body.data = (uint8_t *)body;
    f.body.len = len;
    f.deadline_ms = timeout_ms;
    return cv_frame_size(&f) > CV_FRAME_MAX ? CV_ETOOBIG : 0;
}

int cv_rpc_call(struct cv_rpc_client *cli, const char *method, const void *body, size_t len,
                unsigned timeout_ms, cv_rpc_call_cb cb, void *data)
{
    if (cli->closing) return CV_ECLOSED;
    if (!method || !cb || (len && !body)) return CV_EINVAL;
    int rv = cli__check_size(method, body, len, timeout_ms);
    if (rv) return rv;
    struct rpc__call *c = calloc(1, sizeof *c);
    if (!c) return CV_ENOMEM;
    c->id = ++cli->next_id;
    c->cb = cb;
    c->data = data;
    c->heap_pos = SIZE_MAX;
    c->deadline = timeout_ms ? uv_now(cli->loop) + timeout_ms : 0;
    if ((rv = map__put(&cli->calls, c))) goto err_after_alloc;
    if (c->deadline && (rv = heap__push(&cli->heap, c))) goto err_after_map;
    if (cli__connected(cli)) rv = cli__send(cli, c, method, body, len);
    else if (!(rv = cli__enqueue(cli, c, method, body, len))) cli__ensure_connecting(cli);
    if (rv) goto err_after_heap;
    if (c->heap_pos == 0) cli__arm(cli);
    return 0;

err_after_heap:
    heap__remove(&cli->heap, c);
    free(c->method);
    free(c->body);
err_after_map:
    HASH_DEL(cli->calls, c);
err_after_alloc:
    free(c);
    return rv;
}

static void cli__handle_closed(uv_handle_t *h)
{
    struct cv_rpc_client *cli = h->data;
    cli->handles--;
    cli__maybe_finish(cli);
}

void cv_rpc_client_close(struct cv_rpc_client *cli, cv_rpc_client_close_cb cb)
{
    if (cli->closing) return;
    cli->closing = 1;
    cli->close_cb = cb;
    uv_close((uv_handle_t *)&cli->retry, cli__handle_closed);
    uv_close((uv_handle_t *)&cli->deadline, cli__handle_closed);
    uv_close((uv_handle_t *)&cli->flusher, cli__handle_closed);
    if (cli->conn) cv_rpc_sock_close(&cli->conn->s);
}

void *cv_rpc_client_data(const struct cv_rpc_client *cli)
{
    return cli->data;
}
