/* Widens the listen backlog of libraft's TCP transport.
 *
 * Why: libraft 0.22.1 (src/uv_tcp_listen.c) calls uv_listen with a backlog of 1. Followers send to a
 * leader over connections of their own, opened on their first message to it; so right after an
 * election every follower that never talked to the new leader (standbys, mostly) connects to it at the
 * same moment. With room for one or two pending connections the kernel drops the other handshakes and
 * the clients retry only after TCP's initial retransmission timeout of ONE SECOND: measured on the
 * failover bench, 2-3 followers applied the new leader's entries ~1 s late and fenced (their renewals
 * could not reach it), which made leader failover ~0.5-1 s slower than the lease rules allow.
 *
 * Happy path: after raft_start (the transport listens by then), walk the loop's handles, find the
 * listening TCP sockets bound to the raft port and call listen(2) again with a wider backlog: on Linux
 * (and the BSDs) listen on a listening socket just updates its backlog; libuv's watcher is untouched.
 * Failure modes: none found (a future libraft listening elsewhere): nothing changes, the caller logs.
 */
#include "consensus/backlog.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include "cverse/error.h"
#include "util/addr.h"

struct walk {
    uint16_t port;
    int backlog, changed;
};

static uint16_t backlog__port(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    if (ss->ss_family == AF_INET6) return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    return 0;
}

static void backlog__visit(uv_handle_t *h, void *arg)
{
    struct walk *w = arg;
    uv_os_fd_t fd;
    if (h->type != UV_TCP || uv_fileno(h, &fd) != 0) return;
    int listening = 0;
    socklen_t len = sizeof listening;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening) return;
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    if (uv_tcp_getsockname((uv_tcp_t *)h, (struct sockaddr *)&ss, &sl) != 0) return;
    if (backlog__port(&ss) != w->port) return;
    if (listen(fd, w->backlog) == 0) w->changed++;
}

int cv_backlog_widen(uv_loop_t *loop, const char *bind_addr, int backlog)
{
    struct sockaddr_storage ss;
    if (cv_addr_resolve_listen(bind_addr, &ss) != 0) return CV_EINVAL;
    struct walk w = {backlog__port(&ss), backlog, 0};
    uv_walk(loop, backlog__visit, &w);
    return w.changed;
}
