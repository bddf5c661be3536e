/* The peer pool: one cv_rpc_client per other node, created on first use and dialed at once
 * (cv_rpc_client_connect), so the up/down state is known before the first call needs it.
 *
 * Happy path: cv_peers_client(i) creates node i's client and dials; on_state keeps `up` current; the
 * client redials every reconnect_ms after a loss. Failure modes: a client that cannot be created
 * (bad address, out of memory) gives NULL and is tried again at the next use; closing fails pending
 * calls with CV_ECANCELED (cv_rpc_client_close) and frees the pool once every client reported closed. */
#include "net/peers.h"

#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"

struct peer {
    struct cv_peers *pool;
    char *addr;
    struct cv_rpc_client *cli;
    bool up;
};

struct cv_peers {
    uv_loop_t *loop;
    struct peer *peers;
    size_t n, self;
    unsigned reconnect_ms;
    bool closing;
    size_t open; /* clients still closing, plus one while close runs */
    void (*done)(void *data);
    void *done_data;
};

static void peers__free(struct cv_peers *p)
{
    for (size_t i = 0; i < p->n; i++) free(p->peers[i].addr);
    free(p->peers);
    free(p);
}

int cv_peers_init(const struct cv_peers_opts *opts, struct cv_peers **out)
{
    struct cv_peers *p = calloc(1, sizeof *p);
    if (!p) return CV_ENOMEM;
    p->loop = opts->loop;
    p->n = opts->n;
    p->self = opts->self;
    p->reconnect_ms = opts->reconnect_ms ? opts->reconnect_ms : 50;
    p->peers = calloc(opts->n ? opts->n : 1, sizeof *p->peers);
    if (!p->peers) goto err_after_p;
    for (size_t i = 0; i < opts->n; i++) {
        p->peers[i].pool = p;
        if (!(p->peers[i].addr = strdup(opts->addrs[i] ? opts->addrs[i] : ""))) goto err_after_p;
    }
    *out = p;
    return 0;
err_after_p:
    peers__free(p);
    return CV_ENOMEM;
}

static void peers__state(void *data, int connected)
{
    struct peer *pe = data;
    pe->up = connected;
}

struct cv_rpc_client *cv_peers_client(struct cv_peers *p, size_t i)
{
    if (p->closing || i >= p->n || i == p->self) return NULL;
    struct peer *pe = &p->peers[i];
    if (!pe->cli && pe->addr[0]) {
        struct cv_rpc_client_opts o = {
            .addr = pe->addr, .reconnect_ms = p->reconnect_ms, .on_state = peers__state, .data = pe};
        if (cv_rpc_client_init(p->loop, &o, &pe->cli)) return pe->cli = NULL;
        cv_rpc_client_connect(pe->cli);
    }
    return pe->cli;
}

struct cv_rpc_client *cv_peers_client_up(struct cv_peers *p, size_t i)
{
    struct cv_rpc_client *cli = cv_peers_client(p, i);
    return cli && p->peers[i].up ? cli : NULL;
}

bool cv_peers_up(const struct cv_peers *p, size_t i)
{
    return i < p->n && p->peers[i].up;
}

static void peers__settle(struct cv_peers *p)
{
    if (--p->open > 0) return;
    void (*done)(void *) = p->done;
    void *data = p->done_data;
    peers__free(p);
    if (done) done(data);
}

static void peers__closed(struct cv_rpc_client *cli)
{
    struct peer *pe = cv_rpc_client_data(cli);
    pe->cli = NULL;
    pe->up = false;
    peers__settle(pe->pool);
}

void cv_peers_close(struct cv_peers *p, void (*done)(void *data), void *data)
{
    if (p->closing) return;
    p->closing = true;
    p->done = done;
    p->done_data = data;
    p->open = 1; /* held until every close below was started: a client may report closed at once */
    for (size_t i = 0; i < p->n; i++) {
        if (!p->peers[i].cli) continue;
        p->open++;
        cv_rpc_client_close(p->peers[i].cli, peers__closed);
    }
    peers__settle(p);
}
