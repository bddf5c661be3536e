/* A pool of RPC clients to the other nodes of the cluster, by node id (or by the index of an initial
 * member): dialed on first use, kept up by the client's redialing, with each connection's up/down state.
 * Shared by a node's outgoing object calls and its proposal forwarding. */
#ifndef CV_NET_PEERS_H
#define CV_NET_PEERS_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "net/rpc.h"

struct cv_peers;

struct cv_peers_opts {
    uv_loop_t *loop;           /* borrowed, valid until the close callback ran */
    const char *const *addrs;  /* n "host:port" addresses of the initial members, by node index; copied
                                * ("" = no such node) */
    const char *const *ids;    /* their n node ids (copied), or NULL: then only the index API finds them */
    size_t n;
    size_t self;               /* the index of this node (never dialed); >= n if none */
    const char *self_id;       /* this node's id (never dialed by id); copied; may be NULL */
    /* The address of a node that is not among the initial ones (a member that joined later): e.g. its
     * catalog record's. NULL or "" = not known yet (asked again at the next use). May be NULL. The
     * result is read at once (copied). */
    const char *(*resolve)(void *data, const char *id);
    void *resolve_data;
    unsigned reconnect_ms;     /* 0 = 50 */
};

/* Allocates the pool; nothing is dialed yet. *out is freed by cv_peers_close. CV_ENOMEM. */
int cv_peers_init(const struct cv_peers_opts *opts, struct cv_peers **out);
/* The client of node i, dialing it (cv_rpc_client_connect) on first use. Calls on it wait for the
 * connection until their deadline. NULL for self, an index out of range, an empty address, while
 * closing or when the client cannot be created. Borrowed: valid until the pool closes. */
struct cv_rpc_client *cv_peers_client(struct cv_peers *p, size_t i);
/* The client of node i only if its connection is up now (dials it on first use, as above). */
struct cv_rpc_client *cv_peers_client_up(struct cv_peers *p, size_t i);
/* Whether the connection to node i is up. */
bool cv_peers_up(const struct cv_peers *p, size_t i);
/* The client of the node with this id: an initial member's, else one added with the address resolve
 * gives (kept for the pool's life: a node id keeps its address). NULL for self, an unknown id, while
 * closing or when the client cannot be created. Borrowed: valid until the pool closes. */
struct cv_rpc_client *cv_peers_by_id(struct cv_peers *p, const char *id);
/* cv_peers_by_id only if its connection is up now. */
struct cv_rpc_client *cv_peers_by_id_up(struct cv_peers *p, const char *id);
/* Closes every client: their pending calls fail with CV_ECANCELED. done(data) (may be NULL) runs once
 * all of them closed and p was freed. */
void cv_peers_close(struct cv_peers *p, void (*done)(void *data), void *data);

#endif
