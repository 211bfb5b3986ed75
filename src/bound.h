/* Sockets bound to an address, in one registry for the TCP and unix listeners (listener.c)
 * and the UDP sockets (udp_sock.c): each address is shared by every config that names it
 * (a reload takes it over, never closes and reopens it), with this process's sockets of it
 * by worker index (SO_REUSEPORT copies, a UDP group), passed to an upgraded binary in one
 * environment variable (NETPROXY_FDS) or by systemd, and taken over by address. */
#ifndef NP_BOUND_H
#define NP_BOUND_H
#include "addr.h"

#include <sys/socket.h>

enum np_bound_kind { NP_BOUND_TCP = 't', NP_BOUND_UDP = 'u' };

struct np_bound;

/* What the module that serves an entry (its owner) gives it when it takes it. */
struct np_bound_ops {
    /* the name of the proxy served, for a hand-over (a UDP port 0 is taken over by it) */
    const char *(*name)(const struct np_bound *b);
    /* the last reference went: the owner's part goes (said when say), before the sockets close */
    void (*release)(struct np_bound *b, int say);
};

struct np_bound {
    int kind;                   /* enum np_bound_kind */
    char addr[NP_ADDRSTRLEN];   /* as bound ("127.0.0.1:8080", "[::1]:53", a unix path) */
    int refs;                   /* the configs using it, and the hold of a hand-over */
    int passed;                 /* handed over: held until np_bound_passed_done */
    char *passed_by;            /* the proxy that served it before an upgrade, until one takes it */
    int *fds;                   /* this process's sockets of the address by worker index (-1: a hole) */
    int n;                      /* 0 once closed */
    const struct np_bound_ops *ops;     /* NULL until an owner takes it */
    void *owner;
    struct np_bound *next;
};

/* The open entry of that kind on the address sa names, or NULL. A port 0 is a new address,
 * except the one a binary upgrade passed for the same proxy (name, may be NULL) on the same
 * host, which it takes over (once). */
struct np_bound *np_bound_find(int kind, const struct sockaddr *sa, socklen_t len, const char *name);

/* A new entry (refs 1, no sockets yet); NULL when out of memory. */
struct np_bound *np_bound_new(int kind);

/* Names b after the address its first socket is bound to. */
void np_bound_named(struct np_bound *b);

/* The owner takes b: ops are told of it from now on. */
void np_bound_own(struct np_bound *b, const struct np_bound_ops *ops, void *owner);

/* One more user; and one fewer: at the last one the owner's release (said when say), the
 * sockets closed and b freed. Returns the users left. */
void np_bound_hold(struct np_bound *b);
int np_bound_drop(struct np_bound *b, int say);

/* fd becomes socket number index (a socket there before is closed). 0, or -1 (out of memory). */
int np_bound_put_fd(struct np_bound *b, int index, int fd);

/* Closes the sockets from number n on. */
void np_bound_truncate(struct np_bound *b, int n);

/* A serving process keeps socket number index (modulo their count) and closes its copies of
 * the others (the master holds them, so a group does not change). Returns it, or -1. */
int np_bound_keep(struct np_bound *b, int index);

/* Closes this process's sockets of b (it stays, closed, until its last user drops it). */
void np_bound_close(struct np_bound *b);

/* The entries of that kind, one after the other: the first with prev NULL; NULL at the end. */
struct np_bound *np_bound_next(int kind, struct np_bound *prev);

/* Passed sockets: a binary upgrade's (NETPROXY_FDS; from an older build of this version,
 * NETPROXY_LISTEN_FDS and NETPROXY_UDP_FDS) or else systemd's (LISTEN_FDS, fds 3..., TCP or
 * unix listeners) become entries held until np_bound_passed_done, for the setup to take over
 * by address. Done once (later calls return 0); returns how many sockets. */
int np_bound_adopt(void);

/* Drops the hold of the passed entries of that kind; those no proxy took are closed with a
 * warning. */
void np_bound_passed_done(int kind);

/* A binary upgrade: the text of NETPROXY_FDS, "KIND:FD:INDEX:NAME,..." (KIND t or u, NAME the
 * proxy's name in hex), malloc'd, or NULL; np_bound_fds writes every socket's fd (at most
 * max), for their close-on-exec, and returns how many there are (max 0: just count). */
char *np_bound_handover(void);
int np_bound_fds(int *fds, int max);

/* How many sockets of that kind this process holds. */
int np_bound_count(int kind);

#endif
