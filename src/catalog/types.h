/* The catalog's value types shared by its public header and its parts (store, mirror): a node record. */
#ifndef CV_CATALOG_TYPES_H
#define CV_CATALOG_TYPES_H

#include <stdbool.h>
#include <stdint.h>

#define CV_NODE_ID_MAX 64

/* One node as the catalog knows it. Strings are NUL-terminated copies (owned by the struct). */
struct cv_catalog_node {
    char id[CV_NODE_ID_MAX];
    char grpc_addr[128], advertise_addr[128], http_addr[128], raft_addr[128];
    uint64_t raft_id;
    int role;            /* Cverse__Catalog__Role */
    bool alive;
    bool draining;       /* an operator drains it (DrainNode): it takes no shards */
    bool drain_shutdown; /* draining because its process stops (SIGTERM): cleared by its next process */
    bool removed;        /* removed for good (CmdRemoveNode): not alive, never registers again */
    uint64_t incarnation; /* 1 at the first registration; +1 each time a dead node registers or renews */
    uint64_t lease_expiry_ms;
    uint64_t lease_renewed_ms;
    uint32_t shards_owned;
};

#endif
