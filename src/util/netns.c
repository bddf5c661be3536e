/* Network namespaces for partitions (see netns.h), driven through iproute2's `ip` and `tc`.
 *
 * Happy path: cv_netns_create adds a bridge namespace "cvp<pid>-br" (bridge br0) and one namespace
 * "cvp<pid>-h<k>" per host, joined by a veth pair (p<k> on the bridge, eth0 inside, 10.213.<net>.<k+1>/24);
 * processes are started inside with cv_netns_enter around fork, and a caller's own requests enter the
 * namespace of the host they come from. A link cut sets p<k> down: host k sees no carrier, keeps its
 * address, and every packet is silently lost (TCP retransmits into the void, as with a pulled cable).
 * A pair cut redirects host a's packets for b (and b's for a) to a dead-end veth with a u32 filter on a
 * clsact qdisc: silently lost too, everything else flows. cv_netns_destroy deletes the namespaces (the
 * veth pairs die with them).
 *
 * Failure modes: `ip netns add` failing (no CAP_SYS_ADMIN, no netns support) gives CV_EPERM with a
 * message saying network namespaces are unavailable; any other command failing gives CV_EIO with the
 * command (its output goes to stderr). Cleanup runs from the owner and again at exit (atexit), and each
 * create first deletes namespaces of earlier runs of any process whose pid no longer exists (a run
 * killed by a timeout or SIGKILL cannot clean up after itself). */
#include "util/netns.h"

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

#include "cverse/error.h"

#define NETNS_DIR "/var/run/netns"
#define NET_PREFIX "cvp"

static int vsh(char *out, size_t len, const char *cmd)
{
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

static int sh_v(const char *fmt, va_list ap)
{
    char cmd[1024], out[1024];
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    int rv = vsh(out, sizeof out, cmd);
    if (rv != 0) fprintf(stderr, "netns: `%s` exited %d: %s", cmd, rv, out);
    return rv;
}

int cv_netns_sh(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rv = sh_v(fmt, ap);
    va_end(ap);
    return rv;
}

/* A command that must succeed: 0, or CV_EIO (its output is on stderr already). */
static int must(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int must(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rv = sh_v(fmt, ap);
    va_end(ap);
    return rv == 0 ? 0 : CV_EIO;
}

/* ---------------------------------------------------------------- cleanup */

static struct cv_netns *live[4]; /* nets to delete at exit if their owner did not */

static void net_atexit(void)
{
    for (size_t k = 0; k < sizeof live / sizeof live[0]; k++)
        if (live[k]) cv_netns_destroy(live[k]);
}

static void net_track(struct cv_netns *net, bool on)
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
        cv_netns_sh("ip netns del %s", e->d_name);
    }
    closedir(d);
}

void cv_netns_destroy(struct cv_netns *net)
{
    if (!net->created) return;
    net->created = false;
    for (int k = 0; k < net->n; k++) cv_netns_sh("ip netns del %s", net->ns[k]);
    cv_netns_sh("ip netns del %s", net->bridge);
    net_track(net, false);
}

/* ---------------------------------------------------------------- create */

static int host_add(struct cv_netns *net, int k)
{
    snprintf(net->ns[k], sizeof net->ns[k], "%s-h%d", net->prefix, k);
    snprintf(net->ip[k], sizeof net->ip[k], "10.213.%d.%d", net->net % 256, k + 1);
    snprintf(net->port[k], sizeof net->port[k], "p%d", k);
    if (must("ip netns add %s", net->ns[k]) < 0) return CV_EIO;
    net->n = k + 1; /* from here on destroy deletes it */
    if (must("ip -n %s link add %s type veth peer name eth0 netns %s && ip -n %s link set %s master br0 up",
             net->bridge, net->port[k], net->ns[k], net->bridge, net->port[k]) < 0)
        return CV_EIO;
    return must("ip -n %s addr add %s/24 dev eth0 && ip -n %s link set eth0 up && ip -n %s link set lo up",
                net->ns[k], net->ip[k], net->ns[k], net->ns[k]);
}

int cv_netns_create(struct cv_netns *net, int hosts, char *err, size_t errlen)
{
    if (hosts <= 0 || hosts > CV_NETNS_MAX)
        return snprintf(err, errlen, "netns: %d hosts (1..%d)", hosts, CV_NETNS_MAX), CV_EINVAL;
    memset(net, 0, sizeof *net);
    sweep_stale();
    snprintf(net->prefix, sizeof net->prefix, NET_PREFIX "%ld", (long)getpid());
    snprintf(net->bridge, sizeof net->bridge, "%s-br", net->prefix);
    net->net = (int)(getpid() % 250) + 1;
    int rv = cv_netns_sh("ip netns add %s", net->bridge);
    if (rv != 0)
        return snprintf(err, errlen,
                        "network namespaces are unavailable: `ip netns add` exited %d (it needs root and iproute2; "
                        "see stderr)", rv), CV_EPERM;
    net->created = true;
    net_track(net, true);
    int rc = must("ip -n %s link set lo up && ip -n %s link add br0 type bridge && ip -n %s link set br0 up",
                  net->bridge, net->bridge, net->bridge);
    for (int k = 0; k < hosts && rc == 0; k++) rc = host_add(net, k);
    if (rc == 0) return 0;
    snprintf(err, errlen, "netns: setting up %d namespaces failed (the failing command is on stderr)", hosts);
    cv_netns_destroy(net);
    return rc;
}

/* ---------------------------------------------------------------- enter / leave */

int cv_netns_enter(const struct cv_netns *net, int k)
{
    char path[128];
    snprintf(path, sizeof path, NETNS_DIR "/%s", net->ns[k]);
    int prev = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (prev < 0) return fprintf(stderr, "netns: open own netns: %s\n", strerror(errno)), CV_EIO;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) goto err_after_prev;
    if (setns(fd, CLONE_NEWNET) < 0) goto err_after_fd;
    close(fd);
    return prev;
err_after_fd:
    close(fd);
err_after_prev:
    fprintf(stderr, "netns: entering %s: %s\n", path, strerror(errno));
    close(prev);
    return CV_EIO;
}

int cv_netns_leave(int prev)
{
    int rc = setns(prev, CLONE_NEWNET);
    if (rc < 0) fprintf(stderr, "netns: setns back: %s\n", strerror(errno));
    close(prev);
    return rc < 0 ? CV_EIO : 0;
}

/* ---------------------------------------------------------------- faults */

int cv_netns_link(struct cv_netns *net, int k, bool up)
{
    return must("ip -n %s link set %s %s", net->bridge, net->port[k], up ? "up" : "down");
}

/* Host a's packets for b go to a veth whose peer is down (dropped) while the filter is there. */
static int pair_filter(struct cv_netns *net, int a, int b, bool cut)
{
    if (!net->sink[a]) {
        if (must("ip -n %s link add sink0 type veth peer name sink1 && ip -n %s link set sink0 up && "
                 "tc -n %s qdisc add dev eth0 clsact",
                 net->ns[a], net->ns[a], net->ns[a]) < 0)
            return CV_EIO;
        net->sink[a] = true;
    }
    if (cut)
        return must("tc -n %s filter add dev eth0 egress pref %d protocol ip u32 match ip dst %s/32 action mirred "
                     "egress redirect dev sink0",
                     net->ns[a], 10 + b, net->ip[b]);
    return must("tc -n %s filter del dev eth0 egress pref %d", net->ns[a], 10 + b);
}

int cv_netns_cut_pair(struct cv_netns *net, int a, int b, bool cut)
{
    int rc = pair_filter(net, a, b, cut);
    return rc < 0 ? rc : pair_filter(net, b, a, cut);
}

int cv_netns_jitter(struct cv_netns *net)
{
    bool netem = cv_netns_sh("tc -n %s qdisc add dev eth0 root netem delay 3ms 2ms", net->ns[0]) == 0;
    if (!netem)
        fprintf(stderr, "netns: this kernel has no sch_netem (`tc qdisc add ... netem` failed): every link is "
                        "shaped by tbf at 2 Mbit/s instead, which delays by packet size and queueing, not 1-5 ms\n");
    for (int k = netem ? 1 : 0; k < net->n; k++) {
        int rc = netem ? must("tc -n %s qdisc add dev eth0 root netem delay 3ms 2ms", net->ns[k])
                       : must("tc -n %s qdisc add dev eth0 root tbf rate 2mbit burst 1600 latency 200ms", net->ns[k]);
        if (rc < 0) return rc;
    }
    return netem;
}
