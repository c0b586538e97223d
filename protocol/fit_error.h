/*
 * fit_error: the one table of fitsync error codes.
 *
 * Internally every function returns 0 on success or a negative FIT_E* value
 * (the libuv rule). On the wire each code has a stable lower-case name that
 * clients switch on; docs/PROTOCOL.md lists the same table. Names never change
 * meaning once published: add new codes at the end of the map instead.
 */
#ifndef FIT_ERROR_H
#define FIT_ERROR_H

/* X(ENUM, wire name, retryable, default message) */
#define FIT_ERRNO_MAP(X)                                                                           \
    X(BAD_JSON, "bad_json", 0, "message is not valid JSON text")                                   \
    X(BAD_MESSAGE, "bad_message", 0, "message is not a JSON object with a string \"type\"")        \
    X(UNKNOWN_TYPE, "unknown_type", 0, "unknown message type")                                     \
    X(MISSING_FIELD, "missing_field", 0, "a required field is missing")                            \
    X(INVALID_TYPE, "invalid_type", 0, "a field has the wrong JSON type")                          \
    X(INVALID_VALUE, "invalid_value", 0, "a field's value is malformed or out of range")           \
    X(UNKNOWN_FIELD, "unknown_field", 0, "a field is not part of this message")                    \
    X(TOO_LARGE, "too_large", 0, "message exceeds the size limit")                                 \
    X(BATCH_TOO_LARGE, "batch_too_large", 0, "batch exceeds the item limit")                       \
    X(UNAUTHENTICATED, "unauthenticated", 0, "send hello with a valid token first")                \
    X(INVALID_TOKEN, "invalid_token", 0, "token is malformed or its signature does not verify")    \
    X(TOKEN_EXPIRED, "token_expired", 0, "token has expired")                                      \
    X(FORBIDDEN, "forbidden", 0, "this role may not do that")                                      \
    X(ALREADY_AUTHENTICATED, "already_authenticated", 0, "hello was already accepted")             \
    X(BAD_OFFSET, "bad_offset", 0, "UTC offset must be within -14:00..+14:00")                     \
    X(DURATION_OUT_OF_RANGE, "duration_out_of_range", 0, "duration must be > 0 s and <= 24 h")     \
    X(FUTURE_TIME, "future_time", 0, "time is more than the allowed tolerance in the future")      \
    X(TOO_OLD, "too_old", 0, "time is older than the acceptance window (max_age_weeks)")           \
    X(UNKNOWN_ACTIVITY_TYPE, "unknown_activity_type", 0,                                           \
      "activity type is not in the MET table; send intensity or met")                              \
    X(CONFLICT, "conflict", 0, "client_id already holds different content")                        \
    X(UNAVAILABLE, "unavailable", 1, "storage is unavailable; retry later")                        \
    X(INTERNAL, "internal", 1, "internal error")                                                   \
    X(NOMEM, "no_memory", 1, "out of memory")                                                      \
    X(IO, "io_error", 0, "file or system error")                                                   \
    X(NOT_FOUND, "not_found", 0, "no such item")                                                   \
    X(RESYNC_REQUIRED, "resync_required", 0,                                                       \
      "cursor is older than the change log window; call sync.snapshot")                            \
    X(RATE_LIMITED, "rate_limited", 1, "too many messages; retry after retry_after_ms")            \
    X(TOO_MANY_SUBSCRIPTIONS, "too_many_subscriptions", 0,                                         \
      "this connection holds the most leaderboard subscriptions allowed")                          \
    X(EVENT_FINISHED, "event_finished", 0,                                                         \
      "the event has finished; its results are final (a host may event.reopen)")                   \
    X(METHOD_NOT_ALLOWED, "method_not_allowed", 0, "HTTP method not allowed on this path")

typedef enum {
    FIT_OK = 0,
#define FIT__ENUM(e, name, retry, msg) FIT_E##e,
    FIT__FIRST = -1000,
    FIT_ERRNO_MAP(FIT__ENUM)
#undef FIT__ENUM
        FIT__LAST
} fit_errno;

/* Wire name of an error code ("invalid_value"); "internal" for unknown codes. Static string. */
const char *fit_err_name(int err);

/* Default English message for an error code. Static string. */
const char *fit_strerror(int err);

/* 1 if a client should retry the same request later (e.g. FIT_EUNAVAILABLE), else 0. */
int fit_err_retryable(int err);

/*
 * A validation failure: the code, the path of the offending field relative to
 * the item being validated (e.g. "start"; callers prefix "activities[3].") and
 * a human message. Fixed-size so it can live on the stack; no ownership.
 */
typedef struct {
    int code;
    char field[128];
    char message[192];
} fit_field_error;

/* Fills err and returns err->code (always negative). printf-style message; NULL uses the default.
 */
int fit_field_error_set(fit_field_error *err, int code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
