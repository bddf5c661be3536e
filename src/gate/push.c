/* The gate's push clients (docs/push.md): clients open GET /api/v1/events/stream (or send gate.register
 * on a native connection) and get an id "<gate-id>/<unique>"; nodes send gate.push batches; each message
 * goes into its client's bounded queue and out on its SSE stream (or as gate.push_event events).
 *
 * Happy path: cv_gate_push_sse registers a client (uthash by id), begins its stream and writes the
 * `register` event. cv_gate_push_batch unpacks a PushBatch and renders every push as an SSE `message`
 * event (base64 Any, or proto3 JSON for ?format=json clients; each form once per push, copied to a
 * broadcast's clients) into the queue of its client (every client for a broadcast). At the next loop
 * iteration the flush timer writes each client's queue, coalesced into one write, while its socket
 * backlog is under CV_GATE_PUSH_BACKLOG; what still waits is retried every 20 ms. A heartbeat
 * event goes to every SSE client every heartbeat_ms. A native client's queue holds packed Push messages,
 * sent as KIND_EVENT "gate.push_event" while its connection's backlog is under the same bound, and a
 * "gate.push_dropped" (PushDropped) event tells it of drops.
 *
 * Failure modes: a full queue (a slow client) drops its oldest event, counted (stats.dropped) and told to
 * the client by a `dropped {"count":N}` event written before its next message; a push for an unknown
 * client (gone, or never here) is dropped and counted; a client whose stream ends (peer gone, server
 * closing, write failure) leaves the registry and its queue is freed at once; out of memory while
 * rendering drops that message (counted). Best effort throughout: nothing blocks a node.
 * Each client remembers the user that registered it (gate/auth.h): with authentication on, the front
 * ends honour a call's client id only for that user (cv_gate_push_owned). */
#include "gate/push.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HASH_NONFATAL_OOM 1
#include <uthash.h>

#include "cverse/error.h"
#include "cverse/gate.h"
#include "pbjson/any.h"
#include "rpc.pb-c.h"
#include "util/buf.h"
#include "util/log.h"

#define FLUSH_MS 20u

/* One rendered SSE event waiting in a client's queue. */
struct pmsg {
    struct pmsg *next;
    size_t len;
    char data[];
};

struct client {
    UT_hash_handle hh; /* in p->clients, keyed by id */
    struct cv_gate_push *p;
    struct cv_http_stream *st; /* SSE: owned by the HTTP server until its close callback; else NULL */
    struct cv_rpc_conn *conn;  /* native: a reference, dropped when the client leaves; else NULL */
    bool json;                 /* ?format=json */
    struct pmsg *head, *tail;  /* owned: the queue */
    size_t n;
    uint64_t dropped; /* dropped since the last `dropped` event */
    char user[CV_GATE_USER_MAX]; /* who registered it ("" without authentication): X-Client-ID binding */
    char id[];
};

struct cv_gate_push {
    uv_loop_t *loop;
    char *gate_id;
    unsigned heartbeat_ms, queue_max;
    uint64_t counter;
    uv_timer_t heartbeat, flush;
    bool flush_now; /* the flush timer is due at the next iteration */
    int handles;
    struct client *clients;
    struct cv_gate_push_stats st;
    void (*close_cb)(void *data);
    void *close_data;
};

/* ---- queues ---- */

static void client__free(struct client *c)
{
    if (c->conn) cv_rpc_conn_unref(c->conn);
    for (struct pmsg *m = c->head, *next; m; m = next) {
        next = m->next;
        free(m);
    }
    free(c);
}

/* Leaves the registry (its stream is gone or being ended) and frees the queue. */
static void client__remove(struct client *c)
{
    struct cv_gate_push *p = c->p;
    HASH_DEL(p->clients, c);
    p->st.clients--;
    client__free(c);
}

static size_t client__backlog(const struct client *c)
{
    return c->st ? cv_http_stream_backlog(c->st) : cv_rpc_conn_backlog(c->conn);
}

/* The `dropped` notice: an SSE event, or a gate.push_dropped event. 0 or CV_ECLOSED. */
static int client__tell_dropped(struct client *c)
{
    if (c->conn) {
        Cverse__Rpc__PushDropped d = CVERSE__RPC__PUSH_DROPPED__INIT;
        uint8_t buf[16];
        d.count = c->dropped;
        return cv_rpc_send_event(c->conn, "gate.push_dropped", buf, cverse__rpc__push_dropped__pack(&d, buf));
    }
    char ev[80];
    int n = snprintf(ev, sizeof ev, "event: dropped\ndata: {\"count\":%" PRIu64 "}\n\n", c->dropped);
    return cv_http_stream_write(c->st, ev, (size_t)n);
}

static int client__write(struct client *c, const struct pmsg *m)
{
    if (c->conn) return cv_rpc_send_event(c->conn, "gate.push_event", m->data, m->len);
    return cv_http_stream_write(c->st, m->data, m->len);
}

/* Writes queued events while the socket keeps up; true if some stay queued. A failed write means the
 * stream or connection is ending: its close callback removes the client later. */
static bool client__flush(struct client *c)
{
    while (c->head && client__backlog(c) < CV_GATE_PUSH_BACKLOG) {
        if (c->dropped) {
            if (client__tell_dropped(c)) return false;
            c->dropped = 0;
        }
        /* SSE: the queued events (up to the backlog bound) in one write; native: one frame each. */
        size_t n = 1, total = c->head->len;
        for (struct pmsg *m = c->head->next; c->st && m && total + m->len <= CV_GATE_PUSH_BACKLOG; m = m->next)
            total += m->len, n++;
        char *buf = n > 1 ? malloc(total) : NULL;
        if (!buf) n = 1;
        size_t off = 0;
        for (struct pmsg *m = c->head; buf && m && off < total; m = m->next) {
            memcpy(buf + off, m->data, m->len);
            off += m->len;
        }
        int rv = buf ? cv_http_stream_write(c->st, buf, total) : client__write(c, c->head);
        free(buf);
        if (rv) return false;
        for (; n > 0; n--) {
            struct pmsg *m = c->head;
            c->head = m->next;
            c->n--;
            c->p->st.delivered++;
            free(m);
        }
        if (!c->head) c->tail = NULL;
    }
    return c->head != NULL;
}

/* Writes what every client has queued (one pass over the clients per loop iteration with pushes, then
 * every FLUSH_MS while some socket lags). */
static void push__flush_cb(uv_timer_t *t)
{
    struct cv_gate_push *p = t->data;
    bool more = false;
    p->flush_now = false;
    for (struct client *c = p->clients, *next; c; c = next) {
        next = c->hh.next;
        if (c->head && client__flush(c)) more = true;
    }
    if (more) uv_timer_start(&p->flush, push__flush_cb, FLUSH_MS, 0);
}

/* Queues an event (taken), dropping the oldest when full; the flush timer (0 ms: the next loop
 * iteration, after the whole batch is queued) writes it. */
static void client__queue(struct client *c, struct pmsg *m)
{
    struct cv_gate_push *p = c->p;
    if (c->n >= p->queue_max) {
        struct pmsg *old = c->head;
        c->head = old->next;
        if (!c->head) c->tail = NULL;
        c->n--;
        c->dropped++;
        p->st.dropped++;
        free(old);
    }
    if (c->tail) c->tail->next = m;
    else c->head = m;
    c->tail = m;
    c->n++;
    if (!p->flush_now) {
        p->flush_now = true;
        uv_timer_start(&p->flush, push__flush_cb, 0, 0);
    }
}

/* ---- rendering ---- */

/* `event: message` with {"type":…,"payload":…}: proto3 JSON, or the base64 of the packed Any. NULL out of
 * memory. */
static struct pmsg *push__render(const Cverse__Rpc__Push *m, bool json)
{
    char *b64 = NULL;
    const char *payload = m->json;
    if (!json) {
        uint8_t *any = NULL;
        size_t alen;
        int rv = cv_pbjson_any_wrap(m->type, m->payload.data, m->payload.len, &any, &alen);
        if (rv == 0) rv = cv_pbjson_b64_encode(any, alen, &b64, NULL);
        free(any);
        if (rv) return NULL;
    }
    struct cv_buf b = {0};
    cv_buf_printf(&b, "event: message\ndata: {\"type\":\"%s\",\"payload\":", m->type);
    if (json) cv_buf_printf(&b, "%s}\n\n", payload[0] ? payload : "{}");
    else cv_buf_printf(&b, "\"%s\"}\n\n", b64);
    free(b64);
    struct pmsg *pm = b.oom ? NULL : malloc(sizeof *pm + b.len);
    if (pm) {
        pm->next = NULL;
        pm->len = b.len;
        memcpy(pm->data, b.p, b.len);
    }
    free(b.p);
    return pm;
}

/* SSE data must be one line: proto3 JSON from the node is compact, but a newline would cut the event. */
static bool push__one_line(const char *s)
{
    return strchr(s, '\n') == NULL && strchr(s, '\r') == NULL;
}

/* A native client's event body: the Push itself, packed (broadcast and client id as the node sent them). */
static struct pmsg *push__packed(const Cverse__Rpc__Push *m)
{
    size_t n = cverse__rpc__push__get_packed_size(m);
    struct pmsg *pm = malloc(sizeof *pm + n);
    if (!pm) return NULL;
    pm->next = NULL;
    pm->len = cverse__rpc__push__pack(m, (uint8_t *)pm->data);
    return pm;
}

/* One push rendered in the three forms a client may want, each at most once per push (a broadcast's
 * clients get copies). */
struct rendered {
    struct pmsg *form[3]; /* SSE Any, SSE JSON, native */
    bool tried[3];
};

static struct pmsg *pmsg_copy(const struct pmsg *m)
{
    struct pmsg *c = m ? malloc(sizeof *c + m->len) : NULL;
    if (c) {
        c->next = NULL;
        c->len = m->len;
        memcpy(c->data, m->data, m->len);
    }
    return c;
}

static void push__deliver(struct cv_gate_push *p, struct client *c, const Cverse__Rpc__Push *m, struct rendered *r)
{
    bool json = c->json && push__one_line(m->json);
    int f = c->conn ? 2 : json ? 1 : 0;
    if (!r->tried[f]) {
        r->tried[f] = true;
        r->form[f] = f == 2 ? push__packed(m) : push__render(m, json);
    }
    struct pmsg *pm = pmsg_copy(r->form[f]);
    if (!pm) {
        p->st.dropped++;
        return;
    }
    client__queue(c, pm);
}

int cv_gate_push_batch(struct cv_gate_push *p, const uint8_t *body, size_t len)
{
    Cverse__Rpc__PushBatch *b = cverse__rpc__push_batch__unpack(NULL, len, body);
    if (!b) return CV_EPROTO;
    for (size_t i = 0; i < b->n_pushes; i++) {
        const Cverse__Rpc__Push *m = b->pushes[i];
        struct rendered r = {0};
        if (m->broadcast) {
            for (struct client *c = p->clients, *next; c; c = next) {
                next = c->hh.next;
                push__deliver(p, c, m, &r);
            }
        } else {
            struct client *c = NULL;
            HASH_FIND_STR(p->clients, m->client_id, c);
            if (c) push__deliver(p, c, m, &r);
            else p->st.dropped++;
        }
        for (int f = 0; f < 3; f++) free(r.form[f]);
    }
    cverse__rpc__push_batch__free_unpacked(b, NULL);
    return 0;
}

/* ---- clients ---- */

/* The HTTP server ended the stream (peer gone, too slow, server closing): never during our writes. */
static void push__closed(void *data, struct cv_http_stream *st)
{
    (void)st;
    client__remove(data);
}

static bool push__format_json(const char *query)
{
    for (const char *q = query; (q = strstr(q, "format=json")); q++)
        if ((q == query || q[-1] == '&') && (q[11] == 0 || q[11] == '&')) return true;
    return false;
}

/* A new client with a fresh id: the counter, and randomness so that ids are not guessed across restarts. */
static struct client *push__new_client(struct cv_gate_push *p, const char *user)
{
    uint32_t r = 0;
    uv_random(NULL, NULL, &r, sizeof r, 0, NULL);
    char id[CV_GATE_PUSH_ID_MAX];
    int n = snprintf(id, sizeof id, "%s/%" PRIx64 "%08" PRIx32, p->gate_id, ++p->counter, r);
    if (n < 0 || (size_t)n >= sizeof id) return NULL;
    struct client *c = calloc(1, sizeof *c + (size_t)n + 1);
    if (!c) return NULL;
    c->p = p;
    memcpy(c->id, id, (size_t)n + 1);
    snprintf(c->user, sizeof c->user, "%s", user ? user : "");
    return c;
}

void cv_gate_push_sse(struct cv_gate_push *p, struct cv_http_exchange *x, const struct cv_http_request *req,
                      const char *user)
{
    struct client *c = push__new_client(p, user);
    if (!c) {
        cv_http_respond_error(x, CV_STATUS_INTERNAL, "out of memory", NULL);
        return;
    }
    c->json = push__format_json(req->query);
    HASH_ADD_STR(p->clients, id, c);
    if (!c->hh.tbl) {
        free(c);
        cv_http_respond_error(x, CV_STATUS_INTERNAL, "out of memory", NULL);
        return;
    }
    p->st.clients++;
    c->st = cv_http_stream_begin(x, 200, "text/event-stream",
                                 "Cache-Control: no-store\r\nX-Accel-Buffering: no\r\n", push__closed, c);
    if (!c->st) {
        client__remove(c);
        return;
    }
    char ev[CV_GATE_PUSH_ID_MAX + 64];
    int n = snprintf(ev, sizeof ev, "event: register\ndata: {\"clientId\":\"%s\"}\n\n", c->id);
    cv_http_stream_write(c->st, ev, (size_t)n);
    CV_DEBUG("push: client %s registered (%s)", c->id, c->json ? "json" : "any");
}

int cv_gate_push_register(struct cv_gate_push *p, struct cv_rpc_conn *conn, const char *user, char *id,
                          size_t idlen)
{
    for (struct client *c = p->clients; c; c = c->hh.next)
        if (c->conn == conn) { /* registered already: the same id (its user: the latest gate.auth's) */
            snprintf(c->user, sizeof c->user, "%s", user ? user : "");
            snprintf(id, idlen, "%s", c->id);
            return 0;
        }
    struct client *c = push__new_client(p, user);
    if (!c) return CV_ENOMEM;
    HASH_ADD_STR(p->clients, id, c);
    if (!c->hh.tbl) {
        free(c);
        return CV_ENOMEM;
    }
    cv_rpc_conn_ref(conn);
    c->conn = conn;
    p->st.clients++;
    snprintf(id, idlen, "%s", c->id);
    CV_DEBUG("push: client %s registered (native)", c->id);
    return 0;
}

bool cv_gate_push_owned(const struct cv_gate_push *p, const char *client_id, const char *user)
{
    struct client *c = NULL;
    if (p && client_id) HASH_FIND_STR(p->clients, client_id, c);
    return c && user && !strcmp(c->user, user);
}

void cv_gate_push_conn_closed(struct cv_gate_push *p, struct cv_rpc_conn *conn)
{
    for (struct client *c = p->clients, *next; c; c = next) {
        next = c->hh.next;
        if (c->conn == conn) client__remove(c);
    }
}

static void push__heartbeat_cb(uv_timer_t *t)
{
    struct cv_gate_push *p = t->data;
    static const char ev[] = "event: heartbeat\ndata: {}\n\n";
    for (struct client *c = p->clients, *next; c; c = next) {
        next = c->hh.next;
        if (c->st && cv_http_stream_backlog(c->st) < CV_GATE_PUSH_BACKLOG) cv_http_stream_write(c->st, ev, sizeof ev - 1);
    }
}

void cv_gate_push_stats(const struct cv_gate_push *p, struct cv_gate_push_stats *out)
{
    *out = p->st;
}

/* ---- lifecycle ---- */

int cv_gate_push_init(const struct cv_gate_push_opts *o, struct cv_gate_push **out)
{
    struct cv_gate_push *p = calloc(1, sizeof *p);
    if (!p || !(p->gate_id = strdup(o->gate_id))) {
        free(p);
        return CV_ENOMEM;
    }
    p->loop = o->loop;
    p->heartbeat_ms = o->heartbeat_ms ? o->heartbeat_ms : CV_GATE_PUSH_HEARTBEAT_MS;
    p->queue_max = o->queue_max ? o->queue_max : CV_GATE_PUSH_QUEUE;
    uv_timer_init(o->loop, &p->heartbeat);
    uv_timer_init(o->loop, &p->flush);
    p->heartbeat.data = p->flush.data = p;
    p->handles = 2;
    uv_timer_start(&p->heartbeat, push__heartbeat_cb, p->heartbeat_ms, p->heartbeat_ms);
    *out = p;
    return 0;
}

static void push__handle_closed(uv_handle_t *h)
{
    struct cv_gate_push *p = h->data;
    if (--p->handles > 0) return;
    void (*cb)(void *) = p->close_cb;
    void *data = p->close_data;
    free(p->gate_id);
    free(p);
    if (cb) cb(data);
}

void cv_gate_push_close(struct cv_gate_push *p, void (*cb)(void *data), void *data)
{
    p->close_cb = cb;
    p->close_data = data;
    for (struct client *c = p->clients, *next; c; c = next) {
        next = c->hh.next;
        if (c->st) cv_http_stream_end(c->st); /* its on_close is not called */
        client__remove(c);
    }
    uv_close((uv_handle_t *)&p->heartbeat, push__handle_closed);
    uv_close((uv_handle_t *)&p->flush, push__handle_closed);
}
