/*
 * fit_staff: what programme staff see — stats.get, stats.subscribe (pushes at
 * most once a second, only when a figure changed), the HTTP API
 * (GET /api/v1/stats and /api/v1/stats.csv) and the connected-devices
 * heartbeat every fitsyncd writes so that "connected devices now" counts all
 * processes. Staff tokens only; only aggregates (workers/fit_stats.h).
 */
#include "fit_handlers.h"
#include "fit_stats.h"

#include <stdlib.h>
#include <string.h>

#define STATS_TICK_MS 1000
#define HEARTBEAT_MS 1000

static int is_staff(const fit_session *s)
{
    return s->authed && s->claims.role == FIT_ROLE_STAFF;
}

/* Reads the optional "week"; "" means the current week. Replies and returns -1 on error. */
static int week_arg(fit_session *s, fit_request *req, char *week)
{
    json_t *v = json_object_get(req->root, "week");
    int y, w;
    week[0] = '\0';
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v) || fit_iso_week_parse(json_string_value(v), &y, &w) != 0) {
        fit_session_send_error(s, req->id, FIT_EINVALID_VALUE, "week",
                               "week must be an ISO week like 2026-W10");
        return -1;
    }
    snprintf(week, FIT_WEEK_LEN, "%s", json_string_value(v));
    return 0;
}

/* The stats document without its timestamp: what "changed" compares. */
static char *stats_text(const json_t *stats)
{
    json_t *c = json_copy((json_t *)stats);
    json_object_del(c, "generated_at");
    char *t = json_dumps(c, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(c);
    return t;
}

typedef struct {
    fit_pending *p;
    int subscribe;
    char week[FIT_WEEK_LEN];
} stats_req;

static void stats_reply(int err, const json_t *stats, void *data)
{
    stats_req *q = data;
    fit_session *s = q->p->s;
    if (err) {
        fit_reply_op_error(s, fit_pending_re(q->p), err, "");
    } else {
        json_t *r =
            fit_reply_new(q->subscribe ? "stats.subscribe" : "stats.get", fit_pending_re(q->p));
        json_object_set(r, "stats", (json_t *)stats);
        fit_session_send(s, r);
        json_decref(r);
        if (q->subscribe && s->wsi) {
            s->stats_sub = 1;
            snprintf(s->stats_week, sizeof(s->stats_week), "%s", q->week);
            free(s->stats_last);
            s->stats_last = stats_text(stats);
        }
    }
    fit_pending_free(q->p);
    free(q);
}

static void stats_request(fit_session *s, fit_request *req, int subscribe)
{
    if (!is_staff(s)) {
        fit_session_send_error(s, req->id, FIT_EFORBIDDEN, "",
                               "programme statistics are for staff tokens");
        return;
    }
    char week[FIT_WEEK_LEN], resolved[FIT_WEEK_LEN];
    if (week_arg(s, req, week) != 0)
        return;
    if (!week[0])
        fit_current_week(s->srv, resolved);
    else
        snprintf(resolved, sizeof(resolved), "%s", week);
    stats_req *q = calloc(1, sizeof(*q));
    fit_pending *p = q ? fit_pending_new(s, req) : NULL;
    if (!p) {
        free(q);
        return;
    }
    q->p = p;
    q->subscribe = subscribe;
    snprintf(q->week, sizeof(q->week), "%s", week);
    if (fit_stats_read(&s->srv->stats, resolved, fit_now_ms(), stats_reply, q) != 0) {
        fit_reply_unavailable(s, req->id);
        fit_pending_free(p);
        free(q);
    }
}

void fit_h_stats_get(fit_session *s, fit_request *req)
{
    stats_request(s, req, 0);
}

void fit_h_stats_subscribe(fit_session *s, fit_request *req)
{
    stats_request(s, req, 1);
}

void fit_h_stats_unsubscribe(fit_session *s, fit_request *req)
{
    int had = s->stats_sub;
    s->stats_sub = 0;
    free(s->stats_last);
    s->stats_last = NULL;
    json_t *r = fit_reply_new("stats.unsubscribe", req->id);
    json_object_set_new(r, "was_subscribed", json_boolean(had));
    fit_session_send(s, r);
    json_decref(r);
}

/* ---- the once-a-second push ---- */

typedef struct {
    fit_server *srv;
    char week[FIT_WEEK_LEN]; /* as subscribed: "" = current */
} tick_read;

static void tick_done(int err, const json_t *stats, void *data)
{
    tick_read *t = data;
    fit_server *srv = t->srv;
    srv->inflight--;
    if (!err) {
        char *text = stats_text(stats);
        json_t *msg = json_pack("{s:s, s:O}", "type", "stats", "stats", stats);
        for (fit_session *s = srv->all_sessions; s && text; s = s->all_next) {
            if (!s->stats_sub || strcmp(s->stats_week, t->week) != 0)
                continue;
            if (s->stats_last && strcmp(s->stats_last, text) == 0)
                continue;
            fit_session_send_keyed(s, msg, "stats");
            free(s->stats_last);
            s->stats_last = strdup(text);
        }
        json_decref(msg);
        free(text);
    }
    free(t);
}

static void stats_tick(uv_timer_t *timer)
{
    fit_server *srv = timer->data;
    /* One read per distinct week subscribed on this process. */
    char weeks[8][FIT_WEEK_LEN];
    int n = 0;
    for (fit_session *s = srv->all_sessions; s; s = s->all_next) {
        if (!s->stats_sub)
            continue;
        int seen = 0;
        for (int i = 0; i < n; i++)
            seen |= strcmp(weeks[i], s->stats_week) == 0;
        if (!seen && n < 8)
            snprintf(weeks[n++], FIT_WEEK_LEN, "%s", s->stats_week);
    }
    for (int i = 0; i < n; i++) {
        tick_read *t = calloc(1, sizeof(*t));
        if (!t)
            return;
        t->srv = srv;
        snprintf(t->week, sizeof(t->week), "%s", weeks[i]);
        char resolved[FIT_WEEK_LEN];
        if (weeks[i][0])
            snprintf(resolved, sizeof(resolved), "%s", weeks[i]);
        else
            fit_current_week(srv, resolved);
        srv->inflight++;
        if (fit_stats_read(&srv->stats, resolved, fit_now_ms(), tick_done, t) != 0) {
            srv->inflight--;
            free(t);
        }
    }
}

/* ---- connected devices, across processes ---- */

static void heartbeat_done(redisReply *r, const char *errstr, void *data)
{
    (void)r;
}

static void heartbeat(uv_timer_t *timer)
{
    fit_server *srv = timer->data;
    char origin[24], value[48];
    snprintf(origin, sizeof(origin), "%016llx", (unsigned long long)srv->origin);
    /* "count|expiry": a process that stops writing stops counting after 3 beats. */
    snprintf(value, sizeof(value), "%zu|%lld", srv->devices,
             (long long)(fit_now_ms() + 3 * HEARTBEAT_MS));
    const char *argv[] = {"HSET", "fit:{s0}:conns", origin, value};
    fit_redis_command(&srv->ops.redis, FIT_REDIS_IDEMPOTENT, heartbeat_done, NULL, 4, argv, NULL);
}

void fit_staff_start(fit_server *srv)
{
    srv->stats.ops = &srv->ops;
    srv->stats.tables = &srv->cfg->boards;
    srv->stats.k = srv->cfg->stats_k;
    uv_timer_init(srv->loop, &srv->stats_timer);
    srv->stats_timer.data = srv;
    uv_timer_start(&srv->stats_timer, stats_tick, STATS_TICK_MS, STATS_TICK_MS);
    uv_timer_init(srv->loop, &srv->heartbeat_timer);
    srv->heartbeat_timer.data = srv;
    uv_timer_start(&srv->heartbeat_timer, heartbeat, 0, HEARTBEAT_MS);
    srv->have_staff = 1;
}

void fit_staff_stop(fit_server *srv)
{
    if (!srv->have_staff)
        return;
    srv->have_staff = 0;
    uv_timer_stop(&srv->stats_timer);
    uv_timer_stop(&srv->heartbeat_timer);
    uv_close((uv_handle_t *)&srv->stats_timer, NULL);
    uv_close((uv_handle_t *)&srv->heartbeat_timer, NULL);
    /* This process's devices stop counting at once. */
    char origin[24];
    snprintf(origin, sizeof(origin), "%016llx", (unsigned long long)srv->origin);
    const char *argv[] = {"HDEL", "fit:{s0}:conns", origin};
    fit_redis_command(&srv->ops.redis, FIT_REDIS_IDEMPOTENT, heartbeat_done, NULL, 3, argv, NULL);
}
