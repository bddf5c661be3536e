/* cverse-stress's checks over the operation history (see history.h).
 *
 * Happy path: the ops are grouped by object (a stable sort); per object
 *  - distinct values: the acknowledged increments returned pairwise different values;
 *  - lower bound: an op's value is at least (a read) or above (an increment) every value an op that
 *    completed before it started returned: one sweep over the ops in start order against the ops in end
 *    order, keeping the running maximum and who returned it (a client's own earlier op: "went backwards");
 *  - upper bound: the value is at most the number of increment attempts started before the op ended
 *    (with call ids each logical increment counts once, else each attempt);
 *  - exact count: acked <= final <= acked + maybe, and final == acked when strict.
 * Failure modes: each violation is one line naming the object, the values, the clients and the times
 * (seconds since the run's start); memory for the sort orders failing is reported as a failure too. */
#include "stress/history.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"

int cv_stress_history_add(struct cv_stress_history *h, const struct cv_stress_op *op)
{
    if (cv_array_grow((void **)&h->ops, &h->cap, h->n + 1, sizeof *h->ops) < 0) return CV_ENOMEM;
    h->ops[h->n++] = *op;
    return 0;
}

void cv_stress_history_free(struct cv_stress_history *h)
{
    free(h->ops);
    h->ops = NULL;
    h->n = h->cap = 0;
}

struct ctx {
    const struct cv_stress_history *h;
    size_t fails, max_lines;
    struct cv_buf *out;
};

static double secs(const struct ctx *c, uint64_t ns)
{
    return ns >= c->h->t0_ns ? (double)(ns - c->h->t0_ns) / 1e9 : 0.0;
}

static void fail(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct ctx *c, const char *fmt, ...)
{
    if (c->fails++ >= c->max_lines) return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    cv_buf_printf(c->out, "  %s\n", line);
}

static const char *kname(uint8_t k) { return k == CV_OP_INC ? "Increment" : k == CV_OP_GET ? "GetValue" : "create"; }

/* Sorting pointers to the ops of one object. */
static int by_start(const void *x, const void *y)
{
    const struct cv_stress_op *a = *(const struct cv_stress_op *const *)x, *b = *(const struct cv_stress_op *const *)y;
    return (a->start_ns > b->start_ns) - (a->start_ns < b->start_ns);
}
static int by_end(const void *x, const void *y)
{
    const struct cv_stress_op *a = *(const struct cv_stress_op *const *)x, *b = *(const struct cv_stress_op *const *)y;
    return (a->end_ns > b->end_ns) - (a->end_ns < b->end_ns);
}
static int by_value(const void *x, const void *y)
{
    const struct cv_stress_op *a = *(const struct cv_stress_op *const *)x, *b = *(const struct cv_stress_op *const *)y;
    return (a->value > b->value) - (a->value < b->value);
}
static int by_obj(const void *x, const void *y)
{
    const struct cv_stress_op *a = *(const struct cv_stress_op *const *)x, *b = *(const struct cv_stress_op *const *)y;
    if (a->obj != b->obj) return a->obj < b->obj ? -1 : 1;
    return (a < b) ? -1 : (a > b);
}

static bool valued(const struct cv_stress_op *o) { return o->ok && (o->kind == CV_OP_INC || o->kind == CV_OP_GET); }

static void check_distinct(struct ctx *c, const struct cv_stress_op **v, size_t n, uint32_t obj)
{
    size_t k = 0;
    const struct cv_stress_op **inc = malloc((n ? n : 1) * sizeof *inc);
    if (!inc) return fail(c, "object %u: out of memory for the distinct-values check", obj);
    for (size_t i = 0; i < n; i++)
        if (v[i]->ok && v[i]->kind == CV_OP_INC) inc[k++] = v[i];
    if (k) qsort(inc, k, sizeof *inc, by_value);
    for (size_t i = 1; i < k; i++)
        if (inc[i]->value == inc[i - 1]->value)
            fail(c, "object %u: two Increments returned %" PRId64 " (client %u at %.3f s, client %u at %.3f s)", obj,
                 inc[i]->value, inc[i - 1]->client, secs(c, inc[i - 1]->end_ns), inc[i]->client, secs(c, inc[i]->end_ns));
    free(inc);
}

/* Lower bound: sweep in start order over the ops ended before. */
static void check_lower(struct ctx *c, const struct cv_stress_op **st, const struct cv_stress_op **en, size_t n,
                        uint32_t obj)
{
    const struct cv_stress_op *best = NULL;
    size_t e = 0;
    for (size_t i = 0; i < n; i++) {
        const struct cv_stress_op *o = st[i];
        for (; e < n && en[e]->end_ns < o->start_ns; e++)
            if (valued(en[e]) && (!best || en[e]->value > best->value)) best = en[e];
        if (!valued(o) || !best) continue;
        bool bad = o->kind == CV_OP_INC ? o->value <= best->value : o->value < best->value;
        if (!bad) continue;
        fail(c, "object %u: %s by client %u [%.3f, %.3f] s returned %" PRId64 ", but %s by client %u had returned %" PRId64
                " at %.3f s, before it started%s", obj, kname(o->kind), o->client, secs(c, o->start_ns), secs(c, o->end_ns),
             o->value, kname(best->kind), best->client, best->value, secs(c, best->end_ns),
             best->client == o->client ? " (the client's own value went backwards)" : " (stale)");
    }
}

/* Upper bound: increment attempts started before the op ended (prefix sums over the start order and a
 * binary search per op), plus slack (the object's double-applied increments when the count is not
 * strict). Only the first violation of an object is described: every later op of it is off by the same
 * extra increment. */
static void check_upper(struct ctx *c, const struct cv_stress_op **st, size_t n, uint32_t obj, bool ids,
                        uint64_t slack, struct cv_buf *findings)
{
    uint64_t *cum = malloc((n + 1) * sizeof *cum);
    if (!cum) return fail(c, "object %u: out of memory for the upper-bound check", obj);
    cum[0] = 0;
    for (size_t j = 0; j < n; j++) cum[j + 1] = cum[j] + (st[j]->kind == CV_OP_INC ? (ids ? 1u : st[j]->attempts) : 0u);
    size_t over = 0, strict_over = 0;
    for (size_t i = 0; i < n; i++) {
        const struct cv_stress_op *o = st[i];
        if (!valued(o)) continue;
        size_t lo = 0, hi = n; /* first index whose start is >= o's end */
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (st[mid]->start_ns < o->end_ns) lo = mid + 1; else hi = mid;
        }
        uint64_t started = cum[lo];
        if (o->value >= 0 && (uint64_t)o->value <= started) continue;
        if (strict_over++ == 0)
            cv_buf_printf(findings, "  object %u: first visible at %.3f s: %s by client %u [%.3f, %.3f] s returned %" PRId64
                                    " with %" PRIu64 " Increment attempts started by its end\n", obj, secs(c, o->end_ns),
                          kname(o->kind), o->client, secs(c, o->start_ns), secs(c, o->end_ns), o->value, started);
        if (o->value >= 0 && (uint64_t)o->value <= started + slack) continue;
        if (over++ == 0)
            fail(c, "object %u: %s by client %u [%.3f, %.3f] s returned %" PRId64 ", but only %" PRIu64
                    " Increment attempts had started by its end", obj, kname(o->kind), o->client, secs(c, o->start_ns),
                 secs(c, o->end_ns), o->value, started);
    }
    if (over > 1) cv_buf_printf(c->out, "  object %u: ... %zu later operations above the bound too\n", obj, over - 1);
    free(cum);
}

/* The count check; returns the object's final - acked when positive (0 otherwise). */
static uint64_t check_count(struct ctx *c, const struct cv_stress_op **v, size_t n, uint32_t obj, int64_t final,
                            bool ids, bool strict)
{
    uint64_t acked = 0, maybe = 0;
    int64_t seen = 0;
    for (size_t i = 0; i < n; i++) {
        if (valued(v[i]) && v[i]->value > seen) seen = v[i]->value;
        if (v[i]->kind != CV_OP_INC) continue;
        acked += v[i]->ok;
        maybe += ids ? !v[i]->ok : (uint64_t)v[i]->attempts - v[i]->ok;
    }
    if (final < 0) return fail(c, "object %u: its final value could not be read (%" PRIu64 " acknowledged increments)", obj, acked), 0;
    if ((uint64_t)final < acked || final < seen)
        return fail(c, "object %u: LOST increments: final value %" PRId64 ", %" PRIu64 " acknowledged, highest value seen %" PRId64,
                    obj, final, acked, seen), 0;
    uint64_t extra = (uint64_t)final - acked;
    if (strict && extra)
        fail(c, "object %u: final value %" PRId64 " != %" PRIu64 " acknowledged increments (%" PRIu64
                " applied but not acknowledged, or applied twice by a retry)", obj, final, acked, extra);
    (void)maybe; /* without strict, final - acked is the finding whatever its cause */
    return extra;
}

size_t cv_stress_check(const struct cv_stress_history *h, const int64_t *finals, bool ids, bool strict,
                       size_t max_lines, struct cv_buf *out, struct cv_buf *findings, uint64_t *extra)
{
    struct ctx c = {h, 0, max_lines, out};
    *extra = 0;
    const struct cv_stress_op **all = malloc((h->n ? h->n : 1) * sizeof *all);
    const struct cv_stress_op **en = malloc((h->n ? h->n : 1) * sizeof *en);
    if (!all || !en) {
        fail(&c, "out of memory for the checks");
        goto done;
    }
    for (size_t i = 0; i < h->n; i++) all[i] = &h->ops[i];
    if (h->n) qsort(all, h->n, sizeof *all, by_obj);
    size_t i = 0;
    for (uint32_t obj = 0; obj < h->n_objects; obj++) {
        size_t j = i;
        while (j < h->n && all[j]->obj == obj) j++;
        const struct cv_stress_op **st = all + i;
        size_t n = j - i;
        memcpy(en, st, n * sizeof *en);
        check_distinct(&c, st, n, obj);
        if (n) qsort(st, n, sizeof *st, by_start);
        if (n) qsort(en, n, sizeof *en, by_end);
        check_lower(&c, st, en, n, obj);
        uint64_t x = check_count(&c, st, n, obj, finals[obj], ids, strict);
        *extra += x;
        check_upper(&c, st, n, obj, ids, strict ? 0 : x, findings);
        i = j;
    }
    if (c.fails > max_lines) cv_buf_printf(out, "  ... and %zu more\n", c.fails - max_lines);
done:
    free(all);
    free(en);
    return c.fails;
}
