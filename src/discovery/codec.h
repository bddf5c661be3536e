/* etcd v3 JSON gateway encoding (pure, no I/O): request bodies and parsed replies (base64, int64 strings). */
#ifndef CV_DISCOVERY_CODEC_H
#define CV_DISCOVERY_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The gateway's conventions (etcd 3.4, docs/discovery.md): keys and values are base64, int64 fields are
 * JSON strings, fields with their default value (0, false, "") are omitted, and streamed replies (lease
 * keepalive, watch) come wrapped in {"result": ...}. Every encoder returns a malloc'ed NUL-terminated body
 * owned by the caller, or NULL when out of memory. */

/* One key-value pair of a reply. key and value are owned by the reply (NUL-terminated; value_len excludes
 * the NUL). A DELETE event's kv has only key and mod_revision. */
struct cv_etcd_kv {
    char *key;
    char *value;
    size_t value_len;
    int64_t create_revision, mod_revision, version, lease;
};

struct cv_etcd_event {
    bool deleted; /* "type":"DELETE" (also when the key's lease expired); else a PUT */
    struct cv_etcd_kv kv;
};

/* A parsed reply of any call (fields a call does not have stay 0). */
struct cv_etcd_reply {
    int64_t revision;      /* header.revision: the store's revision when the call ran */
    int64_t raft_term;     /* header.raft_term */
    bool succeeded;        /* txn: the compares held */
    int64_t id;            /* lease grant / keepalive: the lease ID */
    int64_t ttl;           /* lease grant / keepalive: seconds left; 0 on a keepalive = the lease is gone */
    struct cv_etcd_kv *kvs; /* range, or a txn's first range response */
    size_t n_kvs;
    int64_t count;
    bool created, canceled;  /* watch */
    int64_t compact_revision; /* watch canceled because its start revision was compacted away */
    struct cv_etcd_event *events;
    size_t n_events;
    int code;               /* {"error":..,"code":N}: the gRPC code (5 not found, 14 unavailable, ...) */
    char error[160];        /* its message, "" when none */
};

/* "/p/" -> the range end covering every key that starts with it ("/p0"). Owned, NULL when out of memory. */
char *cv_etcd_prefix_end(const char *prefix);

char *cv_etcd_enc_put(const char *key, const char *value, int64_t lease);
/* A range over every key starting with prefix (prefix NULL-free; "" = everything). */
char *cv_etcd_enc_range_prefix(const char *prefix);
char *cv_etcd_enc_range_key(const char *key);
char *cv_etcd_enc_delete(const char *key);
/* A txn: if key does not exist, put value (under lease, 0 = none); else return the key's current kv. */
char *cv_etcd_enc_create(const char *key, const char *value, int64_t lease);
/* A txn: if neither key nor other exists, put value at key (no lease); else return key's current kv (none
 * when only other exists). */
char *cv_etcd_enc_create_unless(const char *key, const char *value, const char *other);
/* A txn: if key's value sorts before value (byte order), put value; else return the current kv. A missing
 * key fails the compare too (etcd compares values of existing keys only): create it with cv_etcd_enc_create. */
char *cv_etcd_enc_put_if_less(const char *key, const char *value);
char *cv_etcd_enc_grant(int64_t ttl_s);
char *cv_etcd_enc_lease(int64_t id); /* the body of keepalive and revoke */
/* A watch of every key under prefix from start_revision (0: from now), with previous values off. */
char *cv_etcd_enc_watch(const char *prefix, int64_t start_revision);

/* Parses one reply (a whole body, or one message of a stream); unwraps {"result":...}. 0; CV_EPROTO when
 * it is not an etcd reply (out->error says why); CV_ENOMEM. An {"error":...} reply parses fine: code and
 * error are set. On 0 *out owns memory: release with cv_etcd_reply_free (also safe after an error). */
int cv_etcd_parse(const char *body, size_t len, struct cv_etcd_reply *out);
void cv_etcd_reply_free(struct cv_etcd_reply *r);

/* Splits a streamed body into its messages: the gateway ends each with '\n'. Zero-initialise. */
struct cv_etcd_lines {
    char *buf; /* owned: bytes of an unfinished message */
    size_t len, cap;
};
/* Appends chunk; for each complete message calls fn(data, line, len) (line valid during the call) until fn
 * returns false. 0, CV_ENOMEM, or CV_ETOOBIG when an unfinished message exceeds 4 MiB. */
int cv_etcd_lines_feed(struct cv_etcd_lines *l, const char *chunk, size_t len,
                       bool (*fn)(void *data, const char *line, size_t len), void *data);
void cv_etcd_lines_free(struct cv_etcd_lines *l);

#endif
