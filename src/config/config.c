/* Cluster configuration: YAML in Goverse's schema plus cverse's additions, parsed with libyaml's document API.
 *
 * Happy path: libyaml loads the file into a node tree; the root mapping is walked section by section.
 * Every mapping is first checked as a whole (it is a mapping, no duplicate keys, every key known), then its
 * values are looked up by name and converted (strings, strict integers, booleans, host:port addresses).
 * Defaults are filled in as each entry is read (advertise_addr, raft_addr, raft_bind_addr); checks that need
 * the whole file (raft voters vs. the number of nodes) run at the end, then the fingerprint is computed.
 *
 * Failure modes: an unreadable file gives CV_EIO; everything else (YAML syntax, wrong type, value out of
 * range, missing required key, duplicate key or id, unknown key, two listen addresses on one port) gives
 * CV_ECONFIG. Parsing stops at the first problem and err receives ONE line,
 * "FILE:LINE: KEY.PATH: what is wrong (what is expected)", so an operator can fix the file top to bottom.
 * Keys that Goverse defines but cverse does not use yet (postgres) are not errors:
 * a Goverse config must load unchanged, so they only add a line to cfg->warnings.
 */
#include "config/config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#include "core/hash.h"
#include "cverse/error.h"
#include "util/addr.h"

#define CFG_PATH_MAX 256
#define CFG_ADDR_MAX 300
#define CFG_ID_MAX 63            /* node ids travel in fixed 64-byte buffers (catalog.h CV_NODE_ID_MAX) */
#define CFG_RAFT_PORT_OFFSET 2000
#define CFG_GATE_LIMIT_KEYS "request_timeout_ms", "idle_timeout_ms", "max_connections", "rate_limit_per_sec", \
    "rate_limit_burst", "tls_cert_file", "tls_key_file" /* cfg__gate_limits */

/* One listen address already claimed, to detect two components binding the same port on one host. */
struct cfg__listen {
    char host[CFG_ADDR_MAX]; /* the machine: listen host, or the advertise host for wildcard listeners */
    unsigned port;
    char path[CFG_PATH_MAX];
    int line;
};

struct cfg__ctx {
    yaml_document_t *doc;
    const char *name;
    struct cv_config *cfg;
    char *err;
    size_t errlen;
    struct cfg__listen *listen;
    size_t n_listen, cap_listen;
    int voters_line; /* 0 if cluster.raft.voters was not given */
};

/* A key looked up in a mapping: node is NULL when the key is absent or its value is null. */
struct cfg__field {
    yaml_node_t *node;
    char path[CFG_PATH_MAX];
    int line; /* the value's line, or the mapping's line when absent (for "missing" messages) */
};

/* ---- messages ---------------------------------------------------------------------------------------- */

/* Messages quote values from the file; control characters (a newline in a quoted string) would break the
 * one-line promise, so they become '?'. */
static void cfg__one_line(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) *s = '?';
}

int cv_config_vfail(char *err, size_t errlen, const char *file, int line, const char *path, const char *fmt,
                    va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (err && errlen) {
        snprintf(err, errlen, "%s:%d: %s: %s", file, line, path, msg);
        cfg__one_line(err);
    }
    return CV_ECONFIG;
}

int cv_config_nfail(const struct cv_config_ydoc *c, const struct yaml_node_s *n, const char *path, const char *fmt,
                    ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rv = cv_config_vfail(c->err, c->errlen, c->file, (int)n->start_mark.line + 1, path, fmt, ap);
    va_end(ap);
    return rv;
}

__attribute__((format(printf, 4, 5))) static int cfg__fail(struct cfg__ctx *c, int line, const char *path,
                                                           const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rv = cv_config_vfail(c->err, c->errlen, c->name, line, path, fmt, ap);
    va_end(ap);
    return rv;
}

__attribute__((format(printf, 4, 5))) static int cfg__warn(struct cfg__ctx *c, int line, const char *path,
                                                           const char *fmt, ...)
{
    char msg[512], full[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(full, sizeof full, "%s:%d: %s: %s", c->name, line, path, msg);
    cfg__one_line(full);
    struct cv_config *cfg = c->cfg;
    char **w = realloc(cfg->warnings, (cfg->n_warnings + 1) * sizeof *w);
    if (!w) return CV_ENOMEM;
    cfg->warnings = w;
    if (!(w[cfg->n_warnings] = strdup(full))) return CV_ENOMEM;
    cfg->n_warnings++;
    return 0;
}

static int cfg__line(const yaml_node_t *n)
{
    return (int)n->start_mark.line + 1;
}

/* "a.b" (or "b" at the root). Paths are for messages only, so truncation is harmless. */
static void cfg__join(char *out, const char *path, const char *key)
{
    snprintf(out, CFG_PATH_MAX, "%s%s%s", path, *path ? "." : "", key);
}

static void cfg__index(char *out, const char *path, size_t i)
{
    if (snprintf(out, CFG_PATH_MAX, "%s[%zu]", path, i) >= CFG_PATH_MAX) out[CFG_PATH_MAX - 2] = ']';
}

/* Short rendering of a value for "got ..." in messages. */
static const char *cfg__show(const yaml_node_t *n, char *buf, size_t len)
{
    if (n->type == YAML_MAPPING_NODE) return "a mapping";
    if (n->type == YAML_SEQUENCE_NODE) return "a list";
    const char *v = (const char *)n->data.scalar.value;
    size_t l = n->data.scalar.length;
    snprintf(buf, len, "\"%.*s%s\"", (int)(l > 60 ? 60 : l), v, l > 60 ? "..." : "");
    return buf;
}

/* ---- scalars ----------------------------------------------------------------------------------------- */

static bool cfg__plain(const yaml_node_t *n)
{
    return n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

static bool cfg__is(const yaml_node_t *n, const char *const *words)
{
    for (; *words; words++)
        if (!strcmp((const char *)n->data.scalar.value, *words)) return true;
    return false;
}

/* YAML null: an empty value, ~ or null, unquoted. A null value counts as "not given". */
static bool cfg__is_null(const yaml_node_t *n)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
    return cfg__plain(n) && cfg__is(n, nulls);
}

static void cfg__field(struct cfg__ctx *c, yaml_node_t *map, const char *mpath, const char *key,
                       struct cfg__field *f)
{
    cfg__join(f->path, mpath, key);
    f->node = NULL;
    f->line = cfg__line(map);
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        if (!k || k->type != YAML_SCALAR_NODE || strcmp((const char *)k->data.scalar.value, key)) continue;
        yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
        if (v && !cfg__is_null(v)) {
            f->node = v;
            f->line = cfg__line(v);
        }
        return;
    }
}

/* A non-empty string. Absent: an error if required (expect says what belongs there), else *out untouched. */
static int cfg__str(struct cfg__ctx *c, const struct cfg__field *f, bool required, const char *expect,
                    char **out)
{
    char got[96];
    if (!f->node)
        return required ? cfg__fail(c, f->line, f->path, "missing (required: %s)", expect) : 0;
    if (f->node->type != YAML_SCALAR_NODE)
        return cfg__fail(c, f->line, f->path, "must be %s, got %s", expect, cfg__show(f->node, got, sizeof got));
    const char *v = (const char *)f->node->data.scalar.value;
    if (!*v) return cfg__fail(c, f->line, f->path, "must not be empty (expected %s)", expect);
    if (strlen(v) != f->node->data.scalar.length)
        return cfg__fail(c, f->line, f->path, "must not contain NUL characters (expected %s)", expect);
    char *s = strdup(v);
    if (!s) return CV_ENOMEM;
    free(*out);
    *out = s;
    return 0;
}

/* Decimal digits only: "12abc", "-1", "+1", "0x10", "1e3" and overflow are all rejected. */
static bool cfg__parse_u64(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!*s) return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return false;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10) return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* An unquoted integer in min..max. Absent: *out untouched (the caller pre-set the default). */
static int cfg__uint(struct cfg__ctx *c, const struct cfg__field *f, uint64_t min, uint64_t max,
                     uint64_t *out)
{
    char got[96];
    uint64_t v;
    if (!f->node) return 0;
    const char *kind = cfg__plain(f->node) || f->node->type != YAML_SCALAR_NODE ? "" : "the string ";
    if (!cfg__plain(f->node) || !cfg__parse_u64((const char *)f->node->data.scalar.value, &v) || v < min ||
        v > max)
        return cfg__fail(c, f->line, f->path, "must be an integer %llu..%llu, got %s%s", (unsigned long long)min,
                         (unsigned long long)max, kind, cfg__show(f->node, got, sizeof got));
    *out = v;
    return 0;
}

/* Same for the unsigned fields of the struct. */
static int cfg__unsigned(struct cfg__ctx *c, const struct cfg__field *f, unsigned min, unsigned max,
                         unsigned *out)
{
    uint64_t v = *out;
    int rv = cfg__uint(c, f, min, max, &v);
    if (!rv) *out = (unsigned)v;
    return rv;
}

static int cfg__bool(struct cfg__ctx *c, const struct cfg__field *f, bool *out)
{
    static const char *const yes[] = {"true", "True", "TRUE", NULL};
    static const char *const no[] = {"false", "False", "FALSE", NULL};
    char got[96];
    if (!f->node) return 0;
    if (cfg__plain(f->node) && cfg__is(f->node, yes))
        *out = true;
    else if (cfg__plain(f->node) && cfg__is(f->node, no))
        *out = false;
    else
        return cfg__fail(c, f->line, f->path, "must be true or false, got %s", cfg__show(f->node, got, sizeof got));
    return 0;
}

/* A "host:port" string (IPv6 as "[::1]:port"; the host may be empty, meaning all interfaces). */
static int cfg__addr(struct cfg__ctx *c, const struct cfg__field *f, bool required, char **out)
{
    char host[256];
    uint16_t port;
    int rv = cfg__str(c, f, required, "an address host:port", out);
    if (rv || !f->node) return rv;
    if (cv_addr_split(*out, host, sizeof host, &port))
        return cfg__fail(c, f->line, f->path, "must be host:port with a port 1..65535, got \"%s\"", *out);
    return 0;
}

/* ---- mappings and lists ------------------------------------------------------------------------------ */

static bool cfg__listed(const char *key, const char *const *list)
{
    for (; list && *list; list++)
        if (!strcmp(*list, "*") || !strcmp(*list, key)) return true;
    return false;
}

static void cfg__expected(const char *const *known, char *buf, size_t len)
{
    size_t off = 0;
    buf[0] = '\0';
    for (; *known && off < len; known++) {
        int n = snprintf(buf + off, len - off, "%s%s", off ? ", " : "", *known);
        if (n < 0) break;
        off += (size_t)n;
    }
}

/* Checks one key of a mapping: a string, not seen before in this mapping, and known (or a Goverse key,
 * which only warns; "*" in goverse accepts any other key that way). */
static int cfg__check_key(struct cfg__ctx *c, yaml_node_t *map, yaml_node_pair_t *p, const char *path,
                          const char *const *known, const char *const *goverse)
{
    char kpath[CFG_PATH_MAX], exp[512], got[96];
    yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
    if (k->type != YAML_SCALAR_NODE || !k->data.scalar.length)
        return cfg__fail(c, cfg__line(k), *path ? path : "(root)", "keys must be non-empty strings, got %s",
                         cfg__show(k, got, sizeof got));
    const char *key = (const char *)k->data.scalar.value;
    cfg__join(kpath, path, key);
    for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
        yaml_node_t *o = yaml_document_get_node(c->doc, q->key);
        if (o->type == YAML_SCALAR_NODE && !strcmp((const char *)o->data.scalar.value, key))
            return cfg__fail(c, cfg__line(k), kpath, "duplicate key (first given at line %d; expected once)",
                             cfg__line(o));
    }
    if (cfg__listed(key, known)) return 0;
    if (cfg__listed(key, goverse))
        return cfg__warn(c, cfg__line(k), kpath, "Goverse setting not used by cverse yet; ignored");
    cfg__expected(known, exp, sizeof exp);
    return cfg__fail(c, cfg__line(k), kpath, "unknown key (expected one of: %s)", exp);
}

static int cfg__check_map(struct cfg__ctx *c, yaml_node_t *n, const char *path, const char *what,
                          const char *const *known, const char *const *goverse)
{
    char got[96];
    if (n->type != YAML_MAPPING_NODE)
        return cfg__fail(c, cfg__line(n), *path ? path : "(root)", "must be %s, got %s", what,
                         cfg__show(n, got, sizeof got));
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        int rv = cfg__check_key(c, n, p, path, known, goverse);
        if (rv) return rv;
    }
    return 0;
}

/* A list (absent = empty). *count gets its length. */
static int cfg__list(struct cfg__ctx *c, const struct cfg__field *f, const char *what, size_t *count)
{
    char got[96];
    *count = 0;
    if (!f->node) return 0;
    if (f->node->type != YAML_SEQUENCE_NODE)
        return cfg__fail(c, f->line, f->path, "must be a list of %s, got %s", what,
                         cfg__show(f->node, got, sizeof got));
    *count = (size_t)(f->node->data.sequence.items.top - f->node->data.sequence.items.start);
    return 0;
}

static yaml_node_t *cfg__item(struct cfg__ctx *c, const struct cfg__field *f, size_t i)
{
    return yaml_document_get_node(c->doc, f->node->data.sequence.items.start[i]);
}

/* ---- addresses --------------------------------------------------------------------------------------- */

static void cfg__hostport(char *out, size_t len, const char *host, unsigned port)
{
    snprintf(out, len, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
}

static bool cfg__wildcard(const char *host)
{
    return !*host || !strcmp(host, "0.0.0.0") || !strcmp(host, "::");
}

/* The machine a listen address lives on, for clash detection: its own host (made connectable, so
 * "localhost" and "127.0.0.1" compare equal), or, for a wildcard listener, the component's advertised host
 * (two nodes both listening on 0.0.0.0:7000 are fine when they advertise different machines). */
static void cfg__machine(const char *listen, const char *advertise, char *host, size_t len)
{
    char h[256], conn[CFG_ADDR_MAX];
    uint16_t port;
    host[0] = '\0';
    if (cv_addr_split(listen, h, sizeof h, &port)) return;
    const char *src = cfg__wildcard(h) && advertise ? advertise : listen;
    if (cv_addr_connectable(src, conn, sizeof conn) || cv_addr_split(conn, h, sizeof h, &port)) return;
    snprintf(host, len, "%s", h);
}

/* Claims listen's port on its machine; fails if another listen address already did. */
static int cfg__claim(struct cfg__ctx *c, const char *listen, const char *advertise, const char *path, int line)
{
    struct cfg__listen l = {.line = line};
    char h[256];
    uint16_t port;
    if (cv_addr_split(listen, h, sizeof h, &port)) return 0; /* already reported by cfg__addr */
    l.port = port;
    cfg__machine(listen, advertise, l.host, sizeof l.host);
    snprintf(l.path, sizeof l.path, "%s", path);
    for (size_t i = 0; i < c->n_listen; i++)
        if (c->listen[i].port == l.port && !strcmp(c->listen[i].host, l.host))
            return cfg__fail(c, line, path,
                             "port %u on host %s is already used by %s (line %d) (expected a port of its own)",
                             l.port, l.host, c->listen[i].path, c->listen[i].line);
    if (c->n_listen == c->cap_listen) {
        size_t cap = c->cap_listen ? 2 * c->cap_listen : 32;
        struct cfg__listen *nl = realloc(c->listen, cap * sizeof *nl);
        if (!nl) return CV_ENOMEM;
        c->listen = nl;
        c->cap_listen = cap;
    }
    c->listen[c->n_listen++] = l;
    return 0;
}

/* advertise_addr: given, or the connectable form of the listen address. */
static int cfg__advertise(struct cfg__ctx *c, const struct cfg__field *f, const char *grpc, char **out)
{
    char conn[CFG_ADDR_MAX];
    int rv = cfg__addr(c, f, false, out);
    if (rv || *out) return rv;
    if (cv_addr_connectable(grpc, conn, sizeof conn))
        return cfg__fail(c, f->line, f->path, "cannot derive a default from \"%s\" (expected host:port)", grpc);
    return (*out = strdup(conn)) ? 0 : CV_ENOMEM;
}

/* ---- identifiers ------------------------------------------------------------------------------------- */

static int cfg__check_id(struct cfg__ctx *c, const struct cfg__field *f, const char *id)
{
    if (!strncmp(id, "shard#", 6))
        return cfg__fail(c, f->line, f->path, "\"%s\" must not start with \"shard#\" (reserved for shard ids)", id);
    if (strlen(id) > CFG_ID_MAX)
        return cfg__fail(c, f->line, f->path, "\"%.20s...\" is longer than %d characters", id, CFG_ID_MAX);
    for (const char *p = id; *p; p++) {
        int ok = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '.' ||
                 *p == '_' || *p == '-';
        if (!ok && (unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f)
            return cfg__fail(c, f->line, f->path, "\"%s\" contains '%c' (expected only A-Z a-z 0-9 . _ -)", id, *p);
        if (!ok)
            return cfg__fail(c, f->line, f->path, "\"%s\" contains byte 0x%02x (expected only A-Z a-z 0-9 . _ -)",
                             id, (unsigned char)*p);
    }
    return 0;
}

/* Reads and checks an entry's id; f gets its path and line for the caller's uniqueness check. */
static int cfg__entry_id(struct cfg__ctx *c, yaml_node_t *map, const char *path, struct cfg__field *f,
                         char **out)
{
    cfg__field(c, map, path, "id", f);
    int rv = cfg__str(c, f, true, "an id of A-Z a-z 0-9 . _ -", out);
    return rv ? rv : cfg__check_id(c, f, *out);
}

/* ---- nodes, gates, inspector ------------------------------------------------------------------------- */

static const char *const node_keys[] = {"id", "grpc_addr", "advertise_addr", "http_addr", "raft_addr", NULL};
static const char *const node_goverse[] = {"enable_pprof", NULL};
static const char *const gate_keys[] = {"id", "grpc_addr", "advertise_addr", "http_addr", "push_heartbeat_ms",
                                        "push_queue", "auth_tokens_file", CFG_GATE_LIMIT_KEYS, NULL};
static const char *const inspector_keys[] = {"grpc_addr", "http_addr", "advertise_addr", "admin_token_file", NULL};
static const char *const inspector_goverse[] = {"connect_addr", NULL}; /* older Goverse name of advertise */

/* raft_addr default: the advertised host, made connectable ("localhost" -> 127.0.0.1), with the grpc
 * port + 2000, so a node's raft peers dial the same machine they dial for RPCs. */
static int cfg__default_raft(struct cfg__ctx *c, struct cv_node_cfg *n, const struct cfg__field *grpc,
                             const char *path)
{
    char host[256], hp[CFG_ADDR_MAX], conn[CFG_ADDR_MAX];
    uint16_t gport, aport;
    if (cv_addr_split(n->grpc_addr, host, sizeof host, &gport) ||
        cv_addr_split(n->advertise_addr, host, sizeof host, &aport))
        return cfg__fail(c, grpc->line, path, "cannot derive a default (expected host:port addresses)");
    unsigned port = (unsigned)gport + CFG_RAFT_PORT_OFFSET;
    if (port > 65535)
        return cfg__fail(c, grpc->line, path,
                         "default port %u (grpc port %u + %d) is above 65535 (set raft_addr explicitly)", port,
                         (unsigned)gport, CFG_RAFT_PORT_OFFSET);
    cfg__hostport(hp, sizeof hp, host, port);
    if (cv_addr_connectable(hp, conn, sizeof conn))
        return cfg__fail(c, grpc->line, path, "cannot derive a default from \"%s\" (expected host:port)", hp);
    return (n->raft_addr = strdup(conn)) ? 0 : CV_ENOMEM;
}

/* raft_bind_addr: raft listens on the interface grpc_addr names, at raft_addr's port. */
static int cfg__raft_bind(struct cv_node_cfg *n)
{
    char ghost[256], rhost[256], buf[CFG_ADDR_MAX];
    uint16_t gport, rport;
    if (cv_addr_split(n->grpc_addr, ghost, sizeof ghost, &gport) ||
        cv_addr_split(n->raft_addr, rhost, sizeof rhost, &rport))
        return CV_EINVAL; /* unreachable: both were validated */
    cfg__hostport(buf, sizeof buf, ghost, rport);
    return (n->raft_bind_addr = strdup(buf)) ? 0 : CV_ENOMEM;
}

static int cfg__node_addrs(struct cfg__ctx *c, yaml_node_t *map, const char *path, struct cv_node_cfg *n)
{
    struct cfg__field grpc, adv, http, raft;
    cfg__field(c, map, path, "grpc_addr", &grpc);
    cfg__field(c, map, path, "advertise_addr", &adv);
    cfg__field(c, map, path, "http_addr", &http);
    cfg__field(c, map, path, "raft_addr", &raft);
    int rv = cfg__addr(c, &grpc, true, &n->grpc_addr);
    if (!rv) rv = cfg__advertise(c, &adv, n->grpc_addr, &n->advertise_addr);
    if (!rv) rv = cfg__addr(c, &http, true, &n->http_addr);
    if (!rv) rv = cfg__addr(c, &raft, false, &n->raft_addr);
    if (!rv && !n->raft_addr) rv = cfg__default_raft(c, n, &grpc, raft.path);
    if (!rv) rv = cfg__raft_bind(n);
    if (!rv) rv = cfg__claim(c, n->grpc_addr, n->advertise_addr, grpc.path, grpc.line);
    if (!rv) rv = cfg__claim(c, n->http_addr, n->advertise_addr, http.path, http.line);
    if (!rv)
        rv = cfg__claim(c, n->raft_bind_addr, n->advertise_addr, raft.path, raft.node ? raft.line : grpc.line);
    return rv;
}

static int cfg__node(struct cfg__ctx *c, yaml_node_t *item, const char *lpath, size_t i)
{
    char path[CFG_PATH_MAX];
    struct cfg__field idf;
    struct cv_node_cfg *n = &c->cfg->nodes[i];
    cfg__index(path, lpath, i);
    int rv = cfg__check_map(c, item, path, "a node (a mapping with id, grpc_addr, http_addr)", node_keys,
                            node_goverse);
    if (rv) return rv;
    n->line = cfg__line(item);
    rv = cfg__entry_id(c, item, path, &idf, &n->id);
    for (size_t j = 0; !rv && j < i; j++)
        if (!strcmp(c->cfg->nodes[j].id, n->id))
            rv = cfg__fail(c, idf.line, idf.path, "duplicate node id \"%s\" (first at line %d; expected unique ids)",
                           n->id, c->cfg->nodes[j].line);
    return rv ? rv : cfg__node_addrs(c, item, path, n);
}

static int cfg__nodes(struct cfg__ctx *c, yaml_node_t *root)
{
    struct cfg__field f;
    size_t n;
    cfg__field(c, root, "", "nodes", &f);
    int rv = cfg__list(c, &f, "nodes", &n);
    if (rv) return rv;
    if (!n) return cfg__fail(c, f.line, f.path, "%s (expected at least one node)", f.node ? "is empty" : "missing");
    if (!(c->cfg->nodes = calloc(n, sizeof *c->cfg->nodes))) return CV_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        c->cfg->n_nodes = i + 1;
        if ((rv = cfg__node(c, cfg__item(c, &f, i), f.path, i))) return rv;
    }
    return 0;
}

/* A file named in the config: relative to the config file's directory, readable now. */
static int cfg__file(struct cfg__ctx *c, const struct cfg__field *f, char **out)
{
    char *v = NULL, buf[4096];
    int rv = cfg__str(c, f, false, "a file path", &v);
    if (rv || !v) return rv;
    const char *slash = strrchr(c->name, '/');
    if (v[0] != '/' && slash) snprintf(buf, sizeof buf, "%.*s/%s", (int)(slash - c->name), c->name, v);
    else snprintf(buf, sizeof buf, "%s", v);
    free(v);
    if (access(buf, R_OK)) return cfg__fail(c, f->line, f->path, "cannot read %s: %s", buf, strerror(errno));
    return (*out = strdup(buf)) ? 0 : CV_ENOMEM;
}

/* gates[]: the limits of the client ports and TLS (http.h cv_http_opts). */
static int cfg__gate_limits(struct cfg__ctx *c, yaml_node_t *item, const char *path, struct cv_gate_cfg *g)
{
    struct cfg__field req, idle, maxc, rps, burst, cert, key;
    g->request_timeout_ms = 10000;
    g->idle_timeout_ms = 60000;
    g->max_connections = 10000;
    cfg__field(c, item, path, "request_timeout_ms", &req);
    cfg__field(c, item, path, "idle_timeout_ms", &idle);
    cfg__field(c, item, path, "max_connections", &maxc);
    cfg__field(c, item, path, "rate_limit_per_sec", &rps);
    cfg__field(c, item, path, "rate_limit_burst", &burst);
    cfg__field(c, item, path, "tls_cert_file", &cert);
    cfg__field(c, item, path, "tls_key_file", &key);
    int rv = cfg__unsigned(c, &req, 10, 3600000, &g->request_timeout_ms);
    if (!rv) rv = cfg__unsigned(c, &idle, 10, 86400000, &g->idle_timeout_ms);
    if (!rv) rv = cfg__unsigned(c, &maxc, 1, 1000000, &g->max_connections);
    if (!rv) rv = cfg__unsigned(c, &rps, 1, 1000000, &g->rate_limit_per_sec);
    g->rate_limit_burst = g->rate_limit_per_sec;
    if (!rv) rv = cfg__unsigned(c, &burst, 1, 1000000, &g->rate_limit_burst);
    if (!rv && burst.node && !rps.node) rv = cfg__fail(c, burst.line, burst.path, "needs rate_limit_per_sec");
    if (!rv && !cert.node != !key.node)
        rv = cfg__fail(c, cert.node ? cert.line : key.line, cert.node ? key.path : cert.path,
                       "missing (tls_cert_file and tls_key_file go together)");
    if (!rv) rv = cfg__file(c, &cert, &g->tls_cert_file);
    if (!rv) rv = cfg__file(c, &key, &g->tls_key_file);
    g->tls_line = cert.line;
    return rv;
}

static int cfg__gate(struct cfg__ctx *c, yaml_node_t *item, const char *lpath, size_t i)
{
    char path[CFG_PATH_MAX];
    struct cfg__field idf, grpc, adv, http, hb, pq;
    struct cv_gate_cfg *g = &c->cfg->gates[i];
    g->push_heartbeat_ms = 30000;
    g->push_queue = 256;
    cfg__index(path, lpath, i);
    int rv = cfg__check_map(c, item, path, "a gate (a mapping with id, grpc_addr, http_addr)", gate_keys, NULL);
    if (rv) return rv;
    g->line = cfg__line(item);
    rv = cfg__entry_id(c, item, path, &idf, &g->id);
    for (size_t j = 0; !rv && j < i; j++)
        if (!strcmp(c->cfg->gates[j].id, g->id))
            rv = cfg__fail(c, idf.line, idf.path, "duplicate gate id \"%s\" (first at line %d; expected unique ids)",
                           g->id, c->cfg->gates[j].line);
    cfg__field(c, item, path, "grpc_addr", &grpc);
    cfg__field(c, item, path, "advertise_addr", &adv);
    cfg__field(c, item, path, "http_addr", &http);
    if (!rv) rv = cfg__addr(c, &grpc, true, &g->grpc_addr);
    if (!rv) rv = cfg__advertise(c, &adv, g->grpc_addr, &g->advertise_addr);
    if (!rv) rv = cfg__addr(c, &http, true, &g->http_addr);
    if (!rv) rv = cfg__claim(c, g->grpc_addr, g->advertise_addr, grpc.path, grpc.line);
    if (!rv) rv = cfg__claim(c, g->http_addr, g->advertise_addr, http.path, http.line);
    cfg__field(c, item, path, "push_heartbeat_ms", &hb);
    cfg__field(c, item, path, "push_queue", &pq);
    if (!rv) rv = cfg__unsigned(c, &hb, 10, 3600000, &g->push_heartbeat_ms);
    if (!rv) rv = cfg__unsigned(c, &pq, 1, 1000000, &g->push_queue);
    if (!rv) rv = cfg__gate_limits(c, item, path, g);
    cfg__field(c, item, path, "auth_tokens_file", &hb); /* gate authentication (config/tokens.h) */
    if (!rv) rv = cfg__str(c, &hb, false, "a file path", &g->auth_tokens_file);
    return rv;
}

static int cfg__gates(struct cfg__ctx *c, yaml_node_t *root)
{
    struct cfg__field f;
    size_t n;
    cfg__field(c, root, "", "gates", &f);
    int rv = cfg__list(c, &f, "gates", &n);
    if (rv || !n) return rv;
    if (!(c->cfg->gates = calloc(n, sizeof *c->cfg->gates))) return CV_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        c->cfg->n_gates = i + 1;
        if ((rv = cfg__gate(c, cfg__item(c, &f, i), f.path, i))) return rv;
    }
    return 0;
}

static int cfg__inspector(struct cfg__ctx *c, yaml_node_t *root)
{
    struct cfg__field f, grpc, adv, http, tok;
    struct cv_config *cfg = c->cfg;
    cfg__field(c, root, "", "inspector", &f);
    if (!f.node) return 0;
    int rv = cfg__check_map(c, f.node, f.path, "a mapping with grpc_addr, http_addr", inspector_keys,
                            inspector_goverse);
    if (rv) return rv;
    cfg->has_inspector = true;
    cfg__field(c, f.node, f.path, "grpc_addr", &grpc);
    cfg__field(c, f.node, f.path, "advertise_addr", &adv);
    cfg__field(c, f.node, f.path, "http_addr", &http);
    cfg__field(c, f.node, f.path, "admin_token_file", &tok);
    rv = cfg__str(c, &tok, false, "a file path", &cfg->inspector.admin_token_file);
    if (!rv) rv = cfg__addr(c, &grpc, true, &cfg->inspector.grpc_addr);
    if (!rv) rv = cfg__advertise(c, &adv, cfg->inspector.grpc_addr, &cfg->inspector.advertise_addr);
    if (!rv) rv = cfg__addr(c, &http, true, &cfg->inspector.http_addr);
    if (!rv) rv = cfg__claim(c, cfg->inspector.grpc_addr, cfg->inspector.advertise_addr, grpc.path, grpc.line);
    if (!rv) rv = cfg__claim(c, cfg->inspector.http_addr, cfg->inspector.advertise_addr, http.path, http.line);
    return rv;
}

/* ---- cluster ----------------------------------------------------------------------------------------- */

static const char *const cluster_keys[] = {"shards", "provider", "etcd", "auto_load_objects", "raft", "data_dir",
                                           "lease_ttl_ms", "drain_timeout_ms", "demo_types" /* objtypes.c */, "secret_file", "insecure", NULL};
static const char *const etcd_keys[] = {"endpoints", "prefix", "ttl_ms", NULL};
static const char *const etcd_goverse[] = {"*", NULL}; /* TLS, auth, timeouts...: for the etcd provider */
static const char *const autoload_keys[] = {"type", "id", "per_shard", "per_node", NULL};
static const char *const raft_keys[] = {"voters", "election_timeout_ms", "heartbeat_timeout_ms",
                                        "snapshot_threshold", "snapshot_trailing", "pre_vote", "quiet_heartbeats", NULL};

/* A list item as a field (null items count as absent). */
static void cfg__item_field(struct cfg__ctx *c, const struct cfg__field *list, size_t i, struct cfg__field *f)
{
    yaml_node_t *n = cfg__item(c, list, i);
    cfg__index(f->path, list->path, i);
    f->line = cfg__line(n);
    f->node = cfg__is_null(n) ? NULL : n;
}

static int cfg__provider(struct cfg__ctx *c, const struct cfg__field *f)
{
    char *s = NULL;
    int rv = cfg__str(c, f, false, "\"raft\" or \"etcd\"", &s);
    if (rv || !s) return rv;
    if (!strcmp(s, "raft"))
        c->cfg->provider = CV_PROVIDER_RAFT;
    else if (!strcmp(s, "etcd"))
        c->cfg->provider = CV_PROVIDER_ETCD;
    else
        rv = cfg__fail(c, f->line, f->path, "must be \"raft\" or \"etcd\", got \"%s\"", s);
    free(s);
    return rv;
}

static int cfg__etcd(struct cfg__ctx *c, const struct cfg__field *f)
{
    struct cfg__field ep, prefix, ttl, item;
    struct cv_config *cfg = c->cfg;
    size_t n;
    if (!f->node) return 0;
    int rv = cfg__check_map(c, f->node, f->path, "a mapping with endpoints, prefix, ttl_ms", etcd_keys, etcd_goverse);
    if (rv) return rv;
    cfg__field(c, f->node, f->path, "endpoints", &ep);
    cfg__field(c, f->node, f->path, "prefix", &prefix);
    cfg__field(c, f->node, f->path, "ttl_ms", &ttl);
    if ((rv = cfg__str(c, &prefix, false, "a key prefix such as \"/cverse\"", &cfg->etcd_prefix))) return rv;
    /* etcd rounds a lease up to whole seconds and refuses very short ones (about 1.5 election timeouts). */
    if ((rv = cfg__unsigned(c, &ttl, 2000, 3600000, &cfg->etcd_ttl_ms))) return rv;
    if ((rv = cfg__list(c, &ep, "etcd endpoints host:port", &n)) || !n) return rv;
    if (!(cfg->etcd_endpoints = calloc(n, sizeof *cfg->etcd_endpoints))) return CV_ENOMEM;
    cfg->n_etcd_endpoints = n;
    for (size_t i = 0; i < n && !rv; i++) {
        cfg__item_field(c, &ep, i, &item);
        rv = cfg__str(c, &item, true, "an etcd endpoint host:port", &cfg->etcd_endpoints[i]);
    }
    return rv;
}

static int cfg__autoload_one(struct cfg__ctx *c, const struct cfg__field *item, struct cv_autoload_cfg *a)
{
    struct cfg__field type, id, per_shard, per_node;
    if (!item->node)
        return cfg__fail(c, item->line, item->path, "missing (expected a mapping with type, id)");
    int rv = cfg__check_map(c, item->node, item->path, "a mapping with type, id", autoload_keys, NULL);
    if (rv) return rv;
    cfg__field(c, item->node, item->path, "type", &type);
    cfg__field(c, item->node, item->path, "id", &id);
    cfg__field(c, item->node, item->path, "per_shard", &per_shard);
    cfg__field(c, item->node, item->path, "per_node", &per_node);
    a->line = type.line;
    rv = cfg__str(c, &type, true, "an object type name", &a->type);
    if (!rv) rv = cfg__str(c, &id, true, "an object id", &a->id);
    if (!rv) rv = cfg__bool(c, &per_shard, &a->per_shard);
    if (!rv) rv = cfg__bool(c, &per_node, &a->per_node);
    if (!rv && a->per_shard && a->per_node)
        rv = cfg__fail(c, per_node.line, per_node.path,
                       "per_shard and per_node are both true (expected at most one of them)");
    return rv;
}

static int cfg__autoload(struct cfg__ctx *c, const struct cfg__field *f)
{
    struct cfg__field item;
    struct cv_config *cfg = c->cfg;
    size_t n;
    int rv = cfg__list(c, f, "objects (type, id, per_shard, per_node)", &n);
    if (rv || !n) return rv;
    if (!(cfg->autoload = calloc(n, sizeof *cfg->autoload))) return CV_ENOMEM;
    cfg->n_autoload = n;
    for (size_t i = 0; i < n && !rv; i++) {
        cfg__item_field(c, f, i, &item);
        rv = cfg__autoload_one(c, &item, &cfg->autoload[i]);
    }
    return rv;
}

static int cfg__raft(struct cfg__ctx *c, const struct cfg__field *f)
{
    struct cfg__field voters, elect, hb, thr, trail, pre, quiet;
    struct cv_raft_cfg *r = &c->cfg->raft;
    if (!f->node) return 0;
    int rv = cfg__check_map(c, f->node, f->path, "a mapping of raft settings", raft_keys, NULL);
    if (rv) return rv;
    cfg__field(c, f->node, f->path, "voters", &voters);
    cfg__field(c, f->node, f->path, "election_timeout_ms", &elect);
    cfg__field(c, f->node, f->path, "heartbeat_timeout_ms", &hb);
    cfg__field(c, f->node, f->path, "snapshot_threshold", &thr);
    cfg__field(c, f->node, f->path, "snapshot_trailing", &trail);
    cfg__field(c, f->node, f->path, "pre_vote", &pre);
    cfg__field(c, f->node, f->path, "quiet_heartbeats", &quiet);
    rv = cfg__unsigned(c, &voters, 1, 1000000, &r->voters);
    if (!rv) rv = cfg__unsigned(c, &elect, 50, 600000, &r->election_timeout_ms);
    if (!rv) rv = cfg__unsigned(c, &hb, 1, 600000, &r->heartbeat_timeout_ms);
    if (!rv) rv = cfg__unsigned(c, &thr, 16, 1000000000, &r->snapshot_threshold);
    /* 0 is refused: consensus/snapguard tells our own snapshots (trailing > 0) from installs (0). */
    if (!rv) rv = cfg__unsigned(c, &trail, 1, 1000000000, &r->snapshot_trailing);
    if (!rv) rv = cfg__bool(c, &pre, &r->pre_vote);
    if (!rv) rv = cfg__bool(c, &quiet, &r->quiet_heartbeats);
    if (!rv && r->heartbeat_timeout_ms >= r->election_timeout_ms)
        rv = cfg__fail(c, hb.line, hb.path, "must be less than election_timeout_ms (%u), got %u",
                       r->election_timeout_ms, r->heartbeat_timeout_ms);
    if (!rv && voters.node) c->voters_line = voters.line;
    return rv;
}

static int cfg__cluster(struct cfg__ctx *c, yaml_node_t *root)
{
    struct cfg__field f, shards, provider, etcd, autoload, raft, data_dir, lease, drain, secret, insecure;
    struct cv_config *cfg = c->cfg;
    uint64_t v = cfg->shards;
    cfg__field(c, root, "", "cluster", &f);
    if (!f.node) return 0;
    int rv = cfg__check_map(c, f.node, f.path, "a mapping of cluster settings", cluster_keys, NULL);
    if (rv) return rv;
    cfg__field(c, f.node, f.path, "shards", &shards);
    cfg__field(c, f.node, f.path, "provider", &provider);
    cfg__field(c, f.node, f.path, "etcd", &etcd);
    cfg__field(c, f.node, f.path, "auto_load_objects", &autoload);
    cfg__field(c, f.node, f.path, "raft", &raft);
    cfg__field(c, f.node, f.path, "data_dir", &data_dir);
    cfg__field(c, f.node, f.path, "lease_ttl_ms", &lease);
    cfg__field(c, f.node, f.path, "drain_timeout_ms", &drain);
    cfg__field(c, f.node, f.path, "secret_file", &secret);
    cfg__field(c, f.node, f.path, "insecure", &insecure);
    rv = cfg__uint(c, &shards, 1, 1048576, &v);
    cfg->shards = (uint32_t)v;
    if (!rv) rv = cfg__provider(c, &provider);
    if (!rv) rv = cfg__etcd(c, &etcd);
    if (!rv) rv = cfg__autoload(c, &autoload);
    if (!rv) rv = cfg__raft(c, &raft);
    if (!rv) rv = cfg__str(c, &data_dir, false, "a directory path", &cfg->data_dir);
    if (!rv) rv = cfg__unsigned(c, &lease, 100, 3600000, &cfg->lease_ttl_ms);
    if (!rv) rv = cfg__unsigned(c, &drain, 0, 3600000, &cfg->drain_timeout_ms);
    if (!rv) rv = cfg__bool(c, &insecure, &cfg->insecure);
    if (!rv) rv = cfg__str(c, &secret, false, "a file path", &cfg->secret_file);
    if (!rv && cfg->secret_file) rv = cv_config_secret(cfg, secret.line, c->err, c->errlen); /* secret.c */
    return rv;
}

/* ---- root, whole-file checks, fingerprint ------------------------------------------------------------ */

static const char *const root_keys[] = {"version", "cluster", "nodes", "gates", "inspector", CV_CONFIG_OBJECT_KEYS, CV_CONFIG_RULE_KEYS, NULL};
static const char *const root_goverse[] = {"postgres", NULL};

static int cfg__version(struct cfg__ctx *c, yaml_node_t *root)
{
    struct cfg__field f;
    uint64_t v = 0;
    char got[96];
    cfg__field(c, root, "", "version", &f);
    if (!f.node) return cfg__fail(c, f.line, f.path, "missing (required: version: 1)");
    if (!cfg__plain(f.node) || !cfg__parse_u64((const char *)f.node->data.scalar.value, &v) || v != 1)
        return cfg__fail(c, f.line, f.path, "unsupported (expected 1), got %s", cfg__show(f.node, got, sizeof got));
    c->cfg->version = 1;
    return 0;
}

/* voters default to 3, or to every node when there are fewer; given explicitly they must exist. */
static int cfg__voters(struct cfg__ctx *c)
{
    struct cv_config *cfg = c->cfg;
    if (!c->voters_line) {
        cfg->raft.voters = cfg->n_nodes < 3 ? (unsigned)cfg->n_nodes : 3;
        return 0;
    }
    if (cfg->raft.voters > cfg->n_nodes)
        return cfg__fail(c, c->voters_line, "cluster.raft.voters",
                         "must be an integer 1..%zu (the number of nodes), got %u", cfg->n_nodes, cfg->raft.voters);
    return 0;
}

static uint64_t cfg__fnv64(uint64_t h, const char *s)
{
    return cv_fnv1a64_more(h, s, strlen(s));
}

/* Canonical form: "shards=N\n" then "node=ID raft=RAFT_ADDR\n" per node in file order. Ids cannot hold
 * spaces or newlines, so the form is unambiguous. */
static uint64_t cfg__fingerprint(const struct cv_config *cfg)
{
    char buf[32];
    uint64_t h = CV_FNV64_OFFSET;
    snprintf(buf, sizeof buf, "shards=%u\n", (unsigned)cfg->shards);
    h = cfg__fnv64(h, buf);
    for (size_t i = 0; i < cfg->n_nodes; i++) {
        h = cfg__fnv64(h, "node=");
        h = cfg__fnv64(h, cfg->nodes[i].id);
        h = cfg__fnv64(h, " raft=");
        h = cfg__fnv64(h, cfg->nodes[i].raft_addr);
        h = cfg__fnv64(h, "\n");
    }
    return h;
}

static int cfg__root(struct cfg__ctx *c, yaml_node_t *root)
{
    int rv = cfg__check_map(c, root, "", "a mapping with version, cluster, nodes", root_keys, root_goverse);
    if (!rv) rv = cfg__version(c, root);
    if (!rv) rv = cfg__cluster(c, root);
    if (!rv) rv = cfg__nodes(c, root);
    if (!rv) rv = cfg__gates(c, root);
    if (!rv) rv = cfg__inspector(c, root);
    if (!rv) rv = cfg__voters(c);
    if (!rv) rv = cv_config_objects(c->doc, root, c->name, c->cfg, c->err, c->errlen); /* objtypes.c */
    if (!rv) rv = cv_config_rules(c->doc, root, c->name, c->cfg, c->err, c->errlen);   /* rules.c */
    if (!rv) c->cfg->fingerprint = cfg__fingerprint(c->cfg);
    return rv;
}

static int cfg__defaults(struct cv_config *cfg, const char *name)
{
    cfg->shards = 8192;
    cfg->provider = CV_PROVIDER_RAFT;
    cfg->raft = (struct cv_raft_cfg){.voters = 3, .election_timeout_ms = 150, .heartbeat_timeout_ms = 15,
                                     .snapshot_threshold = 8192, .snapshot_trailing = 1024, .pre_vote = true,
                                     .quiet_heartbeats = true};
    cfg->lease_ttl_ms = 700; /* failover goals and their trade-off: docs/configuration.md */
    cfg->drain_timeout_ms = 10000;
    cfg->path = strdup(name);
    cfg->etcd_prefix = strdup("/cverse");
    cfg->etcd_ttl_ms = 15000; /* Goverse's registration lease */
    cfg->data_dir = strdup("cverse-data");
    return cfg->path && cfg->etcd_prefix && cfg->data_dir ? 0 : CV_ENOMEM;
}

/* ---- libyaml ----------------------------------------------------------------------------------------- */

static int cfg__yaml_error(struct cfg__ctx *c, const yaml_parser_t *p)
{
    if (p->error == YAML_MEMORY_ERROR) return CV_ENOMEM;
    int line = (int)p->problem_mark.line + 1;
    const char *problem = p->problem ? p->problem : "malformed YAML";
    if (p->context)
        return cfg__fail(c, line, "yaml", "%s (%s at line %d; expected valid YAML)", problem, p->context,
                         (int)p->context_mark.line + 1);
    return cfg__fail(c, line, "yaml", "%s (expected valid YAML)", problem);
}

/* Loads the one document of the stream: a syntax error anywhere, an empty stream or a second document
 * are errors. On success the caller owns *doc. */
static int cfg__load(struct cfg__ctx *c, yaml_parser_t *p, yaml_document_t *doc)
{
    yaml_document_t extra;
    if (!yaml_parser_load(p, doc)) return cfg__yaml_error(c, p);
    yaml_node_t *root = yaml_document_get_root_node(doc);
    int rv = root ? 0 : cfg__fail(c, 1, "(root)", "empty file (expected a mapping with version, cluster, nodes)");
    if (!rv && !yaml_parser_load(p, &extra)) rv = cfg__yaml_error(c, p);
    else if (!rv) {
        yaml_node_t *r2 = yaml_document_get_root_node(&extra);
        if (r2) rv = cfg__fail(c, cfg__line(r2), "yaml", "a second YAML document (expected exactly one)");
        yaml_document_delete(&extra);
    }
    if (rv) yaml_document_delete(doc);
    return rv;
}

/* ---- public API -------------------------------------------------------------------------------------- */

int cv_config_parse(const char *text, size_t len, const char *name, struct cv_config **out, char *err,
                    size_t errlen)
{
    struct cfg__ctx c = {.name = name ? name : "(config)", .err = err, .errlen = errlen};
    yaml_parser_t parser;
    yaml_document_t doc;
    int rv = CV_ENOMEM;
    *out = NULL;
    if (err && errlen) err[0] = '\0';
    if (!(c.cfg = calloc(1, sizeof *c.cfg))) goto err;
    if ((rv = cfg__defaults(c.cfg, c.name))) goto err_after_cfg;
    rv = CV_ENOMEM;
    if (!yaml_parser_initialize(&parser)) goto err_after_cfg;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if ((rv = cfg__load(&c, &parser, &doc))) goto err_after_parser;
    c.doc = &doc;
    rv = cfg__root(&c, yaml_document_get_root_node(&doc));
    yaml_document_delete(&doc);
    if (rv) goto err_after_parser;
    yaml_parser_delete(&parser);
    free(c.listen);
    *out = c.cfg;
    return 0;

err_after_parser:
    yaml_parser_delete(&parser);
err_after_cfg:
    free(c.listen);
    cv_config_free(c.cfg);
err:
    if (rv == CV_ENOMEM && err && errlen) snprintf(err, errlen, "%s: out of memory", c.name);
    return rv;
}

/* cv_config_load, cv_config_free and the lookups: load.c. */
