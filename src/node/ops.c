/* Create and delete of objects.
 *
 * Happy path: an object the local catalog already has (create) or lacks (delete) is answered at once;
 * otherwise a CreateObject / DeleteObject is proposed and answered once applied here — except an RPC
 * caller's (a gate's) create, answered at the leader's commit notice (consensus/notice.h: one message
 * after the leader's commit, while a follower applies the entry only when the leader's next append tells
 * it the commit index, up to a heartbeat later: a create one at a time took 28 ms p50, 1 ms with the
 * notice). Every node applies it; the owner activates a created object (its `created` hook runs there,
 * once), every node destroys a deleted one (host.c). Answers never come from inside the call that asked
 * (the soon timer).
 * A create answered before the local apply leaves this node's catalog (and any other's) behind what its
 * caller knows: a call to the object meanwhile finds it absent and creates it on its first call (the
 * catalog keeps the first create), a create of the id proposes again and the catalog decides, and a delete
 * that finds no object is proposed all the same (with the type: the catalog keeps an object of another
 * type) rather than answered "deleted" from a catalog that may not have the create yet — the log orders
 * it after every create that was answered before it was sent. Deletes are answered at the local apply,
 * where the owner destroyed the activation: a call after the answer never reaches the deleted one.
 * Failure modes: unknown type -> CV_ENOTFOUND; bad id -> CV_EINVAL; an id of another type -> CV_EEXIST
 * (create) / CV_ENOTFOUND (delete); a proposal that fails or times out is reported to the caller. */
#include "node/ops.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consensus/notice.h"
#include "core/access.h"
#include "cverse/error.h"
#include "rpc.pb-c.h"
#include "util/log.h"

/* objects.create / objects.delete, from the RPC (conn) or an object (cb). */
struct op {
    struct cv_ops *ops;
    struct op *next; /* soon list */
    bool create;
    char type[CV_HOST_TYPE_MAX], id[CV_HOST_ID_MAX];
    struct cv_rpc_conn *conn;
    uint64_t rid;
    cv_host_done_cb cb;
    void *data;
    uint64_t seq;  /* the proposal's command seq, watched for the leader's notice (RPC callers) */
    bool watched;  /* seq is watched */
    bool answered; /* the RPC caller got its answer from the notice; the local apply only frees op */
    int status;
    char msg[256];
};

void cv_ops_init(struct cv_ops *ops, struct cv_hctx *x)
{
    ops->x = x;
    ops->soon = NULL;
    ops->soon_tail = &ops->soon;
    uv_timer_init(x->loop, &ops->soon_timer);
    ops->soon_timer.data = ops;
}

/* Answers op's caller (once). */
static void ops__answer(struct op *op)
{
    if (op->answered) return;
    op->answered = true;
    if (op->conn) {
        if (op->status != 0) {
            cv_rpc_respond(op->conn, op->rid, op->status, op->msg, NULL, 0);
        } else if (op->create) {
            Cverse__Rpc__CreateResponse r = CVERSE__RPC__CREATE_RESPONSE__INIT;
            r.id = op->id;
            uint8_t buf[CV_HOST_ID_MAX + 16];
            cv_rpc_respond(op->conn, op->rid, 0, NULL, buf, cverse__rpc__create_response__pack(&r, buf));
        } else {
            Cverse__Rpc__DeleteResponse r = CVERSE__RPC__DELETE_RESPONSE__INIT;
            r.success = true;
            uint8_t buf[16];
            cv_rpc_respond(op->conn, op->rid, 0, NULL, buf, cverse__rpc__delete_response__pack(&r, buf));
        }
        cv_rpc_conn_unref(op->conn);
        op->conn = NULL;
    } else if (op->cb) {
        op->cb(op->data, op->status, op->status ? op->msg : NULL);
    }
}

static void ops__finish(struct op *op)
{
    struct cv_hctx *x = op->ops->x;
    ops__answer(op);
    if (op->watched) cv_notices_unwatch(cv_consensus_notices(x->cons), op->seq);
    free(op);
    cv_hctx_release(x);
}

static void ops__soon_cb(uv_timer_t *t)
{
    struct cv_ops *h = t->data;
    struct op *list = h->soon;
    h->soon = NULL;
    h->soon_tail = &h->soon;
    while (list) {
        struct op *op = list;
        list = op->next;
        ops__finish(op);
    }
}

/* Completes op from the next loop iteration (never from inside the call that started it). */
static void ops__soon(struct op *op, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void ops__soon(struct op *op, int status, const char *fmt, ...)
{
    struct cv_ops *h = op->ops;
    op->status = status;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(op->msg, sizeof op->msg, fmt, ap);
        va_end(ap);
    }
    if (h->x->closing) { /* the soon timer is closed: only RPC callers get here (hooks refuse first) */
        ops__finish(op);
        return;
    }
    op->next = NULL;
    *h->soon_tail = op;
    h->soon_tail = &op->next;
    cv_hctx_timer_again(&h->soon_timer, ops__soon_cb, 0);
}

/* The leader's notice: the create committed at index. A success is answered now (the local apply follows
 * and activates the object); a failure is left to the proposal's own completion, which reports it with
 * its message. */
static void ops__committed(void *data, int status, uint64_t index)
{
    struct op *op = data;
    struct cv_ops *ops = op->ops;
    op->watched = false;
    (void)index;
    if (status != 0 || ops->x->closing) return;
    op->status = 0;
    ops__answer(op);
}

static void ops__proposed(void *data, int status, uint64_t index)
{
    struct op *op = data;
    if (op->answered && status != 0) return ops__finish(op); /* committed (the notice said so); the host's
                                                                 * apply observer activates it */
    op->status = status;
    if (status == 0 && op->create) cv_hctx_activate_applied(op->ops->x, op->type, op->id, index);
    else if (status == CV_EEXIST)
        snprintf(op->msg, sizeof op->msg, "object %.200s exists with another type", op->id);
    else if (status == CV_ENOTFOUND) /* a delete the catalog refused: the id is of another type */
        snprintf(op->msg, sizeof op->msg, "object %.120s is of another type, not a %.100s", op->id, op->type);
    else if (status) snprintf(op->msg, sizeof op->msg, "catalog update failed: %s", cv_strerror(status));
    ops__finish(op);
}

static void ops__propose(struct op *op)
{
    struct cv_hctx *h = op->ops->x;
    Cverse__Catalog__Command cmd = CVERSE__CATALOG__COMMAND__INIT;
    Cverse__Catalog__CmdCreateObject co = CVERSE__CATALOG__CMD_CREATE_OBJECT__INIT;
    Cverse__Catalog__CmdDeleteObject d = CVERSE__CATALOG__CMD_DELETE_OBJECT__INIT;
    if (op->create) {
        co.type = op->type;
        co.id = op->id;
        cmd.cmd_case = CVERSE__CATALOG__COMMAND__CMD_CREATE_OBJECT;
        cmd.create_object = &co;
    } else {
        d.id = op->id;
        d.type = op->type;
        cmd.cmd_case = CVERSE__CATALOG__COMMAND__CMD_DELETE_OBJECT;
        cmd.delete_object = &d;
    }
    int rv = cv_consensus_propose(h->cons, &cmd, CV_HOST_PROPOSE_TIMEOUT_MS, ops__proposed, op);
    if (rv) return ops__soon(op, rv, "cannot propose: %s", cv_strerror(rv));
    /* cmd.seq is the proposal's now; without a watch the answer waits for our apply, as before */
    if (op->conn && op->create && !cv_notices_watch(cv_consensus_notices(h->cons), cmd.seq, ops__committed, op)) {
        op->seq = cmd.seq;
        op->watched = true;
    }
}

/* Decides a create or delete: answered from the local catalog, or proposed. Always completes later. */
static void ops__start(struct op *op)
{
    struct cv_hctx *h = op->ops->x;
    struct cv_placement p;
    char owner[CV_NODE_ID_MAX], have[CV_HOST_TYPE_MAX];
    if (h->closing) return ops__soon(op, CV_ECLOSED, "node is shutting down");
    if (op->create && !cv_registry_type(h->reg, op->type))
        return ops__soon(op, CV_ENOTFOUND, "unknown object type \"%.100s\"", op->type);
    int rv = cv_hctx_owner(h, op->id, &p, owner);
    if (rv == CV_EINVAL) return ops__soon(op, CV_EINVAL, "invalid object id \"%.100s\"", op->id);
    if (rv) return ops__soon(op, CV_ENOTFOUND, "object id \"%.100s\" is pinned to an unknown node", op->id);
    rv = cv_catalog_object_get(h->cat, op->id, have, sizeof have, NULL);
    if (rv == CV_EINVAL) return ops__soon(op, CV_EINVAL, "invalid object id \"%.100s\"", op->id);
    if (rv && rv != CV_ENOTFOUND) return ops__soon(op, rv, "catalog lookup failed: %s", cv_strerror(rv));
    bool same = rv == 0 && strcmp(have, op->type) == 0;
    if (op->create && same) {
        cv_hctx_ensure_active(h, op->type, op->id, false); /* exists: make sure it is live on its owner */
        return ops__soon(op, 0, NULL);
    }
    if (op->create && rv == 0)
        return ops__soon(op, CV_EEXIST, "object %.100s exists with type %s", op->id, have);
    /* a delete of an id absent here is proposed anyway (this catalog may lag a create already answered) */
    if (!op->create && rv == 0 && !same)
        return ops__soon(op, CV_ENOTFOUND, "object %.100s is a %s, not a %.100s", op->id, have, op->type);
    ops__propose(op);
}

static struct op *ops__new(struct cv_ops *ops, bool create, const char *type, const char *id)
{
    struct op *op = calloc(1, sizeof *op);
    if (!op) return NULL;
    op->ops = ops;
    op->create = create;
    snprintf(op->type, sizeof op->type, "%s", type);
    snprintf(op->id, sizeof op->id, "%s", id);
    cv_hctx_hold(ops->x);
    return op;
}

static int ops__hook(struct cv_ops *h, bool create, const char *type, const char *id, cv_host_done_cb cb,
                   void *data)
{
    if (h->x->closing) return CV_ECLOSED;
    if (strlen(type) >= CV_HOST_TYPE_MAX || strlen(id) >= CV_HOST_ID_MAX) return CV_EINVAL;
    struct op *op = ops__new(h, create, type, id);
    if (!op) return CV_ENOMEM;
    op->cb = cb;
    op->data = data;
    ops__start(op);
    return 0;
}

int cv_ops_create(struct cv_ops *ops, const char *type, const char *id, cv_host_done_cb cb, void *cb_data)
{
    return ops__hook(ops, true, type, id, cb, cb_data);
}

int cv_ops_delete(struct cv_ops *ops, const char *type, const char *id, cv_host_done_cb cb, void *cb_data)
{
    return ops__hook(ops, false, type, id, cb, cb_data);
}

void cv_ops_handle(struct cv_ops *h, bool create, struct cv_rpc_conn *conn, uint64_t id,
                      const uint8_t *body, size_t len)
{
    /* CreateRequest and DeleteRequest have the same fields. */
    Cverse__Rpc__CreateRequest *c = NULL;
    Cverse__Rpc__DeleteRequest *d = NULL;
    ProtobufCMessage *msg;
    const char *type, *oid;
    if (create) {
        msg = (ProtobufCMessage *)(c = cverse__rpc__create_request__unpack(NULL, len, body));
        type = c ? c->type : NULL;
        oid = c ? c->id : NULL;
    } else {
        msg = (ProtobufCMessage *)(d = cverse__rpc__delete_request__unpack(NULL, len, body));
        type = d ? d->type : NULL;
        oid = d ? d->id : NULL;
    }
    if (!msg) {
        cv_rpc_respond(conn, id, CV_EPROTO, create ? "undecodable CreateRequest" : "undecodable DeleteRequest",
                       NULL, 0);
        return;
    }
    struct op *op = NULL;
    if (!*type || !*oid || strlen(type) >= CV_HOST_TYPE_MAX || strlen(oid) >= CV_HOST_ID_MAX)
        cv_rpc_respond(conn, id, CV_EINVAL, "type and id are required (type < 128, id < 512 bytes)", NULL, 0);
    else if (cv_access_life(&h->x->cfg->access_rules, create ? CV_LIFE_CREATE : CV_LIFE_DELETE, type, oid, false))
        /* a gate's (a client's) request: object_lifecycle_rules' client side, as the gate checked it */
        cv_rpc_respond(conn, id, CV_EPERM, create ? "creating this object is not permitted to clients "
                       "(object_lifecycle_rules)" : "deleting this object is not permitted to clients "
                       "(object_lifecycle_rules)", NULL, 0);
    else if (!(op = ops__new(h, create, type, oid)))
        cv_rpc_respond(conn, id, CV_ENOMEM, cv_strerror(CV_ENOMEM), NULL, 0);
    protobuf_c_message_free_unpacked(msg, NULL);
    if (!op) return;
    op->conn = conn;
    op->rid = id;
    cv_rpc_conn_ref(conn);
    ops__start(op);
}

void cv_ops_close(struct cv_ops *ops)
{
    ops__soon_cb(&ops->soon_timer); /* answers now what waited for the next iteration */
    ops->x->parts++;
    uv_close((uv_handle_t *)&ops->soon_timer, cv_hctx_handle_closed);
}
