/* The inspector's HTTP front end. Routing is a table of (method, path, handler). Read endpoints answer at
 * once from the current model. Actions: refused with 403 while no token is configured (the body says how
 * to enable them), 401 without the right bearer token, 400 when the shard id or node does not exist, 503
 * while no leader is known; otherwise the request goes to the leader node's /v1/admin/... endpoint and
 * the node's status and body are passed back (e.g. 404 NOT_FOUND for a node of the config that never
 * registered in the catalog, 200 {"index":N} once applied). 401/403 are the error table's CV_EAUTH /
 * CV_EPERM rows, answered through cv_http_respond_error like every other error.
 * GET /api/object/state is the one read that asks a node: the object's state from the node where it is
 * active (its GET /v1/objects/{type}/{id}), passed back as the node answered.
 * Static files come from a whitelist of names (no path from the request reaches the file system).
 *
 * Failure modes: out of memory answers 500; a node that does not answer an action answers 503 UNAVAILABLE
 * (or 504 on its timeout) with the client's error text. */
#include "inspector/web.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/guard.h"
#include "auth/sign.h"
#include "cverse/error.h"
#include "inspector/api.h"
#include "inspector/sse.h"
#include "util/pct.h"
#include "util/log.h"

#define ACTION_TIMEOUT_MS 10000u
#define MAX_STATIC (4u << 20)

struct cv_insp_web {
    struct cv_insp_web_opts o;
    char *token;
    char www[512];
    struct cv_insp_sse *sse;
    struct action *parked; /* actions waiting for a node that can serve them (owned) */
};

/* ---- small helpers ------------------------------------------------------------------------------------- */

static void respond_doc(struct cv_http_exchange *x, json_t *doc)
{
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (!text) {
        cv_http_respond_error(x, CV_STATUS_INTERNAL, "out of memory", NULL);
        return;
    }
    cv_http_respond(x, 200, "application/json", text, strlen(text), "Cache-Control: no-store\r\n");
    free(text);
}

/* ---- read API ----------------------------------------------------------------------------------------- */

static void web__healthz(struct cv_insp_web *w, struct cv_http_exchange *x, const struct cv_http_request *r)
{
    cv_http_respond_json(x, 200, "{\"status\":\"ok\",\"service\":\"inspector\"}");
}

static void web__ready(struct cv_insp_web *w, struct cv_http_exchange *x, const struct cv_http_request *r)
{
    if (cv_insp_poll_model(w->o.poll)->have) cv_http_respond_json(x, 200, "{\"ready\":true}");
    else cv_http_respond_json(x, 503, "{\"ready\":false,\"reason\":\"no node answered yet\"}");
}

static void web__state(struct cv_insp_web *w, struct cv_http_exchange *x, const struct cv_http_request *r)
{
    json_t *st = cv_insp_api_state(cv_insp_poll_model(w->o.poll), w->o.events, w->o.stats);
    if (st) json_object_set_new(st, "feed", cv_insp_poll_feed(w->o.poll));
    respond_doc(x, st);
}

static void web__shards(struct cv_insp_web *w, struct cv_http_exchange *x, const struct cv_http_request *r)
{
    respond_doc(x, cv_insp_api_shards(cv_insp_poll_model(w->o.poll)));
}

static void web__graph(struct cv_insp_web *w, struct cv_http_exchange *x, const struct cv_http_request *r)
{
    respond_doc(x, cv_insp_api_graph(cv_insp_poll_model(w->o.poll)));
}

/* GET /api/object?type=T&id=X: where the object lives (400 for a missing or refused id). */
static void web__object(struct cv_insp_web *w, struct cv_http_exchange *x, const struct cv_http_request *r)
{
    char type[128] = "", id[512];
    int rv = cv_pct_query_param(r->query, "id", id, sizeof id);
    int rt = cv_pct_query_param(r->query, "type", type, sizeof type);
    if (rv || (rt && rt != CV_ENOTFOUND)) {
        cv_http_respond_error(x, CV_STATUS_INVALID_ARGUMENT,
                              rv == CV_ENOTFOUND ? "missing query parameter id (and optional type)"
                                                 : "type or id malformed or too long (type < 128, id < 512 bytes)",
                              NULL);
        return;
    }
    json_t *doc = cv_insp_api_object(cv_insp_poll_model(w->o.poll), type, id, &rv);
    if (doc) respond_doc(x, doc);
    else cv_http_respond_error(x, cv_err_code(rv), rv == CV_EINVAL ? "the nodes refuse this id" : cv_strerror(rv), NULL);
}

struct state_req {
    struct cv_http_exchange *x;
};

static void web__state_fetched(void *data, const struct cv_httpc_response *r)
{
    struct state_req *q = data;
    if (r->err) {
        char msg[256];
        snprintf(msg, sizeof msg, "the object's node did not answer: %s", r->error);
        cv_http_respond_error(q->x, cv_err_code(r->err == CV_ECANCELED ? CV_EUNAVAIL : r->err), msg, NULL);
    } else { /* the node's document, or its error (404: not active there any more) */
        cv_http_respond(q->x, (int)r->status, "application/json", r->body, r->len,
                        "Cache-Control: no-store\r\n");
    }
    free(q);
}

/* GET /api/object/state?type=T&id=X: the object's state as its node shows it (GET /v1/objects/{type}/{id}
 * on the node where the last poll saw it active, else its owner); 400 for a bad id, 503 with no node to
 * ask, else the node's status and body (404 when it is not active there). */
static void web__object_state(struct cv_insp_web *w, struct cv_http_exchange *x,
                              const struct cv_http_request *r)
{
    char type[128], id[512], path[3 * (128 + 512) + 16], url[sizeof path + 256];
    int node, rv = cv_pct_query_param(r->query, "id", id, sizeof id);
    if (!rv) rv = cv_pct_query_param(r->query, "type", type, sizeof type);
    if (!rv && !type[0]) rv = CV_EINVAL;
    if (!rv) rv = cv_insp_api_state_node(cv_insp_poll_model(w->o.poll), type, id, &node);
    if (!rv) rv = cv_insp_api_state_path(type, id, path, sizeof path);
    if (rv) {
        cv_http_respond_error(x, CV_STATUS_INVALID_ARGUMENT,
                              "expected ?type=T&id=X (type < 128, id < 512 bytes, an id the nodes accept)",
                              NULL);
        return;
    }
    struct state_req *q = node != CV_INSP_NO_NODE ? malloc(sizeof *q) : NULL;
    rv = node == CV_INSP_NO_NODE ? CV_EUNAVAIL : q ? 0 : CV_ENOMEM;
    if (!rv) {
        q->x = x;
        snprintf(url, sizeof url, "%s%s", cv_insp_poll_base(w->o.poll, (size_t)node), path);
        char authz[CV_SIGN_MAX + 32]; /* nodes with a cluster secret take only signed requests */
        struct cv_httpc_req hr = {.url = url, .timeout_ms = ACTION_TIMEOUT_MS,
                                  .extra_headers = cv_sign_url_headers(cv_guard_cluster()->secret, "GET", url, NULL,
                                                                       0, NULL, authz, sizeof authz)};
        rv = cv_httpc_request(w->o.httpc, &hr, web__state_fetched, q);
    }
    if (rv == 0) return;
    free(q);
    cv_http_respond_error(x, cv_err_code(rv),
                          rv == CV_EUNAVAIL ? "no node known for this object" : cv_strerror(rv), NULL);
}

static void web__events(struct cv_insp_web *w, struct cv_http_exchange *x, const struct cv_http_request *r)
{
    cv_insp_sse_open(w->sse, x, r);
}

/* ---- actions -------------------------------------------------------------------------------------------- */

/* Constant-time comparison: the token must not leak through timing. */
static bool token_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d = la != lb;
    for (size_t i = 0; i < la; i++) d |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
    return d == 0;
}

/* 0 when the request may act; else it was answered. */
static int web__authorize(struct cv_insp_web *w, struct cv_http_exchange *x, const struct cv_http_request *r)
{
    if (!w->token) {
        cv_http_respond_error(x, cv_err_code(CV_EPERM),
                              "the inspector is read-only: actions need a token; set inspector.admin_token_file in "
                              "the cluster config (a file holding the token) or CVERSE_INSPECTOR_TOKEN in the "
                              "inspector's environment, restart it, and send 'Authorization: Bearer <token>'",
                              NULL);
        return -1;
    }
    const char *auth = r->authorization;
    if (strncasecmp(auth, "Bearer ", 7) != 0 || !token_equal(auth + 7, w->token)) {
        cv_http_respond_error(x, cv_err_code(CV_EAUTH),
                              *auth ? "wrong token in Authorization: Bearer" : "missing 'Authorization: Bearer <token>'",
                              "WWW-Authenticate: Bearer realm=\"cverse-inspector\"\r\n");
        return -1;
    }
    return 0;
}

/* An action on its way to the cluster. A node that cannot serve it right now (no leader known to the
 * inspector or to the node: an election; 503 from the node) does not fail it at once: it is parked and
 * sent again at the next poll rounds until ACTION_TIMEOUT_MS, as an operator would retry (move, pin and
 * drain set a target: sending one again is harmless). */
struct action {
    struct cv_http_exchange *x;
    struct cv_insp_web *w;
    const char *path;
    char *body;             /* owned */
    uint64_t deadline_ms;
    char why[256];          /* the last refusal, answered at the deadline */
    struct action *next;    /* parked list */
};

static void action__free(struct action *a)
{
    free(a->body);
    free(a);
}

static void action__park(struct action *a, const char *why)
{
    snprintf(a->why, sizeof a->why, "%s", why);
    a->next = a->w->parked;
    a->w->parked = a;
}

static void web__send(struct action *a);

static void web__forwarded(void *data, const struct cv_httpc_response *r)
{
    struct action *a = data;
    bool retry = r->err != CV_ECANCELED && cv_mono_ms() < a->deadline_ms &&
                 (r->err ? cv_err_retryable(r->err) : r->status == 503);
    if (retry) {
        char why[256];
        if (r->err) snprintf(why, sizeof why, "the node did not answer: %s", r->error);
        else snprintf(why, sizeof why, "%.*s", (int)(r->len < 200 ? r->len : 200), r->body ? r->body : "");
        action__park(a, why);
        return;
    }
    if (r->err) {
        char msg[256];
        snprintf(msg, sizeof msg, "the leader did not answer: %s", r->error);
        cv_http_respond_error(a->x, cv_err_code(r->err == CV_ECANCELED ? CV_EUNAVAIL : r->err), msg, NULL);
    } else {
        cv_http_respond(a->x, (int)r->status, "application/json", r->body, r->len, NULL);
    }
    action__free(a);
}

/* The node to send an action to: the leader, else any node that is up (every node forwards admin
 * proposals to the leader it knows); CV_INSP_NO_NODE if none. */
static int web__target(const struct cv_insp_model *m)
{
    if (m->leader != CV_INSP_NO_NODE) return m->leader;
    for (size_t i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].up) return (int)i;
    return CV_INSP_NO_NODE;
}

static void web__send(struct action *a)
{
    const struct cv_insp_model *m = cv_insp_poll_model(a->w->o.poll);
    int t = web__target(m);
    if (t == CV_INSP_NO_NODE) {
        action__park(a, "no raft leader known");
        return;
    }
    char url[256], authz[CV_SIGN_MAX + 32] = "";
    snprintf(url, sizeof url, "%s%s", cv_insp_poll_base(a->w->o.poll, (size_t)t), a->path);
    const struct cv_secret *k = cv_guard_cluster()->secret;
    if (k) /* nodes with a cluster secret take only signed admin requests; signed at each (re)send */
        cv_sign_header_line(k, "POST", a->path, a->body, strlen(a->body), cv_now_ms() / 1000, authz, sizeof authz);
    int rv = cv_httpc_post_json(a->w->o.httpc, url, a->body, k ? authz : NULL, ACTION_TIMEOUT_MS, web__forwarded, a);
    if (rv == 0) return;
    cv_http_respond_error(a->x, cv_err_code(rv), cv_strerror(rv), NULL);
    action__free(a);
}

/* Each poll round: parked actions are sent again, or answered 503 with their last refusal at their
 * deadline. */
static void web__retry_parked(struct cv_insp_web *w)
{
    struct action *list = w->parked;
    w->parked = NULL;
    uint64_t now = cv_mono_ms();
    while (list) {
        struct action *a = list;
        list = a->next;
        if (now < a->deadline_ms) {
            web__send(a);
            continue;
        }
        char msg[320];
        snprintf(msg, sizeof msg, "not applied within %u ms: %s", ACTION_TIMEOUT_MS, a->why);
        cv_http_respond_error(a->x, CV_STATUS_UNAVAILABLE, msg, NULL);
        action__free(a);
    }
}

/* Sends body (a JSON object, consumed) to path on the leader (see struct action). */
static void web__forward(struct cv_insp_web *w, struct cv_http_exchange *x, const char *path, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    struct action *a = text ? calloc(1, sizeof *a) : NULL;
    if (!a) {
        free(text);
        cv_http_respond_error(x, CV_STATUS_INTERNAL, "out of memory", NULL);
        return;
    }
    *a = (struct action){.x = x, .w = w, .path = path, .body = text, .deadline_ms = cv_mono_ms() + ACTION_TIMEOUT_MS};
    web__send(a);
}

/* Parses the action's body; NULL when answered (400). */
static json_t *web__body(struct cv_http_exchange *x, const struct cv_http_request *r)
{
    json_error_t e;
    json_t *b = json_loadb(r->body, r->body_len, 0, &e);
    if (json_is_object(b)) return b;
    json_decref(b);
    char msg[200];
    snprintf(msg, sizeof msg, "the body must be a JSON object: %s", b ? "got another JSON value" : e.text);
    cv_http_respond_error(x, CV_STATUS_INVALID_ARGUMENT, msg, NULL);
    return NULL;
}

/* body.shard_id as a shard of this cluster, else -1 (answered). */
static long web__shard(struct cv_insp_web *w, struct cv_http_exchange *x, json_t *b)
{
    json_t *v = json_object_get(b, "shard_id");
    json_int_t s = json_is_integer(v) ? json_integer_value(v) : -1;
    if (s >= 0 && s < (json_int_t)w->o.cfg->shards) return (long)s;
    char msg[160];
    snprintf(msg, sizeof msg, "shard_id must be an integer from 0 to %u", w->o.cfg->shards - 1);
    cv_http_respond_error(x, CV_STATUS_INVALID_ARGUMENT, msg, NULL);
    return -1;
}

/* A node named by id or advertise address, else NULL (answered). */
static const char *web__node(struct cv_insp_web *w, struct cv_http_exchange *x, json_t *b, const char *key)
{
    const char *name = json_string_value(json_object_get(b, key));
    int i = cv_insp_model_find(cv_insp_poll_model(w->o.poll), name);
    if (i != CV_INSP_NO_NODE) return w->o.cfg->nodes[i].id;
    char msg[256];
    snprintf(msg, sizeof msg, "%s: unknown node \"%.120s\" (a node id or advertise address of the config)", key,
             name ? name : "");
    cv_http_respond_error(x, CV_STATUS_INVALID_ARGUMENT, msg, NULL);
    return NULL;
}

static bool web__flag(struct cv_http_exchange *x, json_t *b, const char *key, bool *out)
{
    json_t *v = json_object_get(b, key);
    if (json_is_boolean(v)) {
        *out = json_is_true(v);
        return true;
    }
    char msg[96];
    snprintf(msg, sizeof msg, "%s must be true or false", key);
    cv_http_respond_error(x, CV_STATUS_INVALID_ARGUMENT, msg, NULL);
    return false;
}

static void web__move(struct cv_insp_web *w, struct cv_http_exchange *x, const struct cv_http_request *r)
{
    json_t *b;
    if (web__authorize(w, x, r) || !(b = web__body(x, r))) return;
    long s = web__shard(w, x, b);
    const char *node = s < 0 ? NULL : web__node(w, x, b, "target_node");
    if (node) web__forward(w, x, "/v1/admin/shards/move", json_pack("{s:i,s:s}", "shard", (int)s, "node", node));
    json_decref(b);
}

static void web__pin(struct cv_insp_web *w, struct cv_http_exchange *x, const struct cv_http_request *r)
{
    json_t *b;
    bool pinned;
    if (web__authorize(w, x, r) || !(b = web__body(x, r))) return;
    long s = web__shard(w, x, b);
    if (s >= 0 && web__flag(x, b, "pinned", &pinned))
        web__forward(w, x, "/v1/admin/shards/pin", json_pack("{s:i,s:b}", "shard", (int)s, "pinned", pinned));
    json_decref(b);
}

static void web__drain(struct cv_insp_web *w, struct cv_http_exchange *x, const struct cv_http_request *r)
{
    json_t *b;
    bool drain;
    if (web__authorize(w, x, r) || !(b = web__body(x, r))) return;
    const char *node = web__node(w, x, b, "node");
    if (node && web__flag(x, b, "drain", &drain))
        web__forward(w, x, "/v1/admin/nodes/drain", json_pack("{s:s,s:b}", "node", node, "drain", drain));
    json_decref(b);
}

/* ---- static files --------------------------------------------------------------------------------------- */

struct file {
    const char *path, *dir, *name, *type; /* dir: "www" or a vendor subdirectory */
};

static const struct file files[] = {
    {"/", "www", "index.html", "text/html; charset=utf-8"},
    {"/index.html", "www", "index.html", "text/html; charset=utf-8"},
    {"/app.js", "www", "app.js", "text/javascript; charset=utf-8"},
    {"/style.css", "www", "style.css", "text/css; charset=utf-8"},
    {"/vendor/chart.js", "chart.js", "chart.umd.js", "text/javascript; charset=utf-8"},
    {"/vendor/d3.js", "d3", "d3.min.js", "text/javascript; charset=utf-8"},
};

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *p = malloc(MAX_STATIC);
    size_t n = p ? fread(p, 1, MAX_STATIC, f) : 0;
    fclose(f);
    if (p && n == MAX_STATIC) n = 0; /* too large: never ours */
    *len = n;
    if (!n) free(p);
    return n ? p : NULL;
}

/* chart.js: Debian ships it as chart.umd.js (4.x) or chart.min.js / Chart.min.js (2.x/3.x). */
static char *vendor_read(const struct cv_insp_web *w, const struct file *f, size_t *len)
{
    static const char *const chart[] = {"chart.umd.js", "chart.min.js", "Chart.min.js", "chart.js", NULL};
    static const char *const d3[] = {"d3.min.js", "d3.js", NULL};
    const char *const *names = !strcmp(f->dir, "d3") ? d3 : chart;
    char path[768];
    char *p = NULL;
    for (int i = 0; names[i] && !p; i++) {
        snprintf(path, sizeof path, "%s/%s/%s", w->o.vendor_dir, f->dir, names[i]);
        p = read_file(path, len);
    }
    return p;
}

static bool web__static(struct cv_insp_web *w, struct cv_http_exchange *x, const struct cv_http_request *r)
{
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        const struct file *f = &files[i];
        if (strcmp(r->path, f->path)) continue;
        size_t len = 0;
        char path[768], *body = NULL;
        if (strcmp(f->dir, "www")) {
            body = vendor_read(w, f, &len);
        } else if (w->www[0]) {
            snprintf(path, sizeof path, "%s/%s", w->www, f->name);
            body = read_file(path, &len);
        }
        if (!body) {
            cv_http_respond_error(x, CV_STATUS_NOT_FOUND, "file not installed (see docs/inspector.md)", NULL);
            return true;
        }
        cv_http_respond(x, 200, f->type, body, len, "Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n");
        free(body);
        return true;
    }
    return false;
}

/* ---- routing -------------------------------------------------------------------------------------------- */

struct route {
    const char *method, *path;
    void (*fn)(struct cv_insp_web *w, struct cv_http_exchange *x, const struct cv_http_request *r);
};

static const struct route routes[] = {
    {"GET", "/healthz", web__healthz},   {"GET", "/health", web__healthz},   {"GET", "/ready", web__ready},
    {"GET", "/api/state", web__state},   {"GET", "/api/object", web__object},
    {"GET", "/api/object/state", web__object_state},
    {"GET", "/shards", web__shards},    {"GET", "/graph", web__graph},
    {"GET", "/events/stream", web__events}, {"POST", "/shards/move", web__move}, {"POST", "/shards/pin", web__pin},
    {"POST", "/nodes/drain", web__drain},
};

void cv_insp_web_handle(void *data, struct cv_http_exchange *x, const struct cv_http_request *req)
{
    struct cv_insp_web *w = data;
    bool get = !strcmp(req->method, "GET") || !strcmp(req->method, "HEAD"), known = false;
    bool probe = !strcmp(req->path, "/healthz") || !strcmp(req->path, "/health") || !strcmp(req->path, "/ready");
    if (!probe) cv_insp_poll_watch(w->o.poll); /* someone looks: the poller keeps the fast pace */
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (strcmp(req->path, routes[i].path)) continue;
        known = true;
        if (!strcmp(req->method, routes[i].method) || (get && !strcmp(routes[i].method, "GET"))) {
            routes[i].fn(w, x, req);
            return;
        }
    }
    if (get && web__static(w, x, req)) return;
    if (known) cv_http_respond_error(x, CV_STATUS_METHOD_NOT_ALLOWED, "method not allowed on this path", "Allow: GET, POST\r\n");
    else cv_http_respond_error(x, CV_STATUS_NOT_FOUND, "no such path", NULL);
}

/* ---- life ------------------------------------------------------------------------------------------------ */

static void web__pick_www(struct cv_insp_web *w)
{
    for (const char *const *d = w->o.www_dirs; d && *d; d++) {
        char path[600];
        snprintf(path, sizeof path, "%s/index.html", *d);
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        fclose(f);
        snprintf(w->www, sizeof w->www, "%s", *d);
        return;
    }
    CV_WARN("no web UI files found (index.html); the API still answers");
}

int cv_insp_web_new(const struct cv_insp_web_opts *o, struct cv_insp_web **out)
{
    struct cv_insp_web *w = calloc(1, sizeof *w);
    if (!w) return CV_ENOMEM;
    w->o = *o;
    if (o->token && !(w->token = strdup(o->token))) goto err_after_alloc;
    if (cv_insp_sse_new(o->events, &w->sse)) goto err_after_token;
    web__pick_www(w);
    *out = w;
    return 0;

err_after_token:
    free(w->token);
err_after_alloc:
    free(w);
    return CV_ENOMEM;
}

void cv_insp_web_free(struct cv_insp_web *w)
{
    if (!w) return;
    while (w->parked) { /* the HTTP server is closed: nobody waits for their answers any more */
        struct action *a = w->parked;
        w->parked = a->next;
        action__free(a);
    }
    cv_insp_sse_free(w->sse);
    free(w->token);
    free(w);
}

void cv_insp_web_tick(struct cv_insp_web *w)
{
    if (cv_insp_sse_clients(w->sse) > 0) cv_insp_poll_watch(w->o.poll); /* an open stream watches */
    cv_insp_sse_tick(w->sse);
    web__retry_parked(w);
}

const char *cv_insp_web_www(const struct cv_insp_web *w)
{
    return w->www;
}
