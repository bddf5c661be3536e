/* The node's flag form (Goverse's): a config for a node that no file lists, built from its flags. */
#ifndef CV_NODE_FLAGS_H
#define CV_NODE_FLAGS_H

/* --node-id, --listen, --advertise, --http-listen, --raft-listen, --data-dir, --shards, --etcd,
 * --etcd-prefix (all borrowed). */
struct cv_node_flags {
    const char *id;          /* required */
    const char *listen;      /* native protocol listen address (required) */
    const char *advertise;   /* NULL: the config's default (the connectable form of listen) */
    const char *http_listen; /* required */
    const char *raft_listen; /* NULL: the config's default (listen's port + 2000) */
    const char *data_dir;    /* NULL: the config's default */
    const char *shards;      /* NULL: the config's default; must match the cluster's */
    const char *etcd;        /* "host:port[,host:port...]": provider etcd; NULL: raft */
    const char *prefix;      /* NULL: the config's default ("/cverse") */
};

/* The YAML text of a config that lists this node only (cluster settings at their defaults). Pure: no
 * I/O. Owned by the caller (free); NULL when out of memory or a required flag is missing. */
char *cv_node_flags_yaml(const struct cv_node_flags *f);

#endif
