/*
 * test_activity: validation of sessions, daily summaries and profiles, and
 * the split of a session at local midnight (protocol/fit_activity.c).
 *
 * The server's clock is fixed at 2026-03-10T12:00:00Z (a Tuesday in
 * 2026-W11), the acceptance window is 8 weeks (so the oldest accepted instant
 * is 2026-01-13T12:00:00Z) and the future tolerance 10 minutes. The MET table
 * is the real config/met.json. Weeks: 2026-W10 is Monday 2026-03-02 to
 * Sunday 2026-03-08; 2026-W11 starts on Monday 2026-03-09.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "fit_activity.h"
#include "fit_error.h"
#include "fit_met.h"
#include "fit_time.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOW_MS 1773144000000LL /* 2026-03-10T12:00:00Z */
#define MIN_MS 60000LL
#define HOUR_MS 3600000LL

static fit_met_table met_table;

static int load_met(void **state)
{
    (void)state;
    json_error_t jerr;
    json_t *doc = json_load_file(FITSYNC_CONFIG_DIR "/met.json", 0, &jerr);
    if (!doc) {
        fprintf(stderr, "cannot load %s/met.json: %s\n", FITSYNC_CONFIG_DIR, jerr.text);
        return -1;
    }
    char errbuf[256] = "";
    int rc = fit_met_table_load(&met_table, doc, errbuf, sizeof(errbuf));
    json_decref(doc);
    if (rc != 0)
        fprintf(stderr, "met table: %s\n", errbuf);
    return rc;
}

static int free_met(void **state)
{
    (void)state;
    fit_met_table_free(&met_table);
    return 0;
}

static fit_rules rules(void)
{
    fit_rules r;
    memset(&r, 0, sizeof(r));
    int off;
    /* The clock comes from the parser so the fixture reads as a date. */
    assert_int_equal(fit_time_parse("2026-03-10T12:00:00Z", &r.now_ms, &off), 0);
    assert_int_equal(r.now_ms, NOW_MS);
    r.max_age_weeks = 8;
    r.future_tolerance_ms = 600000;
    r.met = &met_table;
    return r;
}

static int64_t instant(const char *s)
{
    int64_t ms;
    int off;
    int rc = fit_time_parse(s, &ms, &off);
    if (rc != 0)
        fail_msg("fixture time \"%s\" does not parse (%d)", s, rc);
    return ms;
}

static json_t *load(const char *text)
{
    json_error_t jerr;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);
    if (!j)
        fail_msg("fixture JSON does not parse: %s: %s", jerr.text, text);
    return j;
}

/* Parses one activity with the given rules; the caller clears *a on success. */
static int parse_activity(const char *text, const fit_rules *r, fit_activity *a,
                          fit_field_error *err)
{
    json_t *item = load(text);
    memset(err, 0, sizeof(*err));
    int rc = fit_activity_parse(item, r, a, err);
    json_decref(item);
    if (rc != 0) {
        assert_null(a->doc);
        assert_int_equal(err->code, rc);
        assert_true(err->message[0] != '\0');
    }
    return rc;
}

static void expect_activity_ok(const char *text, const fit_rules *r, fit_activity *a)
{
    fit_field_error err;
    int rc = parse_activity(text, r, a, &err);
    if (rc != 0)
        fail_msg("%s\n  rejected: %s field \"%s\": %s", text, fit_err_name(rc), err.field,
                 err.message);
    assert_non_null(a->doc);
}

static void expect_activity_error(const char *text, const fit_rules *r, int code, const char *field)
{
    fit_activity a;
    fit_field_error err;
    int rc = parse_activity(text, r, &a, &err);
    if (rc == 0) {
        fit_activity_clear(&a);
        fail_msg("%s\n  accepted, want %s field \"%s\"", text, fit_err_name(code), field);
    }
    if (rc != code || strcmp(err.field, field) != 0)
        fail_msg("%s\n  got %s field \"%s\" (%s), want %s field \"%s\"", text, fit_err_name(rc),
                 err.field, err.message, fit_err_name(code), field);
}

static void expect_intensity(const char *text, fit_intensity want, const char *source)
{
    fit_rules r = rules();
    fit_activity a;
    expect_activity_ok(text, &r, &a);
    if (a.intensity != want || strcmp(a.intensity_source, source) != 0)
        fail_msg("%s\n  intensity %s from %s, want %s from %s", text,
                 fit_intensity_name(a.intensity), a.intensity_source, fit_intensity_name(want),
                 source);
    fit_activity_clear(&a);
}

/* ---------------------------------------------------------------- sessions */

static void test_good_session(void **state)
{
    (void)state;
    fit_rules r = rules();
    fit_activity a;
    const char *text = "{\"client_id\": \"phone-1:run.42\", \"type\": \"running\","
                       " \"start\": \"2026-03-09T07:00:00+08:00\", \"duration_s\": 1800,"
                       " \"steps\": 5000, \"distance_m\": 5200.5}";
    expect_activity_ok(text, &r, &a);
    assert_string_equal(a.client_id, "phone-1:run.42");
    assert_string_equal(a.type, "running");
    /* 07:00 at +08:00 is 23:00Z the day before: 37 h before the clock. */
    assert_int_equal(a.start_ms, NOW_MS - 37 * HOUR_MS);
    assert_int_equal(a.end_ms, NOW_MS - 37 * HOUR_MS + 30 * MIN_MS);
    assert_int_equal(a.offset_min, 480);
    assert_int_equal(a.intensity, FIT_INTENSITY_VIGOROUS); /* running, 8.0 MET */
    assert_string_equal(a.intensity_source, "type");
    assert_true(a.met == 0.0);
    assert_int_equal(a.steps, 5000);
    assert_true(a.distance_m == 5200.5);
    assert_int_equal(a.strength, 0);
    assert_int_equal(a.balance, 0);
    /* One local day: Monday 2026-03-09, in 2026-W11 (although 2026-03-08 in UTC). */
    assert_int_equal(a.nseg, 1);
    assert_string_equal(a.seg[0].date_str, "2026-03-09");
    assert_int_equal(a.seg[0].date.year, 2026);
    assert_int_equal(a.seg[0].date.month, 3);
    assert_int_equal(a.seg[0].date.day, 9);
    assert_string_equal(a.seg[0].week, "2026-W11");
    assert_int_equal(a.seg[0].start_ms, a.start_ms);
    assert_int_equal(a.seg[0].end_ms, a.end_ms);
    assert_int_equal(a.seg[0].steps, 5000);
    assert_true(a.seg[0].distance_m == 5200.5);
    /* The stored document is what was sent. */
    json_t *sent = load(text);
    assert_true(json_equal(a.doc, sent));
    json_decref(sent);
    fit_activity_clear(&a);
    assert_null(a.doc);
}

static void test_optional_fields(void **state)
{
    (void)state;
    fit_rules r = rules();
    fit_activity a;
    expect_activity_ok("{\"client_id\": \"s1\", \"type\": \"strength_training\","
                       " \"start\": \"2026-03-10T06:00:00Z\", \"duration_s\": 2700,"
                       " \"strength\": true, \"balance\": false}",
                       &r, &a);
    assert_int_equal(a.strength, 1);
    assert_int_equal(a.balance, 0);
    assert_int_equal(a.steps, -1);
    assert_true(a.distance_m == -1);
    assert_int_equal(a.seg[0].steps, -1);
    assert_true(a.seg[0].distance_m == -1);
    assert_int_equal(a.intensity, FIT_INTENSITY_MODERATE); /* 3.5 MET */
    fit_activity_clear(&a);

    /* null counts as absent for optional fields. */
    expect_activity_ok("{\"client_id\": \"s2\", \"type\": \"tai_chi\", \"start\":"
                       " \"2026-03-10T06:00:00Z\", \"duration_s\": 600, \"balance\": true,"
                       " \"steps\": null, \"intensity\": null, \"met\": null}",
                       &r, &a);
    assert_int_equal(a.balance, 1);
    assert_int_equal(a.steps, -1);
    assert_string_equal(a.intensity_source, "type");
    fit_activity_clear(&a);

    /* A fractional duration is kept to the millisecond. */
    expect_activity_ok("{\"client_id\": \"s3\", \"type\": \"yoga\", \"start\":"
                       " \"2026-03-10T06:00:00Z\", \"duration_s\": 90.5}",
                       &r, &a);
    assert_int_equal(a.end_ms - a.start_ms, 90500);
    fit_activity_clear(&a);

    /* The limits of steps. */
    expect_activity_ok("{\"client_id\": \"s4\", \"type\": \"walking\", \"start\":"
                       " \"2026-03-10T06:00:00Z\", \"duration_s\": 600, \"steps\": 200000,"
                       " \"distance_m\": 0}",
                       &r, &a);
    assert_int_equal(a.steps, 200000);
    assert_true(a.distance_m == 0);
    fit_activity_clear(&a);
}

static void test_met_table(void **state)
{
    (void)state;
    const fit_met_entry *e = fit_met_lookup(&met_table, "running");
    assert_non_null(e);
    assert_string_equal(e->code, "12150");
    assert_true(e->met == 8.0);
    e = fit_met_lookup(&met_table, "yoga");
    assert_non_null(e);
    assert_true(e->met == 2.5);
    assert_null(fit_met_lookup(&met_table, "quidditch"));
    assert_null(fit_met_lookup(&met_table, "Running"));

    assert_int_equal(fit_intensity_from_met(1.0), FIT_INTENSITY_LIGHT);
    assert_int_equal(fit_intensity_from_met(2.99), FIT_INTENSITY_LIGHT);
    assert_int_equal(fit_intensity_from_met(3.0), FIT_INTENSITY_MODERATE);
    assert_int_equal(fit_intensity_from_met(5.99), FIT_INTENSITY_MODERATE);
    assert_int_equal(fit_intensity_from_met(6.0), FIT_INTENSITY_VIGOROUS);
    assert_int_equal(fit_intensity_from_met(12.0), FIT_INTENSITY_VIGOROUS);
    assert_int_equal(fit_intensity_parse("light"), FIT_INTENSITY_LIGHT);
    assert_int_equal(fit_intensity_parse("moderate"), FIT_INTENSITY_MODERATE);
    assert_int_equal(fit_intensity_parse("vigorous"), FIT_INTENSITY_VIGOROUS);
    assert_int_equal(fit_intensity_parse("Vigorous"), FIT_INTENSITY_NONE);
    assert_int_equal(fit_intensity_parse(NULL), FIT_INTENSITY_NONE);
    assert_string_equal(fit_intensity_name(FIT_INTENSITY_MODERATE), "moderate");

    /* A table entry without a MET value is refused, naming the entry. */
    json_t *bad = load("{\"activities\": [{\"type\": \"a\", \"code\": \"1\", \"met\": 3},"
                       " {\"type\": \"b\", \"code\": \"2\"}]}");
    fit_met_table t;
    char errbuf[128] = "";
    assert_int_equal(fit_met_table_load(&t, bad, errbuf, sizeof(errbuf)), FIT_EINVALID_VALUE);
    assert_non_null(strstr(errbuf, "activities[1]"));
    assert_null(t.entries);
    json_decref(bad);
}

#define SESSION(extra)                                                                             \
    "{\"client_id\": \"c1\", \"start\": \"2026-03-10T06:00:00Z\", \"duration_s\": 1800, " extra "}"

static void test_intensity_precedence(void **state)
{
    (void)state;
    /* The device's classification beats the type's MET... */
    expect_intensity(SESSION("\"type\": \"running\", \"intensity\": \"light\""),
                     FIT_INTENSITY_LIGHT, "device");
    /* ...and beats a MET value sent with it. */
    expect_intensity(SESSION("\"type\": \"running\", \"intensity\": \"moderate\", \"met\": 9"),
                     FIT_INTENSITY_MODERATE, "device");
    expect_intensity(SESSION("\"type\": \"yoga\", \"intensity\": \"vigorous\", \"met\": 2"),
                     FIT_INTENSITY_VIGOROUS, "device");
    /* A MET value beats the type's. */
    expect_intensity(SESSION("\"type\": \"walking\", \"met\": 7"), FIT_INTENSITY_VIGOROUS, "met");
    expect_intensity(SESSION("\"type\": \"running\", \"met\": 2"), FIT_INTENSITY_LIGHT, "met");
    /* The type's Compendium MET, from config/met.json. */
    expect_intensity(SESSION("\"type\": \"yoga\""), FIT_INTENSITY_LIGHT, "type");        /* 2.5 */
    expect_intensity(SESSION("\"type\": \"walking\""), FIT_INTENSITY_MODERATE, "type");  /* 4.3 */
    expect_intensity(SESSION("\"type\": \"cycling\""), FIT_INTENSITY_VIGOROUS, "type");  /* 7.5 */
    expect_intensity(SESSION("\"type\": \"running\""), FIT_INTENSITY_VIGOROUS, "type");  /* 8.0 */
    expect_intensity(SESSION("\"type\": \"swimming\""), FIT_INTENSITY_MODERATE, "type"); /* 5.8 */
    /* Table entries that sit exactly on the cut points. */
    expect_intensity(SESSION("\"type\": \"pilates\""), FIT_INTENSITY_MODERATE, "type"); /* 3.0 */
    expect_intensity(SESSION("\"type\": \"hiking\""), FIT_INTENSITY_VIGOROUS, "type");  /* 6.0 */
    /* A type outside the table is fine when the intensity is given another way. */
    expect_intensity(SESSION("\"type\": \"quidditch\", \"intensity\": \"vigorous\""),
                     FIT_INTENSITY_VIGOROUS, "device");
    expect_intensity(SESSION("\"type\": \"quidditch\", \"met\": 4"), FIT_INTENSITY_MODERATE, "met");
}

static void test_met_cut_points(void **state)
{
    (void)state;
    expect_intensity(SESSION("\"type\": \"quidditch\", \"met\": 2.99"), FIT_INTENSITY_LIGHT, "met");
    expect_intensity(SESSION("\"type\": \"quidditch\", \"met\": 3.0"), FIT_INTENSITY_MODERATE,
                     "met");
    expect_intensity(SESSION("\"type\": \"quidditch\", \"met\": 3"), FIT_INTENSITY_MODERATE, "met");
    expect_intensity(SESSION("\"type\": \"quidditch\", \"met\": 5.99"), FIT_INTENSITY_MODERATE,
                     "met");
    expect_intensity(SESSION("\"type\": \"quidditch\", \"met\": 6.0"), FIT_INTENSITY_VIGOROUS,
                     "met");
    expect_intensity(SESSION("\"type\": \"quidditch\", \"met\": 6"), FIT_INTENSITY_VIGOROUS, "met");
    expect_intensity(SESSION("\"type\": \"quidditch\", \"met\": 0.5"), FIT_INTENSITY_LIGHT, "met");
    expect_intensity(SESSION("\"type\": \"quidditch\", \"met\": 25"), FIT_INTENSITY_VIGOROUS,
                     "met");
    fit_rules r = rules();
    expect_activity_error(SESSION("\"type\": \"quidditch\", \"met\": 0.4"), &r, FIT_EINVALID_VALUE,
                          "met");
    expect_activity_error(SESSION("\"type\": \"quidditch\", \"met\": 25.5"), &r, FIT_EINVALID_VALUE,
                          "met");
    expect_activity_error(SESSION("\"type\": \"quidditch\", \"met\": -7"), &r, FIT_EINVALID_VALUE,
                          "met");
}

static void test_unknown_type(void **state)
{
    (void)state;
    fit_rules r = rules();
    expect_activity_error(SESSION("\"type\": \"quidditch\""), &r, FIT_EUNKNOWN_ACTIVITY_TYPE,
                          "type");
    /* Types are matched exactly. */
    expect_activity_error(SESSION("\"type\": \"Running\""), &r, FIT_EUNKNOWN_ACTIVITY_TYPE, "type");
    /* A type that is not even a plausible name. */
    expect_activity_error(SESSION("\"type\": \"morning run\""), &r, FIT_EINVALID_VALUE, "type");
    expect_activity_error(SESSION("\"type\": \"\""), &r, FIT_EINVALID_VALUE, "type");
    expect_activity_error(SESSION("\"type\": \"r_23456789012345678901234567890123\""), &r,
                          FIT_EINVALID_VALUE, "type");
    /* An intensity outside the three names. */
    expect_activity_error(SESSION("\"type\": \"running\", \"intensity\": \"hard\""), &r,
                          FIT_EINVALID_VALUE, "intensity");
    expect_activity_error(SESSION("\"type\": \"running\", \"intensity\": \"\""), &r,
                          FIT_EINVALID_VALUE, "intensity");
}

#define AT(start, extra)                                                                           \
    "{\"client_id\": \"c1\", \"type\": \"running\", \"start\": \"" start "\", " extra "}"

static void test_duration(void **state)
{
    (void)state;
    fit_rules r = rules();
    fit_activity a;
    expect_activity_error(AT("2026-03-08T00:00:00Z", "\"duration_s\": 0"), &r,
                          FIT_EDURATION_OUT_OF_RANGE, "duration_s");
    expect_activity_error(AT("2026-03-08T00:00:00Z", "\"duration_s\": -5"), &r,
                          FIT_EDURATION_OUT_OF_RANGE, "duration_s");
    expect_activity_error(AT("2026-03-08T00:00:00Z", "\"duration_s\": 86401"), &r,
                          FIT_EDURATION_OUT_OF_RANGE, "duration_s");
    expect_activity_error(AT("2026-03-08T00:00:00Z", "\"duration_s\": 86400.5"), &r,
                          FIT_EDURATION_OUT_OF_RANGE, "duration_s");
    /* Absurd values are refused too (either code is fair; the field must be named). */
    fit_field_error err;
    int rc = parse_activity(AT("2026-03-08T00:00:00Z", "\"duration_s\": 1e300"), &r, &a, &err);
    assert_true(rc == FIT_EDURATION_OUT_OF_RANGE || rc == FIT_EINVALID_VALUE);
    assert_string_equal(err.field, "duration_s");

    /* Exactly 24 h, midnight to midnight: one local day, not two. */
    expect_activity_ok(AT("2026-03-08T00:00:00+08:00", "\"duration_s\": 86400"), &r, &a);
    assert_int_equal(a.end_ms - a.start_ms, 86400000);
    assert_int_equal(a.nseg, 1);
    assert_string_equal(a.seg[0].date_str, "2026-03-08");
    assert_int_equal(a.seg[0].end_ms, a.end_ms);
    fit_activity_clear(&a);
    /* 24 h from 06:00 is two days. */
    expect_activity_ok(AT("2026-03-07T06:00:00Z", "\"duration_s\": 86400"), &r, &a);
    assert_int_equal(a.nseg, 2);
    assert_int_equal(a.seg[0].end_ms - a.seg[0].start_ms, 18 * HOUR_MS);
    assert_int_equal(a.seg[1].end_ms - a.seg[1].start_ms, 6 * HOUR_MS);
    fit_activity_clear(&a);
}

static void test_end_instead_of_duration(void **state)
{
    (void)state;
    fit_rules r = rules();
    fit_activity a;
    expect_activity_ok(AT("2026-03-09T07:00:00+08:00", "\"end\": \"2026-03-09T08:15:00+08:00\""),
                       &r, &a);
    assert_int_equal(a.end_ms - a.start_ms, 75 * MIN_MS);
    assert_int_equal(a.end_ms, instant("2026-03-09T08:15:00+08:00"));
    fit_activity_clear(&a);
    /* The end may be written in another offset: it is an instant. */
    expect_activity_ok(AT("2026-03-09T07:00:00+08:00", "\"end\": \"2026-03-09T00:30:00Z\""), &r,
                       &a);
    assert_int_equal(a.end_ms - a.start_ms, 90 * MIN_MS);
    assert_int_equal(a.offset_min, 480); /* days still come from the start's offset */
    fit_activity_clear(&a);
    /* Exactly 24 h by end. */
    expect_activity_ok(AT("2026-03-08T00:00:00Z", "\"end\": \"2026-03-09T00:00:00Z\""), &r, &a);
    assert_int_equal(a.nseg, 1);
    fit_activity_clear(&a);

    expect_activity_error(AT("2026-03-09T07:00:00+08:00", "\"end\": \"2026-03-09T07:00:00+08:00\""),
                          &r, FIT_EDURATION_OUT_OF_RANGE, "end");
    expect_activity_error(AT("2026-03-09T07:00:00+08:00", "\"end\": \"2026-03-09T06:00:00+08:00\""),
                          &r, FIT_EDURATION_OUT_OF_RANGE, "end");
    expect_activity_error(AT("2026-03-08T00:00:00Z", "\"end\": \"2026-03-09T00:00:01Z\""), &r,
                          FIT_EDURATION_OUT_OF_RANGE, "end");
    expect_activity_error(AT("2026-03-09T07:00:00+08:00", "\"end\": \"2026-03-09T08:00:00\""), &r,
                          FIT_EINVALID_VALUE, "end");
    expect_activity_error(AT("2026-03-09T07:00:00+08:00", "\"end\": \"2026-03-09T08:00:00+15:00\""),
                          &r, FIT_EBAD_OFFSET, "end");

    /* Both: refused, whichever of the two fields is named. */
    fit_field_error err;
    int rc = parse_activity(AT("2026-03-09T07:00:00+08:00",
                               "\"duration_s\": 600, \"end\": \"2026-03-09T07:10:00+08:00\""),
                            &r, &a, &err);
    assert_int_equal(rc, FIT_EINVALID_VALUE);
    assert_true(strcmp(err.field, "end") == 0 || strcmp(err.field, "duration_s") == 0);
    /* Neither. */
    expect_activity_error(AT("2026-03-09T07:00:00+08:00", "\"steps\": 10"), &r, FIT_EMISSING_FIELD,
                          "duration_s");
}

static void test_future(void **state)
{
    (void)state;
    fit_rules r = rules();
    fit_activity a;
    /* 11 minutes ahead of the clock. */
    expect_activity_error(AT("2026-03-10T12:11:00Z", "\"duration_s\": 60"), &r, FIT_EFUTURE_TIME,
                          "start");
    expect_activity_error(AT("2026-03-10T20:11:00+08:00", "\"duration_s\": 60"), &r,
                          FIT_EFUTURE_TIME, "start");
    /* 9 minutes ahead, ending exactly at the tolerance: accepted. */
    expect_activity_ok(AT("2026-03-10T12:09:00Z", "\"duration_s\": 60"), &r, &a);
    fit_activity_clear(&a);
    expect_activity_ok(AT("2026-03-10T17:54:00+05:45", "\"duration_s\": 60"), &r, &a);
    fit_activity_clear(&a);
    /* ...but one second longer ends beyond it. */
    expect_activity_error(AT("2026-03-10T12:09:00Z", "\"duration_s\": 61"), &r, FIT_EFUTURE_TIME,
                          "duration_s");
    expect_activity_error(AT("2026-03-10T12:09:00Z", "\"end\": \"2026-03-10T12:10:01Z\""), &r,
                          FIT_EFUTURE_TIME, "end");
    /* A session started in the past that claims to end two hours from now. */
    expect_activity_error(AT("2026-03-10T11:00:00Z", "\"duration_s\": 10800"), &r, FIT_EFUTURE_TIME,
                          "duration_s");
    /* A session ending right now is fine. */
    expect_activity_ok(AT("2026-03-10T11:00:00Z", "\"duration_s\": 3600"), &r, &a);
    fit_activity_clear(&a);
}

static void test_too_old(void **state)
{
    (void)state;
    fit_rules r = rules();
    fit_activity a;
    /* 8 weeks before 2026-03-10T12:00:00Z is 2026-01-13T12:00:00Z. */
    expect_activity_ok(AT("2026-01-13T12:00:00Z", "\"duration_s\": 600"), &r, &a);
    fit_activity_clear(&a);
    expect_activity_error(AT("2026-01-13T11:59:59Z", "\"duration_s\": 600"), &r, FIT_ETOO_OLD,
                          "start");
    expect_activity_error(AT("2026-01-13T19:59:59+08:00", "\"duration_s\": 600"), &r, FIT_ETOO_OLD,
                          "start");
    expect_activity_error(AT("2020-01-01T00:00:00Z", "\"duration_s\": 600"), &r, FIT_ETOO_OLD,
                          "start");
    /* A history import sets no window. */
    r.max_age_weeks = 0;
    expect_activity_ok(AT("2020-01-01T00:00:00Z", "\"duration_s\": 600"), &r, &a);
    assert_string_equal(a.seg[0].week, "2020-W01");
    fit_activity_clear(&a);
    expect_activity_ok(AT("1999-12-31T23:30:00+01:00", "\"duration_s\": 3600"), &r, &a);
    assert_int_equal(a.nseg, 2);
    assert_string_equal(a.seg[0].date_str, "1999-12-31");
    assert_string_equal(a.seg[0].week, "1999-W52");
    assert_string_equal(a.seg[1].date_str, "2000-01-01");
    assert_string_equal(a.seg[1].week, "1999-W52");
    fit_activity_clear(&a);
    /* ...but the future stays closed. */
    expect_activity_error(AT("2026-03-10T13:00:00Z", "\"duration_s\": 600"), &r, FIT_EFUTURE_TIME,
                          "start");
}

static void test_bad_start(void **state)
{
    (void)state;
    fit_rules r = rules();
    expect_activity_error(AT("2026-03-09T07:00:00+14:30", "\"duration_s\": 600"), &r,
                          FIT_EBAD_OFFSET, "start");
    expect_activity_error(AT("2026-03-09T07:00:00-14:01", "\"duration_s\": 600"), &r,
                          FIT_EBAD_OFFSET, "start");
    expect_activity_error(AT("2026-03-09T07:00:00", "\"duration_s\": 600"), &r, FIT_EINVALID_VALUE,
                          "start");
    expect_activity_error(AT("yesterday", "\"duration_s\": 600"), &r, FIT_EINVALID_VALUE, "start");
    expect_activity_error(AT("2026-02-29T07:00:00Z", "\"duration_s\": 600"), &r, FIT_EINVALID_VALUE,
                          "start");
    expect_activity_error("{\"client_id\": \"c1\", \"type\": \"running\", \"duration_s\": 600}", &r,
                          FIT_EMISSING_FIELD, "start");
    expect_activity_error("{\"client_id\": \"c1\", \"type\": \"running\", \"start\": null,"
                          " \"duration_s\": 600}",
                          &r, FIT_EMISSING_FIELD, "start");
}

#define GOOD_TAIL "\"start\": \"2026-03-10T06:00:00Z\", \"duration_s\": 600"

static void test_wrong_types(void **state)
{
    (void)state;
    fit_rules r = rules();
    static const struct {
        const char *json;
        const char *field;
    } cases[] = {
        {"{\"client_id\": 17, \"type\": \"running\", " GOOD_TAIL "}", "client_id"},
        {"{\"client_id\": \"c1\", \"type\": true, " GOOD_TAIL "}", "type"},
        {"{\"client_id\": \"c1\", \"type\": [\"running\"], " GOOD_TAIL "}", "type"},
        {"{\"client_id\": \"c1\", \"type\": \"running\", \"start\": 1773144000,"
         " \"duration_s\": 600}",
         "start"},
        {"{\"client_id\": \"c1\", \"type\": \"running\", \"start\": \"2026-03-10T06:00:00Z\","
         " \"duration_s\": \"600\"}",
         "duration_s"},
        {"{\"client_id\": \"c1\", \"type\": \"running\", \"start\": \"2026-03-10T06:00:00Z\","
         " \"end\": 1773144000}",
         "end"},
        {"{\"client_id\": \"c1\", \"type\": \"running\", " GOOD_TAIL ", \"intensity\": 3}",
         "intensity"},
        {"{\"client_id\": \"c1\", \"type\": \"running\", " GOOD_TAIL ", \"met\": \"7\"}", "met"},
        {"{\"client_id\": \"c1\", \"type\": \"running\", " GOOD_TAIL ", \"steps\": 10.5}", "steps"},
        {"{\"client_id\": \"c1\", \"type\": \"running\", " GOOD_TAIL ", \"steps\": \"100\"}",
         "steps"},
        {"{\"client_id\": \"c1\", \"type\": \"running\", " GOOD_TAIL ", \"distance_m\": \"5\"}",
         "distance_m"},
        {"{\"client_id\": \"c1\", \"type\": \"running\", " GOOD_TAIL ", \"strength\": \"yes\"}",
         "strength"},
        {"{\"client_id\": \"c1\", \"type\": \"running\", " GOOD_TAIL ", \"balance\": 1}",
         "balance"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        expect_activity_error(cases[i].json, &r, FIT_EINVALID_TYPE, cases[i].field);

    /* Not an object at all. */
    expect_activity_error("[1, 2]", &r, FIT_EINVALID_TYPE, "");
    expect_activity_error("\"run\"", &r, FIT_EINVALID_TYPE, "");
}

static void test_fields(void **state)
{
    (void)state;
    fit_rules r = rules();
    /* A typo is an error, not silently ignored. */
    expect_activity_error("{\"client_id\": \"c1\", \"type\": \"running\", \"start\":"
                          " \"2026-03-10T06:00:00Z\", \"duration\": 600}",
                          &r, FIT_EUNKNOWN_FIELD, "duration");
    expect_activity_error("{\"client_id\": \"c1\", \"type\": \"running\", " GOOD_TAIL
                          ", \"heart_rate\": 150}",
                          &r, FIT_EUNKNOWN_FIELD, "heart_rate");
    expect_activity_error("{\"type\": \"running\", " GOOD_TAIL "}", &r, FIT_EMISSING_FIELD,
                          "client_id");
    expect_activity_error("{\"client_id\": \"c1\", " GOOD_TAIL "}", &r, FIT_EMISSING_FIELD, "type");
    expect_activity_error("{\"client_id\": \"c1\", \"type\": \"running\", " GOOD_TAIL
                          ", \"steps\": -1}",
                          &r, FIT_EINVALID_VALUE, "steps");
    expect_activity_error("{\"client_id\": \"c1\", \"type\": \"running\", " GOOD_TAIL
                          ", \"steps\": 200001}",
                          &r, FIT_EINVALID_VALUE, "steps");
    expect_activity_error("{\"client_id\": \"c1\", \"type\": \"running\", " GOOD_TAIL
                          ", \"distance_m\": -0.5}",
                          &r, FIT_EINVALID_VALUE, "distance_m");
}

static void test_client_id(void **state)
{
    (void)state;
    fit_rules r = rules();
    fit_activity a;
    static const char *const bad[] = {
        "",           "a b",
        "x/y",        "run#1",
        "caf\\u00e9", "tab\\there",
        "a,b",        "quote\\\"",
        "{brace}",    "semi;col",
        "new\\nline", "c2345678901234567890123456789012345678901234567890123456789012345", /* 65 */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char json[512];
        snprintf(json, sizeof(json),
                 "{\"client_id\": \"%s\", \"type\": \"running\", " GOOD_TAIL "}", bad[i]);
        expect_activity_error(json, &r, FIT_EINVALID_VALUE, "client_id");
    }
    static const char *const good[] = {
        "a", "A-Z.a_z:0@9", "watch@user.example:2026-03-10T06:00",
        "c234567890123456789012345678901234567890123456789012345678901234", /* 64 */
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char json[512];
        snprintf(json, sizeof(json),
                 "{\"client_id\": \"%s\", \"type\": \"running\", " GOOD_TAIL "}", good[i]);
        expect_activity_ok(json, &r, &a);
        assert_string_equal(a.client_id, good[i]);
        fit_activity_clear(&a);
    }
    assert_true(fit_id_valid("abc", 3));
    assert_false(fit_id_valid("abcd", 3));
    assert_false(fit_id_valid("", 3));
}

/* ------------------------------------------------------------ midnight split */

static void expect_segment(const fit_segment *s, const char *date, const char *week,
                           int64_t start_ms, int64_t end_ms)
{
    assert_string_equal(s->date_str, date);
    assert_string_equal(s->week, week);
    if (s->start_ms != start_ms || s->end_ms != end_ms)
        fail_msg("segment %s is [%lld, %lld), want [%lld, %lld)", date, (long long)s->start_ms,
                 (long long)s->end_ms, (long long)start_ms, (long long)end_ms);
}

static void test_split_midnight(void **state)
{
    (void)state;
    fit_rules r = rules();
    fit_activity a;
    /* Thursday 23:00 at +08:00 for 2 h: one hour on each day, both in 2026-W10. */
    expect_activity_ok(AT("2026-03-05T23:00:00+08:00", "\"duration_s\": 7200"), &r, &a);
    int64_t mid = instant("2026-03-06T00:00:00+08:00");
    assert_int_equal(a.nseg, 2);
    expect_segment(&a.seg[0], "2026-03-05", "2026-W10", a.start_ms, mid);
    expect_segment(&a.seg[1], "2026-03-06", "2026-W10", mid, a.end_ms);
    assert_int_equal(a.seg[0].end_ms - a.seg[0].start_ms, HOUR_MS);
    assert_int_equal(a.seg[1].end_ms - a.seg[1].start_ms, HOUR_MS);
    assert_int_equal(a.seg[0].date.day, 5);
    assert_int_equal(a.seg[1].date.day, 6);
    fit_activity_clear(&a);
}

static void test_split_sunday_night(void **state)
{
    (void)state;
    fit_rules r = rules();
    fit_activity a;
    /* Sunday 2026-03-08 23:30 at +08:00 for 1 h: 30 min in 2026-W10, 30 min in 2026-W11. */
    expect_activity_ok(AT("2026-03-08T23:30:00+08:00", "\"duration_s\": 3600"), &r, &a);
    int64_t mid = instant("2026-03-09T00:00:00+08:00");
    assert_int_equal(a.nseg, 2);
    expect_segment(&a.seg[0], "2026-03-08", "2026-W10", a.start_ms, mid);
    expect_segment(&a.seg[1], "2026-03-09", "2026-W11", mid, a.end_ms);
    assert_int_equal(a.seg[0].end_ms - a.seg[0].start_ms, 30 * MIN_MS);
    fit_activity_clear(&a);

    /* The same instant seen from +09:00 is Monday 00:30: no split, all in 2026-W11. */
    expect_activity_ok(AT("2026-03-09T00:30:00+09:00", "\"duration_s\": 3600"), &r, &a);
    assert_int_equal(a.nseg, 1);
    expect_segment(&a.seg[0], "2026-03-09", "2026-W11", a.start_ms, a.end_ms);
    fit_activity_clear(&a);
}

static void test_split_kathmandu(void **state)
{
    (void)state;
    fit_rules r = rules();
    fit_activity a;
    /*
     * 22:00 at +05:45 for 8 h is 16:15Z to 00:15Z. Local midnight is 18:15Z,
     * UTC midnight 00:00Z: the split must be 2 h + 6 h, not 7 h 45 + 15 min.
     */
    expect_activity_ok(AT("2026-03-06T22:00:00+05:45", "\"duration_s\": 28800"), &r, &a);
    int64_t local_mid = instant("2026-03-06T18:15:00Z");
    assert_int_equal(a.start_ms, instant("2026-03-06T16:15:00Z"));
    assert_int_equal(a.end_ms, instant("2026-03-07T00:15:00Z"));
    assert_int_equal(a.offset_min, 345);
    assert_int_equal(a.nseg, 2);
    expect_segment(&a.seg[0], "2026-03-06", "2026-W10", a.start_ms, local_mid);
    expect_segment(&a.seg[1], "2026-03-07", "2026-W10", local_mid, a.end_ms);
    assert_int_equal(a.seg[0].end_ms - a.seg[0].start_ms, 2 * HOUR_MS);
    assert_int_equal(a.seg[1].end_ms - a.seg[1].start_ms, 6 * HOUR_MS);
    fit_activity_clear(&a);

    /* 23:00 at +05:45 for 2 h: local midnight at 18:15Z; UTC midnight is not in it. */
    expect_activity_ok(AT("2026-03-06T23:00:00+05:45", "\"duration_s\": 7200"), &r, &a);
    assert_int_equal(a.nseg, 2);
    expect_segment(&a.seg[0], "2026-03-06", "2026-W10", a.start_ms, local_mid);
    expect_segment(&a.seg[1], "2026-03-07", "2026-W10", local_mid, a.end_ms);
    fit_activity_clear(&a);

    /* 05:00 at +05:45 for 1 h is 23:15Z to 00:15Z: it crosses UTC midnight but lies
     * inside one local day, so it is not split. */
    expect_activity_ok(AT("2026-03-07T05:00:00+05:45", "\"duration_s\": 3600"), &r, &a);
    assert_int_equal(a.start_ms, instant("2026-03-06T23:15:00Z"));
    assert_int_equal(a.nseg, 1);
    expect_segment(&a.seg[0], "2026-03-07", "2026-W10", a.start_ms, a.end_ms);
    fit_activity_clear(&a);

    /* A negative offset: 23:30 at -03:30 splits at 03:30Z. */
    expect_activity_ok(AT("2026-03-06T23:30:00-03:30", "\"duration_s\": 3600"), &r, &a);
    int64_t nst_mid = instant("2026-03-07T03:30:00Z");
    assert_int_equal(a.nseg, 2);
    expect_segment(&a.seg[0], "2026-03-06", "2026-W10", a.start_ms, nst_mid);
    expect_segment(&a.seg[1], "2026-03-07", "2026-W10", nst_mid, a.end_ms);
    fit_activity_clear(&a);
}

static void test_split_steps(void **state)
{
    (void)state;
    fit_rules r = rules();
    fit_activity a;
    /* Sunday 23:30 for 90 min: a third on Sunday, two thirds on Monday. */
    expect_activity_ok(AT("2026-03-08T23:30:00+08:00",
                          "\"duration_s\": 5400, \"steps\": 1000, \"distance_m\": 3000"),
                       &r, &a);
    assert_int_equal(a.nseg, 2);
    assert_int_equal(a.seg[0].steps, 333);
    assert_int_equal(a.seg[1].steps, 667);
    assert_true(fabs(a.seg[0].distance_m - 1000.0) < 0.05);
    assert_true(fabs(a.seg[1].distance_m - 2000.0) < 0.05);
    fit_activity_clear(&a);

    /* Odd counts and uneven shares still add up exactly. */
    static const struct {
        const char *start;
        int dur_s;
        int64_t steps;
    } cases[] = {
        {"2026-03-05T23:00:00+08:00", 7200, 1001},   {"2026-03-05T23:00:00+08:00", 7200, 1},
        {"2026-03-05T23:59:59+08:00", 7, 7},         {"2026-03-05T23:00:00+08:00", 3601, 199999},
        {"2026-03-06T22:17:00+05:45", 11111, 12345}, {"2026-03-05T00:00:01Z", 86400, 200000},
        {"2026-03-05T12:00:00-03:30", 86399, 99999}, {"2026-03-05T23:00:00+08:00", 7200, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char json[256];
        snprintf(json, sizeof(json),
                 "{\"client_id\": \"c1\", \"type\": \"walking\", \"start\": \"%s\","
                 " \"duration_s\": %d, \"steps\": %lld}",
                 cases[i].start, cases[i].dur_s, (long long)cases[i].steps);
        expect_activity_ok(json, &r, &a);
        assert_int_equal(a.nseg, 2);
        int64_t sum = 0;
        double total_ms = (double)(a.end_ms - a.start_ms);
        for (int k = 0; k < a.nseg; k++) {
            double ideal =
                (double)cases[i].steps * (double)(a.seg[k].end_ms - a.seg[k].start_ms) / total_ms;
            if (a.seg[k].steps < 0 || fabs((double)a.seg[k].steps - ideal) > 1.0)
                fail_msg("%s: segment %d has %lld steps, proportional share %.2f", json, k,
                         (long long)a.seg[k].steps, ideal);
            sum += a.seg[k].steps;
        }
        if (sum != cases[i].steps)
            fail_msg("%s: segments sum to %lld steps, want %lld", json, (long long)sum,
                     (long long)cases[i].steps);
        /* Segments tile the session. */
        assert_int_equal(a.seg[0].start_ms, a.start_ms);
        assert_int_equal(a.seg[0].end_ms, a.seg[1].start_ms);
        assert_int_equal(a.seg[1].end_ms, a.end_ms);
        fit_activity_clear(&a);
    }
}

/* ------------------------------------------------------------ daily summaries */

static int parse_summary(const char *text, const fit_rules *r, fit_summary *s, fit_field_error *err)
{
    json_t *item = load(text);
    memset(err, 0, sizeof(*err));
    int rc = fit_summary_parse(item, r, s, err);
    json_decref(item);
    if (rc != 0) {
        assert_null(s->doc);
        assert_int_equal(err->code, rc);
    }
    return rc;
}

static void expect_summary_ok(const char *text, const fit_rules *r, fit_summary *s)
{
    fit_field_error err;
    int rc = parse_summary(text, r, s, &err);
    if (rc != 0)
        fail_msg("%s\n  rejected: %s field \"%s\": %s", text, fit_err_name(rc), err.field,
                 err.message);
    assert_non_null(s->doc);
}

static void expect_summary_error(const char *text, const fit_rules *r, int code, const char *field)
{
    fit_summary s;
    fit_field_error err;
    int rc = parse_summary(text, r, &s, &err);
    if (rc == 0) {
        fit_summary_clear(&s);
        fail_msg("%s\n  accepted, want %s field \"%s\"", text, fit_err_name(code), field);
    }
    if (rc != code || strcmp(err.field, field) != 0)
        fail_msg("%s\n  got %s field \"%s\" (%s), want %s field \"%s\"", text, fit_err_name(rc),
                 err.field, err.message, fit_err_name(code), field);
}

#define SUMMARY(date, off, rec, mins)                                                              \
    "{\"date\": \"" date "\", \"utc_offset\": \"" off "\", \"source\": \"fitbit\","                \
    " \"recorded_at\": \"" rec "\", " mins "}"
#define MINS "\"moderate_min\": 30, \"vigorous_min\": 15"

static void test_summary_good(void **state)
{
    (void)state;
    fit_rules r = rules();
    fit_summary s;
    const char *text = "{\"date\": \"2026-03-09\", \"utc_offset\": \"+08:00\", \"source\":"
                       " \"fitbit.charge-6\", \"recorded_at\": \"2026-03-10T07:00:00+08:00\","
                       " \"moderate_min\": 30, \"vigorous_min\": 15, \"light_min\": 120,"
                       " \"steps\": 8000, \"distance_m\": 5600.5}";
    expect_summary_ok(text, &r, &s);
    assert_int_equal(s.date.year, 2026);
    assert_int_equal(s.date.month, 3);
    assert_int_equal(s.date.day, 9);
    assert_string_equal(s.date_str, "2026-03-09");
    assert_string_equal(s.week, "2026-W11");
    assert_int_equal(s.offset_min, 480);
    assert_string_equal(s.source, "fitbit.charge-6");
    assert_int_equal(s.recorded_at_ms, NOW_MS - 13 * HOUR_MS);
    assert_int_equal(s.moderate_min, 30);
    assert_int_equal(s.vigorous_min, 15);
    assert_int_equal(s.light_min, 120);
    assert_int_equal(s.steps, 8000);
    assert_true(s.distance_m == 5600.5);
    json_t *sent = load(text);
    assert_true(json_equal(s.doc, sent));
    json_decref(sent);
    fit_summary_clear(&s);
    assert_null(s.doc);

    /* Optional fields default to 0; a Sunday is in the week that ends on it. */
    expect_summary_ok(SUMMARY("2026-03-08", "-03:30", "2026-03-09T01:00:00-03:30", MINS), &r, &s);
    assert_string_equal(s.week, "2026-W10");
    assert_int_equal(s.offset_min, -210);
    assert_int_equal(s.light_min, 0);
    assert_int_equal(s.steps, 0);
    assert_true(s.distance_m == 0);
    fit_summary_clear(&s);

    /* A full day: the minutes may add up to exactly 1440. */
    expect_summary_ok(SUMMARY("2026-03-09", "Z", "2026-03-10T00:00:00Z",
                              "\"moderate_min\": 1000, \"vigorous_min\": 400, \"light_min\": 40"),
                      &r, &s);
    assert_int_equal(s.moderate_min + s.vigorous_min + s.light_min, 1440);
    fit_summary_clear(&s);
    expect_summary_ok(SUMMARY("2026-03-09", "Z", "2026-03-10T00:00:00Z",
                              "\"moderate_min\": 1440, \"vigorous_min\": 0"),
                      &r, &s);
    fit_summary_clear(&s);
}

/*
 * A tracker re-sends today's summary through the day (the newest recorded_at
 * wins, DESIGN.md decision 4), so the current local day must be accepted
 * even though it has not ended; only a day that has not begun is future.
 */
static void test_summary_today(void **state)
{
    (void)state;
    fit_rules r = rules();
    fit_summary s;
    expect_summary_ok(SUMMARY("2026-03-10", "Z", "2026-03-10T12:00:00Z", MINS), &r, &s);
    assert_string_equal(s.week, "2026-W11");
    fit_summary_clear(&s);
    expect_summary_ok(SUMMARY("2026-03-10", "+08:00", "2026-03-10T19:55:00+08:00", MINS), &r, &s);
    fit_summary_clear(&s);
    /* At +14:00 it is already 02:00 on 2026-03-11. */
    expect_summary_ok(SUMMARY("2026-03-11", "+14:00", "2026-03-11T02:00:00+14:00", MINS), &r, &s);
    fit_summary_clear(&s);
    /* ...which has not begun at +00:00, nor at -10:00 (where it is still 2026-03-10). */
    expect_summary_error(SUMMARY("2026-03-11", "Z", "2026-03-10T12:00:00Z", MINS), &r,
                         FIT_EFUTURE_TIME, "date");
    expect_summary_error(SUMMARY("2026-03-11", "-10:00", "2026-03-10T12:00:00Z", MINS), &r,
                         FIT_EFUTURE_TIME, "date");
    /* A day starting within the tolerance counts as begun: 2026-03-11 at +11:55. */
    expect_summary_ok(SUMMARY("2026-03-11", "+11:55", "2026-03-10T12:00:00Z", MINS), &r, &s);
    fit_summary_clear(&s);
    expect_summary_error(SUMMARY("2026-03-11", "+11:45", "2026-03-10T12:00:00Z", MINS), &r,
                         FIT_EFUTURE_TIME, "date");
}

static void test_summary_rejects(void **state)
{
    (void)state;
    fit_rules r = rules();
    /* Minutes. */
    expect_summary_error(SUMMARY("2026-03-09", "+08:00", "2026-03-10T07:00:00+08:00",
                                 "\"moderate_min\": 1441, \"vigorous_min\": 0"),
                         &r, FIT_EINVALID_VALUE, "moderate_min");
    expect_summary_error(SUMMARY("2026-03-09", "+08:00", "2026-03-10T07:00:00+08:00",
                                 "\"moderate_min\": 0, \"vigorous_min\": 2000"),
                         &r, FIT_EINVALID_VALUE, "vigorous_min");
    expect_summary_error(SUMMARY("2026-03-09", "+08:00", "2026-03-10T07:00:00+08:00",
                                 "\"moderate_min\": 10, \"vigorous_min\": -1"),
                         &r, FIT_EINVALID_VALUE, "vigorous_min");
    expect_summary_error(SUMMARY("2026-03-09", "+08:00", "2026-03-10T07:00:00+08:00",
                                 "\"moderate_min\": 10, \"vigorous_min\": 5, \"light_min\": -3"),
                         &r, FIT_EINVALID_VALUE, "light_min");
    expect_summary_error(SUMMARY("2026-03-09", "+08:00", "2026-03-10T07:00:00+08:00",
                                 "\"moderate_min\": 30.5, \"vigorous_min\": 5"),
                         &r, FIT_EINVALID_TYPE, "moderate_min");
    expect_summary_error(SUMMARY("2026-03-09", "+08:00", "2026-03-10T07:00:00+08:00",
                                 "\"moderate_min\": \"30\", \"vigorous_min\": 5"),
                         &r, FIT_EINVALID_TYPE, "moderate_min");
    expect_summary_error(
        SUMMARY("2026-03-09", "+08:00", "2026-03-10T07:00:00+08:00", "\"moderate_min\": 30"), &r,
        FIT_EMISSING_FIELD, "vigorous_min");
    /* The sum of a day's minutes cannot exceed the day. */
    {
        fit_summary s;
        fit_field_error err;
        int rc = parse_summary(SUMMARY("2026-03-09", "+08:00", "2026-03-10T07:00:00+08:00",
                                       "\"moderate_min\": 1000, \"vigorous_min\": 400,"
                                       " \"light_min\": 41"),
                               &r, &s, &err);
        assert_int_equal(rc, FIT_EINVALID_VALUE);
        assert_true(strcmp(err.field, "moderate_min") == 0 ||
                    strcmp(err.field, "vigorous_min") == 0 || strcmp(err.field, "light_min") == 0);
        rc = parse_summary(SUMMARY("2026-03-09", "+08:00", "2026-03-10T07:00:00+08:00",
                                   "\"moderate_min\": 800, \"vigorous_min\": 641"),
                           &r, &s, &err);
        assert_int_equal(rc, FIT_EINVALID_VALUE);
    }
    /* recorded_at. */
    expect_summary_error("{\"date\": \"2026-03-09\", \"utc_offset\": \"+08:00\", \"source\":"
                         " \"fitbit\", " MINS "}",
                         &r, FIT_EMISSING_FIELD, "recorded_at");
    expect_summary_error(SUMMARY("2026-03-09", "+08:00", "2026-03-10T12:11:00Z", MINS), &r,
                         FIT_EFUTURE_TIME, "recorded_at");
    expect_summary_error(SUMMARY("2026-03-09", "+08:00", "2026-03-10T07:00:00", MINS), &r,
                         FIT_EINVALID_VALUE, "recorded_at");
    /* The date. */
    expect_summary_error(SUMMARY("2026-03-12", "+08:00", "2026-03-10T12:00:00Z", MINS), &r,
                         FIT_EFUTURE_TIME, "date");
    expect_summary_error(SUMMARY("2026-02-30", "+08:00", "2026-03-10T12:00:00Z", MINS), &r,
                         FIT_EINVALID_VALUE, "date");
    expect_summary_error(SUMMARY("2026-03-09T00:00:00Z", "+08:00", "2026-03-10T12:00:00Z", MINS),
                         &r, FIT_EINVALID_VALUE, "date");
    /* Too old: the day must end after 2026-01-13T12:00:00Z. */
    fit_summary s;
    expect_summary_ok(SUMMARY("2026-01-13", "Z", "2026-03-10T12:00:00Z", MINS), &r, &s);
    fit_summary_clear(&s);
    expect_summary_error(SUMMARY("2026-01-12", "Z", "2026-03-10T12:00:00Z", MINS), &r, FIT_ETOO_OLD,
                         "date");
    expect_summary_error(SUMMARY("2025-06-01", "+08:00", "2026-03-10T12:00:00Z", MINS), &r,
                         FIT_ETOO_OLD, "date");
    /* The offset decides when a date ends: 2026-01-12 at -12:00 ends exactly at the window's
     * start (too old), at -12:01 one minute after it, at -14:00 two hours after it. */
    expect_summary_error(SUMMARY("2026-01-12", "-12:00", "2026-03-10T12:00:00Z", MINS), &r,
                         FIT_ETOO_OLD, "date");
    expect_summary_ok(SUMMARY("2026-01-12", "-12:01", "2026-03-10T12:00:00Z", MINS), &r, &s);
    fit_summary_clear(&s);
    expect_summary_ok(SUMMARY("2026-01-12", "-14:00", "2026-03-10T12:00:00Z", MINS), &r, &s);
    fit_summary_clear(&s);
    r.max_age_weeks = 0;
    expect_summary_ok(SUMMARY("2016-04-12", "-07:00", "2016-04-13T00:00:00-07:00", MINS), &r, &s);
    assert_string_equal(s.week, "2016-W15");
    fit_summary_clear(&s);
    r.max_age_weeks = 8;
    /* utc_offset. */
    expect_summary_error(SUMMARY("2026-03-09", "+14:30", "2026-03-10T12:00:00Z", MINS), &r,
                         FIT_EBAD_OFFSET, "utc_offset");
    expect_summary_error(SUMMARY("2026-03-09", "0800", "2026-03-10T12:00:00Z", MINS), &r,
                         FIT_EINVALID_VALUE, "utc_offset");
    expect_summary_error(SUMMARY("2026-03-09", "Asia/Hong_Kong", "2026-03-10T12:00:00Z", MINS), &r,
                         FIT_EINVALID_VALUE, "utc_offset");
    expect_summary_error("{\"date\": \"2026-03-09\", \"utc_offset\": 480, \"source\": \"fitbit\","
                         " \"recorded_at\": \"2026-03-10T12:00:00Z\", " MINS "}",
                         &r, FIT_EINVALID_TYPE, "utc_offset");
    /* source. */
    expect_summary_error(
        "{\"date\": \"2026-03-09\", \"utc_offset\": \"Z\", \"source\": \"fit bit\","
        " \"recorded_at\": \"2026-03-10T12:00:00Z\", " MINS "}",
        &r, FIT_EINVALID_VALUE, "source");
    expect_summary_error("{\"date\": \"2026-03-09\", \"utc_offset\": \"Z\","
                         " \"recorded_at\": \"2026-03-10T12:00:00Z\", " MINS "}",
                         &r, FIT_EMISSING_FIELD, "source");
    /* Unknown fields and non-objects. */
    expect_summary_error(
        SUMMARY("2026-03-09", "Z", "2026-03-10T12:00:00Z", MINS ", \"active_min\": 10"), &r,
        FIT_EUNKNOWN_FIELD, "active_min");
    expect_summary_error("[]", &r, FIT_EINVALID_TYPE, "");
}

/* ---------------------------------------------------------------- profiles */

static int parse_profile(const char *text, fit_profile *p, fit_field_error *err)
{
    json_t *obj = load(text);
    memset(err, 0, sizeof(*err));
    int rc = fit_profile_parse(obj, 2026, p, err);
    json_decref(obj);
    if (rc != 0)
        assert_int_equal(err->code, rc);
    return rc;
}

static void expect_profile_ok(const char *text, fit_profile *p)
{
    fit_field_error err;
    int rc = parse_profile(text, p, &err);
    if (rc != 0)
        fail_msg("%s\n  rejected: %s field \"%s\": %s", text, fit_err_name(rc), err.field,
                 err.message);
}

static void expect_profile_error(const char *text, int code, const char *field)
{
    fit_profile p;
    fit_field_error err;
    int rc = parse_profile(text, &p, &err);
    if (rc != code || strcmp(err.field, field) != 0)
        fail_msg("%s\n  got %s field \"%s\", want %s field \"%s\"", text,
                 rc ? fit_err_name(rc) : "ok", err.field, fit_err_name(code), field);
}

/* n copies of a UTF-8 character, as a JSON document {"display_name": "..."}. */
static char *display_name_doc(const char *ch, int n)
{
    size_t len = strlen(ch);
    char *buf = malloc(32 + len * (size_t)n);
    assert_non_null(buf);
    char *p = buf + sprintf(buf, "{\"display_name\": \"");
    for (int i = 0; i < n; i++, p += len)
        memcpy(p, ch, len);
    strcpy(p, "\"}");
    return buf;
}

static void test_profile(void **state)
{
    (void)state;
    fit_profile p;
    expect_profile_ok("{\"birth_year\": 1990, \"district\": \"wan-chai\", \"gender\": \"female\","
                      " \"pregnant\": true, \"display_name\": \"Mei\"}",
                      &p);
    assert_true(p.has_birth_year && p.has_district && p.has_gender && p.has_pregnant &&
                p.has_display_name);
    assert_int_equal(p.birth_year, 1990);
    assert_string_equal(p.district, "wan-chai");
    assert_string_equal(p.gender, "female");
    assert_int_equal(p.pregnant, 1);
    assert_string_equal(p.display_name, "Mei");

    /* Only the fields present are marked. */
    expect_profile_ok("{\"district\": \"district-9\"}", &p);
    assert_int_equal(p.has_district, 1);
    assert_int_equal(p.has_birth_year, 0);
    assert_int_equal(p.has_gender, 0);
    assert_int_equal(p.has_pregnant, 0);
    assert_int_equal(p.has_display_name, 0);
    expect_profile_ok("{}", &p);
    assert_int_equal(
        p.has_district + p.has_birth_year + p.has_gender + p.has_pregnant + p.has_display_name, 0);

    /* birth_year: 1900..this year, or null to clear. */
    expect_profile_ok("{\"birth_year\": null}", &p);
    assert_int_equal(p.has_birth_year, 1);
    assert_int_equal(p.birth_year, 0);
    expect_profile_ok("{\"birth_year\": 1900}", &p);
    assert_int_equal(p.birth_year, 1900);
    expect_profile_ok("{\"birth_year\": 2026}", &p);
    assert_int_equal(p.birth_year, 2026);
    expect_profile_error("{\"birth_year\": 1899}", FIT_EINVALID_VALUE, "birth_year");
    expect_profile_error("{\"birth_year\": 2027}", FIT_EINVALID_VALUE, "birth_year");
    expect_profile_error("{\"birth_year\": \"1990\"}", FIT_EINVALID_TYPE, "birth_year");
    expect_profile_error("{\"birth_year\": 1990.5}", FIT_EINVALID_TYPE, "birth_year");

    /* district: a slug of [a-z0-9-], 1..40. */
    expect_profile_ok("{\"district\": \"d234567890123456789012345678901234567890\"}", &p);
    expect_profile_error("{\"district\": \"d2345678901234567890123456789012345678901\"}",
                         FIT_EINVALID_VALUE, "district");
    expect_profile_error("{\"district\": \"Wan Chai\"}", FIT_EINVALID_VALUE, "district");
    expect_profile_error("{\"district\": \"wan_chai\"}", FIT_EINVALID_VALUE, "district");
    expect_profile_error("{\"district\": \"\"}", FIT_EINVALID_VALUE, "district");
    expect_profile_error("{\"district\": 5}", FIT_EINVALID_TYPE, "district");

    /* gender: four values. */
    static const char *const genders[] = {"female", "male", "other", "undisclosed"};
    for (int i = 0; i < 4; i++) {
        char json[64];
        snprintf(json, sizeof(json), "{\"gender\": \"%s\"}", genders[i]);
        expect_profile_ok(json, &p);
        assert_string_equal(p.gender, genders[i]);
    }
    expect_profile_error("{\"gender\": \"f\"}", FIT_EINVALID_VALUE, "gender");
    expect_profile_error("{\"gender\": \"Female\"}", FIT_EINVALID_VALUE, "gender");
    expect_profile_error("{\"gender\": 1}", FIT_EINVALID_TYPE, "gender");

    /* pregnant: a boolean. */
    expect_profile_ok("{\"pregnant\": false}", &p);
    assert_int_equal(p.has_pregnant, 1);
    assert_int_equal(p.pregnant, 0);
    expect_profile_error("{\"pregnant\": \"yes\"}", FIT_EINVALID_TYPE, "pregnant");
    expect_profile_error("{\"pregnant\": 1}", FIT_EINVALID_TYPE, "pregnant");

    /* display_name: 1..40 characters, counted as characters, not bytes. */
    expect_profile_error("{\"display_name\": \"\"}", FIT_EINVALID_VALUE, "display_name");
    expect_profile_error("{\"display_name\": \"tab\\there\"}", FIT_EINVALID_VALUE, "display_name");
    expect_profile_error("{\"display_name\": 42}", FIT_EINVALID_TYPE, "display_name");
    char *doc = display_name_doc("\xe8\xb7\x91", 40); /* U+8DD1, 3 bytes in UTF-8 */
    expect_profile_ok(doc, &p);
    assert_int_equal(strlen(p.display_name), 120);
    assert_memory_equal(p.display_name, doc + strlen("{\"display_name\": \""), 120);
    free(doc);
    doc = display_name_doc("\xe8\xb7\x91", 41);
    expect_profile_error(doc, FIT_EINVALID_VALUE, "display_name");
    free(doc);
    doc = display_name_doc("a", 40);
    expect_profile_ok(doc, &p);
    assert_int_equal(strlen(p.display_name), 40);
    free(doc);
    doc = display_name_doc("a", 41);
    expect_profile_error(doc, FIT_EINVALID_VALUE, "display_name");
    free(doc);
    doc = display_name_doc("\xc3\xa9", 40); /* U+00E9, 2 bytes */
    expect_profile_ok(doc, &p);
    assert_int_equal(strlen(p.display_name), 80);
    free(doc);

    /* Unknown fields, and not an object. */
    expect_profile_error("{\"age\": 30}", FIT_EUNKNOWN_FIELD, "age");
    expect_profile_error("[]", FIT_EINVALID_TYPE, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_session),    cmocka_unit_test(test_optional_fields),
        cmocka_unit_test(test_met_table),       cmocka_unit_test(test_intensity_precedence),
        cmocka_unit_test(test_met_cut_points),  cmocka_unit_test(test_unknown_type),
        cmocka_unit_test(test_duration),        cmocka_unit_test(test_end_instead_of_duration),
        cmocka_unit_test(test_future),          cmocka_unit_test(test_too_old),
        cmocka_unit_test(test_bad_start),       cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_fields),          cmocka_unit_test(test_client_id),
        cmocka_unit_test(test_split_midnight),  cmocka_unit_test(test_split_sunday_night),
        cmocka_unit_test(test_split_kathmandu), cmocka_unit_test(test_split_steps),
        cmocka_unit_test(test_summary_good),    cmocka_unit_test(test_summary_today),
        cmocka_unit_test(test_summary_rejects), cmocka_unit_test(test_profile),
    };
    return cmocka_run_group_tests(tests, load_met, free_met);
}
