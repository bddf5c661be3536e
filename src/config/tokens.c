/* The gate's client tokens file: one "TOKEN USER_ID [ROLE,ROLE...]" per line, '#' comments, blank lines.
 *
 * Happy path: each line is split on blanks into two or three words; the token is kept only as its
 * crypto_generichash digest (a fixed size: comparing digests does not leak a token's length, and the
 * plain token is not kept in memory); user id and roles are copied. Lookups compare the digest of the
 * presented token with every entry with sodium_memcmp and never stop early.
 *
 * Failure modes: a line with one word or more than three, a word too long, a duplicate token, a role
 * list with an empty role, or a file without any token: CV_ECONFIG, "FILE:LINE: what is wrong
 * (expected ...)", and the gate exits 2 as for any config error. Unreadable: CV_EIO. */
#include "config/tokens.h"

#include <errno.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"

#define TOK_LINE_MAX 4096
#define TOK_MAX_BYTES (1u << 20)

__attribute__((format(printf, 5, 6))) static int tok__fail(char *err, size_t errlen, const char *name, int line,
                                                           const char *fmt, ...)
{
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (err && errlen) snprintf(err, errlen, "%s:%d: %s", name, line, msg);
    return CV_ECONFIG;
}

static void tok__digest(const char *token, size_t len, uint8_t out[CV_TOKEN_DIGEST])
{
    crypto_generichash(out, CV_TOKEN_DIGEST, (const unsigned char *)token, len, NULL, 0);
}

/* Splits line (modified) into at most 4 blank-separated words; returns how many. */
static int tok__words(char *line, char *w[4])
{
    int n = 0;
    for (char *save = NULL, *t = strtok_r(line, " \t\r", &save); t && n < 4; t = strtok_r(NULL, " \t\r", &save))
        w[n++] = t;
    return n;
}

static bool tok__roles_ok(const char *roles)
{
    size_t n = strlen(roles);
    return n && roles[0] != ',' && roles[n - 1] != ',' && !strstr(roles, ",,");
}

/* One non-blank, non-comment line into e. */
static int tok__line(char *line, int lno, const char *name, const struct cv_tokens *t, struct cv_token *e,
                     char *err, size_t errlen)
{
    char *w[4];
    int n = tok__words(line, w);
    if (n < 2 || n > 3)
        return tok__fail(err, errlen, name, lno, "%d words (expected TOKEN USER_ID [ROLE,ROLE...])", n);
    if (strlen(w[1]) >= CV_TOKEN_USER_MAX)
        return tok__fail(err, errlen, name, lno, "user id longer than %d bytes", CV_TOKEN_USER_MAX - 1);
    if (n == 3 && (strlen(w[2]) >= CV_TOKEN_ROLES_MAX || !tok__roles_ok(w[2])))
        return tok__fail(err, errlen, name, lno, "bad role list \"%.60s\" (expected ROLE,ROLE... under %d bytes)",
                         w[2], CV_TOKEN_ROLES_MAX);
    memset(e, 0, sizeof *e);
    tok__digest(w[0], strlen(w[0]), e->digest);
    if (cv_tokens_find(t, w[0], strlen(w[0])))
        return tok__fail(err, errlen, name, lno, "duplicate token (expected each token once)");
    snprintf(e->user_id, sizeof e->user_id, "%s", w[1]);
    snprintf(e->roles, sizeof e->roles, "%s", n == 3 ? w[2] : "");
    return 0;
}

int cv_tokens_parse(const char *text, size_t len, const char *name, struct cv_tokens *out, char *err,
                    size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (sodium_init() < 0) return CV_ENOMEM;
    char line[TOK_LINE_MAX];
    int lno = 0, rv = 0;
    for (size_t pos = 0; pos < len && !rv;) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
        lno++;
        if (n >= sizeof line) rv = tok__fail(err, errlen, name, lno, "line longer than %d bytes", TOK_LINE_MAX - 1);
        else if (memchr(text + pos, '\0', n)) rv = tok__fail(err, errlen, name, lno, "NUL byte (expected text)");
        if (rv) break;
        memcpy(line, text + pos, n);
        line[n] = '\0';
        pos += n + 1;
        char *s = line + strspn(line, " \t\r");
        if (!*s || *s == '#') continue;
        struct cv_token *v = realloc(out->v, (out->n + 1) * sizeof *v);
        if (!v) rv = CV_ENOMEM;
        else out->v = v;
        if (!rv && !(rv = tok__line(s, lno, name, out, &v[out->n], err, errlen))) out->n++;
    }
    if (!rv && !out->n) rv = tok__fail(err, errlen, name, lno ? lno : 1, "no token (expected TOKEN USER_ID lines)");
    if (rv) cv_tokens_free(out);
    return rv;
}

int cv_tokens_load(const char *path, struct cv_tokens *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    char *buf = f ? malloc(TOK_MAX_BYTES) : NULL;
    size_t n = buf ? fread(buf, 1, TOK_MAX_BYTES, f) : 0;
    int rv = 0;
    if (!f || !buf || ferror(f)) {
        if (err && errlen) snprintf(err, errlen, "%s: cannot read: %s", path, f && !buf ? "out of memory" : strerror(errno));
        rv = f && !buf ? CV_ENOMEM : CV_EIO;
    } else if (n == TOK_MAX_BYTES) {
        rv = tok__fail(err, errlen, path, 1, "file larger than %u bytes", TOK_MAX_BYTES - 1);
    } else {
        rv = cv_tokens_parse(buf, n, path, out, err, errlen);
    }
    free(buf);
    if (f) fclose(f);
    return rv;
}

const struct cv_token *cv_tokens_find(const struct cv_tokens *t, const char *token, size_t len)
{
    uint8_t d[CV_TOKEN_DIGEST];
    tok__digest(token, len, d);
    const struct cv_token *found = NULL;
    for (size_t i = 0; t && i < t->n; i++) { /* no early exit: the time does not tell which entry */
        bool eq = sodium_memcmp(d, t->v[i].digest, CV_TOKEN_DIGEST) == 0;
        if (eq && !found) found = &t->v[i];
    }
    return found;
}

void cv_tokens_free(struct cv_tokens *t)
{
    if (!t) return;
    if (t->v) sodium_memzero(t->v, t->n * sizeof *t->v);
    free(t->v);
    memset(t, 0, sizeof *t);
}
