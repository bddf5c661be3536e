/* etcd v3 client over the JSON gateway: unary calls and watches on cv_httpc, failing over across endpoints. */
#ifndef CV_DISCOVERY_ETCD_H
#define CV_DISCOVERY_ETCD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "discovery/codec.h"

struct cv_etcd;

struct cv_etcd_opts {
    uv_loop_t *loop;              /* borrowed, valid until the close callback */
    const char *const *endpoints; /* "host:port" or "http://host:port"; copied */
    size_t n_endpoints;
    unsigned timeout_ms;          /* one attempt of a unary call; 0: 2000 */
};

/* err: 0 (r valid until the callback returns), CV_EUNAVAIL (no endpoint answered), CV_ENOTFOUND (etcd
 * said not found, e.g. an expired lease), CV_EIO (another etcd error, r->error), CV_EPROTO (not an etcd
 * reply), CV_ECANCELED (client closing), CV_ENOMEM. r is NULL unless etcd answered. */
typedef void (*cv_etcd_cb)(void *data, int err, const struct cv_etcd_reply *r);
/* One message of a watch stream (valid during the call); return false to end the watch. */
typedef bool (*cv_etcd_msg_cb)(void *data, const struct cv_etcd_reply *r);

/* CV_EINVAL (no endpoint), CV_ENOMEM, CV_EIO. *out is owned by the caller until cv_etcd_close's callback. */
int cv_etcd_init(const struct cv_etcd_opts *opts, struct cv_etcd **out);

/* POSTs body (owned: taken in every case) to path ("/v3/kv/put", ...) on the current endpoint; a transport
 * failure or an unavailable etcd (HTTP 502-504, gRPC code 14) moves to the next endpoint and tries again,
 * each endpoint once. cb runs once, later on the loop (never from inside this call). 0, or CV_ENOMEM /
 * CV_ECLOSED / CV_EINVAL (body NULL: an encoder ran out of memory) and cb never runs. */
int cv_etcd_call(struct cv_etcd *e, const char *path, char *body, cv_etcd_cb cb, void *data);

/* Watches every key under prefix from start_revision (0: now) on the current endpoint. on_msg gets each
 * message (created, events, canceled with compact_revision); runs inside libcurl: it must not call into
 * this client (defer). on_end runs once when the stream ends: CV_ETIMEDOUT after max_ms (a normal end:
 * resume from the last revision + 1), CV_ECANCELED (on_msg said stop, or closing), CV_EUNAVAIL (the
 * endpoint failed: the next watch goes to the next one), CV_EIO. 0 or CV_ENOMEM / CV_ECLOSED. */
int cv_etcd_watch(struct cv_etcd *e, const char *prefix, int64_t start_revision, unsigned max_ms,
                  cv_etcd_msg_cb on_msg, cv_etcd_cb on_end, void *data);

/* The endpoint calls go to now ("http://host:port"); valid until the next call or close. */
const char *cv_etcd_endpoint(const struct cv_etcd *e);

/* Ends what is pending (callbacks with CV_ECANCELED, from inside this call), then frees e; cb (may be
 * NULL) runs once its handles closed. */
void cv_etcd_close(struct cv_etcd *e, void (*cb)(void *data), void *data);

#endif
