/* Cosockets: connect/read/peek/write that yield the session coroutine on EAGAIN and are
 * resumed by the event loop with their results (OpenResty's cosocket model). */
#include "sock.h"
#include "conn.h"
#include "log.h"
#include "loop.h"
#include "luavm.h"
#include "resolve.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/util.h>
#include <lauxlib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SOCK_MT "netproxy.sock"
#define DEFAULT_TIMEOUT 30.0
#define DEFAULT_CONNECT_TIMEOUT 10.0
#define READ_MAX (64 * 1024)   /* most one read() hands to Lua */
#define PEEK_MAX (64 * 1024)   /* most bytes a connector may look at before deciding */

enum { PENDING, DONE };

static char scratch[READ_MAX];

static void on_readable(evutil_socket_t fd, short what, void *arg);
static void on_writable(evutil_socket_t fd, short what, void *arg);

/* A short, stable token for an errno, as OpenResty's cosockets give. */
static const char *err_token(int err)
{
    switch (err) {
    case ECONNREFUSED: return "refused";
    case ETIMEDOUT: return "timeout";
    case ENETUNREACH:
    case EHOSTUNREACH: return "unreachable";
    case ECONNRESET: return "reset";
    case EPIPE: return "closed";
    default: return strerror(err);
    }
}

static int push_fail(lua_State *L, const char *err)
{
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
}

static void set_fds(struct np_sock *s, int rfd, int wfd)
{
    s->fd = rfd;
    s->wfd = wfd;
    event_assign(&s->rev, np_base, rfd, EV_READ, on_readable, s);
    event_assign(&s->wev, np_base, wfd, EV_WRITE, on_writable, s);
}

static void set_fd(struct np_sock *s, int fd)
{
    set_fds(s, fd, fd);
}

static void unlink_sock(struct np_sock *s)
{
    if (!s->pprev) return;
    if (s->next) s->next->pprev = s->pprev;
    *s->pprev = s->next;
    s->next = NULL;
    s->pprev = NULL;
}

static void drop_anchor(struct np_sock *s)
{
    if (s->self_ref != LUA_NOREF) luaL_unref(np_L, LUA_REGISTRYINDEX, s->self_ref);
    s->self_ref = LUA_NOREF;
}

void np_sock_close(struct np_sock *s)
{
    if (s->resolving) np_resolve_cancel(s->resolving);
    s->resolving = NULL;
    if (s->addrs) evutil_freeaddrinfo(s->addrs);
    s->addrs = s->next_addr = NULL;
    /* The events are assigned from creation on (a bare timer while resolving). */
    event_del(&s->rev);
    event_del(&s->wev);
    if (s->wfd >= 0 && s->wfd != s->fd) close(s->wfd);
    if (s->fd >= 0) close(s->fd);
    s->fd = s->wfd = -1;
    if (s->inbuf) evbuffer_free(s->inbuf);
    if (s->outbuf) evbuffer_free(s->outbuf);
    s->inbuf = s->outbuf = NULL;
    s->rop = s->wop = NP_OP_NONE;
    drop_anchor(s);
    unlink_sock(s);
    s->conn = NULL;
}

int np_sock_detach(struct np_sock *s, int *wfd, struct evbuffer **inbuf)
{
    int fd = s->fd;

    event_del(&s->rev);
    event_del(&s->wev);
    *wfd = s->wfd;
    s->fd = s->wfd = -1;
    *inbuf = s->inbuf;
    s->inbuf = NULL;
    np_sock_close(s);
    return fd;
}

static struct np_sock *sock_new(lua_State *L, struct np_conn *c)
{
    struct np_sock *s = lua_newuserdata(L, sizeof *s);

    memset(s, 0, sizeof *s);
    s->fd = s->wfd = -1;
    s->self_ref = LUA_NOREF;
    s->timeout = DEFAULT_TIMEOUT;
    s->inbuf = evbuffer_new();
    s->outbuf = evbuffer_new();
    /* A bare timer until there is an fd: connect's deadline while resolving. */
    event_assign(&s->rev, np_base, -1, 0, on_readable, s);
    event_assign(&s->wev, np_base, -1, 0, on_writable, s);
    luaL_getmetatable(L, SOCK_MT);
    lua_setmetatable(L, -2);
    s->conn = c;
    s->next = c->socks;
    if (c->socks) c->socks->pprev = &s->next;
    c->socks = s;
    s->pprev = &c->socks;
    return s;
}

static void set_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

struct np_sock *np_sock_push(lua_State *L, struct np_conn *c, int rfd, int wfd)
{
    struct np_sock *s = sock_new(L, c);

    set_fds(s, rfd, wfd);
    if (rfd == wfd) set_nodelay(rfd);
    snprintf(s->peer, sizeof s->peer, "%s", c->client);
    return s;
}

struct np_sock *np_sock_check(lua_State *L, int idx)
{
    return luaL_checkudata(L, idx, SOCK_MT);
}

/* A cosocket call may only wait in its own connection's session coroutine. */
static int check_waitable(lua_State *L, struct np_sock *s)
{
    if (!s->conn) return 0;
    if (L != s->conn->co)
        luaL_error(L, "socket used outside its connection's coroutine");
    return 1;
}

/* (Re)arms ev until the op's deadline. */
static void arm(struct np_sock *s, struct event *ev)
{
    struct timeval tv = np_tv(s->op_deadline - np_now());

    event_add(ev, s->op_deadline > 0 ? &tv : NULL);
}

/* Arms ev with the op's timeout, anchors the userdata at idx and yields. */
static int wait_on(lua_State *L, struct np_sock *s, struct event *ev, int idx, double timeout)
{
    s->op_deadline = timeout > 0 ? np_now() + timeout : 0;
    arm(s, ev);
    lua_pushvalue(L, idx);
    s->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    s->conn->waiting = 1;
    return lua_yield(L, 0);
}

/* Hands nresults values, already pushed on the session coroutine, back to it. */
static void resume_with(struct np_sock *s, int nresults)
{
    drop_anchor(s);
    np_conn_resume(s->conn, nresults);
}

static double opt_timeout(lua_State *L, int idx, double dflt)
{
    double t = luaL_optnumber(L, idx, dflt);

    luaL_argcheck(L, t >= 0, idx, "timeout must be >= 0");
    return t;
}

/* ---- read: up to max bytes, at least one ---- */

/* Pushes what read() gave; returns 0 (nothing pushed) when the socket has nothing yet. */
static int push_read(lua_State *L, struct np_sock *s, size_t max)
{
    ssize_t n;

    if (evbuffer_get_length(s->inbuf) > 0) {
        n = evbuffer_remove(s->inbuf, scratch, max);
        lua_pushlstring(L, scratch, n);
        return 1;
    }
    n = read(s->fd, scratch, max);
    if (n > 0) {
        lua_pushlstring(L, scratch, n);
        return 1;
    }
    if (n == 0) return push_fail(L, "closed");
    if (errno == EAGAIN || errno == EINTR) return 0;
    return push_fail(L, err_token(errno));
}

static int sock_read(lua_State *L)
{
    struct np_sock *s = np_sock_check(L, 1);
    lua_Integer max = luaL_optinteger(L, 2, READ_MAX);
    double timeout = opt_timeout(L, 3, s->timeout);
    int n;

    luaL_argcheck(L, max > 0, 2, "must be > 0");
    if (max > READ_MAX) max = READ_MAX;
    if (!check_waitable(L, s) || s->fd < 0) return push_fail(L, "closed");
    if ((n = push_read(L, s, max))) return n;
    s->rop = NP_OP_READ;
    s->want = max;
    return wait_on(L, s, &s->rev, 1, timeout);
}

/* ---- peek: wait until n bytes are buffered, return them all, consume none ---- */

/* 1 when n bytes are buffered, 0 to wait, -1 at EOF, -2 on error (errno set). */
static int fill_inbuf(struct np_sock *s, size_t n)
{
    size_t have;

    while ((have = evbuffer_get_length(s->inbuf)) < n) {
        int got = evbuffer_read(s->inbuf, s->fd, (int)(n - have));
        if (got == 0) return -1;
        if (got < 0) return (errno == EAGAIN || errno == EINTR) ? 0 : -2;
    }
    return 1;
}

static void push_inbuf(lua_State *L, struct np_sock *s)
{
    size_t len = evbuffer_get_length(s->inbuf);

    lua_pushlstring(L, (const char *)evbuffer_pullup(s->inbuf, -1), len);
}

/* Pushes peek's results for a fill status; returns their count. */
static int push_peek(lua_State *L, struct np_sock *s, int status, const char *why)
{
    if (status == 1) {
        push_inbuf(L, s);
        return 1;
    }
    lua_pushnil(L);
    lua_pushstring(L, why ? why : status == -1 ? "closed" : err_token(errno));
    push_inbuf(L, s);
    return 3;
}

static int sock_peek(lua_State *L)
{
    struct np_sock *s = np_sock_check(L, 1);
    lua_Integer n = luaL_checkinteger(L, 2);
    double timeout = opt_timeout(L, 3, s->timeout);
    int status;

    luaL_argcheck(L, n > 0 && n <= PEEK_MAX, 2, "must be 1..65536");
    if (!check_waitable(L, s) || s->fd < 0) return push_fail(L, "closed");
    status = fill_inbuf(s, n);
    if (status) return push_peek(L, s, status, NULL);
    s->rop = NP_OP_PEEK;
    s->want = n;
    return wait_on(L, s, &s->rev, 1, timeout);
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    struct np_sock *s = arg;
    lua_State *co = s->conn->co;
    int n;

    if (s->rop == NP_OP_READ) {
        n = (what & EV_TIMEOUT) ? push_fail(co, "timeout") : push_read(co, s, s->want);
    } else {
        int status = (what & EV_TIMEOUT) ? -3 : fill_inbuf(s, s->want);
        n = status ? push_peek(co, s, status, status == -3 ? "timeout" : NULL) : 0;
    }
    if (n == 0) {               /* woken for nothing: wait again until the same deadline */
        arm(s, &s->rev);
        return;
    }
    s->rop = NP_OP_NONE;
    resume_with(s, n);
}

/* ---- write: all of it, or an error ---- */

static int sock_write(lua_State *L)
{
    struct np_sock *s = np_sock_check(L, 1);
    size_t len, sent = 0;
    const char *data = luaL_checklstring(L, 2, &len);
    double timeout = opt_timeout(L, 3, s->timeout);

    if (!check_waitable(L, s) || s->fd < 0) return push_fail(L, "closed");
    while (sent < len) {
        ssize_t n = write(s->wfd, data + sent, len - sent);
        if (n > 0) {
            sent += n;
        } else if (errno == EAGAIN) {
            break;
        } else if (errno != EINTR) {
            return push_fail(L, err_token(errno));
        }
    }
    if (sent == len) {
        lua_pushinteger(L, len);
        return 1;
    }
    evbuffer_add(s->outbuf, data + sent, len - sent);
    s->wop = NP_OP_WRITE;
    s->want = len;
    return wait_on(L, s, &s->wev, 1, timeout);
}

static void write_ready(struct np_sock *s, short what)
{
    lua_State *co = s->conn->co;

    if (what & EV_TIMEOUT) {
        evbuffer_drain(s->outbuf, evbuffer_get_length(s->outbuf));
        s->wop = NP_OP_NONE;
        resume_with(s, push_fail(co, "timeout"));
        return;
    }
    while (evbuffer_get_length(s->outbuf) > 0) {
        if (evbuffer_write(s->outbuf, s->wfd) < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                arm(s, &s->wev);
                return;
            }
            s->wop = NP_OP_NONE;
            resume_with(s, push_fail(co, err_token(errno)));
            return;
        }
    }
    s->wop = NP_OP_NONE;
    lua_pushinteger(co, s->want);
    resume_with(s, 1);
}

/* ---- connect: resolve without blocking, then try each address until the deadline ---- */

static void arm_connect(struct np_sock *s)
{
    struct timeval tv = np_tv(s->deadline - np_now());

    event_add(&s->wev, s->deadline > 0 ? &tv : NULL);
}

/* Starts connecting to the next address; DONE when connected or out of addresses. */
static int connect_next(struct np_sock *s)
{
    while (s->next_addr) {
        struct evutil_addrinfo *ai = s->next_addr;
        int fd;

        s->next_addr = ai->ai_next;
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            s->last_errno = errno;
            continue;
        }
        np_addr_format(ai->ai_addr, s->peer, sizeof s->peer);
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 || errno == EINPROGRESS) {
            set_fd(s, fd);
            if (errno != EINPROGRESS) return DONE;
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
    s->wop = NP_OP_NONE;
    if (s->fd >= 0) set_nodelay(s->fd);
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
    if (s->dns_error)
        snprintf(why, sizeof why, "resolve: %s", evutil_gai_strerror(s->dns_error));
    else
        snprintf(why, sizeof why, "%s", s->last_errno ? err_token(s->last_errno) : "no address");
    return push_fail(L, why);
}

static void connect_done_async(struct np_sock *s)
{
    lua_State *co = s->conn->co;

    lua_rawgeti(co, LUA_REGISTRYINDEX, s->self_ref);
    int n = push_connect(co, s, lua_gettop(co));
    if (n == 1) lua_remove(co, -2);     /* keep just the socket */
    else lua_remove(co, -3);
    resume_with(s, n);
}

static void on_resolved(int err, struct evutil_addrinfo *res, void *arg)
{
    struct np_sock *s = arg;
    int answered_at_once = (s->resolving == NULL);

    s->resolving = NULL;
    s->dns_error = err;
    s->addrs = s->next_addr = res;
    if (answered_at_once) return;       /* core_connect carries on */
    event_del(&s->wev);                  /* the resolve deadline */
    if (connect_next(s) == DONE) connect_done_async(s);
}

static void connect_ready(struct np_sock *s, short what)
{
    int err = 0;
    socklen_t len = sizeof err;

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

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    struct np_sock *s = arg;

    if (s->wop == NP_OP_CONNECT) connect_ready(s, what);
    else write_ready(s, what);
}

/* core.connect(host, port [, { timeout = seconds }]) -> sock | nil, err */
static int core_connect(lua_State *L)
{
    const char *host = luaL_checkstring(L, 1);
    lua_Integer port = luaL_checkinteger(L, 2);
    double timeout = DEFAULT_CONNECT_TIMEOUT;
    struct np_conn *c = np_conn_current();
    struct np_sock *s;
    int idx;

    luaL_argcheck(L, port > 0 && port < 65536, 2, "port must be 1..65535");
    if (lua_istable(L, 3)) {
        lua_getfield(L, 3, "timeout");
        timeout = opt_timeout(L, -1, timeout);
        lua_pop(L, 1);
    }
    if (!c || c->co != L) return luaL_error(L, "connect: only from a connection's coroutine");
    if (c->ended) return push_fail(L, "closed");
    s = sock_new(L, c);
    idx = lua_gettop(L);
    s->wop = NP_OP_CONNECT;
    s->deadline = timeout > 0 ? np_now() + timeout : 0;
    s->resolving = NULL;
    struct np_resolve *r = np_resolve_start(host, (int)port, on_resolved, s);
    if (r) {
        s->resolving = r;
        arm_connect(s);                 /* a bare timer: the deadline while resolving */
    } else if (connect_next(s) == DONE) {
        return push_connect(L, s, idx);
    }
    s->conn->waiting = 1;
    lua_pushvalue(L, idx);
    s->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return lua_yield(L, 0);
}

/* ---- the small things ---- */

static int sock_close(lua_State *L)
{
    np_sock_close(np_sock_check(L, 1));
    return 0;
}

static int sock_settimeout(lua_State *L)
{
    struct np_sock *s = np_sock_check(L, 1);

    s->timeout = opt_timeout(L, 2, DEFAULT_TIMEOUT);
    return 0;
}

/* sock:peer() -> "addr:port" of the other end */
static int sock_peer(lua_State *L)
{
    lua_pushstring(L, np_sock_check(L, 1)->peer);
    return 1;
}

static int sock_tostring(lua_State *L)
{
    struct np_sock *s = np_sock_check(L, 1);

    lua_pushfstring(L, "sock(%s%s)", s->peer, s->fd < 0 ? ", closed" : "");
    return 1;
}

static const luaL_Reg sock_methods[] = {
    { "read", sock_read },
    { "peek", sock_peek },
    { "write", sock_write },
    { "close", sock_close },
    { "settimeout", sock_settimeout },
    { "peer", sock_peer },
    { NULL, NULL },
};

void np_sock_open(lua_State *L)
{
    luaL_newmetatable(L, SOCK_MT);
    lua_newtable(L);
    luaL_register(L, NULL, sock_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, sock_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, sock_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    lua_pushcfunction(L, core_connect);
    lua_setfield(L, -2, "connect");
}
