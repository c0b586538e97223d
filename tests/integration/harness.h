/*
 * What the integration tests of workers/ share: a real redis-server started in
 * a temporary directory on a Unix socket (after hiredis's test.sh), a store on
 * a private loop, and fit_ops with the reference tables of config/. Include
 * after cmocka.h: the helpers assert (cmocka) instead of returning errors.
 */
#ifndef FIT_TEST_HARNESS_H
#define FIT_TEST_HARNESS_H

#include "fit_ops.h"

#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;
extern const char fit_functions_lua[];
extern const size_t fit_functions_lua_len;

/*
 * Starts redis-server in dir on the Unix socket sock (no TCP, no persistence)
 * with extra arguments (NULL-terminated, may be NULL) and waits for the socket.
 */
static inline void harness_redis_spawn(pid_t *pid, const char *dir, const char *sock,
                                       const char *const *extra)
{
    const char *argv[40] = {
        "redis-server", "--port", "0",           "--unixsocket", sock,    "--save", "",
        "--appendonly", "no",     "--daemonize", "no",           "--dir", dir,      "--loglevel",
        "warning"};
    size_t n = 15;
    for (size_t i = 0; extra && extra[i] && n < 39; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    assert_int_equal(posix_spawnp(pid, "redis-server", NULL, NULL, (char **)argv, environ), 0);
    for (int i = 0; i < 200 && access(sock, F_OK) != 0; i++)
        usleep(10000);
    assert_int_equal(access(sock, F_OK), 0);
}

/* Kills it (SIGKILL), reaps it and removes its socket. */
static inline void harness_redis_kill(pid_t pid, const char *sock)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    unlink(sock);
}

/* Runs loop until *flag is set or ms pass. Returns *flag. */
static inline int harness_run_until(uv_loop_t *loop, const int *flag, int ms)
{
    for (int i = 0; i < ms / 5 && !*flag; i++) {
        uv_run(loop, UV_RUN_NOWAIT);
        usleep(5000);
    }
    return *flag;
}

/* Runs loop until store is READY (Functions loaded), 5 s at most. */
static inline void harness_wait_ready(uv_loop_t *loop, fit_store *store)
{
    for (int i = 0; i < 1000 && !fit_store_ready(store); i++) {
        uv_run(loop, UV_RUN_NOWAIT);
        usleep(5000);
    }
    assert_true(fit_store_ready(store));
}

/* Opens store on loop to the socket with these deadlines (ms) and the Functions library. */
static inline void harness_store_open(fit_store *store, uv_loop_t *loop, const char *sock,
                                      uint32_t command_timeout_ms, uint32_t connect_timeout_ms)
{
    fit_store_options o;
    memset(&o, 0, sizeof(o));
    snprintf(o.address, sizeof(o.address), "%s", sock);
    o.command_timeout_ms = command_timeout_ms;
    o.connect_timeout_ms = connect_timeout_ms;
    o.reconnect_max_ms = 200;
    assert_int_equal(fit_store_init(store, loop, &o, fit_functions_lua, fit_functions_lua_len), 0);
}

static inline json_t *harness_load_config(const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", FITSYNC_CONFIG_DIR, name);
    json_t *j = json_load_file(path, 0, NULL);
    assert_non_null(j);
    return j;
}

/*
 * fit_ops on store: one shard, a 56-day change log, config/who.json (into
 * who) and config/met.json (into met; free with fit_met_table_free), the
 * README's age bands, and boards kept long enough for the tests' fixed dates.
 */
static inline void harness_ops_init(fit_ops *ops, fit_store *store, fit_who_targets *who,
                                    fit_met_table *met)
{
    char err[256];
    json_t *j = harness_load_config("who.json");
    assert_int_equal(fit_who_targets_load(who, j, err, sizeof(err)), 0);
    json_decref(j);
    j = harness_load_config("met.json");
    assert_int_equal(fit_met_table_load(met, j, err, sizeof(err)), 0);
    json_decref(j);
    ops->redis.store = store;
    ops->shards = 1;
    ops->window_ms = 56LL * 86400000;
    ops->who = who;
    fit_ops_who_json(who, ops->who_json, sizeof(ops->who_json));
    snprintf(ops->age_bands, sizeof(ops->age_bands),
             "5-17:5:17,18-34:18:34,35-49:35:49,50-64:50:64,65+:65:");
    ops->board_keep_weeks = 520;
}

#endif
