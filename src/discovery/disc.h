/* Discovery through etcd: this process's registration under a kept-alive lease, the leader key, etcd's health. */
#ifndef CV_DISCOVERY_DISC_H
#define CV_DISCOVERY_DISC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/sm.h"
#include "discovery/etcd.h"

#define CV_DISC_TTL_DEFAULT_MS 15000u

struct cv_disc;

struct cv_disc_opts {
    uv_loop_t *loop;              /* borrowed, valid until the close callback */
    const char *const *endpoints; /* copied */
    size_t n_endpoints;
    const char *prefix;           /* key prefix, e.g. "/cverse"; copied */
    unsigned ttl_ms;              /* the registration lease (0: CV_DISC_TTL_DEFAULT_MS) */
    const char *kind;             /* "nodes" or "gates": the key is <prefix>/<kind>/<id> */
    const char *id;
    /* The registered value: a JSON object with at least "advertise" (the address this process serves on);
     * an "incarnation" (random, per process) is added. A key already held with the same "advertise" is this
     * process's dead predecessor (we bound its port) and is taken over; another one is a duplicate id. */
    const char *value;
    /* The key is held by another live process (holder: its value, valid during the call). Registration
     * stops; the caller usually exits with a start error. May be NULL. */
    void (*on_conflict)(void *data, const char *holder);
    void *data;
};

/* CV_EINVAL (no endpoint, value not a JSON object), CV_ENOMEM. *out is owned by the caller until
 * cv_disc_close's callback. */
int cv_disc_init(const struct cv_disc_opts *opts, struct cv_disc **out);
/* Registers (lease grant, create-if-absent, keepalive every third of the TTL), retrying with backoff
 * (100 ms doubling to 5 s) while etcd is unreachable: never fails for that. 0 or CV_ENOMEM. */
int cv_disc_start(struct cv_disc *d);
/* cv_disc_start when d is not NULL (a process without etcd discovery has none). */
static inline void cv_disc_start_if(struct cv_disc *d)
{
    if (d) cv_disc_start(d);
}
/* etcd answered the last call (false before the first answer). */
bool cv_disc_up(const struct cv_disc *d);
/* The key is ours now. */
bool cv_disc_registered(const struct cv_disc *d);
/* The incarnation in our value (hex). Valid until close. */
const char *cv_disc_incarnation(const struct cv_disc *d);
/* Publishes <prefix>/leader = {"term":"<20 digits>","node":node}: written only over an older term (the
 * zero-padded term makes etcd's byte-order value compare a term compare), retried until written or
 * superseded. A call with an older term than one given before is ignored. */
void cv_disc_leader(struct cv_disc *d, const char *node, uint64_t term);
/* The last leader key given is written, or a newer term was found there (nothing left to do). */
bool cv_disc_leader_settled(const struct cv_disc *d);
/* The client, for other discovery calls (bootstrap txn, member lookups); valid until close. */
struct cv_etcd *cv_disc_etcd(struct cv_disc *d);
const char *cv_disc_prefix(const struct cv_disc *d);
/* The registration's state machine (for its table's unit test). */
const struct cv_sm_conf *cv_disc_sm_conf(void);
/* Revokes the lease (clean stop: the key goes at once; bounded by 1 s), then closes the client; cb (may be
 * NULL) runs once everything is freed. */
void cv_disc_close(struct cv_disc *d, void (*cb)(void *data), void *data);

#endif
