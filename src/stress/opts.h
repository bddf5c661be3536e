/* cverse-stress's command line: Goverse's stress-test flags and cverse's own, parsed into a plain struct
 * with a clear message for bad ones (pure). */
#ifndef CV_STRESS_OPTS_H
#define CV_STRESS_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum cv_stress_churn_mode { CV_CHURN_SIGTERM, CV_CHURN_SIGKILL, CV_CHURN_SIGSTOP, CV_CHURN_LEADER, CV_CHURN_ROLLING,
                       CV_CHURN_PARTITION };
enum cv_stress_mix { CV_MIX_COUNTERS, CV_MIX_GOVERSE };
enum cv_stress_transport { CV_TRANSPORT_MIXED, CV_TRANSPORT_NATIVE, CV_TRANSPORT_HTTP };

/* Strings point into argv (borrowed, valid as long as argv) or at static defaults. */
struct cv_stress_opts {
    unsigned clients;            /* --clients 10: logical clients, one operation in flight each */
    uint64_t duration_ms;        /* --duration 300 (seconds; or 10s, 2m, 500ms) */
    uint64_t stats_interval_ms;  /* --stats-interval 10 */
    const char *config;          /* --config FILE; default cluster/demo-cluster.yml of the source tree */
    bool generated;              /* --nodes/--gates/--shards given: a generated config */
    unsigned nodes, gates, shards; /* --nodes 3 --gates 2 --shards 64 (generated config) */
    bool attach;                 /* --attach: drive the running cluster of --config */
    const char *pids;            /* --pids FILE ("PID ROLE ID" lines, as cluster/run-cluster.sh writes
                                  * them): churn of an attached cluster */
    bool churn;                  /* --churn-enabled */
    uint64_t churn_interval_ms;  /* --churn-interval 30 */
    uint64_t churn_downtime_ms;  /* --churn-downtime 2 */
    enum cv_stress_churn_mode churn_mode; /* --churn-mode sigterm (Goverse's only kind) */
    double rate;                 /* --rate R: open loop at R operations/s over all clients; 0 closed loop */
    unsigned objects;            /* --objects 100 (Goverse's 100 counters) */
    uint64_t seed;               /* --seed N; default from the time */
    enum cv_stress_mix mix;      /* --mix counters (default) | goverse */
    enum cv_stress_transport transport; /* --transport mixed (default) | native | http */
    int strict_count;            /* --strict-count / --no-strict-count; -1: on when the cluster has call ids */
    const char *run_dir;         /* --run-dir DIR; default /tmp/cverse-stress-<pid> */
    const char *node_bin, *gate_bin; /* --node-bin / --gate-bin; default next to this binary, else PATH */
    uint64_t timeout_ms;         /* --timeout 3s: per attempt */
    uint64_t op_deadline_ms;     /* --op-deadline 30s: an operation is retried until then */
    uint64_t error_window_ms;    /* --error-window: errors allowed this long after a disruptive churn
                                  * event; 0 = 2 x lease_ttl_ms + downtime + 3 s */
    uint64_t ready_timeout_ms;   /* --ready-timeout 60s */
    bool keep;                   /* --keep: leave the run dir */
};

/* Fills o from argv[1..argc). 0; 1 when --help was asked; CV_EINVAL with a one-line message in err
 * (the flag and what it expects) for anything else. */
int cv_stress_opts_parse(int argc, char **argv, struct cv_stress_opts *o, char *err, size_t errlen);
const char *cv_stress_churn_name(enum cv_stress_churn_mode m);
/* True for the modes whose churn must not fail a single call (sigterm, leader, rolling). */
bool cv_stress_churn_graceful(enum cv_stress_churn_mode m);
extern const char cv_stress_usage[];

#endif
