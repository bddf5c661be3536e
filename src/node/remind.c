/* Durable reminders on a node (docs/durable-state.md).
 *
 * Happy path: the scheduler keeps the reminders of the objects this node owns, read from the local
 * catalog replica (db "reminders": only objects that have some), sorted by object id. It reads them all
 * when the shard map changed (the objects it owns changed: at the start, after a move, a failover, a
 * snapshot); an applied command that changed one object's reminders (a save carrying them, a delete)
 * re-reads that object's record only (cv_remind_object). Each tick, every one whose due time passed is
 * handed to the runtime (cv_runtime_remind): it activates the object if needed and runs the reminder in
 * its mailbox, which advances it; the advance commits with the object's next save and comes back here
 * through the catalog as a change of that object. A due time far in the past (the object moved here, the
 * cluster restarted) fires once: the runtime advances past now.
 *
 * Failure modes: until the advance is in the catalog, the fired due time is remembered (also across
 * re-reads) and not fired again; if it never arrives (the save failed, the object moved) it fires again
 * after CV_REMIND_REFIRE_MS, and the object skips a due time it already passed. A refused hand-over that
 * may succeed later (not our shard any more, mailbox full, closing) is tried again at the next tick; any
 * other (a type this node does not have) is logged and tried again after CV_REMIND_RETRY_MS. */
#include "node/remind.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"
#include "util/buf.h"
#include "util/log.h"

struct remind_entry {
    char *type, *id, *name; /* owned */
    uint64_t due_ms;
    uint64_t held_until;    /* monotonic: fired (or refused) and not to be fired before; 0 = not held */
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

static void remind__entry_free(struct remind_entry *e)
{
    free(e->type);
    free(e->id);
    free(e->name);
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

/* The first entry whose id is not below id (entries are sorted by id). */
static size_t remind__lower(const struct cv_remind *r, const char *id)
{
    size_t lo = 0, hi = r->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(r->entries[mid].id, id) < 0) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* Where the catalog's visits append: at `at` (shifting the entries from there), or at the end. */
struct remind_add {
    struct cv_remind *r;
    size_t at;
    bool keep_order; /* false: append, sort later (the full read) */
};

static void remind__hold(struct cv_remind *r, struct remind_entry *e, uint64_t until)
{
    e->held_until = until;
    if (until && (!r->next_release || until < r->next_release)) r->next_release = until;
}

static int remind__add(void *data, const char *type, const char *id, const char *name, uint64_t due_ms,
                       uint64_t period_ms)
{
    struct remind_add *a = data;
    struct cv_remind *r = a->r;
    (void)period_ms; /* the object advances it */
    if (!remind__ours(r->x, id)) return 0;
    int rv = cv_array_grow((void **)&r->entries, &r->cap, r->n + 1, sizeof *r->entries);
    if (rv) return rv;
    size_t at = a->keep_order ? a->at++ : r->n;
    struct remind_entry e = {strdup(type), strdup(id), strdup(name), due_ms, 0};
    if (!e.type || !e.id || !e.name) {
        remind__entry_free(&e);
        return CV_ENOMEM;
    }
    memmove(&r->entries[at + 1], &r->entries[at], (r->n - at) * sizeof *r->entries);
    r->entries[at] = e;
    r->n++;
    struct remind_fired *f = remind__was_fired(r, id, name, due_ms);
    if (f) remind__hold(r, &r->entries[at], f->at_ms + CV_REMIND_REFIRE_MS);
    if (r->next_due && due_ms < r->next_due) r->next_due = due_ms; /* 0: every entry is looked at anyway */
    return 0;
}

static int remind__cmp(const void *a, const void *b)
{
    const struct remind_entry *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    return c ? c : strcmp(x->name, y->name);
}

/* Reads all of this node's reminders from the catalog (the objects it owns changed). */
static void remind__build(struct cv_remind *r)
{
    for (size_t i = 0; i < r->n; i++) remind__entry_free(&r->entries[i]);
    r->n = 0;
    r->next_due = 0;
    struct remind_add a = {r, 0, false};
    int rv = cv_catalog_reminder_foreach(r->x->cat, remind__add, &a);
    if (rv) CV_WARN("reminders: reading the catalog failed: %s", cv_strerror(rv));
    if (r->n > 1) qsort(r->entries, r->n, sizeof *r->entries, remind__cmp);
    r->stale = rv != 0;
    r->reads++;
    r->next_due = 0; /* look at every entry once */
}

void cv_remind_object(struct cv_remind *r, const char *id)
{
    if (r->stale) return; /* the whole table is read at the next tick anyway */
    size_t at = remind__lower(r, id), end = at;
    while (end < r->n && !strcmp(r->entries[end].id, id)) remind__entry_free(&r->entries[end++]);
    if (end > at) {
        memmove(&r->entries[at], &r->entries[end], (r->n - end) * sizeof *r->entries);
        r->n -= end - at;
    }
    struct remind_add a = {r, at, true};
    int rv = cv_catalog_reminders_get(r->x->cat, id, remind__add, &a);
    if (rv) {
        CV_WARN("reminders of %s: reading the catalog failed: %s; reading all of them", id, cv_strerror(rv));
        r->stale = true;
    }
    r->object_reads++;
}

static void remind__fire(struct cv_remind *r, struct remind_entry *e, uint64_t mono)
{
    int rv = cv_runtime_remind(r->x->rt, e->type, e->id, e->name, e->due_ms);
    if (rv != 0) {
        if (cv_err_retryable(rv)) return; /* again at the next tick (or at the next owner) */
        CV_WARN("reminder %s of %s (%s): %s; again in %d s", e->name, e->id, e->type, cv_strerror(rv),
                CV_REMIND_RETRY_MS / 1000);
        remind__hold(r, e, mono + CV_REMIND_RETRY_MS); /* e.g. a type this node lacks: not every tick */
        return;
    }
    remind__hold(r, e, mono + CV_REMIND_REFIRE_MS);
    r->fires++;
    size_t il = strlen(e->id), nl = strlen(e->name);
    struct remind_fired *f = malloc(sizeof *f + il + nl + 2);
    if (!f) return; /* it fires again when the entry is read again: the object skips it */
    f->due_ms = e->due_ms;
    f->at_ms = mono;
    memcpy(f->key, e->id, il + 1);
    memcpy(f->key + il + 1, e->name, nl + 1);
    f->next = r->fired;
    r->fired = f;
}

/* Holds that ran out: fired due times whose advance never came back, refused hand-overs. */
static void remind__release(struct cv_remind *r, uint64_t mono)
{
    r->next_release = 0;
    for (struct remind_fired **pp = &r->fired; *pp;) {
        struct remind_fired *f = *pp;
        uint64_t until = f->at_ms + CV_REMIND_REFIRE_MS;
        if (mono < until) { /* kept until then, also when its entry is gone (re-read since) */
            if (!r->next_release || until < r->next_release) r->next_release = until;
            pp = &f->next;
            continue;
        }
        *pp = f->next;
        free(f);
    }
    for (size_t i = 0; i < r->n; i++) {
        struct remind_entry *e = &r->entries[i];
        if (e->held_until && e->held_until <= mono) e->held_until = 0;
        else if (e->held_until) remind__hold(r, e, e->held_until);
    }
    r->next_due = 0; /* look at every entry once */
}

void cv_remind_tick(struct cv_remind *r)
{
    struct cv_hctx *x = r->x;
    if (!x->started || x->closing || !cv_hctx_serving(x)) return;
    uint64_t mono = cv_mono_ms(), now = cv_now_ms();
    if (r->stale) remind__build(r);
    if (r->next_release && mono >= r->next_release) remind__release(r, mono);
    if (r->next_due && now < r->next_due) return;
    uint64_t next = 0;
    for (size_t i = 0; i < r->n; i++) {
        struct remind_entry *e = &r->entries[i];
        if (!e->held_until && e->due_ms <= now) remind__fire(r, e, mono);
        if (!e->held_until && (!next || e->due_ms < next)) next = e->due_ms;
    }
    r->next_due = next ? next : UINT64_MAX;
}

unsigned cv_remind_next_ms(const struct cv_remind *r)
{
    const struct cv_hctx *x = r->x;
    if (!x->started || x->closing || x->fenced) return UINT_MAX;
    if (r->stale || !r->next_due) return 0;
    uint64_t mono = cv_mono_ms(), now = cv_now_ms(), ms = UINT64_MAX;
    if (r->next_release) ms = r->next_release > mono ? r->next_release - mono : 0;
    if (r->next_due != UINT64_MAX) {
        uint64_t d = r->next_due > now ? r->next_due - now : 0;
        ms = d < ms ? d : ms;
    }
    return ms > UINT_MAX ? UINT_MAX : (unsigned)ms;
}

void cv_remind_free(struct cv_remind *r)
{
    for (size_t i = 0; i < r->n; i++) remind__entry_free(&r->entries[i]);
    free(r->entries);
    for (struct remind_fired *f = r->fired, *next; f; f = next) {
        next = f->next;
        free(f);
    }
    *r = (struct cv_remind){0};
}
