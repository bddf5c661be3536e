/* What the node's call statistics cost a call (docs/inspector.md): the work incall.c adds per answered
 * call -- two monotonic clock reads and cv_node_stats_count on 8192 shards and the demo's methods --
 * timed over a loop, against the same loop without it. Not a test: run it from a release build,
 *     build-rel/tests/unit/bench_node_stats [calls] */
#include <stdio.h>
#include <stdlib.h>

#include "demo/demo.h"
#include "node/stats.h"
#include "objects/registry.h"
#include "util/log.h"

static volatile uint64_t sink;

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 20000000;
    cv_registry *reg = cv_registry_new();
    struct cv_node_stats *s;
    if (!reg || cv_demo_register(reg) || cv_node_stats_new(reg, 8192, &s)) return 1;
    const struct cv_object_type *t[4];
    const struct cv_method *m[4];
    for (int i = 0; i < 4; i++) {
        t[i] = cv_registry_type_at(reg, (size_t)i % cv_registry_count(reg));
        m[i] = &t[i]->methods[0];
    }
    for (int round = 0; round < 3; round++) {
        uint64_t t0 = cv_mono_ns();
        for (long i = 0; i < n; i++) sink += (uint64_t)i * 2654435761u % 8192; /* the loop alone */
        uint64_t t1 = cv_mono_ns();
        for (long i = 0; i < n; i++) {
            uint32_t shard = (uint32_t)((uint64_t)i * 2654435761u % 8192);
            uint64_t taken = cv_mono_ns();
            cv_node_stats_count(s, t[i & 3], m[i & 3], shard, (i & 63) == 0 ? -1 : 0,
                                (cv_mono_ns() - taken) / 1000);
            sink += shard;
        }
        uint64_t t2 = cv_mono_ns();
        printf("round %d: %ld calls, loop alone %.1f ns/call, with counting %.1f ns/call, cost %.1f ns/call\n",
               round, n, (double)(t1 - t0) / (double)n, (double)(t2 - t1) / (double)n,
               (double)((t2 - t1) - (t1 - t0)) / (double)n);
    }
    cv_node_stats_free(s);
    cv_registry_free(reg);
    return 0;
}
