/* The activation-log checker (see actcheck.h).
 *
 * Happy path: every line of the log becomes an interval (A opens one for (pid, id), D closes the newest
 * open one of that (pid, id), K closes every open one of pid); the intervals are sorted by object and
 * start, and each is compared with the later-starting ones of the same object until one starts after it
 * ended. Two of one process never count (a process does not hold two activations of one object).
 * Failure modes: unparseable lines are skipped (a torn last line of a killed writer); a D without its A
 * (the log was started mid-run) is ignored; out of memory returns CV_ENOMEM. */
#include "util/actcheck.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cverse/error.h"
#include "util/buf.h"

struct act {
    char id[256];
    char node[32];
    long pid;
    unsigned long long start, end; /* end ULLONG_MAX: still open */
};

struct acts {
    struct act *v;
    size_t n, cap;
};

/* The open interval of (pid, id), searched from the newest. */
static struct act *acts_open(struct acts *a, long pid, const char *id)
{
    for (size_t k = a->n; k-- > 0;)
        if (a->v[k].end == ULLONG_MAX && a->v[k].pid == pid && strcmp(a->v[k].id, id) == 0) return &a->v[k];
    return NULL;
}

static int act_cmp(const void *x, const void *y)
{
    const struct act *a = x, *b = y;
    int c = strcmp(a->id, b->id);
    return c ? c : (a->start > b->start) - (a->start < b->start);
}

static int acts_line(struct acts *a, const char *line)
{
    unsigned long long ts;
    char ev, node[32], id[256];
    long pid;
    if (sscanf(line, "%llu %c %31s %ld %255[^\n]", &ts, &ev, node, &pid, id) != 5) return 0;
    if (ev == 'A') {
        if (cv_array_grow((void **)&a->v, &a->cap, a->n + 1, sizeof *a->v) < 0) return CV_ENOMEM;
        struct act *x = memset(&a->v[a->n++], 0, sizeof *a->v);
        snprintf(x->id, sizeof x->id, "%s", id);
        snprintf(x->node, sizeof x->node, "%s", node);
        x->pid = pid;
        x->start = ts;
        x->end = ULLONG_MAX;
    } else if (ev == 'D') {
        struct act *x = acts_open(a, pid, id);
        if (x) x->end = ts;
    } else if (ev == 'K') {
        for (size_t k = 0; k < a->n; k++)
            if (a->v[k].pid == pid && a->v[k].end == ULLONG_MAX) a->v[k].end = ts;
    }
    return 0;
}

static int overlaps(const struct acts *a, char *report, size_t len)
{
    int n_over = 0;
    size_t used = 0;
    for (size_t i = 0; i < a->n; i++)
        for (size_t j = i + 1; j < a->n && strcmp(a->v[j].id, a->v[i].id) == 0 && a->v[j].start < a->v[i].end;
             j++) {
            if (a->v[j].pid == a->v[i].pid) continue; /* one process never holds two */
            n_over++;
            if (report && used < len) {
                int n = snprintf(report + used, len - used, "  %s: %s (pid %ld) [%llu, %llu) and %s (pid %ld) from %llu\n",
                                 a->v[i].id, a->v[i].node, a->v[i].pid, a->v[i].start, a->v[i].end, a->v[j].node,
                                 a->v[j].pid, a->v[j].start);
                if (n > 0) used += (size_t)n;
            }
        }
    return n_over;
}

int cv_actcheck_file(const char *path, char *report, size_t len, size_t *activations)
{
    if (report && len) report[0] = '\0';
    if (activations) *activations = 0;
    FILE *f = fopen(path, "r");
    if (!f) return 0; /* nothing was activated (or a release build, which logs nothing) */
    struct acts a = {0};
    char line[1024];
    int rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) rc = acts_line(&a, line);
    fclose(f);
    if (rc == 0) {
        if (a.n) qsort(a.v, a.n, sizeof *a.v, act_cmp); /* a.v is NULL when nothing was activated */
        rc = overlaps(&a, report, len);
        if (activations) *activations = a.n;
    }
    free(a.v);
    return rc;
}

int cv_actcheck_killed(const char *path, pid_t pid)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char line[96];
    int n = snprintf(line, sizeof line, "%llu K - %ld -\n",
                     (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec, (long)pid);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return CV_EIO;
    int rc = write(fd, line, (size_t)n) == n ? 0 : CV_EIO;
    close(fd);
    return rc;
}
