/*
 * fit_message: the wire envelope of protocol fitsync.v1 (docs/PROTOCOL.md).
 *
 * Every frame is one JSON object in a text frame. Requests carry "type" and
 * an optional client-chosen "id" (a string of up to 64 characters); replies
 * carry the request's type and "re" (the id); pushes carry neither id nor re.
 * Errors are {"type":"error","re":..,"code":..,"field":..,"message":..}.
 */
#ifndef FIT_MESSAGE_H
#define FIT_MESSAGE_H

#include "fit_error.h"

#include <jansson.h>
#include <stddef.h>

#define FIT_MESSAGE_ID_MAX 64

/* A parsed request. root is a new reference (free with fit_request_clear); type/id borrow from it.
 */
typedef struct {
    json_t *root;
    const char *type;
    const char *id; /* NULL if the request had none */
} fit_request;

/*
 * Parses one text frame. Returns 0, or FIT_EBAD_JSON / FIT_EBAD_MESSAGE /
 * FIT_EINVALID_TYPE (id not a string) with *err filled. On error, req->id is
 * still set when the frame was an object with a usable id, so the error reply
 * can carry "re"; req->root must be cleared in every case.
 */
int fit_request_parse(const char *buf, size_t len, fit_request *req, fit_field_error *err);
void fit_request_clear(fit_request *req);

/* {"type": type, "re": re} (re omitted when NULL). New reference. */
json_t *fit_reply_new(const char *type, const char *re);

/* An error reply; field may be NULL or "" (omitted). New reference. */
json_t *fit_error_reply(const char *re, int code, const char *field, const char *message);

/* The error object of a batch item: {"index", "status":"error", "code", "field", "message"}. */
json_t *fit_item_error(size_t index, const char *prefix, const fit_field_error *err);

/* Serialises a message for sending; malloc'd, caller frees. */
char *fit_message_dump(const json_t *msg, size_t *len);

#endif
