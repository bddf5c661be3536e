/* Raft membership changes and leadership transfer (members.h).
 *
 * Happy path: the leader's membership duty asks for one change (add a joining node as a spare, give a
 * member a role, remove a member); raft appends and commits the configuration entry and calls back; the
 * duty asks for the next one. A transfer asks raft to hand leadership to the most up-to-date voter (a
 * graceful stop).
 * Failure modes: not the leader, a change already in flight (raft allows one), a duplicate id: refused at
 * once with the code; a change that raft fails later: logged, the callback gets CV_ERAFT. */
#include "consensus/members.h"

#include <stdlib.h>

#include "cverse/error.h"
#include "util/log.h"

struct cv_members_change {
    struct raft_change req;
    struct cv_members *m;
    void (*cb)(void *data, int status);
    void *data;
};

void cv_members_init(struct cv_members *m, struct raft *raft, const bool *closing)
{
    *m = (struct cv_members){.raft = raft, .closing = closing};
}

void cv_members_fini(struct cv_members *m)
{
    free(m->change);
    m->change = NULL;
}

static void members__change_done(struct raft_change *req, int status)
{
    struct cv_members_change *cr = req->data;
    struct cv_members *m = cr->m;
    m->change = NULL;
    if (status) CV_WARN("raft membership change failed: %s", raft_strerror(status));
    if (cr->cb && !*m->closing) cr->cb(cr->data, status ? CV_ERAFT : 0);
    free(cr);
}

int cv_members_change(struct cv_members *m, enum cv_members_kind k, const char *node_id, raft_id id,
                      const char *addr, int role, void (*cb)(void *data, int status), void *data)
{
    static const char *const verbs[] = {"adding", "assigning", "removing"};
    if (m->change) return CV_EBUSY;
    if (raft_state(m->raft) != RAFT_LEADER) return CV_ENOTLEADER;
    if (!id) return CV_ENOTFOUND;
    struct cv_members_change *cr = calloc(1, sizeof *cr);
    if (!cr) return CV_ENOMEM;
    *cr = (struct cv_members_change){.m = m, .cb = cb, .data = data};
    cr->req.data = cr;
    int rv = k == CV_MEMBERS_ADD      ? raft_add(m->raft, &cr->req, id, addr, members__change_done)
             : k == CV_MEMBERS_ASSIGN ? raft_assign(m->raft, &cr->req, id, role, members__change_done)
                                      : raft_remove(m->raft, &cr->req, id, members__change_done);
    if (rv) {
        free(cr);
        CV_WARN("membership: %s %s (raft id %llu) refused: %s", verbs[k], node_id, (unsigned long long)id,
                raft_strerror(rv));
        return rv == RAFT_NOTLEADER ? CV_ENOTLEADER : rv == RAFT_CANTCHANGE ? CV_EBUSY
                                      : rv == RAFT_DUPLICATEID ? CV_EEXIST : CV_ERAFT;
    }
    m->change = cr;
    CV_INFO("membership: %s %s (raft id %llu)%s%s", verbs[k], node_id, (unsigned long long)id,
            k == CV_MEMBERS_ASSIGN ? " the role " : k == CV_MEMBERS_ADD ? " as a spare at " : "",
            k == CV_MEMBERS_ASSIGN ? raft_role_name(role) : k == CV_MEMBERS_ADD ? addr : "");
    return 0;
}

static void members__transfer_done(struct raft_transfer *req)
{
    struct cv_members *m = req->data;
    m->transferring = false;
    if (m->transfer_cb && !*m->closing) m->transfer_cb(m->transfer_data);
}

int cv_members_transfer(struct cv_members *m, void (*cb)(void *data), void *data)
{
    if (raft_state(m->raft) != RAFT_LEADER) return CV_ENOTLEADER;
    if (m->transferring) return CV_EBUSY;
    m->transfer.data = m;
    m->transfer_cb = cb;
    m->transfer_data = data;
    int rv = raft_transfer(m->raft, &m->transfer, 0, members__transfer_done);
    if (rv) return rv == RAFT_NOTFOUND ? CV_ENOTFOUND : CV_ERAFT;
    m->transferring = true;
    return 0;
}
