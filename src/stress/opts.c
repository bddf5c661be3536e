/* cverse-stress's flags (see opts.h and docs/stress.md).
 *
 * Happy path: getopt_long over the table below; durations go through cverse-bench's parser (plain
 * numbers are seconds, as in Goverse's script); numbers are checked for range.
 * Failure modes: an unknown flag, a missing or malformed value, or a combination that cannot work
 * (--pids without --attach, churn of an attached cluster without --pids, partition churn of an attached
 * cluster, --nodes 0) gives CV_EINVAL and
 * one line naming the flag. */
#include "stress/opts.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/opts.h"
#include "cverse/error.h"

const char cv_stress_usage[] =
    "Usage: cverse-stress [options]\n"
    "Drives clients against a cverse cluster while nodes churn; checks exact counts, linearizable\n"
    "counters, one activation per object, availability and the end state (docs/stress.md).\n"
    "  --clients N            logical clients, one operation in flight each (10)\n"
    "  --duration D           measured time: 300 (seconds), 90s, 5m (300)\n"
    "  --stats-interval D     progress line period (10)\n"
    "  --config FILE          cluster to start (cluster/demo-cluster.yml)\n"
    "  --nodes N --gates G --shards S   start a generated cluster instead (3, 2, 64)\n"
    "  --attach               drive the running cluster of --config (churn needs --pids FILE)\n"
    "  --pids FILE            the attached cluster's processes: run-cluster.sh's \"PID ROLE ID\" lines\n"
    "  --churn-enabled        stop and restart nodes during the run\n"
    "  --churn-interval D     between churn events (30)\n"
    "  --churn-downtime D     how long a node stays down (2)\n"
    "  --churn-mode M         sigterm|sigkill|sigstop|leader|rolling|partition (sigterm; partition: root)\n"
    "  --rate R               open loop: R operations/s over all clients (closed loop)\n"
    "  --objects N            counters (100)\n"
    "  --seed N               repeat a run's choices (from the time)\n"
    "  --mix M                counters (50%% Increment, 50%% GetValue) | goverse (50/30/20 %% with creates)\n"
    "  --transport T          mixed|native|http (mixed: even clients native, odd HTTP)\n"
    "  --strict-count / --no-strict-count   final == acknowledged exactly (default: when call ids work)\n"
    "  --timeout D            per attempt (3s)      --op-deadline D   retry an operation until (30s)\n"
    "  --error-window D       errors allowed after a disruptive churn event (2 x lease TTL + downtime + 3s)\n"
    "  --ready-timeout D      wait for /ready (60s)  --run-dir DIR  --keep  --node-bin P  --gate-bin P\n"
    "Exit: 0 pass, 1 correctness failure, 2 error budget exceeded, 3 cluster never ready, 4 bad arguments\n";

static const char *churn_names[] = {"sigterm", "sigkill", "sigstop", "leader", "rolling", "partition"};

const char *cv_stress_churn_name(enum cv_stress_churn_mode m) { return churn_names[m]; }

bool cv_stress_churn_graceful(enum cv_stress_churn_mode m)
{
    return m == CV_CHURN_SIGTERM || m == CV_CHURN_LEADER || m == CV_CHURN_ROLLING;
}

static int bad(char *err, size_t len, const char *flag, const char *what)
{
    snprintf(err, len, "cverse-stress: %s: %s (see --help)", flag, what);
    return CV_EINVAL;
}

static int num(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    if (!s || !*s || *s == '-') return CV_EINVAL;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || v < lo || v > hi) return CV_EINVAL;
    *out = v;
    return 0;
}

static int pick(const char *s, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(s, names[i])) return i;
    return -1;
}

enum { O_CLIENTS = 256, O_DURATION, O_STATS, O_CONFIG, O_NODES, O_GATES, O_SHARDS, O_ATTACH, O_PIDS, O_CHURN,
       O_CINT, O_CDOWN, O_CMODE, O_RATE, O_OBJECTS, O_SEED, O_MIX, O_TRANSPORT, O_STRICT, O_NOSTRICT,
       O_RUNDIR, O_NODEBIN, O_GATEBIN, O_TIMEOUT, O_OPDL, O_EWIN, O_READY, O_KEEP, O_HELP };

static const struct option longopts[] = {
    {"clients", 1, 0, O_CLIENTS}, {"duration", 1, 0, O_DURATION}, {"stats-interval", 1, 0, O_STATS},
    {"config", 1, 0, O_CONFIG}, {"nodes", 1, 0, O_NODES}, {"gates", 1, 0, O_GATES}, {"shards", 1, 0, O_SHARDS},
    {"attach", 0, 0, O_ATTACH}, {"pids", 1, 0, O_PIDS}, {"churn-enabled", 0, 0, O_CHURN},
    {"churn-interval", 1, 0, O_CINT}, {"churn-downtime", 1, 0, O_CDOWN}, {"churn-mode", 1, 0, O_CMODE},
    {"rate", 1, 0, O_RATE}, {"objects", 1, 0, O_OBJECTS}, {"seed", 1, 0, O_SEED}, {"mix", 1, 0, O_MIX},
    {"transport", 1, 0, O_TRANSPORT}, {"strict-count", 0, 0, O_STRICT}, {"no-strict-count", 0, 0, O_NOSTRICT},
    {"run-dir", 1, 0, O_RUNDIR}, {"node-bin", 1, 0, O_NODEBIN}, {"gate-bin", 1, 0, O_GATEBIN},
    {"timeout", 1, 0, O_TIMEOUT}, {"op-deadline", 1, 0, O_OPDL}, {"error-window", 1, 0, O_EWIN},
    {"ready-timeout", 1, 0, O_READY}, {"keep", 0, 0, O_KEEP}, {"help", 0, 0, O_HELP}, {0, 0, 0, 0}};

static void defaults(struct cv_stress_opts *o)
{
    *o = (struct cv_stress_opts){.clients = 10, .duration_ms = 300000, .stats_interval_ms = 10000,
                                 .nodes = 3, .gates = 2, .shards = 64, .churn_interval_ms = 30000,
                                 .churn_downtime_ms = 2000, .objects = 100, .strict_count = -1,
                                 .timeout_ms = 3000, .op_deadline_ms = 30000, .ready_timeout_ms = 60000};
    o->seed = (uint64_t)time(NULL);
}

/* A duration flag: plain numbers are seconds. */
static int dur(const char *flag, const char *s, uint64_t min, uint64_t *out, char *err, size_t len)
{
    if (cv_bench_parse_duration(s, out) < 0 || *out < min)
        return bad(err, len, flag, min ? "expects a positive duration (300, 90s, 5m, 500ms)"
                                       : "expects a duration (300, 90s, 5m, 500ms)");
    return 0;
}

static int one(int c, const char *arg, struct cv_stress_opts *o, char *err, size_t len)
{
    uint64_t v;
    int k;
    switch (c) {
    case O_CLIENTS: if (num(arg, 1, 10000, &v)) return bad(err, len, "--clients", "expects 1..10000"); o->clients = (unsigned)v; return 0;
    case O_DURATION: return dur("--duration", arg, 1, &o->duration_ms, err, len);
    case O_STATS: return dur("--stats-interval", arg, 1, &o->stats_interval_ms, err, len);
    case O_CONFIG: o->config = arg; return 0;
    case O_NODES: if (num(arg, 1, 64, &v)) return bad(err, len, "--nodes", "expects 1..64"); o->nodes = (unsigned)v; o->generated = true; return 0;
    case O_GATES: if (num(arg, 1, 16, &v)) return bad(err, len, "--gates", "expects 1..16"); o->gates = (unsigned)v; o->generated = true; return 0;
    case O_SHARDS: if (num(arg, 1, 1048576, &v)) return bad(err, len, "--shards", "expects 1..1048576"); o->shards = (unsigned)v; o->generated = true; return 0;
    case O_ATTACH: o->attach = true; return 0;
    case O_PIDS: o->pids = arg; return 0;
    case O_CHURN: o->churn = true; return 0;
    case O_CINT: return dur("--churn-interval", arg, 1, &o->churn_interval_ms, err, len);
    case O_CDOWN: return dur("--churn-downtime", arg, 0, &o->churn_downtime_ms, err, len);
    case O_CMODE:
        if ((k = pick(arg, churn_names, 6)) < 0)
            return bad(err, len, "--churn-mode", "expects sigterm, sigkill, sigstop, leader, rolling or partition");
        o->churn_mode = (enum cv_stress_churn_mode)k;
        return 0;
    case O_RATE: {
        char *end;
        o->rate = strtod(arg, &end);
        if (*end || !(o->rate > 0) || o->rate > 1e6) return bad(err, len, "--rate", "expects operations per second, > 0");
        return 0;
    }
    case O_OBJECTS: if (num(arg, 1, 1000000, &v)) return bad(err, len, "--objects", "expects 1..1000000"); o->objects = (unsigned)v; return 0;
    case O_SEED: if (num(arg, 0, UINT64_MAX, &v)) return bad(err, len, "--seed", "expects a number"); o->seed = v; return 0;
    case O_MIX:
        if ((k = pick(arg, (const char *[]){"counters", "goverse"}, 2)) < 0) return bad(err, len, "--mix", "expects counters or goverse");
        o->mix = (enum cv_stress_mix)k;
        return 0;
    case O_TRANSPORT:
        if ((k = pick(arg, (const char *[]){"mixed", "native", "http"}, 3)) < 0)
            return bad(err, len, "--transport", "expects mixed, native or http");
        o->transport = (enum cv_stress_transport)k;
        return 0;
    case O_STRICT: o->strict_count = 1; return 0;
    case O_NOSTRICT: o->strict_count = 0; return 0;
    case O_RUNDIR: o->run_dir = arg; return 0;
    case O_NODEBIN: o->node_bin = arg; return 0;
    case O_GATEBIN: o->gate_bin = arg; return 0;
    case O_TIMEOUT: return dur("--timeout", arg, 1, &o->timeout_ms, err, len);
    case O_OPDL: return dur("--op-deadline", arg, 1, &o->op_deadline_ms, err, len);
    case O_EWIN: return dur("--error-window", arg, 1, &o->error_window_ms, err, len);
    case O_READY: return dur("--ready-timeout", arg, 1, &o->ready_timeout_ms, err, len);
    case O_KEEP: o->keep = true; return 0;
    default: return bad(err, len, "flags", "unknown flag or missing value");
    }
}

static int combos(struct cv_stress_opts *o, char *err, size_t len)
{
    if (o->pids && !o->attach) return bad(err, len, "--pids", "only with --attach (a started cluster's PIDs are known)");
    if (o->attach && o->generated) return bad(err, len, "--attach", "drives the cluster of --config; --nodes/--gates/--shards start one");
    if (o->attach && !o->config) return bad(err, len, "--attach", "needs --config FILE of the running cluster");
    if (o->attach && o->churn && !o->pids) return bad(err, len, "--churn-enabled", "with --attach needs --pids FILE");
    if (o->attach && o->churn && o->churn_mode == CV_CHURN_PARTITION)
        return bad(err, len, "--churn-mode partition", "starts its own cluster in network namespaces; not with --attach");
    if (o->config && o->generated) return bad(err, len, "--config", "or --nodes/--gates/--shards, not both");
    if (o->op_deadline_ms < o->timeout_ms) return bad(err, len, "--op-deadline", "must be at least --timeout");
    return 0;
}

int cv_stress_opts_parse(int argc, char **argv, struct cv_stress_opts *o, char *err, size_t errlen)
{
    defaults(o);
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (c == O_HELP) return 1;
        if (c == '?' || c == ':') {
            snprintf(err, errlen, "cverse-stress: unknown flag or missing value: %s (see --help)", argv[optind - 1]);
            return CV_EINVAL;
        }
        int rc = one(c, optarg, o, err, errlen);
        if (rc < 0) return rc;
    }
    if (optind < argc) return bad(err, errlen, argv[optind], "unexpected argument");
    return combos(o, err, errlen);
}
