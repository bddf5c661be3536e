/* Shard handoff, phase 1 (docs/architecture.md): a shard the leader took from us is unassigned and
 * waits for us. Once the runtime holds none of its objects any more (calls in flight replied,
 * deactivated hooks ran, and a persisted object's last state save committed — the runtime keeps the
 * object until then, docs/durable-state.md: polled each tick), one ReleaseShards for all such shards is
 * proposed; only then may the leader give the shard to its new owner, which loads those states. This does not need the node to be started: a node that
 * never hosted (restarted) releases at once, or it could block its own readiness.
 * Failure modes: a failed proposal is retried after 100 ms while the catalog still says we have to
 * release (CV_ECONFLICT, a stale epoch, quietly). */
#include "node/handoff.h"

#include <stdlib.h>

#include "cverse/error.h"
#include "util/log.h"

/* The one place that asks the shard lifecycle (core/shard.h, through the catalog) what we owe. */
enum cv_handoff_decision cv_handoff_decide(const struct cv_catalog *cat, const char *self, uint32_t shard,
                                           size_t active, uint64_t *epoch)
{
    uint64_t e;
    if (!cv_catalog_shard_to_release(cat, shard, self, &e)) return CV_HANDOFF_NONE;
    if (active > 0) return CV_HANDOFF_WAIT;
    *epoch = e;
    return CV_HANDOFF_RELEASE;
}

int cv_handoff_init(struct cv_handoff *ho, struct cv_hctx *x)
{
    uint32_t n = x->cfg->shards ? x->cfg->shards : 1;
    *ho = (struct cv_handoff){.x = x, .scan = true};
    ho->shards = calloc(n, sizeof *ho->shards);
    ho->epochs = calloc(n, sizeof *ho->epochs);
    return ho->shards && ho->epochs ? 0 : CV_ENOMEM;
}

void cv_handoff_free(struct cv_handoff *ho)
{
    free(ho->shards);
    free(ho->epochs);
}

void cv_handoff_mark(struct cv_handoff *ho)
{
    ho->scan = true;
}

static void handoff__done(void *data, int status, uint64_t index)
{
    struct cv_handoff *ho = data;
    ho->inflight = false;
    ho->scan = true; /* success: the scan finds them released; failure: proposed again */
    if (status == 0) CV_DEBUG("release of shards applied at index %llu", (unsigned long long)index);
    else if (!ho->x->closing) {
        ho->retry_ms = cv_mono_ms() + CV_HANDOFF_RETRY_MS;
        if (status != CV_ECONFLICT) CV_WARN("releasing shards failed: %s; retrying", cv_strerror(status));
    }
    cv_hctx_wake(ho->x);
    cv_hctx_release(ho->x);
}

static void handoff__propose(struct cv_handoff *ho, uint32_t n)
{
    Cverse__Catalog__CmdReleaseShards rs = CVERSE__CATALOG__CMD_RELEASE_SHARDS__INIT;
    rs.node = (char *)ho->x->self;
    rs.n_shards = rs.n_epochs = n;
    rs.shards = ho->shards;
    rs.epochs = ho->epochs;
    Cverse__Catalog__Command cmd = CVERSE__CATALOG__COMMAND__INIT;
    cmd.cmd_case = CVERSE__CATALOG__COMMAND__CMD_RELEASE_SHARDS;
    cmd.release_shards = &rs;
    int rv = cv_consensus_propose(ho->x->cons, &cmd, CV_HOST_PROPOSE_TIMEOUT_MS, handoff__done, ho);
    if (rv) {
        ho->retry_ms = cv_mono_ms() + CV_HANDOFF_RETRY_MS;
        CV_DEBUG("cannot propose the release of %u shards: %s", n, cv_strerror(rv));
        return;
    }
    ho->inflight = true;
    cv_hctx_hold(ho->x);
    CV_INFO("shards: released %u (their objects are deactivated); proposing ReleaseShards", n);
}

void cv_handoff_scan(struct cv_handoff *ho)
{
    struct cv_hctx *x = ho->x;
    if (!ho->scan || ho->inflight || x->closing || cv_mono_ms() < ho->retry_ms) return;
    uint32_t waiting = 0, ready = 0;
    for (uint32_t s = 0; s < x->cfg->shards; s++) {
        uint64_t epoch = 0;
        enum cv_handoff_decision d = cv_handoff_decide(x->cat, x->self, s, cv_runtime_shard_count(x->rt, s), &epoch);
        if (d == CV_HANDOFF_NONE) continue;
        waiting++;
        if (d == CV_HANDOFF_WAIT) continue;
        ho->shards[ready] = s;
        ho->epochs[ready++] = epoch;
    }
    ho->scan = waiting > 0;
    if (ready > 0) handoff__propose(ho, ready);
}
