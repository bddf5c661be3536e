/* The inspector's events log: monotonically numbered JSON events in a bounded ring, with listeners. */
#ifndef CV_INSPECTOR_EVENTS_H
#define CV_INSPECTOR_EVENTS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define CV_INSP_EVENTS_CAP 4096

struct cv_insp_events;

/* A listener learns of each pushed event (json valid until it returns). */
typedef void (*cv_insp_event_fn)(void *data, uint64_t id, const char *json);

int cv_insp_events_new(size_t cap, struct cv_insp_events **out);
void cv_insp_events_free(struct cv_insp_events *e);
/* Appends an event {"id":N,"time_ms":T,"type":type, ...fields}; fields (may be NULL) is borrowed. Returns
 * the id given (ids start at 1), or 0 when out of memory. Listeners run before it returns. */
uint64_t cv_insp_events_push(struct cv_insp_events *e, const char *type, json_t *fields, uint64_t time_ms);
/* Id of the last event (0: none yet) and of the oldest still kept (0: none). */
uint64_t cv_insp_events_last(const struct cv_insp_events *e);
uint64_t cv_insp_events_oldest(const struct cv_insp_events *e);
/* Calls fn for each kept event with id > after, oldest first. Returns how many; -1 when events after
 * `after` fell out of the ring already (after < oldest - 1): the reader must resync. */
long cv_insp_events_since(const struct cv_insp_events *e, uint64_t after, cv_insp_event_fn fn, void *data);
/* The last n kept events as a JSON array (new reference; NULL when out of memory). */
json_t *cv_insp_events_tail(const struct cv_insp_events *e, size_t n);
/* One listener at a time (the SSE hub); fn NULL removes it. */
void cv_insp_events_listen(struct cv_insp_events *e, cv_insp_event_fn fn, void *data);

#endif
