/* cverse-stress (issue 10): the 60-second smoke the test suite runs (3 nodes, 2 gates, 64 shards, a
 * SIGKILL churn every 10 s: must pass), its exit codes for bad flags and a cluster that is never ready,
 * and the checks it relies on driven directly: the activation-log checker (util/actcheck.h) and the
 * history checks (exact counts, linearizable counters) on hand-made histories.
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

#include "stress/history.h"
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
}
