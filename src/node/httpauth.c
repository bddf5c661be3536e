/* The node's HTTP authentication (httpauth.h): one check in front of every route of the node's HTTP API.
 *
 * Why: with a cluster secret, the node's reads (/v1/cluster, /v1/shards, /v1/objects/{type}/{id} with
 * object state, /v1/events, /v1/stats) show the whole cluster, and its admin POSTs change it; the secret
 * already keeps strangers off the cluster ports, so the HTTP port asks for it too. Without a secret the
 * node is in protected mode (auth/guard.h: the port answers loopback peers only) and nothing changes here.
 *
 * Happy path: cv_api_handle calls cv_httpauth_check first; an open path (probes, Prometheus) or a request
 * whose "Authorization: Cverse-HMAC ..." verifies (auth/sign.h: method, target, time, nonce, body) goes on.
 *
 * Replays: POSTs (admin actions) go through the replay cache: a captured action cannot be sent again.
 * Reads do not. The cache holds CV_SIGN_REPLAY (1024) nonces per window and refuses ("busy") rather than
 * forget an in-window one; the inspector alone polls 5 documents from every node every second and the
 * CLI, scripts and cverse-stress read too, so reads would fill it and lock the admin actions out. And a
 * replayed read gains an eavesdropper little: node ports are plain HTTP, so whoever can capture a signed
 * read has already seen its answer; replaying it within the +-60 s window returns the same document again,
 * a little newer -- the kind of answer the readers' polls keep carrying over the wire anyway. The target
 * (path and query) is signed, so a captured read cannot be turned into another one. So reads are checked
 * for signature and time window only.
 *
 * Failure modes: a missing, malformed, expired (outside +-60 s) or wrongly signed request, or a replayed
 * or over-rate (cache full) POST: 401 UNAUTHENTICATED with the reason, before any route looks at it. */
#include "node/httpauth.h"

#include <stdio.h>
#include <string.h>

#include "auth/guard.h"
#include "auth/handshake.h"
#include "cverse/error.h"
#include "util/log.h"

bool cv_httpauth_open(const char *path)
{
    static const char *const open[] = {"/health", "/healthz", "/ready", "/metrics"};
    for (size_t i = 0; i < sizeof open / sizeof *open; i++)
        if (strcmp(path, open[i]) == 0) return true;
    return false;
}

int cv_httpauth_target(const struct cv_http_request *req, char *out, size_t outlen)
{
    const char *raw = req->raw_path ? req->raw_path : req->path;
    bool q = req->query && *req->query;
    int n = snprintf(out, outlen, "%s%s%s", raw, q ? "?" : "", q ? req->query : "");
    return n < 0 || (size_t)n >= outlen ? CV_ERANGE : 0;
}

int cv_httpauth_verify(const struct cv_secret *k, struct cv_sign_replay *rc, const struct cv_http_request *req,
                       uint64_t now_s, const char **why)
{
    char target[4096];
    if (!k || cv_httpauth_open(req->path)) return 0;
    if (cv_httpauth_target(req, target, sizeof target)) return *why = "request target too long", CV_EAUTH;
    bool read = strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;
    return cv_sign_verify(k, read ? NULL : rc, req->authorization, req->method, target, req->body, req->body_len,
                          now_s, why);
}

int cv_httpauth_check(struct cv_http_exchange *x, const struct cv_http_request *req)
{
    static struct cv_sign_replay replay; /* the process' POST nonces (one HTTP server per node) */
    const char *why = NULL;
    if (cv_httpauth_verify(cv_guard_cluster()->secret, &replay, req, cv_now_ms() / 1000, &why) == 0) return 0;
    char peer[400], msg[200];
    /* The path as sent (still percent-encoded), control characters masked: whoever reaches the port
     * chooses it, and a decoded "%0a" would forge a line of the node's log. */
    snprintf(peer, sizeof peer, "%s (%s %.200s: %s)", *req->peer ? req->peer : "?", req->method,
             req->raw_path ? req->raw_path : req->path, why);
    for (char *p = peer; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
    cv_guard_fail(CV_AUTH_R_SIGNATURE, "http", peer);
    snprintf(msg, sizeof msg, "requests to a node with a cluster secret must be signed with it (docs/security.md): %s",
             why);
    cv_http_respond_error(x, CV_STATUS_UNAUTHENTICATED, msg, "WWW-Authenticate: " CV_SIGN_SCHEME "\r\n");
    return CV_EAUTH;
}
