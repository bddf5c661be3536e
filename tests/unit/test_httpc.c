/* The asynchronous HTTP client (src/net/httpc.h) against the project's own HTTP server on one loop. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"
#include "net/http.h"
#include "net/httpc.h"

static uv_loop_t loop;
static uv_timer_t deadline_timer;
static int deadline_hit;

static void deadline_cb(uv_timer_t *t)
{
    deadline_hit = 1;
}

#define RUN_UNTIL(cond)                                                             \
    do {                                                                            \
        while (!(cond)) {                                                           \
            cr_assert(!deadline_hit, "deadline hit while waiting for: %s", #cond); \
            uv_run(&loop, UV_RUN_ONCE);                                             \
        }                                                                           \
    } while (0)

/* ---- a server: /json, /echo (method, content type, Authorization, body), /hold (not answered until
 * the server closed: the handler keeps the exchange and the teardown answers it, which then only frees
 * it, as http.h says), /big (200 KB), anything else 404 ---------------------------------------------------- */

struct srv {
    struct cv_http_server *http;
    int port, closed, calls;
    struct cv_http_exchange *held[8];
    int n_held;
};

static void srv_handler(void *data, struct cv_http_exchange *x, const struct cv_http_request *req)
{
    struct srv *s = data;
    s->calls++;
    if (!strcmp(req->path, "/json")) {
        cv_http_respond_json(x, 200, "{\"ok\":true}");
    } else if (!strcmp(req->path, "/echo")) {
        char out[2048];
        int n = snprintf(out, sizeof out, "%s [%s] %s", req->method, req->content_type, req->body);
        cv_http_respond(x, 201, "text/plain", out, (size_t)n, NULL);
    } else if (!strcmp(req->path, "/hold")) {
        cr_assert_lt(s->n_held, 8);
        s->held[s->n_held++] = x;
    } else if (!strcmp(req->path, "/big")) {
        size_t len = 200 * 1024;
        char *b = malloc(len);
        cr_assert_not_null(b);
        memset(b, 'x', len);
        cv_http_respond(x, 200, "text/plain", b, len, NULL);
        free(b);
    } else {
        cv_http_respond_error(x, CV_STATUS_NOT_FOUND, "no such path", NULL);
    }
}

static struct srv S;
static struct cv_httpc *C;
static int client_closed;

static void srv_closed(void *data)
{
    ((struct srv *)data)->closed = 1;
}

static void client_closed_cb(void *data)
{
    client_closed++;
}

static void setup(void)
{
    cr_assert_eq(uv_loop_init(&loop), 0);
    deadline_hit = 0;
    client_closed = 0;
    uv_timer_init(&loop, &deadline_timer);
    uv_timer_start(&deadline_timer, deadline_cb, 15000, 0);
    memset(&S, 0, sizeof S);
    struct cv_http_opts o = {0};
    cr_assert_eq(cv_http_server_init(&loop, &o, srv_handler, &S, &S.http), 0);
    cr_assert_eq(cv_http_server_listen(S.http, "127.0.0.1:0"), 0);
    S.port = cv_http_server_port(S.http);
    cr_assert_eq(cv_httpc_init(&loop, &C), 0);
}

static void teardown(void)
{
    if (C) cv_httpc_close(C, client_closed_cb, NULL);
    if (C) RUN_UNTIL(client_closed == 1);
    C = NULL;
    cv_http_server_close(S.http, srv_closed);
    RUN_UNTIL(S.closed);
    for (int i = 0; i < S.n_held; i++) cv_http_respond_json(S.held[i], 200, "{}"); /* detached: frees */
    uv_close((uv_handle_t *)&deadline_timer, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&loop), 0, "handles left open");
}

TestSuite(httpc, .init = setup, .fini = teardown, .timeout = 30);

struct got {
    int done, err;
    long status;
    char body[4096];
    size_t len;
    char error[256];
};

static void got_cb(void *data, const struct cv_httpc_response *r)
{
    struct got *g = data;
    g->done++;
    g->err = r->err;
    g->status = r->status;
    g->len = r->len;
    snprintf(g->body, sizeof g->body, "%s", r->body);
    snprintf(g->error, sizeof g->error, "%s", r->error);
}

static void url(char *out, size_t len, const char *path)
{
    snprintf(out, len, "http://127.0.0.1:%d%s", S.port, path);
}

Test(httpc, get_json_200)
{
    char u[128];
    struct got g = {0};
    url(u, sizeof u, "/json");
    cr_assert_eq(cv_httpc_get(C, u, 2000, got_cb, &g), 0);
    cr_assert_eq(g.done, 0, "the callback never runs from inside the request call");
    cr_assert_eq(cv_httpc_pending(C), 1);
    RUN_UNTIL(g.done);
    cr_assert_eq(g.err, 0, "%s", g.error);
    cr_assert_eq(g.status, 200);
    cr_assert_str_eq(g.body, "{\"ok\":true}");
    cr_assert_eq(cv_httpc_pending(C), 0);
}

Test(httpc, post_json_with_headers_and_error_status)
{
    char u[128];
    struct got g = {0}, nf = {0};
    url(u, sizeof u, "/echo");
    cr_assert_eq(cv_httpc_post_json(C, u, "{\"a\":1}", "Authorization: Bearer t\r\n", 2000, got_cb, &g), 0);
    url(u, sizeof u, "/nope");
    cr_assert_eq(cv_httpc_get(C, u, 2000, got_cb, &nf), 0);
    RUN_UNTIL(g.done && nf.done);
    cr_assert_eq(g.err, 0, "%s", g.error);
    cr_assert_eq(g.status, 201);
    cr_assert_str_eq(g.body, "POST [application/json] {\"a\":1}");
    cr_assert_eq(nf.err, 0, "an HTTP error status is an answer, not a failure");
    cr_assert_eq(nf.status, 404);
    cr_assert(strstr(nf.body, "\"NOT_FOUND\""), "%s", nf.body);
}

Test(httpc, connection_refused_is_eunavail)
{
    /* A port that was just ours and is closed now: nobody listens there. */
    uv_tcp_t t;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_init(&loop, &t);
    cr_assert_eq(uv_tcp_bind(&t, (struct sockaddr *)&a, 0), 0);
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    uv_tcp_getsockname(&t, (struct sockaddr *)&ss, &sl);
    int port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    uv_close((uv_handle_t *)&t, NULL);
    char u[128];
    snprintf(u, sizeof u, "http://127.0.0.1:%d/json", port);
    struct got g = {0};
    cr_assert_eq(cv_httpc_get(C, u, 2000, got_cb, &g), 0);
    RUN_UNTIL(g.done);
    cr_assert_eq(g.err, CV_EUNAVAIL, "err %d: %s", g.err, g.error);
    cr_assert_eq(g.status, 0);
    cr_assert_neq(g.error[0], 0, "curl's message is passed on");
}

Test(httpc, timeout_is_etimedout)
{
    char u[128];
    struct got g = {0};
    url(u, sizeof u, "/hold");
    uint64_t t0 = uv_now(&loop);
    cr_assert_eq(cv_httpc_get(C, u, 200, got_cb, &g), 0);
    RUN_UNTIL(g.done);
    uv_update_time(&loop);
    cr_assert_eq(g.err, CV_ETIMEDOUT, "err %d: %s", g.err, g.error);
    cr_assert_geq(uv_now(&loop) - t0, 150);
    cr_assert_lt(uv_now(&loop) - t0, 5000);
}

Test(httpc, body_over_max_is_eio_and_big_body_arrives_whole)
{
    char u[128];
    struct got small = {0}, whole = {0};
    url(u, sizeof u, "/big");
    struct cv_httpc_req r = {.url = u, .timeout_ms = 2000, .max_body = 1000};
    cr_assert_eq(cv_httpc_request(C, &r, got_cb, &small), 0);
    r.max_body = 0;
    cr_assert_eq(cv_httpc_request(C, &r, got_cb, &whole), 0);
    RUN_UNTIL(small.done && whole.done);
    cr_assert_eq(small.err, CV_EIO, "err %d", small.err);
    cr_assert_str_eq(small.error, "response body too large");
    cr_assert_eq(whole.err, 0, "%s", whole.error);
    cr_assert_eq(whole.len, 200 * 1024);
}

Test(httpc, hundred_concurrent_requests)
{
    enum { N = 100 };
    static struct got g[N];
    memset(g, 0, sizeof g);
    char u[128];
    url(u, sizeof u, "/json");
    for (int i = 0; i < N; i++) cr_assert_eq(cv_httpc_get(C, u, 5000, got_cb, &g[i]), 0);
    int done = 0;
    while (done < N) {
        cr_assert(!deadline_hit);
        uv_run(&loop, UV_RUN_ONCE);
        done = 0;
        for (int i = 0; i < N; i++) done += g[i].done;
    }
    for (int i = 0; i < N; i++) {
        cr_assert_eq(g[i].done, 1);
        cr_assert_eq(g[i].status, 200, "request %d: err %d %s", i, g[i].err, g[i].error);
    }
    cr_assert_eq(S.calls, N);
}

Test(httpc, close_cancels_pending_and_refuses_new)
{
    char u[128];
    struct got g = {0};
    url(u, sizeof u, "/hold");
    cr_assert_eq(cv_httpc_get(C, u, 5000, got_cb, &g), 0);
    RUN_UNTIL(S.calls == 1); /* the request reached the server */
    cv_httpc_close(C, client_closed_cb, NULL);
    cr_assert_eq(g.done, 1);
    cr_assert_eq(g.err, CV_ECANCELED);
    cr_assert_eq(cv_httpc_get(C, u, 5000, got_cb, &g), CV_ECLOSED);
    RUN_UNTIL(client_closed == 1);
    C = NULL;
}

/* Closing the client from a response callback (e.g. the owner stops on an answer) cancels the rest. */
struct closer {
    struct got g[2];
};

static void close_in_cb(void *data, const struct cv_httpc_response *r)
{
    struct got *g = data;
    got_cb(data, r);
    if (g->status == 200) cv_httpc_close(C, client_closed_cb, NULL);
}

Test(httpc, close_from_a_callback)
{
    char u[128];
    struct closer c = {0};
    url(u, sizeof u, "/hold");
    cr_assert_eq(cv_httpc_get(C, u, 5000, close_in_cb, &c.g[1]), 0);
    url(u, sizeof u, "/json");
    cr_assert_eq(cv_httpc_get(C, u, 5000, close_in_cb, &c.g[0]), 0);
    RUN_UNTIL(c.g[0].done);
    cr_assert_eq(c.g[0].status, 200);
    cr_assert_eq(c.g[1].done, 1);
    cr_assert_eq(c.g[1].err, CV_ECANCELED);
    RUN_UNTIL(client_closed == 1);
    C = NULL;
}

Test(httpc, bad_arguments)
{
    struct got g = {0};
    cr_assert_eq(cv_httpc_get(C, NULL, 0, got_cb, &g), CV_EINVAL);
    cr_assert_eq(cv_httpc_get(C, "http://127.0.0.1:1/", 0, NULL, &g), CV_EINVAL);
}
