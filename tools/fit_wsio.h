/*
 * fit_wsio: the per-connection buffers of fitsync's WebSocket tools
 * (fitsync-import, fitsync-bench and its echo server): a queue of outgoing
 * text frames written one per WRITEABLE callback (libwebsockets
 * README.coding.md), and the reassembly of incoming fragments into whole
 * messages, bounded in size.
 */
#ifndef FIT_WSIO_H
#define FIT_WSIO_H

#include <libwebsockets.h>
#include <stddef.h>

typedef struct fit_wsframe {
    struct fit_wsframe *next;
    size_t len;
    unsigned char buf[]; /* LWS_PRE bytes of headroom, then the text */
} fit_wsframe;

/* Zero-initialise; free with fit_wsio_free. */
typedef struct {
    fit_wsframe *qhead, *qtail;
    char *rx; /* the message being reassembled, NUL-terminated when complete */
    size_t rx_len, rx_cap;
} fit_wsio;

/* Queues len bytes of text (copied) and asks lws for WRITEABLE. Returns 0 or -1 (no memory). */
int fit_wsio_queue(fit_wsio *io, struct lws *wsi, const char *text, size_t len);

/*
 * Writes the oldest queued frame (call from the WRITEABLE callback). Returns
 * 1 if frames remain (WRITEABLE asked for again), 0 if the queue is empty,
 * -1 if the write failed.
 */
int fit_wsio_write(fit_wsio *io, struct lws *wsi);

/*
 * Appends a received fragment. Returns 1 when a whole message is in: *msg
 * (NUL-terminated, borrowed until the next call) and *msg_len; 0 while more
 * fragments are due; FIT_WSIO_TOO_LARGE past max bytes; FIT_WSIO_NOMEM.
 */
#define FIT_WSIO_TOO_LARGE (-1)
#define FIT_WSIO_NOMEM (-2)
int fit_wsio_receive(fit_wsio *io, struct lws *wsi, const void *in, size_t len, size_t max,
                     char **msg, size_t *msg_len);

/* Drops the queue and the receive buffer. */
void fit_wsio_free(fit_wsio *io);

#endif
