/* The CLI's indented JSON output (two spaces per level, strings and numbers verbatim). */
#ifndef CV_CLI_JSONOUT_H
#define CV_CLI_JSONOUT_H

/* Prints JSON text s (valid JSON; borrowed) to stdout indented, with a final newline. */
void cv_cli_print_indented(const char *s);

#endif
