/* The CLI's blocking HTTP requests to a node's HTTP API (Connection: close), signed with the cluster secret. */
#ifndef CV_CLI_NODEHTTP_H
#define CV_CLI_NODEHTTP_H

#include <stddef.h>

#define CV_CLI_HTTP_MAX (64u << 20) /* the largest answer read (the 8192-shard map is 180 KB) */

/* A node's answer: body owned by the caller (free(body)), NUL-terminated, len without the NUL. */
struct cv_cli_http_answer {
    int status;
    char *body;
    size_t len;
};

/* Sends METHOD target (path and query, as sent) to http://addr with body (NULL: none; JSON otherwise) and
 * waits up to timeout_ms for the whole answer. With $CVERSE_CLUSTER_SECRET_FILE set the request is signed
 * with that secret (auth/sign.h; nodes with a secret refuse unsigned requests but their probes). 0 with
 * *out filled; else CV_EINVAL (addr does not resolve, or the secret file cannot be read: a line on stderr),
 * CV_EUNAVAIL (cannot connect: errno says why), CV_ETIMEDOUT, CV_EPROTO (not HTTP), CV_ETOOBIG (over
 * CV_CLI_HTTP_MAX), CV_ENOMEM. */
int cv_cli_http_request(const char *addr, const char *method, const char *target, const char *body,
                        unsigned timeout_ms, struct cv_cli_http_answer *out);

/* POSTs body (JSON) to http://addr/path: as cv_cli_http_request, with *status the HTTP status and resp
 * (NUL-terminated, truncated to resplen) the response body. */
int cv_cli_http_post(const char *addr, const char *path, const char *body, unsigned timeout_ms, int *status,
                     char *resp, size_t resplen);

#endif
