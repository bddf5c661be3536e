/* The node's catalog change feed: what each applied catalog entry changed (nodes registered, expired,
 * drained, given a role; shards assigned, unassigned, released, given a target, pinned; the raft leader
 * and term), kept in a ring of CV_FEED_CAP entries so that a reader (the inspector) sees every change
 * exactly, also one undone a moment later, instead of diffing snapshots.
 *
 * Happy path: the host calls cv_feed_applied after every applied entry. The feed keeps its own copy of
 * the shard map (owner, epoch, target, pinned, released: a few bytes per shard, read from the catalog
 * when the feed is created), so an entry carries the old and the new owner and epoch without reading LMDB: an
 * owner change bumps the epoch by one (catalog/cmd.c). Node names are interned in a table, so an entry is
 * ~48 bytes and the ring's memory is fixed. GET /v1/events?after=N answers the entries with a higher
 * applied index, oldest first, a page at a time, and first_index: every change from that index on is
 * still in the ring, so a reader with after + 1 < first_index knows it missed some (and resyncs).
 *
 * Failure modes: the ring full (a burst such as the first assignment of every shard) drops the oldest
 * entries and raises first_index; a snapshot installed (the log entries before it were never applied
 * here) restarts the ring and its shard copy at the next entry; more than CV_FEED_NAMES node names show
 * as "?". Allocation happens once, in cv_feed_new. */
#include "node/feed.h"

#include <stdlib.h>
#include <string.h>

#include "consensus/consensus.h"
#include "cverse/error.h"
#include "util/log.h"

enum { SH_PINNED = 1, SH_RELEASED = 2 };

struct cv_feed {
    struct cv_feed_entry *ring; /* [CV_FEED_CAP] */
    uint64_t head, count;       /* entries pushed so far; kept = min(count, CV_FEED_CAP) */
    uint64_t floor;             /* changes at indices <= floor may be missing */
    char (*names)[CV_NODE_ID_MAX];
    uint16_t n_names;
    uint32_t shards;
    uint16_t *owner, *target; /* [shards] the feed's copy of the map */
    uint64_t *epoch;
    uint8_t *flags;
    uint16_t leader;
    uint64_t term, restored;
};

static const char *const kind_names[CV_FEED_N_KINDS] = {
    [CV_FEED_NODE_REGISTERED] = "node_registered", [CV_FEED_NODE_EXPIRED] = "node_expired",
    [CV_FEED_NODE_DRAIN] = "node_drain",           [CV_FEED_NODE_ROLE] = "node_role",
    [CV_FEED_SHARD_ASSIGNED] = "shard_assigned",   [CV_FEED_SHARD_UNASSIGNED] = "shard_unassigned",
    [CV_FEED_SHARD_RELEASED] = "shard_released",   [CV_FEED_SHARD_TARGET] = "shard_target",
    [CV_FEED_SHARD_PINNED] = "shard_pinned",       [CV_FEED_LEADER] = "leader_changed",
};

const char *cv_feed_kind_name(enum cv_feed_kind k)
{
    return (unsigned)k < CV_FEED_N_KINDS ? kind_names[k] : "unknown";
}

static void feed__prime(struct cv_feed *f, const struct cv_catalog *cat);

int cv_feed_new(const struct cv_catalog *cat, struct cv_feed **out)
{
    uint32_t shards = cv_catalog_shards(cat);
    if (!shards) return CV_EINVAL;
    struct cv_feed *f = calloc(1, sizeof *f);
    if (!f) return CV_ENOMEM;
    f->shards = shards;
    f->floor = cv_catalog_applied_index(cat);
    f->ring = calloc(CV_FEED_CAP, sizeof *f->ring);
    f->names = calloc(CV_FEED_NAMES, sizeof *f->names);
    f->owner = calloc(shards, sizeof *f->owner);
    f->target = calloc(shards, sizeof *f->target);
    f->epoch = calloc(shards, sizeof *f->epoch);
    f->flags = calloc(shards, 1);
    if (!f->ring || !f->names || !f->owner || !f->target || !f->epoch || !f->flags) {
        cv_feed_free(f);
        return CV_ENOMEM;
    }
    f->n_names = 1; /* 0 = "" */
    strcpy(f->names[CV_FEED_NAMES - 1], "?");
    feed__prime(f, cat);
    *out = f;
    return 0;
}

void cv_feed_free(struct cv_feed *f)
{
    if (!f) return;
    free(f->ring);
    free(f->names);
    free(f->owner);
    free(f->target);
    free(f->epoch);
    free(f->flags);
    free(f);
}

uint16_t cv_feed_name(struct cv_feed *f, const char *id)
{
    if (!id || !*id) return 0;
    for (uint16_t i = 1; i < f->n_names; i++)
        if (strncmp(f->names[i], id, CV_NODE_ID_MAX - 1) == 0) return i;
    if (f->n_names >= CV_FEED_NAMES - 1) return CV_FEED_NAMES - 1;
    snprintf(f->names[f->n_names], CV_NODE_ID_MAX, "%s", id);
    return f->n_names++;
}

void cv_feed_push(struct cv_feed *f, const struct cv_feed_entry *e)
{
    struct cv_feed_entry *slot = &f->ring[f->head % CV_FEED_CAP];
    if (f->count >= CV_FEED_CAP && slot->index > f->floor) f->floor = slot->index;
    *slot = *e;
    f->head++;
    f->count++;
}

uint64_t cv_feed_first_index(const struct cv_feed *f)
{
    return f->floor + 1;
}

uint64_t cv_feed_last_index(const struct cv_feed *f)
{
    return f->count ? f->ring[(f->head - 1) % CV_FEED_CAP].index : 0;
}

/* ---- recording what an applied entry changed ---------------------------------------------------------- */

/* (Re)reads the feed's copy of the shard map from the catalog. */
static void feed__prime(struct cv_feed *f, const struct cv_catalog *cat)
{
    for (uint32_t s = 0; s < f->shards; s++) {
        struct cv_catalog_shard sh;
        if (cv_catalog_shard_get(cat, s, &sh) != 0) continue;
        f->owner[s] = cv_feed_name(f, sh.owner);
        f->target[s] = cv_feed_name(f, sh.target);
        f->epoch[s] = sh.epoch;
        f->flags[s] = (uint8_t)((sh.pinned ? SH_PINNED : 0) |
                                (*sh.released_by && sh.released_epoch == sh.epoch ? SH_RELEASED : 0));
    }
}

static void feed__shard(struct cv_feed *f, struct cv_feed_entry *e, enum cv_feed_kind k, uint32_t s, uint16_t from,
                        uint16_t to)
{
    e->kind = (uint8_t)k;
    e->shard = s;
    e->from = from;
    e->to = to;
    e->old_epoch = e->epoch = f->epoch[s];
    e->node = e->flag = 0;
}

static void feed__assign(struct cv_feed *f, struct cv_feed_entry *e, const Cverse__Catalog__CmdAssignShards *c)
{
    for (size_t i = 0; i < c->n_shards; i++) {
        uint32_t s = c->shards[i]->shard;
        uint16_t to = cv_feed_name(f, c->shards[i]->owner);
        if (s >= f->shards || f->owner[s] == to) continue; /* unchanged owner: no change, no new epoch */
        feed__shard(f, e, to ? CV_FEED_SHARD_ASSIGNED : CV_FEED_SHARD_UNASSIGNED, s, f->owner[s], to);
        e->epoch = ++f->epoch[s];
        f->owner[s] = to;
        f->flags[s] &= (uint8_t)~SH_RELEASED;
        cv_feed_push(f, e);
    }
}

static void feed__release(struct cv_feed *f, struct cv_feed_entry *e, const Cverse__Catalog__CmdReleaseShards *c)
{
    uint16_t node = cv_feed_name(f, c->node);
    for (size_t i = 0; i < c->n_shards; i++) {
        uint32_t s = c->shards[i];
        if (s >= f->shards || (f->flags[s] & SH_RELEASED)) continue; /* a retried release */
        feed__shard(f, e, CV_FEED_SHARD_RELEASED, s, node, 0);
        e->node = node;
        f->flags[s] |= SH_RELEASED;
        cv_feed_push(f, e);
    }
}

static void feed__operator(struct cv_feed *f, struct cv_feed_entry *e, const Cverse__Catalog__Command *c)
{
    if (c->cmd_case == CVERSE__CATALOG__COMMAND__CMD_MOVE_SHARD) {
        uint32_t s = c->move_shard->shard;
        uint16_t to = cv_feed_name(f, c->move_shard->node);
        if (s >= f->shards || f->target[s] == to) return;
        feed__shard(f, e, CV_FEED_SHARD_TARGET, s, f->target[s], to);
        f->target[s] = to;
    } else {
        uint32_t s = c->pin_shard->shard;
        bool pinned = c->pin_shard->pinned;
        if (s >= f->shards || !!(f->flags[s] & SH_PINNED) == pinned) return;
        feed__shard(f, e, CV_FEED_SHARD_PINNED, s, f->owner[s], f->owner[s]);
        e->flag = pinned;
        f->flags[s] = (uint8_t)(pinned ? f->flags[s] | SH_PINNED : f->flags[s] & ~SH_PINNED);
    }
    cv_feed_push(f, e);
}

static void feed__node(struct cv_feed *f, struct cv_feed_entry *e, const struct cv_catalog *cat,
                       enum cv_feed_kind k, const char *node, int flag)
{
    const struct cv_catalog_node *cn = cv_catalog_node_get(cat, node);
    e->kind = (uint8_t)k;
    e->node = cv_feed_name(f, node);
    e->from = e->to = 0;
    e->shard = 0;
    e->flag = (uint8_t)flag;
    e->old_epoch = e->epoch = cn ? cn->incarnation : 0;
    cv_feed_push(f, e);
}

static void feed__command(struct cv_feed *f, struct cv_feed_entry *e, const struct cv_catalog *cat,
                          const Cverse__Catalog__Command *c)
{
    switch (c->cmd_case) {
    case CVERSE__CATALOG__COMMAND__CMD_ASSIGN_SHARDS: feed__assign(f, e, c->assign_shards); break;
    case CVERSE__CATALOG__COMMAND__CMD_RELEASE_SHARDS: feed__release(f, e, c->release_shards); break;
    case CVERSE__CATALOG__COMMAND__CMD_MOVE_SHARD:
    case CVERSE__CATALOG__COMMAND__CMD_PIN_SHARD: feed__operator(f, e, c); break;
    case CVERSE__CATALOG__COMMAND__CMD_REGISTER_NODE:
        if (c->register_node->info) feed__node(f, e, cat, CV_FEED_NODE_REGISTERED, c->register_node->info->id, 0);
        break;
    case CVERSE__CATALOG__COMMAND__CMD_EXPIRE_NODE:
        feed__node(f, e, cat, CV_FEED_NODE_EXPIRED, c->expire_node->node, 0);
        break;
    case CVERSE__CATALOG__COMMAND__CMD_DRAIN_NODE:
        feed__node(f, e, cat, CV_FEED_NODE_DRAIN, c->drain_node->node, c->drain_node->drain);
        break;
    case CVERSE__CATALOG__COMMAND__CMD_SET_ROLE:
        feed__node(f, e, cat, CV_FEED_NODE_ROLE, c->set_role->node, (int)c->set_role->role);
        break;
    default: break; /* lease renewals, objects, config: not changes the feed reports */
    }
}

/* A leader or term other than the last one recorded: one CV_FEED_LEADER entry. Also notices an
 * installed snapshot: the ring restarts with the map as the catalog has it after this entry, whose own
 * changes are then not recorded (false). */
static bool feed__consensus(struct cv_feed *f, const struct cv_catalog *cat, struct cv_consensus *cons,
                            struct cv_feed_entry *e)
{
    struct cv_consensus_status st;
    cv_consensus_status(cons, &st);
    bool restarted = st.snapshots_restored != f->restored;
    if (restarted) {
        f->restored = st.snapshots_restored;
        f->head = f->count = 0;
        f->floor = e->index;
        feed__prime(f, cat);
    }
    uint16_t leader = cv_feed_name(f, st.leader_id);
    if (leader == f->leader && st.term == f->term) return !restarted;
    *e = (struct cv_feed_entry){.index = e->index, .time_ms = e->time_ms, .kind = CV_FEED_LEADER,
                                .node = leader, .from = f->leader, .old_epoch = f->term, .epoch = st.term};
    f->leader = leader;
    f->term = st.term;
    cv_feed_push(f, e);
    return !restarted;
}

void cv_feed_applied(struct cv_feed *f, const struct cv_catalog *cat, struct cv_consensus *cons, uint64_t index,
                     const Cverse__Catalog__Batch *batch, const struct cv_cmd_result *results)
{
    struct cv_feed_entry e = {.index = index, .time_ms = cv_now_ms()};
    if (cons && !feed__consensus(f, cat, cons, &e)) return;
    for (size_t i = 0; i < batch->n_commands; i++) {
        if (results[i].status) continue; /* a refused command changed nothing */
        e = (struct cv_feed_entry){.index = index, .time_ms = e.time_ms};
        feed__command(f, &e, cat, batch->commands[i]);
    }
}

/* ---- reading ------------------------------------------------------------------------------------------ */

size_t cv_feed_since(const struct cv_feed *f, uint64_t after, size_t max, bool *more, cv_feed_fn fn, void *data)
{
    uint64_t kept = f->count < CV_FEED_CAP ? f->count : CV_FEED_CAP;
    size_t n = 0;
    if (!max) max = CV_FEED_PAGE;
    *more = false;
    for (uint64_t k = f->head - kept; k < f->head; k++) {
        const struct cv_feed_entry *e = &f->ring[k % CV_FEED_CAP];
        if (e->index <= after) continue;
        if (n >= max && e->index != f->ring[(k - 1) % CV_FEED_CAP].index) { /* a page ends with an index */
            *more = true;
            break;
        }
        fn(data, e, f->names[e->node], f->names[e->from], f->names[e->to]);
        n++;
    }
    return n;
}

static void feed__entry_json(void *data, const struct cv_feed_entry *e, const char *node, const char *from,
                             const char *to)
{
    json_t *j = json_pack("{s:I, s:I, s:s}", "index", (json_int_t)e->index, "time_ms", (json_int_t)e->time_ms,
                          "kind", cv_feed_kind_name(e->kind));
    if (!j) return;
    switch (e->kind) {
    case CV_FEED_LEADER:
        json_object_set_new(j, "leader", *node ? json_string(node) : json_null());
        json_object_set_new(j, "previous", *from ? json_string(from) : json_null());
        json_object_set_new(j, "term", json_integer((json_int_t)e->epoch));
        break;
    case CV_FEED_NODE_REGISTERED: case CV_FEED_NODE_EXPIRED: case CV_FEED_NODE_DRAIN: case CV_FEED_NODE_ROLE:
        json_object_set_new(j, "node", json_string(node));
        json_object_set_new(j, "incarnation", json_integer((json_int_t)e->epoch));
        if (e->kind == CV_FEED_NODE_DRAIN) json_object_set_new(j, "drain", json_boolean(e->flag));
        if (e->kind == CV_FEED_NODE_ROLE) json_object_set_new(j, "role", json_integer(e->flag));
        break;
    default:
        json_object_set_new(j, "shard", json_integer(e->shard));
        json_object_set_new(j, "from", *from ? json_string(from) : json_null());
        json_object_set_new(j, "to", *to ? json_string(to) : json_null());
        json_object_set_new(j, "old_epoch", json_integer((json_int_t)e->old_epoch));
        json_object_set_new(j, "epoch", json_integer((json_int_t)e->epoch));
        if (e->kind == CV_FEED_SHARD_PINNED) json_object_set_new(j, "pinned", json_boolean(e->flag));
        break;
    }
    json_array_append_new(data, j);
}

json_t *cv_feed_json(const struct cv_feed *f, const char *self, uint64_t applied, uint64_t after)
{
    json_t *events = json_array();
    if (!events) return NULL;
    bool more;
    cv_feed_since(f, after, 0, &more, feed__entry_json, events);
    return json_pack("{s:s, s:I, s:I, s:I, s:b, s:o}", "node", self, "first_index",
                     (json_int_t)cv_feed_first_index(f), "last_index", (json_int_t)cv_feed_last_index(f),
                     "applied_index", (json_int_t)applied, "more", more, "events", events);
}
