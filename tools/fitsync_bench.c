/*
 * fitsync-bench: a load generator for fitsyncd (issue 7).
 *
 * It mints its own member tokens (fit_secret_find: FITSYNC_TOKEN_SECRET, else
 * <data-dir>/token.secret), opens --connections WebSocket connections on one
 * libuv loop (libwebsockets as a foreign-loop user, as in fitsync-import and
 * fitsyncd), and drives one scenario:
 *
 *   - the first --uploaders connections are uploaders, each its own member
 *     "bu<i>" (profile.set display_name "bu<i>", and a district when
 *     --boards > 1). They send activity.upload messages of --batch sessions,
 *     either paced to --upload-rate messages per second in total, or (rate 0)
 *     as fast as acks come back, --inflight messages outstanding each;
 *   - the next --subscribers connections each subscribe to one board
 *     (week:<W>:all, or with --boards K > 1 the district boards of the first
 *     K districts, round robin) with --limit entries;
 *   - the rest only say hello and stay idle.
 *
 * Every session is a 60 s vigorous session in its own minute of week W (the
 * previous ISO week in the programme's zone, +08:00, unless --week), so each
 * stored session raises its uploader's score by exactly 2 equivalent minutes.
 * That makes push latency measurable without the server's help: item k of
 * uploader i (0-based) is reflected by a board entry {name "bu<i>", score >=
 * 2(k+1)}. Each subscriber remembers the last score it saw per uploader; a
 * push showing a higher one yields one latency sample (now - send time) for
 * every item newly reflected.
 *
 * Realistic members (issue 11): with --history-days N each uploader first
 * logs N days of history ending on W's Sunday, --sessions-per-day S sessions a
 * day (7 minutes each, 10 minutes apart from 06:00, every third a 900 m run,
 * the others walks), and with --challenges C it joins C virtual challenges
 * that one extra staff connection creates first: the first C - max(1, C/5)
 * ended before W (six days each, back from W's Monday), the rest running
 * (from the week before W to 30 days after today). An uploader's setup is
 * then: hello -> profile.set -> history uploads (100 sessions a message, 8 in
 * flight over all uploaders) -> challenge.join x C (once the staff connection has created them)
 * -> ready. The staff connection: hello -> event.create x C -> done; it is
 * not one of --connections and is not measured.
 *
 * Phases: connect (at --ramp pace, at most --max-pending handshakes at
 * once) -> every connection ready (welcome, and its profile.set / subscribe
 * answered, history and joins done) -> measure for --duration seconds -> drain (no new uploads,
 * wait for outstanding acks and the next board ticks) -> report. The report goes to stdout as text
 * and, with --json FILE, as JSON. Exit status 0 only when there were no errors at all (failed
 * connections, error replies, rejected items).
 *
 * --serve-echo PORT turns the program into the "WebSocket floor": a bare lws
 * server on the same kind of loop that answers every message with a tiny
 * reply carrying its id, so that the same client measures the layer itself.
 * Use --echo on the client side then (no profile.set, no boards).
 *
 * Design notes: writes happen only in WRITEABLE callbacks, one queued frame
 * per callback; received fragments are reassembled; pushes are scanned with
 * a few strstr calls instead of a JSON parser, so that the client stays
 * cheap next to the server it measures (its own CPU time is reported).
 */
#include "fit_config.h"
#include "fit_error.h"
#include "fit_time.h"
#include "fit_token.h"
#include "fit_wsio.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <libwebsockets.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <uv.h>

#define SUBPROTOCOL "fitsync.v1"
#define TICK_MS 5
#define TOKEN_TTL_S 7200
#define MAX_RX (8u * 1024u * 1024u)
#define SLOTS_PER_WEEK (7 * 1440)
#define MAX_WEEKS_BACK 6 /* items past the target week go to earlier weeks (load only) */
#define MSG_RING 4096    /* outstanding messages per uploader, at most */
#define NCODES 32
#define TZ_OFFSET_MIN (8 * 60)
#define TZ_OFFSET "+08:00"

/* ------------------------------------------------------------------ */
/* latency histogram: 32 sub-buckets per power of two of microseconds  */

#define H_SUB 32
#define H_BUCKETS (40 * H_SUB)
typedef struct {
    uint64_t count, max_us;
    uint64_t b[H_BUCKETS];
} histo;

static unsigned h_index(uint64_t us)
{
    if (us < H_SUB)
        return (unsigned)us;
    unsigned msb = 63u - (unsigned)__builtin_clzll(us);
    unsigned shift = msb - 5; /* keep 5 bits below the msb */
    unsigned idx = (shift + 1) * H_SUB + (unsigned)((us >> shift) & (H_SUB - 1));
    return idx < H_BUCKETS ? idx : H_BUCKETS - 1;
}

static uint64_t h_value(unsigned idx)
{
    if (idx < H_SUB)
        return idx;
    unsigned shift = idx / H_SUB - 1;
    return ((uint64_t)(H_SUB + idx % H_SUB) << shift) + ((1ull << shift) >> 1);
}

static void h_add(histo *h, uint64_t us)
{
    h->b[h_index(us)]++;
    h->count++;
    if (us > h->max_us)
        h->max_us = us;
}

/* The q-quantile in milliseconds (0 when empty). */
static double h_quantile_ms(const histo *h, double q)
{
    if (!h->count)
        return 0;
    uint64_t want = (uint64_t)(q * (double)h->count);
    if (want >= h->count)
        want = h->count - 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < H_BUCKETS; i++) {
        seen += h->b[i];
        if (seen > want) {
            uint64_t v = h_value(i);
            return (double)(v < h->max_us ? v : h->max_us) / 1000.0;
        }
    }
    return (double)h->max_us / 1000.0;
}

/* ------------------------------------------------------------------ */
/* state                                                               */

typedef enum { ROLE_UPLOADER, ROLE_SUBSCRIBER, ROLE_IDLE, ROLE_STAFF } conn_role;

typedef enum {
    C_WAITING,    /* not started */
    C_CONNECTING, /* TCP + WebSocket handshake */
    C_HELLO,      /* hello sent */
    C_SETUP,      /* profile.set or leaderboard.subscribe sent */
    C_READY,      /* set up; uploads flow in the measure phase */
    C_DONE        /* the wsi is gone */
} conn_state;

typedef struct bench_app bench_app;

typedef struct {
    bench_app *app;
    struct lws *wsi;
    conn_role role;
    int index; /* among its role */
    conn_state state;
    int failed;
    uint64_t deadline_ms;
    fit_wsio io; /* queued frames and the reassembly of incoming messages */
    /* uploader */
    uint64_t next_msg, acked_msgs;
    uint64_t next_item;
    uint64_t *item_sent_ns; /* per tracked item (slot of week W) */
    uint64_t msg_sent_ns[MSG_RING];
    /* uploader's setup: history messages sent / answered, challenges joined */
    int profiled, hist_sent, hist_acked, joins_acked, wait_joins;
    /* subscriber */
    int board;
    int *seen_items; /* per uploader: items reflected so far */
} bench_conn;

typedef struct {
    char code[48];
    uint64_t n;
} code_count;

typedef enum { P_CONNECT, P_MEASURE, P_DRAIN, P_DONE } bench_phase;

struct bench_app {
    fit_board_tables tables; /* config/districts.json: the district boards' slugs */
    /* options */
    const char *host;
    int port, nhosts;
    const char *data_dir;
    const char *json_path, *ready_path;
    int connections, uploaders, subscribers, boards, limit, batch, inflight;
    double upload_rate, duration_s, ramp_s;
    int max_pending, connect_timeout_s, reply_timeout_s, drain_ms;
    int echo, spread_days;
    int history_days, sessions_per_day, challenges;
    char week[FIT_WEEK_LEN];
    fit_date monday; /* of week */
    char run_id[16];
    char secret[256];
    char board_names[18][80];
    /* run */
    uv_loop_t loop;
    uv_timer_t tick;
    uv_signal_t sigint, sigterm;
    void *foreign_loops[1];
    struct lws_context *ctx;
    bench_conn *conns;
    int next_conn, pending, active, ready, nfailed;
    bench_phase phase;
    int finished, interrupted;
    uint64_t t_start_ns, t_first_est_ns, t_last_est_ns, t_measure_ns, t_measure_end_ns, t_drain_ns;
    uint64_t last_deadline_check_ms;
    double upload_credit;
    int rr;              /* round robin among uploaders */
    bench_conn *staff;   /* creates the challenges (--challenges), or NULL */
    int challenges_made; /* event.create answered */
    int hist_inflight;   /* history messages sent and not yet answered, all uploaders */
    struct rusage ru_measure0, ru_measure1;
    /* tallies */
    int established;
    uint64_t msgs_sent, acks, items_sent, items_created, items_duplicate, items_rejected;
    uint64_t acks_in_window, pushes, pushes_in_window, frames_rx, bytes_rx, paced_skipped;
    histo ack_lat, push_lat;
    code_count codes[NCODES];
    int ncodes;
    char last_error[300];
    uint64_t repeated_errors;
};

static uint64_t now_ms(bench_app *app)
{
    return uv_now(&app->loop);
}

static void count_code(bench_app *app, const char *code)
{
    for (int i = 0; i < app->ncodes; i++)
        if (strcmp(app->codes[i].code, code) == 0) {
            app->codes[i].n++;
            return;
        }
    int i = app->ncodes < NCODES ? app->ncodes++ : NCODES - 1;
    snprintf(app->codes[i].code, sizeof(app->codes[i].code), "%s", code);
    app->codes[i].n++;
}

static uint64_t errors_total(const bench_app *app)
{
    uint64_t n = 0;
    for (int i = 0; i < app->ncodes; i++)
        n += app->codes[i].n;
    return n;
}

/* ------------------------------------------------------------------ */
/* connections                                                         */

static void conn_finish(bench_conn *c)
{
    if (c->state == C_DONE || c->state == C_WAITING)
        return;
    bench_app *app = c->app;
    if (c->state == C_CONNECTING)
        app->pending--;
    c->state = C_DONE;
    c->wsi = NULL;
    fit_wsio_free(&c->io);
    app->active--;
}

/*
 * Counts a failure of c under code (e.g. "connect_failed", "closed") and
 * prints it once (repeats are only counted). The caller closes the wsi (an
 * lws callback returns -1; elsewhere lws_set_timeout kills it).
 */
static void conn_fail(bench_conn *c, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void conn_fail(bench_conn *c, const char *code, const char *fmt, ...)
{
    bench_app *app = c->app;
    if (c->failed || c->state == C_DONE)
        return;
    c->failed = 1;
    app->nfailed++;
    count_code(app, code);
    char why[sizeof(app->last_error)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (strcmp(why, app->last_error) == 0) {
        app->repeated_errors++;
    } else {
        fprintf(stderr, "fitsync-bench: connection %d: %s\n", (int)(c - app->conns), why);
        snprintf(app->last_error, sizeof(app->last_error), "%s", why);
    }
}

static void conn_kill(bench_conn *c)
{
    if (c->wsi)
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
}

/* Queues text (copied) and asks for WRITEABLE. */
static int conn_send_text(bench_conn *c, const char *text, size_t len)
{
    if (fit_wsio_queue(&c->io, c->wsi, text, len) != 0) {
        conn_fail(c, "client_oom", "out of memory");
        return -1;
    }
    return 0;
}

static int conn_send_json(bench_conn *c, json_t *msg)
{
    char *text = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    json_decref(msg);
    if (!text) {
        conn_fail(c, "client_oom", "out of memory building a message");
        return -1;
    }
    int rc = conn_send_text(c, text, strlen(text));
    free(text);
    return rc;
}

static void conn_user(const bench_conn *c, char *buf, size_t len)
{
    static const char role_ch[] = {'u', 's', 'i', 'x'};
    snprintf(buf, len, "b%c%d", role_ch[c->role], c->index);
}

static void conn_send_hello(bench_conn *c)
{
    bench_app *app = c->app;
    char user[32];
    conn_user(c, user, sizeof(user));
    char *token = NULL;
    int rc = fit_token_mint(user, c->role == ROLE_STAFF ? "staff" : "member",
                            (int64_t)time(NULL) + TOKEN_TTL_S, NULL, app->secret,
                            strlen(app->secret), &token);
    if (rc != 0) {
        conn_fail(c, "client_token", "cannot mint a token: %s", fit_strerror(rc));
        return;
    }
    c->state = C_HELLO;
    conn_send_json(c, json_pack("{s:s, s:s, s:s, s:s}", "type", "hello", "id", "h", "token", token,
                                "device_id", "bench"));
    free(token);
}

static void conn_ready(bench_conn *c)
{
    c->state = C_READY;
    if (c->role != ROLE_STAFF)
        c->app->ready++;
}

/* ---- realistic members: history, challenges (--history-days, --challenges) ---- */

#define HIST_BATCH 100
/* History messages in flight, over all uploaders: Redis runs them one after another, and
 * a deeper queue than this would outlast fitsyncd's Redis command timeout. */
#define HIST_INFLIGHT 8

static int hist_messages(const bench_app *app)
{
    int n = app->history_days * app->sessions_per_day;
    return (n + HIST_BATCH - 1) / HIST_BATCH;
}

/* Challenges that ended before W; the rest are running. */
static int ended_challenges(const bench_app *app)
{
    int running = app->challenges / 5 > 1 ? app->challenges / 5 : 1;
    return app->challenges > running ? app->challenges - running : 0;
}

static void challenge_id(const bench_app *app, int k, char *buf, size_t len)
{
    snprintf(buf, len, "bch-%s-%d", app->run_id, k);
}

/* History message m of an uploader: sessions m*HIST_BATCH.. of its N days x S. */
static int conn_send_history(bench_conn *c, int m)
{
    bench_app *app = c->app;
    size_t cap = 256 + HIST_BATCH * 224;
    char *buf = malloc(cap);
    if (!buf) {
        conn_fail(c, "client_oom", "out of memory building history");
        return -1;
    }
    int total = app->history_days * app->sessions_per_day;
    int n = snprintf(buf, cap, "{\"type\":\"activity.upload\",\"id\":\"y%d\",\"activities\":[", m);
    for (int k = 0; k < HIST_BATCH && m * HIST_BATCH + k < total; k++) {
        int item = m * HIST_BATCH + k;
        int day = item / app->sessions_per_day, slot = item % app->sessions_per_day;
        fit_date d = fit_civil_from_days(fit_days_from_civil(app->monday) + 6 - day);
        char date[FIT_DATE_LEN];
        fit_date_format(d, date);
        int minute = 6 * 60 + 10 * slot;
        int run = slot % 3 == 0;
        n += snprintf(buf + n, cap - (size_t)n,
                      "%s{\"client_id\":\"%s-h%d-%d\",\"type\":\"%s\",\"start\":\"%sT%02d:%02d:"
                      "00" TZ_OFFSET "\",\"duration_s\":420%s}",
                      k ? "," : "", app->run_id, c->index, item, run ? "running" : "walking", date,
                      minute / 60 % 24, minute % 60, run ? ",\"distance_m\":900" : "");
    }
    n += snprintf(buf + n, cap - (size_t)n, "]}");
    int rc = conn_send_text(c, buf, (size_t)n);
    free(buf);
    c->hist_sent++;
    return rc;
}

static void conn_send_joins(bench_conn *c)
{
    bench_app *app = c->app;
    c->wait_joins = 0;
    for (int k = 0; k < app->challenges; k++) {
        char id[48], rid[16];
        challenge_id(app, k, id, sizeof(id));
        snprintf(rid, sizeof(rid), "j%d", k);
        conn_send_json(
            c, json_pack("{s:s, s:s, s:s}", "type", "challenge.join", "id", rid, "event", id));
    }
}

/* The uploader's next setup step after profile.set, a history ack or a join. */
static void conn_setup_next(bench_conn *c)
{
    bench_app *app = c->app;
    int msgs = hist_messages(app);
    if (c->hist_acked < msgs) {
        while (c->hist_sent < msgs && app->hist_inflight < HIST_INFLIGHT) {
            if (conn_send_history(c, c->hist_sent) != 0)
                return;
            app->hist_inflight++;
        }
        return;
    }
    if (c->joins_acked < app->challenges) {
        if (c->joins_acked == 0 && !c->wait_joins && app->challenges_made < app->challenges)
            c->wait_joins = 1; /* sent once the staff connection has created them */
        else if (c->joins_acked == 0 && !c->wait_joins)
            conn_send_joins(c);
        return;
    }
    conn_ready(c);
}

/* The staff connection: creates the challenges (virtual events, all at once). */
static void staff_create(bench_conn *c)
{
    bench_app *app = c->app;
    int64_t monday = fit_days_from_civil(app->monday);
    int64_t today = ((int64_t)time(NULL) + TZ_OFFSET_MIN * 60) / 86400;
    static const char *const metrics[] = {"equivalent_min", "active_days", "distance_m"};
    for (int k = 0; k < app->challenges; k++) {
        int ended = k < ended_challenges(app);
        /* ended: 6-day windows back from W's Monday (inside 8 weeks of history) */
        int64_t from = ended ? monday - 6 * (k + 1) : monday - 7;
        int64_t to = ended ? monday - 6 * k - 1 : today + 30;
        char id[48], rid[16], f[FIT_DATE_LEN], t[FIT_DATE_LEN];
        challenge_id(app, k, id, sizeof(id));
        snprintf(rid, sizeof(rid), "e%d", k);
        fit_date_format(fit_civil_from_days(from), f);
        fit_date_format(fit_civil_from_days(to), t);
        const char *metric = metrics[k % 3];
        json_t *m = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i}", "type",
                              "event.create", "id", rid, "event", id, "name", id, "kind", "virtual",
                              "from", f, "to", t, "metric", metric, "goal", 100000);
        if (strcmp(metric, "distance_m") == 0)
            json_object_set_new(m, "activity_types", json_pack("[s]", "running"));
        conn_send_json(c, m);
    }
}

static void on_staff_reply(bench_conn *c)
{
    bench_app *app = c->app;
    if (++app->challenges_made < app->challenges)
        return;
    conn_ready(c);
    for (int u = 0; u < app->uploaders; u++)
        if (app->conns[u].wait_joins)
            conn_send_joins(&app->conns[u]);
}

/* After welcome: the role's one setup message, or ready at once. */
static void conn_setup(bench_conn *c)
{
    bench_app *app = c->app;
    if (app->echo || c->role == ROLE_IDLE) {
        conn_ready(c);
        return;
    }
    c->state = C_SETUP;
    if (c->role == ROLE_STAFF) {
        staff_create(c);
        return;
    }
    if (c->role == ROLE_UPLOADER) {
        char name[32];
        conn_user(c, name, sizeof(name));
        json_t *profile = json_pack("{s:s}", "display_name", name);
        if (app->boards > 1)
            json_object_set_new(profile, "district",
                                json_string(app->tables.districts[c->index % app->boards].slug));
        conn_send_json(
            c, json_pack("{s:s, s:s, s:o}", "type", "profile.set", "id", "p", "profile", profile));
    } else {
        c->board = c->index % app->boards;
        conn_send_json(c, json_pack("{s:s, s:s, s:s, s:i}", "type", "leaderboard.subscribe", "id",
                                    "s", "board", app->board_names[c->board], "limit", app->limit));
    }
}

/* Sends one activity.upload of --batch sessions. Returns 0 or -1. */
static int conn_upload(bench_conn *c)
{
    bench_app *app = c->app;
    char buf[256 + 200 * 64];
    uint64_t msg = c->next_msg++;
    int n =
        snprintf(buf, sizeof(buf), "{\"type\":\"activity.upload\",\"id\":\"%llu\",\"activities\":[",
                 (unsigned long long)msg);
    uint64_t t = uv_hrtime();
    for (int k = 0; k < app->batch; k++) {
        uint64_t item = c->next_item++;
        uint64_t slot = item % SLOTS_PER_WEEK;
        uint64_t back = (item / SLOTS_PER_WEEK) % (MAX_WEEKS_BACK + 1);
        int64_t day = fit_days_from_civil(app->monday) - 7 * (int64_t)back + (int64_t)(slot / 1440);
        if (app->spread_days > 1) {
            /* a member's few sessions a day: item k on day (k mod D) back from W's Sunday */
            day =
                fit_days_from_civil(app->monday) + 6 - (int64_t)(item % (uint64_t)app->spread_days);
            slot = (item / (uint64_t)app->spread_days) % 1440;
        }
        fit_date d = fit_civil_from_days(day);
        char date[FIT_DATE_LEN];
        fit_date_format(d, date);
        if (item < SLOTS_PER_WEEK && app->spread_days <= 1)
            c->item_sent_ns[item] = t;
        n += snprintf(
            buf + n, sizeof(buf) - (size_t)n,
            "%s{\"client_id\":\"%s-%d-%llu\",\"type\":\"running\",\"start\":\"%sT%02d:%02d:"
            "00" TZ_OFFSET "\",\"duration_s\":60,\"intensity\":\"vigorous\"}",
            k ? "," : "", app->run_id, c->index, (unsigned long long)item, date,
            (int)(slot % 1440 / 60), (int)(slot % 60));
    }
    n += snprintf(buf + n, sizeof(buf) - (size_t)n, "]}");
    c->msg_sent_ns[msg % MSG_RING] = t;
    app->msgs_sent++;
    app->items_sent += (uint64_t)app->batch;
    return conn_send_text(c, buf, (size_t)n);
}

static uint64_t conn_inflight(const bench_conn *c)
{
    return c->next_msg - c->acked_msgs;
}

/* "code" of an error object, counted. */
static void count_error_obj(bench_app *app, const json_t *o)
{
    const char *code = json_string_value(json_object_get(o, "code"));
    count_code(app, code ? code : "error");
}

/*
 * Scans the weekly entries {"rank":..,"name":"bu<i>","score":S} of a board
 * message: for each uploader whose reflected items grew, records one push
 * latency sample per new item (unless baseline, the subscribe reply).
 */
static void scan_entries(bench_conn *c, const char *p, int baseline)
{
    bench_app *app = c->app;
    uint64_t t = uv_hrtime();
    const char *e = strstr(p, "\"entries\"");
    if (!e)
        return;
    p = e;
    while ((p = strstr(p, "\"name\":\"")) != NULL) {
        p += 8;
        if (p[0] != 'b' || p[1] != 'u')
            continue;
        char *end;
        long u = strtol(p + 2, &end, 10);
        if (*end != '"' || u < 0 || u >= app->uploaders)
            continue;
        const char *s = strstr(end, "\"score\":");
        if (!s)
            break;
        long score = strtol(s + 8, NULL, 10);
        int items = (int)(score / 2);
        if (items > SLOTS_PER_WEEK)
            items = SLOTS_PER_WEEK;
        int *seen = &c->seen_items[u];
        if (items > *seen) {
            if (!baseline) {
                const bench_conn *up = &app->conns[u];
                for (int k = *seen; k < items; k++) {
                    uint64_t sent = up->item_sent_ns[k];
                    if (sent && t > sent)
                        h_add(&app->push_lat, (t - sent) / 1000);
                }
            }
            *seen = items;
        }
        p = s;
    }
}

static void on_upload_reply(bench_conn *c, const char *buf, size_t len, uint64_t msg)
{
    bench_app *app = c->app;
    uint64_t t = uv_hrtime();
    if (msg < c->next_msg && c->next_msg - msg <= MSG_RING)
        h_add(&app->ack_lat, (t - c->msg_sent_ns[msg % MSG_RING]) / 1000);
    c->acked_msgs++;
    app->acks++;
    if (app->phase == P_MEASURE)
        app->acks_in_window++;
    if (app->echo) {
        app->items_created += (uint64_t)app->batch;
        return;
    }
    json_error_t jerr;
    json_t *m = json_loadb(buf, len, 0, &jerr);
    const char *type = json_string_value(json_object_get(m, "type"));
    if (!type || strcmp(type, "error") == 0) {
        count_error_obj(app, m);
        app->items_rejected += (uint64_t)app->batch;
    } else {
        size_t i;
        json_t *r;
        json_array_foreach(json_object_get(m, "results"), i, r)
        {
            const char *st = json_string_value(json_object_get(r, "status"));
            if (st && strcmp(st, "created") == 0)
                app->items_created++;
            else if (st && strcmp(st, "duplicate") == 0)
                app->items_duplicate++;
            else {
                app->items_rejected++;
                count_error_obj(app, r);
            }
        }
    }
    json_decref(m);
}

static void refill(bench_conn *c);

/* One complete message from the server. */
static void conn_on_message(bench_conn *c, char *buf, size_t len)
{
    bench_app *app = c->app;
    buf[len] = '\0';
    app->frames_rx++;
    app->bytes_rx += len;
    c->deadline_ms = now_ms(app) + (uint64_t)app->reply_timeout_s * 1000;
    const char *re = strstr(buf, "\"re\":\"");
    if (!re) {
        /* A push: leaderboard pushes are counted and scanned; others (progress) ignored. */
        if (strstr(buf, "\"type\":\"leaderboard\"")) {
            app->pushes++;
            if (app->phase == P_MEASURE)
                app->pushes_in_window++;
            if (c->role == ROLE_SUBSCRIBER && c->seen_items)
                scan_entries(c, buf, 0);
        } else if (strstr(buf, "\"type\":\"error\"")) {
            json_t *m = json_loadb(buf, len, 0, NULL);
            count_error_obj(app, m);
            json_decref(m);
        }
        return;
    }
    re += 6;
    int is_error = strstr(buf, "\"type\":\"error\"") != NULL;
    if (re[0] >= '0' && re[0] <= '9') {
        on_upload_reply(c, buf, len, strtoull(re, NULL, 10));
        refill(c);
        return;
    }
    if (is_error) {
        json_t *m = json_loadb(buf, len, 0, NULL);
        count_error_obj(app, m);
        json_decref(m);
        conn_fail(c, "setup_refused", "%.*s refused: %.200s", 1, re, buf);
        return;
    }
    if (re[0] == 'h' && c->state == C_HELLO)
        conn_setup(c);
    else if (re[0] == 'e' && c->role == ROLE_STAFF && c->state == C_SETUP)
        on_staff_reply(c);
    else if (re[0] == 'p' && c->state == C_SETUP) {
        c->profiled = 1;
        conn_setup_next(c);
    } else if (re[0] == 'y' && c->state == C_SETUP) {
        /* history: every session must be stored (created, or duplicate on a rerun) */
        json_t *m = json_loadb(buf, len, 0, NULL);
        size_t i;
        json_t *r;
        json_array_foreach(json_object_get(m, "results"), i, r)
        {
            const char *st = json_string_value(json_object_get(r, "status"));
            if (!st || (strcmp(st, "created") != 0 && strcmp(st, "duplicate") != 0))
                count_error_obj(app, r);
        }
        json_decref(m);
        c->hist_acked++;
        app->hist_inflight--;
        conn_setup_next(c);
    } else if (re[0] == 'j' && c->state == C_SETUP) {
        c->joins_acked++;
        conn_setup_next(c);
    } else if (re[0] == 's' && c->state == C_SETUP) {
        scan_entries(c, buf, 1);
        conn_ready(c);
    }
}

static int conn_on_receive(bench_conn *c, struct lws *wsi, const void *in, size_t len)
{
    char *msg;
    size_t n;
    int rc = fit_wsio_receive(&c->io, wsi, in, len, MAX_RX, &msg, &n);
    if (rc == FIT_WSIO_TOO_LARGE)
        conn_fail(c, "client_too_large", "a message exceeds %u bytes", MAX_RX);
    else if (rc == FIT_WSIO_NOMEM)
        conn_fail(c, "client_oom", "out of memory receiving");
    if (rc < 0)
        return -1;
    if (rc == 1)
        conn_on_message(c, msg, n);
    return 0;
}

static int conn_on_writeable(bench_conn *c, struct lws *wsi)
{
    if (fit_wsio_write(&c->io, wsi) < 0) {
        conn_fail(c, "write_failed", "write to the server failed");
        return -1;
    }
    return 0;
}

static int client_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                           size_t len)
{
    bench_conn *c = user;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (c && c->state != C_DONE && c->state != C_WAITING) {
            c->wsi = NULL;
            conn_fail(c, "connect_failed", "cannot connect: %.200s",
                      in ? (const char *)in : "connection failed");
            conn_finish(c);
        }
        return 0;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (!c || c->state != C_CONNECTING)
            return -1;
        c->app->pending--;
        c->app->established++;
        if (!c->app->t_first_est_ns)
            c->app->t_first_est_ns = uv_hrtime();
        c->app->t_last_est_ns = uv_hrtime();
        c->deadline_ms = now_ms(c->app) + (uint64_t)c->app->reply_timeout_s * 1000;
        conn_send_hello(c);
        return c->failed ? -1 : 0;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (!c || c->state == C_DONE || c->failed)
            return -1;
        return conn_on_receive(c, wsi, in, len) != 0 || c->failed ? -1 : 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (!c || c->state == C_DONE || c->failed)
            return -1;
        return conn_on_writeable(c, wsi);
    case LWS_CALLBACK_CLIENT_CLOSED:
    case LWS_CALLBACK_WSI_DESTROY:
        if (c && c->state != C_DONE && c->state != C_WAITING) {
            c->wsi = NULL;
            if (c->app->phase != P_DONE)
                conn_fail(c, "closed", "the server closed the connection");
            conn_finish(c);
        }
        return 0;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols client_protocols[] = {
    {SUBPROTOCOL, client_callback, 0, 4096, 0, NULL, 0}, {NULL, NULL, 0, 0, 0, NULL, 0}};

static void conn_start(bench_conn *c)
{
    bench_app *app = c->app;
    char address[32], host_header[64];
    int h = app->nhosts > 1 ? (int)(c - app->conns) % app->nhosts : 0;
    if (app->nhosts > 1)
        snprintf(address, sizeof(address), "127.0.0.%d", 1 + h);
    else
        snprintf(address, sizeof(address), "%s", app->host);
    snprintf(host_header, sizeof(host_header), "%s:%d", address, app->port);
    c->state = C_CONNECTING;
    c->deadline_ms = now_ms(app) + (uint64_t)app->connect_timeout_s * 1000;
    app->active++;
    app->pending++;
    struct lws_client_connect_info i;
    memset(&i, 0, sizeof(i));
    i.context = app->ctx;
    i.address = address;
    i.port = app->port;
    i.path = "/";
    i.host = host_header;
    i.origin = host_header;
    i.protocol = SUBPROTOCOL;
    i.local_protocol_name = SUBPROTOCOL;
    i.userdata = c;
    i.pwsi = &c->wsi;
    if (!lws_client_connect_via_info(&i)) {
        c->wsi = NULL;
        conn_fail(c, "connect_failed", "cannot connect to %s:%d", address, app->port);
        conn_finish(c);
    }
}

/* ------------------------------------------------------------------ */
/* phases                                                              */

static void handle_closed(uv_handle_t *h)
{
    (void)h;
}

static void app_finish(bench_app *app)
{
    if (app->finished)
        return;
    app->finished = 1;
    app->phase = P_DONE;
    if (app->ctx)
        lws_context_destroy(app->ctx);
    uv_close((uv_handle_t *)&app->tick, handle_closed);
    uv_close((uv_handle_t *)&app->sigint, handle_closed);
    uv_close((uv_handle_t *)&app->sigterm, handle_closed);
}

static void start_measure(bench_app *app)
{
    app->phase = P_MEASURE;
    app->t_measure_ns = uv_hrtime();
    getrusage(RUSAGE_SELF, &app->ru_measure0);
    fprintf(stderr, "fitsync-bench: %d connections ready (%d failed); measuring for %.1f s\n",
            app->ready, app->nfailed, app->duration_s);
    if (app->ready_path) {
        FILE *f = fopen(app->ready_path, "w");
        if (f) {
            fprintf(f, "%d\n", app->ready);
            fclose(f);
        }
    }
    if (app->upload_rate <= 0) /* closed loop: fill every uploader's window */
        for (int u = 0; u < app->uploaders; u++) {
            bench_conn *c = &app->conns[u];
            while (c->state == C_READY && !c->failed && conn_inflight(c) < (uint64_t)app->inflight)
                if (conn_upload(c) != 0)
                    break;
        }
}

/* Paced uploads: the tick's share of --upload-rate, round robin over uploaders. */
static void pace_uploads(bench_app *app, double dt_s)
{
    app->upload_credit += app->upload_rate * dt_s;
    int tries = 0;
    while (app->upload_credit >= 1 && app->uploaders > 0) {
        bench_conn *c = &app->conns[app->rr];
        app->rr = (app->rr + 1) % app->uploaders;
        if (c->state == C_READY && !c->failed && conn_inflight(c) < (uint64_t)app->inflight) {
            conn_upload(c);
            app->upload_credit -= 1;
            tries = 0;
        } else if (++tries >= app->uploaders) {
            /* every uploader is at its window: the server is behind; count, do not queue */
            app->paced_skipped += (uint64_t)app->upload_credit;
            app->upload_credit = 0;
        }
    }
}

static void check_deadlines(bench_app *app)
{
    uint64_t now = now_ms(app);
    for (int i = 0; i < app->next_conn; i++) {
        bench_conn *c = &app->conns[i];
        if (c->state == C_DONE || c->failed || now < c->deadline_ms)
            continue;
        if (c->state == C_CONNECTING) {
            conn_fail(c, "connect_timeout", "no connection within %d s", app->connect_timeout_s);
            conn_kill(c);
            if (c->state != C_DONE) { /* lws did not call back: abandon it */
                c->wsi = NULL;
                conn_finish(c);
            }
        } else if (c->state != C_READY || (c->role == ROLE_UPLOADER && conn_inflight(c) > 0)) {
            conn_fail(c, "reply_timeout", "no reply within %d s", app->reply_timeout_s);
            conn_kill(c);
        } else {
            c->deadline_ms = now + (uint64_t)app->reply_timeout_s * 1000;
        }
    }
}

static void tick_cb(uv_timer_t *t)
{
    bench_app *app = t->data;
    uint64_t now = uv_hrtime();
    if (app->phase == P_CONNECT) {
        double elapsed = (double)(now - app->t_start_ns) / 1e9;
        int due = app->ramp_s > 0 ? (int)(elapsed / app->ramp_s * app->connections) + 1
                                  : app->connections;
        if (due > app->connections)
            due = app->connections;
        if (app->staff && app->staff->state == C_WAITING)
            conn_start(app->staff);
        /* History: uploaders that wait for a free slot get it as slots free up. */
        for (int u = 0; u < app->uploaders && app->hist_inflight < HIST_INFLIGHT; u++) {
            bench_conn *c = &app->conns[u];
            if (c->state == C_SETUP && !c->failed && c->profiled &&
                c->hist_sent < hist_messages(app))
                conn_setup_next(c);
        }
        while (!app->interrupted && app->next_conn < due && app->pending < app->max_pending)
            conn_start(&app->conns[app->next_conn++]);
        if (app->next_conn == app->connections && app->pending == 0 &&
            app->ready + app->nfailed >= app->connections)
            start_measure(app);
    } else if (app->phase == P_MEASURE) {
        double dt = (double)(now - (app->t_drain_ns ? app->t_drain_ns : app->t_measure_ns)) / 1e9;
        if (app->upload_rate > 0) {
            static uint64_t last;
            double step = last ? (double)(now - last) / 1e9 : 0;
            last = now;
            pace_uploads(app, step);
        }
        (void)dt;
        if ((double)(now - app->t_measure_ns) / 1e9 >= app->duration_s) {
            app->phase = P_DRAIN;
            app->t_measure_end_ns = now;
            getrusage(RUSAGE_SELF, &app->ru_measure1);
            app->t_drain_ns = now;
        }
    } else if (app->phase == P_DRAIN) {
        uint64_t inflight = 0;
        for (int u = 0; u < app->uploaders; u++)
            if (app->conns[u].state == C_READY)
                inflight += conn_inflight(&app->conns[u]);
        double waited = (double)(now - app->t_drain_ns) / 1e6;
        if ((inflight == 0 && waited >= app->drain_ms) || waited >= 10000 + app->drain_ms)
            app_finish(app);
    }
    if (app->interrupted && app->phase != P_DONE)
        app_finish(app);
    if (!app->finished && now_ms(app) - app->last_deadline_check_ms >= 200) {
        app->last_deadline_check_ms = now_ms(app);
        check_deadlines(app);
    }
}

/* Closed loop: an ack frees a slot in the window. Runs after each ack. */
static void refill(bench_conn *c)
{
    bench_app *app = c->app;
    if (app->phase == P_MEASURE && app->upload_rate <= 0 && c->state == C_READY && !c->failed)
        while (conn_inflight(c) < (uint64_t)app->inflight)
            if (conn_upload(c) != 0)
                break;
}

static void signal_cb(uv_signal_t *h, int signum)
{
    bench_app *app = h->data;
    (void)signum;
    app->interrupted = 1;
}

/* ------------------------------------------------------------------ */
/* echo server (--serve-echo)                                          */

typedef struct {
    fit_wsio io;
} echo_sess;

static int echo_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                         size_t len)
{
    echo_sess *s = user;
    switch (reason) {
    case LWS_CALLBACK_RECEIVE: {
        char *rx;
        size_t rxn;
        int rc = fit_wsio_receive(&s->io, wsi, in, len, MAX_RX, &rx, &rxn);
        if (rc <= 0)
            return rc;
        /* Reply {"type":"ack","re":"<id>"}: the id is the value of "id", found by a scan. */
        const char *id = strstr(rx, "\"id\":\"");
        int idlen = 0;
        if (id) {
            id += 6;
            idlen = (int)strcspn(id, "\"");
        }
        char out[160];
        int n = snprintf(out, sizeof(out), "{\"type\":\"ack\",\"re\":\"%.*s\"}",
                         idlen > 64 ? 64 : idlen, id ? id : "");
        return fit_wsio_queue(&s->io, wsi, out, (size_t)n);
    }
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return fit_wsio_write(&s->io, wsi) < 0 ? -1 : 0;
    case LWS_CALLBACK_CLOSED:
        if (s)
            fit_wsio_free(&s->io);
        return 0;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols echo_protocols[] = {
    {"http", lws_callback_http_dummy, 0, 0, 0, NULL, 0},
    {SUBPROTOCOL, echo_callback, sizeof(echo_sess), 16384, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0}};

static uv_signal_t echo_sigint, echo_sigterm;
static struct lws_context *echo_ctx;

static void echo_signal_cb(uv_signal_t *h, int signum)
{
    (void)signum;
    if (echo_ctx)
        lws_context_destroy(echo_ctx); /* first stage; pcontext clears echo_ctx when done */
    uv_close((uv_handle_t *)&echo_sigint, handle_closed);
    uv_close((uv_handle_t *)&echo_sigterm, handle_closed);
    (void)h;
}

static int serve_echo(int port)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    void *loops[1] = {&loop};
    lws_set_log_level(LLL_ERR, NULL);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = port;
    info.iface = "127.0.0.1";
    info.protocols = echo_protocols;
    info.options = LWS_SERVER_OPTION_LIBUV;
    info.foreign_loops = loops;
    info.pcontext = &echo_ctx;
    echo_ctx = lws_create_context(&info);
    if (!echo_ctx) {
        fprintf(stderr, "fitsync-bench: cannot listen on 127.0.0.1:%d\n", port);
        return 1;
    }
    uv_signal_init(&loop, &echo_sigint);
    uv_signal_init(&loop, &echo_sigterm);
    uv_signal_start(&echo_sigint, echo_signal_cb, SIGINT);
    uv_signal_start(&echo_sigterm, echo_signal_cb, SIGTERM);
    fprintf(stderr, "fitsync-bench: echo server on ws://127.0.0.1:%d (subprotocol %s)\n", port,
            SUBPROTOCOL);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (echo_ctx)
        lws_context_destroy(echo_ctx);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return 0;
}

/* ------------------------------------------------------------------ */
/* report                                                              */

static double tv_s(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static double ru_cpu_s(const struct rusage *r)
{
    return tv_s(r->ru_utime) + tv_s(r->ru_stime);
}

static void report(bench_app *app)
{
    struct rusage ru_all;
    getrusage(RUSAGE_SELF, &ru_all);
    if (!app->t_measure_end_ns) {
        app->t_measure_end_ns = uv_hrtime();
        app->ru_measure1 = ru_all;
    }
    double win = app->t_measure_ns ? (double)(app->t_measure_end_ns - app->t_measure_ns) / 1e9 : 0;
    double hs = app->t_last_est_ns > app->t_start_ns
                    ? (double)(app->t_last_est_ns - app->t_start_ns) / 1e9
                    : 0;
    double cpu_win =
        app->t_measure_ns ? ru_cpu_s(&app->ru_measure1) - ru_cpu_s(&app->ru_measure0) : 0;
    uint64_t errors = errors_total(app);
    json_t *codes = json_object();
    for (int i = 0; i < app->ncodes; i++)
        json_object_set_new(codes, app->codes[i].code, json_integer((json_int_t)app->codes[i].n));
    json_t *j = json_pack(
        "{s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:f, s:i, s:i, s:f, s:f,"
        " s:I, s:I, s:f, s:f, s:I, s:I, s:I, s:I,"
        " s:{s:f, s:f, s:f, s:f, s:I}, s:{s:f, s:f, s:f, s:f, s:I},"
        " s:I, s:f, s:I, s:I, s:o, s:I, s:f, s:f, s:f, s:I}",
        "target", app->echo ? "echo" : "fitsyncd", "week", app->week, "connections",
        app->connections, "uploaders", app->uploaders, "subscribers", app->subscribers, "boards",
        app->boards, "batch", app->batch, "limit", app->limit, "upload_rate", app->upload_rate,
        "duration_s", app->duration_s, "window_s", win, "established", app->established, "ready",
        app->ready, "handshake_s", hs, "handshakes_per_s", hs > 0 ? app->established / hs : 0.0,
        "messages_sent", (json_int_t)app->msgs_sent, "acks", (json_int_t)app->acks, "acks_per_s",
        win > 0 ? (double)app->acks_in_window / win : 0.0, "items_per_s",
        win > 0 ? (double)app->acks_in_window * app->batch / win : 0.0, "items_sent",
        (json_int_t)app->items_sent, "items_created", (json_int_t)app->items_created,
        "items_duplicate", (json_int_t)app->items_duplicate, "items_rejected",
        (json_int_t)app->items_rejected, "ack_latency_ms", "p50",
        h_quantile_ms(&app->ack_lat, 0.50), "p90", h_quantile_ms(&app->ack_lat, 0.90), "p99",
        h_quantile_ms(&app->ack_lat, 0.99), "max", (double)app->ack_lat.max_us / 1000.0, "n",
        (json_int_t)app->ack_lat.count, "push_latency_ms", "p50",
        h_quantile_ms(&app->push_lat, 0.50), "p90", h_quantile_ms(&app->push_lat, 0.90), "p99",
        h_quantile_ms(&app->push_lat, 0.99), "max", (double)app->push_lat.max_us / 1000.0, "n",
        (json_int_t)app->push_lat.count, "pushes", (json_int_t)app->pushes, "pushes_per_s",
        win > 0 ? (double)app->pushes_in_window / win : 0.0, "frames_rx",
        (json_int_t)app->frames_rx, "bytes_rx", (json_int_t)app->bytes_rx, "errors", codes,
        "errors_total", (json_int_t)errors, "cpu_s", ru_cpu_s(&ru_all), "cpu_window_s", cpu_win,
        "cpu_window_share", win > 0 ? cpu_win / win : 0.0, "paced_skipped",
        (json_int_t)app->paced_skipped);
    if (!j) {
        fprintf(stderr, "fitsync-bench: cannot build the JSON report\n");
        return;
    }
    printf("fitsync-bench: target %s, week %s, %d connections (%d uploaders, %d subscribers on %d "
           "board(s), limit %d), batch %d, rate %s\n",
           app->echo ? "echo" : "fitsyncd", app->week, app->connections, app->uploaders,
           app->subscribers, app->boards, app->limit, app->batch,
           app->upload_rate > 0 ? "paced" : "closed loop");
    if (app->upload_rate > 0)
        printf("  upload rate asked      %.0f msg/s (skipped when every uploader's window was "
               "full: %llu)\n",
               app->upload_rate, (unsigned long long)app->paced_skipped);
    printf("  connections            %d established, %d ready in %.2f s (%.0f handshakes/s)\n",
           app->established, app->ready, hs, hs > 0 ? app->established / hs : 0.0);
    printf("  window                 %.2f s\n", win);
    printf("  acks                   %llu (%.0f/s, %.0f items/s); items created %llu, duplicate "
           "%llu, rejected %llu\n",
           (unsigned long long)app->acks, win > 0 ? (double)app->acks_in_window / win : 0.0,
           win > 0 ? (double)app->acks_in_window * app->batch / win : 0.0,
           (unsigned long long)app->items_created, (unsigned long long)app->items_duplicate,
           (unsigned long long)app->items_rejected);
    printf("  ack latency ms         p50 %.2f  p90 %.2f  p99 %.2f  max %.2f  (n=%llu)\n",
           h_quantile_ms(&app->ack_lat, 0.5), h_quantile_ms(&app->ack_lat, 0.9),
           h_quantile_ms(&app->ack_lat, 0.99), (double)app->ack_lat.max_us / 1000.0,
           (unsigned long long)app->ack_lat.count);
    printf("  push latency ms        p50 %.2f  p90 %.2f  p99 %.2f  max %.2f  (n=%llu)\n",
           h_quantile_ms(&app->push_lat, 0.5), h_quantile_ms(&app->push_lat, 0.9),
           h_quantile_ms(&app->push_lat, 0.99), (double)app->push_lat.max_us / 1000.0,
           (unsigned long long)app->push_lat.count);
    printf("  pushes                 %llu (%.0f/s in the window)\n",
           (unsigned long long)app->pushes, win > 0 ? (double)app->pushes_in_window / win : 0.0);
    printf("  errors                 %llu", (unsigned long long)errors);
    for (int i = 0; i < app->ncodes; i++)
        printf("%s%s=%llu", i ? ", " : " (", app->codes[i].code,
               (unsigned long long)app->codes[i].n);
    printf("%s\n", app->ncodes ? ")" : "");
    printf("  client cpu             %.2f s in all, %.2f s in the window (%.0f%% of a core)\n",
           ru_cpu_s(&ru_all), cpu_win, win > 0 ? 100 * cpu_win / win : 0.0);
    if (app->repeated_errors)
        printf("  (%llu more failures repeated the last message printed)\n",
               (unsigned long long)app->repeated_errors);
    fflush(stdout);
    if (app->json_path) {
        if (json_dump_file(j, app->json_path, JSON_INDENT(2)) != 0)
            fprintf(stderr, "fitsync-bench: cannot write %s\n", app->json_path);
    }
    json_decref(j);
}

/* ------------------------------------------------------------------ */
/* options and main                                                    */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: fitsync-bench [--host 127.0.0.1] [--port 8080] [--hosts N] [--data-dir DIR]\n"
            "         [--connections N] [--uploaders N] [--subscribers N] [--boards K]\n"
            "         [--limit L] [--upload-rate MSG_PER_S] [--batch B] [--inflight W]\n"
            "         [--duration S] [--ramp S] [--max-pending N] [--week YYYY-Www]\n"
            "         [--json FILE] [--ready-file FILE] [--echo] [--drain-ms MS]\n"
            "         [--connect-timeout S] [--reply-timeout S] [--spread-days D]\n"
            "         [--history-days N] [--sessions-per-day S] [--challenges C]\n"
            "       fitsync-bench --serve-echo PORT\n"
            "\n"
            "Drives fitsyncd with N connections: uploaders (member bu<i>, activity.upload of B\n"
            "60 s vigorous sessions per message, paced to --upload-rate messages/s in total,\n"
            "or as fast as acks come back with W outstanding per uploader when the rate is 0),\n"
            "subscribers (leaderboard.subscribe to week:<W>:all, or K district boards), and\n"
            "idle authenticated connections. Reports connections and handshake rate, acks/s,\n"
            "ack latency, push latency (upload sent -> push that shows it), pushes/s, errors\n"
            "by code and its own CPU time; as text on stdout, as JSON with --json.\n"
            "--hosts N spreads connections over 127.0.0.1..127.0.0.N (more ephemeral ports).\n"
            "--ready-file is written once every connection is set up (before measuring).\n"
            "--spread-days D spreads each uploader's sessions over D days (W's Sunday and\n"
            "earlier, at most 42), as members have a few sessions a day; push latency is then\n"
            "not measured (scores no longer rise by 2 per item in week W).\n"
            "--history-days N [--sessions-per-day S] gives each uploader N days of history\n"
            "(S sessions a day, default 30) before measuring; --challenges C makes it join C\n"
            "virtual challenges (most ended, max(1, C/5) running) that a staff connection\n"
            "creates first (the server must accept dates that old: FITSYNC_MAX_AGE_WEEKS).\n"
            "Exit status 0 only if there was no error of any kind.\n");
}

static int parse_int(const char *name, const char *s, int lo, int hi, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || end == s || v < lo || v > hi) {
        fprintf(stderr, "fitsync-bench: %s must be %d..%d\n", name, lo, hi);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int parse_double(const char *name, const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (*end || end == s || !(v >= lo && v <= hi)) {
        fprintf(stderr, "fitsync-bench: %s must be %g..%g\n", name, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

/* Returns 0, 1 (help), 2 (usage error), or 3 (serve echo on *echo_port). */
static int options_parse(bench_app *app, int argc, char **argv, int *echo_port)
{
    static const struct option opts[] = {{"host", required_argument, NULL, 'H'},
                                         {"port", required_argument, NULL, 'p'},
                                         {"hosts", required_argument, NULL, 'X'},
                                         {"data-dir", required_argument, NULL, 'd'},
                                         {"connections", required_argument, NULL, 'n'},
                                         {"uploaders", required_argument, NULL, 'U'},
                                         {"subscribers", required_argument, NULL, 'S'},
                                         {"boards", required_argument, NULL, 'K'},
                                         {"limit", required_argument, NULL, 'L'},
                                         {"upload-rate", required_argument, NULL, 'r'},
                                         {"batch", required_argument, NULL, 'b'},
                                         {"inflight", required_argument, NULL, 'w'},
                                         {"duration", required_argument, NULL, 'D'},
                                         {"ramp", required_argument, NULL, 'R'},
                                         {"max-pending", required_argument, NULL, 'P'},
                                         {"week", required_argument, NULL, 'W'},
                                         {"json", required_argument, NULL, 'j'},
                                         {"ready-file", required_argument, NULL, 'f'},
                                         {"echo", no_argument, NULL, 'e'},
                                         {"drain-ms", required_argument, NULL, 'm'},
                                         {"connect-timeout", required_argument, NULL, 't'},
                                         {"reply-timeout", required_argument, NULL, 'T'},
                                         {"serve-echo", required_argument, NULL, 'E'},
                                         {"spread-days", required_argument, NULL, 's'},
                                         {"history-days", required_argument, NULL, 'Y'},
                                         {"sessions-per-day", required_argument, NULL, 'Q'},
                                         {"challenges", required_argument, NULL, 'C'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    app->host = "127.0.0.1";
    app->port = 8080;
    app->nhosts = 1;
    app->data_dir = "data";
    app->connections = 0;
    app->uploaders = -1;
    app->boards = 1;
    app->limit = 100;
    app->batch = 1;
    app->inflight = 8;
    app->duration_s = 10;
    app->max_pending = 256;
    app->connect_timeout_s = 20;
    app->reply_timeout_s = 30;
    app->drain_ms = 600;
    app->sessions_per_day = 30;
    const char *week = NULL;
    int c, rc = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'H':
            app->host = optarg;
            break;
        case 'p':
            rc |= parse_int("--port", optarg, 1, 65535, &app->port);
            break;
        case 'X':
            rc |= parse_int("--hosts", optarg, 1, 200, &app->nhosts);
            break;
        case 'd':
            app->data_dir = optarg;
            break;
        case 'n':
            rc |= parse_int("--connections", optarg, 0, 1000000, &app->connections);
            break;
        case 'U':
            rc |= parse_int("--uploaders", optarg, 0, 100000, &app->uploaders);
            break;
        case 'S':
            rc |= parse_int("--subscribers", optarg, 0, 1000000, &app->subscribers);
            break;
        case 'K':
            rc |= parse_int("--boards", optarg, 1, 18, &app->boards);
            break;
        case 'L':
            rc |= parse_int("--limit", optarg, 1, 100, &app->limit);
            break;
        case 'r':
            rc |= parse_double("--upload-rate", optarg, 0, 1e7, &app->upload_rate);
            break;
        case 'b':
            rc |= parse_int("--batch", optarg, 1, 200, &app->batch);
            break;
        case 'w':
            rc |= parse_int("--inflight", optarg, 1, MSG_RING, &app->inflight);
            break;
        case 'D':
            rc |= parse_double("--duration", optarg, 0, 86400, &app->duration_s);
            break;
        case 'R':
            rc |= parse_double("--ramp", optarg, 0, 3600, &app->ramp_s);
            break;
        case 'P':
            rc |= parse_int("--max-pending", optarg, 1, 100000, &app->max_pending);
            break;
        case 'W':
            week = optarg;
            break;
        case 'j':
            app->json_path = optarg;
            break;
        case 'f':
            app->ready_path = optarg;
            break;
        case 'e':
            app->echo = 1;
            break;
        case 'm':
            rc |= parse_int("--drain-ms", optarg, 0, 600000, &app->drain_ms);
            break;
        case 't':
            rc |= parse_int("--connect-timeout", optarg, 1, 3600, &app->connect_timeout_s);
            break;
        case 'T':
            rc |= parse_int("--reply-timeout", optarg, 1, 3600, &app->reply_timeout_s);
            break;
        case 's':
            rc |= parse_int("--spread-days", optarg, 1, 42, &app->spread_days);
            break;
        case 'Y':
            rc |= parse_int("--history-days", optarg, 0, 366, &app->history_days);
            break;
        case 'Q':
            rc |= parse_int("--sessions-per-day", optarg, 1, 100, &app->sessions_per_day);
            break;
        case 'C':
            rc |= parse_int("--challenges", optarg, 0, 100, &app->challenges);
            break;
        case 'E':
            if (parse_int("--serve-echo", optarg, 1, 65535, echo_port) != 0)
                return 2;
            return 3;
        case 'h':
            usage(stdout);
            return 1;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (rc)
        return 2;
    if (optind < argc) {
        fprintf(stderr, "fitsync-bench: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    if (app->uploaders < 0)
        app->uploaders = app->connections > 0 && app->connections < 50 ? app->connections : 50;
    if (app->echo)
        app->subscribers = 0;
    if (app->connections < app->uploaders + app->subscribers)
        app->connections = app->uploaders + app->subscribers;
    if (app->connections == 0) {
        fprintf(stderr, "fitsync-bench: nothing to do (no connections)\n");
        return 2;
    }
    if (app->subscribers > 0 && app->uploaders > app->limit * app->boards)
        fprintf(stderr,
                "fitsync-bench: warning: %d uploaders on %d board(s) of limit %d: not all of "
                "them are visible to subscribers, push latency counts only those that are\n",
                app->uploaders, app->boards, app->limit);
    /* The week: --week, else the previous ISO week in the programme's zone (+08:00). */
    int y, w;
    if (week) {
        if (fit_iso_week_parse(week, &y, &w) != 0) {
            fprintf(stderr, "fitsync-bench: --week \"%s\" is not like 2026-W48\n", week);
            return 2;
        }
        app->monday = fit_iso_week_monday(y, w);
    } else {
        int64_t local_days = ((int64_t)time(NULL) + TZ_OFFSET_MIN * 60) / 86400;
        fit_date last = fit_civil_from_days(local_days - 7);
        char name[FIT_WEEK_LEN];
        fit_date_week_name(last, name);
        fit_iso_week_parse(name, &y, &w);
        app->monday = fit_iso_week_monday(y, w);
    }
    /* The district boards are the server's own (config/districts.json), not a copy. */
    char err[256];
    json_t *dj = json_load_file(FITSYNC_CONFIG_DIR "/districts.json", 0, NULL);
    json_t *bj = json_load_file(FITSYNC_CONFIG_DIR "/age_bands.json", 0, NULL);
    int trc = fit_board_tables_load(&app->tables, dj, bj, err, sizeof(err));
    json_decref(dj);
    json_decref(bj);
    if (trc != 0 || (size_t)app->boards > app->tables.ndistricts) {
        fprintf(stderr, "fitsync-bench: %s/districts.json: %s\n", FITSYNC_CONFIG_DIR,
                trc ? err : "fewer districts than --boards");
        return 2;
    }
    fit_date_week_name(app->monday, app->week);
    for (int b = 0; b < app->boards; b++) {
        if (app->boards == 1)
            snprintf(app->board_names[b], sizeof(app->board_names[b]), "week:%s:all", app->week);
        else
            snprintf(app->board_names[b], sizeof(app->board_names[b]), "week:%s:district:%s",
                     app->week, app->tables.districts[b].slug);
    }
    snprintf(app->run_id, sizeof(app->run_id), "b%lx", (unsigned long)time(NULL) % 0xfffffff);
    return 0;
}

int main(int argc, char **argv)
{
    static bench_app app;
    int echo_port = 0;
    int rc = options_parse(&app, argc, argv, &echo_port);
    if (rc == 1)
        return 0;
    if (rc == 2)
        return 2;
    if (rc == 3)
        return serve_echo(echo_port);
    if (!app.echo) {
        char err[512];
        if (fit_secret_find(getenv("FITSYNC_TOKEN_SECRET"), app.data_dir, 0, app.secret,
                            sizeof(app.secret), err, sizeof(err)) != 0) {
            fprintf(stderr, "fitsync-bench: %s\n", err);
            return 2;
        }
    } else {
        snprintf(app.secret, sizeof(app.secret), "echo");
    }
    app.conns = calloc((size_t)app.connections + 1, sizeof(*app.conns));
    if (!app.conns) {
        fprintf(stderr, "fitsync-bench: out of memory\n");
        return 2;
    }
    for (int i = 0; i < app.connections; i++) {
        bench_conn *c = &app.conns[i];
        c->app = &app;
        if (i < app.uploaders) {
            c->role = ROLE_UPLOADER;
            c->index = i;
            c->item_sent_ns = calloc(SLOTS_PER_WEEK, sizeof(uint64_t));
        } else if (i < app.uploaders + app.subscribers) {
            c->role = ROLE_SUBSCRIBER;
            c->index = i - app.uploaders;
            c->seen_items = calloc((size_t)app.uploaders + 1, sizeof(int));
        } else {
            c->role = ROLE_IDLE;
            c->index = i - app.uploaders - app.subscribers;
        }
        if ((c->role == ROLE_UPLOADER && !c->item_sent_ns) ||
            (c->role == ROLE_SUBSCRIBER && !c->seen_items)) {
            fprintf(stderr, "fitsync-bench: out of memory\n");
            return 2;
        }
    }
    if (app.challenges > 0 && !app.echo) {
        app.staff = &app.conns[app.connections];
        app.staff->app = &app;
        app.staff->role = ROLE_STAFF;
    }
    uv_loop_init(&app.loop);
    uv_timer_init(&app.loop, &app.tick);
    uv_signal_init(&app.loop, &app.sigint);
    uv_signal_init(&app.loop, &app.sigterm);
    app.tick.data = app.sigint.data = app.sigterm.data = &app;
    lws_set_log_level(LLL_ERR, NULL);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    app.foreign_loops[0] = &app.loop;
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = client_protocols;
    info.options = LWS_SERVER_OPTION_LIBUV;
    info.foreign_loops = app.foreign_loops;
    info.pcontext = &app.ctx;
    info.user = &app;
    info.connect_timeout_secs = (unsigned)app.connect_timeout_s;
    app.ctx = lws_create_context(&info);
    if (!app.ctx) {
        fprintf(stderr, "fitsync-bench: cannot create the libwebsockets context\n");
        return 2;
    }
    uv_signal_start(&app.sigint, signal_cb, SIGINT);
    uv_signal_start(&app.sigterm, signal_cb, SIGTERM);
    app.t_start_ns = uv_hrtime();
    uv_timer_start(&app.tick, tick_cb, 0, TICK_MS);
    uv_run(&app.loop, UV_RUN_DEFAULT);
    if (app.ctx)
        lws_context_destroy(app.ctx);
    uv_run(&app.loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&app.loop) != 0)
        fprintf(stderr, "fitsync-bench: warning: event loop closed with handles open\n");
    report(&app);
    int ok = errors_total(&app) == 0 && app.nfailed == 0 && app.items_rejected == 0 &&
             !app.interrupted && app.ready == app.connections;
    for (int i = 0; i <= app.connections; i++) {
        fit_wsio_free(&app.conns[i].io);
        free(app.conns[i].item_sent_ns);
        free(app.conns[i].seen_items);
    }
    free(app.conns);
    fit_board_tables_free(&app.tables);
    return ok ? 0 : 1;
}
