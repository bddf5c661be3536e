/* Call payload mapping between what clients send (proto3 JSON, a serialized google.protobuf.Any) and what
 * handlers take (packed protobuf bytes of the method's message), through the method's descriptors. The
 * owner node, which has the types, maps calls with it; gates pass JSON and Any through (docs/protocol.md).
 *
 * Happy path: JSON -> cv_pbjson_from_json -> pack; Any -> cv_pbjson_any_unpack -> pack (which checks the
 * value); and back: unpack -> cv_pbjson_to_json. Failure modes: client input that does not match the
 * descriptor gives CV_EINVAL with a message naming the field; response bytes that do not decode give
 * CV_EPROTO (a handler that replied with another message type). */
#include "pbjson/codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"
#include "pbjson/pbjson.h"

static int codec__pack(ProtobufCMessage *m, uint8_t **out, size_t *len, char *err, size_t errlen)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        snprintf(err, errlen, "out of memory");
        protobuf_c_message_free_unpacked(m, NULL);
        return CV_ENOMEM;
    }
    protobuf_c_message_pack(m, buf);
    protobuf_c_message_free_unpacked(m, NULL);
    *out = buf;
    *len = n;
    return 0;
}

int cv_pbjson_json_to_bytes(const ProtobufCMessageDescriptor *d, const json_t *j, const char *root,
                            uint8_t **out, size_t *len, char *err, size_t errlen)
{
    json_t *empty = NULL;
    if (!j && !(j = empty = json_object())) {
        snprintf(err, errlen, "out of memory");
        return CV_ENOMEM;
    }
    ProtobufCMessage *m;
    int rv = cv_pbjson_from_json_at(d, j, root, &m, err, errlen);
    json_decref(empty);
    if (rv) return rv;
    return codec__pack(m, out, len, err, errlen);
}

int cv_pbjson_json_text_to_bytes(const ProtobufCMessageDescriptor *d, const char *text, size_t tlen,
                                 uint8_t **out, size_t *len, char *err, size_t errlen)
{
    if (!text || !tlen) return cv_pbjson_json_to_bytes(d, NULL, "request", out, len, err, errlen);
    json_error_t je;
    json_t *j = json_loadb(text, tlen, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        snprintf(err, errlen, "request_json: invalid JSON at line %d column %d: %s", je.line, je.column,
                 je.text);
        return CV_EINVAL;
    }
    int rv = cv_pbjson_json_to_bytes(d, j, "request", out, len, err, errlen);
    json_decref(j);
    return rv;
}

int cv_pbjson_any_to_bytes(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t blen,
                           uint8_t **out, size_t *len, char *err, size_t errlen)
{
    ProtobufCMessage *m;
    int rv = cv_pbjson_any_unpack(d, buf, blen, &m, err, errlen);
    if (rv) return rv;
    return codec__pack(m, out, len, err, errlen);
}

static int codec__unpack(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t blen,
                         ProtobufCMessage **m, char *err, size_t errlen)
{
    *m = protobuf_c_message_unpack(d, NULL, blen, blen ? buf : (const uint8_t *)"");
    if (*m) return 0;
    snprintf(err, errlen, "the response does not decode as %s", d->name);
    return CV_EPROTO;
}

int cv_pbjson_bytes_to_json(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t blen,
                            unsigned flags, json_t **out, char *err, size_t errlen)
{
    ProtobufCMessage *m;
    int rv = codec__unpack(d, buf, blen, &m, err, errlen);
    if (rv) return rv;
    rv = cv_pbjson_to_json_ex(m, flags, out, err, errlen);
    protobuf_c_message_free_unpacked(m, NULL);
    return rv;
}

int cv_pbjson_bytes_to_json_text(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t blen,
                                 unsigned flags, char **out, char *err, size_t errlen)
{
    json_t *j;
    int rv = cv_pbjson_bytes_to_json(d, buf, blen, flags, &j, err, errlen);
    if (rv) return rv;
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return CV_ENOMEM;
    }
    *out = s;
    return 0;
}
