/* Goverse's object_access_rules and object_lifecycle_rules, evaluated (config/rules.c builds them).
 *
 * Happy path: each rule's patterns are compiled once (regcomp, REG_EXTENDED | REG_NOSUB, wrapped in
 * ^(...)$ so that a regex must match the whole string, as Goverse anchors its patterns); a check walks
 * the list top to bottom and the first rule whose type, id and method patterns all match decides
 * (cv_access_lets). No rule matching: calls are denied (Goverse's secure default), a CREATE is allowed
 * and a DELETE is internal only (Goverse's lifecycle defaults). No rules at all: everything is allowed,
 * so a config without the keys behaves as before.
 *
 * Failure modes: an invalid regex is CV_EINVAL with regerror's text (a config error at load time);
 * out of memory CV_ENOMEM. Pure: no I/O, no global state. */
#include "core/access.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"

int cv_pattern_init(struct cv_pattern *p, const char *text, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    if (!text) return 0;
    size_t n = strlen(text);
    p->given = true;
    if (n < 2 || text[0] != '/' || text[n - 1] != '/') {
        p->literal = strdup(text);
        return p->literal ? 0 : CV_ENOMEM;
    }
    char *anchored = malloc(n + 4);
    if (!anchored) return CV_ENOMEM;
    snprintf(anchored, n + 4, "^(%.*s)$", (int)(n - 2), text + 1);
    int rc = regcomp(&p->re, anchored, REG_EXTENDED | REG_NOSUB);
    free(anchored);
    if (rc) {
        char msg[200];
        regerror(rc, &p->re, msg, sizeof msg);
        if (err && errlen) snprintf(err, errlen, "invalid regular expression %s: %s", text, msg);
        p->given = false;
        return CV_EINVAL;
    }
    p->is_re = true;
    return 0;
}

bool cv_pattern_match(const struct cv_pattern *p, const char *s)
{
    if (!p->given) return true;
    if (!s) s = "";
    if (p->is_re) return regexec(&p->re, s, 0, NULL, 0) == 0;
    return strcmp(p->literal, s) == 0;
}

void cv_pattern_free(struct cv_pattern *p)
{
    if (p->is_re) regfree(&p->re);
    free(p->literal);
    memset(p, 0, sizeof *p);
}

static const char *const access_names[] = {"REJECT", "INTERNAL", "EXTERNAL", "ALLOW"};

int cv_access_parse(const char *s, enum cv_access *out)
{
    for (int i = 0; i < 4; i++)
        if (s && !strcmp(s, access_names[i])) {
            *out = (enum cv_access)i;
            return 0;
        }
    return CV_EINVAL;
}

int cv_life_parse(const char *s, int *out)
{
    static const struct { const char *name; int op; } ops[] = {
        {"CREATE", CV_LIFE_CREATE}, {"DELETE", CV_LIFE_DELETE}, {"ALL", CV_LIFE_ALL}};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (s && !strcmp(s, ops[i].name)) {
            *out = ops[i].op;
            return 0;
        }
    return CV_EINVAL;
}

bool cv_access_lets(enum cv_access a, bool internal)
{
    return a == CV_ACCESS_ALLOW || a == (internal ? CV_ACCESS_INTERNAL : CV_ACCESS_EXTERNAL);
}

/* The first rule of list[0, n) matching (and op, for lifecycle rules), or NULL. */
static const struct cv_access_rule *first_match(const struct cv_access_rule *list, size_t n, int op,
                                                const char *type, const char *id, const char *method)
{
    for (size_t i = 0; i < n; i++) {
        const struct cv_access_rule *r = &list[i];
        if (op && !(r->life & op)) continue;
        if (cv_pattern_match(&r->type, type) && cv_pattern_match(&r->id, id) &&
            (op || cv_pattern_match(&r->method, method)))
            return r;
    }
    return NULL;
}

int cv_access_call(const struct cv_access_rules *rules, const char *type, const char *id, const char *method,
                   bool internal)
{
    if (!rules || !rules->n_calls) return 0;
    const struct cv_access_rule *r = first_match(rules->calls, rules->n_calls, 0, type, id, method);
    return r && cv_access_lets(r->access, internal) ? 0 : CV_EPERM;
}

int cv_access_life(const struct cv_access_rules *rules, int op, const char *type, const char *id, bool internal)
{
    if (!rules || !rules->n_life) return 0;
    const struct cv_access_rule *r = first_match(rules->life, rules->n_life, op, type, id, NULL);
    enum cv_access a = r ? r->access : op == CV_LIFE_DELETE ? CV_ACCESS_INTERNAL : CV_ACCESS_ALLOW;
    return cv_access_lets(a, internal) ? 0 : CV_EPERM;
}

static void rules_free(struct cv_access_rule *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        cv_pattern_free(&list[i].type);
        cv_pattern_free(&list[i].id);
        cv_pattern_free(&list[i].method);
    }
    free(list);
}

void cv_access_rules_free(struct cv_access_rules *rules)
{
    if (!rules) return;
    rules_free(rules->calls, rules->n_calls);
    rules_free(rules->life, rules->n_life);
    memset(rules, 0, sizeof *rules);
}
