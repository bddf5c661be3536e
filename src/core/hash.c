/* Object placement: FNV-1a 32-bit hashing and parsing of object ids into a placement; FNV-1a 64-bit
 * for fingerprints (the config fingerprint, the map feed's node signature).
 *
 * Happy path: a plain id ("user-1") hashes to fnv1a32(id) % shards, exactly as Goverse does, so ids keep
 * their shard across the two implementations; "shard#N/rest" names shard N directly; "<node>/rest" is
 * pinned to a node. Failure modes (no side effects, *out untouched): an empty id, a malformed
 * "shard#..." prefix or an empty node name give CV_EINVAL; a shard number >= shards gives CV_ERANGE.
 * Empty "rest" is accepted, as in Goverse ("shard#5/" is shard 5). */
#include "core/hash.h"

#include <string.h>

#include "cverse/error.h"

#define FNV32_OFFSET 2166136261u
#define FNV32_PRIME 16777619u
#define FNV64_PRIME 1099511628211ull

static const char shard_prefix[] = "shard#";
#define SHARD_PREFIX_LEN (sizeof shard_prefix - 1)

uint32_t cv_fnv1a32(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint32_t h = FNV32_OFFSET;

    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= FNV32_PRIME;
    }
    return h;
}

uint64_t cv_fnv1a64_more(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= FNV64_PRIME;
    }
    return h;
}

uint64_t cv_fnv1a64(const void *data, size_t len)
{
    return cv_fnv1a64_more(CV_FNV64_OFFSET, data, len);
}

uint32_t cv_shard_of(const char *id, uint32_t shards)
{
    return cv_fnv1a32(id, strlen(id)) % shards;
}

/* Parses the "N/" after "shard#": one or more decimal digits (leading zeros allowed, no sign, no
 * spaces) immediately followed by '/'. A number too large for uint32 is a valid decimal that is out of
 * range, so it gives CV_ERANGE like any N >= shards. */
static int hash__parse_shard(const char *s, uint32_t shards, uint32_t *shard)
{
    uint64_t n = 0;
    int overflow = 0;
    const char *p = s;

    for (; *p >= '0' && *p <= '9'; p++) {
        n = n * 10 + (uint64_t)(*p - '0');
        if (n > UINT32_MAX) {
            overflow = 1;
            n = UINT32_MAX; /* keep accumulating the syntax check without wrapping */
        }
    }
    if (p == s || *p != '/') return CV_EINVAL;
    if (overflow || n >= shards) return CV_ERANGE;
    *shard = (uint32_t)n;
    return 0;
}

int cv_placement_parse(const char *id, uint32_t shards, struct cv_placement *out)
{
    if (!id || !out || shards == 0 || id[0] == '\0') return CV_EINVAL;

    if (strncmp(id, shard_prefix, SHARD_PREFIX_LEN) == 0) {
        uint32_t shard;
        int rv = hash__parse_shard(id + SHARD_PREFIX_LEN, shards, &shard);
        if (rv != 0) return rv;
        *out = (struct cv_placement){.kind = CV_PLACE_SHARD, .shard = shard};
        return 0;
    }

    const char *slash = strchr(id, '/');
    if (!slash) {
        *out = (struct cv_placement){.kind = CV_PLACE_HASH, .shard = cv_shard_of(id, shards)};
        return 0;
    }
    if (slash == id) return CV_EINVAL; /* "/x": a pinned id needs a node name */
    *out = (struct cv_placement){
        .kind = CV_PLACE_NODE,
        .shard = cv_shard_of(id, shards),
        .node = id,
        .node_len = (size_t)(slash - id),
    };
    return 0;
}

bool cv_placement_on_node(const struct cv_placement *p, const char *node_id)
{
    return p->kind == CV_PLACE_NODE && strlen(node_id) == p->node_len &&
           memcmp(node_id, p->node, p->node_len) == 0;
}
