/* Raft membership changes and leadership transfer, one at a time, on the leader: the consensus' edge to
 * raft_add, raft_assign, raft_remove and raft_transfer. */
#ifndef CV_CONSENSUS_MEMBERS_H
#define CV_CONSENSUS_MEMBERS_H

#include <raft.h>
#include <stdbool.h>

struct cv_members_change;

struct cv_members {
    struct raft *raft;                /* borrowed, valid while m is used */
    const bool *closing;              /* borrowed: callbacks are not called once it is true */
    struct cv_members_change *change; /* owned: the change in flight, NULL: none */
    struct raft_transfer transfer;
    bool transferring;
    void (*transfer_cb)(void *data);
    void *transfer_data;
};

enum cv_members_kind { CV_MEMBERS_ADD, CV_MEMBERS_ASSIGN, CV_MEMBERS_REMOVE };

void cv_members_init(struct cv_members *m, struct raft *raft, const bool *closing);
/* Frees a change whose callback never ran (raft closed). */
void cv_members_fini(struct cv_members *m);

/* Starts one change of node_id (raft id id; addr for ADD, role for ASSIGN). cb (may be NULL) gets 0 or
 * CV_ERAFT. CV_EBUSY (a change in flight), CV_ENOTLEADER, CV_ENOTFOUND (id 0), CV_EEXIST (a duplicate
 * id), CV_ENOMEM, CV_ERAFT. The caller checks that raft runs. */
int cv_members_change(struct cv_members *m, enum cv_members_kind k, const char *node_id, raft_id id,
                      const char *addr, int role, void (*cb)(void *data, int status), void *data);
/* Hands leadership to the most up-to-date voter; cb(data) once done (not once closing). CV_ENOTLEADER,
 * CV_EBUSY (one in flight), CV_ENOTFOUND (no voter to take it), CV_ERAFT. */
int cv_members_transfer(struct cv_members *m, void (*cb)(void *data), void *data);

#endif
