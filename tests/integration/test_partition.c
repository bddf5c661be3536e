/* Integration: real network partitions. Every node and the gate run in a network namespace of their own
 * (src/util/netns.h: veth pairs to a bridge, 10.213.<net>.<k>/24), 4 nodes (3 voters, 1 standby),
 * 64 shards, lease TTL 1 s, counters called through the gate by a load thread the whole time.
 * - isolate the standby for 15 s (its cable pulled): it fences within the TTL (/ready 503 "fenced",
 *   asked from inside its namespace), the others re-own its shards and serve its counters; heal: it
 *   catches up (the time to reach the leader's applied index is printed: issue 8 item 5), registers
 *   again and gets shards back;
 * - isolate a voter, isolate the leader: the minority side fences within the TTL, the majority (electing
 *   a new leader if needed) takes over its shards; heal: converge;
 * - cut the gate from one node only: the other nodes' counters keep being served, that node's wait or
 *   go elsewhere, never served twice;
 * - a flapping link (down/up every 300 ms for 10 s) on a voter: no double activation, converges after;
 * - a "real network": 1-5 ms of delay and jitter on every link (tc netem), every call succeeds.
 * Every case checks: no two overlapping activations (the activation checker, also at teardown), every
 * node's catalog converges (the same shard owners and epochs, every node alive, all ready), no
 * acknowledged create or delete is lost (made during the fault, checked after it), and every value the
 * load thread got acknowledged is consistent with one copy of each counter at a time.
 * Network namespaces need root: without them these tests fail, saying so. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "util/netns.h"

#define TTL_MS 1000
#define FENCE_SEEN_SLACK_MS 200u /* how late polling may see a fence (see isolate_case) */
#define READY_MS 30000
#define N_NODES 4
#define VOTERS 3
#define GATE N_NODES /* the gate's host index in the network */
#define N_LOAD 16    /* counters the load thread calls */
#define N_OPS 6      /* creates and deletes made during a fault */
/* After a heal the leader dials the node again within one connect cycle (src/consensus/rafttcp.c: a 300 ms
 * connect deadline + libraft's 1 s retry delay), then the log flows: ~1 s measured; with room for a loaded
 * machine. Before the bounded connect it took ~6 s (docs/partitions.md). */
#define CATCH_UP_MS 3000

static struct h_cluster C;
static struct cv_netns N;

static void teardown(void)
{
    if (C.dir[0]) h_cluster_destroy(&C); /* kills the processes (by pid) before their namespaces go */
    cv_netns_destroy(&N);
}

TestSuite(partition, .fini = teardown, .timeout = 150);

/* ---------------------------------------------------------------- the network (src/util/netns.h) */

/* Creates the namespaces: fails (never skips) with a message when network namespaces are unavailable. */
static void net_create(int hosts)
{
    char err[256];
    int rc = cv_netns_create(&N, hosts, err, sizeof err);
    cr_assert_eq(rc, 0, "%s. The partition tests need them and are not skipped.", err);
}

static void net_jitter(void)
{
    cr_assert_geq(cv_netns_jitter(&N), 0, "netns: command failed (see stderr)");
}

static int net_enter(int k)
{
    int prev = cv_netns_enter(&N, k);
    cr_assert_geq(prev, 0, "cannot enter %s (see stderr)", N.ns[k]);
    return prev;
}

static void net_leave(int prev)
{
    cr_assert_eq(cv_netns_leave(prev), 0, "cannot leave a namespace (see stderr)");
}

static void net_link(int k, bool up)
{
    cr_assert_eq(cv_netns_link(&N, k, up), 0, "netns: command failed (see stderr)");
}

static void net_cut_pair(int a, int b, bool cut)
{
    cr_assert_eq(cv_netns_cut_pair(&N, a, b, cut), 0, "netns: command failed (see stderr)");
}

/* Keeps a fault going until the monotonic time `until`: a chosen duration of the scenario, not a
 * synchronisation (what the test waits for is polled). */
static void hold_until(unsigned long long until)
{
    while (h_now_ms() < until) usleep(20 * 1000);
}

/* ---------------------------------------------------------------- requests from inside namespaces */

static json_t *node_json(int i, const char *path, long *st)
{
    int prev = net_enter(i);
    json_t *j = h_get_json(&C, i, path, st);
    net_leave(prev);
    return j;
}

static char *node_text(int i, const char *path, long *st)
{
    int prev = net_enter(i);
    char *t = h_get_text(&C, i, path, st);
    net_leave(prev);
    return t;
}

/* POST to the gate's HTTP API from the calling thread (which must be in the gate's namespace). */
static char *gate_post(const char *path, long *st)
{
    return h_post(h_gate_http_port(&C, 0), path, "{\"request\":{}}", 14, st);
}

static char *gate_post_ns(const char *path, long *st)
{
    int prev = net_enter(GATE);
    char *t = gate_post(path, st);
    net_leave(prev);
    return t;
}

static bool node_ready(int i)
{
    long st;
    free(node_text(i, "/ready", &st));
    return st == 200;
}

static bool all_ready(void *arg)
{
    (void)arg;
    for (int i = 0; i < C.n; i++)
        if (!node_ready(i)) return false;
    int prev = net_enter(GATE);
    long st;
    free(h_get_port(h_gate_http_port(&C, 0), "/ready", &st));
    net_leave(prev);
    return st == 200;
}

/* The leader as node i sees it (-1: none or unreachable). */
static int leader_seen_by(int i)
{
    long st;
    json_t *j = node_json(i, "/v1/cluster", &st);
    const char *l = json_string_value(json_object_get(j, "leader"));
    int k = l ? h_index_of(&C, l) : -1;
    json_decref(j);
    return k;
}

static long long applied_index(int i)
{
    long st;
    json_t *j = node_json(i, "/v1/cluster", &st);
    long long v = j ? json_integer_value(json_object_get(j, "applied_index")) : -1;
    json_decref(j);
    return v;
}

/* Shards node `asker`'s catalog gives to node `owner`; -1 if unreachable. */
static int shards_of(int asker, int owner)
{
    long st;
    json_t *j = node_json(asker, "/v1/shards", &st);
    if (!j) return -1;
    int n = 0;
    json_t *o;
    size_t k;
    json_array_foreach(json_object_get(j, "owners"), k, o) n += json_is_string(o) && !strcmp(json_string_value(o), C.id[owner]);
    json_decref(j);
    return n;
}

/* ---------------------------------------------------------------- convergence */

/* Every node ready, every node's catalog with the same owners and epochs (every shard owned), and every
 * node alive in every catalog. */
static bool converged(void *arg)
{
    (void)arg;
    if (!all_ready(NULL)) return false;
    json_t *ref = NULL;
    bool ok = true;
    for (int i = 0; i < C.n && ok; i++) {
        long st;
        json_t *s = node_json(i, "/v1/shards", &st), *c = node_json(i, "/v1/cluster", &st);
        json_t *owners = json_object_get(s, "owners"), *o;
        size_t k;
        ok = s && c && json_array_size(owners) > 0;
        json_array_foreach(owners, k, o) ok = ok && json_is_string(o);
        json_array_foreach(json_object_get(c, "nodes"), k, o) ok = ok && json_is_true(json_object_get(o, "alive"));
        if (ok && ref)
            ok = json_equal(owners, json_object_get(ref, "owners")) &&
                 json_equal(json_object_get(s, "epochs"), json_object_get(ref, "epochs"));
        json_decref(c);
        if (!ref) ref = s;
        else json_decref(s);
    }
    json_decref(ref);
    return ok;
}

static void expect_converged(const char *when)
{
    unsigned long long t = h_now_ms();
    cr_assert(h_poll(20000, converged, NULL), "%s: the catalogs of the nodes did not converge within 20 s", when);
    fprintf(stderr, "partition: %s: converged after %llu ms\n", when, h_now_ms() - t);
}

/* ---------------------------------------------------------------- the load: one caller per counter */

struct load {
    volatile bool run;
    int attempts[N_LOAD];        /* calls made */
    long long last[N_LOAD];      /* last acknowledged value */
    int last_at[N_LOAD];         /* attempts when it was acknowledged */
    unsigned long long acked_ms[N_LOAD]; /* when */
    int acks, bad;
    char first_bad[256];
};

static struct load L;

static void load_id(int k, char *buf, size_t len)
{
    snprintf(buf, len, "pl-%02d", k);
}

/* An acknowledged value b after value a, `gap` attempts later, comes from the same activation (a < b <=
 * a + gap: only our own calls counted) or from a new one that saw only calls made since a (b <= gap).
 * Anything else was answered by a copy that should not exist (stale, or a second one). */
static void load_ack(struct load *l, int k, long long b)
{
    long long a = l->last[k], gap = l->attempts[k] - l->last_at[k];
    if (!((a < b && b <= a + gap) || b <= gap)) {
        if (!l->bad++)
            snprintf(l->first_bad, sizeof l->first_bad, "pl-%02d acknowledged %lld then %lld, %lld attempts apart", k,
                     a, b, gap);
    }
    l->last[k] = b;
    l->last_at[k] = l->attempts[k];
    __atomic_store_n(&l->acked_ms[k], h_now_ms(), __ATOMIC_RELEASE);
    l->acks++;
}

/* Increment counter id through the gate: its value, or -1 (*st: HTTP status, 0 if no answer). */
static long long increment(const char *id, unsigned timeout_ms, long *st)
{
    char path[256];
    snprintf(path, sizeof path, "/api/v1/objects/call/SimpleCounter/%s/Increment?timeout_ms=%u", id, timeout_ms);
    char *t = gate_post(path, st);
    return h_response_value(t, *st);
}

static void *load_main(void *arg)
{
    struct load *l = arg;
    int prev = net_enter(GATE); /* this thread's sockets live in the gate's namespace */
    char id[16];
    while (l->run)
        for (int k = 0; k < N_LOAD && l->run; k++) {
            load_id(k, id, sizeof id);
            long st;
            l->attempts[k]++;
            long long v = increment(id, 700, &st);
            if (v > 0) load_ack(l, k, v);
        }
    net_leave(prev);
    return NULL;
}

/* Every counter (of those in `which`, NULL: all) acknowledged a call after `since`. */
struct acked_since {
    unsigned long long since;
    const bool *which;
};

static bool all_acked_since(void *arg)
{
    struct acked_since *a = arg;
    for (int k = 0; k < N_LOAD; k++)
        if ((!a->which || a->which[k]) && __atomic_load_n(&L.acked_ms[k], __ATOMIC_ACQUIRE) <= a->since) return false;
    return true;
}

static pthread_t load_thread;

static void load_start(void)
{
    memset(&L, 0, sizeof L);
    for (int k = 0; k < N_LOAD; k++) L.last[k] = 1; /* start() incremented each once */
    L.run = true;
    cr_assert_eq(pthread_create(&load_thread, NULL, load_main, &L), 0);
    struct acked_since a = {.since = h_now_ms()};
    cr_assert(h_poll(10000, all_acked_since, &a), "the load does not reach every counter");
}

static void load_stop(const char *when)
{
    L.run = false;
    pthread_join(load_thread, NULL);
    int calls = 0;
    for (int k = 0; k < N_LOAD; k++) calls += L.attempts[k];
    fprintf(stderr, "partition: %s: %d calls through the gate, %d acknowledged, %d inconsistent\n", when, calls,
            L.acks, L.bad);
    cr_expect_eq(L.bad, 0, "%s: %d acknowledged values from a copy that should not exist; first: %s", when, L.bad,
                 L.first_bad);
}

/* ---------------------------------------------------------------- creates and deletes during a fault */

struct ops {
    bool created[N_OPS], deleted[N_OPS];
    int n_created, n_deleted;
};

static bool object_call(const char *what, const char *id, long *st)
{
    char path[256];
    snprintf(path, sizeof path, "/api/v1/objects/%s/SimpleCounter/%s%s", what, id,
             strcmp(what, "call") ? "" : "/Increment?timeout_ms=5000");
    free(gate_post_ns(path, st));
    return *st == 200;
}

/* Creates po-NN and deletes pd-NN (created by start()) through the gate, one of each per call. */
static void ops_run(struct ops *o, int k)
{
    char id[16];
    long st;
    snprintf(id, sizeof id, "po-%02d", k);
    o->n_created += o->created[k] = object_call("create", id, &st);
    snprintf(id, sizeof id, "pd-%02d", k);
    o->n_deleted += o->deleted[k] = object_call("delete", id, &st);
}

/* Increments id through the gate; returns the new value, -1 unless HTTP 200. */
static long long increment_value(const char *id, long *st)
{
    char path[256];
    snprintf(path, sizeof path, "/api/v1/objects/call/SimpleCounter/%s/Increment?timeout_ms=5000", id);
    char *t = gate_post_ns(path, st);
    json_t *j = t && *st == 200 ? json_loads(t, 0, NULL) : NULL;
    json_t *v = json_object_get(json_object_get(j, "response"), "value");
    long long val = !j ? -1 : json_is_string(v) ? atoll(json_string_value(v)) : json_integer_value(v);
    json_decref(j);
    free(t);
    return val;
}

/* After the fault: every acknowledged create answers a call; every acknowledged delete took the object's
 * state with it (a call activates the id anew, from zero: its first increment answers 1, not 2). */
static void ops_check(const struct ops *o, const char *when)
{
    cr_expect_gt(o->n_created + o->n_deleted, 0, "%s: no create or delete was acknowledged during the fault", when);
    char id[16];
    for (int k = 0; k < N_OPS; k++) {
        long st;
        snprintf(id, sizeof id, "po-%02d", k);
        if (o->created[k]) cr_expect(object_call("call", id, &st), "%s: created %s answers HTTP %ld", when, id, st);
        snprintf(id, sizeof id, "pd-%02d", k);
        if (o->deleted[k]) {
            long long v = increment_value(id, &st);
            cr_expect_eq(v, 1, "%s: deleted %s: its next increment answers %lld (HTTP %ld), not 1", when, id, v, st);
        }
    }
    fprintf(stderr, "partition: %s: %d creates and %d deletes acknowledged during the fault, none lost\n", when,
            o->n_created, o->n_deleted);
}

/* ---------------------------------------------------------------- the cluster */

static void start_process(int host, bool gate)
{
    int prev = net_enter(host); /* the child inherits this thread's namespace */
    if (gate) h_gate_start(&C, 0);
    else h_node_start(&C, host);
    net_leave(prev);
}

/* Network, config, processes, and the objects: N_LOAD counters (incremented once) and N_OPS to delete.
 * snapshots: raft snapshots every 16 entries (the harness' setting), so a node that comes back gets an
 * InstallSnapshot; otherwise none during the test (the other cases measure catch-up from the log). */
static void start_ex(bool snapshots, bool jitter)
{
    net_create(N_NODES + 1);
    if (jitter) net_jitter();
    const char *hosts[N_NODES + 1];
    for (int k = 0; k <= N_NODES; k++) hosts[k] = N.ip[k];
    struct h_opts o = {.gates = 1};
    h_cluster_init_hosts(&C, N_NODES, VOTERS, TTL_MS, &o, hosts);
    if (!snapshots) h_config_set(&C, "snapshot_threshold", "1000000");
    for (int i = 0; i < N_NODES; i++) start_process(i, false);
    start_process(GATE, true);
    cr_assert(h_poll(READY_MS, all_ready, NULL), "nodes and gate did not become ready in their namespaces");
    char id[16];
    long st;
    for (int k = 0; k < N_LOAD + N_OPS; k++) {
        if (k < N_LOAD) load_id(k, id, sizeof id);
        else snprintf(id, sizeof id, "pd-%02d", k - N_LOAD);
        cr_assert(object_call("create", id, &st), "create %s: HTTP %ld", id, st);
        /* Every object is incremented once: a deleted pd-NN called again starts from zero (a call to
         * an id that does not exist activates it anew), so a lost delete would answer 2, not 1. */
        cr_assert(object_call("call", id, &st), "first call of %s: HTTP %ld", id, st);
    }
}

static void start(void)
{
    start_ex(false, false);
}

/* Which load counters are active on node i. Returns how many. */
static int counters_on(int i, bool on[N_LOAD])
{
    long st;
    json_t *j = node_json(i, "/v1/objects?type=SimpleCounter", &st), *o;
    size_t k;
    int n = 0;
    memset(on, 0, N_LOAD * sizeof *on);
    json_array_foreach(json_object_get(j, "objects"), k, o) {
        const char *id = json_string_value(json_object_get(o, "id"));
        if (id && !strncmp(id, "pl-", 3) && atoi(id + 3) < N_LOAD) n += on[atoi(id + 3)] = true;
    }
    json_decref(j);
    return n;
}

/* "" while node i runs; else how it ended (it is reaped): for the messages of failed waits. */
static const char *node_fate(int i)
{
    static char buf[64];
    int st;
    buf[0] = '\0';
    if (C.pid[i] > 0 && waitpid(C.pid[i], &st, WNOHANG) == C.pid[i]) {
        if (WIFSIGNALED(st)) snprintf(buf, sizeof buf, " (it died: signal %d)", WTERMSIG(st));
        else snprintf(buf, sizeof buf, " (it exited with status %d)", WEXITSTATUS(st));
        C.pid[i] = 0;
    }
    return buf;
}

static void check_activations(const char *when)
{
    char report[2048];
    size_t acts;
    int overlaps = h_actlog_check(C.actlog, report, sizeof report, &acts);
    cr_assert_eq(overlaps, 0, "%s: %d overlapping activations (of %zu):\n%s", when, overlaps, acts, report);
}

/* ---------------------------------------------------------------- isolating one node */

/* Node i's own view of its lease ("valid", "suspect", "fenced", "none"; "" if unreachable), asked from
 * inside its namespace: a cut-off node is reachable there. */
static void self_lease(int i, char *out, size_t len)
{
    long st;
    json_t *j = node_json(i, "/v1/cluster", &st), *o;
    size_t k;
    out[0] = '\0';
    json_array_foreach(json_object_get(j, "nodes"), k, o) {
        const char *s = json_string_value(json_object_get(json_object_get(o, "self_lease"), "state"));
        if (s) snprintf(out, len, "%s", s);
    }
    json_decref(j);
}

/* Node i's /ready answers 503 with a reason starting "fenced" (it knows no leader either when cut off,
 * but fencing is why it serves nothing). */
static bool ready_says_fenced(int i)
{
    long st;
    char *t = node_text(i, "/ready", &st);
    json_t *j = t ? json_loads(t, 0, NULL) : NULL;
    const char *why = json_string_value(json_object_get(j, "reason"));
    bool yes = st == 503 && why && strncmp(why, "fenced", 6) == 0;
    json_decref(j);
    free(t);
    return yes;
}

/* Node *arg has fenced itself: its lease view says so and /ready answers 503 "fenced: ...". */
static bool fenced(void *arg)
{
    int v = *(int *)arg;
    char state[16];
    self_lease(v, state, sizeof state);
    return !strcmp(state, "fenced") && ready_says_fenced(v);
}

struct owner_q {
    int asker, owner;
};

static bool owns_none(void *arg)
{
    struct owner_q *q = arg;
    return shards_of(q->asker, q->owner) == 0;
}

static bool owns_some(void *arg)
{
    struct owner_q *q = arg;
    return shards_of(q->asker, q->owner) > 0;
}

struct catch_up {
    int node;
    long long index;
};

static bool caught_up(void *arg)
{
    struct catch_up *c = arg;
    return applied_index(c->node) >= c->index;
}

static int known_leader(void)
{
    int l = -1;
    for (unsigned long long end = h_now_ms() + 10000; l < 0 && h_now_ms() < end;) l = leader_seen_by(0);
    cr_assert_geq(l, 0, "no leader known");
    return l;
}

struct new_leader {
    int asker, old;
};

static bool has_new_leader(void *arg)
{
    struct new_leader *n = arg;
    int l = leader_seen_by(n->asker);
    return l >= 0 && l != n->old;
}

enum victim { STANDBY, VOTER, LEADER };

/* Pulls the cable of a node (the standby, a voter that does not lead, the leader) for cut_ms, with calls
 * flowing through the gate, creates and deletes during the cut; then heals and checks that it comes back. */
static void isolate_case(enum victim kind, unsigned cut_ms, bool snapshots)
{
    static const char *const names[] = {"standby", "voter", "leader"};
    start_ex(snapshots, false);
    int leader = known_leader();
    int v = kind == STANDBY ? N_NODES - 1 : kind == LEADER ? leader : leader == 1 ? 2 : 1;
    int asker = v == 0 ? 1 : 0; /* a voter on the majority side */
    bool on_v[N_LOAD];
    int n_on_v = counters_on(v, on_v);
    load_start();

    unsigned long long t0 = h_now_ms();
    net_link(v, false);
    cr_assert(h_poll(TTL_MS + 5000, fenced, &v), "isolated %s did not fence itself", C.id[v]);
    unsigned long long t_fenced = h_now_ms();
    /* The node fences itself at most TTL - margin after its last renewal was sent (before the cut); we see
     * it by polling (two HTTP requests into its namespace and a 20 ms pause per round), which under ASan on
     * a loaded machine lags by up to ~100 ms (CI saw 1005 ms). */
    cr_expect_leq(t_fenced - t0, TTL_MS + FENCE_SEEN_SLACK_MS,
                  "isolated %s fenced itself only %llu ms after the cut (TTL %u ms, slack for polling %u ms)", C.id[v],
                  t_fenced - t0, TTL_MS, FENCE_SEEN_SLACK_MS);
    if (kind == LEADER) {
        struct new_leader nl = {asker, v};
        cr_assert(h_poll(10000, has_new_leader, &nl), "the majority did not elect a new leader");
        leader = leader_seen_by(asker);
    }
    struct owner_q q = {asker, v};
    cr_assert(h_poll(15000, owns_none, &q), "the shards of isolated %s were not re-owned", C.id[v]);
    unsigned long long t_reowned = h_now_ms();
    struct acked_since a = {t_reowned, on_v};
    cr_assert(h_poll(10000, all_acked_since, &a), "the counters of isolated %s are not served by the others", C.id[v]);
    unsigned long long t_served = h_now_ms();
    struct ops o = {0};
    for (int k = 0; k < N_OPS; k++) ops_run(&o, k);
    hold_until(t0 + cut_ms);

    struct catch_up cu = {v, applied_index(leader)};
    cr_assert_gt(cu.index, 0, "the leader's applied index");
    unsigned long long t_heal = h_now_ms();
    net_link(v, true);
    cr_assert(h_poll(30000, caught_up, &cu), "%s did not catch up with the log after the heal%s", C.id[v], node_fate(v));
    unsigned long long t_caught = h_now_ms();
    cr_expect_leq(t_caught - t_heal, CATCH_UP_MS, "%s caught up with the log only %llu ms after the heal",
                  C.id[v], t_caught - t_heal);
    cr_assert(h_poll(20000, owns_some, &q), "%s got no shards back after the heal%s", C.id[v], node_fate(v));
    unsigned long long t_back = h_now_ms();
    expect_converged(names[kind]);
    load_stop(names[kind]);
    ops_check(&o, names[kind]);
    check_activations(names[kind]);
    fprintf(stderr,
            "partition: isolated %s %s (%d counters) for %u ms: fenced after %llu ms, re-owned after %llu ms, its "
            "counters served elsewhere after %llu ms; after the heal: caught up with the log (index %lld) in %llu "
            "ms, shards back in %llu ms\n",
            names[kind], C.id[v], n_on_v, cut_ms, t_fenced - t0, t_reowned - t0, t_served - t0, cu.index,
            t_caught - t_heal, t_back - t_heal);
}

Test(partition, isolated_standby_fences_is_replaced_and_catches_up_after_15_s)
{
    isolate_case(STANDBY, 15000, false);
}

Test(partition, isolated_voter_fences_and_the_majority_takes_over)
{
    isolate_case(VOTER, 3 * TTL_MS, false);
}

Test(partition, isolated_leader_fences_and_the_majority_elects_and_takes_over)
{
    isolate_case(LEADER, 3 * TTL_MS, false);
}

/* With raft snapshots every 16 entries, the voter that comes back gets an InstallSnapshot, often while it
 * takes a snapshot of its own: libraft 0.22.1 crashed there (SEGV at NULL+0x48 in legacy.c's
 * takeSnapshotCb) about two runs in three until consensus/snapguard held such installs back. */
Test(partition, isolated_voter_heals_through_a_snapshot_install)
{
    isolate_case(VOTER, 3 * TTL_MS, true);
}

/* ---------------------------------------------------------------- the gate cut from one node */

/* The gate cannot reach one node (that node and every other path are fine): the other nodes' counters
 * keep being served the whole time; that node's wait (or go elsewhere) and are served again after the
 * heal; none is ever served by two copies. */
Test(partition, gate_cut_from_one_node_serves_the_others_and_never_double_serves)
{
    start();
    int leader = known_leader();
    int v = leader == 1 ? 2 : 1;
    bool on_v[N_LOAD], others[N_LOAD];
    int n_on_v = counters_on(v, on_v);
    cr_assert_gt(n_on_v, 0, "%s owns none of the counters", C.id[v]);
    for (int k = 0; k < N_LOAD; k++) others[k] = !on_v[k];
    load_start();
    unsigned long long t0 = h_now_ms();
    net_cut_pair(GATE, v, true);
    struct acked_since a = {t0 + TTL_MS, others};
    cr_assert(h_poll(5000, all_acked_since, &a), "counters not on %s stopped being served after the cut", C.id[v]);
    hold_until(t0 + 4000);
    a.since = h_now_ms();
    cr_assert(h_poll(4000, all_acked_since, &a), "counters not on %s stopped being served during the cut", C.id[v]);
    cr_expect(node_ready(v), "%s itself is fine (only the gate cannot reach it)", C.id[v]);
    hold_until(t0 + 8000);
    unsigned long long t_heal = h_now_ms();
    int served = 0;
    for (int k = 0; k < N_LOAD; k++) served += on_v[k] && L.acked_ms[k] > t0 + TTL_MS;
    net_cut_pair(GATE, v, false);
    struct acked_since b = {t_heal, on_v};
    cr_assert(h_poll(15000, all_acked_since, &b), "the counters of %s are not served again after the heal", C.id[v]);
    unsigned long long t_back = h_now_ms();
    expect_converged("gate cut");
    load_stop("gate cut");
    check_activations("gate cut");
    fprintf(stderr,
            "partition: gate cut from %s for %llu ms: the other counters served throughout, %d of its %d served "
            "during the cut; all of them served %llu ms after the heal\n",
            C.id[v], t_heal - t0, served, n_on_v, t_back - t_heal);
}

/* ---------------------------------------------------------------- a flapping link */

Test(partition, flapping_link_never_double_activates_and_converges)
{
    start();
    int leader = known_leader();
    int v = leader == 1 ? 2 : 1;
    load_start();
    unsigned long long t0 = h_now_ms(), t = t0;
    int flaps = 0;
    while (t < t0 + 10000) {
        net_link(v, false);
        hold_until(t += 300);
        net_link(v, true);
        hold_until(t += 300);
        flaps++;
    }
    unsigned long long t_end = h_now_ms();
    expect_converged("flapping");
    struct acked_since a = {t_end, NULL};
    cr_assert(h_poll(15000, all_acked_since, &a), "not every counter is served again after the flapping");
    unsigned long long t_served = h_now_ms();
    load_stop("flapping");
    check_activations("flapping");
    char state[16];
    self_lease(v, state, sizeof state);
    fprintf(stderr, "partition: %s's link flapped %d times in %llu ms; every counter served %llu ms after; its "
                    "lease now %s\n",
            C.id[v], flaps, t_end - t0, t_served - t_end, state);
}

/* ---------------------------------------------------------------- a real network */

/* 1-5 ms of delay and jitter on every link (where the kernel has netem): every call through the gate is
 * acknowledged, creates and deletes too, and the catalogs agree. */
Test(partition, real_network_with_jitter_serves_every_call)
{
    start_ex(false, true);
    load_start();
    struct ops o = {0};
    for (int k = 0; k < N_OPS; k++) ops_run(&o, k);
    hold_until(h_now_ms() + 5000);
    load_stop("jitter");
    int calls = 0;
    for (int k = 0; k < N_LOAD; k++) calls += L.attempts[k];
    cr_expect_eq(L.acks, calls, "with jitter, %d of %d calls failed", calls - L.acks, calls);
    cr_expect_eq(o.n_created, N_OPS, "creates acknowledged with jitter");
    cr_expect_eq(o.n_deleted, N_OPS, "deletes acknowledged with jitter");
    ops_check(&o, "jitter");
    expect_converged("jitter");
    check_activations("jitter");
}
