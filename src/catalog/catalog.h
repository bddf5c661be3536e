/* The catalog: the Raft FSM's state (nodes, shard map, leases, objects, config) kept in LMDB, with an
 * in-memory mirror of nodes and the shard map for fast reads. Single-threaded: call from one loop. */
#ifndef CV_CATALOG_H
#define CV_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "catalog.pb-c.h"
#include "catalog/types.h" /* struct cv_catalog_node, CV_NODE_ID_MAX */
#include "core/shard.h"

struct cv_catalog;

struct cv_catalog_opts {
    const char *dir;      /* directory for the LMDB environment; created if missing */
    uint32_t shards;      /* size of the shard map; must match what an existing catalog holds */
    size_t map_size;      /* LMDB map size, default 1 GiB when 0 */
    bool sync_each_txn;   /* true: fsync every apply (slow); false (default): MDB_NOSYNC, see
                             docs/architecture.md for why that is safe */
};

/* Result of one command in an applied batch. */
struct cv_cmd_result {
    const char *origin; /* points into the decoded batch: valid only during the observer call */
    uint64_t seq;
    int status;         /* 0 or a CV_E* code (e.g. CV_ECONFLICT for a failed compare-and-set) */
};

/* Called after an entry was applied (never for skipped entries), with the decoded batch.
 * results[i] belongs to batch->commands[i]. Runs inside cv_catalog_apply, after the commit. */
typedef void (*cv_catalog_observer)(void *data, uint64_t index, const Cverse__Catalog__Batch *batch,
                                    const struct cv_cmd_result *results);

/* Opens (creating if needed) the catalog. *out is freed by cv_catalog_close.
 * CV_ECONFIG if the stored shard count differs from opts->shards; CV_ELMDB / CV_EIO otherwise. */
int cv_catalog_open(const struct cv_catalog_opts *opts, struct cv_catalog **out);
void cv_catalog_close(struct cv_catalog *cat);

void cv_catalog_set_observer(struct cv_catalog *cat, cv_catalog_observer cb, void *data);

/* Applies one log entry (a serialized Batch) at log index `index`, state and applied index in ONE write
 * transaction. An entry with index <= the stored applied index is skipped (*skipped = true, returns 0):
 * replay after restart is idempotent. Business failures of single commands are reported in the
 * observer's results, not here. Returns CV_EPROTO for an undecodable entry (it is then recorded as
 * applied and ignored, so one bad entry cannot wedge the group), CV_ELMDB if the write failed
 * (the transaction is aborted; nothing changed). */
int cv_catalog_apply(struct cv_catalog *cat, uint64_t index, const void *buf, size_t len, bool *skipped);
/* Per-command results (cv_cmd_result.status); a command that fails changes nothing:
 *   set_config     CV_ECONFIG if its shards differ from the catalog's (the shard count never changes)
 *   register_node  CV_EINVAL: no info, empty id or id >= CV_NODE_ID_MAX, an address >= 128 bytes
 *   renew_lease, set_role, expire_node  CV_ENOTFOUND: unknown node (CV_EINVAL: empty id)
 *   renew_lease    CV_ECONFLICT if the node is declared dead (it must register again: a new incarnation);
 *                  every applied renewal moves the expiry forward (at least 1 ms)
 *   expire_node    CV_ECONFLICT if the lease's expiry_ms differs (it was renewed)
 *   set_role       CV_EINVAL: not a Role value
 *   assign_shards  first failing assignment decides: CV_EINVAL (shard >= shards, a shard twice, unknown
 *                  owner), CV_ECONFLICT (expect_epoch != epoch); nothing is applied then
 *   create_object  CV_EINVAL (empty type/id, id longer than an LMDB key, bad "shard#N/"), CV_EEXIST (the
 *                  id exists with another type); a node-pinned id's node is not checked
 *   delete_object  CV_EINVAL (empty id); absent is 0
 *   release_shards CV_EINVAL (empty/long node, shards and epochs of different lengths, a shard out of
 *                  range or twice), CV_ECONFLICT (a shard has an owner, another epoch, or another
 *                  released_by); all or nothing; releasing again at the same epoch is 0
 *   move_shard     CV_EINVAL (shard >= shards), CV_ENOTFOUND (node neither "" nor a registered node)
 *   pin_shard      CV_EINVAL (shard >= shards)
 *   drain_node     CV_EINVAL (empty id), CV_ENOTFOUND (unknown node)
 *                  (all three are idempotent and change no owner or epoch)
 *   save_state     CV_EINVAL (empty/long node); CV_ECONFLICT if any item was rejected (the others are
 *                  written): a bad id or empty type, the node is not alive or not the object's writer at
 *                  the item's epoch (shard owner at that epoch, or its old owner that has not confirmed
 *                  the release, at the release's epoch or the one before; a node-pinned id: its node at
 *                  that incarnation), the object is absent or of another type, or a newer version is
 *                  stored (the same version and epoch again is a duplicate: 0, nothing written)
 *   delete_object  also drops the object's state
 *   no command set (e.g. from a newer version): CV_EINVAL
 * apply may also return CV_ENOMEM (nothing changed, like CV_ELMDB). */

/* Records that entry `index` carried no catalog command (a raft barrier/config entry seen by the FSM
 * or an empty batch): advances the applied index. Same skip rule as apply. */
int cv_catalog_apply_noop(struct cv_catalog *cat, uint64_t index);

uint64_t cv_catalog_applied_index(const struct cv_catalog *cat);
uint32_t cv_catalog_shards(const struct cv_catalog *cat);
uint64_t cv_catalog_config_fingerprint(const struct cv_catalog *cat);

/* Serializes the whole catalog (one consistent read txn) into a malloc'ed buffer owned by the caller. */
int cv_catalog_snapshot(struct cv_catalog *cat, void **buf, size_t *len);
/* Replaces the catalog with a snapshot's content in one write txn, unless the snapshot is older than
 * or equal to what is stored (then it is ignored and *ignored = true): that happens on restart, when
 * raft re-installs its last snapshot but LMDB already holds newer state. buf stays the caller's. */
int cv_catalog_restore(struct cv_catalog *cat, const void *buf, size_t len, bool *ignored);
/* Flushes LMDB to disk (mdb_env_sync(force)). */
int cv_catalog_sync(struct cv_catalog *cat);

/* Reads from the in-memory mirror. Pointers stay valid until the next apply/restore/close.
 * Nodes are sorted by id (byte order), so node_at(i) is the same on every replica and after a reopen. */
size_t cv_catalog_node_count(const struct cv_catalog *cat);
const struct cv_catalog_node *cv_catalog_node_at(const struct cv_catalog *cat, size_t i);
const struct cv_catalog_node *cv_catalog_node_get(const struct cv_catalog *cat, const char *id);
/* The node whose record carries this raft id (0 never matches), or NULL. */
const struct cv_catalog_node *cv_catalog_node_by_raft_id(const struct cv_catalog *cat, uint64_t raft_id);
/* Owner node id of a shard ("" if unassigned) and its epoch; NULL if shard is out of range. */
const char *cv_catalog_shard_owner(const struct cv_catalog *cat, uint32_t shard, uint64_t *epoch);
uint32_t cv_catalog_unassigned_shards(const struct cv_catalog *cat);

/* The shard lifecycle (core/shard.h) as the mirror sees it: a shard's record plus whether the nodes it
 * names are alive (cv_catalog_node.alive, the flag the leader's liveness comes from too). Strings are
 * valid like cv_catalog_shard_owner's result. */
struct cv_catalog_shard {
    enum cv_shard_state state;
    const char *owner; /* "" if unassigned */
    uint64_t epoch;
    const char *released_by; /* "" if none: the node it was last unassigned from while it owned it */
    uint64_t released_epoch; /* == epoch: released_by confirmed */
    const char *target;      /* "" if none: the owner an operator chose (MoveShard) */
    bool pinned;             /* PinShard: rebalancing keeps it on its current live, undrained owner */
};
/* Fills *out; CV_EINVAL if shard is out of range. */
int cv_catalog_shard_get(const struct cv_catalog *cat, uint32_t shard, struct cv_catalog_shard *out);
/* The shard's enum cv_shard_state (>= 0), or CV_EINVAL if shard is out of range. */
int cv_catalog_shard_state(const struct cv_catalog *cat, uint32_t shard);
/* True when node still has to confirm the release of shard (cv_shard_must_confirm, and node is its
 * released_by); *epoch (may be NULL) is then the epoch to confirm in ReleaseShards. False otherwise,
 * also for a shard out of range. The release scan of a node asks this for itself. */
bool cv_catalog_shard_to_release(const struct cv_catalog *cat, uint32_t shard, const char *node,
                                 uint64_t *epoch);

/* Object catalog reads (LMDB read txn). cv_catalog_object_get fills type (NUL-terminated, truncated to
 * typelen) and shard; CV_ENOTFOUND if absent. */
int cv_catalog_object_get(struct cv_catalog *cat, const char *id, char *type, size_t typelen,
                          uint32_t *shard);
/* As cv_catalog_object_get, plus the index of the entry that created it (kept across idempotent
 * re-creates, reset when the id is deleted and created again; a snapshot carries it). Any out pointer
 * may be NULL. The host uses it to run an object's `created` hook exactly once: on the entry that
 * created it, not on a duplicate CreateObject. */
int cv_catalog_object_get_ex(struct cv_catalog *cat, const char *id, char *type, size_t typelen,
                             uint32_t *shard, uint64_t *created_index);
/* Calls cb for each object (in id order) until cb returns nonzero. Strings valid during the call.
 * Returns 0, cb's nonzero value, or CV_ELMDB. cb must not call catalog functions that read LMDB (one
 * read transaction per thread). */
typedef int (*cv_catalog_object_cb)(void *data, const char *type, const char *id, uint32_t shard);
int cv_catalog_object_foreach(struct cv_catalog *cat, cv_catalog_object_cb cb, void *data);
size_t cv_catalog_object_count(struct cv_catalog *cat);

/* An object's durable state (db "states"; docs/durable-state.md). */
struct cv_catalog_state {
    char type[128];     /* truncated if longer */
    char node[CV_NODE_ID_MAX]; /* the node that saved it */
    uint64_t version, epoch, saved_index;
    uint8_t *state;     /* owned by the caller (free()); NULL when len is 0 */
    size_t len;
};
/* Reads id's state record (one read txn). CV_ENOTFOUND if none was saved (or the object was deleted),
 * CV_EINVAL for a bad id, CV_ELMDB (also for a record that does not decode), CV_ENOMEM. */
int cv_catalog_state_get(struct cv_catalog *cat, const char *id, struct cv_catalog_state *out);
/* Visits the call ids recorded with id's state (reliable calls, oldest first: call) and the hashes of
 * those trimmed from its window (expired). Arguments valid during the callback only. 0 (also when no
 * state was saved: nothing visited), CV_EINVAL, CV_ELMDB, CV_ENOMEM. */
struct cv_catalog_call_visit {
    void *data;
    void (*call)(void *data, const char *call_id, int status, const char *error, const uint8_t *resp,
                 size_t len, uint64_t at_ms);
    void (*expired)(void *data, uint64_t hash);
};
int cv_catalog_state_calls(struct cv_catalog *cat, const char *id, const struct cv_catalog_call_visit *v);
/* Durable reminders (db "reminders"): cb for each reminder, with its object's type and id (strings valid
 * during the call; a nonzero return stops and is returned). _get: the reminders of one object (none: 0,
 * nothing visited); _foreach: of every object, in id order. CV_EINVAL for a bad id, CV_ELMDB. */
typedef int (*cv_catalog_reminder_cb)(void *data, const char *type, const char *id, const char *name,
                                      uint64_t due_ms, uint64_t period_ms);
int cv_catalog_reminders_get(struct cv_catalog *cat, const char *id, cv_catalog_reminder_cb cb, void *data);
int cv_catalog_reminder_foreach(struct cv_catalog *cat, cv_catalog_reminder_cb cb, void *data);
/* Number of state records and the bytes of LMDB pages the "states" db uses (for metrics and docs). */
void cv_catalog_state_stats(struct cv_catalog *cat, size_t *count, uint64_t *bytes);

/* Checks the whole mirror against LMDB and the invariants (owners are known nodes, every shard record
 * consistent by cv_shard_invariant, each node's shards_owned matches the map). Returns 0 or
 * CV_ECONFLICT with a log line. Debug builds run it (or its cheaper form for one apply) after every
 * apply and restore, and abort on a failure. */
int cv_catalog_check(struct cv_catalog *cat);

#endif
