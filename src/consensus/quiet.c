/* Quiet heartbeats (quiet.h).
 *
 * Why: libraft's leader sends every follower an AppendEntries every heartbeat_timeout_ms (15 ms by
 * default, chosen so that voters notice a dead leader fast). A standby never starts an election, so for
 * it those messages only carry new entries and the new commit index. The 10-node demo has 7 standbys:
 * at idle each woke ~67 times a second (read, apply nothing, answer), most of an idle node's CPU.
 *
 * Happy path: the raft_io shim (snapguard.c) asks cv_quiet_skip for every outgoing message. A heartbeat
 * (no entries) to a standby whose last message had the same term, the same last index and the same
 * commit index, sent less than a keepalive ago, is left unsent; everything else goes out and is
 * recorded. So a standby still gets every entry at once and every commit-index change with the next
 * heartbeat (as before), and at least one message per keepalive: half an election timeout, or four
 * election timeouts once it is settled — its stored log reaches our configuration's entry (it knows it
 * is a standby, so it never campaigns; the consensus' shim does not even run its election timer) and,
 * the consensus adds, it renewed its lease lately (a standby that restarted renews nothing until it
 * knows the leader: it falls back to the short keepalive and learns the leader within 75 ms).
 *
 * Why this is safe: Raft is correct whatever messages the network loses, and an unsent heartbeat is one
 * the network lost. What a lost heartbeat could delay, and why it does not here: a follower that lost
 * entries (restarted) rejects the next heartbeat and the leader backs up — the first heartbeat after the
 * record goes out within a keepalive; a broken connection is redialled at the next message sent — within
 * a keepalive; a new leader's messages differ in term — never skipped; a voter just demoted to standby
 * that lost its configuration entry still thinks it votes: it is not settled, so the keepalive (half an
 * election timeout) reaches it before its election timer fires, and it learns what it lacks.
 *
 * Voters: their election timers and the leader's contact-quorum check need a regular beat, and a voter
 * that has not answered within the leader's last tick is put back to probing by libraft, which then
 * sends it a new entry only at the next tick (up to a heartbeat later). So a voter's heartbeat is left
 * out only while the log stands still — nothing new went to it for voter_idle_ms (2 s) — and then only
 * down to one per voter_keepalive_ms (two heartbeats, at most a third of an election timeout): an idle
 * voter wakes half as often, its election timer still hears the leader three times before it could fire,
 * and the first entry after an idle spell may leave up to one heartbeat later (never one that follows
 * another within 2 s).
 *
 * Failure modes: out of memory for a new record: the message goes out (nothing is skipped for it). */
#include "consensus/quiet.h"

#include <stdlib.h>

#include "util/buf.h"

bool cv_quiet_has_config(const struct raft *r, raft_id id)
{
    raft_index idx = r->configuration_uncommitted_index ? r->configuration_uncommitted_index
                                                        : r->configuration_committed_index,
               match = 0;
    return idx != 0 && raft_match_index(r, id, &match) == 0 && match >= idx;
}

static bool quiet__settled(void *data, raft_id id)
{
    return data && cv_quiet_has_config(data, id);
}

void cv_quiet_init(struct cv_quiet *q, const struct raft *r, uint64_t keepalive_ms, uint64_t settled_ms,
                   bool enabled)
{
    *q = (struct cv_quiet){.raft = r, .enabled = enabled, .keepalive_ms = keepalive_ms,
                           .settled_ms = settled_ms > keepalive_ms ? settled_ms : keepalive_ms,
                           .settled = quiet__settled, .settled_data = (void *)r};
}

void cv_quiet_fini(struct cv_quiet *q)
{
    free(q->peers);
    q->peers = NULL;
    q->n = q->cap = 0;
}

/* ae tells the follower of last's record nothing new: same term, ends at the same index, same commit. */
static bool quiet__same(const struct cv_quiet_peer *last, const struct raft_append_entries *ae)
{
    return last->sent_ms && ae->term == last->term && ae->prev_log_index + ae->n_entries == last->upto &&
           ae->leader_commit == last->commit;
}

bool cv_quiet_redundant(const struct cv_quiet_peer *last, const struct raft_append_entries *ae, uint64_t now_ms,
                        uint64_t keepalive_ms)
{
    if (ae->n_entries != 0 || last->sent_ms == 0) return false;
    if (now_ms < last->sent_ms || now_ms - last->sent_ms >= keepalive_ms) return false;
    return quiet__same(last, ae);
}

static struct cv_quiet_peer *quiet__peer(struct cv_quiet *q, raft_id id)
{
    for (size_t i = 0; i < q->n; i++)
        if (q->peers[i].id == id) return &q->peers[i];
    if (cv_array_grow((void **)&q->peers, &q->cap, q->n + 1, sizeof *q->peers)) return NULL;
    q->peers[q->n] = (struct cv_quiet_peer){.id = id};
    return &q->peers[q->n++];
}

static int quiet__role(const struct raft *r, raft_id id)
{
    for (unsigned i = 0; i < r->configuration.n; i++)
        if (r->configuration.servers[i].id == id) return r->configuration.servers[i].role;
    return -1;
}

/* How long a heartbeat to p may stay unsent after the last message (0: it goes out). */
static uint64_t quiet__keepalive(const struct cv_quiet *q, const struct cv_quiet_peer *p, raft_id id, uint64_t now)
{
    int role = quiet__role(q->raft, id);
    if (role == RAFT_STANDBY) return q->settled(q->settled_data, id) ? q->settled_ms : q->keepalive_ms;
    if (role == RAFT_VOTER && q->voter_keepalive_ms && p->changed_ms && now >= p->changed_ms &&
        now - p->changed_ms >= q->voter_idle_ms)
        return q->voter_keepalive_ms;
    return 0;
}

bool cv_quiet_skip(struct cv_quiet *q, const struct raft_message *m, uint64_t now_ms)
{
    if (!q->enabled) return false;
    struct cv_quiet_peer *p = quiet__peer(q, m->server_id);
    if (!p) return false;
    if (m->type != RAFT_APPEND_ENTRIES) {
        p->sent_ms = 0; /* a snapshot, a vote...: start over */
        return false;
    }
    const struct raft_append_entries *ae = &m->append_entries;
    bool heartbeat = ae->n_entries == 0, standby = quiet__role(q->raft, m->server_id) == RAFT_STANDBY;
    uint64_t keepalive = heartbeat ? quiet__keepalive(q, p, m->server_id, now_ms) : 0;
    if (keepalive && cv_quiet_redundant(p, ae, now_ms, keepalive)) {
        if (standby) q->skipped++;
        else q->voter_skipped++;
        return true;
    }
    if (standby && heartbeat) q->sent++;
    uint64_t now = now_ms ? now_ms : 1, changed = quiet__same(p, ae) ? p->changed_ms : now;
    *p = (struct cv_quiet_peer){.id = p->id, .term = ae->term, .upto = ae->prev_log_index + ae->n_entries,
                                .commit = ae->leader_commit, .sent_ms = now, .changed_ms = changed};
    return false;
}
