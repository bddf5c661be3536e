/* libraft's TCP transport with TCP liveness (net/tcplive.h) on every connection it dials, so that raft
 * re-dials a peer as soon as a partition heals instead of waiting for TCP's retransmission backoff. */
#ifndef CV_CONSENSUS_RAFTTCP_H
#define CV_CONSENSUS_RAFTTCP_H

#include <raft/uv.h>

/* After raft_uv_tcp_init(t): routes t's connect through the liveness bound. t keeps its implementation
 * (its impl, listen and close are libraft's). Once per transport, before raft_uv_init. */
void cv_rafttcp_live(struct raft_uv_transport *t);

#endif
