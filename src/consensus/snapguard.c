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
 * callback only releases the entries and frees the request.
 *
 * The pace: raft_uv ticks raft every heartbeat timeout (15 ms) on every node, but only a leader has
 * something to do that often; a follower's only timeout is its election timer, which every message from
 * the leader pushes back. So raft_uv's own tick is a one-hour backstop, and a timer of ours ticks raft:
 * periodically every heartbeat timeout while it leads (as raft_uv did), on a voting follower or a
 * candidate exactly at raft_timeout() (the election timer's expiry), and not at all on a follower that
 * does not vote (a standby's election timer only ever tells raft to stay follower). A prepare handle re-arms that timer before the
 * loop polls, whenever raft's next timeout moved (a message reset the election timer, a state change),
 * and reports a change of raft's state or leader (g->changed), whatever caused it. An idle standby that
 * hears a keepalive every 75 ms never ticks; a voter loses leader contact and campaigns as before (at the
 * expiry itself rather than at the next 15 ms tick). */
#include "consensus/snapguard.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

#define INNER_PERIOD_MS 3600000u /* raft_uv's own periodic tick: a backstop only (see the pace above) */
#define FOLLOWER_MIN_MS 2u       /* a follower's next timeout is never closer than this: no spinning */
#define DUE_LEADING ((raft_time)-1) /* g->due while the timer runs periodically for a leader */
#define DUE_NEVER ((raft_time)-2)   /* g->due while raft needs no tick (a follower that does not vote) */

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

static void snapguard__run_tick(struct cv_snapguard *g)
{
    g->ticks++;
    g->tick(&g->io);
    /* The consensus' periodic work rides on raft's own ticks where there are any (a leader's): one
     * wake-up instead of two (each wake-up is a context switch). */
    if (g->after_tick && !g->closing) g->after_tick(g->after_tick_data);
}

/* raft_uv's tick: the backstop. An extra tick is harmless (raft acts on what expired, by its clock). */
static void snapguard__inner_tick(struct raft_io *inner)
{
    snapguard__run_tick(G_INNER(inner));
}

static void snapguard__timer_cb(uv_timer_t *t)
{
    struct cv_snapguard *g = t->data;
    if (g->due != DUE_LEADING) g->due = 0; /* fired (once): the next pace arms it again */
    if (!g->closing) snapguard__run_tick(g);
}

/* Before each poll: raft's timer set to raft's next timeout, and a change of state or leader reported. */
static void snapguard__pace_cb(uv_prepare_t *p)
{
    struct cv_snapguard *g = p->data;
    struct raft *r = g->io.data;
    if (g->closing) return;
    int state = raft_state(r);
    if (state == RAFT_LEADER && g->due != DUE_LEADING) {
        g->due = DUE_LEADING;
        uv_timer_start(&g->timer, snapguard__timer_cb, g->period_ms, g->period_ms);
    } else if (state == RAFT_FOLLOWER && raft_role(r) != RAFT_VOTER) { /* a standby, spare or removed node */
        if (g->due != DUE_NEVER) uv_timer_stop(&g->timer);
        g->due = DUE_NEVER;
    } else if (state == RAFT_FOLLOWER || state == RAFT_CANDIDATE) {
        raft_time at = raft_timeout(r), now = g->inner.time(&g->inner);
        if (at != g->due) {
            g->due = at;
            uv_timer_start(&g->timer, snapguard__timer_cb, at > now + FOLLOWER_MIN_MS ? at - now : FOLLOWER_MIN_MS, 0);
        }
    }
    raft_id leader;
    const char *addr;
    raft_leader(r, &leader, &addr);
    if (state == g->seen_state && leader == g->seen_leader) return;
    g->seen_state = state;
    g->seen_leader = leader;
    if (g->changed) g->changed(g->after_tick_data);
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

static void snapguard__settle(struct cv_snapguard *g)
{
    if (--g->handles_closing == 0) g->close_cb(&g->io);
}

static void snapguard__closed(struct raft_io *inner)
{
    snapguard__settle(G_INNER(inner));
}

static void snapguard__handle_closed(uv_handle_t *h)
{
    snapguard__settle(h->data);
}

static void snapguard__close(struct raft_io *io, raft_io_close_cb cb)
{
    struct cv_snapguard *g = G(io);
    g->closing = true;
    g->close_cb = cb;
    snapguard__free_held(g);
    g->handles_closing = 1;
    if (g->paced) {
        g->handles_closing += 2;
        uv_close((uv_handle_t *)&g->timer, snapguard__handle_closed);
        uv_close((uv_handle_t *)&g->pace, snapguard__handle_closed);
    }
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
    g->period_ms = msecs ? msecs : 1;
    struct raft_io *in = snapguard__in(io);
    int rv = in->start(in, g->loop ? INNER_PERIOD_MS : msecs, snapguard__inner_tick, snapguard__recv);
    if (rv == 0 && g->loop && !g->paced) {
        uv_timer_init(g->loop, &g->timer);
        uv_prepare_init(g->loop, &g->pace);
        g->timer.data = g->pace.data = g;
        uv_prepare_start(&g->pace, snapguard__pace_cb);
        uv_unref((uv_handle_t *)&g->pace); /* never keeps the loop alive by itself */
        g->paced = true;
        g->due = 0;
        g->seen_state = -1;
    }
    return snapguard__out(io, rv);
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
    /* raft's clock (the loop's), the one its ticks run on: a keepalive counted in the same ms as the beats */
    if (cv_quiet_skip(&g->quiet, m, g->inner.time(&g->inner))) {
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

void cv_snapguard_init(struct cv_snapguard *g, uv_loop_t *loop)
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
    cv_quiet_init(&g->quiet, NULL, 0, 0, false);
    g->after_tick = NULL;
    g->changed = NULL;
    g->after_tick_data = NULL;
    g->loop = loop;
    g->paced = false;
    g->ticks = 0;
}
