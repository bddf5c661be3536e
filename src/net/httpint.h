/* Internal to the HTTP server (net/http.c: connections, responses; net/httpparse.c: the parser callbacks
 * that assemble a request): the structures both share. Nothing outside net/http*.c includes it. */
#ifndef CV_NET_HTTPINT_H
#define CV_NET_HTTPINT_H

#include <stddef.h>
#include <stdint.h>

#include <http_parser.h>
#include <uv.h>

#include "net/http.h"

#define HTTP__READ_CHUNK (64u * 1024u)

struct http__buf {
    char *p;
    size_t len, cap;
};

struct cv_http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_timer_t sweep;             /* idle and linger timeouts */
    struct cv_http_opts opts;     /* cors_origin copied */
    cv_http_handler handler;
    void *data;
    struct http__conn *conns;     /* connections whose close callback has not run */
    struct cv_ratelimit *rate;    /* per-client buckets, NULL without a rate */
    struct cv_http_server_stats stats;
    int port;
    int closing;
    unsigned handles;             /* listener + sweep until their close callbacks ran */
    cv_http_close_cb close_cb;
};

/* The request headers handed to the handler (struct cv_http_request); the rest are skipped. */
enum { HTTP__CONTENT_TYPE, HTTP__ORIGIN, HTTP__DEADLINE, HTTP__CALL_ID, HTTP__AUTH, HTTP__LAST_ID,
       HTTP__IF_NONE_MATCH, HTTP__CLIENT_ID, HTTP__N_HDRS };

struct http__conn {
    uv_tcp_t tcp;
    uv_shutdown_t sreq;
    struct cv_http_server *srv;
    http_parser parser;
    struct http__buf in;          /* bytes in.p[in_off, in.len) are read but not parsed yet */
    size_t in_off;
    struct cv_tls *tls;           /* NULL: plain */
    struct http__buf raw;         /* TLS: ciphertext just read */
    char peer[48];                /* the peer's IP address, "" if unknown */
    /* The request being parsed. */
    struct http__buf url, field, value, body;
    char *hdr[HTTP__N_HDRS];      /* the headers we read (NULL = absent), moved to the exchange */
    int in_value, expect_continue;
    size_t header_bytes;
    enum cv_status err;           /* our refusal when a callback stops the parser (when err_msg is set); */
    const char *err_msg;          /* the table gives its HTTP status */
    struct cv_http_exchange *ready;   /* parsed, not handed out yet (parser paused) */
    struct cv_http_exchange *pending; /* with the handler, awaiting cv_http_respond */
    struct cv_http_stream *stream;    /* a streaming response in progress */
    unsigned writes;              /* uv_write requests in flight */
    int in_process, reading, closing;
    int close_after_write;        /* last response queued: close once written */
    int peer_eof, lingering, tls_done;
    size_t drained;
    uint64_t last_activity;       /* uv_now() of the last read, or of the linger start */
    uint64_t req_start;           /* uv_now() of a request's first byte (or of a TLS accept); 0: none */
    struct http__conn *prev, *next;
};

struct cv_http_exchange {
    struct http__conn *conn;      /* NULL once the connection is gone */
    struct cv_http_request req;
    char *path, *raw_path, *query, *body, *hdr[HTTP__N_HDRS];
    int keep_alive, http10, head, options;
    char peer[48];
};

struct cv_http_stream {
    struct http__conn *conn; /* NULL once ended */
    cv_http_stream_close_cb on_close;
    void *data;
};

/* ---- http.c ---- */
/* Buffers: room for n more bytes and a NUL; appends (NUL-terminated); 0 or CV_ENOMEM. */
int buf__reserve(struct http__buf *b, size_t n);
int buf__append(struct http__buf *b, const char *data, size_t n);
int buf__appendf(struct http__buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf__free(struct http__buf *b);
/* Queues b's bytes (taking the buffer) for the peer (through TLS if on); closes c on failure. */
void conn__write(struct http__conn *c, struct http__buf *b);
/* Answers with the refusal st / msg and closes the connection after. */
void conn__refuse(struct http__conn *c, enum cv_status st, const char *msg);
void conn__close(struct http__conn *c);

/* ---- httpparse.c ---- */
extern const http_parser_settings http__settings; /* the parser's data is the connection */
/* Answers the request the parser stopped on (syntax, sizes) and closes the connection after. */
void conn__refuse_parse_error(struct http__conn *c);
void exchange__free(struct cv_http_exchange *x);
void hdrs__free(char **hdr);

#endif
