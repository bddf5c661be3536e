/* cverse-stress's cluster: the run dir, the config (generated or given), and the node and gate processes
 * it starts (each in a network namespace of its own for partition churn), or adopts from a pids file
 * (--attach --pids), signals, cuts off and restarts on a libuv loop. */
#ifndef CV_STRESS_PROCS_H
#define CV_STRESS_PROCS_H

#include <stdbool.h>
#include <sys/types.h>
#include <uv.h>

#include "auth/secret.h"
#include "config/config.h"
#include "net/httpc.h"
#include "stress/attach.h"
#include "stress/opts.h"
#include "util/netns.h"

#define CV_STRESS_MAX_PROCS 96

struct cv_stress_cluster;
struct cv_stress_proc {
    struct cv_stress_cluster *c;
    char id[64];
    bool gate;
    char http[160], grpc[160]; /* connectable "127.0.0.1:port" forms of the config's addresses */
    uv_process_t h;
    pid_t pid;                 /* 0 when not running */
    bool stopped;              /* SIGSTOPped */
    bool cut;                  /* its link is down (partition) */
    bool adopted;              /* attached and not our child: its exit is noticed by polling */
    pid_t listed_pid;          /* the PID its line of the pids file has now */
    struct cv_stress_cmd cmd;  /* attached node: how to start it again (owned) */
    bool expect_exit;          /* we signalled it to exit */
    unsigned unexpected_exits; /* exits nobody asked for, or a non-zero status after SIGTERM */
    char last_exit[96];        /* "exit 0", "signal 9", ... */
};

/* Called when a process exited (asked or not). */
typedef void (*cv_stress_exit_cb)(struct cv_stress_cluster *c, struct cv_stress_proc *p);

struct cv_stress_cluster {
    uv_loop_t *loop;
    const struct cv_stress_opts *o; /* borrowed, valid until closed */
    struct cv_config *cfg;          /* owned */
    char dir[256], config[320], actlog[320];
    char node_bin[4200], gate_bin[4200];
    struct cv_stress_proc p[CV_STRESS_MAX_PROCS]; /* nodes first, then gates */
    unsigned n_nodes, n_gates;
    bool attached;
    struct cv_netns *net;           /* partition: host i = process i, the clients last (owned); else NULL */
    uv_timer_t watch;               /* --pids: polls the adopted processes */
    bool watching;
    cv_stress_exit_cb on_exit;
    void *data;
    struct cv_secret secret;        /* the cluster secret (config or $CVERSE_CLUSTER_SECRET_FILE) */
    const struct cv_secret *sign;   /* &secret when there is one, else NULL */
};

/* Makes the run dir, writes or loads the config, finds the binaries, sets CVERSE_ACTIVATION_LOG for the
 * processes to come. Partition churn: sets up the namespaces (stress/ns.h; the calling thread ends up in
 * the clients' one). Attached with --pids: adopts the file's node processes (their command lines for
 * restarts; the activation log their environment names). Loads the cluster secret the processes get
 * (cv_stress_node_get signs with it). 0, or CV_EINVAL / CV_EIO / CV_ECONFIG /
 * CV_EPERM with one line in err. */
int cv_stress_cluster_init(struct cv_stress_cluster *c, uv_loop_t *loop, const struct cv_stress_opts *o,
                           const char *argv0, char *err, size_t errlen);
/* GET url of a node's HTTP API through http, signed with the cluster secret when there is one (nodes with a
 * secret refuse unsigned reads but /health, /ready and /metrics: node/httpauth.h). As cv_httpc_get. */
int cv_stress_node_get(const struct cv_stress_cluster *c, struct cv_httpc *http, const char *url,
                       unsigned timeout_ms, cv_httpc_cb cb, void *data);
/* Starts process i (node or gate) logging to <dir>/<id>.log, inside its namespace for partition churn;
 * an attached node as it ran before (and its pids file line gets the new PID). 0 or a CV_E* code. */
int cv_stress_proc_start(struct cv_stress_cluster *c, unsigned i);
/* Sends sig to process i (SIGKILL also appends its K line to the activation log; SIGCONT clears stopped). */
int cv_stress_proc_signal(struct cv_stress_cluster *c, unsigned i, int sig);
/* Cuts process i's link (cut) or restores it (partition churn). 0, CV_EINVAL without namespaces, CV_EIO. */
int cv_stress_proc_cut(struct cv_stress_cluster *c, unsigned i, bool cut);
/* True while process i runs and is not stopped; an attached cluster's processes count as up unless
 * --pids says otherwise. */
bool cv_stress_proc_up(const struct cv_stress_cluster *c, unsigned i);
/* Number of running (started and not exited) processes. */
unsigned cv_stress_cluster_running(const struct cv_stress_cluster *c);
/* Heals cut links, SIGCONTs stopped ones and SIGTERMs every running process (they exit through on_exit). */
void cv_stress_cluster_stop(struct cv_stress_cluster *c, int sig);
/* Closes the handles (the poll timer; an attached cluster's restarted nodes keep running, unwatched). */
void cv_stress_cluster_close(struct cv_stress_cluster *c);
/* Frees the config; deletes the namespaces; removes the run dir unless keep (call once every process
 * exited, and the loop is closed). */
void cv_stress_cluster_free(struct cv_stress_cluster *c, bool keep);

#endif
