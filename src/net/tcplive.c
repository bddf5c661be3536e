/* TCP liveness (see tcplive.h).
 *
 * Happy path: TCP_USER_TIMEOUT = CV_TCP_LIVE_MS on the stream's socket; from then on, data that stays
 * unacknowledged that long makes the kernel abort the connection (ETIMEDOUT on the next read or write),
 * and the owner dials again. Without it a connection cut by a partition stays "established" while TCP
 * backs off its retransmissions (0.2 s, 0.4 s, ... doubling), so after the heal nothing flows until the
 * next retransmission: measured 11.7 s after a 15 s cut (docs/partitions.md).
 *
 * Dialling: cv_tcp_live_init creates the socket before the connect (uv_tcp_init_ex) so the bound is set
 * before the SYN leaves; a connect made while the peer is unreachable then fails at ~1 s instead of
 * retransmitting its SYN at 1, 3, 7, 15, 31 s. Owners also abandon an attempt at CV_TCP_CONNECT_MS
 * (their own timer, checked with cv_tcp_connecting) and dial again.
 *
 * Failure modes: a stream that is not a TCP socket, or a kernel without TCP_USER_TIMEOUT (Linux <
 * 2.6.37): CV_EIO, and the connection keeps TCP's own timeouts; socket() failing (EMFILE): CV_EIO. */
#include "net/tcplive.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include "cverse/error.h"

static int live_fd(uv_os_fd_t fd)
{
    unsigned ms = CV_TCP_LIVE_MS;
    return setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof ms) == 0 ? 0 : CV_EIO;
}

int cv_tcp_live(uv_stream_t *stream)
{
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)stream, &fd) != 0) return CV_EIO;
    return live_fd(fd);
}

int cv_tcp_live_init(uv_loop_t *loop, uv_tcp_t *tcp, const struct sockaddr *addr)
{
    if (uv_tcp_init_ex(loop, tcp, addr->sa_family) != 0) return CV_EIO;
    /* Without the bound the connection still works, with TCP's own timeouts: not a reason to fail. */
    (void)cv_tcp_live((uv_stream_t *)tcp);
    return 0;
}

bool cv_tcp_connecting(const uv_tcp_t *tcp)
{
    uv_os_fd_t fd;
    if (uv_fileno((const uv_handle_t *)tcp, &fd) != 0) return false;
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    return poll(&p, 1, 0) == 0;
}
