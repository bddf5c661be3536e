/* TCP liveness (see tcplive.h). Happy path: TCP_USER_TIMEOUT = CV_TCP_LIVE_MS on the stream's socket;
 * from then on, data that stays unacknowledged that long makes the kernel abort the connection (ETIMEDOUT
 * on the next read or write), and the owner dials again. Without it a connection cut by a partition
 * stays "established" while TCP backs off its retransmissions (0.2 s, 0.4 s, ... doubling), so after the
 * heal nothing flows until the next retransmission: measured 11.7 s after a 15 s cut (docs/partitions.md).
 * Failure modes: a stream that is not a TCP socket, or a kernel without TCP_USER_TIMEOUT (Linux < 2.6.37):
 * CV_EIO, and the connection keeps TCP's own timeouts. */
#include "net/tcplive.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "cverse/error.h"

int cv_tcp_live(uv_stream_t *stream)
{
    uv_os_fd_t fd;
    unsigned ms = CV_TCP_LIVE_MS;
    if (uv_fileno((uv_handle_t *)stream, &fd) != 0) return CV_EIO;
    return setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof ms) == 0 ? 0 : CV_EIO;
}
