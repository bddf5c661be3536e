/* cverse-stress's attached processes (--attach --pids FILE): the pids file, what /proc says about a
 * running node (its command line, working directory, environment and log) so that a killed one can be
 * started again the same way, and whether a process that is not our child still runs. */
#ifndef CV_STRESS_ATTACH_H
#define CV_STRESS_ATTACH_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define CV_STRESS_MAX_PIDS 128

/* One line of a pids file. */
struct cv_stress_pid {
    pid_t pid;
    char role[16]; /* "node", "gate", "inspector", ... */
    char id[64];
};

/* Parses a pids file's text: "PID ROLE ID" lines as cluster/run-cluster.sh writes them (extra fields
 * ignored), blank lines and '#' comments skipped (pure). 0 with *n entries; CV_EINVAL with the line
 * number and what is wrong in err. */
int cv_stress_pids_parse(const char *text, struct cv_stress_pid *out, unsigned max, unsigned *n, char *err,
                         size_t errlen);
/* Reads file and parses it (cv_stress_pids_parse). 0, CV_EIO (err: the file cannot be read) or CV_EINVAL. */
int cv_stress_pids_load(const char *file, struct cv_stress_pid *out, unsigned max, unsigned *n, char *err,
                        size_t errlen);
/* Replaces PID old by new in file's "PID ROLE ID" line (written to FILE.tmp, then renamed), so that
 * cluster/stop-cluster.sh stops the node cverse-stress started again. 0 or CV_EIO / CV_ENOTFOUND. */
int cv_stress_pids_replace(const char *file, pid_t old, pid_t new);

/* How to start a process again: read from /proc/PID at attach time. */
struct cv_stress_cmd {
    char **argv;         /* owned, NULL-terminated */
    char **env;          /* owned, NULL-terminated */
    char cwd[PATH_MAX];
    char log[PATH_MAX];  /* where its stdout went, if a file ("" otherwise: /dev/null) */
};

/* Reads pid's command line, cwd, environment and stdout. 0, or CV_EIO naming what could not be read
 * (another user's process, one that exited). */
int cv_stress_cmd_capture(pid_t pid, struct cv_stress_cmd *cmd, char *err, size_t errlen);
/* The value of NAME in cmd's environment, or NULL (borrowed, valid until cv_stress_cmd_free). */
const char *cv_stress_cmd_getenv(const struct cv_stress_cmd *cmd, const char *name);
void cv_stress_cmd_free(struct cv_stress_cmd *cmd);

/* True while pid exists and is not a zombie. */
bool cv_stress_pid_alive(pid_t pid);

#endif
