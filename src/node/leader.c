/* Leader duties. While this node leads the raft group it compares the catalog with what it should be and
 * proposes the difference — every RUN_MS while something moves (a proposal in flight, shards waiting for
 * a release, a death being followed, a membership change), else after each applied entry (at most every
 * RUN_MS: cv_leader_changed), at the next lease deadline, and at least every IDLE_RUN_MS:
 *   1. the config fingerprint (first thing a new cluster records);
 *   2. lease expiry: a node is declared dead once this node's monotonic clock passed ttl + margin after
 *      the latest of: the start of its leadership (the lessor's, past the barrier of its term), the
 *      arrival of the node's latest renewal it granted, its apply of the node's latest registration
 *      (cv_lease_expires_at; the timer wakes at that instant). The lessor refuses the node's renewals
 *      from the decision on, and the ExpireNode is bound to the term it was decided in (never forwarded
 *      or re-proposed under another leader: consensus.h) with a compare-and-set on the node's recorded
 *      expiry (every registration moves it), so a registration that commits first wins;
 *   3. the shard map: cv_assign_constrained over the eligible nodes (live and not draining), with the
 *      shards an operator fixed (a live, undrained target; else a pinned shard's live, undrained owner)
 *      going to that node, filtered by cv_assign_handoff (a shard
 *      leaving a live owner is first unassigned; it gets its new owner only once the old one released
 *      it with ReleaseShards, or was declared dead), proposed as one compare-and-set on every moved
 *      shard's epoch, so a decision taken on stale state is rejected, never half-applied;
 *   4. raft membership: take nodes removed for good (CmdRemoveNode) out of the raft configuration; keep cfg voters voters alive by promoting live standbys when a voter is dead,
 *      then demoting the dead voter to standby (a spare hears nothing from raft, so it could not come back);
 *      any spare (older logs) becomes a standby, alive or not (a dead spare could never register again);
 *   5. the catalog's copy of each node's raft role.
 * Nodes are numbered by the leader's member table: the config's nodes first (in their order, so that ties in
 * the assignment fall as before), then every other node the catalog knows (members that joined later), in
 * the order they were first seen; an index never changes while the process lives (a removed or dead node
 * simply is not live).
 * Each kind has at most one proposal in flight; a failed or conflicting proposal is simply recomputed at
 * the next run. Nothing here blocks: decisions are pure functions of the catalog and raft configuration.
 * It also observes failovers: from a node's ExpireNode (which unassigns its shards) to the moment none
 * of them waits for an owner any more, one log line and one histogram sample each (cv_leader_stats).
 * On a node that does not lead, the timer stops once no death is followed; becoming leader
 * (cv_leader_kick) or a death starts it again.
 */
#include "node/leader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/assign.h"
#include "consensus/leases.h"
#include "core/lease.h"
#include "cverse/error.h"
#include "util/buf.h"
#include "util/log.h"

#define RUN_MS 50
#define IDLE_RUN_MS 1000

enum duty { D_CONFIG, D_EXPIRE, D_ASSIGN, D_ROLE, D_COUNT };

struct cv_leader {
    struct cv_leader_opts o;  /* borrowed components */
    bool stopped;
    bool closing;             /* cv_leader_close ran: freed once the timer closed and inflight is 0 */
    bool timer_open;          /* the timer's close callback has not run yet */
    uv_timer_t timer;
    int inflight[D_COUNT];    /* proposals whose callback (duty__done) is still owed */
    int32_t *cur, *next, *waiting, *fixed; /* per shard: index into members or CV_ASSIGN_NONE */
    struct member *members; /* the member table (file comment) */
    size_t n_members, cap_members;
    uint8_t *live, *elig; /* per member: alive; alive and not draining (may take shards); cap_members */
    size_t cap_flags;
    uint64_t since;       /* cv_mono_ms when this run first saw us leading (0: not leading) */
    int replaced;         /* member index of the leader we replaced (no grace for it), or -1 */
    uint64_t restored;    /* raft snapshots installed into the catalog, as of the last seen reset */
    uint64_t last_run_ms; /* cv_mono_ms of the last run */
    uint64_t next_expiry; /* cv_mono_ms when the next lease may be declared expired (UINT64_MAX: none) */
    bool busy;            /* this run saw something in motion: run again within RUN_MS */
    struct cv_leader_stats stats;
    uint32_t waiting_logged;
    void (*done)(void *data);
    void *done_data;
};

struct member {
    char id[CV_NODE_ID_MAX];
    uint64_t seen;        /* cv_mono_ms when its latest renewal applied here (0: none) */
    uint64_t died;        /* cv_mono_ms when its ExpireNode applied here, until its shards all have new
                           * owners (0: no failover pending) */
    uint32_t died_shards; /* shards waiting for an owner when it was declared dead */
    uint64_t removed_seen; /* cv_mono_ms when this leader first saw it removed (0: not yet) */
};

struct duty_ctx {
    struct cv_leader *l;
    enum duty d;
    uint32_t moves; /* D_ASSIGN: shards the proposal gives an owner */
    char node[CV_NODE_ID_MAX]; /* D_EXPIRE: the node declared dead */
};

static void leader__settle(struct cv_leader *l);
static void run(uv_timer_t *t);

/* The member index of a node id, or -1. */
static int leader__index(const struct cv_leader *l, const char *id)
{
    for (size_t i = 0; id && *id && i < l->n_members; i++)
        if (!strcmp(l->members[i].id, id)) return (int)i;
    return -1;
}

/* The member index of a node id, added at the end if new; -1 out of memory. */
static int leader__member(struct cv_leader *l, const char *id)
{
    int k = leader__index(l, id);
    if (k >= 0 || !id || !*id) return k;
    if (cv_array_grow((void **)&l->members, &l->cap_members, l->n_members + 1, sizeof *l->members)) return -1;
    size_t cap = l->cap_flags;
    if (cv_array_grow((void **)&l->live, &cap, l->n_members + 1, 1) ||
        cv_array_grow((void **)&l->elig, &l->cap_flags, l->n_members + 1, 1))
        return -1;
    l->members[l->n_members] = (struct member){0};
    snprintf(l->members[l->n_members].id, sizeof l->members[0].id, "%s", id);
    return (int)l->n_members++;
}

/* Adds the catalog's nodes the table does not hold yet (members that joined). */
static void leader__sync_members(struct cv_leader *l)
{
    for (size_t i = 0; i < cv_catalog_node_count(l->o.catalog); i++)
        leader__member(l, cv_catalog_node_at(l->o.catalog, i)->id);
}

static void duty__done(void *data, int status, uint64_t index)
{
    struct duty_ctx *dc = data;
    struct cv_leader *l = dc->l;
    enum duty d = dc->d;
    if (status == 0) l->stats.shard_moves += dc->moves;
    /* An expiry that certainly did not apply (refused by its compare-and-set, overwritten, never
     * appended): the node's renewals may be granted again. Timed out: unknown, the mark stays (until
     * a new term: then the catalog's word decides). */
    if (d == D_EXPIRE && (status == CV_ECONFLICT || status == CV_ERETRY || status == CV_ENOTLEADER))
        cv_leases_registered(cv_consensus_leases(l->o.consensus), dc->node);
    free(dc);
    l->inflight[d]--;
    if (status && status != CV_ECONFLICT && status != CV_ECANCELED && status != CV_ERETRY)
        CV_DEBUG("leader duty %d: proposal failed: %s", d, cv_strerror(status));
    if (status == 0 && d != D_ROLE) cv_leader_kick(l);
    else cv_leader_changed(l); /* recomputed at the next run */
    leader__settle(l); /* closing: this may have been the last callback owed */
}

/* term: 0, or the term the proposal must be appended in (consensus.h cv_consensus_propose_in_term). */
static void propose_in(struct cv_leader *l, enum duty d, Cverse__Catalog__Command *cmd, uint32_t moves,
                       uint64_t term, const char *node)
{
    struct duty_ctx *dc = calloc(1, sizeof *dc);
    if (!dc) return;
    dc->l = l;
    dc->d = d;
    dc->moves = moves;
    if (node) snprintf(dc->node, sizeof dc->node, "%s", node);
    if (cv_consensus_propose_in_term(l->o.consensus, cmd, term, 3000, duty__done, dc)) {
        if (d == D_EXPIRE && node) cv_leases_registered(cv_consensus_leases(l->o.consensus), node);
        free(dc);
        l->busy = true; /* tried again at the next run */
        return;
    }
    l->inflight[d]++;
}

static void propose(struct cv_leader *l, enum duty d, Cverse__Catalog__Command *cmd, uint32_t moves)
{
    propose_in(l, d, cmd, moves, 0, NULL);
}

static void duty__config(struct cv_leader *l)
{
    const struct cv_config *cfg = l->o.cfg;
    if (l->o.joined || cv_catalog_config_fingerprint(l->o.catalog) == cfg->fingerprint) return;
    Cverse__Catalog__CmdSetConfig sc = CVERSE__CATALOG__CMD_SET_CONFIG__INIT;
    sc.fingerprint = cfg->fingerprint;
    sc.shards = cfg->shards;
    Cverse__Catalog__Command cmd = CVERSE__CATALOG__COMMAND__INIT;
    cmd.cmd_case = CVERSE__CATALOG__COMMAND__CMD_SET_CONFIG;
    cmd.set_config = &sc;
    propose(l, D_CONFIG, &cmd, 0);
}

static void duty__expire(struct cv_leader *l)
{
    struct cv_catalog *cat = l->o.catalog;
    struct cv_leases *ls = cv_consensus_leases(l->o.consensus);
    uint64_t now = cv_mono_ms(), ttl = l->o.cfg->lease_ttl_ms, next = UINT64_MAX, term, since;
    if (!cv_leases_leading(ls, &term, &since)) { /* not past our term's barrier: judge nobody yet */
        l->busy = true;
        return;
    }
    for (size_t i = 0; i < cv_catalog_node_count(cat); i++) {
        const struct cv_catalog_node *cn = cv_catalog_node_at(cat, i);
        int k = leader__index(l, cn->id);
        if (!cn->alive) continue;
        /* Renewals are granted by leaders' rounds, not logged: an earlier leader's grants were all sent
         * before we took over (core/lessor.h), so count from our start at the least; from the latest
         * renewal we granted, or registration we applied, when later. */
        uint64_t seen = k >= 0 ? l->members[k].seen : 0, granted = cv_leases_seen(ls, cn->id);
        seen = seen > granted ? seen : granted;
        seen = seen > since ? seen : since;
        bool replaced = k >= 0 && k == l->replaced;
        uint64_t at = cv_lease_expires_at(seen, since, ttl, false);
        if (now < at) {
            next = at < next ? at : next;
            continue;
        }
        CV_INFO("lease of %s not renewed for %llu ms (ttl %llu + margin %llu%s): declaring it dead", cn->id,
                (unsigned long long)(now - seen), (unsigned long long)ttl,
                (unsigned long long)cv_lease_margin(ttl), replaced ? ", the leader we replaced" : "");
        cv_leases_expire(ls, cn->id); /* no renewal of it granted from now on */
        Cverse__Catalog__CmdExpireNode ex = CVERSE__CATALOG__CMD_EXPIRE_NODE__INIT;
        ex.node = (char *)cn->id;
        ex.expiry_ms = cn->lease_expiry_ms;
        Cverse__Catalog__Command cmd = CVERSE__CATALOG__COMMAND__INIT;
        cmd.cmd_case = CVERSE__CATALOG__COMMAND__CMD_EXPIRE_NODE;
        cmd.expire_node = &ex;
        propose_in(l, D_EXPIRE, &cmd, 0, term, cn->id);
    }
    l->next_expiry = next; /* the run wakes exactly then */
}

/* The node a shard is fixed to (member index) or CV_ASSIGN_NONE: its target if that node
 * is eligible; else, if pinned, its current owner if that one is eligible. A target that died or
 * drains stays recorded but is not followed: the shard is balanced meanwhile. Drain wins over pin. */
static int32_t leader__fixed(struct cv_leader *l, const struct cv_catalog_shard *sh, int32_t cur)
{
    int32_t t = *sh->target ? leader__index(l, sh->target) : CV_ASSIGN_NONE;
    if (t >= 0 && l->elig[t]) return t;
    if (sh->pinned && cur >= 0 && l->elig[cur]) return cur;
    return CV_ASSIGN_NONE;
}

/* Fills l->live and l->elig from the catalog, l->cur from the shard map, l->waiting from the shard
 * lifecycle and l->fixed from the operator's wishes; returns the number of eligible nodes. */
static size_t leader__load_state(struct cv_leader *l)
{
    const struct cv_config *cfg = l->o.cfg;
    struct cv_catalog *cat = l->o.catalog;
    size_t n_elig = 0;
    leader__sync_members(l);
    for (size_t i = 0; i < l->n_members; i++) {
        const struct cv_catalog_node *cn = cv_catalog_node_get(cat, l->members[i].id);
        l->live[i] = cn && cn->alive;
        l->elig[i] = l->live[i] && !cn->draining;
        n_elig += l->elig[i];
    }
    for (uint32_t s = 0; s < cfg->shards; s++) {
        struct cv_catalog_shard sh;
        if (cv_catalog_shard_get(cat, s, &sh) != 0) continue;
        l->cur[s] = *sh.owner ? leader__index(l, sh.owner) : CV_ASSIGN_NONE;
        /* The node whose release the shard's lifecycle says is still owed (cv_assign_handoff waits for
         * it while it lives). */
        l->waiting[s] = cv_shard_must_confirm(sh.state) ? leader__index(l, sh.released_by)
                                                        : CV_ASSIGN_NONE;
        l->fixed[s] = leader__fixed(l, &sh, l->cur[s]);
    }
    return n_elig;
}

static void duty__assign(struct cv_leader *l)
{
    const struct cv_config *cfg = l->o.cfg;
    /* No eligible node (none alive, or every live one drains): the map stays as it is, rather than
     * taking every shard offline. */
    if (leader__load_state(l) == 0) return;
    uint32_t n = (uint32_t)l->n_members, releasing = 0, waiting = 0;
    if (cv_assign_constrained(l->cur, l->fixed, cfg->shards, l->elig, n, l->next) == 0) return;
    uint32_t moved = cv_assign_handoff(l->cur, l->next, l->waiting, cfg->shards, l->live, n, l->next);
    for (uint32_t s = 0; s < cfg->shards; s++) {
        releasing += l->cur[s] != CV_ASSIGN_NONE && l->next[s] == CV_ASSIGN_NONE;
        waiting += l->cur[s] == CV_ASSIGN_NONE && l->next[s] == CV_ASSIGN_NONE;
    }
    l->busy |= waiting > 0 || moved > 0;
    if (moved == 0) {
        if (waiting != l->waiting_logged) CV_DEBUG("shard map: %u shards wait for their release", waiting);
        l->waiting_logged = waiting;
        return;
    }
    Cverse__Catalog__ShardAssignment *as = calloc(moved, sizeof *as);
    Cverse__Catalog__ShardAssignment **ptrs = calloc(moved, sizeof *ptrs);
    if (!as || !ptrs) goto out;
    uint32_t k = 0, owners = 0;
    for (uint32_t s = 0; s < cfg->shards && k < moved; s++) {
        if (l->next[s] == l->cur[s]) continue;
        uint64_t epoch = 0;
        cv_catalog_shard_owner(l->o.catalog, s, &epoch);
        cverse__catalog__shard_assignment__init(&as[k]);
        as[k].shard = s;
        as[k].owner = l->next[s] >= 0 ? l->members[l->next[s]].id : "";
        as[k].expect_epoch = epoch;
        owners += l->next[s] >= 0;
        ptrs[k] = &as[k];
        k++;
    }
    Cverse__Catalog__CmdAssignShards a = CVERSE__CATALOG__CMD_ASSIGN_SHARDS__INIT;
    a.n_shards = k;
    a.shards = ptrs;
    Cverse__Catalog__Command cmd = CVERSE__CATALOG__COMMAND__INIT;
    cmd.cmd_case = CVERSE__CATALOG__COMMAND__CMD_ASSIGN_SHARDS;
    cmd.assign_shards = &a;
    CV_INFO("shard map: moving %u shards (%u released by their live owner first; %u wait for a release)",
            k - releasing, releasing, waiting);
    propose(l, D_ASSIGN, &cmd, owners);
out:
    free(as);
    free(ptrs);
}

/* Liveness for membership: 1 alive, 0 declared dead, -1 unknown (never registered: not judged). */
static int liveness(struct cv_leader *l, const char *id)
{
    const struct cv_catalog_node *cn = cv_catalog_node_get(l->o.catalog, id);
    return cn ? cn->alive : -1;
}

static int assign(struct cv_leader *l, size_t i, int role)
{
    l->busy = true;
    return cv_consensus_assign(l->o.consensus, l->members[i].id, role, NULL, NULL) == 0;
}

static void duty__membership(struct cv_leader *l)
{
    const struct cv_config *cfg = l->o.cfg;
    if (cv_consensus_change_pending(l->o.consensus)) {
        l->busy = true; /* its end is not reported to us */
        return;
    }
    leader__sync_members(l);
    /* Removed for good (cverse remove-node): out of raft, but only after a grace of two election timeouts,
     * so that the node applies its RemoveNode (and stops) first: once out, raft sends it nothing more. */
    uint64_t now = cv_mono_ms(), grace = 2ull * cfg->raft.election_timeout_ms;
    for (size_t i = 0; i < l->n_members; i++) {
        struct member *m = &l->members[i];
        const struct cv_catalog_node *cn = cv_catalog_node_get(l->o.catalog, m->id);
        if (!cn || !cn->removed || !strcmp(cn->id, l->o.self->id) ||
            cv_consensus_member_role(l->o.consensus, cn->id) == CV_MEMBER_NONE)
            continue;
        if (!m->removed_seen) m->removed_seen = now;
        l->busy = true;
        if (now - m->removed_seen >= grace) {
            cv_consensus_remove(l->o.consensus, cn->id);
            return;
        }
    }
    size_t voters = 0, dead_voter = SIZE_MAX, spare = SIZE_MAX, cand = SIZE_MAX, last_voter = SIZE_MAX;
    for (size_t i = 0; i < l->n_members; i++) {
        int role = cv_consensus_member_role(l->o.consensus, l->members[i].id);
        int live = liveness(l, l->members[i].id);
        bool self = !strcmp(l->members[i].id, l->o.self->id);
        if (role == CV_MEMBER_VOTER) {
            voters++;
            if (live == 0 && !self) dead_voter = i;
            if (live == 1 && !self) last_voter = i;
        } else {
            if (live == 1 && role != CV_MEMBER_NONE && cand == SIZE_MAX) cand = i;
            if (role == CV_MEMBER_SPARE && spare == SIZE_MAX) spare = i;
        }
    }
    size_t target = cfg->raft.voters;
    if ((voters < target || (dead_voter != SIZE_MAX && voters <= target)) && cand != SIZE_MAX) {
        if (dead_voter != SIZE_MAX)
            CV_INFO("voter %s is dead: promoting standby %s", l->members[dead_voter].id, l->members[cand].id);
        assign(l, cand, CV_MEMBER_VOTER);
    } else if (voters > target && dead_voter != SIZE_MAX) {
        /* Standby, not spare: raft sends a spare nothing, so one cut off by a partition would never learn
         * the leader after the heal and could not register again (test_partition; also a restarted one). */
        assign(l, dead_voter, CV_MEMBER_STANDBY);
    } else if (voters > target && last_voter != SIZE_MAX) {
        assign(l, last_voter, CV_MEMBER_STANDBY);
    } else if (spare != SIZE_MAX) {
        assign(l, spare, CV_MEMBER_STANDBY);
    }
}

static int leader__catalog_role(int raft_role)
{
    switch (raft_role) {
    case CV_MEMBER_VOTER: return CVERSE__CATALOG__ROLE__ROLE_VOTER;
    case CV_MEMBER_STANDBY: return CVERSE__CATALOG__ROLE__ROLE_STANDBY;
    case CV_MEMBER_SPARE: return CVERSE__CATALOG__ROLE__ROLE_SPARE;
    default: return CVERSE__CATALOG__ROLE__ROLE_UNKNOWN;
    }
}

static void duty__roles(struct cv_leader *l)
{
    struct cv_catalog *cat = l->o.catalog;
    for (size_t i = 0; i < cv_catalog_node_count(cat); i++) {
        const struct cv_catalog_node *cn = cv_catalog_node_at(cat, i);
        int want = leader__catalog_role(cv_consensus_member_role(l->o.consensus, cn->id));
        if (want == cn->role) continue;
        Cverse__Catalog__CmdSetRole sr = CVERSE__CATALOG__CMD_SET_ROLE__INIT;
        sr.node = (char *)cn->id;
        sr.role = want;
        Cverse__Catalog__Command cmd = CVERSE__CATALOG__COMMAND__INIT;
        cmd.cmd_case = CVERSE__CATALOG__COMMAND__CMD_SET_ROLE;
        cmd.set_role = &sr;
        propose(l, D_ROLE, &cmd, 0);
    }
}

/* Shards unassigned from node that still wait for an owner (its ExpireNode made it their released_by;
 * an AssignShards clears that). */
static uint32_t leader__orphans(struct cv_leader *l, const char *node)
{
    uint32_t n = 0;
    for (uint32_t s = 0; s < cv_catalog_shards(l->o.catalog); s++) {
        struct cv_catalog_shard sh;
        if (cv_catalog_shard_get(l->o.catalog, s, &sh) == 0 && !*sh.owner && !strcmp(sh.released_by, node)) n++;
    }
    return n;
}

/* Ends the failovers whose shards all have owners again; the leader observes them (log + histogram). */
/* Whether a death is being followed (its shards have no new owner yet). */
static bool leader__deaths(const struct cv_leader *l)
{
    for (size_t i = 0; i < l->n_members; i++)
        if (l->members[i].died) return true;
    return false;
}

static void leader__failovers(struct cv_leader *l)
{
    for (size_t i = 0; i < l->n_members; i++) {
        struct member *m = &l->members[i];
        if (!m->died || leader__orphans(l, m->id) > 0) continue;
        uint64_t ms = cv_mono_ms() - m->died;
        m->died = 0;
        if (!l->since) continue; /* not leading: the leader observes it */
        cv_hist_record(&l->stats.failover, (double)ms / 1000.0);
        l->stats.failovers++;
        l->stats.last_failover_ms = ms;
        CV_INFO("failover of %s: its %u shards have new owners %llu ms after it was declared dead",
                m->id, m->died_shards, (unsigned long long)ms);
    }
}

/* A snapshot installed into the catalog may hold renewals this process never applied one by one, so
 * `seen` would predate them (and ExpireNode's compare-and-set would not catch them: they are in the
 * catalog already). Every renewal in it was proposed before now: count every node from now. Runs
 * before any duty, so no decision uses the old readings. */
static void leader__restored(struct cv_leader *l, const struct cv_consensus_status *st)
{
    if (st->snapshots_restored == l->restored) return;
    l->restored = st->snapshots_restored;
    uint64_t now = cv_mono_ms();
    for (size_t k = 0; k < l->n_members; k++) l->members[k].seen = now;
}

/* The timer (one-shot) fires within ms, or earlier if it already does. */
static void leader__arm(struct cv_leader *l, uint64_t ms)
{
    if (uv_is_active((uv_handle_t *)&l->timer) && uv_timer_get_due_in(&l->timer) <= ms) return;
    uv_timer_start(&l->timer, run, ms, 0);
}

static void run(uv_timer_t *t)
{
    struct cv_leader *l = t->data;
    struct cv_consensus_status st;
    if (l->stopped) return;
    l->last_run_ms = cv_mono_ms();
    cv_consensus_status(l->o.consensus, &st);
    leader__restored(l, &st);
    if (!st.is_leader || !st.leader_since_ms) {
        l->since = 0;
        leader__failovers(l);
        /* Nothing to do until we lead (cv_leader_kick) or a node dies (cv_leader_node_died): an idle
         * follower does not wake 20 times a second for nothing. */
        if (leader__deaths(l)) leader__arm(l, RUN_MS);
        return;
    }
    if (!l->since) { /* later than the real start of leadership: errs safe */
        l->since = cv_mono_ms();
        l->replaced = leader__index(l, st.prev_leader_id);
    }
    l->busy = false;
    l->next_expiry = UINT64_MAX;
    if (!l->inflight[D_CONFIG]) duty__config(l);
    if (!l->inflight[D_EXPIRE]) duty__expire(l);
    if (!l->inflight[D_ASSIGN] && !l->inflight[D_EXPIRE]) duty__assign(l);
    duty__membership(l);
    if (!l->inflight[D_ROLE]) duty__roles(l);
    leader__failovers(l);
    for (int d = 0; d < D_COUNT; d++) l->busy |= l->inflight[d] > 0;
    uint64_t now = cv_mono_ms(), ms = l->busy || leader__deaths(l) ? RUN_MS : IDLE_RUN_MS;
    if (l->next_expiry != UINT64_MAX) ms = l->next_expiry <= now ? 1 : l->next_expiry - now < ms ? l->next_expiry - now : ms;
    leader__arm(l, ms); /* never 0 from inside run: libuv < 1.48 would run it again in this same pass */
}

static void leader__free(struct cv_leader *l)
{
    free(l->cur);
    free(l->next);
    free(l->waiting);
    free(l->fixed);
    free(l->live);
    free(l->elig);
    free(l->members);
    free(l);
}

int cv_leader_init(const struct cv_leader_opts *opts, struct cv_leader **out)
{
    struct cv_leader *l = calloc(1, sizeof *l);
    if (!l) return CV_ENOMEM;
    l->o = *opts;
    l->cur = calloc(opts->cfg->shards, sizeof *l->cur);
    l->next = calloc(opts->cfg->shards, sizeof *l->next);
    l->waiting = calloc(opts->cfg->shards, sizeof *l->waiting);
    l->fixed = calloc(opts->cfg->shards, sizeof *l->fixed);
    bool ok = l->cur && l->next && l->waiting && l->fixed;
    for (size_t i = 0; ok && i < opts->cfg->n_nodes; i++) ok = leader__member(l, opts->cfg->nodes[i].id) >= 0;
    if (!ok) {
        leader__free(l);
        return CV_ENOMEM;
    }
    uv_timer_init(opts->loop, &l->timer);
    l->timer.data = l;
    l->timer_open = true;
    *out = l;
    return 0;
}

void cv_leader_start(struct cv_leader *l)
{
    leader__arm(l, RUN_MS);
}

void cv_leader_stop(struct cv_leader *l)
{
    l->stopped = true;
    uv_timer_stop(&l->timer);
}

void cv_leader_kick(struct cv_leader *l)
{
    if (!l->stopped && !l->closing) uv_timer_start(&l->timer, run, 0, 0);
}

void cv_leader_changed(struct cv_leader *l)
{
    if (l->stopped || l->closing || !l->since) return;
    uint64_t now = cv_mono_ms(), at = l->last_run_ms + RUN_MS;
    leader__arm(l, at > now ? at - now : 0);
}

void cv_leader_renewal_seen(struct cv_leader *l, const char *node, uint64_t now_mono)
{
    int k = leader__member(l, node);
    if (k >= 0) l->members[k].seen = now_mono;
}

void cv_leader_node_died(struct cv_leader *l, const char *node, uint64_t now_mono)
{
    int k = leader__member(l, node);
    if (k < 0) return;
    struct member *m = &l->members[k];
    m->died_shards = leader__orphans(l, node);
    m->died = m->died_shards ? now_mono : 0;
    if (m->died_shards) cv_leader_kick(l);
}

const struct cv_leader_stats *cv_leader_stats(const struct cv_leader *l)
{
    return &l->stats;
}

/* Frees l once it is closing, its timer closed and no proposal callback is owed any more (the consensus
 * completes each proposal exactly once, with CV_ECANCELED when it closes). */
static void leader__settle(struct cv_leader *l)
{
    if (!l->closing || l->timer_open) return;
    for (int d = 0; d < D_COUNT; d++)
        if (l->inflight[d] > 0) return;
    void (*done)(void *) = l->done;
    void *data = l->done_data;
    leader__free(l);
    if (done) done(data);
}

static void leader__closed(uv_handle_t *h)
{
    struct cv_leader *l = h->data;
    l->timer_open = false;
    leader__settle(l);
}

void cv_leader_close(struct cv_leader *l, void (*done)(void *data), void *data)
{
    l->stopped = l->closing = true;
    l->done = done;
    l->done_data = data;
    uv_close((uv_handle_t *)&l->timer, leader__closed);
}
