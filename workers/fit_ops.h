/*
 * fit_ops: the member operations of fitsync as Redis Function calls.
 *
 * Each mutation here is one FCALL of workers/fitsync.lua on the user's shard
 * (DESIGN.md decisions 2 and 3), so a success reply means Redis has applied
 * all of it. Keys look like "fit:{s<N>}:u:<user>:<kind>:<name>", where N =
 * fit_shard_of(user, shards).
 *
 * Every function returns 0 and later calls its callback exactly once, or
 * returns a negative FIT_E* code at once (FIT_EUNAVAILABLE when Redis is not
 * ready) and never calls it. Callback arguments are borrowed for the
 * duration of the call.
 */
#ifndef FIT_OPS_H
#define FIT_OPS_H

#include "fit_activity.h"
#include "fit_store.h"
#include "fit_who.h"

#include <jansson.h>

#define FIT_KEY_MAX 192

/* Writes "fit:{s<N>}:u:<user>:<suffix>" into buf (FIT_KEY_MAX). */
void fit_user_key(char *buf, unsigned shards, const char *user, const char *suffix);

/*
 * Result of an upload item. err is 0 or FIT_ECONFLICT / FIT_EUNAVAILABLE /
 * FIT_EINTERNAL. status: "created"/"duplicate" for sessions, "applied"/
 * "duplicate"/"stale" for summaries. weeks: the ISO weeks whose totals changed
 * (none for duplicates and stale summaries).
 */
typedef void fit_put_cb(int err, const char *status, const char *const *weeks, int nweeks,
                        void *data);

/* Stores one validated session (fit_activity_parse) for user. */
int fit_ops_activity_put(fit_store *store, unsigned shards, const char *user,
                         const fit_activity *a, fit_put_cb *cb, void *data);

/* Upserts one validated daily summary; the newest recorded_at wins. */
int fit_ops_summary_put(fit_store *store, unsigned shards, const char *user, const fit_summary *s,
                        fit_put_cb *cb, void *data);

/* profile: the whole stored profile as a JSON object (borrowed), or NULL on error. */
typedef void fit_profile_cb(int err, const json_t *profile, void *data);

/* Applies the fields present in p (absent ones are kept; cleared ones removed). */
int fit_ops_profile_set(fit_store *store, unsigned shards, const char *user, const fit_profile *p,
                        fit_profile_cb *cb, void *data);

/* status is NULL when err != 0. */
typedef void fit_week_cb(int err, const fit_week_status *status, void *data);

/* Reads a week and scores it against the member's band (targets borrowed; must outlive the call). */
int fit_ops_week_get(fit_store *store, unsigned shards, const char *user, int iso_year, int week,
                     const fit_who_targets *targets, fit_week_cb *cb, void *data);

#endif
