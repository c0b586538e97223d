/*
 * fit_metrics: see fit_metrics.h.
 */
#include "fit_metrics.h"

#include <string.h>

static void bump(fit_metric_count *c, size_t *n, const char *type)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp(c[i].type, type) == 0) {
            c[i].n++;
            return;
        }
    if (*n < FIT_METRICS_TYPES) {
        snprintf(c[*n].type, sizeof(c[*n].type), "%s", type);
        c[(*n)++].n = 1;
    }
}

void fit_metrics_in(fit_metrics *m, const char *type, int known)
{
    bump(m->in, &m->nin, known && type ? type : "unknown");
}

void fit_metrics_out(fit_metrics *m, const char *type)
{
    bump(m->out, &m->nout, type ? type : "unknown");
}

void fit_metrics_error(fit_metrics *m, int code)
{
    int i = code - FIT__FIRST;
    if (i > 0 && i < FIT__LAST - FIT__FIRST)
        m->errors[i]++;
}

void fit_metrics_write(const fit_metrics *m, FILE *f)
{
    fprintf(f, "# HELP fitsync_messages_in_total Messages received, by type.\n"
               "# TYPE fitsync_messages_in_total counter\n");
    for (size_t i = 0; i < m->nin; i++)
        fprintf(f, "fitsync_messages_in_total{type=\"%s\"} %llu\n", m->in[i].type,
                (unsigned long long)m->in[i].n);
    fprintf(f, "# HELP fitsync_messages_out_total Messages sent, by type.\n"
               "# TYPE fitsync_messages_out_total counter\n");
    for (size_t i = 0; i < m->nout; i++)
        fprintf(f, "fitsync_messages_out_total{type=\"%s\"} %llu\n", m->out[i].type,
                (unsigned long long)m->out[i].n);
    fprintf(f, "# HELP fitsync_errors_total Errors sent to clients (replies and batch items), by "
               "code.\n# TYPE fitsync_errors_total counter\n");
    for (int i = 1; i < FIT__LAST - FIT__FIRST; i++)
        fprintf(f, "fitsync_errors_total{code=\"%s\"} %llu\n", fit_err_name(FIT__FIRST + i),
                (unsigned long long)m->errors[i]);
}
