/* The inspector's HTTP front end: the read API, the actions (forwarded to the raft leader's admin
 * endpoints, behind a bearer token), the events stream and the web UI's static files. */
#ifndef CV_INSPECTOR_WEB_H
#define CV_INSPECTOR_WEB_H

#include "config/config.h"
#include "inspector/events.h"
#include "inspector/poll.h"
#include "inspector/stats.h"
#include "net/http.h"
#include "net/httpc.h"

struct cv_insp_web;

struct cv_insp_web_opts {
    const struct cv_config *cfg;   /* borrowed */
    struct cv_insp_poll *poll;     /* borrowed: the model and the nodes' URLs */
    struct cv_insp_events *events; /* borrowed */
    struct cv_insp_stats *stats;   /* borrowed (NULL: /api/state has "stats":null) */
    struct cv_httpc *httpc;        /* borrowed: actions go out through it */
    const char *token;             /* NULL: read-only (actions answer 403); copied */
    const char *const *www_dirs;   /* NULL-terminated; the first holding index.html serves the UI */
    const char *vendor_dir;        /* holds chart.js/ and d3/ (Debian: /usr/share/javascript) */
};

int cv_insp_web_new(const struct cv_insp_web_opts *o, struct cv_insp_web **out);
/* The cv_http_handler; data is the cv_insp_web. */
void cv_insp_web_handle(void *data, struct cv_http_exchange *x, const struct cv_http_request *req);
/* Once per poll round: the events streams' keep-alive. */
void cv_insp_web_tick(struct cv_insp_web *w);
/* Frees w. Close the HTTP server and the client before (their answers then only free themselves). */
void cv_insp_web_free(struct cv_insp_web *w);
/* The directory the UI is served from ("" when none has index.html). */
const char *cv_insp_web_www(const struct cv_insp_web *w);

#endif
