/* Test certificates made at test time with the openssl command (shared test helper, header-only). */
#ifndef CV_TESTS_TLS_CERT_H
#define CV_TESTS_TLS_CERT_H

#include <stdio.h>
#include <stdlib.h>

/* Writes DIR/NAME-key.pem and DIR/NAME-cert.pem: a self-signed P-256 certificate for CN=localhost with
 * the subject alternative names DNS:localhost and IP:127.0.0.1, valid a day. It is its own CA: clients
 * trust it with --ca DIR/NAME-cert.pem. 0, or the failing command's status (nothing asserts here). */
static inline int cv_test_make_cert(const char *dir, const char *name)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost "
             "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout '%s/%s-key.pem' -out '%s/%s-cert.pem' "
             ">/dev/null 2>&1",
             dir, name, dir, name);
    return system(cmd);
}

#endif
