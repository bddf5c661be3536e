/* The gate's native front end: the cv_rpc_server request handler for gate.call, gate.create,
 * gate.delete and gate.status.
 *
 * Happy path: a gate.call/create/delete frame is unpacked, checked against the gate's types (unknown
 * type or method: CV_ENOTFOUND before any routing), bracketed with cv_forwarder_begin/end and handed to
 * cv_forwarder_forward; the node's answer goes back as the frame's body (a call made with request_json
 * gets its response as response_json). gate.status answers the gate's map and the configured gates.
 *
 * Failure modes: malformed frames CV_EPROTO, empty fields CV_EINVAL, a stopping gate CV_EUNAVAIL, an
 * answer too large for a frame CV_ETOOBIG; errors from the forward are passed through with their text. */
#include "gate/native.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"
#include "cverse/object.h"
#include "gate/codec.h"
#include "pbjson/pbjson.h"
#include "net/frame.h"
#include "rpc.pb-c.h"
#include "util/log.h"

struct nreq {
    struct cv_forwarder *fw;
    struct cv_rpc_conn *conn;
    uint64_t id;
    enum cv_gate_op op;
    uint64_t start_ns;
    const struct cv_method *m; /* CALL */
    bool json;                 /* CALL with request_json: answer response_json */
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

/* Maps a CallResponse's bytes to CallResponse{response_json} and answers. */
static void native__answer_json(struct nreq *r, const uint8_t *body, size_t len)
{
    char err[256], *json = NULL;
    int rv = CV_EIO;
    Cverse__Rpc__CallResponse *cr = cverse__rpc__call_response__unpack(NULL, len, body);
    if (cr) {
        rv = cv_gate_bytes_to_json_text(r->m->response, cr->response.data, cr->response.len,
                                        CV_PBJSON_EMIT_DEFAULTS, &json, err, sizeof err);
        cverse__rpc__call_response__free_unpacked(cr, NULL);
        if (rv == CV_EPROTO) rv = CV_EIO; /* the node's bytes, not the client's */
    } else {
        snprintf(err, sizeof err, "malformed CallResponse from the node");
    }
    if (rv) {
        native__answer(r->fw, r->conn, r->id, r->op, r->start_ns, rv, err, NULL, 0);
        return;
    }
    Cverse__Rpc__CallResponse out = CVERSE__RPC__CALL_RESPONSE__INIT;
    out.response_json = json;
    size_t n = cverse__rpc__call_response__get_packed_size(&out);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf) cverse__rpc__call_response__pack(&out, buf);
    native__answer(r->fw, r->conn, r->id, r->op, r->start_ns, buf ? 0 : CV_ENOMEM, buf ? NULL : "out of memory",
                   buf, buf ? n : 0);
    free(buf);
    free(json);
}

static void native__done(void *data, int status, const char *error, const uint8_t *body, size_t len)
{
    struct nreq *r = data;
    if (status == 0 && r->json) native__answer_json(r, body, len);
    else native__answer(r->fw, r->conn, r->id, r->op, r->start_ns, status, error, body, len);
    cv_rpc_conn_unref(r->conn);
    free(r);
}

/* Validates a gate.call and builds the request bytes; 0, or an error code with a message in err. */
static int native__prepare_call(struct cv_forwarder *fw, const Cverse__Rpc__CallRequest *c, struct nreq *r,
                                uint8_t **req, size_t *len, char *err, size_t errlen)
{
    if (!c->type[0] || !c->id[0] || !c->method[0]) {
        snprintf(err, errlen, "type, id and method must not be empty");
        return CV_EINVAL;
    }
    if (strlen(c->call_id) > CV_CALL_ID_MAX) {
        snprintf(err, errlen, "call_id is longer than %d bytes", CV_CALL_ID_MAX);
        return CV_EINVAL;
    }
    int rv = cv_gate_types_method(cv_forwarder_types(fw), c->type, c->method, &r->m, err, errlen);
    if (rv) return rv;
    if (c->request_json[0]) {
        r->json = true;
        return cv_gate_json_text_to_bytes(r->m->request, c->request_json, req, len, err, errlen);
    }
    *req = NULL;
    *len = 0;
    return 0;
}

/* Unpacks the request of op and starts the forward; 0 or an error with a message in err. */
static int native__start(struct cv_forwarder *fw, struct nreq *r, const uint8_t *body, size_t len, uint32_t deadline_ms,
                         char *err, size_t errlen)
{
    int rv;
    if (r->op == CV_GATE_CALL) {
        struct cv_call_view cv;
        if (cv_call_view(body, len, &cv)) {
            snprintf(err, errlen, "malformed CallRequest");
            return CV_EPROTO;
        }
        const Cverse__Rpc__CallRequest *c = cv.c;
        uint8_t *req = NULL;
        size_t rlen = 0;
        rv = native__prepare_call(fw, c, r, &req, &rlen, err, errlen);
        if (rv == 0)
            rv = cv_forwarder_forward_id(fw, r->op, c->type, c->id, c->method, req ? req : c->request.data,
                                         req ? rlen : c->request.len, c->call_id, deadline_ms, native__done, r);
        free(req);
        cv_call_view_done(&cv);
        if (rv && !err[0]) snprintf(err, errlen, "%s", cv_strerror(rv));
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
    } else if ((rv = cv_gate_types_find(cv_forwarder_types(fw), c->type, err, errlen)) == 0) {
        rv = cv_forwarder_forward(fw, r->op, c->type, c->id, NULL, NULL, 0, deadline_ms, native__done, r);
        if (rv) snprintf(err, errlen, "%s", cv_strerror(rv));
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

void cv_gate_native_on_request(void *data, struct cv_rpc_conn *conn, uint64_t id, const char *method,
                               const uint8_t *body, size_t len, uint32_t deadline_ms)
{
    struct cv_forwarder *fw = data;
    enum cv_gate_op op;
    char err[512] = "";
    if (!strcmp(method, "gate.status")) {
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
    int rv = native__start(fw, r, body, len, deadline_ms, err, sizeof err);
    if (rv) {
        free(r);
        native__answer(fw, conn, id, op, start, rv, err, NULL, 0);
        return;
    }
    cv_rpc_conn_ref(conn);
}
