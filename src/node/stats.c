/* A node's call statistics: fixed arrays, counted where an incoming call is answered (incall.c).
 *
 * Happy path: when the host is created, one slot per method of every registered type (the registry is
 * frozen by then) and two counters per shard are allocated, and an open-addressing table from the
 * (type, method) pointers the registry hands out to a slot is built once. Counting a call is a hash of
 * two pointers, a probe or two, and increments: the cost stays flat however many calls there are, and
 * nothing leaves the node per call; the inspector polls GET /v1/stats (cumulative counters, it derives
 * rates) or Prometheus scrapes /metrics.
 * Failure modes: out of memory at creation (CV_ENOMEM: the host does not start); a call to a type or
 * method the registry lacks, or one refused before its shard was known, counts in the totals only. */
#include "node/stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cverse/error.h"
#include "util/log.h"
#include "util/prom.h"

struct key {
    const struct cv_object_type *t; /* NULL: an empty entry */
    const struct cv_method *m;
    size_t slot;
};

struct cv_node_stats {
    uint64_t calls, errors, started_ms;
    uint32_t shards;
    uint64_t *shard_calls, *shard_errors; /* [shards] */
    struct cv_stats_method *methods;      /* [n_methods] */
    size_t n_methods;
    struct key *keys; /* [mask + 1], at most half full */
    size_t mask;
};

static size_t slot_of(const struct cv_node_stats *s, const struct cv_object_type *t, const struct cv_method *m)
{
    uint64_t h = ((uint64_t)(uintptr_t)t * 0x9E3779B97F4A7C15u) ^ ((uint64_t)(uintptr_t)m * 0xC2B2AE3D27D4EB4Fu);
    return (size_t)(h ^ (h >> 29)) & s->mask;
}

static void stats__insert(struct cv_node_stats *s, const struct cv_object_type *t, const struct cv_method *m,
                          size_t slot)
{
    size_t i = slot_of(s, t, m);
    while (s->keys[i].t) i = (i + 1) & s->mask;
    s->keys[i] = (struct key){t, m, slot};
}

static int stats__tables(struct cv_node_stats *s, const cv_registry *reg)
{
    for (size_t i = 0; i < cv_registry_count(reg); i++) s->n_methods += cv_registry_type_at(reg, i)->n_methods;
    size_t cap = 8;
    while (cap < 2 * s->n_methods) cap *= 2;
    s->mask = cap - 1;
    s->keys = calloc(cap, sizeof *s->keys);
    s->methods = calloc(s->n_methods ? s->n_methods : 1, sizeof *s->methods);
    if (!s->keys || !s->methods) return CV_ENOMEM;
    size_t slot = 0;
    for (size_t i = 0; i < cv_registry_count(reg); i++) {
        const struct cv_object_type *t = cv_registry_type_at(reg, i);
        for (size_t k = 0; k < t->n_methods; k++, slot++) {
            s->methods[slot] = (struct cv_stats_method){.type = t->name, .method = t->methods[k].name};
            stats__insert(s, t, &t->methods[k], slot);
        }
    }
    return 0;
}

int cv_node_stats_new(const cv_registry *reg, uint32_t shards, struct cv_node_stats **out)
{
    if (!shards) return CV_EINVAL;
    struct cv_node_stats *s = calloc(1, sizeof *s);
    if (!s) return CV_ENOMEM;
    s->shards = shards;
    s->started_ms = cv_mono_ms();
    s->shard_calls = calloc(shards, sizeof *s->shard_calls);
    s->shard_errors = calloc(shards, sizeof *s->shard_errors);
    int rv = s->shard_calls && s->shard_errors ? stats__tables(s, reg) : CV_ENOMEM;
    if (rv) {
        cv_node_stats_free(s);
        return rv;
    }
    *out = s;
    return 0;
}

void cv_node_stats_free(struct cv_node_stats *s)
{
    if (!s) return;
    free(s->shard_calls);
    free(s->shard_errors);
    free(s->methods);
    free(s->keys);
    free(s);
}

static struct cv_stats_method *stats__find(struct cv_node_stats *s, const struct cv_object_type *t,
                                           const struct cv_method *m)
{
    if (!t || !m) return NULL;
    for (size_t i = slot_of(s, t, m);; i = (i + 1) & s->mask) {
        if (!s->keys[i].t) return NULL;
        if (s->keys[i].t == t && s->keys[i].m == m) return &s->methods[s->keys[i].slot];
    }
}

void cv_node_stats_count(struct cv_node_stats *s, const struct cv_object_type *t, const struct cv_method *m,
                         uint32_t shard, int status, uint64_t us)
{
    bool err = status != 0;
    s->calls++;
    s->errors += err;
    if (shard < s->shards) {
        s->shard_calls[shard]++;
        s->shard_errors[shard] += err;
    }
    struct cv_stats_method *sm = stats__find(s, t, m);
    if (!sm) return;
    sm->calls++;
    sm->errors += err;
    cv_hist_record_us(&sm->lat, us);
}

uint64_t cv_node_stats_calls(const struct cv_node_stats *s)
{
    return s->calls;
}

uint64_t cv_node_stats_errors(const struct cv_node_stats *s)
{
    return s->errors;
}

size_t cv_node_stats_n_methods(const struct cv_node_stats *s)
{
    return s->n_methods;
}

const struct cv_stats_method *cv_node_stats_method(const struct cv_node_stats *s, size_t i)
{
    return i < s->n_methods ? &s->methods[i] : NULL;
}

void cv_node_stats_shard(const struct cv_node_stats *s, uint32_t shard, uint64_t *calls, uint64_t *errors)
{
    *calls = shard < s->shards ? s->shard_calls[shard] : 0;
    *errors = shard < s->shards ? s->shard_errors[shard] : 0;
}

static json_t *stats__method_json(const struct cv_stats_method *m)
{
    json_t *buckets = json_array(), *le = json_array();
    for (size_t i = 0; i < CV_HIST_N; i++) {
        json_array_append_new(buckets, json_integer((json_int_t)m->lat.counts[i]));
        json_array_append_new(le, i == CV_HIST_N - 1 ? json_null() : json_real((double)(int64_t)(cv_hist_bounds[i] * 1e6 + 0.5) / 1e3));
    }
    return json_pack("{s:s, s:s, s:I, s:I, s:f, s:f, s:f, s:o, s:o}", "type", m->type, "method", m->method,
                     "calls", (json_int_t)m->calls, "errors", (json_int_t)m->errors, "p50_ms",
                     cv_hist_quantile(&m->lat, 0.5) * 1e3, "p99_ms", cv_hist_quantile(&m->lat, 0.99) * 1e3,
                     "sum_ms", m->lat.sum_s * 1e3, "buckets", buckets, "le", le);
}

/* The process's resident memory (/proc/self/statm's second field; the peak from getrusage where there
 * is no /proc) and CPU time (user + system) so far. */
static void stats__process(uint64_t *rss_bytes, double *cpu_s)
{
    struct rusage ru;
    *cpu_s = 0;
    *rss_bytes = 0;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        *cpu_s = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
                 ru.ru_stime.tv_usec / 1e6;
        *rss_bytes = (uint64_t)ru.ru_maxrss * 1024;
    }
    FILE *fp = fopen("/proc/self/statm", "r");
    unsigned long long size, resident;
    if (!fp) return;
    if (fscanf(fp, "%llu %llu", &size, &resident) == 2) *rss_bytes = resident * (uint64_t)sysconf(_SC_PAGESIZE);
    fclose(fp);
}

json_t *cv_node_stats_json(const struct cv_node_stats *s, const char *node)
{
    uint64_t rss;
    double cpu;
    stats__process(&rss, &cpu);
    json_t *shards = json_object(), *methods = json_array();
    for (uint32_t i = 0; i < s->shards; i++) {
        if (!s->shard_calls[i]) continue;
        char k[16];
        snprintf(k, sizeof k, "%u", i);
        json_object_set_new(shards, k, json_pack("{s:I, s:I}", "calls", (json_int_t)s->shard_calls[i], "errors",
                                                 (json_int_t)s->shard_errors[i]));
    }
    for (size_t i = 0; i < s->n_methods; i++) json_array_append_new(methods, stats__method_json(&s->methods[i]));
    return json_pack("{s:s, s:I, s:I, s:f, s:I, s:I, s:o, s:o}", "node", node, "uptime_ms",
                     (json_int_t)(cv_mono_ms() - s->started_ms), "rss_bytes", (json_int_t)rss, "cpu_seconds", cpu,
                     "calls", (json_int_t)s->calls, "errors", (json_int_t)s->errors, "shards", shards, "methods",
                     methods);
}

void cv_node_stats_prom(const struct cv_node_stats *s, struct cv_buf *b)
{
    cv_prom_counter(b, "cverse_calls_total", "Object calls this node answered (redirects excluded).", s->calls);
    cv_prom_counter(b, "cverse_call_errors_total", "Object calls this node answered with an error.", s->errors);
}
