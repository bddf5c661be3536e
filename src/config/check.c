/* Config checks that need the process' knowledge (check.h). Happy path: every auto-load entry's type is
 * known, nothing is written. Failure modes: the first unknown type gives CV_ECONFIG and a one-line message
 * "FILE:LINE: KEY: what is wrong" in the parser's format (cv_config_load), LINE being the entry's type
 * (a typo would otherwise only show as a node that never becomes ready). */
#include "config/check.h"

#include <stdio.h>

#include "cverse/error.h"

int cv_config_check_types(const struct cv_config *cfg, cv_config_type_known_fn known, void *data, char *err,
                          size_t errlen)
{
    for (size_t i = 0; i < cfg->n_autoload; i++) {
        const struct cv_autoload_cfg *a = &cfg->autoload[i];
        if (known(data, a->type)) continue;
        if (err && errlen)
            snprintf(err, errlen,
                     "%s:%d: cluster.auto_load_objects[%zu].type: unknown object type \"%s\" (id \"%s\"; load "
                     "the module that defines it with --module PATH.so)",
                     cfg->path, a->line, i, a->type, a->id);
        return CV_ECONFIG;
    }
    return 0;
}
