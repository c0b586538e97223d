/*
 * fit_board: board names are user input (a big screen's URL, an app's
 * request), so they are parsed strictly against the configured tables: a
 * district or band that does not exist is an error, not an empty board.
 */
#include "fit_board.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int fit_slug_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > FIT_SLUG_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return 0;
    return 1;
}

int fit_board_tables_load(fit_board_tables *t, const json_t *districts, const json_t *bands,
                          char *errbuf, size_t errlen)
{
    memset(t, 0, sizeof(*t));
    const json_t *d = json_object_get(districts, "districts");
    const json_t *b = json_object_get(bands, "bands");
    if (!json_is_array(d) || !json_is_array(b) || json_array_size(b) == 0) {
        snprintf(errbuf, errlen, "\"districts\" and \"bands\" must be arrays");
        return FIT_EINVALID_VALUE;
    }
    t->districts = calloc(json_array_size(d) + 1, sizeof(*t->districts));
    t->bands = calloc(json_array_size(b) + 1, sizeof(*t->bands));
    if (!t->districts || !t->bands) {
        fit_board_tables_free(t);
        return FIT_ENOMEM;
    }
    size_t i;
    const json_t *e;
    json_array_foreach(d, i, e)
    {
        const char *slug = json_string_value(json_object_get(e, "slug"));
        const char *en = json_string_value(json_object_get(e, "en"));
        const char *zh = json_string_value(json_object_get(e, "zh"));
        if (!slug || !fit_slug_valid(slug) || !en || !zh || strlen(en) >= 64 || strlen(zh) >= 64 ||
            fit_district_find(t, slug)) {
            snprintf(errbuf, errlen, "districts[%zu]: needs a unique slug, en and zh", i);
            fit_board_tables_free(t);
            return FIT_EINVALID_VALUE;
        }
        fit_district *x = &t->districts[t->ndistricts++];
        snprintf(x->slug, sizeof(x->slug), "%s", slug);
        snprintf(x->en, sizeof(x->en), "%s", en);
        snprintf(x->zh, sizeof(x->zh), "%s", zh);
    }
    int prev_max = -1;
    json_array_foreach(b, i, e)
    {
        const char *id = json_string_value(json_object_get(e, "id"));
        const json_t *min = json_object_get(e, "min"), *max = json_object_get(e, "max");
        int lo = json_is_integer(min) ? (int)json_integer_value(min) : -1;
        int hi = json_is_integer(max) ? (int)json_integer_value(max) : -1;
        int open = !max || json_is_null(max);
        if (!id || !*id || strlen(id) >= 16 || strpbrk(id, ":, ") || lo < 0 || (!open && hi < lo) ||
            lo <= prev_max || (prev_max == -2)) {
            snprintf(errbuf, errlen,
                     "bands[%zu]: needs an id (no ':' ',' ' ') and min..max ascending without "
                     "overlap",
                     i);
            fit_board_tables_free(t);
            return FIT_EINVALID_VALUE;
        }
        fit_age_band *x = &t->bands[t->nbands++];
        snprintf(x->id, sizeof(x->id), "%s", id);
        x->min_age = lo;
        x->max_age = open ? -1 : hi;
        prev_max = open ? -2 : hi;
    }
    return 0;
}

void fit_board_tables_free(fit_board_tables *t)
{
    free(t->districts);
    free(t->bands);
    memset(t, 0, sizeof(*t));
}

const fit_district *fit_district_find(const fit_board_tables *t, const char *slug)
{
    for (size_t i = 0; i < t->ndistricts; i++)
        if (strcmp(t->districts[i].slug, slug) == 0)
            return &t->districts[i];
    return NULL;
}

const fit_age_band *fit_age_band_of(const fit_board_tables *t, int age)
{
    for (size_t i = 0; i < t->nbands; i++)
        if (age >= t->bands[i].min_age && (t->bands[i].max_age < 0 || age <= t->bands[i].max_age))
            return &t->bands[i];
    return NULL;
}

void fit_age_bands_spec(const fit_board_tables *t, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < t->nbands && n < len; i++) {
        const fit_age_band *b = &t->bands[i];
        char max[16] = "";
        if (b->max_age >= 0)
            snprintf(max, sizeof(max), "%d", b->max_age);
        n += (size_t)snprintf(buf + n, len - n, "%s%s:%d:%s", i ? "," : "", b->id, b->min_age, max);
    }
}

static const fit_age_band *band_find(const fit_board_tables *t, const char *id)
{
    for (size_t i = 0; i < t->nbands; i++)
        if (strcmp(t->bands[i].id, id) == 0)
            return &t->bands[i];
    return NULL;
}

int fit_board_parse(const char *name, const fit_board_tables *t, fit_board_name *out,
                    fit_field_error *err)
{
    memset(out, 0, sizeof(*out));
    if (strlen(name) < FIT_BOARD_NAME_MAX && strncmp(name, "challenge:", 10) == 0) {
        const char *id = name + 10, *c = strchr(id, ':');
        if (c && c - id <= 40) {
            snprintf(out->event_id, sizeof(out->event_id), "%.*s", (int)(c - id), id);
            snprintf(out->scope, sizeof(out->scope), "%s", c + 1);
        }
        out->challenge = 1;
        if (!c || !fit_slug_valid(out->event_id) ||
            (strcmp(out->scope, "all") != 0 && strcmp(out->scope, "teams") != 0))
            return fit_field_error_set(err, FIT_EINVALID_VALUE, "board",
                                       "challenge board must look like challenge:<id>:all or "
                                       "challenge:<id>:teams");
        return 0;
    }
    if (strlen(name) < FIT_BOARD_NAME_MAX && strncmp(name, "event:", 6) == 0) {
        const char *id = name + 6, *c = strchr(id, ':');
        if (!c || c - id > 64)
            return fit_field_error_set(err, FIT_EINVALID_VALUE, "board",
                                       "event board must look like event:<id>:all or "
                                       "event:<id>:cat:<category>");
        snprintf(out->event_id, sizeof(out->event_id), "%.*s", (int)(c - id), id);
        snprintf(out->scope, sizeof(out->scope), "%s", c + 1);
        out->event = 1;
        if (!fit_slug_valid(out->event_id) ||
            (strcmp(out->scope, "all") != 0 &&
             (strncmp(out->scope, "cat:", 4) != 0 || !fit_slug_valid(out->scope + 4))))
            return fit_field_error_set(err, FIT_EINVALID_VALUE, "board",
                                       "event board must look like event:<id>:all or "
                                       "event:<id>:cat:<category>");
        return 0;
    }
    if (strlen(name) >= FIT_BOARD_NAME_MAX || strncmp(name, "week:", 5) != 0)
        return fit_field_error_set(err, FIT_EINVALID_VALUE, "board",
                                   "board must look like week:2026-W10:all or "
                                   "week:current:district:wan-chai");
    const char *w = name + 5;
    const char *colon = strchr(w, ':');
    if (!colon)
        return fit_field_error_set(err, FIT_EINVALID_VALUE, "board", "board has no scope");
    char week[16];
    snprintf(week, sizeof(week), "%.*s", (int)(colon - w), w);
    int y, wk;
    if (strcmp(week, "current") == 0)
        out->current = 1;
    else if (fit_iso_week_parse(week, &y, &wk) != 0)
        return fit_field_error_set(err, FIT_EINVALID_VALUE, "board",
                                   "board week must be \"current\" or an ISO week like 2026-W10");
    else
        snprintf(out->week, sizeof(out->week), "%s", week);
    const char *scope = colon + 1;
    snprintf(out->scope, sizeof(out->scope), "%s", scope);
    if (strcmp(scope, "all") == 0)
        return 0;
    if (strncmp(scope, "district:", 9) == 0) {
        if (!fit_district_find(t, scope + 9))
            return fit_field_error_set(err, FIT_EINVALID_VALUE, "board",
                                       "unknown district \"%.40s\" (see config/districts.json)",
                                       scope + 9);
        return 0;
    }
    if (strncmp(scope, "age:", 4) == 0) {
        if (!band_find(t, scope + 4))
            return fit_field_error_set(err, FIT_EINVALID_VALUE, "board",
                                       "unknown age band \"%.15s\" (see config/age_bands.json)",
                                       scope + 4);
        return 0;
    }
    if (strncmp(scope, "team:", 5) == 0) {
        if (!fit_slug_valid(scope + 5))
            return fit_field_error_set(err, FIT_EINVALID_VALUE, "board",
                                       "team must be 1..40 characters of [a-z0-9-]");
        return 0;
    }
    return fit_field_error_set(err, FIT_EINVALID_VALUE, "board",
                               "board scope must be all, district:<slug>, age:<band> or "
                               "team:<slug>");
}

void fit_board_resolve(fit_board_name *b, const char *current_week, char *buf, size_t len)
{
    if (b->event || b->challenge) {
        snprintf(buf, len, "%s:%s:%s", b->event ? "event" : "challenge", b->event_id, b->scope);
        return;
    }
    if (b->current)
        snprintf(b->week, sizeof(b->week), "%s", current_week);
    snprintf(buf, len, "week:%s:%s", b->week, b->scope);
}
