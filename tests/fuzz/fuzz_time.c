/* libFuzzer: the text formats of time (RFC 3339 instants, UTC offsets, dates, ISO weeks). */
#include "fuzz_common.h"
#include "fit_time.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_cstr(data, size);
    if (!s)
        return 0;
    int64_t ms;
    int off, y, w;
    fit_date d;
    fit_time_parse(s, &ms, &off);
    fit_offset_parse(s, &off);
    fit_date_parse(s, &d);
    fit_iso_week_parse(s, &y, &w);
    free(s);
    return 0;
}
