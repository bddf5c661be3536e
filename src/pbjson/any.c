/* The binary forms proto3 JSON carries: base64 (through libsodium) and google.protobuf.Any.
 *
 * Happy path: bytes are encoded standard with padding; decoding is strict (standard padded, unused bits
 * zero) for cv_pbjson_b64_decode and lenient for proto3 JSON bytes (pbjson__b64_decode: URL-safe or
 * standard alphabet, padded or not, unused bits ignored, as Go's protojson). An Any is written and read
 * field by field on the wire (type_url = 1, value = 2).
 *
 * Failure modes: CV_EINVAL for text that is not base64 of the accepted variants, for a buffer that is
 * not an Any, names another type or whose value does not decode; CV_ENOMEM. */
#include "pbjson/any.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"
#include <sodium.h>

#include "pbjson/walk.h"

#define PBJSON__ANY_PREFIX "type.googleapis.com/"

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
int pbjson__b64_decode(const char *s, size_t n, int lenient, uint8_t **out, size_t *outlen)
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

/* The Any of type `name` whose value has vlen bytes, written by put(m, dst) or copied from value. */
static int pbjson__any_build(const char *name, const ProtobufCMessage *m, const uint8_t *value, size_t vlen,
                             uint8_t **out, size_t *len)
{
    size_t plen = strlen(PBJSON__ANY_PREFIX), ulen = plen + strlen(name);
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
        if (m) p += protobuf_c_message_pack(m, p);
        else p = (uint8_t *)memcpy(p, value, vlen) + vlen;
    }
    *out = buf;
    *len = (size_t)(p - buf);
    return 0;
}

int cv_pbjson_any_pack(const ProtobufCMessage *m, uint8_t **out, size_t *len)
{
    if (!out || !len) return CV_EINVAL;
    *out = NULL;
    *len = 0;
    if (!m || !m->descriptor || m->descriptor->magic != PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC)
        return CV_EINVAL;
    return pbjson__any_build(m->descriptor->name, m, NULL, protobuf_c_message_get_packed_size(m), out, len);
}

int cv_pbjson_any_wrap(const char *name, const uint8_t *value, size_t vlen, uint8_t **out, size_t *len)
{
    if (!out || !len) return CV_EINVAL;
    *out = NULL;
    *len = 0;
    if (!name || !name[0] || (vlen && !value)) return CV_EINVAL;
    return pbjson__any_build(name, NULL, value, vlen, out, len);
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
