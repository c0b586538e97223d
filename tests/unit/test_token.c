/*
 * test_token: HS256 JSON Web Tokens (protocol/fit_token.c).
 *
 * Tokens for the negative cases are built by hand here, with OpenSSL's HMAC
 * and EVP_EncodeBlock, not with fit_token_mint: a token whose header says
 * "none" or "HS512" cannot be minted by the code under test. The test's own
 * builder is first checked against the example of RFC 7515, appendix A.1,
 * so the known-answer test does not rest on the code it tests.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "fit_error.h"
#include "fit_token.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOW_S 1773144000LL /* 2026-03-10T12:00:00Z */
#define SECRET "correct horse battery staple, 32+ bytes long"
#define SECRET_LEN (sizeof(SECRET) - 1)

/* base64url without padding (RFC 7515 section 2); malloc'd. */
static char *b64url(const void *data, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    assert_non_null(out);
    int len = EVP_EncodeBlock((unsigned char *)out, data, (int)n);
    while (len > 0 && out[len - 1] == '=')
        len--;
    out[len] = '\0';
    for (char *p = out; *p; p++) {
        if (*p == '+')
            *p = '-';
        else if (*p == '/')
            *p = '_';
    }
    return out;
}

/* Decodes base64url (no padding) into buf; returns the length. */
static size_t b64url_decode(const char *s, unsigned char *buf, size_t cap)
{
    size_t n = strlen(s);
    size_t padded = (n + 3) / 4 * 4;
    char *tmp = calloc(padded + 1, 1);
    assert_non_null(tmp);
    for (size_t i = 0; i < padded; i++)
        tmp[i] = i >= n ? '=' : s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
    assert_true(padded / 4 * 3 <= cap);
    int len = EVP_DecodeBlock(buf, (unsigned char *)tmp, (int)padded);
    free(tmp);
    assert_true(len >= 0);
    return (size_t)len - (padded - n);
}

/* b64url(header) "." b64url(payload) "." b64url(MAC) with md (NULL: empty signature). */
static char *build(const char *header, const char *payload, const EVP_MD *md, const void *key,
                   size_t keylen)
{
    char *h = b64url(header, strlen(header));
    char *p = b64url(payload, strlen(payload));
    size_t cap = strlen(h) + strlen(p) + 200;
    char *tok = malloc(cap);
    assert_non_null(tok);
    int n = snprintf(tok, cap, "%s.%s", h, p);
    free(h);
    free(p);
    char *sig = NULL;
    if (md) {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int maclen = 0;
        assert_non_null(HMAC(md, key, (int)keylen, (unsigned char *)tok, (size_t)n, mac, &maclen));
        sig = b64url(mac, maclen);
    }
    snprintf(tok + n, cap - (size_t)n, ".%s", sig ? sig : "");
    free(sig);
    return tok;
}

static char *hs256(const char *header, const char *payload)
{
    return build(header, payload, EVP_sha256(), SECRET, SECRET_LEN);
}

#define HS256_HEADER "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

static void expect_verify(const char *tok, int64_t now, int want)
{
    fit_token_claims c;
    int rc = fit_token_verify(tok, SECRET, SECRET_LEN, now, &c);
    if (rc != want)
        fail_msg("fit_token_verify(\"%.200s\") = %s, want %s", tok, rc ? fit_err_name(rc) : "ok",
                 want ? fit_err_name(want) : "ok");
}

/* ------------------------------------------------------------ the test's own builder */

static void test_builder_rfc7515_a1(void **state)
{
    (void)state;
    /* RFC 7515, appendix A.1: the header and payload bytes include CR LF. */
    const char *header = "{\"typ\":\"JWT\",\r\n \"alg\":\"HS256\"}";
    const char *payload = "{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n"
                          " \"http://example.com/is_root\":true}";
    unsigned char key[96];
    size_t keylen = b64url_decode("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Y"
                                  "j0iPS4hcgUuTwjAzZr1Z9CAow",
                                  key, sizeof(key));
    assert_int_equal(keylen, 64);
    char *tok = build(header, payload, EVP_sha256(), key, keylen);
    assert_string_equal(tok, "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
                             ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGF"
                             "tcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
                             ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
    /* Correctly signed, but it carries none of fitsync's claims (sub, role). */
    fit_token_claims c;
    assert_int_equal(fit_token_verify(tok, key, keylen, 1300819379, &c), FIT_EINVALID_TOKEN);
    free(tok);
}

/* ------------------------------------------------------------ known answer */

static void test_known_answer(void **state)
{
    (void)state;
    const char *secret = "fitsync-known-answer-secret";
    char *tok = build(HS256_HEADER,
                      "{\"sub\":\"kat-user\",\"role\":\"host\",\"exp\":4102444800,"
                      "\"event\":\"relay-2026\"}",
                      EVP_sha256(), secret, strlen(secret));
    fit_token_claims c;
    int rc = fit_token_verify(tok, secret, strlen(secret), NOW_S, &c);
    if (rc != 0)
        fail_msg("independently built HS256 token refused (%s): %s", fit_err_name(rc), tok);
    assert_string_equal(c.sub, "kat-user");
    assert_int_equal(c.role, FIT_ROLE_HOST);
    assert_int_equal(c.exp_s, 4102444800LL); /* 2100-01-01T00:00:00Z */
    assert_string_equal(c.event, "relay-2026");
    /* One byte of the secret different. */
    assert_int_equal(
        fit_token_verify(tok, "fitsync-known-answer-secreT", strlen(secret), NOW_S, &c),
        FIT_EINVALID_TOKEN);
    free(tok);

    /* JSON need not be compact, and claims come in any order (RFC 7515 A.1 style). */
    tok = build("{\"typ\":\"JWT\",\r\n \"alg\":\"HS256\"}",
                "{ \"exp\" : 4102444800 ,\r\n \"role\":\"member\", \"sub\":\"u@example.org\" }",
                EVP_sha256(), SECRET, SECRET_LEN);
    assert_int_equal(fit_token_verify(tok, SECRET, SECRET_LEN, NOW_S, &c), 0);
    assert_string_equal(c.sub, "u@example.org");
    assert_int_equal(c.role, FIT_ROLE_MEMBER);
    assert_string_equal(c.event, "");
    free(tok);
}

/* ------------------------------------------------------------ mint and verify */

static void test_round_trip(void **state)
{
    (void)state;
    static const struct {
        const char *sub, *role, *event;
        fit_role want;
    } cases[] = {
        {"user-1", "member", NULL, FIT_ROLE_MEMBER},
        {"host.7", "host", "relay-2026", FIT_ROLE_HOST},
        {"staff@city.example", "staff", NULL, FIT_ROLE_STAFF},
        {"m:42", "marshal", "relay-2026", FIT_ROLE_MARSHAL},
        {"u234567890123456789012345678901234567890123456789012345678901234", "member", NULL,
         FIT_ROLE_MEMBER}, /* 64 characters */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *tok = NULL;
        int64_t exp = NOW_S + 3600;
        assert_int_equal(fit_token_mint(cases[i].sub, cases[i].role, exp, cases[i].event, SECRET,
                                        SECRET_LEN, &tok),
                         0);
        assert_non_null(tok);
        fit_token_claims c;
        memset(&c, 0x55, sizeof(c));
        assert_int_equal(fit_token_verify(tok, SECRET, SECRET_LEN, NOW_S, &c), 0);
        assert_string_equal(c.sub, cases[i].sub);
        assert_int_equal(c.role, cases[i].want);
        assert_int_equal(c.exp_s, exp);
        assert_string_equal(c.event, cases[i].event ? cases[i].event : "");

        /* The minted token is a plain HS256 JWS: check its parts independently. */
        const char *d1 = strchr(tok, '.');
        assert_non_null(d1);
        const char *d2 = strchr(d1 + 1, '.');
        assert_non_null(d2);
        assert_null(strchr(d2 + 1, '.'));
        char head[64];
        assert_true((size_t)(d1 - tok) < sizeof(head));
        memcpy(head, tok, (size_t)(d1 - tok));
        head[d1 - tok] = '\0';
        unsigned char raw[64];
        size_t rawlen = b64url_decode(head, raw, sizeof(raw) - 1);
        raw[rawlen] = '\0';
        assert_non_null(strstr((char *)raw, "\"alg\":\"HS256\""));
        unsigned char mac[32];
        unsigned int maclen = 0;
        HMAC(EVP_sha256(), SECRET, (int)SECRET_LEN, (const unsigned char *)tok, (size_t)(d2 - tok),
             mac, &maclen);
        char *sig = b64url(mac, maclen);
        assert_string_equal(d2 + 1, sig);
        free(sig);
        assert_null(strpbrk(tok, "+/= \n"));
        free(tok);
    }
    assert_string_equal(fit_role_name(FIT_ROLE_MARSHAL), "marshal");
    assert_int_equal(fit_role_parse("staff"), FIT_ROLE_STAFF);
    assert_int_equal(fit_role_parse("admin"), -1);
    assert_int_equal(fit_role_parse("Member"), -1);
    assert_int_equal(fit_role_parse(NULL), -1);
}

static void test_mint_rejects(void **state)
{
    (void)state;
    char *tok = (char *)"untouched";
    assert_int_equal(fit_token_mint("user 1", "member", NOW_S + 60, NULL, SECRET, SECRET_LEN, &tok),
                     FIT_EINVALID_VALUE);
    assert_null(tok);
    assert_int_equal(fit_token_mint("", "member", NOW_S + 60, NULL, SECRET, SECRET_LEN, &tok),
                     FIT_EINVALID_VALUE);
    assert_int_equal(fit_token_mint(NULL, "member", NOW_S + 60, NULL, SECRET, SECRET_LEN, &tok),
                     FIT_EINVALID_VALUE);
    assert_int_equal(fit_token_mint("u1", "admin", NOW_S + 60, NULL, SECRET, SECRET_LEN, &tok),
                     FIT_EINVALID_VALUE);
    assert_int_equal(fit_token_mint("u1", NULL, NOW_S + 60, NULL, SECRET, SECRET_LEN, &tok),
                     FIT_EINVALID_VALUE);
    assert_int_equal(
        fit_token_mint("u1", "host", NOW_S + 60, "bad event", SECRET, SECRET_LEN, &tok),
        FIT_EINVALID_VALUE);
    assert_int_equal(
        fit_token_mint("u2345678901234567890123456789012345678901234567890123456789012345",
                       "member", NOW_S + 60, NULL, SECRET, SECRET_LEN, &tok),
        FIT_EINVALID_VALUE); /* 65 characters */
    assert_null(tok);
}

static void test_wrong_secret_and_expiry(void **state)
{
    (void)state;
    char *tok;
    assert_int_equal(fit_token_mint("user-1", "member", NOW_S + 60, NULL, SECRET, SECRET_LEN, &tok),
                     0);
    fit_token_claims c;
    assert_int_equal(fit_token_verify(tok, "another secret", 14, NOW_S, &c), FIT_EINVALID_TOKEN);
    assert_int_equal(fit_token_verify(tok, SECRET, SECRET_LEN - 1, NOW_S, &c), FIT_EINVALID_TOKEN);
    assert_int_equal(fit_token_verify(tok, "", 0, NOW_S, &c), FIT_EINVALID_TOKEN);
    /* Valid until the second before exp; at exp it has expired. */
    assert_int_equal(fit_token_verify(tok, SECRET, SECRET_LEN, NOW_S + 59, &c), 0);
    assert_int_equal(fit_token_verify(tok, SECRET, SECRET_LEN, NOW_S + 60, &c), FIT_ETOKEN_EXPIRED);
    assert_int_equal(fit_token_verify(tok, SECRET, SECRET_LEN, NOW_S + 86400, &c),
                     FIT_ETOKEN_EXPIRED);
    /* Expiry is only reported for a token that verifies: a forger learns nothing. */
    assert_int_equal(fit_token_verify(tok, "another secret", 14, NOW_S + 86400, &c),
                     FIT_EINVALID_TOKEN);
    free(tok);

    /* A secret with a NUL byte in it is used in full. */
    static const char bin[] = {'a', 'b', '\0', 'c', 'd'};
    assert_int_equal(fit_token_mint("user-1", "member", NOW_S + 60, NULL, bin, sizeof(bin), &tok),
                     0);
    assert_int_equal(fit_token_verify(tok, bin, sizeof(bin), NOW_S, &c), 0);
    assert_int_equal(fit_token_verify(tok, bin, 2, NOW_S, &c), FIT_EINVALID_TOKEN);
    free(tok);
}

static void test_tampered(void **state)
{
    (void)state;
    char *tok;
    assert_int_equal(
        fit_token_mint("user-1", "member", NOW_S + 3600, NULL, SECRET, SECRET_LEN, &tok), 0);
    expect_verify(tok, NOW_S, 0);
    const char *d1 = strchr(tok, '.');
    const char *d2 = strchr(d1 + 1, '.');

    /* Another payload (a promotion to staff) under the original signature. */
    const char *promoted = "{\"exp\":4102444800,\"role\":\"staff\",\"sub\":\"user-1\"}";
    char *payload = b64url(promoted, strlen(promoted));
    char forged[1024];
    snprintf(forged, sizeof(forged), "%.*s.%s%s", (int)(d1 - tok), tok, payload, d2);
    free(payload);
    expect_verify(forged, NOW_S, FIT_EINVALID_TOKEN);

    /* One character of each part changed. */
    size_t n = strlen(tok);
    for (size_t i = 0; i < n; i++) {
        if (tok[i] == '.' || i == n - 1) /* the last character has spare bits */
            continue;
        char *t = strdup(tok);
        assert_non_null(t);
        t[i] = t[i] == 'A' ? 'B' : 'A';
        fit_token_claims c;
        int rc = fit_token_verify(t, SECRET, SECRET_LEN, NOW_S, &c);
        if (rc != FIT_EINVALID_TOKEN)
            fail_msg("token with character %zu changed: %s, want invalid_token", i,
                     rc ? fit_err_name(rc) : "accepted");
        free(t);
    }
    /* Signature truncated, or extended. */
    char *t = strdup(tok);
    assert_non_null(t);
    t[n - 4] = '\0';
    expect_verify(t, NOW_S, FIT_EINVALID_TOKEN);
    free(t);
    char longer[1024];
    snprintf(longer, sizeof(longer), "%sAAAA", tok);
    expect_verify(longer, NOW_S, FIT_EINVALID_TOKEN);
    /* Padding is not base64url. */
    snprintf(longer, sizeof(longer), "%s=", tok);
    expect_verify(longer, NOW_S, FIT_EINVALID_TOKEN);
    /* Signature removed. */
    snprintf(longer, sizeof(longer), "%.*s.", (int)(d2 - tok), tok);
    expect_verify(longer, NOW_S, FIT_EINVALID_TOKEN);
    free(tok);
}

static void test_algorithms(void **state)
{
    (void)state;
    const char *claims = "{\"sub\":\"user-1\",\"role\":\"staff\",\"exp\":4102444800}";
    char *tok;
    /* The control: the same claims under HS256 verify. */
    tok = hs256(HS256_HEADER, claims);
    expect_verify(tok, NOW_S, 0);
    free(tok);
    /* "none", unsigned, and "none" with a perfectly good HS256 MAC. */
    tok = build("{\"alg\":\"none\",\"typ\":\"JWT\"}", claims, NULL, NULL, 0);
    expect_verify(tok, NOW_S, FIT_EINVALID_TOKEN);
    free(tok);
    tok = hs256("{\"alg\":\"none\",\"typ\":\"JWT\"}", claims);
    expect_verify(tok, NOW_S, FIT_EINVALID_TOKEN);
    free(tok);
    tok = build("{\"alg\":\"None\"}", claims, NULL, NULL, 0);
    expect_verify(tok, NOW_S, FIT_EINVALID_TOKEN);
    free(tok);
    /* HS512, correctly signed with HMAC-SHA512 and the right secret. */
    tok = build("{\"alg\":\"HS512\",\"typ\":\"JWT\"}", claims, EVP_sha512(), SECRET, SECRET_LEN);
    expect_verify(tok, NOW_S, FIT_EINVALID_TOKEN);
    free(tok);
    /* HS512 in the header over an HS256 MAC. */
    tok = hs256("{\"alg\":\"HS512\",\"typ\":\"JWT\"}", claims);
    expect_verify(tok, NOW_S, FIT_EINVALID_TOKEN);
    free(tok);
    /* Near misses of the name, a missing alg, a non-string alg. */
    static const char *const headers[] = {
        "{\"alg\":\"hs256\"}",
        "{\"alg\":\"HS256 \"}",
        "{\"alg\":\"RS256\"}",
        "{\"typ\":\"JWT\"}",
        "{\"alg\":256}",
        "{\"alg\":[\"HS256\"]}",
        "{\"alg\":\"none\",\"alg\":\"HS256\"}", /* duplicate keys */
        "[\"HS256\"]",
        "\"HS256\"",
        "not json",
    };
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
        tok = hs256(headers[i], claims);
        expect_verify(tok, NOW_S, FIT_EINVALID_TOKEN);
        free(tok);
    }
}

static void test_bad_claims(void **state)
{
    (void)state;
    /* Each is correctly signed with the right secret and alg. */
    static const char *const payloads[] = {
        "{\"sub\":\"user-1\",\"role\":\"admin\",\"exp\":4102444800}",
        "{\"sub\":\"user-1\",\"role\":\"Member\",\"exp\":4102444800}",
        "{\"sub\":\"user-1\",\"role\":1,\"exp\":4102444800}",
        "{\"sub\":\"user-1\",\"exp\":4102444800}",
        "{\"role\":\"member\",\"exp\":4102444800}",
        "{\"sub\":\"\",\"role\":\"member\",\"exp\":4102444800}",
        "{\"sub\":\"user 1\",\"role\":\"member\",\"exp\":4102444800}",
        "{\"sub\":42,\"role\":\"member\",\"exp\":4102444800}",
        "{\"sub\":\"u2345678901234567890123456789012345678901234567890123456789012345\","
        "\"role\":\"member\",\"exp\":4102444800}",
        "{\"sub\":\"user-1\",\"role\":\"member\"}",
        "{\"sub\":\"user-1\",\"role\":\"member\",\"exp\":\"4102444800\"}",
        "{\"sub\":\"user-1\",\"role\":\"member\",\"exp\":4102444800.5}",
        "{\"sub\":\"user-1\",\"role\":\"member\",\"exp\":null}",
        "{\"sub\":\"user-1\",\"role\":\"host\",\"exp\":4102444800,\"event\":\"bad event\"}",
        "{\"sub\":\"user-1\",\"role\":\"member\",\"sub\":\"admin\",\"exp\":4102444800}",
        "[\"user-1\",\"member\",4102444800]",
        "{}",
        "",
        "not json",
    };
    for (size_t i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++) {
        char *tok = hs256(HS256_HEADER, payloads[i]);
        fit_token_claims c;
        int rc = fit_token_verify(tok, SECRET, SECRET_LEN, NOW_S, &c);
        if (rc != FIT_EINVALID_TOKEN)
            fail_msg("payload %s: %s, want invalid_token", payloads[i],
                     rc ? fit_err_name(rc) : "accepted");
        free(tok);
    }
}

/* A correctly signed token whose middle part is not base64url at all. */
static void test_signed_garbage(void **state)
{
    (void)state;
    char *h = b64url(HS256_HEADER, strlen(HS256_HEADER));
    static const char *const middles[] = {"@@@@", "e30=", "e30", "!", "e+0/", "eyJ9 "};
    for (size_t i = 0; i < sizeof(middles) / sizeof(middles[0]); i++) {
        char tok[512];
        int n = snprintf(tok, sizeof(tok), "%s.%s", h, middles[i]);
        unsigned char mac[32];
        unsigned int maclen;
        HMAC(EVP_sha256(), SECRET, (int)SECRET_LEN, (unsigned char *)tok, (size_t)n, mac, &maclen);
        char *sig = b64url(mac, maclen);
        snprintf(tok + n, sizeof(tok) - (size_t)n, ".%s", sig);
        free(sig);
        expect_verify(tok, NOW_S, FIT_EINVALID_TOKEN);
    }
    free(h);
}

static void test_malformed(void **state)
{
    (void)state;
    char *good;
    assert_int_equal(
        fit_token_mint("user-1", "member", NOW_S + 3600, NULL, SECRET, SECRET_LEN, &good), 0);
    char buf[1024];
    static const char *const junk[] = {
        "",
        "abc",
        "a.b",
        "a.b.c",
        "a.b.c.d",
        "...",
        ".",
        "!!!.###.$$$",
        "Bearer abc.def.ghi",
        "\xff\xfe.\xfd.\xfc",
    };
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
        expect_verify(junk[i], NOW_S, FIT_EINVALID_TOKEN);
    /* A good token with a fourth part, a prefix, or no dots. */
    snprintf(buf, sizeof(buf), "%s.abcd", good);
    expect_verify(buf, NOW_S, FIT_EINVALID_TOKEN);
    snprintf(buf, sizeof(buf), "Bearer %s", good);
    expect_verify(buf, NOW_S, FIT_EINVALID_TOKEN);
    size_t k = 0;
    for (const char *p = good; *p; p++)
        if (*p != '.')
            buf[k++] = *p;
    buf[k] = '\0';
    expect_verify(buf, NOW_S, FIT_EINVALID_TOKEN);
    free(good);

    /* Longer than FIT_TOKEN_MAX, even if well formed and signed. */
    size_t big = FIT_TOKEN_MAX + 100;
    char *payload = malloc(big);
    assert_non_null(payload);
    int n = snprintf(payload, big,
                     "{\"sub\":\"user-1\",\"role\":\"member\",\"exp\":4102444800,\"pad\":\"");
    memset(payload + n, 'x', big - (size_t)n - 3);
    strcpy(payload + big - 3, "\"}");
    char *tok = hs256(HS256_HEADER, payload);
    assert_true(strlen(tok) > FIT_TOKEN_MAX);
    expect_verify(tok, NOW_S, FIT_EINVALID_TOKEN);
    free(tok);
    free(payload);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builder_rfc7515_a1),
        cmocka_unit_test(test_known_answer),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_mint_rejects),
        cmocka_unit_test(test_wrong_secret_and_expiry),
        cmocka_unit_test(test_tampered),
        cmocka_unit_test(test_algorithms),
        cmocka_unit_test(test_bad_claims),
        cmocka_unit_test(test_signed_garbage),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
