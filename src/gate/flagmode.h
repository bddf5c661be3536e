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
/* Same, with the nodes of a members view. */
char *cv_gate_flags_yaml_view(const struct cv_gate_flags *f, const struct cv_members *nodes, char **id_out);

/* Starts a members view of <prefix>/nodes/ on loop (*out; close it with cv_members_close once the gate
 * stopped). The caller runs the loop until cv_members_synced and a node is in view. 0 or CV_E*. */
int cv_gate_flags_watch(uv_loop_t *loop, const struct cv_gate_flags *f, struct cv_members **out);

#endif
