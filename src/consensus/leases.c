/* Lease renewals without raft log entries (leases.h).
 *
 * Happy path. A node renews by calling "lease.renew" on the raft leader (the leader renews itself the
 * same way, without the network). The leader's lessor (core/lessor.h) queues the renewal; at its next
 * tick a round starts: the leader reads its clock and asks every other voter "lease.confirm" (its term,
 * its raft id, the round). A voter answers yes while its raft term is that term and its leader that id.
 * A majority of yes (the leader counts itself) grants every renewal that arrived before the round
 * started, and their answers go out; the node's window runs from the instant it sent its renewal.
 * A new leader first waits until an entry of its own term applied (a raft barrier).
 *
 * Failure modes: no leader known (CV_ENOTLEADER at once), the leader unreachable or slow (the call's
 * timeout), leadership lost (CV_ENOTLEADER), a round without its majority within round_timeout_ms (the
 * renewals wait for the next round; their callers' own timeouts bound the wait), the node being declared
 * dead (CV_ECONFLICT). Closing: waiting renewals are answered CV_ENOTLEADER; the owner closes the peer
 * pool, which completes the calls in flight; settle runs once none is left. */
#include "consensus/leases.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/lessor.h"
#include "cverse/error.h"
#include "net/peers.h"
#include "net/rpc.h"
#include "rpc.pb-c.h"
#include "util/log.h"

struct cv_leases {
    struct cv_leases_opts o;
    char self[CV_LESSOR_ID_MAX];
    struct cv_lessor lessor;
    struct raft_barrier barrier;
    bool barrier_busy;   /* a barrier in flight (its callback not run yet) */
    uint64_t barrier_term;
    size_t inflight;     /* our RPC calls not completed yet, and the barrier */
    bool closing;
    struct call *own;    /* our own renewal's call in flight to a remote leader (NULL: none) */
    raft_id own_to;      /* the leader it went to */
};

/* Who asked for a renewal: a remote node (answer on its connection) or this node (a callback). */
struct waiter {
    struct cv_leases *l;
    struct cv_rpc_conn *conn; /* referenced; NULL: local */
    uint64_t id;
    void (*cb)(void *data, int status);
    void *data;
};

struct call {
    struct cv_leases *l;
    uint64_t round;
    char voter[CV_LESSOR_ID_MAX];
    void (*cb)(void *data, int status); /* a renewal of ours: its caller (NULL once answered early) */
    void *data;
};

static void leases__settle(struct cv_leases *l)
{
    if (l->closing && l->inflight == 0 && l->o.settle) l->o.settle(l->o.data);
}

static void leases__answer(void *data, uint64_t token, int status)
{
    struct waiter *w = (struct waiter *)(uintptr_t)token;
    (void)data; /* the owner's (standing's): the waiter carries what we need */
    if (w->conn) {
        cv_rpc_respond(w->conn, w->id, status, status ? cv_strerror(status) : NULL, NULL, 0);
        cv_rpc_conn_unref(w->conn);
    } else {
        w->cb(w->data, status);
    }
    free(w);
}

int cv_leases_init(const struct cv_leases_opts *opts, struct cv_leases **out)
{
    struct cv_leases *l = calloc(1, sizeof *l);
    if (!l || strlen(opts->self_id) >= sizeof l->self) {
        free(l);
        return CV_ENOMEM;
    }
    l->o = *opts;
    memcpy(l->self, opts->self_id, strlen(opts->self_id) + 1);
    l->o.self_id = l->self;
    cv_lessor_init(&l->lessor, leases__answer, l->o.standing, l->o.data, l->self);
    *out = l;
    return 0;
}

void cv_leases_close(struct cv_leases *l)
{
    if (l->closing) return;
    l->closing = true;
    cv_lessor_follow(&l->lessor);
    leases__settle(l);
}

size_t cv_leases_inflight(const struct cv_leases *l)
{
    return l->inflight;
}

void cv_leases_free(struct cv_leases *l)
{
    if (!l) return;
    cv_lessor_fini(&l->lessor);
    free(l);
}

/* ---------------------------------------------------------------- leadership */

static void leases__barrier_done(struct raft_barrier *req, int status)
{
    struct cv_leases *l = req->data;
    l->barrier_busy = false;
    l->inflight--;
    if (status == 0 && !l->closing) cv_lessor_barrier(&l->lessor, l->barrier_term);
    leases__settle(l);
}

static void leases__barrier(struct cv_leases *l);

static void leases__lead(struct cv_leases *l, uint64_t term)
{
    if (l->closing || (cv_lessor_state(&l->lessor) != CV_LESSOR_FOLLOWER && l->lessor.term == term)) return;
    cv_lessor_lead(&l->lessor, term, cv_mono_ms());
    leases__barrier(l);
}

/* ---------------------------------------------------------------- rounds */

static void leases__confirmed(void *data, int status, const char *error, const uint8_t *body, size_t len)
{
    struct call *c = data;
    struct cv_leases *l = c->l;
    (void)error;
    l->inflight--;
    if (status == 0 && !l->closing) {
        Cverse__Rpc__LeaseConfirmAnswer *a = cverse__rpc__lease_confirm_answer__unpack(NULL, len, body);
        if (a) { /* the round we asked about, whatever the answer echoes */
            cv_lessor_confirm(&l->lessor, c->round, c->voter, a->yes && a->round == c->round);
            cverse__rpc__lease_confirm_answer__free_unpacked(a, NULL);
        }
    }
    free(c);
    leases__settle(l);
}

static void leases__ask(struct cv_leases *l, const char *voter, uint64_t term, uint64_t round)
{
    struct cv_rpc_client *cli = cv_peers_by_id(l->o.peers, voter);
    struct call *c = cli ? calloc(1, sizeof *c) : NULL;
    if (!c || strlen(voter) >= sizeof c->voter) {
        free(c);
        return; /* no answer: the round may still get its majority from the others */
    }
    Cverse__Rpc__LeaseConfirm req = CVERSE__RPC__LEASE_CONFIRM__INIT;
    req.term = term;
    req.leader = l->o.self_raft_id;
    req.round = round;
    uint8_t buf[64];
    size_t n = cverse__rpc__lease_confirm__pack(&req, buf);
    *c = (struct call){.l = l, .round = round};
    memcpy(c->voter, voter, strlen(voter) + 1);
    if (cv_rpc_call(cli, "lease.confirm", buf, n, l->o.round_timeout_ms, leases__confirmed, c) == 0)
        l->inflight++;
    else
        free(c);
}

#define VOTERS_MAX 64

/* Every voter of raft's current configuration, by node id (borrowed from the member map); a voter we
 * cannot name gets "#<raft id>" (in names): it still counts toward the majority, and is never asked.
 * 0 when there are more than VOTERS_MAX (no round: safer than a majority of a truncated list). */
static size_t leases__voters(struct cv_leases *l, const char **out, char (*names)[24])
{
    const struct raft_configuration *conf = &l->o.raft->configuration;
    size_t n = 0;
    for (unsigned i = 0; i < conf->n; i++) {
        if (conf->servers[i].role != RAFT_VOTER) continue;
        if (n == VOTERS_MAX) return 0;
        raft_id rid = conf->servers[i].id;
        const char *id = rid == l->o.self_raft_id ? l->self : l->o.member_id(l->o.data, rid);
        if (!id) {
            snprintf(names[n], sizeof names[n], "#%llu", (unsigned long long)rid);
            id = names[n];
        }
        out[n++] = id;
    }
    return n;
}

/* Whether the lessor's leadership is raft's current one; if raft moved on (another term, or no longer
 * leading) between two of our observations, follow it now. */
static bool leases__in_step(struct cv_leases *l)
{
    struct cv_lessor *ls = &l->lessor;
    bool leading = raft_state(l->o.raft) == RAFT_LEADER;
    uint64_t term = raft_current_term(l->o.raft);
    if (cv_lessor_state(ls) == CV_LESSOR_FOLLOWER) {
        if (leading) leases__lead(l, term);
        return false;
    }
    if (!leading) {
        cv_lessor_follow(ls);
        return false;
    }
    if (term != ls->term) {
        leases__lead(l, term);
        return false;
    }
    return true;
}

/* Our renewal went to a leader that is no longer ours (killed, stopped, cut off): answer its caller now,
 * so that the next renewal goes to the new leader at once instead of after the call's timeout (a TTL:
 * the node would fence meanwhile). The call's own completion, later, only frees it. */
static void leases__own_check(struct cv_leases *l)
{
    raft_id leader;
    const char *addr;
    if (!l->own) return;
    raft_leader(l->o.raft, &leader, &addr);
    if (leader == l->own_to) return;
    struct call *c = l->own;
    void (*cb)(void *, int) = c->cb;
    l->own = NULL;
    c->cb = NULL;
    cb(c->data, CV_ENOTLEADER);
}

static void leases__barrier(struct cv_leases *l)
{
    if (l->barrier_busy) return; /* the one in flight is of an older term: the next tick starts ours */
    l->barrier_term = l->lessor.term;
    l->barrier.data = l;
    if (raft_barrier(l->o.raft, &l->barrier, leases__barrier_done) == 0) {
        l->barrier_busy = true;
        l->inflight++;
    }
}

void cv_leases_tick(struct cv_leases *l)
{
    if (l->closing) return;
    leases__own_check(l);
    struct cv_lessor *ls = &l->lessor;
    uint64_t now = cv_mono_ms();
    cv_lessor_prune(ls, now, l->o.max_wait_ms); /* their senders gave up on them */
    if (!leases__in_step(l)) return;
    if (cv_lessor_state(ls) == CV_LESSOR_CONFIRMING && now - ls->round_start_ms >= l->o.round_timeout_ms)
        cv_lessor_round_failed(ls, ls->round);
    if (cv_lessor_state(ls) == CV_LESSOR_BARRIER) leases__barrier(l); /* a failed one is tried again */
    if (!cv_lessor_round_due(ls)) return;
    const char *voters[VOTERS_MAX];
    char names[VOTERS_MAX][24];
    size_t n = leases__voters(l, voters, names);
    uint64_t round, term = ls->term;
    if (n == 0 || cv_lessor_round_start(ls, l->self, voters, n, now, &round)) return;
    for (size_t i = 0; i < n && cv_lessor_state(ls) == CV_LESSOR_CONFIRMING && ls->round == round; i++)
        if (strcmp(voters[i], l->self) && voters[i][0] != '#') leases__ask(l, voters[i], term, round);
}

/* ---------------------------------------------------------------- RPC handlers */

void cv_leases_handle_confirm(struct cv_leases *l, struct cv_rpc_conn *conn, uint64_t id, const uint8_t *body,
                              size_t len)
{
    Cverse__Rpc__LeaseConfirm *req = cverse__rpc__lease_confirm__unpack(NULL, len, body);
    if (!req) {
        cv_rpc_respond(conn, id, CV_EPROTO, "bad LeaseConfirm", NULL, 0);
        return;
    }
    raft_id leader;
    const char *addr;
    raft_leader(l->o.raft, &leader, &addr);
    Cverse__Rpc__LeaseConfirmAnswer a = CVERSE__RPC__LEASE_CONFIRM_ANSWER__INIT;
    /* A follower of that leader in that term has not voted in a later one (see core/lessor.h). */
    a.yes = !l->closing && raft_state(l->o.raft) == RAFT_FOLLOWER && raft_current_term(l->o.raft) == req->term &&
            leader == req->leader && leader != 0;
    a.round = req->round;
    cverse__rpc__lease_confirm__free_unpacked(req, NULL);
    uint8_t buf[32];
    size_t n = cverse__rpc__lease_confirm_answer__pack(&a, buf);
    cv_rpc_respond(conn, id, 0, NULL, buf, n);
}

void cv_leases_handle_renew(struct cv_leases *l, struct cv_rpc_conn *conn, uint64_t id, const uint8_t *body,
                            size_t len)
{
    Cverse__Rpc__LeaseRenew *req = cverse__rpc__lease_renew__unpack(NULL, len, body);
    struct waiter *w = req ? calloc(1, sizeof *w) : NULL;
    int rv = !req ? CV_EPROTO : !w ? CV_ENOMEM : l->closing ? CV_ENOTLEADER : 0;
    if (!rv) {
        *w = (struct waiter){.l = l, .conn = conn, .id = id};
        cv_rpc_conn_ref(conn);
        rv = cv_lessor_renew(&l->lessor, req->node, req->incarnation, (uint64_t)(uintptr_t)w, cv_mono_ms());
        if (rv) cv_rpc_conn_unref(conn);
    }
    if (rv) {
        free(w);
        cv_rpc_respond(conn, id, rv, cv_strerror(rv), NULL, 0);
    }
    if (req) cverse__rpc__lease_renew__free_unpacked(req, NULL);
}

/* ---------------------------------------------------------------- our own renewal */

static void leases__renewed(void *data, int status, const char *error, const uint8_t *body, size_t len)
{
    struct call *c = data;
    struct cv_leases *l = c->l;
    (void)error, (void)body, (void)len;
    l->inflight--;
    if (l->own == c) l->own = NULL;
    if (c->cb) c->cb(c->data, status);
    free(c);
    leases__settle(l);
}

int cv_leases_renew(struct cv_leases *l, uint64_t incarnation, unsigned timeout_ms,
                    void (*cb)(void *data, int status), void *data)
{
    if (l->closing) return CV_ECLOSED;
    if (raft_state(l->o.raft) == RAFT_LEADER) {
        struct waiter *w = calloc(1, sizeof *w);
        if (!w) return CV_ENOMEM;
        *w = (struct waiter){.l = l, .cb = cb, .data = data};
        int rv = cv_lessor_renew(&l->lessor, l->self, incarnation, (uint64_t)(uintptr_t)w, cv_mono_ms());
        if (rv) free(w);
        return rv;
    }
    raft_id leader;
    const char *addr;
    raft_leader(l->o.raft, &leader, &addr);
    const char *lid = leader ? l->o.member_id(l->o.data, leader) : NULL;
    if (!lid) return CV_ENOTLEADER;
    struct cv_rpc_client *cli = cv_peers_by_id(l->o.peers, lid);
    if (!cli) return CV_EUNAVAIL;
    struct call *c = calloc(1, sizeof *c);
    if (!c) return CV_ENOMEM;
    *c = (struct call){.l = l, .cb = cb, .data = data};
    Cverse__Rpc__LeaseRenew req = CVERSE__RPC__LEASE_RENEW__INIT;
    req.node = l->self;
    req.incarnation = incarnation;
    uint8_t buf[112];
    size_t n = cverse__rpc__lease_renew__pack(&req, buf);
    int rv = cv_rpc_call(cli, "lease.renew", buf, n, timeout_ms, leases__renewed, c);
    if (rv) {
        free(c);
        return rv;
    }
    l->inflight++;
    l->own = c;
    l->own_to = leader;
    return 0;
}

/* ---------------------------------------------------------------- leader duties */

uint64_t cv_leases_seen(const struct cv_leases *l, const char *node_id)
{
    return cv_lessor_seen(&l->lessor, node_id);
}

bool cv_leases_leading(const struct cv_leases *l, uint64_t *term, uint64_t *since_ms)
{
    enum cv_lessor_state st = cv_lessor_state(&l->lessor);
    if (l->closing || (st != CV_LESSOR_IDLE && st != CV_LESSOR_CONFIRMING)) return false;
    if (raft_state(l->o.raft) != RAFT_LEADER || raft_current_term(l->o.raft) != l->lessor.term) return false;
    *term = l->lessor.term;
    *since_ms = l->lessor.since_ms;
    return true;
}

int64_t cv_leases_granted_ago(const struct cv_leases *l, const char *node_id)
{
    enum cv_lessor_state st = cv_lessor_state(&l->lessor);
    uint64_t seen = cv_lessor_seen(&l->lessor, node_id), now = cv_mono_ms();
    if (st == CV_LESSOR_FOLLOWER || st == CV_LESSOR_BARRIER || !seen) return -1;
    return now > seen ? (int64_t)(now - seen) : 0;
}

void cv_leases_expire(struct cv_leases *l, const char *node_id)
{
    cv_lessor_expire(&l->lessor, node_id);
}

void cv_leases_registered(struct cv_leases *l, const char *node_id)
{
    cv_lessor_registered(&l->lessor, node_id);
}
