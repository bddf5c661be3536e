/* cverse error codes: one table for every module; functions return 0 or a negative CV_E* code. */
#ifndef CVERSE_ERROR_H
#define CVERSE_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

/* X(name, value, retryable, status, message). status: the client-facing code name (gRPC style) that
 * gates and the CLI report, e.g. "NOT_FOUND"; the gate maps it to HTTP. Retryable errors may succeed if the
 * caller tries again later (the outcome of the original attempt is then unknown or known not to have
 * happened). */
#define CV_ERRNO_MAP(X)                                                                             \
    X(CV_OK, 0, 0, "OK", "success")                                                                 \
    X(CV_ENOMEM, -1, 0, "INTERNAL", "out of memory")                                                \
    X(CV_EINVAL, -2, 0, "INVALID_ARGUMENT", "invalid argument")                                     \
    X(CV_EIO, -3, 0, "INTERNAL", "I/O error")                                                       \
    X(CV_ECONFIG, -4, 0, "INTERNAL", "invalid configuration")                                       \
    X(CV_ENOTLEADER, -5, 1, "UNAVAILABLE", "not the raft leader")                                   \
    X(CV_ERETRY, -6, 1, "UNAVAILABLE", "leadership changed before the entry committed; retry")      \
    X(CV_ENOTFOUND, -7, 0, "NOT_FOUND", "not found")                                                \
    X(CV_EEXIST, -8, 0, "ALREADY_EXISTS", "already exists")                                         \
    X(CV_EPROTO, -9, 0, "INVALID_ARGUMENT", "malformed message")                                    \
    X(CV_ETIMEDOUT, -10, 1, "DEADLINE_EXCEEDED", "deadline exceeded")                               \
    X(CV_EUNAVAIL, -11, 1, "UNAVAILABLE", "unavailable")                                            \
    X(CV_ECLOSED, -12, 1, "UNAVAILABLE", "connection or component closed")                          \
    X(CV_ETOOBIG, -13, 0, "INVALID_ARGUMENT", "message too large")                                  \
    X(CV_ELMDB, -14, 0, "INTERNAL", "LMDB error")                                                   \
    X(CV_ERAFT, -15, 0, "INTERNAL", "raft error")                                                   \
    X(CV_EBUSY, -16, 1, "RESOURCE_EXHAUSTED", "resource exhausted")                                 \
    X(CV_ERANGE, -17, 0, "INVALID_ARGUMENT", "value out of range")                                  \
    X(CV_EREDIRECT, -18, 1, "UNAVAILABLE", "wrong owner; refresh the shard map and retry")          \
    X(CV_ECONFLICT, -19, 0, "FAILED_PRECONDITION", "precondition failed (state changed meanwhile)") \
    X(CV_ECANCELED, -20, 1, "UNAVAILABLE", "canceled")

enum cv_errno {
#define CV__ERR_ENUM(name, value, retry, status, msg) name = value,
    CV_ERRNO_MAP(CV__ERR_ENUM)
#undef CV__ERR_ENUM
};

/* Static message for a CV_E* code; never NULL (unknown codes give "unknown error"). */
const char *cv_strerror(int err);
/* Symbolic name, e.g. "CV_ENOTLEADER"; never NULL. */
const char *cv_errname(int err);
/* Client-facing status name, e.g. "UNAVAILABLE"; "INTERNAL" for unknown codes. */
const char *cv_err_status(int err);
/* 1 if a caller may retry the operation that failed with err. */
int cv_err_retryable(int err);

#ifdef __cplusplus
}
#endif
#endif
