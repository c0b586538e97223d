/*
 * test_message: the wire envelope of fitsync.v1 (protocol/fit_message.c),
 * the error table (protocol/fit_error.c), and a check that docs/PROTOCOL.md
 * documents every wire error code of FIT_ERRNO_MAP.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "fit_error.h"
#include "fit_message.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse(const char *text, fit_request *req, fit_field_error *err)
{
    memset(err, 0, sizeof(*err));
    int rc = fit_request_parse(text, strlen(text), req, err);
    if (rc != 0) {
        assert_int_equal(err->code, rc);
        assert_true(err->message[0] != '\0');
    }
    return rc;
}

static void expect_reject(const char *text, int code, const char *field)
{
    fit_request req;
    fit_field_error err;
    int rc = parse(text, &req, &err);
    if (rc != code || strcmp(err.field, field) != 0)
        fail_msg("%s: %s field \"%s\", want %s field \"%s\"", text, rc ? fit_err_name(rc) : "ok",
                 err.field, fit_err_name(code), field);
    fit_request_clear(&req);
    assert_null(req.root);
}

static void test_request_good(void **state)
{
    (void)state;
    fit_request req;
    fit_field_error err;
    assert_int_equal(parse("{\"type\": \"hello\", \"id\": \"r1\", \"token\": \"abc\"}", &req, &err),
                     0);
    assert_string_equal(req.type, "hello");
    assert_string_equal(req.id, "r1");
    assert_true(json_is_object(req.root));
    assert_string_equal(json_string_value(json_object_get(req.root, "token")), "abc");
    fit_request_clear(&req);
    assert_null(req.root);
    assert_null(req.type);
    assert_null(req.id);

    /* No id, and a null id, are both "no id". */
    assert_int_equal(parse("{\"type\": \"ping\"}", &req, &err), 0);
    assert_string_equal(req.type, "ping");
    assert_null(req.id);
    fit_request_clear(&req);
    assert_int_equal(parse("{\"type\": \"ping\", \"id\": null}", &req, &err), 0);
    assert_null(req.id);
    fit_request_clear(&req);

    /* An id of exactly 64 characters. */
    char buf[256];
    snprintf(buf, sizeof(buf), "{\"type\": \"ping\", \"id\": \"%064d\"}", 7);
    assert_int_equal(parse(buf, &req, &err), 0);
    assert_int_equal(strlen(req.id), 64);
    fit_request_clear(&req);

    /* Only len bytes are read: what follows is not part of the frame. */
    const char *frame = "{\"type\": \"ping\"}{\"type\": \"pong\"}";
    assert_int_equal(fit_request_parse(frame, 16, &req, &err), 0);
    assert_string_equal(req.type, "ping");
    fit_request_clear(&req);
    /* An unknown type is the handlers' business, not the envelope's. */
    assert_int_equal(parse("{\"type\": \"no.such.thing\"}", &req, &err), 0);
    fit_request_clear(&req);
}

static void test_request_bad(void **state)
{
    (void)state;
    expect_reject("{\"type\": \"ping\"", FIT_EBAD_JSON, "");
    expect_reject("", FIT_EBAD_JSON, "");
    expect_reject("not json", FIT_EBAD_JSON, "");
    expect_reject("{'type': 'ping'}", FIT_EBAD_JSON, "");
    expect_reject("{\"type\": \"ping\", \"type\": \"hello\"}", FIT_EBAD_JSON, ""); /* duplicate */
    expect_reject("{\"type\": \"ping\"} trailing", FIT_EBAD_JSON, "");
    expect_reject("[{\"type\": \"ping\"}]", FIT_EBAD_MESSAGE, "");
    expect_reject("[]", FIT_EBAD_MESSAGE, "");
    expect_reject("\"ping\"", FIT_EBAD_MESSAGE, "");
    expect_reject("42", FIT_EBAD_MESSAGE, "");
    expect_reject("null", FIT_EBAD_MESSAGE, "");
    expect_reject("{}", FIT_EMISSING_FIELD, "type");
    expect_reject("{\"id\": \"r1\"}", FIT_EMISSING_FIELD, "type");
    expect_reject("{\"type\": 7}", FIT_EINVALID_TYPE, "type");
    expect_reject("{\"type\": null}", FIT_EINVALID_TYPE, "type");
    expect_reject("{\"type\": \"ping\", \"id\": 42}", FIT_EINVALID_TYPE, "id");
    expect_reject("{\"type\": \"ping\", \"id\": true}", FIT_EINVALID_TYPE, "id");
    expect_reject("{\"type\": \"ping\", \"id\": [\"r1\"]}", FIT_EINVALID_TYPE, "id");
    expect_reject("{\"type\": \"ping\", \"id\": \"\"}", FIT_EINVALID_TYPE, "id");
    char buf[256];
    snprintf(buf, sizeof(buf), "{\"type\": \"ping\", \"id\": \"%065d\"}", 7);
    expect_reject(buf, FIT_EINVALID_TYPE, "id");

    /* A frame with a usable id keeps it, so the error reply can carry "re". */
    fit_request req;
    fit_field_error err;
    assert_int_equal(parse("{\"id\": \"r9\", \"type\": 5}", &req, &err), FIT_EINVALID_TYPE);
    assert_non_null(req.id);
    assert_string_equal(req.id, "r9");
    fit_request_clear(&req);
    assert_int_equal(parse("{\"id\": \"r10\"}", &req, &err), FIT_EMISSING_FIELD);
    assert_non_null(req.id);
    assert_string_equal(req.id, "r10");
    fit_request_clear(&req);
    /* A numeric id is not usable. */
    assert_int_equal(parse("{\"type\": \"ping\", \"id\": 42}", &req, &err), FIT_EINVALID_TYPE);
    assert_null(req.id);
    fit_request_clear(&req);
    /* Invalid JSON has no root. */
    assert_int_equal(parse("{", &req, &err), FIT_EBAD_JSON);
    assert_null(req.root);
    assert_null(req.id);
    fit_request_clear(&req);
}

static void test_reply(void **state)
{
    (void)state;
    json_t *r = fit_reply_new("hello", "r1");
    assert_string_equal(json_string_value(json_object_get(r, "type")), "hello");
    assert_string_equal(json_string_value(json_object_get(r, "re")), "r1");
    assert_int_equal(json_object_size(r), 2);
    json_decref(r);
    /* A push carries neither id nor re. */
    r = fit_reply_new("week", NULL);
    assert_int_equal(json_object_size(r), 1);
    assert_null(json_object_get(r, "re"));
    assert_null(json_object_get(r, "id"));
    json_decref(r);
}

static void test_error_reply(void **state)
{
    (void)state;
    json_t *e = fit_error_reply("r7", FIT_EINVALID_VALUE, "activities[3].start", "start is bad");
    json_t *want = json_loads("{\"type\": \"error\", \"re\": \"r7\", \"code\": \"invalid_value\","
                              " \"field\": \"activities[3].start\", \"message\": \"start is bad\"}",
                              0, NULL);
    assert_non_null(want);
    if (!json_equal(e, want)) {
        char *got = json_dumps(e, JSON_SORT_KEYS);
        char shown[512];
        snprintf(shown, sizeof(shown), "%s", got ? got : "(null)");
        free(got);
        fail_msg("error reply %s", shown);
    }
    json_decref(want);
    json_decref(e);

    /* No re, no field, the default message; not retryable. */
    e = fit_error_reply(NULL, FIT_EBAD_JSON, NULL, NULL);
    assert_string_equal(json_string_value(json_object_get(e, "type")), "error");
    assert_string_equal(json_string_value(json_object_get(e, "code")), "bad_json");
    assert_string_equal(json_string_value(json_object_get(e, "message")),
                        fit_strerror(FIT_EBAD_JSON));
    assert_null(json_object_get(e, "re"));
    assert_null(json_object_get(e, "field"));
    assert_false(json_is_true(json_object_get(e, "retryable")));
    json_decref(e);
    e = fit_error_reply("r8", FIT_EUNAUTHENTICATED, "", NULL);
    assert_null(json_object_get(e, "field")); /* "" is omitted */
    assert_string_equal(json_string_value(json_object_get(e, "code")), "unauthenticated");
    json_decref(e);

    /* Storage trouble tells the client to retry. */
    e = fit_error_reply("r9", FIT_EUNAVAILABLE, NULL, NULL);
    assert_string_equal(json_string_value(json_object_get(e, "code")), "unavailable");
    assert_true(json_is_true(json_object_get(e, "retryable")));
    json_decref(e);

    size_t len = 0;
    e = fit_error_reply("r1", FIT_ETOO_LARGE, NULL, "too big");
    char *s = fit_message_dump(e, &len);
    assert_non_null(s);
    assert_int_equal(len, strlen(s));
    assert_null(strchr(s, '\n'));
    json_t *back = json_loads(s, 0, NULL);
    assert_true(json_equal(back, e));
    json_decref(back);
    free(s);
    json_decref(e);
}

static void test_item_error(void **state)
{
    (void)state;
    fit_field_error err;
    assert_int_equal(
        fit_field_error_set(&err, FIT_EFUTURE_TIME, "start", "start is %d s ahead", 660),
        FIT_EFUTURE_TIME);
    assert_string_equal(err.message, "start is 660 s ahead");
    json_t *o = fit_item_error(3, "activities", &err);
    json_t *want = json_loads("{\"index\": 3, \"status\": \"error\", \"code\": \"future_time\","
                              " \"field\": \"activities[3].start\","
                              " \"message\": \"start is 660 s ahead\"}",
                              0, NULL);
    if (!json_equal(o, want)) {
        char *got = json_dumps(o, JSON_SORT_KEYS);
        char shown[512];
        snprintf(shown, sizeof(shown), "%s", got ? got : "(null)");
        free(got);
        fail_msg("item error %s", shown);
    }
    json_decref(want);
    json_decref(o);

    /* An error about the item as a whole names the item. */
    fit_field_error_set(&err, FIT_EINVALID_TYPE, "", NULL);
    assert_string_equal(err.message, fit_strerror(FIT_EINVALID_TYPE));
    o = fit_item_error(0, "summaries", &err);
    assert_string_equal(json_string_value(json_object_get(o, "field")), "summaries[0]");
    assert_int_equal(json_integer_value(json_object_get(o, "index")), 0);
    assert_string_equal(json_string_value(json_object_get(o, "code")), "invalid_type");
    json_decref(o);
    fit_field_error_set(&err, FIT_EUNAVAILABLE, NULL, NULL);
    assert_string_equal(err.field, "");
    o = fit_item_error(12, "activities", &err);
    assert_string_equal(json_string_value(json_object_get(o, "field")), "activities[12]");
    assert_true(json_is_true(json_object_get(o, "retryable")));
    json_decref(o);
}

static const struct {
    int code;
    const char *name;
    int retryable;
} error_table[] = {
#define ROW(e, name, retry, msg) {FIT_E##e, name, retry},
    FIT_ERRNO_MAP(ROW)
#undef ROW
};
#define NERRORS (sizeof(error_table) / sizeof(error_table[0]))

static void test_error_table(void **state)
{
    (void)state;
    assert_string_equal(fit_err_name(FIT_EINVALID_VALUE), "invalid_value");
    assert_string_equal(fit_err_name(FIT_EBAD_OFFSET), "bad_offset");
    assert_string_equal(fit_err_name(FIT_EIO), "io_error");
    assert_string_equal(fit_err_name(0), "internal");
    assert_string_equal(fit_err_name(-1), "internal");
    assert_string_equal(fit_err_name(12345), "internal");
    assert_string_equal(fit_strerror(0), "ok");
    assert_int_equal(fit_err_retryable(FIT_EUNAVAILABLE), 1);
    assert_int_equal(fit_err_retryable(FIT_EINVALID_VALUE), 0);
    assert_int_equal(fit_err_retryable(-1), 0);
    for (size_t i = 0; i < NERRORS; i++) {
        assert_true(error_table[i].code < 0);
        assert_string_equal(fit_err_name(error_table[i].code), error_table[i].name);
        assert_int_equal(fit_err_retryable(error_table[i].code), error_table[i].retryable);
        const char *msg = fit_strerror(error_table[i].code);
        assert_non_null(msg);
        assert_true(msg[0] != '\0');
        /* Wire names are stable lower-case snake case, and distinct. */
        for (const char *p = error_table[i].name; *p; p++)
            assert_true((*p >= 'a' && *p <= 'z') || *p == '_');
        for (size_t j = 0; j < i; j++)
            assert_true(strcmp(error_table[i].name, error_table[j].name) != 0);
    }
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n + 1 == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* Every wire name appears in docs/PROTOCOL.md as `name`. */
static void test_codes_documented(void **state)
{
    (void)state;
    const char *path = FITSYNC_SOURCE_DIR "/docs/PROTOCOL.md";
    char *doc = read_file(path);
    char missing[2048] = "";
    size_t nmissing = 0;
    for (size_t i = 0; i < NERRORS; i++) {
        char quoted[64];
        snprintf(quoted, sizeof(quoted), "`%s`", error_table[i].name);
        if (!doc || !strstr(doc, quoted)) {
            size_t used = strlen(missing);
            snprintf(missing + used, sizeof(missing) - used, "%s%s", nmissing ? ", " : "",
                     error_table[i].name);
            nmissing++;
        }
    }
    int readable = doc != NULL;
    free(doc);
    if (nmissing)
        fail_msg("%s %s %zu of %zu error codes in backticks: %s", path,
                 readable ? "lacks" : "cannot be read, so it lacks", nmissing, NERRORS, missing);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_good),
        cmocka_unit_test(test_request_bad),
        cmocka_unit_test(test_reply),
        cmocka_unit_test(test_error_reply),
        cmocka_unit_test(test_item_error),
        cmocka_unit_test(test_error_table),
        cmocka_unit_test(test_codes_documented),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
