/* Signed node HTTP requests (sign.h).
 *
 * Why: a node's admin endpoints change the shard assignment and its reads show the whole cluster; with a
 * cluster secret, only someone who has it (the operator's CLI, the inspector, cverse-stress, gates) may
 * call them, even from a host that reaches the HTTP port. Happy path: the client signs method, request
 * target (path and query), a timestamp, a fresh nonce and the body's SHA-256 with
 * HMAC-SHA256 (libsodium); the node recomputes it, compares in constant time, checks the timestamp is
 * within +-60 s and, for requests that change something, that the nonce was not used in that window (a
 * captured request cannot be replayed; reads skip that check: node/httpauth.c).
 * Failure modes: CV_EAUTH with a short reason (the node answers 401). The replay cache is a ring of the
 * last CV_SIGN_REPLAY nonces: a nonce evicted while its ts is still in the window could be replayed, so
 * verification refuses (CV_EAUTH "busy") rather than evict one that recent -- at most 1024 signed admin
 * requests a minute, far above any operator's rate. */
#include "auth/sign.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"
#include "util/log.h"

static void sign__mac(const struct cv_secret *k, const char *method, const char *path, const char *ts,
                      const char *nonce_hex, const void *body, size_t len, uint8_t mac[32])
{
    uint8_t h[crypto_hash_sha256_BYTES];
    char hhex[2 * sizeof h + 1];
    crypto_hash_sha256(h, body ? body : (const void *)"", body ? len : 0);
    sodium_bin2hex(hhex, sizeof hhex, h, sizeof h);
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, k->key, sizeof k->key);
    const char *parts[] = {method, path, ts, nonce_hex, hhex};
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
        crypto_auth_hmacsha256_update(&st, (const uint8_t *)parts[i], strlen(parts[i]));
        crypto_auth_hmacsha256_update(&st, (const uint8_t *)"\n", 1);
    }
    crypto_auth_hmacsha256_final(&st, mac);
}

void cv_sign_request(const struct cv_secret *k, const char *method, const char *target, const void *body,
                     size_t len, uint64_t now_s, char out[CV_SIGN_MAX])
{
    uint8_t nonce[16], mac[32];
    char nhex[33], mhex[65], ts[24];
    if (sodium_init() < 0) abort(); /* cannot happen once a secret loaded */
    randombytes_buf(nonce, sizeof nonce);
    sodium_bin2hex(nhex, sizeof nhex, nonce, sizeof nonce);
    snprintf(ts, sizeof ts, "%llu", (unsigned long long)now_s);
    sign__mac(k, method, target, ts, nhex, body, len, mac);
    sodium_bin2hex(mhex, sizeof mhex, mac, sizeof mac);
    snprintf(out, CV_SIGN_MAX, CV_SIGN_SCHEME " ts=%s,nonce=%s,mac=%s", ts, nhex, mhex);
}

void cv_sign_header_line(const struct cv_secret *k, const char *method, const char *target, const void *body,
                         size_t len, uint64_t now_s, char *out, size_t outlen)
{
    char v[CV_SIGN_MAX];
    cv_sign_request(k, method, target, body, len, now_s, v);
    snprintf(out, outlen, "Authorization: %s\r\n", v);
}

/* "ts=..,nonce=..,mac=.." after the scheme: ts decimal, nonce 32 hex, mac 64 hex. */
static int sign__parse(const char *authz, char ts[24], uint8_t nonce[16], char nhex[33], uint8_t mac[32])
{
    size_t sl = strlen(CV_SIGN_SCHEME);
    char mhex[65];
    if (strncmp(authz, CV_SIGN_SCHEME " ", sl + 1) != 0) return -1;
    if (sscanf(authz + sl + 1, "ts=%20[0-9],nonce=%32[0-9a-f],mac=%64[0-9a-f]", ts, nhex, mhex) != 3) return -1;
    if (strlen(nhex) != 32 || strlen(mhex) != 64) return -1;
    if (sodium_hex2bin(nonce, 16, nhex, 32, NULL, NULL, NULL) || sodium_hex2bin(mac, 32, mhex, 64, NULL, NULL, NULL))
        return -1;
    return 0;
}

/* 0 if the nonce is new (then remembered), -1 replayed, -2 the cache is full of in-window nonces. */
static int sign__remember(struct cv_sign_replay *rc, const uint8_t nonce[16], uint64_t ts, uint64_t now_s)
{
    for (unsigned i = 0; i < CV_SIGN_REPLAY; i++)
        if (rc->ts[i] && memcmp(rc->nonce[i], nonce, 16) == 0) return -1;
    unsigned slot = rc->next % CV_SIGN_REPLAY;
    if (rc->ts[slot] && rc->ts[slot] + 2 * CV_SIGN_WINDOW_S >= now_s) return -2;
    memcpy(rc->nonce[slot], nonce, 16);
    rc->ts[slot] = ts ? ts : 1;
    rc->next = slot + 1;
    return 0;
}

int cv_sign_url_target(const char *url, char *out, size_t outlen)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    p += strcspn(p, "/?#"); /* past the authority */
    size_t n = strcspn(p, "#");
    if (n && p[n - 1] == '?') n--; /* "/x?" is sent as "/x?" but parsed with an empty query: sign "/x" */
    int w = *p == '/' ? snprintf(out, outlen, "%.*s", (int)n, p) : snprintf(out, outlen, "/%.*s", (int)n, p);
    return w < 0 || (size_t)w >= outlen ? CV_ERANGE : 0;
}

const char *cv_sign_url_headers(const struct cv_secret *k, const char *method, const char *url, const void *body,
                                size_t len, const char *extra, char *out, size_t outlen)
{
    char target[4096];
    size_t used = 0;
    if (!k && !extra) return NULL;
    out[0] = '\0';
    if (k) {
        char v[CV_SIGN_MAX];
        if (cv_sign_url_target(url, target, sizeof target)) return NULL;
        cv_sign_request(k, method, target, body, len, cv_now_ms() / 1000, v);
        int w = snprintf(out, outlen, "Authorization: %s\r\n", v);
        if (w < 0 || (size_t)w >= outlen) return NULL;
        used = (size_t)w;
    }
    int w = snprintf(out + used, outlen - used, "%s", extra ? extra : "");
    return w < 0 || (size_t)w >= outlen - used ? NULL : out;
}

int cv_sign_verify(const struct cv_secret *k, struct cv_sign_replay *rc, const char *authz, const char *method,
                   const char *target, const void *body, size_t len, uint64_t now_s, const char **why)
{
    char ts[24], nhex[33];
    uint8_t nonce[16], mac[32], want[32];
    if (!authz || !*authz) return *why = "missing", CV_EAUTH;
    if (sign__parse(authz, ts, nonce, nhex, mac)) return *why = "malformed", CV_EAUTH;
    uint64_t t = strtoull(ts, NULL, 10);
    if (t + CV_SIGN_WINDOW_S < now_s || t > now_s + CV_SIGN_WINDOW_S) return *why = "expired", CV_EAUTH;
    sign__mac(k, method, target, ts, nhex, body, len, want);
    if (sodium_memcmp(want, mac, sizeof mac) != 0) return *why = "bad signature", CV_EAUTH;
    if (!rc) return 0;
    int r = sign__remember(rc, nonce, t, now_s);
    if (r == -1) return *why = "replayed", CV_EAUTH;
    if (r == -2) return *why = "busy", CV_EAUTH;
    return 0;
}
