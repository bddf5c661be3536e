/* cverse-stress's partition network (see ns.h).
 *
 * Happy path: the loaded config says how many nodes and gates there are; one namespace each plus one for
 * the clients (cv_netns_create: a bridge, veth pairs, 10.213.<net>.<k+1>); the config file is rewritten
 * line by line so that every address of host k says 10.213.<net>.<k+1> (ports kept: each host has its
 * own port space, so the demo's fixed ports never clash with anything on the machine), loaded again and
 * checked; then the calling thread enters the clients' namespace. cv_stress_proc_start enters host k's
 * namespace around its uv_spawn (the child inherits it); a churn event pulls host k's cable at the
 * bridge (cv_netns_link) for the downtime.
 * Failure modes: not root, or `ip netns add` failing: CV_EPERM with "network namespaces are
 * unavailable"; a config whose entries cannot be rewritten (flow style, more entries than it loads):
 * CV_ECONFIG; a command failing: CV_EIO. What was created is deleted again by cv_stress_cluster_free, and
 * by util/netns's atexit hook on any other way out. */
#include "stress/ns.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/secret.h"
#include "cverse/error.h"
#include "stress/procs.h"
#include "util/netns.h"

static const char *const addr_keys[] = {"grpc_addr", "advertise_addr", "http_addr", "raft_addr", "raft_bind_addr"};

/* The address key content starts with, or NULL. */
static const char *addr_key(const char *content)
{
    for (size_t k = 0; k < sizeof addr_keys / sizeof addr_keys[0]; k++) {
        size_t n = strlen(addr_keys[k]);
        if (!strncmp(content, addr_keys[k], n) && content[n] == ':') return addr_keys[k];
    }
    return NULL;
}

/* Writes `<prefix><key>: "<ip>:<port>"` for an address line whose value ends in ":<port>". */
static void rewrite_addr(FILE *out, const char *line, const char *content, const char *key, const char *ip)
{
    const char *val = content + strlen(key) + 1, *colon = strrchr(val, ':');
    int port = colon ? atoi(colon + 1) : 0;
    if (port <= 0) return (void)fputs(line, out); /* no port: the loader will say what is wrong */
    fprintf(out, "%.*s%s: \"%s:%d\"\n", (int)(content - line), line, key, ip, port);
}

char *cv_stress_ns_config(const char *text, const char *const *ips, unsigned n_nodes, unsigned n_gates)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    if (!out) return NULL;
    enum { OTHER, NODES, GATES } section = OTHER;
    unsigned count[3] = {0, 0, 0};
    for (const char *line = text; *line;) {
        const char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line + 1) : strlen(line);
        char l[1024];
        snprintf(l, sizeof l, "%.*s%s", (int)(n < sizeof l - 2 ? n : sizeof l - 2), line, nl ? "" : "\n");
        line += n;
        const char *content = l + strspn(l, " ");
        if (content == l && *content && *content != '#' && *content != '\n' && *content != '-')
            section = !strncmp(l, "nodes:", 6) ? NODES : !strncmp(l, "gates:", 6) ? GATES : OTHER;
        if (section != OTHER && content[0] == '-' && content[1] == ' ') {
            count[section]++;
            content += 2 + strspn(content + 2, " ");
        }
        const char *key = section != OTHER ? addr_key(content) : NULL;
        unsigned host = section == NODES ? count[NODES] - 1 : n_nodes + count[GATES] - 1;
        bool in_range = section == NODES ? count[NODES] <= n_nodes : count[GATES] <= n_gates;
        if (key && count[section] && in_range) rewrite_addr(out, l, content, key, ips[host]);
        else fputs(l, out);
    }
    fclose(out);
    if (count[NODES] != n_nodes || count[GATES] != n_gates) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* Rewrites c->config for net's addresses and loads it again into c->cfg. */
static int place(struct cv_stress_cluster *c, char *err, size_t errlen)
{
    const char *ips[CV_NETNS_MAX];
    for (int k = 0; k < c->net->n; k++) ips[k] = c->net->ip[k];
    FILE *f = fopen(c->config, "r");
    char *text = NULL, *moved = NULL;
    size_t len = 0;
    if (f) {
        FILE *m = open_memstream(&text, &len);
        char b[4096];
        size_t n;
        while (m && (n = fread(b, 1, sizeof b, f)) > 0) fwrite(b, 1, n, m);
        if (m) fclose(m);
        fclose(f);
    }
    if (text) moved = cv_stress_ns_config(text, ips, (unsigned)c->cfg->n_nodes, (unsigned)c->cfg->n_gates);
    free(text);
    if (!moved) return snprintf(err, errlen, "cverse-stress: cannot place the processes of %s in namespaces "
                                             "(write its nodes and gates in block style)", c->config), CV_ECONFIG;
    f = fopen(c->config, "w");
    bool ok = f && fputs(moved, f) >= 0;
    ok = (f && fclose(f) == 0) && ok;
    free(moved);
    if (!ok) return snprintf(err, errlen, "cverse-stress: writing %s failed", c->config), CV_EIO;
    cv_config_free(c->cfg);
    c->cfg = NULL;
    char cerr[512];
    if (cv_config_load(c->config, &c->cfg, cerr, sizeof cerr) < 0)
        return snprintf(err, errlen, "cverse-stress: %s", cerr), CV_ECONFIG;
    for (size_t i = 0; i < c->cfg->n_nodes; i++)
        if (strncmp(c->cfg->nodes[i].http_addr, ips[i], strlen(ips[i])))
            return snprintf(err, errlen, "cverse-stress: %s: node %s not placed at %s", c->config, c->cfg->nodes[i].id,
                            ips[i]), CV_ECONFIG;
    return 0;
}

/* Nodes in namespaces reach each other from non-loopback addresses, which protected mode refuses
 * (docs/security.md): without a configured secret, <dir>/secret (32 random bytes as hex, 0600) is given
 * to every process through the environment, as cluster/run-cluster.sh does. */
static int ns__secret(struct cv_stress_cluster *c, char *err, size_t errlen)
{
    if (cv_secret_path(c->cfg->secret_file)) return 0;
    char path[sizeof c->dir + 16], msg[400];
    snprintf(path, sizeof path, "%s/secret", c->dir);
    if (cv_secret_generate(path, msg, sizeof msg)) return snprintf(err, errlen, "cverse-stress: %s", msg), CV_EIO;
    setenv(CV_SECRET_ENV, path, 1);
    return 0;
}

int cv_stress_ns_setup(struct cv_stress_cluster *c, char *err, size_t errlen)
{
    if (geteuid() != 0)
        return snprintf(err, errlen, "cverse-stress: --churn-mode partition needs root: it runs every node in a "
                                     "network namespace of its own (ip netns) and pulls a node's link"), CV_EPERM;
    int hosts = (int)(c->cfg->n_nodes + c->cfg->n_gates) + 1;
    if (hosts > CV_NETNS_MAX)
        return snprintf(err, errlen, "cverse-stress: partition: at most %d nodes and gates", CV_NETNS_MAX - 1), CV_EINVAL;
    c->net = calloc(1, sizeof *c->net);
    if (!c->net) return snprintf(err, errlen, "cverse-stress: out of memory"), CV_ENOMEM;
    char nerr[256];
    int rc = cv_netns_create(c->net, hosts, nerr, sizeof nerr);
    if (rc < 0) return snprintf(err, errlen, "cverse-stress: --churn-mode partition: %s", nerr), rc;
    rc = place(c, err, errlen);
    if (rc == 0) rc = ns__secret(c, err, errlen);
    if (rc < 0) return rc;
    int prev = cv_netns_enter(c->net, hosts - 1);
    if (prev < 0) return snprintf(err, errlen, "cverse-stress: cannot enter %s", c->net->ns[hosts - 1]), CV_EIO;
    close(prev); /* this thread stays in the clients' namespace for the whole run */
    fprintf(stderr, "cverse-stress: partition: namespaces %s-h0..h%d on bridge %s (10.213.%d.0/24), the clients in %s\n",
            c->net->prefix, hosts - 1, c->net->bridge, c->net->net, c->net->ns[hosts - 1]);
    return 0;
}
