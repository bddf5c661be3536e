/* Gate routing: applying shard maps, deciding the target node of an object id, the retry backoff.
 *
 * Happy path: a serialized ShardMap replaces the current one when its applied_index is newer;
 * cv_gate_route parses the id's placement and answers "send to the owner of its shard" (or to the node
 * it is pinned to). Failure modes: a map that does not decode or is inconsistent is refused (the gate
 * keeps the previous one); an id without a usable owner gives WAIT (the caller retries with backoff
 * until its deadline), an id that can never be routed gives FAIL. Pure: no I/O, no clock. */
#include "gate/route.h"

#include <stdio.h>
#include <string.h>

#include "core/hash.h"
#include "cverse/error.h"

int cv_gate_map_apply(struct cv_gate_map *m, const uint8_t *buf, size_t len)
{
    Cverse__Rpc__ShardMap *pb = cverse__rpc__shard_map__unpack(NULL, len, buf);
    if (!pb) return CV_EPROTO;
    if (pb->shards == 0 || pb->n_owners != pb->shards) {
        cverse__rpc__shard_map__free_unpacked(pb, NULL);
        return CV_EPROTO;
    }
    if (m->pb && pb->applied_index <= m->pb->applied_index) {
        cverse__rpc__shard_map__free_unpacked(pb, NULL);
        return 0;
    }
    cv_gate_map_free(m);
    m->pb = pb;
    return 1;
}

void cv_gate_map_free(struct cv_gate_map *m)
{
    if (m->pb) cverse__rpc__shard_map__free_unpacked(m->pb, NULL);
    m->pb = NULL;
}

uint64_t cv_gate_map_index(const struct cv_gate_map *m)
{
    return m->pb ? m->pb->applied_index : 0;
}

uint32_t cv_gate_map_unassigned(const struct cv_gate_map *m)
{
    if (!m->pb) return UINT32_MAX;
    uint32_t n = 0;
    for (size_t i = 0; i < m->pb->n_owners; i++)
        if (!m->pb->owners[i][0]) n++;
    return n;
}

const Cverse__Rpc__NodeAddr *cv_gate_map_node(const struct cv_gate_map *m, const char *id, size_t len)
{
    if (!m->pb) return NULL;
    for (size_t i = 0; i < m->pb->n_nodes; i++) {
        const char *nid = m->pb->nodes[i]->id;
        if (strlen(nid) == len && memcmp(nid, id, len) == 0) return m->pb->nodes[i];
    }
    return NULL;
}

static void route__set(struct cv_route *out, enum cv_route_action a, int err, const char *fmt, const char *arg,
                       size_t arglen)
{
    out->action = a;
    out->err = err;
    snprintf(out->why, sizeof out->why, fmt, (int)(arglen > 100 ? 100 : arglen), arg);
}

static bool route__config_has(const struct cv_config *cfg, const char *id, size_t len)
{
    for (size_t i = 0; i < cfg->n_nodes; i++)
        if (strlen(cfg->nodes[i].id) == len && memcmp(cfg->nodes[i].id, id, len) == 0) return true;
    return false;
}

/* An id pinned to a node: the node, if the map lists it. */
static void route__pinned(const struct cv_gate_map *m, const struct cv_config *cfg, const struct cv_placement *p,
                          struct cv_route *out)
{
    bool known = route__config_has(cfg, p->node, p->node_len) || cv_gate_map_node(m, p->node, p->node_len);
    if (!known || p->node_len >= sizeof out->node) { /* a node that joined later: in the map */
        route__set(out, CV_ROUTE_FAIL, CV_ENOTFOUND, "object id pinned to node \"%.*s\", which is not in the "
                   "cluster config", p->node, p->node_len);
        return;
    }
    if (!cv_gate_map_node(m, p->node, p->node_len)) {
        route__set(out, CV_ROUTE_WAIT, CV_EUNAVAIL, "node \"%.*s\" has not joined the cluster yet", p->node,
                   p->node_len);
        return;
    }
    memcpy(out->node, p->node, p->node_len);
    out->node[p->node_len] = '\0';
}

void cv_gate_route(const struct cv_gate_map *m, const struct cv_config *cfg, const char *id, struct cv_route *out)
{
    memset(out, 0, sizeof *out);
    uint32_t shards = m->pb ? m->pb->shards : cfg->shards;
    struct cv_placement p;
    int rv = cv_placement_parse(id, shards, &p);
    if (rv != 0) {
        if (rv == CV_ERANGE)
            snprintf(out->why, sizeof out->why, "object id \"%.100s\": shard out of range (the cluster has %u "
                     "shards)", id, (unsigned)shards);
        else
            snprintf(out->why, sizeof out->why, "object id \"%.100s\" is malformed (expected a name, "
                     "\"shard#N/name\" or \"<node-id>/name\")", id);
        out->action = CV_ROUTE_FAIL;
        out->err = CV_EINVAL;
        return;
    }
    out->shard = p.shard;
    if (p.kind == CV_PLACE_NODE) {
        route__pinned(m, cfg, &p, out);
        return;
    }
    if (!m->pb) {
        out->action = CV_ROUTE_WAIT;
        out->err = CV_EUNAVAIL;
        snprintf(out->why, sizeof out->why, "no shard map yet (not subscribed to any node)");
        return;
    }
    const char *owner = m->pb->owners[p.shard];
    size_t len = strlen(owner);
    if (len == 0 || len >= sizeof out->node) {
        out->action = CV_ROUTE_WAIT;
        out->err = CV_EUNAVAIL;
        snprintf(out->why, sizeof out->why, "shard %u has no owner", (unsigned)p.shard);
        return;
    }
    memcpy(out->node, owner, len + 1);
}

bool cv_gate_may_resend(const struct cv_gate_map *m, const struct cv_config *cfg, const char *id,
                        const char *sent_to)
{
    const Cverse__Rpc__NodeAddr *na = cv_gate_map_node(m, sent_to, strlen(sent_to));
    if (!na || na->alive) return false;
    struct cv_route r;
    cv_gate_route(m, cfg, id, &r);
    if (r.action == CV_ROUTE_FAIL) return false;
    return r.action == CV_ROUTE_WAIT || strcmp(r.node, sent_to) != 0;
}

unsigned cv_gate_backoff_ms(unsigned attempt, double jitter, uint64_t remaining_ms)
{
    uint64_t d = CV_GATE_BACKOFF_BASE_MS;
    for (unsigned i = 0; i < attempt && d < CV_GATE_BACKOFF_STEP_CAP_MS; i++) d *= 2;
    if (d > CV_GATE_BACKOFF_STEP_CAP_MS) d = CV_GATE_BACKOFF_STEP_CAP_MS;
    if (jitter < 0) jitter = 0;
    if (jitter >= 1) jitter = 0.999;
    d += (uint64_t)(jitter * 1.5 * (double)d);
    return (unsigned)(d < remaining_ms ? d : remaining_ms);
}
