/* cv_buf: printf into a buffer that doubles as needed. vsnprintf first measures into the free space;
 * if it does not fit, the buffer grows and the format runs again. Out of memory sets b->oom.
 * cv_array_grow: the same doubling for arrays; out of memory (or a size that overflows) leaves the array
 * as it was and returns CV_ENOMEM. */
#include "util/buf.h"

#include <stdint.h>

#include "cverse/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void cv_buf_printf(struct cv_buf *b, const char *fmt, ...)
{
    va_list ap;
    while (!b->oom) {
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if (b->p && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap ? b->cap * 2 : 4096) + (size_t)n;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

int cv_array_grow(void **arr, size_t *cap, size_t want, size_t elem)
{
    if (want <= *cap) return 0;
    size_t ncap = *cap ? *cap : 8;
    while (ncap < want) {
        if (ncap > SIZE_MAX / 2) return CV_ENOMEM;
        ncap *= 2;
    }
    if (elem && ncap > SIZE_MAX / elem) return CV_ENOMEM;
    void *p = realloc(*arr, ncap * elem);
    if (!p) return CV_ENOMEM;
    *arr = p;
    *cap = ncap;
    return 0;
}
