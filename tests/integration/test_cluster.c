/*
 * Integration tests of workers/fit_cluster.c against a real Redis Cluster of
 * redis-server 7.0 (3 primaries, 1 replica each) that tools/redis-cluster.sh
 * starts as a CTest fixture. argv[1] is the cluster's directory (its ports
 * file lists the nodes). Nothing is mocked: slots are migrated with CLUSTER
 * SETSLOT and MIGRATE, and a primary is killed with SIGKILL.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fit_cluster.h"
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *cluster_dir;
static int ports[16], nports;
static uv_loop_t loop;
static fit_cluster cl;

/* ---- driving the loop ---- */

static int run_until(const int *flag, int ms)
{
    return harness_run_until(&loop, flag, ms);
}

struct result {
    int done;
    int type;
    long long integer;
    char str[256];
    char err[160];
};

static void result_cb(redisReply *r, const char *errstr, void *data)
{
    struct result *res = data;
    res->done = 1;
    if (!r) {
        snprintf(res->err, sizeof(res->err), "%s", errstr);
        return;
    }
    res->type = r->type;
    res->integer = r->integer;
    if (r->str)
        snprintf(res->str, sizeof(res->str), "%s", r->str);
}

/* One command through the cluster client, run to its reply (or 20 s). */
static struct result call(const char *key, int idempotent, int argc, const char **argv)
{
    struct result res;
    memset(&res, 0, sizeof(res));
    assert_int_equal(
        fit_cluster_command(&cl, key, strlen(key), idempotent, result_cb, &res, argc, argv, NULL),
        0);
    assert_true(run_until(&res.done, 20000));
    return res;
}

/* redis-cli against one node; returns its first line of output (static buffer). */
static const char *cli(int port, const char *args)
{
    static char out[512];
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "redis-cli -h 127.0.0.1 -p %d %s 2>&1", port, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    out[0] = '\0';
    if (!fgets(out, sizeof(out), p))
        out[0] = '\0';
    pclose(p);
    out[strcspn(out, "\r\n")] = '\0';
    return out;
}

/* The port of the primary serving slot, by asking a node (CLUSTER SHARDS is 7.0+: use NODES). */
static int primary_of(unsigned slot)
{
    for (int i = 0; i < nports; i++) {
        char cmd[256];
        snprintf(cmd, sizeof(cmd), "redis-cli -h 127.0.0.1 -p %d cluster nodes 2>/dev/null",
                 ports[i]);
        FILE *p = popen(cmd, "r");
        if (!p)
            continue;
        char line[1024];
        int found = 0;
        while (fgets(line, sizeof(line), p)) {
            if (!strstr(line, "master") || strstr(line, "fail"))
                continue;
            int port = 0;
            char *at = strchr(line, ':');
            if (at)
                port = atoi(at + 1);
            /* the slot ranges are the fields after the 8th */
            char *f = line;
            for (int k = 0; k < 8 && f; k++) {
                f = strchr(f, ' ');
                if (f)
                    f++;
            }
            for (char *save = NULL, *t = f ? strtok_r(f, " \n", &save) : NULL; t;
                 t = strtok_r(NULL, " \n", &save)) {
                unsigned a, b;
                if (t[0] == '[')
                    continue;
                int n = sscanf(t, "%u-%u", &a, &b);
                if (n == 1)
                    b = a;
                if (n >= 1 && slot >= a && slot <= b)
                    found = port;
            }
        }
        pclose(p);
        if (found)
            return found;
    }
    return 0;
}

static void read_ports(void)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/ports", cluster_dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    nports = 0;
    while (nports < 16 && fscanf(f, "%d", &ports[nports]) == 1)
        nports++;
    fclose(f);
    assert_true(nports >= 6);
}

static int setup(void **state)
{
    read_ports();
    uv_loop_init(&loop);
    fit_store_options o;
    memset(&o, 0, sizeof(o));
    o.command_timeout_ms = 15000;
    o.connect_timeout_ms = 1000;
    o.reconnect_max_ms = 500;
    char seeds[256];
    snprintf(seeds, sizeof(seeds), "127.0.0.1:%d,127.0.0.1:%d", ports[0], ports[1]);
    assert_int_equal(
        fit_cluster_init(&cl, &loop, seeds, &o, fit_functions_lua, fit_functions_lua_len), 0);
    for (int i = 0; i < 2000 && !fit_cluster_ready(&cl); i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(5000);
    }
    assert_true(fit_cluster_ready(&cl));
    return 0;
}

static int closed;
static void on_closed(fit_cluster *c)
{
    closed = 1;
}

static int teardown(void **state)
{
    closed = 0;
    fit_cluster_close(&cl, on_closed);
    run_until(&closed, 5000);
    assert_true(closed);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    return 0;
}

/* ---- tests ---- */

static void test_routes_by_slot(void **state)
{
    /* Keys over every primary: each SET lands where CLUSTER KEYSLOT says, each GET finds it. */
    for (int i = 0; i < 300; i++) {
        char key[32], val[32], want[16];
        snprintf(key, sizeof(key), "route:%d", i);
        snprintf(val, sizeof(val), "v%d", i);
        const char *set[] = {"SET", key, val};
        struct result r = call(key, 1, 3, set);
        assert_string_equal(r.err, "");
        assert_string_equal(r.str, "OK");
        const char *ks[] = {"CLUSTER", "KEYSLOT", key};
        r = call(key, 1, 3, ks);
        assert_int_equal(r.integer, fit_key_slot(key, strlen(key)));
        snprintf(want, sizeof(want), "v%d", i);
        const char *get[] = {"GET", key};
        r = call(key, 1, 2, get);
        assert_string_equal(r.str, want);
    }
    assert_int_equal(cl.redirects, 0);
}

static void test_functions_on_every_primary(void **state)
{
    /* A read-only Function through each primary: the library was loaded on every one. */
    int seen[65536 / 8];
    memset(seen, 0, sizeof(seen));
    int primaries = 0;
    for (unsigned sh = 0; sh < 64; sh++) {
        char key[64], tag[8];
        snprintf(tag, sizeof(tag), "s%u", sh);
        snprintf(key, sizeof(key), "fit:{s%u}:u:alice/log", sh);
        int port = primary_of(fit_key_slot(tag, strlen(tag)));
        assert_true(port > 0);
        if (!seen[port / 8]) {
            seen[port / 8] = 1;
            primaries++;
        }
        const char *fc[] = {"FCALL_RO", "fit_sync_head", "1", key};
        struct result r = call(key, 1, 4, fc);
        assert_string_equal(r.err, "");
        assert_int_equal(r.type, REDIS_REPLY_STRING);
        assert_string_equal(r.str, "0-0");
    }
    assert_int_equal(primaries, 3);
}

/* Moves slot from its primary to another one (the Redis Cluster spec's live resharding steps). */
static void migrate_slot(unsigned slot, int from, int to, int finish)
{
    char args[256], to_id[64], from_id[64];
    snprintf(to_id, sizeof(to_id), "%s", cli(to, "cluster myid"));
    snprintf(from_id, sizeof(from_id), "%s", cli(from, "cluster myid"));
    snprintf(args, sizeof(args), "cluster setslot %u importing %s", slot, from_id);
    assert_string_equal(cli(to, args), "OK");
    snprintf(args, sizeof(args), "cluster setslot %u migrating %s", slot, to_id);
    assert_string_equal(cli(from, args), "OK");
    for (;;) {
        snprintf(args, sizeof(args), "cluster getkeysinslot %u 100", slot);
        const char *k = cli(from, args);
        if (!k[0])
            break;
        char key[128];
        snprintf(key, sizeof(key), "%s", k);
        snprintf(args, sizeof(args), "migrate 127.0.0.1 %d %s 0 5000", to, key);
        assert_string_equal(cli(from, args), "OK");
    }
    if (!finish)
        return;
    for (int i = 0; i < nports; i++) {
        snprintf(args, sizeof(args), "cluster setslot %u node %s", slot, to_id);
        cli(ports[i], args);
    }
}

static void test_moved_and_ask(void **state)
{
    const char *key = "resharded:1";
    unsigned slot = fit_key_slot(key, strlen(key));
    const char *set[] = {"SET", key, "before"};
    assert_string_equal(call(key, 1, 3, set).str, "OK");
    int from = primary_of(slot), to = 0;
    for (int i = 0; i < nports && !to; i++) {
        int p = ports[i];
        if (p != from && strstr(cli(p, "role"), "master"))
            to = p;
    }
    assert_true(from && to);

    /* ASK: the slot is migrating and a new key of it is not on the source. */
    migrate_slot(slot, from, to, 0);
    /* A hash tag keeps the new key in the slot: {resharded:1}. */
    char tagged[64];
    snprintf(tagged, sizeof(tagged), "{%s}:new", key);
    assert_int_equal(fit_key_slot(tagged, strlen(tagged)), slot);
    uint64_t before = cl.redirects;
    const char *set2[] = {"SET", tagged, "asked"};
    struct result r = call(tagged, 1, 3, set2);
    assert_string_equal(r.err, "");
    assert_string_equal(r.str, "OK");
    assert_true(cl.redirects > before);
    /* It was written on the target, not on the source (which still answers ASK for it). */
    char args[160];
    snprintf(args, sizeof(args), "exists %s", tagged);
    assert_int_equal(strncmp(cli(from, args), "ASK ", 4), 0);

    /* MOVED: the migration finishes; the client's table is stale until it follows. */
    migrate_slot(slot, from, to, 1);
    before = cl.redirects;
    const char *get[] = {"GET", key};
    r = call(key, 1, 2, get);
    assert_string_equal(r.str, "before");
    assert_true(cl.redirects > before);
    r = call(key, 1, 2, get);
    assert_string_equal(r.str, "before");
    /* Back where it was, so the other tests see the cluster as created. */
    migrate_slot(slot, to, from, 1);
    r = call(key, 1, 2, get);
    assert_string_equal(r.str, "before");
}

/*
 * The pub/sub connection fitsyncd keeps in a cluster: a list of nodes tried in
 * turn (the first is a dead address), and a PUBLISH sent through any node
 * reaches it (Redis Cluster delivers classic pub/sub cluster-wide).
 */
static int got_message;
static char got_payload[64];
static void on_message(fit_store *s, const char *channel, const char *payload, size_t len,
                       void *data)
{
    got_message = 1;
    snprintf(got_payload, sizeof(got_payload), "%.*s", (int)len, payload);
}

static int sub_closed;
static void on_sub_closed(fit_store *s)
{
    sub_closed = 1;
}

static void test_pubsub_over_a_node_list(void **state)
{
    fit_store sub;
    fit_store_options o;
    memset(&o, 0, sizeof(o));
    /* 127.0.0.1:1 refuses at once; the store moves on to a live node. */
    snprintf(o.address, sizeof(o.address), "127.0.0.1:1,127.0.0.1:%d,127.0.0.1:%d", ports[2],
             ports[3]);
    o.subscribe = "fit:test";
    o.on_message = on_message;
    o.reconnect_max_ms = 200;
    assert_int_equal(fit_store_init(&sub, &loop, &o, NULL, 0), 0);
    for (int i = 0; i < 600 && !fit_store_ready(&sub); i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(5000);
    }
    assert_true(fit_store_ready(&sub));
    assert_string_not_equal(sub.connected_to, "127.0.0.1:1");
    got_message = 0;
    /* Published on whichever primary owns the channel name's slot: not necessarily sub's node. */
    const char *pub[] = {"PUBLISH", "fit:test", "hello-cluster"};
    struct result r = call("fit:test", 1, 3, pub);
    assert_string_equal(r.err, "");
    assert_true(run_until(&got_message, 5000));
    assert_string_equal(got_payload, "hello-cluster");
    /* sub lives on this stack: its handles must be closed before the function returns. */
    sub_closed = 0;
    fit_store_close(&sub, on_sub_closed);
    assert_true(run_until(&sub_closed, 5000));
}

static void test_durable_write_waits_for_a_replica(void **state)
{
    cl.wait_replicas = 1;
    cl.wait_timeout_ms = 2000;
    const char *set[] = {"SET", "durable:1", "x"};
    struct result res;
    memset(&res, 0, sizeof(res));
    assert_int_equal(fit_cluster_command(&cl, "durable:1", 9,
                                         FIT_CLUSTER_IDEMPOTENT | FIT_CLUSTER_DURABLE, result_cb,
                                         &res, 3, set, NULL),
                     0);
    assert_true(run_until(&res.done, 10000));
    assert_string_equal(res.err, "");
    assert_string_equal(res.str, "OK"); /* the write's own reply, held until WAIT answered */
    /* More replicas than exist: the write is there, but the ack says it is not confirmed. */
    cl.wait_replicas = 2;
    cl.wait_timeout_ms = 200;
    memset(&res, 0, sizeof(res));
    assert_int_equal(fit_cluster_command(&cl, "durable:1", 9, FIT_CLUSTER_DURABLE, result_cb, &res,
                                         3, set, NULL),
                     0);
    assert_true(run_until(&res.done, 10000));
    assert_non_null(strstr(res.err, "replicas did not confirm"));
    assert_int_equal(cl.waits_short, 1);
}

static void test_failover(void **state)
{
    /* Kill the primary of a key's slot; its replica takes over; the client finds it. */
    const char *key = "failover:1";
    const char *set[] = {"SET", key, "kept"};
    assert_string_equal(call(key, 1, 3, set).str, "OK");
    const char *wait[] = {"WAIT", "1", "2000"};
    assert_int_equal(call(key, 1, 3, wait).integer, 1);
    int victim = primary_of(fit_key_slot(key, strlen(key)));
    char pidfile[600];
    snprintf(pidfile, sizeof(pidfile), "%s/%d/redis.pid", cluster_dir, victim);
    FILE *f = fopen(pidfile, "r");
    assert_non_null(f);
    int pid = 0;
    assert_int_equal(fscanf(f, "%d", &pid), 1);
    fclose(f);
    assert_int_equal(kill(pid, SIGKILL), 0);
    uint64_t t0 = uv_now(&loop);
    const char *get[] = {"GET", key};
    struct result r = call(key, 1, 2, get);
    uv_update_time(&loop);
    print_message("failover: GET answered after %llu ms (%s)\n",
                  (unsigned long long)(uv_now(&loop) - t0), r.err[0] ? r.err : r.str);
    assert_string_equal(r.err, "");
    assert_string_equal(r.str, "kept");
    assert_int_not_equal(primary_of(fit_key_slot(key, strlen(key))), victim);
    /* The new primary has the Functions library. */
    const char *fc[] = {"FCALL_RO", "fit_sync_head", "1", "{failover:1}:u:x/log"};
    r = call("{failover:1}", 1, 4, fc);
    assert_string_equal(r.err, "");
    assert_string_equal(r.str, "0-0");
    /* The killed node comes back (as a replica of its old replica) for the next tests. */
    char cmd[1024];
    snprintf(
        cmd, sizeof(cmd),
        "cd %s/%d && redis-server --port %d --bind 127.0.0.1 --dir %s/%d --cluster-enabled yes "
        "--cluster-config-file nodes.conf --cluster-node-timeout 2000 --appendonly yes "
        "--save '' --daemonize yes --pidfile %s --logfile %s/%d/redis.log --protected-mode no "
        "--cluster-require-full-coverage no",
        cluster_dir, victim, victim, cluster_dir, victim, pidfile, cluster_dir, victim);
    assert_int_equal(system(cmd), 0);
    /* Back as a replica of the new primary, in sync, before the next test. */
    snprintf(cmd, sizeof(cmd), "%s/tools/redis-cluster.sh wait %s", FITSYNC_SOURCE_DIR,
             cluster_dir);
    assert_int_equal(system(cmd), 0);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_cluster CLUSTER_DIR (tools/redis-cluster.sh start DIR)\n");
        return 2;
    }
    cluster_dir = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_routes_by_slot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_functions_on_every_primary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_moved_and_ask, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pubsub_over_a_node_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_durable_write_waits_for_a_replica, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failover, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
