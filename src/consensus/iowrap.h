/* Raft log write watchdog: wraps raft_uv's struct raft_io so that a failed or stuck write of the raft log
 * (append, snapshot, term, vote, truncate) is never silent: it is logged once with its errno text and the
 * node stops. */
#ifndef CV_CONSENSUS_IOWRAP_H
#define CV_CONSENSUS_IOWRAP_H

#include <uv.h>

struct raft_io;

/* The raft log cannot be written. why: the logged line ("raft log write failed: No space left on device
 * (data dir D, ...)"), borrowed for the call. Runs once; the process exits 1 when it returns. */
typedef void (*cv_iowrap_fail_cb)(void *data, const char *why);

/* How long an append may stay pending before the disk is probed (an ordinary append takes milliseconds;
 * libraft retries a failed segment allocation or write silently, every 5 s, forever). */
#define CV_IOWRAP_STALL_MS 1000u
/* Size of the probe: what libraft allocates for each new log segment (its default, 8 MiB, which the
 * consensus never changes): a disk that cannot take it cannot take the next segment either. */
#define CV_IOWRAP_PROBE_BYTES (8u * 1024u * 1024u)

/* Replaces io's write functions by wrappers around raft_uv's own (call after raft_init, before
 * raft_start; io must come from raft_uv_init). A write that fails (any status but RAFT_CANCELED), or
 * an append still pending after CV_IOWRAP_STALL_MS, makes the module probe the disk: allocate
 * CV_IOWRAP_PROBE_BYTES in dir (in the thread pool). A failed probe (or a failed write) is reported:
 * one CV_ERROR line with the probe's errno text (else raft's own message), then cb(data, line), then
 * exit(1). A stalled append whose probe succeeds is only logged as a warning (a slow disk, no error).
 * dir is copied; loop, cb and data are borrowed until io's close completes, when the wrapper frees
 * itself. Out of memory: logged, io stays unwrapped. Nothing is reported once raft closes io. */
void cv_iowrap_install(struct raft_io *io, uv_loop_t *loop, const char *dir, cv_iowrap_fail_cb cb, void *data);

#endif
