/*
 * fit_store: fitsync's one connection to Redis (hiredis async on our libuv loop).
 *
 * Shape after h2o's include/h2o/redis.h: a state machine
 *   DISCONNECTED -> CONNECTING -> LOADING (FUNCTION LOAD REPLACE) -> READY
 * with a connect timeout, a per-command timeout, and reconnect with
 * exponential backoff. hiredis 0.14 (Debian 12) has no async timeouts, so
 * the store keeps its own FIFO of commands in flight (Redis answers in order)
 * and, when the oldest has waited longer than command_timeout_ms, drops the
 * connection: every pending callback then runs with reply NULL and an error
 * string, and the store reconnects. The Functions library is loaded on every
 * (re)connect, so a Redis that restarted empty is usable again at once.
 *
 * A store made with opt.subscribe set is a pub/sub connection instead: it
 * loads nothing, SUBSCRIBEs to those channels on every (re)connect (so it
 * resubscribes by itself after a Redis restart), is READY once Redis has
 * confirmed, and hands each message to opt.on_message. It takes no commands.
 *
 * Callbacks: fit_store_cb(reply, errstr, data). Exactly one of reply and
 * errstr is non-NULL. reply is borrowed (hiredis frees it after the callback).
 * An error reply from Redis (REDIS_REPLY_ERROR) is passed as reply.
 */
#ifndef FIT_STORE_H
#define FIT_STORE_H

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <uv.h>

typedef enum {
    FIT_STORE_DISCONNECTED = 0,
    FIT_STORE_CONNECTING,
    FIT_STORE_LOADING,
    FIT_STORE_READY,
    FIT_STORE_CLOSED
} fit_store_state;

typedef void fit_store_cb(redisReply *reply, const char *errstr, void *data);

typedef struct fit_store_req fit_store_req;

struct fit_store;

typedef struct {
    /*
     * "redis://host:port", "host:port" or a Unix socket path; or several
     * "host:port" separated by commas, tried in turn, one per (re)connect
     * attempt (a Redis Cluster's nodes for the pub/sub connection: a cluster
     * delivers every PUBLISH to subscribers on any node).
     */
    char address[256];
    const char *subscribe; /* pub/sub mode: channels, space-separated (static string), else NULL */
    /* pub/sub mode: one published message (channel and payload borrowed for the call). */
    void (*on_message)(struct fit_store *store, const char *channel, const char *payload,
                       size_t len, void *data);
    void *on_message_data;
    uint32_t connect_timeout_ms; /* default 2000 */
    uint32_t command_timeout_ms; /* default 5000 */
    uint32_t reconnect_max_ms;   /* backoff ceiling, default 5000 */
    /*
     * Unix sockets only, may be NULL: the pid that must be serving the
     * socket (checked with SO_PEERCRED on every connect; 0 = none yet). A
     * connection to any other process is dropped before a command is sent,
     * so fitsyncd never talks to a Redis it did not start (issue 19).
     */
    pid_t (*peer_pid)(void *data);
    void *peer_pid_data;
} fit_store_options;

typedef struct fit_store {
    uv_loop_t *loop;
    fit_store_options opt;
    fit_store_state state;
    redisAsyncContext *ac;
    uv_timer_t timer; /* connect/command timeouts and reconnect backoff */
    uint32_t backoff_ms;
    uint64_t state_since_ms;
    fit_store_req *head, *tail; /* commands in flight, oldest first */
    size_t pending;
    /* Called when the store becomes READY (after each (re)load) and when it loses Redis. */
    void (*on_state)(struct fit_store *store, fit_store_state state, void *data);
    void *on_state_data;
    const char *lua;
    size_t lua_len;
    char last_error[128];
    uint64_t reconnects;    /* connections lost since start */
    unsigned next_address;  /* with a list of addresses: the one to try next */
    char connected_to[256]; /* the address of the current (or last) connection */
    /* Command latency (send to reply), for /metrics: counts per bucket, and the sum. */
    uint64_t lat_buckets[12];
    uint64_t lat_count;
    double lat_sum_s;
    int close_pending;
    int drop_pending; /* FUNCTION LOAD failed or the wrong peer: the timer drops and reconnects */
} fit_store;

/*
 * Initialises the store on loop and starts connecting. lua/lua_len is the
 * Functions library source (borrowed; must outlive the store), loaded on
 * every (re)connect; NULL for a plain connection that loads nothing (READY
 * once connected). Returns 0 or FIT_EINVALID_VALUE (bad address).
 */
int fit_store_init(fit_store *store, uv_loop_t *loop, const fit_store_options *opt, const char *lua,
                   size_t lua_len);

/*
 * Sends a command given as argv (binary-safe; argvlen may be NULL for C
 * strings). Returns 0 and later calls cb exactly once, or returns
 * FIT_EUNAVAILABLE at once when the store is not READY (cb is then never
 * called; libuv's rule).
 */
int fit_store_command(fit_store *store, fit_store_cb *cb, void *data, int argc, const char **argv,
                      const size_t *argvlen);

/* 1 if commands are accepted now. */
int fit_store_ready(const fit_store *store);

/*
 * Stops the store: pending callbacks run with errstr "closed", the timer is
 * closed, and on_closed (may be NULL) runs from the loop when the last handle
 * has closed. The struct must stay valid until then.
 */
void fit_store_close(fit_store *store, void (*on_closed)(fit_store *store));

/* Writes the command latency histogram in the Prometheus text format. */
void fit_store_latency_write(const fit_store *store, FILE *f);

/* Logical shard of a user or event id: FNV-1a 32-bit of the id, mod shards (DESIGN.md decision 3).
 */
unsigned fit_shard_of(const char *id, unsigned shards);

#endif
