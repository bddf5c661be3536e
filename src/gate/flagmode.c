/* The flag form of cverse-gate (--listen, --advertise, --http-listen, --etcd, --etcd-prefix): no YAML
 * listing the members; the nodes come from their registrations in etcd (docs/discovery.md).
 *
 * Happy path: main starts a members view of <prefix>/nodes/ (range, then watches with resume), runs the
 * loop until it holds a node, then gets from here the YAML of a config with this gate and every node in
 * view, which goes through the ordinary parser (same checks and defaults as a file) and starts the gate.
 * The view stays open and logs every later change.
 *
 * Failure modes: a registration that is not JSON or lacks an address is skipped (logged); a node that
 * registers after the gate started is logged: the gate's forwarder has a fixed node table, so it routes
 * to that node only after a restart (docs/discovery.md, "Limits"). */
#include "gate/flagmode.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"
#include "util/addr.h"
#include "util/buf.h"
#include "util/log.h"

#define SPLIT_MAX 16

static const char *flags__prefix(const struct cv_gate_flags *f)
{
    return f->prefix && *f->prefix ? f->prefix : "/cverse";
}

/* One node of the view as a YAML list item; false (logged) when its value lacks what a config needs. */
static bool flags__node(struct cv_buf *b, const char *id, const char *value, unsigned *shards)
{
    json_t *v = json_loads(value, 0, NULL);
    const char *adv = json_string_value(json_object_get(v, "advertise"));
    const char *http = json_string_value(json_object_get(v, "http"));
    const char *raft = json_string_value(json_object_get(v, "raft"));
    json_int_t n = json_integer_value(json_object_get(v, "shards"));
    bool ok = adv && http && raft;
    if (ok) {
        cv_buf_printf(b, "  - id: \"%s\"\n    grpc_addr: \"%s\"\n    advertise_addr: \"%s\"\n    http_addr: \"%s\"\n"
                      "    raft_addr: \"%s\"\n", id, adv, adv, http, raft);
        if (n > 0 && !*shards) *shards = (unsigned)n;
    } else {
        CV_WARN("etcd: registration of node %s lacks advertise/http/raft addresses: skipped (%s)", id, value);
    }
    json_decref(v);
    return ok;
}

static void flags__endpoints(struct cv_buf *b, const char *list)
{
    char *copy = strdup(list), *save = NULL;
    int i = 0;
    if (!copy) {
        b->oom = true;
        return;
    }
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) cv_buf_printf(b, "%s\"%s\"", i++ ? ", " : "", t);
    free(copy);
}

char *cv_gate_flags_yaml(const struct cv_gate_flags *f, const char *const *ids, const char *const *values, size_t n,
                         char **id_out)
{
    char adv[300], id[340];
    if (f->advertise) snprintf(adv, sizeof adv, "%s", f->advertise);
    else if (cv_addr_connectable(f->listen, adv, sizeof adv)) return NULL;
    if (f->id) snprintf(id, sizeof id, "%s", f->id);
    else snprintf(id, sizeof id, "gate-%s", adv);
    for (char *p = id; *p; p++) /* ids are [A-Za-z0-9._-] (config) */
        if (*p == ':' || *p == '[' || *p == ']') *p = '-';
    struct cv_buf nb = {0}, b = {0};
    unsigned shards = 0;
    for (size_t i = 0; i < n; i++) flags__node(&nb, ids[i], values[i], &shards);
    cv_buf_printf(&b, "version: 1\ncluster:\n  shards: %u\n  provider: etcd\n  etcd:\n    endpoints: [", shards ? shards : 8192);
    flags__endpoints(&b, f->etcd);
    cv_buf_printf(&b, "]\n    prefix: \"%s\"\nnodes:\n%s", flags__prefix(f), nb.p ? nb.p : "");
    cv_buf_printf(&b, "gates:\n  - id: \"%s\"\n    grpc_addr: \"%s\"\n    advertise_addr: \"%s\"\n    http_addr: \"%s\"\n",
                  id, f->listen, adv, f->http_listen);
    free(nb.p);
    if (b.oom || nb.oom || !(*id_out = strdup(id))) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

char *cv_gate_flags_yaml_view(const struct cv_gate_flags *f, const struct cv_members *nodes, char **id_out)
{
    size_t n = cv_members_count(nodes);
    const char **ids = calloc(n + 1, sizeof *ids), **values = calloc(n + 1, sizeof *values);
    char *yaml = NULL;
    if (ids && values) {
        for (size_t i = 0; i < n; i++) cv_members_at(nodes, i, &ids[i], &values[i]);
        yaml = cv_gate_flags_yaml(f, ids, values, n, id_out);
    }
    free(ids);
    free(values);
    return yaml;
}

static void flags__on_change(void *data, const char *id, const char *value)
{
    if (value) CV_INFO("etcd: node %s registered: %s", id, value);
    else CV_INFO("etcd: node %s's registration went away", id);
}

int cv_gate_flags_watch(uv_loop_t *loop, const struct cv_gate_flags *f, struct cv_members **out)
{
    char prefix[512];
    const char *eps[SPLIT_MAX];
    size_t n = 0;
    char *copy = strdup(f->etcd), *save = NULL;
    if (!copy) return CV_ENOMEM;
    for (char *t = strtok_r(copy, ",", &save); t && n < SPLIT_MAX; t = strtok_r(NULL, ",", &save)) eps[n++] = t;
    snprintf(prefix, sizeof prefix, "%s/nodes/", flags__prefix(f));
    struct cv_members_opts o = {.loop = loop, .endpoints = eps, .n_endpoints = n, .prefix = prefix,
                                .on_change = flags__on_change};
    int rv = cv_members_start(&o, out);
    free(copy);
    return rv;
}
