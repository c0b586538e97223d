/*
 * fit_slot: the Redis Cluster hash slot of a key (Redis Cluster
 * specification, "Keys distribution model" and "Hash tags").
 *
 * slot = CRC16(key) mod 16384, where CRC16 is the XMODEM variant (polynomial
 * 0x1021, initial 0, no reflection; CRC16("123456789") = 0x31C3). If the key
 * holds a '{' followed later by a '}' with at least one byte between them,
 * only the bytes between the first '{' and the first '}' after it are
 * hashed: fitsync's keys carry such a hash tag (`fit:{s3}:u:alice/log`), so
 * every key of one call lies in one slot (DESIGN.md decision 3). Pure C, no I/O.
 */
#ifndef FIT_SLOT_H
#define FIT_SLOT_H

#include <stddef.h>
#include <stdint.h>

#define FIT_CLUSTER_SLOTS 16384

/* CRC16/XMODEM of len bytes of buf. */
uint16_t fit_crc16(const char *buf, size_t len);

/* The cluster slot (0..16383) of a key of len bytes, honouring the hash tag rule. */
unsigned fit_key_slot(const char *key, size_t len);

#endif
