/* The activation log (actlog.h). The file is opened on first use (O_WRONLY | O_APPEND | O_CREAT |
 * O_CLOEXEC) and kept open for the process' life; each line is formatted into one buffer and written with
 * one write(2), which O_APPEND makes atomic with respect to the other processes appending to the same
 * file (regular files on a local file system). Failure modes: no variable, an unopenable file, a short
 * write: the line is dropped silently (checked builds only; release builds compile it out). */
#include "util/actlog.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#ifdef CV_CHECKS
static int actlog__fd(void)
{
    static int fd = -2; /* -2: not tried yet; -1: no log */
    if (fd == -2) {
        const char *path = getenv(CV_ACTLOG_ENV);
        fd = path && *path ? open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644) : -1;
    }
    return fd;
}
#endif

void cv_actlog(char ev, const char *node, const char *id, uint64_t ts_ns)
{
#ifdef CV_CHECKS
    int fd = actlog__fd();
    if (fd < 0) return;
    char line[768];
    int n = snprintf(line, sizeof line, "%llu %c %s %ld %s\n", (unsigned long long)ts_ns, ev, node,
                     (long)getpid(), id);
    if (n > 0 && (size_t)n < sizeof line) {
        ssize_t w = write(fd, line, (size_t)n);
        (void)w;
    }
#else
    (void)ev, (void)node, (void)id, (void)ts_ns;
#endif
}
