/* The node's HTTP API (/health, /ready, /v1/cluster, /v1/shards, /v1/objects, /v1/stats, /metrics):
 * views of the node's components, answered synchronously, and the admin actions (/v1/admin/..., admin.h). */
#ifndef CV_NODE_API_H
#define CV_NODE_API_H

#include <stdbool.h>

#include "catalog/catalog.h"
#include "config/config.h"
#include "consensus/consensus.h"
#include "net/http.h"

struct cv_host;
struct cv_leader_stats;

/* This node's own lease as the node sees it, and what its leader duties observed. */
struct cv_api_lease {
    const char *state;        /* the lease view: "none", "valid", "suspect", "fenced" (static) */
    int state_index;          /* enum cv_lease_state */
    const char *registration; /* the registration machine's state name (static) */
    uint64_t remaining_ms;    /* of the serving window; 0 when not serving */
    uint64_t fencings;        /* times this process fenced itself */
    const struct cv_leader_stats *leader; /* borrowed, valid during the call; NULL if none */
};

/* What the API reads; every pointer is borrowed and valid while the HTTP server runs. */
struct cv_api {
    const struct cv_config *cfg;
    const struct cv_node_cfg *self;
    struct cv_catalog *catalog;
    struct cv_consensus *consensus;
    struct cv_host *host;
    bool (*ready)(void *data, const char **why); /* /ready: true, or false with a static reason */
    void (*lease)(void *data, struct cv_api_lease *out); /* fills our own lease view */
    struct cv_disc *disc;                        /* etcd discovery (cverse_etcd_up), NULL without */
    void *data;
};

/* The HTTP handler; data is a struct cv_api. */
void cv_api_handle(void *data, struct cv_http_exchange *x, const struct cv_http_request *req);

#endif
