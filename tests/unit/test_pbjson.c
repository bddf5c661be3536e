/* Unit tests of src/pbjson: proto3 JSON mapping over tests/unit/pbjson_test.proto (every scalar kind,
 * lists, maps, oneof, enums, name variants, every error class), google.protobuf.Any against byte vectors
 * computed independently (by hand from the wire format, with python3's stdlib), base64 (RFC 4648
 * vectors), and 10k random mutations of a rich document that must never crash and, when accepted, must
 * round-trip exactly. */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"
#include "pbjson/pbjson.h"
#include "pbjson_test.pb-c.h"

#include "lsan_check.h"

TestSuite(pbjson, .fini = cv_lsan_check);
TestSuite(pbjson_any, .fini = cv_lsan_check);
TestSuite(pbjson_b64, .fini = cv_lsan_check);
TestSuite(pbjson_fuzz, .fini = cv_lsan_check);

#define SCALARS_D (&cvtest__pbjson__scalars__descriptor)
#define EVERY_D (&cvtest__pbjson__everything__descriptor)
#define HELLO_D (&cvtest__pbjson__hello__descriptor)

typedef Cvtest__Pbjson__Scalars Scalars;
typedef Cvtest__Pbjson__Everything Every;
typedef Cvtest__Pbjson__Hello Hello;

static char errbuf[1024];

static json_t *load(const char *text)
{
    json_error_t je;
    json_t *j = json_loads(text, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    cr_assert_not_null(j, "test JSON does not parse: %s (%s)", je.text, text);
    return j;
}

/* Parses text as message d (rooted at root); returns the rc, *out the message on success. */
static int parse_at(const ProtobufCMessageDescriptor *d, const char *text, const char *root, void *out)
{
    json_t *j = load(text);
    ProtobufCMessage *m = NULL;
    int rc = cv_pbjson_from_json_at(d, j, root, &m, errbuf, sizeof errbuf);
    json_decref(j);
    if (rc == 0)
        cr_assert_not_null(m);
    else
        cr_assert_null(m);
    *(ProtobufCMessage **)out = m;
    return rc;
}

static void *parse_ok(const ProtobufCMessageDescriptor *d, const char *text)
{
    void *m;
    int rc = parse_at(d, text, NULL, &m);
    cr_assert_eq(rc, 0, "from_json(%s) = %d: %s", text, rc, errbuf);
    cr_assert_str_eq(errbuf, "");
    return m;
}

/* Expects CV_EINVAL with exactly this message. */
static void parse_err(const ProtobufCMessageDescriptor *d, const char *text, const char *root,
                      const char *msg)
{
    void *m;
    int rc = parse_at(d, text, root, &m);
    cr_assert_eq(rc, CV_EINVAL, "from_json(%s) = %d, expected CV_EINVAL", text, rc);
    cr_assert_str_eq(errbuf, msg, "from_json(%s)", text);
}

/* to_json of m must equal the JSON text expected (numbers compared exactly, key order ignored). */
static void expect_json(const void *m, const char *expected)
{
    json_t *got = NULL, *want = load(expected);
    int rc = cv_pbjson_to_json(m, &got, errbuf, sizeof errbuf);
    cr_assert_eq(rc, 0, "to_json = %d: %s", rc, errbuf);
    char *s = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
    int eq = json_equal(got, want);
    json_decref(got);
    json_decref(want);
    cr_assert(eq, "to_json gave %s, expected %s", s, expected);
    free(s);
}

static void msg_free(void *m)
{
    protobuf_c_message_free_unpacked(m, NULL);
}

/* Packed bytes of a message, to compare two messages exactly. */
static uint8_t *pack(const void *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(*len ? *len : 1);
    cr_assert_not_null(b);
    cr_assert_eq(protobuf_c_message_pack(m, b), *len);
    return b;
}

/* ---------------------------------------------------------------------------------------------------
 * Scalars. */

Test(pbjson, scalar_extremes_round_trip)
{
    static const char *text =
        "{\"i32\":-2147483648,\"i64\":\"-9223372036854775808\",\"u32\":4294967295,"
        "\"u64\":\"18446744073709551615\",\"s32\":2147483647,\"s64\":\"9223372036854775807\","
        "\"f32\":4294967295,\"f64\":\"18446744073709551615\",\"sf32\":-2147483648,"
        "\"sf64\":\"-9223372036854775808\",\"fl\":0.1,\"db\":1.7976931348623157e308,\"b\":true,"
        "\"str\":\"h\\u00e9llo \\u2603 \\ud83d\\ude00\",\"by\":\"AAEC/w==\",\"color\":\"COLOR_DEEP\"}";
    Scalars *s = parse_ok(SCALARS_D, text);
    cr_assert_eq(s->i32, INT32_MIN);
    cr_assert_eq(s->i64, INT64_MIN);
    cr_assert_eq(s->u32, UINT32_MAX);
    cr_assert_eq(s->u64, UINT64_MAX);
    cr_assert_eq(s->s32, INT32_MAX);
    cr_assert_eq(s->s64, INT64_MAX);
    cr_assert_eq(s->f32, UINT32_MAX);
    cr_assert_eq(s->f64, UINT64_MAX);
    cr_assert_eq(s->sf32, INT32_MIN);
    cr_assert_eq(s->sf64, INT64_MIN);
    cr_assert_eq(s->fl, 0.1f);
    cr_assert_eq(s->db, DBL_MAX);
    cr_assert_eq(s->b, 1);
    cr_assert_str_eq(s->str, "h\xc3\xa9llo \xe2\x98\x83 \xf0\x9f\x98\x80");
    cr_assert_eq(s->by.len, 4);
    cr_assert_eq(memcmp(s->by.data, "\x00\x01\x02\xff", 4), 0);
    cr_assert_eq(s->color, CVTEST__PBJSON__COLOR__COLOR_DEEP);
    expect_json(s, text); /* the canonical form is the input itself */
    msg_free(s);
}

Test(pbjson, defaults_are_omitted)
{
    Scalars s = CVTEST__PBJSON__SCALARS__INIT;
    expect_json(&s, "{}");
    Every e = CVTEST__PBJSON__EVERYTHING__INIT;
    expect_json(&e, "{}");
    Scalars *p = parse_ok(SCALARS_D, "{\"i32\":0,\"i64\":\"0\",\"str\":\"\",\"b\":false,\"by\":\"\","
                                     "\"color\":\"COLOR_UNSPECIFIED\",\"db\":0}");
    expect_json(p, "{}");
    msg_free(p);
    s.db = -0.0; /* negative zero is not the default value */
    expect_json(&s, "{\"db\":-0.0}");
}

Test(pbjson, integer_input_forms)
{
    Scalars *s = parse_ok(SCALARS_D, "{\"i32\":\"123\",\"u32\":1e2,\"s32\":\"-4e1\",\"i64\":9007199254740993,"
                                     "\"u64\":\"1.8446744073709551615e19\",\"s64\":\"150e-1\",\"f32\":5.0,"
                                     "\"sf32\":\"-0\",\"f64\":\"0.00e5\",\"sf64\":-9223372036854775807}");
    cr_assert_eq(s->i32, 123);
    cr_assert_eq(s->u32, 100);
    cr_assert_eq(s->s32, -40);
    cr_assert_eq(s->i64, 9007199254740993LL);
    cr_assert_eq(s->u64, UINT64_MAX);
    cr_assert_eq(s->s64, 15);
    cr_assert_eq(s->f32, 5);
    cr_assert_eq(s->sf32, 0);
    cr_assert_eq(s->f64, 0);
    cr_assert_eq(s->sf64, -INT64_MAX);
    expect_json(
        s, "{\"i32\":123,\"u32\":100,\"s32\":-40,\"i64\":\"9007199254740993\","
           "\"u64\":\"18446744073709551615\",\"s64\":\"15\",\"f32\":5,\"sf64\":\"-9223372036854775807\"}");
    msg_free(s);
}

Test(pbjson, integer_rejections)
{
    parse_err(SCALARS_D, "{\"i32\":1.5}", NULL, "i32: expected int32, got a fractional number");
    parse_err(SCALARS_D, "{\"i32\":2147483648}", NULL, "i32: value out of range for int32");
    parse_err(SCALARS_D, "{\"sf32\":-2147483649}", NULL, "sf32: value out of range for int32");
    parse_err(SCALARS_D, "{\"u32\":-1}", NULL, "u32: value out of range for uint32");
    parse_err(SCALARS_D, "{\"f32\":\"4294967296\"}", NULL, "f32: value out of range for uint32");
    parse_err(SCALARS_D, "{\"i64\":\"9223372036854775808\"}", NULL, "i64: value out of range for int64");
    parse_err(SCALARS_D, "{\"s64\":\"-9223372036854775809\"}", NULL, "s64: value out of range for int64");
    parse_err(SCALARS_D, "{\"u64\":\"18446744073709551616\"}", NULL, "u64: value out of range for uint64");
    parse_err(SCALARS_D, "{\"u64\":1e20}", NULL, "u64: value out of range for uint64");
    parse_err(SCALARS_D, "{\"u64\":\"-1\"}", NULL, "u64: value out of range for uint64");
    parse_err(SCALARS_D, "{\"i64\":\"1e400\"}", NULL, "i64: value out of range for int64");
    parse_err(SCALARS_D, "{\"i64\":\"1e-400\"}", NULL, "i64: expected int64, got a fractional number");
    parse_err(SCALARS_D, "{\"i64\":\"0.5\"}", NULL, "i64: expected int64, got a fractional number");
    const char *bad[] = {"\"12a\"", "\" 1\"", "\"+1\"", "\"01\"",   "\"1.\"",      "\".5\"",
                         "\"1e\"",  "\"\"",   "\"-\"",  "\"0x10\"", "\"Infinity\""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char text[64];
        snprintf(text, sizeof text, "{\"i32\":%s}", bad[i]);
        parse_err(SCALARS_D, text, NULL, "i32: expected int32, got a string that is not a number");
    }
    parse_err(SCALARS_D, "{\"i32\":true}", NULL, "i32: expected integer");
    parse_err(SCALARS_D, "{\"u64\":[1]}", NULL, "u64: expected integer");
    parse_err(SCALARS_D, "{\"s32\":{}}", NULL, "s32: expected integer");
}

Test(pbjson, floating_point)
{
    Scalars *s = parse_ok(SCALARS_D, "{\"fl\":\"NaN\",\"db\":\"-Infinity\"}");
    cr_assert(isnan(s->fl));
    cr_assert(isinf(s->db) && s->db < 0);
    expect_json(s, "{\"fl\":\"NaN\",\"db\":\"-Infinity\"}");
    msg_free(s);
    s = parse_ok(SCALARS_D, "{\"fl\":\"Infinity\",\"db\":\"2.5e-3\"}");
    cr_assert(isinf(s->fl) && s->fl > 0);
    cr_assert_eq(s->db, 2.5e-3);
    expect_json(s, "{\"fl\":\"Infinity\",\"db\":0.0025}");
    msg_free(s);
    /* FLT_MAX survives a round trip through its shortest decimal form (which is above FLT_MAX). */
    s = parse_ok(SCALARS_D, "{\"fl\":3.4028235e38,\"db\":5e-324}");
    cr_assert_eq(s->fl, FLT_MAX);
    cr_assert_eq(s->db, 5e-324);
    expect_json(s, "{\"fl\":3.4028235e38,\"db\":5e-324}");
    msg_free(s);
    s = parse_ok(SCALARS_D, "{\"fl\":-1,\"db\":42}");
    cr_assert_eq(s->fl, -1.0f);
    expect_json(s, "{\"fl\":-1.0,\"db\":42.0}");
    msg_free(s);
    parse_err(SCALARS_D, "{\"fl\":3.5e38}", NULL, "fl: value out of range for float");
    parse_err(SCALARS_D, "{\"db\":\"1e999\"}", NULL, "db: value out of range for double");
    parse_err(SCALARS_D, "{\"db\":\"nan\"}", NULL, "db: expected number, got a string that is not a number");
    parse_err(SCALARS_D, "{\"db\":\"0x1p3\"}", NULL,
              "db: expected number, got a string that is not a number");
    parse_err(SCALARS_D, "{\"fl\":false}", NULL, "fl: expected number");
}

Test(pbjson, bool_string_bytes)
{
    parse_err(SCALARS_D, "{\"b\":\"true\"}", NULL, "b: expected boolean");
    parse_err(SCALARS_D, "{\"b\":1}", NULL, "b: expected boolean");
    parse_err(SCALARS_D, "{\"str\":5}", NULL, "str: expected string");
    parse_err(SCALARS_D, "{\"str\":\"a\\u0000b\"}", NULL, "str: string contains a NUL character");
    parse_err(SCALARS_D, "{\"by\":7}", NULL, "by: expected base64 string");
    parse_err(SCALARS_D, "{\"by\":\"@@@@\"}", NULL, "by: invalid base64");
    parse_err(SCALARS_D, "{\"by\":\"A\"}", NULL, "by: invalid base64");
    parse_err(SCALARS_D, "{\"by\":\"+-==\"}", NULL, "by: invalid base64"); /* mixed alphabets */
    /* URL-safe and unpadded forms are accepted (proto3 JSON); output is standard with padding. */
    Scalars *s = parse_ok(SCALARS_D, "{\"by\":\"-_8\"}");
    cr_assert_eq(s->by.len, 2);
    cr_assert_eq(memcmp(s->by.data, "\xfb\xff", 2), 0);
    expect_json(s, "{\"by\":\"+/8=\"}");
    msg_free(s);
}

/* The four alphabet/padding variants proto3 JSON accepts for bytes, and what stays rejected. */
Test(pbjson, bytes_base64_variants)
{
    static const char *ok[][2] = {
        {"{\"by\":\"+/8=\"}", "\xfb\xff"}, /* standard, padded */
        {"{\"by\":\"+/8\"}", "\xfb\xff"},  /* standard, unpadded */
        {"{\"by\":\"-_8=\"}", "\xfb\xff"}, /* URL-safe, padded */
        {"{\"by\":\"Zh==\"}", "f"},        /* unused bits ignored (as Go's protojson) */
        {"{\"by\":\"Zm9\"}", "fo"},        /* unpadded, unused bits ignored */
        {"{\"by\":\"Zm9vYmFy\"}", "foobar"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        Scalars *s = parse_ok(SCALARS_D, ok[i][0]);
        cr_assert_eq(s->by.len, strlen(ok[i][1]), "%s", ok[i][0]);
        cr_assert_eq(memcmp(s->by.data, ok[i][1], s->by.len), 0, "%s", ok[i][0]);
        msg_free(s);
    }
    parse_err(SCALARS_D, "{\"by\":\"Zg=\"}", NULL, "by: invalid base64");   /* short padding */
    parse_err(SCALARS_D, "{\"by\":\"Zm8==\"}", NULL, "by: invalid base64"); /* extra padding */
    parse_err(SCALARS_D, "{\"by\":\"Zg=A\"}", NULL, "by: invalid base64");  /* data after padding */
    parse_err(SCALARS_D, "{\"by\":\"Zm 9v\"}", NULL, "by: invalid base64"); /* whitespace */
}

Test(pbjson, enums)
{
    Scalars *s = parse_ok(SCALARS_D, "{\"color\":2}");
    cr_assert_eq(s->color, CVTEST__PBJSON__COLOR__COLOR_GREEN);
    expect_json(s, "{\"color\":\"COLOR_GREEN\"}");
    msg_free(s);
    s = parse_ok(SCALARS_D, "{\"color\":77}"); /* proto3 enums are open: unnamed numbers are kept */
    cr_assert_eq((int)s->color, 77);
    expect_json(s, "{\"color\":77}");
    msg_free(s);
    s = parse_ok(SCALARS_D, "{\"color\":-3.0}");
    cr_assert_eq(s->color, CVTEST__PBJSON__COLOR__COLOR_DEEP);
    msg_free(s);
    parse_err(SCALARS_D, "{\"color\":\"COLOR_PINK\"}", NULL,
              "color: unknown value \"COLOR_PINK\" of enum cvtest.pbjson.Color");
    parse_err(SCALARS_D, "{\"color\":\"color_red\"}", NULL,
              "color: unknown value \"color_red\" of enum cvtest.pbjson.Color");
    parse_err(SCALARS_D, "{\"color\":2147483648}", NULL, "color: value out of range for int32");
    parse_err(SCALARS_D, "{\"color\":1.5}", NULL, "color: expected int32, got a fractional number");
    parse_err(SCALARS_D, "{\"color\":true}", NULL, "color: expected enum name or number");
}

/* ---------------------------------------------------------------------------------------------------
 * Messages, lists, maps, oneof, names. */

Test(pbjson, nested_and_repeated)
{
    static const char *text =
        "{\"scalars\":{\"i32\":7},\"rI32\":[1,-2,3],\"rI64\":[\"-9223372036854775808\",\"5\"],"
        "\"rU64\":[\"18446744073709551615\"],\"rDb\":[0.5,\"NaN\"],\"rFl\":[1.5],\"rB\":[true,false],"
        "\"rStr\":[\"a\",\"\"],\"rBy\":[\"AA==\",\"\"],\"rColor\":[\"COLOR_RED\",9],"
        "\"items\":[{\"name\":\"x\",\"count\":1,\"tags\":[\"t1\",\"t2\"]},{},{\"count\":3}],"
        "\"child\":{\"child\":{\"snakeCaseName\":\"deep\"}}}";
    Every *e = parse_ok(EVERY_D, text);
    cr_assert_eq(e->scalars->i32, 7);
    cr_assert_eq(e->n_r_i32, 3);
    cr_assert_eq(e->r_i32[1], -2);
    cr_assert_eq(e->r_i64[0], INT64_MIN);
    cr_assert_eq(e->r_u64[0], UINT64_MAX);
    cr_assert(isnan(e->r_db[1]));
    cr_assert_eq(e->r_b[0], 1);
    cr_assert_eq(e->r_b[1], 0);
    cr_assert_str_eq(e->r_str[1], "");
    cr_assert_eq(e->r_by[0].len, 1);
    cr_assert_eq(e->r_by[1].len, 0);
    cr_assert_eq((int)e->r_color[1], 9);
    cr_assert_eq(e->n_items, 3);
    cr_assert_str_eq(e->items[0]->tags[1], "t2");
    cr_assert_str_eq(e->items[1]->name, "");
    cr_assert_eq(e->items[2]->count, 3);
    cr_assert_str_eq(e->child->child->snake_case_name, "deep");
    cr_assert_null(e->child->child->child);
    expect_json(e, text);
    /* protobuf-c itself can pack and unpack what from_json built. */
    size_t len;
    uint8_t *b = pack(e, &len);
    Every *u = cvtest__pbjson__everything__unpack(NULL, len, b);
    cr_assert_not_null(u);
    expect_json(u, text);
    cvtest__pbjson__everything__free_unpacked(u, NULL);
    free(b);
    msg_free(e);
}

Test(pbjson, error_paths)
{
    parse_err(EVERY_D, "{\"items\":[{},{},{\"count\":\"x1\"}]}", "request",
              "request.items[2].count: expected int32, got a string that is not a number");
    parse_err(EVERY_D, "{\"items\":[{},{},{\"count\":[]}]}", "request",
              "request.items[2].count: expected integer");
    parse_err(EVERY_D, "{\"child\":{\"items\":[{\"tags\":[\"a\",7]}]}}", NULL,
              "child.items[0].tags[1]: expected string");
    parse_err(EVERY_D, "{\"by_id\":{\"12\":{\"name\":1}}}", "request",
              "request.by_id[\"12\"].name: expected string");
    parse_err(EVERY_D, "[]", "request", "request: expected object");
    parse_err(EVERY_D, "[]", NULL, "expected object");
    parse_err(EVERY_D, "{\"scalars\":5}", NULL, "scalars: expected object");
    parse_err(EVERY_D, "{\"items\":{}}", NULL, "items: expected array");
    parse_err(EVERY_D, "{\"items\":[null]}", NULL, "items[0]: null is not allowed in a list");
    parse_err(EVERY_D, "{\"rI32\":[1,null]}", NULL, "rI32[1]: null is not allowed in a list");
}

Test(pbjson, null_means_default)
{
    Every *e = parse_ok(EVERY_D, "{\"scalars\":null,\"rI32\":null,\"counts\":null,\"num\":null,"
                                 "\"text\":\"t\",\"snakeCaseName\":null,\"child\":{\"x2Y\":null}}");
    cr_assert_null(e->scalars);
    cr_assert_eq(e->n_r_i32, 0);
    cr_assert_eq(e->n_counts, 0);
    cr_assert_eq(e->choice_case, CVTEST__PBJSON__EVERYTHING__CHOICE_TEXT);
    cr_assert_str_eq(e->snake_case_name, "");
    expect_json(e, "{\"text\":\"t\",\"child\":{}}");
    msg_free(e);
}

Test(pbjson, maps)
{
    static const char *text =
        "{\"counts\":{\"a\":1,\"\":-2},\"byId\":{\"-5\":{\"name\":\"neg\"},\"9223372036854775807\":{}},"
        "\"flags\":{\"true\":\"y\",\"false\":\"n\"},\"colors\":{\"4294967295\":\"COLOR_RED\",\"0\":5},"
        "\"blobs\":{\"-1\":\"AQ==\"},\"weights\":{\"18446744073709551615\":2.5}}";
    Every *e = parse_ok(EVERY_D, text);
    cr_assert_eq(e->n_counts, 2);
    cr_assert_str_eq(e->counts[0]->key, "a");
    cr_assert_eq(e->counts[1]->value, -2);
    cr_assert_eq(e->n_by_id, 2);
    cr_assert_eq(e->by_id[0]->key, -5);
    cr_assert_str_eq(e->by_id[0]->value->name, "neg");
    cr_assert_eq(e->by_id[1]->key, INT64_MAX);
    cr_assert_eq(e->flags[0]->key, 1);
    cr_assert_eq(e->colors[0]->key, UINT32_MAX);
    cr_assert_eq(e->colors[0]->value, CVTEST__PBJSON__COLOR__COLOR_RED);
    cr_assert_eq(e->blobs[0]->key, -1);
    cr_assert_eq(e->blobs[0]->value.len, 1);
    cr_assert_eq(e->weights[0]->key, UINT64_MAX);
    cr_assert_eq(e->weights[0]->value, 2.5);
    expect_json(e, text);
    msg_free(e);
    /* A map entry whose value message is absent on the wire still renders as {}. */
    Cvtest__Pbjson__Everything__ByIdEntry ent = CVTEST__PBJSON__EVERYTHING__BY_ID_ENTRY__INIT,
                                          *ents[1] = {&ent};
    Every m = CVTEST__PBJSON__EVERYTHING__INIT;
    ent.key = 3;
    m.n_by_id = 1;
    m.by_id = ents;
    expect_json(&m, "{\"byId\":{\"3\":{}}}");
    static const char *badkeys[] = {"abc", "1.5", "1e2", "-0", "01", "", "-", " 1", "+1", "0x1"};
    for (size_t i = 0; i < sizeof badkeys / sizeof *badkeys; i++) {
        char text[64], msg[128];
        snprintf(text, sizeof text, "{\"byId\":{\"%s\":{}}}", badkeys[i]);
        snprintf(msg, sizeof msg, "byId[\"%s\"]: expected an integer map key in canonical decimal form",
                 badkeys[i]);
        parse_err(EVERY_D, text, NULL, msg);
    }
    parse_err(EVERY_D, "{\"byId\":{\"9223372036854775808\":{}}}", NULL,
              "byId[\"9223372036854775808\"]: value out of range for int64");
    parse_err(EVERY_D, "{\"flags\":{\"yes\":\"x\"}}", NULL,
              "flags[\"yes\"]: expected map key \"true\" or \"false\"");
    parse_err(EVERY_D, "{\"colors\":{\"-1\":1}}", NULL, "colors[\"-1\"]: value out of range for uint32");
    parse_err(EVERY_D, "{\"counts\":{\"a\":null}}", NULL,
              "counts[\"a\"]: null is not allowed as a map value");
    parse_err(EVERY_D, "{\"counts\":{\"a\":\"b\"}}", NULL,
              "counts[\"a\"]: expected int32, got a string that is not a number");
    parse_err(EVERY_D, "{\"counts\":[]}", NULL, "counts: expected object (map)");
    /* jansson's parser refuses NUL in keys, but a program can build such an object. */
    json_t *j = json_object(), *counts = json_object();
    json_object_setn_new(counts, "a\0b", 3, json_integer(1));
    json_object_set_new(j, "counts", counts);
    ProtobufCMessage *out = NULL;
    cr_assert_eq(cv_pbjson_from_json(EVERY_D, j, &out, errbuf, sizeof errbuf), CV_EINVAL);
    cr_assert_str_eq(errbuf, "counts[\"a?b\"]: map key contains a NUL character");
    json_object_clear(j);
    json_object_setn_new(j, "text\0", 5, json_string("x"));
    cr_assert_eq(cv_pbjson_from_json(EVERY_D, j, &out, errbuf, sizeof errbuf), CV_EINVAL);
    cr_assert_str_eq(errbuf, "text?: unknown field (not in cvtest.pbjson.Everything)");
    json_decref(j);
}

Test(pbjson, oneof)
{
    Every *e = parse_ok(EVERY_D, "{\"num\":\"0\"}");
    cr_assert_eq(e->choice_case, CVTEST__PBJSON__EVERYTHING__CHOICE_NUM);
    expect_json(e, "{\"num\":\"0\"}"); /* a set oneof member is emitted even at its zero value */
    msg_free(e);
    e = parse_ok(EVERY_D, "{\"item\":{\"name\":\"i\"}}");
    cr_assert_eq(e->choice_case, CVTEST__PBJSON__EVERYTHING__CHOICE_ITEM);
    cr_assert_str_eq(e->item->name, "i");
    expect_json(e, "{\"item\":{\"name\":\"i\"}}");
    msg_free(e);
    e = parse_ok(EVERY_D, "{\"shade\":\"COLOR_UNSPECIFIED\",\"text\":null}");
    cr_assert_eq(e->choice_case, CVTEST__PBJSON__EVERYTHING__CHOICE_SHADE);
    expect_json(e, "{\"shade\":\"COLOR_UNSPECIFIED\"}");
    msg_free(e);
    parse_err(EVERY_D, "{\"text\":\"a\",\"num\":1}", NULL, "num: conflicts with \"text\" (same oneof)");
    parse_err(EVERY_D, "{\"item\":{},\"shade\":1}", NULL, "shade: conflicts with \"item\" (same oneof)");
    /* Errors inside a oneof member leave a message that frees cleanly (checked by ASan). */
    parse_err(EVERY_D, "{\"item\":{\"tags\":[\"a\",1]}}", NULL, "item.tags[1]: expected string");
    parse_err(EVERY_D, "{\"text\":7}", NULL, "text: expected string");
}

Test(pbjson, field_name_variants)
{
    Every *e =
        parse_ok(EVERY_D, "{\"snake_case_name\":\"a\",\"x_2_y\":3,\"r_i32\":[1],\"by_id\":{\"1\":{}}}");
    cr_assert_str_eq(e->snake_case_name, "a");
    cr_assert_eq(e->x_2_y, 3);
    expect_json(e, "{\"snakeCaseName\":\"a\",\"x2Y\":3,\"rI32\":[1],\"byId\":{\"1\":{}}}");
    msg_free(e);
    e = parse_ok(EVERY_D, "{\"snakeCaseName\":\"b\",\"x2Y\":4}");
    cr_assert_str_eq(e->snake_case_name, "b");
    cr_assert_eq(e->x_2_y, 4);
    msg_free(e);
    parse_err(EVERY_D, "{\"snakeCaseName\":\"a\",\"snake_case_name\":\"b\"}", NULL,
              "snake_case_name: field \"snake_case_name\" given twice");
    parse_err(EVERY_D, "{\"rI32\":[1],\"r_i32\":null}", NULL, "r_i32: field \"r_i32\" given twice");
    parse_err(EVERY_D, "{\"snakecasename\":1}", NULL,
              "snakecasename: unknown field (not in cvtest.pbjson.Everything)");
    parse_err(EVERY_D, "{\"SnakeCaseName\":1}", NULL,
              "SnakeCaseName: unknown field (not in cvtest.pbjson.Everything)");
    parse_err(EVERY_D, "{\"child\":{\"nope\":1}}", "request",
              "request.child.nope: unknown field (not in cvtest.pbjson.Everything)");
}

Test(pbjson, error_text_is_one_clean_line)
{
    /* Control characters, quotes and long keys are neutralised and cut. */
    parse_err(EVERY_D, "{\"a\\nb\\\"c\\\\\":1}", NULL,
              "a?b?c?: unknown field (not in cvtest.pbjson.Everything)");
    char text[400];
    snprintf(text, sizeof text, "{\"%0200d\":1}", 0);
    void *m;
    cr_assert_eq(parse_at(EVERY_D, text, NULL, &m), CV_EINVAL);
    cr_assert(strstr(errbuf, "...: unknown field") != NULL, "%s", errbuf);
    cr_assert_null(strchr(errbuf, '\n'));
    /* A tiny error buffer is filled and terminated, never overrun, and not cut inside a UTF-8 sequence. */
    char small[8];
    json_t *j = load("{\"\\u00e9\\u00e9\\u00e9\\u00e9\":1}");
    ProtobufCMessage *out = NULL;
    cr_assert_eq(cv_pbjson_from_json(EVERY_D, j, &out, small, sizeof small), CV_EINVAL);
    cr_assert_str_eq(small, "\xc3\xa9\xc3\xa9\xc3\xa9");
    json_decref(j);
}

/* {"child":{"child":...}} with n messages in all (the root included). */
static char *nested_text(int n)
{
    size_t cap = (size_t)n * 12 + 16, o = 0;
    char *s = malloc(cap);
    cr_assert_not_null(s);
    for (int i = 1; i < n; i++) o += (size_t)snprintf(s + o, cap - o, "{\"child\":");
    o += (size_t)snprintf(s + o, cap - o, "{}");
    for (int i = 1; i < n; i++) s[o++] = '}';
    s[o] = '\0';
    return s;
}

Test(pbjson, depth_limit)
{
    char *ok = nested_text(CV_PBJSON_MAX_DEPTH), *deep = nested_text(CV_PBJSON_MAX_DEPTH + 1);
    Every *e = parse_ok(EVERY_D, ok);
    json_t *j = NULL;
    cr_assert_eq(cv_pbjson_to_json((ProtobufCMessage *)e, &j, errbuf, sizeof errbuf), 0);
    json_decref(j);
    msg_free(e);
    void *m;
    cr_assert_eq(parse_at(EVERY_D, deep, NULL, &m), CV_EINVAL);
    cr_assert(strstr(errbuf, ": messages nested deeper than 64") != NULL, "%s", errbuf);
    free(ok);
    free(deep);
    char *huge = nested_text(1500); /* within jansson's own limit, far beyond ours */
    cr_assert_eq(parse_at(EVERY_D, huge, NULL, &m), CV_EINVAL);
    free(huge);
    /* to_json refuses messages nested deeper than the limit too (built by hand here). */
    Every chain[CV_PBJSON_MAX_DEPTH + 1];
    for (int i = 0; i <= CV_PBJSON_MAX_DEPTH; i++) {
        Every init = CVTEST__PBJSON__EVERYTHING__INIT;
        chain[i] = init;
        if (i) chain[i - 1].child = &chain[i];
    }
    j = NULL;
    cr_assert_eq(cv_pbjson_to_json(&chain[0].base, &j, errbuf, sizeof errbuf), CV_EINVAL);
    cr_assert_null(j);
    cr_assert(strstr(errbuf, "messages nested deeper than 64") != NULL, "%s", errbuf);
    chain[CV_PBJSON_MAX_DEPTH - 1].child = NULL;
    cr_assert_eq(cv_pbjson_to_json(&chain[0].base, &j, errbuf, sizeof errbuf), 0);
    json_decref(j);
}

Test(pbjson, to_json_rejects_invalid_utf8)
{
    Scalars s = CVTEST__PBJSON__SCALARS__INIT;
    Every e = CVTEST__PBJSON__EVERYTHING__INIT;
    s.str = "ok\xff";
    e.scalars = &s;
    json_t *j = NULL;
    cr_assert_eq(cv_pbjson_to_json(&e.base, &j, errbuf, sizeof errbuf), CV_EINVAL);
    cr_assert_null(j);
    cr_assert_str_eq(errbuf, "scalars.str: string is not valid UTF-8");
    s.str = "\xed\xa0\x80"; /* an encoded surrogate */
    cr_assert_eq(cv_pbjson_to_json(&e.base, &j, errbuf, sizeof errbuf), CV_EINVAL);
}

Test(pbjson, invalid_arguments)
{
    ProtobufCMessage *m = (ProtobufCMessage *)0x1;
    json_t *j = load("{}");
    cr_assert_eq(cv_pbjson_from_json(NULL, j, &m, errbuf, sizeof errbuf), CV_EINVAL);
    cr_assert_null(m);
    cr_assert_eq(cv_pbjson_from_json(EVERY_D, NULL, &m, NULL, 0), CV_EINVAL);
    cr_assert_eq(cv_pbjson_from_json(EVERY_D, j, NULL, errbuf, sizeof errbuf), CV_EINVAL);
    json_decref(j);
    json_t *o = (json_t *)0x1;
    cr_assert_eq(cv_pbjson_to_json(NULL, &o, errbuf, sizeof errbuf), CV_EINVAL);
    cr_assert_null(o);
}

/* ---------------------------------------------------------------------------------------------------
 * google.protobuf.Any. Vectors: Any{type_url: "type.googleapis.com/cvtest.pbjson.Hello", value:
 * Hello{...} serialized}, computed from the wire format by hand in python3 and base64-encoded there. */

static const char HELLO_ANY_B64[] = /* Hello{name: "hi", times: 3} */
    "Cid0eXBlLmdvb2dsZWFwaXMuY29tL2N2dGVzdC5wYmpzb24uSGVsbG8SBgoCaGkQAw==";
static const char HELLO_ANY_HEX[] =
    "0a27747970652e676f6f676c65617069732e636f6d2f6376746573742e70626a736f6e2e48656c6c6f12060a0268691003";

static uint8_t *unhex(const char *hex, size_t *len)
{
    *len = strlen(hex) / 2;
    uint8_t *b = malloc(*len);
    cr_assert_not_null(b);
    for (size_t i = 0; i < *len; i++) {
        unsigned v;
        cr_assert_eq(sscanf(hex + 2 * i, "%2x", &v), 1);
        b[i] = (uint8_t)v;
    }
    return b;
}

Test(pbjson_any, pack_matches_independent_vector)
{
    Hello h = CVTEST__PBJSON__HELLO__INIT;
    h.name = "hi";
    h.times = 3;
    uint8_t *buf;
    size_t len, vlen;
    cr_assert_eq(cv_pbjson_any_pack(&h.base, &buf, &len), 0);
    uint8_t *want = unhex(HELLO_ANY_HEX, &vlen);
    cr_assert_eq(len, vlen);
    cr_assert_eq(memcmp(buf, want, len), 0);
    char *b64;
    size_t b64len;
    cr_assert_eq(cv_pbjson_b64_encode(buf, len, &b64, &b64len), 0);
    cr_assert_str_eq(b64, HELLO_ANY_B64);
    cr_assert_eq(b64len, strlen(HELLO_ANY_B64));
    free(b64);
    free(want);
    free(buf);
}

static Hello *unpack_b64(const char *b64, int expect_rc)
{
    uint8_t *buf;
    size_t len;
    cr_assert_eq(cv_pbjson_b64_decode(b64, strlen(b64), &buf, &len), 0);
    ProtobufCMessage *m = (ProtobufCMessage *)0x1;
    int rc = cv_pbjson_any_unpack(HELLO_D, buf, len, &m, errbuf, sizeof errbuf);
    free(buf);
    cr_assert_eq(rc, expect_rc, "any_unpack = %d: %s", rc, errbuf);
    if (rc) cr_assert_null(m);
    return (Hello *)m;
}

Test(pbjson_any, unpack_independent_vectors)
{
    Hello *h = unpack_b64(HELLO_ANY_B64, 0);
    cr_assert_str_eq(h->name, "hi");
    cr_assert_eq(h->times, 3);
    msg_free(h);
    h = unpack_b64("Cid0eXBlLmdvb2dsZWFwaXMuY29tL2N2dGVzdC5wYmpzb24uSGVsbG8SCwoGaMOpbGxvEKwC", 0);
    cr_assert_str_eq(h->name, "h\xc3\xa9llo");
    cr_assert_eq(h->times, 300);
    msg_free(h);
    h = unpack_b64("Cid0eXBlLmdvb2dsZWFwaXMuY29tL2N2dGVzdC5wYmpzb24uSGVsbG8SCxD///////////8B", 0);
    cr_assert_eq(h->times, -1);
    msg_free(h);
}

Test(pbjson_any, round_trip_and_type_checks)
{
    Hello h = CVTEST__PBJSON__HELLO__INIT;
    h.name = "round";
    h.times = -7;
    uint8_t *buf;
    size_t len;
    cr_assert_eq(cv_pbjson_any_pack(&h.base, &buf, &len), 0);
    ProtobufCMessage *m;
    cr_assert_eq(cv_pbjson_any_unpack(HELLO_D, buf, len, &m, errbuf, sizeof errbuf), 0);
    cr_assert_str_eq(((Hello *)m)->name, "round");
    cr_assert_eq(((Hello *)m)->times, -7);
    msg_free(m);
    cr_assert_eq(cv_pbjson_any_unpack(&cvtest__pbjson__item__descriptor, buf, len, &m, errbuf, sizeof errbuf),
                 CV_EINVAL);
    cr_assert_null(m);
    cr_assert_str_eq(errbuf,
                     "Any holds \"type.googleapis.com/cvtest.pbjson.Hello\", expected cvtest.pbjson.Item");
    /* Every strict prefix is either malformed or (cut right after type_url) an Any with an empty value. */
    for (size_t cut = 0; cut < len; cut++) {
        int rc = cv_pbjson_any_unpack(HELLO_D, buf, cut, &m, errbuf, sizeof errbuf);
        if (cut == 41) {
            cr_assert_eq(rc, 0);
            cr_assert_str_eq(((Hello *)m)->name, "");
            msg_free(m);
        } else {
            cr_assert_eq(rc, CV_EINVAL, "prefix %zu", cut);
        }
    }
    free(buf);
    /* An empty message packs to a type_url alone. */
    Cvtest__Pbjson__Empty empty = CVTEST__PBJSON__EMPTY__INIT;
    cr_assert_eq(cv_pbjson_any_pack(&empty.base, &buf, &len), 0);
    cr_assert_eq(len, 2 + strlen("type.googleapis.com/cvtest.pbjson.Empty"));
    cr_assert_eq(
        cv_pbjson_any_unpack(&cvtest__pbjson__empty__descriptor, buf, len, &m, errbuf, sizeof errbuf), 0);
    msg_free(m);
    free(buf);
}

Test(pbjson_any, odd_encodings)
{
    ProtobufCMessage *m;
    /* bare full name as type_url, value first, an unknown varint field 3 */
    static const uint8_t bare[] = {0x12, 0x02, 0x10, 0x05, 0x18, 0x96, 0x01, 0x0a, 0x13, 'c',
                                   'v',  't',  'e',  's',  't',  '.',  'p',  'b',  'j',  's',
                                   'o',  'n',  '.',  'H',  'e',  'l',  'l',  'o'};
    cr_assert_eq(cv_pbjson_any_unpack(HELLO_D, bare, sizeof bare, &m, errbuf, sizeof errbuf), 0, "%s",
                 errbuf);
    cr_assert_eq(((Hello *)m)->times, 5);
    msg_free(m);
    static const uint8_t other[] = {0x0a, 0x06, 'x', 'H', 'e', 'l', 'l', 'o'};
    cr_assert_eq(cv_pbjson_any_unpack(HELLO_D, other, sizeof other, &m, errbuf, sizeof errbuf), CV_EINVAL);
    static const uint8_t suffix[] = {0x0a, 0x14, 'x', 'c', 'v', 't', 'e', 's', 't', '.', 'p',
                                     'b',  'j',  's', 'o', 'n', '.', 'H', 'e', 'l', 'l', 'o'};
    cr_assert_eq(cv_pbjson_any_unpack(HELLO_D, suffix, sizeof suffix, &m, errbuf, sizeof errbuf), CV_EINVAL);
    static const uint8_t nourl[] = {0x12, 0x02, 0x10, 0x05};
    cr_assert_eq(cv_pbjson_any_unpack(HELLO_D, nourl, sizeof nourl, &m, errbuf, sizeof errbuf), CV_EINVAL);
    cr_assert_str_eq(errbuf, "Any has no type_url");
    static const uint8_t badval[] = {0x0a, 0x13, 'c', 'v', 't', 'e', 's', 't', '.', 'p',  'b',  'j',
                                     's',  'o',  'n', '.', 'H', 'e', 'l', 'l', 'o', 0x12, 0x01, 0xff};
    cr_assert_eq(cv_pbjson_any_unpack(HELLO_D, badval, sizeof badval, &m, errbuf, sizeof errbuf), CV_EINVAL);
    cr_assert_str_eq(errbuf, "Any value is not a valid cvtest.pbjson.Hello");
    static const uint8_t wrongwt[] = {0x08, 0x01}; /* field 1 as a varint */
    cr_assert_eq(cv_pbjson_any_unpack(HELLO_D, wrongwt, sizeof wrongwt, &m, errbuf, sizeof errbuf),
                 CV_EINVAL);
    cr_assert_str_eq(errbuf, "not a serialized google.protobuf.Any");
    static const uint8_t longvarint[] = {0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
    cr_assert_eq(cv_pbjson_any_unpack(HELLO_D, longvarint, sizeof longvarint, &m, errbuf, sizeof errbuf),
                 CV_EINVAL);
    static const uint8_t group[] = {0x1b, 0x1c};
    cr_assert_eq(cv_pbjson_any_unpack(HELLO_D, group, sizeof group, &m, errbuf, sizeof errbuf), CV_EINVAL);
    cr_assert_eq(cv_pbjson_any_unpack(HELLO_D, NULL, 0, &m, errbuf, sizeof errbuf), CV_EINVAL);
    cr_assert_null(m);
}

/* ---------------------------------------------------------------------------------------------------
 * base64. */

Test(pbjson_b64, rfc4648_vectors)
{
    static const char *vec[][2] = {{"", ""},          {"f", "Zg=="},         {"fo", "Zm8="},
                                   {"foo", "Zm9v"},     {"foob", "Zm9vYg=="},  {"fooba", "Zm9vYmE="},
                                   {"foobar", "Zm9vYmFy"}};
    for (size_t i = 0; i < sizeof vec / sizeof *vec; i++) {
        char *s;
        size_t n;
        uint8_t *b;
        cr_assert_eq(cv_pbjson_b64_encode((const uint8_t *)vec[i][0], strlen(vec[i][0]), &s, &n), 0);
        cr_assert_str_eq(s, vec[i][1]);
        cr_assert_eq(n, strlen(vec[i][1]));
        free(s);
        cr_assert_eq(cv_pbjson_b64_decode(vec[i][1], strlen(vec[i][1]), &b, &n), 0);
        cr_assert_not_null(b);
        cr_assert_eq(n, strlen(vec[i][0]));
        cr_assert_eq(memcmp(b, vec[i][0], n), 0);
        free(b);
    }
}

Test(pbjson_b64, strict_decoding_rejects)
{
    static const char *bad[] = {"Zg",   "Zg=",  "Zh==",     "Zm9=",     "Zm9v\n", "Zm-v",   "Zm_v", "=Zg=",
                                "Z===", "====", "Zm9vY===", "Zg==Zg==", "Zm 9",   "Zm9vYg", "A",    "Zm9v="};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        uint8_t *b = (uint8_t *)0x1;
        size_t n = 99;
        cr_assert_eq(cv_pbjson_b64_decode(bad[i], strlen(bad[i]), &b, &n), CV_EINVAL, "\"%s\" accepted",
                     bad[i]);
        cr_assert_null(b);
    }
    uint8_t *b;
    size_t n;
    cr_assert_eq(cv_pbjson_b64_decode("Zm\0v", 4, &b, &n), CV_EINVAL);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

Test(pbjson_b64, random_round_trips)
{
    uint8_t data[64];
    for (int iter = 0; iter < 2000; iter++) {
        size_t len = rnd() % sizeof data, n, m;
        for (size_t i = 0; i < len; i++) data[i] = (uint8_t)rnd();
        char *s;
        uint8_t *b;
        cr_assert_eq(cv_pbjson_b64_encode(data, len, &s, &n), 0);
        cr_assert_eq(n, (len + 2) / 3 * 4);
        cr_assert_eq(cv_pbjson_b64_decode(s, n, &b, &m), 0);
        cr_assert_eq(m, len);
        cr_assert_eq(memcmp(b, data, len), 0);
        free(b);
        free(s);
    }
}

/* ---------------------------------------------------------------------------------------------------
 * Robustness: random mutations of a rich document (as text and as a JSON tree). Nothing may crash
 * (ASan/UBSan run this too); whatever is accepted must render and re-parse to the same message. */

static const char FUZZ_BASE[] =
    "{\"scalars\":{\"i32\":-5,\"i64\":\"-9223372036854775808\",\"u32\":4294967295,\"u64\":"
    "\"18446744073709551615\","
    "\"s32\":1,\"s64\":\"2\",\"f32\":3,\"f64\":\"4\",\"sf32\":-6,\"sf64\":\"-7\",\"fl\":1.25,\"db\":\"NaN\","
    "\"b\":true,\"str\":\"s\\u00e9\",\"by\":\"AAEC\",\"color\":\"COLOR_GREEN\"},"
    "\"rI32\":[1,2,3],\"rI64\":[\"4\",5],\"rU64\":[\"6\"],\"rDb\":[1.5,\"Infinity\"],\"rFl\":[0.5],\"rB\":["
    "true],"
    "\"rStr\":[\"a\",\"b\"],\"rBy\":[\"AQ==\"],\"rColor\":[\"COLOR_RED\",2],"
    "\"items\":[{\"name\":\"n\",\"count\":1,\"tags\":[\"t\"]},{\"count\":2}],"
    "\"counts\":{\"a\":1,\"b\":2},\"byId\":{\"1\":{\"name\":\"x\"},\"-2\":{}},\"flags\":{\"true\":\"t\"},"
    "\"colors\":{\"7\":\"COLOR_DEEP\"},\"blobs\":{\"3\":\"AA==\"},\"weights\":{\"9\":0.25},"
    "\"text\":\"choice\",\"child\":{\"num\":\"12\",\"child\":{\"snakeCaseName\":\"z\"}},\"x_2_y\":9}";

static json_t *random_value(int depth)
{
    static const char *strs[] = {
        "", "NaN", "Infinity", "-Infinity", "1e2", "-0", "18446744073709551616", "9223372036854775807",
        "COLOR_RED", "AA==", "-_", "true", "x\xc3\xa9", "1.5"};
    switch (rnd() % (depth > 2 ? 7 : 9)) {
    case 0:
        return json_null();
    case 1:
        return json_boolean(rnd() & 1);
    case 2:
        return json_integer((json_int_t)rnd());
    case 3:
        return json_integer((json_int_t)(rnd() % 5) - 2);
    case 4:
        return json_real((double)(int64_t)rnd() / 1000.0);
    case 5:
        return json_string(strs[rnd() % (sizeof strs / sizeof *strs)]);
    case 6:
        return json_real(ldexp(1.0, (int)(rnd() % 140)));
    case 7: {
        json_t *a = json_array();
        for (int i = (int)(rnd() % 3); i > 0; i--) json_array_append_new(a, random_value(depth + 1));
        return a;
    }
    default: {
        static const char *keys[] = {"i32", "name", "child", "items", "counts", "1", "num", "text", "bogus"};
        json_t *o = json_object();
        for (int i = (int)(rnd() % 3); i > 0; i--)
            json_object_set_new(o, keys[rnd() % (sizeof keys / sizeof *keys)], random_value(depth + 1));
        return o;
    }
    }
}

/* Replaces (or, in objects, sometimes adds or deletes) one random node of the tree j. */
static void mutate_tree(json_t *j)
{
    for (;;) {
        size_t n = json_is_object(j) ? json_object_size(j) : json_is_array(j) ? json_array_size(j) : 0;
        if (n == 0) return;
        size_t k = rnd() % n;
        json_t *child;
        const char *key = NULL;
        if (json_is_array(j)) {
            child = json_array_get(j, k);
        } else {
            void *it = json_object_iter(j);
            while (k--) it = json_object_iter_next(j, it);
            key = json_object_iter_key(it);
            child = json_object_iter_value(it);
        }
        if ((json_is_object(child) || json_is_array(child)) && rnd() % 3) {
            j = child;
            continue;
        }
        uint64_t op = rnd() % 4;
        if (key && op == 0)
            json_object_del(j, key);
        else if (key && op == 1)
            json_object_set_new(j, "bogus_key", random_value(0));
        else if (key)
            json_object_set_new(j, key, random_value(0));
        else
            json_array_set_new(j, rnd() % n, random_value(0));
        return;
    }
}

static void mutate_text(char *s, size_t len)
{
    static const char alphabet[] = "{}[]\",:0123456789-.eE+ntfalsrueNI\\u";
    for (int edits = 1 + (int)(rnd() % 3); edits > 0; edits--)
        s[rnd() % len] = rnd() % 4 ? alphabet[rnd() % (sizeof alphabet - 1)] : (char)(rnd() % 256);
}

/* Runs one candidate document; returns 1 if accepted. Accepted ones must round-trip exactly. */
static int fuzz_one(const json_t *j)
{
    ProtobufCMessage *m = NULL, *again = NULL;
    char err[128];
    int rc = cv_pbjson_from_json(EVERY_D, j, &m, err, sizeof err);
    if (rc) {
        cr_assert_eq(rc, CV_EINVAL);
        cr_assert_null(m);
        cr_assert_neq(err[0], '\0');
        cr_assert_null(strchr(err, '\n'));
        return 0;
    }
    json_t *out = NULL;
    cr_assert_eq(cv_pbjson_to_json(m, &out, err, sizeof err), 0, "%s", err);
    cr_assert_eq(cv_pbjson_from_json(EVERY_D, out, &again, err, sizeof err), 0, "%s", err);
    size_t l1, l2;
    uint8_t *b1 = pack(m, &l1), *b2 = pack(again, &l2);
    cr_assert(l1 == l2 && memcmp(b1, b2, l1) == 0, "round trip changed the message");
    free(b1);
    free(b2);
    json_decref(out);
    msg_free(m);
    msg_free(again);
    return 1;
}

Test(pbjson_fuzz, ten_thousand_mutations, .timeout = 300)
{
    json_t *base = load(FUZZ_BASE);
    cr_assert_eq(fuzz_one(base), 1, "the base document must be valid");
    size_t len = strlen(FUZZ_BASE);
    char *text = malloc(len + 1);
    cr_assert_not_null(text);
    int accepted = 0, rejected = 0;
    for (int iter = 0; iter < 10000; iter++) {
        json_t *j;
        if (iter % 2) {
            j = json_deep_copy(base);
            for (int k = 1 + (int)(rnd() % 3); k > 0; k--) mutate_tree(j);
        } else {
            memcpy(text, FUZZ_BASE, len + 1);
            mutate_text(text, len);
            j = json_loads(text, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
            if (!j) continue;
        }
        if (fuzz_one(j))
            accepted++;
        else
            rejected++;
        json_decref(j);
    }
    free(text);
    json_decref(base);
    cr_assert_gt(accepted, 100, "accepted %d", accepted);
    cr_assert_gt(rejected, 100, "rejected %d", rejected);
}

/* ---------------------------------------------------------------------------------------------------
 * CV_PBJSON_EMIT_DEFAULTS: zero-valued fields are emitted (a balance of 0 is "0", not absent). */

Test(pbjson, emit_defaults_shows_zero_values_and_omits_unset_oneofs)
{
    Cvtest__Pbjson__Hello h = CVTEST__PBJSON__HELLO__INIT;
    json_t *j;
    char err[128];
    cr_assert_eq(cv_pbjson_to_json(&h.base, &j, err, sizeof err), 0);
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    cr_assert_str_eq(s, "{}", "compact: defaults omitted");
    free(s);
    json_decref(j);
    cr_assert_eq(cv_pbjson_to_json_ex(&h.base, CV_PBJSON_EMIT_DEFAULTS, &j, err, sizeof err), 0);
    s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    cr_assert_str_eq(s, "{\"name\":\"\",\"times\":0}");
    free(s);
    json_decref(j);

    Cvtest__Pbjson__Everything e = CVTEST__PBJSON__EVERYTHING__INIT;
    cr_assert_eq(cv_pbjson_to_json_ex(&e.base, CV_PBJSON_EMIT_DEFAULTS, &j, err, sizeof err), 0, "%s", err);
    cr_assert(json_is_null(json_object_get(j, "scalars")), "an unset message is null");
    cr_assert(json_is_array(json_object_get(j, "rI32")) && json_array_size(json_object_get(j, "rI32")) == 0);
    cr_assert(json_is_object(json_object_get(j, "counts")) && json_object_size(json_object_get(j, "counts")) == 0);
    cr_assert_str_eq(json_string_value(json_object_get(j, "snakeCaseName")), "");
    cr_assert_eq(json_integer_value(json_object_get(j, "x2Y")), 0);
    cr_assert(json_object_get(j, "x2Y") != NULL);
    cr_assert_null(json_object_get(j, "num"), "an unset oneof member stays omitted");
    cr_assert_null(json_object_get(j, "text"));
    json_decref(j);

    /* The emitted defaults decode back to the same (empty) message. */
    cr_assert_eq(cv_pbjson_to_json_ex(&h.base, CV_PBJSON_EMIT_DEFAULTS, &j, err, sizeof err), 0);
    s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    Cvtest__Pbjson__Hello *back = (Cvtest__Pbjson__Hello *)parse_ok(HELLO_D, s);
    cr_assert_str_eq(back->name, "");
    cr_assert_eq(back->times, 0);
    protobuf_c_message_free_unpacked(&back->base, NULL);
    free(s);
}
