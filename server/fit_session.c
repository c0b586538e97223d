/*
 * fit_session: one WebSocket connection's life, its receive buffer and its
 * bounded send queue (libwebsockets README.coding.md: write only from the
 * WRITEABLE callback, one lws_write per callback, ask for more with
 * lws_callback_on_writable).
 */
#include "fit_server.h"

#include <stdlib.h>
#include <string.h>

/*
 * The close opcode of lws_write. lws 4.1 keeps it out of its public enum
 * ("handled by lws_close_reason", lws-write.h) but still writes it (ops-ws.c,
 * rops_write_role_protocol_ws); see fit_session_writeable for why we need it.
 */
#define FIT_LWS_WRITE_CLOSE ((enum lws_write_protocol)4)

fit_session *fit_session_new(fit_server *srv, struct lws *wsi)
{
    fit_session *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->srv = srv;
    s->wsi = wsi;
    s->refs = 1;
    s->id = ++srv->next_session_id;
    s->opened_ms = uv_now(srv->loop);
    srv->sessions++;
    s->all_next = srv->all_sessions;
    if (srv->all_sessions)
        srv->all_sessions->all_prev = s;
    srv->all_sessions = s;
    return s;
}

void fit_session_ref(fit_session *s)
{
    s->refs++;
}

static void drop_queue(fit_session *s)
{
    fit_outmsg *m = s->qhead;
    while (m) {
        fit_outmsg *n = m->next;
        free(m);
        m = n;
    }
    s->qhead = s->qtail = NULL;
    s->qbytes = 0;
}

void fit_session_unref(fit_session *s)
{
    if (--s->refs > 0)
        return;
    drop_queue(s);
    free(s->rx);
    free(s->stats_last);
    free(s);
}

void fit_session_attach_user(fit_session *s)
{
    fit_server *srv = s->srv;
    srv->devices++;
    /*
     * Only members join a user's device list: pushes of a member's data go to
     * that list, and a host, staff or marshal token whose subject happens to
     * be a member's id must never receive them (issue 12).
     */
    if (s->claims.role != FIT_ROLE_MEMBER)
        return;
    fit_user_devices *u;
    HASH_FIND_STR(srv->users, s->claims.sub, u);
    if (!u) {
        u = calloc(1, sizeof(*u));
        if (!u)
            return;
        snprintf(u->user, sizeof(u->user), "%s", s->claims.sub);
        HASH_ADD_STR(srv->users, user, u);
    }
    s->user_prev = NULL;
    s->user_next = u->sessions;
    if (u->sessions)
        u->sessions->user_prev = s;
    u->sessions = s;
}

static void detach_user(fit_session *s)
{
    if (!s->authed)
        return;
    s->srv->devices--;
    fit_user_devices *u = NULL;
    if (s->claims.role == FIT_ROLE_MEMBER)
        HASH_FIND_STR(s->srv->users, s->claims.sub, u);
    if (!u)
        return;
    if (s->user_prev)
        s->user_prev->user_next = s->user_next;
    else if (u->sessions == s)
        u->sessions = s->user_next;
    if (s->user_next)
        s->user_next->user_prev = s->user_prev;
    s->user_next = s->user_prev = NULL;
    if (!u->sessions) {
        HASH_DEL(s->srv->users, u);
        free(u);
    }
}

void fit_server_each_device(fit_server *srv, const char *user, void (*fn)(fit_session *, void *),
                            void *arg)
{
    fit_user_devices *u;
    HASH_FIND_STR(srv->users, user, u);
    for (fit_session *s = u ? u->sessions : NULL; s; s = s->user_next)
        fn(s, arg);
}

void fit_session_closed(fit_session *s)
{
    if (s->nsubs && s->srv->have_hub)
        fit_board_hub_unsubscribe_all(&s->srv->hub, s);
    s->nsubs = 0;
    detach_user(s);
    s->authed = 0;
    s->wsi = NULL;
    s->srv->sessions--;
    if (s->all_prev)
        s->all_prev->all_next = s->all_next;
    else
        s->srv->all_sessions = s->all_next;
    if (s->all_next)
        s->all_next->all_prev = s->all_prev;
    s->all_next = s->all_prev = NULL;
    drop_queue(s);
    fit_session_unref(s);
}

void fit_session_send_keyed(fit_session *s, const json_t *msg, const char *key)
{
    if (!s->wsi || s->close_after_flush)
        return;
    const char *type = json_string_value(json_object_get(msg, "type"));
    if (type && strcmp(type, "error") == 0) {
        const char *code = json_string_value(json_object_get(msg, "code"));
        for (int c = FIT__FIRST + 1; code && c < FIT__LAST; c++)
            if (strcmp(fit_err_name(c), code) == 0)
                fit_metrics_error(&s->srv->metrics, c);
    }
    char *text = json_dumps(msg, JSON_COMPACT);
    if (!text)
        return;
    fit_session_send_text(s, type, text, strlen(text), key);
    free(text);
}

void fit_session_send_text(fit_session *s, const char *type, const char *text, size_t len,
                           const char *key)
{
    if (!s->wsi || s->close_after_flush)
        return;
    fit_metrics_out(&s->srv->metrics, type);
    fit_outmsg *old = NULL, *prev = NULL;
    if (key && *key)
        for (fit_outmsg *m = s->qhead, *p = NULL; m && !old; p = m, m = m->next)
            if (strcmp(m->key, key) == 0) {
                old = m;
                prev = p;
            }
    size_t after = s->qbytes + len - (old ? old->len : 0);
    size_t limit = (size_t)s->srv->cfg->max_queue_bytes;
    /*
     * One tick may queue a burst (every board of a big screen at once) that a
     * prompt reader drains in milliseconds; what marks a slow consumer is a
     * backlog over the limit that has already waited. So: over the limit with
     * the oldest message queued for more than a second, or over four times the
     * limit at all, and the connection is closed.
     */
    if (after > 4 * limit ||
        (after > limit && s->qhead && uv_now(s->srv->loop) - s->qhead->queued_ms > 1000)) {
        /* A client that does not read is cut off; the others are not held up by it. */
        drop_queue(s);
        fit_session_close_after_flush(s, LWS_CLOSE_STATUS_POLICY_VIOLATION, "send queue full");
        return;
    }
    fit_outmsg *m = malloc(sizeof(*m) + LWS_PRE + len);
    if (!m) {
        return;
    }
    m->next = NULL;
    m->len = len;
    m->queued_ms = uv_now(s->srv->loop);
    snprintf(m->key, sizeof(m->key), "%s", key ? key : "");
    memcpy(m->buf + LWS_PRE, text, len);
    if (old) {
        /* Replace in place: the queue keeps its order (and age), the stale push is gone. */
        m->queued_ms = old->queued_ms;
        m->next = old->next;
        if (prev)
            prev->next = m;
        else
            s->qhead = m;
        if (s->qtail == old)
            s->qtail = m;
        s->qbytes -= old->len;
        free(old);
    } else if (s->qtail) {
        s->qtail->next = m;
        s->qtail = m;
    } else {
        s->qhead = s->qtail = m;
    }
    s->qbytes += len;
    lws_callback_on_writable(s->wsi);
}

void fit_session_send(fit_session *s, const json_t *msg)
{
    fit_session_send_keyed(s, msg, NULL);
}

void fit_session_send_error(fit_session *s, const char *re, int code, const char *field,
                            const char *message)
{
    json_t *e = fit_error_reply(re, code, field, message);
    fit_session_send(s, e);
    json_decref(e);
}

void fit_session_close_after_flush(fit_session *s, int code, const char *reason)
{
    if (!s->wsi)
        return;
    s->close_after_flush = 1;
    s->close_code = code;
    snprintf(s->close_reason, sizeof(s->close_reason), "%s", reason);
    lws_callback_on_writable(s->wsi);
}

int fit_session_writeable(fit_session *s)
{
    fit_outmsg *m = s->qhead;
    if (!m) {
        /*
         * lws 4.1 treats -1 from a WRITEABLE callback as a failed write and
         * drops the socket without the close frame lws_close_reason prepared
         * (the peer sees 1006; lws issue #1159). So the close frame is
         * written here like any frame, in a callback of its own; the peer
         * answers it and lws closes the connection, or the timeout does.
         */
        if (s->close_after_flush && !s->close_sent) {
            unsigned char buf[LWS_PRE + 2 + sizeof(s->close_reason)];
            size_t n = strlen(s->close_reason);
            buf[LWS_PRE] = (unsigned char)(s->close_code >> 8);
            buf[LWS_PRE + 1] = (unsigned char)(s->close_code & 0xff);
            memcpy(buf + LWS_PRE + 2, s->close_reason, n);
            s->close_sent = 1;
            if (lws_write(s->wsi, buf + LWS_PRE, 2 + n, FIT_LWS_WRITE_CLOSE) < 0)
                return -1;
            lws_set_timeout(s->wsi, PENDING_TIMEOUT_CLOSE_ACK, 3);
        }
        return 0;
    }
    int n = lws_write(s->wsi, m->buf + LWS_PRE, m->len, LWS_WRITE_TEXT);
    if (n < (int)m->len)
        return -1;
    s->qhead = m->next;
    if (!s->qhead)
        s->qtail = NULL;
    s->qbytes -= m->len;
    free(m);
    if (s->qhead || s->close_after_flush)
        lws_callback_on_writable(s->wsi);
    return 0;
}

int fit_session_receive(fit_session *s, const void *in, size_t len, int final, int binary)
{
    size_t limit = (size_t)s->srv->cfg->max_message_bytes;
    if (!s->rx_overflow) {
        if (s->rx_len + len > limit) {
            /* Keep reading (and dropping) until the message ends, then say why. */
            s->rx_overflow = 1;
            free(s->rx);
            s->rx = NULL;
            s->rx_len = s->rx_cap = 0;
        } else {
            if (s->rx_len + len + 1 > s->rx_cap) {
                size_t cap = s->rx_cap ? s->rx_cap : 4096;
                while (cap < s->rx_len + len + 1)
                    cap *= 2;
                char *p = realloc(s->rx, cap);
                if (!p)
                    return -1;
                s->rx = p;
                s->rx_cap = cap;
            }
            memcpy(s->rx + s->rx_len, in, len);
            s->rx_len += len;
        }
    }
    if (!final)
        return 0;
    if (s->rx_overflow) {
        char msg[96];
        snprintf(msg, sizeof(msg), "message exceeds max_message_bytes (%zu bytes)", limit);
        fit_session_send_error(s, NULL, FIT_ETOO_LARGE, "", msg);
    } else if (binary) {
        fit_session_send_error(s, NULL, FIT_EBAD_MESSAGE, "",
                               "binary frames are not part of fitsync.v1; send JSON text");
    } else {
        fit_handle_message(s, s->rx ? s->rx : "", s->rx_len);
    }
    s->rx_overflow = 0;
    s->rx_len = 0;
    if (s->rx_cap > 65536) {
        free(s->rx);
        s->rx = NULL;
        s->rx_cap = 0;
    }
    return 0;
}
