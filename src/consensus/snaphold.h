/* Holds an incoming InstallSnapshot while this node writes a snapshot of its own (a workaround for a
 * libraft 0.22.1 crash, see snaphold.c); internal to the consensus module. */
#ifndef CV_CONSENSUS_SNAPHOLD_H
#define CV_CONSENSUS_SNAPHOLD_H

#include <raft.h>
#include <stdbool.h>

/* Embedded in the consensus; io comes first and IS the node's raft io (raft_uv_init fills it, raft_init
 * takes it): the hold finds itself from the io pointer libraft's transport passes to callbacks. */
struct cv_snaphold {
    struct raft_io io;
    int (*uv_start)(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv);
    raft_io_recv_cb raft_recv; /* raft's receive callback, given to io.start */
    bool taking;               /* between our fsm snapshot callback and its finalize */
    bool held;                 /* msg holds an InstallSnapshot (owned: data and configuration) */
    struct raft_message msg;
    char addr[256];            /* msg.server_address points here */
};

/* Call after raft_uv_init(&h->io, ...) and before raft_start: routes received messages through the
 * hold. */
void cv_snaphold_init(struct cv_snaphold *h);
/* Our FSM started writing a snapshot (fsm->snapshot returned 0): from now on an InstallSnapshot waits. */
void cv_snaphold_taking(struct cv_snaphold *h);
/* libraft finished with our snapshot (fsm->snapshot_finalize ran). The held message, if any, is NOT
 * delivered here (we are inside libraft's callback): cv_snaphold_release does it later. */
void cv_snaphold_taken(struct cv_snaphold *h);
/* Delivers a held InstallSnapshot to raft unless a snapshot is being written again. Call from a
 * top-level loop callback (the consensus tick), never from inside a raft callback. */
void cv_snaphold_release(struct cv_snaphold *h);
/* Frees a held message without delivering it (closing). */
void cv_snaphold_drop(struct cv_snaphold *h);

#endif
