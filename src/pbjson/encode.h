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

#endif
