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
    if (f->deadline_ms) frame__varint((*p = 0x38, p + 1), f->deadline_ms);
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

/* Copies a string field into the view's scratch; -1 if it does not fit (or holds a NUL: the generic
 * decoder decides then). */
static int frame__get_str(struct cv_frame_view *v, size_t *used, const uint8_t *s, uint64_t n, char **out)
{
    if (n >= sizeof v->scratch - *used || memchr(s, 0, n)) return -1;
    *out = memcpy(v->scratch + *used, s, n);
    (*out)[n] = 0;
    *used += n + 1;
    return 0;
}

/* Decodes body[0, blen) into v->local without allocating (body bytes point into the buffer); -1 for
 * anything unusual (a field of an unexpected wire type, long strings, a cut field): the caller then
 * takes protobuf-c's decoder, which gives the same answer for valid input and decides about the rest. */
static int frame__view(struct cv_frame_view *v, const uint8_t *p, size_t blen)
{
    const uint8_t *end = p + blen;
    size_t used = 0;
    uint64_t key, x;
    v->local = (Cverse__Rpc__Frame)CVERSE__RPC__FRAME__INIT;
    Cverse__Rpc__Frame *f = &v->local;
    while (p < end) {
        if (frame__get_varint(&p, end, &key) || frame__get_varint(&p, end, &x)) return -1;
        unsigned field = (unsigned)(key >> 3), wt = (unsigned)(key & 7);
        if (wt == 2) {
            if (x > (uint64_t)(end - p)) return -1;
            if (field == 3 && frame__get_str(v, &used, p, x, &f->method)) return -1;
            if (field == 6 && frame__get_str(v, &used, p, x, &f->error)) return -1;
            if (field == 4) f->body = (ProtobufCBinaryData){(size_t)x, (uint8_t *)p};
            if (field == 1 || field == 2 || field == 5 || field == 7) return -1;
            p += x;
        } else if (wt == 0) {
            if (field == 1) f->id = x;
            else if (field == 2) f->kind = (Cverse__Rpc__Kind)(int32_t)x;
            else if (field == 5) f->status = (int32_t)(((uint32_t)x >> 1) ^ -((uint32_t)x & 1));
            else if (field == 7) f->deadline_ms = (uint32_t)x;
            else if (field == 3 || field == 4 || field == 6) return -1;
        } else {
            return -1; /* fixed-width or group fields: none in Frame */
        }
    }
    if (!f->body.len) f->body.data = NULL;
    return 0;
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
