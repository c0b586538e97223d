/*
 * fit_redis: where fitsync's Redis calls go, one Redis or a Redis Cluster.
 *
 * Everything in workers/ and server/ sends its commands through
 * fit_redis_command, never to a store directly, so that the same call runs
 * on one Redis (the embedded child or redis.address: one fit_store) and on a
 * Redis Cluster (redis.cluster: fit_cluster routes by the slot of the
 * command's key). The key is found the way Redis finds it: for FCALL and
 * FCALL_RO the first of its KEYS (argv[3]), else argv[1] (HSET key...,
 * PUBLISH channel: a cluster broadcasts a PUBLISH from any node).
 */
#ifndef FIT_REDIS_H
#define FIT_REDIS_H

#include "fit_cluster.h"
#include "fit_store.h"

/* Flags of fit_redis_command. */
#define FIT_REDIS_IDEMPOTENT FIT_CLUSTER_IDEMPOTENT /* harmless twice: resent after a lost link */
#define FIT_REDIS_DURABLE FIT_CLUSTER_DURABLE       /* acked once wait_replicas replicas have it */

typedef struct {
    fit_store *store;     /* one Redis, or NULL */
    fit_cluster *cluster; /* a Redis Cluster, or NULL (exactly one of the two is set) */
} fit_redis;

/*
 * Sends argv (argvlen may be NULL for C strings) to the Redis that holds its
 * key. flags: FIT_REDIS_IDEMPOTENT, FIT_REDIS_DURABLE (both matter in a
 * cluster only; a single store neither retries nor waits). cb runs exactly
 * once with the reply or errstr (fit_store_cb). Returns 0, or a negative code
 * (FIT_EUNAVAILABLE, FIT_ENOMEM) and cb is never called.
 */
int fit_redis_command(const fit_redis *r, int flags, fit_store_cb *cb, void *data, int argc,
                      const char **argv, const size_t *argvlen);

/* 1 if calls can be served now (the store READY; in a cluster every slot's primary READY). */
int fit_redis_ready(const fit_redis *r);

#endif
