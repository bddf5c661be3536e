/* Unit tests for the catalog's object states (CmdSaveState, db "states"): the fence of each item (shard
 * owner and epoch, an old owner's saves until it confirms a release, a dead node, node-pinned ids),
 * versions, batching several objects in one command, delete dropping the state, and snapshots and
 * reopen carrying it. Real LMDB environments in temp dirs. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog/catalog.h"
#include "core/hash.h"
#include "cverse/error.h"
#include "util/log.h"

#include "lsan_check.h"
#include "tmpdir.h"

#define SHARDS 16

static char root[64];
static struct cv_catalog *cat;
static uint64_t next_index;
static int last_status[64];
static size_t last_n;

static void on_apply(void *data, uint64_t index, const Cverse__Catalog__Batch *b, const struct cv_cmd_result *r)
{
    (void)data, (void)index;
    last_n = b->n_commands;
    for (size_t i = 0; i < b->n_commands && i < 64; i++) last_status[i] = r[i].status;
}

static struct cv_catalog *open_at(const char *dir)
{
    struct cv_catalog *c;
    struct cv_catalog_opts o = {.dir = dir, .shards = SHARDS};
    int rv = cv_catalog_open(&o, &c);
    cr_assert_eq(rv, 0, "open %s: %s", dir, cv_errname(rv));
    cv_catalog_set_observer(c, on_apply, NULL);
    return c;
}

static void setup(void)
{
    strcpy(root, "/tmp/cv-state-XXXXXX");
    cr_assert_not_null(mkdtemp(root));
    cv_log_init("test", CV_LOG_ERROR + 1);
    char dir[128];
    snprintf(dir, sizeof dir, "%s/a", root);
    cat = open_at(dir);
    next_index = 1;
}

static void teardown(void)
{
    if (cat) cv_catalog_close(cat);
    cat = NULL;
    cv_tmpdir_remove(root);
    cv_lsan_check();
}

TestSuite(state, .init = setup, .fini = teardown);

/* Applies the commands as ONE entry (one Batch); returns the first command's status. */
static int apply(Cverse__Catalog__Command **cmds, size_t n)
{
    Cverse__Catalog__Batch b = CVERSE__CATALOG__BATCH__INIT;
    b.commands = cmds;
    b.n_commands = n;
    size_t len = cverse__catalog__batch__get_packed_size(&b);
    uint8_t *buf = malloc(len ? len : 1);
    cr_assert_not_null(buf);
    cverse__catalog__batch__pack(&b, buf);
    bool skipped = true;
    int rv = cv_catalog_apply(cat, next_index++, buf, len, &skipped);
    free(buf);
    cr_assert_eq(rv, 0, "apply: %s", cv_errname(rv));
    cr_assert(!skipped);
    cr_assert_eq(last_n, n);
    return last_status[0];
}

static int apply1(Cverse__Catalog__Command *c)
{
    return apply(&c, 1);
}

static void reg(const char *id)
{
    Cverse__Catalog__NodeInfo info = CVERSE__CATALOG__NODE_INFO__INIT;
    info.id = (char *)id;
    Cverse__Catalog__CmdRegisterNode r = CVERSE__CATALOG__CMD_REGISTER_NODE__INIT;
    r.info = &info;
    r.now_ms = 1000;
    r.ttl_ms = 1000000;
    Cverse__Catalog__Command c = CVERSE__CATALOG__COMMAND__INIT;
    c.cmd_case = CVERSE__CATALOG__COMMAND__CMD_REGISTER_NODE;
    c.register_node = &r;
    cr_assert_eq(apply1(&c), 0);
}

static void expire(const char *id)
{
    const struct cv_catalog_node *n = cv_catalog_node_get(cat, id);
    cr_assert_not_null(n);
    Cverse__Catalog__CmdExpireNode e = CVERSE__CATALOG__CMD_EXPIRE_NODE__INIT;
    e.node = (char *)id;
    e.expiry_ms = n->lease_expiry_ms;
    Cverse__Catalog__Command c = CVERSE__CATALOG__COMMAND__INIT;
    c.cmd_case = CVERSE__CATALOG__COMMAND__CMD_EXPIRE_NODE;
    c.expire_node = &e;
    cr_assert_eq(apply1(&c), 0);
}

/* Gives shard to owner ("" unassigns) at its current epoch; returns the new epoch. */
static uint64_t assign(uint32_t shard, const char *owner)
{
    uint64_t epoch;
    cr_assert_not_null(cv_catalog_shard_owner(cat, shard, &epoch));
    Cverse__Catalog__ShardAssignment a = CVERSE__CATALOG__SHARD_ASSIGNMENT__INIT, *ap = &a;
    a.shard = shard;
    a.owner = (char *)owner;
    a.expect_epoch = epoch;
    Cverse__Catalog__CmdAssignShards as = CVERSE__CATALOG__CMD_ASSIGN_SHARDS__INIT;
    as.shards = &ap;
    as.n_shards = 1;
    Cverse__Catalog__Command c = CVERSE__CATALOG__COMMAND__INIT;
    c.cmd_case = CVERSE__CATALOG__COMMAND__CMD_ASSIGN_SHARDS;
    c.assign_shards = &as;
    cr_assert_eq(apply1(&c), 0);
    cv_catalog_shard_owner(cat, shard, &epoch);
    return epoch;
}

static void release(const char *node, uint32_t shard, uint64_t epoch)
{
    Cverse__Catalog__CmdReleaseShards rs = CVERSE__CATALOG__CMD_RELEASE_SHARDS__INIT;
    rs.node = (char *)node;
    rs.shards = &shard;
    rs.n_shards = 1;
    rs.epochs = &epoch;
    rs.n_epochs = 1;
    Cverse__Catalog__Command c = CVERSE__CATALOG__COMMAND__INIT;
    c.cmd_case = CVERSE__CATALOG__COMMAND__CMD_RELEASE_SHARDS;
    c.release_shards = &rs;
    cr_assert_eq(apply1(&c), 0);
}

static int object_op(const char *type, const char *id, bool create)
{
    Cverse__Catalog__CmdCreateObject co = CVERSE__CATALOG__CMD_CREATE_OBJECT__INIT;
    Cverse__Catalog__CmdDeleteObject d = CVERSE__CATALOG__CMD_DELETE_OBJECT__INIT;
    Cverse__Catalog__Command c = CVERSE__CATALOG__COMMAND__INIT;
    if (create) {
        co.type = (char *)type;
        co.id = (char *)id;
        c.cmd_case = CVERSE__CATALOG__COMMAND__CMD_CREATE_OBJECT;
        c.create_object = &co;
    } else {
        d.id = (char *)id;
        c.cmd_case = CVERSE__CATALOG__COMMAND__CMD_DELETE_OBJECT;
        c.delete_object = &d;
    }
    return apply1(&c);
}

/* A save item; the state is the text (without its NUL). */
static Cverse__Catalog__ObjectSave item(const char *id, uint64_t epoch, uint64_t version, const char *text)
{
    Cverse__Catalog__ObjectSave s = CVERSE__CATALOG__OBJECT_SAVE__INIT;
    s.id = (char *)id;
    s.type = "Counter";
    s.epoch = epoch;
    s.version = version;
    s.state = (ProtobufCBinaryData){strlen(text), (uint8_t *)text};
    return s;
}

static int save_items(const char *node, Cverse__Catalog__ObjectSave *items, size_t n)
{
    Cverse__Catalog__ObjectSave *ptrs[16];
    cr_assert(n <= 16);
    for (size_t i = 0; i < n; i++) ptrs[i] = &items[i];
    Cverse__Catalog__CmdSaveState ss = CVERSE__CATALOG__CMD_SAVE_STATE__INIT;
    ss.node = (char *)node;
    ss.saves = ptrs;
    ss.n_saves = n;
    Cverse__Catalog__Command c = CVERSE__CATALOG__COMMAND__INIT;
    c.cmd_case = CVERSE__CATALOG__COMMAND__CMD_SAVE_STATE;
    c.save_state = &ss;
    return apply1(&c);
}

static int save(const char *node, const char *id, uint64_t epoch, uint64_t version, const char *text)
{
    Cverse__Catalog__ObjectSave s = item(id, epoch, version, text);
    return save_items(node, &s, 1);
}

/* The stored state of id is text at version (NULL: none stored). */
static void assert_state(const char *id, const char *text, uint64_t version)
{
    struct cv_catalog_state st;
    int rv = cv_catalog_state_get(cat, id, &st);
    if (!text) {
        cr_assert_eq(rv, CV_ENOTFOUND, "%s: state %s, want none", id, cv_errname(rv));
        return;
    }
    cr_assert_eq(rv, 0, "%s: %s", id, cv_errname(rv));
    cr_assert_eq(st.len, strlen(text));
    cr_assert(st.len == 0 || memcmp(st.state, text, st.len) == 0, "%s: state differs", id);
    cr_assert_eq(st.version, version, "%s: version %llu, want %llu", id, (unsigned long long)st.version,
                 (unsigned long long)version);
    cr_assert_str_eq(st.type, "Counter");
    free(st.state);
}

/* An id placed on shard s ("shard#s/name"). */
static const char *on_shard(uint32_t s, const char *name)
{
    static char bufs[16][64];
    static int k;
    char *b = bufs[k++ % 16];
    snprintf(b, 64, "shard#%u/%s", s, name);
    return b;
}

Test(state, owner_saves_and_reads_back)
{
    reg("n1");
    uint64_t e = assign(3, "n1");
    const char *id = on_shard(3, "c");
    cr_assert_eq(object_op("Counter", id, true), 0);
    assert_state(id, NULL, 0);
    cr_assert_eq(save("n1", id, e, 1, "one"), 0);
    uint64_t at = next_index - 1;
    struct cv_catalog_state st;
    cr_assert_eq(cv_catalog_state_get(cat, id, &st), 0);
    cr_assert_eq(st.epoch, e);
    cr_assert_eq(st.saved_index, at);
    cr_assert_str_eq(st.node, "n1");
    free(st.state);
    cr_assert_eq(save("n1", id, e, 2, "two"), 0);
    assert_state(id, "two", 2);
    size_t count;
    uint64_t bytes;
    cv_catalog_state_stats(cat, &count, &bytes);
    cr_assert_eq(count, 1);
    cr_assert_gt(bytes, 0);
}

Test(state, versions_only_move_forward)
{
    reg("n1");
    uint64_t e = assign(1, "n1");
    const char *id = on_shard(1, "c");
    object_op("Counter", id, true);
    cr_assert_eq(save("n1", id, e, 5, "five"), 0);
    cr_assert_eq(save("n1", id, e, 5, "five"), 0, "the same save again (a retried proposal) is a duplicate");
    cr_assert_eq(save("n1", id, e, 4, "four"), CV_ECONFLICT, "an older save arriving late");
    assert_state(id, "five", 5);
    cr_assert_eq(save("n1", id, e, 6, ""), 0, "an empty state is a state");
    assert_state(id, "", 6);
}

Test(state, stale_owner_and_epoch_are_rejected)
{
    reg("n1");
    reg("n2");
    uint64_t e1 = assign(2, "n1");
    const char *id = on_shard(2, "c");
    object_op("Counter", id, true);
    cr_assert_eq(save("n1", id, e1, 1, "a"), 0);
    cr_assert_eq(save("n2", id, e1, 2, "x"), CV_ECONFLICT, "not the owner");
    cr_assert_eq(save("n1", id, e1 + 1, 2, "x"), CV_ECONFLICT, "an epoch the shard does not have");
    uint64_t e2 = assign(2, "n2"); /* n1 is dead-free moved straight (no two-phase here): stale now */
    cr_assert_eq(e2, e1 + 1);
    cr_assert_eq(save("n1", id, e1, 2, "stale"), CV_ECONFLICT, "the old owner at the old epoch");
    cr_assert_eq(save("n1", id, e2, 2, "stale"), CV_ECONFLICT, "the old owner naming the new epoch");
    cr_assert_eq(save("n2", id, e1, 2, "x"), CV_ECONFLICT, "the new owner at the old epoch");
    assert_state(id, "a", 1);
    cr_assert_eq(save("n2", id, e2, 2, "b"), 0);
    assert_state(id, "b", 2);
    cr_assert_eq(save("ghost", id, e2, 3, "x"), CV_ECONFLICT, "an unknown node");
}

Test(state, old_owner_saves_until_it_confirms_the_release)
{
    reg("n1");
    reg("n2");
    uint64_t e1 = assign(4, "n1");
    const char *id = on_shard(4, "c");
    object_op("Counter", id, true);
    uint64_t er = assign(4, ""); /* phase 1: n1 must release */
    cr_assert_eq(er, e1 + 1);
    cr_assert_eq(save("n1", id, e1, 1, "taken before the release entry"), 0);
    cr_assert_eq(save("n1", id, er, 2, "final save at deactivation"), 0);
    cr_assert_eq(save("n2", id, er, 3, "x"), CV_ECONFLICT, "nobody else writes an unassigned shard");
    release("n1", 4, er);
    cr_assert_eq(save("n1", id, er, 3, "after the release"), CV_ECONFLICT);
    assert_state(id, "final save at deactivation", 2);
    uint64_t e3 = assign(4, "n2");
    cr_assert_eq(save("n1", id, er, 3, "x"), CV_ECONFLICT);
    cr_assert_eq(save("n2", id, e3, 3, "new owner"), 0);
    assert_state(id, "new owner", 3);
}

Test(state, a_dead_node_saves_nothing)
{
    reg("n1");
    reg("n2");
    uint64_t e = assign(5, "n1");
    const char *id = on_shard(5, "c");
    object_op("Counter", id, true);
    expire("n1"); /* unassigns its shards in the same entry (epoch + 1, released_by n1) */
    cr_assert_eq(save("n1", id, e, 1, "late"), CV_ECONFLICT);
    cr_assert_eq(save("n1", id, e + 1, 1, "late"), CV_ECONFLICT);
    assert_state(id, NULL, 0);
}

Test(state, one_command_carries_many_objects_each_fenced)
{
    reg("n1");
    reg("n2");
    uint64_t ea = assign(6, "n1"), eb = assign(7, "n2");
    const char *a = on_shard(6, "a"), *b = on_shard(7, "b"), *a2 = on_shard(6, "a2");
    object_op("Counter", a, true);
    object_op("Counter", b, true);
    object_op("Counter", a2, true);
    Cverse__Catalog__ObjectSave items[4] = {item(a, ea, 1, "A"), item(b, eb, 1, "B: not n1's"),
                                             item(a2, ea, 1, "A2"), item(on_shard(6, "nobody"), ea, 1, "absent")};
    cr_assert_eq(save_items("n1", items, 4), CV_ECONFLICT, "two items are rejected");
    assert_state(a, "A", 1);
    assert_state(a2, "A2", 1);
    assert_state(b, NULL, 0);
    assert_state(on_shard(6, "nobody"), NULL, 0);
    Cverse__Catalog__ObjectSave ok[2] = {item(a, ea, 2, "A'"), item(a2, ea, 2, "A2'")};
    cr_assert_eq(save_items("n1", ok, 2), 0);
    assert_state(a, "A'", 2);
    assert_state(a2, "A2'", 2);
}

Test(state, saves_of_two_nodes_in_one_entry)
{
    reg("n1");
    reg("n2");
    uint64_t ea = assign(8, "n1"), eb = assign(9, "n2");
    const char *a = on_shard(8, "a"), *b = on_shard(9, "b");
    object_op("Counter", a, true);
    object_op("Counter", b, true);
    Cverse__Catalog__ObjectSave sa = item(a, ea, 1, "A"), sb = item(b, eb, 1, "B"), *pa = &sa, *pb = &sb;
    Cverse__Catalog__CmdSaveState s1 = CVERSE__CATALOG__CMD_SAVE_STATE__INIT, s2 = CVERSE__CATALOG__CMD_SAVE_STATE__INIT;
    s1.node = "n1", s1.saves = &pa, s1.n_saves = 1;
    s2.node = "n2", s2.saves = &pb, s2.n_saves = 1;
    Cverse__Catalog__Command c1 = CVERSE__CATALOG__COMMAND__INIT, c2 = CVERSE__CATALOG__COMMAND__INIT;
    c1.cmd_case = c2.cmd_case = CVERSE__CATALOG__COMMAND__CMD_SAVE_STATE;
    c1.save_state = &s1;
    c2.save_state = &s2;
    Cverse__Catalog__Command *cmds[2] = {&c1, &c2};
    cr_assert_eq(apply(cmds, 2), 0);
    cr_assert_eq(last_status[1], 0);
    assert_state(a, "A", 1);
    assert_state(b, "B", 1);
}

Test(state, wrong_type_and_bad_arguments)
{
    reg("n1");
    uint64_t e = assign(10, "n1");
    const char *id = on_shard(10, "c");
    object_op("Other", id, true);
    cr_assert_eq(save("n1", id, e, 1, "x"), CV_ECONFLICT, "the object is not a Counter");
    cr_assert_eq(save("", id, e, 1, "x"), CV_EINVAL);
    cr_assert_eq(save("n1", "", e, 1, "x"), CV_ECONFLICT, "empty id");
    cr_assert_eq(save("n1", "shard#99/x", e, 1, "x"), CV_ECONFLICT, "shard out of range");
    assert_state(id, NULL, 0);
}

Test(state, delete_drops_the_state_for_good)
{
    reg("n1");
    uint64_t e = assign(11, "n1");
    const char *id = on_shard(11, "c");
    object_op("Counter", id, true);
    cr_assert_eq(save("n1", id, e, 3, "x"), 0);
    cr_assert_eq(object_op("Counter", id, false), 0);
    assert_state(id, NULL, 0);
    cr_assert_eq(save("n1", id, e, 4, "resurrected?"), CV_ECONFLICT, "a save of a deleted object");
    assert_state(id, NULL, 0);
    object_op("Counter", id, true);
    assert_state(id, NULL, 0); /* created again: starts without state */
    cr_assert_eq(save("n1", id, e, 1, "fresh"), 0);
    assert_state(id, "fresh", 1);
}

Test(state, node_pinned_ids_are_fenced_by_incarnation)
{
    reg("n1");
    reg("n2");
    const char *id = "n1/pinned";
    object_op("Counter", id, true);
    uint64_t inc = cv_catalog_node_get(cat, "n1")->incarnation;
    cr_assert_eq(save("n1", id, inc, 1, "p"), 0);
    cr_assert_eq(save("n2", id, cv_catalog_node_get(cat, "n2")->incarnation, 2, "x"), CV_ECONFLICT);
    cr_assert_eq(save("n1", id, inc + 1, 2, "x"), CV_ECONFLICT, "another incarnation");
    expire("n1");
    cr_assert_eq(save("n1", id, inc, 2, "dead"), CV_ECONFLICT);
    reg("n1"); /* a new incarnation */
    cr_assert_eq(cv_catalog_node_get(cat, "n1")->incarnation, inc + 1);
    cr_assert_eq(save("n1", id, inc, 2, "old incarnation"), CV_ECONFLICT);
    cr_assert_eq(save("n1", id, inc + 1, 2, "q"), 0);
    assert_state(id, "q", 2);
}

Test(state, snapshot_and_reopen_carry_states)
{
    reg("n1");
    uint64_t e = assign(12, "n1");
    char big[4096];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    const char *ids[3] = {on_shard(12, "a"), on_shard(12, "b"), on_shard(12, "c")};
    for (int i = 0; i < 3; i++) object_op("Counter", ids[i], true);
    Cverse__Catalog__ObjectSave items[3] = {item(ids[0], e, 1, "A"), item(ids[1], e, 7, big), item(ids[2], e, 2, "C")};
    cr_assert_eq(save_items("n1", items, 3), 0);
    object_op("Counter", ids[2], false);
    void *buf;
    size_t len;
    cr_assert_eq(cv_catalog_snapshot(cat, &buf, &len), 0);
    cr_assert_gt(len, sizeof big, "the snapshot holds the states");

    char dir[128];
    snprintf(dir, sizeof dir, "%s/b", root);
    struct cv_catalog *a = cat;
    cat = open_at(dir);
    bool ignored = true;
    cr_assert_eq(cv_catalog_restore(cat, buf, len, &ignored), 0);
    cr_assert(!ignored);
    free(buf);
    assert_state(ids[0], "A", 1);
    assert_state(ids[1], big, 7);
    assert_state(ids[2], NULL, 0);
    cv_catalog_close(cat);

    cat = open_at(dir); /* reopened: LMDB kept them */
    assert_state(ids[1], big, 7);
    cv_catalog_close(cat);
    cat = a;
    assert_state(ids[0], "A", 1);
}

/* ---- reliable calls: the call ids committed with a save (StateRecord.calls, expired_calls) ---- */

struct seen {
    char ids[16][32];
    int n;
    uint64_t expired[16];
    int n_expired;
};

static void seen_call(void *data, const char *call_id, int status, const char *error, const uint8_t *resp,
                      size_t len, uint64_t at_ms)
{
    struct seen *s = data;
    cr_assert_lt(s->n, 16);
    cr_assert_eq(len, strlen(call_id), "the response recorded with %s", call_id);
    cr_assert(memcmp(resp, call_id, len) == 0);
    snprintf(s->ids[s->n++], sizeof s->ids[0], "%s", call_id);
}

static void seen_expired(void *data, uint64_t hash)
{
    struct seen *s = data;
    cr_assert_lt(s->n_expired, 16);
    s->expired[s->n_expired++] = hash;
}

static struct seen calls_of(const char *id)
{
    struct seen s = {0};
    struct cv_catalog_call_visit v = {&s, seen_call, seen_expired};
    cr_assert_eq(cv_catalog_state_calls(cat, id, &v), 0);
    return s;
}

/* A save carrying call records (each answered with its own id as the response) at time now. */
static int save_calls(const char *id, uint64_t e, uint64_t version, const char **ids, size_t n, uint32_t window,
                      uint64_t window_ms, uint64_t now, uint64_t at)
{
    Cverse__Catalog__CallRecord recs[8], *ptrs[8];
    cr_assert(n <= 8);
    for (size_t i = 0; i < n; i++) {
        cverse__catalog__call_record__init(&recs[i]);
        recs[i].id = (char *)ids[i];
        recs[i].response = (ProtobufCBinaryData){strlen(ids[i]), (uint8_t *)ids[i]};
        recs[i].at_ms = at;
        ptrs[i] = &recs[i];
    }
    Cverse__Catalog__ObjectSave s = item(id, e, version, "st");
    s.calls = ptrs;
    s.n_calls = n;
    s.call_window = window;
    s.call_window_ms = window_ms;
    s.now_ms = now;
    return save_items("n1", &s, 1);
}

Test(state, call_ids_are_kept_in_a_window_of_count_and_age)
{
    reg("n1");
    uint64_t e = assign(4, "n1");
    const char *id = on_shard(4, "c");
    object_op("Counter", id, true);
    const char *ab[] = {"a", "b"}, *cd[] = {"c", "d"}, *none[] = {NULL};
    cr_assert_eq(save_calls(id, e, 1, ab, 2, 3, 0, 1000, 1000), 0);
    struct seen s = calls_of(id);
    cr_assert_eq(s.n, 2);
    cr_assert_str_eq(s.ids[0], "a");
    cr_assert_eq(s.n_expired, 0);
    cr_assert_eq(save_calls(id, e, 2, cd, 2, 3, 0, 1000, 1000), 0);
    s = calls_of(id);
    cr_assert_eq(s.n, 3, "trimmed to the count");
    cr_assert_str_eq(s.ids[0], "b");
    cr_assert_str_eq(s.ids[2], "d");
    cr_assert_eq(s.n_expired, 1);
    cr_assert_eq(s.expired[0], cv_fnv1a64("a", 1), "the trimmed id's hash stays");
    cr_assert_eq(save_calls(id, e, 2, cd, 2, 3, 0, 1000, 1000), 0, "a duplicate proposal");
    cr_assert_eq(calls_of(id).n, 3, "writes nothing twice");
    /* age: every record is from t=1000; at t=5000 with a 1 s window they all go */
    cr_assert_eq(save_calls(id, e, 3, none, 0, 3, 1000, 5000, 0), 0);
    s = calls_of(id);
    cr_assert_eq(s.n, 0);
    cr_assert_eq(s.n_expired, 4);
    /* the hashes are capped at 4x the window */
    cr_assert_eq(save_calls(id, e, 4, cd, 2, 1, 1000, 5000, 5000), 0);
    s = calls_of(id);
    cr_assert_eq(s.n, 1);
    cr_assert_str_eq(s.ids[0], "d");
    cr_assert_eq(s.n_expired, 4, "5 hashes, capped at 4x the window (1)");
    cr_assert_eq(s.expired[3], cv_fnv1a64("c", 1), "the newest kept, the oldest dropped");
    cr_assert_eq(object_op("Counter", id, false), 0);
    s = calls_of(id);
    cr_assert_eq(s.n + s.n_expired, 0, "dropped with the object");
}

/* ---- durable reminders (db "reminders") ---- */

struct rems {
    char names[8][32];
    uint64_t due[8];
    int n;
};

static int rem_cb(void *data, const char *type, const char *id, const char *name, uint64_t due_ms, uint64_t period_ms)
{
    struct rems *r = data;
    cr_assert_str_eq(type, "Counter");
    cr_assert_lt(r->n, 8);
    snprintf(r->names[r->n], sizeof r->names[0], "%s", name);
    r->due[r->n++] = due_ms;
    return 0;
}

static int save_reminders(const char *id, uint64_t e, uint64_t version, const char **names, size_t n, bool set)
{
    Cverse__Catalog__Reminder rs[4], *ptrs[4];
    for (size_t i = 0; i < n; i++) {
        cverse__catalog__reminder__init(&rs[i]);
        rs[i].name = (char *)names[i];
        rs[i].due_ms = 1000 * (i + 1);
        rs[i].period_ms = 500;
        ptrs[i] = &rs[i];
    }
    Cverse__Catalog__ObjectSave s = item(id, e, version, "st");
    s.reminders = ptrs;
    s.n_reminders = n;
    s.reminders_set = set;
    return save_items("n1", &s, 1);
}

Test(state, reminders_are_replaced_by_a_save_that_sets_them_and_dropped_with_the_object)
{
    reg("n1");
    uint64_t e = assign(5, "n1");
    const char *id = on_shard(5, "c"), *other = on_shard(5, "d");
    object_op("Counter", id, true);
    object_op("Counter", other, true);
    const char *ab[] = {"a", "b"}, *c1[] = {"c"};
    cr_assert_eq(save_reminders(id, e, 1, ab, 2, true), 0);
    cr_assert_eq(save_reminders(other, e, 1, c1, 1, true), 0);
    struct rems r = {0};
    cr_assert_eq(cv_catalog_reminders_get(cat, id, rem_cb, &r), 0);
    cr_assert_eq(r.n, 2);
    cr_assert_str_eq(r.names[1], "b");
    cr_assert_eq(r.due[1], 2000);
    r = (struct rems){0};
    cr_assert_eq(cv_catalog_reminder_foreach(cat, rem_cb, &r), 0);
    cr_assert_eq(r.n, 3, "every object's");
    cr_assert_eq(save_reminders(id, e, 2, NULL, 0, false), 0, "a save that does not set them");
    r = (struct rems){0};
    cr_assert_eq(cv_catalog_reminders_get(cat, id, rem_cb, &r), 0);
    cr_assert_eq(r.n, 2, "keeps them");
    cr_assert_eq(save_reminders(id, e, 1, c1, 1, true), CV_ECONFLICT, "a refused save writes no reminders");
    cr_assert_eq(save_reminders(id, e, 3, NULL, 0, true), 0, "set to none");
    r = (struct rems){0};
    cr_assert_eq(cv_catalog_reminders_get(cat, id, rem_cb, &r), 0);
    cr_assert_eq(r.n, 0);
    cr_assert_eq(object_op("Counter", other, false), 0);
    r = (struct rems){0};
    cr_assert_eq(cv_catalog_reminder_foreach(cat, rem_cb, &r), 0);
    cr_assert_eq(r.n, 0, "dropped with the object");
}

Test(state, a_first_calls_create_is_fenced_on_the_shard_owner)
{
    reg("n1");
    reg("n2");
    uint64_t e = assign(6, "n1");
    const char *id = on_shard(6, "first");
    Cverse__Catalog__CmdCreateObject co = CVERSE__CATALOG__CMD_CREATE_OBJECT__INIT;
    co.type = "Counter";
    co.id = (char *)id;
    co.owner = "n2";
    co.epoch = e;
    Cverse__Catalog__Command c = CVERSE__CATALOG__COMMAND__INIT;
    c.cmd_case = CVERSE__CATALOG__COMMAND__CMD_CREATE_OBJECT;
    c.create_object = &co;
    cr_assert_eq(apply1(&c), CV_ECONFLICT, "not the owner");
    co.owner = "n1";
    co.epoch = e + 1;
    cr_assert_eq(apply1(&c), CV_ECONFLICT, "not at that epoch");
    co.epoch = e;
    cr_assert_eq(apply1(&c), 0, "the owner at its epoch");
    char type[32];
    cr_assert_eq(cv_catalog_object_get(cat, id, type, sizeof type, NULL), 0);
    co.owner = "n2";
    cr_assert_eq(apply1(&c), 0, "an existing object: idempotent whoever asks");
}
