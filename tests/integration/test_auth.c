/* Integration: an authenticated cluster (docs/security.md, "Inside the cluster"): 3 nodes and a gate with a
 * cluster secret (h_opts.secret: <dir>/secret, cluster.secret_file).
 * - calls through the gate work as without a secret;
 * - a client without the secret cannot call catalog.propose nor catalog.subscribe on a node's native
 *   port: the connection is dropped before any method runs, and cverse_auth_failures_total counts it;
 * - a raw TCP peer writing libraft's preamble and a RequestVote to a raft port is dropped likewise;
 * - a node started with another secret never becomes a member of the raft group (never leader, never
 *   knows a leader) while the others keep theirs;
 * - with the secret, an unsigned admin POST is 401 UNAUTHENTICATED, a signed one (auth/sign.h) is
 *   applied; the inspector's actions go through (it signs with its config's secret), and the CLI's
 *   drain only with CVERSE_CLUSTER_SECRET_FILE;
 * - with the secret, every node HTTP request but /health, /ready and /metrics must be signed: an unsigned
 *   GET /v1/shards is 401 (WWW-Authenticate: Cverse-HMAC) and counted (reason="signature"); a signed one,
 *   and the same signed GET replayed, are served (reads skip the replay cache: node/httpauth.c); another
 *   secret, an expired time or a signature of another target are 401; a replayed signed POST is 401;
 *   the inspector (its polls, signed) shows the topology, `cverse node-get` reads with the secret;
 * - protected mode (no secret) from another host (network namespaces, root): native and raft ports
 *   drop the peer at once and count it, the HTTP port (bound to 0.0.0.0) listens on loopback only;
 * - with a secret, 3 nodes and a gate each in a namespace of its own form a cluster and serve calls
 *   (the handshake over a real network, raft included).
 * Polls with deadlines; never sleeps as synchronisation. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "auth/handshake.h"
#include "auth/sign.h"
#include "harness.h"
#include "net/frame.h"
#include "util/log.h"
#include "util/netns.h"

#define READY_MS 30000

static struct h_cluster C;
static struct cv_netns N;
static pid_t inspector;

static void teardown(void)
{
    unsetenv(CV_SECRET_ENV);
    if (inspector > 0) {
        kill(inspector, SIGTERM);
        waitpid(inspector, NULL, 0);
        inspector = 0;
    }
    if (C.dir[0]) h_cluster_destroy(&C); /* kills the processes (by pid) before their namespaces go */
    cv_netns_destroy(&N);
}

TestSuite(auth, .fini = teardown, .timeout = 240);

static void sign_cluster(const char *method, const char *target, char *header, size_t cap);

static void start(int nodes_started)
{
    struct h_opts o = {.gates = 1, .secret = true};
    h_cluster_init_ex(&C, 3, 3, 1000, &o);
    C.sign = sign_cluster; /* the harness' node reads (/v1/cluster...) signed with the cluster's secret */
    for (int i = 0; i < nodes_started; i++) h_node_start(&C, i);
    h_gate_start(&C, 0);
}

static int node_http(int i)
{
    return C.base + 100 + i;
}

/* cverse_auth_failures_total{reason="<reason>"} on node i's /metrics, -1 if absent. */
static long long failures(int i, const char *reason)
{
    long st;
    char *m = h_get_text(&C, i, "/metrics", &st), want[96];
    snprintf(want, sizeof want, "cverse_auth_failures_total{reason=\"%s\"} ", reason);
    const char *p = m ? strstr(m, want) : NULL;
    long long v = p ? atoll(p + strlen(want)) : -1;
    free(m);
    return v;
}

/* Connects to 127.0.0.1:port, writes bytes, reads until the peer closes (at most 5 s). Returns true if it
 * closed, with *got the bytes received (a guarded port sends its HELLO first, nothing else). */
static bool dropped_after_writing_to(const char *ip, int port, const void *bytes, size_t len, size_t *got,
                                     char *first4)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, ip, &sa.sin_addr);
    cr_assert_eq(connect(s, (struct sockaddr *)&sa, sizeof sa), 0, "connect %d: %s", port, strerror(errno));
    struct timeval tv = {.tv_sec = 5};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    cr_assert_eq(write(s, bytes, len), (ssize_t)len);
    char buf[4096];
    *got = 0;
    bool closed = false;
    for (;;) {
        ssize_t n = read(s, buf + (*got < 4 ? *got : 0), *got < 4 ? sizeof buf - *got : sizeof buf);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) closed = true;
        if (n <= 0) break;
        *got += (size_t)n;
    }
    memcpy(first4, buf, 4);
    close(s);
    return closed;
}

static bool dropped_after_writing(int port, const void *bytes, size_t len, size_t *got, char *first4)
{
    return dropped_after_writing_to("127.0.0.1", port, bytes, len, got, first4);
}

/* A native request frame for method with an empty body. */
static size_t request_frame(const char *method, uint8_t *out)
{
    Cverse__Rpc__Frame f = CVERSE__RPC__FRAME__INIT;
    f.id = 1;
    f.kind = CVERSE__RPC__KIND__KIND_REQUEST;
    f.method = (char *)method;
    size_t blen = cv_frame_size(&f);
    cv_frame_pack(&f, blen, out);
    return CV_FRAME_PREFIX + blen;
}

Test(auth, cluster_with_a_secret_serves_and_refuses_peers_without_it)
{
    start(3);
    cr_assert(h_poll(READY_MS, h_all_ready, &C), "nodes and gate with a secret did not become ready");
    long st;
    long long v = h_increment_within(&C, "auth-counter", 10000, &st);
    cr_assert_eq(v, 1, "a call through the gate: HTTP %ld", st);
    cr_assert_eq(failures(0, "proof"), 0, "nodes and gate share the secret: no proof failed");

    const char *methods[] = {"catalog.propose", "catalog.subscribe"};
    for (int k = 0; k < 2; k++) {
        long long before = failures(0, "magic");
        uint8_t frame[256];
        size_t len = request_frame(methods[k], frame), got;
        char first[4] = "";
        cr_assert(dropped_after_writing(C.base + 0, frame, len, &got, first), "%s: connection not dropped",
                  methods[k]);
        cr_assert(got == 0 || (got == CV_AUTH_HELLO && !memcmp(first, "CVAH", 4)),
                  "%s: the node answered %zu bytes", methods[k], got);
        cr_assert_gt(failures(0, "magic"), before, "%s: the refusal is counted", methods[k]);
    }

    /* libraft's preamble (protocol 1, server id 9, an 8-byte address) then a RequestVote's header. */
    uint8_t raft[24 + 8 + 16] = {1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 8};
    memcpy(raft + 24, "1.2.3:4", 7);
    raft[32] = 1;
    long long before = failures(1, "magic");
    size_t got;
    char first[4] = "";
    cr_assert(dropped_after_writing(C.base + 2000 + 1, raft, sizeof raft, &got, first), "raft peer not dropped");
    cr_assert(got == 0 || (got == CV_AUTH_HELLO && !memcmp(first, "CVAH", 4)), "raft port answered %zu bytes", got);
    cr_assert_gt(failures(1, "magic"), before);
    cr_assert_eq(h_increment_within(&C, "auth-counter", 10000, &st), 2, "still serving: HTTP %ld", st);
}

/* The "Authorization: Cverse-HMAC ..." line for METHOD TARGET signed with the file's secret at now_s. */
static void sign_with(const char *file, const char *method, const char *target, const char *body, uint64_t now_s,
                      char *header, size_t cap)
{
    char err[256], v[CV_SIGN_MAX];
    struct cv_secret k;
    cr_assert_eq(cv_secret_load(file, &k, err, sizeof err), 0, "%s", err);
    cv_sign_request(&k, method, target, body, body ? strlen(body) : 0, now_s, v);
    snprintf(header, cap, "Authorization: %s", v);
}

/* C.sign: the harness' node GETs signed with the cluster's secret. */
static void sign_cluster(const char *method, const char *target, char *header, size_t cap)
{
    char secret[400];
    snprintf(secret, sizeof secret, "%s/secret", C.dir);
    sign_with(secret, method, target, NULL, cv_now_ms() / 1000, header, cap);
}

/* The whole answer (head and body) to a raw request written to node i's HTTP port. */
static char *raw_http(int i, const char *request)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)node_http(i))};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    cr_assert_eq(connect(s, (struct sockaddr *)&sa, sizeof sa), 0, "connect: %s", strerror(errno));
    struct timeval tv = {.tv_sec = 10};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    cr_assert_eq(write(s, request, strlen(request)), (ssize_t)strlen(request));
    size_t cap = 1 << 20, got = 0;
    char *buf = malloc(cap);
    ssize_t n;
    while (got < cap - 1 && (n = read(s, buf + got, cap - 1 - got)) > 0) got += (size_t)n;
    buf[got] = '\0';
    close(s);
    return buf;
}

/* The status of GET path on node i with header (NULL: none) and no other signature. */
static long get_with(int i, const char *path, const char *header)
{
    struct h_cluster bare = C;
    bare.sign = NULL;
    long st;
    free(header ? h_get_header(&bare, i, path, header, &st) : h_get_text(&bare, i, path, &st));
    return st;
}

struct stable {
    char leader[64];
    char wrong[400]; /* node-3's secret file */
};

/* Node 3 (another secret) is never leader and never learns one; nodes 1-2 keep theirs. */
static bool leader_kept(void *arg)
{
    struct stable *s = arg;
    char l0[64], l2[64];
    h_leader_of(&C, 0, l0, sizeof l0);
    char hdr[CV_SIGN_MAX + 32]; /* node-3 reads only requests signed with its own secret */
    struct h_cluster bare = C;
    bare.sign = NULL;
    long st;
    sign_with(s->wrong, "GET", "/v1/cluster", NULL, cv_now_ms() / 1000, hdr, sizeof hdr);
    json_t *j = h_get_json(&bare, 2, "/v1/cluster", &st);
    cr_assert_eq(st, 401, "node-3 refuses a read signed with the cluster's secret");
    json_decref(j);
    char *text = h_get_header(&bare, 2, "/v1/cluster", hdr, &st);
    cr_assert_eq(st, 200, "node-3's /v1/cluster, signed with its secret: %s", text ? text : "");
    j = json_loads(text, 0, NULL);
    snprintf(l2, sizeof l2, "%s", json_string_value(json_object_get(j, "leader")) ? json_string_value(json_object_get(j, "leader")) : "");
    json_decref(j);
    free(text);
    cr_assert_str_eq(l0, s->leader, "node-1's leader changed");
    cr_assert_str_eq(l2, "", "node-3 (wrong secret) learned a leader");
    return false; /* keep watching until the deadline */
}

static bool has_leader(void *arg)
{
    struct stable *s = arg;
    h_leader_of(&C, 0, s->leader, sizeof s->leader);
    return s->leader[0] != '\0';
}

Test(auth, a_node_with_another_secret_cannot_join_raft)
{
    start(2);
    struct stable s;
    char *wrong = s.wrong;
    snprintf(wrong, sizeof s.wrong, "%s/wrong-secret", C.dir);
    FILE *f = fopen(wrong, "w");
    fputs("not-the-cluster-secret-0123456789\n", f);
    fclose(f);
    setenv(CV_SECRET_ENV, wrong, 1); /* wins over cluster.secret_file, for this child only */
    h_node_start(&C, 2);
    unsetenv(CV_SECRET_ENV);
    cr_assert(h_poll(READY_MS, has_leader, &s), "nodes 1-2 elected no leader");
    cr_assert(strcmp(s.leader, C.id[2]) != 0);
    h_poll(3000, leader_kept, &s);
    cr_assert_gt(failures(0, "proof") + failures(1, "proof"), 0, "the wrong secret is counted as such");
    cr_assert_gt(failures(2, "proof"), 0, "node-3 refuses the others' proofs too");
}

/* Signs and POSTs body to an admin path of node i. */
static char *signed_post(int i, const char *path, const char *body, long *st)
{
    char secret[400], err[256], v[CV_SIGN_MAX], header[CV_SIGN_MAX + 32];
    struct cv_secret k;
    snprintf(secret, sizeof secret, "%s/secret", C.dir);
    cr_assert_eq(cv_secret_load(secret, &k, err, sizeof err), 0, "%s", err);
    cv_sign_request(&k, "POST", path, body, strlen(body), cv_now_ms() / 1000, v);
    snprintf(header, sizeof header, "Authorization: %s", v);
    return h_post_header(node_http(i), path, body, strlen(body), header, st);
}

static bool inspector_ready(void *arg)
{
    long st;
    free(h_get_port(*(int *)arg, "/ready", &st));
    return st == 200;
}

Test(auth, admin_requests_must_be_signed)
{
    start(3);
    cr_assert(h_poll(READY_MS, h_all_ready, &C), "not ready");
    long st;
    const char *path = "/v1/admin/shards/pin", *body = "{\"shard\":5,\"pinned\":true}";
    char *out = h_post(node_http(0), path, body, strlen(body), &st);
    cr_assert_eq(st, 401, "unsigned: %ld %s", st, out ? out : "");
    cr_assert(out && strstr(out, "UNAUTHENTICATED"), "%s", out ? out : "");
    free(out);
    out = signed_post(0, path, body, &st);
    cr_assert_eq(st, 200, "signed: %ld %s", st, out ? out : "");
    free(out);

    /* the inspector signs the actions it forwards with its config's secret */
    const char *bin = getenv("CVERSE_INSPECTOR_BIN");
    cr_assert_not_null(bin, "CVERSE_INSPECTOR_BIN not set (run through meson test)");
    char log[400], listen[64];
    int iport = C.base + 115; /* a port the harness keeps free for an inspector */
    snprintf(log, sizeof log, "%s/inspector.log", C.dir);
    snprintf(listen, sizeof listen, "127.0.0.1:%d", iport);
    setenv("CVERSE_INSPECTOR_TOKEN", "auth-test-token", 1);
    inspector = h_spawn(log, (char *[]){(char *)bin, "--config", C.config, "--http-listen", listen, NULL});
    unsetenv("CVERSE_INSPECTOR_TOKEN");
    cr_assert(h_poll(READY_MS, inspector_ready, &iport), "the inspector is not ready");
    const char *pin = "{\"shard_id\":6,\"pinned\":true}";
    out = h_post_header(iport, "/shards/pin", pin, strlen(pin), "Authorization: Bearer auth-test-token", &st);
    cr_assert_eq(st, 200, "an action through the inspector: %ld %s", st, out ? out : "");
    free(out);

    /* the CLI signs with the secret from the environment */
    char secret[400], args[256];
    snprintf(secret, sizeof secret, "%s/secret", C.dir);
    snprintf(args, sizeof args, "drain --node-http 127.0.0.1:%d %s", node_http(0), C.id[2]);
    int code;
    out = h_cli(args, &code);
    cr_assert_neq(code, 0, "without the secret the CLI's drain is refused: %s", out);
    free(out);
    setenv(CV_SECRET_ENV, secret, 1);
    out = h_cli(args, &code);
    unsetenv(CV_SECRET_ENV);
    cr_assert_eq(code, 0, "signed drain: %s", out);
    free(out);
}

Test(auth, node_reads_must_be_signed)
{
    start(3);
    cr_assert(h_poll(READY_MS, h_all_ready, &C), "not ready");
    char secret[400], wrong[400], hdr[CV_SIGN_MAX + 32];
    snprintf(secret, sizeof secret, "%s/secret", C.dir);
    snprintf(wrong, sizeof wrong, "%s/wrong-secret", C.dir);
    FILE *f = fopen(wrong, "w");
    fputs("not-the-cluster-secret-0123456789\n", f);
    fclose(f);
    uint64_t now = cv_now_ms() / 1000;

    /* unsigned: 401 with the scheme to use, the JSON error, counted */
    long long before = failures(0, "signature");
    cr_assert_geq(before, 0, "cverse_auth_failures_total{reason=\"signature\"} is on /metrics");
    char *ans = raw_http(0, "GET /v1/shards HTTP/1.1\r\nHost: n\r\nConnection: close\r\n\r\n");
    cr_assert(!strncmp(ans, "HTTP/1.1 401", 12), "unsigned GET /v1/shards: %.300s", ans);
    cr_assert(strstr(ans, "WWW-Authenticate: Cverse-HMAC"), "%.500s", ans);
    cr_assert(strstr(ans, "\"code\":\"UNAUTHENTICATED\""), "%.500s", ans);
    free(ans);
    cr_assert_gt(failures(0, "signature"), before, "the unsigned read is counted");
    const char *reads[] = {"/v1/cluster", "/v1/objects", "/v1/stats", "/v1/events?after=0"};
    for (size_t k = 0; k < sizeof reads / sizeof *reads; k++)
        cr_assert_eq(get_with(1, reads[k], NULL), 401, "unsigned GET %s", reads[k]);

    /* the probes stay open (/ready may say 503 while the leader still spreads the shards over the nodes
     * that registered last: answered, not refused) */
    cr_assert_eq(get_with(0, "/health", NULL), 200);
    long ready = get_with(0, "/ready", NULL);
    cr_assert(ready == 200 || ready == 503, "unsigned GET /ready: %ld", ready);
    cr_assert_eq(get_with(0, "/metrics", NULL), 200);

    /* signed: served; the same signature again too (reads skip the replay cache) */
    sign_with(secret, "GET", "/v1/shards", NULL, now, hdr, sizeof hdr);
    cr_assert_eq(get_with(0, "/v1/shards", hdr), 200, "signed GET /v1/shards");
    cr_assert_eq(get_with(0, "/v1/shards", hdr), 200, "the same signed GET replayed (documented choice)");
    sign_with(secret, "GET", "/v1/events?after=0", NULL, now, hdr, sizeof hdr);
    cr_assert_eq(get_with(0, "/v1/events?after=0", hdr), 200, "the query is part of the signed target");
    cr_assert_eq(get_with(0, "/v1/events?after=1", hdr), 401, "a signature is for its own query only");
    sign_with(secret, "GET", "/v1/objects/SimpleCounter/a%20b", NULL, now, hdr, sizeof hdr);
    cr_assert_eq(get_with(0, "/v1/objects/SimpleCounter/a%20b", hdr), 404, "signed over the path as sent");

    /* another secret, an expired time: 401 */
    sign_with(wrong, "GET", "/v1/shards", NULL, now, hdr, sizeof hdr);
    cr_assert_eq(get_with(0, "/v1/shards", hdr), 401, "signed with another secret");
    sign_with(secret, "GET", "/v1/shards", NULL, now - 2 * CV_SIGN_WINDOW_S, hdr, sizeof hdr);
    cr_assert_eq(get_with(0, "/v1/shards", hdr), 401, "an expired signature");

    /* a signed POST replayed is refused */
    const char *path = "/v1/admin/shards/pin", *body = "{\"shard\":7,\"pinned\":true}";
    long st;
    sign_with(secret, "POST", path, body, cv_now_ms() / 1000, hdr, sizeof hdr);
    char *out = h_post_header(node_http(0), path, body, strlen(body), hdr, &st);
    cr_assert_eq(st, 200, "signed POST: %ld %s", st, out ? out : "");
    free(out);
    out = h_post_header(node_http(0), path, body, strlen(body), hdr, &st);
    cr_assert_eq(st, 401, "the same POST replayed: %ld %s", st, out ? out : "");
    cr_assert(out && strstr(out, "replayed"), "%s", out ? out : "");
    free(out);

    /* the harness' node reads sign with C.sign (start() set it) */
    char leader[32];
    h_leader_of(&C, 0, leader, sizeof leader);
    cr_assert_neq(leader[0], '\0', "a signed /v1/cluster names the leader");
}

/* Every shard of the inspector's /shards has a current node, and /api/state shows every node up: it read
 * the nodes (signed) on a cluster with a secret. */
static bool inspector_shows_topology(void *arg)
{
    int port = *(int *)arg;
    long st1, st2;
    char *shards = h_get_port(port, "/shards", &st1), *state = h_get_port(port, "/api/state", &st2);
    json_t *sh = shards ? json_loads(shards, 0, NULL) : NULL, *s = state ? json_loads(state, 0, NULL) : NULL, *e;
    size_t i, up = 0;
    bool ok = st1 == 200 && st2 == 200 && json_array_size(json_object_get(sh, "shards")) == 64;
    json_array_foreach(json_object_get(sh, "shards"), i, e) {
        const char *cur = json_string_value(json_object_get(e, "current_node"));
        ok = ok && cur && *cur;
    }
    json_array_foreach(json_object_get(s, "nodes"), i, e) up += json_is_true(json_object_get(e, "up"));
    ok = ok && up == 3;
    json_decref(sh);
    json_decref(s);
    free(shards);
    free(state);
    return ok;
}

Test(auth, readers_sign_their_node_reads)
{
    start(3);
    cr_assert(h_poll(READY_MS, h_all_ready, &C), "not ready");
    const char *bin = getenv("CVERSE_INSPECTOR_BIN");
    cr_assert_not_null(bin, "CVERSE_INSPECTOR_BIN not set (run through meson test)");
    char log[400], listen[64];
    int iport = C.base + 115;
    snprintf(log, sizeof log, "%s/inspector.log", C.dir);
    snprintf(listen, sizeof listen, "127.0.0.1:%d", iport);
    inspector = h_spawn(log, (char *[]){(char *)bin, "--config", C.config, "--http-listen", listen, NULL});
    cr_assert(h_poll(READY_MS, inspector_ready, &iport), "the inspector is not ready");
    cr_assert(h_poll(READY_MS, inspector_shows_topology, &iport),
              "the inspector does not show the nodes and shards of a cluster with a secret");

    /* cverse node-get: refused without the secret (with what to set), the document with it */
    char secret[400], args[256];
    snprintf(secret, sizeof secret, "%s/secret", C.dir);
    snprintf(args, sizeof args, "node-get --node 127.0.0.1:%d /v1/cluster", node_http(1));
    int code;
    char *out = h_cli(args, &code);
    cr_assert_eq(code, 1, "unsigned node-get: %s", out);
    cr_assert(strstr(out, "UNAUTHENTICATED") && strstr(out, CV_SECRET_ENV), "%s", out);
    free(out);
    setenv(CV_SECRET_ENV, secret, 1);
    out = h_cli(args, &code);
    cr_assert_eq(code, 0, "signed node-get: %s", out);
    json_t *j = json_loads(out, 0, NULL);
    cr_assert(json_is_string(json_object_get(j, "leader")), "node-get prints /v1/cluster: %s", out);
    json_decref(j);
    free(out);
    snprintf(args, sizeof args, "node-get 'http://127.0.0.1:%d/v1/objects?type=SimpleCounter'", node_http(0));
    out = h_cli(args, &code);
    cr_assert_eq(code, 0, "a URL with a query: %s", out);
    cr_assert(strstr(out, "\"objects\""), "%s", out);
    free(out);
    /* An empty query: the node reads "/v1/objects", and so must the signature. */
    snprintf(args, sizeof args, "node-get --node 127.0.0.1:%d '/v1/objects?'", node_http(0));
    out = h_cli(args, &code);
    cr_assert_eq(code, 0, "a path with an empty query: %s", out);
    free(out);
    unsetenv(CV_SECRET_ENV);
}

/* Protected mode (no secret, not insecure) seen from another host: a node in network namespace 0 at
 * 10.213.x.1, a peer in namespace 1; the node's native and raft ports drop it at once (not even a
 * HELLO) and count reason="remote". Needs root (network namespaces); skipped without them. */
/* Node i, in namespace i, answers /ready (its HTTP port listens on 0.0.0.0 there). */
static bool ready_in_ns(void *arg)
{
    int i = *(int *)arg, prev = cv_netns_enter(&N, i);
    cr_assert_geq(prev, 0);
    long st;
    free(h_get_text(&C, i, "/ready", &st));
    cv_netns_leave(prev);
    return st == 200;
}

Test(auth, protected_mode_refuses_peers_from_another_host)
{
    char err[256];
    if (cv_netns_create(&N, 2, err, sizeof err) != 0) cr_skip_test("%s", err);
    const char *hosts[] = {N.ip[0], N.ip[1]};
    struct h_opts o = {.protected_mode = true};
    h_cluster_init_hosts(&C, 1, 1, 1000, &o, hosts);
    int prev = cv_netns_enter(&N, 0);
    cr_assert_geq(prev, 0);
    h_node_start(&C, 0);
    cv_netns_leave(prev);
    int host = 0; /* its HTTP port listens on 0.0.0.0 of its namespace */
    cr_assert(h_poll(READY_MS, ready_in_ns, &host), "the node is not ready");

    prev = cv_netns_enter(&N, 1);
    cr_assert_geq(prev, 0);
    uint8_t frame[256];
    size_t len = request_frame("catalog.propose", frame), got;
    char first[4];
    cr_assert(dropped_after_writing_to(N.ip[0], C.base, frame, len, &got, first), "native port kept the peer");
    cr_assert_eq(got, 0, "protected mode answers nothing");
    uint8_t raft[24] = {1};
    cr_assert(dropped_after_writing_to(N.ip[0], C.base + 2000, raft, sizeof raft, &got, first), "raft port kept it");
    cr_assert_eq(got, 0);
    /* its HTTP port (http_addr 0.0.0.0) listens on loopback only: not reachable from here at all */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)(C.base + 100))};
    inet_pton(AF_INET, N.ip[0], &sa.sin_addr);
    cr_assert_neq(connect(s, (struct sockaddr *)&sa, sizeof sa), 0, "the HTTP port answered another host");
    close(s);
    cv_netns_leave(prev);
    prev = cv_netns_enter(&N, 0);
    long long remote = failures(0, "remote");
    cv_netns_leave(prev);
    cr_assert_geq(remote, 2, "both refusals counted");
    cr_assert(h_poll(READY_MS, ready_in_ns, &host), "the node still serves");
}

/* A cluster with a secret across hosts (network namespaces, root): 3 nodes and the gate each in a namespace
 * of its own, so every connection comes from a non-loopback address and protected mode does not apply
 * (there is a secret); raft and the native protocol go through the handshake over a real network, and
 * a call through the gate works. */
static bool all_ready_ns(void *arg)
{
    (void)arg;
    for (int i = 0; i < C.n; i++) {
        int host = i;
        if (!ready_in_ns(&host)) return false;
    }
    int prev = cv_netns_enter(&N, C.n);
    long st;
    free(h_get_port(h_gate_http_port(&C, 0), "/ready", &st));
    cv_netns_leave(prev);
    return st == 200;
}

Test(auth, secret_cluster_across_hosts)
{
    char err[256];
    if (cv_netns_create(&N, 4, err, sizeof err) != 0) cr_skip_test("%s", err);
    const char *hosts[] = {N.ip[0], N.ip[1], N.ip[2], N.ip[3]};
    struct h_opts o = {.gates = 1, .secret = true};
    h_cluster_init_hosts(&C, 3, 3, 1000, &o, hosts);
    for (int k = 0; k <= 3; k++) {
        int prev = cv_netns_enter(&N, k);
        cr_assert_geq(prev, 0);
        if (k < 3) h_node_start(&C, k);
        else h_gate_start(&C, 0);
        cv_netns_leave(prev);
    }
    cr_assert(h_poll(READY_MS, all_ready_ns, NULL), "nodes and gate in namespaces did not become ready");
    int prev = cv_netns_enter(&N, 3);
    long st;
    char *out = h_post(h_gate_http_port(&C, 0), "/api/v1/objects/call/SimpleCounter/ns-1/Increment",
                       "{\"request\":{}}", 14, &st);
    cv_netns_leave(prev);
    cr_assert_eq(st, 200, "a call through the gate: %ld %s", st, out ? out : "");
    free(out);
    prev = cv_netns_enter(&N, 0);
    long long proof = failures(0, "proof"), remote = failures(0, "remote");
    cv_netns_leave(prev);
    cr_assert_eq(proof, 0);
    cr_assert_eq(remote, 0, "with a secret there is no protected mode");
}
