/* The gate's HTTP API: Goverse-compatible object endpoints plus /healthz, /ready and /metrics.
 *
 * Happy path: POST /api/v1/objects/call/{type}/{id}/{method} -> parse the path, the per-call timeout and
 * the body -> cv_forwarder_forward_call with the request as the body gave it: proto3 JSON (form JSON, the
 * text of "request") or a serialized google.protobuf.Any (form ANY, the base64 decoded) -> the owner node
 * maps it with its types (the gate has none) and answers response_json, or the response bytes and their
 * type -> answer {"response":{...JSON...}} (the node's text, spliced in) or {"response":"<base64 Any>"}
 * in the form the request used. create/delete answer {"id":…} / {"success":true}.
 *
 * Failure modes: every error is {"error":"…","code":"…"} with the client status the error table gives
 * the code (cv_err_code, answered by cv_http_respond_error): bad JSON/base64/arguments 400 (from the
 * gate; JSON or an Any that does not fit the method's message: from the node), unknown type/method/object
 * 404 (from the node), overload 429 and unavailable 503 (both with Retry-After), deadline
 * 504. An application error an object answered (CV_EAPP) is 422 with the same two fields ("code" is
 * APPLICATION_ERROR) plus "app_code" and, when it has details, "details": {"@type": "type.googleapis.com/
 * <full name>", "value": "<base64 of the packed message>"} (docs/protocol.md). Oversized bodies get 413
 * from the HTTP server before this code
 * runs; OPTIONS preflights are answered there too (CORS). Unknown paths 404, wrong methods 405.
 * Authentication (gate/auth.h, docs/security.md): with a tokens file or an auth hook, the object
 * endpoints and the event stream need a valid Authorization: Bearer (else 401 UNAUTHENTICATED with
 * WWW-Authenticate: Bearer); the caller's user goes with the call. The object access / lifecycle rules
 * and an X-Client-ID of another user's push client answer 403 PERMISSION_DENIED. */
#include "gate/httpapi.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cverse/object.h"
#include "gate/chatpage.h"
#include "core/access.h"
#include "core/apperr.h"
#include "cverse/error.h"
#include "discovery/disc.h"
#include "gate/auth.h"
#include "gate/metrics.h"
#include "pbjson/any.h"
#include "pbjson/pbjson.h"
#include "rpc.pb-c.h"
#include "util/log.h"

/* ---------------------------------------------------------------------------------------------------
 * Paths. */

static const struct {
    const char *prefix;
    enum cv_gate_op op;
    const char *usage;
} routes[] = {
    {"/api/v1/objects/call/", CV_GATE_CALL, "/api/v1/objects/call/{type}/{id}/{method}"},
    {"/api/v1/objects/create/", CV_GATE_CREATE, "/api/v1/objects/create/{type}/{id}"},
    {"/api/v1/objects/delete/", CV_GATE_DELETE, "/api/v1/objects/delete/{type}/{id}"},
};

void cv_gate_target_free(struct cv_gate_target *t)
{
    free(t->type);
    free(t->id);
    free(t->method);
    t->type = t->id = t->method = NULL;
}

/* Splits an already decoded rest: type = first segment, method = last (call), id = what is between. */
static int path__decoded(const char *rest, int n, char **seg, const char *usage, char *err, size_t errlen)
{
    const char *first = strchr(rest, '/');
    const char *last = n == 3 && first ? strrchr(first + 1, '/') : NULL;
    const char *id = first ? first + 1 : NULL;
    size_t idlen = id ? (last ? (size_t)(last - id) : strlen(id)) : 0;
    if (!first || first == rest || idlen == 0 || (n == 3 && (!last || !last[1]))) {
        snprintf(err, errlen, "path must be %s, each part non-empty (percent-encode '/' in an id as %%2F)", usage);
        return CV_EINVAL;
    }
    seg[0] = strndup(rest, (size_t)(first - rest));
    seg[1] = strndup(id, idlen);
    if (n == 3) seg[2] = strdup(last + 1);
    return seg[0] && seg[1] && (n < 3 || seg[2]) ? 0 : CV_ENOMEM;
}

int cv_gate_parse_path(const char *path, struct cv_gate_target *t, char *err, size_t errlen)
{
    memset(t, 0, sizeof *t);
    size_t r = 0, nroutes = sizeof routes / sizeof routes[0];
    while (r < nroutes && strncmp(path, routes[r].prefix, strlen(routes[r].prefix)) != 0) r++;
    if (r == nroutes) {
        snprintf(err, errlen, "no such endpoint");
        return CV_ENOTFOUND;
    }
    int n = routes[r].op == CV_GATE_CALL ? 3 : 2;
    char *seg[3] = {NULL, NULL, NULL};
    const char *rest = path + strlen(routes[r].prefix);
    int rv = path__decoded(rest, n, seg, routes[r].usage, err, errlen);
    if (rv) {
        free(seg[0]);
        free(seg[1]);
        free(seg[2]);
        if (rv == CV_ENOMEM) snprintf(err, errlen, "out of memory");
        return rv;
    }
    *t = (struct cv_gate_target){.op = routes[r].op, .type = seg[0], .id = seg[1], .method = seg[2]};
    return 0;
}

/* ---------------------------------------------------------------------------------------------------
 * Timeouts and bodies. */

/* Decimal 1..CV_GATE_MAX_TIMEOUT_MS in s[0, n) (surrounding blanks allowed). */
static int timeout__value(const char *s, size_t n, const char *what, unsigned *out, char *err, size_t errlen)
{
    while (n && isblank((unsigned char)*s)) s++, n--;
    while (n && isblank((unsigned char)s[n - 1])) n--;
    uint64_t v = 0;
    size_t i = 0;
    for (; i < n && isdigit((unsigned char)s[i]) && v <= CV_GATE_MAX_TIMEOUT_MS; i++) v = v * 10 + (uint64_t)(s[i] - '0');
    if (n == 0 || i != n || v == 0 || v > CV_GATE_MAX_TIMEOUT_MS) {
        snprintf(err, errlen, "%s must be a number of milliseconds 1..%u, got \"%.*s\"", what,
                 CV_GATE_MAX_TIMEOUT_MS, (int)(n > 40 ? 40 : n), s);
        return CV_EINVAL;
    }
    *out = (unsigned)v;
    return 0;
}

int cv_gate_parse_timeout(const char *query, const char *header, unsigned *out_ms, char *err, size_t errlen)
{
    *out_ms = 0;
    if (header) return timeout__value(header, strlen(header), "X-Cverse-Deadline-Ms", out_ms, err, errlen);
    static const char key[] = "timeout_ms=";
    for (const char *p = query ? query : ""; *p;) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len >= sizeof key - 1 && memcmp(p, key, sizeof key - 1) == 0)
            return timeout__value(p + sizeof key - 1, len - (sizeof key - 1), "timeout_ms", out_ms, err, errlen);
        p += len + (end != NULL);
    }
    return 0;
}

bool cv_gate_query_flag(const char *query, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = query ? query : ""; *p;) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > n && memcmp(p, name, n) == 0 && p[n] == '=')
            return (len - n - 1 == 1 && p[n + 1] == '1') || (len - n - 1 == 4 && memcmp(p + n + 1, "true", 4) == 0);
        p += len + (end != NULL);
    }
    return false;
}

void cv_gate_body_free(struct cv_gate_body *b)
{
    json_decref(b->root);
    free(b->any);
    memset(b, 0, sizeof *b);
}

static int body__request(struct cv_gate_body *out, const json_t *req, char *err, size_t errlen)
{
    if (!req || json_is_null(req)) return 0;
    if (json_is_object(req)) {
        out->kind = CV_GATE_BODY_JSON;
        out->request = req;
        return 0;
    }
    if (!json_is_string(req)) {
        snprintf(err, errlen, "request: must be a JSON object (proto3 JSON of the request) or a string (base64 "
                 "of a serialized google.protobuf.Any)");
        return CV_EINVAL;
    }
    int rv = cv_pbjson_b64_decode(json_string_value(req), json_string_length(req), &out->any, &out->any_len);
    if (rv == CV_EINVAL)
        snprintf(err, errlen, "request: invalid base64 (expected standard padded base64 of a serialized "
                 "google.protobuf.Any)");
    else if (rv) snprintf(err, errlen, "out of memory");
    if (rv == 0) out->kind = CV_GATE_BODY_ANY;
    return rv;
}

int cv_gate_parse_body(const char *body, size_t len, struct cv_gate_body *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    size_t i = 0;
    while (i < len && isspace((unsigned char)body[i])) i++;
    if (i == len) return 0;
    json_error_t je;
    out->root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!out->root) {
        snprintf(err, errlen, "invalid JSON body at line %d column %d: %s", je.line, je.column, je.text);
        return CV_EINVAL;
    }
    int rv = CV_EINVAL;
    const char *key;
    json_t *v;
    if (!json_is_object(out->root)) {
        snprintf(err, errlen, "the body must be a JSON object {\"request\": …}");
        goto err_after_root;
    }
    json_object_foreach(out->root, key, v) {
        if (strcmp(key, "request") != 0) {
            snprintf(err, errlen, "unknown field \"%.60s\" in the body (expected only \"request\")", key);
            goto err_after_root;
        }
    }
    if ((rv = body__request(out, json_object_get(out->root, "request"), err, errlen))) goto err_after_root;
    return 0;

err_after_root:
    cv_gate_body_free(out);
    return rv;
}

/* ---------------------------------------------------------------------------------------------------
 * Answers. */

/* A JSON answer built from j (taken). */
static void http__json(struct cv_http_exchange *x, int status, json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (s) cv_http_respond(x, status, "application/json", s, strlen(s), NULL);
    else cv_http_respond_error(x, CV_STATUS_INTERNAL, "out of memory", NULL);
    free(s);
}

/* The error body of a CV_E* code: its client status, HTTP status and Retry-After from the error table. */
static void http__error(struct cv_http_exchange *x, int status, const char *msg)
{
    cv_http_respond_error(x, cv_err_code(status), msg ? msg : cv_strerror(status), NULL);
}

/* 422 for an application error: body is its packed code and details (core/apperr.h). */
static void http__app_error(struct cv_http_exchange *x, const char *msg, const uint8_t *body, size_t len)
{
    struct cv_app_error e;
    if (cv_apperr_parse(body, len, msg, &e) != 0) {
        http__error(x, CV_EIO, "malformed application error from the node");
        return;
    }
    json_t *j = json_pack("{s:s, s:s, s:s}", "error", e.message, "code", cv_err_status(CV_EAPP), "app_code", e.code);
    char *b64 = NULL, url[300];
    if (j && e.details_len && cv_pbjson_b64_encode(e.details, e.details_len, &b64, NULL) == 0) {
        snprintf(url, sizeof url, "type.googleapis.com/%s", e.details_type);
        json_object_set_new(j, "details", json_pack("{s:s, s:s}", "@type", url, "value", b64));
    }
    free(b64);
    http__json(x, cv_err_http(CV_EAPP), j);
}

/* ---------------------------------------------------------------------------------------------------
 * Object endpoints. */

struct hreq {
    struct cv_forwarder *fw;
    const struct cv_gate_caller *who; /* borrowed: the request's caller (until the forward started) */
    struct cv_http_exchange *x;
    enum cv_gate_op op;
    enum cv_gate_body_kind kind;
    uint64_t start_ns;
};

/* {"response":<text>} for the node's response_json text, without parsing it again. */
static int http__json_answer(struct hreq *r, const char *text, char *err, size_t errlen)
{
    static const char head[] = "{\"response\":";
    size_t n = strlen(text);
    if (!n) {
        snprintf(err, errlen, "the node answered no response_json");
        return CV_EIO;
    }
    char *s = malloc(sizeof head + n + 1);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return CV_ENOMEM;
    }
    memcpy(s, head, sizeof head - 1);
    memcpy(s + sizeof head - 1, text, n);
    s[sizeof head - 1 + n] = '}';
    cv_http_respond(r->x, 200, "application/json", s, sizeof head + n, NULL);
    free(s);
    return 0;
}

/* {"response":"<base64 of the Any>"}, the Any built from the node's response bytes and their type. */
static int http__any_answer(struct hreq *r, const Cverse__Rpc__CallResponse *cr, char *err, size_t errlen)
{
    uint8_t *any = NULL;
    size_t alen;
    char *b64 = NULL;
    if (!cr->response_type[0]) {
        snprintf(err, errlen, "the node did not name the response type");
        return CV_EIO;
    }
    int rv = cv_pbjson_any_wrap(cr->response_type, cr->response.data, cr->response.len, &any, &alen);
    if (rv == 0) rv = cv_pbjson_b64_encode(any, alen, &b64, NULL);
    free(any);
    if (rv) {
        snprintf(err, errlen, "out of memory");
        return rv;
    }
    http__json(r->x, 200, json_pack("{s:s}", "response", b64));
    free(b64);
    return 0;
}

/* {"response": …} for a successful call, in the form the request used; the status it answered with. */
static int http__call_answer(struct hreq *r, const uint8_t *body, size_t len)
{
    char err[256];
    Cverse__Rpc__CallResponse *cr = cverse__rpc__call_response__unpack(NULL, len, body);
    int rv = CV_EIO;
    if (!cr) snprintf(err, sizeof err, "malformed CallResponse from the node");
    else if (r->kind == CV_GATE_BODY_ANY) rv = http__any_answer(r, cr, err, sizeof err);
    else rv = http__json_answer(r, cr->response_json, err, sizeof err);
    if (cr) cverse__rpc__call_response__free_unpacked(cr, NULL);
    if (rv) http__error(r->x, rv, err);
    return rv;
}

static void http__done(void *data, int status, const char *error, const uint8_t *body, size_t len)
{
    struct hreq *r = data;
    if (status == CV_EAPP) {
        http__app_error(r->x, error, body, len);
    } else if (status) {
        http__error(r->x, status, error);
    } else if (r->op == CV_GATE_CALL) {
        status = http__call_answer(r, body, len);
    } else if (r->op == CV_GATE_CREATE) {
        Cverse__Rpc__CreateResponse *cr = cverse__rpc__create_response__unpack(NULL, len, body);
        if (cr) http__json(r->x, 200, json_pack("{s:s}", "id", cr->id));
        else http__error(r->x, status = CV_EIO, "malformed CreateResponse from the node");
        if (cr) cverse__rpc__create_response__free_unpacked(cr, NULL);
    } else {
        http__json(r->x, 200, json_pack("{s:b}", "success", 1));
    }
    cv_forwarder_end(r->fw, r->op, status, r->start_ns);
    free(r);
}

/* Forwards a call with its body as the client gave it: the text of "request" (form JSON; an empty body
 * is the empty message) or the decoded Any (form ANY). 0, or an error with a message in err. */
static int http__call(struct hreq *r, const struct cv_gate_target *t, const struct cv_http_request *req,
                      unsigned timeout, char *err, size_t errlen)
{
    struct cv_gate_body b;
    int rv = cv_gate_parse_body(req->body, req->body_len, &b, err, errlen);
    if (rv) return rv;
    r->kind = b.kind;
    struct cv_gate_call c = {.type = t->type, .id = t->id, .method = t->method,
                             .form = CVERSE__RPC__CALL_FORM__CALL_FORM_JSON, .call_id = req->call_id,
                             .client_id = req->client_id, .compact = cv_gate_query_flag(req->query, "compact"),
                             .user = r->who->user, .roles = r->who->roles};
    char *text = NULL;
    if (b.kind == CV_GATE_BODY_ANY) {
        c.form = CVERSE__RPC__CALL_FORM__CALL_FORM_ANY;
        c.req = b.any;
        c.len = b.any_len;
    } else if (b.kind == CV_GATE_BODY_JSON && !(text = json_dumps(b.request, JSON_COMPACT))) {
        rv = CV_ENOMEM;
    } else if (text) {
        c.req = (const uint8_t *)text;
        c.len = strlen(text);
    }
    if (rv == 0) rv = cv_forwarder_forward_call(r->fw, &c, timeout, http__done, r);
    if (rv) snprintf(err, errlen, "%s", cv_strerror(rv));
    free(text);
    cv_gate_body_free(&b);
    return rv;
}

/* With authentication on, a call's X-Client-ID must be a push client the same user registered here. */
static int http__client_id(const struct cv_gate_fronts *f, const struct cv_http_request *req,
                           const struct cv_gate_caller *who, char *err, size_t errlen)
{
    if (!cv_gate_auth_on(f->auth) || !req->client_id[0] || cv_gate_push_owned(f->push, req->client_id, who->user))
        return 0;
    snprintf(err, errlen, "X-Client-ID %.100s is not a push client of user %s on this gate", req->client_id,
             who->user);
    return CV_EPERM;
}

/* Validates the request and starts the forward; 0, or an error with a message in err. Type and method
 * are the owner node's to check (404); the access and lifecycle rules the gate's (403). */
static int http__start(const struct cv_gate_fronts *f, struct hreq *r, const struct cv_gate_target *t,
                       const struct cv_http_request *req, char *err, size_t errlen)
{
    unsigned timeout;
    int rv = cv_gate_parse_timeout(req->query, *req->deadline_ms ? req->deadline_ms : NULL, &timeout, err,
                                   errlen);
    int life = t->op == CV_GATE_CALL ? 0 : t->op == CV_GATE_CREATE ? CV_LIFE_CREATE : CV_LIFE_DELETE;
    if (!rv) rv = cv_gate_auth_permit(f->rules, life, t->type, t->id, t->method, err, errlen);
    if (!rv && t->op == CV_GATE_CALL) rv = http__client_id(f, req, r->who, err, errlen);
    if (rv) return rv;
    if (t->op != CV_GATE_CALL) {
        rv = cv_forwarder_forward(r->fw, t->op, t->type, t->id, NULL, NULL, 0, timeout, http__done, r);
        if (rv) snprintf(err, errlen, "%s", cv_strerror(rv));
        return rv;
    }
    if (strlen(req->call_id) > CV_CALL_ID_MAX) {
        snprintf(err, errlen, "X-Cverse-Call-Id is longer than %d bytes", CV_CALL_ID_MAX);
        return CV_EINVAL;
    }
    if (strlen(req->client_id) >= CV_GATE_PUSH_ID_MAX) {
        snprintf(err, errlen, "X-Client-ID is longer than %d bytes", CV_GATE_PUSH_ID_MAX - 1);
        return CV_EINVAL;
    }
    return http__call(r, t, req, timeout, err, errlen);
}

static void http__object(const struct cv_gate_fronts *f, struct cv_http_exchange *x,
                         const struct cv_http_request *req, const struct cv_gate_caller *who)
{
    struct cv_forwarder *fw = f->fw;
    char err[512];
    struct cv_gate_target t;
    /* The decoded path is split as type / id... / method: ids with '/' work encoded (%2F) or not, as
     * users of node-pinned ("node-1/x") and per-shard ("shard#3/x", '#' must be %23) ids expect. */
    int rv = cv_gate_parse_path(req->path, &t, err, sizeof err);
    if (rv) {
        http__error(x, rv, err);
        return;
    }
    if (strcmp(req->method, "POST") != 0) {
        cv_gate_target_free(&t);
        cv_http_respond_error(x, CV_STATUS_METHOD_NOT_ALLOWED, "only POST is allowed here",
                              "Allow: POST, OPTIONS\r\n");
        return;
    }
    uint64_t start = cv_mono_ns();
    struct hreq *r = NULL;
    if (cv_forwarder_begin(fw)) {
        snprintf(err, sizeof err, "gate is shutting down");
        rv = CV_EUNAVAIL;
    } else if (!(r = calloc(1, sizeof *r))) {
        snprintf(err, sizeof err, "out of memory");
        rv = CV_ENOMEM;
        cv_forwarder_end(fw, t.op, rv, start);
    } else {
        *r = (struct hreq){.fw = fw, .who = who, .x = x, .op = t.op, .start_ns = start};
        if ((rv = http__start(f, r, &t, req, err, sizeof err))) {
            free(r);
            cv_forwarder_end(fw, t.op, rv, start);
        }
    }
    if (rv) http__error(x, rv, err);
    cv_gate_target_free(&t);
}

/* ---------------------------------------------------------------------------------------------------
 * Operational endpoints and dispatch. */

static void http__ready(struct cv_forwarder *fw, struct cv_http_exchange *x)
{
    const char *why;
    if (cv_forwarder_ready(fw, &why)) http__json(x, 200, json_pack("{s:b, s:s}", "ready", 1, "status", "ready"));
    else http__json(x, 503, json_pack("{s:b, s:s, s:s}", "ready", 0, "status", "not_ready", "reason", why));
}

static void http__metrics(const struct cv_gate_fronts *f, struct cv_http_exchange *x)
{
    size_t len;
    struct cv_gate_stats st;
    struct cv_gate_push_stats ps;
    cv_forwarder_stats(f->fw, &st);
    st.etcd_up = f->disc ? cv_disc_up(f->disc) : -1;
    if (f->push) cv_gate_push_stats(f->push, &ps);
    char *text = cv_gate_metrics_text(&st, f->push ? &ps : NULL, &len);
    if (!text) {
        http__error(x, CV_ENOMEM, "out of memory");
        return;
    }
    cv_http_respond(x, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, NULL);
    free(text);
}

/* Clients authenticate on the object endpoints and the push stream (docs/security.md); a failure is
 * 401 UNAUTHENTICATED (the error table's status for CV_EAUTH) with WWW-Authenticate: Bearer. */
static bool http__auth(const struct cv_gate_fronts *f, struct cv_http_exchange *x, const struct cv_http_request *req,
                       struct cv_gate_caller *who)
{
    if (cv_gate_auth_check(f->auth, "http", req->authorization, req->path, who) == 0) return true;
    cv_http_respond_error(x, cv_err_code(CV_EAUTH), "missing or wrong credentials (expected Authorization: Bearer "
                          "TOKEN)", "WWW-Authenticate: Bearer\r\n");
    return false;
}

void cv_gate_http_handler(void *data, struct cv_http_exchange *x, const struct cv_http_request *req)
{
    struct cv_gate_caller who;
    const struct cv_gate_fronts *f = data;
    struct cv_forwarder *fw = f->fw;
    const char *p = req->path;
    bool get = !strcmp(req->method, "GET") || !strcmp(req->method, "HEAD");
    bool ops = !strcmp(p, "/healthz") || !strcmp(p, "/health") || !strcmp(p, "/ready") || !strcmp(p, "/metrics") ||
               !strcmp(p, CV_GATE_EVENTS_PATH) || !strcmp(p, "/chat");
    if (ops && !get) {
        cv_http_respond_error(x, CV_STATUS_METHOD_NOT_ALLOWED, "only GET is allowed here",
                              "Allow: GET, HEAD\r\n");
    } else if (!strcmp(p, "/healthz") || !strcmp(p, "/health")) {
        http__json(x, 200, json_pack("{s:s, s:s}", "status", "ok", "gate", cv_forwarder_id(fw)));
    } else if (!strcmp(p, "/ready")) {
        http__ready(fw, x);
    } else if (!strcmp(p, "/metrics")) {
        http__metrics(f, x);
    } else if (!strcmp(p, "/chat")) { /* the chat demo's page (docs/push.md) */
        cv_http_respond(x, 200, "text/html; charset=utf-8", cv_gate_chat_html, cv_gate_chat_html_len,
                        "Cache-Control: no-cache\r\n");
    } else if (!strcmp(p, CV_GATE_EVENTS_PATH) && !strcmp(req->method, "HEAD")) { /* no stream for HEAD */
        cv_http_respond(x, 200, "text/event-stream", "", 0, "Cache-Control: no-store\r\n");
    } else if (!http__auth(f, x, req, &who)) {
        return; /* answered 401 */
    } else if (!strcmp(p, CV_GATE_EVENTS_PATH) && f->push) {
        cv_gate_push_sse(f->push, x, req, who.user);
    } else {
        http__object(f, x, req, &who);
    }
}
