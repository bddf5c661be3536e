/* Cluster port policy (guard.h): the process' secret or protected mode, and the failure accounting.
 *
 * Happy path: cv_guard_setup at start fixes the process-wide guard from the config and the environment;
 * servers and diallers of cluster ports borrow it (cv_guard_cluster). Every refused peer goes through
 * cv_guard_fail: a counter per reason for /metrics, and a log line at most once per second per reason
 * (a flood of bad peers must not flood the log; the suppressed count is in the next line).
 * Failure modes: a bad secret file is the caller's config error. Single-threaded (the loop's thread). */
#include "auth/guard.h"

#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "util/addr.h"
#include "util/log.h"
#include "util/prom.h"

static struct cv_secret guard__secret;
static struct cv_guard guard__cluster;
static uint64_t guard__count[CV_AUTH_R_N];
static uint64_t guard__logged_at[CV_AUTH_R_N];   /* cv_mono_ms of the last line per reason */
static uint64_t guard__suppressed[CV_AUTH_R_N];

const struct cv_guard *cv_guard_cluster(void)
{
    return &guard__cluster;
}

int cv_guard_setup(const char *cfg_secret_file, int insecure, int serves, char *err, size_t errlen)
{
    int have = 0;
    int rv = cv_secret_setup(cfg_secret_file, &guard__secret, &have, err, errlen);
    if (rv) return rv;
    guard__cluster = (struct cv_guard){.secret = have ? &guard__secret : NULL, .loopback_only = 0};
    if (have) {
        CV_INFO("cluster ports authenticate peers with the cluster secret (%s)", cv_secret_path(cfg_secret_file));
    } else if (!serves) {
        return 0; /* a dialler without a secret: nothing to protect, nothing to say */
    } else if (insecure) {
        CV_WARN("cluster.insecure: true and no cluster secret: any host that reaches this process' cluster "
                "ports can rewrite the cluster (docs/security.md)");
    } else {
        guard__cluster.loopback_only = 1;
        CV_WARN("protected mode: no cluster secret, so cluster ports refuse peers that are not on a loopback "
                "address; set cluster.secret_file (or %s) on every process, or cluster.insecure: true "
                "(docs/security.md)", CV_SECRET_ENV);
    }
    return 0;
}

int cv_guard_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a)) return 1;
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return 0;
}

int cv_guard_admit(const struct cv_guard *g, const struct sockaddr *sa, const char *what)
{
    if (!g || !g->loopback_only || cv_guard_is_loopback(sa)) return 1;
    char host[64] = "?";
    if (sa->sa_family == AF_INET6) uv_ip6_name((const struct sockaddr_in6 *)sa, host, sizeof host);
    else if (sa->sa_family == AF_INET) uv_ip4_name((const struct sockaddr_in *)sa, host, sizeof host);
    cv_guard_fail(CV_AUTH_R_REMOTE, what, host);
    return 0;
}

int cv_guard_http_listen(const struct cv_guard *g, const char *addr, char *out, size_t n)
{
    struct sockaddr_storage ss;
    snprintf(out, n, "%s", addr);
    if (!g || !g->loopback_only || cv_addr_connectable(addr, out, n) != 0) {
        snprintf(out, n, "%s", addr);
        return 0;
    }
    return cv_addr_resolve(out, &ss) == 0 && !cv_guard_is_loopback((struct sockaddr *)&ss);
}

void cv_guard_fail(int reason, const char *what, const char *peer)
{
    if (reason < 0 || reason >= CV_AUTH_R_N) return;
    guard__count[reason]++;
    uint64_t now = cv_mono_ms();
    if (guard__logged_at[reason] && now - guard__logged_at[reason] < 1000) {
        guard__suppressed[reason]++;
        return;
    }
    guard__logged_at[reason] = now ? now : 1;
    static const char *const why[CV_AUTH_R_N] = {
        [CV_AUTH_R_MAGIC] = "did not open with the cluster handshake (no cluster secret, or not cverse)",
        [CV_AUTH_R_PROOF] = "wrong handshake proof (another cluster secret)",
        [CV_AUTH_R_NONCE] = "echoed our own handshake nonce (a reflection)",
        [CV_AUTH_R_CLOSED] = "connection ended during the cluster handshake",
        [CV_AUTH_R_REMOTE] = "not a loopback address, and no cluster secret is configured (protected mode)",
        [CV_AUTH_R_SIGNATURE] = "HTTP request not signed with the cluster secret (Cverse-HMAC)",
    };
    CV_WARN("%s: refused %s: %s [reason=%s; %llu more for this reason since the last line]", what, peer,
            why[reason], cv_auth_reason_name(reason), (unsigned long long)guard__suppressed[reason]);
    guard__suppressed[reason] = 0;
}

uint64_t cv_guard_failures(int reason)
{
    return reason >= 0 && reason < CV_AUTH_R_N ? guard__count[reason] : 0;
}

void cv_guard_metrics(struct cv_buf *b)
{
    const char *names[CV_AUTH_R_N];
    for (int r = 0; r < CV_AUTH_R_N; r++) names[r] = cv_auth_reason_name(r);
    cv_prom_counters(b, "cverse_auth_failures_total",
                     "Peers refused on cluster ports: failed handshake, protected mode or an unsigned HTTP request, by reason", "reason",
                     names, guard__count, CV_AUTH_R_N);
}
