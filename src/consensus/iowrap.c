/* Raft log write watchdog (iowrap.h).
 *
 * Why: libraft 0.22's disk layer (raft_uv) retries a failed segment allocation (fallocate ENOSPC on a
 * full disk) or a failed write every 5 s, forever, without telling anyone: the append never completes,
 * a follower stops applying but stays alive, a leader keeps committing with its followers' copies. So
 * the completion status alone says nothing; a pending append's age does.
 *
 * Happy path: raft calls io->append (our wrapper), which hands raft_uv a request of ours, remembers it
 * with the time it started, and passes the completion through to raft's callback. A timer every
 * STALL_MS / 4, running only while some write is pending, looks at the oldest pending append; snapshot puts and the synchronous writes (term, vote,
 * truncate) are passed through and only their status is looked at.
 *
 * Failure modes: a write that completes (or returns) with an error, or an append pending for more than
 * CV_IOWRAP_STALL_MS, starts one probe in the thread pool: create a file in the raft directory, allocate
 * a segment's worth of space, remove it. If the probe fails, or the write did, the node is told once
 * with the probe's errno text ("No space left on device") or raft's message, and the process exits 1:
 * the log is the durable record, a node that cannot extend it must not pretend to be a member (a
 * supervisor restarts it once there is space). A probe that succeeds after a stall means a slow disk:
 * a warning every 10 s of stall, nothing more (raft_uv keeps retrying, and succeeds once it can).
 * Closing: raft calls io->close; ours waits for raft_uv's close, our timer and a probe in flight, then
 * calls raft's callback and frees the wrapper. Nothing is reported after close began (RAFT_CANCELED
 * completions are the close's own).
 *
 * raft_io has no field for us (data belongs to raft, impl to raft_uv), so the wrappers find their state
 * by io pointer in a short list (one entry per raft instance of the process; loop thread only). */
#include "consensus/iowrap.h"

#include <errno.h>
#include <fcntl.h>
#include <raft.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/log.h"

#define WATCH_MS (CV_IOWRAP_STALL_MS / 4)
#define STALL_WARN_MS 10000u /* a stall with a writable disk is logged this often */

/* A pending write of ours (an append or a snapshot put), handed to raft_uv in place of raft's. */
struct wreq {
    union { /* first: raft_uv's callback gets its address */
        struct raft_io_append append;
        struct raft_io_snapshot_put put;
    } req;
    union {
        struct raft_io_append *append;
        struct raft_io_snapshot_put *put;
    } orig;
    union {
        raft_io_append_cb append;
        raft_io_snapshot_put_cb put;
    } cb;
    const char *what; /* "append" or "snapshot put" */
    unsigned n;       /* entries of an append */
    struct cv_iowrap *w;
    uint64_t start_ms;
    struct wreq *prev, *next;
};

struct cv_iowrap {
    struct cv_iowrap *next_wrap; /* the process' list */
    struct raft_io *io;
    struct raft_io saved; /* raft_uv's own functions */
    uv_loop_t *loop;
    char *dir;
    cv_iowrap_fail_cb cb;
    void *data;
    uv_timer_t watch;
    struct wreq *pending; /* appends and snapshot puts, newest first */
    uv_work_t probe;
    bool probing;
    int probe_err;          /* errno of the last probe, 0 if it succeeded */
    int fail_status;        /* a RAFT_* code of a failed write waiting for the probe, 0 for a stall */
    char fail_what[96];     /* which write */
    char fail_msg[RAFT_ERRMSG_BUF_SIZE];
    uint64_t warned_ms;     /* last stall warning */
    uint64_t probed_ms;     /* last probe after a stall: at most one per CV_IOWRAP_STALL_MS */
    bool closing, io_closed, timer_closed;
    raft_io_close_cb close_cb;
};

static struct cv_iowrap *wraps;

static struct cv_iowrap *iowrap__of(struct raft_io *io)
{
    for (struct cv_iowrap *w = wraps; w; w = w->next_wrap)
        if (w->io == io) return w;
    abort(); /* a wrapper function is installed only together with its entry */
}

/* ---------------------------------------------------------------- the probe and the report */

static void iowrap__probe_work(uv_work_t *req)
{
    struct cv_iowrap *w = req->data;
    char path[4200];
    snprintf(path, sizeof path, "%s/.cverse-disk-probe", w->dir);
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        w->probe_err = errno;
        return;
    }
    w->probe_err = posix_fallocate(fd, 0, CV_IOWRAP_PROBE_BYTES);
    close(fd);
    unlink(path);
}

static void iowrap__report(struct cv_iowrap *w, const char *reason)
{
    char line[1024];
    snprintf(line, sizeof line, "raft log write failed: %s (data dir %s; %s)", reason, w->dir, w->fail_what);
    CV_ERROR("%s; stopping the node (exit 1)", line);
    if (w->cb) w->cb(w->data, line);
    exit(1);
}

static void iowrap__maybe_closed(struct cv_iowrap *w);

static struct wreq *iowrap__oldest(struct cv_iowrap *w)
{
    struct wreq *r = w->pending;
    while (r && r->next) r = r->next;
    return r;
}

static void iowrap__probe_done(uv_work_t *req, int status)
{
    struct cv_iowrap *w = req->data;
    w->probing = false;
    if (w->closing) {
        iowrap__maybe_closed(w);
        return;
    }
    if (status == 0 && w->probe_err) iowrap__report(w, strerror(w->probe_err));
    if (w->fail_status) {
        char reason[RAFT_ERRMSG_BUF_SIZE + 64];
        snprintf(reason, sizeof reason, "%s%s%s", raft_strerror(w->fail_status), w->fail_msg[0] ? ": " : "",
                 w->fail_msg);
        iowrap__report(w, reason);
    }
    uint64_t now = cv_mono_ms();
    struct wreq *oldest = iowrap__oldest(w);
    if (oldest && now - w->warned_ms >= STALL_WARN_MS) {
        w->warned_ms = now;
        CV_WARN("raft log %s pending for %llu ms although %s accepts writes (slow disk?)", oldest->what,
                (unsigned long long)(now - oldest->start_ms), w->dir);
    }
}

static void iowrap__probe(struct cv_iowrap *w)
{
    if (w->probing || w->closing) return;
    w->probe.data = w;
    w->probe_err = 0;
    if (uv_queue_work(w->loop, &w->probe, iowrap__probe_work, iowrap__probe_done) == 0) w->probing = true;
    else if (w->fail_status) iowrap__report(w, raft_strerror(w->fail_status)); /* cannot probe: say what failed */
}

/* A write failed (status a RAFT_* code): probe, then report whatever the probe finds. */
static void iowrap__failed(struct cv_iowrap *w, int status, const char *what)
{
    if (w->closing || status == 0 || status == RAFT_CANCELED || w->fail_status) return;
    w->fail_status = status;
    snprintf(w->fail_what, sizeof w->fail_what, "%s", what);
    snprintf(w->fail_msg, sizeof w->fail_msg, "%s", w->io->errmsg);
    iowrap__probe(w);
}

static void iowrap__watch(uv_timer_t *t)
{
    struct cv_iowrap *w = t->data;
    struct wreq *oldest = iowrap__oldest(w);
    uint64_t now = cv_mono_ms();
    if (!oldest) uv_timer_stop(t); /* nothing pending: the next write starts the watch again */
    if (!oldest || now - oldest->start_ms < CV_IOWRAP_STALL_MS || w->fail_status ||
        now - w->probed_ms < CV_IOWRAP_STALL_MS)
        return;
    w->probed_ms = now;
    if (oldest->n)
        snprintf(w->fail_what, sizeof w->fail_what, "%s of %u entries pending for %llu ms", oldest->what,
                 oldest->n, (unsigned long long)(now - oldest->start_ms));
    else
        snprintf(w->fail_what, sizeof w->fail_what, "%s pending for %llu ms", oldest->what,
                 (unsigned long long)(now - oldest->start_ms));
    iowrap__probe(w);
}

/* ---------------------------------------------------------------- the wrapped functions */

static struct wreq *wreq__new(struct cv_iowrap *w, const char *what, unsigned n)
{
    struct wreq *r = calloc(1, sizeof *r);
    if (r) *r = (struct wreq){.what = what, .n = n, .w = w, .start_ms = cv_mono_ms()};
    return r;
}

static void wreq__link(struct wreq *r)
{
    struct cv_iowrap *w = r->w;
    r->next = w->pending;
    if (w->pending) w->pending->prev = r;
    w->pending = r;
    if (!w->closing && !uv_is_active((uv_handle_t *)&w->watch)) uv_timer_start(&w->watch, iowrap__watch, WATCH_MS, WATCH_MS);
}

static void wreq__unlink(struct wreq *r)
{
    struct cv_iowrap *w = r->w;
    if (r->prev) r->prev->next = r->next;
    else w->pending = r->next;
    if (r->next) r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

/* A completed request: unlinked, its status looked at; the caller frees it after raft's callback. */
static void wreq__done(struct wreq *r, int status)
{
    wreq__unlink(r);
    iowrap__failed(r->w, status, r->what);
}

/* raft_uv refused a request. RAFT_CANCELED (closing) comes before it is queued, so no callback follows:
 * free it. Any other error is reported (the node stops); the request stays listed, since raft_uv may
 * have queued it before failing and call back later; what is left is freed with the wrapper. */
static void wreq__failed_call(struct cv_iowrap *w, struct wreq *r, int rv)
{
    if (rv != RAFT_CANCELED) {
        iowrap__failed(w, rv, r->what);
        return;
    }
    wreq__unlink(r);
    free(r);
}

static void iowrap__append_cb(struct raft_io_append *req, int status)
{
    struct wreq *r = (struct wreq *)req;
    wreq__done(r, status);
    raft_io_append_cb cb = r->cb.append;
    struct raft_io_append *orig = r->orig.append;
    free(r);
    cb(orig, status);
}

static int iowrap__append(struct raft_io *io, struct raft_io_append *req, const struct raft_entry entries[],
                          unsigned n, raft_io_append_cb cb)
{
    struct cv_iowrap *w = iowrap__of(io);
    struct wreq *r = wreq__new(w, "append", n);
    if (!r) return RAFT_NOMEM;
    r->orig.append = req;
    r->cb.append = cb;
    wreq__link(r); /* before the call: raft_uv may complete it from inside (an error path) */
    int rv = w->saved.append(io, &r->req.append, entries, n, iowrap__append_cb);
    if (rv) wreq__failed_call(w, r, rv);
    return rv;
}

static void iowrap__snapshot_cb(struct raft_io_snapshot_put *req, int status)
{
    struct wreq *r = (struct wreq *)req;
    wreq__done(r, status);
    raft_io_snapshot_put_cb cb = r->cb.put;
    struct raft_io_snapshot_put *orig = r->orig.put;
    free(r);
    cb(orig, status);
}

static int iowrap__snapshot_put(struct raft_io *io, unsigned trailing, struct raft_io_snapshot_put *req,
                                const struct raft_snapshot *snapshot, raft_io_snapshot_put_cb cb)
{
    struct cv_iowrap *w = iowrap__of(io);
    struct wreq *r = wreq__new(w, "snapshot put", 0);
    if (!r) return RAFT_NOMEM;
    r->orig.put = req;
    r->cb.put = cb;
    wreq__link(r);
    int rv = w->saved.snapshot_put(io, trailing, &r->req.put, snapshot, iowrap__snapshot_cb);
    if (rv) wreq__failed_call(w, r, rv);
    return rv;
}

static int iowrap__truncate(struct raft_io *io, raft_index index)
{
    struct cv_iowrap *w = iowrap__of(io);
    int rv = w->saved.truncate(io, index);
    iowrap__failed(w, rv, "truncate");
    return rv;
}

static int iowrap__set_term(struct raft_io *io, raft_term term)
{
    struct cv_iowrap *w = iowrap__of(io);
    int rv = w->saved.set_term(io, term);
    iowrap__failed(w, rv, "set term");
    return rv;
}

static int iowrap__set_vote(struct raft_io *io, raft_id id)
{
    struct cv_iowrap *w = iowrap__of(io);
    int rv = w->saved.set_vote(io, id);
    iowrap__failed(w, rv, "set vote");
    return rv;
}

/* ---------------------------------------------------------------- close */

static void iowrap__maybe_closed(struct cv_iowrap *w)
{
    if (!w->io_closed || !w->timer_closed || w->probing) return;
    for (struct cv_iowrap **p = &wraps; *p; p = &(*p)->next_wrap)
        if (*p == w) {
            *p = w->next_wrap;
            break;
        }
    raft_io_close_cb cb = w->close_cb;
    struct raft_io *io = w->io;
    while (w->pending) { /* refused with an error and never called back: nothing will call back now */
        struct wreq *r = w->pending;
        wreq__unlink(r);
        free(r);
    }
    free(w->dir);
    free(w);
    if (cb) cb(io);
}

static void iowrap__io_closed(struct raft_io *io)
{
    struct cv_iowrap *w = iowrap__of(io);
    w->io_closed = true;
    iowrap__maybe_closed(w);
}

static void iowrap__timer_closed(uv_handle_t *h)
{
    struct cv_iowrap *w = h->data;
    w->timer_closed = true;
    iowrap__maybe_closed(w);
}

static void iowrap__close(struct raft_io *io, raft_io_close_cb cb)
{
    struct cv_iowrap *w = iowrap__of(io);
    w->closing = true;
    w->close_cb = cb;
    uv_close((uv_handle_t *)&w->watch, iowrap__timer_closed);
    w->saved.close(io, iowrap__io_closed);
}

void cv_iowrap_install(struct raft_io *io, uv_loop_t *loop, const char *dir, cv_iowrap_fail_cb cb, void *data)
{
    struct cv_iowrap *w = calloc(1, sizeof *w);
    if (!w || !(w->dir = strdup(dir))) {
        free(w);
        CV_ERROR("out of memory: raft log writes are not watched");
        return;
    }
    w->io = io;
    w->saved = *io;
    w->loop = loop;
    w->cb = cb;
    w->data = data;
    uv_timer_init(loop, &w->watch);
    w->watch.data = w;
    uv_unref((uv_handle_t *)&w->watch); /* never keeps the loop alive by itself; runs while writes pend */
    io->append = iowrap__append;
    io->snapshot_put = iowrap__snapshot_put;
    io->truncate = iowrap__truncate;
    io->set_term = iowrap__set_term;
    io->set_vote = iowrap__set_vote;
    io->close = iowrap__close;
    w->next_wrap = wraps;
    wraps = w;
}
