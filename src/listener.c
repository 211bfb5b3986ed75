/* Listening sockets, kept in one list per process. A config takes a reference on each
 * address it listens on; a reload's new config finds the same sockets by address, so no
 * connection attempt is ever refused while it takes over. */
#include "listener.h"
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

#define ACCEPTS_PER_WAKEUP 64

static struct np_listener *listeners;
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

static void close_sockets(struct np_listener *l)
{
    disarm(l);
    for (int i = 1; i < l->nper_worker; i++) close(l->per_worker[i]);
    if (l->fd >= 0) close(l->fd);
    l->fd = -1;
    l->nper_worker = 0;
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

/* reuseport: one socket per worker index on l's address ([0] is l->fd), grown or shrunk to
 * the number of workers (a reload may change it). 0, or -1 with errno. */
static int per_worker_sockets(struct np_listener *l, const struct sockaddr *sa, socklen_t len,
                              const struct np_listen_opts *o)
{
    int n = o->reuseport && o->nworkers > 1 && sa->sa_family != AF_UNIX ? o->nworkers : 0;
    int *grown;

    for (int i = n > 0 ? n : 1; i < l->nper_worker; i++) close(l->per_worker[i]);
    if (n == 0) {
        free(l->per_worker);
        l->per_worker = NULL;
        l->nper_worker = 0;
        return 0;
    }
    grown = realloc(l->per_worker, n * sizeof *grown);
    if (!grown) return -1;
    l->per_worker = grown;
    grown[0] = l->fd;
    for (int i = l->nper_worker ? l->nper_worker : 1; i < n; i++) {
        if ((grown[i] = bound_socket(sa, len, o)) < 0) {
            l->nper_worker = i;
            return -1;
        }
    }
    l->nper_worker = n;
    return 0;
}

/* The open listener on the address sa names, or NULL. A port 0 always gets a new one. */
static struct np_listener *find(const struct sockaddr *sa, socklen_t len)
{
    char want[NP_ADDRSTRLEN];
    size_t n;

    np_addr_format(sa, len, want, sizeof want);
    n = strlen(want);
    if (sa->sa_family != AF_UNIX && n >= 2 && !strcmp(want + n - 2, ":0")) return NULL;
    for (struct np_listener *l = listeners; l; l = l->next)
        if (l->fd >= 0 && !strcmp(l->addr, want)) return l;
    return NULL;
}

static struct np_listener *add(int fd)
{
    struct np_listener *l = calloc(1, sizeof *l);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;

    if (!l) return NULL;
    l->fd = fd;
    l->refs = 1;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
        np_addr_format((struct sockaddr *)&ss, len, l->addr, sizeof l->addr);
    l->next = listeners;
    listeners = l;
    return l;
}

struct np_listener *np_listener_get(const struct sockaddr *sa, socklen_t len,
                                    const struct np_listen_opts *o, char *err, size_t errlen)
{
    char where[NP_ADDRSTRLEN];
    struct np_listener *l = find(sa, len);
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    int fd = -1, per_worker_sockets_rc;

    if (l) {
        l->refs++;
        if (per_worker_sockets(l, sa, len, o) == 0) return l;
        l->refs--;
        goto fail;
    }
    if ((fd = bound_socket(sa, len, o)) < 0 || !(l = add(fd))) goto fail;
    /* the copies bind the address bound (a port 0 became a port of its own) */
    if (sa->sa_family != AF_UNIX && getsockname(fd, (struct sockaddr *)&bound, &blen) == 0)
        per_worker_sockets_rc = per_worker_sockets(l, (struct sockaddr *)&bound, blen, o);
    else
        per_worker_sockets_rc = per_worker_sockets(l, sa, len, o);
    if (per_worker_sockets_rc < 0) {
        np_listener_put(l, 0);
        fd = -1;
        goto fail;
    }
    if (sa->sa_family == AF_UNIX && ((const struct sockaddr_un *)sa)->sun_path[0]) {
        l->unlink_path = strdup(((const struct sockaddr_un *)sa)->sun_path);
        l->owner_pid = getpid();
    }
    np_log(NP_INFO, "bound %s", l->addr);
    return l;
fail:
    np_addr_format(sa, len, where, sizeof where);
    snprintf(err, errlen, "cannot listen on %s: %s", where, strerror(errno));
    if (fd >= 0 && !l) close(fd);
    return NULL;
}

void np_listener_put(struct np_listener *l, int say)
{
    struct np_listener **pp;

    if (--l->refs > 0) return;
    if (say && l->fd >= 0) np_log(NP_NOTICE, "no longer listening on %s", l->addr);
    close_sockets(l);
    for (pp = &listeners; *pp && *pp != l; pp = &(*pp)->next) {}
    if (*pp) *pp = l->next;
    free(l->per_worker);
    free(l);
}

void np_listener_serve(struct np_listener *l, np_accept_fn *fn, void *arg)
{
    l->accept = fn;             /* on_accept reads them at each wakeup: nothing to re-arm */
    l->arg = arg;
}

/* A passed socket joins the open listeners; another on the same address (a reuseport
 * worker's copy) joins that listener's per-worker sockets. */
static void adopt(int fd, const char *from)
{
    struct np_listener *l, *same = NULL;
    int one = 1;

    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);     /* fails harmlessly on unix */
    if (!(l = add(fd))) return;
    for (struct np_listener *o = l->next; o && !same; o = o->next)
        if (o->adopted && !strcmp(o->addr, l->addr)) same = o;
    if (same) {                         /* fold into the first one */
        int *grown = realloc(same->per_worker, (same->nper_worker + 2) * sizeof *grown);
        listeners = l->next;
        if (!grown) {
            close(fd);
            free(l);
            return;
        }
        if (same->nper_worker == 0) grown[same->nper_worker++] = same->fd;
        grown[same->nper_worker++] = fd;
        same->per_worker = grown;
        free(l);
        return;
    }
    l->adopted = 1;
    np_log(NP_INFO, "%s passed a socket listening on %s", from, l->addr);
}

int np_listener_adopt_systemd(void)
{
    const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
    const char *upgrade = getenv("NETPROXY_LISTEN_FDS");
    int n = 0;

    if (upgrade) {                      /* a binary upgrade: "fd,fd,..." */
        for (const char *p = upgrade; *p; p += strcspn(p, ",") + (p[strcspn(p, ",")] == ',')) {
            adopt(atoi(p), "the previous binary");
            n++;
        }
        unsetenv("NETPROXY_LISTEN_FDS");
        return n;
    }
    if (!pid || !fds || atoi(pid) != (int)getpid() || (n = atoi(fds)) <= 0) return 0;
    for (int fd = 3; fd < 3 + n; fd++) adopt(fd, "systemd");
    unsetenv("LISTEN_PID");             /* not for the workers to see again */
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    return n;
}

int np_listeners_fds(int *fds, int max)
{
    int n = 0;

    for (struct np_listener *l = listeners; l; l = l->next) {
        if (l->fd >= 0 && n < max) fds[n++] = l->fd;
        for (int i = 1; i < l->nper_worker && n < max; i++) fds[n++] = l->per_worker[i];
    }
    return n;
}

void np_listener_adopted_done(void)
{
    struct np_listener *l = listeners, *next;

    for (; l; l = next) {
        next = l->next;
        if (!l->adopted) continue;
        l->adopted = 0;
        if (l->refs == 1)
            np_log(NP_WARNING, "a passed socket on %s is one no proxy listens on: closed", l->addr);
        np_listener_put(l, 0);
    }
}

/* reuseport: this worker keeps the socket of its index and closes its copies of the others. */
static void take_own_socket(struct np_listener *l, int index)
{
    if (l->nper_worker == 0) return;
    for (int i = 0; i < l->nper_worker; i++)
        if (i != index % l->nper_worker) close(l->per_worker[i]);
    l->fd = l->per_worker[index % l->nper_worker];
    l->nper_worker = 0;
}

void np_listeners_start(int index)
{
    for (struct np_listener *l = listeners; l; l = l->next) {
        take_own_socket(l, index);
        arm(l);
    }
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    paused = 0;                 /* before arm(), which does nothing while paused */
    for (struct np_listener *l = listeners; l; l = l->next) arm(l);
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
    for (struct np_listener *l = listeners; l; l = l->next) disarm(l);
    if (!resume_ready) evtimer_assign(&resume_ev, np_base, on_resume, NULL);
    resume_ready = 1;
    evtimer_add(&resume_ev, &tv);
}

void np_listeners_close_all(void)
{
    if (resume_ready) event_del(&resume_ev);
    for (struct np_listener *l = listeners; l; l = l->next) close_sockets(l);
}

static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
    struct np_listener *l = arg;

    for (int i = 0; i < ACCEPTS_PER_WAKEUP && l->fd >= 0; i++) {
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
