/* Authentication and access rules at the gate (issue 14, docs/security.md "At the gate"): one node and
 * one gate with a tokens file and Goverse's object_access_rules / object_lifecycle_rules; HTTP with
 * libcurl, the native protocol with the client library, the CLI with --token-file. The Probe module's
 * Who answers the caller the object sees; AskWho asks Who of "<id>-target" object-to-object. */
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cverse/client.h"
#include "harness.h"
#include "sharding_demo.pb-c.h"

static struct h_cluster C;

static const char rules[] =
    "object_access_rules:\n"
    "  - {type: Probe, method: Overdraw, access: REJECT}\n"
    "  - {type: Probe, id: \"/.*-target/\", method: Who, access: INTERNAL}\n"
    "  - {type: Probe, method: Stamp, access: EXTERNAL}\n"
    "  - {type: \"/.*/\", access: ALLOW}\n"
    "object_lifecycle_rules:\n"
    "  - {type: Probe, id: \"/forbidden-.*/\", lifecycle: CREATE, access: REJECT}\n"
    "  - {type: Probe, lifecycle: DELETE, access: ALLOW}\n";

static void teardown(void)
{
    h_cluster_destroy(&C);
}

TestSuite(gateauth, .fini = teardown, .timeout = 240);

/* The config with auth_tokens_file (and the lines more, if any) under every gate, and the tokens file
 * next to it. */
static void add_tokens(const char *more)
{
    char path[400], *text = malloc(1 << 16);
    FILE *f = fopen(C.config, "r");
    cr_assert(f && text);
    size_t n = fread(text, 1, (1 << 16) - 1, f);
    text[n] = 0;
    fclose(f);
    f = fopen(C.config, "w");
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        fprintf(f, "%s\n", line);
        if (strstr(line, "- id: \"gate-")) fprintf(f, "    auth_tokens_file: tokens.txt\n%s", more ? more : "");
    }
    fclose(f);
    free(text);
    snprintf(path, sizeof path, "%s/tokens.txt", C.dir);
    f = fopen(path, "w");
    fprintf(f, "# test users\ntok-alice alice admin,ops\ntok-bob bob\n");
    fclose(f);
    snprintf(path, sizeof path, "%s/alice.token", C.dir);
    f = fopen(path, "w");
    fprintf(f, "tok-alice\n");
    fclose(f);
}

/* hook: the gate also loads the gate module (its own command line: nodes get only the probe module).
 * gate_lines: more keys of the gate, or NULL. */
static void start_with(bool hook, const char *gate_lines)
{
    struct h_opts o = {.gates = 1, .module = getenv("CVERSE_PROBE_MODULE"), .config_extra = rules};
    h_cluster_init_ex(&C, 1, 1, 1000, &o);
    add_tokens(gate_lines);
    h_node_start(&C, 0);
    if (hook) {
        char log[400], *mod = getenv("CVERSE_GATE_HOOK_MODULE");
        cr_assert_not_null(mod, "CVERSE_GATE_HOOK_MODULE not set (run through meson test)");
        snprintf(log, sizeof log, "%s/gate-1.log", C.dir);
        char *argv[] = {getenv("CVERSE_GATE_BIN"), "--config", C.config, "--gate-id", "gate-1", "--module", mod,
                        "--module", C.module, NULL};
        C.gate_pid[0] = h_spawn(log, argv); /* stopped by h_cluster_destroy, by this PID */
    } else {
        h_gate_start(&C, 0);
    }
    cr_assert(h_poll(60000, h_all_ready, &C), "node and gate did not become ready (/ready needs no token)");
}

static void start(void)
{
    start_with(false, NULL);
}

struct body {
    char buf[8192];
    size_t len;
    bool www_bearer; /* a WWW-Authenticate: Bearer header came */
};

static size_t on_body(char *p, size_t sz, size_t n, void *data)
{
    struct body *b = data;
    size_t k = sz * n, room = sizeof b->buf - 1 - b->len;
    memcpy(b->buf + b->len, p, k < room ? k : room);
    b->len += k < room ? k : room;
    b->buf[b->len] = 0;
    return k;
}

static size_t on_header(char *p, size_t sz, size_t n, void *data)
{
    struct body *b = data;
    if (sz * n >= 24 && !strncasecmp(p, "WWW-Authenticate: Bearer", 24)) b->www_bearer = true;
    return sz * n;
}

/* POST path on the gate with an optional token and X-Client-ID; the status, the body in *b. */
static long post(const char *path, const char *token, const char *client_id, struct body *b)
{
    char url[512], auth[256], cid[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", h_gate_http_port(&C, 0), path);
    memset(b, 0, sizeof *b);
    CURL *h = curl_easy_init();
    struct curl_slist *hs = NULL;
    if (token) hs = curl_slist_append(hs, (snprintf(auth, sizeof auth, "Authorization: Bearer %s", token), auth));
    if (client_id) hs = curl_slist_append(hs, (snprintf(cid, sizeof cid, "X-Client-ID: %s", client_id), cid));
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, "{}");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, b);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 30000L);
    long st = 0;
    if (curl_easy_perform(h) == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &st);
    curl_slist_free_all(hs);
    curl_easy_cleanup(h);
    return st;
}

Test(gateauth, http_tokens_caller_and_rules)
{
    start();
    struct body b;
    long st = post("/api/v1/objects/call/Probe/p1/Who", NULL, NULL, &b);
    cr_assert_eq(st, 401, "no token: %ld %s", st, b.buf);
    cr_assert(strstr(b.buf, "\"code\":\"UNAUTHENTICATED\""), "%s", b.buf);
    cr_assert(b.www_bearer, "401 carries WWW-Authenticate: Bearer");
    cr_assert_eq(post("/api/v1/objects/call/Probe/p1/Who", "tok-wrong", NULL, &b), 401, "%s", b.buf);
    cr_assert_eq(post("/api/v1/objects/call/Probe/p1/Who", "tok-alic", NULL, &b), 401, "a token's prefix: %s", b.buf);
    cr_assert_eq(post("/api/v1/objects/create/Probe/p1", NULL, NULL, &b), 401, "%s", b.buf);

    st = post("/api/v1/objects/call/Probe/p1/Who", "tok-alice", NULL, &b);
    cr_assert_eq(st, 200, "%ld %s", st, b.buf);
    cr_assert(strstr(b.buf, "user=alice roles=admin,ops internal=0 admin=1"), "the object sees alice: %s", b.buf);
    st = post("/api/v1/objects/call/Probe/p1/Who", "tok-bob", NULL, &b);
    cr_assert_eq(st, 200, "%ld %s", st, b.buf);
    cr_assert(strstr(b.buf, "user=bob roles= internal=0 admin=0"), "%s", b.buf);

    /* object_access_rules: REJECT, INTERNAL from a client, EXTERNAL from a client */
    st = post("/api/v1/objects/call/Probe/p1/Overdraw", "tok-alice", NULL, &b);
    cr_assert_eq(st, 403, "REJECT: %ld %s", st, b.buf);
    cr_assert(strstr(b.buf, "\"code\":\"PERMISSION_DENIED\""), "%s", b.buf);
    cr_assert_eq(post("/api/v1/objects/call/Probe/p1-target/Who", "tok-alice", NULL, &b), 403, "INTERNAL: %s", b.buf);
    st = post("/api/v1/objects/call/Probe/p1/AskWho", "tok-alice", NULL, &b);
    cr_assert_eq(st, 200, "INTERNAL from an object: %ld %s", st, b.buf);
    cr_assert(strstr(b.buf, "user=alice roles=admin,ops internal=1"), "the identity crossed the o2o call: %s", b.buf);
    cr_assert_eq(post("/api/v1/objects/call/Probe/p2/Stamp", "tok-alice", NULL, &b), 200, "EXTERNAL: %s", b.buf);

    /* object_lifecycle_rules: an explicit create, and a create by a first call */
    cr_assert_eq(post("/api/v1/objects/create/Probe/forbidden-1", "tok-alice", NULL, &b), 403, "%s", b.buf);
    st = post("/api/v1/objects/call/Probe/forbidden-2/Who", "tok-alice", NULL, &b);
    cr_assert_eq(st, 403, "the first call's create is a CREATE: %ld %s", st, b.buf);
    cr_assert_eq(post("/api/v1/objects/create/Probe/allowed-1", "tok-alice", NULL, &b), 200, "%s", b.buf);
    cr_assert_eq(post("/api/v1/objects/delete/Probe/allowed-1", "tok-alice", NULL, &b), 200, "%s", b.buf);

    /* the operational endpoints stay open */
    long hst;
    free(h_get_port(h_gate_http_port(&C, 0), "/healthz", &hst));
    cr_assert_eq(hst, 200);
    free(h_get_port(h_gate_http_port(&C, 0), "/metrics", &hst));
    cr_assert_eq(hst, 200);
    /* ... and the push stream does not */
    char *ev = h_get_port(h_gate_http_port(&C, 0), "/api/v1/events/stream", &hst);
    cr_assert_eq(hst, 401, "the event stream needs a token: %s", ev ? ev : "");
    free(ev);
    h_cluster_stop_all(&C); /* gate and node exit 0 (under ASan: without leaks) */
}

Test(gateauth, native_tokens_and_client_ids)
{
    start();
    char err[256] = "", gate[64], *json = NULL;
    snprintf(gate, sizeof gate, "127.0.0.1:%d", h_gate_grpc_port(&C, 0));
    cv_client *anon, *bob;
    cr_assert_eq(cv_client_connect(gate, 5000, &anon), 0);
    int rv = cv_client_call_json(anon, "Probe", "n1", "Who", NULL, &json, 10000, err, sizeof err);
    cr_assert_eq(rv, CV_EAUTH, "no gate.auth: %d %s", rv, err);
    cr_assert_eq(cv_client_set_token(anon, "tok-nobody"), 0);
    rv = cv_client_call_json(anon, "Probe", "n1", "Who", NULL, &json, 10000, err, sizeof err);
    cr_assert_eq(rv, CV_EAUTH, "a wrong token: %d %s", rv, err);
    cr_assert_eq(cv_client_set_token(anon, "tok-alice"), 0);
    rv = cv_client_call_json(anon, "Probe", "n1", "Who", NULL, &json, 10000, err, sizeof err);
    cr_assert_eq(rv, 0, "%s", err);
    cr_assert(strstr(json, "user=alice"), "%s", json);
    free(json);
    json = NULL;
    rv = cv_client_call_json(anon, "Probe", "n1", "Overdraw", NULL, &json, 10000, err, sizeof err);
    cr_assert_eq(rv, CV_EPERM, "REJECT on the native protocol: %d %s", rv, err);

    /* bob registers a push client; alice may not claim its id, bob may */
    cr_assert_eq(cv_client_connect(gate, 5000, &bob), 0);
    cr_assert_eq(cv_client_set_token(bob, "tok-bob"), 0);
    char id[256];
    cr_assert_eq(cv_client_register(bob, id, sizeof id, 10000, err, sizeof err), 0, "%s", err);
    struct body b;
    long st = post("/api/v1/objects/call/Probe/n1/Caller", "tok-alice", id, &b);
    cr_assert_eq(st, 403, "alice claims bob's client id: %ld %s", st, b.buf);
    st = post("/api/v1/objects/call/Probe/n1/Caller", "tok-bob", id, &b);
    cr_assert_eq(st, 200, "%ld %s", st, b.buf);
    cr_assert(strstr(b.buf, id), "the object sees bob's client id: %s", b.buf);
    cv_client_close(bob);
    cv_client_close(anon);

    /* the owner node applies the rules itself (a request that did not come through this gate) */
    char node[64];
    snprintf(node, sizeof node, "127.0.0.1:%d", C.base);
    cv_client *n;
    cr_assert_eq(cv_client_connect(node, 5000, &n), 0);
    Cverse__Rpc__CreateRequest cq = CVERSE__RPC__CREATE_REQUEST__INIT;
    cq.type = "Probe";
    cq.id = "forbidden-9";
    uint8_t buf[128], *out = NULL;
    size_t olen;
    rv = cv_client_rpc(n, "objects.create", buf, cverse__rpc__create_request__pack(&cq, buf), &out, &olen, 10000, err,
                       sizeof err);
    free(out);
    cr_assert_eq(rv, CV_EPERM, "a client's create at the node: %d %s", rv, err);
    Cverse__Rpc__CallRequest q = CVERSE__RPC__CALL_REQUEST__INIT;
    q.type = "Probe";
    q.id = "n1";
    q.method = "Overdraw";
    out = NULL;
    rv = cv_client_rpc(n, "objects.call", buf, cverse__rpc__call_request__pack(&q, buf), &out, &olen, 10000, err,
                       sizeof err);
    free(out);
    cr_assert_eq(rv, CV_EPERM, "REJECT at the node: %d %s", rv, err);
    q.internal = true; /* REJECT holds for object-to-object calls too */
    out = NULL;
    rv = cv_client_rpc(n, "objects.call", buf, cverse__rpc__call_request__pack(&q, buf), &out, &olen, 10000, err,
                       sizeof err);
    free(out);
    cr_assert_eq(rv, CV_EPERM, "REJECT, internal: %d %s", rv, err);
    cv_client_close(n);
    h_cluster_stop_all(&C);
}

Test(gateauth, cli_token_file)
{
    start();
    char args[1024];
    int code;
    snprintf(args, sizeof args, "call --gate 127.0.0.1:%d Probe c1 Who", h_gate_grpc_port(&C, 0));
    char *out = h_cli(args, &code);
    cr_assert_eq(code, 1, "no token: %s", out);
    cr_assert(strstr(out, "UNAUTHENTICATED") || strstr(out, "credentials") || strstr(out, "gate.auth"), "%s", out);
    free(out);
    snprintf(args, sizeof args, "--token-file %s/alice.token call --gate 127.0.0.1:%d Probe c1 Who", C.dir,
             h_gate_grpc_port(&C, 0)); /* cverse --token-file FILE <command> */
    out = h_cli(args, &code);
    cr_assert_eq(code, 0, "%s", out);
    cr_assert(strstr(out, "user=alice"), "%s", out);
    free(out);
    char env[400];
    snprintf(env, sizeof env, "%s/alice.token", C.dir);
    setenv("CVERSE_TOKEN_FILE", env, 1); /* inherited by the CLI */
    snprintf(args, sizeof args, "status --gate 127.0.0.1:%d", h_gate_grpc_port(&C, 0));
    out = h_cli(args, &code);
    unsetenv("CVERSE_TOKEN_FILE");
    cr_assert_eq(code, 0, "$CVERSE_TOKEN_FILE: %s", out);
    free(out);
    snprintf(args, sizeof args, "--token-file %s/missing.token status --gate 127.0.0.1:%d", C.dir,
             h_gate_grpc_port(&C, 0));
    out = h_cli(args, &code);
    cr_assert_eq(code, 2, "an unreadable token file is a usage error: %s", out);
    free(out);
    h_cluster_stop_all(&C);
}

Test(gateauth, module_authorise_hook)
{
    start_with(true, NULL);
    struct body b;
    long st = post("/api/v1/objects/call/Probe/h1/Who", "hook-carol", NULL, &b);
    cr_assert_eq(st, 200, "the hook's identity: %ld %s", st, b.buf);
    cr_assert(strstr(b.buf, "user=carol roles=hooked internal=0"), "%s", b.buf);
    st = post("/api/v1/objects/call/Probe/h1/Who", "tok-bob", NULL, &b);
    cr_assert_eq(st, 200, "no opinion: the tokens file decides: %ld %s", st, b.buf);
    cr_assert(strstr(b.buf, "user=bob"), "%s", b.buf);
    cr_assert_eq(post("/api/v1/objects/call/Probe/h1/Who", "banned", NULL, &b), 401, "the hook refuses: %s", b.buf);
    cr_assert_eq(post("/api/v1/objects/call/Probe/h1/Who", "nobody", NULL, &b), 401, "%s", b.buf);
    char err[256] = "", gate[64], *json = NULL;
    snprintf(gate, sizeof gate, "127.0.0.1:%d", h_gate_grpc_port(&C, 0));
    cv_client *c;
    cr_assert_eq(cv_client_connect(gate, 5000, &c), 0);
    cr_assert_eq(cv_client_set_token(c, "hook-dave"), 0);
    int rv = cv_client_call_json(c, "Probe", "h1", "Who", NULL, &json, 10000, err, sizeof err);
    cr_assert_eq(rv, 0, "native through the hook: %s", err);
    cr_assert(strstr(json, "user=dave roles=hooked"), "%s", json);
    free(json);
    cv_client_close(c);
    h_cluster_stop_all(&C);
}

/* With authentication, the rate limit charges the user, not the address: alice spends her burst and
 * waits, bob (same address) is still served; anonymous requests are charged to the address. */
Test(gateauth, rate_limit_charges_the_user)
{
    start_with(false, "    rate_limit_per_sec: 1\n    rate_limit_burst: 2\n");
    struct body b;
    long st = 0;
    for (int i = 0; i < 10 && st != 429; i++) st = post("/api/v1/objects/call/Probe/r1/Who", "tok-alice", NULL, &b);
    cr_assert_eq(st, 429, "alice runs out of her burst of 2 (1 per second): %ld %s", st, b.buf);
    st = post("/api/v1/objects/call/Probe/r1/Who", "tok-bob", NULL, &b);
    cr_assert_eq(st, 200, "bob has a bucket of his own: %ld %s", st, b.buf);
    h_cluster_stop_all(&C);
}
