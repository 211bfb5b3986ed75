/* Socket addresses as text, the way logs and Lua see them. */
#include "addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
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

void np_addr_format(const struct sockaddr *sa, socklen_t len, char *out, size_t outlen)
{
    char ip[INET6_ADDRSTRLEN] = "?";

    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        snprintf(out, outlen, "%s:%d", ip, ntohs(in->sin_port));
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
