/* The config's object settings: the `object_types:` mapping (per-type persistence overrides) and
 * `object_state_max_bytes`, parsed from the root mapping of a loaded YAML document. Internal to config. */
#ifndef CV_CONFIG_OBJTYPES_H
#define CV_CONFIG_OBJTYPES_H

#include <stddef.h>
#include <yaml.h>

#include "config/config.h"

/* The root keys read here (config.c accepts them at the root). */
#define CV_CONFIG_OBJECT_KEYS "object_types", "object_state_max_bytes"

/* Reads both keys of root (absent: no overrides, the default limit) into cfg. 0; CV_ECONFIG with one line
 * "FILE:LINE: KEY.PATH: what is wrong (expected ...)" in err; CV_ENOMEM. */
int cv_config_objects(yaml_document_t *doc, yaml_node_t *root, const char *file, struct cv_config *cfg,
                      char *err, size_t errlen);
/* Frees what cv_config_objects allocated in cfg. */
void cv_config_objects_free(struct cv_config *cfg);

#endif
