/* TCP liveness: bounds on how long a connection attempt may stay unanswered and how long sent data may stay
 * unacknowledged, so that a connection cut by a partition (or dialled during one) is dialled again as soon as
 * the network heals instead of waiting for TCP's next retransmission (exponential backoff: ~10 s after a
 * 15 s cut, up to 2 minutes). */
#ifndef CV_NET_TCPLIVE_H
#define CV_NET_TCPLIVE_H

#include <stdbool.h>
#include <uv.h>

/* Sent data unacknowledged this long ends the connection (TCP_USER_TIMEOUT). Several of TCP's minimum
 * retransmission timeouts (200 ms), so one lost packet on a real network never ends a healthy connection;
 * well below the time a partition lasts. Set before connecting it also bounds the SYN's retransmissions
 * (Linux: the attempt fails with ETIMEDOUT at the first retransmission, ~1 s). */
#define CV_TCP_LIVE_MS 1000u

/* A connection attempt without an answer (SYN sent, nothing back) this long is abandoned by its owner, who
 * dials again after its retry delay: the SYN that goes out after a heal is at most this plus the retry delay
 * away. Twice the default raft election timeout (150 ms): a network whose round trip comes near it could
 * not run raft with those timeouts either, and a lost SYN costs one retry delay (TCP itself would resend it
 * only after 1 s). */
#define CV_TCP_CONNECT_MS 300u

/* Sets the bound on a connected (or connecting) TCP stream. 0, or CV_EIO if the socket refuses it. */
int cv_tcp_live(uv_stream_t *stream);

/* uv_tcp_init with the socket created at once (for addr's family) and the bound already set, so that it also
 * holds for the SYN of a uv_tcp_connect to addr. 0, or CV_EIO (tcp is then not initialized: no close). */
int cv_tcp_live_init(uv_loop_t *loop, uv_tcp_t *tcp, const struct sockaddr *addr);

/* True while a connect on tcp has had no answer yet (not writable: neither connected nor failed). The
 * connect deadline's check: after a loop stall longer than the deadline the timer runs before the I/O
 * callbacks, and a connection that was in fact made must not be abandoned. */
bool cv_tcp_connecting(const uv_tcp_t *tcp);

#endif
