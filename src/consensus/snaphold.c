/* Holds an InstallSnapshot that arrives while this node writes its own snapshot, and hands it to raft
 * once the write is over.
 *
 * Why: libraft 0.22.1 (src/legacy.c, takeSnapshotCb) crashes when a follower accepts an InstallSnapshot
 * while its own snapshot is still being written: it parks the install as "pending", and when the write
 * completes it clears the pending pointer BEFORE reading it and starts persisting NULL (SEGV at address
 * 0x48, the offset of the request's raft pointer, from a libuv work callback). Upstream still has it.
 * It takes a node that applies a burst of entries (its own snapshot threshold is crossed) and at once
 * needs a snapshot from the leader: typically a node resumed after SIGSTOP or a long stall, or a
 * leader that stepped down after one, when the new leader already compacted past its log
 * (test_fencing, resumed_leader_gets_the_new_leaders_snapshot_while_writing_its_own, makes it likely).
 *
 * Happy path: cv_snaphold_init puts a receive callback between the libuv transport and raft (it
 * replaces io.start, which is how raft registers its callback). Every message goes straight to raft,
 * except an InstallSnapshot while our snapshot is being written (cv_snaphold_taking .. _taken): that
 * one is kept (the newest replaces an older one) and delivered by cv_snaphold_release, which the
 * consensus tick calls, once no write is in progress. Raft tolerates delayed and reordered messages
 * (the leader ignores stale rejections while it sends a snapshot), so holding it changes no outcome.
 * Failure modes: none of its own; a message held at close is freed (as raft frees messages it gets
 * while closing).
 */
#include "consensus/snaphold.h"

#include <stddef.h>
#include <stdio.h>

#include "util/log.h"

static struct cv_snaphold *snaphold__of(struct raft_io *io)
{
    return (struct cv_snaphold *)((char *)io - offsetof(struct cv_snaphold, io));
}

static void snaphold__free_msg(struct raft_message *m)
{
    raft_configuration_close(&m->install_snapshot.conf);
    raft_free(m->install_snapshot.data.base);
}

static void snaphold__recv(struct raft_io *io, struct raft_message *m)
{
    struct cv_snaphold *h = snaphold__of(io);
    if (m->type != RAFT_INSTALL_SNAPSHOT || !h->taking) {
        h->raft_recv(io, m);
        return;
    }
    bool again = h->held;
    if (again) snaphold__free_msg(&h->msg); /* the leader sent it again, or a newer one: keep the last */
    h->msg = *m;
    snprintf(h->addr, sizeof h->addr, "%s", m->server_address ? m->server_address : "");
    h->msg.server_address = h->addr; /* the transport's string lives only as long as its connection */
    h->held = true;
    if (!again)
        CV_INFO("raft: snapshot %llu from node %llu held until our own snapshot is written (libraft 0.22.1 "
                "would crash otherwise)", (unsigned long long)m->install_snapshot.last_index,
                (unsigned long long)m->server_id);
}

static int snaphold__start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv)
{
    struct cv_snaphold *h = snaphold__of(io);
    h->raft_recv = recv;
    return h->uv_start(io, msecs, tick, snaphold__recv);
}

void cv_snaphold_init(struct cv_snaphold *h)
{
    h->uv_start = h->io.start;
    h->io.start = snaphold__start;
    h->taking = h->held = false;
}

void cv_snaphold_taking(struct cv_snaphold *h)
{
    h->taking = true;
}

void cv_snaphold_taken(struct cv_snaphold *h)
{
    h->taking = false;
}

void cv_snaphold_release(struct cv_snaphold *h)
{
    if (!h->held || h->taking) return;
    h->held = false;
    struct raft_message m = h->msg;
    h->raft_recv(&h->io, &m);
}

void cv_snaphold_drop(struct cv_snaphold *h)
{
    if (h->held) snaphold__free_msg(&h->msg);
    h->held = false;
}
