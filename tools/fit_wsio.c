/*
 * fit_wsio: see fit_wsio.h.
 */
#include "fit_wsio.h"

#include <stdlib.h>
#include <string.h>

int fit_wsio_queue(fit_wsio *io, struct lws *wsi, const char *text, size_t len)
{
    fit_wsframe *m = malloc(sizeof(*m) + LWS_PRE + len);
    if (!m)
        return -1;
    m->next = NULL;
    m->len = len;
    memcpy(m->buf + LWS_PRE, text, len);
    if (io->qtail)
        io->qtail->next = m;
    else
        io->qhead = m;
    io->qtail = m;
    lws_callback_on_writable(wsi);
    return 0;
}

int fit_wsio_write(fit_wsio *io, struct lws *wsi)
{
    fit_wsframe *m = io->qhead;
    if (!m)
        return 0;
    /* lws buffers what the socket cannot take now and holds WRITEABLE until it drains. */
    if (lws_write(wsi, m->buf + LWS_PRE, m->len, LWS_WRITE_TEXT) < (int)m->len)
        return -1;
    io->qhead = m->next;
    if (!io->qhead)
        io->qtail = NULL;
    free(m);
    if (!io->qhead)
        return 0;
    lws_callback_on_writable(wsi);
    return 1;
}

int fit_wsio_receive(fit_wsio *io, struct lws *wsi, const void *in, size_t len, size_t max,
                     char **msg, size_t *msg_len)
{
    if (io->rx_len + len + 1 > io->rx_cap) {
        if (io->rx_len + len + 1 > max)
            return FIT_WSIO_TOO_LARGE;
        size_t cap = io->rx_cap ? io->rx_cap : 4096;
        while (cap < io->rx_len + len + 1)
            cap *= 2;
        char *p = realloc(io->rx, cap);
        if (!p)
            return FIT_WSIO_NOMEM;
        io->rx = p;
        io->rx_cap = cap;
    }
    memcpy(io->rx + io->rx_len, in, len);
    io->rx_len += len;
    if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi))
        return 0;
    io->rx[io->rx_len] = '\0';
    *msg = io->rx;
    *msg_len = io->rx_len;
    io->rx_len = 0;
    return 1;
}

void fit_wsio_free(fit_wsio *io)
{
    fit_wsframe *m = io->qhead;
    while (m) {
        fit_wsframe *next = m->next;
        free(m);
        m = next;
    }
    io->qhead = io->qtail = NULL;
    free(io->rx);
    io->rx = NULL;
    io->rx_len = io->rx_cap = 0;
}
