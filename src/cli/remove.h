/* cverse remove-node: a member removed for good, its shards moved away first. */
#ifndef CV_CLI_REMOVE_H
#define CV_CLI_REMOVE_H

struct command;

/* The commands table's entry text (cli.c). */
#define CV_CLI_REMOVE_ARGS "[--node-http HOST:PORT] [--timeout MS] NODE"
#define CV_CLI_REMOVE_SUMMARY "remove a node for good: its shards move away first (drain), then it leaves raft"

/* argv[0] is "remove-node". Exit codes: 0 removed, 1 refused or timed out, 2 usage, 3 cannot connect. */
int cv_cli_remove_node(const struct command *cmd, int argc, char **argv);

#endif
