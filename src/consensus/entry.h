/* The raft log entry format of cverse: a catalog Batch behind an 8-byte header. */
#ifndef CV_CONSENSUS_ENTRY_H
#define CV_CONSENSUS_ENTRY_H

#include <raft.h>
#include <stddef.h>
#include <stdint.h>

/* An entry is an 8-byte header (magic "CVB1", u32 big-endian payload length), the Batch, zero padding to
 * a multiple of 8: libraft 0.22 rejects entries whose length is not a multiple of 8, and the padding must
 * not reach the protobuf decoder, hence the explicit length. */
#define CV_ENTRY_MAGIC 0x43564231u /* "CVB1" */
#define CV_ENTRY_HDR 8u

/* Builds the entry of batch (len bytes) into buf->base (raft_malloc'ed: owned by buf, i.e. by raft once
 * appended). 0 or CV_ENOMEM. */
int cv_entry_build(const uint8_t *batch, size_t len, struct raft_buffer *buf);

/* Appends one command (n bytes, already serialized) to a Batch's wire form in *buf (grown with
 * cv_array_grow): a Batch is the concatenation of its commands as field 1, so queued commands are never
 * re-encoded. 0 or CV_ENOMEM. */
int cv_entry_batch_append(uint8_t **buf, size_t *len, size_t *cap, const uint8_t *cmd, size_t n);

/* The Batch inside an entry and its length, or NULL if buf is not one of ours (valid while buf is). */
const uint8_t *cv_entry_payload(const struct raft_buffer *buf, size_t *len);

#endif
