/* Durable reminders on a node: the scheduler that fires the reminders of the objects whose shards this
 * node owns (from the catalog's db "reminders"), activating the objects as needed. */
#ifndef CV_NODE_REMIND_H
#define CV_NODE_REMIND_H

#include "node/hctx.h"

#define CV_REMIND_REBUILD_MS 5000 /* the catalog is read again at least this often */
#define CV_REMIND_REFIRE_MS 10000 /* a fired due time whose advance never committed fires again after this */

struct remind_entry;
struct remind_fired;
struct cv_remind {
    struct cv_hctx *x;             /* borrowed */
    struct remind_entry *entries;  /* owned: this node's reminders as the catalog has them */
    size_t n, cap;
    struct remind_fired *fired;    /* owned: due times fired lately (until their advance is in the catalog) */
    bool stale;                    /* read the catalog again at the next tick */
    uint64_t built_ms, next_due;   /* when it was read (monotonic); the earliest due time not fired yet */
    uint64_t fires;                /* reminders handed to the runtime */
};

void cv_remind_init(struct cv_remind *r, struct cv_hctx *x);
/* The catalog's reminders or the shard map changed: read them again at the next tick. */
void cv_remind_changed(struct cv_remind *r);
/* Fires what fell due (the host's tick; nothing while not started, fenced or closing). */
void cv_remind_tick(struct cv_remind *r);
void cv_remind_free(struct cv_remind *r);

#endif
