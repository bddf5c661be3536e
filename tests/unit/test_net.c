/* Unit tests of src/net: framing (pure), RPC and HTTP over real sockets on 127.0.0.1, TCP liveness, and
 * raft's bounded connect (src/consensus/rafttcp, read by libraft's own listener). Each network test
 * runs one uv loop with a deadline timer; waiting is done by running the loop until a condition holds
 * (never by sleeping), and every test ends by closing all handles and checking uv_loop_close() == 0. */
#include <criterion/criterion.h>
#include <errno.h>
#include <ifaddrs.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#include "auth/guard.h"
#include "consensus/rafttcp.h"
#include "cverse/error.h"
#include "net/frame.h"
#include "net/http.h"
#include "net/rpc.h"
#include "net/rpcsock.h"
#include "net/tcplive.h"
#include "net/tls.h"

#include "blackhole.h"
#include "lsan_check.h"
#include "tls_cert.h"

TestSuite(frame, .fini = cv_lsan_check);
TestSuite(rpc, .fini = cv_lsan_check);
TestSuite(http, .fini = cv_lsan_check);
TestSuite(tcplive, .fini = cv_lsan_check);
TestSuite(rafttcp, .fini = cv_lsan_check);

/* ---------------------------------------------------------------------------------------------------
 * Framing. */

static Cverse__Rpc__Frame mkframe(uint64_t id, const char *method, const char *body)
{
    Cverse__Rpc__Frame f = CVERSE__RPC__FRAME__INIT;
    f.id = id;
    f.kind = CVERSE__RPC__KIND__KIND_REQUEST;
    f.method = (char *)method;
    f.body.data = (uint8_t *)body;
    f.body.len = strlen(body);
    return f;
}

Test(frame, encode_decode_round_trip)
{
    Cverse__Rpc__Frame f = mkframe(42, "catalog.propose", "payload\0bytes");
    f.body.len = 13;
    f.kind = CVERSE__RPC__KIND__KIND_RESPONSE;
    f.status = CV_ENOTLEADER;
    f.error = "not leader";
    f.deadline_ms = 1234;
    uint8_t *buf;
    size_t len;
    cr_assert_eq(cv_frame_encode(&f, &buf, &len), 0);
    cr_assert_eq(len, 4 + cverse__rpc__frame__get_packed_size(&f));
    cr_assert_eq(((size_t)buf[0] << 24 | (size_t)buf[1] << 16 | (size_t)buf[2] << 8 | buf[3]), len - 4);

    struct cv_frame_reader r;
    cv_frame_reader_init(&r, 0);
    Cverse__Rpc__Frame *out;
    cr_assert_eq(cv_frame_reader_next(&r, &out), 0);
    cr_assert_eq(cv_frame_reader_feed(&r, buf, len), 0);
    cr_assert_eq(cv_frame_reader_next(&r, &out), 1);
    cr_assert_eq(out->id, 42);
    cr_assert_eq(out->kind, CVERSE__RPC__KIND__KIND_RESPONSE);
    cr_assert_str_eq(out->method, "catalog.propose");
    cr_assert_eq(out->body.len, 13);
    cr_assert_eq(memcmp(out->body.data, "payload\0bytes", 13), 0);
    cr_assert_eq(out->status, CV_ENOTLEADER);
    cr_assert_str_eq(out->error, "not leader");
    cr_assert_eq(out->deadline_ms, 1234);
    cverse__rpc__frame__free_unpacked(out, NULL);
    cr_assert_eq(cv_frame_reader_next(&r, &out), 0);
    cr_assert_null(out);
    cv_frame_reader_free(&r);
    free(buf);
}

Test(frame, split_delivery_byte_by_byte)
{
    uint8_t *all = NULL;
    size_t total = 0;
    for (int i = 0; i < 3; i++) {
        char body[32];
        snprintf(body, sizeof body, "body-%d", i);
        Cverse__Rpc__Frame f = mkframe((uint64_t)i + 1, "m", body);
        uint8_t *b;
        size_t n;
        cr_assert_eq(cv_frame_encode(&f, &b, &n), 0);
        all = realloc(all, total + n);
        memcpy(all + total, b, n);
        total += n;
        free(b);
    }
    struct cv_frame_reader r;
    cv_frame_reader_init(&r, 0);
    int got = 0;
    for (size_t i = 0; i < total; i++) {
        cr_assert_eq(cv_frame_reader_feed(&r, all + i, 1), 0);
        Cverse__Rpc__Frame *f;
        int rv;
        while ((rv = cv_frame_reader_next(&r, &f)) == 1) {
            got++;
            char want[32];
            snprintf(want, sizeof want, "body-%d", got - 1);
            cr_assert_eq(f->id, (uint64_t)got);
            cr_assert_eq(f->body.len, strlen(want));
            cr_assert_eq(memcmp(f->body.data, want, f->body.len), 0);
            cverse__rpc__frame__free_unpacked(f, NULL);
        }
        cr_assert_eq(rv, 0);
    }
    cr_assert_eq(got, 3);
    cv_frame_reader_free(&r);
    free(all);
}

Test(frame, many_small_frames_in_one_feed)
{
    enum { N = 20000 };
    uint8_t *all = NULL;
    size_t total = 0;
    for (int i = 0; i < N; i++) {
        Cverse__Rpc__Frame f = mkframe((uint64_t)i, "m", "x");
        uint8_t *b;
        size_t n;
        cr_assert_eq(cv_frame_encode(&f, &b, &n), 0);
        all = realloc(all, total + n);
        memcpy(all + total, b, n);
        total += n;
        free(b);
    }
    struct cv_frame_reader r;
    cv_frame_reader_init(&r, 0);
    /* Two feeds, the second starting mid-frame, so decoding crosses a refill with undecoded bytes. */
    size_t half = total / 2 + 3;
    cr_assert_eq(cv_frame_reader_feed(&r, all, half), 0);
    int got = 0;
    Cverse__Rpc__Frame *f;
    while (cv_frame_reader_next(&r, &f) == 1) {
        cr_assert_eq(f->id, (uint64_t)got++);
        cverse__rpc__frame__free_unpacked(f, NULL);
    }
    cr_assert_eq(cv_frame_reader_feed(&r, all + half, total - half), 0);
    while (cv_frame_reader_next(&r, &f) == 1) {
        cr_assert_eq(f->id, (uint64_t)got++);
        cverse__rpc__frame__free_unpacked(f, NULL);
    }
    cr_assert_eq(got, N);
    cr_assert_eq(r.len, 0); /* fully consumed: the buffer is reused from its start */
    cv_frame_reader_free(&r);
    free(all);
}

/* The reader's buffer starts at 4096 bytes and doubles (cv_array_grow asked for at least 4096). */
Test(frame, buffer_starts_at_4096_and_doubles)
{
    static uint8_t junk[9000];
    struct cv_frame_reader r;
    cv_frame_reader_init(&r, 0);
    junk[3] = 1; /* a prefix declaring a 1-byte body... */
    cr_assert_eq(cv_frame_reader_feed(&r, junk, 10), 0);
    cr_assert_eq(r.cap, 4096);
    /* ...followed by more bytes than fit: 10 + 5000 needs 8192 */
    cr_assert_eq(cv_frame_reader_feed(&r, junk, 5000), 0);
    cr_assert_eq(r.cap, 8192);
    cr_assert_eq(r.len, 5010);
    cr_assert_eq(cv_frame_reader_feed(&r, junk, 9000), 0); /* 14010: 16384 */
    cr_assert_eq(r.cap, 16384);
    cv_frame_reader_free(&r);
}

/* The hand-written codec (cv_frame_size / cv_frame_pack / cv_frame_reader_view) against protobuf-c's:
 * the same bytes for every combination of set and default fields, and the same frame back. */
Test(frame, hand_codec_matches_protobuf_c)
{
    static const uint64_t ids[] = {0, 1, 127, 128, 300, UINT64_MAX};
    static const int32_t statuses[] = {0, -1, -64, 1, INT32_MIN, INT32_MAX};
    static const char *const strs[] = {"", "a", "catalog.propose",
                                       "an error text that is long enough to need a two-byte length prefix "
                                       "because it runs over one hundred and twenty-seven bytes in all, yes"};
    static const uint32_t deadlines[] = {0, 5, 1u << 31};
    uint8_t body[200];
    for (size_t i = 0; i < sizeof body; i++) body[i] = (uint8_t)(i * 7);
    size_t n = 0;
    for (size_t a = 0; a < 6; a++)
        for (size_t b = 0; b < 6; b++)
            for (size_t c = 0; c < 4; c++)
                for (size_t d = 0; d < 3; d++) {
                    Cverse__Rpc__Frame f = CVERSE__RPC__FRAME__INIT;
                    f.id = ids[a];
                    f.kind = (Cverse__Rpc__Kind)(b % 4);
                    f.status = statuses[b];
                    f.method = (char *)strs[c];
                    f.error = (char *)strs[(c + d) % 4];
                    f.body.data = body;
                    f.body.len = (size_t[]){0, 1, 200}[d];
                    f.deadline_ms = deadlines[(a + d) % 3];
                    f.app_code = (char *)(const char *[]){"", "E", "INSUFFICIENT_FUNDS"}[(a + c) % 3];
                    f.app_details_type = (char *)(d ? "wallet.Overdraft" : "");
                    f.app_details = (ProtobufCBinaryData){(size_t[]){0, 3, 130}[(b + d) % 3], body};
                    size_t want = cverse__rpc__frame__get_packed_size(&f);
                    cr_assert_eq(cv_frame_size(&f), want);
                    uint8_t mine[1024], theirs[1024];
                    cv_frame_pack(&f, want, mine);
                    cr_assert_eq(cverse__rpc__frame__pack(&f, theirs), want);
                    cr_assert(memcmp(mine + 4, theirs, want) == 0, "frame %zu packs differently", n);
                    struct cv_frame_reader r;
                    struct cv_frame_view v;
                    cv_frame_reader_init(&r, 0);
                    cr_assert_eq(cv_frame_reader_feed(&r, mine, want + 4), 0);
                    cr_assert_eq(cv_frame_reader_view(&r, &v), 1);
                    cr_assert_null(v.unpacked, "frame %zu: read in place", n);
                    cr_assert_eq(v.f->id, f.id);
                    cr_assert_eq(v.f->kind, f.kind);
                    cr_assert_eq(v.f->status, f.status);
                    cr_assert_eq(v.f->deadline_ms, f.deadline_ms);
                    cr_assert_str_eq(v.f->method, f.method);
                    cr_assert_str_eq(v.f->error, f.error);
                    cr_assert_eq(v.f->body.len, f.body.len);
                    cr_assert(f.body.len == 0 || memcmp(v.f->body.data, body, f.body.len) == 0);
                    cr_assert_str_eq(v.f->app_code, f.app_code);
                    cr_assert_str_eq(v.f->app_details_type, f.app_details_type);
                    cr_assert_eq(v.f->app_details.len, f.app_details.len);
                    cr_assert(f.app_details.len == 0 || memcmp(v.f->app_details.data, body, f.app_details.len) == 0);
                    cr_assert_eq(cv_frame_reader_view(&r, &v), 0, "one frame, then nothing");
                    cv_frame_view_done(&v);
                    cv_frame_reader_free(&r);
                    n++;
                }
}

/* A frame the hand decoder does not take (a field with an unexpected wire type, an unknown field) is
 * decoded by protobuf-c, with its answer: unknown fields skipped, a broken field CV_EPROTO. */
Test(frame, view_falls_back_to_protobuf_c)
{
    /* id=5, unknown field 15 (fixed64), method "m" (fields 8..10 are Frame's app_* since issue 12) */
    const uint8_t ok[] = {0, 0, 0, 14, 0x08, 5, 0x79, 1, 2, 3, 4, 5, 6, 7, 8, 0x1a, 1, 'm'};
    struct cv_frame_reader r;
    struct cv_frame_view v;
    cv_frame_reader_init(&r, 0);
    cr_assert_eq(cv_frame_reader_feed(&r, ok, sizeof ok), 0);
    cr_assert_eq(cv_frame_reader_view(&r, &v), 1);
    cr_assert_not_null(v.unpacked, "taken by protobuf-c");
    cr_assert_eq(v.f->id, 5);
    cr_assert_str_eq(v.f->method, "m");
    cv_frame_view_done(&v);
    cv_frame_reader_free(&r);
    /* method (field 3) cut short: undecodable, and the error sticks */
    const uint8_t bad[] = {0, 0, 0, 3, 0x1a, 5, 'm'};
    cv_frame_reader_init(&r, 0);
    cr_assert_eq(cv_frame_reader_feed(&r, bad, sizeof bad), 0);
    cr_assert_eq(cv_frame_reader_view(&r, &v), CV_EPROTO);
    cr_assert_eq(cv_frame_reader_view(&r, &v), CV_EPROTO);
    cv_frame_reader_free(&r);
}

/* Field numbers protobuf-c refuses (0, or above 2^29-1: fuzz_frame found the view accepting them) are
 * refused by the view too; an empty frame body (NULL data in protobuf-c's decode) is an empty call. */
Test(frame, view_refuses_field_numbers_protobuf_c_refuses)
{
    /* field 0 (varint 1); a varint field whose key 0xe0 0xd6 0xa6 0xd6 0xd6 0xd6 0x24 numbers it > 2^29-1 */
    const uint8_t zero[] = {0, 0, 0, 4, 0x08, 5, 0x00, 1};
    const uint8_t huge[] = {0, 0, 0, 13, 0xe0, 0xd6, 0xa6, 0xd6, 0xd6, 0xd6, 0x24, 0xd6, 0xd6, 0xd6, 0xd6, 0xd6, 0x00};
    const uint8_t *const in[] = {zero, huge};
    const size_t len[] = {sizeof zero, sizeof huge};
    for (int i = 0; i < 2; i++) {
        struct cv_frame_reader r;
        struct cv_frame_view v;
        cv_frame_reader_init(&r, 0);
        cr_assert_eq(cv_frame_reader_feed(&r, in[i], len[i]), 0);
        cr_assert_eq(cv_frame_reader_view(&r, &v), CV_EPROTO, "input %d", i);
        cv_frame_reader_free(&r);
    }
    struct cv_call_view cv;
    cr_assert_eq(cv_call_view(NULL, 0, &cv), 0);
    cr_assert_str_eq(cv.c->id, "");
    cv_call_view_done(&cv);
}

/* cv_call_view: a CallRequest packed by protobuf-c reads back field by field, without protobuf-c when
 * it fits the scratch, through it when a string is too long; bytes that are no CallRequest: CV_EPROTO. */
Test(frame, call_view_matches_protobuf_c)
{
    static char longid[2000];
    memset(longid, 'x', sizeof longid - 1);
    const char *const ids[] = {"", "SimpleCounter-bench-000042", longid};
    for (size_t k = 0; k < 3; k++)
        for (size_t j = 0; j < 2; j++) {
            Cverse__Rpc__CallRequest c = CVERSE__RPC__CALL_REQUEST__INIT;
            c.type = "SimpleCounter";
            c.id = (char *)ids[k];
            c.method = j ? "Increment" : "";
            c.request.data = (uint8_t *)"\x08\x05";
            c.request.len = j ? 2 : 0;
            c.request_json = j ? "" : "{\"by\":5}";
            c.map_index = j ? 0 : 300;
            c.call_id = j ? "call-1" : "";
            c.form = j ? CVERSE__RPC__CALL_FORM__CALL_FORM_ANY : CVERSE__RPC__CALL_FORM__CALL_FORM_BYTES;
            c.compact = j;
            c.caller_user = j ? "alice" : "";
            c.caller_roles = j ? "admin,ops" : "";
            c.internal = j;
            uint8_t buf[2200], mine[2200];
            size_t n = cverse__rpc__call_request__pack(&c, buf);
            cr_assert_eq(cv_call_size(&c), n);
            cv_call_pack(&c, mine);
            cr_assert(memcmp(mine, buf, n) == 0, "cv_call_pack writes protobuf-c's bytes");
            struct cv_call_view v;
            cr_assert_eq(cv_call_view(buf, n, &v), 0);
            cr_assert_eq(v.unpacked != NULL, k == 2, "protobuf-c only for the long id");
            cr_assert_str_eq(v.c->type, c.type);
            cr_assert_str_eq(v.c->id, c.id);
            cr_assert_str_eq(v.c->method, c.method);
            cr_assert_str_eq(v.c->request_json, c.request_json);
            cr_assert_str_eq(v.c->call_id, c.call_id);
            cr_assert_eq(v.c->map_index, c.map_index);
            cr_assert_eq(v.c->form, c.form);
            cr_assert_eq(v.c->compact, c.compact);
            cr_assert_str_eq(v.c->caller_user, c.caller_user);
            cr_assert_str_eq(v.c->caller_roles, c.caller_roles);
            cr_assert_eq(v.c->internal, c.internal);
            cr_assert_eq(v.c->request.len, c.request.len);
            cr_assert(c.request.len == 0 || memcmp(v.c->request.data, c.request.data, c.request.len) == 0);
            cv_call_view_done(&v);
        }
    const uint8_t bad[] = {0x0a, 5, 'a'}; /* type cut short */
    struct cv_call_view v;
    cr_assert_eq(cv_call_view(bad, sizeof bad, &v), CV_EPROTO);
}

Test(frame, oversize_detected_from_the_prefix)
{
    struct cv_frame_reader r;
    cv_frame_reader_init(&r, 100);
    uint8_t pre[4] = {0, 0, 0, 101};
    Cverse__Rpc__Frame *f;
    cr_assert_eq(cv_frame_reader_feed(&r, pre, 3), 0);
    cr_assert_eq(cv_frame_reader_next(&r, &f), 0);
    cr_assert_eq(cv_frame_reader_feed(&r, pre + 3, 1), 0);
    cr_assert_eq(cv_frame_reader_next(&r, &f), CV_ETOOBIG);
    /* The body is not buffered behind an oversized prefix, and the error sticks. */
    uint8_t junk[4096];
    memset(junk, 'a', sizeof junk);
    cr_assert_eq(cv_frame_reader_feed(&r, junk, sizeof junk), 0);
    cr_assert_leq(r.len, 4);
    cr_assert_eq(cv_frame_reader_next(&r, &f), CV_ETOOBIG);
    cv_frame_reader_free(&r);

    /* Default max, a 4 GiB declaration arriving together with body bytes. */
    cv_frame_reader_init(&r, 0);
    uint8_t big[64] = {0xff, 0xff, 0xff, 0xff};
    cr_assert_eq(cv_frame_reader_feed(&r, big, sizeof big), 0);
    cr_assert_leq(r.len, 4);
    cr_assert_eq(cv_frame_reader_next(&r, &f), CV_ETOOBIG);
    cv_frame_reader_free(&r);
}

Test(frame, garbage_body_is_eproto)
{
    struct cv_frame_reader r;
    cv_frame_reader_init(&r, 0);
    uint8_t bad[] = {0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff};
    Cverse__Rpc__Frame *f;
    cr_assert_eq(cv_frame_reader_feed(&r, bad, sizeof bad), 0);
    cr_assert_eq(cv_frame_reader_next(&r, &f), CV_EPROTO);
    cr_assert_null(f);
    cr_assert_eq(cv_frame_reader_next(&r, &f), CV_EPROTO);
    cv_frame_reader_free(&r);
}

Test(frame, encode_refuses_oversized)
{
    size_t n = CV_FRAME_MAX + 1;
    uint8_t *body = calloc(1, n);
    Cverse__Rpc__Frame f = CVERSE__RPC__FRAME__INIT;
    f.body.data = body;
    f.body.len = n;
    uint8_t *out = NULL;
    size_t len = 0;
    cr_assert_eq(cv_frame_encode(&f, &out, &len), CV_ETOOBIG);
    cr_assert_null(out);
    free(body);
}

/* ---------------------------------------------------------------------------------------------------
 * Loop harness. */

static uv_loop_t loop;
static uv_timer_t deadline_timer;
static int deadline_hit;

static void deadline_cb(uv_timer_t *t)
{
    deadline_hit = 1;
}

static void loop_setup(void)
{
    cr_assert_eq(uv_loop_init(&loop), 0);
    deadline_hit = 0;
    uv_timer_init(&loop, &deadline_timer);
    uv_timer_start(&deadline_timer, deadline_cb, 15000, 0);
}

#define RUN_UNTIL(cond)                                                             \
    do {                                                                            \
        while (!(cond)) {                                                           \
            cr_assert(!deadline_hit, "deadline hit while waiting for: %s", #cond); \
            uv_run(&loop, UV_RUN_ONCE);                                             \
        }                                                                           \
    } while (0)

/* Everything else must be closed (and its close callbacks awaited) before. */
static void loop_teardown(void)
{
    uv_close((uv_handle_t *)&deadline_timer, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&loop), 0, "handles left open");
}

/* One-shot timer with a callback, closed by itself. */
struct later {
    uv_timer_t t;
    void (*fn)(void *);
    void *arg;
};

static void later_closed(uv_handle_t *h)
{
    free(h->data);
}

static void later_cb(uv_timer_t *t)
{
    struct later *l = t->data;
    l->fn(l->arg);
    uv_close((uv_handle_t *)&l->t, later_closed);
}

static void run_later(unsigned ms, void (*fn)(void *), void *arg)
{
    struct later *l = calloc(1, sizeof *l);
    l->fn = fn;
    l->arg = arg;
    uv_timer_init(&loop, &l->t);
    l->t.data = l;
    uv_timer_start(&l->t, later_cb, ms, 0);
}

/* A raw TCP client: sends bytes, collects whatever comes back, notes EOF / reset. */
struct raw {
    uv_tcp_t tcp;
    uv_connect_t creq;
    int connected, eof, closed;
    char *data;
    size_t len, cap;
};

static void raw_connect_cb(uv_connect_t *req, int status)
{
    struct raw *r = req->data;
    cr_assert_eq(status, 0, "raw connect: %s", uv_strerror(status));
    r->connected = 1;
}

static void raw_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct raw *r = h->data;
    if (r->cap - r->len < 65537) {
        r->cap = r->cap * 2 + 65537;
        r->data = realloc(r->data, r->cap);
    }
    *buf = uv_buf_init(r->data + r->len, 65536);
}

static void raw_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct raw *r = s->data;
    if (n < 0) {
        r->eof = 1;
        uv_read_stop(s);
        return;
    }
    r->len += (size_t)n;
    r->data[r->len] = '\0';
}

static void raw_connect(struct raw *r, int port)
{
    memset(r, 0, sizeof *r);
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", port, &sa);
    uv_tcp_init(&loop, &r->tcp);
    r->tcp.data = r;
    r->creq.data = r;
    cr_assert_eq(uv_tcp_connect(&r->creq, &r->tcp, (struct sockaddr *)&sa, raw_connect_cb), 0);
    RUN_UNTIL(r->connected);
    cr_assert_eq(uv_read_start((uv_stream_t *)&r->tcp, raw_alloc, raw_read), 0);
}

static void raw_write_cb(uv_write_t *w, int status)
{
    free(w->data);
    free(w);
}

static void raw_send(struct raw *r, const void *data, size_t n)
{
    uv_write_t *w = malloc(sizeof *w);
    w->data = malloc(n);
    memcpy(w->data, data, n);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
    cr_assert_eq(uv_write(w, (uv_stream_t *)&r->tcp, &b, 1, raw_write_cb), 0);
}

static void raw_sends(struct raw *r, const char *s)
{
    raw_send(r, s, strlen(s));
}

static void raw_closed(uv_handle_t *h)
{
    struct raw *r = h->data;
    r->closed = 1;
}

static void raw_close(struct raw *r)
{
    uv_close((uv_handle_t *)&r->tcp, raw_closed);
    RUN_UNTIL(r->closed);
    free(r->data);
    r->data = NULL;
}

/* ---------------------------------------------------------------------------------------------------
 * RPC. */

struct held {
    struct cv_rpc_conn *conn;
    uint64_t id;
};

struct rsrv {
    struct cv_rpc_server *srv;
    int port, closed;
    int requests, conn_closes, conns_seen;
    struct cv_rpc_conn *last_conn;
    uint32_t last_deadline;
    struct held held[8];
    int nheld;
    struct cv_rpc_conn *sub;
};

static void rsrv_on_request(void *data, struct cv_rpc_conn *conn, uint64_t id, const char *method,
                            const uint8_t *body, size_t len, uint32_t deadline_ms)
{
    struct rsrv *s = data;
    s->requests++;
    s->last_deadline = deadline_ms;
    if (conn != s->last_conn) {
        s->conns_seen++;
        s->last_conn = conn;
    }
    if (!strcmp(method, "echo")) {
        cr_assert_eq(cv_rpc_respond(conn, id, 0, NULL, body, len), 0);
    } else if (!strcmp(method, "fail")) {
        cr_assert_eq(cv_rpc_respond(conn, id, CV_ENOTFOUND, "no such thing", NULL, 0), 0);
    } else if (!strcmp(method, "hold")) {
        cr_assert_lt(s->nheld, 8);
        cv_rpc_conn_ref(conn);
        s->held[s->nheld++] = (struct held){conn, id};
    } else if (!strcmp(method, "subscribe")) {
        cv_rpc_conn_ref(conn);
        s->sub = conn;
        cr_assert_eq(cv_rpc_respond(conn, id, 0, NULL, "ok", 2), 0);
    } /* "never": left unanswered on purpose */
}

static void rsrv_on_conn_close(void *data, struct cv_rpc_conn *conn)
{
    struct rsrv *s = data;
    s->conn_closes++;
}

static struct rsrv *rsrv_current;
static void rsrv_closed_flag(void *data)
{
    rsrv_current->closed = 1;
}

static void rsrv_start(struct rsrv *s, const char *addr)
{
    memset(s, 0, sizeof *s);
    cr_assert_eq(cv_rpc_server_init(&loop, rsrv_on_request, rsrv_on_conn_close, s, &s->srv), 0);
    cr_assert_eq(cv_rpc_server_listen(s->srv, addr), 0);
    s->port = cv_rpc_server_port(s->srv);
    cr_assert_gt(s->port, 0);
}

static void rsrv_stop(struct rsrv *s)
{
    rsrv_current = s;
    cv_rpc_server_close(s->srv, rsrv_closed_flag);
    RUN_UNTIL(s->closed);
}

struct rcli {
    struct cv_rpc_client *cli;
    int closed, ups, downs;
    int events;
    char last_event[64];
};

static void rcli_on_event(void *data, const char *method, const uint8_t *body, size_t len)
{
    struct rcli *c = data;
    c->events++;
    snprintf(c->last_event, sizeof c->last_event, "%s:%.*s", method, (int)len, (const char *)body);
}

static void rcli_on_state(void *data, int up)
{
    struct rcli *c = data;
    if (up) c->ups++;
    else c->downs++;
}

static struct rcli *rcli_current;
static void rcli_closed(struct cv_rpc_client *cli)
{
    rcli_current->closed = 1;
}

static void rcli_start(struct rcli *c, int port)
{
    memset(c, 0, sizeof *c);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    struct cv_rpc_client_opts o = {.addr = addr, .reconnect_ms = 50, .on_event = rcli_on_event,
                                   .on_state = rcli_on_state, .data = c};
    cr_assert_eq(cv_rpc_client_init(&loop, &o, &c->cli), 0);
}

static void rcli_stop(struct rcli *c)
{
    rcli_current = c;
    cv_rpc_client_close(c->cli, rcli_closed);
    RUN_UNTIL(c->closed);
}

struct result {
    int done, status;
    char error[128];
    char body[128];
    size_t len;
    int *in_call; /* set while cv_rpc_call runs: the callback must never see it */
};

static void result_cb(void *data, int status, const char *error, const uint8_t *body, size_t len)
{
    struct result *r = data;
    cr_assert(!r->in_call || !*r->in_call, "callback ran inside cv_rpc_call");
    cr_assert_eq(r->done, 0, "callback fired twice");
    cr_assert_not_null(body);
    r->done = 1;
    r->status = status;
    snprintf(r->error, sizeof r->error, "%s", error ? error : "");
    r->len = len;
    snprintf(r->body, sizeof r->body, "%.*s", (int)len, (const char *)body);
}

static int in_call;

static void call(struct rcli *c, const char *method, const char *body, unsigned timeout, struct result *r)
{
    memset(r, 0, sizeof *r);
    r->in_call = &in_call;
    in_call = 1;
    int rv = cv_rpc_call(c->cli, method, body, strlen(body), timeout, result_cb, r);
    in_call = 0;
    cr_assert_eq(rv, 0);
}

Test(rpc, echo_round_trip_and_peer_error)
{
    loop_setup();
    struct rsrv s;
    struct rcli c;
    struct result r;
    rsrv_start(&s, "127.0.0.1:0");
    rcli_start(&c, s.port);
    call(&c, "echo", "hello", 2000, &r);
    RUN_UNTIL(r.done);
    cr_assert_eq(r.status, 0);
    cr_assert_str_eq(r.body, "hello");
    cr_assert_str_eq(r.error, "");
    cr_assert_eq(c.ups, 1);
    cr_assert_gt(s.last_deadline, 0);
    cr_assert_leq(s.last_deadline, 2000);

    call(&c, "fail", "", 0, &r);
    RUN_UNTIL(r.done);
    cr_assert_eq(r.status, CV_ENOTFOUND);
    cr_assert_str_eq(r.error, "no such thing");
    cr_assert_eq(s.last_deadline, 0);

    rcli_stop(&c);
    RUN_UNTIL(s.conn_closes == 1);
    rsrv_stop(&s);
    loop_teardown();
}

struct many {
    int done, bad;
};

struct many_call {
    struct many *m;
    int i;
};

static void many_cb(void *data, int status, const char *error, const uint8_t *body, size_t len)
{
    struct many_call *mc = data;
    char want[32];
    snprintf(want, sizeof want, "msg-%d", mc->i);
    if (status != 0 || len != strlen(want) || memcmp(body, want, len) != 0) mc->m->bad++;
    mc->m->done++;
}

Test(rpc, thousand_calls_in_flight_on_one_connection)
{
    enum { N = 1000 };
    loop_setup();
    struct rsrv s;
    struct rcli c;
    rsrv_start(&s, "127.0.0.1:0");
    rcli_start(&c, s.port);
    struct many m = {0};
    static struct many_call mc[N];
    for (int i = 0; i < N; i++) {
        char body[32];
        mc[i] = (struct many_call){&m, i};
        snprintf(body, sizeof body, "msg-%d", i);
        cr_assert_eq(cv_rpc_call(c.cli, "echo", body, strlen(body), 10000, many_cb, &mc[i]), 0);
    }
    cr_assert_eq(m.done, 0);
    RUN_UNTIL(m.done == N);
    cr_assert_eq(m.bad, 0);
    cr_assert_eq(s.requests, N);
    cr_assert_eq(s.conns_seen, 1);
    cr_assert_eq(c.ups, 1);
    /* A second burst on the established connection. */
    m = (struct many){0};
    for (int i = 0; i < N; i++) {
        char body[32];
        snprintf(body, sizeof body, "msg-%d", i);
        cr_assert_eq(cv_rpc_call(c.cli, "echo", body, strlen(body), 0, many_cb, &mc[i]), 0);
    }
    RUN_UNTIL(m.done == N);
    cr_assert_eq(m.bad, 0);
    cr_assert_eq(s.conns_seen, 1);
    rcli_stop(&c);
    rsrv_stop(&s);
    loop_teardown();
}

static void answer_held(void *arg)
{
    struct rsrv *s = arg;
    for (int i = 0; i < s->nheld; i++) {
        cr_assert_eq(cv_rpc_respond(s->held[i].conn, s->held[i].id, 0, NULL, "late", 4), 0);
        cv_rpc_conn_unref(s->held[i].conn);
    }
    s->nheld = 0;
}

Test(rpc, deferred_response)
{
    loop_setup();
    struct rsrv s;
    struct rcli c;
    struct result r;
    rsrv_start(&s, "127.0.0.1:0");
    rcli_start(&c, s.port);
    call(&c, "hold", "x", 5000, &r);
    RUN_UNTIL(s.nheld == 1);
    cr_assert_eq(r.done, 0);
    run_later(30, answer_held, &s);
    RUN_UNTIL(r.done);
    cr_assert_eq(r.status, 0);
    cr_assert_str_eq(r.body, "late");
    rcli_stop(&c);
    rsrv_stop(&s);
    loop_teardown();
}

Test(rpc, respond_after_peer_left_is_eclosed)
{
    loop_setup();
    struct rsrv s;
    struct rcli c;
    struct result r;
    rsrv_start(&s, "127.0.0.1:0");
    rcli_start(&c, s.port);
    call(&c, "hold", "x", 0, &r);
    RUN_UNTIL(s.nheld == 1);
    rcli_stop(&c);
    cr_assert_eq(r.done, 1);
    cr_assert_eq(r.status, CV_ECANCELED);
    RUN_UNTIL(s.conn_closes == 1);
    cr_assert_eq(cv_rpc_respond(s.held[0].conn, s.held[0].id, 0, NULL, "late", 4), CV_ECLOSED);
    cr_assert_eq(cv_rpc_send_event(s.held[0].conn, "ev", "x", 1), CV_ECLOSED);
    rsrv_stop(&s);
    /* The reference outlives the server: dropping it last frees the connection. */
    cv_rpc_conn_unref(s.held[0].conn);
    loop_teardown();
}

Test(rpc, deadline_expires_when_server_never_answers)
{
    loop_setup();
    struct rsrv s;
    struct rcli c;
    struct result r, r2;
    rsrv_start(&s, "127.0.0.1:0");
    rcli_start(&c, s.port);
    uint64_t t0 = uv_now(&loop);
    call(&c, "never", "x", 150, &r);
    call(&c, "never", "y", 60, &r2);
    RUN_UNTIL(r2.done);
    cr_assert_eq(r2.status, CV_ETIMEDOUT);
    cr_assert_eq(r.done, 0);
    RUN_UNTIL(r.done);
    uv_update_time(&loop);
    cr_assert_eq(r.status, CV_ETIMEDOUT);
    cr_assert_geq(uv_now(&loop) - t0, 150);
    cr_assert_eq(s.requests, 2);
    rcli_stop(&c);
    rsrv_stop(&s);
    loop_teardown();
}

Test(rpc, connection_loss_fails_in_flight_calls)
{
    loop_setup();
    struct rsrv s;
    struct rcli c;
    struct result r;
    rsrv_start(&s, "127.0.0.1:0");
    rcli_start(&c, s.port);
    call(&c, "never", "x", 0, &r);
    RUN_UNTIL(s.requests == 1);
    rsrv_stop(&s);
    RUN_UNTIL(r.done);
    cr_assert_eq(r.status, CV_EUNAVAIL);
    RUN_UNTIL(c.downs == 1);
    rcli_stop(&c);
    loop_teardown();
}

Test(rpc, server_down_then_up_reconnects)
{
    loop_setup();
    struct rsrv s;
    struct rcli c;
    struct result r;
    /* Learn a free port, then leave it closed. */
    rsrv_start(&s, "127.0.0.1:0");
    int port = s.port;
    rsrv_stop(&s);
    rcli_start(&c, port);
    call(&c, "echo", "first", 200, &r);
    RUN_UNTIL(r.done);
    cr_assert(r.status == CV_EUNAVAIL || r.status == CV_ETIMEDOUT, "status %d", r.status);
    cr_assert_eq(c.ups, 0);

    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    rsrv_start(&s, addr);
    call(&c, "echo", "second", 5000, &r);
    RUN_UNTIL(r.done);
    cr_assert_eq(r.status, 0);
    cr_assert_str_eq(r.body, "second");
    cr_assert_eq(c.ups, 1);
    rcli_stop(&c);
    rsrv_stop(&s);
    loop_teardown();
}

Test(rpc, events_pushed_by_the_server)
{
    loop_setup();
    struct rsrv s;
    struct rcli c;
    struct result r;
    rsrv_start(&s, "127.0.0.1:0");
    rcli_start(&c, s.port);
    call(&c, "subscribe", "", 1000, &r);
    RUN_UNTIL(r.done);
    cr_assert_eq(r.status, 0);
    cr_assert_not_null(s.sub);
    cr_assert_eq(cv_rpc_send_event(s.sub, "catalog.changed", "v2", 2), 0);
    cr_assert_eq(cv_rpc_send_event(s.sub, "catalog.changed", "v3", 2), 0);
    RUN_UNTIL(c.events == 2);
    cr_assert_str_eq(c.last_event, "catalog.changed:v3");
    cv_rpc_conn_unref(s.sub);
    rcli_stop(&c);
    rsrv_stop(&s);
    loop_teardown();
}

Test(rpc, malformed_frame_closes_only_that_connection)
{
    loop_setup();
    struct rsrv s;
    struct rcli c;
    struct result r;
    struct raw bad, big;
    rsrv_start(&s, "127.0.0.1:0");
    rcli_start(&c, s.port);
    call(&c, "echo", "before", 2000, &r);
    RUN_UNTIL(r.done);
    cr_assert_eq(r.status, 0);

    raw_connect(&bad, s.port);
    uint8_t garbage[] = {0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff};
    raw_send(&bad, garbage, sizeof garbage);
    RUN_UNTIL(bad.eof);
    raw_connect(&big, s.port);
    uint8_t huge[] = {0x7f, 0xff, 0xff, 0xff, 1, 2, 3};
    raw_send(&big, huge, sizeof huge);
    RUN_UNTIL(big.eof);
    RUN_UNTIL(s.conn_closes == 2);

    call(&c, "echo", "after", 2000, &r);
    RUN_UNTIL(r.done);
    cr_assert_eq(r.status, 0);
    cr_assert_str_eq(r.body, "after");
    cr_assert_eq(c.downs, 0);
    cr_assert_eq(c.ups, 1);
    raw_close(&bad);
    raw_close(&big);
    rcli_stop(&c);
    rsrv_stop(&s);
    loop_teardown();
}

Test(rpc, close_cancels_waiting_calls_and_refuses_new_ones)
{
    loop_setup();
    struct rsrv s;
    struct rcli c;
    struct result r1, r2;
    rsrv_start(&s, "127.0.0.1:0");
    rcli_start(&c, s.port);
    call(&c, "never", "x", 0, &r1);
    RUN_UNTIL(s.requests == 1);
    call(&c, "never", "y", 0, &r2);
    rcli_current = &c;
    cv_rpc_client_close(c.cli, rcli_closed);
    cr_assert_eq(cv_rpc_call(c.cli, "echo", "z", 1, 0, result_cb, &r1), CV_ECLOSED);
    cr_assert_eq(r1.done, 0); /* never from inside cv_rpc_client_close */
    RUN_UNTIL(c.closed);
    cr_assert_eq(r1.status, CV_ECANCELED);
    cr_assert_eq(r2.status, CV_ECANCELED);
    rsrv_stop(&s);
    loop_teardown();
}

/* ---- the cluster handshake on rpc connections (auth/handshake.h) ---------------------------------- */

static struct cv_secret test_secret(const char *s)
{
    struct cv_secret k;
    cr_assert_eq(cv_secret_from_bytes(s, strlen(s), &k), 0);
    return k;
}

static void rsrv_start_guarded(struct rsrv *s, const struct cv_guard *g)
{
    memset(s, 0, sizeof *s);
    cr_assert_eq(cv_rpc_server_init(&loop, rsrv_on_request, rsrv_on_conn_close, s, &s->srv), 0);
    cv_rpc_server_set_guard(s->srv, g);
    cr_assert_eq(cv_rpc_server_listen(s->srv, "127.0.0.1:0"), 0);
    s->port = cv_rpc_server_port(s->srv);
}

static void rcli_start_guarded(struct rcli *c, int port, const struct cv_guard *g)
{
    memset(c, 0, sizeof *c);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    struct cv_rpc_client_opts o = {.addr = addr, .reconnect_ms = 50, .on_event = rcli_on_event,
                                   .on_state = rcli_on_state, .data = c, .guard = g};
    cr_assert_eq(cv_rpc_client_init(&loop, &o, &c->cli), 0);
}

/* A client with the server's secret calls as before; one without it, or with another, never reaches a
 * method (its calls time out while it keeps redialling) and each refusal is counted by reason. */
Test(rpc, handshake_admits_only_peers_with_the_secret)
{
    loop_setup();
    struct cv_secret k = test_secret("the-cluster-secret-0123"), other = test_secret("another-secret-012345");
    struct cv_guard gs = {.secret = &k}, gother = {.secret = &other};
    struct rsrv s;
    struct rcli good, none, wrong;
    struct result r;
    rsrv_start_guarded(&s, &gs);
    rcli_start_guarded(&good, s.port, &gs);
    call(&good, "echo", "hello", 2000, &r);
    RUN_UNTIL(r.done);
    cr_assert_eq(r.status, 0, "%s", r.error);
    cr_assert_str_eq(r.body, "hello");
    cr_assert_eq(good.ups, 1);

    uint64_t magic = cv_guard_failures(CV_AUTH_R_MAGIC), proof = cv_guard_failures(CV_AUTH_R_PROOF);
    rcli_start(&none, s.port); /* no secret: sends a frame where the HELLO belongs */
    call(&none, "echo", "x", 300, &r);
    RUN_UNTIL(r.done);
    cr_assert(r.status == CV_EUNAVAIL || r.status == CV_ETIMEDOUT, "status %d", r.status); /* written, dropped */
    cr_assert_gt(cv_guard_failures(CV_AUTH_R_MAGIC), magic);

    rcli_start_guarded(&wrong, s.port, &gother);
    call(&wrong, "echo", "x", 300, &r);
    RUN_UNTIL(r.done);
    cr_assert_eq(r.status, CV_ETIMEDOUT);
    cr_assert_gt(cv_guard_failures(CV_AUTH_R_PROOF), proof + 1, "both sides count the wrong proof");
    cr_assert_eq(wrong.ups, 0);
    cr_assert_eq(s.requests, 1, "only the good client's call ran");

    rcli_stop(&none);
    rcli_stop(&wrong);
    rcli_stop(&good);
    rsrv_stop(&s);
    loop_teardown();
}

/* A client with a secret does not talk to a server without one (its HELLO is not a frame). */
Test(rpc, handshake_client_against_an_open_server_fails)
{
    loop_setup();
    struct cv_secret k = test_secret("the-cluster-secret-0123");
    struct cv_guard gs = {.secret = &k};
    struct rsrv s;
    struct rcli c;
    struct result r;
    rsrv_start(&s, "127.0.0.1:0");
    rcli_start_guarded(&c, s.port, &gs);
    call(&c, "echo", "x", 300, &r);
    RUN_UNTIL(r.done);
    cr_assert_eq(r.status, CV_ETIMEDOUT);
    cr_assert_eq(s.requests, 0);
    rcli_stop(&c);
    rsrv_stop(&s);
    loop_teardown();
}

static void rcli_start_tls(struct rcli *c, int port, const struct cv_guard *g, struct cv_tls_ctx *tls)
{
    memset(c, 0, sizeof *c);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    struct cv_rpc_client_opts o = {.addr = addr, .reconnect_ms = 50, .on_state = rcli_on_state, .data = c,
                                   .guard = g, .tls = tls};
    cr_assert_eq(cv_rpc_client_init(&loop, &o, &c->cli), 0);
}

/* TLS under the cluster handshake: a client trusting the server's certificate calls (a body larger than a
 * TLS record too); one trusting another CA fails its calls at once with CV_EAUTH naming the reason; a
 * plain client reaches no method; both refusals are counted by the server. */
Test(rpc, tls_with_the_cluster_handshake_inside)
{
    loop_setup();
    char dir[] = "/tmp/cverse-test-rpctls-XXXXXX", cert[128], key[128], other[128], err[256];
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_eq(cv_test_make_cert(dir, "srv"), 0, "openssl could not make a certificate");
    cr_assert_eq(cv_test_make_cert(dir, "other"), 0);
    snprintf(cert, sizeof cert, "%s/srv-cert.pem", dir);
    snprintf(key, sizeof key, "%s/srv-key.pem", dir);
    snprintf(other, sizeof other, "%s/other-cert.pem", dir);
    struct cv_tls_ctx *sctx, *cctx, *octx;
    cr_assert_eq(cv_tls_ctx_server(cert, key, err, sizeof err, &sctx), 0, "%s", err);
    cr_assert_eq(cv_tls_ctx_client(cert, err, sizeof err, &cctx), 0, "%s", err);
    cr_assert_eq(cv_tls_ctx_client(other, err, sizeof err, &octx), 0, "%s", err);
    struct cv_secret k = test_secret("the-cluster-secret-0123");
    struct cv_guard gs = {.secret = &k};
    struct rsrv s;
    struct rcli good, wrong, plain;
    struct result r;
    memset(&s, 0, sizeof s);
    cr_assert_eq(cv_rpc_server_init(&loop, rsrv_on_request, rsrv_on_conn_close, &s, &s.srv), 0);
    cv_rpc_server_set_guard(s.srv, &gs);
    cv_rpc_server_set_tls(s.srv, sctx);
    cr_assert_eq(cv_rpc_server_listen(s.srv, "127.0.0.1:0"), 0);
    s.port = cv_rpc_server_port(s.srv);

    rcli_start_tls(&good, s.port, &gs, cctx);
    call(&good, "echo", "hello", 5000, &r);
    RUN_UNTIL(r.done);
    cr_assert_eq(r.status, 0, "%s", r.error);
    cr_assert_str_eq(r.body, "hello");
    size_t big = 100000;
    char *body = malloc(big + 1);
    memset(body, 'x', big);
    body[big] = '\0';
    call(&good, "echo", body, 5000, &r);
    RUN_UNTIL(r.done);
    cr_assert_eq(r.status, 0, "%s", r.error);
    cr_assert_eq(r.len, big);
    free(body);
    struct cv_rpc_server_stats st;
    cv_rpc_server_stats(s.srv, &st);
    cr_assert_eq(st.tls_failures, 0);

    rcli_start_tls(&wrong, s.port, &gs, octx);
    call(&wrong, "echo", "x", 5000, &r);
    RUN_UNTIL(r.done);
    cr_assert_eq(r.status, CV_EAUTH, "%d %s", r.status, r.error);
    cr_assert(strstr(r.error, "TLS with 127.0.0.1:") && strstr(r.error, "certificate verify failed"), "%s", r.error);
    RUN_UNTIL((cv_rpc_server_stats(s.srv, &st), st.tls_failures >= 1));

    rcli_start(&plain, s.port); /* sends a frame where the TLS hello belongs */
    call(&plain, "echo", "x", 300, &r);
    RUN_UNTIL(r.done);
    cr_assert(r.status == CV_EUNAVAIL || r.status == CV_ETIMEDOUT, "status %d", r.status);
    RUN_UNTIL((cv_rpc_server_stats(s.srv, &st), st.tls_failures >= 2));
    cr_assert_eq(s.requests, 2, "only the good client's calls ran");

    rcli_stop(&plain);
    rcli_stop(&wrong);
    rcli_stop(&good);
    rsrv_stop(&s);
    cv_tls_ctx_free(sctx);
    cv_tls_ctx_free(cctx);
    cv_tls_ctx_free(octx);
    char rm[128];
    snprintf(rm, sizeof rm, "rm -rf '%s'", dir);
    cr_assert_eq(system(rm), 0);
    loop_teardown();
}

/* The native port's limits decide from two times: a frame begun (request timeout) and the last I/O (idle). */
Test(rpc, overdue_by_partial_frame_or_idleness)
{
    struct cv_rpc_sock s;
    memset(&s, 0, sizeof s);
    s.last_io = 1000;
    cr_assert_eq(cv_rpc_sock_overdue(&s, 1400, 500, 500), 0);
    cr_assert_eq(cv_rpc_sock_overdue(&s, 1500, 500, 500), CV_RPC_CUT_IDLE);
    cr_assert_eq(cv_rpc_sock_overdue(&s, 9000, 500, 0), 0, "idle 0: never idle");
    s.partial_since = 1000;
    s.last_io = 1300; /* bytes keep trickling in, the frame is still not whole */
    cr_assert_eq(cv_rpc_sock_overdue(&s, 1499, 500, 10000), 0);
    cr_assert_eq(cv_rpc_sock_overdue(&s, 1500, 500, 10000), CV_RPC_CUT_REQUEST);
    cr_assert_eq(cv_rpc_sock_overdue(&s, 1500, 0, 10000), 0, "request 0: no request timeout");
    s.partial_since = 0;
    s.writing = 1; /* a write in flight (a slow reader) is not idleness */
    cr_assert_eq(cv_rpc_sock_overdue(&s, 99999, 500, 500), 0);
}

/* Protected mode lets loopback peers in (the address check itself: test_auth). */
Test(rpc, protected_mode_admits_loopback)
{
    loop_setup();
    struct cv_guard prot = {.loopback_only = 1};
    struct rsrv s;
    struct rcli c;
    struct result r;
    rsrv_start_guarded(&s, &prot);
    rcli_start(&c, s.port);
    call(&c, "echo", "local", 2000, &r);
    RUN_UNTIL(r.done);
    cr_assert_eq(r.status, 0);
    rcli_stop(&c);
    rsrv_stop(&s);
    loop_teardown();
}

Test(rpc, listen_on_taken_port_is_eio)
{
    loop_setup();
    struct rsrv s, s2;
    rsrv_start(&s, "127.0.0.1:0");
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", s.port);
    memset(&s2, 0, sizeof s2);
    cr_assert_eq(cv_rpc_server_init(&loop, rsrv_on_request, NULL, &s2, &s2.srv), 0);
    cr_assert_eq(cv_rpc_server_listen(s2.srv, addr), CV_EIO);
    cr_assert_eq(cv_rpc_server_port(s2.srv), CV_EINVAL);
    rsrv_stop(&s2);
    rsrv_stop(&s);
    loop_teardown();
}

/* ---------------------------------------------------------------------------------------------------
 * HTTP. */

struct hsrv {
    struct cv_http_server *srv;
    int port, closed, calls;
    struct cv_http_exchange *held;
};

static void hsrv_answer_held(void *arg)
{
    struct hsrv *h = arg;
    cv_http_respond(h->held, 200, "text/plain", "async", 5, "X-Async: 1\r\n");
    h->held = NULL;
}

static void hsrv_handler(void *data, struct cv_http_exchange *x, const struct cv_http_request *req)
{
    struct hsrv *h = data;
    h->calls++;
    if (!strcmp(req->path, "/async")) {
        cr_assert_null(h->held);
        h->held = x;
        run_later(30, hsrv_answer_held, h);
    } else if (!strcmp(req->path, "/hold")) {
        h->held = x;
    } else if (!strncmp(req->path, "/echo", 5)) {
        char out[4096];
        int n = snprintf(out, sizeof out, "%s %s ?%s [%s] %s", req->method, req->path, req->query,
                         req->content_type, req->body);
        cr_assert_eq(strlen(req->body), req->body_len);
        cv_http_respond(x, 200, "text/plain", out, (size_t)n, NULL);
    } else if (!strcmp(req->path, "/not-allowed")) {
        cv_http_respond_error(x, CV_STATUS_METHOD_NOT_ALLOWED, "only GET", "Allow: GET, HEAD\r\n");
    } else if (!strcmp(req->path, "/busy")) {
        cv_http_respond_error(x, CV_STATUS_UNAVAILABLE, "busy", "X-Extra: 1\r\n");
    } else {
        cv_http_respond_error(x, CV_STATUS_NOT_FOUND, "no such path", NULL);
    }
}

static struct hsrv *hsrv_current;
static void hsrv_closed(void *data)
{
    hsrv_current->closed = 1;
}

static void hsrv_start(struct hsrv *h, const struct cv_http_opts *o)
{
    memset(h, 0, sizeof *h);
    cr_assert_eq(cv_http_server_init(&loop, o, hsrv_handler, h, &h->srv), 0);
    cr_assert_eq(cv_http_server_listen(h->srv, "127.0.0.1:0"), 0);
    h->port = cv_http_server_port(h->srv);
    cr_assert_gt(h->port, 0);
}

static void hsrv_stop(struct hsrv *h)
{
    hsrv_current = h;
    cv_http_server_close(h->srv, hsrv_closed);
    RUN_UNTIL(h->closed);
}

struct resp {
    int status;
    char head[2048];
    char body[4096];
};

/* Parses the complete responses received so far (our server always sends Content-Length, except on
 * 204; head_only: the responses answer HEAD requests). Returns how many are complete. */
static int parse_resps(const struct raw *r, struct resp *out, int max, int head_only)
{
    size_t pos = 0;
    int n = 0;
    while (n < max && pos < r->len) {
        const char *start = r->data + pos;
        const char *end = strstr(start, "\r\n\r\n");
        if (!end) break;
        size_t hlen = (size_t)(end - start) + 4;
        size_t blen = 0;
        const char *cl = strstr(start, "Content-Length: ");
        if (cl && cl < end) blen = strtoul(cl + 16, NULL, 10);
        if (head_only) blen = 0;
        if (pos + hlen + blen > r->len) break;
        struct resp *x = &out[n++];
        x->status = atoi(start + 9);
        snprintf(x->head, sizeof x->head, "%.*s", (int)hlen, start);
        snprintf(x->body, sizeof x->body, "%.*s", (int)blen, end + 4);
        pos += hlen + blen;
    }
    return n;
}

/* One request on a fresh connection that the server must answer once and then close (a refusal);
 * *r is that answer. */
static void exchange_refused(const struct hsrv *h, const char *req, struct resp *r)
{
    struct raw c;
    raw_connect(&c, h->port);
    raw_sends(&c, req);
    RUN_UNTIL(c.eof);
    cr_assert_eq(parse_resps(&c, r, 1, 0), 1);
    raw_close(&c);
}

Test(http, get_and_post_with_body)
{
    loop_setup();
    struct hsrv h;
    struct raw c;
    struct resp rs[3];
    hsrv_start(&h, NULL);
    raw_connect(&c, h.port);
    raw_sends(&c, "GET /ech%6F/a%20b?x=1&y=%20 HTTP/1.1\r\nHost: t\r\n\r\n");
    RUN_UNTIL(parse_resps(&c, rs, 3, 0) == 1);
    cr_assert_eq(rs[0].status, 200);
    cr_assert_str_eq(rs[0].body, "GET /echo/a b ?x=1&y=%20 [] ");
    cr_assert_not_null(strstr(rs[0].head, "\r\nDate: "));
    cr_assert_not_null(strstr(rs[0].head, "\r\nContent-Length: 28\r\n"));
    cr_assert_not_null(strstr(rs[0].head, "\r\nContent-Type: text/plain\r\n"));
    cr_assert_null(strstr(rs[0].head, "Access-Control"));

    raw_sends(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                  "Content-Length: 11\r\n\r\n{\"a\":\"bc\"}\n");
    RUN_UNTIL(parse_resps(&c, rs, 3, 0) == 2);
    cr_assert_eq(rs[1].status, 200);
    cr_assert_str_eq(rs[1].body, "POST /echo ? [application/json] {\"a\":\"bc\"}\n");

    raw_sends(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    RUN_UNTIL(parse_resps(&c, rs, 3, 0) == 3);
    cr_assert_str_eq(rs[2].body, "POST /echo ? [] hello world");
    cr_assert_eq(c.eof, 0);
    cr_assert_eq(h.calls, 3);
    raw_close(&c);
    hsrv_stop(&h);
    loop_teardown();
}

Test(http, keep_alive_two_requests_then_connection_close)
{
    loop_setup();
    struct hsrv h;
    struct raw c;
    struct resp rs[2];
    hsrv_start(&h, NULL);
    raw_connect(&c, h.port);
    raw_sends(&c, "GET /echo/1 HTTP/1.1\r\nHost: t\r\n\r\n");
    RUN_UNTIL(parse_resps(&c, rs, 2, 0) == 1);
    cr_assert_null(strstr(rs[0].head, "Connection: close"));
    raw_sends(&c, "GET /echo/2 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    RUN_UNTIL(c.eof);
    cr_assert_eq(parse_resps(&c, rs, 2, 0), 2);
    cr_assert_str_eq(rs[1].body, "GET /echo/2 ? [] ");
    cr_assert_not_null(strstr(rs[1].head, "\r\nConnection: close\r\n"));
    raw_close(&c);

    /* HTTP/1.0 without keep-alive closes; with it, stays open. */
    raw_connect(&c, h.port);
    raw_sends(&c, "GET /echo/3 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    RUN_UNTIL(parse_resps(&c, rs, 2, 0) == 1);
    cr_assert_not_null(strstr(rs[0].head, "\r\nConnection: keep-alive\r\n"));
    raw_sends(&c, "GET /echo/4 HTTP/1.0\r\n\r\n");
    RUN_UNTIL(c.eof);
    cr_assert_eq(parse_resps(&c, rs, 2, 0), 2);
    cr_assert_str_eq(rs[1].body, "GET /echo/4 ? [] ");
    raw_close(&c);
    hsrv_stop(&h);
    loop_teardown();
}

Test(http, pipelined_requests_answered_in_order)
{
    loop_setup();
    struct hsrv h;
    struct raw c;
    struct resp rs[3];
    hsrv_start(&h, NULL);
    raw_connect(&c, h.port);
    /* The first is answered asynchronously: the later ones must wait for it. */
    raw_sends(&c, "GET /async HTTP/1.1\r\nHost: t\r\n\r\n"
                  "POST /echo/b HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
                  "GET /echo/c HTTP/1.1\r\nHost: t\r\n\r\n");
    RUN_UNTIL(parse_resps(&c, rs, 3, 0) == 3);
    cr_assert_eq(rs[0].status, 200);
    cr_assert_str_eq(rs[0].body, "async");
    cr_assert_not_null(strstr(rs[0].head, "\r\nX-Async: 1\r\n"));
    cr_assert_str_eq(rs[1].body, "POST /echo/b ? [] abc");
    cr_assert_str_eq(rs[2].body, "GET /echo/c ? [] ");
    cr_assert_eq(h.calls, 3);
    raw_close(&c);
    hsrv_stop(&h);
    loop_teardown();
}

Test(http, body_too_large_is_413)
{
    loop_setup();
    struct hsrv h;
    struct resp rs[1];
    struct cv_http_opts o = {.max_body = 16};
    hsrv_start(&h, &o);
    exchange_refused(&h, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789", rs);
    cr_assert_eq(rs[0].status, 413);
    cr_assert_not_null(strstr(rs[0].head, "Connection: close"));

    exchange_refused(&h, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "a\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n", rs);
    cr_assert_eq(rs[0].status, 413);
    cr_assert_eq(h.calls, 0);
    hsrv_stop(&h);
    loop_teardown();
}

/* A client that sends its whole oversized body before it reads (as curl may): blocking sends from a thread. */
struct big_sender {
    int port;
    size_t body;
    int send_errno; /* 0: the whole body went out */
    char resp[256];
    int done;
};

static void *big_sender_run(void *arg)
{
    struct big_sender *b = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)b->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        b->send_errno = -1;
        goto out;
    }
    char head[128];
    int n = snprintf(head, sizeof head, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n", b->body);
    static char chunk[64 * 1024];
    memset(chunk, 'x', sizeof chunk);
    if (send(fd, head, (size_t)n, MSG_NOSIGNAL) != n) b->send_errno = errno;
    for (size_t sent = 0; !b->send_errno && sent < b->body; ) {
        size_t k = b->body - sent < sizeof chunk ? b->body - sent : sizeof chunk;
        ssize_t w = send(fd, chunk, k, MSG_NOSIGNAL);
        if (w < 0) b->send_errno = errno;
        else sent += (size_t)w;
    }
    size_t got = 0;
    ssize_t r;
    while (got + 1 < sizeof b->resp && (r = recv(fd, b->resp + got, sizeof b->resp - 1 - got, 0)) > 0) got += (size_t)r;
    b->resp[got] = '\0';
out:
    if (fd >= 0) close(fd);
    __atomic_store_n(&b->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* The server answers 413 at once and drains the rest before it closes: a close with unread bytes would
 * reset the connection, and a client still sending would see the reset instead of the 413. */
Test(http, oversized_body_sent_whole_still_reads_413)
{
    loop_setup();
    struct hsrv h;
    struct cv_http_opts o = {.max_body = 16};
    hsrv_start(&h, &o);
    struct big_sender b = {.port = h.port, .body = 24u << 20};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, big_sender_run, &b), 0);
    RUN_UNTIL(__atomic_load_n(&b.done, __ATOMIC_ACQUIRE));
    pthread_join(t, NULL);
    cr_expect_eq(b.send_errno, 0, "sending the body failed: %s", strerror(b.send_errno));
    cr_expect(strncmp(b.resp, "HTTP/1.1 413 ", 13) == 0, "response: '%s'", b.resp);
    cr_assert_eq(h.calls, 0);
    hsrv_stop(&h);
    loop_teardown();
}

/* cv_tcp_live bounds how long sent data may stay unacknowledged on a connection (TCP_USER_TIMEOUT). */
Test(http, tcp_live_sets_the_user_timeout)
{
    loop_setup();
    struct hsrv h;
    hsrv_start(&h, NULL);
    struct raw c;
    raw_connect(&c, h.port);
    uv_os_fd_t fd;
    cr_assert_eq(uv_fileno((uv_handle_t *)&c.tcp, &fd), 0);
    unsigned ms = 0;
    socklen_t len = sizeof ms;
    cr_assert_eq(getsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, &len), 0);
    cr_assert_eq(ms, 0, "the kernel's default: no bound");
    cr_assert_eq(cv_tcp_live((uv_stream_t *)&c.tcp), 0);
    cr_assert_eq(getsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, &len), 0);
    cr_assert_eq(ms, CV_TCP_LIVE_MS);
    raw_close(&c);
    hsrv_stop(&h);
    loop_teardown();
}

Test(http, header_too_large_is_431)
{
    loop_setup();
    struct hsrv h;
    struct resp rs[1];
    struct cv_http_opts o = {.max_header = 256};
    hsrv_start(&h, &o);
    char req[2048], pad[1001];
    memset(pad, 'v', 1000);
    pad[1000] = '\0';
    snprintf(req, sizeof req, "GET /echo HTTP/1.1\r\nHost: t\r\nX-Big: %s\r\n\r\n", pad);
    exchange_refused(&h, req, rs);
    cr_assert_eq(rs[0].status, 431);
    cr_assert_eq(h.calls, 0);
    hsrv_stop(&h);
    loop_teardown();
}

Test(http, garbage_is_400_and_close)
{
    loop_setup();
    struct hsrv h;
    struct resp rs[1];
    hsrv_start(&h, NULL);
    exchange_refused(&h, "THIS IS NOT HTTP\x01\x02\r\n\r\n", rs);
    cr_assert_eq(rs[0].status, 400);
    cr_assert_not_null(strstr(rs[0].body, "\"code\":\"INVALID_ARGUMENT\""));

    /* A malformed percent escape in the path is refused too. */
    exchange_refused(&h, "GET /a%zz HTTP/1.1\r\nHost: t\r\n\r\n", rs);
    cr_assert_eq(rs[0].status, 400);
    cr_assert_eq(h.calls, 0);
    hsrv_stop(&h);
    loop_teardown();
}

/* A request target longer than the parser's 16-bit offsets: 414, with the table's name in the body. */
Test(http, target_too_long_is_414)
{
    loop_setup();
    struct hsrv h;
    struct resp rs[1];
    struct cv_http_opts o = {.max_header = 256 * 1024};
    hsrv_start(&h, &o);
    size_t n = 70000;
    char *req = malloc(n + 64);
    cr_assert_not_null(req);
    memcpy(req, "GET /", 5);
    memset(req + 5, 'a', n);
    strcpy(req + 5 + n, " HTTP/1.1\r\nHost: t\r\n\r\n");
    exchange_refused(&h, req, rs);
    free(req);
    cr_assert_eq(rs[0].status, 414);
    cr_assert_str_eq(rs[0].body, "{\"error\":\"request target too long\",\"code\":\"URI_TOO_LONG\"}");
    cr_assert_not_null(strstr(rs[0].head, "Connection: close"));
    cr_assert_eq(h.calls, 0);
    hsrv_stop(&h);
    loop_teardown();
}

Test(http, async_response_and_error_json)
{
    loop_setup();
    struct hsrv h;
    struct raw c;
    struct resp rs[2];
    hsrv_start(&h, NULL);
    raw_connect(&c, h.port);
    raw_sends(&c, "GET /async HTTP/1.1\r\nHost: t\r\n\r\n");
    RUN_UNTIL(h.calls == 1);
    cr_assert_not_null(h.held);
    cr_assert_eq(c.len, 0);
    RUN_UNTIL(parse_resps(&c, rs, 2, 0) == 1);
    cr_assert_str_eq(rs[0].body, "async");
    raw_sends(&c, "GET /missing HTTP/1.1\r\nHost: t\r\n\r\n");
    RUN_UNTIL(parse_resps(&c, rs, 2, 0) == 2);
    cr_assert_eq(rs[1].status, 404);
    cr_assert_str_eq(rs[1].body, "{\"error\":\"no such path\",\"code\":\"NOT_FOUND\"}");
    cr_assert_not_null(strstr(rs[1].head, "Content-Type: application/json"));
    raw_close(&c);
    hsrv_stop(&h);
    loop_teardown();
}

/* An error answer with extra headers: they come along with the table's Retry-After, in the same body. */
Test(http, error_with_extra_headers)
{
    loop_setup();
    struct hsrv h;
    struct raw c;
    struct resp rs[3];
    hsrv_start(&h, NULL);
    raw_connect(&c, h.port);
    raw_sends(&c, "POST /not-allowed HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"
                  "GET /busy HTTP/1.1\r\nHost: t\r\n\r\n"
                  "GET /missing HTTP/1.1\r\nHost: t\r\n\r\n");
    RUN_UNTIL(parse_resps(&c, rs, 3, 0) == 3);
    cr_assert_eq(rs[0].status, 405);
    cr_assert_str_eq(rs[0].body, "{\"error\":\"only GET\",\"code\":\"METHOD_NOT_ALLOWED\"}");
    cr_assert_not_null(strstr(rs[0].head, "\r\nAllow: GET, HEAD\r\n"), "%s", rs[0].head);
    cr_assert_not_null(strstr(rs[0].head, "\r\nContent-Type: application/json\r\n"));
    cr_assert_null(strstr(rs[0].head, "Retry-After"));
    cr_assert_eq(rs[1].status, 503);
    cr_assert_str_eq(rs[1].body, "{\"error\":\"busy\",\"code\":\"UNAVAILABLE\"}");
    cr_assert_not_null(strstr(rs[1].head, "\r\nRetry-After: 1\r\n"), "%s", rs[1].head);
    cr_assert_not_null(strstr(rs[1].head, "\r\nX-Extra: 1\r\n"), "%s", rs[1].head);
    cr_assert_eq(rs[2].status, 404);
    cr_assert_null(strstr(rs[2].head, "Allow:"));
    cr_assert_null(strstr(rs[2].head, "X-Extra"));
    raw_close(&c);
    hsrv_stop(&h);
    loop_teardown();
}

/* Limits: the rate is charged to the key rate_key writes (here the Authorization header, as a gate with
 * users would), the request carries the peer's address, and 429 comes with one exact Retry-After. */
static void hsrv_rate_key(void *data, const struct cv_http_request *req, char *key, size_t cap)
{
    cr_assert_str_eq(req->peer, "127.0.0.1");
    snprintf(key, cap, "user:%s", req->authorization);
}

Test(http, rate_limit_by_hook_key_answers_429)
{
    loop_setup();
    struct hsrv h;
    struct raw c;
    struct resp rs[4];
    struct cv_http_opts o = {.rate = {.per_sec = 1, .burst = 1}, .rate_key = hsrv_rate_key};
    hsrv_start(&h, &o);
    raw_connect(&c, h.port);
    raw_sends(&c, "GET /echo HTTP/1.1\r\nHost: t\r\nAuthorization: a\r\n\r\n"
                  "GET /echo HTTP/1.1\r\nHost: t\r\nAuthorization: b\r\n\r\n"
                  "GET /echo HTTP/1.1\r\nHost: t\r\nAuthorization: a\r\n\r\n");
    RUN_UNTIL(parse_resps(&c, rs, 4, 0) == 3);
    cr_assert_eq(rs[0].status, 200);
    cr_assert_eq(rs[1].status, 200, "another key has its own bucket");
    cr_assert_eq(rs[2].status, 429);
    cr_assert_str_eq(rs[2].body, "{\"error\":\"rate limit exceeded: retry later\",\"code\":\"RESOURCE_EXHAUSTED\"}");
    cr_assert_not_null(strstr(rs[2].head, "\r\nRetry-After: 1\r\n"), "%s", rs[2].head);
    cr_assert_null(strstr(strstr(rs[2].head, "Retry-After") + 1, "Retry-After"), "one Retry-After: %s", rs[2].head);
    cr_assert_eq(h.calls, 2, "the handler never saw the limited request");
    struct cv_http_server_stats st;
    cv_http_server_stats(h.srv, &st);
    cr_assert_eq(st.rate_limited, 1);
    cr_assert_eq(st.connections, 1);
    raw_close(&c);
    hsrv_stop(&h);
    loop_teardown();
}

/* A half request is cut after request_timeout_ms; a second connection over max_connections is closed at
 * once; both counted. */
Test(http, request_timeout_and_max_connections)
{
    loop_setup();
    struct hsrv h;
    struct raw c, d;
    struct cv_http_opts o = {.request_timeout_ms = 100, .max_connections = 1};
    hsrv_start(&h, &o);
    raw_connect(&c, h.port);
    raw_sends(&c, "GET /echo HTTP/1.1\r\nHost: t\r\n");
    raw_connect(&d, h.port);
    RUN_UNTIL(d.eof);
    cr_assert_eq(d.len, 0, "nothing said to a connection over the bound");
    uint64_t t0 = uv_now(&loop);
    RUN_UNTIL(c.eof);
    cr_assert_geq(uv_now(&loop) - t0, 50, "cut too early");
    cr_assert_eq(c.len, 0, "a cut request gets no answer");
    cr_assert_eq(h.calls, 0);
    struct cv_http_server_stats st;
    cv_http_server_stats(h.srv, &st);
    cr_assert_eq(st.accepted, 2);
    cr_assert_eq(st.refused, 1);
    cr_assert_eq(st.request_timeouts, 1);
    cr_assert_eq(st.idle_closed, 0);
    raw_close(&c);
    raw_close(&d);
    hsrv_stop(&h);
    loop_teardown();
}

/* opts.admit sees each peer's address at accept; a refused peer is closed before anything is read or said
 * (a node's protected mode on its HTTP port), counted as refused; an admitted one is served. */
static int admit_calls;
static int admit_none(void *data, const struct sockaddr *peer)
{
    admit_calls++;
    cr_assert_eq(peer->sa_family, AF_INET);
    return 0;
}

Test(http, admit_refuses_peers)
{
    loop_setup();
    struct hsrv h;
    struct raw c;
    struct cv_http_opts o = {.admit = admit_none};
    hsrv_start(&h, &o);
    raw_connect(&c, h.port);
    raw_sends(&c, "GET /echo HTTP/1.1\r\nHost: t\r\n\r\n");
    RUN_UNTIL(c.eof);
    cr_assert_eq(c.len, 0, "nothing said to a refused peer");
    cr_assert_eq(h.calls, 0);
    cr_assert_eq(admit_calls, 1);
    struct cv_http_server_stats st;
    cv_http_server_stats(h.srv, &st);
    cr_assert_eq(st.refused, 1);
    raw_close(&c);
    hsrv_stop(&h);
    loop_teardown();
}

Test(http, head_has_no_body)
{
    loop_setup();
    struct hsrv h;
    struct raw c;
    struct resp rs[1];
    hsrv_start(&h, NULL);
    raw_connect(&c, h.port);
    raw_sends(&c, "HEAD /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    RUN_UNTIL(c.eof);
    cr_assert_eq(parse_resps(&c, rs, 1, 1), 1);
    cr_assert_eq(rs[0].status, 200);
    cr_assert_not_null(strstr(rs[0].head, "Content-Length: 16\r\n")); /* "HEAD /echo ? [] " */
    cr_assert_eq(strlen(rs[0].head), c.len, "bytes after the HEAD response headers");
    raw_close(&c);
    hsrv_stop(&h);
    loop_teardown();
}

Test(http, cors_preflight_and_headers)
{
    loop_setup();
    struct hsrv h;
    struct raw c;
    struct resp rs[2];
    struct cv_http_opts o = {.cors_origin = "*"};
    hsrv_start(&h, &o);
    raw_connect(&c, h.port);
    raw_sends(&c, "OPTIONS /v1/cluster HTTP/1.1\r\nHost: t\r\nOrigin: http://ui\r\n"
                  "Access-Control-Request-Method: POST\r\n\r\n");
    RUN_UNTIL(parse_resps(&c, rs, 2, 0) == 1);
    cr_assert_eq(rs[0].status, 204);
    cr_assert_eq(h.calls, 0);
    cr_assert_not_null(strstr(rs[0].head, "\r\nAccess-Control-Allow-Origin: *\r\n"));
    cr_assert_not_null(strstr(rs[0].head, "\r\nAccess-Control-Allow-Methods: GET, POST, OPTIONS\r\n"));
    cr_assert_not_null(strstr(rs[0].head, "\r\nAccess-Control-Allow-Headers: Content-Type, X-Cverse-Deadline-Ms, X-Cverse-Call-Id, X-Client-ID, Authorization\r\n"));
    cr_assert_not_null(strstr(rs[0].head, "\r\nDate: "));
    raw_sends(&c, "GET /echo HTTP/1.1\r\nHost: t\r\nOrigin: http://ui\r\n\r\n");
    RUN_UNTIL(parse_resps(&c, rs, 2, 0) == 2);
    cr_assert_eq(rs[1].status, 200);
    cr_assert_not_null(strstr(rs[1].head, "\r\nAccess-Control-Allow-Origin: *\r\n"));
    cr_assert_eq(h.calls, 1);
    raw_close(&c);
    hsrv_stop(&h);
    loop_teardown();
}

Test(http, respond_after_connection_closed_only_frees)
{
    loop_setup();
    struct hsrv h;
    struct raw c;
    hsrv_start(&h, NULL);
    raw_connect(&c, h.port);
    raw_sends(&c, "GET /hold HTTP/1.1\r\nHost: t\r\n\r\n");
    RUN_UNTIL(h.held != NULL);
    raw_close(&c);
    hsrv_stop(&h);
    /* The server and its connection are gone; the exchange is still ours to answer. */
    cv_http_respond(h.held, 200, "text/plain", "late", 4, NULL);
    h.held = NULL;
    loop_teardown();
}

Test(http, expect_100_continue)
{
    loop_setup();
    struct hsrv h;
    struct raw c;
    hsrv_start(&h, NULL);
    raw_connect(&c, h.port);
    raw_sends(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n");
    RUN_UNTIL(c.len >= 25);
    cr_assert_eq(strncmp(c.data, "HTTP/1.1 100 Continue\r\n\r\n", 25), 0);
    raw_sends(&c, "hi");
    RUN_UNTIL(strstr(c.data + 25, "hi") != NULL);
    cr_assert_not_null(strstr(c.data + 25, "HTTP/1.1 200 OK\r\n"));
    raw_close(&c);
    hsrv_stop(&h);
    loop_teardown();
}

/* ---------------------------------------------------------------------------------------------------
 * HTTP streaming responses (cv_http_stream_*) and the Authorization / Last-Event-ID headers. */

struct ssrv {
    struct cv_http_server *srv;
    int port, closed, stream_closed;
    struct cv_http_stream *stream;
    char auth[64], last_id[32];
};

static void ssrv_stream_closed(void *data, struct cv_http_stream *s)
{
    struct ssrv *h = data;
    cr_assert_eq(s, h->stream);
    h->stream_closed++;
    h->stream = NULL;
}

static void ssrv_handler(void *data, struct cv_http_exchange *x, const struct cv_http_request *req)
{
    struct ssrv *h = data;
    snprintf(h->auth, sizeof h->auth, "%s", req->authorization);
    snprintf(h->last_id, sizeof h->last_id, "%s", req->last_event_id);
    if (strcmp(req->path, "/stream")) {
        cv_http_respond(x, 200, "text/plain", "plain", 5, NULL);
        return;
    }
    h->stream = cv_http_stream_begin(x, 200, "text/event-stream", "Cache-Control: no-store\r\n",
                                     ssrv_stream_closed, h);
    cr_assert_not_null(h->stream);
    cr_assert_eq(cv_http_stream_write(h->stream, "data: 1\n\n", 9), 0);
}

static void ssrv_closed(void *data)
{
    ((struct ssrv *)data)->closed = 1;
}

static void ssrv_start(struct ssrv *h)
{
    memset(h, 0, sizeof *h);
    cr_assert_eq(cv_http_server_init(&loop, NULL, ssrv_handler, h, &h->srv), 0);
    cr_assert_eq(cv_http_server_listen(h->srv, "127.0.0.1:0"), 0);
    h->port = cv_http_server_port(h->srv);
}

static void ssrv_stop(struct ssrv *h)
{
    cv_http_server_close(h->srv, ssrv_closed);
    RUN_UNTIL(h->closed);
}

Test(http, stream_head_pieces_then_end)
{
    loop_setup();
    struct ssrv h;
    struct raw c;
    ssrv_start(&h);
    raw_connect(&c, h.port);
    raw_sends(&c, "GET /stream HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer abc\r\nLast-Event-ID: 41\r\n\r\n");
    RUN_UNTIL(c.len && strstr(c.data, "data: 1\n\n"));
    cr_assert_str_eq(h.auth, "Bearer abc");
    cr_assert_str_eq(h.last_id, "41");
    cr_assert_not_null(strstr(c.data, "HTTP/1.1 200 OK\r\n"));
    cr_assert_not_null(strstr(c.data, "\r\nContent-Type: text/event-stream\r\n"));
    cr_assert_not_null(strstr(c.data, "\r\nConnection: close\r\n"));
    cr_assert_not_null(strstr(c.data, "\r\nCache-Control: no-store\r\n"));
    cr_assert_null(strstr(c.data, "Content-Length"), "a stream's length is unknown");
    /* Later pieces arrive as they are written; the peer's bytes are ignored. */
    raw_sends(&c, "ignored bytes");
    cr_assert_eq(cv_http_stream_write(h.stream, "data: 2\n\n", 9), 0);
    RUN_UNTIL(strstr(c.data, "data: 2\n\n"));
    cv_http_stream_end(h.stream);
    h.stream = NULL;
    RUN_UNTIL(c.eof);
    cr_assert_eq(h.stream_closed, 0, "ending a stream does not call its close callback");
    raw_close(&c);
    ssrv_stop(&h);
    loop_teardown();
}

Test(http, stream_peer_close_calls_back_and_headers_default_empty)
{
    loop_setup();
    struct ssrv h;
    struct raw c, d;
    ssrv_start(&h);
    raw_connect(&d, h.port);
    raw_sends(&d, "GET /plain HTTP/1.1\r\nHost: t\r\n\r\n");
    RUN_UNTIL(d.len && strstr(d.data, "plain"));
    cr_assert_str_eq(h.auth, "");
    cr_assert_str_eq(h.last_id, "");
    raw_close(&d);
    raw_connect(&c, h.port);
    raw_sends(&c, "GET /stream HTTP/1.1\r\nHost: t\r\n\r\n");
    RUN_UNTIL(c.len && strstr(c.data, "data: 1\n\n"));
    raw_close(&c); /* the browser tab went away */
    RUN_UNTIL(h.stream_closed == 1);
    cr_assert_null(h.stream);
    ssrv_stop(&h);
    loop_teardown();
}

Test(http, stream_open_when_server_closes_calls_back)
{
    loop_setup();
    struct ssrv h;
    struct raw c;
    ssrv_start(&h);
    raw_connect(&c, h.port);
    raw_sends(&c, "GET /stream HTTP/1.1\r\nHost: t\r\n\r\n");
    RUN_UNTIL(c.len && strstr(c.data, "data: 1\n\n"));
    ssrv_stop(&h);
    cr_assert_eq(h.stream_closed, 1, "the stream ended before the server's close callback");
    RUN_UNTIL(c.eof);
    raw_close(&c);
    loop_teardown();
}

/* ---------------------------------------------------------------------------------------------------
 * TCP liveness while dialling, and connects to a peer that drops SYNs (tests/blackhole.h). */

static uint64_t mono_ms(void)
{
    return uv_hrtime() / 1000000u;
}

static struct sockaddr_in loopback(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sa;
}

struct dialer {
    uv_tcp_t tcp;
    uv_connect_t req;
    int done, status, connecting_at_deadline, closed;
    uint64_t started, ended;
};

static void dialer_cb(uv_connect_t *req, int status)
{
    struct dialer *d = req->data;
    d->done = 1;
    d->status = status;
    d->ended = mono_ms();
}

static void dialer_check(void *arg)
{
    struct dialer *d = arg;
    d->connecting_at_deadline = cv_tcp_connecting(&d->tcp);
}

static void dialer_closed(uv_handle_t *h)
{
    ((struct dialer *)h->data)->closed = 1;
}

static void dialer_start(struct dialer *d, int port)
{
    memset(d, 0, sizeof *d);
    struct sockaddr_in sa = loopback(port);
    cr_assert_eq(cv_tcp_live_init(&loop, &d->tcp, (struct sockaddr *)&sa), 0);
    d->tcp.data = d->req.data = d;
    d->started = mono_ms();
    cr_assert_eq(uv_tcp_connect(&d->req, &d->tcp, (struct sockaddr *)&sa, dialer_cb), 0);
}

static void dialer_close(struct dialer *d)
{
    uv_close((uv_handle_t *)&d->tcp, dialer_closed);
    RUN_UNTIL(d->closed);
}

/* The bound is on the socket before the SYN leaves, and it bounds the SYN's retransmissions: this
 * kernel fails the attempt at the first one (~1 s) instead of resending at 1, 3, 7 ... s. */
Test(tcplive, live_init_bounds_the_syn_of_a_connect)
{
    loop_setup();
    struct cv_blackhole b;
    cr_assert_eq(cv_blackhole_open(&b), 0, "cannot set up the black hole: %s", strerror(errno));
    struct dialer d;
    dialer_start(&d, b.port);
    uv_os_fd_t fd;
    cr_assert_eq(uv_fileno((uv_handle_t *)&d.tcp, &fd), 0);
    unsigned ms = 0;
    socklen_t len = sizeof ms;
    cr_assert_eq(getsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, &len), 0);
    cr_assert_eq(ms, CV_TCP_LIVE_MS, "set when the socket was created, before the connect");
    run_later(CV_TCP_CONNECT_MS, dialer_check, &d);
    RUN_UNTIL(d.done);
    cr_assert(d.connecting_at_deadline, "the black hole answered the SYN");
    cr_assert_eq(d.status, UV_ETIMEDOUT, "status %s", uv_strerror(d.status));
    uint64_t took = d.ended - d.started;
    cr_assert(took >= CV_TCP_LIVE_MS - 50 && took < 2 * CV_TCP_LIVE_MS + 1000, "failed after %llu ms",
              (unsigned long long)took);
    dialer_close(&d);
    cv_blackhole_close(&b);
    loop_teardown();
}

Test(tcplive, connecting_is_false_once_answered)
{
    loop_setup();
    struct rsrv s;
    rsrv_start(&s, "127.0.0.1:0");
    struct dialer d;
    dialer_start(&d, s.port);
    RUN_UNTIL(d.done);
    cr_assert_eq(d.status, 0);
    cr_assert_not(cv_tcp_connecting(&d.tcp));
    dialer_close(&d);
    rsrv_stop(&s);
    loop_teardown();
}

struct reopen {
    struct cv_blackhole *b;
    struct rsrv *s;
    uint64_t at;
};

/* The "heal": the port answers again (a real server on it). */
static void reopen_now(void *arg)
{
    struct reopen *ro = arg;
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ro->b->port);
    cv_blackhole_close(ro->b);
    rsrv_start(ro->s, addr);
    ro->at = mono_ms();
}

/* A call made while its peer drops SYNs is served within one connect deadline (+ reconnect_ms) of the peer
 * answering again: the client abandons unanswered attempts and dials anew. (TCP alone would resend the
 * first SYN at 1 s and 3 s; with only the socket's TCP_USER_TIMEOUT each attempt ends at ~1 s, so the SYNs
 * go at 0, ~1.05, ~2.1 s: with the port back at 1.1 s the call would wait ~1 s.) */
Test(rpc, connect_to_a_peer_dropping_syns_is_retried_within_the_deadline)
{
    loop_setup();
    struct cv_blackhole b;
    cr_assert_eq(cv_blackhole_open(&b), 0, "cannot set up the black hole: %s", strerror(errno));
    struct rcli c;
    struct rsrv s;
    struct result r;
    struct reopen ro = {&b, &s, 0};
    rcli_start(&c, b.port);
    call(&c, "echo", "through", 8000, &r);
    run_later(1100, reopen_now, &ro);
    RUN_UNTIL(r.done);
    uint64_t after = mono_ms() - ro.at;
    cr_assert_eq(r.status, 0, "status %d (%s)", r.status, r.error);
    cr_assert_str_eq(r.body, "through");
    cr_assert_lt(after, CV_TCP_CONNECT_MS + 350, "served %llu ms after the port answered again",
                 (unsigned long long)after);
    rcli_stop(&c);
    rsrv_stop(&s);
    loop_teardown();
}

/* ---------------------------------------------------------------------------------------------------
 * Raft's bounded connect (src/consensus/rafttcp): our dialler, libraft's listener. */

/* A free port on 127.0.0.1 (bound, read, released). */
static int free_port(void)
{
    struct sockaddr_in sa = loopback(0);
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

struct rtcp {
    struct raft_uv_transport t;
    char address[64];
    int closed;
    /* accepted by the listener */
    int accepted;
    raft_id peer_id;
    char peer_address[64];
    /* the last connect */
    struct raft_uv_connect req;
    int connects, status;
    uint64_t started, ended;
};

static void rtcp_stream_closed(uv_handle_t *h)
{
    raft_free(h); /* the callbacks hand the stream over, to be closed and raft_free()d */
}

static void rtcp_accept_cb(struct raft_uv_transport *t, raft_id id, const char *address, uv_stream_t *stream)
{
    struct rtcp *r = (struct rtcp *)t;
    r->accepted++;
    r->peer_id = id;
    snprintf(r->peer_address, sizeof r->peer_address, "%s", address);
    uv_close((uv_handle_t *)stream, rtcp_stream_closed);
}

static void rtcp_connect_cb(struct raft_uv_connect *req, uv_stream_t *stream, int status)
{
    struct rtcp *r = req->data;
    r->connects++;
    r->status = status;
    r->ended = mono_ms();
    cr_assert_eq(stream != NULL, status == 0);
    if (stream) uv_close((uv_handle_t *)stream, rtcp_stream_closed);
}

/* A transport of server id at address; cverse's (bounded connect, our listener, under guard g) or
 * libraft's own. */
static void rtcp_start_guarded(struct rtcp *r, raft_id id, const char *address, bool bounded,
                               const struct cv_guard *g)
{
    memset(r, 0, sizeof *r);
    r->t.version = 1;
    cr_assert_eq(raft_uv_tcp_init(&r->t, &loop), 0);
    if (bounded) cr_assert_eq(cv_rafttcp_live(&r->t, &loop, g, NULL), 0);
    snprintf(r->address, sizeof r->address, "%s", address);
    cr_assert_eq(r->t.init(&r->t, id, r->address), 0);
}

static void rtcp_start(struct rtcp *r, raft_id id, const char *address, bool bounded)
{
    rtcp_start_guarded(r, id, address, bounded, NULL);
}

static void rtcp_connect(struct rtcp *r, raft_id id, const char *address)
{
    r->req.data = r;
    r->status = -1;
    r->started = mono_ms();
    int before = r->connects;
    cr_assert_eq(r->t.connect(&r->t, &r->req, id, address, rtcp_connect_cb), 0);
    cr_assert_eq(r->connects, before, "the callback ran inside connect");
}

static void rtcp_closed(struct raft_uv_transport *t)
{
    ((struct rtcp *)t)->closed = 1;
}

static void rtcp_stop(struct rtcp *r)
{
    r->t.close(&r->t, rtcp_closed);
    RUN_UNTIL(r->closed);
    raft_uv_tcp_close(&r->t);
}

/* libraft's listener reads our handshake as its own (server id, address, for several address lengths:
 * the address is padded to 8 bytes). */
Test(rafttcp, handshake_is_read_by_libraft)
{
    loop_setup();
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", free_port());
    struct rtcp l, d;
    rtcp_start(&l, 1, addr, false);
    cr_assert_eq(l.t.listen(&l.t, rtcp_accept_cb), 0);
    const char *selves[] = {"1.2.3:4", "10.0.0.2:7", "10.0.0.2:7001", "10.213.1.3:65535"};
    rtcp_start(&d, 2, selves[0], true);
    for (unsigned i = 0; i < sizeof selves / sizeof *selves; i++) {
        snprintf(d.address, sizeof d.address, "%s", selves[i]);
        cr_assert_eq(d.t.init(&d.t, 2 + i, d.address), 0);
        rtcp_connect(&d, 1, addr);
        RUN_UNTIL(d.connects == (int)i + 1 && l.accepted == (int)i + 1);
        cr_assert_eq(d.status, 0);
        cr_assert_eq(l.peer_id, 2 + i);
        cr_assert_str_eq(l.peer_address, selves[i]);
    }
    rtcp_stop(&d);
    rtcp_stop(&l);
    loop_teardown();
}

/* A peer that drops SYNs: the attempt is reported failed at the connect deadline, not after TCP's
 * retransmissions; a refused one at once. */
Test(rafttcp, unanswered_connect_fails_at_the_deadline)
{
    loop_setup();
    struct cv_blackhole b;
    cr_assert_eq(cv_blackhole_open(&b), 0, "cannot set up the black hole: %s", strerror(errno));
    char hole[64], refused[64];
    snprintf(hole, sizeof hole, "127.0.0.1:%d", b.port);
    snprintf(refused, sizeof refused, "127.0.0.1:%d", free_port());
    struct rtcp d;
    rtcp_start(&d, 2, "127.0.0.1:9", true);
    rtcp_connect(&d, 1, hole);
    RUN_UNTIL(d.connects == 1);
    uint64_t took = d.ended - d.started;
    cr_assert_eq(d.status, RAFT_NOCONNECTION);
    cr_assert(took >= CV_TCP_CONNECT_MS - 20 && took < CV_TCP_LIVE_MS, "failed after %llu ms",
              (unsigned long long)took);
    rtcp_connect(&d, 1, refused);
    RUN_UNTIL(d.connects == 2);
    cr_assert_eq(d.status, RAFT_NOCONNECTION);
    cr_assert_lt(d.ended - d.started, CV_TCP_CONNECT_MS);
    rtcp_stop(&d);
    cv_blackhole_close(&b);
    loop_teardown();
}

/* Closing the transport cancels a connect in flight; the close callback comes after its callback. */
Test(rafttcp, close_cancels_a_connect_in_flight)
{
    loop_setup();
    struct cv_blackhole b;
    cr_assert_eq(cv_blackhole_open(&b), 0, "cannot set up the black hole: %s", strerror(errno));
    char hole[64];
    snprintf(hole, sizeof hole, "127.0.0.1:%d", b.port);
    struct rtcp d;
    rtcp_start(&d, 2, "127.0.0.1:9", true);
    rtcp_connect(&d, 1, hole);
    d.t.close(&d.t, rtcp_closed);
    cr_assert_eq(d.connects, 0, "reported only from a callback");
    RUN_UNTIL(d.closed);
    cr_assert_eq(d.connects, 1);
    cr_assert_eq(d.status, RAFT_CANCELED);
    raft_uv_tcp_close(&d.t);
    cv_blackhole_close(&b);
    loop_teardown();
}

/* ---------------------------------------------------------------------------------------------------
 * Raft connections under the cluster guard (rafttcp's listener, auth/handshake.h). */

static void rtcp_listen(struct rtcp *l, const char *addr, const struct cv_guard *g)
{
    rtcp_start_guarded(l, 1, addr, true, g);
    cr_assert_eq(l->t.listen(&l->t, rtcp_accept_cb), 0);
}

/* Our listener reads libraft's preamble as libraft's does; with the same secret on both sides the
 * cluster handshake comes first and libraft sees nothing of it. */
Test(rafttcp, guarded_listener_accepts_peers_with_the_secret)
{
    loop_setup();
    struct cv_secret k = test_secret("the-cluster-secret-0123");
    struct cv_guard open = {0}, gs = {.secret = &k};
    const struct cv_guard *guards[] = {&open, &gs};
    for (int i = 0; i < 2; i++) {
        char addr[64];
        snprintf(addr, sizeof addr, "127.0.0.1:%d", free_port());
        struct rtcp l, d;
        uint64_t fails = cv_guard_failures(CV_AUTH_R_PROOF) + cv_guard_failures(CV_AUTH_R_MAGIC);
        rtcp_listen(&l, addr, guards[i]);
        rtcp_start_guarded(&d, 7, "10.0.0.2:7001", true, guards[i]);
        rtcp_connect(&d, 1, addr);
        RUN_UNTIL(d.connects == 1 && l.accepted == 1);
        cr_assert_eq(d.status, 0);
        cr_assert_eq(l.peer_id, 7);
        cr_assert_str_eq(l.peer_address, "10.0.0.2:7001");
        cr_assert_eq(cv_guard_failures(CV_AUTH_R_PROOF) + cv_guard_failures(CV_AUTH_R_MAGIC), fails);
        rtcp_stop(&d);
        rtcp_stop(&l);
    }
    loop_teardown();
}

/* Without the secret, with another one, or speaking raft directly: never accepted (libraft never sees
 * the stream, so the peer can neither vote nor append), and counted. */
Test(rafttcp, guarded_listener_drops_peers_without_the_secret)
{
    loop_setup();
    struct cv_secret k = test_secret("the-cluster-secret-0123"), other = test_secret("another-secret-012345");
    struct cv_guard gs = {.secret = &k}, gother = {.secret = &other};
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", free_port());
    struct rtcp l, none, wrong;
    rtcp_listen(&l, addr, &gs);

    uint64_t magic = cv_guard_failures(CV_AUTH_R_MAGIC);
    rtcp_start(&none, 7, "127.0.0.1:9", true); /* no secret: its preamble goes where the HELLO belongs */
    rtcp_connect(&none, 1, addr);
    RUN_UNTIL(cv_guard_failures(CV_AUTH_R_MAGIC) > magic);

    uint64_t proof = cv_guard_failures(CV_AUTH_R_PROOF);
    rtcp_start_guarded(&wrong, 8, "127.0.0.1:9", true, &gother);
    rtcp_connect(&wrong, 1, addr);
    RUN_UNTIL(wrong.connects == 1);
    cr_assert_eq(wrong.status, RAFT_NOCONNECTION, "the dialler checks the listener's proof too");
    RUN_UNTIL(cv_guard_failures(CV_AUTH_R_PROOF) >= proof + 2);

    /* A raw peer: libraft's preamble (protocol 1, id 9, an 8-byte address) and a RequestVote header. */
    struct raw r;
    uint8_t msg[24 + 8 + 16] = {1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 8};
    memcpy(msg + 24, "1.2.3:4", 7);
    msg[24 + 8] = 1; /* RAFT_IO_REQUEST_VOTE */
    magic = cv_guard_failures(CV_AUTH_R_MAGIC);
    int port = atoi(strchr(addr, ':') + 1);
    raw_connect(&r, port);
    raw_send(&r, msg, sizeof msg);
    RUN_UNTIL(r.eof);
    cr_assert_gt(cv_guard_failures(CV_AUTH_R_MAGIC), magic);

    cr_assert_eq(l.accepted, 0, "nothing reached libraft");
    raw_close(&r);
    rtcp_stop(&none);
    rtcp_stop(&wrong);
    rtcp_stop(&l);
    loop_teardown();
}

/* A dialler with the secret against a listener that has none (libraft's own): the listener's preamble
 * check fails, our handshake waits for a HELLO that never comes and gives up at its deadline. */
Test(rafttcp, guarded_dialler_against_an_unguarded_listener_fails)
{
    loop_setup();
    struct cv_secret k = test_secret("the-cluster-secret-0123");
    struct cv_guard gs = {.secret = &k};
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", free_port());
    struct rtcp l, d;
    rtcp_start(&l, 1, addr, false);
    cr_assert_eq(l.t.listen(&l.t, rtcp_accept_cb), 0);
    rtcp_start_guarded(&d, 7, "127.0.0.1:9", true, &gs);
    rtcp_connect(&d, 1, addr);
    RUN_UNTIL(d.connects == 1);
    cr_assert_eq(d.status, RAFT_NOCONNECTION);
    cr_assert_eq(l.accepted, 0);
    rtcp_stop(&d);
    rtcp_stop(&l);
    loop_teardown();
}

/* ---------------------------------------------------------------------------------------------------
 * Protected mode against a peer that is not on loopback: this host's own non-loopback IPv4 address (a
 * connection to it comes from it), when it has one. */

static bool local_ipv4(char *out, size_t len)
{
    struct ifaddrs *ifs, *i;
    bool found = false;
    if (getifaddrs(&ifs) != 0) return false;
    for (i = ifs; i && !found; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) continue;
        if (cv_guard_is_loopback(i->ifa_addr)) continue;
        inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, out, (socklen_t)len);
        found = true;
    }
    freeifaddrs(ifs);
    return found;
}

Test(rpc, protected_mode_refuses_a_non_loopback_peer)
{
    char ip[64];
    if (!local_ipv4(ip, sizeof ip)) cr_skip_test("no non-loopback IPv4 address on this host");
    loop_setup();
    struct cv_guard prot = {.loopback_only = 1};
    struct rsrv s;
    memset(&s, 0, sizeof s);
    cr_assert_eq(cv_rpc_server_init(&loop, rsrv_on_request, rsrv_on_conn_close, &s, &s.srv), 0);
    cv_rpc_server_set_guard(s.srv, &prot);
    cr_assert_eq(cv_rpc_server_listen(s.srv, "0.0.0.0:0"), 0);
    s.port = cv_rpc_server_port(s.srv);
    char addr[96];
    snprintf(addr, sizeof addr, "%s:%d", ip, s.port);
    uint64_t before = cv_guard_failures(CV_AUTH_R_REMOTE);
    struct rcli c;
    memset(&c, 0, sizeof c);
    struct cv_rpc_client_opts o = {.addr = addr, .reconnect_ms = 50, .on_state = rcli_on_state, .data = &c};
    cr_assert_eq(cv_rpc_client_init(&loop, &o, &c.cli), 0);
    struct result r;
    call(&c, "echo", "x", 300, &r);
    RUN_UNTIL(r.done);
    cr_assert_neq(r.status, 0, "a peer at %s was served", ip);
    cr_assert_gt(cv_guard_failures(CV_AUTH_R_REMOTE), before);
    cr_assert_eq(s.requests, 0);
    rcli_stop(&c);
    rsrv_stop(&s);
    loop_teardown();
}

Test(rafttcp, protected_mode_refuses_a_non_loopback_peer)
{
    char ip[64];
    if (!local_ipv4(ip, sizeof ip)) cr_skip_test("no non-loopback IPv4 address on this host");
    loop_setup();
    struct cv_guard prot = {.loopback_only = 1};
    int port = free_port();
    char bind[64], addr[96];
    snprintf(bind, sizeof bind, "0.0.0.0:%d", port);
    snprintf(addr, sizeof addr, "%s:%d", ip, port);
    struct rtcp l, d, local;
    rtcp_listen(&l, bind, &prot);
    uint64_t before = cv_guard_failures(CV_AUTH_R_REMOTE);
    rtcp_start(&d, 7, "10.0.0.2:7001", true);
    rtcp_connect(&d, 1, addr);
    RUN_UNTIL(cv_guard_failures(CV_AUTH_R_REMOTE) > before);
    char lo[64];
    snprintf(lo, sizeof lo, "127.0.0.1:%d", port);
    rtcp_start(&local, 8, "127.0.0.1:9", true);
    rtcp_connect(&local, 1, lo);
    RUN_UNTIL(l.accepted == 1);
    cr_assert_eq(l.peer_id, 8, "only the loopback peer got through");
    rtcp_stop(&local);
    rtcp_stop(&d);
    rtcp_stop(&l);
    loop_teardown();
}

/* A peer that connects to a guarded server and never proves itself is closed after the handshake's
 * bound (3 s), and counted. */
Test(rpc, handshake_stalled_peer_is_closed)
{
    loop_setup();
    struct cv_secret k = test_secret("the-cluster-secret-0123");
    struct cv_guard gs = {.secret = &k};
    struct rsrv s;
    struct raw r;
    rsrv_start_guarded(&s, &gs);
    uint64_t before = cv_guard_failures(CV_AUTH_R_CLOSED), t0 = mono_ms();
    raw_connect(&r, s.port);
    RUN_UNTIL(r.eof);
    cr_assert_geq(mono_ms() - t0, 2900, "closed too early");
    cr_assert_gt(cv_guard_failures(CV_AUTH_R_CLOSED), before);
    raw_close(&r);
    rsrv_stop(&s);
    loop_teardown();
}

/* With a secret, a raft address cverse cannot dial itself (not numeric) is refused rather than handed to
 * libraft's connect, which would skip the handshake. */
Test(rafttcp, guarded_dialler_refuses_a_name)
{
    loop_setup();
    struct cv_secret k = test_secret("the-cluster-secret-0123");
    struct cv_guard gs = {.secret = &k};
    struct rtcp d;
    rtcp_start_guarded(&d, 7, "127.0.0.1:9", true, &gs);
    d.req.data = &d;
    cr_assert_eq(d.t.connect(&d.t, &d.req, 1, "raft.example:4000", rtcp_connect_cb), RAFT_NOCONNECTION);
    cr_assert(strstr(d.t.errmsg, "numeric"), "%s", d.t.errmsg);
    cr_assert_eq(d.connects, 0);
    rtcp_stop(&d);
    loop_teardown();
}
