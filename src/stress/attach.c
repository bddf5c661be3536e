/* cverse-stress's attached processes (see attach.h).
 *
 * Happy path: the pids file (cluster/run-cluster.sh's RUN_DIR/pids: "PID ROLE ID" per line, roles node,
 * gate, inspector) names the node processes; for each, /proc/PID/cmdline (NUL-separated argv),
 * /proc/PID/environ, the cwd link and the fd 1 link are read while it runs; a restart (procs.c) spawns
 * argv[0] with that argv, environment and cwd, its output appended to the same file, and the file's line
 * gets the new PID. Exits of processes that are not our children are noticed by polling: gone, or a
 * zombie (state Z in /proc/PID/stat).
 * Failure modes: a malformed line (CV_EINVAL, its number in err); /proc unreadable (another user's
 * process, or it exited meanwhile): CV_EIO naming the file; a pids file that cannot be rewritten: CV_EIO
 * (the restart itself stands; stop-cluster.sh will then miss that node). */
#include "stress/attach.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cverse/error.h"

int cv_stress_pids_parse(const char *text, struct cv_stress_pid *out, unsigned max, unsigned *n, char *err,
                         size_t errlen)
{
    *n = 0;
    unsigned lineno = 0;
    for (const char *line = text; *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        char l[256];
        snprintf(l, sizeof l, "%.*s", (int)(len < sizeof l ? len : sizeof l - 1), line);
        line += len + (nl ? 1 : 0);
        lineno++;
        const char *s = l + strspn(l, " \t");
        if (!*s || *s == '#') continue;
        struct cv_stress_pid p = {0};
        long pid = 0;
        int used = 0;
        if (sscanf(s, "%ld %15s %63s%n", &pid, p.role, p.id, &used) != 3 || pid <= 0)
            return snprintf(err, errlen, "line %u: expected \"PID ROLE ID\", got \"%s\"", lineno, s), CV_EINVAL;
        if (*n == max) return snprintf(err, errlen, "line %u: more than %u processes", lineno, max), CV_EINVAL;
        p.pid = (pid_t)pid;
        out[(*n)++] = p;
    }
    return 0;
}

/* The whole of a small file (NUL-terminated; *len without the terminator), or NULL. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char *buf = NULL;
    size_t n = 0;
    FILE *m = open_memstream(&buf, &n);
    char b[4096];
    size_t k;
    while (m && (k = fread(b, 1, sizeof b, f)) > 0) fwrite(b, 1, k, m);
    fclose(f);
    if (!m) return NULL;
    fclose(m);
    if (len) *len = n;
    return buf;
}

int cv_stress_pids_load(const char *file, struct cv_stress_pid *out, unsigned max, unsigned *n, char *err,
                        size_t errlen)
{
    char *text = slurp(file, NULL);
    if (!text) return snprintf(err, errlen, "cannot read it: %s", strerror(errno)), CV_EIO;
    int rc = cv_stress_pids_parse(text, out, max, n, err, errlen);
    free(text);
    return rc;
}

int cv_stress_pids_replace(const char *file, pid_t old, pid_t new)
{
    char *text = slurp(file, NULL);
    if (!text) return CV_EIO;
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", file);
    FILE *out = fopen(tmp, "w");
    if (!out) return free(text), CV_EIO;
    bool found = false;
    for (char *line = text, *nl; *line; line = nl ? nl + 1 : line + strlen(line)) {
        nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        char *end;
        long pid = strtol(line, &end, 10);
        if (!found && pid == (long)old && end != line && (*end == ' ' || *end == '\t')) {
            fprintf(out, "%ld%s\n", (long)new, end);
            found = true;
        } else {
            fprintf(out, "%s\n", line);
        }
    }
    free(text);
    bool ok = fclose(out) == 0 && found && rename(tmp, file) == 0;
    if (!ok) unlink(tmp);
    return ok ? 0 : found ? CV_EIO : CV_ENOTFOUND;
}

/* NUL-separated strings -> a NULL-terminated array of copies. */
static char **split0(const char *buf, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) n += buf[i] == '\0';
    if (len && buf[len - 1] != '\0') n++;
    char **v = calloc(n + 1, sizeof *v);
    if (!v) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < len && k < n; i += strlen(buf + i) + 1) v[k++] = strndup(buf + i, len - i);
    return v;
}

static void free_vec(char **v)
{
    for (size_t i = 0; v && v[i]; i++) free(v[i]);
    free(v);
}

int cv_stress_cmd_capture(pid_t pid, struct cv_stress_cmd *cmd, char *err, size_t errlen)
{
    memset(cmd, 0, sizeof *cmd);
    char path[64];
    size_t len;
    snprintf(path, sizeof path, "/proc/%ld/cmdline", (long)pid);
    char *buf = slurp(path, &len);
    if (buf && len) cmd->argv = split0(buf, len);
    free(buf);
    if (!cmd->argv) return snprintf(err, errlen, "cannot read %s (not running, or not ours?)", path), CV_EIO;
    snprintf(path, sizeof path, "/proc/%ld/environ", (long)pid);
    buf = slurp(path, &len);
    if (buf) cmd->env = split0(buf, len);
    free(buf);
    snprintf(path, sizeof path, "/proc/%ld/cwd", (long)pid);
    ssize_t n = readlink(path, cmd->cwd, sizeof cmd->cwd - 1);
    if (!cmd->env || n <= 0) {
        cv_stress_cmd_free(cmd);
        return snprintf(err, errlen, "cannot read the environment or cwd of pid %ld: %s", (long)pid, strerror(errno)),
               CV_EIO;
    }
    cmd->cwd[n] = '\0';
    snprintf(path, sizeof path, "/proc/%ld/fd/1", (long)pid);
    n = readlink(path, cmd->log, sizeof cmd->log - 1);
    cmd->log[n > 0 ? n : 0] = '\0';
    if (cmd->log[0] != '/' || access(cmd->log, W_OK) != 0) cmd->log[0] = '\0'; /* a pipe, a socket, /dev/null */
    return 0;
}

const char *cv_stress_cmd_getenv(const struct cv_stress_cmd *cmd, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; cmd->env && cmd->env[i]; i++)
        if (!strncmp(cmd->env[i], name, n) && cmd->env[i][n] == '=') return cmd->env[i] + n + 1;
    return NULL;
}

void cv_stress_cmd_free(struct cv_stress_cmd *cmd)
{
    free_vec(cmd->argv);
    free_vec(cmd->env);
    cmd->argv = cmd->env = NULL;
}

bool cv_stress_pid_alive(pid_t pid)
{
    if (pid <= 0 || (kill(pid, 0) < 0 && errno == ESRCH)) return false;
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    char *stat = slurp(path, NULL);
    if (!stat) return false;
    const char *paren = strrchr(stat, ')'); /* the name may contain spaces and parentheses */
    bool zombie = paren && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X');
    free(stat);
    return !zombie;
}
