/* The sockets of one listening UDP address: one socket for a single process, or with
 * workers a SO_REUSEPORT group of one socket per worker index, which the kernel steers
 * each datagram to by a hash of its client's address and port (a classic BPF program on
 * the group), so that every datagram of a flow reaches the same worker. */
#ifndef NP_UDP_GROUP_H
#define NP_UDP_GROUP_H

#include <sys/socket.h>

struct np_bound;

/* Opens n sockets (n > 1: a group; n == 1: one plain socket) on sa as b's sockets (b has
 * none yet), *steering as np_udp_group_resize sets it; a port 0 becomes one port for all of
 * them. A group is opened only after a probe without SO_REUSEPORT has found the address
 * free, so that it never joins another process's group. 0, or -1 with errno (b's sockets
 * closed). */
int np_udp_group_open(struct np_bound *b, int *steering, const struct sockaddr *sa, socklen_t len, int n);

/* Grows b's group to n sockets if it has fewer (it never shrinks: the kernel renumbers a
 * group when a socket leaves it, and an old worker may still hold the socket), then steers
 * every datagram to one of the first n (*steering: the count the program steers over now;
 * 0: no program). 0, or -1 with errno (the sockets opened stay). */
int np_udp_group_resize(struct np_bound *b, int *steering, int n);

#endif
