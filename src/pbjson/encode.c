/* protobuf-c message -> proto3 JSON, driven only by the message's descriptor.
 *
 * Happy path: cv_pbjson_to_json walks the descriptor's fields, skips those at their default (unless the
 * set member of a oneof, or CV_PBJSON_EMIT_DEFAULTS asks for them), and builds a jansson object: 64-bit integers as strings, bytes as standard
 * padded base64, enums by name, maps as JSON objects keyed by the entry's key.
 *
 * Failure modes: a string that is not UTF-8 or nesting past CV_PBJSON_MAX_DEPTH gives CV_EINVAL with a
 * "path: problem" message; allocation failures give CV_ENOMEM. The partial JSON is released on error. */
#include "pbjson/encode.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"
#include "pbjson/any.h"
#include "pbjson/pbjson.h" /* CV_PBJSON_MAX_DEPTH */
#include "pbjson/walk.h"

/* ---------------------------------------------------------------------------------------------------
 * Message -> JSON. Functions returning json_t * return NULL after recording an error in c. */

static json_t *pbjson__msg_to_json(struct pbjson__ctx *c, const ProtobufCMessage *m);

static json_t *pbjson__checked(struct pbjson__ctx *c, json_t *v)
{
    if (!v) pbjson__oom(c);
    return v;
}

static json_t *pbjson__double_to_json(struct pbjson__ctx *c, double d)
{
    if (isnan(d)) return pbjson__checked(c, json_string("NaN"));
    if (isinf(d)) return pbjson__checked(c, json_string(d > 0 ? "Infinity" : "-Infinity"));
    return pbjson__checked(c, json_real(d));
}

/* A float is emitted as the double nearest its shortest round-tripping decimal form, so 0.1f reads
 * as 0.1 rather than 0.10000000149011612. */
static json_t *pbjson__float_to_json(struct pbjson__ctx *c, float f)
{
    char buf[32];
    if (!isfinite(f)) return pbjson__double_to_json(c, f);
    for (int p = 1; p <= 9; p++) { /* checked the way it is parsed back: strtod, then to float */
        snprintf(buf, sizeof buf, "%.*g", p, (double)f);
        if ((float)strtod(buf, NULL) == f) return pbjson__checked(c, json_real(strtod(buf, NULL)));
    }
    return pbjson__checked(c, json_real(f)); /* exact, if long */
}

static json_t *pbjson__string_to_json(struct pbjson__ctx *c, const char *s)
{
    if (!s) s = "";
    size_t n = strlen(s);
    if (!pbjson__utf8_valid(s, n)) {
        pbjson__fail(c, CV_EINVAL, "string is not valid UTF-8");
        return NULL;
    }
    return pbjson__checked(c, json_stringn_nocheck(s, n));
}

static json_t *pbjson__bytes_to_json(struct pbjson__ctx *c, const ProtobufCBinaryData *b)
{
    char *s;
    size_t n;
    if (cv_pbjson_b64_encode(b->data, b->data ? b->len : 0, &s, &n) != 0) return pbjson__checked(c, NULL);
    json_t *v = json_stringn_nocheck(s, n);
    free(s);
    return pbjson__checked(c, v);
}

static json_t *pbjson__enum_to_json(struct pbjson__ctx *c, const ProtobufCEnumDescriptor *ed, int x)
{
    const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(ed, x);
    return pbjson__checked(c, ev ? json_string(ev->name) : json_integer(x));
}

static json_t *pbjson__value_to_json(struct pbjson__ctx *c, const ProtobufCFieldDescriptor *f,
                                     const void *slot)
{
    char buf[24];
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        return pbjson__checked(c, json_integer(*(const int32_t *)slot));
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return pbjson__checked(c, json_integer(*(const uint32_t *)slot));
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        snprintf(buf, sizeof buf, "%" PRId64, *(const int64_t *)slot);
        return pbjson__checked(c, json_string(buf));
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        snprintf(buf, sizeof buf, "%" PRIu64, *(const uint64_t *)slot);
        return pbjson__checked(c, json_string(buf));
    case PROTOBUF_C_TYPE_FLOAT:
        return pbjson__float_to_json(c, *(const float *)slot);
    case PROTOBUF_C_TYPE_DOUBLE:
        return pbjson__double_to_json(c, *(const double *)slot);
    case PROTOBUF_C_TYPE_BOOL:
        return pbjson__checked(c, json_boolean(*(const protobuf_c_boolean *)slot));
    case PROTOBUF_C_TYPE_ENUM:
        return pbjson__enum_to_json(c, f->descriptor, *(const int *)slot);
    case PROTOBUF_C_TYPE_STRING:
        return pbjson__string_to_json(c, *(char *const *)slot);
    case PROTOBUF_C_TYPE_BYTES:
        return pbjson__bytes_to_json(c, slot);
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(ProtobufCMessage *const *)slot;
        return sub ? pbjson__msg_to_json(c, sub) : pbjson__checked(c, json_object()); /* unset map value */
    }
    }
    pbjson__fail(c, CV_EINVAL, "unsupported field type %d", (int)f->type);
    return NULL;
}

static json_t *pbjson__list_to_json(struct pbjson__ctx *c, const ProtobufCFieldDescriptor *f, const char *arr,
                                    size_t n)
{
    json_t *a = json_array();
    size_t esz = pbjson__elt_size(f->type);
    if (!a) return pbjson__checked(c, NULL);
    for (size_t i = 0; i < n; i++) {
        size_t mark = pbjson__push(c, "[%zu]", i);
        json_t *v = pbjson__value_to_json(c, f, arr + i * esz);
        pbjson__pop(c, mark);
        if (!v) goto err_after_array;
        if (json_array_append_new(a, v)) {
            pbjson__oom(c);
            goto err_after_array;
        }
    }
    return a;
err_after_array:
    json_decref(a);
    return NULL;
}

/* The JSON object key of a map entry's key (numbers are formatted into buf). */
static const char *pbjson__map_key_text(struct pbjson__ctx *c, const ProtobufCFieldDescriptor *kf,
                                        const void *slot, char *buf, size_t cap)
{
    const char *s;
    switch (kf->type) {
    case PROTOBUF_C_TYPE_STRING:
        s = *(char *const *)slot ? *(char *const *)slot : "";
        if (!pbjson__utf8_valid(s, strlen(s))) {
            pbjson__fail(c, CV_EINVAL, "map key is not valid UTF-8");
            return NULL;
        }
        return s;
    case PROTOBUF_C_TYPE_BOOL:
        return *(const protobuf_c_boolean *)slot ? "true" : "false";
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        snprintf(buf, cap, "%" PRId32, *(const int32_t *)slot);
        return buf;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        snprintf(buf, cap, "%" PRIu32, *(const uint32_t *)slot);
        return buf;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        snprintf(buf, cap, "%" PRIu64, *(const uint64_t *)slot);
        return buf;
    default: /* 64-bit signed; pbjson__is_map admits no other key type */
        snprintf(buf, cap, "%" PRId64, *(const int64_t *)slot);
        return buf;
    }
}

static json_t *pbjson__map_to_json(struct pbjson__ctx *c, const ProtobufCFieldDescriptor *f,
                                   ProtobufCMessage *const *arr, size_t n)
{
    const ProtobufCMessageDescriptor *ed = f->descriptor;
    const ProtobufCFieldDescriptor *kf = &ed->fields[0], *vf = &ed->fields[1];
    json_t *o = json_object();
    char buf[24];
    if (!o) return pbjson__checked(c, NULL);
    for (size_t i = 0; i < n; i++) {
        if (!arr[i]) continue;
        const char *e = (const char *)arr[i],
                   *key = pbjson__map_key_text(c, kf, e + kf->offset, buf, sizeof buf);
        if (!key) goto err_after_object;
        size_t mark = pbjson__push_map_key(c, key, strlen(key));
        json_t *v = pbjson__value_to_json(c, vf, e + vf->offset);
        pbjson__pop(c, mark);
        if (!v) goto err_after_object;
        if (json_object_set_new_nocheck(o, key, v)) { /* a later duplicate key wins, as in protobuf */
            pbjson__oom(c);
            goto err_after_object;
        }
    }
    return o;
err_after_object:
    json_decref(o);
    return NULL;
}

static int pbjson__is_zero(const ProtobufCFieldDescriptor *f, const void *slot)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_FLOAT:
        return *(const float *)slot == 0 && !signbit(*(const float *)slot);
    case PROTOBUF_C_TYPE_DOUBLE:
        return *(const double *)slot == 0 && !signbit(*(const double *)slot);
    case PROTOBUF_C_TYPE_BOOL:
        return !*(const protobuf_c_boolean *)slot;
    case PROTOBUF_C_TYPE_ENUM:
        return *(const int *)slot == 0;
    case PROTOBUF_C_TYPE_STRING:
        return !*(char *const *)slot || !**(char *const *)slot;
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *)slot)->len == 0;
    case PROTOBUF_C_TYPE_MESSAGE:
        return !*(ProtobufCMessage *const *)slot;
    default: /* integers */
        return pbjson__elt_size(f->type) == 8 ? *(const uint64_t *)slot == 0 : *(const uint32_t *)slot == 0;
    }
}

/* Whether field f of m is emitted: set oneof members and proto2 present fields always, proto3
 * implicit-presence fields only when not at their zero value. */
static int pbjson__present(const ProtobufCFieldDescriptor *f, const ProtobufCMessage *m)
{
    const char *base = (const char *)m;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        return *(const uint32_t *)(base + f->quantifier_offset) == f->id;
    switch (f->label) {
    case PROTOBUF_C_LABEL_REPEATED:
        return *(const size_t *)(base + f->quantifier_offset) > 0;
    case PROTOBUF_C_LABEL_REQUIRED:
        return 1;
    case PROTOBUF_C_LABEL_OPTIONAL:
        if (pbjson__has_flag(f)) return *(const protobuf_c_boolean *)(base + f->quantifier_offset);
        /* like protobuf-c's packer: a string still pointing at its default is not set */
        return *(void *const *)(base + f->offset) && *(void *const *)(base + f->offset) != f->default_value;
    default:
        return !pbjson__is_zero(f, base + f->offset);
    }
}

static json_t *pbjson__field_to_json(struct pbjson__ctx *c, const ProtobufCMessageDescriptor *d,
                                     const ProtobufCFieldDescriptor *f, const ProtobufCMessage *m)
{
    const char *base = (const char *)m;
    if (f->label != PROTOBUF_C_LABEL_REPEATED) return pbjson__value_to_json(c, f, base + f->offset);
    size_t n = *(const size_t *)(base + f->quantifier_offset);
    const void *arr = *(void *const *)(base + f->offset);
    if (!arr) return pbjson__checked(c, pbjson__is_map(d, f) ? json_object() : json_array());
    return pbjson__is_map(d, f) ? pbjson__map_to_json(c, f, arr, n) : pbjson__list_to_json(c, f, arr, n);
}

/* Whether f, not present, is emitted at its default (CV_PBJSON_EMIT_DEFAULTS): fields without explicit
 * presence only. */
static int pbjson__emit_default(const struct pbjson__ctx *c, const ProtobufCFieldDescriptor *f)
{
    return (c->flags & CV_PBJSON_EMIT_DEFAULTS) && !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
           !pbjson__has_flag(f) && f->label != PROTOBUF_C_LABEL_REQUIRED;
}

/* The JSON of a field at its default: [] / {} for a repeated one, null for an unset message, "" for an
 * unset string, else its (zero) value. */
static json_t *pbjson__default_to_json(struct pbjson__ctx *c, const ProtobufCMessageDescriptor *d,
                                       const ProtobufCFieldDescriptor *f, const ProtobufCMessage *m)
{
    const void *at = (const char *)m + f->offset;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) return pbjson__field_to_json(c, d, f, m);
    if (f->type == PROTOBUF_C_TYPE_MESSAGE && !*(void *const *)at) return pbjson__checked(c, json_null());
    if (f->type == PROTOBUF_C_TYPE_STRING && !*(void *const *)at) return pbjson__checked(c, json_string(""));
    return pbjson__value_to_json(c, f, at);
}

static json_t *pbjson__msg_to_json(struct pbjson__ctx *c, const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    if (c->depth >= CV_PBJSON_MAX_DEPTH) {
        pbjson__fail(c, CV_EINVAL, "messages nested deeper than %d", CV_PBJSON_MAX_DEPTH);
        return NULL;
    }
    json_t *o = json_object();
    if (!o) return pbjson__checked(c, NULL);
    c->depth++;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        int present = pbjson__present(f, m);
        if (!present && !pbjson__emit_default(c, f)) continue;
        char stack[64], *name = strlen(f->name) < sizeof stack ? stack : malloc(strlen(f->name) + 1);
        if (!name) goto err_after_object;
        pbjson__json_name(f->name, name);
        size_t mark = pbjson__push(c, "%s%s", c->plen ? "." : "", name);
        json_t *v = present ? pbjson__field_to_json(c, d, f, m) : pbjson__default_to_json(c, d, f, m);
        pbjson__pop(c, mark);
        int rc = v ? json_object_set_new_nocheck(o, name, v) : -1;
        if (name != stack) free(name);
        if (rc) goto err_after_object;
    }
    c->depth--;
    return o;
err_after_object:
    c->depth--;
    pbjson__oom(c); /* no-op if the cause was recorded already */
    json_decref(o);
    return NULL;
}

int cv_pbjson_to_json(const ProtobufCMessage *m, json_t **out, char *err, size_t errlen)
{
    return cv_pbjson_to_json_ex(m, 0, out, err, errlen);
}

int cv_pbjson_to_json_ex(const ProtobufCMessage *m, unsigned flags, json_t **out, char *err, size_t errlen)
{
    struct pbjson__ctx c;
    pbjson__ctx_init(&c, NULL, err, errlen);
    c.flags = flags;
    if (out) *out = NULL;
    if (!m || !m->descriptor || m->descriptor->magic != PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC || !out)
        return pbjson__fail(&c, CV_EINVAL, "invalid arguments");
    json_t *o = pbjson__msg_to_json(&c, m);
    if (!o) return c.rc ? c.rc : CV_ENOMEM;
    *out = o;
    return 0;
}
