/* etcd v3 JSON gateway encoding: builds request bodies with jansson and reads replies back.
 *
 * Happy path: an encoder base64s keys and values (libsodium's original variant, what grpc-gateway uses for
 * bytes), writes int64 fields as strings and leaves default values out, as the gateway does itself; the
 * parser unwraps the {"result": ...} of streamed calls, reads header.revision, lease ID/TTL, kvs (also a
 * txn's first response_range), watch flags and events, accepting int64 fields as strings or numbers.
 *
 * Failure modes: a body that is not a JSON object, or a key/value that is not valid base64, is CV_EPROTO
 * with the reason in out->error; an {"error": ...} reply is not a parse failure (the caller reads code). */
#include "discovery/codec.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"

#define LINES_MAX (4u << 20)

static char *b64(const char *s, size_t len)
{
    size_t n = sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL);
    char *out = malloc(n);
    if (out) sodium_bin2base64(out, n, (const unsigned char *)s, len, sodium_base64_VARIANT_ORIGINAL);
    return out;
}

/* Decodes base64 into a NUL-terminated copy; NULL on bad input or no memory. */
static char *unb64(const char *s, size_t *len_out)
{
    size_t slen = strlen(s), n = 0;
    char *out = malloc(slen / 4 * 3 + 4);
    if (!out) return NULL;
    if (sodium_base642bin((unsigned char *)out, slen / 4 * 3 + 3, s, slen, NULL, &n, NULL,
                          sodium_base64_VARIANT_ORIGINAL)) {
        free(out);
        return NULL;
    }
    out[n] = 0;
    if (len_out) *len_out = n;
    return out;
}

static int set_b64(json_t *o, const char *field, const char *s)
{
    char *e = b64(s, strlen(s));
    int rv = !e || json_object_set_new(o, field, json_string(e)) ? CV_ENOMEM : 0;
    free(e);
    return rv;
}

static int set_i64(json_t *o, const char *field, int64_t v)
{
    if (!v) return 0; /* defaults are omitted */
    char num[24];
    snprintf(num, sizeof num, "%lld", (long long)v);
    return json_object_set_new(o, field, json_string(num)) ? CV_ENOMEM : 0;
}

/* Serialises and releases o. */
static char *dump(json_t *o, int rv)
{
    char *s = !rv && o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

char *cv_etcd_prefix_end(const char *prefix)
{
    size_t n = strlen(prefix);
    char *end = strdup(prefix);
    if (!end) return NULL;
    while (n > 0 && (unsigned char)end[n - 1] == 0xff) end[--n] = 0;
    if (!n) { /* every byte 0xff, or "": the whole key space ("\0" as etcd spells it) */
        free(end);
        return strdup("");
    }
    end[n - 1] = (char)((unsigned char)end[n - 1] + 1);
    return end;
}

static json_t *kv_obj(const char *key, const char *value, int64_t lease, int *rv)
{
    json_t *o = json_object();
    if (!o) return *rv = CV_ENOMEM, NULL;
    *rv = set_b64(o, "key", key);
    if (!*rv && value) *rv = set_b64(o, "value", value);
    if (!*rv) *rv = set_i64(o, "lease", lease);
    return o;
}

char *cv_etcd_enc_put(const char *key, const char *value, int64_t lease)
{
    int rv;
    json_t *o = kv_obj(key, value, lease, &rv);
    return dump(o, rv);
}

char *cv_etcd_enc_range_key(const char *key)
{
    int rv;
    json_t *o = kv_obj(key, NULL, 0, &rv);
    return dump(o, rv);
}

char *cv_etcd_enc_delete(const char *key)
{
    return cv_etcd_enc_range_key(key);
}

static json_t *prefix_obj(const char *prefix, int *rv)
{
    char *end = cv_etcd_prefix_end(prefix);
    json_t *o = end ? kv_obj(prefix, NULL, 0, rv) : NULL;
    if (!o) *rv = CV_ENOMEM;
    /* "" as a range end would mean "this key only": the whole key space is "\0" (AA==). */
    else if (!*rv) *rv = *end ? set_b64(o, "range_end", end)
                              : json_object_set_new(o, "range_end", json_string("AA==")) ? CV_ENOMEM : 0;
    free(end);
    return o;
}

char *cv_etcd_enc_range_prefix(const char *prefix)
{
    int rv = 0;
    json_t *o = prefix_obj(prefix, &rv);
    return dump(o, rv);
}

/* {"compare":[cmp],"success":[{"request_put":put}],"failure":[{"request_range":{"key":key}}]} */
static char *txn(json_t *cmp, const char *key, const char *value, int64_t lease)
{
    int rv = 0, rv2 = 0;
    json_t *put = kv_obj(key, value, lease, &rv), *get = kv_obj(key, NULL, 0, &rv2);
    json_t *o = json_pack("{s:[o],s:[{s:o}],s:[{s:o}]}", "compare", cmp, "success", "request_put", put,
                          "failure", "request_range", get);
    return dump(o, rv || rv2 || !o ? CV_ENOMEM : 0);
}

char *cv_etcd_enc_create(const char *key, const char *value, int64_t lease)
{
    int rv;
    json_t *cmp = kv_obj(key, NULL, 0, &rv);
    /* create_revision 0 written out: an omitted one leaves etcd's target union unset. */
    if (!rv && (json_object_set_new(cmp, "target", json_string("CREATE")) ||
                json_object_set_new(cmp, "create_revision", json_string("0"))))
        rv = CV_ENOMEM;
    if (rv) {
        json_decref(cmp);
        return NULL;
    }
    return txn(cmp, key, value, lease);
}

/* A compare "key does not exist" (create_revision 0 written out: an omitted one leaves etcd's target union
 * unset); NULL when out of memory. */
static json_t *absent(const char *key)
{
    int rv;
    json_t *cmp = kv_obj(key, NULL, 0, &rv);
    if (!rv && (json_object_set_new(cmp, "target", json_string("CREATE")) ||
                json_object_set_new(cmp, "create_revision", json_string("0"))))
        rv = CV_ENOMEM;
    if (rv) json_decref(cmp);
    return rv ? NULL : cmp;
}

char *cv_etcd_enc_create_unless(const char *key, const char *value, const char *other)
{
    int rv = 0, rv2 = 0;
    json_t *c1 = absent(key), *c2 = absent(other);
    json_t *put = kv_obj(key, value, 0, &rv), *get = kv_obj(key, NULL, 0, &rv2);
    json_t *o = NULL;
    if (c1 && c2 && put && get) /* json_pack takes the four references */
        o = json_pack("{s:[o,o],s:[{s:o}],s:[{s:o}]}", "compare", c1, c2, "success", "request_put", put, "failure",
                      "request_range", get);
    else {
        json_decref(c1);
        json_decref(c2);
        json_decref(put);
        json_decref(get);
    }
    return dump(o, rv || rv2 || !o ? CV_ENOMEM : 0);
}

char *cv_etcd_enc_put_if_less(const char *key, const char *value)
{
    int rv;
    json_t *cmp = kv_obj(key, value, 0, &rv);
    if (!rv && (json_object_set_new(cmp, "target", json_string("VALUE")) ||
                json_object_set_new(cmp, "result", json_string("LESS"))))
        rv = CV_ENOMEM;
    if (rv) {
        json_decref(cmp);
        return NULL;
    }
    /* etcd's compare reads "the key's value LESS than value": the compare's value is the new one. */
    return txn(cmp, key, value, 0);
}

char *cv_etcd_enc_grant(int64_t ttl_s)
{
    json_t *o = json_object();
    int rv = o ? set_i64(o, "TTL", ttl_s) : CV_ENOMEM;
    return dump(o, rv);
}

char *cv_etcd_enc_lease(int64_t id)
{
    json_t *o = json_object();
    int rv = o ? set_i64(o, "ID", id) : CV_ENOMEM;
    return dump(o, rv);
}

char *cv_etcd_enc_watch(const char *prefix, int64_t start_revision)
{
    int rv = 0;
    json_t *c = prefix_obj(prefix, &rv);
    if (!rv) rv = set_i64(c, "start_revision", start_revision);
    json_t *o = c ? json_pack("{s:o}", "create_request", c) : NULL;
    return dump(o, rv || !o ? CV_ENOMEM : 0);
}

/* ---- parsing ------------------------------------------------------------------------------------------ */

/* An int64 field written as a string (the gateway) or a number (tolerated); 0 when absent or malformed. */
static int64_t get_i64(json_t *o, const char *field)
{
    json_t *v = json_object_get(o, field);
    if (json_is_integer(v)) return (int64_t)json_integer_value(v);
    if (json_is_string(v)) return strtoll(json_string_value(v), NULL, 10);
    if (json_is_true(v)) return 1;
    return 0;
}

static int fail(struct cv_etcd_reply *out, const char *why)
{
    snprintf(out->error, sizeof out->error, "%s", why);
    return CV_EPROTO;
}

static int parse_kv(json_t *o, struct cv_etcd_kv *kv, struct cv_etcd_reply *out)
{
    const char *k = json_string_value(json_object_get(o, "key"));
    const char *v = json_string_value(json_object_get(o, "value"));
    if (!k) return fail(out, "kv without a key");
    if (!(kv->key = unb64(k, NULL))) return fail(out, "key is not base64");
    if (!(kv->value = unb64(v ? v : "", &kv->value_len))) return fail(out, "value is not base64");
    kv->create_revision = get_i64(o, "create_revision");
    kv->mod_revision = get_i64(o, "mod_revision");
    kv->version = get_i64(o, "version");
    kv->lease = get_i64(o, "lease");
    return 0;
}

static int parse_kvs(json_t *arr, struct cv_etcd_reply *out)
{
    size_t n = json_array_size(arr);
    if (!n) return 0;
    if (!(out->kvs = calloc(n, sizeof *out->kvs))) return CV_ENOMEM;
    for (; out->n_kvs < n; out->n_kvs++) {
        int rv = parse_kv(json_array_get(arr, out->n_kvs), &out->kvs[out->n_kvs], out);
        if (rv) return out->n_kvs++, rv; /* counted: freed with the others */
    }
    return 0;
}

static int parse_events(json_t *arr, struct cv_etcd_reply *out)
{
    size_t n = json_array_size(arr);
    if (!n) return 0;
    if (!(out->events = calloc(n, sizeof *out->events))) return CV_ENOMEM;
    for (; out->n_events < n; out->n_events++) {
        json_t *e = json_array_get(arr, out->n_events);
        struct cv_etcd_event *ev = &out->events[out->n_events];
        const char *type = json_string_value(json_object_get(e, "type"));
        ev->deleted = type && !strcmp(type, "DELETE");
        int rv = parse_kv(json_object_get(e, "kv"), &ev->kv, out);
        if (rv) return out->n_events++, rv;
    }
    return 0;
}

static void parse_error(json_t *o, struct cv_etcd_reply *out)
{
    json_t *err = json_object_get(o, "error");
    const char *msg = json_string_value(json_object_get(o, "message"));
    if (json_is_object(err)) { /* streamed calls: {"error":{"grpc_code":..,"message":..}} */
        msg = json_string_value(json_object_get(err, "message"));
        out->code = (int)(get_i64(err, "grpc_code") ? get_i64(err, "grpc_code") : get_i64(err, "code"));
    } else {
        if (!msg) msg = json_string_value(err);
        out->code = (int)get_i64(o, "code");
    }
    snprintf(out->error, sizeof out->error, "%s", msg ? msg : "etcd error");
    if (!out->code) out->code = 2; /* UNKNOWN: still an error */
}

int cv_etcd_parse(const char *body, size_t len, struct cv_etcd_reply *out)
{
    memset(out, 0, sizeof *out);
    json_error_t je;
    json_t *root = json_loadb(body, len, 0, &je);
    if (!json_is_object(root)) {
        json_decref(root);
        return fail(out, "reply is not a JSON object");
    }
    json_t *o = json_object_get(root, "result");
    if (!json_is_object(o)) o = root;
    int rv = 0;
    if (json_object_get(o, "error") || json_object_get(root, "error")) {
        parse_error(json_object_get(o, "error") ? o : root, out);
        goto done;
    }
    json_t *h = json_object_get(o, "header");
    out->revision = get_i64(h, "revision");
    out->raft_term = get_i64(h, "raft_term");
    out->succeeded = json_is_true(json_object_get(o, "succeeded"));
    out->id = get_i64(o, "ID");
    out->ttl = get_i64(o, "TTL");
    out->count = get_i64(o, "count");
    out->created = json_is_true(json_object_get(o, "created"));
    out->canceled = json_is_true(json_object_get(o, "canceled"));
    out->compact_revision = get_i64(o, "compact_revision");
    json_t *kvs = json_object_get(o, "kvs");
    json_t *first = json_array_get(json_object_get(o, "responses"), 0);
    if (!kvs && first) kvs = json_object_get(json_object_get(first, "response_range"), "kvs");
    rv = parse_kvs(kvs, out);
    if (!rv) rv = parse_events(json_object_get(o, "events"), out);
done:
    json_decref(root);
    return rv;
}

static void kv_free(struct cv_etcd_kv *kv)
{
    free(kv->key);
    free(kv->value);
}

void cv_etcd_reply_free(struct cv_etcd_reply *r)
{
    for (size_t i = 0; i < r->n_kvs; i++) kv_free(&r->kvs[i]);
    for (size_t i = 0; i < r->n_events; i++) kv_free(&r->events[i].kv);
    free(r->kvs);
    free(r->events);
    r->kvs = NULL;
    r->events = NULL;
    r->n_kvs = r->n_events = 0;
}

/* ---- streamed bodies ---------------------------------------------------------------------------------- */

int cv_etcd_lines_feed(struct cv_etcd_lines *l, const char *chunk, size_t len,
                       bool (*fn)(void *data, const char *line, size_t len), void *data)
{
    if (l->len + len > LINES_MAX) return CV_ETOOBIG;
    if (l->len + len + 1 > l->cap) {
        size_t cap = l->cap ? l->cap : 4096;
        while (cap < l->len + len + 1) cap *= 2;
        char *b = realloc(l->buf, cap);
        if (!b) return CV_ENOMEM;
        l->buf = b;
        l->cap = cap;
    }
    memcpy(l->buf + l->len, chunk, len);
    l->len += len;
    size_t start = 0;
    bool go = true;
    for (size_t i = 0; i < l->len && go; i++) {
        if (l->buf[i] != '\n') continue;
        if (i > start) go = fn(data, l->buf + start, i - start);
        start = i + 1;
    }
    memmove(l->buf, l->buf + start, l->len - start);
    l->len -= start;
    return 0;
}

void cv_etcd_lines_free(struct cv_etcd_lines *l)
{
    free(l->buf);
    *l = (struct cv_etcd_lines){0};
}
