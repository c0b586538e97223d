/*
 * fit_who: a member's ISO week scored against the WHO 2020 guidelines.
 *
 * Source: WHO guidelines on physical activity and sedentary behaviour (2020);
 * Bull et al., Br J Sports Med 2020;54:1451-1462. The numbers live in
 * config/who.json (which cites the same source) and are loaded into
 * fit_who_targets; this module applies them:
 *
 *   - children 5-17: 420 MVPA minutes a week (60 a day on average; moderate +
 *     vigorous, not weighted), vigorous activity on >= 3 days, muscle/bone
 *     strengthening on >= 3 days;
 *   - adults 18-64: 150 equivalent minutes (moderate + 2 x vigorous), 300+ is
 *     "additional benefit", muscle strengthening on >= 2 days;
 *   - older adults 65+: as adults, plus balance/multicomponent on >= 3 days;
 *   - pregnancy/postpartum (profile flag): 150 MVPA minutes.
 *
 * A member with no birth year is scored as an adult. The guidelines start at
 * age 5; a younger member is scored with the children's targets.
 */
#ifndef FIT_WHO_H
#define FIT_WHO_H

#include "fit_time.h"

#include <jansson.h>
#include <stdint.h>

typedef enum {
    FIT_BAND_CHILDREN = 0,
    FIT_BAND_ADULTS,
    FIT_BAND_OLDER_ADULTS,
    FIT_BAND_PREGNANCY,
    FIT_BAND_COUNT
} fit_band;

/* Which weekly figure the aerobic target is measured in. */
typedef enum {
    FIT_MEASURE_MVPA = 0,  /* moderate + vigorous minutes */
    FIT_MEASURE_EQUIVALENT /* moderate + 2 x vigorous minutes */
} fit_measure;

typedef struct {
    int min_age, max_age; /* inclusive; max_age -1 = no upper bound; unused for pregnancy */
    int aerobic_min;      /* minutes per ISO week */
    fit_measure measure;
    int additional_benefit_min; /* 0 = not defined for this band */
    int vigorous_days;          /* days per week with vigorous minutes; 0 = no requirement */
    int strength_days;
    int balance_days;
} fit_who_target;

typedef struct {
    fit_who_target band[FIT_BAND_COUNT];
    char source[256];
} fit_who_targets;

/* One local day's totals, as stored by the aggregation (minutes are whole minutes). */
typedef struct {
    fit_date date;
    int moderate_min, vigorous_min, light_min;
    int strength; /* 1 if a muscle-strengthening session was logged that day */
    int balance;  /* 1 if a balance/multicomponent session was logged that day */
    int64_t steps;
    double distance_m;
} fit_day_totals;

/* A week's status; see fit_week_status_json for the wire shape. */
typedef struct {
    char week[FIT_WEEK_LEN];
    fit_band band;
    fit_who_target target;
    int moderate_min, vigorous_min, light_min;
    int mvpa_min;       /* moderate + vigorous */
    int equivalent_min; /* moderate + 2 x vigorous */
    int vigorous_days, strength_days, balance_days, active_days;
    int aerobic_met, guideline_met, additional_benefit;
    int64_t steps;
    double distance_m;
    fit_day_totals days[7]; /* Monday..Sunday */
} fit_week_status;

/*
 * Loads targets from config/who.json's parsed document (borrowed):
 * {"source": "...", "bands": {"children": {...}, "adults": ..., "older_adults": ...,
 *  "pregnancy": ...}}. Returns 0, or FIT_EINVALID_VALUE with the bad key in errbuf.
 */
int fit_who_targets_load(fit_who_targets *t, const json_t *doc, char *errbuf, size_t errlen);

/* "children" / "adults" / "older_adults" / "pregnancy". Static string. */
const char *fit_band_name(fit_band b);

/*
 * The band a member is scored in for a week of iso_year. birth_year 0 means
 * unknown (scored as adult); pregnant non-zero means the pregnancy band.
 * Age is iso_year - birth_year (only the year of birth is kept, by design).
 */
fit_band fit_who_band(const fit_who_targets *t, int birth_year, int pregnant, int iso_year);

/*
 * Scores a week. days[7] are Monday..Sunday of iso_year/week (their dates
 * are filled in here; days without data must be zeroed by the caller).
 * Equivalent minutes = moderate + 2 x vigorous (WHO 2020: 1 vigorous minute
 * counts as 2 moderate minutes); no minimum bout length (dropped in 2020).
 */
void fit_who_score_week(const fit_who_targets *t, int iso_year, int week, fit_band band,
                        const fit_day_totals days[7], fit_week_status *out);

/* The wire shape of a week (docs/PROTOCOL.md, "week"). Returns a new reference. */
json_t *fit_week_status_json(const fit_week_status *s);

#endif
