/*
 * fit_board_hub: the registry of live subscriptions and the tick.
 *
 * Boards are kept in a uthash by resolved name ("week:2026-W49:all") while
 * they have subscribers. A subscription to "week:current:..." is re-pointed
 * at the new week when the programme's week turns over (checked each tick).
 * A board is never read twice at once: one still reading when the next tick
 * comes stays dirty and is read again after.
 */
#include "fit_board_hub.h"
#include "fit_error.h"

#include <stdlib.h>
#include <string.h>
#include <uthash.h>

typedef struct hub_sub {
    void *subscriber;
    char board[FIT_BOARD_NAME_MAX]; /* as subscribed */
    int is_current;
    int limit;
    char *last; /* text of the entries last sent */
    struct hub_sub *next;
} hub_sub;

struct fit_board_state {
    char name[FIT_BOARD_NAME_MAX]; /* resolved */
    int dirty, reading;
    int64_t version;
    hub_sub *subs;
    UT_hash_handle hh;
};

static fit_board_state *board_get(fit_board_hub *hub, const char *name, int create)
{
    fit_board_state *b;
    HASH_FIND_STR(hub->boards, name, b);
    if (!b && create && (b = calloc(1, sizeof(*b)))) {
        snprintf(b->name, sizeof(b->name), "%s", name);
        HASH_ADD_STR(hub->boards, name, b);
    }
    return b;
}

static void board_maybe_free(fit_board_hub *hub, fit_board_state *b)
{
    if (!b->subs && !b->reading) {
        HASH_DEL(hub->boards, b);
        free(b);
    }
}

static void sub_free(hub_sub *s)
{
    free(s->last);
    free(s);
}

/* Detaches the subscription (subscriber, board) from b; NULL if none. */
static hub_sub *sub_take(fit_board_state *b, void *subscriber, const char *board)
{
    for (hub_sub **pp = &b->subs; *pp; pp = &(*pp)->next) {
        hub_sub *s = *pp;
        if (s->subscriber == subscriber && (!board || strcmp(s->board, board) == 0)) {
            *pp = s->next;
            s->next = NULL;
            return s;
        }
    }
    return NULL;
}

/* ---- reading and pushing ---- */

typedef struct {
    fit_board_hub *hub;
    char name[FIT_BOARD_NAME_MAX];
} read_ctx;

/*
 * What one tick sends for a board, built once per distinct (limit) and once
 * per distinct (board as subscribed, limit), however many subscribers share
 * it: serialising per subscriber was what bounded fanout (BENCHMARKS.md).
 */
typedef struct {
    int limit;
    json_t *entries;
    char *text; /* the entries, for "changed" */
} limit_view;

typedef struct {
    const char *board; /* as subscribed (borrowed from a subscription) */
    int limit;
    char *frame; /* the whole push, serialised */
    size_t len;
} push_frame;

#define VIEWS_MAX 16

static void board_read(const fit_board_entry *e, size_t n, int64_t size, fit_board_state *b,
                       fit_board_hub *hub)
{
    limit_view views[VIEWS_MAX];
    push_frame *frames = NULL;
    size_t nviews = 0, nframes = 0, capframes = 0;
    int changed = 0;
    /* Pass 1: which subscribers see a change (the board's version moves once). */
    for (hub_sub *s = b->subs; s; s = s->next) {
        limit_view *v = NULL;
        for (size_t i = 0; i < nviews && !v; i++)
            if (views[i].limit == s->limit)
                v = &views[i];
        if (!v && nviews < VIEWS_MAX) {
            v = &views[nviews++];
            v->limit = s->limit;
            v->entries = fit_board_entries_json(e, n < (size_t)s->limit ? n : (size_t)s->limit);
            v->text = json_dumps(v->entries, JSON_COMPACT);
        }
        if (!v || !v->text)
            continue;
        if (!s->last || strcmp(v->text, s->last) != 0)
            changed = 1;
    }
    if (changed)
        b->version++;
    /* Pass 2: one frame per (board as subscribed, limit), handed to each subscriber. */
    for (hub_sub *s = b->subs; changed && s; s = s->next) {
        limit_view *v = NULL;
        for (size_t i = 0; i < nviews && !v; i++)
            if (views[i].limit == s->limit)
                v = &views[i];
        if (!v || !v->text || (s->last && strcmp(v->text, s->last) == 0))
            continue;
        push_frame *f = NULL;
        for (size_t i = 0; i < nframes && !f; i++)
            if (frames[i].limit == s->limit && strcmp(frames[i].board, s->board) == 0)
                f = &frames[i];
        if (!f) {
            if (nframes == capframes) {
                size_t cap = capframes ? capframes * 2 : 8;
                push_frame *nf = realloc(frames, cap * sizeof(*nf));
                if (!nf)
                    break;
                frames = nf;
                capframes = cap;
            }
            f = &frames[nframes++];
            json_t *msg =
                json_pack("{s:s, s:s, s:s, s:I, s:O, s:I}", "type", "leaderboard", "board",
                          s->board, "week", b->name, "version", (json_int_t)b->version, "entries",
                          v->entries, "size", (json_int_t)size);
            f->board = s->board;
            f->limit = s->limit;
            f->frame = json_dumps(msg, JSON_COMPACT);
            f->len = f->frame ? strlen(f->frame) : 0;
            json_decref(msg);
        }
        if (!f->frame)
            continue;
        hub->deliver(s->subscriber, s->board, f->frame, f->len, hub->deliver_data);
        hub->pushes++;
        free(s->last);
        s->last = strdup(v->text);
    }
    for (size_t i = 0; i < nframes; i++)
        free(frames[i].frame);
    free(frames);
    for (size_t i = 0; i < nviews; i++) {
        json_decref(views[i].entries);
        free(views[i].text);
    }
}

static void read_done(int err, const fit_board_entry *e, size_t n, int64_t size, void *data)
{
    read_ctx *c = data;
    fit_board_hub *hub = c->hub;
    fit_board_state *b = board_get(hub, c->name, 0);
    free(c);
    if (!b)
        return;
    b->reading = 0;
    if (err)
        b->dirty = 1; /* Redis is away: try again next tick */
    else if (!hub->closing)
        board_read(e, n, size, b, hub);
    board_maybe_free(hub, b);
}

static void start_read(fit_board_hub *hub, fit_board_state *b)
{
    int limit = 0;
    for (hub_sub *s = b->subs; s; s = s->next)
        limit = s->limit > limit ? s->limit : limit;
    read_ctx *c = malloc(sizeof(*c));
    if (!c)
        return;
    c->hub = hub;
    snprintf(c->name, sizeof(c->name), "%s", b->name);
    b->dirty = 0;
    b->reading = 1;
    hub->reads++;
    if (fit_board_top(hub->ops, b->name, 0, (size_t)limit, read_done, c) != 0) {
        b->reading = 0;
        b->dirty = 1;
        free(c);
    }
}

/* The programme's week turned over: "current" subscriptions move to the new week. */
static void roll_current(fit_board_hub *hub, const char *week)
{
    fit_board_state *b, *tmp;
    hub_sub *moved = NULL;
    HASH_ITER(hh, hub->boards, b, tmp)
    {
        for (hub_sub **pp = &b->subs; *pp;) {
            hub_sub *s = *pp;
            if (s->is_current) {
                *pp = s->next;
                s->next = moved;
                moved = s;
            } else {
                pp = &s->next;
            }
        }
        board_maybe_free(hub, b);
    }
    while (moved) {
        hub_sub *s = moved;
        moved = s->next;
        char name[FIT_BOARD_NAME_MAX];
        const char *scope = strchr(s->board + 5, ':');
        snprintf(name, sizeof(name), "week:%s%s", week, scope ? scope : ":all");
        fit_board_state *nb = board_get(hub, name, 1);
        if (!nb) {
            sub_free(s);
            continue;
        }
        s->next = nb->subs;
        nb->subs = s;
        nb->dirty = 1;
    }
}

static void tick(uv_timer_t *t)
{
    fit_board_hub *hub = t->data;
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    char week[FIT_WEEK_LEN];
    fit_ops_current_week(hub->ops, (int64_t)tv.tv_sec * 1000, week);
    if (strcmp(week, hub->current_week) != 0) {
        if (hub->current_week[0])
            roll_current(hub, week);
        snprintf(hub->current_week, sizeof(hub->current_week), "%s", week);
    }
    fit_board_state *b, *tmp;
    HASH_ITER(hh, hub->boards, b, tmp)
    {
        if (b->dirty && !b->reading && b->subs)
            start_read(hub, b);
    }
}

/* ---- pub/sub ---- */

static void on_message(fit_store *store, const char *channel, const char *payload, size_t len,
                       void *data)
{
    fit_board_hub *hub = data;
    if (strcmp(channel, FIT_LB_CHANNEL) != 0) {
        if (hub->other)
            hub->other(payload, len, hub->deliver_data);
        return;
    }
    const char *p = payload, *end = payload + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char name[FIT_BOARD_NAME_MAX];
        if (n < sizeof(name)) {
            memcpy(name, p, n);
            name[n] = '\0';
            fit_board_hub_mark_dirty(hub, name);
        }
        p += n + 1;
    }
}

static void on_pubsub_state(fit_store *store, fit_store_state st, void *data)
{
    fit_board_hub *hub = data;
    if (st != FIT_STORE_READY)
        return;
    /* Whatever was published while we were not listening is lost: re-read all. */
    fit_board_state *b, *tmp;
    HASH_ITER(hh, hub->boards, b, tmp)
    {
        b->dirty = 1;
    }
}

int fit_board_hub_init(fit_board_hub *hub, uv_loop_t *loop, const fit_ops *ops,
                       const fit_store_options *redis, uint32_t tick_ms,
                       fit_hub_deliver_fn *deliver, void *data, const char *other_channel,
                       fit_hub_other_fn *other)
{
    memset(hub, 0, sizeof(*hub));
    hub->loop = loop;
    hub->ops = ops;
    hub->tick_ms = tick_ms;
    hub->deliver = deliver;
    hub->deliver_data = data;
    fit_store_options o = *redis;
    snprintf(hub->channels, sizeof(hub->channels), "%s%s%s", FIT_LB_CHANNEL,
             other_channel ? " " : "", other_channel ? other_channel : "");
    hub->other = other;
    o.subscribe = hub->channels;
    o.on_message = on_message;
    o.on_message_data = hub;
    int rc = fit_store_init(&hub->pubsub, loop, &o, NULL, 0);
    if (rc)
        return rc;
    hub->pubsub.on_state = on_pubsub_state;
    hub->pubsub.on_state_data = hub;
    uv_timer_init(loop, &hub->tick);
    hub->tick.data = hub;
    uv_timer_start(&hub->tick, tick, tick_ms, tick_ms);
    return 0;
}

int fit_board_hub_has(fit_board_hub *hub, void *subscriber, const char *board)
{
    fit_board_state *b, *tmp;
    HASH_ITER(hh, hub->boards, b, tmp)
    {
        for (hub_sub *s = b->subs; s; s = s->next)
            if (s->subscriber == subscriber && strcmp(s->board, board) == 0)
                return 1;
    }
    return 0;
}

int64_t fit_board_hub_subscribe(fit_board_hub *hub, void *subscriber, const char *board,
                                int is_current, const char *resolved, int limit,
                                const json_t *entries, int *added)
{
    /* One subscription per (subscriber, board): a new one replaces the old, wherever it is. */
    *added = !fit_board_hub_unsubscribe(hub, subscriber, board);
    fit_board_state *b = board_get(hub, resolved, 1);
    if (!b)
        return FIT_ENOMEM;
    hub_sub *s = calloc(1, sizeof(*s));
    if (!s) {
        board_maybe_free(hub, b);
        return FIT_ENOMEM;
    }
    s->subscriber = subscriber;
    snprintf(s->board, sizeof(s->board), "%s", board);
    s->is_current = is_current;
    s->limit = limit;
    free(s->last);
    s->last = json_dumps(entries, JSON_COMPACT);
    s->next = b->subs;
    b->subs = s;
    /* A change may have landed between the snapshot read and now: look again next tick. */
    b->dirty = 1;
    return b->version;
}

int fit_board_hub_unsubscribe(fit_board_hub *hub, void *subscriber, const char *board)
{
    fit_board_state *b, *tmp;
    HASH_ITER(hh, hub->boards, b, tmp)
    {
        hub_sub *s = sub_take(b, subscriber, board);
        if (s) {
            sub_free(s);
            board_maybe_free(hub, b);
            return 1;
        }
    }
    return 0;
}

void fit_board_hub_unsubscribe_all(fit_board_hub *hub, void *subscriber)
{
    fit_board_state *b, *tmp;
    HASH_ITER(hh, hub->boards, b, tmp)
    {
        hub_sub *s;
        while ((s = sub_take(b, subscriber, NULL)))
            sub_free(s);
        board_maybe_free(hub, b);
    }
}

void fit_board_hub_mark_dirty(fit_board_hub *hub, const char *resolved)
{
    fit_board_state *b = board_get(hub, resolved, 0);
    if (b)
        b->dirty = 1;
}

typedef struct {
    fit_board_hub *hub;
    void (*on_closed)(fit_board_hub *);
    int pending;
} close_ctx;

static void close_step(close_ctx *c)
{
    if (--c->pending > 0)
        return;
    if (c->on_closed)
        c->on_closed(c->hub);
    free(c);
}

static void tick_closed(uv_handle_t *h)
{
    close_step(h->data);
}

static void pubsub_closed(fit_store *store)
{
    close_step(store->on_state_data);
}

void fit_board_hub_close(fit_board_hub *hub, void (*on_closed)(fit_board_hub *hub))
{
    hub->closing = 1;
    fit_board_state *b, *tmp;
    HASH_ITER(hh, hub->boards, b, tmp)
    {
        hub_sub *s;
        while ((s = b->subs)) {
            b->subs = s->next;
            sub_free(s);
        }
        /* A board still being read is freed by read_done (reading keeps it). */
        board_maybe_free(hub, b);
    }
    close_ctx *c = calloc(1, sizeof(*c));
    if (c) {
        c->hub = hub;
        c->on_closed = on_closed;
        c->pending = 2;
        hub->tick.data = c;
        hub->pubsub.on_state_data = c;
    }
    uv_timer_stop(&hub->tick);
    uv_close((uv_handle_t *)&hub->tick, c ? tick_closed : NULL);
    fit_store_close(&hub->pubsub, c ? pubsub_closed : NULL);
}
