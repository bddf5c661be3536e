/* The inspector's read API as JSON documents built from the model: /api/state, /shards (Goverse's shape),
 * /graph and the object lookup. Pure: no I/O. */
#ifndef CV_INSPECTOR_API_H
#define CV_INSPECTOR_API_H

#include <jansson.h>

#include "inspector/events.h"
#include "inspector/model.h"
#include "inspector/stats.h"

/* Each returns a new reference (NULL when out of memory). */
/* {"last_event_id","time_ms","ready","leader","term","shards","shard_map":{"applied_index","owners",
 *  "epochs","objects","targets","pinned"},"nodes":[…],"gates":[…],"objects":[…],"events":[last 200]} */
/* ... ,"stats":cv_insp_stats_json (null without stats)} */
json_t *cv_insp_api_state(const struct cv_insp_model *m, const struct cv_insp_events *ev,
                          const struct cv_insp_stats *stats);
/* {"shards":[{"shard_id","target_node","current_node","object_count","flags"}],"nodes":[ids]} */
json_t *cv_insp_api_shards(const struct cv_insp_model *m);
/* {"nodes":[{"id","up","objects"}],"gates":[{"id"}],"objects":[{"id","type","node","shard"}],
 *  "links":[{"source","target","kind"}]} */
json_t *cv_insp_api_graph(const struct cv_insp_model *m);
/* Where object (type, id) lives, by the nodes' placement (src/core/hash.h: FNV-1a of the id, "shard#N/x",
 * "<node>/x"): {"type","id","shard","placement":"hash"/"shard"/"node","placed_node","owner","owner_up",
 * "target","pinned","active","active_on","active_type"}; active: an object with that id (and type, unless
 * type is "") is in a reachable node's /v1/objects. NULL with *err = CV_EINVAL for an id the nodes
 * refuse (empty, "shard#N/x" with N out of range), CV_ENOMEM. */
json_t *cv_insp_api_object(const struct cv_insp_model *m, const char *type, const char *id, int *err);
/* The node to ask for object (type, id)'s state (GET /v1/objects/{type}/{id} answers only where it is
 * active): where the last poll saw it active, else its owner by placement, else CV_INSP_NO_NODE. 0, or
 * CV_EINVAL for an id the nodes refuse. */
int cv_insp_api_state_node(const struct cv_insp_model *m, const char *type, const char *id, int *node);
/* That node path, "/v1/objects/{type}/{id}" with both percent-encoded (an id may hold '/', '#', ...),
 * into out (len bytes). 0 or CV_ERANGE. */
int cv_insp_api_state_path(const char *type, const char *id, char *out, size_t len);

#endif
