/* One socket connected without blocking, within a deadline: the one routine that walks a
 * server's addresses and connects. The routed proxy (conn.c) and the cosocket connect
 * (sock_connect.c: core.connect) both go through it. The server is a list of addresses or
 * a name resolved without blocking, whose addresses are tried in turn. A leaf: resolve.c is
 * all it calls. */
#ifndef NP_DIAL_H
#define NP_DIAL_H
#include <event2/event_struct.h>
#include <event2/util.h>
#include <sys/socket.h>

/* fd: the connected socket (TCP_NODELAY set on TCP), the caller's now; or -1, err (the last
 * connect's errno, ETIMEDOUT at the deadline, 0 for a name that did not resolve) and why,
 * the words for the log line and for Lua ("refused", "timeout", "resolve: ..."). */
typedef void np_dial_done_fn(void *arg, int fd, int err, const char *why);

struct np_resolve;

/* tcp_keepalive = { idle, interval, count } (seconds, seconds, probes); on = 0: the kernel's
 * default (no SO_KEEPALIVE). */
struct np_keepalive {
    int on, idle, interval, count;
};

/* SO_KEEPALIVE and TCP_KEEPIDLE / KEEPINTVL / KEEPCNT on a TCP socket, when k->on (for the
 * accepted side: server.c; the dialled side is done here). Errors are ignored: a socket that
 * is no TCP one has no keepalive to set. */
void np_dial_keepalive(int fd, const struct np_keepalive *k);

/* How to connect: read by the start functions; source is kept by the caller until done. */
struct np_dial_opts {
    double timeout;                 /* seconds; 0: no limit */
    int dgram;                      /* a connected UDP socket (connect() answers at once) */
    int at_once;                    /* an outcome known inside the start function is returned
                                     * by it; else every outcome is told from the loop */
    const struct sockaddr *source;  /* the local address to connect from (its port 0: the
                                     * kernel's choice, at connect); NULL: the kernel's */
    socklen_t source_len;
    struct np_keepalive keepalive;  /* on the connected TCP socket (tcp_keepalive on `to`) */
};

enum np_dial_state { NP_DIAL_IDLE, NP_DIAL_RESOLVING, NP_DIAL_CONNECTING, NP_DIAL_FD_WAIT, NP_DIAL_TELLING };

struct np_dial {
    struct event ev;            /* the connecting socket, or a timer: the deadline, a retry */
    enum np_dial_state state;
    int fd;                     /* the socket being connected, -1 for none; once over, the result */
    int started;                /* the start function has returned */
    int dgram, at_once;
    const struct sockaddr *source;
    socklen_t source_len;
    struct np_keepalive keepalive;
    struct np_resolve *resolving;
    const struct evutil_addrinfo *next;     /* the address to try next */
    const struct evutil_addrinfo *trying;   /* the one fd is connecting to */
    struct evutil_addrinfo *owned;          /* the resolver's answer, freed at the end */
    int dns_error, last_errno;
    double deadline;
    np_dial_done_fn *done;
    void *arg;
    /* once over */
    int err;
    char why[96];
    struct sockaddr_storage peer;           /* the address connected to */
    socklen_t peer_len;
};

/* Starts connecting to the addresses (kept by the caller until done), or to host:port's:
 * done is called once, unless np_dial_cancel comes first. Returns 0; or, with opts->at_once,
 * 1 when it is over already: then d->fd is the socket, or -1 with d->err and d->why, and
 * done is not called. */
int np_dial_start(struct np_dial *d, const struct evutil_addrinfo *addrs, const struct np_dial_opts *opts,
                  np_dial_done_fn *done, void *arg);
int np_dial_start_name(struct np_dial *d, const char *host, int port, const struct np_dial_opts *opts,
                       np_dial_done_fn *done, void *arg);

/* Stops it and closes its socket, if it is still under way (idempotent). */
void np_dial_cancel(struct np_dial *d);

/* Whether this host has the address: a socket bound to it once (port 0), as a connect from
 * it would be. 0, or -1 with "why" in err. */
int np_dial_check_source(const struct sockaddr *source, socklen_t len, char *err, size_t errlen);

/* Out of file descriptors while connecting: fn(errno) is told (the server pauses accepting). */
void np_dial_on_fd_shortage(void (*fn)(int err));

#endif
