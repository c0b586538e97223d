/*
 * fitsyncd: the fitsync server. One process, one libuv loop (DESIGN.md).
 */
#include "fit_log.h"
#include "fit_server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int main(int argc, char **argv)
{
    fit_config cfg;
    char err[512];
    int rc = fit_config_load(&cfg, argc, argv, err, sizeof(err));
    if (rc == 1)
        return 0;
    if (rc != 0) {
        fprintf(stderr, "fitsyncd: configuration error: %s\n", err);
        fit_config_free(&cfg);
        return 2;
    }
    uv_loop_t loop;
    uv_loop_init(&loop);
    fit_server srv;
    int exit_code = 0;
    if (fit_server_start(&srv, &loop, &cfg) != 0) {
        exit_code = 1;
        fit_server_stop(&srv);
    } else {
        fit_log(FIT_LOG_NOTICE,
                "version %s, listening on ws://%s:%d (subprotocol %s), health at "
                "http://%s:%d/healthz",
                FITSYNC_VERSION, strcmp(cfg.host, "0.0.0.0") ? cfg.host : "127.0.0.1", cfg.port,
                FIT_SUBPROTOCOL, strcmp(cfg.host, "0.0.0.0") ? cfg.host : "127.0.0.1", cfg.port);
        fit_log(FIT_LOG_NOTICE, "data in %s, Redis %s%s", cfg.data_dir,
                cfg.redis_cluster[0] ? "Cluster " : "",
                cfg.redis_cluster[0]   ? cfg.redis_cluster
                : cfg.redis_address[0] ? cfg.redis_address
                                       : "embedded (supervised child)");
        if (cfg.demo_token) {
            char *tok = NULL;
            if (fit_token_mint("demo", "member", (int64_t)time(NULL) + 7 * 86400, NULL, srv.secret,
                               strlen(srv.secret), &tok) == 0) {
                printf("member token for user \"demo\" (valid 7 days):\n%s\n", tok);
                fflush(stdout);
                free(tok);
            }
        }
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    fit_server_destroy(&srv);
    /* Let lws's last handle closes run, then close the loop (foreign-loop teardown). */
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0)
        fit_log(FIT_LOG_WARN, "loop closed with handles still open");
    fit_config_free(&cfg);
    fit_log(FIT_LOG_NOTICE, "stopped");
    return exit_code;
}
