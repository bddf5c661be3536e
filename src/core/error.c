/* The single error table behind cv_strerror(): messages, names, client statuses (with their HTTP status)
 * and retry rules of CV_E* codes. Everything that maps an error for a client or decides on a retry reads
 * it here; nothing re-derives it.
 *
 * Happy path: both tables are generated from include/cverse/error.h's X-macros (CV_ERRNO_MAP,
 * CV_STATUS_MAP), so a new code is one row there; a lookup is a linear scan of ~20 rows (errors are the
 * slow path) and every accessor reads one column of the row it finds.
 * Failure modes: none fail. A code not in the table (a positive value, a stray errno) reads as "unknown
 * error" / CV_EUNKNOWN / INTERNAL, not retried, not re-routed; a status out of range reads as INTERNAL. */
#include "cverse/error.h"

struct errinfo {
    int code;
    enum cv_status status;
    int retry, reroute;
    const char *name;
    const char *msg;
};

static const struct errinfo table[] = {
#define CV__ERR_ROW(name, value, status, retry, reroute, msg) \
    {value, CV_STATUS_##status, retry, reroute, #name, msg},
    CV_ERRNO_MAP(CV__ERR_ROW)
#undef CV__ERR_ROW
};

static const struct {
    const char *name;
    int http, retry_after;
} statuses[CV_STATUS_N] = {
#define CV__STATUS_ROW(s, http, ra) [CV_STATUS_##s] = {#s, http, ra},
    CV_STATUS_MAP(CV__STATUS_ROW)
#undef CV__STATUS_ROW
};

static const struct errinfo *lookup(int err)
{
    for (unsigned i = 0; i < sizeof table / sizeof table[0]; i++)
        if (table[i].code == err) return &table[i];
    return 0;
}

const char *cv_strerror(int err)
{
    const struct errinfo *e = lookup(err);
    return e ? e->msg : "unknown error";
}

const char *cv_errname(int err)
{
    const struct errinfo *e = lookup(err);
    return e ? e->name : "CV_EUNKNOWN";
}

enum cv_status cv_err_code(int err)
{
    const struct errinfo *e = lookup(err);
    return e ? e->status : CV_STATUS_INTERNAL;
}

const char *cv_err_status(int err)
{
    return cv_status_name(cv_err_code(err));
}

int cv_err_http(int err)
{
    return cv_status_http(cv_err_code(err));
}

int cv_err_retryable(int err)
{
    const struct errinfo *e = lookup(err);
    return e ? e->retry : 0;
}

int cv_err_reroute(int err)
{
    const struct errinfo *e = lookup(err);
    return e ? e->reroute : 0;
}

static enum cv_status status_valid(enum cv_status s)
{
    return (unsigned)s < CV_STATUS_N ? s : CV_STATUS_INTERNAL;
}

const char *cv_status_name(enum cv_status s)
{
    return statuses[status_valid(s)].name;
}

int cv_status_http(enum cv_status s)
{
    return statuses[status_valid(s)].http;
}

int cv_status_retry_after(enum cv_status s)
{
    return statuses[status_valid(s)].retry_after;
}
