/* cverse gate modules: the hooks a module loaded with `cverse-gate --module FILE.so` registers (issue 14). */
#ifndef CVERSE_GATE_H
#define CVERSE_GATE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CV_GATE_USER_MAX 128  /* user_id bytes, NUL included */
#define CV_GATE_ROLES_MAX 256 /* roles bytes ("a,b"), NUL included */

/* What the hook sees of a client request. Everything borrowed: valid during the hook only. */
struct cv_gate_request {
    const char *transport;     /* "http" or "native" */
    const char *authorization; /* HTTP: the Authorization header ("" if absent); native: "Bearer <token>" of
                                * the connection's gate.auth frame */
    const char *path;          /* HTTP: the request's path; native: "gate.auth" */
};

/* The identity a hook gives an authenticated client. */
struct cv_gate_identity {
    char user_id[CV_GATE_USER_MAX];  /* non-empty */
    char roles[CV_GATE_ROLES_MAX];   /* comma-separated, "" = none */
};

struct cv_gate_hooks {
    /* Goverse's authorise(headers) -> caller: decides who the client is, before the gate's tokens file.
     * Returns 0 with *who filled (authenticated: the tokens file is not consulted), CV_EAUTH (refused:
     * 401 UNAUTHENTICATED), or CV_ENOTFOUND (no opinion: the tokens file decides; without one, 401).
     * Runs on the gate's event loop: it must not block. NULL: no hook. */
    int (*authorise)(void *data, const struct cv_gate_request *req, struct cv_gate_identity *who);
    void *data; /* handed back to authorise; owned by the module, lives as long as the process */
};

/* Exported by a gate module (--module FILE.so): called once at gate start, before the gate listens;
 * fills hooks (all NULL on entry). 0, or a negative CV_E* code that stops the gate (exit 2). */
int cverse_gate_module_init(struct cv_gate_hooks *hooks);

#ifdef __cplusplus
}
#endif

#endif
