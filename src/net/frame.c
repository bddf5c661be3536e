/* Native framing: a 4-byte big-endian body length, then a serialized cverse.rpc.Frame.
 *
 * Happy path: the socket layer feeds whatever it read; cv_frame_reader_next pops complete frames one by
 * one by advancing a read offset, so a read that carries many small frames costs O(bytes), not
 * O(frames * bytes). The undecoded tail is moved to the front only when the buffer must make room,
 * and each byte is moved at most once per refill, which keeps compaction amortised linear.
 *
 * Failure modes: a declared length above max is reported (CV_ETOOBIG) as soon as the 4 prefix bytes
 * are there, before any body byte is buffered (feed stops buffering behind such a prefix, so a hostile
 * peer cannot make us allocate the body); an undecodable body gives CV_EPROTO. Both are sticky: the
 * offending bytes stay in place, so every later call returns the same error until the reader is freed. */
#include "net/frame.h"

#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"
#include "util/be.h"
#include "util/buf.h"

#define FRAME__MIN_CAP 4096u

void cv_frame_reader_init(struct cv_frame_reader *r, size_t max)
{
    r->buf = NULL;
    r->len = r->cap = r->off = 0;
    r->max = (max == 0 || max > CV_FRAME_MAX) ? CV_FRAME_MAX : max;
}

void cv_frame_reader_free(struct cv_frame_reader *r)
{
    free(r->buf);
    r->buf = NULL;
    r->len = r->cap = r->off = 0;
}

/* 1 if the undecoded bytes start with a prefix declaring a body larger than max. */
static int frame__oversized(const struct cv_frame_reader *r)
{
    return r->len - r->off >= CV_FRAME_PREFIX && cv_be32_get(r->buf + r->off) > r->max;
}

/* Makes room for n more bytes: first by dropping decoded bytes, then by doubling. */
static int frame__reserve(struct cv_frame_reader *r, size_t n)
{
    if (r->off > 0 && r->cap - r->len < n) {
        memmove(r->buf, r->buf + r->off, r->len - r->off);
        r->len -= r->off;
        r->off = 0;
    }
    if (n > SIZE_MAX - r->len) return CV_ENOMEM;
    size_t want = r->len + n < FRAME__MIN_CAP ? FRAME__MIN_CAP : r->len + n; /* first buffer: 4096 */
    return cv_array_grow((void **)&r->buf, &r->cap, want, 1);
}

int cv_frame_reader_feed(struct cv_frame_reader *r, const void *data, size_t len)
{
    if (len == 0) return 0;
    if (r->off == r->len) r->off = r->len = 0; /* everything decoded: restart at the front for free */
    /* Behind an oversized prefix the stream is dead: keep only enough to report it. */
    if (frame__oversized(r)) return 0;
    const uint8_t *src = data;
    size_t have = r->len - r->off;
    if (have < CV_FRAME_PREFIX && have + len >= CV_FRAME_PREFIX) {
        /* The prefix completes inside this chunk: check it before buffering the body. */
        uint8_t pre[CV_FRAME_PREFIX];
        if (have) memcpy(pre, r->buf + r->off, have);
        memcpy(pre + have, src, CV_FRAME_PREFIX - have);
        if (cv_be32_get(pre) > r->max) len = CV_FRAME_PREFIX - have;
    }
    int rv = frame__reserve(r, len);
    if (rv) return rv;
    memcpy(r->buf + r->len, src, len);
    r->len += len;
    return 0;
}

int cv_frame_reader_next(struct cv_frame_reader *r, Cverse__Rpc__Frame **out)
{
    *out = NULL;
    size_t have = r->len - r->off;
    if (have < CV_FRAME_PREFIX) return 0;
    uint32_t blen = cv_be32_get(r->buf + r->off);
    if (blen > r->max) return CV_ETOOBIG;
    if (have - CV_FRAME_PREFIX < blen) return 0;
    Cverse__Rpc__Frame *f = cverse__rpc__frame__unpack(NULL, blen, r->buf + r->off + CV_FRAME_PREFIX);
    if (!f) return CV_EPROTO; /* offset not advanced: the error repeats, the stream stays dead */
    r->off += CV_FRAME_PREFIX + blen;
    if (r->off == r->len) r->off = r->len = 0;
    *out = f;
    return 1;
}

/* ---- Frame's wire form by hand: the generic protobuf-c pack/unpack (reflection over the descriptor,
 * a copy and an allocation per string or bytes field) was ~40% of the gate's instructions per call.
 * The bytes are exactly protobuf-c's (proto3: fields at their default are left out, in field order);
 * test_net compares both. */

static size_t frame__varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *frame__varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* Field values as written: enum and sint32 as protobuf-c encodes them. */
static uint64_t frame__kind(const Cverse__Rpc__Frame *f) { return (uint64_t)(int64_t)(int32_t)f->kind; }
static uint64_t frame__zigzag(int32_t v) { return ((uint32_t)v << 1) ^ (uint32_t)(v >> 31); }
static size_t frame__slen(const char *s) { return s ? strlen(s) : 0; }

static size_t frame__lenfield(size_t len)
{
    return len ? 1 + frame__varint_len(len) + len : 0;
}

size_t cv_frame_size(const Cverse__Rpc__Frame *f)
{
    size_t n = frame__lenfield(frame__slen(f->method)) + frame__lenfield(f->body.len) +
               frame__lenfield(frame__slen(f->error));
    if (f->id) n += 1 + frame__varint_len(f->id);
    if (f->kind) n += 1 + frame__varint_len(frame__kind(f));
    if (f->status) n += 1 + frame__varint_len(frame__zigzag(f->status));
    if (f->deadline_ms) n += 1 + frame__varint_len(f->deadline_ms);
    n += frame__lenfield(frame__slen(f->app_code)) + frame__lenfield(frame__slen(f->app_details_type)) +
         frame__lenfield(f->app_details.len);
    return n;
}

static uint8_t *frame__put_bytes(uint8_t *p, uint8_t tag, const void *data, size_t len)
{
    if (!len) return p;
    *p++ = tag;
    p = frame__varint(p, len);
    memcpy(p, data, len);
    return p + len;
}

void cv_frame_pack(const Cverse__Rpc__Frame *f, size_t blen, uint8_t *dst)
{
    cv_be32_put(dst, (uint32_t)blen);
    uint8_t *p = dst + CV_FRAME_PREFIX;
    if (f->id) p = frame__varint((*p = 0x08, p + 1), f->id);
    if (f->kind) p = frame__varint((*p = 0x10, p + 1), frame__kind(f));
    p = frame__put_bytes(p, 0x1a, f->method, frame__slen(f->method));
    p = frame__put_bytes(p, 0x22, f->body.data, f->body.len);
    if (f->status) p = frame__varint((*p = 0x28, p + 1), frame__zigzag(f->status));
    p = frame__put_bytes(p, 0x32, f->error, frame__slen(f->error));
    if (f->deadline_ms) p = frame__varint((*p = 0x38, p + 1), f->deadline_ms);
    p = frame__put_bytes(p, 0x42, f->app_code, frame__slen(f->app_code));
    p = frame__put_bytes(p, 0x4a, f->app_details_type, frame__slen(f->app_details_type));
    frame__put_bytes(p, 0x52, f->app_details.data, f->app_details.len);
}

static size_t frame__varfield(uint64_t v)
{
    return v ? 1 + frame__varint_len(v) : 0;
}

size_t cv_call_size(const Cverse__Rpc__CallRequest *c)
{
    return frame__lenfield(frame__slen(c->type)) + frame__lenfield(frame__slen(c->id)) +
           frame__lenfield(frame__slen(c->method)) + frame__lenfield(c->request.len) +
           frame__lenfield(frame__slen(c->request_json)) + frame__varfield(c->map_index) +
           frame__lenfield(frame__slen(c->call_id)) + frame__varfield((uint64_t)(int64_t)(int32_t)c->form) +
           frame__varfield(c->compact != 0) + frame__lenfield(frame__slen(c->client_id)) +
           frame__lenfield(frame__slen(c->caller_user)) + frame__lenfield(frame__slen(c->caller_roles)) +
           frame__varfield(c->internal != 0);
}

void cv_call_pack(const Cverse__Rpc__CallRequest *c, uint8_t *dst)
{
    uint8_t *p = frame__put_bytes(dst, 0x0a, c->type, frame__slen(c->type));
    p = frame__put_bytes(p, 0x12, c->id, frame__slen(c->id));
    p = frame__put_bytes(p, 0x1a, c->method, frame__slen(c->method));
    p = frame__put_bytes(p, 0x22, c->request.data, c->request.len);
    p = frame__put_bytes(p, 0x2a, c->request_json, frame__slen(c->request_json));
    if (c->map_index) p = frame__varint((*p = 0x30, p + 1), c->map_index);
    p = frame__put_bytes(p, 0x3a, c->call_id, frame__slen(c->call_id));
    if (c->form) p = frame__varint((*p = 0x40, p + 1), (uint64_t)(int64_t)(int32_t)c->form);
    if (c->compact) p = frame__varint((*p = 0x48, p + 1), 1);
    p = frame__put_bytes(p, 0x52, c->client_id, frame__slen(c->client_id));
    p = frame__put_bytes(p, 0x5a, c->caller_user, frame__slen(c->caller_user));
    p = frame__put_bytes(p, 0x62, c->caller_roles, frame__slen(c->caller_roles));
    if (c->internal) frame__varint((*p = 0x68, p + 1), 1);
}

/* Reads a varint at *p (before end); 0 and advances *p, or -1 if it is cut or longer than 10 bytes. */
static int frame__get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (unsigned shift = 0; shift < 70 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return 0;
    }
    return -1;
}

/* One field of a scanned message: its wire type (0 varint, 2 length-delimited; -1 absent) and value. */
struct frame__field {
    int wt;
    uint64_t v;        /* varint value, or the length */
    const uint8_t *p;  /* length-delimited: the bytes */
};

/* Scans a message's top-level fields into f[1..n-1] (the last occurrence wins, as in protobuf); fields
 * numbered n or above are skipped. wts[k] is field k's wire type ('0' varint, '2' length-delimited).
 * -1 for anything unusual (a cut field, a fixed-width or group field, a known field with another wire
 * type): the caller then leaves the bytes to protobuf-c, which decides. */
static int frame__scan(const uint8_t *p, size_t len, struct frame__field *f, const char *wts)
{
    unsigned n = (unsigned)strlen(wts);
    const uint8_t *end = len ? p + len : p; /* an empty body may come as NULL (no offset on NULL) */
    uint64_t key, x;
    for (unsigned i = 0; i < n; i++) f[i] = (struct frame__field){-1, 0, NULL};
    while (p < end) {
        if (frame__get_varint(&p, end, &key) || frame__get_varint(&p, end, &x)) return -1;
        unsigned wt = (unsigned)(key & 7);
        if (wt != 0 && wt != 2) return -1;
        /* field numbers are 1..2^29-1: protobuf-c refuses others, so must we (found by fuzz_frame) */
        if (key >> 3 == 0 || key >> 3 > 0x1fffffffu) return -1;
        if (wt == 2 && x > (uint64_t)(end - p)) return -1;
        if (key >> 3 < n) {
            if ((unsigned)(wts[key >> 3] - '0') != wt) return -1;
            f[key >> 3] = (struct frame__field){(int)wt, x, wt == 2 ? p : NULL};
        }
        if (wt == 2) p += x;
    }
    return 0;
}

/* Field k as a NUL-terminated string copied to scratch (at *used), "" if absent; -1 if it has the wrong
 * wire type, does not fit or holds a NUL. */
static int frame__str(const struct frame__field *f, char *scratch, size_t cap, size_t *used, char **out)
{
    if (f->wt == -1) {
        *out = (char *)"";
        return 0;
    }
    if (f->wt != 2 || f->v >= cap - *used || memchr(f->p, 0, f->v)) return -1;
    *out = memcpy(scratch + *used, f->p, f->v);
    (*out)[f->v] = 0;
    *used += f->v + 1;
    return 0;
}

static int frame__varint_field(const struct frame__field *f, uint64_t *out)
{
    if (f->wt == 2) return -1;
    *out = f->wt == 0 ? f->v : 0;
    return 0;
}

static int frame__bytes_field(const struct frame__field *f, ProtobufCBinaryData *out)
{
    if (f->wt == 0) return -1;
    *out = (ProtobufCBinaryData){0, NULL};
    if (f->wt == 2 && f->v) *out = (ProtobufCBinaryData){(size_t)f->v, (uint8_t *)f->p};
    return 0;
}

/* Decodes body[0, blen) into v->local without allocating; -1 for anything unusual (see frame__scan). */
static int frame__view(struct cv_frame_view *v, const uint8_t *p, size_t blen)
{
    struct frame__field f[11];
    size_t used = 0;
    uint64_t id, kind, status, deadline;
    Cverse__Rpc__Frame *fr = &v->local;
    *fr = (Cverse__Rpc__Frame)CVERSE__RPC__FRAME__INIT;
    char *sc = v->scratch;
    size_t cap = sizeof v->scratch;
    if (frame__scan(p, blen, f, "x0022020222") || frame__varint_field(&f[1], &id) ||
        frame__varint_field(&f[2], &kind) || frame__str(&f[3], sc, cap, &used, &fr->method) ||
        frame__bytes_field(&f[4], &fr->body) || frame__varint_field(&f[5], &status) ||
        frame__str(&f[6], sc, cap, &used, &fr->error) || frame__varint_field(&f[7], &deadline) ||
        frame__str(&f[8], sc, cap, &used, &fr->app_code) || frame__str(&f[9], sc, cap, &used, &fr->app_details_type) ||
        frame__bytes_field(&f[10], &fr->app_details))
        return -1;
    fr->id = id;
    fr->kind = (Cverse__Rpc__Kind)(int32_t)kind;
    fr->status = (int32_t)(((uint32_t)status >> 1) ^ -((uint32_t)status & 1));
    fr->deadline_ms = (uint32_t)deadline;
    return 0;
}

int cv_call_view(const uint8_t *p, size_t len, struct cv_call_view *v)
{
    struct frame__field f[14];
    size_t used = 0;
    uint64_t form, compact, internal;
    Cverse__Rpc__CallRequest *c = &v->local;
    *c = (Cverse__Rpc__CallRequest)CVERSE__RPC__CALL_REQUEST__INIT;
    v->unpacked = NULL;
    v->c = c;
    char *sc = v->scratch;
    size_t cap = sizeof v->scratch;
    if (frame__scan(p, len, f, "x2222202002220") == 0 && frame__str(&f[1], sc, cap, &used, &c->type) == 0 &&
        frame__str(&f[2], sc, cap, &used, &c->id) == 0 &&
        frame__str(&f[3], sc, cap, &used, &c->method) == 0 &&
        frame__bytes_field(&f[4], &c->request) == 0 &&
        frame__str(&f[5], sc, cap, &used, &c->request_json) == 0 &&
        frame__varint_field(&f[6], &c->map_index) == 0 &&
        frame__str(&f[7], sc, cap, &used, &c->call_id) == 0 && frame__varint_field(&f[8], &form) == 0 &&
        frame__varint_field(&f[9], &compact) == 0 && frame__str(&f[10], sc, cap, &used, &c->client_id) == 0 &&
        frame__str(&f[11], sc, cap, &used, &c->caller_user) == 0 &&
        frame__str(&f[12], sc, cap, &used, &c->caller_roles) == 0 && frame__varint_field(&f[13], &internal) == 0) {
        c->form = (Cverse__Rpc__CallForm)(int32_t)form; /* an unknown form is the node's to refuse */
        c->compact = compact != 0;
        c->internal = internal != 0;
        return 0;
    }
    v->unpacked = cverse__rpc__call_request__unpack(NULL, len, p);
    v->c = v->unpacked;
    return v->c ? 0 : CV_EPROTO;
}

void cv_call_view_done(struct cv_call_view *v)
{
    if (v->unpacked) cverse__rpc__call_request__free_unpacked(v->unpacked, NULL);
    v->unpacked = NULL;
    v->c = NULL;
}

int cv_frame_reader_view(struct cv_frame_reader *r, struct cv_frame_view *v)
{
    v->f = NULL;
    v->unpacked = NULL;
    size_t have = r->len - r->off;
    if (have < CV_FRAME_PREFIX) return 0;
    uint32_t blen = cv_be32_get(r->buf + r->off);
    if (blen > r->max) return CV_ETOOBIG;
    if (have - CV_FRAME_PREFIX < blen) return 0;
    const uint8_t *body = r->buf + r->off + CV_FRAME_PREFIX;
    if (frame__view(v, body, blen) == 0) {
        v->f = &v->local;
    } else {
        v->unpacked = cverse__rpc__frame__unpack(NULL, blen, body);
        if (!v->unpacked) return CV_EPROTO; /* offset not advanced: the error repeats */
        v->f = v->unpacked;
    }
    r->off += CV_FRAME_PREFIX + blen; /* the bytes stay in place until the next feed */
    return 1;
}

void cv_frame_view_done(struct cv_frame_view *v)
{
    if (v->unpacked) cverse__rpc__frame__free_unpacked(v->unpacked, NULL);
    v->unpacked = NULL;
    v->f = NULL;
}

int cv_frame_encode(const Cverse__Rpc__Frame *f, uint8_t **out, size_t *len)
{
    size_t blen = cv_frame_size(f);
    if (blen > CV_FRAME_MAX) return CV_ETOOBIG;
    uint8_t *p = malloc(CV_FRAME_PREFIX + blen);
    if (!p) return CV_ENOMEM;
    cv_frame_pack(f, blen, p);
    *out = p;
    *len = CV_FRAME_PREFIX + blen;
    return 0;
}
