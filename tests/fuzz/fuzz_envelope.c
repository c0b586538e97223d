/* libFuzzer: the message envelope (fit_request_parse), what every frame reaches first. */
#include "fit_message.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fit_request req;
    fit_field_error fe;
    fit_request_parse((const char *)data, size, &req, &fe);
    fit_request_clear(&req);
    return 0;
}
