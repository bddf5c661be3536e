/* The inspector's events log. Events are serialized once when pushed and kept as text in a ring of cap
 * slots; slot = id % cap. Happy path: push numbers the event, stores its text and tells the listener.
 * Failure modes: out of memory drops the event (returns 0, nothing numbered), and a reader that fell
 * behind by more than cap events learns so from cv_insp_events_since (-1) instead of silently missing
 * some. */
#include "inspector/events.h"

#include <stdlib.h>

#include "cverse/error.h"

struct slot {
    uint64_t id; /* 0: empty */
    char *json;
};

struct cv_insp_events {
    size_t cap;
    uint64_t last;
    struct slot *ring;
    cv_insp_event_fn fn;
    void *data;
};

int cv_insp_events_new(size_t cap, struct cv_insp_events **out)
{
    struct cv_insp_events *e = calloc(1, sizeof *e);
    if (!e || !cap || !(e->ring = calloc(cap, sizeof *e->ring))) {
        free(e);
        return cap ? CV_ENOMEM : CV_EINVAL;
    }
    e->cap = cap;
    *out = e;
    return 0;
}

void cv_insp_events_free(struct cv_insp_events *e)
{
    if (!e) return;
    for (size_t i = 0; i < e->cap; i++) free(e->ring[i].json);
    free(e->ring);
    free(e);
}

uint64_t cv_insp_events_push(struct cv_insp_events *e, const char *type, json_t *fields, uint64_t time_ms)
{
    uint64_t id = e->last + 1;
    json_t *o = json_pack("{s:I,s:I,s:s}", "id", (json_int_t)id, "time_ms", (json_int_t)time_ms, "type", type);
    if (o && fields) json_object_update_missing(o, fields);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!text) return 0;
    struct slot *s = &e->ring[id % e->cap];
    free(s->json);
    *s = (struct slot){.id = id, .json = text};
    e->last = id;
    if (e->fn) e->fn(e->data, id, text);
    return id;
}

uint64_t cv_insp_events_last(const struct cv_insp_events *e)
{
    return e->last;
}

uint64_t cv_insp_events_oldest(const struct cv_insp_events *e)
{
    if (!e->last) return 0;
    return e->last > e->cap ? e->last - e->cap + 1 : 1;
}

long cv_insp_events_since(const struct cv_insp_events *e, uint64_t after, cv_insp_event_fn fn, void *data)
{
    uint64_t oldest = cv_insp_events_oldest(e);
    if (after >= e->last) return 0;
    if (after + 1 < oldest) return -1;
    long n = 0;
    for (uint64_t id = after + 1; id <= e->last; id++, n++) fn(data, id, e->ring[id % e->cap].json);
    return n;
}

json_t *cv_insp_events_tail(const struct cv_insp_events *e, size_t n)
{
    json_t *a = json_array();
    if (!a) return NULL;
    uint64_t oldest = cv_insp_events_oldest(e);
    uint64_t from = e->last >= n ? e->last - n + 1 : 1;
    if (from < oldest) from = oldest;
    for (uint64_t id = from; id && id <= e->last; id++) {
        json_t *ev = json_loads(e->ring[id % e->cap].json, 0, NULL);
        if (ev) json_array_append_new(a, ev);
    }
    return a;
}

void cv_insp_events_listen(struct cv_insp_events *e, cv_insp_event_fn fn, void *data)
{
    e->fn = fn;
    e->data = data;
}
