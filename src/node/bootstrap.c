/* cv_bootstrap_decide (bootstrap.h): two nodes started from flags at once must not make two clusters.
 *
 * Happy path: one txn on etcd: if neither <prefix>/bootstrap nor <prefix>/leader exists, put
 * <prefix>/bootstrap = our id (no lease: it marks the cluster for good). Succeeded: we create the cluster
 * (raft bootstrapped with us as its only member; the others join us). Failed: the key holds our id (we won
 * at an earlier start: our raft log exists, bootstrapping again is a no-op) -> first as well; another id, or
 * no key but a leader key (a cluster started from a config) -> join. Failure modes: etcd unreachable or
 * erroring -> logged once, asked again every 500 ms (the node does not start before it knows: creating a
 * second cluster is worse than waiting). Known limit: a winner whose data directory was lost bootstraps a
 * new cluster under the same key (delete <prefix>/bootstrap by hand first). */
#include "node/bootstrap.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog/types.h"
#include "cverse/error.h"
#include "discovery/etcd.h"
#include "util/log.h"

#define RETRY_MS 500u

struct boot {
    struct cv_etcd *etcd;
    uv_timer_t timer;
    char key[300], leader[300], id[CV_NODE_ID_MAX];
    bool decided, first, warned;
    int open;
    cv_bootstrap_cb cb;
    void *data;
};

static void boot__closed_one(struct boot *b)
{
    if (--b->open > 0) return;
    cv_bootstrap_cb cb = b->cb;
    void *data = b->data;
    bool first = b->first;
    free(b);
    cb(data, first);
}

static void boot__etcd_closed(void *data)
{
    boot__closed_one(data);
}

static void boot__timer_closed(uv_handle_t *h)
{
    boot__closed_one(h->data);
}

static void boot__ask(struct boot *b);

/* Decided (closes everything, then the callback), or ask again. */
static void boot__tick(uv_timer_t *t)
{
    struct boot *b = t->data;
    if (!b->decided) {
        boot__ask(b);
        return;
    }
    b->open = 2;
    cv_etcd_close(b->etcd, boot__etcd_closed, b);
    uv_close((uv_handle_t *)&b->timer, boot__timer_closed);
}

static void boot__answered(void *data, int err, const struct cv_etcd_reply *r)
{
    struct boot *b = data;
    if (err == CV_ECANCELED) return;
    if (err || !r) {
        if (!b->warned) CV_WARN("bootstrap: etcd did not answer (%s); asking again every %u ms", cv_strerror(err), RETRY_MS);
        b->warned = true;
        uv_timer_start(&b->timer, boot__tick, RETRY_MS, 0);
        return;
    }
    const char *holder = r->n_kvs ? r->kvs[0].value : NULL;
    b->first = r->succeeded || (holder && !strcmp(holder, b->id));
    b->decided = true;
    if (b->first)
        CV_INFO("bootstrap: %s (%s): this node creates the cluster", b->key, r->succeeded ? "claimed now" : "ours already");
    else
        CV_INFO("bootstrap: the cluster exists (%s%s): joining it", holder ? "created by " : "a leader is in etcd",
                holder ? holder : "");
    uv_timer_start(&b->timer, boot__tick, 0, 0); /* closing the client from its own callback: not here */
}

static void boot__ask(struct boot *b)
{
    char *body = cv_etcd_enc_create_unless(b->key, b->id, b->leader);
    if (!body || cv_etcd_call(b->etcd, "/v3/kv/txn", body, boot__answered, b))
        uv_timer_start(&b->timer, boot__tick, RETRY_MS, 0);
}

int cv_bootstrap_decide(uv_loop_t *loop, const struct cv_config *cfg, const char *id, cv_bootstrap_cb cb, void *data)
{
    if (!cfg->n_etcd_endpoints) return CV_EINVAL;
    struct boot *b = calloc(1, sizeof *b);
    if (!b) return CV_ENOMEM;
    snprintf(b->key, sizeof b->key, "%s/bootstrap", cfg->etcd_prefix);
    snprintf(b->leader, sizeof b->leader, "%s/leader", cfg->etcd_prefix);
    snprintf(b->id, sizeof b->id, "%s", id);
    b->cb = cb;
    b->data = data;
    struct cv_etcd_opts eo = {.loop = loop, .endpoints = (const char *const *)cfg->etcd_endpoints,
                              .n_endpoints = cfg->n_etcd_endpoints};
    int rv = cv_etcd_init(&eo, &b->etcd);
    if (rv) {
        free(b);
        return rv;
    }
    uv_timer_init(loop, &b->timer);
    b->timer.data = b;
    boot__ask(b);
    return 0;
}
