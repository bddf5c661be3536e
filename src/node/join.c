/* cluster.join (join.h): a node that no configuration lists becomes a member of a running cluster.
 *
 * Member side, happy path: the leader receives NodeInfo{id, addresses, raft id}; no catalog record of the
 * id -> it proposes CmdAddNode (a record that is not alive: no lease yet); once that applied it calls
 * raft_add (a spare) and answers 0. Its membership duty (leader.c) then makes every spare a standby, which
 * libraft catches up (entries or a snapshot). The joining node registers itself through the usual
 * RegisterNode once its catalog holds its record, and the balancer gives it shards through the usual
 * two-phase moves. A follower relays the request to the leader over its peer connection and relays the
 * answer. Failure modes: no leader (CV_EUNAVAIL), another membership change running (CV_EBUSY), a lost
 * answer: the joining node asks again, and every step is idempotent (a member is answered 0). An id that
 * names another node (another raft id, or a node of the leader's config) is refused with CV_EEXIST.
 *
 * Joining side: every 500 ms until joined(), one cluster.join to --join's address or, with etcd, to the
 * next node registered under <prefix>/nodes/ (its "advertise" address). CV_EEXIST stops it (refused). */
#include "node/join.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/guard.h"
#include "catalog.pb-c.h"
#include "cverse/error.h"
#include "discovery/members.h"
#include "net/peers.h"
#include "util/log.h"

#define JOIN_EVERY_MS 500u
#define JOIN_TIMEOUT_MS 3000u

/* ---------------------------------------------------------------- member side */

/* One request being answered later (a proposal or a relayed call); holds a reference on conn. */
struct join_req {
    struct cv_join_member m;
    struct cv_rpc_conn *conn;
    uint64_t id;
    Cverse__Catalog__NodeInfo *info; /* unpacked, owned */
};

static void join__answer(struct join_req *r, int status, const char *msg)
{
    cv_rpc_respond(r->conn, r->id, status, status ? (msg ? msg : cv_strerror(status)) : NULL, NULL, 0);
    cv_rpc_conn_unref(r->conn);
    cverse__catalog__node_info__free_unpacked(r->info, NULL);
    free(r);
}

static void join__decide(struct join_req *r, bool after_add);

static void join__added(void *data, int status, uint64_t index)
{
    struct join_req *r = data;
    (void)index;
    if (status) join__answer(r, status, "recording the node failed");
    else join__decide(r, true);
}

/* The leader's decision; answers r (now or from the AddNode proposal's callback). */
static void join__decide(struct join_req *r, bool after_add)
{
    const Cverse__Catalog__NodeInfo *info = r->info;
    const struct cv_catalog_node *cn = cv_catalog_node_get(r->m.catalog, info->id);
    char msg[CV_NODE_ID_MAX + 96];
    if (cv_config_node_index(r->m.cfg, info->id) >= 0 || (cn && (cn->raft_id != info->raft_id || cn->removed))) {
        snprintf(msg, sizeof msg, "node id %s belongs to another member of the cluster", info->id);
        join__answer(r, CV_EEXIST, msg);
    } else if (!cn && !after_add) {
        Cverse__Catalog__CmdAddNode add = CVERSE__CATALOG__CMD_ADD_NODE__INIT;
        Cverse__Catalog__Command cmd = CVERSE__CATALOG__COMMAND__INIT;
        add.info = r->info;
        cmd.cmd_case = CVERSE__CATALOG__COMMAND__CMD_ADD_NODE;
        cmd.add_node = &add;
        int rv = cv_consensus_propose(r->m.consensus, &cmd, JOIN_TIMEOUT_MS, join__added, r);
        if (rv) join__answer(r, rv, NULL);
        else CV_INFO("join: recording node %s (raft id %llu, %s)", info->id, (unsigned long long)info->raft_id,
                     info->advertise_addr);
    } else if (!cn) {
        join__answer(r, CV_EUNAVAIL, "the node's record is not applied yet");
    } else if (cv_consensus_member_role(r->m.consensus, info->id) == CV_MEMBER_NONE) {
        int rv = cv_consensus_add(r->m.consensus, info->id, info->raft_id, cn->raft_addr, NULL, NULL);
        if (rv == 0 && r->m.added) r->m.added(r->m.data);
        join__answer(r, rv, NULL);
    } else {
        join__answer(r, 0, NULL);
    }
}

static void join__relayed(void *data, int status, const char *error, const uint8_t *body, size_t len)
{
    (void)body, (void)len;
    join__answer(data, status, error);
}

void cv_join_handle(const struct cv_join_member *m, struct cv_rpc_conn *conn, uint64_t id, const uint8_t *body,
                    size_t len)
{
    struct join_req *r = calloc(1, sizeof *r);
    Cverse__Catalog__NodeInfo *info = cverse__catalog__node_info__unpack(NULL, len, body);
    if (!r || !info || !info->id[0] || !info->raft_id) {
        cv_rpc_respond(conn, id, r ? CV_EPROTO : CV_ENOMEM, "undecodable or incomplete NodeInfo", NULL, 0);
        if (info) cverse__catalog__node_info__free_unpacked(info, NULL);
        free(r);
        return;
    }
    *r = (struct join_req){.m = *m, .conn = conn, .id = id, .info = info};
    cv_rpc_conn_ref(conn);
    struct cv_consensus_status st;
    cv_consensus_status(m->consensus, &st);
    if (st.is_leader) {
        join__decide(r, false);
        return;
    }
    struct cv_rpc_client *cli = st.has_leader ? cv_peers_by_id(m->peers, st.leader_id) : NULL;
    int rv = cli ? cv_rpc_call(cli, "cluster.join", body, len, JOIN_TIMEOUT_MS, join__relayed, r) : CV_EUNAVAIL;
    if (rv) join__answer(r, rv, st.has_leader ? "cannot reach the raft leader" : "no raft leader known");
}

/* ---------------------------------------------------------------- joining side */

struct cv_joiner {
    struct cv_joiner_opts o;
    char *join_addr;            /* copied; NULL with etcd */
    struct cv_members *members; /* etcd: <prefix>/nodes/ */
    struct cv_rpc_client *cli;  /* to `target` */
    char target[128];
    size_t next;                /* etcd: the registration to ask next */
    uv_timer_t timer;
    bool inflight, accepted, closing;
    int open;                   /* parts still closing, plus one while close runs */
    void (*done)(void *data);
    void *done_data;
};

static void joiner__settle(struct cv_joiner *j)
{
    if (--j->open > 0) return;
    void (*done)(void *) = j->done;
    void *data = j->done_data;
    free(j->join_addr);
    free(j);
    if (done) done(data);
}

static void joiner__part_closed(void *data)
{
    joiner__settle(data);
}

static void joiner__handle_closed(uv_handle_t *h)
{
    joiner__settle(h->data);
}

static void joiner__client_closed(struct cv_rpc_client *cli)
{
    struct cv_joiner *j = cv_rpc_client_data(cli);
    if (j->closing) joiner__settle(j);
}

/* The address to ask now: --join's, or the next registered node's "advertise" (not ours). */
static bool joiner__pick(struct cv_joiner *j, char *out, size_t len)
{
    if (j->join_addr) {
        snprintf(out, len, "%s", j->join_addr);
        return true;
    }
    size_t n = j->members ? cv_members_count(j->members) : 0;
    for (size_t k = 0; k < n; k++) {
        const char *id, *value;
        cv_members_at(j->members, (j->next + k) % n, &id, &value);
        json_t *v = strcmp(id, j->o.self->id) ? json_loads(value, 0, NULL) : NULL;
        const char *adv = json_string_value(json_object_get(v, "advertise"));
        bool ok = adv && adv[0];
        if (ok) snprintf(out, len, "%s", adv);
        json_decref(v);
        if (ok) {
            j->next = (j->next + k + 1) % n;
            return true;
        }
    }
    return false;
}

static void joiner__answered(void *data, int status, const char *error, const uint8_t *body, size_t len)
{
    struct cv_joiner *j = data;
    (void)body, (void)len;
    j->inflight = false;
    if (j->closing) return;
    if (status == 0 && !j->accepted) CV_INFO("join: the cluster added this node (asked %s); catching up", j->target);
    j->accepted |= status == 0;
    if (status == CV_EEXIST) {
        uv_timer_stop(&j->timer);
        j->o.refused(j->o.data, error ? error : cv_strerror(status));
    } else if (status) {
        CV_DEBUG("join: %s answered %s (%s); asking again", j->target, cv_strerror(status), error ? error : "");
    }
}

static void joiner__tick(uv_timer_t *t)
{
    struct cv_joiner *j = t->data;
    char addr[128];
    if (j->o.joined(j->o.data)) {
        CV_INFO("join: this node is a member of the cluster");
        uv_timer_stop(&j->timer);
        return;
    }
    if (j->inflight || !joiner__pick(j, addr, sizeof addr)) return;
    if (j->cli && strcmp(addr, j->target) != 0) {
        cv_rpc_client_close(j->cli, NULL);
        j->cli = NULL;
    }
    snprintf(j->target, sizeof j->target, "%s", addr);
    struct cv_rpc_client_opts co = {.addr = j->target, .data = j, .guard = cv_guard_cluster()};
    if (!j->cli && cv_rpc_client_init(j->o.loop, &co, &j->cli)) {
        j->cli = NULL;
        CV_WARN("join: cannot dial %s", j->target);
        return;
    }
    const struct cv_node_cfg *s = j->o.self;
    Cverse__Catalog__NodeInfo info = CVERSE__CATALOG__NODE_INFO__INIT;
    info.id = s->id;
    info.grpc_addr = s->grpc_addr;
    info.advertise_addr = s->advertise_addr;
    info.http_addr = s->http_addr;
    info.raft_addr = s->raft_addr;
    info.raft_id = j->o.raft_id;
    uint8_t buf[1024];
    size_t n = cverse__catalog__node_info__get_packed_size(&info);
    if (n > sizeof buf) return;
    cverse__catalog__node_info__pack(&info, buf);
    if (cv_rpc_call(j->cli, "cluster.join", buf, n, JOIN_TIMEOUT_MS, joiner__answered, j) == 0) j->inflight = true;
}

int cv_joiner_start(const struct cv_joiner_opts *opts, struct cv_joiner **out)
{
    if (!opts->join_addr && !opts->n_etcd_endpoints) return CV_EINVAL;
    struct cv_joiner *j = calloc(1, sizeof *j);
    if (!j) return CV_ENOMEM;
    j->o = *opts;
    if (opts->join_addr && !(j->join_addr = strdup(opts->join_addr))) {
        free(j);
        return CV_ENOMEM;
    }
    if (!opts->join_addr) {
        char prefix[256];
        snprintf(prefix, sizeof prefix, "%s/nodes/", opts->etcd_prefix);
        struct cv_members_opts mo = {.loop = opts->loop, .endpoints = opts->etcd_endpoints,
                                     .n_endpoints = opts->n_etcd_endpoints, .prefix = prefix};
        int rv = cv_members_start(&mo, &j->members);
        if (rv) {
            free(j);
            return rv;
        }
    }
    uv_timer_init(opts->loop, &j->timer);
    j->timer.data = j;
    uv_timer_start(&j->timer, joiner__tick, 0, JOIN_EVERY_MS);
    CV_INFO("join: asking %s to add this node (raft id %llu)", j->join_addr ? j->join_addr : "the nodes registered in etcd",
            (unsigned long long)opts->raft_id);
    *out = j;
    return 0;
}

void cv_joiner_close(struct cv_joiner *j, void (*cb)(void *data), void *data)
{
    if (j->closing) return;
    j->closing = true;
    j->done = cb;
    j->done_data = data;
    j->open = 2 + (j->members != NULL) + (j->cli != NULL);
    uv_close((uv_handle_t *)&j->timer, joiner__handle_closed);
    if (j->members) cv_members_close(j->members, joiner__part_closed, j);
    if (j->cli) cv_rpc_client_close(j->cli, joiner__client_closed);
    joiner__settle(j);
}
