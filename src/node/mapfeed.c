/* The shard-map feed to subscribers (gates).
 *
 * Happy path: catalog.subscribe is answered with the current ShardMap (owners, nodes, leader, term) and
 * the connection is remembered; after changes of nodes, owners or leader, each subscriber gets a
 * KIND_EVENT "catalog.shard_map" with the full map, at most one per 50 ms; between pushes a small
 * "catalog.heartbeat" every CV_MAPFEED_HEARTBEAT_MS while the node is not fenced, so that a gate notices a
 * stopped, frozen or fenced subscription node and subscribes elsewhere.
 * Failure modes: an undecodable request -> CV_EPROTO; out of memory -> CV_ENOMEM (the subscription is not
 * recorded); a connection found closed while pushing is dropped. */
#include "node/mapfeed.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "cverse/error.h"
#include "rpc.pb-c.h"
#include "util/be.h"
#include "util/buf.h"
#include "util/log.h"

void cv_mapfeed_init(struct cv_mapfeed *f, struct cv_hctx *x)
{
    *f = (struct cv_mapfeed){.x = x};
    uv_timer_init(x->loop, &f->push_timer);
    f->push_timer.data = f;
}

static const char *mapfeed__role(int role)
{
    switch (role) {
    case CVERSE__CATALOG__ROLE__ROLE_VOTER: return "voter";
    case CVERSE__CATALOG__ROLE__ROLE_STANDBY: return "standby";
    case CVERSE__CATALOG__ROLE__ROLE_SPARE: return "spare";
    default: return "none";
    }
}

int cv_mapfeed_pack(struct cv_catalog *cat, uint32_t shards, const struct cv_consensus_status *st,
                    uint8_t **out, size_t *len)
{
    size_t nn = cv_catalog_node_count(cat);
    Cverse__Rpc__ShardMap m = CVERSE__RPC__SHARD_MAP__INIT;
    m.applied_index = cv_catalog_applied_index(cat);
    m.shards = shards;
    m.leader = (char *)st->leader_id;
    m.term = st->term;
    m.owners = malloc((shards ? shards : 1) * sizeof *m.owners);
    Cverse__Rpc__NodeAddr *addrs = calloc(nn ? nn : 1, sizeof *addrs);
    m.nodes = calloc(nn ? nn : 1, sizeof *m.nodes);
    int rv = CV_ENOMEM;
    if (!m.owners || !addrs || !m.nodes) goto out;
    m.n_owners = shards;
    for (uint32_t s = 0; s < shards; s++) {
        const char *o = cv_catalog_shard_owner(cat, s, NULL);
        m.owners[s] = (char *)(o ? o : "");
    }
    m.n_nodes = nn;
    for (size_t i = 0; i < nn; i++) {
        const struct cv_catalog_node *cn = cv_catalog_node_at(cat, i);
        cverse__rpc__node_addr__init(&addrs[i]);
        addrs[i].id = (char *)cn->id;
        addrs[i].advertise_addr = (char *)cn->advertise_addr;
        addrs[i].alive = cn->alive;
        addrs[i].role = (char *)mapfeed__role(cn->role);
        addrs[i].shards = cn->shards_owned;
        addrs[i].http_addr = (char *)cn->http_addr;
        m.nodes[i] = &addrs[i];
    }
    *len = cverse__rpc__shard_map__get_packed_size(&m);
    if ((*out = malloc(*len ? *len : 1))) {
        cverse__rpc__shard_map__pack(&m, *out);
        rv = 0;
    }
out:
    free(m.owners);
    free(m.nodes);
    free(addrs);
    return rv;
}

static void mapfeed__drop(struct cv_mapfeed *h, size_t i)
{
    cv_rpc_conn_unref(h->subs[i]);
    h->subs[i] = h->subs[--h->n_subs];
}

/* The current map of the host's catalog and consensus. */
static int mapfeed__pack(struct cv_mapfeed *f, uint8_t **out, size_t *len)
{
    struct cv_consensus_status st;
    cv_consensus_status(f->x->cons, &st);
    return cv_mapfeed_pack(f->x->cat, f->x->cfg->shards, &st, out, len);
}

static void mapfeed__push(uv_timer_t *t)
{
    struct cv_mapfeed *h = t->data;
    h->last_push_ms = h->last_beat_ms = cv_mono_ms();
    if (h->n_subs == 0 || h->x->closing) return;
    uint8_t *buf;
    size_t len;
    if (mapfeed__pack(h, &buf, &len)) {
        CV_WARN("cannot build the shard map for subscribers: out of memory");
        return;
    }
    for (size_t i = h->n_subs; i-- > 0;) {
        int rv = cv_rpc_send_event(h->subs[i], "catalog.shard_map", buf, len);
        if (rv == CV_ECLOSED) mapfeed__drop(h, i);
        else if (rv) CV_WARN("shard map push failed: %s", cv_strerror(rv));
    }
    free(buf);
}

void cv_mapfeed_tick(struct cv_mapfeed *h)
{
    uint64_t now = cv_mono_ms();
    if (h->n_subs == 0 || h->x->closing || h->x->fenced || now - h->last_beat_ms < CV_MAPFEED_HEARTBEAT_MS) return;
    h->last_beat_ms = now;
    uint8_t body[8];
    cv_be64_put(body, cv_catalog_applied_index(h->x->cat));
    for (size_t i = h->n_subs; i-- > 0;)
        if (cv_rpc_send_event(h->subs[i], "catalog.heartbeat", body, sizeof body) == CV_ECLOSED) mapfeed__drop(h, i);
}

unsigned cv_mapfeed_next_ms(const struct cv_mapfeed *h, uint64_t now)
{
    if (h->n_subs == 0 || h->x->closing || h->x->fenced) return UINT_MAX;
    uint64_t due = h->last_beat_ms + CV_MAPFEED_HEARTBEAT_MS;
    return due > now ? (unsigned)(due - now) : 0;
}

void cv_mapfeed_changed(struct cv_mapfeed *h)
{
    if (h->x->closing || uv_is_active((uv_handle_t *)&h->push_timer)) return;
    uint64_t now = cv_mono_ms(), next = h->last_push_ms + CV_HOST_PUSH_MIN_MS;
    uv_timer_start(&h->push_timer, mapfeed__push, next > now ? next - now : 0, 0);
}

void cv_mapfeed_subscribe(struct cv_mapfeed *h, struct cv_rpc_conn *conn, uint64_t id, const uint8_t *body,
                             size_t len)
{
    Cverse__Rpc__SubscribeRequest *req = cverse__rpc__subscribe_request__unpack(NULL, len, body);
    if (!req) {
        cv_rpc_respond(conn, id, CV_EPROTO, "undecodable SubscribeRequest", NULL, 0);
        return;
    }
    bool known = false;
    for (size_t i = 0; i < h->n_subs; i++) known |= h->subs[i] == conn;
    if (!known && cv_array_grow((void **)&h->subs, &h->cap_subs, h->n_subs + 1, sizeof *h->subs)) goto nomem;
    uint8_t *buf;
    size_t n;
    if (mapfeed__pack(h, &buf, &n)) goto nomem;
    if (!known) {
        cv_rpc_conn_ref(conn);
        h->subs[h->n_subs++] = conn;
        cv_hctx_wake(h->x); /* its heartbeats start */
        CV_INFO("%s subscribed to the shard map", req->gate_id[0] ? req->gate_id : "a client");
    }
    cv_rpc_respond(conn, id, 0, NULL, buf, n);
    free(buf);
    cverse__rpc__subscribe_request__free_unpacked(req, NULL);
    return;

nomem:
    cv_rpc_respond(conn, id, CV_ENOMEM, cv_strerror(CV_ENOMEM), NULL, 0);
    cverse__rpc__subscribe_request__free_unpacked(req, NULL);
}

void cv_mapfeed_conn_closed(struct cv_mapfeed *h, struct cv_rpc_conn *conn)
{
    for (size_t i = 0; i < h->n_subs; i++) {
        if (h->subs[i] != conn) continue;
        mapfeed__drop(h, i);
        return;
    }
}

/* Compared only with the previous value in this process: never stored or sent. */
uint64_t cv_mapfeed_nodes_signature(struct cv_catalog *cat)
{
    uint64_t x = CV_FNV64_OFFSET;
    for (size_t i = 0; i < cv_catalog_node_count(cat); i++) {
        const struct cv_catalog_node *cn = cv_catalog_node_at(cat, i);
        uint32_t parts[3] = {cn->alive, (uint32_t)cn->role, cn->shards_owned};
        x = cv_fnv1a64_more(x, cn->id, strlen(cn->id) + 1);
        x = cv_fnv1a64_more(x, cn->advertise_addr, strlen(cn->advertise_addr) + 1);
        x = cv_fnv1a64_more(x, cn->http_addr, strlen(cn->http_addr) + 1);
        x = cv_fnv1a64_more(x, parts, sizeof parts);
    }
    return x;
}

void cv_mapfeed_check_nodes(struct cv_mapfeed *f)
{
    uint64_t sig = cv_mapfeed_nodes_signature(f->x->cat);
    if (sig == f->nodes_sig) return;
    f->nodes_sig = sig;
    cv_mapfeed_changed(f);
}

void cv_mapfeed_close(struct cv_mapfeed *f)
{
    while (f->n_subs) mapfeed__drop(f, f->n_subs - 1);
    f->x->parts++;
    uv_close((uv_handle_t *)&f->push_timer, cv_hctx_handle_closed);
}
