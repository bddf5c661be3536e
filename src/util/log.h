/* Logging to stderr with a timestamp, level and component name; process-wide, single-threaded use. */
#ifndef CV_UTIL_LOG_H
#define CV_UTIL_LOG_H

#include <stdint.h>

enum cv_log_level { CV_LOG_DEBUG = 0, CV_LOG_INFO, CV_LOG_WARN, CV_LOG_ERROR };

/* name is copied; it prefixes every line, e.g. "node-1". level filters lower levels out. */
void cv_log_init(const char *name, enum cv_log_level level);
/* Parses "debug", "info", "warn" or "error"; 0, or CV_EINVAL for anything else. */
int cv_log_level_parse(const char *s, enum cv_log_level *out);
void cv_log(enum cv_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define CV_DEBUG(...) cv_log(CV_LOG_DEBUG, __VA_ARGS__)
#define CV_INFO(...) cv_log(CV_LOG_INFO, __VA_ARGS__)
#define CV_WARN(...) cv_log(CV_LOG_WARN, __VA_ARGS__)
#define CV_ERROR(...) cv_log(CV_LOG_ERROR, __VA_ARGS__)

/* Wall clock in ms since the epoch (CLOCK_REALTIME). */
uint64_t cv_now_ms(void);
/* Monotonic clock in ms (CLOCK_MONOTONIC), for deadlines and latencies. */
uint64_t cv_mono_ms(void);
/* Monotonic clock in ns. */
uint64_t cv_mono_ns(void);
/* Formats ms since the epoch as RFC 3339 UTC with ms ("2026-11-22T05:00:00.123Z") into buf (>= 32). */
void cv_format_time(uint64_t ms, char *buf, unsigned len);

#endif
