/*
 * fit_stats: the staff figures, read from every shard and added up.
 *
 * Only aggregates leave the server: the Functions keep per-shard sums
 * (workers/fitsync.lua, "staff statistics"; workers/events.lua, stats_read),
 * this module adds the shards together and suppresses small numbers. Any
 * segment (a district, an age band, a gender, or the whole programme) with
 * fewer than k active members shows every figure as "<k" (e.g. "<5"), never
 * as a number; in a segment that is shown, a count of members (meeting the
 * target, meeting the guideline) from 1 to k-1 is "<k" too; and so is
 * today's active-member count when it is below k.
 */
#ifndef FIT_STATS_H
#define FIT_STATS_H

#include "fit_board.h"
#include "fit_ops.h"

#define FIT_STATS_TREND_WEEKS 12

typedef struct {
    const fit_ops *ops;
    const fit_board_tables *tables; /* districts and age bands, for the segments */
    int k;                          /* suppression threshold (config stats.k, default 5) */
} fit_stats_params;

/*
 * stats: the document described in docs/PROTOCOL.md ("Staff statistics"),
 * borrowed for the call; NULL with err when Redis is away.
 */
typedef void fit_stats_cb(int err, const json_t *stats, void *data);

/*
 * Reads the figures of ISO week `week` (and the 12 weeks up to it for the
 * trend), today's and the programme's totals. now_ms: the wall clock (UTC ms).
 * params must outlive the call. Returns 0 or a negative code (cb not called).
 */
int fit_stats_read(const fit_stats_params *params, const char *week, int64_t now_ms,
                   fit_stats_cb *cb, void *data);

/* The CSV form of a stats document: one row per segment of the week. malloc'd. */
char *fit_stats_csv(const json_t *stats, size_t *len);

#endif
