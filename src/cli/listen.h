/* The CLI's `cverse listen`: registers with a gate as a push client and prints what objects push to it. */
#ifndef CV_CLI_LISTEN_H
#define CV_CLI_LISTEN_H

struct command;

#define CV_CLI_LISTEN_ARGS "[--gate HOST:PORT] [--count N] [--timeout MS]"
#define CV_CLI_LISTEN_SUMMARY "register as a push client and print pushed messages, one JSON per line"
#define CV_CLI_LISTEN_HELP                                                                          \
    "  --gate HOST:PORT  the gate's native address (grpc_addr); default $CVERSE_GATE, then\n"        \
    "                    localhost:47101\n"                                                          \
    "  --count N         exit 0 after N messages (default: run until interrupted)\n"                \
    "  --timeout MS      exit 1 when no message came for MS (default: wait forever)\n"               \
    "The first line is {\"clientId\":\"<gate>/<unique>\"}: objects push to that id (docs/push.md).\n"  \
    "Then one line per message: {\"type\":\"<message name>\",\"payload\":<proto3 JSON>}, preceded by\n" \
    "{\"dropped\":N} when N messages were lost before it.\n"                                           \
    "Exit codes: 0 ok, 1 the stream failed or timed out, 2 usage error, 3 cannot connect to the gate.\n"

/* The command (cli.c's table): argv[0] is "listen". */
int cv_cli_listen(const struct command *cmd, int argc, char **argv);

#endif
