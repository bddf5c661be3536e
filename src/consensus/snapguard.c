/* snapguard: a raft_io that forwards every call to raft_uv's, except that an InstallSnapshot message
 * arriving while a snapshot of our own is being written waits until that write completed.
 *
 * Why: libraft 0.22.1 (src/legacy.c, takeSnapshotCb) handles an install that arrived during a local
 * snapshot by parking it in r->legacy.snapshot_pending, and when the local snapshot completes it clears
 * that field before reading it, then dereferences the NULL it read (SEGV at address 0x48). It happens to
 * a follower that is behind while it takes its own snapshot: a node joining, or one resuming after a stall
 * or a partition. The bug is still in cowsql/raft's main branch; once a fixed libraft ships, this module
 * can go.
 *
 * Happy path: every call is forwarded to the inner io; callbacks raft_uv makes with the inner io are
 * passed on with the outer one. raft_uv reads inner.data as the struct raft (LegacyFireCompletedRequests),
 * so inner.data is kept equal to io.data.
 *
 * While our own snapshot_put (trailing > 0: libraft's installs use 0) is in flight, the newest
 * InstallSnapshot received is held (an older held one is freed: raft tolerates lost messages, the leader
 * sends it again) and delivered right after the put's callback ran. At close, a held message is freed.
 *
 * A heartbeat that g->quiet finds redundant is not sent: raft's send callback runs at once with status 0
 * (sent, and lost on the way — Raft tolerates the loss of any message). From within send: libraft
 * 0.22.1's only sender (legacySendMessage) touches nothing of the request once send returned 0, and its
 * callback only releases the entries and frees the request. */
#include "consensus/snapguard.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

#define G(p) ((struct cv_snapguard *)((char *)(p) - offsetof(struct cv_snapguard, io)))
#define G_INNER(p) ((struct cv_snapguard *)((char *)(p) - offsetof(struct cv_snapguard, inner)))

/* Before every forwarded call: raft_uv reads these from its own struct. */
static struct raft_io *snapguard__in(struct raft_io *io)
{
    struct cv_snapguard *g = G(io);
    g->inner.data = io->data;
    return &g->inner;
}

/* After every forwarded call: what raft reads from the outer struct. */
static int snapguard__out(struct raft_io *io, int rv)
{
    struct cv_snapguard *g = G(io);
    io->capacity = g->inner.capacity;
    if (rv != 0) memcpy(io->errmsg, g->inner.errmsg, sizeof io->errmsg);
    return rv;
}

static void snapguard__free_held(struct cv_snapguard *g)
{
    if (!g->holding) return;
    raft_configuration_close(&g->held.install_snapshot.conf);
    raft_free(g->held.install_snapshot.data.base);
    free(g->held_addr);
    g->held_addr = NULL;
    g->holding = false;
    g->dropped_total++;
}

static void snapguard__tick(struct raft_io *inner)
{
    struct cv_snapguard *g = G_INNER(inner);
    g->tick(&g->io);
    /* The consensus' and the host's periodic work rides on raft's own timer: one wake-up instead of three
     * (an idle node woke ~170 times a second, and each wake-up is a context switch). */
    if (g->after_tick && !g->closing) g->after_tick(g->after_tick_data);
}

static void snapguard__recv(struct raft_io *inner, struct raft_message *m)
{
    struct cv_snapguard *g = G_INNER(inner);
    char *addr;
    if (m->type != RAFT_INSTALL_SNAPSHOT || !g->put || !(addr = strdup(m->server_address))) {
        g->recv(&g->io, m);
        return;
    }
    snapguard__free_held(g);
    g->held = *m; /* takes the data buffer and the configuration, as raft would */
    g->held.server_address = g->held_addr = addr;
    g->holding = true;
    g->held_total++;
    CV_INFO("raft: snapshot at index %llu from node %llu held until our own snapshot is written",
            (unsigned long long)m->install_snapshot.last_index, (unsigned long long)m->server_id);
}

/* Our own snapshot is written (or failed): raft's callback first, then the install we held back. */
static void snapguard__put_done(struct raft_io_snapshot_put *req, int status)
{
    struct cv_snapguard *g = req->data;
    raft_io_snapshot_put_cb cb = g->put_cb;
    req->data = g->put_data; /* raft's own, borrowed for the duration of the put */
    g->put = NULL;
    g->put_cb = NULL;
    g->put_data = NULL;
    cb(req, status); /* frees req; may start our next snapshot write at once (threshold crossed again) */
    /* Still writing (that next snapshot): the install waits for it too, or libraft parks it and crashes
     * when that write completes (seen in test_fencing after a SIGSTOP, with a burst of applied entries). */
    if (!g->holding || g->closing || g->put) return;
    struct raft_message m = g->held;
    char *addr = g->held_addr;
    g->holding = false;
    g->held_addr = NULL;
    g->recv(&g->io, &m); /* takes the data buffer and the configuration */
    free(addr);
}

static int snapguard__init(struct raft_io *io, raft_id id, const char *address)
{
    return snapguard__out(io, snapguard__in(io)->init(&G(io)->inner, id, address));
}

static void snapguard__closed(struct raft_io *inner)
{
    struct cv_snapguard *g = G_INNER(inner);
    g->close_cb(&g->io);
}

static void snapguard__close(struct raft_io *io, raft_io_close_cb cb)
{
    struct cv_snapguard *g = G(io);
    g->closing = true;
    g->close_cb = cb;
    snapguard__free_held(g);
    snapguard__in(io)->close(&g->inner, snapguard__closed);
}

static int snapguard__load(struct raft_io *io, raft_term *term, raft_id *voted_for, struct raft_snapshot **snapshot,
                           raft_index *start_index, struct raft_entry *entries[], size_t *n_entries)
{
    struct raft_io *in = snapguard__in(io);
    return snapguard__out(io, in->load(in, term, voted_for, snapshot, start_index, entries, n_entries));
}

static int snapguard__start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv)
{
    struct cv_snapguard *g = G(io);
    g->tick = tick;
    g->recv = recv;
    struct raft_io *in = snapguard__in(io);
    return snapguard__out(io, in->start(in, msecs, snapguard__tick, snapguard__recv));
}

static int snapguard__bootstrap(struct raft_io *io, const struct raft_configuration *conf)
{
    struct raft_io *in = snapguard__in(io);
    return snapguard__out(io, in->bootstrap(in, conf));
}

static int snapguard__recover(struct raft_io *io, const struct raft_configuration *conf)
{
    struct raft_io *in = snapguard__in(io);
    return snapguard__out(io, in->recover(in, conf));
}

static int snapguard__set_term(struct raft_io *io, raft_term term)
{
    struct raft_io *in = snapguard__in(io);
    return snapguard__out(io, in->set_term(in, term));
}

static int snapguard__set_vote(struct raft_io *io, raft_id server_id)
{
    struct raft_io *in = snapguard__in(io);
    return snapguard__out(io, in->set_vote(in, server_id));
}

static int snapguard__send(struct raft_io *io, struct raft_io_send *req, const struct raft_message *m,
                           raft_io_send_cb cb)
{
    struct cv_snapguard *g = G(io);
    if (cv_quiet_skip(&g->quiet, m, cv_mono_ms())) {
        cb(req, 0);
        return 0;
    }
    struct raft_io *in = snapguard__in(io);
    return snapguard__out(io, in->send(in, req, m, cb));
}

static int snapguard__append(struct raft_io *io, struct raft_io_append *req, const struct raft_entry entries[],
                             unsigned n, raft_io_append_cb cb)
{
    struct raft_io *in = snapguard__in(io);
    return snapguard__out(io, in->append(in, req, entries, n, cb));
}

static int snapguard__truncate(struct raft_io *io, raft_index index)
{
    struct raft_io *in = snapguard__in(io);
    return snapguard__out(io, in->truncate(in, index));
}

static int snapguard__snapshot_put(struct raft_io *io, unsigned trailing, struct raft_io_snapshot_put *req,
                                   const struct raft_snapshot *snapshot, raft_io_snapshot_put_cb cb)
{
    struct cv_snapguard *g = G(io);
    struct raft_io *in = snapguard__in(io);
    if (trailing == 0 || g->put) /* an install being persisted: nothing to guard */
        return snapguard__out(io, in->snapshot_put(in, trailing, req, snapshot, cb));
    g->put = req;
    g->put_cb = cb;
    g->put_data = req->data;
    req->data = g;
    int rv = in->snapshot_put(in, trailing, req, snapshot, snapguard__put_done);
    if (rv != 0) {
        req->data = g->put_data;
        g->put = NULL;
        g->put_cb = NULL;
        g->put_data = NULL;
    }
    return snapguard__out(io, rv);
}

static int snapguard__snapshot_get(struct raft_io *io, struct raft_io_snapshot_get *req,
                                   raft_io_snapshot_get_cb cb)
{
    struct raft_io *in = snapguard__in(io);
    return snapguard__out(io, in->snapshot_get(in, req, cb));
}

static raft_time snapguard__time(struct raft_io *io)
{
    struct raft_io *in = snapguard__in(io);
    return in->time(in);
}

static int snapguard__random(struct raft_io *io, int min, int max)
{
    struct raft_io *in = snapguard__in(io);
    return in->random(in, min, max);
}

void cv_snapguard_init(struct cv_snapguard *g)
{
    struct raft_io *io = &g->io;
    memset(io, 0, sizeof *io);
    io->version = g->inner.version;
    io->capacity = g->inner.capacity;
    io->data = g->inner.data;
    io->impl = g; /* raft never reads it; raft_uv's own impl stays in inner */
    io->init = snapguard__init;
    io->close = snapguard__close;
    io->load = snapguard__load;
    io->start = snapguard__start;
    io->bootstrap = snapguard__bootstrap;
    io->recover = snapguard__recover;
    io->set_term = snapguard__set_term;
    io->set_vote = snapguard__set_vote;
    io->send = snapguard__send;
    io->append = snapguard__append;
    io->truncate = snapguard__truncate;
    io->snapshot_put = snapguard__snapshot_put;
    io->snapshot_get = snapguard__snapshot_get;
    io->time = snapguard__time;
    io->random = snapguard__random;
    g->put = NULL;
    g->holding = g->closing = false;
    g->held_addr = NULL;
    g->held_total = g->dropped_total = 0;
    cv_quiet_init(&g->quiet, NULL, 0, false);
    g->after_tick = NULL;
    g->after_tick_data = NULL;
}
