/* cverse-inspector's server: polls the nodes, keeps the model and events, serves the API and web UI. */
#ifndef CV_INSPECTOR_INSPECTOR_H
#define CV_INSPECTOR_INSPECTOR_H

#include <stdbool.h>
#include <uv.h>

#include "config/config.h"

struct cv_inspector;

struct cv_inspector_opts {
    uv_loop_t *loop;
    const struct cv_config *cfg; /* borrowed, outlives the inspector */
    const char *http_addr;       /* NULL: cfg->inspector.http_addr (or 127.0.0.1:48200 without one) */
    const char *token;           /* NULL: read-only; copied */
    const char *const *www_dirs; /* NULL-terminated list of UI directories, first with index.html wins */
    const char *vendor_dir;      /* NULL: /usr/share/javascript */
    unsigned poll_ms;            /* 0: 1000 */
    bool handle_signals;         /* stop on SIGTERM/SIGINT */
    void (*on_stopped)(void *data); /* after everything closed (not after a failed start) */
    void *data;
};

/* Listens and starts polling. On failure everything opened is closed through the loop (run it) and *out
 * is untouched. */
int cv_inspector_start(const struct cv_inspector_opts *o, struct cv_inspector **out);
/* Stops serving and polling; the inspector is freed once every handle closed (then on_stopped). */
void cv_inspector_stop(struct cv_inspector *in);
int cv_inspector_http_port(const struct cv_inspector *in);

#endif
