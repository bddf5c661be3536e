/* cverse-stress's partition network (--churn-mode partition): every node and gate of the cluster it
 * starts in a network namespace of its own (src/util/netns.h), cverse-stress itself in one more (the
 * clients' host), the config's addresses rewritten to the namespaces' addresses. */
#ifndef CV_STRESS_NS_H
#define CV_STRESS_NS_H

#include <stddef.h>

struct cv_stress_cluster;

/* The config text with every address of node i (grpc_addr, advertise_addr, http_addr, raft_addr,
 * raft_bind_addr) on host ips[i] and of gate g on ips[n_nodes + g], ports kept; entries are counted in
 * file order under the top-level `nodes:` and `gates:` keys; every other line is kept as it is (pure).
 * Returns the new text (owned: free), or NULL when the file has a different number of nodes or gates
 * than n_nodes / n_gates (or out of memory). */
char *cv_stress_ns_config(const char *text, const char *const *ips, unsigned n_nodes, unsigned n_gates);

/* For a cluster whose config is loaded (c->cfg, c->config): creates the namespaces (nodes, gates, and
 * the clients' one last: c->net, owned), rewrites c->config to their addresses and loads it again, and
 * moves the calling thread into the clients' namespace, so every socket it opens from now on (clients,
 * polls) lives there. 0; CV_EPERM without root or network namespaces; CV_EIO / CV_ECONFIG otherwise;
 * one line in err. */
int cv_stress_ns_setup(struct cv_stress_cluster *c, char *err, size_t errlen);

#endif
