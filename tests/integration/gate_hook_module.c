/* A gate module for test_gate_auth (cverse-gate --module): its authorise hook accepts "Bearer hook-USER"
 * as USER with role "hooked", refuses "Bearer banned" outright (even if the tokens file has it), and has
 * no opinion on anything else (the gate's tokens file decides). */
#include <cverse/error.h>
#include <cverse/gate.h>
#include <stdio.h>
#include <string.h>

static int authorise(void *data, const struct cv_gate_request *req, struct cv_gate_identity *who)
{
    (void)data;
    if (!strcmp(req->authorization, "Bearer banned")) return CV_EAUTH;
    if (strncmp(req->authorization, "Bearer hook-", 12) != 0) return CV_ENOTFOUND;
    snprintf(who->user_id, sizeof who->user_id, "%s", req->authorization + 12);
    snprintf(who->roles, sizeof who->roles, "hooked");
    return 0;
}

__attribute__((visibility("default"))) int cverse_gate_module_init(struct cv_gate_hooks *hooks)
{
    hooks->authorise = authorise;
    return 0;
}
