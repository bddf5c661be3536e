/* The cluster handshake (handshake.h): pure, no I/O; rpc.c and consensus/rafttcp.c drive it on sockets.
 *
 * Happy path: init queues HELLO (magic, version, our nonce) -> the peer's HELLO arrives: its magic and
 * version are checked byte by byte as they come (a peer speaking anything else fails at its first wrong
 * byte, not after a timeout), its nonce kept, our PROOF queued -> the peer's PROOF arrives and verifies:
 * DONE. Both sides send at once, so it costs one round trip after the connect.
 * Why it holds: a PROOF is an HMAC-SHA256 (libsodium) keyed by the secret over both fresh nonces, so it
 * cannot be replayed on another connection; the sender's role is in the MAC, so a server's own proof sent
 * back to it (reflection) fails, and a peer echoing our nonce is refused outright. Verification is
 * crypto_auth_hmacsha256_verify (constant time). Failure modes: CV_EAUTH with hs->reason; the state stays
 * failed (every later feed fails too). */
#include "auth/handshake.h"

#include <sodium.h>
#include <string.h>

#include "cverse/error.h"

#define HS__VERSION 1
static const uint8_t hs__magic[4] = {'C', 'V', 'A', 'H'};
static const char *const hs__labels[2] = {"cverse-auth-v1 client", "cverse-auth-v1 server"};

enum { HS_HELLO, HS_PROOF, HS_DONE, HS_FAILED };

void cv_auth_hs_init(struct cv_auth_hs *hs, const struct cv_secret *sec, enum cv_auth_role role)
{
    memset(hs, 0, sizeof *hs);
    memcpy(hs->key, sec->key, sizeof hs->key);
    hs->role = role;
    hs->state = HS_HELLO;
    if (sodium_init() < 0) {
        hs->state = HS_FAILED; /* cannot happen once a secret loaded (sodium_init ran then) */
        return;
    }
    randombytes_buf(hs->nonce, sizeof hs->nonce);
    memcpy(hs->out, hs__magic, 4);
    hs->out[4] = HS__VERSION;
    memcpy(hs->out + 5, hs->nonce, CV_AUTH_NONCE);
    hs->out_len = CV_AUTH_HELLO;
}

/* HMAC(key, label(role) || client nonce || server nonce). */
static void hs__mac(const struct cv_auth_hs *hs, int role, uint8_t mac[CV_AUTH_MAC])
{
    const uint8_t *cn = hs->role == CV_AUTH_CLIENT ? hs->nonce : hs->peer;
    const uint8_t *sn = hs->role == CV_AUTH_CLIENT ? hs->peer : hs->nonce;
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, hs->key, sizeof hs->key);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *)hs__labels[role], strlen(hs__labels[role]) + 1);
    crypto_auth_hmacsha256_update(&st, cn, CV_AUTH_NONCE);
    crypto_auth_hmacsha256_update(&st, sn, CV_AUTH_NONCE);
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_memzero(&st, sizeof st);
}

static int hs__fail(struct cv_auth_hs *hs, int reason)
{
    hs->state = HS_FAILED;
    hs->reason = reason;
    return CV_EAUTH;
}

size_t cv_auth_hs_want(const struct cv_auth_hs *hs)
{
    if (hs->state == HS_HELLO) return CV_AUTH_HELLO - hs->in_len;
    if (hs->state == HS_PROOF) return CV_AUTH_MAC - hs->in_len;
    return 0;
}

/* The peer's HELLO is whole: keep its nonce, queue our PROOF. */
static int hs__hello(struct cv_auth_hs *hs)
{
    memcpy(hs->peer, hs->in + 5, CV_AUTH_NONCE);
    if (sodium_memcmp(hs->peer, hs->nonce, CV_AUTH_NONCE) == 0) return hs__fail(hs, CV_AUTH_R_NONCE);
    hs__mac(hs, hs->role, hs->out + hs->out_len);
    hs->out_len += CV_AUTH_MAC;
    hs->state = HS_PROOF;
    hs->in_len = 0;
    return CV_AUTH_HS_MORE;
}

static int hs__proof(struct cv_auth_hs *hs)
{
    uint8_t want[CV_AUTH_MAC];
    hs__mac(hs, !hs->role, want);
    /* constant time: a timing difference must not tell how many leading bytes were right */
    int ok = sodium_memcmp(want, hs->in, CV_AUTH_MAC) == 0;
    sodium_memzero(want, sizeof want);
    if (!ok) return hs__fail(hs, CV_AUTH_R_PROOF);
    hs->state = HS_DONE;
    sodium_memzero(hs->key, sizeof hs->key);
    return CV_AUTH_HS_DONE;
}

int cv_auth_hs_feed(struct cv_auth_hs *hs, const void *in, size_t len, size_t *used)
{
    const uint8_t *p = in;
    size_t off = 0;
    int rv = hs->state == HS_DONE ? CV_AUTH_HS_DONE : hs->state == HS_FAILED ? CV_EAUTH : CV_AUTH_HS_MORE;
    while (rv == CV_AUTH_HS_MORE && off < len) {
        size_t n = cv_auth_hs_want(hs);
        if (n > len - off) n = len - off;
        memcpy(hs->in + hs->in_len, p + off, n);
        off += n;
        size_t before = hs->in_len;
        hs->in_len += n;
        if (hs->state == HS_HELLO) {
            for (size_t i = before; i < hs->in_len && i < 5; i++)
                if (hs->in[i] != (i < 4 ? hs__magic[i] : HS__VERSION)) rv = hs__fail(hs, CV_AUTH_R_MAGIC);
            if (rv == CV_AUTH_HS_MORE && hs->in_len == CV_AUTH_HELLO) rv = hs__hello(hs);
        } else if (hs->in_len == CV_AUTH_MAC) {
            rv = hs__proof(hs);
        }
    }
    if (used) *used = off;
    return rv;
}

size_t cv_auth_hs_take(struct cv_auth_hs *hs, uint8_t *buf)
{
    size_t n = hs->out_len;
    memcpy(buf, hs->out, n);
    hs->out_len = 0;
    return n;
}

const char *cv_auth_reason_name(int reason)
{
    static const char *const names[CV_AUTH_R_N] = {"magic", "proof", "nonce", "closed", "remote", "signature"};
    return reason >= 0 && reason < CV_AUTH_R_N ? names[reason] : "unknown";
}
