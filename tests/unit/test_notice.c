/* Early commit notices (src/consensus/notice.c) over real sockets: a "leader" pool of peer clients sends
 * each other proposer of an applied entry one AppliedNotice with its own commands' seqs and results; the
 * proposer's watches fire once, with status and index; unwatched seqs and the leader's own commands are
 * left out. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "catalog.pb-c.h"
#include "consensus/notice.h"
#include "cverse/error.h"
#include "net/peers.h"
#include "net/rpc.h"
#include "rpc.pb-c.h"

#define N 3 /* node-1 leads; node-2 and node-3 propose */

struct proposer {
    struct cv_rpc_server *srv;
    struct cv_notices *k;
    int port;
    size_t notices;
};

struct fired {
    int count, status;
    uint64_t index;
};

static uv_loop_t loop;
static struct proposer prop[N];

static void on_request(void *data, struct cv_rpc_conn *conn, uint64_t id, const char *method,
                       const uint8_t *body, size_t len, uint32_t deadline_ms)
{
    struct proposer *p = data;
    (void)deadline_ms;
    cr_assert_str_eq(method, "catalog.applied");
    p->notices++;
    cv_notices_handle(p->k, conn, id, body, len);
}

static void on_fire(void *data, int status, uint64_t index)
{
    struct fired *f = data;
    f->count++;
    f->status = status;
    f->index = index;
}

static bool run_until(bool (*done)(void *), void *arg)
{
    for (int i = 0; i < 2000 && !done(arg); i++) uv_run(&loop, UV_RUN_ONCE);
    return done(arg);
}

static bool fired_count(void *arg)
{
    struct fired *f = arg;
    return f[0].count && f[1].count && f[2].count;
}

static void peers_closed(void *data)
{
    *(bool *)data = true;
}

static bool flag(void *arg)
{
    return *(bool *)arg;
}

Test(notice, the_leader_tells_each_proposer_its_commands_results_once)
{
    uv_loop_init(&loop);
    for (int i = 1; i < N; i++) {
        cr_assert_eq(cv_rpc_server_init(&loop, on_request, NULL, &prop[i], &prop[i].srv), 0);
        cr_assert_eq(cv_rpc_server_listen(prop[i].srv, "127.0.0.1:0"), 0);
        prop[i].port = cv_rpc_server_port(prop[i].srv);
    }
    prop[0].port = 1; /* the leader is never dialed */
    for (int i = 1; i < N; i++) {
        char self[16];
        snprintf(self, sizeof self, "node-%d", i + 1);
        cr_assert_eq(cv_notices_init(self, NULL, &prop[i].k), 0);
    }
    char a1[32], a2[32];
    snprintf(a1, sizeof a1, "127.0.0.1:%d", prop[1].port);
    snprintf(a2, sizeof a2, "127.0.0.1:%d", prop[2].port);
    const char *addrs[N] = {"", a1, a2};
    struct cv_peers *peers;
    const char *ids[N] = {"node-1", "node-2", "node-3"};
    struct cv_peers_opts po = {.loop = &loop, .addrs = addrs, .ids = ids, .n = N, .self = 0, .self_id = "node-1"};
    cr_assert_eq(cv_peers_init(&po, &peers), 0);
    struct cv_notices *leader;
    cr_assert_eq(cv_notices_init("node-1", peers, &leader), 0);

    /* node-2 watches seqs 10 and 11 (and unwatches 12), node-3 watches 20. */
    struct fired f[4] = {0};
    cr_assert_eq(cv_notices_watch(prop[1].k, 10, on_fire, &f[0]), 0);
    cr_assert_eq(cv_notices_watch(prop[1].k, 11, on_fire, &f[1]), 0);
    cr_assert_eq(cv_notices_watch(prop[2].k, 20, on_fire, &f[2]), 0);
    cr_assert_eq(cv_notices_watch(prop[1].k, 12, on_fire, &f[3]), 0);
    cv_notices_unwatch(prop[1].k, 12);

    /* The connections must be up for a notice to go (it is only a shortcut). */
    cv_peers_client(peers, 1);
    cv_peers_client(peers, 2);
    for (int i = 0; i < 2000 && !(cv_peers_up(peers, 1) && cv_peers_up(peers, 2)); i++)
        uv_run(&loop, UV_RUN_ONCE);
    cr_assert(cv_peers_up(peers, 1) && cv_peers_up(peers, 2), "the leader's peer connections came up");

    /* One entry: node-2's 10 (ok) and 12, the leader's own 30, node-3's 20 (CONFLICT), node-2's 11. */
    Cverse__Catalog__Batch batch = CVERSE__CATALOG__BATCH__INIT;
    batch.n_commands = 5;
    struct cv_cmd_result results[5] = {{"node-2", 10, 0}, {"node-2", 12, 0}, {"node-1", 30, 0},
                                       {"node-3", 20, CV_ECONFLICT}, {"node-2", 11, 0}};
    cv_notices_applied(leader, 77, &batch, results);
    cr_assert(run_until(fired_count, f), "every watched seq fired");
    cr_assert(f[0].count == 1 && f[0].status == 0 && f[0].index == 77);
    cr_assert(f[1].count == 1 && f[1].status == 0 && f[1].index == 77);
    cr_assert(f[2].count == 1 && f[2].status == CV_ECONFLICT && f[2].index == 77, "node-3 learns its result");
    cr_assert_eq(f[3].count, 0, "an unwatched seq does not fire");
    cr_assert(prop[1].notices == 1 && prop[2].notices == 1, "one notice per proposer and entry");

    /* The same entry again (a duplicate): the watches fired already. */
    cv_notices_applied(leader, 77, &batch, results);
    for (int i = 0; i < 2000 && prop[1].notices < 2; i++) uv_run(&loop, UV_RUN_ONCE);
    cr_assert_eq(prop[1].notices, 2);
    cr_assert(f[0].count == 1 && f[1].count == 1, "a watch fires at most once");

    cv_notices_free(leader);
    bool closed = false;
    cv_peers_close(peers, peers_closed, &closed);
    run_until(flag, &closed);
    for (int i = 1; i < N; i++) {
        cv_rpc_server_close(prop[i].srv, NULL);
        cv_notices_free(prop[i].k);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&loop), 0);
}
