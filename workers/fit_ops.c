/*
 * fit_ops: argument marshalling for the Functions in workers/fitsync.lua and
 * decoding of their replies. The Lua side owns the aggregation rules; this
 * side owns validation (already done by protocol/) and the shape of keys.
 */
#include "fit_ops.h"
#include "fit_error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fit_user_key(char *buf, unsigned shards, const char *user, const char *suffix)
{
    snprintf(buf, FIT_KEY_MAX, "fit:{s%u}:u:%s:%s", fit_shard_of(user, shards), user, suffix);
}

struct put_ctx {
    fit_put_cb *cb;
    void *data;
};

static void put_done(redisReply *r, const char *errstr, void *data)
{
    struct put_ctx *c = data;
    const char *weeks[FIT_MAX_SEGMENTS];
    int nweeks = 0;
    if (!r) {
        c->cb(FIT_EUNAVAILABLE, NULL, NULL, 0, c->data);
    } else if (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_STRING) {
        /* fit_summary_put answers a single status string. */
        c->cb(0, r->str, NULL, 0, c->data);
    } else if (r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
               r->element[0]->type == REDIS_REPLY_STRING) {
        const char *status = r->element[0]->str;
        if (strcmp(status, "conflict") == 0) {
            c->cb(FIT_ECONFLICT, status, NULL, 0, c->data);
        } else {
            for (size_t i = 1; i < r->elements && nweeks < FIT_MAX_SEGMENTS; i++) {
                const char *w = r->element[i]->str;
                int dup = 0;
                for (int j = 0; j < nweeks; j++)
                    dup |= strcmp(weeks[j], w) == 0;
                if (!dup)
                    weeks[nweeks++] = w;
            }
            c->cb(0, status, weeks, nweeks, c->data);
        }
    } else {
        fprintf(stderr, "fitsync: unexpected reply from FCALL: %s\n",
                r->type == REDIS_REPLY_ERROR ? r->str : "(bad type)");
        c->cb(FIT_EINTERNAL, NULL, NULL, 0, c->data);
    }
    free(c);
}

static int call(fit_store *store, int argc, const char **argv, const size_t *lens,
                fit_store_cb *done, void *ctx)
{
    int rc = fit_store_command(store, done, ctx, argc, argv, lens);
    if (rc)
        free(ctx);
    return rc;
}

int fit_ops_activity_put(fit_store *store, unsigned shards, const char *user,
                         const fit_activity *a, fit_put_cb *cb, void *data)
{
    char akey[FIT_KEY_MAX], dkeys[FIT_MAX_SEGMENTS][FIT_KEY_MAX], wkeys[FIT_MAX_SEGMENTS][FIT_KEY_MAX];
    char segs[FIT_MAX_SEGMENTS][160], suffix[64], nbuf[16], nkeys[16];
    const char *argv[8 + 4 * FIT_MAX_SEGMENTS + 4];
    int argc = 0;
    char *doc = json_dumps(a->doc, JSON_COMPACT | JSON_SORT_KEYS);
    if (!doc)
        return FIT_ENOMEM;
    snprintf(suffix, sizeof(suffix), "a:%s", a->client_id);
    fit_user_key(akey, shards, user, suffix);
    snprintf(nkeys, sizeof(nkeys), "%d", 1 + 2 * a->nseg);
    snprintf(nbuf, sizeof(nbuf), "%d", a->nseg);
    argv[argc++] = "FCALL";
    argv[argc++] = "fit_activity_put";
    argv[argc++] = nkeys;
    argv[argc++] = akey;
    for (int i = 0; i < a->nseg; i++) {
        const fit_segment *g = &a->seg[i];
        snprintf(suffix, sizeof(suffix), "d:%s", g->date_str);
        fit_user_key(dkeys[i], shards, user, suffix);
        snprintf(suffix, sizeof(suffix), "w:%s", g->week);
        fit_user_key(wkeys[i], shards, user, suffix);
        argv[argc++] = dkeys[i];
        argv[argc++] = wkeys[i];
        snprintf(segs[i], sizeof(segs[i]), "[%lld,%lld,%d,%d,%d,%lld,%.1f]",
                 (long long)g->start_ms, (long long)g->end_ms, (int)a->intensity, a->strength,
                 a->balance, (long long)g->steps, g->distance_m);
    }
    argv[argc++] = a->client_id;
    argv[argc++] = doc;
    argv[argc++] = nbuf;
    for (int i = 0; i < a->nseg; i++) {
        argv[argc++] = a->seg[i].date_str;
        argv[argc++] = segs[i];
    }
    struct put_ctx *c = malloc(sizeof(*c));
    int rc = FIT_ENOMEM;
    if (c) {
        c->cb = cb;
        c->data = data;
        rc = call(store, argc, argv, NULL, put_done, c);
    }
    free(doc);
    return rc;
}

/* fit_summary_put answers one status; the week it touched is the summary's own. */
struct summary_ctx {
    fit_put_cb *cb;
    void *data;
    char week[FIT_WEEK_LEN];
};

static void summary_done(redisReply *r, const char *errstr, void *data)
{
    struct summary_ctx *c = data;
    if (!r) {
        c->cb(FIT_EUNAVAILABLE, NULL, NULL, 0, c->data);
    } else if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) {
        const char *weeks[1] = {c->week};
        int applied = strcmp(r->str, "applied") == 0;
        c->cb(0, r->str, weeks, applied ? 1 : 0, c->data);
    } else {
        fprintf(stderr, "fitsync: unexpected reply from fit_summary_put: %s\n",
                r->type == REDIS_REPLY_ERROR ? r->str : "(bad type)");
        c->cb(FIT_EINTERNAL, NULL, NULL, 0, c->data);
    }
    free(c);
}

int fit_ops_summary_put(fit_store *store, unsigned shards, const char *user, const fit_summary *s,
                        fit_put_cb *cb, void *data)
{
    char dkey[FIT_KEY_MAX], wkey[FIT_KEY_MAX], suffix[64];
    char rec[24], mo[12], vi[12], li[12], st[24], di[32];
    char *doc = json_dumps(s->doc, JSON_COMPACT | JSON_SORT_KEYS);
    if (!doc)
        return FIT_ENOMEM;
    snprintf(suffix, sizeof(suffix), "d:%s", s->date_str);
    fit_user_key(dkey, shards, user, suffix);
    snprintf(suffix, sizeof(suffix), "w:%s", s->week);
    fit_user_key(wkey, shards, user, suffix);
    snprintf(rec, sizeof(rec), "%lld", (long long)s->recorded_at_ms);
    snprintf(mo, sizeof(mo), "%d", s->moderate_min);
    snprintf(vi, sizeof(vi), "%d", s->vigorous_min);
    snprintf(li, sizeof(li), "%d", s->light_min);
    snprintf(st, sizeof(st), "%lld", (long long)s->steps);
    snprintf(di, sizeof(di), "%.1f", s->distance_m);
    const char *argv[] = {"FCALL", "fit_summary_put", "2", dkey, wkey, s->source, rec, doc,
                          s->date_str, mo, vi, li, st, di};
    struct summary_ctx *c = malloc(sizeof(*c));
    int rc = FIT_ENOMEM;
    if (c) {
        c->cb = cb;
        c->data = data;
        snprintf(c->week, sizeof(c->week), "%s", s->week);
        rc = call(store, (int)(sizeof(argv) / sizeof(argv[0])), argv, NULL, summary_done, c);
    }
    free(doc);
    return rc;
}

/* Turns a flat [field, value, ...] reply into an object. Profile values are typed here. */
static json_t *profile_from_reply(const redisReply *r)
{
    json_t *o = json_object();
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        const char *k = r->element[i]->str, *v = r->element[i + 1]->str;
        if (!k || !v)
            continue;
        if (strcmp(k, "birth_year") == 0)
            json_object_set_new(o, k, json_integer(atoi(v)));
        else if (strcmp(k, "pregnant") == 0)
            json_object_set_new(o, k, json_boolean(strcmp(v, "1") == 0));
        else
            json_object_set_new(o, k, json_string(v));
    }
    return o;
}

struct profile_ctx {
    fit_profile_cb *cb;
    void *data;
};

static void profile_done(redisReply *r, const char *errstr, void *data)
{
    struct profile_ctx *c = data;
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        c->cb(r ? FIT_EINTERNAL : FIT_EUNAVAILABLE, NULL, c->data);
    } else {
        json_t *p = profile_from_reply(r);
        c->cb(0, p, c->data);
        json_decref(p);
    }
    free(c);
}

int fit_ops_profile_set(fit_store *store, unsigned shards, const char *user, const fit_profile *p,
                        fit_profile_cb *cb, void *data)
{
    char pkey[FIT_KEY_MAX], by[12];
    const char *argv[4 + 10];
    int argc = 0;
    fit_user_key(pkey, shards, user, "p");
    argv[argc++] = "FCALL";
    argv[argc++] = "fit_profile_set";
    argv[argc++] = "1";
    argv[argc++] = pkey;
    if (p->has_birth_year) {
        snprintf(by, sizeof(by), "%d", p->birth_year);
        argv[argc++] = "birth_year";
        argv[argc++] = p->birth_year ? by : "";
    }
    if (p->has_district) {
        argv[argc++] = "district";
        argv[argc++] = p->district;
    }
    if (p->has_gender) {
        argv[argc++] = "gender";
        argv[argc++] = p->gender;
    }
    if (p->has_pregnant) {
        argv[argc++] = "pregnant";
        argv[argc++] = p->pregnant ? "1" : "";
    }
    if (p->has_display_name) {
        argv[argc++] = "display_name";
        argv[argc++] = p->display_name;
    }
    struct profile_ctx *c = malloc(sizeof(*c));
    if (!c)
        return FIT_ENOMEM;
    c->cb = cb;
    c->data = data;
    return call(store, argc, argv, NULL, profile_done, c);
}

struct week_ctx {
    fit_week_cb *cb;
    void *data;
    const fit_who_targets *targets;
    int iso_year, week;
};

/* Parses one stored day's totals; missing keys read as zero. */
static void day_from_json(const char *s, fit_day_totals *d)
{
    json_t *j = json_loads(s, 0, NULL);
    if (!j)
        return;
    d->moderate_min = (int)json_number_value(json_object_get(j, "mo"));
    d->vigorous_min = (int)json_number_value(json_object_get(j, "vi"));
    d->light_min = (int)json_number_value(json_object_get(j, "li"));
    d->steps = (int64_t)json_number_value(json_object_get(j, "st"));
    d->distance_m = json_number_value(json_object_get(j, "di"));
    d->strength = json_number_value(json_object_get(j, "sg")) != 0;
    d->balance = json_number_value(json_object_get(j, "ba")) != 0;
    json_decref(j);
}

static void week_done(redisReply *r, const char *errstr, void *data)
{
    struct week_ctx *c = data;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        if (r && r->type == REDIS_REPLY_ERROR)
            fprintf(stderr, "fitsync: fit_week_get: %s\n", r->str);
        c->cb(r ? FIT_EINTERNAL : FIT_EUNAVAILABLE, NULL, c->data);
        free(c);
        return;
    }
    fit_day_totals days[7];
    memset(days, 0, sizeof(days));
    int64_t monday = fit_days_from_civil(fit_iso_week_monday(c->iso_year, c->week));
    const redisReply *w = r->element[0];
    for (size_t i = 0; i + 1 < w->elements; i += 2) {
        fit_date d;
        if (!w->element[i]->str || fit_date_parse(w->element[i]->str, &d))
            continue;
        int64_t idx = fit_days_from_civil(d) - monday;
        if (idx >= 0 && idx < 7)
            day_from_json(w->element[i + 1]->str, &days[idx]);
    }
    json_t *profile = profile_from_reply(r->element[1]);
    int birth_year = (int)json_integer_value(json_object_get(profile, "birth_year"));
    int pregnant = json_is_true(json_object_get(profile, "pregnant"));
    json_decref(profile);
    fit_week_status st;
    fit_who_score_week(c->targets, c->iso_year, c->week,
                       fit_who_band(c->targets, birth_year, pregnant, c->iso_year), days, &st);
    c->cb(0, &st, c->data);
    free(c);
}

int fit_ops_week_get(fit_store *store, unsigned shards, const char *user, int iso_year, int week,
                     const fit_who_targets *targets, fit_week_cb *cb, void *data)
{
    char wkey[FIT_KEY_MAX], pkey[FIT_KEY_MAX], suffix[32], name[FIT_WEEK_LEN];
    fit_iso_week_format(iso_year, week, name);
    snprintf(suffix, sizeof(suffix), "w:%s", name);
    fit_user_key(wkey, shards, user, suffix);
    fit_user_key(pkey, shards, user, "p");
    const char *argv[] = {"FCALL_RO", "fit_week_get", "2", wkey, pkey};
    struct week_ctx *c = malloc(sizeof(*c));
    if (!c)
        return FIT_ENOMEM;
    c->cb = cb;
    c->data = data;
    c->targets = targets;
    c->iso_year = iso_year;
    c->week = week;
    return call(store, 5, argv, NULL, week_done, c);
}
