/* protobuf-c message -> proto3 JSON (the mapping is described in pbjson.h). */
#ifndef CV_PBJSON_ENCODE_H
#define CV_PBJSON_ENCODE_H

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/* Renders m as a new JSON object owned by the caller (json_decref). CV_EINVAL with a message in err if
 * m cannot be represented (a string that is not UTF-8, nesting deeper than CV_PBJSON_MAX_DEPTH);
 * CV_ENOMEM. err may be NULL. */
int cv_pbjson_to_json(const ProtobufCMessage *m, json_t **out, char *err, size_t errlen);

/* cv_pbjson_to_json with flags. CV_PBJSON_EMIT_DEFAULTS: also fields at their default (proto3 JSON's
 * "emit unpopulated", as Go's protojson EmitUnpopulated): 0, "", false, [], {} and null for an unset
 * message field; an unset oneof member or field with explicit presence (proto2 optional, proto3
 * `optional`) stays omitted. */
#define CV_PBJSON_EMIT_DEFAULTS 1u
int cv_pbjson_to_json_ex(const ProtobufCMessage *m, unsigned flags, json_t **out, char *err, size_t errlen);

#endif
