/* One non-blocking connect with a deadline. Out of file descriptors, it waits and tries
 * again (the client is already accepted: better it waits than fails), as core.connect does. */
#include "dial.h"
#include "loop.h"
#include "sock.h"

#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <unistd.h>

#define FD_RETRY 0.05          /* seconds between tries when out of file descriptors */

static void on_event(evutil_socket_t fd, short what, void *arg);

static void finish(struct np_dial *d, int fd, int err)
{
    np_dial_done_fn *done = d->done;

    d->fd = -1;
    d->done = NULL;
    done(d->arg, fd, err);
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

/* An outcome known at once is still told from the loop. */
static void fail_soon(struct np_dial *d, int err)
{
    d->failed = err;
    arm(d, -1, 0, 0);
}

static void try_connect(struct np_dial *d)
{
    double left = time_left(d);

    d->waiting_for_fd = 0;
    d->fd = socket(d->addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (d->fd < 0) {
        int err = errno;
        if ((err == EMFILE || err == ENFILE) && left > 0) {
            np_sock_report_fd_shortage(err);
            d->waiting_for_fd = 1;
            arm(d, -1, 0, left < FD_RETRY ? left : FD_RETRY);
        } else {
            fail_soon(d, err);
        }
        return;
    }
    if (connect(d->fd, d->addr, d->addrlen) < 0 && errno != EINPROGRESS) {
        int err = errno;
        close(d->fd);
        d->fd = -1;
        fail_soon(d, err);
        return;
    }
    arm(d, d->fd, EV_WRITE, left);      /* a socket connected at once is writable at once */
}

static void on_event(evutil_socket_t fd, short what, void *arg)
{
    struct np_dial *d = arg;
    int err = 0;
    socklen_t len = sizeof err;

    if (d->failed) {
        finish(d, -1, d->failed);
    } else if (d->waiting_for_fd) {
        try_connect(d);
    } else if (what & EV_TIMEOUT) {
        close(d->fd);
        finish(d, -1, ETIMEDOUT);
    } else if (getsockopt(d->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
        close(d->fd);
        finish(d, -1, err ? err : errno);
    } else {
        np_sock_set_nodelay(d->fd);
        finish(d, d->fd, 0);
    }
}

void np_dial_start(struct np_dial *d, const struct sockaddr *addr, socklen_t addrlen,
                   double timeout, np_dial_done_fn *done, void *arg)
{
    d->addr = addr;
    d->addrlen = addrlen;
    d->deadline = timeout > 0 ? np_now() + timeout : 0;
    d->done = done;
    d->arg = arg;
    d->fd = -1;
    d->failed = 0;
    try_connect(d);
}

void np_dial_cancel(struct np_dial *d)
{
    if (!d->done) return;
    event_del(&d->ev);
    if (d->fd >= 0) close(d->fd);
    d->fd = -1;
    d->done = NULL;
}
