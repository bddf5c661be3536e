/* cverse-stress (issue 10): the 60-second smoke the test suite runs (3 nodes, 2 gates, 64 shards, a
 * SIGKILL churn every 10 s: must pass), the churn of an attached cluster through a pids file (a harness
 * cluster; the killed nodes come back with the same command line and the file gets their new PIDs),
 * its exit codes for bad flags and a cluster that is never ready, and the checks it relies on driven
 * directly: the activation-log checker (util/actcheck.h), the history checks (exact counts,
 * linearizable counters) on hand-made histories, the pids file parser and the partition config rewrite.
 * (Partition churn itself needs root and takes a minute: docs/stress.md has its runs.)
 *
 * The tool runs as a child process (CVERSE_STRESS_BIN) with its output in files of a temp dir; the test
 * waits for its exit by polling with a deadline. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cverse/error.h"
#include "harness.h"
#include "stress/attach.h"
#include "stress/history.h"
#include "stress/ns.h"
#include "stress/report.h"
#include "tmpdir.h"
#include "util/actcheck.h"

static char dir[64];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/cverse-stress-test-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    if (!getenv("CVERSE_TEST_KEEP")) cv_tmpdir_remove(dir);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return strdup("");
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return strdup(buf);
}

/* Runs cverse-stress with args (NULL-terminated, after argv[0]); waits up to timeout_s; returns the exit
 * code and the output in *out / *err (malloc'ed). */
static int run(const char *const *args, int timeout_s, char **out, char **err)
{
    const char *bin = getenv("CVERSE_STRESS_BIN");
    cr_assert_not_null(bin, "CVERSE_STRESS_BIN not set (run through meson test)");
    const char *argv[64] = {bin};
    int n = 1;
    for (; args[n - 1]; n++) argv[n] = args[n - 1];
    argv[n] = NULL;
    char o[128], e[128];
    snprintf(o, sizeof o, "%s/out", dir);
    snprintf(e, sizeof e, "%s/err", dir);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        if (!freopen(o, "w", stdout) || !freopen(e, "w", stderr)) _exit(127);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    int st = 0;
    time_t deadline = time(NULL) + timeout_s;
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (time(NULL) > deadline) {
            kill(pid, SIGINT); /* ends the measured time; the tool still stops its cluster */
            cr_assert_eq(waitpid(pid, &st, 0), pid);
            cr_assert_fail("cverse-stress did not finish within %d s", timeout_s);
        }
        struct timespec ts = {0, 100 * 1000000L}; /* polling the child's exit, not synchronising */
        nanosleep(&ts, NULL);
    }
    *out = slurp(o);
    *err = slurp(e);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

TestSuite(stress, .init = setup, .fini = teardown, .timeout = 400);

Test(stress, smoke_60s_sigkill_churn_passes)
{
    char run_dir[128];
    snprintf(run_dir, sizeof run_dir, "%s/run", dir);
    const char *args[] = {"--nodes", "3", "--gates", "2", "--shards", "64", "--duration", "60", "--stats-interval", "10",
                          "--churn-enabled", "--churn-mode", "sigkill", "--churn-interval", "10", "--run-dir", run_dir,
                          NULL};
    char *out, *err;
    int rc = run(args, 240, &out, &err);
    cr_expect_eq(rc, 0, "cverse-stress exited %d:\n%s\n--- stderr:\n%s", rc, out, err);
    cr_expect(strstr(out, "verdict: PASS"), "no PASS verdict:\n%s", out);
    cr_expect(strstr(out, "churn events (sigkill)"), "no churn event in the report:\n%s", out);
    cr_expect(strstr(out, ", 0 overlapping"), "the activation checker did not run:\n%s", out);
    free(out);
    free(err);
}

Test(stress, bad_flags_exit_4_naming_the_flag)
{
    const char *cases[][3] = {{"--clients", "0", "--clients"}, {"--churn-mode", "sometimes", "--churn-mode"},
                              {"--duration", "soon", "--duration"}, {"--frobnicate", NULL, "--frobnicate"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *args[] = {cases[i][0], cases[i][1], NULL};
        char *out, *err;
        int rc = run(args, 20, &out, &err);
        cr_expect_eq(rc, 4, "%s %s: exit %d", cases[i][0], cases[i][1] ? cases[i][1] : "", rc);
        cr_expect(strstr(err, cases[i][2]), "the message does not name %s: %s", cases[i][2], err);
        free(out);
        free(err);
    }
    const char *combo[] = {"--pids", "/nonexistent", NULL};
    char *out, *err;
    cr_expect_eq(run(combo, 20, &out, &err), 4);
    cr_expect(strstr(err, "--pids"), "%s", err);
    free(out);
    free(err);
    const char *part[] = {"--attach", "--config", "/nonexistent", "--pids", "/nonexistent", "--churn-enabled",
                          "--churn-mode", "partition", NULL};
    cr_expect_eq(run(part, 20, &out, &err), 4);
    cr_expect(strstr(err, "--churn-mode partition"), "%s", err);
    free(out);
    free(err);
    char demo[512];
    snprintf(demo, sizeof demo, "%s/cluster/demo-cluster.yml", getenv("CVERSE_SOURCE_ROOT"));
    const char *nopids[] = {"--attach", "--config", demo, "--pids", "/nonexistent", NULL};
    cr_expect_eq(run(nopids, 20, &out, &err), 4);
    cr_expect(strstr(err, "--pids /nonexistent"), "a pids file that cannot be read: %s", err);
    free(out);
    free(err);
}

Test(stress, a_cluster_never_ready_exits_3)
{
    char run_dir[128];
    snprintf(run_dir, sizeof run_dir, "%s/run", dir);
    /* /bin/true as the node: every node exits at once, /ready never answers */
    const char *args[] = {"--nodes", "1", "--gates", "1", "--shards", "4", "--node-bin", "/bin/true",
                          "--ready-timeout", "2", "--run-dir", run_dir, NULL};
    char *out, *err;
    int rc = run(args, 60, &out, &err);
    cr_expect_eq(rc, 3, "exit %d:\n%s", rc, err);
    cr_expect(strstr(err, "not ready"), "%s", err);
    free(out);
    free(err);
}

/* ---- the activation-log checker */

static void write_log(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

Test(stress, actcheck_finds_overlaps_and_accepts_handoffs)
{
    char path[128], rep[512];
    size_t acts;
    snprintf(path, sizeof path, "%s/act.log", dir);
    /* a handoff (D before the next A) and a killed process (K ends its activations) */
    write_log(path, "100 A node-1 11 obj-1\n200 D node-1 11 obj-1\n210 A node-2 22 obj-1\n"
                    "300 A node-2 22 obj-2\n400 K - 22 -\n450 A node-3 33 obj-2\n");
    cr_expect_eq(cv_actcheck_file(path, rep, sizeof rep, &acts), 0, "%s", rep);
    cr_expect_eq(acts, 4);
    /* obj-1 active on node-2 while node-1 still holds it */
    write_log(path, "100 A node-1 11 obj-1\n150 A node-2 22 obj-1\n200 D node-1 11 obj-1\n");
    cr_expect_eq(cv_actcheck_file(path, rep, sizeof rep, &acts), 1);
    cr_expect(strstr(rep, "obj-1: node-1 (pid 11)"), "%s", rep);
    cr_expect_eq(cv_actcheck_killed(path, 11), 0);
    char *text = slurp(path);
    cr_expect(strstr(text, " K - 11 -\n"), "%s", text);
    free(text);
    /* a log with a kill and no activation at all (a node killed before it activated anything): 0 of 0,
     * and nothing sorted (UBSan once stopped a suite's teardown on qsort of an empty list) */
    write_log(path, "400 K - 22 -\n");
    cr_expect_eq(cv_actcheck_file(path, rep, sizeof rep, &acts), 0);
    cr_expect_eq(acts, 0);
}

/* ---- the history checks */

static void op(struct cv_stress_history *h, uint32_t obj, uint32_t client, uint8_t kind, int64_t value, uint64_t s,
               uint64_t e)
{
    struct cv_stress_op o = {.obj = obj, .client = client, .kind = kind, .ok = true, .attempts = 1, .value = value,
                             .start_ns = s, .end_ns = e};
    cr_assert_eq(cv_stress_history_add(h, &o), 0);
}

static size_t check(struct cv_stress_history *h, int64_t final, bool strict, char **report, uint64_t *extra)
{
    struct cv_buf out = {0}, findings = {0};
    int64_t finals[1] = {final};
    size_t fails = cv_stress_check(h, finals, false, strict, 10, &out, &findings, extra);
    *report = out.p ? out.p : strdup("");
    free(findings.p);
    return fails;
}

Test(stress, history_accepts_a_linearizable_run)
{
    struct cv_stress_history h = {.n_objects = 1};
    op(&h, 0, 0, CV_OP_INC, 1, 10, 20);
    op(&h, 0, 1, CV_OP_INC, 2, 15, 30); /* concurrent with the first */
    op(&h, 0, 2, CV_OP_GET, 1, 18, 25); /* may see either */
    op(&h, 0, 0, CV_OP_GET, 2, 31, 40);
    char *rep;
    uint64_t extra;
    cr_expect_eq(check(&h, 2, true, &rep, &extra), 0, "%s", rep);
    cr_expect_eq(extra, 0);
    free(rep);
    cv_stress_history_free(&h);
}

Test(stress, history_finds_lost_stale_duplicate_and_backwards)
{
    struct cv_stress_history h = {.n_objects = 1};
    op(&h, 0, 0, CV_OP_INC, 1, 10, 20);
    op(&h, 0, 1, CV_OP_INC, 1, 30, 40); /* the same value twice, and below the one before it */
    op(&h, 0, 2, CV_OP_GET, 2, 50, 60);
    op(&h, 0, 2, CV_OP_GET, 1, 70, 80); /* the client's own read went backwards */
    char *rep;
    uint64_t extra;
    size_t fails = check(&h, 1, false, &rep, &extra); /* final 1 < 2 acknowledged: lost */
    cr_expect_geq(fails, 4, "%zu: %s", fails, rep);
    cr_expect(strstr(rep, "two Increments returned 1"), "%s", rep);
    cr_expect(strstr(rep, "went backwards"), "%s", rep);
    cr_expect(strstr(rep, "LOST increments"), "%s", rep);
    free(rep);
    cv_stress_history_free(&h);
}

Test(stress, history_double_applied_is_a_finding_or_a_failure_when_strict)
{
    struct cv_stress_history h = {.n_objects = 1};
    op(&h, 0, 0, CV_OP_INC, 2, 10, 20); /* one Increment, value 2: applied twice inside the cluster */
    op(&h, 0, 1, CV_OP_GET, 2, 30, 40);
    char *rep;
    uint64_t extra;
    cr_expect_eq(check(&h, 2, false, &rep, &extra), 0, "%s", rep);
    cr_expect_eq(extra, 1);
    free(rep);
    cr_expect_geq(check(&h, 2, true, &rep, &extra), 1);
    cr_expect(strstr(rep, "final value 2 != 1 acknowledged"), "%s", rep);
    free(rep);
    cv_stress_history_free(&h);
}

/* ---- the availability rules of the verdict (exit 2), on hand-made runs */

static int verdict(enum cv_stress_churn_mode mode, bool churn, const char *code, bool retryable, uint64_t err_t)
{
    static struct cv_stress_opts o;
    static struct cv_config cfg;
    static struct cv_stress_cluster c;
    static struct cv_stress_load l;
    static struct cv_stress_churn ch;
    static struct cv_stress_endstate es;
    memset(&o, 0, sizeof o);
    memset(&c, 0, sizeof c);
    memset(&l, 0, sizeof l);
    memset(&ch, 0, sizeof ch);
    memset(&es, 0, sizeof es);
    o.churn = churn;
    o.churn_mode = mode;
    o.churn_downtime_ms = 2000;
    cfg.lease_ttl_ms = 1500;
    c.cfg = &cfg;
    es.ok = true;
    const uint64_t s = 1000000000ull; /* the run: [1 s, 100 s]; a churn event at 10 s, back at 13 s */
    ch.n_ev = 1;
    ch.ev[0] = (struct cv_stress_event){.t_ns = 10 * s, .ready_ns = 13 * s, .node = "node-1", .mode = "x"};
    struct cv_stress_err e = {.t_ns = err_t, .retryable = retryable};
    snprintf(e.code, sizeof e.code, "%s", code);
    l.errs = &e;
    l.n_errs = code ? 1 : 0;
    FILE *devnull = fopen("/dev/null", "w");
    cr_assert_not_null(devnull);
    struct cv_stress_report_in in = {.o = &o, .c = &c, .l = &l, .ch = &ch, .es = &es, .run_start = s, .run_end = 100 * s};
    int rc = cv_stress_report(devnull, &in);
    fclose(devnull);
    return rc;
}

Test(stress, verdict_applies_the_availability_rules)
{
    const uint64_t s = 1000000000ull;
    cr_expect_eq(verdict(CV_CHURN_SIGKILL, true, NULL, false, 0), 0, "no error: pass");
    cr_expect_eq(verdict(CV_CHURN_SIGKILL, true, "UNAVAILABLE", true, 12 * s), 0, "retryable, inside the window");
    cr_expect_eq(verdict(CV_CHURN_SIGKILL, true, "UNAVAILABLE", true, 50 * s), 2, "outside every window");
    cr_expect_eq(verdict(CV_CHURN_SIGKILL, true, "NOT_FOUND", false, 12 * s), 2, "not retryable");
    cr_expect_eq(verdict(CV_CHURN_SIGTERM, true, "UNAVAILABLE", true, 12 * s), 2, "graceful churn: none at all");
    cr_expect_eq(verdict(CV_CHURN_SIGKILL, false, "UNAVAILABLE", true, 12 * s), 2, "no churn: none at all");
    cr_expect_eq(verdict(CV_CHURN_SIGKILL, true, "UNAVAILABLE", true, s / 2), 0, "before the measured time (creates)");
    cr_expect_eq(verdict(CV_CHURN_PARTITION, true, "UNAVAILABLE", true, 12 * s), 0, "partition: inside the window");
    cr_expect_eq(verdict(CV_CHURN_PARTITION, true, "UNAVAILABLE", true, 50 * s), 2, "partition: outside every window");
}

/* ---- partition: the config rewrite; attached clusters: the pids file */

Test(stress, partition_config_puts_each_process_on_its_host)
{
    const char *text = "version: 1\ncluster:\n  shards: 8\n  etcd:\n    endpoints:\n      - \"127.0.0.1:2379\"\n"
                       "nodes:\n  - id: \"node-1\"\n    grpc_addr: \"0.0.0.0:47001\"\n    advertise_addr: localhost:47001\n"
                       "    http_addr: \"0.0.0.0:48001\"\n  - http_addr: \"0.0.0.0:48002\"\n    id: node-2\n"
                       "gates:\n  - id: \"gate-1\"\n    http_addr: \"0.0.0.0:48101\"\n"
                       "inspector:\n  http_addr: \"0.0.0.0:48200\"\n";
    const char *ips[] = {"10.213.9.1", "10.213.9.2", "10.213.9.3", "10.213.9.4"};
    char *out = cv_stress_ns_config(text, ips, 2, 1);
    cr_assert_not_null(out);
    cr_expect(strstr(out, "    grpc_addr: \"10.213.9.1:47001\"\n    advertise_addr: \"10.213.9.1:47001\"\n"), "%s", out);
    cr_expect(strstr(out, "  - http_addr: \"10.213.9.2:48002\"\n    id: node-2\n"), "%s", out);
    cr_expect(strstr(out, "    http_addr: \"10.213.9.3:48101\"\n"), "%s", out);
    cr_expect(strstr(out, "      - \"127.0.0.1:2379\"\n"), "other sections are kept: %s", out);
    cr_expect(strstr(out, "  http_addr: \"0.0.0.0:48200\"\n"), "the inspector is kept: %s", out);
    free(out);
    cr_expect_null(cv_stress_ns_config(text, ips, 3, 1), "a config with 2 nodes, not 3");
}

Test(stress, pids_file_parses_run_cluster_lines_and_replaces_a_pid)
{
    struct cv_stress_pid p[4];
    unsigned n;
    char err[128];
    cr_assert_eq(cv_stress_pids_parse("12 node node-1\n# c\n\n13 gate gate-1\n14 inspector inspector", p, 4, &n,
                                      err, sizeof err), 0, "%s", err);
    cr_expect_eq(n, 3);
    cr_expect_eq(p[0].pid, 12);
    cr_expect_str_eq(p[0].role, "node");
    cr_expect_str_eq(p[1].id, "gate-1");
    cr_expect_str_eq(p[2].role, "inspector");
    cr_expect_eq(cv_stress_pids_parse("12 node node-1\nnode-2 13\n", p, 4, &n, err, sizeof err), CV_EINVAL);
    cr_expect(strstr(err, "line 2"), "%s", err);
    char path[128];
    snprintf(path, sizeof path, "%s/pids", dir);
    write_log(path, "12 node node-1\n120 node node-2\n13 gate gate-1\n");
    cr_expect_eq(cv_stress_pids_replace(path, 12, 4242), 0);
    char *text = slurp(path);
    cr_expect_str_eq(text, "4242 node node-1\n120 node node-2\n13 gate gate-1\n");
    free(text);
    cr_expect_eq(cv_stress_pids_replace(path, 99, 1), CV_ENOTFOUND);
}

/* ---- churn of an attached cluster */

static struct h_cluster C;

static bool attached_ready(void *arg)
{
    (void)arg;
    long st;
    free(h_get_port(h_gate_http_port(&C, 0), "/ready", &st));
    return st == 200 && h_all_ready(&C);
}

/* The pids the file lists for nodes, by node index. */
static void listed_pids(const char *path, pid_t *out)
{
    struct cv_stress_pid p[16];
    unsigned n;
    char err[128];
    cr_assert_eq(cv_stress_pids_load(path, p, 16, &n, err, sizeof err), 0, "%s", err);
    for (unsigned k = 0; k < n; k++)
        if (!strcmp(p[k].role, "node")) out[h_index_of(&C, p[k].id)] = p[k].pid;
}

static bool gone(void *arg) { return !cv_stress_pid_alive(*(pid_t *)arg); }

Test(stress, attached_cluster_churn_restarts_killed_nodes_as_they_ran)
{
    h_cluster_init_ex(&C, 3, 3, 1000, &(struct h_opts){.gates = 1});
    for (int i = 0; i < 3; i++) h_node_start(&C, i);
    h_gate_start(&C, 0);
    cr_assert(h_poll(30000, attached_ready, NULL), "the harness cluster was not ready");
    char pids[128];
    snprintf(pids, sizeof pids, "%s/pids", dir);
    FILE *f = fopen(pids, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < 3; i++) fprintf(f, "%ld node %s\n", (long)C.pid[i], C.id[i]);
    fprintf(f, "%ld gate gate-1\n", (long)C.gate_pid[0]);
    fclose(f);
    struct cv_stress_cmd before[3];
    char err[256];
    for (int i = 0; i < 3; i++) cr_assert_eq(cv_stress_cmd_capture(C.pid[i], &before[i], err, sizeof err), 0, "%s", err);
    const char *args[] = {"--attach", "--config", C.config, "--pids", pids, "--duration", "24", "--stats-interval", "6",
                          "--churn-enabled", "--churn-mode", "sigkill", "--churn-interval", "6", "--churn-downtime", "1",
                          "--objects", "20", NULL};
    char *out, *errs;
    int rc = run(args, 120, &out, &errs);
    cr_expect_eq(rc, 0, "cverse-stress exited %d:\n%s\n--- stderr:\n%s", rc, out, errs);
    cr_expect(strstr(out, "verdict: PASS"), "no PASS verdict:\n%s", out);
    cr_expect(strstr(out, "churn events (sigkill)"), "no churn event in the report:\n%s", out);
    cr_expect(strstr(out, ", 0 overlapping"), "the activation log (the nodes' own) was not checked:\n%s", out);
    pid_t now[3] = {0, 0, 0};
    listed_pids(pids, now);
    int restarted = 0;
    for (int i = 0; i < 3; i++) {
        cr_expect(cv_stress_pid_alive(now[i]), "%s (pid %ld in the file) is not running", C.id[i], (long)now[i]);
        if (now[i] == C.pid[i]) continue;
        restarted++;
        struct cv_stress_cmd after;
        cr_assert_eq(cv_stress_cmd_capture(now[i], &after, err, sizeof err), 0, "%s", err);
        for (int a = 0; before[i].argv[a] || after.argv[a]; a++)
            cr_expect(before[i].argv[a] && after.argv[a] && !strcmp(before[i].argv[a], after.argv[a]),
                      "%s's argument %d differs after the restart", C.id[i], a);
        cr_expect_str_eq(after.cwd, before[i].cwd);
        cr_expect_str_eq(after.log, before[i].log);
        cr_expect_str_eq(cv_stress_cmd_getenv(&after, "CVERSE_ACTIVATION_LOG"), C.actlog);
        cv_stress_cmd_free(&after);
        kill(now[i], SIGTERM); /* started by cverse-stress, not by the harness: stopped here */
        cr_expect(h_poll(20000, gone, &now[i]), "restarted %s did not stop", C.id[i]);
    }
    cr_expect_geq(restarted, 1, "no node was killed and started again:\n%s", out);
    for (int i = 0; i < 3; i++) cv_stress_cmd_free(&before[i]);
    free(out);
    free(errs);
    h_cluster_destroy(&C);
}
