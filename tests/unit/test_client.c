/* Unit tests of the client library (src/client) and of the `cverse` gate commands (src/cli), against a
 * fake gate: a thread in the test process that accepts on 127.0.0.1 (ephemeral port), reads frames with
 * blocking sockets and answers by script. The script is chosen by the called method's name (CallRequest
 * .method for "gate.call"), so one fake covers round trips, remote errors, silence, wrong ids, events,
 * hang-ups and garbage. The fake serves one connection at a time, which is all a blocking client uses.
 * Waiting is always bounded (poll with a deadline); nothing sleeps. The CLI is run as a real process
 * (CVERSE_CLI_BIN) with stdout/stderr on pipes. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cverse/client.h"
#include "cverse/error.h"
#include "net/frame.h"

#include "lsan_check.h"

extern char **environ;

#define TIMEOUT_MS 10000 /* per call in tests that expect an answer: generous for ASan */

/* ---- the fake gate ----------------------------------------------------------------------------------- */

struct fake {
    int lfd;
    int stop[2]; /* the test writes a byte to stop[1]; the thread polls stop[0] */
    pthread_t thread;
    char addr[32];
    pthread_mutex_t mu; /* guards the fields below (written by the thread, read by the test) */
    int conns;          /* connections accepted */
    int closed;         /* connections the fake closed */
    uint32_t last_deadline;
    uint64_t last_id;
    char last[256]; /* "call T/I/M", "create T/I", ... */
    int no_map;     /* gate.status answers without a map */
};

static struct fake F;

/* Criterion's asserts must not run on the fake's thread: an impossible condition there aborts the
 * worker process instead, which fails the test just as well. */
#define FAKE_CHECK(cond)                                                                          \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            fprintf(stderr, "fake gate: %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);    \
            abort();                                                                              \
        }                                                                                         \
    } while (0)

static void fake_record(uint64_t id, uint32_t deadline, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&F.mu);
    F.last_id = id;
    F.last_deadline = deadline;
    va_start(ap, fmt);
    vsnprintf(F.last, sizeof F.last, fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&F.mu);
}

static void write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0) return; /* the client went away: nothing to do */
        p += n;
        len -= (size_t)n;
    }
}

static void fake_send(int fd, uint64_t id, int kind, int status, const char *error, const ProtobufCMessage *body)
{
    Cverse__Rpc__Frame f = CVERSE__RPC__FRAME__INIT;
    uint8_t body_buf[4096], *buf;
    size_t len;
    f.id = id;
    f.kind = kind;
    f.status = status;
    f.error = (char *)(error ? error : "");
    f.method = kind == CVERSE__RPC__KIND__KIND_EVENT ? "catalog.shard_map" : "";
    if (body) {
        f.body.len = protobuf_c_message_pack(body, body_buf);
        f.body.data = body_buf;
    }
    FAKE_CHECK(cv_frame_encode(&f, &buf, &len) == 0);
    write_all(fd, buf, len);
    free(buf);
}

static void respond(int fd, uint64_t id, int status, const char *error, const ProtobufCMessage *body)
{
    fake_send(fd, id, CVERSE__RPC__KIND__KIND_RESPONSE, status, error, body);
}

/* "gate.call". Returns 0 to keep the connection, 1 to close it. */
static int fake_call(int fd, const Cverse__Rpc__Frame *f)
{
    Cverse__Rpc__CallRequest *cr = cverse__rpc__call_request__unpack(NULL, f->body.len, f->body.data);
    Cverse__Rpc__CallResponse resp = CVERSE__RPC__CALL_RESPONSE__INIT;
    char json[1024], err[300];
    int close_it = 0;
    FAKE_CHECK(cr != NULL);
    fake_record(f->id, f->deadline_ms, "call %s/%s/%s", cr->type, cr->id, cr->method);
    if (strcmp(cr->method, "Missing") == 0) {
        snprintf(err, sizeof err, "object not found: %s/%s", cr->type, cr->id);
        respond(fd, f->id, CV_ENOTFOUND, err, NULL);
    } else if (strcmp(cr->method, "Overdraw") == 0) { /* an application error, as a gate passes it on */
        Cverse__Rpc__Frame a = CVERSE__RPC__FRAME__INIT;
        uint8_t *buf;
        size_t len;
        a.id = f->id;
        a.kind = CVERSE__RPC__KIND__KIND_RESPONSE;
        a.status = CV_EAPP;
        a.error = "balance 5, withdraw 10";
        a.app_code = "INSUFFICIENT_FUNDS";
        a.app_details_type = "cverse.rpc.CreateResponse"; /* any message will do */
        a.app_details = (ProtobufCBinaryData){3, (uint8_t *)"\x0a\x01w"};
        FAKE_CHECK(cv_frame_encode(&a, &buf, &len) == 0);
        write_all(fd, buf, len);
        free(buf);
    } else if (strcmp(cr->method, "Busy") == 0) {
        respond(fd, f->id, CV_EBUSY, NULL, NULL); /* no message: the client uses cv_strerror */
    } else if (strcmp(cr->method, "Silent") == 0) {
        /* never answers: the caller's deadline must fire */
    } else if (strcmp(cr->method, "WrongId") == 0) {
        respond(fd, f->id + 7, 0, NULL, &resp.base);
    } else if (strcmp(cr->method, "BadStatus") == 0) {
        respond(fd, f->id, 5, "positive", NULL);
    } else if (strcmp(cr->method, "Hangup") == 0) {
        close_it = 1;
    } else if (strcmp(cr->method, "Bye") == 0) { /* answered, then closed: as the gate's idle timeout does */
        respond(fd, f->id, 0, NULL, &resp.base);
        close_it = 1;
    } else if (strcmp(cr->method, "Garbage") == 0) {
        static const uint8_t huge[4] = {0xff, 0xff, 0xff, 0xff}; /* a 4 GiB frame announced */
        write_all(fd, huge, sizeof huge);
    } else if (strcmp(cr->method, "Float") == 0) {
        resp.response_json = "{\"x\":0.1,\"s\":\"a,b:{c}\\\"\",\"l\":[1,{}],\"e\":{}}";
        respond(fd, f->id, 0, NULL, &resp.base);
    } else {
        /* Echo (also after an event, for "Event"): bytes back as bytes, JSON wrapped. */
        if (strcmp(cr->method, "Event") == 0)
            fake_send(fd, 0, CVERSE__RPC__KIND__KIND_EVENT, 0, NULL, &resp.base);
        resp.response = cr->request;
        if (*cr->request_json) {
            snprintf(json, sizeof json, "{\"type\":\"%s\",\"echo\":%s}", cr->type, cr->request_json);
            resp.response_json = json;
        }
        respond(fd, f->id, 0, NULL, &resp.base);
    }
    cverse__rpc__call_request__free_unpacked(cr, NULL);
    return close_it;
}

static void fake_create_delete(int fd, const Cverse__Rpc__Frame *f, int create)
{
    /* CreateRequest and DeleteRequest have the same fields and numbers. */
    Cverse__Rpc__CreateRequest *r = cverse__rpc__create_request__unpack(NULL, f->body.len, f->body.data);
    FAKE_CHECK(r != NULL);
    fake_record(f->id, f->deadline_ms, "%s %s/%s", create ? "create" : "delete", r->type, r->id);
    if (strcmp(r->type, "Unknown") == 0) {
        respond(fd, f->id, CV_ENOTFOUND, "unknown object type 'Unknown'", NULL);
    } else if (create) {
        Cverse__Rpc__CreateResponse cresp = CVERSE__RPC__CREATE_RESPONSE__INIT;
        cresp.id = r->id;
        respond(fd, f->id, 0, NULL, &cresp.base);
    } else {
        Cverse__Rpc__DeleteResponse dresp = CVERSE__RPC__DELETE_RESPONSE__INIT;
        dresp.success = 1;
        respond(fd, f->id, 0, NULL, &dresp.base);
    }
    cverse__rpc__create_request__free_unpacked(r, NULL);
}

/* 8 shards: n1 owns 0-2 and 6, n2 3-4, shard 5 unassigned, shard 7 owned by "ghost" (not a listed node);
 * n3 owns nothing. n1 is the leader. */
static void fake_status(int fd, const Cverse__Rpc__Frame *f)
{
    static char *owners[] = {"n1", "n1", "n1", "n2", "n2", "", "n1", "ghost"};
    Cverse__Rpc__NodeAddr n1 = CVERSE__RPC__NODE_ADDR__INIT, n2 = CVERSE__RPC__NODE_ADDR__INIT,
                          n3 = CVERSE__RPC__NODE_ADDR__INIT;
    Cverse__Rpc__NodeAddr *nodes[] = {&n1, &n2, &n3};
    Cverse__Rpc__GateInfo g1 = CVERSE__RPC__GATE_INFO__INIT, *gates[] = {&g1};
    Cverse__Rpc__ShardMap map = CVERSE__RPC__SHARD_MAP__INIT;
    Cverse__Rpc__StatusResponse st = CVERSE__RPC__STATUS_RESPONSE__INIT;
    fake_record(f->id, f->deadline_ms, "status");
    n1.id = "n1", n1.advertise_addr = "127.0.0.1:1001", n1.alive = 1, n1.role = "voter";
    n1.http_addr = "127.0.0.1:2001";
    n2.id = "n2", n2.advertise_addr = "127.0.0.1:1002", n2.alive = 0, n2.role = "standby";
    n3.id = "n3", n3.advertise_addr = "127.0.0.1:1003", n3.alive = 1, n3.role = "spare";
    g1.id = "g1", g1.grpc_addr = "127.0.0.1:3001", g1.http_addr = "127.0.0.1:4001", g1.connected = 1;
    map.applied_index = 42, map.shards = 8, map.n_owners = 8, map.owners = owners;
    map.n_nodes = 3, map.nodes = nodes, map.leader = "n1", map.term = 3;
    pthread_mutex_lock(&F.mu);
    st.map = F.no_map ? NULL : &map;
    pthread_mutex_unlock(&F.mu);
    st.n_gates = 1, st.gates = gates, st.gate_id = "g1";
    respond(fd, f->id, 0, NULL, &st.base);
}

/* A node answering a call for a shard it does not own (for cv_client_rpc's error body). */
static void fake_redirect(int fd, const Cverse__Rpc__Frame *f)
{
    Cverse__Rpc__Redirect r = CVERSE__RPC__REDIRECT__INIT;
    fake_record(f->id, f->deadline_ms, "redirect");
    r.applied_index = 99, r.owner = "n2", r.shard = 3;
    respond(fd, f->id, CV_EREDIRECT, "shard 3 is owned by n2", &r.base);
}

/* Returns 1 when the connection must be closed. */
static int fake_handle(int fd, const Cverse__Rpc__Frame *f)
{
    FAKE_CHECK(f->kind == CVERSE__RPC__KIND__KIND_REQUEST);
    if (strcmp(f->method, "gate.call") == 0) return fake_call(fd, f);
    if (strcmp(f->method, "gate.create") == 0) fake_create_delete(fd, f, 1);
    else if (strcmp(f->method, "gate.delete") == 0) fake_create_delete(fd, f, 0);
    else if (strcmp(f->method, "gate.status") == 0) fake_status(fd, f);
    else if (strcmp(f->method, "objects.call") == 0) fake_redirect(fd, f);
    else respond(fd, f->id, CV_ENOTFOUND, "unknown method", NULL);
    return 0;
}

/* Waits for fd or the stop pipe: 1 if fd is readable, 0 when told to stop. */
static int fake_wait(int fd)
{
    struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = F.stop[0], .events = POLLIN}};
    for (;;) {
        int n = poll(p, 2, -1);
        if (n < 0 && errno == EINTR) continue;
        FAKE_CHECK(n > 0);
        if (p[1].revents) return 0;
        return 1;
    }
}

/* Serves one connection until the peer closes, a script closes it, or the test stops the fake. */
static int fake_serve(int cfd)
{
    struct cv_frame_reader rd;
    uint8_t buf[8192];
    int running = 1, done = 0;
    cv_frame_reader_init(&rd, 0);
    while (!done && (running = fake_wait(cfd))) {
        ssize_t n = recv(cfd, buf, sizeof buf, 0);
        if (n <= 0) break;
        FAKE_CHECK(cv_frame_reader_feed(&rd, buf, (size_t)n) == 0);
        Cverse__Rpc__Frame *f;
        while (!done && cv_frame_reader_next(&rd, &f) == 1) {
            done = fake_handle(cfd, f);
            cverse__rpc__frame__free_unpacked(f, NULL);
        }
    }
    cv_frame_reader_free(&rd);
    close(cfd);
    pthread_mutex_lock(&F.mu);
    F.closed++;
    pthread_mutex_unlock(&F.mu);
    return running;
}

static void *fake_main(void *arg)
{
    (void)arg;
    while (fake_wait(F.lfd)) {
        int cfd = accept4(F.lfd, NULL, NULL, SOCK_CLOEXEC);
        if (cfd < 0) continue;
        pthread_mutex_lock(&F.mu);
        F.conns++;
        pthread_mutex_unlock(&F.mu);
        if (!fake_serve(cfd)) break;
    }
    return NULL;
}

/* A socket bound to 127.0.0.1 on an ephemeral port; its "127.0.0.1:port" goes to addr. */
static int bind_loopback(char *addr, size_t len)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0, "bind: %s", strerror(errno));
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    snprintf(addr, len, "127.0.0.1:%u", ntohs(sa.sin_port));
    return fd;
}

static void fake_start(void)
{
    memset(&F, 0, sizeof F);
    pthread_mutex_init(&F.mu, NULL);
    F.lfd = bind_loopback(F.addr, sizeof F.addr);
    cr_assert_eq(listen(F.lfd, 16), 0);
    cr_assert_eq(pipe2(F.stop, O_CLOEXEC), 0);
    cr_assert_eq(pthread_create(&F.thread, NULL, fake_main, NULL), 0);
}

static void fake_stop(void)
{
    cr_assert_eq(write(F.stop[1], "x", 1), 1);
    pthread_join(F.thread, NULL);
    close(F.lfd);
    close(F.stop[0]);
    close(F.stop[1]);
    pthread_mutex_destroy(&F.mu);
    cv_lsan_check();
}

static int fake_conns(void)
{
    pthread_mutex_lock(&F.mu);
    int n = F.conns;
    pthread_mutex_unlock(&F.mu);
    return n;
}

static void expect_last(const char *want)
{
    pthread_mutex_lock(&F.mu);
    char got[256];
    strcpy(got, F.last);
    pthread_mutex_unlock(&F.mu);
    cr_assert_str_eq(got, want);
}

TestSuite(client, .init = fake_start, .fini = fake_stop);
TestSuite(cli, .init = fake_start, .fini = fake_stop);

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static cv_client *connect_fake(void)
{
    cv_client *c = NULL;
    cr_assert_eq(cv_client_connect(F.addr, TIMEOUT_MS, &c), 0);
    cr_assert_not_null(c);
    return c;
}

/* ---- client library ------------------------------------------------------------------------------- */

Test(client, typed_raw_and_json_round_trips)
{
    cv_client *c = connect_fake();
    char err[256];
    /* Any message works for the echo; CreateRequest is at hand. */
    Cverse__Rpc__CreateRequest req = CVERSE__RPC__CREATE_REQUEST__INIT;
    req.type = "payload-type";
    req.id = "payload-id";
    ProtobufCMessage *resp = NULL;
    cr_assert_eq(cv_client_call(c, "Counter", "c-1", "Echo", &req.base, &cverse__rpc__create_request__descriptor,
                                &resp, TIMEOUT_MS, err, sizeof err),
                 0, "%s", err);
    Cverse__Rpc__CreateRequest *back = (Cverse__Rpc__CreateRequest *)resp;
    cr_assert_str_eq(back->type, "payload-type");
    cr_assert_str_eq(back->id, "payload-id");
    protobuf_c_message_free_unpacked(resp, NULL);
    expect_last("call Counter/c-1/Echo");

    uint8_t *raw;
    size_t raw_len;
    cr_assert_eq(cv_client_call_raw(c, "Counter", "c-2", "Echo", "\x01\x02\x00\x03", 4, &raw, &raw_len,
                                    TIMEOUT_MS, err, sizeof err),
                 0, "%s", err);
    cr_assert_eq(raw_len, 4);
    cr_assert_eq(memcmp(raw, "\x01\x02\x00\x03", 4), 0);
    free(raw);

    char *json;
    cr_assert_eq(cv_client_call_json(c, "Counter", "c-3", "Echo", "{\"n\":\"5\"}", &json, TIMEOUT_MS, err,
                                     sizeof err),
                 0, "%s", err);
    cr_assert_str_eq(json, "{\"type\":\"Counter\",\"echo\":{\"n\":\"5\"}}");
    free(json);
    /* No request JSON means "{}", still sent as JSON so the answer is JSON too. */
    cr_assert_eq(cv_client_call_json(c, "Counter", "c-3", "Echo", NULL, &json, 0, err, sizeof err), 0);
    cr_assert_str_eq(json, "{\"type\":\"Counter\",\"echo\":{}}");
    free(json);

    /* Ignoring the response is allowed. */
    cr_assert_eq(cv_client_call(c, "Counter", "c-4", "Echo", NULL, NULL, NULL, 0, err, sizeof err), 0);
    cr_assert_eq(fake_conns(), 1, "every call used the one connection");
    cv_client_close(c);
}

Test(client, requests_carry_fresh_ids_and_the_deadline)
{
    cv_client *c = connect_fake();
    uint64_t prev = 0;
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(cv_client_call(c, "T", "i", "Echo", NULL, NULL, NULL, 1234, NULL, 0), 0);
        pthread_mutex_lock(&F.mu);
        uint64_t id = F.last_id;
        uint32_t deadline = F.last_deadline;
        pthread_mutex_unlock(&F.mu);
        cr_assert_gt(id, prev, "ids must be fresh: %llu after %llu", (unsigned long long)id,
                     (unsigned long long)prev);
        cr_assert_eq(deadline, 1234);
        prev = id;
    }
    cr_assert_eq(cv_client_call(c, "T", "i", "Echo", NULL, NULL, NULL, 0, NULL, 0), 0);
    pthread_mutex_lock(&F.mu);
    cr_assert_eq(F.last_deadline, 0, "no deadline is sent as 0");
    pthread_mutex_unlock(&F.mu);
    cv_client_close(c);
}

Test(client, create_delete_status)
{
    cv_client *c = connect_fake();
    char err[256];
    cr_assert_eq(cv_client_create(c, "SimpleCounter", "Counter-001", TIMEOUT_MS, err, sizeof err), 0, "%s", err);
    expect_last("create SimpleCounter/Counter-001");
    cr_assert_eq(cv_client_delete(c, "SimpleCounter", "Counter-001", TIMEOUT_MS, err, sizeof err), 0, "%s", err);
    expect_last("delete SimpleCounter/Counter-001");
    cr_assert_eq(cv_client_create(c, "Unknown", "x", TIMEOUT_MS, err, sizeof err), CV_ENOTFOUND);
    cr_assert_str_eq(err, "unknown object type 'Unknown'");

    Cverse__Rpc__StatusResponse *st = NULL;
    cr_assert_eq(cv_client_status(c, &st, TIMEOUT_MS, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(st->gate_id, "g1");
    cr_assert_not_null(st->map);
    cr_assert_eq(st->map->shards, 8);
    cr_assert_eq(st->map->n_nodes, 3);
    cr_assert_str_eq(st->map->leader, "n1");
    cr_assert_str_eq(st->map->owners[3], "n2");
    cr_assert_eq(st->n_gates, 1);
    cr_assert(st->gates[0]->connected);
    cverse__rpc__status_response__free_unpacked(st, NULL);
    cv_client_close(c);
}

Test(client, remote_errors_keep_the_connection)
{
    cv_client *c = connect_fake();
    char err[256];
    ProtobufCMessage *resp = (ProtobufCMessage *)&err; /* must be reset to NULL */
    cr_assert_eq(cv_client_call(c, "SimpleCounter", "nope", "Missing", NULL, &cverse__rpc__call_response__descriptor,
                                &resp, TIMEOUT_MS, err, sizeof err),
                 CV_ENOTFOUND);
    cr_assert_null(resp);
    cr_assert_str_eq(err, "object not found: SimpleCounter/nope");

    char *json = (char *)err;
    cr_assert_eq(cv_client_call_json(c, "T", "i", "Busy", "{}", &json, TIMEOUT_MS, err, sizeof err), CV_EBUSY);
    cr_assert_null(json);
    cr_assert_str_eq(err, cv_strerror(CV_EBUSY), "an empty remote message falls back to cv_strerror");

    /* A tiny buffer truncates, never overflows. */
    char small[7];
    cr_assert_eq(cv_client_call(c, "T", "i", "Missing", NULL, NULL, NULL, 0, small, sizeof small), CV_ENOTFOUND);
    cr_assert_str_eq(small, "object");
    cr_assert_eq(cv_client_call(c, "T", "i", "Missing", NULL, NULL, NULL, 0, NULL, 0), CV_ENOTFOUND);

    cr_assert_eq(cv_client_call(c, "T", "i", "Echo", NULL, NULL, NULL, TIMEOUT_MS, err, sizeof err), 0);
    cr_assert_eq(fake_conns(), 1, "remote errors do not break the connection");
    cv_client_close(c);
}

Test(client, application_errors_carry_code_and_details)
{
    cv_client *c = connect_fake();
    char err[256];
    cr_assert_null(cv_client_app_error(c), "no call yet");
    char *json = NULL;
    cr_assert_eq(cv_client_call_json(c, "Wallet", "w", "Overdraw", "{}", &json, TIMEOUT_MS, err, sizeof err), CV_EAPP);
    cr_assert_null(json);
    cr_assert_str_eq(err, "balance 5, withdraw 10");
    const struct cv_app_error *e = cv_client_app_error(c);
    cr_assert_not_null(e);
    cr_assert_str_eq(e->code, "INSUFFICIENT_FUNDS");
    cr_assert_str_eq(e->message, "balance 5, withdraw 10");
    cr_assert_str_eq(e->details_type, "cverse.rpc.CreateResponse");
    cr_assert_eq(e->details_len, 3);
    cr_assert_eq(memcmp(e->details, "\x0a\x01w", 3), 0);
    cr_assert_eq(cv_err_http(CV_EAPP), 422);
    cr_assert_eq(cv_err_retryable(CV_EAPP) + cv_err_reroute(CV_EAPP), 0, "it ran: never retried nor rerouted");
    /* The next call forgets it; the connection stays usable. */
    cr_assert_eq(cv_client_call(c, "T", "i", "Missing", NULL, NULL, NULL, TIMEOUT_MS, err, sizeof err), CV_ENOTFOUND);
    cr_assert_null(cv_client_app_error(c));
    cr_assert_eq(fake_conns(), 1);
    cv_client_close(c);
}

Test(client, deadline_fails_the_call_then_the_client_redials)
{
    cv_client *c = connect_fake();
    char err[256];
    uint8_t *raw = (uint8_t *)err;
    size_t raw_len = 99;
    uint64_t t0 = mono_ms();
    cr_assert_eq(cv_client_call_raw(c, "T", "i", "Silent", NULL, 0, &raw, &raw_len, 200, err, sizeof err),
                 CV_ETIMEDOUT);
    uint64_t took = mono_ms() - t0;
    cr_assert_null(raw);
    cr_assert_eq(raw_len, 0);
    cr_assert_str_eq(err, "no response within 450 ms", "got '%s'", err);
    cr_assert_geq(took, 200 + CV_CLIENT_GRACE_MS, "gave up after %llu ms", (unsigned long long)took);
    cr_assert_lt(took, 200 + CV_CLIENT_GRACE_MS + 3000, "took %llu ms", (unsigned long long)took);
    pthread_mutex_lock(&F.mu);
    cr_assert_eq(F.last_deadline, 200, "the gate is told the caller's deadline");
    pthread_mutex_unlock(&F.mu);

    /* The timed-out call's late answer must never be taken for this one: a new connection is used. */
    cr_assert_eq(cv_client_call(c, "T", "i", "Echo", NULL, NULL, NULL, TIMEOUT_MS, err, sizeof err), 0, "%s", err);
    cr_assert_eq(fake_conns(), 2);
    cv_client_close(c);
}

Test(client, connection_refused_and_bad_addresses)
{
    char addr[32];
    cv_client *c = (cv_client *)addr;
    /* Bound but not listening: the kernel refuses connections, and nobody else can take the port. */
    int fd = bind_loopback(addr, sizeof addr);
    errno = 0;
    cr_assert_eq(cv_client_connect(addr, TIMEOUT_MS, &c), CV_EUNAVAIL);
    cr_assert_eq(errno, ECONNREFUSED, "errno says why: %s", strerror(errno));
    cr_assert_null(c);
    close(fd);

    cr_assert_eq(cv_client_connect("gate.example:47101", TIMEOUT_MS, &c), CV_EINVAL, "names are not resolved");
    cr_assert_eq(cv_client_connect("127.0.0.1", TIMEOUT_MS, &c), CV_EINVAL, "the port is required");
    cr_assert_eq(cv_client_connect("127.0.0.1:0", TIMEOUT_MS, &c), CV_EINVAL);
    cr_assert_null(c);

    /* localhost is accepted (mapped to 127.0.0.1). */
    snprintf(addr, sizeof addr, "localhost:%s", strrchr(F.addr, ':') + 1);
    cr_assert_eq(cv_client_connect(addr, TIMEOUT_MS, &c), 0);
    cr_assert_eq(cv_client_call(c, "T", "i", "Echo", NULL, NULL, NULL, TIMEOUT_MS, NULL, 0), 0);
    cv_client_close(c);
    cv_client_close(NULL);
}

Test(client, lost_connection_then_refused_redial)
{
    /* A listener of our own that never accepts: the client connects into its backlog. */
    char addr[32], err[256];
    int lfd = bind_loopback(addr, sizeof addr);
    cr_assert_eq(listen(lfd, 4), 0);
    cv_client *c;
    cr_assert_eq(cv_client_connect(addr, TIMEOUT_MS, &c), 0);
    /* Closing the listener resets the queued connection; then the port is bound again without
     * listening, so it stays ours and refuses: the call's redial must fail with a clear message. */
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    cr_assert_eq(getsockname(lfd, (struct sockaddr *)&ss, &sl), 0);
    close(lfd);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)&ss, sl), 0, "rebind: %s", strerror(errno));
    cr_assert_eq(cv_client_call(c, "T", "i", "Echo", NULL, NULL, NULL, TIMEOUT_MS, err, sizeof err),
                 CV_EUNAVAIL);
    cr_assert(strstr(err, "connection to 127.0.0.1:"), "%s", err); /* closed, reset or lost */
    cr_assert_eq(cv_client_call(c, "T", "i", "Echo", NULL, NULL, NULL, TIMEOUT_MS, err, sizeof err),
                 CV_EUNAVAIL);
    cr_assert(strstr(err, "cannot connect to 127.0.0.1:") && strstr(err, "refused"), "%s", err);
    close(fd);
    cv_client_close(c);
}

Test(client, wrong_response_id_is_a_protocol_error)
{
    cv_client *c = connect_fake();
    char err[256];
    cr_assert_eq(cv_client_call(c, "T", "i", "WrongId", NULL, NULL, NULL, TIMEOUT_MS, err, sizeof err),
                 CV_EPROTO);
    cr_assert(strstr(err, "answered request"), "%s", err);
    cr_assert_eq(cv_client_call(c, "T", "i", "BadStatus", NULL, NULL, NULL, TIMEOUT_MS, err, sizeof err),
                 CV_EPROTO);
    cr_assert(strstr(err, "invalid status 5"), "%s", err);
    /* Each protocol error dropped the connection; the client recovers on its own. */
    cr_assert_eq(cv_client_call(c, "T", "i", "Echo", NULL, NULL, NULL, TIMEOUT_MS, err, sizeof err), 0, "%s", err);
    cr_assert_eq(fake_conns(), 3);
    cv_client_close(c);
}

Test(client, events_are_skipped_hangups_and_garbage_fail)
{
    cv_client *c = connect_fake();
    char err[256];
    uint8_t *raw;
    size_t raw_len;
    cr_assert_eq(cv_client_call_raw(c, "T", "i", "Event", "ab", 2, &raw, &raw_len, TIMEOUT_MS, err, sizeof err),
                 0, "%s", err);
    cr_assert_eq(raw_len, 2);
    free(raw);
    cr_assert_eq(cv_client_call(c, "T", "i", "Hangup", NULL, NULL, NULL, TIMEOUT_MS, err, sizeof err),
                 CV_EUNAVAIL);
    cr_assert_eq(cv_client_call(c, "T", "i", "Garbage", NULL, NULL, NULL, TIMEOUT_MS, err, sizeof err),
                 CV_ETOOBIG);
    cr_assert(strstr(err, "frame over"), "%s", err);
    cr_assert_eq(cv_client_call(c, "T", "i", "Echo", NULL, NULL, NULL, TIMEOUT_MS, err, sizeof err), 0, "%s", err);
    cr_assert_eq(fake_conns(), 3);
    cv_client_close(c);
}

static int fake_closed(void)
{
    pthread_mutex_lock(&F.mu);
    int n = F.closed;
    pthread_mutex_unlock(&F.mu);
    return n;
}

/* A connection the gate closed in order between calls (its idle timeout) is redialled by the next call,
 * which succeeds. */
Test(client, closed_between_calls_redials_at_the_next_call)
{
    cv_client *c = connect_fake();
    char err[256];
    cr_assert_eq(cv_client_call(c, "T", "i", "Bye", NULL, NULL, NULL, TIMEOUT_MS, err, sizeof err), 0, "%s", err);
    for (int i = 0; i < 2000 && fake_closed() < 1; i++) usleep(1000); /* polled, bounded */
    cr_assert_eq(fake_closed(), 1); /* close() on loopback has delivered the FIN by the time it returns */
    cr_assert_eq(cv_client_call(c, "T", "i", "Echo", NULL, NULL, NULL, TIMEOUT_MS, err, sizeof err), 0, "%s", err);
    cr_assert_eq(fake_conns(), 2);
    cv_client_close(c);
}

Test(client, rpc_returns_the_body_of_a_remote_error)
{
    cv_client *c = connect_fake();
    char err[256];
    uint8_t *out;
    size_t len;
    cr_assert_eq(cv_client_rpc(c, "objects.call", "x", 1, &out, &len, TIMEOUT_MS, err, sizeof err), CV_EREDIRECT);
    cr_assert_str_eq(err, "shard 3 is owned by n2");
    cr_assert_not_null(out);
    Cverse__Rpc__Redirect *r = cverse__rpc__redirect__unpack(NULL, len, out);
    cr_assert_not_null(r);
    cr_assert_eq(r->applied_index, 99);
    cr_assert_str_eq(r->owner, "n2");
    cr_assert_eq(r->shard, 3);
    cverse__rpc__redirect__free_unpacked(r, NULL);
    free(out);

    cr_assert_eq(cv_client_rpc(c, "no.such.method", NULL, 0, &out, &len, TIMEOUT_MS, err, sizeof err),
                 CV_ENOTFOUND);
    cr_assert_null(out);
    cr_assert_eq(len, 0);
    cv_client_close(c);
}

Test(client, invalid_arguments_fail_without_io)
{
    cv_client *c = connect_fake();
    char err[256];
    char *json;
    cr_assert_eq(cv_client_call(c, "", "i", "M", NULL, NULL, NULL, 0, err, sizeof err), CV_EINVAL);
    cr_assert_eq(cv_client_call_json(c, "T", NULL, "M", "{}", &json, 0, err, sizeof err), CV_EINVAL);
    cr_assert_eq(cv_client_call(c, "T", "i", "", NULL, NULL, NULL, 0, err, sizeof err), CV_EINVAL);
    cr_assert_eq(cv_client_create(c, "T", "", 0, err, sizeof err), CV_EINVAL);
    cr_assert_eq(cv_client_delete(c, NULL, "i", 0, err, sizeof err), CV_EINVAL);
    ProtobufCMessage *resp;
    cr_assert_eq(cv_client_call(c, "T", "i", "M", NULL, NULL, &resp, 0, err, sizeof err), CV_EINVAL,
                 "resp without its descriptor");
    pthread_mutex_lock(&F.mu);
    cr_assert_eq(F.last_id, 0, "nothing reached the gate");
    pthread_mutex_unlock(&F.mu);
    cv_client_close(c);
}

/* ---- the cverse CLI ---------------------------------------------------------------------------------- */

#define CLI_DEADLINE_MS 20000
#define OUT_MAX 8192

static struct {
    int code;
    char out[OUT_MAX], err[OUT_MAX];
} R;

/* Reads what is available on fd into buf; 0 at EOF. */
static int drain(int fd, char *buf, size_t *len)
{
    char tmp[4096];
    ssize_t n = read(fd, tmp, sizeof tmp);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return 1;
    cr_assert_geq(n, 0, "read: %s", strerror(errno));
    size_t keep = (size_t)n < OUT_MAX - 1 - *len ? (size_t)n : OUT_MAX - 1 - *len;
    memcpy(buf + *len, tmp, keep);
    *len += keep;
    buf[*len] = '\0';
    return n > 0;
}

/* The environment with CVERSE_GATE replaced by gate_env (NULL: removed). */
static char **make_env(const char *gate_env)
{
    size_t n = 0, k = 0;
    while (environ[n]) n++;
    char **env = calloc(n + 2, sizeof *env);
    cr_assert_not_null(env);
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "CVERSE_GATE=", 12) != 0) env[k++] = environ[i];
    if (gate_env) env[k++] = (char *)gate_env;
    return env;
}

/* Runs the CLI with argv (NULL-terminated after argv[0]) into R, under a deadline. */
static void cli_env(const char *gate_env, const char *arg0, ...)
{
    char *argv[16];
    int n = 0, out[2], err[2], status;
    va_list ap;
    argv[n++] = getenv("CVERSE_CLI_BIN");
    cr_assert(argv[0] && *argv[0], "CVERSE_CLI_BIN is not set (run through meson test)");
    va_start(ap, arg0);
    for (const char *a = arg0; a; a = va_arg(ap, const char *)) argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
    cr_assert_eq(pipe2(err, O_CLOEXEC), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    char **env = make_env(gate_env);
    pid_t pid;
    cr_assert_eq(posix_spawn(&pid, argv[0], &fa, NULL, argv, env), 0);
    free(env);
    posix_spawn_file_actions_destroy(&fa);
    close(out[1]);
    close(err[1]);
    size_t olen = 0, elen = 0;
    R.out[0] = R.err[0] = '\0';
    int open_out = 1, open_err = 1;
    uint64_t until = mono_ms() + CLI_DEADLINE_MS;
    while (open_out || open_err) {
        struct pollfd p[2] = {{.fd = open_out ? out[0] : -1, .events = POLLIN},
                              {.fd = open_err ? err[0] : -1, .events = POLLIN}};
        uint64_t now = mono_ms();
        if (now >= until) {
            kill(pid, SIGKILL);
            break;
        }
        if (poll(p, 2, (int)(until - now)) <= 0) continue;
        if (p[0].revents) open_out = drain(out[0], R.out, &olen);
        if (p[1].revents) open_err = drain(err[0], R.err, &elen);
    }
    close(out[0]);
    close(err[0]);
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status), "the CLI was killed (signal %d); stderr:\n%s", WTERMSIG(status), R.err);
    R.code = WEXITSTATUS(status);
}

#define CLI(...) cli_env(NULL, __VA_ARGS__, (const char *)NULL)
#define CLI_FAKE(...) cli_env(NULL, __VA_ARGS__, "--gate", F.addr, (const char *)NULL)

static void expect(int code, const char *out, const char *err_prefix)
{
    cr_assert_eq(R.code, code, "exit %d, want %d; stdout:\n%s\nstderr:\n%s", R.code, code, R.out, R.err);
    if (out) cr_assert_str_eq(R.out, out);
    if (err_prefix)
        cr_assert_eq(strncmp(R.err, err_prefix, strlen(err_prefix)), 0, "stderr should start with '%s':\n%s",
                     err_prefix, R.err);
    else
        cr_assert_str_empty(R.err);
}

Test(cli, call_prints_json)
{
    CLI_FAKE("call", "SimpleCounter", "Counter-001", "Echo", "{\"n\":\"1\"}");
    expect(0, "{\n  \"type\": \"SimpleCounter\",\n  \"echo\": {\n    \"n\": \"1\"\n  }\n}\n", NULL);
    expect_last("call SimpleCounter/Counter-001/Echo");
    /* --json: verbatim, one line; options may follow the arguments; the request defaults to {}. */
    CLI_FAKE("call", "T", "i", "Echo", "--json");
    expect(0, "{\"type\":\"T\",\"echo\":{}}\n", NULL);
    /* Layout never rewrites values: numbers and strings stay as the gate wrote them. */
    CLI_FAKE("call", "T", "i", "Float");
    expect(0,
           "{\n  \"x\": 0.1,\n  \"s\": \"a,b:{c}\\\"\",\n  \"l\": [\n    1,\n    {}\n  ],\n  \"e\": {}\n}\n",
           NULL);
}

Test(cli, call_errors_have_codes_and_hints)
{
    CLI_FAKE("call", "SimpleCounter", "nope", "Missing");
    expect(1, "", "cverse: NOT_FOUND: object not found: SimpleCounter/nope\nhint: ");
    cr_assert(strstr(R.err, "created by\n      its first call"), "issue 9: a new ID is created by its first call: %s",
              R.err);
    CLI_FAKE("call", "T", "i", "Busy");
    expect(1, "", "cverse: RESOURCE_EXHAUSTED: resource exhausted\nhint: ");
    CLI_FAKE("call", "--timeout", "100", "T", "i", "Silent");
    expect(1, "", "cverse: DEADLINE_EXCEEDED: no response within 350 ms\nhint: ");
    cr_assert(strstr(R.err, "--timeout"), "%s", R.err);
    CLI_FAKE("call", "T", "i", "Hangup");
    expect(1, "", "cverse: UNAVAILABLE: connection to ");
    cr_assert(strstr(R.err, "cluster/run-cluster.sh"), "%s", R.err);
}

Test(cli, application_error_prints_its_code_and_message_only)
{
    CLI_FAKE("call", "Wallet", "w", "Overdraw");
    expect(1, "", "cverse: INSUFFICIENT_FUNDS: balance 5, withdraw 10\n");
    cr_assert_str_eq(R.err, "cverse: INSUFFICIENT_FUNDS: balance 5, withdraw 10\n", "no hint: %s", R.err);
}

Test(cli, cannot_connect_exits_3)
{
    char addr[32], env[64];
    int fd = bind_loopback(addr, sizeof addr); /* bound, not listening: refused */
    CLI("status", "--gate", addr);
    expect(3, "", "cverse: cannot connect to the gate at ");
    cr_assert(strstr(R.err, "Connection refused") && strstr(R.err, "cluster/run-cluster.sh"), "%s", R.err);
    /* $CVERSE_GATE is used when --gate is absent. */
    snprintf(env, sizeof env, "CVERSE_GATE=%s", addr);
    cli_env(env, "create", "T", "i", (const char *)NULL);
    expect(3, "", "cverse: cannot connect to the gate at 127.0.0.1:");
    close(fd);
    snprintf(env, sizeof env, "CVERSE_GATE=%s", F.addr);
    cli_env(env, "create", "T", "i", (const char *)NULL);
    expect(0, "created T i\n", NULL);
}

Test(cli, create_and_delete)
{
    CLI_FAKE("create", "SimpleCounter", "Counter-007");
    expect(0, "created SimpleCounter Counter-007\n", NULL);
    expect_last("create SimpleCounter/Counter-007");
    CLI_FAKE("create", "--json", "SimpleCounter", "Counter-007");
    expect(0, "{\"id\":\"Counter-007\"}\n", NULL);
    CLI_FAKE("delete", "SimpleCounter", "Counter-007");
    expect(0, "deleted SimpleCounter Counter-007\n", NULL);
    expect_last("delete SimpleCounter/Counter-007");
    CLI_FAKE("delete", "SimpleCounter", "Counter-007", "--json");
    expect(0, "{\"success\":true}\n", NULL);
    CLI_FAKE("create", "Unknown", "x");
    expect(1, "", "cverse: NOT_FOUND: unknown object type 'Unknown'\nhint: is TYPE registered");
}

Test(cli, status_table_and_json)
{
    CLI_FAKE("status", "--timeout", "5000");
    expect(0, NULL, NULL);
    cr_assert(strstr(R.out, "gate g1 at 127.0.0.1:"), "%s", R.out);
    cr_assert(strstr(R.out, "8 shards (1 unassigned), leader n1, term 3, map index 42\n"), "%s", R.out);
    cr_assert(strstr(R.out, "\nNODE  ROLE     ALIVE  SHARDS  ADDRESS         HTTP\n"
                            "n1*   voter    yes         4  127.0.0.1:1001  127.0.0.1:2001\n"
                            "n2    standby  no          2  127.0.0.1:1002  -\n"
                            "n3    spare    yes         0  127.0.0.1:1003  -\n"),
              "%s", R.out);
    cr_assert(strstr(R.out, "* raft leader\n"), "%s", R.out);
    cr_assert(strstr(R.out, "\n\nGATE  CONNECTED  GRPC_ADDR       HTTP_ADDR\n"
                            "g1    yes        127.0.0.1:3001  127.0.0.1:4001\n"),
              "%s", R.out);

    CLI_FAKE("status", "--json");
    expect(0, NULL, NULL);
    json_error_t jerr;
    json_t *j = json_loads(R.out, 0, &jerr);
    cr_assert_not_null(j, "not JSON (%s): %s", jerr.text, R.out);
    cr_assert_str_eq(json_string_value(json_object_get(j, "leader")), "n1");
    cr_assert_eq(json_integer_value(json_object_get(j, "unassigned_shards")), 1);
    cr_assert_eq(json_integer_value(json_object_get(j, "applied_index")), 42);
    json_t *n1 = json_array_get(json_object_get(j, "nodes"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(n1, "role")), "voter");
    cr_assert(json_is_true(json_object_get(n1, "leader")));
    cr_assert_eq(json_integer_value(json_object_get(n1, "shards")), 4);
    json_t *n2 = json_array_get(json_object_get(j, "nodes"), 1);
    cr_assert(json_is_false(json_object_get(n2, "alive")));
    cr_assert(json_is_false(json_object_get(n2, "leader")));
    json_t *g1 = json_array_get(json_object_get(j, "gates"), 0);
    cr_assert_str_eq(json_string_value(json_object_get(g1, "grpc_addr")), "127.0.0.1:3001");
    json_decref(j);

    pthread_mutex_lock(&F.mu);
    F.no_map = 1;
    pthread_mutex_unlock(&F.mu);
    CLI_FAKE("status", "--json");
    expect(1, "", "cverse: UNAVAILABLE: the gate has no shard map yet");
}

Test(cli, shards_ranges_and_json)
{
    CLI_FAKE("shards");
    expect(0,
           "8 shards, 1 unassigned, map index 42\n"
           "OWNER         SHARDS  RANGES\n"
           "n1                 4  0-2,6\n"
           "n2                 2  3-4\n"
           "n3                 0  -\n"
           "ghost              1  7\n"
           "(unassigned)       1  5\n",
           NULL);
    CLI_FAKE("shards", "--json");
    expect(0, "{\"applied_index\":42,\"shards\":8,\"owners\":[\"n1\",\"n1\",\"n1\",\"n2\",\"n2\",null,\"n1\",\"ghost\"]}\n",
           NULL);
}

Test(cli, usage_errors_exit_2_and_help_exits_0)
{
    CLI("call", "T", "i");
    expect(2, "", "cverse call: missing METHOD\nUsage: cverse call ");
    CLI("call", "T", "i", "M", "{}", "extra");
    expect(2, "", "cverse call: unexpected argument 'extra'\n");
    CLI("call", "T", "i", "M", "{\"a\":");
    expect(2, "", "cverse call: the request is not valid JSON: ");
    CLI("call", "T", "i", "M", "[]");
    expect(2, "", "cverse call: the request must be a JSON object");
    CLI("call", "--timeout", "0", "T", "i", "M");
    expect(2, "", "cverse call: --timeout must be a number of milliseconds from 1 to 3600000, got '0'\n");
    CLI("call", "--timeout");
    expect(2, "", "cverse call: --timeout needs a value\n");
    CLI("create", "--gate", "gate.example:1", "T", "i");
    expect(2, "", "cverse create: --gate must be HOST:PORT with a numeric host or localhost, got 'gate.example:1'");
    cli_env("CVERSE_GATE=nonsense", "delete", "T", "i", (const char *)NULL);
    expect(2, "", "cverse delete: $CVERSE_GATE must be HOST:PORT");
    CLI("create", "", "i");
    expect(2, "", "cverse create: TYPE must not be empty\n");
    CLI("status", "extra");
    expect(2, "", "cverse status: unexpected argument 'extra'\n");
    CLI("shards", "--frob");
    expect(2, "", "cverse shards: unknown option '--frob'\n");
    /* "--" ends options: an id may start with a dash. */
    cli_env(NULL, "create", "--gate", F.addr, "--", "T", "-odd-", (const char *)NULL);
    expect(0, "created T -odd-\n", NULL);

    const char *cmds[] = {"call", "create", "delete", "status", "shards"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        CLI(cmds[i], "--help");
        expect(0, NULL, NULL);
        char want[64];
        snprintf(want, sizeof want, "Usage: cverse %s ", cmds[i]);
        cr_assert_eq(strncmp(R.out, want, strlen(want)), 0, "%s", R.out);
        cr_assert(strstr(R.out, "--gate HOST:PORT") && strstr(R.out, "Exit codes:"), "%s", R.out);
    }
    CLI("--help");
    expect(0, NULL, NULL);
    cr_assert(strstr(R.out, "  status ") && strstr(R.out, "  shards ") && strstr(R.out, "  shard-of "), "%s",
              R.out);
}
