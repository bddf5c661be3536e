/* libraft's TCP transport with a bounded connect (see rafttcp.h).
 *
 * Why: libraft's uv transport keeps one outgoing stream per peer. A partition leaves two things stuck
 * in TCP's backoff: (1) an established stream whose data is not acknowledged (retransmissions 0.2 s,
 * 0.4 s, ... doubling: the AppendEntries of a 15 s cut arrived 11.7 s after the heal, docs/partitions.md);
 * (2) every connect libraft makes while the peer is unreachable: its SYN is retransmitted at 1, 3, 7,
 * 15 s ..., so the first SYN after the heal may be seconds away (measured: ~6 s of catch-up). libraft's
 * connect creates its socket inside and has no timeout, so neither can be bounded from outside.
 *
 * Choice: raft_uv_transport is libraft's public, pluggable interface, so cverse implements its connect:
 * a socket created before the connect with TCP_USER_TIMEOUT set (net/tcplive.h: bounds (1) for the whole
 * life of the stream, and bounds the SYN), a deadline of CV_TCP_CONNECT_MS after which an unanswered
 * attempt is closed and reported failed (libraft dials again after its connect_retry_delay, 1 s), then
 * libraft's documented handshake. libraft's listen/accept read that handshake as from its own connect.
 * Rejected: wrapping libraft's connect (the socket appears only inside it, after an asynchronous name
 * lookup, and a request cannot be aborted through its API); a shorter system-wide tcp_syn_retries (not a
 * process' choice, and 1 s at best).
 *
 * Happy path: connect -> socket (bounded) -> uv_tcp_connect + deadline timer -> connected: timer stopped,
 * handshake written -> written: the stream (raft_malloc'ed: libraft uv_close()s and raft_free()s it) goes
 * to libraft's callback -> the timer's close frees the request.
 * Failure modes (each reported once, through the callback, after our handles closed):
 * - no answer within the deadline (a partition) -> RAFT_NOCONNECTION; a loop that stalled past the
 *   deadline does not abandon a connect that in fact completed (cv_tcp_connecting);
 * - refused, unreachable, or the handshake write fails -> RAFT_NOCONNECTION;
 * - the transport closes -> RAFT_CANCELED, and the transport's close callback waits for every request;
 * - an address that is not numeric (cv_addr_resolve) -> libraft's own connect (unbounded, as before);
 * - allocation or socket() failures -> returned at once (libraft retries after its delay). */
#include "consensus/rafttcp.h"

#include <raft.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/sm.h"
#include "net/tcplive.h"
#include "util/addr.h"
#include "util/log.h"

/* libraft's handshake (uv_tcp.h, protocol 1): three little-endian 64-bit words -- the protocol version,
 * the dialling server's id, the size of the address buffer -- then the address, NUL-terminated and
 * zero-padded to a multiple of 8 bytes. */
#define HS_PROTOCOL 1
#define HS_WORDS 24

enum { D_CONNECTING, D_HANDSHAKING, D_HANDED, D_CLOSING, D_N };

static const struct cv_sm_state dial__states[D_N] = {
    [D_CONNECTING] = {"connecting", CV_SM_INITIAL, CV_SM_BIT(D_HANDSHAKING) | CV_SM_BIT(D_CLOSING)},
    [D_HANDSHAKING] = {"handshaking", 0, CV_SM_BIT(D_HANDED) | CV_SM_BIT(D_CLOSING)},
    [D_HANDED] = {"handed", CV_SM_FINAL, 0},   /* the stream is libraft's; our timer is closing */
    [D_CLOSING] = {"closing", CV_SM_FINAL, 0}, /* our stream and timer are closing; then the callback */
};
static const struct cv_sm_conf dial__conf = {"raft dial", dial__states, D_N};

struct rafttcp;

/* One connect request. */
struct dial {
    struct cv_sm sm;
    struct rafttcp *rt;
    struct dial *next, *prev;    /* rt's requests not yet freed */
    struct raft_uv_connect *req; /* libraft's, borrowed until its callback */
    uv_tcp_t *tcp;               /* ours until handed over; NULL once closed or handed */
    uv_connect_t connect;
    uv_write_t write;
    uv_timer_t timer;            /* the connect deadline */
    int status;                  /* for the callback, while CLOSING */
    unsigned open;               /* our handles not yet through their close callback */
    size_t hs_len;
    uint8_t hs[];                /* the handshake */
};

/* The extra state of one transport, found by its address (the transport's fields are all libraft's). */
struct rafttcp {
    struct raft_uv_transport *t; /* borrowed: the key */
    struct rafttcp *next;        /* every live transport of the process */
    uv_loop_t *loop;
    const char *address;         /* our server's, raft's: valid until raft closes (libraft keeps it so) */
    raft_id id;
    int (*inner_init)(struct raft_uv_transport *, raft_id, const char *);
    int (*inner_connect)(struct raft_uv_transport *, struct raft_uv_connect *, raft_id, const char *,
                         raft_uv_connect_cb);
    void (*inner_close)(struct raft_uv_transport *, raft_uv_transport_close_cb);
    raft_uv_transport_close_cb close_cb;
    struct dial *dials;
    bool closing, inner_open;
};

static struct rafttcp *rafttcps;

static struct rafttcp *rafttcp__find(const struct raft_uv_transport *t)
{
    struct rafttcp *rt = rafttcps;
    while (rt && rt->t != t) rt = rt->next;
    return rt;
}

static size_t hs__size(const char *address)
{
    return HS_WORDS + ((strlen(address) + 1 + 7) & ~(size_t)7);
}

static void hs__put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void hs__encode(uint8_t *buf, size_t len, raft_id id, const char *address)
{
    memset(buf, 0, len);
    hs__put64(buf, HS_PROTOCOL);
    hs__put64(buf + 8, id);
    hs__put64(buf + 16, len - HS_WORDS);
    memcpy(buf + HS_WORDS, address, strlen(address));
}

/* ---------------------------------------------------------------------------------------------------
 * One request. */

static void rafttcp__maybe_closed(struct rafttcp *rt);

static void dial__free(struct dial *d)
{
    struct rafttcp *rt = d->rt;
    if (d->prev) d->prev->next = d->next;
    else rt->dials = d->next;
    if (d->next) d->next->prev = d->prev;
    if (cv_sm_state(&d->sm) == D_CLOSING) d->req->cb(d->req, NULL, d->status);
    cv_sm_fini(&d->sm);
    free(d);
    rafttcp__maybe_closed(rt);
}

static void dial__handle_closed(uv_handle_t *h)
{
    struct dial *d = h->data;
    if (--d->open == 0) dial__free(d);
}

static void dial__tcp_closed(uv_handle_t *h)
{
    struct dial *d = h->data;
    raft_free(h);
    d->tcp = NULL;
    if (--d->open == 0) dial__free(d);
}

/* Ends the request with status (reported once both handles are closed). */
static void dial__abort(struct dial *d, int status)
{
    cv_sm_move(&d->sm, D_CLOSING);
    d->status = status;
    d->open = 2;
    uv_close((uv_handle_t *)d->tcp, dial__tcp_closed);
    uv_close((uv_handle_t *)&d->timer, dial__handle_closed);
}

static void dial__written(uv_write_t *w, int status)
{
    struct dial *d = w->data;
    if (cv_sm_state(&d->sm) == D_CLOSING) return; /* aborted: the close callbacks report */
    if (status != 0) {
        dial__abort(d, RAFT_NOCONNECTION);
        return;
    }
    uv_stream_t *stream = (uv_stream_t *)d->tcp;
    struct raft_uv_connect *req = d->req;
    cv_sm_move(&d->sm, D_HANDED);
    d->tcp = NULL;
    d->open = 1;
    uv_close((uv_handle_t *)&d->timer, dial__handle_closed);
    req->cb(req, stream, 0);
}

static void dial__connected(uv_connect_t *c, int status)
{
    struct dial *d = c->data;
    if (cv_sm_state(&d->sm) == D_CLOSING) return;
    if (status != 0) {
        dial__abort(d, RAFT_NOCONNECTION);
        return;
    }
    uv_timer_stop(&d->timer); /* from here on the stream's TCP_USER_TIMEOUT bounds it */
    cv_sm_move(&d->sm, D_HANDSHAKING);
    uv_buf_t buf = uv_buf_init((char *)d->hs, (unsigned)d->hs_len);
    if (uv_write(&d->write, (uv_stream_t *)d->tcp, &buf, 1, dial__written) != 0)
        dial__abort(d, RAFT_NOCONNECTION);
}

static void dial__deadline(uv_timer_t *t)
{
    struct dial *d = t->data;
    if (cv_sm_state(&d->sm) != D_CONNECTING || !cv_tcp_connecting(d->tcp)) return;
    CV_DEBUG("raft: connect to a peer: no answer in %u ms, dialling again", CV_TCP_CONNECT_MS);
    dial__abort(d, RAFT_NOCONNECTION);
}

/* A request for rt, with its handshake; its tcp handle bounded and initialized for sa. NULL on failure. */
static struct dial *dial__new(struct rafttcp *rt, struct raft_uv_connect *req, const struct sockaddr *sa)
{
    size_t hs_len = hs__size(rt->address);
    struct dial *d = calloc(1, sizeof *d + hs_len);
    if (!d) return NULL;
    d->tcp = raft_malloc(sizeof *d->tcp);
    if (!d->tcp || cv_tcp_live_init(rt->loop, d->tcp, sa)) {
        raft_free(d->tcp);
        free(d);
        return NULL;
    }
    cv_sm_init(&d->sm, &dial__conf, D_CONNECTING, NULL, NULL);
    d->rt = rt;
    d->req = req;
    d->hs_len = hs_len;
    hs__encode(d->hs, hs_len, rt->id, rt->address);
    uv_timer_init(rt->loop, &d->timer);
    d->tcp->data = d->timer.data = d->connect.data = d->write.data = d;
    d->next = rt->dials;
    if (rt->dials) rt->dials->prev = d;
    rt->dials = d;
    return d;
}

/* ---------------------------------------------------------------------------------------------------
 * The transport's functions. */

static int rafttcp__connect(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id,
                            const char *address, raft_uv_connect_cb cb)
{
    struct rafttcp *rt = rafttcp__find(t);
    struct sockaddr_storage ss;
    if (cv_addr_resolve(address, &ss) != 0) return rt->inner_connect(t, req, id, address, cb);
    req->cb = cb;
    struct dial *d = dial__new(rt, req, (const struct sockaddr *)&ss);
    if (!d) {
        snprintf(t->errmsg, sizeof t->errmsg, "cannot open a socket to %s", address);
        return RAFT_NOCONNECTION;
    }
    if (uv_tcp_connect(&d->connect, d->tcp, (const struct sockaddr *)&ss, dial__connected) != 0) {
        dial__abort(d, RAFT_NOCONNECTION);
        return 0;
    }
    uv_timer_start(&d->timer, dial__deadline, CV_TCP_CONNECT_MS, 0);
    return 0;
}

static int rafttcp__init(struct raft_uv_transport *t, raft_id id, const char *address)
{
    struct rafttcp *rt = rafttcp__find(t);
    rt->id = id;
    rt->address = address;
    return rt->inner_init(t, id, address);
}

/* Once libraft's part and every request have finished: t is libraft's again, then its close callback. */
static void rafttcp__maybe_closed(struct rafttcp *rt)
{
    if (!rt->closing || rt->inner_open || rt->dials) return;
    struct raft_uv_transport *t = rt->t;
    raft_uv_transport_close_cb cb = rt->close_cb;
    struct rafttcp **p = &rafttcps;
    while (*p != rt) p = &(*p)->next;
    *p = rt->next;
    t->init = rt->inner_init;
    t->connect = rt->inner_connect;
    t->close = rt->inner_close;
    free(rt);
    if (cb) cb(t);
}

static void rafttcp__inner_closed(struct raft_uv_transport *t)
{
    struct rafttcp *rt = rafttcp__find(t);
    rt->inner_open = false;
    rafttcp__maybe_closed(rt);
}

static void rafttcp__close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb)
{
    struct rafttcp *rt = rafttcp__find(t);
    rt->closing = true;
    rt->close_cb = cb;
    for (struct dial *d = rt->dials; d; d = d->next) {
        int s = cv_sm_state(&d->sm);
        if (s == D_CONNECTING || s == D_HANDSHAKING) dial__abort(d, RAFT_CANCELED);
    }
    rt->inner_open = true;
    rt->inner_close(t, rafttcp__inner_closed); /* may finish at once: rt is not touched after it */
}

void cv_rafttcp_live(struct raft_uv_transport *t, uv_loop_t *loop)
{
    struct rafttcp *rt = rafttcp__find(t); /* left over by a transport at this address never closed */
    if (t->connect == rafttcp__connect) return; /* already ours */
    if (!rt) {
        rt = malloc(sizeof *rt);
        if (!rt) {
            CV_WARN("raft: no memory for the bounded connect; raft dials with TCP's own timeouts");
            return;
        }
        rt->next = rafttcps;
        rafttcps = rt;
    }
    struct rafttcp *next = rt->next;
    *rt = (struct rafttcp){.t = t, .next = next, .loop = loop, .inner_init = t->init,
                           .inner_connect = t->connect, .inner_close = t->close};
    t->init = rafttcp__init;
    t->connect = rafttcp__connect;
    t->close = rafttcp__close;
}
