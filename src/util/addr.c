/* host:port parsing and mapping of wildcard/"localhost" hosts to numeric loopback addresses. */
#include "util/addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cverse/error.h"

int cv_addr_split(const char *addr, char *host, size_t hostlen, uint16_t *port)
{
    if (!addr || !*addr) return CV_EINVAL;
    const char *colon = strrchr(addr, ':');
    if (!colon) return CV_EINVAL;
    const char *h = addr;
    size_t hl = (size_t)(colon - addr);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl >= hostlen) return CV_EINVAL;
    char *end;
    const char *p = colon + 1;
    if (*p < '0' || *p > '9') return CV_ERANGE;
    long v = strtol(p, &end, 10);
    if (*end != '\0' || v < 1 || v > 65535) return CV_ERANGE;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (uint16_t)v;
    return 0;
}

static const char *connectable_host(const char *host)
{
    if (!*host || !strcmp(host, "0.0.0.0") || !strcmp(host, "localhost")) return "127.0.0.1";
    if (!strcmp(host, "::")) return "::1";
    return host;
}

int cv_addr_connectable(const char *addr, char *out, size_t outlen)
{
    char host[256];
    uint16_t port;
    int rv = cv_addr_split(addr, host, sizeof host, &port);
    if (rv) return rv;
    const char *h = connectable_host(host);
    int n = strchr(h, ':') ? snprintf(out, outlen, "[%s]:%u", h, port)
                           : snprintf(out, outlen, "%s:%u", h, port);
    return (n < 0 || (size_t)n >= outlen) ? CV_EINVAL : 0;
}

int cv_addr_resolve(const char *addr, struct sockaddr_storage *ss)
{
    char host[256];
    uint16_t port;
    int rv = cv_addr_split(addr, host, sizeof host, &port);
    if (rv) return rv;
    const char *h = !strcmp(host, "localhost") ? "127.0.0.1" : (*host ? host : "0.0.0.0");
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, h, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        return 0;
    }
    if (inet_pton(AF_INET6, h, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        return 0;
    }
    return CV_EINVAL;
}

int cv_addr_resolve_listen(const char *addr, struct sockaddr_storage *ss)
{
    size_t n = strlen(addr);
    if (n < 2 || strcmp(addr + n - 2, ":0") != 0) return cv_addr_resolve(addr, ss);
    char tmp[300]; /* resolve "host:1", then set the port to 0: cv_addr_resolve refuses port 0 */
    if (n >= sizeof tmp - 1) return CV_EINVAL;
    memcpy(tmp, addr, n);
    tmp[n - 1] = '1';
    tmp[n] = '\0';
    int rv = cv_addr_resolve(tmp, ss);
    if (rv) return rv;
    if (ss->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)ss)->sin6_port = 0;
    else
        ((struct sockaddr_in *)ss)->sin_port = 0;
    return 0;
}
