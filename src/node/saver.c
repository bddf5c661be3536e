/* Durable object state in a node (docs/durable-state.md): loads come from the local catalog replica;
 * saves are batched into one CmdSaveState per loop iteration and committed through raft.
 *
 * Happy path: the runtime hands over a captured state (cv_saver_save). We note the epoch under which
 * this node writes the object — the shard's epoch while we own it, or while it waits for our release —
 * and queue it; a 0 ms timer (the next loop iteration) proposes everything queued as ONE command, so a
 * burst of saves of many objects costs one log entry. The leader's notice (consensus/notice.h) that the
 * command committed with result 0 answers every save of it at once; else (no notice, a CONFLICT) the
 * command's result when the entry is applied here does: 0 = all committed. Until our replica applied an
 * entry answered early, loads of its objects answer CV_EUNAVAIL (the replica's record is older than a
 * state a caller was told about).
 *
 * Failure modes: not the writer by our catalog -> CV_EUNAVAIL at once (re-routed by callers: it certainly
 * did not commit). A CONFLICT result means some items were refused at apply time (a stale owner or
 * epoch, a deleted object): each save reads its record back — committed iff it holds our version at our
 * epoch — and a refused one answers CV_EUNAVAIL. CV_ERETRY (the entry was overwritten) answers
 * CV_EUNAVAIL too; any other failure (timeout, cancel) leaves the outcome unknown: CV_ETIMEDOUT. */
#include "node/saver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consensus/notice.h"
#include "cverse/error.h"
#include "util/log.h"

struct psave {
    struct psave *next;
    char *type, *id;
    uint64_t epoch, version;
    uint8_t *state; /* owned */
    size_t len;
    Cverse__Catalog__CallRecord **calls; /* owned (each one malloc with its strings): ids this save answers */
    size_t n_calls;
    uint32_t window;
    uint64_t window_ms, now_ms;
    Cverse__Catalog__Reminder **rems; /* owned (each one malloc with its name): with rems_set */
    size_t n_rems;
    bool rems_set;
    cv_state_saved_cb cb;
    void *data;
};

/* One proposed CmdSaveState. */
struct pbatch {
    struct cv_saver *p;
    struct psave *saves;
    size_t n;
    uint64_t seq;   /* its command's (consensus), watched for the leader's early notice */
    uint64_t index; /* released: the entry that committed it */
    bool released;  /* answered from the leader's notice, before this node applied the entry */
    struct pbatch *next_released;
};

static void saver__flush_cb(uv_timer_t *t);

int cv_saver_policies(const struct cv_config *cfg, cv_registry *reg, struct cv_type_policy **out)
{
    *out = calloc(cfg->n_object_types ? cfg->n_object_types : 1, sizeof **out);
    if (!*out) return CV_ENOMEM;
    for (size_t i = 0; i < cfg->n_object_types; i++) {
        const struct cv_object_type_cfg *c = &cfg->object_types[i];
        const struct cv_object_type *t = cv_registry_type(reg, c->name);
        (*out)[i] = (struct cv_type_policy){
            .type = c->name,
            .persist = c->persist,
            .save_interval_ms = c->save_interval_ms,
            .call_window = c->has_call_id_window ? (c->call_id_window ? (int64_t)c->call_id_window : -1) : 0,
            .call_window_ms = c->call_id_window_ms,
            .idle_timeout_ms = c->has_idle_timeout ? (int64_t)c->idle_timeout_ms : -1};
        if (!t)
            CV_WARN("%s:%d: object_types.%s: no such type here: ignored", cfg->path, c->line, c->name);
        else if (c->persist > 0 && !t->state_message)
            CV_WARN("%s:%d: object_types.%s: the type declares no state message: it stays memory-only", cfg->path,
                    c->line, c->name);
    }
    return 0;
}

void cv_saver_init(struct cv_saver *p, struct cv_hctx *x)
{
    *p = (struct cv_saver){.x = x};
    p->tail = &p->queue;
    uv_timer_init(x->loop, &p->flush);
    p->flush.data = p;
}

/* Is a committed save of id, answered from the leader's notice, still not applied to our replica? Then
 * the replica's record is older than a state a caller was told about: no activation may load it. */
static bool saver__unapplied(struct cv_saver *p, const char *id)
{
    if (!p->released && !p->lag_index) return false;
    uint64_t applied = cv_catalog_applied_index(p->x->cat);
    if (p->lag_index > applied) return true;
    p->lag_index = 0;
    for (struct pbatch *b = p->released; b; b = b->next_released)
        for (struct psave *s = b->saves; s; s = s->next)
            if (!strcmp(s->id, id)) return true;
    return false;
}

int cv_saver_load(struct cv_saver *p, const char *type, const char *id, uint8_t **state, size_t *len,
                    uint64_t *version)
{
    struct cv_catalog_state st;
    if (saver__unapplied(p, id)) return CV_EUNAVAIL; /* our replica lags a state we acknowledged */
    int rv = cv_catalog_state_get(p->x->cat, id, &st);
    if (rv != 0) return rv;
    if (strcmp(st.type, type) != 0) { /* cannot happen: a delete drops the state with the object */
        CV_WARN("state of %s is a %s's, not a %s's: ignored", id, st.type, type);
        free(st.state);
        return CV_ENOTFOUND;
    }
    *state = st.state;
    *len = st.len;
    *version = st.version;
    return 0;
}

struct saver__visit {
    void (*call)(void *o, const struct cv_call_record *r);
    void (*expired)(void *o, uint64_t hash);
    void (*add)(void *o, const struct cv_reminder *r);
    void *o;
};

static void saver__visit_expired(void *data, uint64_t hash)
{
    struct saver__visit *v = data;
    v->expired(v->o, hash);
}

static void saver__visit_call(void *data, const char *call_id, int status, const char *error, const uint8_t *resp,
                              size_t len, uint64_t at_ms)
{
    struct saver__visit *v = data;
    struct cv_call_record r = {call_id, status, error, resp, len, at_ms};
    v->call(v->o, &r);
}

int cv_saver_load_calls(struct cv_saver *p, const char *id, void (*call)(void *o, const struct cv_call_record *r),
                        void (*expired)(void *o, uint64_t hash), void *o)
{
    struct saver__visit sv = {.call = call, .expired = expired, .o = o};
    struct cv_catalog_call_visit v = {.data = &sv, .call = saver__visit_call, .expired = saver__visit_expired};
    return cv_catalog_state_calls(p->x->cat, id, &v);
}

/* Owned copies of the call records a save carries (one allocation each, strings inside). */
static int saver__calls_copy(struct psave *s, const struct cv_save_extra *c)
{
    if (!c) return 0;
    s->window = c->window;
    s->window_ms = c->window_ms;
    s->now_ms = c->now_ms;
    if (!c->n) return 0;
    if (!(s->calls = calloc(c->n, sizeof *s->calls))) return CV_ENOMEM;
    for (size_t i = 0; i < c->n; i++) {
        const struct cv_call_record *r = &c->calls[i];
        size_t il = strlen(r->id) + 1, el = strlen(r->error ? r->error : "") + 1;
        Cverse__Catalog__CallRecord *cr = malloc(sizeof *cr + il + el + r->len);
        if (!cr) return CV_ENOMEM;
        cverse__catalog__call_record__init(cr);
        cr->id = (char *)(cr + 1);
        memcpy(cr->id, r->id, il);
        cr->error = cr->id + il;
        memcpy(cr->error, r->error ? r->error : "", el);
        cr->response = (ProtobufCBinaryData){r->len, (uint8_t *)cr->error + el};
        if (r->len) memcpy(cr->response.data, r->resp, r->len);
        cr->status = r->status;
        cr->at_ms = r->at_ms;
        s->calls[s->n_calls++] = cr;
    }
    return 0;
}

static int saver__reminders_copy(struct psave *s, const struct cv_save_extra *c)
{
    if (!c || !c->reminders_set) return 0;
    s->rems_set = true;
    if (!c->n_reminders) return 0;
    if (!(s->rems = calloc(c->n_reminders, sizeof *s->rems))) return CV_ENOMEM;
    for (size_t i = 0; i < c->n_reminders; i++) {
        size_t nl = strlen(c->reminders[i].name) + 1;
        Cverse__Catalog__Reminder *r = malloc(sizeof *r + nl);
        if (!r) return CV_ENOMEM;
        cverse__catalog__reminder__init(r);
        r->name = (char *)(r + 1);
        memcpy(r->name, c->reminders[i].name, nl);
        r->due_ms = c->reminders[i].due_ms;
        r->period_ms = c->reminders[i].period_ms;
        s->rems[s->n_rems++] = r;
    }
    return 0;
}

static void saver__calls_free(struct psave *s)
{
    for (size_t i = 0; i < s->n_calls; i++) free(s->calls[i]);
    free(s->calls);
    for (size_t i = 0; i < s->n_rems; i++) free(s->rems[i]);
    free(s->rems);
}

static int saver__visit_reminder(void *data, const char *type, const char *id, const char *name, uint64_t due_ms,
                                 uint64_t period_ms)
{
    struct saver__visit *v = data;
    struct cv_reminder r = {name, due_ms, period_ms};
    v->add(v->o, &r);
    return 0;
}

int cv_saver_load_reminders(struct cv_saver *p, const char *id, void (*add)(void *o, const struct cv_reminder *r),
                            void *o)
{
    struct saver__visit sv = {.add = add, .o = o};
    return cv_catalog_reminders_get(p->x->cat, id, saver__visit_reminder, &sv);
}

/* The epoch under which this node writes id now (the catalog's fence, catalog.h save_state), or
 * CV_EUNAVAIL when it is not the writer. */
static int saver__epoch(struct cv_hctx *x, const char *id, uint64_t *epoch)
{
    struct cv_placement pl;
    struct cv_catalog_shard sh;
    if (cv_placement_parse(id, x->cfg->shards, &pl) != 0) return CV_EINVAL;
    if (pl.kind == CV_PLACE_NODE) {
        const struct cv_catalog_node *me = cv_catalog_node_get(x->cat, x->self);
        if (!me || !cv_placement_on_node(&pl, x->self)) return CV_EUNAVAIL;
        *epoch = me->incarnation;
        return 0;
    }
    if (cv_catalog_shard_get(x->cat, pl.shard, &sh) != 0) return CV_EINVAL;
    if (strcmp(sh.owner, x->self) == 0) *epoch = sh.epoch;
    else if (!cv_catalog_shard_to_release(x->cat, pl.shard, x->self, epoch)) return CV_EUNAVAIL;
    return 0;
}

int cv_saver_save(struct cv_saver *p, const char *type, const char *id, uint64_t version, uint8_t *state,
                    size_t len, const struct cv_save_extra *calls, cv_state_saved_cb cb, void *cb_data)
{
    uint64_t epoch = 0;
    int rv = p->x->closing ? CV_ECLOSED : saver__epoch(p->x, id, &epoch);
    struct psave *s = rv ? NULL : calloc(1, sizeof *s);
    if (!rv && (!s || !(s->type = strdup(type)) || !(s->id = strdup(id)))) rv = CV_ENOMEM;
    if (!rv) rv = saver__calls_copy(s, calls);
    if (!rv) rv = saver__reminders_copy(s, calls);
    if (rv) {
        if (s) {
            free(s->type);
            free(s->id);
            saver__calls_free(s);
        }
        free(s);
        free(state);
        return rv;
    }
    s->epoch = epoch;
    s->version = version;
    s->state = state;
    s->len = len;
    s->cb = cb;
    s->data = cb_data;
    *p->tail = s;
    p->tail = &s->next;
    p->n_queue++;
    p->saves++;
    p->bytes += len;
    cv_hctx_hold(p->x); /* until its callback ran */
    cv_hctx_timer_again(&p->flush, saver__flush_cb, 0);
    return 0;
}

static void saver__tell(struct cv_saver *p, struct psave *s, int status, const char *msg)
{
    if (status == 0) p->committed++;
    else if (status == CV_EUNAVAIL) p->refused++;
    else p->failed++;
    s->cb(s->data, status, msg);
}

static void saver__free(struct cv_saver *p, struct psave *s)
{
    saver__calls_free(s);
    free(s->type);
    free(s->id);
    free(s->state);
    free(s);
    cv_hctx_release(p->x);
}

static void saver__answer(struct cv_saver *p, struct psave *s, int status, const char *msg)
{
    saver__tell(p, s, status, msg);
    saver__free(p, s);
}

/* The leader's notice: the command committed. All its saves stuck (status 0): their answers are
 * released now, ahead of our own apply of the entry (the next heartbeat). Anything else (some item
 * refused) is left to our apply, where each save reads its record back. */
static void saver__committed(void *data, int status, uint64_t index)
{
    struct pbatch *b = data;
    struct cv_saver *p = b->p;
    if (status != 0) return;
    b->released = true;
    b->index = index;
    b->next_released = p->released;
    p->released = b;
    p->early++;
    for (struct psave *s = b->saves; s; s = s->next) saver__tell(p, s, 0, NULL);
}

/* Our apply (or the proposal's end) of a batch answered early: the saves are only freed. If it ended
 * before our replica applied the entry (timeout, shutdown), loads wait for the replica to catch up. */
static void saver__settle_released(struct cv_saver *p, struct pbatch *b)
{
    struct pbatch **pp = &p->released;
    while (*pp != b) pp = &(*pp)->next_released;
    *pp = b->next_released;
    if (!p->x->closing && cv_catalog_applied_index(p->x->cat) < b->index && b->index > p->lag_index)
        p->lag_index = b->index;
    for (struct psave *s = b->saves, *next; s; s = next) {
        next = s->next;
        saver__free(p, s);
    }
    free(b);
}

/* After a CONFLICT: did this save stick? Its record holds our version at our epoch. */
static bool saver__stuck(struct cv_saver *p, const struct psave *s)
{
    struct cv_catalog_state st;
    if (cv_catalog_state_get(p->x->cat, s->id, &st) != 0) return false;
    free(st.state);
    return st.version == s->version && st.epoch == s->epoch;
}

/* The proposal's outcome, right after its entry applied here (the catalog is at that entry). */
static void saver__done(void *data, int status, uint64_t index)
{
    struct pbatch *b = data;
    struct cv_saver *p = b->p;
    char msg[160];
    (void)index;
    if (b->released) {
        saver__settle_released(p, b);
        return;
    }
    cv_notices_unwatch(cv_consensus_notices(p->x->cons), b->seq);
    for (struct psave *s = b->saves, *next; s; s = next) {
        next = s->next;
        if (status == 0 || (status == CV_ECONFLICT && saver__stuck(p, s))) {
            saver__answer(p, s, 0, NULL);
            continue;
        }
        if (status == CV_ECONFLICT)
            snprintf(msg, sizeof msg, "state of %.80s not saved: %s is no longer its owner", s->id, p->x->self);
        else if (status == CV_ERETRY)
            snprintf(msg, sizeof msg, "state of %.80s not saved: leadership changed before the commit", s->id);
        else
            snprintf(msg, sizeof msg, "state save outcome unknown: %s", cv_strerror(status));
        /* Refused or overwritten: it certainly did not commit (re-routed). Else unknown. */
        saver__answer(p, s, status == CV_ECONFLICT || status == CV_ERETRY ? CV_EUNAVAIL : CV_ETIMEDOUT, msg);
    }
    free(b);
}

/* Proposes every queued save as one CmdSaveState. */
static void saver__flush(struct cv_saver *p)
{
    struct pbatch *b = calloc(1, sizeof *b);
    Cverse__Catalog__ObjectSave *items = calloc(p->n_queue ? p->n_queue : 1, sizeof *items);
    Cverse__Catalog__ObjectSave **ptrs = calloc(p->n_queue ? p->n_queue : 1, sizeof *ptrs);
    int rv = b && items && ptrs ? 0 : CV_ENOMEM;
    if (b) *b = (struct pbatch){p, p->queue, p->n_queue};
    size_t i = 0;
    for (struct psave *s = p->queue; !rv && s; s = s->next, i++) {
        Cverse__Catalog__ObjectSave *it = ptrs[i] = &items[i];
        cverse__catalog__object_save__init(it);
        it->id = s->id;
        it->type = s->type;
        it->epoch = s->epoch;
        it->version = s->version;
        it->state = (ProtobufCBinaryData){s->len, s->state};
        it->calls = s->calls;
        it->n_calls = s->n_calls;
        it->call_window = s->window;
        it->call_window_ms = s->window_ms;
        it->now_ms = s->now_ms;
        it->reminders = s->rems;
        it->n_reminders = s->n_rems;
        it->reminders_set = s->rems_set;
    }
    Cverse__Catalog__CmdSaveState ss = CVERSE__CATALOG__CMD_SAVE_STATE__INIT;
    ss.node = (char *)p->x->self;
    ss.saves = ptrs;
    ss.n_saves = p->n_queue;
    Cverse__Catalog__Command cmd = CVERSE__CATALOG__COMMAND__INIT;
    cmd.cmd_case = CVERSE__CATALOG__COMMAND__CMD_SAVE_STATE;
    cmd.save_state = &ss;
    if (!rv) rv = cv_consensus_propose(p->x->cons, &cmd, CV_HOST_PROPOSE_TIMEOUT_MS, saver__done, b);
    /* cmd.seq is the proposal's now; without a watch the answers wait for our apply, as before */
    if (!rv && !cv_notices_watch(cv_consensus_notices(p->x->cons), cmd.seq, saver__committed, b))
        b->seq = cmd.seq;
    free(ptrs);
    free(items);
    struct psave *list = p->queue;
    p->queue = NULL;
    p->tail = &p->queue;
    p->n_queue = 0;
    if (rv == 0) {
        p->batches++;
        return;
    }
    free(b); /* not proposed: nothing was committed */
    for (struct psave *s = list, *next; s; s = next) {
        next = s->next;
        saver__answer(p, s, CV_EUNAVAIL, "state save not proposed");
    }
}

static void saver__flush_cb(uv_timer_t *t)
{
    struct cv_saver *p = t->data;
    if (p->queue) saver__flush(p);
}

void cv_saver_close(struct cv_saver *p)
{
    for (struct psave *s = p->queue, *next; s; s = next) {
        next = s->next;
        saver__answer(p, s, CV_ECLOSED, "node is shutting down");
    }
    p->queue = NULL;
    p->tail = &p->queue;
    p->n_queue = 0;
    p->x->parts++;
    uv_close((uv_handle_t *)&p->flush, cv_hctx_handle_closed);
}
