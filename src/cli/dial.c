/* The CLI's dial to a gate's native port (cli/dial.h): the TLS flags and $CVERSE_CA_FILE decide whether
 * the client library connects plain or with TLS (the gate's certificate always verified).
 * Failure modes: the client library's codes and message, passed on unchanged (a certificate that does
 * not verify: CV_EAUTH naming OpenSSL's reason; a CA file that does not load: CV_EIO naming the file). */
#include "cli/dial.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cv_cli_dial(const char *gate, unsigned timeout_ms, const struct cv_cli_tls *t, char *why, size_t len,
                cv_client **out)
{
    const char *env = getenv("CVERSE_CA_FILE");
    struct cv_client_tls ct = {.ca_file = t ? t->ca_file : NULL};
    if (!ct.ca_file && env && *env) ct.ca_file = env;
    int tls = (t && t->tls) || ct.ca_file;
    why[0] = '\0';
    int rv = cv_client_connect_tls(gate, timeout_ms, tls ? &ct : NULL, why, len, out);
    /* The TCP dial's own reason is errno ("Connection refused"): the caller says where it was going. */
    if (rv && (!why[0] || strncmp(why, "cannot connect to ", 18) == 0)) {
        int saved = errno;
        snprintf(why, len, "%s", rv == CV_EUNAVAIL || rv == CV_ETIMEDOUT ? strerror(saved) : cv_strerror(rv));
        errno = saved;
    }
    return rv;
}
