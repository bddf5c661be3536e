/* Checks of a parsed config against what the process knows (the object types it registered), with the
 * config file's line in every message, like the parser's own errors. */
#ifndef CV_CONFIG_CHECK_H
#define CV_CONFIG_CHECK_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"

/* Is type registered? data: the caller's (e.g. a registry). */
typedef bool (*cv_config_type_known_fn)(void *data, const char *type);

/* Every cluster.auto_load_objects entry names a known type: 0, else CV_ECONFIG with one line in err (may
 * be NULL): "FILE:LINE: cluster.auto_load_objects[I].type: unknown object type "T" (...)" for the first
 * unknown one. */
int cv_config_check_types(const struct cv_config *cfg, cv_config_type_known_fn known, void *data, char *err,
                          size_t errlen);

#endif
