/*
 * fit_met: intensity classification.
 *
 * Order of evidence (DESIGN.md, "WHO 2020 rules"): the device's own intensity
 * (heart-rate zones) if sent, else the MET value if sent, else the activity
 * type's MET from the Adult Compendium of Physical Activities (Ainsworth et
 * al. 2011), with the conventional cut points light < 3, moderate 3 to < 6,
 * vigorous >= 6 METs (WHO 2020 guidelines, glossary).
 */
#ifndef FIT_MET_H
#define FIT_MET_H

#include <jansson.h>
#include <stddef.h>

typedef enum {
    FIT_INTENSITY_NONE = 0, /* not given */
    FIT_INTENSITY_LIGHT = 1,
    FIT_INTENSITY_MODERATE = 2,
    FIT_INTENSITY_VIGOROUS = 3
} fit_intensity;

#define FIT_MET_MODERATE 3.0
#define FIT_MET_VIGOROUS 6.0
#define FIT_ACTIVITY_TYPE_MAX 32

typedef struct {
    char type[FIT_ACTIVITY_TYPE_MAX + 1]; /* e.g. "running" */
    char code[8];                         /* Compendium code, e.g. "12150" */
    double met;
} fit_met_entry;

/* The activity-type table, loaded from config/met.json. Owns its entries. */
typedef struct {
    fit_met_entry *entries;
    size_t count;
} fit_met_table;

/*
 * Loads {"activities": [{"type", "code", "met", "description"}...]} from a
 * parsed JSON document (borrowed). Returns 0 or FIT_EINVALID_VALUE with a
 * message naming the bad entry in errbuf. Free with fit_met_table_free.
 */
int fit_met_table_load(fit_met_table *t, const json_t *doc, char *errbuf, size_t errlen);
void fit_met_table_free(fit_met_table *t);

/* The entry for an activity type, or NULL. The pointer is borrowed from t. */
const fit_met_entry *fit_met_lookup(const fit_met_table *t, const char *type);

/* Intensity for a MET value by the cut points above. */
fit_intensity fit_intensity_from_met(double met);

/* "light" / "moderate" / "vigorous" -> intensity; FIT_INTENSITY_NONE for anything else. */
fit_intensity fit_intensity_parse(const char *s);
const char *fit_intensity_name(fit_intensity i);

#endif
