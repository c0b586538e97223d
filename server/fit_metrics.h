/*
 * fit_metrics: counters for GET /metrics (Prometheus text format): messages
 * in and out by type, and errors sent by code. Plain counters on the loop
 * thread; message types are a bounded set (unknown ones count as "unknown").
 */
#ifndef FIT_METRICS_H
#define FIT_METRICS_H

#include "fit_error.h"

#include <stdint.h>
#include <stdio.h>

#define FIT_METRICS_TYPES 64

typedef struct {
    char type[40];
    uint64_t n;
} fit_metric_count;

typedef struct {
    fit_metric_count in[FIT_METRICS_TYPES], out[FIT_METRICS_TYPES];
    size_t nin, nout;
    uint64_t errors[FIT__LAST - FIT__FIRST];
} fit_metrics;

/* A message received (type as sent; NULL or unknown -> "unknown"). */
void fit_metrics_in(fit_metrics *m, const char *type, int known);
/* A message queued for a client, by its "type". */
void fit_metrics_out(fit_metrics *m, const char *type);
/* An error sent (a reply or a batch item), by code. */
void fit_metrics_error(fit_metrics *m, int code);
/* Writes the counters in the Prometheus text format. */
void fit_metrics_write(const fit_metrics *m, FILE *f);

#endif
