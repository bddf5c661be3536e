/* The inspector's read API documents. Everything comes from one model (one poll round), so a document
 * is consistent with itself. Object lists are capped (MAX_OBJECTS) so a large cluster cannot make a
 * response unbounded; the counts stay exact. */
#include "inspector/api.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/hash.h"
#include "cverse/error.h"

#define MAX_OBJECTS 5000
#define STATE_EVENTS 200

static json_t *node_json(const struct cv_insp_model *m, size_t i)
{
    const struct cv_insp_node *n = &m->nodes[i];
    return json_pack("{s:s,s:s,s:s,s:b,s:b,s:b,s:b,s:b,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:b,s:s,s:s,s:I,s:b}",
                     "id", n->cfg->id, "http_addr", n->cfg->http_addr, "advertise_addr", n->cfg->advertise_addr,
                     "up", n->up, "reachable", n->reachable, "alive", n->alive, "registered", n->registered,
                     "draining", n->draining,
                     "role", n->role, "state", n->state, "term", (json_int_t)n->term, "commit_index",
                     (json_int_t)n->commit, "applied_index", (json_int_t)n->applied, "lease_expiry_ms",
                     (json_int_t)n->lease_expiry_ms, "shards", (json_int_t)n->shards, "objects",
                     (json_int_t)n->n_objects, "ready", n->ready, "ready_reason", n->reason, "error", n->error,
                     "last_seen_ms", (json_int_t)n->last_seen_ms, "leader", m->leader == (int)i);
}

static json_t *nodes_json(const struct cv_insp_model *m)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < m->n_nodes; i++) json_array_append_new(a, node_json(m, i));
    return a;
}

static json_t *gates_json(const struct cv_insp_model *m)
{
    json_t *a = json_array();
    for (size_t g = 0; a && g < m->cfg->n_gates; g++) {
        const struct cv_gate_cfg *c = &m->cfg->gates[g];
        json_array_append_new(a, json_pack("{s:s,s:s,s:s}", "id", c->id, "http_addr", c->http_addr,
                                           "advertise_addr", c->advertise_addr));
    }
    return a;
}

static json_t *objects_json(const struct cv_insp_model *m)
{
    json_t *a = json_array();
    size_t n = 0;
    for (size_t i = 0; a && i < m->n_nodes; i++) {
        const struct cv_insp_node *nd = &m->nodes[i];
        for (size_t j = 0; j < nd->n_objects && n < MAX_OBJECTS; j++, n++) {
            const struct cv_insp_object *o = &nd->objects[j];
            json_array_append_new(a, json_pack("{s:s,s:s,s:s,s:I}", "id", o->id, "type", o->type, "node",
                                               nd->cfg->id, "shard", (json_int_t)o->shard));
        }
    }
    return a;
}

static json_t *node_or_null(const struct cv_insp_model *m, int i)
{
    const char *id = cv_insp_model_node_id(m, i);
    return id ? json_string(id) : json_null();
}

static json_t *map_json(const struct cv_insp_model *m)
{
    json_t *owners = json_array(), *epochs = json_array(), *objects = json_array(), *targets = json_array(),
           *pinned = json_array();
    for (uint32_t s = 0; m->has_map && owners && epochs && objects && targets && pinned && s < m->n_shards; s++) {
        json_array_append_new(owners, node_or_null(m, m->owner[s]));
        json_array_append_new(epochs, json_integer((json_int_t)m->epoch[s]));
        json_array_append_new(objects, json_integer(m->objects_per_shard[s]));
        json_array_append_new(targets, node_or_null(m, m->target[s]));
        json_array_append_new(pinned, json_boolean(m->pinned[s]));
    }
    return json_pack("{s:b,s:I,s:o*,s:o*,s:o*,s:o*,s:o*}", "known", m->has_map, "applied_index",
                     (json_int_t)m->map_applied, "owners", owners, "epochs", epochs, "objects", objects, "targets",
                     targets, "pinned", pinned);
}

json_t *cv_insp_api_state(const struct cv_insp_model *m, const struct cv_insp_events *ev,
                          const struct cv_insp_stats *stats)
{
    size_t up = 0;
    for (size_t i = 0; i < m->n_nodes; i++) up += m->nodes[i].up;
    json_t *st = json_pack("{s:I,s:I,s:b,s:s?,s:I,s:I,s:I,s:I,s:o*,s:o*,s:o*,s:o*,s:o*}", "last_event_id",
                     (json_int_t)cv_insp_events_last(ev), "time_ms", (json_int_t)m->time_ms, "ready", m->have,
                     "leader", cv_insp_model_node_id(m, m->leader), "term", (json_int_t)m->term, "shards",
                     (json_int_t)m->n_shards, "nodes_up", (json_int_t)up, "nodes_total", (json_int_t)m->n_nodes,
                     "shard_map", map_json(m), "nodes", nodes_json(m), "gates", gates_json(m), "objects",
                     objects_json(m), "events", cv_insp_events_tail(ev, STATE_EVENTS));
    if (st) json_object_set_new(st, "stats", stats ? cv_insp_stats_json(stats, m) : json_null());
    return st;
}

json_t *cv_insp_api_shards(const struct cv_insp_model *m)
{
    json_t *shards = json_array(), *nodes = json_array();
    for (uint32_t s = 0; m->has_map && shards && s < m->n_shards; s++) {
        const char *o = cv_insp_model_node_id(m, m->owner[s]), *t = cv_insp_model_node_id(m, m->target[s]);
        /* current_node: the owner while it is up (it serves the shard); "" while nobody does.
         * target_node: the owner an operator chose, else the owner (where the shard is meant to be). */
        const char *cur = o && m->nodes[m->owner[s]].up ? o : "";
        json_t *flags = json_array();
        if (!o && flags) json_array_append_new(flags, json_string("unassigned"));
        if (m->pinned[s] && flags) json_array_append_new(flags, json_string("pinned"));
        json_array_append_new(shards, json_pack("{s:I,s:s,s:s,s:I,s:o*}", "shard_id", (json_int_t)s, "target_node",
                                                t ? t : o ? o : "", "current_node", cur, "object_count",
                                                (json_int_t)m->objects_per_shard[s], "flags", flags));
    }
    for (size_t i = 0; nodes && i < m->n_nodes; i++) json_array_append_new(nodes, json_string(m->nodes[i].cfg->id));
    return json_pack("{s:o*,s:o*}", "shards", shards, "nodes", nodes);
}

static void link(json_t *links, const char *src, const char *dst, const char *kind)
{
    json_array_append_new(links, json_pack("{s:s,s:s,s:s}", "source", src, "target", dst, "kind", kind));
}

json_t *cv_insp_api_graph(const struct cv_insp_model *m)
{
    json_t *nodes = json_array(), *gates = gates_json(m), *links = json_array();
    for (size_t i = 0; nodes && i < m->n_nodes; i++) {
        const struct cv_insp_node *n = &m->nodes[i];
        json_array_append_new(nodes, json_pack("{s:s,s:b,s:I,s:I,s:b}", "id", n->cfg->id, "up", n->up, "objects",
                                               (json_int_t)n->n_objects, "shards", (json_int_t)n->shards,
                                               "leader", m->leader == (int)i));
    }
    for (size_t i = 0; links && i < m->n_nodes; i++) {
        if (!m->nodes[i].up) continue;
        for (size_t g = 0; g < m->cfg->n_gates; g++) link(links, m->cfg->gates[g].id, m->nodes[i].cfg->id, "gate");
        for (size_t j = i + 1; j < m->n_nodes; j++)
            if (m->nodes[j].up) link(links, m->nodes[i].cfg->id, m->nodes[j].cfg->id, "peer");
    }
    return json_pack("{s:o*,s:o*,s:o*,s:o*}", "nodes", nodes, "gates", gates, "objects", objects_json(m), "links",
                     links);
}

/* The node holding the active object (type "" matches any), its type; CV_INSP_NO_NODE if none. */
static int find_active(const struct cv_insp_model *m, const char *type, const char *id, const char **found_type)
{
    for (size_t i = 0; i < m->n_nodes; i++) {
        const struct cv_insp_node *n = &m->nodes[i];
        for (size_t j = 0; n->reachable && j < n->n_objects; j++) {
            const struct cv_insp_object *o = &n->objects[j];
            if (strcmp(o->id, id) || (type[0] && strcmp(o->type, type))) continue;
            *found_type = o->type;
            return (int)i;
        }
    }
    return CV_INSP_NO_NODE;
}

int cv_insp_api_state_node(const struct cv_insp_model *m, const char *type, const char *id, int *node)
{
    struct cv_placement p;
    if (cv_placement_parse(id, m->n_shards, &p) != 0) return CV_EINVAL;
    const char *atype = NULL;
    *node = find_active(m, type, id, &atype);
    if (*node != CV_INSP_NO_NODE) return 0;
    if (p.kind == CV_PLACE_NODE) {
        char placed[128];
        snprintf(placed, sizeof placed, "%.*s", (int)p.node_len, p.node);
        *node = cv_insp_model_find(m, placed);
    } else {
        *node = m->has_map ? m->owner[p.shard] : CV_INSP_NO_NODE;
    }
    return 0;
}

int cv_insp_api_state_path(const char *type, const char *id, char *out, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    const char *parts[2] = {type, id};
    for (int k = 0; k < 2; k++) {
        const char *pre = k ? "/" : "/v1/objects/";
        size_t pl = strlen(pre);
        if (n + pl >= len) return CV_ERANGE;
        memcpy(out + n, pre, pl);
        n += pl;
        for (const unsigned char *c = (const unsigned char *)parts[k]; *c; c++) {
            bool plain = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                         strchr("-._~", *c);
            if (n + (plain ? 1 : 3) >= len) return CV_ERANGE;
            if (plain) {
                out[n++] = (char)*c;
            } else {
                out[n++] = '%';
                out[n++] = hex[*c >> 4];
                out[n++] = hex[*c & 15];
            }
        }
    }
    out[n] = '\0';
    return 0;
}

json_t *cv_insp_api_object(const struct cv_insp_model *m, const char *type, const char *id, int *err)
{
    static const char *const kinds[] = {[CV_PLACE_HASH] = "hash", [CV_PLACE_SHARD] = "shard",
                                        [CV_PLACE_NODE] = "node"};
    struct cv_placement p;
    *err = cv_placement_parse(id, m->n_shards, &p);
    if (*err) {
        *err = CV_EINVAL;
        return NULL;
    }
    char placed[128] = ""; /* a node id prefix (the nodes refuse ids of 512 bytes and more) */
    if (p.kind == CV_PLACE_NODE) snprintf(placed, sizeof placed, "%.*s", (int)p.node_len, p.node);
    /* A node-placed object lives on its node whatever the shard map says (if the config names it). */
    int owner = p.kind == CV_PLACE_NODE ? cv_insp_model_find(m, placed) : m->has_map ? m->owner[p.shard]
                                                                                     : CV_INSP_NO_NODE;
    const char *atype = NULL;
    int active = find_active(m, type, id, &atype);
    json_t *o = json_pack("{s:s,s:s,s:I,s:s,s:s?,s:o,s:b,s:o,s:b,s:b,s:o,s:s?}", "type", type, "id", id, "shard",
                          (json_int_t)p.shard, "placement", kinds[p.kind], "placed_node", placed[0] ? placed : NULL,
                          "owner", node_or_null(m, owner), "owner_up", owner >= 0 && m->nodes[owner].up, "target",
                          node_or_null(m, m->target[p.shard]), "pinned", m->pinned[p.shard], "active",
                          active != CV_INSP_NO_NODE, "active_on", node_or_null(m, active), "active_type", atype);
    if (!o) *err = CV_ENOMEM;
    return o;
}
