/* bench_increments: SimpleCounter.Increment through a gate's native port with N calls in flight (one
 * blocking client per thread), over many counters; prints calls/s. Used by scripts/durable-bench.sh to
 * compare the on_write and none persistence policies (docs/durable-state.md). Not a test.
 *
 * Usage: bench_increments GATE_HOSTPORT [--inflight N (64)] [--counters M (1024)] [--seconds S (10)]
 *        [--create]   (create the counters first; otherwise they must exist) */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cverse/client.h"
#include "cverse/error.h"

static const char *gate;
static int inflight = 64, counters = 1024, seconds = 10;
static volatile bool stop;

struct worker {
    pthread_t th;
    int first;
    long ok, failed;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *run(void *arg)
{
    struct worker *w = arg;
    cv_client *c;
    char id[32], err[256];
    if (cv_client_connect(gate, 5000, &c) != 0) {
        fprintf(stderr, "cannot connect to %s\n", gate);
        return NULL;
    }
    for (int k = w->first; !stop; k = (k + inflight) % counters) {
        uint8_t *resp = NULL;
        size_t len = 0;
        snprintf(id, sizeof id, "bench-%05d", k);
        int rv = cv_client_call_raw(c, "SimpleCounter", id, "Increment", NULL, 0, &resp, &len, 30000, err, sizeof err);
        free(resp);
        if (rv == 0) w->ok++;
        else if (w->failed++ < 3) fprintf(stderr, "%s: %s\n", id, err);
    }
    cv_client_close(c);
    return NULL;
}

static int create_all(void)
{
    cv_client *c;
    char id[32], err[256];
    if (cv_client_connect(gate, 5000, &c) != 0) return 1;
    for (int k = 0; k < counters; k++) {
        snprintf(id, sizeof id, "bench-%05d", k);
        if (cv_client_create(c, "SimpleCounter", id, 30000, err, sizeof err) != 0) {
            fprintf(stderr, "create %s: %s\n", id, err);
            cv_client_close(c);
            return 1;
        }
    }
    cv_client_close(c);
    return 0;
}

int main(int argc, char **argv)
{
    bool create = false;
    if (argc < 2) {
        fprintf(stderr, "usage: bench_increments GATE_HOSTPORT [--inflight N] [--counters M] [--seconds S] [--create]\n");
        return 2;
    }
    gate = argv[1];
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--create")) create = true;
        else if (i + 1 < argc && !strcmp(argv[i], "--inflight")) inflight = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--counters")) counters = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--seconds")) seconds = atoi(argv[++i]);
        else return fprintf(stderr, "unknown argument %s\n", argv[i]), 2;
    }
    if (inflight < 1 || counters < inflight || seconds < 1) return fprintf(stderr, "bad numbers\n"), 2;
    if (create && create_all() != 0) return 1;
    struct worker *w = calloc((size_t)inflight, sizeof *w);
    double t0 = now_s();
    for (int i = 0; i < inflight; i++) {
        w[i].first = i;
        pthread_create(&w[i].th, NULL, run, &w[i]);
    }
    while (now_s() - t0 < seconds) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    stop = true;
    long ok = 0, failed = 0;
    for (int i = 0; i < inflight; i++) {
        pthread_join(w[i].th, NULL);
        ok += w[i].ok;
        failed += w[i].failed;
    }
    double el = now_s() - t0;
    printf("%d in flight, %d counters, %.1f s: %ld increments (%.0f/s), %ld failed\n", inflight, counters, el, ok,
           (double)ok / el, failed);
    free(w);
    return failed ? 1 : 0;
}
