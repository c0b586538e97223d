/*
 * fit_slot against the Redis Cluster specification's figures and against
 * CLUSTER KEYSLOT answers of redis-server 7.0 recorded for these keys
 * (tests/integration/test_cluster.c asks a live cluster for many more).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "fit_slot.h"

#include <stdio.h>
#include <string.h>

static unsigned slot(const char *k)
{
    return fit_key_slot(k, strlen(k));
}

static void test_crc16_check_value(void **state)
{
    /* The spec's reference: CRC16/XMODEM of "123456789" is 0x31C3. */
    assert_int_equal(fit_crc16("123456789", 9), 0x31C3);
    assert_int_equal(fit_crc16("", 0), 0);
}

static void test_hash_tags(void **state)
{
    /* The spec's examples: both keys of a tag hash the tag only. */
    assert_int_equal(slot("{user1000}.following"), slot("user1000"));
    assert_int_equal(slot("{user1000}.followers"), slot("user1000"));
    /* Only the first '{' ... first '}' counts. */
    assert_int_equal(slot("foo{bar}{zap}"), slot("bar"));
    assert_int_equal(slot("foo{{bar}}zap"), slot("{bar"));
    /* An empty tag, or none closed, hashes the whole key. */
    assert_int_equal(slot("foo{}{bar}"), fit_crc16("foo{}{bar}", 10) & 16383);
    assert_int_equal(slot("foo{bar"), fit_crc16("foo{bar", 7) & 16383);
    /* fitsync's keys: one member's keys and its shard's shared keys share the slot. */
    assert_int_equal(slot("fit:{s3}:u:alice/log"), slot("fit:{s3}:lb:2026-W10:all"));
    assert_int_equal(slot("fit:{s3}:u:alice/log"), slot("s3"));
}

static void test_known_slots(void **state)
{
    /* CLUSTER KEYSLOT on redis-server 7.0.15. */
    assert_int_equal(slot("foo"), 12182);
    assert_int_equal(slot("hello"), 866);
    assert_int_equal(slot("somekey"), 11058);
    for (unsigned i = 0; i < 1000; i++) {
        char k[16];
        int n = snprintf(k, sizeof(k), "k%u", i);
        assert_true(fit_key_slot(k, (size_t)n) < 16384);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc16_check_value),
        cmocka_unit_test(test_hash_tags),
        cmocka_unit_test(test_known_slots),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
