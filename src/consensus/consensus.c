/* Raft glue between libraft 0.22 and the catalog.
 *
 * Happy path: a node proposes a catalog command (cv_consensus_propose). The command gets (origin, seq),
 * is serialized and routed: on the leader it joins the queue of commands that the next loop iteration
 * packs into ONE log entry (a Batch); on a follower it is sent to the leader as a "catalog.propose" RPC,
 * and the leader queues it the same way and answers with the entry's index once raft_apply accepted it.
 * Every node applies the entry to its catalog (fsm__apply); the catalog's observer reports each command's
 * result, and the proposer completes its proposal when it sees (origin == self, seq) applied locally.
 *
 * Each proposal is an explicit state machine (pending__states): waiting -> queued (on the leader) or
 * forwarded (to it) -> appended (its index known) -> done; a refused forward or submit goes back to
 * waiting and is routed again at the next tick.
 *
 * Lifecycle: init allocates and starts nothing; start creates the raft directory, initialises,
 * bootstraps and starts raft; close fails pending proposals, closes the timers and raft through their
 * callbacks and waits for forwarded proposals' calls (the owner closes the peer pool); no loop is ever
 * run from inside this module.
 *
 * Failure modes: if leadership changes before the entry commits, the slot may be overwritten by another
 * entry; the proposer then sees the index applied without its seq and reports CV_ERETRY (never success).
 * Without a leader, proposals wait (re-routed every tick) until their deadline (CV_ETIMEDOUT, outcome
 * unknown). A failed catalog write inside fsm__apply is fatal: the process exits rather than let this
 * replica's state diverge from the log (raft would otherwise wedge silently, see docs/architecture.md). */
#include "consensus/consensus.h"
#include "auth/guard.h"
#include "consensus/backlog.h"
#include "consensus/iowrap.h"
#include "consensus/leases.h"
#include "consensus/members.h"
#include "consensus/notice.h"
#include "consensus/snapshot.h"

#include <errno.h>
#include <raft.h>
#include <raft/uv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consensus/entry.h"
#include "consensus/rafttcp.h"
#include "core/lease.h"
#include "core/sm.h"
#include "cverse/error.h"
#include "consensus/setup.h"
#include "consensus/snapguard.h"
#include "net/peers.h"
#include "rpc.pb-c.h"
#include "util/addr.h"
#include "util/be.h"
#include "util/buf.h"
#include "util/fs.h"
#include "util/log.h"

#define DEFAULT_TIMEOUT_MS 5000
/* The tick: on a leader it rides on raft's own ticks (every heartbeat_timeout_ms) when those are this
 * short, at most every TICK_MIN_MS. Elsewhere (and as the leader's backstop) a timer of its own, armed
 * after each tick for when there is work: every TICK_MS while proposals are pending, this node leads or
 * the owner asks for it (retries, scans); at the owner's next deadline (a map-feed heartbeat, a reminder)
 * otherwise, at most IDLE_TICK_MS later. Events that make work call cv_consensus_tick_soon; a change of
 * raft's leader ticks at once (snapguard's changed). An idle follower wakes a few times a second, not 67. */
#define TICK_MS CV_CONSENSUS_TICK_MS
#define TICK_MIN_MS 10
#define IDLE_TICK_MS 1000
#define RAFT_BACKLOG 128 /* pending raft connections: every other node at once, after an election */
/* Group commit: while this leader's last entry is not applied, the next batch waits for that apply (at
 * most this long): proposals arriving meanwhile share one entry, log write and LMDB commit. */
#define BATCH_WAIT_MS 2
#define VOTER_IDLE_MS 2000 /* quiet heartbeats to voters only after the log stood still this long (quiet.h) */

_Static_assert((int)CV_MEMBER_STANDBY == (int)RAFT_STANDBY && (int)CV_MEMBER_VOTER == (int)RAFT_VOTER &&
                   (int)CV_MEMBER_SPARE == (int)RAFT_SPARE, "member roles are raft's");

const double cv_apply_bucket_le_us[CV_APPLY_BUCKETS] = {50,    100,   250,   500,    1000,   2500,
                                                        5000,  10000, 25000, 50000, 100000, 1e300};

/* A proposal's lifecycle (see cv_consensus_proposal_sm). WAITING: to be routed at the next tick (no
 * leader known, or the last attempt failed); QUEUED: in this leader's next batch; FORWARDED: sent to the
 * leader, its answer pending; APPENDED: in the log at a known index; DONE: the callback ran. A proposal
 * completes from any live state: applied (the observer sees its seq), overwritten, timed out, canceled. */
enum { P_WAITING, P_QUEUED, P_FORWARDED, P_APPENDED, P_DONE, P_N };

#define P_END (CV_SM_BIT(P_DONE)) /* every live state may complete */
static const struct cv_sm_state pending__states[P_N] = {
    [P_WAITING] = {"waiting", CV_SM_INITIAL, CV_SM_BIT(P_QUEUED) | CV_SM_BIT(P_FORWARDED) | P_END},
    [P_QUEUED] = {"queued", 0, CV_SM_BIT(P_WAITING) | CV_SM_BIT(P_APPENDED) | P_END},
    [P_FORWARDED] = {"forwarded", 0, CV_SM_BIT(P_WAITING) | CV_SM_BIT(P_APPENDED) | P_END},
    [P_APPENDED] = {"appended", 0, CV_SM_BIT(P_WAITING) | P_END}, /* leader changed before its commit */
    [P_DONE] = {"done", CV_SM_FINAL, 0},
};
static const struct cv_sm_conf pending__conf = {"proposal", pending__states, P_N};

const struct cv_sm_conf *cv_consensus_proposal_sm(void)
{
    return &pending__conf;
}

struct pending {
    struct pending *next, *prev;
    struct cv_sm sm;
    uint64_t seq;
    uint64_t deadline_ms; /* monotonic */
    uint64_t index;       /* the entry that carries it: set exactly while APPENDED */
    uint32_t forwards;    /* forwards sent: an answer to an earlier one (resent since) is ignored */
    uint64_t term;        /* 0, or the only term it may be appended in, by this node as leader */
    uint8_t *cmd;
    size_t len;
    cv_propose_cb cb;
    void *data;
};

struct remote_waiter { /* a forwarded proposal waiting for the flush that gives it an index */
    struct cv_rpc_conn *conn;
    uint64_t id;
};

struct entry_req {
    struct raft_apply req;
    struct cv_consensus *c;
};

struct cv_consensus {
    uv_loop_t *loop;
    const struct cv_config *cfg;
    const struct cv_node_cfg *self;
    struct cv_catalog *cat;
    cv_consensus_applied_cb on_applied;
    cv_consensus_leader_cb on_leader;
    unsigned (*on_tick)(void *data);
    cv_iowrap_fail_cb on_log_failed;
    void *data;

    struct raft raft;
    struct cv_snapguard io; /* raft_uv's io (io.inner) behind a guard against a libraft crash */
    struct raft_uv_transport transport;
    struct raft_fsm fsm;
    raft_id id;
    bool joined;                  /* not an initial member: no bootstrap, cfg->nodes are not raft ids */

    uv_timer_t tick, flush; /* tick: see TICK_MS */
    uint64_t last_tick_ms, ticks;
    struct pending pendings; /* circular list head */
    uint64_t next_seq;
    struct cv_notices *notices; /* early commit notices (notice.h) */
    struct cv_leases *leases;   /* lease renewals without log entries (leases.h) */

    /* leader queue: a Batch under construction (wire form), local seqs and remote waiters in it */
    uint8_t *q;
    size_t q_len, q_cap;
    uint64_t q_inflight; /* index of the last entry this node appended as leader (group commit) */
    uint64_t *q_seqs;
    size_t n_q_seqs, cap_q_seqs;
    struct remote_waiter *q_remote;
    size_t n_q_remote, cap_q_remote;

    char *raft_dir;
    struct cv_peers *peers;       /* borrowed: the node's connections to the other nodes */
    size_t forwards;              /* forwarded proposals whose answer is pending (hold the close) */
    bool raft_inited;             /* raft_init succeeded: closing goes through raft_close */
    bool was_leader;
    raft_id last_leader;
    raft_id prev_leader;          /* the last other node seen leading (0: none) */
    uint64_t leader_since_ms;
    struct cv_members members; /* membership changes and leadership transfer */

    struct cv_apply_histogram hist;
    uint64_t snapshots_taken, snapshots_restored, entries_applied;
    bool started, closing, close_reported;
    int open_handles;
    void (*close_cb)(void *data);
    void *close_data;
};

/* ---------------------------------------------------------------- helpers */

/* Members: the config's nodes (raft id = index + 1, the initial members) and the nodes whose catalog
 * record carries a raft id (joined later). The node id of a raft id (NULL: none); a member's raft id (0). */
static const char *consensus__member_id(const struct cv_consensus *c, raft_id id)
{
    const struct cv_catalog_node *cn = cv_catalog_node_by_raft_id(c->cat, id);
    if (id == c->id) return c->self->id;
    if (!c->joined && id && id <= c->cfg->n_nodes) return c->cfg->nodes[id - 1].id;
    return cn ? cn->id : NULL;
}

static raft_id consensus__raft_id(const struct cv_consensus *c, const char *node_id)
{
    int idx = c->joined ? -1 : cv_config_node_index(c->cfg, node_id);
    const struct cv_catalog_node *cn = cv_catalog_node_get(c->cat, node_id);
    return !strcmp(node_id, c->self->id) ? c->id : idx >= 0 ? (raft_id)idx + 1 : cn ? cn->raft_id : 0;
}

/* ---------------------------------------------------------------- pending proposals */

static void pending__unlink(struct pending *p)
{
    p->prev->next = p->next;
    p->next->prev = p->prev;
}

static struct pending *pending__find(struct cv_consensus *c, uint64_t seq)
{
    /* Proposals mostly complete in order: search from the oldest. */
    for (struct pending *p = c->pendings.next; p != &c->pendings; p = p->next)
        if (p->seq == seq) return p;
    return NULL;
}

/* The invariant of a proposal: its entry's index is known exactly while it is APPENDED. */
static const char *pending__invariant(const struct cv_sm *m, int prev)
{
    const struct pending *p = (const struct pending *)((const char *)m - offsetof(struct pending, sm));
    if (m->state == P_DONE) return NULL;
    if ((m->state == P_APPENDED) != (p->index != 0)) return "index known exactly while appended";
    return NULL;
}

static void pending__move(struct pending *p, int to)
{
    cv_sm_move(&p->sm, to);
}

static void pending__complete(struct pending *p, int status, uint64_t index)
{
    pending__unlink(p);
    pending__move(p, P_DONE);
    cv_sm_fini(&p->sm);
    cv_propose_cb cb = p->cb;
    void *data = p->data;
    free(p->cmd);
    free(p);
    if (cb) cb(data, status, index);
}

/* ---------------------------------------------------------------- leader queue and flush */

static void queue__flush_cb(uv_timer_t *t);
static void consensus__settle(struct cv_consensus *c);

static void queue__schedule(struct cv_consensus *c)
{
    if (uv_is_active((uv_handle_t *)&c->flush)) return;
    bool inflight = c->q_inflight > raft_last_applied(&c->raft) && c->q_inflight <= raft_last_index(&c->raft);
    uv_timer_start(&c->flush, queue__flush_cb, inflight ? BATCH_WAIT_MS : 0, 0);
}

static int queue__local(struct cv_consensus *c, struct pending *p)
{
    int rv = cv_array_grow((void **)&c->q_seqs, &c->cap_q_seqs, c->n_q_seqs + 1, sizeof *c->q_seqs);
    if (!rv) rv = cv_entry_batch_append(&c->q, &c->q_len, &c->q_cap, p->cmd, p->len);
    if (rv) return rv;
    c->q_seqs[c->n_q_seqs++] = p->seq;
    pending__move(p, P_QUEUED);
    queue__schedule(c);
    return 0;
}

static void queue__apply_done(struct raft_apply *req, int status, void *result)
{
    /* Outcomes are decided by what gets applied at the entry's index (see pending_check), so a
     * failure here (e.g. RAFT_LEADERSHIPLOST) needs no action beyond logging. */
    struct entry_req *er = req->data;
    if (status != 0 && status != RAFT_LEADERSHIPLOST && status != RAFT_SHUTDOWN)
        CV_WARN("raft apply of entry %llu failed: %s", (unsigned long long)req->index,
                raft_strerror(status));
    free(er);
}

static void consensus__respond_propose(struct cv_rpc_conn *conn, uint64_t id, int status, uint64_t index,
                            uint64_t term, const char *leader)
{
    Cverse__Rpc__ProposeResponse resp = CVERSE__RPC__PROPOSE_RESPONSE__INIT;
    resp.index = index;
    resp.term = term;
    resp.leader = (char *)(leader ? leader : "");
    uint8_t buf[128];
    size_t n = cverse__rpc__propose_response__pack(&resp, buf);
    cv_rpc_respond(conn, id, status, status ? cv_strerror(status) : NULL, buf, n);
}

static void consensus__leader_hint(struct cv_consensus *c, char *out, size_t len)
{
    raft_id id;
    const char *addr;
    raft_leader(&c->raft, &id, &addr);
    snprintf(out, len, "%s", consensus__member_id(c, id) ? consensus__member_id(c, id) : "");
}

/* Appends the queued batch to the raft log; returns 0 and the entry's index, or a CV_E* code. */
static int queue__submit(struct cv_consensus *c, uint64_t *index)
{
    struct entry_req *er = calloc(1, sizeof *er);
    struct raft_buffer buf;
    if (!er) return CV_ENOMEM;
    if (cv_entry_build(c->q, c->q_len, &buf)) {
        free(er);
        return CV_ENOMEM;
    }
    er->c = c;
    er->req.data = er;
    int rv = raft_apply(&c->raft, &er->req, &buf, 1, queue__apply_done);
    if (rv == 0) {
        *index = er->req.index ? er->req.index : raft_last_index(&c->raft);
        c->q_inflight = *index;
        return 0;
    }
    /* Before the leader check passes raft has not taken the buffer; after it, raft discards it itself
     * (0.22 frees it on the later error paths), so only RAFT_NOTLEADER leaves it to us. */
    if (rv == RAFT_NOTLEADER) raft_free(buf.base);
    else CV_WARN("raft_apply failed: %s (%s)", raft_strerror(rv), raft_errmsg(&c->raft));
    free(er);
    return rv == RAFT_NOTLEADER || rv == RAFT_LEADERSHIPLOST ? CV_ENOTLEADER : CV_ERAFT;
}

/* Hands the queued batch to raft and tells every waiter the entry's index (or that it failed). */
static void queue__flush(struct cv_consensus *c)
{
    if (c->q_len == 0) return;
    uint64_t index = 0;
    int status = queue__submit(c, &index);
    for (size_t i = 0; i < c->n_q_seqs; i++) {
        struct pending *p = pending__find(c, c->q_seqs[i]);
        if (!p || cv_sm_state(&p->sm) != P_QUEUED) continue;
        if (status == 0) {
            p->index = index;
            pending__move(p, P_APPENDED);
        } else {
            pending__move(p, P_WAITING); /* not appended anywhere: route again at the next tick */
        }
    }
    char leader[CV_NODE_ID_MAX];
    consensus__leader_hint(c, leader, sizeof leader);
    for (size_t i = 0; i < c->n_q_remote; i++) {
        struct remote_waiter *w = &c->q_remote[i];
        consensus__respond_propose(w->conn, w->id, status, index, raft_current_term(&c->raft), leader);
        cv_rpc_conn_unref(w->conn);
    }
    c->q_len = c->n_q_seqs = c->n_q_remote = 0;
}

static void queue__flush_cb(uv_timer_t *t)
{
    queue__flush(t->data);
}

/* ---------------------------------------------------------------- routing to the leader */

struct forward_ctx {
    struct cv_consensus *c;
    uint64_t seq;
    uint32_t nth; /* the pending's forwards when this one was sent */
};

static void forward__done(void *data, int status, const char *error, const uint8_t *body, size_t len)
{
    struct forward_ctx *fc = data;
    struct cv_consensus *c = fc->c;
    uint64_t seq = fc->seq;
    uint32_t nth = fc->nth;
    struct pending *p = c->closing ? NULL : pending__find(c, seq);
    free(fc);
    c->forwards--;
    if (!p || cv_sm_state(&p->sm) != P_FORWARDED || p->forwards != nth) { /* applied, resent, closing */
        consensus__settle(c);
        return;
    }
    if (status == 0) {
        Cverse__Rpc__ProposeResponse *r = cverse__rpc__propose_response__unpack(NULL, len, body);
        if (r) {
            p->index = r->index;
            pending__move(p, r->index ? P_APPENDED : P_WAITING);
            cverse__rpc__propose_response__free_unpacked(r, NULL);
            return;
        }
        status = CV_EPROTO;
    }
    /* Send again (routed anew at the next tick) when that node did not append the command, or when
     * whether it did is unknown. This is deliberately NOT cv_err_reroute(), the error table's "the call
     * certainly did not run" set, because a proposal's outcome is not learned from this answer but from
     * our own apply of (origin, seq): a resend of a command that was appended after all is harmless
     * (catalog commands are idempotent, and the proposal completes only once, when its seq is applied).
     * So the set adds CV_ETIMEDOUT (no answer in time: may be appended) and CV_EUNAVAIL (connection lost
     * after sending). The table's other re-route codes do not reach here as answers: the leader's
     * catalog.propose handler answers only CV_ENOTLEADER, CV_EPROTO, CV_ENOMEM or an index, and
     * CV_ECANCELED / CV_ECLOSED come from this node's own peer pool closing, when cv_consensus_close
     * already completed the proposal. Behaviour is as before the error table existed. */
    if (status == CV_ENOTLEADER || status == CV_EUNAVAIL || status == CV_ETIMEDOUT) {
        pending__move(p, P_WAITING);
        return;
    }
    CV_WARN("proposal %llu forwarded to the leader failed: %s (%s)", (unsigned long long)seq,
            cv_strerror(status), error ? error : "");
    pending__complete(p, status, 0);
}

static int forward(struct cv_consensus *c, struct pending *p, raft_id leader)
{
    struct cv_rpc_client *cli = cv_peers_by_id(c->peers, consensus__member_id(c, leader));
    if (!cli) return CV_EUNAVAIL;
    uint8_t *batch = NULL;
    size_t blen = 0, bcap = 0;
    int rv = cv_entry_batch_append(&batch, &blen, &bcap, p->cmd, p->len);
    if (rv) return rv;
    Cverse__Rpc__ProposeRequest req = CVERSE__RPC__PROPOSE_REQUEST__INIT;
    req.batch.data = batch;
    req.batch.len = blen;
    size_t n = cverse__rpc__propose_request__get_packed_size(&req);
    uint8_t *body = malloc(n);
    struct forward_ctx *fc = malloc(sizeof *fc);
    if (!body || !fc) {
        rv = CV_ENOMEM;
        goto out;
    }
    cverse__rpc__propose_request__pack(&req, body);
    fc->c = c;
    fc->seq = p->seq;
    fc->nth = ++p->forwards;
    uint64_t now = cv_mono_ms();
    unsigned left = p->deadline_ms > now ? (unsigned)(p->deadline_ms - now) : 1;
    rv = cv_rpc_call(cli, "catalog.propose", body, n, left < 1000 ? left : 1000, forward__done, fc);
    if (rv == 0) {
        fc = NULL;
        c->forwards++;
        pending__move(p, P_FORWARDED);
    }
out:
    free(fc);
    free(body);
    free(batch);
    return rv;
}

static bool consensus__leads_term(struct cv_consensus *c, uint64_t term)
{
    return raft_state(&c->raft) == RAFT_LEADER && raft_current_term(&c->raft) == term;
}

static void route(struct cv_consensus *c, struct pending *p)
{
    if (p->term) { /* bound to a term: appended by us in it now, or never */
        if (!consensus__leads_term(c, p->term)) pending__complete(p, CV_ENOTLEADER, 0);
        else if (queue__local(c, p) == 0) queue__flush(c);
        return;
    }
    if (raft_state(&c->raft) == RAFT_LEADER) {
        queue__local(c, p); /* on failure it stays WAITING: routed again at the next tick */
        return;
    }
    raft_id id;
    const char *addr;
    raft_leader(&c->raft, &id, &addr);
    if (id != 0 && id != c->id) forward(c, p, id);
}

/* ---------------------------------------------------------------- proposals API */

int cv_consensus_propose(struct cv_consensus *c, Cverse__Catalog__Command *cmd, unsigned timeout_ms,
                         cv_propose_cb cb, void *data)
{
    return cv_consensus_propose_in_term(c, cmd, 0, timeout_ms, cb, data);
}

int cv_consensus_propose_in_term(struct cv_consensus *c, Cverse__Catalog__Command *cmd, uint64_t term,
                                 unsigned timeout_ms, cv_propose_cb cb, void *data)
{
    if (c->closing) return CV_ECLOSED;
    if (term && !consensus__leads_term(c, term)) return CV_ENOTLEADER;
    struct pending *p = calloc(1, sizeof *p);
    if (!p) return CV_ENOMEM;
    p->seq = c->next_seq++;
    cv_sm_init(&p->sm, &pending__conf, P_WAITING, pending__invariant, NULL);
    cmd->origin = (char *)c->self->id;
    cmd->seq = p->seq;
    p->len = cverse__catalog__command__get_packed_size(cmd);
    p->cmd = malloc(p->len ? p->len : 1);
    if (!p->cmd) {
        free(p);
        return CV_ENOMEM;
    }
    cverse__catalog__command__pack(cmd, p->cmd);
    p->deadline_ms = cv_mono_ms() + (timeout_ms ? timeout_ms : DEFAULT_TIMEOUT_MS);
    p->term = term;
    p->cb = cb;
    p->data = data;
    p->next = &c->pendings;
    p->prev = c->pendings.prev;
    p->prev->next = p;
    c->pendings.prev = p;
    route(c, p);
    cv_consensus_tick_soon(c, TICK_MS); /* its deadline and retries */
    return 0;
}

void cv_consensus_handle_propose(struct cv_consensus *c, struct cv_rpc_conn *conn, uint64_t id,
                                 const uint8_t *body, size_t len)
{
    char leader[CV_NODE_ID_MAX];
    if (c->closing || raft_state(&c->raft) != RAFT_LEADER) {
        consensus__leader_hint(c, leader, sizeof leader);
        consensus__respond_propose(conn, id, CV_ENOTLEADER, 0, raft_current_term(&c->raft), leader);
        return;
    }
    Cverse__Rpc__ProposeRequest *req = cverse__rpc__propose_request__unpack(NULL, len, body);
    if (!req) {
        cv_rpc_respond(conn, id, CV_EPROTO, "undecodable ProposeRequest", NULL, 0);
        return;
    }
    /* The request's batch is already in Batch wire form: append it verbatim. */
    int rv = cv_array_grow((void **)&c->q, &c->q_cap, c->q_len + req->batch.len, 1);
    if (!rv)
        rv = cv_array_grow((void **)&c->q_remote, &c->cap_q_remote, c->n_q_remote + 1, sizeof *c->q_remote);
    if (rv) {
        cv_rpc_respond(conn, id, rv, cv_strerror(rv), NULL, 0);
    } else {
        memcpy(c->q + c->q_len, req->batch.data, req->batch.len);
        c->q_len += req->batch.len;
        cv_rpc_conn_ref(conn);
        c->q_remote[c->n_q_remote++] = (struct remote_waiter){conn, id};
        queue__schedule(c);
    }
    cverse__rpc__propose_request__free_unpacked(req, NULL);
}

/* ---------------------------------------------------------------- FSM */

static void fsm__observe(void *data, uint64_t index, const Cverse__Catalog__Batch *batch,
                             const struct cv_cmd_result *results)
{
    struct cv_consensus *c = data;
    for (size_t i = 0; i < batch->n_commands; i++) {
        if (strcmp(results[i].origin, c->self->id) != 0) continue;
        struct pending *p = pending__find(c, results[i].seq);
        if (p) pending__complete(p, results[i].status, index);
    }
    if (!c->closing && raft_state(&c->raft) == RAFT_LEADER)
        cv_notices_applied(c->notices, index, batch, results);
    if (c->on_applied) c->on_applied(c->data, index, batch, results);
}

static int fsm__apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    struct cv_consensus *c = fsm->data;
    uint64_t index = raft_last_applied(&c->raft) + 1;
    bool skipped = false;
    uint64_t t0 = cv_mono_ns();
    size_t len = 0;
    const uint8_t *batch = cv_entry_payload(buf, &len);
    *result = NULL;
    int rv = batch ? cv_catalog_apply(c->cat, index, batch, len, &skipped)
                   : cv_catalog_apply_noop(c->cat, index) ? CV_ELMDB : CV_EPROTO;
    if (rv == CV_EPROTO) {
        CV_ERROR("entry %llu is not a catalog batch; recorded as applied and ignored",
                 (unsigned long long)index);
        return 0;
    }
    if (rv) {
        /* Returning an error would wedge the group silently and skipping would diverge this replica
         * from the log: stop the process; raft replays the entry after the operator fixed the disk. */
        CV_ERROR("FATAL: cannot apply entry %llu to the catalog: %s", (unsigned long long)index,
                 cv_strerror(rv));
        exit(1);
    }
    if (skipped) return 0;
    double us = (double)(cv_mono_ns() - t0) / 1000.0;
    unsigned b = 0;
    while (b < CV_APPLY_BUCKETS - 1 && us > cv_apply_bucket_le_us[b]) b++;
    c->hist.buckets[b]++;
    c->hist.count++;
    c->hist.sum_us += us;
    c->entries_applied++;
    /* The entry the queue waited for is applied: the waiting batch goes now (group commit). Debug
     * builds check the catalog incrementally inside cv_catalog_apply (no full reload here per entry). */
    if (index >= c->q_inflight && c->q_len > 0 && uv_is_active((uv_handle_t *)&c->flush))
        uv_timer_start(&c->flush, queue__flush_cb, 0, 0);
    return 0;
}

static int fsm__snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    struct cv_consensus *c = fsm->data;
    int rv = cv_snapshot_take(c->cat, bufs, n_bufs);
    if (rv == 0) c->snapshots_taken++;
    return rv;
}

static int fsm__snapshot_finalize(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n_bufs)
{
    (void)fsm;
    return cv_snapshot_finalize(bufs, n_bufs);
}

static int fsm__restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    struct cv_consensus *c = fsm->data;
    bool installed = false;
    int rv = cv_snapshot_restore(c->cat, buf, &installed);
    if (rv == 0 && installed) c->snapshots_restored++, cv_consensus_tick_soon(c, 0); /* the owner looks */
    return rv;
}

/* ---------------------------------------------------------------- tick: leadership, deadlines */

static void consensus__check_pendings(struct cv_consensus *c)
{
    uint64_t now = cv_mono_ms();
    uint64_t applied = cv_catalog_applied_index(c->cat);
    struct pending *p = c->pendings.next;
    while (p != &c->pendings) {
        struct pending *next = p->next;
        if (cv_sm_state(&p->sm) == P_APPENDED && applied >= p->index)
            pending__complete(p, CV_ERETRY, 0); /* its slot was applied without it: overwritten */
        else if (now >= p->deadline_ms)
            pending__complete(p, CV_ETIMEDOUT, 0);
        else if (cv_sm_state(&p->sm) == P_WAITING)
            route(c, p);
        p = next;
    }
}

/* A new leader: proposals appended by an earlier one but not committed yet may never be (the new
 * leader overwrites what it lacks), and proposals forwarded to the old one may wait for an answer that
 * never comes (a dead leader: until the call's timeout); either would wait for its deadline — a lease
 * renewal for so long that its node fences. Send them again to the new leader: a duplicate is harmless
 * (commands are idempotent, a proposal completes once, at the first apply of its seq), and the old
 * forward's late answer is ignored (forward__done). */
static void consensus__resend_uncommitted(struct cv_consensus *c)
{
    raft_index committed = raft_commit_index(&c->raft);
    for (struct pending *p = c->pendings.next; p != &c->pendings; p = p->next) {
        int st = cv_sm_state(&p->sm);
        if (p->term) continue; /* bound to its term: it commits from the log where it is, or never */
        if (st == P_FORWARDED) pending__move(p, P_WAITING);
        if (st != P_APPENDED || p->index <= committed) continue;
        p->index = 0;
        pending__move(p, P_WAITING);
    }
}

static void consensus__check_leader(struct cv_consensus *c)
{
    bool is_leader = raft_state(&c->raft) == RAFT_LEADER;
    raft_id id;
    const char *addr;
    raft_leader(&c->raft, &id, &addr);
    if (is_leader == c->was_leader && id == c->last_leader) return;
    if (is_leader && !c->was_leader) {
        c->leader_since_ms = cv_now_ms();
        CV_INFO("became raft leader (term %llu)", (unsigned long long)raft_current_term(&c->raft));
    } else if (!is_leader && c->was_leader) {
        c->leader_since_ms = 0;
        CV_INFO("lost raft leadership (term %llu)", (unsigned long long)raft_current_term(&c->raft));
    }
    if (id != c->last_leader && !is_leader) {
        const char *n = consensus__member_id(c, id);
        CV_INFO("raft leader is now %s (term %llu)", n ? n : "unknown",
                (unsigned long long)raft_current_term(&c->raft));
    }
    if (id != c->last_leader && id != 0) consensus__resend_uncommitted(c);
    c->was_leader = is_leader;
    c->last_leader = id;
    if (id != 0 && id != c->id) c->prev_leader = id;
    if (c->on_leader) c->on_leader(c->data, is_leader);
}

static void consensus__timer(uv_timer_t *t);

void cv_consensus_tick_soon(struct cv_consensus *c, unsigned ms)
{
    if (c->closing || !c->started) return;
    if (uv_is_active((uv_handle_t *)&c->tick) && uv_timer_get_due_in(&c->tick) <= ms) return;
    uv_timer_start(&c->tick, consensus__timer, ms, 0);
}

/* After each of raft's ticks on a leader (snapguard's after_tick), or on our own timer (see TICK_MS). */
static void consensus__tick(void *data)
{
    struct cv_consensus *c = data;
    uint64_t now = cv_mono_ms();
    if (c->closing || !c->started) return;
    if (now - c->last_tick_ms < TICK_MIN_MS) { /* ran just now: not again before TICK_MIN_MS */
        cv_consensus_tick_soon(c, (unsigned)(TICK_MIN_MS - (now - c->last_tick_ms)));
        return;
    }
    c->last_tick_ms = now;
    c->ticks++;
    uv_timer_stop(&c->tick); /* armed again below; work of this tick may ask for an earlier one */
    consensus__check_leader(c);
    consensus__check_pendings(c);
    cv_leases_tick(c->leases);
    unsigned next = c->on_tick && !c->closing ? c->on_tick(c->data) : IDLE_TICK_MS;
    if (c->closing) return;
    if (c->pendings.next != &c->pendings || c->was_leader) next = next < TICK_MS ? next : TICK_MS;
    cv_consensus_tick_soon(c, next < TICK_MIN_MS ? TICK_MIN_MS : next > IDLE_TICK_MS ? IDLE_TICK_MS : next);
}

static void consensus__timer(uv_timer_t *t)
{
    consensus__tick(t->data);
}

/* Raft's state or leader changed (snapguard's pace saw it): tick at once, not at the next deadline. */
static void consensus__changed(void *data)
{
    cv_consensus_tick_soon(data, 0);
}

/* ---------------------------------------------------------------- lifecycle */

static const char *leases__member_id(void *data, raft_id id)
{
    return consensus__member_id(data, id);
}

/* Declared dead in the catalog: register again; unknown to it: no member (see core/lessor.h). */
static int leases__standing(void *data, const char *node_id, uint64_t incarnation)
{
    const struct cv_catalog_node *cn = cv_catalog_node_get(((struct cv_consensus *)data)->cat, node_id);
    return !cn ? CV_ENOTFOUND : !cn->alive || cn->incarnation != incarnation ? CV_ECONFLICT : 0;
}

static void leases__settle(void *data)
{
    consensus__settle(data);
}

/* quiet's "settled" (quiet.h): the standby holds our configuration and renewed its lease within two
 * renewal intervals — one that restarted renews nothing until it knows the leader, so it is sent the
 * short keepalive and learns the leader quickly. */
static bool consensus__standby_settled(void *data, raft_id id)
{
    struct cv_consensus *c = data;
    const char *name = consensus__member_id(c, id);
    uint64_t seen = name ? cv_leases_seen(c->leases, name) : 0, now = cv_mono_ms();
    return seen && now - seen < 2 * cv_lease_renew_interval(c->cfg->lease_ttl_ms) && cv_quiet_has_config(&c->raft, id);
}

static int consensus__init_raft(struct cv_consensus *c, const char *raft_dir)
{
    int rv;
    c->transport.version = 1; /* required by 0.22 before raft_uv_tcp_init */
    c->transport.data = c;
    if ((rv = raft_uv_tcp_init(&c->transport, c->loop))) goto err;
    /* re-dial as soon as a partition heals (docs/partitions.md); the cluster guard on every connection */
    rv = cv_rafttcp_live(&c->transport, c->loop, cv_guard_cluster(), c->self->raft_bind_addr) ? RAFT_NOMEM : 0;
    if (rv || (rv = raft_uv_tcp_set_bind_address(&c->transport, c->self->raft_bind_addr))) goto err_after_tcp;
    if ((rv = raft_uv_init(&c->io.inner, c->loop, raft_dir, &c->transport))) goto err_after_tcp;
    /* libraft redials a peer 1 s after a failed connect: a restarted node would wait that long for its
     * leader's messages; one election timeout keeps the retries cheap and the gap short. */
    raft_uv_set_connect_retry_delay(&c->io.inner, c->cfg->raft.election_timeout_ms);
    cv_snapguard_init(&c->io, c->loop);
    struct cv_leases_opts lo = {.raft = &c->raft, .peers = c->peers, .self_id = c->self->id, .self_raft_id = c->id,
                                .round_timeout_ms = c->cfg->raft.election_timeout_ms,
                                .max_wait_ms = (unsigned)c->cfg->lease_ttl_ms, .member_id = leases__member_id,
                                .standing = leases__standing, .settle = leases__settle, .data = c};
    if ((rv = cv_leases_init(&lo, &c->leases))) goto err_after_io; /* freed with the consensus */
    c->fsm.version = 2;
    c->fsm.data = c;
    c->fsm.apply = fsm__apply;
    c->fsm.snapshot = fsm__snapshot;
    c->fsm.restore = fsm__restore;
    c->fsm.snapshot_finalize = fsm__snapshot_finalize;
    if ((rv = raft_init(&c->raft, &c->io.io, &c->fsm, c->id, c->self->raft_addr))) goto err_after_io;
    cv_iowrap_install(&c->io.inner, c->loop, raft_dir, c->on_log_failed, c->data); /* raft_uv's: loud failures */
    cv_setup_quiet(&c->io.quiet, &c->raft, &c->cfg->raft, VOTER_IDLE_MS);
    c->io.quiet.settled = consensus__standby_settled;
    c->io.quiet.settled_data = c;
    if (c->cfg->raft.heartbeat_timeout_ms <= TICK_MS) c->io.after_tick = consensus__tick;
    c->io.changed = consensus__changed;
    c->io.after_tick_data = c;
    cv_setup_tune(&c->raft, &c->cfg->raft);
    return 0;
err_after_io:
    raft_uv_close(&c->io.inner);
err_after_tcp:
    raft_uv_tcp_close(&c->transport);
err:
    CV_ERROR("raft init failed: %s (%s)", raft_strerror(rv), c->transport.errmsg);
    return CV_ERAFT;
}

int cv_consensus_init(const struct cv_consensus_opts *opts, struct cv_consensus **out)
{
    int idx = cv_config_node_index(opts->cfg, opts->node_id);
    if (idx < 0 || !opts->peers) return CV_EINVAL;
    struct cv_consensus *c = calloc(1, sizeof *c);
    if (!c) return CV_ENOMEM;
    if (!(c->raft_dir = strdup(opts->raft_dir)) ||
        cv_notices_init(opts->node_id, opts->peers, &c->notices)) {
        free(c->raft_dir);
        free(c);
        return CV_ENOMEM;
    }
    c->loop = opts->loop;
    c->cfg = opts->cfg;
    c->self = &opts->cfg->nodes[idx];
    c->id = opts->raft_id ? (raft_id)opts->raft_id : (raft_id)idx + 1;
    c->joined = opts->raft_id != 0;
    c->cat = opts->catalog;
    c->peers = opts->peers;
    c->on_applied = opts->on_applied;
    c->on_leader = opts->on_leader;
    c->on_tick = opts->on_tick;
    c->on_log_failed = opts->on_log_failed;
    c->data = opts->data;
    c->pendings.next = c->pendings.prev = &c->pendings;
    cv_members_init(&c->members, &c->raft, &c->closing);
    c->next_seq = cv_now_ms() * 1000; /* unique across restarts of this node */
    uv_timer_init(c->loop, &c->tick);
    uv_timer_init(c->loop, &c->flush);
    c->tick.data = c->flush.data = c;
    *out = c;
    return 0;
}

/* Creates the raft directory, initialises raft (bootstrapping a pristine directory) and starts it. A
 * failure leaves what was set up to cv_consensus_close: raft releases its handles through callbacks. */
int cv_consensus_start(struct cv_consensus *c)
{
    int rv = cv_mkdir_p(c->raft_dir);
    if (rv) return rv;
    if ((rv = consensus__init_raft(c, c->raft_dir))) return rv;
    c->raft_inited = true;
    if (!c->joined && (rv = cv_setup_bootstrap(&c->raft, c->cfg))) return rv; /* a joining node gets its log from the leader */
    cv_catalog_set_observer(c->cat, fsm__observe, c);
    if ((rv = raft_start(&c->raft))) {
        CV_ERROR("raft start failed: %s (%s%s%s); is %s already in use?", raft_strerror(rv),
                 raft_errmsg(&c->raft), c->io.io.errmsg, c->transport.errmsg, c->self->raft_bind_addr);
        return CV_ERAFT;
    }
    c->started = true;
    uv_timer_start(&c->tick, consensus__timer, 0, 0);
    if (cv_backlog_widen(c->loop, c->self->raft_bind_addr, RAFT_BACKLOG) <= 0) /* see backlog.c */
        CV_WARN("raft: could not widen the listen backlog on %s: followers may reach a new leader 1 s late",
                c->self->raft_bind_addr);
    CV_INFO("raft started: id %llu, address %s (bind %s), catalog applied index %llu",
            (unsigned long long)c->id, c->self->raft_addr, c->self->raft_bind_addr,
            (unsigned long long)cv_catalog_applied_index(c->cat));
    return 0;
}

/* Counts down the parts still closing (timers, raft, forwarded calls); the last one reports closed. */
static void consensus__settle(struct cv_consensus *c)
{
    if (!c->closing || c->open_handles > 0 || c->forwards > 0 || (c->leases && cv_leases_inflight(c->leases)) ||
        c->close_reported)
        return;
    c->close_reported = true;
    if (c->close_cb) c->close_cb(c->close_data);
}

static void consensus__close_step(struct cv_consensus *c)
{
    c->open_handles--;
    consensus__settle(c);
}

static void consensus__handle_closed(uv_handle_t *h)
{
    consensus__close_step(h->data);
}

static void consensus__raft_closed(struct raft *r)
{
    struct cv_consensus *c = r->data;
    raft_uv_close(&c->io.inner);
    raft_uv_tcp_close(&c->transport);
    consensus__close_step(c);
}

void cv_consensus_close(struct cv_consensus *c, void (*cb)(void *data), void *data)
{
    if (c->closing) return;
    c->closing = true;
    c->close_cb = cb;
    c->close_data = data;
    while (c->pendings.next != &c->pendings) pending__complete(c->pendings.next, CV_ECANCELED, 0);
    for (size_t i = 0; i < c->n_q_remote; i++) cv_rpc_conn_unref(c->q_remote[i].conn);
    c->n_q_remote = c->n_q_seqs = c->q_len = 0;
    /* Count everything first: forwarded calls fail (CV_ECANCELED) once the node closes the peer pool. */
    c->open_handles = 2 + c->raft_inited;
    if (c->leases) cv_leases_close(c->leases); /* may settle: only once the handles are counted */
    uv_close((uv_handle_t *)&c->tick, consensus__handle_closed);
    uv_close((uv_handle_t *)&c->flush, consensus__handle_closed);
    if (c->raft_inited) {
        c->raft.data = c;
        raft_close(&c->raft, consensus__raft_closed);
    }
}

void cv_consensus_free(struct cv_consensus *c)
{
    if (!c) return;
    cv_notices_free(c->notices);
    cv_leases_free(c->leases);
    cv_quiet_fini(&c->io.quiet);
    free(c->q);
    free(c->q_seqs);
    free(c->q_remote);
    free(c->raft_dir);
    cv_members_fini(&c->members);
    free(c);
}

/* ---------------------------------------------------------------- status and membership */

void cv_consensus_status(struct cv_consensus *c, struct cv_consensus_status *st)
{
    memset(st, 0, sizeof *st);
    if (!c->started) { /* raft is not running (yet): nothing to report */
        st->state = "unavailable";
        return;
    }
    int state = raft_state(&c->raft);
    st->is_leader = state == RAFT_LEADER;
    st->state = state == RAFT_LEADER      ? "leader"
                : state == RAFT_FOLLOWER  ? "follower"
                : state == RAFT_CANDIDATE ? "candidate"
                                          : "unavailable";
    raft_id id;
    const char *addr;
    raft_leader(&c->raft, &id, &addr);
    const char *n = consensus__member_id(c, id);
    st->has_leader = n != NULL;
    snprintf(st->leader_id, sizeof st->leader_id, "%s", n ? n : "");
    n = consensus__member_id(c, c->prev_leader);
    snprintf(st->prev_leader_id, sizeof st->prev_leader_id, "%s", n ? n : "");
    st->term = raft_current_term(&c->raft);
    st->commit_index = raft_commit_index(&c->raft);
    st->last_applied = raft_last_applied(&c->raft);
    st->last_index = raft_last_index(&c->raft);
    st->leader_since_ms = st->is_leader ? c->leader_since_ms : 0;
    st->snapshots_taken = c->snapshots_taken;
    st->snapshots_restored = c->snapshots_restored;
    st->entries_applied = c->entries_applied;
    st->heartbeats_sent = c->io.quiet.sent, st->heartbeats_skipped = c->io.quiet.skipped;
    st->voter_heartbeats_skipped = c->io.quiet.voter_skipped;
    st->raft_ticks = c->io.ticks, st->ticks = c->ticks;
}

struct cv_notices *cv_consensus_notices(struct cv_consensus *c)
{
    return c->notices;
}

struct cv_leases *cv_consensus_leases(struct cv_consensus *c)
{
    return c->leases;
}

bool cv_consensus_has_leader(struct cv_consensus *c)
{
    raft_id id;
    const char *addr;
    if (!c->started) return false;
    raft_leader(&c->raft, &id, &addr);
    return consensus__member_id(c, id) != NULL;
}

const struct cv_apply_histogram *cv_consensus_apply_histogram(const struct cv_consensus *c)
{
    return &c->hist;
}

int cv_consensus_member_role(struct cv_consensus *c, const char *node_id)
{
    raft_id id = consensus__raft_id(c, node_id);
    const struct raft_configuration *conf = &c->raft.configuration;
    for (unsigned i = 0; id && c->started && i < conf->n; i++)
        if (conf->servers[i].id == id) return conf->servers[i].role;
    return CV_MEMBER_NONE;
}

bool cv_consensus_change_pending(const struct cv_consensus *c)
{
    return c->members.change != NULL;
}

/* One membership change (consensus/members.h) once raft runs. */
static int consensus__change(struct cv_consensus *c, enum cv_members_kind k, const char *node_id, raft_id id,
                             const char *addr, int role, void (*cb)(void *data, int status), void *data)
{
    if (!c->started) return CV_ENOTLEADER;
    return cv_members_change(&c->members, k, node_id, id, addr, role, cb, data);
}

int cv_consensus_assign(struct cv_consensus *c, const char *node_id, int raft_role,
                        void (*cb)(void *data, int status), void *data)
{
    return consensus__change(c, CV_MEMBERS_ASSIGN, node_id, consensus__raft_id(c, node_id), NULL, raft_role, cb,
                             data);
}

int cv_consensus_add(struct cv_consensus *c, const char *node_id, uint64_t rid, const char *raft_addr,
                     void (*cb)(void *data, int status), void *data)
{
    return consensus__change(c, CV_MEMBERS_ADD, node_id, (raft_id)rid, raft_addr, 0, cb, data);
}

int cv_consensus_remove(struct cv_consensus *c, const char *node_id)
{
    raft_id id = consensus__raft_id(c, node_id);
    return id == c->id ? CV_EINVAL : consensus__change(c, CV_MEMBERS_REMOVE, node_id, id, NULL, 0, NULL, NULL);
}

int cv_consensus_transfer(struct cv_consensus *c, void (*cb)(void *data), void *data)
{
    if (!c->started || c->closing) return CV_ENOTLEADER;
    return cv_members_transfer(&c->members, cb, data);
}
