/*
 * fit_http: the HTTP engine around the route table (see fit_http.h).
 *
 * libwebsockets hands us a request in up to three steps: LWS_CALLBACK_HTTP
 * (headers parsed), then LWS_CALLBACK_HTTP_BODY for each piece of a body,
 * then LWS_CALLBACK_HTTP_BODY_COMPLETION. An answer started before the
 * body has been read leaves the body's bytes in the stream, where they
 * would be parsed as the next request; and lws's default handler completes
 * the transaction on BODY_COMPLETION even while our answer is still
 * queued, which loses the answer. So a request with a body is dispatched
 * only when its body is complete, and we handle BODY_COMPLETION ourselves.
 * The exceptions are requests whose framing we refuse (413, 400, 411):
 * those are answered at once and the connection is closed after the
 * answer, since reading on would mean reading what we refused.
 *
 * An answer is written in two LWS_CALLBACK_HTTP_WRITEABLE callbacks
 * (headers, then body: one lws_write each), then the transaction is
 * completed so the connection can carry the next request (keep-alive).
 */
#include "fit_http.h"
#include "fit_error.h"
#include "fit_log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <uv.h>

static const struct {
    fit_http_method m;
    const char *name;
} method_names[] = {
    {FIT_HTTP_GET, "GET"},         {FIT_HTTP_HEAD, "HEAD"},     {FIT_HTTP_POST, "POST"},
    {FIT_HTTP_PUT, "PUT"},         {FIT_HTTP_DELETE, "DELETE"}, {FIT_HTTP_PATCH, "PATCH"},
    {FIT_HTTP_OPTIONS, "OPTIONS"}, {FIT_HTTP_OTHER, "OTHER"},
};

const char *fit_http_method_name(fit_http_method m)
{
    for (size_t i = 0; i < sizeof(method_names) / sizeof(method_names[0]); i++)
        if (method_names[i].m == m)
            return method_names[i].name;
    return "OTHER";
}

/* The request's method: lws stores the URI under a token named for the method. */
static fit_http_method method_of(struct lws *wsi)
{
    static const struct {
        enum lws_token_indexes tok;
        fit_http_method m;
    } map[] = {
        {WSI_TOKEN_HEAD_URI, FIT_HTTP_HEAD},       {WSI_TOKEN_GET_URI, FIT_HTTP_GET},
        {WSI_TOKEN_POST_URI, FIT_HTTP_POST},       {WSI_TOKEN_PUT_URI, FIT_HTTP_PUT},
        {WSI_TOKEN_DELETE_URI, FIT_HTTP_DELETE},   {WSI_TOKEN_PATCH_URI, FIT_HTTP_PATCH},
        {WSI_TOKEN_OPTIONS_URI, FIT_HTTP_OPTIONS},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (lws_hdr_total_length(wsi, map[i].tok) > 0)
            return map[i].m;
    return FIT_HTTP_OTHER;
}

/* The path for a log line: at most 200 bytes, control characters as '?'. */
static void log_path(const char *path, char *out, size_t n)
{
    size_t j = 0;
    for (const char *s = path ? path : ""; *s && j + 1 < n && j < 200; s++)
        out[j++] = (unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s;
    out[j] = '\0';
}

static int send_answer(fit_http_conn *c, struct lws *wsi);

static void reset_request(fit_http_conn *c)
{
    free(c->path);
    c->path = NULL;
    c->method = 0;
    c->has_body = 0;
    c->body_len = c->body_seen = 0;
    c->filename[0] = c->allow[0] = c->location[0] = '\0';
    c->close_after = c->draining = c->body_ended = c->body_repeats = 0;
}

int fit_http_respond(fit_http_conn *c, struct lws *wsi, unsigned status, const char *ctype,
                     char *body, size_t len)
{
    if (!body) {
        /* An allocation failed while building the answer: say so, never a short 200. */
        static const char oom[] = "{\"error\":\"internal\",\"message\":\"out of memory\"}";
        body = malloc(sizeof(oom));
        if (!body)
            return -1;
        memcpy(body, oom, sizeof(oom));
        len = sizeof(oom) - 1;
        status = HTTP_STATUS_INTERNAL_SERVER_ERROR;
        ctype = "application/json";
        c->filename[0] = '\0';
    }
    free(c->body);
    c->body = body;
    c->body_len_out = len;
    c->content_length = len;
    c->status = status;
    c->responding = 1;
    snprintf(c->ctype, sizeof(c->ctype), "%s", ctype ? ctype : "");
    if (fit_log_enabled(FIT_LOG_INFO)) {
        char p[208];
        log_path(c->path, p, sizeof(p));
        fit_log(FIT_LOG_INFO, "http %s %s %u", fit_http_method_name(c->method), p, status);
    }
    lws_callback_on_writable(wsi);
    return 0;
}

int fit_http_reply_json(fit_http_conn *c, struct lws *wsi, unsigned status, json_t *doc)
{
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    return fit_http_respond(c, wsi, status, "application/json", text, text ? strlen(text) : 0);
}

int fit_http_error(fit_http_conn *c, struct lws *wsi, unsigned status, int code, const char *field,
                   const char *msg)
{
    json_t *doc = json_pack("{s:s, s:s}", "error", fit_err_name(code), "message", msg);
    if (doc && field)
        json_object_set_new(doc, "field", json_string(field));
    c->filename[0] = '\0';
    return fit_http_reply_json(c, wsi, status, doc);
}

void fit_http_attachment(fit_http_conn *c, const char *filename)
{
    snprintf(c->filename, sizeof(c->filename), "%s", filename);
}

int fit_http_redirect(fit_http_conn *c, struct lws *wsi, const char *location)
{
    snprintf(c->location, sizeof(c->location), "%s", location);
    return fit_http_respond(c, wsi, HTTP_STATUS_FOUND, "text/plain", calloc(1, 1), 0);
}

int fit_http_serve_file(fit_http_request *req, const char *path, const char *ctype)
{
    fit_http_conn *c = req->conn;
    const char *mime = ctype ? ctype : lws_get_mimetype(path, NULL);
    if (fit_log_enabled(FIT_LOG_INFO)) {
        char p[208];
        log_path(c->path, p, sizeof(p));
        fit_log(FIT_LOG_INFO, "http %s %s 200 (file)", fit_http_method_name(c->method), p);
    }
    if (!mime)
        mime = "application/octet-stream";
    if (c->method == FIT_HTTP_HEAD) {
        /* lws 4.1's file server mishandles HEAD (the next request on the connection fails). */
        struct stat st;
        if (stat(path, &st) != 0)
            return fit_http_error(c, req->wsi, HTTP_STATUS_NOT_FOUND, FIT_ENOT_FOUND, NULL,
                                  "no such file");
        int rc = fit_http_respond(c, req->wsi, HTTP_STATUS_OK, mime, calloc(1, 1), 0);
        c->content_length = (uint64_t)st.st_size;
        return rc;
    }
    c->serving_file = 1;
    int n = lws_serve_http_file(req->wsi, path, mime, NULL, 0);
    if (n < 0)
        return -1;
    if (n > 0) /* sent already, and the transaction completed by lws */
        c->serving_file = 0;
    return 0;
}

void fit_http_wait(fit_http_request *req, fit_http_pending *p)
{
    p->wsi = req->wsi;
    req->conn->pending = p;
}

fit_http_conn *fit_http_pending_conn(fit_http_pending *p)
{
    if (!p->wsi)
        return NULL;
    fit_http_conn *c = lws_wsi_user(p->wsi);
    /* fit_http_conn is the first member of the per-session data (fit_server.c asserts it). */
    if (c->pending == p)
        c->pending = NULL;
    return c;
}

/* "GET, HEAD, OPTIONS" for a set of methods. */
static void allow_list(unsigned methods, char *out, size_t n)
{
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof(method_names) / sizeof(method_names[0]); i++) {
        if (method_names[i].m == FIT_HTTP_OTHER || !(methods & method_names[i].m))
            continue;
        int w = snprintf(out + len, n - len, "%s%s", len ? ", " : "", method_names[i].name);
        if (w < 0 || (size_t)w >= n - len)
            break; /* cannot happen: the buffer holds all seven names */
        len += (size_t)w;
    }
}

/* Matches path against one route; fills req->rest and req->param. */
static int route_matches(const fit_http_route *r, const char *path, fit_http_request *req)
{
    size_t plen = strlen(r->path);
    if (r->prefix) {
        if (strncmp(path, r->path, plen) != 0)
            return 0;
        req->rest = path + plen;
        return 1;
    }
    const char *star = strchr(r->path, '*');
    if (!star) {
        if (strcmp(path, r->path) != 0)
            return 0;
        req->rest = "";
        return 1;
    }
    size_t pre = (size_t)(star - r->path), post = plen - pre - 1, n = strlen(path);
    if (n <= pre + post || strncmp(path, r->path, pre) != 0 ||
        strcmp(path + n - post, star + 1) != 0)
        return 0;
    size_t seg = n - pre - post;
    if (seg >= sizeof(req->param) || memchr(path + pre, '/', seg))
        return 0;
    memcpy(req->param, path + pre, seg);
    req->param[seg] = '\0';
    req->rest = "";
    return 1;
}

/*
 * Checks "Authorization: Bearer <token>" (the scheme in any case, RFC 7235)
 * and the route's roles. Returns 1 with claims filled, or answers 401/403
 * and returns 0 (*rc the answer's result).
 */
static int authorize(fit_http_conn *c, struct lws *wsi, const fit_http_route *r,
                     fit_token_claims *claims, int *rc)
{
    char auth[FIT_TOKEN_MAX + 16];
    int total = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
    if (total >= (int)sizeof(auth)) {
        char msg[96];
        snprintf(msg, sizeof(msg), "the token is longer than %d bytes", FIT_TOKEN_MAX);
        *rc = fit_http_error(c, wsi, HTTP_STATUS_UNAUTHORIZED, FIT_EINVALID_TOKEN, NULL, msg);
        return 0;
    }
    if (lws_hdr_copy(wsi, auth, sizeof(auth), WSI_TOKEN_HTTP_AUTHORIZATION) <= 7 ||
        strncasecmp(auth, "Bearer ", 7) != 0) {
        *rc = fit_http_error(c, wsi, HTTP_STATUS_UNAUTHORIZED, FIT_EUNAUTHENTICATED, NULL,
                             "send Authorization: Bearer <token>");
        return 0;
    }
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    const char *secret = c->table->secret;
    int err = fit_token_verify(auth + 7, secret, strlen(secret), tv.tv_sec, claims);
    if (err) {
        *rc = fit_http_error(c, wsi, HTTP_STATUS_UNAUTHORIZED, err, NULL, fit_strerror(err));
        return 0;
    }
    if (!(r->roles & FIT_HTTP_ROLE(claims->role))) {
        *rc = fit_http_error(c, wsi, HTTP_STATUS_FORBIDDEN, FIT_EFORBIDDEN, NULL,
                             r->forbidden ? r->forbidden : fit_strerror(FIT_EFORBIDDEN));
        return 0;
    }
    return 1;
}

/* The request is complete (headers, and its body if it had one): route and answer it. */
static int dispatch(fit_http_conn *c, struct lws *wsi)
{
    const fit_http_table *t = c->table;
    fit_http_request req;
    memset(&req, 0, sizeof(req));
    req.wsi = wsi;
    req.conn = c;
    req.data = t->data;
    req.method = c->method;
    req.path = c->path;
    const fit_http_route *r = NULL;
    for (size_t i = 0; i < t->nroutes && !r; i++)
        if (route_matches(&t->routes[i], c->path, &req))
            r = &t->routes[i];
    if (!r)
        return fit_http_error(c, wsi, HTTP_STATUS_NOT_FOUND, FIT_ENOT_FOUND, NULL,
                              "no such resource; WebSocket clients use subprotocol fitsync.v1");
    req.route = r;
    unsigned allowed = r->methods | FIT_HTTP_OPTIONS;
    if (allowed & FIT_HTTP_GET)
        allowed |= FIT_HTTP_HEAD;
    if (c->method == FIT_HTTP_OPTIONS) {
        allow_list(allowed, c->allow, sizeof(c->allow));
        /* 200 with Content-Length: 0 (RFC 9110 9.3.7); a 204 would make lws close. */
        return fit_http_respond(c, wsi, HTTP_STATUS_OK, "text/plain", calloc(1, 1), 0);
    }
    if (!(allowed & c->method)) {
        char msg[160];
        allow_list(allowed, c->allow, sizeof(c->allow));
        snprintf(msg, sizeof(msg), "%s is not allowed here; allowed: %s",
                 fit_http_method_name(c->method), c->allow);
        return fit_http_error(c, wsi, HTTP_STATUS_METHOD_NOT_ALLOWED, FIT_EMETHOD_NOT_ALLOWED, NULL,
                              msg);
    }
    if (c->body_ended) {
        /*
         * No route reads a body; and an answer to a request with a body may
         * have to be written before fit_http_body_done returns, which a
         * handler waiting for Redis could not do.
         */
        char msg[96];
        snprintf(msg, sizeof(msg), "%s %s takes no request body", fit_http_method_name(c->method),
                 r->path);
        return fit_http_error(c, wsi, HTTP_STATUS_BAD_REQUEST, FIT_EINVALID_VALUE, "Content-Length",
                              msg);
    }
    fit_token_claims claims;
    if (r->roles) {
        int rc;
        if (!authorize(c, wsi, r, &claims, &rc))
            return rc;
        req.claims = &claims;
    }
    return r->handler(&req);
}

/* Parses a Content-Length value: decimal digits only, no sign, no list. */
static int parse_length(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (!*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return 0;
}

int fit_http_request_begin(fit_http_conn *c, const fit_http_table *t, struct lws *wsi,
                           const char *uri)
{
    reset_request(c);
    c->table = t;
    c->method = method_of(wsi);
    c->path = strdup(uri ? uri : "");
    if (!c->path)
        return -1;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0) {
        /* libwebsockets 4.1 reads request bodies by Content-Length only. */
        c->close_after = 1;
        return fit_http_error(c, wsi, HTTP_STATUS_LENGTH_REQUIRED, FIT_EINVALID_VALUE,
                              "Transfer-Encoding",
                              "request bodies need a Content-Length (chunked is not supported)");
    }
    int total = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH);
    if (total > 0) {
        char v[32];
        uint64_t len;
        if (total >= (int)sizeof(v) ||
            lws_hdr_copy(wsi, v, sizeof(v), WSI_TOKEN_HTTP_CONTENT_LENGTH) != total ||
            parse_length(v, &len) != 0) {
            c->close_after = 1;
            return fit_http_error(c, wsi, HTTP_STATUS_BAD_REQUEST, FIT_EINVALID_VALUE,
                                  "Content-Length",
                                  "Content-Length must be one decimal number of bytes");
        }
        if (len > t->max_body_bytes) {
            char msg[160];
            snprintf(msg, sizeof(msg),
                     "the request body of %" PRIu64 " bytes exceeds http.max_body_bytes (%" PRIu64
                     ")",
                     len, t->max_body_bytes);
            c->close_after = c->draining = 1;
            c->body_len = len;
            return fit_http_error(c, wsi, HTTP_STATUS_REQ_ENTITY_TOO_LARGE, FIT_ETOO_LARGE,
                                  "Content-Length", msg);
        }
        if (len > 0) {
            c->has_body = 1; /* dispatched at LWS_CALLBACK_HTTP_BODY_COMPLETION */
            c->body_len = len;
            return 0;
        }
    }
    return dispatch(c, wsi);
}

int fit_http_body(fit_http_conn *c, struct lws *wsi, size_t len)
{
    (void)wsi;
    c->body_seen += len; /* no route takes a body yet: read and discarded */
    if (!c->draining)
        return 0;
    /*
     * A 413: close once its answer is out and the refused body has been
     * drained, or FIT_HTTP_LINGER_S after the answer whatever still comes
     * (lws renews its own timeout with every piece, so a trickle would last).
     */
    if (c->responding)
        return 0;
    if (c->body_seen >= c->body_len ||
        uv_hrtime() - c->answered_ns > (uint64_t)FIT_HTTP_LINGER_S * 1000000000u)
        return -1;
    return 0;
}

/*
 * The end of a body: the request is complete, dispatch it.
 *
 * libwebsockets 4.1 calls this again and again while the connection stays
 * in its body state and bytes received after the body (a pipelined
 * request) wait in its buffer. Mostly it does so once per turn of the
 * event loop, and the answer goes out in the writeable callback between
 * two calls, after which the pipelined request is parsed. But when those
 * bytes came in with the request, lws calls it in a loop that never
 * returns to the event loop, so the answer would never go out and the
 * process would spin. After FIT_HTTP_BODY_REPEATS calls, therefore, the
 * answer is written at once, with Connection: close, and the connection
 * closed (the pipelined request is not answered; the client sends it again).
 */
int fit_http_body_done(fit_http_conn *c, struct lws *wsi)
{
    if (c->draining)
        return c->responding ? send_answer(c, wsi) : -1;
    if (c->body_ended) {
        if (++c->body_repeats < FIT_HTTP_BODY_REPEATS)
            return 0;
        if (!c->responding)
            return -1;
        c->close_after = 1;
        return send_answer(c, wsi);
    }
    if (!c->has_body)
        return 0; /* answered already (refused framing), or a body of 0 bytes */
    c->has_body = 0;
    c->body_ended = 1;
    return dispatch(c, wsi);
}

/* Ends an answer: the next request may come on this connection, unless we close it. */
static int finish(fit_http_conn *c, struct lws *wsi)
{
    free(c->body);
    c->body = NULL;
    c->responding = 0;
    if (c->draining) {
        /*
         * 413: closing now, with the client still sending, would reset the
         * connection and could destroy the answer before the client reads
         * it. So what still comes of the refused body is read and dropped,
         * and the connection closed when it has all come, or
         * FIT_HTTP_LINGER_S seconds from now (fit_http_body; a client that
         * stops sending meets lws's content timeout, set to the same).
         */
        c->answered_ns = uv_hrtime();
        lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT, FIT_HTTP_LINGER_S);
        return c->body_seen >= c->body_len ? -1 : 0;
    }
    if (c->close_after)
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int add_header(struct lws *wsi, enum lws_token_indexes tok, const char *v, unsigned char **p,
                      unsigned char *end)
{
    return lws_add_http_header_by_token(wsi, tok, (const unsigned char *)v, (int)strlen(v), p, end);
}

/* Writes the whole answer (headers and body, one lws_write), then ends it. */
static int send_answer(fit_http_conn *c, struct lws *wsi)
{
    size_t body = c->method == FIT_HTTP_HEAD ? 0 : c->body_len_out;
    unsigned char *buf = malloc(LWS_PRE + FIT_HTTP_HEADERS_MAX + body);
    if (!buf)
        return -1;
    unsigned char *start = buf + LWS_PRE, *ptr = start, *end = start + FIT_HTTP_HEADERS_MAX - 1;
    char disp[160];
    snprintf(disp, sizeof(disp), "attachment; filename=\"%s\"", c->filename);
    c->responding = 0;
    if (lws_add_http_common_headers(wsi, c->status, c->ctype[0] ? c->ctype : NULL,
                                    (lws_filepos_t)c->content_length, &ptr, end) ||
        add_header(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL, "no-store", &ptr, end) ||
        (c->filename[0] && add_header(wsi, WSI_TOKEN_HTTP_CONTENT_DISPOSITION, disp, &ptr, end)) ||
        (c->allow[0] && add_header(wsi, WSI_TOKEN_HTTP_ALLOW, c->allow, &ptr, end)) ||
        (c->location[0] && add_header(wsi, WSI_TOKEN_HTTP_LOCATION, c->location, &ptr, end)) ||
        (c->close_after && add_header(wsi, WSI_TOKEN_CONNECTION, "close", &ptr, end)) ||
        lws_finalize_http_header(wsi, &ptr, end)) {
        free(buf);
        return -1;
    }
    memcpy(ptr, c->body, body);
    ptr += body;
    /*
     * As one "headers" write: lws sends it as it is (and keeps what the
     * socket does not take yet, completing the transaction after it).
     */
    int n = lws_write(wsi, start, (size_t)(ptr - start), LWS_WRITE_HTTP_HEADERS);
    free(buf);
    if (n < 0)
        return -1;
    return finish(c, wsi);
}

int fit_http_writeable(fit_http_conn *c, struct lws *wsi)
{
    return c->responding ? send_answer(c, wsi) : 0;
}

int fit_http_file_done(fit_http_conn *c, struct lws *wsi)
{
    c->serving_file = 0;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

void fit_http_closed(fit_http_conn *c)
{
    if (c->pending)
        c->pending->wsi = NULL; /* its Redis reply will find the connection gone */
    c->pending = NULL;
    free(c->body);
    c->body = NULL;
    c->responding = c->serving_file = 0;
    reset_request(c);
}

/*
 * CONNECT: libwebsockets 4.1 does not route it as HTTP but turns the
 * connection into a raw socket (its tunnel fallback). We are no proxy: the
 * answer is a fixed 501 in HTTP/1.1 form, then the connection is closed.
 */
int fit_http_raw_writeable(struct lws *wsi)
{
    static const char body[] =
        "{\"error\":\"method_not_allowed\",\"message\":\"CONNECT is not supported "
        "(fitsyncd is not a proxy)\"}";
    unsigned char buf[LWS_PRE + 512];
    int n = snprintf((char *)buf + LWS_PRE, sizeof(buf) - LWS_PRE,
                     "HTTP/1.1 501 Not Implemented\r\ncontent-type: application/json\r\n"
                     "content-length: %zu\r\ncache-control: no-store\r\nconnection: close\r\n"
                     "\r\n%s",
                     sizeof(body) - 1, body);
    fit_log(FIT_LOG_INFO, "http CONNECT 501");
    lws_write(wsi, buf + LWS_PRE, (size_t)n, LWS_WRITE_RAW);
    return -1;
}
