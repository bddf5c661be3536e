/* cverse-bench's command line: flags parsed into a plain struct, with a clear message for bad ones (pure). */
#ifndef CV_BENCH_OPTS_H
#define CV_BENCH_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum cv_bench_target {
    CV_BENCH_NATIVE, /* --gate HOST:PORT: the gate's native port, many calls in flight per connection */
    CV_BENCH_HTTP,   /* --http URL: the gate's HTTP API, one request in flight per keep-alive connection */
    CV_BENCH_ETCD,   /* --etcd URL: etcd's v3 JSON gateway (the baseline of scripts/bench-compare.sh) */
};

enum cv_bench_op {
    CV_BENCH_CALL,   /* a method of an existing object (ids <prefix>0 .. <prefix>N-1) */
    CV_BENCH_CREATE, /* a new object per request (a Raft commit each) */
    CV_BENCH_PUT,    /* etcd: /v3/kv/put of key <prefix>i */
};

/* Strings point into argv (borrowed, valid as long as argv) or at static defaults. */
struct cv_bench_opts {
    enum cv_bench_target target;
    char host[256];          /* the target's host, as given ("127.0.0.1", "localhost", "::1") */
    uint16_t port;
    const char *addr;        /* the target as given on the command line (for messages) */
    enum cv_bench_op op;
    const char *type, *method;
    const char *body;        /* request as proto3 JSON, NULL = the empty request */
    const char *id_prefix;   /* NULL = the default (see cv_bench_opts_parse) */
    uint64_t objects;        /* distinct ids (calls) / keys (etcd puts) */
    bool no_create;
    unsigned concurrency;    /* requests in flight at most */
    double rps;              /* > 0: open loop at this rate */
    uint64_t duration_ms, warmup_ms;
    unsigned connections;    /* native: TCP connections shared by the requests in flight */
    unsigned timeout_ms;     /* per request */
    bool json;
    int progress;            /* -1: per-second lines when stderr is a terminal; 0 never; 1 always */
    bool tls;                /* https:// or --tls: HTTP (or --gate's native protocol) over TLS, the server's
                              * certificate verified */
    const char *ca;          /* --ca FILE: the CAs trusted (PEM); NULL: the system's store */
};

/* Fills o from argv[1..argc). Returns 0; 1 when --help or --version was asked (nothing else to do);
 * CV_EINVAL with a one-line message in err (what is wrong, with the flag's name) for anything else. */
int cv_bench_opts_parse(int argc, char **argv, struct cv_bench_opts *o, char *err, size_t errlen);
/* "10", "10s", "250ms", "2m" into milliseconds. 0 or CV_EINVAL. */
int cv_bench_parse_duration(const char *s, uint64_t *ms);
/* The usage text (--help). */
extern const char cv_bench_usage[];

#endif
