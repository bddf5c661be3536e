/* The inspector's events stream (Server-Sent Events) over the HTTP server's streaming responses.
 *
 * Happy path: a browser's EventSource opens GET /events/stream?after=N (N: the last_event_id of the
 * /api/state it rendered); it gets a `retry:` hint, then the events after N, each as `id: N` +
 * `data: {json}`, then every new event as it is pushed. When it reconnects it sends Last-Event-ID (which
 * wins over ?after) and resumes from there. Every KEEPALIVE_TICKS ticks a comment line keeps proxies
 * from closing an idle stream.
 *
 * Failure modes: an id older than the ring keeps, or newer than the last one (the inspector restarted and
 * numbers from 1 again), gets `event: resync` (the client refetches the snapshot; nothing is lost
 * silently); a peer that closes, or falls too far behind (the HTTP server closes it), is dropped in the
 * stream's close callback; more than MAX_CLIENTS streams are refused with 503. */
#include "inspector/sse.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"
#include "util/buf.h"
#include "util/pct.h"

#define KEEPALIVE_TICKS 15
#define MAX_CLIENTS 256
#define RETRY_MS 2000

struct client {
    struct cv_insp_sse *hub;
    struct cv_http_stream *stream;
    struct client *prev, *next;
};

struct cv_insp_sse {
    struct cv_insp_events *events;
    struct client *clients;
    size_t n;
    unsigned ticks;
};

static void sse__unlink(struct cv_insp_sse *s, struct client *c)
{
    if (c->prev) c->prev->next = c->next;
    else s->clients = c->next;
    if (c->next) c->next->prev = c->prev;
    s->n--;
    free(c);
}

/* Writes one event (a failed write ends the stream through its close callback, later). */
static void sse__send(struct cv_http_stream *st, uint64_t id, const char *json)
{
    struct cv_buf b = {0};
    cv_buf_printf(&b, "id: %" PRIu64 "\ndata: %s\n\n", id, json);
    if (!b.oom) cv_http_stream_write(st, b.p, b.len);
    free(b.p);
}

static void sse__on_event(void *data, uint64_t id, const char *json)
{
    struct cv_insp_sse *s = data;
    for (struct client *c = s->clients; c; c = c->next) sse__send(c->stream, id, json);
}

static void sse__replay(void *data, uint64_t id, const char *json)
{
    sse__send(data, id, json);
}

/* The HTTP server ended the stream (peer gone, too slow, server closing): never during our writes. */
static void sse__closed(void *data, struct cv_http_stream *st)
{
    struct client *c = data;
    sse__unlink(c->hub, c);
}

int cv_insp_sse_new(struct cv_insp_events *events, struct cv_insp_sse **out)
{
    struct cv_insp_sse *s = calloc(1, sizeof *s);
    if (!s) return CV_ENOMEM;
    s->events = events;
    cv_insp_events_listen(events, sse__on_event, s);
    *out = s;
    return 0;
}

/* The id to resume after: Last-Event-ID, else ?after=N; false when neither is given. */
static bool sse__resume_point(const struct cv_http_request *req, uint64_t *after)
{
    char q[32];
    const char *v = req->last_event_id;
    if (!*v && cv_pct_query_param(req->query, "after", q, sizeof q) == 0) v = q;
    if (!*v) return false;
    char *end;
    unsigned long long n = strtoull(v, &end, 10);
    if (*end) return false;
    *after = n;
    return true;
}

void cv_insp_sse_open(struct cv_insp_sse *s, struct cv_http_exchange *x, const struct cv_http_request *req)
{
    if (s->n >= MAX_CLIENTS) {
        cv_http_respond_error(x, CV_STATUS_UNAVAILABLE, "too many event streams open", NULL);
        return;
    }
    uint64_t after = 0;
    bool resume = sse__resume_point(req, &after);
    struct client *c = calloc(1, sizeof *c);
    if (!c) {
        cv_http_respond_error(x, CV_STATUS_INTERNAL, "out of memory", NULL);
        return;
    }
    c->hub = s;
    c->stream = cv_http_stream_begin(x, 200, "text/event-stream",
                                     "Cache-Control: no-store\r\nX-Accel-Buffering: no\r\n", sse__closed, c);
    if (!c->stream) {
        free(c);
        return;
    }
    c->next = s->clients;
    if (s->clients) s->clients->prev = c;
    s->clients = c;
    s->n++;
    char head[96];
    int n = snprintf(head, sizeof head, "retry: %d\n\n", RETRY_MS);
    cv_http_stream_write(c->stream, head, (size_t)n);
    uint64_t last = cv_insp_events_last(s->events);
    if (!resume) return;
    if (after > last || cv_insp_events_since(s->events, after, sse__replay, c->stream) < 0) {
        n = snprintf(head, sizeof head, "event: resync\ndata: {\"last_event_id\":%" PRIu64 "}\n\n", last);
        cv_http_stream_write(c->stream, head, (size_t)n);
    }
}

void cv_insp_sse_tick(struct cv_insp_sse *s)
{
    if (++s->ticks % KEEPALIVE_TICKS) return;
    for (struct client *c = s->clients; c; c = c->next) cv_http_stream_write(c->stream, ": keep-alive\n\n", 14);
}

size_t cv_insp_sse_clients(const struct cv_insp_sse *s)
{
    return s->n;
}

void cv_insp_sse_free(struct cv_insp_sse *s)
{
    if (!s) return;
    cv_insp_events_listen(s->events, NULL, NULL);
    while (s->clients) sse__unlink(s, s->clients);
    free(s);
}
