/* A listening UDP address's sockets: one, or a SO_REUSEPORT group of one per worker
 * index with a classic BPF program that sends each datagram to socket
 * hash(client address, client port) % workers. The master opens the group and holds it for
 * the address's whole life, so the group never changes while workers die, are replaced or
 * are renewed by a reload: a client always reaches the same socket, hence the same worker
 * number. */
#include "udp_group.h"
#include "bound.h"

#include <errno.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RCVBUF (4 << 20)        /* asked of the listening sockets (the kernel caps it) */
#define MAX_PROGRAM 24

static int udp_socket(const struct sockaddr *sa, socklen_t len, int reuseport)
{
    int one = 1, size = RCVBUF, fd = socket(sa->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0) return -1;
    /* no SO_REUSEADDR: on UDP it would let another process bind the same port and share
     * its datagrams */
    if (reuseport) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    if (sa->sa_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, sa, len) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* The program: A = the client's address (IPv6: its four words xored) ^ its port, a
 * multiplicative hash, % n. It runs with the data at the UDP payload, so the headers are
 * read at SKF_NET_OFF (the IP header); an IPv4 header's length is read from it. A result
 * past the group's size cannot happen (n <= the group's size). */
static int program(int family, unsigned n, struct sock_filter *f)
{
    int i = 0;

    if (family == AF_INET) {
        f[i++] = (struct sock_filter)BPF_STMT(BPF_LDX | BPF_B | BPF_MSH, (unsigned)SKF_NET_OFF);
        f[i++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_H | BPF_IND, (unsigned)SKF_NET_OFF);   /* source port */
        f[i++] = (struct sock_filter)BPF_STMT(BPF_MISC | BPF_TAX, 0);
        f[i++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (unsigned)SKF_NET_OFF + 12);
    } else {
        f[i++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (unsigned)SKF_NET_OFF + 20);
        f[i++] = (struct sock_filter)BPF_STMT(BPF_MISC | BPF_TAX, 0);
        for (unsigned off = 16; off >= 8; off -= 4) {
            f[i++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (unsigned)SKF_NET_OFF + off);
            f[i++] = (struct sock_filter)BPF_STMT(BPF_ALU | BPF_XOR | BPF_X, 0);
            f[i++] = (struct sock_filter)BPF_STMT(BPF_MISC | BPF_TAX, 0);
        }
        f[i++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_H | BPF_ABS, (unsigned)SKF_NET_OFF + 40);
    }
    f[i++] = (struct sock_filter)BPF_STMT(BPF_ALU | BPF_XOR | BPF_X, 0);
    f[i++] = (struct sock_filter)BPF_STMT(BPF_ALU | BPF_MUL | BPF_K, 0x9E3779B1u);
    f[i++] = (struct sock_filter)BPF_STMT(BPF_ALU | BPF_RSH | BPF_K, 16);
    f[i++] = (struct sock_filter)BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, n);
    f[i++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_A, 0);
    return i;
}

static int steer(struct np_bound *b, int *steering, int n)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    struct sock_filter f[MAX_PROGRAM];
    struct sock_fprog prog = { .filter = f };

    if (b->n < 2 || *steering == n) return 0;
    if (getsockname(b->fds[0], (struct sockaddr *)&ss, &len) < 0) return -1;
    prog.len = (unsigned short)program(ss.ss_family, (unsigned)n, f);
    if (setsockopt(b->fds[0], SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof prog) < 0) return -1;
    *steering = n;
    return 0;
}

int np_udp_group_resize(struct np_bound *b, int *steering, int n)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int fd;

    if (n > b->n) {
        if (getsockname(b->fds[0], (struct sockaddr *)&ss, &len) < 0) return -1;
        while (b->n < n) {
            if ((fd = udp_socket((struct sockaddr *)&ss, len, 1)) < 0) return -1;
            if (np_bound_put_fd(b, b->n, fd) < 0) {
                close(fd);
                errno = ENOMEM;
                return -1;
            }
        }
    }
    return steer(b, steering, n);
}

/* Binds sa's group socket number 0 (SO_REUSEPORT) into b. 0, or -1 with errno. */
static int first_of_group(struct np_bound *b, const struct sockaddr *sa, socklen_t len)
{
    int fd = udp_socket(sa, len, 1);

    if (fd < 0) return -1;
    if (np_bound_put_fd(b, 0, fd) == 0) return 0;
    close(fd);
    errno = ENOMEM;
    return -1;
}

int np_udp_group_open(struct np_bound *b, int *steering, const struct sockaddr *sa, socklen_t len, int n)
{
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    int probe = udp_socket(sa, len, 0), e;

    *steering = 0;
    if (probe < 0) return -1;
    if (n <= 1) {                       /* a single process: the probe is the socket */
        if (np_bound_put_fd(b, 0, probe) == 0) return 0;
        close(probe);
        errno = ENOMEM;
        return -1;
    }
    /* the probe found the address free (and chose the port of a port 0): the group binds it */
    e = getsockname(probe, (struct sockaddr *)&bound, &blen);
    close(probe);
    errno = 0;
    if (e < 0 || first_of_group(b, (struct sockaddr *)&bound, blen) < 0 || np_udp_group_resize(b, steering, n) < 0) {
        e = errno ? errno : EINVAL;
        np_bound_close(b);
        errno = e;
        return -1;
    }
    return 0;
}
