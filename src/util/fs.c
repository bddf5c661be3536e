/* cv_mkdir_p: "mkdir -p" for the catalog's and the raft log's data directories.
 *
 * Happy path: the path is copied into a PATH_MAX buffer and walked left to right; at each '/' (and at the
 * end) the prefix is cut there and created with mode 0755, so every missing parent exists before its
 * child; an existing component is fine (EEXIST), so calling it on an existing tree is a no-op.
 * Failure modes: a path longer than PATH_MAX is CV_EINVAL; any other mkdir error (EACCES, ENOTDIR, a
 * read-only file system) stops with CV_EIO and a log line naming the component. Directories made before
 * the failure stay. */
#include "util/fs.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cverse/error.h"
#include "util/log.h"

int cv_mkdir_p(const char *dir)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path) return CV_EINVAL;
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST) {
            CV_ERROR("mkdir %s: %s", path, strerror(errno));
            return CV_EIO;
        }
        *p = saved;
        if (saved == '\0') return 0;
    }
}
