/* cverse node-get: one signed GET of a node's HTTP API, its body printed (for scripts and operators). */
#ifndef CV_CLI_NODEGET_H
#define CV_CLI_NODEGET_H

struct command;

/* The commands table's entry text (cli.c). */
#define CV_CLI_NODEGET_ARGS "[--node HOST:PORT] [--timeout MS] PATH | http://HOST:PORT/PATH"
#define CV_CLI_NODEGET_SUMMARY "GET a node's HTTP API (/v1/cluster, /v1/shards...), signed with the cluster secret"

/* argv[0] is "node-get". Exit codes: 0 a 2xx (or 304) answer, its body on stdout; 1 the node answered
 * another status (its error on stderr); 2 usage; 3 cannot connect. */
int cv_cli_node_get(const struct command *cmd, int argc, char **argv);

#endif
