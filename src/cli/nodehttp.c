/* Blocking HTTP/1.1 requests for the CLI's node commands (cverse drain, remove-node, node-get): connect
 * (addr must resolve locally, as the gate's does), send the request with Connection: close, read until the
 * node closes, split the status line from the body. One request at a time, so no pool, no keep-alive, no loop.
 * Failure modes: a refused connection (CV_EUNAVAIL, errno kept for the message), no complete answer
 * within the timeout (CV_ETIMEDOUT, SO_RCVTIMEO/SO_SNDTIMEO on the socket), an answer that is not
 * HTTP (CV_EPROTO), an answer over CV_CLI_HTTP_MAX (CV_ETOOBIG). With $CVERSE_CLUSTER_SECRET_FILE set, the
 * request is signed with the cluster secret (auth/sign.h: the nodes of a cluster with a secret refuse
 * unsigned requests but /health, /ready and /metrics); a secret file that cannot be read is CV_EINVAL
 * with a line on stderr. */
#include "cli/nodehttp.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "auth/secret.h"
#include "auth/sign.h"
#include "cverse/error.h"
#include "util/addr.h"
#include "util/buf.h"
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

/* Reads until EOF into a growing buffer (NUL-terminated): *buf owned by the caller, also on errors. */
static int nodehttp__read_all(int s, char **buf, size_t *got)
{
    size_t cap = 0;
    *buf = NULL;
    *got = 0;
    for (;;) {
        if (cap - *got < 4096) {
            char *p = realloc(*buf, cap ? 2 * cap : 16384);
            if (!p) return CV_ENOMEM;
            *buf = p;
            cap = cap ? 2 * cap : 16384;
        }
        ssize_t n = read(s, *buf + *got, cap - 1 - *got);
        if (n == 0) break;
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? CV_ETIMEDOUT : CV_EUNAVAIL;
        }
        *got += (size_t)n;
        if (*got > CV_CLI_HTTP_MAX) return CV_ETOOBIG; /* headers and body: at most the limit */
    }
    (*buf)[*got] = '\0';
    return 0;
}

/* The Authorization line for the request when $CVERSE_CLUSTER_SECRET_FILE is set, else "". */
static int nodehttp__sign(const char *method, const char *target, const char *body, char *authz, size_t len)
{
    char err[512];
    struct cv_secret k;
    const char *secret = cv_secret_path(NULL);
    authz[0] = '\0';
    if (!secret) return 0;
    if (cv_secret_load(secret, &k, err, sizeof err)) {
        fprintf(stderr, "cverse: %s\n", err);
        return CV_EINVAL;
    }
    char t[4096]; /* signed as the node reads it: "/x?" has an empty query, the node checks "/x" */
    if (cv_sign_url_target(target, t, sizeof t)) {
        fprintf(stderr, "cverse: the path is longer than %zu bytes: it cannot be signed\n", sizeof t - 1);
        return CV_EINVAL;
    }
    cv_sign_header_line(&k, method, t, body, body ? strlen(body) : 0, cv_now_ms() / 1000, authz, len);
    return 0;
}

/* The status line and the body of an answer read whole (ans, consumed) into out. */
static int nodehttp__split(char *ans, size_t got, struct cv_cli_http_answer *out)
{
    const char *sep = strstr(ans, "\r\n\r\n");
    if (sscanf(ans, "HTTP/1.%*d %d", &out->status) != 1 || !sep) {
        free(ans);
        return CV_EPROTO;
    }
    size_t off = (size_t)(sep + 4 - ans);
    out->len = got - off;
    memmove(ans, ans + off, out->len + 1);
    out->body = ans;
    return 0;
}

int cv_cli_http_request(const char *addr, const char *method, const char *target, const char *body,
                        unsigned timeout_ms, struct cv_cli_http_answer *out)
{
    char authz[CV_SIGN_MAX + 32], *ans = NULL;
    size_t got;
    struct cv_buf req = {0};
    *out = (struct cv_cli_http_answer){0};
    int s, rv = nodehttp__sign(method, target, body, authz, sizeof authz);
    if (rv == 0) rv = nodehttp__connect(addr, timeout_ms, &s);
    if (rv != 0) return rv;
    cv_buf_printf(&req, "%s %s HTTP/1.1\r\nHost: %s\r\n%sConnection: close\r\n", method, target, addr, authz);
    if (body)
        cv_buf_printf(&req, "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s", strlen(body), body);
    else
        cv_buf_printf(&req, "\r\n");
    if (req.oom) rv = CV_ENOMEM;
    else if (write(s, req.p, req.len) != (ssize_t)req.len) rv = errno == EAGAIN ? CV_ETIMEDOUT : CV_EUNAVAIL;
    free(req.p);
    if (rv == 0) rv = nodehttp__read_all(s, &ans, &got);
    close(s);
    if (rv != 0) {
        free(ans);
        return rv;
    }
    return nodehttp__split(ans, got, out);
}

int cv_cli_http_post(const char *addr, const char *path, const char *body, unsigned timeout_ms, int *status,
                     char *resp, size_t resplen)
{
    struct cv_cli_http_answer a;
    int rv = cv_cli_http_request(addr, "POST", path, body, timeout_ms, &a);
    if (rv != 0) return rv;
    *status = a.status;
    snprintf(resp, resplen, "%s", a.body);
    free(a.body);
    return 0;
}
