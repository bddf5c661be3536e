/* cv_buf: printf into a buffer that doubles as needed. vsnprintf first measures into the free space;
 * if it does not fit, the buffer grows and the format runs again. Out of memory sets b->oom. */
#include "util/buf.h"

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
