/* Cosockets: read/peek/write/tls that try the call first and, on EAGAIN, yield the calling
 * coroutine until the event loop has an answer (OpenResty's cosocket model). A socket on
 * which sock:tls() succeeded reads and writes through OpenSSL; everything else is the same.
 * A UDP cosocket (core.connect_udp) reads and writes one datagram per call. */
#include "sock_impl.h"
#include "errtoken.h"
#include "idle.h"
#include "loop.h"
#include "sockpool.h"
#include "text.h"
#include "tls.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/util.h>
#include <lauxlib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT 30.0
#define READ_MAX (64 * 1024)   /* most one read() hands to Lua */
#define PEEK_MAX (16 + 65535)  /* most bytes a connector may look at: the longest PROXY v2 header */

static char scratch[READ_MAX];
static struct np_sock_owner *running;

struct np_sock_owner *np_sock_running(void)
{
    return running;
}

void np_sock_set_running(struct np_sock_owner *o)
{
    running = o;
}

int np_sock_push_fail(lua_State *L, const char *err)
{
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
}

static void on_flush(evutil_socket_t fd, short what, void *arg);
static void on_event(evutil_socket_t fd, short what, void *arg);

void np_sock_set_fds(struct np_sock *s, int rfd, int wfd)
{
    s->fd = rfd;
    s->wfd = wfd;
    event_assign(&s->rev, np_base, rfd, EV_READ, on_event, s);
    event_assign(&s->wev, np_base, wfd, EV_WRITE, on_event, s);
    if (s->sendbuf) event_assign(&s->flush_ev, np_base, wfd, EV_WRITE, on_flush, s);
}

/* Bytes moved on a socket a connection serves through: its counters and idle clock. */
static void count(struct np_sock *s, int dir, ssize_t n)
{
    if (n <= 0 || !s->bytes[dir]) return;
    *s->bytes[dir] += n;
    *s->more_bytes[dir] += n;
    if (s->idle) np_idle_touch(s->idle);
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
    if (s->self_ref != LUA_NOREF) luaL_unref(s->L, LUA_REGISTRYINDEX, s->self_ref);
    s->self_ref = LUA_NOREF;
}

/* Stops a connect under way (its socket, not yet the cosocket's, is closed). */
static void stop_dialing(struct np_sock *s)
{
    if (s->dialing) np_dial_cancel(&s->dialing->d);
}

size_t np_sock_serve(struct np_sock *s, uint64_t *bytes[2], uint64_t *more[2], struct np_idle *idle)
{
    for (int i = 0; i < 2; i++) {
        s->bytes[i] = bytes[i];
        s->more_bytes[i] = more[i];
    }
    s->idle = idle;
    return s->inbuf ? evbuffer_get_length(s->inbuf) : 0;
}

void np_sock_close(struct np_sock *s)
{
    stop_dialing(s);
    np_sock_stop_sniffing(s);
    free(s->dialing);
    s->dialing = NULL;
    /* rev and wev are assigned from creation on; flush_ev with the first send */
    event_del(&s->rev);
    event_del(&s->wev);
    if (s->sendbuf) event_del(&s->flush_ev);
    if (s->ssl) SSL_free(s->ssl);
    s->ssl = NULL;
    if (s->wfd >= 0 && s->wfd != s->fd) close(s->wfd);
    if (s->fd >= 0) close(s->fd);
    s->fd = s->wfd = -1;
    if (s->inbuf) evbuffer_free(s->inbuf);
    if (s->outbuf) evbuffer_free(s->outbuf);
    if (s->sendbuf) evbuffer_free(s->sendbuf);
    s->inbuf = s->outbuf = s->sendbuf = NULL;
    s->bytes[0] = s->bytes[1] = NULL;
    s->idle = NULL;
    s->op = NP_OP_NONE;
    free(s->pool);
    s->pool = NULL;
    drop_anchor(s);
    unlink_sock(s);
    s->owner = NULL;
}

void np_sock_close_all(struct np_sock_owner *o)
{
    while (o->socks) np_sock_close(o->socks);
}

void np_sock_halt_all(struct np_sock_owner *o)
{
    for (struct np_sock *s = o->socks; s; s = s->next) {
        stop_dialing(s);
        np_sock_stop_sniffing(s);
        event_del(&s->rev);
        event_del(&s->wev);
        if (s->sendbuf) event_del(&s->flush_ev);
    }
}

int np_sock_detach(struct np_sock *s, int *wfd, SSL **ssl, struct evbuffer **inbuf)
{
    int fd = s->fd;

    *wfd = s->wfd;
    *ssl = s->ssl;
    *inbuf = s->inbuf;
    s->fd = s->wfd = -1;
    s->ssl = NULL;
    s->inbuf = NULL;
    np_sock_close(s);         /* events off; the fds, taken, stay open */
    return fd;
}

/* The two metatables are also kept under these keys: every method call checks its socket,
 * and a light userdata key is found without hashing a name. */
static const char open_mt_key, done_mt_key;

static void push_mt(lua_State *L, const char *key)
{
    lua_pushlightuserdata(L, (void *)key);
    lua_rawget(L, LUA_REGISTRYINDEX);
}

/* A cosocket of o with no fd and no event assigned yet. */
static struct np_sock *sock_alloc(lua_State *L, struct np_sock_owner *o)
{
    struct np_sock *s = lua_newuserdata(L, sizeof *s);

    memset(s, 0, sizeof *s);
    s->fd = s->wfd = -1;
    s->self_ref = LUA_NOREF;
    s->timeout = DEFAULT_TIMEOUT;
    s->connect_time = -1;
    /* inbuf, outbuf and sendbuf are made when first needed: most sockets never need them */
    push_mt(L, &open_mt_key);
    lua_setmetatable(L, -2);
    s->owner = o;
    s->L = o->L;
    s->next = o->socks;
    if (o->socks) o->socks->pprev = &s->next;
    o->socks = s;
    s->pprev = &o->socks;
    return s;
}

struct np_sock *np_sock_new(lua_State *L, struct np_sock_owner *o)
{
    struct np_sock *s = sock_alloc(L, o);

    /* no fd yet (a connect's): events that are valid to delete */
    event_assign(&s->rev, np_base, -1, 0, on_event, s);
    event_assign(&s->wev, np_base, -1, 0, on_event, s);
    return s;
}

struct np_sock *np_sock_push(lua_State *L, struct np_sock_owner *o, int rfd, int wfd,
                             const char *peer)
{
    struct np_sock *s = sock_alloc(L, o);

    np_sock_set_fds(s, rfd, wfd);
    np_copy_text(s->peer, sizeof s->peer, peer);
    return s;
}

/* Whether the value on top is the metatable under key. */
static int top_is_mt(lua_State *L, const char *key)
{
    int same;

    push_mt(L, key);
    same = lua_rawequal(L, -1, -2);
    lua_pop(L, 1);
    return same;
}

struct np_sock *np_sock_check(lua_State *L, int idx)
{
    struct np_sock *s = lua_touserdata(L, idx);

    if (s && lua_getmetatable(L, idx)) {
        int ok = top_is_mt(L, &open_mt_key) || top_is_mt(L, &done_mt_key);
        lua_pop(L, 1);
        if (ok) return s;
    }
    luaL_typerror(L, idx, SOCK_MT);
    return NULL;
}

void np_sock_forget(lua_State *L, int idx)
{
    if (idx < 0) idx = lua_gettop(L) + idx + 1;
    push_mt(L, &done_mt_key);
    lua_setmetatable(L, idx);
}

/* A cosocket call may only wait in its owner's coroutine; 0 once the owner has ended. */
static int check_waitable(lua_State *L, struct np_sock *s)
{
    if (!s->owner || s->owner->closed) return 0;
    if (L != s->owner->co)
        luaL_error(L, "socket used outside the coroutine that opened it");
    return 1;
}

/* (Re)arms the event the op waits for, until its deadline. */
static void arm(struct np_sock *s)
{
    struct timeval tv = np_tv(s->op_deadline - np_now());

    event_add(s->want_write ? &s->wev : &s->rev, s->op_deadline > 0 ? &tv : NULL);
}

int np_sock_yield(lua_State *L, struct np_sock *s, int idx)
{
    lua_pushvalue(L, idx);
    s->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    s->owner->waiting = 1;
    return lua_yield(L, 0);
}

/* Starts waiting for op (the event chosen by s->want_write) with a timeout, and yields. */
static int wait_on(lua_State *L, struct np_sock *s, enum np_sock_op op, double timeout)
{
    s->op = op;
    s->op_deadline = timeout > 0 ? np_now() + timeout : 0;
    arm(s);
    return np_sock_yield(L, s, 1);
}

void np_sock_resume(struct np_sock *s, int nresults)
{
    event_del(&s->rev);
    event_del(&s->wev);
    s->op = NP_OP_NONE;
    drop_anchor(s);
    s->owner->resume(s->owner, nresults);
}

static double opt_timeout(lua_State *L, int idx, double dflt)
{
    double t = luaL_optnumber(L, idx, dflt);

    luaL_argcheck(L, t >= 0, idx, "timeout must be >= 0");
    return t;
}

/* ---- raw I/O: the socket, or its TLS session ---- */

/* >0 bytes, 0 EOF, -1 with errno (EAGAIN: s->want_write says what to wait for; else s->err). */
static ssize_t io_read(struct np_sock *s, void *buf, size_t len)
{
    ssize_t n;

    if (s->ssl) {
        enum np_tls_want want = NP_TLS_WANT_READ;
        n = np_tls_read(s->ssl, buf, len, &want, s->err, sizeof s->err);
        s->want_write = want == NP_TLS_WANT_WRITE;
        count(s, 0, n);
        return n;
    }
    do {
        n = read(s->fd, buf, len);
    } while (n < 0 && errno == EINTR);
    s->want_write = 0;
    count(s, 0, n);
    if (n < 0 && errno != EAGAIN) snprintf(s->err, sizeof s->err, "%s", np_err_token(errno));
    return n;
}

static ssize_t io_write(struct np_sock *s, const void *buf, size_t len)
{
    ssize_t n;

    if (s->ssl) {
        enum np_tls_want want = NP_TLS_WANT_WRITE;
        n = np_tls_write(s->ssl, buf, len, &want, s->err, sizeof s->err);
        s->want_write = want != NP_TLS_WANT_READ;
        count(s, 1, n);
        return n;
    }
    do {
        n = write(s->wfd, buf, len);    /* SIGPIPE is ignored */
    } while (n < 0 && errno == EINTR);
    s->want_write = 1;
    count(s, 1, n);
    if (n < 0 && errno != EAGAIN) snprintf(s->err, sizeof s->err, "%s", np_err_token(errno));
    return n;
}

/* ---- read: up to max bytes, at least one ---- */

/* Pushes what a read gave; returns 0 (nothing pushed) when there is nothing yet. */
static int push_read(lua_State *L, struct np_sock *s, size_t max)
{
    ssize_t n;

    if (s->inbuf && evbuffer_get_length(s->inbuf) > 0) {
        n = evbuffer_remove(s->inbuf, scratch, max);
        lua_pushlstring(L, scratch, n);
        return 1;
    }
    n = io_read(s, scratch, max);
    if (n > 0 || (n == 0 && s->dgram)) {       /* (an empty datagram is not an end) */
        lua_pushlstring(L, scratch, n);
        return 1;
    }
    if (n == 0) return np_sock_push_fail(L, "closed");
    if (errno == EAGAIN) return 0;
    return np_sock_push_fail(L, s->err);
}

static int sock_read(lua_State *L)
{
    struct np_sock *s = np_sock_check(L, 1);
    lua_Integer max = luaL_optinteger(L, 2, READ_MAX);
    double timeout = opt_timeout(L, 3, s->timeout);
    int n;

    luaL_argcheck(L, max > 0, 2, "must be > 0");
    if (max > READ_MAX) max = READ_MAX;
    if (!check_waitable(L, s) || s->fd < 0) return np_sock_push_fail(L, "closed");
    if ((n = push_read(L, s, max))) return n;
    s->want = max;
    return wait_on(L, s, NP_OP_READ, timeout);
}

/* ---- peek: wait until n bytes are buffered, return them all, consume none ---- */

/* Reads what the socket has on the way, up to PEEK_MAX buffered, until at least n bytes are:
 * one pass takes whatever has arrived, so a caller that asks for one byte more each time
 * (a delimited read) costs one read per arrival, not one per byte.
 * 1 when n bytes are buffered, 0 to wait, -1 at EOF, -2 on error (s->err). */
static int fill_inbuf(struct np_sock *s, size_t n)
{
    if (!s->inbuf && !(s->inbuf = evbuffer_new())) {
        snprintf(s->err, sizeof s->err, "out of memory");
        return -2;
    }
    for (;;) {
        size_t have = evbuffer_get_length(s->inbuf), room;
        ssize_t got;

        if (have >= PEEK_MAX) return 1;
        room = PEEK_MAX - have < READ_MAX ? PEEK_MAX - have : READ_MAX;
        got = io_read(s, scratch, room);
        if (got > 0) {
            evbuffer_add(s->inbuf, scratch, got);
            if ((size_t)got < room && have + got >= n) return 1;   /* drained, and enough */
            continue;
        }
        if (have >= n) return 1;        /* EOF or an error: the next call reports it */
        if (got == 0) return -1;
        return errno == EAGAIN ? 0 : -2;
    }
}

static void push_inbuf(lua_State *L, struct np_sock *s)
{
    size_t len = s->inbuf ? evbuffer_get_length(s->inbuf) : 0;

    if (len == 0) {
        lua_pushliteral(L, "");
        return;
    }
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
    lua_pushstring(L, why ? why : status == -1 ? "closed" : s->err);
    push_inbuf(L, s);
    return 3;
}

static int sock_peek(lua_State *L)
{
    struct np_sock *s = np_sock_check(L, 1);
    lua_Integer n = luaL_checkinteger(L, 2);
    double timeout = opt_timeout(L, 3, s->timeout);
    int status;

    luaL_argcheck(L, n > 0 && n <= PEEK_MAX, 2, "must be 1..65551");
    if (s->dgram) return luaL_error(L, "peek: a udp socket reads whole datagrams (use read)");
    if (!check_waitable(L, s) || s->fd < 0) return np_sock_push_fail(L, "closed");
    status = fill_inbuf(s, n);
    if (status) return push_peek(L, s, status, NULL);
    s->want = n;
    return wait_on(L, s, NP_OP_PEEK, timeout);
}

static void read_ready(struct np_sock *s, short what)
{
    lua_State *co = s->owner->co;
    int n;

    if (what & EV_TIMEOUT) {
        n = s->op == NP_OP_READ ? np_sock_push_fail(co, "timeout") : push_peek(co, s, -3, "timeout");
    } else if (s->op == NP_OP_READ) {
        n = push_read(co, s, s->want);
    } else {
        int status = fill_inbuf(s, s->want);
        n = status ? push_peek(co, s, status, NULL) : 0;
    }
    if (n == 0) {               /* woken for nothing: wait again until the same deadline */
        arm(s);
        return;
    }
    np_sock_resume(s, n);
}

/* ---- write: all of it, or an error ---- */

static int sock_write(lua_State *L)
{
    struct np_sock *s = np_sock_check(L, 1);
    size_t len, sent = 0;
    const char *data = luaL_checklstring(L, 2, &len);
    double timeout = opt_timeout(L, 3, s->timeout);

    if (!check_waitable(L, s) || s->fd < 0) return np_sock_push_fail(L, "closed");
    if (s->dgram && len == 0) {         /* an empty datagram, which the loop below would skip */
        if (send(s->fd, data, 0, 0) < 0) return np_sock_push_fail(L, np_err_token(errno));
        lua_pushinteger(L, 0);
        return 1;
    }
    while (sent < len) {
        ssize_t n = io_write(s, data + sent, len - sent);
        if (n > 0) sent += n;
        else if (errno == EAGAIN) break;
        else return np_sock_push_fail(L, s->err);
    }
    if (sent == len) {
        lua_pushinteger(L, len);
        return 1;
    }
    if (!s->outbuf && !(s->outbuf = evbuffer_new())) return np_sock_push_fail(L, "out of memory");
    evbuffer_add(s->outbuf, data + sent, len - sent);
    s->want = len;
    return wait_on(L, s, NP_OP_WRITE, timeout);
}

static void write_ready(struct np_sock *s, short what)
{
    lua_State *co = s->owner->co;

    if (what & EV_TIMEOUT) {
        evbuffer_drain(s->outbuf, evbuffer_get_length(s->outbuf));
        np_sock_resume(s, np_sock_push_fail(co, "timeout"));
        return;
    }
    while (evbuffer_get_length(s->outbuf) > 0) {
        size_t len = evbuffer_get_length(s->outbuf);
        if (len > READ_MAX) len = READ_MAX;
        ssize_t n = io_write(s, evbuffer_pullup(s->outbuf, len), len);
        if (n > 0) {
            evbuffer_drain(s->outbuf, n);
        } else if (errno == EAGAIN) {
            arm(s);
            return;
        } else {
            np_sock_resume(s, np_sock_push_fail(co, s->err));
            return;
        }
    }
    lua_pushinteger(co, s->want);
    np_sock_resume(s, 1);
}

/* ---- send: write without waiting; the rest is flushed in the background ---- */

/* Writes what the send buffer holds: 1 when it is empty, 0 when the socket is full, -1 on
 * an error (s->err). */
static int flush_some(struct np_sock *s)
{
    while (evbuffer_get_length(s->sendbuf) > 0) {
        size_t len = evbuffer_get_length(s->sendbuf);
        if (len > READ_MAX) len = READ_MAX;
        ssize_t n = io_write(s, evbuffer_pullup(s->sendbuf, len), len);
        if (n > 0) evbuffer_drain(s->sendbuf, n);
        else if (n < 0 && errno == EAGAIN) return 0;
        else return -1;
    }
    return 1;
}

/* A flush error ends the reader too: a coroutine waiting on this socket hears of it. */
static void send_failed(struct np_sock *s)
{
    s->send_failed = 1;
    evbuffer_drain(s->sendbuf, evbuffer_get_length(s->sendbuf));
    if (s->op == NP_OP_READ || s->op == NP_OP_PEEK || s->op == NP_OP_FLUSH)
        np_sock_resume(s, np_sock_push_fail(s->owner->co, s->err));
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    struct np_sock *s = arg;
    int rc = flush_some(s);

    if (rc == 0) {
        event_add(&s->flush_ev, NULL);
    } else if (rc < 0) {
        send_failed(s);
    } else if (s->op == NP_OP_FLUSH) {
        lua_pushboolean(s->owner->co, 1);
        np_sock_resume(s, 1);
    }
}

/* sock:send(data) -> bytes still waiting to be sent (0: all written) | nil, err
 * Never waits, and may be called from any coroutine or hook: what the socket cannot take
 * now is kept and flushed as it drains. The caller bounds it (sock:pending()). */
static int sock_send(lua_State *L)
{
    struct np_sock *s = np_sock_check(L, 1);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);

    if (s->dgram) return luaL_error(L, "send: a udp socket sends whole datagrams (use write)");
    if (!s->owner || s->owner->closed || s->fd < 0) return np_sock_push_fail(L, "closed");
    if (s->send_failed) return np_sock_push_fail(L, s->err);
    if (!s->sendbuf) {
        if (!(s->sendbuf = evbuffer_new())) return np_sock_push_fail(L, "out of memory");
        event_assign(&s->flush_ev, np_base, s->wfd, EV_WRITE, on_flush, s);
    }
    if (evbuffer_add(s->sendbuf, data, len) < 0) return np_sock_push_fail(L, "out of memory");
    if (!event_pending(&s->flush_ev, EV_WRITE, NULL)) {
        int rc = flush_some(s);
        if (rc < 0) {
            send_failed(s);
            return np_sock_push_fail(L, s->err);
        }
        if (rc == 0) event_add(&s->flush_ev, NULL);
    }
    lua_pushinteger(L, (lua_Integer)evbuffer_get_length(s->sendbuf));
    return 1;
}

/* sock:pending() -> bytes accepted by send and not yet written */
static int sock_pending(lua_State *L)
{
    struct np_sock *s = np_sock_check(L, 1);

    lua_pushinteger(L, s->sendbuf ? (lua_Integer)evbuffer_get_length(s->sendbuf) : 0);
    return 1;
}

/* sock:flush() -> true | nil, err: waits until everything sent is written. */
static int sock_flush(lua_State *L)
{
    struct np_sock *s = np_sock_check(L, 1);

    if (!check_waitable(L, s) || s->fd < 0) return np_sock_push_fail(L, "closed");
    if (s->send_failed) return np_sock_push_fail(L, s->err);
    if (!s->sendbuf || evbuffer_get_length(s->sendbuf) == 0) {
        lua_pushboolean(L, 1);
        return 1;
    }
    s->op = NP_OP_FLUSH;
    return np_sock_yield(L, s, 1);
}

/* sock:shutdown(): no more writes (the peer reads EOF); reading goes on. */
static int sock_shutdown(lua_State *L)
{
    struct np_sock *s = np_sock_check(L, 1);

    if (s->fd < 0) return np_sock_push_fail(L, "closed");
    if (s->ssl) SSL_shutdown(s->ssl);
    if (s->wfd == s->fd) shutdown(s->fd, SHUT_WR);
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- tls: the handshake, as a server or a client ---- */

/* One handshake step; pushes the results and returns their count, or 0 to wait more. */
static int handshake_step(lua_State *L, struct np_sock *s)
{
    char info[160];

    switch (np_tls_handshake(s->ssl, s->err, sizeof s->err)) {
    case NP_TLS_DONE:
        np_tls_describe(s->ssl, info, sizeof info);
        lua_pushboolean(L, 1);
        lua_pushstring(L, info);
        return 2;
    case NP_TLS_WANT_READ: s->want_write = 0; return 0;
    case NP_TLS_WANT_WRITE: s->want_write = 1; return 0;
    default: return np_sock_push_fail(L, s->err);
    }
}

/* sock:tls(context [, { sni =, verify_name =, timeout = }]) -> true, "TLSv1.3 ..." | nil, err
 * Runs the handshake in the context's role; reads and writes go through TLS afterwards. */
static int sock_tls(lua_State *L)
{
    struct np_sock *s = np_sock_check(L, 1);
    int server, n;
    SSL_CTX *ctx = np_tls_check_ctx(L, 2, &server);
    const char *sni = NULL, *verify_name = NULL;
    double timeout = s->timeout;

    if (lua_istable(L, 3)) {
        lua_getfield(L, 3, "sni");
        lua_getfield(L, 3, "verify_name");
        lua_getfield(L, 3, "timeout");
        sni = lua_tostring(L, -3);          /* the options table keeps them alive */
        verify_name = lua_tostring(L, -2);
        timeout = opt_timeout(L, -1, timeout);
        lua_pop(L, 3);
    }
    if (!check_waitable(L, s) || s->fd < 0) return np_sock_push_fail(L, "closed");
    if (s->dgram) return luaL_error(L, "tls: not over a udp socket");
    if (s->ssl) return luaL_error(L, "tls: this socket already speaks TLS");
    if (s->inbuf && evbuffer_get_length(s->inbuf) > 0)
        return np_sock_push_fail(L, "tls: bytes were read ahead of the handshake");
    s->ssl = np_tls_new(ctx, server, s->fd, sni, verify_name);
    if (!s->ssl) return np_sock_push_fail(L, "tls: out of memory");
    if ((n = handshake_step(L, s))) return n;
    return wait_on(L, s, NP_OP_HANDSHAKE, timeout);
}

static void handshake_ready(struct np_sock *s, short what)
{
    int n = (what & EV_TIMEOUT) ? np_sock_push_fail(s->owner->co, "tls: handshake timeout")
                                : handshake_step(s->owner->co, s);

    if (n == 0) arm(s);
    else np_sock_resume(s, n);
}

static void on_event(evutil_socket_t fd, short what, void *arg)
{
    struct np_sock *s = arg;

    switch (s->op) {
    case NP_OP_READ:
    case NP_OP_PEEK: read_ready(s, what); break;
    case NP_OP_WRITE: write_ready(s, what); break;
    case NP_OP_HANDSHAKE: handshake_ready(s, what); break;
    case NP_OP_FLUSH:
    case NP_OP_NONE: break;
    }
}

/* ---- keepalive: an idle connection outlives its task in the worker's pool ---- */

#define KEEPALIVE_IDLE 60.0     /* seconds (OpenResty's lua_socket_keepalive_timeout) */
#define KEEPALIVE_SIZE 30       /* idle connections per pool (lua_socket_pool_size) */
#define POOL_NAME_MAX 256

/* Why s cannot be pooled now, or NULL: it must be a plain idle TCP (or TLS) connection, with
 * nothing read ahead or waiting to be written, so the next task starts on a clean exchange. */
static const char *not_poolable(struct np_sock *s)
{
    if (s->fd < 0 || !s->owner) return "closed";
    if (s->op != NP_OP_NONE || s->dialing || s->sniffing) return "socket busy";
    if (s->dgram) return "a udp socket is not pooled";
    if (s->wfd != s->fd || s->bytes[0]) return "not an upstream connection";
    if ((s->inbuf && evbuffer_get_length(s->inbuf)) || (s->ssl && SSL_pending(s->ssl)))
        return "unread data in buffer";
    if (s->send_failed || (s->sendbuf && evbuffer_get_length(s->sendbuf)) ||
        (s->outbuf && evbuffer_get_length(s->outbuf)))
        return "unsent data in buffer";
    return NULL;
}

/* sock:setkeepalive([idle [, size [, name]]]) -> true | nil, err
 * The connection goes idle into pool name (default: the pool core.connect took it for, else
 * its peer's address) for at most idle seconds (0: no limit), the pool holding at most size;
 * this Lua object is closed. One that cannot be pooled is closed and the reason returned. */
static int sock_setkeepalive(lua_State *L)
{
    struct np_sock *s = np_sock_check(L, 1);
    double idle = opt_timeout(L, 2, KEEPALIVE_IDLE);
    lua_Integer size = luaL_optinteger(L, 3, KEEPALIVE_SIZE);
    const char *name = luaL_optstring(L, 4, s->pool ? s->pool : s->peer);
    const char *why = not_poolable(s);
    char key[POOL_NAME_MAX];
    SSL *ssl = s->ssl;
    int fd = s->fd;

    luaL_argcheck(L, size > 0, 3, "pool size must be > 0");
    luaL_argcheck(L, strlen(name) < sizeof key, 4, "pool name longer than 255 bytes");
    if (why) {
        np_sock_close(s);
        np_sock_forget(L, 1);
        return np_sock_push_fail(L, why);
    }
    snprintf(key, sizeof key, "%s", name);  /* name may be s->pool, freed by the close */
    s->fd = s->wfd = -1;                    /* taken from the socket: the close leaves them */
    s->ssl = NULL;
    int reused = s->reused;
    np_sock_close(s);
    np_sock_forget(L, 1);
    if (np_sockpool_put(key, fd, ssl, reused, idle, (int)size) < 0) return np_sock_push_fail(L, "out of memory");
    lua_pushboolean(L, 1);
    return 1;
}

struct np_sock *np_sock_push_pooled(lua_State *L, struct np_sock_owner *o, const char *name)
{
    SSL *ssl;
    int reused, fd = np_sockpool_take(name, &ssl, &reused);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char peer[NP_ADDRSTRLEN] = "?";
    struct np_sock *s;

    if (fd < 0) return NULL;
    if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0)
        np_addr_format((struct sockaddr *)&ss, len, peer, sizeof peer);
    s = np_sock_push(L, o, fd, fd, peer);
    s->ssl = ssl;
    s->reused = reused + 1;
    s->pool = strdup(name);                 /* (NULL if out of memory: the peer names it) */
    return s;
}

/* sock:reusedtimes() -> how many times this connection was taken from an idle pool */
static int sock_reusedtimes(lua_State *L)
{
    lua_pushinteger(L, np_sock_check(L, 1)->reused);
    return 1;
}

/* sock:secure() -> whether the socket speaks TLS (sock:tls succeeded, maybe before a reuse) */
static int sock_secure(lua_State *L)
{
    lua_pushboolean(L, np_sock_check(L, 1)->ssl != NULL);
    return 1;
}

/* ---- the small things ---- */

static int sock_close(lua_State *L)
{
    np_sock_close(np_sock_check(L, 1));
    np_sock_forget(L, 1);
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

int np_sock_push_localaddr(lua_State *L, int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char text[NP_ADDRSTRLEN];

    if (fd < 0 || getsockname(fd, (struct sockaddr *)&ss, &len) < 0 ||
        (ss.ss_family != AF_INET && ss.ss_family != AF_INET6))
        return 0;
    np_addr_format((struct sockaddr *)&ss, len, text, sizeof text);
    lua_pushstring(L, text);
    return 1;
}

/* sock:localaddr() -> "addr:port" this end is bound to (what a client connected to), or nil */
static int sock_localaddr(lua_State *L)
{
    struct np_sock *s = np_sock_check(L, 1);

    return np_sock_push_localaddr(L, s->fd);
}

/* sock:peercred() -> uid, gid, pid of a unix socket's peer (SO_PEERCRED), or nil */
static int sock_peercred(lua_State *L)
{
    struct np_sock *s = np_sock_check(L, 1);
    struct ucred cred;
    socklen_t len = sizeof cred;

    if (s->fd < 0 || getsockopt(s->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || cred.pid == 0)
        return 0;
    lua_pushinteger(L, cred.uid);
    lua_pushinteger(L, cred.gid);
    lua_pushinteger(L, cred.pid);
    return 3;
}

/* sock:unread(bytes): puts bytes back in front of what is to be read (and relayed). */
static int sock_unread(lua_State *L)
{
    struct np_sock *s = np_sock_check(L, 1);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);

    if (s->fd < 0) return np_sock_push_fail(L, "closed");
    if (!s->inbuf && !(s->inbuf = evbuffer_new())) return np_sock_push_fail(L, "out of memory");
    evbuffer_prepend(s->inbuf, data, len);
    lua_pushboolean(L, 1);
    return 1;
}

static int sock_tostring(lua_State *L)
{
    struct np_sock *s = np_sock_check(L, 1);

    lua_pushfstring(L, "sock(%s%s%s)", s->peer, s->ssl ? ", tls" : "", s->fd < 0 ? ", closed" : "");
    return 1;
}

static const luaL_Reg sock_methods[] = {
    { "read", sock_read },
    { "peek", sock_peek },
    { "write", sock_write },
    { "send", sock_send },
    { "pending", sock_pending },
    { "flush", sock_flush },
    { "shutdown", sock_shutdown },
    { "tls", sock_tls },
    { "unread", sock_unread },
    { "close", sock_close },
    { "settimeout", sock_settimeout },
    { "peer", sock_peer },
    { "localaddr", sock_localaddr },
    { "peercred", sock_peercred },
    { "setkeepalive", sock_setkeepalive },
    { "reusedtimes", sock_reusedtimes },
    { "secure", sock_secure },
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
    luaL_newmetatable(L, SOCK_DONE_MT);     /* the same, but __gc */
    lua_getfield(L, -2, "__index");
    lua_setfield(L, -2, "__index");
    lua_getfield(L, -2, "__tostring");
    lua_setfield(L, -2, "__tostring");
    lua_pushlightuserdata(L, (void *)&done_mt_key);
    lua_insert(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
    lua_pushlightuserdata(L, (void *)&open_mt_key);
    lua_insert(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
}
