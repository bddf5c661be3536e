/* TLS sessions as byte transforms over OpenSSL memory BIOs (net/tls.h).
 *
 * Happy path: each session has two memory BIOs: rbio holds ciphertext fed from the peer (cv_tls_feed),
 * wbio collects what OpenSSL wants to send (handshake messages, records, alerts; cv_tls_take). Feeding
 * drives the handshake; once it ended, plaintext queued by cv_tls_write before that is encrypted, and
 * SSL_read hands out plaintext (cv_tls_read). The session never touches a socket: the caller moves the
 * bytes, so the same module serves libuv streams of any kind.
 *
 * Failure modes: a handshake failure (a certificate that does not verify, no common protocol, garbage
 * instead of TLS) or a bad record makes feed/read return CV_EIO with OpenSSL's reason kept in the session
 * (the verify result's text for certificate failures); the alert OpenSSL queued is still in wbio for the
 * caller to send. The peer's close_notify reads as CV_ECLOSED. All crypto is OpenSSL's. */
#include "net/tls.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "cverse/error.h"

struct cv_tls_ctx {
    SSL_CTX *ssl;
};

struct cv_tls {
    SSL *ssl;
    BIO *rbio, *wbio;   /* owned by ssl */
    char *pend;         /* plaintext written before the handshake ended */
    size_t pend_len;
    char err[256];
};

/* OpenSSL's queued reason (or what), as one line. */
static void tls__reason(char *out, size_t n, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[200] = "";
    if (e) ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    snprintf(out, n, "%s%s%s", what, e ? ": " : "", buf);
}

static int tls__ctx_new(const SSL_METHOD *m, struct cv_tls_ctx **out)
{
    struct cv_tls_ctx *c = calloc(1, sizeof *c);
    if (!c || !(c->ssl = SSL_CTX_new(m))) {
        free(c);
        return CV_ENOMEM;
    }
    SSL_CTX_set_min_proto_version(c->ssl, TLS1_2_VERSION);
    SSL_CTX_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_RELEASE_BUFFERS);
    *out = c;
    return 0;
}

int cv_tls_ctx_server(const char *cert_file, const char *key_file, char *err, size_t errlen,
                      struct cv_tls_ctx **out)
{
    char what[1100];
    struct cv_tls_ctx *c;
    if (!cert_file || !key_file || !out) return CV_EINVAL;
    int rv = tls__ctx_new(TLS_server_method(), &c);
    if (rv) return rv;
    if (SSL_CTX_use_certificate_chain_file(c->ssl, cert_file) != 1) {
        snprintf(what, sizeof what, "%s: cannot load the certificate (PEM)", cert_file);
        goto err_after_ctx;
    }
    if (SSL_CTX_use_PrivateKey_file(c->ssl, key_file, SSL_FILETYPE_PEM) != 1) {
        snprintf(what, sizeof what, "%s: cannot load the private key (PEM)", key_file);
        goto err_after_ctx;
    }
    if (SSL_CTX_check_private_key(c->ssl) != 1) {
        snprintf(what, sizeof what, "%s: the key does not match the certificate %s", key_file, cert_file);
        goto err_after_ctx;
    }
    *out = c;
    return 0;
err_after_ctx:
    if (err && errlen) tls__reason(err, errlen, what);
    else ERR_clear_error();
    cv_tls_ctx_free(c);
    return CV_EIO;
}

int cv_tls_ctx_client(const char *ca_file, char *err, size_t errlen, struct cv_tls_ctx **out)
{
    struct cv_tls_ctx *c;
    if (!out) return CV_EINVAL;
    int rv = tls__ctx_new(TLS_client_method(), &c);
    if (rv) return rv;
    SSL_CTX_set_verify(c->ssl, SSL_VERIFY_PEER, NULL);
    int ok = ca_file ? SSL_CTX_load_verify_locations(c->ssl, ca_file, NULL) : SSL_CTX_set_default_verify_paths(c->ssl);
    if (ok != 1) {
        char what[1100];
        snprintf(what, sizeof what, "%s: cannot load CA certificates (PEM)", ca_file ? ca_file : "system trust store");
        if (err && errlen) tls__reason(err, errlen, what);
        else ERR_clear_error();
        cv_tls_ctx_free(c);
        return CV_EIO;
    }
    *out = c;
    return 0;
}

void cv_tls_ctx_free(struct cv_tls_ctx *ctx)
{
    if (!ctx) return;
    SSL_CTX_free(ctx->ssl);
    free(ctx);
}

/* A client checks the name it dialled: an IP address against the certificate's IP SANs, a host name
 * against its DNS names (and sends it as SNI). */
static int tls__set_host(SSL *ssl, const char *host)
{
    unsigned char ip[16];
    if (inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1)
        return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1 ? 0 : CV_EINVAL;
    if (SSL_set_tlsext_host_name(ssl, host) != 1 || SSL_set1_host(ssl, host) != 1) return CV_EINVAL;
    return 0;
}

int cv_tls_new(struct cv_tls_ctx *ctx, const char *host, struct cv_tls **out)
{
    if (!ctx || !out) return CV_EINVAL;
    struct cv_tls *t = calloc(1, sizeof *t);
    if (!t) return CV_ENOMEM;
    t->ssl = SSL_new(ctx->ssl);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->rbio || !t->wbio) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        goto err_after_alloc;
    }
    SSL_set_bio(t->ssl, t->rbio, t->wbio); /* ssl owns both from here */
    if (!host) {
        SSL_set_accept_state(t->ssl);
    } else {
        if (tls__set_host(t->ssl, host)) goto err_after_alloc;
        SSL_set_connect_state(t->ssl);
        SSL_do_handshake(t->ssl); /* the ClientHello, ready in wbio */
        ERR_clear_error();
    }
    *out = t;
    return 0;
err_after_alloc:
    SSL_free(t->ssl);
    free(t);
    ERR_clear_error();
    return CV_ENOMEM;
}

void cv_tls_free(struct cv_tls *t)
{
    if (!t) return;
    SSL_free(t->ssl);
    free(t->pend);
    free(t);
}

/* A failed SSL call: CV_EIO with the reason kept, or 0 when it only waits for more input. */
static int tls__fail(struct cv_tls *t, int ret, const char *what)
{
    int e = SSL_get_error(t->ssl, ret);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
    if (e == SSL_ERROR_ZERO_RETURN) return CV_ECLOSED;
    long v = SSL_get_verify_result(t->ssl);
    if (v != X509_V_OK) snprintf(t->err, sizeof t->err, "certificate verify failed: %s",
                                 X509_verify_cert_error_string(v));
    else tls__reason(t->err, sizeof t->err, what);
    ERR_clear_error();
    return CV_EIO;
}

/* Encrypts what was queued before the handshake ended. */
static int tls__flush_pend(struct cv_tls *t)
{
    size_t off = 0;
    while (off < t->pend_len) { /* partial writes: a record at a time */
        size_t left = t->pend_len - off;
        int n = SSL_write(t->ssl, t->pend + off, left > INT32_MAX ? INT32_MAX : (int)left);
        if (n <= 0) { /* it waits for the peer (0: the rest stays queued), or the session broke */
            int rv = tls__fail(t, n, "TLS write failed");
            memmove(t->pend, t->pend + off, left);
            t->pend_len = left;
            return rv;
        }
        off += (size_t)n;
    }
    free(t->pend);
    t->pend = NULL;
    t->pend_len = 0;
    return 0;
}

int cv_tls_feed(struct cv_tls *t, const void *data, size_t len)
{
    t->err[0] = '\0';
    if (len && BIO_write(t->rbio, data, (int)len) != (int)len) return CV_ENOMEM;
    if (!SSL_is_init_finished(t->ssl)) {
        int r = SSL_do_handshake(t->ssl);
        if (r != 1) {
            int rv = tls__fail(t, r, "TLS handshake failed");
            return rv == CV_ECLOSED ? CV_EIO : rv;
        }
    }
    return tls__flush_pend(t);
}

ssize_t cv_tls_read(struct cv_tls *t, void *buf, size_t cap)
{
    if (!SSL_is_init_finished(t->ssl) || cap == 0) return 0;
    int n = SSL_read(t->ssl, buf, cap > INT32_MAX ? INT32_MAX : (int)cap);
    if (n > 0) return n;
    return tls__fail(t, n, "TLS read failed");
}

int cv_tls_write(struct cv_tls *t, const void *data, size_t len)
{
    if (!SSL_is_init_finished(t->ssl) || t->pend_len) {
        char *p = realloc(t->pend, t->pend_len + len);
        if (!p) return CV_ENOMEM;
        memcpy(p + t->pend_len, data, len);
        t->pend = p;
        t->pend_len += len;
        return SSL_is_init_finished(t->ssl) ? tls__flush_pend(t) : 0;
    }
    const char *p = data;
    while (len) {
        int n = SSL_write(t->ssl, p, len > INT32_MAX ? INT32_MAX : (int)len);
        if (n <= 0) { /* a memory BIO takes everything: only a broken session gets here */
            tls__fail(t, n, "TLS write failed");
            return CV_EIO;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

size_t cv_tls_pending(const struct cv_tls *t)
{
    return BIO_ctrl_pending(t->wbio);
}

size_t cv_tls_take(struct cv_tls *t, void *buf, size_t cap)
{
    int n = BIO_read(t->wbio, buf, cap > INT32_MAX ? INT32_MAX : (int)cap);
    return n > 0 ? (size_t)n : 0;
}

bool cv_tls_ready(const struct cv_tls *t)
{
    return SSL_is_init_finished(t->ssl);
}

void cv_tls_close_notify(struct cv_tls *t)
{
    if (SSL_is_init_finished(t->ssl)) SSL_shutdown(t->ssl);
    ERR_clear_error();
}

const char *cv_tls_error(const struct cv_tls *t)
{
    return t->err;
}
