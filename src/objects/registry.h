/* Object-type registry: the object types a process knows, by name. Usable without a runtime (the gate
 * maps JSON through it); a runtime can use an external one (cv_runtime_opts.registry). */
#ifndef CV_OBJECTS_REGISTRY_H
#define CV_OBJECTS_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>

#include "cverse/object.h"

/* Allocates an empty registry (NULL on ENOMEM). Types are added with cv_register_type (object.h). */
cv_registry *cv_registry_new(void);
/* Frees the registry itself; the types are referenced, not copied, so nothing else is freed. NULL ok. */
void cv_registry_free(cv_registry *reg);

/* Type of that name, or NULL. The pointer is the one given to cv_register_type for a table-form type,
 * the registry's copy (with the method table built from the service) for a service-form type. */
const struct cv_object_type *cv_registry_type(const cv_registry *reg, const char *type);
/* Method `method` of the type named `type`, or NULL if either is unknown. */
const struct cv_method *cv_registry_method(const cv_registry *reg, const char *type, const char *method);
/* Method of a type already looked up (t may be NULL: gives NULL). */
const struct cv_method *cv_type_method(const struct cv_object_type *t, const char *method);

/* Registered types in registration order, for listings. */
size_t cv_registry_count(const cv_registry *reg);
const struct cv_object_type *cv_registry_type_at(const cv_registry *reg, size_t i);

/* After this, cv_register_type refuses new types with CV_EINVAL (a runtime freezes its registry when it
 * starts, so that the set of types never changes under running objects). */
void cv_registry_freeze(cv_registry *reg);
bool cv_registry_frozen(const cv_registry *reg);

/* Loads a module (dlopen, RTLD_NOW) and calls its cverse_module_init with reg. A bare "name.so" means the
 * file in the working directory, not a search of the library path. On success *handle (may be NULL) gets
 * the dlopen handle: the module must stay loaded as long as reg references its types (dlclose after
 * cv_registry_free, or never). On failure: CV_EIO (cannot load, or no cverse_module_init symbol) or the
 * init's own code (CV_EEXIST: a type is already registered), with one line in err; a module whose init
 * failed is unloaded and the types it registered before failing are removed (*handle is then NULL). */
int cv_registry_load_module(cv_registry *reg, const char *path, void **handle, char *err, size_t errlen);

#endif
