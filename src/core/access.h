/* Goverse's object access and lifecycle rules: literal or /regex/ patterns, first matching rule wins (pure). */
#ifndef CV_CORE_ACCESS_H
#define CV_CORE_ACCESS_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>

/* Who may do it: REJECT nobody, INTERNAL only objects (object-to-object calls), EXTERNAL only clients
 * (through a gate), ALLOW both. */
enum cv_access { CV_ACCESS_REJECT = 0, CV_ACCESS_INTERNAL, CV_ACCESS_EXTERNAL, CV_ACCESS_ALLOW };

/* Lifecycle operations a lifecycle rule names (a bit set: ALL = both). */
enum cv_life { CV_LIFE_CREATE = 1, CV_LIFE_DELETE = 2, CV_LIFE_ALL = 3 };

/* A pattern as written in the YAML: "Name" (the whole string, exactly) or "/re/" (POSIX extended regex,
 * anchored at both ends as Goverse anchors its Go regexps). An absent pattern matches everything. */
struct cv_pattern {
    bool given, is_re;
    char *literal; /* owned, when given and not a regex */
    regex_t re;    /* compiled, when is_re */
};

/* One rule: object_access_rules (life 0) or object_lifecycle_rules (life a enum cv_life set). */
struct cv_access_rule {
    struct cv_pattern type, id, method;
    enum cv_access access;
    int life;
    int line; /* in the config file, for messages */
};

/* Both lists of a config, in file order. Empty lists: no rule applies, everything is allowed (as without
 * the keys). */
struct cv_access_rules {
    struct cv_access_rule *calls, *life; /* owned */
    size_t n_calls, n_life;
};

/* Compiles text (NULL: absent, matches all). CV_EINVAL with the regcomp message in err, CV_ENOMEM. */
int cv_pattern_init(struct cv_pattern *p, const char *text, char *err, size_t errlen);
bool cv_pattern_match(const struct cv_pattern *p, const char *s);
void cv_pattern_free(struct cv_pattern *p);

/* "REJECT" | "INTERNAL" | "EXTERNAL" | "ALLOW" -> *out; CV_EINVAL otherwise. */
int cv_access_parse(const char *s, enum cv_access *out);
/* "CREATE" | "DELETE" | "ALL" -> *out (enum cv_life); CV_EINVAL otherwise. */
int cv_life_parse(const char *s, int *out);
/* true if access lets an internal (object-to-object) or an external (client) caller through. */
bool cv_access_lets(enum cv_access a, bool internal);

/* A call of type/id/method by a client (internal false) or an object (true): 0, or CV_EPERM. With call
 * rules but none matching: CV_EPERM (Goverse: denied by default). rules NULL or without call rules: 0. */
int cv_access_call(const struct cv_access_rules *rules, const char *type, const char *id, const char *method,
                   bool internal);
/* A CREATE or DELETE (op) of type/id: 0, or CV_EPERM. No rule matching: CREATE is allowed, DELETE only
 * internal (Goverse's defaults); rules NULL or without lifecycle rules: 0 (cverse without the keys). */
int cv_access_life(const struct cv_access_rules *rules, int op, const char *type, const char *id, bool internal);

void cv_access_rules_free(struct cv_access_rules *rules);

#endif
