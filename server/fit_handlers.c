/*
 * fit_handlers: the commands of protocol fitsync.v1, as a table.
 *
 * Every handler follows the same contract (after Redis's command handlers):
 * validate every argument first and answer a precise error; only then touch
 * Redis; reply once. Batches validate item by item: a bad item gets its own
 * error in "results" and the others go on. An item's success is reported only
 * after its Function call has returned, so "created"/"applied" means the
 * data is in Redis; if Redis is away the item says "unavailable" (retryable).
 */
#include "fit_ops.h"
#include "fit_server.h"

#include <stdlib.h>
#include <string.h>

typedef void handler_fn(fit_session *s, fit_request *req);

typedef struct {
    const char *type;
    int needs_member; /* 1: member operations (after hello, role member) */
    handler_fn *fn;
    const char *fields[4]; /* allowed fields besides "type" and "id" */
} handler_spec;

static int64_t now_ms(void)
{
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static fit_rules rules_now(fit_server *srv)
{
    fit_rules r = {now_ms(), srv->cfg->max_age_weeks, (int64_t)srv->cfg->future_tolerance_s * 1000,
                   &srv->cfg->met};
    return r;
}

/* The current ISO week in the programme's time zone (config "timezone"). */
static void current_week(fit_server *srv, int *iso_year, int *week)
{
    fit_iso_week(fit_local_date(now_ms(), srv->cfg->timezone_offset_min), iso_year, week);
}

/* ------------------------------------------------------------------ */
/* progress pushes                                                     */

typedef struct {
    fit_server *srv;
    char user[65];
} progress_ctx;

static void send_to_device(fit_session *s, void *msg)
{
    fit_session_send(s, msg);
}

static void progress_done(int err, const fit_week_status *st, void *data)
{
    progress_ctx *c = data;
    c->srv->inflight--;
    if (!err) {
        json_t *msg = json_pack("{s:s, s:o}", "type", "progress", "week", fit_week_status_json(st));
        fit_server_each_device(c->srv, c->user, send_to_device, msg);
        json_decref(msg);
    }
    free(c);
}

/* Sends the week's status to every connected device of user (DESIGN: after any change). */
static void push_progress(fit_server *srv, const char *user, const char *week_name)
{
    int y, w;
    if (fit_iso_week_parse(week_name, &y, &w) != 0)
        return;
    progress_ctx *c = malloc(sizeof(*c));
    if (!c)
        return;
    c->srv = srv;
    snprintf(c->user, sizeof(c->user), "%s", user);
    srv->inflight++;
    if (fit_ops_week_get(&srv->store, (unsigned)srv->cfg->shards, user, y, w, &srv->cfg->who,
                         progress_done, c) != 0) {
        srv->inflight--;
        free(c);
    }
}

/* ------------------------------------------------------------------ */
/* batches                                                             */

typedef struct {
    fit_session *s;
    char re[FIT_MESSAGE_ID_MAX + 1];
    int has_re;
    char type[32];      /* the request's type, echoed in the reply */
    const char *prefix; /* "activities" / "summaries" */
    char user[65];
    json_t *results;
    size_t pending;
    int accepted, rejected;
    char (*weeks)[FIT_WEEK_LEN];
    size_t nweeks, capweeks;
} batch;

typedef struct {
    batch *b;
    size_t index;
    json_t *ok; /* the success entry, completed when Redis answers */
} item_ctx;

static void batch_add_week(batch *b, const char *w)
{
    for (size_t i = 0; i < b->nweeks; i++)
        if (strcmp(b->weeks[i], w) == 0)
            return;
    if (b->nweeks == b->capweeks) {
        size_t cap = b->capweeks ? b->capweeks * 2 : 8;
        void *p = realloc(b->weeks, cap * sizeof(*b->weeks));
        if (!p)
            return;
        b->weeks = p;
        b->capweeks = cap;
    }
    snprintf(b->weeks[b->nweeks++], FIT_WEEK_LEN, "%s", w);
}

static void batch_finish(batch *b)
{
    fit_server *srv = b->s->srv;
    json_t *reply = fit_reply_new(b->type, b->has_re ? b->re : NULL);
    json_object_set_new(reply, "results", b->results);
    json_object_set_new(reply, "accepted", json_integer(b->accepted));
    json_object_set_new(reply, "rejected", json_integer(b->rejected));
    fit_session_send(b->s, reply);
    json_decref(reply);
    for (size_t i = 0; i < b->nweeks; i++)
        push_progress(srv, b->user, b->weeks[i]);
    srv->inflight--;
    fit_session_unref(b->s);
    free(b->weeks);
    free(b);
}

static void batch_item_error(batch *b, size_t index, const fit_field_error *err)
{
    json_array_set_new(b->results, index, fit_item_error(index, b->prefix, err));
    b->rejected++;
}

static void item_done(int err, const char *status, const char *const *weeks, int nweeks,
                      void *data)
{
    item_ctx *c = data;
    batch *b = c->b;
    if (err) {
        fit_field_error fe;
        if (err == FIT_ECONFLICT)
            fit_field_error_set(&fe, err, "client_id",
                                "client_id already holds a different activity; use a new "
                                "client_id for a new activity");
        else
            fit_field_error_set(&fe, err, "", NULL);
        batch_item_error(b, c->index, &fe);
        json_decref(c->ok);
    } else {
        json_object_set_new(c->ok, "status", json_string(status));
        json_t *wk = json_array();
        for (int i = 0; i < nweeks; i++) {
            json_array_append_new(wk, json_string(weeks[i]));
            batch_add_week(b, weeks[i]);
        }
        json_object_set_new(c->ok, "weeks", wk);
        json_array_set_new(b->results, c->index, c->ok);
        b->accepted++;
    }
    free(c);
    if (--b->pending == 0)
        batch_finish(b);
}

/* Common checks of a batch request; returns the array or NULL after replying with an error. */
static json_t *batch_items(fit_session *s, fit_request *req, const char *field)
{
    json_t *items = json_object_get(req->root, field);
    char msg[96];
    if (!items) {
        fit_session_send_error(s, req->id, FIT_EMISSING_FIELD, field, NULL);
        return NULL;
    }
    if (!json_is_array(items)) {
        snprintf(msg, sizeof(msg), "%s must be an array", field);
        fit_session_send_error(s, req->id, FIT_EINVALID_TYPE, field, msg);
        return NULL;
    }
    if (json_array_size(items) > (size_t)s->srv->cfg->max_batch) {
        snprintf(msg, sizeof(msg), "%s holds %zu items; the limit is %d", field,
                 json_array_size(items), s->srv->cfg->max_batch);
        fit_session_send_error(s, req->id, FIT_EBATCH_TOO_LARGE, field, msg);
        return NULL;
    }
    return items;
}

static batch *batch_new(fit_session *s, fit_request *req, const char *prefix, size_t n)
{
    batch *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->s = s;
    snprintf(b->type, sizeof(b->type), "%s", req->type);
    b->prefix = prefix;
    if (req->id) {
        snprintf(b->re, sizeof(b->re), "%s", req->id);
        b->has_re = 1;
    }
    snprintf(b->user, sizeof(b->user), "%s", s->claims.sub);
    b->results = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(b->results, json_null());
    b->pending = 1; /* held by run_batch until every item is sent */
    fit_session_ref(s);
    s->srv->inflight++;
    return b;
}

/*
 * Validates one item and, if it is good, sends its Function call with c as
 * the callback's data (filling c->ok with the item's identity first).
 * Returns 0 when sent; otherwise a negative code with *fe filled.
 */
typedef int item_submit_fn(fit_server *srv, const char *user, const json_t *item,
                           const fit_rules *rules, item_ctx *c, fit_field_error *fe);

static int submit_activity(fit_server *srv, const char *user, const json_t *item,
                           const fit_rules *rules, item_ctx *c, fit_field_error *fe)
{
    fit_activity a;
    int rc = fit_activity_parse(item, rules, &a, fe);
    if (rc)
        return rc;
    c->ok = json_pack("{s:I, s:s, s:s}", "index", (json_int_t)c->index, "client_id", a.client_id,
                      "intensity", fit_intensity_name(a.intensity));
    rc = fit_ops_activity_put(&srv->store, (unsigned)srv->cfg->shards, user, &a, item_done, c);
    fit_activity_clear(&a);
    return rc ? fit_field_error_set(fe, rc, "", NULL) : 0;
}

static int submit_summary(fit_server *srv, const char *user, const json_t *item,
                          const fit_rules *rules, item_ctx *c, fit_field_error *fe)
{
    fit_summary sm;
    int rc = fit_summary_parse(item, rules, &sm, fe);
    if (rc)
        return rc;
    c->ok = json_pack("{s:I, s:s, s:s}", "index", (json_int_t)c->index, "date", sm.date_str,
                      "source", sm.source);
    rc = fit_ops_summary_put(&srv->store, (unsigned)srv->cfg->shards, user, &sm, item_done, c);
    fit_summary_clear(&sm);
    return rc ? fit_field_error_set(fe, rc, "", NULL) : 0;
}

/* The shared body of the upload commands: one Function call per good item. */
static void run_batch(fit_session *s, fit_request *req, const char *field,
                      item_submit_fn *submit)
{
    json_t *items = batch_items(s, req, field);
    if (!items)
        return;
    fit_server *srv = s->srv;
    batch *b = batch_new(s, req, field, json_array_size(items));
    if (!b)
        return;
    fit_rules rules = rules_now(srv);
    size_t i;
    json_t *item;
    json_array_foreach(items, i, item)
    {
        fit_field_error fe;
        item_ctx *c = calloc(1, sizeof(*c));
        if (!c) {
            fit_field_error_set(&fe, FIT_ENOMEM, "", NULL);
            batch_item_error(b, i, &fe);
            continue;
        }
        c->b = b;
        c->index = i;
        b->pending++;
        if (submit(srv, b->user, item, &rules, c, &fe) != 0) {
            b->pending--;
            json_decref(c->ok);
            free(c);
            batch_item_error(b, i, &fe);
        }
    }
    if (--b->pending == 0)
        batch_finish(b);
}

static void handle_activity_upload(fit_session *s, fit_request *req)
{
    run_batch(s, req, "activities", submit_activity);
}

static void handle_summary_upload(fit_session *s, fit_request *req)
{
    run_batch(s, req, "summaries", submit_summary);
}

/* ------------------------------------------------------------------ */
/* single requests                                                     */

/* A request waiting for Redis: holds the session and the reply id. */
typedef struct {
    fit_session *s;
    char re[FIT_MESSAGE_ID_MAX + 1];
    int has_re;
    char user[65];
} pending_req;

static pending_req *pending_new(fit_session *s, fit_request *req)
{
    pending_req *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->s = s;
    if (req->id) {
        snprintf(p->re, sizeof(p->re), "%s", req->id);
        p->has_re = 1;
    }
    snprintf(p->user, sizeof(p->user), "%s", s->claims.sub);
    fit_session_ref(s);
    s->srv->inflight++;
    return p;
}

static void pending_free(pending_req *p)
{
    p->s->srv->inflight--;
    fit_session_unref(p->s);
    free(p);
}

static void reply_unavailable(fit_session *s, const char *re)
{
    fit_session_send_error(s, re, FIT_EUNAVAILABLE, "",
                           "storage is unavailable; nothing was changed, retry later");
}

static void week_reply(int err, const fit_week_status *st, void *data)
{
    pending_req *p = data;
    if (err) {
        reply_unavailable(p->s, p->has_re ? p->re : NULL);
    } else {
        json_t *r = fit_reply_new("week.get", p->has_re ? p->re : NULL);
        json_object_set_new(r, "week", fit_week_status_json(st));
        fit_session_send(p->s, r);
        json_decref(r);
    }
    pending_free(p);
}

static void handle_week_get(fit_session *s, fit_request *req)
{
    int y, w;
    json_t *wk = json_object_get(req->root, "week");
    if (wk && !json_is_null(wk)) {
        if (!json_is_string(wk)) {
            fit_session_send_error(s, req->id, FIT_EINVALID_TYPE, "week",
                                   "week must be a string like 2026-W10");
            return;
        }
        if (fit_iso_week_parse(json_string_value(wk), &y, &w) != 0) {
            fit_session_send_error(s, req->id, FIT_EINVALID_VALUE, "week",
                                   "week must be an ISO week like 2026-W10 that exists");
            return;
        }
    } else {
        current_week(s->srv, &y, &w);
    }
    pending_req *p = pending_new(s, req);
    if (!p)
        return;
    if (fit_ops_week_get(&s->srv->store, (unsigned)s->srv->cfg->shards, p->user, y, w,
                         &s->srv->cfg->who, week_reply, p) != 0) {
        reply_unavailable(s, req->id);
        pending_free(p);
    }
}

static void profile_reply(int err, const json_t *profile, void *data)
{
    pending_req *p = data;
    if (err) {
        reply_unavailable(p->s, p->has_re ? p->re : NULL);
    } else {
        json_t *r = fit_reply_new("profile.set", p->has_re ? p->re : NULL);
        json_object_set(r, "profile", (json_t *)profile);
        fit_session_send(p->s, r);
        json_decref(r);
        /* The band (and so the target) may have changed. */
        int y, w;
        char name[FIT_WEEK_LEN];
        current_week(p->s->srv, &y, &w);
        fit_iso_week_format(y, w, name);
        push_progress(p->s->srv, p->user, name);
    }
    pending_free(p);
}

static int current_year(fit_server *srv)
{
    return fit_local_date(now_ms(), srv->cfg->timezone_offset_min).year;
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
    if (fit_profile_parse(obj, current_year(s->srv), &prof, &fe) != 0) {
        char field[160];
        snprintf(field, sizeof(field), "profile%s%s", fe.field[0] ? "." : "", fe.field);
        fit_session_send_error(s, req->id, fe.code, field, fe.message);
        return;
    }
    pending_req *p = pending_new(s, req);
    if (!p)
        return;
    if (fit_ops_profile_set(&s->srv->store, (unsigned)s->srv->cfg->shards, p->user, &prof,
                            profile_reply, p) != 0) {
        reply_unavailable(s, req->id);
        pending_free(p);
    }
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
        fit_session_send_error(s, req->id, tok ? FIT_EINVALID_TYPE : FIT_EMISSING_FIELD, "token",
                               "token (a bearer token string) is required");
        fit_session_close_after_flush(s, LWS_CLOSE_STATUS_POLICY_VIOLATION, "hello failed");
        return;
    }
    if (!dev || !json_is_string(dev) || !fit_id_valid(json_string_value(dev), FIT_CLIENT_ID_MAX)) {
        fit_session_send_error(s, req->id,
                               !dev ? FIT_EMISSING_FIELD
                               : json_is_string(dev) ? FIT_EINVALID_VALUE
                                                     : FIT_EINVALID_TYPE,
                               "device_id", "device_id must be 1..64 characters of [A-Za-z0-9._:@-]");
        fit_session_close_after_flush(s, LWS_CLOSE_STATUS_POLICY_VIOLATION, "hello failed");
        return;
    }
    int rc = fit_token_verify(json_string_value(tok), srv->secret, strlen(srv->secret),
                              now_ms() / 1000, &s->claims);
    if (rc != 0) {
        fit_session_send_error(s, req->id, rc, "token", NULL);
        fit_session_close_after_flush(s, LWS_CLOSE_STATUS_POLICY_VIOLATION,
                                      rc == FIT_ETOKEN_EXPIRED ? "token expired" : "invalid token");
        return;
    }
    snprintf(s->device_id, sizeof(s->device_id), "%s", json_string_value(dev));
    s->authed = 1;
    fit_session_attach_user(s);
    int y, w;
    char week[FIT_WEEK_LEN], now[40];
    current_week(srv, &y, &w);
    fit_iso_week_format(y, w, week);
    fit_time_format(now_ms(), 0, now, sizeof(now));
    json_t *r = fit_reply_new("welcome", req->id);
    json_object_set_new(r, "user", json_string(s->claims.sub));
    json_object_set_new(r, "role", json_string(fit_role_name(s->claims.role)));
    json_object_set_new(r, "device_id", json_string(s->device_id));
    json_object_set_new(r, "protocol", json_string(FIT_SUBPROTOCOL));
    json_object_set_new(r, "version", json_string(FITSYNC_VERSION));
    json_object_set_new(r, "server_time", json_string(now));
    json_object_set_new(r, "week", json_string(week));
    json_object_set_new(r, "limits",
                        json_pack("{s:i, s:i, s:i, s:i}", "max_batch", srv->cfg->max_batch,
                                  "max_message_bytes", srv->cfg->max_message_bytes,
                                  "max_age_weeks", srv->cfg->max_age_weeks, "future_tolerance_s",
                                  srv->cfg->future_tolerance_s));
    fit_session_send(s, r);
    json_decref(r);
}

static const handler_spec handlers[] = {
    {"hello", 0, handle_hello, {"token", "device_id", NULL}},
    {"profile.set", 1, handle_profile_set, {"profile", NULL}},
    {"activity.upload", 1, handle_activity_upload, {"activities", NULL}},
    {"summary.upload", 1, handle_summary_upload, {"summaries", NULL}},
    {"week.get", 1, handle_week_get, {"week", NULL}},
};

static int check_fields(fit_session *s, fit_request *req, const handler_spec *h)
{
    const char *key;
    json_t *v;
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

void fit_handle_message(fit_session *s, const char *buf, size_t len)
{
    fit_request req;
    fit_field_error fe;
    if (fit_request_parse(buf, len, &req, &fe) != 0) {
        fit_session_send_error(s, req.id, fe.code, fe.field, fe.message);
        fit_request_clear(&req);
        return;
    }
    const handler_spec *h = NULL;
    for (size_t i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++)
        if (strcmp(handlers[i].type, req.type) == 0)
            h = &handlers[i];
    if (!h) {
        char msg[128];
        snprintf(msg, sizeof(msg), "unknown message type \"%.64s\"", req.type);
        fit_session_send_error(s, req.id, FIT_EUNKNOWN_TYPE, "type", msg);
    } else if (s->srv->stopping) {
        fit_session_send_error(s, req.id, FIT_EUNAVAILABLE, "",
                               "server is shutting down; nothing was changed, retry later");
    } else if (h->needs_member && !s->authed) {
        fit_session_send_error(s, req.id, FIT_EUNAUTHENTICATED, "", NULL);
    } else if (h->needs_member && s->claims.role != FIT_ROLE_MEMBER) {
        fit_session_send_error(s, req.id, FIT_EFORBIDDEN, "",
                               "only member tokens may log activity");
    } else if (check_fields(s, &req, h) == 0) {
        h->fn(s, &req);
    }
    fit_request_clear(&req);
}
