/*
 * fit_met: the MET table and the intensity cut points. The table is data
 * (config/met.json, each entry citing its Compendium code), not code, so a
 * programme can add its local activities without a rebuild.
 */
#include "fit_met.h"
#include "fit_error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int fit_met_table_load(fit_met_table *t, const json_t *doc, char *errbuf, size_t errlen)
{
    memset(t, 0, sizeof(*t));
    const json_t *arr = json_object_get(doc, "activities");
    if (!json_is_array(arr) || json_array_size(arr) == 0) {
        snprintf(errbuf, errlen, "met table: \"activities\" must be a non-empty array");
        return FIT_EINVALID_VALUE;
    }
    t->entries = calloc(json_array_size(arr), sizeof(*t->entries));
    if (!t->entries)
        return FIT_ENOMEM;
    size_t i;
    const json_t *e;
    json_array_foreach(arr, i, e)
    {
        const char *type = json_string_value(json_object_get(e, "type"));
        const char *code = json_string_value(json_object_get(e, "code"));
        const json_t *met = json_object_get(e, "met");
        if (!type || !*type || strlen(type) > FIT_ACTIVITY_TYPE_MAX || !code ||
            strlen(code) >= sizeof(t->entries[i].code) || !json_is_number(met) ||
            json_number_value(met) <= 0 || json_number_value(met) > 25) {
            snprintf(errbuf, errlen,
                     "met table: activities[%zu] needs type, code and met in (0, 25]", i);
            fit_met_table_free(t);
            return FIT_EINVALID_VALUE;
        }
        snprintf(t->entries[i].type, sizeof(t->entries[i].type), "%s", type);
        snprintf(t->entries[i].code, sizeof(t->entries[i].code), "%s", code);
        t->entries[i].met = json_number_value(met);
        t->count++;
    }
    return 0;
}

void fit_met_table_free(fit_met_table *t)
{
    free(t->entries);
    t->entries = NULL;
    t->count = 0;
}

const fit_met_entry *fit_met_lookup(const fit_met_table *t, const char *type)
{
    for (size_t i = 0; i < t->count; i++)
        if (strcmp(t->entries[i].type, type) == 0)
            return &t->entries[i];
    return NULL;
}

fit_intensity fit_intensity_from_met(double met)
{
    if (met >= FIT_MET_VIGOROUS)
        return FIT_INTENSITY_VIGOROUS;
    if (met >= FIT_MET_MODERATE)
        return FIT_INTENSITY_MODERATE;
    return FIT_INTENSITY_LIGHT;
}

fit_intensity fit_intensity_parse(const char *s)
{
    if (!s)
        return FIT_INTENSITY_NONE;
    if (strcmp(s, "light") == 0)
        return FIT_INTENSITY_LIGHT;
    if (strcmp(s, "moderate") == 0)
        return FIT_INTENSITY_MODERATE;
    if (strcmp(s, "vigorous") == 0)
        return FIT_INTENSITY_VIGOROUS;
    return FIT_INTENSITY_NONE;
}

const char *fit_intensity_name(fit_intensity i)
{
    switch (i) {
    case FIT_INTENSITY_LIGHT:
        return "light";
    case FIT_INTENSITY_MODERATE:
        return "moderate";
    case FIT_INTENSITY_VIGOROUS:
        return "vigorous";
    default:
        return "none";
    }
}
