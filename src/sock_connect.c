/* core.connect(): resolve without blocking, then try each address in turn until one
 * answers or the deadline passes; the result is a cosocket (sock.c). core.connect_udp() the
 * same with a UDP socket, whose connect() answers at once. */
#include "sock_impl.h"
#include "loop.h"
#include "resolve.h"

#include <errno.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <lauxlib.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <unistd.h>

#define FD_RETRY 0.05          /* seconds between tries when out of file descriptors */

static void arm_connect(struct np_sock *s)
{
    struct timeval tv = np_tv(s->deadline - np_now());

    event_add(&s->wev, s->deadline > 0 ? &tv : NULL);
}

/* Starts connecting to the next address; DONE when connected or out of addresses. */
/* Out of file descriptors: try the same address again in a moment (the client is already
 * accepted: better it waits than fails), and stop accepting more meanwhile. 1 when a retry
 * is scheduled, 0 when the deadline is too close. */
static int retry_when_fds_free(struct np_sock *s, struct evutil_addrinfo *ai, int err)
{
    double left = s->deadline > 0 ? s->deadline - np_now() : 1;
    struct timeval tv = np_tv(left < FD_RETRY ? left : FD_RETRY);

    if (left <= 0) return 0;
    if (np_sock_fd_shortage) np_sock_fd_shortage(err);
    s->next_addr = ai;
    s->waiting_for_fd = 1;
    event_assign(&s->wev, np_base, -1, 0, np_sock_on_event, s);
    event_add(&s->wev, &tv);
    return 1;
}

static int connect_next(struct np_sock *s)
{
    while (s->next_addr) {
        struct evutil_addrinfo *ai = s->next_addr;
        int fd, rc;

        s->next_addr = ai->ai_next;
        fd = socket(ai->ai_family, (s->dgram ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            if ((errno == EMFILE || errno == ENFILE) && retry_when_fds_free(s, ai, errno))
                return PENDING;
            s->last_errno = errno;
            continue;
        }
        np_addr_format(ai->ai_addr, ai->ai_addrlen, s->peer, sizeof s->peer);
        rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (rc == 0 || errno == EINPROGRESS) {    /* (errno is stale after a success) */
            np_sock_set_fds(s, fd, fd);
            if (rc == 0 || (!s->dgram && np_sock_established(fd, ai->ai_family))) return DONE;
            arm_connect(s);
            return PENDING;
        }
        s->last_errno = errno;
        close(fd);
    }
    return DONE;
}

static void connect_finished(struct np_sock *s)
{
    if (s->addrs) evutil_freeaddrinfo(s->addrs);
    s->addrs = s->next_addr = NULL;
    np_sock_free_own_addr(s);
    if (s->fd >= 0 && !s->dgram) np_sock_set_nodelay(s->fd);
}

/* Pushes connect's results: the socket at idx, or nil and why. */
static int push_connect(lua_State *L, struct np_sock *s, int idx)
{
    char why[128];

    connect_finished(s);
    if (s->fd >= 0) {
        lua_pushvalue(L, idx);
        return 1;
    }
    np_sock_connect_why(s->dns_error, s->last_errno, why, sizeof why);
    return np_sock_push_fail(L, why);
}

static void connect_done_async(struct np_sock *s)
{
    lua_State *co = s->owner->co;

    lua_rawgeti(co, LUA_REGISTRYINDEX, s->self_ref);
    int n = push_connect(co, s, lua_gettop(co));
    if (n == 1) lua_remove(co, -2);     /* keep just the socket */
    else lua_remove(co, -3);
    np_sock_resume(s, n);
}

static void resolve_answered(struct np_sock *s);

static void on_resolved(int err, struct evutil_addrinfo *res, void *arg)
{
    struct np_sock *s = arg;
    int answered_at_once = (s->resolving == NULL);

    s->resolving = NULL;
    s->dns_error = err;
    s->addrs = s->next_addr = res;
    if (answered_at_once) return;       /* core_connect carries on */
    event_del(&s->wev);                  /* the resolve deadline */
    if (s->resolve_only) resolve_answered(s);
    else if (connect_next(s) == DONE) connect_done_async(s);
}

/* The socket's event while connecting: an address answered, failed or timed out. */
static void connect_step(struct np_sock *s, short what)
{
    int err = 0;
    socklen_t len = sizeof err;

    if (s->waiting_for_fd) {
        s->waiting_for_fd = 0;
        if (connect_next(s) == DONE) connect_done_async(s);
        return;
    }
    if (what & EV_TIMEOUT) {
        s->last_errno = ETIMEDOUT;
        s->dns_error = 0;
        s->next_addr = NULL;
    } else if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) {
        connect_done_async(s);
        return;
    } else {
        s->last_errno = err ? err : errno;
    }
    if (s->resolving) np_resolve_cancel(s->resolving);
    s->resolving = NULL;
    if (s->fd >= 0) {
        event_del(&s->rev);
        close(s->fd);
        s->fd = s->wfd = -1;
    }
    if (connect_next(s) == DONE) connect_done_async(s);
}

/* An address list of one, made here rather than by the resolver (len 0: none). */
static struct evutil_addrinfo *addrinfo_of(const struct sockaddr_storage *ss, socklen_t len)
{
    struct evutil_addrinfo *ai = len ? calloc(1, sizeof *ai) : NULL;

    if (ai) ai->ai_addr = malloc(len);
    if (!ai || !ai->ai_addr) {
        free(ai);
        return NULL;
    }
    memcpy(ai->ai_addr, ss, len);
    ai->ai_family = ss->ss_family;
    ai->ai_socktype = SOCK_STREAM;
    ai->ai_addrlen = len;
    return ai;
}

static struct evutil_addrinfo *unix_addrinfo(const char *path)
{
    struct sockaddr_storage ss;

    return addrinfo_of(&ss, np_addr_unix(path, &ss));
}

/* The one address an IPv4 or IPv6 literal names; NULL for a name (or out of memory: the
 * resolver will do, slower). */
static struct evutil_addrinfo *literal_addrinfo(const char *host, int port)
{
    struct sockaddr_storage ss;

    return addrinfo_of(&ss, np_addr_ip(host, port, &ss));
}

static int start_connect(lua_State *L, struct np_sock_owner *o, const char *host, int port, double timeout,
                         int dgram)
{
    struct np_sock *s;
    int idx;

    if (o->closed) return np_sock_push_fail(L, "closed");
    s = np_sock_new(L, o);
    s->dgram = dgram;
    idx = lua_gettop(L);
    s->op = NP_OP_CONNECT;
    s->connect_step = connect_step;
    s->deadline = timeout > 0 ? np_now() + timeout : 0;
    s->resolving = NULL;
    /* an address needs no resolver: straight to connect() */
    if ((s->own_addr = literal_addrinfo(host, port))) {
        s->next_addr = s->own_addr;
        if (connect_next(s) == DONE) return push_connect(L, s, idx);
        return np_sock_yield(L, s, idx);
    }
    struct np_resolve *r = np_resolve_start(host, port, on_resolved, s);
    if (r) {
        s->resolving = r;
        arm_connect(s);                 /* a bare timer: the deadline while resolving */
    } else if (connect_next(s) == DONE) {
        return push_connect(L, s, idx);
    }
    return np_sock_yield(L, s, idx);
}

int np_sock_connect(lua_State *L, struct np_sock_owner *o, const char *host, int port, double timeout)
{
    return start_connect(L, o, host, port, timeout, 0);
}

int np_sock_connect_udp(lua_State *L, struct np_sock_owner *o, const char *host, int port, double timeout)
{
    return start_connect(L, o, host, port, timeout, 1);
}

int np_sock_connect_unix(lua_State *L, struct np_sock_owner *o, const char *path, double timeout)
{
    struct np_sock *s;
    int idx;

    if (o->closed) return np_sock_push_fail(L, "closed");
    s = np_sock_new(L, o);
    idx = lua_gettop(L);
    s->op = NP_OP_CONNECT;
    s->connect_step = connect_step;
    s->deadline = timeout > 0 ? np_now() + timeout : 0;
    s->own_addr = unix_addrinfo(path);
    if (!s->own_addr) return np_sock_push_fail(L, "bad unix socket path");
    s->next_addr = s->own_addr;
    if (connect_next(s) == DONE) return push_connect(L, s, idx);
    return np_sock_yield(L, s, idx);
}

/* ---- core.resolve: a lookup alone, on a socket object that holds it (so that closing its
 * owner cancels it) and is closed once the answer is pushed ---- */

/* Pushes { "ip", ... } (each address once) or nil, "resolve: why". */
static int push_addresses(lua_State *L, struct np_sock *s)
{
    char ip[INET6_ADDRSTRLEN];
    int n = 0;

    if (s->dns_error || !s->addrs) {
        return np_sock_push_fail(L, s->dns_error ? evutil_gai_strerror(s->dns_error) : "no address");
    }
    lua_newtable(L);
    for (struct evutil_addrinfo *ai = s->addrs; ai; ai = ai->ai_next) {
        const void *a = ai->ai_family == AF_INET ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
                      : ai->ai_family == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr : NULL;
        int seen = 0;
        if (!a || !inet_ntop(ai->ai_family, a, ip, sizeof ip)) continue;
        for (int i = 1; i <= n && !seen; i++) {
            lua_rawgeti(L, -1, i);
            seen = !strcmp(lua_tostring(L, -1), ip);
            lua_pop(L, 1);
        }
        if (seen) continue;
        lua_pushstring(L, ip);
        lua_rawseti(L, -2, ++n);
    }
    return 1;
}

/* Pushes core.reverse's answer: the name, or nil, "resolve: why". */
static int push_name(lua_State *L, struct np_sock *s)
{
    char why[96];

    if (!s->reverse_name) {
        snprintf(why, sizeof why, "resolve: %s", evdns_err_to_string(s->dns_error));
        return np_sock_push_fail(L, why);
    }
    lua_pushstring(L, s->reverse_name);
    return 1;
}

/* The answer (or the deadline): pushed on the owner's coroutine, which is resumed. */
static void resolve_finish(struct np_sock *s, int timed_out)
{
    struct np_sock_owner *o = s->owner;
    int n = timed_out ? np_sock_push_fail(o->co, "timeout")
          : s->reverse ? push_name(o->co, s) : push_addresses(o->co, s);

    np_sock_close(s);                   /* cancels a lookup still running, frees the answer */
    o->resume(o, n);
}

static void resolve_answered(struct np_sock *s)
{
    resolve_finish(s, 0);
}

static void resolve_step(struct np_sock *s, short what)
{
    resolve_finish(s, 1);               /* only the deadline's timer fires here */
}

static void on_reversed(int err, const char *name, void *arg)
{
    struct np_sock *s = arg;
    int answered_at_once = (s->resolving == NULL);

    s->resolving = NULL;
    s->dns_error = err;
    s->reverse_name = name ? strdup(name) : NULL;
    if (answered_at_once) return;
    event_del(&s->wev);                  /* the deadline */
    resolve_answered(s);
}

/* A lookup alone (core.resolve of a name, core.reverse of an address): its answer pushed at
 * once, or a yield until it comes or timeout seconds pass. */
static int lookup(lua_State *L, struct np_sock_owner *o, const char *what, int reverse, double timeout)
{
    struct np_sock *s;
    int n;

    if (o->closed) return np_sock_push_fail(L, "closed");
    s = np_sock_new(L, o);
    s->op = NP_OP_CONNECT;
    s->connect_step = resolve_step;
    s->resolve_only = 1;
    s->reverse = reverse;
    s->deadline = timeout > 0 ? np_now() + timeout : 0;
    s->resolving = reverse ? np_resolve_reverse(what, on_reversed, s) : np_resolve_start(what, 1, on_resolved, s);
    if (s->resolving) {
        arm_connect(s);                 /* the deadline */
        return np_sock_yield(L, s, lua_gettop(L));
    }
    /* answered at once: a literal or /etc/hosts; for a reverse lookup, not an address */
    n = reverse ? push_name(L, s) : push_addresses(L, s);
    np_sock_close(s);
    lua_remove(L, -n - 1);              /* the socket object */
    return n;
}

int np_sock_resolve(lua_State *L, struct np_sock_owner *o, const char *host, double timeout)
{
    return lookup(L, o, host, 0, timeout);
}

int np_sock_reverse(lua_State *L, struct np_sock_owner *o, const char *ip, double timeout)
{
    return lookup(L, o, ip, 1, timeout);
}

