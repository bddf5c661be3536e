/* The SDK's cluster side (include/cverse/object.h): object-to-object calls, cv_object_create/delete,
 * the counts, cv_object_log and settings, served through the hosting node's hooks (cv_host_hooks).
 *
 * Happy path: a call is packed, routed by the host's call hook (or straight to cv_runtime_call without
 * one) and its packed answer is decoded again for the caller; create/delete go to the host's hooks.
 * Each holds a reference on the calling object until its callback ran, so the caller outlives it.
 *
 * Failure modes: without a hook the services answer as outside a node (CV_EUNAVAIL, or 0 for counts);
 * an answer that does not decode as the method's response (or a malformed application error) gives
 * CV_EPROTO; an application error's code and details are readable during the callback
 * (cv_object_call_app_error); a hook's synchronous error is
 * returned as is (and the callback then never fires). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/apperr.h"
#include "cverse/error.h"
#include "objects/object.h"
#include "util/log.h"

/* An object-to-object call: the packed path of cv_runtime_call, decoded again for the caller. */
struct services__call {
    struct cv_object *caller;
    cv_object_call_cb cb;
    void *data;
    const ProtobufCMessageDescriptor *response;
};

static void services__call_done(void *data, int status, const char *error, const uint8_t *resp, size_t len)
{
    struct services__call *c = data;
    ProtobufCMessage *msg = NULL;
    if (status == 0) {
        msg = protobuf_c_message_unpack(c->response, NULL, len, resp);
        if (!msg) status = CV_EPROTO;
    }
    if (status != 0 && !error) error = cv_strerror(status);
    struct cv_app_error app;
    if (status == CV_EAPP && cv_apperr_parse(resp, len, error, &app) != 0) status = CV_EPROTO;
    struct cv_runtime *rt = c->caller->rt;
    const struct cv_app_error *outer = rt->call_app; /* a callback may run inside another's */
    rt->call_app = status == CV_EAPP ? &app : NULL;
    c->cb(c->caller, c->data, status, status == 0 ? NULL : error, msg);
    rt->call_app = outer;
    if (msg) protobuf_c_message_free_unpacked(msg, NULL);
    obj__unref(c->caller);
    free(c);
}

const struct cv_app_error *cv_object_call_app_error(const cv_object *caller)
{
    return caller ? caller->rt->call_app : NULL;
}

int cv_object_call(cv_object *o, const char *type, const char *id, const char *method,
                   const ProtobufCMessage *req, cv_object_call_cb cb, void *data)
{
    return cv_object_call_reliable(o, type, id, method, req, NULL, cb, data);
}

int cv_object_call_reliable(cv_object *o, const char *type, const char *id, const char *method,
                            const ProtobufCMessage *req, const char *call_id, cv_object_call_cb cb, void *data)
{
    if (call_id && !*call_id) call_id = NULL;
    if (call_id && strlen(call_id) > CV_CALL_ID_MAX) return CV_EINVAL;
    if (!o || !type || !id || !method || !req || !cb) return CV_EINVAL;
    struct cv_runtime *rt = o->rt;
    const struct cv_method *m = cv_registry_method(rt->reg, type, method);
    if (!m) return CV_ENOTFOUND;
    if (!obj__same_message(req->descriptor, m->request)) return CV_EINVAL;
    if (rt->closing) return CV_ECLOSED;
    size_t len = protobuf_c_message_get_packed_size(req);
    uint8_t *buf = malloc(len ? len : 1);
    struct services__call *c = malloc(sizeof *c);
    int rv = CV_ENOMEM;
    if (!buf || !c) goto err;
    protobuf_c_message_pack(req, buf);
    *c = (struct services__call){o, cb, data, m->response};
    /* The original caller's identity goes along, marked internal (object_access_rules INTERNAL); outside
     * a method (a timer, a callback) the call is the object's own: no user. */
    const struct cv_caller *now = rt->caller;
    struct cv_caller who = {now ? now->user_id : "", now ? now->roles : "", true};
    struct cv_call_ctx ctx = {.call_id = call_id, .caller = &who};
    if (rt->hooks.call) /* the host routes: here or another node */
        rv = rt->hooks.call(rt->hooks.data, type, id, method, buf, len, &ctx, services__call_done, c);
    else
        rv = cv_runtime_call_ctx(rt, type, id, method, buf, len, &ctx, services__call_done, c);
    if (rv != 0) goto err;
    o->refs++; /* released in services__call_done */
    free(buf);
    return 0;

err:
    free(c);
    free(buf);
    return rv;
}

/* A create/delete on behalf of an object: holds a reference so that `caller` outlives the callback. */
struct services__op {
    struct cv_object *caller;
    cv_object_done_cb cb;
    void *data;
};

static void services__op_done(void *data, int status, const char *error)
{
    struct services__op *d = data;
    if (status != 0 && !error) error = cv_strerror(status);
    d->cb(d->caller, d->data, status, status ? error : NULL);
    obj__unref(d->caller);
    free(d);
}

typedef int (*services__op_fn)(void *data, const char *type, const char *id, cv_host_done_cb cb,
                               void *cb_data);

static int services__op(cv_object *o, services__op_fn fn, const char *type, const char *id,
                        cv_object_done_cb cb, void *data)
{
    if (!o || !type || !id || !cb) return CV_EINVAL;
    struct cv_runtime *rt = o->rt;
    if (!fn) return CV_EUNAVAIL;
    if (rt->closing) return CV_ECLOSED;
    if (!cv_registry_type(rt->reg, type)) return CV_ENOTFOUND;
    struct cv_placement p;
    if (cv_placement_parse(id, rt->shards, &p) != 0) return CV_EINVAL;
    struct services__op *d = malloc(sizeof *d);
    if (!d) return CV_ENOMEM;
    *d = (struct services__op){o, cb, data};
    int rv = fn(rt->hooks.data, type, id, services__op_done, d);
    if (rv != 0) {
        free(d);
        return rv;
    }
    o->refs++; /* released in services__op_done */
    return 0;
}

int cv_object_create(cv_object *o, const char *type, const char *id, cv_object_done_cb cb, void *data)
{
    return services__op(o, o ? o->rt->hooks.create_object : NULL, type, id, cb, data);
}

int cv_object_delete(cv_object *o, const char *type, const char *id, cv_object_done_cb cb, void *data)
{
    return services__op(o, o ? o->rt->hooks.delete_object : NULL, type, id, cb, data);
}

uint32_t cv_object_cluster_shards(const cv_object *o)
{
    return o->rt->shards;
}

bool cv_object_node_owns_shard(const cv_object *o, uint32_t shard)
{
    const struct cv_runtime *rt = o->rt;
    if (shard >= rt->shards) return false;
    return rt->owns ? rt->owns(rt->owns_data, shard) : true; /* no owns: every shard (opts) */
}

uint32_t cv_object_node_shard_count(const cv_object *o)
{
    const struct cv_runtime *rt = o->rt;
    if (rt->hooks.node_shards) return rt->hooks.node_shards(rt->hooks.data);
    return rt->owns ? 0 : rt->shards;
}

size_t cv_object_node_object_count(const cv_object *o)
{
    return cv_runtime_count(o->rt);
}

size_t cv_object_shard_object_count(const cv_object *o, uint32_t shard)
{
    return cv_runtime_shard_count(o->rt, shard);
}

size_t cv_object_cluster_node_count(const cv_object *o)
{
    const struct cv_runtime *rt = o->rt;
    return rt->hooks.cluster_nodes ? rt->hooks.cluster_nodes(rt->hooks.data) : 0;
}

size_t cv_object_cluster_object_count(const cv_object *o)
{
    const struct cv_runtime *rt = o->rt;
    return rt->hooks.cluster_objects ? rt->hooks.cluster_objects(rt->hooks.data) : 0;
}

void cv_object_log(const cv_object *o, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    CV_INFO("%s", line);
}

uint64_t cv_object_setting_u64(const char *name, uint64_t dflt)
{
    const char *v = name ? getenv(name) : NULL;
    if (!v || !*v) return dflt;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || *end || *v == '-') {
        CV_WARN("setting %s=\"%s\" is not an unsigned integer: using %llu", name, v, (unsigned long long)dflt);
        return dflt;
    }
    return (uint64_t)x;
}

/* ---- push to clients: the host's push hook packs and routes (node/push.h) ---- */

int cv_object_push(cv_object *o, const char *client_id, const ProtobufCMessage *msg)
{
    if (!o || !msg || !client_id || !*client_id) return CV_EINVAL;
    struct cv_runtime *rt = o->rt;
    if (!rt->hooks.push) return CV_EUNAVAIL;
    return rt->hooks.push(rt->hooks.data, client_id, msg);
}

int cv_object_broadcast(cv_object *o, const ProtobufCMessage *msg)
{
    if (!o || !msg) return CV_EINVAL;
    struct cv_runtime *rt = o->rt;
    if (!rt->hooks.push) return CV_EUNAVAIL;
    return rt->hooks.push(rt->hooks.data, NULL, msg);
}
