/* Integration: a real raft group of cverse-node processes on 127.0.0.1 (64 shards).
 * - 3 nodes: one leader, all agree on applied index and shard map, /ready 200 everywhere; kill -9 the
 *   leader -> a new leader, and once the old one stays down past the lease TTL its shards move.
 * - 3 nodes: kill -9 all and restart -> the catalog (nodes, shard owners and epochs) is identical.
 * - 5 nodes, 3 voters: standbys replicate and are listed; kill a voter -> a standby is promoted.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define READY_MS 30000
#define LEASE_TTL_MS 1000

static struct h_cluster C;

static void teardown(void)
{
    h_cluster_destroy(&C);
}

struct live_set {
    struct h_cluster *c;
    bool up[H_MAX_NODES];
};

static struct live_set all_up(struct h_cluster *c)
{
    struct live_set s = {.c = c};
    for (int i = 0; i < c->n; i++) s.up[i] = true;
    return s;
}

static bool all_ready(void *arg)
{
    struct live_set *s = arg;
    for (int i = 0; i < s->c->n; i++) {
        if (!s->up[i]) continue;
        long st;
        json_t *j = h_get_json(s->c, i, "/ready", &st);
        json_decref(j);
        if (st != 200) return false;
    }
    return true;
}

/* Every live node names the same, live leader. */
static bool one_leader(void *arg)
{
    struct live_set *s = arg;
    char first[32] = "";
    for (int i = 0; i < s->c->n; i++) {
        if (!s->up[i]) continue;
        char l[32];
        h_leader_of(s->c, i, l, sizeof l);
        if (!*l) return false;
        if (!*first) snprintf(first, sizeof first, "%s", l);
        if (strcmp(first, l) != 0) return false;
    }
    int li = h_index_of(s->c, first);
    return li >= 0 && s->up[li];
}

/* All live nodes report the same applied index and the same shard map (owners + epochs). */
static bool maps_agree(void *arg)
{
    struct live_set *s = arg;
    char *first = NULL;
    bool ok = true;
    for (int i = 0; i < s->c->n && ok; i++) {
        if (!s->up[i]) continue;
        long st;
        char *t = h_get_text(s->c, i, "/v1/shards", &st);
        if (!t || st != 200) {
            free(t);
            ok = false;
            break;
        }
        if (!first)
            first = t;
        else {
            ok = strcmp(first, t) == 0;
            free(t);
        }
    }
    free(first);
    return ok;
}

/* The leader leaves standbys' redundant heartbeats unsent (consensus/quiet.h): its counter grows. */
static bool leader_skips_standby_heartbeats(void *arg)
{
    struct live_set *s = arg;
    char leader[32];
    h_leader_of(s->c, 0, leader, sizeof leader);
    for (int i = 0; i < s->c->n; i++) {
        if (!s->up[i] || strcmp(s->c->id[i], leader)) continue;
        long st;
        char *t = h_get_text(s->c, i, "/metrics", &st);
        const char *m = t ? strstr(t, "\ncverse_raft_standby_heartbeats_skipped_total ") : NULL;
        bool ok = m && st == 200 && strtoull(m + strlen("\ncverse_raft_standby_heartbeats_skipped_total "), NULL, 10) > 0;
        free(t);
        return ok;
    }
    return false;
}

/* A counter from node i's /metrics (-1: no answer or no such line). */
static long long metric_of(struct h_cluster *c, int i, const char *name)
{
    long st;
    char *t = h_get_text(c, i, "/metrics", &st);
    char key[96];
    snprintf(key, sizeof key, "\n%s ", name);
    const char *m = t && st == 200 ? strstr(t, key) : NULL;
    long long v = m ? strtoll(m + strlen(key), NULL, 10) : -1;
    free(t);
    return v;
}

/* The leader has run 60 more raft ticks (~1 s at the 15 ms heartbeat) than at `from`. */
struct ticks_since {
    int leader;
    long long from;
};

static bool leader_ticked(void *arg)
{
    struct ticks_since *t = arg;
    return metric_of(&C, t->leader, "cverse_raft_ticks_total") >= t->from + 60;
}

static json_t *cluster_view(int i)
{
    long st;
    json_t *j = h_get_json(&C, i, "/v1/cluster", &st);
    cr_assert_not_null(j, "node %d did not answer /v1/cluster", i + 1);
    cr_assert_eq(st, 200);
    return j;
}

static json_t *node_entry(json_t *cluster, const char *id)
{
    size_t k;
    json_t *n;
    json_array_foreach(json_object_get(cluster, "nodes"), k, n) if (!strcmp(json_string_value(
        json_object_get(n, "id")), id)) return n;
    return NULL;
}

static void start_all(void)
{
    for (int i = 0; i < C.n; i++) h_node_start(&C, i);
}

static int first_up(const struct live_set *s)
{
    for (int i = 0; i < s->c->n; i++)
        if (s->up[i]) return i;
    return -1;
}

/* Live nodes own all 64 shards between them, balanced (max - min <= 1), dead ones none. */
static bool balanced(void *arg)
{
    struct live_set *s = arg;
    long st;
    json_t *j = h_get_json(s->c, first_up(s), "/v1/cluster", &st);
    if (!j) return false;
    json_int_t total = 0, min = 1 << 30, max = 0;
    size_t k;
    json_t *n;
    json_array_foreach(json_object_get(j, "nodes"), k, n)
    {
        json_int_t sh = json_integer_value(json_object_get(n, "shards"));
        int i = h_index_of(s->c, json_string_value(json_object_get(n, "id")));
        if (i < 0 || !s->up[i]) {
            if (sh) total = -1000;
            continue;
        }
        total += sh;
        min = sh < min ? sh : min;
        max = sh > max ? sh : max;
    }
    json_decref(j);
    return total == 64 && max - min <= 1;
}

static void wait_ready(struct live_set *s)
{
    cr_assert(h_poll(READY_MS, all_ready, s), "nodes did not all become ready in %d ms", READY_MS);
    cr_assert(h_poll(5000, one_leader, s), "nodes do not agree on one leader");
    cr_assert(h_poll(5000, balanced, s), "shards are not balanced over the live nodes");
    cr_assert(h_poll(5000, maps_agree, s), "nodes do not converge on one applied index and shard map");
}

static json_int_t applied_index(int i);

struct progress {
    struct live_set *s;
    json_int_t target;
    unsigned pins; /* pin toggles written so far */
};

static bool applied_reached(void *arg)
{
    struct progress *p = arg;
    long st;
    /* An idle log stands still (lease renewals are no entries): write one (a pin of shard 0, undone by
     * the caller). */
    char body[64];
    snprintf(body, sizeof body, "{\"shard\":0,\"pinned\":%s}", p->pins++ % 2 ? "false" : "true");
    free(h_post(p->s->c->base + 100 + first_up(p->s), "/v1/admin/shards/pin", body, strlen(body), &st));
    json_t *j = h_get_json(p->s->c, first_up(p->s), "/v1/cluster", &st);
    json_int_t a = j ? json_integer_value(json_object_get(j, "applied_index")) : 0;
    json_decref(j);
    return a >= p->target;
}

TestSuite(cluster, .fini = teardown, .timeout = 180);

struct failover {
    struct live_set s;
    const char *dead;
};

/* The dead node is declared dead, owns nothing, and the live nodes own all 64 shards, balanced. */
static bool shards_moved(void *arg)
{
    struct failover *f = arg;
    int i = 0;
    while (!f->s.up[i]) i++;
    long st;
    json_t *j = h_get_json(f->s.c, i, "/v1/cluster", &st);
    if (!j) return false;
    bool ok = json_integer_value(json_object_get(j, "unassigned_shards")) == 0;
    json_t *dead = node_entry(j, f->dead);
    ok = ok && dead && !json_is_true(json_object_get(dead, "alive")) &&
         json_integer_value(json_object_get(dead, "shards")) == 0;
    json_int_t total = 0, min = 64, max = 0;
    for (int k = 0; k < f->s.c->n; k++) {
        if (!f->s.up[k]) continue;
        json_int_t n = json_integer_value(json_object_get(node_entry(j, f->s.c->id[k]), "shards"));
        total += n;
        min = n < min ? n : min;
        max = n > max ? n : max;
    }
    json_decref(j);
    return ok && total == 64 && max - min <= 1;
}

Test(cluster, three_nodes_agree_and_fail_over)
{
    h_cluster_init(&C, 3, 3, LEASE_TTL_MS);
    start_all();
    struct live_set s = all_up(&C);
    wait_ready(&s);

    json_t *view = cluster_view(0);
    cr_expect_eq(json_integer_value(json_object_get(view, "shards")), 64);
    cr_expect_eq(json_integer_value(json_object_get(view, "unassigned_shards")), 0);
    size_t k;
    json_t *n;
    json_array_foreach(json_object_get(view, "nodes"), k, n)
    {
        cr_expect(json_is_true(json_object_get(n, "alive")));
        cr_expect_str_eq(json_string_value(json_object_get(n, "role")), "voter");
        json_int_t sh = json_integer_value(json_object_get(n, "shards"));
        cr_expect(sh == 21 || sh == 22, "unbalanced: %s owns %lld", json_string_value(json_object_get(n, "id")),
                  (long long)sh);
    }
    char leader[32];
    h_leader_of(&C, 0, leader, sizeof leader);
    json_decref(view);
    int li = h_index_of(&C, leader);
    cr_assert(li >= 0);

    /* kill -9 the leader: a new leader, then (past the lease TTL) the old leader's shards move. */
    h_node_signal(&C, li, SIGKILL);
    s.up[li] = false;
    cr_assert(h_poll(10000, one_leader, &s), "no new leader after killing %s", leader);
    char now[32];
    h_leader_of(&C, (li + 1) % 3, now, sizeof now);
    cr_expect_str_neq(now, leader);
    struct failover f = {.s = s, .dead = leader};
    cr_assert(h_poll(15000, shards_moved, &f), "shards of %s were not reassigned", leader);
    cr_assert(h_poll(5000, balanced, &s));
    cr_assert(h_poll(5000, all_ready, &s));
    cr_assert(h_poll(5000, maps_agree, &s));

    /* Let the log move well past the snapshot threshold (16, trailing 4) while it is down, so that
     * it can only catch up through a snapshot (InstallSnapshot). */
    struct progress pr = {.s = &s, .target = applied_index(first_up(&s)) + 40};
    cr_assert(h_poll(20000, applied_reached, &pr), "the log did not advance while %s was down", leader);
    long pst;
    const char *unpin = "{\"shard\":0,\"pinned\":false}";
    free(h_post(C.base + 100 + first_up(&s), "/v1/admin/shards/pin", unpin, strlen(unpin), &pst));
    cr_assert_eq(pst, 200, "unpin shard 0");

    /* It comes back: it catches up, registers again and gets its share back. */
    h_node_start(&C, li);
    s.up[li] = true;
    cr_assert(h_poll(READY_MS, all_ready, &s), "restarted %s did not become ready", leader);
    cr_assert(h_poll(5000, balanced, &s), "the restarted node did not get its share back");
    cr_assert(h_poll(5000, maps_agree, &s));
    long st;
    char *m = h_get_text(&C, li, "/metrics", &st);
    cr_assert_not_null(m);
    const char *line = strstr(m, "\ncverse_raft_snapshots_installed_total ");
    cr_assert_not_null(line, "no snapshot metric in /metrics");
    cr_expect_geq(atoi(line + strlen("\ncverse_raft_snapshots_installed_total ")), 1,
                  "the node that was down caught up without installing a snapshot");
    free(m);
    h_cluster_stop_all(&C);
}

/* A catalog fingerprint that must survive restarts: nodes (ids, registered) + owners and epochs. */
static char *catalog_fingerprint(int i)
{
    long st;
    json_t *shards = h_get_json(&C, i, "/v1/shards", &st);
    cr_assert_not_null(shards);
    json_t *keep = json_pack("{s:O, s:O}", "owners", json_object_get(shards, "owners"), "epochs",
                             json_object_get(shards, "epochs"));
    json_decref(shards);
    char *s = json_dumps(keep, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(keep);
    return s;
}

static json_int_t applied_index(int i)
{
    json_t *v = cluster_view(i);
    json_int_t a = json_integer_value(json_object_get(v, "applied_index"));
    json_decref(v);
    return a;
}

Test(cluster, catalog_survives_kill9_of_all_nodes)
{
    h_cluster_init(&C, 3, 3, LEASE_TTL_MS);
    start_all();
    struct live_set s = all_up(&C);
    wait_ready(&s);
    char *before = catalog_fingerprint(0);
    json_int_t applied_before = applied_index(0);

    for (int i = 0; i < 3; i++) h_node_signal(&C, i, SIGKILL);
    start_all();
    wait_ready(&s);
    for (int i = 0; i < 3; i++) {
        char *after = catalog_fingerprint(i);
        cr_expect_str_eq(after, before, "node-%d's shard map changed across kill -9 + restart", i + 1);
        free(after);
        cr_expect_geq(applied_index(i), applied_before);
    }
    free(before);

    /* Snapshots were taken (threshold 64 entries) and raft replay stayed idempotent. */
    long st;
    char *m = h_get_text(&C, 0, "/metrics", &st);
    cr_assert_not_null(m);
    cr_expect(strstr(m, "cverse_raft_applied_index") != NULL);
    cr_expect(strstr(m, "cverse_catalog_apply_seconds_bucket") != NULL);
    free(m);
    h_cluster_stop_all(&C);
}

static bool sigterm_exits_zero_leader(struct live_set *s)
{
    char leader[32];
    h_leader_of(&C, first_up(s), leader, sizeof leader);
    int li = h_index_of(&C, leader);
    cr_assert(li >= 0);
    int status = h_node_signal(&C, li, SIGTERM);
    s->up[li] = false;
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "SIGTERM'd leader did not exit 0");
    return true;
}

struct promoted {
    struct live_set s;
    const char *dead;
};

/* The dead voter is no longer a voter and three live nodes are voters. */
static bool standby_promoted(void *arg)
{
    struct promoted *p = arg;
    int i = 0;
    while (!p->s.up[i]) i++;
    long st;
    json_t *j = h_get_json(p->s.c, i, "/v1/cluster", &st);
    if (!j) return false;
    int live_voters = 0;
    size_t k;
    json_t *n;
    json_array_foreach(json_object_get(j, "nodes"), k, n)
    {
        if (!strcmp(json_string_value(json_object_get(n, "role")), "voter") &&
            json_is_true(json_object_get(n, "alive")))
            live_voters++;
    }
    json_t *dead = node_entry(j, p->dead);
    bool ok = live_voters == 3 && dead && strcmp(json_string_value(json_object_get(dead, "role")), "voter");
    json_decref(j);
    return ok;
}

Test(cluster, five_nodes_standbys_and_promotion)
{
    h_cluster_init(&C, 5, 3, LEASE_TTL_MS);
    start_all();
    struct live_set s = all_up(&C);
    wait_ready(&s);
    json_t *view = cluster_view(4);
    int voters = 0, standbys = 0;
    size_t k;
    json_t *n;
    json_array_foreach(json_object_get(view, "nodes"), k, n)
    {
        const char *role = json_string_value(json_object_get(n, "role"));
        voters += !strcmp(role, "voter");
        standbys += !strcmp(role, "standby");
        cr_expect(json_is_true(json_object_get(n, "alive")));
    }
    json_decref(view);
    cr_expect_eq(voters, 3);
    cr_expect_eq(standbys, 2);
    /* A standby replicates the log: it reports the same applied index and map as the voters. */
    cr_assert(h_poll(5000, maps_agree, &s));
    /* ... while the leader leaves its heartbeats that carry nothing new unsent. */
    cr_assert(h_poll(5000, leader_skips_standby_heartbeats, &s), "no standby heartbeat left unsent");
    cr_assert(h_poll(5000, maps_agree, &s), "standbys still follow every commit");
    /* Raft's timer ticks a follower only when its election timer runs out (consensus/snapguard.c), which
     * the leader's messages keep pushing back: an idle standby runs almost none while the leader ticks
     * every heartbeat. */
    char lead[32];
    h_leader_of(&C, 0, lead, sizeof lead);
    int li = -1;
    for (int i = 0; i < 5; i++)
        if (!strcmp(C.id[i], lead)) li = i;
    cr_assert_geq(li, 0, "no leader known");
    struct ticks_since ts = {.leader = li, .from = metric_of(&C, li, "cverse_raft_ticks_total")};
    long long standby0 = metric_of(&C, 4, "cverse_raft_ticks_total");
    cr_assert(ts.from >= 0 && standby0 >= 0, "no cverse_raft_ticks_total in /metrics");
    cr_assert(h_poll(10000, leader_ticked, &ts), "the leader does not tick");
    long long standby_ticks = metric_of(&C, 4, "cverse_raft_ticks_total") - standby0;
    cr_expect_leq(standby_ticks, 5, "an idle standby ran %lld raft ticks while the leader ran 60", standby_ticks);

    /* Kill a voter that is not the leader: a standby takes its place. */
    char leader[32];
    h_leader_of(&C, 0, leader, sizeof leader);
    int victim = -1;
    for (int i = 0; i < 3 && victim < 0; i++)
        if (strcmp(C.id[i], leader)) victim = i;
    h_node_signal(&C, victim, SIGKILL);
    s.up[victim] = false;
    struct promoted p = {.s = s, .dead = C.id[victim]};
    cr_assert(h_poll(15000, standby_promoted, &p), "no standby promoted after %s died", C.id[victim]);

    /* Graceful stop of the leader: it hands over leadership and exits 0; the rest keep going. */
    sigterm_exits_zero_leader(&s);
    cr_assert(h_poll(10000, one_leader, &s), "no leader after the old one stopped");
    h_cluster_stop_all(&C);
}
