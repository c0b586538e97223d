/*
 * libFuzzer harness for protocol/: every parser a client's bytes reach
 * (envelope, sessions, summaries, profiles, RFC 3339 times, ISO weeks,
 * tokens). Build with `make fuzz` (clang, -fsanitize=fuzzer,address,undefined).
 * Seeds: tests/fuzz/corpus/.
 */
#include "fit_activity.h"
#include "fit_message.h"
#include "fit_token.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static fit_met_table met;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    json_t *doc = json_load_file(FITSYNC_CONFIG_DIR "/met.json", 0, NULL);
    char err[128];
    if (!doc || fit_met_table_load(&met, doc, err, sizeof(err)) != 0)
        abort();
    json_decref(doc);
    return 0;
}

static void each_item(const json_t *arr, const fit_rules *r, int summaries)
{
    size_t i;
    const json_t *item;
    json_array_foreach(arr, i, item)
    {
        fit_field_error fe;
        if (summaries) {
            fit_summary s;
            if (fit_summary_parse(item, r, &s, &fe) == 0)
                fit_summary_clear(&s);
        } else {
            fit_activity a;
            if (fit_activity_parse(item, r, &a, &fe) == 0)
                fit_activity_clear(&a);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fit_request req;
    fit_field_error fe;
    fit_rules rules = {1772668800000LL, 8, 600000, &met}; /* 2026-03-05T00:00:00Z */
    if (fit_request_parse((const char *)data, size, &req, &fe) == 0) {
        each_item(json_object_get(req.root, "activities"), &rules, 0);
        each_item(json_object_get(req.root, "summaries"), &rules, 1);
        fit_profile p;
        fit_profile_parse(json_object_get(req.root, "profile"), 2026, &p, &fe);
        const char *tok = json_string_value(json_object_get(req.root, "token"));
        fit_token_claims c;
        if (tok)
            fit_token_verify(tok, "secret", 6, 1772668800, &c);
    }
    fit_request_clear(&req);

    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    int64_t ms;
    int off, y, w;
    fit_time_parse(s, &ms, &off);
    fit_iso_week_parse(s, &y, &w);
    fit_date d;
    fit_date_parse(s, &d);
    fit_token_claims c;
    fit_token_verify(s, "secret", 6, 1772668800, &c);
    free(s);
    return 0;
}
