/*
 * fit_board: leaderboard names and the tables behind their scopes.
 *
 * A weekly board is named "week:<ISO week>:<scope>", the week being a name
 * like "2026-W10" or "current" (the current week in the programme's time
 * zone), and the scope one of:
 *   all                  everyone
 *   district:<slug>      a district from config/districts.json
 *   age:<band>           an age band from config/age_bands.json
 *   team:<slug>          a team ([a-z0-9-], 1..40), from the member's profile
 * Scores are equivalent minutes (moderate + 2 x vigorous, WHO 2020).
 *
 * An event's standings are "event:<id>:all" or "event:<id>:cat:<category>";
 * their score is laps (fitsync events, workers/events.lua). A virtual
 * challenge's boards are "challenge:<id>:all" (members' progress) and
 * "challenge:<id>:teams" (teams' capped totals).
 */
#ifndef FIT_BOARD_H
#define FIT_BOARD_H

#include "fit_error.h"
#include "fit_time.h"

#include <jansson.h>
#include <stddef.h>

#define FIT_BOARD_NAME_MAX 96
#define FIT_SLUG_MAX 40

typedef struct {
    char slug[FIT_SLUG_MAX + 1];
    char en[64];
    char zh[64];
} fit_district;

typedef struct {
    char id[16];
    int min_age, max_age; /* inclusive; max_age -1 = open */
} fit_age_band;

/* The tables of scopes. Owns its arrays. */
typedef struct {
    fit_district *districts;
    size_t ndistricts;
    fit_age_band *bands;
    size_t nbands;
} fit_board_tables;

/*
 * Loads {"districts": [{slug, en, zh}...]} and {"bands": [{id, min, max}...]}
 * (parsed documents, borrowed). Returns 0 or FIT_EINVALID_VALUE with the bad
 * entry named in errbuf. Free with fit_board_tables_free.
 */
int fit_board_tables_load(fit_board_tables *t, const json_t *districts, const json_t *bands,
                          char *errbuf, size_t errlen);
void fit_board_tables_free(fit_board_tables *t);

/* The district with this slug, or NULL (borrowed from t). */
const fit_district *fit_district_find(const fit_board_tables *t, const char *slug);

/* The age band of a member aged age, or NULL. */
const fit_age_band *fit_age_band_of(const fit_board_tables *t, int age);

/* Writes the bands as "id:min:max,..." (max empty if open) for the Redis Functions. */
void fit_age_bands_spec(const fit_board_tables *t, char *buf, size_t len);

/* 1 if s is a slug: 1..40 of [a-z0-9-]. */
int fit_slug_valid(const char *s);

/* A parsed board name. */
typedef struct {
    int challenge; /* a virtual challenge's board: event_id, scope "all" / "teams" */
    int event;     /* an event board: event_id and scope ("all" / "cat:<id>") */
    char event_id[65];
    int current;             /* the name said "current" */
    char week[FIT_WEEK_LEN]; /* the ISO week (filled in for "current" by fit_board_resolve) */
    char scope[64];          /* "all", "district:wan-chai", ... */
} fit_board_name;

/*
 * Parses a board name (see above). Returns 0, or FIT_EINVALID_VALUE /
 * FIT_EINVALID_TYPE with err->field "board" and a message saying what is wrong
 * (unknown district, unknown age band, bad week...).
 */
int fit_board_parse(const char *name, const fit_board_tables *t, fit_board_name *out,
                    fit_field_error *err);

/* For a "current" board, sets week to current_week; then writes "week:<week>:<scope>". */
void fit_board_resolve(fit_board_name *b, const char *current_week, char *buf, size_t len);

#endif
