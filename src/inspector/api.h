/* The inspector's read API as JSON documents built from the model: /api/state, /shards (Goverse's shape)
 * and /graph. Pure: no I/O. */
#ifndef CV_INSPECTOR_API_H
#define CV_INSPECTOR_API_H

#include <jansson.h>

#include "inspector/events.h"
#include "inspector/model.h"

/* Each returns a new reference (NULL when out of memory). */
/* {"last_event_id","time_ms","ready","leader","term","shards","shard_map":{"applied_index","owners",
 *  "epochs","objects"},"nodes":[…],"gates":[…],"objects":[…],"events":[last 200]} */
json_t *cv_insp_api_state(const struct cv_insp_model *m, const struct cv_insp_events *ev);
/* {"shards":[{"shard_id","target_node","current_node","object_count","flags"}],"nodes":[ids]} */
json_t *cv_insp_api_shards(const struct cv_insp_model *m);
/* {"nodes":[{"id","up","objects"}],"gates":[{"id"}],"objects":[{"id","type","node","shard"}],
 *  "links":[{"source","target","kind"}]} */
json_t *cv_insp_api_graph(const struct cv_insp_model *m);

#endif
