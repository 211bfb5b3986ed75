/* One socket connected to one address without blocking, within a timeout: how the core
 * reaches the server by itself when the config fixes it (conn.c, a routed proxy). A leaf. */
#ifndef NP_DIAL_H
#define NP_DIAL_H
#include <event2/event_struct.h>
#include <sys/socket.h>

/* fd: the connected socket (TCP_NODELAY set), the caller's now; or -1 and err (an errno,
 * ETIMEDOUT at the deadline). Called from the loop, never from np_dial_start. */
typedef void np_dial_done_fn(void *arg, int fd, int err);

struct np_dial {
    struct event ev;
    int fd;                     /* -1 while none is open */
    int waiting_for_fd;         /* out of descriptors: the event is a retry timer */
    int failed;                 /* an errno known at once, told from the loop */
    const struct sockaddr *addr;
    socklen_t addrlen;
    double deadline;
    np_dial_done_fn *done;
    void *arg;
};

/* Starts connecting to addr (kept by the caller until done) within timeout seconds (0: no
 * limit): done is called once, unless np_dial_cancel comes first. */
void np_dial_start(struct np_dial *d, const struct sockaddr *addr, socklen_t addrlen,
                   double timeout, np_dial_done_fn *done, void *arg);

/* Stops it and closes its socket, if it is still under way (idempotent). */
void np_dial_cancel(struct np_dial *d);

#endif
