/* proto3 JSON mapping for protobuf-c messages (via their descriptors), google.protobuf.Any, base64. */
#ifndef CV_PBJSON_H
#define CV_PBJSON_H

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/* Deepest message nesting accepted or produced (the root message is depth 1). */
#define CV_PBJSON_MAX_DEPTH 64

/* Mapping (https://protobuf.dev/programming-guides/proto3/#json), as Go's protojson does it:
 * - keys: the proto field name or its lowerCamelCase JSON name are accepted, lowerCamelCase is emitted
 *   (custom json_name options are not visible in protobuf-c descriptors);
 * - 32-bit integers are numbers, 64-bit integers strings; either form is accepted for both (exponent
 *   notation too), fractions and out-of-range values are rejected;
 * - float/double are numbers, or the strings "NaN", "Infinity", "-Infinity" (or a numeric string);
 * - bytes are base64 (emitted standard with padding; URL-safe and unpadded input accepted too);
 * - enums are value names (numbers accepted; a number with no name is emitted as a number);
 * - map<K,V> fields (protobuf-c's repeated KEntry messages) are JSON objects; integer keys must be in
 *   canonical decimal form ("12", not "012" or "1e1") so distinct JSON keys are distinct map keys;
 * - a oneof member is emitted whenever it is the set case, even with a zero value; other fields with
 *   their default value (0, "", false, empty list/map, unset message) are omitted;
 * - null for a field means "leave it at its default".
 * Well-known types (Timestamp, Duration, wrappers, Struct, Any inside a message) get no special JSON
 * form: they map as ordinary messages. */

/* Builds a new message of type d from a JSON object. On success *out is owned by the caller: free it with
 * protobuf_c_message_free_unpacked(*out, NULL) (it is laid out exactly as protobuf-c's unpacker would).
 * CV_EINVAL for input that does not match d, with a one-line message in err naming the JSON path, e.g.
 * "items[2].count: expected integer", "foo: unknown field (not in pkg.Msg)" or "expected object" (for j
 * itself);
 * CV_ENOMEM. On error *out is NULL. err may be NULL. j should come from json_loads(...,
 * JSON_REJECT_DUPLICATES, ...) so that a key given twice is an error rather than silently the last. */
int cv_pbjson_from_json(const ProtobufCMessageDescriptor *d, const json_t *j, ProtobufCMessage **out,
                        char *err, size_t errlen);
/* Same, with error paths rooted at `root` (e.g. "request" gives "request.items[2].count: expected
 * integer" and "request: expected object"). root NULL or "" is cv_pbjson_from_json. */
int cv_pbjson_from_json_at(const ProtobufCMessageDescriptor *d, const json_t *j, const char *root,
                           ProtobufCMessage **out, char *err, size_t errlen);

/* Renders m as a new JSON object owned by the caller (json_decref). CV_EINVAL with a message in err if
 * m cannot be represented (a string that is not UTF-8, nesting deeper than CV_PBJSON_MAX_DEPTH);
 * CV_ENOMEM. err may be NULL. */
int cv_pbjson_to_json(const ProtobufCMessage *m, json_t **out, char *err, size_t errlen);

/* Serializes m wrapped in a google.protobuf.Any (type_url "type.googleapis.com/<package.Message>", value
 * = m packed) into a new malloc'ed buffer owned by the caller (free). CV_ENOMEM. */
int cv_pbjson_any_pack(const ProtobufCMessage *m, uint8_t **out, size_t *len);
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

#endif
