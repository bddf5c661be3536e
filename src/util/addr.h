/* host:port address strings: splitting, and turning listen/advertise addresses into connectable ones. */
#ifndef CV_UTIL_ADDR_H
#define CV_UTIL_ADDR_H

#include <stddef.h>
#include <stdint.h>

/* Splits "host:port" (IPv6 as "[::1]:port"). host gets at most hostlen-1 bytes. Port must be 1..65535.
 * Returns 0, CV_EINVAL on bad syntax, CV_ERANGE on a bad port. */
int cv_addr_split(const char *addr, char *host, size_t hostlen, uint16_t *port);

/* The address peers should dial for a listen address: "0.0.0.0"/"" -> "127.0.0.1", "::" -> "::1",
 * "localhost" -> "127.0.0.1" (raft's transport wants numeric addresses). Writes "host:port" to out. */
int cv_addr_connectable(const char *addr, char *out, size_t outlen);

/* Resolves "host:port" (numeric or "localhost") into a sockaddr_storage for libuv.
 * Returns 0 or CV_EINVAL. */
struct sockaddr_storage;
int cv_addr_resolve(const char *addr, struct sockaddr_storage *ss);

/* As cv_addr_resolve, but port 0 is allowed (listen on an ephemeral port). */
int cv_addr_resolve_listen(const char *addr, struct sockaddr_storage *ss);

#endif
