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
    cv_snapguard_init(&G);
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

/* raft's put callback that starts our next snapshot at once, as libraft does when the log moved past the
 * threshold while the first one was written (seen under on_write load: docs/durable-state.md). */
static struct raft_io_snapshot_put next_req;
static void raft_put_done_again(struct raft_io_snapshot_put *req, int status)
{
    strcat(order, "P");
    static struct raft_snapshot snap;
    next_req.data = &raft_req_data;
    cr_assert_eq(G.io.snapshot_put(&G.io, 4, &next_req, &snap, raft_put_done), 0);
}

Test(snapguard, an_install_waits_for_the_snapshot_raft_starts_from_its_callback)
{
    struct raft_io_snapshot_put req;
    static struct raft_snapshot snap;
    req.data = &raft_req_data;
    cr_assert_eq(G.io.snapshot_put(&G.io, 4, &req, &snap, raft_put_done_again), 0);
    deliver_install(5);
    in.put_cb(in.put, 0); /* the first write ends; raft's callback starts the next one */
    cr_assert_str_eq(order, "P", "the install is still held: another snapshot of ours is being written");
    in.put_cb(in.put, 0);
    cr_assert_str_eq(order, "PP5");
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
