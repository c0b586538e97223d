/*
 * fit_h_activity: the messages that change a member's activity data:
 * activity.upload and summary.upload (batches), activity.update,
 * activity.delete and summary.delete.
 *
 * Batches validate item by item: a bad item gets its own error in "results"
 * and the others go on; each good item is one Function call. Every applied
 * change is pushed to the user's other devices ("change", with its cursor)
 * and the weeks it touched to all of them ("progress").
 */
#include "fit_handlers.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* batches                                                             */

typedef struct {
    fit_pending *p;
    char type[32];      /* the request's type, echoed in the reply */
    const char *prefix; /* "activities" / "summaries" (static) */
    json_t *results;
    size_t pending;
    int accepted, rejected;
    char (*weeks)[FIT_WEEK_LEN];
    size_t nweeks, capweeks;
} batch;

typedef struct {
    batch *b;
    size_t index;
    json_t *ok;   /* the success entry, completed when Redis answers */
    json_t *item; /* the change's item for the push */
    char id[FIT_DATE_LEN + FIT_SOURCE_MAX + 2];
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
    fit_pending *p = b->p;
    json_t *reply = fit_reply_new(b->type, fit_pending_re(p));
    json_object_set_new(reply, "results", b->results);
    json_object_set_new(reply, "accepted", json_integer(b->accepted));
    json_object_set_new(reply, "rejected", json_integer(b->rejected));
    fit_session_send(p->s, reply);
    json_decref(reply);
    const char **weeks = malloc((b->nweeks ? b->nweeks : 1) * sizeof(*weeks));
    if (weeks) {
        for (size_t i = 0; i < b->nweeks; i++)
            weeks[i] = b->weeks[i];
        fit_push_progress(p->s->srv, p->user, weeks, b->nweeks);
        free(weeks);
    }
    fit_pending_free(p);
    free(b->weeks);
    free(b);
}

static void batch_item_error(batch *b, size_t index, const fit_field_error *err)
{
    fit_metrics_error(&b->p->s->srv->metrics, err->code);
    json_array_set_new(b->results, index, fit_item_error(index, b->prefix, err));
    b->rejected++;
}

static void item_done(const fit_change *ch, void *data)
{
    item_ctx *c = data;
    batch *b = c->b;
    int is_activity = strcmp(b->prefix, "activities") == 0;
    if (ch->err) {
        fit_field_error fe;
        if (ch->err == FIT_ECONFLICT)
            fit_field_error_set(&fe, ch->err, "client_id",
                                "client_id already holds a different activity; change it with "
                                "activity.update, or use a new client_id");
        else
            fit_field_error_set(&fe, ch->err, "", NULL);
        batch_item_error(b, c->index, &fe);
        json_decref(c->ok);
    } else {
        json_object_set_new(c->ok, "status", json_string(ch->status));
        if (is_activity)
            json_object_set_new(c->ok, "rev", json_integer(ch->rev));
        json_t *wk = json_array();
        for (int i = 0; i < ch->nweeks; i++) {
            json_array_append_new(wk, json_string(ch->weeks[i]));
            batch_add_week(b, ch->weeks[i]);
        }
        json_object_set_new(c->ok, "weeks", wk);
        json_array_set_new(b->results, c->index, c->ok);
        b->accepted++;
        if (ch->cursor) {
            if (is_activity)
                json_object_set_new(c->item, "rev", json_integer(ch->rev));
            /* Summaries have no revisions; the change log says rev 1, so does the push. */
            fit_push_change(b->p->s->srv, b->p->user, b->p->s, ch->cursor,
                            is_activity ? "activity" : "summary", "upsert", c->id,
                            is_activity ? ch->rev : 1, c->item);
        }
    }
    json_decref(c->item);
    free(c);
    if (--b->pending == 0)
        batch_finish(b);
}

/* Common checks of a batch request; returns the array or NULL after replying with an error. */
static json_t *batch_items(fit_session *s, fit_request *req, const char *field)
{
    json_t *items = json_object_get(req->root, field);
    char msg[96];
    if (!items || json_is_null(items)) { /* null counts as absent (PROTOCOL.md, Conventions) */
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

/*
 * Validates one item and, if it is good, sends its Function call with c as
 * the callback's data (filling c->ok and c->item first). Returns 0 when sent;
 * otherwise a negative code with *fe filled.
 */
typedef int item_submit_fn(fit_server *srv, const fit_pending *p, const json_t *item,
                           const fit_rules *rules, item_ctx *c, fit_field_error *fe);

static int submit_activity(fit_server *srv, const fit_pending *p, const json_t *item,
                           const fit_rules *rules, item_ctx *c, fit_field_error *fe)
{
    fit_activity a;
    int rc = fit_activity_parse(item, rules, &a, fe);
    if (rc)
        return rc;
    c->ok = json_pack("{s:I, s:s, s:s}", "index", (json_int_t)c->index, "client_id", a.client_id,
                      "intensity", fit_intensity_name(a.intensity));
    c->item = json_deep_copy(a.doc);
    snprintf(c->id, sizeof(c->id), "%s", a.client_id);
    rc = fit_ops_activity_put(&srv->ops, p->user, p->device, &a, item_done, c);
    fit_activity_clear(&a);
    return rc ? fit_field_error_set(fe, rc, "", NULL) : 0;
}

static int submit_summary(fit_server *srv, const fit_pending *p, const json_t *item,
                          const fit_rules *rules, item_ctx *c, fit_field_error *fe)
{
    fit_summary sm;
    int rc = fit_summary_parse(item, rules, &sm, fe);
    if (rc)
        return rc;
    c->ok = json_pack("{s:I, s:s, s:s}", "index", (json_int_t)c->index, "date", sm.date_str,
                      "source", sm.source);
    c->item = json_deep_copy(sm.doc);
    snprintf(c->id, sizeof(c->id), "%s|%s", sm.date_str, sm.source);
    rc = fit_ops_summary_put(&srv->ops, p->user, p->device, &sm, item_done, c);
    fit_summary_clear(&sm);
    return rc ? fit_field_error_set(fe, rc, "", NULL) : 0;
}

/* The shared body of the upload commands: one Function call per good item. */
static void run_batch(fit_session *s, fit_request *req, const char *field, item_submit_fn *submit)
{
    json_t *items = batch_items(s, req, field);
    if (!items)
        return;
    fit_server *srv = s->srv;
    batch *b = calloc(1, sizeof(*b));
    fit_pending *p = b ? fit_pending_new(s, req) : NULL;
    if (!p) {
        free(b);
        return;
    }
    b->p = p;
    snprintf(b->type, sizeof(b->type), "%s", req->type);
    b->prefix = field;
    b->results = json_array();
    for (size_t i = 0; i < json_array_size(items); i++)
        json_array_append_new(b->results, json_null());
    b->pending = 1; /* held here until every item is sent */
    fit_rules rules = fit_rules_now(srv);
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
        if (submit(srv, p, item, &rules, c, &fe) != 0) {
            b->pending--;
            json_decref(c->ok);
            json_decref(c->item);
            free(c);
            batch_item_error(b, i, &fe);
        }
    }
    if (--b->pending == 0)
        batch_finish(b);
}

void fit_h_activity_upload(fit_session *s, fit_request *req)
{
    run_batch(s, req, "activities", submit_activity);
}

void fit_h_summary_upload(fit_session *s, fit_request *req)
{
    run_batch(s, req, "summaries", submit_summary);
}

/* ------------------------------------------------------------------ */
/* activity.update                                                     */

/* Fields an update may change; null removes an optional one. */
static const char *const update_fields[] = {"type",      "start",   "duration_s", "end",
                                            "intensity", "met",     "distance_m", "steps",
                                            "strength",  "balance", NULL};

typedef struct {
    fit_pending *p;
    int64_t base_rev;
    int rereads;     /* the stored item was older than base_rev: read again (see update_current) */
    json_t *changes; /* the changed fields, as sent */
    json_t *merged;  /* the item after the change (set once validated) */
    char client_id[FIT_CLIENT_ID_MAX + 1];
} update_ctx;

static void update_free(update_ctx *u)
{
    json_decref(u->changes);
    json_decref(u->merged);
    fit_pending_free(u->p);
    free(u);
}

static void update_done(const fit_change *ch, void *data)
{
    update_ctx *u = data;
    fit_session *s = u->p->s;
    const char *re = fit_pending_re(u->p);
    if (ch->err == FIT_ECONFLICT) {
        fit_reply_conflict(s, re, u->client_id, ch);
    } else if (ch->err) {
        fit_reply_op_error(s, re, ch->err, "client_id");
    } else {
        json_object_set_new(u->merged, "rev", json_integer(ch->rev));
        json_t *r = fit_reply_new("activity.update", re);
        json_object_set_new(r, "client_id", json_string(u->client_id));
        json_object_set_new(r, "rev", json_integer(ch->rev));
        json_object_set_new(r, "status", json_string(ch->status));
        json_object_set(r, "item", u->merged);
        if (ch->cursor)
            json_object_set_new(r, "cursor", json_string(ch->cursor));
        fit_session_send(s, r);
        json_decref(r);
        if (ch->cursor) {
            fit_push_change(s->srv, u->p->user, s, ch->cursor, "activity", "upsert", u->client_id,
                            ch->rev, u->merged);
            fit_push_progress(s->srv, u->p->user, ch->weeks, (size_t)ch->nweeks);
        }
    }
    update_free(u);
}

/* The stored item arrived: merge the changes, validate, then compare-and-set on base_rev. */
static void update_current(int err, int64_t rev, const char *doc, int deleted, void *data)
{
    update_ctx *u = data;
    fit_session *s = u->p->s;
    const char *re = fit_pending_re(u->p);
    if (err) {
        fit_reply_op_error(s, re, err, "");
        update_free(u);
        return;
    }
    if (rev == 0) {
        fit_session_send_error(s, re, FIT_ENOT_FOUND, "client_id",
                               "no activity with this client_id");
        update_free(u);
        return;
    }
    fit_change cur = {.err = FIT_ECONFLICT,
                      .rev = rev,
                      .current_doc = deleted ? "" : doc,
                      .current_deleted = deleted};
    if (rev < u->base_rev && u->rereads++ == 0) {
        /*
         * The edit this one was based on may be just ahead of us on the same
         * connection (sent back to back): its compare-and-set was queued after
         * our read. One more read, queued after it, sees it if it exists.
         */
        if (fit_ops_activity_get(&s->srv->ops, u->p->user, u->client_id, update_current, u) == 0)
            return;
    }
    /*
     * The changes are merged onto the stored item only when it is the rev they
     * were made on (or the next, to recognise a re-sent edit): merging an old
     * edit onto a newer item would overwrite a newer change, or produce an item
     * no one wrote.
     */
    if (deleted || rev < u->base_rev || rev > u->base_rev + 1) {
        fit_reply_conflict(s, re, u->client_id, &cur);
        update_free(u);
        return;
    }
    u->merged = json_loads(doc, 0, NULL);
    if (!u->merged) {
        fit_session_send_error(s, re, FIT_EINTERNAL, "", NULL);
        update_free(u);
        return;
    }
    const char *key;
    json_t *v;
    json_object_foreach(u->changes, key, v)
    {
        if (json_is_null(v))
            json_object_del(u->merged, key);
        else
            json_object_set(u->merged, key, v);
        /* A session has either a duration or an end: the one sent replaces the other. */
        if (strcmp(key, "end") == 0 && !json_is_null(v))
            json_object_del(u->merged, "duration_s");
        if (strcmp(key, "duration_s") == 0 && !json_is_null(v))
            json_object_del(u->merged, "end");
    }
    fit_activity a;
    fit_field_error fe;
    fit_rules rules = fit_rules_now(s->srv);
    if (fit_activity_parse(u->merged, &rules, &a, &fe) != 0) {
        if (rev == u->base_rev)
            fit_session_send_error(s, re, fe.code, fe.field, fe.message);
        else
            fit_reply_conflict(s, re, u->client_id, &cur); /* an old edit on a newer item */
        update_free(u);
        return;
    }
    int rc = fit_ops_activity_update(&s->srv->ops, u->p->user, u->p->device, u->base_rev, &a,
                                     update_done, u);
    fit_activity_clear(&a);
    if (rc) {
        fit_reply_op_error(s, re, rc, "");
        update_free(u);
    }
}

void fit_h_activity_update(fit_session *s, fit_request *req)
{
    const char *cid = fit_get_id_field(s, req, "client_id", FIT_CLIENT_ID_MAX);
    if (!cid)
        return;
    int64_t base_rev;
    int present;
    if (fit_get_int_field(s, req, "base_rev", 1, INT32_MAX, &base_rev, &present) != 0)
        return;
    if (!present) {
        fit_session_send_error(s, req->id, FIT_EMISSING_FIELD, "base_rev",
                               "base_rev (the rev the change was made on) is required");
        return;
    }
    json_t *changes = json_object();
    const char *key;
    json_t *v;
    json_object_foreach(req->root, key, v)
    {
        if (!strcmp(key, "type") || !strcmp(key, "id") || !strcmp(key, "client_id") ||
            !strcmp(key, "base_rev"))
            continue;
        /* "type" names the message, so the activity's type travels as activity_type. */
        if (!strcmp(key, "activity_type")) {
            json_object_set(changes, "type", v);
            continue;
        }
        int known = 0;
        for (int i = 0; update_fields[i] && !known; i++)
            known = strcmp(update_fields[i], key) == 0;
        if (!known) {
            char msg[128];
            snprintf(msg, sizeof(msg), "activity.update cannot change \"%.60s\"", key);
            fit_session_send_error(s, req->id, FIT_EUNKNOWN_FIELD, key, msg);
            json_decref(changes);
            return;
        }
        json_object_set(changes, key, v);
    }
    if (json_object_size(changes) == 0) {
        fit_session_send_error(s, req->id, FIT_EMISSING_FIELD, "",
                               "activity.update needs at least one field to change");
        json_decref(changes);
        return;
    }
    update_ctx *u = calloc(1, sizeof(*u));
    fit_pending *p = u ? fit_pending_new(s, req) : NULL;
    if (!p) {
        free(u);
        json_decref(changes);
        return;
    }
    u->p = p;
    u->base_rev = base_rev;
    u->changes = changes;
    snprintf(u->client_id, sizeof(u->client_id), "%s", cid);
    if (fit_ops_activity_get(&s->srv->ops, p->user, cid, update_current, u) != 0) {
        fit_reply_unavailable(s, req->id);
        update_free(u);
    }
}

/* ------------------------------------------------------------------ */
/* deletes                                                             */

typedef struct {
    fit_pending *p;
    char type[24];
    char id[FIT_DATE_LEN + FIT_SOURCE_MAX + 2]; /* client_id or "date|source" */
    char date[FIT_DATE_LEN], source[FIT_SOURCE_MAX + 1];
} delete_ctx;

static void delete_done(const fit_change *ch, void *data)
{
    delete_ctx *d = data;
    fit_session *s = d->p->s;
    const char *re = fit_pending_re(d->p);
    int is_activity = strcmp(d->type, "activity.delete") == 0;
    if (ch->err == FIT_ECONFLICT) {
        fit_reply_conflict(s, re, d->id, ch);
    } else if (ch->err) {
        fit_reply_op_error(s, re, ch->err, is_activity ? "client_id" : "date");
    } else {
        json_t *r = fit_reply_new(d->type, re);
        if (is_activity) {
            json_object_set_new(r, "client_id", json_string(d->id));
            json_object_set_new(r, "rev", json_integer(ch->rev));
        } else {
            json_object_set_new(r, "date", json_string(d->date));
            json_object_set_new(r, "source", json_string(d->source));
        }
        json_object_set_new(r, "status", json_string(ch->status));
        if (ch->cursor)
            json_object_set_new(r, "cursor", json_string(ch->cursor));
        fit_session_send(s, r);
        json_decref(r);
        if (ch->cursor) {
            fit_push_change(s->srv, d->p->user, s, ch->cursor, is_activity ? "activity" : "summary",
                            "delete", d->id, is_activity ? ch->rev : 1, NULL);
            fit_push_progress(s->srv, d->p->user, ch->weeks, (size_t)ch->nweeks);
        }
    }
    fit_pending_free(d->p);
    free(d);
}

static delete_ctx *delete_ctx_new(fit_session *s, fit_request *req)
{
    delete_ctx *d = calloc(1, sizeof(*d));
    fit_pending *p = d ? fit_pending_new(s, req) : NULL;
    if (!p) {
        free(d);
        return NULL;
    }
    d->p = p;
    snprintf(d->type, sizeof(d->type), "%s", req->type);
    return d;
}

static void delete_send_failed(delete_ctx *d, int rc)
{
    fit_reply_op_error(d->p->s, fit_pending_re(d->p), rc, "");
    fit_pending_free(d->p);
    free(d);
}

void fit_h_activity_delete(fit_session *s, fit_request *req)
{
    const char *cid = fit_get_id_field(s, req, "client_id", FIT_CLIENT_ID_MAX);
    int64_t base_rev = -1;
    int present;
    if (!cid || fit_get_int_field(s, req, "base_rev", 1, INT32_MAX, &base_rev, &present) != 0)
        return;
    delete_ctx *d = delete_ctx_new(s, req);
    if (!d)
        return;
    snprintf(d->id, sizeof(d->id), "%s", cid);
    int rc = fit_ops_activity_delete(&s->srv->ops, d->p->user, d->p->device, cid,
                                     present ? base_rev : -1, delete_done, d);
    if (rc)
        delete_send_failed(d, rc);
}

void fit_h_summary_delete(fit_session *s, fit_request *req)
{
    json_t *date = json_object_get(req->root, "date");
    fit_date dt;
    if (!date || !json_is_string(date) || fit_date_parse(json_string_value(date), &dt) != 0) {
        fit_session_send_error(s, req->id,
                               !date                  ? FIT_EMISSING_FIELD
                               : json_is_string(date) ? FIT_EINVALID_VALUE
                                                      : FIT_EINVALID_TYPE,
                               "date", "date must be a local date YYYY-MM-DD");
        return;
    }
    const char *source = fit_get_id_field(s, req, "source", FIT_SOURCE_MAX);
    if (!source)
        return;
    delete_ctx *d = delete_ctx_new(s, req);
    if (!d)
        return;
    fit_date_format(dt, d->date);
    snprintf(d->source, sizeof(d->source), "%s", source);
    snprintf(d->id, sizeof(d->id), "%s|%s", d->date, source);
    int rc =
        fit_ops_summary_delete(&s->srv->ops, d->p->user, d->p->device, dt, source, delete_done, d);
    if (rc)
        delete_send_failed(d, rc);
}
