/* Push to clients (issue 15, docs/push.md) against 3 real nodes and 2 gates with the Probe module: an SSE
 * client registers, an object pushes to its caller (the X-Client-ID header) and the message arrives with
 * the right type and payload (base64 Any, and proto3 JSON with ?format=json); a broadcast reaches clients
 * on both gates; a client that never reads has its queue overflow: drops counted on /metrics, a
 * `dropped` event when it reads again, another client unaffected; a client that disconnects leaves the
 * gate's client gauge at once. Native: the client library registers (its calls carry the id, pushes
 * arrive as events) and `cverse listen` prints pushed messages as JSON lines. The ChatRoom demo: Join,
 * Post and History over HTTP with an SSE member, and (suite pushbrowser) its /chat page in two chromium
 * pages (tests/browser/chat.mjs). */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cverse/client.h"
#include "harness.h"
#include "pbjson/any.h"
#include "sharding_demo.pb-c.h"

static struct h_cluster C;

static void teardown(void)
{
    h_cluster_destroy(&C);
}

TestSuite(push, .fini = teardown, .timeout = 240);

static void start(void)
{
    struct h_opts o = {.gates = 2, .module = getenv("CVERSE_PROBE_MODULE")};
    h_cluster_init_ex(&C, 3, 3, 1000, &o);
    for (int i = 0; i < 3; i++) h_node_start(&C, i);
    h_gate_start(&C, 0);
    h_gate_start(&C, 1);
    cr_assert(h_poll(60000, h_all_ready, &C), "nodes and gates did not become ready");
}

/* ---------------------------------------------------------------- a minimal SSE client */

struct sse {
    int fd;
    char *buf;
    size_t len, cap;
    char id[256]; /* the registered client id */
};

static unsigned long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000 + (unsigned long long)ts.tv_nsec / 1000000;
}

/* Reads more bytes (waiting up to ms); false on timeout or EOF. */
static bool sse_fill(struct sse *s, int ms)
{
    struct pollfd p = {.fd = s->fd, .events = POLLIN};
    if (poll(&p, 1, ms) <= 0) return false;
    if (s->cap - s->len < 65536) {
        s->cap = s->cap * 2 + 65536;
        s->buf = realloc(s->buf, s->cap);
        cr_assert_not_null(s->buf);
    }
    ssize_t n = read(s->fd, s->buf + s->len, s->cap - s->len - 1);
    if (n <= 0) return false;
    s->len += (size_t)n;
    s->buf[s->len] = 0;
    return true;
}

/* The next event: its name and data (copied, truncated to the buffers); false when none came in ms. */
static bool sse_next(struct sse *s, char *event, size_t elen, char **data, unsigned ms)
{
    unsigned long long deadline = mono_ms() + ms;
    for (;;) {
        char *end = s->len ? strstr(s->buf, "\n\n") : NULL;
        if (end) {
            *end = 0;
            char *ev = strstr(s->buf, "event: "), *d = strstr(s->buf, "data: ");
            snprintf(event, elen, "%.*s", ev ? (int)strcspn(ev + 7, "\n") : 0, ev ? ev + 7 : "");
            *data = strdup(d ? d + 6 : "");
            size_t used = (size_t)(end + 2 - s->buf);
            memmove(s->buf, end + 2, s->len - used + 1);
            s->len -= used;
            if (!ev) { /* the head of the response, or a comment: skip */
                free(*data);
                continue;
            }
            return true;
        }
        unsigned long long now = mono_ms();
        if (now >= deadline || !sse_fill(s, (int)(deadline - now))) return false;
    }
}

/* Connects to gate g's event stream (query "" or "?format=json"), with a small receive buffer when slow,
 * and reads the `register` event. */
static void sse_open(struct sse *s, int g, const char *query, bool slow)
{
    memset(s, 0, sizeof *s);
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(s->fd >= 0);
    if (slow) {
        int small = 4096;
        setsockopt(s->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)h_gate_http_port(&C, g))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(s->fd, (struct sockaddr *)&a, sizeof a), 0, "connect: %s", strerror(errno));
    char req[256];
    int n = snprintf(req, sizeof req, "GET /api/v1/events/stream%s HTTP/1.1\r\nHost: x\r\n\r\n", query);
    cr_assert_eq(write(s->fd, req, (size_t)n), n);
    char ev[64], *data;
    cr_assert(sse_next(s, ev, sizeof ev, &data, 10000), "no register event");
    cr_assert_str_eq(ev, "register");
    json_t *j = json_loads(data, 0, NULL);
    const char *id = json_string_value(json_object_get(j, "clientId"));
    cr_assert(id, "register data: %s", data);
    snprintf(s->id, sizeof s->id, "%s", id);
    char prefix[32];
    snprintf(prefix, sizeof prefix, "gate-%d/", g + 1);
    cr_assert(strncmp(s->id, prefix, strlen(prefix)) == 0, "client id %s has its gate's prefix", s->id);
    json_decref(j);
    free(data);
}

static void sse_close(struct sse *s)
{
    if (s->fd >= 0) close(s->fd);
    s->fd = -1;
    free(s->buf);
    s->buf = NULL;
}

/* The next `message` event's data (heartbeats skipped); NULL when none came in ms. */
static json_t *sse_message(struct sse *s, unsigned ms)
{
    char ev[64], *data;
    unsigned long long deadline = mono_ms() + ms;
    while (mono_ms() < deadline && sse_next(s, ev, sizeof ev, &data, (unsigned)(deadline - mono_ms()))) {
        json_t *j = strcmp(ev, "message") == 0 ? json_loads(data, 0, NULL) : NULL;
        free(data);
        if (j) return j;
    }
    return NULL;
}

/* ---------------------------------------------------------------- calls and metrics */

/* Probe <id> Push as client `as` ("" = no X-Client-ID); returns how many pushes the object queued. */
static long long push(int g, const char *as, const char *id, const char *to, unsigned count, unsigned pad)
{
    char path[256], body[512], hdr[300];
    snprintf(path, sizeof path, "/api/v1/objects/call/Probe/%s/Push", id);
    snprintf(body, sizeof body, "{\"request\":{\"name\":\"%s\",\"dueInMs\":\"%u\",\"periodMs\":\"%u\"}}", to, count,
             pad);
    snprintf(hdr, sizeof hdr, "X-Client-ID: %s", as);
    long st;
    char *t = h_post_header(h_gate_http_port(&C, g), path, body, strlen(body), as[0] ? hdr : NULL, &st);
    cr_assert_eq(st, 200, "Push: %ld %s", st, t ? t : "");
    return h_response_value(t, st);
}

/* A sample of gate g's /metrics (0 if absent). */
static double gate_metric(int g, const char *name)
{
    long st;
    char *t = h_get_port(h_gate_http_port(&C, g), "/metrics", &st);
    cr_assert_eq(st, 200);
    double v = 0;
    char key[128];
    snprintf(key, sizeof key, "\n%s ", name);
    char *p = strstr(t, key);
    if (p) v = strtod(p + strlen(key), NULL);
    free(t);
    return v;
}

/* Some node's /metrics counts a dropped push. */
static bool node_drops_counted(void *arg)
{
    (void)arg;
    double sum = 0;
    for (int i = 0; i < 3; i++) {
        long st;
        char *t = h_get_text(&C, i, "/metrics", &st);
        char *p = t ? strstr(t, "\ncverse_push_dropped_total ") : NULL;
        if (p) sum += strtod(p + strlen("\ncverse_push_dropped_total "), NULL);
        free(t);
    }
    return sum >= 1;
}

/* The base64 of the Any of GetUptimeResponse{uptime}, as the gate must send it. */
static char *expected_any(const char *uptime)
{
    ShardingDemo__GetUptimeResponse m = SHARDING_DEMO__GET_UPTIME_RESPONSE__INIT;
    m.uptime = (char *)uptime;
    uint8_t buf[256], *any;
    size_t n = sharding_demo__get_uptime_response__pack(&m, buf), alen;
    char *b64;
    cr_assert_eq(cv_pbjson_any_wrap("sharding_demo.GetUptimeResponse", buf, n, &any, &alen), 0);
    cr_assert_eq(cv_pbjson_b64_encode(any, alen, &b64, NULL), 0);
    free(any);
    return b64;
}

/* ---------------------------------------------------------------- tests */

Test(push, to_the_caller_with_type_and_payload)
{
    start();
    struct sse a, j;
    sse_open(&a, 0, "", false);
    sse_open(&j, 0, "?format=json", false);
    cr_assert_str_neq(a.id, j.id, "distinct client ids");

    /* The object sees the caller's client id. */
    char hdr[300];
    snprintf(hdr, sizeof hdr, "X-Client-ID: %s", a.id);
    long st;
    char *t = h_post_header(h_gate_http_port(&C, 0), "/api/v1/objects/call/Probe/p-1/Caller", "{}", 2, hdr, &st);
    cr_assert_eq(st, 200, "%s", t ? t : "");
    char want[400];
    snprintf(want, sizeof want, "\"status\":\"client=%s\"", a.id);
    cr_assert(t && strstr(t, want), "Caller answered %s", t ? t : "");
    free(t);
    t = h_post(h_gate_http_port(&C, 0), "/api/v1/objects/call/Probe/p-1/Caller", "{}", 2, &st);
    cr_assert(t && strstr(t, "\"status\":\"client=\""), "no header, no client id: %s", t ? t : "");
    free(t);
    char longhdr[400] = "X-Client-ID: ";
    memset(longhdr + strlen(longhdr), 'x', 250);
    t = h_post_header(h_gate_http_port(&C, 0), "/api/v1/objects/call/Probe/p-1/Caller", "{}", 2, longhdr, &st);
    cr_assert_eq(st, 400, "a client id over 199 bytes is refused: %s", t ? t : "");
    free(t);

    cr_assert_eq(push(0, a.id, "p-1", "", 3, 0), 3);
    for (int i = 0; i < 3; i++) {
        json_t *m = sse_message(&a, 10000);
        cr_assert_not_null(m, "message %d did not arrive", i);
        cr_assert_str_eq(json_string_value(json_object_get(m, "type")), "sharding_demo.GetUptimeResponse");
        char up[16];
        snprintf(up, sizeof up, "%d:", i);
        char *b64 = expected_any(up);
        cr_assert_str_eq(json_string_value(json_object_get(m, "payload")), b64, "message %d in order", i);
        free(b64);
        json_decref(m);
    }
    /* The JSON client, pushed to by id from a call without a client id. */
    cr_assert_eq(push(1, "", "p-2", j.id, 1, 0), 1);
    json_t *m = sse_message(&j, 10000);
    cr_assert_not_null(m);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(m, "payload"), "uptime")), "0:");
    json_decref(m);
    cr_assert_geq(gate_metric(0, "cverse_gate_push_delivered_total"), 4);
    cr_assert_eq(gate_metric(0, "cverse_gate_clients"), 2);
    /* Gates and nodes stop gracefully (exit 0, no leak under ASan) with the streams still open. */
    h_cluster_stop_all(&C);
    sse_close(&a);
    sse_close(&j);
}

Test(push, broadcast_reaches_clients_on_both_gates)
{
    start();
    struct sse s[3];
    sse_open(&s[0], 0, "", false);
    sse_open(&s[1], 1, "", false);
    sse_open(&s[2], 1, "?format=json", false);
    cr_assert_eq(push(0, "", "b-1", "*", 2, 0), 2);
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 2; i++) {
            json_t *m = sse_message(&s[c], 10000);
            cr_assert_not_null(m, "client %d: broadcast %d did not arrive", c, i);
            json_decref(m);
        }
    /* A client id of a gate the config does not have: queued (0), then dropped and counted on the node; a
     * malformed one is refused (CV_EINVAL: the object counts 0 queued). */
    cr_assert_eq(push(0, "", "b-2", "gate-9/abc", 1, 0), 1);
    cr_assert_eq(push(0, "", "b-2", "no-slash", 1, 0), 0);
    cr_assert(h_poll(5000, node_drops_counted, NULL), "cverse_push_dropped_total counts the unknown gate's push");
    /* A native client too, registered while the gates stop. */
    char gate[64], id[256], err[256];
    snprintf(gate, sizeof gate, "127.0.0.1:%d", h_gate_grpc_port(&C, 0));
    cv_client *cli;
    cr_assert_eq(cv_client_connect(gate, 5000, &cli), 0);
    cr_assert_eq(cv_client_register(cli, id, sizeof id, 10000, err, sizeof err), 0, "%s", err);
    h_cluster_stop_all(&C);
    cv_client_close(cli);
    for (int c = 0; c < 3; c++) sse_close(&s[c]);
}

struct gauge {
    int g;
    const char *name;
    double want;
};

static bool gauge_is(void *arg)
{
    struct gauge *w = arg;
    return gate_metric(w->g, w->name) == w->want;
}

static bool gauge_above(void *arg)
{
    struct gauge *w = arg;
    return gate_metric(w->g, w->name) > w->want;
}

Test(push, slow_client_drops_counted_others_unaffected_disconnect_frees)
{
    start();
    struct sse slow, fast;
    sse_open(&slow, 0, "", true);
    sse_open(&fast, 0, "", false);
    /* 1000 messages of 16 KiB to a client that does not read: more than its socket, the gate's backlog
     * allowance and its 256-message queue hold. */
    cr_assert_eq(push(0, "", "s-1", slow.id, 500, 16384), 500);
    cr_assert_eq(push(0, "", "s-1", slow.id, 500, 16384), 500);
    struct gauge dropped = {0, "cverse_gate_push_dropped_total", 0};
    cr_assert(h_poll(20000, gauge_above, &dropped), "the slow client's queue overflowed: drops counted");
    /* Another client is unaffected. */
    cr_assert_eq(push(0, fast.id, "f-1", "", 1, 0), 1);
    json_t *m = sse_message(&fast, 10000);
    cr_assert_not_null(m, "the fast client still gets its messages");
    json_decref(m);
    /* The slow client reads again: a `dropped` event with the count precedes what came after the gap. */
    char ev[64], *data;
    bool told = false;
    unsigned got = 0;
    while (!told && sse_next(&slow, ev, sizeof ev, &data, 20000)) {
        if (!strcmp(ev, "dropped")) {
            json_t *j = json_loads(data, 0, NULL);
            told = json_integer_value(json_object_get(j, "count")) > 0;
            json_decref(j);
        } else if (!strcmp(ev, "message")) {
            got++;
        }
        free(data);
    }
    cr_assert(told, "a dropped event reached the slow client (after %u messages)", got);
    /* A client that disconnects leaves at once. */
    cr_assert_eq(gate_metric(0, "cverse_gate_clients"), 2);
    sse_close(&slow);
    struct gauge one = {0, "cverse_gate_clients", 1};
    cr_assert(h_poll(5000, gauge_is, &one), "the disconnected client's entry (and queue) is gone");
    sse_close(&fast);
    struct gauge none = {0, "cverse_gate_clients", 0};
    cr_assert(h_poll(5000, gauge_is, &none));
}

Test(push, native_client_register_calls_and_events)
{
    start();
    char gate[64], err[256], id[256], *resp = NULL;
    snprintf(gate, sizeof gate, "127.0.0.1:%d", h_gate_grpc_port(&C, 1));
    cv_client *cli;
    cr_assert_eq(cv_client_connect(gate, 5000, &cli), 0);
    cr_assert_eq(cv_client_register(cli, id, sizeof id, 10000, err, sizeof err), 0, "%s", err);
    cr_assert(strncmp(id, "gate-2/", 7) == 0, "native client id %s", id);
    cr_assert_str_eq(cv_client_id(cli), id);
    /* Calls on the connection carry the id. */
    cr_assert_eq(cv_client_call_json(cli, "Probe", "n-1", "Caller", "{}", &resp, 30000, err, sizeof err), 0, "%s",
                 err);
    char want[300];
    snprintf(want, sizeof want, "client=%s", id);
    cr_assert(strstr(resp, want), "Caller answered %s", resp);
    free(resp);
    /* The object pushes to its caller: the message is kept while the call waits, then read. */
    cr_assert_eq(cv_client_call_json(cli, "Probe", "n-1", "Push", "{\"dueInMs\":\"2\"}", &resp, 30000, err,
                                     sizeof err), 0, "%s", err);
    free(resp);
    for (int i = 0; i < 2; i++) {
        struct cv_client_push *p;
        cr_assert_eq(cv_client_next_push(cli, &p, 10000, err, sizeof err), 0, "push %d: %s", i, err);
        cr_assert_str_eq(p->type, "sharding_demo.GetUptimeResponse");
        ShardingDemo__GetUptimeResponse *m = sharding_demo__get_uptime_response__unpack(NULL, p->len, p->payload);
        cr_assert_not_null(m);
        char up[16];
        snprintf(up, sizeof up, "%d:", i);
        cr_assert_str_eq(m->uptime, up);
        sharding_demo__get_uptime_response__free_unpacked(m, NULL);
        cr_assert_str_eq(p->json, i ? "{\"uptime\":\"1:\"}" : "{\"uptime\":\"0:\"}");
        cv_client_push_free(p);
    }
    cr_assert_eq(gate_metric(1, "cverse_gate_clients"), 1);
    cv_client_close(cli);
    struct gauge none = {1, "cverse_gate_clients", 0};
    cr_assert(h_poll(5000, gauge_is, &none), "a closed native client leaves");
}

Test(push, cli_listen_prints_pushed_messages)
{
    start();
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s listen --gate 127.0.0.1:%d --count 2 --timeout 20000", getenv("CVERSE_CLI_BIN"),
             h_gate_grpc_port(&C, 0));
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    char line[1024];
    cr_assert_not_null(fgets(line, sizeof line, p), "the clientId line");
    json_t *j = json_loads(line, 0, NULL);
    const char *id = json_string_value(json_object_get(j, "clientId"));
    cr_assert(id && strncmp(id, "gate-1/", 7) == 0, "first line: %s", line);
    cr_assert_eq(push(1, "", "l-1", id, 2, 0), 2);
    json_decref(j);
    for (int i = 0; i < 2; i++) {
        cr_assert_not_null(fgets(line, sizeof line, p), "message line %d", i);
        char want[128];
        snprintf(want, sizeof want, "{\"type\":\"sharding_demo.GetUptimeResponse\",\"payload\":{\"uptime\":\"%d:\"}}\n", i);
        cr_assert_str_eq(line, want);
    }
    int rc = pclose(p);
    cr_assert(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "cverse listen exit %d", rc);
}

Test(push, chat_room_join_post_history)
{
    start();
    struct sse m;
    sse_open(&m, 1, "?format=json", false);
    char hdr[300];
    snprintf(hdr, sizeof hdr, "X-Client-ID: %s", m.id);
    long st;
    int port = h_gate_http_port(&C, 0); /* calls through one gate, the member listens on the other */
    char *t = h_post(port, "/api/v1/objects/call/ChatRoom/r-1/Join", "{}", 2, &st);
    cr_assert_eq(st, 400, "Join without a client id: %ld %s", st, t ? t : "");
    free(t);
    t = h_post_header(port, "/api/v1/objects/call/ChatRoom/r-1/Join", "{}", 2, hdr, &st);
    cr_assert_eq(st, 200, "%s", t ? t : "");
    cr_assert(strstr(t, "\"members\":1"), "%s", t);
    free(t);
    const char *post = "{\"request\":{\"user\":\"ann\",\"text\":\"hello\"}}";
    t = h_post(port, "/api/v1/objects/call/ChatRoom/r-1/Post", post, strlen(post), &st);
    cr_assert_eq(st, 200, "%s", t ? t : "");
    cr_assert(strstr(t, "\"seq\":\"1\""), "%s", t);
    free(t);
    json_t *msg = sse_message(&m, 10000);
    cr_assert_not_null(msg, "the member got the post");
    cr_assert_str_eq(json_string_value(json_object_get(msg, "type")), "chat.ChatMessage");
    json_t *p = json_object_get(msg, "payload");
    cr_assert_str_eq(json_string_value(json_object_get(p, "user")), "ann");
    cr_assert_str_eq(json_string_value(json_object_get(p, "text")), "hello");
    cr_assert_str_eq(json_string_value(json_object_get(p, "seq")), "1");
    json_decref(msg);
    const char *hist = "{\"request\":{\"last\":5}}";
    t = h_post(port, "/api/v1/objects/call/ChatRoom/r-1/History", hist, strlen(hist), &st);
    cr_assert_eq(st, 200, "%s", t ? t : "");
    cr_assert(strstr(t, "\"text\":\"hello\""), "History: %s", t);
    free(t);
    t = h_get_port(port, "/chat", &st);
    cr_assert_eq(st, 200);
    cr_assert(t && strstr(t, "EventSource(\"/api/v1/events/stream?format=json\")"), "the chat page");
    cr_assert(!strstr(t, "innerHTML"), "the page never uses innerHTML");
    free(t);
    sse_close(&m);
}

TestSuite(pushbrowser, .fini = teardown, .timeout = 300);

Test(pushbrowser, two_pages_talk)
{
    const char *src = getenv("CVERSE_SOURCE_ROOT"), *out = getenv("CVERSE_BROWSER_OUT");
    cr_assert(src && out, "run through meson test");
    char dir[512], lib[600], cmd[1024];
    snprintf(dir, sizeof dir, "%s/tests/browser", src);
    snprintf(lib, sizeof lib, "%s/node_modules/playwright-core/package.json", dir);
    struct stat sb;
    cr_assert(stat(lib, &sb) == 0 && stat("/usr/bin/chromium", &sb) == 0,
              "playwright-core (npm ci in tests/browser) or /usr/bin/chromium missing: "
              "scripts/install-deps.sh installs both");
    start();
    char gate[64];
    snprintf(gate, sizeof gate, "http://127.0.0.1:%d", h_gate_http_port(&C, 0));
    setenv("GATE", gate, 1);
    setenv("OUT_DIR", out, 1);
    snprintf(cmd, sizeof cmd, "cd '%s' && node chat.mjs", dir);
    int rc = system(cmd);
    cr_assert(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "the browser checks failed (see the output above)");
}

/* ---- the push fan-out bench (docs/benchmarks.md): 1000 SSE clients on one gate, one broadcaster ---- */

#define BENCH_CLIENTS 1000
#define BENCH_ROUNDS 10
#define BENCH_PER_ROUND 50

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* Reads every message event the clients have, recording push-to-receipt latencies; returns how many. */
static size_t bench_drain(struct sse *c, struct pollfd *pf, uint64_t *lat, size_t have, size_t cap, int ms)
{
    size_t got = 0;
    if (poll(pf, BENCH_CLIENTS, ms) <= 0) return 0;
    for (int i = 0; i < BENCH_CLIENTS; i++) {
        if (!(pf[i].revents & POLLIN) || !sse_fill(&c[i], 0)) continue;
        uint64_t now = mono_us();
        char *p = c[i].buf, *end;
        while ((end = strstr(p, "\n\n"))) {
            char *u = strstr(p, "\"uptime\":\"");
            if (u && u < end && have + got < cap) lat[have + got++] = now - strtoull(u + 10, NULL, 10);
            p = end + 2;
        }
        size_t used = (size_t)(p - c[i].buf);
        memmove(c[i].buf, p, c[i].len - used + 1);
        c[i].len -= used;
    }
    return got;
}

/* Its own suite so that meson runs it apart (suite "bench"); the teardown stops its cluster like the others'. */
TestSuite(pushbench, .fini = teardown, .timeout = 300);

Test(pushbench, fanout_1000_sse_clients)
{
    start();
    static struct sse c[BENCH_CLIENTS];
    static struct pollfd pf[BENCH_CLIENTS];
    for (int i = 0; i < BENCH_CLIENTS; i++) {
        sse_open(&c[i], 0, "?format=json", false);
        pf[i] = (struct pollfd){.fd = c[i].fd, .events = POLLIN};
    }
    size_t want = (size_t)BENCH_CLIENTS * BENCH_ROUNDS * BENCH_PER_ROUND, got = 0;
    uint64_t *lat = calloc(want, sizeof *lat);
    cr_assert_not_null(lat);
    uint64_t t0 = mono_us();
    for (int r = 0; r < BENCH_ROUNDS; r++) {
        char body[128];
        snprintf(body, sizeof body, "{\"request\":{\"dueInMs\":\"%d\"}}", BENCH_PER_ROUND);
        long st;
        char *t = h_post(h_gate_http_port(&C, 0), "/api/v1/objects/call/Probe/bench-1/Stamp", body, strlen(body), &st);
        cr_assert_eq(h_response_value(t, st), BENCH_PER_ROUND);
        got += bench_drain(c, pf, lat, got, want, 0); /* one reader thread for every client */
    }
    uint64_t deadline = mono_us() + 30000000;
    while (got < want && mono_us() < deadline) got += bench_drain(c, pf, lat, got, want, 100);
    uint64_t secs_us = mono_us() - t0;
    cr_assert_eq(got, want, "every client got every message (%zu of %zu)", got, want);
    qsort(lat, got, sizeof *lat, cmp_u64);
    fprintf(stderr, "push fan-out: %d SSE clients, %d broadcasts of %d: %zu messages delivered in %.2f s = %.0f "
                    "msg/s; push to receipt p50 %.1f ms, p99 %.1f ms, max %.1f ms; gate dropped %.0f\n",
            BENCH_CLIENTS, BENCH_ROUNDS, BENCH_PER_ROUND, got, secs_us / 1e6, got / (secs_us / 1e6),
            lat[got / 2] / 1000.0, lat[got * 99 / 100] / 1000.0, lat[got - 1] / 1000.0,
            gate_metric(0, "cverse_gate_push_dropped_total"));
    free(lat);
    for (int i = 0; i < BENCH_CLIENTS; i++) sse_close(&c[i]);
}
