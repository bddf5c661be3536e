/* The inspector's poller: every interval (every idle interval while nobody watches) it asks each
 * configured node for /v1/cluster, /v1/shards, /v1/objects, /ready and /v1/stats, builds the next model
 * and pushes the events the change makes. */
#ifndef CV_INSPECTOR_POLL_H
#define CV_INSPECTOR_POLL_H

#include <jansson.h>
#include <uv.h>

#include "config/config.h"
#include "inspector/events.h"
#include "inspector/model.h"
#include "net/httpc.h"

struct cv_insp_poll;

struct cv_insp_poll_opts {
    uv_loop_t *loop;
    const struct cv_config *cfg;   /* borrowed, outlives the poller */
    struct cv_httpc *httpc;        /* borrowed; close it before the poller (its cancelled answers
                                    * are then absorbed: the poller is still there to count them) */
    struct cv_insp_events *events; /* borrowed */
    unsigned interval_ms;          /* 0: 1000; while someone watches (cv_insp_poll_watch) */
    unsigned idle_interval_ms;     /* 0: 10000; nobody watching for 30 s */
    void (*on_round)(void *data);  /* after each round's model is current (may be NULL) */
    void *data;
};

int cv_insp_poll_init(const struct cv_insp_poll_opts *o, struct cv_insp_poll **out);
/* First round at once, then every interval until a round has data, then every idle interval until
 * someone watches. */
int cv_insp_poll_start(struct cv_insp_poll *p);
/* Someone looks (a UI or API request, an open events stream): rounds every interval for the next 30 s,
 * the first at once if the poller was idling. */
void cv_insp_poll_watch(struct cv_insp_poll *p);
/* The current model (the last finished round); valid until the next round finishes. */
const struct cv_insp_model *cv_insp_poll_model(const struct cv_insp_poll *p);
/* "http://host:port" of node i's HTTP API (connectable form). */
const char *cv_insp_poll_base(const struct cv_insp_poll *p, size_t i);
/* {"node" (whose change feed is read next),"following" (its first answer came),"index" (every change up
 * to it became events)}; new reference. */
json_t *cv_insp_poll_feed(const struct cv_insp_poll *p);
/* Rounds finished so far. */
uint64_t cv_insp_poll_rounds(const struct cv_insp_poll *p);
/* Stops polling and frees p once its timer closed (cb may be NULL). */
void cv_insp_poll_close(struct cv_insp_poll *p, void (*cb)(void *data), void *data);

#endif
