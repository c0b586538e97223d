/*
 * fit_h_boards: leaderboard.get, rank.get, leaderboard.subscribe and
 * leaderboard.unsubscribe (docs/PROTOCOL.md, "Leaderboards").
 *
 * Any signed-in role may read weekly boards. Board names are parsed against
 * the configured districts and age bands (protocol/fit_board.c); a name
 * saying "current" is resolved to the programme's current ISO week.
 */
#include "fit_boards.h"
#include "fit_handlers.h"

#include <stdlib.h>
#include <string.h>

#define DEFAULT_LIMIT 10

/* Parses the request's "board"; on error replies and returns -1. */
static int board_field(fit_session *s, fit_request *req, fit_board_name *b, char *resolved,
                       size_t len)
{
    json_t *v = json_object_get(req->root, "board");
    fit_field_error fe;
    if (!v || !json_is_string(v)) {
        fit_session_send_error(s, req->id, v ? FIT_EINVALID_TYPE : FIT_EMISSING_FIELD, "board",
                               "board (e.g. \"week:current:all\") is required");
        return -1;
    }
    if (fit_board_parse(json_string_value(v), &s->srv->cfg->boards, b, &fe) != 0) {
        fit_session_send_error(s, req->id, fe.code, fe.field, fe.message);
        return -1;
    }
    if (!s->authed && !b->event) {
        fit_session_send_error(s, req->id, FIT_EUNAUTHENTICATED, "board",
                               "without a token only public event boards can be read");
        return -1;
    }
    char week[FIT_WEEK_LEN];
    fit_current_week(s->srv, week);
    fit_board_resolve(b, week, resolved, len);
    return 0;
}

/* Hosts of the event (and staff) also see private events' boards. */
static int public_only(const fit_session *s, const fit_board_name *b)
{
    if (!s->authed || !b->event)
        return 1;
    if (s->claims.role == FIT_ROLE_STAFF)
        return 0;
    return !(s->claims.role == FIT_ROLE_HOST && strcmp(s->claims.event, b->event_id) == 0);
}

typedef struct {
    fit_pending *p;
    char board[FIT_BOARD_NAME_MAX];    /* as asked */
    char resolved[FIT_BOARD_NAME_MAX]; /* with the week */
    int is_current;
    int64_t offset, limit;
    int subscribe;
    void *next; /* the session's queue of unsubscribes waiting for subscribe reads */
} board_req;

static void unsubscribe_now(board_req *b);

/*
 * A subscribe's read has finished: once none is in flight, the unsubscribes
 * sent after them run, in order. So subscribe-then-unsubscribe sent together
 * ends unsubscribed whichever Redis (or cluster node) answers first.
 */
static void board_read_done(fit_session *s)
{
    if (--s->board_reads > 0)
        return;
    while (s->unsub_queue) {
        board_req *q = s->unsub_queue;
        s->unsub_queue = q->next;
        unsubscribe_now(q);
    }
}

static board_req *board_req_new(fit_session *s, fit_request *req)
{
    board_req *b = calloc(1, sizeof(*b));
    fit_pending *p = b ? fit_pending_new(s, req) : NULL;
    if (!p) {
        free(b);
        return NULL;
    }
    b->p = p;
    snprintf(b->board, sizeof(b->board), "%s",
             json_string_value(json_object_get(req->root, "board")));
    return b;
}

static void board_req_free(board_req *b)
{
    fit_pending_free(b->p);
    free(b);
}

static void top_reply_inner(int err, const fit_board_entry *e, size_t n, int64_t size,
                            board_req *b);

static void top_reply(int err, const fit_board_entry *e, size_t n, int64_t size, void *data)
{
    board_req *b = data;
    fit_session *s = b->p->s;
    int subscribe = b->subscribe;
    fit_session_ref(s); /* b (and its reference) is freed inside */
    top_reply_inner(err, e, n, size, b);
    if (subscribe)
        board_read_done(s);
    fit_session_unref(s);
}

static void top_reply_inner(int err, const fit_board_entry *e, size_t n, int64_t size, board_req *b)
{
    fit_session *s = b->p->s;
    const char *re = fit_pending_re(b->p);
    if (err == FIT_EFORBIDDEN || err == FIT_ENOT_FOUND) {
        fit_session_send_error(s, re, err, "board",
                               err == FIT_ENOT_FOUND ? "no such event"
                                                     : "this event's standings are not public");
    } else if (err) {
        fit_reply_op_error(s, re, err, "");
    } else if (b->subscribe && !s->wsi) {
        /* The connection closed while we read: nothing to register. */
    } else {
        json_t *entries = fit_board_entries_json(e, n);
        json_t *r = fit_reply_new(b->subscribe ? "leaderboard.subscribe" : "leaderboard.get", re);
        json_object_set_new(r, "board", json_string(b->board));
        json_object_set_new(r, "week", json_string(b->resolved));
        json_object_set_new(r, "size", json_integer(size));
        if (b->subscribe) {
            int added = 0;
            int64_t v = fit_board_hub_subscribe(&s->srv->hub, s, b->board, b->is_current,
                                                b->resolved, (int)b->limit, entries, &added);
            if (v < 0) {
                json_decref(r);
                json_decref(entries);
                fit_session_send_error(s, re, FIT_ENOMEM, "", NULL);
                board_req_free(b);
                return;
            }
            s->nsubs += added;
            json_object_set_new(r, "version", json_integer(v));
            json_object_set_new(r, "limit", json_integer(b->limit));
        } else {
            json_object_set_new(r, "offset", json_integer(b->offset));
        }
        json_object_set_new(r, "entries", entries);
        fit_session_send(s, r);
        json_decref(r);
    }
    board_req_free(b);
}

/* leaderboard.get and leaderboard.subscribe: validate, then read the top. */
static void board_top_request(fit_session *s, fit_request *req, int subscribe)
{
    fit_board_name name;
    char resolved[FIT_BOARD_NAME_MAX];
    int64_t offset = 0, limit = DEFAULT_LIMIT;
    int present;
    if (board_field(s, req, &name, resolved, sizeof(resolved)) != 0)
        return;
    /* Pages go 10,000 deep: each shard is asked for its top offset + limit. */
    if (!subscribe && fit_get_int_field(s, req, "offset", 0, 10000, &offset, &present) != 0)
        return;
    if (fit_get_int_field(s, req, "limit", 1, FIT_BOARD_LIMIT_MAX, &limit, &present) != 0)
        return;
    const char *asked = json_string_value(json_object_get(req->root, "board"));
    if (subscribe && s->nsubs >= s->srv->cfg->boards_max_subscriptions &&
        !fit_board_hub_has(&s->srv->hub, s, asked)) {
        char msg[96];
        snprintf(msg, sizeof(msg), "at most %d leaderboard subscriptions per connection",
                 s->srv->cfg->boards_max_subscriptions);
        fit_session_send_error(s, req->id, FIT_ETOO_MANY_SUBSCRIPTIONS, "board", msg);
        return;
    }
    board_req *b = board_req_new(s, req);
    if (!b)
        return;
    snprintf(b->resolved, sizeof(b->resolved), "%s", resolved);
    b->is_current = name.current;
    b->offset = offset;
    b->limit = limit;
    b->subscribe = subscribe;
    if (subscribe)
        s->board_reads++; /* before the call: its reply may come at any time after */
    int rc = name.event ? fit_event_board_top(&s->srv->ops, resolved, (size_t)offset, (size_t)limit,
                                              public_only(s, &name), top_reply, b)
                        : fit_board_top(&s->srv->ops, resolved, (size_t)offset, (size_t)limit,
                                        top_reply, b);
    if (rc) {
        fit_reply_op_error(s, req->id, rc, "");
        board_req_free(b);
        if (subscribe)
            board_read_done(s);
    }
}

void fit_h_leaderboard_get(fit_session *s, fit_request *req)
{
    board_top_request(s, req, 0);
}

void fit_h_leaderboard_subscribe(fit_session *s, fit_request *req)
{
    board_top_request(s, req, 1);
}

static void unsubscribe_now(board_req *b)
{
    fit_session *s = b->p->s;
    int had = fit_board_hub_unsubscribe(&s->srv->hub, s, b->board);
    if (had)
        s->nsubs--;
    json_t *r = fit_reply_new("leaderboard.unsubscribe", fit_pending_re(b->p));
    json_object_set_new(r, "board", json_string(b->board));
    json_object_set_new(r, "subscribed", json_false());
    json_object_set_new(r, "was_subscribed", json_boolean(had));
    fit_session_send(s, r);
    json_decref(r);
    board_req_free(b);
}

/*
 * A subscribe sent just before may still be reading its snapshot from Redis;
 * so that it is registered (and answered) first, the unsubscribe waits until
 * the session's subscribe reads are done (board_read_done).
 */
void fit_h_leaderboard_unsubscribe(fit_session *s, fit_request *req)
{
    fit_board_name name;
    char resolved[FIT_BOARD_NAME_MAX];
    if (board_field(s, req, &name, resolved, sizeof(resolved)) != 0)
        return;
    board_req *b = board_req_new(s, req);
    if (!b)
        return;
    if (s->board_reads == 0) {
        unsubscribe_now(b);
        return;
    }
    board_req **q = (board_req **)&s->unsub_queue;
    while (*q)
        q = (board_req **)&(*q)->next;
    *q = b;
}

static void rank_reply(int err, const fit_rank *rk, void *data)
{
    board_req *b = data;
    fit_session *s = b->p->s;
    const char *re = fit_pending_re(b->p);
    if (err) {
        fit_reply_op_error(s, re, err, "");
    } else {
        json_t *r = fit_reply_new("rank.get", re);
        json_object_set_new(r, "board", json_string(b->board));
        json_object_set_new(r, "week", json_string(b->resolved));
        json_object_set_new(r, "on_board", json_boolean(rk->found));
        if (rk->found) {
            json_t *above = json_array(), *below = json_array();
            /* Listed from the top down: the nearest neighbour above comes last. */
            for (size_t i = rk->nabove; i-- > 0;)
                json_array_append_new(above, fit_board_entry_json(&rk->above[i]));
            for (size_t i = 0; i < rk->nbelow; i++)
                json_array_append_new(below, fit_board_entry_json(&rk->below[i]));
            json_object_set_new(r, "rank", json_integer(rk->me.rank));
            json_object_set_new(r, "score", json_integer(rk->me.score));
            json_object_set_new(r, "name", json_string(rk->me.name));
            json_object_set_new(r, "size", json_integer(rk->size));
            json_object_set_new(r, "above", above);
            json_object_set_new(r, "below", below);
        }
        fit_session_send(s, r);
        json_decref(r);
    }
    board_req_free(b);
}

void fit_h_rank_get(fit_session *s, fit_request *req)
{
    fit_board_name name;
    char resolved[FIT_BOARD_NAME_MAX];
    if (board_field(s, req, &name, resolved, sizeof(resolved)) != 0)
        return;
    if (name.event || name.challenge) {
        fit_session_send_error(s, req->id, FIT_EINVALID_VALUE, "board",
                               "rank.get is for weekly boards; event standings list every team");
        return;
    }
    board_req *b = board_req_new(s, req);
    if (!b)
        return;
    snprintf(b->resolved, sizeof(b->resolved), "%s", resolved);
    int rc = fit_board_rank(&s->srv->ops, resolved, b->p->user, rank_reply, b);
    if (rc) {
        fit_reply_op_error(s, req->id, rc, "");
        board_req_free(b);
    }
}
