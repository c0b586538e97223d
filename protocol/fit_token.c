/*
 * fit_token: HS256 JWTs with OpenSSL. Base64url is OpenSSL's base64
 * (EVP_EncodeBlock / EVP_DecodeBlock) with the URL alphabet swapped in and
 * padding removed, as RFC 7515 section 2 asks.
 */
#include "fit_token.h"
#include "fit_activity.h"
#include "fit_error.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

static const char *const role_names[] = {"member", "host", "staff", "marshal"};

int fit_role_parse(const char *s)
{
    for (int i = 0; s && i < 4; i++)
        if (strcmp(s, role_names[i]) == 0)
            return i;
    return -1;
}

const char *fit_role_name(fit_role r)
{
    return (unsigned)r < 4 ? role_names[r] : "member";
}

/* base64url without padding. out must hold 4 * ceil(n / 3) + 1 bytes. */
static size_t b64url_encode(const unsigned char *in, size_t n, char *out)
{
    int len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    while (len > 0 && out[len - 1] == '=')
        len--;
    out[len] = '\0';
    for (int i = 0; i < len; i++)
        out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
    return (size_t)len;
}

/* Decodes n chars of base64url into a malloc'd buffer; *outlen its length. NULL if invalid. */
static unsigned char *b64url_decode(const char *in, size_t n, size_t *outlen)
{
    if (n % 4 == 1)
        return NULL;
    size_t padded = (n + 3) / 4 * 4;
    char *tmp = malloc(padded + 1);
    unsigned char *out = malloc(padded / 4 * 3 + 1);
    if (!tmp || !out) {
        free(tmp);
        free(out);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (c == '+' || c == '/' || c == '=') {
            free(tmp);
            free(out);
            return NULL;
        }
        tmp[i] = c == '-' ? '+' : c == '_' ? '/' : c;
    }
    for (size_t i = n; i < padded; i++)
        tmp[i] = '=';
    int len = EVP_DecodeBlock(out, (unsigned char *)tmp, (int)padded);
    free(tmp);
    if (len < 0) {
        free(out);
        return NULL;
    }
    /* EVP_DecodeBlock counts the padding as zero bytes. */
    len -= (int)(padded - n);
    out[len] = '\0';
    *outlen = (size_t)len;
    return out;
}

static void hs256(const void *key, size_t keylen, const char *data, size_t n, unsigned char mac[32])
{
    unsigned int maclen = 32;
    HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)data, n, mac, &maclen);
}

static json_t *decode_json(const char *p, size_t n)
{
    size_t len;
    unsigned char *raw = b64url_decode(p, n, &len);
    if (!raw)
        return NULL;
    json_t *j = json_loadb((const char *)raw, len, JSON_REJECT_DUPLICATES, NULL);
    free(raw);
    if (j && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

int fit_token_verify(const char *token, const void *secret, size_t secret_len, int64_t now_s,
                     fit_token_claims *out)
{
    memset(out, 0, sizeof(*out));
    size_t n = strlen(token);
    if (n == 0 || n > FIT_TOKEN_MAX)
        return FIT_EINVALID_TOKEN;
    const char *dot1 = strchr(token, '.');
    const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    if (!dot1 || !dot2 || strchr(dot2 + 1, '.'))
        return FIT_EINVALID_TOKEN;

    json_t *header = decode_json(token, (size_t)(dot1 - token));
    const char *alg = json_string_value(json_object_get(header, "alg"));
    int alg_ok = alg && strcmp(alg, "HS256") == 0;
    json_decref(header);
    if (!alg_ok)
        return FIT_EINVALID_TOKEN;

    size_t siglen;
    unsigned char *sig = b64url_decode(dot2 + 1, strlen(dot2 + 1), &siglen);
    unsigned char mac[32];
    hs256(secret, secret_len, token, (size_t)(dot2 - token), mac);
    int sig_ok = sig && siglen == 32 && CRYPTO_memcmp(sig, mac, 32) == 0;
    free(sig);
    if (!sig_ok)
        return FIT_EINVALID_TOKEN;

    json_t *claims = decode_json(dot1 + 1, (size_t)(dot2 - dot1 - 1));
    const char *sub = json_string_value(json_object_get(claims, "sub"));
    const char *role = json_string_value(json_object_get(claims, "role"));
    const char *event = json_string_value(json_object_get(claims, "event"));
    json_t *exp = json_object_get(claims, "exp");
    int r = fit_role_parse(role);
    int rc = 0;
    if (!sub || !fit_id_valid(sub, 64) || r < 0 || !json_is_integer(exp) ||
        (event && !fit_id_valid(event, 64)))
        rc = FIT_EINVALID_TOKEN;
    else if (json_integer_value(exp) <= now_s)
        rc = FIT_ETOKEN_EXPIRED;
    if (rc == 0) {
        snprintf(out->sub, sizeof(out->sub), "%s", sub);
        snprintf(out->event, sizeof(out->event), "%s", event ? event : "");
        out->role = (fit_role)r;
        out->exp_s = json_integer_value(exp);
    }
    json_decref(claims);
    return rc;
}

int fit_token_mint(const char *sub, const char *role, int64_t exp_s, const char *event,
                   const void *secret, size_t secret_len, char **out)
{
    *out = NULL;
    if (!sub || !fit_id_valid(sub, 64) || fit_role_parse(role) < 0 ||
        (event && !fit_id_valid(event, 64)))
        return FIT_EINVALID_VALUE;
    json_t *claims =
        json_pack("{s:s, s:s, s:I}", "sub", sub, "role", role, "exp", (json_int_t)exp_s);
    if (event)
        json_object_set_new(claims, "event", json_string(event));
    char *payload = json_dumps(claims, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(claims);
    if (!payload)
        return FIT_ENOMEM;
    static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
    size_t plen = strlen(payload);
    size_t cap = 4 * ((sizeof(header) + 2) / 3) + 4 * ((plen + 2) / 3) + 4 * 11 + 8;
    char *tok = malloc(cap);
    if (!tok) {
        free(payload);
        return FIT_ENOMEM;
    }
    size_t n = b64url_encode((const unsigned char *)header, sizeof(header) - 1, tok);
    tok[n++] = '.';
    n += b64url_encode((const unsigned char *)payload, plen, tok + n);
    free(payload);
    unsigned char mac[32];
    hs256(secret, secret_len, tok, n, mac);
    tok[n++] = '.';
    b64url_encode(mac, 32, tok + n);
    *out = tok;
    return 0;
}
