/* libFuzzer: leaderboard names from clients (fit_board_parse), with the real district and band
 * tables. */
#include "fuzz_common.h"
#include "fit_board.h"

static fit_board_tables tables;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    json_t *d = json_load_file(FITSYNC_CONFIG_DIR "/districts.json", 0, NULL);
    json_t *b = json_load_file(FITSYNC_CONFIG_DIR "/age_bands.json", 0, NULL);
    char err[128];
    if (!d || !b || fit_board_tables_load(&tables, d, b, err, sizeof(err)) != 0)
        abort();
    json_decref(d);
    json_decref(b);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_cstr(data, size);
    fit_board_name b;
    fit_field_error fe;
    char buf[160];
    if (s && fit_board_parse(s, &tables, &b, &fe) == 0)
        fit_board_resolve(&b, "2026-W10", buf, sizeof(buf));
    free(s);
    return 0;
}
