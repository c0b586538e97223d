/*
 * fit_h_sync: reading a member's data back: week.get, history.get (with the
 * streak), the change feed (sync.pull, sync.snapshot) and the member's own
 * data (account.export, account.delete).
 *
 * Cursors are the ids of the user's change log (a Redis stream): opaque to
 * clients, ordered, and kept for config sync.window_days. A cursor older than
 * that gets resync_required, and sync.snapshot returns the whole state for
 * the window with a fresh cursor, like Health Connect's changesTokenExpired.
 */
#include "fit_handlers.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define HISTORY_MAX_WEEKS 104
#define STREAK_CHUNK 52
#define STREAK_MAX_CHUNKS 20 /* streaks are counted up to 20 years back */
#define PULL_DEFAULT 100
#define PULL_MAX 1000

/* Names of n consecutive ISO weeks starting at (year, week), into names[n]. */
static void week_range(int year, int week, int step, size_t n, char (*names)[FIT_WEEK_LEN])
{
    int64_t monday = fit_days_from_civil(fit_iso_week_monday(year, week));
    for (size_t i = 0; i < n; i++)
        fit_date_week_name(fit_civil_from_days(monday + (int64_t)i * 7 * step), names[i]);
}

/* Reads an optional week field; 1 = absent, 0 = parsed, -1 = error replied. */
static int week_field(fit_session *s, fit_request *req, const char *field, int *y, int *w)
{
    json_t *v = json_object_get(req->root, field);
    if (!v || json_is_null(v))
        return 1;
    if (!json_is_string(v) || fit_iso_week_parse(json_string_value(v), y, w) != 0) {
        fit_session_send_error(s, req->id,
                               json_is_string(v) ? FIT_EINVALID_VALUE : FIT_EINVALID_TYPE, field,
                               "must be an ISO week like 2026-W10 that exists");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* week.get                                                            */

static void week_reply(int err, const fit_week_status *st, size_t n, void *data)
{
    fit_pending *p = data;
    if (err) {
        fit_reply_op_error(p->s, fit_pending_re(p), err, "");
    } else {
        json_t *r = fit_reply_new("week.get", fit_pending_re(p));
        json_object_set_new(r, "week", fit_week_status_json(&st[0]));
        fit_session_send(p->s, r);
        json_decref(r);
    }
    fit_pending_free(p);
}

void fit_h_week_get(fit_session *s, fit_request *req)
{
    int y, w;
    char name[FIT_WEEK_LEN];
    int rc = week_field(s, req, "week", &y, &w);
    if (rc < 0)
        return;
    if (rc == 1)
        fit_current_week(s->srv, name);
    else
        fit_iso_week_format(y, w, name);
    const char *weeks[1] = {name};
    fit_pending *p = fit_pending_new(s, req);
    if (p && fit_ops_weeks_get(&s->srv->ops, p->user, weeks, 1, week_reply, p) != 0) {
        fit_reply_unavailable(s, req->id);
        fit_pending_free(p);
    }
}

/* ------------------------------------------------------------------ */
/* history.get                                                         */

typedef struct {
    fit_pending *p;
    json_t *weeks;
    int streak;
    int chunks;
    char from_week[FIT_WEEK_LEN]; /* the next streak chunk starts here, going back */
    char names[STREAK_CHUNK > HISTORY_MAX_WEEKS ? STREAK_CHUNK : HISTORY_MAX_WEEKS][FIT_WEEK_LEN];
} history_ctx;

static void history_finish(history_ctx *h, int err)
{
    if (err) {
        fit_reply_op_error(h->p->s, fit_pending_re(h->p), err, "");
    } else {
        char current[FIT_WEEK_LEN];
        fit_current_week(h->p->s->srv, current);
        json_t *r = fit_reply_new("history.get", fit_pending_re(h->p));
        json_object_set(r, "weeks", h->weeks);
        json_object_set_new(r, "streak", json_integer(h->streak));
        json_object_set_new(r, "current_week", json_string(current));
        fit_session_send(h->p->s, r);
        json_decref(r);
    }
    json_decref(h->weeks);
    fit_pending_free(h->p);
    free(h);
}

static void streak_chunk(history_ctx *h);

/*
 * The streak: consecutive weeks, up to the current one, in which the aerobic
 * target was met. The current week counts once met; until then it neither
 * counts nor breaks the streak (the week is not over).
 */
static void streak_done(int err, const fit_week_status *st, size_t n, void *data)
{
    history_ctx *h = data;
    if (err) {
        history_finish(h, err);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        int current = h->chunks == 1 && i == 0;
        if (st[i].aerobic_met)
            h->streak++;
        else if (!current) {
            history_finish(h, 0);
            return;
        }
    }
    if (h->chunks >= STREAK_MAX_CHUNKS) {
        history_finish(h, 0);
        return;
    }
    int y, w;
    fit_iso_week_parse(h->names[n - 1], &y, &w);
    week_range(y, w, -1, 2, h->names);
    snprintf(h->from_week, sizeof(h->from_week), "%s", h->names[1]);
    streak_chunk(h);
}

static void streak_chunk(history_ctx *h)
{
    int y, w;
    const char *ptrs[STREAK_CHUNK];
    fit_iso_week_parse(h->from_week, &y, &w);
    week_range(y, w, -1, STREAK_CHUNK, h->names);
    for (size_t i = 0; i < STREAK_CHUNK; i++)
        ptrs[i] = h->names[i];
    h->chunks++;
    int rc = fit_ops_weeks_get(&h->p->s->srv->ops, h->p->user, ptrs, STREAK_CHUNK, streak_done, h);
    if (rc)
        history_finish(h, rc);
}

static void history_weeks_done(int err, const fit_week_status *st, size_t n, void *data)
{
    history_ctx *h = data;
    if (err) {
        history_finish(h, err);
        return;
    }
    for (size_t i = 0; i < n; i++)
        json_array_append_new(h->weeks, fit_week_status_json(&st[i]));
    fit_current_week(h->p->s->srv, h->from_week);
    streak_chunk(h);
}

void fit_h_history_get(fit_session *s, fit_request *req)
{
    int fy, fw, ty, tw;
    char current[FIT_WEEK_LEN];
    int frc = week_field(s, req, "from_week", &fy, &fw);
    int trc = frc < 0 ? -1 : week_field(s, req, "to_week", &ty, &tw);
    if (frc < 0 || trc < 0)
        return;
    if (trc == 1) {
        fit_current_week(s->srv, current);
        fit_iso_week_parse(current, &ty, &tw);
    }
    int64_t to_monday = fit_days_from_civil(fit_iso_week_monday(ty, tw));
    if (frc == 1) {
        fit_date d = fit_civil_from_days(to_monday - 11 * 7);
        fit_iso_week(d, &fy, &fw);
    }
    int64_t span = (to_monday - fit_days_from_civil(fit_iso_week_monday(fy, fw))) / 7 + 1;
    if (span < 1 || span > HISTORY_MAX_WEEKS) {
        fit_session_send_error(s, req->id, FIT_EINVALID_VALUE, "from_week",
                               "from_week must not be after to_week, and the range at most 104 "
                               "weeks");
        return;
    }
    history_ctx *h = calloc(1, sizeof(*h));
    fit_pending *p = h ? fit_pending_new(s, req) : NULL;
    if (!p) {
        free(h);
        return;
    }
    h->p = p;
    h->weeks = json_array();
    const char *ptrs[HISTORY_MAX_WEEKS];
    week_range(fy, fw, 1, (size_t)span, h->names);
    for (int64_t i = 0; i < span; i++)
        ptrs[i] = h->names[i];
    int rc = fit_ops_weeks_get(&s->srv->ops, p->user, ptrs, (size_t)span, history_weeks_done, h);
    if (rc)
        history_finish(h, rc);
}

/* ------------------------------------------------------------------ */
/* sync.pull, sync.snapshot                                            */

static int cursor_valid(const char *c)
{
    size_t n = strlen(c), dash = 0;
    if (n < 3 || n > 41)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (c[i] == '-' && i > 0 && i + 1 < n && !dash)
            dash = i;
        else if (!isdigit((unsigned char)c[i]))
            return 0;
    }
    return dash != 0;
}

static void pull_reply(int err, json_t *changes, const char *next, int more, void *data)
{
    fit_pending *p = data;
    if (err == FIT_ERESYNC_REQUIRED)
        fit_session_send_error(p->s, fit_pending_re(p), err, "cursor", NULL);
    else if (err == FIT_EINVALID_VALUE)
        fit_session_send_error(p->s, fit_pending_re(p), err, "cursor",
                               "cursor was not issued by this server for this user");
    else if (err)
        fit_reply_op_error(p->s, fit_pending_re(p), err, "");
    else {
        json_t *r = fit_reply_new("sync.pull", fit_pending_re(p));
        json_object_set(r, "changes", changes);
        json_object_set_new(r, "cursor", json_string(next));
        json_object_set_new(r, "more", json_boolean(more));
        fit_session_send(p->s, r);
        json_decref(r);
    }
    fit_pending_free(p);
}

void fit_h_sync_pull(fit_session *s, fit_request *req)
{
    json_t *cursor = json_object_get(req->root, "cursor");
    if (!cursor || !json_is_string(cursor) || !cursor_valid(json_string_value(cursor))) {
        fit_session_send_error(s, req->id,
                               !cursor                  ? FIT_EMISSING_FIELD
                               : json_is_string(cursor) ? FIT_EINVALID_VALUE
                                                        : FIT_EINVALID_TYPE,
                               "cursor",
                               "cursor must be a cursor string from welcome, sync.pull, "
                               "sync.snapshot or a change push");
        return;
    }
    int64_t limit = PULL_DEFAULT;
    int present;
    if (fit_get_int_field(s, req, "limit", 1, PULL_MAX, &limit, &present) != 0)
        return;
    fit_pending *p = fit_pending_new(s, req);
    if (p && fit_ops_sync_pull(&s->srv->ops, p->user, json_string_value(cursor), (int)limit,
                               pull_reply, p) != 0) {
        fit_reply_unavailable(s, req->id);
        fit_pending_free(p);
    }
}

static void snapshot_reply(int err, const json_t *state, void *data)
{
    fit_pending *p = data;
    if (err) {
        fit_reply_op_error(p->s, fit_pending_re(p), err, "");
    } else {
        json_t *r = fit_reply_new("sync.snapshot", fit_pending_re(p));
        json_object_update(r, (json_t *)state);
        json_object_del(r, "weeks");
        json_object_set_new(r, "window_days", json_integer(p->s->srv->cfg->sync_window_days));
        fit_session_send(p->s, r);
        json_decref(r);
    }
    fit_pending_free(p);
}

void fit_h_sync_snapshot(fit_session *s, fit_request *req)
{
    fit_pending *p = fit_pending_new(s, req);
    if (p && fit_ops_state(&s->srv->ops, p->user, fit_now_ms() - s->srv->ops.window_ms,
                           snapshot_reply, p) != 0) {
        fit_reply_unavailable(s, req->id);
        fit_pending_free(p);
    }
}

/* ------------------------------------------------------------------ */
/* account.export, account.delete                                      */

typedef struct {
    fit_pending *p;
    json_t *doc;   /* the export being built */
    json_t *names; /* week names still to score */
    size_t next;
} export_ctx;

static void export_finish(export_ctx *e, int err)
{
    if (err) {
        fit_reply_op_error(e->p->s, fit_pending_re(e->p), err, "");
    } else {
        json_t *r = fit_reply_new("account.export", fit_pending_re(e->p));
        json_object_set(r, "export", e->doc);
        fit_session_send(e->p->s, r);
        json_decref(r);
    }
    json_decref(e->doc);
    json_decref(e->names);
    fit_pending_free(e->p);
    free(e);
}

static void export_next(export_ctx *e);

static void export_weeks_done(int err, const fit_week_status *st, size_t n, void *data)
{
    export_ctx *e = data;
    if (err) {
        export_finish(e, err);
        return;
    }
    json_t *weeks = json_object_get(e->doc, "weeks");
    for (size_t i = 0; i < n; i++)
        json_array_append_new(weeks, fit_week_status_json(&st[i]));
    export_next(e);
}

/* Scores the weeks 128 at a time (one bounded Function call each). */
static void export_next(export_ctx *e)
{
    size_t total = json_array_size(e->names);
    if (e->next >= total) {
        export_finish(e, 0);
        return;
    }
    const char *ptrs[128];
    size_t n = 0;
    for (; n < 128 && e->next < total; n++, e->next++)
        ptrs[n] = json_string_value(json_array_get(e->names, e->next));
    int rc = fit_ops_weeks_get(&e->p->s->srv->ops, e->p->user, ptrs, n, export_weeks_done, e);
    if (rc)
        export_finish(e, rc);
}

static int cmp_week_names(const void *a, const void *b)
{
    return strcmp(json_string_value(*(json_t *const *)a), json_string_value(*(json_t *const *)b));
}

static void export_state(int err, const json_t *state, void *data)
{
    export_ctx *e = data;
    if (err) {
        export_finish(e, err);
        return;
    }
    char now[40];
    fit_time_format(fit_now_ms(), 0, now, sizeof(now));
    e->doc = json_pack("{s:s, s:s, s:O, s:O, s:O, s:[]}", "user", e->p->user, "exported_at", now,
                       "profile", json_object_get(state, "profile"), "activities",
                       json_object_get(state, "activities"), "summaries",
                       json_object_get(state, "summaries"), "weeks");
    /* Weeks in calendar order. */
    json_t *names = json_object_get(state, "weeks");
    size_t n = json_array_size(names);
    json_t **v = malloc((n ? n : 1) * sizeof(*v));
    e->names = json_array();
    if (v) {
        for (size_t i = 0; i < n; i++)
            v[i] = json_array_get(names, i);
        qsort(v, n, sizeof(*v), cmp_week_names);
        for (size_t i = 0; i < n; i++)
            json_array_append(e->names, v[i]);
        free(v);
    }
    export_next(e);
}

void fit_h_account_export(fit_session *s, fit_request *req)
{
    export_ctx *e = calloc(1, sizeof(*e));
    fit_pending *p = e ? fit_pending_new(s, req) : NULL;
    if (!p) {
        free(e);
        return;
    }
    e->p = p;
    if (fit_ops_state(&s->srv->ops, p->user, 0, export_state, e) != 0) {
        fit_reply_unavailable(s, req->id);
        fit_pending_free(p);
        free(e);
    }
}

static void account_deleted(int err, long long deleted, void *data)
{
    fit_pending *p = data;
    if (err) {
        fit_reply_op_error(p->s, fit_pending_re(p), err, "");
    } else {
        json_t *r = fit_reply_new("account.delete", fit_pending_re(p));
        json_object_set_new(r, "deleted_keys", json_integer(deleted));
        fit_session_send(p->s, r);
        json_decref(r);
        /* Every device of the user hears it and is disconnected (this one after its reply). */
        json_t *push = json_pack("{s:s}", "type", "account.deleted");
        fit_server_push_user(p->s->srv, p->user, NULL, push);
        json_decref(push);
    }
    fit_pending_free(p);
}

void fit_h_account_delete(fit_session *s, fit_request *req)
{
    json_t *confirm = json_object_get(req->root, "confirm");
    if (!json_is_true(confirm)) {
        fit_session_send_error(s, req->id, confirm ? FIT_EINVALID_VALUE : FIT_EMISSING_FIELD,
                               "confirm",
                               "account.delete removes all your data for good; send confirm: "
                               "true");
        return;
    }
    fit_pending *p = fit_pending_new(s, req);
    if (p && fit_ops_account_delete(&s->srv->ops, p->user, account_deleted, p) != 0) {
        fit_reply_unavailable(s, req->id);
        fit_pending_free(p);
    }
}
