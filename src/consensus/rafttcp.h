/* libraft's TCP transport with a bounded connect: cverse dials raft peers itself (socket bounded by
 * net/tcplive.h before the SYN, a connect deadline, libraft's handshake), so that raft re-dials a peer
 * within a second of a partition healing instead of waiting for TCP's SYN and retransmission backoff. */
#ifndef CV_CONSENSUS_RAFTTCP_H
#define CV_CONSENSUS_RAFTTCP_H

#include <raft/uv.h>
#include <uv.h>

/* After raft_uv_tcp_init(t, loop), before raft_uv_init: t's outgoing connections are dialled by cverse on
 * loop (t's listen, accept and the rest stay libraft's). The extra state lives until t's close callback
 * (raft_close) has run; then t is libraft's again. If that state cannot be allocated, t stays libraft's
 * (a warning is logged). Use on the loop's thread only. */
void cv_rafttcp_live(struct raft_uv_transport *t, uv_loop_t *loop);

#endif
