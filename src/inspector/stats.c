/* The inspector's call statistics. Nodes keep cumulative counters (calls, errors, latency buckets per
 * type/method, calls per shard) and answer them on GET /v1/stats; nothing is sent per call. Each round
 * this module subtracts a node's previous read from its current one: the difference over the node's own
 * uptime between the reads is its rate, the difference of the buckets its recent latency. The cluster's
 * figures are sums of the nodes' rates (never differences of sums: a node going down must not make a
 * negative rate) and merges of their recent buckets.
 *
 * Happy path: update → per node: parse, find each method's previous counters (the set is fixed per
 * node: a node's registry is frozen), compute deltas, keep the new counters; then the cluster's totals
 * and one history point.
 * Failure modes: a node without an answer (unreachable, or /v1/stats refused) or whose counters went back
 * (restarted) keeps no baseline: its rates are 0 this round and it counts again from the next; malformed
 * fields read as 0; out of memory while growing a node's method list drops that method this round. */
#include "inspector/stats.h"

#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"
#include "util/buf.h"
#include "util/hist.h"

struct method {
    char *type, *method;       /* owned */
    uint64_t calls, errors;    /* cumulative, as last read */
    struct cv_hist lat;        /* cumulative buckets, as last read */
    double calls_s, errors_s;  /* this round */
    struct cv_hist recent;     /* buckets of the calls between the last two reads */
};

struct nstat {
    bool base;                 /* the counters below are a baseline for the next read */
    bool live;                 /* rates this round come from two reads */
    uint64_t uptime_ms, calls, errors;
    uint64_t *shard_calls;     /* [shards] cumulative */
    struct method *methods;
    size_t n_methods, cap_methods;
    double calls_s, errors_s;
    uint64_t rss_bytes;        /* the node process's resident memory at the last read */
    double cpu_s, cpu_pct;     /* its CPU seconds so far; % of one core between the reads (-1: unknown) */
    struct cv_hist recent;     /* merged over its methods */
};

struct point {
    uint64_t t_ms;
    double calls_s, errors_s, p50_ms, p99_ms; /* p: -1 without calls */
};

struct cv_insp_stats {
    const struct cv_config *cfg;
    uint32_t shards;
    size_t n_nodes;
    struct nstat *nodes;
    double *shard_calls_s; /* [shards] this round, summed over the nodes */
    struct point hist[CV_INSP_STATS_HISTORY];
    size_t h_len, h_next;
};

int cv_insp_stats_new(const struct cv_config *cfg, struct cv_insp_stats **out)
{
    struct cv_insp_stats *s = calloc(1, sizeof *s);
    if (!s) return CV_ENOMEM;
    s->cfg = cfg;
    s->shards = cfg->shards;
    s->n_nodes = cfg->n_nodes;
    s->nodes = calloc(cfg->n_nodes ? cfg->n_nodes : 1, sizeof *s->nodes);
    s->shard_calls_s = calloc(cfg->shards, sizeof *s->shard_calls_s);
    bool ok = s->nodes && s->shard_calls_s;
    for (size_t i = 0; ok && i < s->n_nodes; i++)
        ok = (s->nodes[i].shard_calls = calloc(cfg->shards, sizeof *s->nodes[i].shard_calls)) != NULL;
    if (!ok) {
        cv_insp_stats_free(s);
        return CV_ENOMEM;
    }
    *out = s;
    return 0;
}

void cv_insp_stats_free(struct cv_insp_stats *s)
{
    if (!s) return;
    for (size_t i = 0; s->nodes && i < s->n_nodes; i++) {
        struct nstat *n = &s->nodes[i];
        for (size_t j = 0; j < n->n_methods; j++) {
            free(n->methods[j].type);
            free(n->methods[j].method);
        }
        free(n->methods);
        free(n->shard_calls);
    }
    free(s->nodes);
    free(s->shard_calls_s);
    free(s);
}

/* ---- update ------------------------------------------------------------------------------------------ */

static uint64_t u64(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

static uint64_t delta(uint64_t now, uint64_t before)
{
    return now > before ? now - before : 0;
}

static void read_buckets(json_t *m, struct cv_hist *h)
{
    json_t *b = json_object_get(m, "buckets");
    memset(h, 0, sizeof *h);
    for (size_t i = 0; i < CV_HIST_N && i < json_array_size(b); i++) {
        json_t *v = json_array_get(b, i);
        h->counts[i] = json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
    }
    h->sum_s = json_number_value(json_object_get(m, "sum_ms")) / 1e3;
}

/* The node's entry for (type, method), appended when new; NULL out of memory. */
static struct method *method_of(struct nstat *n, const char *type, const char *name)
{
    for (size_t j = 0; j < n->n_methods; j++)
        if (!strcmp(n->methods[j].type, type) && !strcmp(n->methods[j].method, name)) return &n->methods[j];
    if (cv_array_grow((void **)&n->methods, &n->cap_methods, n->n_methods + 1, sizeof *n->methods)) return NULL;
    struct method *e = &n->methods[n->n_methods];
    *e = (struct method){.type = strdup(type), .method = strdup(name)};
    if (!e->type || !e->method) {
        free(e->type);
        free(e->method);
        return NULL;
    }
    n->n_methods++;
    return e;
}

/* One method's new counters; its rates over secs when live. */
static void update_method(struct nstat *n, json_t *jm, bool live, double secs)
{
    const char *type = json_string_value(json_object_get(jm, "type"));
    const char *name = json_string_value(json_object_get(jm, "method"));
    struct method *e = type && name ? method_of(n, type, name) : NULL;
    if (!e) return;
    uint64_t calls = u64(jm, "calls"), errors = u64(jm, "errors");
    struct cv_hist now;
    read_buckets(jm, &now);
    memset(&e->recent, 0, sizeof e->recent);
    e->calls_s = e->errors_s = 0;
    if (live) {
        e->calls_s = (double)delta(calls, e->calls) / secs;
        e->errors_s = (double)delta(errors, e->errors) / secs;
        for (int i = 0; i < CV_HIST_N; i++) e->recent.counts[i] = delta(now.counts[i], e->lat.counts[i]);
        e->recent.sum_s = now.sum_s > e->lat.sum_s ? now.sum_s - e->lat.sum_s : 0;
        cv_hist_merge(&n->recent, &e->recent);
    }
    e->calls = calls;
    e->errors = errors;
    e->lat = now;
}

/* Shard calls: rates added to the cluster's per-shard rates; the node's counters kept. */
static void update_shards(struct cv_insp_stats *s, struct nstat *n, json_t *shards, bool live, double secs)
{
    const char *key;
    json_t *v;
    json_object_foreach(shards, key, v) {
        char *end;
        unsigned long sh = strtoul(key, &end, 10);
        if (*end || sh >= s->shards) continue;
        uint64_t calls = u64(v, "calls");
        if (live) s->shard_calls_s[sh] += (double)delta(calls, n->shard_calls[sh]) / secs;
        n->shard_calls[sh] = calls;
    }
}

static void update_node(struct cv_insp_stats *s, struct nstat *n, const struct cv_insp_node *mn)
{
    json_t *doc = mn->doc[CV_INSP_STATS];
    n->live = false;
    n->calls_s = n->errors_s = 0;
    n->cpu_pct = -1;
    memset(&n->recent, 0, sizeof n->recent);
    if (!mn->reachable || !json_is_object(doc)) {
        n->base = false;
        return;
    }
    uint64_t up = u64(doc, "uptime_ms"), calls = u64(doc, "calls"), errors = u64(doc, "errors");
    bool restarted = up < n->uptime_ms || calls < n->calls || errors < n->errors;
    if (!n->base || restarted) memset(n->shard_calls, 0, s->shards * sizeof *n->shard_calls);
    for (size_t j = 0; restarted && j < n->n_methods; j++) { /* its methods' counters went back too */
        struct method *e = &n->methods[j];
        e->calls = e->errors = 0;
        memset(&e->lat, 0, sizeof e->lat);
    }
    n->live = n->base && !restarted && up > n->uptime_ms;
    double secs = n->live ? (double)(up - n->uptime_ms) / 1e3 : 1;
    double cpu = json_number_value(json_object_get(doc, "cpu_seconds"));
    if (n->live) {
        n->calls_s = (double)delta(calls, n->calls) / secs;
        n->errors_s = (double)delta(errors, n->errors) / secs;
        if (json_object_get(doc, "cpu_seconds") && cpu >= n->cpu_s) n->cpu_pct = (cpu - n->cpu_s) / secs * 100;
    }
    n->cpu_s = cpu;
    n->rss_bytes = u64(doc, "rss_bytes");
    size_t k;
    json_t *jm;
    json_array_foreach(json_object_get(doc, "methods"), k, jm) update_method(n, jm, n->live, secs);
    update_shards(s, n, json_object_get(doc, "shards"), n->live, secs);
    n->uptime_ms = up;
    n->calls = calls;
    n->errors = errors;
    n->base = true;
}

static double pct_ms(const struct cv_hist *h, double q)
{
    return cv_hist_count(h) ? cv_hist_quantile(h, q) * 1e3 : -1;
}

void cv_insp_stats_update(struct cv_insp_stats *s, const struct cv_insp_model *m)
{
    memset(s->shard_calls_s, 0, s->shards * sizeof *s->shard_calls_s);
    struct point p = {.t_ms = m->time_ms};
    struct cv_hist all = {0};
    for (size_t i = 0; i < s->n_nodes && i < m->n_nodes; i++) {
        struct nstat *n = &s->nodes[i];
        update_node(s, n, &m->nodes[i]);
        p.calls_s += n->calls_s;
        p.errors_s += n->errors_s;
        cv_hist_merge(&all, &n->recent);
    }
    p.p50_ms = pct_ms(&all, 0.5);
    p.p99_ms = pct_ms(&all, 0.99);
    s->hist[s->h_next] = p;
    s->h_next = (s->h_next + 1) % CV_INSP_STATS_HISTORY;
    if (s->h_len < CV_INSP_STATS_HISTORY) s->h_len++;
}

/* ---- JSON ---------------------------------------------------------------------------------------------- */

/* A row of the methods or types table, summed over the nodes. */
struct agg {
    const char *type, *method; /* borrowed; method NULL in the types table */
    double calls_s, errors_s;
    uint64_t calls, errors, active;
    struct cv_hist recent;
};

struct table {
    struct agg *rows;
    size_t n, cap;
};

static struct agg *row_of(struct table *t, const char *type, const char *method)
{
    for (size_t i = 0; i < t->n; i++)
        if (!strcmp(t->rows[i].type, type) && (!method || !strcmp(t->rows[i].method, method))) return &t->rows[i];
    if (cv_array_grow((void **)&t->rows, &t->cap, t->n + 1, sizeof *t->rows)) return NULL;
    t->rows[t->n] = (struct agg){.type = type, .method = method};
    return &t->rows[t->n++];
}

static void add(struct agg *a, const struct method *e)
{
    if (!a) return;
    a->calls_s += e->calls_s;
    a->errors_s += e->errors_s;
    a->calls += e->calls;
    a->errors += e->errors;
    cv_hist_merge(&a->recent, &e->recent);
}

static json_t *ms_or_null(double ms)
{
    return ms < 0 ? json_null() : json_real(ms);
}

static json_t *rows_json(const struct table *t)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < t->n; i++) {
        const struct agg *r = &t->rows[i];
        json_t *o = json_pack("{s:s,s:f,s:f,s:I,s:I,s:o,s:o}", "type", r->type, "calls_s", r->calls_s, "errors_s",
                              r->errors_s, "calls", (json_int_t)r->calls, "errors", (json_int_t)r->errors, "p50_ms",
                              ms_or_null(pct_ms(&r->recent, 0.5)), "p99_ms", ms_or_null(pct_ms(&r->recent, 0.99)));
        if (o && r->method) json_object_set_new(o, "method", json_string(r->method));
        else if (o) json_object_set_new(o, "active", json_integer((json_int_t)r->active));
        json_array_append_new(a, o);
    }
    return a;
}

/* The methods and types tables: the reachable nodes' methods, and the types of their active objects. */
static void tables(const struct cv_insp_stats *s, const struct cv_insp_model *m, struct table *methods,
                   struct table *types)
{
    for (size_t i = 0; i < s->n_nodes && i < m->n_nodes; i++) {
        const struct nstat *n = &s->nodes[i];
        for (size_t j = 0; n->base && j < n->n_methods; j++) {
            const struct method *e = &n->methods[j];
            add(row_of(methods, e->type, e->method), e);
            add(row_of(types, e->type, NULL), e);
        }
        const struct cv_insp_node *mn = &m->nodes[i];
        for (size_t j = 0; mn->reachable && j < mn->n_objects; j++) {
            struct agg *t = row_of(types, mn->objects[j].type, NULL);
            if (t) t->active++;
        }
    }
}

static json_t *nodes_json(const struct cv_insp_stats *s, const struct cv_insp_model *m)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < s->n_nodes; i++) {
        const struct nstat *n = &s->nodes[i];
        double rate = n->calls_s > 0 ? n->errors_s / n->calls_s : 0;
        json_array_append_new(a, json_pack("{s:s,s:b,s:f,s:f,s:f,s:o,s:o,s:I,s:I,s:I,s:I,s:o}", "id", s->cfg->nodes[i].id,
                                           "live", n->live, "calls_s", n->calls_s, "errors_s", n->errors_s,
                                           "error_rate", rate, "p50_ms", ms_or_null(pct_ms(&n->recent, 0.5)),
                                           "p99_ms", ms_or_null(pct_ms(&n->recent, 0.99)), "uptime_ms",
                                           (json_int_t)(n->base ? n->uptime_ms : 0), "calls", (json_int_t)n->calls,
                                           "errors", (json_int_t)n->errors, "rss_bytes",
                                           (json_int_t)(n->base ? n->rss_bytes : 0), "cpu_pct",
                                           n->cpu_pct >= 0 ? json_real(n->cpu_pct) : json_null()));
    }
    return a;
}

static json_t *history_json(const struct cv_insp_stats *s)
{
    json_t *t = json_array(), *c = json_array(), *e = json_array(), *p50 = json_array(), *p99 = json_array();
    size_t first = (s->h_next + CV_INSP_STATS_HISTORY - s->h_len) % CV_INSP_STATS_HISTORY;
    for (size_t k = 0; t && c && e && p50 && p99 && k < s->h_len; k++) {
        const struct point *p = &s->hist[(first + k) % CV_INSP_STATS_HISTORY];
        json_array_append_new(t, json_integer((json_int_t)p->t_ms));
        json_array_append_new(c, json_real(p->calls_s));
        json_array_append_new(e, json_real(p->errors_s));
        json_array_append_new(p50, ms_or_null(p->p50_ms));
        json_array_append_new(p99, ms_or_null(p->p99_ms));
    }
    return json_pack("{s:o*,s:o*,s:o*,s:o*,s:o*}", "time_ms", t, "calls_s", c, "errors_s", e, "p50_ms", p50,
                     "p99_ms", p99);
}

json_t *cv_insp_stats_json(const struct cv_insp_stats *s, const struct cv_insp_model *m)
{
    struct table methods = {0}, types = {0};
    tables(s, m, &methods, &types);
    json_t *shards = json_array();
    for (uint32_t k = 0; shards && k < s->shards; k++) json_array_append_new(shards, json_real(s->shard_calls_s[k]));
    struct point last = s->h_len ? s->hist[(s->h_next + CV_INSP_STATS_HISTORY - 1) % CV_INSP_STATS_HISTORY]
                                 : (struct point){.p50_ms = -1, .p99_ms = -1};
    json_t *o = json_pack("{s:I,s:f,s:f,s:o,s:o,s:o*,s:o*,s:o*,s:o*,s:o*}", "time_ms", (json_int_t)last.t_ms,
                          "calls_s", last.calls_s, "errors_s", last.errors_s, "p50_ms", ms_or_null(last.p50_ms),
                          "p99_ms", ms_or_null(last.p99_ms), "nodes", nodes_json(s, m), "methods",
                          rows_json(&methods), "types", rows_json(&types), "shard_calls_s", shards, "history",
                          history_json(s));
    free(methods.rows);
    free(types.rows);
    return o;
}
