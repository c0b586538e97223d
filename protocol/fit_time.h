/*
 * fit_time: RFC 3339 timestamps, local civil dates and ISO 8601 weeks.
 *
 * fitsync never uses the server's time zone. A minute belongs to the local
 * date given by the UTC offset carried in its own timestamp (DESIGN.md, "Dates
 * are local"), and weeks are ISO 8601 weeks, Monday to Sunday, named like
 * "2026-W10" (the ISO week-numbering year, which differs from the calendar
 * year around New Year: 2021-01-03 is in 2020-W53).
 *
 * Units: instants are UTC milliseconds since 1970-01-01T00:00:00Z (int64_t);
 * offsets are minutes east of UTC; day numbers count days since 1970-01-01.
 * The proleptic Gregorian calendar is used throughout.
 */
#ifndef FIT_TIME_H
#define FIT_TIME_H

#include <stddef.h>
#include <stdint.h>

#define FIT_MS_PER_MIN 60000LL
#define FIT_MS_PER_DAY 86400000LL
/* Offsets beyond +-14:00 do not exist in the tz database (RFC 3339 allows any). */
#define FIT_MAX_OFFSET_MIN (14 * 60)

typedef struct {
    int year;  /* 1..9999 */
    int month; /* 1..12 */
    int day;   /* 1..31 */
} fit_date;

/* Length of "YYYY-MM-DD" plus NUL, and of "YYYY-Www" plus NUL. */
#define FIT_DATE_LEN 11
#define FIT_WEEK_LEN 9

/* Days since 1970-01-01 of a valid civil date (H. Hinnant's days_from_civil). */
int64_t fit_days_from_civil(fit_date d);

/* Civil date of a day number; the inverse of fit_days_from_civil. */
fit_date fit_civil_from_days(int64_t days);

/* 1 if the date exists (e.g. 2024-02-29 yes, 2023-02-29 no). */
int fit_date_valid(fit_date d);

/* ISO weekday, 1 = Monday .. 7 = Sunday. */
int fit_weekday(fit_date d);

/*
 * Parses an RFC 3339 date-time "YYYY-MM-DDTHH:MM:SS[.fraction](Z|+hh:mm|-hh:mm)"
 * ('t' and ' ' accepted for 'T', 'z' for 'Z'; leap second 60 is refused).
 * Fractions beyond milliseconds are truncated. An offset is required: a bare
 * local time has no date.
 * Out: *utc_ms the instant, *offset_min the offset it was written in.
 * Returns 0, FIT_EINVALID_VALUE (malformed) or FIT_EBAD_OFFSET (beyond +-14:00).
 */
int fit_time_parse(const char *s, int64_t *utc_ms, int *offset_min);

/* Formats an instant in the given offset as "YYYY-MM-DDTHH:MM:SS[.mmm]+hh:mm" ("Z" for 0). buf
 * >= 32. */
void fit_time_format(int64_t utc_ms, int offset_min, char *buf, size_t len);

/* Parses "+hh:mm" / "-hh:mm" / "Z". Returns 0, FIT_EINVALID_VALUE or FIT_EBAD_OFFSET. */
int fit_offset_parse(const char *s, int *offset_min);

/* Parses "YYYY-MM-DD" (a real date). Returns 0 or FIT_EINVALID_VALUE. */
int fit_date_parse(const char *s, fit_date *out);

/* Writes "YYYY-MM-DD" into buf (>= FIT_DATE_LEN). */
void fit_date_format(fit_date d, char *buf);

/* Local civil date of an instant seen at offset_min. */
fit_date fit_local_date(int64_t utc_ms, int offset_min);

/* UTC instant of local midnight starting date d at offset_min. */
int64_t fit_local_midnight_ms(fit_date d, int offset_min);

/* ISO week of a date: *iso_year (may differ from d.year) and *week (1..53). */
void fit_iso_week(fit_date d, int *iso_year, int *week);

/* Number of ISO weeks (52 or 53) in an ISO week-numbering year. */
int fit_iso_weeks_in_year(int iso_year);

/* Writes "YYYY-Www" into buf (>= FIT_WEEK_LEN). */
void fit_iso_week_format(int iso_year, int week, char *buf);

/* Parses "YYYY-Www" (week must exist in that year). Returns 0 or FIT_EINVALID_VALUE. */
int fit_iso_week_parse(const char *s, int *iso_year, int *week);

/* Monday of an ISO week (the week's other days follow it). */
fit_date fit_iso_week_monday(int iso_year, int week);

/* Convenience: the "YYYY-Www" name of the week holding local date d. */
void fit_date_week_name(fit_date d, char *buf);

#endif
