/*
 * test_who: WHO 2020 bands and weekly scoring (protocol/fit_who.c) with the
 * real targets of config/who.json.
 *
 * The rules (DESIGN.md, "WHO 2020 rules"): children 5-17 need 420 MVPA
 * minutes (moderate + vigorous, unweighted), vigorous activity on 3 days and
 * strengthening on 3 days; adults 18-64 need 150 equivalent minutes
 * (moderate + 2 x vigorous; 300 = additional benefit) and strengthening on 2
 * days; older adults 65+ as adults plus balance on 3 days; pregnancy 150
 * MVPA minutes. Each case below is built so that the weighted and unweighted
 * figures disagree about the verdict, so that using the wrong one fails.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "fit_time.h"
#include "fit_who.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

static fit_who_targets targets;

static int load_targets(void **state)
{
    (void)state;
    json_error_t jerr;
    json_t *doc = json_load_file(FITSYNC_CONFIG_DIR "/who.json", 0, &jerr);
    if (!doc) {
        fprintf(stderr, "cannot load %s/who.json: %s\n", FITSYNC_CONFIG_DIR, jerr.text);
        return -1;
    }
    char errbuf[256] = "";
    int rc = fit_who_targets_load(&targets, doc, errbuf, sizeof(errbuf));
    json_decref(doc);
    if (rc != 0)
        fprintf(stderr, "who targets: %s\n", errbuf);
    return rc;
}

/* A week with nothing in it. */
static void empty_week(fit_day_totals days[7])
{
    memset(days, 0, 7 * sizeof(days[0]));
}

static fit_week_status score(fit_band band, const fit_day_totals days[7])
{
    fit_week_status s;
    fit_who_score_week(&targets, 2026, 10, band, days, &s);
    return s;
}

static void test_targets_loaded(void **state)
{
    (void)state;
    const fit_who_target *c = &targets.band[FIT_BAND_CHILDREN];
    assert_int_equal(c->min_age, 5);
    assert_int_equal(c->max_age, 17);
    assert_int_equal(c->aerobic_min, 420);
    assert_int_equal(c->measure, FIT_MEASURE_MVPA);
    assert_int_equal(c->vigorous_days, 3);
    assert_int_equal(c->strength_days, 3);
    assert_int_equal(c->balance_days, 0);
    const fit_who_target *a = &targets.band[FIT_BAND_ADULTS];
    assert_int_equal(a->min_age, 18);
    assert_int_equal(a->max_age, 64);
    assert_int_equal(a->aerobic_min, 150);
    assert_int_equal(a->measure, FIT_MEASURE_EQUIVALENT);
    assert_int_equal(a->additional_benefit_min, 300);
    assert_int_equal(a->strength_days, 2);
    assert_int_equal(a->vigorous_days, 0);
    const fit_who_target *o = &targets.band[FIT_BAND_OLDER_ADULTS];
    assert_int_equal(o->min_age, 65);
    assert_true(o->max_age < 0); /* no upper bound */
    assert_int_equal(o->aerobic_min, 150);
    assert_int_equal(o->measure, FIT_MEASURE_EQUIVALENT);
    assert_int_equal(o->strength_days, 2);
    assert_int_equal(o->balance_days, 3);
    const fit_who_target *p = &targets.band[FIT_BAND_PREGNANCY];
    assert_int_equal(p->aerobic_min, 150);
    assert_int_equal(p->measure, FIT_MEASURE_MVPA);
    assert_int_equal(p->strength_days + p->vigorous_days + p->balance_days, 0);
    assert_non_null(strstr(targets.source, "WHO"));

    assert_string_equal(fit_band_name(FIT_BAND_CHILDREN), "children");
    assert_string_equal(fit_band_name(FIT_BAND_ADULTS), "adults");
    assert_string_equal(fit_band_name(FIT_BAND_OLDER_ADULTS), "older_adults");
    assert_string_equal(fit_band_name(FIT_BAND_PREGNANCY), "pregnancy");
}

static void test_targets_rejects(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        const char *needle; /* what errbuf must name */
    } cases[] = {
        {"{\"bands\": {}}", "source"},
        {"{\"source\": \"WHO\", \"bands\": {\"children\": {\"aerobic_min\": 420, \"measure\":"
         " \"weighted\"}}}",
         "children.measure"},
        {"{\"source\": \"WHO\", \"bands\": {\"children\": {\"measure\": \"mvpa\"}}}",
         "children.aerobic_min"},
        {"{\"source\": \"WHO\", \"bands\": {\"children\": {\"aerobic_min\": 420, \"measure\":"
         " \"mvpa\", \"vigorous_days\": 8}}}",
         "children.vigorous_days"},
        {"{\"source\": \"WHO\", \"bands\": {\"children\": {\"aerobic_min\": 420, \"measure\":"
         " \"mvpa\"}}}",
         "adults"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *doc = json_loads(cases[i].json, 0, NULL);
        assert_non_null(doc);
        fit_who_targets t;
        char errbuf[256] = "";
        int rc = fit_who_targets_load(&t, doc, errbuf, sizeof(errbuf));
        json_decref(doc);
        if (rc == 0 || strstr(errbuf, cases[i].needle) == NULL)
            fail_msg("%s: rc %d, error \"%s\", want it to name %s", cases[i].json, rc, errbuf,
                     cases[i].needle);
    }
}

static void test_band(void **state)
{
    (void)state;
    /* Age is the ISO year minus the birth year. */
    assert_int_equal(fit_who_band(&targets, 2022, 0, 2026), FIT_BAND_CHILDREN);     /* 4 */
    assert_int_equal(fit_who_band(&targets, 2021, 0, 2026), FIT_BAND_CHILDREN);     /* 5 */
    assert_int_equal(fit_who_band(&targets, 2009, 0, 2026), FIT_BAND_CHILDREN);     /* 17 */
    assert_int_equal(fit_who_band(&targets, 2008, 0, 2026), FIT_BAND_ADULTS);       /* 18 */
    assert_int_equal(fit_who_band(&targets, 1962, 0, 2026), FIT_BAND_ADULTS);       /* 64 */
    assert_int_equal(fit_who_band(&targets, 1961, 0, 2026), FIT_BAND_OLDER_ADULTS); /* 65 */
    assert_int_equal(fit_who_band(&targets, 1936, 0, 2026), FIT_BAND_OLDER_ADULTS); /* 90 */
    assert_int_equal(fit_who_band(&targets, 1900, 0, 2026), FIT_BAND_OLDER_ADULTS); /* 126 */
    assert_int_equal(fit_who_band(&targets, 2026, 0, 2026), FIT_BAND_CHILDREN);     /* 0 */
    /* The same person changes band with the week's ISO year. */
    assert_int_equal(fit_who_band(&targets, 2008, 0, 2025), FIT_BAND_CHILDREN); /* 17 */
    assert_int_equal(fit_who_band(&targets, 1961, 0, 2025), FIT_BAND_ADULTS);   /* 64 */
    /* Unknown birth year: scored as an adult. */
    assert_int_equal(fit_who_band(&targets, 0, 0, 2026), FIT_BAND_ADULTS);
    /* The pregnancy flag wins over age, and over an unknown birth year. */
    assert_int_equal(fit_who_band(&targets, 1990, 1, 2026), FIT_BAND_PREGNANCY);
    assert_int_equal(fit_who_band(&targets, 0, 1, 2026), FIT_BAND_PREGNANCY);
    assert_int_equal(fit_who_band(&targets, 2009, 1, 2026), FIT_BAND_PREGNANCY);
}

static void test_adults(void **state)
{
    (void)state;
    fit_day_totals d[7];
    /* 100 moderate + 25 vigorous = 150 equivalent, though only 125 MVPA: met. */
    empty_week(d);
    d[0].moderate_min = 60;
    d[2].moderate_min = 40;
    d[4].vigorous_min = 25;
    fit_week_status s = score(FIT_BAND_ADULTS, d);
    assert_int_equal(s.moderate_min, 100);
    assert_int_equal(s.vigorous_min, 25);
    assert_int_equal(s.mvpa_min, 125);
    assert_int_equal(s.equivalent_min, 150);
    assert_int_equal(s.aerobic_met, 1);
    assert_int_equal(s.additional_benefit, 0);
    assert_int_equal(s.guideline_met, 0); /* no strengthening yet */
    assert_int_equal(s.active_days, 3);
    assert_int_equal(s.vigorous_days, 1);
    /* Strengthening on two days completes the guideline; one day does not. */
    d[1].strength = 1;
    s = score(FIT_BAND_ADULTS, d);
    assert_int_equal(s.strength_days, 1);
    assert_int_equal(s.guideline_met, 0);
    d[6].strength = 1;
    s = score(FIT_BAND_ADULTS, d);
    assert_int_equal(s.strength_days, 2);
    assert_int_equal(s.guideline_met, 1);
    /* One minute less: 99 + 2 x 25 = 149. */
    d[2].moderate_min = 39;
    s = score(FIT_BAND_ADULTS, d);
    assert_int_equal(s.equivalent_min, 149);
    assert_int_equal(s.aerobic_met, 0);
    assert_int_equal(s.guideline_met, 0);
    /* 149 moderate + 0 vigorous: an adult cannot meet it on MVPA alone either. */
    empty_week(d);
    d[3].moderate_min = 149;
    s = score(FIT_BAND_ADULTS, d);
    assert_int_equal(s.aerobic_met, 0);
    /* 75 vigorous alone is 150 equivalent. */
    empty_week(d);
    d[3].vigorous_min = 75;
    s = score(FIT_BAND_ADULTS, d);
    assert_int_equal(s.mvpa_min, 75);
    assert_int_equal(s.equivalent_min, 150);
    assert_int_equal(s.aerobic_met, 1);

    /* Additional benefit at 300 equivalent: 200 + 2 x 50. */
    empty_week(d);
    d[0].moderate_min = 200;
    d[1].vigorous_min = 50;
    s = score(FIT_BAND_ADULTS, d);
    assert_int_equal(s.equivalent_min, 300);
    assert_int_equal(s.additional_benefit, 1);
    d[0].moderate_min = 199;
    s = score(FIT_BAND_ADULTS, d);
    assert_int_equal(s.equivalent_min, 299);
    assert_int_equal(s.additional_benefit, 0);
    assert_int_equal(s.aerobic_met, 1);

    /* Light minutes never count towards the target. */
    empty_week(d);
    for (int i = 0; i < 7; i++)
        d[i].light_min = 300;
    s = score(FIT_BAND_ADULTS, d);
    assert_int_equal(s.light_min, 2100);
    assert_int_equal(s.mvpa_min, 0);
    assert_int_equal(s.aerobic_met, 0);
    assert_int_equal(s.active_days, 0);
}

static void test_children(void **state)
{
    (void)state;
    fit_day_totals d[7];
    /* 300 moderate + 120 vigorous = 420 MVPA (540 equivalent): aerobic target met. */
    empty_week(d);
    for (int i = 0; i < 6; i++)
        d[i].moderate_min = 50;
    d[0].vigorous_min = 40;
    d[2].vigorous_min = 40;
    d[4].vigorous_min = 40;
    fit_week_status s = score(FIT_BAND_CHILDREN, d);
    assert_int_equal(s.mvpa_min, 420);
    assert_int_equal(s.equivalent_min, 540);
    assert_int_equal(s.aerobic_met, 1);
    assert_int_equal(s.vigorous_days, 3);
    assert_int_equal(s.guideline_met, 0); /* strengthening on no days */
    d[1].strength = 1;
    d[3].strength = 1;
    s = score(FIT_BAND_CHILDREN, d);
    assert_int_equal(s.guideline_met, 0); /* two days are not three */
    d[5].strength = 1;
    s = score(FIT_BAND_CHILDREN, d);
    assert_int_equal(s.strength_days, 3);
    assert_int_equal(s.guideline_met, 1);
    assert_int_equal(s.additional_benefit, 0); /* not defined for children */
    /* Vigorous on only two days. */
    d[4].vigorous_min = 0;
    d[2].vigorous_min = 80;
    s = score(FIT_BAND_CHILDREN, d);
    assert_int_equal(s.mvpa_min, 420);
    assert_int_equal(s.vigorous_days, 2);
    assert_int_equal(s.aerobic_met, 1);
    assert_int_equal(s.guideline_met, 0);

    /* 200 moderate + 200 vigorous = 400 MVPA, though 600 equivalent: not met. */
    empty_week(d);
    for (int i = 0; i < 4; i++) {
        d[i].moderate_min = 50;
        d[i].vigorous_min = 50;
        d[i].strength = 1;
    }
    s = score(FIT_BAND_CHILDREN, d);
    assert_int_equal(s.mvpa_min, 400);
    assert_int_equal(s.equivalent_min, 600);
    assert_int_equal(s.vigorous_days, 4);
    assert_int_equal(s.strength_days, 4);
    assert_int_equal(s.aerobic_met, 0);
    assert_int_equal(s.guideline_met, 0);
    /* 60 minutes a day, every day. */
    empty_week(d);
    for (int i = 0; i < 7; i++)
        d[i].moderate_min = 60;
    s = score(FIT_BAND_CHILDREN, d);
    assert_int_equal(s.mvpa_min, 420);
    assert_int_equal(s.aerobic_met, 1);
    assert_int_equal(s.vigorous_days, 0);
    assert_int_equal(s.guideline_met, 0);
}

static void test_older_adults(void **state)
{
    (void)state;
    fit_day_totals d[7];
    empty_week(d);
    d[0].moderate_min = 50;
    d[2].moderate_min = 50;
    d[4].vigorous_min = 25; /* 100 + 2 x 25 = 150 equivalent, 125 MVPA */
    d[1].strength = 1;
    d[3].strength = 1;
    d[1].balance = 1;
    d[5].balance = 1;
    fit_week_status s = score(FIT_BAND_OLDER_ADULTS, d);
    assert_int_equal(s.equivalent_min, 150);
    assert_int_equal(s.aerobic_met, 1);
    assert_int_equal(s.strength_days, 2);
    assert_int_equal(s.balance_days, 2);
    assert_int_equal(s.guideline_met, 0); /* balance on 2 days, 3 needed */
    /* The same week is enough for a younger adult. */
    s = score(FIT_BAND_ADULTS, d);
    assert_int_equal(s.guideline_met, 1);
    d[6].balance = 1;
    s = score(FIT_BAND_OLDER_ADULTS, d);
    assert_int_equal(s.balance_days, 3);
    assert_int_equal(s.guideline_met, 1);
    /* Balance without the aerobic minutes is not enough. */
    d[4].vigorous_min = 24;
    s = score(FIT_BAND_OLDER_ADULTS, d);
    assert_int_equal(s.equivalent_min, 148);
    assert_int_equal(s.aerobic_met, 0);
    assert_int_equal(s.guideline_met, 0);
    /* Additional benefit at 300, as adults. */
    d[4].vigorous_min = 100;
    s = score(FIT_BAND_OLDER_ADULTS, d);
    assert_int_equal(s.equivalent_min, 300);
    assert_int_equal(s.additional_benefit, 1);
}

static void test_pregnancy(void **state)
{
    (void)state;
    fit_day_totals d[7];
    /* 100 moderate + 40 vigorous = 140 MVPA (180 equivalent): not met. */
    empty_week(d);
    d[0].moderate_min = 30;
    d[2].moderate_min = 30;
    d[4].moderate_min = 40;
    d[5].vigorous_min = 40;
    fit_week_status s = score(FIT_BAND_PREGNANCY, d);
    assert_int_equal(s.mvpa_min, 140);
    assert_int_equal(s.equivalent_min, 180);
    assert_int_equal(s.aerobic_met, 0);
    assert_int_equal(s.guideline_met, 0);
    /* The same week meets the adult target, which is weighted. */
    s = score(FIT_BAND_ADULTS, d);
    assert_int_equal(s.aerobic_met, 1);
    /* Ten more moderate minutes: 150 MVPA, met; nothing else is required. */
    d[6].moderate_min = 10;
    s = score(FIT_BAND_PREGNANCY, d);
    assert_int_equal(s.mvpa_min, 150);
    assert_int_equal(s.aerobic_met, 1);
    assert_int_equal(s.guideline_met, 1);
    assert_int_equal(s.strength_days, 0);
}

static void expect_day(const fit_day_totals *d, int y, int m, int day)
{
    if (d->date.year != y || d->date.month != m || d->date.day != day)
        fail_msg("day is %04d-%02d-%02d, want %04d-%02d-%02d", d->date.year, d->date.month,
                 d->date.day, y, m, day);
}

static void test_week_days(void **state)
{
    (void)state;
    fit_day_totals d[7];
    empty_week(d);
    /* Garbage dates from the caller are replaced. */
    for (int i = 0; i < 7; i++) {
        d[i].date.year = 1999;
        d[i].date.month = 1;
        d[i].date.day = 1;
        d[i].steps = 1000 * (i + 1);
        d[i].distance_m = 100.5;
    }
    d[3].moderate_min = 33;
    fit_week_status s;
    fit_who_score_week(&targets, 2026, 10, FIT_BAND_ADULTS, d, &s);
    assert_string_equal(s.week, "2026-W10");
    for (int i = 0; i < 7; i++)
        expect_day(&s.days[i], 2026, 3, 2 + i); /* Monday 2 .. Sunday 8 March */
    for (int i = 0; i < 7; i++)
        assert_int_equal(fit_weekday(s.days[i].date), i + 1);
    /* The day's figures are kept with its date. */
    assert_int_equal(s.days[3].moderate_min, 33);
    assert_int_equal(s.days[3].steps, 4000);
    assert_int_equal(s.steps, 28000);
    assert_true(s.distance_m > 703.49 && s.distance_m < 703.51);

    /* A week across New Year: 2020-W53 is 2020-12-28 .. 2021-01-03. */
    fit_who_score_week(&targets, 2020, 53, FIT_BAND_ADULTS, d, &s);
    assert_string_equal(s.week, "2020-W53");
    expect_day(&s.days[0], 2020, 12, 28);
    expect_day(&s.days[3], 2020, 12, 31);
    expect_day(&s.days[4], 2021, 1, 1);
    expect_day(&s.days[6], 2021, 1, 3);
    /* 2026-W01 starts in 2025. */
    fit_who_score_week(&targets, 2026, 1, FIT_BAND_ADULTS, d, &s);
    assert_string_equal(s.week, "2026-W01");
    expect_day(&s.days[0], 2025, 12, 29);
    expect_day(&s.days[6], 2026, 1, 4);
}

static json_int_t int_at(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_integer(v))
        fail_msg("\"%s\" is not an integer", key);
    return json_integer_value(v);
}

static int bool_at(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_boolean(v))
        fail_msg("\"%s\" is not a boolean", key);
    return json_is_true(v);
}

static void test_week_json(void **state)
{
    (void)state;
    fit_day_totals d[7];
    empty_week(d);
    d[0].moderate_min = 100;
    d[4].vigorous_min = 25;
    d[4].strength = 1;
    d[5].strength = 1;
    d[6].balance = 1;
    d[6].steps = 12345;
    fit_week_status s;
    fit_who_score_week(&targets, 2026, 10, FIT_BAND_ADULTS, d, &s);
    json_t *j = fit_week_status_json(&s);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "week")), "2026-W10");
    assert_string_equal(json_string_value(json_object_get(j, "band")), "adults");
    const json_t *target = json_object_get(j, "target");
    assert_true(json_is_object(target));
    assert_int_equal(int_at(target, "aerobic_min"), 150);
    const char *measure = json_string_value(json_object_get(target, "measure"));
    assert_non_null(measure);
    /* The measure names the week's figure that the target is compared with. */
    assert_non_null(strstr(measure, "equivalent"));
    assert_int_equal(int_at(j, "moderate_min"), 100);
    assert_int_equal(int_at(j, "vigorous_min"), 25);
    assert_int_equal(int_at(j, "mvpa_min"), 125);
    assert_int_equal(int_at(j, "equivalent_min"), 150);
    assert_int_equal(bool_at(j, "aerobic_met"), 1);
    assert_int_equal(bool_at(j, "guideline_met"), 1);
    if (json_object_get(j, measure))
        assert_int_equal(int_at(j, measure), 150);
    const json_t *days = json_object_get(j, "days");
    assert_true(json_is_array(days));
    assert_int_equal(json_array_size(days), 7);
    for (size_t i = 0; i < 7; i++) {
        const json_t *day = json_array_get(days, i);
        char want[FIT_DATE_LEN];
        snprintf(want, sizeof(want), "2026-03-%02zu", 2 + i);
        assert_string_equal(json_string_value(json_object_get(day, "date")), want);
    }
    assert_int_equal(int_at(json_array_get(days, 0), "moderate_min"), 100);
    assert_int_equal(int_at(json_array_get(days, 4), "vigorous_min"), 25);
    assert_int_equal(bool_at(json_array_get(days, 4), "strength"), 1);
    assert_int_equal(bool_at(json_array_get(days, 6), "balance"), 1);
    assert_int_equal(int_at(json_array_get(days, 6), "steps"), 12345);
    json_decref(j);

    /* A child's week is measured in MVPA minutes and not met here. */
    fit_who_score_week(&targets, 2026, 10, FIT_BAND_CHILDREN, d, &s);
    j = fit_week_status_json(&s);
    assert_string_equal(json_string_value(json_object_get(j, "band")), "children");
    target = json_object_get(j, "target");
    assert_int_equal(int_at(target, "aerobic_min"), 420);
    measure = json_string_value(json_object_get(target, "measure"));
    assert_non_null(measure);
    assert_non_null(strstr(measure, "mvpa"));
    assert_int_equal(bool_at(j, "aerobic_met"), 0);
    assert_int_equal(bool_at(j, "guideline_met"), 0);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_targets_loaded), cmocka_unit_test(test_targets_rejects),
        cmocka_unit_test(test_band),           cmocka_unit_test(test_adults),
        cmocka_unit_test(test_children),       cmocka_unit_test(test_older_adults),
        cmocka_unit_test(test_pregnancy),      cmocka_unit_test(test_week_days),
        cmocka_unit_test(test_week_json),
    };
    return cmocka_run_group_tests(tests, load_targets, NULL);
}
