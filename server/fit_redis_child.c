/*
 * fit_redis_child: the data directory's lock, leftover Redis processes,
 * fork + exec with a parent-death signal, SIGCHLD, restart with backoff.
 * The design and its reasons are in fit_redis_child.h.
 */
#define _GNU_SOURCE /* pipe2, struct ucred */
#include "fit_redis_child.h"
#include "fit_error.h"
#include "fit_log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int spawn(fit_redis_child *c);

/* ---- the data directory's lock ---- */

static int lock_dir(fit_redis_child *c)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/fitsyncd.lock", c->dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        fit_log(FIT_LOG_ERROR, "cannot open %s: %s", path, strerror(errno));
        return FIT_EIO;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char buf[32] = "";
        ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
        buf[n > 0 ? n : 0] = '\0';
        buf[strcspn(buf, "\n")] = '\0';
        fit_log(FIT_LOG_ERROR,
                "data_dir %s is in use by another fitsyncd (pid %s); stop it, or "
                "give this one another --data-dir",
                c->dir, buf[0] ? buf : "unknown");
        close(fd);
        return FIT_ECONFLICT;
    }
    char pid[32];
    int len = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len)
        fit_log(FIT_LOG_WARN, "cannot write the pid into %s", path);
    c->lock_fd = fd;
    return 0;
}

/* ---- leftover redis-server processes on the directory ---- */

/* 1 if pid is a live (not zombie) redis-server whose working directory is dir. */
static int serves_dir(pid_t pid, const char *dir)
{
    char p[64], buf[600];
    snprintf(p, sizeof(p), "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(p, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* "pid (comm) S ...": comm may hold spaces and parentheses; the state follows the last ')'. */
    const char *rp = strrchr(buf, ')');
    const char *lp = strchr(buf, '(');
    if (!rp || !lp || rp[1] != ' ' || rp[2] == 'Z' || rp[2] == 'X')
        return 0;
    if (strncmp(lp + 1, "redis-server", 12) != 0 && strncmp(lp + 1, "redis-check", 11) != 0)
        return 0;
    snprintf(p, sizeof(p), "/proc/%ld/cwd", (long)pid);
    ssize_t m = readlink(p, buf, sizeof(buf) - 1);
    if (m <= 0)
        return 0;
    buf[m] = '\0';
    return strcmp(buf, dir) == 0;
}

/* The pid serving the Unix socket at path (SO_PEERCRED), or 0 if nothing answers there. */
static pid_t socket_peer(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return 0;
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    pid_t pid = 0;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        struct ucred cred;
        socklen_t len = sizeof(cred);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
            pid = cred.pid;
    }
    close(fd);
    return pid;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Waits up to ms for pid to stop serving dir (exit, or become a zombie). 1 if it did. */
static int wait_gone(pid_t pid, const char *dir, uint64_t ms)
{
    uint64_t until = mono_ms() + ms;
    while (serves_dir(pid, dir)) {
        if (mono_ms() >= until)
            return 0;
        struct timespec ts = {0, 20 * 1000000};
        nanosleep(&ts, NULL);
    }
    return 1;
}

/*
 * Every pid that may be a redis-server on dir: the pid file, the socket's
 * peer, and a scan of /proc for processes whose working directory is dir.
 * Fills up to max pids (duplicates removed); returns the count.
 */
static int find_leftovers(const fit_redis_child *c, pid_t *pids, int max)
{
    int n = 0;
    pid_t cand[3] = {0, 0, 0};
    FILE *f = fopen(c->pidfile, "r");
    if (f) {
        long v = 0;
        if (fscanf(f, "%ld", &v) == 1 && v > 1)
            cand[0] = (pid_t)v;
        fclose(f);
    }
    cand[1] = socket_peer(c->sock);
    for (int i = 0; i < 2; i++)
        if (cand[i] > 1 && cand[i] != getpid() && n < max)
            pids[n++] = cand[i];
    DIR *d = opendir("/proc");
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        char *end;
        long v = strtol(e->d_name, &end, 10);
        if (*end || v <= 1 || (pid_t)v == getpid() || n >= max)
            continue;
        int seen = 0;
        for (int i = 0; i < n; i++)
            seen |= pids[i] == (pid_t)v;
        if (!seen && serves_dir((pid_t)v, c->dir))
            pids[n++] = (pid_t)v;
    }
    if (d)
        closedir(d);
    return n;
}

/*
 * Stops every redis-server still serving the directory: SIGTERM (it writes
 * and fsyncs its AOF), up to FIT_REDIS_ORPHAN_WAIT_MS, then SIGKILL (what
 * it had written is in the kernel's page cache and survives). A pid that is
 * not a redis-server on this directory (the pid file is stale and the pid
 * reused, say) is left alone.
 */
static int stop_leftovers(const fit_redis_child *c)
{
    pid_t pids[16];
    int n = find_leftovers(c, pids, 16);
    for (int i = 0; i < n; i++) {
        if (!serves_dir(pids[i], c->dir)) {
            /* Something serving our socket that is no redis-server of ours: never talk to it. */
            if (socket_peer(c->sock) == pids[i]) {
                fit_log(FIT_LOG_ERROR,
                        "%s is served by pid %ld, which is not a redis-server on %s; "
                        "stop it first",
                        c->sock, (long)pids[i], c->dir);
                return FIT_EIO;
            }
            continue;
        }
        fit_log(FIT_LOG_WARN,
                "redis-server pid %ld was left running on %s (by an earlier "
                "fitsyncd); stopping it before starting our own",
                (long)pids[i], c->dir);
        kill(pids[i], SIGTERM);
        if (wait_gone(pids[i], c->dir, FIT_REDIS_ORPHAN_WAIT_MS))
            continue;
        fit_log(FIT_LOG_WARN, "redis-server pid %ld ignored SIGTERM for %d ms; killing it",
                (long)pids[i], FIT_REDIS_ORPHAN_WAIT_MS);
        kill(pids[i], SIGKILL);
        if (!wait_gone(pids[i], c->dir, 5000)) {
            fit_log(FIT_LOG_ERROR, "redis-server pid %ld on %s will not die", (long)pids[i],
                    c->dir);
            return FIT_EIO;
        }
    }
    return 0;
}

/* ---- the child ---- */

static void write_pidfile(const fit_redis_child *c)
{
    char tmp[600];
    snprintf(tmp, sizeof(tmp), "%s.tmp", c->pidfile);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%ld\n", (long)c->pid) < 0 || fclose(f) != 0 || rename(tmp, c->pidfile)) {
        fit_log(FIT_LOG_WARN, "cannot write %s: %s", c->pidfile, strerror(errno));
        if (f)
            unlink(tmp);
    }
}

static void maybe_done(fit_redis_child *c)
{
    if (c->stopping && c->pid == 0 && c->handles == 0 && c->on_stopped) {
        void (*cb)(fit_redis_child *) = c->on_stopped;
        c->on_stopped = NULL;
        cb(c);
    }
}

static void handle_closed(uv_handle_t *h)
{
    fit_redis_child *c = h->data;
    c->handles--;
    maybe_done(c);
}

/* The child is gone and nothing will restart it: close the handles, release the lock. */
static void finish(fit_redis_child *c)
{
    uv_timer_stop(&c->restart_timer);
    if (c->lock_fd >= 0) {
        unlink(c->pidfile);
        close(c->lock_fd); /* releases the flock */
        c->lock_fd = -1;
    }
    if (!uv_is_closing((uv_handle_t *)&c->sigchld))
        uv_close((uv_handle_t *)&c->sigchld, handle_closed);
    if (!uv_is_closing((uv_handle_t *)&c->restart_timer))
        uv_close((uv_handle_t *)&c->restart_timer, handle_closed);
}

static void restart_cb(uv_timer_t *t)
{
    fit_redis_child *c = t->data;
    if (c->stopping || c->no_restart || c->pid)
        return;
    /* Whatever the dead child forked (an AOF rewrite) must not outlive it on our directory. */
    if (stop_leftovers(c) != 0 || spawn(c) != 0)
        uv_timer_start(&c->restart_timer, restart_cb, c->backoff_ms, 0);
}

static void child_exited(fit_redis_child *c, int status)
{
    uint64_t up = uv_now(c->loop) - c->started_ms;
    c->pid = 0;
    if (c->stopping) {
        finish(c);
        return;
    }
    if (c->no_restart)
        return;
    if (up >= FIT_REDIS_HEALTHY_MS)
        c->backoff_ms = FIT_REDIS_RESTART_MIN_MS;
    fit_log(FIT_LOG_WARN, "embedded redis-server exited (%s %d) after %llu ms; restarting in %u ms",
            WIFSIGNALED(status) ? "signal" : "status",
            WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), (unsigned long long)up,
            c->backoff_ms);
    c->restarts++;
    uv_timer_start(&c->restart_timer, restart_cb, c->backoff_ms, 0);
    c->backoff_ms =
        c->backoff_ms * 2 > FIT_REDIS_RESTART_MAX_MS ? FIT_REDIS_RESTART_MAX_MS : c->backoff_ms * 2;
}

static void sigchld_cb(uv_signal_t *h, int signum)
{
    fit_redis_child *c = h->data;
    int status;
    if (c->pid > 0 && waitpid(c->pid, &status, WNOHANG) == c->pid)
        child_exited(c, status);
}

/* bin on PATH (execv needs a path; looked up before fork so a missing binary is reported here). */
static int resolve_bin(const char *bin, char *out, size_t n)
{
    if (strchr(bin, '/')) {
        snprintf(out, n, "%s", bin);
        return access(out, X_OK) == 0 ? 0 : -1;
    }
    const char *path = getenv("PATH");
    for (const char *p = path ? path : "/usr/local/bin:/usr/bin:/bin"; *p;) {
        size_t len = strcspn(p, ":");
        snprintf(out, n, "%.*s/%s", (int)len, p, bin);
        if (len && access(out, X_OK) == 0)
            return 0;
        p += len + (p[len] == ':');
    }
    return -1;
}

static int spawn(fit_redis_child *c)
{
    char exe[600];
    if (resolve_bin(c->bin, exe, sizeof(exe)) != 0) {
        fit_log(FIT_LOG_ERROR,
                "cannot start %s: not found (install redis-server or set "
                "redis.address)",
                c->bin);
        return FIT_EIO;
    }
    char *args[] = {exe,     c->conf, "--unixsocket", c->sock, "--port", "0",
                    "--dir", c->dir,  "--daemonize",  "no",    NULL};
    int report[2]; /* the child's exec error, if any; closed by a successful exec */
    if (pipe2(report, O_CLOEXEC) != 0)
        return FIT_EIO;
    /*
     * As uv_spawn does: every signal blocked across fork, so that none of our
     * handlers (libuv's, which write to the loop's pipe) can run in the child
     * before exec; the child resets every disposition, then unblocks.
     */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        fit_log(FIT_LOG_ERROR, "cannot fork: %s", strerror(errno));
        close(report[0]);
        close(report[1]);
        return FIT_EIO;
    }
    if (pid == 0) {
        /* The child: only async-signal-safe calls until exec. */
        int err = 0;
        for (int sig = 1; sig < NSIG; sig++)
            signal(sig, SIG_DFL);
        /*
         * A process group of its own: a terminal's Ctrl-C (SIGINT to the whole
         * foreground group) reaches fitsyncd only, which then stops Redis
         * cleanly with SIGTERM after answering what is in flight. Redis given
         * SIGINT twice would exit without flushing ("You insist").
         */
        setpgid(0, 0);
        if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0)
            err = errno;
        else if (getppid() != parent)
            _exit(0); /* fitsyncd died before the line above: nobody to serve */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        int null = open("/dev/null", O_RDONLY);
        if (!err && (null < 0 || dup2(null, 0) < 0 || dup2(2, 1) < 0 || chdir(c->dir) != 0))
            err = errno;
        if (!err) {
            execv(exe, args);
            err = errno;
        }
        ssize_t w = write(report[1], &err, sizeof(err));
        (void)w;
        _exit(127);
    }
    close(report[1]);
    int err = 0;
    ssize_t n;
    do
        n = read(report[0], &err, sizeof(err));
    while (n < 0 && errno == EINTR);
    close(report[0]);
    if (n == (ssize_t)sizeof(err) && err) {
        fit_log(FIT_LOG_ERROR, "cannot start %s: %s", exe, strerror(err));
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
        }
        return FIT_EIO;
    }
    c->pid = pid;
    c->started_ms = uv_now(c->loop);
    write_pidfile(c);
    return 0;
}

int fit_redis_child_start(fit_redis_child *c, uv_loop_t *loop, const char *bin, const char *conf,
                          const char *data_dir)
{
    memset(c, 0, sizeof(*c));
    c->loop = loop;
    c->lock_fd = -1;
    c->backoff_ms = FIT_REDIS_RESTART_MIN_MS;
    uv_signal_init(loop, &c->sigchld);
    uv_timer_init(loop, &c->restart_timer);
    c->sigchld.data = c->restart_timer.data = c;
    c->handles = 2;
    if (snprintf(c->sock, sizeof(c->sock), "%s/redis.sock", data_dir) >= (int)sizeof(c->sock))
        return FIT_EINVALID_VALUE;
    snprintf(c->bin, sizeof(c->bin), "%s", bin);
    snprintf(c->conf, sizeof(c->conf), "%s", conf);
    snprintf(c->dir, sizeof(c->dir), "%s", data_dir);
    snprintf(c->pidfile, sizeof(c->pidfile), "%s/redis.pid", data_dir);
    if (access(data_dir, W_OK | X_OK) != 0) {
        /* Redis would fail to bind its socket there on every restart, forever. */
        fit_log(FIT_LOG_ERROR,
                "data_dir %s is not writable (%s): the embedded Redis keeps its socket and AOF "
                "there",
                data_dir, strerror(errno));
        return FIT_EIO;
    }
    int rc = lock_dir(c);
    if (rc == 0)
        rc = stop_leftovers(c);
    if (rc == 0)
        rc = uv_signal_start(&c->sigchld, sigchld_cb, SIGCHLD) == 0 ? 0 : FIT_EIO;
    if (rc == 0)
        rc = spawn(c);
    return rc;
}

pid_t fit_redis_child_pid(const fit_redis_child *c)
{
    return c->pid;
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
    if (c->pid > 0)
        kill(c->pid, SIGTERM); /* SIGCHLD then finishes */
    else
        finish(c);
}
