/* Joining a running cluster: the "cluster.join" RPC on the members (the raft leader decides, the others
 * relay to it) and the joining node's side (asks a member until the cluster has added it). */
#ifndef CV_NODE_JOIN_H
#define CV_NODE_JOIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "catalog/catalog.h"
#include "config/config.h"
#include "consensus/consensus.h"
#include "net/rpc.h"

struct cv_peers;

/* ---- member side */

/* What a member needs to answer cluster.join; borrowed, valid until the node's loop ran empty (answers
 * may come later: a proposal's or a relayed call's callback, which the consensus and the peer pool fire
 * exactly once, with CV_ECANCELED when they close). */
struct cv_join_member {
    const struct cv_config *cfg;
    struct cv_catalog *catalog;
    struct cv_consensus *consensus;
    struct cv_peers *peers;
    /* A node was added to the raft configuration (no applied entry says so): the leader's membership
     * duty should look now. May be NULL. */
    void (*added)(void *data);
    void *data;
};

/* Handles "cluster.join" (body: a catalog NodeInfo with the joining node's id, addresses and raft id).
 * On the leader: records the node (CmdAddNode) if the catalog has no record of that id, then adds it to
 * the raft configuration as a spare (the leader's membership duty makes it a standby, which catches up)
 * and answers 0; a node that is a member already is answered 0 at once, so asking again is harmless.
 * CV_EEXIST: the id belongs to another node (another raft id, or a node of the leader's config). Other
 * nodes relay the request to the leader; without one, CV_EUNAVAIL. Errors other than CV_EEXIST are worth
 * asking again (CV_EBUSY while another membership change runs). */
void cv_join_handle(const struct cv_join_member *m, struct cv_rpc_conn *conn, uint64_t id, const uint8_t *body,
                    size_t len);

/* ---- joining side */

struct cv_joiner;

struct cv_joiner_opts {
    uv_loop_t *loop;                    /* borrowed, valid until the close callback ran */
    const char *join_addr;              /* a member's native address "host:port"; NULL: etcd's registrations */
    const char *const *etcd_endpoints;  /* with join_addr NULL: copied */
    size_t n_etcd_endpoints;
    const char *etcd_prefix;            /* copied */
    const struct cv_node_cfg *self;     /* borrowed: this node's addresses */
    uint64_t raft_id;                   /* this node's raft id */
    /* Polled before each attempt: true once this node is in (its catalog holds its record and it knows a
     * leader): asking stops. */
    bool (*joined)(void *data);
    /* The cluster refused for good (CV_EEXIST: the id is taken); msg says why. Asking stops. */
    void (*refused)(void *data, const char *msg);
    void *data;
};

/* Starts asking at once, then every 500 ms while not joined (one request at a time, each to the next
 * member when several are known). 0, CV_EINVAL, CV_ENOMEM. */
int cv_joiner_start(const struct cv_joiner_opts *opts, struct cv_joiner **out);
/* Stops asking; cb (may be NULL) runs once everything closed and j was freed. */
void cv_joiner_close(struct cv_joiner *j, void (*cb)(void *data), void *data);

#endif
