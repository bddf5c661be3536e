/* Unit test of the gate (src/gate) where a real allocation fails: a binary of its own because, under
 * ASan, a failed calloc only returns NULL with allocator_may_return_null=1, and __asan_default_options
 * sets that for the whole binary. test_gate keeps ASan's default (an impossible allocation is a report
 * there); only this binary, whose test makes the allocation fail on purpose, opts in. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "config/config.h"
#include "cverse/error.h"
#include "gate/gate.h"

#include "lsan_check.h"

/* ---------------------------------------------------------------------------------------------------
 * Defect 2: a failed allocation of the node table must leave nothing to walk. */

TestSuite(gate_start, .fini = cv_lsan_check);

/* Under ASan a failed calloc aborts by default; the defect is about the gate's answer to a NULL. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}

/* A config claiming more nodes than memory can hold: the gate's calloc of its node table fails for real
 * (nmemb * size overflows, so calloc returns NULL without touching memory). Before the fix the gate had
 * already stored that count, and its shutdown walked the NULL table: a crash instead of CV_ENOMEM. */
Test(gate_start, node_table_allocation_failure_fails_cleanly)
{
    char text[512];
    int n = snprintf(text, sizeof text,
                     "version: 1\ncluster:\n  shards: 4\nnodes:\n"
                     "  - {id: n1, grpc_addr: \"127.0.0.1:1\", http_addr: \"127.0.0.1:2\"}\n"
                     "gates:\n  - {id: gate-1, grpc_addr: \"127.0.0.1:3\", http_addr: \"127.0.0.1:4\"}\n");
    struct cv_config *cfg;
    char err[256];
    cr_assert_eq(cv_config_parse(text, (size_t)n, "test.yml", &cfg, err, sizeof err), 0, "%s", err);
    size_t real = cfg->n_nodes;
    cfg->n_nodes = SIZE_MAX / 4; /* only the count is read before the allocation fails */
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    struct cv_gate *g = NULL;
    struct cv_gate_opts o = {.loop = &loop, .cfg = cfg, .gate_id = "gate-1", .grpc_addr = "127.0.0.1:0",
                             .http_addr = "127.0.0.1:0"};
    cr_assert_eq(cv_gate_start(&o, &g), CV_ENOMEM);
    cr_assert_null(g);
    uv_run(&loop, UV_RUN_DEFAULT); /* the half-started gate closes its handles and frees itself */
    cr_assert_eq(uv_loop_close(&loop), 0, "every handle closed");
    cfg->n_nodes = real;
    cv_config_free(cfg);
}
