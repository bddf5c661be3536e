/* Growable memory: a text buffer with printf-style appends (metrics pages, generated text) and arrays. */
#ifndef CV_UTIL_BUF_H
#define CV_UTIL_BUF_H

#include <stdbool.h>
#include <stddef.h>

/* Zero-initialise ({0}) to start empty. p is malloc'ed (NUL-terminated once anything was appended) and
 * owned by the user of the buffer: free(b.p) when done. oom is set (and stays set) when an append could
 * not grow the buffer; later appends are then ignored. */
struct cv_buf {
    char *p;
    size_t len, cap;
    bool oom;
};

void cv_buf_printf(struct cv_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Makes the array *arr (capacity *cap elements of elem bytes, NULL/0 to start) hold at least want
 * elements, doubling from 8. 0, or CV_ENOMEM with *arr and *cap unchanged. */
int cv_array_grow(void **arr, size_t *cap, size_t want, size_t elem);

#endif
