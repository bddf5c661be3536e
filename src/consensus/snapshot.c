/* The catalog as libraft's FSM snapshot (snapshot.h).
 *
 * Happy path: raft asks for a snapshot every snapshot_threshold entries; the whole catalog is built into
 * one buffer (cv_catalog_snapshot) and freed once raft wrote it. A lagging follower gets the leader's
 * snapshot and installs it (cv_catalog_restore), unless its catalog is already newer.
 *
 * Failure modes: out of memory while building (RAFT_NOMEM: raft tries again at the next threshold); a
 * snapshot the catalog cannot read (RAFT_CORRUPT: raft stops installing it). */
#include "consensus/snapshot.h"

#include <stdlib.h>

#include "cverse/error.h"
#include "util/log.h"

int cv_snapshot_take(struct cv_catalog *cat, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    void *data;
    size_t len;
    int rv = cv_catalog_snapshot(cat, &data, &len);
    if (rv) {
        CV_ERROR("catalog snapshot failed: %s", cv_strerror(rv));
        return RAFT_NOMEM;
    }
    *bufs = malloc(sizeof **bufs);
    if (!*bufs) {
        free(data);
        return RAFT_NOMEM;
    }
    (*bufs)[0].base = data;
    (*bufs)[0].len = len;
    *n_bufs = 1;
    CV_INFO("raft snapshot of the catalog taken at applied index %llu (%zu bytes)",
            (unsigned long long)cv_catalog_applied_index(cat), len);
    return 0;
}

int cv_snapshot_finalize(struct raft_buffer *bufs[], unsigned *n_bufs)
{
    if (*bufs) {
        for (unsigned i = 0; i < *n_bufs; i++) free((*bufs)[i].base);
        free(*bufs);
    }
    *bufs = NULL;
    *n_bufs = 0;
    return 0;
}

int cv_snapshot_restore(struct cv_catalog *cat, struct raft_buffer *buf, bool *installed)
{
    bool ignored = false;
    int rv = cv_catalog_restore(cat, buf->base, buf->len, &ignored);
    if (rv) {
        CV_ERROR("catalog restore from a raft snapshot failed: %s", cv_strerror(rv));
        return RAFT_CORRUPT;
    }
    CV_INFO("raft snapshot %s (catalog applied index now %llu)",
            ignored ? "older than the catalog: kept the catalog" : "installed into the catalog",
            (unsigned long long)cv_catalog_applied_index(cat));
    *installed = !ignored;
    raft_free(buf->base); /* restore takes ownership of the buffer on success */
    return 0;
}
