/* Early commit notices (notice.h).
 *
 * Why: a proposal completes when its entry is applied on the proposing node. A follower applies an
 * entry once it learns the commit index, which libraft sends only with the leader's next AppendEntries:
 * with nothing else to replicate that is the next heartbeat, 15-30 ms after the commit. Whoever waits
 * for a commit (an on_write save holding a call's answer) then waits for that heartbeat.
 *
 * Happy path: the leader applies an entry (it does so only once the entry is committed) and sends each
 * other node that proposed commands in it one AppliedNotice {index, seqs, results}. The proposer
 * answers it at once and fires the watches of those seqs. Results are the leader's, and the catalog is
 * deterministic, so they are the results the proposer's own apply will see.
 *
 * Failure modes: a notice that is lost (connection down, leader crashed) changes nothing — the
 * proposal completes at the local apply as without notices. A notice never names a command that is not
 * committed (applied implies committed), and seqs are unique across restarts of a node, so a late notice
 * cannot confirm a different proposal. */
#include "consensus/notice.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "cverse/error.h"
#include "net/peers.h"
#include "rpc.pb-c.h"
#include "util/buf.h"
#include "util/log.h"

struct watch {
    uint64_t seq;
    cv_notice_cb cb;
    void *data;
};

struct cv_notices {
    struct cv_peers *peers;
    char *self;
    struct watch *w;
    size_t n, cap;
};

int cv_notices_init(const char *self, struct cv_peers *peers,
                    struct cv_notices **out)
{
    struct cv_notices *k = calloc(1, sizeof *k);
    if (!k || !(k->self = strdup(self))) {
        free(k);
        return CV_ENOMEM;
    }
    k->peers = peers;
    *out = k;
    return 0;
}

void cv_notices_free(struct cv_notices *k)
{
    if (!k) return;
    free(k->w);
    free(k->self);
    free(k);
}

static void notice__sent(void *data, int status, const char *error, const uint8_t *body, size_t len)
{
    (void)data, (void)status, (void)error, (void)body, (void)len; /* a shortcut only: nothing to do */
}

/* Sends node `to` the seqs and results of its commands in the entry. */
static void notice__send(struct cv_notices *k, const char *to, uint64_t index, const struct cv_cmd_result *results,
                         const char *const *origin, size_t n, uint64_t *seqs, int32_t *status)
{
    struct cv_rpc_client *cli = cv_peers_by_id_up(k->peers, to);
    if (!cli) return;
    Cverse__Rpc__AppliedNotice an = CVERSE__RPC__APPLIED_NOTICE__INIT;
    an.index = index;
    an.seq = seqs;
    an.status = status;
    for (size_t i = 0; i < n; i++)
        if (origin[i] == to) {
            seqs[an.n_seq] = results[i].seq;
            status[an.n_seq++] = results[i].status;
        }
    an.n_status = an.n_seq;
    uint8_t stack[512], *buf = stack;
    size_t len = cverse__rpc__applied_notice__get_packed_size(&an);
    if (len > sizeof stack && !(buf = malloc(len))) return;
    cverse__rpc__applied_notice__pack(&an, buf);
    cv_rpc_call(cli, "catalog.applied", buf, len, 1000, notice__sent, NULL);
    if (buf != stack) free(buf);
}

/* origin[i]: the proposer of command i if it is another node, else NULL; commands of the same proposer
 * share one pointer (the first one's), so that a proposer is found by pointer compare. */
void cv_notices_applied(struct cv_notices *k, uint64_t index, const Cverse__Catalog__Batch *batch,
                        const struct cv_cmd_result *results)
{
    size_t n = batch->n_commands, remote = 0;
    const char *small[64], **origin = n <= 64 ? small : malloc(n * sizeof *origin);
    if (!origin) return;
    for (size_t i = 0; i < n; i++) {
        origin[i] = NULL;
        if (!results[i].origin || !results[i].origin[0] || !strcmp(results[i].origin, k->self)) continue;
        origin[i] = results[i].origin;
        for (size_t j = 0; j < i; j++)
            if (origin[j] && !strcmp(origin[j], origin[i])) {
                origin[i] = origin[j];
                break;
            }
        remote++;
    }
    uint64_t *seqs = remote ? malloc(remote * sizeof *seqs) : NULL;
    int32_t *status = remote ? malloc(remote * sizeof *status) : NULL;
    for (size_t i = 0; seqs && status && i < n; i++) {
        bool first = origin[i] != NULL;
        for (size_t j = 0; first && j < i; j++) first = origin[j] != origin[i];
        if (first) notice__send(k, origin[i], index, results, origin, n, seqs, status);
    }
    free(seqs);
    free(status);
    if (origin != small) free(origin);
}

void cv_notices_handle(struct cv_notices *k, struct cv_rpc_conn *conn, uint64_t id, const uint8_t *body,
                       size_t len)
{
    Cverse__Rpc__AppliedNotice *an = cverse__rpc__applied_notice__unpack(NULL, len, body);
    cv_rpc_respond(conn, id, an ? 0 : CV_EPROTO, an ? NULL : "undecodable AppliedNotice", NULL, 0);
    if (!an) return;
    for (size_t i = 0; i < an->n_seq && i < an->n_status; i++) {
        for (size_t j = 0; j < k->n; j++) {
            if (k->w[j].seq != an->seq[i]) continue;
            struct watch w = k->w[j];
            k->w[j] = k->w[--k->n]; /* removed before the callback, which may watch or unwatch */
            w.cb(w.data, an->status[i], an->index);
            break;
        }
    }
    cverse__rpc__applied_notice__free_unpacked(an, NULL);
}

int cv_notices_watch(struct cv_notices *k, uint64_t seq, cv_notice_cb cb, void *data)
{
    int rv = cv_array_grow((void **)&k->w, &k->cap, k->n + 1, sizeof *k->w);
    if (rv) return rv;
    k->w[k->n++] = (struct watch){seq, cb, data};
    return 0;
}

void cv_notices_unwatch(struct cv_notices *k, uint64_t seq)
{
    for (size_t j = 0; j < k->n; j++)
        if (k->w[j].seq == seq) {
            k->w[j] = k->w[--k->n];
            return;
        }
}
