/* stderr logger: "<RFC3339 time> <LEVEL> [<name>] message". Lines are written with one fputs each so
 * several processes appending to one log file (as run-cluster.sh does) do not interleave mid-line. */
#include "util/log.h"

#include "cverse/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static char log_name[64] = "cverse";
static enum cv_log_level log_level = CV_LOG_INFO;

void cv_log_init(const char *name, enum cv_log_level level)
{
    snprintf(log_name, sizeof log_name, "%s", name ? name : "cverse");
    log_level = level;
}

int cv_log_level_parse(const char *s, enum cv_log_level *out)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, names[i])) {
            *out = (enum cv_log_level)i;
            return 0;
        }
    return CV_EINVAL;
}

void cv_log(enum cv_log_level level, const char *fmt, ...)
{
    static const char *names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    if (level < log_level) return;
    char ts[32], line[2048];
    cv_format_time(cv_now_ms(), ts, sizeof ts);
    int n = snprintf(line, sizeof line, "%s %-5s [%s] ", ts, names[level], log_name);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof line) vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    size_t len = strlen(line);
    if (len + 1 < sizeof line) {
        line[len] = '\n';
        line[len + 1] = '\0';
    }
    fputs(line, stderr);
    fflush(stderr);
}

static uint64_t clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t cv_now_ms(void) { return clock_ms(CLOCK_REALTIME); }
uint64_t cv_mono_ms(void) { return clock_ms(CLOCK_MONOTONIC); }

uint64_t cv_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void cv_format_time(uint64_t ms, char *buf, unsigned len)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    char base[24];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, len, "%s.%03uZ", base, (unsigned)(ms % 1000));
}
