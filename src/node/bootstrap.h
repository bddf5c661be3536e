/* Bootstrap exactly once with etcd: which node started from flags creates the cluster (a create-if-absent
 * txn on <prefix>/bootstrap decides), and which ones join it. */
#ifndef CV_NODE_BOOTSTRAP_H
#define CV_NODE_BOOTSTRAP_H

#include <stdbool.h>
#include <uv.h>

#include "config/config.h"

/* first: this node creates the cluster (it won <prefix>/bootstrap, or holds it from an earlier start);
 * else it joins the cluster that exists. */
typedef void (*cv_bootstrap_cb)(void *data, bool first);

/* Asks etcd (cfg's endpoints and prefix) once it answers, retrying every 500 ms while it does not: puts
 * <prefix>/bootstrap = id if neither that key nor <prefix>/leader exists (a cluster started from a config
 * has a leader key: it is joined, never bootstrapped again). cb runs once, on the loop, after everything
 * this created was closed. 0, CV_EINVAL (no etcd endpoint), CV_ENOMEM. */
int cv_bootstrap_decide(uv_loop_t *loop, const struct cv_config *cfg, const char *id, cv_bootstrap_cb cb, void *data);

#endif
