/*
 * fit_boards: the cross-shard merge of board reads. One read-only Function
 * call per shard (fit_board_top / fit_board_around), all sent at once; the
 * last reply to arrive does the merge. While the calls are being sent the
 * context holds one extra count, so an early reply cannot finish the merge.
 */
#include "fit_boards.h"
#include "fit_error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TIE 68719476736.0 /* 2^36: workers/fitsync.lua, "Leaderboards" */

/* "fit:{s<i>}:lb:<week>:<scope>" for board "week:<week>:<scope>". */
static void board_key(char *buf, unsigned shard, const char *board)
{
    snprintf(buf, FIT_KEY_MAX, "fit:{s%u}:lb:%s", shard, board + 5);
}

static void fill_entry(fit_board_entry *e, const char *user, const char *score, const char *name)
{
    memset(e, 0, sizeof(*e));
    snprintf(e->user, sizeof(e->user), "%s", user ? user : "");
    e->stored = score ? strtod(score, NULL) : 0;
    e->score = (int64_t)floor(e->stored / TIE);
    if (name && *name) {
        snprintf(e->name, sizeof(e->name), "%s", name);
    } else {
        /* No display name: a stable pseudonym, not the user id. */
        snprintf(e->name, sizeof(e->name), "member-%04x", fit_shard_of(e->user, 65536));
    }
}

static int by_stored_desc(const void *a, const void *b)
{
    const fit_board_entry *x = a, *y = b;
    if (x->stored != y->stored)
        return x->stored < y->stored ? 1 : -1;
    return strcmp(x->user, y->user);
}

static int by_stored_asc(const void *a, const void *b)
{
    return -by_stored_desc(a, b);
}

static const char *s_el(const redisReply *r, size_t i)
{
    return i < r->elements && r->element[i]->type == REDIS_REPLY_STRING ? r->element[i]->str : NULL;
}

static int64_t i_el(const redisReply *r, size_t i)
{
    if (i >= r->elements)
        return 0;
    if (r->element[i]->type == REDIS_REPLY_INTEGER)
        return r->element[i]->integer;
    return r->element[i]->str ? strtoll(r->element[i]->str, NULL, 10) : 0;
}

static int reply_err(const char *fn, const redisReply *r)
{
    if (!r)
        return FIT_EUNAVAILABLE;
    if (r->type == REDIS_REPLY_ERROR)
        fprintf(stderr, "fitsync: %s: %s\n", fn, r->str);
    return FIT_EINTERNAL;
}

/* Sends fn to every shard's part of board with extra args; counts sends in *pending. */
static int fan_out(const fit_ops *ops, const char *fn, const char *board, const char **extra,
                   int nextra, fit_store_cb *cb, void *ctx, unsigned *pending)
{
    int sent = 0;
    for (unsigned s = 0; s < ops->shards; s++) {
        char key[FIT_KEY_MAX];
        const char *argv[8] = {"FCALL_RO", fn, "1", key};
        board_key(key, s, board);
        for (int i = 0; i < nextra; i++)
            argv[4 + i] = extra[i];
        (*pending)++;
        if (fit_store_command(ops->store, cb, ctx, 4 + nextra, argv, NULL) != 0)
            (*pending)--;
        else
            sent++;
    }
    return sent == (int)ops->shards ? 0 : FIT_EUNAVAILABLE;
}

/* ---- top ---- */

typedef struct {
    fit_board_cb *cb;
    void *data;
    size_t offset, limit;
    unsigned pending;
    int err;
    int64_t size;
    fit_board_entry *all;
    size_t n, cap;
} top_ctx;

static void top_release(top_ctx *c)
{
    if (--c->pending > 0)
        return;
    if (c->err) {
        c->cb(c->err, NULL, 0, 0, c->data);
    } else {
        qsort(c->all, c->n, sizeof(*c->all), by_stored_desc);
        size_t from = c->offset < c->n ? c->offset : c->n;
        size_t n = c->n - from < c->limit ? c->n - from : c->limit;
        for (size_t i = 0; i < n; i++)
            c->all[from + i].rank = (int64_t)(from + i + 1);
        c->cb(0, c->all + from, n, c->size, c->data);
    }
    free(c->all);
    free(c);
}

static void top_part(redisReply *r, const char *errstr, void *data)
{
    top_ctx *c = data;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 1) {
        c->err = reply_err("fit_board_top", r);
    } else {
        c->size += i_el(r, 0);
        for (size_t i = 1; i + 2 < r->elements && c->n < c->cap; i += 3)
            fill_entry(&c->all[c->n++], s_el(r, i), s_el(r, i + 1), s_el(r, i + 2));
    }
    top_release(c);
}

int fit_board_top(const fit_ops *ops, const char *board, size_t offset, size_t limit,
                  fit_board_cb *cb, void *data)
{
    top_ctx *c = calloc(1, sizeof(*c));
    size_t per_shard = offset + limit;
    if (!c || !(c->all = calloc(per_shard * ops->shards + 1, sizeof(*c->all)))) {
        free(c);
        return FIT_ENOMEM;
    }
    c->cb = cb;
    c->data = data;
    c->offset = offset;
    c->limit = limit;
    c->cap = per_shard * ops->shards;
    char n[24];
    snprintf(n, sizeof(n), "%zu", per_shard);
    const char *extra[] = {n};
    c->pending = 1;
    if (fan_out(ops, "fit_board_top", board, extra, 1, top_part, c, &c->pending) != 0) {
        if (c->pending == 1) { /* nothing sent: fail at once, callback never called */
            free(c->all);
            free(c);
            return FIT_EUNAVAILABLE;
        }
        c->err = FIT_EUNAVAILABLE;
    }
    top_release(c);
    return 0;
}

/* ---- rank ---- */

typedef struct {
    const fit_ops *ops;
    fit_rank_cb *cb;
    void *data;
    char board[128];
    char user[65];
    char score[48];
    unsigned pending;
    int err;
    fit_rank r;
    int64_t count_above;
    fit_board_entry ab[64], be[64]; /* neighbour candidates from every shard */
    size_t nab, nbe;
} rank_ctx;

/* Reads one shard's {score, count above, size, nabove, above..., below...}. */
static void rank_collect(rank_ctx *c, const redisReply *r)
{
    c->count_above += i_el(r, 1);
    c->r.size += i_el(r, 2);
    size_t nabove = (size_t)i_el(r, 3);
    for (size_t i = 5; i + 2 < r->elements; i += 3) {
        int is_above = (i - 5) / 3 < nabove;
        fit_board_entry *e = is_above ? (c->nab < 64 ? &c->ab[c->nab++] : NULL)
                                      : (c->nbe < 64 ? &c->be[c->nbe++] : NULL);
        if (e)
            fill_entry(e, s_el(r, i), s_el(r, i + 1), s_el(r, i + 2));
    }
}

static void rank_release(rank_ctx *c)
{
    if (--c->pending > 0)
        return;
    if (c->err) {
        c->cb(c->err, NULL, c->data);
    } else {
        c->r.found = 1;
        c->r.me.rank = c->count_above + 1;
        qsort(c->ab, c->nab, sizeof(*c->ab), by_stored_asc);
        qsort(c->be, c->nbe, sizeof(*c->be), by_stored_desc);
        for (size_t i = 0; i < c->nab && i < FIT_RANK_NEIGHBOURS; i++) {
            c->r.above[i] = c->ab[i];
            c->r.above[i].rank = c->r.me.rank - 1 - (int64_t)i;
            c->r.nabove++;
        }
        for (size_t i = 0; i < c->nbe && i < FIT_RANK_NEIGHBOURS; i++) {
            c->r.below[i] = c->be[i];
            c->r.below[i].rank = c->r.me.rank + 1 + (int64_t)i;
            c->r.nbelow++;
        }
        c->cb(0, &c->r, c->data);
    }
    free(c);
}

static void rank_part(redisReply *r, const char *errstr, void *data)
{
    rank_ctx *c = data;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 5)
        c->err = reply_err("fit_board_around", r);
    else
        rank_collect(c, r);
    rank_release(c);
}

/* The member's own shard answered: now ask every shard around their score. */
static void rank_own(redisReply *r, const char *errstr, void *data)
{
    rank_ctx *c = data;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 5) {
        c->cb(reply_err("fit_board_around", r), NULL, c->data);
        free(c);
        return;
    }
    const char *score = s_el(r, 0);
    if (!score || !*score) {
        c->r.size = i_el(r, 2); /* this shard's only; enough to say "not on the board" */
        c->cb(0, &c->r, c->data);
        free(c);
        return;
    }
    snprintf(c->score, sizeof(c->score), "%s", score);
    fill_entry(&c->r.me, c->user, score, s_el(r, 4));
    const char *extra[] = {c->score, "", "2"};
    c->pending = 1;
    if (fan_out(c->ops, "fit_board_around", c->board, extra, 3, rank_part, c, &c->pending) != 0)
        c->err = FIT_EUNAVAILABLE;
    rank_release(c);
}

int fit_board_rank(const fit_ops *ops, const char *board, const char *user, fit_rank_cb *cb,
                   void *data)
{
    rank_ctx *c = calloc(1, sizeof(*c));
    if (!c)
        return FIT_ENOMEM;
    c->ops = ops;
    c->cb = cb;
    c->data = data;
    snprintf(c->board, sizeof(c->board), "%s", board);
    snprintf(c->user, sizeof(c->user), "%s", user);
    char key[FIT_KEY_MAX];
    board_key(key, fit_shard_of(user, ops->shards), board);
    const char *argv[] = {"FCALL_RO", "fit_board_around", "1", key, "", user, "0"};
    int rc = fit_store_command(ops->store, rank_own, c, 7, argv, NULL);
    if (rc)
        free(c);
    return rc;
}

json_t *fit_board_entry_json(const fit_board_entry *e)
{
    return json_pack("{s:I, s:s, s:I}", "rank", (json_int_t)e->rank, "name", e->name, "score",
                     (json_int_t)e->score);
}

json_t *fit_board_entries_json(const fit_board_entry *entries, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, fit_board_entry_json(&entries[i]));
    return a;
}
