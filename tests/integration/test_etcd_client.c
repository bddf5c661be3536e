/* The discovery client (src/discovery) against a real etcd started by the test: unary calls, a watch with
 * resume, registration under a lease (duplicate id, take-over of a dead predecessor, revoke), the leader
 * key's term order, and failover across the members of a 3-member etcd with one killed. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"
#include "discovery/disc.h"
#include "discovery/etcd.h"
#include "discovery/members.h"
#include "harness.h"

static uv_loop_t loop;
static uv_timer_t deadline;
static bool deadline_hit;
static struct h_etcd E;

static void on_deadline(uv_timer_t *t) { deadline_hit = true; }

/* Runs the loop until cond holds; fails the test at the deadline (20 s from the start of the wait). */
#define RUN_UNTIL(cond)                                                                    \
    do {                                                                                   \
        deadline_hit = false;                                                              \
        uv_timer_start(&deadline, on_deadline, 20000, 0);                                  \
        while (!(cond)) {                                                                  \
            cr_assert(!deadline_hit, "deadline hit while waiting for: %s", #cond);         \
            uv_run(&loop, UV_RUN_ONCE);                                                    \
        }                                                                                  \
        uv_timer_stop(&deadline);                                                          \
    } while (0)

static void setup1(void)
{
    h_etcd_start(&E, 1);
    uv_loop_init(&loop);
    uv_timer_init(&loop, &deadline);
}

static void close_left(uv_handle_t *h, void *arg)
{
    bool *left = arg;
    if (uv_is_closing(h)) return;
    if (h != (uv_handle_t *)&deadline) *left = true;
    uv_close(h, NULL);
}

static void teardown(void)
{
    /* After a failed assertion the clients under test may still hold handles: close whatever is left
     * (their memory leaks then, the test failed anyway) so that the loop runs empty. */
    bool left = false;
    uv_walk(&loop, close_left, &left);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_expect_not(left, "handles left open by the clients under test");
    cr_expect_eq(uv_loop_close(&loop), 0, "handles left open");
    h_etcd_stop(&E);
}

/* ---- one call at a time ---------------------------------------------------------------------------------- */

struct res {
    bool done;
    int err;
    struct cv_etcd_reply r; /* a copy of the scalar fields; kvs[0] copied below */
    char key0[128], value0[512];
    int64_t lease0;
};

static void on_reply(void *data, int err, const struct cv_etcd_reply *r)
{
    struct res *s = data;
    s->done = true;
    s->err = err;
    if (r) {
        s->r = *r;
        s->r.kvs = NULL;
        s->r.events = NULL;
        if (r->n_kvs) {
            snprintf(s->key0, sizeof s->key0, "%s", r->kvs[0].key);
            snprintf(s->value0, sizeof s->value0, "%s", r->kvs[0].value);
            s->lease0 = r->kvs[0].lease;
        }
    }
}

static struct res call(struct cv_etcd *c, const char *path, char *body)
{
    struct res s = {0};
    cr_assert_eq(cv_etcd_call(c, path, body, on_reply, &s), 0);
    RUN_UNTIL(s.done);
    return s;
}

static struct cv_etcd *client(const char *endpoints)
{
    char buf[128], *save = NULL;
    const char *eps[H_ETCD_MAX];
    size_t n = 0;
    snprintf(buf, sizeof buf, "%s", endpoints);
    for (char *t = strtok_r(buf, ",", &save); t && n < H_ETCD_MAX; t = strtok_r(NULL, ",", &save)) eps[n++] = t;
    struct cv_etcd_opts o = {.loop = &loop, .endpoints = eps, .n_endpoints = n, .timeout_ms = 1000};
    struct cv_etcd *c;
    cr_assert_eq(cv_etcd_init(&o, &c), 0);
    return c;
}

static void close_client(struct cv_etcd *c)
{
    cv_etcd_close(c, NULL, NULL);
}

static void on_wake(uv_timer_t *t) { *(bool *)t->data = true; }

/* Runs the loop for ms (for checks that something holds over a duration, not to wait for an event). */
static void run_for(unsigned ms)
{
    uv_timer_t t;
    bool woke = false;
    uv_timer_init(&loop, &t);
    t.data = &woke;
    uv_timer_start(&t, on_wake, ms, 0);
    RUN_UNTIL(woke);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
}

/* Polls key until its value contains want (10 s at most); returns the last read. */
static struct res poll_value(struct cv_etcd *c, const char *key, const char *want)
{
    uint64_t until = uv_now(&loop) + 10000;
    struct res r;
    do {
        r = call(c, "/v3/kv/range", cv_etcd_enc_range_key(key));
        if (r.r.count && strstr(r.value0, want)) return r;
        run_for(20);
    } while (uv_now(&loop) < until);
    cr_assert_fail("%s never held %s (last: %s)", key, want, r.value0);
    return r;
}

TestSuite(etcd_client, .init = setup1, .fini = teardown, .timeout = 120);

Test(etcd_client, kv_txn_and_leases)
{
    struct cv_etcd *c = client(E.endpoints);
    struct res g = call(c, "/v3/lease/grant", cv_etcd_enc_grant(30));
    cr_assert_eq(g.err, 0);
    cr_assert_neq(g.r.id, 0);
    cr_assert_geq(g.r.ttl, 30);
    struct res t = call(c, "/v3/kv/txn", cv_etcd_enc_create("/t/nodes/a", "{\"x\":1}", g.r.id));
    cr_assert_eq(t.err, 0);
    cr_assert(t.r.succeeded);
    t = call(c, "/v3/kv/txn", cv_etcd_enc_create("/t/nodes/a", "{\"x\":2}", 0));
    cr_assert_eq(t.err, 0);
    cr_assert_not(t.r.succeeded, "create-if-absent succeeded on an existing key");
    cr_assert_str_eq(t.value0, "{\"x\":1}");
    cr_assert_eq(t.lease0, g.r.id);
    cr_assert_eq(call(c, "/v3/kv/put", cv_etcd_enc_put("/t/nodes/b", "B", 0)).err, 0);
    cr_assert_eq(call(c, "/v3/kv/put", cv_etcd_enc_put("/t/other", "O", 0)).err, 0);
    struct res r = call(c, "/v3/kv/range", cv_etcd_enc_range_prefix("/t/nodes/"));
    cr_assert_eq(r.err, 0);
    cr_assert_eq(r.r.count, 2);
    cr_assert_str_eq(r.key0, "/t/nodes/a");
    struct res k = call(c, "/v3/lease/keepalive", cv_etcd_enc_lease(g.r.id));
    cr_assert_eq(k.err, 0);
    cr_assert_gt(k.r.ttl, 0);
    cr_assert_eq(call(c, "/v3/lease/revoke", cv_etcd_enc_lease(g.r.id)).err, 0);
    r = call(c, "/v3/kv/range", cv_etcd_enc_range_key("/t/nodes/a"));
    cr_assert_eq(r.r.count, 0, "the key outlived its revoked lease");
    k = call(c, "/v3/lease/keepalive", cv_etcd_enc_lease(g.r.id));
    cr_assert_eq(k.err, 0);
    cr_assert_eq(k.r.ttl, 0, "keepalive of a revoked lease: TTL omitted (0)");
    cr_assert_eq(call(c, "/v3/lease/revoke", cv_etcd_enc_lease(g.r.id)).err, CV_ENOTFOUND);
    close_client(c);
}

/* ---- watch ----------------------------------------------------------------------------------------------- */

struct watched {
    int puts, deletes, created;
    int64_t last_rev;
    bool ended;
    int end_err;
};

static bool on_msg(void *data, const struct cv_etcd_reply *r)
{
    struct watched *w = data;
    w->created += r->created;
    for (size_t i = 0; i < r->n_events; i++) {
        if (r->events[i].deleted) w->deletes++;
        else w->puts++;
        w->last_rev = r->events[i].kv.mod_revision;
    }
    return true;
}

static void on_end(void *data, int err, const struct cv_etcd_reply *r)
{
    struct watched *w = data;
    w->ended = true;
    w->end_err = err;
}

Test(etcd_client, watch_and_resume)
{
    struct cv_etcd *c = client(E.endpoints);
    struct watched w = {0};
    cr_assert_eq(cv_etcd_watch(c, "/w/", 0, 1500, on_msg, on_end, &w), 0);
    RUN_UNTIL(w.created == 1);
    cr_assert_eq(call(c, "/v3/kv/put", cv_etcd_enc_put("/w/1", "a", 0)).err, 0);
    cr_assert_eq(call(c, "/v3/kv/put", cv_etcd_enc_put("/x/1", "not watched", 0)).err, 0);
    cr_assert_eq(call(c, "/v3/kv/deleterange", cv_etcd_enc_delete("/w/1")).err, 0);
    RUN_UNTIL(w.deletes == 1);
    cr_assert_eq(w.puts, 1);
    RUN_UNTIL(w.ended);
    cr_assert_eq(w.end_err, CV_ETIMEDOUT, "a watch ends after max_ms: %d", w.end_err);
    /* Changes while no watch runs are replayed by a watch resumed from the last revision + 1. */
    cr_assert_eq(call(c, "/v3/kv/put", cv_etcd_enc_put("/w/2", "b", 0)).err, 0);
    struct watched w2 = {0};
    cr_assert_eq(cv_etcd_watch(c, "/w/", w.last_rev + 1, 10000, on_msg, on_end, &w2), 0);
    RUN_UNTIL(w2.puts == 1);
    cr_assert_eq(w2.deletes, 0);
    close_client(c);
    RUN_UNTIL(w2.ended);
    cr_assert_eq(w2.end_err, CV_ECANCELED);
}

/* ---- registration ---------------------------------------------------------------------------------------- */

struct reg {
    struct cv_disc *d;
    bool conflict, closed;
};

static void on_conflict(void *data, const char *holder) { ((struct reg *)data)->conflict = true; }
static void on_closed(void *data) { ((struct reg *)data)->closed = true; }

static void reg_start(struct reg *r, const char *id, const char *advertise, unsigned ttl_ms)
{
    const char *eps[H_ETCD_MAX];
    char buf[128], *save = NULL, value[256];
    size_t n = 0;
    snprintf(buf, sizeof buf, "%s", E.endpoints);
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) eps[n++] = t;
    snprintf(value, sizeof value, "{\"advertise\":\"%s\",\"role\":\"node\"}", advertise);
    struct cv_disc_opts o = {.loop = &loop, .endpoints = eps, .n_endpoints = n, .prefix = "/cv", .ttl_ms = ttl_ms,
                             .kind = "nodes", .id = id, .value = value, .on_conflict = on_conflict, .data = r};
    cr_assert_eq(cv_disc_init(&o, &r->d), 0);
    cr_assert_eq(cv_disc_start(r->d), 0);
}

static void reg_close(struct reg *r)
{
    cv_disc_close(r->d, on_closed, r);
    RUN_UNTIL(r->closed);
}

Test(etcd_client, registration_conflict_takeover_revoke)
{
    struct reg a = {0}, dup = {0}, again = {0};
    reg_start(&a, "n1", "127.0.0.1:1000", 3000);
    RUN_UNTIL(cv_disc_registered(a.d));
    cr_assert(cv_disc_up(a.d));
    struct cv_etcd *c = client(E.endpoints);
    struct res r = call(c, "/v3/kv/range", cv_etcd_enc_range_key("/cv/nodes/n1"));
    cr_assert_eq(r.r.count, 1);
    cr_assert_neq(r.lease0, 0, "registered without a lease");
    cr_assert(strstr(r.value0, cv_disc_incarnation(a.d)), "value without our incarnation: %s", r.value0);
    /* Another process, another address, same id: a duplicate. */
    reg_start(&dup, "n1", "127.0.0.1:2000", 3000);
    RUN_UNTIL(dup.conflict);
    cr_assert_not(cv_disc_registered(dup.d));
    reg_close(&dup);
    /* Keepalives keep it beyond the TTL (waiting is the point here: the key must outlive 1.5 TTLs). */
    struct res before = call(c, "/v3/kv/range", cv_etcd_enc_range_key("/cv/nodes/n1"));
    run_for(4500);
    r = call(c, "/v3/kv/range", cv_etcd_enc_range_key("/cv/nodes/n1"));
    cr_assert_eq(r.r.count, 1, "registration lost although kept alive");
    cr_assert_eq(r.lease0, before.lease0);
    /* Deleted by hand while its lease lives: registered again at the next keepalive (a third of the TTL). */
    cr_assert_eq(call(c, "/v3/kv/deleterange", cv_etcd_enc_delete("/cv/nodes/n1")).err, 0);
    r = poll_value(c, "/cv/nodes/n1", cv_disc_incarnation(a.d));
    cr_assert_eq(r.lease0, before.lease0, "registered again under another lease");
    /* Same address (our restarted self after a crash): taken over under the new lease. */
    reg_start(&again, "n1", "127.0.0.1:1000", 3000);
    RUN_UNTIL(cv_disc_registered(again.d));
    r = call(c, "/v3/kv/range", cv_etcd_enc_range_key("/cv/nodes/n1"));
    cr_assert(strstr(r.value0, cv_disc_incarnation(again.d)));
    reg_close(&a); /* revokes a's lease: the key is again's now, it stays */
    r = call(c, "/v3/kv/range", cv_etcd_enc_range_key("/cv/nodes/n1"));
    cr_assert_eq(r.r.count, 1);
    reg_close(&again); /* a clean stop: the key goes at once */
    r = call(c, "/v3/kv/range", cv_etcd_enc_range_key("/cv/nodes/n1"));
    cr_assert_eq(r.r.count, 0, "key left after a clean stop");
    close_client(c);
}

Test(etcd_client, leader_key_never_older_term)
{
    struct reg a = {0};
    reg_start(&a, "n1", "127.0.0.1:1000", 3000);
    struct cv_etcd *c = client(E.endpoints);
    cv_disc_leader(a.d, "n1", 5);
    struct res r = poll_value(c, "/cv/leader", "\"node\":\"n1\"");
    cr_assert(strstr(r.value0, "\"term\":\"00000000000000000005\""), "%s", r.value0);
    cv_disc_leader(a.d, "n2", 3); /* older: ignored */
    cv_disc_leader(a.d, "n3", 12);
    r = poll_value(c, "/cv/leader", "n3");
    cr_assert(strstr(r.value0, "00000000000000000012"), "%s", r.value0);
    RUN_UNTIL(cv_disc_leader_settled(a.d));
    /* Another process with an older view (term 7) must not overwrite term 12. */
    struct reg b = {0};
    reg_start(&b, "n2", "127.0.0.1:1001", 3000);
    cv_disc_leader(b.d, "n2", 7);
    RUN_UNTIL(cv_disc_leader_settled(b.d));
    struct res l = call(c, "/v3/kv/range", cv_etcd_enc_range_key("/cv/leader"));
    cr_assert(strstr(l.value0, "n3"), "an older term overwrote the leader key: %s", l.value0);
    reg_close(&a);
    reg_close(&b);
    close_client(c);
}

/* ---- the members view ------------------------------------------------------------------------------------ */

struct view {
    int changes, removals;
    bool closed;
};

static void on_member(void *data, const char *id, const char *value)
{
    struct view *v = data;
    v->changes++;
    if (!value) v->removals++;
}

static void on_view_closed(void *data) { ((struct view *)data)->closed = true; }

static bool view_is(struct cv_members *m, const char *id, const char *value)
{
    const char *v = cv_members_get(m, id);
    return value ? v && !strcmp(v, value) : !v;
}

Test(etcd_client, members_view_follows_puts_deletes_and_expiry)
{
    struct cv_etcd *c = client(E.endpoints);
    cr_assert_eq(call(c, "/v3/kv/put", cv_etcd_enc_put("/m/nodes/a", "A1", 0)).err, 0);
    cr_assert_eq(call(c, "/v3/kv/put", cv_etcd_enc_put("/m/gates/g", "G", 0)).err, 0);
    const char *eps[1] = {E.endpoints};
    struct view v = {0};
    /* Short watches: most changes below land between two of them and must come through the resume. */
    struct cv_members_opts o = {.loop = &loop, .endpoints = eps, .n_endpoints = 1, .prefix = "/m/nodes/",
                                .watch_ms = 200, .on_change = on_member, .data = &v};
    struct cv_members *m;
    cr_assert_eq(cv_members_start(&o, &m), 0);
    RUN_UNTIL(cv_members_synced(m));
    cr_assert_eq(cv_members_count(m), 1);
    cr_assert(view_is(m, "a", "A1"));
    for (int i = 0; i < 10; i++) {
        char val[16];
        snprintf(val, sizeof val, "A%d", i + 2);
        cr_assert_eq(call(c, "/v3/kv/put", cv_etcd_enc_put("/m/nodes/a", val, 0)).err, 0);
        run_for(50);
    }
    RUN_UNTIL(view_is(m, "a", "A11"));
    struct res g = call(c, "/v3/lease/grant", cv_etcd_enc_grant(2));
    cr_assert_eq(call(c, "/v3/kv/put", cv_etcd_enc_put("/m/nodes/b", "B", g.r.id)).err, 0);
    RUN_UNTIL(view_is(m, "b", "B"));
    cr_assert_eq(call(c, "/v3/kv/deleterange", cv_etcd_enc_delete("/m/nodes/a")).err, 0);
    RUN_UNTIL(view_is(m, "a", NULL));
    RUN_UNTIL(view_is(m, "b", NULL)); /* its lease expired: a DELETE event */
    cr_assert_eq(v.removals, 2);
    cr_assert_eq(cv_members_count(m), 0);
    cr_assert(view_is(m, "g", NULL), "a key outside the prefix got in");
    cv_members_close(m, on_view_closed, &v);
    RUN_UNTIL(v.closed);
    close_client(c);
}

/* ---- failover -------------------------------------------------------------------------------------------- */

static void setup3(void)
{
    h_etcd_start(&E, 3);
    uv_loop_init(&loop);
    uv_timer_init(&loop, &deadline);
}

Test(etcd_failover, first_member_killed, .init = setup3, .fini = teardown, .timeout = 180)
{
    struct cv_etcd *c = client(E.endpoints);
    struct reg a = {0};
    reg_start(&a, "n1", "127.0.0.1:1000", 3000);
    RUN_UNTIL(cv_disc_registered(a.d));
    cr_assert_eq(call(c, "/v3/kv/put", cv_etcd_enc_put("/f/1", "a", 0)).err, 0);
    h_etcd_kill(&E, 0); /* the first endpoint, where every call went so far */
    /* If it led, the other two elect a leader first (etcd answers "no leader" meanwhile): the client
     * reports CV_EUNAVAIL until then, and its callers retry. */
    uint64_t until = uv_now(&loop) + 15000;
    struct res first;
    while ((first = call(c, "/v3/kv/put", cv_etcd_enc_put("/f/x", "b", 0))).err == CV_EUNAVAIL && uv_now(&loop) < until)
        run_for(100);
    cr_assert_eq(first.err, 0, "no put succeeded with one member of three down: %d", first.err);
    for (int i = 0; i < 20; i++) {
        char key[16];
        snprintf(key, sizeof key, "/f/%d", i);
        struct res p = call(c, "/v3/kv/put", cv_etcd_enc_put(key, "b", 0));
        cr_assert_eq(p.err, 0, "put %d failed with one member of three down: %d", i, p.err);
    }
    cr_assert_neq(strstr(cv_etcd_endpoint(c), "127.0.0.1:"), NULL);
    cr_assert_eq(strstr(E.endpoints, cv_etcd_endpoint(c) + 7) == E.endpoints, false,
                 "still on the killed first endpoint: %s", cv_etcd_endpoint(c));
    /* The registration's keepalives fail over too: the key outlives 1.5 TTLs. */
    run_for(4500);
    struct res r = call(c, "/v3/kv/range", cv_etcd_enc_range_key("/cv/nodes/n1"));
    cr_assert_eq(r.r.count, 1, "registration lost with one etcd member down");
    cr_assert(cv_disc_up(a.d));
    reg_close(&a);
    close_client(c);
}
