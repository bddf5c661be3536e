/* The CLI's connection to a gate's native port: plain, or TLS with --tls / --ca FILE / $CVERSE_CA_FILE. */
#ifndef CV_CLI_DIAL_H
#define CV_CLI_DIAL_H

#include <stddef.h>

#include <cverse/client.h>

/* What the user asked for: tls (--tls, or --ca given), ca_file (--ca FILE, borrowed). Neither and
 * $CVERSE_CA_FILE set: TLS with that CA file. TLS without a CA file uses the system's trust store. */
struct cv_cli_tls {
    int tls;
    const char *ca_file;
};

/* Connects to gate (t may be NULL: only the environment decides). 0 and *out, or the client library's
 * code with the reason in why (for a failed certificate check: "TLS with ... failed: certificate verify
 * failed: ..."). errno holds the socket error after CV_EUNAVAIL / CV_ETIMEDOUT of a plain dial. */
int cv_cli_dial(const char *gate, unsigned timeout_ms, const struct cv_cli_tls *t, char *why, size_t len,
                cv_client **out);

#endif
