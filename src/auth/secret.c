/* The cluster secret (secret.h).
 *
 * Happy path: the path is $CVERSE_CLUSTER_SECRET_FILE or cluster.secret_file; the file is read whole,
 * trailing CR/LF removed, and the content (>= CV_SECRET_MIN bytes) is hashed with SHA-256 (libsodium)
 * into the HMAC key: the handshake never sees the raw bytes, and a secret of any length keys alike.
 * Failure modes: unreadable -> CV_EIO, too short -> CV_EINVAL, each with one line for the caller (a
 * config error: the process exits 2). A file its group or others may read is a warning, not an error
 * (run-cluster.sh makes it 0600; an operator may have reasons). */
#include "auth/secret.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cverse/error.h"
#include "util/log.h"

#define SECRET__MAX 4096 /* a secret file is small; anything longer is not one */

int cv_secret_from_bytes(const void *p, size_t len, struct cv_secret *out)
{
    if (len < CV_SECRET_MIN) return CV_EINVAL;
    if (sodium_init() < 0) return CV_EIO;
    crypto_hash_sha256(out->key, p, len);
    return 0;
}

static void secret__check_mode(const char *path, int fd)
{
    static int warned;
    struct stat st;
    if (warned || fstat(fd, &st) != 0 || !(st.st_mode & (S_IRWXG | S_IRWXO))) return;
    warned = 1;
    CV_WARN("cluster secret file %s is readable by its group or others (mode %03o): chmod 600 it",
            path, (unsigned)(st.st_mode & 0777));
}

int cv_secret_load(const char *path, struct cv_secret *out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot read the cluster secret: %s", path, strerror(errno));
        return CV_EIO;
    }
    secret__check_mode(path, fileno(f));
    unsigned char buf[SECRET__MAX + 1];
    size_t n = fread(buf, 1, sizeof buf, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || n > SECRET__MAX) {
        snprintf(err, errlen, "%s: cannot read the cluster secret (%s)", path,
                 bad ? "read error" : "longer than 4096 bytes");
        return CV_EIO;
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) n--;
    int rv = cv_secret_from_bytes(buf, n, out);
    sodium_memzero(buf, sizeof buf);
    if (rv == CV_EINVAL)
        snprintf(err, errlen, "%s: the cluster secret must be at least %d bytes (has %zu)", path,
                 CV_SECRET_MIN, n);
    else if (rv)
        snprintf(err, errlen, "%s: libsodium failed to initialise", path);
    return rv;
}

int cv_secret_generate(const char *path, char *err, size_t errlen)
{
    unsigned char raw[32];
    char hex[2 * sizeof raw + 2];
    if (sodium_init() < 0) return snprintf(err, errlen, "libsodium failed to initialise"), CV_EIO;
    randombytes_buf(raw, sizeof raw);
    sodium_bin2hex(hex, sizeof hex - 1, raw, sizeof raw);
    strcat(hex, "\n");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool ok = fd >= 0 && fchmod(fd, 0600) == 0 && write(fd, hex, strlen(hex)) == (ssize_t)strlen(hex);
    if (fd >= 0 && close(fd) != 0) ok = false;
    sodium_memzero(raw, sizeof raw);
    sodium_memzero(hex, sizeof hex);
    if (!ok) return snprintf(err, errlen, "%s: cannot write a cluster secret: %s", path, strerror(errno)), CV_EIO;
    return 0;
}

const char *cv_secret_path(const char *cfg_path)
{
    const char *env = getenv(CV_SECRET_ENV);
    if (env && *env) return env;
    return cfg_path && *cfg_path ? cfg_path : NULL;
}

int cv_secret_setup(const char *cfg_path, struct cv_secret *out, int *have, char *err, size_t errlen)
{
    const char *path = cv_secret_path(cfg_path);
    *have = 0;
    if (!path) return 0;
    int rv = cv_secret_load(path, out, err, errlen);
    if (rv == 0) *have = 1;
    return rv;
}
