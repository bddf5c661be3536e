/* The cluster secret: loaded from cluster.secret_file or CVERSE_CLUSTER_SECRET_FILE, kept as a derived key. */
#ifndef CV_AUTH_SECRET_H
#define CV_AUTH_SECRET_H

#include <stddef.h>
#include <stdint.h>

#define CV_AUTH_KEY 32
#define CV_SECRET_MIN 16 /* bytes of the file's content, trailing newline removed */
#define CV_SECRET_ENV "CVERSE_CLUSTER_SECRET_FILE"

/* key = SHA-256 of the file's content (so any length >= CV_SECRET_MIN keys HMAC-SHA256 alike). */
struct cv_secret {
    uint8_t key[CV_AUTH_KEY];
};

/* Derives a secret from bytes (>= CV_SECRET_MIN, else CV_EINVAL). */
int cv_secret_from_bytes(const void *p, size_t len, struct cv_secret *out);
/* Reads path: content with its trailing newline(s) removed is the secret. CV_EIO (unreadable) or
 * CV_EINVAL (shorter than CV_SECRET_MIN) with one line in err. Warns (once per process) if the file
 * is readable by its group or others. */
int cv_secret_load(const char *path, struct cv_secret *out, char *err, size_t errlen);
/* Writes a new secret to path: 32 random bytes (libsodium) as hex and a newline, mode 0600 (replacing
 * the file). CV_EIO with one line in err. */
int cv_secret_generate(const char *path, char *err, size_t errlen);
/* The file to use: $CVERSE_CLUSTER_SECRET_FILE when set and not empty (it wins), else cfg_path
 * (cluster.secret_file, already resolved against the config's directory; may be NULL). NULL: none. */
const char *cv_secret_path(const char *cfg_path);
/* cv_secret_path + cv_secret_load: 0 with *have = 1 (loaded) or 0 (no secret configured), or the load's
 * error (err filled). */
int cv_secret_setup(const char *cfg_path, struct cv_secret *out, int *have, char *err, size_t errlen);

#endif
