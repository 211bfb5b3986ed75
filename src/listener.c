/* Listening sockets: entries of the registry of bound sockets (bound.c). A config takes a
 * reference on each address it listens on; a reload's new config finds the same sockets by
 * address, so no connection attempt is ever refused while it takes over. Here: binding,
 * the per-worker copies, and accepting. */
#include "listener.h"
#include "bound.h"
#include "log.h"
#include "loop.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* accept4 until EAGAIN, at most this many per wake-up (bench/plain.sh measures a build
 * with -DNP_ACCEPTS_PER_WAKEUP=1 against it: docs/benchmarks.md, "Plain path at saturation") */
#ifndef NP_ACCEPTS_PER_WAKEUP
#define NP_ACCEPTS_PER_WAKEUP 64
#endif

static struct event resume_ev;
static int paused, resume_ready;
static double last_fd_warning;

static void on_accept(evutil_socket_t lfd, short what, void *arg);

static void arm(struct np_listener *l)
{
    if (l->fd < 0 || !l->accept || l->armed || paused) return;
    event_assign(&l->ev, np_base, l->fd, EV_READ | EV_PERSIST, on_accept, l);
    event_add(&l->ev, NULL);
    l->armed = 1;
}

static void disarm(struct np_listener *l)
{
    if (l->armed) event_del(&l->ev);
    l->armed = 0;
}

/* The listeners of this process, one after the other (the registry's TCP entries taken). */
static struct np_listener *next_listener(struct np_listener *prev)
{
    struct np_bound *b = prev ? prev->b : NULL;

    while ((b = np_bound_next(NP_BOUND_TCP, b)) && !b->owner) {}
    return b ? b->owner : NULL;
}

/* Before its sockets close: no more accepting, and the unix socket file made here goes. */
static void stop(struct np_listener *l)
{
    disarm(l);
    l->fd = -1;
    if (l->unlink_path && l->owner_pid == getpid()) unlink(l->unlink_path);
    free(l->unlink_path);
    l->unlink_path = NULL;
}

/* A unix socket file already at the path: a stale one (nothing accepts on it) is removed;
 * a live one is an error (EADDRINUSE), and so is a file that is not a socket (EEXIST). */
static int clear_unix_path(const struct sockaddr_un *un, socklen_t len)
{
    struct stat st;
    int probe, live;

    if (un->sun_path[0] == '\0' || lstat(un->sun_path, &st) < 0) return 0;   /* abstract, or free */
    if (!S_ISSOCK(st.st_mode)) {
        errno = EEXIST;
        return -1;
    }
    probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    live = probe >= 0 && connect(probe, (const struct sockaddr *)un, len) == 0;
    if (probe >= 0) close(probe);
    if (live) {
        errno = EADDRINUSE;
        return -1;
    }
    return unlink(un->sun_path);
}

/* TCP_DEFER_ACCEPT: the kernel hands over a client only once its first bytes are in (or
 * after about o->defer_accept seconds), so the proxy wakes once for accept and read, and
 * never for a client that connects and stays silent. Off (0) is set too: a reload may
 * turn it off on a socket it takes over. */
static void set_defer_accept(int fd, const struct sockaddr *sa, const struct np_listen_opts *o)
{
    int secs = o->defer_accept;

    if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &secs, sizeof secs);
}

static int bound_socket(const struct sockaddr *sa, socklen_t len, const struct np_listen_opts *o)
{
    int one = 1, fd;

    if (sa->sa_family == AF_UNIX && clear_unix_path((const struct sockaddr_un *)sa, len) < 0) return -1;
    fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (sa->sa_family != AF_UNIX) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (o->reuseport && sa->sa_family != AF_UNIX) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (sa->sa_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    /* accepted sockets inherit it: no setsockopt per connection */
    if (sa->sa_family != AF_UNIX) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    set_defer_accept(fd, sa, o);
    if (bind(fd, sa, len) < 0 ||
        (sa->sa_family == AF_UNIX && o->mode >= 0 && ((const struct sockaddr_un *)sa)->sun_path[0] &&
         chmod(((const struct sockaddr_un *)sa)->sun_path, (mode_t)o->mode) < 0) ||
        listen(fd, o->backlog) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* reuseport: one socket per worker index on b's address ([0] the first), grown or shrunk
 * to the number of workers (a reload may change it); else the one. 0, or -1 with errno. */
static int per_worker_sockets(struct np_bound *b, const struct sockaddr *sa, socklen_t len,
                              const struct np_listen_opts *o)
{
    int n = o->reuseport && o->nworkers > 1 && sa->sa_family != AF_UNIX ? o->nworkers : 1, fd;

    np_bound_truncate(b, n);
    while (b->n < n) {
        if ((fd = bound_socket(sa, len, o)) < 0) return -1;
        if (np_bound_put_fd(b, b->n, fd) < 0) {
            close(fd);
            errno = ENOMEM;
            return -1;
        }
    }
    return 0;
}

static const char *no_name(const struct np_bound *b)
{
    return "";                  /* a TCP port 0 is a new port after an upgrade too */
}

static void release(struct np_bound *b, int say)
{
    struct np_listener *l = b->owner;

    if (say && l->fd >= 0) np_log(NP_NOTICE, "no longer listening on %s", l->addr);
    stop(l);
    free(l);
}

static const struct np_bound_ops listener_ops = { .name = no_name, .release = release };

/* The listener of entry b (a new or a passed one): 0, or -1 (out of memory). */
static int own(struct np_bound *b)
{
    struct np_listener *l;

    if (b->owner) return 0;
    if (!(l = calloc(1, sizeof *l))) return -1;
    l->b = b;
    l->addr = b->addr;
    l->fd = b->fds[0];
    np_bound_own(b, &listener_ops, l);
    return 0;
}

struct np_listener *np_listener_get(const struct sockaddr *sa, socklen_t len,
                                    const struct np_listen_opts *o, char *err, size_t errlen)
{
    char where[NP_ADDRSTRLEN];
    struct np_bound *b = np_bound_find(NP_BOUND_TCP, sa, len, NULL);
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    int fd = -1, rc;

    if (b) {
        np_bound_hold(b);
        if (own(b) == 0 && per_worker_sockets(b, sa, len, o) == 0) {
            for (int i = 0; i < b->n; i++)
                if (b->fds[i] >= 0) set_defer_accept(b->fds[i], sa, o);
            return b->owner;
        }
        np_bound_drop(b, 0);
        goto fail;
    }
    if ((fd = bound_socket(sa, len, o)) < 0) goto fail;
    if (!(b = np_bound_new(NP_BOUND_TCP)) || np_bound_put_fd(b, 0, fd) < 0) {
        close(fd);
        if (b) np_bound_drop(b, 0);
        errno = ENOMEM;
        goto fail;
    }
    np_bound_named(b);
    /* the copies bind the address bound (a port 0 became a port of its own) */
    if (sa->sa_family != AF_UNIX && getsockname(fd, (struct sockaddr *)&bound, &blen) == 0)
        rc = per_worker_sockets(b, (struct sockaddr *)&bound, blen, o);
    else
        rc = per_worker_sockets(b, sa, len, o);
    if (rc < 0 || own(b) < 0) {
        int e = rc < 0 ? errno : ENOMEM;
        np_bound_drop(b, 0);
        errno = e;
        goto fail;
    }
    if (sa->sa_family == AF_UNIX && ((const struct sockaddr_un *)sa)->sun_path[0]) {
        struct np_listener *l = b->owner;
        l->unlink_path = strdup(((const struct sockaddr_un *)sa)->sun_path);
        l->owner_pid = getpid();
    }
    np_log(NP_INFO, "bound %s", b->addr);
    return b->owner;
fail:
    np_addr_format(sa, len, where, sizeof where);
    snprintf(err, errlen, "cannot listen on %s: %s", where, strerror(errno));
    return NULL;
}

void np_listener_put(struct np_listener *l, int say)
{
    np_bound_drop(l->b, say);
}

int np_listener_first_user(const struct np_listener *l)
{
    return l->b->refs == 1;
}

void np_listener_serve(struct np_listener *l, np_accept_fn *fn, void *arg)
{
    l->accept = fn;             /* on_accept reads them at each wakeup: nothing to re-arm */
    l->arg = arg;
}

int np_listener_adopt_systemd(void)
{
    return np_bound_adopt();
}

void np_listener_adopted_done(void)
{
    np_bound_passed_done(NP_BOUND_TCP);
}

void np_listeners_start(int index)
{
    for (struct np_listener *l = next_listener(NULL); l; l = next_listener(l)) {
        l->fd = np_bound_keep(l->b, index);     /* reuseport: the socket of its index */
        arm(l);
    }
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    paused = 0;                 /* before arm(), which does nothing while paused */
    for (struct np_listener *l = next_listener(NULL); l; l = next_listener(l)) arm(l);
}

void np_listeners_pause(int err)
{
    struct timeval tv = { 0, 100 * 1000 };

    if (np_now() - last_fd_warning >= 1.0) {
        np_log(NP_WARNING, "out of file descriptors (%s): pausing accepts for 100 ms", strerror(err));
        last_fd_warning = np_now();
    }
    if (paused) return;
    paused = 1;
    for (struct np_listener *l = next_listener(NULL); l; l = next_listener(l)) disarm(l);
    if (!resume_ready) evtimer_assign(&resume_ev, np_base, on_resume, NULL);
    resume_ready = 1;
    evtimer_add(&resume_ev, &tv);
}

void np_listeners_close_all(void)
{
    if (resume_ready) event_del(&resume_ev);
    for (struct np_listener *l = next_listener(NULL); l; l = next_listener(l)) {
        stop(l);
        np_bound_close(l->b);
    }
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
    struct np_listener *l = arg;

    for (int i = 0; i < NP_ACCEPTS_PER_WAKEUP && l->fd >= 0; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                np_listeners_pause(errno);
            else if (errno != EAGAIN)
                np_log(NP_ERR, "accept on %s: %s", l->addr, strerror(errno));
            return;
        }
        l->accept(l->arg, l, fd, (struct sockaddr *)&ss, len);   /* may close every listener */
    }
}
