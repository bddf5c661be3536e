/* Network namespaces for real partitions (test_partition, cverse-stress --churn-mode partition): one
 * namespace per host, each with a veth pair to a bridge in a namespace of its own, addresses
 * 10.213.<net>.<k+1>/24; cut a host's link, cut one pair of hosts, shape every link; everything is
 * deleted by cv_netns_destroy, and at exit (atexit) if its owner did not. Needs root and iproute2. */
#ifndef CV_UTIL_NETNS_H
#define CV_UTIL_NETNS_H

#include <stdbool.h>
#include <stddef.h>

#define CV_NETNS_MAX 64

struct cv_netns {
    char prefix[24];              /* "cvp<pid>": every name this process creates starts with it */
    char bridge[40];              /* the bridge's namespace */
    int net;                      /* third octet of 10.213.<net>.0/24 */
    int n;                        /* hosts */
    char ns[CV_NETNS_MAX][40];    /* host k's namespace */
    char ip[CV_NETNS_MAX][24];    /* host k's address: 10.213.<net>.<k+1> */
    char port[CV_NETNS_MAX][16];  /* host k's veth end on the bridge ("p<k>") */
    bool sink[CV_NETNS_MAX];      /* host k has the dead-end veth used by pair cuts */
    bool created;
};

/* Creates the bridge namespace and `hosts` host namespaces, links up, loopback up; first deletes what an
 * earlier process left behind whose pid is gone (one killed before it could clean up). 0; CV_EPERM when
 * `ip netns add` fails (no root, no iproute2, no netns support: err says network namespaces are
 * unavailable); CV_EINVAL for a bad host count; CV_EIO when a later command fails (err names it; what
 * was created is deleted again). net must stay at its address until destroyed (the atexit hook keeps a
 * pointer: borrowed, valid until cv_netns_destroy). */
int cv_netns_create(struct cv_netns *net, int hosts, char *err, size_t errlen);
/* Deletes every namespace of net (processes still inside keep theirs until they exit). Idempotent. */
void cv_netns_destroy(struct cv_netns *net);

/* Moves the calling thread into host k's namespace (sockets it opens, and children it forks, from now on
 * live there). Returns the thread's previous namespace (an fd, owned: give it to cv_netns_leave), or
 * CV_EIO (a message on stderr). */
int cv_netns_enter(const struct cv_netns *net, int k);
/* Moves the calling thread back to the namespace cv_netns_enter returned and closes that fd. 0 or CV_EIO. */
int cv_netns_leave(int prev);

/* Host k's cable at the bridge: down (every packet to or from k is lost, its own side keeps its address
 * and sees no carrier) or up again. 0 or CV_EIO. */
int cv_netns_link(struct cv_netns *net, int k, bool up);
/* Only the path between hosts a and b: both directions silently dropped (cut) or restored. 0 or CV_EIO. */
int cv_netns_cut_pair(struct cv_netns *net, int a, int b, bool cut);
/* Shapes every host's link with 1-5 ms of delay and jitter: `tc netem delay 3ms 2ms` on every host's
 * eth0. Kernels without sch_netem get a token bucket instead (a 2 Mbit/s link: 1500-byte packets take
 * 6 ms, queues add jitter) and a line on stderr saying so. 1 when netem was used, 0 for tbf, CV_EIO. */
int cv_netns_jitter(struct cv_netns *net);

/* Runs a shell command (printf format) and returns its exit status (-1 if it could not run); its output
 * goes to stderr when it fails. */
int cv_netns_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
