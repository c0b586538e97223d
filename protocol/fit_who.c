/*
 * fit_who: scoring a week. Pure arithmetic on per-day totals that Redis
 * already holds; the per-day union of overlapping sessions and the
 * summary/session "larger of the two" rule happen in the aggregation
 * (workers/fitsync.lua), so this file only adds up seven days and compares
 * them with the band's targets.
 */
#include "fit_who.h"
#include "fit_error.h"

#include <stdio.h>
#include <string.h>

static const char *const band_names[FIT_BAND_COUNT] = {"children", "adults", "older_adults",
                                                       "pregnancy"};

const char *fit_band_name(fit_band b)
{
    return (unsigned)b < FIT_BAND_COUNT ? band_names[b] : "adults";
}

static int get_int(const json_t *o, const char *key, int dflt, int *out)
{
    const json_t *v = json_object_get(o, key);
    if (!v) {
        *out = dflt;
        return 0;
    }
    if (json_is_null(v)) {
        *out = -1;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 10080)
        return -1;
    *out = (int)json_integer_value(v);
    return 0;
}

int fit_who_targets_load(fit_who_targets *t, const json_t *doc, char *errbuf, size_t errlen)
{
    memset(t, 0, sizeof(*t));
    const char *src = json_string_value(json_object_get(doc, "source"));
    if (!src || !*src) {
        snprintf(errbuf, errlen, "who targets: \"source\" must cite the guideline");
        return FIT_EINVALID_VALUE;
    }
    snprintf(t->source, sizeof(t->source), "%s", src);
    const json_t *bands = json_object_get(doc, "bands");
    for (int b = 0; b < FIT_BAND_COUNT; b++) {
        const json_t *o = json_object_get(bands, band_names[b]);
        fit_who_target *g = &t->band[b];
        const char *measure = json_string_value(json_object_get(o, "measure"));
        const char *bad = NULL;
        if (!json_is_object(o))
            bad = "";
        else if (!measure || (strcmp(measure, "mvpa") && strcmp(measure, "equivalent")))
            bad = ".measure";
        else if (get_int(o, "aerobic_min", -2, &g->aerobic_min) || g->aerobic_min <= 0)
            bad = ".aerobic_min";
        else if (get_int(o, "min_age", 0, &g->min_age))
            bad = ".min_age";
        else if (get_int(o, "max_age", -1, &g->max_age))
            bad = ".max_age";
        else if (get_int(o, "additional_benefit_min", 0, &g->additional_benefit_min))
            bad = ".additional_benefit_min";
        else if (get_int(o, "vigorous_days", 0, &g->vigorous_days) || g->vigorous_days > 7)
            bad = ".vigorous_days";
        else if (get_int(o, "strength_days", 0, &g->strength_days) || g->strength_days > 7)
            bad = ".strength_days";
        else if (get_int(o, "balance_days", 0, &g->balance_days) || g->balance_days > 7)
            bad = ".balance_days";
        if (bad) {
            snprintf(errbuf, errlen, "who targets: bands.%s%s is missing or invalid", band_names[b],
                     bad);
            return FIT_EINVALID_VALUE;
        }
        g->measure = strcmp(measure, "mvpa") == 0 ? FIT_MEASURE_MVPA : FIT_MEASURE_EQUIVALENT;
    }
    return 0;
}

fit_band fit_who_band(const fit_who_targets *t, int birth_year, int pregnant, int iso_year)
{
    if (pregnant)
        return FIT_BAND_PREGNANCY;
    if (birth_year <= 0)
        return FIT_BAND_ADULTS;
    int age = iso_year - birth_year;
    if (age < t->band[FIT_BAND_CHILDREN].min_age)
        return FIT_BAND_CHILDREN;
    for (int b = FIT_BAND_CHILDREN; b <= FIT_BAND_OLDER_ADULTS; b++) {
        const fit_who_target *g = &t->band[b];
        if (age >= g->min_age && (g->max_age < 0 || age <= g->max_age))
            return (fit_band)b;
    }
    return FIT_BAND_ADULTS;
}

void fit_who_score_week(const fit_who_targets *t, int iso_year, int week, fit_band band,
                        const fit_day_totals days[7], fit_week_status *out)
{
    memset(out, 0, sizeof(*out));
    fit_iso_week_format(iso_year, week, out->week);
    out->band = band;
    out->target = t->band[band];
    int64_t monday = fit_days_from_civil(fit_iso_week_monday(iso_year, week));
    for (int i = 0; i < 7; i++) {
        fit_day_totals *d = &out->days[i];
        *d = days[i];
        d->date = fit_civil_from_days(monday + i);
        out->moderate_min += d->moderate_min;
        out->vigorous_min += d->vigorous_min;
        out->light_min += d->light_min;
        out->steps += d->steps;
        out->distance_m += d->distance_m;
        out->vigorous_days += d->vigorous_min > 0;
        out->strength_days += d->strength != 0;
        out->balance_days += d->balance != 0;
        out->active_days += d->moderate_min + d->vigorous_min > 0;
    }
    out->mvpa_min = out->moderate_min + out->vigorous_min;
    out->equivalent_min = out->moderate_min + 2 * out->vigorous_min;
    int figure = out->target.measure == FIT_MEASURE_MVPA ? out->mvpa_min : out->equivalent_min;
    out->aerobic_met = figure >= out->target.aerobic_min;
    out->additional_benefit =
        out->target.additional_benefit_min > 0 && figure >= out->target.additional_benefit_min;
    out->guideline_met = out->aerobic_met && out->vigorous_days >= out->target.vigorous_days &&
                         out->strength_days >= out->target.strength_days &&
                         out->balance_days >= out->target.balance_days;
}

json_t *fit_week_status_json(const fit_week_status *s)
{
    json_t *days = json_array();
    for (int i = 0; i < 7; i++) {
        const fit_day_totals *d = &s->days[i];
        char date[FIT_DATE_LEN];
        fit_date_format(d->date, date);
        json_array_append_new(
            days,
            json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:b, s:b, s:I, s:f}", "date", date,
                      "moderate_min", d->moderate_min, "vigorous_min", d->vigorous_min, "light_min",
                      d->light_min, "mvpa_min", d->moderate_min + d->vigorous_min, "equivalent_min",
                      d->moderate_min + 2 * d->vigorous_min, "strength", d->strength, "balance",
                      d->balance, "steps", (json_int_t)d->steps, "distance_m", d->distance_m));
    }
    const fit_who_target *g = &s->target;
    json_t *target = json_pack(
        "{s:i, s:s, s:i, s:i, s:i}", "aerobic_min", g->aerobic_min, "measure",
        g->measure == FIT_MEASURE_MVPA ? "mvpa_min" : "equivalent_min", "vigorous_days",
        g->vigorous_days, "strength_days", g->strength_days, "balance_days", g->balance_days);
    if (g->additional_benefit_min > 0)
        json_object_set_new(target, "additional_benefit_min",
                            json_integer(g->additional_benefit_min));
    return json_pack("{s:s, s:s, s:o, s:i, s:i, s:i, s:i, s:i, s:b, s:b, s:b, s:i, s:i, s:i, "
                     "s:i, s:I, s:f, s:o}",
                     "week", s->week, "band", fit_band_name(s->band), "target", target,
                     "moderate_min", s->moderate_min, "vigorous_min", s->vigorous_min, "light_min",
                     s->light_min, "mvpa_min", s->mvpa_min, "equivalent_min", s->equivalent_min,
                     "aerobic_met", s->aerobic_met, "guideline_met", s->guideline_met,
                     "additional_benefit", s->additional_benefit, "active_days", s->active_days,
                     "vigorous_days", s->vigorous_days, "strength_days", s->strength_days,
                     "balance_days", s->balance_days, "steps", (json_int_t)s->steps, "distance_m",
                     s->distance_m, "days", days);
}
