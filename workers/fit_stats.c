/*
 * fit_stats: one read-only Function call per shard (fit_stats_read), all sent
 * at once; the last reply adds everything up and builds the document.
 */
#include "fit_stats.h"
#include "fit_error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const figures[] = {"a", "am", "gm", "n", "mo", "vi", "eq"};
static const char *const figure_names[] = {"active_members", "aerobic_met",  "guideline_met",
                                           "activities",     "moderate_min", "vigorous_min",
                                           "equivalent_min"};
#define NFIG 7
static const char *const genders[] = {"female", "male", "other", "undisclosed"};

typedef struct {
    const fit_stats_params *prm;
    fit_stats_cb *cb;
    void *data;
    int64_t now_ms;
    unsigned pending;
    int err;
    char weeks[FIT_STATS_TREND_WEEKS][FIT_WEEK_LEN]; /* oldest first; the last is the week shown */
    char today[FIT_DATE_LEN];
    json_t *tot; /* field -> summed integer */
    int64_t today_active;
    int64_t upm[60];
    json_t *events;                    /* id -> {name, kind, state, teams, laps} */
    json_t *chn;                       /* challenge id -> participants */
    json_t *conns;                     /* origin -> "count|expiry_ms" */
    json_t *wk[FIT_STATS_TREND_WEEKS]; /* "<segment>|<figure>" -> summed integer */
} stats_ctx;

static int64_t num(const redisReply *r)
{
    if (!r)
        return 0;
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    return r->str ? strtoll(r->str, NULL, 10) : 0;
}

/* Adds a flat [field, value, ...] reply into obj's integer fields. */
static void add_flat(json_t *obj, const redisReply *r)
{
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        const char *k = r->element[i]->str;
        if (!k)
            continue;
        json_int_t v = json_integer_value(json_object_get(obj, k)) + num(r->element[i + 1]);
        json_object_set_new(obj, k, json_integer(v));
    }
}

/* A figure as shown: the number, or "<k" when the segment is too small. */
static json_t *shown(int64_t v, int suppressed, int k)
{
    if (suppressed) {
        char s[16];
        snprintf(s, sizeof(s), "<%d", k);
        return json_string(s);
    }
    return json_integer(v);
}

static json_t *segment(const json_t *sums, const char *seg, int k)
{
    char key[96];
    int64_t v[NFIG];
    for (int f = 0; f < NFIG; f++) {
        snprintf(key, sizeof(key), "%s|%s", seg, figures[f]);
        v[f] = json_integer_value(json_object_get(sums, key));
    }
    int suppressed = v[0] < k; /* fewer than k active members: nothing of it leaves */
    json_t *o = json_object();
    for (int f = 0; f < NFIG; f++) {
        /* Figures that count members (active, meeting the target, the guideline) are also
         * suppressed one by one from 1 to k-1; 0 says "nobody" and is shown. */
        int counts_members = f < 3;
        int small = counts_members && v[f] > 0 && v[f] < k;
        json_object_set_new(o, figure_names[f], shown(v[f], suppressed || small, k));
    }
    return o;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static json_t *build(stats_ctx *c)
{
    const fit_stats_params *p = c->prm;
    int k = p->k;
    const json_t *sums = c->wk[FIT_STATS_TREND_WEEKS - 1];
    json_t *by_district = json_array(), *by_band = json_array(), *by_gender = json_array();
    char seg[96];
    for (size_t i = 0; i < p->tables->ndistricts; i++) {
        const fit_district *d = &p->tables->districts[i];
        snprintf(seg, sizeof(seg), "d:%s", d->slug);
        json_t *o = segment(sums, seg, k);
        json_object_set_new(o, "district", json_string(d->slug));
        json_object_set_new(o, "en", json_string(d->en));
        json_object_set_new(o, "zh", json_string(d->zh));
        json_array_append_new(by_district, o);
    }
    for (size_t i = 0; i < p->tables->nbands; i++) {
        snprintf(seg, sizeof(seg), "a:%s", p->tables->bands[i].id);
        json_t *o = segment(sums, seg, k);
        json_object_set_new(o, "age_band", json_string(p->tables->bands[i].id));
        json_array_append_new(by_band, o);
    }
    for (size_t i = 0; i < sizeof(genders) / sizeof(genders[0]); i++) {
        snprintf(seg, sizeof(seg), "g:%s", genders[i]);
        json_t *o = segment(sums, seg, k);
        json_object_set_new(o, "gender", json_string(genders[i]));
        json_array_append_new(by_gender, o);
    }
    json_t *trend = json_array();
    for (int w = 0; w < FIT_STATS_TREND_WEEKS; w++) {
        json_t *o = segment(c->wk[w], "all", k);
        json_object_set_new(o, "week", json_string(c->weeks[w]));
        json_array_append_new(trend, o);
    }
    json_t *upm = json_array();
    int64_t minute = c->now_ms / 60000;
    for (int i = 0; i < 60; i++) {
        char t[40];
        fit_time_format((minute - 59 + i) * 60000, 0, t, sizeof(t));
        json_array_append_new(
            upm, json_pack("{s:s, s:I}", "minute", t, "uploads", (json_int_t)c->upm[i]));
    }
    /* Events by id: the shards answer in any order (in a cluster, from several nodes). */
    json_t *events = json_array();
    const char *id;
    json_t *e;
    size_t nev = json_object_size(c->events), nid = 0;
    const char **ids = malloc((nev ? nev : 1) * sizeof(*ids));
    json_object_foreach(c->events, id, e)
    {
        if (ids)
            ids[nid++] = id;
    }
    if (ids)
        qsort(ids, nid, sizeof(*ids), cmp_str);
    for (size_t i = 0; i < nid; i++) {
        id = ids[i];
        e = json_object_get(c->events, id);
        json_t *o = json_deep_copy(e);
        json_object_set_new(o, "event", json_string(id));
        json_object_set_new(o, "participants",
                            json_integer(json_integer_value(json_object_get(c->chn, id)) +
                                         (json_integer_value(json_object_get(e, "teams")))));
        json_array_append_new(events, o);
    }
    free(ids);
    int64_t devices = 0;
    json_object_foreach(c->conns, id, e)
    {
        const char *v = json_string_value(e);
        const char *bar = v ? strchr(v, '|') : NULL;
        if (bar && strtoll(bar + 1, NULL, 10) >= c->now_ms)
            devices += strtoll(v, NULL, 10);
    }
    char now[40];
    fit_time_format(c->now_ms, 0, now, sizeof(now));
    json_t *totals = json_object();
    static const char *const tot_names[] = {"members", "activities", "events", "participations",
                                            "laps"};
    for (size_t i = 0; i < 5; i++)
        json_object_set_new(
            totals, tot_names[i],
            json_integer(json_integer_value(json_object_get(c->tot, tot_names[i]))));
    return json_pack(
        "{s:s, s:i, s:s, s:o, s:{s:s, s:o, s:o}, s:I, s:{s:o, s:o, s:o, s:o}, s:o, s:o}", "week",
        c->weeks[FIT_STATS_TREND_WEEKS - 1], "k", k, "generated_at", now, "totals", totals, "today",
        "date", c->today, "active_members", shown(c->today_active, c->today_active < k, k),
        "uploads_per_minute", upm, "connected_devices", (json_int_t)devices, "week_figures", "all",
        segment(sums, "all", k), "by_district", by_district, "by_age_band", by_band, "by_gender",
        by_gender, "trend", trend, "events", events);
}

static void ctx_free(stats_ctx *c)
{
    json_decref(c->tot);
    json_decref(c->events);
    json_decref(c->chn);
    json_decref(c->conns);
    for (int w = 0; w < FIT_STATS_TREND_WEEKS; w++)
        json_decref(c->wk[w]);
    free(c);
}

static void release(stats_ctx *c)
{
    if (--c->pending > 0)
        return;
    if (c->err) {
        c->cb(c->err, NULL, c->data);
    } else {
        json_t *doc = build(c);
        c->cb(doc ? 0 : FIT_ENOMEM, doc, c->data);
        json_decref(doc);
    }
    ctx_free(c);
}

static void part(redisReply *r, const char *errstr, void *data)
{
    stats_ctx *c = data;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 6 + FIT_STATS_TREND_WEEKS) {
        if (r && r->type == REDIS_REPLY_ERROR)
            fprintf(stderr, "fitsync: fit_stats_read: %s\n", r->str);
        c->err = r ? FIT_EINTERNAL : FIT_EUNAVAILABLE;
        release(c);
        return;
    }
    add_flat(c->tot, r->element[0]);
    c->today_active += num(r->element[1]);
    for (size_t i = 0; i < 60 && i < r->element[2]->elements; i++)
        c->upm[i] += num(r->element[2]->element[i]);
    const redisReply *ev = r->element[3];
    for (size_t i = 0; i < ev->elements; i++) {
        const redisReply *x = ev->element[i];
        if (x->type != REDIS_REPLY_ARRAY || x->elements != 6 || !x->element[0]->str)
            continue;
        json_object_set_new(c->events, x->element[0]->str,
                            json_pack("{s:s, s:s, s:s, s:I, s:I}", "name",
                                      x->element[1]->str ? x->element[1]->str : "", "kind",
                                      x->element[2]->str ? x->element[2]->str : "", "state",
                                      x->element[3]->str ? x->element[3]->str : "", "teams",
                                      (json_int_t)num(x->element[4]), "laps",
                                      (json_int_t)num(x->element[5])));
    }
    add_flat(c->chn, r->element[4]);
    for (size_t i = 0; i + 1 < r->element[5]->elements; i += 2)
        if (r->element[5]->element[i]->str && r->element[5]->element[i + 1]->str)
            json_object_set_new(c->conns, r->element[5]->element[i]->str,
                                json_string(r->element[5]->element[i + 1]->str));
    for (int w = 0; w < FIT_STATS_TREND_WEEKS; w++)
        add_flat(c->wk[w], r->element[6 + w]);
    release(c);
}

int fit_stats_read(const fit_stats_params *prm, const char *week, int64_t now_ms, fit_stats_cb *cb,
                   void *data)
{
    int y, w;
    if (fit_iso_week_parse(week, &y, &w) != 0)
        return FIT_EINVALID_VALUE;
    stats_ctx *c = calloc(1, sizeof(*c));
    if (!c)
        return FIT_ENOMEM;
    c->prm = prm;
    c->cb = cb;
    c->data = data;
    c->now_ms = now_ms;
    c->tot = json_object();
    c->events = json_object();
    c->chn = json_object();
    c->conns = json_object();
    int64_t monday = fit_days_from_civil(fit_iso_week_monday(y, w));
    for (int i = 0; i < FIT_STATS_TREND_WEEKS; i++) {
        c->wk[i] = json_object();
        fit_date_week_name(
            fit_civil_from_days(monday - (int64_t)(FIT_STATS_TREND_WEEKS - 1 - i) * 7),
            c->weeks[i]);
    }
    fit_date_format(fit_local_date(now_ms, prm->ops->tz_offset_min), c->today);
    char minute[24];
    snprintf(minute, sizeof(minute), "%lld", (long long)(now_ms / 60000));
    c->pending = 1;
    int sent = 0;
    for (unsigned s = 0; s < prm->ops->shards; s++) {
        char key[FIT_KEY_MAX];
        snprintf(key, sizeof(key), "fit:{s%u}:tot", s);
        const char *argv[6 + FIT_STATS_TREND_WEEKS] = {"FCALL_RO", "fit_stats_read", "1",
                                                       key,        c->today,         minute};
        for (int i = 0; i < FIT_STATS_TREND_WEEKS; i++)
            argv[6 + i] = c->weeks[i];
        c->pending++;
        if (fit_redis_command(&prm->ops->redis, FIT_REDIS_IDEMPOTENT, part, c,
                              6 + FIT_STATS_TREND_WEEKS, argv, NULL) != 0) {
            c->pending--;
            c->err = FIT_EUNAVAILABLE;
        } else {
            sent++;
        }
    }
    if (!sent) {
        ctx_free(c);
        return FIT_EUNAVAILABLE;
    }
    release(c);
    return 0;
}

static void csv_row(char **buf, size_t *len, size_t *cap, const char *kind, const char *value,
                    const json_t *fig)
{
    char line[512];
    int n = snprintf(line, sizeof(line), "%s,%s", kind, value);
    for (int f = 0; f < NFIG; f++) {
        const json_t *v = json_object_get(fig, figure_names[f]);
        if (json_is_integer(v))
            n += snprintf(line + n, sizeof(line) - (size_t)n, ",%lld",
                          (long long)json_integer_value(v));
        else
            n += snprintf(line + n, sizeof(line) - (size_t)n, ",%s",
                          json_string_value(v) ? json_string_value(v) : "");
    }
    n += snprintf(line + n, sizeof(line) - (size_t)n, "\n");
    if (*len + (size_t)n + 1 > *cap) {
        size_t nc = (*cap + (size_t)n) * 2;
        char *nb = realloc(*buf, nc);
        if (!nb)
            return;
        *buf = nb;
        *cap = nc;
    }
    memcpy(*buf + *len, line, (size_t)n);
    *len += (size_t)n;
    (*buf)[*len] = '\0';
}

char *fit_stats_csv(const json_t *stats, size_t *len)
{
    size_t cap = 4096;
    char *buf = malloc(cap);
    *len = 0;
    if (!buf)
        return NULL;
    *len = (size_t)snprintf(buf, cap,
                            "week,segment,value,active_members,aerobic_met,"
                            "guideline_met,activities,moderate_min,vigorous_min,"
                            "equivalent_min\n");
    const char *week = json_string_value(json_object_get(stats, "week"));
    const json_t *wf = json_object_get(stats, "week_figures");
    char kind[64];
    snprintf(kind, sizeof(kind), "%s,all", week);
    csv_row(&buf, len, &cap, kind, "all", json_object_get(wf, "all"));
    static const char *const lists[][2] = {
        {"by_district", "district"}, {"by_age_band", "age_band"}, {"by_gender", "gender"}};
    for (size_t l = 0; l < 3; l++) {
        size_t i;
        json_t *o;
        snprintf(kind, sizeof(kind), "%s,%s", week, lists[l][1]);
        json_array_foreach(json_object_get(wf, lists[l][0]), i, o)
        {
            csv_row(&buf, len, &cap, kind, json_string_value(json_object_get(o, lists[l][1])), o);
        }
    }
    return buf;
}
