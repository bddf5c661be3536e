/* LD_PRELOAD shim for test_node_exit: raft_bootstrap fails with RAFT_IOERR, as a full or read-only disk
 * would make it fail, so that a node's start-up failure path runs in a real process. */
#include <raft.h>

int raft_bootstrap(struct raft *r, const struct raft_configuration *conf)
{
    (void)r;
    (void)conf;
    return RAFT_IOERR;
}
