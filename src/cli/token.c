/* The CLI's gate token (docs/security.md): the first line of --token-file FILE (or $CVERSE_TOKEN_FILE),
 * blanks trimmed, set with cv_client_set_token so that every connection begins with gate.auth.
 * Failure modes: an unreadable or empty file is a usage error (exit 2), told on stderr. */
#include "cli/token.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cv_cli_token(cv_client *c, const char *file)
{
    const char *env = getenv("CVERSE_TOKEN_FILE");
    if (!file) file = env && *env ? env : NULL;
    if (!file) return 0;
    char line[4096] = "";
    FILE *f = fopen(file, "r");
    if (!f || !fgets(line, sizeof line, f)) {
        fprintf(stderr, "cverse: token file %s: %s\n", file, f ? "empty" : strerror(errno));
        if (f) fclose(f);
        return 2;
    }
    fclose(f);
    char *s = line + strspn(line, " \t");
    size_t n = strcspn(s, " \t\r\n");
    s[n] = '\0';
    if (!n) {
        fprintf(stderr, "cverse: token file %s: the first line holds no token\n", file);
        return 2;
    }
    int rv = cv_client_set_token(c, s);
    memset(line, 0, sizeof line);
    return rv ? 2 : 0;
}
