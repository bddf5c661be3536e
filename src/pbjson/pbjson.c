/* proto3 JSON <-> protobuf-c messages, driven only by ProtobufCMessageDescriptor; Any and base64.
 *
 * Happy path: cv_pbjson_from_json allocates the root message with the default allocator (calloc +
 * the descriptor's init), then walks the JSON object key by key, finds each field by proto or JSON
 * name and writes the converted value at the field's offset, allocating strings, bytes, repeated
 * arrays and sub-messages with malloc exactly where protobuf-c's unpacker would. The result is thus
 * freed by protobuf_c_message_free_unpacked(m, NULL). cv_pbjson_to_json walks the descriptor the other
 * way. Maps are protobuf-c's repeated "<Field>Entry" messages with fields key = 1, value = 2.
 *
 * Failure modes: every mismatch between the JSON and the descriptor (unknown key, wrong JSON type,
 * fraction or overflow, bad base64, unknown enum name, a field given twice, two members of a oneof,
 * nesting past CV_PBJSON_MAX_DEPTH) stops the walk with CV_EINVAL and a one-line "path: problem"
 * message (user text in it is cut short and made printable, valid UTF-8). The message being built is
 * kept consistent at every step (array counts are bumped before an element is filled, a oneof case
 * is set before its member), so on any error the partial message is simply free_unpacked. Numbers are
 * converted exactly: strings in JSON number syntax are parsed as decimals, never through a double. */
#include "pbjson/pbjson.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "cverse/error.h"

#define PBJSON__ANY_PREFIX "type.googleapis.com/"
#define PBJSON__QUOTE_MAX 48 /* bytes of user text quoted in an error message */

/* Walk state shared by both directions: the first error and the JSON path where it happened. */
struct pbjson__ctx {
    char *err;
    size_t errlen;
    int rc; /* first error code, 0 while none */
    int depth;
    size_t plen;
    char path[256];
};

/* ---------------------------------------------------------------------------------------------------
 * Text helpers: UTF-8, error messages, paths. */

/* Length of the valid UTF-8 sequence starting s[0] (as jansson accepts it: no overlong forms,
 * surrogates or code points above U+10FFFF), 0 if invalid. */
static size_t pbjson__utf8_seq(const unsigned char *s, size_t n)
{
    uint32_t cp;
    size_t len;
    if (s[0] < 0x80) return 1;
    if (s[0] < 0xC2) return 0;
    if (s[0] < 0xE0)
        len = 2, cp = s[0] & 0x1Fu;
    else if (s[0] < 0xF0)
        len = 3, cp = s[0] & 0x0Fu;
    else if (s[0] < 0xF5)
        len = 4, cp = s[0] & 0x07u;
    else
        return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3Fu);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

static int pbjson__utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0, k; i < n; i += k)
        if ((k = pbjson__utf8_seq(p + i, n - i)) == 0) return 0;
    return 1;
}

/* Drops an incomplete UTF-8 sequence left at the end of s by a truncating snprintf. */
static void pbjson__utf8_trim(char *s)
{
    size_t n = strlen(s), i = n;
    while (i > 0 && n - i < 3 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) i--;
    if (i == 0) return;
    unsigned char lead = (unsigned char)s[i - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (lead >= 0xC0 && n - (i - 1) < need) s[i - 1] = '\0';
}

/* Copies arbitrary bytes into buf (PBJSON__QUOTE_MAX + 4 bytes) for an error message: valid UTF-8 is
 * kept, control characters, quotes, backslashes and invalid bytes become '?', long text ends in "...". */
static const char *pbjson__quote(const char *s, size_t n, char *buf)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0, i = 0;
    while (i < n) {
        size_t k = pbjson__utf8_seq(p + i, n - i);
        if (o + (k ? k : 1) > PBJSON__QUOTE_MAX) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        if (k == 0 || (k == 1 && (p[i] < 0x20 || p[i] == 0x7F || p[i] == '"' || p[i] == '\\'))) {
            buf[o++] = '?';
            i++;
            continue;
        }
        memcpy(buf + o, p + i, k);
        o += k;
        i += k;
    }
    buf[o] = '\0';
    return buf;
}

/* Records the first error as "path: message" (or just the message at the root); returns rc. */
__attribute__((format(printf, 3, 4))) static int pbjson__fail(struct pbjson__ctx *c, int rc, const char *fmt,
                                                              ...)
{
    if (c->rc) return c->rc;
    c->rc = rc;
    if (c->err && c->errlen) {
        char msg[192];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        snprintf(c->err, c->errlen, "%s%s%s", c->path, c->plen ? ": " : "", msg);
        pbjson__utf8_trim(c->err);
    }
    return rc;
}

static int pbjson__oom(struct pbjson__ctx *c)
{
    return pbjson__fail(c, CV_ENOMEM, "out of memory");
}

/* Appends a path segment; returns the mark that pbjson__pop restores. A path too long for the
 * buffer ends in "..." (only the new segment is ever cut, so popping stays exact). */
__attribute__((format(printf, 2, 3))) static size_t pbjson__push(struct pbjson__ctx *c, const char *fmt, ...)
{
    size_t mark = c->plen, room = sizeof c->path - mark;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(c->path + mark, room, fmt, ap);
    va_end(ap);
    if (n < 0) {
        c->path[mark] = '\0';
    } else if ((size_t)n >= room) {
        if (mark + 4 <= sizeof c->path) {
            c->path[sizeof c->path - 4] = '\0';
            pbjson__utf8_trim(c->path + mark);
            strcat(c->path, "...");
        } else {
            c->path[mark] = '\0';
        }
    }
    c->plen = strlen(c->path);
    return mark;
}

static void pbjson__pop(struct pbjson__ctx *c, size_t mark)
{
    c->plen = mark;
    c->path[mark] = '\0';
}

static size_t pbjson__push_key(struct pbjson__ctx *c, const char *key, size_t klen)
{
    char q[PBJSON__QUOTE_MAX + 4];
    return pbjson__push(c, "%s%s", c->plen ? "." : "", pbjson__quote(key, klen, q));
}

static size_t pbjson__push_map_key(struct pbjson__ctx *c, const char *key, size_t klen)
{
    char q[PBJSON__QUOTE_MAX + 4];
    return pbjson__push(c, "[\"%s\"]", pbjson__quote(key, klen, q));
}

static void pbjson__ctx_init(struct pbjson__ctx *c, const char *root, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    c->err = err;
    c->errlen = errlen;
    if (err && errlen) err[0] = '\0';
    if (root && root[0]) pbjson__push_key(c, root, strlen(root));
}

/* ---------------------------------------------------------------------------------------------------
 * Names and descriptor shapes. */

static char pbjson__upper(char ch)
{
    return ch >= 'a' && ch <= 'z' ? (char)(ch - 'a' + 'A') : ch;
}

/* protoc's JSON name: every '_' is dropped and the character after it upper-cased ("foo_bar" ->
 * "fooBar"). buf holds strlen(name) + 1 bytes. */
static void pbjson__json_name(const char *name, char *buf)
{
    int up = 0;
    for (; *name; name++) {
        if (*name == '_') {
            up = 1;
            continue;
        }
        *buf++ = up ? pbjson__upper(*name) : *name;
        up = 0;
    }
    *buf = '\0';
}

static int pbjson__json_name_eq(const char *name, const char *key)
{
    int up = 0;
    for (; *name; name++) {
        if (*name == '_') {
            up = 1;
            continue;
        }
        if (*key++ != (up ? pbjson__upper(*name) : *name)) return 0;
        up = 0;
    }
    return *key == '\0';
}

/* 1 if s is protoc's map entry name for field: CamelCase of the field name + "Entry". */
static int pbjson__entry_name_eq(const char *field, const char *s)
{
    int up = 1;
    for (; *field; field++) {
        if (*field == '_') {
            up = 1;
            continue;
        }
        if (*s++ != (up ? pbjson__upper(*field) : *field)) return 0;
        up = 0;
    }
    return strcmp(s, "Entry") == 0;
}

/* protobuf-c keeps no map_entry option: a map is recognised by the shape protoc gives it, a repeated
 * field of a nested message "<Parent>.<Field>Entry" whose only fields are key = 1 and value = 2. */
static int pbjson__is_map(const ProtobufCMessageDescriptor *parent, const ProtobufCFieldDescriptor *f)
{
    if (f->label != PROTOBUF_C_LABEL_REPEATED || f->type != PROTOBUF_C_TYPE_MESSAGE) return 0;
    const ProtobufCMessageDescriptor *e = f->descriptor;
    if (!e || e->n_fields != 2 || e->fields[0].id != 1 || e->fields[1].id != 2 ||
        strcmp(e->fields[0].name, "key") != 0 || strcmp(e->fields[1].name, "value") != 0 ||
        e->fields[0].label == PROTOBUF_C_LABEL_REPEATED || e->fields[1].label == PROTOBUF_C_LABEL_REPEATED)
        return 0;
    switch (e->fields[0].type) {
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE:
    case PROTOBUF_C_TYPE_BYTES:
    case PROTOBUF_C_TYPE_MESSAGE:
    case PROTOBUF_C_TYPE_ENUM:
        return 0;
    default:
        break;
    }
    size_t pl = strlen(parent->name);
    if (strncmp(e->name, parent->name, pl) != 0 || e->name[pl] != '.') return 0;
    return pbjson__entry_name_eq(f->name, e->name + pl + 1);
}

/* Field for a JSON key, by proto name first, then by JSON name; *idx gets its index. */
static const ProtobufCFieldDescriptor *pbjson__field_by_key(const ProtobufCMessageDescriptor *d,
                                                            const char *key, size_t klen, unsigned *idx)
{
    if (strlen(key) != klen) return NULL; /* an embedded NUL never names a field */
    for (unsigned i = 0; i < d->n_fields; i++)
        if (strcmp(d->fields[i].name, key) == 0) return &d->fields[*idx = i];
    for (unsigned i = 0; i < d->n_fields; i++)
        if (pbjson__json_name_eq(d->fields[i].name, key)) return &d->fields[*idx = i];
    return NULL;
}

/* Size of one element of a repeated field of type t, as protobuf-c lays arrays out. */
static size_t pbjson__elt_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return sizeof(uint64_t);
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_ENUM:
        return sizeof(int); /* generated enums are forced to int size */
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    default:
        return sizeof(uint32_t); /* 32-bit integers, float */
    }
}

/* Fields with a has_ flag: proto2 optional scalars and bytes (strings and messages use NULL). */
static int pbjson__has_flag(const ProtobufCFieldDescriptor *f)
{
    return f->label == PROTOBUF_C_LABEL_OPTIONAL && !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
           f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE;
}

static ProtobufCMessage *pbjson__new_msg(const ProtobufCMessageDescriptor *d)
{
    ProtobufCMessage *m = calloc(1, d->sizeof_message);
    if (!m) return NULL;
    if (d->message_init)
        d->message_init(m);
    else
        m->descriptor = d;
    return m;
}

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
 * base64. */

int cv_pbjson_b64_encode(const uint8_t *data, size_t len, char **out, size_t *outlen)
{
    if (!out || (len && !data)) return CV_EINVAL;
    *out = NULL;
    if (len > (SIZE_MAX - 1) / 4 * 3 - 3) return CV_ENOMEM;
    size_t n = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL); /* NUL included */
    char *s = malloc(n);
    if (!s) return CV_ENOMEM;
    sodium_bin2base64(s, n, data ? data : (const uint8_t *)"", len, sodium_base64_VARIANT_ORIGINAL);
    *out = s;
    if (outlen) *outlen = n - 1;
    return 0;
}

/* proto3 JSON (like Go's protojson) ignores the unused low bits of the last character of an unpadded
 * or padded tail; libsodium rejects them. Clears them in tail[] (a copy of the last character). */
static void pbjson__b64_clear_tail(char *last, size_t data_chars, int url)
{
    static const char std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    static const char safe[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const char *alpha = url ? safe : std, *p = *last ? strchr(alpha, *last) : NULL;
    unsigned unused = data_chars % 4 == 2 ? 0xF : data_chars % 4 == 3 ? 0x3 : 0;
    if (p && unused) *last = alpha[(size_t)(p - alpha) & ~unused];
}

/* Strict: libsodium's standard padded variant (unused bits must be zero). Lenient (proto3 JSON bytes):
 * the URL-safe alphabet if '-' or '_' appear, padded if '=' appears, unused bits ignored. *out is
 * malloc'ed (NULL for no bytes when lenient). */
static int pbjson__b64_decode(const char *s, size_t n, int lenient, uint8_t **out, size_t *outlen)
{
    int url = lenient && (memchr(s, '-', n) || memchr(s, '_', n));
    int padded = !lenient || memchr(s, '=', n);
    int variant = url ? (padded ? sodium_base64_VARIANT_URLSAFE : sodium_base64_VARIANT_URLSAFE_NO_PADDING)
                      : (padded ? sodium_base64_VARIANT_ORIGINAL : sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
    char *copy = NULL;
    if (lenient) {
        size_t data_chars = n;
        while (data_chars > 0 && s[data_chars - 1] == '=') data_chars--;
        if (data_chars > 0 && (data_chars % 4 == 2 || data_chars % 4 == 3)) {
            if (!(copy = malloc(n))) return CV_ENOMEM;
            memcpy(copy, s, n);
            pbjson__b64_clear_tail(&copy[data_chars - 1], data_chars, url);
            s = copy;
        }
    }
    size_t max = n / 4 * 3 + 3, olen = 0;
    uint8_t *b = malloc(max);
    int rc = b ? 0 : CV_ENOMEM;
    if (b && sodium_base642bin(b, max, s, n, NULL, &olen, NULL, variant) != 0) rc = CV_EINVAL;
    free(copy);
    if (rc || (lenient && olen == 0)) {
        free(b);
        b = NULL;
    }
    if (rc) return rc;
    *out = b;
    *outlen = olen;
    return 0;
}

int cv_pbjson_b64_decode(const char *text, size_t len, uint8_t **out, size_t *outlen)
{
    if (!out || !outlen || (len && !text)) return CV_EINVAL;
    *out = NULL;
    *outlen = 0;
    return pbjson__b64_decode(text ? text : "", len, 0, out, outlen);
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
        if (!pbjson__present(f, m)) continue;
        char stack[64], *name = strlen(f->name) < sizeof stack ? stack : malloc(strlen(f->name) + 1);
        if (!name) goto err_after_object;
        pbjson__json_name(f->name, name);
        size_t mark = pbjson__push(c, "%s%s", c->plen ? "." : "", name);
        json_t *v = pbjson__field_to_json(c, d, f, m);
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
    struct pbjson__ctx c;
    pbjson__ctx_init(&c, NULL, err, errlen);
    if (out) *out = NULL;
    if (!m || !m->descriptor || m->descriptor->magic != PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC || !out)
        return pbjson__fail(&c, CV_EINVAL, "invalid arguments");
    json_t *o = pbjson__msg_to_json(&c, m);
    if (!o) return c.rc ? c.rc : CV_ENOMEM;
    *out = o;
    return 0;
}

/* ---------------------------------------------------------------------------------------------------
 * google.protobuf.Any: message Any { string type_url = 1; bytes value = 2; }, encoded by hand. */

static size_t pbjson__varint_len(uint64_t v)
{
    size_t n = 1;
    for (; v >= 0x80; v >>= 7) n++;
    return n;
}

static uint8_t *pbjson__put_varint(uint8_t *p, uint64_t v)
{
    for (; v >= 0x80; v >>= 7) *p++ = (uint8_t)(v | 0x80);
    *p++ = (uint8_t)v;
    return p;
}

/* Reads a varint at buf[*pos]; -1 if truncated or longer than 10 bytes. */
static int pbjson__get_varint(const uint8_t *buf, size_t len, size_t *pos, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 70 && *pos < len; shift += 7) {
        uint8_t b = buf[(*pos)++];
        if (shift == 63 && b > 1) return -1;
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

int cv_pbjson_any_pack(const ProtobufCMessage *m, uint8_t **out, size_t *len)
{
    if (!out || !len) return CV_EINVAL;
    *out = NULL;
    *len = 0;
    if (!m || !m->descriptor || m->descriptor->magic != PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC)
        return CV_EINVAL;
    const char *name = m->descriptor->name;
    size_t plen = strlen(PBJSON__ANY_PREFIX), ulen = plen + strlen(name);
    size_t vlen = protobuf_c_message_get_packed_size(m);
    size_t total = 1 + pbjson__varint_len(ulen) + ulen + (vlen ? 1 + pbjson__varint_len(vlen) + vlen : 0);
    uint8_t *buf = malloc(total), *p = buf;
    if (!buf) return CV_ENOMEM;
    *p++ = 1 << 3 | 2; /* field 1, length-delimited */
    p = pbjson__put_varint(p, ulen);
    memcpy(p, PBJSON__ANY_PREFIX, plen);
    memcpy(p + plen, name, ulen - plen);
    p += ulen;
    if (vlen) { /* proto3 leaves an empty bytes field out */
        *p++ = 2 << 3 | 2;
        p = pbjson__put_varint(p, vlen);
        p += protobuf_c_message_pack(m, p);
    }
    *out = buf;
    *len = (size_t)(p - buf);
    return 0;
}

/* Finds type_url and value in a serialized Any (the last occurrence of each wins, unknown fields are
 * skipped). -1 if buf is not a well-formed message. */
static int pbjson__any_fields(const uint8_t *buf, size_t len, const uint8_t **url, size_t *ulen,
                              const uint8_t **val, size_t *vlen)
{
    size_t pos = 0;
    while (pos < len) {
        uint64_t key, n;
        if (pbjson__get_varint(buf, len, &pos, &key) || key >> 3 == 0) return -1;
        switch (key & 7) {
        case 0:
            if (pbjson__get_varint(buf, len, &pos, &n)) return -1;
            break;
        case 1:
        case 5:
            if (len - pos < ((key & 7) == 1 ? 8u : 4u)) return -1;
            pos += (key & 7) == 1 ? 8 : 4;
            break;
        case 2:
            if (pbjson__get_varint(buf, len, &pos, &n) || n > len - pos) return -1;
            if (key >> 3 == 1) *url = buf + pos, *ulen = (size_t)n;
            if (key >> 3 == 2) *val = buf + pos, *vlen = (size_t)n;
            pos += (size_t)n;
            break;
        default: /* groups are not part of proto3 */
            return -1;
        }
        if ((key >> 3 == 1 || key >> 3 == 2) && (key & 7) != 2) return -1;
    }
    return 0;
}

/* 1 if the type URL names message type `name`: "<anything>/<name>" or just "<name>". */
static int pbjson__url_names(const uint8_t *url, size_t ulen, const char *name)
{
    size_t n = strlen(name);
    if (ulen < n || memcmp(url + ulen - n, name, n) != 0) return 0;
    return ulen == n || url[ulen - n - 1] == '/';
}

int cv_pbjson_any_unpack(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len,
                         ProtobufCMessage **out, char *err, size_t errlen)
{
    struct pbjson__ctx c;
    const uint8_t *url = NULL, *val = NULL;
    size_t ulen = 0, vlen = 0;
    char q[PBJSON__QUOTE_MAX + 4];
    pbjson__ctx_init(&c, NULL, err, errlen);
    if (out) *out = NULL;
    if (!d || d->magic != PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC || !out || (len && !buf))
        return pbjson__fail(&c, CV_EINVAL, "invalid arguments");
    if (pbjson__any_fields(buf, len, &url, &ulen, &val, &vlen))
        return pbjson__fail(&c, CV_EINVAL, "not a serialized google.protobuf.Any");
    if (!url) return pbjson__fail(&c, CV_EINVAL, "Any has no type_url");
    if (!pbjson__url_names(url, ulen, d->name))
        return pbjson__fail(&c, CV_EINVAL, "Any holds \"%s\", expected %s",
                            pbjson__quote((const char *)url, ulen, q), d->name);
    static const uint8_t none[1];
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, vlen, val ? val : none);
    if (!m) return pbjson__fail(&c, CV_EINVAL, "Any value is not a valid %s", d->name);
    *out = m;
    return 0;
}
