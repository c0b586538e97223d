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
#include "fit_log.h"

#include <stddef.h>
#include <errno.h>
#include <netdb.h>
#include <sys/socket.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern const char fit_functions_lua[];
extern const size_t fit_functions_lua_len;

#define FIT_SWEEP_MS 500
#define DRAIN_TICK_MS 50
#define DRAIN_MAX_MS 5000

/*
 * Per-connection user data: lws gives every wsi one of these. The HTTP
 * state comes first: fit_http finds it from the wsi (lws_wsi_user).
 */
struct pss {
    fit_http_conn http;
    fit_session *session; /* WebSocket */
};
_Static_assert(offsetof(struct pss, http) == 0, "fit_http_conn must come first in struct pss");

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
        if (p)
            fit_http_closed(&p->http); /* HTTP requests before an upgrade, if any */
        return 0;
    case LWS_CALLBACK_HTTP:
        return p ? fit_http_request_begin(&p->http, &srv->http, wsi, (const char *)in) : -1;
    case LWS_CALLBACK_HTTP_BODY:
        return p ? fit_http_body(&p->http, wsi, len) : -1;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        /* Ours, not lws_callback_http_dummy's: that one would complete the transaction. */
        return p ? fit_http_body_done(&p->http, wsi) : -1;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return p ? fit_http_writeable(&p->http, wsi) : 0;
    case LWS_CALLBACK_HTTP_FILE_COMPLETION:
        return p ? fit_http_file_done(&p->http, wsi) : -1;
    case LWS_CALLBACK_RAW_ADOPT:
        lws_callback_on_writable(wsi);
        return 0;
    case LWS_CALLBACK_RAW_WRITEABLE:
        return fit_http_raw_writeable(wsi);
    case LWS_CALLBACK_RAW_RX:
        return 0; /* the CONNECT's bytes: answered (and closed) when writeable */
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        /* lws also reports these for a connection dropped before it had user data. */
        if (p)
            fit_http_closed(&p->http);
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
        fit_log(FIT_LOG_NOTICE, "Redis ready (%s), Functions library loaded", store->opt.address);
        srv->redis_outage_logged = 0;
    } else if (!srv->redis_outage_logged) {
        /* Once per outage: the reconnect attempts that follow would only repeat it. */
        fit_log(FIT_LOG_WARN, "Redis unavailable: %s; reconnecting with backoff",
                store->last_error);
        srv->redis_outage_logged = 1;
    }
}

/* The Redis Cluster became ready (every slot's primary connected) or stopped being so. */
static void cluster_state(fit_cluster *c, int ready, void *data)
{
    fit_server *srv = data;
    if (ready) {
        fit_log(FIT_LOG_NOTICE,
                "Redis Cluster ready: every slot's primary connected, Functions library loaded");
        srv->redis_outage_logged = 0;
    } else if (!srv->redis_outage_logged) {
        fit_log(FIT_LOG_WARN, "Redis Cluster not fully available (a primary lost or a slot "
                              "without one); calls wait and retry");
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
        fit_redis_command(&srv->ops.redis, FIT_REDIS_IDEMPOTENT, publish_done, NULL, 3, argv, NULL);
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
    fit_log(FIT_LOG_NOTICE, "%s received, stopping", signum == SIGINT ? "SIGINT" : "SIGTERM");
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
    if (srv->have_cluster)
        fit_cluster_close(&srv->cluster, NULL);
    if (srv->have_child)
        fit_redis_child_stop(&srv->child, NULL);
    uv_close((uv_handle_t *)&srv->sigint, handle_closed);
    uv_close((uv_handle_t *)&srv->sigterm, handle_closed);
    uv_close((uv_handle_t *)&srv->drain_timer, handle_closed);
    uv_close((uv_handle_t *)&srv->sweep_timer, handle_closed);
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
            fit_log(FIT_LOG_WARN, "%zu requests still waiting for Redis at shutdown",
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

/*
 * Every FIT_SWEEP_MS (DESIGN.md decision 7: every connection earns its keep):
 * a connection that has not completed hello within hello_timeout_ms and holds
 * no spectator subscription is closed with 1008; a signed-in session whose
 * token's exp (UTC seconds) has passed is closed with 4001 "token expired"
 * (a message arriving in between is refused the same way by the dispatcher).
 */
static void sweep(uv_timer_t *t)
{
    fit_server *srv = t->data;
    uint64_t now = uv_now(srv->loop);
    int64_t now_s = fit_now_ms() / 1000;
    for (fit_session *s = srv->all_sessions; s; s = s->all_next) {
        if (!s->wsi || s->close_after_flush)
            continue;
        if (s->authed && s->claims.exp_s <= now_s)
            fit_session_close_after_flush(s, FIT_CLOSE_TOKEN_EXPIRED, "token expired");
        else if (!s->authed && s->nsubs == 0 &&
                 now - s->opened_ms >= (uint64_t)srv->cfg->hello_timeout_ms)
            fit_session_close_after_flush(s, LWS_CLOSE_STATUS_POLICY_VIOLATION, "hello timeout");
    }
}

/* 0 if host:port can be bound now (SO_REUSEADDR, as lws binds), else -1 with the reason. */
static int port_free(const char *host, int port, char *why, size_t len)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE},
                    *res = NULL;
    char service[16];
    snprintf(service, sizeof(service), "%d", port);
    int rc = getaddrinfo(strcmp(host, "0.0.0.0") == 0 ? NULL : host, service, &hints, &res);
    if (rc != 0) {
        snprintf(why, len, "%s", gai_strerror(rc));
        return -1;
    }
    int ok = -1;
    for (struct addrinfo *a = res; a && ok != 0; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, a->ai_addr, a->ai_addrlen) == 0)
            ok = 0;
        else
            snprintf(why, len, "%s", strerror(errno));
        close(fd);
    }
    freeaddrinfo(res);
    return ok;
}

/* fit_store_options.peer_pid: the embedded Redis the store may talk to. */
static pid_t child_pid(void *data)
{
    return fit_redis_child_pid(data);
}

int fit_server_start(fit_server *srv, uv_loop_t *loop, fit_config *cfg)
{
    char err[256];
    memset(srv, 0, sizeof(*srv));
    srv->loop = loop;
    srv->cfg = cfg;
    fit_log_set_level((fit_log_level)fit_log_level_parse(cfg->log_level));
    /* Handles first: whatever fails below, fit_server_stop can close them. */
    uv_signal_init(loop, &srv->sigint);
    uv_signal_init(loop, &srv->sigterm);
    uv_timer_init(loop, &srv->drain_timer);
    uv_timer_init(loop, &srv->sweep_timer);
    srv->sigint.data = srv->sigterm.data = srv->drain_timer.data = srv->sweep_timer.data = srv;
    if (fit_mkdirs(cfg->data_dir) != 0) {
        fit_log(FIT_LOG_ERROR, "cannot create data_dir %s", cfg->data_dir);
        return FIT_EIO;
    }
    /*
     * lws 4.1 on a foreign libuv loop leaves freed handles on the loop when
     * it cannot listen, and the next uv_run crashes (found from outside: a
     * port in use gave a segfault). So the port is tried first,
     * before anything (the embedded Redis) is started.
     */
    char why[128];
    if (port_free(cfg->host, cfg->port, why, sizeof(why)) != 0) {
        fit_log(FIT_LOG_ERROR, "cannot listen on %s:%d: %s", cfg->host, cfg->port, why);
        return FIT_EIO;
    }
    if (fit_secret_find(cfg->token_secret, cfg->data_dir, 1, srv->secret, sizeof(srv->secret), err,
                        sizeof(err)) != 0) {
        fit_log(FIT_LOG_ERROR, "%s", err);
        return FIT_EIO;
    }

    if (cfg->redis_cluster[0]) {
        /* The pub/sub connection tries the cluster's nodes in turn (fit_store.h). */
        snprintf(srv->redis_address, sizeof(srv->redis_address), "%s", cfg->redis_cluster);
    } else if (cfg->redis_address[0]) {
        snprintf(srv->redis_address, sizeof(srv->redis_address), "%s", cfg->redis_address);
    } else {
        char dir[FIT_PATH_MAX], conf[FIT_PATH_MAX];
        if (!realpath(cfg->data_dir, dir)) {
            fit_log(FIT_LOG_ERROR, "data_dir %s: cannot resolve", cfg->data_dir);
            return FIT_EIO;
        }
        fit_config_path(cfg, cfg->redis_conf, conf);
        char absconf[FIT_PATH_MAX];
        if (!realpath(conf, absconf)) {
            fit_log(FIT_LOG_ERROR, "redis.conf %s: not found", conf);
            return FIT_EIO;
        }
        int rc = fit_redis_child_start(&srv->child, loop, cfg->redis_server, absconf, dir);
        srv->have_child = 1; /* its handles are open, whatever rc says */
        if (rc == FIT_EINVALID_VALUE)
            fit_log(FIT_LOG_ERROR, "data_dir path %s is too long for a Unix socket", dir);
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
    if (srv->have_child) {
        so.peer_pid = child_pid;
        so.peer_pid_data = &srv->child;
    }
    if (cfg->redis_cluster[0]) {
        if (fit_cluster_init(&srv->cluster, loop, cfg->redis_cluster, &so, fit_functions_lua,
                             fit_functions_lua_len) != 0) {
            fit_log(FIT_LOG_ERROR, "bad redis.cluster \"%s\" (1..8 host:port, comma-separated)",
                    cfg->redis_cluster);
            return FIT_EINVALID_VALUE;
        }
        srv->have_cluster = 1;
        srv->cluster.wait_replicas = cfg->redis_wait_replicas;
        srv->cluster.wait_timeout_ms = (uint32_t)cfg->redis_wait_timeout_ms;
        srv->cluster.on_state = cluster_state;
        srv->cluster.on_state_data = srv;
        srv->ops.redis.cluster = &srv->cluster;
    } else {
        if (fit_store_init(&srv->store, loop, &so, fit_functions_lua, fit_functions_lua_len) != 0) {
            fit_log(FIT_LOG_ERROR, "bad Redis address \"%s\"", so.address);
            return FIT_EINVALID_VALUE;
        }
        srv->ops.redis.store = &srv->store;
        srv->store.on_state = store_state;
        srv->store.on_state_data = srv;
    }
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
        fit_log(FIT_LOG_ERROR, "cannot start the leaderboard hub");
        return FIT_EINVALID_VALUE;
    }
    srv->have_hub = 1;
    fit_staff_start(srv);

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    void *foreign_loops[1] = {loop};
    /*
     * The staff dashboard's files (web/dashboard) and Chart.js
     * (web/node_modules), served by the /dashboard/ route (fit_h_http.c)
     * rather than lws mounts, so that they answer like every other route.
     */
    char web[FIT_PATH_MAX], absweb[FIT_PATH_MAX];
    fit_config_path(cfg, cfg->web_dir, web);
    if (realpath(web, absweb)) {
        char dir[2 * FIT_PATH_MAX], real[PATH_MAX];
        snprintf(dir, sizeof(dir), "%s/dashboard", absweb);
        if (realpath(dir, real) && strlen(real) < sizeof(srv->dashboard_dir))
            snprintf(srv->dashboard_dir, sizeof(srv->dashboard_dir), "%s", real);
        /* Without node_modules the page is served and vendor/ answers 404. */
        snprintf(dir, sizeof(dir), "%s/node_modules/chart.js/dist", absweb);
        if (realpath(dir, real) && strlen(real) < sizeof(srv->vendor_dir))
            snprintf(srv->vendor_dir, sizeof(srv->vendor_dir), "%s", real);
    }
    if (!srv->dashboard_dir[0])
        fit_log(FIT_LOG_WARN, "no web_dir at %s: /dashboard/ is not served", web);
    fit_h_http_table(srv, &srv->http);
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
    info.max_http_header_data = FIT_HTTP_HEADER_BYTES;
    srv->ctx = lws_create_context(&info);
    if (!srv->ctx) {
        fit_log(FIT_LOG_ERROR, "cannot listen on %s:%d (port in use?)", cfg->host, cfg->port);
        return FIT_EIO;
    }
    if (lws_get_vhost_by_name(srv->ctx, "default") == NULL) {
        fit_log(FIT_LOG_ERROR, "cannot listen on %s:%d (port in use?)", cfg->host, cfg->port);
        return FIT_EIO;
    }
    uv_signal_start(&srv->sigint, on_signal, SIGINT);
    uv_signal_start(&srv->sigterm, on_signal, SIGTERM);
    uv_timer_start(&srv->sweep_timer, sweep, FIT_SWEEP_MS, FIT_SWEEP_MS);
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
