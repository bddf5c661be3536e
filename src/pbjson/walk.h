/* Shared internals of the proto3 JSON mapping (decode.c, encode.c, any.c): the walk context with its
 * error path, UTF-8 checks, field names and descriptor shapes. Not part of the public API. */
#ifndef CV_PBJSON_WALK_H
#define CV_PBJSON_WALK_H

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "pbjson/pbjson.h"

#define PBJSON__QUOTE_MAX 48 /* bytes of user text quoted in an error message */

/* Walk state shared by both directions: the first error and the JSON path where it happened. */
struct pbjson__ctx {
    char *err;
    size_t errlen;
    int rc; /* first error code, 0 while none */
    int depth;
    size_t plen;
    char path[256];
};

/* 1 if s[0, n) is valid UTF-8 (as jansson accepts it). */
int pbjson__utf8_valid(const char *s, size_t n);

/* Copies arbitrary bytes into buf (PBJSON__QUOTE_MAX + 4 bytes) for an error message: valid UTF-8 is
 * kept, control characters, quotes, backslashes and invalid bytes become '?', long text ends in "...". */
const char *pbjson__quote(const char *s, size_t n, char *buf);

/* Records the first error as "path: message" (or just the message at the root); returns rc. */
__attribute__((format(printf, 3, 4))) int pbjson__fail(struct pbjson__ctx *c, int rc, const char *fmt, ...);

/* pbjson__fail with CV_ENOMEM. */
int pbjson__oom(struct pbjson__ctx *c);

/* Appends a path segment; returns the mark that pbjson__pop restores. A path too long for the
 * buffer ends in "..." (only the new segment is ever cut, so popping stays exact). */
__attribute__((format(printf, 2, 3))) size_t pbjson__push(struct pbjson__ctx *c, const char *fmt, ...);

/* Cuts the path back to mark (from pbjson__push). */
void pbjson__pop(struct pbjson__ctx *c, size_t mark);

/* Pushes ".key" (or "key" at the root), and ["key"] for a map key; user text is quoted. */
size_t pbjson__push_key(struct pbjson__ctx *c, const char *key, size_t klen);

size_t pbjson__push_map_key(struct pbjson__ctx *c, const char *key, size_t klen);

/* Starts a walk whose errors go to err (may be NULL) with paths rooted at root (may be NULL). */
void pbjson__ctx_init(struct pbjson__ctx *c, const char *root, char *err, size_t errlen);

/* protoc's JSON name: every '_' is dropped and the character after it upper-cased ("foo_bar" ->
 * "fooBar"). buf holds strlen(name) + 1 bytes. */
void pbjson__json_name(const char *name, char *buf);

/* protobuf-c keeps no map_entry option: a map is recognised by the shape protoc gives it, a repeated
 * field of a nested message "<Parent>.<Field>Entry" whose only fields are key = 1 and value = 2. */
int pbjson__is_map(const ProtobufCMessageDescriptor *parent, const ProtobufCFieldDescriptor *f);

/* Field for a JSON key, by proto name first, then by JSON name; *idx gets its index. */
const ProtobufCFieldDescriptor *pbjson__field_by_key(const ProtobufCMessageDescriptor *d,
                                                            const char *key, size_t klen, unsigned *idx);

/* Size of one element of a repeated field of type t, as protobuf-c lays arrays out. */
size_t pbjson__elt_size(ProtobufCType t);

/* Fields with a has_ flag: proto2 optional scalars and bytes (strings and messages use NULL). */
int pbjson__has_flag(const ProtobufCFieldDescriptor *f);

ProtobufCMessage *pbjson__new_msg(const ProtobufCMessageDescriptor *d);

#endif
