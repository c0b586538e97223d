/*
 * fit_message: envelope parsing and the shapes of replies. Kept apart from
 * the handlers so that the fuzzer and the unit tests reach it without a
 * server.
 */
#include "fit_message.h"

#include <stdio.h>
#include <string.h>

int fit_request_parse(const char *buf, size_t len, fit_request *req, fit_field_error *err)
{
    memset(req, 0, sizeof(*req));
    json_error_t jerr;
    /* JSON_DECODE_ANY: a frame such as "ping" or 42 is valid JSON, just not a message. */
    req->root = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!req->root)
        return fit_field_error_set(err, FIT_EBAD_JSON, "", "invalid JSON at line %d column %d: %s",
                                   jerr.line, jerr.column, jerr.text);
    if (!json_is_object(req->root))
        return fit_field_error_set(err, FIT_EBAD_MESSAGE, "", "a message must be a JSON object");
    const json_t *id = json_object_get(req->root, "id");
    if (id && !json_is_null(id)) {
        if (!json_is_string(id) || json_string_length(id) == 0 ||
            json_string_length(id) > FIT_MESSAGE_ID_MAX)
            return fit_field_error_set(err, FIT_EINVALID_TYPE, "id",
                                       "id must be a string of 1..64 characters");
        req->id = json_string_value(id);
    }
    const json_t *type = json_object_get(req->root, "type");
    if (!type)
        return fit_field_error_set(err, FIT_EMISSING_FIELD, "type", "type is required");
    if (!json_is_string(type))
        return fit_field_error_set(err, FIT_EINVALID_TYPE, "type", "type must be a string");
    req->type = json_string_value(type);
    return 0;
}

void fit_request_clear(fit_request *req)
{
    json_decref(req->root);
    memset(req, 0, sizeof(*req));
}

json_t *fit_reply_new(const char *type, const char *re)
{
    json_t *o = json_pack("{s:s}", "type", type);
    if (re)
        json_object_set_new(o, "re", json_string(re));
    return o;
}

json_t *fit_error_reply(const char *re, int code, const char *field, const char *message)
{
    json_t *o = fit_reply_new("error", re);
    json_object_set_new(o, "code", json_string(fit_err_name(code)));
    if (field && *field)
        json_object_set_new(o, "field", json_string(field));
    json_object_set_new(o, "message", json_string(message ? message : fit_strerror(code)));
    if (fit_err_retryable(code))
        json_object_set_new(o, "retryable", json_true());
    return o;
}

json_t *fit_item_error(size_t index, const char *prefix, const fit_field_error *err)
{
    char field[192];
    if (err->field[0])
        snprintf(field, sizeof(field), "%s[%zu].%s", prefix, index, err->field);
    else
        snprintf(field, sizeof(field), "%s[%zu]", prefix, index);
    json_t *o =
        json_pack("{s:I, s:s, s:s, s:s, s:s}", "index", (json_int_t)index, "status", "error",
                  "code", fit_err_name(err->code), "field", field, "message", err->message);
    if (fit_err_retryable(err->code))
        json_object_set_new(o, "retryable", json_true());
    return o;
}

char *fit_message_dump(const json_t *msg, size_t *len)
{
    char *s = json_dumps(msg, JSON_COMPACT);
    if (s && len)
        *len = strlen(s);
    return s;
}
