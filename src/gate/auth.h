/* Client authentication at the gate: bearer tokens (config/tokens.h), a module's authorise hook, and the identity of each native connection. */
#ifndef CV_GATE_AUTH_H
#define CV_GATE_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/tokens.h"
#include "cverse/gate.h"
#include "net/rpc.h"

#define CV_GATE_AUTH_METHOD "gate.auth"

struct cv_gate_auth;

/* Who a request comes from: user "" = not authenticated (a gate without authentication). */
struct cv_gate_caller {
    char user[CV_GATE_USER_MAX];
    char roles[CV_GATE_ROLES_MAX];
};

/* tokens (taken: freed with the auth; NULL or empty = none) and hooks (copied; NULL or no authorise =
 * none). With neither, authentication is off: every request passes as user "". CV_ENOMEM. */
int cv_gate_auth_init(struct cv_tokens *tokens, const struct cv_gate_hooks *hooks, struct cv_gate_auth **out);
void cv_gate_auth_free(struct cv_gate_auth *a);
/* true when clients must authenticate (a tokens file or a hook); a NULL a is off. */
bool cv_gate_auth_on(const struct cv_gate_auth *a);

/* Authenticates a request: the hook first (if any), then the tokens file with the bearer token of
 * authorization ("Bearer TOKEN"). 0 and *who (user "" when authentication is off), or CV_EAUTH. */
int cv_gate_auth_check(const struct cv_gate_auth *a, const char *transport, const char *authorization,
                       const char *path, struct cv_gate_caller *who);

/* A client's request against the config's rules: life 0 for a call of method, else CV_LIFE_CREATE or
 * CV_LIFE_DELETE (core/access.h). 0, or CV_EPERM (403 PERMISSION_DENIED) with a message in err. */
struct cv_access_rules;
int cv_gate_auth_permit(const struct cv_access_rules *rules, int life, const char *type, const char *id,
                        const char *method, char *err, size_t errlen);

/* gate.auth on a native connection (body: AuthRequest): 0 and the connection is authenticated as *who
 * from now on (a later gate.auth replaces it), CV_EAUTH (it stays as it was), CV_EPROTO, CV_ENOMEM. */
int cv_gate_auth_conn_login(struct cv_gate_auth *a, struct cv_rpc_conn *conn, const uint8_t *body, size_t len,
                            struct cv_gate_caller *who);
/* The connection's identity, or NULL when it has not authenticated (borrowed: valid until it closes). */
const struct cv_gate_caller *cv_gate_auth_conn(const struct cv_gate_auth *a, const struct cv_rpc_conn *conn);
/* The connection closed: its identity is forgotten. */
void cv_gate_auth_conn_closed(struct cv_gate_auth *a, struct cv_rpc_conn *conn);

#endif
