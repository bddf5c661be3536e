/* Cluster configuration: parses Goverse's YAML schema plus cverse's additions (libyaml) and validates it. */
#ifndef CV_CONFIG_H
#define CV_CONFIG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/access.h"

enum cv_provider { CV_PROVIDER_RAFT = 0, CV_PROVIDER_ETCD };

struct cv_node_cfg {
    char *id;
    char *grpc_addr;      /* listen address of the native protocol, e.g. "0.0.0.0:47001" */
    char *advertise_addr; /* address others dial for grpc_addr; default: connectable grpc_addr */
    char *http_addr;      /* listen address of the HTTP API */
    char *raft_addr;      /* raft transport address others dial; default: advertise_addr's host made
                           * connectable ("localhost" -> 127.0.0.1) with port = grpc port + 2000 */
    char *raft_bind_addr; /* where raft listens: grpc_addr's host with raft_addr's port */
    int line;             /* line of the entry in the file, for messages */
};

struct cv_gate_cfg {
    char *id;
    char *grpc_addr;
    char *advertise_addr;
    char *http_addr;
    unsigned push_heartbeat_ms; /* SSE heartbeat period of its push clients (docs/push.md), default 30000 */
    unsigned push_queue;        /* messages queued per push client before the oldest drop, default 256 */
    /* Limits of its client ports and TLS (docs/configuration.md, docs/security.md "TLS and limits"). */
    unsigned request_timeout_ms; /* a request must arrive whole within it after its first byte; 10000 */
    unsigned idle_timeout_ms;    /* idle keep-alive connections are closed after it; 60000 */
    unsigned max_connections;    /* client connections at most; 10000 */
    unsigned rate_limit_per_sec; /* requests per second per client; 0: no limit (default) */
    unsigned rate_limit_burst;   /* requests at once per client; default rate_limit_per_sec */
    char *tls_cert_file, *tls_key_file; /* PEM, resolved against the config file's directory; NULL: plain */
    int tls_line;                /* line of tls_cert_file, for messages at start */
    char *auth_tokens_file;     /* client tokens (config/tokens.h), relative to the config's dir; NULL: open */
    int line;
};

struct cv_autoload_cfg {
    char *type;
    char *id;
    bool per_shard;
    bool per_node;
    int line; /* line of its type in the file, for messages (config/check.h) */
};

/* object_types.<Type>: overrides of a type's persistence (docs/configuration.md, docs/durable-state.md). */
#define CV_CONFIG_OBJECT_TYPES_MAX 64
struct cv_object_type_cfg {
    char name[128];            /* the type name (the mapping's key) */
    int persist;               /* enum cv_persist (object.h): 0 none, 1 on_write, 2 periodic; -1 = the type's */
    uint64_t save_interval_ms; /* periodic: 0 = the type's own */
    uint64_t idle_timeout_ms;  /* 0 = never; absent: 15 min for persisted types, never for memory-only */
    bool has_idle_timeout;
    uint64_t call_id_window;   /* reliable-call ids kept per object (0 = none recorded) */
    bool has_call_id_window;   /* absent: the default (256) */
    uint64_t call_id_window_ms; /* 0 = the default (1 h) */
    int line;
};
#define CV_CONFIG_STATE_MAX_DEFAULT ((uint64_t)1 << 20)

struct cv_raft_cfg {
    unsigned voters;               /* default 3 (capped at the number of nodes) */
    unsigned election_timeout_ms;  /* default 150 */
    unsigned heartbeat_timeout_ms; /* default 15 */
    unsigned snapshot_threshold;   /* default 8192 entries */
    unsigned snapshot_trailing;    /* default 1024 entries */
    bool pre_vote;                 /* default true */
    bool quiet_heartbeats;         /* default true: heartbeats to standbys only when they carry news */
};

/* How long a raft leader waits for a follower's answer to an InstallSnapshot before it sends one again
 * (raft_set_install_snapshot_timeout): 20 election timeouts, at least 2 s. libraft 0.22.1 waits 30 s by
 * default, and a follower drops without an answer an InstallSnapshot that arrives while it still installs
 * an earlier one ("already taking or installing snapshot": typically a restarted node, sent a snapshot
 * and then a newer one because the leader took another meanwhile). The leader then stays in snapshot mode
 * for it, ignores its rejections of the heartbeats as stale, and the follower applies nothing (so it
 * cannot register, and gets no shards) for those 30 s. A late answer costs one snapshot sent again (the
 * follower keeps installing the first, and answers the next probe). */
static inline unsigned cv_raft_install_snapshot_timeout_ms(const struct cv_raft_cfg *r)
{
    unsigned ms = r->election_timeout_ms * 20u; /* election_timeout_ms <= 600000: no overflow */
    return ms < 2000u ? 2000u : ms;
}

struct cv_config {
    char *path; /* as given to cv_config_load, or the name given to cv_config_parse */
    int version;
    uint32_t shards;             /* cluster.shards, default 8192; 1..1048576 */
    enum cv_provider provider;   /* cluster.provider: "raft" (default) or "etcd" */
    char **etcd_endpoints;       /* cluster.etcd.endpoints */
    size_t n_etcd_endpoints;
    char *etcd_prefix;           /* cluster.etcd.prefix, default "/cverse" */
    unsigned etcd_ttl_ms;        /* cluster.etcd.ttl_ms, default 15000: the registration lease (2000..) */
    struct cv_autoload_cfg *autoload;
    size_t n_autoload;
    struct cv_raft_cfg raft;
    char *data_dir;              /* cluster.data_dir, default "cverse-data" */
    unsigned lease_ttl_ms;       /* cluster.lease_ttl_ms, default 1500 */
    unsigned drain_timeout_ms;   /* cluster.drain_timeout_ms, default 10000: bound of a SIGTERM drain */
    struct cv_node_cfg *nodes;
    size_t n_nodes;
    struct cv_gate_cfg *gates;
    size_t n_gates;
    bool has_inspector;
    struct {
        char *grpc_addr, *http_addr, *advertise_addr;
        char *admin_token_file; /* NULL: none (CVERSE_INSPECTOR_TOKEN may still enable the actions) */
    } inspector;
    struct cv_object_type_cfg object_types[CV_CONFIG_OBJECT_TYPES_MAX]; /* object_types:, in file order */
    size_t n_object_types;
    uint64_t object_state_max_bytes; /* object_state_max_bytes:, default 1 MiB */
    struct cv_access_rules access_rules; /* object_access_rules / object_lifecycle_rules (config/rules.c) */
    bool no_demo_types; /* cluster.demo_types: false (default true): nodes register no built-in demo types */
    char *secret_file;  /* cluster.secret_file, resolved against the config file's directory; NULL: none */
    bool insecure;      /* cluster.insecure: no protected mode without a secret (docs/security.md) */
    char **warnings; /* accepted-but-unused Goverse keys, "file:line: key: message" */
    size_t n_warnings;
    uint64_t fingerprint; /* FNV-1a 64 over the settings every node must agree on: the canonical text
                           * "shards=N\n" + "node=ID raft=RAFT_ADDR\n" per node, in file order */
};

/* Reads and parses a YAML file. On error returns CV_ECONFIG (or CV_EIO if unreadable: "FILE: cannot read:
 * reason") and writes one line "FILE:LINE: KEY: what is wrong" into err (err may be NULL); *out is NULL.
 * On success *out is owned by the caller: release it with cv_config_free. See docs/configuration.md. */
int cv_config_load(const char *path, struct cv_config **out, char *err, size_t errlen);
/* Same, from a buffer; name is used in messages. */
int cv_config_parse(const char *text, size_t len, const char *name, struct cv_config **out, char *err,
                    size_t errlen);
void cv_config_free(struct cv_config *cfg);

/* Internal to the config module (objtypes.c, called by config.c's parser): reads the root keys
 * object_types and object_state_max_bytes, and cluster.demo_types, of a loaded document into cfg (absent:
 * no overrides, the default limit, the demo types). 0; CV_ECONFIG with one line "FILE:LINE: KEY.PATH:
 * what is wrong (expected ...)" in err. */
#define CV_CONFIG_OBJECT_KEYS "object_types", "object_state_max_bytes"
struct yaml_document_s;
struct yaml_node_s;
int cv_config_objects(struct yaml_document_s *doc, struct yaml_node_s *root, const char *file, struct cv_config *cfg,
                      char *err, size_t errlen);
/* The same for object_access_rules and object_lifecycle_rules (rules.c), into cfg->access_rules. */
#define CV_CONFIG_RULE_KEYS "object_access_rules", "object_lifecycle_rules"
int cv_config_rules(struct yaml_document_s *doc, struct yaml_node_s *root, const char *file, struct cv_config *cfg,
                    char *err, size_t errlen);

/* Internal to the config module (secret.c, called by config.c once cluster.secret_file is read): makes
 * cfg->secret_file absolute against the config file's directory and checks that it holds a secret
 * (auth/secret.h). 0; CV_ECONFIG with "FILE:LINE: cluster.secret_file: what is wrong" in err. */
int cv_config_secret(struct cv_config *cfg, int line, char *err, size_t errlen);

/* Internal to the config module: the one message form of its errors, "FILE:LINE: PATH: message" into err
 * (if err and errlen), control characters shown as '?' so it stays one line whatever the file held.
 * Returns CV_ECONFIG. */
int cv_config_vfail(char *err, size_t errlen, const char *file, int line, const char *path, const char *fmt,
                    va_list ap) __attribute__((format(printf, 6, 0)));

/* Internal to the config module: a sub-parser's document and where its errors go (objtypes.c, rules.c). */
struct cv_config_ydoc {
    struct yaml_document_s *doc; /* borrowed */
    const char *file;            /* borrowed */
    char *err;                   /* may be NULL */
    size_t errlen;
};
/* cv_config_vfail at node n's line (1-based). Returns CV_ECONFIG. */
int cv_config_nfail(const struct cv_config_ydoc *c, const struct yaml_node_s *n, const char *path, const char *fmt,
                    ...) __attribute__((format(printf, 4, 5)));

/* Lookups; NULL / -1 when absent. Returned pointers live as long as cfg. */
const struct cv_node_cfg *cv_config_node(const struct cv_config *cfg, const char *id);
int cv_config_node_index(const struct cv_config *cfg, const char *id);
const struct cv_gate_cfg *cv_config_gate(const struct cv_config *cfg, const char *id);

#endif
