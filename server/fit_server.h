/*
 * fit_server: the network edge. libwebsockets runs as a foreign-loop user
 * of our uv_loop_t; one protocol, "fitsync.v1", carries both the WebSocket
 * sessions and plain HTTP (GET /healthz) on the same port.
 *
 * Ownership: the server owns the config (borrowed from main), the store,
 * the embedded Redis child and every session. Sessions are reference
 * counted because Redis replies can arrive after the socket has closed: a
 * request in flight holds a reference, and a closed session only drops its
 * queue and forgets its wsi.
 */
#ifndef FIT_SERVER_H
#define FIT_SERVER_H

#include "fit_activity.h"
#include "fit_config.h"
#include "fit_http.h"
#include "fit_board_hub.h"
#include "fit_message.h"
#include "fit_metrics.h"
#include "fit_ops.h"
#include "fit_redis_child.h"
#include "fit_stats.h"
#include "fit_store.h"
#include "fit_token.h"

#include <libwebsockets.h>
#include <uthash.h>
#include <uv.h>

#define FIT_SUBPROTOCOL "fitsync.v1"

typedef struct fit_session fit_session;
typedef struct fit_server fit_server;

/* One queued outgoing frame: LWS_PRE bytes of headroom, then the payload. */
typedef struct fit_outmsg {
    struct fit_outmsg *next;
    size_t len;
    uint64_t queued_ms;           /* loop time when queued (a backlog's age) */
    char key[FIT_BOARD_NAME_MAX]; /* pushes of one board replace each other; "" = never */
    unsigned char buf[];
} fit_outmsg;

struct fit_session {
    fit_server *srv;
    struct lws *wsi; /* NULL once the connection has closed */
    uint64_t id;
    uint64_t opened_ms; /* loop time of the upgrade (the hello timeout counts from it) */
    int refs;
    int authed;
    fit_token_claims claims;
    char device_id[FIT_CLIENT_ID_MAX + 1];
    /* Reassembly of fragmented messages, bounded by max_message_bytes. */
    char *rx;
    size_t rx_len, rx_cap;
    int rx_overflow;
    /* Bounded send queue; only LWS_CALLBACK_SERVER_WRITEABLE writes. */
    fit_outmsg *qhead, *qtail;
    size_t qbytes;
    int nsubs;          /* leaderboard subscriptions */
    int board_reads;    /* leaderboard.subscribe reads in flight (fit_h_boards.c) */
    void *unsub_queue;  /* leaderboard.unsubscribe waiting for them, oldest first */
    double rate_tokens; /* token bucket (config rate.*) */
    uint64_t rate_last_ms;
    int rate_started;
    int close_after_flush;
    int close_sent;
    int stats_sub;                 /* staff: stats.subscribe */
    char stats_week[FIT_WEEK_LEN]; /* "" = the current week */
    char *stats_last;              /* the figures last sent */
    int close_code;
    char close_reason[64];
    fit_session *user_next, *user_prev; /* the user's other devices on this process */
    fit_session *all_next, *all_prev;   /* every open session of the server */
};

/* The connected devices of one user on this process. */
typedef struct {
    char user[65];
    fit_session *sessions;
    UT_hash_handle hh;
} fit_user_devices;

struct fit_server {
    uv_loop_t *loop;
    fit_config *cfg;
    char secret[256];
    struct lws_context *ctx;
    fit_store store;
    fit_ops ops; /* store + shards + change-log window + WHO targets, for workers/ calls */
    fit_board_hub hub;
    int have_hub;
    fit_stats_params stats;
    fit_metrics metrics;
    fit_http_table http; /* the HTTP routes (fit_h_http.c) */
    /* The dashboard's files and Chart.js (realpath'd; "" when absent). */
    char dashboard_dir[FIT_PATH_MAX], vendor_dir[FIT_PATH_MAX];
    uv_timer_t stats_timer, heartbeat_timer;
    int have_staff;
    fit_redis_child child;
    int have_child;
    fit_cluster cluster; /* redis.cluster set: the Redis Cluster client (no embedded Redis) */
    int have_cluster;
    char redis_address[512];
    uv_signal_t sigint, sigterm;
    uv_timer_t drain_timer;
    uv_timer_t sweep_timer; /* hello timeouts and expired tokens, every FIT_SWEEP_MS */
    uint64_t drain_started_ms;
    int stopping;
    int redis_outage_logged;
    uint64_t origin; /* this process's id in relayed pushes */
    uint64_t next_session_id;
    size_t inflight; /* requests waiting for Redis */
    size_t sessions;
    size_t devices; /* signed-in sessions (hello accepted): "connected devices" */
    fit_session *all_sessions;
    int closing_sessions;
    fit_user_devices *users;
};

/*
 * Starts everything on loop: the embedded Redis (unless an address is
 * configured), the store, lws and the signal handlers. Returns 0 or a
 * negative code with a message already printed. cfg is borrowed.
 */
int fit_server_start(fit_server *srv, uv_loop_t *loop, fit_config *cfg);

/* Begins a graceful stop (what SIGINT/SIGTERM do): answer what is in flight, then close. */
void fit_server_stop(fit_server *srv);

/* Second stage of lws's foreign-loop teardown, after uv_run has returned. */
void fit_server_destroy(fit_server *srv);

/* --- sessions (fit_session.c) --- */

fit_session *fit_session_new(fit_server *srv, struct lws *wsi);
void fit_session_ref(fit_session *s);
void fit_session_unref(fit_session *s);
/* The socket closed: drop the queue, leave the user's device list. */
void fit_session_closed(fit_session *s);
/*
 * Queues a message (borrowed; serialised here). A session whose queue would
 * exceed max_queue_bytes is closed with 1008 "send queue full". No-op once closed.
 */
void fit_session_send(fit_session *s, const json_t *msg);
/*
 * Like fit_session_send, for pushes that supersede each other: a message with
 * the same key still waiting in the queue is replaced in place (newest state
 * wins, DESIGN.md decision 6).
 */
void fit_session_send_keyed(fit_session *s, const json_t *msg, const char *key);
/* The same for a message already serialised (text borrowed); type is for the metrics. */
void fit_session_send_text(fit_session *s, const char *type, const char *text, size_t len,
                           const char *key);
/* Sends an error reply. */
void fit_session_send_error(fit_session *s, const char *re, int code, const char *field,
                            const char *message);
/* Closes the connection once the queue has been written, with a WebSocket close code. */
void fit_session_close_after_flush(fit_session *s, int code, const char *reason);
/* Writes one queued frame; called from LWS_CALLBACK_SERVER_WRITEABLE. Returns -1 to close. */
int fit_session_writeable(fit_session *s);
/* Appends a received fragment; dispatches the message when complete. Returns -1 to close. */
int fit_session_receive(fit_session *s, const void *in, size_t len, int final, int binary);
/* Joins the user's device list (after hello). */
void fit_session_attach_user(fit_session *s);
/* Calls fn for every connected device of user on this process. */
void fit_server_each_device(fit_server *srv, const char *user, void (*fn)(fit_session *, void *),
                            void *arg);

/*
 * Sends msg (borrowed) to every connected device of user except `from` (may
 * be NULL): on this process directly, and on every other fitsyncd through
 * Redis pub/sub (channel FIT_DEV_CHANNEL), so a member's phone and watch see
 * each other's changes whichever process each is connected to. A message of
 * type "account.deleted" also closes those connections.
 */
void fit_server_push_user(fit_server *srv, const char *user, fit_session *from, const json_t *msg);

#define FIT_DEV_CHANNEL "fit:dev"

/* WebSocket close code of a session whose token expired (application range 4000-4999). */
#define FIT_CLOSE_TOKEN_EXPIRED 4001
/* Subjects of marshal tokens minted by marshal.token: a namespace member tokens may not use. */
#define FIT_MARSHAL_PREFIX "marshal:"

/* Staff statistics (fit_staff.c): the push timer and the connected-devices heartbeat. */
void fit_staff_start(fit_server *srv);
void fit_staff_stop(fit_server *srv);

/* --- handlers (fit_handlers.c) --- */

/* Dispatches one complete text message of a session. */
void fit_handle_message(fit_session *s, const char *buf, size_t len);

#endif
