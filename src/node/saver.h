/* Durable object state in a node: the runtime's load_state / save_state hooks, served from the local
 * catalog replica and committed as CmdSaveState proposals, one per loop iteration for every save queued
 * in it (docs/durable-state.md). */
#ifndef CV_NODE_SAVER_H
#define CV_NODE_SAVER_H

#include "node/hctx.h"

struct psave;
struct pbatch;

struct cv_saver {
    struct cv_hctx *x; /* first member (cv_hctx_handle_closed); borrowed */
    struct psave *queue, **tail; /* saves waiting for the next flush, in order */
    size_t n_queue;
    uv_timer_t flush;
    /* counters since start (GET /metrics) */
    uint64_t saves, committed, refused, failed, batches, bytes;
    uint64_t early;               /* batches answered from the leader's commit notice */
    struct pbatch *released;      /* answered early, not applied to our replica yet */
    uint64_t lag_index;           /* an early-answered entry our replica had not applied when its
                                   * proposal ended: loads wait until it did */
};

/* The runtime's policies from the config's object_types (*out: n_object_types entries, owned by the
 * caller, free()); logs a warning for a type the registry lacks or one that cannot persist. CV_ENOMEM. */
int cv_saver_policies(const struct cv_config *cfg, cv_registry *reg, struct cv_type_policy **out);
/* Initialises the flush timer (data: p). */
void cv_saver_init(struct cv_saver *p, struct cv_hctx *x);
/* The runtime's load_state hook (runtime.h): the catalog's state record of id, if its type matches. */
int cv_saver_load(struct cv_saver *p, const char *type, const char *id, uint8_t **state, size_t *len,
                    uint64_t *version);
/* The runtime's save_state hook (runtime.h): queued for this loop iteration's CmdSaveState. CV_EUNAVAIL
 * (re-routed) at once when this node is not the object's writer by its catalog (the shard moved on, or
 * is not ours); CV_ECLOSED while the host closes. state is ours from here on, also on error. */
int cv_saver_save(struct cv_saver *p, const char *type, const char *id, uint64_t version, uint8_t *state,
                    size_t len, const struct cv_save_extra *calls, cv_state_saved_cb cb, void *cb_data);
/* The runtime's load_reminders hook (runtime.h): id's reminders in the catalog. */
int cv_saver_load_reminders(struct cv_saver *p, const char *id, void (*add)(void *o, const struct cv_reminder *r),
                            void *o);
/* The runtime's load_calls hook (runtime.h): the call ids recorded with id's state in the catalog. */
int cv_saver_load_calls(struct cv_saver *p, const char *id, void (*call)(void *o, const struct cv_call_record *r),
                        void (*expired)(void *o, uint64_t hash), void *o);
/* Host closing: queued saves fail (CV_ECLOSED), the timer closes (one part of the host). */
void cv_saver_close(struct cv_saver *p);

#endif
