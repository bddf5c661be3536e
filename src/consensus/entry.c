/* The raft log entry format (entry.h): framing a catalog Batch so libraft accepts it (length a multiple
 * of 8) and the decoder sees exactly the Batch. Pure: no I/O. A buffer that is too short, has another
 * magic or claims more bytes than it holds is not ours (NULL), never read past its end. */
#include "consensus/entry.h"

#include <string.h>

#include "cverse/error.h"
#include "util/be.h"
#include "util/buf.h"

const uint8_t *cv_entry_payload(const struct raft_buffer *buf, size_t *len)
{
    const uint8_t *p = buf->base;
    if (buf->len < CV_ENTRY_HDR || cv_be32_get(p) != CV_ENTRY_MAGIC) return NULL;
    *len = cv_be32_get(p + 4);
    return *len <= buf->len - CV_ENTRY_HDR ? p + CV_ENTRY_HDR : NULL;
}

int cv_entry_build(const uint8_t *batch, size_t len, struct raft_buffer *buf)
{
    size_t total = (CV_ENTRY_HDR + len + 7) & ~(size_t)7;
    buf->base = raft_malloc(total);
    if (!buf->base) return CV_ENOMEM;
    buf->len = total;
    uint8_t *p = buf->base;
    cv_be32_put(p, CV_ENTRY_MAGIC);
    cv_be32_put(p + 4, (uint32_t)len);
    memcpy(p + CV_ENTRY_HDR, batch, len);
    memset(p + CV_ENTRY_HDR + len, 0, total - CV_ENTRY_HDR - len);
    return 0;
}

/* Appends field 1 (Batch.commands, wire type 2) holding cmd: the Batch wire form is just the
 * concatenation of its commands, so queued commands never need re-encoding. */
int cv_entry_batch_append(uint8_t **buf, size_t *len, size_t *cap, const uint8_t *cmd, size_t n)
{
    int rv = cv_array_grow((void **)buf, cap, *len + n + 11, 1);
    if (rv) return rv;
    uint8_t *p = *buf + *len;
    *p++ = 0x0a;
    size_t v = n;
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    memcpy(p, cmd, n);
    *len = (size_t)(p - *buf) + n;
    return 0;
}
