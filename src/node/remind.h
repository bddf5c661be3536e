/* Durable reminders on a node: the scheduler that fires the reminders of the objects whose shards this
 * node owns (from the catalog's db "reminders"), activating the objects as needed. */
#ifndef CV_NODE_REMIND_H
#define CV_NODE_REMIND_H

#include "node/hctx.h"

#define CV_REMIND_RETRY_MS 5000   /* a hand-over refused for good (a type this node lacks): retried after */
#define CV_REMIND_REFIRE_MS 10000 /* a fired due time whose advance never committed fires again after this */

struct remind_entry;
struct remind_fired;
struct cv_remind {
    struct cv_hctx *x;             /* borrowed */
    struct remind_entry *entries;  /* owned: this node's reminders as the catalog has them, sorted by id */
    size_t n, cap;
    struct remind_fired *fired;    /* owned: due times fired lately (until their advance is in the catalog) */
    bool stale;                    /* read the whole catalog table again at the next tick */
    uint64_t next_due;             /* the earliest due time not fired yet (0: look at every entry) */
    uint64_t next_release;         /* monotonic: the earliest end of a hold (fired, refused); 0 = none */
    uint64_t fires;                /* reminders handed to the runtime */
    uint64_t reads, object_reads;  /* reads of the whole table, of one object's record */
};

void cv_remind_init(struct cv_remind *r, struct cv_hctx *x);
/* The objects this node owns changed (the shard map, a snapshot): read all reminders at the next tick. */
void cv_remind_changed(struct cv_remind *r);
/* An applied command changed (or dropped) the reminders of object id: its record is read again now. */
void cv_remind_object(struct cv_remind *r, const char *id);
/* Fires what fell due (the host's tick; nothing while not started, fenced or closing). */
void cv_remind_tick(struct cv_remind *r);
/* In how many ms cv_remind_tick has something to do (a reminder falls due, a hold ends, the table is to
 * be read); UINT_MAX: nothing (not serving, or no reminders: a change wakes the host). */
unsigned cv_remind_next_ms(const struct cv_remind *r);
void cv_remind_free(struct cv_remind *r);

#endif
