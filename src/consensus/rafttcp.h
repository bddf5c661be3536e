/* libraft's TCP transport made cverse's: a bounded connect (cverse dials raft peers itself: socket bounded by
 * net/tcplive.h before the SYN, a connect deadline, libraft's handshake), so that raft re-dials a peer
 * within a second of a partition healing, and a listener of cverse's own, so that every raft connection,
 * both directions, passes the cluster guard (auth/guard.h: the handshake, protected mode) first. */
#ifndef CV_CONSENSUS_RAFTTCP_H
#define CV_CONSENSUS_RAFTTCP_H

#include <raft/uv.h>
#include <uv.h>

struct cv_guard;

/* After raft_uv_tcp_init(t, loop), before raft_uv_init: t's outgoing connections are dialled and its
 * incoming ones accepted by cverse on loop (libraft keeps each stream once its own handshake went
 * through). g (borrowed until t closed; NULL: any peer, no handshake) guards both directions: with
 * g->secret the cluster handshake runs before libraft's on every connection; with g->loopback_only
 * accepted peers not on a loopback address are dropped. bind_address (borrowed likewise; NULL: the
 * server's raft address) is where the listener binds. The extra state lives until t's close callback
 * (raft_close) has run; then t is libraft's again. 0, CV_ENOMEM (t stays libraft's), CV_EINVAL (t is
 * already cverse's). Use on the loop's thread only. */
int cv_rafttcp_live(struct raft_uv_transport *t, uv_loop_t *loop, const struct cv_guard *g, const char *bind_address);

#endif
