/* Object hosting in a node: the runtime plus the parts that tie it to the catalog and the network,
 * wired here. The parts: incall.c (objects.call, verdicts, first-call activation), outcall.c (calls made by objects),
 * ops.c (create/delete), autoload.c (auto-load objects), handoff.c (releasing shards), mapfeed.c (the
 * shard-map feed), saver.c (durable object state: the runtime's load/save hooks). This file owns their lifecycle and the reactions to catalog changes.
 *
 * Happy path. After every applied entry: a CreateObject activates the object on its owner, a DeleteObject
 * destroys it everywhere; after an AssignShards (and after a raft snapshot was installed) objects of
 * shards we no longer own are deactivated, shards we gained get their auto-load objects, shards waiting
 * for our release are released, subscribers get the new map. A tick (cv_host_tick, after each consensus
 * tick: 10-20 ms, 15 ms by default: the raft heartbeat) starts hosting once the node is first ready,
 * retries object calls, polls the release scan, fires reminders and deactivates idle objects.
 *
 * Two copies of an object never coexist while the old owner is alive: it gives a shard up in one entry
 * (owner -> none), deactivates, and confirms with ReleaseShards before the leader assigns the new owner
 * in a later entry; a new owner activates only after it applied that assignment. A node declared dead
 * is not waited for: if it was only partitioned or stopped, its lease ran out before the leader could
 * declare it (core/lease.h), and the host serves nothing past the window (cv_host_fence, serve_until).
 *
 * Failure modes: see each part. Closing fails pending calls and operations (CV_ECLOSED / CV_ECANCELED),
 * drops subscribers, closes the timers and the runtime; the host is freed once every part called back and
 * no callback into it is owed (cv_hctx). */
#include "node/host.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "core/access.h"
#include "cverse/error.h"
#include "node/autoload.h"
#include "node/handoff.h"
#include "node/hctx.h"
#include "node/incall.h"
#include "node/mapfeed.h"
#include "node/ops.h"
#include "node/outcall.h"
#include "node/push.h"
#include "node/remind.h"
#include "node/saver.h"
#include "node/feed.h"
#include "node/stats.h"
#include "rpc.pb-c.h"
#include "util/log.h"

#define IDLE_SCAN_MS 500 /* idle objects are looked for this often */

struct cv_host {
    struct cv_hctx x; /* first: the settle callback finds the host through it */
    struct cv_host_opts o;
    struct cv_incall in;
    struct cv_outcall out;
    struct cv_ops ops;
    struct cv_mapfeed feed;
    struct cv_autoload al;
    struct cv_handoff ho;
    struct cv_saver ps;
    struct cv_remind rm;
    struct cv_type_policy *policies; /* owned: config object_types for the runtime */
    struct cv_feed *events; /* the catalog change feed (GET /v1/events), owned */
    struct cv_pusher *push; /* pushes to clients (node/push.h), owned; created by cv_host_start */
    bool ticking;          /* between cv_host_start and cv_host_close */
    uint64_t idle_scan_ms; /* monotonic time of the last idle-object scan */
    uint64_t restored_seen;
    void (*done)(void *data);
    void *done_data;
};

/* ---------------------------------------------------------------- catalog changes */

static void host__shards_changed(struct cv_host *h)
{
    int n = cv_runtime_deactivate_unowned(h->x.rt);
    if (n > 0) CV_INFO("deactivating %d objects of shards that moved away", n);
    if (h->x.started && !h->x.fenced) cv_autoload_reconcile(&h->al);
    cv_handoff_mark(&h->ho);
    cv_handoff_scan(&h->ho); /* shards without active objects are released right away */
    cv_remind_changed(&h->rm); /* the reminders of the shards we own now */
    cv_mapfeed_changed(&h->feed);
}

void cv_host_applied(struct cv_host *h, uint64_t index, const Cverse__Catalog__Batch *batch,
                     const struct cv_cmd_result *results)
{
    if (h->x.closing) return;
    cv_feed_applied(h->events, h->x.cat, h->x.cons, index, batch, results);
    bool moved = false;
    for (size_t i = 0; i < batch->n_commands; i++) {
        const Cverse__Catalog__Command *c = batch->commands[i];
        if (results[i].status != 0 && c->cmd_case != CVERSE__CATALOG__COMMAND__CMD_SAVE_STATE) continue;
        switch (c->cmd_case) {
        case CVERSE__CATALOG__COMMAND__CMD_ASSIGN_SHARDS:
        case CVERSE__CATALOG__COMMAND__CMD_EXPIRE_NODE:   /* unassigns the dead node's shards */
        case CVERSE__CATALOG__COMMAND__CMD_REGISTER_NODE: /* of a dead node: the same */
            moved = true;
            break;
        case CVERSE__CATALOG__COMMAND__CMD_CREATE_OBJECT:
            cv_hctx_activate_applied(&h->x, c->create_object->type, c->create_object->id, index);
            break;
        case CVERSE__CATALOG__COMMAND__CMD_SAVE_STATE:
            for (size_t k = 0; k < c->save_state->n_saves; k++)
                if (c->save_state->saves[k]->reminders_set)
                    cv_remind_object(&h->rm, c->save_state->saves[k]->id);
            break;
        case CVERSE__CATALOG__COMMAND__CMD_DELETE_OBJECT:
            cv_remind_object(&h->rm, c->delete_object->id);
            if (cv_runtime_destroy(h->x.rt, c->delete_object->id) == 0)
                CV_INFO("object %s deleted at index %llu: destroying it", c->delete_object->id,
                        (unsigned long long)index);
            break;
        default: break;
        }
    }
    if (moved) host__shards_changed(h);
    cv_mapfeed_check_nodes(&h->feed);
    cv_hctx_wake(&h->x); /* the tick looks at what the entry changed (scans, retries, reminders) */
}

void cv_host_leader_changed(struct cv_host *h)
{
    cv_mapfeed_changed(&h->feed);
}

static unsigned host__min(unsigned a, uint64_t b)
{
    return b < a ? (unsigned)b : a;
}

/* In how many ms the host has work again (after a tick): CV_CONSENSUS_TICK_MS while something retries,
 * waits or polls; else the next heartbeat, reminder or idle scan. */
static unsigned host__next_ms(struct cv_host *h, uint64_t now)
{
    if (!h->x.started || cv_outcall_busy(&h->out) || cv_handoff_busy(&h->ho) || cv_autoload_pending(&h->al))
        return CV_CONSENSUS_TICK_MS;
    unsigned ms = cv_mapfeed_next_ms(&h->feed, now);
    unsigned rm = cv_remind_next_ms(&h->rm); /* a due one that could not fire is retried: not faster */
    ms = host__min(ms, rm > CV_CONSENSUS_TICK_MS ? rm : CV_CONSENSUS_TICK_MS);
    uint64_t scan = h->idle_scan_ms + IDLE_SCAN_MS;
    return host__min(ms, scan > now ? scan - now : 0);
}

unsigned cv_host_tick(struct cv_host *h)
{
    const char *why;
    if (h->x.closing || !h->ticking) return UINT_MAX;
    if (!h->x.started && h->o.catalog_ready(h->o.data, &why)) {
        h->x.started = true;
        cv_autoload_start(&h->al);
    }
    struct cv_consensus_status st;
    cv_consensus_status(h->x.cons, &st);
    if (st.snapshots_restored != h->restored_seen) { /* the catalog was replaced wholesale */
        h->restored_seen = st.snapshots_restored;
        host__shards_changed(h);
    }
    if (cv_outcall_busy(&h->out)) cv_outcall_retry(&h->out);
    cv_handoff_scan(&h->ho);
    cv_mapfeed_tick(&h->feed);
    if (!h->x.fenced) cv_autoload_tick(&h->al);
    cv_remind_tick(&h->rm);
    uint64_t now = cv_mono_ms();
    if (now - h->idle_scan_ms >= IDLE_SCAN_MS && h->x.started) {
        h->idle_scan_ms = now;
        int n = cv_runtime_deactivate_idle(h->x.rt);
        if (n > 0) CV_DEBUG("deactivating %d idle objects", n);
    }
    return host__next_ms(h, now);
}

/* ---------------------------------------------------------------- runtime hooks: cluster facts */

static uint32_t host__node_shards(void *data)
{
    struct cv_host *h = data;
    const struct cv_catalog_node *me = cv_catalog_node_get(h->x.cat, h->x.self);
    return me ? me->shards_owned : 0;
}

static size_t host__cluster_nodes(void *data)
{
    struct cv_host *h = data;
    size_t alive = 0;
    for (size_t i = 0; i < cv_catalog_node_count(h->x.cat); i++) alive += cv_catalog_node_at(h->x.cat, i)->alive;
    return alive;
}

static size_t host__cluster_objects(void *data)
{
    struct cv_host *h = data;
    return cv_catalog_object_count(h->x.cat);
}

/* The runtime hooks that route through the parts (data: the host). */
static int host__call(void *data, const char *type, const char *id, const char *method, const uint8_t *req,
                      size_t len, const struct cv_call_ctx *ctx, cv_runtime_call_cb cb, void *cb_data)
{
    struct cv_host *h = data;
    return cv_outcall_call(&h->out, type, id, method, req, len, ctx, cb, cb_data);
}

static int host__push(void *data, const char *client_id, const ProtobufCMessage *msg)
{
    struct cv_host *h = data;
    return h->push ? cv_pusher_push(h->push, client_id, msg) : CV_EUNAVAIL;
}

static int host__create(void *data, const char *type, const char *id, cv_host_done_cb cb, void *cb_data)
{
    struct cv_host *h = data;
    /* an object's create: the internal side of object_lifecycle_rules (clients': at the gate) */
    if (cv_access_life(&h->x.cfg->access_rules, CV_LIFE_CREATE, type, id, true)) return CV_EPERM;
    return cv_ops_create(&h->ops, type, id, cb, cb_data);
}

static int host__delete(void *data, const char *type, const char *id, cv_host_done_cb cb, void *cb_data)
{
    struct cv_host *h = data;
    if (cv_access_life(&h->x.cfg->access_rules, CV_LIFE_DELETE, type, id, true)) return CV_EPERM;
    return cv_ops_delete(&h->ops, type, id, cb, cb_data);
}

static int host__load_state(void *data, const char *type, const char *id, uint8_t **state, size_t *len,
                            uint64_t *version)
{
    return cv_saver_load(&((struct cv_host *)data)->ps, type, id, state, len, version);
}

static int host__save_state(void *data, const char *type, const char *id, uint64_t version, uint8_t *state,
                            size_t len, const struct cv_save_extra *calls, cv_state_saved_cb cb, void *cb_data)
{
    return cv_saver_save(&((struct cv_host *)data)->ps, type, id, version, state, len, calls, cb, cb_data);
}

static int host__load_reminders(void *data, const char *id, void (*add)(void *o, const struct cv_reminder *r),
                                void *o)
{
    return cv_saver_load_reminders(&((struct cv_host *)data)->ps, id, add, o);
}

static int host__load_calls(void *data, const char *id, void (*call)(void *o, const struct cv_call_record *r),
                            void (*expired)(void *o, uint64_t hash), void *o)
{
    return cv_saver_load_calls(&((struct cv_host *)data)->ps, id, call, expired, o);
}

/* gate.attach: the gate names itself on a connection it keeps to us; its clients' pushes go there. */
static void host__attach(struct cv_host *h, struct cv_rpc_conn *conn, uint64_t id, const uint8_t *body,
                         size_t len)
{
    Cverse__Rpc__AttachRequest *a = cverse__rpc__attach_request__unpack(NULL, len, body);
    int rv = !a ? CV_EPROTO : h->push ? cv_pusher_attach(h->push, conn, a->gate_id) : CV_EUNAVAIL;
    cv_rpc_respond(conn, id, rv, rv ? (rv == CV_EPROTO ? "undecodable AttachRequest" : cv_strerror(rv)) : NULL,
                   NULL, 0);
    if (a) cverse__rpc__attach_request__free_unpacked(a, NULL);
}

/* ---------------------------------------------------------------- public */

bool cv_host_handle_rpc(struct cv_host *h, struct cv_rpc_conn *conn, uint64_t id, const char *method,
                        const uint8_t *body, size_t len, uint32_t deadline_ms)
{
    if (strncmp(method, "objects.", 8) != 0 && strcmp(method, "catalog.subscribe") != 0 &&
        strcmp(method, "gate.attach") != 0)
        return false;
    if (h->x.closing) cv_rpc_respond(conn, id, CV_ECLOSED, "node is shutting down", NULL, 0);
    else if (strcmp(method, "objects.call") == 0) cv_incall_handle(&h->in, conn, id, body, len, deadline_ms);
    else if (strcmp(method, "objects.create") == 0) cv_ops_handle(&h->ops, true, conn, id, body, len);
    else if (strcmp(method, "objects.delete") == 0) cv_ops_handle(&h->ops, false, conn, id, body, len);
    else if (strcmp(method, "catalog.subscribe") == 0) cv_mapfeed_subscribe(&h->feed, conn, id, body, len);
    else if (strcmp(method, "gate.attach") == 0) host__attach(h, conn, id, body, len);
    else return false;
    return true;
}

void cv_host_conn_closed(struct cv_host *h, struct cv_rpc_conn *conn)
{
    cv_mapfeed_conn_closed(&h->feed, conn);
    if (h->push) cv_pusher_conn_closed(h->push, conn);
}

bool cv_host_ready(struct cv_host *h, const char **why)
{
    if (!h->x.started) {
        *why = "auto-load objects not created yet";
        return false;
    }
    if (cv_autoload_pending(&h->al) > 0) {
        *why = "creating auto-load objects";
        return false;
    }
    return true;
}

int cv_host_fence(struct cv_host *h, bool fenced)
{
    if (h->x.closing || h->x.fenced == fenced) return 0;
    h->x.fenced = fenced;
    cv_hctx_wake(&h->x); /* heartbeats to the gates stop or resume, reminders too */
    if (!fenced) {
        if (h->x.started) cv_autoload_reconcile(&h->al); /* the auto-load objects of our shards again */
        return 0;
    }
    return cv_runtime_deactivate_all(h->x.rt, CV_EUNAVAIL);
}

void cv_host_saver_counts(struct cv_host *h, struct cv_saver_counts *out)
{
    const struct cv_saver *p = &h->ps;
    *out = (struct cv_saver_counts){p->saves, p->committed, p->refused, p->failed, p->batches, p->bytes};
}

void cv_host_push_counts(struct cv_host *h, struct cv_push_counts *out)
{
    if (h->push) cv_pusher_counts(h->push, out);
    else *out = (struct cv_push_counts){0};
}

struct cv_runtime *cv_host_runtime(struct cv_host *h)
{
    return h->x.rt;
}

struct cv_node_stats *cv_host_stats(struct cv_host *h)
{
    return h->x.stats;
}

struct cv_feed *cv_host_feed(struct cv_host *h)
{
    return h->events;
}

/* ---------------------------------------------------------------- lifecycle */

static void host__free(struct cv_host *h)
{
    cv_autoload_free(&h->al);
    cv_handoff_free(&h->ho);
    cv_remind_free(&h->rm);
    cv_node_stats_free(h->x.stats);
    cv_feed_free(h->events);
    free(h->policies);
    free(h->feed.subs);
    free(h);
}

/* Frees the host once it is closing, owes no callback and every part closed. */
static void host__settle(struct cv_hctx *x)
{
    struct cv_host *h = (struct cv_host *)x;
    if (!x->closing || x->ops > 0 || x->parts > 0) return;
    void (*done)(void *) = h->done;
    void *data = h->done_data;
    host__free(h);
    if (done) done(data);
}

/* CVERSE_NODE_STATS=0 turns the call statistics off: only to measure what they cost (docs/inspector.md). */
static bool host__stats_on(void)
{
    const char *e = getenv("CVERSE_NODE_STATS");
    return !e || strcmp(e, "0") != 0;
}

int cv_host_init(const struct cv_host_opts *opts, struct cv_host **out)
{
    if (!opts->registry || !opts->catalog_ready) return CV_EINVAL;
    struct cv_host *h = calloc(1, sizeof *h);
    if (!h) return CV_ENOMEM;
    h->o = *opts;
    h->x = (struct cv_hctx){.loop = opts->loop,
                            .cfg = opts->cfg,
                            .self = opts->self->id,
                            .cat = opts->catalog,
                            .cons = opts->consensus,
                            .peers = opts->peers,
                            .reg = opts->registry,
                            .serve_until = opts->serve_until,
                            .serve_data = opts->data,
                            .settle = host__settle};
    int rv = cv_autoload_init(&h->al, &h->x, opts->autoload_inflight); /* tables only, no handle */
    if (!rv) rv = cv_handoff_init(&h->ho, &h->x);
    if (!rv && host__stats_on()) rv = cv_node_stats_new(h->x.reg, opts->cfg->shards, &h->x.stats);
    if (!rv) rv = cv_feed_new(opts->catalog, &h->events);
    if (!rv) rv = cv_saver_policies(opts->cfg, h->x.reg, &h->policies);
    if (rv) goto err_after_h;
    cv_outcall_init(&h->out, &h->x, opts->call_timeout_ms ? opts->call_timeout_ms : CV_HOST_CALL_TIMEOUT_MS);
    struct cv_host_hooks hooks = {.data = h,
                                  .call = host__call,
                                  .create_object = host__create,
                                  .delete_object = host__delete,
                                  .node_shards = host__node_shards,
                                  .cluster_nodes = host__cluster_nodes,
                                  .cluster_objects = host__cluster_objects,
                                  .load_state = host__load_state,
                                  .save_state = host__save_state,
                                  .load_calls = host__load_calls,
                                  .load_reminders = host__load_reminders,
                                  .push = host__push};
    struct cv_runtime_opts ro = {.node_id = h->x.self,
                                 .shards = opts->cfg->shards,
                                 .owns = cv_hctx_owns,
                                 .owns_data = &h->x,
                                 .registry = h->x.reg,
                                 .hooks = &hooks,
                                 .created_explicit = true,
                                 .serve_until = opts->serve_until,
                                 .serve_data = opts->data,
                                 .policies = h->policies,
                                 .n_policies = opts->cfg->n_object_types,
                                 .state_max_bytes = (size_t)opts->cfg->object_state_max_bytes};
    /* The runtime is the last step that can fail: it creates a handle of its own, and nothing before it
     * does, so a failure so far frees everything at once. */
    if ((rv = cv_runtime_init(h->x.loop, &ro, &h->x.rt))) goto err_after_h;
    /* From here on nothing fails: the handles below exist only now, and cv_host_close closes them. */
    cv_autoload_init_timer(&h->al);
    cv_incall_init(&h->in, &h->x);
    cv_ops_init(&h->ops, &h->x);
    cv_saver_init(&h->ps, &h->x);
    cv_remind_init(&h->rm, &h->x);
    cv_mapfeed_init(&h->feed, &h->x);
    *out = h;
    return 0;

err_after_h:
    host__free(h);
    return rv;
}

void cv_host_start(struct cv_host *h)
{
    /* Pushes need no start step to succeed: without memory for the pusher they answer CV_EUNAVAIL. */
    if (cv_pusher_init(h->x.loop, &h->push)) CV_WARN("no memory for the pusher: pushes are off");
    cv_runtime_start(h->x.rt);
    h->ticking = true;
    h->idle_scan_ms = cv_mono_ms();
    cv_hctx_wake(&h->x);
}

void cv_host_stop(struct cv_host *h)
{
    h->x.stopping = true;
}

static void host__push_closed(void *data)
{
    struct cv_host *h = data;
    cv_hctx_part_closed(&h->x);
}

static void host__rt_closed(struct cv_runtime *rt, void *data)
{
    struct cv_host *h = data;
    h->x.rt = NULL;
    cv_hctx_part_closed(&h->x);
}

void cv_host_close(struct cv_host *h, void (*done)(void *data), void *data)
{
    h->x.closing = true;
    h->ticking = false;
    h->done = done;
    h->done_data = data;
    h->x.parts = 1; /* held until everything below was started */
    cv_mapfeed_close(&h->feed);
    cv_outcall_retry(&h->out); /* closing: every waiting call completes with CV_ECLOSED */
    cv_ops_close(&h->ops);
    cv_saver_close(&h->ps);
    cv_autoload_close(&h->al);
    h->x.parts++;
    cv_runtime_close(h->x.rt, host__rt_closed, h);
    if (h->push) {
        h->x.parts++;
        cv_pusher_close(h->push, host__push_closed, h);
        h->push = NULL;
    }
    cv_hctx_part_closed(&h->x);
}
