/* libFuzzer: one session item of activity.upload (fit_activity_parse). */
#include "fuzz_common.h"

FUZZ_INIT_MET_TABLE

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *item = fuzz_json(data, size);
    fit_rules rules = fuzz_rules();
    fit_activity a;
    fit_field_error fe;
    if (item && fit_activity_parse(item, &rules, &a, &fe) == 0)
        fit_activity_clear(&a);
    json_decref(item);
    return 0;
}
