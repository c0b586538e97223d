/*
 * fit_store: connect, load, time out, reconnect.
 *
 * One repeating 100 ms timer drives every deadline (connect timeout, the
 * oldest command's timeout, the next reconnect attempt): deadlines here are
 * coarse by nature and one timer is cheaper and simpler than one per command.
 *
 * hiredis rules followed here (async.c): a context is never freed from inside
 * its own callbacks by us — the timer drops connections, hiredis frees a
 * context after a failed connect or a disconnect callback — and store->ac is
 * forgotten in those callbacks before anything else can use it.
 */
#define _GNU_SOURCE /* struct ucred */
#include "fit_store.h"
#include "fit_error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#define TICK_MS 100
#define BACKOFF_MIN_MS 100

struct fit_store_req {
    fit_store *store;
    fit_store_cb *cb;
    void *data;
    uint64_t sent_ms;
    uint64_t sent_ns; /* uv_hrtime(), for the latency histogram */
    fit_store_req *next, *prev;
    int internal; /* the FUNCTION LOAD issued by the store itself */
};

static void start_connect(fit_store *s);

/*
 * The libuv event glue for hiredis. hiredis ships one (adapters/libuv.h), but
 * the 0.14 version drops poll errors: when the Redis socket fails, libuv
 * reports UV_EBADF once and stops polling, the adapter returns, and hiredis
 * never learns the connection is gone, so commands in flight wait for the
 * command timeout. This one hands the error to hiredis (a read that fails),
 * which disconnects at once and fails what is pending.
 */
typedef struct {
    redisAsyncContext *ac; /* NULL once hiredis has cleaned up */
    uv_poll_t poll;
    int events;
} uv_glue;

static void glue_poll_cb(uv_poll_t *h, int status, int events)
{
    uv_glue *g = h->data;
    if (!g->ac)
        return;
    if (status < 0) {
        redisAsyncHandleRead(g->ac);
        return;
    }
    if (events & UV_READABLE)
        redisAsyncHandleRead(g->ac);
    if (g->ac && (events & UV_WRITABLE))
        redisAsyncHandleWrite(g->ac);
}

static void glue_update(uv_glue *g, int add, int flag)
{
    g->events = add ? g->events | flag : g->events & ~flag;
    if (g->events)
        uv_poll_start(&g->poll, g->events, glue_poll_cb);
    else
        uv_poll_stop(&g->poll);
}

static void glue_add_read(void *p)
{
    glue_update(p, 1, UV_READABLE);
}

static void glue_del_read(void *p)
{
    glue_update(p, 0, UV_READABLE);
}

static void glue_add_write(void *p)
{
    glue_update(p, 1, UV_WRITABLE);
}

static void glue_del_write(void *p)
{
    glue_update(p, 0, UV_WRITABLE);
}

static void glue_closed(uv_handle_t *h)
{
    free(h->data);
}

static void glue_cleanup(void *p)
{
    uv_glue *g = p;
    g->ac = NULL;
    uv_close((uv_handle_t *)&g->poll, glue_closed);
}

static int glue_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    uv_glue *g = calloc(1, sizeof(*g));
    if (!g)
        return REDIS_ERR;
    if (uv_poll_init(loop, &g->poll, ac->c.fd) != 0) {
        free(g);
        return REDIS_ERR;
    }
    g->ac = ac;
    g->poll.data = g;
    ac->ev.data = g;
    ac->ev.addRead = glue_add_read;
    ac->ev.delRead = glue_del_read;
    ac->ev.addWrite = glue_add_write;
    ac->ev.delWrite = glue_del_write;
    ac->ev.cleanup = glue_cleanup;
    return REDIS_OK;
}

static void set_state(fit_store *s, fit_store_state st)
{
    s->state = st;
    s->state_since_ms = uv_now(s->loop);
    if (s->on_state && (st == FIT_STORE_READY || st == FIT_STORE_DISCONNECTED))
        s->on_state(s, st, s->on_state_data);
}

unsigned fit_shard_of(const char *id, unsigned shards)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
        h ^= *p;
        h *= 16777619u;
    }
    return shards > 1 ? h % shards : 0;
}

static void unlink_req(fit_store *s, fit_store_req *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        s->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        s->tail = r->prev;
    s->pending--;
}

/* Upper bounds of the latency buckets, seconds (the last is +Inf). */
static const double lat_bounds[12] = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.025,
                                      0.05,   0.1,   0.25,  0.5,   1.0,  1e300};

static void latency_observe(fit_store *s, uint64_t ns)
{
    double sec = (double)ns / 1e9;
    for (int i = 0; i < 12; i++)
        if (sec <= lat_bounds[i]) {
            s->lat_buckets[i]++;
            break;
        }
    s->lat_count++;
    s->lat_sum_s += sec;
}

void fit_store_latency_write(const fit_store *s, FILE *f)
{
    fprintf(f, "# HELP fitsync_redis_command_seconds Redis command latency, send to reply.\n"
               "# TYPE fitsync_redis_command_seconds histogram\n");
    uint64_t cum = 0;
    for (int i = 0; i < 12; i++) {
        cum += s->lat_buckets[i];
        if (i < 11)
            fprintf(f, "fitsync_redis_command_seconds_bucket{le=\"%g\"} %llu\n", lat_bounds[i],
                    (unsigned long long)cum);
        else
            fprintf(f, "fitsync_redis_command_seconds_bucket{le=\"+Inf\"} %llu\n",
                    (unsigned long long)cum);
    }
    fprintf(f, "fitsync_redis_command_seconds_sum %.6f\nfitsync_redis_command_seconds_count %llu\n",
            s->lat_sum_s, (unsigned long long)s->lat_count);
}

static void reply_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    fit_store_req *r = privdata;
    fit_store *s = r->store;
    unlink_req(s, r);
    if (reply)
        latency_observe(s, uv_hrtime() - r->sent_ns);
    const char *errstr = NULL;
    if (!reply)
        errstr = s->last_error[0] ? s->last_error : "connection to Redis lost";
    if (r->internal) {
        redisReply *rep = reply;
        if (rep && rep->type != REDIS_REPLY_ERROR && s->state == FIT_STORE_LOADING) {
            s->backoff_ms = 0;
            s->last_error[0] = '\0';
            set_state(s, FIT_STORE_READY);
        } else if (rep) {
            snprintf(s->last_error, sizeof(s->last_error), "FUNCTION LOAD failed: %.90s",
                     rep->str ? rep->str : "?");
            if (rep->str && strncmp(rep->str, "LOADING", 7) == 0)
                fprintf(stderr, "fitsync: Redis is still loading its data; the Functions library "
                                "is loaded when it is done\n");
            else
                fprintf(stderr, "fitsync: %s\n", s->last_error);
            /*
             * E.g. "LOADING Redis is loading the dataset in memory" after a restart:
             * the timer drops this connection (not from inside this callback) and
             * reconnects with backoff, loading again.
             */
            s->drop_pending = 1;
        }
    } else if (r->cb) {
        r->cb(reply, errstr, r->data);
    }
    free(r);
}

static int send_req(fit_store *s, fit_store_req *r, int argc, const char **argv,
                    const size_t *argvlen)
{
    r->store = s;
    r->sent_ms = uv_now(s->loop);
    r->sent_ns = uv_hrtime();
    r->prev = s->tail;
    r->next = NULL;
    if (s->tail)
        s->tail->next = r;
    else
        s->head = r;
    s->tail = r;
    s->pending++;
    if (redisAsyncCommandArgv(s->ac, reply_cb, r, argc, argv, argvlen) != REDIS_OK) {
        unlink_req(s, r);
        return FIT_EUNAVAILABLE;
    }
    return 0;
}

static void load_functions(fit_store *s)
{
    fit_store_req *r = calloc(1, sizeof(*r));
    if (!r)
        return;
    r->internal = 1;
    const char *argv[] = {"FUNCTION", "LOAD", "REPLACE", s->lua};
    size_t lens[] = {8, 4, 7, s->lua_len};
    set_state(s, FIT_STORE_LOADING);
    if (send_req(s, r, 4, argv, lens) != 0)
        free(r);
}

/* Pub/sub mode: the subscription's confirmation, then every message, then NULL on close. */
static void subscribe_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    fit_store *s = privdata;
    redisReply *r = reply;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 3 || !r->element[0]->str)
        return;
    const char *kind = r->element[0]->str;
    if (strcmp(kind, "subscribe") == 0 && s->state == FIT_STORE_LOADING) {
        s->backoff_ms = 0;
        s->last_error[0] = '\0';
        set_state(s, FIT_STORE_READY);
    } else if (strcmp(kind, "message") == 0 && r->element[1]->str && r->element[2]->str &&
               s->opt.on_message) {
        s->opt.on_message(s, r->element[1]->str, r->element[2]->str, r->element[2]->len,
                          s->opt.on_message_data);
    }
}

/* 1 unless opt.peer_pid names a pid and another process serves the socket (logged). */
static int peer_is_expected(fit_store *s)
{
    if (!s->opt.peer_pid)
        return 1;
    pid_t want = s->opt.peer_pid(s->opt.peer_pid_data);
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(s->ac->c.fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
        cred.pid = 0;
    if (want > 0 && cred.pid == want)
        return 1;
    snprintf(s->last_error, sizeof(s->last_error),
             "refusing Redis at %.60s: served by pid %ld, not by our redis-server (pid %ld)",
             s->connected_to, (long)cred.pid, (long)want);
    fprintf(stderr, "fitsync: %s\n", s->last_error);
    return 0;
}

static void connect_cb(const redisAsyncContext *ac, int status)
{
    fit_store *s = ac->data;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback returns. */
        snprintf(s->last_error, sizeof(s->last_error), "connect to %s: %.80s", s->connected_to,
                 ac->errstr);
        s->ac = NULL;
        if (s->state != FIT_STORE_CLOSED)
            set_state(s, FIT_STORE_DISCONNECTED);
        return;
    }
    if (!peer_is_expected(s)) {
        /* Not from inside hiredis's callback: the timer drops it (LOADING, drop_pending). */
        set_state(s, FIT_STORE_LOADING);
        s->drop_pending = 1;
        return;
    }
    if (s->opt.subscribe) {
        set_state(s, FIT_STORE_LOADING);
        char chans[256];
        const char *argv[9] = {"SUBSCRIBE"};
        int argc = 1;
        snprintf(chans, sizeof(chans), "%s", s->opt.subscribe);
        for (char *save = NULL, *c = strtok_r(chans, " ", &save); c && argc < 9;
             c = strtok_r(NULL, " ", &save))
            argv[argc++] = c;
        redisAsyncCommandArgv(s->ac, subscribe_cb, s, argc, argv, NULL);
        return;
    }
    if (!s->lua) {
        /* A plain connection (a cluster seed): nothing to load. */
        s->backoff_ms = 0;
        set_state(s, FIT_STORE_READY);
        return;
    }
    load_functions(s);
}

static void disconnect_cb(const redisAsyncContext *ac, int status)
{
    fit_store *s = ac->data;
    s->ac = NULL;
    s->reconnects++;
    if (status != REDIS_OK && !s->last_error[0])
        snprintf(s->last_error, sizeof(s->last_error), "Redis connection lost: %.80s", ac->errstr);
    if (s->state != FIT_STORE_CLOSED && s->state != FIT_STORE_DISCONNECTED)
        set_state(s, FIT_STORE_DISCONNECTED);
}

/* Drops the connection from outside hiredis callbacks; pending commands fail with reason. */
static void drop(fit_store *s, const char *reason)
{
    snprintf(s->last_error, sizeof(s->last_error), "%s", reason);
    redisAsyncContext *ac = s->ac;
    int was_connected = ac && (ac->c.flags & REDIS_CONNECTED);
    if (s->state != FIT_STORE_CLOSED)
        set_state(s, FIT_STORE_DISCONNECTED);
    if (ac) {
        s->ac = NULL;
        if (!was_connected)
            ac->onDisconnect = NULL;
        redisAsyncFree(ac);
    }
}

/* The address to try now: the whole option, or the next entry of a comma-separated list. */
static const char *pick_address(fit_store *s)
{
    const char *list = s->opt.address;
    unsigned n = 1;
    for (const char *p = list; *p; p++)
        n += *p == ',';
    unsigned want = s->next_address++ % n;
    const char *start = list;
    for (unsigned i = 0; i < want; i++)
        start = strchr(start, ',') + 1;
    size_t len = strcspn(start, ",");
    snprintf(s->connected_to, sizeof(s->connected_to), "%.*s", (int)len, start);
    return s->connected_to;
}

static void start_connect(fit_store *s)
{
    const char *a = pick_address(s);
    redisAsyncContext *ac;
    s->last_error[0] = '\0';
    if (a[0] == '/' || a[0] == '.') {
        ac = redisAsyncConnectUnix(a);
    } else {
        const char *hp = strncmp(a, "redis://", 8) == 0 ? a + 8 : a;
        char host[200];
        const char *colon = strrchr(hp, ':');
        int port = colon ? atoi(colon + 1) : 6379;
        size_t hl = colon ? (size_t)(colon - hp) : strlen(hp);
        snprintf(host, sizeof(host), "%.*s", (int)hl, hp);
        ac = redisAsyncConnect(host, port);
    }
    if (!ac || ac->err) {
        snprintf(s->last_error, sizeof(s->last_error), "connect to %s: %.80s", a,
                 ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        set_state(s, FIT_STORE_DISCONNECTED);
        return;
    }
    ac->data = s;
    if (glue_attach(ac, s->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        set_state(s, FIT_STORE_DISCONNECTED);
        return;
    }
    redisAsyncSetConnectCallback(ac, connect_cb);
    redisAsyncSetDisconnectCallback(ac, disconnect_cb);
    s->ac = ac;
    set_state(s, FIT_STORE_CONNECTING);
}

/*
 * 1 if Redis has answered and the bytes wait in our socket: then the loop is
 * behind (a connection storm keeps it busy), not Redis, and dropping the
 * connection would only turn a delay into failures.
 */
static int replies_waiting(const fit_store *s)
{
    int avail = 0;
    return s->ac && ioctl(s->ac->c.fd, FIONREAD, &avail) == 0 && avail > 0;
}

static void tick(uv_timer_t *t)
{
    fit_store *s = t->data;
    uint64_t now = uv_now(s->loop);
    switch (s->state) {
    case FIT_STORE_CONNECTING:
        if (now - s->state_since_ms > s->opt.connect_timeout_ms)
            drop(s, "connect timed out");
        break;
    case FIT_STORE_LOADING:
        if (s->drop_pending) {
            char why[sizeof(s->last_error)];
            snprintf(why, sizeof(why), "%s", s->last_error);
            s->drop_pending = 0;
            drop(s, why);
            break;
        }
        if (s->opt.subscribe && now - s->state_since_ms > s->opt.command_timeout_ms) {
            drop(s, "SUBSCRIBE not confirmed in time");
            break;
        }
        /* fall through */
    case FIT_STORE_READY:
        if (s->head && now - s->head->sent_ms > s->opt.command_timeout_ms && !replies_waiting(s))
            drop(s, "Redis command timed out");
        break;
    case FIT_STORE_DISCONNECTED:
        if (now - s->state_since_ms >= s->backoff_ms) {
            s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : BACKOFF_MIN_MS;
            if (s->backoff_ms > s->opt.reconnect_max_ms)
                s->backoff_ms = s->opt.reconnect_max_ms;
            start_connect(s);
        }
        break;
    case FIT_STORE_CLOSED:
        break;
    }
}

int fit_store_init(fit_store *s, uv_loop_t *loop, const fit_store_options *opt, const char *lua,
                   size_t lua_len)
{
    memset(s, 0, sizeof(*s));
    if (!opt->address[0])
        return FIT_EINVALID_VALUE;
    s->loop = loop;
    s->opt = *opt;
    if (!s->opt.connect_timeout_ms)
        s->opt.connect_timeout_ms = 2000;
    if (!s->opt.command_timeout_ms)
        s->opt.command_timeout_ms = 5000;
    if (!s->opt.reconnect_max_ms)
        s->opt.reconnect_max_ms = 5000;
    s->lua = lua;
    s->lua_len = lua_len;
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    uv_timer_start(&s->timer, tick, TICK_MS, TICK_MS);
    start_connect(s);
    return 0;
}

int fit_store_ready(const fit_store *s)
{
    return s->state == FIT_STORE_READY;
}

int fit_store_command(fit_store *s, fit_store_cb *cb, void *data, int argc, const char **argv,
                      const size_t *argvlen)
{
    if (s->state != FIT_STORE_READY || !s->ac || s->opt.subscribe)
        return FIT_EUNAVAILABLE;
    fit_store_req *r = calloc(1, sizeof(*r));
    if (!r)
        return FIT_ENOMEM;
    r->cb = cb;
    r->data = data;
    int rc = send_req(s, r, argc, argv, argvlen);
    if (rc)
        free(r);
    return rc;
}

struct close_ctx {
    fit_store *s;
    void (*on_closed)(fit_store *);
};

static void timer_closed_cb(uv_handle_t *h)
{
    struct close_ctx *c = h->data;
    fit_store *s = c->s;
    void (*on_closed)(fit_store *) = c->on_closed;
    free(c);
    s->timer.data = s;
    if (on_closed)
        on_closed(s);
}

void fit_store_close(fit_store *s, void (*on_closed)(fit_store *store))
{
    if (s->state == FIT_STORE_CLOSED)
        return;
    snprintf(s->last_error, sizeof(s->last_error), "closed");
    s->state = FIT_STORE_CLOSED;
    s->on_state = NULL;
    if (s->ac) {
        redisAsyncContext *ac = s->ac;
        s->ac = NULL;
        if (!(ac->c.flags & REDIS_CONNECTED))
            ac->onDisconnect = NULL;
        redisAsyncFree(ac);
    }
    uv_timer_stop(&s->timer);
    struct close_ctx *c = malloc(sizeof(*c));
    if (c) {
        c->s = s;
        c->on_closed = on_closed;
        s->timer.data = c;
        uv_close((uv_handle_t *)&s->timer, timer_closed_cb);
    } else {
        uv_close((uv_handle_t *)&s->timer, NULL);
    }
}
