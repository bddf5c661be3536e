/* Outgoing object calls: calls made by objects (the runtime's `call` hook), to an object here (through
 * the incall checks) or on another node (objects.call over the peer pool), re-routed with backoff until
 * the call's deadline while the error table says the call did not run (cv_err_reroute). */
#ifndef CV_NODE_OUTCALL_H
#define CV_NODE_OUTCALL_H

#include "node/hctx.h"

#define CV_OUTCALL_RETRY_MIN_MS 10
#define CV_OUTCALL_RETRY_MAX_MS 200

/* The links of the list of calls under way (embedded first in each call). */
struct cv_outcall_link {
    struct cv_outcall_link *next, *prev;
};

struct cv_outcall {
    struct cv_hctx *x;            /* borrowed; x->peers dials the owners */
    unsigned timeout_ms;          /* per call, redirect retries included */
    struct cv_outcall_link calls; /* sentinel */
};

void cv_outcall_init(struct cv_outcall *oc, struct cv_hctx *x, unsigned timeout_ms);
/* An object's call (the runtime hook `call`): 0 and cb fires later, or a final code (never called back). */
int cv_outcall_call(struct cv_outcall *oc, const char *type, const char *id, const char *method, const uint8_t *req,
                    size_t len, const struct cv_call_ctx *ctx, cv_runtime_call_cb cb, void *cb_data);
/* Runs the retries that are due (each tick). While the host closes, completes every waiting call with
 * CV_ECLOSED. */
void cv_outcall_retry(struct cv_outcall *oc);
/* Whether calls are under way. */
bool cv_outcall_busy(const struct cv_outcall *oc);

#endif
