/* Big-endian integers in byte buffers (wire prefixes, LMDB keys and meta values, raft entry headers). */
#ifndef CV_UTIL_BE_H
#define CV_UTIL_BE_H

#include <stdint.h>

/* p: 4 (or 8) writable / readable bytes, borrowed for the call; no alignment needed. */
static inline void cv_be32_put(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline uint32_t cv_be32_get(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline void cv_be64_put(uint8_t *p, uint64_t v)
{
    cv_be32_put(p, (uint32_t)(v >> 32));
    cv_be32_put(p + 4, (uint32_t)v);
}

static inline uint64_t cv_be64_get(const uint8_t *p)
{
    return (uint64_t)cv_be32_get(p) << 32 | cv_be32_get(p + 4);
}

#endif
