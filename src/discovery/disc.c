/* Registration of one process in etcd under its own lease, the leader key, and whether etcd answers.
 *
 * Happy path: GRANT a lease of ttl, CLAIM <prefix>/<kind>/<id> with a create-if-absent txn, then HELD: a
 * keepalive every third of the granted TTL, each followed by a read of the key (deleted by hand: CLAIM it
 * again under the same lease). Close revokes the lease, which deletes the key at once.
 *
 * Failure modes: etcd unreachable (every endpoint failed) -> WAIT with backoff (100 ms doubling to 5 s),
 * then CLAIM again with the lease we have, or GRANT a new one. A keepalive that fails keeps HELD (the
 * lease may well outlive the outage: etcd keeps leases across restarts) and retries with backoff; one that
 * says TTL 0 means the lease is gone: GRANT again. A claim that finds the key held by another incarnation
 * with a different address is a duplicate id: CONFLICT, on_conflict runs, nothing more is tried. The
 * health (up / down) is logged once per change, never per retry. The leader key has its own retry timer. */
#include "discovery/disc.h"

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/sm.h"
#include "cverse/error.h"
#include "util/log.h"

#define BACKOFF_MIN_MS 100u
#define BACKOFF_MAX_MS 5000u
#define REVOKE_MAX_MS 1000u

enum { S_IDLE, S_GRANT, S_CLAIM, S_HELD, S_WAIT, S_CONFLICT, S_CLOSED, S_N };

static const struct cv_sm_state disc_states[S_N] = {
    [S_IDLE] = {"idle", CV_SM_INITIAL | CV_SM_FINAL, CV_SM_BIT(S_GRANT) | CV_SM_BIT(S_CLOSED)},
    [S_GRANT] = {"grant", 0, CV_SM_BIT(S_CLAIM) | CV_SM_BIT(S_WAIT) | CV_SM_BIT(S_CLOSED)},
    [S_CLAIM] = {"claim", 0, CV_SM_BIT(S_HELD) | CV_SM_BIT(S_WAIT) | CV_SM_BIT(S_CONFLICT) | CV_SM_BIT(S_CLOSED)},
    [S_HELD] = {"held", 0, CV_SM_BIT(S_GRANT) | CV_SM_BIT(S_CLAIM) | CV_SM_BIT(S_CLOSED)},
    [S_WAIT] = {"wait", 0, CV_SM_BIT(S_GRANT) | CV_SM_BIT(S_CLAIM) | CV_SM_BIT(S_CLOSED)},
    [S_CONFLICT] = {"conflict", 0, CV_SM_BIT(S_CLOSED)},
    [S_CLOSED] = {"closed", CV_SM_FINAL, 0},
};
static const struct cv_sm_conf disc_sm = {"discovery", disc_states, S_N};

const struct cv_sm_conf *cv_disc_sm_conf(void) { return &disc_sm; }

struct cv_disc {
    struct cv_sm sm;
    uv_loop_t *loop;
    struct cv_etcd *etcd;
    char *prefix, *key, *value, *advertise;
    char incarnation[20];
    unsigned ttl_ms;
    int64_t lease, lease_ttl_s;
    unsigned backoff_ms;
    bool up, ever_answered, closing, revoking;
    uv_timer_t timer; /* keepalive / backoff / revoke bound */
    uv_timer_t leader_timer;
    char *leader_node;      /* the leader key we want written (NULL: none) */
    uint64_t leader_term, leader_done; /* wanted term, term written (or superseded) */
    bool leader_busy;
    int handles;
    void (*on_conflict)(void *data, const char *holder);
    void *data;
    void (*close_cb)(void *data);
    void *close_data;
};

static void disc__step(struct cv_disc *d);

/* A claim and a held key always go with a granted lease. */
static const char *disc__invariant(const struct cv_sm *m, int prev)
{
    const struct cv_disc *d = (const struct cv_disc *)((const char *)m - offsetof(struct cv_disc, sm));
    int s = cv_sm_state(m);
    if ((s == S_CLAIM || s == S_HELD) && !d->lease) return "claiming or holding the key without a lease";
    return NULL;
}

/* ---- health ------------------------------------------------------------------------------------------- */

static void disc__health(struct cv_disc *d, bool up, int err)
{
    if (up == d->up && d->ever_answered) return;
    if (up) CV_INFO("etcd: reachable at %s", cv_etcd_endpoint(d->etcd));
    else if (d->up || !d->ever_answered)
        CV_WARN("etcd: unreachable (%s, last endpoint %s); retrying with backoff, the cluster goes on",
                cv_strerror(err), cv_etcd_endpoint(d->etcd));
    d->up = up;
    d->ever_answered = true;
}

static void disc__tick(uv_timer_t *t)
{
    disc__step(t->data);
}

static void disc__arm(struct cv_disc *d, uint64_t ms)
{
    uv_timer_start(&d->timer, disc__tick, ms, 0);
}

static void disc__backoff(struct cv_disc *d)
{
    d->backoff_ms = d->backoff_ms ? d->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (d->backoff_ms > BACKOFF_MAX_MS) d->backoff_ms = BACKOFF_MAX_MS;
    disc__arm(d, d->backoff_ms);
}

/* An outcome of a call that is not an answer: retry later (the caller has set the state). */
static bool disc__failed(struct cv_disc *d, int err)
{
    if (!err) {
        d->backoff_ms = 0;
        disc__health(d, true, 0);
        return false;
    }
    if (err == CV_EUNAVAIL || err == CV_ETIMEDOUT) disc__health(d, false, err);
    else CV_WARN("etcd: %s: %s", d->key, cv_strerror(err));
    return true;
}

/* ---- registration ------------------------------------------------------------------------------------- */

static void disc__keepalive_arm(struct cv_disc *d)
{
    int64_t ttl_ms = d->lease_ttl_s > 0 ? d->lease_ttl_s * 1000 : (int64_t)d->ttl_ms;
    disc__arm(d, (uint64_t)ttl_ms / 3);
}

static void disc__on_check(void *data, int err, const struct cv_etcd_reply *r)
{
    struct cv_disc *d = data;
    if (err == CV_ECANCELED || d->closing) return;
    if (!err && !r->n_kvs) {
        CV_WARN("etcd: %s was deleted while its lease lives; registering again", d->key);
        cv_sm_move(&d->sm, S_CLAIM);
        return disc__step(d);
    }
    disc__keepalive_arm(d); /* an error here is the keepalive's business next time */
}

static void disc__on_keepalive(void *data, int err, const struct cv_etcd_reply *r)
{
    struct cv_disc *d = data;
    if (err == CV_ECANCELED || d->closing) return;
    if (disc__failed(d, err)) return disc__backoff(d); /* still HELD: the lease may outlive this */
    if (r->ttl <= 0) {
        CV_WARN("etcd: lease of %s expired; registering again", d->key);
        d->lease = 0;
        cv_sm_move(&d->sm, S_GRANT);
        return disc__step(d);
    }
    /* The lease lives; is the key still there (someone may have deleted it by hand)? */
    if (cv_etcd_call(d->etcd, "/v3/kv/range", cv_etcd_enc_range_key(d->key), disc__on_check, d))
        disc__keepalive_arm(d);
}

/* The key was held: ours (same incarnation or same address: our dead predecessor) or a duplicate. */
static bool disc__ours(struct cv_disc *d, const struct cv_etcd_kv *kv)
{
    json_t *v = json_loads(kv->value, 0, NULL);
    const char *inc = json_string_value(json_object_get(v, "incarnation"));
    const char *adv = json_string_value(json_object_get(v, "advertise"));
    bool ours = (inc && !strcmp(inc, d->incarnation)) || (adv && !strcmp(adv, d->advertise));
    json_decref(v);
    return ours;
}

static void disc__on_put(void *data, int err, const struct cv_etcd_reply *r)
{
    struct cv_disc *d = data;
    if (err == CV_ECANCELED || d->closing) return;
    if (err == CV_ENOTFOUND) d->lease = 0; /* the lease expired meanwhile */
    if (disc__failed(d, err)) {
        cv_sm_move(&d->sm, S_WAIT);
        return disc__backoff(d);
    }
    cv_sm_move(&d->sm, S_HELD);
    CV_INFO("etcd: registered %s (lease %llx)", d->key, (unsigned long long)d->lease);
    disc__keepalive_arm(d);
}

static void disc__on_claim(void *data, int err, const struct cv_etcd_reply *r)
{
    struct cv_disc *d = data;
    if (err == CV_ECANCELED || d->closing) return;
    if (!err && !r->succeeded && r->n_kvs && !disc__ours(d, &r->kvs[0])) {
        cv_sm_move(&d->sm, S_CONFLICT);
        CV_ERROR("etcd: %s is held by another live process (duplicate id): %s", d->key, r->kvs[0].value);
        if (d->on_conflict) d->on_conflict(d->data, r->kvs[0].value);
        return;
    }
    if (!err && !r->succeeded) { /* our predecessor's key: take it over under our lease */
        int rv = cv_etcd_call(d->etcd, "/v3/kv/put", cv_etcd_enc_put(d->key, d->value, d->lease), disc__on_put, d);
        if (!rv) return;
        err = rv;
    }
    disc__on_put(d, err, r);
}

static void disc__on_grant(void *data, int err, const struct cv_etcd_reply *r)
{
    struct cv_disc *d = data;
    if (err == CV_ECANCELED || d->closing) return;
    if (!err && !r->id) err = CV_EPROTO;
    if (disc__failed(d, err)) {
        cv_sm_move(&d->sm, S_WAIT);
        return disc__backoff(d);
    }
    d->lease = r->id;
    d->lease_ttl_s = r->ttl;
    cv_sm_move(&d->sm, S_CLAIM);
    disc__step(d);
}

/* Runs the current state's call (also the timer's callback). */
static void disc__step(struct cv_disc *d)
{
    int s = cv_sm_state(&d->sm), rv = 0;
    if (s == S_WAIT) {
        cv_sm_move(&d->sm, d->lease ? S_CLAIM : S_GRANT);
        s = cv_sm_state(&d->sm);
    }
    if (s == S_GRANT)
        rv = cv_etcd_call(d->etcd, "/v3/lease/grant", cv_etcd_enc_grant(((int64_t)d->ttl_ms + 999) / 1000),
                          disc__on_grant, d);
    else if (s == S_CLAIM)
        rv = cv_etcd_call(d->etcd, "/v3/kv/txn", cv_etcd_enc_create(d->key, d->value, d->lease), disc__on_claim, d);
    else if (s == S_HELD)
        rv = cv_etcd_call(d->etcd, "/v3/lease/keepalive", cv_etcd_enc_lease(d->lease), disc__on_keepalive, d);
    if (rv) disc__arm(d, BACKOFF_MAX_MS); /* out of memory: try again later */
}

/* ---- the leader key ----------------------------------------------------------------------------------- */

static void leader__send(struct cv_disc *d, bool create);

static void leader__tick(uv_timer_t *t)
{
    leader__send(t->data, false);
}

static void leader__retry(struct cv_disc *d)
{
    uv_timer_start(&d->leader_timer, leader__tick, BACKOFF_MAX_MS / 5, 0);
}

static void leader__on_reply(void *data, int err, const struct cv_etcd_reply *r, bool create)
{
    struct cv_disc *d = data;
    d->leader_busy = false;
    if (err == CV_ECANCELED || d->closing) return;
    if (err) return leader__retry(d);
    uint64_t sent = d->leader_term;
    if (r->succeeded) CV_INFO("etcd: %s/leader = %s (term %llu)", d->prefix, d->leader_node, (unsigned long long)sent);
    if (r->succeeded || (!create && r->n_kvs)) { /* written, or a term as new or newer is there */
        d->leader_done = sent;
        return;
    }
    leader__send(d, !create); /* absent: create it; created by someone else meanwhile: compare again */
}

static void leader__on_less(void *data, int err, const struct cv_etcd_reply *r)
{
    leader__on_reply(data, err, r, false);
}

static void leader__on_create(void *data, int err, const struct cv_etcd_reply *r)
{
    leader__on_reply(data, err, r, true);
}

static void leader__send(struct cv_disc *d, bool create)
{
    if (d->closing || d->leader_busy || !d->leader_node || d->leader_done >= d->leader_term) return;
    char key[512], *value = NULL;
    snprintf(key, sizeof key, "%s/leader", d->prefix);
    char term[24];
    snprintf(term, sizeof term, "%020llu", (unsigned long long)d->leader_term);
    json_t *v = json_pack("{s:s,s:s}", "term", term, "node", d->leader_node); /* "term" first: compared first */
    value = v ? json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(v);
    char *body = value ? (create ? cv_etcd_enc_create(key, value, 0) : cv_etcd_enc_put_if_less(key, value)) : NULL;
    free(value);
    if (cv_etcd_call(d->etcd, "/v3/kv/txn", body, create ? leader__on_create : leader__on_less, d))
        return leader__retry(d);
    d->leader_busy = true;
}

void cv_disc_leader(struct cv_disc *d, const char *node, uint64_t term)
{
    if (term < d->leader_term || d->closing) return;
    char *n = strdup(node);
    if (!n) return;
    free(d->leader_node);
    d->leader_node = n;
    d->leader_term = term;
    leader__send(d, false);
}

/* ---- lifecycle ---------------------------------------------------------------------------------------- */

static char *disc__value(const char *value, const char *incarnation, char **advertise)
{
    json_t *v = json_loads(value, 0, NULL);
    const char *adv = json_string_value(json_object_get(v, "advertise"));
    char *out = NULL;
    if (json_is_object(v) && adv && !json_object_set_new(v, "incarnation", json_string(incarnation)) &&
        (*advertise = strdup(adv)))
        out = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(v);
    return out;
}

static void disc__free(struct cv_disc *d)
{
    free(d->prefix);
    free(d->key);
    free(d->value);
    free(d->advertise);
    free(d->leader_node);
    free(d);
}

int cv_disc_init(const struct cv_disc_opts *o, struct cv_disc **out)
{
    struct cv_disc *d = calloc(1, sizeof *d);
    if (!d) return CV_ENOMEM;
    d->loop = o->loop;
    d->ttl_ms = o->ttl_ms ? o->ttl_ms : CV_DISC_TTL_DEFAULT_MS;
    d->on_conflict = o->on_conflict;
    d->data = o->data;
    uint64_t r = ((uint64_t)rand() << 32) ^ (uint64_t)rand() ^ cv_mono_ns() ^ ((uint64_t)uv_os_getpid() << 40);
    snprintf(d->incarnation, sizeof d->incarnation, "%016llx", (unsigned long long)r);
    int rv = CV_ENOMEM;
    if (!(d->prefix = strdup(o->prefix)) || asprintf(&d->key, "%s/%s/%s", o->prefix, o->kind, o->id) < 0)
        goto err_after_alloc;
    if (!(d->value = disc__value(o->value, d->incarnation, &d->advertise))) {
        rv = CV_EINVAL;
        goto err_after_alloc;
    }
    struct cv_etcd_opts eo = {.loop = o->loop, .endpoints = o->endpoints, .n_endpoints = o->n_endpoints};
    if ((rv = cv_etcd_init(&eo, &d->etcd))) goto err_after_alloc;
    uv_timer_init(o->loop, &d->timer);
    uv_timer_init(o->loop, &d->leader_timer);
    d->timer.data = d->leader_timer.data = d;
    d->handles = 2;
    cv_sm_init(&d->sm, &disc_sm, S_IDLE, disc__invariant, d->key);
    *out = d;
    return 0;

err_after_alloc:
    disc__free(d);
    return rv;
}

int cv_disc_start(struct cv_disc *d)
{
    cv_sm_move(&d->sm, S_GRANT);
    disc__step(d);
    return 0;
}

bool cv_disc_up(const struct cv_disc *d) { return d->up; }
bool cv_disc_registered(const struct cv_disc *d) { return cv_sm_state(&d->sm) == S_HELD; }
const char *cv_disc_incarnation(const struct cv_disc *d) { return d->incarnation; }
struct cv_etcd *cv_disc_etcd(struct cv_disc *d) { return d->etcd; }
bool cv_disc_leader_settled(const struct cv_disc *d) { return d->leader_done >= d->leader_term; }
const char *cv_disc_prefix(const struct cv_disc *d) { return d->prefix; }

static void disc__etcd_closed(void *data)
{
    struct cv_disc *d = data;
    void (*cb)(void *) = d->close_cb;
    void *cb_data = d->close_data;
    cv_sm_fini(&d->sm);
    disc__free(d);
    if (cb) cb(cb_data);
}

static void disc__handle_closed(uv_handle_t *h)
{
    struct cv_disc *d = h->data;
    if (--d->handles == 0) cv_etcd_close(d->etcd, disc__etcd_closed, d);
}

static void disc__finish(struct cv_disc *d)
{
    if (cv_sm_state(&d->sm) == S_CLOSED) return;
    cv_sm_move(&d->sm, S_CLOSED);
    uv_close((uv_handle_t *)&d->timer, disc__handle_closed);
    uv_close((uv_handle_t *)&d->leader_timer, disc__handle_closed);
}

static void disc__on_revoke(void *data, int err, const struct cv_etcd_reply *r)
{
    struct cv_disc *d = data;
    if (err == CV_ECANCELED) return; /* disc__finish is closing the client */
    if (!err) CV_INFO("etcd: %s revoked", d->key);
    disc__finish(d);
}

static void disc__revoke_late(uv_timer_t *t)
{
    disc__finish(t->data);
}

void cv_disc_close(struct cv_disc *d, void (*cb)(void *data), void *data)
{
    if (d->closing) return;
    d->closing = true;
    d->close_cb = cb;
    d->close_data = data;
    uv_timer_stop(&d->leader_timer);
    if (d->lease && !cv_etcd_call(d->etcd, "/v3/lease/revoke", cv_etcd_enc_lease(d->lease), disc__on_revoke, d)) {
        uv_timer_start(&d->timer, disc__revoke_late, REVOKE_MAX_MS, 0);
        return;
    }
    disc__finish(d);
}
