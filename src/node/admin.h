/* The node's admin HTTP endpoints (POST /v1/admin/...): an operator's shard moves, pins and node drains,
 * each proposed through the consensus as a catalog command and answered once applied on this node. */
#ifndef CV_NODE_ADMIN_H
#define CV_NODE_ADMIN_H

#include <stdbool.h>

#include "net/http.h"
#include "node/api.h"

/* The path prefix every admin endpoint starts with. */
#define CV_ADMIN_PREFIX "/v1/admin/"

/* Answers a request whose path starts with CV_ADMIN_PREFIX (404 for an unknown admin path). The answer
 * may come later (after the proposal was applied): x stays the HTTP server's, a is borrowed and read
 * only during this call. */
void cv_admin_handle(struct cv_api *a, struct cv_http_exchange *x, const struct cv_http_request *req);

#endif
