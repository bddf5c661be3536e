/* A node's pushes to clients (docs/push.md): the host's push hook (cv_object_push / cv_object_broadcast).
 *
 * Happy path: a push packs the message and maps it to proto3 JSON once, then appends the encoded Push
 * (as a PushBatch's repeated field 1, so the batch body is just the concatenation) to its gate's pending
 * buffer: the gate is the client id's prefix (before its last '/'), a broadcast goes to every configured
 * gate. A 0 ms timer, started by the first push of a loop iteration, sends each gate's buffer as one
 * gate.push (earlier once past CV_PUSH_BATCH_BYTES) over a pooled connection (net/peers.h, indexed like
 * cfg->gates; all dialed at init).
 *
 * Failure modes (best effort, never blocking the object): a client id whose gate is not configured, a
 * gate whose connection is down when the batch goes, one with CV_PUSH_INFLIGHT_MAX batches unanswered, or
 * a batch the gate fails (or does not answer within CV_PUSH_TIMEOUT_MS): its messages are dropped and
 * counted (cverse_push_dropped_total). A malformed client id is CV_EINVAL; out of memory CV_ENOMEM. */
#include "node/push.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"
#include "net/peers.h"
#include "pbjson/encode.h"
#include "rpc.pb-c.h"
#include "util/buf.h"
#include "util/log.h"

/* One gate's pending batch. */
struct pgate {
    uint8_t *buf; /* owned: encoded PushBatch fields */
    size_t len, cap;
    size_t n;        /* messages in buf */
    size_t inflight; /* batches sent, not answered */
};

struct cv_pusher {
    uv_loop_t *loop;
    const struct cv_config *cfg; /* borrowed */
    struct cv_peers *peers;      /* by gate index */
    struct pgate *gates;         /* cfg->n_gates */
    uv_timer_t flush;
    bool closing;
    int parts; /* the timer and the pool until closed */
    size_t sending; /* batch callbacks still owed (they reference p) */
    struct cv_push_counts counts;
    void (*close_cb)(void *data);
    void *close_data;
};

/* A batch in flight. */
struct psend {
    struct cv_pusher *p;
    size_t gate, n;
};

/* ---- lifetime ---- */

static void pusher__settle(struct cv_pusher *p)
{
    if (!p->closing || p->parts > 0 || p->sending > 0) return;
    void (*cb)(void *) = p->close_cb;
    void *data = p->close_data;
    for (size_t i = 0; i < p->cfg->n_gates; i++) free(p->gates[i].buf);
    free(p->gates);
    free(p);
    if (cb) cb(data);
}

static void pusher__part_closed(void *data)
{
    struct cv_pusher *p = data;
    p->parts--;
    pusher__settle(p);
}

static void pusher__timer_closed(uv_handle_t *h)
{
    pusher__part_closed(h->data);
}

/* ---- sending ---- */

static void pusher__sent(void *data, int status, const char *error, const uint8_t *body, size_t len)
{
    (void)body;
    (void)len;
    struct psend *s = data;
    struct cv_pusher *p = s->p;
    p->gates[s->gate].inflight--;
    if (status == 0) {
        p->counts.sent += s->n;
    } else {
        p->counts.dropped += s->n;
        CV_DEBUG("push: %zu messages to gate %s dropped: %s", s->n, p->cfg->gates[s->gate].id, error);
    }
    p->sending--;
    free(s);
    pusher__settle(p);
}

/* Sends gate i's pending batch, or drops it (counted) when the gate is unreachable or behind. */
static void pusher__send(struct cv_pusher *p, size_t i)
{
    struct pgate *g = &p->gates[i];
    struct cv_rpc_client *cli = p->closing ? NULL : cv_peers_client_up(p->peers, i);
    struct psend *s = cli && g->inflight < CV_PUSH_INFLIGHT_MAX ? malloc(sizeof *s) : NULL;
    if (s) {
        *s = (struct psend){p, i, g->n};
        if (cv_rpc_call(cli, "gate.push", g->buf, g->len, CV_PUSH_TIMEOUT_MS, pusher__sent, s) == 0) {
            g->inflight++;
            p->sending++;
        } else {
            free(s);
            s = NULL;
        }
    }
    if (!s) p->counts.dropped += g->n;
    g->len = g->n = 0;
}

static void pusher__flush_cb(uv_timer_t *t)
{
    struct cv_pusher *p = t->data;
    for (size_t i = 0; i < p->cfg->n_gates; i++)
        if (p->gates[i].n) pusher__send(p, i);
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

/* The index of the gate named by client_id's prefix, or n_gates if none is configured; CV_EINVAL for a
 * malformed id. */
static int pusher__gate(const struct cv_pusher *p, const char *client_id, size_t *out)
{
    const char *slash = strrchr(client_id, '/');
    if (!slash || slash == client_id || !slash[1]) return CV_EINVAL;
    size_t glen = (size_t)(slash - client_id);
    *out = p->cfg->n_gates;
    for (size_t i = 0; i < p->cfg->n_gates; i++)
        if (strlen(p->cfg->gates[i].id) == glen && !memcmp(p->cfg->gates[i].id, client_id, glen)) *out = i;
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
    if (client_id && gate == p->cfg->n_gates) p->counts.dropped++; /* not a gate of ours */
    else if (client_id) rv = pusher__append(p, gate, &m);
    for (size_t i = 0; !client_id && !rv && i < p->cfg->n_gates; i++) rv = pusher__append(p, i, &m);
    free(m.payload.data);
    free(m.json);
    return rv;
}

void cv_pusher_counts(const struct cv_pusher *p, struct cv_push_counts *out)
{
    *out = p->counts;
}

/* ---- lifecycle ---- */

int cv_pusher_init(uv_loop_t *loop, const struct cv_config *cfg, struct cv_pusher **out)
{
    struct cv_pusher *p = calloc(1, sizeof *p);
    const char **addrs = calloc(cfg->n_gates ? cfg->n_gates : 1, sizeof *addrs);
    if (!p || !addrs || !(p->gates = calloc(cfg->n_gates ? cfg->n_gates : 1, sizeof *p->gates))) goto err;
    for (size_t i = 0; i < cfg->n_gates; i++) addrs[i] = cfg->gates[i].advertise_addr;
    /* A gate that is down is redialed every 200 ms (not the nodes' 50): its pushes drop meanwhile anyway. */
    struct cv_peers_opts po = {.loop = loop, .addrs = addrs, .n = cfg->n_gates, .self = cfg->n_gates,
                               .reconnect_ms = 200};
    if (cv_peers_init(&po, &p->peers)) goto err;
    free(addrs);
    p->loop = loop;
    p->cfg = cfg;
    uv_timer_init(loop, &p->flush);
    p->flush.data = p;
    for (size_t i = 0; i < cfg->n_gates; i++) cv_peers_client(p->peers, i); /* dial now: pushes find them up */
    *out = p;
    return 0;

err:
    if (p) free(p->gates);
    free(p);
    free(addrs);
    return CV_ENOMEM;
}

void cv_pusher_close(struct cv_pusher *p, void (*cb)(void *data), void *data)
{
    p->closing = true;
    p->close_cb = cb;
    p->close_data = data;
    for (size_t i = 0; i < p->cfg->n_gates; i++) {
        p->counts.dropped += p->gates[i].n;
        p->gates[i].len = p->gates[i].n = 0;
    }
    p->parts = 2;
    uv_close((uv_handle_t *)&p->flush, pusher__timer_closed);
    cv_peers_close(p->peers, pusher__part_closed, p); /* fails batches in flight: their callbacks run */
}
