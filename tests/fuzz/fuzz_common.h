/*
 * What the libFuzzer harnesses share (one harness per parser, STYLE.md after
 * h2o's fuzz/driver_*.cc): the MET table and acceptance rules the item parsers
 * need, and the input as a C string or a JSON document. Each harness is built
 * with clang -fsanitize=fuzzer,address,undefined (`make fuzz`); seeds in
 * tests/fuzz/corpus/<harness>/.
 */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include "fit_activity.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The harness's MET table (filled by fuzz_load_met). */
static inline fit_met_table *fuzz_met(void)
{
    static fit_met_table met;
    return &met;
}

/* config/met.json, loaded once (LLVMFuzzerInitialize); aborts if it will not load. */
static inline void fuzz_load_met(void)
{
    json_t *doc = json_load_file(FITSYNC_CONFIG_DIR "/met.json", 0, NULL);
    char err[128];
    if (!doc || fit_met_table_load(fuzz_met(), doc, err, sizeof(err)) != 0)
        abort();
    json_decref(doc);
}

/* Defines LLVMFuzzerInitialize to load the MET table (the item parsers need it). */
#define FUZZ_INIT_MET_TABLE                                                                        \
    int LLVMFuzzerInitialize(int *argc, char ***argv)                                              \
    {                                                                                              \
        fuzz_load_met();                                                                           \
        return 0;                                                                                  \
    }

/* Acceptance rules fixed at 2026-03-05T00:00:00Z, 8 weeks back, 600 s ahead. */
static inline fit_rules fuzz_rules(void)
{
    fit_rules r = {1772668800000LL, 8, 600000, fuzz_met()};
    return r;
}

/* The input as a NUL-terminated string (malloc'd; the caller frees), or NULL. */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s) {
        memcpy(s, data, size);
        s[size] = '\0';
    }
    return s;
}

/* The input parsed as one JSON value (new reference), or NULL if it is not JSON. */
static inline json_t *fuzz_json(const uint8_t *data, size_t size)
{
    return json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
}

#endif
