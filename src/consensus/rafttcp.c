/* libraft's TCP transport with TCP liveness (see rafttcp.h).
 *
 * Why: libraft's uv transport keeps one outgoing stream per peer and writes every message into it; it
 * dials again only when a write fails. A partition does not make a write fail: the kernel buffers the
 * data and backs off its retransmissions (0.2 s, 0.4 s, ... doubling), so after a 15 s cut the leader's
 * AppendEntries reached the returning node only at the next retransmission, 11.7 s after the heal
 * (docs/partitions.md). With TCP_USER_TIMEOUT the kernel aborts the silent connection after
 * CV_TCP_LIVE_MS, the pending write fails, libraft closes the stream and dials again (every
 * connect_retry_delay while the peer is unreachable), and a fresh connection works as soon as the network
 * does.
 *
 * Happy path: connect -> libraft's own connect with our request -> our callback sets the bound on the
 * new stream -> libraft's callback with its own request. Failure modes: the allocation of our request
 * fails (RAFT_NOMEM, libraft retries later); the bound cannot be set (the stream keeps TCP's timeouts).
 * Every connect's callback fires exactly once (also when the transport closes: RAFT_CANCELED), which is
 * where our request is freed. */
#include "consensus/rafttcp.h"

#include <raft.h>
#include <stdlib.h>

#include "net/tcplive.h"

/* The connect function of libraft's transport, saved by cv_rafttcp_live (one process, one transport). */
static int (*tcp_connect)(struct raft_uv_transport *, struct raft_uv_connect *, raft_id, const char *,
                          raft_uv_connect_cb);

struct live_connect {
    struct raft_uv_connect req;  /* ours, given to libraft's connect */
    struct raft_uv_connect *orig; /* raft's, borrowed until its callback */
    raft_uv_connect_cb cb;
};

static void live_connected(struct raft_uv_connect *req, struct uv_stream_s *stream, int status)
{
    struct live_connect *lc = req->data;
    struct raft_uv_connect *orig = lc->orig;
    raft_uv_connect_cb cb = lc->cb;
    free(lc);
    if (status == 0) cv_tcp_live(stream); /* on failure the stream keeps TCP's own timeouts */
    cb(orig, stream, status);
}

static int live_connect(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id, const char *address,
                        raft_uv_connect_cb cb)
{
    struct live_connect *lc = malloc(sizeof *lc);
    if (!lc) return RAFT_NOMEM;
    lc->req.data = lc;
    lc->orig = req;
    lc->cb = cb;
    req->cb = cb;
    int rv = tcp_connect(t, &lc->req, id, address, live_connected);
    if (rv != 0) free(lc);
    return rv;
}

void cv_rafttcp_live(struct raft_uv_transport *t)
{
    tcp_connect = t->connect;
    t->connect = live_connect;
}
