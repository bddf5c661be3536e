/* Helpers shared by the object host's parts (incall, outcall, ops, autoload, handoff, mapfeed).
 *
 * Happy path: the settle protocol of the host's close: each part holds the host (cv_hctx_hold) while it
 * owes a callback into it, and counts its handles as parts while they close; every release and closed
 * part asks the host to settle, and the host frees itself once it is closing with neither left. Shard
 * ownership and an id's owner are read from the local catalog; objects created by an applied
 * CreateObject are activated here, as new ones only by the entry that created them.
 *
 * Failure modes: none returned from here; no I/O of its own. An id that cannot be placed is CV_EINVAL, a
 * pin to a node the config lacks CV_ENOTFOUND (cv_hctx_owner); an activation the runtime refuses is
 * logged (a redirect quietly: the shard moved meanwhile), a catalog lookup that fails skips the
 * activation (the object was deleted or replaced since). */
#include "node/hctx.h"

#include <stdio.h>
#include <string.h>

#include "cverse/error.h"
#include "util/log.h"

void cv_hctx_release(struct cv_hctx *x)
{
    x->ops--;
    x->settle(x);
}

void cv_hctx_part_closed(struct cv_hctx *x)
{
    x->parts--;
    x->settle(x);
}

void cv_hctx_handle_closed(uv_handle_t *h)
{
    struct cv_hctx **x = h->data;
    cv_hctx_part_closed(*x);
}

bool cv_hctx_serving(const struct cv_hctx *x)
{
    return !x->fenced && (!x->serve_until || cv_mono_ms() < x->serve_until(x->serve_data));
}

bool cv_hctx_owns(void *data, uint32_t shard)
{
    struct cv_hctx *x = data;
    const char *o = cv_catalog_shard_owner(x->cat, shard, NULL);
    return o && strcmp(o, x->self) == 0;
}

int cv_hctx_owner(const struct cv_hctx *x, const char *id, struct cv_placement *p, char *owner)
{
    if (cv_placement_parse(id, x->cfg->shards, p) != 0) return CV_EINVAL;
    if (p->kind == CV_PLACE_NODE) {
        if (p->node_len >= CV_NODE_ID_MAX) return CV_ENOTFOUND;
        memcpy(owner, p->node, p->node_len);
        owner[p->node_len] = '\0';
        return cv_config_node(x->cfg, owner) ? 0 : CV_ENOTFOUND;
    }
    const char *o = cv_catalog_shard_owner(x->cat, p->shard, NULL);
    snprintf(owner, CV_NODE_ID_MAX, "%s", o ? o : "");
    return 0;
}

void cv_hctx_timer_again(uv_timer_t *t, uv_timer_cb cb, uint64_t ms)
{
    if (!uv_is_active((uv_handle_t *)t)) uv_timer_start(t, cb, ms, 0);
}

void cv_hctx_ensure_active(struct cv_hctx *x, const char *type, const char *id, bool created)
{
    struct cv_object_info info;
    if (!x->started || x->closing || !cv_hctx_serving(x) || cv_runtime_lookup(x->rt, id, &info) == 0) return;
    int rv = cv_runtime_activate(x->rt, type, id, created);
    if (rv == 0) CV_DEBUG("activated %s (%s)%s", id, type, created ? ", new" : "");
    else if (rv != CV_EREDIRECT) CV_WARN("cannot activate %s (%s): %s", id, type, cv_strerror(rv));
}

/* A duplicate CreateObject of an existing object (a proposer whose catalog lagged) reports 0 too, but the
 * catalog keeps the first entry's index, so the `created` hook never runs twice. Called both from the
 * proposer's callback and from the apply observer, always right after the entry's commit, so the catalog
 * is at `index`. */
void cv_hctx_activate_applied(struct cv_hctx *x, const char *type, const char *id, uint64_t index)
{
    char have[CV_HOST_TYPE_MAX];
    uint64_t created_index = 0;
    int rv = cv_catalog_object_get_ex(x->cat, id, have, sizeof have, NULL, &created_index);
    if (rv != 0 || strcmp(have, type) != 0) { /* deleted or replaced since: nothing to activate */
        if (rv != CV_ENOTFOUND) CV_DEBUG("not activating %s (%s): %s", id, type, rv ? cv_strerror(rv) : have);
        return;
    }
    cv_hctx_ensure_active(x, type, id, created_index == index);
}
