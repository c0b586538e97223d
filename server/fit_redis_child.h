/*
 * fit_redis_child: the embedded Redis (DESIGN.md decision 1).
 *
 * When no Redis address is configured, fitsyncd runs `redis-server` as a
 * supervised child: config from config/redis.conf, a Unix socket and the AOF
 * in the data directory, no TCP port. If the child dies it is restarted
 * after a short backoff (and counted); fit_redis_child_stop sends SIGTERM,
 * which makes Redis flush its AOF and exit, and waits for it.
 */
#ifndef FIT_REDIS_CHILD_H
#define FIT_REDIS_CHILD_H

#include <stdint.h>
#include <uv.h>

typedef struct fit_redis_child {
    uv_loop_t *loop;
    uv_process_t proc;
    uv_timer_t restart_timer;
    char bin[512], conf[512], dir[512], sock[108];
    int running;    /* the process handle is live */
    int stopping;   /* stopped for good */
    int no_restart; /* shutting down: an exit is not restarted */
    uint64_t restarts;
    uint32_t backoff_ms;
    void (*on_stopped)(struct fit_redis_child *child);
} fit_redis_child;

/*
 * Starts redis-server (bin, found on PATH if not absolute) with conf, its
 * working directory and socket in data_dir (absolute). The socket path is
 * written to child->sock. Returns 0, FIT_EINVALID_VALUE (path too long for a
 * Unix socket) or FIT_EIO (spawn failed, e.g. redis-server not installed).
 */
int fit_redis_child_start(fit_redis_child *child, uv_loop_t *loop, const char *bin,
                          const char *conf, const char *data_dir);

/*
 * Shutdown has begun: if the child exits now (a terminal's Ctrl-C reaches the
 * whole process group, Redis included), it is not restarted.
 */
void fit_redis_child_no_restart(fit_redis_child *child);

/* Stops the child for good; on_stopped (may be NULL) runs once every handle is closed. */
void fit_redis_child_stop(fit_redis_child *child, void (*on_stopped)(fit_redis_child *child));

#endif
