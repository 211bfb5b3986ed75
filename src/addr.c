/* Socket addresses as text, the way logs and Lua see them. */
#include "addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

static void format_unix(const struct sockaddr_un *un, socklen_t len, char *out, size_t outlen)
{
    size_t path_len = len > offsetof(struct sockaddr_un, sun_path)
                          ? len - offsetof(struct sockaddr_un, sun_path) : 0;

    if (path_len == 0)
        snprintf(out, outlen, "unix");
    else if (un->sun_path[0] == '\0')      /* abstract: not NUL-terminated */
        snprintf(out, outlen, "unix:@%.*s", (int)(path_len - 1), un->sun_path + 1);
    else
        snprintf(out, outlen, "unix:%.*s", (int)path_len, un->sun_path);
}

/* n in decimal at p; returns the end. */
static char *decimal(char *p, unsigned n)
{
    char digits[10];
    int i = 0;

    do digits[i++] = (char)('0' + n % 10); while ((n /= 10) > 0);
    while (i > 0) *p++ = digits[--i];
    return p;
}

/* "a.b.c.d:port", written by hand: every accepted client is named so, and inet_ntop and
 * snprintf cost about 2,800 instructions of the ~13,000 a plain connection takes. */
static void format_inet(const struct sockaddr_in *in, char *out, size_t outlen)
{
    const unsigned char *b = (const unsigned char *)&in->sin_addr;
    char text[sizeof "255.255.255.255:65535"], *p = text;
    size_t n;

    for (int i = 0; i < 4; i++) {
        p = decimal(p, b[i]);
        *p++ = i < 3 ? '.' : ':';
    }
    p = decimal(p, ntohs(in->sin_port));
    if (outlen == 0) return;
    n = (size_t)(p - text) < outlen ? (size_t)(p - text) : outlen - 1;   /* cut as snprintf would */
    memcpy(out, text, n);
    out[n] = '\0';
}

socklen_t np_addr_ip(const char *host, int port, struct sockaddr_storage *ss)
{
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

    memset(ss, 0, sizeof *ss);
    if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        return sizeof *in;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        return sizeof *in6;
    }
    return 0;
}

socklen_t np_addr_unix(const char *path, struct sockaddr_storage *ss)
{
    struct sockaddr_un *un = (struct sockaddr_un *)ss;
    size_t n = strlen(path);

    if (n == 0 || n >= sizeof un->sun_path) return 0;
    memset(ss, 0, sizeof *ss);
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, path, n);
    if (path[0] == '@') un->sun_path[0] = '\0';   /* abstract: no file */
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
}

void np_addr_format(const struct sockaddr *sa, socklen_t len, char *out, size_t outlen)
{
    char ip[INET6_ADDRSTRLEN] = "?";

    if (sa->sa_family == AF_INET) {
        format_inet((const struct sockaddr_in *)sa, out, outlen);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        snprintf(out, outlen, "[%s]:%d", ip, ntohs(in6->sin6_port));
    } else if (sa->sa_family == AF_UNIX) {
        format_unix((const struct sockaddr_un *)sa, len, out, outlen);
    } else {
        snprintf(out, outlen, "?");
    }
}
