/* Socket addresses as text, the way logs and Lua see them. */
#include "addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
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
