/* The catalog's command appliers: each command of a batch runs against the apply's one write
 * transaction and reads LMDB (never the mirror), so it sees what earlier commands of the batch wrote;
 * what it changes in nodes and shards it also records in the stage for the mirror.
 *
 * Happy path: check every argument and compare-and-set first, then write (all or nothing per command).
 * Failure modes: a business failure (bad argument, failed compare-and-set, unknown node) is only the
 * command's *status and writes nothing; an LMDB or memory error is returned and aborts the entry.
 * Shard records change only here (assign_shards, release_shards, and expire_node / register_node, which
 * unassign every shard a node declared dead still owns: cmd__disown); each change is a move of the shard
 * lifecycle (core/shard.h), checked against its table in debug builds, as are the moves a liveness flip
 * of expire_node / register_node makes on the shards naming that node. An operator's wishes
 * (move_shard's target, pin_shard, drain_node) change no owner and no epoch, so no lifecycle state:
 * the leader follows them with ordinary assignments. save_state writes object states (db "states"), each
 * item fenced on its own against the shard record and the saving node's liveness; delete_object drops
 * the object's state with it. */
#include "catalog/cmd.h"

#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "cverse/error.h"
#include "util/be.h"
#include "util/log.h"

static uint64_t cmd__sat_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static int cmd__node_commit(struct cv_cmd_ctx *c, const struct cv_store_node *sn)
{
    int rv = cv_store_node_write(c->txn, c->dbi, sn);
    return rv ? rv : cv_stage_node(c->st, &sn->n);
}

/* Reads a node for a command; a missing node is the command's CV_ENOTFOUND, not a fatal error. */
static int cmd__node(struct cv_cmd_ctx *c, const char *id, struct cv_store_node *sn, int *status)
{
    if (strlen(id) == 0 || strlen(id) >= CV_NODE_ID_MAX) {
        *status = CV_EINVAL;
        return 0;
    }
    int rv = cv_store_node_read(c->txn, c->dbi, id, strlen(id), sn);
    if (rv == CV_ENOTFOUND) {
        *status = CV_ENOTFOUND;
        return 0;
    }
    return rv;
}

static int cmd__set_config(struct cv_cmd_ctx *c, const Cverse__Catalog__CmdSetConfig *cmd, int *status)
{
    MDB_dbi meta = c->dbi[CV_DB_META];
    uint64_t fp;
    bool found;
    if (cmd->shards != c->shards) { /* the shard count of a cluster never changes */
        *status = CV_ECONFIG;
        return 0;
    }
    int rv = cv_store_meta_get(c->txn, meta, CV_META_FP, 8, &fp, &found);
    if (rv != 0 || (found && fp == cmd->fingerprint)) return rv;
    rv = cv_store_meta_put(c->txn, meta, CV_META_FP, 8, cmd->fingerprint);
    if (rv != 0) return rv;
    c->st->fp_set = true;
    c->st->fp = cmd->fingerprint;
    return 0;
}

static bool cmd__info_valid(const Cverse__Catalog__NodeInfo *info)
{
    return info && strlen(info->id) > 0 && strlen(info->id) < CV_NODE_ID_MAX &&
           strlen(info->grpc_addr) < CV_STORE_ADDR_MAX && strlen(info->advertise_addr) < CV_STORE_ADDR_MAX &&
           strlen(info->http_addr) < CV_STORE_ADDR_MAX && strlen(info->raft_addr) < CV_STORE_ADDR_MAX;
}

#ifdef CV_CHECKS
/* Liveness as this transaction sees it ("" or unknown: not alive). */
static bool cmd__alive(struct cv_cmd_ctx *c, const char *id)
{
    struct cv_store_node sn;
    return id[0] && cv_store_node_read(c->txn, c->dbi, id, strlen(id), &sn) == 0 && sn.n.alive;
}

/* Liveness of a record's node when `node` is alive as `node_alive` (the other nodes as the txn sees them). */
static bool cmd__alive_as(struct cv_cmd_ctx *c, const char *id, const char *node, bool node_alive)
{
    return strcmp(id, node) == 0 ? node_alive : cmd__alive(c, id);
}

/* One shard record naming node: its move when node's liveness went from `was` to `now`. A state the flip
 * does not change (RELEASED: a confirmed releaser's liveness plays no part) is no move. */
static void cmd__check_flip(struct cv_cmd_ctx *c, uint32_t shard, const struct cv_store_shard *r,
                            const char *node, bool was, bool now, const char *what)
{
    struct cv_shard_view a, b;
    cv_store_shard_view(r, cmd__alive_as(c, r->owner, node, was), cmd__alive_as(c, r->released_by, node, was),
                        &a);
    cv_store_shard_view(r, cmd__alive_as(c, r->owner, node, now), cmd__alive_as(c, r->released_by, node, now),
                        &b);
    if (cv_shard_state(&a) != cv_shard_state(&b)) cv_shard_check_move(shard, what, &a, &b);
}
#endif

/* Debug builds: a lease command flipped node's liveness from `was` to `now`, which moves every shard
 * record naming it (OWNED <-> OWNER_DEAD, RELEASING <-> RELEASER_DEAD): each move must be in the table.
 * Finding those records takes one cursor pass over the shard records (no index by node), so only
 * ExpireNode and RegisterNode call it, and only when the liveness really flipped (RenewLease never
 * flips it: a dead node's renewal is refused). Returns 0 or CV_ELMDB / CV_EPROTO. */
static int cmd__check_liveness(struct cv_cmd_ctx *c, const char *node, bool was, bool now, const char *what)
{
#ifdef CV_CHECKS
    MDB_cursor *cur;
    MDB_val k, v;
    struct cv_store_shard r;
    if (was == now) return 0;
    int rv = 0, rc = mdb_cursor_open(c->txn, c->dbi[CV_DB_SHARDS], &cur);
    if (rc != 0) return cv_store_lmdb_err(rc, "open shard cursor");
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && rv == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        rv = k.mv_size == 4 ? cv_store_shard_decode(&v, &r) : CV_EPROTO;
        if (rv == 0 && (strcmp(r.owner, node) == 0 || strcmp(r.released_by, node) == 0))
            cmd__check_flip(c, cv_be32_get(k.mv_data), &r, node, was, now, what);
    }
    mdb_cursor_close(cur);
    if (rv == 0 && rc != MDB_NOTFOUND) rv = cv_store_lmdb_err(rc, "scan shards");
    return rv;
#else
    (void)c, (void)node, (void)was, (void)now, (void)what;
    return 0;
#endif
}

/* Debug builds: the change of one shard record is a move of the shard lifecycle that its table allows,
 * to a consistent record (liveness fixed at this command: lease commands move liveness, not records). */
static void cmd__check_move(struct cv_cmd_ctx *c, uint32_t shard, const char *what,
                            const struct cv_store_shard *from, const struct cv_store_shard *to)
{
#ifdef CV_CHECKS
    struct cv_shard_view a, b;
    cv_store_shard_view(from, cmd__alive(c, from->owner), cmd__alive(c, from->released_by), &a);
    cv_store_shard_view(to, cmd__alive(c, to->owner), cmd__alive(c, to->released_by), &b);
    cv_shard_check_move(shard, what, &a, &b);
#else
    (void)c, (void)shard, (void)what, (void)from, (void)to;
#endif
}

/* A node declared dead owns nothing: every shard it owns is unassigned from it (epoch + 1, released_by =
 * node, not confirmed: RELEASER_DEAD while it is dead, RELEASING if it comes back), so that neither a
 * registration (a new incarnation) nor anything else gives a shard back to it: only a later
 * AssignShards, decided by a leader that saw it alive, does. Called by ExpireNode (after the node was
 * written dead) and by RegisterNode of a dead node (before it is written alive: an AssignShards decided
 * while it was alive may have committed after its ExpireNode). One cursor pass over the shard records
 * (no index by node); both commands are rare. Returns 0 or CV_ELMDB / CV_EPROTO / CV_ENOMEM. */
static int cmd__disown(struct cv_cmd_ctx *c, const char *node)
{
    struct cv_store_shard r;
    int rv = 0;
    for (uint32_t s = 0; s < c->shards && rv == 0; s++) {
        rv = cv_store_shard_read(c->txn, c->dbi, s, &r);
        if (rv != 0 || strcmp(r.owner, node) != 0) continue;
        struct cv_store_shard before = r;
        strcpy(r.released_by, r.owner);
        r.owner[0] = '\0';
        r.epoch++;
        r.released_epoch = 0;
        cmd__check_move(c, s, "disown_dead_node", &before, &r);
        rv = cv_store_shard_write(c->txn, c->dbi, s, &r);
        if (rv == 0) rv = cv_stage_shard(c->st, s, &r, false);
    }
    return rv;
}

static int cmd__register(struct cv_cmd_ctx *c, const Cverse__Catalog__CmdRegisterNode *cmd, int *status)
{
    const Cverse__Catalog__NodeInfo *info = cmd->info;
    struct cv_store_node sn;
    if (!cmd__info_valid(info)) {
        *status = CV_EINVAL;
        return 0;
    }
    int rv = cv_store_node_read(c->txn, c->dbi, info->id, strlen(info->id), &sn);
    bool was_alive = rv == 0 && sn.n.alive; /* a new node names no shard: nothing to check */
    if (rv == 0 && sn.n.removed) { /* removed for good: a new member needs a new id */
        *status = CV_ECONFLICT;
        return 0;
    }
    if (rv == CV_ENOTFOUND) { /* a new node: role unknown until the leader assigns one */
        memset(&sn, 0, sizeof sn);
        sn.n.role = CVERSE__CATALOG__ROLE__ROLE_UNKNOWN;
        sn.n.incarnation = 1;
        sn.n.alive = true;
        was_alive = true;
    } else if (rv != 0) {
        return rv;
    }
    if (!sn.n.alive) { /* a new incarnation: it owns nothing it owned before it was declared dead */
        sn.n.incarnation++;
        rv = cmd__disown(c, info->id);
        if (rv != 0) return rv;
    }
    sn.n.alive = true;
    if (cmd->fresh && sn.n.drain_shutdown) { /* it drained to stop, and here is its next process */
        sn.n.draining = false;
        sn.n.drain_shutdown = false;
    }
    strcpy(sn.n.id, info->id); /* lengths checked by cmd__info_valid */
    strcpy(sn.n.grpc_addr, info->grpc_addr);
    strcpy(sn.n.advertise_addr, info->advertise_addr);
    strcpy(sn.n.http_addr, info->http_addr);
    strcpy(sn.n.raft_addr, info->raft_addr);
    sn.n.raft_id = info->raft_id;
    uint64_t expiry = cmd__sat_add(cmd->now_ms, cmd->ttl_ms);
    /* A live node's expiry only moves forward (as in cmd__renew): ExpireNode's compare-and-set must
     * fail after ANY renewal or registration the leader had not applied when it decided. */
    if (was_alive && expiry <= sn.n.lease_expiry_ms && sn.n.lease_expiry_ms < UINT64_MAX)
        expiry = sn.n.lease_expiry_ms + 1;
    sn.n.lease_expiry_ms = expiry;
    sn.n.lease_renewed_ms = cmd->now_ms;
    sn.registered_index = c->index; /* the entry of the latest registration */
    rv = cmd__node_commit(c, &sn);
    return rv ? rv : cmd__check_liveness(c, sn.n.id, was_alive, true, "register_node");
}

/* A joining node's record: not alive until its own RegisterNode (which counts it a new incarnation). */
static int cmd__add_node(struct cv_cmd_ctx *c, const Cverse__Catalog__CmdAddNode *cmd, int *status)
{
    const Cverse__Catalog__NodeInfo *info = cmd->info;
    struct cv_store_node sn;
    if (!cmd__info_valid(info) || info->raft_id == 0) {
        *status = CV_EINVAL;
        return 0;
    }
    int rv = cv_store_node_read(c->txn, c->dbi, info->id, strlen(info->id), &sn);
    if (rv == 0 && sn.n.raft_id != info->raft_id) *status = CV_EEXIST;
    if (rv != CV_ENOTFOUND) return rv;
    memset(&sn, 0, sizeof sn);
    sn.n.role = CVERSE__CATALOG__ROLE__ROLE_UNKNOWN;
    strcpy(sn.n.id, info->id); /* lengths checked by cmd__info_valid */
    strcpy(sn.n.grpc_addr, info->grpc_addr);
    strcpy(sn.n.advertise_addr, info->advertise_addr);
    strcpy(sn.n.http_addr, info->http_addr);
    strcpy(sn.n.raft_addr, info->raft_addr);
    sn.n.raft_id = info->raft_id;
    sn.registered_index = c->index;
    return cmd__node_commit(c, &sn);
}

/* A member removed for good: only once no shard names it (it drained first). */
static int cmd__remove_node(struct cv_cmd_ctx *c, const Cverse__Catalog__CmdRemoveNode *cmd, int *status)
{
    struct cv_store_node sn;
    int rv = cmd__node(c, cmd->node, &sn, status);
    if (rv != 0 || *status != 0 || sn.n.removed) return rv;
    struct cv_store_shard r;
    for (uint32_t s = 0; s < c->shards; s++) {
        if ((rv = cv_store_shard_read(c->txn, c->dbi, s, &r)) == CV_ENOTFOUND) continue;
        if (rv != 0) return rv;
        if (!strcmp(r.owner, cmd->node) || !strcmp(r.released_by, cmd->node)) {
            *status = CV_ECONFLICT;
            return 0;
        }
    }
    bool was_alive = sn.n.alive;
    sn.n.removed = true;
    sn.n.alive = false;
    rv = cmd__node_commit(c, &sn);
    return rv ? rv : cmd__check_liveness(c, sn.n.id, was_alive, false, "remove_node");
}

static int cmd__renew(struct cv_cmd_ctx *c, const Cverse__Catalog__CmdRenewLease *cmd, int *status)
{
    struct cv_store_node sn;
    int rv = cmd__node(c, cmd->node, &sn, status);
    if (rv != 0 || *status != 0) return rv;
    if (!sn.n.alive) { /* declared dead: only a RegisterNode (a new incarnation) brings it back */
        *status = CV_ECONFLICT;
        return 0;
    }
    uint64_t expiry = cmd__sat_add(cmd->now_ms, cmd->ttl_ms);
    /* Every applied renewal moves the expiry forward (by 1 ms at least, even when the proposer's clock
     * did not advance), so ExpireNode's compare-and-set fails after any renewal the leader did not see. */
    if (expiry > sn.n.lease_expiry_ms) sn.n.lease_expiry_ms = expiry;
    else if (sn.n.lease_expiry_ms < UINT64_MAX) sn.n.lease_expiry_ms++;
    if (cmd->now_ms > sn.n.lease_renewed_ms) sn.n.lease_renewed_ms = cmd->now_ms;
    return cmd__node_commit(c, &sn);
}

static int cmd__expire(struct cv_cmd_ctx *c, const Cverse__Catalog__CmdExpireNode *cmd, int *status)
{
    struct cv_store_node sn;
    int rv = cmd__node(c, cmd->node, &sn, status);
    if (rv != 0 || *status != 0) return rv;
    if (sn.n.lease_expiry_ms != cmd->expiry_ms) { /* renewed meanwhile: the renewal wins */
        *status = CV_ECONFLICT;
        return 0;
    }
    if (!sn.n.alive) return 0;
    sn.n.alive = false;
    rv = cmd__node_commit(c, &sn);
    if (rv == 0) rv = cmd__check_liveness(c, sn.n.id, true, false, "expire_node");
    /* Its shards are unassigned now, in the same entry: OWNER_DEAD never lasts, so no later
     * RegisterNode can make it their owner again (docs/architecture.md, "A dead node owns nothing"). */
    return rv ? rv : cmd__disown(c, sn.n.id);
}

static int cmd__set_role(struct cv_cmd_ctx *c, const Cverse__Catalog__CmdSetRole *cmd, int *status)
{
    struct cv_store_node sn;
    int rv = cmd__node(c, cmd->node, &sn, status);
    if (rv != 0 || *status != 0) return rv;
    if (cmd->role < CVERSE__CATALOG__ROLE__ROLE_UNKNOWN || cmd->role > CVERSE__CATALOG__ROLE__ROLE_SPARE) {
        *status = CV_EINVAL;
        return 0;
    }
    sn.n.role = (int)cmd->role;
    return cmd__node_commit(c, &sn);
}

/* Marks shard as seen by the command being applied; false if out of range or seen already. */
static bool cmd__shard_once(struct cv_cmd_ctx *c, uint32_t shard)
{
    if (shard >= c->shards || (c->seen[shard / 8] & (1u << (shard % 8)))) return false;
    c->seen[shard / 8] |= (uint8_t)(1u << (shard % 8));
    return true;
}

/* Checks one assignment against the state before the command. */
static int cmd__assign_check(struct cv_cmd_ctx *c, const Cverse__Catalog__ShardAssignment *a, int *status)
{
    struct cv_store_shard r;
    bool found = true;
    if (!cmd__shard_once(c, a->shard)) {
        *status = CV_EINVAL; /* out of range, or the same shard twice in one command */
        return 0;
    }
    if (strlen(a->owner) >= CV_NODE_ID_MAX) found = false;
    int rv = a->owner[0] && found ? cv_store_node_exists(c->txn, c->dbi, a->owner, &found) : 0;
    if (rv != 0) return rv;
    if (!found) {
        *status = CV_EINVAL;
        return 0;
    }
    rv = cv_store_shard_read(c->txn, c->dbi, a->shard, &r);
    if (rv == 0 && r.epoch != a->expect_epoch) *status = CV_ECONFLICT;
    return rv;
}

/* An owner change bumps the epoch. Unassigning from X records X as the node to wait for (released_by);
 * any other change clears it. */
static int cmd__assign(struct cv_cmd_ctx *c, const Cverse__Catalog__CmdAssignShards *cmd, int *status)
{
    struct cv_store_shard r;
    int rv = 0;
    memset(c->seen, 0, c->shards / 8 + 1);
    for (size_t i = 0; i < cmd->n_shards && rv == 0 && *status == 0; i++)
        rv = cmd__assign_check(c, cmd->shards[i], status);
    if (rv != 0 || *status != 0) return rv; /* all or nothing */
    for (size_t i = 0; i < cmd->n_shards; i++) {
        const Cverse__Catalog__ShardAssignment *a = cmd->shards[i];
        rv = cv_store_shard_read(c->txn, c->dbi, a->shard, &r);
        if (rv != 0) return rv;
        if (strcmp(r.owner, a->owner) == 0) continue; /* unchanged owner: epoch unchanged too */
        struct cv_store_shard before = r;
        if (a->owner[0] == '\0')
            strcpy(r.released_by, r.owner); /* X -> "": wait for X */
        else
            r.released_by[0] = '\0';
        strcpy(r.owner, a->owner); /* length checked by cmd__assign_check */
        r.epoch++;
        r.released_epoch = 0;
        cmd__check_move(c, a->shard, "assign_shards", &before, &r);
        rv = cv_store_shard_write(c->txn, c->dbi, a->shard, &r);
        if (rv == 0) rv = cv_stage_shard(c->st, a->shard, &r, false);
        if (rv != 0) return rv;
    }
    return 0;
}

/* Checks one release: the shard is unassigned at that epoch and waits for node (or node already
 * released it at that epoch: a retried proposal). */
static int cmd__release_check(struct cv_cmd_ctx *c, const char *node, uint32_t shard, uint64_t epoch,
                              int *status)
{
    struct cv_store_shard r;
    if (!cmd__shard_once(c, shard)) {
        *status = CV_EINVAL;
        return 0;
    }
    int rv = cv_store_shard_read(c->txn, c->dbi, shard, &r);
    if (rv == 0 && (r.owner[0] != '\0' || r.epoch != epoch || strcmp(r.released_by, node) != 0))
        *status = CV_ECONFLICT;
    return rv;
}

static int cmd__release(struct cv_cmd_ctx *c, const Cverse__Catalog__CmdReleaseShards *cmd, int *status)
{
    struct cv_store_shard r;
    int rv = 0;
    if (cmd->node[0] == '\0' || strlen(cmd->node) >= CV_NODE_ID_MAX || cmd->n_shards != cmd->n_epochs) {
        *status = CV_EINVAL;
        return 0;
    }
    memset(c->seen, 0, c->shards / 8 + 1);
    for (size_t i = 0; i < cmd->n_shards && rv == 0 && *status == 0; i++)
        rv = cmd__release_check(c, cmd->node, cmd->shards[i], cmd->epochs[i], status);
    if (rv != 0 || *status != 0) return rv; /* all or nothing */
    for (size_t i = 0; i < cmd->n_shards; i++) {
        rv = cv_store_shard_read(c->txn, c->dbi, cmd->shards[i], &r);
        if (rv != 0) return rv;
        if (r.released_epoch == r.epoch) continue; /* released already */
        struct cv_store_shard before = r;
        r.released_epoch = r.epoch;
        cmd__check_move(c, cmd->shards[i], "release_shards", &before, &r);
        rv = cv_store_shard_write(c->txn, c->dbi, cmd->shards[i], &r);
        if (rv == 0) rv = cv_stage_shard(c->st, cmd->shards[i], &r, true);
        if (rv != 0) return rv;
    }
    return 0;
}

/* ---- an operator's wishes: they change what the leader aims for, never owner or epoch ---- */

/* Writes r as shard's new record if it differs from old (owner and epoch unchanged). */
static int cmd__shard_wish(struct cv_cmd_ctx *c, uint32_t shard, const struct cv_store_shard *old,
                           const struct cv_store_shard *r)
{
    if (strcmp(old->target, r->target) == 0 && old->pinned == r->pinned) return 0; /* idempotent */
    int rv = cv_store_shard_write(c->txn, c->dbi, shard, r);
    return rv ? rv : cv_stage_shard(c->st, shard, r, true);
}

static int cmd__move_shard(struct cv_cmd_ctx *c, const Cverse__Catalog__CmdMoveShard *cmd, int *status)
{
    struct cv_store_shard old, r;
    bool found = true;
    if (cmd->shard >= c->shards) {
        *status = CV_EINVAL;
        return 0;
    }
    if (strlen(cmd->node) >= CV_NODE_ID_MAX) found = false;
    int rv = cmd->node[0] && found ? cv_store_node_exists(c->txn, c->dbi, cmd->node, &found) : 0;
    if (rv != 0) return rv;
    if (!found) {
        *status = CV_ENOTFOUND;
        return 0;
    }
    rv = cv_store_shard_read(c->txn, c->dbi, cmd->shard, &old);
    if (rv != 0) return rv;
    r = old;
    strcpy(r.target, cmd->node); /* length checked above */
    return cmd__shard_wish(c, cmd->shard, &old, &r);
}

static int cmd__pin_shard(struct cv_cmd_ctx *c, const Cverse__Catalog__CmdPinShard *cmd, int *status)
{
    struct cv_store_shard old, r;
    if (cmd->shard >= c->shards) {
        *status = CV_EINVAL;
        return 0;
    }
    int rv = cv_store_shard_read(c->txn, c->dbi, cmd->shard, &old);
    if (rv != 0) return rv;
    r = old;
    r.pinned = cmd->pinned;
    return cmd__shard_wish(c, cmd->shard, &old, &r);
}

static int cmd__drain_node(struct cv_cmd_ctx *c, const Cverse__Catalog__CmdDrainNode *cmd, int *status)
{
    struct cv_store_node sn;
    int rv = cmd__node(c, cmd->node, &sn, status);
    if (rv != 0 || *status != 0) return rv;
    /* An operator's drain wins: a shutdown drain never weakens it (its next process would clear it). */
    bool shutdown = cmd->drain && cmd->reason == CVERSE__CATALOG__DRAIN_REASON__DRAIN_SHUTDOWN &&
                    !(sn.n.draining && !sn.n.drain_shutdown);
    if (sn.n.draining == cmd->drain && sn.n.drain_shutdown == shutdown) return 0;
    sn.n.draining = cmd->drain;
    sn.n.drain_shutdown = shutdown;
    return cmd__node_commit(c, &sn);
}

static int cmd__create_object(struct cv_cmd_ctx *c, const Cverse__Catalog__CmdCreateObject *cmd, int *status)
{
    struct cv_placement p;
    Cverse__Catalog__ObjectRecord *old;
    if (cmd->type[0] == '\0' || !cv_store_key_ok(c->max_key, cmd->id) ||
        cv_placement_parse(cmd->id, c->shards, &p) != 0) {
        *status = CV_EINVAL;
        return 0;
    }
    int rv = cv_store_msg_get(c->txn, c->dbi[CV_DB_OBJECTS], cmd->id, strlen(cmd->id),
                              &cverse__catalog__object_record__descriptor, (void **)&old);
    if (rv == 0) { /* idempotent for the same type */
        if (strcmp(old->type, cmd->type) != 0) *status = CV_EEXIST;
        cverse__catalog__object_record__free_unpacked(old, NULL);
        return 0;
    }
    if (rv != CV_ENOTFOUND) return rv;
    if (cmd->owner[0] && p.kind != CV_PLACE_NODE) { /* a first call's create: only by the shard's owner */
        struct cv_store_shard r;
        if ((rv = cv_store_shard_read(c->txn, c->dbi, p.shard, &r)) != 0) return rv;
        if (strcmp(r.owner, cmd->owner) != 0 || r.epoch != cmd->epoch) {
            *status = CV_ECONFLICT;
            return 0;
        }
    }
    Cverse__Catalog__ObjectRecord rec = CVERSE__CATALOG__OBJECT_RECORD__INIT;
    rec.type = cmd->type;
    rec.id = cmd->id;
    rec.shard = p.shard; /* for a node-pinned id: hash % shards, as cv_placement_parse gives it */
    rec.created_index = c->index;
    return cv_store_msg_put(c->txn, c->dbi[CV_DB_OBJECTS], cmd->id, strlen(cmd->id), &rec);
}

static int cmd__delete_object(struct cv_cmd_ctx *c, const Cverse__Catalog__CmdDeleteObject *cmd, int *status)
{
    if (!cv_store_key_ok(c->max_key, cmd->id)) {
        *status = CV_EINVAL;
        return 0;
    }
    if (cmd->type[0]) { /* only an object of that type (or none: idempotent) */
        Cverse__Catalog__ObjectRecord *old;
        int rv = cv_store_msg_get(c->txn, c->dbi[CV_DB_OBJECTS], cmd->id, strlen(cmd->id),
                                  &cverse__catalog__object_record__descriptor, (void **)&old);
        if (rv == CV_ENOTFOUND) return 0;
        if (rv) return rv;
        bool other = strcmp(old->type, cmd->type) != 0;
        cverse__catalog__object_record__free_unpacked(old, NULL);
        if (other) {
            *status = CV_ENOTFOUND;
            return 0;
        }
    }
    MDB_val k = {strlen(cmd->id), cmd->id};
    int rc = mdb_del(c->txn, c->dbi[CV_DB_OBJECTS], &k, NULL);
    if (rc == 0 || rc == MDB_NOTFOUND) rc = mdb_del(c->txn, c->dbi[CV_DB_STATES], &k, NULL); /* its state too */
    if (rc == 0 || rc == MDB_NOTFOUND) rc = mdb_del(c->txn, c->dbi[CV_DB_REMINDERS], &k, NULL); /* reminders */
    if (rc == 0 || rc == MDB_NOTFOUND) return 0;
    return cv_store_lmdb_err(rc, "del object");
}

/* ---- object states (docs/durable-state.md) ---- */

/* Is `node` (alive, read by the caller) the writer of shard record r for a save taken at `epoch`? The
 * owner at that epoch; or the old owner of a shard unassigned from it and not released yet, at the
 * release's epoch or the one before (a save taken before the release entry, applied after it: the old
 * owner saves what it holds until it confirms the release, docs/architecture.md "shard moves"). */
static bool cmd__writer(const struct cv_store_shard *r, const char *node, uint64_t epoch)
{
    if (r->owner[0]) return strcmp(r->owner, node) == 0 && r->epoch == epoch;
    return strcmp(r->released_by, node) == 0 && r->released_epoch != r->epoch &&
           (r->epoch == epoch || r->epoch == epoch + 1);
}

/* The fence of one save: the node is alive and the object's writer at the save's epoch (node-pinned
 * ids: its own node, in the incarnation the save names). *ok false: rejected. */
static int cmd__save_fenced(struct cv_cmd_ctx *c, const char *node, const Cverse__Catalog__ObjectSave *s,
                            const struct cv_placement *p, bool *ok)
{
    struct cv_store_node sn;
    struct cv_store_shard r;
    *ok = false;
    int rv = cv_store_node_read(c->txn, c->dbi, node, strlen(node), &sn);
    if (rv == CV_ENOTFOUND) return 0;
    if (rv != 0 || !sn.n.alive) return rv;
    if (p->kind == CV_PLACE_NODE) {
        *ok = cv_placement_on_node(p, node) && sn.n.incarnation == s->epoch;
        return 0;
    }
    rv = cv_store_shard_read(c->txn, c->dbi, p->shard, &r);
    if (rv == 0) *ok = cmd__writer(&r, node, s->epoch);
    return rv;
}

/* Does the object exist with the save's type, and is the save newer than the stored state? *ok false:
 * rejected; *dup: the same version is stored already (a retried proposal): nothing to write, no failure. */
static int cmd__save_current(struct cv_cmd_ctx *c, const Cverse__Catalog__ObjectSave *s, bool *ok, bool *dup,
                             Cverse__Catalog__StateRecord **out)
{
    Cverse__Catalog__ObjectRecord *obj;
    Cverse__Catalog__StateRecord *old;
    *ok = *dup = false;
    *out = NULL;
    int rv = cv_store_msg_get(c->txn, c->dbi[CV_DB_OBJECTS], s->id, strlen(s->id),
                              &cverse__catalog__object_record__descriptor, (void **)&obj);
    if (rv == CV_ENOTFOUND) return 0; /* deleted: its state must not come back */
    if (rv != 0) return rv;
    bool same = strcmp(obj->type, s->type) == 0;
    cverse__catalog__object_record__free_unpacked(obj, NULL);
    if (!same) return 0;
    rv = cv_store_msg_get(c->txn, c->dbi[CV_DB_STATES], s->id, strlen(s->id),
                          &cverse__catalog__state_record__descriptor, (void **)&old);
    if (rv == CV_ENOTFOUND) {
        *ok = true;
        return 0;
    }
    if (rv != 0) return rv;
    *dup = old->version == s->version && old->epoch == s->epoch;
    *ok = old->version < s->version || *dup;
    *out = old; /* the caller merges its call ids and frees it */
    return 0;
}

/* The call ids of the new record: the stored ones, then the item's, trimmed to the item's window (count,
 * and age against the item's now_ms); trimmed ids' hashes go to expired (at most 4x the window).
 * Deterministic: only the record and the item's fields decide. Arrays point into old / s (borrowed). */
struct cmd__calls {
    Cverse__Catalog__CallRecord **calls;
    uint64_t *expired;
    size_t n_calls, n_expired;
};

static int cmd__save_calls(const Cverse__Catalog__StateRecord *old, const Cverse__Catalog__ObjectSave *s,
                           struct cmd__calls *out)
{
    size_t n_old = old ? old->n_calls : 0, n_exp = old ? old->n_expired_calls : 0;
    size_t n = n_old + s->n_calls, cap_exp = (size_t)s->call_window * 4;
    *out = (struct cmd__calls){0};
    out->calls = calloc(n ? n : 1, sizeof *out->calls);
    out->expired = calloc(n_exp + n + 1, sizeof *out->expired);
    if (!out->calls || !out->expired) return CV_ENOMEM;
    for (size_t i = 0; i < n_exp; i++) out->expired[out->n_expired++] = old->expired_calls[i];
    size_t first = 0;
    for (size_t i = 0; i < n; i++) out->calls[i] = i < n_old ? old->calls[i] : s->calls[i - n_old];
    while (first < n && (n - first > s->call_window ||
                         (s->call_window_ms && out->calls[first]->at_ms + s->call_window_ms < s->now_ms))) {
        const char *id = out->calls[first++]->id;
        out->expired[out->n_expired++] = cv_fnv1a64(id, strlen(id));
    }
    memmove(out->calls, out->calls + first, (n - first) * sizeof *out->calls);
    out->n_calls = n - first;
    if (out->n_expired > cap_exp) { /* the oldest hashes go first */
        memmove(out->expired, out->expired + (out->n_expired - cap_exp), cap_exp * sizeof *out->expired);
        out->n_expired = cap_exp;
    }
    return 0;
}

/* The item's reminders replace the object's (none: the record goes). */
static int cmd__save_reminders(struct cv_cmd_ctx *c, const Cverse__Catalog__ObjectSave *s)
{
    if (s->n_reminders == 0) {
        MDB_val k = {strlen(s->id), s->id};
        int rc = mdb_del(c->txn, c->dbi[CV_DB_REMINDERS], &k, NULL);
        return rc == 0 || rc == MDB_NOTFOUND ? 0 : cv_store_lmdb_err(rc, "del reminders");
    }
    Cverse__Catalog__ReminderSet set = CVERSE__CATALOG__REMINDER_SET__INIT;
    set.type = s->type;
    set.reminders = s->reminders;
    set.n_reminders = s->n_reminders;
    return cv_store_msg_put(c->txn, c->dbi[CV_DB_REMINDERS], s->id, strlen(s->id), &set);
}

static int cmd__save_one(struct cv_cmd_ctx *c, const char *node, const Cverse__Catalog__ObjectSave *s, bool *ok)
{
    struct cv_placement p;
    bool dup = false;
    *ok = false;
    if (!cv_store_key_ok(c->max_key, s->id) || !s->type[0] || cv_placement_parse(s->id, c->shards, &p) != 0)
        return 0;
    Cverse__Catalog__StateRecord *old = NULL;
    struct cmd__calls calls = {0};
    int rv = cmd__save_fenced(c, node, s, &p, ok);
    if (rv == 0 && *ok) rv = cmd__save_current(c, s, ok, &dup, &old);
    if (rv == 0 && *ok && !dup) rv = cmd__save_calls(old, s, &calls);
    if (rv == 0 && *ok && !dup) {
        Cverse__Catalog__StateRecord rec = CVERSE__CATALOG__STATE_RECORD__INIT;
        rec.type = s->type;
        rec.version = s->version;
        rec.epoch = s->epoch;
        rec.node = (char *)node;
        rec.state = s->state;
        rec.saved_index = c->index;
        rec.calls = calls.calls;
        rec.n_calls = calls.n_calls;
        rec.expired_calls = calls.expired;
        rec.n_expired_calls = calls.n_expired;
        rv = cv_store_msg_put(c->txn, c->dbi[CV_DB_STATES], s->id, strlen(s->id), &rec);
    }
    if (rv == 0 && *ok && !dup && s->reminders_set) rv = cmd__save_reminders(c, s);
    free(calls.calls);
    free(calls.expired);
    if (old) cverse__catalog__state_record__free_unpacked(old, NULL);
    return rv;
}

/* Each item on its own: a rejected one writes nothing and makes the command's status CV_ECONFLICT. */
static int cmd__save_state(struct cv_cmd_ctx *c, const Cverse__Catalog__CmdSaveState *cmd, int *status)
{
    if (cmd->node[0] == '\0' || strlen(cmd->node) >= CV_NODE_ID_MAX) {
        *status = CV_EINVAL;
        return 0;
    }
    for (size_t i = 0; i < cmd->n_saves; i++) {
        bool ok;
        int rv = cmd__save_one(c, cmd->node, cmd->saves[i], &ok);
        if (rv != 0) return rv;
        if (!ok) *status = CV_ECONFLICT;
    }
    return 0;
}

int cv_cmd_run(struct cv_cmd_ctx *c, const Cverse__Catalog__Command *cmd, int *status)
{
    *status = 0;
    switch (cmd->cmd_case) {
    case CVERSE__CATALOG__COMMAND__CMD_SET_CONFIG: return cmd__set_config(c, cmd->set_config, status);
    case CVERSE__CATALOG__COMMAND__CMD_REGISTER_NODE: return cmd__register(c, cmd->register_node, status);
    case CVERSE__CATALOG__COMMAND__CMD_RENEW_LEASE: return cmd__renew(c, cmd->renew_lease, status);
    case CVERSE__CATALOG__COMMAND__CMD_EXPIRE_NODE: return cmd__expire(c, cmd->expire_node, status);
    case CVERSE__CATALOG__COMMAND__CMD_SET_ROLE: return cmd__set_role(c, cmd->set_role, status);
    case CVERSE__CATALOG__COMMAND__CMD_ASSIGN_SHARDS: return cmd__assign(c, cmd->assign_shards, status);
    case CVERSE__CATALOG__COMMAND__CMD_CREATE_OBJECT:
        return cmd__create_object(c, cmd->create_object, status);
    case CVERSE__CATALOG__COMMAND__CMD_DELETE_OBJECT:
        return cmd__delete_object(c, cmd->delete_object, status);
    case CVERSE__CATALOG__COMMAND__CMD_RELEASE_SHARDS: return cmd__release(c, cmd->release_shards, status);
    case CVERSE__CATALOG__COMMAND__CMD_MOVE_SHARD: return cmd__move_shard(c, cmd->move_shard, status);
    case CVERSE__CATALOG__COMMAND__CMD_PIN_SHARD: return cmd__pin_shard(c, cmd->pin_shard, status);
    case CVERSE__CATALOG__COMMAND__CMD_DRAIN_NODE: return cmd__drain_node(c, cmd->drain_node, status);
    case CVERSE__CATALOG__COMMAND__CMD_SAVE_STATE: return cmd__save_state(c, cmd->save_state, status);
    case CVERSE__CATALOG__COMMAND__CMD_ADD_NODE: return cmd__add_node(c, cmd->add_node, status);
    case CVERSE__CATALOG__COMMAND__CMD_REMOVE_NODE: return cmd__remove_node(c, cmd->remove_node, status);
    default:
        *status = CV_EINVAL; /* no command, or one from a newer version */
        return 0;
    }
}
