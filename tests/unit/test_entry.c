/* Unit: the raft log entry format (consensus/entry.h): a Batch framed to a multiple of 8 bytes and read
 * back exactly; foreign or truncated buffers are refused, never read past their end. */
#include <criterion/criterion.h>
#include <raft.h>
#include <string.h>

#include "consensus/entry.h"

Test(entry, build_and_read_back_padded_to_8)
{
    for (size_t len = 0; len < 20; len++) {
        uint8_t batch[20];
        for (size_t i = 0; i < len; i++) batch[i] = (uint8_t)(0xa0 + i);
        struct raft_buffer buf;
        cr_assert_eq(cv_entry_build(batch, len, &buf), 0);
        cr_assert_eq(buf.len % 8, 0, "length %zu of a %zu-byte batch is a multiple of 8", buf.len, len);
        cr_assert_geq(buf.len, CV_ENTRY_HDR + len);
        cr_assert_lt(buf.len, CV_ENTRY_HDR + len + 8, "no more padding than needed");
        size_t got = 99;
        const uint8_t *p = cv_entry_payload(&buf, &got);
        cr_assert_not_null(p);
        cr_assert_eq(got, len);
        cr_assert(len == 0 || memcmp(p, batch, len) == 0);
        for (size_t i = CV_ENTRY_HDR + len; i < buf.len; i++) cr_assert_eq(((uint8_t *)buf.base)[i], 0, "zero padding");
        raft_free(buf.base);
    }
}

Test(entry, foreign_and_truncated_buffers_are_not_ours)
{
    uint8_t b[16] = {0};
    struct raft_buffer buf = {b, sizeof b};
    size_t len;
    cr_assert_null(cv_entry_payload(&buf, &len), "no magic");
    memcpy(b, "CVB1", 4);
    b[7] = 9; /* claims 9 payload bytes; 8 are there */
    cr_assert_null(cv_entry_payload(&buf, &len), "longer than the buffer");
    b[7] = 8;
    cr_assert_not_null(cv_entry_payload(&buf, &len));
    cr_assert_eq(len, 8u);
    buf.len = 7;
    cr_assert_null(cv_entry_payload(&buf, &len), "shorter than the header");
}
