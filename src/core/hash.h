/* Object placement and fingerprints: FNV-1a 32/64-bit hashing and object-id parsing (pure, no I/O). */
#ifndef CV_CORE_HASH_H
#define CV_CORE_HASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* FNV-1a 32-bit over len bytes (offset basis 2166136261, prime 16777619), as Goverse. */
uint32_t cv_fnv1a32(const void *data, size_t len);

/* FNV-1a 64-bit: CV_FNV64_OFFSET is the offset basis; cv_fnv1a64_more continues hash h over len more
 * bytes (hashing pieces one after the other equals hashing their concatenation), so
 * cv_fnv1a64(d, n) == cv_fnv1a64_more(CV_FNV64_OFFSET, d, n). Prime 1099511628211. */
#define CV_FNV64_OFFSET 14695981039346656037ull
uint64_t cv_fnv1a64_more(uint64_t h, const void *data, size_t len);
uint64_t cv_fnv1a64(const void *data, size_t len);

/* Shard of an object id that carries no placement prefix: fnv1a32(id) % shards. shards > 0. */
uint32_t cv_shard_of(const char *id, uint32_t shards);

enum cv_placement_kind {
    CV_PLACE_HASH = 0, /* plain id: shard = hash(id) % shards */
    CV_PLACE_SHARD,    /* "shard#N/rest": shard N */
    CV_PLACE_NODE      /* "<node-id>/rest": pinned to that node */
};

struct cv_placement {
    enum cv_placement_kind kind;
    uint32_t shard;     /* CV_PLACE_HASH, CV_PLACE_SHARD: the shard. CV_PLACE_NODE: hash(id)%shards */
    const char *node;   /* CV_PLACE_NODE: points into the id (not NUL-terminated at node_len) */
    size_t node_len;
};

/* Parses an object id. "shard#N/x" with N not a decimal < shards, or an empty id, gives CV_ERANGE /
 * CV_EINVAL. An id "a/b" where a is not "shard#N" is pinned to node "a" (the caller checks that the
 * node exists). An id without '/' is hashed. out->node points into id: valid as long as id is. */
int cv_placement_parse(const char *id, uint32_t shards, struct cv_placement *out);

/* True if p is pinned (CV_PLACE_NODE) to exactly the node named node_id. */
bool cv_placement_on_node(const struct cv_placement *p, const char *node_id);

#endif
