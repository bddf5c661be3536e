/* cverse-stress's cluster processes (see procs.h).
 *
 * Happy path: the run dir gets cluster.yml (generated: --nodes/--gates/--shards on 127.0.0.1 at a free
 * port range chosen from the pid, with the demo's auto-load objects; or a copy of --config), data/<id>
 * per node, <id>.log per process and activations.log, the activation log every started process appends
 * to. Processes are started with uv_spawn exactly as cluster/run-cluster.sh does (node: --config,
 * --node-id, --data-dir; gate: --config, --gate-id); their exits come back through uv's exit callback.
 * Partition churn: every process runs in a network namespace of its own (stress/ns.h), entered around
 * its uv_spawn. Attached with --pids: the file's node processes are adopted (stress/attach.h): their
 * exits are noticed by a 100 ms poll, a restart runs their recorded command line again as our child.
 * Failure modes: no free port range, a config that does not load, a binary that is not found, no root
 * for namespaces, a pids file that does not name every node of the config or names one that is not
 * running: CV_E* with a message. An exit nobody asked for (or a non-zero exit after SIGTERM) is counted in
 * unexpected_exits: the report names it as a failure. */
#include "stress/procs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth/sign.h"
#include "cverse/error.h"
#include "stress/ns.h"
#include "util/actcheck.h"
#include "util/actlog.h"
#include "util/fs.h"

static bool port_free(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

/* Ports of a generated cluster at base: node i grpc base+i, http base+100+i, raft base+2000+i; gate g
 * grpc base+70+g, http base+170+g. */
static bool range_free(int base, unsigned nodes, unsigned gates)
{
    for (unsigned i = 0; i < nodes; i++)
        if (!port_free(base + (int)i) || !port_free(base + 100 + (int)i) || !port_free(base + 2000 + (int)i)) return false;
    for (unsigned g = 0; g < gates; g++)
        if (!port_free(base + 70 + (int)g) || !port_free(base + 170 + (int)g)) return false;
    return true;
}

static int write_generated(struct cv_stress_cluster *c, char *err, size_t len)
{
    const struct cv_stress_opts *o = c->o;
    int base = 21000 + (int)(getpid() % 40) * 200, tries = 0;
    while (!range_free(base, o->nodes, o->gates) && ++tries < 40) base = 21000 + (base - 21000 + 200) % 8000;
    if (tries == 40) return snprintf(err, len, "cverse-stress: no free port range for %u nodes", o->nodes), CV_EIO;
    FILE *f = fopen(c->config, "w");
    if (!f) return snprintf(err, len, "cverse-stress: %s: %s", c->config, strerror(errno)), CV_EIO;
    fprintf(f, "version: 1\ncluster:\n  shards: %u\n  provider: raft\n  data_dir: \"%s/data\"\n"
               "  auto_load_objects:\n    - type: \"GlobalMonitor\"\n      id: \"GlobalMonitor\"\n"
               "    - type: \"ShardMonitor\"\n      id: \"ShardMonitor\"\n      per_shard: true\n"
               "    - type: \"NodeMonitor\"\n      id: \"NodeMonitor\"\n      per_node: true\nnodes:\n",
            o->shards, c->dir);
    for (unsigned i = 0; i < o->nodes; i++)
        fprintf(f, "  - id: \"node-%u\"\n    grpc_addr: \"127.0.0.1:%d\"\n    advertise_addr: \"127.0.0.1:%d\"\n"
                   "    http_addr: \"127.0.0.1:%d\"\n", i + 1, base + (int)i, base + (int)i, base + 100 + (int)i);
    fprintf(f, "gates:\n");
    for (unsigned g = 0; g < o->gates; g++)
        fprintf(f, "  - id: \"gate-%u\"\n    grpc_addr: \"127.0.0.1:%d\"\n    advertise_addr: \"127.0.0.1:%d\"\n"
                   "    http_addr: \"127.0.0.1:%d\"\n", g + 1, base + 70 + (int)g, base + 70 + (int)g, base + 170 + (int)g);
    return fclose(f) == 0 ? 0 : (snprintf(err, len, "cverse-stress: writing %s failed", c->config), CV_EIO);
}

static int copy_file(const char *from, const char *to, char *err, size_t len)
{
    FILE *in = fopen(from, "r");
    if (!in) return snprintf(err, len, "cverse-stress: --config %s: %s", from, strerror(errno)), CV_EINVAL;
    FILE *out = fopen(to, "w");
    if (!out) {
        fclose(in);
        return snprintf(err, len, "cverse-stress: %s: %s", to, strerror(errno)), CV_EIO;
    }
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) fwrite(buf, 1, n, out);
    fclose(in);
    return fclose(out) == 0 ? 0 : CV_EIO;
}

/* "0.0.0.0:47001" / "localhost:47001" -> "127.0.0.1:47001"; other hosts kept. */
static void connectable(char *out, size_t len, const char *addr)
{
    const char *colon = addr ? strrchr(addr, ':') : NULL;
    if (!colon) return (void)snprintf(out, len, "%s", addr ? addr : "");
    size_t h = (size_t)(colon - addr);
    if ((h == 7 && !strncmp(addr, "0.0.0.0", 7)) || (h == 9 && !strncmp(addr, "localhost", 9)) || h == 0)
        snprintf(out, len, "127.0.0.1%s", colon);
    else
        snprintf(out, len, "%s", addr);
}

/* The binary: the flag, else $CVERSE_<X>_BIN, else <dir of argv0>/../<sub>/<name> (the build tree),
 * else the name (PATH). */
static void find_bin(char *out, size_t len, const char *flag, const char *env, const char *argv0, const char *sub,
                     const char *name)
{
    if (flag) return (void)snprintf(out, len, "%s", flag);
    if (getenv(env)) return (void)snprintf(out, len, "%s", getenv(env));
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash) *slash = '\0';
        snprintf(out, len, "%s/../%s/%s", self, sub, name);
        if (access(out, X_OK) == 0) return;
    }
    (void)argv0;
    snprintf(out, len, "%s", name);
}

static void fill_procs(struct cv_stress_cluster *c)
{
    c->n_nodes = (unsigned)c->cfg->n_nodes;
    c->n_gates = (unsigned)c->cfg->n_gates;
    for (unsigned i = 0; i < c->n_nodes + c->n_gates; i++) {
        struct cv_stress_proc *p = &c->p[i];
        p->c = c;
        p->gate = i >= c->n_nodes;
        const char *id = p->gate ? c->cfg->gates[i - c->n_nodes].id : c->cfg->nodes[i].id;
        snprintf(p->id, sizeof p->id, "%s", id);
        connectable(p->http, sizeof p->http, p->gate ? c->cfg->gates[i - c->n_nodes].http_addr : c->cfg->nodes[i].http_addr);
        connectable(p->grpc, sizeof p->grpc, p->gate ? c->cfg->gates[i - c->n_nodes].grpc_addr : c->cfg->nodes[i].grpc_addr);
    }
}

static int adopt(struct cv_stress_cluster *c, char *err, size_t errlen);

int cv_stress_node_get(const struct cv_stress_cluster *c, struct cv_httpc *http, const char *url,
                       unsigned timeout_ms, cv_httpc_cb cb, void *data)
{
    char authz[CV_SIGN_MAX + 32];
    struct cv_httpc_req req = {.url = url, .timeout_ms = timeout_ms,
                               .extra_headers = cv_sign_url_headers(c->sign, "GET", url, NULL, 0, NULL, authz,
                                                                    sizeof authz)};
    return cv_httpc_request(http, &req, cb, data);
}

int cv_stress_cluster_init(struct cv_stress_cluster *c, uv_loop_t *loop, const struct cv_stress_opts *o,
                           const char *argv0, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    c->loop = loop;
    c->o = o;
    c->attached = o->attach;
    if (o->run_dir) snprintf(c->dir, sizeof c->dir, "%s", o->run_dir);
    else snprintf(c->dir, sizeof c->dir, "/tmp/cverse-stress-%ld", (long)getpid());
    if (cv_mkdir_p(c->dir) < 0) return snprintf(err, errlen, "cverse-stress: cannot create %s", c->dir), CV_EIO;
    snprintf(c->actlog, sizeof c->actlog, "%s/activations.log", c->dir);
    int rc = 0;
    if (o->attach) { /* the running processes log where their environment says, if anywhere */
        snprintf(c->config, sizeof c->config, "%s", o->config);
        const char *log = getenv(CV_ACTLOG_ENV);
        snprintf(c->actlog, sizeof c->actlog, "%s", log ? log : "");
    }
    else {
        snprintf(c->config, sizeof c->config, "%s/cluster.yml", c->dir);
        if (o->generated) rc = write_generated(c, err, errlen);
        else {
            char demo[PATH_MAX];
            const char *root = getenv("CVERSE_SOURCE_ROOT");
            snprintf(demo, sizeof demo, "%s/cluster/demo-cluster.yml", root ? root : ".");
            rc = copy_file(o->config ? o->config : demo, c->config, err, errlen);
        }
        unlink(c->actlog); /* a reused run dir: the log starts empty */
        setenv("CVERSE_ACTIVATION_LOG", c->actlog, 1);
    }
    if (rc < 0) return rc;
    char cerr[512];
    if (cv_config_load(c->config, &c->cfg, cerr, sizeof cerr) < 0)
        return snprintf(err, errlen, "cverse-stress: %s", cerr), CV_ECONFIG;
    if (c->cfg->n_nodes + c->cfg->n_gates > CV_STRESS_MAX_PROCS || !c->cfg->n_gates) {
        snprintf(err, errlen, "cverse-stress: %s: needs 1..%d nodes and gates, and a gate", c->config, CV_STRESS_MAX_PROCS);
        cv_config_free(c->cfg);
        c->cfg = NULL;
        return CV_ECONFIG;
    }
    if (o->churn && o->churn_mode == CV_CHURN_PARTITION && (rc = cv_stress_ns_setup(c, err, errlen)) < 0) return rc;
    int have = 0; /* after the namespaces' setup, which may give the processes a secret of its own */
    if ((rc = cv_secret_setup(c->cfg->secret_file, &c->secret, &have, cerr, sizeof cerr)) < 0)
        return snprintf(err, errlen, "cverse-stress: %s", cerr), rc;
    c->sign = have ? &c->secret : NULL;
    fill_procs(c);
    find_bin(c->node_bin, sizeof c->node_bin, o->node_bin, "CVERSE_NODE_BIN", argv0, "node", "cverse-node");
    find_bin(c->gate_bin, sizeof c->gate_bin, o->gate_bin, "CVERSE_GATE_BIN", argv0, "gate", "cverse-gate");
    return o->attach && o->pids ? adopt(c, err, errlen) : 0;
}

static void exited(struct cv_stress_proc *p, bool unexpected)
{
    if (unexpected) p->unexpected_exits++;
    p->pid = 0;
    p->stopped = false;
    p->expect_exit = false;
    p->adopted = false;
    if (p->c->on_exit) p->c->on_exit(p->c, p);
}

static void on_proc_exit(uv_process_t *h, int64_t status, int sig)
{
    struct cv_stress_proc *p = h->data;
    if (sig) snprintf(p->last_exit, sizeof p->last_exit, "signal %d", sig);
    else snprintf(p->last_exit, sizeof p->last_exit, "exit %lld", (long long)status);
    bool asked_kill = p->expect_exit && sig == SIGKILL;
    uv_close((uv_handle_t *)h, NULL);
    exited(p, !p->expect_exit || (!asked_kill && (sig || status != 0)));
}

/* An adopted process is not our child: its exit shows as its pid gone (or a zombie of its parent). */
static void on_watch(uv_timer_t *t)
{
    struct cv_stress_cluster *c = t->data;
    for (unsigned i = 0; i < c->n_nodes; i++) {
        struct cv_stress_proc *p = &c->p[i];
        if (!p->adopted || !p->pid || cv_stress_pid_alive(p->pid)) continue;
        snprintf(p->last_exit, sizeof p->last_exit, "exited (status unknown: not our child)");
        exited(p, !p->expect_exit);
    }
}

/* Takes over the node processes the pids file names: each must be a node of the config, running. */
static int adopt(struct cv_stress_cluster *c, char *err, size_t errlen)
{
    struct cv_stress_pid pids[CV_STRESS_MAX_PIDS];
    unsigned n;
    char perr[256];
    if (cv_stress_pids_load(c->o->pids, pids, CV_STRESS_MAX_PIDS, &n, perr, sizeof perr) < 0)
        return snprintf(err, errlen, "cverse-stress: --pids %s: %s", c->o->pids, perr), CV_EINVAL;
    for (unsigned k = 0; k < n; k++) {
        int i = strcmp(pids[k].role, "node") ? -1 : cv_config_node_index(c->cfg, pids[k].id);
        if (i < 0) continue; /* gates, the inspector: not churned */
        struct cv_stress_proc *p = &c->p[i];
        if (!cv_stress_pid_alive(pids[k].pid) || cv_stress_cmd_capture(pids[k].pid, &p->cmd, perr, sizeof perr) < 0)
            return snprintf(err, errlen, "cverse-stress: --pids %s: node %s (pid %ld) is not running or not readable",
                            c->o->pids, p->id, (long)pids[k].pid), CV_EINVAL;
        p->pid = p->listed_pid = pids[k].pid;
        p->adopted = true;
    }
    for (unsigned i = 0; i < c->n_nodes; i++)
        if (!c->p[i].pid)
            return snprintf(err, errlen, "cverse-stress: --pids %s: no \"PID node %s\" line", c->o->pids, c->p[i].id),
                   CV_EINVAL;
    const char *log = cv_stress_cmd_getenv(&c->p[0].cmd, CV_ACTLOG_ENV); /* the nodes' own activation log */
    if (log) snprintf(c->actlog, sizeof c->actlog, "%s", log);
    uv_timer_init(c->loop, &c->watch);
    c->watch.data = c;
    c->watching = true;
    uv_timer_start(&c->watch, on_watch, 100, 100);
    return 0;
}

/* uv_spawn inside process i's namespace, if any (the child inherits the calling thread's). */
static int spawn(struct cv_stress_cluster *c, unsigned i, const uv_process_options_t *po)
{
    struct cv_stress_proc *p = &c->p[i];
    int prev = c->net ? cv_netns_enter(c->net, (int)i) : -1;
    if (c->net && prev < 0) return CV_EIO;
    memset(&p->h, 0, sizeof p->h);
    p->h.data = p;
    int rc = uv_spawn(c->loop, &p->h, po);
    if (prev >= 0) cv_netns_leave(prev);
    if (rc < 0) {
        uv_close((uv_handle_t *)&p->h, NULL);
        return CV_EIO;
    }
    p->pid = p->h.pid;
    return 0;
}

/* An attached node: its recorded command line, environment and cwd, output appended to its log, in a
 * session of its own (it outlives cverse-stress, like the cluster it belongs to). */
static int start_again(struct cv_stress_cluster *c, unsigned i)
{
    struct cv_stress_proc *p = &c->p[i];
    int fd = open(p->cmd.log[0] ? p->cmd.log : "/dev/null", O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd < 0) return CV_EIO;
    uv_stdio_container_t io[3] = {{.flags = UV_IGNORE}, {.flags = UV_INHERIT_FD, .data.fd = fd},
                                  {.flags = UV_INHERIT_FD, .data.fd = fd}};
    uv_process_options_t po = {.exit_cb = on_proc_exit, .file = p->cmd.argv[0], .args = p->cmd.argv,
                               .env = p->cmd.env, .cwd = p->cmd.cwd, .flags = UV_PROCESS_DETACHED,
                               .stdio_count = 3, .stdio = io};
    int rc = spawn(c, i, &po);
    close(fd);
    if (rc < 0) return rc;
    if (cv_stress_pids_replace(c->o->pids, p->listed_pid, p->pid) == 0) p->listed_pid = p->pid;
    else fprintf(stderr, "cverse-stress: could not write %s's new pid %ld into %s\n", p->id, (long)p->pid, c->o->pids);
    return 0;
}

int cv_stress_proc_start(struct cv_stress_cluster *c, unsigned i)
{
    struct cv_stress_proc *p = &c->p[i];
    if (p->pid) return CV_EINVAL;
    if (p->cmd.argv) return start_again(c, i);
    char log[400], data[400];
    snprintf(log, sizeof log, "%s/%s.log", c->dir, p->id);
    snprintf(data, sizeof data, "%s/data/%s", c->dir, p->id);
    if (!p->gate && cv_mkdir_p(data) < 0) return CV_EIO;
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return CV_EIO;
    char *node_argv[] = {c->node_bin, "--config", c->config, "--node-id", p->id, "--data-dir", data, NULL};
    char *gate_argv[] = {c->gate_bin, "--config", c->config, "--gate-id", p->id, NULL};
    uv_stdio_container_t io[3] = {{.flags = UV_IGNORE}, {.flags = UV_INHERIT_FD, .data.fd = fd},
                                  {.flags = UV_INHERIT_FD, .data.fd = fd}};
    uv_process_options_t po = {.exit_cb = on_proc_exit, .file = p->gate ? c->gate_bin : c->node_bin,
                               .args = p->gate ? gate_argv : node_argv, .stdio_count = 3, .stdio = io};
    int rc = spawn(c, i, &po);
    close(fd);
    return rc;
}

int cv_stress_proc_signal(struct cv_stress_cluster *c, unsigned i, int sig)
{
    struct cv_stress_proc *p = &c->p[i];
    if (!p->pid) return CV_EINVAL;
    if (sig == SIGTERM || sig == SIGKILL) p->expect_exit = true;
    if (sig == SIGKILL && c->actlog[0] && cv_actcheck_killed(c->actlog, p->pid) < 0) fprintf(stderr, "cverse-stress: cannot append to %s\n", c->actlog);
    if (kill(p->pid, sig) < 0) return CV_EIO;
    if (sig == SIGSTOP) p->stopped = true;
    if (sig == SIGCONT) p->stopped = false;
    if (sig == SIGKILL && p->stopped) p->stopped = false;
    return 0;
}

int cv_stress_proc_cut(struct cv_stress_cluster *c, unsigned i, bool cut)
{
    if (!c->net) return CV_EINVAL;
    int rc = cv_netns_link(c->net, (int)i, !cut);
    if (rc == 0) c->p[i].cut = cut;
    return rc;
}

bool cv_stress_proc_up(const struct cv_stress_cluster *c, unsigned i)
{
    return (c->attached && !c->o->pids) || (c->p[i].pid && !c->p[i].stopped);
}

unsigned cv_stress_cluster_running(const struct cv_stress_cluster *c)
{
    unsigned n = 0;
    for (unsigned i = 0; i < c->n_nodes + c->n_gates; i++) n += c->p[i].pid != 0;
    return n;
}

void cv_stress_cluster_stop(struct cv_stress_cluster *c, int sig)
{
    for (unsigned i = 0; i < c->n_nodes + c->n_gates; i++) {
        if (c->p[i].cut) cv_stress_proc_cut(c, i, false); /* a cut-off node could not drain */
        if (!c->p[i].pid) continue;
        if (c->p[i].stopped) cv_stress_proc_signal(c, i, SIGCONT);
        cv_stress_proc_signal(c, i, sig);
    }
}

void cv_stress_cluster_close(struct cv_stress_cluster *c)
{
    if (c->watching) uv_close((uv_handle_t *)&c->watch, NULL);
    c->watching = false;
    for (unsigned i = 0; c->attached && i < c->n_nodes; i++)
        if (c->p[i].pid && !c->p[i].adopted) uv_close((uv_handle_t *)&c->p[i].h, NULL); /* restarted: keeps running */
}

void cv_stress_cluster_free(struct cv_stress_cluster *c, bool keep)
{
    cv_config_free(c->cfg);
    c->cfg = NULL;
    for (unsigned i = 0; i < c->n_nodes; i++) cv_stress_cmd_free(&c->p[i].cmd);
    if (c->net) cv_netns_destroy(c->net);
    free(c->net);
    c->net = NULL;
    if (c->attached && !keep) rmdir(c->dir); /* nothing of an attached run lives there */
    if (keep || c->attached) return;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", c->dir);
    if (system(cmd) != 0) fprintf(stderr, "cverse-stress: could not remove %s\n", c->dir);
}
