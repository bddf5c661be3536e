/* The gate's HTTP front end: Goverse-compatible object calls, /healthz, /ready, /metrics, and its parsers. */
#ifndef CV_GATE_HTTPAPI_H
#define CV_GATE_HTTPAPI_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gate/forwarder.h"
#include "gate/push.h"
#include "net/http.h"

/* ---- request parsing ---- */

struct cv_gate_target {
    enum cv_gate_op op;
    char *type, *id, *method; /* malloc'ed, decoded; method NULL unless op is CALL */
};

/* Parses the decoded request path (cv_http_request.path: the HTTP server already percent-decoded it, so
 * '/' in an id may come encoded as %2F or not): "/api/v1/objects/call/{type}/{id}/{method}",
 * ".../create/{type}/{id}" and ".../delete/{type}/{id}". The first segment is the type, for call the
 * last one is the method, and everything between is the id (it may contain '/'), since types and
 * methods never contain '/'.
 * Returns 0 (t filled; free with cv_gate_target_free), CV_ENOTFOUND if the path is not under
 * /api/v1/objects/{call,create,delete}/ (an unknown route: 404), CV_EINVAL with a message in err for a
 * malformed one (missing or empty type, id or method: 400), CV_ENOMEM. */
int cv_gate_parse_path(const char *path, struct cv_gate_target *t, char *err, size_t errlen);
void cv_gate_target_free(struct cv_gate_target *t);

#define CV_GATE_MAX_TIMEOUT_MS 3600000u /* one hour: longer per-call deadlines are refused */

/* The per-call deadline: the X-Cverse-Deadline-Ms header value (NULL if absent) wins over the query's
 * timeout_ms=N (query is the raw query string, "" if none). *out_ms = 0 when neither is given.
 * CV_EINVAL with a message for a value that is not a decimal integer 1..CV_GATE_MAX_TIMEOUT_MS. */
int cv_gate_parse_timeout(const char *query, const char *header, unsigned *out_ms, char *err, size_t errlen);

/* Whether the raw query string sets name=1 or name=true (compact=1: call responses without their
 * zero-valued fields). */
bool cv_gate_query_flag(const char *query, const char *name);

enum cv_gate_body_kind {
    CV_GATE_BODY_EMPTY = 0, /* no body, {} or {"request":null}: the empty request message, JSON reply */
    CV_GATE_BODY_JSON,      /* {"request":{...}}: proto3 JSON, JSON reply */
    CV_GATE_BODY_ANY        /* {"request":"<base64 of a serialized google.protobuf.Any>"}: Any reply */
};

struct cv_gate_body {
    enum cv_gate_body_kind kind;
    json_t *root;          /* the parsed document (owned), NULL for an empty body */
    const json_t *request; /* JSON: the request object (borrowed from root) */
    uint8_t *any;          /* ANY: decoded bytes (owned) */
    size_t any_len;
};

/* Parses a call's body (parsed with JSON_REJECT_DUPLICATES; a body of whitespace only is empty). The only
 * key allowed is "request". CV_EINVAL with a message for bad JSON, another key, a request that is neither
 * an object nor a string nor null, or bad base64; CV_ENOMEM. Free with cv_gate_body_free. */
int cv_gate_parse_body(const char *body, size_t len, struct cv_gate_body *out, char *err, size_t errlen);
void cv_gate_body_free(struct cv_gate_body *b);

/* ---- the handler ---- */

#define CV_GATE_EVENTS_PATH "/api/v1/events/stream" /* push clients' SSE stream (docs/push.md) */
/* cv_http_handler for the gate's HTTP server; data is a struct cv_gate_fronts (borrowed; its push may be
 * NULL: no event stream). */
void cv_gate_http_handler(void *data, struct cv_http_exchange *x, const struct cv_http_request *req);

#endif
