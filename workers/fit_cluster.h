/*
 * fit_cluster: fitsync's Redis Cluster client (issue 14): slot routing over
 * hiredis async on our libuv loop, which Debian's hiredis 0.14 lacks.
 *
 * Shape: one plain fit_store per seed (only to ask CLUSTER SLOTS), one
 * fit_store per primary (each loads the Functions library on every
 * (re)connect, so a primary that appears after a failover or a reshard has
 * the library before it serves a call), and a table of the 16,384 slots
 * naming each slot's primary. A command names its key; it goes to the
 * primary of the key's slot (fit_slot.h, hash tags honoured).
 *
 * Redirections and faults (Redis Cluster specification):
 *  - MOVED slot host:port: the slot now lives there. The table entry is
 *    fixed at once, the whole map is asked for again, and the command is
 *    sent to the new primary. Safe for every command: a MOVED command was not
 *    executed.
 *  - ASK slot host:port: the slot is migrating and this key is already on
 *    the target. ASKING and the command are sent to the target, one after
 *    the other on its connection; the table is not changed.
 *  - TRYAGAIN, CLUSTERDOWN, no primary known for the slot, a primary not yet
 *    connected: the command waits and is tried again every RETRY_MS, up to
 *    the store's command_timeout_ms in all. Nothing was executed, so this is
 *    safe for every command.
 *  - The connection fails with the command in flight: Redis may or may not
 *    have executed it. Only a command sent as idempotent (fitsync's uploads
 *    are, by client_id; reads are) is sent again; any other gets the error.
 *  - Durability at failover: replication is asynchronous, so a primary lost
 *    right after a write can lose it. A command sent as durable is answered
 *    only after WAIT wait_replicas wait_timeout_ms, on the same connection,
 *    confirms that many replicas have every write before it; fewer in time
 *    answers the error "replicas did not confirm" (the write may still be
 *    there: a client resends, and idempotency makes that safe).
 * At most FIT_CLUSTER_MAX_REDIRECTS redirections per command (then an error).
 */
#ifndef FIT_CLUSTER_H
#define FIT_CLUSTER_H

#include "fit_slot.h"
#include "fit_store.h"

/* Flags of fit_cluster_command (fit_redis.h names them FIT_REDIS_*). */
#define FIT_CLUSTER_IDEMPOTENT 1
#define FIT_CLUSTER_DURABLE 2

#define FIT_CLUSTER_MAX_NODES 64
#define FIT_CLUSTER_MAX_REDIRECTS 5

typedef struct fit_cluster_node {
    char addr[64]; /* "host:port" */
    fit_store store;
    int live;    /* store initialised and not closing */
    int primary; /* owns at least one slot in the last map */
} fit_cluster_node;

typedef struct fit_cluster {
    uv_loop_t *loop;
    fit_store_options opt; /* template for every connection (address filled per node) */
    const char *lua;
    size_t lua_len;
    fit_store seeds[8];
    int nseeds;
    fit_cluster_node *nodes[FIT_CLUSTER_MAX_NODES];
    int nnodes;
    unsigned char slot_node[FIT_CLUSTER_SLOTS]; /* index into nodes + 1; 0 = unknown */
    uv_timer_t timer;                           /* retries and map refreshes */
    struct fit_cluster_req *waiting;            /* commands to try again, oldest first */
    int refresh_wanted, refresh_inflight;
    uint64_t last_refresh_ms;
    uint64_t maps;        /* slot maps applied */
    uint64_t redirects;   /* MOVED and ASK followed */
    uint64_t retries;     /* commands sent again (TRYAGAIN, CLUSTERDOWN, lost connections) */
    uint64_t waits_short; /* durable writes that fewer than wait_replicas replicas confirmed */
    int wait_replicas;    /* replicas a durable write waits for (0 = none); set after init */
    uint32_t wait_timeout_ms;
    int closing, handles;
    void (*on_closed)(struct fit_cluster *c);
    /* Called (from the timer) when fit_cluster_ready changes; may be NULL. */
    void (*on_state)(struct fit_cluster *c, int ready, void *data);
    void *on_state_data;
    int was_ready;
} fit_cluster;

/*
 * Starts a cluster client: seeds is "host:port,host:port,..." (1..8 seeds);
 * opt is the template of every connection's settings (timeouts); lua/lua_len
 * is the Functions library (borrowed, must outlive the client), loaded on
 * every primary. Returns 0 or FIT_EINVALID_VALUE (no seed, a malformed seed,
 * more than 8).
 */
int fit_cluster_init(fit_cluster *c, uv_loop_t *loop, const char *seeds,
                     const fit_store_options *opt, const char *lua, size_t lua_len);

/*
 * Sends a command whose key (len bytes; decides the slot) is key, given as
 * argv (binary-safe, copied: the caller's arrays may go at once). flags:
 * FIT_REDIS_IDEMPOTENT (fit_redis.h: sending it twice is harmless, so it is
 * resent after a lost connection), FIT_REDIS_DURABLE (confirmed by WAIT
 * before cb, see above). cb runs exactly once, from the loop, with Redis's reply
 * (an error reply other than a redirection is passed as reply) or with
 * errstr. Returns 0, or FIT_EUNAVAILABLE (closing) / FIT_ENOMEM and cb is
 * never called.
 */
int fit_cluster_command(fit_cluster *c, const char *key, size_t keylen, int flags, fit_store_cb *cb,
                        void *data, int argc, const char **argv, const size_t *argvlen);

/* 1 when every slot has a primary whose connection is ready (Functions loaded). */
int fit_cluster_ready(const fit_cluster *c);

/* The command latency histogram summed over the primaries' connections (Prometheus text). */
void fit_cluster_latency_write(const fit_cluster *c, FILE *f);

/* Connections to primaries lost since start, summed over the nodes (for /metrics). */
uint64_t fit_cluster_reconnects(const fit_cluster *c);

/* Asks for the slot map again (after a failover seen from outside, say). */
void fit_cluster_refresh(fit_cluster *c);

/*
 * Closes every connection; waiting commands get errstr "closed". on_closed
 * (may be NULL) runs from the loop once every handle is closed; the struct
 * must stay valid until then.
 */
void fit_cluster_close(fit_cluster *c, void (*on_closed)(fit_cluster *c));

#endif
