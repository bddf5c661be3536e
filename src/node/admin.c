/* The node's admin endpoints: an operator (or the inspector) changes what the leader's shard assignment
 * aims for. Any node answers them: the proposal is forwarded to the leader by the consensus.
 *
 *   POST /v1/admin/shards/move  {"shard":5,"node":"node-2"}  target owner (id or advertise address; ""
 *                                                             clears the target)   -> CmdMoveShard
 *   POST /v1/admin/shards/pin   {"shard":5,"pinned":true}                         -> CmdPinShard
 *   POST /v1/admin/nodes/drain  {"node":"node-3","drain":true}                    -> CmdDrainNode
 *   POST /v1/admin/nodes/remove {"node":"node-4"}  (no shard names it any more)   -> CmdRemoveNode
 *
 * Happy path: parse the body strictly (an object with exactly the endpoint's keys, each of its type),
 * check the shard range and resolve the node against the catalog, propose the command and answer
 * 200 {"index":N} from the proposal's callback, i.e. once the command was applied on this node (so a
 * /v1/shards read on this node right after shows the new target / pin / drain).
 * Failure modes (cv_http_respond_error, named from the error table): a body that is not JSON, has an
 * unknown or missing key, a value of the wrong type or a shard out of range 400 INVALID_ARGUMENT; an
 * unknown node 404 NOT_FOUND; no raft leader known 503 UNAVAILABLE; a proposal that fails (leader
 * change, timeout, shutdown) the status its error code has (503 / 504); not POST 405.
 * With a cluster secret every admin request must be signed with it (auth/sign.h: an "Authorization:
 * Cverse-HMAC ..." header over method, target, time, nonce and body, +-60 s, each nonce once): the API's
 * one check (node/httpauth.h) answers 401 UNAUTHENTICATED before this module is called. */
#include "node/admin.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"

enum admin__type { A_SHARD, A_NODE, A_BOOL };

struct admin__field {
    const char *name;
    enum admin__type type;
};

/* A parsed request: the fields its endpoint has. */
struct admin__args {
    uint32_t shard;
    char node[CV_NODE_ID_MAX]; /* resolved node id ("" only for a move that clears the target) */
    bool flag;                 /* pinned / drain */
};

struct admin__endpoint {
    const char *path; /* after CV_ADMIN_PREFIX */
    struct admin__field fields[2];
    void (*fill)(const struct admin__args *args, Cverse__Catalog__Command *cmd, void *scratch);
};

/* An answer owed once the proposal completes. */
struct admin__pending {
    struct cv_http_exchange *x;
};

static void admin__error(struct cv_http_exchange *x, enum cv_status st, const char *fmt, const char *arg)
{
    char msg[256];
    snprintf(msg, sizeof msg, fmt, arg);
    cv_http_respond_error(x, st, msg, NULL);
}

/* The catalog id of a node given by id or advertise address; CV_ENOTFOUND. */
static int admin__resolve(struct cv_api *a, const char *name, char *id)
{
    for (size_t i = 0; i < cv_catalog_node_count(a->catalog); i++) {
        const struct cv_catalog_node *cn = cv_catalog_node_at(a->catalog, i);
        if (strcmp(cn->id, name) == 0 || (cn->advertise_addr[0] && strcmp(cn->advertise_addr, name) == 0)) {
            strcpy(id, cn->id);
            return 0;
        }
    }
    return CV_ENOTFOUND;
}

/* One field's value into args; 0, or an answer was sent. */
static int admin__field(struct cv_api *a, struct cv_http_exchange *x, const struct admin__field *f,
                        json_t *v, bool clear_ok, struct admin__args *args)
{
    if (f->type == A_BOOL) {
        if (!json_is_boolean(v)) goto err_type;
        args->flag = json_is_true(v);
        return 0;
    }
    if (f->type == A_SHARD) {
        if (!json_is_integer(v)) goto err_type;
        if (json_integer_value(v) < 0 || json_integer_value(v) >= (json_int_t)a->cfg->shards) {
            char msg[96];
            snprintf(msg, sizeof msg, "shard %lld out of range (0..%u)", (long long)json_integer_value(v),
                     a->cfg->shards - 1);
            cv_http_respond_error(x, CV_STATUS_INVALID_ARGUMENT, msg, NULL);
            return CV_EINVAL;
        }
        args->shard = (uint32_t)json_integer_value(v);
        return 0;
    }
    if (!json_is_string(v)) goto err_type;
    const char *name = json_string_value(v);
    args->node[0] = '\0';
    if (name[0] == '\0' && clear_ok) return 0;
    if (name[0] == '\0') {
        cv_http_respond_error(x, CV_STATUS_INVALID_ARGUMENT, "\"node\" must name a node", NULL);
        return CV_EINVAL;
    }
    if (admin__resolve(a, name, args->node) != 0) {
        admin__error(x, CV_STATUS_NOT_FOUND, "unknown node \"%.200s\"", name);
        return CV_ENOTFOUND;
    }
    return 0;
err_type:
    admin__error(x, CV_STATUS_INVALID_ARGUMENT, "field \"%s\" has the wrong type",
                 f->name);
    return CV_EINVAL;
}

/* Strict: a JSON object with exactly the endpoint's fields. 0, or an answer was sent. */
static int admin__parse(struct cv_api *a, struct cv_http_exchange *x, const struct cv_http_request *req,
                        const struct admin__endpoint *ep, struct admin__args *args)
{
    json_error_t je;
    const char *key;
    json_t *v, *root = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &je);
    int rv = CV_EINVAL;
    if (!json_is_object(root)) {
        admin__error(x, CV_STATUS_INVALID_ARGUMENT, "the body must be a JSON object%s",
                     root ? "" : " (it does not parse)");
        goto out;
    }
    json_object_foreach(root, key, v) {
        if ((!ep->fields[0].name || strcmp(key, ep->fields[0].name) != 0) &&
            (!ep->fields[1].name || strcmp(key, ep->fields[1].name) != 0)) {
            admin__error(x, CV_STATUS_INVALID_ARGUMENT, "unknown field \"%.100s\"", key);
            goto out;
        }
    }
    for (int i = 0; i < 2 && ep->fields[i].name; i++) {
        v = json_object_get(root, ep->fields[i].name);
        if (!v) {
            admin__error(x, CV_STATUS_INVALID_ARGUMENT, "missing field \"%s\"", ep->fields[i].name);
            goto out;
        }
        bool clear_ok = ep->fields[0].type == A_SHARD; /* a move: "" clears the target */
        if (admin__field(a, x, &ep->fields[i], v, clear_ok, args) != 0) goto out;
    }
    rv = 0;
out:
    json_decref(root);
    return rv;
}

static void admin__fill_move(const struct admin__args *args, Cverse__Catalog__Command *cmd, void *scratch)
{
    Cverse__Catalog__CmdMoveShard *m = scratch;
    cverse__catalog__cmd_move_shard__init(m);
    m->shard = args->shard;
    m->node = (char *)args->node;
    cmd->cmd_case = CVERSE__CATALOG__COMMAND__CMD_MOVE_SHARD;
    cmd->move_shard = m;
}

static void admin__fill_pin(const struct admin__args *args, Cverse__Catalog__Command *cmd, void *scratch)
{
    Cverse__Catalog__CmdPinShard *p = scratch;
    cverse__catalog__cmd_pin_shard__init(p);
    p->shard = args->shard;
    p->pinned = args->flag;
    cmd->cmd_case = CVERSE__CATALOG__COMMAND__CMD_PIN_SHARD;
    cmd->pin_shard = p;
}

static void admin__fill_drain(const struct admin__args *args, Cverse__Catalog__Command *cmd, void *scratch)
{
    Cverse__Catalog__CmdDrainNode *d = scratch;
    cverse__catalog__cmd_drain_node__init(d);
    d->node = (char *)args->node;
    d->drain = args->flag;
    cmd->cmd_case = CVERSE__CATALOG__COMMAND__CMD_DRAIN_NODE;
    cmd->drain_node = d;
}

static void admin__fill_remove(const struct admin__args *args, Cverse__Catalog__Command *cmd, void *scratch)
{
    Cverse__Catalog__CmdRemoveNode *r = scratch;
    cverse__catalog__cmd_remove_node__init(r);
    r->node = (char *)args->node;
    cmd->cmd_case = CVERSE__CATALOG__COMMAND__CMD_REMOVE_NODE;
    cmd->remove_node = r;
}

static const struct admin__endpoint endpoints[] = {
    {"shards/move", {{"shard", A_SHARD}, {"node", A_NODE}}, admin__fill_move},
    {"shards/pin", {{"shard", A_SHARD}, {"pinned", A_BOOL}}, admin__fill_pin},
    {"nodes/drain", {{"node", A_NODE}, {"drain", A_BOOL}}, admin__fill_drain},
    {"nodes/remove", {{"node", A_NODE}}, admin__fill_remove},
};

static void admin__done(void *data, int status, uint64_t index)
{
    struct admin__pending *p = data;
    char body[48];
    if (status == 0) {
        snprintf(body, sizeof body, "{\"index\":%llu}", (unsigned long long)index);
        cv_http_respond_json(p->x, 200, body);
    } else {
        cv_http_respond_error(p->x, cv_err_code(status), cv_strerror(status), NULL);
    }
    free(p);
}

static void admin__propose(struct cv_api *a, struct cv_http_exchange *x, const struct admin__endpoint *ep,
                           const struct admin__args *args)
{
    union {
        Cverse__Catalog__CmdMoveShard m;
        Cverse__Catalog__CmdPinShard p;
        Cverse__Catalog__CmdDrainNode d;
        Cverse__Catalog__CmdRemoveNode r;
    } scratch;
    Cverse__Catalog__Command cmd = CVERSE__CATALOG__COMMAND__INIT;
    struct admin__pending *p = malloc(sizeof *p);
    if (!p) {
        cv_http_respond_error(x, CV_STATUS_INTERNAL, "out of memory", NULL);
        return;
    }
    p->x = x;
    ep->fill(args, &cmd, &scratch);
    int rv = cv_consensus_propose(a->consensus, &cmd, 0, admin__done, p); /* serialized before it returns */
    if (rv != 0) {
        free(p);
        cv_http_respond_error(x, cv_err_code(rv), cv_strerror(rv), NULL);
    }
}

void cv_admin_handle(struct cv_api *a, struct cv_http_exchange *x, const struct cv_http_request *req)
{
    const struct admin__endpoint *ep = NULL;
    struct admin__args args = {0};
    struct cv_consensus_status st;
    for (size_t i = 0; i < sizeof endpoints / sizeof endpoints[0]; i++)
        if (strcmp(req->path + strlen(CV_ADMIN_PREFIX), endpoints[i].path) == 0) ep = &endpoints[i];
    if (!ep) {
        admin__error(x, CV_STATUS_NOT_FOUND, "no such endpoint: %.200s", req->path);
        return;
    }
    if (strcmp(req->method, "POST") != 0) {
        cv_http_respond_error(x, CV_STATUS_METHOD_NOT_ALLOWED, "only POST is supported here", "Allow: POST\r\n");
        return;
    }
    cv_consensus_status(a->consensus, &st);
    if (!st.has_leader) {
        cv_http_respond_error(x, CV_STATUS_UNAVAILABLE, "no raft leader known", NULL);
        return;
    }
    if (admin__parse(a, x, req, ep, &args) == 0) admin__propose(a, x, ep, &args);
}
