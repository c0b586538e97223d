/*
 * fit_token: bearer tokens, HS256 JSON Web Tokens (RFC 7519, RFC 7515).
 *
 * Claims used: "sub" (the user id, [A-Za-z0-9._:@-]{1,64}), "role" (member,
 * host, staff, marshal), "exp" (UTC seconds, required). The header's "alg"
 * must be exactly "HS256": "none" and every other algorithm are refused, so
 * a token cannot choose how it is checked. The MAC is OpenSSL's HMAC-SHA256
 * and is compared in constant time.
 */
#ifndef FIT_TOKEN_H
#define FIT_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#define FIT_TOKEN_MAX 4096

typedef enum { FIT_ROLE_MEMBER = 0, FIT_ROLE_HOST, FIT_ROLE_STAFF, FIT_ROLE_MARSHAL } fit_role;

typedef struct {
    char sub[65];
    fit_role role;
    int64_t exp_s;  /* UTC seconds */
    char event[65]; /* optional "event" claim (hosts/marshals); "" if absent */
} fit_token_claims;

/* "member" / "host" / "staff" / "marshal"; returns -1 for anything else. */
int fit_role_parse(const char *s);
const char *fit_role_name(fit_role r);

/*
 * Verifies a compact JWS and fills *out. now_s is the current UTC time in
 * seconds. Returns 0, FIT_EINVALID_TOKEN (malformed, wrong alg, bad
 * signature, bad claims) or FIT_ETOKEN_EXPIRED (valid but exp <= now).
 */
int fit_token_verify(const char *token, const void *secret, size_t secret_len, int64_t now_s,
                     fit_token_claims *out);

/*
 * Mints a token for sub/role expiring at exp_s (UTC seconds). event may be
 * NULL. On success *out is a malloc'd NUL-terminated string the caller frees.
 * Returns 0, FIT_EINVALID_VALUE (bad sub/role) or FIT_ENOMEM.
 */
int fit_token_mint(const char *sub, const char *role, int64_t exp_s, const char *event,
                   const void *secret, size_t secret_len, char **out);

#endif
