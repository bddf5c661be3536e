/* libraft's TCP transport with a bounded connect and a guarded listener (see rafttcp.h).
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
 *   with a cluster secret RAFT_NOCONNECTION instead (libraft's connect cannot run the handshake);
 * - allocation or socket() failures -> returned at once (libraft retries after its delay).
 *
 * Authentication (auth/guard.h, docs/security.md): with a cluster secret, between the connect and
 * libraft's preamble the dialler runs the cluster handshake (our HELLO; the peer's HELLO and PROOF read
 * with exactly their lengths; our PROOF, then the preamble); a failed or stalled one (RT_HS_MS) is
 * RAFT_NOCONNECTION, counted. The listen side is ours too, as libraft's accepts any stream: accept ->
 * protected mode's address check -> the handshake -> libraft's preamble (protocol, server id, address),
 * read exactly -> libraft's accept callback with the stream, which libraft reads as if it had accepted
 * it itself (not one byte of its messages was consumed). A peer refused, failing, or not done within
 * RT_HS_MS is closed before libraft ever sees it: without the secret nothing can vote or append. */
#include "consensus/rafttcp.h"

#include <raft.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "auth/guard.h"
#include "core/sm.h"
#include "cverse/error.h"
#include "net/tcplive.h"
#include "util/addr.h"
#include "util/log.h"

/* libraft's handshake (uv_tcp.h, protocol 1): three little-endian 64-bit words -- the protocol version,
 * the dialling server's id, the size of the address buffer -- then the address, NUL-terminated and
 * zero-padded to a multiple of 8 bytes. */
#define HS_PROTOCOL 1
#define HS_WORDS 24

#define RT_HS_MS 2000u      /* bound of the cluster handshake, each side (a stalled or silent peer) */
#define RT_ADDRESS_MAX 1024 /* longest raft address an accepted peer may announce */

enum { D_CONNECTING, D_AUTHENTICATING, D_HANDSHAKING, D_HANDED, D_CLOSING, D_N };

static const struct cv_sm_state dial__states[D_N] = {
    [D_CONNECTING] = {"connecting", CV_SM_INITIAL,
                      CV_SM_BIT(D_AUTHENTICATING) | CV_SM_BIT(D_HANDSHAKING) | CV_SM_BIT(D_CLOSING)},
    [D_AUTHENTICATING] = {"authenticating", 0, CV_SM_BIT(D_HANDSHAKING) | CV_SM_BIT(D_CLOSING)},
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
    uv_timer_t timer;            /* the connect deadline, then the cluster handshake's */
    struct rt_auth *auth;        /* the cluster handshake, with a secret only (owned) */
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
    int (*inner_listen)(struct raft_uv_transport *, raft_uv_accept_cb);
    void (*inner_close)(struct raft_uv_transport *, raft_uv_transport_close_cb);
    raft_uv_transport_close_cb close_cb;
    struct dial *dials;
    bool closing, inner_open;
    /* The listen side (ours: accept, cluster handshake, libraft's preamble, then libraft's accept_cb). */
    const struct cv_guard *guard; /* borrowed; NULL: no handshake, any peer */
    const char *bind;             /* where to listen (raft_uv_tcp_set_bind_address's), or NULL: address */
    raft_uv_accept_cb accept_cb;
    uv_tcp_t listener;
    bool listening, listener_open;
    struct incoming *incomings;   /* accepted, not yet handed to libraft (or their writes in flight) */
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
 * The cluster handshake on a raft stream (auth/handshake.h), shared by both directions. Reads are exactly
 * as long as the handshake's next step needs, so not one byte of what follows (libraft's preamble and
 * messages) is consumed: the stream goes to libraft as if the handshake had never been there. */

struct rt_auth {
    struct cv_auth_hs hs;
    uint8_t rin[CV_AUTH_HELLO];
    uint8_t out[2][sizeof ((struct cv_auth_hs *)0)->out]; /* HELLO, then PROOF: in flight at once */
    uv_write_t w[2];
    unsigned sent;    /* writes started */
    unsigned pending; /* writes whose callback has not run */
};

static struct rt_auth *rt_auth__new(const struct cv_secret *sec, enum cv_auth_role role)
{
    struct rt_auth *a = calloc(1, sizeof *a);
    if (a) cv_auth_hs_init(&a->hs, sec, role);
    return a;
}

/* Writes what the handshake queued; 0, or -1 if the write could not start. */
static int rt_auth__flush(struct rt_auth *a, uv_stream_t *st, uv_write_cb cb, void *data)
{
    if (a->sent >= 2) return a->hs.out_len ? -1 : 0;
    size_t n = cv_auth_hs_take(&a->hs, a->out[a->sent]);
    if (n == 0) return 0;
    uv_buf_t b = uv_buf_init((char *)a->out[a->sent], (unsigned)n);
    a->w[a->sent].data = data;
    if (uv_write(&a->w[a->sent], st, &b, 1, cb) != 0) return -1;
    a->sent++;
    a->pending++;
    return 0;
}

static void rt_auth__alloc(struct rt_auth *a, uv_buf_t *buf)
{
    *buf = uv_buf_init((char *)a->rin, (unsigned)cv_auth_hs_want(&a->hs));
}

static void rt__peer(uv_tcp_t *tcp, char *out, size_t n)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    char host[64] = "?";
    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) uv_ip6_name((struct sockaddr_in6 *)&ss, host, sizeof host);
        else uv_ip4_name((struct sockaddr_in *)&ss, host, sizeof host);
    }
    snprintf(out, n, "%s", host);
}

/* Feeds nread bytes: CV_AUTH_HS_MORE, CV_AUTH_HS_DONE, or CV_EAUTH (counted and logged here). */
static int rt_auth__read(struct rt_auth *a, uv_tcp_t *tcp, ssize_t nread, uv_write_cb cb, void *data)
{
    int rv = nread < 0 ? CV_EAUTH : cv_auth_hs_feed(&a->hs, a->rin, (size_t)nread, NULL);
    int reason = nread < 0 ? CV_AUTH_R_CLOSED : a->hs.reason;
    if (rv >= 0 && rt_auth__flush(a, (uv_stream_t *)tcp, cb, data)) {
        rv = CV_EAUTH;
        reason = CV_AUTH_R_CLOSED;
    }
    if (rv < 0) {
        char peer[64];
        rt__peer(tcp, peer, sizeof peer);
        cv_guard_fail(reason, "raft", peer);
    }
    return rv;
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
    free(d->auth);
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

/* libraft's handshake (the preamble): once written, the stream is libraft's. */
static void dial__preamble(struct dial *d)
{
    cv_sm_move(&d->sm, D_HANDSHAKING);
    uv_buf_t buf = uv_buf_init((char *)d->hs, (unsigned)d->hs_len);
    if (uv_write(&d->write, (uv_stream_t *)d->tcp, &buf, 1, dial__written) != 0)
        dial__abort(d, RAFT_NOCONNECTION);
}

static void dial__auth_written(uv_write_t *w, int status)
{
    struct dial *d = w->data;
    d->auth->pending--;
    if (status != 0 && cv_sm_state(&d->sm) == D_AUTHENTICATING) dial__abort(d, RAFT_NOCONNECTION);
}

static void dial__auth_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct dial *d = h->data;
    rt_auth__alloc(d->auth, buf);
}

static void dial__auth_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct dial *d = st->data;
    if (nread == 0 || cv_sm_state(&d->sm) != D_AUTHENTICATING) return;
    int rv = rt_auth__read(d->auth, d->tcp, nread, dial__auth_written, d);
    if (rv < 0) {
        dial__abort(d, RAFT_NOCONNECTION);
    } else if (rv == CV_AUTH_HS_DONE) {
        uv_read_stop(st);
        uv_timer_stop(&d->timer);
        dial__preamble(d); /* after our PROOF: writes leave in order */
    }
}

static void dial__auth_deadline(uv_timer_t *t)
{
    struct dial *d = t->data;
    if (cv_sm_state(&d->sm) != D_AUTHENTICATING) return;
    char peer[64];
    rt__peer(d->tcp, peer, sizeof peer);
    cv_guard_fail(CV_AUTH_R_CLOSED, "raft", peer);
    dial__abort(d, RAFT_NOCONNECTION);
}

/* The cluster handshake before libraft's: our HELLO now, the peer's HELLO and PROOF read exactly. */
static void dial__authenticate(struct dial *d, const struct cv_secret *sec)
{
    cv_sm_move(&d->sm, D_AUTHENTICATING);
    d->auth = rt_auth__new(sec, CV_AUTH_CLIENT);
    if (!d->auth || rt_auth__flush(d->auth, (uv_stream_t *)d->tcp, dial__auth_written, d) ||
        uv_read_start((uv_stream_t *)d->tcp, dial__auth_alloc, dial__auth_read) != 0) {
        dial__abort(d, RAFT_NOCONNECTION);
        return;
    }
    uv_timer_start(&d->timer, dial__auth_deadline, RT_HS_MS, 0);
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
    /* The leader's entries go out on the connections it dialled, and nothing comes back on them but
     * ACKs: with Nagle on, a small append waiting for the ACK of the previous one met the follower's
     * delayed ACK — a 40 ms stall (the creates' p99 of 45 ms). */
    uv_tcp_nodelay(d->tcp, 1);
    const struct cv_guard *g = d->rt->guard;
    if (g && g->secret) {
        dial__authenticate(d, g->secret);
        return;
    }
    dial__preamble(d);
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
 * An accepted connection: protected mode's address check, the cluster handshake, libraft's preamble
 * (protocol, server id, address length, address), then libraft's accept callback gets the stream. */

enum { I_AUTH, I_PREAMBLE, I_ADDRESS, I_DONE };

struct incoming {
    struct rafttcp *rt;
    struct incoming *next, *prev;
    uv_tcp_t *tcp;          /* raft_malloc'ed (libraft raft_free()s it once handed); NULL once closed/handed */
    struct rt_auth *auth;   /* with a secret only */
    uv_timer_t timer;       /* the whole accept (handshake + preamble) is bounded by RT_HS_MS */
    int state;
    unsigned open;          /* our handles not yet through their close callback */
    uint8_t pre[HS_WORDS];
    size_t nread;
    char *address;          /* the announced address, NUL-terminated (len bytes + 1) */
    size_t len;
};

static uint64_t hs__get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static void incoming__maybe_free(struct incoming *in)
{
    if (in->open || (in->auth && in->auth->pending)) return;
    struct rafttcp *rt = in->rt;
    if (in->prev) in->prev->next = in->next;
    else rt->incomings = in->next;
    if (in->next) in->next->prev = in->prev;
    free(in->auth);
    free(in->address);
    free(in);
    rafttcp__maybe_closed(rt);
}

static void incoming__handle_closed(uv_handle_t *h)
{
    struct incoming *in = h->data;
    if (h != (uv_handle_t *)&in->timer) raft_free(h);
    in->open--;
    incoming__maybe_free(in);
}

/* Drops the connection (a refused peer, a failure, the transport closing). */
static void incoming__abort(struct incoming *in)
{
    if (in->state == I_DONE) return;
    in->state = I_DONE;
    uv_close((uv_handle_t *)in->tcp, incoming__handle_closed);
    uv_close((uv_handle_t *)&in->timer, incoming__handle_closed);
    in->tcp = NULL;
}

static void incoming__auth_written(uv_write_t *w, int status)
{
    struct incoming *in = w->data;
    in->auth->pending--;
    if (status != 0) incoming__abort(in);
    incoming__maybe_free(in);
}

static void incoming__alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct incoming *in = h->data;
    if (in->state == I_AUTH) rt_auth__alloc(in->auth, buf);
    else if (in->state == I_PREAMBLE) *buf = uv_buf_init((char *)in->pre + in->nread, (unsigned)(HS_WORDS - in->nread));
    else *buf = uv_buf_init(in->address + in->nread, (unsigned)(in->len - in->nread));
}

/* The preamble is whole: protocol 1 and a sane address length, else the peer is not libraft. */
static int incoming__preamble(struct incoming *in)
{
    uint64_t len = hs__get64(in->pre + 16);
    if (hs__get64(in->pre) != HS_PROTOCOL || len == 0 || len > RT_ADDRESS_MAX) return -1;
    in->len = (size_t)len;
    in->address = calloc(1, in->len + 1);
    in->nread = 0;
    in->state = I_ADDRESS;
    return in->address ? 0 : -1;
}

/* Whole: the stream is libraft's from here on (it reads the messages, then uv_close()s and frees it). */
static void incoming__hand(struct incoming *in)
{
    struct rafttcp *rt = in->rt;
    uv_stream_t *st = (uv_stream_t *)in->tcp;
    uv_read_stop(st);
    in->state = I_DONE;
    in->tcp = NULL;
    in->open--; /* the stream is no longer ours to close */
    uv_close((uv_handle_t *)&in->timer, incoming__handle_closed);
    rt->accept_cb(rt->t, (raft_id)hs__get64(in->pre + 8), in->address, st);
}

static void incoming__read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct incoming *in = st->data;
    if (nread == 0 || in->state == I_DONE) return;
    if (in->state == I_AUTH) {
        int rv = rt_auth__read(in->auth, in->tcp, nread, incoming__auth_written, in);
        if (rv < 0) incoming__abort(in);
        else if (rv == CV_AUTH_HS_DONE) in->state = I_PREAMBLE;
        return;
    }
    if (nread < 0) {
        incoming__abort(in);
        return;
    }
    in->nread += (size_t)nread;
    if (in->state == I_PREAMBLE && in->nread == HS_WORDS && incoming__preamble(in)) {
        CV_DEBUG("raft: an accepted peer sent no raft handshake; dropped");
        incoming__abort(in);
    } else if (in->state == I_ADDRESS && in->nread == in->len) {
        in->address[in->len] = '\0';
        incoming__hand(in);
    }
}

static void incoming__deadline(uv_timer_t *t)
{
    struct incoming *in = t->data;
    if (in->state == I_DONE) return;
    char peer[64];
    rt__peer(in->tcp, peer, sizeof peer);
    if (in->state == I_AUTH) cv_guard_fail(CV_AUTH_R_CLOSED, "raft", peer);
    else CV_DEBUG("raft: %s did not send its raft handshake in time; dropped", peer);
    incoming__abort(in);
}

/* Admits (protected mode) and starts reading; a refusal is counted by the guard. */
static int incoming__start(struct incoming *in)
{
    struct rafttcp *rt = in->rt;
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(in->tcp, (struct sockaddr *)&ss, &len) ||
        !cv_guard_admit(rt->guard, (struct sockaddr *)&ss, "raft"))
        return -1;
    uv_tcp_nodelay(in->tcp, 1);
    in->state = I_PREAMBLE;
    if (rt->guard && rt->guard->secret) {
        in->state = I_AUTH;
        in->auth = rt_auth__new(rt->guard->secret, CV_AUTH_SERVER);
        if (!in->auth || rt_auth__flush(in->auth, (uv_stream_t *)in->tcp, incoming__auth_written, in)) return -1;
    }
    if (uv_read_start((uv_stream_t *)in->tcp, incoming__alloc, incoming__read)) return -1;
    uv_timer_start(&in->timer, incoming__deadline, RT_HS_MS, 0);
    return 0;
}

static void rafttcp__on_connection(uv_stream_t *l, int status)
{
    struct rafttcp *rt = l->data;
    struct incoming *in = status == 0 ? calloc(1, sizeof *in) : NULL;
    uv_tcp_t *tcp = in ? raft_malloc(sizeof *tcp) : NULL;
    if (!tcp || uv_tcp_init(rt->loop, tcp)) {
        CV_WARN("raft: cannot accept a connection: %s", status ? uv_strerror(status) : "out of memory");
        raft_free(tcp);
        free(in);
        return;
    }
    in->rt = rt;
    in->tcp = tcp;
    tcp->data = in;
    uv_timer_init(rt->loop, &in->timer);
    in->timer.data = in;
    in->open = 2;
    in->next = rt->incomings;
    if (rt->incomings) rt->incomings->prev = in;
    rt->incomings = in;
    if (uv_accept(l, (uv_stream_t *)tcp) || incoming__start(in)) incoming__abort(in);
}

static void rafttcp__listener_closed(uv_handle_t *h)
{
    struct rafttcp *rt = h->data;
    rt->listener_open = false;
    rafttcp__maybe_closed(rt);
}

/* Our listener replaces libraft's (whose accept we could not put a handshake in front of). */
static int rafttcp__listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
    struct rafttcp *rt = rafttcp__find(t);
    const char *addr = rt->bind ? rt->bind : rt->address;
    struct sockaddr_storage ss;
    if (!addr || cv_addr_resolve_listen(addr, &ss)) {
        snprintf(t->errmsg, sizeof t->errmsg, "raft: bad listen address '%s'", addr ? addr : "(null)");
        return RAFT_INVALID;
    }
    rt->accept_cb = cb;
    uv_tcp_init(rt->loop, &rt->listener);
    rt->listener.data = rt;
    rt->listener_open = true;
    int rv = uv_tcp_bind(&rt->listener, (struct sockaddr *)&ss, 0);
    if (!rv) rv = uv_listen((uv_stream_t *)&rt->listener, 128, rafttcp__on_connection);
    if (rv) {
        snprintf(t->errmsg, sizeof t->errmsg, "raft: cannot listen on %s: %s", addr, uv_strerror(rv));
        uv_close((uv_handle_t *)&rt->listener, rafttcp__listener_closed);
        return RAFT_IOERR;
    }
    rt->listening = true;
    return 0;
}

/* ---------------------------------------------------------------------------------------------------
 * The transport's functions. */

static int rafttcp__connect(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id,
                            const char *address, raft_uv_connect_cb cb)
{
    struct rafttcp *rt = rafttcp__find(t);
    struct sockaddr_storage ss;
    if (cv_addr_resolve(address, &ss) != 0) {
        if (!rt->guard || !rt->guard->secret) return rt->inner_connect(t, req, id, address, cb);
        snprintf(t->errmsg, sizeof t->errmsg, "%s: with a cluster secret raft addresses must be numeric", address);
        return RAFT_NOCONNECTION;
    }
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
    if (!rt->closing || rt->inner_open || rt->dials || rt->incomings || rt->listener_open) return;
    struct raft_uv_transport *t = rt->t;
    raft_uv_transport_close_cb cb = rt->close_cb;
    struct rafttcp **p = &rafttcps;
    while (*p != rt) p = &(*p)->next;
    *p = rt->next;
    t->init = rt->inner_init;
    t->connect = rt->inner_connect;
    t->listen = rt->inner_listen;
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
        if (s == D_CONNECTING || s == D_AUTHENTICATING || s == D_HANDSHAKING) dial__abort(d, RAFT_CANCELED);
    }
    for (struct incoming *in = rt->incomings; in; in = in->next) incoming__abort(in);
    if (rt->listening) {
        rt->listening = false;
        uv_close((uv_handle_t *)&rt->listener, rafttcp__listener_closed);
    }
    rt->inner_open = true;
    rt->inner_close(t, rafttcp__inner_closed); /* may finish at once: rt is not touched after it */
}

int cv_rafttcp_live(struct raft_uv_transport *t, uv_loop_t *loop, const struct cv_guard *g, const char *bind_address)
{
    struct rafttcp *rt = rafttcp__find(t); /* left over by a transport at this address never closed */
    if (t->connect == rafttcp__connect) return CV_EINVAL; /* already ours */
    if (!rt) {
        rt = malloc(sizeof *rt);
        if (!rt) {
            CV_ERROR("raft: no memory for the transport");
            return CV_ENOMEM;
        }
        rt->next = rafttcps;
        rafttcps = rt;
    }
    struct rafttcp *next = rt->next;
    *rt = (struct rafttcp){.t = t, .next = next, .loop = loop, .inner_init = t->init,
                           .inner_connect = t->connect, .inner_listen = t->listen, .inner_close = t->close,
                           .guard = g, .bind = bind_address};
    t->init = rafttcp__init;
    t->connect = rafttcp__connect;
    t->listen = rafttcp__listen;
    t->close = rafttcp__close;
    return 0;
}
