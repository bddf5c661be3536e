/* Unit tests of the gate's protections: the token bucket and per-client table (core/ratelimit) and TLS as a
 * byte transform (net/tls: two sessions talking to each other in memory). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/ratelimit.h"
#include "cverse/error.h"
#include "lsan_check.h"
#include "net/tls.h"
#include "tls_cert.h"
#include "tmpdir.h"

TestSuite(bucket, .fini = cv_lsan_check);
TestSuite(ratelimit, .fini = cv_lsan_check);

Test(bucket, burst_then_rate)
{
    struct cv_rate r = {.per_sec = 10, .burst = 3};
    struct cv_bucket b;
    cv_bucket_init(&b, &r, 1000);
    for (int i = 0; i < 3; i++) cr_assert_eq(cv_bucket_take(&b, &r, 1000), 0, "burst token %d", i);
    /* empty: one token every 100 ms */
    cr_assert_eq(cv_bucket_take(&b, &r, 1000), 100);
    cr_assert_eq(cv_bucket_take(&b, &r, 1040), 60);
    cr_assert_eq(cv_bucket_take(&b, &r, 1100), 0);
    cr_assert_eq(cv_bucket_take(&b, &r, 1100), 100);
    /* a long pause refills up to the burst only */
    for (int i = 0; i < 3; i++) cr_assert_eq(cv_bucket_take(&b, &r, 60000), 0);
    cr_assert_gt(cv_bucket_take(&b, &r, 60000), 0);
}

Test(bucket, partial_refills_add_up)
{
    struct cv_rate r = {.per_sec = 3, .burst = 1};
    struct cv_bucket b;
    cv_bucket_init(&b, &r, 0);
    cr_assert_eq(cv_bucket_take(&b, &r, 0), 0);
    /* 1/3 token per 111 ms: three small refills make less than one token, a fourth more */
    uint64_t t = 0;
    for (int i = 0; i < 3; i++) cr_assert_gt(cv_bucket_take(&b, &r, t += 111), 0);
    cr_assert_eq(cv_bucket_take(&b, &r, t += 1), 0, "334 ms at 3/s is a whole token");
}

Test(bucket, clock_backwards_adds_nothing)
{
    struct cv_rate r = {.per_sec = 1, .burst = 1};
    struct cv_bucket b;
    cv_bucket_init(&b, &r, 5000);
    cr_assert_eq(cv_bucket_take(&b, &r, 5000), 0);
    cr_assert_eq(cv_bucket_take(&b, &r, 1000), 1000);
    cr_assert_eq(cv_bucket_take(&b, &r, 5999), 1);
    cr_assert_eq(cv_bucket_take(&b, &r, 6000), 0);
    cr_assert(!cv_bucket_full(&b, &r, 6000));
    cr_assert(cv_bucket_full(&b, &r, 7000));
}

Test(ratelimit, clients_are_independent)
{
    struct cv_rate r = {.per_sec = 1, .burst = 2};
    struct cv_ratelimit *rl;
    cr_assert_eq(cv_ratelimit_new(&r, 0, &rl), 0);
    cr_assert_eq(cv_ratelimit_take(rl, "10.0.0.1", 0), 0);
    cr_assert_eq(cv_ratelimit_take(rl, "10.0.0.1", 0), 0);
    cr_assert_eq(cv_ratelimit_take(rl, "10.0.0.1", 0), 1000);
    cr_assert_eq(cv_ratelimit_take(rl, "user:alice", 0), 0, "another client has its own bucket");
    cr_assert_eq(cv_ratelimit_take(rl, "10.0.0.1", 500), 500);
    cr_assert_eq(cv_ratelimit_sweep(rl, 500), 2, "no bucket is full yet");
    cr_assert_eq(cv_ratelimit_sweep(rl, 2000), 0, "both refilled: dropped");
    cr_assert_eq(cv_ratelimit_take(rl, "10.0.0.1", 2000), 0, "a dropped client starts full again");
    cv_ratelimit_free(rl);
}

Test(ratelimit, table_full_lets_new_clients_through)
{
    struct cv_rate r = {.per_sec = 1, .burst = 1};
    struct cv_ratelimit *rl;
    cr_assert_eq(cv_ratelimit_new(&r, 2, &rl), 0);
    cr_assert_eq(cv_ratelimit_take(rl, "a", 0), 0);
    cr_assert_eq(cv_ratelimit_take(rl, "b", 0), 0);
    cr_assert_eq(cv_ratelimit_take(rl, "a", 0), 1000, "known clients stay limited");
    cr_assert_eq(cv_ratelimit_take(rl, "c", 0), 0);
    cr_assert_eq(cv_ratelimit_take(rl, "c", 0), 0, "over the cap: not tracked, not limited");
    cr_assert_eq(cv_ratelimit_overflow(rl), 2);
    cv_ratelimit_free(rl);
}

Test(ratelimit, zero_rate_is_invalid)
{
    struct cv_ratelimit *rl = NULL;
    cr_assert_eq(cv_ratelimit_new(&(struct cv_rate){.per_sec = 0, .burst = 1}, 0, &rl), CV_EINVAL);
    cr_assert_eq(cv_ratelimit_new(&(struct cv_rate){.per_sec = 1, .burst = 0}, 0, &rl), CV_EINVAL);
    cr_assert_null(rl);
}

/* ---- TLS: a client and a server session wired back to back in memory ---- */

static char dir[64];
static char cert[128], key[128], other_cert[128], other_key[128];

static void tls_setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/cverse-test-tls-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    cr_assert_eq(cv_test_make_cert(dir, "gate"), 0, "openssl could not make a certificate");
    cr_assert_eq(cv_test_make_cert(dir, "other"), 0);
    snprintf(cert, sizeof cert, "%s/gate-cert.pem", dir);
    snprintf(key, sizeof key, "%s/gate-key.pem", dir);
    snprintf(other_cert, sizeof other_cert, "%s/other-cert.pem", dir);
    snprintf(other_key, sizeof other_key, "%s/other-key.pem", dir);
}

static void tls_teardown(void)
{
    cv_tmpdir_remove(dir);
    cv_lsan_check();
}

TestSuite(tls, .init = tls_setup, .fini = tls_teardown);

/* Moves the ciphertext each side has for the other until neither has any; the first error, or 0. */
static int pump(struct cv_tls *a, struct cv_tls *b)
{
    char buf[32768];
    for (int moved = 1; moved;) {
        moved = 0;
        struct cv_tls *from[2] = {a, b}, *to[2] = {b, a};
        for (int i = 0; i < 2; i++) {
            size_t n;
            while ((n = cv_tls_take(from[i], buf, sizeof buf)) > 0) {
                moved = 1;
                int rv = cv_tls_feed(to[i], buf, n);
                if (rv) return rv;
            }
        }
    }
    return 0;
}

static size_t read_all(struct cv_tls *t, char *out, size_t cap)
{
    size_t got = 0;
    ssize_t n;
    while ((n = cv_tls_read(t, out + got, cap - got)) > 0) got += (size_t)n;
    cr_assert_geq(n, 0, "read failed: %s", cv_tls_error(t));
    return got;
}

struct pair {
    struct cv_tls_ctx *sctx, *cctx;
    struct cv_tls *s, *c;
};

static void pair_open(struct pair *p, const char *ca, const char *host)
{
    char err[512];
    cr_assert_eq(cv_tls_ctx_server(cert, key, err, sizeof err, &p->sctx), 0, "%s", err);
    cr_assert_eq(cv_tls_ctx_client(ca, err, sizeof err, &p->cctx), 0, "%s", err);
    cr_assert_eq(cv_tls_new(p->sctx, NULL, &p->s), 0);
    cr_assert_eq(cv_tls_new(p->cctx, host, &p->c), 0);
    cv_tls_ctx_free(p->sctx); /* the sessions hold their own references */
    cv_tls_ctx_free(p->cctx);
}

static void pair_close(struct pair *p)
{
    cv_tls_free(p->s);
    cv_tls_free(p->c);
}

Test(tls, round_trip_both_ways)
{
    struct pair p;
    pair_open(&p, cert, "localhost");
    cr_assert(!cv_tls_ready(p.c));
    /* written before the handshake: queued, sent once it ended */
    cr_assert_eq(cv_tls_write(p.c, "GET / HTTP/1.1\r\n\r\n", 18), 0);
    cr_assert_eq(pump(p.c, p.s), 0, "handshake: %s / %s", cv_tls_error(p.c), cv_tls_error(p.s));
    cr_assert(cv_tls_ready(p.c) && cv_tls_ready(p.s));
    char buf[200000];
    size_t n = read_all(p.s, buf, sizeof buf);
    cr_assert_eq(n, 18);
    cr_assert_eq(memcmp(buf, "GET / HTTP/1.1\r\n\r\n", 18), 0);
    /* a large answer crosses several records */
    static char big[100000];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (char)('a' + i % 26);
    cr_assert_eq(cv_tls_write(p.s, big, sizeof big), 0);
    cr_assert_gt(cv_tls_pending(p.s), sizeof big, "ciphertext is longer than the plaintext");
    cr_assert_eq(pump(p.s, p.c), 0);
    n = read_all(p.c, buf, sizeof buf);
    cr_assert_eq(n, sizeof big);
    cr_assert_eq(memcmp(buf, big, sizeof big), 0);
    /* the server's close_notify reads as CV_ECLOSED at the client */
    cv_tls_close_notify(p.s);
    cr_assert_eq(pump(p.s, p.c), 0);
    cr_assert_eq(cv_tls_read(p.c, buf, sizeof buf), CV_ECLOSED);
    pair_close(&p);
}

Test(tls, ip_address_is_checked_against_ip_san)
{
    struct pair p;
    pair_open(&p, cert, "127.0.0.1");
    cr_assert_eq(pump(p.c, p.s), 0, "%s", cv_tls_error(p.c));
    cr_assert(cv_tls_ready(p.c));
    pair_close(&p);
}

Test(tls, unknown_ca_fails_verification)
{
    struct pair p;
    pair_open(&p, other_cert, "localhost");
    cr_assert_eq(pump(p.c, p.s), CV_EIO);
    cr_assert(strstr(cv_tls_error(p.c), "certificate verify failed"), "error: %s", cv_tls_error(p.c));
    cr_assert(!cv_tls_ready(p.c));
    pair_close(&p);
}

Test(tls, wrong_host_name_fails_verification)
{
    struct pair p;
    pair_open(&p, cert, "gate.example.com");
    cr_assert_eq(pump(p.c, p.s), CV_EIO);
    cr_assert(strstr(cv_tls_error(p.c), "hostname mismatch"), "error: %s", cv_tls_error(p.c));
    pair_close(&p);
}

Test(tls, garbage_instead_of_tls_fails_the_server)
{
    char err[512];
    struct cv_tls_ctx *sctx;
    struct cv_tls *s;
    cr_assert_eq(cv_tls_ctx_server(cert, key, err, sizeof err, &sctx), 0, "%s", err);
    cr_assert_eq(cv_tls_new(sctx, NULL, &s), 0);
    const char *plain = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    cr_assert_eq(cv_tls_feed(s, plain, strlen(plain)), CV_EIO);
    cr_assert_neq(cv_tls_error(s)[0], '\0');
    cv_tls_free(s);
    cv_tls_ctx_free(sctx);
}

Test(tls, bad_files_are_named_in_the_error)
{
    char err[512], missing[200];
    struct cv_tls_ctx *ctx = NULL;
    snprintf(missing, sizeof missing, "%s/missing.pem", dir);
    cr_assert_eq(cv_tls_ctx_server(missing, key, err, sizeof err, &ctx), CV_EIO);
    cr_assert(strstr(err, "missing.pem: cannot load the certificate"), "%s", err);
    cr_assert_eq(cv_tls_ctx_server(cert, other_key, err, sizeof err, &ctx), CV_EIO);
    cr_assert(strstr(err, "other-key.pem") && strstr(err, "mismatch"), "%s", err);
    cr_assert_eq(cv_tls_ctx_server(cert, cert, err, sizeof err, &ctx), CV_EIO, "a certificate is not a key");
    cr_assert(strstr(err, "cannot load the private key"), "%s", err);
    cr_assert_eq(cv_tls_ctx_client(missing, err, sizeof err, &ctx), CV_EIO);
    cr_assert(strstr(err, "missing.pem"), "%s", err);
    cr_assert_null(ctx);
}
