/* The inspector's events stream. Until the HTTP server can stream a response, GET /events/stream answers
 * 503 and clients poll /api/state (its last_event_id and events tail). */
#include "inspector/sse.h"

#include <stdlib.h>

#include "cverse/error.h"

struct cv_insp_sse {
    struct cv_insp_events *events;
};

int cv_insp_sse_new(struct cv_insp_events *events, struct cv_insp_sse **out)
{
    struct cv_insp_sse *s = calloc(1, sizeof *s);
    if (!s) return CV_ENOMEM;
    s->events = events;
    *out = s;
    return 0;
}

void cv_insp_sse_open(struct cv_insp_sse *s, struct cv_http_exchange *x, const struct cv_http_request *req)
{
    cv_http_respond_error(x, CV_STATUS_UNAVAILABLE, "events stream not available yet: poll /api/state");
}

size_t cv_insp_sse_clients(const struct cv_insp_sse *s)
{
    return 0;
}

void cv_insp_sse_free(struct cv_insp_sse *s)
{
    free(s);
}
