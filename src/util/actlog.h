/* Activation log (debug and test builds): one line per start and end of an object's activation, with a
 * CLOCK_MONOTONIC timestamp, appended to the file named by $CVERSE_ACTIVATION_LOG, so that a checker can
 * prove that no object was active on two nodes at once. A no-op in release builds or without the variable. */
#ifndef CV_UTIL_ACTLOG_H
#define CV_UTIL_ACTLOG_H

#include <stdint.h>

#define CV_ACTLOG_ENV "CVERSE_ACTIVATION_LOG"

/* Appends "<ts_ns> <ev> <node> <pid> <object id>\n" with one write(2) on an O_APPEND descriptor (lines of
 * concurrent processes never interleave). ev: 'A' activation start, 'D' activation end, 'K' (the test
 * harness) process killed (id "-"). node and id: borrowed for the call. Errors are ignored: the log is a
 * test aid, never a reason to stop serving. */
void cv_actlog(char ev, const char *node, const char *id, uint64_t ts_ns);

#endif
