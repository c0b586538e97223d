/*
 * The cost of an upload does not grow with the member's history (issue 11,
 * DESIGN.md "Cost per unit of work"). Against a real redis-server that this
 * test starts, it builds a heavy member (56 days x 30 sessions a day, a daily
 * summary, a profile on two boards, 10 challenges of which 8 have ended) and a
 * new member, then counts the Redis commands one upload costs from INFO
 * commandstats, which counts the commands a Function runs as well as the
 * FCALL itself. Counts, not times: the test cannot be flaky on a busy machine.
 *
 * The budget, COMMANDS_PER_UPLOAD, is the target (15), FCALL included.
 *
 * It also measures Redis used_memory per member-day at rest (a day with one
 * summary and two sessions, after fit_fold), against the target of 600 bytes,
 * and checks that folding keeps every figure and what export owes the member.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "harness.h"

#include <hiredis/hiredis.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define COMMANDS_PER_UPLOAD 15
#define HISTORY_DAYS 56
#define SESSIONS_PER_DAY 30

static char tmpdir[64];
static char sock[128];
static pid_t redis_pid;
static uv_loop_t loop;
static fit_store store;
static fit_who_targets who;
static fit_met_table met;
static fit_ops ops;
static redisContext *cli; /* a plain synchronous client, for INFO and direct calls */

static int setup(void **state)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/fitsync-cost-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    snprintf(sock, sizeof(sock), "%s/redis.sock", tmpdir);
    /* The listpack limits are config/redis.conf's: memory is measured as deployed. */
    static const char *const listpack[] = {"--hash-max-listpack-entries", "256",
                                           "--hash-max-listpack-value", "4096", NULL};
    harness_redis_spawn(&redis_pid, tmpdir, sock, listpack);
    uv_loop_init(&loop);
    harness_store_open(&store, &loop, sock, 5000, 2000);
    harness_ops_init(&ops, &store, &who, &met);
    harness_wait_ready(&loop, &store);
    cli = redisConnectUnix(sock);
    assert_non_null(cli);
    assert_int_equal(cli->err, 0);
    return 0;
}

static int closed_flag;
static void on_closed(fit_store *s)
{
    closed_flag = 1;
}

static int teardown(void **state)
{
    redisFree(cli);
    fit_store_close(&store, on_closed);
    harness_run_until(&loop, &closed_flag, 2000);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    harness_redis_kill(redis_pid, sock);
    fit_met_table_free(&met);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

/* ---- driving fit_ops: many calls in flight, then wait for all ---- */

struct batch {
    int sent, done, failed;
    char last_status[16];
};

static void put_cb(const fit_change *c, void *data)
{
    struct batch *b = data;
    b->done++;
    if (c->err)
        b->failed++;
    snprintf(b->last_status, sizeof(b->last_status), "%s", c->status ? c->status : "");
}

static void wait_batch(struct batch *b)
{
    for (int i = 0; i < 200000 && b->done < b->sent; i++)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(b->done, b->sent);
    assert_int_equal(b->failed, 0);
}

static fit_rules rules(void)
{
    fit_rules r = {0, 0, 600000, &met};
    int off;
    assert_int_equal(fit_time_parse("2026-03-21T00:00:00+08:00", &r.now_ms, &off), 0);
    return r;
}

static void send_activity(struct batch *b, const char *user, const char *json)
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
    assert_int_equal(fit_ops_activity_put(&ops, user, "dev", &a, put_cb, b), 0);
    fit_activity_clear(&a);
    b->sent++;
}

static void send_summary(struct batch *b, const char *user, const char *date, int mo)
{
    char json[512];
    snprintf(json, sizeof(json),
             "{\"date\":\"%s\",\"utc_offset\":\"+08:00\",\"source\":\"fitbit\","
             "\"recorded_at\":\"%sT23:00:00+08:00\",\"moderate_min\":%d,\"vigorous_min\":5,"
             "\"steps\":8000}",
             date, date, mo);
    fit_summary s;
    fit_field_error fe;
    fit_rules r = rules();
    json_t *j = json_loads(json, 0, NULL);
    assert_non_null(j);
    int rc = fit_summary_parse(j, &r, &s, &fe);
    json_decref(j);
    if (rc)
        fail_msg("summary rejected: %s (%s)", fe.message, fe.field);
    assert_int_equal(fit_ops_summary_put(&ops, user, "dev", &s, put_cb, b), 0);
    fit_summary_clear(&s);
    b->sent++;
}

struct week_read {
    int done;
    fit_week_status *out;
};

static void week_cb(int err, const fit_week_status *st, size_t n, void *data)
{
    struct week_read *r = data;
    assert_int_equal(err, 0);
    assert_int_equal(n, 1);
    *r->out = st[0];
    r->done = 1;
}

static void profile_cb(int err, const json_t *profile, const char *cursor, void *data)
{
    struct batch *b = data;
    b->done++;
    if (err)
        b->failed++;
}

/* The date n days after 2026-01-24 (the heavy member's first day). */
static void day_name(int n, char *out)
{
    fit_date d;
    assert_int_equal(fit_date_parse("2026-01-24", &d), 0);
    fit_date_format(fit_civil_from_days(fit_days_from_civil(d) + n), out);
}

static void session_json(char *buf, size_t len, const char *id, const char *date, int minute)
{
    const char *type = minute % 3 == 0 ? "running" : "walking";
    snprintf(buf, len,
             "{\"client_id\":\"%s\",\"type\":\"%s\",\"start\":\"%sT%02d:%02d:00+08:00\","
             "\"duration_s\":420,\"distance_m\":900}",
             id, type, date, 6 + minute / 60, minute % 60);
}

/* Joins a challenge as fitsyncd does (server/fit_h_events.c, member_copy). */
static void join(const char *user, const char *id, const char *from, const char *to,
                 const char *metric, const char *team)
{
    fit_date f, t;
    assert_int_equal(fit_date_parse(from, &f), 0);
    assert_int_equal(fit_date_parse(to, &t), 0);
    char def[512], key[FIT_KEY_MAX];
    snprintf(def, sizeof(def),
             "{\"from\":\"%s\",\"to\":\"%s\",\"fm\":%lld,\"tm\":%lld,\"metric\":\"%s\","
             "\"goal\":100000,\"cap\":0,\"team\":\"%s\",\"name\":\"%s\",\"types\":[\"running\"]}",
             from, to, (long long)fit_local_midnight_ms(f, 480),
             (long long)(fit_local_midnight_ms(t, 480) + FIT_MS_PER_DAY - 1), metric, team, id);
    fit_user_key(key, ops.shards, user, "log");
    redisReply *r = redisCommand(cli, "FCALL fit_challenge_join 1 %s %s %s", key, id, def);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_string_equal(r->element[0]->str, "joined");
    freeReplyObject(r);
}

/* Calls per command from INFO commandstats, leaving out INFO itself. */
struct stats {
    int n;
    char name[64][32];
    long long calls[64];
};

static struct stats stats_now(void)
{
    struct stats st;
    memset(&st, 0, sizeof(st));
    redisReply *r = redisCommand(cli, "INFO commandstats");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    for (const char *p = strstr(r->str, "cmdstat_"); p && st.n < 64;
         p = strstr(p + 1, "cmdstat_")) {
        if (sscanf(p, "cmdstat_%31[^:]:calls=%lld", st.name[st.n], &st.calls[st.n]) == 2 &&
            strcmp(st.name[st.n], "info") != 0)
            st.n++;
    }
    freeReplyObject(r);
    return st;
}

/* Commands run between two readings; what ran is printed as "name x calls". */
static long long stats_diff(const char *what, const struct stats *a, const struct stats *b)
{
    long long total = 0;
    char line[1024] = "";
    for (int i = 0; i < b->n; i++) {
        long long before = 0;
        for (int j = 0; j < a->n; j++)
            if (strcmp(a->name[j], b->name[i]) == 0)
                before = a->calls[j];
        if (b->calls[i] > before) {
            total += b->calls[i] - before;
            size_t len = strlen(line);
            snprintf(line + len, sizeof(line) - len, " %s x%lld", b->name[i], b->calls[i] - before);
        }
    }
    print_message("%s: %lld commands:%s\n", what, total, line);
    return total;
}

/* Commands (FCALL included) that one upload of session json by user costs. */
static long long upload_cost(const char *user, const char *json)
{
    struct batch b = {0};
    struct stats before = stats_now();
    send_activity(&b, user, json);
    wait_batch(&b);
    assert_string_equal(b.last_status, "created");
    struct stats after = stats_now();
    return stats_diff(user, &before, &after);
}

static long long summary_cost(const char *user, const char *date, int mo)
{
    struct batch b = {0};
    struct stats before = stats_now();
    send_summary(&b, user, date, mo);
    wait_batch(&b);
    assert_string_equal(b.last_status, "applied");
    struct stats after = stats_now();
    return stats_diff(user, &before, &after);
}

static void build_heavy(const char *user)
{
    struct batch b = {0};
    fit_profile p;
    memset(&p, 0, sizeof(p));
    p.has_district = 1;
    snprintf(p.district, sizeof(p.district), "wan-chai");
    p.has_gender = 1;
    snprintf(p.gender, sizeof(p.gender), "female");
    assert_int_equal(fit_ops_profile_set(&ops, user, "dev", &p, profile_cb, &b), 0);
    b.sent++;
    wait_batch(&b);
    /* 8 ended challenges (a week each, inside the history) and 2 running ones. */
    const char *metrics[] = {"equivalent_min", "active_days", "distance_m"};
    for (int i = 0; i < 8; i++) {
        char id[16], from[FIT_DATE_LEN], to[FIT_DATE_LEN];
        snprintf(id, sizeof(id), "ended-%d", i);
        day_name(2 + 6 * i, from);
        day_name(8 + 6 * i, to);
        join(user, id, from, to, metrics[i % 3], i % 2 ? "red" : "");
    }
    join(user, "running-eq", "2026-03-16", "2026-03-31", "equivalent_min", "");
    join(user, "running-km", "2026-03-01", "2026-04-30", "distance_m", "");
    for (int d = 0; d < HISTORY_DAYS; d++) {
        char date[FIT_DATE_LEN], id[32], json[512];
        day_name(d, date);
        for (int s = 0; s < SESSIONS_PER_DAY; s++) {
            snprintf(id, sizeof(id), "h-%d-%d", d, s);
            session_json(json, sizeof(json), id, date, 10 * s);
            send_activity(&b, user, json);
        }
        send_summary(&b, user, date, 40);
        wait_batch(&b);
    }
}

static double zscore(const char *key, const char *member)
{
    redisReply *r = redisCommand(cli, "ZSCORE %s %s", key, member);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    double v = atof(r->str);
    freeReplyObject(r);
    return v;
}

/* The incremental figures equal what the data says. Each day: 20 walks (moderate)
 * and 10 runs (vigorous, 900 m each) of 7 minutes, 10 minutes apart, so a day has
 * 140 moderate and 70 vigorous minutes; its summary (40 / 5) is smaller. */
static void check_heavy(const char *user)
{
    fit_week_status st;
    struct week_read r = {0, &st};
    const char *weeks[1] = {"2026-W10"};
    assert_int_equal(fit_ops_weeks_get(&ops, user, weeks, 1, week_cb, &r), 0);
    for (int i = 0; i < 10000 && !r.done; i++)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(st.moderate_min, 7 * 140);
    assert_int_equal(st.vigorous_min, 7 * 70);
    /* The week board's score is kept from the running week figures. */
    double score = zscore("fit:{s0}:lb:2026-W10:all", user);
    assert_int_equal((long long)(score / 68719476736.0), 7 * 140 + 2 * 7 * 70);
    /* Running challenges: equivalent minutes of 03-16..03-20, metres run since 03-01. */
    assert_int_equal((long long)zscore("fit:{s0}:ch:running-eq/all", user), 5 * 280);
    assert_int_equal((long long)zscore("fit:{s0}:ch:running-km/all", user), 20 * 10 * 900);
}

static void test_upload_cost_is_flat(void **state)
{
    char last[FIT_DATE_LEN], json[512];
    day_name(HISTORY_DAYS - 1, last);
    assert_string_equal(last, "2026-03-20");
    build_heavy("heavy");
    check_heavy("heavy");

    /* One more session on the heavy member's fullest day (30 sessions already). */
    session_json(json, sizeof(json), "heavy-next", last, 10 * SESSIONS_PER_DAY);
    long long heavy = upload_cost("heavy", json);
    /* A summary that raises the day (moderate 400 > the sessions' 140): boards,
     * figures and the running equivalent-minutes challenge all move. */
    long long heavy_summary = summary_cost("heavy", last, 400);

    /* A new member's first upload (new member, new week, new day). */
    session_json(json, sizeof(json), "first", last, 30);
    long long fresh = upload_cost("newcomer", json);
    long long fresh_summary = summary_cost("newcomer2", last, 20);

    print_message("commands per upload (FCALL included): heavy %lld, new %lld; "
                  "per summary: heavy %lld, new %lld\n",
                  heavy, fresh, heavy_summary, fresh_summary);
    assert_true(heavy <= COMMANDS_PER_UPLOAD);
    assert_true(fresh <= COMMANDS_PER_UPLOAD);
    assert_true(heavy_summary <= COMMANDS_PER_UPLOAD);
    assert_true(fresh_summary <= COMMANDS_PER_UPLOAD);
    /* The test measures something: an upload runs more than its FCALL. */
    assert_true(heavy > 5 && fresh > 5);
}

static long long used_memory(void)
{
    redisReply *r = redisCommand(cli, "INFO memory");
    assert_non_null(r);
    const char *p = strstr(r->str, "used_memory:");
    assert_non_null(p);
    long long v = atoll(p + strlen("used_memory:"));
    freeReplyObject(r);
    return v;
}

static void fold_cb(int err, long long weeks, void *data)
{
    struct batch *b = data;
    b->done++;
    if (err)
        b->failed++;
}

struct state_read {
    int done;
    json_t *state;
};

static void state_cb(int err, const json_t *state, void *data)
{
    struct state_read *r = data;
    assert_int_equal(err, 0);
    r->state = json_deep_copy(state);
    r->done = 1;
}

static json_t *read_state(const char *user)
{
    struct state_read r = {0};
    assert_int_equal(fit_ops_state(&ops, user, 0, state_cb, &r), 0);
    for (int i = 0; i < 10000 && !r.done; i++)
        uv_run(&loop, UV_RUN_ONCE);
    assert_non_null(r.state);
    return r.state;
}

static fit_week_status read_week(const char *user, const char *week)
{
    fit_week_status st;
    struct week_read r = {0, &st};
    const char *weeks[1] = {week};
    assert_int_equal(fit_ops_weeks_get(&ops, user, weeks, 1, week_cb, &r), 0);
    for (int i = 0; i < 10000 && !r.done; i++)
        uv_run(&loop, UV_RUN_ONCE);
    assert_true(r.done);
    return st;
}

#define MEMBERS 100
#define DAYS 28 /* 2026-01-05 (a Monday) to 2026-02-01: four ISO weeks */

static void test_member_day_bytes(void **state)
{
    long long empty = used_memory();
    for (int m = 0; m < MEMBERS; m++) {
        struct batch b = {0};
        char user[32];
        snprintf(user, sizeof(user), "member-%03d", m);
        for (int d = 0; d < DAYS; d++) {
            char date[FIT_DATE_LEN], json[512];
            fit_date day;
            assert_int_equal(fit_date_parse("2026-01-05", &day), 0);
            fit_date_format(fit_civil_from_days(fit_days_from_civil(day) + d), date);
            /* Client ids as phones make them: UUIDs. */
            snprintf(json, sizeof(json),
                     "{\"client_id\":\"%08x-1111-4222-8333-%012x\",\"type\":\"walking\","
                     "\"start\":\"%sT07:30:00+08:00\",\"duration_s\":1800,\"steps\":3100,"
                     "\"distance_m\":2400}",
                     m, d, date);
            send_activity(&b, user, json);
            snprintf(json, sizeof(json),
                     "{\"client_id\":\"%08x-2111-4222-8333-%012x\",\"type\":\"running\","
                     "\"start\":\"%sT18:00:00+08:00\",\"duration_s\":1500,"
                     "\"distance_m\":4100}",
                     m, d, date);
            send_activity(&b, user, json);
            send_summary(&b, user, date, 20 + d % 30);
        }
        wait_batch(&b);
    }
    long long unfolded = used_memory();
    fit_week_status before = read_week("member-007", "2026-W03");
    ops.fold_after_days = 57; /* the test's dates are months before the wall clock */
    struct batch b = {0};
    for (int m = 0; m < MEMBERS; m++) {
        char user[32];
        snprintf(user, sizeof(user), "member-%03d", m);
        assert_int_equal(fit_ops_fold(&ops, user, 8, fold_cb, &b), 0);
        b.sent++;
    }
    wait_batch(&b);
    ops.fold_after_days = 0;
    /* The change log is trimmed after sync.window_days: at rest it holds nothing of these days. */
    for (int m = 0; m < MEMBERS; m++) {
        char key[FIT_KEY_MAX], user[32];
        snprintf(user, sizeof(user), "member-%03d", m);
        fit_user_key(key, ops.shards, user, "log");
        freeReplyObject(redisCommand(cli, "DEL %s", key));
    }
    long long folded = used_memory();
    /* COST_DEBUG=1: where the bytes are (MEMORY USAGE per key, one week hash in full). */
    if (getenv("COST_DEBUG")) {
        redisReply *k = redisCommand(cli, "KEYS *");
        for (size_t i = 0; i < k->elements; i++) {
            if (!strstr(k->element[i]->str, "member-007") && strstr(k->element[i]->str, ":u:"))
                continue;
            redisReply *u = redisCommand(cli, "MEMORY USAGE %s", k->element[i]->str);
            redisReply *e = redisCommand(cli, "OBJECT ENCODING %s", k->element[i]->str);
            print_message("%s %lld %s\n", k->element[i]->str, u->integer, e->str);
            freeReplyObject(u);
            freeReplyObject(e);
        }
        freeReplyObject(k);
        k = redisCommand(cli, "HGETALL fit:{s0}:u:member-007/w:2026-W03");
        for (size_t i = 0; i + 1 < k->elements; i += 2)
            print_message("  %s = %s\n", k->element[i]->str, k->element[i + 1]->str);
        freeReplyObject(k);
    }
    double per_day = (double)(folded - empty) / (MEMBERS * DAYS);
    print_message("used_memory per member-day (1 summary + 2 sessions): %.0f bytes before "
                  "folding (change log included), %.0f folded (change log trimmed)\n",
                  (double)(unfolded - empty) / (MEMBERS * DAYS), per_day);
    assert_true(per_day <= 600);

    /* Folding changed no figure, and export still has every session and summary. */
    fit_week_status after = read_week("member-007", "2026-W03");
    assert_int_equal(after.moderate_min, before.moderate_min);
    assert_int_equal(after.vigorous_min, before.vigorous_min);
    assert_int_equal(after.steps, before.steps);
    assert_true(after.moderate_min > 0 && after.vigorous_min > 0);
    json_t *st = read_state("member-007");
    json_t *acts = json_object_get(st, "activities");
    assert_int_equal(json_array_size(acts), 2 * DAYS);
    json_t *first = json_array_get(acts, 0);
    assert_true(json_is_true(json_object_get(first, "folded")));
    assert_string_equal(json_string_value(json_object_get(first, "type")), "walking");
    assert_string_equal(json_string_value(json_object_get(first, "start")),
                        "2026-01-05T07:30:00+08:00");
    assert_int_equal(json_integer_value(json_object_get(first, "duration_s")), 1800);
    assert_int_equal(json_integer_value(json_object_get(first, "rev")), 1);
    assert_int_equal(json_array_size(json_object_get(st, "summaries")), DAYS);
    json_decref(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_upload_cost_is_flat, setup, teardown),
        cmocka_unit_test_setup_teardown(test_member_day_bytes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
