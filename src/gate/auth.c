/* Client authentication at the gate (docs/security.md, "At the gate").
 *
 * Happy path: HTTP requests and native gate.auth frames present a bearer token. A module's authorise
 * hook (cverse/gate.h), when one is registered, decides first: an identity, a refusal, or no opinion;
 * with no opinion the tokens file (gates[].auth_tokens_file) looks the token up in constant time
 * (cv_tokens_find). A native connection that passed gate.auth keeps its identity (uthash keyed by the
 * connection pointer) until it closes; the front ends attach the identity to every call they forward.
 *
 * Failure modes: no or a wrong token, a hook's refusal: CV_EAUTH (401 UNAUTHENTICATED, from the error
 * table). Out of memory while remembering a connection: CV_ENOMEM (it stays unauthenticated).
 * Without tokens and hook the gate is open as before: every request is user "". */
#include "gate/auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HASH_NONFATAL_OOM 1
#include <uthash.h>

#include "core/access.h"
#include "cverse/error.h"
#include "rpc.pb-c.h"

struct aconn {
    UT_hash_handle hh; /* a->conns, keyed by conn */
    const struct cv_rpc_conn *conn;
    struct cv_gate_caller who;
};

struct cv_gate_auth {
    struct cv_tokens tokens;
    struct cv_gate_hooks hooks;
    struct aconn *conns;
};

int cv_gate_auth_init(struct cv_tokens *tokens, const struct cv_gate_hooks *hooks, struct cv_gate_auth **out)
{
    struct cv_gate_auth *a = calloc(1, sizeof *a);
    if (!a) return CV_ENOMEM;
    if (tokens) {
        a->tokens = *tokens;
        memset(tokens, 0, sizeof *tokens);
    }
    if (hooks) a->hooks = *hooks;
    *out = a;
    return 0;
}

void cv_gate_auth_free(struct cv_gate_auth *a)
{
    if (!a) return;
    struct aconn *c, *tmp;
    HASH_ITER(hh, a->conns, c, tmp) {
        HASH_DEL(a->conns, c);
        free(c);
    }
    cv_tokens_free(&a->tokens);
    free(a);
}

bool cv_gate_auth_on(const struct cv_gate_auth *a)
{
    return a && (a->tokens.n || a->hooks.authorise);
}

/* The token of "Bearer TOKEN" (scheme case-insensitive, RFC 6750), or NULL. */
static const char *auth__bearer(const char *h, size_t *len)
{
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return NULL;
    h += 7;
    while (*h == ' ') h++;
    size_t n = strlen(h);
    while (n && (h[n - 1] == ' ' || h[n - 1] == '\t')) n--;
    *len = n;
    return n ? h : NULL;
}

int cv_gate_auth_check(const struct cv_gate_auth *a, const char *transport, const char *authorization,
                       const char *path, struct cv_gate_caller *who)
{
    memset(who, 0, sizeof *who);
    if (!cv_gate_auth_on(a)) return 0;
    if (a->hooks.authorise) {
        struct cv_gate_request req = {transport, authorization ? authorization : "", path ? path : ""};
        struct cv_gate_identity id = {{0}, {0}};
        int rv = a->hooks.authorise(a->hooks.data, &req, &id);
        if (rv == 0 && id.user_id[0]) {
            snprintf(who->user, sizeof who->user, "%.*s", CV_GATE_USER_MAX - 1, id.user_id);
            snprintf(who->roles, sizeof who->roles, "%.*s", CV_GATE_ROLES_MAX - 1, id.roles);
            return 0;
        }
        if (rv != CV_ENOTFOUND) return CV_EAUTH; /* a refusal (or an identity without a user) */
    }
    size_t n = 0;
    const char *tok = auth__bearer(authorization, &n);
    const struct cv_token *t = tok ? cv_tokens_find(&a->tokens, tok, n) : NULL;
    if (!t) return CV_EAUTH;
    snprintf(who->user, sizeof who->user, "%s", t->user_id);
    snprintf(who->roles, sizeof who->roles, "%s", t->roles);
    return 0;
}

int cv_gate_auth_conn_login(struct cv_gate_auth *a, struct cv_rpc_conn *conn, const uint8_t *body, size_t len,
                            struct cv_gate_caller *who)
{
    Cverse__Rpc__AuthRequest *r = cverse__rpc__auth_request__unpack(NULL, len, body);
    if (!r) return CV_EPROTO;
    size_t tl = strlen(r->token);
    char *bearer = malloc(tl + 8);
    int rv = bearer ? 0 : CV_ENOMEM;
    if (bearer) {
        memcpy(bearer, "Bearer ", 7);
        memcpy(bearer + 7, r->token, tl + 1);
        rv = cv_gate_auth_check(a, "native", bearer, CV_GATE_AUTH_METHOD, who);
        free(bearer);
    }
    cverse__rpc__auth_request__free_unpacked(r, NULL);
    if (rv) return rv;
    struct aconn *c = NULL;
    HASH_FIND_PTR(a->conns, &conn, c);
    if (!c) {
        if (!(c = calloc(1, sizeof *c))) return CV_ENOMEM;
        c->conn = conn;
        HASH_ADD_PTR(a->conns, conn, c);
        if (!c->hh.tbl) {
            free(c);
            return CV_ENOMEM;
        }
    }
    c->who = *who;
    return 0;
}

int cv_gate_auth_permit(const struct cv_access_rules *rules, int life, const char *type, const char *id,
                        const char *method, char *err, size_t errlen)
{
    if (!life && cv_access_call(rules, type, id, method, false)) {
        snprintf(err, errlen, "%.100s.%.100s on %.100s is not permitted to clients (object_access_rules)", type,
                 method, id);
        return CV_EPERM;
    }
    if (life && cv_access_life(rules, life, type, id, false)) {
        snprintf(err, errlen, "%s of %.100s %.100s is not permitted to clients (object_lifecycle_rules)",
                 life == CV_LIFE_CREATE ? "creating" : "deleting", type, id);
        return CV_EPERM;
    }
    return 0;
}

const struct cv_gate_caller *cv_gate_auth_conn(const struct cv_gate_auth *a, const struct cv_rpc_conn *conn)
{
    struct aconn *c = NULL;
    if (a) HASH_FIND_PTR(a->conns, &conn, c);
    return c ? &c->who : NULL;
}

void cv_gate_auth_conn_closed(struct cv_gate_auth *a, struct cv_rpc_conn *conn)
{
    struct aconn *c = NULL;
    if (a) HASH_FIND_PTR(a->conns, &conn, c);
    if (!c) return;
    HASH_DEL(a->conns, c);
    free(c);
}
