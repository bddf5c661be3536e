/* A raft_io between libraft and raft_uv that holds back InstallSnapshot messages while a snapshot of our
 * own is being written (works around a libraft 0.22.1 crash, see snapguard.c), leaves the heartbeats
 * that g->quiet finds redundant unsent (consensus/quiet.h), and ticks raft when raft_timeout() says. */
#ifndef CV_CONSENSUS_SNAPGUARD_H
#define CV_CONSENSUS_SNAPGUARD_H

#include <raft.h>
#include <uv.h>
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
    void (*changed)(void *data);      /* NULL: none; raft's state or leader changed (checked before each poll) */
    void *after_tick_data;            /* borrowed while after_tick or changed is set */
    /* The pace: raft's timer (see snapguard.c). */
    uv_loop_t *loop;                  /* borrowed, valid until raft's close callback ran; NULL: no pace */
    uv_timer_t timer;                 /* raft's ticks: at raft_timeout() on a follower, periodic on a leader */
    uv_prepare_t pace;                /* before each poll: re-arms timer if raft's next timeout moved */
    unsigned period_ms;               /* raft's heartbeat timeout (what raft asked io->start for) */
    raft_time due;                    /* when timer fires (io->time() clock); 0: not armed for a follower */
    int seen_state;                   /* raft_state() and leader id at the last pace, for changed */
    raft_id seen_leader;
    bool paced;                       /* timer and pace are initialised (io->start ran): close them */
    unsigned handles_closing;         /* timer, pace and inner io still closing */
    uint64_t ticks;                   /* raft ticks run since start */
};

/* Sets up g->io to forward to g->inner (g->quiet disabled: the owner may cv_quiet_init it; no
 * after_tick or changed: the owner may set them). Call after raft_uv_init(&g->inner, loop, ...) succeeded
 * and before raft_init(&raft, &g->io, ...). g stays valid until raft's close callback ran. With a NULL
 * loop the inner io's own periodic tick drives raft (a scripted inner io in unit tests). */
void cv_snapguard_init(struct cv_snapguard *g, uv_loop_t *loop);

#endif
