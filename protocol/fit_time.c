/*
 * fit_time: calendar arithmetic without the C library's time zones.
 *
 * gmtime/mktime depend on the process's TZ and are not needed: every instant
 * fitsync sees carries its own UTC offset, so a local date is just
 * floor((utc_ms + offset) / day). Civil <-> day-number conversions use Howard
 * Hinnant's public-domain algorithms ("chrono-Compatible Low-Level Date
 * Algorithms"), exact for the whole proleptic Gregorian calendar.
 *
 * ISO 8601 weeks: week 1 is the week holding the year's first Thursday; a
 * date's ISO year is the calendar year of the Thursday of its week.
 */
#include "fit_time.h"
#include "fit_error.h"

#include <stdio.h>
#include <string.h>

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0)))
        q--;
    return q;
}

int64_t fit_days_from_civil(fit_date d)
{
    int64_t y = d.year - (d.month <= 2);
    int64_t era = floor_div(y, 400);
    int64_t yoe = y - era * 400;
    int64_t mp = (d.month + 9) % 12;
    int64_t doy = (153 * mp + 2) / 5 + d.day - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

fit_date fit_civil_from_days(int64_t z)
{
    fit_date d;
    z += 719468;
    int64_t era = floor_div(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = yoe + era * 400;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    d.day = (int)(doy - (153 * mp + 2) / 5 + 1);
    d.month = (int)(mp < 10 ? mp + 3 : mp - 9);
    d.year = (int)(y + (d.month <= 2));
    return d;
}

static int is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int y, int m)
{
    static const int dim[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

int fit_date_valid(fit_date d)
{
    return d.year >= 1 && d.year <= 9999 && d.month >= 1 && d.month <= 12 && d.day >= 1 &&
           d.day <= days_in_month(d.year, d.month);
}

int fit_weekday(fit_date d)
{
    /* 1970-01-01 was a Thursday (ISO 4). */
    int64_t w = floor_div(fit_days_from_civil(d) + 3, 7);
    return (int)(fit_days_from_civil(d) + 3 - w * 7) + 1;
}

/* Reads exactly n decimal digits. Returns -1 if any is not a digit. */
static int digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

int fit_offset_parse(const char *s, int *offset_min)
{
    if ((s[0] == 'Z' || s[0] == 'z') && s[1] == '\0') {
        *offset_min = 0;
        return 0;
    }
    if ((s[0] != '+' && s[0] != '-') || strlen(s) != 6 || s[3] != ':')
        return FIT_EINVALID_VALUE;
    int hh = digits(s + 1, 2), mm = digits(s + 4, 2);
    if (hh < 0 || mm < 0 || mm > 59)
        return FIT_EINVALID_VALUE;
    int off = hh * 60 + mm;
    if (off > FIT_MAX_OFFSET_MIN)
        return FIT_EBAD_OFFSET;
    *offset_min = s[0] == '-' ? -off : off;
    return 0;
}

int fit_date_parse(const char *s, fit_date *out)
{
    if (strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return FIT_EINVALID_VALUE;
    fit_date d = {digits(s, 4), digits(s + 5, 2), digits(s + 8, 2)};
    if (d.year < 0 || d.month < 0 || d.day < 0 || !fit_date_valid(d))
        return FIT_EINVALID_VALUE;
    *out = d;
    return 0;
}

void fit_date_format(fit_date d, char *buf)
{
    snprintf(buf, FIT_DATE_LEN, "%04u-%02u-%02u", (unsigned)d.year % 10000u,
             (unsigned)d.month % 100u, (unsigned)d.day % 100u);
}

int fit_time_parse(const char *s, int64_t *utc_ms, int *offset_min)
{
    size_t n = strlen(s);
    if (n < 20 || n > 64)
        return FIT_EINVALID_VALUE;
    char date[FIT_DATE_LEN];
    memcpy(date, s, 10);
    date[10] = '\0';
    fit_date d;
    if (fit_date_parse(date, &d) != 0)
        return FIT_EINVALID_VALUE;
    if (s[10] != 'T' && s[10] != 't' && s[10] != ' ')
        return FIT_EINVALID_VALUE;
    if (s[13] != ':' || s[16] != ':')
        return FIT_EINVALID_VALUE;
    int hh = digits(s + 11, 2), mi = digits(s + 14, 2), ss = digits(s + 17, 2);
    if (hh < 0 || hh > 23 || mi < 0 || mi > 59 || ss < 0 || ss > 59)
        return FIT_EINVALID_VALUE;
    const char *p = s + 19;
    int ms = 0;
    if (*p == '.') {
        int nd = 0;
        p++;
        while (*p >= '0' && *p <= '9') {
            if (nd < 3)
                ms = ms * 10 + (*p - '0');
            nd++;
            p++;
        }
        if (nd == 0)
            return FIT_EINVALID_VALUE;
        for (int i = nd; i < 3; i++)
            ms *= 10;
    }
    int off;
    int rc = fit_offset_parse(p, &off);
    if (rc != 0)
        return rc;
    int64_t local_ms =
        fit_days_from_civil(d) * FIT_MS_PER_DAY + ((int64_t)hh * 3600 + mi * 60 + ss) * 1000 + ms;
    *utc_ms = local_ms - (int64_t)off * FIT_MS_PER_MIN;
    *offset_min = off;
    return 0;
}

void fit_time_format(int64_t utc_ms, int offset_min, char *buf, size_t len)
{
    int64_t local = utc_ms + (int64_t)offset_min * FIT_MS_PER_MIN;
    int64_t day = floor_div(local, FIT_MS_PER_DAY);
    int64_t rem = local - day * FIT_MS_PER_DAY;
    fit_date d = fit_civil_from_days(day);
    int hh = (int)(rem / 3600000), mi = (int)(rem / 60000 % 60), ss = (int)(rem / 1000 % 60);
    int ms = (int)(rem % 1000);
    char frac[8] = "";
    if (ms)
        snprintf(frac, sizeof(frac), ".%03d", ms);
    char off[8] = "Z";
    if (offset_min != 0) {
        int a = offset_min < 0 ? -offset_min : offset_min;
        snprintf(off, sizeof(off), "%c%02d:%02d", offset_min < 0 ? '-' : '+', (a / 60) % 100,
                 a % 60);
    }
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d%s%s", d.year % 10000, d.month, d.day, hh, mi,
             ss, frac, off);
}

fit_date fit_local_date(int64_t utc_ms, int offset_min)
{
    return fit_civil_from_days(
        floor_div(utc_ms + (int64_t)offset_min * FIT_MS_PER_MIN, FIT_MS_PER_DAY));
}

int64_t fit_local_midnight_ms(fit_date d, int offset_min)
{
    return fit_days_from_civil(d) * FIT_MS_PER_DAY - (int64_t)offset_min * FIT_MS_PER_MIN;
}

void fit_iso_week(fit_date d, int *iso_year, int *week)
{
    int64_t days = fit_days_from_civil(d);
    int64_t thursday = days - (fit_weekday(d) - 1) + 3;
    fit_date th = fit_civil_from_days(thursday);
    fit_date jan1 = {th.year, 1, 1};
    *iso_year = th.year;
    *week = (int)((thursday - fit_days_from_civil(jan1)) / 7) + 1;
}

int fit_iso_weeks_in_year(int iso_year)
{
    /* A year has 53 ISO weeks when Dec 28 (always in the last week) is in week 53. */
    fit_date dec28 = {iso_year, 12, 28};
    int y, w;
    fit_iso_week(dec28, &y, &w);
    return w;
}

void fit_iso_week_format(int iso_year, int week, char *buf)
{
    snprintf(buf, FIT_WEEK_LEN, "%04u-W%02u", (unsigned)iso_year % 10000u, (unsigned)week % 100u);
}

int fit_iso_week_parse(const char *s, int *iso_year, int *week)
{
    if (strlen(s) != 8 || s[4] != '-' || s[5] != 'W')
        return FIT_EINVALID_VALUE;
    int y = digits(s, 4), w = digits(s + 6, 2);
    if (y < 1 || y > 9998 || w < 1 || w > fit_iso_weeks_in_year(y))
        return FIT_EINVALID_VALUE;
    *iso_year = y;
    *week = w;
    return 0;
}

fit_date fit_iso_week_monday(int iso_year, int week)
{
    /* Jan 4 is always in week 1. */
    fit_date jan4 = {iso_year, 1, 4};
    int64_t w1_monday = fit_days_from_civil(jan4) - (fit_weekday(jan4) - 1);
    return fit_civil_from_days(w1_monday + (int64_t)(week - 1) * 7);
}

void fit_date_week_name(fit_date d, char *buf)
{
    int y, w;
    fit_iso_week(d, &y, &w);
    fit_iso_week_format(y, w, buf);
}
