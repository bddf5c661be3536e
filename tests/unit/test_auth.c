/* Unit tests of src/auth: the handshake state machine driven directly (right secret, wrong secret,
 * reflection, truncated and garbage input), the secret file rules, the protected-mode address check and
 * the failure counters. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/guard.h"
#include "auth/handshake.h"
#include "auth/secret.h"
#include "auth/sign.h"
#include "util/log.h"
#include "cverse/error.h"

#include "lsan_check.h"
#include "tmpdir.h"

TestSuite(handshake, .fini = cv_lsan_check);
TestSuite(secret, .fini = cv_lsan_check);
TestSuite(guard, .fini = cv_lsan_check);

static struct cv_secret key(const char *s)
{
    struct cv_secret k;
    cr_assert_eq(cv_secret_from_bytes(s, strlen(s), &k), 0);
    return k;
}

/* Moves what from has to send into to, n bytes at a time; the result of the last feed. */
static int relay(struct cv_auth_hs *from, struct cv_auth_hs *to, size_t step)
{
    uint8_t buf[sizeof from->out];
    size_t len = cv_auth_hs_take(from, buf), off = 0, used;
    int rv = CV_AUTH_HS_MORE;
    while (off < len && rv == CV_AUTH_HS_MORE) {
        size_t n = len - off < step ? len - off : step;
        rv = cv_auth_hs_feed(to, buf + off, n, &used);
        off += used;
    }
    return rv;
}

/* A whole exchange; the outcomes of the client and the server. */
static void exchange(const char *ck, const char *sk, size_t step, int *crv, int *srv)
{
    struct cv_secret a = key(ck), b = key(sk);
    struct cv_auth_hs c, s;
    cv_auth_hs_init(&c, &a, CV_AUTH_CLIENT);
    cv_auth_hs_init(&s, &b, CV_AUTH_SERVER);
    *srv = relay(&c, &s, step); /* client HELLO */
    *crv = relay(&s, &c, step); /* server HELLO + PROOF */
    int r = relay(&c, &s, step); /* client PROOF */
    if (*srv >= 0) *srv = r;
}

Test(handshake, same_secret_both_sides_done)
{
    for (size_t step = 1; step <= 80; step += 79) {
        int c, s;
        exchange("0123456789abcdef-secret", "0123456789abcdef-secret", step, &c, &s);
        cr_assert_eq(c, CV_AUTH_HS_DONE, "step %zu", step);
        cr_assert_eq(s, CV_AUTH_HS_DONE, "step %zu", step);
    }
}

Test(handshake, wrong_secret_fails_both_sides)
{
    int c, s;
    exchange("0123456789abcdef-secret", "0123456789abcdef-other!", 80, &c, &s);
    cr_assert_eq(c, CV_EAUTH);
    cr_assert_eq(s, CV_EAUTH);
}

Test(handshake, bytes_after_the_proof_are_left_for_frames)
{
    struct cv_secret k = key("0123456789abcdef");
    struct cv_auth_hs c, s;
    cv_auth_hs_init(&c, &k, CV_AUTH_CLIENT);
    cv_auth_hs_init(&s, &k, CV_AUTH_SERVER);
    uint8_t buf[256];
    size_t used;
    cr_assert_eq(relay(&s, &c, 100), CV_AUTH_HS_MORE); /* server HELLO: client queues its PROOF */
    size_t n = cv_auth_hs_take(&c, buf);
    cr_assert_eq(n, CV_AUTH_HELLO + CV_AUTH_MAC);
    memcpy(buf + n, "FRAME", 5);
    cr_assert_eq(cv_auth_hs_feed(&s, buf, n + 5, &used), CV_AUTH_HS_DONE);
    cr_assert_eq(used, n, "the handshake took %zu of %zu bytes", used, n);
    cr_assert_eq(cv_auth_hs_want(&s), 0);
}

Test(handshake, reflected_proof_fails)
{
    /* An attacker without the secret connects to a server and sends the server's own HELLO and PROOF
     * back: the nonce is the server's own (refused), and with a fresh nonce the server's PROOF (role
     * label "server") does not pass as a client's. */
    struct cv_secret k = key("0123456789abcdef");
    struct cv_auth_hs s, s2;
    uint8_t buf[128];
    size_t used;
    cv_auth_hs_init(&s, &k, CV_AUTH_SERVER);
    size_t n = cv_auth_hs_take(&s, buf);
    cr_assert_eq(cv_auth_hs_feed(&s, buf, n, &used), CV_EAUTH);
    cr_assert_eq(s.reason, CV_AUTH_R_NONCE);

    /* Second try: the attacker opens two connections and plays server 1's answer to server 2. */
    cv_auth_hs_init(&s, &k, CV_AUTH_SERVER);
    cv_auth_hs_init(&s2, &k, CV_AUTH_SERVER);
    uint8_t h2[128];
    size_t n2 = cv_auth_hs_take(&s2, h2);           /* server 2's HELLO */
    cv_auth_hs_take(&s, buf);                        /* server 1's HELLO, discarded */
    cr_assert_eq(cv_auth_hs_feed(&s, h2, n2, &used), CV_AUTH_HS_MORE); /* s proves itself over s2's nonce */
    n = cv_auth_hs_take(&s, buf);                    /* s's PROOF */
    cr_assert_eq(n, CV_AUTH_MAC);
    struct cv_auth_hs fake; /* what server 2 receives: a client HELLO with s's nonce, then s's PROOF */
    cv_auth_hs_init(&fake, &k, CV_AUTH_CLIENT);
    uint8_t hello[CV_AUTH_HELLO];
    cv_auth_hs_take(&fake, hello);
    memcpy(hello + 5, s.nonce, CV_AUTH_NONCE);
    cr_assert_eq(cv_auth_hs_feed(&s2, hello, sizeof hello, &used), CV_AUTH_HS_MORE);
    cr_assert_eq(cv_auth_hs_feed(&s2, buf, n, &used), CV_EAUTH);
    cr_assert_eq(s2.reason, CV_AUTH_R_PROOF);
}

Test(handshake, garbage_fails_at_the_first_wrong_byte)
{
    struct cv_secret k = key("0123456789abcdef");
    struct cv_auth_hs s;
    size_t used;
    cv_auth_hs_init(&s, &k, CV_AUTH_SERVER);
    cr_assert_eq(cv_auth_hs_feed(&s, "GET / HTTP/1.1\r\n", 16, &used), CV_EAUTH);
    cr_assert_eq(s.reason, CV_AUTH_R_MAGIC);
    cr_assert_eq(used, CV_AUTH_HELLO < 16 ? CV_AUTH_HELLO : 16);
    cr_assert_eq(cv_auth_hs_feed(&s, "CVAH", 4, &used), CV_EAUTH, "a failed handshake stays failed");

    /* A raft preamble (protocol 1, little-endian 64-bit) is not a HELLO either. */
    uint8_t raft[24] = {1};
    cv_auth_hs_init(&s, &k, CV_AUTH_SERVER);
    cr_assert_eq(cv_auth_hs_feed(&s, raft, sizeof raft, &used), CV_EAUTH);
    cr_assert_eq(s.reason, CV_AUTH_R_MAGIC);

    /* The right magic with another version. */
    cv_auth_hs_init(&s, &k, CV_AUTH_SERVER);
    cr_assert_eq(cv_auth_hs_feed(&s, "CVAH\x02", 5, &used), CV_EAUTH);
}

Test(handshake, truncated_input_waits_and_wants_exactly_the_rest)
{
    struct cv_secret k = key("0123456789abcdef");
    struct cv_auth_hs c, s;
    uint8_t buf[128];
    size_t used;
    cv_auth_hs_init(&c, &k, CV_AUTH_CLIENT);
    cv_auth_hs_init(&s, &k, CV_AUTH_SERVER);
    size_t n = cv_auth_hs_take(&c, buf);
    cr_assert_eq(cv_auth_hs_want(&s), CV_AUTH_HELLO);
    cr_assert_eq(cv_auth_hs_feed(&s, buf, n - 1, &used), CV_AUTH_HS_MORE);
    cr_assert_eq(cv_auth_hs_want(&s), 1);
    cr_assert_eq(cv_auth_hs_take(&s, buf + 64), CV_AUTH_HELLO, "no PROOF before the whole HELLO");
    cr_assert_eq(cv_auth_hs_feed(&s, buf + n - 1, 1, &used), CV_AUTH_HS_MORE);
    cr_assert_eq(cv_auth_hs_want(&s), CV_AUTH_MAC);
    cr_assert_eq(cv_auth_hs_take(&s, buf), CV_AUTH_MAC);
    uint8_t zero[CV_AUTH_MAC] = {0};
    cr_assert_eq(cv_auth_hs_feed(&s, zero, sizeof zero, &used), CV_EAUTH, "a made-up proof");
    cr_assert_eq(s.reason, CV_AUTH_R_PROOF);
}

/* ---- the secret file --------------------------------------------------------------------------------- */

static char dir[] = "/tmp/cverse-test-auth-XXXXXX";

static void dir_up(void)
{
    cr_assert_not_null(mkdtemp(dir));
}

static void dir_down(void)
{
    cv_tmpdir_remove(dir);
    strcpy(dir, "/tmp/cverse-test-auth-XXXXXX");
    unsetenv(CV_SECRET_ENV);
    cv_lsan_check();
}

static const char *write_file(const char *name, const char *text, mode_t mode)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    chmod(path, mode);
    return path;
}

Test(secret, trailing_newline_is_not_part_of_it, .init = dir_up, .fini = dir_down)
{
    struct cv_secret a, b;
    char err[256] = "";
    cr_assert_eq(cv_secret_load(write_file("s1", "0123456789abcdef\n", 0600), &a, err, sizeof err), 0, "%s", err);
    cr_assert_eq(cv_secret_load(write_file("s2", "0123456789abcdef", 0600), &b, err, sizeof err), 0, "%s", err);
    cr_assert_eq(memcmp(a.key, b.key, sizeof a.key), 0);
    cr_assert_eq(cv_secret_load(write_file("s3", "0123456789abcdeF", 0600), &b, err, sizeof err), 0);
    cr_assert_neq(memcmp(a.key, b.key, sizeof a.key), 0);
}

Test(secret, short_or_missing_is_an_error, .init = dir_up, .fini = dir_down)
{
    struct cv_secret a;
    char err[256] = "";
    cr_assert_eq(cv_secret_load(write_file("s", "short\n", 0600), &a, err, sizeof err), CV_EINVAL);
    cr_assert(strstr(err, "at least 16 bytes"), "%s", err);
    cr_assert_eq(cv_secret_load("/nonexistent/secret", &a, err, sizeof err), CV_EIO);
    cr_assert(strstr(err, "/nonexistent/secret"), "%s", err);
}

Test(secret, env_wins_over_the_config, .init = dir_up, .fini = dir_down)
{
    const char *p = write_file("env", "from-the-environment\n", 0600);
    char envp[256];
    snprintf(envp, sizeof envp, "%s", p);
    cr_assert_str_eq(cv_secret_path("/etc/cfg-secret"), "/etc/cfg-secret");
    cr_assert_null(cv_secret_path(NULL));
    setenv(CV_SECRET_ENV, envp, 1);
    cr_assert_str_eq(cv_secret_path("/etc/cfg-secret"), envp);
    struct cv_secret s, want;
    int have = 0;
    char err[256] = "";
    cr_assert_eq(cv_secret_setup("/etc/cfg-secret", &s, &have, err, sizeof err), 0, "%s", err);
    cr_assert_eq(have, 1);
    cv_secret_from_bytes("from-the-environment", 20, &want);
    cr_assert_eq(memcmp(s.key, want.key, sizeof s.key), 0);
}

Test(secret, generated_secret_is_private_and_loads, .init = dir_up, .fini = dir_down)
{
    char path[300], err[256] = "";
    snprintf(path, sizeof path, "%s/gen", dir);
    cr_assert_eq(cv_secret_generate(path, err, sizeof err), 0, "%s", err);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    cr_assert_eq(st.st_size, 65, "32 bytes as hex and a newline");
    struct cv_secret a, b;
    cr_assert_eq(cv_secret_load(path, &a, err, sizeof err), 0, "%s", err);
    cr_assert_eq(cv_secret_generate(path, err, sizeof err), 0, "%s", err);
    cr_assert_eq(cv_secret_load(path, &b, err, sizeof err), 0, "%s", err);
    cr_assert_neq(memcmp(a.key, b.key, sizeof a.key), 0, "a new secret each time");
}

/* ---- protected mode ---------------------------------------------------------------------------------- */

static int loop4(const char *ip)
{
    struct sockaddr_in in = {.sin_family = AF_INET};
    cr_assert_eq(inet_pton(AF_INET, ip, &in.sin_addr), 1);
    return cv_guard_is_loopback((struct sockaddr *)&in);
}

static int loop6(const char *ip)
{
    struct sockaddr_in6 in = {.sin6_family = AF_INET6};
    cr_assert_eq(inet_pton(AF_INET6, ip, &in.sin6_addr), 1);
    return cv_guard_is_loopback((struct sockaddr *)&in);
}

Test(guard, loopback_addresses)
{
    cr_assert(loop4("127.0.0.1"));
    cr_assert(loop4("127.255.3.4"));
    cr_assert_not(loop4("128.0.0.1"));
    cr_assert_not(loop4("10.0.0.1"));
    cr_assert_not(loop4("0.0.0.0"));
    cr_assert(loop6("::1"));
    cr_assert(loop6("::ffff:127.0.0.2"));
    cr_assert_not(loop6("::ffff:10.1.2.3"));
    cr_assert_not(loop6("fe80::1"));
    cr_assert_not(loop6("::"));
}

Test(guard, protected_mode_narrows_the_http_bind_to_loopback)
{
    struct cv_guard prot = {.loopback_only = 1}, open = {0};
    char out[64];
    cr_assert_eq(cv_guard_http_listen(&prot, "0.0.0.0:48001", out, sizeof out), 0);
    cr_assert_str_eq(out, "127.0.0.1:48001");
    cr_assert_eq(cv_guard_http_listen(&prot, "[::]:48001", out, sizeof out), 0);
    cr_assert_str_eq(out, "[::1]:48001");
    cr_assert_eq(cv_guard_http_listen(&prot, "127.0.0.1:48001", out, sizeof out), 0);
    cr_assert_str_eq(out, "127.0.0.1:48001");
    cr_assert_eq(cv_guard_http_listen(&prot, "10.1.2.3:48001", out, sizeof out), 1, "cannot be narrowed");
    cr_assert_str_eq(out, "10.1.2.3:48001");
    cr_assert_eq(cv_guard_http_listen(&open, "0.0.0.0:48001", out, sizeof out), 0);
    cr_assert_str_eq(out, "0.0.0.0:48001", "no protected mode: unchanged");
}

Test(guard, protected_mode_refuses_and_counts_remote_peers)
{
    struct sockaddr_in remote = {.sin_family = AF_INET}, local = {.sin_family = AF_INET};
    inet_pton(AF_INET, "192.0.2.7", &remote.sin_addr);
    inet_pton(AF_INET, "127.0.0.1", &local.sin_addr);
    struct cv_guard prot = {.loopback_only = 1}, open = {0};
    uint64_t before = cv_guard_failures(CV_AUTH_R_REMOTE);
    cr_assert(cv_guard_admit(&prot, (struct sockaddr *)&local, "test"));
    cr_assert_not(cv_guard_admit(&prot, (struct sockaddr *)&remote, "test"));
    cr_assert_not(cv_guard_admit(&prot, (struct sockaddr *)&remote, "test"));
    cr_assert(cv_guard_admit(&open, (struct sockaddr *)&remote, "test"));
    cr_assert(cv_guard_admit(NULL, (struct sockaddr *)&remote, "test"));
    cr_assert_eq(cv_guard_failures(CV_AUTH_R_REMOTE), before + 2);
    struct cv_buf b = {0};
    cv_guard_metrics(&b);
    cr_assert(strstr(b.p, "cverse_auth_failures_total{reason=\"remote\"} 2"), "%s", b.p);
    cr_assert(strstr(b.p, "cverse_auth_failures_total{reason=\"proof\"} 0"), "%s", b.p);
    free(b.p);
}

/* ---- signed admin requests --------------------------------------------------------------------------- */

TestSuite(sign, .fini = cv_lsan_check);

Test(sign, signed_request_verifies_once)
{
    struct cv_secret k = key("0123456789abcdef"), other = key("fedcba9876543210");
    static struct cv_sign_replay rc;
    memset(&rc, 0, sizeof rc);
    char v[CV_SIGN_MAX];
    const char *why = NULL, *body = "{\"node\":\"node-3\",\"drain\":true}";
    cv_sign_request(&k, "POST", "/v1/admin/nodes/drain", body, strlen(body), 1000, v);
    cr_assert(!strncmp(v, "Cverse-HMAC ts=1000,nonce=", 26), "%s", v);
    cr_assert_eq(cv_sign_verify(&other, &rc, v, "POST", "/v1/admin/nodes/drain", body, strlen(body), 1000, &why),
                 CV_EAUTH);
    cr_assert_str_eq(why, "bad signature");
    cr_assert_eq(cv_sign_verify(&k, &rc, v, "POST", "/v1/admin/nodes/remove", body, strlen(body), 1000, &why),
                 CV_EAUTH, "another path");
    cr_assert_eq(cv_sign_verify(&k, &rc, v, "POST", "/v1/admin/nodes/drain", "{}", 2, 1000, &why), CV_EAUTH,
                 "another body");
    cr_assert_eq(cv_sign_verify(&k, &rc, v, "POST", "/v1/admin/nodes/drain", body, strlen(body), 1161, &why),
                 CV_EAUTH);
    cr_assert_str_eq(why, "expired");
    cr_assert_eq(cv_sign_verify(&k, &rc, v, "POST", "/v1/admin/nodes/drain", body, strlen(body), 1059, &why), 0,
                 "%s", why);
    cr_assert_eq(cv_sign_verify(&k, &rc, v, "POST", "/v1/admin/nodes/drain", body, strlen(body), 1059, &why),
                 CV_EAUTH);
    cr_assert_str_eq(why, "replayed");
    cr_assert_eq(cv_sign_verify(&k, &rc, "", "POST", "/x", NULL, 0, 1000, &why), CV_EAUTH);
    cr_assert_str_eq(why, "missing");
    cr_assert_eq(cv_sign_verify(&k, &rc, "Bearer abc", "POST", "/x", NULL, 0, 1000, &why), CV_EAUTH);
    cr_assert_str_eq(why, "malformed");
    cr_assert_eq(cv_sign_verify(&k, &rc, "Cverse-HMAC ts=1000,nonce=zz,mac=00", "POST", "/x", NULL, 0, 1000, &why),
                 CV_EAUTH);
    cr_assert_str_eq(why, "malformed");
}

Test(sign, reads_without_a_replay_cache_verify_signature_and_window_only)
{
    struct cv_secret k = key("0123456789abcdef");
    char v[CV_SIGN_MAX];
    const char *why = NULL;
    cv_sign_request(&k, "GET", "/v1/events?after=7", NULL, 0, 1000, v);
    for (int i = 0; i < 3; i++) /* the same signature again: no cache, no "replayed" */
        cr_assert_eq(cv_sign_verify(&k, NULL, v, "GET", "/v1/events?after=7", NULL, 0, 1000, &why), 0, "%s", why);
    cr_assert_eq(cv_sign_verify(&k, NULL, v, "GET", "/v1/events?after=0", NULL, 0, 1000, &why), CV_EAUTH,
                 "the query is signed");
    cr_assert_str_eq(why, "bad signature");
    cr_assert_eq(cv_sign_verify(&k, NULL, v, "HEAD", "/v1/events?after=7", NULL, 0, 1000, &why), CV_EAUTH,
                 "the method is signed");
    cr_assert_eq(cv_sign_verify(&k, NULL, v, "GET", "/v1/events?after=7", NULL, 0, 1061, &why), CV_EAUTH);
    cr_assert_str_eq(why, "expired");
    cr_assert_eq(cv_sign_verify(&k, NULL, v, "GET", "/v1/events?after=7", NULL, 0, 939, &why), CV_EAUTH,
                 "from the future beyond the window");
    cr_assert_eq(cv_sign_verify(&k, NULL, "", "GET", "/v1/shards", NULL, 0, 1000, &why), CV_EAUTH);
    cr_assert_str_eq(why, "missing");
}

Test(sign, url_target_is_the_path_and_query_as_sent)
{
    char t[64];
    const struct {
        const char *url, *target;
    } cases[] = {
        {"http://127.0.0.1:48001/v1/cluster", "/v1/cluster"},
        {"http://[::1]:48001/v1/events?after=3", "/v1/events?after=3"},
        {"http://h:1/v1/objects/T/a%20b#frag", "/v1/objects/T/a%20b"},
        {"http://h:1/x?", "/x"},
        {"http://h:1", "/"},
        {"http://h:1?q=1", "/?q=1"},
        {"/v1/shards", "/v1/shards"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cr_assert_eq(cv_sign_url_target(cases[i].url, t, sizeof t), 0, "%s", cases[i].url);
        cr_assert_str_eq(t, cases[i].target, "%s", cases[i].url);
    }
    cr_assert_eq(cv_sign_url_target("http://h:1/a-rather-long-path", t, 8), CV_ERANGE);
}

Test(sign, url_headers_sign_the_target_and_keep_the_extra_lines)
{
    struct cv_secret k = key("0123456789abcdef");
    char out[CV_SIGN_MAX + 128], v[CV_SIGN_MAX];
    const char *why = NULL;
    cr_assert_null(cv_sign_url_headers(NULL, "GET", "http://h:1/v1/x", NULL, 0, NULL, out, sizeof out),
                   "no secret, no extra: nothing to add");
    cr_assert_str_eq(cv_sign_url_headers(NULL, "GET", "http://h:1/v1/x", NULL, 0, "If-None-Match: \"a\"\r\n", out,
                                         sizeof out),
                     "If-None-Match: \"a\"\r\n");
    const char *h = cv_sign_url_headers(&k, "GET", "http://h:1/v1/x?y=1", NULL, 0, "If-None-Match: \"a\"\r\n", out,
                                        sizeof out);
    cr_assert_not_null(h);
    cr_assert(!strncmp(h, "Authorization: " CV_SIGN_SCHEME " ", 27), "%s", h);
    cr_assert(strstr(h, "\r\nIf-None-Match: \"a\"\r\n"), "%s", h);
    snprintf(v, sizeof v, "%.*s", (int)(strchr(h, '\r') - h - 15), h + 15);
    cr_assert_eq(cv_sign_verify(&k, NULL, v, "GET", "/v1/x?y=1", NULL, 0, cv_now_ms() / 1000, &why), 0, "%s", why);
    cr_assert_null(cv_sign_url_headers(&k, "GET", "http://h:1/v1/x", NULL, 0, NULL, out, 40), "does not fit");
}
