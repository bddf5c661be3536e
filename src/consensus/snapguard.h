/* A raft_io between libraft and raft_uv that holds back InstallSnapshot messages while a snapshot of our
 * own is being written (works around a libraft 0.22.1 crash, see snapguard.c), and leaves the heartbeats
 * that g->quiet finds redundant unsent (consensus/quiet.h). */
#ifndef CV_CONSENSUS_SNAPGUARD_H
#define CV_CONSENSUS_SNAPGUARD_H

#include <raft.h>
#include <stdbool.h>
#include <stdint.h>

#include "consensus/quiet.h"

struct cv_snapguard {
    struct raft_io io;    /* what raft_init gets */
    struct raft_io inner; /* what raft_uv_init initialises */
    raft_io_tick_cb tick;
    raft_io_recv_cb recv;
    raft_io_close_cb close_cb;
    struct raft_io_snapshot_put *put; /* our own snapshot being written, or NULL */
    raft_io_snapshot_put_cb put_cb;
    void *put_data;                   /* raft's req->data while req->data points to us */
    bool holding;                     /* held is set */
    bool closing;
    struct raft_message held;         /* owned: the newest InstallSnapshot that arrived during put */
    char *held_addr;                  /* owned copy of held.server_address */
    uint64_t held_total;              /* messages held back since start */
    uint64_t dropped_total;           /* held messages replaced by a newer one or freed at close */
    struct cv_quiet quiet;            /* which heartbeats send leaves unsent (disabled until cv_quiet_init) */
    void (*after_tick)(void *data);   /* NULL: none; runs after each of raft's ticks (not once closing) */
    void *after_tick_data;            /* borrowed while after_tick is set */
};

/* Sets up g->io to forward to g->inner (g->quiet disabled: the owner may cv_quiet_init it; no
 * after_tick: the owner may set it). Call after raft_uv_init(&g->inner, ...) succeeded and before
 * raft_init(&raft, &g->io, ...). g stays valid until raft's close callback ran. */
void cv_snapguard_init(struct cv_snapguard *g);

#endif
