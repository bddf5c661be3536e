/* proto3 JSON -> protobuf-c message (the mapping is described in pbjson.h). */
#ifndef CV_PBJSON_DECODE_H
#define CV_PBJSON_DECODE_H

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

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

#endif
