/*
 * fit_server: start-up, the lws protocol callback, HTTP routes, shutdown.
 *
 * Start-up order: embedded Redis (if any) -> store (connects with backoff,
 * so it does not matter that the child's socket appears a moment later) ->
 * lws context on our loop -> signals. Shutdown is the reverse, in two
 * stages because lws on a foreign loop closes its libuv handles
 * asynchronously (minimal-http-server-eventlib-foreign): stop taking
 * requests, let what is in flight answer (bounded wait), destroy the lws
 * context, close the store and stop the child, let uv_run return, then
 * destroy the context a second time and close the loop (main.c).
 */
#include "fit_server.h"
#include "fit_error.h"
#include "fit_handlers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern const char fit_functions_lua[];
extern const size_t fit_functions_lua_len;

#define DRAIN_TICK_MS 50
#define DRAIN_MAX_MS 5000

/* Per-connection user data: lws gives every wsi one of these. */
/* An HTTP request waiting for Redis; wsi is NULL once the connection has closed. */
typedef struct {
    struct lws *wsi;
    fit_server *srv;
    char filename[96];
} http_pending;

struct pss {
    fit_session *session; /* WebSocket */
    /* HTTP: the response, written in two WRITEABLE callbacks (headers, then body). */
    char *body;
    size_t body_len;
    unsigned status;
    char ctype[48];
    char filename[96]; /* Content-Disposition attachment name, "" for none */
    int responding, headers_sent;
    http_pending *pending;
};

/* Queues a response (body malloc'd, taken). Returns 0, or -1 to close. */
static int http_respond(struct lws *wsi, struct pss *p, unsigned status, const char *ctype,
                        char *body, size_t len)
{
    if (!body)
        return -1;
    p->body = body;
    p->body_len = len;
    p->status = status;
    p->responding = 1;
    snprintf(p->ctype, sizeof(p->ctype), "%s", ctype);
    lws_callback_on_writable(wsi);
    return 0;
}

static int http_reply(struct lws *wsi, struct pss *p, unsigned status, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    return http_respond(wsi, p, status, "application/json", text, text ? strlen(text) : 0);
}

static int http_error(struct lws *wsi, struct pss *p, unsigned status, int code, const char *msg)
{
    return http_reply(wsi, p, status,
                      json_pack("{s:s, s:s}", "error", fit_err_name(code), "message", msg));
}

static int http_write(struct lws *wsi, struct pss *p)
{
    if (!p->responding)
        return 0;
    if (!p->headers_sent) {
        unsigned char buf[LWS_PRE + 1024], *start = buf + LWS_PRE, *ptr = start,
                                           *end = buf + sizeof(buf) - 1;
        char disp[160];
        snprintf(disp, sizeof(disp), "attachment; filename=\"%s\"", p->filename);
        if (lws_add_http_common_headers(wsi, p->status, p->ctype, (lws_filepos_t)p->body_len, &ptr,
                                        end) ||
            lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                         (const unsigned char *)"no-store", 8, &ptr, end) ||
            (p->filename[0] && lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_DISPOSITION,
                                                            (const unsigned char *)disp,
                                                            (int)strlen(disp), &ptr, end)) ||
            lws_finalize_write_http_header(wsi, start, &ptr, end))
            return -1;
        p->headers_sent = 1;
        lws_callback_on_writable(wsi);
        return 0;
    }
    unsigned char *buf = malloc(LWS_PRE + p->body_len + 1);
    if (!buf)
        return -1;
    memcpy(buf + LWS_PRE, p->body, p->body_len);
    int n = lws_write(wsi, buf + LWS_PRE, p->body_len, LWS_WRITE_HTTP_FINAL);
    free(buf);
    free(p->body);
    p->body = NULL;
    p->responding = p->headers_sent = 0;
    if (n < 0)
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* ---- GET /api/v1/events/<id>/results.csv (host of the event or staff; Bearer token) ---- */

/* A CSV field, quoted when it holds a comma, quote or newline (RFC 4180). */
static void csv_field(char **buf, size_t *len, size_t *cap, const char *s, int last)
{
    size_t need = *len + 2 * strlen(s) + 4;
    if (need > *cap) {
        size_t c = *cap * 2 > need ? *cap * 2 : need;
        char *nb = realloc(*buf, c);
        if (!nb)
            return;
        *buf = nb;
        *cap = c;
    }
    int quote = strpbrk(s, ",\"\r\n") != NULL;
    char *o = *buf + *len;
    if (quote)
        *o++ = '"';
    for (; *s; s++) {
        if (*s == '"')
            *o++ = '"';
        *o++ = *s;
    }
    if (quote)
        *o++ = '"';
    *o++ = last ? '\n' : ',';
    *len = (size_t)(o - *buf);
}

static char *results_csv(const json_t *res, size_t *len)
{
    size_t cap = 4096;
    char *buf = malloc(cap);
    *len = 0;
    if (!buf)
        return NULL;
    static const char header[] =
        "category,rank,bib,team,laps,distance_m,last_lap_at,last_lap_elapsed_s,awards\n";
    memcpy(buf, header, sizeof(header) - 1);
    *len = sizeof(header) - 1;
    size_t ci, ti;
    json_t *c, *t;
    json_array_foreach(json_object_get(res, "categories"), ci, c)
    {
        json_array_foreach(json_object_get(c, "standings"), ti, t)
        {
            char rank[24], laps[24], dist[32], elapsed[24] = "", awards[512] = "";
            snprintf(rank, sizeof(rank), "%lld",
                     (long long)json_integer_value(json_object_get(t, "rank")));
            snprintf(laps, sizeof(laps), "%lld",
                     (long long)json_integer_value(json_object_get(t, "laps")));
            snprintf(dist, sizeof(dist), "%.0f",
                     json_number_value(json_object_get(t, "distance_m")));
            if (json_is_integer(json_object_get(t, "last_lap_elapsed_s")))
                snprintf(elapsed, sizeof(elapsed), "%lld",
                         (long long)json_integer_value(json_object_get(t, "last_lap_elapsed_s")));
            size_t ai;
            json_t *a;
            json_array_foreach(json_object_get(t, "awards"), ai, a)
            {
                size_t n = strlen(awards);
                snprintf(awards + n, sizeof(awards) - n, "%s%s", ai ? "; " : "",
                         json_string_value(a) ? json_string_value(a) : "");
            }
            const char *last = json_string_value(json_object_get(t, "last_lap_at"));
            csv_field(&buf, len, &cap, json_string_value(json_object_get(c, "id")), 0);
            csv_field(&buf, len, &cap, rank, 0);
            csv_field(&buf, len, &cap, json_string_value(json_object_get(t, "bib")), 0);
            csv_field(&buf, len, &cap, json_string_value(json_object_get(t, "name")), 0);
            csv_field(&buf, len, &cap, laps, 0);
            csv_field(&buf, len, &cap, dist, 0);
            csv_field(&buf, len, &cap, last ? last : "", 0);
            csv_field(&buf, len, &cap, elapsed, 0);
            csv_field(&buf, len, &cap, awards, 1);
        }
    }
    return buf;
}

static void results_csv_done(redisReply *r, const char *errstr, void *data)
{
    http_pending *h = data;
    struct lws *wsi = h->wsi;
    if (wsi) {
        struct pss *p = lws_wsi_user(wsi);
        p->pending = NULL;
        json_t *res = r ? fit_event_results_json(r) : NULL;
        if (!r) {
            http_error(wsi, p, HTTP_STATUS_SERVICE_UNAVAILABLE, FIT_EUNAVAILABLE,
                       "storage is unavailable; retry later");
        } else if (!res) {
            http_error(wsi, p, HTTP_STATUS_NOT_FOUND, FIT_ENOT_FOUND, "no such event");
        } else {
            size_t len;
            char *csv = results_csv(res, &len);
            snprintf(p->filename, sizeof(p->filename), "%s", h->filename);
            http_respond(wsi, p, HTTP_STATUS_OK, "text/csv; charset=utf-8", csv, len);
            json_decref(res);
        }
    }
    free(h);
}

/*
 * Checks "Authorization: Bearer <token>" (the scheme in any case, RFC 7235).
 * Returns 1 with *claims filled, or replies 401 and returns 0 (or -1 to close).
 */
static int http_auth(struct lws *wsi, struct pss *p, fit_server *srv, fit_token_claims *claims,
                     int *rc_out)
{
    char auth[FIT_TOKEN_MAX + 16];
    if (lws_hdr_copy(wsi, auth, sizeof(auth), WSI_TOKEN_HTTP_AUTHORIZATION) <= 7 ||
        strncasecmp(auth, "Bearer ", 7) != 0) {
        *rc_out = http_error(wsi, p, HTTP_STATUS_UNAUTHORIZED, FIT_EUNAUTHENTICATED,
                             "send Authorization: Bearer <token>");
        return 0;
    }
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    int rc = fit_token_verify(auth + 7, srv->secret, strlen(srv->secret), tv.tv_sec, claims);
    if (rc) {
        *rc_out = http_error(wsi, p, HTTP_STATUS_UNAUTHORIZED, rc, fit_strerror(rc));
        return 0;
    }
    return 1;
}

static int handle_results_csv(struct lws *wsi, struct pss *p, fit_server *srv, const char *event)
{
    fit_token_claims claims;
    int rc;
    if (!http_auth(wsi, p, srv, &claims, &rc))
        return rc;
    if (!(claims.role == FIT_ROLE_STAFF ||
          (claims.role == FIT_ROLE_HOST && strcmp(claims.event, event) == 0)))
        return http_error(wsi, p, HTTP_STATUS_FORBIDDEN, FIT_EFORBIDDEN,
                          "only this event's hosts (or staff) may download its results");
    http_pending *h = calloc(1, sizeof(*h));
    if (!h)
        return -1;
    h->wsi = wsi;
    h->srv = srv;
    snprintf(h->filename, sizeof(h->filename), "%s-results.csv", event);
    if (fit_ops_event_call(&srv->ops, "fit_event_results", 1, event, 0, NULL, results_csv_done,
                           h) != 0) {
        free(h);
        return http_error(wsi, p, HTTP_STATUS_SERVICE_UNAVAILABLE, FIT_EUNAVAILABLE,
                          "storage is unavailable; retry later");
    }
    p->pending = h;
    return 0;
}

/* ---- GET /api/v1/stats[.csv]?week=2026-W10 (staff Bearer token) ---- */

typedef struct {
    http_pending h;
    int csv;
} stats_http;

static void stats_http_done(int err, const json_t *stats, void *data)
{
    stats_http *sh = data;
    struct lws *wsi = sh->h.wsi;
    if (wsi) {
        struct pss *p = lws_wsi_user(wsi);
        p->pending = NULL;
        if (err) {
            http_error(wsi, p, HTTP_STATUS_SERVICE_UNAVAILABLE, FIT_EUNAVAILABLE,
                       "storage is unavailable; retry later");
        } else if (sh->csv) {
            size_t len;
            char *csv = fit_stats_csv(stats, &len);
            snprintf(p->filename, sizeof(p->filename), "fitsync-stats-%s.csv",
                     json_string_value(json_object_get(stats, "week")));
            http_respond(wsi, p, HTTP_STATUS_OK, "text/csv; charset=utf-8", csv, len);
        } else {
            http_reply(wsi, p, HTTP_STATUS_OK, json_incref((json_t *)stats));
        }
    }
    free(sh);
}

static int handle_stats(struct lws *wsi, struct pss *p, fit_server *srv, int csv)
{
    fit_token_claims claims;
    int rc;
    if (!http_auth(wsi, p, srv, &claims, &rc))
        return rc;
    if (claims.role != FIT_ROLE_STAFF)
        return http_error(wsi, p, HTTP_STATUS_FORBIDDEN, FIT_EFORBIDDEN,
                          "programme statistics are for staff tokens");
    char week[FIT_WEEK_LEN], arg[32];
    int y, w;
    const char *v = lws_get_urlarg_by_name(wsi, "week=", arg, sizeof(arg));
    if (v) {
        if (fit_iso_week_parse(v, &y, &w) != 0)
            return http_error(wsi, p, HTTP_STATUS_BAD_REQUEST, FIT_EINVALID_VALUE,
                              "week must be an ISO week like 2026-W10");
        snprintf(week, sizeof(week), "%s", v);
    } else {
        uv_timeval64_t tv;
        uv_gettimeofday(&tv);
        fit_ops_current_week(&srv->ops, (int64_t)tv.tv_sec * 1000, week);
    }
    stats_http *sh = calloc(1, sizeof(*sh));
    if (!sh)
        return -1;
    sh->h.wsi = wsi;
    sh->h.srv = srv;
    sh->csv = csv;
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    if (fit_stats_read(&srv->stats, week, (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000,
                       stats_http_done, sh) != 0) {
        free(sh);
        return http_error(wsi, p, HTTP_STATUS_SERVICE_UNAVAILABLE, FIT_EUNAVAILABLE,
                          "storage is unavailable; retry later");
    }
    p->pending = &sh->h;
    return 0;
}

/* ---- GET /metrics (Prometheus text format 0.0.4) ---- */

static int handle_metrics(struct lws *wsi, struct pss *p, fit_server *srv)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return -1;
    size_t qbytes = 0;
    for (fit_session *s = srv->all_sessions; s; s = s->all_next)
        qbytes += s->qbytes;
    fprintf(f,
            "# HELP fitsync_connections Open WebSocket connections.\n"
            "# TYPE fitsync_connections gauge\nfitsync_connections %zu\n",
            srv->sessions);
    fprintf(f,
            "# HELP fitsync_push_queue_bytes Bytes queued for clients, not yet written.\n"
            "# TYPE fitsync_push_queue_bytes gauge\nfitsync_push_queue_bytes %zu\n",
            qbytes);
    fprintf(f,
            "# HELP fitsync_requests_in_flight Requests waiting for Redis.\n"
            "# TYPE fitsync_requests_in_flight gauge\nfitsync_requests_in_flight %zu\n",
            srv->inflight);
    fprintf(f,
            "# HELP fitsync_redis_up 1 when Redis is connected and the Functions loaded.\n"
            "# TYPE fitsync_redis_up gauge\nfitsync_redis_up %d\n",
            fit_store_ready(&srv->store));
    fprintf(f,
            "# HELP fitsync_redis_reconnects_total Connections to Redis lost.\n"
            "# TYPE fitsync_redis_reconnects_total counter\n"
            "fitsync_redis_reconnects_total %llu\n",
            (unsigned long long)srv->store.reconnects);
    fprintf(f,
            "# HELP fitsync_redis_child_restarts_total Embedded redis-server restarts.\n"
            "# TYPE fitsync_redis_child_restarts_total counter\n"
            "fitsync_redis_child_restarts_total %llu\n",
            (unsigned long long)(srv->have_child ? srv->child.restarts : 0));
    fprintf(f,
            "# HELP fitsync_leaderboard_reads_total Coalesced leaderboard reads.\n"
            "# TYPE fitsync_leaderboard_reads_total counter\n"
            "fitsync_leaderboard_reads_total %llu\n"
            "# HELP fitsync_leaderboard_pushes_total Leaderboard pushes queued.\n"
            "# TYPE fitsync_leaderboard_pushes_total counter\n"
            "fitsync_leaderboard_pushes_total %llu\n",
            (unsigned long long)srv->hub.reads, (unsigned long long)srv->hub.pushes);
    fit_metrics_write(&srv->metrics, f);
    fit_store_latency_write(&srv->store, f);
    fclose(f);
    return http_respond(wsi, p, HTTP_STATUS_OK, "text/plain; version=0.0.4", buf, len);
}

static int handle_http(struct lws *wsi, struct pss *p, const char *uri)
{
    fit_server *srv = lws_context_user(lws_get_context(wsi));
    if (strcmp(uri, "/api/v1/stats") == 0 || strcmp(uri, "/api/v1/stats.csv") == 0)
        return handle_stats(wsi, p, srv, uri[13] == '.');
    if (strcmp(uri, "/metrics") == 0)
        return handle_metrics(wsi, p, srv);
    if (strcmp(uri, "/dashboard") == 0 || strcmp(uri, "/") == 0) {
        /* The dashboard lives at /dashboard/ (its files are relative to it). */
        unsigned char hdr[LWS_PRE + 512], *start = hdr + LWS_PRE, *ptr = start,
                                          *end = hdr + sizeof(hdr) - 1;
        if (lws_http_redirect(wsi, HTTP_STATUS_FOUND, (const unsigned char *)"/dashboard/", 11,
                              &ptr, end) < 0)
            return -1;
        return lws_http_transaction_completed(wsi) ? -1 : 0;
    }
    if (strcmp(uri, "/healthz") == 0) {
        int up = fit_store_ready(&srv->store);
        return http_reply(wsi, p, up ? HTTP_STATUS_OK : HTTP_STATUS_SERVICE_UNAVAILABLE,
                          json_pack("{s:s, s:s, s:s, s:s}", "status", up ? "ok" : "degraded",
                                    "redis", up ? "up" : "down", "version", FITSYNC_VERSION,
                                    "protocol", FIT_SUBPROTOCOL));
    }
    static const char prefix[] = "/api/v1/events/", suffix[] = "/results.csv";
    size_t n = strlen(uri);
    if (strncmp(uri, prefix, sizeof(prefix) - 1) == 0 && n > sizeof(prefix) + sizeof(suffix) - 2 &&
        strcmp(uri + n - (sizeof(suffix) - 1), suffix) == 0) {
        char event[80];
        snprintf(event, sizeof(event), "%.*s",
                 (int)(n - (sizeof(prefix) - 1) - (sizeof(suffix) - 1)), uri + sizeof(prefix) - 1);
        if (!fit_slug_valid(event))
            return http_error(wsi, p, HTTP_STATUS_NOT_FOUND, FIT_ENOT_FOUND, "no such event");
        return handle_results_csv(wsi, p, srv, event);
    }
    return http_reply(wsi, p, HTTP_STATUS_NOT_FOUND,
                      json_pack("{s:s, s:s}", "error", "not_found", "message",
                                "no such resource; WebSocket clients use subprotocol "
                                "fitsync.v1"));
}

static int has_subprotocol(struct lws *wsi)
{
    char buf[256];
    if (lws_hdr_copy(wsi, buf, sizeof(buf), WSI_TOKEN_PROTOCOL) <= 0)
        return 0;
    for (char *tok = strtok(buf, ", "); tok; tok = strtok(NULL, ", "))
        if (strcmp(tok, FIT_SUBPROTOCOL) == 0)
            return 1;
    return 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    struct pss *p = user;
    fit_server *srv = lws_context_user(lws_get_context(wsi));
    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        /* The protocol is versioned by subprotocol: refuse upgrades that do not ask for it. */
        if (!has_subprotocol(wsi) || srv->stopping)
            return -1;
        return 0;
    case LWS_CALLBACK_ESTABLISHED:
        if (!p)
            return -1;
        p->session = fit_session_new(srv, wsi);
        return p->session ? 0 : -1;
    case LWS_CALLBACK_RECEIVE:
        if (!p || !p->session)
            return -1;
        return fit_session_receive(p->session, in, len,
                                   lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi),
                                   lws_frame_is_binary(wsi));
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return p && p->session ? fit_session_writeable(p->session) : 0;
    case LWS_CALLBACK_CLOSED:
        if (p && p->session) {
            fit_session_closed(p->session);
            p->session = NULL;
        }
        return 0;
    case LWS_CALLBACK_HTTP:
        return p ? handle_http(wsi, p, (const char *)in) : -1;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return p ? http_write(wsi, p) : 0;
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        /* lws also reports these for a connection dropped before it had user data. */
        if (!p)
            return 0;
        if (p->pending)
            p->pending->wsi = NULL; /* its Redis reply will find the connection gone */
        p->pending = NULL;
        free(p->body);
        p->body = NULL;
        p->responding = p->headers_sent = 0;
        return 0;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols protocols[] = {
    {FIT_SUBPROTOCOL, callback, sizeof(struct pss), 4096, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0}};

static void store_state(fit_store *store, fit_store_state st, void *data)
{
    fit_server *srv = data;
    if (st == FIT_STORE_READY) {
        fprintf(stderr, "fitsyncd: Redis ready (%s), Functions library loaded\n",
                store->opt.address);
        srv->redis_outage_logged = 0;
    } else if (!srv->redis_outage_logged) {
        /* Once per outage: the reconnect attempts that follow would only repeat it. */
        fprintf(stderr, "fitsyncd: Redis unavailable: %s; reconnecting with backoff\n",
                store->last_error);
        srv->redis_outage_logged = 1;
    }
}

/* ---- per-user pushes, relayed between processes ---- */

typedef struct {
    fit_session *from;
    const json_t *msg;
    int close;
} user_push;

static void push_one(fit_session *s, void *arg)
{
    user_push *p = arg;
    if (s == p->from)
        return;
    fit_session_send(s, p->msg);
    if (p->close)
        fit_session_close_after_flush(s, LWS_CLOSE_STATUS_NORMAL, "account deleted");
}

static int is_account_deleted(const json_t *msg)
{
    const char *type = json_string_value(json_object_get(msg, "type"));
    return type && strcmp(type, "account.deleted") == 0;
}

static void publish_done(redisReply *r, const char *errstr, void *data)
{
    (void)r; /* best effort: the other devices can always sync.pull */
}

void fit_server_push_user(fit_server *srv, const char *user, fit_session *from, const json_t *msg)
{
    user_push p = {from, msg, is_account_deleted(msg)};
    fit_server_each_device(srv, user, push_one, &p);
    char *text = json_dumps(msg, JSON_COMPACT);
    if (!text)
        return;
    /* "<origin>\n<user>\n<message>": receivers skip their own and deliver the rest. */
    size_t len = strlen(text) + strlen(user) + 24;
    char *payload = malloc(len);
    if (payload) {
        snprintf(payload, len, "%016llx\n%s\n%s", (unsigned long long)srv->origin, user, text);
        const char *argv[] = {"PUBLISH", FIT_DEV_CHANNEL, payload};
        fit_store_command(&srv->store, publish_done, NULL, 3, argv, NULL);
        free(payload);
    }
    free(text);
}

static void relay_in(const char *payload, size_t len, void *data)
{
    fit_server *srv = data;
    char origin[17];
    if (len < 18 || payload[16] != '\n')
        return;
    memcpy(origin, payload, 16);
    origin[16] = '\0';
    if (strtoull(origin, NULL, 16) == srv->origin)
        return;
    const char *user = payload + 17, *end = payload + len;
    const char *nl = memchr(user, '\n', (size_t)(end - user));
    if (!nl || nl - user > 64)
        return;
    char u[65];
    snprintf(u, sizeof(u), "%.*s", (int)(nl - user), user);
    json_t *msg = json_loadb(nl + 1, (size_t)(end - nl - 1), 0, NULL);
    if (!msg)
        return;
    user_push p = {NULL, msg, is_account_deleted(msg)};
    fit_server_each_device(srv, u, push_one, &p);
    json_decref(msg);
}

/* The hub's pushes go out through the subscriber's own bounded, coalescing queue. */
static void deliver_push(void *subscriber, const char *board, const char *frame, size_t len,
                         void *data)
{
    fit_session_send_text(subscriber, "leaderboard", frame, len, board);
}

static void on_signal(uv_signal_t *h, int signum)
{
    fit_server *srv = h->data;
    fprintf(stderr, "fitsyncd: %s received, stopping\n", signum == SIGINT ? "SIGINT" : "SIGTERM");
    fit_server_stop(srv);
}

static void handle_closed(uv_handle_t *h)
{
    (void)h;
}

static void finish_stop(fit_server *srv)
{
    if (srv->ctx)
        lws_context_destroy(srv->ctx); /* first stage; handles close as the loop runs */
    fit_staff_stop(srv);
    if (srv->have_hub)
        fit_board_hub_close(&srv->hub, NULL);
    srv->have_hub = 0;
    if (srv->store.loop)
        fit_store_close(&srv->store, NULL);
    if (srv->have_child)
        fit_redis_child_stop(&srv->child, NULL);
    uv_close((uv_handle_t *)&srv->sigint, handle_closed);
    uv_close((uv_handle_t *)&srv->sigterm, handle_closed);
    uv_close((uv_handle_t *)&srv->drain_timer, handle_closed);
}

/*
 * Shutdown, stage one, every DRAIN_TICK_MS: once nothing waits for Redis,
 * every connection is sent what is queued and then a close frame (1001,
 * going away); when all have closed, or DRAIN_MAX_MS have passed, stage two.
 */
static void drain_tick(uv_timer_t *t)
{
    fit_server *srv = t->data;
    uint64_t waited = uv_now(srv->loop) - srv->drain_started_ms;
    if (srv->inflight == 0 && !srv->closing_sessions) {
        srv->closing_sessions = 1;
        for (fit_session *s = srv->all_sessions; s; s = s->all_next)
            fit_session_close_after_flush(s, LWS_CLOSE_STATUS_GOINGAWAY, "server shutting down");
    }
    if ((srv->closing_sessions && srv->sessions == 0) || waited > DRAIN_MAX_MS) {
        if (srv->inflight)
            fprintf(stderr, "fitsyncd: %zu requests still waiting for Redis at shutdown\n",
                    srv->inflight);
        uv_timer_stop(t);
        finish_stop(srv);
    }
}

void fit_server_stop(fit_server *srv)
{
    if (srv->stopping)
        return;
    srv->stopping = 1;
    if (srv->have_child)
        fit_redis_child_no_restart(&srv->child);
    srv->drain_started_ms = uv_now(srv->loop);
    uv_timer_start(&srv->drain_timer, drain_tick, 0, DRAIN_TICK_MS);
}

int fit_server_start(fit_server *srv, uv_loop_t *loop, fit_config *cfg)
{
    char err[256];
    memset(srv, 0, sizeof(*srv));
    srv->loop = loop;
    srv->cfg = cfg;
    /* Handles first: whatever fails below, fit_server_stop can close them. */
    uv_signal_init(loop, &srv->sigint);
    uv_signal_init(loop, &srv->sigterm);
    uv_timer_init(loop, &srv->drain_timer);
    srv->sigint.data = srv->sigterm.data = srv->drain_timer.data = srv;
    if (fit_mkdirs(cfg->data_dir) != 0) {
        fprintf(stderr, "fitsyncd: cannot create data_dir %s\n", cfg->data_dir);
        return FIT_EIO;
    }
    if (fit_secret_find(cfg->token_secret, cfg->data_dir, 1, srv->secret, sizeof(srv->secret), err,
                        sizeof(err)) != 0) {
        fprintf(stderr, "fitsyncd: %s\n", err);
        return FIT_EIO;
    }

    if (cfg->redis_address[0]) {
        snprintf(srv->redis_address, sizeof(srv->redis_address), "%s", cfg->redis_address);
    } else {
        char dir[FIT_PATH_MAX], conf[FIT_PATH_MAX];
        if (!realpath(cfg->data_dir, dir)) {
            fprintf(stderr, "fitsyncd: data_dir %s: cannot resolve\n", cfg->data_dir);
            return FIT_EIO;
        }
        fit_config_path(cfg, cfg->redis_conf, conf);
        char absconf[FIT_PATH_MAX];
        if (!realpath(conf, absconf)) {
            fprintf(stderr, "fitsyncd: redis.conf %s: not found\n", conf);
            return FIT_EIO;
        }
        int rc = fit_redis_child_start(&srv->child, loop, cfg->redis_server, absconf, dir);
        if (rc == FIT_EINVALID_VALUE) {
            fprintf(stderr, "fitsyncd: data_dir path %s is too long for a Unix socket\n", dir);
            return rc;
        }
        srv->have_child = 1;
        if (rc != 0)
            return rc;
        snprintf(srv->redis_address, sizeof(srv->redis_address), "%s", srv->child.sock);
    }

    fit_store_options so;
    memset(&so, 0, sizeof(so));
    snprintf(so.address, sizeof(so.address), "%s", srv->redis_address);
    so.connect_timeout_ms = (uint32_t)cfg->redis_connect_timeout_ms;
    so.command_timeout_ms = (uint32_t)cfg->redis_command_timeout_ms;
    so.reconnect_max_ms = (uint32_t)cfg->redis_reconnect_max_ms;
    if (fit_store_init(&srv->store, loop, &so, fit_functions_lua, fit_functions_lua_len) != 0) {
        fprintf(stderr, "fitsyncd: bad Redis address \"%s\"\n", so.address);
        return FIT_EINVALID_VALUE;
    }
    srv->ops.store = &srv->store;
    srv->ops.shards = (unsigned)cfg->shards;
    srv->ops.window_ms = (int64_t)cfg->sync_window_days * 86400000LL;
    srv->ops.who = &cfg->who;
    srv->ops.board_keep_weeks = cfg->boards_keep_weeks;
    srv->ops.tz_offset_min = cfg->timezone_offset_min;
    /* Fold only what neither the change log nor an upload can reach any more; with no
     * acceptance limit (max_age_weeks 0) an old session can always change: never fold. */
    if (cfg->max_age_weeks > 0) {
        int reach = cfg->max_age_weeks * 7;
        srv->ops.fold_after_days =
            (reach > cfg->sync_window_days ? reach : cfg->sync_window_days) + 1;
    }
    fit_age_bands_spec(&cfg->boards, srv->ops.age_bands, sizeof(srv->ops.age_bands));
    fit_ops_who_json(&cfg->who, srv->ops.who_json, sizeof(srv->ops.who_json));
    if (uv_random(NULL, NULL, &srv->origin, sizeof(srv->origin), 0, NULL) != 0)
        srv->origin = (uint64_t)uv_hrtime() ^ (uint64_t)getpid();
    if (fit_board_hub_init(&srv->hub, loop, &srv->ops, &so, (uint32_t)cfg->boards_tick_ms,
                           deliver_push, srv, FIT_DEV_CHANNEL, relay_in) != 0) {
        fprintf(stderr, "fitsyncd: cannot start the leaderboard hub\n");
        return FIT_EINVALID_VALUE;
    }
    srv->have_hub = 1;
    fit_staff_start(srv);
    srv->store.on_state = store_state;
    srv->store.on_state_data = srv;

    int levels = LLL_ERR | LLL_WARN;
    lws_set_log_level(levels, NULL);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    void *foreign_loops[1] = {loop};
    /* The staff dashboard's files (web/dashboard) and Chart.js (web/node_modules). */
    char web[FIT_PATH_MAX], absweb[FIT_PATH_MAX];
    fit_config_path(cfg, cfg->web_dir, web);
    if (realpath(web, absweb)) {
        snprintf(srv->dashboard_dir, sizeof(srv->dashboard_dir), "%s/dashboard", absweb);
        snprintf(srv->vendor_dir, sizeof(srv->vendor_dir), "%s/node_modules/chart.js/dist", absweb);
        srv->mounts[0] = (struct lws_http_mount){.mount_next = &srv->mounts[1],
                                                 .mountpoint = "/dashboard/vendor",
                                                 .origin = srv->vendor_dir,
                                                 .origin_protocol = LWSMPRO_FILE,
                                                 .mountpoint_len = 17};
        srv->mounts[1] = (struct lws_http_mount){.mountpoint = "/dashboard",
                                                 .origin = srv->dashboard_dir,
                                                 .def = "index.html",
                                                 .origin_protocol = LWSMPRO_FILE,
                                                 .mountpoint_len = 10};
        info.mounts = &srv->mounts[0];
    } else {
        fprintf(stderr, "fitsyncd: no web_dir at %s: /dashboard/ is not served\n", web);
    }
    info.port = cfg->port;
    info.iface = strcmp(cfg->host, "0.0.0.0") == 0 ? NULL : cfg->host;
    info.protocols = protocols;
    info.foreign_loops = foreign_loops;
    info.user = srv;
    info.options = LWS_SERVER_OPTION_LIBUV |
                   LWS_SERVER_OPTION_HTTP_HEADERS_SECURITY_BEST_PRACTICES_ENFORCE |
                   LWS_SERVER_OPTION_VALIDATE_UTF8;
    /* Idle connections are pinged, and dropped if the ping goes unanswered. */
    static const lws_retry_bo_t retry = {.secs_since_valid_ping = 30,
                                         .secs_since_valid_hangup = 40};
    info.retry_and_idle_policy = &retry;
    info.pt_serv_buf_size = 32 * 1024;
    srv->ctx = lws_create_context(&info);
    if (!srv->ctx) {
        fprintf(stderr, "fitsyncd: cannot listen on %s:%d (port in use?)\n", cfg->host, cfg->port);
        return FIT_EIO;
    }
    if (lws_get_vhost_by_name(srv->ctx, "default") == NULL) {
        fprintf(stderr, "fitsyncd: cannot listen on %s:%d (port in use?)\n", cfg->host, cfg->port);
        return FIT_EIO;
    }
    uv_signal_start(&srv->sigint, on_signal, SIGINT);
    uv_signal_start(&srv->sigterm, on_signal, SIGTERM);
    return 0;
}

void fit_server_destroy(fit_server *srv)
{
    if (srv->ctx)
        lws_context_destroy(srv->ctx);
    srv->ctx = NULL;
    fit_user_devices *u, *tmp;
    HASH_ITER(hh, srv->users, u, tmp)
    {
        HASH_DEL(srv->users, u);
        free(u);
    }
}
