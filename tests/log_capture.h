/* Captures the process's log (stderr, where cv_log and so cv_object_log write) in a temporary file, for
 * tests that assert on what objects log through the real path. Header-only; one capture at a time. */
#ifndef CV_TESTS_LOG_CAPTURE_H
#define CV_TESTS_LOG_CAPTURE_H

#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct {
    int saved; /* the real stderr while capturing, else -1 */
    FILE *file;
} cv_log_capture = {-1, NULL};

/* From now on, stderr goes to a temporary file. */
static inline void cv_log_capture_start(void)
{
    fflush(stderr);
    cv_log_capture.file = tmpfile();
    cr_assert_not_null(cv_log_capture.file, "tmpfile");
    cv_log_capture.saved = dup(2);
    cr_assert_geq(cv_log_capture.saved, 0, "dup(2)");
    cr_assert_geq(dup2(fileno(cv_log_capture.file), 2), 0, "dup2");
}

/* Gives stderr back (so that sanitizer reports after the test are seen) and drops the capture. */
static inline void cv_log_capture_stop(void)
{
    if (cv_log_capture.saved < 0) return;
    fflush(stderr);
    dup2(cv_log_capture.saved, 2);
    close(cv_log_capture.saved);
    fclose(cv_log_capture.file);
    cv_log_capture.saved = -1;
    cv_log_capture.file = NULL;
}

/* How many captured lines contain text; with exact, how many have text as their whole message (what
 * follows cv_log's "<time> <LEVEL> [<name>] " prefix). Reads with pread: stderr's offset stays put. */
static inline size_t cv_log_capture_count_lines(const char *text, int exact)
{
    struct stat st;
    int fd = fileno(cv_log_capture.file);
    cr_assert_eq(fstat(fd, &st), 0);
    char *buf = malloc((size_t)st.st_size + 1);
    cr_assert_not_null(buf);
    ssize_t got = pread(fd, buf, (size_t)st.st_size, 0);
    buf[got > 0 ? got : 0] = '\0';
    size_t n = 0;
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        const char *msg = strstr(line, "] ");
        if (exact ? (msg && strcmp(msg + 2, text) == 0) : strstr(line, text) != NULL) n++;
    }
    free(buf);
    return n;
}

/* Copies into buf the message (see above) of the last captured line containing text; false if none. */
static inline bool cv_log_capture_last(const char *text, char *buf, size_t len)
{
    struct stat st;
    int fd = fileno(cv_log_capture.file);
    cr_assert_eq(fstat(fd, &st), 0);
    char *all = malloc((size_t)st.st_size + 1);
    cr_assert_not_null(all);
    ssize_t got = pread(fd, all, (size_t)st.st_size, 0);
    all[got > 0 ? got : 0] = '\0';
    bool found = false;
    char *save = NULL;
    for (char *line = strtok_r(all, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        const char *msg = strstr(line, "] ");
        if (!msg || !strstr(line, text)) continue;
        snprintf(buf, len, "%s", msg + 2);
        found = true;
    }
    free(all);
    return found;
}

#endif
