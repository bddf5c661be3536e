/* Application errors' packed form (core/apperr.h): pure byte handling, no I/O.
 *
 * Happy path: pack writes "code\0type\0details" in one allocation; parse finds the two NULs and hands out
 * pointers into the caller's buffer (the strings are terminated in place, so nothing is copied).
 * Failure modes: an invalid code or details without a type name (pack: CV_EINVAL); a buffer without both
 * terminators, an invalid code or details without a type (parse: CV_EPROTO); CV_ENOMEM. */
#include "core/apperr.h"

#include <stdlib.h>
#include <string.h>

int cv_apperr_code_valid(const char *code)
{
    size_t n = code ? strlen(code) : 0;
    if (n == 0 || n > CV_APP_CODE_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = code[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

int cv_apperr_pack(const struct cv_app_error *e, uint8_t **out, size_t *len)
{
    const char *type = e->details_type ? e->details_type : "";
    if (!cv_apperr_code_valid(e->code) || (e->details_len && (!*type || !e->details))) return CV_EINVAL;
    size_t nc = strlen(e->code) + 1, nt = strlen(type) + 1;
    uint8_t *buf = malloc(nc + nt + e->details_len);
    if (!buf) return CV_ENOMEM;
    memcpy(buf, e->code, nc);
    memcpy(buf + nc, type, nt);
    if (e->details_len) memcpy(buf + nc + nt, e->details, e->details_len);
    *out = buf;
    *len = nc + nt + e->details_len;
    return 0;
}

int cv_apperr_parse(const uint8_t *buf, size_t len, const char *message, struct cv_app_error *out)
{
    const uint8_t *end1 = buf ? memchr(buf, 0, len) : NULL;
    if (!end1) return CV_EPROTO;
    const uint8_t *type = end1 + 1, *end2 = memchr(type, 0, len - (size_t)(type - buf));
    if (!end2) return CV_EPROTO;
    const uint8_t *details = end2 + 1;
    size_t dlen = len - (size_t)(details - buf);
    if (!cv_apperr_code_valid((const char *)buf) || (dlen && end2 == type)) return CV_EPROTO;
    *out = (struct cv_app_error){(const char *)buf, message ? message : "", (const char *)type,
                                 dlen ? details : NULL, dlen};
    return 0;
}
