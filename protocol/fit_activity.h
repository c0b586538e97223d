/*
 * fit_activity: the activity model and its validation.
 *
 * Three things a member sends are validated here, before anything touches
 * Redis: exercise sessions, daily summaries from trackers, and profile
 * fields. Each parser takes one JSON item (borrowed), checks every field,
 * and either fills a plain struct or returns one fit_field_error naming the
 * field relative to the item ("start", "moderate_min"). A session is then
 * split into per-local-day segments at local midnight in its own UTC offset
 * (DESIGN.md: "a session that crosses local midnight is split between the
 * two days, and so between two weeks on a Sunday night").
 */
#ifndef FIT_ACTIVITY_H
#define FIT_ACTIVITY_H

#include "fit_error.h"
#include "fit_met.h"
#include "fit_time.h"

#include <jansson.h>
#include <stdint.h>

#define FIT_CLIENT_ID_MAX 64
#define FIT_SOURCE_MAX 32
#define FIT_MAX_DURATION_MS FIT_MS_PER_DAY
/* A session of at most 24 h touches at most two local days; keep one spare. */
#define FIT_MAX_SEGMENTS 3

/* What the server checks uploads against. */
typedef struct {
    int64_t now_ms;              /* the server's clock, UTC ms */
    int max_age_weeks;           /* acceptance window; 0 = unlimited (history imports) */
    int64_t future_tolerance_ms; /* how far in the future a time may be (default 10 min) */
    const fit_met_table *met;    /* borrowed */
} fit_rules;

/* The part of a session that falls on one local day. */
typedef struct {
    fit_date date;
    char date_str[FIT_DATE_LEN];
    char week[FIT_WEEK_LEN];
    int64_t start_ms, end_ms; /* UTC ms, [start, end) clipped to the local day */
    int64_t steps;            /* this day's share of the session's steps, by time; -1 none */
    double distance_m;        /* this day's share of the distance, metres; -1 none */
} fit_segment;

typedef struct {
    char client_id[FIT_CLIENT_ID_MAX + 1];
    char type[FIT_ACTIVITY_TYPE_MAX + 1];
    int64_t start_ms, end_ms;     /* UTC ms */
    int offset_min;               /* the start timestamp's own UTC offset */
    fit_intensity intensity;      /* resolved: device, else MET, else the type's Compendium MET */
    const char *intensity_source; /* "device", "met" or "type" (static string) */
    double met;                   /* as sent, 0 if not */
    int64_t steps;                /* -1 if not sent */
    double distance_m;            /* -1 if not sent */
    int strength, balance;        /* muscle-strengthening / balance flags */
    int nseg;
    fit_segment seg[FIT_MAX_SEGMENTS];
    json_t *doc; /* new reference: the item's fields, normalised; compared for idempotency */
} fit_activity;

typedef struct {
    fit_date date;
    char date_str[FIT_DATE_LEN];
    char week[FIT_WEEK_LEN];
    int offset_min;
    char source[FIT_SOURCE_MAX + 1];
    int64_t recorded_at_ms; /* when the tracker produced this snapshot; newest wins */
    int moderate_min, vigorous_min, light_min;
    int64_t steps;     /* 0 if not sent */
    double distance_m; /* 0 if not sent */
    json_t *doc;       /* new reference */
} fit_summary;

/* Profile fields; has_* says which were present in a profile.set. */
typedef struct {
    int has_birth_year, has_district, has_gender, has_pregnant, has_display_name, has_team,
        has_boards;
    int birth_year; /* 0 = cleared */
    char district[41];
    char gender[16];
    int pregnant;
    char display_name[161]; /* up to 40 characters of UTF-8 (4 bytes each at most) */
    char team[41];          /* a slug, "" = cleared */
    int boards;             /* 0 = the member leaves every leaderboard (still counted) */
} fit_profile;

/*
 * Validates one session: {client_id, type, start, duration_s | end, intensity?,
 * met?, distance_m?, steps?, strength?, balance?}. On success fills *out
 * (free its doc with fit_activity_clear) and returns 0; on failure returns
 * the negative code, fills *err and leaves nothing to free.
 * Errors: FIT_EMISSING_FIELD, FIT_EINVALID_TYPE, FIT_EINVALID_VALUE,
 * FIT_EUNKNOWN_FIELD, FIT_EBAD_OFFSET, FIT_EDURATION_OUT_OF_RANGE,
 * FIT_EFUTURE_TIME, FIT_ETOO_OLD, FIT_EUNKNOWN_ACTIVITY_TYPE.
 */
int fit_activity_parse(const json_t *item, const fit_rules *rules, fit_activity *out,
                       fit_field_error *err);
void fit_activity_clear(fit_activity *a);

/*
 * Validates one daily summary: {date, utc_offset, source, recorded_at,
 * moderate_min, vigorous_min, light_min?, steps?, distance_m?}. Minutes are
 * whole minutes 0..1440 whose sum is at most 1440. Same contract as above.
 */
int fit_summary_parse(const json_t *item, const fit_rules *rules, fit_summary *out,
                      fit_field_error *err);
void fit_summary_clear(fit_summary *s);

/*
 * Validates the "profile" object of profile.set: birth_year (1900..this year,
 * or null to clear), district (slug [a-z0-9-], up to 40), gender (female,
 * male, other, undisclosed), pregnant (bool), display_name (1..40 characters),
 * team (slug), boards (bool: false leaves the leaderboards). Whether the district
 * exists is the caller's check (fit_board.h tables).
 * current_year bounds birth_year. Returns 0 or a negative code with *err.
 */
int fit_profile_parse(const json_t *obj, int current_year, fit_profile *out, fit_field_error *err);

/* 1 if s is a usable id (1..max chars of [A-Za-z0-9._:@-]). Used for client ids, users, devices. */
int fit_id_valid(const char *s, size_t max);

#endif
