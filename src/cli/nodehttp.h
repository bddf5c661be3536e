/* The CLI's one blocking HTTP request to a node's HTTP API (POST with a JSON body, Connection: close). */
#ifndef CV_CLI_NODEHTTP_H
#define CV_CLI_NODEHTTP_H

#include <stddef.h>

/* POSTs body (JSON) to http://addr/path and waits up to timeout_ms for the whole answer. On success 0,
 * *status the HTTP status and resp (NUL-terminated, truncated to resplen) the response body. Else
 * CV_EINVAL (addr), CV_EUNAVAIL (cannot connect: errno says why), CV_ETIMEDOUT, CV_EPROTO (not HTTP). */
int cv_cli_http_post(const char *addr, const char *path, const char *body, unsigned timeout_ms, int *status,
                     char *resp, size_t resplen);

#endif
