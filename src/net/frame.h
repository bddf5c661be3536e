/* Framing of the native protocol: 4-byte big-endian length + serialized cverse.rpc.Frame (pure). */
#ifndef CV_NET_FRAME_H
#define CV_NET_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "rpc.pb-c.h"

#define CV_FRAME_MAX (16u * 1024u * 1024u) /* largest accepted frame body, bytes */
#define CV_FRAME_PREFIX 4u                  /* bytes of the big-endian body length before each body */

/* Incremental decoder over a byte stream. Owns its buffer; free with cv_frame_reader_free.
 * Bytes buf[off, len) are received but not yet decoded; fields are private to frame.c. */
struct cv_frame_reader {
    uint8_t *buf;
    size_t len, cap;
    size_t max; /* CV_FRAME_MAX unless set lower */
    size_t off; /* start of the undecoded bytes: popping a frame only advances it (no memmove) */
};

/* max 0 (or above CV_FRAME_MAX) means CV_FRAME_MAX. */
void cv_frame_reader_init(struct cv_frame_reader *r, size_t max);
void cv_frame_reader_free(struct cv_frame_reader *r);
/* Appends bytes read from the socket. CV_ENOMEM. */
int cv_frame_reader_feed(struct cv_frame_reader *r, const void *data, size_t len);
/* Pops the next complete frame: returns 1 and sets *out (free with cverse__rpc__frame__free_unpacked),
 * 0 if more bytes are needed, CV_ETOOBIG if the declared length exceeds max, CV_EPROTO if the body does
 * not decode. After a negative return the stream is unusable: close the connection. */
int cv_frame_reader_next(struct cv_frame_reader *r, Cverse__Rpc__Frame **out);

/* A frame decoded in place (cv_frame_reader_view): f points to local or to unpacked. f's body points into
 * the reader's buffer and its strings into scratch: valid until the next cv_frame_reader_feed or
 * cv_frame_view_done, whichever comes first. Fields private to frame.c except f. */
struct cv_frame_view {
    Cverse__Rpc__Frame *f;
    Cverse__Rpc__Frame local;
    Cverse__Rpc__Frame *unpacked; /* owned: protobuf-c's decode of an unusual frame, else NULL */
    char scratch[512];            /* method and error, NUL-terminated */
};
/* cv_frame_reader_next without allocating: 1 and v->f set (release with cv_frame_view_done), 0 if more
 * bytes are needed, CV_ETOOBIG / CV_EPROTO as cv_frame_reader_next (same answers for the same bytes). */
int cv_frame_reader_view(struct cv_frame_reader *r, struct cv_frame_view *v);
void cv_frame_view_done(struct cv_frame_view *v);

/* A CallRequest decoded without allocating when it can be (its strings copied NUL-terminated into
 * scratch, request pointing into the decoded bytes), else by protobuf-c (unpacked). c points to either:
 * valid until cv_call_view_done and while the decoded bytes are. */
struct cv_call_view {
    Cverse__Rpc__CallRequest *c;
    Cverse__Rpc__CallRequest local;
    Cverse__Rpc__CallRequest *unpacked; /* owned, or NULL */
    char scratch[1024];
};
/* 0 and v->c set (release with cv_call_view_done), or CV_EPROTO if the bytes are not a CallRequest
 * (protobuf-c's verdict). */
int cv_call_view(const uint8_t *p, size_t len, struct cv_call_view *v);
void cv_call_view_done(struct cv_call_view *v);
/* A CallRequest's packed size and bytes (dst holds cv_call_size(c) bytes): protobuf-c's bytes, without
 * its reflection. */
size_t cv_call_size(const Cverse__Rpc__CallRequest *c);
void cv_call_pack(const Cverse__Rpc__CallRequest *c, uint8_t *dst);

/* Bytes of f's body on the wire (what cverse__rpc__frame__get_packed_size says, computed directly). */
size_t cv_frame_size(const Cverse__Rpc__Frame *f);
/* Writes f at dst: the length prefix, then the body of blen bytes (blen = cv_frame_size(f),
 * <= CV_FRAME_MAX); dst holds CV_FRAME_PREFIX + blen bytes. The bytes are those protobuf-c packs. For
 * writers with their own buffer (rpc.c). */
void cv_frame_pack(const Cverse__Rpc__Frame *f, size_t blen, uint8_t *dst);
/* Encodes a frame into a malloc'ed buffer (length prefix included) owned by the caller.
 * CV_ETOOBIG if the body would exceed CV_FRAME_MAX (no peer would accept it), CV_ENOMEM. */
int cv_frame_encode(const Cverse__Rpc__Frame *f, uint8_t **out, size_t *len);

#endif
