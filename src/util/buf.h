/* A growable text buffer with printf-style appends (for metrics pages and other generated text). */
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

#endif
