/* libFuzzer: bearer tokens (fit_token_verify: base64url, JSON header and claims, HMAC). */
#include "fuzz_common.h"
#include "fit_token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = fuzz_cstr(data, size);
    fit_token_claims c;
    if (s)
        fit_token_verify(s, "secret", 6, 1772668800, &c);
    free(s);
    return 0;
}
