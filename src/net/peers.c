/* The peer pool: one cv_rpc_client per other node, created on first use and dialed at once
 * (cv_rpc_client_connect), so the up/down state is known before the first call needs it.
 *
 * Happy path: cv_peers_client(i) or cv_peers_by_id(id) creates that node's client and dials; on_state
 * keeps `up` current; the client redials every reconnect_ms after a loss. The initial members (the
 * config's nodes) are known from the start; a node that joined later is added on first use with the
 * address the resolver gives (its catalog record). Peers are allocated one by one, so that a client's
 * callback data stays valid while the table grows. Failure modes: a client that cannot be created (bad
 * address, out of memory) or an id nobody can resolve yet gives NULL and is tried again at the next use;
 * closing fails pending calls with CV_ECANCELED (cv_rpc_client_close) and frees the pool once every
 * client reported closed. */
#include "net/peers.h"

#include <stdlib.h>
#include <string.h>

#include "auth/guard.h"
#include "cverse/error.h"
#include "util/buf.h"

struct peer {
    struct cv_peers *pool;
    char *id;   /* "" for an initial member given without ids */
    char *addr;
    struct cv_rpc_client *cli;
    bool up;
};

struct cv_peers {
    uv_loop_t *loop;
    struct peer **peers;
    size_t n, cap, self;
    char *self_id;
    const char *(*resolve)(void *data, const char *id);
    void *resolve_data;
    unsigned reconnect_ms;
    bool closing;
    size_t open; /* clients still closing, plus one while close runs */
    void (*done)(void *data);
    void *done_data;
};

static void peers__free(struct cv_peers *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->peers[i]->addr);
        free(p->peers[i]->id);
        free(p->peers[i]);
    }
    free(p->peers);
    free(p->self_id);
    free(p);
}

/* Appends a peer (not dialed). */
static int peers__add(struct cv_peers *p, const char *id, const char *addr)
{
    int rv = cv_array_grow((void **)&p->peers, &p->cap, p->n + 1, sizeof *p->peers);
    if (rv) return rv;
    struct peer *pe = calloc(1, sizeof *pe);
    if (!pe) return CV_ENOMEM;
    pe->pool = p;
    pe->id = strdup(id ? id : "");
    pe->addr = strdup(addr ? addr : "");
    if (!pe->id || !pe->addr) {
        free(pe->id);
        free(pe->addr);
        free(pe);
        return CV_ENOMEM;
    }
    p->peers[p->n++] = pe;
    return 0;
}

int cv_peers_init(const struct cv_peers_opts *opts, struct cv_peers **out)
{
    struct cv_peers *p = calloc(1, sizeof *p);
    if (!p) return CV_ENOMEM;
    p->loop = opts->loop;
    p->self = opts->self;
    p->resolve = opts->resolve;
    p->resolve_data = opts->resolve_data;
    p->reconnect_ms = opts->reconnect_ms ? opts->reconnect_ms : 50;
    if (!(p->self_id = strdup(opts->self_id ? opts->self_id : ""))) goto err_after_p;
    for (size_t i = 0; i < opts->n; i++)
        if (peers__add(p, opts->ids ? opts->ids[i] : NULL, opts->addrs[i])) goto err_after_p;
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

static struct cv_rpc_client *peers__dial(struct cv_peers *p, struct peer *pe)
{
    if (!pe->cli && pe->addr[0]) {
        struct cv_rpc_client_opts o = {
            .addr = pe->addr, .reconnect_ms = p->reconnect_ms, .on_state = peers__state, .data = pe,
            .guard = cv_guard_cluster()};
        if (cv_rpc_client_init(p->loop, &o, &pe->cli)) return pe->cli = NULL;
        cv_rpc_client_connect(pe->cli);
    }
    return pe->cli;
}

struct cv_rpc_client *cv_peers_client(struct cv_peers *p, size_t i)
{
    if (p->closing || i >= p->n || i == p->self) return NULL;
    return peers__dial(p, p->peers[i]);
}

struct cv_rpc_client *cv_peers_client_up(struct cv_peers *p, size_t i)
{
    struct cv_rpc_client *cli = cv_peers_client(p, i);
    return cli && p->peers[i]->up ? cli : NULL;
}

bool cv_peers_up(const struct cv_peers *p, size_t i)
{
    return i < p->n && p->peers[i]->up;
}

/* The peer with this id, added with the resolver's address if new; NULL for self or unknown. */
static struct peer *peers__find(struct cv_peers *p, const char *id)
{
    if (p->closing || !id || !id[0] || !strcmp(id, p->self_id)) return NULL;
    for (size_t i = 0; i < p->n; i++)
        if (!strcmp(p->peers[i]->id, id)) return i == p->self ? NULL : p->peers[i];
    const char *addr = p->resolve ? p->resolve(p->resolve_data, id) : NULL;
    if (!addr || !addr[0] || peers__add(p, id, addr)) return NULL;
    return p->peers[p->n - 1];
}

struct cv_rpc_client *cv_peers_by_id(struct cv_peers *p, const char *id)
{
    struct peer *pe = peers__find(p, id);
    return pe ? peers__dial(p, pe) : NULL;
}

struct cv_rpc_client *cv_peers_by_id_up(struct cv_peers *p, const char *id)
{
    struct peer *pe = peers__find(p, id);
    struct cv_rpc_client *cli = pe ? peers__dial(p, pe) : NULL;
    return cli && pe->up ? cli : NULL;
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
        if (!p->peers[i]->cli) continue;
        p->open++;
        cv_rpc_client_close(p->peers[i]->cli, peers__closed);
    }
    peers__settle(p);
}
