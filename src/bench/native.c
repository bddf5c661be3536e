/* cverse-bench's native transport: requests to a gate's grpc_addr over src/net/rpc (the framed protocol,
 * many requests in flight per connection, matched by id).
 *
 * Why src/net/rpc and not the client library (include/cverse/client.h): the client library is blocking,
 * one call at a time per connection; a load tool needs many in flight on one loop, which is what the
 * gate's and the nodes' own rpc client does.
 * Happy path: --connections clients are dialed at init; each send packs a CallRequest (type, id,
 * method, and either the empty request or --body as request_json for the gate to map) or a
 * CreateRequest, and sends it as gate.call / gate.create on the next connection round-robin. The
 * request's start time travels in a slot (one per request in flight, from a free list: no allocation
 * per request besides what rpc.c does).
 * Failure modes: the rpc layer reports a lost connection (CV_EUNAVAIL), a deadline (CV_ETIMEDOUT) or
 * the gate's error code; each comes back to the load loop as its status name (cv_err_status). A
 * client that cannot connect keeps redialing every 100 ms (calls wait for it until their deadline).
 * TLS (--tls, --ca): every connection speaks TLS (net/rpc.h opts.tls), the gate's certificate verified
 * against --ca (or the system's store) and --gate's host; a certificate that does not verify fails the
 * calls with UNAUTHENTICATED, and the first such reason is logged. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/driver.h"
#include "cverse/error.h"
#include "net/rpc.h"
#include "net/tls.h"
#include "util/log.h"
#include "rpc.pb-c.h"

struct slot {
    struct native *d;
    uint64_t start_ns;
    struct slot *next_free;
};

struct native {
    struct cv_bench_driver base;
    struct cv_rpc_client **cli;
    unsigned n_cli, next_cli, open_cli;
    struct slot *slots, *free;
    bool use_json; /* --body given (not "{}"): send it as request_json */
    struct cv_tls_ctx *tls; /* --tls: the client context (--ca), NULL when plain */
    bool tls_logged;        /* the first TLS failure was logged */
    cv_bench_closed_cb closed;
};

static bool native_can_send(struct cv_bench_driver *base)
{
    return ((struct native *)base)->free != NULL;
}

static void on_reply(void *data, int status, const char *error, const uint8_t *body, size_t len)
{
    struct slot *s = data;
    struct native *d = s->d;
    uint64_t start = s->start_ns;
    s->next_free = d->free;
    d->free = s;
    if (status == CV_EAUTH && d->tls && !d->tls_logged && error && strncmp(error, "TLS", 3) == 0) {
        d->tls_logged = true;
        CV_ERROR("%s", error);
    }
    d->base.done(d->base.data, start, status ? cv_err_status(status) : NULL);
}

/* Packs the request of kind for id into buf (cap bytes) or a malloc'ed buffer (*heap). Its length, 0 on
 * out of memory. */
static size_t pack(struct native *d, enum cv_bench_kind kind, const char *id, uint8_t *buf, size_t cap,
                   uint8_t **heap)
{
    const struct cv_bench_opts *o = d->base.o;
    ProtobufCMessage *m;
    Cverse__Rpc__CallRequest call = CVERSE__RPC__CALL_REQUEST__INIT;
    Cverse__Rpc__CreateRequest create = CVERSE__RPC__CREATE_REQUEST__INIT;
    if (kind == CV_BENCH_REQ_CALL) {
        call.type = (char *)o->type;
        call.id = (char *)id;
        call.method = (char *)o->method;
        if (d->use_json) call.request_json = (char *)o->body;
        m = &call.base;
    } else {
        create.type = (char *)o->type;
        create.id = (char *)id;
        m = &create.base;
    }
    size_t n = protobuf_c_message_get_packed_size(m);
    *heap = NULL;
    if (n > cap && !(buf = *heap = malloc(n))) return 0;
    return protobuf_c_message_pack(m, buf);
}

static int native_send(struct cv_bench_driver *base, enum cv_bench_kind kind, uint64_t n, uint64_t start_ns)
{
    struct native *d = (struct native *)base;
    struct slot *s = d->free;
    if (!s) return CV_EBUSY;
    char id[512];
    snprintf(id, sizeof id, "%s%llu", d->base.prefix, (unsigned long long)n);
    uint8_t buf[1024], *heap;
    size_t len = pack(d, kind, id, buf, sizeof buf, &heap);
    if (!len && !heap) return CV_ENOMEM;
    struct cv_rpc_client *cli = d->cli[d->next_cli++ % d->n_cli];
    s->start_ns = start_ns;
    int rc = cv_rpc_call(cli, kind == CV_BENCH_REQ_CALL ? "gate.call" : "gate.create", heap ? heap : buf, len,
                         d->base.o->timeout_ms, on_reply, s);
    free(heap);
    if (rc == 0) d->free = s->next_free;
    return rc;
}

static void client_closed(struct cv_rpc_client *cli)
{
    struct native *d = cv_rpc_client_data(cli);
    if (--d->open_cli) return;
    cv_bench_closed_cb closed = d->closed;
    void *data = d->base.data;
    cv_tls_ctx_free(d->tls);
    free(d->cli);
    free(d->slots);
    free(d);
    if (closed) closed(data);
}

static void native_close(struct cv_bench_driver *base, cv_bench_closed_cb closed)
{
    struct native *d = (struct native *)base;
    d->closed = closed;
    unsigned n = d->open_cli;
    for (unsigned i = 0; i < n; i++) cv_rpc_client_close(d->cli[i], client_closed);
}

static const struct cv_bench_driver_ops native_ops = {native_can_send, native_send, native_close};

int cv_bench_native_init(uv_loop_t *loop, const struct cv_bench_opts *o, const char *prefix,
                         cv_bench_done_cb done, void *data, struct cv_bench_driver **out)
{
    struct native *d = calloc(1, sizeof *d);
    if (!d) return CV_ENOMEM;
    d->base = (struct cv_bench_driver){&native_ops, o, prefix, done, data};
    d->use_json = o->body && strcmp(o->body, "{}") != 0 && *o->body;
    d->slots = calloc(o->concurrency, sizeof *d->slots);
    d->cli = calloc(o->connections, sizeof *d->cli);
    if (!d->slots || !d->cli) goto err_after_alloc;
    for (unsigned i = 0; i < o->concurrency; i++) {
        d->slots[i] = (struct slot){d, 0, d->free};
        d->free = &d->slots[i];
    }
    char why[256];
    if (o->tls && cv_tls_ctx_client(o->ca, why, sizeof why, &d->tls)) {
        CV_ERROR("--ca: %s", why);
        goto err_after_alloc;
    }
    struct cv_rpc_client_opts co = {.addr = o->addr, .reconnect_ms = 100, .data = d, .tls = d->tls};
    for (; d->n_cli < o->connections; d->n_cli++) {
        int rc = cv_rpc_client_init(loop, &co, &d->cli[d->n_cli]);
        if (rc < 0) goto err_after_clients;
        cv_rpc_client_connect(d->cli[d->n_cli]);
        d->open_cli++;
    }
    *out = &d->base;
    return 0;
err_after_clients:
    if (d->n_cli) { /* the clients own handles: close them, the last close frees d */
        native_close(&d->base, NULL);
        return CV_ENOMEM;
    }
err_after_alloc:
    cv_tls_ctx_free(d->tls);
    free(d->cli);
    free(d->slots);
    free(d);
    return CV_ENOMEM;
}
