/* The leader's lease rounds (lessor.h).
 *
 * Happy path: the leader's node takes the lead (BARRIER), its first entry of the term applies (IDLE);
 * renewals arrive (cv_lessor_renew) and wait; the caller sees a round due, starts it (CONFIRMING: the
 * start time is read, confirmations go to the other voters); a majority of yes grants every renewal that
 * arrived by the round's start — answer(token, 0), the node's seen = that arrival — and the machine is
 * IDLE again, with the renewals that came during the round waiting for the next one.
 *
 * Failure modes: a no, or no majority in time (cv_lessor_round_failed): IDLE, the renewals wait for the
 * next round (a deposed leader keeps failing its rounds: a later majority has moved on, and raft soon
 * makes it a follower: everything waiting is answered CV_ENOTLEADER). A node declared dead: its waiting
 * renewals are answered CV_ECONFLICT. Out of memory: the renewal is refused (the node retries). */
#include "core/lessor.h"

#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"

#define S(x) CV_SM_BIT(CV_LESSOR_##x)
static const struct cv_sm_state lessor__states[CV_LESSOR_N] = {
    [CV_LESSOR_FOLLOWER] = {"follower", CV_SM_INITIAL | CV_SM_FINAL, S(FOLLOWER) | S(BARRIER)},
    [CV_LESSOR_BARRIER] = {"barrier", CV_SM_FINAL, S(FOLLOWER) | S(BARRIER) | S(IDLE)},
    [CV_LESSOR_IDLE] = {"idle", CV_SM_FINAL, S(FOLLOWER) | S(BARRIER) | S(CONFIRMING)},
    [CV_LESSOR_CONFIRMING] = {"confirming", CV_SM_FINAL, S(FOLLOWER) | S(BARRIER) | S(IDLE)},
};
#undef S
static const struct cv_sm_conf lessor__conf = {"lessor", lessor__states, CV_LESSOR_N};

const struct cv_sm_conf *cv_lessor_sm(void)
{
    return &lessor__conf;
}

/* A follower holds no renewal; a round in flight still lacks its majority. */
static const char *lessor__invariant(const struct cv_sm *m, int prev)
{
    const struct cv_lessor *l = (const struct cv_lessor *)((const char *)m - offsetof(struct cv_lessor, sm));
    (void)prev;
    if (m->state == CV_LESSOR_FOLLOWER && l->n_reqs) return "a follower holds renewals";
    if (m->state == CV_LESSOR_CONFIRMING && (l->needed == 0 || l->yes >= l->needed))
        return "a round in flight already has its majority";
    return NULL;
}

static int lessor__grow(void **arr, size_t *cap, size_t want, size_t elem)
{
    if (want <= *cap) return 0;
    size_t n = *cap ? *cap * 2 : 8;
    while (n < want) n *= 2;
    void *p = realloc(*arr, n * elem);
    if (!p) return CV_ENOMEM;
    *arr = p;
    *cap = n;
    return 0;
}

void cv_lessor_init(struct cv_lessor *l, cv_lessor_answer_cb answer, cv_lessor_standing_cb standing, void *data,
                    const char *name)
{
    memset(l, 0, sizeof *l);
    l->answer = answer;
    l->standing = standing;
    l->data = data;
    cv_sm_init(&l->sm, &lessor__conf, CV_LESSOR_FOLLOWER, lessor__invariant, name);
}

/* Answers and drops the waiting renewals that match (node SIZE_MAX: all), one at a time: l is consistent
 * whenever the callback runs (it may look at l). */
static void lessor__answer_all(struct cv_lessor *l, size_t node, int status)
{
    size_t i = 0;
    while (i < l->n_reqs) {
        struct cv_lessor_req r = l->reqs[i];
        if (node != SIZE_MAX && r.node != node) {
            i++;
            continue;
        }
        memmove(&l->reqs[i], &l->reqs[i + 1], (l->n_reqs - i - 1) * sizeof *l->reqs);
        l->n_reqs--;
        l->answer(l->data, r.token, status);
    }
}

void cv_lessor_fini(struct cv_lessor *l)
{
    lessor__answer_all(l, SIZE_MAX, CV_ENOTLEADER);
    if (cv_lessor_state(l) != CV_LESSOR_FOLLOWER) cv_sm_move(&l->sm, CV_LESSOR_FOLLOWER);
    cv_sm_fini(&l->sm);
    free(l->asked);
    free(l->nodes);
    free(l->reqs);
    memset(l, 0, sizeof *l);
}

void cv_lessor_lead(struct cv_lessor *l, uint64_t term, uint64_t now_ms)
{
    lessor__answer_all(l, SIZE_MAX, CV_ENOTLEADER); /* none when we were a follower */
    for (size_t i = 0; i < l->n_nodes; i++) {
        l->nodes[i].seen_ms = 0;
        l->nodes[i].dead = false; /* an expiry of ours that applied is the catalog's now (standing) */
    }
    l->term = term;
    l->since_ms = now_ms;
    cv_sm_move(&l->sm, CV_LESSOR_BARRIER);
}

void cv_lessor_barrier(struct cv_lessor *l, uint64_t term)
{
    if (cv_lessor_state(l) == CV_LESSOR_BARRIER && term == l->term) cv_sm_move(&l->sm, CV_LESSOR_IDLE);
}

void cv_lessor_follow(struct cv_lessor *l)
{
    lessor__answer_all(l, SIZE_MAX, CV_ENOTLEADER);
    if (cv_lessor_state(l) != CV_LESSOR_FOLLOWER) cv_sm_move(&l->sm, CV_LESSOR_FOLLOWER);
}

static size_t lessor__find(const struct cv_lessor *l, const char *id)
{
    for (size_t i = 0; i < l->n_nodes; i++)
        if (!strcmp(l->nodes[i].id, id)) return i;
    return SIZE_MAX;
}

static size_t lessor__node(struct cv_lessor *l, const char *id)
{
    size_t i = lessor__find(l, id);
    if (i != SIZE_MAX || strlen(id) >= CV_LESSOR_ID_MAX) return i;
    if (lessor__grow((void **)&l->nodes, &l->cap_nodes, l->n_nodes + 1, sizeof *l->nodes)) return SIZE_MAX;
    struct cv_lessor_node *n = &l->nodes[l->n_nodes];
    memset(n, 0, sizeof *n);
    memcpy(n->id, id, strlen(id) + 1);
    return l->n_nodes++;
}

int cv_lessor_renew(struct cv_lessor *l, const char *node_id, uint64_t incarnation, uint64_t token,
                    uint64_t now_ms)
{
    if (cv_lessor_state(l) == CV_LESSOR_FOLLOWER) return CV_ENOTLEADER;
    size_t i = lessor__node(l, node_id);
    if (i == SIZE_MAX) return CV_ENOMEM;
    if (l->nodes[i].dead) return CV_ECONFLICT;
    if (lessor__grow((void **)&l->reqs, &l->cap_reqs, l->n_reqs + 1, sizeof *l->reqs)) return CV_ENOMEM;
    l->reqs[l->n_reqs++] =
        (struct cv_lessor_req){.token = token, .node = i, .incarnation = incarnation, .arrived_ms = now_ms,
                               .seq = l->next_seq++};
    return 0;
}

void cv_lessor_prune(struct cv_lessor *l, uint64_t now_ms, uint64_t max_age_ms)
{
    size_t i = 0;
    while (i < l->n_reqs) { /* one at a time: l is consistent whenever the callback runs */
        struct cv_lessor_req r = l->reqs[i];
        if (now_ms <= r.arrived_ms || now_ms - r.arrived_ms <= max_age_ms) {
            i++;
            continue;
        }
        memmove(&l->reqs[i], &l->reqs[i + 1], (l->n_reqs - i - 1) * sizeof *l->reqs);
        l->n_reqs--;
        l->answer(l->data, r.token, CV_ETIMEDOUT);
    }
}

bool cv_lessor_round_due(const struct cv_lessor *l)
{
    return cv_lessor_state(l) == CV_LESSOR_IDLE && l->n_reqs > 0;
}

/* The round has its majority: grant what arrived by its start. */
static void lessor__grant(struct cv_lessor *l)
{
    uint64_t start = l->round_start_seq;
    if (cv_lessor_state(l) == CV_LESSOR_CONFIRMING) cv_sm_move(&l->sm, CV_LESSOR_IDLE);
    size_t kept = 0;
    while (kept < l->n_reqs) {
        struct cv_lessor_req r = l->reqs[kept];
        if (r.seq >= start) { /* came after the round started: waits for the next one */
            kept++;
            continue;
        }
        memmove(&l->reqs[kept], &l->reqs[kept + 1], (l->n_reqs - kept - 1) * sizeof *l->reqs);
        l->n_reqs--;
        int st = l->standing ? l->standing(l->data, l->nodes[r.node].id, r.incarnation) : 0;
        if (!st && r.arrived_ms > l->nodes[r.node].seen_ms) l->nodes[r.node].seen_ms = r.arrived_ms;
        l->answer(l->data, r.token, st);
        if (cv_lessor_state(l) == CV_LESSOR_FOLLOWER) return; /* the callback gave up leadership */
    }
}

int cv_lessor_round_start(struct cv_lessor *l, const char *self_id, const char *const *voters, size_t n_voters,
                          uint64_t now_ms, uint64_t *round)
{
    if (cv_lessor_state(l) != CV_LESSOR_IDLE || n_voters == 0) return CV_EINVAL;
    if (lessor__grow((void **)&l->asked, &l->cap_asked, n_voters, sizeof *l->asked)) return CV_ENOMEM;
    unsigned yes = 0, n = 0;
    l->n_asked = 0;
    for (size_t i = 0; i < n_voters; i++) {
        bool dup = false;
        for (size_t j = 0; j < i && !dup; j++) dup = !strcmp(voters[i], voters[j]);
        if (dup) continue;
        n++;
        if (!strcmp(voters[i], self_id)) {
            yes++;
            continue;
        }
        size_t len = strlen(voters[i]);
        if (len >= CV_LESSOR_ID_MAX) continue; /* cannot be a member: never answers (still counted) */
        memcpy(l->asked[l->n_asked++], voters[i], len + 1);
    }
    l->round++;
    *round = l->round;
    l->round_start_ms = now_ms;
    l->round_start_seq = l->next_seq;
    l->needed = n / 2 + 1;
    l->yes = yes;
    l->unanswered = (unsigned)l->n_asked;
    if (l->yes >= l->needed) { /* a majority of ourselves (a single voter): granted at once */
        lessor__grant(l);
        return 0;
    }
    cv_sm_move(&l->sm, CV_LESSOR_CONFIRMING);
    return 0;
}

void cv_lessor_confirm(struct cv_lessor *l, uint64_t round, const char *voter, bool yes)
{
    if (cv_lessor_state(l) != CV_LESSOR_CONFIRMING || round != l->round) return;
    size_t i = 0;
    while (i < l->n_asked && strcmp(l->asked[i], voter)) i++;
    if (i == l->n_asked || !l->asked[i][0]) return; /* not asked, or answered already */
    l->asked[i][0] = '\0';
    l->unanswered--;
    if (yes && ++l->yes >= l->needed) lessor__grant(l);
    else if (!yes && l->yes + l->unanswered < l->needed) cv_sm_move(&l->sm, CV_LESSOR_IDLE); /* out of reach */
}

void cv_lessor_round_failed(struct cv_lessor *l, uint64_t round)
{
    if (cv_lessor_state(l) == CV_LESSOR_CONFIRMING && round == l->round) cv_sm_move(&l->sm, CV_LESSOR_IDLE);
}

uint64_t cv_lessor_seen(const struct cv_lessor *l, const char *node_id)
{
    size_t i = lessor__find(l, node_id);
    return i == SIZE_MAX ? 0 : l->nodes[i].seen_ms;
}

void cv_lessor_expire(struct cv_lessor *l, const char *node_id)
{
    size_t i = lessor__node(l, node_id);
    if (i == SIZE_MAX) return;
    l->nodes[i].dead = true;
    l->nodes[i].seen_ms = 0;
    lessor__answer_all(l, i, CV_ECONFLICT);
}

void cv_lessor_registered(struct cv_lessor *l, const char *node_id)
{
    size_t i = lessor__find(l, node_id);
    if (i != SIZE_MAX) l->nodes[i].dead = false;
}
