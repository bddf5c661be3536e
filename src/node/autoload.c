/* Auto-load objects.
 *
 * Happy path: once the node is first ready, the per-node items and the singletons pinned here are
 * queued, and every shard we own queues its per-shard items and the singletons placed on it; later
 * gains (after each applied AssignShards) queue theirs. The queue is worked off from a zero timer: an
 * item of a shard no longer ours is dropped, an object the catalog has is activated, else a CreateObject
 * is proposed, at most 256 in flight (the consensus batches what arrives in one loop iteration into one
 * entry). /ready waits for the queue to drain (cv_autoload_pending).
 * Failure modes: a proposal that fails (not applied, or unknown outcome) queues the item again (creates
 * are idempotent); a proposal refused at once stops the pump until the next tick; an object that exists
 * with another type is logged and skipped; an item that cannot be queued (out of memory) stays pending
 * and is planned again at the next tick (cv_autoload_tick), so /ready never says ready without it. */
#include "node/autoload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"
#include "util/buf.h"
#include "util/log.h"

struct al_prop {
    struct cv_autoload *al;
    struct cv_al_item it;
};

size_t cv_autoload_pending(const struct cv_autoload *h)
{
    return h->tail - h->head + h->inflight + h->lost;
}

/* Queues an item. Out of memory: the item is counted as lost (so it stays pending and /ready waits) and
 * its origin is marked to be planned again at the next tick (cv_autoload_tick): its shard counts as not
 * yet gained, or the per-node items are queued again. Re-planning may queue some items twice: harmless,
 * creates are idempotent and an object the catalog has is only activated. */
static void autoload__push(struct cv_autoload *h, uint32_t entry, uint32_t shard)
{
    if (h->tail == h->cap && h->head > 0) { /* slide the live part down before growing */
        memmove(h->q, h->q + h->head, (h->tail - h->head) * sizeof *h->q);
        h->tail -= h->head;
        h->head = 0;
    }
    int rv = cv_array_grow((void **)&h->q, &h->cap, h->tail + 1, sizeof *h->q);
    if (rv) {
        if (h->lost++ == 0)
            CV_ERROR("auto-load entry %u (shard %u) not queued: %s; planned again later", entry, shard,
                     cv_strerror(rv));
        if (shard == CV_AUTOLOAD_NODE) h->lost_node = true;
        else h->owned[shard] = 0;
        cv_hctx_wake(h->x); /* planned again from the tick */
        return;
    }
    h->q[h->tail++] = (struct cv_al_item){entry, shard};
}

void cv_autoload_id(const struct cv_config *cfg, const char *self, struct cv_al_item it, char *buf, size_t len)
{
    const struct cv_autoload_cfg *e = &cfg->autoload[it.entry];
    if (e->per_shard) snprintf(buf, len, "shard#%u/%s", it.shard, e->id);
    else if (e->per_node) snprintf(buf, len, "%s/%s", self, e->id);
    else snprintf(buf, len, "%s", e->id);
}

static void autoload__check_done(struct cv_autoload *h)
{
    if (h->reported || !h->x->started || cv_autoload_pending(h) > 0) return;
    h->reported = true;
    CV_INFO("auto-load objects of this node are created (%zu objects active, %llu ms after ready)",
            cv_runtime_count(h->x->rt), (unsigned long long)(cv_mono_ms() - h->started_ms));
}


static void autoload__created(void *data, int status, uint64_t index)
{
    struct al_prop *ap = data;
    struct cv_autoload *h = ap->al;
    struct cv_hctx *x = h->x;
    const struct cv_autoload_cfg *e = &x->cfg->autoload[ap->it.entry];
    h->inflight--;
    if (!x->closing) {
        char id[CV_HOST_ID_MAX];
        cv_autoload_id(x->cfg, x->self, ap->it, id, sizeof id);
        if (status == 0) cv_hctx_activate_applied(x, e->type, id, index);
        else if (status == CV_EEXIST)
            CV_ERROR("auto-load object %s: exists with a type other than %s", id, e->type);
        else autoload__push(h, ap->it.entry, ap->it.shard); /* not applied (or unknown): again, idempotent */
        cv_autoload_schedule(h);
        autoload__check_done(h);
    }
    free(ap);
    cv_hctx_release(x);
}

/* One item: drop it if the shard is no longer ours, activate it if the catalog has it, else propose.
 * Returns false if the consensus refused the proposal (the item is back in the queue). */
static bool autoload__process(struct cv_autoload *h, struct cv_al_item it)
{
    struct cv_hctx *x = h->x;
    const struct cv_autoload_cfg *e = &x->cfg->autoload[it.entry];
    char id[CV_HOST_ID_MAX], have[CV_HOST_TYPE_MAX];
    if (it.shard != CV_AUTOLOAD_NODE && !cv_hctx_owns(x, it.shard)) return true;
    cv_autoload_id(x->cfg, x->self, it, id, sizeof id);
    int rv = cv_catalog_object_get(x->cat, id, have, sizeof have, NULL);
    if (rv == 0) {
        if (strcmp(have, e->type) != 0) CV_ERROR("auto-load object %s: the catalog has it as a %s", id, have);
        else cv_hctx_ensure_active(x, e->type, id, false);
        return true;
    }
    if (rv != CV_ENOTFOUND) {
        CV_ERROR("auto-load object %s: catalog lookup failed: %s", id, cv_strerror(rv));
        return true;
    }
    struct al_prop *ap = malloc(sizeof *ap);
    Cverse__Catalog__Command cmd = CVERSE__CATALOG__COMMAND__INIT;
    Cverse__Catalog__CmdCreateObject co = CVERSE__CATALOG__CMD_CREATE_OBJECT__INIT;
    co.type = e->type;
    co.id = id;
    cmd.cmd_case = CVERSE__CATALOG__COMMAND__CMD_CREATE_OBJECT;
    cmd.create_object = &co;
    rv = ap ? cv_consensus_propose(x->cons, &cmd, CV_HOST_PROPOSE_TIMEOUT_MS, autoload__created, ap) : CV_ENOMEM;
    if (rv) {
        free(ap);
        autoload__push(h, it.entry, it.shard);
        CV_WARN("auto-load object %s: cannot propose: %s", id, cv_strerror(rv));
        return false;
    }
    ap->al = h;
    ap->it = it;
    h->inflight++;
    cv_hctx_hold(x);
    return true;
}

static void autoload__pump(uv_timer_t *t)
{
    struct cv_autoload *h = t->data;
    if (h->x->closing) return;
    uint64_t t0 = cv_mono_ns();
    unsigned n = 0;
    while (h->inflight < h->max && h->head < h->tail) {
        struct cv_al_item it = h->q[h->head++];
        n++;
        if (!autoload__process(h, it)) { /* retried from the tick */
            cv_hctx_wake(h->x);
            break;
        }
    }
    if (n > 32)
        CV_DEBUG("auto-load: %u items in %.2f ms, %zu in flight, %zu queued", n,
                 (double)(cv_mono_ns() - t0) / 1e6, h->inflight, h->tail - h->head);
    autoload__check_done(h);
}

void cv_autoload_schedule(struct cv_autoload *h)
{
    if (!h->x->closing && h->head < h->tail && h->inflight < h->max) cv_hctx_timer_again(&h->timer, autoload__pump, 0);
}

/* Lost shards' objects were deactivated by cv_runtime_deactivate_unowned (host.c). */
void cv_autoload_reconcile(struct cv_autoload *h)
{
    const struct cv_config *cfg = h->x->cfg;
    uint32_t gained = 0, lost = 0;
    size_t queued = cv_autoload_pending(h);
    for (uint32_t s = 0; s < cfg->shards; s++) {
        bool own = cv_hctx_owns(h->x, s);
        if (own == (bool)h->owned[s]) continue;
        h->owned[s] = own;
        if (!own) {
            lost++;
            continue;
        }
        gained++;
        for (uint32_t e = 0; e < cfg->n_autoload; e++)
            if (h->entry_ok[e] && (cfg->autoload[e].per_shard || h->entry_shard[e] == s)) autoload__push(h, e, s);
    }
    if (gained || lost)
        CV_INFO("shards: gained %u, lost %u; %zu auto-load objects queued", gained, lost,
                cv_autoload_pending(h) - queued);
    cv_autoload_schedule(h);
}

/* The per-node items and the singletons pinned here. */
static void autoload__plan_node(struct cv_autoload *h)
{
    const struct cv_config *cfg = h->x->cfg;
    for (uint32_t e = 0; e < cfg->n_autoload; e++) {
        const struct cv_autoload_cfg *a = &cfg->autoload[e];
        struct cv_placement p;
        if (!h->entry_ok[e]) continue;
        if (a->per_node) autoload__push(h, e, CV_AUTOLOAD_NODE);
        else if (!a->per_shard && cv_placement_parse(a->id, cfg->shards, &p) == 0 &&
                 cv_placement_on_node(&p, h->x->self))
            autoload__push(h, e, CV_AUTOLOAD_NODE); /* a singleton pinned to this node */
    }
}

void cv_autoload_start(struct cv_autoload *h)
{
    const struct cv_config *cfg = h->x->cfg;
    h->started_ms = cv_mono_ms();
    autoload__plan_node(h);
    CV_INFO("node is ready: hosting objects (%zu auto-load entries)", cfg->n_autoload);
    cv_autoload_reconcile(h);
    autoload__check_done(h);
}

void cv_autoload_tick(struct cv_autoload *h)
{
    if (h->lost > 0 && h->x->started && !h->x->closing) {
        bool node = h->lost_node;
        CV_INFO("auto-load: planning %zu items again that could not be queued", h->lost);
        h->lost = 0; /* what fails again counts itself again */
        h->lost_node = false;
        if (node) autoload__plan_node(h);
        cv_autoload_reconcile(h); /* the shards whose items were lost count as gained again */
    }
    cv_autoload_schedule(h);
}

int cv_autoload_init(struct cv_autoload *al, struct cv_hctx *x, unsigned max)
{
    const struct cv_config *cfg = x->cfg;
    size_t n = cfg->n_autoload;
    *al = (struct cv_autoload){.x = x, .max = max ? max : CV_HOST_AUTOLOAD_INFLIGHT};
    al->entry_shard = calloc(n ? n : 1, sizeof *al->entry_shard);
    al->entry_ok = calloc(n ? n : 1, sizeof *al->entry_ok);
    al->owned = calloc(cfg->shards ? cfg->shards : 1, 1);
    if (!al->entry_shard || !al->entry_ok || !al->owned) return CV_ENOMEM;
    for (size_t e = 0; e < n; e++) {
        const struct cv_autoload_cfg *a = &cfg->autoload[e];
        struct cv_placement p;
        al->entry_ok[e] = cv_registry_type(x->reg, a->type) != NULL;
        if (!al->entry_ok[e]) CV_ERROR("auto-load object %s: unknown type %s (skipped)", a->id, a->type);
        al->entry_shard[e] = CV_AUTOLOAD_NODE;
        if (!a->per_shard && !a->per_node && cv_placement_parse(a->id, cfg->shards, &p) == 0 &&
            p.kind != CV_PLACE_NODE)
            al->entry_shard[e] = p.shard;
    }
    return 0;
}

void cv_autoload_init_timer(struct cv_autoload *al)
{
    uv_timer_init(al->x->loop, &al->timer);
    al->timer.data = al;
}

void cv_autoload_close(struct cv_autoload *al)
{
    al->x->parts++;
    uv_close((uv_handle_t *)&al->timer, cv_hctx_handle_closed);
}

void cv_autoload_free(struct cv_autoload *al)
{
    free(al->entry_shard);
    free(al->entry_ok);
    free(al->owned);
    free(al->q);
}

