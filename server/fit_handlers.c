/*
 * fit_handlers: the commands of protocol fitsync.v1, as a table.
 *
 * Every handler follows the same contract (after Redis's command handlers):
 * validate every argument first and answer a precise error; only then touch
 * Redis; reply once. A success reply is sent only after the Function call
 * has returned, so it means the data is in Redis; if Redis is away the reply
 * is "unavailable" (retryable) and nothing was changed.
 *
 * This file holds the table and dispatch (with the per-connection rate
 * limit), hello and profile.set, and the helpers the other handler files
 * share (fit_handlers.h).
 */
#include "fit_handlers.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int64_t fit_now_ms(void)
{
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

fit_rules fit_rules_now(fit_server *srv)
{
    fit_rules r = {fit_now_ms(), srv->cfg->max_age_weeks,
                   (int64_t)srv->cfg->future_tolerance_s * 1000, &srv->cfg->met};
    return r;
}

void fit_current_week(fit_server *srv, char *name)
{
    fit_date_week_name(fit_local_date(fit_now_ms(), srv->cfg->timezone_offset_min), name);
}

/* ------------------------------------------------------------------ */
/* pending requests and common replies                                 */

fit_pending *fit_pending_new(fit_session *s, const fit_request *req)
{
    fit_pending *p = calloc(1, sizeof(*p));
    if (!p) {
        fit_session_send_error(s, req->id, FIT_ENOMEM, "", NULL);
        return NULL;
    }
    p->s = s;
    if (req->id) {
        snprintf(p->re, sizeof(p->re), "%s", req->id);
        p->has_re = 1;
    }
    snprintf(p->user, sizeof(p->user), "%s", s->claims.sub);
    snprintf(p->device, sizeof(p->device), "%s", s->device_id);
    fit_session_ref(s);
    s->srv->inflight++;
    return p;
}

void fit_pending_free(fit_pending *p)
{
    p->s->srv->inflight--;
    fit_session_unref(p->s);
    free(p);
}

const char *fit_pending_re(const fit_pending *p)
{
    return p->has_re ? p->re : NULL;
}

void fit_reply_unavailable(fit_session *s, const char *re)
{
    fit_session_send_error(s, re, FIT_EUNAVAILABLE, "",
                           "storage is unavailable; nothing was changed, retry later");
}

void fit_reply_op_error(fit_session *s, const char *re, int err, const char *field)
{
    if (err == FIT_EUNAVAILABLE)
        fit_reply_unavailable(s, re);
    else
        fit_session_send_error(s, re, err, field, NULL);
}

void fit_reply_conflict(fit_session *s, const char *re, const char *client_id, const fit_change *c)
{
    json_t *e = fit_error_reply(re, FIT_ECONFLICT, "base_rev",
                                "the item changed since base_rev; merge with \"current\" and "
                                "send again with its rev");
    json_t *cur = c->current_deleted ? NULL : json_loads(c->current_doc, 0, NULL);
    if (!cur)
        cur = json_pack("{s:s, s:b}", "client_id", client_id, "deleted", c->current_deleted);
    json_object_set_new(cur, "rev", json_integer(c->rev));
    json_object_set_new(e, "current", cur);
    fit_session_send(s, e);
    json_decref(e);
}

int fit_get_int_field(fit_session *s, const fit_request *req, const char *field, int64_t min,
                      int64_t max, int64_t *out, int *present)
{
    json_t *v = json_object_get(req->root, field);
    *present = 0;
    if (!v || json_is_null(v))
        return 0;
    char msg[128];
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        snprintf(msg, sizeof(msg), "%s must be a whole number within %lld..%lld", field,
                 (long long)min, (long long)max);
        fit_session_send_error(
            s, req->id, json_is_integer(v) ? FIT_EINVALID_VALUE : FIT_EINVALID_TYPE, field, msg);
        return -1;
    }
    *out = json_integer_value(v);
    *present = 1;
    return 0;
}

const char *fit_get_id_field(fit_session *s, const fit_request *req, const char *field, size_t max)
{
    json_t *v = json_object_get(req->root, field);
    char msg[128];
    snprintf(msg, sizeof(msg), "%s must be 1..%zu characters of [A-Za-z0-9._:@-]", field, max);
    if (!v) {
        fit_session_send_error(s, req->id, FIT_EMISSING_FIELD, field, msg);
        return NULL;
    }
    if (!json_is_string(v) || !fit_id_valid(json_string_value(v), max)) {
        fit_session_send_error(
            s, req->id, json_is_string(v) ? FIT_EINVALID_VALUE : FIT_EINVALID_TYPE, field, msg);
        return NULL;
    }
    return json_string_value(v);
}

/* ------------------------------------------------------------------ */
/* pushes                                                              */

void fit_push_change(fit_server *srv, const char *user, fit_session *from, const char *cursor,
                     const char *kind, const char *op, const char *id, int64_t rev, json_t *item)
{
    json_t *change =
        json_pack("{s:s, s:s, s:s, s:s}", "cursor", cursor, "kind", kind, "op", op, "id", id);
    /* As in the change log: summaries and the profile have no revisions and say 1. */
    json_object_set_new(change, "rev", json_integer(rev > 0 ? rev : 1));
    if (from)
        json_object_set_new(change, "device_id", json_string(from->device_id));
    if (item)
        json_object_set(change, "item", item);
    json_t *msg =
        json_pack("{s:s, s:s, s:o}", "type", "change", "cursor", cursor, "change", change);
    fit_server_push_user(srv, user, from, msg);
    json_decref(msg);
}

typedef struct {
    fit_server *srv;
    char user[65];
} progress_ctx;

static void progress_done(int err, const fit_week_status *st, size_t n, void *data)
{
    progress_ctx *c = data;
    c->srv->inflight--;
    for (size_t i = 0; !err && i < n; i++) {
        json_t *msg =
            json_pack("{s:s, s:o}", "type", "progress", "week", fit_week_status_json(&st[i]));
        fit_server_push_user(c->srv, c->user, NULL, msg);
        json_decref(msg);
    }
    free(c);
}

void fit_push_progress(fit_server *srv, const char *user, const char *const *weeks, size_t n)
{
    if (n == 0)
        return;
    progress_ctx *c = malloc(sizeof(*c));
    if (!c)
        return;
    c->srv = srv;
    snprintf(c->user, sizeof(c->user), "%s", user);
    srv->inflight++;
    /* One call reads every changed week; chunks of 128 keep the call bounded. */
    for (size_t off = 0; off < n; off += 128) {
        size_t k = n - off < 128 ? n - off : 128;
        progress_ctx *cc = off == 0 ? c : malloc(sizeof(*cc));
        if (!cc)
            break;
        if (off)
            *cc = *c, srv->inflight++;
        if (fit_ops_weeks_get(&srv->ops, user, weeks + off, k, progress_done, cc) != 0) {
            srv->inflight--;
            free(cc);
        }
    }
}

/* ------------------------------------------------------------------ */
/* hello, profile.set, week.get                                        */

/* Weeks folded per sign-in at most: bounded work, and a year of history folds in 13. */
#define FOLD_WEEKS_PER_HELLO 4

static void fold_done(int err, long long weeks, void *data)
{
    if (err)
        fprintf(stderr, "fitsync: folding old sessions failed: %s\n", fit_strerror(err));
}

static void welcome_cursor(int err, const char *cursor, void *data)
{
    fit_pending *p = data;
    fit_session *s = p->s;
    fit_server *srv = s->srv;
    char week[FIT_WEEK_LEN], now[40];
    fit_current_week(srv, week);
    fit_time_format(fit_now_ms(), 0, now, sizeof(now));
    json_t *r = fit_reply_new("welcome", fit_pending_re(p));
    json_object_set_new(r, "user", json_string(s->claims.sub));
    json_object_set_new(r, "role", json_string(fit_role_name(s->claims.role)));
    json_object_set_new(r, "device_id", json_string(s->device_id));
    json_object_set_new(r, "protocol", json_string(FIT_SUBPROTOCOL));
    json_object_set_new(r, "version", json_string(FITSYNC_VERSION));
    json_object_set_new(r, "server_time", json_string(now));
    char exp[40];
    fit_time_format(s->claims.exp_s * 1000, 0, exp, sizeof(exp));
    json_object_set_new(r, "token_expires_at", json_string(exp));
    json_object_set_new(r, "week", json_string(week));
    /* Without Redis there is no cursor to give; the app keeps the one it has. */
    json_object_set_new(r, "cursor", err ? json_null() : json_string(cursor));
    json_object_set_new(
        r, "limits",
        json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i}", "max_batch", srv->cfg->max_batch,
                  "max_message_bytes", srv->cfg->max_message_bytes, "max_age_weeks",
                  srv->cfg->max_age_weeks, "future_tolerance_s", srv->cfg->future_tolerance_s,
                  "messages_per_s", srv->cfg->rate_messages_per_s, "burst", srv->cfg->rate_burst,
                  "sync_window_days", srv->cfg->sync_window_days));
    fit_session_send(s, r);
    json_decref(r);
    fit_pending_free(p);
}

static void handle_hello(fit_session *s, fit_request *req)
{
    fit_server *srv = s->srv;
    if (s->authed) {
        fit_session_send_error(s, req->id, FIT_EALREADY_AUTHENTICATED, "", NULL);
        return;
    }
    json_t *tok = json_object_get(req->root, "token");
    json_t *dev = json_object_get(req->root, "device_id");
    if (!tok || !json_is_string(tok)) {
        /* null counts as absent (PROTOCOL.md, Conventions): missing_field */
        fit_session_send_error(s, req->id,
                               tok && !json_is_null(tok) ? FIT_EINVALID_TYPE : FIT_EMISSING_FIELD,
                               "token", "token (a bearer token string) is required");
        fit_session_close_after_flush(s, LWS_CLOSE_STATUS_POLICY_VIOLATION, "hello failed");
        return;
    }
    if (!dev || !json_is_string(dev) || !fit_id_valid(json_string_value(dev), FIT_CLIENT_ID_MAX)) {
        fit_session_send_error(s, req->id,
                               !dev                  ? FIT_EMISSING_FIELD
                               : json_is_string(dev) ? FIT_EINVALID_VALUE
                                                     : FIT_EINVALID_TYPE,
                               "device_id",
                               "device_id must be 1..64 characters of [A-Za-z0-9._:@-]");
        fit_session_close_after_flush(s, LWS_CLOSE_STATUS_POLICY_VIOLATION, "hello failed");
        return;
    }
    int rc = fit_token_verify(json_string_value(tok), srv->secret, strlen(srv->secret),
                              fit_now_ms() / 1000, &s->claims);
    if (rc != 0) {
        fit_session_send_error(s, req->id, rc, "token", NULL);
        fit_session_close_after_flush(s, LWS_CLOSE_STATUS_POLICY_VIOLATION,
                                      rc == FIT_ETOKEN_EXPIRED ? "token expired" : "invalid token");
        return;
    }
    if (s->claims.role == FIT_ROLE_MEMBER && strncmp(s->claims.sub, FIT_MARSHAL_PREFIX, 8) == 0) {
        fit_session_send_error(s, req->id, FIT_EINVALID_TOKEN, "token",
                               "subjects beginning \"marshal:\" are reserved for marshal tokens");
        fit_session_close_after_flush(s, LWS_CLOSE_STATUS_POLICY_VIOLATION, "invalid token");
        return;
    }
    snprintf(s->device_id, sizeof(s->device_id), "%s", json_string_value(dev));
    s->authed = 1;
    fit_session_attach_user(s);
    fit_pending *p = fit_pending_new(s, req);
    if (!p)
        return;
    /* Retention: a signed-in member's sessions that nothing can change any more are
     * folded into their days' figures, a few weeks per sign-in (docs/SCALING.md). A
     * failure only postpones it to the next sign-in. */
    fit_ops_fold(&srv->ops, p->user, FOLD_WEEKS_PER_HELLO, fold_done, NULL);
    if (fit_ops_sync_head(&srv->ops, p->user, welcome_cursor, p) != 0)
        welcome_cursor(FIT_EUNAVAILABLE, NULL, p);
}

/*
 * token.refresh: a newer token for the same subject, role and event moves the
 * session's expiry (exp, UTC seconds); without one the session is closed with
 * 4001 when exp passes. A token that does not verify changes nothing.
 */
static void handle_token_refresh(fit_session *s, fit_request *req)
{
    json_t *tok = json_object_get(req->root, "token");
    if (!tok || !json_is_string(tok)) {
        /* null counts as absent (PROTOCOL.md, Conventions): missing_field */
        fit_session_send_error(s, req->id,
                               tok && !json_is_null(tok) ? FIT_EINVALID_TYPE : FIT_EMISSING_FIELD,
                               "token", "token (a bearer token string) is required");
        return;
    }
    fit_token_claims c;
    int rc = fit_token_verify(json_string_value(tok), s->srv->secret, strlen(s->srv->secret),
                              fit_now_ms() / 1000, &c);
    if (rc != 0) {
        fit_session_send_error(s, req->id, rc, "token", NULL);
        return;
    }
    if (strcmp(c.sub, s->claims.sub) != 0 || c.role != s->claims.role ||
        strcmp(c.event, s->claims.event) != 0) {
        fit_session_send_error(s, req->id, FIT_EFORBIDDEN, "token",
                               "token.refresh takes a token of the same subject, role and event");
        return;
    }
    if (c.exp_s > s->claims.exp_s)
        s->claims.exp_s = c.exp_s;
    char at[40];
    fit_time_format(s->claims.exp_s * 1000, 0, at, sizeof(at));
    json_t *r = fit_reply_new("token.refresh", req->id);
    json_object_set_new(r, "expires_at", json_string(at));
    fit_session_send(s, r);
    json_decref(r);
}

static void profile_reply(int err, const json_t *profile, const char *cursor, void *data)
{
    fit_pending *p = data;
    if (err) {
        fit_reply_op_error(p->s, fit_pending_re(p), err, "");
    } else {
        json_t *r = fit_reply_new("profile.set", fit_pending_re(p));
        json_object_set(r, "profile", (json_t *)profile);
        json_object_set_new(r, "cursor", json_string(cursor));
        fit_session_send(p->s, r);
        json_decref(r);
        fit_push_change(p->s->srv, p->user, p->s, cursor, "profile", "upsert", "profile", 0,
                        (json_t *)profile);
        /* The band (and so the target) may have changed. */
        char week[FIT_WEEK_LEN];
        const char *weeks[1] = {week};
        fit_current_week(p->s->srv, week);
        fit_push_progress(p->s->srv, p->user, weeks, 1);
    }
    fit_pending_free(p);
}

static void handle_profile_set(fit_session *s, fit_request *req)
{
    json_t *obj = json_object_get(req->root, "profile");
    fit_profile prof;
    fit_field_error fe;
    if (!obj) {
        fit_session_send_error(s, req->id, FIT_EMISSING_FIELD, "profile", NULL);
        return;
    }
    int year = fit_local_date(fit_now_ms(), s->srv->cfg->timezone_offset_min).year;
    if (fit_profile_parse(obj, year, &prof, &fe) != 0) {
        char field[160];
        snprintf(field, sizeof(field), "profile%s%s", fe.field[0] ? "." : "", fe.field);
        fit_session_send_error(s, req->id, fe.code, field, fe.message);
        return;
    }
    if (prof.has_district && prof.district[0] &&
        !fit_district_find(&s->srv->cfg->boards, prof.district)) {
        fit_session_send_error(s, req->id, FIT_EINVALID_VALUE, "profile.district",
                               "unknown district (see config/districts.json)");
        return;
    }
    fit_pending *p = fit_pending_new(s, req);
    if (p && fit_ops_profile_set(&s->srv->ops, p->user, p->device, &prof, profile_reply, p) != 0) {
        fit_reply_unavailable(s, req->id);
        fit_pending_free(p);
    }
}

/* ------------------------------------------------------------------ */
/* the table                                                           */

typedef void handler_fn(fit_session *s, fit_request *req);

typedef struct {
    const char *type;
    int needs_member; /* 1: member operations (after hello, role member); 2: any signed-in role */
    handler_fn *fn;
    const char *fields[6]; /* allowed fields besides "type" and "id"; "*" = any (checked later) */
} handler_spec;

static const handler_spec handlers[] = {
    {"hello", 0, handle_hello, {"token", "device_id", NULL}},
    {"token.refresh", 2, handle_token_refresh, {"token", NULL}},
    {"profile.set", 1, handle_profile_set, {"profile", NULL}},
    {"activity.upload", 1, fit_h_activity_upload, {"activities", NULL}},
    {"activity.update", 1, fit_h_activity_update, {"*", NULL}},
    {"activity.delete", 1, fit_h_activity_delete, {"client_id", "base_rev", NULL}},
    {"summary.upload", 1, fit_h_summary_upload, {"summaries", NULL}},
    {"summary.delete", 1, fit_h_summary_delete, {"date", "source", NULL}},
    {"week.get", 1, fit_h_week_get, {"week", NULL}},
    {"history.get", 1, fit_h_history_get, {"from_week", "to_week", NULL}},
    {"sync.pull", 1, fit_h_sync_pull, {"cursor", "limit", NULL}},
    {"sync.snapshot", 1, fit_h_sync_snapshot, {NULL}},
    {"account.export", 1, fit_h_account_export, {NULL}},
    {"account.delete", 1, fit_h_account_delete, {"confirm", NULL}},
    {"leaderboard.get", 0, fit_h_leaderboard_get, {"board", "offset", "limit", NULL}},
    {"leaderboard.subscribe", 0, fit_h_leaderboard_subscribe, {"board", "limit", NULL}},
    {"leaderboard.unsubscribe", 0, fit_h_leaderboard_unsubscribe, {"board", NULL}},
    {"rank.get", 1, fit_h_rank_get, {"board", NULL}},
    {"event.create", 2, fit_h_event_create, {"*", NULL}},
    {"event.get", 2, fit_h_event_get, {"event", NULL}},
    {"team.register", 2, fit_h_team_register, {"event", "bib", "name", "category", NULL}},
    {"team.import", 2, fit_h_team_import, {"event", "csv", NULL}},
    {"event.start", 2, fit_h_event_start, {"event", "at", NULL}},
    {"event.finish", 2, fit_h_event_finish, {"event", NULL}},
    {"event.reopen", 2, fit_h_event_reopen, {"event", "reason", NULL}},
    {"lap.record", 2, fit_h_lap_record, {"event", "laps", NULL}},
    {"lap.void", 2, fit_h_lap_void, {"event", "client_id", "reason", NULL}},
    {"lap.restore", 2, fit_h_lap_restore, {"event", "client_id", "reason", NULL}},
    {"award.assign", 2, fit_h_award_assign, {"event", "bib", "award", NULL}},
    {"event.audit", 2, fit_h_event_audit, {"event", NULL}},
    {"event.laps", 2, fit_h_event_laps, {"event", "bib", NULL}},
    {"event.results", 2, fit_h_event_results, {"event", NULL}},
    {"marshal.token", 2, fit_h_marshal_token, {"event", "marshal", "ttl_s", NULL}},
    {"challenge.join", 1, fit_h_challenge_join, {"event", "team", NULL}},
    {"stats.get", 2, fit_h_stats_get, {"week", NULL}},
    {"stats.subscribe", 2, fit_h_stats_subscribe, {"week", NULL}},
    {"stats.unsubscribe", 2, fit_h_stats_unsubscribe, {NULL}},
};

static int check_fields(fit_session *s, fit_request *req, const handler_spec *h)
{
    const char *key;
    json_t *v;
    if (h->fields[0] && strcmp(h->fields[0], "*") == 0)
        return 0;
    json_object_foreach(req->root, key, v)
    {
        int ok = strcmp(key, "type") == 0 || strcmp(key, "id") == 0;
        for (int i = 0; !ok && h->fields[i]; i++)
            ok = strcmp(key, h->fields[i]) == 0;
        if (!ok) {
            char msg[160];
            snprintf(msg, sizeof(msg), "%s has no field \"%.80s\"", h->type, key);
            fit_session_send_error(s, req->id, FIT_EUNKNOWN_FIELD, key, msg);
            return -1;
        }
    }
    return 0;
}

/*
 * Token bucket per connection (config rate.messages_per_s, rate.burst).
 * Returns 0 if the message may go on, else the milliseconds until it could.
 */
static int64_t rate_limit(fit_session *s)
{
    fit_config *cfg = s->srv->cfg;
    uint64_t now = uv_now(s->srv->loop);
    double rate = cfg->rate_messages_per_s;
    if (!s->rate_started) {
        s->rate_started = 1;
        s->rate_tokens = cfg->rate_burst;
    }
    s->rate_tokens += (double)(now - s->rate_last_ms) * rate / 1000.0;
    if (s->rate_tokens > cfg->rate_burst)
        s->rate_tokens = cfg->rate_burst;
    s->rate_last_ms = now;
    if (s->rate_tokens >= 1.0) {
        s->rate_tokens -= 1.0;
        return 0;
    }
    return (int64_t)ceil((1.0 - s->rate_tokens) * 1000.0 / rate);
}

void fit_handle_message(fit_session *s, const char *buf, size_t len)
{
    fit_request req;
    fit_field_error fe;
    int64_t wait_ms = rate_limit(s);
    int rc = fit_request_parse(buf, len, &req, &fe);
    if (wait_ms > 0) {
        /* Nothing of the message is applied; the client resends it later. */
        json_t *e = fit_error_reply(req.id, FIT_ERATE_LIMITED, "", NULL);
        json_object_set_new(e, "retry_after_ms", json_integer(wait_ms));
        fit_session_send(s, e);
        json_decref(e);
        fit_request_clear(&req);
        return;
    }
    if (rc != 0) {
        fit_session_send_error(s, req.id, fe.code, fe.field, fe.message);
        fit_request_clear(&req);
        return;
    }
    const handler_spec *h = NULL;
    for (size_t i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++)
        if (strcmp(handlers[i].type, req.type) == 0)
            h = &handlers[i];
    fit_metrics_in(&s->srv->metrics, req.type, h != NULL);
    if (!h) {
        char msg[128];
        snprintf(msg, sizeof(msg), "unknown message type \"%.64s\"", req.type);
        fit_session_send_error(s, req.id, FIT_EUNKNOWN_TYPE, "type", msg);
    } else if (s->srv->stopping) {
        fit_session_send_error(s, req.id, FIT_EUNAVAILABLE, "",
                               "server is shutting down; nothing was changed, retry later");
    } else if (s->authed && s->claims.exp_s <= fit_now_ms() / 1000) {
        /* The token ran out (and no token.refresh came in time): nothing more is done. */
        fit_session_send_error(s, req.id, FIT_ETOKEN_EXPIRED, "",
                               "the session's token has expired; connect again with a new one");
        fit_session_close_after_flush(s, FIT_CLOSE_TOKEN_EXPIRED, "token expired");
    } else if (h->needs_member && !s->authed) {
        /* Spectators (no hello) may only read public event boards (fit_h_boards.c). */
        fit_session_send_error(s, req.id, FIT_EUNAUTHENTICATED, "", NULL);
    } else if (h->needs_member == 1 && s->claims.role != FIT_ROLE_MEMBER) {
        /* Member data belongs to members; hosts, staff and marshals have their own messages. */
        fit_session_send_error(s, req.id, FIT_EFORBIDDEN, "",
                               "only member tokens may use member messages");
    } else if (check_fields(s, &req, h) == 0) {
        h->fn(s, &req);
    }
    fit_request_clear(&req);
}
