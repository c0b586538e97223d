/*
 * fit_cluster: the slot table, redirections, retries, map refreshes. The
 * contract and the rules followed are in fit_cluster.h.
 *
 * Every command is a fit_cluster_req holding its own copy of argv, so that
 * it can be sent again after a redirection or a wait. A request is in
 * exactly one place at a time: in flight on one primary's store, or on the
 * waiting list that the timer goes through every RETRY_MS.
 */
#include "fit_cluster.h"
#include "fit_error.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RETRY_MS 50
#define REFRESH_MIN_MS 100   /* at most one CLUSTER SLOTS per this, however many MOVED */
#define REFRESH_IDLE_MS 5000 /* and one at least this often, to see failovers */

typedef struct fit_cluster_req {
    fit_cluster *c;
    struct fit_cluster_req *next;
    fit_store_cb *cb;
    void *data;
    unsigned slot;
    int idempotent, durable, redirects, ask_node;
    int node;         /* index + 1 of the node it was last sent to */
    redisReply *held; /* a durable write's reply, held until WAIT answers (owned) */
    uint64_t deadline_ms;
    char why[96];
    int argc;
    char **argv;
    size_t *argvlen;
} fit_cluster_req;

static void dispatch(fit_cluster_req *r);

static void req_free(fit_cluster_req *r)
{
    if (r->held)
        freeReplyObject(r->held);
    for (int i = 0; i < r->argc; i++)
        free(r->argv[i]);
    free(r->argv);
    free(r->argvlen);
    free(r);
}

static void finish(fit_cluster_req *r, redisReply *reply, const char *errstr)
{
    if (r->cb)
        r->cb(reply, reply ? NULL : errstr, r->data);
    req_free(r);
}

/* Puts r on the waiting list, or fails it once its deadline has passed. */
static void wait_retry(fit_cluster_req *r, const char *why)
{
    fit_cluster *c = r->c;
    snprintf(r->why, sizeof(r->why), "%s", why);
    if (c->closing) {
        finish(r, NULL, "closed");
        return;
    }
    if (uv_now(c->loop) >= r->deadline_ms) {
        char err[128];
        snprintf(err, sizeof(err), "Redis Cluster unavailable: %s", r->why);
        finish(r, NULL, err);
        return;
    }
    r->next = NULL;
    fit_cluster_req **p = &c->waiting;
    while (*p)
        p = &(*p)->next;
    *p = r;
}

/* ---- nodes ---- */

static void node_state(fit_store *store, fit_store_state st, void *data)
{
    if (st == FIT_STORE_DISCONNECTED)
        ((fit_cluster *)data)->refresh_wanted = 1;
}

/* The index (+1) of the node at addr, connecting to it if it is new; 0 when the table is full. */
static int node_get(fit_cluster *c, const char *addr)
{
    int free_at = -1;
    for (int i = 0; i < c->nnodes; i++) {
        if (c->nodes[i] && c->nodes[i]->live && strcmp(c->nodes[i]->addr, addr) == 0)
            return i + 1;
        if (!c->nodes[i] && free_at < 0)
            free_at = i;
    }
    if (free_at < 0) {
        if (c->nnodes == FIT_CLUSTER_MAX_NODES)
            return 0;
        free_at = c->nnodes++;
    }
    fit_cluster_node *n = calloc(1, sizeof(*n));
    if (!n)
        return 0;
    snprintf(n->addr, sizeof(n->addr), "%s", addr);
    fit_store_options o = c->opt;
    snprintf(o.address, sizeof(o.address), "%s", addr);
    if (fit_store_init(&n->store, c->loop, &o, c->lua, c->lua_len) != 0) {
        free(n);
        return 0;
    }
    n->store.on_state = node_state;
    n->store.on_state_data = c;
    n->live = 1;
    c->nodes[free_at] = n;
    c->handles++;
    return free_at + 1;
}

static void maybe_closed(fit_cluster *c)
{
    if (c->closing && c->handles == 0 && c->on_closed) {
        void (*cb)(fit_cluster *) = c->on_closed;
        c->on_closed = NULL;
        cb(c);
    }
}

static void node_closed(fit_store *store)
{
    fit_cluster_node *n = (fit_cluster_node *)((char *)store - offsetof(fit_cluster_node, store));
    fit_cluster *c = store->on_state_data;
    free(n);
    c->handles--;
    maybe_closed(c);
}

static void node_close(fit_cluster *c, int i)
{
    fit_cluster_node *n = c->nodes[i];
    c->nodes[i] = NULL;
    n->live = 0;
    n->store.on_state_data = c; /* fit_store_close clears on_state, not the data */
    fit_store_close(&n->store, node_closed);
}

/* ---- the slot map ---- */

/* Applies a CLUSTER SLOTS reply; asked_host fills in an empty announced host. */
static void map_apply(fit_cluster *c, const redisReply *r, const char *asked_host)
{
    if (!r || r->type != REDIS_REPLY_ARRAY)
        return;
    unsigned char map[FIT_CLUSTER_SLOTS];
    memset(map, 0, sizeof(map));
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER ||
            e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2)
            continue;
        const redisReply *m = e->element[2];
        char addr[64];
        const char *host =
            m->element[0]->str && m->element[0]->str[0] ? m->element[0]->str : asked_host;
        snprintf(addr, sizeof(addr), "%s:%lld", host, m->element[1]->integer);
        int idx = node_get(c, addr);
        long long from = e->element[0]->integer, to = e->element[1]->integer;
        for (long long s = from; idx && s <= to && s < FIT_CLUSTER_SLOTS; s++)
            if (s >= 0)
                map[s] = (unsigned char)idx;
    }
    memcpy(c->slot_node, map, sizeof(map));
    c->maps++;
    for (int i = 0; i < c->nnodes; i++)
        if (c->nodes[i])
            c->nodes[i]->primary = 0;
    for (int s = 0; s < FIT_CLUSTER_SLOTS; s++)
        if (map[s])
            c->nodes[map[s] - 1]->primary = 1;
    /* A node that lost its slots (a failed primary back as a replica) is closed once idle. */
    for (int i = 0; i < c->nnodes; i++)
        if (c->nodes[i] && !c->nodes[i]->primary && c->nodes[i]->store.pending == 0)
            node_close(c, i);
}

typedef struct {
    fit_cluster *c;
    char host[64];
} refresh_ctx;

static void refresh_done(redisReply *reply, const char *errstr, void *data)
{
    refresh_ctx *x = data;
    fit_cluster *c = x->c;
    c->refresh_inflight = 0;
    if (!c->closing && reply && reply->type == REDIS_REPLY_ARRAY)
        map_apply(c, reply, x->host);
    else if (!c->closing)
        c->refresh_wanted = 1;
    free(x);
}

/* Sends CLUSTER SLOTS to a ready primary, else to a ready seed. */
static void refresh_send(fit_cluster *c)
{
    fit_store *via = NULL;
    for (int i = 0; i < c->nnodes && !via; i++)
        if (c->nodes[i] && c->nodes[i]->primary && fit_store_ready(&c->nodes[i]->store))
            via = &c->nodes[i]->store;
    for (int i = 0; i < c->nseeds && !via; i++)
        if (fit_store_ready(&c->seeds[i]))
            via = &c->seeds[i];
    if (!via)
        return;
    refresh_ctx *x = calloc(1, sizeof(*x));
    if (!x)
        return;
    x->c = c;
    snprintf(x->host, sizeof(x->host), "%s", via->opt.address);
    char *colon = strrchr(x->host, ':');
    if (colon)
        *colon = '\0';
    const char *argv[] = {"CLUSTER", "SLOTS"};
    if (fit_store_command(via, refresh_done, x, 2, argv, NULL) != 0) {
        free(x);
        return;
    }
    c->refresh_wanted = 0;
    c->refresh_inflight = 1;
    c->last_refresh_ms = uv_now(c->loop);
}

static void tick(uv_timer_t *t)
{
    fit_cluster *c = t->data;
    uint64_t now = uv_now(c->loop);
    if (!c->refresh_inflight && now - c->last_refresh_ms >= REFRESH_MIN_MS &&
        (c->refresh_wanted || c->maps == 0 || now - c->last_refresh_ms >= REFRESH_IDLE_MS))
        refresh_send(c);
    fit_cluster_req *list = c->waiting;
    c->waiting = NULL;
    while (list) {
        fit_cluster_req *r = list;
        list = r->next;
        dispatch(r);
    }
    int ready = fit_cluster_ready(c);
    if (ready != c->was_ready) {
        c->was_ready = ready;
        if (c->on_state)
            c->on_state(c, ready, c->on_state_data);
    }
}

/* ---- commands ---- */

/* "MOVED 3999 127.0.0.1:6381" / "ASK ...": fills slot and addr; 1 if it was one. */
static int parse_redirect(const char *s, const char *word, unsigned *slot, char *addr, size_t n)
{
    size_t wl = strlen(word);
    if (strncmp(s, word, wl) != 0 || s[wl] != ' ')
        return 0;
    char a[64];
    if (sscanf(s + wl + 1, "%u %63s", slot, a) != 2 || *slot >= FIT_CLUSTER_SLOTS)
        return 0;
    snprintf(addr, n, "%s", a);
    return 1;
}

/* A deep copy of a reply, freed with freeReplyObject (hiredis frees with free()). */
static redisReply *reply_dup(const redisReply *r)
{
    redisReply *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->type = r->type;
    d->integer = r->integer;
    d->len = r->len;
    if (r->str) {
        d->str = malloc(r->len + 1);
        if (!d->str) {
            free(d);
            return NULL;
        }
        memcpy(d->str, r->str, r->len + 1);
    }
    if (r->elements) {
        d->element = calloc(r->elements, sizeof(*d->element));
        if (!d->element) {
            freeReplyObject(d);
            return NULL;
        }
        for (size_t i = 0; i < r->elements; i++) {
            d->element[i] = reply_dup(r->element[i]);
            d->elements = i + 1;
            if (!d->element[i]) {
                freeReplyObject(d);
                return NULL;
            }
        }
    }
    return d;
}

/* WAIT's answer for a durable write: the held reply if enough replicas confirmed. */
static void wait_cb(redisReply *reply, const char *errstr, void *data)
{
    fit_cluster_req *r = data;
    fit_cluster *c = r->c;
    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer >= c->wait_replicas) {
        finish(r, r->held, NULL);
        return;
    }
    c->waits_short++;
    char err[128];
    snprintf(err, sizeof(err), "replicas did not confirm the write in %u ms (%lld of %d)",
             c->wait_timeout_ms, reply && reply->type == REDIS_REPLY_INTEGER ? reply->integer : 0,
             c->wait_replicas);
    finish(r, NULL, reply ? err : errstr);
}

static void reply_cb(redisReply *reply, const char *errstr, void *data)
{
    fit_cluster_req *r = data;
    fit_cluster *c = r->c;
    if (!reply) {
        c->refresh_wanted = 1;
        if (r->idempotent && !c->closing && strcmp(errstr, "closed") != 0) {
            c->retries++;
            wait_retry(r, errstr);
        } else {
            finish(r, NULL, errstr);
        }
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR && reply->str) {
        unsigned slot;
        char addr[64];
        int moved = parse_redirect(reply->str, "MOVED", &slot, addr, sizeof(addr));
        int ask = !moved && parse_redirect(reply->str, "ASK", &slot, addr, sizeof(addr));
        if ((moved || ask) && ++r->redirects <= FIT_CLUSTER_MAX_REDIRECTS) {
            int idx = node_get(c, addr);
            if (idx) {
                c->redirects++;
                if (moved) {
                    c->slot_node[slot] = (unsigned char)idx;
                    c->nodes[idx - 1]->primary = 1;
                    c->refresh_wanted = 1;
                } else {
                    r->ask_node = idx;
                }
                dispatch(r);
                return;
            }
        }
        if (strncmp(reply->str, "TRYAGAIN", 8) == 0 ||
            strncmp(reply->str, "CLUSTERDOWN", 11) == 0) {
            c->retries++;
            c->refresh_wanted = 1;
            wait_retry(r, reply->str);
            return;
        }
    }
    fit_cluster_node *n = r->node ? c->nodes[r->node - 1] : NULL;
    if (r->durable && reply->type != REDIS_REPLY_ERROR && n && !c->closing) {
        char nrep[16], ms[16];
        snprintf(nrep, sizeof(nrep), "%d", c->wait_replicas);
        snprintf(ms, sizeof(ms), "%u", c->wait_timeout_ms);
        const char *wait[] = {"WAIT", nrep, ms};
        r->held = reply_dup(reply);
        if (r->held && fit_store_command(&n->store, wait_cb, r, 3, wait, NULL) == 0)
            return;
        finish(r, NULL, "cannot confirm the write with the replicas");
        return;
    }
    finish(r, reply, NULL);
}

static void dispatch(fit_cluster_req *r)
{
    fit_cluster *c = r->c;
    if (c->closing) {
        finish(r, NULL, "closed");
        return;
    }
    int idx = r->ask_node ? r->ask_node : c->slot_node[r->slot];
    fit_cluster_node *n = idx ? c->nodes[idx - 1] : NULL;
    if (!n || !fit_store_ready(&n->store)) {
        if (!n)
            c->refresh_wanted = 1;
        wait_retry(r, n ? "the slot's primary is not connected" : "no primary known for the slot");
        return;
    }
    if (r->ask_node) {
        /* ASKING applies to the next command on this connection: they go out together. */
        const char *asking[] = {"ASKING"};
        r->ask_node = 0;
        if (fit_store_command(&n->store, NULL, NULL, 1, asking, NULL) != 0) {
            wait_retry(r, "the migrating slot's target is not connected");
            return;
        }
    }
    r->node = idx;
    if (fit_store_command(&n->store, reply_cb, r, r->argc, (const char **)r->argv, r->argvlen) != 0)
        wait_retry(r, "the slot's primary is not connected");
}

int fit_cluster_command(fit_cluster *c, const char *key, size_t keylen, int flags, fit_store_cb *cb,
                        void *data, int argc, const char **argv, const size_t *argvlen)
{
    if (c->closing)
        return FIT_EUNAVAILABLE;
    fit_cluster_req *r = calloc(1, sizeof(*r));
    if (!r)
        return FIT_ENOMEM;
    r->argv = calloc((size_t)argc, sizeof(*r->argv));
    r->argvlen = calloc((size_t)argc, sizeof(*r->argvlen));
    if (!r->argv || !r->argvlen) {
        req_free(r);
        return FIT_ENOMEM;
    }
    for (int i = 0; i < argc; i++) {
        size_t len = argvlen ? argvlen[i] : strlen(argv[i]);
        r->argv[i] = malloc(len + 1);
        if (!r->argv[i]) {
            req_free(r);
            return FIT_ENOMEM;
        }
        memcpy(r->argv[i], argv[i], len);
        r->argv[i][len] = '\0';
        r->argvlen[i] = len;
        r->argc = i + 1;
    }
    r->c = c;
    r->cb = cb;
    r->data = data;
    r->idempotent = flags & FIT_CLUSTER_IDEMPOTENT;
    r->durable = (flags & FIT_CLUSTER_DURABLE) && c->wait_replicas > 0;
    r->slot = fit_key_slot(key, keylen);
    r->deadline_ms = uv_now(c->loop) + c->opt.command_timeout_ms;
    dispatch(r);
    return 0;
}

/* ---- life ---- */

int fit_cluster_init(fit_cluster *c, uv_loop_t *loop, const char *seeds,
                     const fit_store_options *opt, const char *lua, size_t lua_len)
{
    memset(c, 0, sizeof(*c));
    c->loop = loop;
    c->opt = *opt;
    if (!c->opt.command_timeout_ms)
        c->opt.command_timeout_ms = 5000;
    c->opt.subscribe = NULL;
    c->lua = lua;
    c->lua_len = lua_len;
    c->wait_timeout_ms = 1000;
    char list[1024];
    snprintf(list, sizeof(list), "%s", seeds);
    for (char *save = NULL, *s = strtok_r(list, ", ", &save); s; s = strtok_r(NULL, ", ", &save)) {
        if (c->nseeds == 8 || !strchr(s, ':'))
            goto bad;
        fit_store_options o = c->opt;
        snprintf(o.address, sizeof(o.address), "%s", s);
        if (fit_store_init(&c->seeds[c->nseeds], loop, &o, NULL, 0) != 0)
            goto bad;
        c->nseeds++;
        c->handles++;
    }
    if (c->nseeds == 0)
        goto bad;
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    c->handles++;
    uv_timer_start(&c->timer, tick, RETRY_MS, RETRY_MS);
    return 0;
bad:
    for (int i = 0; i < c->nseeds; i++)
        fit_store_close(&c->seeds[i], NULL);
    c->nseeds = 0;
    return FIT_EINVALID_VALUE;
}

int fit_cluster_ready(const fit_cluster *c)
{
    if (c->closing || c->maps == 0)
        return 0;
    for (int s = 0; s < FIT_CLUSTER_SLOTS; s++) {
        int idx = c->slot_node[s];
        if (!idx || !c->nodes[idx - 1] || !fit_store_ready(&c->nodes[idx - 1]->store))
            return 0;
    }
    return 1;
}

void fit_cluster_latency_write(const fit_cluster *c, FILE *f)
{
    static fit_store sum; /* only its histogram fields are read; the loop is single-threaded */
    memset(sum.lat_buckets, 0, sizeof(sum.lat_buckets));
    sum.lat_count = 0;
    sum.lat_sum_s = 0;
    for (int i = 0; i < c->nnodes; i++) {
        const fit_store *s = c->nodes[i] ? &c->nodes[i]->store : NULL;
        if (!s)
            continue;
        for (size_t b = 0; b < sizeof(sum.lat_buckets) / sizeof(sum.lat_buckets[0]); b++)
            sum.lat_buckets[b] += s->lat_buckets[b];
        sum.lat_count += s->lat_count;
        sum.lat_sum_s += s->lat_sum_s;
    }
    fit_store_latency_write(&sum, f);
}

uint64_t fit_cluster_reconnects(const fit_cluster *c)
{
    uint64_t n = 0;
    for (int i = 0; i < c->nnodes; i++)
        if (c->nodes[i])
            n += c->nodes[i]->store.reconnects;
    return n;
}

void fit_cluster_refresh(fit_cluster *c)
{
    c->refresh_wanted = 1;
}

static void seed_closed(fit_store *s)
{
    fit_cluster *c = s->on_state_data;
    c->handles--;
    maybe_closed(c);
}

static void timer_closed(uv_handle_t *h)
{
    fit_cluster *c = h->data;
    c->handles--;
    maybe_closed(c);
}

void fit_cluster_close(fit_cluster *c, void (*on_closed)(fit_cluster *c))
{
    if (c->closing)
        return;
    c->closing = 1;
    c->on_closed = on_closed;
    fit_cluster_req *list = c->waiting;
    c->waiting = NULL;
    while (list) {
        fit_cluster_req *r = list;
        list = r->next;
        finish(r, NULL, "closed");
    }
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, timer_closed);
    for (int i = 0; i < c->nseeds; i++) {
        c->seeds[i].on_state_data = c;
        fit_store_close(&c->seeds[i], seed_closed);
    }
    for (int i = 0; i < c->nnodes; i++)
        if (c->nodes[i])
            node_close(c, i);
}
