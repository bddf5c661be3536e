/* libFuzzer target: the proto3 JSON <-> protobuf mapper, google.protobuf.Any and base64 (src/pbjson).
 *
 * The first byte picks a message type (the unit tests' schema with every field kind, maps, oneofs and
 * nesting, plus the protocol's CallRequest and the catalog's Batch) and a mode:
 *   JSON:  the rest is JSON text for that type. If it maps, the bytes render as JSON again and map back:
 *          after that first normalisation the round trip must be a fixed point (bytes -> JSON -> bytes
 *          gives the same bytes), in both the compact form and the one with defaults.
 *   BYTES: the rest is packed bytes (what a node gets in a call): rendering must agree with protobuf-c on
 *          whether they decode, and what renders must map back.
 *   ANY:   the rest is a serialized Any; repacking and base64 decoding (strict and lenient) must not fail
 *          in any other way than with an error code. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.pb-c.h"
#include "pbjson/codec.h"
#include "pbjson/pbjson.h"
#include "pbjson_test.pb-c.h"
#include "rpc.pb-c.h"

#define CHECK(c)                                                                                             \
    do {                                                                                                     \
        if (!(c)) __builtin_trap();                                                                          \
    } while (0)

static const ProtobufCMessageDescriptor *const types[] = {
    &cvtest__pbjson__everything__descriptor, &cvtest__pbjson__scalars__descriptor,
    &cvtest__pbjson__item__descriptor,       &cvtest__pbjson__hello__descriptor,
    &cverse__rpc__call_request__descriptor,  &cverse__catalog__batch__descriptor,
};
#define N_TYPES (sizeof types / sizeof types[0])

/* bytes of type d -> JSON text -> bytes: 0 and the new bytes, or the first error. */
static int round_trip(const ProtobufCMessageDescriptor *d, const uint8_t *b, size_t n, unsigned flags,
                      uint8_t **out, size_t *olen)
{
    char err[256], *text = NULL;
    int rv = cv_pbjson_bytes_to_json_text(d, b, n, flags, &text, err, sizeof err);
    if (rv) return rv;
    rv = cv_pbjson_json_text_to_bytes(d, text, strlen(text), out, olen, err, sizeof err);
    free(text);
    return rv;
}

static void fixed_point(const ProtobufCMessageDescriptor *d, const uint8_t *b, size_t n)
{
    for (unsigned flags = 0; flags <= CV_PBJSON_EMIT_DEFAULTS; flags++) {
        uint8_t *once = NULL, *twice = NULL;
        size_t l1 = 0, l2 = 0;
        if (round_trip(d, b, n, flags, &once, &l1) == 0) {
            /* what rendered once must render and map again, to the same bytes */
            CHECK(round_trip(d, once, l1, flags, &twice, &l2) == 0);
            CHECK(l1 == l2 && (l1 == 0 || memcmp(once, twice, l1) == 0));
        }
        free(once);
        free(twice);
    }
}

static void from_json(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t size)
{
    uint8_t *b = NULL;
    size_t n = 0;
    char err[256] = "";
    int rv = cv_pbjson_json_text_to_bytes(d, (const char *)data, size, &b, &n, err, sizeof err);
    if (rv) {
        CHECK(err[0] != '\0');
        return;
    }
    fixed_point(d, b, n);
    free(b);
}

static void from_bytes(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t size)
{
    ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, size, data);
    char err[256], *text = NULL;
    int rv = cv_pbjson_bytes_to_json_text(d, data, size, 0, &text, err, sizeof err);
    if (!m) CHECK(rv != 0); /* what protobuf-c cannot decode never renders */
    free(text);
    if (m) {
        protobuf_c_message_free_unpacked(m, NULL);
        if (rv == 0) fixed_point(d, data, size);
    }
}

static void from_any(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t size)
{
    uint8_t *b = NULL, *raw = NULL;
    size_t n = 0, rn = 0;
    char err[256];
    if (cv_pbjson_any_to_bytes(d, data, size, &b, &n, err, sizeof err) == 0) {
        ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, n, b);
        CHECK(m != NULL); /* a repacked Any value is a valid message of the type */
        protobuf_c_message_free_unpacked(m, NULL);
        free(b);
    }
    for (int lenient = 0; lenient <= 1; lenient++) {
        if (pbjson__b64_decode((const char *)data, size, lenient, &raw, &rn) == 0) {
            char *enc = NULL;
            size_t en = 0;
            CHECK(cv_pbjson_b64_encode(raw, rn, &enc, &en) == 0);
            uint8_t *back = NULL;
            size_t bn = 0;
            CHECK(pbjson__b64_decode(enc, en, 0, &back, &bn) == 0); /* our own output decodes strictly */
            CHECK(bn == rn && (rn == 0 || memcmp(back, raw, rn) == 0));
            free(back);
            free(enc);
            free(raw);
            raw = NULL;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const ProtobufCMessageDescriptor *d = types[(data[0] >> 2) % N_TYPES];
    switch (data[0] & 3) {
    case 0:
    case 3: from_json(d, data + 1, size - 1); break;
    case 1: from_bytes(d, data + 1, size - 1); break;
    case 2: from_any(d, data + 1, size - 1); break;
    }
    return 0;
}
