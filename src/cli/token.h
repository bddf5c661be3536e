/* The CLI's gate token: --token-file FILE, else $CVERSE_TOKEN_FILE, handed to the client library. */
#ifndef CV_CLI_TOKEN_H
#define CV_CLI_TOKEN_H

#include <cverse/client.h>

/* Reads the token (the file's first line, blanks trimmed) of file (NULL: $CVERSE_TOKEN_FILE; neither:
 * no token) and sets it on c. 0, or 2 (a usage error: unreadable or empty file) with a message on stderr. */
int cv_cli_token(cv_client *c, const char *file);

#endif
