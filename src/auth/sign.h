/* Signed admin requests: an HMAC-SHA256 "Authorization: Cverse-HMAC ..." header over the request, and its check. */
#ifndef CV_AUTH_SIGN_H
#define CV_AUTH_SIGN_H

#include <stddef.h>
#include <stdint.h>

#include "auth/secret.h"

/* The header's value: "Cverse-HMAC ts=<unix seconds>,nonce=<32 hex>,mac=<64 hex>", mac = HMAC-SHA256(key,
 * METHOD "\n" PATH "\n" ts "\n" nonce "\n" hex(SHA-256(body))). PATH without the query. */
#define CV_SIGN_SCHEME "Cverse-HMAC"
#define CV_SIGN_WINDOW_S 60 /* |now - ts| allowed */
#define CV_SIGN_MAX 160     /* room for the header value, NUL included */
#define CV_SIGN_REPLAY 1024 /* nonces remembered */

/* Writes the header value for a request into out (>= CV_SIGN_MAX); a fresh nonce each time. */
void cv_sign_request(const struct cv_secret *k, const char *method, const char *path, const void *body,
                     size_t len, uint64_t now_s, char out[CV_SIGN_MAX]);
/* A whole header line for an HTTP request: "Authorization: <value>\r\n" (>= CV_SIGN_MAX + 20). */
void cv_sign_header_line(const struct cv_secret *k, const char *method, const char *path, const void *body,
                         size_t len, uint64_t now_s, char *out, size_t outlen);

/* The nonces seen lately (plain data; zero it to start). */
struct cv_sign_replay {
    uint8_t nonce[CV_SIGN_REPLAY][16];
    uint64_t ts[CV_SIGN_REPLAY];
    unsigned next;
};

/* Checks a request's Authorization value: 0, or CV_EAUTH with *why set ("missing", "malformed", "expired",
 * "bad signature", "replayed", "busy": the cache holds only in-window nonces). A valid request's nonce is remembered in rc (a second use is refused as
 * long as its ts is within the window). */
int cv_sign_verify(const struct cv_secret *k, struct cv_sign_replay *rc, const char *authz, const char *method,
                   const char *path, const void *body, size_t len, uint64_t now_s, const char **why);

#endif
