/* The inspector's events stream (Server-Sent Events): every event with `id: N`, resume with
 * Last-Event-ID, `event: resync` when the asked-for events fell out of the ring. */
#ifndef CV_INSPECTOR_SSE_H
#define CV_INSPECTOR_SSE_H

#include "inspector/events.h"
#include "net/http.h"

struct cv_insp_sse;

int cv_insp_sse_new(struct cv_insp_events *events, struct cv_insp_sse **out);
/* Answers GET /events/stream: the stream stays open until the peer or the server closes it. */
void cv_insp_sse_open(struct cv_insp_sse *s, struct cv_http_exchange *x, const struct cv_http_request *req);
/* Streams still open. */
size_t cv_insp_sse_clients(const struct cv_insp_sse *s);
void cv_insp_sse_free(struct cv_insp_sse *s);

#endif
