/* The inspector's events stream (Server-Sent Events): every event with `id: N`, resume with
 * Last-Event-ID (or ?after=N), `event: resync` when the asked-for events fell out of the ring. */
#ifndef CV_INSPECTOR_SSE_H
#define CV_INSPECTOR_SSE_H

#include "inspector/events.h"
#include "net/http.h"

struct cv_insp_sse;

/* Listens to events (borrowed, outlives the hub). */
int cv_insp_sse_new(struct cv_insp_events *events, struct cv_insp_sse **out);
/* Answers GET /events/stream: the stream stays open until the peer or the server closes it. */
void cv_insp_sse_open(struct cv_insp_sse *s, struct cv_http_exchange *x, const struct cv_http_request *req);
/* Called about once a second: keeps idle streams alive with a comment now and then. */
void cv_insp_sse_tick(struct cv_insp_sse *s);
/* Streams open. */
size_t cv_insp_sse_clients(const struct cv_insp_sse *s);
/* Frees the hub. Close the HTTP server before (its streams' close callbacks then ran); streams still
 * open are forgotten. */
void cv_insp_sse_free(struct cv_insp_sse *s);

#endif
