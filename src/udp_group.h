/* The sockets of one listening UDP address: one socket for a single process, or with
 * workers a SO_REUSEPORT group of one socket per worker index, which the kernel steers
 * each datagram to by a hash of its client's address and port (a classic BPF program on
 * the group), so that every datagram of a flow reaches the same worker. */
#ifndef NP_UDP_GROUP_H
#define NP_UDP_GROUP_H

#include <sys/socket.h>

struct np_udp_group {
    int *fds;                   /* by worker index; -1: a hole (a hand-over still filling it) */
    int n;
    int steering;               /* the count the program steers over; 0: no program */
};

/* Opens n sockets (n > 1: a group; n == 1: one plain socket) on sa; a port 0 becomes one
 * port for all of them. A group is opened only after a probe without SO_REUSEPORT has
 * found the address free, so that it never joins another process's group. 0, or -1 with
 * errno (nothing left open). */
int np_udp_group_open(struct np_udp_group *g, const struct sockaddr *sa, socklen_t len, int n);

/* Grows g to n sockets if it has fewer (it never shrinks: the kernel renumbers a group
 * when a socket leaves it, and an old worker may still hold the socket), then steers every
 * datagram to one of the first n. 0, or -1 with errno (the sockets opened stay). */
int np_udp_group_resize(struct np_udp_group *g, int n);

/* Adds fd (passed by an upgrade) as socket number index. 0, or -1 (out of memory). */
int np_udp_group_put(struct np_udp_group *g, int index, int fd);

/* A serving process keeps socket number index and closes its copies of the others (the
 * master holds them, so the group does not change). Returns that socket. */
int np_udp_group_keep(struct np_udp_group *g, int index);

/* Closes this process's copies of every socket. */
void np_udp_group_close(struct np_udp_group *g);

#endif
