/*
 * fit_ops: argument marshalling for the Functions in workers/fitsync.lua and
 * decoding of their replies. The Lua side owns the aggregation and revision
 * rules; this side owns validation (already done by protocol/), the shape of
 * keys, and turning replies into C values.
 */
#include "fit_ops.h"
#include "fit_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fit_user_key(char *buf, unsigned shards, const char *user, const char *suffix)
{
    /* "/" ends the user id: ids may hold ':' (e.g. "google:123") but never '/', so no
     * user's keys can be spelled as another user's. */
    snprintf(buf, FIT_KEY_MAX, "fit:{s%u}:u:%s/%s", fit_shard_of(user, shards), user, suffix);
}

/* ---- building calls ---- */

#define ARGS_MAX (16 + 3 * FIT_MAX_SEGMENTS + 2 * 128)

typedef struct {
    const char *v[ARGS_MAX];
    char *owned[ARGS_MAX];
    int n, nowned;
} args_t;

static void arg(args_t *a, const char *s)
{
    if (a->n < ARGS_MAX)
        a->v[a->n++] = s;
}

static void argf(args_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void argf(args_t *a, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    char *s = strdup(buf);
    if (s && a->nowned < ARGS_MAX)
        a->owned[a->nowned++] = s;
    arg(a, s ? s : "");
}

static void args_free(args_t *a)
{
    for (int i = 0; i < a->nowned; i++)
        free(a->owned[i]);
}

static int64_t wall_ms(void)
{
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

void fit_ops_current_week(const fit_ops *ops, int64_t now_ms, char *week)
{
    fit_date_week_name(fit_local_date(now_ms, ops->tz_offset_min), week);
}

/* The context every mutation gets (fitsync.lua, "Mutations take..."). */
static void args_ctx(args_t *a, const fit_ops *ops)
{
    char mw[FIT_WEEK_LEN];
    int64_t now = wall_ms();
    fit_ops_current_week(ops, now - (int64_t)ops->board_keep_weeks * 7 * FIT_MS_PER_DAY, mw);
    /* Boards live while their week is kept, plus a week of grace. */
    long long ttl = ((long long)ops->board_keep_weeks + 2) * 7 * FIT_MS_PER_DAY;
    argf(a, "{\"w\":%lld,\"b\":\"%s\",\"t\":%lld,\"mw\":\"%s\",\"n\":%lld,\"who\":%s}",
         (long long)ops->window_ms, ops->age_bands, ttl, mw, (long long)now,
         ops->who_json[0] ? ops->who_json : "null");
}

void fit_ops_who_json(const fit_who_targets *who, char *buf, size_t len)
{
    json_t *o = json_object();
    for (int b = 0; b < FIT_BAND_COUNT; b++) {
        const fit_who_target *g = &who->band[b];
        json_object_set_new(o, fit_band_name((fit_band)b),
                            json_pack("{s:i, s:i, s:i, s:s, s:i, s:i, s:i}", "min_age", g->min_age,
                                      "max_age", g->max_age, "aerobic_min", g->aerobic_min,
                                      "measure",
                                      g->measure == FIT_MEASURE_MVPA ? "mvpa" : "equivalent",
                                      "vigorous_days", g->vigorous_days, "strength_days",
                                      g->strength_days, "balance_days", g->balance_days));
    }
    char *s = json_dumps(o, JSON_COMPACT);
    snprintf(buf, len, "%s", s ? s : "null");
    free(s);
    json_decref(o);
}

/* Starts "FCALL fn 1 <log key> [device ctx]". */
static void args_start(args_t *a, const fit_ops *ops, const char *fn, int read_only,
                       const char *user, const char *device)
{
    char key[FIT_KEY_MAX];
    a->n = a->nowned = 0;
    arg(a, read_only ? "FCALL_RO" : "FCALL");
    arg(a, fn);
    arg(a, "1");
    fit_user_key(key, ops->shards, user, "log");
    argf(a, "%s", key);
    if (device) {
        arg(a, device);
        args_ctx(a, ops);
    }
}

/* Sends the call; ctx is freed here if it cannot be sent. */
static int send_call(const fit_ops *ops, args_t *a, fit_store_cb *done, void *ctx)
{
    /*
     * Every member Function is idempotent (uploads by client_id, edits and
     * deletes by rev, summaries by recorded_at, the rest absolute), so a call
     * lost with its connection is sent again; writes wait for the replicas.
     */
    int flags = FIT_REDIS_IDEMPOTENT | (strcmp(a->v[0], "FCALL") == 0 ? FIT_REDIS_DURABLE : 0);
    int rc = fit_redis_command(&ops->redis, flags, done, ctx, a->n, a->v, NULL);
    args_free(a);
    if (rc)
        free(ctx);
    return rc;
}

static const char *str_el(const redisReply *r, size_t i)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || i >= r->elements)
        return NULL;
    const redisReply *e = r->element[i];
    return e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS ? e->str : NULL;
}

static int64_t int_el(const redisReply *r, size_t i)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || i >= r->elements)
        return 0;
    const redisReply *e = r->element[i];
    if (e->type == REDIS_REPLY_INTEGER)
        return e->integer;
    return e->str ? strtoll(e->str, NULL, 10) : 0;
}

/* Logs an unexpected reply and maps it to an error code. */
static int bad_reply(const char *fn, const redisReply *r)
{
    if (!r)
        return FIT_EUNAVAILABLE;
    fprintf(stderr, "fitsync: unexpected reply from %s: %s\n", fn,
            r->type == REDIS_REPLY_ERROR ? r->str : "(wrong shape)");
    return FIT_EINTERNAL;
}

/* ---- mutations that answer a fit_change ---- */

typedef enum { CHANGE_ACTIVITY, CHANGE_SUMMARY } change_kind;

typedef struct {
    fit_change_cb *cb;
    void *data;
    change_kind kind;
    const char *fn;
} change_ctx;

/*
 * Sessions: {status, rev, cursor, weeks...}, {"duplicate"|"deleted", rev},
 * {"conflict", rev, doc[, deleted]}, {"not_found"}.
 * Summaries: {status, cursor, week}, {"duplicate"|"stale"|"not_found"}.
 */
static void change_done(redisReply *r, const char *errstr, void *data)
{
    change_ctx *c = data;
    fit_change ch;
    memset(&ch, 0, sizeof(ch));
    const char *status = str_el(r, 0);
    if (!status) {
        ch.err = bad_reply(c->fn, r);
    } else if (strcmp(status, "not_found") == 0) {
        ch.err = FIT_ENOT_FOUND;
    } else if (strcmp(status, "conflict") == 0) {
        ch.err = FIT_ECONFLICT;
        ch.rev = int_el(r, 1);
        ch.current_doc = str_el(r, 2) ? str_el(r, 2) : "";
        ch.current_deleted = str_el(r, 3) && strcmp(str_el(r, 3), "1") == 0;
    } else {
        ch.status = status;
        size_t first_week = 2;
        if (c->kind == CHANGE_ACTIVITY) {
            ch.rev = int_el(r, 1);
            ch.cursor = str_el(r, 2);
            first_week = 3;
        } else {
            ch.cursor = str_el(r, 1);
        }
        for (size_t i = first_week;
             ch.cursor && i < r->elements && ch.nweeks < 2 * FIT_MAX_SEGMENTS; i++)
            if (str_el(r, i))
                ch.weeks[ch.nweeks++] = str_el(r, i);
    }
    c->cb(&ch, c->data);
    free(c);
}

static change_ctx *change_ctx_new(fit_change_cb *cb, void *data, change_kind kind, const char *fn)
{
    change_ctx *c = malloc(sizeof(*c));
    if (c) {
        c->cb = cb;
        c->data = data;
        c->kind = kind;
        c->fn = fn;
    }
    return c;
}

/* Appends (date, week, segment) for every local day of a session. */
static void args_segments(args_t *a, const fit_activity *act)
{
    argf(a, "%lld", (long long)act->start_ms);
    argf(a, "%d", act->nseg);
    for (int i = 0; i < act->nseg; i++) {
        const fit_segment *g = &act->seg[i];
        arg(a, g->date_str);
        arg(a, g->week);
        argf(a, "[%lld,%lld,%d,%d,%d,%lld,%.1f]", (long long)g->start_ms, (long long)g->end_ms,
             (int)act->intensity, act->strength, act->balance, (long long)g->steps, g->distance_m);
    }
}

static int activity_call(const fit_ops *ops, const char *fn, const char *user, const char *device,
                         const fit_activity *a, int64_t base_rev, fit_change_cb *cb, void *data)
{
    char *doc = json_dumps(a->doc, JSON_COMPACT | JSON_SORT_KEYS);
    change_ctx *c = change_ctx_new(cb, data, CHANGE_ACTIVITY, fn);
    if (!doc || !c) {
        free(doc);
        free(c);
        return FIT_ENOMEM;
    }
    args_t args;
    args_start(&args, ops, fn, 0, user, device);
    arg(&args, a->client_id);
    if (base_rev > 0)
        argf(&args, "%lld", (long long)base_rev);
    arg(&args, doc);
    args_segments(&args, a);
    int rc = send_call(ops, &args, change_done, c);
    free(doc);
    return rc;
}

int fit_ops_activity_put(const fit_ops *ops, const char *user, const char *device,
                         const fit_activity *a, fit_change_cb *cb, void *data)
{
    return activity_call(ops, "fit_activity_put", user, device, a, 0, cb, data);
}

int fit_ops_activity_update(const fit_ops *ops, const char *user, const char *device,
                            int64_t base_rev, const fit_activity *a, fit_change_cb *cb, void *data)
{
    return activity_call(ops, "fit_activity_update", user, device, a, base_rev, cb, data);
}

int fit_ops_activity_delete(const fit_ops *ops, const char *user, const char *device,
                            const char *client_id, int64_t base_rev, fit_change_cb *cb, void *data)
{
    change_ctx *c = change_ctx_new(cb, data, CHANGE_ACTIVITY, "fit_activity_delete");
    if (!c)
        return FIT_ENOMEM;
    args_t args;
    args_start(&args, ops, "fit_activity_delete", 0, user, device);
    arg(&args, client_id);
    if (base_rev >= 0)
        argf(&args, "%lld", (long long)base_rev);
    else
        arg(&args, "");
    return send_call(ops, &args, change_done, c);
}

int fit_ops_summary_put(const fit_ops *ops, const char *user, const char *device,
                        const fit_summary *s, fit_change_cb *cb, void *data)
{
    char *doc = json_dumps(s->doc, JSON_COMPACT | JSON_SORT_KEYS);
    change_ctx *c = change_ctx_new(cb, data, CHANGE_SUMMARY, "fit_summary_put");
    if (!doc || !c) {
        free(doc);
        free(c);
        return FIT_ENOMEM;
    }
    args_t args;
    args_start(&args, ops, "fit_summary_put", 0, user, device);
    arg(&args, s->date_str);
    arg(&args, s->week);
    arg(&args, s->source);
    argf(&args, "%lld", (long long)s->recorded_at_ms);
    arg(&args, doc);
    argf(&args, "%d", s->moderate_min);
    argf(&args, "%d", s->vigorous_min);
    argf(&args, "%d", s->light_min);
    argf(&args, "%lld", (long long)s->steps);
    argf(&args, "%.1f", s->distance_m);
    argf(&args, "%lld", (long long)fit_local_midnight_ms(s->date, s->offset_min));
    int rc = send_call(ops, &args, change_done, c);
    free(doc);
    return rc;
}

int fit_ops_summary_delete(const fit_ops *ops, const char *user, const char *device, fit_date date,
                           const char *source, fit_change_cb *cb, void *data)
{
    change_ctx *c = change_ctx_new(cb, data, CHANGE_SUMMARY, "fit_summary_delete");
    if (!c)
        return FIT_ENOMEM;
    char d[FIT_DATE_LEN], w[FIT_WEEK_LEN];
    fit_date_format(date, d);
    fit_date_week_name(date, w);
    args_t args;
    args_start(&args, ops, "fit_summary_delete", 0, user, device);
    arg(&args, d);
    arg(&args, w);
    arg(&args, source);
    return send_call(ops, &args, change_done, c);
}

/* ---- reads ---- */

typedef struct {
    void *cb;
    void *data;
    const fit_ops *ops;
    size_t n;
    char (*weeks)[FIT_WEEK_LEN];
} read_ctx;

static read_ctx *read_ctx_new(void *cb, void *data, const fit_ops *ops)
{
    read_ctx *c = calloc(1, sizeof(*c));
    if (c) {
        c->cb = cb;
        c->data = data;
        c->ops = ops;
    }
    return c;
}

static void item_done(redisReply *r, const char *errstr, void *data)
{
    read_ctx *c = data;
    fit_item_cb *cb = (fit_item_cb *)c->cb;
    if (!r || r->type != REDIS_REPLY_ARRAY)
        cb(bad_reply("fit_activity_get", r), 0, NULL, 0, c->data);
    else if (r->elements < 3)
        cb(0, 0, NULL, 0, c->data);
    else {
        int deleted = str_el(r, 2) && strcmp(str_el(r, 2), "1") == 0;
        cb(0, int_el(r, 0), deleted ? NULL : str_el(r, 1), deleted, c->data);
    }
    free(c);
}

int fit_ops_activity_get(const fit_ops *ops, const char *user, const char *client_id,
                         fit_item_cb *cb, void *data)
{
    read_ctx *c = read_ctx_new((void *)cb, data, ops);
    if (!c)
        return FIT_ENOMEM;
    args_t args;
    args_start(&args, ops, "fit_activity_get", 1, user, NULL);
    arg(&args, client_id);
    return send_call(ops, &args, item_done, c);
}

/* A profile field as stored (a Redis string) to its JSON value. New reference. */
static json_t *profile_value(const char *k, const char *v)
{
    if (strcmp(k, "birth_year") == 0)
        return json_integer(atoi(v));
    if (strcmp(k, "pregnant") == 0)
        return json_boolean(strcmp(v, "1") == 0);
    if (strcmp(k, "boards") == 0)
        return json_boolean(strcmp(v, "0") != 0);
    return json_string(v);
}

json_t *fit_profile_json(const redisReply *r)
{
    json_t *o = json_object();
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        const char *k = r->element[i]->str, *v = r->element[i + 1]->str;
        if (k && v)
            json_object_set_new(o, k, profile_value(k, v));
    }
    return o;
}

static void profile_done(redisReply *r, const char *errstr, void *data)
{
    read_ctx *c = data;
    fit_profile_cb *cb = (fit_profile_cb *)c->cb;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 || !str_el(r, 0)) {
        cb(bad_reply("fit_profile_set", r), NULL, NULL, c->data);
    } else {
        json_t *p = fit_profile_json(r->element[1]);
        cb(0, p, str_el(r, 0), c->data);
        json_decref(p);
    }
    free(c);
}

int fit_ops_profile_set(const fit_ops *ops, const char *user, const char *device,
                        const fit_profile *p, fit_profile_cb *cb, void *data)
{
    read_ctx *c = read_ctx_new((void *)cb, data, ops);
    if (!c)
        return FIT_ENOMEM;
    args_t args;
    args_start(&args, ops, "fit_profile_set", 0, user, device);
    if (p->has_birth_year) {
        arg(&args, "birth_year");
        if (p->birth_year)
            argf(&args, "%d", p->birth_year);
        else
            arg(&args, "");
    }
    if (p->has_district) {
        arg(&args, "district");
        arg(&args, p->district);
    }
    if (p->has_gender) {
        arg(&args, "gender");
        arg(&args, p->gender);
    }
    if (p->has_pregnant) {
        arg(&args, "pregnant");
        arg(&args, p->pregnant ? "1" : "");
    }
    if (p->has_display_name) {
        arg(&args, "display_name");
        arg(&args, p->display_name);
    }
    if (p->has_team) {
        arg(&args, "team");
        arg(&args, p->team);
    }
    if (p->has_boards) {
        arg(&args, "boards");
        arg(&args, p->boards ? "" : "0");
    }
    return send_call(ops, &args, profile_done, c);
}

/* Parses one stored day's totals, "mo,vi,li,st,di,sg,ba" (workers/fitsync.lua,
 * P.."w:"<week>); a malformed value reads as zero. */
static void day_from_packed(const char *s, fit_day_totals *d)
{
    int mo, vi, li, sg, ba;
    long long st;
    double di;
    if (!s || sscanf(s, "%d,%d,%d,%lld,%lf,%d,%d", &mo, &vi, &li, &st, &di, &sg, &ba) != 7)
        return;
    d->moderate_min = mo;
    d->vigorous_min = vi;
    d->light_min = li;
    d->steps = st;
    d->distance_m = di;
    d->strength = sg != 0;
    d->balance = ba != 0;
}

/* Scores one week from its stored hash (flat reply). */
static void score_week(const fit_who_targets *who, const char *name, const redisReply *w,
                       int birth_year, int pregnant, fit_week_status *out)
{
    int y, wk;
    fit_iso_week_parse(name, &y, &wk);
    fit_day_totals days[7];
    memset(days, 0, sizeof(days));
    int64_t monday = fit_days_from_civil(fit_iso_week_monday(y, wk));
    for (size_t i = 0; w && w->type == REDIS_REPLY_ARRAY && i + 1 < w->elements; i += 2) {
        fit_date d;
        if (!w->element[i]->str || fit_date_parse(w->element[i]->str, &d))
            continue;
        int64_t idx = fit_days_from_civil(d) - monday;
        if (idx >= 0 && idx < 7)
            day_from_packed(w->element[i + 1]->str, &days[idx]);
    }
    fit_who_score_week(who, y, wk, fit_who_band(who, birth_year, pregnant, y), days, out);
}

static void weeks_done(redisReply *r, const char *errstr, void *data)
{
    read_ctx *c = data;
    fit_weeks_cb *cb = (fit_weeks_cb *)c->cb;
    fit_week_status *st = NULL;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != c->n + 1) {
        cb(bad_reply("fit_weeks_get", r), NULL, 0, c->data);
    } else if (!(st = calloc(c->n ? c->n : 1, sizeof(*st)))) {
        cb(FIT_ENOMEM, NULL, 0, c->data);
    } else {
        json_t *profile = fit_profile_json(r->element[0]);
        int birth_year = (int)json_integer_value(json_object_get(profile, "birth_year"));
        int pregnant = json_is_true(json_object_get(profile, "pregnant"));
        json_decref(profile);
        for (size_t i = 0; i < c->n; i++)
            score_week(c->ops->who, c->weeks[i], r->element[i + 1], birth_year, pregnant, &st[i]);
        cb(0, st, c->n, c->data);
    }
    free(st);
    free(c->weeks);
    free(c);
}

int fit_ops_weeks_get(const fit_ops *ops, const char *user, const char *const *weeks, size_t n,
                      fit_weeks_cb *cb, void *data)
{
    if (n > 128)
        return FIT_EINVALID_VALUE;
    read_ctx *c = read_ctx_new((void *)cb, data, ops);
    if (!c || !(c->weeks = calloc(n ? n : 1, FIT_WEEK_LEN))) {
        free(c);
        return FIT_ENOMEM;
    }
    c->n = n;
    args_t args;
    args_start(&args, ops, "fit_weeks_get", 1, user, NULL);
    for (size_t i = 0; i < n; i++) {
        snprintf(c->weeks[i], FIT_WEEK_LEN, "%s", weeks[i]);
        arg(&args, c->weeks[i]);
    }
    int rc =
        fit_redis_command(&ops->redis, FIT_REDIS_IDEMPOTENT, weeks_done, c, args.n, args.v, NULL);
    args_free(&args);
    if (rc) {
        free(c->weeks);
        free(c);
    }
    return rc;
}

/* A log entry [id, [k, v, ...]] as a change object. */
static json_t *change_from_entry(const redisReply *e)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || !e->element[0]->str)
        return NULL;
    const redisReply *f = e->element[1];
    json_t *o = json_pack("{s:s}", "cursor", e->element[0]->str);
    const char *doc = NULL, *kind = NULL;
    for (size_t i = 0; f->type == REDIS_REPLY_ARRAY && i + 1 < f->elements; i += 2) {
        const char *k = f->element[i]->str, *v = f->element[i + 1]->str;
        if (!k || !v)
            continue;
        if (strcmp(k, "k") == 0)
            json_object_set_new(o, "kind", json_string(kind = v));
        else if (strcmp(k, "op") == 0)
            json_object_set_new(o, "op", json_string(v));
        else if (strcmp(k, "id") == 0)
            json_object_set_new(o, "id", json_string(v));
        else if (strcmp(k, "rev") == 0)
            json_object_set_new(o, "rev", json_integer(atoll(v)));
        else if (strcmp(k, "dev") == 0)
            json_object_set_new(o, "device_id", json_string(v));
        else if (strcmp(k, "doc") == 0)
            doc = v;
    }
    if (doc) {
        json_t *item = json_loads(doc, 0, NULL);
        if (item && kind && strcmp(kind, "profile") == 0) {
            /* The log keeps profile values as Redis strings; type them as profile.set does. */
            json_t *typed = json_object();
            const char *k;
            json_t *v;
            json_object_foreach(item, k, v)
            {
                if (json_is_string(v))
                    json_object_set_new(typed, k, profile_value(k, json_string_value(v)));
            }
            json_decref(item);
            item = typed;
        }
        if (item && kind && strcmp(kind, "activity") == 0)
            json_object_set(item, "rev", json_object_get(o, "rev"));
        if (item)
            json_object_set_new(o, "item", item);
    }
    return o;
}

static void pull_done(redisReply *r, const char *errstr, void *data)
{
    read_ctx *c = data;
    fit_pull_cb *cb = (fit_pull_cb *)c->cb;
    const char *status = str_el(r, 0);
    if (!status) {
        cb(bad_reply("fit_sync_pull", r), NULL, NULL, 0, c->data);
    } else if (strcmp(status, "resync_required") == 0) {
        cb(FIT_ERESYNC_REQUIRED, NULL, NULL, 0, c->data);
    } else if (strcmp(status, "ok") != 0) {
        cb(FIT_EINVALID_VALUE, NULL, NULL, 0, c->data);
    } else {
        json_t *changes = json_array();
        for (size_t i = 3; i < r->elements; i++) {
            json_t *ch = change_from_entry(r->element[i]);
            if (ch)
                json_array_append_new(changes, ch);
        }
        cb(0, changes, str_el(r, 1), (int)int_el(r, 2), c->data);
        json_decref(changes);
    }
    free(c);
}

int fit_ops_sync_pull(const fit_ops *ops, const char *user, const char *cursor, int limit,
                      fit_pull_cb *cb, void *data)
{
    read_ctx *c = read_ctx_new((void *)cb, data, ops);
    if (!c)
        return FIT_ENOMEM;
    args_t args;
    args_start(&args, ops, "fit_sync_pull", 1, user, NULL);
    arg(&args, cursor);
    argf(&args, "%d", limit);
    argf(&args, "%lld", (long long)ops->window_ms);
    return send_call(ops, &args, pull_done, c);
}

static void head_done(redisReply *r, const char *errstr, void *data)
{
    read_ctx *c = data;
    fit_cursor_cb *cb = (fit_cursor_cb *)c->cb;
    if (!r || r->type != REDIS_REPLY_STRING)
        cb(bad_reply("fit_sync_head", r), NULL, c->data);
    else
        cb(0, r->str, c->data);
    free(c);
}

int fit_ops_sync_head(const fit_ops *ops, const char *user, fit_cursor_cb *cb, void *data)
{
    read_ctx *c = read_ctx_new((void *)cb, data, ops);
    if (!c)
        return FIT_ENOMEM;
    args_t args;
    args_start(&args, ops, "fit_sync_head", 1, user, NULL);
    return send_call(ops, &args, head_done, c);
}

static void state_done(redisReply *r, const char *errstr, void *data)
{
    read_ctx *c = data;
    fit_state_cb *cb = (fit_state_cb *)c->cb;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 5 || !str_el(r, 0)) {
        cb(bad_reply("fit_state", r), NULL, c->data);
        free(c);
        return;
    }
    json_t *acts = json_array(), *sums = json_array(), *weeks = json_array();
    const redisReply *a = r->element[2], *s = r->element[3], *w = r->element[4];
    for (size_t i = 0; i + 2 < a->elements; i += 3) {
        json_t *item = json_loads(a->element[i + 2]->str, 0, NULL);
        if (!item)
            continue;
        json_object_set_new(item, "rev", json_integer(int_el(a, i + 1)));
        json_array_append_new(acts, item);
    }
    for (size_t i = 0; i + 1 < s->elements; i += 2) {
        json_t *item = json_loads(s->element[i + 1]->str, 0, NULL);
        if (item)
            json_array_append_new(sums, item);
    }
    for (size_t i = 0; i < w->elements; i++)
        if (w->element[i]->str)
            json_array_append_new(weeks, json_string(w->element[i]->str));
    json_t *state = json_pack("{s:s, s:o, s:o, s:o, s:o}", "cursor", str_el(r, 0), "profile",
                              fit_profile_json(r->element[1]), "activities", acts, "summaries",
                              sums, "weeks", weeks);
    cb(0, state, c->data);
    json_decref(state);
    free(c);
}

int fit_ops_state(const fit_ops *ops, const char *user, int64_t from_ms, fit_state_cb *cb,
                  void *data)
{
    read_ctx *c = read_ctx_new((void *)cb, data, ops);
    if (!c)
        return FIT_ENOMEM;
    args_t args;
    args_start(&args, ops, "fit_state", 1, user, NULL);
    argf(&args, "%lld", (long long)from_ms);
    return send_call(ops, &args, state_done, c);
}

static void count_done(redisReply *r, const char *errstr, void *data)
{
    read_ctx *c = data;
    fit_count_cb *cb = (fit_count_cb *)c->cb;
    if (!r || r->type != REDIS_REPLY_INTEGER)
        cb(bad_reply("fit_account_delete", r), 0, c->data);
    else
        cb(0, r->integer, c->data);
    free(c);
}

int fit_ops_account_delete(const fit_ops *ops, const char *user, fit_count_cb *cb, void *data)
{
    read_ctx *c = read_ctx_new((void *)cb, data, ops);
    if (!c)
        return FIT_ENOMEM;
    args_t args;
    args_start(&args, ops, "fit_account_delete", 0, user, NULL);
    args_ctx(&args, ops);
    return send_call(ops, &args, count_done, c);
}

static void fold_done(redisReply *r, const char *errstr, void *data)
{
    read_ctx *c = data;
    fit_count_cb *cb = (fit_count_cb *)c->cb;
    if (!r || r->type != REDIS_REPLY_INTEGER)
        cb(bad_reply("fit_fold", r), 0, c->data);
    else
        cb(0, r->integer, c->data);
    free(c);
}

int fit_ops_fold(const fit_ops *ops, const char *user, int max_weeks, fit_count_cb *cb, void *data)
{
    if (ops->fold_after_days <= 0)
        return 0;
    read_ctx *c = read_ctx_new((void *)cb, data, ops);
    if (!c)
        return FIT_ENOMEM;
    char last[FIT_DATE_LEN];
    fit_date_format(fit_local_date(wall_ms() - (int64_t)(ops->fold_after_days + 1) * FIT_MS_PER_DAY,
                                   ops->tz_offset_min),
                    last);
    args_t args;
    args_start(&args, ops, "fit_fold", 0, user, NULL);
    arg(&args, last);
    argf(&args, "%d", max_weeks);
    return send_call(ops, &args, fold_done, c);
}

int fit_ops_event_call(const fit_ops *ops, const char *fn, int read_only, const char *event,
                       int argc, const char **argv, fit_store_cb *cb, void *data)
{
    char key[FIT_KEY_MAX];
    const char **v = malloc((size_t)(4 + argc) * sizeof(*v));
    if (!v)
        return FIT_ENOMEM;
    snprintf(key, sizeof(key), "fit:{s%u}:e:%s/meta", fit_shard_of(event, ops->shards), event);
    v[0] = read_only ? "FCALL_RO" : "FCALL";
    v[1] = fn;
    v[2] = "1";
    v[3] = key;
    for (int i = 0; i < argc; i++)
        v[4 + i] = argv[i];
    /* Reads and lap records (by client_id) may be resent; other event writes are audited once. */
    int flags = read_only                           ? FIT_REDIS_IDEMPOTENT
                : strcmp(fn, "fit_lap_record") == 0 ? FIT_REDIS_IDEMPOTENT | FIT_REDIS_DURABLE
                                                    : FIT_REDIS_DURABLE;
    int rc = fit_redis_command(&ops->redis, flags, cb, data, 4 + argc, v, NULL);
    free(v);
    return rc;
}
