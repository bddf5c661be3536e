/* The interface between cverse-bench's load loop and a transport (native.c: the gate's framed protocol;
 * http.c: the gate's HTTP API and etcd's JSON gateway). */
#ifndef CV_BENCH_DRIVER_H
#define CV_BENCH_DRIVER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "bench/opts.h"

/* What one request does: a call or a create of object <prefix><n>, or an etcd put of key <prefix><n>. */
enum cv_bench_kind { CV_BENCH_REQ_CALL, CV_BENCH_REQ_CREATE, CV_BENCH_REQ_PUT };

/* A request finished: err NULL on success, else its status name (valid during the call). start_ns is
 * the value given to send (so an open loop's intended start comes back). Never called from inside send. */
typedef void (*cv_bench_done_cb)(void *data, uint64_t start_ns, const char *err);
typedef void (*cv_bench_closed_cb)(void *data);

struct cv_bench_driver;
struct cv_bench_driver_ops {
    /* true when one more request can be sent now (HTTP: an idle connection; native: always). */
    bool (*can_send)(struct cv_bench_driver *d);
    /* Starts a request; done fires later exactly once. 0, or a CV_E* code (done is then never called). */
    int (*send)(struct cv_bench_driver *d, enum cv_bench_kind kind, uint64_t n, uint64_t start_ns);
    /* Fails what is pending (done with "CANCELED"), closes every handle, then closed(data) and frees d. */
    void (*close)(struct cv_bench_driver *d, cv_bench_closed_cb closed);
};

/* The common head of every driver (the transports embed it first). */
struct cv_bench_driver {
    const struct cv_bench_driver_ops *ops;
    const struct cv_bench_opts *o; /* borrowed, valid until closed */
    const char *prefix;            /* id / key prefix; borrowed, valid until closed */
    cv_bench_done_cb done;
    void *data;
};

/* Creates the driver for o->target on loop (native.c for --gate, http.c for --http and --etcd); its
 * connections are dialed at once. 0 or CV_ENOMEM / CV_EINVAL. */
int cv_bench_native_init(uv_loop_t *loop, const struct cv_bench_opts *o, const char *prefix,
                         cv_bench_done_cb done, void *data, struct cv_bench_driver **out);
int cv_bench_http_init(uv_loop_t *loop, const struct cv_bench_opts *o, const char *prefix,
                       cv_bench_done_cb done, void *data, struct cv_bench_driver **out);

#endif
