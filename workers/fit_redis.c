/*
 * fit_redis: the key of a command, then the store or the cluster.
 */
#include "fit_redis.h"
#include "fit_error.h"

#include <string.h>
#include <strings.h>

int fit_redis_command(const fit_redis *r, int flags, fit_store_cb *cb, void *data, int argc,
                      const char **argv, const size_t *argvlen)
{
    if (r->store)
        return fit_store_command(r->store, cb, data, argc, argv, argvlen);
    if (!r->cluster || argc < 1)
        return FIT_EUNAVAILABLE;
    int k = 1;
    if (strcasecmp(argv[0], "FCALL") == 0 || strcasecmp(argv[0], "FCALL_RO") == 0)
        k = 3;
    if (k >= argc)
        k = 0;
    size_t keylen = argvlen ? argvlen[k] : strlen(argv[k]);
    return fit_cluster_command(r->cluster, argv[k], keylen, flags, cb, data, argc, argv, argvlen);
}

int fit_redis_ready(const fit_redis *r)
{
    return r->store ? fit_store_ready(r->store) : r->cluster ? fit_cluster_ready(r->cluster) : 0;
}
