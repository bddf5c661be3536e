/* The inspector's model of the cluster: built from the nodes' HTTP answers of one poll round, and the
 * events that the difference between two successive models makes. Pure: no I/O. */
#ifndef CV_INSPECTOR_MODEL_H
#define CV_INSPECTOR_MODEL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

#define CV_INSP_NO_NODE (-1)

/* What a node answered in one round, one JSON document per kind (NULL: no answer). */
enum cv_insp_doc { CV_INSP_CLUSTER = 0, CV_INSP_SHARDS, CV_INSP_OBJECTS, CV_INSP_READY, CV_INSP_STATS,
                   CV_INSP_N_DOCS };

struct cv_insp_object {
    char *type, *id; /* owned */
    uint32_t shard;
};

struct cv_insp_node {
    const struct cv_node_cfg *cfg; /* borrowed from the config, valid for the model's life */
    json_t *doc[CV_INSP_N_DOCS];   /* this round's answers (owned references) */
    bool reachable;                /* answered /v1/cluster this round */
    bool alive, registered;        /* as the most advanced reachable node's catalog says */
    bool draining;                 /* an operator drains it: the leader moves its shards away */
    bool up;                       /* reachable && alive */
    char role[16], state[16];      /* "voter"/"standby"/...; "leader"/"follower"/... */
    uint64_t term, commit, applied;
    int64_t lease_expiry_ms; /* 0: none */
    unsigned shards;         /* owned, per the shard map */
    bool ready;
    char reason[128]; /* /ready's reason when not ready */
    char error[160];  /* why it was not reachable */
    struct cv_insp_object *objects; /* sorted by (type, id) */
    size_t n_objects;
    uint64_t last_seen_ms; /* wall clock of the last round it answered; 0: never */
};

struct cv_insp_model {
    const struct cv_config *cfg; /* borrowed */
    size_t n_nodes;
    struct cv_insp_node *nodes;
    bool have;       /* at least one node answered (this round or before) */
    int leader;      /* node index, CV_INSP_NO_NODE when unknown */
    uint64_t term;
    uint32_t n_shards;
    bool has_map;
    uint64_t map_applied;
    int32_t *owner;   /* [n_shards] node index or CV_INSP_NO_NODE */
    uint64_t *epoch;  /* [n_shards] */
    int32_t *target;  /* [n_shards] the owner an operator chose (node index), CV_INSP_NO_NODE: none */
    bool *pinned;     /* [n_shards] rebalancing keeps the shard on its owner */
    uint32_t *objects_per_shard; /* [n_shards] over the reachable nodes */
    uint64_t time_ms; /* when the round finished */
};

/* Emits one event: type and its fields (borrowed). */
typedef void (*cv_insp_emit_fn)(void *data, const char *type, json_t *fields);

int cv_insp_model_init(struct cv_insp_model *m, const struct cv_config *cfg);
void cv_insp_model_free(struct cv_insp_model *m);
/* Forgets the round's answers and derived per-node data (keeps last_seen_ms) before a new round. */
void cv_insp_model_begin(struct cv_insp_model *m);
/* Stores node i's answer of a kind (steals the reference; NULL: no answer). */
void cv_insp_model_set(struct cv_insp_model *m, size_t i, enum cv_insp_doc kind, json_t *doc);
/* Node i's answer of this kind in m (borrowed, valid until m's next begin or set of it), or NULL. */
json_t *cv_insp_model_doc(const struct cv_insp_model *m, size_t i, enum cv_insp_doc kind);
void cv_insp_model_set_error(struct cv_insp_model *m, size_t i, const char *error);
/* Derives everything from the round's answers; what no node answered (the shard map, last_seen_ms) is
 * carried over from prev (may be NULL). */
void cv_insp_model_finish(struct cv_insp_model *m, const struct cv_insp_model *prev, uint64_t now_ms);
/* Events from prev to next: node_up / node_down / node_joined / node_left, leader_changed,
 * term_changed, shard_moved (at most max_moves, then one shards_moved summary), objects_changed. */
void cv_insp_model_diff(const struct cv_insp_model *prev, const struct cv_insp_model *next, size_t max_moves,
                        cv_insp_emit_fn emit, void *data);
/* The same, leaving out what a change feed reports exactly (node_joined, leader_changed, term_changed,
 * shard_moved) when feed is true. */
void cv_insp_model_diff_parts(const struct cv_insp_model *prev, const struct cv_insp_model *next, size_t max_moves,
                              bool feed, cv_insp_emit_fn emit, void *data);
/* Index of the node whose id or advertise/grpc address is name, CV_INSP_NO_NODE if none. */
int cv_insp_model_find(const struct cv_insp_model *m, const char *name);
/* Node id for an index, NULL for CV_INSP_NO_NODE. */
const char *cv_insp_model_node_id(const struct cv_insp_model *m, int i);

#endif
