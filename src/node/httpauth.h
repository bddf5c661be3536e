/* Who may use a node's HTTP API: with a cluster secret, every request but the probes must be signed with it. */
#ifndef CV_NODE_HTTPAUTH_H
#define CV_NODE_HTTPAUTH_H

#include <stdbool.h>
#include <stdint.h>

#include "auth/secret.h"
#include "auth/sign.h"
#include "net/http.h"

/* true for the paths anyone who reaches the port may read without a signature: /health, /healthz, /ready,
 * /metrics (load balancers, orchestrators' probes and Prometheus have no secret; they show no object data). */
bool cv_httpauth_open(const char *path);

/* The request target a signature covers (auth/sign.h): raw_path, and "?query" when the query is not empty.
 * CV_ERANGE if it does not fit in out. */
int cv_httpauth_target(const struct cv_http_request *req, char *out, size_t outlen);

/* The decision, without I/O: 0 if req may go on under secret k (NULL: no secret, everything may), else
 * CV_EAUTH with *why ("missing", "expired", "bad signature", "replayed", ...). Reads (GET, HEAD) are
 * checked for signature and time window only; other methods also against rc (each nonce once). */
int cv_httpauth_verify(const struct cv_secret *k, struct cv_sign_replay *rc, const struct cv_http_request *req,
                       uint64_t now_s, const char **why);

/* The node's check, before any route: 0 if req may be served (no cluster secret: protected mode decides
 * who reaches the port; or an open path; or a valid signature). Else x was answered 401 UNAUTHENTICATED
 * with "WWW-Authenticate: Cverse-HMAC", the refusal counted in cverse_auth_failures_total{reason="signature"}
 * and logged (at most once a second), and CV_EAUTH is returned. The process' replay cache is this module's. */
int cv_httpauth_check(struct cv_http_exchange *x, const struct cv_http_request *req);

#endif
