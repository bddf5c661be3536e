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

void cv_frame_pack(const Cverse__Rpc__Frame *f, size_t blen, uint8_t *dst)
{
    cv_be32_put(dst, (uint32_t)blen);
    cverse__rpc__frame__pack(f, dst + CV_FRAME_PREFIX);
}

int cv_frame_encode(const Cverse__Rpc__Frame *f, uint8_t **out, size_t *len)
{
    size_t blen = cverse__rpc__frame__get_packed_size(f);
    if (blen > CV_FRAME_MAX) return CV_ETOOBIG;
    uint8_t *p = malloc(CV_FRAME_PREFIX + blen);
    if (!p) return CV_ENOMEM;
    cv_frame_pack(f, blen, p);
    *out = p;
    *len = CV_FRAME_PREFIX + blen;
    return 0;
}
