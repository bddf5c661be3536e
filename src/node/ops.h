/* Create and delete of objects: objects.create / objects.delete from the RPC and cv_object_create /
 * cv_object_delete from objects, answered from the local catalog or committed through the consensus. */
#ifndef CV_NODE_OPS_H
#define CV_NODE_OPS_H

#include "net/rpc.h"
#include "node/hctx.h"

struct op;
struct cv_ops {
    struct cv_hctx *x;  /* first member (cv_hctx_handle_closed); borrowed */
    struct op *soon, **soon_tail; /* answered at the next loop iteration */
    uv_timer_t soon_timer;
};

/* Initialises the timer (data: ops). */
void cv_ops_init(struct cv_ops *ops, struct cv_hctx *x);
/* cv_object_create / cv_object_delete of an object (runtime hooks): 0 and cb fires later (never from
 * inside), or a negative code and cb never fires. */
int cv_ops_create(struct cv_ops *ops, const char *type, const char *id, cv_host_done_cb cb, void *cb_data);
int cv_ops_delete(struct cv_ops *ops, const char *type, const char *id, cv_host_done_cb cb, void *cb_data);
/* Serves objects.create (create) or objects.delete. */
void cv_ops_handle(struct cv_ops *ops, bool create, struct cv_rpc_conn *conn, uint64_t id,
                   const uint8_t *body, size_t len);
/* Host closing: answers what waits for the next iteration and closes the timer (one part of the host). */
void cv_ops_close(struct cv_ops *ops);

#endif
