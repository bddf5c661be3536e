/* proto3 JSON mapping for protobuf-c messages (via their descriptors), google.protobuf.Any, base64: the
 * mapping and its limits; the functions are in decode.h, encode.h and any.h. */
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

#include "pbjson/any.h"    /* google.protobuf.Any, base64 */
#include "pbjson/decode.h" /* JSON -> message */
#include "pbjson/encode.h" /* message -> JSON */

#endif
