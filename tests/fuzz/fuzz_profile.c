/* libFuzzer: the profile object of profile.set (fit_profile_parse). */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *obj = fuzz_json(data, size);
    fit_profile p;
    fit_field_error fe;
    if (obj)
        fit_profile_parse(obj, 2026, &p, &fe);
    json_decref(obj);
    return 0;
}
