/* Percent-decoding (RFC 3986) of URL paths and query parameters: the one decoder of every HTTP front end. */
#ifndef CV_UTIL_PCT_H
#define CV_UTIL_PCT_H

#include <stdbool.h>
#include <stddef.h>

/* Decodes s[0, n) into out, which must have room for n + 1 bytes (decoding never grows); out is
 * NUL-terminated. plus_is_space: '+' decodes to ' ' (form-encoded query strings), else it stays '+'.
 * Returns the decoded length, or CV_EINVAL for a malformed escape ("%" not followed by two hex digits)
 * or an encoded NUL ("%00": the result is used as a C string). */
int cv_pct_decode(const char *s, size_t n, bool plus_is_space, char *out);

/* Same into a new malloc'ed string (owned by the caller). NULL with *err = CV_EINVAL or CV_ENOMEM. */
char *cv_pct_decode_dup(const char *s, size_t n, bool plus_is_space, int *err);

/* The value of query parameter key in the raw query string q ("a=1&b=x%20y", no '?'), percent-decoded
 * with '+' as space, into out (len bytes). 0; CV_ENOTFOUND if absent; CV_EINVAL for a malformed escape;
 * CV_ERANGE if the value does not fit. The first occurrence wins. */
int cv_pct_query_param(const char *q, const char *key, char *out, size_t len);

#endif
