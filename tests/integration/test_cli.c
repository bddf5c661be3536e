/* Integration: the command lines of cverse-node and cverse, run as real processes.
 * Each case spawns the binary with stdout and stderr on pipes, reads both to EOF and reaps the child,
 * all under one deadline (poll on the pipes and a pidfd; no sleeps), then checks the exit code and the
 * exact output: bad arguments and bad configs exit 2 with one line on stderr that names the file, the
 * line and the key ("FILE:LINE: key: ..."); --help, --version and --list-nodes exit 0. Configs are
 * written into a fresh mkdtemp dir per test. Under ASan the children inherit ASAN_OPTIONS, so a leak or
 * error in a binary's own exit path shows up as a wrong exit code or extra stderr. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lsan_check.h"
#include "tmpdir.h"

extern char **environ;

#define RUN_DEADLINE_MS 20000 /* generous for ASan; a hang fails the test, it never waits longer */
#define OUT_MAX 16384

struct run {
    int code; /* exit code; 128 + signal if killed by one */
    char out[OUT_MAX], err[OUT_MAX];
};

static char dir[64];
static struct run R;

/* ---- fixture ------------------------------------------------------------------------------------- */

static void setup(void)
{
    strcpy(dir, "/tmp/cv-cli-XXXXXX");
    cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
    /* No gate answers here (port 1 on loopback is closed): the CLI never reaches a cluster a developer
     * happens to run on the default port. Gate commands against real gates: test_admin. */
    setenv("CVERSE_GATE", "127.0.0.1:1", 1);
}

static void teardown(void)
{
    cv_tmpdir_remove(dir);
    cv_lsan_check();
}

TestSuite(node_cli, .init = setup, .fini = teardown);
TestSuite(cverse_cli, .init = setup, .fini = teardown);

/* ---- running a binary ---------------------------------------------------------------------------- */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *env_or_fail(const char *name)
{
    const char *v = getenv(name);
    cr_assert(v && *v, "%s is not set (run through meson test)", name);
    return v;
}

/* Appends what is readable on fd to buf (keeping it NUL-terminated, dropping what does not fit so the
 * child never blocks on a full pipe). Returns 0 at EOF, 1 otherwise. */
static int drain(int fd, char *buf, size_t *len)
{
    char tmp[4096];
    ssize_t n = read(fd, tmp, sizeof tmp);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return 1;
    cr_assert_geq(n, 0, "read: %s", strerror(errno));
    if (n == 0) return 0;
    size_t keep = (size_t)n < OUT_MAX - 1 - *len ? (size_t)n : OUT_MAX - 1 - *len;
    memcpy(buf + *len, tmp, keep);
    *len += keep;
    buf[*len] = '\0';
    return 1;
}

static pid_t spawn(char *const argv[], int out[2], int err[2])
{
    posix_spawn_file_actions_t fa;
    pid_t pid;
    cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
    cr_assert_eq(pipe2(err, O_CLOEXEC), 0);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1); /* dup2 clears O_CLOEXEC on the copy */
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    int rv = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(rv, 0, "posix_spawn %s: %s", argv[0], strerror(rv));
    close(out[1]);
    close(err[1]);
    return pid;
}

/* Runs argv (argv[0] a path, NULL-terminated) to completion into R; kills it at the deadline. */
static void run_argv(char *const argv[])
{
    int out[2], err[2], status;
    size_t out_len = 0, err_len = 0;
    memset(&R, 0, sizeof R);
    pid_t pid = spawn(argv, out, err);
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0); /* readable once the child has exited */
    struct pollfd p[3] = {{.fd = out[0], .events = POLLIN}, {.fd = err[0], .events = POLLIN},
                          {.fd = pidfd, .events = POLLIN}};
    int64_t deadline = mono_ms() + RUN_DEADLINE_MS;
    int open_pipes = 2, exited = pidfd < 0; /* no pidfd (old kernel): EOF on both pipes is enough */
    while ((open_pipes || !exited) && mono_ms() < deadline) {
        int64_t left = deadline - mono_ms();
        int n = poll(p, 3, left > 0 ? (int)left : 0);
        if (n < 0 && errno == EINTR) continue;
        cr_assert_geq(n, 0, "poll: %s", strerror(errno));
        for (int i = 0; i < 2; i++)
            if (p[i].fd >= 0 && p[i].revents && !drain(p[i].fd, i ? R.err : R.out, i ? &err_len : &out_len)) {
                p[i].fd = -1;
                open_pipes--;
            }
        if (p[2].fd >= 0 && p[2].revents) {
            exited = 1;
            p[2].fd = -1;
        }
    }
    int hung = open_pipes || !exited;
    if (hung) kill(pid, SIGKILL);
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    close(out[0]);
    close(err[0]);
    if (pidfd >= 0) close(pidfd);
    cr_assert(!hung, "%s did not finish within %d ms; stderr so far:\n%s", argv[0], RUN_DEADLINE_MS, R.err);
    R.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

#define MAX_ARGS 16

/* run(BIN_ENV, args..., NULL): the binary named by the environment variable, with the given args. */
static void run(const char *bin_env, ...)
{
    char *argv[MAX_ARGS + 2];
    int n = 0;
    va_list ap;
    argv[n++] = (char *)env_or_fail(bin_env);
    va_start(ap, bin_env);
    for (char *a; (a = va_arg(ap, char *)) != NULL && n <= MAX_ARGS;) argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    run_argv(argv);
}

#define NODE(...) run("CVERSE_NODE_BIN", __VA_ARGS__, (char *)NULL)
#define NODE0() run("CVERSE_NODE_BIN", (char *)NULL)
#define CLI(...) run("CVERSE_CLI_BIN", __VA_ARGS__, (char *)NULL)

/* ---- checks -------------------------------------------------------------------------------------- */

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static void expect_code(int want)
{
    cr_assert_eq(R.code, want, "exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", R.code, want, R.out,
                 R.err);
}

/* Exit 2, nothing on stdout, and stderr is exactly one line starting with prefix. */
static void expect_config_error(const char *prefix)
{
    expect_code(2);
    cr_assert_str_empty(R.out, "stdout should be empty, got:\n%s", R.out);
    cr_assert_eq(count_lines(R.err), 1, "want one line on stderr, got:\n%s", R.err);
    cr_assert_eq(strncmp(R.err, prefix, strlen(prefix)), 0, "stderr should start with\n  %s\ngot\n  %s", prefix,
                 R.err);
}

/* Exit 2, nothing on stdout; stderr: first line is `first` exactly, then only the --help hint. */
static void expect_usage_error(const char *first, const char *hint)
{
    char want[512];
    expect_code(2);
    cr_assert_str_empty(R.out, "stdout should be empty, got:\n%s", R.out);
    snprintf(want, sizeof want, "%s\n%s\n", first, hint);
    cr_assert_str_eq(R.err, want);
}

/* Writes text to <dir>/name; returns the path (static storage, one per call site is enough). */
static const char *write_config(const char *name, const char *text)
{
    static char path[4][128];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, sizeof path[0], "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f, "fopen %s: %s", p, strerror(errno));
    int put = fputs(text, f);
    cr_assert_eq(fclose(f), 0, "fclose %s: %s", p, strerror(errno));
    cr_assert_geq(put, 0, "fputs %s", p);
    return p;
}

static const char *prefixed(const char *fmt, const char *path)
{
    static char buf[512];
    snprintf(buf, sizeof buf, fmt, path);
    return buf;
}

/* ---- cverse-node: bad invocations ---------------------------------------------------------------- */

#define NODE_HINT "Try 'cverse-node --help'."

Test(node_cli, no_arguments)
{
    NODE0();
    expect_usage_error("cverse-node: missing --config FILE", NODE_HINT);
}

Test(node_cli, unknown_flag)
{
    NODE("--frobnicate");
    expect_usage_error("cverse-node: unknown option: --frobnicate", NODE_HINT);
}

Test(node_cli, option_without_value)
{
    NODE("--config");
    expect_usage_error("cverse-node: option needs a value: --config", NODE_HINT);
}

Test(node_cli, missing_node_id)
{
    NODE("--config", write_config("ok.yml", "version: 1\nnodes:\n  - {id: n1, grpc_addr: \"127.0.0.1:47001\","
                                            " http_addr: \"127.0.0.1:48001\"}\n"));
    expect_usage_error("cverse-node: missing --node-id ID", NODE_HINT);
}

Test(node_cli, config_file_missing)
{
    char path[128];
    snprintf(path, sizeof path, "%s/absent.yml", dir);
    NODE("--config", path, "--node-id", "node-1");
    expect_config_error(prefixed("cverse-node: %s: cannot read: ", path));
    cr_assert(strstr(R.err, "No such file"), "%s", R.err);
}

Test(node_cli, yaml_syntax_error)
{
    const char *f = write_config("syntax.yml", "version: 1\n"
                                               "cluster:\n"
                                               "  shards: 64\n"
                                               "   bad: indent\n" /* line 4 */
                                               "nodes: []\n");
    NODE("--config", f, "--node-id", "node-1");
    expect_config_error(prefixed("cverse-node: %s:4: yaml: ", f));
}

Test(node_cli, shards_not_a_number)
{
    const char *f = write_config("shards.yml", "version: 1\n"
                                               "cluster: {shards: abc}\n" /* line 2 */
                                               "nodes:\n"
                                               "  - id: node-1\n"
                                               "    grpc_addr: \"127.0.0.1:47001\"\n"
                                               "    http_addr: \"127.0.0.1:48001\"\n");
    NODE("--config", f, "--node-id", "node-1");
    expect_config_error(prefixed("cverse-node: %s:2: cluster.shards: ", f));
    cr_assert(strstr(R.err, "\"abc\""), "the bad value should be quoted back: %s", R.err);
}

Test(node_cli, unknown_key)
{
    const char *f = write_config("unknown.yml", "version: 1\n"
                                                "cluster: {shards: 64}\n"
                                                "nodes:\n"
                                                "  - id: node-1\n"
                                                "    grpc_addr: \"127.0.0.1:47001\"\n"
                                                "    colour: blue\n" /* line 6 */
                                                "    http_addr: \"127.0.0.1:48001\"\n");
    NODE("--config", f, "--node-id", "node-1");
    expect_config_error(prefixed("cverse-node: %s:6: nodes[0].colour: unknown key", f));
}

Test(node_cli, node_id_not_in_config)
{
    const char *f = write_config("two.yml", "version: 1\n"
                                            "nodes:\n"
                                            "  - {id: node-1, grpc_addr: \"127.0.0.1:47001\","
                                            " http_addr: \"127.0.0.1:48001\"}\n"
                                            "  - {id: node-2, grpc_addr: \"127.0.0.1:47002\","
                                            " http_addr: \"127.0.0.1:48002\"}\n");
    NODE("--config", f, "--node-id", "node-9");
    expect_config_error(prefixed("cverse-node: %s: ", f));
    cr_assert(strstr(R.err, "\"node-9\"") && strstr(R.err, "nodes[].id"), "should name id and key: %s", R.err);
}

/* ---- cverse-node: help, version, --list-nodes ---------------------------------------------------- */

Test(node_cli, help)
{
    NODE("--help");
    expect_code(0);
    cr_assert_str_empty(R.err);
    cr_assert_eq(strncmp(R.out, "Usage: cverse-node ", 19), 0, "%s", R.out);
    const char *opts[] = {"--config", "--node-id", "--list-nodes", "--help", "--version"};
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++)
        cr_assert(strstr(R.out, opts[i]), "help should mention %s:\n%s", opts[i], R.out);
}

Test(node_cli, version)
{
    char want[64];
    snprintf(want, sizeof want, "cverse-node %s\n", env_or_fail("CVERSE_VERSION"));
    NODE("--version");
    expect_code(0);
    cr_assert_str_empty(R.err);
    cr_assert_str_eq(R.out, want);
}

/* The ten nodes of the demo cluster, in file order: "node-N 0.0.0.0:4800N". */
static void expect_demo_node_list(void)
{
    char want[512] = "";
    for (int i = 1; i <= 10; i++) {
        size_t l = strlen(want);
        snprintf(want + l, sizeof want - l, "node-%d 0.0.0.0:%d\n", i, 48000 + i);
    }
    expect_code(0);
    cr_assert_eq(count_lines(R.out), 10, "%s", R.out);
    cr_assert_eq(strncmp(R.out, "node-1 0.0.0.0:48001\n", 21), 0, "%s", R.out);
    cr_assert_str_eq(R.out, want);
}

Test(node_cli, list_nodes_of_the_demo_config)
{
    char path[512];
    snprintf(path, sizeof path, "%s/cluster/demo-cluster.yml", env_or_fail("CVERSE_SOURCE_ROOT"));
    NODE("--config", path, "--list-nodes");
    expect_demo_node_list();
    cr_assert_str_empty(R.err);
}

Test(node_cli, goverse_original_demo_config_loads_unchanged)
{
    char path[512];
    struct stat st;
    snprintf(path, sizeof path, "%s/../shared/goverse/demo-cluster.yml", env_or_fail("CVERSE_SOURCE_ROOT"));
    if (stat(path, &st) != 0) cr_skip_test("Goverse's demo-cluster.yml is not in this checkout (%s)", path);
    NODE("--config", path, "--list-nodes");
    expect_demo_node_list();
}

/* ---- cverse shard-of ----------------------------------------------------------------------------- */

/* FNV-1a 32, written out here so the test does not trust src/core/hash.c. */
static uint32_t fnv1a32(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static void expect_stdout_number(unsigned want)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%u\n", want);
    expect_code(0);
    cr_assert_str_eq(R.out, buf);
    cr_assert_str_empty(R.err);
}

Test(cverse_cli, shard_of_default_shards)
{
    cr_assert_eq(fnv1a32("hello"), 0x4f9f2cabu);
    cr_assert_eq(fnv1a32("hello") % 8192, 3243u);
    CLI("shard-of", "hello"); /* no gate answers: 8192 assumed, and said */
    expect_code(0);
    cr_assert_str_eq(R.out, "3243\n");
    cr_assert(strstr(R.err, "no shard count from a gate at 127.0.0.1:1") && strstr(R.err, "assuming 8192 shards"),
              "%s", R.err);
}

Test(cverse_cli, shard_of_with_shards)
{
    CLI("shard-of", "--shards", "64", "hello");
    expect_stdout_number(fnv1a32("hello") % 64);
    CLI("shard-of", "--shards=1", "hello");
    expect_stdout_number(0);
}

Test(cverse_cli, shard_of_explicit_shard)
{
    CLI("shard-of", "shard#7/x");
    expect_stdout_number(7);
}

Test(cverse_cli, shard_of_node_pinned_notes_on_stderr)
{
    CLI("shard-of", "node-1/obj");
    expect_code(0);
    char want[32];
    snprintf(want, sizeof want, "%u\n", fnv1a32("node-1/obj") % 8192);
    cr_assert_str_eq(R.out, want);
    cr_assert(strstr(R.err, "pinned to node 'node-1'"), "%s", R.err);
}

/* Exit 2, nothing on stdout, stderr's first line starts with prefix and mentions `mentions`. */
static void expect_cli_usage_error(const char *prefix, const char *mentions)
{
    expect_code(2);
    cr_assert_str_empty(R.out, "stdout should be empty, got:\n%s", R.out);
    cr_assert_eq(strncmp(R.err, prefix, strlen(prefix)), 0, "stderr should start with '%s':\n%s", prefix,
                 R.err);
    const char *nl = strchr(R.err, '\n');
    cr_assert(nl && strstr(R.err, mentions) && strstr(R.err, mentions) < nl,
              "first line of stderr should mention '%s':\n%s", mentions, R.err);
}

Test(cverse_cli, shard_of_bad_input)
{
    CLI("shard-of", "--shards", "0", "hello");
    expect_cli_usage_error("cverse shard-of: --shards must be an integer", "'0'");
    CLI("shard-of", "--shards", "abc", "hello");
    expect_cli_usage_error("cverse shard-of: --shards must be an integer", "'abc'");
    CLI("shard-of", "--shards", "1048577", "hello");
    expect_cli_usage_error("cverse shard-of: --shards must be an integer", "'1048577'");
    CLI("shard-of", "--shards");
    expect_cli_usage_error("cverse shard-of: --shards needs a value", "--shards");
    CLI("shard-of");
    expect_cli_usage_error("cverse shard-of: missing OBJECT-ID", "OBJECT-ID");
    CLI("shard-of", "a", "b");
    expect_cli_usage_error("cverse shard-of: unexpected argument", "'b'");
    CLI("shard-of", "--shards", "64", "shard#64/x");
    expect_cli_usage_error("cverse shard-of: shard number in 'shard#64/x' is out of range", "64");
}

Test(cverse_cli, global_options_before_the_command)
{
    CLI("--shards", "64", "shard-of", "hello");
    expect_stdout_number(fnv1a32("hello") % 64);
    CLI("--gate", "127.0.0.1:2", "--timeout=500", "call", "SimpleCounter", "c-1", "Increment");
    expect_code(3);
    cr_assert(strstr(R.err, "cannot connect to the gate at 127.0.0.1:2"), "%s", R.err);
    CLI("--bogus", "status");
    expect_cli_usage_error("cverse status: unknown option", "'--bogus'");
    CLI("--gate", "127.0.0.1:2");
    expect_cli_usage_error("cverse: missing command", "command");
}

Test(cverse_cli, unknown_command_and_no_command)
{
    CLI("frobnicate");
    expect_cli_usage_error("cverse: unknown command", "'frobnicate'");
    run("CVERSE_CLI_BIN", (char *)NULL);
    expect_cli_usage_error("cverse: missing command", "command");
}

Test(cverse_cli, help_and_version)
{
    char want[64];
    CLI("--help");
    expect_code(0);
    cr_assert_str_empty(R.err);
    cr_assert_eq(strncmp(R.out, "Usage: cverse ", 14), 0, "%s", R.out);
    cr_assert(strstr(R.out, "shard-of"), "%s", R.out);
    snprintf(want, sizeof want, "cverse %s\n", env_or_fail("CVERSE_VERSION"));
    CLI("--version");
    expect_code(0);
    cr_assert_str_eq(R.out, want);
}

/* cverse drain: its usage errors (exit 2) and a node that does not answer (exit 3, saying where it
 * looked); the drain itself against real nodes is in test_drain. */
Test(cverse_cli, drain_usage_and_no_node)
{
    CLI("drain");
    expect_cli_usage_error("cverse drain: missing NODE", "NODE");
    CLI("drain", "--frob", "node-1");
    expect_cli_usage_error("cverse drain: unknown option", "'--frob'");
    CLI("drain", "node-1", "node-2");
    expect_cli_usage_error("cverse drain: unexpected argument", "'node-2'");
    CLI("drain", "--node-http", "nowhere", "node-1");
    expect_cli_usage_error("cverse drain: --node-http must be HOST:PORT", "'nowhere'");
    CLI("drain", "--node-http", "127.0.0.1:1", "--undo", "node-1");
    expect_code(3);
    cr_assert_str_eq(R.out, "");
    cr_assert(strstr(R.err, "cannot connect to the node at 127.0.0.1:1"), "%s", R.err);
    CLI("drain", "--help");
    expect_code(0);
    cr_assert(strstr(R.out, "--node-http HOST:PORT"), "%s", R.out);
}

/* cverse node-get: its usage errors (exit 2) and a node that does not answer (exit 3); reads against real
 * nodes, with and without the cluster secret, are in test_auth. */
Test(cverse_cli, node_get_usage_and_no_node)
{
    CLI("node-get");
    expect_cli_usage_error("cverse node-get: missing PATH", "PATH");
    CLI("node-get", "v1/cluster");
    expect_cli_usage_error("cverse node-get: PATH must start with '/'", "'v1/cluster'");
    CLI("node-get", "https://127.0.0.1:1/v1/cluster");
    expect_cli_usage_error("cverse node-get: nodes' HTTP API is plain http://", "https://");
    CLI("node-get", "--node", "127.0.0.1:1", "http://127.0.0.1:2/v1/cluster");
    expect_cli_usage_error("cverse node-get: the node is given twice", "--node");
    CLI("node-get", "--node", "nowhere", "/v1/cluster");
    expect_cli_usage_error("cverse node-get: --node must be HOST:PORT", "'nowhere'");
    CLI("node-get", "--timeout", "0", "/v1/cluster");
    expect_cli_usage_error("cverse node-get: --timeout must be a number", "'0'");
    CLI("node-get", "/v1/cluster", "/v1/shards");
    expect_cli_usage_error("cverse node-get: unexpected argument", "'/v1/shards'");
    CLI("node-get", "--frob", "/v1/cluster");
    expect_cli_usage_error("cverse node-get: unknown option", "'--frob'");
    CLI("node-get", "--node");
    expect_cli_usage_error("cverse node-get: --node needs a value", "--node");
    CLI("node-get", "--node-http=127.0.0.1:1", "/v1/cluster");
    expect_code(3);
    cr_assert_str_eq(R.out, "");
    cr_assert(strstr(R.err, "cannot connect to the node at 127.0.0.1:1"), "%s", R.err);
    CLI("node-get", "http://127.0.0.1:1/v1/events?after=0");
    expect_code(3);
    cr_assert(strstr(R.err, "cannot connect to the node at 127.0.0.1:1"), "the URL's node: %s", R.err);
    CLI("node-get", "--help");
    expect_code(0);
    cr_assert(strstr(R.out, "--node HOST:PORT") && strstr(R.out, "CVERSE_CLUSTER_SECRET_FILE"), "%s", R.out);
}
