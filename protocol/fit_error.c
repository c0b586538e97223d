/*
 * fit_error: names and messages for the error codes of fit_error.h. The table
 * is generated from FIT_ERRNO_MAP so the enum, the wire names and the docs'
 * table cannot drift apart (tests/unit/test_message.c checks the docs).
 */
#include "fit_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

struct fit_err_info {
    const char *name;
    int retryable;
    const char *message;
};

static const struct fit_err_info fit_errs[] = {
#define FIT__INFO(e, name, retry, msg) {name, retry, msg},
    FIT_ERRNO_MAP(FIT__INFO)
#undef FIT__INFO
};

static const struct fit_err_info *lookup(int err)
{
    int i = err - (FIT__FIRST + 1);
    if (i < 0 || i >= (int)(sizeof(fit_errs) / sizeof(fit_errs[0])))
        return NULL;
    return &fit_errs[i];
}

const char *fit_err_name(int err)
{
    const struct fit_err_info *e = lookup(err);
    return e ? e->name : "internal";
}

const char *fit_strerror(int err)
{
    const struct fit_err_info *e = lookup(err);
    if (err == 0)
        return "ok";
    return e ? e->message : "internal error";
}

int fit_err_retryable(int err)
{
    const struct fit_err_info *e = lookup(err);
    return e ? e->retryable : 0;
}

int fit_field_error_set(fit_field_error *err, int code, const char *field, const char *fmt, ...)
{
    err->code = code;
    snprintf(err->field, sizeof(err->field), "%s", field ? field : "");
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
    } else {
        snprintf(err->message, sizeof(err->message), "%s", fit_strerror(code));
    }
    return code;
}
