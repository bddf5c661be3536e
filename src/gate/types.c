/* The gate's object types: lookups of types and methods by name, module loading.
 *
 * Backing: a standalone object registry (objects/registry.h), the same kind a node's runtime uses, so a
 * module's cverse_module_init and cv_demo_register fill it exactly as on a node. The gate never runs
 * objects: it only reads the method descriptors. Failure modes: unknown names give CV_ENOTFOUND with a
 * message naming what is missing; a module that cannot be loaded or whose init fails gives an error
 * line (the gate then refuses to start). */
#include "gate/types.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"
#include "objects/registry.h"

struct cv_gate_types {
    cv_registry *reg;
};

int cv_gate_types_new(struct cv_gate_types **out)
{
    struct cv_gate_types *t = calloc(1, sizeof *t);
    if (!t || !(t->reg = cv_registry_new())) {
        free(t);
        return CV_ENOMEM;
    }
    *out = t;
    return 0;
}

void cv_gate_types_free(struct cv_gate_types *t)
{
    if (!t) return;
    cv_registry_free(t->reg);
    free(t);
}

cv_registry *cv_gate_types_registry(struct cv_gate_types *t)
{
    return t->reg;
}

int cv_gate_types_add(struct cv_gate_types *t, const struct cv_object_type *type)
{
    return cv_register_type(t->reg, type);
}

int cv_gate_types_find(const struct cv_gate_types *t, const char *type, char *err, size_t errlen)
{
    if (t && cv_registry_type(t->reg, type)) return 0;
    if (err) snprintf(err, errlen, "unknown object type \"%.100s\"", type);
    return CV_ENOTFOUND;
}

int cv_gate_types_method(const struct cv_gate_types *t, const char *type, const char *method,
                         const struct cv_method **out, char *err, size_t errlen)
{
    const struct cv_object_type *ty = t ? cv_registry_type(t->reg, type) : NULL;
    const struct cv_method *m = cv_type_method(ty, method);
    if (m) {
        *out = m;
        return 0;
    }
    if (!err) return CV_ENOTFOUND;
    if (!ty) snprintf(err, errlen, "unknown object type \"%.100s\"", type);
    else snprintf(err, errlen, "object type \"%.100s\" has no method \"%.100s\"", type, method);
    return CV_ENOTFOUND;
}
