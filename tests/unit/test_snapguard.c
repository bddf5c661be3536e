/* snapguard: the raft_io that holds back an InstallSnapshot while our own snapshot is being written
 * (libraft 0.22.1 dereferences NULL when one arrives then). The inner io here is a script the test drives:
 * the race needs a snapshot write and a message to interleave at one precise point, which a real raft_uv
 * makes happen only now and then (test_objects_cluster's joining node saw it about once in ten runs). */
#include <criterion/criterion.h>
#include <string.h>

#include "consensus/snapguard.h"

static struct {
    raft_io_tick_cb tick;
    raft_io_recv_cb recv;
    struct raft_io_snapshot_put *put;
    raft_io_snapshot_put_cb put_cb;
    void *data_seen; /* inner.data when a call reached the inner io */
    raft_io_close_cb close_cb;
} in;

static char order[64]; /* what raft saw, in order: P = put done, A = append, I = install (its index) */
static struct raft_io *seen_io;
static struct cv_snapguard G;

static int inner_start(struct raft_io *io, unsigned ms, raft_io_tick_cb tick, raft_io_recv_cb recv)
{
    in.tick = tick;
    in.recv = recv;
    in.data_seen = io->data;
    return 0;
}

static int inner_put(struct raft_io *io, unsigned trailing, struct raft_io_snapshot_put *req,
                     const struct raft_snapshot *s, raft_io_snapshot_put_cb cb)
{
    in.put = req;
    in.put_cb = cb;
    in.data_seen = io->data;
    return 0;
}

static void inner_close(struct raft_io *io, raft_io_close_cb cb)
{
    in.close_cb = cb;
}

static void raft_recv(struct raft_io *io, struct raft_message *m)
{
    seen_io = io;
    size_t n = strlen(order);
    if (m->type == RAFT_INSTALL_SNAPSHOT) {
        order[n] = (char)('0' + m->install_snapshot.last_index);
        cr_assert_str_eq(m->server_address, "127.0.0.1:9");
        raft_free(m->install_snapshot.data.base);
        raft_configuration_close(&m->install_snapshot.conf);
    } else {
        order[n] = 'A';
    }
}

static void raft_tick(struct raft_io *io) { seen_io = io; }

static int raft_req_data; /* raft's req->data */

static void raft_put_done(struct raft_io_snapshot_put *req, int status)
{
    cr_assert_eq(req->data, &raft_req_data, "raft's own req->data is back in its callback");
    strcat(order, "P");
}

static void setup(void)
{
    memset(&in, 0, sizeof in);
    memset(&G, 0, sizeof G);
    order[0] = '\0';
    G.inner.version = 2;
    G.inner.start = inner_start;
    G.inner.snapshot_put = inner_put;
    G.inner.close = inner_close;
    cv_snapguard_init(&G, NULL);
    G.io.data = (void *)0x1234; /* raft_init sets it to the struct raft */
    cr_assert_eq(G.io.start(&G.io, 50, raft_tick, raft_recv), 0);
    cr_assert_eq(in.data_seen, (void *)0x1234, "raft_uv reads the struct raft from its own data");
}

/* The inner io delivers an InstallSnapshot with index k (k < 10), owning its buffers as raft_uv would. */
static void deliver_install(unsigned k)
{
    struct raft_message m = {.type = RAFT_INSTALL_SNAPSHOT, .server_id = 2, .server_address = "127.0.0.1:9"};
    m.install_snapshot.last_index = k;
    m.install_snapshot.data.base = raft_malloc(16);
    m.install_snapshot.data.len = 16;
    raft_configuration_init(&m.install_snapshot.conf);
    cr_assert_eq(raft_configuration_add(&m.install_snapshot.conf, 1, "127.0.0.1:1", RAFT_VOTER), 0);
    in.recv(&G.inner, &m);
}

static void deliver_append(void)
{
    struct raft_message m = {.type = RAFT_APPEND_ENTRIES, .server_id = 2, .server_address = "127.0.0.1:9"};
    in.recv(&G.inner, &m);
}

static void start_put(unsigned trailing, struct raft_io_snapshot_put *req)
{
    static struct raft_snapshot snap;
    req->data = &raft_req_data;
    cr_assert_eq(G.io.snapshot_put(&G.io, trailing, req, &snap, raft_put_done), 0);
}

TestSuite(snapguard, .init = setup);

Test(snapguard, messages_pass_through_with_the_outer_io)
{
    deliver_append();
    cr_assert_eq(seen_io, &G.io);
    deliver_install(3);
    in.tick(&G.inner);
    cr_assert_eq(seen_io, &G.io);
    cr_assert_str_eq(order, "A3");
}

Test(snapguard, an_install_during_our_snapshot_waits_until_it_is_written)
{
    struct raft_io_snapshot_put req;
    start_put(4, &req);
    deliver_install(5);
    deliver_append(); /* appends are not held */
    cr_assert_str_eq(order, "A", "the install is held while the snapshot is written");
    in.put_cb(in.put, 0);
    cr_assert_str_eq(order, "AP5", "raft's put callback first, then the held install");
    cr_assert_eq(G.held_total, 1);
    deliver_install(6); /* nothing in flight any more */
    cr_assert_str_eq(order, "AP56");
}

Test(snapguard, only_the_newest_held_install_is_delivered)
{
    struct raft_io_snapshot_put req;
    start_put(4, &req);
    deliver_install(5);
    deliver_install(7);
    in.put_cb(in.put, 0);
    cr_assert_str_eq(order, "P7");
    cr_assert_eq(G.dropped_total, 1); /* and freed: the sanitizer build checks */
}

Test(snapguard, installs_being_persisted_are_not_guarded)
{
    struct raft_io_snapshot_put req;
    start_put(0, &req); /* trailing 0: libraft persisting an install */
    deliver_install(5);
    cr_assert_str_eq(order, "5");
    in.put_cb(in.put, 0);
    cr_assert_str_eq(order, "5P");
}

/* raft's put callback that, as libraft does when the threshold was crossed again meanwhile, starts its
 * next snapshot write from inside the callback. */
static struct raft_io_snapshot_put next_req;
static void raft_put_done_and_take_again(struct raft_io_snapshot_put *req, int status)
{
    raft_put_done(req, status);
    start_put(4, &next_req);
}

Test(snapguard, an_install_also_waits_for_a_snapshot_raft_starts_from_the_callback)
{
    struct raft_io_snapshot_put req;
    static struct raft_snapshot snap;
    req.data = &raft_req_data;
    cr_assert_eq(G.io.snapshot_put(&G.io, 4, &req, &snap, raft_put_done_and_take_again), 0);
    deliver_install(5);
    in.put_cb(in.put, 0); /* the first write completes; raft starts the next one inside */
    cr_assert_str_eq(order, "P", "still held: our next snapshot is being written");
    in.put_cb(in.put, 0);
    cr_assert_str_eq(order, "PP5", "delivered once that one is written");
}

static bool closed;
static void raft_closed(struct raft_io *io)
{
    cr_assert_eq(io, &G.io);
    closed = true;
}

Test(snapguard, close_frees_a_held_install)
{
    struct raft_io_snapshot_put req;
    start_put(4, &req);
    deliver_install(5);
    G.io.close(&G.io, raft_closed);
    in.put_cb(in.put, RAFT_CANCELED); /* raft_uv cancels the write */
    cr_assert_str_eq(order, "P", "nothing delivered while closing");
    in.close_cb(&G.inner);
    cr_assert(closed);
    cr_assert_eq(G.dropped_total, 1);
}

/* ---- quiet heartbeats: the leader leaves a standby's redundant heartbeats unsent (consensus/quiet.h) */

static struct raft R; /* only its configuration is read */
static int inner_sends, send_status = -1;

static int inner_send(struct raft_io *io, struct raft_io_send *req, const struct raft_message *m, raft_io_send_cb cb)
{
    inner_sends++;
    return 0;
}

static void raft_send_done(struct raft_io_send *req, int status) { send_status = status; }

static raft_time inner_clock = 1000;
static raft_time inner_time(struct raft_io *io) { return inner_clock++; } /* raft's (the loop's) clock */

static void quiet_setup(void)
{
    setup();
    G.inner.send = inner_send;
    G.inner.time = inner_time;
    inner_sends = 0;
    send_status = -1;
    memset(&R, 0, sizeof R);
    raft_configuration_init(&R.configuration);
    cr_assert_eq(raft_configuration_add(&R.configuration, 1, "127.0.0.1:1", RAFT_VOTER), 0);
    cr_assert_eq(raft_configuration_add(&R.configuration, 2, "127.0.0.1:2", RAFT_VOTER), 0);
    cr_assert_eq(raft_configuration_add(&R.configuration, 3, "127.0.0.1:3", RAFT_STANDBY), 0);
    cv_quiet_init(&G.quiet, &R, 150, 600, true);
}

static void quiet_teardown(void)
{
    cv_quiet_fini(&G.quiet);
    raft_configuration_close(&R.configuration);
}

static struct raft_message ae(raft_id to, raft_term term, raft_index prev, unsigned n, raft_index commit)
{
    static struct raft_entry e[4];
    struct raft_message m = {.type = RAFT_APPEND_ENTRIES, .server_id = to, .server_address = "127.0.0.1:3"};
    m.append_entries = (struct raft_append_entries){
        .term = term, .prev_log_index = prev, .leader_commit = commit, .entries = n ? e : NULL, .n_entries = n};
    return m;
}

TestSuite(quiet, .init = quiet_setup, .fini = quiet_teardown);

Test(quiet, the_rule)
{
    struct cv_quiet_peer last = {.id = 3, .term = 2, .upto = 10, .commit = 9, .sent_ms = 1000};
    struct raft_message m = ae(3, 2, 10, 0, 9);
    cr_assert(cv_quiet_redundant(&last, &m.append_entries, 1100, 150), "same term, index and commit: nothing new");
    cr_assert_not(cv_quiet_redundant(&last, &m.append_entries, 1150, 150), "a keepalive has passed");
    cr_assert_not(cv_quiet_redundant(&last, &m.append_entries, 999, 150), "clock before the record");
    m = ae(3, 2, 10, 0, 10);
    cr_assert_not(cv_quiet_redundant(&last, &m.append_entries, 1100, 150), "a new commit index");
    m = ae(3, 3, 10, 0, 9);
    cr_assert_not(cv_quiet_redundant(&last, &m.append_entries, 1100, 150), "a new term");
    m = ae(3, 2, 8, 0, 9);
    cr_assert_not(cv_quiet_redundant(&last, &m.append_entries, 1100, 150), "the leader backed up (a rejection)");
    m = ae(3, 2, 10, 1, 9);
    cr_assert_not(cv_quiet_redundant(&last, &m.append_entries, 1100, 150), "entries always go");
    last.sent_ms = 0;
    m = ae(3, 2, 10, 0, 9);
    cr_assert_not(cv_quiet_redundant(&last, &m.append_entries, 1100, 150), "no record");
}

Test(quiet, only_standbys_redundant_heartbeats_stay_unsent)
{
    struct raft_message hb = ae(3, 2, 10, 0, 9), v = ae(2, 2, 10, 0, 9);
    cr_assert_not(cv_quiet_skip(&G.quiet, &hb, 1000), "the first heartbeat goes");
    cr_assert(cv_quiet_skip(&G.quiet, &hb, 1015));
    cr_assert(cv_quiet_skip(&G.quiet, &hb, 1149));
    cr_assert_not(cv_quiet_skip(&G.quiet, &hb, 1150), "one per keepalive");
    for (int i = 0; i < 3; i++) cr_assert_not(cv_quiet_skip(&G.quiet, &v, 1160 + i), "voters always get theirs");
    struct raft_message e = ae(3, 2, 10, 2, 9), after = ae(3, 2, 12, 0, 9), commit = ae(3, 2, 12, 0, 12);
    cr_assert_not(cv_quiet_skip(&G.quiet, &e, 1170), "entries go");
    cr_assert(cv_quiet_skip(&G.quiet, &after, 1185), "the heartbeat after them says nothing new");
    cr_assert_not(cv_quiet_skip(&G.quiet, &commit, 1200), "a new commit index goes");
    struct raft_message snap = {.type = RAFT_INSTALL_SNAPSHOT, .server_id = 3};
    cr_assert_not(cv_quiet_skip(&G.quiet, &snap, 1210));
    cr_assert_not(cv_quiet_skip(&G.quiet, &commit, 1215), "after another message type: starts over");
    cr_assert_eq(G.quiet.skipped, 3);
    cr_assert_eq(G.quiet.sent, 4);
}

static bool standby_settled(void *data, raft_id id) { return id == 3; }

Test(quiet, a_settled_standby_hears_a_keepalive_less_often)
{
    struct raft_message hb = ae(3, 2, 10, 0, 9);
    cr_assert_not(cv_quiet_skip(&G.quiet, &hb, 1000));
    cr_assert_not(cv_quiet_skip(&G.quiet, &hb, 1150), "not settled (no leader state here): every 150 ms");
    G.quiet.settled = standby_settled;
    cr_assert(cv_quiet_skip(&G.quiet, &hb, 1300), "settled: it knows it is a standby");
    cr_assert(cv_quiet_skip(&G.quiet, &hb, 1749));
    cr_assert_not(cv_quiet_skip(&G.quiet, &hb, 1750), "one per settled keepalive");
    struct raft_message commit = ae(3, 2, 10, 0, 10);
    cr_assert_not(cv_quiet_skip(&G.quiet, &commit, 1760), "news still go at once");
}

Test(quiet, a_voter_hears_every_other_heartbeat_only_while_the_log_stands_still)
{
    G.quiet.voter_keepalive_ms = 30;
    G.quiet.voter_idle_ms = 2000;
    struct raft_message hb = ae(2, 2, 10, 0, 9);
    cr_assert_not(cv_quiet_skip(&G.quiet, &hb, 1000));
    cr_assert_not(cv_quiet_skip(&G.quiet, &hb, 1015), "the log moved less than 2 s ago: every beat");
    cr_assert_not(cv_quiet_skip(&G.quiet, &hb, 3000), "idle now, but a keepalive has passed");
    cr_assert(cv_quiet_skip(&G.quiet, &hb, 3015), "idle: every other beat");
    cr_assert_not(cv_quiet_skip(&G.quiet, &hb, 3030));
    struct raft_message e = ae(2, 2, 10, 1, 9), after = ae(2, 2, 11, 0, 9);
    cr_assert_not(cv_quiet_skip(&G.quiet, &e, 3040), "entries go");
    cr_assert_not(cv_quiet_skip(&G.quiet, &after, 3055), "after an entry: every beat again");
    cr_assert_not(cv_quiet_skip(&G.quiet, &after, 3070));
    cr_assert_eq(G.quiet.voter_skipped, 1);
    cr_assert_eq(G.quiet.skipped, 0, "the standby counter is apart");
}

Test(quiet, disabled_sends_everything)
{
    cv_quiet_fini(&G.quiet);
    cv_quiet_init(&G.quiet, &R, 150, 600, false);
    struct raft_message hb = ae(3, 2, 10, 0, 9);
    for (int i = 0; i < 3; i++) cr_assert_not(cv_quiet_skip(&G.quiet, &hb, 1000 + i));
}

Test(quiet, the_shim_completes_a_skipped_send_as_sent)
{
    struct raft_io_send req;
    struct raft_message hb = ae(3, 2, 10, 0, 9);
    cr_assert_eq(G.io.send(&G.io, &req, &hb, raft_send_done), 0);
    cr_assert_eq(inner_sends, 1);
    cr_assert_eq(G.io.send(&G.io, &req, &hb, raft_send_done), 0);
    cr_assert_eq(inner_sends, 1, "the redundant heartbeat did not reach raft_uv");
    cr_assert_eq(send_status, 0, "raft was told it was sent");
}
