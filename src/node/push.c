/* A node's pushes to clients (docs/push.md): the host's push hook (cv_object_push / cv_object_broadcast).
 *
 * Happy path: every gate names itself on each connection it keeps to this node (gate.attach, right after
 * connecting: cv_pusher_attach), so the node pushes over the node<->gate connections that exist anyway,
 * to configured gates and to gates found through etcd alike. A push packs the message and maps it to
 * proto3 JSON once, then appends the encoded Push (as a PushBatch's repeated field 1, so the batch body is
 * just the concatenation) to its gate's pending buffer: the gate is the client id's prefix (before its
 * last '/'); a broadcast goes to every attached gate. A 0 ms timer, started by the first push of a loop
 * iteration, writes each gate's buffer as one KIND_EVENT "gate.push" on its connection (earlier once
 * past CV_PUSH_BATCH_BYTES).
 *
 * Failure modes (best effort, never blocking the object): a client id whose gate is not attached (unknown,
 * down, or its connection closed), or a gate whose connection already holds CV_PUSH_BACKLOG_BYTES of
 * unwritten data (a slow or frozen gate): its messages are dropped and counted
 * (cverse_push_dropped_total). A malformed client id is CV_EINVAL; out of memory CV_ENOMEM. */
#include "node/push.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"
#include "net/rpc.h"
#include "pbjson/encode.h"
#include "rpc.pb-c.h"
#include "util/buf.h"
#include "util/log.h"

/* One attached gate and its pending batch. */
struct pgate {
    char id[CV_PUSH_GATE_ID_MAX];
    struct cv_rpc_conn *conn; /* referenced */
    uint8_t *buf;             /* owned: encoded PushBatch fields */
    size_t len, cap;
    size_t n; /* messages in buf */
};

struct cv_pusher {
    uv_loop_t *loop;
    struct pgate *gates; /* attached gates, n_gates of cap */
    size_t n_gates, cap;
    uv_timer_t flush;
    bool closing;
    struct cv_push_counts counts;
    void (*close_cb)(void *data);
    void *close_data;
};

/* ---- sending ---- */

/* Writes gate i's pending batch as one event, or drops it (counted) when its connection is backed up. */
static void pusher__send(struct cv_pusher *p, size_t i)
{
    struct pgate *g = &p->gates[i];
    if (!p->closing && cv_rpc_conn_backlog(g->conn) < CV_PUSH_BACKLOG_BYTES &&
        cv_rpc_send_event(g->conn, "gate.push", g->buf, g->len) == 0)
        p->counts.sent += g->n;
    else
        p->counts.dropped += g->n;
    g->len = g->n = 0;
}

static void pusher__flush_cb(uv_timer_t *t)
{
    struct cv_pusher *p = t->data;
    for (size_t i = 0; i < p->n_gates; i++)
        if (p->gates[i].n) pusher__send(p, i);
}

/* Forgets gate i (its pending messages count as dropped). */
static void pusher__detach(struct cv_pusher *p, size_t i)
{
    p->counts.dropped += p->gates[i].n;
    cv_rpc_conn_unref(p->gates[i].conn);
    free(p->gates[i].buf);
    p->gates[i] = p->gates[--p->n_gates];
}

int cv_pusher_attach(struct cv_pusher *p, struct cv_rpc_conn *conn, const char *gate_id)
{
    if (!*gate_id || strlen(gate_id) >= CV_PUSH_GATE_ID_MAX || strchr(gate_id, '/')) return CV_EINVAL;
    if (p->closing) return CV_EUNAVAIL;
    size_t i = 0;
    while (i < p->n_gates && strcmp(p->gates[i].id, gate_id) != 0) i++;
    if (i < p->n_gates) { /* the gate reconnected, or one of its connections to us named it again */
        if (p->gates[i].conn == conn) return 0;
        if (p->gates[i].n) pusher__send(p, i); /* what was queued goes out on the older connection */
        cv_rpc_conn_unref(p->gates[i].conn);
    } else {
        if (p->n_gates == p->cap && cv_array_grow((void **)&p->gates, &p->cap, sizeof *p->gates, 4))
            return CV_ENOMEM;
        p->gates[p->n_gates++] = (struct pgate){0};
        snprintf(p->gates[i].id, sizeof p->gates[i].id, "%s", gate_id);
    }
    cv_rpc_conn_ref(conn);
    p->gates[i].conn = conn;
    return 0;
}

void cv_pusher_conn_closed(struct cv_pusher *p, struct cv_rpc_conn *conn)
{
    for (size_t i = p->n_gates; i-- > 0;)
        if (p->gates[i].conn == conn) pusher__detach(p, i);
}

/* ---- queueing ---- */

/* Appends the encoded push (field 1 of PushBatch: tag, length, bytes) to gate i's buffer; a buffer past
 * CV_PUSH_BATCH_BYTES goes now (frames have a size limit). */
static int pusher__append(struct cv_pusher *p, size_t i, const Cverse__Rpc__Push *m)
{
    struct pgate *g = &p->gates[i];
    if (g->len >= CV_PUSH_BATCH_BYTES) pusher__send(p, i);
    size_t n = cverse__rpc__push__get_packed_size(m), want = g->len + 1 + 10 + n;
    if (want > g->cap) {
        size_t cap = g->cap ? g->cap : 1024;
        while (cap < want) cap *= 2;
        uint8_t *nb = realloc(g->buf, cap);
        if (!nb) return CV_ENOMEM;
        g->buf = nb;
        g->cap = cap;
    }
    uint8_t *d = g->buf + g->len;
    *d++ = 0x0a;
    for (size_t v = n; ; v >>= 7) {
        *d++ = (uint8_t)(v & 0x7f) | (v >= 0x80 ? 0x80 : 0);
        if (v < 0x80) break;
    }
    d += cverse__rpc__push__pack(m, d);
    g->len = (size_t)(d - g->buf);
    g->n++;
    if (!uv_is_active((uv_handle_t *)&p->flush)) uv_timer_start(&p->flush, pusher__flush_cb, 0, 0);
    return 0;
}

/* The index of the gate named by client_id's prefix, or n_gates if none is attached; CV_EINVAL for a
 * malformed id. */
static int pusher__gate(const struct cv_pusher *p, const char *client_id, size_t *out)
{
    const char *slash = strrchr(client_id, '/');
    if (!slash || slash == client_id || !slash[1]) return CV_EINVAL;
    size_t glen = (size_t)(slash - client_id);
    *out = p->n_gates;
    for (size_t i = 0; i < p->n_gates; i++)
        if (strlen(p->gates[i].id) == glen && !memcmp(p->gates[i].id, client_id, glen)) *out = i;
    return 0;
}

/* msg's packed bytes and compact proto3 JSON (with its zero-valued fields, as calls answer) into m. */
static int pusher__encode(const ProtobufCMessage *msg, Cverse__Rpc__Push *m)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(len ? len : 1);
    json_t *j = NULL;
    char *text = NULL;
    if (!buf) return CV_ENOMEM;
    protobuf_c_message_pack(msg, buf);
    int rv = cv_pbjson_to_json_ex(msg, CV_PBJSON_EMIT_DEFAULTS, &j, NULL, 0);
    if (rv == 0 && !(text = json_dumps(j, JSON_COMPACT))) rv = CV_ENOMEM;
    json_decref(j);
    if (rv) {
        free(buf);
        return rv;
    }
    m->type = (char *)msg->descriptor->name;
    m->payload = (ProtobufCBinaryData){len, buf};
    m->json = text;
    return 0;
}

int cv_pusher_push(struct cv_pusher *p, const char *client_id, const ProtobufCMessage *msg)
{
    size_t gate = 0;
    if (!msg || (client_id && pusher__gate(p, client_id, &gate))) return CV_EINVAL;
    if (p->closing) return CV_EUNAVAIL;
    Cverse__Rpc__Push m = CVERSE__RPC__PUSH__INIT;
    int rv = pusher__encode(msg, &m);
    if (rv) return rv;
    m.client_id = client_id ? (char *)client_id : "";
    m.broadcast = client_id == NULL;
    if (client_id && gate == p->n_gates) p->counts.dropped++; /* no such gate attached */
    else if (client_id) rv = pusher__append(p, gate, &m);
    for (size_t i = 0; !client_id && !rv && i < p->n_gates; i++) rv = pusher__append(p, i, &m);
    free(m.payload.data);
    free(m.json);
    return rv;
}

void cv_pusher_counts(const struct cv_pusher *p, struct cv_push_counts *out)
{
    *out = p->counts;
}

/* ---- lifecycle ---- */

int cv_pusher_init(uv_loop_t *loop, struct cv_pusher **out)
{
    struct cv_pusher *p = calloc(1, sizeof *p);
    if (!p) return CV_ENOMEM;
    p->loop = loop;
    uv_timer_init(loop, &p->flush);
    p->flush.data = p;
    *out = p;
    return 0;
}

static void pusher__timer_closed(uv_handle_t *h)
{
    struct cv_pusher *p = h->data;
    void (*cb)(void *) = p->close_cb;
    void *data = p->close_data;
    free(p->gates);
    free(p);
    if (cb) cb(data);
}

void cv_pusher_close(struct cv_pusher *p, void (*cb)(void *data), void *data)
{
    p->closing = true;
    p->close_cb = cb;
    p->close_data = data;
    while (p->n_gates) pusher__detach(p, p->n_gates - 1);
    uv_close((uv_handle_t *)&p->flush, pusher__timer_closed);
}
