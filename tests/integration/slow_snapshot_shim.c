/* LD_PRELOAD shim for test_fencing: fsync of a raft snapshot being written (libraft writes it to an
 * unnamed temporary file in the raft directory, "<dir>/#<inode> (deleted)") sleeps
 * CVERSE_SLOW_SNAPSHOT_MS (default 300) first, as a slow disk would. That widens the window in which a
 * node writes its own snapshot, which is what libraft 0.22.1 needs to crash when the leader's
 * snapshot arrives meanwhile (src/consensus/snapguard.c). Everything else syncs as usual. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int fsync(int fd)
{
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    char link[64], path[512];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n > 0) {
        path[n] = '\0';
        if (strstr(path, "/raft/#")) {
            const char *ms = getenv("CVERSE_SLOW_SNAPSHOT_MS");
            long d = ms ? atol(ms) : 300;
            struct timespec ts = {d / 1000, (d % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    return real(fd);
}
