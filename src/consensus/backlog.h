/* Widens the listen backlog of libraft's TCP transport (0.22.1 listens with a backlog of 1); internal to
 * the consensus module. */
#ifndef CV_CONSENSUS_BACKLOG_H
#define CV_CONSENSUS_BACKLOG_H

#include <uv.h>

/* Sets the backlog of every listening TCP socket of loop bound to bind_addr's port ("host:port") to
 * backlog. Returns how many sockets it changed (0: none found), or CV_EINVAL for a bad address. */
int cv_backlog_widen(uv_loop_t *loop, const char *bind_addr, int backlog);

#endif
