/* Percent-decoding of URL paths and query strings (RFC 3986), and lookup of one query parameter.
 *
 * Happy path: one pass over the input, each "%XY" becomes the byte 0xXY, '+' becomes a space only in
 * query strings (plus_is_space), everything else is copied; the output is never longer than the input,
 * so a buffer of n + 1 bytes always suffices. cv_pct_query_param finds "key=" at the start of a
 * '&'-separated field and decodes its value into the caller's buffer.
 * Failure modes: anything malformed is CV_EINVAL rather than passed through, so "%zz" or a truncated "%4"
 * never reaches a handler as a literal (and "%00" never cuts a C string short); a decoded value that
 * does not fit the caller's buffer is CV_ERANGE, an absent key CV_ENOTFOUND, no memory CV_ENOMEM. */
#include "util/pct.h"

#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"

static int pct__hex(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int cv_pct_decode(const char *s, size_t n, bool plus_is_space, char *out)
{
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+' && plus_is_space) {
            out[j++] = ' ';
            continue;
        }
        if (s[i] != '%') {
            out[j++] = s[i];
            continue;
        }
        int h = i + 2 < n ? pct__hex(s[i + 1]) : -1;
        int l = i + 2 < n ? pct__hex(s[i + 2]) : -1;
        if (h < 0 || l < 0 || (h | l) == 0) {
            out[j] = '\0';
            return CV_EINVAL;
        }
        out[j++] = (char)(h << 4 | l);
        i += 2;
    }
    out[j] = '\0';
    return (int)j;
}

char *cv_pct_decode_dup(const char *s, size_t n, bool plus_is_space, int *err)
{
    char *out = malloc(n + 1);
    if (!out) {
        *err = CV_ENOMEM;
        return NULL;
    }
    int rv = cv_pct_decode(s, n, plus_is_space, out);
    if (rv < 0) {
        free(out);
        *err = rv;
        return NULL;
    }
    return out;
}

int cv_pct_query_param(const char *q, const char *key, char *out, size_t len)
{
    size_t klen = strlen(key);
    for (const char *p = q; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
        if (strncmp(p, key, klen) != 0 || p[klen] != '=') continue;
        const char *v = p + klen + 1;
        size_t n = strcspn(v, "&");
        char *tmp = malloc(n + 1);
        if (!tmp) return CV_ENOMEM;
        int rv = cv_pct_decode(v, n, true, tmp);
        if (rv >= 0 && (size_t)rv >= len) rv = CV_ERANGE;
        if (rv >= 0) memcpy(out, tmp, (size_t)rv + 1);
        free(tmp);
        return rv < 0 ? rv : 0;
    }
    return CV_ENOTFOUND;
}
