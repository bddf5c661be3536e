/* The catalog as libraft's FSM snapshot: take it (one buffer, the whole catalog), free it, install one. */
#ifndef CV_CONSENSUS_SNAPSHOT_H
#define CV_CONSENSUS_SNAPSHOT_H

#include <raft.h>
#include <stdbool.h>

#include "catalog/catalog.h"

/* raft_fsm.snapshot: *bufs (owned by raft until cv_snapshot_finalize) holds the catalog. 0, RAFT_NOMEM. */
int cv_snapshot_take(struct cv_catalog *cat, struct raft_buffer *bufs[], unsigned *n_bufs);
/* raft_fsm.snapshot_finalize: frees what cv_snapshot_take gave. 0. */
int cv_snapshot_finalize(struct raft_buffer *bufs[], unsigned *n_bufs);
/* raft_fsm.restore: installs buf into the catalog (taking buf->base on success); *installed false when
 * the catalog was already newer (kept). 0, RAFT_CORRUPT. */
int cv_snapshot_restore(struct cv_catalog *cat, struct raft_buffer *buf, bool *installed);

#endif
