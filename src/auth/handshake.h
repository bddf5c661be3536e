/* The cluster handshake: a pure mutual challenge-response state machine (bytes in -> bytes out / done / failed). */
#ifndef CV_AUTH_HANDSHAKE_H
#define CV_AUTH_HANDSHAKE_H

#include <stddef.h>
#include <stdint.h>

#include "auth/secret.h"

/* Wire format (docs/security.md, "Inside the cluster"): each side first sends HELLO = magic "CVAH",
 * version byte 1, a 32-byte fresh nonce (37 bytes); once it has the peer's HELLO it sends PROOF = 32
 * bytes HMAC-SHA256(key, label || client nonce || server nonce), label "cverse-auth-v1 client" or
 * "... server" by the sender's role. A side is done when the peer's PROOF verified. */
#define CV_AUTH_NONCE 32
#define CV_AUTH_MAC 32
#define CV_AUTH_HELLO (4 + 1 + CV_AUTH_NONCE)

enum cv_auth_role { CV_AUTH_CLIENT = 0, CV_AUTH_SERVER = 1 };

/* Why a handshake failed: an index into the failure counters (cverse_auth_failures_total{reason}). */
enum cv_auth_reason {
    CV_AUTH_R_MAGIC = 0, /* the peer does not speak the cverse handshake (or an old version) */
    CV_AUTH_R_PROOF,     /* wrong proof: another secret (or a reflected proof) */
    CV_AUTH_R_NONCE,     /* the peer echoed our own nonce */
    CV_AUTH_R_CLOSED,    /* the peer left or stalled before the handshake completed */
    CV_AUTH_R_REMOTE,    /* protected mode: a non-loopback peer without a secret configured */
    CV_AUTH_R_SIGNATURE, /* an HTTP request to a node without a valid cluster-secret signature (auth/sign.h) */
    CV_AUTH_R_N
};

enum { CV_AUTH_HS_MORE = 0, CV_AUTH_HS_DONE = 1 };

/* One side's state; plain data (embed it, no free). */
struct cv_auth_hs {
    uint8_t key[CV_AUTH_KEY];
    int role;
    int state;
    int reason;                   /* enum cv_auth_reason once failed */
    uint8_t nonce[CV_AUTH_NONCE]; /* ours */
    uint8_t peer[CV_AUTH_NONCE];
    uint8_t in[CV_AUTH_HELLO];    /* the peer's message being assembled */
    size_t in_len;
    uint8_t out[CV_AUTH_HELLO + CV_AUTH_MAC]; /* bytes to send not yet taken by cv_auth_hs_take */
    size_t out_len;
};

/* Starts a handshake for role with a fresh nonce (libsodium); the HELLO is ready to send. sec is copied. */
void cv_auth_hs_init(struct cv_auth_hs *hs, const struct cv_secret *sec, enum cv_auth_role role);
/* Feeds received bytes; *used says how many belong to the handshake (the rest, after DONE, are the
 * connection's first frames). CV_AUTH_HS_MORE, CV_AUTH_HS_DONE, or CV_EAUTH (hs->reason says why; the
 * connection must be closed). Check cv_auth_hs_take after every call: a step may have queued a PROOF. */
int cv_auth_hs_feed(struct cv_auth_hs *hs, const void *in, size_t len, size_t *used);
/* How many bytes the next step needs at most (a reader that must not over-read gives exactly these);
 * 0 once done or failed. */
size_t cv_auth_hs_want(const struct cv_auth_hs *hs);
/* Copies the bytes to send into buf (>= sizeof hs->out) and forgets them; returns their count (0: none). */
size_t cv_auth_hs_take(struct cv_auth_hs *hs, uint8_t *buf);
/* "magic", "proof", "nonce", "closed", "remote". */
const char *cv_auth_reason_name(int reason);

#endif
