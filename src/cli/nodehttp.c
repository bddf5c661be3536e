/* A blocking HTTP/1.1 POST for the CLI's node commands (cverse drain): connect (addr must resolve
 * locally, as the gate's does), send the request with Connection: close, read until the node closes,
 * split the status line from the body. One request per process, so no pool, no keep-alive, no loop.
 * Failure modes: a refused connection (CV_EUNAVAIL, errno kept for the message), no complete answer
 * within the timeout (CV_ETIMEDOUT, SO_RCVTIMEO/SO_SNDTIMEO on the socket), an answer that is not
 * HTTP (CV_EPROTO). With $CVERSE_CLUSTER_SECRET_FILE set, the request is signed with the cluster secret
 * (auth/sign.h: the nodes of a cluster with a secret refuse unsigned admin requests); a secret file that
 * cannot be read is CV_EINVAL with a line on stderr. */
#include "cli/nodehttp.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "auth/secret.h"
#include "auth/sign.h"
#include "cverse/error.h"
#include "util/addr.h"
#include "util/log.h"

static int nodehttp__connect(const char *addr, unsigned timeout_ms, int *fd)
{
    struct sockaddr_storage ss;
    if (cv_addr_resolve(addr, &ss) != 0) return CV_EINVAL;
    int s = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) return CV_EUNAVAIL;
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    socklen_t len = ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (connect(s, (struct sockaddr *)&ss, len) != 0) {
        int e = errno;
        close(s);
        errno = e;
        return e == EINPROGRESS || e == EAGAIN ? CV_ETIMEDOUT : CV_EUNAVAIL;
    }
    *fd = s;
    return 0;
}

/* Reads until EOF into buf (NUL-terminated; what does not fit is read and dropped). */
static int nodehttp__read_all(int s, char *buf, size_t cap, size_t *got)
{
    char drop[512];
    *got = 0;
    for (;;) {
        size_t room = cap - 1 - *got;
        ssize_t n = room ? read(s, buf + *got, room) : read(s, drop, sizeof drop);
        if (n == 0) break;
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? CV_ETIMEDOUT : CV_EUNAVAIL;
        }
        if (room) *got += (size_t)n;
    }
    buf[*got] = '\0';
    return 0;
}

int cv_cli_http_post(const char *addr, const char *path, const char *body, unsigned timeout_ms, int *status,
                     char *resp, size_t resplen)
{
    char req[1024], ans[8192], authz[CV_SIGN_MAX + 32] = "";
    size_t got;
    struct cv_secret k;
    const char *secret = cv_secret_path(NULL);
    if (secret) {
        if (cv_secret_load(secret, &k, ans, sizeof ans)) {
            fprintf(stderr, "cverse: %s\n", ans);
            return CV_EINVAL;
        }
        cv_sign_header_line(&k, "POST", path, body, strlen(body), cv_now_ms() / 1000, authz, sizeof authz);
    }
    int s, rv = nodehttp__connect(addr, timeout_ms, &s);
    if (rv != 0) return rv;
    int n = snprintf(req, sizeof req,
                     "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                     "%sConnection: close\r\n\r\n%s",
                     path, addr, strlen(body), authz, body);
    if (n < 0 || (size_t)n >= sizeof req) rv = CV_EINVAL;
    else if (write(s, req, (size_t)n) != n) rv = errno == EAGAIN ? CV_ETIMEDOUT : CV_EUNAVAIL;
    if (rv == 0) rv = nodehttp__read_all(s, ans, sizeof ans, &got);
    close(s);
    if (rv != 0) return rv;
    const char *sep = strstr(ans, "\r\n\r\n");
    if (sscanf(ans, "HTTP/1.%*d %d", status) != 1 || !sep) return CV_EPROTO;
    snprintf(resp, resplen, "%s", sep + 4);
    return 0;
}
