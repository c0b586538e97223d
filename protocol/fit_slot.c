/*
 * fit_slot: CRC16/XMODEM, bitwise (eight shifts per byte: a key is short and
 * a call routes one key, so a 512-byte table buys nothing measurable here).
 */
#include "fit_slot.h"

#include <string.h>

uint16_t fit_crc16(const char *buf, size_t len)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((unsigned char)buf[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

unsigned fit_key_slot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open) {
        size_t rest = len - (size_t)(open - key) - 1;
        const char *close = memchr(open + 1, '}', rest);
        if (close && close > open + 1)
            return fit_crc16(open + 1, (size_t)(close - open - 1)) & (FIT_CLUSTER_SLOTS - 1);
    }
    return fit_crc16(key, len) & (FIT_CLUSTER_SLOTS - 1);
}
