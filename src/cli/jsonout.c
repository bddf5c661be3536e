/* The CLI's indented JSON output: `cverse call` prints the gate's answer re-indented token by token, so
 * numbers and strings are printed exactly as the gate sent them (no parse-and-dump round trip, which
 * would rewrite doubles). Input is JSON text known to be valid; output goes to stdout. */
#include "cli/jsonout.h"

#include <stdio.h>

static void put_indent(int depth)
{
    putchar('\n');
    for (int i = 0; i < depth; i++) fputs("  ", stdout);
}

/* Re-indents JSON text (known to be valid) token by token: strings and numbers are copied verbatim, so
 * nothing is re-formatted (a parse-and-dump round trip would rewrite doubles). */
void cv_cli_print_indented(const char *s)
{
    int depth = 0;
    for (const char *p = s; *p; p++) {
        if (*p == '"') {
            const char *q = p + 1;
            while (*q && *q != '"') q += (q[0] == '\\' && q[1]) ? 2 : 1;
            fwrite(p, 1, (size_t)(q - p) + (*q != '\0'), stdout);
            p = *q ? q : q - 1;
            continue;
        }
        switch (*p) {
        case '{':
        case '[': {
            const char *q = p + 1;
            while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r') q++;
            putchar(*p);
            if (*q == '}' || *q == ']') { /* empty: keep "{}" together */
                putchar(*q);
                p = q;
            } else {
                put_indent(++depth);
            }
            break;
        }
        case '}':
        case ']':
            put_indent(--depth);
            putchar(*p);
            break;
        case ',':
            putchar(',');
            put_indent(depth);
            break;
        case ':': fputs(": ", stdout); break;
        case ' ':
        case '\t':
        case '\n':
        case '\r': break;
        default: putchar(*p);
        }
    }
    putchar('\n');
}
