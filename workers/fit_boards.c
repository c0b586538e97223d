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

/*
 * A board's key on shard i: "fit:{s<i>}:lb:<week>:<scope>" for "week:<week>:<scope>",
 * "fit:{s<i>}:ch:<id>/<scope>" for "challenge:<id>:<scope>".
 */
static void board_key(char *buf, unsigned shard, const char *board)
{
    if (strncmp(board, "challenge:", 10) == 0) {
        const char *id = board + 10, *c = strchr(id, ':');
        snprintf(buf, FIT_KEY_MAX, "fit:{s%u}:ch:%.*s/%s", shard, c ? (int)(c - id) : 0, id,
                 c ? c + 1 : "all");
        return;
    }
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
        if (fit_redis_command(&ops->redis, FIT_REDIS_IDEMPOTENT, cb, ctx, 4 + nextra, argv, NULL) !=
            0)
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
    int plain_scores;  /* challenge boards: the score is the progress itself */
    int sum_by_member; /* challenge teams: add up a member's entries from every shard */
} top_ctx;

static void top_release(top_ctx *c)
{
    if (--c->pending > 0)
        return;
    if (c->err) {
        c->cb(c->err, NULL, 0, 0, c->data);
    } else {
        if (c->sum_by_member) {
            size_t k = 0;
            for (size_t i = 0; i < c->n; i++) {
                size_t j = 0;
                while (j < k && strcmp(c->all[j].user, c->all[i].user) != 0)
                    j++;
                if (j < k)
                    c->all[j].stored += c->all[i].stored;
                else
                    c->all[k++] = c->all[i];
            }
            c->n = k;
            c->size = (int64_t)k;
        }
        if (c->plain_scores)
            for (size_t i = 0; i < c->n; i++)
                c->all[i].score = (int64_t)floor(c->all[i].stored);
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

/*
 * Reads a board from every shard with Function fn (one call each) and merges:
 * per_shard entries are asked of each shard (n_arg is the count sent; "0" =
 * all). A virtual challenge's "all" board is a top-K merge of members'
 * progress like a weekly board; its "teams" board sums each team's per-shard
 * totals (a team's members live on many shards), so every shard sends all.
 */
static int shard_top(const fit_ops *ops, const char *board, const char *fn, size_t offset,
                     size_t limit, size_t per_shard, const char *n_arg, int sum_by_member,
                     int plain_scores, fit_board_cb *cb, void *data)
{
    top_ctx *c = calloc(1, sizeof(*c));
    if (!c || !(c->all = calloc(per_shard * ops->shards + 1, sizeof(*c->all)))) {
        free(c);
        return FIT_ENOMEM;
    }
    c->cb = cb;
    c->data = data;
    c->offset = offset;
    c->limit = limit;
    c->cap = per_shard * ops->shards;
    c->sum_by_member = sum_by_member;
    c->plain_scores = plain_scores;
    const char *extra[] = {n_arg};
    c->pending = 1;
    if (fan_out(ops, fn, board, extra, 1, top_part, c, &c->pending) != 0) {
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

int fit_board_top(const fit_ops *ops, const char *board, size_t offset, size_t limit,
                  fit_board_cb *cb, void *data)
{
    char n[24];
    if (strncmp(board, "event:", 6) == 0)
        return fit_event_board_top(ops, board, offset, limit, 0, cb, data);
    if (strncmp(board, "challenge:", 10) == 0) {
        int teams = strlen(board) > 6 && strcmp(board + strlen(board) - 6, ":teams") == 0;
        snprintf(n, sizeof(n), "%zu", teams ? (size_t)0 : offset + limit);
        return shard_top(ops, board, "fit_challenge_top", offset, limit,
                         teams ? 1000 : offset + limit, n, teams, 1, cb, data);
    }
    snprintf(n, sizeof(n), "%zu", offset + limit);
    return shard_top(ops, board, "fit_board_top", offset, limit, offset + limit, n, 0, 0, cb, data);
}

/* ---- event standings ---- */

void fit_event_key(char *buf, unsigned shards, const char *event, const char *suffix)
{
    snprintf(buf, FIT_KEY_MAX, "fit:{s%u}:e:%s/%s", fit_shard_of(event, shards), event, suffix);
}

typedef struct {
    fit_board_cb *cb;
    void *data;
    size_t offset, limit;
    double lap_m;
} event_ctx;

static void event_top_done(redisReply *r, const char *errstr, void *data)
{
    event_ctx *c = data;
    const char *status = r && r->type == REDIS_REPLY_ARRAY ? s_el(r, 0) : NULL;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 1) {
        c->cb(reply_err("fit_event_top", r), NULL, 0, 0, c->data);
    } else if (status && strcmp(status, "private") == 0) {
        c->cb(FIT_EFORBIDDEN, NULL, 0, 0, c->data);
    } else if (status && strcmp(status, "not_found") == 0) {
        c->cb(FIT_ENOT_FOUND, NULL, 0, 0, c->data);
    } else {
        size_t n = (r->elements - 1) / 7, k = 0;
        fit_board_entry *e = calloc(n + 1, sizeof(*e));
        if (!e) {
            c->cb(FIT_ENOMEM, NULL, 0, 0, c->data);
            free(c);
            return;
        }
        for (size_t i = 0; i < n; i++) {
            size_t b = 1 + 7 * i;
            if (i < c->offset)
                continue;
            fit_board_entry *x = &e[k++];
            snprintf(x->user, sizeof(x->user), "%s", s_el(r, b) ? s_el(r, b) : "");
            x->stored = s_el(r, b + 1) ? strtod(s_el(r, b + 1), NULL) : 0;
            snprintf(x->name, sizeof(x->name), "%s", s_el(r, b + 2) ? s_el(r, b + 2) : "");
            snprintf(x->category, sizeof(x->category), "%s", s_el(r, b + 3) ? s_el(r, b + 3) : "");
            x->score = s_el(r, b + 4) ? strtoll(s_el(r, b + 4), NULL, 10) : 0;
            x->last_ms = s_el(r, b + 5) ? strtoll(s_el(r, b + 5), NULL, 10) : -1;
            x->distance_m = (double)x->score * (s_el(r, b + 6) ? strtod(s_el(r, b + 6), NULL) : 0);
            x->event = 1;
            x->rank = (int64_t)(i + 1);
        }
        c->cb(0, e, k, i_el(r, 0), c->data);
        free(e);
    }
    free(c);
}

int fit_event_board_top(const fit_ops *ops, const char *board, size_t offset, size_t limit,
                        int public_only, fit_board_cb *cb, void *data)
{
    /* board = "event:<id>:<scope>" -> key "fit:{sN}:e:<id>/st:<scope>" */
    const char *id = board + 6, *c = strchr(id, ':');
    if (!c)
        return FIT_EINVALID_VALUE;
    char event[65], suffix[80], key[FIT_KEY_MAX], n[24];
    snprintf(event, sizeof(event), "%.*s", (int)(c - id), id);
    snprintf(suffix, sizeof(suffix), "st:%s", c + 1);
    fit_event_key(key, ops->shards, event, suffix);
    snprintf(n, sizeof(n), "%zu", offset + limit);
    event_ctx *x = calloc(1, sizeof(*x));
    if (!x)
        return FIT_ENOMEM;
    x->cb = cb;
    x->data = data;
    x->offset = offset;
    x->limit = limit;
    const char *argv[] = {"FCALL_RO", "fit_event_top", "1", key, n, public_only ? "1" : "0"};
    int rc = fit_redis_command(&ops->redis, FIT_REDIS_IDEMPOTENT, event_top_done, x, 6, argv, NULL);
    if (rc)
        free(x);
    return rc;
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
    int rc = fit_redis_command(&ops->redis, FIT_REDIS_IDEMPOTENT, rank_own, c, 7, argv, NULL);
    if (rc)
        free(c);
    return rc;
}

json_t *fit_board_entry_json(const fit_board_entry *e)
{
    if (e->event) {
        json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:I, s:I, s:f}", "rank", (json_int_t)e->rank,
                              "bib", e->user, "name", e->name, "category", e->category, "score",
                              (json_int_t)e->score, "laps", (json_int_t)e->score, "distance_m",
                              e->distance_m);
        if (e->last_ms >= 0) {
            char t[40];
            fit_time_format(e->last_ms, 0, t, sizeof(t));
            json_object_set_new(o, "last_lap_at", json_string(t));
        } else {
            json_object_set_new(o, "last_lap_at", json_null());
        }
        return o;
    }
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
