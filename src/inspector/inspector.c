/* cverse-inspector's server: wires the HTTP client, the poller, the events log and the HTTP front end.
 *
 * Happy path: start creates the events log, the HTTP client and the poller, binds the HTTP server on the
 * inspector's http_addr with the web handler, then starts polling (first round at once). Stop (SIGTERM,
 * SIGINT or cv_inspector_stop): the HTTP server closes (streams end, pending action answers become
 * no-ops), the client closes (pending requests are cancelled: the poller only counts them down), then
 * the poller's timer and the signals close; the last close callback frees everything.
 *
 * Failure modes: an address in use or out of memory at start closes what was opened and returns the
 * error; the loop then runs empty. Single-threaded: everything runs on the loop. */
#include "inspector/inspector.h"

#include <signal.h>
#include <stdlib.h>

#include "cverse/error.h"
#include "inspector/events.h"
#include "inspector/poll.h"
#include "inspector/stats.h"
#include "inspector/web.h"
#include "net/http.h"
#include "net/httpc.h"
#include "util/log.h"

#define HTTP_MAX_BODY (64u << 10)
#define DEFAULT_HTTP_ADDR "127.0.0.1:48200"

struct cv_inspector {
    struct cv_inspector_opts o;
    struct cv_insp_events *events;
    struct cv_httpc *httpc;
    struct cv_insp_poll *poll;
    struct cv_insp_stats *stats;
    struct cv_insp_web *web;
    struct cv_http_server *http;
    uv_signal_t sigterm, sigint;
    bool signals, closing;
    int pending; /* close callbacks not run yet */
};

static void insp__unref(struct cv_inspector *in)
{
    if (--in->pending > 0) return;
    void (*cb)(void *) = in->closing && in->o.on_stopped ? in->o.on_stopped : NULL;
    void *data = in->o.data;
    cv_insp_web_free(in->web);
    cv_insp_events_free(in->events);
    cv_insp_stats_free(in->stats);
    free(in);
    if (cb) cb(data);
}

static void insp__closed(void *data)
{
    insp__unref(data);
}

static void insp__handle_closed(uv_handle_t *h)
{
    insp__unref(h->data);
}

/* Closes whatever is open; also the unwinding of a failed start. */
static void insp__shutdown(struct cv_inspector *in)
{
    in->pending++; /* held while closing: nothing is freed from in here */
    if (in->http) cv_http_server_close(in->http, insp__closed), in->pending++;
    in->http = NULL;
    if (in->httpc) cv_httpc_close(in->httpc, insp__closed, in), in->pending++;
    in->httpc = NULL;
    if (in->poll) cv_insp_poll_close(in->poll, insp__closed, in), in->pending++;
    in->poll = NULL;
    if (in->signals) {
        uv_close((uv_handle_t *)&in->sigterm, insp__handle_closed);
        uv_close((uv_handle_t *)&in->sigint, insp__handle_closed);
        in->pending += 2;
        in->signals = false;
    }
    insp__unref(in);
}

void cv_inspector_stop(struct cv_inspector *in)
{
    if (in->closing) return;
    in->closing = true;
    CV_INFO("inspector stopping");
    insp__shutdown(in);
}

static void insp__on_signal(uv_signal_t *s, int signum)
{
    CV_INFO("received %s: stopping", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    cv_inspector_stop(s->data);
}

int cv_inspector_http_port(const struct cv_inspector *in)
{
    return in->http ? cv_http_server_port(in->http) : CV_EINVAL;
}

static void insp__round(void *data)
{
    struct cv_inspector *in = data;
    if (in->stats) cv_insp_stats_update(in->stats, cv_insp_poll_model(in->poll));
    if (in->web) cv_insp_web_tick(in->web);
}

static int insp__parts(struct cv_inspector *in)
{
    const struct cv_inspector_opts *o = &in->o;
    int rv = cv_insp_events_new(CV_INSP_EVENTS_CAP, &in->events);
    if (!rv) rv = cv_insp_stats_new(o->cfg, &in->stats);
    if (!rv) rv = cv_httpc_init(o->loop, &in->httpc);
    if (rv) return rv;
    struct cv_insp_poll_opts po = {.loop = o->loop, .cfg = o->cfg, .httpc = in->httpc, .events = in->events,
                                   .interval_ms = o->poll_ms, .on_round = insp__round, .data = in};
    if ((rv = cv_insp_poll_init(&po, &in->poll))) return rv;
    struct cv_insp_web_opts wo = {.cfg = o->cfg, .poll = in->poll, .events = in->events, .stats = in->stats,
                                  .httpc = in->httpc,
                                  .token = o->token, .www_dirs = o->www_dirs,
                                  .vendor_dir = o->vendor_dir ? o->vendor_dir : "/usr/share/javascript"};
    return cv_insp_web_new(&wo, &in->web);
}

static void insp__handle(void *data, struct cv_http_exchange *x, const struct cv_http_request *req)
{
    struct cv_inspector *in = data;
    cv_insp_web_handle(in->web, x, req);
}

static int insp__listen(struct cv_inspector *in)
{
    const struct cv_config *cfg = in->o.cfg;
    const char *addr = in->o.http_addr ? in->o.http_addr
                       : cfg->has_inspector ? cfg->inspector.http_addr : DEFAULT_HTTP_ADDR;
    struct cv_http_opts ho = {.max_body = HTTP_MAX_BODY};
    int rv = cv_http_server_init(in->o.loop, &ho, insp__handle, in, &in->http);
    if (!rv) rv = cv_http_server_listen(in->http, addr);
    if (rv) return rv;
    CV_INFO("inspector: HTTP on %s (port %d), %zu nodes, %u shards, actions %s, UI from %s", addr,
            cv_http_server_port(in->http), cfg->n_nodes, (unsigned)cfg->shards,
            in->o.token ? "enabled (bearer token)" : "disabled (no token)",
            *cv_insp_web_www(in->web) ? cv_insp_web_www(in->web) : "(none)");
    return 0;
}

int cv_inspector_start(const struct cv_inspector_opts *o, struct cv_inspector **out)
{
    if (!o || !o->loop || !o->cfg || !out) return CV_EINVAL;
    struct cv_inspector *in = calloc(1, sizeof *in);
    if (!in) return CV_ENOMEM;
    in->o = *o;
    int rv = insp__parts(in);
    if (!rv) rv = insp__listen(in);
    if (!rv) rv = cv_insp_poll_start(in->poll);
    if (rv) {
        in->o.on_stopped = NULL;
        insp__shutdown(in);
        return rv;
    }
    if (o->handle_signals) {
        uv_signal_init(o->loop, &in->sigterm);
        uv_signal_init(o->loop, &in->sigint);
        in->sigterm.data = in->sigint.data = in;
        uv_signal_start(&in->sigterm, insp__on_signal, SIGTERM);
        uv_signal_start(&in->sigint, insp__on_signal, SIGINT);
        in->signals = true;
    }
    *out = in;
    return 0;
}
