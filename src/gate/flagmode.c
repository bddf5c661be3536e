/* The flag form of cverse-gate (--listen, --advertise, --http-listen, --etcd, --etcd-prefix): no YAML
 * listing the members; the nodes come from their registrations in etcd (docs/discovery.md).
 *
 * Happy path: main starts a members view of <prefix>/nodes/ (range, then watches with resume) and runs the
 * loop until it holds a node; that node is asked for the cluster's members (GET /v1/cluster: Raft owns
 * membership, so this list is complete even while other nodes have not registered yet), and from them
 * comes the YAML of a config with this gate, which goes through the ordinary parser (same checks and
 * defaults as a file) and starts the gate. The view stays open and logs every later change.
 *
 * Failure modes: a node that does not answer: the next registered one is asked; none: main waits and asks
 * again. With a cluster secret ($CVERSE_CLUSTER_SECRET_FILE) the GET is signed (node/httpauth.h).
 * A registration or member that is not JSON or lacks an address is skipped (logged); a node that
 * registers after the gate started is logged: the gate's forwarder has a fixed node table, so it routes
 * to that node only after a restart (docs/discovery.md, "Limits"). */
#include "gate/flagmode.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/guard.h"
#include "auth/sign.h"
#include "cverse/error.h"
#include "net/httpc.h"
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

/* ---- the members from a node ---------------------------------------------------------------------------- */

void cv_gate_flags_free_list(char **list, size_t n)
{
    for (size_t i = 0; list && i < n; i++) free(list[i]);
    free(list);
}

int cv_gate_flags_from_cluster(const char *body, char ***ids_out, char ***values_out, size_t *n_out)
{
    json_t *j = json_loads(body, 0, NULL), *nodes = json_object_get(j, "nodes");
    json_int_t shards = json_integer_value(json_object_get(j, "shards"));
    size_t n = json_array_size(nodes);
    if (!json_is_array(nodes) || !n || shards <= 0) {
        json_decref(j);
        return CV_EPROTO;
    }
    char **ids = calloc(n, sizeof *ids), **values = calloc(n, sizeof *values);
    int rv = ids && values ? 0 : CV_ENOMEM;
    for (size_t i = 0; i < n && !rv; i++) {
        json_t *m = json_array_get(nodes, i);
        json_t *v = json_pack("{s:O?,s:O?,s:O?,s:I}", "advertise", json_object_get(m, "advertise_addr"), "http",
                              json_object_get(m, "http_addr"), "raft", json_object_get(m, "raft_addr"), "shards",
                              shards);
        const char *id = json_string_value(json_object_get(m, "id"));
        if (!v || !id) rv = v ? CV_EPROTO : CV_ENOMEM;
        else if (!(ids[i] = strdup(id)) || !(values[i] = json_dumps(v, JSON_COMPACT))) rv = CV_ENOMEM;
        json_decref(v);
    }
    json_decref(j);
    if (rv) {
        cv_gate_flags_free_list(ids, n);
        cv_gate_flags_free_list(values, n);
        return rv;
    }
    *ids_out = ids;
    *values_out = values;
    *n_out = n;
    return 0;
}

struct ask {
    struct cv_httpc *http;
    const struct cv_gate_flags *f;
    char **urls;
    size_t n, next;
    cv_gate_flags_cb cb;
    void *data;
};

/* The URL of a registration's /v1/cluster: its http address, a wildcard host replaced by the advertised one. */
static char *flags__cluster_url(const char *value)
{
    json_t *v = json_loads(value, 0, NULL);
    const char *http = json_string_value(json_object_get(v, "http"));
    const char *adv = json_string_value(json_object_get(v, "advertise"));
    char h[256], ah[256], *url = NULL;
    uint16_t port, aport;
    if (http && !cv_addr_split(http, h, sizeof h, &port)) {
        bool wild = !*h || !strcmp(h, "0.0.0.0") || !strcmp(h, "::");
        if (wild && adv && !cv_addr_split(adv, ah, sizeof ah, &aport)) snprintf(h, sizeof h, "%s", ah);
        else if (wild) snprintf(h, sizeof h, "127.0.0.1");
        if (asprintf(&url, strchr(h, ':') ? "http://[%s]:%u/v1/cluster" : "http://%s:%u/v1/cluster", h, port) < 0)
            url = NULL;
    }
    json_decref(v);
    return url;
}

static void ask__end(struct ask *a, char *yaml, char *id)
{
    a->cb(a->data, yaml, id);
    cv_gate_flags_free_list(a->urls, a->n);
    free(a);
}

static void ask__next(struct ask *a);

static void ask__on_response(void *data, const struct cv_httpc_response *r)
{
    struct ask *a = data;
    char **ids, **values, *id = NULL;
    size_t n;
    if (r->err == CV_ECANCELED) return ask__end(a, NULL, NULL);
    if (r->err || r->status != 200 || cv_gate_flags_from_cluster(r->body, &ids, &values, &n)) {
        CV_WARN("members from %s: %s", a->urls[a->next - 1], r->err ? r->error : "no usable answer");
        return ask__next(a);
    }
    char *yaml = cv_gate_flags_yaml(a->f, (const char *const *)ids, (const char *const *)values, n, &id);
    cv_gate_flags_free_list(ids, n);
    cv_gate_flags_free_list(values, n);
    ask__end(a, yaml, yaml ? id : NULL);
}

static void ask__next(struct ask *a)
{
    while (a->next < a->n) {
        const char *url = a->urls[a->next++];
        char authz[CV_SIGN_MAX + 32]; /* a node with a cluster secret reads only signed requests */
        struct cv_httpc_req hr = {.url = url, .timeout_ms = 2000,
                                  .extra_headers = url ? cv_sign_url_headers(cv_guard_cluster()->secret, "GET", url,
                                                                             NULL, 0, NULL, authz, sizeof authz)
                                                       : NULL};
        if (url && !cv_httpc_request(a->http, &hr, ask__on_response, a)) return;
    }
    ask__end(a, NULL, NULL);
}

int cv_gate_flags_ask(struct cv_httpc *http, const struct cv_gate_flags *f, const struct cv_members *view,
                      cv_gate_flags_cb cb, void *data)
{
    struct ask *a = calloc(1, sizeof *a);
    size_t n = cv_members_count(view);
    if (!a || !(a->urls = calloc(n + 1, sizeof *a->urls))) {
        free(a);
        return CV_ENOMEM;
    }
    *a = (struct ask){.http = http, .f = f, .urls = a->urls, .n = n, .cb = cb, .data = data};
    for (size_t i = 0; i < n; i++) {
        const char *id, *value;
        cv_members_at(view, i, &id, &value);
        a->urls[i] = flags__cluster_url(value); /* NULL: skipped */
    }
    ask__next(a);
    return 0;
}
