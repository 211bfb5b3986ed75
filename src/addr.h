/* Socket addresses as text, the way logs and Lua see them. */
#ifndef NP_ADDR_H
#define NP_ADDR_H
#include <stddef.h>
#include <sys/socket.h>

#define NP_ADDRSTRLEN 120  /* "[ipv6%scope]:port", or "unix:" and a socket path */

/* "1.2.3.4:5", "[::1]:5", "unix:/run/x.sock", "unix:@name" (abstract) or "unix". */
void np_addr_format(const struct sockaddr *sa, socklen_t len, char *out, size_t outlen);

#endif
