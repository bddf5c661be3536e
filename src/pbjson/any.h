/* google.protobuf.Any packing/unpacking and base64 (strict, and proto3 JSON's lenient variants). */
#ifndef CV_PBJSON_ANY_H
#define CV_PBJSON_ANY_H

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/* Serializes m wrapped in a google.protobuf.Any (type_url "type.googleapis.com/<package.Message>", value
 * = m packed) into a new malloc'ed buffer owned by the caller (free). CV_ENOMEM. */
int cv_pbjson_any_pack(const ProtobufCMessage *m, uint8_t **out, size_t *len);
/* Same for a message already packed: value (vlen bytes) of the message type with full name `name`
 * ("package.Message"), not checked. CV_EINVAL (no name), CV_ENOMEM. */
int cv_pbjson_any_wrap(const char *name, const uint8_t *value, size_t vlen, uint8_t **out, size_t *len);
/* Parses a serialized google.protobuf.Any whose type_url names d (as "<anything>/<package.Message>" or
 * the bare full name) and unpacks its value into a new message (free with
 * protobuf_c_message_free_unpacked(*out, NULL)). CV_EINVAL with a message in err if buf is not an Any,
 * names another type, or its value does not decode as d; CV_ENOMEM. On error *out is NULL. */
int cv_pbjson_any_unpack(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len,
                         ProtobufCMessage **out, char *err, size_t errlen);

/* Standard base64 (RFC 4648 §4, with padding) of data into a new NUL-terminated malloc'ed string owned by
 * the caller (free); *outlen (if not NULL) gets its length. CV_ENOMEM. */
int cv_pbjson_b64_encode(const uint8_t *data, size_t len, char **out, size_t *outlen);
/* Strict decoding of standard padded base64 (no whitespace, no URL alphabet, unused bits zero) into a new
 * malloc'ed buffer owned by the caller (free; never NULL on success, even for 0 bytes). CV_EINVAL for
 * anything else, CV_ENOMEM. */
int cv_pbjson_b64_decode(const char *text, size_t len, uint8_t **out, size_t *outlen);

/* Lenient decoding for proto3 JSON bytes (internal to pbjson): URL-safe alphabet if '-' or '_' appear,
 * padding optional (exact when present), unused bits ignored. *out is malloc'ed, NULL for no bytes.
 * CV_EINVAL, CV_ENOMEM. */
int pbjson__b64_decode(const char *s, size_t n, int lenient, uint8_t **out, size_t *outlen);

#endif
