/* Incoming object calls: objects.call from gates and other nodes, the ownership and catalog checks of a
 * call to an object that should live here (the verdict), and the activation of a never-created object
 * by its first call. */
#ifndef CV_NODE_INCALL_H
#define CV_NODE_INCALL_H

#include "net/rpc.h"
#include "node/hctx.h"

/* Why a call cannot run here: status (0 = it runs), msg; owner/shard for CV_EREDIRECT. For the statistics:
 * type/method once the registry knew them (else NULL), placed once shard is the object's. */
struct cv_verdict {
    int status;
    char owner[CV_NODE_ID_MAX];
    uint32_t shard;
    char msg[256];
    const struct cv_object_type *type; /* borrowed from the registry */
    const struct cv_method *method;
    bool placed;
};

struct icall;
struct first;
struct cv_incall {
    struct cv_hctx *x; /* borrowed */
    struct first *first;   /* owned: first-call creations in flight (uthash by id) */
    uint64_t first_created; /* CreateObject proposals made by first calls (metrics) */
};

void cv_incall_init(struct cv_incall *in, struct cv_hctx *x);
/* The checks of a call to an object that should live here, then cv_runtime_call_id. A call to an object
 * of a known type that the catalog lacks activates it (docs/objects.md, activation on first call): a
 * CreateObject is proposed from here (one per id while it is in flight: later first calls wait for the
 * same one) and the call runs once it committed, after the `created` hook. call_id: the caller's
 * ctx: the caller's reliable-call id and client id, or NULL (borrowed). Returns v->status: 0 (cb fires later, never from inside) or a
 * code with v->msg (and v->owner/shard for CV_EREDIRECT). */
int cv_incall_local(struct cv_hctx *x, const char *type, const char *id, const char *method,
                    const uint8_t *req, size_t len, const struct cv_call_ctx *ctx, cv_runtime_call_cb cb,
                    void *data, struct cv_verdict *v);
/* Serves one objects.call request (answered on conn now or later). */
void cv_incall_handle(struct cv_incall *in, struct cv_rpc_conn *conn, uint64_t id, const uint8_t *body,
                      size_t len, uint32_t deadline_ms);
#endif
