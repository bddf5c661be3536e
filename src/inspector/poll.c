/* The inspector's poller. Happy path: the timer ticks, a round begins on the spare model, 5 GETs per node
 * go out through the shared HTTP client (timeout: 80 % of the interval, so a round ends before the next
 * tick); each answer is parsed and stored in the model; when the last one is in, the model is finished
 * (carrying over from the current one what nobody answered), diffed against the current one into
 * events, and becomes current. One node's catalog change feed is read in the same round (GET
 * /v1/events?after=CURSOR, inspector/follow.h): shard moves, node registrations and expiries, drains and
 * leader changes come from it, exactly and in order, instead of from the snapshots' difference. The
 * followed node is kept while it answers; when it does not, the next round follows the next reachable
 * node from the same cursor (the log's indices are the same everywhere).
 *
 * Failure modes: a node that does not answer /v1/cluster is unreachable this round (its error is kept
 * for the UI); other answers that are not JSON (or a 404 from a node without /v1/stats) are just absent.
 * With a cluster secret every GET is signed with it (auth/sign.h), as nodes with one require.
 * A tick while a round is still out is skipped. Cancelled answers (the client closing) only count down.
 * Until the feed answered once, or in a round where it does not answer or has a gap, the snapshots'
 * difference makes every event; a gap also makes a "resync" event (clients refetch the snapshot).
 *
 * The pace: a round every interval while someone watches (a request to the UI or the API, an events
 * stream open: cv_insp_poll_watch) and for WATCH_HOLD_MS after; nobody watching, every idle interval
 * (10 s), so that an idle cluster nobody looks at is not asked 50 questions a second. The first request
 * after a quiet spell starts a round at once (its events and the model follow within a round). */
#include "inspector/poll.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/guard.h"
#include "auth/sign.h"
#include "core/sm.h"
#include "inspector/follow.h"
#include "cverse/error.h"
#include "util/addr.h"
#include "util/log.h"

#define DEFAULT_INTERVAL_MS 1000u
#define DEFAULT_IDLE_INTERVAL_MS 10000u
#define WATCH_HOLD_MS 30000u
#define MAX_MOVE_EVENTS 256

static const char *const doc_paths[CV_INSP_N_DOCS] = {
    [CV_INSP_CLUSTER] = "/v1/cluster", [CV_INSP_SHARDS] = "/v1/shards", [CV_INSP_OBJECTS] = "/v1/objects",
    [CV_INSP_READY] = "/ready",        [CV_INSP_STATS] = "/v1/stats"};

/* The poller's lifecycle: idle between rounds, polling while answers are out, closed for good. */
enum { POLL_IDLE, POLL_ROUND, POLL_CLOSED, POLL_N_STATES };
static const struct cv_sm_state poll_states[POLL_N_STATES] = {
    [POLL_IDLE] = {"idle", CV_SM_INITIAL, CV_SM_BIT(POLL_ROUND) | CV_SM_BIT(POLL_CLOSED)},
    [POLL_ROUND] = {"polling", 0, CV_SM_BIT(POLL_IDLE) | CV_SM_BIT(POLL_CLOSED)},
    [POLL_CLOSED] = {"closed", CV_SM_FINAL, 0},
};
static const struct cv_sm_conf poll_sm = {"inspector poller", poll_states, POLL_N_STATES};

struct req {
    struct cv_insp_poll *p;
    size_t node;
    enum cv_insp_doc kind;
};

struct cv_insp_poll {
    struct cv_sm sm; /* first: the invariant casts back */
    struct cv_insp_poll_opts o;
    uv_timer_t timer;
    bool fast;           /* rounds every interval (someone watches), else every idle interval */
    uint64_t watched_ms; /* cv_mono_ms of the last cv_insp_poll_watch */
    struct cv_insp_model m[2];
    int cur;
    size_t outstanding; /* answers of the round still out (0 unless polling) */
    uint64_t rounds;
    char (*base)[80];
    struct req *reqs; /* [n_nodes * CV_INSP_N_DOCS] */
    struct cv_insp_follow follow;
    size_t feed_node;  /* the node whose change feed is read */
    bool feed_chosen;  /* chosen from a model: a follower, to keep the load off the leader */
    struct req feed_req;
    json_t *feed_doc;  /* this round's feed answer (owned), NULL: none */
    void (*close_cb)(void *data);
    void *close_data;
};

static const char *poll__invariant(const struct cv_sm *m, int prev)
{
    const struct cv_insp_poll *p = (const struct cv_insp_poll *)m;
    if (cv_sm_state(m) == POLL_IDLE && p->outstanding) return "idle with answers outstanding";
    return NULL;
}

int cv_insp_poll_init(const struct cv_insp_poll_opts *o, struct cv_insp_poll **out)
{
    struct cv_insp_poll *p = calloc(1, sizeof *p);
    if (!p) return CV_ENOMEM;
    p->o = *o;
    if (!p->o.interval_ms) p->o.interval_ms = DEFAULT_INTERVAL_MS;
    if (!p->o.idle_interval_ms) p->o.idle_interval_ms = DEFAULT_IDLE_INTERVAL_MS;
    if (p->o.idle_interval_ms < p->o.interval_ms) p->o.idle_interval_ms = p->o.interval_ms;
    size_t n = o->cfg->n_nodes;
    int rv = CV_ENOMEM;
    if (!(p->base = calloc(n ? n : 1, sizeof *p->base))) goto err_after_alloc;
    if (!(p->reqs = calloc(n ? n * CV_INSP_N_DOCS : 1, sizeof *p->reqs))) goto err_after_base;
    if ((rv = cv_insp_model_init(&p->m[0], o->cfg))) goto err_after_reqs;
    if ((rv = cv_insp_model_init(&p->m[1], o->cfg))) goto err_after_m0;
    if ((rv = cv_insp_follow_init(&p->follow, o->cfg->shards))) goto err_after_m1;
    for (size_t i = 0; i < n; i++) {
        char addr[72];
        if (cv_addr_connectable(o->cfg->nodes[i].http_addr, addr, sizeof addr)) {
            rv = CV_EINVAL;
            goto err_after_m1;
        }
        snprintf(p->base[i], sizeof p->base[i], "http://%s", addr);
    }
    uv_timer_init(o->loop, &p->timer);
    p->timer.data = p;
    cv_sm_init(&p->sm, &poll_sm, POLL_IDLE, poll__invariant, "poller");
    *out = p;
    return 0;

err_after_m1:
    cv_insp_follow_free(&p->follow);
    cv_insp_model_free(&p->m[1]);
err_after_m0:
    cv_insp_model_free(&p->m[0]);
err_after_reqs:
    free(p->reqs);
err_after_base:
    free(p->base);
err_after_alloc:
    free(p);
    return rv;
}

static void poll__emit(void *data, const char *type, json_t *fields)
{
    struct cv_insp_poll *p = data;
    cv_insp_events_push(p->o.events, type, fields, p->m[!p->cur].time_ms);
}

/* The feed's events of this round; true when they replace the snapshots' difference. */
static bool poll__feed_events(struct cv_insp_poll *p)
{
    json_t *doc = p->feed_doc;
    p->feed_doc = NULL;
    enum cv_insp_follow_result r = doc ? cv_insp_follow_take(&p->follow, doc, MAX_MOVE_EVENTS, poll__emit, p)
                                       : CV_INSP_FOLLOW_BAD;
    json_decref(doc);
    if (r == CV_INSP_FOLLOW_GAP) {
        json_t *f = json_pack("{s:s,s:s}", "reason", "the change feed has a gap", "node",
                              p->o.cfg->nodes[p->feed_node].id);
        poll__emit(p, "resync", f);
        json_decref(f);
    }
    if (r == CV_INSP_FOLLOW_BAD && p->o.cfg->n_nodes) p->feed_node = (p->feed_node + 1) % p->o.cfg->n_nodes; /* fail over */
    /* Without an answer the next node's feed brings this round's changes (same cursor): the snapshots'
     * difference would report them twice. */
    return r == CV_INSP_FOLLOW_OK || (r == CV_INSP_FOLLOW_BAD && p->follow.have_cursor);
}

static void poll__finish_round(struct cv_insp_poll *p)
{
    struct cv_insp_model *cur = &p->m[p->cur], *next = &p->m[!p->cur];
    cv_insp_model_finish(next, p->rounds ? cur : NULL, cv_now_ms());
    bool feed = poll__feed_events(p);
    cv_insp_model_diff_parts(cur, next, MAX_MOVE_EVENTS, feed, poll__emit, p);
    p->cur = !p->cur;
    cv_sm_move(&p->sm, POLL_IDLE);
    p->rounds++;
    if (p->o.on_round) p->o.on_round(p->o.data);
}

static void poll__answer(void *data, const struct cv_httpc_response *r)
{
    struct req *q = data;
    struct cv_insp_poll *p = q->p;
    p->outstanding--;
    /* Cancelled: the client is closing, the poller closes next; this round never finishes. */
    if (r->err == CV_ECANCELED || cv_sm_state(&p->sm) == POLL_CLOSED) return;
    if (q == &p->feed_req) {
        json_t *doc = r->err == 0 && r->status == 200 ? json_loadb(r->body, r->len, 0, NULL) : NULL;
        json_decref(p->feed_doc);
        p->feed_doc = doc;
        if (!p->outstanding) poll__finish_round(p);
        return;
    }
    struct cv_insp_model *next = &p->m[!p->cur];
    /* /ready answers 503 with its JSON reason while not ready: that is an answer too. */
    bool ok = r->err == 0 && (r->status == 200 || (q->kind == CV_INSP_READY && r->status == 503));
    json_t *doc = ok ? json_loadb(r->body, r->len, 0, NULL) : NULL;
    if (r->err == 0 && r->status == 304) /* unchanged since the last round's copy (poll__if_none_match) */
        doc = json_incref(cv_insp_model_doc(&p->m[p->cur], q->node, q->kind));
    if (doc && !json_is_object(doc)) {
        json_decref(doc);
        doc = NULL;
    }
    cv_insp_model_set(next, q->node, q->kind, doc);
    if (q->kind == CV_INSP_CLUSTER && !doc) {
        char e[160];
        if (r->err) snprintf(e, sizeof e, "%s", r->error);
        else snprintf(e, sizeof e, "/v1/cluster answered HTTP %ld", r->status);
        cv_insp_model_set_error(next, q->node, e);
    }
    if (!p->outstanding) poll__finish_round(p);
}

/* Which node's feed to read: the one followed while it answers and is not the leader; else (at the
 * start, when it stops answering or when it became the leader) the first reachable node that is not the
 * leader, else any reachable one. A switch loses nothing: the next feed is read from the same cursor. */
static void poll__choose_feed(struct cv_insp_poll *p)
{
    size_t n = p->o.cfg->n_nodes;
    const struct cv_insp_model *cur = &p->m[p->cur];
    if (!p->rounds) return;
    if (p->feed_chosen && cur->nodes[p->feed_node].reachable && (int)p->feed_node != cur->leader) return;
    int any = -1;
    for (size_t k = 0; k < n; k++) {
        size_t i = (p->feed_node + k) % n;
        if (!cur->nodes[i].reachable) continue;
        if (any < 0) any = (int)i;
        if ((int)i != cur->leader) {
            any = (int)i;
            break;
        }
    }
    if (any < 0) return; /* nobody answered: try the next one blindly */
    p->feed_node = (size_t)any;
    p->feed_chosen = true;
}

/* The cluster secret every node GET is signed with (node/httpauth.h), NULL without one. */
static const struct cv_secret *poll__secret(void)
{
    return cv_guard_cluster()->secret;
}

/* Asks the followed node's change feed. */
static void poll__ask_feed(struct cv_insp_poll *p, unsigned timeout)
{
    if (!p->o.cfg->n_nodes) return;
    poll__choose_feed(p);
    char url[160];
    snprintf(url, sizeof url, "%s/v1/events?after=%llu", p->base[p->feed_node],
             (unsigned long long)cv_insp_follow_after(&p->follow));
    p->feed_req = (struct req){.p = p, .node = p->feed_node};
    char hdr[CV_SIGN_MAX + 32];
    struct cv_httpc_req hr = {.url = url, .timeout_ms = timeout,
                              .extra_headers = cv_sign_url_headers(poll__secret(), "GET", url, NULL, 0, NULL, hdr,
                                                                   sizeof hdr)};
    if (cv_httpc_request(p->o.httpc, &hr, poll__answer, &p->feed_req) == 0) p->outstanding++;
}

/* The shard map and the object list change rarely: asked with the etag of the copy the last round got,
 * a node answers 304 and neither side builds or parses them again (node/api.c). NULL: ask plainly. */
static const char *poll__if_none_match(struct cv_insp_poll *p, size_t i, enum cv_insp_doc k, char *hdr,
                                       size_t len)
{
    if (k != CV_INSP_SHARDS && k != CV_INSP_OBJECTS) return NULL;
    const char *etag = json_string_value(json_object_get(cv_insp_model_doc(&p->m[p->cur], i, k), "etag"));
    if (!etag || strlen(etag) > 32) return NULL;
    snprintf(hdr, len, "If-None-Match: %s\r\n", etag);
    return hdr;
}

static void poll__tick(uv_timer_t *t)
{
    struct cv_insp_poll *p = t->data;
    /* nobody watches any more, and the model has data (until the first round answered, /ready waits) */
    if (p->fast && cv_mono_ms() - p->watched_ms >= WATCH_HOLD_MS && p->m[p->cur].have) {
        p->fast = false;
        uv_timer_start(&p->timer, poll__tick, p->o.idle_interval_ms, p->o.idle_interval_ms);
    }
    if (cv_sm_state(&p->sm) != POLL_IDLE) return; /* the last round is still out: skip this tick */
    cv_sm_move(&p->sm, POLL_ROUND);
    cv_insp_model_begin(&p->m[!p->cur]);
    unsigned timeout = p->o.interval_ms * 4 / 5;
    p->outstanding = 1; /* held while sending: no round ends inside the loop */
    for (size_t i = 0; i < p->o.cfg->n_nodes; i++) {
        for (int k = 0; k < CV_INSP_N_DOCS; k++) {
            struct req *q = &p->reqs[i * CV_INSP_N_DOCS + (size_t)k];
            *q = (struct req){.p = p, .node = i, .kind = (enum cv_insp_doc)k};
            char url[128], hdr[80], headers[CV_SIGN_MAX + 32 + sizeof hdr];
            snprintf(url, sizeof url, "%s%s", p->base[i], doc_paths[k]);
            const char *inm = poll__if_none_match(p, i, (enum cv_insp_doc)k, hdr, sizeof hdr);
            struct cv_httpc_req hr = {.url = url, .timeout_ms = timeout < 200 ? 200 : timeout,
                                      .extra_headers = cv_sign_url_headers(poll__secret(), "GET", url, NULL, 0, inm,
                                                                           headers, sizeof headers)};
            int rv = cv_httpc_request(p->o.httpc, &hr, poll__answer, q);
            if (rv == 0) p->outstanding++;
            else if (k == CV_INSP_CLUSTER) cv_insp_model_set_error(&p->m[!p->cur], i, cv_strerror(rv));
        }
    }
    poll__ask_feed(p, timeout < 200 ? 200 : timeout);
    if (!--p->outstanding) poll__finish_round(p);
}

int cv_insp_poll_start(struct cv_insp_poll *p)
{
    p->fast = true; /* until the first round has data, then slow unless someone watches */
    p->watched_ms = cv_mono_ms() - WATCH_HOLD_MS;
    return uv_timer_start(&p->timer, poll__tick, 0, p->o.interval_ms) ? CV_EIO : 0;
}

void cv_insp_poll_watch(struct cv_insp_poll *p)
{
    p->watched_ms = cv_mono_ms();
    if (p->fast || cv_sm_state(&p->sm) == POLL_CLOSED) return;
    p->fast = true;
    uv_timer_start(&p->timer, poll__tick, 0, p->o.interval_ms); /* a round at once */
}

const struct cv_insp_model *cv_insp_poll_model(const struct cv_insp_poll *p)
{
    return &p->m[p->cur];
}

const char *cv_insp_poll_base(const struct cv_insp_poll *p, size_t i)
{
    return i < p->o.cfg->n_nodes ? p->base[i] : NULL;
}

json_t *cv_insp_poll_feed(const struct cv_insp_poll *p)
{
    if (!p->o.cfg->n_nodes) return json_null();
    return json_pack("{s:s,s:b,s:I}", "node", p->o.cfg->nodes[p->feed_node].id, "following",
                     p->follow.have_cursor, "index", (json_int_t)cv_insp_follow_after(&p->follow));
}

uint64_t cv_insp_poll_rounds(const struct cv_insp_poll *p)
{
    return p->rounds;
}

static void poll__closed(uv_handle_t *h)
{
    struct cv_insp_poll *p = h->data;
    cv_insp_model_free(&p->m[0]);
    cv_insp_model_free(&p->m[1]);
    cv_insp_follow_free(&p->follow);
    json_decref(p->feed_doc);
    void (*cb)(void *) = p->close_cb;
    void *data = p->close_data;
    free(p->reqs);
    free(p->base);
    free(p);
    if (cb) cb(data);
}

void cv_insp_poll_close(struct cv_insp_poll *p, void (*cb)(void *data), void *data)
{
    p->outstanding = 0; /* answers still out were cancelled with the client (closed first) */
    cv_sm_move(&p->sm, POLL_CLOSED);
    cv_sm_fini(&p->sm);
    p->close_cb = cb;
    p->close_data = data;
    uv_close((uv_handle_t *)&p->timer, poll__closed);
}
