/*
 * fit_log: one level for fitsyncd's messages and libwebsockets' (see fit_log.h).
 *
 * libwebsockets has more log classes than we have levels; each of our
 * levels turns on the classes of comparable weight: error -> ERR, warn ->
 * + WARN, notice and info -> + NOTICE and USER, debug -> + INFO and DEBUG.
 * lws's INFO class describes every connection's internals (header tables,
 * state changes), so it belongs with debug, not with our one line per
 * request. The parser, header and extension classes stay off: they log
 * every byte.
 */
#include "fit_log.h"

#include <libwebsockets.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const names[] = {"error", "warn", "notice", "info", "debug"};
#define NLEVELS ((int)(sizeof(names) / sizeof(names[0])))

/* Written once at start-up (fit_log_set_level), read-only afterwards; see fit_log.h. */
static fit_log_level current = FIT_LOG_NOTICE;

int fit_log_level_parse(const char *name)
{
    for (int i = 0; i < NLEVELS; i++)
        if (strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

const char *fit_log_level_name(int level)
{
    return level >= 0 && level < NLEVELS ? names[level] : "?";
}

/* libwebsockets' lines, marked as its own and with its class letter. */
static void lws_emit(int lws_level, const char *line)
{
    char c = lws_level & LLL_ERR      ? 'E'
             : lws_level & LLL_WARN   ? 'W'
             : lws_level & LLL_NOTICE ? 'N'
             : lws_level & LLL_INFO   ? 'I'
             : lws_level & LLL_DEBUG  ? 'D'
                                      : 'U';
    size_t n = strlen(line);
    fprintf(stderr, "fitsyncd: lws %c: %s%s", c, line, n && line[n - 1] == '\n' ? "" : "\n");
}

void fit_log_set_level(fit_log_level level)
{
    static const int masks[] = {
        LLL_ERR,
        LLL_ERR | LLL_WARN,
        LLL_ERR | LLL_WARN | LLL_NOTICE | LLL_USER,
        LLL_ERR | LLL_WARN | LLL_NOTICE | LLL_USER,
        LLL_ERR | LLL_WARN | LLL_NOTICE | LLL_USER | LLL_INFO | LLL_DEBUG,
    };
    if ((int)level < 0 || (int)level >= NLEVELS)
        level = FIT_LOG_NOTICE;
    current = level;
    lws_set_log_level(masks[level], lws_emit);
}

int fit_log_enabled(fit_log_level level)
{
    return level <= current;
}

void fit_log(fit_log_level level, const char *fmt, ...)
{
    if (level > current)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof(line)) /* said, not silently cut: the line ends in "[...]" */
        memcpy(line + sizeof(line) - 6, "[...]", 6);
    /* One fprintf per line, so lines of one process never interleave mid-line. */
    fprintf(stderr, "fitsyncd: %s\n", line);
}
