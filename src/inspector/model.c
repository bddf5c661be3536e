/* The inspector's model. A round stores each node's answers (cluster, shards, objects, ready, stats)
 * as JSON; finish derives the model: a node is reachable when it answered /v1/cluster; the "view" (who is
 * alive, registered, the leader, the term) and the shard map come from the reachable node with the
 * highest applied index, because its catalog is the most recent one; a node is up when reachable and
 * alive in that view — so a killed node is down at the next round (its HTTP port refuses), and a node
 * cut off but still answering is down once its lease expired in the others' catalog.
 *
 * Failure modes: malformed or partial answers are ignored field by field (a node answering garbage looks
 * like one answering little); out of memory while copying objects leaves that node's list short. */
#include "inspector/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"

int cv_insp_model_init(struct cv_insp_model *m, const struct cv_config *cfg)
{
    *m = (struct cv_insp_model){.cfg = cfg, .n_nodes = cfg->n_nodes, .leader = CV_INSP_NO_NODE,
                                .n_shards = cfg->shards};
    m->nodes = calloc(cfg->n_nodes ? cfg->n_nodes : 1, sizeof *m->nodes);
    m->owner = malloc(cfg->shards * sizeof *m->owner);
    m->epoch = calloc(cfg->shards, sizeof *m->epoch);
    m->objects_per_shard = calloc(cfg->shards, sizeof *m->objects_per_shard);
    m->target = malloc(cfg->shards * sizeof *m->target);
    m->pinned = calloc(cfg->shards, sizeof *m->pinned);
    if (!m->nodes || !m->owner || !m->epoch || !m->objects_per_shard || !m->target || !m->pinned) {
        cv_insp_model_free(m);
        return CV_ENOMEM;
    }
    for (uint32_t s = 0; s < cfg->shards; s++) m->owner[s] = m->target[s] = CV_INSP_NO_NODE;
    for (size_t i = 0; i < cfg->n_nodes; i++) m->nodes[i].cfg = &cfg->nodes[i];
    return 0;
}

static void model__clear_node(struct cv_insp_node *n)
{
    for (int k = 0; k < CV_INSP_N_DOCS; k++) json_decref(n->doc[k]);
    for (size_t j = 0; j < n->n_objects; j++) {
        free(n->objects[j].type);
        free(n->objects[j].id);
    }
    free(n->objects);
    *n = (struct cv_insp_node){.cfg = n->cfg, .last_seen_ms = n->last_seen_ms};
}

void cv_insp_model_free(struct cv_insp_model *m)
{
    for (size_t i = 0; m->nodes && i < m->n_nodes; i++) model__clear_node(&m->nodes[i]);
    free(m->nodes);
    free(m->owner);
    free(m->epoch);
    free(m->objects_per_shard);
    free(m->target);
    free(m->pinned);
    memset(m, 0, sizeof *m);
}

void cv_insp_model_begin(struct cv_insp_model *m)
{
    for (size_t i = 0; i < m->n_nodes; i++) model__clear_node(&m->nodes[i]);
}

json_t *cv_insp_model_doc(const struct cv_insp_model *m, size_t i, enum cv_insp_doc kind)
{
    return i < m->n_nodes && kind < CV_INSP_N_DOCS ? m->nodes[i].doc[kind] : NULL;
}

void cv_insp_model_set(struct cv_insp_model *m, size_t i, enum cv_insp_doc kind, json_t *doc)
{
    if (i >= m->n_nodes || kind >= CV_INSP_N_DOCS) {
        json_decref(doc);
        return;
    }
    json_decref(m->nodes[i].doc[kind]);
    m->nodes[i].doc[kind] = doc;
}

void cv_insp_model_set_error(struct cv_insp_model *m, size_t i, const char *error)
{
    if (i < m->n_nodes) snprintf(m->nodes[i].error, sizeof m->nodes[i].error, "%s", error);
}

int cv_insp_model_find(const struct cv_insp_model *m, const char *name)
{
    if (!name) return CV_INSP_NO_NODE;
    for (size_t i = 0; i < m->n_nodes; i++) {
        const struct cv_node_cfg *c = m->nodes[i].cfg;
        if (!strcmp(c->id, name) || !strcmp(c->advertise_addr, name) || !strcmp(c->grpc_addr, name))
            return (int)i;
    }
    return CV_INSP_NO_NODE;
}

const char *cv_insp_model_node_id(const struct cv_insp_model *m, int i)
{
    return i >= 0 && (size_t)i < m->n_nodes ? m->nodes[i].cfg->id : NULL;
}

/* ---- finish: derive the model from the answers --------------------------------------------------------- */

static uint64_t num(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

static void str(json_t *o, const char *key, char *out, size_t len)
{
    const char *s = json_string_value(json_object_get(o, key));
    snprintf(out, len, "%s", s ? s : "");
}

static int object__cmp(const void *a, const void *b)
{
    const struct cv_insp_object *x = a, *y = b;
    int c = strcmp(x->type, y->type);
    return c ? c : strcmp(x->id, y->id);
}

static void model__objects(struct cv_insp_model *m, struct cv_insp_node *n)
{
    json_t *list = json_object_get(n->doc[CV_INSP_OBJECTS], "objects");
    size_t cap = json_array_size(list);
    if (!cap || !(n->objects = calloc(cap, sizeof *n->objects))) return;
    size_t k;
    json_t *o;
    json_array_foreach(list, k, o) {
        const char *type = json_string_value(json_object_get(o, "type"));
        const char *id = json_string_value(json_object_get(o, "id"));
        if (!type || !id) continue;
        struct cv_insp_object *ob = &n->objects[n->n_objects];
        ob->shard = (uint32_t)num(o, "shard");
        if (!(ob->type = strdup(type)) || !(ob->id = strdup(id))) {
            free(ob->type);
            break;
        }
        n->n_objects++;
        if (ob->shard < m->n_shards) m->objects_per_shard[ob->shard]++;
    }
    if (n->n_objects) qsort(n->objects, n->n_objects, sizeof *n->objects, object__cmp);
}

/* The node's own answers: its raft state, readiness, objects. */
static void model__own(struct cv_insp_model *m, struct cv_insp_node *n, uint64_t now_ms)
{
    json_t *c = n->doc[CV_INSP_CLUSTER];
    n->reachable = json_is_object(c);
    if (!n->reachable) return;
    n->last_seen_ms = now_ms;
    n->error[0] = 0;
    str(c, "state", n->state, sizeof n->state);
    n->term = num(c, "term");
    n->commit = num(c, "commit_index");
    n->applied = num(c, "applied_index");
    json_t *r = n->doc[CV_INSP_READY];
    n->ready = json_is_true(json_object_get(r, "ready"));
    str(r, "reason", n->reason, sizeof n->reason);
    model__objects(m, n);
}

/* The most advanced reachable node for a document kind (highest applied_index), -1 if none. */
static int model__best(const struct cv_insp_model *m, enum cv_insp_doc kind)
{
    int best = -1;
    uint64_t best_idx = 0;
    for (size_t i = 0; i < m->n_nodes; i++) {
        json_t *d = m->nodes[i].doc[kind];
        if (!m->nodes[i].reachable || !json_is_object(d)) continue;
        uint64_t idx = num(d, "applied_index");
        if (best < 0 || idx > best_idx) {
            best = (int)i;
            best_idx = idx;
        }
    }
    return best;
}

static void model__view(struct cv_insp_model *m, json_t *c)
{
    m->leader = cv_insp_model_find(m, json_string_value(json_object_get(c, "leader")));
    m->term = num(c, "term");
    size_t k;
    json_t *e;
    json_array_foreach(json_object_get(c, "nodes"), k, e) {
        int i = cv_insp_model_find(m, json_string_value(json_object_get(e, "id")));
        if (i < 0) continue;
        struct cv_insp_node *n = &m->nodes[i];
        n->alive = json_is_true(json_object_get(e, "alive"));
        n->registered = json_is_true(json_object_get(e, "registered"));
        n->draining = json_is_true(json_object_get(e, "draining"));
        str(e, "role", n->role, sizeof n->role);
    }
}

/* Lease windows: renewals are granted by the raft leader, not logged (consensus/leases.h), so only a
 * node itself and the leader know them. Each node's own answer about itself first; the leader's answer
 * about the others (an unreachable node's lease runs out there); 0 (unknown) otherwise. */
static int64_t model__lease_from(const struct cv_insp_model *m, int from, const char *id)
{
    if (from < 0 || !m->nodes[from].reachable) return 0;
    size_t k;
    json_t *e;
    json_array_foreach(json_object_get(m->nodes[from].doc[CV_INSP_CLUSTER], "nodes"), k, e) {
        const char *eid = json_string_value(json_object_get(e, "id"));
        if (eid && !strcmp(eid, id)) return (int64_t)num(e, "lease_expiry_ms");
    }
    return 0;
}

static void model__leases(struct cv_insp_model *m)
{
    for (size_t i = 0; i < m->n_nodes; i++) {
        const char *id = m->cfg->nodes[i].id;
        int64_t own = model__lease_from(m, (int)i, id);
        m->nodes[i].lease_expiry_ms = own ? own : model__lease_from(m, m->leader, id);
    }
}

static void model__map(struct cv_insp_model *m, json_t *s)
{
    json_t *owners = json_object_get(s, "owners"), *epochs = json_object_get(s, "epochs");
    json_t *targets = json_object_get(s, "targets"), *pinned = json_object_get(s, "pinned");
    if (!json_is_array(owners) || json_array_size(owners) != m->n_shards) return;
    m->has_map = true;
    m->map_applied = num(s, "applied_index");
    for (uint32_t i = 0; i < m->n_shards; i++) {
        m->owner[i] = cv_insp_model_find(m, json_string_value(json_array_get(owners, i)));
        json_t *ep = json_array_get(epochs, i);
        m->epoch[i] = json_is_integer(ep) ? (uint64_t)json_integer_value(ep) : 0;
        /* targets / pinned: absent from nodes without operator wishes (null / false then). */
        m->target[i] = cv_insp_model_find(m, json_string_value(json_array_get(targets, i)));
        m->pinned[i] = json_is_true(json_array_get(pinned, i));
    }
}

static void model__carry_map(struct cv_insp_model *m, const struct cv_insp_model *prev)
{
    if (!prev || !prev->has_map || prev->n_shards != m->n_shards) return;
    m->has_map = true;
    m->map_applied = prev->map_applied;
    memcpy(m->owner, prev->owner, m->n_shards * sizeof *m->owner);
    memcpy(m->epoch, prev->epoch, m->n_shards * sizeof *m->epoch);
    memcpy(m->target, prev->target, m->n_shards * sizeof *m->target);
    memcpy(m->pinned, prev->pinned, m->n_shards * sizeof *m->pinned);
}

void cv_insp_model_finish(struct cv_insp_model *m, const struct cv_insp_model *prev, uint64_t now_ms)
{
    m->time_ms = now_ms;
    m->has_map = false;
    m->leader = CV_INSP_NO_NODE;
    m->term = 0;
    memset(m->objects_per_shard, 0, m->n_shards * sizeof *m->objects_per_shard);
    for (size_t i = 0; i < m->n_nodes; i++) {
        if (prev && prev->n_nodes == m->n_nodes && !m->nodes[i].last_seen_ms)
            m->nodes[i].last_seen_ms = prev->nodes[i].last_seen_ms;
        model__own(m, &m->nodes[i], now_ms);
    }
    int best = model__best(m, CV_INSP_CLUSTER);
    m->have = best >= 0 || (prev && prev->have);
    if (best >= 0) model__view(m, m->nodes[best].doc[CV_INSP_CLUSTER]);
    else if (prev) m->term = prev->term;
    model__leases(m);
    int map = model__best(m, CV_INSP_SHARDS);
    if (map >= 0) model__map(m, m->nodes[map].doc[CV_INSP_SHARDS]);
    if (!m->has_map) model__carry_map(m, prev);
    for (size_t i = 0; i < m->n_nodes; i++) {
        struct cv_insp_node *n = &m->nodes[i];
        n->up = n->reachable && n->alive;
        if (!n->reachable) n->alive = false;
    }
    for (uint32_t s = 0; m->has_map && s < m->n_shards; s++)
        if (m->owner[s] >= 0) m->nodes[m->owner[s]].shards++;
}

/* ---- diff: events ------------------------------------------------------------------------------------- */

static void emit_node(cv_insp_emit_fn emit, void *data, const char *type, const struct cv_insp_node *n)
{
    json_t *f = json_pack("{s:s,s:s}", "node", n->cfg->id, "reason", n->reachable ? "" : n->error);
    if (f && n->reachable && !n->alive) json_object_set_new(f, "reason", json_string("lease expired (not alive)"));
    emit(data, type, f);
    json_decref(f);
}

/* Objects added and removed on a node (both lists sorted). */
static void objects_delta(const struct cv_insp_node *a, const struct cv_insp_node *b, size_t *added,
                          size_t *removed)
{
    size_t i = 0, j = 0;
    *added = *removed = 0;
    while (i < a->n_objects || j < b->n_objects) {
        int c = i == a->n_objects ? 1 : j == b->n_objects ? -1 : object__cmp(&a->objects[i], &b->objects[j]);
        if (c < 0) (*removed)++, i++;
        else if (c > 0) (*added)++, j++;
        else i++, j++;
    }
}

static void diff_nodes(const struct cv_insp_model *p, const struct cv_insp_model *n, bool feed, cv_insp_emit_fn emit,
                       void *data)
{
    for (size_t i = 0; i < n->n_nodes; i++) {
        const struct cv_insp_node *a = &p->nodes[i], *b = &n->nodes[i];
        if (!feed && !a->registered && b->registered && p->have) emit_node(emit, data, "node_joined", b);
        if (a->up != b->up) emit_node(emit, data, b->up ? "node_up" : "node_down", b);
        if (!a->reachable || !b->reachable) continue;
        size_t added, removed;
        objects_delta(a, b, &added, &removed);
        if (!added && !removed) continue;
        json_t *f = json_pack("{s:s,s:I,s:I,s:I}", "node", b->cfg->id, "added", (json_int_t)added, "removed",
                              (json_int_t)removed, "count", (json_int_t)b->n_objects);
        emit(data, "objects_changed", f);
        json_decref(f);
    }
}

static void diff_leader(const struct cv_insp_model *p, const struct cv_insp_model *n, cv_insp_emit_fn emit,
                        void *data)
{
    if (n->leader == CV_INSP_NO_NODE && !n->term) return; /* nobody answered: nothing known changed */
    const char *was = cv_insp_model_node_id(p, p->leader), *is = cv_insp_model_node_id(n, n->leader);
    json_t *f = json_pack("{s:s?,s:s?,s:I}", "leader", is, "previous", was, "term", (json_int_t)n->term);
    if (p->leader != n->leader) emit(data, "leader_changed", f);
    else if (p->term != n->term) emit(data, "term_changed", f);
    json_decref(f);
}

static void diff_shards(const struct cv_insp_model *p, const struct cv_insp_model *n, size_t max_moves,
                        cv_insp_emit_fn emit, void *data)
{
    if (!p->has_map || !n->has_map || p->n_shards != n->n_shards) return;
    size_t moved = 0;
    for (uint32_t s = 0; s < n->n_shards; s++) {
        if (p->owner[s] == n->owner[s]) continue; /* a new epoch alone is a confirmation, not a move */
        if (moved++ >= max_moves) continue;
        json_t *f = json_pack("{s:I,s:s?,s:s?,s:I,s:I}", "shard", (json_int_t)s, "from",
                              cv_insp_model_node_id(p, p->owner[s]), "to", cv_insp_model_node_id(n, n->owner[s]),
                              "epoch", (json_int_t)n->epoch[s], "previous_epoch", (json_int_t)p->epoch[s]);
        emit(data, "shard_moved", f);
        json_decref(f);
    }
    if (moved > max_moves) {
        json_t *f = json_pack("{s:I,s:I}", "count", (json_int_t)moved, "not_listed", (json_int_t)(moved - max_moves));
        emit(data, "shards_moved", f);
        json_decref(f);
    }
}

void cv_insp_model_diff_parts(const struct cv_insp_model *prev, const struct cv_insp_model *next, size_t max_moves,
                              bool feed, cv_insp_emit_fn emit, void *data)
{
    if (prev->n_nodes != next->n_nodes) return;
    diff_nodes(prev, next, feed, emit, data);
    if (feed) return;
    diff_leader(prev, next, emit, data);
    diff_shards(prev, next, max_moves, emit, data);
}

void cv_insp_model_diff(const struct cv_insp_model *prev, const struct cv_insp_model *next, size_t max_moves,
                        cv_insp_emit_fn emit, void *data)
{
    cv_insp_model_diff_parts(prev, next, max_moves, false, emit, data);
}
