/* Explicit state machines: named states with flags, a table of allowed transitions and an invariant
 * checked after every move in debug builds (CV_CHECKS). The model is dqlite's lib/sm. */
#ifndef CV_CORE_SM_H
#define CV_CORE_SM_H

#include <stdbool.h>
#include <stdint.h>

#define CV_SM_BIT(state) (1ull << (state))
#define CV_SM_MAX_STATES 64

enum {
    CV_SM_INITIAL = 1u << 0, /* a machine may start here */
    CV_SM_FINAL = 1u << 1,   /* a machine may end here (cv_sm_fini) */
};

/* One row per state, indexed by the state's value. allowed: CV_SM_BIT()s of the states it may move to. */
struct cv_sm_state {
    const char *name;
    unsigned flags;
    uint64_t allowed;
};

/* A machine's definition: static, shared by all its instances. */
struct cv_sm_conf {
    const char *name; /* "object", "shard", ... (for messages) */
    const struct cv_sm_state *states;
    int n_states;
};

struct cv_sm;
/* Checks the instance's own data against its state after a move from prev (-1 after init). Returns NULL
 * when all holds, else a static description of what broke. Runs in debug builds only. */
typedef const char *(*cv_sm_invariant)(const struct cv_sm *m, int prev);

/* Embed in the object whose lifecycle it tracks; recover the object with container_of. */
struct cv_sm {
    const struct cv_sm_conf *conf;
    cv_sm_invariant invariant; /* NULL: none */
    const char *id;            /* borrowed, for messages (e.g. the object id); may be NULL */
    int state;
};

/* Starts m in state (which must be CV_SM_INITIAL). */
void cv_sm_init(struct cv_sm *m, const struct cv_sm_conf *conf, int state, cv_sm_invariant inv,
                const char *id);
/* Moves m to state `to`. In debug builds an illegal move or a broken invariant logs the machine, id and
 * states to stderr and aborts: these are bugs, never input errors. */
void cv_sm_move(struct cv_sm *m, int to);
/* Checks that m may end here (CV_SM_FINAL), in debug builds. */
void cv_sm_fini(struct cv_sm *m);
/* Runs the invariant without moving (debug builds), e.g. after changing the data it covers. */
void cv_sm_check(const struct cv_sm *m);

static inline int cv_sm_state(const struct cv_sm *m) { return m->state; }
/* Pure queries on a definition: usable for states derived from records (e.g. a shard's). */
bool cv_sm_allowed(const struct cv_sm_conf *conf, int from, int to);
const char *cv_sm_state_name(const struct cv_sm_conf *conf, int state); /* "?" when out of range */
/* 0 when the table is well formed (every state named, allowed bits within range, one initial state at
 * least); else the first bad state's index + 1. For unit tests of each machine's table. */
int cv_sm_conf_check(const struct cv_sm_conf *conf);

#endif
