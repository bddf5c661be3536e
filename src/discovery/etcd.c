/* etcd v3 client: every call is a POST of a JSON body to the gateway of one endpoint (cv_httpc, so the loop
 * never blocks); watches are long streamed POSTs whose body is split into messages as it arrives.
 *
 * Happy path: cv_etcd_call sends to the current endpoint, parses the 200 reply and hands it to the
 * caller. A watch feeds each streamed piece through cv_etcd_lines and gives every parsed message to
 * on_msg; it ends after max_ms (the caller resumes it from the last revision it saw).
 *
 * Failure modes: a transport error (refused, reset, timeout) or an etcd that answers "unavailable" (no
 * leader: HTTP 502-504 or gRPC code 14) makes the client move to the next endpoint and send again, each
 * endpoint once per call (Goverse uses only the first endpoint; we use all). Only when all failed does the
 * caller get CV_EUNAVAIL. Other etcd errors are CV_ENOTFOUND (gRPC 5 / HTTP 404) or CV_EIO with the text.
 * Closing cancels everything in flight through cv_httpc_close. */
#include "discovery/etcd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"
#include "net/httpc.h"

#define ETCD_TIMEOUT_MS 2000u
#define GRPC_NOT_FOUND 5
#define GRPC_UNAVAILABLE 14

struct cv_etcd {
    struct cv_httpc *http;
    char **endpoints; /* "http://host:port", owned */
    size_t n, cur;
    unsigned timeout_ms;
    bool closing;
    void (*close_cb)(void *data);
    void *close_data;
};

struct call {
    struct cv_etcd *e;
    char path[64];
    char *body;
    size_t at;    /* endpoint this attempt went to */
    size_t tries; /* attempts made */
    cv_etcd_cb cb;
    void *data;
};

struct watch {
    struct cv_etcd *e;
    size_t at;
    struct cv_etcd_lines lines;
    cv_etcd_msg_cb on_msg;
    cv_etcd_cb on_end;
    void *data;
    int err;   /* a bad message ended the stream */
    bool stop; /* on_msg asked to end it */
};

static char *endpoint_url(const char *ep)
{
    char *s = NULL;
    bool scheme = !strncmp(ep, "http://", 7) || !strncmp(ep, "https://", 8);
    if (asprintf(&s, "%s%s", scheme ? "" : "http://", ep) < 0) return NULL;
    size_t n = strlen(s);
    while (n > 0 && s[n - 1] == '/') s[--n] = 0;
    return s;
}

static void etcd__free(struct cv_etcd *e)
{
    for (size_t i = 0; i < e->n; i++) free(e->endpoints[i]);
    free(e->endpoints);
    free(e);
}

int cv_etcd_init(const struct cv_etcd_opts *opts, struct cv_etcd **out)
{
    if (!opts->n_endpoints) return CV_EINVAL;
    struct cv_etcd *e = calloc(1, sizeof *e);
    if (!e || !(e->endpoints = calloc(opts->n_endpoints, sizeof *e->endpoints))) goto err_after_alloc;
    for (; e->n < opts->n_endpoints; e->n++)
        if (!(e->endpoints[e->n] = endpoint_url(opts->endpoints[e->n]))) goto err_after_alloc;
    e->timeout_ms = opts->timeout_ms ? opts->timeout_ms : ETCD_TIMEOUT_MS;
    int rv = cv_httpc_init(opts->loop, &e->http);
    if (rv) {
        etcd__free(e);
        return rv;
    }
    *out = e;
    return 0;

err_after_alloc:
    if (e) etcd__free(e);
    return CV_ENOMEM;
}

const char *cv_etcd_endpoint(const struct cv_etcd *e)
{
    return e->endpoints[e->cur];
}

/* The endpoint at failed: move on, unless another request already did. */
static void etcd__failover(struct cv_etcd *e, size_t at)
{
    if (e->cur == at) e->cur = (e->cur + 1) % e->n;
}

static bool etcd__unavailable(const struct cv_httpc_response *r, const struct cv_etcd_reply *rep)
{
    if (r->err) return r->err != CV_ECANCELED;
    return (r->status >= 502 && r->status <= 504) || (rep && rep->code == GRPC_UNAVAILABLE);
}

static int call__send(struct call *c);

static void call__done(struct call *c, int err, const struct cv_etcd_reply *rep)
{
    c->cb(c->data, err, rep);
    free(c->body);
    free(c);
}

static void call__on_response(void *data, const struct cv_httpc_response *r)
{
    struct call *c = data;
    struct cv_etcd_reply rep;
    int prv = r->err ? CV_EIO : cv_etcd_parse(r->body, r->len, &rep);
    bool parsed = !r->err && prv != CV_ENOMEM;
    if (etcd__unavailable(r, parsed ? &rep : NULL)) {
        if (parsed) cv_etcd_reply_free(&rep);
        etcd__failover(c->e, c->at);
        if (c->tries < c->e->n && !c->e->closing && !call__send(c)) return;
        call__done(c, CV_EUNAVAIL, NULL);
        return;
    }
    int err = r->err ? r->err : prv;
    if (!err && rep.code) err = rep.code == GRPC_NOT_FOUND || r->status == 404 ? CV_ENOTFOUND : CV_EIO;
    else if (!err && r->status != 200) err = CV_EIO;
    call__done(c, err, parsed ? &rep : NULL);
    if (parsed) cv_etcd_reply_free(&rep);
}

static int call__send(struct call *c)
{
    struct cv_etcd *e = c->e;
    char url[512];
    c->at = e->cur;
    c->tries++;
    snprintf(url, sizeof url, "%s%s", e->endpoints[c->at], c->path);
    struct cv_httpc_req req = {.method = "POST", .url = url, .body = c->body, .body_len = strlen(c->body),
                               .timeout_ms = e->timeout_ms};
    return cv_httpc_request(e->http, &req, call__on_response, c);
}

int cv_etcd_call(struct cv_etcd *e, const char *path, char *body, cv_etcd_cb cb, void *data)
{
    if (!body) return CV_EINVAL;
    if (e->closing) {
        free(body);
        return CV_ECLOSED;
    }
    struct call *c = calloc(1, sizeof *c);
    if (!c) {
        free(body);
        return CV_ENOMEM;
    }
    *c = (struct call){.e = e, .body = body, .cb = cb, .data = data};
    snprintf(c->path, sizeof c->path, "%s", path);
    int rv = call__send(c);
    if (rv) {
        free(c->body);
        free(c);
    }
    return rv;
}

/* ---- watches ------------------------------------------------------------------------------------------ */

static bool watch__line(void *data, const char *line, size_t len)
{
    struct watch *w = data;
    struct cv_etcd_reply rep;
    int rv = cv_etcd_parse(line, len, &rep);
    if (rv) w->err = rv;
    else w->stop = !w->on_msg(w->data, &rep);
    bool go = !rv && !w->stop;
    cv_etcd_reply_free(&rep);
    return go;
}

static bool watch__on_data(void *data, const char *chunk, size_t len)
{
    struct watch *w = data;
    int rv = cv_etcd_lines_feed(&w->lines, chunk, len, watch__line, w);
    if (rv) w->err = rv;
    return !w->err && !w->stop;
}

static void watch__on_end(void *data, const struct cv_httpc_response *r)
{
    struct watch *w = data;
    int err = w->err ? w->err : r->err;
    if (!err && r->status != 200) err = r->status >= 502 && r->status <= 504 ? CV_EUNAVAIL : CV_EIO;
    else if (!err) err = CV_EUNAVAIL; /* etcd closed the stream: its member is going away */
    if (err == CV_EUNAVAIL || (err == CV_EIO && !w->err)) etcd__failover(w->e, w->at);
    w->on_end(w->data, err, NULL);
    cv_etcd_lines_free(&w->lines);
    free(w);
}

int cv_etcd_watch(struct cv_etcd *e, const char *prefix, int64_t start_revision, unsigned max_ms,
                  cv_etcd_msg_cb on_msg, cv_etcd_cb on_end, void *data)
{
    if (e->closing) return CV_ECLOSED;
    char *body = cv_etcd_enc_watch(prefix, start_revision);
    struct watch *w = body ? calloc(1, sizeof *w) : NULL;
    if (!w) {
        free(body);
        return CV_ENOMEM;
    }
    *w = (struct watch){.e = e, .at = e->cur, .on_msg = on_msg, .on_end = on_end, .data = data};
    char url[512];
    snprintf(url, sizeof url, "%s/v3/watch", e->endpoints[w->at]);
    struct cv_httpc_req req = {.method = "POST", .url = url, .body = body, .body_len = strlen(body),
                               .timeout_ms = max_ms, .on_data = watch__on_data};
    int rv = cv_httpc_request(e->http, &req, watch__on_end, w);
    free(body);
    if (rv) free(w);
    return rv;
}

static void etcd__closed(void *data)
{
    struct cv_etcd *e = data;
    void (*cb)(void *) = e->close_cb;
    void *cb_data = e->close_data;
    etcd__free(e);
    if (cb) cb(cb_data);
}

void cv_etcd_close(struct cv_etcd *e, void (*cb)(void *data), void *data)
{
    if (e->closing) return;
    e->closing = true;
    e->close_cb = cb;
    e->close_data = data;
    cv_httpc_close(e->http, etcd__closed, e);
}
