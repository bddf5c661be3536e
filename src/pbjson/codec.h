/* Call payload mapping (pure): proto3 JSON or a serialized google.protobuf.Any <-> packed protobuf bytes. */
#ifndef CV_PBJSON_CODEC_H
#define CV_PBJSON_CODEC_H

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/* All functions: on success the output is malloc'ed and owned by the caller (free / json_decref); on error
 * the output is untouched and err gets one line. CV_ENOMEM on allocation failure. The owner node maps a
 * call's request and response with them (node/incall.c, call forms in docs/protocol.md). */

/* Packs a message of type d built from JSON j (an object; NULL = the empty message). Error paths are
 * rooted at `root` (e.g. "request.count: expected integer"). CV_EINVAL for JSON that does not match d. */
int cv_pbjson_json_to_bytes(const ProtobufCMessageDescriptor *d, const json_t *j, const char *root,
                            uint8_t **out, size_t *len, char *err, size_t errlen);
/* Same from JSON text of len bytes (parsed with JSON_REJECT_DUPLICATES); "" means the empty message. */
int cv_pbjson_json_text_to_bytes(const ProtobufCMessageDescriptor *d, const char *text, size_t tlen,
                                 uint8_t **out, size_t *len, char *err, size_t errlen);
/* Repacks the value of a serialized Any naming type d. CV_EINVAL if buf is not an Any of type d. */
int cv_pbjson_any_to_bytes(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t blen,
                           uint8_t **out, size_t *len, char *err, size_t errlen);

/* Renders packed bytes of type d as JSON; flags: CV_PBJSON_EMIT_DEFAULTS (zero-valued fields too, what
 * calls answer by default) or 0 (the compact form). CV_EPROTO if the bytes do not decode as d,
 * CV_EINVAL if the message cannot be represented in JSON. */
int cv_pbjson_bytes_to_json(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t blen,
                            unsigned flags, json_t **out, char *err, size_t errlen);
/* Same, as compact JSON text (NUL-terminated). */
int cv_pbjson_bytes_to_json_text(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t blen,
                                 unsigned flags, char **out, char *err, size_t errlen);

#endif
