/* Listening sockets (TCP and unix): each an entry of the registry of bound sockets
 * (bound.h: shared by every config that listens on the address, a reload takes them over,
 * per-worker SO_REUSEPORT copies, the ones systemd or an upgrade passes), and the accept
 * loop. */
#ifndef NP_LISTENER_H
#define NP_LISTENER_H
#include "addr.h"

#include <stddef.h>
#include <sys/socket.h>
#include <event2/event_struct.h>

struct np_listener;
struct np_bound;

/* A new client of l: fd is nonblocking and close-on-exec; the callee owns it. */
typedef void np_accept_fn(void *arg, struct np_listener *l, int fd, const struct sockaddr *sa,
                          socklen_t len);

struct np_listener {
    struct np_bound *b;         /* its address, users and sockets by worker index */
    const char *addr;           /* the bound address (b's) */
    int fd;                     /* the socket this process accepts on; -1 once closed */
    char *unlink_path;          /* a unix socket file this process made: removed with it */
    int owner_pid;              /* the process that made it (workers share the socket) */
    struct event ev;
    int armed;                  /* ev is added */
    np_accept_fn *accept;       /* who serves its clients, and with what */
    void *arg;
};

struct np_listen_opts {
    int backlog;
    int mode;                   /* a unix socket file's permissions, or -1 */
    int reuseport;              /* a SO_REUSEPORT socket per worker */
    int nworkers;               /* how many (with reuseport) */
    int defer_accept;           /* TCP_DEFER_ACCEPT seconds (a TCP socket), 0: off */
};

/* The listener on address sa: an open one is shared (refs + 1, worker sockets adjusted),
 * else a new socket is bound. NULL with a message in err. */
struct np_listener *np_listener_get(const struct sockaddr *sa, socklen_t len,
                                    const struct np_listen_opts *o, char *err, size_t errlen);

/* One user fewer; the last one closes the sockets (logging it when say is set). */
void np_listener_put(struct np_listener *l, int say);

/* l has one user (the config that just took it first). */
int np_listener_first_user(const struct np_listener *l);

/* Who accepts from l from now on. */
void np_listener_serve(struct np_listener *l, np_accept_fn *fn, void *arg);

/* Passed sockets: an upgrade's or systemd's (np_bound_adopt) are held, by address, until
 * np_listener_adopted_done, so that the setup takes them over. Returns how many (UDP ones
 * included). */
int np_listener_adopt_systemd(void);

/* Drops the passed listeners' hold; those no proxy took are closed with a warning. */
void np_listener_adopted_done(void);

/* A serving process starts accepting. With reuseport, worker number index keeps the
 * sockets of its index and closes its copies of the others. */
void np_listeners_start(int index);

/* Out of file descriptors (err): accepting pauses for 100 ms, with a warning at most once
 * a second. */
void np_listeners_pause(int err);

/* Closes every listening socket of this process: no new connections. */
void np_listeners_close_all(void);

#endif
