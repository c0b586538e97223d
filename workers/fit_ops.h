/*
 * fit_ops: the member operations of fitsync as Redis Function calls.
 *
 * Each mutation here is one FCALL of workers/fitsync.lua on the user's shard
 * (DESIGN.md decisions 2 and 3), so a success reply means Redis has applied
 * all of it: the item, the day and week aggregates, the indexes and the
 * change log. Every call names the user's change log key
 * "fit:{s<N>}:u:<user>/log" (N = fit_shard_of(user, shards)); the Functions
 * derive the user's other keys from it.
 *
 * Every function returns 0 and later calls its callback exactly once, or
 * returns a negative FIT_E* code at once (FIT_EUNAVAILABLE when Redis is not
 * ready) and never calls it. Callback arguments are borrowed for the
 * duration of the call.
 */
#ifndef FIT_OPS_H
#define FIT_OPS_H

#include "fit_activity.h"
#include "fit_redis.h"
#include "fit_who.h"

#include <jansson.h>

#define FIT_KEY_MAX 192
#define FIT_CURSOR_MAX 48

/* Shared settings of every call; owned by the server. */
typedef struct {
    fit_redis redis; /* one Redis or a Redis Cluster (fit_redis.h) */
    unsigned shards;
    int64_t window_ms; /* how long the change log keeps entries (config sync.window_days) */
    const fit_who_targets *who;
    char age_bands[256];  /* fit_age_bands_spec() of the configured bands */
    int board_keep_weeks; /* boards of older weeks are no longer written and expire */
    int tz_offset_min;    /* the programme's time zone: which week is current */
    char who_json[1024];  /* fit_ops_who_json(): the WHO targets for the statistics */
    /* Sessions whose every day is more than this many days old are folded into their
     * days' figures (fit_ops_fold); 0 = never. The server sets it past both the change
     * log window and the acceptance window, so no change can reach a folded session. */
    int fold_after_days;
} fit_ops;

/* Writes the WHO 2020 targets as the JSON the Functions' statistics read (ctx.who). */
void fit_ops_who_json(const fit_who_targets *who, char *buf, size_t len);

/* The current ISO week in the programme's time zone, at now_ms (UTC ms). */
void fit_ops_current_week(const fit_ops *ops, int64_t now_ms, char *week);

/* Writes "fit:{s<N>}:u:<user>/<suffix>" into buf (FIT_KEY_MAX). */
void fit_user_key(char *buf, unsigned shards, const char *user, const char *suffix);

/*
 * The outcome of a mutation. err is 0, FIT_ECONFLICT (current_* describe the
 * item as it is), FIT_ENOT_FOUND, FIT_EUNAVAILABLE or FIT_EINTERNAL.
 * status: "created", "updated", "deleted", "applied", "duplicate", "stale".
 * cursor is the change log position of this change, or NULL when nothing
 * changed (duplicates, stale summaries). weeks are the ISO weeks whose totals
 * may have changed.
 */
typedef struct {
    int err;
    const char *status;
    int64_t rev; /* sessions: the revision now current; 0 otherwise */
    const char *cursor;
    const char *weeks[2 * FIT_MAX_SEGMENTS];
    int nweeks;
    const char *current_doc; /* conflicts: the stored document ("" for a tombstone) */
    int current_deleted;
} fit_change;

typedef void fit_change_cb(const fit_change *c, void *data);

/* Stores a new validated session (fit_activity_parse); idempotent by client_id. */
int fit_ops_activity_put(const fit_ops *ops, const char *user, const char *device,
                         const fit_activity *a, fit_change_cb *cb, void *data);

/* Replaces a session's content if its current rev is base_rev. */
int fit_ops_activity_update(const fit_ops *ops, const char *user, const char *device,
                            int64_t base_rev, const fit_activity *a, fit_change_cb *cb, void *data);

/* Deletes a session (a tombstone stays); base_rev < 0 deletes whatever rev is current. */
int fit_ops_activity_delete(const fit_ops *ops, const char *user, const char *device,
                            const char *client_id, int64_t base_rev, fit_change_cb *cb, void *data);

/* The stored session: rev 0 if it does not exist; doc NULL for a tombstone. */
typedef void fit_item_cb(int err, int64_t rev, const char *doc, int deleted, void *data);
int fit_ops_activity_get(const fit_ops *ops, const char *user, const char *client_id,
                         fit_item_cb *cb, void *data);

/* Upserts one validated daily summary; the newest recorded_at wins. */
int fit_ops_summary_put(const fit_ops *ops, const char *user, const char *device,
                        const fit_summary *s, fit_change_cb *cb, void *data);

/* Deletes the summary of (date, source); date's week computed here. */
int fit_ops_summary_delete(const fit_ops *ops, const char *user, const char *device, fit_date date,
                           const char *source, fit_change_cb *cb, void *data);

/* profile: the whole stored profile as a JSON object (borrowed), or NULL on error. */
typedef void fit_profile_cb(int err, const json_t *profile, const char *cursor, void *data);

/* Applies the fields present in p (absent ones are kept; cleared ones removed). */
int fit_ops_profile_set(const fit_ops *ops, const char *user, const char *device,
                        const fit_profile *p, fit_profile_cb *cb, void *data);

/* statuses: n weeks, in the order asked; NULL when err != 0. */
typedef void fit_weeks_cb(int err, const fit_week_status *statuses, size_t n, void *data);

/* Reads and scores weeks (names "YYYY-Www", at most 128) against the member's band. */
int fit_ops_weeks_get(const fit_ops *ops, const char *user, const char *const *weeks, size_t n,
                      fit_weeks_cb *cb, void *data);

/*
 * Changes after cursor, oldest first, at most limit. err FIT_ERESYNC_REQUIRED
 * when the cursor is older than the log keeps; FIT_EINVALID_VALUE when it was
 * never issued. changes is a new array of change objects (borrowed by the
 * callback); next is the cursor to pull from next.
 */
typedef void fit_pull_cb(int err, json_t *changes, const char *next, int more, void *data);
int fit_ops_sync_pull(const fit_ops *ops, const char *user, const char *cursor, int limit,
                      fit_pull_cb *cb, void *data);

/* The current cursor ("0-0" for an empty log). */
typedef void fit_cursor_cb(int err, const char *cursor, void *data);
int fit_ops_sync_head(const fit_ops *ops, const char *user, fit_cursor_cb *cb, void *data);

/*
 * The user's state: sessions starting and summaries dated at or after from_ms
 * (0 = everything), the profile, the weeks with data, and the cursor it is
 * consistent with. state is {"cursor", "profile", "activities", "summaries",
 * "weeks": [names]} (borrowed).
 */
typedef void fit_state_cb(int err, const json_t *state, void *data);
int fit_ops_state(const fit_ops *ops, const char *user, int64_t from_ms, fit_state_cb *cb,
                  void *data);

/* Removes every key of the user; deleted = how many keys. */
typedef void fit_count_cb(int err, long long deleted, void *data);
int fit_ops_account_delete(const fit_ops *ops, const char *user, fit_count_cb *cb, void *data);

/*
 * Folds the user's sessions older than ops->fold_after_days (local dates in the
 * programme's time zone, less one day for sessions in other UTC offsets) into
 * their days' figures, at most max_weeks ISO weeks in this call; the next call
 * goes on where this one stopped (workers/fitsync.lua, fit_fold; retention in
 * docs/SCALING.md). cb gets the number of weeks folded as "deleted"; with
 * fold_after_days 0 nothing is sent and cb is never called. Returns 0, or a
 * negative FIT_E* code, in which case cb is never called.
 */
int fit_ops_fold(const fit_ops *ops, const char *user, int max_weeks, fit_count_cb *cb, void *data);

/* Converts a stored profile hash (flat reply) to JSON with typed values. New reference. */
json_t *fit_profile_json(const redisReply *flat);

/*
 * Calls an event Function (workers/events.lua) on the event's shard with
 * KEYS = [its meta key] and the given ARGV; cb gets the raw reply (NULL with
 * errstr when Redis is away). Returns 0 or a negative code (cb not called).
 */
int fit_ops_event_call(const fit_ops *ops, const char *fn, int read_only, const char *event,
                       int argc, const char **argv, fit_store_cb *cb, void *data);

#endif
