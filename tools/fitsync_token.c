/*
 * fitsync-token: mints a bearer token with the same secret fitsyncd uses
 * (FITSYNC_TOKEN_SECRET, else <data-dir>/token.secret).
 *
 *   fitsync-token --sub alice [--role member|host|staff|marshal] [--ttl SECONDS]
 *                 [--event ID] [--data-dir DIR]
 */
#include "fit_config.h"
#include "fit_token.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: fitsync-token --sub USER [--role member|host|staff|marshal] "
               "[--ttl SECONDS] [--event ID] [--data-dir DIR]\n"
               "The secret is FITSYNC_TOKEN_SECRET, else DIR/token.secret (default data/).\n");
}

int main(int argc, char **argv)
{
    const char *sub = NULL, *role = "member", *event = NULL, *data_dir = "data";
    long ttl = 86400;
    static const struct option opts[] = {{"sub", required_argument, NULL, 's'},
                                         {"role", required_argument, NULL, 'r'},
                                         {"ttl", required_argument, NULL, 't'},
                                         {"event", required_argument, NULL, 'e'},
                                         {"data-dir", required_argument, NULL, 'd'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            sub = optarg;
            break;
        case 'r':
            role = optarg;
            break;
        case 't':
            ttl = strtol(optarg, NULL, 10);
            break;
        case 'e':
            event = optarg;
            break;
        case 'd':
            data_dir = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!sub || ttl <= 0 || fit_role_parse(role) < 0) {
        usage(stderr);
        return 2;
    }
    char secret[256], err[512];
    if (fit_secret_find(getenv("FITSYNC_TOKEN_SECRET"), data_dir, 0, secret, sizeof(secret), err,
                        sizeof(err)) != 0) {
        fprintf(stderr, "fitsync-token: %s\n", err);
        return 1;
    }
    char *tok;
    if (fit_token_mint(sub, role, (int64_t)time(NULL) + ttl, event, secret, strlen(secret), &tok)) {
        fprintf(stderr, "fitsync-token: --sub must be 1..64 characters of [A-Za-z0-9._:@-]\n");
        return 2;
    }
    printf("%s\n", tok);
    free(tok);
    return 0;
}
