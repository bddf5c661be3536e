/* cv_mkdir_p: walks the path's components left to right and creates each one; an existing component is
 * fine (EEXIST), anything else stops with CV_EIO and a log line naming the component. */
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
