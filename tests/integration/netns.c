/* Network namespaces for partition tests (see netns.h), driven through iproute2's `ip` and `tc`.
 *
 * Happy path: h_net_create adds a bridge namespace "cvp<pid>-br" (bridge br0) and one namespace
 * "cvp<pid>-h<k>" per host, joined by a veth pair (p<k> on the bridge, eth0 inside, 10.213.<net>.<k+1>/24);
 * processes are started inside with h_net_enter around fork, and the test's own requests enter the
 * namespace of the process they talk to. A link cut sets p<k> down: host k sees no carrier, keeps its
 * address, and every packet is silently lost (TCP retransmits into the void, as with a pulled cable).
 * A pair cut redirects host a's packets for b (and b's for a) to a dead-end veth with a u32 filter on a
 * clsact qdisc: silently lost too, everything else flows. h_net_destroy deletes the namespaces (the veth
 * pairs die with them).
 *
 * Failure modes: `ip netns add` failing (no CAP_SYS_ADMIN, no netns support) fails the test with a
 * message saying network namespaces are unavailable — these tests are never skipped silently; any other
 * command failing fails the test with the command and its output. Cleanup runs from the suite's fini and
 * again at exit (atexit), and each create first deletes namespaces of earlier runs of any test whose
 * process no longer exists (a run killed by a timeout cannot clean up after itself). */
#include "netns.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define NETNS_DIR "/var/run/netns"
#define NET_PREFIX "cvp"

static int vsh(char *out, size_t len, const char *fmt, va_list ap)
{
    char cmd[1024];
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    char full[1100];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    size_t used = 0;
    if (out && len) out[0] = '\0';
    char buf[256];
    while (fgets(buf, sizeof buf, p))
        if (out && used + 1 < len) used += (size_t)snprintf(out + used, len - used, "%s", buf);
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int h_net_sh(const char *fmt, ...)
{
    char out[1024];
    va_list ap;
    va_start(ap, fmt);
    int rv = vsh(out, sizeof out, fmt, ap);
    va_end(ap);
    if (rv != 0) {
        char cmd[1024];
        va_start(ap, fmt);
        vsnprintf(cmd, sizeof cmd, fmt, ap);
        va_end(ap);
        fprintf(stderr, "netns: `%s` exited %d: %s", cmd, rv, out);
    }
    return rv;
}

/* Runs a command that must succeed: fails the test otherwise. */
#define NET_MUST(...) cr_assert_eq(h_net_sh(__VA_ARGS__), 0, "netns: command failed (see stderr)")

/* ---------------------------------------------------------------- cleanup */

static struct h_net *live[4]; /* nets to delete at exit if the test did not */

static void net_atexit(void)
{
    for (size_t k = 0; k < sizeof live / sizeof live[0]; k++)
        if (live[k]) h_net_destroy(live[k]);
}

static void net_track(struct h_net *net, bool on)
{
    static bool registered;
    if (!registered) registered = atexit(net_atexit) == 0;
    for (size_t k = 0; k < sizeof live / sizeof live[0]; k++)
        if (on ? !live[k] : live[k] == net) {
            live[k] = on ? net : NULL;
            return;
        }
}

/* Deletes "cvp<pid>-*" namespaces whose pid is not a running process: left by a run that was killed. */
static void sweep_stale(void)
{
    DIR *d = opendir(NETNS_DIR);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end;
        if (strncmp(e->d_name, NET_PREFIX, strlen(NET_PREFIX)) != 0) continue;
        long pid = strtol(e->d_name + strlen(NET_PREFIX), &end, 10);
        if (pid <= 0 || *end != '-' || pid == getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* still running */
        fprintf(stderr, "netns: deleting %s, left by process %ld which is gone\n", e->d_name, pid);
        h_net_sh("ip netns del %s", e->d_name);
    }
    closedir(d);
}

void h_net_destroy(struct h_net *net)
{
    if (!net->created) return;
    net->created = false;
    for (int k = 0; k < net->n; k++) h_net_sh("ip netns del %s", net->ns[k]);
    h_net_sh("ip netns del %s", net->bridge);
    net_track(net, false);
}

/* ---------------------------------------------------------------- create */

static void host_add(struct h_net *net, int k)
{
    snprintf(net->ns[k], sizeof net->ns[k], "%s-h%d", net->prefix, k);
    snprintf(net->ip[k], sizeof net->ip[k], "10.213.%d.%d", net->net % 256, (k + 1) % 256);
    snprintf(net->port[k], sizeof net->port[k], "p%d", k);
    NET_MUST("ip netns add %s", net->ns[k]);
    net->n = k + 1; /* from here on destroy deletes it */
    NET_MUST("ip -n %s link add %s type veth peer name eth0 netns %s && ip -n %s link set %s master br0 up",
             net->bridge, net->port[k], net->ns[k], net->bridge, net->port[k]);
    NET_MUST("ip -n %s addr add %s/24 dev eth0 && ip -n %s link set eth0 up && ip -n %s link set lo up", net->ns[k],
             net->ip[k], net->ns[k], net->ns[k]);
}

void h_net_create(struct h_net *net, int hosts)
{
    cr_assert(hosts > 0 && hosts <= H_NET_MAX, "h_net_create: %d hosts (at most %d)", hosts, H_NET_MAX);
    memset(net, 0, sizeof *net);
    sweep_stale();
    snprintf(net->prefix, sizeof net->prefix, NET_PREFIX "%ld", (long)getpid());
    snprintf(net->bridge, sizeof net->bridge, "%s-br", net->prefix);
    net->net = (int)(getpid() % 250) + 1;
    int rv = h_net_sh("ip netns add %s", net->bridge);
    cr_assert_eq(rv, 0,
                 "network namespaces are unavailable: `ip netns add` exited %d (it needs root and iproute2; see "
                 "stderr). The partition tests need them and are not skipped.",
                 rv);
    net->created = true;
    net_track(net, true);
    NET_MUST("ip -n %s link set lo up && ip -n %s link add br0 type bridge && ip -n %s link set br0 up", net->bridge,
             net->bridge, net->bridge);
    for (int k = 0; k < hosts; k++) host_add(net, k);
}

/* ---------------------------------------------------------------- enter / leave */

int h_net_enter(const struct h_net *net, int k)
{
    char path[128];
    snprintf(path, sizeof path, NETNS_DIR "/%s", net->ns[k]);
    int prev = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    cr_assert_geq(prev, 0, "open own netns: %s", strerror(errno));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
    cr_assert_eq(setns(fd, CLONE_NEWNET), 0, "setns %s: %s", net->ns[k], strerror(errno));
    close(fd);
    return prev;
}

void h_net_leave(int prev)
{
    cr_assert_eq(setns(prev, CLONE_NEWNET), 0, "setns back: %s", strerror(errno));
    close(prev);
}

/* ---------------------------------------------------------------- faults */

void h_net_link(struct h_net *net, int k, bool up)
{
    NET_MUST("ip -n %s link set %s %s", net->bridge, net->port[k], up ? "up" : "down");
}

/* Host a's packets for b go to a veth whose peer is down (dropped) while the filter is there. */
static void pair_filter(struct h_net *net, int a, int b, bool cut)
{
    if (!net->sink[a]) {
        NET_MUST("ip -n %s link add sink0 type veth peer name sink1 && ip -n %s link set sink0 up && "
                 "tc -n %s qdisc add dev eth0 clsact",
                 net->ns[a], net->ns[a], net->ns[a]);
        net->sink[a] = true;
    }
    if (cut)
        NET_MUST("tc -n %s filter add dev eth0 egress pref %d protocol ip u32 match ip dst %s/32 action mirred "
                 "egress redirect dev sink0",
                 net->ns[a], 10 + b, net->ip[b]);
    else
        NET_MUST("tc -n %s filter del dev eth0 egress pref %d", net->ns[a], 10 + b);
}

void h_net_cut_pair(struct h_net *net, int a, int b, bool cut)
{
    pair_filter(net, a, b, cut);
    pair_filter(net, b, a, cut);
}

bool h_net_jitter(struct h_net *net)
{
    bool netem = h_net_sh("tc -n %s qdisc add dev eth0 root netem delay 3ms 2ms", net->ns[0]) == 0;
    if (!netem)
        fprintf(stderr, "netns: this kernel has no sch_netem (`tc qdisc add ... netem` failed): every link is "
                        "shaped by tbf at 2 Mbit/s instead, which delays by packet size and queueing, not 1-5 ms\n");
    for (int k = netem ? 1 : 0; k < net->n; k++) {
        if (netem)
            NET_MUST("tc -n %s qdisc add dev eth0 root netem delay 3ms 2ms", net->ns[k]);
        else
            NET_MUST("tc -n %s qdisc add dev eth0 root tbf rate 2mbit burst 1600 latency 200ms", net->ns[k]);
    }
    return netem;
}
