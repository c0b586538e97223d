/* libFuzzer: one daily summary item of summary.upload (fit_summary_parse). */
#include "fuzz_common.h"

FUZZ_INIT_MET_TABLE

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *item = fuzz_json(data, size);
    fit_rules rules = fuzz_rules();
    fit_summary s;
    fit_field_error fe;
    if (item && fit_summary_parse(item, &rules, &s, &fe) == 0)
        fit_summary_clear(&s);
    json_decref(item);
    return 0;
}
