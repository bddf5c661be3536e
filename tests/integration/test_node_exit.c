/* A node whose start fails exits 1 (and does not hang): real cverse-node processes, a failure injected
 * with an LD_PRELOAD shim (raft_fail_shim.c) whose raft_bootstrap returns RAFT_IOERR. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "harness.h"

static struct h_cluster c;

static void teardown(void)
{
    h_cluster_destroy(&c);
}

/* Waits for node i to exit within timeout_ms; its wait status, or -1 if it still runs. */
static int wait_exit(int i, unsigned timeout_ms)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        int status;
        if (waitpid(c.pid[i], &status, WNOHANG) == c.pid[i]) {
            c.pid[i] = 0;
            return status;
        }
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 > (long)timeout_ms) return -1;
        struct timespec d = {0, 20 * 1000 * 1000};
        nanosleep(&d, NULL); /* poll interval, not synchronisation: the deadline decides */
    }
}

Test(node_exit, bootstrap_failure_exits_1, .fini = teardown, .timeout = 60)
{
    const char *shim = getenv("CVERSE_RAFT_FAIL_SHIM");
    cr_assert_not_null(shim, "CVERSE_RAFT_FAIL_SHIM not set (run through meson test)");
    h_cluster_init(&c, 1, 1, 3000);
    /* The child inherits the environment; ASan must tolerate a preload that comes first. */
    setenv("LD_PRELOAD", shim, 1);
    const char *asan = getenv("ASAN_OPTIONS");
    char *saved = asan ? strdup(asan) : NULL;
    char opts[1024];
    snprintf(opts, sizeof opts, "%s%sverify_asan_link_order=0", asan ? asan : "", asan ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
    h_node_start(&c, 0);
    unsetenv("LD_PRELOAD");
    if (saved) setenv("ASAN_OPTIONS", saved, 1);
    else unsetenv("ASAN_OPTIONS");
    free(saved);
    int status = wait_exit(0, 15000);
    cr_assert_neq(status, -1, "the node did not exit within 15 s after raft_bootstrap failed");
    cr_assert(WIFEXITED(status), "the node did not exit normally (status %d)", status);
    cr_assert_eq(WEXITSTATUS(status), 1, "exit code %d, expected 1", WEXITSTATUS(status));
    /* It exited for the injected reason (not, say, a sanitizer refusing the preload). */
    char path[400], log[16384] = "";
    snprintf(path, sizeof path, "%s/node-1.log", c.dir);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "no log %s", path);
    size_t n = fread(log, 1, sizeof log - 1, f);
    log[n] = '\0';
    fclose(f);
    cr_assert_not_null(strstr(log, "raft bootstrap failed"), "log:\n%s", log);
    cr_assert_not_null(strstr(log, "stopped"), "the node closed everything before exiting; log:\n%s", log);
}
