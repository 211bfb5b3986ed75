/* One non-blocking connect with a deadline, address after address, from a chosen source
 * address if asked. Out of file descriptors it waits and tries again (the client is already
 * accepted: better it waits than fails). */
#include "dial.h"
#include "errtoken.h"
#include "loop.h"
#include "resolve.h"
#include "text.h"

#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define FD_RETRY 0.05          /* seconds between tries when out of file descriptors */

static void (*fd_shortage)(int err);

void np_dial_on_fd_shortage(void (*fn)(int err))
{
    fd_shortage = fn;
}

static void on_event(evutil_socket_t fd, short what, void *arg);

/* Whether a TCP socket whose connect() said EINPROGRESS is connected already: to a loopback
 * address the handshake is done inside the call, and one getsockopt then saves waiting for
 * writability (an epoll_ctl ADD, a turn of the loop, getsockopt SO_ERROR, the MOD after). */
static int established(int fd, int family)
{
    unsigned char state;        /* struct tcp_info's first field, tcpi_state */
    socklen_t len = sizeof state;

    if (family != AF_INET && family != AF_INET6) return 0;
    return getsockopt(fd, IPPROTO_TCP, TCP_INFO, &state, &len) == 0 && len == sizeof state &&
           state == TCP_ESTABLISHED;
}

/* Binds fd to source, leaving the port to connect() where the kernel can (so that a busy
 * source address does not run out of ports for bind()'s sake). 0, or -1 with errno. */
static int bind_source(int fd, const struct sockaddr *source, socklen_t len)
{
#ifdef IP_BIND_ADDRESS_NO_PORT
    int one = 1;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
#endif
    return bind(fd, source, len);
}

/* A socket for ai, bound to the source if there is one: its fd, or -1 with errno. An
 * address of another family than the source's is not one to try (EAFNOSUPPORT). */
static int open_socket(const struct np_dial *d, const struct evutil_addrinfo *ai)
{
    int fd, err;

    if (d->source && d->source->sa_family != ai->ai_family) {
        errno = EAFNOSUPPORT;
        return -1;
    }
    fd = socket(ai->ai_family, (d->dgram ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || !d->source || bind_source(fd, d->source, d->source_len) == 0) return fd;
    err = errno;
    close(fd);
    errno = err;
    return -1;
}

int np_dial_check_source(const struct sockaddr *source, socklen_t len, char *err, size_t errlen)
{
    int fd = socket(source->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0 || bind_source(fd, source, len) < 0) {
        snprintf(err, errlen, "%s", errno == EADDRNOTAVAIL ? "not an address of this host" : strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

static void release(struct np_dial *d)
{
    if (d->resolving) np_resolve_cancel(d->resolving);
    d->resolving = NULL;
    if (d->owned) evutil_freeaddrinfo(d->owned);
    d->owned = NULL;
    d->next = d->trying = NULL;
}

void np_dial_keepalive(int fd, const struct np_keepalive *k)
{
    int on = 1;

    if (!k->on || setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) < 0) return;
    if (k->idle > 0) setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &k->idle, sizeof k->idle);
    if (k->interval > 0) setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &k->interval, sizeof k->interval);
    if (k->count > 0) setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &k->count, sizeof k->count);
}

/* The outcome, fd or -1: left in d for a start function to return, or told to done. Nothing
 * may touch d after done: it may have been freed. */
static void finish(struct np_dial *d, int fd)
{
    np_dial_done_fn *done = d->done;

    d->err = 0;
    d->why[0] = '\0';
    if (fd >= 0) {
        if (!d->dgram && d->trying->ai_family != AF_UNIX) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            np_dial_keepalive(fd, &d->keepalive);
        }
        d->peer_len = d->trying->ai_addrlen;
        memcpy(&d->peer, d->trying->ai_addr, d->peer_len);
    } else if (d->dns_error) {
        snprintf(d->why, sizeof d->why, "resolve: %s", evutil_gai_strerror(d->dns_error));
    } else {
        d->err = d->last_errno;
        np_copy_text(d->why, sizeof d->why, d->last_errno ? np_err_token(d->last_errno) : "no address");
    }
    release(d);
    d->fd = fd;
    d->done = NULL;
    d->state = NP_DIAL_IDLE;
    if (d->started) done(d->arg, fd, d->err, d->why);
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

/* Connected inside connect(), or out of addresses: returned by an at_once start function,
 * else told from the loop, as every outcome is. */
static void outcome(struct np_dial *d, int connected)
{
    if (!connected && d->fd >= 0) close(d->fd);
    if (!connected) d->fd = -1;
    if (d->at_once && !d->started) {
        finish(d, d->fd);
        return;
    }
    d->state = NP_DIAL_TELLING;
    event_assign(&d->ev, np_base, -1, 0, on_event, d);
    event_active(&d->ev, EV_TIMEOUT, 0);
}

static void try_next(struct np_dial *d)
{
    while (d->next) {
        const struct evutil_addrinfo *ai = d->next;
        double left = time_left(d);

        d->fd = open_socket(d, ai);
        if (d->fd < 0 && (errno == EMFILE || errno == ENFILE) && left > 0) {
            if (fd_shortage) fd_shortage(errno);
            d->state = NP_DIAL_FD_WAIT;         /* the same address, in a moment */
            arm(d, -1, 0, left < FD_RETRY ? left : FD_RETRY);
            return;
        }
        d->next = ai->ai_next;
        if (d->fd < 0) {
            d->last_errno = errno;
            continue;
        }
        d->trying = ai;
        if (connect(d->fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            outcome(d, 1);
            return;
        }
        if (errno == EINPROGRESS) {
            if (!d->dgram && established(d->fd, ai->ai_family)) {
                outcome(d, 1);
            } else {
                d->state = NP_DIAL_CONNECTING;
                arm(d, d->fd, EV_WRITE, left);
            }
            return;
        }
        d->last_errno = errno;
        close(d->fd);
        d->fd = -1;
    }
    outcome(d, 0);
}

static void connect_answered(struct np_dial *d, short what)
{
    int err = 0;
    socklen_t len = sizeof err;

    if (what & EV_TIMEOUT) {
        d->last_errno = ETIMEDOUT;
        d->next = NULL;
    } else if (getsockopt(d->fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) {
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

    switch (d->state) {
    case NP_DIAL_TELLING:
        finish(d, d->fd);
        break;
    case NP_DIAL_RESOLVING:             /* the deadline came first */
        release(d);
        d->last_errno = ETIMEDOUT;
        outcome(d, 0);
        break;
    case NP_DIAL_FD_WAIT:
        try_next(d);
        break;
    case NP_DIAL_CONNECTING:
        connect_answered(d, what);
        break;
    case NP_DIAL_IDLE:
        break;
    }
}

static void begin(struct np_dial *d, const struct np_dial_opts *opts, np_dial_done_fn *done, void *arg)
{
    memset(d, 0, offsetof(struct np_dial, why));
    event_assign(&d->ev, np_base, -1, 0, on_event, d);     /* always valid to delete */
    d->fd = -1;
    d->deadline = opts->timeout > 0 ? np_now() + opts->timeout : 0;
    d->dgram = opts->dgram;
    d->at_once = opts->at_once;
    d->source = opts->source;
    d->source_len = opts->source_len;
    d->keepalive = opts->keepalive;
    d->done = done;
    d->arg = arg;
}

/* Tries the addresses from a start function: 1 when it is over already (at_once), else 0. */
static int go(struct np_dial *d)
{
    try_next(d);
    d->started = 1;
    return d->done == NULL;
}

int np_dial_start(struct np_dial *d, const struct evutil_addrinfo *addrs, const struct np_dial_opts *opts,
                  np_dial_done_fn *done, void *arg)
{
    begin(d, opts, done, arg);
    d->next = addrs;
    return go(d);
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

int np_dial_start_name(struct np_dial *d, const char *host, int port, const struct np_dial_opts *opts,
                       np_dial_done_fn *done, void *arg)
{
    struct np_resolve *r;

    begin(d, opts, done, arg);
    r = np_resolve_start(host, port, on_resolved, d);
    if (!r) return go(d);
    d->resolving = r;
    d->state = NP_DIAL_RESOLVING;
    d->started = 1;
    if (d->deadline > 0) arm(d, -1, 0, time_left(d));
    return 0;
}

void np_dial_cancel(struct np_dial *d)
{
    if (!d->done) return;
    event_del(&d->ev);
    release(d);
    if (d->fd >= 0) close(d->fd);
    d->fd = -1;
    d->done = NULL;
    d->state = NP_DIAL_IDLE;
}
