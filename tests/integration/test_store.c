/*
 * Integration tests of workers/ (fit_store, fit_ops and the Functions
 * library in workers/fitsync.lua) against a real redis-server that this test
 * starts in a temporary directory, kills and restarts (after hiredis's
 * test.sh). Nothing is mocked: every assertion reads what Redis holds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "harness.h"

#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[64];
static char sock[128];
static pid_t redis_pid;
static uv_loop_t loop;
static fit_store store;
static fit_who_targets who;
static fit_met_table met;
static fit_ops ops;

static void redis_start(void)
{
    static const char *const debug[] = {"--enable-debug-command", "yes", NULL};
    harness_redis_spawn(&redis_pid, tmpdir, sock, debug);
}

static void redis_stop(void)
{
    harness_redis_kill(redis_pid, sock);
}

static int run_until(const int *flag, int ms)
{
    return harness_run_until(&loop, flag, ms);
}

static void wait_ready(void)
{
    harness_wait_ready(&loop, &store);
}

static int setup(void **state)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/fitsync-store-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    snprintf(sock, sizeof(sock), "%s/redis.sock", tmpdir);
    redis_start();
    uv_loop_init(&loop);
    harness_store_open(&store, &loop, sock, 400, 500);
    harness_ops_init(&ops, &store, &who, &met);
    wait_ready();
    return 0;
}

static int closed_flag;
static void on_closed(fit_store *s)
{
    closed_flag = 1;
}

static int teardown(void **state)
{
    closed_flag = 0;
    fit_store_close(&store, on_closed);
    run_until(&closed_flag, 2000);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    redis_stop();
    fit_met_table_free(&met);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

/* ---- helpers that drive fit_ops synchronously ---- */

struct put_result {
    int done, err;
    char status[16];
    long long rev;
    int nweeks;
    char weeks[6][FIT_WEEK_LEN];
};

static void put_cb(const fit_change *c, void *data)
{
    struct put_result *r = data;
    r->err = c->err;
    snprintf(r->status, sizeof(r->status), "%s", c->status ? c->status : "");
    r->rev = c->rev;
    r->nweeks = c->nweeks;
    for (int i = 0; i < c->nweeks && i < 6; i++)
        snprintf(r->weeks[i], FIT_WEEK_LEN, "%s", c->weeks[i]);
    r->done = 1;
}

static fit_rules rules(void)
{
    fit_rules r = {0, 0, 600000, &met};
    int off;
    assert_int_equal(fit_time_parse("2026-03-20T00:00:00Z", &r.now_ms, &off), 0);
    return r;
}

static struct put_result put_activity(const char *user, const char *json)
{
    fit_activity a;
    fit_field_error fe;
    fit_rules r = rules();
    json_t *j = json_loads(json, 0, NULL);
    assert_non_null(j);
    int rc = fit_activity_parse(j, &r, &a, &fe);
    json_decref(j);
    if (rc)
        fail_msg("activity rejected: %s (%s)", fe.message, fe.field);
    struct put_result res = {0};
    assert_int_equal(fit_ops_activity_put(&ops, user, "dev", &a, put_cb, &res), 0);
    fit_activity_clear(&a);
    assert_true(run_until(&res.done, 3000));
    return res;
}

static struct put_result put_summary(const char *user, const char *json)
{
    fit_summary s;
    fit_field_error fe;
    fit_rules r = rules();
    json_t *j = json_loads(json, 0, NULL);
    assert_non_null(j);
    int rc = fit_summary_parse(j, &r, &s, &fe);
    json_decref(j);
    if (rc)
        fail_msg("summary rejected: %s (%s)", fe.message, fe.field);
    struct put_result res = {0};
    assert_int_equal(fit_ops_summary_put(&ops, user, "dev", &s, put_cb, &res), 0);
    fit_summary_clear(&s);
    assert_true(run_until(&res.done, 3000));
    return res;
}

struct week_result {
    int done, err;
    fit_week_status st;
};

static void week_cb(int err, const fit_week_status *st, size_t n, void *data)
{
    struct week_result *r = data;
    r->err = err;
    if (st && n == 1)
        r->st = *st;
    r->done = 1;
}

static fit_week_status get_week(const char *user, const char *week)
{
    int y, w;
    assert_int_equal(fit_iso_week_parse(week, &y, &w), 0);
    struct week_result r = {0};
    const char *weeks[1] = {week};
    assert_int_equal(fit_ops_weeks_get(&ops, user, weeks, 1, week_cb, &r), 0);
    assert_true(run_until(&r.done, 3000));
    assert_int_equal(r.err, 0);
    return r.st;
}

/* ---- tests ---- */

static void test_idempotent_upload(void **state)
{
    const char *run = "{\"client_id\":\"run-1\",\"type\":\"running\","
                      "\"start\":\"2026-03-03T07:00:00+08:00\",\"duration_s\":1800}";
    struct put_result r = put_activity("ana", run);
    assert_int_equal(r.err, 0);
    assert_string_equal(r.status, "created");
    assert_int_equal(r.nweeks, 1);
    assert_string_equal(r.weeks[0], "2026-W10");
    fit_week_status st = get_week("ana", "2026-W10");
    assert_int_equal(st.vigorous_min, 30);
    assert_int_equal(st.equivalent_min, 60);

    /* The same upload again (a phone retrying): acknowledged, counted once. */
    r = put_activity("ana", run);
    assert_int_equal(r.err, 0);
    assert_string_equal(r.status, "duplicate");
    assert_int_equal(r.nweeks, 0);
    st = get_week("ana", "2026-W10");
    assert_int_equal(st.vigorous_min, 30);

    /* Different content under a used client_id is a conflict, and changes nothing. */
    r = put_activity("ana", "{\"client_id\":\"run-1\",\"type\":\"running\","
                            "\"start\":\"2026-03-03T07:00:00+08:00\",\"duration_s\":3600}");
    assert_int_equal(r.err, FIT_ECONFLICT);
    st = get_week("ana", "2026-W10");
    assert_int_equal(st.vigorous_min, 30);
}

static void test_overlap_union(void **state)
{
    /* Phone: 07:00-08:00 moderate walk; watch: 07:30-08:15 vigorous run. */
    put_activity("ben", "{\"client_id\":\"phone-walk\",\"type\":\"walking\","
                        "\"start\":\"2026-03-04T07:00:00+08:00\",\"duration_s\":3600}");
    put_activity("ben", "{\"client_id\":\"watch-run\",\"type\":\"running\","
                        "\"start\":\"2026-03-04T07:30:00+08:00\",\"duration_s\":2700}");
    fit_week_status st = get_week("ben", "2026-W10");
    /* Union 07:00-08:15 = 75 min: 30 moderate, then 45 vigorous (vigorous wins the overlap). */
    assert_int_equal(st.moderate_min, 30);
    assert_int_equal(st.vigorous_min, 45);
    assert_int_equal(st.days[2].moderate_min, 30); /* Wednesday 2026-03-04 */
    /* A session wholly inside another of the same intensity adds nothing. */
    put_activity("ben", "{\"client_id\":\"dup-walk\",\"type\":\"walking\","
                        "\"start\":\"2026-03-04T07:10:00+08:00\",\"duration_s\":600}");
    st = get_week("ben", "2026-W10");
    assert_int_equal(st.moderate_min, 30);
    assert_int_equal(st.vigorous_min, 45);
}

static void test_summaries_out_of_order(void **state)
{
    const char *newer = "{\"date\":\"2026-03-05\",\"utc_offset\":\"+08:00\",\"source\":\"fitbit\","
                        "\"recorded_at\":\"2026-03-05T23:00:00+08:00\",\"moderate_min\":40,"
                        "\"vigorous_min\":10}";
    const char *older = "{\"date\":\"2026-03-05\",\"utc_offset\":\"+08:00\",\"source\":\"fitbit\","
                        "\"recorded_at\":\"2026-03-05T12:00:00+08:00\",\"moderate_min\":15,"
                        "\"vigorous_min\":0}";
    struct put_result r = put_summary("cat", newer);
    assert_string_equal(r.status, "applied");
    r = put_summary("cat", older);
    assert_string_equal(r.status, "stale");
    fit_week_status st = get_week("cat", "2026-W10");
    assert_int_equal(st.moderate_min, 40);
    assert_int_equal(st.vigorous_min, 10);
    r = put_summary("cat", newer);
    assert_string_equal(r.status, "duplicate");

    /* The other order ends in the same state. */
    r = put_summary("dan", older);
    assert_string_equal(r.status, "applied");
    r = put_summary("dan", newer);
    assert_string_equal(r.status, "applied");
    fit_week_status st2 = get_week("dan", "2026-W10");
    assert_int_equal(st2.moderate_min, st.moderate_min);
    assert_int_equal(st2.vigorous_min, st.vigorous_min);

    /* Sessions and the summary on one day combine as the larger per intensity, not the sum. */
    put_activity("dan", "{\"client_id\":\"swim\",\"type\":\"swimming\","
                        "\"start\":\"2026-03-05T18:00:00+08:00\",\"duration_s\":3000}");
    st2 = get_week("dan", "2026-W10");
    assert_int_equal(st2.moderate_min, 50); /* max(40, 50) */
    assert_int_equal(st2.vigorous_min, 10); /* max(10, 0) */
}

static void test_sunday_night_split(void **state)
{
    struct put_result r =
        put_activity("eve", "{\"client_id\":\"night\",\"type\":\"cycling\","
                            "\"start\":\"2026-03-08T23:30:00+08:00\",\"duration_s\":3600}");
    assert_string_equal(r.status, "created");
    assert_int_equal(r.nweeks, 2);
    fit_week_status w10 = get_week("eve", "2026-W10");
    fit_week_status w11 = get_week("eve", "2026-W11");
    assert_int_equal(w10.vigorous_min, 30);
    assert_int_equal(w10.days[6].vigorous_min, 30); /* Sunday */
    assert_int_equal(w11.vigorous_min, 30);
    assert_int_equal(w11.days[0].vigorous_min, 30); /* Monday */
}

static void restart_redis(void)
{
    redis_stop();
    redis_start(); /* a new, empty Redis: no Functions until the store loads them again */
}

static void test_function_reload_after_restart(void **state)
{
    put_activity("fay", "{\"client_id\":\"a\",\"type\":\"running\","
                        "\"start\":\"2026-03-03T07:00:00+08:00\",\"duration_s\":600}");
    restart_redis();
    /* Until the store notices, commands fail with an error (never a silent success). */
    for (int i = 0; i < 40; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(5000);
    }
    wait_ready();
    struct put_result r =
        put_activity("fay", "{\"client_id\":\"b\",\"type\":\"running\","
                            "\"start\":\"2026-03-03T08:00:00+08:00\",\"duration_s\":600}");
    assert_int_equal(r.err, 0);
    assert_string_equal(r.status, "created");
    assert_true(store.reconnects >= 1);
}

static void test_command_timeout(void **state)
{
    /* Another client blocks Redis for longer than command_timeout_ms (400 ms). */
    pid_t pid;
    char *argv[] = {"redis-cli", "-s", sock, "DEBUG", "SLEEP", "1.5", NULL};
    assert_int_equal(posix_spawnp(&pid, "redis-cli", NULL, NULL, argv, environ), 0);
    usleep(200000);
    fit_activity a;
    fit_field_error fe;
    fit_rules rl = rules();
    json_t *j = json_loads("{\"client_id\":\"slow\",\"type\":\"running\","
                           "\"start\":\"2026-03-03T09:00:00+08:00\",\"duration_s\":60}",
                           0, NULL);
    assert_int_equal(fit_activity_parse(j, &rl, &a, &fe), 0);
    json_decref(j);
    struct put_result r = {0};
    int rc = fit_ops_activity_put(&ops, "gus", "dev", &a, put_cb, &r);
    fit_activity_clear(&a);
    assert_int_equal(rc, 0);
    assert_true(run_until(&r.done, 3000));
    assert_int_equal(r.err, FIT_EUNAVAILABLE);
    waitpid(pid, NULL, 0);
    /* The store reconnects by itself and works again. */
    wait_ready();
    struct put_result r2 =
        put_activity("gus", "{\"client_id\":\"after\",\"type\":\"running\","
                            "\"start\":\"2026-03-03T10:00:00+08:00\",\"duration_s\":60}");
    assert_int_equal(r2.err, 0);
}

static void test_unavailable_is_immediate(void **state)
{
    redis_stop();
    for (int i = 0; i < 100 && fit_store_ready(&store); i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(5000);
    }
    assert_false(fit_store_ready(&store));
    const char *argv[] = {"PING"};
    assert_int_equal(fit_store_command(&store, NULL, NULL, 1, argv, NULL), FIT_EUNAVAILABLE);
    redis_start();
    wait_ready();
}

/*
 * opt.peer_pid: a store refuses a Unix socket served by any pid but the one
 * it expects (issue 19: fitsyncd must never talk to a Redis it did not start),
 * and connects once the expected pid is the one serving.
 */
static pid_t expected_peer;
static pid_t expected_peer_pid(void *data)
{
    return *(pid_t *)data;
}

static void test_refuses_unexpected_peer(void **state)
{
    fit_store other;
    fit_store_options o;
    memset(&o, 0, sizeof(o));
    snprintf(o.address, sizeof(o.address), "%s", sock);
    o.reconnect_max_ms = 100;
    o.peer_pid = expected_peer_pid;
    o.peer_pid_data = &expected_peer;
    expected_peer = getpid(); /* not the redis-server serving the socket */
    assert_int_equal(fit_store_init(&other, &loop, &o, fit_functions_lua, fit_functions_lua_len),
                     0);
    for (int i = 0; i < 200; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(5000);
        assert_false(fit_store_ready(&other));
    }
    assert_non_null(strstr(other.last_error, "refusing Redis"));
    expected_peer = redis_pid;
    for (int i = 0; i < 400 && !fit_store_ready(&other); i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(5000);
    }
    assert_true(fit_store_ready(&other));
    closed_flag = 0;
    fit_store_close(&other, on_closed);
    run_until(&closed_flag, 2000);
    assert_true(closed_flag);
}

static void test_shards(void **state)
{
    char k1[FIT_KEY_MAX], k2[FIT_KEY_MAX];
    fit_user_key(k1, 1, "ana", "p");
    assert_string_equal(k1, "fit:{s0}:u:ana/p");
    fit_user_key(k2, 4, "ana", "p");
    assert_int_equal(strncmp(k2, "fit:{s", 6), 0);
    assert_true(fit_shard_of("ana", 4) < 4);
    /* FNV-1a of "a" is 0xe40c292c; mod 4 = 0, mod 7 = 0xe40c292c % 7. */
    assert_int_equal(fit_shard_of("a", 4), 0xe40c292cu % 4);
    assert_int_equal(fit_shard_of("a", 7), 0xe40c292cu % 7);
}

/* ---- issue 3: edits, deletes, the change log ---- */

static fit_activity parse_activity(const char *json)
{
    fit_activity a;
    fit_field_error fe;
    fit_rules r = rules();
    json_t *j = json_loads(json, 0, NULL);
    assert_non_null(j);
    int rc = fit_activity_parse(j, &r, &a, &fe);
    json_decref(j);
    if (rc)
        fail_msg("activity rejected: %s (%s)", fe.message, fe.field);
    return a;
}

static struct put_result update_activity(const char *user, long long base_rev, const char *json)
{
    fit_activity a = parse_activity(json);
    struct put_result res = {0};
    assert_int_equal(fit_ops_activity_update(&ops, user, "dev", base_rev, &a, put_cb, &res), 0);
    fit_activity_clear(&a);
    assert_true(run_until(&res.done, 3000));
    return res;
}

static struct put_result delete_activity(const char *user, const char *cid, long long base_rev)
{
    struct put_result res = {0};
    assert_int_equal(fit_ops_activity_delete(&ops, user, "dev", cid, base_rev, put_cb, &res), 0);
    assert_true(run_until(&res.done, 3000));
    return res;
}

static void test_update_and_delete_recompute(void **state)
{
    const char *v1 = "{\"client_id\":\"w\",\"type\":\"walking\","
                     "\"start\":\"2026-03-03T07:00:00+08:00\",\"duration_s\":3600}";
    put_activity("hal", v1);
    put_activity("hal", "{\"client_id\":\"r\",\"type\":\"running\","
                        "\"start\":\"2026-03-03T07:30:00+08:00\",\"duration_s\":1800}");
    fit_week_status st = get_week("hal", "2026-W10");
    assert_int_equal(st.moderate_min, 30);
    assert_int_equal(st.vigorous_min, 30);

    /* Edit the walk to end at 07:30: the union shrinks to 60 minutes. */
    struct put_result r =
        update_activity("hal", 1,
                        "{\"client_id\":\"w\",\"type\":\"walking\","
                        "\"start\":\"2026-03-03T07:00:00+08:00\",\"duration_s\":1800}");
    assert_int_equal(r.err, 0);
    assert_string_equal(r.status, "updated");
    assert_int_equal(r.rev, 2);
    st = get_week("hal", "2026-W10");
    assert_int_equal(st.moderate_min, 30);
    assert_int_equal(st.vigorous_min, 30);

    /* The same edit again (a retry) is a duplicate; an edit on a stale rev is a conflict. */
    r = update_activity("hal", 1,
                        "{\"client_id\":\"w\",\"type\":\"walking\","
                        "\"start\":\"2026-03-03T07:00:00+08:00\",\"duration_s\":1800}");
    assert_string_equal(r.status, "duplicate");
    r = update_activity("hal", 1,
                        "{\"client_id\":\"w\",\"type\":\"walking\","
                        "\"start\":\"2026-03-03T07:00:00+08:00\",\"duration_s\":600}");
    assert_int_equal(r.err, FIT_ECONFLICT);
    assert_int_equal(r.rev, 2);

    /* Moving the walk to the next week recomputes both weeks. */
    r = update_activity("hal", 2,
                        "{\"client_id\":\"w\",\"type\":\"walking\","
                        "\"start\":\"2026-03-10T07:00:00+08:00\",\"duration_s\":1800}");
    assert_int_equal(r.err, 0);
    assert_int_equal(r.nweeks, 2);
    st = get_week("hal", "2026-W10");
    assert_int_equal(st.moderate_min, 0);
    assert_int_equal(st.vigorous_min, 30);
    assert_int_equal(get_week("hal", "2026-W11").moderate_min, 30);

    /* Delete the run: the week is what remains, not what was. */
    r = delete_activity("hal", "r", 2);
    assert_int_equal(r.err, FIT_ECONFLICT);
    r = delete_activity("hal", "r", 1);
    assert_string_equal(r.status, "deleted");
    assert_int_equal(r.rev, 2);
    assert_int_equal(get_week("hal", "2026-W10").vigorous_min, 0);
    r = delete_activity("hal", "r", -1);
    assert_string_equal(r.status, "duplicate");
    r = delete_activity("hal", "never", -1);
    assert_int_equal(r.err, FIT_ENOT_FOUND);

    /* Re-uploading a deleted client_id (a late retry) does not resurrect it. */
    struct put_result again = put_activity("hal", "{\"client_id\":\"r\",\"type\":\"running\","
                                                  "\"start\":\"2026-03-03T07:30:00+08:00\","
                                                  "\"duration_s\":1800}");
    assert_string_equal(again.status, "deleted");
    assert_int_equal(get_week("hal", "2026-W10").vigorous_min, 0);
}

struct pull_result {
    int done, err, more;
    char next[FIT_CURSOR_MAX];
    json_t *changes;
};

static void pull_cb(int err, json_t *changes, const char *next, int more, void *data)
{
    struct pull_result *r = data;
    r->err = err;
    r->more = more;
    if (next)
        snprintf(r->next, sizeof(r->next), "%s", next);
    r->changes = changes ? json_incref(changes) : NULL;
    r->done = 1;
}

static struct pull_result pull(const char *user, const char *cursor, int limit)
{
    struct pull_result r = {0};
    assert_int_equal(fit_ops_sync_pull(&ops, user, cursor, limit, pull_cb, &r), 0);
    assert_true(run_until(&r.done, 3000));
    return r;
}

static void test_change_log(void **state)
{
    put_activity("ivy", "{\"client_id\":\"a\",\"type\":\"running\","
                        "\"start\":\"2026-03-03T07:00:00+08:00\",\"duration_s\":600}");
    update_activity("ivy", 1,
                    "{\"client_id\":\"a\",\"type\":\"running\","
                    "\"start\":\"2026-03-03T07:00:00+08:00\",\"duration_s\":900}");
    put_summary("ivy", "{\"date\":\"2026-03-04\",\"utc_offset\":\"+08:00\",\"source\":\"band\","
                       "\"recorded_at\":\"2026-03-04T20:00:00+08:00\",\"moderate_min\":5,"
                       "\"vigorous_min\":0}");
    delete_activity("ivy", "a", -1);

    struct pull_result p = pull("ivy", "0-0", 3);
    assert_int_equal(p.err, 0);
    assert_int_equal(json_array_size(p.changes), 3);
    assert_true(p.more);
    json_t *c0 = json_array_get(p.changes, 0), *c2 = json_array_get(p.changes, 2);
    assert_string_equal(json_string_value(json_object_get(c0, "op")), "upsert");
    assert_int_equal(json_integer_value(json_object_get(c0, "rev")), 1);
    assert_string_equal(json_string_value(json_object_get(c2, "kind")), "summary");
    assert_string_equal(json_string_value(json_object_get(c2, "id")), "2026-03-04|band");
    json_decref(p.changes);

    struct pull_result q = pull("ivy", p.next, 100);
    assert_int_equal(json_array_size(q.changes), 1);
    assert_false(q.more);
    json_t *d = json_array_get(q.changes, 0);
    assert_string_equal(json_string_value(json_object_get(d, "op")), "delete");
    assert_null(json_object_get(d, "item"));
    json_decref(q.changes);

    /* At the head: nothing more, same cursor back. */
    struct pull_result e = pull("ivy", q.next, 100);
    assert_int_equal(json_array_size(e.changes), 0);
    assert_string_equal(e.next, q.next);
    json_decref(e.changes);

    /* A cursor from before the window is refused; so is one never issued. */
    struct pull_result old = pull("ivy", "1000-0", 10);
    assert_int_equal(old.err, FIT_ERESYNC_REQUIRED);
    struct pull_result future = pull("ivy", "99999999999999-0", 10);
    assert_int_equal(future.err, FIT_EINVALID_VALUE);
}

static int deleted_done;
static long long deleted_keys;
static void deleted_cb(int err, long long n, void *data)
{
    deleted_keys = err ? -1 : n;
    deleted_done = 1;
}

static void test_account_delete_leaves_nothing(void **state)
{
    put_activity("joe", "{\"client_id\":\"a\",\"type\":\"running\","
                        "\"start\":\"2026-03-08T23:30:00+08:00\",\"duration_s\":3600}");
    put_summary("joe", "{\"date\":\"2026-03-04\",\"utc_offset\":\"+08:00\",\"source\":\"band\","
                       "\"recorded_at\":\"2026-03-04T20:00:00+08:00\",\"moderate_min\":5,"
                       "\"vigorous_min\":0}");
    put_activity("kim", "{\"client_id\":\"a\",\"type\":\"running\","
                        "\"start\":\"2026-03-08T23:30:00+08:00\",\"duration_s\":3600}");
    deleted_done = 0;
    assert_int_equal(fit_ops_account_delete(&ops, "joe", deleted_cb, NULL), 0);
    assert_true(run_until(&deleted_done, 3000));
    assert_true(deleted_keys > 5);
    /* SCAN the whole keyspace for anything of joe's; kim's data stays. */
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "redis-cli -s %s --scan --pattern '*:u:joe/*' | wc -l", sock);
    FILE *f = popen(cmd, "r");
    int n = -1;
    assert_int_equal(fscanf(f, "%d", &n), 1);
    pclose(f);
    assert_int_equal(n, 0);
    assert_int_equal(get_week("kim", "2026-W10").vigorous_min, 30);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shards),
        cmocka_unit_test_setup_teardown(test_idempotent_upload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overlap_union, setup, teardown),
        cmocka_unit_test_setup_teardown(test_summaries_out_of_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sunday_night_split, setup, teardown),
        cmocka_unit_test_setup_teardown(test_function_reload_after_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_command_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unavailable_is_immediate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_unexpected_peer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_update_and_delete_recompute, setup, teardown),
        cmocka_unit_test_setup_teardown(test_change_log, setup, teardown),
        cmocka_unit_test_setup_teardown(test_account_delete_leaves_nothing, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
