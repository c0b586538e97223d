/*
 * fitsync-import: loads a Fitbit daily-activity export into fitsync over the
 * public protocol, then reads every touched week back and writes a report.
 *
 * Why over the wire, and not straight into Redis: the import should go
 * through exactly the validation, deduplication and scoring that a phone's
 * upload goes through (DESIGN.md decisions 4 and 5), so that what it reports
 * is what a member would see. Each Fitbit user becomes the fitsync user
 * "fitbit-<Id>"; the tool mints that user's member token with the secret the
 * server uses (fit_secret_find: FITSYNC_TOKEN_SECRET, else
 * <data-dir>/token.secret) and connects as that user's own device.
 *
 * Shape of a run:
 *
 *   1. Read the CSV whole. Every row is checked here first (ActivityDate as
 *      M/D/YYYY, zero-padded or not; whole non-negative minutes and steps; a
 *      distance in km) and a malformed row is reported with its line number
 *      and counted as rejected; it is never sent. Rows are sorted by user,
 *      date and line, which groups them into users and makes repeated
 *      (user, date) rows easy to spot. A row becomes one daily summary:
 *      moderate_min = FairlyActiveMinutes, vigorous_min = VeryActiveMinutes,
 *      light_min = LightlyActiveMinutes, steps = TotalSteps, distance_m =
 *      TotalDistance (km) x 1000 rounded, source "fitbit", utc_offset
 *      --utc-offset (default +00:00), recorded_at the last second of that
 *      local day (a day's total is final then, and a re-import of the same
 *      file is then byte-identical, so the server answers "duplicate").
 *   2. One libuv loop; libwebsockets runs on it as a foreign-loop user, as
 *      in fitsyncd (server/fit_server.c). Up to --concurrency users are in
 *      flight at once, one WebSocket connection each. A connection is a
 *      small state machine: hello -> welcome; every summary.upload batch
 *      (at most min(500, the server's limits.max_batch) rows) pipelined ->
 *      all acknowledged; one week.get per ISO week that has rows, pipelined
 *      -> all answered; close. Replies are matched by "re"; pushes (no "re")
 *      are ignored. Writes happen only in LWS_CALLBACK_CLIENT_WRITEABLE,
 *      one queued frame per callback; received fragments are reassembled.
 *   3. Nothing may hang: a per-connection deadline (connect timeout, then a
 *      reply timeout that restarts with every message) is checked by a tick
 *      timer. The first failed connection stops new ones from starting (a
 *      server that is down fails every user the same way), lets the others
 *      finish, and the run exits non-zero naming the error.
 *   4. The report (user,week,moderate_min,vigorous_min,equiv_min,
 *      target_min,aerobic_met) is written sorted by user then week, to a
 *      temporary file renamed into place, and only when every user was
 *      read back. One summary line goes to stderr.
 *
 * Memory: all state hangs off one import_app, owned by main(). A user's
 * connection state lives in its import_user and outlives the wsi: lws may
 * still call back with the user pointer while a connection is being torn
 * down, so users are freed only after the lws context is destroyed.
 */
#include "fit_activity.h"
#include "fit_config.h"
#include "fit_error.h"
#include "fit_time.h"
#include "fit_token.h"
#include "fit_wsio.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <libwebsockets.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#define IMPORT_SUBPROTOCOL "fitsync.v1"
#define IMPORT_SOURCE "fitbit"
#define IMPORT_DEVICE_ID "fitsync-import"
#define IMPORT_USER_PREFIX "fitbit-"
#define IMPORT_MAX_BATCH 500
#define IMPORT_MAX_CONCURRENCY 256
#define IMPORT_DEFAULT_CONCURRENCY 8
#define IMPORT_DEFAULT_CONNECT_TIMEOUT_S 10
#define IMPORT_DEFAULT_REPLY_TIMEOUT_S 60
#define IMPORT_KILL_GRACE_MS 2000
#define IMPORT_TICK_MS 100
#define IMPORT_TOKEN_TTL_S 3600
#define IMPORT_MAX_RX (16u * 1024u * 1024u)
#define IMPORT_ID_MAX 40 /* digits of a Fitbit Id; "fitbit-" + 40 < 64 */

/* ------------------------------------------------------------------ */
/* data                                                                */

/* One valid CSV row, already converted to fitsync's units. */
typedef struct {
    char user[FIT_CLIENT_ID_MAX + 1]; /* "fitbit-<Id>" */
    fit_date date;
    char date_str[FIT_DATE_LEN];
    char week[FIT_WEEK_LEN];
    long line; /* 1-based line in the CSV, for messages */
    int moderate_min, vigorous_min, light_min;
    long long steps;
    long long distance_m;
} import_row;

/* One ISO week of a user, as week.get answered it. */
typedef struct {
    char week[FIT_WEEK_LEN];
    int have; /* 1 once the reply arrived */
    int moderate_min, vigorous_min, equivalent_min, target_min, aerobic_met;
} import_week;

typedef enum {
    CONN_WAITING,    /* not started */
    CONN_CONNECTING, /* TCP + WebSocket handshake */
    CONN_HELLO,      /* hello sent, waiting for welcome */
    CONN_UPLOADING,  /* batches sent, waiting for their replies */
    CONN_READING,    /* week.get sent, waiting for the weeks */
    CONN_CLOSING,    /* asked lws to close (normally, or after a failure) */
    CONN_DONE        /* the wsi is gone (or abandoned); nothing more happens */
} conn_state;

typedef struct import_app import_app;

/* A user: its rows (borrowed slice of app->rows), its weeks, and its connection. */
typedef struct {
    import_app *app;
    char user[FIT_CLIENT_ID_MAX + 1];
    import_row *rows;
    size_t nrows;
    import_week *weeks; /* owned; in date order, which is also name order */
    size_t nweeks;
    /* connection */
    struct lws *wsi;
    conn_state state;
    int failed;             /* an error was reported for this user */
    int killing;            /* lws was told to drop the wsi; deadline is the grace period */
    uint64_t deadline_ms;   /* uv_now() by which the next thing must happen */
    size_t batch_size;      /* rows per summary.upload */
    size_t batches_pending; /* upload replies still to come */
    size_t weeks_pending;   /* week.get replies still to come */
    char peer_close[160];   /* the server's close code and reason, if it sent one */
    fit_wsio io;            /* queued frames and the reassembly of incoming messages */
} import_user;

/* The one application struct: options, data and the running state. */
struct import_app {
    /* options */
    const char *csv_path;
    const char *url;
    const char *report_path; /* "-" = stdout */
    const char *data_dir;
    int concurrency;
    int connect_timeout_s;
    int reply_timeout_s;
    char utc_offset[8]; /* "+hh:mm" */
    /* parsed --url */
    char host[256];
    char host_header[300];
    int port;
    char path[512];
    char secret[256];
    /* data */
    import_row *rows;
    size_t nrows, caprows;
    long malformed; /* rows rejected locally */
    import_user *users;
    size_t nusers;
    /* run */
    uv_loop_t loop;
    uv_timer_t tick;
    uv_timer_t kick;
    uv_signal_t sigint, sigterm;
    int handles_open;
    void *foreign_loops[1];
    struct lws_context *ctx; /* set to NULL by lws once fully destroyed (pcontext) */
    size_t next_user;        /* users[0..next_user) have been started */
    size_t active;           /* connections not yet DONE */
    int stopping;            /* start no new connections */
    int interrupted;
    int finished;
    uint64_t started_ns, finished_ns;
    /* tallies */
    long accepted, applied, duplicate, stale, server_rejected, weeks_read;
    size_t failed_users;
    char last_error[400];   /* the last connection error printed */
    size_t repeated_errors; /* failures not printed because they repeated last_error */
};

/* ------------------------------------------------------------------ */
/* small helpers                                                       */

/* Trims ASCII spaces and tabs at both ends, in place. Returns s. */
static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    return s;
}

/* Parses a whole non-negative decimal integer in [0, max]. Returns 0 or -1. */
static int parse_count(const char *s, long long max, long long *out)
{
    if (!*s || strspn(s, "0123456789") != strlen(s) || strlen(s) > 18)
        return -1;
    long long v = strtoll(s, NULL, 10);
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

/* Parses M/D/YYYY or MM/DD/YYYY (a real date). Returns 0 or -1. */
static int parse_us_date(const char *s, fit_date *out)
{
    int part[3], digits[3] = {0, 0, 0};
    for (int i = 0; i < 3; i++) {
        part[i] = 0;
        while (isdigit((unsigned char)*s) && digits[i] < 4) {
            part[i] = part[i] * 10 + (*s++ - '0');
            digits[i]++;
        }
        if (i < 2 && *s++ != '/')
            return -1;
    }
    if (*s || digits[0] < 1 || digits[0] > 2 || digits[1] < 1 || digits[1] > 2 || digits[2] != 4)
        return -1;
    fit_date d = {part[2], part[0], part[1]};
    if (!fit_date_valid(d))
        return -1;
    *out = d;
    return 0;
}

/*
 * Splits one CSV line in place (RFC 4180: fields may be quoted, "" is a
 * quote inside a quoted field). fields receives up to max pointers into
 * line. Returns the number of fields, or -1 for a malformed quote.
 */
static int csv_split(char *line, char **fields, int max)
{
    int n = 0;
    char *r = line, *w = line;
    for (;;) {
        char *start = w;
        if (*r == '"') {
            r++;
            for (;;) {
                if (!*r)
                    return -1; /* unterminated quote */
                if (*r == '"') {
                    if (r[1] == '"') {
                        *w++ = '"';
                        r += 2;
                        continue;
                    }
                    r++;
                    break;
                }
                *w++ = *r++;
            }
            if (*r && *r != ',')
                return -1; /* text after the closing quote */
        } else {
            while (*r && *r != ',') {
                if (*r == '"')
                    return -1; /* a quote inside an unquoted field */
                *w++ = *r++;
            }
        }
        int more = *r == ',';
        if (more)
            r++;
        *w++ = '\0';
        if (n < max)
            fields[n] = start;
        n++;
        if (!more)
            return n;
    }
}

/* Milliseconds of the loop's clock. */
static uint64_t now_ms(import_app *app)
{
    return uv_now(&app->loop);
}

/* ------------------------------------------------------------------ */
/* CSV                                                                 */

/* The columns the import reads, by header name; the rest are ignored. */
enum { COL_ID, COL_DATE, COL_STEPS, COL_DISTANCE, COL_VERY, COL_FAIRLY, COL_LIGHT, NCOLS };
static const char *const column_names[NCOLS] = {"Id",
                                                "ActivityDate",
                                                "TotalSteps",
                                                "TotalDistance",
                                                "VeryActiveMinutes",
                                                "FairlyActiveMinutes",
                                                "LightlyActiveMinutes"};

#define CSV_MAX_FIELDS 256

/* Reports a malformed row on stderr. */
static void row_error(import_app *app, long line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void row_error(import_app *app, long line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "fitsync-import: %s:%ld: ", app->csv_path, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("; row skipped\n", stderr);
    app->malformed++;
}

/*
 * Converts the fields of one data row into *row. Returns 0, or -1 after
 * reporting why the row is malformed.
 */
static int row_parse(import_app *app, long line, char **f, const int *col, import_row *row)
{
    memset(row, 0, sizeof(*row));
    row->line = line;
    const char *id = trim(f[col[COL_ID]]);
    if (!*id || strlen(id) > IMPORT_ID_MAX || strspn(id, "0123456789") != strlen(id)) {
        row_error(app, line, "Id \"%.60s\" is not a number of 1..%d digits", id, IMPORT_ID_MAX);
        return -1;
    }
    snprintf(row->user, sizeof(row->user), "%s%s", IMPORT_USER_PREFIX, id);

    const char *date = trim(f[col[COL_DATE]]);
    if (parse_us_date(date, &row->date) != 0) {
        row_error(app, line, "ActivityDate \"%.60s\" is not a date like 4/12/2016 or 04/12/2016",
                  date);
        return -1;
    }
    fit_date_format(row->date, row->date_str);
    fit_date_week_name(row->date, row->week);

    static const struct {
        int col;
        long long max;
    } counts[] = {{COL_VERY, 1440}, {COL_FAIRLY, 1440}, {COL_LIGHT, 1440}, {COL_STEPS, 500000}};
    long long v[4];
    for (size_t i = 0; i < 4; i++) {
        const char *s = trim(f[col[counts[i].col]]);
        if (parse_count(s, counts[i].max, &v[i]) != 0) {
            row_error(app, line, "%s \"%.60s\" is not a whole number in 0..%lld",
                      column_names[counts[i].col], s, counts[i].max);
            return -1;
        }
    }
    row->vigorous_min = (int)v[0];
    row->moderate_min = (int)v[1];
    row->light_min = (int)v[2];
    row->steps = v[3];

    char *dist = trim(f[col[COL_DISTANCE]]), *end;
    errno = 0;
    double km = strtod(dist, &end);
    if (!*dist || *end || errno || !isfinite(km) || km < 0 || km > 1000) {
        row_error(app, line, "TotalDistance \"%.60s\" is not a distance in km (0..1000)", dist);
        return -1;
    }
    row->distance_m = llround(km * 1000.0);
    return 0;
}

/* Appends a row to app->rows. Returns 0 or -1 (out of memory). */
static int rows_push(import_app *app, const import_row *row)
{
    if (app->nrows == app->caprows) {
        size_t cap = app->caprows ? app->caprows * 2 : 1024;
        import_row *p = realloc(app->rows, cap * sizeof(*p));
        if (!p)
            return -1;
        app->rows = p;
        app->caprows = cap;
    }
    app->rows[app->nrows++] = *row;
    return 0;
}

/*
 * Reads the CSV into app->rows. Malformed rows are reported and counted
 * in app->malformed. Returns 0, or -1 if the file cannot be used at all
 * (cannot be read, no header, a required column missing).
 */
static int csv_load(import_app *app)
{
    FILE *f = strcmp(app->csv_path, "-") == 0 ? stdin : fopen(app->csv_path, "r");
    if (!f) {
        fprintf(stderr, "fitsync-import: cannot open %s: %s\n", app->csv_path, strerror(errno));
        return -1;
    }
    char *line = NULL, *fields[CSV_MAX_FIELDS];
    size_t cap = 0;
    ssize_t n;
    long lineno = 0;
    int col[NCOLS], nheader = 0, rc = -1;
    while ((n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        char *text = line;
        if (lineno == 1 && (unsigned char)text[0] == 0xEF && (unsigned char)text[1] == 0xBB &&
            (unsigned char)text[2] == 0xBF)
            text += 3; /* a UTF-8 byte order mark, as spreadsheet exports write */
        if (nheader == 0) {
            nheader = csv_split(text, fields, CSV_MAX_FIELDS);
            if (nheader <= 0 || nheader > CSV_MAX_FIELDS) {
                fprintf(stderr, "fitsync-import: %s:%ld: the header is not a CSV line\n",
                        app->csv_path, lineno);
                goto out;
            }
            for (int c = 0; c < NCOLS; c++) {
                col[c] = -1;
                for (int i = 0; i < nheader; i++)
                    if (strcmp(trim(fields[i]), column_names[c]) == 0)
                        col[c] = i;
                if (col[c] < 0) {
                    fprintf(stderr,
                            "fitsync-import: %s:%ld: no column \"%s\" in the header; is this a "
                            "Fitbit dailyActivity export?\n",
                            app->csv_path, lineno, column_names[c]);
                    goto out;
                }
            }
            continue;
        }
        if (n == 0 || strspn(text, " \t") == (size_t)n)
            continue; /* blank lines (a trailing one is common) carry nothing */
        int nf = csv_split(text, fields, CSV_MAX_FIELDS);
        if (nf < 0) {
            row_error(app, lineno, "malformed quoting");
            continue;
        }
        if (nf != nheader) {
            row_error(app, lineno, "%d fields where the header has %d", nf, nheader);
            continue;
        }
        import_row row;
        if (row_parse(app, lineno, fields, col, &row) != 0)
            continue;
        if (rows_push(app, &row) != 0) {
            fprintf(stderr, "fitsync-import: out of memory reading %s\n", app->csv_path);
            goto out;
        }
    }
    if (ferror(f)) {
        fprintf(stderr, "fitsync-import: error reading %s: %s\n", app->csv_path, strerror(errno));
        goto out;
    }
    if (nheader == 0) {
        fprintf(stderr, "fitsync-import: %s is empty (no header line)\n", app->csv_path);
        goto out;
    }
    rc = 0;
out:
    free(line);
    if (f != stdin)
        fclose(f);
    return rc;
}

static int row_cmp(const void *a, const void *b)
{
    const import_row *x = a, *y = b;
    int c = strcmp(x->user, y->user);
    if (c)
        return c;
    int64_t dx = fit_days_from_civil(x->date), dy = fit_days_from_civil(y->date);
    if (dx != dy)
        return dx < dy ? -1 : 1;
    return (x->line > y->line) - (x->line < y->line);
}

/*
 * Sorts the rows and groups them into app->users, each with the sorted set
 * of ISO weeks its rows fall in. Warns about repeated (user, date) rows:
 * both are sent, and the server keeps one (DESIGN.md decision 4).
 * Returns 0 or -1 (out of memory).
 */
static int users_build(import_app *app)
{
    if (app->nrows == 0)
        return 0;
    qsort(app->rows, app->nrows, sizeof(*app->rows), row_cmp);
    size_t nusers = 1;
    for (size_t i = 1; i < app->nrows; i++)
        nusers += strcmp(app->rows[i].user, app->rows[i - 1].user) != 0;
    app->users = calloc(nusers, sizeof(*app->users));
    if (!app->users)
        return -1;
    for (size_t i = 0; i < app->nrows; i++) {
        import_row *r = &app->rows[i];
        if (i == 0 || strcmp(r->user, r[-1].user) != 0) {
            import_user *u = &app->users[app->nusers++];
            u->app = app;
            snprintf(u->user, sizeof(u->user), "%s", r->user);
            u->rows = r;
        } else if (fit_days_from_civil(r->date) == fit_days_from_civil(r[-1].date)) {
            fprintf(stderr,
                    "fitsync-import: %s:%ld: warning: %s on %s repeats line %ld; both are sent "
                    "and the server keeps one\n",
                    app->csv_path, r->line, r->user, r->date_str, r[-1].line);
        }
        import_user *u = &app->users[app->nusers - 1];
        u->nrows++;
        /* Rows are in date order, so a new week differs from the last one seen. */
        if (u->nweeks == 0 || strcmp(u->weeks[u->nweeks - 1].week, r->week) != 0) {
            import_week *p = realloc(u->weeks, (u->nweeks + 1) * sizeof(*p));
            if (!p)
                return -1;
            u->weeks = p;
            memset(&u->weeks[u->nweeks], 0, sizeof(*p));
            snprintf(u->weeks[u->nweeks].week, FIT_WEEK_LEN, "%s", r->week);
            u->nweeks++;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* connections                                                         */

static void app_kick(import_app *app);

/*
 * The connection is over: forget the wsi, free the buffers, let another
 * user start. Idempotent, because lws may report the end more than once
 * (CLIENT_CLOSED, then WSI_DESTROY).
 */
static void conn_finish(import_user *u)
{
    if (u->state == CONN_DONE || u->state == CONN_WAITING)
        return;
    u->state = CONN_DONE;
    u->wsi = NULL;
    fit_wsio_free(&u->io);
    u->app->active--;
    app_kick(u->app);
}

/*
 * Records the user's failure (an error repeating the last one printed is
 * only counted) and stops new connections from starting. It does not close
 * the wsi itself: inside an lws callback the callback returns -1 when
 * u->failed is set; outside one (timers, signals) the caller uses
 * conn_kill. If lws has not reported the close after a grace period, the
 * tick abandons the wsi.
 */
static void conn_fail(import_user *u, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void conn_fail(import_user *u, const char *fmt, ...)
{
    import_app *app = u->app;
    if (u->state == CONN_DONE || u->failed)
        return;
    u->failed = 1;
    app->failed_users++;
    app->stopping = 1;
    /* A server that is down fails every connection alike: say it once, count the rest. */
    char why[sizeof(app->last_error)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (strcmp(why, app->last_error) == 0) {
        app->repeated_errors++;
    } else {
        fprintf(stderr, "fitsync-import: %s: %s\n", u->user, why);
        snprintf(app->last_error, sizeof(app->last_error), "%s", why);
    }
    u->state = CONN_CLOSING;
    u->killing = 1;
    u->deadline_ms = now_ms(app) + IMPORT_KILL_GRACE_MS;
    if (!u->wsi)
        conn_finish(u);
}

/*
 * Closes u's wsi at once. Only for callers outside lws callbacks (timers,
 * signals). LWS_TO_KILL_ASYNC would be the obvious choice, but with lws 4.1
 * on a foreign libuv loop it only takes effect when lws next services its
 * own timers, which for a silent connection is at context destroy; the
 * synchronous kill runs the close callbacks (and so conn_finish) right here.
 */
static void conn_kill(import_user *u)
{
    if (u->wsi)
        lws_set_timeout(u->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
}

/* Queues a message (borrowed) and asks for a WRITEABLE callback. Returns 0 or -1. */
static int conn_send(import_user *u, const json_t *msg)
{
    char *text = json_dumps(msg, JSON_COMPACT);
    if (!text) {
        conn_fail(u, "out of memory building a message");
        return -1;
    }
    int rc = fit_wsio_queue(&u->io, u->wsi, text, strlen(text));
    free(text);
    if (rc)
        conn_fail(u, "out of memory queueing a message");
    return rc;
}

/* The summary.upload item of a row (a new reference). */
static json_t *row_summary(const import_app *app, const import_row *r)
{
    char recorded_at[40];
    /* A daily total is complete at the end of its local day. */
    snprintf(recorded_at, sizeof(recorded_at), "%sT23:59:59%s", r->date_str, app->utc_offset);
    return json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:I, s:I}", "date", r->date_str,
                     "utc_offset", app->utc_offset, "source", IMPORT_SOURCE, "recorded_at",
                     recorded_at, "moderate_min", r->moderate_min, "vigorous_min", r->vigorous_min,
                     "light_min", r->light_min, "steps", (json_int_t)r->steps, "distance_m",
                     (json_int_t)r->distance_m);
}

/* Sends hello with a freshly minted member token for this user. */
static void conn_send_hello(import_user *u)
{
    import_app *app = u->app;
    char *token = NULL;
    int rc = fit_token_mint(u->user, "member", (int64_t)time(NULL) + IMPORT_TOKEN_TTL_S, NULL,
                            app->secret, strlen(app->secret), &token);
    if (rc != 0) {
        conn_fail(u, "cannot mint a token: %s", fit_strerror(rc));
        return;
    }
    json_t *msg = json_pack("{s:s, s:s, s:s, s:s}", "type", "hello", "id", "h", "token", token,
                            "device_id", IMPORT_DEVICE_ID);
    free(token);
    if (!msg) {
        conn_fail(u, "out of memory building hello");
        return;
    }
    u->state = CONN_HELLO;
    conn_send(u, msg);
    json_decref(msg);
}

/* After welcome: pipelines every batch of the user's rows. */
static void conn_send_batches(import_user *u)
{
    u->state = CONN_UPLOADING;
    u->batches_pending = (u->nrows + u->batch_size - 1) / u->batch_size;
    for (size_t b = 0; b * u->batch_size < u->nrows; b++) {
        size_t first = b * u->batch_size, n = u->nrows - first;
        if (n > u->batch_size)
            n = u->batch_size;
        json_t *items = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(items, row_summary(u->app, &u->rows[first + i]));
        char id[24];
        snprintf(id, sizeof(id), "u%zu", b);
        json_t *msg =
            json_pack("{s:s, s:s, s:o}", "type", "summary.upload", "id", id, "summaries", items);
        if (!msg) {
            conn_fail(u, "out of memory building a batch");
            return;
        }
        int rc = conn_send(u, msg);
        json_decref(msg);
        if (rc)
            return;
    }
}

/* After the last batch reply: pipelines one week.get per week with rows. */
static void conn_send_week_gets(import_user *u)
{
    u->state = CONN_READING;
    u->weeks_pending = u->nweeks;
    for (size_t i = 0; i < u->nweeks; i++) {
        char id[24];
        snprintf(id, sizeof(id), "w%zu", i);
        json_t *msg =
            json_pack("{s:s, s:s, s:s}", "type", "week.get", "id", id, "week", u->weeks[i].week);
        if (!msg) {
            conn_fail(u, "out of memory building week.get");
            return;
        }
        int rc = conn_send(u, msg);
        json_decref(msg);
        if (rc)
            return;
    }
}

/* Everything is read: close with 1000 once the queue is empty (see WRITEABLE). */
static void conn_close_normally(import_user *u)
{
    u->state = CONN_CLOSING;
    u->deadline_ms = now_ms(u->app) + IMPORT_KILL_GRACE_MS;
    lws_callback_on_writable(u->wsi);
}

/* "code: message" of an error reply, for messages. */
static void error_text(const json_t *msg, char *buf, size_t len)
{
    const char *code = json_string_value(json_object_get(msg, "code"));
    const char *text = json_string_value(json_object_get(msg, "message"));
    const char *field = json_string_value(json_object_get(msg, "field"));
    snprintf(buf, len, "%s%s%s%s%s", code ? code : "error", field && *field ? " (" : "",
             field && *field ? field : "", field && *field ? ")" : "", text ? ": " : "");
    if (text)
        snprintf(buf + strlen(buf), len - strlen(buf), "%s", text);
}

static void on_welcome(import_user *u, const json_t *msg, const char *type)
{
    char why[320];
    if (strcmp(type, "welcome") != 0) {
        error_text(msg, why, sizeof(why));
        conn_fail(u, "hello refused: %s", why);
        return;
    }
    /* Batch at most 500, and never more than this server accepts. */
    json_int_t max =
        json_integer_value(json_object_get(json_object_get(msg, "limits"), "max_batch"));
    u->batch_size = IMPORT_MAX_BATCH;
    if (max > 0 && max < IMPORT_MAX_BATCH)
        u->batch_size = (size_t)max;
    conn_send_batches(u);
}

/* Tallies one summary.upload reply for batch b. */
static void on_upload_reply(import_user *u, size_t b, const json_t *msg, const char *type)
{
    import_app *app = u->app;
    size_t first = b * u->batch_size, n = u->nrows - first;
    if (n > u->batch_size)
        n = u->batch_size;
    char why[320];
    if (strcmp(type, "error") == 0) {
        /* The whole batch was refused (e.g. too large): every row in it is rejected. */
        error_text(msg, why, sizeof(why));
        fprintf(stderr, "fitsync-import: %s: batch of lines %ld..%ld refused: %s\n", u->user,
                u->rows[first].line, u->rows[first + n - 1].line, why);
        app->server_rejected += (long)n;
    } else {
        json_t *results = json_object_get(msg, "results");
        char *seen = calloc(n ? n : 1, 1);
        if (!seen) {
            conn_fail(u, "out of memory");
            return;
        }
        size_t i;
        json_t *res;
        json_array_foreach(results, i, res)
        {
            json_int_t index = json_integer_value(json_object_get(res, "index"));
            const char *status = json_string_value(json_object_get(res, "status"));
            if (index < 0 || (size_t)index >= n || seen[index] || !status)
                continue; /* counted as missing below */
            seen[index] = 1;
            const import_row *r = &u->rows[first + (size_t)index];
            if (strcmp(status, "applied") == 0) {
                app->applied++;
                app->accepted++;
            } else if (strcmp(status, "duplicate") == 0) {
                app->duplicate++;
                app->accepted++;
            } else if (strcmp(status, "stale") == 0) {
                app->stale++;
                app->accepted++;
            } else {
                error_text(res, why, sizeof(why));
                fprintf(stderr, "fitsync-import: %s:%ld: %s %s rejected by the server: %s\n",
                        app->csv_path, r->line, u->user, r->date_str, why);
                app->server_rejected++;
            }
        }
        size_t missing = 0;
        for (i = 0; i < n; i++)
            missing += !seen[i];
        if (missing) {
            /* A protocol violation by the server; the rows' fate is unknown, so they count as
             * rejected. */
            fprintf(stderr,
                    "fitsync-import: %s: the reply to the batch of lines %ld..%ld has no result "
                    "for %zu of its %zu rows; counted as rejected\n",
                    u->user, u->rows[first].line, u->rows[first + n - 1].line, missing, n);
            app->server_rejected += (long)missing;
        }
        free(seen);
    }
    if (--u->batches_pending == 0)
        conn_send_week_gets(u);
}

/* Stores one week.get reply for week w. */
static void on_week_reply(import_user *u, size_t w, const json_t *msg, const char *type)
{
    import_week *wk = &u->weeks[w];
    char why[320];
    if (strcmp(type, "week.get") != 0) {
        error_text(msg, why, sizeof(why));
        conn_fail(u, "week.get %s failed: %s", wk->week, why);
        return;
    }
    json_t *st = json_object_get(msg, "week");
    json_t *mo = json_object_get(st, "moderate_min"), *vi = json_object_get(st, "vigorous_min"),
           *eq = json_object_get(st, "equivalent_min"), *met = json_object_get(st, "aerobic_met"),
           *target = json_object_get(json_object_get(st, "target"), "aerobic_min");
    const char *name = json_string_value(json_object_get(st, "week"));
    if (!json_is_integer(mo) || !json_is_integer(vi) || !json_is_integer(eq) ||
        !json_is_boolean(met) || !json_is_integer(target) || !name || strcmp(name, wk->week) != 0) {
        conn_fail(u,
                  "week.get %s: the reply lacks week, moderate_min, vigorous_min, "
                  "equivalent_min, target.aerobic_min or aerobic_met",
                  wk->week);
        return;
    }
    wk->moderate_min = (int)json_integer_value(mo);
    wk->vigorous_min = (int)json_integer_value(vi);
    wk->equivalent_min = (int)json_integer_value(eq);
    wk->target_min = (int)json_integer_value(target);
    wk->aerobic_met = json_is_true(met);
    wk->have = 1;
    u->app->weeks_read++;
    if (--u->weeks_pending == 0)
        conn_close_normally(u);
}

/*
 * Dispatches one complete message from the server. Replies carry "re":
 * "h" (hello), "u<batch>" (summary.upload), "w<week>" (week.get). Pushes
 * carry no "re" and are ignored; an error without "re" ends the connection.
 */
static void conn_on_message(import_user *u, const char *buf, size_t len)
{
    json_error_t jerr;
    json_t *msg = json_loadb(buf, len, 0, &jerr);
    if (!msg || !json_is_object(msg)) {
        conn_fail(u, "the server sent something that is not a JSON object (%s)",
                  msg ? "not an object" : jerr.text);
        json_decref(msg);
        return;
    }
    u->deadline_ms = now_ms(u->app) + (uint64_t)u->app->reply_timeout_s * 1000;
    const char *type = json_string_value(json_object_get(msg, "type"));
    const char *re = json_string_value(json_object_get(msg, "re"));
    char why[320];
    if (!type) {
        conn_fail(u, "the server sent a message without a \"type\"");
    } else if (!re) {
        if (strcmp(type, "error") == 0) {
            error_text(msg, why, sizeof(why));
            conn_fail(u, "the server reported an error: %s", why);
        } /* else a push such as "progress": not ours to act on */
    } else {
        char *end;
        unsigned long k = strtoul(re + 1, &end, 10);
        if (strcmp(re, "h") == 0 && u->state == CONN_HELLO)
            on_welcome(u, msg, type);
        else if (re[0] == 'u' && re[1] && !*end && u->state == CONN_UPLOADING &&
                 k * u->batch_size < u->nrows)
            on_upload_reply(u, k, msg, type);
        else if (re[0] == 'w' && re[1] && !*end && u->state == CONN_READING && k < u->nweeks &&
                 !u->weeks[k].have)
            on_week_reply(u, k, msg, type);
        else
            conn_fail(u, "unexpected reply (type %.40s, re %.40s)", type, re);
    }
    json_decref(msg);
}

/* Appends a received fragment; dispatches the message once it is complete. */
static int conn_on_receive(import_user *u, struct lws *wsi, const void *in, size_t len)
{
    if (lws_frame_is_binary(wsi)) {
        conn_fail(u, "the server sent a binary frame; fitsync.v1 is JSON text");
        return -1;
    }
    char *msg;
    size_t n;
    int rc = fit_wsio_receive(&u->io, wsi, in, len, IMPORT_MAX_RX, &msg, &n);
    if (rc == FIT_WSIO_TOO_LARGE)
        conn_fail(u, "a message from the server exceeds %u bytes", IMPORT_MAX_RX);
    else if (rc == FIT_WSIO_NOMEM)
        conn_fail(u, "out of memory receiving a message");
    if (rc < 0)
        return -1;
    if (rc == 1)
        conn_on_message(u, msg, n);
    return 0;
}

/* Writes one queued frame, or closes once a normal close is due. */
static int conn_on_writeable(import_user *u, struct lws *wsi)
{
    int rc = fit_wsio_write(&u->io, wsi);
    if (rc < 0) {
        conn_fail(u, "write to the server failed");
        return -1;
    }
    if (rc > 0)
        return 0;
    if (u->state == CONN_CLOSING && !u->failed) {
        lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, (unsigned char *)"import done", 11);
        return -1;
    }
    return 0;
}

/* The lws protocol callback: one switch, the work is in the conn_* functions above. */
static int ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len)
{
    import_user *u = user;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (u && u->state != CONN_DONE && u->state != CONN_WAITING) {
            u->wsi = NULL; /* lws is dropping it: do not touch it again */
            /* lws passes a NUL-terminated reason, or NULL. */
            conn_fail(u, "cannot connect to %s: %.200s", u->app->url,
                      in ? (const char *)in : "connection failed");
            conn_finish(u);
        }
        return 0;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (!u || u->state != CONN_CONNECTING)
            return -1;
        u->deadline_ms = now_ms(u->app) + (uint64_t)u->app->reply_timeout_s * 1000;
        conn_send_hello(u);
        return u->failed ? -1 : 0;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (!u || u->state == CONN_DONE || u->failed)
            return -1;
        return conn_on_receive(u, wsi, in, len) != 0 || u->failed ? -1 : 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (!u || u->state == CONN_DONE || u->failed)
            return -1;
        return conn_on_writeable(u, wsi);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (u && len >= 2) {
            const unsigned char *p = in;
            snprintf(u->peer_close, sizeof(u->peer_close), "close code %d%s%.*s",
                     (p[0] << 8) | p[1], len > 2 ? ", reason \"" : "", len > 2 ? (int)(len - 2) : 0,
                     (const char *)p + 2);
            if (len > 2)
                snprintf(u->peer_close + strlen(u->peer_close),
                         sizeof(u->peer_close) - strlen(u->peer_close), "\"");
        }
        return 0;
    case LWS_CALLBACK_CLIENT_CLOSED:
    case LWS_CALLBACK_WSI_DESTROY:
        if (u && u->state != CONN_DONE && u->state != CONN_WAITING) {
            u->wsi = NULL;
            if (u->state != CONN_CLOSING)
                conn_fail(u, "the server closed the connection before the import finished%s%s",
                          u->peer_close[0] ? ": " : "", u->peer_close);
            conn_finish(u);
        }
        return 0;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols protocols[] = {
    {IMPORT_SUBPROTOCOL, ws_callback, 0, 16384, 0, NULL, 0}, {NULL, NULL, 0, 0, 0, NULL, 0}};

/* Starts the connection of user u. Failures are reported through conn_fail. */
static void conn_start(import_user *u)
{
    import_app *app = u->app;
    u->state = CONN_CONNECTING;
    u->deadline_ms = now_ms(app) + (uint64_t)app->connect_timeout_s * 1000;
    app->active++;
    struct lws_client_connect_info i;
    memset(&i, 0, sizeof(i));
    i.context = app->ctx;
    i.address = app->host;
    i.port = app->port;
    i.path = app->path;
    i.host = app->host_header;
    i.origin = app->host_header;
    i.protocol = IMPORT_SUBPROTOCOL;
    i.local_protocol_name = IMPORT_SUBPROTOCOL;
    i.userdata = u;
    i.pwsi = &u->wsi;
    if (!lws_client_connect_via_info(&i)) {
        /* lws may already have said why through CLIENT_CONNECTION_ERROR. */
        u->wsi = NULL;
        conn_fail(u, "cannot connect to %s", app->url);
        conn_finish(u);
    }
}

/* ------------------------------------------------------------------ */
/* the loop                                                            */

static void handle_closed(uv_handle_t *h)
{
    import_app *app = h->data;
    app->handles_open--;
}

/* All connections are over: first stage of the foreign-loop teardown. */
static void app_finish(import_app *app)
{
    if (app->finished)
        return;
    app->finished = 1;
    app->finished_ns = uv_hrtime();
    if (app->ctx)
        lws_context_destroy(app->ctx); /* its handles close as the loop runs on */
    uv_close((uv_handle_t *)&app->tick, handle_closed);
    uv_close((uv_handle_t *)&app->kick, handle_closed);
    uv_close((uv_handle_t *)&app->sigint, handle_closed);
    uv_close((uv_handle_t *)&app->sigterm, handle_closed);
}

/*
 * Starts as many users as --concurrency allows, or finishes the run. Runs
 * from a zero-delay timer, never from inside an lws callback, so that a
 * connection ending never re-enters lws_client_connect_via_info.
 */
static void kick_cb(uv_timer_t *t)
{
    import_app *app = t->data;
    while (!app->stopping && app->active < (size_t)app->concurrency && app->next_user < app->nusers)
        conn_start(&app->users[app->next_user++]);
    if (app->active == 0 && (app->stopping || app->next_user == app->nusers))
        app_finish(app);
}

static void app_kick(import_app *app)
{
    if (!app->finished)
        uv_timer_start(&app->kick, kick_cb, 0, 0);
}

/* Enforces every connection's deadline (connect, reply, close grace). */
static void tick_cb(uv_timer_t *t)
{
    import_app *app = t->data;
    uint64_t now = now_ms(app);
    for (size_t i = 0; i < app->next_user; i++) {
        import_user *u = &app->users[i];
        if (u->state == CONN_DONE || now < u->deadline_ms)
            continue;
        if (u->killing || u->state == CONN_CLOSING) {
            /* lws has not reported the close: abandon the wsi (u stays valid for it). */
            conn_finish(u);
        } else if (u->state == CONN_CONNECTING) {
            conn_fail(u, "no connection to %s within %d s", app->url, app->connect_timeout_s);
            conn_kill(u);
        } else {
            conn_fail(u, "no reply from the server within %d s", app->reply_timeout_s);
            conn_kill(u);
        }
    }
}

static void signal_cb(uv_signal_t *h, int signum)
{
    import_app *app = h->data;
    if (app->interrupted)
        return;
    app->interrupted = 1;
    app->stopping = 1;
    fprintf(stderr, "fitsync-import: %s received, stopping\n",
            signum == SIGINT ? "SIGINT" : "SIGTERM");
    for (size_t i = 0; i < app->next_user; i++) {
        conn_fail(&app->users[i], "interrupted");
        conn_kill(&app->users[i]);
    }
    app_kick(app);
}

/*
 * Runs every user's connection to completion on a fresh loop. Returns 0,
 * or -1 if the loop or the lws context could not be set up.
 */
static int app_run(import_app *app)
{
    if (uv_loop_init(&app->loop) != 0) {
        fprintf(stderr, "fitsync-import: cannot create the event loop\n");
        return -1;
    }
    uv_timer_init(&app->loop, &app->tick);
    uv_timer_init(&app->loop, &app->kick);
    uv_signal_init(&app->loop, &app->sigint);
    uv_signal_init(&app->loop, &app->sigterm);
    app->tick.data = app->kick.data = app->sigint.data = app->sigterm.data = app;
    app->handles_open = 4;

    lws_set_log_level(LLL_ERR, NULL);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    app->foreign_loops[0] = &app->loop;
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.options = LWS_SERVER_OPTION_LIBUV;
    info.foreign_loops = app->foreign_loops;
    info.pcontext = &app->ctx;
    info.user = app;
    info.connect_timeout_secs = (unsigned)app->connect_timeout_s;
    app->ctx = lws_create_context(&info);
    int rc = 0;
    if (!app->ctx) {
        fprintf(stderr, "fitsync-import: cannot create the libwebsockets context\n");
        rc = -1;
        app->stopping = 1;
    }
    uv_timer_start(&app->tick, tick_cb, IMPORT_TICK_MS, IMPORT_TICK_MS);
    uv_signal_start(&app->sigint, signal_cb, SIGINT);
    uv_signal_start(&app->sigterm, signal_cb, SIGTERM);
    app->started_ns = uv_hrtime();
    app_kick(app);
    uv_run(&app->loop, UV_RUN_DEFAULT);
    /* Second stage (minimal-http-server-eventlib-foreign): destroy again, run, close. */
    if (app->ctx)
        lws_context_destroy(app->ctx);
    uv_run(&app->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&app->loop) != 0)
        fprintf(stderr, "fitsync-import: warning: event loop closed with handles open\n");
    return rc;
}

/* ------------------------------------------------------------------ */
/* report and summary                                                  */

/* Writes the report, sorted by user then week (users and weeks already are). Returns 0 or -1. */
static int report_write(import_app *app)
{
    int to_stdout = strcmp(app->report_path, "-") == 0;
    char tmp[FIT_PATH_MAX + 16];
    snprintf(tmp, sizeof(tmp), "%s.tmp", app->report_path);
    FILE *f = to_stdout ? stdout : fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "fitsync-import: cannot write %s: %s\n", tmp, strerror(errno));
        return -1;
    }
    fputs("user,week,moderate_min,vigorous_min,equiv_min,target_min,aerobic_met\n", f);
    for (size_t i = 0; i < app->nusers; i++) {
        const import_user *u = &app->users[i];
        for (size_t w = 0; w < u->nweeks; w++) {
            const import_week *k = &u->weeks[w];
            fprintf(f, "%s,%s,%d,%d,%d,%d,%d\n", u->user, k->week, k->moderate_min, k->vigorous_min,
                    k->equivalent_min, k->target_min, k->aerobic_met ? 1 : 0);
        }
    }
    if (to_stdout)
        return fflush(f) == 0 ? 0 : -1;
    int bad = ferror(f);
    if (fclose(f) != 0 || bad || rename(tmp, app->report_path) != 0) {
        fprintf(stderr, "fitsync-import: cannot write %s: %s\n", app->report_path, strerror(errno));
        remove(tmp);
        return -1;
    }
    return 0;
}

/*
 * Prints the one summary line. rows counts every data row of the CSV
 * (malformed ones included); seconds is the wall time from the first
 * connection attempt to the last close; rows/s is the rows the server
 * answered (accepted + rejected by it) per second of that time.
 */
static void summary_print(const import_app *app)
{
    double secs = app->finished_ns > app->started_ns
                      ? (double)(app->finished_ns - app->started_ns) / 1e9
                      : 0.0;
    long rows = (long)app->nrows + app->malformed;
    fprintf(stderr,
            "fitsync-import: users=%zu rows=%ld accepted=%ld (applied=%ld duplicate=%ld "
            "stale=%ld) rejected=%ld (malformed=%ld server=%ld) weeks=%ld seconds=%.3f "
            "rows/s=%.0f\n",
            app->nusers, rows, app->accepted, app->applied, app->duplicate, app->stale,
            app->malformed + app->server_rejected, app->malformed, app->server_rejected,
            app->weeks_read, secs,
            secs > 0 ? (double)(app->accepted + app->server_rejected) / secs : 0.0);
}

/* ------------------------------------------------------------------ */
/* options                                                             */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: fitsync-import --csv FILE [--url ws://HOST:PORT] [--report FILE]\n"
            "                      [--data-dir DIR] [--concurrency N] [--utc-offset +hh:mm]\n"
            "                      [--connect-timeout SECONDS] [--reply-timeout SECONDS]\n"
            "\n"
            "Imports a Fitbit dailyActivity CSV export into fitsyncd as daily summaries\n"
            "(user \"fitbit-<Id>\", source \"fitbit\"), then reads back every ISO week that\n"
            "has rows and writes a CSV report:\n"
            "  user,week,moderate_min,vigorous_min,equiv_min,target_min,aerobic_met\n"
            "\n"
            "  --csv FILE             the export (\"-\" = stdin)\n"
            "  --url URL              the server (default ws://127.0.0.1:8080)\n"
            "  --report FILE          where to write the report (default \"-\" = stdout)\n"
            "  --data-dir DIR         where fitsyncd keeps token.secret (default data);\n"
            "                         FITSYNC_TOKEN_SECRET, if set, wins, as in fitsyncd\n"
            "  --concurrency N        users imported at once, one connection each (default %d)\n"
            "  --utc-offset OFF       the offset the export's dates are local to (default +00:00)\n"
            "  --connect-timeout S    give up on a connection after S seconds (default %d)\n"
            "  --reply-timeout S      give up when the server is silent for S seconds while\n"
            "                         replies are due (default %d)\n"
            "\n"
            "One summary line goes to stderr. Exit status: 0 if every row was accepted and\n"
            "every week read back; 1 if a row was rejected (malformed rows are named by line\n"
            "and not sent) or a connection failed; 2 for bad usage or an unusable file.\n",
            IMPORT_DEFAULT_CONCURRENCY, IMPORT_DEFAULT_CONNECT_TIMEOUT_S,
            IMPORT_DEFAULT_REPLY_TIMEOUT_S);
}

/* Splits ws://HOST[:PORT][/PATH] into app->host, port, path. Returns 0 or -1. */
static int url_parse(import_app *app)
{
    const char *u = app->url;
    if (strncmp(u, "ws://", 5) != 0) {
        fprintf(stderr,
                "fitsync-import: --url must start with ws:// (got \"%s\"); wss:// is not "
                "supported by this tool\n",
                u);
        return -1;
    }
    u += 5;
    const char *host_end, *rest;
    if (*u == '[') { /* [v6 address] */
        host_end = strchr(u, ']');
        if (!host_end)
            goto bad;
        snprintf(app->host, sizeof(app->host), "%.*s", (int)(host_end - u - 1), u + 1);
        rest = host_end + 1;
    } else {
        size_t n = strcspn(u, ":/");
        snprintf(app->host, sizeof(app->host), "%.*s", (int)n, u);
        rest = u + n;
    }
    if (!app->host[0])
        goto bad;
    app->port = 80;
    if (*rest == ':') {
        char *end;
        long p = strtol(rest + 1, &end, 10);
        if (end == rest + 1 || p < 1 || p > 65535 || (*end && *end != '/'))
            goto bad;
        app->port = (int)p;
        rest = end;
    }
    snprintf(app->path, sizeof(app->path), "%s", *rest ? rest : "/");
    snprintf(app->host_header, sizeof(app->host_header), "%s:%d", app->host, app->port);
    return 0;
bad:
    fprintf(stderr, "fitsync-import: --url \"%s\" is not ws://HOST:PORT\n", app->url);
    return -1;
}

/* Parses argv into app. Returns 0, 1 (--help printed) or 2 (usage error, printed). */
static int options_parse(import_app *app, int argc, char **argv)
{
    static const struct option opts[] = {{"csv", required_argument, NULL, 'c'},
                                         {"url", required_argument, NULL, 'u'},
                                         {"report", required_argument, NULL, 'r'},
                                         {"data-dir", required_argument, NULL, 'd'},
                                         {"concurrency", required_argument, NULL, 'n'},
                                         {"utc-offset", required_argument, NULL, 'o'},
                                         {"connect-timeout", required_argument, NULL, 't'},
                                         {"reply-timeout", required_argument, NULL, 'R'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *offset = "+00:00";
    app->url = "ws://127.0.0.1:8080";
    app->report_path = "-";
    app->data_dir = "data";
    app->concurrency = IMPORT_DEFAULT_CONCURRENCY;
    app->connect_timeout_s = IMPORT_DEFAULT_CONNECT_TIMEOUT_S;
    app->reply_timeout_s = IMPORT_DEFAULT_REPLY_TIMEOUT_S;
    int c;
    char *end;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            app->csv_path = optarg;
            break;
        case 'u':
            app->url = optarg;
            break;
        case 'r':
            app->report_path = optarg;
            break;
        case 'd':
            app->data_dir = optarg;
            break;
        case 'n':
            app->concurrency = (int)strtol(optarg, &end, 10);
            if (*end || app->concurrency < 1 || app->concurrency > IMPORT_MAX_CONCURRENCY) {
                fprintf(stderr, "fitsync-import: --concurrency must be 1..%d\n",
                        IMPORT_MAX_CONCURRENCY);
                return 2;
            }
            break;
        case 'o':
            offset = optarg;
            break;
        case 't':
            app->connect_timeout_s = (int)strtol(optarg, &end, 10);
            if (*end || app->connect_timeout_s < 1 || app->connect_timeout_s > 3600) {
                fprintf(stderr, "fitsync-import: --connect-timeout must be 1..3600 seconds\n");
                return 2;
            }
            break;
        case 'R':
            app->reply_timeout_s = (int)strtol(optarg, &end, 10);
            if (*end || app->reply_timeout_s < 1 || app->reply_timeout_s > 3600) {
                fprintf(stderr, "fitsync-import: --reply-timeout must be 1..3600 seconds\n");
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 1;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "fitsync-import: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    if (!app->csv_path) {
        fprintf(stderr, "fitsync-import: --csv FILE is required\n");
        usage(stderr);
        return 2;
    }
    int off;
    if (fit_offset_parse(offset, &off) != 0) {
        fprintf(stderr,
                "fitsync-import: --utc-offset \"%s\" is not like +08:00 or -05:00 "
                "(within -14:00..+14:00)\n",
                offset);
        return 2;
    }
    snprintf(app->utc_offset, sizeof(app->utc_offset), "%c%02d:%02d", off < 0 ? '-' : '+',
             abs(off) / 60, abs(off) % 60);
    return url_parse(app) == 0 ? 0 : 2;
}

static void app_free(import_app *app)
{
    for (size_t i = 0; i < app->nusers; i++) {
        fit_wsio_free(&app->users[i].io);
        free(app->users[i].weeks);
    }
    free(app->users);
    free(app->rows);
}

int main(int argc, char **argv)
{
    import_app app;
    memset(&app, 0, sizeof(app));
    int rc = options_parse(&app, argc, argv);
    if (rc)
        return rc == 1 ? 0 : 2;
    char err[512];
    if (fit_secret_find(getenv("FITSYNC_TOKEN_SECRET"), app.data_dir, 0, app.secret,
                        sizeof(app.secret), err, sizeof(err)) != 0) {
        fprintf(stderr, "fitsync-import: %s\n", err);
        return 2;
    }
    if (csv_load(&app) != 0) {
        app_free(&app);
        return 2;
    }
    if (users_build(&app) != 0) {
        fprintf(stderr, "fitsync-import: out of memory\n");
        app_free(&app);
        return 2;
    }
    int ok = 1;
    if (app.nusers > 0 && app_run(&app) != 0)
        ok = 0;
    if (app.repeated_errors)
        fprintf(stderr, "fitsync-import: %zu more connections failed the same way\n",
                app.repeated_errors);
    if (app.failed_users || app.next_user < app.nusers) {
        size_t missing = app.nusers - app.next_user;
        if (missing)
            fprintf(stderr, "fitsync-import: %zu of %zu users were not started\n", missing,
                    app.nusers);
        fprintf(stderr, "fitsync-import: a connection failed; no report written\n");
        ok = 0;
    } else if (report_write(&app) != 0) {
        ok = 0;
    }
    summary_print(&app);
    if (app.malformed || app.server_rejected)
        ok = 0;
    app_free(&app);
    return ok ? 0 : 1;
}
