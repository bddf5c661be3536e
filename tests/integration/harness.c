/* Integration-test harness: see harness.h. Child processes are stopped by PID only. */
#include "harness.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tmpdir.h"
#include "util/actcheck.h"

static unsigned long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long)ts.tv_sec * 1000ul + (unsigned long)ts.tv_nsec / 1000000ul;
}

static int http_port(const struct h_cluster *c, int i) { return c->base + 100 + i; }

void h_cluster_init(struct h_cluster *c, int n, int voters, unsigned lease_ttl_ms)
{
    struct h_opts o = {0};
    h_cluster_init_ex(c, n, voters, lease_ttl_ms, &o);
}

int h_gate_grpc_port(const struct h_cluster *c, int g) { return c->base + 10 + g; }
int h_gate_http_port(const struct h_cluster *c, int g) { return c->base + 110 + g; }

static const char demo_autoload[] =
    "  auto_load_objects:\n"
    "    - type: \"GlobalMonitor\"\n      id: \"GlobalMonitor\"\n"
    "    - type: \"ShardMonitor\"\n      id: \"ShardMonitor\"\n      per_shard: true\n"
    "    - type: \"NodeMonitor\"\n      id: \"NodeMonitor\"\n      per_node: true\n";

/* True when nothing listens on port: checked by binding with SO_REUSEADDR as the nodes do, so ports
 * left in TIME_WAIT by an earlier suite count as free. */
static bool port_free(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return true;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

/* Every port a cluster at base uses: grpc base+i, http base+100+i, raft base+2000+i, gates base+10+g and
 * base+110+g, and the inspector's base+115.. of test_inspector. */
static bool ports_free(int base, int n, int gates)
{
    for (int i = 0; i < n; i++)
        if (!port_free(base + i) || !port_free(base + 100 + i) || !port_free(base + 2000 + i)) return false;
    for (int g = 0; g < gates; g++)
        if (!port_free(base + 10 + g) || !port_free(base + 110 + g)) return false;
    for (int k = 0; k < 4; k++)
        if (!port_free(base + 115 + k)) return false;
    return true;
}

/* <dir>/secret: 32 random bytes as hex, mode 0600 (as cluster/run-cluster.sh makes it). The harness
 * links no libsodium (auth/secret.h's cv_secret_generate): /dev/urandom directly. */
static void write_secret(struct h_cluster *c)
{
    char path[sizeof c->dir + 16];
    unsigned char raw[32];
    snprintf(path, sizeof path, "%s/secret", c->dir);
    FILE *r = fopen("/dev/urandom", "rb");
    cr_assert(r && fread(raw, 1, sizeof raw, r) == sizeof raw, "cannot read /dev/urandom");
    fclose(r);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
    FILE *f = fdopen(fd, "w");
    for (size_t i = 0; i < sizeof raw; i++) fprintf(f, "%02x", raw[i]);
    fputc('\n', f);
    fclose(f);
}

void h_cluster_init_ex(struct h_cluster *c, int n, int voters, unsigned lease_ttl_ms, const struct h_opts *o)
{
    memset(c, 0, sizeof *c);
    c->n_gates = o->gates;
    if (o->module) snprintf(c->module, sizeof c->module, "%s", o->module);
    c->no_builtin = o->no_builtin;
    c->gate_bare = o->gate_bare;
    c->n = n;
    /* Ports below the kernel's ephemeral range (32768+), where outgoing connections could take them:
     * grpc base+i, http base+100+i, raft = grpc + 2000, base chosen from the pid. */
    c->base = 10000 + (int)(getpid() % 1000) * 20;
    /* Suites running at once (developers' worktrees) may have chosen overlapping ranges: move on to a
     * range whose ports are all free now. */
    for (int tries = 0; tries < 500 && !ports_free(c->base, n, o->gates); tries++)
        c->base = 10000 + (c->base - 10000 + 7 * 20) % 20000;
    snprintf(c->dir, sizeof c->dir, "/tmp/cverse-test-XXXXXX");
    cr_assert_not_null(mkdtemp(c->dir), "mkdtemp: %s", strerror(errno));
    snprintf(c->config, sizeof c->config, "%s/cluster.yml", c->dir);
    snprintf(c->actlog, sizeof c->actlog, "%s/activations.log", c->dir);
    setenv("CVERSE_ACTIVATION_LOG", c->actlog, 1); /* inherited by every node and gate started */
    if (o->secret) write_secret(c);
    FILE *f = fopen(c->config, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "version: 1\ncluster:\n  shards: 64\n  provider: raft\n  data_dir: \"%s/data\"\n"
            "  lease_ttl_ms: %u\n  drain_timeout_ms: 10000\n  raft:\n    voters: %d\n    election_timeout_ms: 300\n"
            "    heartbeat_timeout_ms: 30\n    snapshot_threshold: 16\n    snapshot_trailing: 4\n"
            "%s%s%s%snodes:\n",
            c->dir, lease_ttl_ms, voters, o->demo_autoload ? demo_autoload : "  auto_load_objects: []\n",
            o->demo_types_off ? "  demo_types: false\n" : "", o->secret ? "  secret_file: secret\n" : "",
            o->insecure ? "  insecure: true\n" : "");
    for (int i = 0; i < n; i++) {
        snprintf(c->id[i], sizeof c->id[i], "node-%d", i + 1);
        fprintf(f,
                "  - id: \"%s\"\n    grpc_addr: \"127.0.0.1:%d\"\n    advertise_addr: \"127.0.0.1:%d\"\n"
                "    http_addr: \"127.0.0.1:%d\"\n",
                c->id[i], c->base + i, c->base + i, http_port(c, i));
    }
    if (o->gates) fprintf(f, "gates:\n");
    for (int g = 0; g < o->gates; g++)
        fprintf(f,
                "  - id: \"gate-%d\"\n    grpc_addr: \"127.0.0.1:%d\"\n    advertise_addr: \"127.0.0.1:%d\"\n"
                "    http_addr: \"127.0.0.1:%d\"\n",
                g + 1, h_gate_grpc_port(c, g), h_gate_grpc_port(c, g), h_gate_http_port(c, g));
    if (o->config_extra) fputs(o->config_extra, f);
    fclose(f);
}

pid_t h_spawn(const char *log, char *const argv[])
{
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static pid_t spawn(struct h_cluster *c, const char *bin, const char *log, const char *idflag, const char *id)
{
    char *argv[10] = {(char *)bin, "--config", c->config, (char *)idflag, (char *)id};
    int n = 5;
    bool bare = c->gate_bare && !strcmp(idflag, "--gate-id");
    if (c->module[0] && !bare) argv[n++] = "--module", argv[n++] = c->module;
    if (c->no_builtin || bare) /* the new name for nodes, the old one (still accepted) for gates */
        argv[n++] = strcmp(idflag, "--gate-id") ? "--no-demo-types" : "--no-builtin-types";
    argv[n] = NULL;
    return h_spawn(log, argv);
}

void h_gate_start(struct h_cluster *c, int g)
{
    const char *bin = getenv("CVERSE_GATE_BIN");
    cr_assert_not_null(bin, "CVERSE_GATE_BIN not set (run through meson test)");
    char log[400], id[24];
    snprintf(log, sizeof log, "%s/gate-%d.log", c->dir, g + 1);
    snprintf(id, sizeof id, "gate-%d", g + 1);
    c->gate_pid[g] = spawn(c, bin, log, "--gate-id", id);
}

void h_node_start(struct h_cluster *c, int i)
{
    const char *bin = getenv("CVERSE_NODE_BIN");
    cr_assert_not_null(bin, "CVERSE_NODE_BIN not set (run through meson test)");
    char log[400];
    snprintf(log, sizeof log, "%s/node-%d.log", c->dir, i + 1);
    c->pid[i] = spawn(c, bin, log, "--node-id", c->id[i]);
    c->started = true;
}

int h_node_join(struct h_cluster *c, const char *const *extra)
{
    const char *bin = getenv("CVERSE_NODE_BIN");
    cr_assert_not_null(bin, "CVERSE_NODE_BIN not set (run through meson test)");
    cr_assert_lt(c->n, H_MAX_NODES);
    int i = c->n++;
    snprintf(c->id[i], sizeof c->id[i], "node-%d", (i + 1) % 100);
    char log[400], listen[32], http[32], dir[400];
    snprintf(log, sizeof log, "%s/node-%d.log", c->dir, i + 1);
    snprintf(listen, sizeof listen, "127.0.0.1:%d", c->base + i);
    snprintf(http, sizeof http, "127.0.0.1:%d", http_port(c, i));
    snprintf(dir, sizeof dir, "%s/data/%s", c->dir, c->id[i]);
    char *argv[32] = {(char *)bin, "--node-id", c->id[i], "--listen", listen, "--http-listen", http,
                      "--shards", "64", "--data-dir", dir};
    int n = 11;
    for (int k = 0; extra && extra[k] && n < 31; k++) argv[n++] = (char *)extra[k];
    argv[n] = NULL;
    c->pid[i] = h_spawn(log, argv);
    c->started = true;
    return i;
}

int h_node_signal(struct h_cluster *c, int i, int sig)
{
    int status = -1;
    if (c->pid[i] <= 0) return -1;
    kill(c->pid[i], sig);
    waitpid(c->pid[i], &status, 0);
    if (WIFSIGNALED(status)) h_actlog_killed(c, c->pid[i]); /* it could not log its own ends */
    c->pid[i] = 0;
    return status;
}

bool h_node_running(struct h_cluster *c, int i)
{
    if (c->pid[i] <= 0) return false;
    int status;
    if (waitpid(c->pid[i], &status, WNOHANG) == c->pid[i]) {
        c->pid[i] = 0;
        c->died = true;
        return false;
    }
    return true;
}

static void stop_gates(struct h_cluster *c, int sig)
{
    for (int g = 0; g < c->n_gates; g++) {
        if (c->gate_pid[g] <= 0) continue;
        int status = 0;
        kill(c->gate_pid[g], sig);
        waitpid(c->gate_pid[g], &status, 0);
        if (sig == SIGTERM)
            cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "gate-%d exited with status %d after SIGTERM",
                      g + 1, status);
        c->gate_pid[g] = 0;
    }
}

void h_cluster_stop_all(struct h_cluster *c)
{
    stop_gates(c, SIGTERM);
    for (int i = 0; i < c->n; i++)
        if (c->pid[i] > 0) kill(c->pid[i], SIGTERM);
    unsigned long deadline = mono_ms() + 15000;
    for (int i = 0; i < c->n; i++) {
        if (c->pid[i] <= 0) continue;
        int status = 0;
        pid_t r;
        while ((r = waitpid(c->pid[i], &status, WNOHANG)) == 0 && mono_ms() < deadline) {
            struct timespec ts = {0, 20 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        cr_expect_eq(r, c->pid[i], "%s did not exit within 15 s of SIGTERM", c->id[i]);
        if (r == c->pid[i]) {
            c->pid[i] = 0;
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) c->died = true;
            cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s exited with status %d after SIGTERM",
                      c->id[i], status);
        }
    }
}

static void print_tail(const char *path)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "echo '--- %s' 1>&2; tail -n 40 '%s' 1>&2", path, path);
    if (system(cmd) != 0) return;
}

void h_cluster_destroy(struct h_cluster *c)
{
    if (c->started) { /* before the kills below: running nodes' activations are still open */
        char report[2048];
        size_t acts = 0;
        int overlaps = h_actlog_check(c->actlog, report, sizeof report, &acts);
        cr_expect_eq(overlaps, 0, "activation checker: %d overlapping activations (of %zu):\n%s", overlaps, acts,
                     report);
    }
    stop_gates(c, SIGKILL);
    for (int i = 0; i < c->n; i++) {
        int status;
        if (c->pid[i] > 0 && waitpid(c->pid[i], &status, WNOHANG) == c->pid[i]) {
            fprintf(stderr, "%s had exited on its own (status %d)\n", c->id[i], status);
            c->died = true;
            c->pid[i] = 0;
        }
        if (c->pid[i] > 0) h_node_signal(c, i, SIGKILL);
    }
    if (getenv("CVERSE_TEST_KEEP")) {
        fprintf(stderr, "kept %s\n", c->dir);
        return;
    }
    if (c->died || getenv("CVERSE_TEST_VERBOSE")) /* a node that died unasked: its log says why */
        for (int i = 0; i < c->n + c->n_gates; i++) {
            char log[400];
            snprintf(log, sizeof log, "%s/%s-%d.log", c->dir, i < c->n ? "node" : "gate",
                     i < c->n ? i + 1 : i - c->n + 1);
            print_tail(log);
        }
    if (cv_tmpdir_remove(c->dir) != 0) fprintf(stderr, "could not remove %s: %s\n", c->dir, strerror(errno));
}

struct body {
    char *p;
    size_t len;
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct body *b = ud;
    size_t n = size * nmemb;
    char *np = realloc(b->p, b->len + n + 1);
    if (!np) return 0;
    memcpy(np + b->len, ptr, n);
    b->p = np;
    b->len += n;
    b->p[b->len] = '\0';
    return n;
}

static char *request_signed(int port, const char *path, const char *post, size_t post_len, const char *header,
                            const struct h_cluster *c, long *status);

static char *request(int port, const char *path, const char *post, size_t post_len, const char *header,
                     long *status)
{
    return request_signed(port, path, post, post_len, header, NULL, status);
}

/* request, with c's signature line (c->sign) when c is given and has one. */
static char *request_signed(int port, const char *path, const char *post, size_t post_len, const char *header,
                            const struct h_cluster *c, long *status)
{
    char url[600];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    CURL *h = curl_easy_init();
    struct body b = {0};
    struct curl_slist *hdrs = NULL;
    curl_easy_setopt(h, CURLOPT_URL, url);
    if (post) {
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
        hdrs = curl_slist_append(hdrs, "Expect:");
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, post);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)post_len);
    }
    if (header) {
        hdrs = curl_slist_append(hdrs, header);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    }
    if (c && c->sign) {
        char authz[256];
        c->sign(post ? "POST" : "GET", path, authz, sizeof authz);
        hdrs = curl_slist_append(hdrs, authz);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    }
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 40000L);
    *status = 0;
    if (curl_easy_perform(h) == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    curl_easy_cleanup(h);
    curl_slist_free_all(hdrs);
    if (*status == 0) {
        free(b.p);
        return NULL;
    }
    if (!b.p) b.p = strdup("");
    return b.p;
}

char *h_get_text(struct h_cluster *c, int i, const char *path, long *status)
{
    return request_signed(http_port(c, i), path, NULL, 0, NULL, c, status);
}

char *h_get_port(int port, const char *path, long *status)
{
    return request(port, path, NULL, 0, NULL, status);
}

char *h_get_header(struct h_cluster *c, int i, const char *path, const char *header, long *status)
{
    return request_signed(http_port(c, i), path, NULL, 0, header, c, status);
}

char *h_post(int port, const char *path, const char *body, size_t len, long *status)
{
    return request(port, path, body ? body : "", body ? len : 0, NULL, status);
}

char *h_post_header(int port, const char *path, const char *body, size_t len, const char *header, long *status)
{
    return request(port, path, body ? body : "", body ? len : 0, header, status);
}

json_t *h_get_json(struct h_cluster *c, int i, const char *path, long *status)
{
    char *text = h_get_text(c, i, path, status);
    if (!text) return NULL;
    json_t *j = json_loads(text, 0, NULL);
    free(text);
    return j;
}

bool h_poll(unsigned timeout_ms, bool (*pred)(void *arg), void *arg)
{
    unsigned long deadline = mono_ms() + timeout_ms;
    for (;;) {
        if (pred(arg)) return true;
        if (mono_ms() >= deadline) return false;
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL); /* poll interval, not synchronisation: pred decides */
    }
}

char *h_cli(const char *args, int *code)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", getenv("CVERSE_CLI_BIN"), args);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "popen %s", cmd);
    char *out = calloc(1, 8192);
    cr_assert_not_null(out);
    size_t n = fread(out, 1, 8191, p);
    out[n] = '\0';
    int rc = pclose(p);
    *code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    return out;
}

unsigned long long h_now_ms(void)
{
    return (unsigned long long)mono_ms();
}

void h_shard_owner(struct h_cluster *c, int i, int shard, char *buf, size_t len)
{
    long st;
    json_t *j = h_get_json(c, i, "/v1/shards", &st);
    json_t *o = json_array_get(json_object_get(j, "owners"), (size_t)shard);
    snprintf(buf, len, "%s", json_is_string(o) ? json_string_value(o) : "");
    json_decref(j);
}

bool h_shard_owned_everywhere(void *arg)
{
    struct h_owned *o = arg;
    char buf[64];
    for (int i = 0; i < o->c->n; i++) {
        if (!h_node_running(o->c, i)) continue;
        h_shard_owner(o->c, i, o->shard, buf, sizeof buf);
        if (strcmp(buf, o->node) != 0) return false;
    }
    return true;
}

bool h_shards_settled(void *arg)
{
    struct h_cluster *c = arg;
    json_t *first = NULL;
    int count[H_MAX_NODES] = {0};
    bool ok = true;
    for (int i = 0; i < c->n && ok; i++) {
        if (!h_node_running(c, i)) continue;
        long st;
        json_t *j = h_get_json(c, i, "/v1/shards", &st);
        json_t *owners = json_object_get(j, "owners"), *targets = json_object_get(j, "targets");
        ok = st == 200 && json_is_array(owners) && json_is_array(targets);
        if (ok && first) ok = json_equal(owners, json_object_get(first, "owners"));
        for (size_t s = 0; ok && !first && s < json_array_size(owners); s++) {
            const char *o = json_string_value(json_array_get(owners, s));
            int k = o ? h_index_of(c, o) : -1;
            ok = k >= 0 && h_node_running(c, k) && json_is_null(json_array_get(targets, s));
            if (ok) count[k]++;
        }
        if (ok && !first) first = json_incref(j);
        json_decref(j);
    }
    int lo = -1, hi = -1;
    for (int i = 0; ok && i < c->n; i++) {
        if (!h_node_running(c, i)) continue;
        if (lo < 0 || count[i] < lo) lo = count[i];
        if (hi < 0 || count[i] > hi) hi = count[i];
    }
    json_decref(first);
    return ok && first && hi - lo <= 1;
}

void h_leader_of(struct h_cluster *c, int i, char *out, size_t len)
{
    long st;
    out[0] = '\0';
    json_t *j = h_get_json(c, i, "/v1/cluster", &st);
    if (!j) return;
    const char *l = json_string_value(json_object_get(j, "leader"));
    if (l) snprintf(out, len, "%s", l);
    json_decref(j);
}

int h_index_of(struct h_cluster *c, const char *id)
{
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->id[i], id)) return i;
    return -1;
}

/* ---------------------------------------------------------------- the activation checker */

int h_actlog_check(const char *path, char *report, size_t len, size_t *activations)
{
    int rc = cv_actcheck_file(path, report, len, activations);
    cr_assert_geq(rc, 0, "activation checker: out of memory reading %s", path);
    return rc;
}

void h_actlog_killed(const struct h_cluster *c, pid_t pid)
{
    if (cv_actcheck_killed(c->actlog, pid) < 0) fprintf(stderr, "actlog: cannot append to %s\n", c->actlog);
}

bool h_ready_upto(struct h_cluster *c, int nodes)
{
    long st;
    for (int i = 0; i < nodes; i++) {
        free(h_get_text(c, i, "/ready", &st));
        if (st != 200) return false;
    }
    for (int g = 0; g < c->n_gates; g++) {
        free(h_get_port(h_gate_http_port(c, g), "/ready", &st));
        if (st != 200) return false;
    }
    return true;
}

bool h_all_ready(void *arg)
{
    struct h_cluster *c = arg;
    return h_ready_upto(c, c->n);
}

/* ---------------------------------------------------------------- clusters in network namespaces */

/* A rewrite of c's config, line by line. */
struct config_edit {
    const struct h_cluster *c;
    const char *const *hosts; /* h_cluster_init_hosts */
    const char *key, *value;  /* h_config_set */
    int done;
};

/* Passes every line of c's config to edit, which writes it (changed or not) to out; out replaces it. */
static void config_rewrite(struct h_cluster *c, void (*edit)(struct config_edit *e, const char *line, FILE *out),
                           struct config_edit *e)
{
    FILE *in = fopen(c->config, "r");
    cr_assert_not_null(in);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    cr_assert_not_null(out);
    char line[512];
    while (fgets(line, sizeof line, in)) edit(e, line, out);
    fclose(in);
    fclose(out);
    FILE *f = fopen(c->config, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    free(text);
}

/* The host a port of c's config belongs to (0.0.0.0 for an HTTP listener), or NULL to leave it. */
static const char *host_of_port(const struct h_cluster *c, int port, bool http, const char *const *hosts)
{
    for (int i = 0; i < c->n; i++)
        if (port == c->base + i || port == http_port(c, i)) return http ? "0.0.0.0" : hosts[i];
    for (int g = 0; g < c->n_gates; g++)
        if (port == h_gate_grpc_port(c, g) || port == h_gate_http_port(c, g)) return http ? "0.0.0.0" : hosts[c->n + g];
    return NULL;
}

/* Every address is written as "127.0.0.1:<port>": the port says whose it is. */
static void addr_line(struct config_edit *e, const char *line, FILE *out)
{
    const char *at = strstr(line, "\"127.0.0.1:");
    const char *host = at ? host_of_port(e->c, atoi(at + 11), strstr(line, "http_addr") != NULL, e->hosts) : NULL;
    if (host)
        fprintf(out, "%.*s\"%s:%s", (int)(at - line), line, host, at + 11);
    else
        fputs(line, out);
}

void h_cluster_init_hosts(struct h_cluster *c, int n, int voters, unsigned lease_ttl_ms, const struct h_opts *o,
                          const char *const *hosts)
{
    struct h_opts oh = *o;
    if (!oh.secret && !oh.protected_mode) oh.insecure = true; /* peers not on loopback: docs/security.md */
    h_cluster_init_ex(c, n, voters, lease_ttl_ms, &oh);
    struct config_edit e = {c, hosts, NULL, NULL, 0};
    config_rewrite(c, addr_line, &e);
}

static void set_line(struct config_edit *e, const char *line, FILE *out)
{
    size_t ind = strspn(line, " "), klen = strlen(e->key);
    if (!e->done && !strncmp(line + ind, e->key, klen) && line[ind + klen] == ':') {
        fprintf(out, "%.*s%s: %s\n", (int)ind, line, e->key, e->value);
        e->done = 1;
    } else {
        fputs(line, out);
    }
}

void h_config_set(struct h_cluster *c, const char *key, const char *value)
{
    struct config_edit e = {c, NULL, key, value, 0};
    config_rewrite(c, set_line, &e);
    cr_assert(e.done, "h_config_set: no key %s in %s", key, c->config);
}

long long h_response_value(char *body, long st)
{
    long long val = -1;
    json_t *j = body && st == 200 ? json_loads(body, 0, NULL) : NULL;
    if (j) {
        json_t *v = json_object_get(json_object_get(j, "response"), "value");
        val = json_is_string(v) ? atoll(json_string_value(v)) : json_integer_value(v);
        json_decref(j);
    }
    free(body);
    return val;
}

long long h_increment_within(struct h_cluster *c, const char *id, unsigned timeout_ms, long *st)
{
    char path[256];
    snprintf(path, sizeof path, "/api/v1/objects/call/SimpleCounter/%s/Increment?timeout_ms=%u", id, timeout_ms);
    char *t = h_post(h_gate_http_port(c, 0), path, "{\"request\":{}}", 14, st); /* before *st is read */
    return h_response_value(t, *st);
}

/* ---- a real etcd ---------------------------------------------------------------------------------------- */

static void etcd_spawn(struct h_etcd *e, int i)
{
    char name[16], data[320], log[320], client[64], peer[64], cluster[256] = "", part[80];
    snprintf(name, sizeof name, "e%d", i);
    snprintf(data, sizeof data, "%s/%s.data", e->dir, name);
    snprintf(log, sizeof log, "%s/%s.log", e->dir, name);
    snprintf(client, sizeof client, "http://127.0.0.1:%d", e->client_port[i]);
    snprintf(peer, sizeof peer, "http://127.0.0.1:%d", e->peer_port[i]);
    for (int k = 0; k < e->n; k++) {
        snprintf(part, sizeof part, "%se%d=http://127.0.0.1:%d", k ? "," : "", k, e->peer_port[k]);
        strcat(cluster, part);
    }
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        /* A test that dies (criterion's timeout kills it) must not leave its etcd running. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execl("/usr/bin/etcd", "etcd", "--name", name, "--data-dir", data, "--listen-client-urls", client,
              "--advertise-client-urls", client, "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
              "--initial-cluster", cluster, "--initial-cluster-state", "new", "--initial-cluster-token", e->dir,
              (char *)NULL);
        _exit(127);
    }
    e->pid[i] = pid;
}

bool h_etcd_healthy(struct h_etcd *e, int i)
{
    long st = 0;
    char *body = h_get_port(e->client_port[i], "/health", &st);
    bool ok = st == 200 && body && strstr(body, "true");
    free(body);
    return ok;
}

static bool etcd_all_healthy(void *arg)
{
    struct h_etcd *e = arg;
    for (int i = 0; i < e->n; i++)
        if (e->pid[i] > 0 && !h_etcd_healthy(e, i)) return false;
    return true;
}

void h_etcd_start(struct h_etcd *e, int n)
{
    memset(e, 0, sizeof *e);
    cr_assert(n >= 1 && n <= H_ETCD_MAX);
    e->n = n;
    snprintf(e->dir, sizeof e->dir, "/tmp/cverse-test-etcd-XXXXXX");
    cr_assert_not_null(mkdtemp(e->dir), "mkdtemp: %s", strerror(errno));
    /* Random loopback ports below the ephemeral range, each checked free (2 per member). */
    srand((unsigned)(getpid() ^ mono_ms()));
    for (int i = 0; i < n; i++) {
        for (int tries = 0; tries < 1000; tries++) {
            int p = 12000 + rand() % 20000;
            if (port_free(p) && port_free(p + 1)) {
                e->client_port[i] = p;
                e->peer_port[i] = p + 1;
                break;
            }
        }
        cr_assert(e->client_port[i] > 0, "no free port pair for etcd");
        char ep[32];
        snprintf(ep, sizeof ep, "%s127.0.0.1:%d", i ? "," : "", e->client_port[i]);
        strcat(e->endpoints, ep);
    }
    for (int i = 0; i < n; i++) etcd_spawn(e, i);
    cr_assert(h_poll(30000, etcd_all_healthy, e), "etcd (%d members) not healthy within 30 s; logs in %s", n, e->dir);
}

void h_etcd_kill(struct h_etcd *e, int i)
{
    if (e->pid[i] <= 0) return;
    kill(e->pid[i], SIGKILL);
    waitpid(e->pid[i], NULL, 0);
    e->pid[i] = 0;
}

void h_etcd_restart(struct h_etcd *e, int i)
{
    cr_assert_eq(e->pid[i], 0, "etcd member %d still running", i);
    etcd_spawn(e, i);
    cr_assert(h_poll(30000, etcd_all_healthy, e), "etcd member %d not healthy again within 30 s", i);
}

void h_etcd_stop(struct h_etcd *e)
{
    for (int i = 0; i < e->n; i++) {
        if (e->pid[i] <= 0) continue;
        kill(e->pid[i], SIGTERM);
        waitpid(e->pid[i], NULL, 0);
        e->pid[i] = 0;
    }
    if (e->dir[0] && !getenv("CVERSE_TEST_KEEP")) cv_tmpdir_remove(e->dir);
}

void h_config_etcd(struct h_cluster *c, const struct h_etcd *e, const char *prefix, unsigned ttl_ms)
{
    char v[512], eps[160] = "";
    for (int i = 0; i < e->n; i++) {
        char one[40];
        snprintf(one, sizeof one, "%s\"127.0.0.1:%d\"", i ? ", " : "", e->client_port[i]);
        strcat(eps, one);
    }
    snprintf(v, sizeof v, "etcd\n  etcd:\n    endpoints: [%s]\n    prefix: \"%s\"\n    ttl_ms: %u", eps, prefix,
             ttl_ms);
    h_config_set(c, "provider", v);
}
