/*
 * fit_board_hub: live leaderboards, coalesced (DESIGN.md decision 6).
 *
 * A change to a board only marks it dirty; every tick (config boards.tick_ms,
 * default 250 ms) each dirty board that has subscribers on this process is
 * read once (fit_board_top, merged across shards) and each subscriber whose
 * top "limit" differs from what it was last sent gets one push. A hundred
 * uploads in one tick therefore make one read and at most one push per
 * subscriber. Boards are marked dirty by the Redis Functions themselves: they
 * PUBLISH the names of the boards they changed on channel "fit:lb", and every
 * fitsyncd listens on a dedicated connection (fit_store in pub/sub mode) that
 * resubscribes after a Redis restart and then marks every watched board
 * dirty, since messages sent meanwhile are lost.
 *
 * The hub knows subscribers only as opaque pointers and hands messages to the
 * edge through the deliver callback; the edge owns the sockets and queues.
 */
#ifndef FIT_BOARD_HUB_H
#define FIT_BOARD_HUB_H

#include "fit_boards.h"
#include "fit_store.h"

#include <uv.h>

#define FIT_LB_CHANNEL "fit:lb"

typedef struct fit_board_state fit_board_state;

/*
 * Delivers a push for one subscription: frame (len bytes, borrowed) is the
 * serialised {"type":"leaderboard", "board": <as subscribed>, "week",
 * "version", "entries", "size"}, shared by every subscriber of that board
 * with the same limit.
 */
typedef void fit_hub_deliver_fn(void *subscriber, const char *board, const char *frame, size_t len,
                                void *data);

/* A message on the hub's other channel (see fit_board_hub_init). Borrowed. */
typedef void fit_hub_other_fn(const char *payload, size_t len, void *data);

typedef struct {
    uv_loop_t *loop;
    const fit_ops *ops;
    fit_store pubsub;
    uv_timer_t tick;
    uint32_t tick_ms;
    fit_board_state *boards; /* by resolved name */
    fit_hub_deliver_fn *deliver;
    void *deliver_data;
    char channels[128];
    fit_hub_other_fn *other;
    char current_week[FIT_WEEK_LEN];
    uint64_t reads, pushes; /* counters for metrics */
    int closing;
} fit_board_hub;

/*
 * Starts the hub: the pub/sub connection to redis (address and timeouts as
 * the main store's) and the tick. The same connection may also listen to
 * other_channel (NULL for none), whose messages go to other(payload, data):
 * the edge relays its per-user pushes between processes that way.
 * Returns 0 or a negative code.
 */
int fit_board_hub_init(fit_board_hub *hub, uv_loop_t *loop, const fit_ops *ops,
                       const fit_store_options *redis, uint32_t tick_ms,
                       fit_hub_deliver_fn *deliver, void *data, const char *other_channel,
                       fit_hub_other_fn *other);

/*
 * Registers a subscription after its snapshot was sent: board as the client
 * named it (may say "current"), resolved the resolved name, entries/n the
 * snapshot (its text is the baseline for "changed"). Returns the board's
 * version, which the snapshot reply carries; FIT_ENOMEM on failure.
 * A subscriber subscribing again to the same board replaces the old
 * subscription; *added says whether the subscriber now holds one more.
 */
int64_t fit_board_hub_subscribe(fit_board_hub *hub, void *subscriber, const char *board,
                                int is_current, const char *resolved, int limit,
                                const json_t *entries, int *added);

/* 1 if subscriber holds a subscription to board (as it named it). */
int fit_board_hub_has(fit_board_hub *hub, void *subscriber, const char *board);

/* Removes one subscription; returns 1 if it existed. */
int fit_board_hub_unsubscribe(fit_board_hub *hub, void *subscriber, const char *board);

/* Removes every subscription of a subscriber (its connection closed). */
void fit_board_hub_unsubscribe_all(fit_board_hub *hub, void *subscriber);

/* Marks a board dirty (also done for every name published on FIT_LB_CHANNEL). */
void fit_board_hub_mark_dirty(fit_board_hub *hub, const char *resolved);

/* Stops the tick and the pub/sub connection; on_closed (may be NULL) once both are closed. */
void fit_board_hub_close(fit_board_hub *hub, void (*on_closed)(fit_board_hub *hub));

#endif
