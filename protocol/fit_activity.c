/*
 * fit_activity: validation of sessions, daily summaries and profiles.
 *
 * The rule of this file: check every field, in a fixed order, and stop at the
 * first problem with an error that names the field. Nothing is guessed: an
 * unknown field is an error (it is usually a typo such as "duration" for
 * "duration_s" that would otherwise be silently ignored), and so is a value
 * of the wrong JSON type.
 */
#include "fit_activity.h"

#include <ctype.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

int fit_id_valid(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '.' && c != '_' && c != ':' && c != '@' && c != '-')
            return 0;
    }
    return 1;
}

static int check_known(const json_t *item, const char *const *known, fit_field_error *err)
{
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)item, key, v)
    {
        int ok = 0;
        for (const char *const *k = known; *k; k++)
            if (strcmp(*k, key) == 0)
                ok = 1;
        if (!ok)
            return fit_field_error_set(err, FIT_EUNKNOWN_FIELD, key, "unknown field \"%.80s\"",
                                       key);
    }
    return 0;
}

/* Gets a required or optional string. Returns 0 (and *out NULL if absent and optional). */
static int get_string(const json_t *item, const char *key, int required, const char **out,
                      fit_field_error *err)
{
    const json_t *v = json_object_get(item, key);
    *out = NULL;
    if (!v || json_is_null(v)) {
        if (required)
            return fit_field_error_set(err, FIT_EMISSING_FIELD, key, "%s is required", key);
        return 0;
    }
    if (!json_is_string(v))
        return fit_field_error_set(err, FIT_EINVALID_TYPE, key, "%s must be a string", key);
    *out = json_string_value(v);
    return 0;
}

/* Optional number within [lo, hi]; *present says whether it was sent. */
static int get_number(const json_t *item, const char *key, int required, double lo, double hi,
                      double *out, int *present, fit_field_error *err)
{
    const json_t *v = json_object_get(item, key);
    *present = 0;
    if (!v || json_is_null(v)) {
        if (required)
            return fit_field_error_set(err, FIT_EMISSING_FIELD, key, "%s is required", key);
        return 0;
    }
    if (!json_is_number(v))
        return fit_field_error_set(err, FIT_EINVALID_TYPE, key, "%s must be a number", key);
    double d = json_number_value(v);
    if (!isfinite(d) || d < lo || d > hi)
        return fit_field_error_set(err, FIT_EINVALID_VALUE, key, "%s must be within %g..%g", key,
                                   lo, hi);
    *out = d;
    *present = 1;
    return 0;
}

/* Optional whole number within [lo, hi]. */
static int get_integer(const json_t *item, const char *key, int required, int64_t lo, int64_t hi,
                       int64_t *out, int *present, fit_field_error *err)
{
    const json_t *v = json_object_get(item, key);
    *present = 0;
    if (!v || json_is_null(v)) {
        if (required)
            return fit_field_error_set(err, FIT_EMISSING_FIELD, key, "%s is required", key);
        return 0;
    }
    if (!json_is_integer(v))
        return fit_field_error_set(err, FIT_EINVALID_TYPE, key, "%s must be a whole number", key);
    json_int_t i = json_integer_value(v);
    if (i < lo || i > hi)
        return fit_field_error_set(err, FIT_EINVALID_VALUE, key, "%s must be within %lld..%lld",
                                   key, (long long)lo, (long long)hi);
    *out = i;
    *present = 1;
    return 0;
}

static int get_bool(const json_t *item, const char *key, int *out, fit_field_error *err)
{
    const json_t *v = json_object_get(item, key);
    *out = 0;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return fit_field_error_set(err, FIT_EINVALID_TYPE, key, "%s must be true or false", key);
    *out = json_is_true(v);
    return 0;
}

static int get_time(const json_t *item, const char *key, int required, int64_t *ms, int *off,
                    int *present, fit_field_error *err)
{
    const char *s;
    int rc = get_string(item, key, required, &s, err);
    *present = 0;
    if (rc || !s)
        return rc;
    rc = fit_time_parse(s, ms, off);
    if (rc == FIT_EBAD_OFFSET)
        return fit_field_error_set(err, rc, key, "%s: UTC offset must be within -14:00..+14:00",
                                   key);
    if (rc)
        return fit_field_error_set(err, FIT_EINVALID_VALUE, key,
                                   "%s must be an RFC 3339 time with a UTC offset, e.g. "
                                   "2026-03-02T07:30:00+08:00",
                                   key);
    *present = 1;
    return 0;
}

/* The acceptance window: [now - max_age_weeks, now + tolerance]. */
static int check_window(const fit_rules *r, int64_t t, const char *field, fit_field_error *err)
{
    if (t > r->now_ms + r->future_tolerance_ms)
        return fit_field_error_set(err, FIT_EFUTURE_TIME, field,
                                   "%s is more than %lld s in the future", field,
                                   (long long)(r->future_tolerance_ms / 1000));
    if (r->max_age_weeks > 0 && t < r->now_ms - (int64_t)r->max_age_weeks * 7 * FIT_MS_PER_DAY)
        return fit_field_error_set(err, FIT_ETOO_OLD, field,
                                   "%s is older than the acceptance window of %d weeks", field,
                                   r->max_age_weeks);
    return 0;
}

/* Splits [start, end) at local midnights of offset_min; shares steps/distance by time. */
static void split_days(fit_activity *a)
{
    int64_t t = a->start_ms;
    int64_t total = a->end_ms - a->start_ms;
    a->nseg = 0;
    while (t < a->end_ms && a->nseg < FIT_MAX_SEGMENTS) {
        fit_segment *s = &a->seg[a->nseg++];
        s->date = fit_local_date(t, a->offset_min);
        fit_date next = fit_civil_from_days(fit_days_from_civil(s->date) + 1);
        int64_t midnight = fit_local_midnight_ms(next, a->offset_min);
        s->start_ms = t;
        s->end_ms = midnight < a->end_ms ? midnight : a->end_ms;
        fit_date_format(s->date, s->date_str);
        fit_date_week_name(s->date, s->week);
        double share = (double)(s->end_ms - s->start_ms) / (double)total;
        s->steps = a->steps < 0 ? -1 : (int64_t)llround((double)a->steps * share);
        s->distance_m = a->distance_m < 0 ? -1 : round(a->distance_m * share * 10.0) / 10.0;
        t = s->end_ms;
    }
    /* Rounding shares must not invent or lose steps: the last day takes the remainder. */
    if (a->steps >= 0 && a->nseg > 1) {
        int64_t sum = 0;
        for (int i = 0; i < a->nseg - 1; i++)
            sum += a->seg[i].steps;
        a->seg[a->nseg - 1].steps = a->steps - sum;
    }
}

static const char *const activity_fields[] = {"client_id", "type",      "start",   "duration_s",
                                              "end",       "intensity", "met",     "distance_m",
                                              "steps",     "strength",  "balance", NULL};

int fit_activity_parse(const json_t *item, const fit_rules *r, fit_activity *out,
                       fit_field_error *err)
{
    memset(out, 0, sizeof(*out));
    if (!json_is_object(item))
        return fit_field_error_set(err, FIT_EINVALID_TYPE, "", "an activity must be an object");
    int rc, present;
    const char *s;
    if ((rc = check_known(item, activity_fields, err)))
        return rc;

    if ((rc = get_string(item, "client_id", 1, &s, err)))
        return rc;
    if (!fit_id_valid(s, FIT_CLIENT_ID_MAX))
        return fit_field_error_set(err, FIT_EINVALID_VALUE, "client_id",
                                   "client_id must be 1..64 characters of [A-Za-z0-9._:@-]");
    snprintf(out->client_id, sizeof(out->client_id), "%s", s);

    if ((rc = get_string(item, "type", 1, &s, err)))
        return rc;
    if (!fit_id_valid(s, FIT_ACTIVITY_TYPE_MAX))
        return fit_field_error_set(err, FIT_EINVALID_VALUE, "type",
                                   "type must be 1..32 characters of [A-Za-z0-9._:@-]");
    snprintf(out->type, sizeof(out->type), "%s", s);

    if ((rc = get_time(item, "start", 1, &out->start_ms, &out->offset_min, &present, err)))
        return rc;

    const json_t *dur = json_object_get(item, "duration_s");
    const json_t *end = json_object_get(item, "end");
    if (dur && end)
        return fit_field_error_set(err, FIT_EINVALID_VALUE, "end",
                                   "send either duration_s or end, not both");
    if (!dur && !end)
        return fit_field_error_set(err, FIT_EMISSING_FIELD, "duration_s",
                                   "duration_s (or end) is required");
    const char *dur_field = dur ? "duration_s" : "end";
    if (dur) {
        double d;
        if ((rc = get_number(item, "duration_s", 1, -DBL_MAX, DBL_MAX, &d, &present, err)))
            return rc;
        if (d <= 0 || d > FIT_MAX_DURATION_MS / 1000)
            return fit_field_error_set(err, FIT_EDURATION_OUT_OF_RANGE, "duration_s",
                                       "duration_s must be > 0 and <= 86400");
        out->end_ms = out->start_ms + llround(d * 1000.0);
    } else {
        int end_off;
        if ((rc = get_time(item, "end", 1, &out->end_ms, &end_off, &present, err)))
            return rc;
    }
    if (out->end_ms <= out->start_ms || out->end_ms - out->start_ms > FIT_MAX_DURATION_MS)
        return fit_field_error_set(err, FIT_EDURATION_OUT_OF_RANGE, dur_field,
                                   "the session must last > 0 s and <= 24 h");
    if ((rc = check_window(r, out->start_ms, "start", err)))
        return rc;
    if (out->end_ms > r->now_ms + r->future_tolerance_ms)
        return fit_field_error_set(err, FIT_EFUTURE_TIME, dur_field,
                                   "the session ends in the future");

    if ((rc = get_string(item, "intensity", 0, &s, err)))
        return rc;
    fit_intensity device = FIT_INTENSITY_NONE;
    if (s && (device = fit_intensity_parse(s)) == FIT_INTENSITY_NONE)
        return fit_field_error_set(err, FIT_EINVALID_VALUE, "intensity",
                                   "intensity must be light, moderate or vigorous");
    int has_met;
    if ((rc = get_number(item, "met", 0, 0.5, 25.0, &out->met, &has_met, err)))
        return rc;
    int64_t steps = -1;
    double dist = -1;
    if ((rc = get_integer(item, "steps", 0, 0, 200000, &steps, &present, err)))
        return rc;
    out->steps = present ? steps : -1;
    if ((rc = get_number(item, "distance_m", 0, 0, 1000000, &dist, &present, err)))
        return rc;
    out->distance_m = present ? dist : -1;
    if ((rc = get_bool(item, "strength", &out->strength, err)))
        return rc;
    if ((rc = get_bool(item, "balance", &out->balance, err)))
        return rc;

    if (device != FIT_INTENSITY_NONE) {
        out->intensity = device;
        out->intensity_source = "device";
    } else if (has_met) {
        out->intensity = fit_intensity_from_met(out->met);
        out->intensity_source = "met";
    } else {
        const fit_met_entry *e = r->met ? fit_met_lookup(r->met, out->type) : NULL;
        if (!e)
            return fit_field_error_set(err, FIT_EUNKNOWN_ACTIVITY_TYPE, "type",
                                       "activity type \"%s\" is not in the MET table; send "
                                       "intensity or met",
                                       out->type);
        out->intensity = fit_intensity_from_met(e->met);
        out->intensity_source = "type";
    }
    split_days(out);
    /* The stored document: what was sent, minus nothing, keys sorted on dump. */
    out->doc = json_deep_copy(item);
    return out->doc ? 0 : fit_field_error_set(err, FIT_ENOMEM, "", NULL);
}

void fit_activity_clear(fit_activity *a)
{
    json_decref(a->doc);
    a->doc = NULL;
}

static const char *const summary_fields[] = {
    "date",         "utc_offset", "source", "recorded_at", "moderate_min",
    "vigorous_min", "light_min",  "steps",  "distance_m",  NULL};

int fit_summary_parse(const json_t *item, const fit_rules *r, fit_summary *out,
                      fit_field_error *err)
{
    memset(out, 0, sizeof(*out));
    if (!json_is_object(item))
        return fit_field_error_set(err, FIT_EINVALID_TYPE, "", "a summary must be an object");
    int rc, present, off;
    const char *s;
    int64_t v;
    if ((rc = check_known(item, summary_fields, err)))
        return rc;
    if ((rc = get_string(item, "date", 1, &s, err)))
        return rc;
    if (fit_date_parse(s, &out->date))
        return fit_field_error_set(err, FIT_EINVALID_VALUE, "date",
                                   "date must be a local date YYYY-MM-DD");
    fit_date_format(out->date, out->date_str);
    fit_date_week_name(out->date, out->week);
    if ((rc = get_string(item, "utc_offset", 1, &s, err)))
        return rc;
    rc = fit_offset_parse(s, &out->offset_min);
    if (rc)
        return fit_field_error_set(err, rc, "utc_offset",
                                   rc == FIT_EBAD_OFFSET
                                       ? "utc_offset must be within -14:00..+14:00"
                                       : "utc_offset must look like +08:00, -05:00 or Z");
    if ((rc = get_string(item, "source", 1, &s, err)))
        return rc;
    if (!fit_id_valid(s, FIT_SOURCE_MAX))
        return fit_field_error_set(err, FIT_EINVALID_VALUE, "source",
                                   "source must be 1..32 characters of [A-Za-z0-9._:@-]");
    snprintf(out->source, sizeof(out->source), "%s", s);
    if ((rc = get_time(item, "recorded_at", 1, &out->recorded_at_ms, &off, &present, err)))
        return rc;
    if (out->recorded_at_ms > r->now_ms + r->future_tolerance_ms)
        return fit_field_error_set(err, FIT_EFUTURE_TIME, "recorded_at",
                                   "recorded_at is in the future");
    /* The day must have begun, and must end inside the acceptance window. */
    int64_t day_start = fit_local_midnight_ms(out->date, out->offset_min);
    if (day_start > r->now_ms + r->future_tolerance_ms)
        return fit_field_error_set(err, FIT_EFUTURE_TIME, "date", "date is in the future");
    if (out->recorded_at_ms < day_start - r->future_tolerance_ms)
        return fit_field_error_set(err, FIT_EINVALID_VALUE, "recorded_at",
                                   "recorded_at is before the start of the day it summarises");
    if (r->max_age_weeks > 0 &&
        day_start + FIT_MS_PER_DAY <= r->now_ms - (int64_t)r->max_age_weeks * 7 * FIT_MS_PER_DAY)
        return fit_field_error_set(err, FIT_ETOO_OLD, "date",
                                   "date is older than the acceptance window of %d weeks",
                                   r->max_age_weeks);

    if ((rc = get_integer(item, "moderate_min", 1, 0, 1440, &v, &present, err)))
        return rc;
    out->moderate_min = (int)v;
    if ((rc = get_integer(item, "vigorous_min", 1, 0, 1440, &v, &present, err)))
        return rc;
    out->vigorous_min = (int)v;
    if ((rc = get_integer(item, "light_min", 0, 0, 1440, &v, &present, err)))
        return rc;
    out->light_min = present ? (int)v : 0;
    if (out->moderate_min + out->vigorous_min + out->light_min > 1440)
        return fit_field_error_set(err, FIT_EINVALID_VALUE, "moderate_min",
                                   "moderate_min + vigorous_min + light_min exceed 1440");
    if ((rc = get_integer(item, "steps", 0, 0, 500000, &v, &present, err)))
        return rc;
    out->steps = present ? v : 0;
    double d = 0;
    if ((rc = get_number(item, "distance_m", 0, 0, 1000000, &d, &present, err)))
        return rc;
    out->distance_m = present ? d : 0;
    out->doc = json_deep_copy(item);
    return out->doc ? 0 : fit_field_error_set(err, FIT_ENOMEM, "", NULL);
}

void fit_summary_clear(fit_summary *s)
{
    json_decref(s->doc);
    s->doc = NULL;
}

static const char *const profile_fields[] = {"birth_year",   "district", "gender", "pregnant",
                                             "display_name", "team",     "boards", NULL};

static int is_slug(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return 0;
    return 1;
}

/* Characters (not bytes) in a UTF-8 string; jansson has already checked it is valid UTF-8. */
static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

int fit_profile_parse(const json_t *obj, int current_year, fit_profile *out, fit_field_error *err)
{
    memset(out, 0, sizeof(*out));
    if (!json_is_object(obj))
        return fit_field_error_set(err, FIT_EINVALID_TYPE, "", "profile must be an object");
    int rc;
    if ((rc = check_known(obj, profile_fields, err)))
        return rc;
    const json_t *v;
    if ((v = json_object_get(obj, "birth_year"))) {
        out->has_birth_year = 1;
        if (!json_is_null(v)) {
            if (!json_is_integer(v))
                return fit_field_error_set(err, FIT_EINVALID_TYPE, "birth_year",
                                           "birth_year must be a whole number or null");
            if (json_integer_value(v) < 1900 || json_integer_value(v) > current_year)
                return fit_field_error_set(err, FIT_EINVALID_VALUE, "birth_year",
                                           "birth_year must be within 1900..%d", current_year);
            out->birth_year = (int)json_integer_value(v);
        }
    }
    const char *s;
    if ((v = json_object_get(obj, "district"))) {
        out->has_district = 1;
        if ((rc = get_string(obj, "district", 0, &s, err)))
            return rc;
        if (s && !is_slug(s, 40))
            return fit_field_error_set(err, FIT_EINVALID_VALUE, "district",
                                       "district must be a slug of [a-z0-9-], e.g. wan-chai");
        snprintf(out->district, sizeof(out->district), "%s", s ? s : "");
    }
    if ((v = json_object_get(obj, "gender"))) {
        out->has_gender = 1;
        if ((rc = get_string(obj, "gender", 0, &s, err)))
            return rc;
        if (s && strcmp(s, "female") && strcmp(s, "male") && strcmp(s, "other") &&
            strcmp(s, "undisclosed"))
            return fit_field_error_set(err, FIT_EINVALID_VALUE, "gender",
                                       "gender must be female, male, other or undisclosed");
        snprintf(out->gender, sizeof(out->gender), "%s", s ? s : "");
    }
    if ((v = json_object_get(obj, "pregnant"))) {
        out->has_pregnant = 1;
        if ((rc = get_bool(obj, "pregnant", &out->pregnant, err)))
            return rc;
    }
    if ((v = json_object_get(obj, "display_name"))) {
        out->has_display_name = 1;
        if ((rc = get_string(obj, "display_name", 0, &s, err)))
            return rc;
        if (s &&
            (utf8_chars(s) < 1 || utf8_chars(s) > 40 || strlen(s) >= sizeof(out->display_name)))
            return fit_field_error_set(err, FIT_EINVALID_VALUE, "display_name",
                                       "display_name must be 1..40 characters");
        for (const char *p = s; p && *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                return fit_field_error_set(err, FIT_EINVALID_VALUE, "display_name",
                                           "display_name must not contain control characters");
        snprintf(out->display_name, sizeof(out->display_name), "%s", s ? s : "");
    }
    if ((v = json_object_get(obj, "team"))) {
        out->has_team = 1;
        if ((rc = get_string(obj, "team", 0, &s, err)))
            return rc;
        if (s && !is_slug(s, 40))
            return fit_field_error_set(err, FIT_EINVALID_VALUE, "team",
                                       "team must be a slug of [a-z0-9-], up to 40");
        snprintf(out->team, sizeof(out->team), "%s", s ? s : "");
    }
    if ((v = json_object_get(obj, "boards"))) {
        out->has_boards = 1;
        out->boards = 1;
        if (!json_is_null(v) && (rc = get_bool(obj, "boards", &out->boards, err)))
            return rc;
    }
    return 0;
}
