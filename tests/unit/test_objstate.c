/* Unit tests of src/objects/state.c: an object's durable state on a real runtime and libuv loop, with a
 * host whose load_state / save_state keep one object's state in memory and commit on the next loop
 * iteration (or when the test lets them: the commit is the host's business; what is tested is when the
 * runtime saves, what it holds, and what it does on failures). The state message is
 * cverse.rpc.ProposeResponse: index = the counter, leader = a string to grow it. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cverse/error.h"
#include "cverse/object.h"
#include "lsan_check.h"
#include "objects/registry.h"
#include "objects/runtime.h"
#include "rpc.pb-c.h"
#include "util/log.h"

typedef Cverse__Rpc__ProposeResponse Msg;
#define MSG_INIT CVERSE__RPC__PROPOSE_RESPONSE__INIT
#define MSG_DESC (&cverse__rpc__propose_response__descriptor)
#define NRES 256
#define NPEND 64

struct result {
    int done, status, order;
    uint64_t value;
};

struct pend {
    cv_state_saved_cb cb;
    void *data;
    uint8_t *buf;
    size_t len;
    uint64_t version;
    struct crec *calls; /* the call ids this save carries (copied) */
    size_t n_calls;
    uint32_t window;
    bool rems_set;
    struct rem *rems;
    size_t n_rems;
};

struct rem {
    char name[32];
    uint64_t due, period;
};

/* A committed call record as the host keeps it. */
struct crec {
    char id[64];
    int status;
    uint8_t resp[64];
    size_t len;
    uint64_t at_ms;
};
#define NCALLS 64

static struct {
    uv_loop_t loop;
    uv_idle_t commit;
    struct cv_runtime *rt;
    int closed;
    /* the host's store of object "c" */
    uint8_t *stored;
    size_t stored_len;
    uint64_t stored_version;
    bool has;
    int saves, loads, deactivated;
    int fail_with;    /* the next commits fail with this (0: they succeed) */
    bool hold;        /* commits wait for the test */
    struct pend p[NPEND];
    int np;
    struct crec calls[NCALLS]; /* committed call ids of "c" (the catalog's StateRecord.calls) */
    size_t n_calls;
    uint32_t last_window;
    struct rem rems[8]; /* the reminders of "c" as committed (db "reminders") */
    size_t n_rems;
    int reminded;       /* reminder hook runs */
    int created;        /* created hook runs */
    struct result res[NRES];
    int completed;
} g;

TestSuite(objstate, .fini = cv_lsan_check);

/* ---- the host ---- */

static void host_commit(uv_idle_t *idle)
{
    if (g.hold) return;
    uv_idle_stop(idle);
    int n = g.np;
    g.np = 0;
    for (int i = 0; i < n; i++) {
        struct pend *p = &g.p[i];
        if (!g.fail_with) {
            free(g.stored);
            g.stored = p->buf;
            g.stored_len = p->len;
            g.stored_version = p->version;
            g.has = true;
            for (size_t k = 0; k < p->n_calls; k++) {
                cr_assert_lt(g.n_calls, NCALLS);
                g.calls[g.n_calls++] = p->calls[k];
            }
            g.last_window = p->window;
            if (p->rems_set) {
                memcpy(g.rems, p->rems, p->n_rems * sizeof *g.rems);
                g.n_rems = p->n_rems;
            }
        } else {
            free(p->buf);
        }
        free(p->calls);
        free(p->rems);
        p->cb(p->data, g.fail_with, g.fail_with ? "refused by the test" : NULL);
    }
}

static int host_save(void *data, const char *type, const char *id, uint64_t version, uint8_t *state, size_t len,
                     const struct cv_save_extra *calls, cv_state_saved_cb cb, void *cb_data)
{
    cr_assert_lt(g.np, NPEND);
    cr_assert_not_null(calls);
    struct crec *cs = calloc(calls->n + 1, sizeof *cs);
    for (size_t i = 0; i < calls->n; i++) {
        const struct cv_call_record *r = &calls->calls[i];
        cr_assert_lt(strlen(r->id), sizeof cs[i].id);
        cr_assert_leq(r->len, sizeof cs[i].resp);
        snprintf(cs[i].id, sizeof cs[i].id, "%s", r->id);
        cs[i].status = r->status;
        memcpy(cs[i].resp, r->resp, r->len);
        cs[i].len = r->len;
        cs[i].at_ms = r->at_ms;
    }
    struct rem *rs = calloc(calls->n_reminders + 1, sizeof *rs);
    cr_assert_leq(calls->n_reminders, 8);
    for (size_t i = 0; i < calls->n_reminders; i++)
        rs[i] = (struct rem){.due = calls->reminders[i].due_ms, .period = calls->reminders[i].period_ms},
        snprintf(rs[i].name, sizeof rs[i].name, "%s", calls->reminders[i].name);
    g.p[g.np++] = (struct pend){cb, cb_data, state, len, version, cs, calls->n, calls->window, calls->reminders_set,
                                rs, calls->n_reminders};
    g.saves++;
    uv_idle_start(&g.commit, host_commit);
    return 0;
}

static int host_load(void *data, const char *type, const char *id, uint8_t **state, size_t *len, uint64_t *version)
{
    g.loads++;
    if (!g.has) return CV_ENOTFOUND;
    *state = malloc(g.stored_len ? g.stored_len : 1);
    memcpy(*state, g.stored, g.stored_len);
    *len = g.stored_len;
    *version = g.stored_version;
    return 0;
}

static int host_load_calls(void *data, const char *id, void (*call)(void *o, const struct cv_call_record *r),
                           void (*expired)(void *o, uint64_t hash), void *o)
{
    for (size_t i = 0; i < g.n_calls; i++) {
        struct cv_call_record r = {g.calls[i].id, g.calls[i].status, "", g.calls[i].resp, g.calls[i].len,
                                   g.calls[i].at_ms};
        call(o, &r);
    }
    return 0;
}

static int host_load_reminders(void *data, const char *id, void (*add)(void *o, const struct cv_reminder *r),
                               void *o)
{
    for (size_t i = 0; i < g.n_rems; i++) {
        struct cv_reminder r = {g.rems[i].name, g.rems[i].due, g.rems[i].period};
        add(o, &r);
    }
    return 0;
}

/* ---- the type ---- */

static void c_add(cv_object *o, const ProtobufCMessage *req, cv_reply *r)
{
    Msg *s = cv_object_state(o);
    s->index += ((const Msg *)req)->index;
    Msg resp = MSG_INIT;
    resp.index = s->index;
    cv_reply_ok(r, &resp.base);
}

static void c_get(cv_object *o, const ProtobufCMessage *req, cv_reply *r)
{
    Msg *s = cv_object_state(o);
    Msg resp = MSG_INIT;
    resp.index = s->index;
    cv_reply_ok(r, &resp.base);
}

/* Sets the string to `index` bytes ('x'), malloc'ed as the SDK asks, and marks the state dirty itself. */
static void c_grow(cv_object *o, const ProtobufCMessage *req, cv_reply *r)
{
    Msg *s = cv_object_state(o);
    size_t n = ((const Msg *)req)->index;
    char *str = malloc(n + 1);
    memset(str, 'x', n);
    str[n] = '\0';
    if (s->leader != protobuf_c_empty_string) free(s->leader);
    s->leader = str;
    cv_object_mark_dirty(o);
    Msg resp = MSG_INIT;
    resp.index = n;
    cv_reply_ok(r, &resp.base);
}

/* Adds now, answers 20 ms later (an asynchronous handler). */
struct later {
    uv_timer_t t;
    cv_reply *r;
    uint64_t value;
};

static void later_closed(uv_handle_t *h) { free(h->data); }

static void later_fire(uv_timer_t *t)
{
    struct later *l = t->data;
    Msg resp = MSG_INIT;
    resp.index = l->value;
    cv_reply_ok(l->r, &resp.base);
    uv_close((uv_handle_t *)t, later_closed);
}

static void c_add_later(cv_object *o, const ProtobufCMessage *req, cv_reply *r)
{
    Msg *s = cv_object_state(o);
    s->index += ((const Msg *)req)->index;
    struct later *l = calloc(1, sizeof *l);
    l->r = r;
    l->value = s->index;
    uv_timer_init(&g.loop, &l->t);
    l->t.data = l;
    uv_timer_start(&l->t, later_fire, 20, 0);
}

static void c_deactivated(cv_object *o) { g.deactivated++; }

/* Remind: sets reminder "r" due in `index` ms, every `term` ms (leader "clear": clears it). */
static void c_remind(cv_object *o, const ProtobufCMessage *req, cv_reply *r)
{
    const Msg *q = (const Msg *)req;
    int rv = strcmp(q->leader, "clear") == 0 ? cv_object_reminder_clear(o, "r")
                                              : cv_object_reminder_set(o, "r", q->index, q->term);
    Msg resp = MSG_INIT;
    resp.index = (uint64_t)-rv;
    cv_reply_ok(r, &resp.base);
}

/* The reminder hook adds 100 to the counter. */
static void c_reminder(cv_object *o, const char *name, uint64_t due)
{
    Msg *s = cv_object_state(o);
    s->index += 100;
    g.reminded++;
}

static const struct cv_method c_methods[] = {
    {"Add", MSG_DESC, MSG_DESC, c_add, CV_METHOD_WRITES},
    {"Get", MSG_DESC, MSG_DESC, c_get, 0},
    {"Grow", MSG_DESC, MSG_DESC, c_grow, 0},
    {"AddLater", MSG_DESC, MSG_DESC, c_add_later, CV_METHOD_WRITES},
    {"Remind", MSG_DESC, MSG_DESC, c_remind, CV_METHOD_WRITES},
};
static const struct cv_object_type on_write_type = {.name = "W", .deactivated = c_deactivated, .methods = c_methods,
                                                    .n_methods = 5, .state_message = MSG_DESC,
                                                    .persist = CV_PERSIST_ON_WRITE, .reminder = c_reminder};
static int c_created(cv_object *o)
{
    g.created++;
    return 0;
}

static const struct cv_object_type created_type = {.name = "K", .created = c_created, .methods = c_methods,
                                                   .n_methods = 2, .state_message = MSG_DESC,
                                                   .persist = CV_PERSIST_ON_WRITE};
static const struct cv_object_type periodic_type = {.name = "P", .deactivated = c_deactivated, .methods = c_methods,
                                                    .n_methods = 4, .state_message = MSG_DESC,
                                                    .persist = CV_PERSIST_PERIODIC, .save_interval_ms = 30};

/* ---- harness ---- */

static void closed_cb(struct cv_runtime *rt, void *data) { g.closed = 1; }

static void setup_with(const struct cv_type_policy *pol, size_t npol, size_t max)
{
    memset(&g, 0, sizeof g);
    cv_log_init("test", CV_LOG_ERROR + 1);
    cr_assert_eq(uv_loop_init(&g.loop), 0);
    uv_idle_init(&g.loop, &g.commit);
    struct cv_host_hooks hooks = {.load_state = host_load, .save_state = host_save, .load_calls = host_load_calls,
                                  .load_reminders = host_load_reminders};
    struct cv_runtime_opts o = {.node_id = "n1", .shards = 16, .hooks = &hooks, .policies = pol,
                                .created_explicit = true,
                                .n_policies = npol, .state_max_bytes = max};
    cr_assert_eq(cv_runtime_init(&g.loop, &o, &g.rt), 0);
    cr_assert_eq(cv_register_type(cv_runtime_registry(g.rt), &on_write_type), 0);
    cr_assert_eq(cv_register_type(cv_runtime_registry(g.rt), &periodic_type), 0);
    cr_assert_eq(cv_register_type(cv_runtime_registry(g.rt), &created_type), 0);
    cv_runtime_start(g.rt);
}

static void setup(void)
{
    setup_with(NULL, 0, 0);
}

static void finish(void)
{
    cv_runtime_close(g.rt, closed_cb, NULL);
    g.hold = false;
    while (!g.closed) uv_run(&g.loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&g.commit, NULL);
    uv_run(&g.loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&g.loop), 0, "a handle was left behind");
    free(g.stored);
}

static void done_cb(void *data, int status, const char *error, const uint8_t *resp, size_t len)
{
    struct result *r = data;
    r->done = 1;
    r->status = status;
    r->order = ++g.completed;
    if (status == 0) {
        Msg *m = cverse__rpc__propose_response__unpack(NULL, len, resp);
        cr_assert_not_null(m);
        r->value = m->index;
        cverse__rpc__propose_response__free_unpacked(m, NULL);
    }
}

/* Starts a call with a reliable-call id (NULL: none); returns its result slot. */
static struct result *call_id(const char *type, const char *method, uint64_t arg, const char *cid)
{
    static int next;
    if (g.completed == 0 && next >= NRES / 2) next = 0;
    struct result *r = &g.res[next++ % NRES];
    memset(r, 0, sizeof *r);
    Msg q = MSG_INIT;
    q.index = arg;
    uint8_t buf[32];
    size_t n = cverse__rpc__propose_response__pack(&q, buf);
    int rv = cv_runtime_call_id(g.rt, type, "c", method, buf, n, cid, done_cb, r);
    cr_assert_eq(rv, 0, "call %s.%s: %s", type, method, cv_errname(rv));
    return r;
}

static struct result *call(const char *type, const char *method, uint64_t arg)
{
    return call_id(type, method, arg, NULL);
}

static bool run_until(bool (*pred)(void), unsigned ms)
{
    uint64_t end = uv_now(&g.loop) + ms;
    while (!pred()) {
        if (uv_now(&g.loop) >= end) return false;
        uv_run(&g.loop, UV_RUN_NOWAIT);
        uv_update_time(&g.loop);
    }
    return true;
}

static struct result *watched;
static bool watched_done(void) { return watched->done; }
static bool no_pending(void) { return g.np == 0 && !uv_is_active((uv_handle_t *)&g.commit); }
static bool deactivated(void) { return g.deactivated > 0; }

static void wait_done(struct result *r)
{
    watched = r;
    cr_assert(run_until(watched_done, 5000), "call did not complete");
}

static uint64_t stored_value(void)
{
    cr_assert(g.has, "nothing stored");
    Msg *m = cverse__rpc__propose_response__unpack(NULL, g.stored_len, g.stored);
    cr_assert_not_null(m);
    uint64_t v = m->index;
    cverse__rpc__propose_response__free_unpacked(m, NULL);
    return v;
}

static bool gone(void)
{
    struct cv_object_info info;
    return cv_runtime_lookup(g.rt, "c", &info) == CV_ENOTFOUND;
}

/* ---- tests ---- */

Test(objstate, on_write_answer_waits_for_the_commit, .init = setup)
{
    g.hold = true;
    struct result *r = call("W", "Add", 5);
    uv_run(&g.loop, UV_RUN_NOWAIT);
    uv_run(&g.loop, UV_RUN_NOWAIT);
    cr_assert_eq(g.saves, 1, "the change was handed to the host");
    cr_assert(!r->done, "the answer left before its state was committed");
    g.hold = false;
    wait_done(r);
    cr_assert_eq(r->status, 0);
    cr_assert_eq(r->value, 5);
    cr_assert_eq(stored_value(), 5);
    cr_assert_eq(g.stored_version, 1);
    finish();
}

Test(objstate, a_read_only_method_never_commits, .init = setup)
{
    wait_done(call("W", "Add", 2));
    int saves = g.saves;
    for (int i = 0; i < 20; i++) {
        struct result *r = call("W", "Get", 0);
        wait_done(r);
        cr_assert_eq(r->value, 2);
    }
    cr_assert_eq(g.saves, saves, "Get committed something");
    finish();
}

Test(objstate, a_burst_commits_a_few_times_and_answers_in_order, .init = setup)
{
    g.hold = true;
    struct result *rs[40];
    for (int i = 0; i < 40; i++) rs[i] = call("W", i % 4 == 3 ? "Get" : "Add", 1);
    for (int i = 0; i < 5; i++) uv_run(&g.loop, UV_RUN_NOWAIT);
    for (int i = 0; i < 40; i++) cr_assert(!rs[i]->done, "answer %d left before any commit", i);
    g.hold = false;
    wait_done(rs[39]);
    cr_assert_leq(g.saves, 3, "%d saves for one burst: the held calls were not coalesced", g.saves);
    uint64_t adds = 0;
    for (int i = 0; i < 40; i++) {
        if (i % 4 != 3) adds++;
        cr_assert_eq(rs[i]->status, 0);
        cr_assert_eq(rs[i]->value, adds, "answer %d", i);
        cr_assert_eq(rs[i]->order, i + 1, "answers out of order");
    }
    cr_assert_eq(stored_value(), 30);
    finish();
}

Test(objstate, a_read_after_an_uncommitted_write_waits_too, .init = setup)
{
    wait_done(call("W", "Add", 1));
    g.hold = true;
    struct result *w = call("W", "Add", 1), *r = call("W", "Get", 0);
    for (int i = 0; i < 5; i++) uv_run(&g.loop, UV_RUN_NOWAIT);
    cr_assert(!w->done && !r->done, "a read saw state a crash could still lose");
    g.hold = false;
    wait_done(r);
    cr_assert_eq(r->value, 2);
    cr_assert_lt(w->order, r->order);
    finish();
}

Test(objstate, a_failed_save_fails_the_answers_and_starts_again_from_the_store, .init = setup)
{
    wait_done(call("W", "Add", 7));
    g.fail_with = CV_EUNAVAIL;
    struct result *a = call("W", "Add", 1), *b = call("W", "Add", 1);
    wait_done(b);
    cr_assert_eq(a->status, CV_EUNAVAIL);
    cr_assert_eq(b->status, CV_EUNAVAIL, "a call that ran on the uncommitted state must fail too");
    cr_assert(run_until(deactivated, 5000), "the object kept a memory the store lacks");
    g.fail_with = 0;
    struct result *c = call("W", "Add", 1);
    wait_done(c);
    cr_assert_eq(c->status, 0);
    cr_assert_eq(c->value, 8, "the new activation starts from the committed 7");
    cr_assert_geq(g.loads, 2);
    finish();
}

Test(objstate, a_call_in_flight_when_a_save_fails_is_answered_as_never_run, .init = setup)
{
    wait_done(call("W", "Add", 5));
    g.hold = true;
    g.fail_with = CV_EUNAVAIL;
    struct result *a = call("W", "Add", 1), *b = call("W", "AddLater", 1);
    for (int i = 0; i < 5; i++) uv_run(&g.loop, UV_RUN_NOWAIT); /* a's save in flight, b running */
    cr_assert(!a->done && !b->done);
    g.hold = false;
    uv_idle_start(&g.commit, host_commit); /* a's save fails while b is in flight */
    wait_done(b);
    cr_assert_eq(a->status, CV_EUNAVAIL);
    cr_assert_eq(b->status, CV_EUNAVAIL, "b ran on a memory that was dropped: it must not be acknowledged");
    g.fail_with = 0;
    struct result *c = call("W", "Get", 0);
    wait_done(c);
    cr_assert_eq(c->value, 5);
    finish();
}

Test(objstate, a_state_over_the_limit_is_refused)
{
    setup_with(NULL, 0, 100);
    wait_done(call("W", "Add", 3));
    struct result *r = call("W", "Grow", 50);
    wait_done(r);
    cr_assert_eq(r->status, 0, "50 bytes fit");
    r = call("W", "Grow", 200);
    wait_done(r);
    cr_assert_eq(r->status, CV_ESTATESIZE);
    cr_assert(run_until(deactivated, 5000));
    r = call("W", "Get", 0);
    wait_done(r);
    cr_assert_eq(r->value, 3, "the last committed state");
    finish();
}

Test(objstate, periodic_answers_at_once_and_saves_later_and_at_deactivation, .init = setup)
{
    g.hold = true;
    struct result *r = call("P", "Add", 4);
    wait_done(r);
    cr_assert_eq(r->value, 4, "periodic answers do not wait");
    cr_assert_eq(g.saves, 0);
    g.hold = false;
    cr_assert(run_until(no_pending, 5000));
    struct result *w = call("P", "Add", 0); /* runs the loop until the 30 ms timer saved */
    wait_done(w);
    uint64_t end = uv_now(&g.loop) + 5000;
    while (!g.has && uv_now(&g.loop) < end) uv_run(&g.loop, UV_RUN_ONCE);
    cr_assert(g.has, "the periodic save did not happen");
    cr_assert_eq(stored_value(), 4);
    wait_done(call("P", "Add", 2)); /* dirty again; the deactivation must save it */
    g.hold = true;
    cr_assert_eq(cv_runtime_deactivate(g.rt, "c"), 0);
    for (int i = 0; i < 5; i++) uv_run(&g.loop, UV_RUN_NOWAIT);
    struct cv_object_info info;
    cr_assert_eq(cv_runtime_lookup(g.rt, "c", &info), 0, "left the table before its final save committed");
    g.hold = false;
    cr_assert(run_until(no_pending, 5000));
    for (int i = 0; i < 5; i++) uv_run(&g.loop, UV_RUN_NOWAIT);
    cr_assert_eq(cv_runtime_lookup(g.rt, "c", &info), CV_ENOTFOUND);
    cr_assert_eq(stored_value(), 6);
    finish();
}

Test(objstate, activation_loads_the_stored_state, .init = setup)
{
    Msg m = MSG_INIT;
    m.index = 41;
    g.stored_len = cverse__rpc__propose_response__get_packed_size(&m);
    g.stored = malloc(g.stored_len);
    cverse__rpc__propose_response__pack(&m, g.stored);
    g.stored_version = 9;
    g.has = true;
    struct result *r = call("W", "Add", 1);
    wait_done(r);
    cr_assert_eq(r->value, 42);
    cr_assert_eq(g.stored_version, 10, "versions continue from the stored one");
    struct cv_object_state_info si;
    cr_assert_eq(cv_runtime_state_info(g.rt, "c", &si), 0);
    cr_assert_eq(si.persist, CV_PERSIST_ON_WRITE);
    cr_assert_eq(si.saved_version, 10);
    cr_assert_eq(((const Msg *)si.state)->index, 42);
    finish();
}

Test(objstate, an_undecodable_stored_state_fails_the_activation, .init = setup)
{
    g.stored = malloc(3);
    memcpy(g.stored, "\xff\xff\xff", 3);
    g.stored_len = 3;
    g.has = true;
    struct result *r = call("W", "Get", 0);
    wait_done(r);
    cr_assert_eq(r->status, CV_EPROTO);
    finish();
}

Test(objstate, config_makes_a_type_memory_only)
{
    static const struct cv_type_policy pol[] = {{"W", CV_PERSIST_NONE, 0}};
    setup_with(pol, 1, 0);
    struct result *r = call("W", "Add", 1);
    wait_done(r);
    cr_assert_eq(g.saves, 0);
    cr_assert_eq(g.loads, 0);
    cr_assert_eq(cv_runtime_type_persist(g.rt, &periodic_type, NULL), CV_PERSIST_PERIODIC);
    cr_assert_eq(cv_runtime_type_persist(g.rt, &on_write_type, NULL), CV_PERSIST_NONE);
    finish();
}

Test(objstate, registry_refuses_a_persisted_type_without_a_message)
{
    cv_registry *reg = cv_registry_new();
    struct cv_object_type bad = on_write_type;
    bad.state_message = NULL;
    cr_assert_eq(cv_register_type(reg, &bad), CV_EINVAL);
    bad = on_write_type;
    bad.state_size = 3;
    cr_assert_eq(cv_register_type(reg, &bad), CV_EINVAL, "state_size is not the message's");
    bad = on_write_type;
    bad.persist = (enum cv_persist)7;
    cr_assert_eq(cv_register_type(reg, &bad), CV_EINVAL);
    cr_assert_eq(cv_register_type(reg, &on_write_type), 0);
    cv_registry_free(reg);
}

/* ---- reliable calls (src/objects/calls.c) ---- */

static uint64_t state_index(void)
{
    struct cv_object_state_info si;
    cr_assert_eq(cv_runtime_state_info(g.rt, "c", &si), 0);
    return ((const Msg *)si.state)->index;
}

Test(objstate, a_repeated_call_id_gets_the_recorded_answer_without_running, .init = setup)
{
    struct result *a = call_id("W", "Add", 5, "id-1");
    struct result *b = call_id("W", "Add", 5, "id-1"); /* queued behind the first: a retry that raced it */
    wait_done(a);
    wait_done(b);
    cr_assert_eq(a->status, 0);
    cr_assert_eq(b->status, 0);
    cr_assert_eq(a->value, 5);
    cr_assert_eq(b->value, 5, "the recorded answer");
    cr_assert_eq(state_index(), 5, "the method ran once");
    cr_assert_eq(g.n_calls, 1, "the id was committed with the state change");
    cr_assert_str_eq(g.calls[0].id, "id-1");
    cr_assert_eq(g.last_window, CV_CALL_WINDOW_DEFAULT);
    struct result *c = call_id("W", "Add", 5, "id-2");
    wait_done(c);
    cr_assert_eq(c->value, 10, "another id runs");
    struct result *d = call_id("W", "Add", 5, NULL);
    wait_done(d);
    cr_assert_eq(d->value, 15, "no id: runs");
    cr_assert_eq(g.n_calls, 2);
    finish();
}

Test(objstate, a_new_activation_answers_a_committed_id_from_the_store, .init = setup)
{
    struct result *a = call_id("W", "Add", 7, "retry-me");
    wait_done(a);
    cr_assert_eq(a->value, 7);
    cr_assert_eq(cv_runtime_deactivate(g.rt, "c"), 0);
    cr_assert(run_until(deactivated, 2000));
    cr_assert(run_until(gone, 2000));
    cr_assert(run_until(no_pending, 2000));
    /* another owner (a move, a failover, a restart): the state and its call ids come from the store */
    struct result *b = call_id("W", "Add", 7, "retry-me");
    wait_done(b);
    cr_assert_eq(b->status, 0);
    cr_assert_eq(b->value, 7, "recorded answer");
    cr_assert_eq(state_index(), 7, "not run again");
    cr_assert_geq(g.loads, 2);
    finish();
}

Test(objstate, a_read_only_call_with_an_id_commits_nothing, .init = setup)
{
    struct result *a = call_id("W", "Get", 0, "g1");
    wait_done(a);
    cr_assert_eq(g.saves, 0, "a read-only method never commits, id or not");
    cr_assert_eq(g.n_calls, 0);
    finish();
}

Test(objstate, an_id_trimmed_from_the_window_is_refused_not_run)
{
    struct cv_type_policy pol[] = {{.type = "W", .persist = -1, .call_window = 2}};
    setup_with(pol, 1, 0);
    const char *ids[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) wait_done(call_id("W", "Add", 1, ids[i]));
    cr_assert_eq(state_index(), 3);
    struct result *r = call_id("W", "Add", 1, "a");
    wait_done(r);
    cr_assert_eq(r->status, CV_ECALLEXPIRED, "got %s", cv_errname(r->status));
    r = call_id("W", "Add", 1, "c");
    wait_done(r);
    cr_assert_eq(r->status, 0);
    cr_assert_eq(r->value, 3, "still in the window: recorded answer");
    cr_assert_eq(state_index(), 3);
    cr_assert_eq(g.last_window, 2, "the window goes to the store with the save");
    finish();
}

Test(objstate, a_memory_only_type_keeps_ids_for_the_activation)
{
    struct cv_type_policy pol[] = {{.type = "W", .persist = CV_PERSIST_NONE}};
    setup_with(pol, 1, 0);
    wait_done(call_id("W", "Add", 4, "m1"));
    struct result *r = call_id("W", "Add", 4, "m1");
    wait_done(r);
    cr_assert_eq(r->value, 4);
    cr_assert_eq(state_index(), 4, "ran once");
    cr_assert_eq(g.saves, 0, "nothing committed");
    finish();
}

/* ---- idle deactivation ---- */

static bool idle_swept(void)
{
    cv_runtime_deactivate_idle(g.rt);
    return g.deactivated > 0;
}

Test(objstate, an_idle_object_is_deactivated_saved_and_reactivated_by_the_next_call)
{
    struct cv_type_policy pol[] = {{.type = "P", .persist = -1, .idle_timeout_ms = 50},
                                   {.type = "W", .persist = -1, .idle_timeout_ms = -1}};
    setup_with(pol, 2, 0);
    cr_assert_eq(cv_runtime_type_idle(g.rt, &on_write_type), CV_IDLE_DEFAULT_MS, "persisted: 15 min by default");
    struct result *r = call("P", "Add", 3); /* periodic: answered at once, saved later */
    wait_done(r);
    cr_assert_eq(cv_runtime_deactivate_idle(g.rt), 0, "not idle yet");
    cr_assert(run_until(idle_swept, 2000), "never deactivated when idle");
    cr_assert(run_until(gone, 2000));
    cr_assert(run_until(no_pending, 2000));
    cr_assert_eq(stored_value(), 3, "its state was saved at the idle deactivation");
    r = call("P", "Add", 1);
    wait_done(r);
    cr_assert_eq(r->value, 4, "reactivated by the call, from the saved state");
    struct cv_runtime_counts c;
    cv_runtime_counts(g.rt, &c);
    cr_assert_eq(c.activations[CV_ACT_CALL], 2);
    cr_assert_eq(c.deactivations[CV_DEACT_IDLE], 1);
    finish();
}

Test(objstate, memory_only_types_never_go_idle_by_default)
{
    static const struct cv_type_policy pol[] = {{"W", CV_PERSIST_NONE, 0, 0, 0, -1}};
    setup_with(pol, 1, 0);
    cr_assert_eq(cv_runtime_type_idle(g.rt, &on_write_type), 0, "their state would be lost");
    finish();
}

/* ---- durable reminders (src/objects/reminders.c) ---- */

static struct result *remind_call(uint64_t due_in, uint64_t period, const char *leader)
{
    static struct result r;
    memset(&r, 0, sizeof r);
    Msg q = MSG_INIT;
    q.index = due_in;
    q.term = period;
    q.leader = (char *)leader;
    uint8_t buf[64];
    size_t n = cverse__rpc__propose_response__pack(&q, buf);
    cr_assert_eq(cv_runtime_call(g.rt, "W", "c", "Remind", buf, n, done_cb, &r), 0);
    return &r;
}

static bool reminded_once(void) { return g.reminded >= 1 && no_pending(); }
static bool reminded_twice(void) { return g.reminded >= 2 && g.n_rems == 1 && g.rems[0].due > (uint64_t)cv_now_ms(); }

Test(objstate, a_reminder_is_committed_fires_once_per_due_time_and_advances, .init = setup)
{
    struct result *r = remind_call(0, 0, "");
    wait_done(r);
    cr_assert_eq(r->value, 0, "set: %s", cv_errname(-(int)r->value));
    cr_assert_eq(g.n_rems, 1, "committed with the answer (on_write)");
    uint64_t due = g.rems[0].due;
    cr_assert_eq(cv_runtime_remind(g.rt, "W", "c", "r", due), 0);
    cr_assert(run_until(reminded_once, 2000));
    cr_assert_eq(g.n_rems, 0, "a one-shot reminder is gone once fired (committed)");
    cr_assert_eq(stored_value(), 100, "the hook's change is committed with it");
    cr_assert_eq(cv_runtime_remind(g.rt, "W", "c", "r", due), 0, "the scheduler fires it again (late catalog)");
    cr_assert(run_until(no_pending, 2000));
    cr_assert_eq(g.reminded, 1, "once per due time");
    /* periodic, with ticks missed: fires once, the next due time is after now */
    wait_done(remind_call(0, 1000, ""));
    due = g.rems[0].due - 5000; /* as if 5 s of ticks were missed while nobody owned it */
    g.rems[0].due = due;
    cr_assert_eq(cv_runtime_deactivate(g.rt, "c"), 0);
    cr_assert(run_until(gone, 2000));
    cr_assert(run_until(no_pending, 2000));
    g.rems[0].due = due; /* the deactivation saved nothing new, but be sure */
    cr_assert_eq(cv_runtime_remind(g.rt, "W", "c", "r", due), 0, "activates the object");
    cr_assert(run_until(reminded_twice, 2000), "reminded %d", g.reminded);
    cr_assert(run_until(no_pending, 2000));
    cr_assert(g.reminded == 2, "the missed ticks fire once: %d", g.reminded);
    cr_assert_eq(g.n_rems, 1);
    cr_assert_gt(g.rems[0].due, due + 5000 - 1, "advanced past now");
    cr_assert_eq((g.rems[0].due - due) % 1000, 0, "on the period's grid");
    struct cv_runtime_counts c;
    cv_runtime_counts(g.rt, &c);
    cr_assert_eq(c.activations[CV_ACT_REMINDER], 1);
    wait_done(remind_call(0, 0, "clear"));
    cr_assert_eq(g.n_rems, 0, "cleared and committed");
    finish();
}

Test(objstate, reminders_need_a_persisted_type)
{
    static const struct cv_type_policy pol[] = {{"W", CV_PERSIST_NONE, 0, 0, 0, 0}};
    setup_with(pol, 1, 0);
    struct result *r = remind_call(10, 0, "");
    wait_done(r);
    cr_assert_eq(-(int)r->value, CV_EUNAVAIL);
    finish();
}

/* ---- created, for persisted types ---- */

Test(objstate, created_runs_until_a_state_is_committed_and_never_again, .init = setup)
{
    /* activated by a call, never by the entry that created it (that activation was skipped) */
    struct result *r = call("K", "Get", 0);
    wait_done(r);
    cr_assert_eq(g.created, 1, "no state in the store: a new object");
    cr_assert(run_until(no_pending, 2000));
    cr_assert_eq(g.saves, 1, "one save records that it was created (even for a read)");
    cr_assert_eq(cv_runtime_deactivate(g.rt, "c"), 0);
    cr_assert(run_until(gone, 2000));
    r = call("K", "Add", 2);
    wait_done(r);
    cr_assert_eq(g.created, 1, "a state is stored: not new");
    cr_assert_eq(r->value, 2);
    finish();
}

Test(objstate, created_and_the_first_call_commit_together, .init = setup)
{
    struct result *r = call("K", "Add", 3);
    wait_done(r);
    cr_assert_eq(g.created, 1);
    cr_assert(run_until(no_pending, 2000));
    cr_assert_eq(g.saves, 1, "the hook's change and the call's in one save");
    cr_assert_eq(stored_value(), 3);
    finish();
}
