/* State-machine helper: moves are checked against the definition's table and followed by the instance's
 * invariant.
 *
 * Happy path: a module defines its states once (a static cv_sm_conf: names, INITIAL/FINAL flags, a bitmask
 * of allowed successors per state), embeds a struct cv_sm in each instance, cv_sm_init's it in an initial
 * state, cv_sm_move's it along the table (each move checked, then the invariant callback runs with the
 * previous state) and cv_sm_fini's it in a final state before freeing. cv_sm_allowed / cv_sm_state_name
 * also serve machines without an instance (the shard lifecycle, derived from a record).
 * Failure modes: checks cost a table lookup and a callback, so they run in debug builds (CV_CHECKS) only;
 * release builds just store the state. A failed check (a move the table lacks, a non-initial start, a
 * non-final end, a broken invariant) is a bug: print what broke and abort, so a test run stops at the
 * first wrong move instead of somewhere later. cv_sm_conf_check reports a malformed table (for tests). */
#include "core/sm.h"

#include <stdio.h>
#include <stdlib.h>

bool cv_sm_allowed(const struct cv_sm_conf *conf, int from, int to)
{
    if (from < 0 || from >= conf->n_states || to < 0 || to >= conf->n_states) return false;
    return (conf->states[from].allowed & CV_SM_BIT(to)) != 0;
}

const char *cv_sm_state_name(const struct cv_sm_conf *conf, int state)
{
    if (state < 0 || state >= conf->n_states || !conf->states[state].name) return "?";
    return conf->states[state].name;
}

int cv_sm_conf_check(const struct cv_sm_conf *conf)
{
    bool initial = false;
    if (conf->n_states <= 0 || conf->n_states > CV_SM_MAX_STATES) return 1;
    for (int s = 0; s < conf->n_states; s++) {
        const struct cv_sm_state *st = &conf->states[s];
        if (!st->name) return s + 1;
        if (conf->n_states < CV_SM_MAX_STATES && (st->allowed >> conf->n_states)) return s + 1;
        initial |= (st->flags & CV_SM_INITIAL) != 0;
    }
    return initial ? 0 : 1;
}

#ifdef CV_CHECKS
static void sm__die(const struct cv_sm *m, const char *what, int from, int to)
{
    fprintf(stderr, "cverse: state machine %s%s%s: %s (%s -> %s)\n", m->conf->name, m->id ? " " : "",
            m->id ? m->id : "", what, cv_sm_state_name(m->conf, from), cv_sm_state_name(m->conf, to));
    abort();
}

static void sm__invariant(const struct cv_sm *m, int prev)
{
    const char *bad = m->invariant ? m->invariant(m, prev) : NULL;
    if (bad) sm__die(m, bad, prev, m->state);
}
#endif

void cv_sm_init(struct cv_sm *m, const struct cv_sm_conf *conf, int state, cv_sm_invariant inv, const char *id)
{
    *m = (struct cv_sm){.conf = conf, .invariant = inv, .id = id, .state = state};
#ifdef CV_CHECKS
    if (state < 0 || state >= conf->n_states || !(conf->states[state].flags & CV_SM_INITIAL))
        sm__die(m, "not an initial state", -1, state);
    sm__invariant(m, -1);
#endif
}

void cv_sm_move(struct cv_sm *m, int to)
{
#ifdef CV_CHECKS
    int from = m->state;
    if (!cv_sm_allowed(m->conf, from, to)) sm__die(m, "illegal transition", from, to);
    m->state = to;
    sm__invariant(m, from);
#else
    m->state = to;
#endif
}

void cv_sm_fini(struct cv_sm *m)
{
#ifdef CV_CHECKS
    if (!(m->conf->states[m->state].flags & CV_SM_FINAL)) sm__die(m, "ends in a non-final state", m->state, m->state);
#else
    (void)m;
#endif
}

void cv_sm_check(const struct cv_sm *m)
{
#ifdef CV_CHECKS
    sm__invariant(m, m->state);
#else
    (void)m;
#endif
}
