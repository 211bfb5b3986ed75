/* One non-blocking connect with a deadline, address after address. Out of file descriptors
 * it waits and tries again (the client is already accepted: better it waits than fails), as
 * core.connect does. */
#include "dial.h"
#include "loop.h"
#include "resolve.h"
#include "sock.h"

#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <string.h>
#include <unistd.h>

#define FD_RETRY 0.05          /* seconds between tries when out of file descriptors */

static void on_event(evutil_socket_t fd, short what, void *arg);

static void release(struct np_dial *d)
{
    if (d->resolving) np_resolve_cancel(d->resolving);
    d->resolving = NULL;
    if (d->owned) evutil_freeaddrinfo(d->owned);
    d->owned = NULL;
    d->next = NULL;
}

static void finish(struct np_dial *d, int fd)
{
    np_dial_done_fn *done = d->done;

    release(d);
    d->fd = -1;
    d->done = NULL;
    if (fd >= 0) done(d->arg, fd, 0, "");
    else done(d->arg, -1, d->dns_error ? 0 : d->last_errno, d->why);
}

/* The event: fd's readiness (what) until the deadline, or a timer (fd -1) of after seconds. */
static void arm(struct np_dial *d, int fd, short what, double after)
{
    struct timeval tv = np_tv(after);

    event_assign(&d->ev, np_base, fd, what, on_event, d);
    event_add(&d->ev, fd < 0 || d->deadline > 0 ? &tv : NULL);
}

static double time_left(const struct np_dial *d)
{
    return d->deadline > 0 ? d->deadline - np_now() : FD_RETRY;
}

/* No address left: the failure is told from the loop, as every outcome is. */
static void fail_soon(struct np_dial *d)
{
    np_sock_connect_why(d->dns_error, d->last_errno, d->why, sizeof d->why);
    d->failing = 1;
    arm(d, -1, 0, 0);
}

/* Tells a connected socket from the loop, as every outcome is. */
static void connected_soon(struct np_dial *d)
{
    d->established = 1;
    event_assign(&d->ev, np_base, -1, 0, on_event, d);
    event_active(&d->ev, EV_WRITE, 0);
}

static void try_next(struct np_dial *d)
{
    while (d->next) {
        const struct evutil_addrinfo *ai = d->next;
        double left = time_left(d);

        d->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (d->fd < 0 && (errno == EMFILE || errno == ENFILE) && left > 0) {
            np_sock_report_fd_shortage(errno);
            d->waiting_for_fd = 1;      /* the same address, in a moment */
            arm(d, -1, 0, left < FD_RETRY ? left : FD_RETRY);
            return;
        }
        d->next = ai->ai_next;
        if (d->fd < 0) {
            d->last_errno = errno;
            continue;
        }
        d->family = ai->ai_family;
        if (connect(d->fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            connected_soon(d);
            return;
        }
        if (errno == EINPROGRESS) {
            if (np_sock_established(d->fd, d->family)) connected_soon(d);
            else arm(d, d->fd, EV_WRITE, left);
            return;
        }
        d->last_errno = errno;
        close(d->fd);
        d->fd = -1;
    }
    fail_soon(d);
}

static void connect_answered(struct np_dial *d, short what)
{
    int err = 0;
    socklen_t len = sizeof err;

    if (what & EV_TIMEOUT) {
        d->last_errno = ETIMEDOUT;
        d->next = NULL;
    } else if (d->established || (getsockopt(d->fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0)) {
        if (d->family != AF_UNIX) np_sock_set_nodelay(d->fd);
        finish(d, d->fd);
        return;
    } else {
        d->last_errno = err ? err : errno;
    }
    close(d->fd);
    d->fd = -1;
    try_next(d);
}

static void on_event(evutil_socket_t fd, short what, void *arg)
{
    struct np_dial *d = arg;

    if (d->failing) {
        finish(d, -1);
    } else if (d->resolving) {          /* the deadline came first */
        release(d);
        d->last_errno = ETIMEDOUT;
        fail_soon(d);
    } else if (d->waiting_for_fd) {
        d->waiting_for_fd = 0;
        try_next(d);
    } else {
        connect_answered(d, what);
    }
}

static void begin(struct np_dial *d, double timeout, np_dial_done_fn *done, void *arg)
{
    memset(d, 0, sizeof *d);
    event_assign(&d->ev, np_base, -1, 0, on_event, d);     /* always valid to delete */
    d->fd = -1;
    d->deadline = timeout > 0 ? np_now() + timeout : 0;
    d->done = done;
    d->arg = arg;
}

void np_dial_start(struct np_dial *d, const struct evutil_addrinfo *addrs, double timeout,
                   np_dial_done_fn *done, void *arg)
{
    begin(d, timeout, done, arg);
    d->started = 1;
    d->next = addrs;
    try_next(d);
}

static void on_resolved(int err, struct evutil_addrinfo *res, void *arg)
{
    struct np_dial *d = arg;

    d->resolving = NULL;
    d->owned = res;
    d->next = res;
    d->dns_error = err;
    if (!d->started) return;            /* answered inside np_resolve_start: it goes on */
    event_del(&d->ev);                  /* the deadline's timer */
    try_next(d);
}

void np_dial_start_name(struct np_dial *d, const char *host, int port, double timeout,
                        np_dial_done_fn *done, void *arg)
{
    struct np_resolve *r;

    begin(d, timeout, done, arg);
    r = np_resolve_start(host, port, on_resolved, d);
    d->started = 1;
    if (!r) {
        try_next(d);
        return;
    }
    d->resolving = r;
    if (d->deadline > 0) arm(d, -1, 0, time_left(d));
}

void np_dial_cancel(struct np_dial *d)
{
    if (!d->done) return;
    event_del(&d->ev);
    release(d);
    if (d->fd >= 0) close(d->fd);
    d->fd = -1;
    d->done = NULL;
}
