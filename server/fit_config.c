/*
 * fit_config: the schema, and the three layers applied over it.
 *
 * The schema is data (a table), not code: each row names a dotted key, its
 * type, its range and where it lands in fit_config. Defaults live in the
 * table too, so a config file may omit any key; config/fitsync.json lists
 * them all for the operator to read.
 */
#include "fit_config.h"
#include "fit_error.h"
#include "fit_log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <openssl/rand.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef enum { T_INT, T_STR } key_type;

typedef struct {
    const char *key;
    key_type type;
    size_t offset;
    size_t size; /* for strings: buffer size */
    long min, max;
    const char *dflt;
} key_spec;

#define INT_KEY(k, field, lo, hi, d)                                                               \
    {                                                                                              \
        k, T_INT, offsetof(fit_config, field), 0, lo, hi, d                                        \
    }
#define STR_KEY(k, field, d)                                                                       \
    {                                                                                              \
        k, T_STR, offsetof(fit_config, field), sizeof(((fit_config *)0)->field), 0, 0, d           \
    }

static const key_spec schema[] = {
    STR_KEY("host", host, "0.0.0.0"),
    INT_KEY("port", port, 1, 65535, "8080"),
    STR_KEY("data_dir", data_dir, "data"),
    STR_KEY("redis.address", redis_address, ""),
    STR_KEY("redis.server", redis_server, "redis-server"),
    STR_KEY("redis.conf", redis_conf, "redis.conf"),
    STR_KEY("redis.cluster", redis_cluster, ""),
    INT_KEY("redis.wait_replicas", redis_wait_replicas, 0, 16, "1"),
    INT_KEY("redis.wait_timeout_ms", redis_wait_timeout_ms, 10, 60000, "1000"),
    INT_KEY("redis.connect_timeout_ms", redis_connect_timeout_ms, 10, 600000, "2000"),
    INT_KEY("redis.command_timeout_ms", redis_command_timeout_ms, 10, 600000, "5000"),
    INT_KEY("redis.reconnect_max_ms", redis_reconnect_max_ms, 100, 600000, "5000"),
    INT_KEY("shards", shards, 1, 1024, "1"),
    STR_KEY("token.secret", token_secret, ""),
    INT_KEY("max_message_bytes", max_message_bytes, 1024, 64 * 1024 * 1024, "1048576"),
    INT_KEY("max_batch", max_batch, 1, 10000, "500"),
    INT_KEY("max_age_weeks", max_age_weeks, 0, 5200, "8"),
    INT_KEY("future_tolerance_s", future_tolerance_s, 0, 86400, "600"),
    INT_KEY("max_queue_bytes", max_queue_bytes, 65536, 256 * 1024 * 1024, "4194304"),
    INT_KEY("hello_timeout_ms", hello_timeout_ms, 100, 3600000, "10000"),
    INT_KEY("sync.window_days", sync_window_days, 1, 3650, "56"),
    INT_KEY("rate.messages_per_s", rate_messages_per_s, 1, 1000000, "20"),
    INT_KEY("rate.burst", rate_burst, 1, 1000000, "60"),
    STR_KEY("timezone", timezone, "+08:00"),
    STR_KEY("districts", districts_file, "districts.json"),
    STR_KEY("age_bands", age_bands_file, "age_bands.json"),
    INT_KEY("boards.tick_ms", boards_tick_ms, 10, 60000, "250"),
    INT_KEY("boards.keep_weeks", boards_keep_weeks, 1, 520, "12"),
    INT_KEY("boards.max_subscriptions", boards_max_subscriptions, 1, 1000, "16"),
    INT_KEY("stats.k", stats_k, 1, 1000, "5"),
    STR_KEY("web_dir", web_dir, "../web"),
    STR_KEY("who_targets", who_targets, "who.json"),
    STR_KEY("met_table", met_table, "met.json"),
    STR_KEY("log_level", log_level, "notice"),
    INT_KEY("http.max_body_bytes", http_max_body_bytes, 0, 64 * 1024 * 1024, "1048576"),
};
#define NKEYS (sizeof(schema) / sizeof(schema[0]))
_Static_assert(NKEYS <= FIT_CONFIG_KEYS_MAX, "raise FIT_CONFIG_KEYS_MAX for the schema");

/*
 * Environment variables that start with FITSYNC_ but are not settings:
 * the test harness and the test programs read them (tests/CMakeLists.txt,
 * the e2e test files), and they reach fitsyncd because the tests start it with
 * their own environment. Any other FITSYNC_ name that names no setting
 * stops start-up (README, "Configuration").
 */
static const char *const not_settings[] = {
    "FITSYNC_BUILD_DIR",  "FITSYNC_SOURCE_DIR", "FITSYNC_SHARED_DATA",        "FITSYNC_CHROMIUM",
    "FITSYNC_MODEL_SEED", "FITSYNC_MODEL_OPS",  "FITSYNC_MODEL_FULL_UPDATES",
};

static const key_spec *find_key(const char *key)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (strcmp(schema[i].key, key) == 0)
            return &schema[i];
    return NULL;
}

/* Sets one key from text and records where it came from (origin, also the errors' prefix). */
static int set_text(fit_config *cfg, const key_spec *k, const char *v, const char *origin,
                    char *err, size_t errlen)
{
    char *dst = (char *)cfg + k->offset;
    snprintf(cfg->source[k - schema], sizeof(cfg->source[0]), "%s", origin);
    if (k->type == T_STR) {
        if (strlen(v) >= k->size) {
            snprintf(err, errlen, "%s: %s is too long (max %zu bytes)", origin, k->key,
                     k->size - 1);
            return FIT_EINVALID_VALUE;
        }
        snprintf(dst, k->size, "%s", v);
        return 0;
    }
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < k->min || n > k->max) {
        snprintf(err, errlen, "%s: %s must be a whole number within %ld..%ld (got \"%.40s\")",
                 origin, k->key, k->min, k->max, v);
        return FIT_EINVALID_VALUE;
    }
    *(int *)(void *)dst = (int)n;
    return 0;
}

/* Applies a parsed JSON object, recursing into objects with dotted prefixes. */
static int apply_json(fit_config *cfg, const json_t *obj, const char *prefix, char *err,
                      size_t errlen)
{
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        char full[128];
        snprintf(full, sizeof(full), "%s%s%s", prefix, *prefix ? "." : "", key);
        if (json_is_object(v)) {
            int rc = apply_json(cfg, v, full, err, errlen);
            if (rc)
                return rc;
            continue;
        }
        const key_spec *k = find_key(full);
        if (!k) {
            snprintf(err, errlen, "%s: unknown key \"%s\"", cfg->config_path, full);
            return FIT_EUNKNOWN_FIELD;
        }
        if (k->type == T_INT && !json_is_integer(v)) {
            snprintf(err, errlen, "%s: %s must be a whole number", cfg->config_path, full);
            return FIT_EINVALID_TYPE;
        }
        if (k->type == T_STR && !json_is_string(v)) {
            snprintf(err, errlen, "%s: %s must be a string", cfg->config_path, full);
            return FIT_EINVALID_TYPE;
        }
        char buf[64], origin[FIT_PATH_MAX + 8];
        const char *text = json_string_value(v);
        if (k->type == T_INT) {
            snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(v));
            text = buf;
        }
        snprintf(origin, sizeof(origin), "file %s", cfg->config_path);
        int rc = set_text(cfg, k, text, origin, err, errlen);
        if (rc)
            return rc;
    }
    return 0;
}

static void env_name(const char *key, char *out, size_t n)
{
    size_t j = snprintf(out, n, "FITSYNC_");
    for (const char *p = key; *p && j + 1 < n; p++)
        out[j++] = *p == '.' ? '_' : (char)toupper((unsigned char)*p);
    out[j] = '\0';
}

/* Optimal-string-alignment distance (Levenshtein plus adjacent swaps) of two short names. */
static size_t name_distance(const char *a, const char *b)
{
    size_t n = strlen(a), m = strlen(b);
    if (n > 63 || m > 63)
        return SIZE_MAX;
    size_t d[64][64];
    for (size_t i = 0; i <= n; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= m; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= n; i++) {
        for (size_t j = 1; j <= m; j++) {
            size_t cost = a[i - 1] != b[j - 1];
            size_t best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < best)
                best = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[n][m];
}

/*
 * The setting whose variable is nearest to name, if it is near: within
 * max(2, a quarter of the name after FITSYNC_) edits, or name being the
 * end of a variable's name after an underscore (FITSYNC_MAX_BODY_BYTES for
 * FITSYNC_HTTP_MAX_BODY_BYTES). NULL if none is.
 */
static const key_spec *nearest_key(const char *name)
{
    const key_spec *best = NULL;
    size_t best_d = SIZE_MAX, len = strlen(name) > 8 ? strlen(name) - 8 : 0;
    size_t limit = len / 4 > 2 ? len / 4 : 2;
    for (size_t i = 0; i < NKEYS; i++) {
        char env[96];
        env_name(schema[i].key, env, sizeof(env));
        size_t d = name_distance(name + 8, env + 8);
        size_t el = strlen(env), nl = strlen(name + 8);
        if (el > nl + 8 && strcmp(env + el - nl, name + 8) == 0 && env[el - nl - 1] == '_')
            d = 1;
        if (d < best_d) {
            best_d = d;
            best = &schema[i];
        }
    }
    return best_d <= limit ? best : NULL;
}

extern char **environ;

/*
 * Layer 2: every FITSYNC_* variable names a setting (applied) or is one of
 * not_settings (skipped); any other stops start-up, naming it and the
 * nearest setting's variable if one is near.
 */
static int apply_environment(fit_config *cfg, char *err, size_t errlen)
{
    for (char **e = environ; e && *e; e++) {
        if (strncmp(*e, "FITSYNC_", 8) != 0)
            continue;
        const char *eq = strchr(*e, '=');
        size_t n = eq ? (size_t)(eq - *e) : strlen(*e);
        char name[96];
        snprintf(name, sizeof(name), "%.*s", (int)n, *e);
        const key_spec *k = NULL;
        for (size_t i = 0; i < NKEYS && !k && n < sizeof(name); i++) {
            char env[96];
            env_name(schema[i].key, env, sizeof(env));
            if (strcmp(env, name) == 0)
                k = &schema[i];
        }
        if (k) {
            char origin[112];
            snprintf(origin, sizeof(origin), "environment %s", name);
            int rc = set_text(cfg, k, eq ? eq + 1 : "", origin, err, errlen);
            if (rc)
                return rc;
            continue;
        }
        int known = 0;
        for (size_t i = 0; i < sizeof(not_settings) / sizeof(not_settings[0]) && !known; i++)
            known = n < sizeof(name) && strcmp(name, not_settings[i]) == 0;
        if (known)
            continue;
        const key_spec *near = n < sizeof(name) ? nearest_key(name) : NULL;
        if (near) {
            char env[96];
            env_name(near->key, env, sizeof(env));
            snprintf(err, errlen,
                     "environment variable %s%s names no setting; did you mean %s (key \"%s\")?",
                     name, n < sizeof(name) ? "" : "...", env, near->key);
        } else {
            snprintf(err, errlen,
                     "environment variable %s%s names no setting (the settings are listed in "
                     "README.md and by fitsyncd --check-config)",
                     name, n < sizeof(name) ? "" : "...");
        }
        return FIT_EUNKNOWN_FIELD;
    }
    return 0;
}

void fit_config_path(const fit_config *cfg, const char *rel, char *out)
{
    if (rel[0] == '/')
        snprintf(out, FIT_PATH_MAX, "%s", rel);
    else
        snprintf(out, FIT_PATH_MAX, "%s/%s", cfg->config_dir, rel);
}

static void usage(void)
{
    printf("usage: fitsyncd [--config FILE] [--port N] [--redis ADDRESS] [--data-dir DIR]\n"
           "                [--demo-token] [--help]\n"
           "\n"
           "  --config FILE    configuration file (default %s/fitsync.json)\n"
           "  --port N         listen port (key \"port\", default 8080)\n"
           "  --redis ADDRESS  use this Redis (redis://host:port or a socket path) instead of\n"
           "                   starting the embedded redis-server (key \"redis.address\")\n"
           "  --data-dir DIR   data directory: embedded Redis, token secret (key \"data_dir\")\n"
           "  --demo-token     print a ready-to-use member token for user \"demo\" at start\n"
           "  --check-config   print the effective configuration, with where each value came\n"
           "                   from (default, file, environment, flag), and exit\n"
           "\n"
           "Any key \"a.b\" of the file can be set from the environment as FITSYNC_A_B; any\n"
           "other FITSYNC_* variable stops start-up, except the test harness's own\n"
           "(FITSYNC_BUILD_DIR, FITSYNC_SOURCE_DIR, FITSYNC_SHARED_DATA, FITSYNC_CHROMIUM,\n"
           "FITSYNC_MODEL_*; see README.md).\n",
           FITSYNC_CONFIG_DIR);
}

static int load_json_file(const char *path, json_t **out, char *err, size_t errlen)
{
    json_error_t jerr;
    *out = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!*out) {
        snprintf(err, errlen, "%s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
        return FIT_EIO;
    }
    if (!json_is_object(*out)) {
        snprintf(err, errlen, "%s: must hold a JSON object", path);
        json_decref(*out);
        *out = NULL;
        return FIT_EINVALID_VALUE;
    }
    return 0;
}

int fit_config_load(fit_config *cfg, int argc, char **argv, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof(*cfg));
    int rc;
    for (size_t i = 0; i < NKEYS; i++)
        if ((rc = set_text(cfg, &schema[i], schema[i].dflt, "default", err, errlen)))
            return rc;
    snprintf(cfg->config_path, sizeof(cfg->config_path), "%s/fitsync.json", FITSYNC_CONFIG_DIR);

    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'}, {"port", required_argument, NULL, 'p'},
        {"redis", required_argument, NULL, 'r'},  {"data-dir", required_argument, NULL, 'd'},
        {"demo-token", no_argument, NULL, 't'},   {"check-config", no_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    const char *flag_port = NULL, *flag_redis = NULL, *flag_data = NULL;
    int c, check_only = 0;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            snprintf(cfg->config_path, sizeof(cfg->config_path), "%s", optarg);
            break;
        case 'p':
            flag_port = optarg;
            break;
        case 'r':
            flag_redis = optarg;
            break;
        case 'd':
            flag_data = optarg;
            break;
        case 't':
            cfg->demo_token = 1;
            break;
        case 'k':
            check_only = 1;
            break;
        case 'h':
            usage();
            return 1;
        default:
            snprintf(err, errlen, "unknown or incomplete option \"%s\" (see --help)",
                     argv[optind - 1]);
            return FIT_EINVALID_VALUE;
        }
    }
    if (optind < argc) {
        snprintf(err, errlen, "unexpected argument \"%s\" (see --help)", argv[optind]);
        return FIT_EINVALID_VALUE;
    }

    /* Layer 1: the file. */
    char *slash = strrchr(cfg->config_path, '/');
    if (slash)
        snprintf(cfg->config_dir, sizeof(cfg->config_dir), "%.*s", (int)(slash - cfg->config_path),
                 cfg->config_path);
    else
        snprintf(cfg->config_dir, sizeof(cfg->config_dir), ".");
    json_t *doc;
    if ((rc = load_json_file(cfg->config_path, &doc, err, errlen)))
        return rc;
    rc = apply_json(cfg, doc, "", err, errlen);
    json_decref(doc);
    if (rc)
        return rc;

    /* Layer 2: the environment. */
    if ((rc = apply_environment(cfg, err, errlen)))
        return rc;

    /* Layer 3: flags. */
    if (flag_port && (rc = set_text(cfg, find_key("port"), flag_port, "flag --port", err, errlen)))
        return rc;
    if (flag_redis &&
        (rc = set_text(cfg, find_key("redis.address"), flag_redis, "flag --redis", err, errlen)))
        return rc;
    if (flag_data &&
        (rc = set_text(cfg, find_key("data_dir"), flag_data, "flag --data-dir", err, errlen)))
        return rc;

    if (cfg->redis_cluster[0] && cfg->redis_address[0]) {
        snprintf(err, errlen,
                 "redis.cluster and redis.address are both set: set one (a cluster's nodes, or "
                 "one Redis)");
        return FIT_EINVALID_VALUE;
    }
    if (fit_offset_parse(cfg->timezone, &cfg->timezone_offset_min) != 0) {
        snprintf(err, errlen, "timezone must be a UTC offset like +08:00 (got \"%s\")",
                 cfg->timezone);
        return FIT_EINVALID_VALUE;
    }
    if (fit_log_level_parse(cfg->log_level) < 0) {
        snprintf(err, errlen,
                 "%s: log_level must be error, warn, notice, info or debug (got \"%s\")",
                 cfg->source[find_key("log_level") - schema], cfg->log_level);
        return FIT_EINVALID_VALUE;
    }

    /* The reference tables. */
    char path[FIT_PATH_MAX];
    fit_config_path(cfg, cfg->who_targets, path);
    if ((rc = load_json_file(path, &doc, err, errlen)))
        return rc;
    rc = fit_who_targets_load(&cfg->who, doc, err, errlen);
    json_decref(doc);
    if (rc)
        return rc;
    fit_config_path(cfg, cfg->met_table, path);
    if ((rc = load_json_file(path, &doc, err, errlen)))
        return rc;
    rc = fit_met_table_load(&cfg->met, doc, err, errlen);
    json_decref(doc);
    if (rc)
        return rc;
    json_t *bands;
    fit_config_path(cfg, cfg->districts_file, path);
    if ((rc = load_json_file(path, &doc, err, errlen)))
        return rc;
    fit_config_path(cfg, cfg->age_bands_file, path);
    if ((rc = load_json_file(path, &bands, err, errlen))) {
        json_decref(doc);
        return rc;
    }
    rc = fit_board_tables_load(&cfg->boards, doc, bands, err, errlen);
    json_decref(doc);
    json_decref(bands);
    if (rc == 0 && check_only) {
        fit_config_print(cfg, stdout);
        fit_config_free(cfg); /* the caller exits without it: nothing is left to free */
        return 1;
    }
    return rc;
}

void fit_config_print(const fit_config *cfg, FILE *out)
{
    fprintf(out, "fitsyncd: the configuration is valid (config file %s)\n", cfg->config_path);
    fprintf(out, "%-26s %-28s %s\n", "key", "value", "from");
    for (size_t i = 0; i < NKEYS; i++) {
        const key_spec *k = &schema[i];
        const char *dst = (const char *)cfg + k->offset;
        char value[FIT_PATH_MAX + 8];
        if (k->type == T_INT)
            snprintf(value, sizeof(value), "%d", *(const int *)(const void *)dst);
        else if (strcmp(k->key, "token.secret") == 0 && dst[0])
            snprintf(value, sizeof(value), "(%zu characters, not shown)", strlen(dst));
        else
            snprintf(value, sizeof(value), "\"%s\"", dst);
        fprintf(out, "%-26s %-28s %s\n", k->key, value, cfg->source[i]);
    }
}

void fit_config_free(fit_config *cfg)
{
    fit_met_table_free(&cfg->met);
    fit_board_tables_free(&cfg->boards);
}

int fit_mkdirs(const char *path)
{
    char buf[FIT_PATH_MAX];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, 0700) != 0 && errno != EEXIST)
                return FIT_EIO;
            *p = '/';
        }
    }
    if (mkdir(buf, 0700) != 0 && errno != EEXIST)
        return FIT_EIO;
    return 0;
}

int fit_secret_find(const char *configured, const char *data_dir, int create, char *out,
                    size_t outlen, char *err, size_t errlen)
{
    if (configured && *configured) {
        snprintf(out, outlen, "%s", configured);
        return 0;
    }
    char path[FIT_PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/token.secret", data_dir);
    FILE *f = fopen(path, "r");
    if (f) {
        char line[256] = "";
        if (!fgets(line, sizeof(line), f))
            line[0] = '\0';
        fclose(f);
        line[strcspn(line, "\r\n")] = '\0';
        if (strlen(line) < 16) {
            snprintf(err, errlen, "%s: secret is shorter than 16 characters", path);
            return FIT_EIO;
        }
        snprintf(out, outlen, "%s", line);
        return 0;
    }
    if (!create) {
        snprintf(err, errlen,
                 "no token secret: set FITSYNC_TOKEN_SECRET or start fitsyncd once with "
                 "--data-dir %s to create %s",
                 data_dir, path);
        return FIT_EIO;
    }
    unsigned char raw[32];
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        snprintf(err, errlen, "RAND_bytes failed");
        return FIT_EIO;
    }
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    if (fit_mkdirs(data_dir) != 0) {
        snprintf(err, errlen, "cannot create data directory %s: %s", data_dir, strerror(errno));
        return FIT_EIO;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0 || write(fd, hex, 64) != 64 || write(fd, "\n", 1) != 1) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return FIT_EIO;
    }
    close(fd);
    snprintf(out, outlen, "%s", hex);
    return 0;
}
