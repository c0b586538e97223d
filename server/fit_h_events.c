/*
 * fit_h_events: live challenges for event hosts and marshals — a timed team
 * relay (docs/PROTOCOL.md, "Events"). The rules live in workers/events.lua;
 * this file checks who may do what and validates every field first.
 *
 * Roles: a host token may run the event named in its "event" claim (a staff
 * token, any event); a marshal token (minted by marshal.token, for one event)
 * may only record laps for it. Spectators need no token: they may read the
 * standings of public events (leaderboard.get / .subscribe, fit_h_boards.c).
 */
#include "fit_boards.h"
#include "fit_handlers.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BIB_MAX 16
#define NAME_MAX_CHARS 80

/* ---- roles ---- */

static int may_host(const fit_session *s, const char *event)
{
    if (!s->authed)
        return 0;
    if (s->claims.role == FIT_ROLE_STAFF)
        return 1;
    return s->claims.role == FIT_ROLE_HOST && strcmp(s->claims.event, event) == 0;
}

static int may_marshal(const fit_session *s, const char *event)
{
    return may_host(s, event) ||
           (s->authed && s->claims.role == FIT_ROLE_MARSHAL && strcmp(s->claims.event, event) == 0);
}

/* Reads "event" and checks the role; replies and returns NULL when refused. */
static const char *event_field(fit_session *s, fit_request *req, int marshal_ok)
{
    const char *event = fit_get_id_field(s, req, "event", 64);
    if (!event)
        return NULL;
    if (!fit_slug_valid(event)) {
        fit_session_send_error(s, req->id, FIT_EINVALID_VALUE, "event",
                               "event ids are slugs: 1..40 of [a-z0-9-]");
        return NULL;
    }
    if (!(marshal_ok ? may_marshal(s, event) : may_host(s, event))) {
        fit_session_send_error(s, req->id, FIT_EFORBIDDEN, "event",
                               marshal_ok ? "only this event's marshals and hosts may do that"
                                          : "only this event's hosts (or staff) may do that");
        return NULL;
    }
    return event;
}

static int string_field(fit_session *s, fit_request *req, const json_t *obj, const char *field,
                        size_t max_chars, const char **out)
{
    json_t *v = json_object_get(obj, field);
    char msg[96];
    snprintf(msg, sizeof(msg), "%s must be a string of 1..%zu characters", field, max_chars);
    if (!v || !json_is_string(v)) {
        fit_session_send_error(s, req->id, v ? FIT_EINVALID_TYPE : FIT_EMISSING_FIELD, field, msg);
        return -1;
    }
    size_t chars = 0;
    for (const char *p = json_string_value(v); *p; p++)
        chars += ((unsigned char)*p & 0xC0) != 0x80;
    if (chars == 0 || chars > max_chars) {
        fit_session_send_error(s, req->id, FIT_EINVALID_VALUE, field, msg);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

static int bib_valid(const char *b)
{
    return fit_id_valid(b, BIB_MAX) && !strchr(b, ':');
}

/* ---- a request waiting for one event Function call ---- */

typedef struct {
    fit_pending *p;
    char type[32];
    char event[65];
    json_t *extra; /* fields echoed in the reply */
} ev_req;

static ev_req *ev_req_new(fit_session *s, fit_request *req, const char *event)
{
    ev_req *e = calloc(1, sizeof(*e));
    fit_pending *p = e ? fit_pending_new(s, req) : NULL;
    if (!p) {
        free(e);
        return NULL;
    }
    e->p = p;
    snprintf(e->type, sizeof(e->type), "%s", req->type);
    snprintf(e->event, sizeof(e->event), "%s", event);
    e->extra = json_object();
    return e;
}

static void ev_req_free(ev_req *e)
{
    json_decref(e->extra);
    fit_pending_free(e->p);
    free(e);
}

static int ev_call(fit_session *s, fit_request *req, ev_req *e, const char *fn, int ro, int argc,
                   const char **argv, fit_store_cb *cb)
{
    int rc = fit_ops_event_call(&s->srv->ops, fn, ro, e->event, argc, argv, cb, e);
    if (rc) {
        fit_reply_op_error(s, req->id, rc, "");
        ev_req_free(e);
    }
    return rc;
}

/* Replies {type, re, event, status, ...extra} for a one-word status; maps error words. */
static void status_done(redisReply *r, const char *errstr, void *data)
{
    ev_req *e = data;
    fit_session *s = e->p->s;
    const char *re = fit_pending_re(e->p);
    const char *st =
        r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) ? r->str : NULL;
    if (!r) {
        fit_reply_unavailable(s, re);
    } else if (!st) {
        fit_session_send_error(s, re, FIT_EINTERNAL, "", NULL);
    } else if (strcmp(st, "not_found") == 0) {
        fit_session_send_error(s, re, FIT_ENOT_FOUND,
                               json_object_get(e->extra, "bib") ? "bib" : "event",
                               "no such event (or team)");
    } else if (strcmp(st, "conflict") == 0) {
        fit_session_send_error(s, re, FIT_ECONFLICT,
                               json_object_get(e->extra, "bib") ? "bib" : "id",
                               "that id already holds something different");
    } else if (strcmp(st, "finished") == 0) {
        fit_session_send_error(s, re, FIT_ECONFLICT, "event",
                               "the event has finished; its results are final");
    } else if (strcmp(st, "not_finished") == 0) {
        fit_session_send_error(s, re, FIT_ECONFLICT, "event",
                               "the event has not finished; there is nothing to reopen");
    } else if (strcmp(st, "bad_category") == 0) {
        fit_session_send_error(s, re, FIT_EINVALID_VALUE, "category",
                               "category is not one of the event's categories");
    } else {
        json_t *reply = fit_reply_new(e->type, re);
        json_object_set_new(reply, "event", json_string(e->event));
        json_object_set_new(reply, "status", json_string(st));
        json_object_update(reply, e->extra);
        fit_session_send(s, reply);
        json_decref(reply);
    }
    ev_req_free(e);
}

/* ---- event.create ---- */

static const char *const create_fields[] = {
    "type",           "id",         "event",    "name",      "kind",
    "starts_at",      "duration_s", "lap_m",    "min_lap_s", "categories",
    "public",         "from",       "to",       "metric",    "goal",
    "activity_types", "teams",      "team_cap", NULL};

static void create_virtual(fit_session *s, fit_request *req, const char *event, const char *name);

void fit_h_event_create(fit_session *s, fit_request *req)
{
    json_t *root = req->root;
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        int ok = 0;
        for (int i = 0; create_fields[i] && !ok; i++)
            ok = strcmp(create_fields[i], key) == 0;
        if (!ok) {
            fit_session_send_error(s, req->id, FIT_EUNKNOWN_FIELD, key,
                                   "event.create has no such field");
            return;
        }
    }
    const char *event = event_field(s, req, 0);
    const char *name, *kind;
    if (!event || string_field(s, req, root, "name", NAME_MAX_CHARS, &name) ||
        string_field(s, req, root, "kind", 20, &kind))
        return;
    if (strcmp(kind, "virtual") == 0) {
        create_virtual(s, req, event, name);
        return;
    }
    if (strcmp(kind, "timed_relay") != 0) {
        fit_session_send_error(s, req->id, FIT_EINVALID_VALUE, "kind",
                               "kind must be timed_relay or virtual");
        return;
    }
    int64_t dur, lap_m, min_lap = 0;
    int present;
    int64_t starts_ms;
    int off;
    json_t *starts = json_object_get(root, "starts_at");
    if (!starts || !json_is_string(starts) ||
        fit_time_parse(json_string_value(starts), &starts_ms, &off)) {
        fit_session_send_error(s, req->id, starts ? FIT_EINVALID_VALUE : FIT_EMISSING_FIELD,
                               "starts_at", "starts_at must be an RFC 3339 time with a UTC offset");
        return;
    }
    if (fit_get_int_field(s, req, "duration_s", 60, 7 * 86400, &dur, &present))
        return;
    if (!present) {
        fit_session_send_error(s, req->id, FIT_EMISSING_FIELD, "duration_s", NULL);
        return;
    }
    if (fit_get_int_field(s, req, "lap_m", 1, 100000, &lap_m, &present))
        return;
    if (!present) {
        fit_session_send_error(s, req->id, FIT_EMISSING_FIELD, "lap_m", NULL);
        return;
    }
    if (fit_get_int_field(s, req, "min_lap_s", 0, 86400, &min_lap, &present))
        return;
    json_t *pub = json_object_get(root, "public");
    if (pub && !json_is_boolean(pub)) {
        fit_session_send_error(s, req->id, FIT_EINVALID_TYPE, "public",
                               "public must be true or false");
        return;
    }
    json_t *cats = json_object_get(root, "categories");
    if (!json_is_array(cats) || json_array_size(cats) == 0 || json_array_size(cats) > 50) {
        fit_session_send_error(s, req->id, cats ? FIT_EINVALID_VALUE : FIT_EMISSING_FIELD,
                               "categories",
                               "categories must be a list of 1..50 {id, name, group}");
        return;
    }
    json_t *ids = json_array();
    size_t i;
    json_t *c;
    json_array_foreach(cats, i, c)
    {
        const char *cid = json_string_value(json_object_get(c, "id"));
        const char *cname = json_string_value(json_object_get(c, "name"));
        const char *group = json_string_value(json_object_get(c, "group"));
        int dup = 0;
        for (size_t j = 0; cid && j < json_array_size(ids); j++)
            dup |= strcmp(json_string_value(json_array_get(ids, j)), cid) == 0;
        if (!json_is_object(c) || !cid || !fit_slug_valid(cid) || dup || !cname || !*cname ||
            strlen(cname) > 200 || !group || !fit_slug_valid(group)) {
            char field[48];
            snprintf(field, sizeof(field), "categories[%zu]", i);
            fit_session_send_error(s, req->id, FIT_EINVALID_VALUE, field,
                                   "a category needs a unique slug id, a name and a group slug");
            json_decref(ids);
            return;
        }
        json_array_append_new(ids, json_string(cid));
    }
    json_t *doc = json_pack("{s:s, s:s, s:s, s:O, s:I, s:I, s:I, s:O, s:b}", "id", event, "name",
                            name, "kind", kind, "starts_at", starts, "duration_s", (json_int_t)dur,
                            "lap_m", (json_int_t)lap_m, "min_lap_s", (json_int_t)min_lap,
                            "categories", cats, "public", pub ? json_is_true(pub) : 1);
    char *doc_s = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    char *ids_s = json_dumps(ids, JSON_COMPACT);
    char dur_ms[24], lap[24], minlap[24];
    snprintf(dur_ms, sizeof(dur_ms), "%lld", (long long)dur * 1000);
    snprintf(lap, sizeof(lap), "%lld", (long long)lap_m);
    snprintf(minlap, sizeof(minlap), "%lld", (long long)min_lap * 1000);
    ev_req *e = doc_s && ids_s ? ev_req_new(s, req, event) : NULL;
    if (e) {
        json_object_set(e->extra, "definition", doc);
        const char *argv[] = {doc_s,  kind,
                              dur_ms, lap,
                              minlap, json_is_true(json_object_get(doc, "public")) ? "1" : "0",
                              ids_s,  s->claims.sub};
        ev_call(s, req, e, "fit_event_create", 0, 8, argv, status_done);
    }
    free(doc_s);
    free(ids_s);
    json_decref(doc);
    json_decref(ids);
}

/* ---- teams ---- */

void fit_h_team_register(fit_session *s, fit_request *req)
{
    const char *event = event_field(s, req, 0);
    const char *bib, *name, *category;
    if (!event || string_field(s, req, req->root, "bib", BIB_MAX, &bib) ||
        string_field(s, req, req->root, "name", NAME_MAX_CHARS, &name) ||
        string_field(s, req, req->root, "category", 40, &category))
        return;
    if (!bib_valid(bib)) {
        fit_session_send_error(s, req->id, FIT_EINVALID_VALUE, "bib",
                               "bib must be 1..16 characters of [A-Za-z0-9._@-]");
        return;
    }
    ev_req *e = ev_req_new(s, req, event);
    if (!e)
        return;
    json_object_set_new(e->extra, "bib", json_string(bib));
    const char *argv[] = {bib, name, category};
    ev_call(s, req, e, "fit_team_register", 0, 3, argv, status_done);
}

/* team.import: "bib,name,category" lines (a header line is skipped), one call per row. */
typedef struct {
    ev_req *e;
    json_t *results;
    size_t pending;
    int accepted, rejected;
} import_ctx;

typedef struct {
    import_ctx *imp;
    size_t index;
    char bib[BIB_MAX + 1];
} import_row;

static void import_finish(import_ctx *imp)
{
    ev_req *e = imp->e;
    json_t *r = fit_reply_new("team.import", fit_pending_re(e->p));
    json_object_set_new(r, "event", json_string(e->event));
    json_object_set_new(r, "results", imp->results);
    json_object_set_new(r, "accepted", json_integer(imp->accepted));
    json_object_set_new(r, "rejected", json_integer(imp->rejected));
    fit_session_send(e->p->s, r);
    json_decref(r);
    ev_req_free(e);
    free(imp);
}

static void import_row_error(import_ctx *imp, size_t index, int code, const char *message)
{
    char field[40];
    snprintf(field, sizeof(field), "csv[%zu]", index + 1);
    json_array_append_new(imp->results,
                          json_pack("{s:I, s:s, s:s, s:s, s:s}", "line", (json_int_t)index + 1,
                                    "status", "error", "code", fit_err_name(code), "field", field,
                                    "message", message));
    imp->rejected++;
}

static void import_done(redisReply *r, const char *errstr, void *data)
{
    import_row *row = data;
    import_ctx *imp = row->imp;
    const char *st = r && r->type == REDIS_REPLY_STRING ? r->str : NULL;
    if (!st)
        import_row_error(imp, row->index, r ? FIT_EINTERNAL : FIT_EUNAVAILABLE, "not stored");
    else if (strcmp(st, "created") == 0 || strcmp(st, "duplicate") == 0) {
        json_array_append_new(imp->results,
                              json_pack("{s:I, s:s, s:s}", "line", (json_int_t)row->index + 1,
                                        "bib", row->bib, "status", st));
        imp->accepted++;
    } else
        import_row_error(imp, row->index,
                         strcmp(st, "not_found") == 0  ? FIT_ENOT_FOUND
                         : strcmp(st, "conflict") == 0 ? FIT_ECONFLICT
                                                       : FIT_EINVALID_VALUE,
                         strcmp(st, "bad_category") == 0 ? "unknown category"
                         : strcmp(st, "conflict") == 0   ? "bib already registered differently"
                                                         : "no such event");
    free(row);
    if (--imp->pending == 0)
        import_finish(imp);
}

/*
 * Splits one CSV line in place into at most max fields (RFC 4180: a field in
 * double quotes may hold commas, and "" stands for a quote). Returns the
 * number of fields, or max + 1 if there are more, or -1 for a stray quote.
 */
static int csv_split(char *line, char **fields, int max)
{
    int n = 0;
    char *r = line, *w;
    for (;;) {
        if (n == max)
            return max + 1;
        fields[n++] = w = r;
        if (*r == '"') {
            for (r++;; r++) {
                if (*r == '\0')
                    return -1;
                if (*r == '"') {
                    if (r[1] != '"')
                        break;
                    r++;
                }
                *w++ = *r;
            }
            r++;
            if (*r != ',' && *r != '\0')
                return -1;
        } else {
            while (*r && *r != ',')
                *w++ = *r++;
        }
        int more = *r == ',';
        *w = '\0';
        if (!more)
            return n;
        r++;
    }
}

void fit_h_team_import(fit_session *s, fit_request *req)
{
    const char *event = event_field(s, req, 0);
    json_t *csv = json_object_get(req->root, "csv");
    if (!event)
        return;
    if (!csv || !json_is_string(csv)) {
        fit_session_send_error(s, req->id, csv ? FIT_EINVALID_TYPE : FIT_EMISSING_FIELD, "csv",
                               "csv must be the text of a file with lines bib,name,category");
        return;
    }
    ev_req *e = ev_req_new(s, req, event);
    import_ctx *imp = e ? calloc(1, sizeof(*imp)) : NULL;
    if (!imp) {
        if (e)
            ev_req_free(e);
        return;
    }
    imp->e = e;
    imp->results = json_array();
    imp->pending = 1;
    char *text = strdup(json_string_value(csv));
    size_t line = 0, rows = 0;
    /* Physical lines, so that errors name the line of the text (blank lines included). */
    for (char *l = text, *next; l && *l; l = next, line++) {
        next = strchr(l, '\n');
        if (next)
            *next++ = '\0';
        l[strcspn(l, "\r")] = '\0';
        if (!*l || (line == 0 && strncmp(l, "bib,", 4) == 0))
            continue;
        if (++rows > (size_t)s->srv->cfg->max_batch) {
            import_row_error(imp, line, FIT_EBATCH_TOO_LARGE, "too many rows");
            continue;
        }
        char *f[4];
        if (csv_split(l, f, 4) != 3) {
            import_row_error(imp, line, FIT_EINVALID_VALUE, "a row is bib,name,category");
            continue;
        }
        if (!bib_valid(f[0]) || !*f[1] || strlen(f[1]) > 200 || !fit_slug_valid(f[2])) {
            import_row_error(imp, line, FIT_EINVALID_VALUE, "bad bib, name or category");
            continue;
        }
        import_row *row = calloc(1, sizeof(*row));
        if (!row)
            continue;
        row->imp = imp;
        row->index = line;
        snprintf(row->bib, sizeof(row->bib), "%s", f[0]);
        const char *argv[] = {f[0], f[1], f[2]};
        imp->pending++;
        if (fit_ops_event_call(&s->srv->ops, "fit_team_register", 0, event, 3, argv, import_done,
                               row) != 0) {
            imp->pending--;
            free(row);
            import_row_error(imp, line, FIT_EUNAVAILABLE, "not stored; retry");
        }
    }
    free(text);
    if (--imp->pending == 0)
        import_finish(imp);
}

/* ---- start, finish ---- */

void fit_h_event_start(fit_session *s, fit_request *req)
{
    const char *event = event_field(s, req, 0);
    if (!event)
        return;
    int64_t at = fit_now_ms();
    int off;
    json_t *v = json_object_get(req->root, "at");
    if (v && (!json_is_string(v) || fit_time_parse(json_string_value(v), &at, &off))) {
        fit_session_send_error(s, req->id, FIT_EINVALID_VALUE, "at",
                               "at must be an RFC 3339 time with a UTC offset");
        return;
    }
    char at_s[24], at_t[40];
    snprintf(at_s, sizeof(at_s), "%lld", (long long)at);
    fit_time_format(at, 0, at_t, sizeof(at_t));
    ev_req *e = ev_req_new(s, req, event);
    if (!e)
        return;
    json_object_set_new(e->extra, "started_at", json_string(at_t));
    const char *argv[] = {at_s, s->claims.sub};
    ev_call(s, req, e, "fit_event_start", 0, 2, argv, status_done);
}

void fit_h_event_finish(fit_session *s, fit_request *req)
{
    const char *event = event_field(s, req, 0);
    ev_req *e = event ? ev_req_new(s, req, event) : NULL;
    if (!e)
        return;
    const char *argv[] = {s->claims.sub};
    ev_call(s, req, e, "fit_event_finish", 0, 1, argv, status_done);
}

/*
 * event.reopen: a host lets late laps in after event.finish (a marshal's
 * queue that arrived late, say); the reason is kept in the audit list.
 */
void fit_h_event_reopen(fit_session *s, fit_request *req)
{
    const char *event = event_field(s, req, 0);
    const char *reason;
    if (!event || string_field(s, req, req->root, "reason", 200, &reason))
        return;
    ev_req *e = ev_req_new(s, req, event);
    if (!e)
        return;
    const char *argv[] = {reason, s->claims.sub};
    ev_call(s, req, e, "fit_event_reopen", 0, 2, argv, status_done);
}

/* ---- laps ---- */

typedef struct {
    ev_req *e;
    json_t *results; /* one entry per item; nulls filled from Redis's answer */
    json_t *sent;    /* indexes of the items sent, in order */
} lap_ctx;

static void laps_done(redisReply *r, const char *errstr, void *data)
{
    lap_ctx *c = data;
    ev_req *e = c->e;
    fit_session *s = e->p->s;
    const char *re = fit_pending_re(e->p);
    size_t n = json_array_size(c->sent);
    const char *state =
        r && r->type == REDIS_REPLY_ARRAY && r->elements >= 1 ? r->element[0]->str : NULL;
    if (!r) {
        fit_reply_unavailable(s, re);
    } else if (!state || r->elements != n + 1) {
        if (state && strcmp(state, "not_found") == 0)
            fit_session_send_error(s, re, FIT_ENOT_FOUND, "event", "no such event");
        else
            fit_session_send_error(s, re, FIT_EINTERNAL, "", NULL);
    } else {
        int accepted = 0, rejected = 0;
        for (size_t i = 0; i < n; i++) {
            size_t idx = (size_t)json_integer_value(json_array_get(c->sent, i));
            json_t *item = json_array_get(c->results, idx);
            const char *st = r->element[i + 1]->str ? r->element[i + 1]->str : "";
            fit_field_error fe;
            int refused = 1;
            if (strcmp(st, "unknown_bib") == 0)
                fit_field_error_set(&fe, FIT_ENOT_FOUND, "bib",
                                    "no team with this bib in the event");
            else if (strcmp(st, "conflict") == 0)
                fit_field_error_set(&fe, FIT_ECONFLICT, "client_id",
                                    "client_id already holds a different crossing");
            else if (strcmp(st, "event_finished") == 0)
                fit_field_error_set(&fe, FIT_EEVENT_FINISHED, "", NULL);
            else
                refused = 0;
            if (refused) {
                json_array_set_new(c->results, idx, fit_item_error(idx, "laps", &fe));
                rejected++;
            } else {
                json_object_set_new(item, "status", json_string(st));
                accepted++;
            }
        }
        json_t *reply = fit_reply_new("lap.record", re);
        json_object_set_new(reply, "event", json_string(e->event));
        json_object_set_new(reply, "event_state", json_string(state));
        json_object_set(reply, "results", c->results);
        int pre_rejected = (int)(json_array_size(c->results) - n);
        json_object_set_new(reply, "accepted", json_integer(accepted));
        json_object_set_new(reply, "rejected", json_integer(rejected + pre_rejected));
        fit_session_send(s, reply);
        json_decref(reply);
    }
    json_decref(c->results);
    json_decref(c->sent);
    ev_req_free(e);
    free(c);
}

void fit_h_lap_record(fit_session *s, fit_request *req)
{
    const char *event = event_field(s, req, 1);
    if (!event)
        return;
    json_t *laps = json_object_get(req->root, "laps");
    if (!json_is_array(laps)) {
        fit_session_send_error(s, req->id, laps ? FIT_EINVALID_TYPE : FIT_EMISSING_FIELD, "laps",
                               "laps must be an array of {client_id, bib, at}");
        return;
    }
    size_t n = json_array_size(laps);
    if (n > (size_t)s->srv->cfg->max_batch) {
        char msg[96];
        snprintf(msg, sizeof(msg), "laps holds %zu crossings; the limit is %d", n,
                 s->srv->cfg->max_batch);
        fit_session_send_error(s, req->id, FIT_EBATCH_TOO_LARGE, "laps", msg);
        return;
    }
    ev_req *e = ev_req_new(s, req, event);
    lap_ctx *c = e ? calloc(1, sizeof(*c)) : NULL;
    if (!c) {
        if (e)
            ev_req_free(e);
        return;
    }
    c->e = e;
    c->results = json_array();
    c->sent = json_array();
    /* One Function call records the whole batch: (client_id, bib, at, doc) per crossing. */
    const char **argv = calloc(2 + 4 * (n ? n : 1), sizeof(*argv));
    char(*ats)[24] = calloc(n ? n : 1, sizeof(*ats));
    char **docs = calloc(n ? n : 1, sizeof(*docs));
    char count[16];
    int argc = 2, nsent = 0;
    if (!argv || !ats || !docs) {
        free(argv);
        free(ats);
        free(docs);
        json_decref(c->results);
        json_decref(c->sent);
        ev_req_free(e);
        free(c);
        return;
    }
    argv[0] = s->claims.sub;
    argv[1] = count;
    fit_rules rules = fit_rules_now(s->srv);
    size_t i;
    json_t *item;
    json_array_foreach(laps, i, item)
    {
        fit_field_error fe;
        const char *cid = json_string_value(json_object_get(item, "client_id"));
        const char *bib = json_string_value(json_object_get(item, "bib"));
        const char *at = json_string_value(json_object_get(item, "at"));
        int64_t at_ms;
        int off;
        const char *k;
        json_t *v;
        int unknown = 0;
        json_object_foreach(item, k, v)
        {
            unknown |= strcmp(k, "client_id") && strcmp(k, "bib") && strcmp(k, "at");
        }
        if (!json_is_object(item) || unknown)
            fit_field_error_set(&fe, FIT_EUNKNOWN_FIELD, "", "a crossing is {client_id, bib, at}");
        else if (!cid || !fit_id_valid(cid, FIT_CLIENT_ID_MAX))
            fit_field_error_set(&fe, cid ? FIT_EINVALID_VALUE : FIT_EMISSING_FIELD, "client_id",
                                "client_id must be 1..64 characters of [A-Za-z0-9._:@-]");
        else if (!bib || !bib_valid(bib))
            fit_field_error_set(&fe, bib ? FIT_EINVALID_VALUE : FIT_EMISSING_FIELD, "bib",
                                "bib must be 1..16 characters of [A-Za-z0-9._@-]");
        else if (!at || fit_time_parse(at, &at_ms, &off))
            fit_field_error_set(&fe, at ? FIT_EINVALID_VALUE : FIT_EMISSING_FIELD, "at",
                                "at must be an RFC 3339 time with a UTC offset");
        else if (at_ms > rules.now_ms + rules.future_tolerance_ms)
            fit_field_error_set(&fe, FIT_EFUTURE_TIME, "at", "the crossing is in the future");
        else {
            json_array_append_new(c->results, json_pack("{s:I, s:s, s:s}", "index", (json_int_t)i,
                                                        "client_id", cid, "bib", bib));
            json_array_append_new(c->sent, json_integer((json_int_t)i));
            snprintf(ats[nsent], sizeof(ats[nsent]), "%lld", (long long)at_ms);
            docs[nsent] = json_dumps(item, JSON_COMPACT | JSON_SORT_KEYS);
            argv[argc++] = cid;
            argv[argc++] = bib;
            argv[argc++] = ats[nsent];
            argv[argc++] = docs[nsent] ? docs[nsent] : "";
            nsent++;
            continue;
        }
        json_array_append_new(c->results, fit_item_error(i, "laps", &fe));
    }
    snprintf(count, sizeof(count), "%d", nsent);
    int rc = fit_ops_event_call(&s->srv->ops, "fit_lap_record", 0, event, argc, argv, laps_done, c);
    for (int k = 0; k < nsent; k++)
        free(docs[k]);
    free(docs);
    free(ats);
    free(argv);
    if (rc) {
        fit_reply_op_error(s, req->id, rc, "");
        json_decref(c->results);
        json_decref(c->sent);
        ev_req_free(e);
        free(c);
    }
}

static void lap_correct(fit_session *s, fit_request *req, int void_it)
{
    const char *event = event_field(s, req, 0);
    const char *cid, *reason;
    if (!event || string_field(s, req, req->root, "client_id", 64, &cid) ||
        string_field(s, req, req->root, "reason", 200, &reason))
        return;
    ev_req *e = ev_req_new(s, req, event);
    if (!e)
        return;
    json_object_set_new(e->extra, "client_id", json_string(cid));
    const char *argv[] = {cid, reason, s->claims.sub, void_it ? "1" : ""};
    ev_call(s, req, e, "fit_lap_correct", 0, 4, argv, status_done);
}

void fit_h_lap_void(fit_session *s, fit_request *req)
{
    lap_correct(s, req, 1);
}

void fit_h_lap_restore(fit_session *s, fit_request *req)
{
    lap_correct(s, req, 0);
}

void fit_h_award_assign(fit_session *s, fit_request *req)
{
    const char *event = event_field(s, req, 0);
    const char *bib, *award;
    if (!event || string_field(s, req, req->root, "bib", BIB_MAX, &bib) ||
        string_field(s, req, req->root, "award", NAME_MAX_CHARS, &award))
        return;
    ev_req *e = ev_req_new(s, req, event);
    if (!e)
        return;
    json_object_set_new(e->extra, "bib", json_string(bib));
    json_object_set_new(e->extra, "award", json_string(award));
    const char *argv[] = {bib, award, s->claims.sub};
    ev_call(s, req, e, "fit_award_assign", 0, 3, argv, status_done);
}

/* ---- reads: audit, laps of a team, results ---- */

static void list_done(redisReply *r, const char *errstr, void *data)
{
    ev_req *e = data;
    fit_session *s = e->p->s;
    const char *re = fit_pending_re(e->p);
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        fit_reply_op_error(s, re, r ? FIT_EINTERNAL : FIT_EUNAVAILABLE, "");
    } else {
        json_t *list = json_array();
        int laps = strcmp(e->type, "event.laps") == 0;
        for (size_t i = 0; i < r->elements; i += laps ? 4 : 1) {
            if (!laps) {
                json_t *entry = json_loads(r->element[i]->str ? r->element[i]->str : "", 0, NULL);
                if (entry) {
                    json_t *t = json_object_get(entry, "t");
                    char ts[40];
                    fit_time_format((int64_t)json_integer_value(t), 0, ts, sizeof(ts));
                    json_object_set_new(entry, "at", json_string(ts));
                    json_object_del(entry, "t");
                    json_array_append_new(list, entry);
                }
            } else if (i + 3 < r->elements) {
                char ts[40];
                fit_time_format(
                    strtoll(r->element[i + 1]->str ? r->element[i + 1]->str : "0", NULL, 10), 0, ts,
                    sizeof(ts));
                json_array_append_new(
                    list,
                    json_pack("{s:s, s:s, s:s, s:s}", "client_id",
                              r->element[i]->str ? r->element[i]->str : "", "at", ts, "status",
                              r->element[i + 2]->str ? r->element[i + 2]->str : "", "marshal",
                              r->element[i + 3]->str ? r->element[i + 3]->str : ""));
            }
        }
        json_t *reply = fit_reply_new(e->type, re);
        json_object_set_new(reply, "event", json_string(e->event));
        json_object_update(reply, e->extra);
        json_object_set_new(reply, laps ? "laps" : "entries", list);
        fit_session_send(s, reply);
        json_decref(reply);
    }
    ev_req_free(e);
}

void fit_h_event_audit(fit_session *s, fit_request *req)
{
    const char *event = event_field(s, req, 0);
    ev_req *e = event ? ev_req_new(s, req, event) : NULL;
    if (e)
        ev_call(s, req, e, "fit_event_audit", 1, 0, NULL, list_done);
}

void fit_h_event_laps(fit_session *s, fit_request *req)
{
    const char *event = event_field(s, req, 0);
    const char *bib;
    if (!event || string_field(s, req, req->root, "bib", BIB_MAX, &bib))
        return;
    ev_req *e = ev_req_new(s, req, event);
    if (!e)
        return;
    json_object_set_new(e->extra, "bib", json_string(bib));
    const char *argv[] = {bib};
    ev_call(s, req, e, "fit_event_laps", 1, 1, argv, list_done);
}

/* ---- results ---- */

typedef struct {
    const char *bib, *name, *category, *awards;
    int64_t laps, last_ms;
} team_row;

static int by_standing(const void *a, const void *b)
{
    const team_row *x = a, *y = b;
    if (x->laps != y->laps)
        return x->laps > y->laps ? -1 : 1;
    /* Earlier last lap first; a team without laps has none to compare. */
    int64_t lx = x->last_ms < 0 ? INT64_MAX : x->last_ms,
            ly = y->last_ms < 0 ? INT64_MAX : y->last_ms;
    if (lx != ly)
        return lx < ly ? -1 : 1;
    return strcmp(x->bib, y->bib);
}

static const char *flat_get(const redisReply *h, const char *field)
{
    for (size_t i = 0; h && h->type == REDIS_REPLY_ARRAY && i + 1 < h->elements; i += 2)
        if (h->element[i]->str && strcmp(h->element[i]->str, field) == 0)
            return h->element[i + 1]->str;
    return NULL;
}

static json_t *row_json(const team_row *t, int64_t rank, double lap_m, int64_t start_ms)
{
    json_t *awards = json_loads(t->awards ? t->awards : "[]", 0, NULL);
    json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:I, s:f, s:o}", "rank", (json_int_t)rank, "bib",
                          t->bib, "name", t->name ? t->name : "", "category",
                          t->category ? t->category : "", "laps", (json_int_t)t->laps, "distance_m",
                          (double)t->laps * lap_m, "awards", awards ? awards : json_array());
    if (t->last_ms >= 0) {
        char ts[40];
        fit_time_format(t->last_ms, 0, ts, sizeof(ts));
        json_object_set_new(o, "last_lap_at", json_string(ts));
        json_object_set_new(o, "last_lap_elapsed_s",
                            json_integer((json_int_t)((t->last_ms - start_ms) / 1000)));
    } else {
        json_object_set_new(o, "last_lap_at", json_null());
        json_object_set_new(o, "last_lap_elapsed_s", json_null());
    }
    return o;
}

/*
 * Final standings from fit_event_results' reply: per category (in the
 * event's order) and overall, ranked by laps then the earlier last lap.
 * Returns a new reference, or NULL if the event does not exist.
 */
json_t *fit_event_results_json(const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->elements == 0)
        return NULL;
    const redisReply *m = r->element[0], *t = r->element[1];
    json_t *def = json_loads(flat_get(m, "doc") ? flat_get(m, "doc") : "{}", 0, NULL);
    double lap_m = flat_get(m, "lap_m") ? strtod(flat_get(m, "lap_m"), NULL) : 0;
    int64_t start = flat_get(m, "start_ms") ? strtoll(flat_get(m, "start_ms"), NULL, 10) : -1;
    size_t n = t->elements / 6;
    team_row *rows = calloc(n ? n : 1, sizeof(*rows));
    if (!rows || !def) {
        free(rows);
        json_decref(def);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        redisReply *const *e = t->element + 6 * i;
        rows[i] = (team_row){e[0]->str,
                             e[1]->str,
                             e[2]->str,
                             e[5]->str,
                             e[3]->str ? strtoll(e[3]->str, NULL, 10) : 0,
                             e[4]->str ? strtoll(e[4]->str, NULL, 10) : -1};
    }
    qsort(rows, n, sizeof(*rows), by_standing);
    json_t *overall = json_array(), *cats = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(overall, row_json(&rows[i], (int64_t)i + 1, lap_m, start));
    size_t ci;
    json_t *c;
    json_array_foreach(json_object_get(def, "categories"), ci, c)
    {
        const char *id = json_string_value(json_object_get(c, "id"));
        json_t *standings = json_array();
        int64_t rank = 0;
        for (size_t i = 0; id && i < n; i++)
            if (rows[i].category && strcmp(rows[i].category, id) == 0)
                json_array_append_new(standings, row_json(&rows[i], ++rank, lap_m, start));
        json_t *cat = json_deep_copy(c);
        json_object_set_new(cat, "standings", standings);
        json_array_append_new(cats, cat);
    }
    char started[40] = "";
    if (start >= 0)
        fit_time_format(start, 0, started, sizeof(started));
    json_t *out = json_pack("{s:O, s:O, s:s, s:s?, s:o, s:o}", "event", json_object_get(def, "id"),
                            "name", json_object_get(def, "name"), "state",
                            flat_get(m, "state") ? flat_get(m, "state") : "", "started_at",
                            start >= 0 ? started : NULL, "categories", cats, "overall", overall);
    json_object_set(out, "lap_m", json_object_get(def, "lap_m"));
    json_object_set(out, "duration_s", json_object_get(def, "duration_s"));
    free(rows);
    json_decref(def);
    return out;
}

static void results_done(redisReply *r, const char *errstr, void *data)
{
    ev_req *e = data;
    fit_session *s = e->p->s;
    const char *re = fit_pending_re(e->p);
    json_t *res = r ? fit_event_results_json(r) : NULL;
    if (!r)
        fit_reply_unavailable(s, re);
    else if (!res)
        fit_session_send_error(s, re, FIT_ENOT_FOUND, "event", "no such event");
    else {
        json_t *reply = fit_reply_new("event.results", re);
        json_object_set_new(reply, "results", res);
        fit_session_send(s, reply);
        json_decref(reply);
    }
    ev_req_free(e);
}

void fit_h_event_results(fit_session *s, fit_request *req)
{
    const char *event = event_field(s, req, 0);
    ev_req *e = event ? ev_req_new(s, req, event) : NULL;
    if (e)
        ev_call(s, req, e, "fit_event_results", 1, 0, NULL, results_done);
}

static void event_get_done(redisReply *r, const char *errstr, void *data)
{
    ev_req *e = data;
    fit_session *s = e->p->s;
    const char *re = fit_pending_re(e->p);
    const char *doc = r && r->type == REDIS_REPLY_ARRAY ? flat_get(r, "doc") : NULL;
    if (!r) {
        fit_reply_unavailable(s, re);
    } else if (!doc) {
        fit_session_send_error(s, re, FIT_ENOT_FOUND, "event", "no such event");
    } else {
        json_t *reply = fit_reply_new("event.get", re);
        json_t *def = json_loads(doc, 0, NULL);
        json_object_set_new(reply, "event", def ? def : json_object());
        json_object_set_new(reply, "state",
                            json_string(flat_get(r, "state") ? flat_get(r, "state") : ""));
        const char *start = flat_get(r, "start_ms");
        if (start) {
            char ts[40];
            fit_time_format(strtoll(start, NULL, 10), 0, ts, sizeof(ts));
            json_object_set_new(reply, "started_at", json_string(ts));
        }
        fit_session_send(s, reply);
        json_decref(reply);
    }
    ev_req_free(e);
}

void fit_h_event_get(fit_session *s, fit_request *req)
{
    const char *event = event_field(s, req, 1);
    ev_req *e = event ? ev_req_new(s, req, event) : NULL;
    if (e)
        ev_call(s, req, e, "fit_event_get", 1, 0, NULL, event_get_done);
}

/*
 * marshal.token: a host mints a token that may only record laps for this
 * event. Its subject is "marshal:<label>" (FIT_MARSHAL_PREFIX, a namespace
 * member tokens are refused at hello), so a label equal to a member's id can
 * never be used to read that member's data; hence labels of at most
 * 64 - 8 = 56 characters.
 */
void fit_h_marshal_token(fit_session *s, fit_request *req)
{
    const char *event = event_field(s, req, 0);
    const char *marshal = event ? fit_get_id_field(s, req, "marshal", 56) : NULL;
    int64_t ttl = 12 * 3600;
    int present;
    if (!marshal || fit_get_int_field(s, req, "ttl_s", 60, 7 * 86400, &ttl, &present))
        return;
    char sub[72], *tok = NULL;
    snprintf(sub, sizeof(sub), FIT_MARSHAL_PREFIX "%s", marshal);
    if (fit_token_mint(sub, "marshal", fit_now_ms() / 1000 + ttl, event, s->srv->secret,
                       strlen(s->srv->secret), &tok) != 0) {
        fit_session_send_error(s, req->id, FIT_EINVALID_VALUE, "marshal", NULL);
        return;
    }
    json_t *r = fit_reply_new("marshal.token", req->id);
    json_object_set_new(r, "event", json_string(event));
    json_object_set_new(r, "marshal", json_string(marshal));
    json_object_set_new(r, "token", json_string(tok));
    json_object_set_new(r, "expires_in_s", json_integer(ttl));
    fit_session_send(s, r);
    json_decref(r);
    free(tok);
}

/* ---- virtual challenges ---- */

/*
 * event.create with kind "virtual": a window of local dates [from, to], a
 * metric (equivalent_min = moderate + 2 x vigorous, WHO 2020; distance_m of
 * the given activity_types; active_days with any MVPA), a goal, optional
 * teams and a per-member cap on what one member adds to a team.
 */
static void create_virtual(fit_session *s, fit_request *req, const char *event, const char *name)
{
    json_t *root = req->root;
    fit_date from, to;
    const char *f = json_string_value(json_object_get(root, "from"));
    const char *t = json_string_value(json_object_get(root, "to"));
    if (!f || fit_date_parse(f, &from)) {
        fit_session_send_error(s, req->id, f ? FIT_EINVALID_VALUE : FIT_EMISSING_FIELD, "from",
                               "from must be a local date YYYY-MM-DD");
        return;
    }
    if (!t || fit_date_parse(t, &to) || fit_days_from_civil(to) < fit_days_from_civil(from) ||
        fit_days_from_civil(to) - fit_days_from_civil(from) > 366) {
        fit_session_send_error(s, req->id, t ? FIT_EINVALID_VALUE : FIT_EMISSING_FIELD, "to",
                               "to must be a local date YYYY-MM-DD, not before from, within a "
                               "year of it");
        return;
    }
    const char *metric = json_string_value(json_object_get(root, "metric"));
    if (!metric || (strcmp(metric, "equivalent_min") && strcmp(metric, "distance_m") &&
                    strcmp(metric, "active_days"))) {
        fit_session_send_error(s, req->id, metric ? FIT_EINVALID_VALUE : FIT_EMISSING_FIELD,
                               "metric",
                               "metric must be equivalent_min, distance_m or active_days");
        return;
    }
    json_t *goal = json_object_get(root, "goal");
    if (!json_is_number(goal) || json_number_value(goal) <= 0 || json_number_value(goal) > 1e9) {
        fit_session_send_error(s, req->id, goal ? FIT_EINVALID_VALUE : FIT_EMISSING_FIELD, "goal",
                               "goal must be a number > 0 in the metric's unit");
        return;
    }
    json_t *types = json_object_get(root, "activity_types");
    size_t i;
    json_t *v;
    if (strcmp(metric, "distance_m") == 0) {
        int ok = json_is_array(types) && json_array_size(types) > 0 && json_array_size(types) <= 50;
        json_array_foreach(types, i, v)
        {
            ok = ok && json_is_string(v) && fit_id_valid(json_string_value(v), 32);
        }
        if (!ok) {
            fit_session_send_error(s, req->id, types ? FIT_EINVALID_VALUE : FIT_EMISSING_FIELD,
                                   "activity_types",
                                   "distance_m counts the activity types listed here, e.g. "
                                   "[\"running\", \"walking\"]");
            return;
        }
    } else if (types) {
        fit_session_send_error(s, req->id, FIT_EINVALID_VALUE, "activity_types",
                               "activity_types goes with metric distance_m only");
        return;
    }
    json_t *teams = json_object_get(root, "teams");
    json_t *team_ids = json_array();
    if (teams) {
        int ok = json_is_array(teams) && json_array_size(teams) <= 1000;
        json_array_foreach(teams, i, v)
        {
            const char *id = json_string_value(json_object_get(v, "id"));
            const char *tn = json_string_value(json_object_get(v, "name"));
            ok = ok && id && fit_slug_valid(id) && tn && *tn && strlen(tn) <= 200;
            if (id)
                json_array_append_new(team_ids, json_string(id));
        }
        if (!ok) {
            fit_session_send_error(s, req->id, FIT_EINVALID_VALUE, "teams",
                                   "teams must be a list of {id (slug), name}");
            json_decref(team_ids);
            return;
        }
    }
    json_t *cap = json_object_get(root, "team_cap");
    if (cap && (!json_is_number(cap) || json_number_value(cap) < 0)) {
        fit_session_send_error(s, req->id, FIT_EINVALID_VALUE, "team_cap",
                               "team_cap must be a number >= 0 (0 = no cap)");
        json_decref(team_ids);
        return;
    }
    json_t *pub = json_object_get(root, "public");
    json_t *doc = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:O, s:b}", "id", event, "name", name,
                            "kind", "virtual", "from", f, "to", t, "metric", metric, "goal", goal,
                            "public", pub ? json_is_true(pub) : 1);
    if (types)
        json_object_set(doc, "activity_types", types);
    if (teams)
        json_object_set(doc, "teams", teams);
    json_object_set_new(doc, "team_cap", json_real(cap ? json_number_value(cap) : 0));
    char *doc_s = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    char *ids_s = json_dumps(team_ids, JSON_COMPACT);
    ev_req *e = doc_s && ids_s ? ev_req_new(s, req, event) : NULL;
    if (e) {
        json_object_set(e->extra, "definition", doc);
        const char *argv[] = {doc_s, "virtual",
                              "0",   "0",
                              "0",   json_is_true(json_object_get(doc, "public")) ? "1" : "0",
                              ids_s, s->claims.sub};
        ev_call(s, req, e, "fit_event_create", 0, 8, argv, status_done);
    }
    free(doc_s);
    free(ids_s);
    json_decref(doc);
    json_decref(team_ids);
}

/* challenge.join {event, team?}: a member joins; what they logged in the window counts at once. */
typedef struct {
    fit_pending *p;
    char event[65];
    char team[41];
} join_ctx;

static void join_free(join_ctx *j)
{
    fit_pending_free(j->p);
    free(j);
}

static void join_done(redisReply *r, const char *errstr, void *data)
{
    join_ctx *j = data;
    fit_session *s = j->p->s;
    const char *re = fit_pending_re(j->p);
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 4) {
        fit_reply_op_error(s, re, r ? FIT_EINTERNAL : FIT_EUNAVAILABLE, "");
    } else {
        json_t *prog = json_loads(r->element[1]->str ? r->element[1]->str : "{}", 0, NULL);
        json_t *reply = fit_reply_new("challenge.join", re);
        json_object_set_new(reply, "event", json_string(j->event));
        json_object_set_new(reply, "status", json_string(r->element[0]->str));
        json_object_set(reply, "progress", json_object_get(prog, "p"));
        /* The team stored at the first join: a second join changes nothing. */
        const char *team = r->element[3]->str;
        if (team && *team)
            json_object_set_new(reply, "team", json_string(team));
        const char *ach = r->element[2]->str;
        if (ach && *ach) {
            char ts[40];
            fit_time_format(strtoll(ach, NULL, 10), 0, ts, sizeof(ts));
            json_object_set_new(reply, "achieved_at", json_string(ts));
        }
        fit_session_send(s, reply);
        json_decref(reply);
        json_decref(prog);
    }
    join_free(j);
}

/* The challenge's definition, as the member's shard keeps it (workers/fitsync.lua, "virtual"). */
static char *member_copy(const json_t *def, const char *team, int tz)
{
    fit_date from, to;
    fit_date_parse(json_string_value(json_object_get(def, "from")), &from);
    fit_date_parse(json_string_value(json_object_get(def, "to")), &to);
    /* The window in UTC ms: local midnight of "from" to the end of "to" (programme zone). */
    json_t *copy = json_pack(
        "{s:O, s:O, s:I, s:I, s:O, s:O, s:O, s:s, s:O}", "from", json_object_get(def, "from"), "to",
        json_object_get(def, "to"), "fm", (json_int_t)fit_local_midnight_ms(from, tz), "tm",
        (json_int_t)(fit_local_midnight_ms(to, tz) + FIT_MS_PER_DAY - 1), "metric",
        json_object_get(def, "metric"), "goal", json_object_get(def, "goal"), "cap",
        json_object_get(def, "team_cap"), "team", team, "name", json_object_get(def, "name"));
    if (!copy)
        return NULL;
    if (json_object_get(def, "activity_types"))
        json_object_set(copy, "types", json_object_get(def, "activity_types"));
    char *s = json_dumps(copy, JSON_COMPACT);
    json_decref(copy);
    return s;
}

static int team_listed(const json_t *def, const char *team)
{
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(def, "teams"), i, t)
    {
        const char *id = json_string_value(json_object_get(t, "id"));
        if (id && strcmp(id, team) == 0)
            return 1;
    }
    return 0;
}

static void join_event(redisReply *r, const char *errstr, void *data)
{
    join_ctx *j = data;
    fit_session *s = j->p->s;
    const char *re = fit_pending_re(j->p);
    const char *doc = r && r->type == REDIS_REPLY_ARRAY ? flat_get(r, "doc") : NULL;
    json_t *def = doc ? json_loads(doc, 0, NULL) : NULL;
    const char *kind = json_string_value(json_object_get(def, "kind"));
    if (!r)
        fit_reply_unavailable(s, re);
    else if (!def)
        fit_session_send_error(s, re, FIT_ENOT_FOUND, "event", "no such event");
    else if (!kind || strcmp(kind, "virtual") != 0)
        fit_session_send_error(s, re, FIT_EINVALID_VALUE, "event",
                               "only virtual challenges can be joined");
    else if (j->team[0] && !team_listed(def, j->team))
        fit_session_send_error(s, re, FIT_EINVALID_VALUE, "team",
                               "team is not one of the challenge's teams");
    else {
        char *copy = member_copy(def, j->team, s->srv->cfg->timezone_offset_min);
        char key[FIT_KEY_MAX];
        fit_user_key(key, s->srv->ops.shards, j->p->user, "log");
        const char *argv[] = {"FCALL",  "fit_challenge_join", "1", key,
                              j->event, copy ? copy : "{}"};
        int rc = fit_redis_command(&s->srv->ops.redis, FIT_REDIS_IDEMPOTENT | FIT_REDIS_DURABLE,
                                   join_done, j, 6, argv, NULL);
        free(copy);
        json_decref(def);
        if (rc == 0)
            return;
        fit_reply_op_error(s, re, rc, "");
        join_free(j);
        return;
    }
    json_decref(def);
    join_free(j);
}

void fit_h_challenge_join(fit_session *s, fit_request *req)
{
    const char *event = fit_get_id_field(s, req, "event", 64);
    if (!event)
        return;
    json_t *team = json_object_get(req->root, "team");
    if (team && (!json_is_string(team) || !fit_slug_valid(json_string_value(team)))) {
        fit_session_send_error(s, req->id, FIT_EINVALID_VALUE, "team", "team must be a team id");
        return;
    }
    join_ctx *j = calloc(1, sizeof(*j));
    fit_pending *p = j ? fit_pending_new(s, req) : NULL;
    if (!p) {
        free(j);
        return;
    }
    j->p = p;
    snprintf(j->event, sizeof(j->event), "%s", event);
    snprintf(j->team, sizeof(j->team), "%s", team ? json_string_value(team) : "");
    if (fit_ops_event_call(&s->srv->ops, "fit_event_get", 1, event, 0, NULL, join_event, j) != 0) {
        fit_reply_unavailable(s, req->id);
        join_free(j);
    }
}
