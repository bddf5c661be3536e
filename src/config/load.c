/* Reading a config file, freeing a config, and looking entries up (the parser itself: config.c). */
#include "config/config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/access.h"
#include "cverse/error.h"

#define CFG_FILE_MAX (16u << 20) /* a cluster file is a few KiB; refuse anything absurd */

static int cfg__grow(char **buf, size_t *cap)
{
    char *nb = realloc(*buf, *cap * 2);
    if (!nb) return CV_ENOMEM;
    *buf = nb;
    *cap *= 2;
    return 0;
}

/* Reads the whole file (NUL-terminated for libyaml's benefit); refuses files above CFG_FILE_MAX. */
static int cfg__read(const char *path, char **buf, size_t *len, char *err, size_t errlen)
{
    size_t cap = 8192, n = 0, got;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (err && errlen) snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        return CV_EIO;
    }
    char *b = malloc(cap);
    int rv = b ? 0 : CV_ENOMEM;
    while (!rv && (got = fread(b + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n > CFG_FILE_MAX)
            rv = CV_ECONFIG;
        else if (n + 1 == cap)
            rv = cfg__grow(&b, &cap);
    }
    int saved = errno;
    if (!rv && ferror(f)) rv = CV_EIO;
    fclose(f);
    if (!rv) {
        b[n] = '\0';
        *buf = b;
        *len = n;
        return 0;
    }
    free(b);
    if (!err || !errlen) return rv;
    if (rv == CV_EIO) snprintf(err, errlen, "%s: cannot read: %s", path, strerror(saved));
    if (rv == CV_ECONFIG) snprintf(err, errlen, "%s: larger than %u bytes", path, CFG_FILE_MAX);
    if (rv == CV_ENOMEM) snprintf(err, errlen, "%s: out of memory", path);
    return rv;
}

int cv_config_load(const char *path, struct cv_config **out, char *err, size_t errlen)
{
    char *buf;
    size_t len;
    *out = NULL;
    int rv = cfg__read(path, &buf, &len, err, errlen);
    if (rv) return rv;
    rv = cv_config_parse(buf, len, path, out, err, errlen);
    free(buf);
    return rv;
}

void cv_config_free(struct cv_config *cfg)
{
    if (!cfg) return;
    for (size_t i = 0; i < cfg->n_etcd_endpoints; i++) free(cfg->etcd_endpoints[i]);
    for (size_t i = 0; i < cfg->n_autoload; i++) {
        free(cfg->autoload[i].type);
        free(cfg->autoload[i].id);
    }
    for (size_t i = 0; i < cfg->n_nodes; i++) {
        struct cv_node_cfg *n = &cfg->nodes[i];
        free(n->id);
        free(n->grpc_addr);
        free(n->advertise_addr);
        free(n->http_addr);
        free(n->raft_addr);
        free(n->raft_bind_addr);
    }
    for (size_t i = 0; i < cfg->n_gates; i++) {
        free(cfg->gates[i].id);
        free(cfg->gates[i].grpc_addr);
        free(cfg->gates[i].advertise_addr);
        free(cfg->gates[i].http_addr);
        free(cfg->gates[i].tls_cert_file);
        free(cfg->gates[i].tls_key_file);
        free(cfg->gates[i].auth_tokens_file);
    }
    for (size_t i = 0; i < cfg->n_warnings; i++) free(cfg->warnings[i]);
    cv_access_rules_free(&cfg->access_rules);
    free(cfg->inspector.grpc_addr);
    free(cfg->inspector.http_addr);
    free(cfg->inspector.advertise_addr);
    free(cfg->inspector.admin_token_file);
    free(cfg->etcd_endpoints);
    free(cfg->autoload);
    free(cfg->nodes);
    free(cfg->gates);
    free(cfg->warnings);
    free(cfg->etcd_prefix);
    free(cfg->data_dir);
    free(cfg->secret_file);
    free(cfg->path);
    free(cfg);
}

int cv_config_node_index(const struct cv_config *cfg, const char *id)
{
    if (!cfg || !id) return -1;
    for (size_t i = 0; i < cfg->n_nodes; i++)
        if (!strcmp(cfg->nodes[i].id, id)) return (int)i;
    return -1;
}

const struct cv_node_cfg *cv_config_node(const struct cv_config *cfg, const char *id)
{
    int i = cv_config_node_index(cfg, id);
    return i < 0 ? NULL : &cfg->nodes[i];
}

const struct cv_gate_cfg *cv_config_gate(const struct cv_config *cfg, const char *id)
{
    if (!cfg || !id) return NULL;
    for (size_t i = 0; i < cfg->n_gates; i++)
        if (!strcmp(cfg->gates[i].id, id)) return &cfg->gates[i];
    return NULL;
}
