/* Early commit notices: the leader tells each proposer which of its commands an entry it applied carried
 * and their results, so that a proposer learns "committed" one message after the leader's commit instead
 * of at its own apply (a follower learns the commit index only from the leader's next heartbeat). */
#ifndef CV_CONSENSUS_NOTICE_H
#define CV_CONSENSUS_NOTICE_H

#include <stddef.h>
#include <stdint.h>

#include "catalog/catalog.h"
#include "net/rpc.h"

struct cv_notices;
struct cv_peers;

/* The command with the watched seq is committed at entry index with this result (0 or a CV_E* code),
 * as the leader applied it. This node's catalog may not have applied it yet. */
typedef void (*cv_notice_cb)(void *data, int status, uint64_t index);

/* peers is borrowed (valid while cv_notices_applied may run; proposers are found in it by node id);
 * self is copied. CV_ENOMEM. */
int cv_notices_init(const char *self, struct cv_peers *peers,
                    struct cv_notices **out);
void cv_notices_free(struct cv_notices *k);

/* The leader applied entry index: sends every other proposer of its commands one "catalog.applied"
 * notice over its peer connection if that is up (a notice is only a shortcut: the proposer's own apply
 * follows anyway). */
void cv_notices_applied(struct cv_notices *k, uint64_t index, const Cverse__Catalog__Batch *batch,
                        const struct cv_cmd_result *results);

/* A "catalog.applied" request: answered at once, then the watches of its seqs fire. */
void cv_notices_handle(struct cv_notices *k, struct cv_rpc_conn *conn, uint64_t id, const uint8_t *body,
                       size_t len);

/* cb(data, ...) runs at most once, when a notice names seq (a seq this node proposed: see
 * cv_consensus_propose). Unwatch when the proposal completed (a no-op if it fired). CV_ENOMEM. */
int cv_notices_watch(struct cv_notices *k, uint64_t seq, cv_notice_cb cb, void *data);
void cv_notices_unwatch(struct cv_notices *k, uint64_t seq);

#endif
