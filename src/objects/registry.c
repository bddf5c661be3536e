/* Object-type registry: a growable array of type pointers, searched linearly (a process registers a
 * handful of types). cv_register_type validates a description completely before accepting it, so that
 * the runtime and the gate never meet a half-described type. Failure modes: CV_EINVAL (incomplete
 * description, frozen registry), CV_EEXIST (name taken), CV_ENOMEM. A module whose init fails is
 * unloaded again, after the types it registered before failing are dropped (nothing points into it).
 * A service-form type (object.h) is kept as a copy whose method table is built from its service
 * descriptor, so that the runtime and the gate see every type as a method table. */
#include "objects/registry.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"
#include "util/buf.h"

struct cv_registry {
    const struct cv_object_type **types;
    void **owned; /* per type: the registry's copy of a service-form type (freed with it), or NULL */
    size_t n, cap, owned_cap;
    bool frozen;
};

cv_registry *cv_registry_new(void)
{
    return calloc(1, sizeof(struct cv_registry));
}

/* Forgets the types from index `from` on (a module's init failed, or the registry goes). */
static void registry__truncate(cv_registry *reg, size_t from)
{
    for (size_t i = from; i < reg->n; i++) free(reg->owned[i]);
    reg->n = from;
}

void cv_registry_free(cv_registry *reg)
{
    if (!reg) return;
    registry__truncate(reg, 0);
    free(reg->owned);
    free(reg->types);
    free(reg);
}

const struct cv_object_type *cv_registry_type(const cv_registry *reg, const char *type)
{
    if (!reg || !type) return NULL;
    for (size_t i = 0; i < reg->n; i++)
        if (strcmp(reg->types[i]->name, type) == 0) return reg->types[i];
    return NULL;
}

const struct cv_method *cv_type_method(const struct cv_object_type *t, const char *method)
{
    if (!t || !method) return NULL;
    for (size_t i = 0; i < t->n_methods; i++)
        if (strcmp(t->methods[i].name, method) == 0) return &t->methods[i];
    return NULL;
}

const struct cv_method *cv_registry_method(const cv_registry *reg, const char *type, const char *method)
{
    return cv_type_method(cv_registry_type(reg, type), method);
}

size_t cv_registry_count(const cv_registry *reg)
{
    return reg ? reg->n : 0;
}

const struct cv_object_type *cv_registry_type_at(const cv_registry *reg, size_t i)
{
    return reg && i < reg->n ? reg->types[i] : NULL;
}

void cv_registry_freeze(cv_registry *reg)
{
    reg->frozen = true;
}

bool cv_registry_frozen(const cv_registry *reg)
{
    return reg->frozen;
}

/* A service's handlers follow its base in descriptor order (protoc-c's layout, which
 * protobuf_c_service_invoke_internal reads the same way). */
typedef void (*registry__handler)(void);

static bool registry__writes(const struct cv_object_type *t, const char *method)
{
    for (const char *const *w = t->writes; w && *w; w++)
        if (strcmp(*w, method) == 0) return true;
    return false;
}

static int registry__validate_service(const struct cv_object_type *t)
{
    const ProtobufCServiceDescriptor *d = t->service->descriptor;
    if (t->methods || t->n_methods || !d || d->magic != PROTOBUF_C__SERVICE_DESCRIPTOR_MAGIC) return CV_EINVAL;
    const registry__handler *h = (const registry__handler *)(t->service + 1);
    for (unsigned i = 0; i < d->n_methods; i++)
        if (!h[i] || !d->methods[i].name || !d->methods[i].input || !d->methods[i].output) return CV_EINVAL;
    for (const char *const *w = t->writes; w && *w; w++) {
        unsigned i = 0;
        while (i < d->n_methods && strcmp(d->methods[i].name, *w) != 0) i++;
        if (i == d->n_methods) return CV_EINVAL; /* a typo would silently make a write read-only */
    }
    return 0;
}

/* The registry's copy of a service-form type, with its method table built from the descriptor: the
 * rows have no handler (object.c calls the service's own). One allocation, owned by the registry. */
static struct cv_object_type *registry__expand(const struct cv_object_type *t)
{
    const ProtobufCServiceDescriptor *d = t->service->descriptor;
    struct cv_object_type *copy = calloc(1, sizeof *copy + d->n_methods * sizeof(struct cv_method));
    if (!copy) return NULL;
    struct cv_method *m = (struct cv_method *)(copy + 1);
    for (unsigned i = 0; i < d->n_methods; i++)
        m[i] = (struct cv_method){d->methods[i].name, d->methods[i].input, d->methods[i].output, NULL,
                                  registry__writes(t, d->methods[i].name) ? CV_METHOD_WRITES : 0};
    *copy = *t;
    copy->methods = m;
    copy->n_methods = d->n_methods;
    return copy;
}

static int registry__validate(const struct cv_object_type *t)
{
    if (!t || !t->name || !t->name[0] || (t->n_methods && !t->methods)) return CV_EINVAL;
    if (t->service) {
        int rv = registry__validate_service(t);
        if (rv != 0) return rv;
    }
    for (size_t i = 0; i < t->n_methods; i++) {
        const struct cv_method *m = &t->methods[i];
        if (!m->name || !m->name[0] || !m->request || !m->response || !m->handler) return CV_EINVAL;
        for (size_t j = 0; j < i; j++)
            if (strcmp(t->methods[j].name, m->name) == 0) return CV_EINVAL;
    }
    /* A persisted state is a protobuf message the runtime allocates: nothing else can be saved. */
    if (t->persist < CV_PERSIST_NONE || t->persist > CV_PERSIST_PERIODIC) return CV_EINVAL;
    if (t->persist != CV_PERSIST_NONE && !t->state_message) return CV_EINVAL;
    if (t->state_message && (t->state_message->magic != PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC ||
                             (t->state_size && t->state_size != t->state_message->sizeof_message)))
        return CV_EINVAL;
    return 0;
}

int cv_register_type(cv_registry *reg, const struct cv_object_type *t)
{
    if (!reg || reg->frozen) return CV_EINVAL;
    int rv = registry__validate(t);
    if (rv != 0) return rv;
    if (cv_registry_type(reg, t->name)) return CV_EEXIST;
    rv = cv_array_grow((void **)&reg->types, &reg->cap, reg->n + 1, sizeof *reg->types);
    if (rv == 0) rv = cv_array_grow((void **)&reg->owned, &reg->owned_cap, reg->n + 1, sizeof *reg->owned);
    if (rv != 0) return rv;
    struct cv_object_type *copy = t->service ? registry__expand(t) : NULL;
    if (t->service && !copy) return CV_ENOMEM;
    reg->owned[reg->n] = copy;
    reg->types[reg->n++] = copy ? copy : t;
    return 0;
}

int cv_registry_load_module(cv_registry *reg, const char *path, void **handle, char *err, size_t errlen)
{
    char local[4096];
    if (!strchr(path, '/') && snprintf(local, sizeof local, "./%s", path) < (int)sizeof local) path = local;
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(err, errlen, "cannot load module %s: %s", path, dlerror());
        return CV_EIO;
    }
    cv_module_init_fn init;
    *(void **)&init = dlsym(h, CV_MODULE_INIT_SYMBOL); /* object -> function pointer, as POSIX allows */
    if (!init) {
        snprintf(err, errlen, "module %s does not export %s (see include/cverse/object.h)", path,
                 CV_MODULE_INIT_SYMBOL);
        dlclose(h);
        return CV_EIO;
    }
    if (handle) *handle = NULL;
    size_t before = reg->n;
    int rv = init(reg);
    if (rv == 0) {
        if (handle) *handle = h;
        return 0;
    }
    if (rv == CV_EEXIST)
        snprintf(err, errlen,
                 "module %s: %s failed: a type it registers is already registered (by an earlier "
                 "--module, or the built-in demo types)",
                 path, CV_MODULE_INIT_SYMBOL);
    else
        snprintf(err, errlen, "module %s: %s failed: %s (%s)", path, CV_MODULE_INIT_SYMBOL, cv_strerror(rv),
                 cv_errname(rv));
    /* Types registered before the failure point into the module: forget them, then unload it. */
    registry__truncate(reg, before);
    dlclose(h);
    return rv;
}
