/*
 * fit_handlers.h: what the command handlers share (private to server/).
 *
 * Handlers live in three files: fit_handlers.c (the table, dispatch, rate
 * limit, hello, profile), fit_h_activity.c (uploads, edits, deletes) and
 * fit_h_sync.c (change feed, snapshot, history, export, account deletion).
 */
#ifndef FIT_HANDLERS_H
#define FIT_HANDLERS_H

#include "fit_ops.h"
#include "fit_server.h"

/* A request waiting for Redis: holds a session reference and the reply id. */
typedef struct {
    fit_session *s;
    char re[FIT_MESSAGE_ID_MAX + 1];
    int has_re;
    char user[65];
    char device[FIT_CLIENT_ID_MAX + 1];
} fit_pending;

/* Takes a session reference and counts the request in flight. NULL on ENOMEM. */
fit_pending *fit_pending_new(fit_session *s, const fit_request *req);
void fit_pending_free(fit_pending *p);
const char *fit_pending_re(const fit_pending *p);
/* Replies "unavailable": Redis is away and nothing was changed. */
void fit_reply_unavailable(fit_session *s, const char *re);
/* Replies with an error for a code from fit_ops (conflict, not_found, unavailable...). */
void fit_reply_op_error(fit_session *s, const char *re, int err, const char *field);

/* Current UTC time in milliseconds (wall clock). */
int64_t fit_now_ms(void);
/* Validation rules at this moment. */
fit_rules fit_rules_now(fit_server *srv);
/* The current ISO week in the programme's time zone (config "timezone"). */
void fit_current_week(fit_server *srv, char *name);

/*
 * After a change: a "change" push carrying the new cursor to the user's other
 * devices (all but from, which may be NULL), and "progress" pushes with the
 * status of every week in weeks to all of them (DESIGN: after any change).
 */
void fit_push_change(fit_server *srv, const char *user, fit_session *from, const char *cursor,
                     const char *kind, const char *op, const char *id, int64_t rev, json_t *item);
void fit_push_progress(fit_server *srv, const char *user, const char *const *weeks, size_t n);

/* Sends a conflict error carrying the current item. */
void fit_reply_conflict(fit_session *s, const char *re, const char *client_id, const fit_change *c);

/* Reads an optional integer field >= min; returns 0 and *present, or replies an error. */
int fit_get_int_field(fit_session *s, const fit_request *req, const char *field, int64_t min,
                      int64_t max, int64_t *out, int *present);
/* Reads a required string field that must be an id ([A-Za-z0-9._:@-], 1..max). */
const char *fit_get_id_field(fit_session *s, const fit_request *req, const char *field, size_t max);

/* The handlers. */
void fit_h_activity_upload(fit_session *s, fit_request *req);
void fit_h_summary_upload(fit_session *s, fit_request *req);
void fit_h_activity_update(fit_session *s, fit_request *req);
void fit_h_activity_delete(fit_session *s, fit_request *req);
void fit_h_summary_delete(fit_session *s, fit_request *req);
void fit_h_week_get(fit_session *s, fit_request *req);
void fit_h_history_get(fit_session *s, fit_request *req);
void fit_h_sync_pull(fit_session *s, fit_request *req);
void fit_h_sync_snapshot(fit_session *s, fit_request *req);
void fit_h_account_export(fit_session *s, fit_request *req);
void fit_h_account_delete(fit_session *s, fit_request *req);
void fit_h_leaderboard_get(fit_session *s, fit_request *req);
void fit_h_leaderboard_subscribe(fit_session *s, fit_request *req);
void fit_h_leaderboard_unsubscribe(fit_session *s, fit_request *req);
void fit_h_rank_get(fit_session *s, fit_request *req);
void fit_h_event_create(fit_session *s, fit_request *req);
void fit_h_event_get(fit_session *s, fit_request *req);
void fit_h_team_register(fit_session *s, fit_request *req);
void fit_h_team_import(fit_session *s, fit_request *req);
void fit_h_event_start(fit_session *s, fit_request *req);
void fit_h_event_finish(fit_session *s, fit_request *req);
void fit_h_event_reopen(fit_session *s, fit_request *req);
void fit_h_lap_record(fit_session *s, fit_request *req);
void fit_h_lap_void(fit_session *s, fit_request *req);
void fit_h_lap_restore(fit_session *s, fit_request *req);
void fit_h_award_assign(fit_session *s, fit_request *req);
void fit_h_event_audit(fit_session *s, fit_request *req);
void fit_h_event_laps(fit_session *s, fit_request *req);
void fit_h_event_results(fit_session *s, fit_request *req);
void fit_h_marshal_token(fit_session *s, fit_request *req);
void fit_h_challenge_join(fit_session *s, fit_request *req);
void fit_h_stats_get(fit_session *s, fit_request *req);
void fit_h_stats_subscribe(fit_session *s, fit_request *req);
void fit_h_stats_unsubscribe(fit_session *s, fit_request *req);

/* Final standings of an event from fit_event_results' reply (fit_h_events.c); NULL if none. */
json_t *fit_event_results_json(const redisReply *r);

/* Fills t with fitsyncd's HTTP route table (fit_h_http.c), bound to srv. */
void fit_h_http_table(fit_server *srv, fit_http_table *t);

#endif
