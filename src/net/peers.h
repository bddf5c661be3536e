/* A pool of RPC clients to the other nodes of the cluster, by node index: dialed on first use, kept up
 * by the client's redialing, with each connection's up/down state. Shared by a node's outgoing object
 * calls and its proposal forwarding. */
#ifndef CV_NET_PEERS_H
#define CV_NET_PEERS_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "net/rpc.h"

struct cv_peers;

struct cv_peers_opts {
    uv_loop_t *loop;           /* borrowed, valid until the close callback ran */
    const char *const *addrs;  /* n "host:port" addresses, by node index; copied ("" = no such node) */
    size_t n;
    size_t self;               /* the index of this node (never dialed); >= n if none */
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
/* Closes every client: their pending calls fail with CV_ECANCELED. done(data) (may be NULL) runs once
 * all of them closed and p was freed. */
void cv_peers_close(struct cv_peers *p, void (*done)(void *data), void *data);

#endif
