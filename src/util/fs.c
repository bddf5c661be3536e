/* cv_mkdir_p: "mkdir -p" for the catalog's and the raft log's data directories.
 *
 * Happy path: the path is copied into a PATH_MAX buffer and walked left to right; at each '/' (and at the
 * end) the prefix is cut there and created with mode 0755, so every missing parent exists before its
 * child; an existing component is fine (EEXIST), so calling it on an existing tree is a no-op.
 * Failure modes: a path longer than PATH_MAX is CV_EINVAL; any other mkdir error (EACCES, ENOTDIR, a
 * read-only file system) stops with CV_EIO and a log line naming the component. Directories made before
 * the failure stay.
 * cv_fs_strerror: the errno text of a failed write, with a full disk named as such (statvfs of the path;
 * a path it cannot stat gives plain strerror). */
#include "util/fs.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

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

const char *cv_fs_strerror(int err, const char *path)
{
    struct statvfs st;
    if (err == EIO && path && statvfs(path, &st) == 0) {
        unsigned long long blocks = geteuid() == 0 ? st.f_bfree : st.f_bavail; /* root may use the reserve */
        if (blocks * st.f_frsize < CV_FS_FULL_BYTES) return strerror(ENOSPC);
    }
    return strerror(err);
}
