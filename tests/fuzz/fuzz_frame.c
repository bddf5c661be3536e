/* libFuzzer target: the native protocol's frame decoder and every RPC body decoder.
 *
 * The input is a byte stream as a peer would send it; its first byte chooses how the stream is cut into
 * reads (1, 2, 7... bytes, or all at once) so partial prefixes and bodies are exercised. Two readers
 * decode the same stream: cv_frame_reader_view (the allocation-free fast path rpc.c uses) and
 * cv_frame_reader_next (protobuf-c's decode). They must agree frame by frame: same verdict, same id,
 * kind, method, status, error and body — a fast path that accepts what protobuf-c rejects (or reads
 * other values) is a bug even when nothing crashes. Each frame's body is then decoded as every request
 * body a node or gate accepts; a CallRequest also through cv_call_view, which must agree with protobuf-c
 * and re-pack (cv_call_pack) to bytes protobuf-c decodes to the same fields. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.pb-c.h"
#include "net/frame.h"
#include "rpc.pb-c.h"

#define CHECK(c)                                                                                             \
    do {                                                                                                     \
        if (!(c)) __builtin_trap();                                                                          \
    } while (0)

static int str_eq(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

static const ProtobufCMessageDescriptor *const bodies[] = {
    &cverse__rpc__propose_request__descriptor,   &cverse__rpc__propose_response__descriptor,
    &cverse__rpc__applied_notice__descriptor,    &cverse__rpc__call_response__descriptor,
    &cverse__rpc__redirect__descriptor,          &cverse__rpc__create_request__descriptor,
    &cverse__rpc__delete_request__descriptor,    &cverse__rpc__subscribe_request__descriptor,
    &cverse__rpc__shard_map__descriptor,         &cverse__rpc__status_response__descriptor,
    &cverse__rpc__push_batch__descriptor,        &cverse__rpc__attach_request__descriptor,
    &cverse__rpc__register_response__descriptor, &cverse__rpc__push_dropped__descriptor,
    &cverse__rpc__auth_request__descriptor,      &cverse__rpc__auth_response__descriptor,
    &cverse__catalog__batch__descriptor,
};

static void check_call(const uint8_t *p, size_t len)
{
    struct cv_call_view v;
    Cverse__Rpc__CallRequest *ref = cverse__rpc__call_request__unpack(NULL, len, p);
    int rv = cv_call_view(p, len, &v);
    CHECK((rv == 0) == (ref != NULL));
    if (rv == 0) {
        const Cverse__Rpc__CallRequest *c = v.c;
        CHECK(str_eq(c->type, ref->type) && str_eq(c->id, ref->id) && str_eq(c->method, ref->method));
        CHECK(str_eq(c->request_json, ref->request_json) && str_eq(c->call_id, ref->call_id));
        CHECK(str_eq(c->client_id, ref->client_id));
        CHECK(str_eq(c->caller_user, ref->caller_user) && str_eq(c->caller_roles, ref->caller_roles));
        CHECK(c->internal == ref->internal);
        CHECK(c->map_index == ref->map_index && c->form == ref->form && c->compact == ref->compact);
        CHECK(c->request.len == ref->request.len);
        CHECK(c->request.len == 0 || memcmp(c->request.data, ref->request.data, c->request.len) == 0);
        /* cv_call_size/pack write the known fields only (unknown ones are dropped, as a node forwards) */
        size_t n = cv_call_size(c), unknown = ref->base.n_unknown_fields;
        ref->base.n_unknown_fields = 0;
        CHECK(n == cverse__rpc__call_request__get_packed_size(ref));
        ref->base.n_unknown_fields = unknown;
        uint8_t *buf = malloc(n ? n : 1);
        CHECK(buf);
        cv_call_pack(c, buf);
        Cverse__Rpc__CallRequest *again = cverse__rpc__call_request__unpack(NULL, n, buf);
        CHECK(again && str_eq(again->id, ref->id) && again->request.len == ref->request.len);
        CHECK(str_eq(again->caller_user, ref->caller_user) && again->internal == ref->internal);
        cverse__rpc__call_request__free_unpacked(again, NULL);
        free(buf);
        cv_call_view_done(&v);
    }
    if (ref) cverse__rpc__call_request__free_unpacked(ref, NULL);
}

static void check_bodies(const uint8_t *p, size_t len)
{
    check_call(p, len);
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        ProtobufCMessage *m = protobuf_c_message_unpack(bodies[i], NULL, len, p);
        if (m) protobuf_c_message_free_unpacked(m, NULL);
    }
}

static void same_frame(const Cverse__Rpc__Frame *a, const Cverse__Rpc__Frame *b)
{
    CHECK(a->id == b->id && a->kind == b->kind && a->status == b->status);
    CHECK(a->deadline_ms == b->deadline_ms);
    CHECK(str_eq(a->method, b->method) && str_eq(a->error, b->error) && str_eq(a->app_code, b->app_code));
    CHECK(a->body.len == b->body.len);
    CHECK(a->body.len == 0 || memcmp(a->body.data, b->body.data, a->body.len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    static const size_t chunks[] = {1, 2, 3, 7, 64, 4096, SIZE_MAX};
    size_t chunk = chunks[data[0] % (sizeof chunks / sizeof chunks[0])];
    data++, size--;

    struct cv_frame_reader fast, slow;
    cv_frame_reader_init(&fast, 1u << 20);
    cv_frame_reader_init(&slow, 1u << 20);
    size_t off = 0;
    int done = 0;
    while (!done && off < size) {
        size_t n = size - off < chunk ? size - off : chunk;
        CHECK(cv_frame_reader_feed(&fast, data + off, n) == 0);
        CHECK(cv_frame_reader_feed(&slow, data + off, n) == 0);
        off += n;
        for (;;) {
            struct cv_frame_view v;
            Cverse__Rpc__Frame *f = NULL;
            int a = cv_frame_reader_view(&fast, &v);
            int b = cv_frame_reader_next(&slow, &f);
            CHECK(a == b);
            if (a <= 0) {
                done = a < 0;
                break;
            }
            same_frame(v.f, f);
            check_bodies(f->body.data, f->body.len);
            cv_frame_view_done(&v);
            cverse__rpc__frame__free_unpacked(f, NULL);
        }
    }
    cv_frame_reader_free(&fast);
    cv_frame_reader_free(&slow);
    return 0;
}
