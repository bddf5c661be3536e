/* cverse error codes: one table for every module; functions return 0 or a negative CV_E* code. */
#ifndef CVERSE_ERROR_H
#define CVERSE_ERROR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Client-facing statuses (gRPC-style names, upper case) with their HTTP status and whether an HTTP
 * answer carries "Retry-After". Every error body any cverse process sends, native or HTTP, names one of
 * these; METHOD_NOT_ALLOWED .. HEADER_TOO_LARGE only come from HTTP servers themselves (never from a
 * CV_E* code). UNAUTHENTICATED / PERMISSION_DENIED: an endpoint behind a token (the inspector's
 * actions) without the right one / while no token is configured. APPLICATION_ERROR: a business error an
 * object's method answered with its own code (CV_EAPP); HTTP 422 "Unprocessable Content": the request
 * was well-formed and reached the object, which refused it by its own rules (409 stays the cluster's
 * "exists / state changed meanwhile", so a client can tell the two apart by status alone).
 * X(suffix, http, retry_after) */
#define CV_STATUS_MAP(X)              \
    X(OK, 200, 0)                     \
    X(INVALID_ARGUMENT, 400, 0)       \
    X(NOT_FOUND, 404, 0)              \
    X(ALREADY_EXISTS, 409, 0)         \
    X(FAILED_PRECONDITION, 409, 0)    \
    X(RESOURCE_EXHAUSTED, 429, 1)     \
    X(UNAVAILABLE, 503, 1)            \
    X(DEADLINE_EXCEEDED, 504, 0)      \
    X(INTERNAL, 500, 0)               \
    X(METHOD_NOT_ALLOWED, 405, 0)     \
    X(PAYLOAD_TOO_LARGE, 413, 0)      \
    X(URI_TOO_LONG, 414, 0)           \
    X(HEADER_TOO_LARGE, 431, 0)       \
    X(UNAUTHENTICATED, 401, 0)        \
    X(PERMISSION_DENIED, 403, 0)      \
    X(APPLICATION_ERROR, 422, 0)

enum cv_status {
#define CV__STATUS_ENUM(s, http, ra) CV_STATUS_##s,
    CV_STATUS_MAP(CV__STATUS_ENUM)
#undef CV__STATUS_ENUM
        CV_STATUS_N
};

/* X(name, value, status, retryable, reroute, message).
 * status: the CV_STATUS_* suffix clients see (gates and the CLI report it; HTTP answers with its status).
 * retryable: the operation may succeed if the caller tries again later (the outcome of the original
 *   attempt is then unknown or known not to have happened).
 * reroute: a forwarder (a gate, or a node calling another node's object) routes the call again by itself,
 *   transparently, until the call's deadline: the call certainly did not run (wrong owner, connection
 *   down before sending, leadership changed before commit).
 * CV_EAPP: the object's method refused the call with an application code of its own (cv_reply_app_error,
 *   e.g. "INSUFFICIENT_FUNDS"); the code travels with the message (core/apperr.h). It ran: never retried
 *   or rerouted by cverse. */
#define CV_ERRNO_MAP(X)                                                                                         \
    X(CV_OK, 0, OK, 0, 0, "success")                                                                            \
    X(CV_ENOMEM, -1, INTERNAL, 0, 0, "out of memory")                                                           \
    X(CV_EINVAL, -2, INVALID_ARGUMENT, 0, 0, "invalid argument")                                                \
    X(CV_EIO, -3, INTERNAL, 0, 0, "I/O error")                                                                  \
    X(CV_ECONFIG, -4, INTERNAL, 0, 0, "invalid configuration")                                                  \
    X(CV_ENOTLEADER, -5, UNAVAILABLE, 1, 1, "not the raft leader")                                              \
    X(CV_ERETRY, -6, UNAVAILABLE, 1, 1, "leadership changed before the entry committed; retry")                 \
    X(CV_ENOTFOUND, -7, NOT_FOUND, 0, 0, "not found")                                                           \
    X(CV_EEXIST, -8, ALREADY_EXISTS, 0, 0, "already exists")                                                    \
    X(CV_EPROTO, -9, INVALID_ARGUMENT, 0, 0, "malformed message")                                               \
    X(CV_ETIMEDOUT, -10, DEADLINE_EXCEEDED, 1, 0, "deadline exceeded")                                          \
    X(CV_EUNAVAIL, -11, UNAVAILABLE, 1, 1, "unavailable")                                                       \
    X(CV_ECLOSED, -12, UNAVAILABLE, 1, 1, "connection or component closed")                                     \
    X(CV_ETOOBIG, -13, INVALID_ARGUMENT, 0, 0, "message too large")                                             \
    X(CV_ELMDB, -14, INTERNAL, 0, 0, "LMDB error")                                                              \
    X(CV_ERAFT, -15, INTERNAL, 0, 0, "raft error")                                                              \
    X(CV_EBUSY, -16, RESOURCE_EXHAUSTED, 1, 0, "resource exhausted")                                            \
    X(CV_ERANGE, -17, INVALID_ARGUMENT, 0, 0, "value out of range")                                             \
    X(CV_EREDIRECT, -18, UNAVAILABLE, 1, 1, "wrong owner; refresh the shard map and retry")                     \
    X(CV_ECONFLICT, -19, FAILED_PRECONDITION, 0, 0, "precondition failed (state changed meanwhile)")            \
    X(CV_ECANCELED, -20, UNAVAILABLE, 1, 0, "canceled")                                                     \
    X(CV_EAUTH, -21, UNAUTHENTICATED, 0, 0, "missing or wrong credentials")                                 \
    X(CV_EPERM, -22, PERMISSION_DENIED, 0, 0, "not permitted")                                             \
    X(CV_ESTATESIZE, -23, FAILED_PRECONDITION, 0, 0, "object state exceeds the size limit")                 \
    X(CV_ECALLEXPIRED, -24, FAILED_PRECONDITION, 0, 0, "call id is older than the object's call-id window") \
    X(CV_EAPP, -25, APPLICATION_ERROR, 0, 0, "application error")

enum cv_errno {
#define CV__ERR_ENUM(name, value, status, retry, reroute, msg) name = value,
    CV_ERRNO_MAP(CV__ERR_ENUM)
#undef CV__ERR_ENUM
};

/* An application error (CV_EAPP) as its receiver sees it. Every pointer is borrowed: valid as long as the
 * function that handed it out says. */
#define CV_APP_CODE_MAX 64 /* bytes of an application code: 1..64 of [A-Za-z0-9_.-] */
struct cv_app_error {
    const char *code;         /* e.g. "INSUFFICIENT_FUNDS" */
    const char *message;      /* for humans, e.g. "balance 5, withdraw 10"; never NULL */
    const char *details_type; /* full protobuf name of the details message ("wallet.Overdraft"), "" if none */
    const uint8_t *details;   /* the packed details message; details_len 0 when none */
    size_t details_len;
};

/* Static message for a CV_E* code; never NULL (unknown codes give "unknown error"). */
const char *cv_strerror(int err);
/* Symbolic name, e.g. "CV_ENOTLEADER"; never NULL. */
const char *cv_errname(int err);
/* Client-facing status of a code; CV_STATUS_INTERNAL for unknown codes. */
enum cv_status cv_err_code(int err);
/* Its name, e.g. "UNAVAILABLE" (= cv_status_name(cv_err_code(err))). */
const char *cv_err_status(int err);
/* Its HTTP status (= cv_status_http(cv_err_code(err))). */
int cv_err_http(int err);
/* 1 if a caller may retry the operation that failed with err. */
int cv_err_retryable(int err);
/* 1 if a forwarder routes the call again by itself (see CV_ERRNO_MAP). */
int cv_err_reroute(int err);

/* Name ("NOT_FOUND"), HTTP status and Retry-After flag of a status; unknown values give INTERNAL's. */
const char *cv_status_name(enum cv_status s);
int cv_status_http(enum cv_status s);
int cv_status_retry_after(enum cv_status s);

#ifdef __cplusplus
}
#endif
#endif
