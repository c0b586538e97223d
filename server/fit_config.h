/*
 * fit_config: fitsyncd's configuration.
 *
 * Three layers, later ones winning: the JSON file (--config, default
 * config/fitsync.json beside the sources), environment variables (key "a.b"
 * is overridden by FITSYNC_A_B, e.g. FITSYNC_MAX_AGE_WEEKS=0 or
 * FITSYNC_TOKEN_SECRET), and command-line flags (--port, --redis,
 * --data-dir). Every key, its type and its range are listed once in the
 * table in fit_config.c (the schema); a key the schema does not know, a value
 * of the wrong type or out of range stops start-up with a message that names
 * the key. So does a FITSYNC_* environment variable that names no setting,
 * unless it is one the test harness itself uses (not_settings in
 * fit_config.c); the message names the nearest setting if one is close. Paths inside the file
 * (redis.conf, who_targets, met_table) are relative to the file's own directory; data_dir is
 * relative to the working directory.
 */
#ifndef FIT_CONFIG_H
#define FIT_CONFIG_H

#include "fit_board.h"
#include "fit_met.h"
#include "fit_who.h"

#include <limits.h>
#include <stddef.h>
#include <stdio.h>

#define FIT_PATH_MAX 512
/* Room for this many schema keys (fit_config.c asserts the schema fits). */
#define FIT_CONFIG_KEYS_MAX 48

typedef struct {
    char config_path[FIT_PATH_MAX];
    char config_dir[FIT_PATH_MAX];
    char host[64];
    int port;
    char data_dir[FIT_PATH_MAX];
    char redis_address[256]; /* "" = start the embedded redis-server */
    char redis_server[FIT_PATH_MAX];
    char redis_conf[FIT_PATH_MAX];
    char redis_cluster[256];   /* "host:port,host:port": run on a Redis Cluster; "" = not */
    int redis_wait_replicas;   /* cluster: replicas a write waits for (WAIT) before its ack */
    int redis_wait_timeout_ms; /* cluster: how long WAIT waits */
    int redis_connect_timeout_ms, redis_command_timeout_ms, redis_reconnect_max_ms;
    int shards;
    char token_secret[256];
    int max_message_bytes; /* bytes of one WebSocket message after reassembly */
    int max_batch;         /* items per upload batch */
    int max_age_weeks;     /* acceptance window; 0 = unlimited */
    int future_tolerance_s;
    int max_queue_bytes;     /* per-connection send queue bound */
    int hello_timeout_ms;    /* a connection without hello (and no spectator subscription) closes */
    int sync_window_days;    /* how long the change log keeps entries (cursors stay valid) */
    int rate_messages_per_s; /* token bucket refill per connection */
    int rate_burst;          /* token bucket size */
    char timezone[8];        /* the programme's UTC offset, "+08:00" */
    int timezone_offset_min;
    char districts_file[FIT_PATH_MAX];
    char age_bands_file[FIT_PATH_MAX];
    int boards_tick_ms;           /* how often dirty boards are read and pushed */
    int boards_keep_weeks;        /* weeks whose boards are kept (older ones expire) */
    int boards_max_subscriptions; /* per connection */
    int stats_k;                  /* staff figures counting fewer members are shown as "<k" */
    char web_dir[FIT_PATH_MAX];   /* the dashboard's files (web/), relative to the config dir */
    char who_targets[FIT_PATH_MAX];
    char met_table[FIT_PATH_MAX];
    char log_level[16];      /* error, warn, notice, info or debug (fit_log.h) */
    int http_max_body_bytes; /* largest HTTP request body read; more is answered 413 */
    int demo_token;          /* --demo-token: print a member token at start */
    /* Where each schema key's value came from: "default", "file PATH",
     * "environment FITSYNC_X" or "flag --x" (schema order). */
    char source[FIT_CONFIG_KEYS_MAX][FIT_PATH_MAX + 16];
    /* Loaded reference tables (owned). */
    fit_who_targets who;
    fit_met_table met;
    fit_board_tables boards;
} fit_config;

/*
 * Loads the configuration from argv/environment/file as described above,
 * then the WHO targets and MET table it names. Returns 0; 1 if --help or
 * --check-config printed what was asked (exit 0); or a negative FIT_E*
 * code with a message naming the key (or variable) in err. Free with
 * fit_config_free, except after 1 (nothing is held then).
 */
int fit_config_load(fit_config *cfg, int argc, char **argv, char *err, size_t errlen);

/* Prints every key's effective value and where it came from (token.secret not shown). */
void fit_config_print(const fit_config *cfg, FILE *out);
void fit_config_free(fit_config *cfg);

/* Resolves a path relative to the config file's directory into out (FIT_PATH_MAX). */
void fit_config_path(const fit_config *cfg, const char *rel, char *out);

/*
 * The token secret, found the same way by fitsyncd and the tools: the given
 * configured secret (config token.secret or FITSYNC_TOKEN_SECRET) if
 * non-empty, else <data_dir>/token.secret. With create set and no file, a
 * random 256-bit secret is generated (OpenSSL RAND_bytes) and written there
 * with mode 0600. Returns 0 or FIT_EIO with a message in err.
 */
int fit_secret_find(const char *configured, const char *data_dir, int create, char *out,
                    size_t outlen, char *err, size_t errlen);

/* mkdir -p with mode 0700. Returns 0 or FIT_EIO. */
int fit_mkdirs(const char *path);

#endif
