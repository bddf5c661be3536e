/* proto3 JSON -> protobuf-c message, driven only by the message's descriptor.
 *
 * Happy path: cv_pbjson_from_json allocates the root message with the default allocator (calloc +
 * the descriptor's init), then walks the JSON object key by key, finds each field by proto or JSON
 * name and writes the converted value at the field's offset, allocating strings, bytes, repeated
 * arrays and sub-messages with malloc exactly where protobuf-c's unpacker would. The result is thus
 * freed by protobuf_c_message_free_unpacked(m, NULL). Maps are protobuf-c's repeated "<Field>Entry"
 * messages with fields key = 1, value = 2.
 *
 * Failure modes: every mismatch between the JSON and the descriptor (unknown key, wrong JSON type,
 * fraction or overflow, bad base64, unknown enum name, a field given twice, two members of a oneof,
 * nesting past CV_PBJSON_MAX_DEPTH) stops the walk with CV_EINVAL and a one-line "path: problem"
 * message (user text in it is cut short and made printable, valid UTF-8). The message being built is
 * kept consistent at every step (array counts are bumped before an element is filled, a oneof case
 * is set before its member), so on any error the partial message is simply free_unpacked. Numbers are
 * converted exactly: strings in JSON number syntax are parsed as decimals, never through a double. */
#include "pbjson/decode.h"

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
 * Numbers. Integers are carried as sign + 64-bit magnitude so every 64-bit value is exact. */

enum { PBJSON__NUM_OK, PBJSON__NUM_TYPE, PBJSON__NUM_SYNTAX, PBJSON__NUM_FRAC, PBJSON__NUM_RANGE };

/* A number in JSON syntax, split: digits ip[0, il) . fp[0, fl) times 10^exp. */
struct pbjson__dec {
    int neg;
    const char *ip, *fp;
    size_t il, fl;
    long exp;
};

/* 1 if s[0, n) is exactly the literal lit (s may hold NULs). */
static int pbjson__str_is(const char *s, size_t n, const char *lit)
{
    return n == strlen(lit) && memcmp(s, lit, n) == 0;
}

static int pbjson__is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

/* Scans s[0, n) as exactly one JSON number (no sign '+', no leading zeros, no spaces). The exponent
 * saturates past n + 40, where its size alone decides the outcome (fraction or overflow). */
static int pbjson__dec_scan(const char *s, size_t n, struct pbjson__dec *x)
{
    size_t i = 0;
    memset(x, 0, sizeof *x);
    if (i < n && s[i] == '-') x->neg = 1, i++;
    if (i >= n || !pbjson__is_digit(s[i])) return PBJSON__NUM_SYNTAX;
    x->ip = s + i;
    if (s[i] == '0')
        i++;
    else
        while (i < n && pbjson__is_digit(s[i])) i++;
    x->il = (size_t)(s + i - x->ip);
    if (i < n && s[i] == '.') {
        x->fp = s + ++i;
        while (i < n && pbjson__is_digit(s[i])) i++;
        if ((x->fl = (size_t)(s + i - x->fp)) == 0) return PBJSON__NUM_SYNTAX;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        int eneg = 0;
        if (++i < n && (s[i] == '+' || s[i] == '-')) eneg = s[i++] == '-';
        if (i >= n || !pbjson__is_digit(s[i])) return PBJSON__NUM_SYNTAX;
        for (; i < n && pbjson__is_digit(s[i]); i++)
            if (x->exp <= (long)n + 40) x->exp = x->exp * 10 + (s[i] - '0');
        if (eneg) x->exp = -x->exp;
    }
    return i == n ? PBJSON__NUM_OK : PBJSON__NUM_SYNTAX;
}

static char pbjson__dec_digit(const struct pbjson__dec *x, size_t k)
{
    return k < x->il ? x->ip[k] : x->fp[k - x->il];
}

/* Exact integer value of a scanned number as a magnitude: FRAC if it has a fractional part, RANGE
 * if it is 2^64 or more. */
static int pbjson__dec_value(const struct pbjson__dec *x, uint64_t *mag)
{
    size_t total = x->il + x->fl, a = 0, b = total;
    *mag = 0;
    while (a < total && pbjson__dec_digit(x, a) == '0') a++;
    if (a == total) return PBJSON__NUM_OK; /* zero, whatever the exponent */
    while (pbjson__dec_digit(x, b - 1) == '0') b--;
    /* value = digits[a, b) * 10^e */
    long e = x->exp - (long)x->fl + (long)(total - b);
    if (e < 0) return PBJSON__NUM_FRAC;
    if ((long)(b - a) + e > 20) return PBJSON__NUM_RANGE;
    for (size_t k = a; k < b; k++) {
        unsigned dg = (unsigned)(pbjson__dec_digit(x, k) - '0');
        if (*mag > (UINT64_MAX - dg) / 10) return PBJSON__NUM_RANGE;
        *mag = *mag * 10 + dg;
    }
    for (; e > 0; e--) {
        if (*mag > UINT64_MAX / 10) return PBJSON__NUM_RANGE;
        *mag *= 10;
    }
    return PBJSON__NUM_OK;
}

static int pbjson__dec_int(const char *s, size_t n, int *neg, uint64_t *mag)
{
    struct pbjson__dec x;
    int cls = pbjson__dec_scan(s, n, &x);
    *neg = x.neg;
    *mag = 0;
    return cls ? cls : pbjson__dec_value(&x, mag);
}

/* Exact integer in a JSON value: an integer, an integral real, or a string in number syntax. */
static int pbjson__json_int(const json_t *v, int *neg, uint64_t *mag)
{
    *neg = 0;
    *mag = 0;
    if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        *neg = x < 0;
        *mag = x < 0 ? (uint64_t)(-(x + 1)) + 1 : (uint64_t)x;
        return PBJSON__NUM_OK;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!isfinite(d) || fabs(d) >= 18446744073709551616.0) return PBJSON__NUM_RANGE;
        if (d != trunc(d)) return PBJSON__NUM_FRAC;
        *neg = d < 0;
        *mag = (uint64_t)fabs(d);
        return PBJSON__NUM_OK;
    }
    if (json_is_string(v)) return pbjson__dec_int(json_string_value(v), json_string_length(v), neg, mag);
    return PBJSON__NUM_TYPE;
}

static int pbjson__num_fail(struct pbjson__ctx *c, int cls, const char *what)
{
    switch (cls) {
    case PBJSON__NUM_SYNTAX:
        return pbjson__fail(c, CV_EINVAL, "expected %s, got a string that is not a number", what);
    case PBJSON__NUM_FRAC:
        return pbjson__fail(c, CV_EINVAL, "expected %s, got a fractional number", what);
    case PBJSON__NUM_RANGE:
        return pbjson__fail(c, CV_EINVAL, "value out of range for %s", what);
    default:
        return pbjson__fail(c, CV_EINVAL, "expected %s", what);
    }
}

/* Range-checks sign + magnitude for integer type t and stores it at slot. */
static int pbjson__int_store(struct pbjson__ctx *c, ProtobufCType t, int cls, int neg, uint64_t mag,
                             void *slot)
{
    int sig = t == PROTOBUF_C_TYPE_INT32 || t == PROTOBUF_C_TYPE_SINT32 || t == PROTOBUF_C_TYPE_SFIXED32 ||
              t == PROTOBUF_C_TYPE_INT64 || t == PROTOBUF_C_TYPE_SINT64 || t == PROTOBUF_C_TYPE_SFIXED64;
    int wide = pbjson__elt_size(t) == 8;
    const char *what = sig ? (wide ? "int64" : "int32") : (wide ? "uint64" : "uint32");
    if (cls == PBJSON__NUM_TYPE) return pbjson__fail(c, CV_EINVAL, "expected integer");
    if (cls) return pbjson__num_fail(c, cls, what);
    if (sig) {
        uint64_t lim = neg ? (wide ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT32_MAX + 1)
                           : (wide ? (uint64_t)INT64_MAX : (uint64_t)INT32_MAX);
        if (mag > lim) return pbjson__num_fail(c, PBJSON__NUM_RANGE, what);
        int64_t x = !neg ? (int64_t)mag : mag == 0 ? 0 : -(int64_t)(mag - 1) - 1;
        if (wide)
            *(int64_t *)slot = x;
        else
            *(int32_t *)slot = (int32_t)x;
        return 0;
    }
    if ((neg && mag != 0) || (!wide && mag > UINT32_MAX)) return pbjson__num_fail(c, PBJSON__NUM_RANGE, what);
    if (wide)
        *(uint64_t *)slot = mag;
    else
        *(uint32_t *)slot = (uint32_t)mag;
    return 0;
}

/* A double from a JSON number, "NaN", "Infinity", "-Infinity" or a string in number syntax. */
static int pbjson__json_double(struct pbjson__ctx *c, const json_t *v, double *out)
{
    if (json_is_number(v)) {
        *out = json_number_value(v);
        return 0;
    }
    if (!json_is_string(v)) return pbjson__fail(c, CV_EINVAL, "expected number");
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    struct pbjson__dec x;
    if (pbjson__str_is(s, n, "NaN"))
        *out = NAN;
    else if (pbjson__str_is(s, n, "Infinity"))
        *out = INFINITY;
    else if (pbjson__str_is(s, n, "-Infinity"))
        *out = -INFINITY;
    else if (pbjson__dec_scan(s, n, &x) != PBJSON__NUM_OK)
        return pbjson__num_fail(c, PBJSON__NUM_SYNTAX, "number");
    else if (!isfinite(*out = strtod(s, NULL)))
        return pbjson__num_fail(c, PBJSON__NUM_RANGE, "double");
    return 0;
}

/* Converts to float as Go's ParseFloat(s, 32) does: values that round to FLT_MAX are FLT_MAX, larger
 * finite ones are out of range. */
static int pbjson__to_float(struct pbjson__ctx *c, double d, float *out)
{
    static const double limit = 0x1.ffffffp127; /* halfway between FLT_MAX and 2^128 */
    if (isfinite(d) && fabs(d) > FLT_MAX) {
        if (fabs(d) >= limit) return pbjson__num_fail(c, PBJSON__NUM_RANGE, "float");
        d = copysign(FLT_MAX, d);
    }
    *out = (float)d;
    return 0;
}

/* ---------------------------------------------------------------------------------------------------
 * JSON -> message. */

static int pbjson__msg_from_json(struct pbjson__ctx *c, const ProtobufCMessageDescriptor *d, const json_t *v,
                                 ProtobufCMessage *m);

static int pbjson__enum_from_json(struct pbjson__ctx *c, const ProtobufCEnumDescriptor *ed, const json_t *v,
                                  int *slot)
{
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        const ProtobufCEnumValue *ev =
            strlen(s) == n ? protobuf_c_enum_descriptor_get_value_by_name(ed, s) : NULL;
        char q[PBJSON__QUOTE_MAX + 4];
        if (!ev)
            return pbjson__fail(c, CV_EINVAL, "unknown value \"%s\" of enum %s", pbjson__quote(s, n, q),
                                ed->name);
        *slot = ev->value;
        return 0;
    }
    if (!json_is_number(v)) return pbjson__fail(c, CV_EINVAL, "expected enum name or number");
    int neg, cls;
    uint64_t mag;
    int32_t x;
    cls = pbjson__json_int(v, &neg, &mag);
    if ((cls = pbjson__int_store(c, PROTOBUF_C_TYPE_INT32, cls, neg, mag, &x)) != 0) return cls;
    *slot = x;
    return 0;
}

static int pbjson__string_from_json(struct pbjson__ctx *c, const json_t *v, char **slot)
{
    if (!json_is_string(v)) return pbjson__fail(c, CV_EINVAL, "expected string");
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (memchr(s, '\0', n)) return pbjson__fail(c, CV_EINVAL, "string contains a NUL character");
    char *p = malloc(n + 1);
    if (!p) return pbjson__oom(c);
    memcpy(p, s, n + 1);
    *slot = p;
    return 0;
}

static int pbjson__bytes_from_json(struct pbjson__ctx *c, const json_t *v, ProtobufCBinaryData *slot)
{
    if (!json_is_string(v)) return pbjson__fail(c, CV_EINVAL, "expected base64 string");
    uint8_t *b;
    size_t n;
    int rc = pbjson__b64_decode(json_string_value(v), json_string_length(v), 1, &b, &n);
    if (rc == CV_ENOMEM) return pbjson__oom(c);
    if (rc) return pbjson__fail(c, CV_EINVAL, "invalid base64");
    slot->data = b;
    slot->len = n;
    return 0;
}

static int pbjson__submsg_from_json(struct pbjson__ctx *c, const ProtobufCMessageDescriptor *d,
                                    const json_t *v, ProtobufCMessage **slot)
{
    if (!json_is_object(v)) return pbjson__fail(c, CV_EINVAL, "expected object");
    if (!(*slot = pbjson__new_msg(d))) return pbjson__oom(c);
    return pbjson__msg_from_json(c, d, v, *slot); /* the parent owns *slot from here on */
}

/* Converts one non-null JSON value for field f and stores it at slot (a field or array element). */
static int pbjson__value_from_json(struct pbjson__ctx *c, const ProtobufCFieldDescriptor *f, const json_t *v,
                                   void *slot)
{
    int neg, cls;
    uint64_t mag;
    double d;
    switch (f->type) {
    case PROTOBUF_C_TYPE_FLOAT:
        return pbjson__json_double(c, v, &d) ? c->rc : pbjson__to_float(c, d, slot);
    case PROTOBUF_C_TYPE_DOUBLE:
        return pbjson__json_double(c, v, slot);
    case PROTOBUF_C_TYPE_BOOL:
        if (!json_is_boolean(v)) return pbjson__fail(c, CV_EINVAL, "expected boolean");
        *(protobuf_c_boolean *)slot = json_is_true(v);
        return 0;
    case PROTOBUF_C_TYPE_ENUM:
        return pbjson__enum_from_json(c, f->descriptor, v, slot);
    case PROTOBUF_C_TYPE_STRING:
        return pbjson__string_from_json(c, v, slot);
    case PROTOBUF_C_TYPE_BYTES:
        return pbjson__bytes_from_json(c, v, slot);
    case PROTOBUF_C_TYPE_MESSAGE:
        return pbjson__submsg_from_json(c, f->descriptor, v, slot);
    default: /* the ten integer types */
        cls = pbjson__json_int(v, &neg, &mag);
        return pbjson__int_store(c, f->type, cls, neg, mag, slot);
    }
}

static int pbjson__list_from_json(struct pbjson__ctx *c, const ProtobufCFieldDescriptor *f, const json_t *v,
                                  ProtobufCMessage *m)
{
    if (!json_is_array(v)) return pbjson__fail(c, CV_EINVAL, "expected array");
    size_t n = json_array_size(v), esz = pbjson__elt_size(f->type);
    if (n == 0) return 0;
    char *arr = calloc(n, esz);
    if (!arr) return pbjson__oom(c);
    size_t *count = (size_t *)((char *)m + f->quantifier_offset);
    *(void **)((char *)m + f->offset) = arr;
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(v, i);
        size_t mark = pbjson__push(c, "[%zu]", i);
        *count = i + 1; /* a zeroed element is valid for free_unpacked, so count it before filling */
        int rc = json_is_null(e) ? pbjson__fail(c, CV_EINVAL, "null is not allowed in a list")
                                 : pbjson__value_from_json(c, f, e, arr + i * esz);
        pbjson__pop(c, mark);
        if (rc) return rc;
    }
    return 0;
}

/* A map key (always a JSON string) converted to the entry's key type. */
static int pbjson__map_key_from_json(struct pbjson__ctx *c, const ProtobufCFieldDescriptor *kf,
                                     const char *key, size_t klen, void *slot)
{
    int neg, cls;
    uint64_t mag;
    if (kf->type == PROTOBUF_C_TYPE_STRING) {
        char *p;
        if (memchr(key, '\0', klen)) return pbjson__fail(c, CV_EINVAL, "map key contains a NUL character");
        if (!(p = malloc(klen + 1))) return pbjson__oom(c);
        memcpy(p, key, klen + 1);
        *(char **)slot = p;
        return 0;
    }
    if (kf->type == PROTOBUF_C_TYPE_BOOL) {
        if (!pbjson__str_is(key, klen, "true") && !pbjson__str_is(key, klen, "false"))
            return pbjson__fail(c, CV_EINVAL, "expected map key \"true\" or \"false\"");
        *(protobuf_c_boolean *)slot = key[0] == 't';
        return 0;
    }
    /* Only the canonical decimal form, so that distinct JSON keys are distinct map keys. */
    size_t neg_len = klen > 0 && key[0] == '-';
    if (klen == neg_len || strspn(key + neg_len, "0123456789") != klen - neg_len ||
        (key[neg_len] == '0' && klen > neg_len + 1) || (neg_len && key[1] == '0'))
        return pbjson__fail(c, CV_EINVAL, "expected an integer map key in canonical decimal form");
    cls = pbjson__dec_int(key, klen, &neg, &mag);
    return pbjson__int_store(c, kf->type, cls, neg, mag, slot);
}

static void pbjson__mark_present(const ProtobufCFieldDescriptor *f, void *m)
{
    if (pbjson__has_flag(f)) *(protobuf_c_boolean *)((char *)m + f->quantifier_offset) = 1;
}

static int pbjson__entry_from_json(struct pbjson__ctx *c, const ProtobufCMessageDescriptor *ed,
                                   const char *key, size_t klen, const json_t *val, ProtobufCMessage *e)
{
    const ProtobufCFieldDescriptor *kf = &ed->fields[0], *vf = &ed->fields[1];
    int rc = pbjson__map_key_from_json(c, kf, key, klen, (char *)e + kf->offset);
    if (rc) return rc;
    pbjson__mark_present(kf, e);
    if (json_is_null(val)) return pbjson__fail(c, CV_EINVAL, "null is not allowed as a map value");
    if ((rc = pbjson__value_from_json(c, vf, val, (char *)e + vf->offset)) != 0) return rc;
    pbjson__mark_present(vf, e);
    return 0;
}

static int pbjson__map_from_json(struct pbjson__ctx *c, const ProtobufCFieldDescriptor *f, const json_t *v,
                                 ProtobufCMessage *m)
{
    if (!json_is_object(v)) return pbjson__fail(c, CV_EINVAL, "expected object (map)");
    size_t n = json_object_size(v), i = 0;
    if (n == 0) return 0;
    const ProtobufCMessageDescriptor *ed = f->descriptor;
    ProtobufCMessage **arr = calloc(n, sizeof *arr);
    if (!arr) return pbjson__oom(c);
    size_t *count = (size_t *)((char *)m + f->quantifier_offset);
    *(ProtobufCMessage ***)((char *)m + f->offset) = arr;
    json_t *o = (json_t *)v; /* jansson's iterators take non-const objects but do not modify them */
    for (void *it = json_object_iter(o); it && i < n; it = json_object_iter_next(o, it)) {
        const char *key = json_object_iter_key(it);
        size_t klen = json_object_iter_key_len(it), mark = pbjson__push_map_key(c, key, klen);
        int rc = (arr[i] = pbjson__new_msg(ed)) ? 0 : pbjson__oom(c);
        *count = ++i;
        if (!rc) rc = pbjson__entry_from_json(c, ed, key, klen, json_object_iter_value(it), arr[i - 1]);
        pbjson__pop(c, mark);
        if (rc) return rc;
    }
    return 0;
}

/* Stores one present (non-null) field of m. */
static int pbjson__field_from_json(struct pbjson__ctx *c, const ProtobufCMessageDescriptor *d,
                                   const ProtobufCFieldDescriptor *f, const json_t *v, ProtobufCMessage *m)
{
    char *base = (char *)m;
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        return pbjson__is_map(d, f) ? pbjson__map_from_json(c, f, v, m) : pbjson__list_from_json(c, f, v, m);
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        uint32_t *which = (uint32_t *)(base + f->quantifier_offset);
        if (*which != 0) {
            const ProtobufCFieldDescriptor *o = protobuf_c_message_descriptor_get_field(d, *which);
            return pbjson__fail(c, CV_EINVAL, "conflicts with \"%s\" (same oneof)", o ? o->name : "?");
        }
        *which = f->id; /* the union member is still zero: valid for free_unpacked whatever follows */
    }
    int rc = pbjson__value_from_json(c, f, v, base + f->offset);
    if (!rc) pbjson__mark_present(f, m);
    return rc;
}

static int pbjson__check_required(struct pbjson__ctx *c, const ProtobufCMessageDescriptor *d,
                                  const unsigned char *set)
{
    for (unsigned i = 0; i < d->n_fields; i++) {
        if (d->fields[i].label != PROTOBUF_C_LABEL_REQUIRED || set[i] == 2) continue;
        pbjson__push(c, "%s%s", c->plen ? "." : "", d->fields[i].name);
        return pbjson__fail(c, CV_EINVAL, "required field missing");
    }
    return 0;
}

/* Fills m (freshly initialised, of type d) from the JSON object v. seen[i]: 1 = key given, 2 = given
 * and not null (so a field spelled both ways, e.g. "foo_bar" and "fooBar", is an error). */
static int pbjson__fields_from_json(struct pbjson__ctx *c, const ProtobufCMessageDescriptor *d,
                                    const json_t *v, ProtobufCMessage *m, unsigned char *seen)
{
    json_t *o = (json_t *)v; /* jansson's iterators take non-const objects but do not modify them */
    for (void *it = json_object_iter(o); it; it = json_object_iter_next(o, it)) {
        const char *key = json_object_iter_key(it);
        size_t klen = json_object_iter_key_len(it), mark = pbjson__push_key(c, key, klen);
        const json_t *val = json_object_iter_value(it);
        unsigned idx = 0;
        const ProtobufCFieldDescriptor *f = pbjson__field_by_key(d, key, klen, &idx);
        int rc = 0;
        if (!f)
            rc = pbjson__fail(c, CV_EINVAL, "unknown field (not in %s)", d->name);
        else if (seen[idx])
            rc = pbjson__fail(c, CV_EINVAL, "field \"%s\" given twice", f->name);
        else if ((seen[idx] = json_is_null(val) ? 1 : 2) == 2)
            rc = pbjson__field_from_json(c, d, f, val, m);
        pbjson__pop(c, mark);
        if (rc) return rc;
    }
    return pbjson__check_required(c, d, seen);
}

static int pbjson__msg_from_json(struct pbjson__ctx *c, const ProtobufCMessageDescriptor *d, const json_t *v,
                                 ProtobufCMessage *m)
{
    if (!json_is_object(v)) return pbjson__fail(c, CV_EINVAL, "expected object");
    if (c->depth >= CV_PBJSON_MAX_DEPTH)
        return pbjson__fail(c, CV_EINVAL, "messages nested deeper than %d", CV_PBJSON_MAX_DEPTH);
    unsigned char *seen = calloc(d->n_fields ? d->n_fields : 1, 1);
    if (!seen) return pbjson__oom(c);
    c->depth++;
    int rc = pbjson__fields_from_json(c, d, v, m, seen);
    c->depth--;
    free(seen);
    return rc;
}

int cv_pbjson_from_json_at(const ProtobufCMessageDescriptor *d, const json_t *j, const char *root,
                           ProtobufCMessage **out, char *err, size_t errlen)
{
    struct pbjson__ctx c;
    pbjson__ctx_init(&c, root, err, errlen);
    if (out) *out = NULL;
    if (!d || d->magic != PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC || !j || !out)
        return pbjson__fail(&c, CV_EINVAL, "invalid arguments");
    ProtobufCMessage *m = pbjson__new_msg(d);
    if (!m) return pbjson__oom(&c);
    int rc = pbjson__msg_from_json(&c, d, j, m);
    if (rc) {
        protobuf_c_message_free_unpacked(m, NULL);
        return rc;
    }
    *out = m;
    return 0;
}

int cv_pbjson_from_json(const ProtobufCMessageDescriptor *d, const json_t *j, ProtobufCMessage **out,
                        char *err, size_t errlen)
{
    return cv_pbjson_from_json_at(d, j, NULL, out, err, errlen);
}
