/* Goverse's object_access_rules and object_lifecycle_rules, read from the loaded YAML tree (config.c calls
 * this for the root; core/access.h evaluates them):
 *
 *     object_access_rules:          # first matching rule wins; none matching: denied
 *       - {type: Counter, id: /c-[0-9]+/, method: /(Get|Add)/, access: ALLOW}
 *       - {object: ChatRoomMgr0, method: ListChatRooms, access: ALLOW}   # older Goverse form: object = id
 *     object_lifecycle_rules:       # none matching: CREATE allowed, DELETE internal only
 *       - {type: ChatRoom, lifecycle: DELETE, access: INTERNAL}
 *
 * Happy path: each list item is a mapping of known keys; patterns are compiled (literal or /regex/),
 * access and lifecycle are Goverse's words. Failure modes: anything else, an invalid regex included, is
 * CV_ECONFIG with one line "FILE:LINE: KEY.PATH: what is wrong (expected ...)" (the process exits 2). */
#include <yaml.h>

#include "config/config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/access.h"
#include "cverse/error.h"

static const char *ru__text(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static bool ru__null(const yaml_node_t *v)
{
    const char *s = ru__text(v);
    return s && v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && (!*s || !strcmp(s, "~") || !strcasecmp(s, "null"));
}

/* Checks the item's keys (known, once); the value of each known key goes to vals[i] (NULL: absent). */
static int ru__keys(struct cv_config_ydoc *c, yaml_node_t *item, const char *path, const char *const *keys, yaml_node_t **vals,
                    const char *expect)
{
    if (item->type != YAML_MAPPING_NODE) return cv_config_nfail(c, item, path, "must be a mapping of %s", expect);
    for (yaml_node_pair_t *p = item->data.mapping.pairs.start; p < item->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key), *v = yaml_document_get_node(c->doc, p->value);
        const char *ks = ru__text(k);
        size_t i = 0;
        while (keys[i] && (!ks || strcmp(ks, keys[i]))) i++;
        if (!keys[i]) return cv_config_nfail(c, k, path, "unknown key \"%.60s\" (expected %s)", ks ? ks : "?", expect);
        if (vals[i]) return cv_config_nfail(c, k, path, "duplicate key \"%s\" (expected once)", keys[i]);
        vals[i] = ru__null(v) ? NULL : v;
        if (vals[i] && !ru__text(vals[i]))
            return cv_config_nfail(c, v, path, "%s must be a string (a name or /regex/)", keys[i]);
    }
    return 0;
}

static int ru__pattern(struct cv_config_ydoc *c, yaml_node_t *v, const char *path, const char *key, struct cv_pattern *p)
{
    char msg[300], kpath[320];
    int rv = cv_pattern_init(p, ru__text(v), msg, sizeof msg);
    snprintf(kpath, sizeof kpath, "%s.%s", path, key);
    if (rv == CV_EINVAL) return cv_config_nfail(c, v, kpath, "%s (expected a name or /POSIX extended regex/)", msg);
    return rv;
}

/* One rule; life: false for object_access_rules. Keys: type id object method access [lifecycle]. */
static int ru__rule(struct cv_config_ydoc *c, yaml_node_t *item, const char *path, bool life, struct cv_access_rule *r)
{
    static const char *const akeys[] = {"type", "id", "method", "access", "object", NULL};
    static const char *const lkeys[] = {"type", "id", "lifecycle", "access", NULL};
    yaml_node_t *v[5] = {NULL};
    int rv = ru__keys(c, item, path, life ? lkeys : akeys, v,
                      life ? "type, id, lifecycle, access" : "type, id, method, access (or Goverse's object)");
    if (rv) return rv;
    r->line = (int)item->start_mark.line + 1;
    if (!life && v[4] && v[1]) return cv_config_nfail(c, v[4], path, "both object and id (expected one: they are the same)");
    if (!life && !v[1]) v[1] = v[4];
    if (!v[0] && (life || !v[1])) return cv_config_nfail(c, item, path, "missing type (required: a name or /regex/)");
    if (!v[3]) return cv_config_nfail(c, item, path, "missing access (required: REJECT, INTERNAL, EXTERNAL or ALLOW)");
    if (cv_access_parse(ru__text(v[3]), &r->access))
        return cv_config_nfail(c, v[3], path, "access must be REJECT, INTERNAL, EXTERNAL or ALLOW, got \"%.60s\"",
                        ru__text(v[3]));
    if (life && !v[2]) return cv_config_nfail(c, item, path, "missing lifecycle (required: CREATE, DELETE or ALL)");
    if (life && cv_life_parse(ru__text(v[2]), &r->life))
        return cv_config_nfail(c, v[2], path, "lifecycle must be CREATE, DELETE or ALL, got \"%.60s\"", ru__text(v[2]));
    rv = ru__pattern(c, v[0], path, "type", &r->type);
    if (!rv) rv = ru__pattern(c, v[1], path, v[1] == v[4] && v[4] ? "object" : "id", &r->id);
    if (!rv && !life) rv = ru__pattern(c, v[2], path, "method", &r->method);
    return rv;
}

static int ru__list(struct cv_config_ydoc *c, yaml_node_t *root, const char *key, bool life, struct cv_access_rule **out,
                    size_t *n)
{
    yaml_node_t *list = NULL;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++)
        if (ru__text(yaml_document_get_node(c->doc, p->key)) &&
            !strcmp(ru__text(yaml_document_get_node(c->doc, p->key)), key))
            list = yaml_document_get_node(c->doc, p->value);
    if (!list || ru__null(list)) return 0;
    if (list->type != YAML_SEQUENCE_NODE) return cv_config_nfail(c, list, key, "must be a list of rules");
    size_t count = (size_t)(list->data.sequence.items.top - list->data.sequence.items.start);
    if (!count) return 0;
    if (!(*out = calloc(count, sizeof **out))) return CV_ENOMEM;
    for (size_t i = 0; i < count; i++) {
        char path[80];
        snprintf(path, sizeof path, "%s[%zu]", key, i);
        *n = i + 1; /* freed with the config, whatever was compiled */
        int rv = ru__rule(c, yaml_document_get_node(c->doc, list->data.sequence.items.start[i]), path, life,
                          &(*out)[i]);
        if (rv) return rv;
    }
    return 0;
}

int cv_config_rules(struct yaml_document_s *doc, struct yaml_node_s *root, const char *file, struct cv_config *cfg,
                    char *err, size_t errlen)
{
    struct cv_config_ydoc c = {doc, file, err, errlen};
    if (root->type != YAML_MAPPING_NODE) return 0; /* config.c reported it */
    struct cv_access_rules *r = &cfg->access_rules;
    int rv = ru__list(&c, root, "object_access_rules", false, &r->calls, &r->n_calls);
    if (!rv) rv = ru__list(&c, root, "object_lifecycle_rules", true, &r->life, &r->n_life);
    return rv;
}
