/*
 * fit_redis_child: the embedded Redis (DESIGN.md decision 1).
 *
 * When no Redis address is configured, fitsyncd runs `redis-server` as a
 * supervised child: config from config/redis.conf, a Unix socket and the AOF
 * in the data directory, no TCP port.
 *
 * One Redis per data directory, ever. Several redis-server processes
 * appending to one AOF directory lose acknowledged data (issue 19: a killed
 * fitsyncd left its Redis running, re-parented to PID 1, and the next
 * fitsyncd started a second one on the same directory). So:
 *
 *  - fitsyncd holds an exclusive flock(2) on DATA_DIR/fitsyncd.lock for its
 *    whole life; a second fitsyncd on the directory refuses to start and
 *    names the pid that holds it. The lock is close-on-exec: Redis never
 *    holds it, so it is free the moment fitsyncd dies.
 *  - The child is forked by hand (not uv_spawn) so that, before exec, it can
 *    ask the kernel for SIGTERM when its parent dies (prctl
 *    PR_SET_PDEATHSIG) and check that its parent is still the process that
 *    forked it (if fitsyncd died in between, the child exits at once).
 *    SIGTERM, not SIGKILL: Redis then writes and fsyncs its AOF and exits.
 *  - Before starting its own Redis, fitsyncd (holding the lock) stops any
 *    redis-server still serving the directory, found by three ways: the pid
 *    recorded in DATA_DIR/redis.pid, the peer of DATA_DIR/redis.sock
 *    (SO_PEERCRED), and any redis-server whose working directory is the
 *    data directory (the AOF directory). Each gets SIGTERM and up to
 *    FIT_REDIS_ORPHAN_WAIT_MS to finish writing its AOF, then SIGKILL.
 *  - fit_redis_child_pid tells the store which pid must be on the other end
 *    of the socket; the store refuses any other peer.
 *
 * Supervision: if the child dies it is restarted after a backoff that starts
 * at FIT_REDIS_RESTART_MIN_MS and doubles on every quick death up to
 * FIT_REDIS_RESTART_MAX_MS; a child that ran for FIT_REDIS_HEALTHY_MS or
 * longer resets it, so one crash after a healthy hour costs the first step
 * again. fit_redis_child_stop sends SIGTERM and waits for the exit.
 */
#ifndef FIT_REDIS_CHILD_H
#define FIT_REDIS_CHILD_H

#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

/* Restart backoff (milliseconds): first step, ceiling, and the uptime after which it resets. */
#define FIT_REDIS_RESTART_MIN_MS 200
#define FIT_REDIS_RESTART_MAX_MS 5000
#define FIT_REDIS_HEALTHY_MS 10000
/* How long a leftover redis-server on the data directory gets to exit after SIGTERM (ms). */
#define FIT_REDIS_ORPHAN_WAIT_MS 15000

typedef struct fit_redis_child {
    uv_loop_t *loop;
    uv_signal_t sigchld;
    uv_timer_t restart_timer;
    char bin[512], conf[512], dir[512], sock[108], pidfile[560];
    pid_t pid;      /* the running child, 0 when none */
    int lock_fd;    /* DATA_DIR/fitsyncd.lock, held with flock(LOCK_EX); -1 when not held */
    int handles;    /* uv handles initialised and not yet closed */
    int stopping;   /* stopped for good */
    int no_restart; /* shutting down: an exit is not restarted */
    uint64_t started_ms;
    uint64_t restarts;
    uint32_t backoff_ms;
    void (*on_stopped)(struct fit_redis_child *child);
} fit_redis_child;

/*
 * Claims data_dir (absolute; it must be writable) for this process, stops any redis-server left
 * serving it, and starts redis-server (bin, found on PATH if not absolute)
 * with conf, its working directory and socket in data_dir. The socket path is
 * written to child->sock. Blocks for at most FIT_REDIS_ORPHAN_WAIT_MS plus a
 * little while a leftover Redis finishes its AOF. Returns 0,
 * FIT_EINVALID_VALUE (path too long for a Unix socket), FIT_ECONFLICT
 * (another live fitsyncd holds the directory; its pid is printed) or FIT_EIO
 * (lock file, leftover Redis that would not die, or redis-server not
 * installed). Errors are printed to stderr. On failure, call
 * fit_redis_child_stop to close what was opened.
 */
int fit_redis_child_start(fit_redis_child *child, uv_loop_t *loop, const char *bin,
                          const char *conf, const char *data_dir);

/* The pid of the running redis-server child, or 0 while there is none (between restarts). */
pid_t fit_redis_child_pid(const fit_redis_child *child);

/*
 * Shutdown has begun: if the child exits now (a terminal's Ctrl-C reaches the
 * whole process group, Redis included), it is not restarted.
 */
void fit_redis_child_no_restart(fit_redis_child *child);

/*
 * Stops the child for good (SIGTERM, then waits for its exit) and releases
 * the data directory's lock; on_stopped (may be NULL) runs once every handle
 * is closed.
 */
void fit_redis_child_stop(fit_redis_child *child, void (*on_stopped)(fit_redis_child *child));

#endif
