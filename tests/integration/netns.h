/* Network namespaces for partition tests: one namespace per process (node, gate), each with a veth pair
 * to a bridge in a namespace of its own, addresses 10.213.<net>.<k>/24; cut a host's link, cut one pair
 * of hosts, shape every link; everything is deleted at teardown (h_net_destroy, and atexit). */
#ifndef CV_TEST_NETNS_H
#define CV_TEST_NETNS_H

#include <stdbool.h>

#define H_NET_MAX 12

struct h_net {
    char prefix[24];          /* "cvp<pid>": every name this run creates starts with it */
    char bridge[40];          /* the bridge's namespace */
    int net;                  /* third octet of 10.213.<net>.0/24 */
    int n;                    /* hosts */
    char ns[H_NET_MAX][40];   /* host k's namespace */
    char ip[H_NET_MAX][24];   /* host k's address: 10.213.<net>.<k+1> */
    char port[H_NET_MAX][16]; /* host k's veth end on the bridge ("p<k>") */
    bool sink[H_NET_MAX];     /* host k has the dead-end veth used by pair cuts */
    bool created;
};

/* Creates the bridge namespace and `hosts` host namespaces, links up, loopback up. Fails the test (never
 * skips) with a message saying network namespaces are unavailable when `ip netns add` fails. Also
 * deletes what an earlier run of this program left behind whose process is gone. */
void h_net_create(struct h_net *net, int hosts);
/* Deletes every namespace of net (processes still inside keep theirs until they exit). Idempotent. */
void h_net_destroy(struct h_net *net);

/* Moves the calling thread into host k's namespace (sockets it opens from now on live there). Returns
 * the thread's previous namespace (an fd, owned: give it to h_net_leave). */
int h_net_enter(const struct h_net *net, int k);
/* Moves the calling thread back to the namespace h_net_enter returned and closes that fd. */
void h_net_leave(int prev);

/* Host k's cable at the bridge: down (every packet to or from k is lost, its own side keeps its address
 * and sees no carrier) or up again. */
void h_net_link(struct h_net *net, int k, bool up);
/* Only the path between hosts a and b: both directions silently dropped (cut) or restored. */
void h_net_cut_pair(struct h_net *net, int a, int b, bool cut);
/* Shapes every host's link with 1-5 ms of delay and jitter: `tc netem delay 3ms 2ms` on both ends of
 * every veth. Kernels without sch_netem get a token bucket instead (a 2 Mbit/s link: 1500-byte packets
 * take 6 ms, queues add jitter) and a line on stderr saying so. Returns true when netem was used. */
bool h_net_jitter(struct h_net *net);

/* Runs a shell command (printf format) and returns its exit status; its output goes to stderr when it
 * fails. */
int h_net_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
