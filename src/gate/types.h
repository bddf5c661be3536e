/* The object types a gate knows (method descriptors for JSON/Any mapping, 404 for unknown names). */
#ifndef CV_GATE_TYPES_H
#define CV_GATE_TYPES_H

#include <stddef.h>

#include "cverse/object.h"

/* A thin wrapper over a standalone object registry (objects/registry.h). Types are kept by pointer, as
 * cv_register_type does: they must outlive this. */
struct cv_gate_types;

int cv_gate_types_new(struct cv_gate_types **out);
void cv_gate_types_free(struct cv_gate_types *t);

/* The registry to hand to cv_register_type, cverse_module_init or cv_demo_register. */
cv_registry *cv_gate_types_registry(struct cv_gate_types *t);
/* Adds a type directly. CV_EINVAL (incomplete description), CV_EEXIST (name taken), CV_ENOMEM. */
int cv_gate_types_add(struct cv_gate_types *t, const struct cv_object_type *type);
/* Modules: cv_registry_load_module(cv_gate_types_registry(t), ...) (objects/registry.h); the gate keeps
 * them loaded for the life of the process. */

/* 0 if type is known, else CV_ENOTFOUND with "unknown object type \"X\"" in err (err may be NULL). */
int cv_gate_types_find(const struct cv_gate_types *t, const char *type, char *err, size_t errlen);
/* The method of a type; CV_ENOTFOUND with "unknown object type \"X\"" or "object type \"X\" has no method
 * \"Y\"" in err. *out stays valid as long as the type. */
int cv_gate_types_method(const struct cv_gate_types *t, const char *type, const char *method,
                         const struct cv_method **out, char *err, size_t errlen);

#endif
