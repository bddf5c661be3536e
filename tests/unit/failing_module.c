/* A module whose cverse_module_init registers a type and then fails: test_objects checks that
 * cv_registry_load_module unloads it again and forgets the type it registered. */
#include "cverse/error.h"
#include "cverse/object.h"

static const struct cv_object_type failing_type = {.name = "FailingModuleType"};

__attribute__((visibility("default"))) int cverse_module_init(cv_registry *reg)
{
    int rv = cv_register_type(reg, &failing_type);
    return rv ? rv : CV_EINVAL;
}
