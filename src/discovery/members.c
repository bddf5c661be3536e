/* The registered processes under a prefix, kept current from etcd: a gate started with only --etcd learns
 * the nodes from it; external tools see the same keys.
 *
 * Happy path: RANGE the prefix (the whole view and its revision), then WATCH from revision + 1; each PUT
 * or DELETE event updates the view and calls on_change; a watch ends after watch_ms and the next one
 * resumes from the last revision seen + 1, so nothing between two watches is missed.
 *
 * Failure modes: etcd unreachable (or the stream broke): WAIT with backoff (100 ms doubling to 5 s), then
 * WATCH again from the same revision. A watch canceled because its revision was compacted away: RANGE
 * again (the diff against the view calls on_change for what changed meanwhile). A bad message ends the
 * watch like a failure. The view owns its own etcd client so that closing it cancels the watch. */
#include "discovery/members.h"

#include <stdlib.h>
#include <string.h>

#include "core/sm.h"
#include "cverse/error.h"
#include "discovery/etcd.h"
#include "util/buf.h"
#include "util/log.h"

#define WATCH_MS 30000u
#define BACKOFF_MIN_MS 100u
#define BACKOFF_MAX_MS 5000u

enum { S_IDLE, S_RANGE, S_WATCH, S_WAIT, S_CLOSED, S_N };

static const struct cv_sm_state members_states[S_N] = {
    [S_IDLE] = {"idle", CV_SM_INITIAL, CV_SM_BIT(S_RANGE) | CV_SM_BIT(S_CLOSED)},
    [S_RANGE] = {"range", 0, CV_SM_BIT(S_WATCH) | CV_SM_BIT(S_WAIT) | CV_SM_BIT(S_CLOSED)},
    [S_WATCH] = {"watch", 0, CV_SM_BIT(S_WATCH) | CV_SM_BIT(S_RANGE) | CV_SM_BIT(S_WAIT) | CV_SM_BIT(S_CLOSED)},
    [S_WAIT] = {"wait", 0, CV_SM_BIT(S_RANGE) | CV_SM_BIT(S_WATCH) | CV_SM_BIT(S_CLOSED)},
    [S_CLOSED] = {"closed", CV_SM_FINAL, 0},
};
static const struct cv_sm_conf members_sm = {"members", members_states, S_N};

struct entry {
    char *id, *value;
    bool seen; /* in the range being applied */
};

struct cv_members {
    struct cv_sm sm;
    struct cv_etcd *etcd;
    char *prefix;
    size_t prefix_len;
    unsigned watch_ms, backoff_ms;
    int64_t revision;  /* the view is complete up to here */
    bool synced, compacted, msg_err;
    struct entry *e;
    size_t n, cap;
    uv_timer_t timer;
    cv_members_cb on_change;
    void *data;
    void (*close_cb)(void *data);
    void *close_data;
};

static void members__step(struct cv_members *m);

/* ---- the view ------------------------------------------------------------------------------------------ */

static struct entry *members__find(struct cv_members *m, const char *id)
{
    for (size_t i = 0; i < m->n; i++)
        if (!strcmp(m->e[i].id, id)) return &m->e[i];
    return NULL;
}

static void members__remove(struct cv_members *m, struct entry *e)
{
    char *id = e->id;
    free(e->value);
    *e = m->e[--m->n];
    if (m->on_change) m->on_change(m->data, id, NULL);
    free(id);
}

/* key is under the prefix: sets its value (NULL: removes it). */
static void members__set(struct cv_members *m, const char *key, const char *value)
{
    const char *id = key + m->prefix_len;
    struct entry *e = members__find(m, id);
    if (!value) {
        if (e) members__remove(m, e);
        return;
    }
    if (e) {
        e->seen = true;
        if (!strcmp(e->value, value)) return;
        char *v = strdup(value);
        if (!v) return;
        free(e->value);
        e->value = v;
    } else {
        if (cv_array_grow((void **)&m->e, &m->cap, m->n + 1, sizeof *m->e)) return;
        struct entry ne = {.id = strdup(id), .value = strdup(value), .seen = true};
        if (!ne.id || !ne.value) {
            free(ne.id);
            free(ne.value);
            return;
        }
        m->e[m->n++] = ne;
    }
    if (m->on_change) m->on_change(m->data, id, value);
}

/* ---- etcd ---------------------------------------------------------------------------------------------- */

static void members__tick(uv_timer_t *t)
{
    members__step(t->data);
}

static void members__wait(struct cv_members *m, int err)
{
    if (!m->backoff_ms) CV_WARN("etcd: watching %s: %s; retrying with backoff", m->prefix, cv_strerror(err));
    m->backoff_ms = m->backoff_ms ? m->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (m->backoff_ms > BACKOFF_MAX_MS) m->backoff_ms = BACKOFF_MAX_MS;
    cv_sm_move(&m->sm, S_WAIT);
    uv_timer_start(&m->timer, members__tick, m->backoff_ms, 0);
}

static void members__on_range(void *data, int err, const struct cv_etcd_reply *r)
{
    struct cv_members *m = data;
    if (err == CV_ECANCELED || cv_sm_state(&m->sm) == S_CLOSED) return;
    if (err) return members__wait(m, err);
    for (size_t i = 0; i < m->n; i++) m->e[i].seen = false;
    for (size_t i = 0; i < r->n_kvs; i++) members__set(m, r->kvs[i].key, r->kvs[i].value);
    for (size_t i = m->n; i-- > 0;)
        if (!m->e[i].seen) members__remove(m, &m->e[i]);
    m->revision = r->revision;
    m->synced = true;
    m->backoff_ms = 0;
    cv_sm_move(&m->sm, S_WATCH);
    members__step(m);
}

static bool members__on_msg(void *data, const struct cv_etcd_reply *r)
{
    struct cv_members *m = data;
    if (r->code) { /* an error message: ends the watch, resumed after a backoff */
        m->msg_err = true;
        return false;
    }
    if (r->canceled) {
        m->compacted = r->compact_revision > 0;
        return false;
    }
    m->backoff_ms = 0;
    for (size_t i = 0; i < r->n_events; i++) {
        const struct cv_etcd_event *ev = &r->events[i];
        members__set(m, ev->kv.key, ev->deleted ? NULL : ev->kv.value);
        if (ev->kv.mod_revision > m->revision) m->revision = ev->kv.mod_revision;
    }
    return true;
}

static void members__on_end(void *data, int err, const struct cv_etcd_reply *r)
{
    struct cv_members *m = data;
    if (cv_sm_state(&m->sm) == S_CLOSED) return;
    if (m->compacted) {
        CV_INFO("etcd: watch of %s: revision %lld compacted; reading it all again", m->prefix,
                (long long)m->revision + 1);
        m->compacted = false;
        cv_sm_move(&m->sm, S_RANGE);
    } else if (m->msg_err || (err && err != CV_ETIMEDOUT && err != CV_ECANCELED)) {
        err = m->msg_err ? CV_EIO : err;
        m->msg_err = false;
        return members__wait(m, err);
    }
    members__step(m);
}

static void members__step(struct cv_members *m)
{
    int s = cv_sm_state(&m->sm), rv;
    if (s == S_WAIT) cv_sm_move(&m->sm, s = m->synced ? S_WATCH : S_RANGE);
    if (s == S_RANGE)
        rv = cv_etcd_call(m->etcd, "/v3/kv/range", cv_etcd_enc_range_prefix(m->prefix), members__on_range, m);
    else
        rv = cv_etcd_watch(m->etcd, m->prefix, m->revision + 1, m->watch_ms, members__on_msg, members__on_end, m);
    if (rv && rv != CV_ECLOSED) members__wait(m, rv);
}

/* ---- lifecycle ----------------------------------------------------------------------------------------- */

int cv_members_start(const struct cv_members_opts *o, struct cv_members **out)
{
    if (!o->prefix || !o->n_endpoints) return CV_EINVAL;
    struct cv_members *m = calloc(1, sizeof *m);
    if (!m || !(m->prefix = strdup(o->prefix))) {
        free(m);
        return CV_ENOMEM;
    }
    m->prefix_len = strlen(m->prefix);
    m->watch_ms = o->watch_ms ? o->watch_ms : WATCH_MS;
    m->on_change = o->on_change;
    m->data = o->data;
    struct cv_etcd_opts eo = {.loop = o->loop, .endpoints = o->endpoints, .n_endpoints = o->n_endpoints};
    int rv = cv_etcd_init(&eo, &m->etcd);
    if (rv) {
        free(m->prefix);
        free(m);
        return rv;
    }
    uv_timer_init(o->loop, &m->timer);
    m->timer.data = m;
    cv_sm_init(&m->sm, &members_sm, S_IDLE, NULL, m->prefix);
    cv_sm_move(&m->sm, S_RANGE);
    members__step(m);
    *out = m;
    return 0;
}

const struct cv_sm_conf *cv_members_sm_conf(void) { return &members_sm; }
bool cv_members_synced(const struct cv_members *m) { return m->synced; }
size_t cv_members_count(const struct cv_members *m) { return m->n; }
int64_t cv_members_revision(const struct cv_members *m) { return m->revision; }

void cv_members_at(const struct cv_members *m, size_t i, const char **id, const char **value)
{
    *id = m->e[i].id;
    *value = m->e[i].value;
}

const char *cv_members_get(const struct cv_members *m, const char *id)
{
    struct entry *e = members__find((struct cv_members *)m, id);
    return e ? e->value : NULL;
}

static void members__free(void *data)
{
    struct cv_members *m = data;
    void (*cb)(void *) = m->close_cb;
    void *cb_data = m->close_data;
    for (size_t i = 0; i < m->n; i++) {
        free(m->e[i].id);
        free(m->e[i].value);
    }
    free(m->e);
    free(m->prefix);
    cv_sm_fini(&m->sm);
    free(m);
    if (cb) cb(cb_data);
}

static void members__timer_closed(uv_handle_t *h)
{
    struct cv_members *m = h->data;
    cv_etcd_close(m->etcd, members__free, m);
}

void cv_members_close(struct cv_members *m, void (*cb)(void *data), void *data)
{
    if (cv_sm_state(&m->sm) == S_CLOSED) return;
    cv_sm_move(&m->sm, S_CLOSED);
    m->close_cb = cb;
    m->close_data = data;
    uv_close((uv_handle_t *)&m->timer, members__timer_closed);
}
