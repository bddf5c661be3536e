/* cluster.secret_file of the config (config.h: cv_config_secret; config.c reads the key itself).
 *
 * Happy path: a relative path is taken from the config file's directory (so a config and its secret
 * travel together, whatever the process' working directory), and the file is read once here so that a
 * missing or short secret is a config error with the key's line (the process exits 2) rather than a
 * surprise at the first connection. The process loads it again at start (auth/guard.h), where
 * CVERSE_CLUSTER_SECRET_FILE may override it.
 * Failure modes: unreadable, or less than CV_SECRET_MIN bytes -> CV_ECONFIG with one line in err. */
#include "config/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/secret.h"
#include "cverse/error.h"

/* dir of cfg->path joined with rel, owned by the caller; NULL on allocation failure. */
static char *secret__join(const char *cfg_path, const char *rel)
{
    const char *slash = strrchr(cfg_path, '/');
    int dlen = slash ? (int)(slash - cfg_path) : 1;
    const char *dir = slash ? cfg_path : ".";
    size_t n = (size_t)dlen + strlen(rel) + 2;
    char *out = malloc(n);
    if (out) snprintf(out, n, "%.*s/%s", dlen, dir, rel);
    return out;
}

int cv_config_secret(struct cv_config *cfg, int line, char *err, size_t errlen)
{
    if (cfg->secret_file[0] != '/') {
        char *abs = secret__join(cfg->path, cfg->secret_file);
        if (!abs) return CV_ENOMEM;
        free(cfg->secret_file);
        cfg->secret_file = abs;
    }
    struct cv_secret s;
    char msg[400];
    if (cv_secret_load(cfg->secret_file, &s, msg, sizeof msg) == 0) return 0;
    if (err && errlen) snprintf(err, errlen, "%s:%d: cluster.secret_file: %s", cfg->path, line, msg);
    return CV_ECONFIG;
}
