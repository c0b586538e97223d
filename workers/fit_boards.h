/*
 * fit_boards: reading leaderboards, merged across shards.
 *
 * Each shard holds the entries of its own users (workers/fitsync.lua,
 * "Leaderboards"). A top-N read asks every shard for its top (offset + N) and
 * merges them, which is exact; a rank is 1 + the sum over shards of the
 * entries scoring above the member (DESIGN.md decision 3). Stored scores
 * order equal minutes by who reached them first, so ranks are unique.
 *
 * Entries carry only a rank, a display name and a score in equivalent
 * minutes: boards show no other personal data.
 */
#ifndef FIT_BOARDS_H
#define FIT_BOARDS_H

#include "fit_board.h"
#include "fit_ops.h"

#define FIT_BOARD_LIMIT_MAX 100
#define FIT_RANK_NEIGHBOURS 2

typedef struct {
    int64_t rank;   /* 1-based */
    int64_t score;  /* equivalent minutes */
    double stored;  /* the stored score (minutes x 2^36 + tie-break) */
    char name[161]; /* display name, or "member-xxxx" when none is set */
    char user[65];  /* for the caller's own use; never sent to clients */
    /* Event standings only (event = 1): score is laps. */
    int event;
    char category[33];
    double distance_m; /* laps x lap_m */
    int64_t last_ms;   /* UTC ms of the last counted lap, -1 if none */
} fit_board_entry;

/* entries: n of them in rank order; size: members on the board. Borrowed. */
typedef void fit_board_cb(int err, const fit_board_entry *entries, size_t n, int64_t size,
                          void *data);

/*
 * Reads ranks offset+1 .. offset+limit of a board ("week:2026-W10:all", a
 * resolved name). Returns 0 and calls cb once, or a negative code at once.
 */
int fit_board_top(const fit_ops *ops, const char *board, size_t offset, size_t limit,
                  fit_board_cb *cb, void *data);

/*
 * The same for an event board ("event:<id>:all" / "event:<id>:cat:<c>"):
 * public_only refuses (FIT_EFORBIDDEN) a private event; an unknown event is
 * FIT_ENOT_FOUND. fit_board_top routes event boards here with public_only 0.
 */
int fit_event_board_top(const fit_ops *ops, const char *board, size_t offset, size_t limit,
                        int public_only, fit_board_cb *cb, void *data);

/* "fit:{s<N>}:e:<event>/<suffix>" (N = fit_shard_of(event, shards)) into buf (FIT_KEY_MAX). */
void fit_event_key(char *buf, unsigned shards, const char *event, const char *suffix);

typedef struct {
    int found; /* 0: the member is not on this board */
    fit_board_entry me;
    fit_board_entry above[FIT_RANK_NEIGHBOURS]; /* nearest first */
    size_t nabove;
    fit_board_entry below[FIT_RANK_NEIGHBOURS]; /* nearest first */
    size_t nbelow;
    int64_t size;
} fit_rank;

typedef void fit_rank_cb(int err, const fit_rank *rank, void *data);

/* The member's rank and score on a board, and two neighbours on each side. */
int fit_board_rank(const fit_ops *ops, const char *board, const char *user, fit_rank_cb *cb,
                   void *data);

/* [{rank, name, score}, ...] for the wire. New reference. */
json_t *fit_board_entries_json(const fit_board_entry *entries, size_t n);
json_t *fit_board_entry_json(const fit_board_entry *e);

#endif
