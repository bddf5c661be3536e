/* The framed TCP stream under rpc.c (internal to src/net): coalesced writes, a frame reader, and the pre-frame
 * phase where the cluster handshake (auth/handshake.h) runs before any frame is read or written, and an
 * optional TLS layer (net/tls.h) under both: bytes read are deciphered first, bytes written enciphered last. */
#ifndef CV_NET_RPCSOCK_H
#define CV_NET_RPCSOCK_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "auth/handshake.h"
#include "net/frame.h"
#include "net/tls.h"

#define CV_RPC_READ_CHUNK (64 * 1024)

struct cv_rpc_buf {
    uint8_t *p;
    size_t len, cap;
};

struct cv_rpc_sock;
typedef void (*cv_rpc_frame_fn)(struct cv_rpc_sock *s, Cverse__Rpc__Frame *f);
typedef void (*cv_rpc_ready_fn)(struct cv_rpc_sock *s);

struct cv_rpc_sock {
    uv_tcp_t tcp;            /* tcp.data points to the sock; the sock is the first member of its owner */
    uv_write_t wreq;
    struct cv_frame_reader rd;
    struct cv_rpc_buf out;     /* encoded frames waiting for the next write */
    struct cv_rpc_buf wr;      /* bytes of the write in flight */
    int writing;
    int corked;              /* > 0 while a read callback dispatches: its replies leave in one write */
    int deferred;            /* the owner's flusher writes what cv_rpc_sock_send queued, once per iteration */
    int closing;             /* uv_close called */
    char *rbuf;              /* CV_RPC_READ_CHUNK bytes owned by the server / client */
    cv_rpc_frame_fn on_frame;
    uv_close_cb on_close;
    struct cv_auth_hs *hs;   /* owned: the handshake in progress (cv_rpc_sock_handshake), else NULL */
    cv_rpc_ready_fn on_ready; /* the handshake passed: frames may flow */
    struct cv_tls *tls;      /* owned: the TLS session (cv_rpc_sock_tls), else NULL: plain */
    cv_rpc_ready_fn on_tls;  /* the TLS handshake completed (optional) */
    int tls_up;              /* the TLS handshake completed */
    char tls_err[160];       /* why TLS failed ("" if it did not): the socket closes after it */
    uint64_t last_io;        /* uv_now of the last read or completed write */
    uint64_t partial_since;  /* uv_now when the frame reader began holding part of a frame; 0: none */
};

enum { CV_RPC_CUT_REQUEST = 1, CV_RPC_CUT_IDLE = 2 };

/* dial: the address a client socket will connect to (its socket is created now, bounded by tcplive.h), or
 * NULL for a socket accept() fills. rbuf: CV_RPC_READ_CHUNK bytes, borrowed for the socket's life. */
int cv_rpc_sock_init(uv_loop_t *loop, struct cv_rpc_sock *s, const struct sockaddr *dial, char *rbuf,
                     cv_rpc_frame_fn on_frame, uv_close_cb on_close);
/* Releases buffers; called from the close callback (the handle is dead). */
void cv_rpc_sock_free(struct cv_rpc_sock *s);
/* "host:port" of the peer into out. */
void cv_rpc_sock_peer(const struct cv_rpc_sock *s, char *out, size_t n);
/* Flushes what is queued, then closes (once). */
void cv_rpc_sock_close(struct cv_rpc_sock *s);
/* Starts a write of everything queued unless one is in flight. */
void cv_rpc_sock_flush(struct cv_rpc_sock *s);
/* Queues frame f (CV_ECLOSED, CV_ETOOBIG, CV_ENOMEM) and flushes unless deferred. */
int cv_rpc_sock_send(struct cv_rpc_sock *s, const Cverse__Rpc__Frame *f);
/* Starts reading (no delay, keep-alive / user timeout). */
int cv_rpc_sock_start(struct cv_rpc_sock *s);
/* Enters the pre-frame phase: our HELLO is written now; frames are read only after the peer's PROOF
 * verified, then on_ready(s) runs (a client marks itself connected there). A failed handshake is counted
 * and logged (auth/guard.h, what "rpc") and closes s. sec is copied. CV_ENOMEM. */
int cv_rpc_sock_handshake(struct cv_rpc_sock *s, const struct cv_secret *sec, enum cv_auth_role role,
                          cv_rpc_ready_fn on_ready);

/* Whether s is to be cut at now: CV_RPC_CUT_REQUEST when a frame it began request_ms ago is still not
 * whole, CV_RPC_CUT_IDLE when nothing was read or written for idle_ms; 0 otherwise (a limit 0: none). */
int cv_rpc_sock_overdue(const struct cv_rpc_sock *s, uint64_t now, unsigned request_ms, unsigned idle_ms);
/* Puts TLS under the socket (before cv_rpc_sock_handshake, which then runs inside it): ctx borrowed (a
 * reference is kept), host the name a client checks (NULL on a server). A client's first handshake bytes
 * are written now; on_tls(s) runs once the TLS handshake completed (a client starts the next phase there).
 * A failed TLS handshake or record keeps its reason in s->tls_err and closes s. CV_ENOMEM, CV_EINVAL. */
int cv_rpc_sock_tls(struct cv_rpc_sock *s, struct cv_tls_ctx *ctx, const char *host, cv_rpc_ready_fn on_tls);

#endif
