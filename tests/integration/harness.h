/* Integration-test harness: real cverse-node processes on 127.0.0.1 with generated configs, HTTP via
 * libcurl, JSON via jansson, and polling with deadlines (never sleeps as synchronisation). */
#ifndef CV_TEST_HARNESS_H
#define CV_TEST_HARNESS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define H_MAX_NODES 8
#define H_MAX_GATES 2

struct h_cluster {
    char dir[256];       /* temp dir: config, data, logs */
    char actlog[320];    /* <dir>/activations.log: CVERSE_ACTIVATION_LOG of every process started */
    bool started;        /* a node was started: the activation log is checked at destroy */
    bool died;           /* a node exited unasked or badly: destroy prints every log's tail */
    char config[320];
    int n;               /* nodes in the config */
    int base;            /* first port */
    pid_t pid[H_MAX_NODES];
    char id[H_MAX_NODES][16];
    int n_gates;
    pid_t gate_pid[H_MAX_GATES];
    char module[512]; /* --module for nodes and gates, "" = none */
    bool no_builtin;  /* --no-demo-types for nodes, --no-builtin-types (its old name) for gates */
    bool gate_bare;   /* gates get --no-builtin-types and no --module: no types at all */
    /* A cluster with a secret (h_opts.secret): nodes answer only signed requests but /health, /ready and
     * /metrics. A suite that reads their /v1/... sets this (the harness links no libsodium; auth/sign.h
     * does it): it writes the "Authorization: ..." line for METHOD and TARGET (path and query) into
     * header, and the node GETs below (h_get_text, h_get_json, h_get_header, h_shard_owner,
     * h_shards_settled, h_leader_of...) send it. NULL: unsigned. */
    void (*sign)(const char *method, const char *target, char *header, size_t cap);
};

struct h_opts {
    bool demo_autoload; /* GlobalMonitor / ShardMonitor (per shard) / NodeMonitor (per node) */
    int gates;          /* gates in the config (gate-1..) */
    const char *module; /* path of a module .so passed with --module, or NULL */
    bool no_builtin;    /* nodes and gates without the built-in demo types (--no-demo-types) */
    bool demo_types_off; /* cluster.demo_types: false in the config (the nodes' other way to say it) */
    const char *config_extra; /* YAML appended at the root of the config (e.g. "object_types: ..."), or NULL */
    bool gate_bare;     /* gates without any type (--no-builtin-types, no --module): the nodes map JSON */
    bool secret;        /* a cluster secret: <dir>/secret (0600, 32 random bytes as hex), cluster.secret_file */
    bool insecure;      /* cluster.insecure: true (no protected mode; h_cluster_init_hosts sets it unless secret) */
    bool protected_mode; /* h_cluster_init_hosts: neither secret nor insecure, protected mode stays on */
};

/* Writes a config with n nodes (ids node-1..n) and `voters` voters, 64 shards and lease_ttl_ms.
 * Ports are chosen from the test's pid. */
void h_cluster_init(struct h_cluster *c, int n, int voters, unsigned lease_ttl_ms);
/* Same, with gates, the demo's auto-load objects and a module. */
void h_cluster_init_ex(struct h_cluster *c, int n, int voters, unsigned lease_ttl_ms, const struct h_opts *o);
/* Starts gate g (0-based) logging to <dir>/gate-<g+1>.log. */
void h_gate_start(struct h_cluster *c, int g);
/* Ports of gate g. */
int h_gate_http_port(const struct h_cluster *c, int g);
int h_gate_grpc_port(const struct h_cluster *c, int g);
/* POST body (may be NULL) to http://127.0.0.1:<port><path>; returns the response body (malloc'ed, or NULL
 * if unreachable) and the status in *status. */
char *h_post(int port, const char *path, const char *body, size_t len, long *status);
/* h_post with one extra request header line ("Name: value"). */
char *h_post_header(int port, const char *path, const char *body, size_t len, const char *header, long *status);
/* GET on any port. */
char *h_get_port(int port, const char *path, long *status);
/* True when nodes [0, nodes) and every gate of c answer GET /ready with 200. */
bool h_ready_upto(struct h_cluster *c, int nodes);
/* h_poll callback: h_ready_upto(arg, all its nodes); arg is the struct h_cluster. */
bool h_all_ready(void *arg);
/* Starts node i (0-based) as a child process logging to <dir>/node-<i+1>.log. */
void h_node_start(struct h_cluster *c, int i);
/* Starts a node that the config does not list, from flags only (node-<n+1>, the next ports, 64 shards,
 * --data-dir <dir>/data/<id>) plus extra (NULL-terminated, e.g. {"--join", "127.0.0.1:P", NULL}); it
 * becomes node index c->n (returned; c->n grows by one, so readiness, stop and destroy include it). */
int h_node_join(struct h_cluster *c, const char *const *extra);
/* Sends sig to node i and reaps it (SIGKILL: kill -9). Returns the exit status from waitpid. */
int h_node_signal(struct h_cluster *c, int i, int sig);
bool h_node_running(struct h_cluster *c, int i);
/* SIGTERMs every running node and asserts that each exits 0 within 15 s (graceful stop; under ASan
 * this is also where leaks in the node would show as a non-zero exit). */
void h_cluster_stop_all(struct h_cluster *c);
/* Checks the activation log (when a node was started; cr_expect: no two overlapping activations of one
 * object), kills every started node, prints the tail of each log if asked, removes the dir. */
void h_cluster_destroy(struct h_cluster *c);

/* The activation checker. Reads an activation log (util/actlog.h: "<ns> A|D|K <node> <pid> <id>"): every
 * activation of an object by a process is an interval from its A line to its D line (or to the K line the
 * harness writes when it SIGKILLed that process, or to infinity). Returns the number of pairs of
 * intervals of one object held by different processes that overlap (0 without a log file), writing the first
 * few into report. *activations gets the number of intervals. */
int h_actlog_check(const char *path, char *report, size_t len, size_t *activations);
/* Appends a K line for pid (killed; no activation of it survives this instant). */
void h_actlog_killed(const struct h_cluster *c, pid_t pid);

/* GET http://127.0.0.1:<http port of node i><path>. Returns parsed JSON (NULL if not JSON or
 * unreachable); *status gets the HTTP status (0 if unreachable). Caller json_decref's. */
json_t *h_get_json(struct h_cluster *c, int i, const char *path, long *status);
/* GET returning the raw body (malloc'ed, caller frees) or NULL. */
char *h_get_text(struct h_cluster *c, int i, const char *path, long *status);
/* Forks and runs argv (argv[0] the binary's path, NULL-terminated) with stdout and stderr appended to
 * log; the child's PID (the caller stops it by that PID). */
pid_t h_spawn(const char *log, char *const argv[]);
/* h_get_text with one more request header ("Name: value"), e.g. If-None-Match. */
char *h_get_header(struct h_cluster *c, int i, const char *path, const char *header, long *status);

/* SimpleCounter.Increment of id through gate 0's HTTP API with ?timeout_ms=: the new value, or -1 unless
 * HTTP 200 (*st gets the status, 0 if unreachable). */
long long h_increment_within(struct h_cluster *c, const char *id, unsigned timeout_ms, long *st);
/* The "value" of a call's answer body {"response":{"value":...}} (owned: freed here), -1 unless st is 200
 * and it has one. */
long long h_response_value(char *body, long st);

/* Runs the cverse CLI ($CVERSE_CLI_BIN) with args (a shell word list); returns its stdout and stderr
 * together (owned, malloc'ed, at most 8 KiB) and *code its exit status (-1 if it did not exit). */
char *h_cli(const char *args, int *code);

/* CLOCK_MONOTONIC in ms. */
unsigned long long h_now_ms(void);

/* The owner of shard on node i's /v1/shards into buf ("" if none or unreachable). */
void h_shard_owner(struct h_cluster *c, int i, int shard, char *buf, size_t len);

/* h_poll callback over a struct h_owned: every running node's /v1/shards says node owns shard. */
struct h_owned {
    struct h_cluster *c; /* borrowed */
    int shard;
    const char *node; /* borrowed */
};
bool h_shard_owned_everywhere(void *arg);

/* h_poll callback over a struct h_cluster: the shard map has settled: every running node reports the same
 * owners, every shard has an owner among the running nodes and no move target, and the running nodes own
 * shares within one shard of each other (the leader moves nothing more unless membership changes). */
bool h_shards_settled(void *arg);

/* Polls pred every 20 ms until it returns true or timeout_ms passed. */
bool h_poll(unsigned timeout_ms, bool (*pred)(void *arg), void *arg);

/* Convenience over /v1/cluster of node i: the leader id ("" if none/unreachable) into out. */
void h_leader_of(struct h_cluster *c, int i, char *out, size_t len);
/* Index of node id in the cluster, -1 if none. */
int h_index_of(struct h_cluster *c, const char *id);

/* h_cluster_init_ex for processes in network namespaces (tests/integration/netns.h): node i's grpc_addr and
 * advertise_addr are hosts[i]:<its port> (so raft, whose address defaults from them, listens and is dialled
 * there too), gate g's are hosts[n + g]:<its port>; every http_addr is 0.0.0.0:<its port>, so a thread
 * inside that process' namespace reaches it at 127.0.0.1 with the functions above (h_get_json, h_post...).
 * hosts: borrowed, n + o->gates addresses. */
void h_cluster_init_hosts(struct h_cluster *c, int n, int voters, unsigned lease_ttl_ms, const struct h_opts *o,
                          const char *const *hosts);

/* Sets `key: value` on the first line of c's config whose key is `key` (e.g. "snapshot_threshold",
 * "lease_ttl_ms"), keeping its indentation; fails the test if there is none. Before starting processes. */
void h_config_set(struct h_cluster *c, const char *key, const char *value);

/* ---- a real etcd for the discovery suites (tests/integration/test_etcd*.c) -------------------------------- */
#define H_ETCD_MAX 3
struct h_etcd {
    char dir[256];                  /* temp dir: one data dir and log per member */
    int n;
    int client_port[H_ETCD_MAX];    /* loopback ports below 32768, free when chosen */
    int peer_port[H_ETCD_MAX];
    pid_t pid[H_ETCD_MAX];          /* 0: not running */
    char endpoints[128];            /* "127.0.0.1:P1,127.0.0.1:P2,..." (the --etcd form) */
};
/* Starts an n-member (1..3) etcd from /usr/bin/etcd in a fresh temp dir; returns when every member says
 * healthy (fails the test after 30 s). */
void h_etcd_start(struct h_etcd *e, int n);
/* kill -9 of member i (by its pid), reaped. */
void h_etcd_kill(struct h_etcd *e, int i);
/* Starts member i again on its data dir and ports; waits until it is healthy. */
void h_etcd_restart(struct h_etcd *e, int i);
/* Member i answers /health with true. */
bool h_etcd_healthy(struct h_etcd *e, int i);
/* Stops every member still running (SIGTERM, by pid) and removes the dir. */
void h_etcd_stop(struct h_etcd *e);
/* Turns c's config to cluster.provider etcd with e's endpoints, prefix and ttl_ms. Before starting processes. */
void h_config_etcd(struct h_cluster *c, const struct h_etcd *e, const char *prefix, unsigned ttl_ms);

#endif
