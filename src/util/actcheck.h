/* The activation-log checker: proves from a util/actlog.h log that no object was active in two processes
 * at once (shared by the integration harness and cverse-stress). */
#ifndef CV_UTIL_ACTCHECK_H
#define CV_UTIL_ACTCHECK_H

#include <stddef.h>
#include <sys/types.h>

/* Reads the activation log at path ("<ns> A|D|K <node> <pid> <id>"): every activation of an object by a
 * process is an interval from its A line to its D line (or to a K line for that process, written when it
 * was SIGKILLed, or to infinity). Returns the number of pairs of intervals of one object held by
 * different processes that overlap (0 when there is no file), writing the first few into report (may be
 * NULL) as "  <id>: <node> (pid P) [start, end) and <node> (pid Q) from T\n" lines; *activations (may be
 * NULL) gets the number of intervals. CV_ENOMEM when the log does not fit in memory. */
int cv_actcheck_file(const char *path, char *report, size_t len, size_t *activations);

/* Appends "<now> K - <pid> -" to the log at path: pid was killed, none of its activations survives this
 * instant (a SIGKILLed process cannot log its own ends). 0 or CV_EIO. */
int cv_actcheck_killed(const char *path, pid_t pid);

#endif
