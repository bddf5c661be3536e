/* The gate's native front end: the cv_rpc_server request handler for gate.call, gate.create,
 * gate.delete and gate.status.
 *
 * Happy path: a gate.call/create/delete frame is unpacked, bracketed with cv_forwarder_begin/end and
 * handed to the forwarder; the node's answer goes back as the frame's body. A call made with
 * request_json goes to the owner node in form JSON (the node maps it with its types and answers
 * response_json), one with request bytes in form BYTES (or the form the client set). The gate knows no
 * types: unknown types and methods are the node's CV_ENOTFOUND. gate.status answers the gate's map and
 * the configured gates. gate.register makes the connection a push client (gate/push.h; nodes' pushes
 * arrive as gate.push events on the forwarder's node connections). With authentication on (gate/auth.h)
 * a connection's first request is gate.auth; its user goes with every call it makes.
 *
 * Failure modes: malformed frames CV_EPROTO, empty fields CV_EINVAL, a stopping gate CV_EUNAVAIL, an
 * answer too large for a frame CV_ETOOBIG; errors from the forward are passed through with their text.
 * Authentication on and no (or a failed) gate.auth yet: CV_EAUTH for every method but gate.auth; a call,
 * create or delete the object access / lifecycle rules refuse, or a client_id another user registered:
 * CV_EPERM. */
#include "gate/native.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/access.h"
#include "cverse/error.h"
#include "cverse/object.h"
#include "gate/auth.h"
#include "net/frame.h"
#include "rpc.pb-c.h"
#include "util/log.h"

struct nreq {
    struct cv_forwarder *fw;
    struct cv_rpc_conn *conn;
    uint64_t id;
    enum cv_gate_op op;
    uint64_t start_ns;
};

static void native__answer(struct cv_forwarder *fw, struct cv_rpc_conn *conn, uint64_t id, enum cv_gate_op op,
                           uint64_t start_ns, int status, const char *error, const void *body, size_t len)
{
    if (cv_rpc_respond(conn, id, status, error, body, len) == CV_ETOOBIG) {
        status = CV_ETOOBIG;
        cv_rpc_respond(conn, id, status, "response too large for a frame", NULL, 0);
    }
    cv_forwarder_end(fw, op, status, start_ns);
}

static void native__done(void *data, int status, const char *error, const uint8_t *body, size_t len)
{
    struct nreq *r = data;
    native__answer(r->fw, r->conn, r->id, r->op, r->start_ns, status, error, body, len);
    cv_rpc_conn_unref(r->conn);
    free(r);
}

/* Validates a gate.call and starts its forward; 0, or an error code with a message in err. The caller's
 * identity is the connection's (gate.auth), never the frame's caller fields. */
static int native__call(const struct cv_gate_fronts *f, const Cverse__Rpc__CallRequest *c, struct nreq *r,
                        const struct cv_gate_caller *who, uint32_t deadline_ms, char *err, size_t errlen)
{
    struct cv_forwarder *fw = f->fw;
    if (!c->type[0] || !c->id[0] || !c->method[0]) {
        snprintf(err, errlen, "type, id and method must not be empty");
        return CV_EINVAL;
    }
    if (strlen(c->call_id) > CV_CALL_ID_MAX) {
        snprintf(err, errlen, "call_id is longer than %d bytes", CV_CALL_ID_MAX);
        return CV_EINVAL;
    }
    if (strlen(c->client_id) >= CV_GATE_PUSH_ID_MAX) {
        snprintf(err, errlen, "client_id is longer than %d bytes", CV_GATE_PUSH_ID_MAX - 1);
        return CV_EINVAL;
    }
    int rv = cv_gate_auth_permit(f->rules, 0, c->type, c->id, c->method, err, errlen);
    if (rv) return rv;
    if (cv_gate_auth_on(f->auth) && c->client_id[0] && !cv_gate_push_owned(f->push, c->client_id, who->user)) {
        snprintf(err, errlen, "client_id %.100s is not a push client of user %s on this gate", c->client_id,
                 who->user);
        return CV_EPERM;
    }
    struct cv_gate_call g = {.type = c->type, .id = c->id, .method = c->method, .form = c->form,
                             .req = c->request.data, .len = c->request.len, .compact = c->compact,
                             .call_id = c->call_id, .client_id = c->client_id, .user = who->user,
                             .roles = who->roles};
    if (g.form == CVERSE__RPC__CALL_FORM__CALL_FORM_BYTES && c->request_json[0])
        g.form = CVERSE__RPC__CALL_FORM__CALL_FORM_JSON;
    if (g.form == CVERSE__RPC__CALL_FORM__CALL_FORM_JSON) {
        g.req = (const uint8_t *)c->request_json;
        g.len = strlen(c->request_json);
    }
    rv = cv_forwarder_forward_call(fw, &g, deadline_ms, native__done, r);
    if (rv) snprintf(err, errlen, "%s", cv_strerror(rv));
    return rv;
}

/* Unpacks the request of op and starts the forward; 0 or an error with a message in err. */
static int native__start(const struct cv_gate_fronts *f, struct nreq *r, const struct cv_gate_caller *who,
                         const uint8_t *body, size_t len, uint32_t deadline_ms, char *err, size_t errlen)
{
    struct cv_forwarder *fw = f->fw;
    int rv;
    if (r->op == CV_GATE_CALL) {
        struct cv_call_view cv;
        if (cv_call_view(body, len, &cv)) {
            snprintf(err, errlen, "malformed CallRequest");
            return CV_EPROTO;
        }
        rv = native__call(f, cv.c, r, who, deadline_ms, err, errlen);
        cv_call_view_done(&cv);
        return rv;
    }
    /* CreateRequest and DeleteRequest have the same fields. */
    Cverse__Rpc__CreateRequest *c = cverse__rpc__create_request__unpack(NULL, len, body);
    if (!c) {
        snprintf(err, errlen, "malformed %s request", cv_gate_op_names[r->op]);
        return CV_EPROTO;
    }
    if (!c->type[0] || !c->id[0]) {
        snprintf(err, errlen, "type and id must not be empty");
        rv = CV_EINVAL;
    } else {
        int life = r->op == CV_GATE_CREATE ? CV_LIFE_CREATE : CV_LIFE_DELETE;
        rv = cv_gate_auth_permit(f->rules, life, c->type, c->id, NULL, err, errlen); /* 403 with its message */
        if (!rv) rv = cv_forwarder_forward(fw, r->op, c->type, c->id, NULL, NULL, 0, deadline_ms, native__done, r);
        if (rv && rv != CV_EPERM) snprintf(err, errlen, "%s", cv_strerror(rv));
    }
    cverse__rpc__create_request__free_unpacked(c, NULL);
    return rv;
}

/* The GateInfo of every configured gate (connected is only known for this one); arrays owned by the
 * caller, NULL out of memory. */
static Cverse__Rpc__GateInfo **native__gates(struct cv_forwarder *fw, Cverse__Rpc__GateInfo **infos_out)
{
    const struct cv_config *cfg = cv_forwarder_config(fw);
    Cverse__Rpc__GateInfo *infos = calloc(cfg->n_gates ? cfg->n_gates : 1, sizeof *infos);
    Cverse__Rpc__GateInfo **ptrs = calloc(cfg->n_gates ? cfg->n_gates : 1, sizeof *ptrs);
    if (!infos || !ptrs) {
        free(infos);
        free(ptrs);
        return NULL;
    }
    for (size_t i = 0; i < cfg->n_gates; i++) {
        const struct cv_gate_cfg *gc = &cfg->gates[i];
        cverse__rpc__gate_info__init(&infos[i]);
        infos[i].id = gc->id;
        infos[i].grpc_addr = gc->advertise_addr ? gc->advertise_addr : gc->grpc_addr;
        infos[i].http_addr = gc->http_addr;
        infos[i].connected = gc == cv_forwarder_self(fw) && cv_forwarder_subscribed(fw);
        ptrs[i] = &infos[i];
    }
    *infos_out = infos;
    return ptrs;
}

static void native__status(struct cv_forwarder *fw, struct cv_rpc_conn *conn, uint64_t id)
{
    Cverse__Rpc__StatusResponse st = CVERSE__RPC__STATUS_RESPONSE__INIT;
    Cverse__Rpc__ShardMap empty = CVERSE__RPC__SHARD_MAP__INIT;
    const Cverse__Rpc__ShardMap *map = cv_forwarder_map(fw);
    st.map = map ? (Cverse__Rpc__ShardMap *)map : &empty;
    st.gate_id = (char *)cv_forwarder_id(fw);
    Cverse__Rpc__GateInfo *infos = NULL, **ptrs = native__gates(fw, &infos);
    uint8_t *buf = NULL;
    size_t n = 0;
    if (ptrs) {
        st.n_gates = cv_forwarder_config(fw)->n_gates;
        st.gates = ptrs;
        n = cverse__rpc__status_response__get_packed_size(&st);
        if ((buf = malloc(n ? n : 1))) cverse__rpc__status_response__pack(&st, buf);
    }
    if (buf) cv_rpc_respond(conn, id, 0, NULL, buf, n);
    else cv_rpc_respond(conn, id, CV_ENOMEM, "out of memory", NULL, 0);
    free(buf);
    free(ptrs);
    free(infos);
}

/* gate.auth: the connection's identity from now on; the answer names the user (AuthResponse). */
static void native__auth(struct cv_gate_auth *auth, struct cv_rpc_conn *conn, uint64_t id, const uint8_t *body,
                         size_t len)
{
    struct cv_gate_caller who;
    int rv = cv_gate_auth_conn_login(auth, conn, body, len, &who);
    if (rv) {
        cv_rpc_respond(conn, id, rv, rv == CV_EAUTH ? "wrong token" : cv_strerror(rv), NULL, 0);
        return;
    }
    Cverse__Rpc__AuthResponse a = CVERSE__RPC__AUTH_RESPONSE__INIT;
    a.user_id = who.user;
    a.roles = who.roles;
    uint8_t buf[sizeof who + 16];
    cv_rpc_respond(conn, id, 0, NULL, buf, cverse__rpc__auth_response__pack(&a, buf));
}

/* gate.register: the connection becomes a push client; the answer names it (RegisterResponse). */
static void native__register(struct cv_gate_push *push, struct cv_rpc_conn *conn, const char *user, uint64_t id)
{
    char cid[CV_GATE_PUSH_ID_MAX];
    int rv = cv_gate_push_register(push, conn, user, cid, sizeof cid);
    if (rv) {
        cv_rpc_respond(conn, id, rv, cv_strerror(rv), NULL, 0);
        return;
    }
    Cverse__Rpc__RegisterResponse r = CVERSE__RPC__REGISTER_RESPONSE__INIT;
    r.client_id = cid;
    uint8_t buf[CV_GATE_PUSH_ID_MAX + 16];
    cv_rpc_respond(conn, id, 0, NULL, buf, cverse__rpc__register_response__pack(&r, buf));
}

void cv_gate_native_on_request(void *data, struct cv_rpc_conn *conn, uint64_t id, const char *method,
                               const uint8_t *body, size_t len, uint32_t deadline_ms)
{
    const struct cv_gate_fronts *fronts = data;
    struct cv_forwarder *fw = fronts->fw;
    enum cv_gate_op op;
    char err[512] = "";
    static const struct cv_gate_caller anonymous;
    const struct cv_gate_caller *who = cv_gate_auth_on(fronts->auth) ? cv_gate_auth_conn(fronts->auth, conn) : &anonymous;
    if (!strcmp(method, CV_GATE_AUTH_METHOD)) {
        native__auth(fronts->auth, conn, id, body, len);
        return;
    } else if (!who) { /* authentication on, and this connection has not passed gate.auth */
        cv_rpc_respond(conn, id, CV_EAUTH, "authenticate first: send gate.auth with your token", NULL, 0);
        return;
    } else if (!strcmp(method, "gate.register") && fronts->push) {
        native__register(fronts->push, conn, who->user, id);
        return;
    } else if (!strcmp(method, "gate.status")) {
        native__status(fw, conn, id);
        return;
    } else if (!strcmp(method, "gate.call")) op = CV_GATE_CALL;
    else if (!strcmp(method, "gate.create")) op = CV_GATE_CREATE;
    else if (!strcmp(method, "gate.delete")) op = CV_GATE_DELETE;
    else {
        snprintf(err, sizeof err, "unknown method \"%.100s\"", method);
        cv_rpc_respond(conn, id, CV_ENOTFOUND, err, NULL, 0);
        return;
    }
    uint64_t start = cv_mono_ns();
    if (cv_forwarder_begin(fw)) {
        cv_rpc_respond(conn, id, CV_EUNAVAIL, "gate is shutting down", NULL, 0);
        return;
    }
    struct nreq *r = calloc(1, sizeof *r);
    if (!r) {
        native__answer(fw, conn, id, op, start, CV_ENOMEM, "out of memory", NULL, 0);
        return;
    }
    *r = (struct nreq){.fw = fw, .conn = conn, .id = id, .op = op, .start_ns = start};
    int rv = native__start(fronts, r, who, body, len, deadline_ms, err, sizeof err);
    if (rv) {
        free(r);
        native__answer(fw, conn, id, op, start, rv, err, NULL, 0);
        return;
    }
    cv_rpc_conn_ref(conn);
}
