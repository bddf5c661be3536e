/* The gate's HTTP API (Goverse-compatible object calls, /healthz, /ready, /metrics) and its pure parts:
 * path parsing, per-call timeouts, request bodies, error -> HTTP status mapping. */
#ifndef CV_GATE_HTTPAPI_H
#define CV_GATE_HTTPAPI_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gate/gate.h"
#include "net/http.h"

/* ---- error mapping (shared with the native protocol's metrics) ---- */

enum cv_gate_code {
    CV_GATE_CODE_OK = 0,
    CV_GATE_CODE_INVALID_ARGUMENT,    /* 400: CV_EINVAL, CV_EPROTO, CV_ERANGE, CV_ETOOBIG */
    CV_GATE_CODE_NOT_FOUND,           /* 404: CV_ENOTFOUND */
    CV_GATE_CODE_ALREADY_EXISTS,      /* 409: CV_EEXIST */
    CV_GATE_CODE_FAILED_PRECONDITION, /* 409: CV_ECONFLICT (the id is active with another type) */
    CV_GATE_CODE_RESOURCE_EXHAUSTED,  /* 429 + Retry-After: CV_EBUSY */
    CV_GATE_CODE_UNAVAILABLE,         /* 503 + Retry-After: CV_EUNAVAIL, CV_EREDIRECT, CV_ECLOSED,
                                       * CV_ECANCELED, CV_ENOTLEADER, CV_ERETRY */
    CV_GATE_CODE_DEADLINE_EXCEEDED,   /* 504: CV_ETIMEDOUT */
    CV_GATE_CODE_INTERNAL,            /* 500: anything else */
    CV_GATE_N_CODES
};

struct cv_gate_error {
    int http_status;
    const char *code;  /* e.g. "NOT_FOUND" */
    bool retry_after;  /* send "Retry-After: 1" */
};

/* 0 and every CV_E* code to one of the codes above. */
enum cv_gate_code cv_gate_code_of(int status);
/* HTTP status, code name and Retry-After of a code (static, never NULL). */
const struct cv_gate_error *cv_gate_error_info(enum cv_gate_code c);

/* ---- request parsing ---- */

struct cv_gate_target {
    enum cv_gate_op op;
    char *type, *id, *method; /* malloc'ed, decoded; method NULL unless op is CALL */
};

/* Parses "/api/v1/objects/call/{type}/{id}/{method}", ".../create/{type}/{id}" and
 * ".../delete/{type}/{id}".
 * raw: path is as sent (not percent-decoded): segments are split on '/' first, then each one is
 * percent-decoded, so an id containing '/' must be sent as %2F (strict: exactly 3 or 2 segments).
 * !raw: path was already decoded by the HTTP server: the first segment is the type, for call the last
 * one is the method, and everything between is the id (it may contain '/'), since types and methods
 * never contain '/'.
 * Returns 0 (t filled; free with cv_gate_target_free), CV_ENOTFOUND if the path is not under
 * /api/v1/objects/{call,create,delete}/ (an unknown route: 404), CV_EINVAL with a message in err for a
 * malformed one (missing or empty segment, bad %-escape, encoded NUL: 400), CV_ENOMEM. */
int cv_gate_parse_path(const char *path, bool raw, struct cv_gate_target *t, char *err, size_t errlen);
void cv_gate_target_free(struct cv_gate_target *t);

#define CV_GATE_MAX_TIMEOUT_MS 3600000u /* one hour: longer per-call deadlines are refused */

/* The per-call deadline: the X-Cverse-Deadline-Ms header value (NULL if absent) wins over the query's
 * timeout_ms=N (query is the raw query string, "" if none). *out_ms = 0 when neither is given.
 * CV_EINVAL with a message for a value that is not a decimal integer 1..CV_GATE_MAX_TIMEOUT_MS. */
int cv_gate_parse_timeout(const char *query, const char *header, unsigned *out_ms, char *err, size_t errlen);

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

/* cv_http_handler for the gate's HTTP server; data is the struct cv_gate. */
void cv_gate_http_handler(void *data, struct cv_http_exchange *x, const struct cv_http_request *req);

#endif
