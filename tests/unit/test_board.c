/*
 * test_board: leaderboard names and their scope tables (protocol/fit_board.c)
 * with the real config/districts.json and config/age_bands.json, and with
 * broken tables that must be refused at start-up rather than make boards
 * that silently hold nobody.
 *
 * Board names are user input (a big screen's URL, an app's request): every
 * name below that is not exactly "week:<ISO week | current>:<scope>" with a
 * configured district, a configured band or a valid team slug must fail with
 * field "board".
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "fit_board.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

static fit_board_tables real;

static json_t *load(const char *file)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", FITSYNC_CONFIG_DIR, file);
    json_error_t jerr;
    json_t *doc = json_load_file(path, 0, &jerr);
    if (!doc)
        fprintf(stderr, "cannot load %s: %s\n", path, jerr.text);
    return doc;
}

static int load_real(void **state)
{
    (void)state;
    json_t *d = load("districts.json"), *b = load("age_bands.json");
    char errbuf[256] = "";
    int rc = d && b ? fit_board_tables_load(&real, d, b, errbuf, sizeof(errbuf)) : -1;
    if (rc != 0)
        fprintf(stderr, "board tables: %s\n", errbuf);
    json_decref(d);
    json_decref(b);
    return rc;
}

static int free_real(void **state)
{
    (void)state;
    fit_board_tables_free(&real);
    return 0;
}

/* ---- the real tables ---- */

static void test_real_tables(void **state)
{
    (void)state;
    assert_int_equal(real.ndistricts, 18);
    assert_int_equal(real.nbands, 5);
    /* Every Hong Kong district once, in file order. */
    static const char *slugs[18] = {
        "central-and-western",
        "wan-chai",
        "eastern",
        "southern",
        "yau-tsim-mong",
        "sham-shui-po",
        "kowloon-city",
        "wong-tai-sin",
        "kwun-tong",
        "kwai-tsing",
        "tsuen-wan",
        "tuen-mun",
        "yuen-long",
        "north",
        "tai-po",
        "sha-tin",
        "sai-kung",
        "islands",
    };
    for (size_t i = 0; i < 18; i++) {
        assert_string_equal(real.districts[i].slug, slugs[i]);
        assert_ptr_equal(fit_district_find(&real, slugs[i]), &real.districts[i]);
    }
    const fit_district *wc = fit_district_find(&real, "wan-chai");
    assert_non_null(wc);
    assert_string_equal(wc->en, "Wan Chai");
    assert_string_equal(wc->zh, "灣仔區");
    assert_string_equal(fit_district_find(&real, "yau-tsim-mong")->zh, "油尖旺區");
    assert_null(fit_district_find(&real, "nowhere"));
    assert_null(fit_district_find(&real, "Wan-Chai"));
    assert_null(fit_district_find(&real, "wan"));
    assert_null(fit_district_find(&real, ""));

    static const struct {
        const char *id;
        int lo, hi;
    } bands[5] = {
        {"5-17", 5, 17}, {"18-34", 18, 34}, {"35-49", 35, 49}, {"50-64", 50, 64}, {"65+", 65, -1}};
    for (size_t i = 0; i < 5; i++) {
        assert_string_equal(real.bands[i].id, bands[i].id);
        assert_int_equal(real.bands[i].min_age, bands[i].lo);
        assert_int_equal(real.bands[i].max_age, bands[i].hi);
    }
}

static void test_age_band_of(void **state)
{
    (void)state;
    static const struct {
        int age;
        const char *band; /* NULL: on no age board */
    } cases[] = {
        {-1, NULL},    {0, NULL},     {4, NULL},     {5, "5-17"},   {17, "5-17"},
        {18, "18-34"}, {34, "18-34"}, {35, "35-49"}, {49, "35-49"}, {50, "50-64"},
        {64, "50-64"}, {65, "65+"},   {120, "65+"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const fit_age_band *b = fit_age_band_of(&real, cases[i].age);
        if (!cases[i].band) {
            if (b)
                fail_msg("age %d: expected no band, got %s", cases[i].age, b->id);
        } else {
            if (!b)
                fail_msg("age %d: expected %s, got none", cases[i].age, cases[i].band);
            assert_string_equal(b->id, cases[i].band);
        }
    }
}

static void test_age_bands_spec(void **state)
{
    (void)state;
    char buf[256];
    memset(buf, 'x', sizeof(buf));
    fit_age_bands_spec(&real, buf, sizeof(buf));
    assert_string_equal(buf, "5-17:5:17,18-34:18:34,35-49:35:49,50-64:50:64,65+:65:");

    /* A buffer too small: a NUL-terminated prefix, nothing written past it. */
    char small[16 + 4];
    memset(small, 'x', sizeof(small));
    fit_age_bands_spec(&real, small, 16);
    assert_int_equal(strlen(small), 15);
    assert_memory_equal(small, "5-17:5:17,18-34", 15);
    assert_memory_equal(small + 16, "xxxx", 4);

    fit_board_tables empty = {0};
    strcpy(buf, "junk");
    fit_age_bands_spec(&empty, buf, sizeof(buf));
    assert_string_equal(buf, "");
}

static void test_slug_valid(void **state)
{
    (void)state;
    char s40[41], s41[42];
    memset(s40, 'a', 40);
    s40[40] = '\0';
    memset(s41, 'a', 41);
    s41[41] = '\0';
    assert_true(fit_slug_valid("a"));
    assert_true(fit_slug_valid("wan-chai"));
    assert_true(fit_slug_valid("team-42"));
    assert_true(fit_slug_valid("-"));
    assert_true(fit_slug_valid(s40));
    assert_false(fit_slug_valid(s41));
    assert_false(fit_slug_valid(""));
    assert_false(fit_slug_valid("Wan-Chai"));
    assert_false(fit_slug_valid("wan_chai"));
    assert_false(fit_slug_valid("wan chai"));
    assert_false(fit_slug_valid("wan:chai"));
    assert_false(fit_slug_valid("灣仔"));
}

/* ---- broken tables ---- */

/* Loads the given JSON texts; returns the code, and the message in errbuf. */
static int load_texts(const char *districts, const char *bands, char *errbuf, size_t len)
{
    json_error_t jerr;
    json_t *d = json_loads(districts, 0, &jerr);
    json_t *b = json_loads(bands, 0, &jerr);
    assert_non_null(d);
    assert_non_null(b);
    fit_board_tables t;
    memset(&t, 0x5a, sizeof(t)); /* the loader must not trust what was there */
    errbuf[0] = '\0';
    int rc = fit_board_tables_load(&t, d, b, errbuf, len);
    if (rc == 0)
        fit_board_tables_free(&t);
    else {
        /* Refused: nothing left allocated, the struct cleared. */
        assert_null(t.districts);
        assert_null(t.bands);
        assert_int_equal(t.ndistricts, 0);
        assert_int_equal(t.nbands, 0);
    }
    json_decref(d);
    json_decref(b);
    return rc;
}

#define D_OK                                                                                       \
    "{\"districts\": [{\"slug\": \"a\", \"en\": \"A\", \"zh\": \"甲\"}, {\"slug\": \"b\", "       \
    "\"en\": \"B\", \"zh\": \"乙\"}]}"
#define B_OK                                                                                       \
    "{\"bands\": [{\"id\": \"young\", \"min\": 5, \"max\": 20}, {\"id\": \"old\", \"min\": 21, "   \
    "\"max\": null}]}"

static void test_tables_minimal(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(load_texts(D_OK, B_OK, err, sizeof(err)), 0);
    /* No districts at all is allowed (a programme without district boards). */
    assert_int_equal(load_texts("{\"districts\": []}", B_OK, err, sizeof(err)), 0);
    /* "max" left out is an open band, like null. */
    assert_int_equal(
        load_texts(D_OK, "{\"bands\": [{\"id\": \"all\", \"min\": 0}]}", err, sizeof(err)), 0);
    /* Gaps between bands are allowed: those ages are on no age board. */
    assert_int_equal(load_texts(D_OK,
                                "{\"bands\": [{\"id\": \"a\", \"min\": 5, \"max\": 9},"
                                " {\"id\": \"b\", \"min\": 20, \"max\": 29}]}",
                                err, sizeof(err)),
                     0);
}

static void test_tables_bad_districts(void **state)
{
    (void)state;
    char err[256];
    static const char *bad[] = {
        /* duplicate slug */
        "{\"districts\": [{\"slug\": \"a\", \"en\": \"A\", \"zh\": \"甲\"}, {\"slug\": \"a\", "
        "\"en\": \"A2\", \"zh\": \"乙\"}]}",
        /* slug not [a-z0-9-] */
        "{\"districts\": [{\"slug\": \"Wan-Chai\", \"en\": \"A\", \"zh\": \"甲\"}]}",
        "{\"districts\": [{\"slug\": \"wan chai\", \"en\": \"A\", \"zh\": \"甲\"}]}",
        "{\"districts\": [{\"slug\": \"\", \"en\": \"A\", \"zh\": \"甲\"}]}",
        "{\"districts\": [{\"slug\": \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\", \"en\": \"A\", "
        "\"zh\": \"甲\"}]}",
        /* missing or wrong-typed fields */
        "{\"districts\": [{\"en\": \"A\", \"zh\": \"甲\"}]}",
        "{\"districts\": [{\"slug\": \"a\", \"zh\": \"甲\"}]}",
        "{\"districts\": [{\"slug\": \"a\", \"en\": \"A\"}]}",
        "{\"districts\": [{\"slug\": 7, \"en\": \"A\", \"zh\": \"甲\"}]}",
        /* a name that does not fit */
        "{\"districts\": [{\"slug\": \"a\", \"en\": "
        "\"0123456789012345678901234567890123456789012345678901234567890123\", \"zh\": \"甲\"}]}",
        /* not an array */
        "{\"districts\": {\"slug\": \"a\", \"en\": \"A\", \"zh\": \"甲\"}}",
        "{\"district\": []}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = load_texts(bad[i], B_OK, err, sizeof(err));
        if (rc != FIT_EINVALID_VALUE)
            fail_msg("districts case %zu: expected FIT_EINVALID_VALUE, got %d", i, rc);
        assert_true(strlen(err) > 0);
    }
    /* The message names the entry at fault. */
    load_texts(bad[0], B_OK, err, sizeof(err));
    assert_non_null(strstr(err, "districts[1]"));
}

static void test_tables_bad_bands(void **state)
{
    (void)state;
    char err[256];
    static const char *bad[] = {
        /* overlapping */
        "{\"bands\": [{\"id\": \"a\", \"min\": 5, \"max\": 20}, {\"id\": \"b\", \"min\": 20, "
        "\"max\": 30}]}",
        "{\"bands\": [{\"id\": \"a\", \"min\": 5, \"max\": 20}, {\"id\": \"b\", \"min\": 10, "
        "\"max\": 15}]}",
        /* not ascending */
        "{\"bands\": [{\"id\": \"b\", \"min\": 21, \"max\": 30}, {\"id\": \"a\", \"min\": 5, "
        "\"max\": 20}]}",
        /* anything after an open band overlaps it */
        "{\"bands\": [{\"id\": \"a\", \"min\": 5, \"max\": null}, {\"id\": \"b\", \"min\": 90, "
        "\"max\": 99}]}",
        /* max below min */
        "{\"bands\": [{\"id\": \"a\", \"min\": 20, \"max\": 10}]}",
        /* bad id characters (they would break the "id:min:max," spec) */
        "{\"bands\": [{\"id\": \"a:b\", \"min\": 5, \"max\": 20}]}",
        "{\"bands\": [{\"id\": \"a,b\", \"min\": 5, \"max\": 20}]}",
        "{\"bands\": [{\"id\": \"a b\", \"min\": 5, \"max\": 20}]}",
        "{\"bands\": [{\"id\": \"\", \"min\": 5, \"max\": 20}]}",
        "{\"bands\": [{\"id\": \"0123456789abcdef\", \"min\": 5, \"max\": 20}]}",
        "{\"bands\": [{\"min\": 5, \"max\": 20}]}",
        /* bad bounds */
        "{\"bands\": [{\"id\": \"a\", \"min\": -1, \"max\": 20}]}",
        "{\"bands\": [{\"id\": \"a\", \"max\": 20}]}",
        "{\"bands\": [{\"id\": \"a\", \"min\": \"5\", \"max\": 20}]}",
        "{\"bands\": [{\"id\": \"a\", \"min\": 5, \"max\": \"20\"}]}",
        /* none at all, or not an array */
        "{\"bands\": []}",
        "{\"bands\": {\"id\": \"a\", \"min\": 5}}",
        "{}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = load_texts(D_OK, bad[i], err, sizeof(err));
        if (rc != FIT_EINVALID_VALUE)
            fail_msg("bands case %zu (%s): expected FIT_EINVALID_VALUE, got %d", i, bad[i], rc);
        assert_true(strlen(err) > 0);
    }
    load_texts(D_OK, bad[0], err, sizeof(err));
    assert_non_null(strstr(err, "bands[1]"));
    /* A 15-character id is the longest that fits. */
    assert_int_equal(
        load_texts(D_OK, "{\"bands\": [{\"id\": \"0123456789abcde\", \"min\": 5, \"max\": 20}]}",
                   err, sizeof(err)),
        0);
}

/* ---- names ---- */

static void parse_ok(const char *name, int current, const char *week, const char *scope)
{
    fit_board_name b;
    fit_field_error fe;
    memset(&fe, 0, sizeof(fe));
    int rc = fit_board_parse(name, &real, &b, &fe);
    if (rc != 0)
        fail_msg("\"%s\": expected to parse, got %d (%s)", name, rc, fe.message);
    assert_int_equal(b.current, current);
    assert_string_equal(b.week, week);
    assert_string_equal(b.scope, scope);
}

static void test_parse_good(void **state)
{
    (void)state;
    parse_ok("week:2026-W10:all", 0, "2026-W10", "all");
    parse_ok("week:current:all", 1, "", "all");
    parse_ok("week:current:district:wan-chai", 1, "", "district:wan-chai");
    parse_ok("week:2026-W01:district:central-and-western", 0, "2026-W01",
             "district:central-and-western");
    parse_ok("week:2026-W53:district:islands", 0, "2026-W53", "district:islands"); /* 2026 has 53 */
    parse_ok("week:2020-W53:all", 0, "2020-W53", "all");
    parse_ok("week:2026-W48:age:5-17", 0, "2026-W48", "age:5-17");
    parse_ok("week:current:age:65+", 1, "", "age:65+");
    parse_ok("week:current:team:a", 1, "", "team:a");
    parse_ok("week:current:team:harbour-runners-2026", 1, "", "team:harbour-runners-2026");
    /* The longest team slug fits in the name and the scope. */
    parse_ok("week:2026-W10:team:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 0, "2026-W10",
             "team:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
}

static void parse_bad(const char *name, const char *message_has)
{
    fit_board_name b;
    fit_field_error fe;
    memset(&fe, 0, sizeof(fe));
    int rc = fit_board_parse(name, &real, &b, &fe);
    if (rc == 0)
        fail_msg("\"%s\": expected an error, parsed as week \"%s\" scope \"%s\"", name, b.week,
                 b.scope);
    assert_int_equal(rc, FIT_EINVALID_VALUE);
    assert_int_equal(fe.code, FIT_EINVALID_VALUE);
    assert_string_equal(fe.field, "board");
    assert_true(strlen(fe.message) > 0);
    if (message_has && !strstr(fe.message, message_has))
        fail_msg("\"%s\": message \"%s\" does not say \"%s\"", name, fe.message, message_has);
}

static void test_parse_bad(void **state)
{
    (void)state;
    parse_bad("", NULL);
    parse_bad("week", NULL);
    parse_bad("week:", NULL);
    parse_bad("all", NULL);
    parse_bad("month:2026-11:all", NULL);
    parse_bad("Week:2026-W10:all", NULL);
    parse_bad("week:2026-W10", "no scope");
    parse_bad("week:current", "no scope");
    parse_bad("week:2026-W10:", "scope");
    parse_bad("week::all", "week");
    parse_bad("week:2026-W54:all", "week");
    parse_bad("week:2025-W53:all", "week"); /* 2025 has 52 */
    parse_bad("week:2026-W00:all", "week");
    parse_bad("week:2026-W1:all", "week");
    parse_bad("week:2026-10:all", "week");
    parse_bad("week:2026-w10:all", "week");
    parse_bad("week:2026-W10x:all", "week");
    parse_bad("week:2026-W10-extra-text-here:all", "week");
    parse_bad("week:Current:all", "week");
    parse_bad("week:current-ish:all", "week");
    parse_bad("week:now:all", "week");
    parse_bad("week:current:everyone", "scope");
    parse_bad("week:current:All", "scope");
    parse_bad("week:current:all:extra", "scope");
    parse_bad("week:current:district:nowhere", "unknown district");
    parse_bad("week:current:district:", "unknown district");
    parse_bad("week:current:district:Wan-Chai", "unknown district");
    parse_bad("week:current:district", "scope");
    parse_bad("week:current:age:18-33", "unknown age band");
    parse_bad("week:current:age:", "unknown age band");
    parse_bad("week:current:age:65", "unknown age band");
    parse_bad("week:current:team:", "team");
    parse_bad("week:current:team:Bad_Team", "team");
    parse_bad("week:current:team:a b", "team");
    parse_bad("week:current:team:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "team"); /* 41 */
    parse_bad("week:current:user:alice", "scope");
    /* Too long to be any board (FIT_BOARD_NAME_MAX). */
    char longname[200];
    snprintf(longname, sizeof(longname), "week:current:team:%0150d", 0);
    parse_bad(longname, NULL);
}

static void test_resolve(void **state)
{
    (void)state;
    fit_board_name b;
    fit_field_error fe;
    char buf[FIT_BOARD_NAME_MAX];

    assert_int_equal(fit_board_parse("week:current:district:wan-chai", &real, &b, &fe), 0);
    fit_board_resolve(&b, "2026-W49", buf, sizeof(buf));
    assert_string_equal(buf, "week:2026-W49:district:wan-chai");
    assert_string_equal(b.week, "2026-W49");
    assert_int_equal(b.current, 1);

    /* An explicit week is kept whatever the current one is. */
    assert_int_equal(fit_board_parse("week:2026-W10:age:65+", &real, &b, &fe), 0);
    fit_board_resolve(&b, "2026-W49", buf, sizeof(buf));
    assert_string_equal(buf, "week:2026-W10:age:65+");
    assert_string_equal(b.week, "2026-W10");

    assert_int_equal(fit_board_parse("week:current:all", &real, &b, &fe), 0);
    fit_board_resolve(&b, "2027-W01", buf, sizeof(buf));
    assert_string_equal(buf, "week:2027-W01:all");

    /* The resolved name parses back to the same board, no longer "current". */
    fit_board_name again;
    assert_int_equal(fit_board_parse(buf, &real, &again, &fe), 0);
    assert_int_equal(again.current, 0);
    assert_string_equal(again.week, "2027-W01");
    assert_string_equal(again.scope, "all");

    /* A short buffer gets a truncated, terminated name. */
    char small[12];
    fit_board_resolve(&b, "2027-W01", small, sizeof(small));
    assert_string_equal(small, "week:2027-W");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_tables),      cmocka_unit_test(test_age_band_of),
        cmocka_unit_test(test_age_bands_spec),   cmocka_unit_test(test_slug_valid),
        cmocka_unit_test(test_tables_minimal),   cmocka_unit_test(test_tables_bad_districts),
        cmocka_unit_test(test_tables_bad_bands), cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_parse_bad),        cmocka_unit_test(test_resolve),
    };
    return cmocka_run_group_tests(tests, load_real, free_real);
}
