/* Signed node HTTP requests: an HMAC-SHA256 "Authorization: Cverse-HMAC ..." header over the request, and its check. */
#ifndef CV_AUTH_SIGN_H
#define CV_AUTH_SIGN_H

#include <stddef.h>
#include <stdint.h>

#include "auth/secret.h"

/* The header's value: "Cverse-HMAC ts=<unix seconds>,nonce=<32 hex>,mac=<64 hex>", mac = HMAC-SHA256(key,
 * METHOD "\n" TARGET "\n" ts "\n" nonce "\n" hex(SHA-256(body))). TARGET: the request target as sent, i.e.
 * the path still percent-encoded and, when the query is not empty, "?" and the query ("/v1/events?after=7";
 * an admin POST's is its path). Signing the query keeps a captured read from being turned into another. */
#define CV_SIGN_SCHEME "Cverse-HMAC"
#define CV_SIGN_WINDOW_S 60 /* |now - ts| allowed */
#define CV_SIGN_MAX 160     /* room for the header value, NUL included */
#define CV_SIGN_REPLAY 1024 /* nonces remembered */

/* Writes the header value for a request into out (>= CV_SIGN_MAX); a fresh nonce each time. */
void cv_sign_request(const struct cv_secret *k, const char *method, const char *target, const void *body,
                     size_t len, uint64_t now_s, char out[CV_SIGN_MAX]);
/* A whole header line for an HTTP request: "Authorization: <value>\r\n" (>= CV_SIGN_MAX + 20). */
void cv_sign_header_line(const struct cv_secret *k, const char *method, const char *target, const void *body,
                         size_t len, uint64_t now_s, char *out, size_t outlen);
/* The request target of url ("http://host:port/v1/x?q" -> "/v1/x?q"; no path -> "/"; a fragment and an empty
 * query's "?" are not part of it) into out. CV_ERANGE if it does not fit. */
int cv_sign_url_target(const char *url, char *out, size_t outlen);
/* The extra headers of a request to url: the signature's line (k not NULL; signed over url's target, now)
 * followed by extra (NULL: none), into out (>= CV_SIGN_MAX + 20 + strlen(extra)). Returns out, or NULL when
 * there is nothing to add (no k, no extra) or it does not fit (then a request without them is refused
 * by a node with a secret, which says why). For clients of nodes: the inspector, cverse-stress, the gate. */
const char *cv_sign_url_headers(const struct cv_secret *k, const char *method, const char *url, const void *body,
                                size_t len, const char *extra, char *out, size_t outlen);

/* The nonces seen lately (plain data; zero it to start). */
struct cv_sign_replay {
    uint8_t nonce[CV_SIGN_REPLAY][16];
    uint64_t ts[CV_SIGN_REPLAY];
    unsigned next;
};

/* Checks a request's Authorization value: 0, or CV_EAUTH with *why set ("missing", "malformed", "expired",
 * "bad signature", "replayed", "busy": the cache holds only in-window nonces). With rc, a valid request's
 * nonce is remembered in rc (a second use is refused as long as its ts is within the window); rc NULL: no
 * replay check (reads, node/httpauth.c says why), only the signature and the time window. */
int cv_sign_verify(const struct cv_secret *k, struct cv_sign_replay *rc, const char *authz, const char *method,
                   const char *target, const void *body, size_t len, uint64_t now_s, const char **why);

#endif
