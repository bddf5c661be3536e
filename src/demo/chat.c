/* The demo's ChatRoom (issue 15, docs/push.md), in the service form: Join adds the caller's client id
 * (cv_object_caller_client) to the room, Post numbers a message, keeps it and pushes a ChatMessage to
 * every member, History answers the last messages.
 *
 * Happy path: a client opens the gate's event stream, calls Join with X-Client-ID, then Post; every
 * member's stream gets the ChatMessage. The state (members, the last CHAT_KEEP messages, the sequence)
 * is persisted on_write, so a room survives moves and restarts; a member whose client is gone costs a
 * push the gate drops (counted there).
 *
 * Failure modes: Join without a client id (a call made without X-Client-ID) CV_EINVAL; out of memory
 * CV_ENOMEM; a push that fails is logged and the post still succeeds (best effort). */
#include <stdlib.h>
#include <string.h>

#include "chat.pb-c.h"
#include "cverse/error.h"
#include "demo/demo.h"

#define CHAT_KEEP 100     /* messages kept for History */
#define CHAT_MEMBERS 1000 /* members kept; the oldest leave first */

static void chat_join(Chat__ChatRoom_Service *svc, const Chat__JoinRequest *in, Chat__JoinResponse_Closure done,
                      void *call)
{
    Chat__ChatRoomState *s = cv_call_state(call);
    const char *me = cv_object_caller_client(cv_call_object(call));
    if (!me || !*me) {
        cv_call_fail(call, CV_EINVAL, "Join needs the caller's client id (header X-Client-ID, docs/push.md)");
        return;
    }
    size_t i = 0;
    while (i < s->n_members && strcmp(s->members[i], me) != 0) i++;
    if (i == s->n_members) {
        if (s->n_members == CHAT_MEMBERS) { /* the oldest member leaves */
            free(s->members[0]);
            memmove(s->members, s->members + 1, --s->n_members * sizeof *s->members);
        }
        char **m = realloc(s->members, (s->n_members + 1) * sizeof *m); /* malloc'ed, as the SDK asks */
        char *copy = strdup(me);
        if (m) s->members = m;
        if (!m || !copy) {
            free(copy);
            cv_call_fail(call, CV_ENOMEM, NULL);
            return;
        }
        s->members[s->n_members++] = copy;
    }
    Chat__JoinResponse resp = CHAT__JOIN_RESPONSE__INIT;
    resp.members = (int32_t)s->n_members;
    done(&resp, call);
}

/* A malloc'ed copy of (user, text, seq); NULL out of memory. */
static Chat__ChatMessage *chat_message(const char *user, const char *text, int64_t seq)
{
    Chat__ChatMessage *m = malloc(sizeof *m);
    if (!m) return NULL;
    chat__chat_message__init(m);
    m->user = strdup(user);
    m->text = strdup(text);
    m->seq = seq;
    if (!m->user || !m->text) {
        protobuf_c_message_free_unpacked(&m->base, NULL);
        return NULL;
    }
    return m;
}

/* Keeps m (taken) as the newest of the last CHAT_KEEP messages. */
static int chat_keep(Chat__ChatRoomState *s, Chat__ChatMessage *m)
{
    if (s->n_messages == CHAT_KEEP) {
        protobuf_c_message_free_unpacked(&s->messages[0]->base, NULL);
        memmove(s->messages, s->messages + 1, --s->n_messages * sizeof *s->messages);
    }
    Chat__ChatMessage **a = realloc(s->messages, (s->n_messages + 1) * sizeof *a);
    if (!a) {
        protobuf_c_message_free_unpacked(&m->base, NULL);
        return CV_ENOMEM;
    }
    s->messages = a;
    s->messages[s->n_messages++] = m;
    return 0;
}

static void chat_post(Chat__ChatRoom_Service *svc, const Chat__PostRequest *in, Chat__PostResponse_Closure done,
                      void *call)
{
    Chat__ChatRoomState *s = cv_call_state(call);
    cv_object *o = cv_call_object(call);
    Chat__ChatMessage *m = chat_message(in->user, in->text, s->seq + 1);
    if (!m || chat_keep(s, m)) {
        cv_call_fail(call, CV_ENOMEM, NULL);
        return;
    }
    s->seq++;
    for (size_t i = 0; i < s->n_members; i++) {
        int rv = cv_object_push(o, s->members[i], &m->base);
        if (rv) cv_object_log(o, "ChatRoom %s: push to %s: %s", cv_object_id(o), s->members[i], cv_strerror(rv));
    }
    Chat__PostResponse resp = CHAT__POST_RESPONSE__INIT;
    resp.seq = s->seq;
    done(&resp, call);
}

static void chat_history(Chat__ChatRoom_Service *svc, const Chat__HistoryRequest *in,
                         Chat__HistoryResponse_Closure done, void *call)
{
    Chat__ChatRoomState *s = cv_call_state(call);
    size_t n = in->last > 0 && (size_t)in->last < s->n_messages ? (size_t)in->last : s->n_messages;
    Chat__HistoryResponse resp = CHAT__HISTORY_RESPONSE__INIT;
    resp.messages = s->messages + (s->n_messages - n);
    resp.n_messages = n;
    done(&resp, call);
}

const struct cv_object_type cv_demo_chat_type = {
    .name = "ChatRoom",
    .service = CV_SERVICE(Chat__ChatRoom_Service, CHAT__CHAT_ROOM__INIT(chat_)),
    .writes = CV_WRITES("Join", "Post"),
    .state_message = &chat__chat_room_state__descriptor,
    .persist = CV_PERSIST_ON_WRITE,
};
