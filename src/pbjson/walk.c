/* Shared internals of the proto3 JSON mapping: the walk context (first error, JSON path of it), text
 * helpers for error messages (UTF-8 validation, quoting user text, cutting paths) and the lookups from
 * JSON keys to field descriptors.
 *
 * Happy path: a walk starts with pbjson__ctx_init, pushes a path segment per key/index it enters and
 * pops it on the way out. Failure modes: the first pbjson__fail wins (later ones keep its code and
 * message); paths too long for the buffer end in "..." rather than failing. */
#include "pbjson/walk.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"

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

int pbjson__utf8_valid(const char *s, size_t n)
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
const char *pbjson__quote(const char *s, size_t n, char *buf)
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
__attribute__((format(printf, 3, 4))) int pbjson__fail(struct pbjson__ctx *c, int rc, const char *fmt, ...)
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

int pbjson__oom(struct pbjson__ctx *c)
{
    return pbjson__fail(c, CV_ENOMEM, "out of memory");
}

/* Appends a path segment; returns the mark that pbjson__pop restores. A path too long for the
 * buffer ends in "..." (only the new segment is ever cut, so popping stays exact). */
__attribute__((format(printf, 2, 3))) size_t pbjson__push(struct pbjson__ctx *c, const char *fmt, ...)
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

void pbjson__pop(struct pbjson__ctx *c, size_t mark)
{
    c->plen = mark;
    c->path[mark] = '\0';
}

size_t pbjson__push_key(struct pbjson__ctx *c, const char *key, size_t klen)
{
    char q[PBJSON__QUOTE_MAX + 4];
    return pbjson__push(c, "%s%s", c->plen ? "." : "", pbjson__quote(key, klen, q));
}

size_t pbjson__push_map_key(struct pbjson__ctx *c, const char *key, size_t klen)
{
    char q[PBJSON__QUOTE_MAX + 4];
    return pbjson__push(c, "[\"%s\"]", pbjson__quote(key, klen, q));
}

void pbjson__ctx_init(struct pbjson__ctx *c, const char *root, char *err, size_t errlen)
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
void pbjson__json_name(const char *name, char *buf)
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
int pbjson__is_map(const ProtobufCMessageDescriptor *parent, const ProtobufCFieldDescriptor *f)
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
const ProtobufCFieldDescriptor *pbjson__field_by_key(const ProtobufCMessageDescriptor *d,
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
size_t pbjson__elt_size(ProtobufCType t)
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
int pbjson__has_flag(const ProtobufCFieldDescriptor *f)
{
    return f->label == PROTOBUF_C_LABEL_OPTIONAL && !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
           f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE;
}

ProtobufCMessage *pbjson__new_msg(const ProtobufCMessageDescriptor *d)
{
    ProtobufCMessage *m = calloc(1, d->sizeof_message);
    if (!m) return NULL;
    if (d->message_init)
        d->message_init(m);
    else
        m->descriptor = d;
    return m;
}
