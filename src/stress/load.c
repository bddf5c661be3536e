/* cverse-stress's clients (see load.h).
 *
 * Happy path: each logical client has one connection (a src/net/rpc client to a gate's native port, or a
 * src/net/httpc client to its HTTP API) and one operation in flight. An operation picks a counter and a
 * kind from the mix (counters: 50 % Increment / 50 % GetValue; goverse: 50 % Increment / 30 % GetValue /
 * 20 % create of an existing counter), is sent, and ends with the value of its answer; it goes into the
 * history with its first send and its answer's time. An Increment carries a call id
 * (X-Cverse-Call-Id over HTTP) that its retries repeat.
 * Failure modes: a retryable error (UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED: judged by the
 * error table, cv_err_retryable) is retried after 50 ms with the same call id until --op-deadline; any
 * other error, or the deadline, ends the operation unacknowledged (its outcome is unknown: the checks
 * count it as "maybe applied"). Every failed attempt is kept with its time for the availability check.
 * With --rate, each client paces its operations at rate/clients per second (its next one starts at its
 * due time, or at once when late). */
#include "stress/load.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"
#include "net/httpc.h"
#include "net/rpc.h"
#include "rpc.pb-c.h"
#include "sharding_demo.pb-c.h"

enum mode { M_IDLE, M_CREATE, M_RUN, M_FINAL };

struct client {
    struct cv_stress_load *l;
    unsigned idx;
    bool http;
    const char *http_addr;
    struct cv_rpc_client *rpc;
    struct cv_httpc *hc;
    uv_timer_t timer;
    uint64_t rng, seq, next_due_ns;
    enum mode mode;
    bool stopping;
    unsigned next_obj, failed_creates;
    struct cv_stress_op op;
    char call_id[128];
};

static uint64_t rnd(struct client *c) /* xorshift64* */
{
    c->rng ^= c->rng >> 12;
    c->rng ^= c->rng << 25;
    c->rng ^= c->rng >> 27;
    return c->rng * 2685821657736338717ull;
}

static bool status_retryable(const char *name)
{
    for (int e = -1; e >= -64; e--)
        if (cv_err_retryable(e) && !strcmp(cv_err_status(e), name)) return true;
    return false;
}

static const char *method_of(uint8_t kind) { return kind == CV_OP_INC ? "Increment" : "GetValue"; }

static void attempt(struct client *c);
static void next_op(struct client *c);

static void note_err(struct cv_stress_load *l, const char *code, bool retryable)
{
    if (cv_array_grow((void **)&l->errs, &l->cap_errs, l->n_errs + 1, sizeof *l->errs) < 0) {
        l->oom = true;
        return;
    }
    struct cv_stress_err *e = &l->errs[l->n_errs++];
    e->t_ns = uv_hrtime();
    snprintf(e->code, sizeof e->code, "%s", code);
    e->retryable = retryable;
}

static void on_timer(uv_timer_t *t)
{
    struct client *c = t->data;
    if (c->op.attempts) attempt(c); /* a retry */
    else next_op(c);                /* a paced start */
}

static void op_end(struct client *c)
{
    struct cv_stress_load *l = c->l;
    c->op.end_ns = uv_hrtime();
    if (c->mode == M_RUN) {
        if (cv_stress_history_add(&l->hist, &c->op) < 0) l->oom = true;
        if (c->op.ok) {
            cv_bench_window_record(&l->phase[l->cur_phase], NULL, c->op.end_ns - c->op.start_ns);
            cv_bench_window_record(&l->interval, NULL, c->op.end_ns - c->op.start_ns);
        }
    } else if (c->mode == M_FINAL) {
        l->finals[c->op.obj] = c->op.ok ? c->op.value : -1;
    } else if (c->mode == M_CREATE && !c->op.ok) {
        c->failed_creates++;
    }
    c->op.attempts = 0;
    next_op(c);
}

/* An attempt ended: err 0 with value, or an error's status name. */
static void attempt_done(struct client *c, const char *code, int64_t value)
{
    struct cv_stress_load *l = c->l;
    if (c->mode == M_IDLE) return; /* a cancel while closing */
    if (!code) {
        c->op.ok = true;
        c->op.value = value;
        return op_end(c);
    }
    bool retry = status_retryable(code);
    note_err(l, code, retry);
    if (c->mode == M_RUN) {
        cv_bench_window_record(&l->phase[l->cur_phase], code, 0);
        cv_bench_window_record(&l->interval, code, 0);
    }
    uint64_t now = uv_hrtime();
    if (retry && now + 50000000ull < c->op.start_ns + l->o->op_deadline_ms * 1000000ull) {
        uv_timer_start(&c->timer, on_timer, 50, 0);
        return;
    }
    op_end(c);
}

/* ---- native transport */

static void on_native(void *data, int status, const char *error, const uint8_t *body, size_t len)
{
    struct client *c = data;
    (void)error;
    if (status) return attempt_done(c, cv_err_status(status), 0);
    if (c->op.kind == CV_OP_CREATE) return attempt_done(c, NULL, 0);
    Cverse__Rpc__CallResponse *r = cverse__rpc__call_response__unpack(NULL, len, body);
    if (!r) return attempt_done(c, "PROTOCOL", 0);
    /* IncrementResponse and GetValueResponse are both { int64 value = 1; } */
    ShardingDemo__GetValueResponse *v = sharding_demo__get_value_response__unpack(NULL, r->response.len, r->response.data);
    cverse__rpc__call_response__free_unpacked(r, NULL);
    if (!v) return attempt_done(c, "PROTOCOL", 0);
    int64_t value = v->value;
    sharding_demo__get_value_response__free_unpacked(v, NULL);
    attempt_done(c, NULL, value);
}

static int send_native(struct client *c, const char *id)
{
    Cverse__Rpc__CallRequest call = CVERSE__RPC__CALL_REQUEST__INIT;
    Cverse__Rpc__CreateRequest create = CVERSE__RPC__CREATE_REQUEST__INIT;
    ProtobufCMessage *m = &call.base;
    if (c->op.kind == CV_OP_CREATE) {
        create.type = "SimpleCounter";
        create.id = (char *)id;
        m = &create.base;
    } else {
        call.type = "SimpleCounter";
        call.id = (char *)id;
        call.method = (char *)method_of(c->op.kind);
        if (c->op.kind == CV_OP_INC) call.call_id = c->call_id; /* a retry is answered from the record */
    }
    uint8_t buf[512];
    size_t n = protobuf_c_message_get_packed_size(m);
    if (n > sizeof buf) return CV_ETOOBIG;
    protobuf_c_message_pack(m, buf);
    return cv_rpc_call(c->rpc, c->op.kind == CV_OP_CREATE ? "gate.create" : "gate.call", buf, n,
                       (unsigned)c->l->o->timeout_ms, on_native, c);
}

/* ---- HTTP transport */

static int64_t json_value(json_t *resp)
{
    json_t *v = json_object_get(resp, "value");
    if (json_is_integer(v)) return json_integer_value(v);
    if (json_is_string(v)) return strtoll(json_string_value(v), NULL, 10);
    return 0; /* proto3 JSON leaves out a zero */
}

static void on_http(void *data, const struct cv_httpc_response *r)
{
    struct client *c = data;
    if (r->err) return attempt_done(c, r->err == CV_ECANCELED ? "CANCELED" : cv_err_status(r->err), 0);
    json_t *j = json_loadb(r->body, r->len, 0, NULL);
    if (r->status != 200) {
        const char *code = json_string_value(json_object_get(j, "code"));
        char name[32];
        snprintf(name, sizeof name, "HTTP_%ld", r->status);
        attempt_done(c, code ? code : name, 0);
    } else if (c->op.kind == CV_OP_CREATE) {
        attempt_done(c, NULL, 0);
    } else {
        json_t *resp = json_object_get(j, "response");
        if (json_is_object(resp)) attempt_done(c, NULL, json_value(resp));
        else attempt_done(c, "PROTOCOL", 0);
    }
    json_decref(j);
}

static int send_http(struct client *c, const char *id)
{
    char url[512], hdr[192] = "";
    unsigned tmo = (unsigned)c->l->o->timeout_ms;
    if (c->op.kind == CV_OP_CREATE)
        snprintf(url, sizeof url, "http://%s/api/v1/objects/create/SimpleCounter/%s?timeout_ms=%u", c->http_addr, id, tmo);
    else
        snprintf(url, sizeof url, "http://%s/api/v1/objects/call/SimpleCounter/%s/%s?timeout_ms=%u", c->http_addr, id,
                 method_of(c->op.kind), tmo);
    if (c->op.kind == CV_OP_INC) snprintf(hdr, sizeof hdr, "X-Cverse-Call-Id: %s\r\n", c->call_id);
    struct cv_httpc_req req = {.method = "POST", .url = url, .body = "{}", .body_len = 2, .extra_headers = hdr,
                               .timeout_ms = tmo + 1000};
    return cv_httpc_request(c->hc, &req, on_http, c);
}

static void attempt(struct client *c)
{
    char id[160];
    snprintf(id, sizeof id, "%s%u", c->l->prefix, c->op.obj);
    c->op.attempts++;
    int rc = c->http ? send_http(c, id) : send_native(c, id);
    if (rc < 0) {
        c->op.attempts--;
        attempt_done(c, cv_err_status(rc), 0);
    }
}

/* ---- what each client does next */

static void client_idle(struct client *c)
{
    c->mode = M_IDLE;
    struct cv_stress_load *l = c->l;
    if (--l->busy == 0 && l->cb) {
        cv_stress_load_cb cb = l->cb;
        l->cb = NULL;
        cb(l, l->cb_data);
    }
}

static void begin(struct client *c, uint32_t obj, uint8_t kind)
{
    c->op = (struct cv_stress_op){.obj = obj, .client = c->idx, .kind = kind, .start_ns = uv_hrtime()};
    snprintf(c->call_id, sizeof c->call_id, "%sc%u-%" PRIu64, c->l->prefix, c->idx, c->seq++);
    attempt(c);
}

static uint8_t pick_kind(struct client *c)
{
    unsigned r = (unsigned)(rnd(c) % 100);
    if (c->l->o->mix == CV_MIX_GOVERSE) return r < 50 ? CV_OP_INC : r < 80 ? CV_OP_GET : CV_OP_CREATE;
    return r < 50 ? CV_OP_INC : CV_OP_GET;
}

static void next_run(struct client *c)
{
    const struct cv_stress_opts *o = c->l->o;
    if (o->rate > 0) {
        uint64_t now = uv_hrtime(), period = (uint64_t)(1e9 * c->l->n_clients / o->rate);
        if (!c->next_due_ns) c->next_due_ns = now;
        if (c->next_due_ns > now + 1000000ull) {
            uv_timer_start(&c->timer, on_timer, (c->next_due_ns - now) / 1000000ull, 0);
            return;
        }
        c->next_due_ns += period;
    }
    begin(c, (uint32_t)(rnd(c) % o->objects), pick_kind(c));
}

static void next_op(struct client *c)
{
    const struct cv_stress_opts *o = c->l->o;
    switch (c->mode) {
    case M_RUN:
        if (c->stopping) return client_idle(c);
        return next_run(c);
    case M_CREATE:
    case M_FINAL:
        if (c->next_obj >= o->objects) return client_idle(c);
        begin(c, c->next_obj, c->mode == M_CREATE ? CV_OP_CREATE : CV_OP_GET);
        c->next_obj += c->l->n_clients;
        return;
    default:
        return;
    }
}

static void start_all(struct cv_stress_load *l, enum mode m, cv_stress_load_cb cb, void *data)
{
    l->cb = cb;
    l->cb_data = data;
    l->busy = l->n_clients;
    for (unsigned i = 0; i < l->n_clients; i++) {
        struct client *c = &l->clients[i];
        c->mode = m;
        c->stopping = false;
        c->next_obj = i;
        c->op.attempts = 0;
        next_op(c);
    }
}

int cv_stress_load_init(struct cv_stress_load *l, uv_loop_t *loop, const struct cv_stress_opts *o,
                        const char *const *gate_grpc, const char *const *gate_http, unsigned gates, uint64_t t0_ns)
{
    memset(l, 0, sizeof *l);
    l->loop = loop;
    l->o = o;
    snprintf(l->prefix, sizeof l->prefix, "stress-%" PRIu64 "-%ld-", o->seed, (long)(t0_ns / 1000000ull % 100000000ull));
    l->hist.n_objects = o->objects;
    l->hist.t0_ns = t0_ns;
    l->finals = malloc(o->objects * sizeof *l->finals);
    l->clients = calloc(o->clients, sizeof *l->clients);
    if (!l->finals || !l->clients) goto err_after_alloc;
    for (unsigned i = 0; i < o->objects; i++) l->finals[i] = -1;
    for (; l->n_clients < o->clients; l->n_clients++) {
        unsigned i = l->n_clients;
        struct client *c = &l->clients[i];
        c->l = l;
        c->idx = i;
        c->rng = (o->seed + 1) * 0x9E3779B97F4A7C15ull + i * 7919u + 1;
        c->http = o->transport == CV_TRANSPORT_HTTP || (o->transport == CV_TRANSPORT_MIXED && i % 2);
        c->http_addr = gate_http[i % gates];
        uv_timer_init(loop, &c->timer);
        c->timer.data = c;
        struct cv_rpc_client_opts co = {.addr = gate_grpc[i % gates], .reconnect_ms = 100, .data = c};
        int rc = c->http ? cv_httpc_init(loop, &c->hc) : cv_rpc_client_init(loop, &co, &c->rpc);
        if (rc < 0) {
            uv_close((uv_handle_t *)&c->timer, NULL);
            goto err_after_alloc; /* the caller closes what was set up (cv_stress_load_close) */
        }
    }
    return 0;
err_after_alloc:
    return CV_ENOMEM;
}

void cv_stress_load_create(struct cv_stress_load *l, cv_stress_load_cb cb, void *data) { start_all(l, M_CREATE, cb, data); }

unsigned cv_stress_load_failed_creates(const struct cv_stress_load *l)
{
    unsigned n = 0;
    for (unsigned i = 0; i < l->n_clients; i++) n += l->clients[i].failed_creates;
    return n;
}

void cv_stress_load_run(struct cv_stress_load *l) { start_all(l, M_RUN, NULL, NULL); }

void cv_stress_load_stop(struct cv_stress_load *l, cv_stress_load_cb cb, void *data)
{
    l->cb = cb;
    l->cb_data = data;
    for (unsigned i = 0; i < l->n_clients; i++) {
        struct client *c = &l->clients[i];
        c->stopping = true;
        if (c->mode == M_RUN && !c->op.attempts && uv_is_active((uv_handle_t *)&c->timer)) { /* paced, idle */
            uv_timer_stop(&c->timer);
            client_idle(c);
        }
    }
}

void cv_stress_load_final(struct cv_stress_load *l, cv_stress_load_cb cb, void *data) { start_all(l, M_FINAL, cb, data); }

/* ---- the call-id probe: create <prefix>probe, then Increment it twice with one call id */

struct probe {
    struct cv_stress_load *l;
    struct client *c;
    int step;
    int64_t first;
};

static void probe_step(struct probe *p);

static void on_probe(void *data, const struct cv_httpc_response *r)
{
    struct probe *p = data;
    int64_t v = -1;
    if (!r->err && r->status == 200) {
        json_t *j = json_loadb(r->body, r->len, 0, NULL);
        json_t *resp = json_object_get(j, "response");
        v = json_is_object(resp) ? json_value(resp) : 0;
        json_decref(j);
    }
    if (v < 0 && p->step < 20) { /* not there yet (the create is committing): try again */
        p->step += 3;
        return probe_step(p);
    }
    if (p->step % 3 == 1) p->first = v;
    if (p->step % 3 == 2) {
        struct cv_stress_load *l = p->l;
        l->ids = p->first > 0 && v == p->first;
        free(p);
        cv_stress_load_cb cb = l->cb;
        l->cb = NULL;
        return cb(l, l->cb_data);
    }
    p->step++;
    probe_step(p);
}

static void probe_step(struct probe *p)
{
    char url[512];
    const char *addr = p->c->http_addr;
    struct cv_httpc_req req = {.method = "POST", .body = "{}", .body_len = 2, .url = url, .timeout_ms = 5000};
    char hdr[192];
    snprintf(hdr, sizeof hdr, "X-Cverse-Call-Id: %sprobe-call\r\n", p->l->prefix);
    if (p->step % 3 == 0) snprintf(url, sizeof url, "http://%s/api/v1/objects/create/SimpleCounter/%sprobe", addr, p->l->prefix);
    else {
        snprintf(url, sizeof url, "http://%s/api/v1/objects/call/SimpleCounter/%sprobe/Increment", addr, p->l->prefix);
        req.extra_headers = hdr;
    }
    if (cv_httpc_request(p->c->hc, &req, on_probe, p) < 0) {
        struct cv_httpc_response r = {.err = CV_EIO};
        p->step = 20;
        on_probe(p, &r);
    }
}

void cv_stress_load_probe_ids(struct cv_stress_load *l, cv_stress_load_cb cb, void *data)
{
    l->cb = cb;
    l->cb_data = data;
    struct client *c = NULL;
    for (unsigned i = 0; i < l->n_clients && !c; i++)
        if (l->clients[i].http) c = &l->clients[i];
    struct probe *p = c ? calloc(1, sizeof *p) : NULL;
    if (!p) { /* native only: no call ids on that transport yet */
        l->ids = false;
        l->cb = NULL;
        return cb(l, data);
    }
    *p = (struct probe){l, c, 0, -1};
    probe_step(p);
}

/* ---- closing */

static void closed_one(struct cv_stress_load *l)
{
    if (--l->busy) return;
    free(l->clients);
    l->clients = NULL;
    free(l->finals);
    l->finals = NULL;
    free(l->errs);
    l->errs = NULL;
    cv_stress_history_free(&l->hist);
    cv_stress_load_cb cb = l->cb;
    l->cb = NULL;
    if (cb) cb(l, l->cb_data);
}

static void timer_closed(uv_handle_t *h) { closed_one(((struct client *)h->data)->l); }
static void rpc_closed(struct cv_rpc_client *cli) { closed_one(((struct client *)cv_rpc_client_data(cli))->l); }
static void httpc_closed(void *data) { closed_one(((struct client *)data)->l); }

void cv_stress_load_close(struct cv_stress_load *l, cv_stress_load_cb cb, void *data)
{
    l->cb = cb;
    l->cb_data = data;
    l->busy = 1; /* held until every close is started */
    for (unsigned i = 0; i < l->n_clients; i++) {
        struct client *c = &l->clients[i];
        l->busy++;
        uv_close((uv_handle_t *)&c->timer, timer_closed);
        if (c->rpc) {
            l->busy++;
            cv_rpc_client_close(c->rpc, rpc_closed);
        }
        if (c->hc) {
            l->busy++;
            cv_httpc_close(c->hc, httpc_closed, c);
        }
    }
    closed_one(l);
}
