/* The Goverse sharding demo's object types (SimpleCounter, ShardMonitor, NodeMonitor, GlobalMonitor) on
 * the object SDK, and the pure helpers they are made of. */
#ifndef CV_DEMO_H
#define CV_DEMO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cverse/object.h"

#define CV_DEMO_COUNTERS 100                /* SimpleCounter-Counter-001 ... -100 */
#define CV_DEMO_SCAN_MS_DEFAULT 15000       /* NodeMonitor scan period; env CVERSE_DEMO_SCAN_MS */
#define CV_DEMO_FIRST_SCAN_MS 1000          /* first scan after activation (the period if smaller) */
#define CV_DEMO_GLOBAL_LOG_MS_DEFAULT 30000 /* GlobalMonitor stats line; env CVERSE_DEMO_GLOBAL_LOG_MS */

/* The ChatRoom type (chat.c, proto/chat.proto): members by client id, posts pushed to them. */
extern const struct cv_object_type cv_demo_chat_type;

/* Registers the demo's types (and ChatRoom) with reg (static tables: nothing to free, nothing to unregister).
 * Returns 0 or the first cv_register_type error (CV_EEXIST if a type of the same name is registered,
 * CV_EINVAL once the runtime started); types registered before the failure stay registered. */
int cv_demo_register(cv_registry *reg);

/* Writes ns as Go's time.Duration.String() does ("0s", "1ns", "1.1µs", "2.2ms", "4m5.001s",
 * "1h0m0s", "-3s") into buf, NUL-terminated. Returns the length (without the NUL), or CV_ERANGE if
 * buf is too small (33 bytes always suffice). */
int cv_demo_format_duration(int64_t ns, char *buf, size_t len);

/* Writes the id of counter k (1..CV_DEMO_COUNTERS), e.g. "SimpleCounter-Counter-042", into buf.
 * Returns 0; CV_ERANGE for k out of range or buf too small (32 bytes suffice). */
int cv_demo_counter_id(unsigned k, char *buf, size_t len);

/* The counters a node creates: every k in 1..CV_DEMO_COUNTERS, ascending, whose id's shard
 * (FNV-1a % shards, as any plain object id) owns(data, shard) accepts, written to out (room for
 * CV_DEMO_COUNTERS). Returns how many; 0 when shards is 0 (cluster size unknown). */
size_t cv_demo_counters_owned(uint32_t shards, bool (*owns)(void *data, uint32_t shard), void *data,
                              unsigned *out);

#endif
