/* Shard handoff, phase 1 on the old owner: finds the shards the leader took from this node, and once
 * none of their objects is active here any more (their last state saves committed), confirms with one
 * ReleaseShards proposal. */
#ifndef CV_NODE_HANDOFF_H
#define CV_NODE_HANDOFF_H

#include "node/hctx.h"

#define CV_HANDOFF_RETRY_MS 100 /* after a failed ReleaseShards proposal */

/* What this node has to do about one shard. */
enum cv_handoff_decision {
    CV_HANDOFF_NONE,    /* the shard does not wait for us */
    CV_HANDOFF_WAIT,    /* it waits for our release, but objects of it are still active here */
    CV_HANDOFF_RELEASE, /* it waits for our release and nothing of it is active: release it now */
};

/* The per-shard decision, from the shard's lifecycle state (cv_catalog_shard_to_release: releasing, or
 * its releaser declared dead, and released by self) and the objects of it still active here
 * (active). *epoch: the epoch to release at (CV_HANDOFF_RELEASE only). */
enum cv_handoff_decision cv_handoff_decide(const struct cv_catalog *cat, const char *self, uint32_t shard,
                                           size_t active, uint64_t *epoch);

struct cv_handoff {
    struct cv_hctx *x;  /* borrowed */
    bool scan;          /* the catalog may hold shards waiting for our release */
    bool inflight;      /* one ReleaseShards proposal at a time */
    uint64_t retry_ms;  /* monotonic: no proposal before */
    uint32_t *shards;   /* scratch for the proposal: shards and their epochs */
    uint64_t *epochs;
};

/* Allocates the scratch; scanning starts enabled (a restarted node may have shards to release). */
int cv_handoff_init(struct cv_handoff *ho, struct cv_hctx *x);
/* The shard map changed: scan again. */
void cv_handoff_mark(struct cv_handoff *ho);
/* Proposes the release of every shard ready for it (polled each tick while some wait). */
void cv_handoff_scan(struct cv_handoff *ho);
/* Whether the next scan has work (shards wait for us, no proposal in flight): tick soon. */
static inline bool cv_handoff_busy(const struct cv_handoff *ho)
{
    return ho->scan && !ho->inflight;
}
void cv_handoff_free(struct cv_handoff *ho);

#endif
