/* Integration: the limits that protect the gate's HTTP port and TLS on it (docs/security.md "TLS and
 * limits"), against a real node and gate started from a YAML config:
 * - a client that sends half a request and stalls is cut after request_timeout_ms; a whole request on a
 *   fresh connection is answered; an idle keep-alive connection is closed after idle_timeout_ms;
 *   connections over max_connections are closed at once; each cut is counted on /metrics;
 * - the per-client rate limit answers 429 RESOURCE_EXHAUSTED with Retry-After, and the client is served
 *   again once it waited that long;
 * - a TLS gate (a certificate made at test time) answers https with keep-alive, object calls and the SSE
 *   stream; a client without the CA fails verification; plain HTTP to it gets no answer; cverse-bench
 *   --http https://... --ca works; a certificate that does not load stops the gate with exit 2 and
 *   FILE:LINE: key;
 * - the same gate's native port speaks TLS: `cverse call --tls --ca` works; without the CA (the system's
 *   store) or with another CA it exits 3 naming "certificate verify failed"; a plain client gets no
 *   answer; the failed handshakes are counted under reason="tls_failed".
 * - the native port: a partial frame that stalls is cut after request_timeout_ms, a silent connection is
 *   closed after idle_timeout_ms, one over max_connections is closed at once, the rate limit answers
 *   RESOURCE_EXHAUSTED; all counted under the same metrics.
 * Every wait polls with a deadline. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "tls_cert.h"

#define READY_MS 30000
#define REQUEST_MS 500
#define IDLE_MS 1000
#define MAX_CONNS 4

static struct h_cluster C;

static void teardown(void)
{
    h_cluster_destroy(&C);
}

TestSuite(gate_limits, .fini = teardown, .timeout = 180);

/* One node, one gate whose entry gets extra (YAML lines of gate-1's mapping: it ends the file). */
static void init(const char *extra)
{
    struct h_opts o = {.gates = 1};
    h_cluster_init_ex(&C, 1, 1, 1000, &o);
    FILE *f = fopen(C.config, "a");
    cr_assert_not_null(f);
    fputs(extra, f);
    fclose(f);
}

static void start(const char *extra)
{
    init(extra);
    h_node_start(&C, 0);
    h_gate_start(&C, 0);
    cr_assert(h_poll(READY_MS, h_all_ready, &C), "node and gate did not become ready");
}

/* ---- raw sockets: what curl would not do (stall, hold connections) ---- */

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_geq(fd, 0);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0, "connect: %s", strerror(errno));
    return fd;
}

static void send_all(int fd, const char *s)
{
    size_t len = strlen(s);
    cr_assert_eq(send(fd, s, len, MSG_NOSIGNAL), (ssize_t)len);
}

/* Reads what arrives within timeout_ms into buf (NUL-terminated) until the peer closes: returns the ms it
 * took the peer to close, or -1 if it did not within timeout_ms. */
static long long read_until_closed(int fd, char *buf, size_t cap, unsigned timeout_ms)
{
    unsigned long long t0 = h_now_ms();
    size_t got = 0;
    buf[0] = '\0';
    while (h_now_ms() - t0 < timeout_ms) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0) continue;
        ssize_t n = recv(fd, buf + got, cap - 1 - got, 0);
        if (n <= 0) return (long long)(h_now_ms() - t0); /* EOF, or a reset */
        got += (size_t)n;
        buf[got] = '\0';
    }
    return -1;
}

/* Reads until buf holds a whole response head and Content-Length bytes of body (or timeout_ms). */
static bool read_response(int fd, char *buf, size_t cap, unsigned timeout_ms)
{
    unsigned long long t0 = h_now_ms();
    size_t got = 0;
    buf[0] = '\0';
    while (h_now_ms() - t0 < timeout_ms) {
        char *end = strstr(buf, "\r\n\r\n"), *cl = strcasestr(buf, "Content-Length: ");
        if (end && cl && got >= (size_t)(end + 4 - buf) + strtoul(cl + 16, NULL, 10)) return true;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0) continue;
        ssize_t n = recv(fd, buf + got, cap - 1 - got, 0);
        if (n <= 0) return false;
        got += (size_t)n;
        buf[got] = '\0';
    }
    return false;
}

/* The value of a /metrics sample line ("name{labels} value"), -1 if absent; NULL text gives -1. */
static double metric(const char *text, const char *sample)
{
    char want[256];
    snprintf(want, sizeof want, "\n%s ", sample);
    const char *p = text ? strstr(text, want) : NULL;
    return p ? strtod(p + strlen(want), NULL) : -1;
}

static double gate_metric(const char *sample)
{
    long st;
    char *t = h_get_port(h_gate_http_port(&C, 0), "/metrics", &st);
    double v = st == 200 ? metric(t, sample) : -1;
    free(t);
    return v;
}

struct metric_at_least {
    const char *sample;
    double min;
};

static bool metric_reached(void *arg)
{
    struct metric_at_least *m = arg;
    return gate_metric(m->sample) >= m->min;
}

Test(gate_limits, slow_client_is_cut_idle_is_closed_extra_connections_refused)
{
    char extra[256], buf[4096];
    snprintf(extra, sizeof extra, "    request_timeout_ms: %d\n    idle_timeout_ms: %d\n    max_connections: %d\n",
             REQUEST_MS, IDLE_MS, MAX_CONNS);
    start(extra);
    int port = h_gate_http_port(&C, 0);

    /* half a request, then nothing: cut after the request timeout, without an answer */
    int slow = dial(port);
    send_all(slow, "GET /healthz HTTP/1.1\r\nHost: x\r\n");
    long long ms = read_until_closed(slow, buf, sizeof buf, 10000);
    cr_assert_geq(ms, 0, "the stalled request was not cut within 10 s");
    cr_assert_geq(ms, REQUEST_MS - 100, "cut after %lld ms, before the request timeout", ms);
    cr_assert_eq(buf[0], '\0', "no answer to half a request: %s", buf);
    close(slow);
    struct metric_at_least cut = {"cverse_gate_connections_cut_total{reason=\"request_timeout\"}", 1};
    cr_assert(h_poll(5000, metric_reached, &cut), "request_timeout cut not counted");

    /* a whole request is answered; the keep-alive connection is then closed after the idle timeout */
    int idle = dial(port);
    send_all(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert(read_response(idle, buf, sizeof buf, 5000), "no answer: %s", buf);
    cr_assert(!strncmp(buf, "HTTP/1.1 200", 12), "%s", buf);
    ms = read_until_closed(idle, buf, sizeof buf, 10000);
    cr_assert_geq(ms, 0, "the idle connection was not closed within 10 s");
    cr_assert_geq(ms, IDLE_MS - 300, "closed after %lld ms, before the idle timeout", ms);
    close(idle);
    struct metric_at_least idled = {"cverse_gate_connections_cut_total{reason=\"idle_timeout\"}", 1};
    cr_assert(h_poll(5000, metric_reached, &idled), "idle close not counted");

    /* MAX_CONNS connections held open (each answered once): one more is closed unanswered */
    int held[MAX_CONNS];
    for (int i = 0; i < MAX_CONNS; i++) {
        held[i] = dial(port);
        send_all(held[i], "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        cr_assert(read_response(held[i], buf, sizeof buf, 5000), "held connection %d not answered", i);
    }
    int extra_fd = dial(port);
    send_all(extra_fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    ms = read_until_closed(extra_fd, buf, sizeof buf, 5000);
    cr_assert_geq(ms, 0, "the connection over max_connections was not closed");
    cr_assert_eq(strstr(buf, "HTTP/1.1 200"), NULL, "answered over max_connections: %s", buf);
    close(extra_fd);
    for (int i = 0; i < MAX_CONNS; i++) close(held[i]);
    struct metric_at_least refused = {"cverse_gate_connections_cut_total{reason=\"max_connections\"}", 1};
    cr_assert(h_poll(5000, metric_reached, &refused), "refused connection not counted (or the gate stays full)");
    h_cluster_stop_all(&C); /* gate and node exit 0 (and leak nothing under ASan) */
}

Test(gate_limits, native_port_cuts_stalled_frames_idle_and_extra_connections)
{
    char extra[256], buf[4096];
    snprintf(extra, sizeof extra, "    request_timeout_ms: %d\n    idle_timeout_ms: %d\n    max_connections: %d\n",
             REQUEST_MS, IDLE_MS, MAX_CONNS);
    start(extra);
    int port = h_gate_grpc_port(&C, 0);
    double before = gate_metric("cverse_gate_connections_cut_total{reason=\"request_timeout\"}");
    /* a frame announced (16 bytes), 2 sent, then nothing: cut after the request timeout, before idle */
    int slow = dial(port);
    cr_assert_eq(write(slow, "\x00\x00\x00\x10" "ab", 6), 6);
    long long ms = read_until_closed(slow, buf, sizeof buf, 10000);
    cr_assert_geq(ms, 0, "the stalled frame was not cut within 10 s");
    cr_assert_geq(ms, REQUEST_MS - 100, "cut after %lld ms, before the request timeout", ms);
    cr_assert_lt(ms, IDLE_MS, "cut after %lld ms: by the idle timeout, not the request timeout", ms);
    close(slow);
    struct metric_at_least cut = {"cverse_gate_connections_cut_total{reason=\"request_timeout\"}", before + 1};
    cr_assert(h_poll(5000, metric_reached, &cut), "request_timeout cut not counted");

    /* a connection that says nothing is closed after the idle timeout */
    int idle = dial(port);
    ms = read_until_closed(idle, buf, sizeof buf, 10000);
    cr_assert_geq(ms, IDLE_MS - 300, "closed after %lld ms, before the idle timeout", ms);
    close(idle);
    struct metric_at_least idled = {"cverse_gate_connections_cut_total{reason=\"idle_timeout\"}", 1};
    cr_assert(h_poll(5000, metric_reached, &idled), "idle close not counted");

    /* MAX_CONNS connections held: one more is closed at once (well before the idle timeout) */
    int held[MAX_CONNS];
    for (int i = 0; i < MAX_CONNS; i++) held[i] = dial(port);
    int extra_fd = dial(port);
    ms = read_until_closed(extra_fd, buf, sizeof buf, 5000);
    cr_assert_geq(ms, 0, "the connection over max_connections was not closed");
    cr_assert_lt(ms, IDLE_MS - 300, "closed after %lld ms: by the idle timeout, not at once", ms);
    close(extra_fd);
    for (int i = 0; i < MAX_CONNS; i++) close(held[i]);
    struct metric_at_least refused = {"cverse_gate_connections_cut_total{reason=\"max_connections\"}", 1};
    cr_assert(h_poll(5000, metric_reached, &refused), "refused connection not counted");
    h_cluster_stop_all(&C);
}

Test(gate_limits, native_rate_limit_answers_resource_exhausted)
{
    start("    rate_limit_per_sec: 1\n    rate_limit_burst: 3\n");
    char args[256];
    snprintf(args, sizeof args, "status --gate 127.0.0.1:%d", h_gate_grpc_port(&C, 0));
    int ok = 0, limited = 0, code;
    for (int i = 0; i < 10 && !limited; i++) {
        char *out = h_cli(args, &code);
        if (code == 0) ok++;
        else if (strstr(out, "RESOURCE_EXHAUSTED") && strstr(out, "rate limit exceeded")) limited++;
        else cr_assert_fail("neither ok nor RESOURCE_EXHAUSTED (exit %d): %s", code, out);
        free(out);
    }
    cr_assert_eq(limited, 1, "10 calls at 1/s (burst 3) were never limited");
    cr_assert_geq(ok, 3, "the burst did not go through: %d", ok);
    struct metric_at_least m = {"cverse_gate_rate_limited_total", 1};
    cr_assert(h_poll(10000, metric_reached, &m), "RESOURCE_EXHAUSTED not counted");
    h_cluster_stop_all(&C);
}

/* One request with Connection: close on a fresh connection: the whole answer (head and body). */
static void one_request(int port, const char *path, char *buf, size_t cap)
{
    char req[256];
    int fd = dial(port);
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
    send_all(fd, req);
    cr_assert_geq(read_until_closed(fd, buf, cap, 5000), 0);
    close(fd);
}

static bool healthz_ok(void *arg)
{
    char buf[4096];
    one_request(*(int *)arg, "/healthz", buf, sizeof buf);
    return !strncmp(buf, "HTTP/1.1 200", 12);
}

Test(gate_limits, rate_limit_answers_429_with_retry_after)
{
    start("    rate_limit_per_sec: 1\n    rate_limit_burst: 3\n");
    int port = h_gate_http_port(&C, 0);
    char buf[4096];
    int ok = 0, limited = 0;
    unsigned long long t0 = h_now_ms();
    for (int i = 0; i < 10 && !limited; i++) {
        one_request(port, "/healthz", buf, sizeof buf);
        if (!strncmp(buf, "HTTP/1.1 200", 12)) ok++;
        else if (!strncmp(buf, "HTTP/1.1 429", 12)) limited++;
        else cr_assert_fail("neither 200 nor 429: %s", buf);
    }
    cr_assert_eq(limited, 1, "10 requests at once at 1/s (burst 3) were never limited");
    /* at most the burst plus what refilled meanwhile (1/s): a loaded machine may take a while */
    unsigned long long refilled = (h_now_ms() - t0) / 1000 + 1;
    cr_assert_leq(ok, 3 + (int)refilled, "more than the burst went through: %d", ok);
    cr_assert(strstr(buf, "\r\nRetry-After: 1\r\n"), "no Retry-After (1 s at 1/s): %s", buf);
    char *first = strstr(buf, "Retry-After: ");
    cr_assert_null(strstr(first + 1, "Retry-After: "), "one Retry-After only: %s", buf);
    cr_assert(strstr(buf, "\"code\":\"RESOURCE_EXHAUSTED\""), "%s", buf);
    /* after waiting, served again */
    cr_assert(h_poll(5000, healthz_ok, &port), "still limited after waiting");
    struct metric_at_least m = {"cverse_gate_rate_limited_total", 1};
    cr_assert(h_poll(10000, metric_reached, &m), "429 not counted");
    h_cluster_stop_all(&C);
}

/* ---- TLS ---- */

static char ca[400], other_ca[400];

/* A TLS gate: certificates made in the cluster's dir, named relative to the config file. */
static void init_tls(const char *cert, const char *key)
{
    struct h_opts o = {.gates = 1};
    h_cluster_init_ex(&C, 1, 1, 1000, &o);
    cr_assert_eq(cv_test_make_cert(C.dir, "gate"), 0, "openssl could not make a certificate");
    cr_assert_eq(cv_test_make_cert(C.dir, "other"), 0);
    snprintf(ca, sizeof ca, "%s/gate-cert.pem", C.dir);
    snprintf(other_ca, sizeof other_ca, "%s/other-cert.pem", C.dir);
    FILE *f = fopen(C.config, "a");
    cr_assert_not_null(f);
    fprintf(f, "    tls_cert_file: %s\n    tls_key_file: %s\n", cert, key);
    fclose(f);
}

struct body {
    char buf[8192];
    size_t len;
    const char *stop_at; /* a streaming response: stop reading once this arrived */
};

static size_t on_data(char *p, size_t sz, size_t n, void *arg)
{
    struct body *b = arg;
    size_t len = sz * n, room = sizeof b->buf - 1 - b->len;
    memcpy(b->buf + b->len, p, len < room ? len : room);
    b->len += len < room ? len : room;
    b->buf[b->len] = '\0';
    return b->stop_at && strstr(b->buf, b->stop_at) ? 0 : len; /* 0 ends the transfer */
}

/* A request on handle h (reused: keep-alive) to https://127.0.0.1:<gate port><path>, verified against
 * cafile (NULL: the system's store). The curl result; *status the HTTP status (0 if none). */
static CURLcode https(CURL *h, const char *scheme, const char *path, const char *cafile, bool post, struct body *b,
                      long *status)
{
    char url[256];
    snprintf(url, sizeof url, "%s://127.0.0.1:%d%s", scheme, h_gate_http_port(&C, 0), path);
    b->len = 0;
    b->buf[0] = '\0';
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CAINFO, cafile);
    curl_easy_setopt(h, CURLOPT_CAPATH, cafile ? NULL : "/etc/ssl/certs");
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
    if (post) curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
    else curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    CURLcode rc = curl_easy_perform(h);
    *status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    return rc;
}

static bool tls_ready(void *arg)
{
    long st;
    struct body b = {0};
    free(h_get_text(&C, 0, "/ready", &st));
    if (st != 200) return false;
    CURL *h = curl_easy_init();
    https(h, "https", "/ready", ca, false, &b, &st);
    curl_easy_cleanup(h);
    return st == 200;
}

static void start_tls(void)
{
    init_tls("gate-cert.pem", "gate-key.pem");
    h_node_start(&C, 0);
    h_gate_start(&C, 0);
    cr_assert(h_poll(READY_MS, tls_ready, NULL), "node and TLS gate did not become ready");
}

Test(gate_limits, tls_gate_answers_https_and_refuses_unverified_clients)
{
    start_tls();
    static struct body b;
    long st, conns = -1;
    CURL *h = curl_easy_init();
    cr_assert_eq(https(h, "https", "/healthz", ca, false, &b, &st), CURLE_OK);
    cr_assert_eq(st, 200);
    cr_assert(strstr(b.buf, "\"status\":\"ok\""), "%s", b.buf);
    /* keep-alive: the next requests reuse the connection */
    cr_assert_eq(https(h, "https", "/api/v1/objects/call/SimpleCounter/tls-1/Increment", ca, true, &b, &st), CURLE_OK);
    cr_assert_eq(st, 200, "%s", b.buf);
    cr_assert_eq(h_response_value(strdup(b.buf), st), 1);
    curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &conns);
    cr_assert_eq(conns, 0, "a new connection for the second request: no keep-alive");
    /* the SSE stream over TLS: its first event */
    b.stop_at = "event: register";
    cr_assert_eq(https(h, "https", "/api/v1/events/stream", ca, false, &b, &st), CURLE_WRITE_ERROR, "%s", b.buf);
    cr_assert_eq(st, 200);
    cr_assert(strstr(b.buf, "data: {\"clientId\":"), "%s", b.buf);
    b.stop_at = NULL;
    curl_easy_cleanup(h);

    /* a client that does not trust the certificate fails verification; so does the system's store */
    h = curl_easy_init();
    cr_assert_eq(https(h, "https", "/healthz", other_ca, false, &b, &st), CURLE_PEER_FAILED_VERIFICATION);
    cr_assert_eq(https(h, "https", "/healthz", NULL, false, &b, &st), CURLE_PEER_FAILED_VERIFICATION);
    cr_assert_eq(st, 0);
    /* plain HTTP to the TLS port: no HTTP answer */
    CURLcode rc = https(h, "http", "/healthz", NULL, false, &b, &st);
    cr_assert(rc != CURLE_OK || st != 200, "plain HTTP answered 200 on a TLS port");
    curl_easy_cleanup(h);
    h = curl_easy_init();
    cr_assert_eq(https(h, "https", "/metrics", ca, false, &b, &st), CURLE_OK);
    curl_easy_cleanup(h);
    cr_assert_geq(metric(b.buf, "cverse_gate_connections_cut_total{reason=\"tls_failed\"}"), 1, "%s", b.buf);
    h_cluster_stop_all(&C);
}

/* `cverse call` of SimpleCounter/tls-native Increment through the gate's native port with flags. */
static char *cli_call(const char *flags, int *code)
{
    char args[1024];
    snprintf(args, sizeof args, "call --gate 127.0.0.1:%d --timeout 5000 %s SimpleCounter tls-native Increment",
             h_gate_grpc_port(&C, 0), flags);
    return h_cli(args, code);
}

static double tls_failed_metric(void)
{
    static struct body b;
    long st;
    CURL *h = curl_easy_init();
    cr_assert_eq(https(h, "https", "/metrics", ca, false, &b, &st), CURLE_OK);
    curl_easy_cleanup(h);
    return metric(b.buf, "cverse_gate_connections_cut_total{reason=\"tls_failed\"}");
}

static bool tls_failed_reached(void *arg)
{
    return tls_failed_metric() >= *(double *)arg;
}

Test(gate_limits, native_port_tls_with_the_cli)
{
    start_tls();
    char flags[600];
    int code;
    snprintf(flags, sizeof flags, "--tls --ca %s", ca);
    char *out = cli_call(flags, &code);
    cr_assert_eq(code, 0, "%s", out);
    cr_assert(strstr(out, "1"), "%s", out);
    free(out);
    snprintf(flags, sizeof flags, "--ca %s", ca); /* --ca implies --tls */
    out = cli_call(flags, &code);
    cr_assert_eq(code, 0, "%s", out);
    free(out);
    char args[700]; /* options before the command, and status over TLS */
    snprintf(args, sizeof args, "--tls --ca %s status --gate 127.0.0.1:%d", ca, h_gate_grpc_port(&C, 0));
    out = h_cli(args, &code);
    cr_assert_eq(code, 0, "%s", out);
    free(out);
    double before = tls_failed_metric();
    /* the system's store does not know the test CA; another CA does not sign the gate's certificate */
    out = cli_call("--tls", &code);
    cr_assert_eq(code, 3, "%s", out);
    cr_assert(strstr(out, "certificate verify failed"), "%s", out);
    cr_assert(strstr(out, "--ca FILE"), "no hint: %s", out);
    free(out);
    snprintf(flags, sizeof flags, "--ca %s", other_ca);
    out = cli_call(flags, &code);
    cr_assert_eq(code, 3, "%s", out);
    cr_assert(strstr(out, "certificate verify failed"), "%s", out);
    free(out);
    /* a plain client: the gate reads no frame from it */
    out = cli_call("", &code);
    cr_assert_neq(code, 0, "a plain call on the TLS port succeeded: %s", out);
    free(out);
    double want = before + 3;
    cr_assert(h_poll(5000, tls_failed_reached, &want), "tls_failed %.0f, want %.0f", tls_failed_metric(), want);
    h_cluster_stop_all(&C);
}

/* Reads a whole file (malloc'ed, "" when absent). */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    char *s = calloc(1, 1 << 16);
    cr_assert_not_null(s);
    if (f) {
        s[fread(s, 1, (1 << 16) - 1, f)] = '\0';
        fclose(f);
    }
    return s;
}

/* cverse-bench against target (--http URL or --gate HOST:PORT) with up to three extra flags (NULL ends
 * them); its exit status, stdout and stderr (malloc'ed). */
static int bench_run(char **out, char **err, const char *target_flag, const char *target, const char *f1,
                     const char *f2, const char *f3)
{
    const char *bin = getenv("CVERSE_BENCH_BIN");
    cr_assert_not_null(bin, "CVERSE_BENCH_BIN not set");
    char po[400], pe[400];
    snprintf(po, sizeof po, "%s/bench.out", C.dir);
    snprintf(pe, sizeof pe, "%s/bench.err", C.dir);
    char *argv[] = {(char *)bin, (char *)target_flag, (char *)target, "--concurrency", "4", "--objects", "8",
                    "--duration", "1s", "--warmup", "0", "--json", "--quiet", (char *)f1, (char *)f2, (char *)f3,
                    NULL};
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        int fo = open(po, O_WRONLY | O_CREAT | O_TRUNC, 0644), fe = open(pe, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fo < 0 || fe < 0 || dup2(fo, 1) < 0 || dup2(fe, 2) < 0) _exit(126);
        execv(bin, argv);
        _exit(127);
    }
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    *out = slurp(po);
    *err = slurp(pe);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* cverse-bench --http https://127.0.0.1:<gate port> [ca_flag ca_file]. */
static int bench_https(char **out, char **err, const char *ca_flag, const char *ca_file)
{
    char url[64];
    snprintf(url, sizeof url, "https://127.0.0.1:%d", h_gate_http_port(&C, 0));
    return bench_run(out, err, "--http", url, ca_flag, ca_file, NULL);
}

/* The JSON report has calls > 0, all ok, no errors. */
static void bench_all_ok(const char *out)
{
    json_t *j = json_loads(out, 0, NULL);
    cr_assert_not_null(j, "%s", out);
    double calls = json_number_value(json_object_get(j, "calls")), ok = json_number_value(json_object_get(j, "ok"));
    cr_assert_gt(calls, 0, "%s", out);
    cr_assert_eq(ok, calls, "%s", out);
    cr_assert_eq(json_object_size(json_object_get(j, "errors")), 0, "%s", out);
    json_decref(j);
}

Test(gate_limits, bench_over_the_native_tls_port_verifies_with_ca)
{
    start_tls();
    char gate[64], *out, *err;
    snprintf(gate, sizeof gate, "127.0.0.1:%d", h_gate_grpc_port(&C, 0));
    int rc = bench_run(&out, &err, "--gate", gate, "--tls", "--ca", ca);
    cr_assert_eq(rc, 0, "exit %d\nstdout: %s\nstderr: %s", rc, out, err);
    bench_all_ok(out);
    free(out);
    free(err);
    rc = bench_run(&out, &err, "--gate", gate, "--tls", NULL, NULL);
    cr_assert_eq(rc, 1, "exit %d\nstdout: %s\nstderr: %s", rc, out, err);
    cr_assert(strstr(err, "certificate verify failed"), "%s", err);
    free(out);
    free(err);
    h_cluster_stop_all(&C);
}

Test(gate_limits, bench_over_https_verifies_with_ca)
{
    start_tls();
    char *out, *err;
    int rc = bench_https(&out, &err, "--ca", ca);
    cr_assert_eq(rc, 0, "exit %d\nstdout: %s\nstderr: %s", rc, out, err);
    bench_all_ok(out);
    free(out);
    free(err);
    /* without the CA (the system's store): the certificate does not verify, nothing is created */
    rc = bench_https(&out, &err, NULL, NULL);
    cr_assert_eq(rc, 1, "exit %d\nstdout: %s\nstderr: %s", rc, out, err);
    cr_assert(strstr(err, "certificate verify failed"), "%s", err);
    free(out);
    free(err);
    h_cluster_stop_all(&C);
}

Test(gate_limits, tls_certificate_that_does_not_load_exits_2)
{
    init_tls("gate-key.pem", "gate-key.pem"); /* a key is not a certificate */
    h_node_start(&C, 0);
    h_gate_start(&C, 0);
    int status = 0;
    pid_t pid = C.gate_pid[0], got = 0;
    unsigned long long t0 = h_now_ms();
    while (got == 0 && h_now_ms() - t0 < 20000) {
        got = waitpid(pid, &status, WNOHANG);
        if (got == 0) poll(NULL, 0, 20);
    }
    cr_assert_eq(got, pid, "the gate did not exit");
    C.gate_pid[0] = 0;
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 2, "exit status %d", status);
    char path[400], log[8192] = "";
    snprintf(path, sizeof path, "%s/gate-1.log", C.dir);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    log[fread(log, 1, sizeof log - 1, f)] = '\0';
    fclose(f);
    cr_assert(strstr(log, ": gates[0].tls_cert_file: ") && strstr(log, "gate-key.pem: cannot load the certificate"),
              "%s", log);
}
