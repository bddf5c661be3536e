/* TLS as a byte transform (OpenSSL with memory BIOs): ciphertext in -> plaintext out, plaintext in ->
 * ciphertext out, independent of any stream, so that any connection (net/http.c, later net/rpc.c) can
 * put it between its socket and its parser. */
#ifndef CV_NET_TLS_H
#define CV_NET_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* What a side needs for all its connections (an SSL_CTX): a server's certificate and key, or a client's
 * trusted CAs. Reference-counted by OpenSSL: connections made from it keep it alive after
 * cv_tls_ctx_free. */
struct cv_tls_ctx;

/* A server context from PEM files (a certificate chain, a private key matching it). CV_EIO with one line
 * in err naming the file and OpenSSL's reason; CV_ENOMEM. TLS 1.2 at least. */
int cv_tls_ctx_server(const char *cert_file, const char *key_file, char *err, size_t errlen,
                      struct cv_tls_ctx **out);
/* A client context that verifies the server's certificate against the CAs in ca_file (PEM; NULL: the
 * system's trust store). Verification is always on. CV_EIO with a line in err; CV_ENOMEM. */
int cv_tls_ctx_client(const char *ca_file, char *err, size_t errlen, struct cv_tls_ctx **out);
void cv_tls_ctx_free(struct cv_tls_ctx *ctx);

/* One connection's TLS session. */
struct cv_tls;

/* A session over ctx (borrowed: a reference is taken). host: the server's name or IP address a client
 * checks the certificate against (and sends as SNI when it is a name); NULL for a server. A client's
 * first handshake bytes are ready in cv_tls_take at once. CV_ENOMEM, CV_EINVAL. */
int cv_tls_new(struct cv_tls_ctx *ctx, const char *host, struct cv_tls **out);
void cv_tls_free(struct cv_tls *t);

/* Ciphertext received from the peer (copied); the handshake advances and writes queued before it ended
 * are encrypted. 0, or CV_EIO when the handshake or a record failed (cv_tls_error says why; close the
 * connection after sending what cv_tls_take still has: it may hold an alert). */
int cv_tls_feed(struct cv_tls *t, const void *data, size_t len);
/* Decrypted bytes into buf: > 0 bytes read, 0 none for now, CV_ECLOSED the peer ended the session
 * (close_notify), CV_EIO an error. Call until 0 after each feed: nothing stays behind. */
ssize_t cv_tls_read(struct cv_tls *t, void *buf, size_t cap);
/* Plaintext to send (copied); queued until the handshake ended, then encrypted. 0, CV_EIO, CV_ENOMEM. */
int cv_tls_write(struct cv_tls *t, const void *data, size_t len);
/* Ciphertext waiting to be sent to the peer, and taking it (up to cap bytes; returns how many). */
size_t cv_tls_pending(const struct cv_tls *t);
size_t cv_tls_take(struct cv_tls *t, void *buf, size_t cap);
/* Whether the handshake completed. */
bool cv_tls_ready(const struct cv_tls *t);
/* Queues our close_notify (then cv_tls_take it and close). */
void cv_tls_close_notify(struct cv_tls *t);
/* Why the last CV_EIO happened (e.g. "certificate verify failed: self-signed certificate"); "" if none.
 * Valid until the next call on t. */
const char *cv_tls_error(const struct cv_tls *t);

#endif
