/* The single error table behind cv_strerror(): messages, names and retryability of CV_E* codes. */
#include "cverse/error.h"

struct errinfo {
    int code;
    int retry;
    const char *name;
    const char *status;
    const char *msg;
};

static const struct errinfo table[] = {
#define CV__ERR_ROW(name, value, retry, status, msg) {value, retry, #name, status, msg},
    CV_ERRNO_MAP(CV__ERR_ROW)
#undef CV__ERR_ROW
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

int cv_err_retryable(int err)
{
    const struct errinfo *e = lookup(err);
    return e ? e->retry : 0;
}

const char *cv_err_status(int err)
{
    const struct errinfo *e = lookup(err);
    return e ? e->status : "INTERNAL";
}
