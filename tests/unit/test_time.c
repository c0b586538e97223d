/*
 * test_time: RFC 3339 parsing and formatting, civil dates, local dates and
 * ISO 8601 weeks (protocol/fit_time.c).
 *
 * Expected values are worked out by hand from the calendar, not taken from
 * the code: 2026-01-01T00:00:00Z is 1767225600 s after the epoch (2000-01-01
 * is 946684800 s, plus 26 * 365 + 7 leap days), so 2026-03-10T12:00:00Z, 68
 * days and 12 hours later, is 1773144000 s. 2026-01-01 is a Thursday, which
 * makes 2025-12-29 the Monday of 2026-W01 and 2026-03-02..08 the week
 * 2026-W10. The day-number round trip is checked against a plain day-by-day
 * walk of the calendar from 0001-01-01 (day -719162) to 9999-12-31.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "fit_error.h"
#include "fit_time.h"

#include <stdio.h>
#include <string.h>

/* 2026-03-10T12:00:00Z, a Tuesday. */
#define T_2026_03_10_NOON 1773144000000LL
#define HOUR_MS 3600000LL

static void expect_time(const char *s, int64_t want_ms, int want_off)
{
    int64_t ms = -1;
    int off = -9999;
    int rc = fit_time_parse(s, &ms, &off);
    if (rc != 0)
        fail_msg("fit_time_parse(\"%s\") = %d, want 0", s, rc);
    if (ms != want_ms || off != want_off)
        fail_msg("fit_time_parse(\"%s\") = %lld ms offset %d, want %lld ms offset %d", s,
                 (long long)ms, off, (long long)want_ms, want_off);
}

static void expect_time_error(const char *s, int want_rc)
{
    int64_t ms = 0;
    int off = 0;
    int rc = fit_time_parse(s, &ms, &off);
    if (rc != want_rc)
        fail_msg("fit_time_parse(\"%s\") = %d, want %d", s, rc, want_rc);
}

static fit_date date(int y, int m, int d)
{
    fit_date r = {y, m, d};
    return r;
}

static void test_parse_offsets(void **state)
{
    (void)state;
    expect_time("1970-01-01T00:00:00Z", 0, 0);
    expect_time("2000-01-01T00:00:00Z", 946684800000LL, 0);
    expect_time("2026-03-10T12:00:00Z", T_2026_03_10_NOON, 0);
    expect_time("2026-03-10T12:00:00+00:00", T_2026_03_10_NOON, 0);
    expect_time("2026-03-10T12:00:00-00:00", T_2026_03_10_NOON, 0);
    /* The same instant written in four zones. */
    expect_time("2026-03-10T20:00:00+08:00", T_2026_03_10_NOON, 480);
    expect_time("2026-03-10T17:45:00+05:45", T_2026_03_10_NOON, 345);
    expect_time("2026-03-10T08:30:00-03:30", T_2026_03_10_NOON, -210);
    /* The offset moves the date too: 02:00 at +14:00 is the previous day in UTC. */
    expect_time("2026-03-11T02:00:00+14:00", T_2026_03_10_NOON, 840);
    expect_time("2026-03-10T00:00:00-12:00", T_2026_03_10_NOON, -720);
    expect_time("2026-03-09T22:00:00-14:00", T_2026_03_10_NOON, -840);
    /* Before the epoch. */
    expect_time("1969-12-31T23:59:59Z", -1000, 0);
    /* Leap day. */
    expect_time("2024-02-29T00:00:00Z", 1709164800000LL, 0);
}

static void test_parse_fraction_and_case(void **state)
{
    (void)state;
    expect_time("2026-03-10T12:00:00.5Z", T_2026_03_10_NOON + 500, 0);
    expect_time("2026-03-10T12:00:00.05Z", T_2026_03_10_NOON + 50, 0);
    expect_time("2026-03-10T12:00:00.123Z", T_2026_03_10_NOON + 123, 0);
    /* Beyond milliseconds is truncated, not rounded. */
    expect_time("2026-03-10T12:00:00.123999Z", T_2026_03_10_NOON + 123, 0);
    expect_time("2026-03-10T12:00:00.999999999+08:00", T_2026_03_10_NOON - 8 * HOUR_MS + 999, 480);
    expect_time("2026-03-10T20:00:00.250+08:00", T_2026_03_10_NOON + 250, 480);
    /* Lower-case t and z, and a space for T (RFC 3339 section 5.6 note). */
    expect_time("2026-03-10t12:00:00z", T_2026_03_10_NOON, 0);
    expect_time("2026-03-10t20:00:00+08:00", T_2026_03_10_NOON, 480);
    expect_time("2026-03-10 12:00:00Z", T_2026_03_10_NOON, 0);
}

static void test_parse_rejects(void **state)
{
    (void)state;
    /* A local time without an offset names no instant. */
    expect_time_error("2026-03-10T12:00:00", FIT_EINVALID_VALUE);
    expect_time_error("2026-03-10T12:00:00.123", FIT_EINVALID_VALUE);
    /* Dates that do not exist. */
    expect_time_error("2023-02-29T00:00:00Z", FIT_EINVALID_VALUE);
    expect_time_error("1900-02-29T00:00:00Z", FIT_EINVALID_VALUE);
    expect_time_error("2026-04-31T00:00:00Z", FIT_EINVALID_VALUE);
    expect_time_error("2026-13-01T00:00:00Z", FIT_EINVALID_VALUE);
    expect_time_error("2026-00-10T00:00:00Z", FIT_EINVALID_VALUE);
    expect_time_error("2026-03-00T00:00:00Z", FIT_EINVALID_VALUE);
    expect_time_error("0000-01-01T00:00:00Z", FIT_EINVALID_VALUE);
    /* Times that do not exist (and no leap seconds). */
    expect_time_error("2026-03-10T24:00:00Z", FIT_EINVALID_VALUE);
    expect_time_error("2026-03-10T12:60:00Z", FIT_EINVALID_VALUE);
    expect_time_error("2026-03-10T12:00:60Z", FIT_EINVALID_VALUE);
    /* Offsets beyond the tz database's +-14:00 are a distinct error. */
    expect_time_error("2026-03-10T12:00:00+14:01", FIT_EBAD_OFFSET);
    expect_time_error("2026-03-10T12:00:00-14:01", FIT_EBAD_OFFSET);
    expect_time_error("2026-03-10T12:00:00+14:30", FIT_EBAD_OFFSET);
    expect_time_error("2026-03-10T12:00:00+23:59", FIT_EBAD_OFFSET);
    /* Malformed offsets. */
    expect_time_error("2026-03-10T12:00:00+0800", FIT_EINVALID_VALUE);
    expect_time_error("2026-03-10T12:00:00+8:00", FIT_EINVALID_VALUE);
    expect_time_error("2026-03-10T12:00:00+08:60", FIT_EINVALID_VALUE);
    expect_time_error("2026-03-10T12:00:00 +08:00", FIT_EINVALID_VALUE);
    expect_time_error("2026-03-10T12:00:00+08:00 ", FIT_EINVALID_VALUE);
    expect_time_error("2026-03-10T12:00:00ZZ", FIT_EINVALID_VALUE);
    expect_time_error("2026-03-10T12:00:00UTC", FIT_EINVALID_VALUE);
    /* Garbage and near misses. */
    expect_time_error("", FIT_EINVALID_VALUE);
    expect_time_error("yesterday", FIT_EINVALID_VALUE);
    expect_time_error("not a timestamp at all, really", FIT_EINVALID_VALUE);
    expect_time_error("2026-03-10", FIT_EINVALID_VALUE);
    expect_time_error("2026-03-10X12:00:00Z", FIT_EINVALID_VALUE);
    expect_time_error("2026-3-10T12:00:00Z", FIT_EINVALID_VALUE);
    expect_time_error("2026-03-10T12:0:00Z", FIT_EINVALID_VALUE);
    expect_time_error("2026-03-10T12-00-00Z", FIT_EINVALID_VALUE);
    expect_time_error("2026-03-10T1a:00:00Z", FIT_EINVALID_VALUE);
    expect_time_error("2026-03-10T12:00:00.Z", FIT_EINVALID_VALUE);
    expect_time_error("2026-03-10T12:00:00,5Z", FIT_EINVALID_VALUE);
    expect_time_error("+026-03-10T12:00:00Z", FIT_EINVALID_VALUE);
    expect_time_error("1773144000", FIT_EINVALID_VALUE);
}

static void test_offset_parse(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int rc, off;
    } cases[] = {
        {"Z", 0, 0},
        {"z", 0, 0},
        {"+00:00", 0, 0},
        {"-00:00", 0, 0},
        {"+08:00", 0, 480},
        {"+05:45", 0, 345},
        {"-03:30", 0, -210},
        {"+14:00", 0, 840},
        {"-14:00", 0, -840},
        {"+14:01", FIT_EBAD_OFFSET, 0},
        {"-14:30", FIT_EBAD_OFFSET, 0},
        {"+99:00", FIT_EBAD_OFFSET, 0},
        {"", FIT_EINVALID_VALUE, 0},
        {"08:00", FIT_EINVALID_VALUE, 0},
        {"+8:00", FIT_EINVALID_VALUE, 0},
        {"+0800", FIT_EINVALID_VALUE, 0},
        {"+08:60", FIT_EINVALID_VALUE, 0},
        {"+08:00Z", FIT_EINVALID_VALUE, 0},
        {"UTC", FIT_EINVALID_VALUE, 0},
        {"+a8:00", FIT_EINVALID_VALUE, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int off = 12345;
        int rc = fit_offset_parse(cases[i].s, &off);
        if (rc != cases[i].rc || (rc == 0 && off != cases[i].off))
            fail_msg("fit_offset_parse(\"%s\") = %d (offset %d), want %d (offset %d)", cases[i].s,
                     rc, off, cases[i].rc, cases[i].off);
    }
}

static void expect_format(int64_t ms, int off, const char *want)
{
    char buf[32];
    fit_time_format(ms, off, buf, sizeof(buf));
    assert_string_equal(buf, want);
}

static void test_format(void **state)
{
    (void)state;
    expect_format(T_2026_03_10_NOON, 0, "2026-03-10T12:00:00Z");
    expect_format(T_2026_03_10_NOON, 480, "2026-03-10T20:00:00+08:00");
    expect_format(T_2026_03_10_NOON, 345, "2026-03-10T17:45:00+05:45");
    expect_format(T_2026_03_10_NOON, -210, "2026-03-10T08:30:00-03:30");
    expect_format(T_2026_03_10_NOON, 840, "2026-03-11T02:00:00+14:00");
    expect_format(T_2026_03_10_NOON, -840, "2026-03-09T22:00:00-14:00");
    expect_format(T_2026_03_10_NOON + 5, 0, "2026-03-10T12:00:00.005Z");
    expect_format(T_2026_03_10_NOON + 250, 480, "2026-03-10T20:00:00.250+08:00");
    expect_format(0, 0, "1970-01-01T00:00:00Z");
    expect_format(-1000, 0, "1969-12-31T23:59:59Z");
    expect_format(-1, 0, "1969-12-31T23:59:59.999Z");
    expect_format(946684800000LL, -60, "1999-12-31T23:00:00-01:00");
}

static void test_format_parse_round_trip(void **state)
{
    (void)state;
    static const int offsets[] = {0, 480, 345, -210, 840, -840, 60, -60, 330, 525, -570};
    static const int64_t instants[] = {
        0,
        -1,
        1,
        T_2026_03_10_NOON,
        T_2026_03_10_NOON + 999,
        946684800000LL - 1,
        1709164800000LL + 86399999LL,     /* the last millisecond of 2024-02-29 */
        -62135596800000LL + 14 * HOUR_MS, /* 0001-01-01T14:00:00Z */
        253402300799000LL - 14 * HOUR_MS, /* 9999-12-31T09:59:59Z */
        1234567890123LL,
    };
    for (size_t i = 0; i < sizeof(instants) / sizeof(instants[0]); i++) {
        for (size_t j = 0; j < sizeof(offsets) / sizeof(offsets[0]); j++) {
            char buf[40];
            fit_time_format(instants[i], offsets[j], buf, sizeof(buf));
            int64_t ms;
            int off;
            int rc = fit_time_parse(buf, &ms, &off);
            if (rc != 0 || ms != instants[i] || off != offsets[j])
                fail_msg("round trip of %lld at %d via \"%s\": rc %d, %lld at %d",
                         (long long)instants[i], offsets[j], buf, rc, (long long)ms, off);
        }
    }
}

/* The dumbest possible calendar: a day-by-day walk. */
static int walk_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int walk_month_days(int y, int m)
{
    static const int dim[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && walk_leap(y) ? 29 : dim[m - 1];
}

static void test_days_civil_walk(void **state)
{
    (void)state;
    fit_date d = date(1, 1, 1);
    int64_t n = -719162; /* 0001-01-01 (proleptic Gregorian), ordinal 1 vs 719163 for 1970 */
    int weekday = 1;     /* 0001-01-01 was a Monday */
    int64_t checked = 0;
    for (;;) {
        fit_date c = fit_civil_from_days(n);
        if (c.year != d.year || c.month != d.month || c.day != d.day)
            fail_msg("fit_civil_from_days(%lld) = %04d-%02d-%02d, want %04d-%02d-%02d",
                     (long long)n, c.year, c.month, c.day, d.year, d.month, d.day);
        int64_t back = fit_days_from_civil(d);
        if (back != n)
            fail_msg("fit_days_from_civil(%04d-%02d-%02d) = %lld, want %lld", d.year, d.month,
                     d.day, (long long)back, (long long)n);
        if (!fit_date_valid(d))
            fail_msg("fit_date_valid(%04d-%02d-%02d) = 0", d.year, d.month, d.day);
        if (fit_weekday(d) != weekday)
            fail_msg("fit_weekday(%04d-%02d-%02d) = %d, want %d", d.year, d.month, d.day,
                     fit_weekday(d), weekday);
        checked++;
        if (d.year == 9999 && d.month == 12 && d.day == 31)
            break;
        n++;
        weekday = weekday % 7 + 1;
        if (++d.day > walk_month_days(d.year, d.month)) {
            d.day = 1;
            if (++d.month > 12) {
                d.month = 1;
                d.year++;
            }
        }
    }
    /* 9999 years of 365.2425 days. */
    assert_int_equal(checked, 3652059);
    assert_int_equal(n, 2932896);
    /* And the anchors. */
    assert_int_equal(fit_days_from_civil(date(1970, 1, 1)), 0);
    assert_int_equal(fit_days_from_civil(date(2000, 1, 1)), 10957);
    assert_int_equal(fit_days_from_civil(date(2026, 3, 10)), 20522);
    assert_int_equal(fit_days_from_civil(date(1969, 12, 31)), -1);
}

static void test_date_valid_and_parse(void **state)
{
    (void)state;
    assert_true(fit_date_valid(date(2024, 2, 29)));
    assert_true(fit_date_valid(date(2000, 2, 29)));
    assert_false(fit_date_valid(date(2023, 2, 29)));
    assert_false(fit_date_valid(date(1900, 2, 29)));
    assert_false(fit_date_valid(date(2026, 4, 31)));
    assert_false(fit_date_valid(date(2026, 13, 1)));
    assert_false(fit_date_valid(date(2026, 0, 1)));
    assert_false(fit_date_valid(date(2026, 1, 0)));
    assert_false(fit_date_valid(date(0, 1, 1)));
    assert_false(fit_date_valid(date(10000, 1, 1)));

    fit_date d;
    assert_int_equal(fit_date_parse("2026-03-10", &d), 0);
    assert_int_equal(d.year, 2026);
    assert_int_equal(d.month, 3);
    assert_int_equal(d.day, 10);
    assert_int_equal(fit_date_parse("2023-02-29", &d), FIT_EINVALID_VALUE);
    assert_int_equal(fit_date_parse("2026-3-10", &d), FIT_EINVALID_VALUE);
    assert_int_equal(fit_date_parse("2026/03/10", &d), FIT_EINVALID_VALUE);
    assert_int_equal(fit_date_parse("2026-03-10T", &d), FIT_EINVALID_VALUE);
    assert_int_equal(fit_date_parse("20260310", &d), FIT_EINVALID_VALUE);
    assert_int_equal(fit_date_parse("", &d), FIT_EINVALID_VALUE);
    assert_int_equal(fit_date_parse("2026-0a-10", &d), FIT_EINVALID_VALUE);

    char buf[FIT_DATE_LEN];
    fit_date_format(date(2026, 3, 8), buf);
    assert_string_equal(buf, "2026-03-08");
    fit_date_format(date(1, 1, 1), buf);
    assert_string_equal(buf, "0001-01-01");
}

static void expect_iso_week(fit_date d, int want_year, int want_week, const char *want_name)
{
    int y = 0, w = 0;
    fit_iso_week(d, &y, &w);
    if (y != want_year || w != want_week)
        fail_msg("fit_iso_week(%04d-%02d-%02d) = %d-W%02d, want %d-W%02d", d.year, d.month, d.day,
                 y, w, want_year, want_week);
    char buf[FIT_WEEK_LEN];
    fit_date_week_name(d, buf);
    assert_string_equal(buf, want_name);
}

static void test_iso_week_year_ends(void **state)
{
    (void)state;
    expect_iso_week(date(2020, 12, 31), 2020, 53, "2020-W53"); /* Thursday */
    expect_iso_week(date(2021, 1, 1), 2020, 53, "2020-W53");
    expect_iso_week(date(2021, 1, 3), 2020, 53, "2020-W53"); /* Sunday */
    expect_iso_week(date(2021, 1, 4), 2021, 1, "2021-W01");  /* Monday */
    expect_iso_week(date(2026, 1, 1), 2026, 1, "2026-W01");  /* Thursday */
    expect_iso_week(date(2025, 12, 29), 2026, 1, "2026-W01");
    expect_iso_week(date(2025, 12, 28), 2025, 52, "2025-W52");
    expect_iso_week(date(2024, 12, 30), 2025, 1, "2025-W01"); /* Monday */
    expect_iso_week(date(2024, 12, 29), 2024, 52, "2024-W52");
    expect_iso_week(date(2027, 1, 1), 2026, 53, "2026-W53"); /* Friday */
    expect_iso_week(date(2027, 1, 3), 2026, 53, "2026-W53");
    expect_iso_week(date(2027, 1, 4), 2027, 1, "2027-W01");
    expect_iso_week(date(2026, 3, 2), 2026, 10, "2026-W10");
    expect_iso_week(date(2026, 3, 8), 2026, 10, "2026-W10");
    expect_iso_week(date(2026, 3, 9), 2026, 11, "2026-W11");
    expect_iso_week(date(2026, 3, 10), 2026, 11, "2026-W11");
    expect_iso_week(date(2010, 1, 3), 2009, 53, "2009-W53");
    expect_iso_week(date(2008, 12, 29), 2009, 1, "2009-W01");
}

static void test_iso_weeks_in_year(void **state)
{
    (void)state;
    /* 53 weeks: the year starts on a Thursday, or is a leap year starting on a Wednesday. */
    assert_int_equal(fit_iso_weeks_in_year(2020), 53); /* leap, starts Wednesday */
    assert_int_equal(fit_iso_weeks_in_year(2021), 52);
    assert_int_equal(fit_iso_weeks_in_year(2024), 52);
    assert_int_equal(fit_iso_weeks_in_year(2025), 52);
    assert_int_equal(fit_iso_weeks_in_year(2026), 53); /* starts Thursday */
    assert_int_equal(fit_iso_weeks_in_year(2027), 52);
    assert_int_equal(fit_iso_weeks_in_year(2015), 53);
    assert_int_equal(fit_iso_weeks_in_year(2009), 53);
    assert_int_equal(fit_iso_weeks_in_year(2032), 53); /* leap, starts Thursday */
}

/*
 * A property over two centuries: walking day by day, the ISO week changes
 * exactly on Mondays, by one, and wraps to week 1 of the next year after the
 * last week that fit_iso_weeks_in_year announces; Monday of each week is
 * fit_iso_week_monday of that week, and the name parses back.
 */
static void test_iso_week_walk(void **state)
{
    (void)state;
    int64_t first = fit_days_from_civil(date(1999, 12, 27)); /* Monday of 1999-W52 */
    int64_t last = fit_days_from_civil(date(2101, 1, 2));
    int py = 1999, pw = 52;
    int weeks53 = 0;
    for (int64_t n = first; n <= last; n++) {
        fit_date d = fit_civil_from_days(n);
        int y, w;
        fit_iso_week(d, &y, &w);
        if (fit_weekday(d) == 1) {
            if (n != first) {
                int wrap = pw == fit_iso_weeks_in_year(py);
                int ok = wrap ? (y == py + 1 && w == 1) : (y == py && w == pw + 1);
                if (!ok)
                    fail_msg("%04d-%02d-%02d is %d-W%02d after %d-W%02d", d.year, d.month, d.day, y,
                             w, py, pw);
                if (wrap && pw == 53)
                    weeks53++;
            }
            fit_date m = fit_iso_week_monday(y, w);
            if (fit_days_from_civil(m) != n)
                fail_msg("fit_iso_week_monday(%d, %d) = %04d-%02d-%02d, want %04d-%02d-%02d", y, w,
                         m.year, m.month, m.day, d.year, d.month, d.day);
            char name[FIT_WEEK_LEN];
            fit_iso_week_format(y, w, name);
            int y2, w2;
            assert_int_equal(fit_iso_week_parse(name, &y2, &w2), 0);
            assert_int_equal(y2, y);
            assert_int_equal(w2, w);
        } else if (y != py || w != pw) {
            fail_msg("%04d-%02d-%02d (not a Monday) changed week to %d-W%02d", d.year, d.month,
                     d.day, y, w);
        }
        /* The ISO year is the calendar year of the week's Thursday. */
        fit_date th = fit_civil_from_days(n - (fit_weekday(d) - 1) + 3);
        assert_int_equal(y, th.year);
        py = y;
        pw = w;
    }
    /* 71 of every 400 years have 53 weeks; 2000..2100 hold 18 of them. */
    assert_int_equal(weeks53, 18);
}

static void test_iso_week_parse(void **state)
{
    (void)state;
    int y = 0, w = 0;
    assert_int_equal(fit_iso_week_parse("2020-W53", &y, &w), 0);
    assert_int_equal(y, 2020);
    assert_int_equal(w, 53);
    assert_int_equal(fit_iso_week_parse("2026-W10", &y, &w), 0);
    assert_int_equal(y, 2026);
    assert_int_equal(w, 10);
    assert_int_equal(fit_iso_week_parse("2026-W53", &y, &w), 0);
    assert_int_equal(fit_iso_week_parse("2026-W01", &y, &w), 0);
    assert_int_equal(w, 1);
    assert_int_equal(fit_iso_week_parse("2021-W53", &y, &w), FIT_EINVALID_VALUE);
    assert_int_equal(fit_iso_week_parse("2025-W53", &y, &w), FIT_EINVALID_VALUE);
    assert_int_equal(fit_iso_week_parse("2026-W00", &y, &w), FIT_EINVALID_VALUE);
    assert_int_equal(fit_iso_week_parse("2026-W54", &y, &w), FIT_EINVALID_VALUE);
    assert_int_equal(fit_iso_week_parse("2026-W1", &y, &w), FIT_EINVALID_VALUE);
    assert_int_equal(fit_iso_week_parse("2026W10", &y, &w), FIT_EINVALID_VALUE);
    assert_int_equal(fit_iso_week_parse("2026-10", &y, &w), FIT_EINVALID_VALUE);
    assert_int_equal(fit_iso_week_parse("2026-W10-1", &y, &w), FIT_EINVALID_VALUE);
    assert_int_equal(fit_iso_week_parse("", &y, &w), FIT_EINVALID_VALUE);
    assert_int_equal(fit_iso_week_parse("abcd-Wef", &y, &w), FIT_EINVALID_VALUE);

    char buf[FIT_WEEK_LEN];
    fit_iso_week_format(2026, 5, buf);
    assert_string_equal(buf, "2026-W05");
    fit_iso_week_format(2020, 53, buf);
    assert_string_equal(buf, "2020-W53");
}

static void expect_monday(int y, int w, fit_date want)
{
    fit_date m = fit_iso_week_monday(y, w);
    if (m.year != want.year || m.month != want.month || m.day != want.day)
        fail_msg("fit_iso_week_monday(%d, %d) = %04d-%02d-%02d, want %04d-%02d-%02d", y, w, m.year,
                 m.month, m.day, want.year, want.month, want.day);
}

static void test_iso_week_monday(void **state)
{
    (void)state;
    expect_monday(2026, 1, date(2025, 12, 29));
    expect_monday(2026, 10, date(2026, 3, 2));
    expect_monday(2026, 11, date(2026, 3, 9));
    expect_monday(2026, 53, date(2026, 12, 28));
    expect_monday(2020, 53, date(2020, 12, 28));
    expect_monday(2021, 1, date(2021, 1, 4));
    expect_monday(2025, 1, date(2024, 12, 30));
    expect_monday(2024, 1, date(2024, 1, 1));
}

static void expect_local(int64_t ms, int off, fit_date want, int want_weekday)
{
    fit_date d = fit_local_date(ms, off);
    if (d.year != want.year || d.month != want.month || d.day != want.day)
        fail_msg("fit_local_date(%lld, %d) = %04d-%02d-%02d, want %04d-%02d-%02d", (long long)ms,
                 off, d.year, d.month, d.day, want.year, want.month, want.day);
    assert_int_equal(fit_weekday(d), want_weekday);
}

static void test_local_date(void **state)
{
    (void)state;
    /* 2026-03-08T15:30:00Z: Sunday 23:30 at +08:00, Monday 00:30 at +09:00. */
    int64_t t = T_2026_03_10_NOON - 2 * 24 * HOUR_MS + 3 * HOUR_MS + 30 * 60000LL;
    int64_t ms;
    int off;
    assert_int_equal(fit_time_parse("2026-03-08T23:30:00+08:00", &ms, &off), 0);
    assert_int_equal(ms, t);
    expect_local(t, 480, date(2026, 3, 8), 7);
    expect_local(t, 540, date(2026, 3, 9), 1);
    expect_local(t, 0, date(2026, 3, 8), 7);
    expect_local(t, -840, date(2026, 3, 8), 7); /* 01:30 on Sunday */
    expect_local(t, 840, date(2026, 3, 9), 1);  /* 05:30 on Monday */
    char wk[FIT_WEEK_LEN];
    fit_date_week_name(fit_local_date(t, 480), wk);
    assert_string_equal(wk, "2026-W10");
    fit_date_week_name(fit_local_date(t, 540), wk);
    assert_string_equal(wk, "2026-W11");

    /* Kathmandu (+05:45): local midnight of 2026-03-09 is 2026-03-08T18:15:00Z. */
    int64_t ktm_midnight = fit_local_midnight_ms(date(2026, 3, 9), 345);
    assert_int_equal(fit_time_parse("2026-03-08T18:15:00Z", &ms, &off), 0);
    assert_int_equal(ktm_midnight, ms);
    expect_local(ktm_midnight, 345, date(2026, 3, 9), 1);
    expect_local(ktm_midnight - 1, 345, date(2026, 3, 8), 7);
    /* At 18:15Z it is still Sunday in UTC and in +05:30 (India). */
    expect_local(ktm_midnight, 0, date(2026, 3, 8), 7);
    expect_local(ktm_midnight, 330, date(2026, 3, 8), 7);

    /* Newfoundland (-03:30): midnight of 2026-03-09 is 03:30Z. */
    int64_t nst = fit_local_midnight_ms(date(2026, 3, 9), -210);
    assert_int_equal(fit_time_parse("2026-03-09T03:30:00Z", &ms, &off), 0);
    assert_int_equal(nst, ms);
    expect_local(nst, -210, date(2026, 3, 9), 1);
    expect_local(nst - 1, -210, date(2026, 3, 8), 7);

    /* Before the epoch, dates round down, not towards zero. */
    expect_local(-1, 0, date(1969, 12, 31), 3);
    expect_local(0, -1, date(1969, 12, 31), 3);
    expect_local(0, 0, date(1970, 1, 1), 4);

    assert_int_equal(fit_local_midnight_ms(date(1970, 1, 1), 0), 0);
    assert_int_equal(fit_local_midnight_ms(date(1970, 1, 1), 480), -8 * HOUR_MS);
    assert_int_equal(fit_local_midnight_ms(date(2026, 3, 10), 0), T_2026_03_10_NOON - 12 * HOUR_MS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_offsets),
        cmocka_unit_test(test_parse_fraction_and_case),
        cmocka_unit_test(test_parse_rejects),
        cmocka_unit_test(test_offset_parse),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_format_parse_round_trip),
        cmocka_unit_test(test_days_civil_walk),
        cmocka_unit_test(test_date_valid_and_parse),
        cmocka_unit_test(test_iso_week_year_ends),
        cmocka_unit_test(test_iso_weeks_in_year),
        cmocka_unit_test(test_iso_week_walk),
        cmocka_unit_test(test_iso_week_parse),
        cmocka_unit_test(test_iso_week_monday),
        cmocka_unit_test(test_local_date),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
