/* cv_node_flags_yaml (flags.h): the flags become the YAML a file would hold, so that the one config parser
 * checks them (addresses, id syntax, shard count) and fills the defaults. Values are quoted; the etcd
 * endpoints go into a flow sequence as given (host:port items, comma-separated). */
#include "node/flags.h"

#include <stdlib.h>

#include "util/buf.h"

char *cv_node_flags_yaml(const struct cv_node_flags *f)
{
    if (!f->id || !f->listen || !f->http_listen) return NULL;
    struct cv_buf b = {0};
    cv_buf_printf(&b, "version: 1\ncluster:\n  provider: %s\n", f->etcd ? "etcd" : "raft");
    if (f->shards) cv_buf_printf(&b, "  shards: %s\n", f->shards);
    if (f->data_dir) cv_buf_printf(&b, "  data_dir: \"%s\"\n", f->data_dir);
    if (f->etcd) cv_buf_printf(&b, "  etcd:\n    endpoints: [%s]\n", f->etcd);
    if (f->etcd && f->prefix) cv_buf_printf(&b, "    prefix: \"%s\"\n", f->prefix);
    cv_buf_printf(&b, "nodes:\n  - id: \"%s\"\n    grpc_addr: \"%s\"\n    http_addr: \"%s\"\n", f->id, f->listen,
                  f->http_listen);
    if (f->advertise) cv_buf_printf(&b, "    advertise_addr: \"%s\"\n", f->advertise);
    if (f->raft_listen) cv_buf_printf(&b, "    raft_addr: \"%s\"\n", f->raft_listen);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
