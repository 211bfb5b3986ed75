/* One stream socket connected to a server without blocking, within a timeout: how the core
 * reaches the server by itself when the config fixes it (conn.c, a routed proxy). The
 * server is an address (IP or unix), or a name resolved without blocking whose addresses
 * are tried in turn, as core.connect does. A leaf (resolve.c below it). */
#ifndef NP_DIAL_H
#define NP_DIAL_H
#include <event2/event_struct.h>
#include <event2/util.h>

/* fd: the connected socket (TCP_NODELAY set on TCP), the caller's now; or -1, err (the last
 * connect's errno, ETIMEDOUT at the deadline, 0 for a name that did not resolve) and why,
 * the words for the log line ("refused", "timeout", "resolve: ..."). Called from the loop,
 * never from the start functions. */
typedef void np_dial_done_fn(void *arg, int fd, int err, const char *why);

struct np_resolve;

struct np_dial {
    struct event ev;
    int fd;                     /* -1 while none is open */
    int waiting_for_fd;         /* out of descriptors: the event is a retry timer */
    int failing;                /* out of addresses: the event tells it from the loop */
    int established;            /* connected inside connect(): the event tells it */
    int started;                /* the start function has returned */
    struct np_resolve *resolving;
    const struct evutil_addrinfo *next;     /* the address to try next */
    struct evutil_addrinfo *owned;          /* the resolver's answer, freed at the end */
    int dns_error, last_errno;
    int family;                 /* of the address being tried */
    double deadline;
    np_dial_done_fn *done;
    void *arg;
    char why[96];
};

/* Starts connecting to the addresses (kept by the caller until done), or to host:port's,
 * within timeout seconds (0: no limit): done is called once, unless np_dial_cancel comes
 * first. */
void np_dial_start(struct np_dial *d, const struct evutil_addrinfo *addrs, double timeout,
                   np_dial_done_fn *done, void *arg);
void np_dial_start_name(struct np_dial *d, const char *host, int port, double timeout,
                        np_dial_done_fn *done, void *arg);

/* Stops it and closes its socket, if it is still under way (idempotent). */
void np_dial_cancel(struct np_dial *d);

#endif
