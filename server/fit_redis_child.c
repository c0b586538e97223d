/*
 * fit_redis_child: uv_spawn, exit callback, restart with backoff.
 */
#include "fit_redis_child.h"
#include "fit_error.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#define RESTART_MIN_MS 200
#define RESTART_MAX_MS 5000

static int spawn(fit_redis_child *c);

static void maybe_done(fit_redis_child *c)
{
    if (c->stopping && !c->running && !uv_is_active((uv_handle_t *)&c->restart_timer) &&
        c->on_stopped) {
        void (*cb)(fit_redis_child *) = c->on_stopped;
        c->on_stopped = NULL;
        cb(c);
    }
}

static void restart_timer_closed(uv_handle_t *h)
{
    maybe_done(h->data);
}

static void proc_closed(uv_handle_t *h)
{
    fit_redis_child *c = h->data;
    c->running = 0;
    if (c->stopping)
        uv_close((uv_handle_t *)&c->restart_timer, restart_timer_closed);
}

static void restart_cb(uv_timer_t *t)
{
    fit_redis_child *c = t->data;
    if (!c->stopping && !c->no_restart && !c->running && spawn(c) != 0)
        uv_timer_start(&c->restart_timer, restart_cb, c->backoff_ms, 0);
}

static void exit_cb(uv_process_t *p, int64_t status, int sig)
{
    fit_redis_child *c = p->data;
    if (!c->stopping && !c->no_restart) {
        fprintf(stderr,
                "fitsyncd: embedded redis-server exited (status %lld, signal %d); "
                "restarting in %u ms\n",
                (long long)status, sig, c->backoff_ms);
        c->restarts++;
        uv_timer_start(&c->restart_timer, restart_cb, c->backoff_ms, 0);
        c->backoff_ms = c->backoff_ms * 2 > RESTART_MAX_MS ? RESTART_MAX_MS : c->backoff_ms * 2;
    }
    uv_close((uv_handle_t *)p, proc_closed);
}

static int spawn(fit_redis_child *c)
{
    char *args[] = {c->bin,  c->conf, "--unixsocket", c->sock, "--port", "0",
                    "--dir", c->dir,  "--daemonize",  "no",    NULL};
    uv_stdio_container_t stdio[3] = {{.flags = UV_IGNORE},
                                     {.flags = UV_INHERIT_FD, .data.fd = 2},
                                     {.flags = UV_INHERIT_FD, .data.fd = 2}};
    uv_process_options_t opt;
    memset(&opt, 0, sizeof(opt));
    opt.file = c->bin;
    opt.args = args;
    opt.exit_cb = exit_cb;
    opt.stdio = stdio;
    opt.stdio_count = 3;
    opt.cwd = c->dir;
    c->proc.data = c;
    int rc = uv_spawn(c->loop, &c->proc, &opt);
    if (rc != 0) {
        fprintf(stderr,
                "fitsyncd: cannot start %s: %s (install redis-server or set redis.address)\n",
                c->bin, uv_strerror(rc));
        /* uv_spawn leaves the handle initialised on failure; it must still be closed. */
        c->running = 1;
        uv_close((uv_handle_t *)&c->proc, proc_closed);
        return FIT_EIO;
    }
    c->running = 1;
    return 0;
}

int fit_redis_child_start(fit_redis_child *c, uv_loop_t *loop, const char *bin, const char *conf,
                          const char *data_dir)
{
    memset(c, 0, sizeof(*c));
    c->loop = loop;
    c->backoff_ms = RESTART_MIN_MS;
    if (snprintf(c->sock, sizeof(c->sock), "%s/redis.sock", data_dir) >= (int)sizeof(c->sock))
        return FIT_EINVALID_VALUE;
    snprintf(c->bin, sizeof(c->bin), "%s", bin);
    snprintf(c->conf, sizeof(c->conf), "%s", conf);
    snprintf(c->dir, sizeof(c->dir), "%s", data_dir);
    uv_timer_init(loop, &c->restart_timer);
    c->restart_timer.data = c;
    int rc = spawn(c);
    if (rc != 0) {
        c->stopping = 1;
        return rc;
    }
    return 0;
}

void fit_redis_child_no_restart(fit_redis_child *c)
{
    c->no_restart = 1;
}

void fit_redis_child_stop(fit_redis_child *c, void (*on_stopped)(fit_redis_child *child))
{
    c->on_stopped = on_stopped;
    if (c->stopping) {
        maybe_done(c);
        return;
    }
    c->stopping = 1;
    uv_timer_stop(&c->restart_timer);
    if (c->running && !uv_is_closing((uv_handle_t *)&c->proc))
        uv_process_kill(&c->proc, SIGTERM);
    else if (!c->running)
        uv_close((uv_handle_t *)&c->restart_timer, restart_timer_closed);
}
