/* Durable reminders on a node (docs/durable-state.md).
 *
 * Happy path: whenever the catalog's reminders or the shard map changed (and every
 * CV_REMIND_REBUILD_MS), the reminders of the objects this node owns are read from the local catalog
 * replica (db "reminders": only objects that have some). Each tick, every one whose due time passed is
 * handed to the runtime (cv_runtime_remind): it activates the object if needed and runs the reminder in
 * its mailbox, which advances it; the advance commits with the object's next save and comes back here
 * through the catalog. A due time far in the past (the object moved here, the cluster restarted) fires
 * once: the runtime advances past now.
 *
 * Failure modes: until the advance is in the catalog, the fired due time is remembered and not fired
 * again; if it never arrives (the save failed, the object moved) it fires again after
 * CV_REMIND_REFIRE_MS, and the object skips a due time it already passed. A refused hand-over that may
 * succeed later (not our shard any more, mailbox full, closing) is tried again at the next tick; any
 * other (a type this node does not have) is logged and tried again after the next read. */
#include "node/remind.h"

#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"
#include "util/log.h"

struct remind_entry {
    char *type, *id, *name; /* owned */
    uint64_t due_ms;
    bool fired;
};

struct remind_fired {
    struct remind_fired *next;
    uint64_t due_ms, at_ms; /* the due time fired, and when (monotonic) */
    char key[];             /* id NUL name */
};

void cv_remind_init(struct cv_remind *r, struct cv_hctx *x)
{
    *r = (struct cv_remind){.x = x, .stale = true};
}

void cv_remind_changed(struct cv_remind *r)
{
    r->stale = true;
}

static void remind__clear(struct cv_remind *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->entries[i].type);
        free(r->entries[i].id);
        free(r->entries[i].name);
    }
    r->n = 0;
}

static struct remind_fired *remind__was_fired(struct cv_remind *r, const char *id, const char *name, uint64_t due)
{
    size_t il = strlen(id);
    for (struct remind_fired *f = r->fired; f; f = f->next)
        if (f->due_ms == due && memcmp(f->key, id, il + 1) == 0 && strcmp(f->key + il + 1, name) == 0) return f;
    return NULL;
}

/* Is id ours: its shard's owner, or pinned to this node? */
static bool remind__ours(struct cv_hctx *x, const char *id)
{
    struct cv_placement p;
    char owner[CV_NODE_ID_MAX];
    return cv_hctx_owner(x, id, &p, owner) == 0 && strcmp(owner, x->self) == 0;
}

static int remind__add(void *data, const char *type, const char *id, const char *name, uint64_t due_ms,
                       uint64_t period_ms)
{
    struct cv_remind *r = data;
    (void)period_ms; /* the object advances it */
    if (!remind__ours(r->x, id)) return 0;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        struct remind_entry *e = realloc(r->entries, cap * sizeof *e);
        if (!e) return CV_ENOMEM;
        r->entries = e;
        r->cap = cap;
    }
    struct remind_entry *e = &r->entries[r->n];
    *e = (struct remind_entry){strdup(type), strdup(id), strdup(name), due_ms, false};
    if (!e->type || !e->id || !e->name) {
        free(e->type);
        free(e->id);
        free(e->name);
        return CV_ENOMEM;
    }
    e->fired = remind__was_fired(r, id, name, due_ms) != NULL;
    r->n++;
    return 0;
}

/* Reads this node's reminders from the catalog and forgets fired due times that are old. */
static void remind__build(struct cv_remind *r, uint64_t mono)
{
    for (struct remind_fired **pp = &r->fired; *pp;) {
        struct remind_fired *f = *pp;
        if (mono - f->at_ms < CV_REMIND_REFIRE_MS) {
            pp = &f->next;
            continue;
        }
        *pp = f->next;
        free(f);
    }
    remind__clear(r);
    int rv = cv_catalog_reminder_foreach(r->x->cat, remind__add, r);
    if (rv) CV_WARN("reminders: reading the catalog failed: %s", cv_strerror(rv));
    r->stale = rv != 0;
    r->built_ms = mono;
    r->next_due = 0; /* look at every entry once */
}

static void remind__fire(struct cv_remind *r, struct remind_entry *e, uint64_t mono)
{
    int rv = cv_runtime_remind(r->x->rt, e->type, e->id, e->name, e->due_ms);
    if (rv != 0) {
        if (cv_err_retryable(rv)) return; /* again at the next tick (or at the next owner) */
        CV_WARN("reminder %s of %s (%s): %s; again in %d s", e->name, e->id, e->type, cv_strerror(rv),
                CV_REMIND_REBUILD_MS / 1000);
        e->fired = true; /* e.g. a type this node lacks: not every tick, but at the next read */
        return;
    }
    e->fired = true;
    r->fires++;
    size_t il = strlen(e->id), nl = strlen(e->name);
    struct remind_fired *f = malloc(sizeof *f + il + nl + 2);
    if (!f) return; /* it fires again at the next build: the object skips it */
    f->due_ms = e->due_ms;
    f->at_ms = mono;
    memcpy(f->key, e->id, il + 1);
    memcpy(f->key + il + 1, e->name, nl + 1);
    f->next = r->fired;
    r->fired = f;
}

void cv_remind_tick(struct cv_remind *r)
{
    struct cv_hctx *x = r->x;
    if (!x->started || x->closing || !cv_hctx_serving(x)) return;
    uint64_t mono = cv_mono_ms(), now = cv_now_ms();
    if (r->stale || mono - r->built_ms >= CV_REMIND_REBUILD_MS) remind__build(r, mono);
    if (r->next_due && now < r->next_due) return;
    uint64_t next = 0;
    for (size_t i = 0; i < r->n; i++) {
        struct remind_entry *e = &r->entries[i];
        if (!e->fired && e->due_ms <= now) remind__fire(r, e, mono);
        if (!e->fired && (!next || e->due_ms < next)) next = e->due_ms;
    }
    r->next_due = next ? next : UINT64_MAX;
}

void cv_remind_free(struct cv_remind *r)
{
    remind__clear(r);
    free(r->entries);
    for (struct remind_fired *f = r->fired, *next; f; f = next) {
        next = f->next;
        free(f);
    }
    *r = (struct cv_remind){0};
}
