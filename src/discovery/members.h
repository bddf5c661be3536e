/* A live view of the processes registered under a prefix in etcd (nodes or gates): range, then watch with resume. */
#ifndef CV_DISCOVERY_MEMBERS_H
#define CV_DISCOVERY_MEMBERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct cv_members;

/* id: the key below the prefix ("node-1"); value: its registration (JSON), NULL when the key went away
 * (deleted, or its lease expired). Both valid during the call. Runs on the loop, possibly from inside the
 * HTTP client: it must not close the view. */
typedef void (*cv_members_cb)(void *data, const char *id, const char *value);

struct cv_members_opts {
    uv_loop_t *loop;              /* borrowed, valid until the close callback */
    const char *const *endpoints; /* copied */
    size_t n_endpoints;
    const char *prefix;           /* e.g. "/cverse/nodes/" (with the trailing slash); copied */
    unsigned watch_ms;            /* one watch request's length before it is resumed; 0: 30000 */
    cv_members_cb on_change;      /* may be NULL */
    void *data;
};

/* Starts: a range of the prefix (the whole view), then a watch from the range's revision + 1; every watch
 * resumes from the last revision seen + 1 (changes between two watches are not lost); a compacted revision
 * or a failure makes it range again (after a backoff while etcd is unreachable). 0, CV_EINVAL, CV_ENOMEM. */
int cv_members_start(const struct cv_members_opts *opts, struct cv_members **out);
/* The first range answered. */
bool cv_members_synced(const struct cv_members *m);
size_t cv_members_count(const struct cv_members *m);
/* Entry i (0..count-1, in no particular order): id and value, valid until the loop runs again. */
void cv_members_at(const struct cv_members *m, size_t i, const char **id, const char **value);
/* The value registered for id, or NULL; valid until the loop runs again. */
const char *cv_members_get(const struct cv_members *m, const char *id);
/* The revision the view is at. */
int64_t cv_members_revision(const struct cv_members *m);
/* The view's state machine (for its table's unit test). */
struct cv_sm_conf;
const struct cv_sm_conf *cv_members_sm_conf(void);
/* Cancels the watch and frees m once its client closed; cb may be NULL. */
void cv_members_close(struct cv_members *m, void (*cb)(void *data), void *data);

#endif
