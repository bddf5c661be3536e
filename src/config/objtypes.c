/* The config's object settings, read from the loaded YAML tree (config.c calls this for the root):
 *
 *     object_types:                 # optional; keys are type names
 *       SimpleCounter: {persist: none, save_interval_ms: 1000, idle_timeout_ms: 900000,
 *                       call_id_window: 256, call_id_window_ms: 3600000}
 *     object_state_max_bytes: 1048576
 *     cluster: {demo_types: false}  # optional: no built-in demo types on the nodes (config.c reads the rest)
 *
 * Happy path: each entry of object_types is a mapping of known keys; persist is one of none, on_write,
 * periodic; the integers are plain decimal in range. Types are names only here: a node warns about a
 * name no registered type has (the config is shared by gates and inspectors, which know other types).
 * Failure modes: anything else is CV_ECONFIG with one line "FILE:LINE: KEY.PATH: what is wrong
 * (expected ...)", as the rest of the config reports (the node then exits 2). The entries live in a
 * fixed array of the config (at most CV_CONFIG_OBJECT_TYPES_MAX types): nothing to free. */
#include <yaml.h>

#include "config/config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"

#define OT_SAVE_MAX 86400000ull          /* a day */
#define OT_IDLE_MAX (7 * 86400000ull)    /* a week */
#define OT_CALL_WINDOW_MAX 65536ull      /* call ids kept per object (each with its answer, in every save) */
#define OT_STATE_MAX ((uint64_t)256 << 20) /* a raft entry carries it: keep it far below memory */

static const char *ot__text(const yaml_node_t *n)
{
    return n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : "";
}

/* The value of key in map, or NULL (absent, or a YAML null). */
static yaml_node_t *ot__get(struct cv_config_ydoc *c, yaml_node_t *map, const char *key)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key), *v = yaml_document_get_node(c->doc, p->value);
        if (k->type != YAML_SCALAR_NODE || strcmp(ot__text(k), key) != 0) continue;
        bool null = v->type == YAML_SCALAR_NODE && v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                    (!*ot__text(v) || !strcmp(ot__text(v), "~") || !strcasecmp(ot__text(v), "null"));
        return null ? NULL : v;
    }
    return NULL;
}

/* A plain decimal integer in lo..hi; absent leaves *out. */
static int ot__uint(struct cv_config_ydoc *c, yaml_node_t *map, const char *mpath, const char *key, uint64_t lo,
                    uint64_t hi, uint64_t *out, bool *given)
{
    char path[340];
    yaml_node_t *v = ot__get(c, map, key);
    if (!v) return 0;
    snprintf(path, sizeof path, "%s%s%s", mpath, *mpath ? "." : "", key);
    const char *s = ot__text(v);
    uint64_t x = 0;
    bool ok = v->type == YAML_SCALAR_NODE && v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && *s;
    for (; ok && *s; s++) {
        ok = *s >= '0' && *s <= '9' && x <= (UINT64_MAX - (uint64_t)(*s - '0')) / 10;
        x = x * 10 + (uint64_t)(*s - '0');
    }
    if (!ok || x < lo || x > hi)
        return cv_config_nfail(c, v, path, "must be an integer %llu..%llu, got \"%.60s\"", (unsigned long long)lo,
                        (unsigned long long)hi, v->type == YAML_SCALAR_NODE ? ot__text(v) : "(not a scalar)");
    *out = x;
    if (given) *given = true;
    return 0;
}

static int ot__persist(struct cv_config_ydoc *c, yaml_node_t *map, const char *mpath, int *out)
{
    static const char *const names[] = {"none", "on_write", "periodic"};
    char path[340];
    yaml_node_t *v = ot__get(c, map, "persist");
    *out = -1;
    if (!v) return 0;
    for (int i = 0; i < 3; i++)
        if (v->type == YAML_SCALAR_NODE && !strcmp(ot__text(v), names[i])) return *out = i, 0;
    snprintf(path, sizeof path, "%s.persist", mpath);
    return cv_config_nfail(c, v, path, "must be none, on_write or periodic, got \"%.60s\"",
                    v->type == YAML_SCALAR_NODE ? ot__text(v) : "(not a scalar)");
}

/* One object_types entry: a mapping of known keys. */
static int ot__entry(struct cv_config_ydoc *c, yaml_node_t *k, yaml_node_t *v, struct cv_object_type_cfg *t)
{
    static const char *const keys[] = {"persist", "save_interval_ms", "idle_timeout_ms", "call_id_window",
                                       "call_id_window_ms"};
    char path[300];
    snprintf(path, sizeof path, "object_types.%.200s", ot__text(k));
    if (v->type != YAML_MAPPING_NODE)
        return cv_config_nfail(c, v, path, "must be a mapping of persist, save_interval_ms, idle_timeout_ms, "
                        "call_id_window, call_id_window_ms");
    for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
        yaml_node_t *key = yaml_document_get_node(c->doc, p->key);
        bool known = false;
        for (int i = 0; i < 5; i++) known = known || !strcmp(ot__text(key), keys[i]);
        for (yaml_node_pair_t *q = v->data.mapping.pairs.start; known && q < p; q++)
            if (!strcmp(ot__text(yaml_document_get_node(c->doc, q->key)), ot__text(key)))
                return cv_config_nfail(c, key, path, "duplicate key \"%.60s\" (expected once)", ot__text(key));
        if (!known)
            return cv_config_nfail(c, key, path, "unknown key \"%.60s\" (expected one of: persist, save_interval_ms, "
                            "idle_timeout_ms, call_id_window, call_id_window_ms)", ot__text(key));
    }
    t->line = (int)k->start_mark.line + 1;
    int rv = ot__persist(c, v, path, &t->persist);
    if (!rv) rv = ot__uint(c, v, path, "save_interval_ms", 10, OT_SAVE_MAX, &t->save_interval_ms, NULL);
    if (!rv) rv = ot__uint(c, v, path, "idle_timeout_ms", 0, OT_IDLE_MAX, &t->idle_timeout_ms, &t->has_idle_timeout);
    if (!rv) rv = ot__uint(c, v, path, "call_id_window", 0, OT_CALL_WINDOW_MAX, &t->call_id_window, &t->has_call_id_window);
    if (!rv) rv = ot__uint(c, v, path, "call_id_window_ms", 1000, OT_IDLE_MAX, &t->call_id_window_ms, NULL);
    return rv;
}

static int ot__types(struct cv_config_ydoc *c, yaml_node_t *m, struct cv_config *cfg)
{
    if (m->type != YAML_MAPPING_NODE)
        return cv_config_nfail(c, m, "object_types", "must be a mapping of type name to settings");
    size_t n = (size_t)(m->data.mapping.pairs.top - m->data.mapping.pairs.start);
    for (size_t i = 0; i < n; i++) {
        yaml_node_pair_t *p = &m->data.mapping.pairs.start[i];
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        if (k->type != YAML_SCALAR_NODE || !*ot__text(k) || strlen(ot__text(k)) >= sizeof cfg->object_types[0].name)
            return cv_config_nfail(c, k, "object_types", "keys must be type names (1..127 bytes)");
        if (i == CV_CONFIG_OBJECT_TYPES_MAX)
            return cv_config_nfail(c, k, "object_types", "more than %d types (expected at most %d)",
                            CV_CONFIG_OBJECT_TYPES_MAX, CV_CONFIG_OBJECT_TYPES_MAX);
        for (size_t j = 0; j < cfg->n_object_types; j++)
            if (!strcmp(cfg->object_types[j].name, ot__text(k)))
                return cv_config_nfail(c, k, "object_types", "type %.100s given twice (first at line %d; expected once)",
                                ot__text(k), cfg->object_types[j].line);
        struct cv_object_type_cfg *t = &cfg->object_types[cfg->n_object_types++];
        snprintf(t->name, sizeof t->name, "%s", ot__text(k));
        int rv = ot__entry(c, k, yaml_document_get_node(c->doc, p->value), t);
        if (rv) return rv;
    }
    return 0;
}

/* cluster.demo_types: true (default) or false. */
static int ot__demo_types(struct cv_config_ydoc *c, yaml_node_t *root, struct cv_config *cfg)
{
    yaml_node_t *cl = ot__get(c, root, "cluster");
    yaml_node_t *v = cl && cl->type == YAML_MAPPING_NODE ? ot__get(c, cl, "demo_types") : NULL;
    if (!v) return 0;
    bool plain = v->type == YAML_SCALAR_NODE && v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    const char *s = plain ? ot__text(v) : "";
    if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE")) cfg->no_demo_types = true;
    else if (strcmp(s, "true") && strcmp(s, "True") && strcmp(s, "TRUE"))
        return cv_config_nfail(c, v, "cluster.demo_types", "must be true or false, got \"%.60s\"",
                        v->type == YAML_SCALAR_NODE ? ot__text(v) : "(not a scalar)");
    return 0;
}

int cv_config_objects(struct yaml_document_s *doc, struct yaml_node_s *root, const char *file, struct cv_config *cfg,
                      char *err, size_t errlen)
{
    struct cv_config_ydoc c = {doc, file, err, errlen};
    cfg->object_state_max_bytes = CV_CONFIG_STATE_MAX_DEFAULT;
    if (root->type != YAML_MAPPING_NODE) return 0; /* config.c reported it */
    int rv = ot__uint(&c, root, "", "object_state_max_bytes", 64, OT_STATE_MAX, &cfg->object_state_max_bytes, NULL);
    yaml_node_t *m = ot__get(&c, root, "object_types");
    if (!rv && m) rv = ot__types(&c, m, cfg);
    if (!rv) rv = ot__demo_types(&c, root, cfg);
    return rv;
}
