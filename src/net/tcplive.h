/* TCP liveness: a bound on how long sent data may stay unacknowledged before the kernel drops the
 * connection, so that a connection that went silent (a partition) is dialled again at once when the
 * network heals instead of waiting for TCP's next retransmission (exponential backoff: ~10 s after a 15 s
 * cut, up to 2 minutes). */
#ifndef CV_NET_TCPLIVE_H
#define CV_NET_TCPLIVE_H

#include <uv.h>

/* Sent data unacknowledged this long ends the connection (TCP_USER_TIMEOUT). Several of TCP's minimum
 * retransmission timeouts (200 ms), so one lost packet on a real network never ends a healthy connection;
 * well below the time a partition lasts. */
#define CV_TCP_LIVE_MS 1000u

/* Sets the bound on a connected (or connecting) TCP stream. 0, or CV_EIO if the socket refuses it. */
int cv_tcp_live(uv_stream_t *stream);

#endif
