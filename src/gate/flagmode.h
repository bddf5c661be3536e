/* A gate started from flags alone (Goverse's form): its config built from the nodes registered in etcd. */
#ifndef CV_GATE_FLAGMODE_H
#define CV_GATE_FLAGMODE_H

#include <stddef.h>
#include <uv.h>

#include "config/config.h"
#include "discovery/members.h"

/* --listen, --advertise, --http-listen, --etcd (comma-separated endpoints), --etcd-prefix, --gate-id. */
struct cv_gate_flags {
    const char *id;          /* NULL: "gate-" + the advertised address */
    const char *listen;      /* native protocol listen address (required) */
    const char *advertise;   /* NULL: the connectable form of listen */
    const char *http_listen; /* HTTP listen address (required) */
    const char *etcd;        /* "host:port[,host:port...]" (required) */
    const char *prefix;      /* NULL: "/cverse" */
};

/* The YAML text of a config for this gate with the n nodes given (ids[i] and their registrations
 * values[i]: advertise, http, raft addresses and shards) and the etcd provider. Pure: no I/O. Owned by the
 * caller (free); NULL when out of memory or --listen is not host:port. A value that is not JSON with those
 * addresses skips its node (logged). *id_out receives the gate id used (owned). */
char *cv_gate_flags_yaml(const struct cv_gate_flags *f, const char *const *ids, const char *const *values, size_t n,
                         char **id_out);

/* The members of a node's GET /v1/cluster answer (body) as (id, registration-like JSON) pairs for
 * cv_gate_flags_yaml: the cluster's own member list, complete even while some nodes are not registered in
 * etcd yet. 0, CV_EPROTO (not such an answer), CV_ENOMEM. *ids, *values: owned, n strings each; release with
 * cv_gate_flags_free_list. */
int cv_gate_flags_from_cluster(const char *body, char ***ids, char ***values, size_t *n);
void cv_gate_flags_free_list(char **list, size_t n);

/* Asks the registered nodes of view, one after the other, for the members (GET /v1/cluster on the HTTP
 * address of their registration, a wildcard host replaced by the advertised one) and calls cb once, on the
 * loop (from inside this call when no registration has a usable address): with the config YAML and gate
 * id (owned by cb) from the first node that answered, or with NULLs when none did. 0 or CV_ENOMEM (cb not
 * called). http and f are borrowed until cb ran. */
struct cv_httpc;
typedef void (*cv_gate_flags_cb)(void *data, char *yaml, char *id);
int cv_gate_flags_ask(struct cv_httpc *http, const struct cv_gate_flags *f, const struct cv_members *view,
                      cv_gate_flags_cb cb, void *data);

/* Starts a members view of <prefix>/nodes/ on loop (*out; close it with cv_members_close once the gate
 * stopped). The caller runs the loop until cv_members_synced and a node is in view. 0 or CV_E*. */
int cv_gate_flags_watch(uv_loop_t *loop, const struct cv_gate_flags *f, struct cv_members **out);

#endif
