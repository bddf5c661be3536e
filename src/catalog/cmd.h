/* The catalog's command appliers: one command of an applied batch against the apply's write txn. */
#ifndef CV_CATALOG_CMD_H
#define CV_CATALOG_CMD_H

#include <lmdb.h>
#include <stdint.h>

#include "catalog.pb-c.h"
#include "catalog/mirror.h"

/* What a command works with; all borrowed, valid for one apply. */
struct cv_cmd_ctx {
    MDB_txn *txn;        /* the apply's write transaction */
    const MDB_dbi *dbi;  /* CV_DB__COUNT handles */
    uint32_t shards;     /* size of the shard map */
    size_t max_key;      /* LMDB's maximum key size */
    struct cv_stage *st; /* node and shard changes for the mirror */
    uint8_t *seen;       /* scratch: shards / 8 + 1 bytes, duplicate detection within a command */
    uint64_t index;      /* the entry's log index */
};

/* Runs one command. Returns 0 or a fatal error (CV_ELMDB, CV_ENOMEM) that aborts the whole entry; the
 * command's business result (catalog.h lists them) goes to *status. A failing command writes nothing. */
int cv_cmd_run(struct cv_cmd_ctx *c, const Cverse__Catalog__Command *cmd, int *status);

#endif
