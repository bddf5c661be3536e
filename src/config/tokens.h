/* The gate's client tokens file (gates[].auth_tokens_file): parsing, and a constant-time token lookup. */
#ifndef CV_CONFIG_TOKENS_H
#define CV_CONFIG_TOKENS_H

#include <stddef.h>
#include <stdint.h>

#define CV_TOKEN_DIGEST 32   /* crypto_generichash output compared, so a token's length does not leak */
#define CV_TOKEN_USER_MAX 128 /* longest user id */
#define CV_TOKEN_ROLES_MAX 256 /* longest role list ("a,b,c") */

struct cv_token {
    uint8_t digest[CV_TOKEN_DIGEST];
    char user_id[CV_TOKEN_USER_MAX];
    char roles[CV_TOKEN_ROLES_MAX]; /* comma-separated, "" = none */
};

struct cv_tokens {
    struct cv_token *v; /* owned */
    size_t n;
};

/* Parses "TOKEN USER_ID [ROLE,ROLE...]" lines ('#' comments, blank lines); name is for messages.
 * 0, or CV_ECONFIG with "NAME:LINE: what is wrong (expected ...)" in err; CV_ENOMEM. A file without a
 * token is an error too (a gate with the key but no token would refuse every client). */
int cv_tokens_parse(const char *text, size_t len, const char *name, struct cv_tokens *out, char *err,
                    size_t errlen);
/* Reads path and parses it; an unreadable file is CV_EIO ("PATH: cannot read: reason"). */
int cv_tokens_load(const char *path, struct cv_tokens *out, char *err, size_t errlen);
/* The entry whose token is token, or NULL. Every entry is compared (sodium_memcmp of the digests), so the
 * time taken depends only on the number of entries. */
const struct cv_token *cv_tokens_find(const struct cv_tokens *t, const char *token, size_t len);
void cv_tokens_free(struct cv_tokens *t);

#endif
