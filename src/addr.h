/* Socket addresses as text, the way logs and Lua see them. */
#ifndef NP_ADDR_H
#define NP_ADDR_H
#include <stddef.h>
#include <sys/socket.h>

#define NP_ADDRSTRLEN 120  /* "[ipv6%scope]:port", or "unix:" and a socket path */

/* "1.2.3.4:5", "[::1]:5", "unix:/run/x.sock", "unix:@name" (abstract) or "unix". */
void np_addr_format(const struct sockaddr *sa, socklen_t len, char *out, size_t outlen);

/* The address an IPv4 or IPv6 literal and a port name, into ss: its length, or 0 for
 * anything else (a name, for the resolver). */
socklen_t np_addr_ip(const char *host, int port, struct sockaddr_storage *ss);

/* A unix socket's address ("@name": Linux's abstract namespace) into ss: its length, or 0
 * when the path is empty or too long. */
socklen_t np_addr_unix(const char *path, struct sockaddr_storage *ss);

#endif
