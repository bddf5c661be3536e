/* The node's HTTP API: views of this node's catalog replica, raft status and active objects, for
 * operators, scripts, the CLI and the inspector; the admin actions (POST /v1/admin/...) are admin.c's.
 *
 * Happy path: the HTTP server (net/http.h) hands every parsed request to cv_api_handle, which answers it
 * synchronously from the components' in-memory state (no I/O, no callback later): /health and /healthz
 * {"status":"ok"}; /ready 200 {"ready":true} once the node is ready (catalog caught up, registered,
 * shards assigned, auto-load objects active); /v1/cluster the raft state and every configured node;
 * /v1/shards owners, epochs, targets and pins; /v1/objects the active objects, ?type= filters;
 * /v1/objects/{type}/{id} one active object with its state as proto3 JSON (docs/durable-state.md); /v1/stats
 * the call statistics (node/stats.h); /v1/events?after=N the catalog change feed (node/feed.h); /metrics
 * Prometheus text (util/prom.h).
 * /v1/shards and /v1/objects carry an "etag" (a hash of what they list, without the applied index) and
 * answer a GET whose If-None-Match names it with 304 and no body: the inspector polls both from every
 * node every second, and building and parsing the 8192-shard map (180 KB) and the object list each time
 * was most of an idle node's CPU.
 *
 * With a cluster secret, every request but /health(z), /ready and /metrics must be signed with it
 * (node/httpauth.h, one check before any route): else 401 UNAUTHENTICATED.
 *
 * Failure modes: every error body is the shared JSON error (cv_http_respond_error) named from the error
 * table: an unknown path 404 NOT_FOUND, a method other than GET/HEAD 405, a ?type= filter that cannot be
 * decoded or is too long, or an ?after= that is not a number, 400 INVALID_ARGUMENT (never silently dropped), /ready while not ready 503 with
 * the reason; a response that cannot be built (out of memory) 500 INTERNAL. */
#include "node/api.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/guard.h"
#include "consensus/leases.h"
#include "core/hash.h"
#include "cverse/error.h"
#include "discovery/disc.h"
#include "node/admin.h"
#include "node/feed.h"
#include "node/host.h"
#include "node/httpauth.h"
#include "node/push.h"
#include "node/leader.h"
#include "node/stats.h"
#include "pbjson/pbjson.h"
#include "util/buf.h"
#include "util/hist.h"
#include "util/log.h"
#include "util/pct.h"
#include "util/prom.h"

/* Sends j (consumed); etag: NULL, or the document's entity tag (a quoted string) sent as ETag. */
static void api__send_tagged(struct cv_http_exchange *x, int status, json_t *j, const char *etag)
{
    char *s = json_dumps(j, JSON_COMPACT), hdr[64];
    json_decref(j);
    if (!s) {
        cv_http_respond_error(x, CV_STATUS_INTERNAL, "cannot encode the response", NULL);
        return;
    }
    if (etag) snprintf(hdr, sizeof hdr, "ETag: %s\r\nCache-Control: no-cache\r\n", etag);
    cv_http_respond(x, status, "application/json", s, strlen(s), etag ? hdr : NULL);
    free(s);
}

static void api__send_json(struct cv_http_exchange *x, int status, json_t *j)
{
    api__send_tagged(x, status, j, NULL);
}

/* Conditional GET: the entity tag of a document whose content hashes to h goes into etag (a quoted hex
 * string, 20 bytes); true (and a 304 sent) when the request's If-None-Match lists it or is "*". */
#define API__ETAG_LEN 20
static bool api__not_modified(struct cv_http_exchange *x, const struct cv_http_request *req, uint64_t h,
                              char *etag)
{
    snprintf(etag, API__ETAG_LEN, "\"%016llx\"", (unsigned long long)h);
    if (!strstr(req->if_none_match, etag) && strcmp(req->if_none_match, "*") != 0) return false;
    char hdr[64];
    snprintf(hdr, sizeof hdr, "ETag: %s\r\nCache-Control: no-cache\r\n", etag);
    cv_http_respond(x, 304, NULL, NULL, 0, hdr);
    return true;
}

static const char *api__role_name(int raft_role)
{
    switch (raft_role) {
    case CV_MEMBER_VOTER: return "voter";
    case CV_MEMBER_STANDBY: return "standby";
    case CV_MEMBER_SPARE: return "spare";
    default: return "none";
    }
}

/* A node's lease. Its state ("alive", "dead" (declared), "unregistered") and incarnation are the
 * catalog's; registered_ms is the wall-clock time of its latest registration (renewals are no log
 * entries: consensus/leases.h). remaining_ms is the best view this node has: its own window for itself,
 * the raft leader's for every node it granted a renewal (the leader declares a node dead when that
 * reaches 0 and a margin more); absent when this node does not know (a follower, about another node). */
static int64_t api__lease_remaining(struct cv_api *a, const struct cv_node_cfg *nc, const struct cv_catalog_node *cn)
{
    if (!cn || !cn->alive) return -1;
    if (nc == a->self && a->lease) {
        struct cv_api_lease l;
        a->lease(a->data, &l);
        return (int64_t)l.remaining_ms;
    }
    struct cv_leases *ls = cv_consensus_leases(a->consensus);
    int64_t ago = ls ? cv_leases_granted_ago(ls, nc->id) : -1, ttl = (int64_t)a->cfg->lease_ttl_ms;
    return ago < 0 ? -1 : ago < ttl ? ttl - ago : 0;
}

static json_t *api__node_lease_json(const struct cv_catalog_node *cn, int64_t remaining)
{
    if (!cn) return json_pack("{s:s}", "state", "unregistered");
    json_t *j = json_pack("{s:s, s:I, s:I}", "state", cn->alive ? "alive" : "dead", "incarnation",
                          (json_int_t)cn->incarnation, "registered_ms", (json_int_t)cn->lease_renewed_ms);
    if (j && remaining >= 0) json_object_set_new(j, "remaining_ms", json_integer(remaining));
    return j;
}

static json_t *api__node_json(struct cv_api *a, const struct cv_node_cfg *nc)
{
    const struct cv_catalog_node *cn = cv_catalog_node_get(a->catalog, nc->id);
    int role = cv_consensus_member_role(a->consensus, nc->id);
    int64_t remaining = api__lease_remaining(a, nc, cn);
    /* lease_expiry_ms: wall clock, from the same view (0: unknown here) */
    uint64_t expiry = remaining >= 0 ? cv_now_ms() + (uint64_t)remaining : 0;
    json_t *j = json_pack("{s:s, s:s, s:b, s:b, s:b, s:i, s:I, s:s, s:s, s:s, s:s, s:o}", "id", nc->id, "role",
                          api__role_name(role), "alive", cn && cn->alive, "registered", cn != NULL, "draining",
                          cn && cn->draining, "shards", cn ? (int)cn->shards_owned : 0, "lease_expiry_ms",
                          (json_int_t)expiry, "grpc_addr", nc->grpc_addr,
                          "advertise_addr", nc->advertise_addr, "raft_addr", nc->raft_addr, "http_addr",
                          nc->http_addr, "lease", api__node_lease_json(cn, remaining));
    if (j && cn && cn->removed) json_object_set_new(j, "removed", json_true());
    if (j && cn && cn->draining) /* an operator's drain persists; a shutdown drain ends with the process */
        json_object_set_new(j, "drain_reason", json_string(cn->drain_shutdown ? "shutdown" : "operator"));
    if (j && nc == a->self && a->lease) { /* our own view of our lease, for self */
        struct cv_api_lease l;
        a->lease(a->data, &l);
        json_object_set_new(j, "self_lease",
                            json_pack("{s:s, s:s, s:I, s:I}", "state", l.state, "registration", l.registration,
                                      "remaining_ms", (json_int_t)l.remaining_ms, "fencings",
                                      (json_int_t)l.fencings));
    }
    return j;
}

/* What this node's leader duties observed (failovers, shard moves): meaningful on the leader. */
static json_t *api__failover_json(struct cv_api *a)
{
    struct cv_api_lease l = {0};
    if (a->lease) a->lease(a->data, &l);
    if (!l.leader) return json_null();
    return json_pack("{s:I, s:I, s:f, s:f, s:I}", "count", (json_int_t)l.leader->failovers, "last_ms",
                     (json_int_t)l.leader->last_failover_ms, "p50_ms",
                     cv_hist_quantile(&l.leader->failover, 0.5) * 1000.0, "p99_ms",
                     cv_hist_quantile(&l.leader->failover, 0.99) * 1000.0, "shard_moves",
                     (json_int_t)l.leader->shard_moves);
}

static void api__get_cluster(struct cv_api *a, struct cv_http_exchange *x)
{
    struct cv_consensus_status st;
    cv_consensus_status(a->consensus, &st);
    json_t *nodes = json_array();
    for (size_t i = 0; i < a->cfg->n_nodes; i++) json_array_append_new(nodes, api__node_json(a, &a->cfg->nodes[i]));
    for (size_t i = 0; i < cv_catalog_node_count(a->catalog); i++) { /* members that joined later */
        const struct cv_catalog_node *cn = cv_catalog_node_at(a->catalog, i);
        if (cv_config_node(a->cfg, cn->id)) continue;
        struct cv_node_cfg nc = {.id = (char *)cn->id, .grpc_addr = (char *)cn->grpc_addr,
                                 .advertise_addr = (char *)cn->advertise_addr, .http_addr = (char *)cn->http_addr,
                                 .raft_addr = (char *)cn->raft_addr};
        json_array_append_new(nodes, api__node_json(a, &nc));
    }
    json_t *j = json_pack("{s:s?, s:s, s:s, s:I, s:I, s:I, s:I, s:i, s:i, s:o, s:o}", "leader",
                          st.has_leader ? st.leader_id : NULL, "self", a->self->id, "state", st.state,
                          "term", (json_int_t)st.term, "commit_index", (json_int_t)st.commit_index,
                          "applied_index", (json_int_t)cv_catalog_applied_index(a->catalog),
                          "raft_applied_index", (json_int_t)st.last_applied, "shards", (int)a->cfg->shards,
                          "unassigned_shards", (int)cv_catalog_unassigned_shards(a->catalog), "nodes",
                          nodes, "failover", api__failover_json(a));
    api__send_json(x, 200, j);
}

static void api__shard_get(struct cv_api *a, uint32_t s, struct cv_catalog_shard *sh)
{
    if (cv_catalog_shard_get(a->catalog, s, sh) != 0) *sh = (struct cv_catalog_shard){.owner = "", .target = ""};
}

/* The shard map's hash: every shard's owner, epoch, target and pin (the etag of /v1/shards). */
static uint64_t api__shards_hash(struct cv_api *a)
{
    uint64_t h = cv_fnv1a64_more(CV_FNV64_OFFSET, &a->cfg->shards, sizeof a->cfg->shards);
    for (uint32_t s = 0; s < a->cfg->shards; s++) {
        struct cv_catalog_shard sh;
        api__shard_get(a, s, &sh);
        uint8_t pin = sh.pinned;
        h = cv_fnv1a64_more(h, sh.owner, strlen(sh.owner) + 1);
        h = cv_fnv1a64_more(h, sh.target, strlen(sh.target) + 1);
        h = cv_fnv1a64_more(h, &sh.epoch, sizeof sh.epoch);
        h = cv_fnv1a64_more(h, &pin, 1);
    }
    return h;
}

static void api__get_shards(struct cv_api *a, struct cv_http_exchange *x, const struct cv_http_request *req)
{
    char etag[API__ETAG_LEN];
    if (api__not_modified(x, req, api__shards_hash(a), etag)) return;
    json_t *owners = json_array(), *epochs = json_array(), *targets = json_array(), *pinned = json_array();
    for (uint32_t s = 0; s < a->cfg->shards; s++) {
        struct cv_catalog_shard sh;
        api__shard_get(a, s, &sh);
        json_array_append_new(owners, *sh.owner ? json_string(sh.owner) : json_null());
        json_array_append_new(epochs, json_integer((json_int_t)sh.epoch));
        json_array_append_new(targets, *sh.target ? json_string(sh.target) : json_null());
        json_array_append_new(pinned, json_boolean(sh.pinned));
    }
    json_t *j = json_pack("{s:I, s:i, s:o, s:o, s:o, s:o, s:s}", "applied_index",
                          (json_int_t)cv_catalog_applied_index(a->catalog), "shards", (int)a->cfg->shards,
                          "owners", owners, "epochs", epochs, "targets", targets, "pinned", pinned, "etag", etag);
    api__send_tagged(x, 200, j, etag);
}

static void api__get_ready(struct cv_api *a, struct cv_http_exchange *x)
{
    const char *why;
    if (a->ready(a->data, &why)) {
        api__send_json(x, 200, json_pack("{s:b}", "ready", 1));
        return;
    }
    api__send_json(x, 503, json_pack("{s:b, s:s}", "ready", 0, "reason", why));
}

struct list_ctx {
    json_t *arr;      /* NULL: only hash */
    const char *type; /* filter, NULL = all */
    uint64_t hash;    /* of the listed objects, in list order (the etag of /v1/objects) */
};

static void api__list_one(void *data, const struct cv_object_info *info)
{
    struct list_ctx *c = data;
    if (c->type && strcmp(c->type, info->type) != 0) return;
    uint32_t shard = info->shard;
    c->hash = cv_fnv1a64_more(c->hash, info->type, strlen(info->type) + 1);
    c->hash = cv_fnv1a64_more(c->hash, info->id, strlen(info->id) + 1);
    c->hash = cv_fnv1a64_more(c->hash, &shard, sizeof shard);
    if (!c->arr) return;
    json_array_append_new(c->arr, json_pack("{s:s, s:s, s:I}", "type", info->type, "id", info->id, "shard",
                                            (json_int_t)info->shard));
}

/* Active objects of this node: {"objects":[{"type","id","shard"}]}, ?type= filters. */
static void api__get_objects(struct cv_api *a, struct cv_http_exchange *x, const struct cv_http_request *req)
{
    char type[128]; /* the host's limit on type names (CV_HOST_TYPE_MAX) */
    struct list_ctx c = {NULL, NULL, CV_FNV64_OFFSET};
    int rv = req->query ? cv_pct_query_param(req->query, "type", type, sizeof type) : CV_ENOTFOUND;
    if (rv == 0) c.type = type;
    else if (rv != CV_ENOTFOUND) { /* a filter that cannot be read is refused, never ignored */
        char msg[96];
        if (rv == CV_ERANGE)
            snprintf(msg, sizeof msg, "query parameter \"type\": too long (at most %zu bytes)", sizeof type - 1);
        else
            snprintf(msg, sizeof msg, "query parameter \"type\": malformed percent-escape (or %%00)");
        cv_http_respond_error(x, cv_err_code(rv), msg, NULL);
        return;
    }
    char etag[API__ETAG_LEN];
    if (a->host) cv_runtime_list(cv_host_runtime(a->host), api__list_one, &c); /* the hash first */
    if (api__not_modified(x, req, c.hash, etag)) return;
    c.arr = json_array();
    if (a->host) cv_runtime_list(cv_host_runtime(a->host), api__list_one, &c);
    api__send_tagged(x, 200, json_pack("{s:s, s:o, s:s}", "node", a->self->id, "objects", c.arr, "etag", etag),
                     etag);
}

/* GET /v1/objects/{type}/{id} (both percent-decoded): an object active on this node, with its state as
 * proto3 JSON (null for a type without a state message) and where its persistence stands. 404 when it
 * is not active here (ask its owner) or is another type; 400 for a path that does not decode. */
static void api__get_object(struct cv_api *a, struct cv_http_exchange *x, const char *rest)
{
    char type[128], id[512], msg[700], err[160];
    const char *slash = strchr(rest, '/');
    struct cv_object_state_info si;
    json_t *state = NULL;
    size_t tl = slash ? (size_t)(slash - rest) : 0, il = slash ? strlen(slash + 1) : 0;
    if (!tl || !il || tl >= sizeof type || il >= sizeof id || cv_pct_decode(rest, tl, false, type) < 0 ||
        cv_pct_decode(slash + 1, il, false, id) < 0) {
        cv_http_respond_error(x, CV_STATUS_INVALID_ARGUMENT, "expected /v1/objects/{type}/{id}", NULL);
        return;
    }
    int rv = a->host ? cv_runtime_state_info(cv_host_runtime(a->host), id, &si) : CV_ENOTFOUND;
    if (rv == 0 && strcmp(si.type->name, type) != 0) rv = CV_ENOTFOUND;
    if (rv != 0) {
        snprintf(msg, sizeof msg, "object %.100s (%.100s) is not active on node %s", id, type, a->self->id);
        cv_http_respond_error(x, CV_STATUS_NOT_FOUND, msg, NULL);
        return;
    }
    if (si.state && cv_pbjson_to_json_ex(si.state, CV_PBJSON_EMIT_DEFAULTS, &state, err, sizeof err) != 0) {
        snprintf(msg, sizeof msg, "state of %.100s cannot be shown as JSON: %s", id, err);
        cv_http_respond_error(x, CV_STATUS_INTERNAL, msg, NULL);
        return;
    }
    static const char *const persist[] = {"none", "on_write", "periodic"};
    api__send_json(x, 200,
                   json_pack("{s:s, s:s, s:s, s:o, s:s, s:I, s:I, s:b, s:b, s:I}", "node", a->self->id, "type",
                             type, "id", id, "state", state ? state : json_null(), "persist", persist[si.persist],
                             "version", (json_int_t)si.version, "saved_version", (json_int_t)si.saved_version,
                             "dirty", si.dirty, "saving", si.saving, "held", (json_int_t)si.held));
}

/* This node's call statistics (node/stats.h), cumulative since start: the inspector polls it. */
static void api__get_stats(struct cv_api *a, struct cv_http_exchange *x)
{
    struct cv_node_stats *st = a->host ? cv_host_stats(a->host) : NULL;
    if (!st) {
        cv_http_respond_error(x, CV_STATUS_UNAVAILABLE, "call statistics are off (CVERSE_NODE_STATS=0)", NULL);
        return;
    }
    json_t *j = cv_node_stats_json(st, a->self->id);
    if (!j) {
        cv_http_respond_error(x, CV_STATUS_INTERNAL, "out of memory", NULL);
        return;
    }
    api__send_json(x, 200, j);
}

/* Leases, fencing and failovers: this node's own lease view (one gauge per state, 1 for the current
 * one), every node's lease as the catalog sees it, and what the leader duties observed. */
static void api__lease_prom(struct cv_api *a, struct cv_buf *b)
{
    static const char *const states[] = {"none", "valid", "suspect", "fenced"};
    struct cv_api_lease l = {0};
    char lab[128];
    if (!a->lease) return;
    a->lease(a->data, &l);
    cv_prom_family(b, "cverse_lease_state", "gauge", "This node's own lease view: 1 for the current state.");
    for (int i = 0; i < 4; i++) {
        snprintf(lab, sizeof lab, "state=\"%s\"", states[i]);
        cv_prom_sample(b, "cverse_lease_state", lab, l.state_index == i);
    }
    cv_prom_gauge(b, "cverse_lease_remaining_seconds", "Time left in this node's serving window (0: not serving).",
                  (double)l.remaining_ms / 1000.0);
    cv_prom_counter(b, "cverse_fencing_total", "Times this node fenced itself (lease not confirmed in time).",
                    l.fencings);
    cv_prom_family(b, "cverse_node_lease_alive", "gauge", "Each node's lease as the catalog sees it: 1 alive, 0 declared dead.");
    for (size_t i = 0; i < cv_catalog_node_count(a->catalog); i++) {
        const struct cv_catalog_node *cn = cv_catalog_node_at(a->catalog, i);
        snprintf(lab, sizeof lab, "node=\"%s\"", cn->id); /* ids are [A-Za-z0-9._-] (config) */
        cv_prom_sample(b, "cverse_node_lease_alive", lab, cn->alive);
    }
    if (!l.leader) return;
    cv_prom_family(b, "cverse_failover_seconds", "histogram",
                   "Leader: from a node declared dead to every shard it owned having a new owner.");
    cv_hist_prom(b, "cverse_failover_seconds", NULL, &l.leader->failover);
    cv_prom_counter(b, "cverse_shard_moves_total", "Leader: shards given a new owner by its applied AssignShards.",
                    l.leader->shard_moves);
}

/* The catalog change feed after an applied index: {"node","first_index","last_index","applied_index",
 * "more","events":[...]} (node/feed.h); without ?after= every kept entry. */
static void api__get_events(struct cv_api *a, struct cv_http_exchange *x, const struct cv_http_request *req)
{
    char v[24], *end = NULL;
    unsigned long long after = 0;
    int rv = req->query ? cv_pct_query_param(req->query, "after", v, sizeof v) : CV_ENOTFOUND;
    if (rv == 0) after = strtoull(v, &end, 10);
    if ((rv && rv != CV_ENOTFOUND) || (rv == 0 && (!*v || *end || *v == '-'))) {
        cv_http_respond_error(x, CV_STATUS_INVALID_ARGUMENT, "query parameter \"after\": not an index", NULL);
        return;
    }
    struct cv_feed *f = a->host ? cv_host_feed(a->host) : NULL;
    json_t *j = f ? cv_feed_json(f, a->self->id, cv_catalog_applied_index(a->catalog), after) : NULL;
    if (!j) {
        cv_http_respond_error(x, f ? CV_STATUS_INTERNAL : CV_STATUS_UNAVAILABLE, f ? "out of memory" : "no host", NULL);
        return;
    }
    api__send_json(x, 200, j);
}

/* Prometheus text exposition (util/prom.h). */
/* Durable object state (docs/durable-state.md): this node's saves and the catalog's state records. */
static void api__state_prom(struct cv_api *a, struct cv_buf *b)
{
    struct cv_saver_counts sc = {0};
    size_t records;
    uint64_t db_bytes;
    if (a->host) cv_host_saver_counts(a->host, &sc);
    cv_catalog_state_stats(a->catalog, &records, &db_bytes);
    cv_prom_family(b, "cverse_state_saves_total", "counter",
                   "Object state saves this node proposed, by outcome (committed, refused: not the owner any "
                   "more, failed: outcome unknown or shutting down).");
    cv_prom_sample_u64(b, "cverse_state_saves_total", "result=\"committed\"", sc.committed);
    cv_prom_sample_u64(b, "cverse_state_saves_total", "result=\"refused\"", sc.refused);
    cv_prom_sample_u64(b, "cverse_state_saves_total", "result=\"failed\"", sc.failed);
    cv_prom_counter(b, "cverse_state_save_entries_total", "CmdSaveState proposals (one per loop iteration with saves).",
                    sc.batches);
    cv_prom_counter(b, "cverse_state_saved_bytes_total", "Bytes of object state this node proposed.", sc.bytes);
    cv_prom_gauge(b, "cverse_state_records", "Object states stored in the catalog.", (double)records);
    cv_prom_gauge(b, "cverse_state_db_bytes", "LMDB pages used by the catalog's object states.", (double)db_bytes);
    struct cv_push_counts pc = {0};
    if (a->host) cv_host_push_counts(a->host, &pc);
    cv_prom_counter(b, "cverse_push_sent_total", "Messages objects pushed to clients that a gate accepted.", pc.sent);
    cv_prom_counter(b, "cverse_push_dropped_total",
                    "Pushed messages dropped here: unknown gate, gate down or behind, batch failed.", pc.dropped);
    struct cv_runtime_counts rc = {0};
    struct cv_runtime *rt = a->host ? cv_host_runtime(a->host) : NULL;
    if (rt) cv_runtime_counts(rt, &rc);
    cv_prom_counters(b, "cverse_object_activations_total",
                     "Object activations on this node, by reason (call: a call found it inactive; created: a new "
                     "object; load: auto-load, a create of an existing object).",
                     "reason", cv_activation_reason_names, rc.activations, CV_ACT_N);
    cv_prom_counters(b, "cverse_object_deactivations_total",
                     "Object deactivations on this node, by reason (idle: idle timeout; moved: shard moved away; "
                     "fenced; deleted; failed: a save failed; closing: the node stops; other).",
                     "reason", cv_deactivation_reason_names, rc.deactivations, CV_DEACT_N);
}

static void api__get_metrics(struct cv_api *a, struct cv_http_exchange *x)
{
    struct cv_consensus_status st;
    cv_consensus_status(a->consensus, &st);
    const struct cv_catalog_node *me = cv_catalog_node_get(a->catalog, a->self->id);
    struct cv_buf b = {0};
    cv_prom_gauge(&b, "cverse_raft_term", "Current raft term.", (double)st.term);
    cv_prom_gauge(&b, "cverse_raft_commit_index", "Raft commit index.", (double)st.commit_index);
    cv_prom_gauge(&b, "cverse_raft_applied_index", "Last raft index applied to the FSM.",
                  (double)st.last_applied);
    cv_prom_gauge(&b, "cverse_catalog_applied_index", "Applied index stored in the catalog.",
                  (double)cv_catalog_applied_index(a->catalog));
    cv_prom_gauge(&b, "cverse_raft_is_leader", "1 if this node is the raft leader.", st.is_leader);
    cv_prom_counter(&b, "cverse_raft_snapshots_total", "Raft snapshots of the catalog taken.", st.snapshots_taken);
    cv_prom_counter(&b, "cverse_raft_snapshots_installed_total", "Raft snapshots installed into the catalog.",
                    st.snapshots_restored);
    cv_prom_counter(&b, "cverse_raft_standby_heartbeats_sent_total",
                    "Heartbeats this node sent to standbys as leader.", st.heartbeats_sent);
    cv_prom_counter(&b, "cverse_raft_standby_heartbeats_skipped_total",
                    "Heartbeats to standbys left unsent as leader: they carried nothing new.", st.heartbeats_skipped);
    cv_prom_counter(&b, "cverse_raft_voter_heartbeats_skipped_total",
                    "Heartbeats to voters left unsent as leader while the log stood still (every other one).",
                    st.voter_heartbeats_skipped);
    cv_prom_counter(&b, "cverse_raft_ticks_total",
                    "Raft's timer ticks run (every heartbeat timeout as leader, at the election timeout otherwise).",
                    st.raft_ticks);
    cv_prom_counter(&b, "cverse_consensus_ticks_total", "Ticks of the consensus and the host (work-driven).",
                    st.ticks);
    cv_prom_gauge(&b, "cverse_shards_owned", "Shards owned by this node.", me ? (double)me->shards_owned : 0);
    cv_prom_gauge(&b, "cverse_shards_unassigned", "Shards without an owner.",
                  (double)cv_catalog_unassigned_shards(a->catalog));
    cv_prom_gauge(&b, "cverse_objects_active", "Objects in this node's runtime.",
                  a->host ? (double)cv_runtime_count(cv_host_runtime(a->host)) : 0);
    const struct cv_apply_histogram *h = cv_consensus_apply_histogram(a->consensus);
    double le_s[CV_APPLY_BUCKETS];
    for (unsigned i = 0; i < CV_APPLY_BUCKETS; i++) le_s[i] = cv_apply_bucket_le_us[i] / 1e6;
    cv_prom_family(&b, "cverse_catalog_apply_seconds", "histogram", "Time to apply one raft entry to the catalog.");
    cv_prom_histogram(&b, "cverse_catalog_apply_seconds", NULL, le_s, h->buckets, CV_APPLY_BUCKETS, h->sum_us / 1e6);
    api__lease_prom(a, &b);
    api__state_prom(a, &b);
    if (a->disc)
        cv_prom_gauge(&b, "cverse_etcd_up", "1 if etcd (discovery) answered the last call, else 0.", cv_disc_up(a->disc));
    if (a->host && cv_host_stats(a->host)) cv_node_stats_prom(cv_host_stats(a->host), &b);
    cv_guard_metrics(&b); /* refused peers of the cluster ports (auth/guard.h) */
    if (!b.p || b.oom) {
        free(b.p);
        cv_http_respond_error(x, CV_STATUS_INTERNAL, "out of memory", NULL);
        return;
    }
    cv_http_respond(x, 200, CV_PROM_CONTENT_TYPE, b.p, b.len, NULL);
    free(b.p);
}

struct route {
    const char *path;
    void (*fn)(struct cv_api *a, struct cv_http_exchange *x);
};

static void api__get_health(struct cv_api *a, struct cv_http_exchange *x)
{
    api__send_json(x, 200, json_pack("{s:s, s:s}", "status", "ok", "node", a->self->id));
}

static const struct route routes[] = {
    {"/health", api__get_health},   {"/healthz", api__get_health},   {"/ready", api__get_ready},
    {"/v1/cluster", api__get_cluster}, {"/metrics", api__get_metrics},
    {"/v1/stats", api__get_stats},
};

/* The routes that read the query. */
static const struct qroute {
    const char *path;
    void (*fn)(struct cv_api *a, struct cv_http_exchange *x, const struct cv_http_request *req);
} qroutes[] = {{"/v1/objects", api__get_objects}, {"/v1/shards", api__get_shards}, {"/v1/events", api__get_events}};

void cv_api_handle(void *data, struct cv_http_exchange *x, const struct cv_http_request *req)
{
    struct cv_api *a = data;
    if (cv_httpauth_check(x, req)) return; /* with a cluster secret: signed, or a probe (node/httpauth.h) */
    if (strncmp(req->path, CV_ADMIN_PREFIX, strlen(CV_ADMIN_PREFIX)) == 0) {
        cv_admin_handle(a, x, req);
        return;
    }
    size_t nr = sizeof routes / sizeof routes[0], nq = sizeof qroutes / sizeof qroutes[0];
    for (size_t i = 0; i < nr + nq; i++) {
        if (strcmp(req->path, i < nr ? routes[i].path : qroutes[i - nr].path) != 0) continue;
        if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
            cv_http_respond_error(x, CV_STATUS_METHOD_NOT_ALLOWED, "only GET is supported here",
                                  "Allow: GET, HEAD\r\n");
            return;
        }
        if (i < nr) routes[i].fn(a, x);
        else qroutes[i - nr].fn(a, x, req);
        return;
    }
    if (strncmp(req->path, "/v1/objects/", 12) == 0) {
        if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0)
            cv_http_respond_error(x, CV_STATUS_METHOD_NOT_ALLOWED, "only GET is supported here", "Allow: GET, HEAD\r\n");
        else
            api__get_object(a, x, req->path + 12);
        return;
    }
    char msg[300];
    snprintf(msg, sizeof msg, "no such endpoint: %.200s", req->path);
    cv_http_respond_error(x, CV_STATUS_NOT_FOUND, msg, NULL);
}
