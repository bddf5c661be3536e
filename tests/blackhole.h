/* A TCP port on 127.0.0.1 that drops every SYN, like a peer behind a partition: a listener whose accept
 * queue is full and never accepts (the kernel drops a SYN for a full queue and the client resends it with
 * TCP's backoff), so a connect to it hangs in SYN-SENT. No traffic leaves the machine. */
#ifndef CV_TESTS_BLACKHOLE_H
#define CV_TESTS_BLACKHOLE_H

/* Header-only, like lsan_check.h. Returns -1 where a call fails; the caller asserts. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct cv_blackhole {
    int listener;
    int fill; /* the one connection the queue holds (backlog 0: one slot) */
    int port;
};

/* Opens the port and fills its queue; waits (poll, up to 2 s) for the filling connection. 0 or -1. */
static inline int cv_blackhole_open(struct cv_blackhole *b)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    b->fill = -1;
    b->listener = socket(AF_INET, SOCK_STREAM, 0);
    if (b->listener < 0 || bind(b->listener, (struct sockaddr *)&sa, sizeof sa) != 0) return -1;
    if (listen(b->listener, 0) != 0 || getsockname(b->listener, (struct sockaddr *)&sa, &len) != 0) return -1;
    b->port = ntohs(sa.sin_port);
    b->fill = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (b->fill < 0) return -1;
    if (connect(b->fill, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS) return -1;
    struct pollfd p = {.fd = b->fill, .events = POLLOUT};
    int err = 0;
    socklen_t elen = sizeof err;
    if (poll(&p, 1, 2000) != 1 || getsockopt(b->fill, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 || err != 0)
        return -1;
    return 0;
}

/* Closes both sockets (the port is free again: a listener may bind it at once with SO_REUSEADDR). */
static inline void cv_blackhole_close(struct cv_blackhole *b)
{
    if (b->fill >= 0) close(b->fill);
    if (b->listener >= 0) close(b->listener);
    b->fill = b->listener = -1;
}

#endif
