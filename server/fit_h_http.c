/*
 * fit_h_http: the HTTP routes of fitsyncd and their handlers.
 *
 * The table below is the whole HTTP surface (docs/PROTOCOL.md, "HTTP"):
 * each row a path, its methods, the token roles it needs and its handler.
 * fit_http (the engine) answers everything outside the table (404, 405,
 * OPTIONS, bodies, 413, tokens), so a handler only does its own work.
 */
#include "fit_error.h"
#include "fit_handlers.h"
#include "fit_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- GET /healthz ---- */

static int handle_healthz(fit_http_request *req)
{
    fit_server *srv = req->data;
    int up = fit_redis_ready(&srv->ops.redis);
    return fit_http_reply_json(
        req->conn, req->wsi, up ? HTTP_STATUS_OK : HTTP_STATUS_SERVICE_UNAVAILABLE,
        json_pack("{s:s, s:s, s:s, s:s}", "status", up ? "ok" : "degraded", "redis",
                  up ? "up" : "down", "version", FITSYNC_VERSION, "protocol", FIT_SUBPROTOCOL));
}

/* ---- GET /metrics (Prometheus text format 0.0.4) ---- */

static int handle_metrics(fit_http_request *req)
{
    fit_server *srv = req->data;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return fit_http_respond(req->conn, req->wsi, HTTP_STATUS_OK, NULL, NULL, 0);
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
            fit_redis_ready(&srv->ops.redis));
    fprintf(f,
            "# HELP fitsync_redis_reconnects_total Connections to Redis lost.\n"
            "# TYPE fitsync_redis_reconnects_total counter\n"
            "fitsync_redis_reconnects_total %llu\n",
            (unsigned long long)(srv->have_cluster ? fit_cluster_reconnects(&srv->cluster)
                                                   : srv->store.reconnects));
    if (srv->have_cluster)
        fprintf(
            f,
            "# HELP fitsync_redis_cluster_redirects_total MOVED and ASK redirections followed.\n"
            "# TYPE fitsync_redis_cluster_redirects_total counter\n"
            "fitsync_redis_cluster_redirects_total %llu\n"
            "# HELP fitsync_redis_cluster_retries_total Calls sent again (TRYAGAIN, "
            "CLUSTERDOWN, a lost connection).\n"
            "# TYPE fitsync_redis_cluster_retries_total counter\n"
            "fitsync_redis_cluster_retries_total %llu\n"
            "# HELP fitsync_redis_cluster_waits_short_total Writes fewer replicas confirmed "
            "than redis.wait_replicas.\n"
            "# TYPE fitsync_redis_cluster_waits_short_total counter\n"
            "fitsync_redis_cluster_waits_short_total %llu\n",
            (unsigned long long)srv->cluster.redirects, (unsigned long long)srv->cluster.retries,
            (unsigned long long)srv->cluster.waits_short);
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
    if (srv->have_cluster)
        fit_cluster_latency_write(&srv->cluster, f);
    else
        fit_store_latency_write(&srv->store, f);
    if (fclose(f) != 0) {
        free(buf);
        buf = NULL; /* answered 500, never a cut-off 200 */
    }
    return fit_http_respond(req->conn, req->wsi, HTTP_STATUS_OK, "text/plain; version=0.0.4", buf,
                            len);
}

/* ---- GET /api/v1/events/<id>/results.csv (host of the event or staff) ---- */

typedef struct {
    fit_http_pending h;
    char filename[96];
} results_http;

/* Appends a CSV field, quoted when it holds a comma, quote or newline (RFC 4180). -1 on ENOMEM. */
static int csv_field(char **buf, size_t *len, size_t *cap, const char *s, int last)
{
    size_t need = *len + 2 * strlen(s) + 4;
    if (need > *cap) {
        size_t c = *cap * 2 > need ? *cap * 2 : need;
        char *nb = realloc(*buf, c);
        if (!nb)
            return -1;
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
    return 0;
}

/* The results as CSV (malloc'd), or NULL when memory ran out. */
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
    int bad = 0;
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
            bad |= csv_field(&buf, len, &cap, json_string_value(json_object_get(c, "id")), 0);
            bad |= csv_field(&buf, len, &cap, rank, 0);
            bad |= csv_field(&buf, len, &cap, json_string_value(json_object_get(t, "bib")), 0);
            bad |= csv_field(&buf, len, &cap, json_string_value(json_object_get(t, "name")), 0);
            bad |= csv_field(&buf, len, &cap, laps, 0);
            bad |= csv_field(&buf, len, &cap, dist, 0);
            bad |= csv_field(&buf, len, &cap, last ? last : "", 0);
            bad |= csv_field(&buf, len, &cap, elapsed, 0);
            bad |= csv_field(&buf, len, &cap, awards, 1);
        }
    }
    if (bad) {
        free(buf);
        return NULL;
    }
    return buf;
}

static void results_csv_done(redisReply *r, const char *errstr, void *data)
{
    (void)errstr;
    results_http *h = data;
    fit_http_conn *c = fit_http_pending_conn(&h->h);
    if (c) {
        struct lws *wsi = h->h.wsi;
        json_t *res = r ? fit_event_results_json(r) : NULL;
        if (!r) {
            fit_http_error(c, wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, FIT_EUNAVAILABLE, NULL,
                           "storage is unavailable; retry later");
        } else if (!res) {
            fit_http_error(c, wsi, HTTP_STATUS_NOT_FOUND, FIT_ENOT_FOUND, NULL, "no such event");
        } else {
            size_t len;
            char *csv = results_csv(res, &len);
            fit_http_attachment(c, h->filename);
            fit_http_respond(c, wsi, HTTP_STATUS_OK, "text/csv; charset=utf-8", csv, len);
            json_decref(res);
        }
    }
    free(h);
}

static int handle_results_csv(fit_http_request *req)
{
    fit_server *srv = req->data;
    const char *event = req->param;
    if (!fit_slug_valid(event))
        return fit_http_error(req->conn, req->wsi, HTTP_STATUS_NOT_FOUND, FIT_ENOT_FOUND, NULL,
                              "no such event");
    if (req->claims->role == FIT_ROLE_HOST && strcmp(req->claims->event, event) != 0)
        return fit_http_error(req->conn, req->wsi, HTTP_STATUS_FORBIDDEN, FIT_EFORBIDDEN, NULL,
                              req->route->forbidden);
    results_http *h = calloc(1, sizeof(*h));
    if (!h)
        return fit_http_respond(req->conn, req->wsi, HTTP_STATUS_OK, NULL, NULL, 0);
    snprintf(h->filename, sizeof(h->filename), "%s-results.csv", event);
    fit_http_wait(req, &h->h);
    if (fit_ops_event_call(&srv->ops, "fit_event_results", 1, event, 0, NULL, results_csv_done,
                           h) != 0) {
        fit_http_pending_conn(&h->h);
        free(h);
        return fit_http_error(req->conn, req->wsi, HTTP_STATUS_SERVICE_UNAVAILABLE,
                              FIT_EUNAVAILABLE, NULL, "storage is unavailable; retry later");
    }
    return 0;
}

/* ---- GET /api/v1/stats[.csv]?week=2026-W10 (staff) ---- */

typedef struct {
    fit_http_pending h;
    int csv;
} stats_http;

static void stats_http_done(int err, const json_t *stats, void *data)
{
    stats_http *sh = data;
    fit_http_conn *c = fit_http_pending_conn(&sh->h);
    if (c) {
        struct lws *wsi = sh->h.wsi;
        if (err) {
            fit_http_error(c, wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, FIT_EUNAVAILABLE, NULL,
                           "storage is unavailable; retry later");
        } else if (sh->csv) {
            size_t len;
            char *csv = fit_stats_csv(stats, &len);
            char name[96];
            snprintf(name, sizeof(name), "fitsync-stats-%s.csv",
                     json_string_value(json_object_get(stats, "week")));
            fit_http_attachment(c, name);
            fit_http_respond(c, wsi, HTTP_STATUS_OK, "text/csv; charset=utf-8", csv, len);
        } else {
            fit_http_reply_json(c, wsi, HTTP_STATUS_OK, json_incref((json_t *)stats));
        }
    }
    free(sh);
}

static int stats_common(fit_http_request *req, int csv)
{
    fit_server *srv = req->data;
    char week[FIT_WEEK_LEN], arg[32];
    int y, w;
    const char *v = lws_get_urlarg_by_name(req->wsi, "week=", arg, sizeof(arg));
    if (v) {
        if (fit_iso_week_parse(v, &y, &w) != 0)
            return fit_http_error(req->conn, req->wsi, HTTP_STATUS_BAD_REQUEST, FIT_EINVALID_VALUE,
                                  "week", "week must be an ISO week like 2026-W10");
        snprintf(week, sizeof(week), "%s", v);
    } else {
        fit_ops_current_week(&srv->ops, fit_now_ms(), week);
    }
    stats_http *sh = calloc(1, sizeof(*sh));
    if (!sh)
        return fit_http_respond(req->conn, req->wsi, HTTP_STATUS_OK, NULL, NULL, 0);
    sh->csv = csv;
    fit_http_wait(req, &sh->h);
    if (fit_stats_read(&srv->stats, week, fit_now_ms(), stats_http_done, sh) != 0) {
        fit_http_pending_conn(&sh->h);
        free(sh);
        return fit_http_error(req->conn, req->wsi, HTTP_STATUS_SERVICE_UNAVAILABLE,
                              FIT_EUNAVAILABLE, NULL, "storage is unavailable; retry later");
    }
    return 0;
}

static int handle_stats(fit_http_request *req)
{
    return stats_common(req, 0);
}

static int handle_stats_csv(fit_http_request *req)
{
    return stats_common(req, 1);
}

/* ---- the staff dashboard: GET /dashboard/... (web/dashboard, Chart.js at vendor/) ---- */

static int handle_to_dashboard(fit_http_request *req)
{
    /* The dashboard lives at /dashboard/ (its files are relative to it). */
    return fit_http_redirect(req->conn, req->wsi, "/dashboard/");
}

/* 1 if rel is a relative path with no empty, "." or ".." segment. */
static int safe_relative(const char *rel)
{
    if (rel[0] == '/')
        return 0;
    for (const char *s = rel; *s;) {
        size_t n = strcspn(s, "/");
        if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.') ||
            (n == 0 && s[0] == '/'))
            return 0;
        s += n;
        if (*s == '/')
            s++;
    }
    return strchr(rel, '\\') == NULL;
}

static int handle_dashboard(fit_http_request *req)
{
    fit_server *srv = req->data;
    const char *rest = req->rest, *root = srv->dashboard_dir;
    if (!root[0])
        return fit_http_error(req->conn, req->wsi, HTTP_STATUS_NOT_FOUND, FIT_ENOT_FOUND, NULL,
                              "the dashboard is not installed here (no web_dir)");
    if (strncmp(rest, "vendor/", 7) == 0) {
        root = srv->vendor_dir;
        rest += 7;
    }
    char file[2 * FIT_PATH_MAX], real[FIT_PATH_MAX];
    size_t n = strlen(rest);
    struct stat st;
    int ok = safe_relative(rest) &&
             snprintf(file, sizeof(file), "%s/%s%s", root, rest,
                      n == 0 || rest[n - 1] == '/' ? "index.html" : "") < (int)sizeof(file) &&
             stat(file, &st) == 0 && S_ISREG(st.st_mode) && realpath(file, real) &&
             strncmp(real, root, strlen(root)) == 0 && real[strlen(root)] == '/';
    if (!ok)
        return fit_http_error(req->conn, req->wsi, HTTP_STATUS_NOT_FOUND, FIT_ENOT_FOUND, NULL,
                              "no such file");
    return fit_http_serve_file(req, real, NULL);
}

/* ---- the table ---- */

#define GET FIT_HTTP_GET
#define STAFF FIT_HTTP_ROLE(FIT_ROLE_STAFF)
#define HOST FIT_HTTP_ROLE(FIT_ROLE_HOST)

static const fit_http_route routes[] = {
    {"/healthz", 0, GET, 0, NULL, handle_healthz},
    {"/metrics", 0, GET, 0, NULL, handle_metrics},
    {"/api/v1/stats", 0, GET, STAFF, "programme statistics are for staff tokens", handle_stats},
    {"/api/v1/stats.csv", 0, GET, STAFF, "programme statistics are for staff tokens",
     handle_stats_csv},
    {"/api/v1/events/*/results.csv", 0, GET, HOST | STAFF,
     "only this event's hosts (or staff) may download its results", handle_results_csv},
    {"/", 0, GET, 0, NULL, handle_to_dashboard},
    {"/dashboard", 0, GET, 0, NULL, handle_to_dashboard},
    {"/dashboard/", 1, GET, 0, NULL, handle_dashboard},
};

void fit_h_http_table(fit_server *srv, fit_http_table *t)
{
    t->routes = routes;
    t->nroutes = sizeof(routes) / sizeof(routes[0]);
    t->max_body_bytes = (uint64_t)srv->cfg->http_max_body_bytes;
    t->secret = srv->secret;
    t->data = srv;
}
