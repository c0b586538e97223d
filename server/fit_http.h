/*
 * fit_http: plain HTTP on the WebSocket port, as a route table.
 *
 * A route is data: a path (exact, a prefix, or with one "*" standing for
 * one path segment), the methods it answers, the token roles it requires
 * and its handler. This module owns everything around the handlers, so
 * that every request gets a complete answer whatever it is:
 *
 *   - the request body (any method) is read in full and discarded before
 *     the answer is sent, so the connection stays usable (keep-alive); no
 *     route reads a body, so a body with a method the route answers (a GET
 *     with a body) is 400, other methods 405 or 404 as below; a
 *     Content-Length over http.max_body_bytes is answered 413 at once and
 *     the connection closed after the answer (what the client still sends
 *     of that body is read and dropped first; see FIT_HTTP_LINGER_S);
 *   - a malformed Content-Length is 400, a body without one (chunked) is
 *     411; both close the connection, since its framing is unknown;
 *   - no route for the path: 404; a route, but not for this method: 405
 *     with Allow; OPTIONS on a route: 200, Content-Length: 0, with Allow;
 *   - a route with roles: Authorization: Bearer <token> checked (401) and
 *     its role (403) before the handler runs;
 *   - HEAD is answered wherever GET is, with the headers of GET and no body;
 *   - CONNECT (which lws turns into a raw connection) is answered 501.
 *
 * Every error answer is JSON {"error": <code>, "message": ..., ["field"]}
 * with a code from fit_error.h (docs/PROTOCOL.md, "HTTP").
 *
 * Ownership: the table and its user data are borrowed for the life of the
 * lws context. A fit_http_conn lives inside lws's per-connection user data
 * and is cleaned by fit_http_closed. A handler that answers later (after a
 * Redis reply) registers a fit_http_pending; if the connection closes
 * first, the pending's wsi becomes NULL and its answer is dropped.
 */
#ifndef FIT_HTTP_H
#define FIT_HTTP_H

#include "fit_token.h"

#include <jansson.h>
#include <libwebsockets.h>
#include <stddef.h>
#include <stdint.h>

/* Methods, as a bit set (a route's methods; Allow). */
typedef enum {
    FIT_HTTP_GET = 1u << 0,
    FIT_HTTP_HEAD = 1u << 1,
    FIT_HTTP_POST = 1u << 2,
    FIT_HTTP_PUT = 1u << 3,
    FIT_HTTP_DELETE = 1u << 4,
    FIT_HTTP_PATCH = 1u << 5,
    FIT_HTTP_OPTIONS = 1u << 6,
    FIT_HTTP_OTHER = 1u << 7 /* CONNECT, or a method lws parsed but we do not name */
} fit_http_method;

/* A role bit for fit_http_route.roles: FIT_HTTP_ROLE(FIT_ROLE_STAFF). */
#define FIT_HTTP_ROLE(r) (1u << (r))

/*
 * The most a request line and its headers may take (lws's header buffer,
 * max_http_header_data; lws's default of 4096 would not hold a bearer
 * token of FIT_TOKEN_MAX bytes). Over it libwebsockets closes the
 * connection without an answer; fitsyncd never sees the request.
 */
#define FIT_HTTP_HEADER_BYTES (FIT_TOKEN_MAX + 4096)

/* Room for an answer's headers (lws adds its security headers: about 400 bytes). */
#define FIT_HTTP_HEADERS_MAX 2048

/* BODY_COMPLETION calls for one body after which the answer is forced out (fit_http.c). */
#define FIT_HTTP_BODY_REPEATS 64

/* After a 413: seconds the rest of the refused body is still read before the connection closes. */
#define FIT_HTTP_LINGER_S 10

/* Longest path segment a "*" of a route matches (an event id is at most 64). */
#define FIT_HTTP_PARAM_MAX 80

typedef struct fit_http_conn fit_http_conn;
typedef struct fit_http_request fit_http_request;

/*
 * A handler answers with one of the fit_http_respond family (now, or later
 * through a fit_http_pending). Returns 0, or -1 to close the connection.
 */
typedef int (*fit_http_handler)(fit_http_request *req);

typedef struct {
    const char *path;      /* "/healthz"; "/dashboard/" with prefix; "/api/v1/events/x/y" */
    int prefix;            /* 1: matches every path starting with path */
    unsigned methods;      /* FIT_HTTP_* bits; HEAD is implied by GET, OPTIONS by any */
    unsigned roles;        /* 0: no token; else FIT_HTTP_ROLE bits, one of which is required */
    const char *forbidden; /* the 403 message for a valid token of another role */
    fit_http_handler handler;
} fit_http_route;

/* The table and what the engine needs besides it (borrowed; see above). */
typedef struct {
    const fit_http_route *routes;
    size_t nroutes;
    uint64_t max_body_bytes; /* http.max_body_bytes */
    const char *secret;      /* token secret, for routes with roles */
    void *data;              /* handed to handlers as req->data */
} fit_http_table;

struct fit_http_request {
    struct lws *wsi;
    fit_http_conn *conn;
    void *data; /* fit_http_table.data */
    fit_http_method method;
    const char *path;               /* without the query string */
    const char *rest;               /* prefix routes: what follows the prefix */
    char param[FIT_HTTP_PARAM_MAX]; /* what the route's "*" matched, "" for none */
    const fit_token_claims *claims; /* routes with roles: the verified token, else NULL */
    const fit_http_route *route;
};

/* An answer that comes later; embed it first in a handler's own struct. */
typedef struct fit_http_pending {
    struct lws *wsi; /* NULL once the connection has closed */
} fit_http_pending;

/* Per-connection state (in lws's per-session user data; zeroed by lws). */
struct fit_http_conn {
    const fit_http_table *table;
    /* the request */
    char *path; /* malloc'd copy of the URI path */
    fit_http_method method;
    int has_body; /* a body is still being read: dispatch waits for its end */
    uint64_t body_len, body_seen;
    /* the answer */
    char *body;
    size_t body_len_out;
    uint64_t content_length; /* the Content-Length sent: body_len_out, or a file's size (HEAD) */
    unsigned status;
    char ctype[48];
    char filename[96];  /* Content-Disposition attachment name, "" for none */
    char allow[80];     /* Allow header, "" for none */
    char location[128]; /* Location header (redirects), "" for none */
    int responding, close_after, serving_file;
    int body_ended;       /* the body has been read (see fit_http_body_done) */
    int body_repeats;     /* lws's further BODY_COMPLETION calls for it */
    int draining;         /* 413 answered: the refused body is read and dropped, then we close */
    uint64_t answered_ns; /* uv_hrtime() when the 413 went out */
    fit_http_pending *pending;
};

/* ---- the protocol callback's HTTP reasons ---- */

/* LWS_CALLBACK_HTTP: in is the URI path. Returns 0, or -1 to close. */
int fit_http_request_begin(fit_http_conn *c, const fit_http_table *t, struct lws *wsi,
                           const char *uri);
/* LWS_CALLBACK_HTTP_BODY: len bytes of the body (discarded). */
int fit_http_body(fit_http_conn *c, struct lws *wsi, size_t len);
/* LWS_CALLBACK_HTTP_BODY_COMPLETION. */
int fit_http_body_done(fit_http_conn *c, struct lws *wsi);
/* LWS_CALLBACK_HTTP_WRITEABLE. */
int fit_http_writeable(fit_http_conn *c, struct lws *wsi);
/* LWS_CALLBACK_HTTP_FILE_COMPLETION (after fit_http_serve_file). */
int fit_http_file_done(fit_http_conn *c, struct lws *wsi);
/* LWS_CALLBACK_CLOSED_HTTP / HTTP_DROP_PROTOCOL: forgets the request and any pending answer. */
void fit_http_closed(fit_http_conn *c);

/* LWS_CALLBACK_RAW_WRITEABLE: a CONNECT request (lws made it raw) is answered 501; closes. */
int fit_http_raw_writeable(struct lws *wsi);

/* ---- answers (from handlers) ---- */

/* Answers status with body (malloc'd, taken; NULL answers 500 internal). Returns 0 or -1. */
int fit_http_respond(fit_http_conn *c, struct lws *wsi, unsigned status, const char *ctype,
                     char *body, size_t len);
/* Answers status with a JSON document (reference stolen). */
int fit_http_reply_json(fit_http_conn *c, struct lws *wsi, unsigned status, json_t *doc);
/* Answers {"error": fit_err_name(code), "message": msg, "field": field (if non-NULL)}. */
int fit_http_error(fit_http_conn *c, struct lws *wsi, unsigned status, int code, const char *field,
                   const char *msg);
/* Sets the Content-Disposition attachment name of the next answer (before responding). */
void fit_http_attachment(fit_http_conn *c, const char *filename);
/* Answers 302 to location. */
int fit_http_redirect(fit_http_conn *c, struct lws *wsi, const char *location);
/*
 * Answers with a file (GET and HEAD) by lws_serve_http_file; ctype may be
 * NULL (from the name). The caller checked that path is a regular file.
 */
int fit_http_serve_file(fit_http_request *req, const char *path, const char *ctype);

/* Registers a later answer; the handler returns 0 and answers via fit_http_pending_conn. */
void fit_http_wait(fit_http_request *req, fit_http_pending *p);
/* The connection of a pending answer (and unregisters it), or NULL if it has closed. */
fit_http_conn *fit_http_pending_conn(fit_http_pending *p);

/* "GET", "HEAD", ... for one method bit. Static string. */
const char *fit_http_method_name(fit_http_method m);

#endif
