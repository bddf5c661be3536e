/* What a cluster port lets in: the process' secret or protected mode, failure counters and rate-limited logs. */
#ifndef CV_AUTH_GUARD_H
#define CV_AUTH_GUARD_H

#include <stdint.h>
#include <sys/socket.h>

#include "auth/handshake.h"
#include "auth/secret.h"
#include "util/buf.h"

/* The policy of one port (a server) or one dialler (a client). Borrowed by whoever uses it: valid until
 * that server / client / transport has closed. */
struct cv_guard {
    const struct cv_secret *secret; /* NULL: no handshake */
    int loopback_only;              /* protected mode: refuse peers that are not on a loopback address */
};

/* The process-wide guard of cluster ports, set once at start (cv_guard_setup); both fields zero before
 * (no handshake, every peer: what unit tests and tools without a config get). */
const struct cv_guard *cv_guard_cluster(void);
/* Loads the secret (cv_secret_setup) and fixes the process' cluster guard: with a secret, handshakes;
 * without one and !insecure, protected mode (logged once, with how to configure a secret, if serves:
 * the process listens on cluster ports); insecure: a warning. Returns the load's error (err filled) if
 * the secret file is bad (the caller exits 2). */
int cv_guard_setup(const char *cfg_secret_file, int insecure, int serves, char *err, size_t errlen);

/* 1 if sa is a loopback address (127.0.0.0/8, ::1, or ::ffff:127.x.y.z). */
int cv_guard_is_loopback(const struct sockaddr *sa);
/* 1 if a peer at sa may talk to a port under g (protected mode checks the address). A refused peer is
 * counted and logged (cv_guard_fail) by this call. */
int cv_guard_admit(const struct cv_guard *g, const struct sockaddr *sa, const char *what);
/* Where a node's HTTP port listens under g: in protected mode a wildcard or "localhost" host becomes
 * loopback ("0.0.0.0:8001" -> "127.0.0.1:8001", "[::]:8001" -> "[::1]:8001"), so the port is not even
 * reachable from other hosts; otherwise addr unchanged. Writes out (>= 64 bytes); returns 1 for a
 * specific non-loopback address in protected mode (it stays bound there; the server's admit hook,
 * cv_guard_admit, refuses its non-loopback peers), else 0. */
int cv_guard_http_listen(const struct cv_guard *g, const char *addr, char *out, size_t n);
/* Counts a failed handshake (enum cv_auth_reason) and logs it, at most one line per second per reason
 * (the lines not written are counted in the next one). what: "rpc", "raft", "http"; peer: "host:port". */
void cv_guard_fail(int reason, const char *what, const char *peer);
/* Failures so far with reason (for tests). */
uint64_t cv_guard_failures(int reason);
/* Appends the family cverse_auth_failures_total{reason="..."} (every reason, zeros included). */
void cv_guard_metrics(struct cv_buf *b);

#endif
