/* cverse remove-node NODE: drains NODE (an operator's drain: the leader moves its shards to the others
 * through the usual two-phase moves, calls keep being served), then asks for its removal until no shard
 * names it any more (the node answers FAILED_PRECONDITION meanwhile), within --timeout. The catalog then
 * marks it removed, the leader takes it out of the raft configuration, and its process stops (a clean
 * stop: its etcd registration goes with it). Both requests go to any node's HTTP API (--node-http, else
 * $CVERSE_NODE_HTTP, else localhost:48001). Failure modes: cannot connect (exit 3), an unknown node or
 * another refusal (exit 1, the node's error), the shards still not moved at the timeout (exit 1). */
#include "cli/remove.h"

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/nodehttp.h"
#include "cverse/error.h"
#include "util/log.h"

#define REMOVE_HELP                                                                                   \
    "Usage: cverse remove-node " CV_CLI_REMOVE_ARGS "\n"                                               \
    "  --node-http HOST:PORT  any node's HTTP API (http_addr); default $CVERSE_NODE_HTTP, then\n"     \
    "                    localhost:48001\n"                                                           \
    "  --timeout MS      how long the shards may take to move away (default 60000)\n"                 \
    "NODE is drained first (its shards move to the others), then removed: it leaves the raft group,\n" \
    "its process stops, and its id cannot register again.\n"                                         \
    "Exit codes: 0 removed, 1 refused or timed out, 2 usage error, 3 cannot connect to the node.\n"

/* POSTs {"node":NODE[,"drain":true]} to path; the HTTP status, or -1 (message printed) when the node
 * cannot be reached. resp gets the body. */
static int remove__post(const char *addr, const char *path, const char *node, bool drain, char *resp, size_t len)
{
    json_t *req = drain ? json_pack("{s:s, s:b}", "node", node, "drain", 1) : json_pack("{s:s}", "node", node);
    char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    int status = 0, rv = body ? cv_cli_http_post(addr, path, body, 10000, &status, resp, len) : CV_ENOMEM;
    free(body);
    if (rv == 0) return status;
    fprintf(stderr, "cverse: cannot reach the node at %s: %s\n", addr,
            rv == CV_EUNAVAIL ? strerror(errno) : cv_strerror(rv));
    return -1;
}

/* The node's error answer on stderr; its code into code (may be ""). */
static void remove__error(const char *resp, char *code, size_t len)
{
    json_t *j = json_loads(resp, 0, NULL);
    const char *c = json_string_value(json_object_get(j, "code")), *m = json_string_value(json_object_get(j, "error"));
    snprintf(code, len, "%s", c ? c : "");
    if (strcmp(code, "FAILED_PRECONDITION") != 0) fprintf(stderr, "cverse: %s: %s\n", c ? c : "HTTP", m ? m : resp);
    json_decref(j);
}

int cv_cli_remove_node(const struct command *cmd, int argc, char **argv)
{
    (void)cmd;
    const char *addr = getenv("CVERSE_NODE_HTTP"), *node = NULL;
    unsigned long timeout = 60000;
    if (!addr || !*addr) addr = "localhost:48001";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(REMOVE_HELP, stdout);
            return 0;
        } else if (!strcmp(argv[i], "--node-http") && i + 1 < argc) {
            addr = argv[++i];
        } else if (!strcmp(argv[i], "--timeout") && i + 1 < argc) {
            char *end;
            timeout = strtoul(argv[++i], &end, 10);
            if (*end || !timeout) node = NULL, i = argc + 1;
        } else if (argv[i][0] != '-' && !node) {
            node = argv[i];
        } else {
            node = NULL;
            break;
        }
    }
    if (!node || !*node) {
        fputs(REMOVE_HELP, stderr);
        return 2;
    }
    char resp[4096], code[64];
    int st = remove__post(addr, "/v1/admin/nodes/drain", node, true, resp, sizeof resp);
    if (st < 0) return 3;
    if (st != 200) {
        remove__error(resp, code, sizeof code);
        return 1;
    }
    printf("%s: draining; its shards move to other nodes\n", node);
    uint64_t deadline = cv_mono_ms() + timeout;
    for (;;) {
        if ((st = remove__post(addr, "/v1/admin/nodes/remove", node, false, resp, sizeof resp)) < 0) return 3;
        if (st == 200) break;
        remove__error(resp, code, sizeof code);
        if (strcmp(code, "FAILED_PRECONDITION") != 0 && strcmp(code, "UNAVAILABLE") != 0) return 1;
        if (cv_mono_ms() >= deadline) {
            fprintf(stderr, "cverse: %s still has shards after %lu ms; it stays drained (retry, or undo with "
                            "'cverse drain --undo %s')\n", node, timeout, node);
            return 1;
        }
        nanosleep(&(struct timespec){.tv_nsec = 200 * 1000 * 1000}, NULL); /* the leader moves shards meanwhile */
    }
    printf("%s: removed from the cluster\n", node);
    return fflush(stdout) ? 1 : 0;
}
