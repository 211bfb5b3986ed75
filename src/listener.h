/* Listening sockets: bound once, shared by every config that listens on the same address
 * (a reload takes them over, never closes and reopens them), per-worker SO_REUSEPORT
 * copies, the ones systemd passes, and the accept loop. */
#ifndef NP_LISTENER_H
#define NP_LISTENER_H
#include "addr.h"

#include <stddef.h>
#include <sys/socket.h>
#include <event2/event_struct.h>

struct np_listener;

/* A new client of l: fd is nonblocking and close-on-exec; the callee owns it. */
typedef void np_accept_fn(void *arg, struct np_listener *l, int fd, const struct sockaddr *sa,
                          socklen_t len);

struct np_listener {
    int fd;                     /* -1 once closed */
    char addr[NP_ADDRSTRLEN];   /* the bound address */
    int refs;                   /* configs (and systemd's hand-over) using it */
    int adopted;                /* passed by systemd */
    char *unlink_path;          /* a unix socket file this process made: removed with it */
    int owner_pid;              /* the process that made it (workers share the socket) */
    int *per_worker;            /* reuseport: a socket per worker index ([0] is fd) */
    int nper_worker;
    struct event ev;
    int armed;                  /* ev is added */
    np_accept_fn *accept;       /* who serves its clients, and with what */
    void *arg;
    struct np_listener *next;
};

struct np_listen_opts {
    int backlog;
    int mode;                   /* a unix socket file's permissions, or -1 */
    int reuseport;              /* a SO_REUSEPORT socket per worker */
    int nworkers;               /* how many (with reuseport) */
};

/* The listener on address sa: an open one is shared (refs + 1, worker sockets adjusted),
 * else a new socket is bound. NULL with a message in err. */
struct np_listener *np_listener_get(const struct sockaddr *sa, socklen_t len,
                                    const struct np_listen_opts *o, char *err, size_t errlen);

/* One user fewer; the last one closes the sockets (logging it when say is set). */
void np_listener_put(struct np_listener *l, int say);

/* Who accepts from l from now on. */
void np_listener_serve(struct np_listener *l, np_accept_fn *fn, void *arg);

/* Passed sockets: systemd's (socket activation, fds 3...) or a binary upgrade's
 * (NETPROXY_LISTEN_FDS) join the open listeners, held until np_listener_adopted_done, so
 * that the setup takes them over by address. Returns how many. */
int np_listener_adopt_systemd(void);

/* Drops the passed sockets' hold; those no proxy took are closed with a warning. */
void np_listener_adopted_done(void);

/* Every listening socket of this process (per-worker copies included), for an upgrade;
 * returns how many were written to fds (at most max). */
int np_listeners_fds(int *fds, int max);

/* A serving process starts accepting. With reuseport, worker number index keeps the
 * sockets of its index and closes its copies of the others. */
void np_listeners_start(int index);

/* Out of file descriptors (err): accepting pauses for 100 ms, with a warning at most once
 * a second. */
void np_listeners_pause(int err);

/* Closes every listening socket of this process: no new connections. */
void np_listeners_close_all(void);

#endif
