/* Compiled by typed_handlers.sh, never linked: a service-form type (include/cverse/object.h) whose handler
 * takes the wrong request type must not compile. Built once as is (it must compile) and once with
 * -DWRONG_REQUEST (it must fail with an incompatible-pointer-types error). */
#include <cverse/object.h>

#include "sharding_demo.pb-c.h"

#ifdef WRONG_REQUEST
typedef ShardingDemo__GetValueRequest IncrementIn; /* GetValue's request given to Increment */
#else
typedef ShardingDemo__IncrementRequest IncrementIn;
#endif

static void t_increment(ShardingDemo__SimpleCounter_Service *svc, const IncrementIn *in,
                        ShardingDemo__IncrementResponse_Closure done, void *call)
{
    ShardingDemo__IncrementResponse resp = SHARDING_DEMO__INCREMENT_RESPONSE__INIT;
    done(&resp, call);
}

static void t_get_value(ShardingDemo__SimpleCounter_Service *svc, const ShardingDemo__GetValueRequest *in,
                        ShardingDemo__GetValueResponse_Closure done, void *call)
{
    cv_call_fail_app(call, "NOPE", "never");
}

const struct cv_object_type typed_handler_type = {
    .name = "T",
    .service = CV_SERVICE(ShardingDemo__SimpleCounter_Service, SHARDING_DEMO__SIMPLE_COUNTER__INIT(t_)),
    .writes = CV_WRITES("Increment"),
};
