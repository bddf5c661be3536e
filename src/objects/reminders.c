/* Durable reminders of one object (docs/durable-state.md): the SDK calls, the object's list, and running
 * a reminder that fell due.
 *
 * Happy path: cv_object_reminder_set / _clear change the object's list and mark it dirty with
 * reminders_changed; the next capture of the state (state.c) hands the whole list to the host with it,
 * and the catalog replaces the object's stored set (db "reminders") in the same CmdSaveState item. The
 * host's scheduler on the shard's owner reads that db and, when one falls due, calls cv_runtime_remind:
 * the object is activated if needed (its list loaded with its state) and the reminder entry runs in its
 * mailbox: the type's hook, then the reminder advances — a periodic one to its first due time after
 * now (missed ticks fire once), a one-shot one is removed — which is saved like any change.
 *
 * Failure modes: an entry for a due time the object's list no longer has (cleared, or already advanced:
 * the scheduler saw the catalog before the advance committed) does nothing. A crash after the hook but
 * before the advance committed fires the reminder again on the next owner; the hook's state changes of
 * that first run were not committed either (the same save carries both). */
#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"
#include "objects/object.h"
#include "util/log.h"

#define REMINDER_NAME_MAX 128

/* o->x must exist (persisted types: always). */
static struct obj__reminder **reminders__find(struct cv_object *o, const char *name)
{
    struct obj__reminder **pp = &o->x->reminders;
    while (*pp && strcmp((*pp)->name, name) != 0) pp = &(*pp)->next;
    return pp;
}

static int reminders__put(struct cv_object *o, const char *name, uint64_t due, uint64_t period)
{
    struct obj__reminder **pp = reminders__find(o, name);
    if (*pp) {
        (*pp)->due_ms = due;
        (*pp)->period_ms = period;
        return 0;
    }
    size_t n = strlen(name);
    struct obj__reminder *r = malloc(sizeof *r + n + 1);
    if (!r) return CV_ENOMEM;
    *r = (struct obj__reminder){.due_ms = due, .period_ms = period};
    memcpy(r->name, name, n + 1);
    *pp = r;
    return 0;
}

int cv_object_reminder_set(cv_object *o, const char *name, uint64_t due_in_ms, uint64_t period_ms)
{
    if (!o || !name || !*name || strlen(name) > REMINDER_NAME_MAX || !o->type->reminder) return CV_EINVAL;
    if (o->persist == CV_PERSIST_NONE || !o->rt->hooks.load_reminders) return CV_EUNAVAIL;
    enum obj__state s = obj__state(o);
    if (s != OBJ_ACTIVE && s != OBJ_ACTIVATING) return CV_ECLOSED;
    int rv = reminders__put(o, name, cv_now_ms() + due_in_ms, period_ms);
    if (rv == 0) o->x->reminders_changed = o->x->dirty = true;
    return rv;
}

int cv_object_reminder_clear(cv_object *o, const char *name)
{
    if (!o || !name) return CV_EINVAL;
    if (!o->x) return CV_ENOTFOUND; /* never had one */
    struct obj__reminder **pp = reminders__find(o, name), *r = *pp;
    if (!r) return CV_ENOTFOUND;
    *pp = r->next;
    free(r);
    if (o->persist != CV_PERSIST_NONE) o->x->reminders_changed = o->x->dirty = true;
    return 0;
}

static void reminders__loaded(void *data, const struct cv_reminder *r)
{
    struct cv_object *o = data;
    if (reminders__put(o, r->name, r->due_ms, r->period_ms) != 0)
        CV_WARN("objects: %s: no memory for reminder %s", o->id, r->name);
}

int obj__reminders_load(struct cv_object *o)
{
    struct cv_runtime *rt = o->rt;
    if (o->persist == CV_PERSIST_NONE || !rt->hooks.load_reminders) return 0;
    return rt->hooks.load_reminders(rt->hooks.data, o->id, reminders__loaded, o);
}

void obj__reminders_free(struct cv_object *o)
{
    if (!o->x) return;
    for (struct obj__reminder *r = o->x->reminders, *next; r; r = next) {
        next = r->next;
        free(r);
    }
    o->x->reminders = NULL;
}

void obj__reminders_capture(struct cv_object *o, struct cv_save_extra *extra, struct cv_reminder **out)
{
    size_t n = 0;
    *out = NULL;
    if (!o->x->reminders_changed) return;
    for (const struct obj__reminder *r = o->x->reminders; r; r = r->next) n++;
    if (n && !(*out = calloc(n, sizeof **out))) return; /* stays changed: the next save carries them */
    o->x->reminders_changed = false;
    n = 0;
    for (const struct obj__reminder *r = o->x->reminders; r; r = r->next)
        (*out)[n++] = (struct cv_reminder){r->name, r->due_ms, r->period_ms};
    extra->reminders = *out;
    extra->n_reminders = n;
    extra->reminders_set = true;
}

void obj__run_reminder(struct cv_object *o, struct obj__mail *m)
{
    if (!o->x) return; /* a memory-only object has none: as if cleared */
    struct obj__reminder **pp = reminders__find(o, m->remind), *r = *pp;
    if (!r || r->due_ms > m->remind_due) return; /* cleared, or this due time already fired */
    uint64_t due = r->due_ms, now = cv_now_ms();
    if (r->period_ms) { /* the first due time after now: a tick missed while nobody owned it fires once */
        r->due_ms = now < due ? due + r->period_ms : due + r->period_ms * ((now - due) / r->period_ms + 1);
    } else {
        *pp = r->next;
        free(r);
    }
    o->x->reminders_changed = o->x->dirty = true;
    o->type->reminder(o, m->remind, due); /* may set or clear reminders itself */
}
