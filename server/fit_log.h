/*
 * fit_log: fitsyncd's own log, and the libwebsockets log, at one level.
 *
 * Five levels, each showing everything of the ones before it: error (a
 * failure: start-up stops, or a request could not be served), warn
 * (service is degraded but continues: Redis unavailable, no dashboard
 * files), notice (the server's life: listening, Redis ready, signals,
 * stopped), info (one line per HTTP request) and debug. The configured
 * level (config log_level) also sets the libwebsockets log mask
 * (lws_set_log_level), whose lines are written as "fitsyncd: lws X: ...".
 *
 * The level is process-wide state, like libwebsockets' own log mask: it is
 * set once at start-up, before the loop runs, and only read afterwards.
 * Lines go to stderr.
 */
#ifndef FIT_LOG_H
#define FIT_LOG_H

typedef enum {
    FIT_LOG_ERROR = 0,
    FIT_LOG_WARN,
    FIT_LOG_NOTICE,
    FIT_LOG_INFO,
    FIT_LOG_DEBUG
} fit_log_level;

/* The level named "error", "warn", "notice", "info" or "debug"; -1 for any other name. */
int fit_log_level_parse(const char *name);

/* "error" .. "debug"; "?" for a value outside the enum. Static string. */
const char *fit_log_level_name(int level);

/* Sets fitsyncd's level and the libwebsockets log mask that matches it. */
void fit_log_set_level(fit_log_level level);

/* 1 if a line at this level is written, else 0. */
int fit_log_enabled(fit_log_level level);

/* Writes "fitsyncd: <message>\n" to stderr if level is enabled. */
void fit_log(fit_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
