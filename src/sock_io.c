/* Cosocket I/O: read/peek/write/send/flush/shutdown/tls try the call first and, on EAGAIN, yield
 * the calling coroutine until the event loop has an answer; a socket on which sock:tls()
 * succeeded reads and writes through OpenSSL. A UDP cosocket reads and writes one datagram per call. */
#include "sock_impl.h"
#include "errtoken.h"
#include "idle.h"
#include "loop.h"
#include "tls.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/util.h>
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define READ_MAX (64 * 1024)   /* most one read() hands to Lua */
#define PEEK_MAX (16 + 65535)  /* most bytes a connector may look at: the longest PROXY v2 header */
#define WRITE_PIECES 64        /* most pieces of a table written with one writev */

static char scratch[READ_MAX];

void np_sock_count(struct np_sock *s, int dir, ssize_t n)
{
    if (n <= 0 || !s->bytes[dir]) return;
    *s->bytes[dir] += n;
    *s->more_bytes[dir] += n;
    if (s->idle) np_idle_touch(s->idle);
}

int np_sock_check_waitable(lua_State *L, struct np_sock *s)
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

/* Starts waiting for op (the event chosen by s->want_write) with a timeout, and yields. */
static int wait_on(lua_State *L, struct np_sock *s, enum np_sock_op op, double timeout)
{
    s->op = op;
    s->op_deadline = timeout > 0 ? np_now() + timeout : 0;
    arm(s);
    return np_sock_yield(L, s, 1);
}

/* ---- raw I/O: the socket, or its TLS session ---- */

ssize_t np_sock_io_read(struct np_sock *s, void *buf, size_t len)
{
    ssize_t n;

    if (s->ssl) {
        enum np_tls_want want = NP_TLS_WANT_READ;
        n = np_tls_read(s->ssl, buf, len, &want, s->err, sizeof s->err);
        s->want_write = want == NP_TLS_WANT_WRITE;
        np_sock_count(s, 0, n);
        return n;
    }
    do {
        n = read(s->fd, buf, len);
    } while (n < 0 && errno == EINTR);
    s->want_write = 0;
    np_sock_count(s, 0, n);
    if (n < 0 && errno != EAGAIN) snprintf(s->err, sizeof s->err, "%s", np_err_token(errno));
    return n;
}

ssize_t np_sock_io_write(struct np_sock *s, const void *buf, size_t len)
{
    ssize_t n;

    if (s->ssl) {
        enum np_tls_want want = NP_TLS_WANT_WRITE;
        n = np_tls_write(s->ssl, buf, len, &want, s->err, sizeof s->err);
        s->want_write = want != NP_TLS_WANT_READ;
        np_sock_count(s, 1, n);
        return n;
    }
    do {
        n = write(s->wfd, buf, len);    /* SIGPIPE is ignored */
    } while (n < 0 && errno == EINTR);
    s->want_write = 1;
    np_sock_count(s, 1, n);
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
    n = np_sock_io_read(s, scratch, max);
    s->drained = n > 0 && (size_t)n < max;
    if (n > 0 || (n == 0 && s->dgram)) {       /* (an empty datagram is not an end) */
        lua_pushlstring(L, scratch, n);
        return 1;
    }
    if (n == 0) return np_sock_push_fail(L, "closed");
    if (errno == EAGAIN) return 0;
    return np_sock_push_fail(L, s->err);
}

/* Whether a read now would find nothing: the last one took less than it asked for, so the
 * socket was emptied, and what a peer sends next mostly answers what this side writes in
 * between (a client's next request after our answer, a server's reply after our command).
 * Such a read waits for the event at once instead of spending a read(2) on EAGAIN (nginx
 * does the same). The event is level-triggered: bytes that came meanwhile wake it on the
 * loop's next turn. Not for TLS (OpenSSL may hold decrypted bytes the socket no longer
 * shows), UDP (each read takes one datagram: less than asked says nothing) nor stdio (its
 * own wfd: standard input may be a regular file, which epoll cannot wait on). */
static int read_would_wait(const struct np_sock *s)
{
    return s->drained && !s->ssl && !s->dgram && s->wfd == s->fd &&
           !(s->inbuf && evbuffer_get_length(s->inbuf) > 0);
}

static int sock_read(lua_State *L)
{
    struct np_sock *s = np_sock_check(L, 1);
    lua_Integer max = luaL_optinteger(L, 2, READ_MAX);
    double timeout = np_sock_opt_timeout(L, 3, s->timeout);
    int n;

    luaL_argcheck(L, max > 0, 2, "must be > 0");
    if (max > READ_MAX) max = READ_MAX;
    if (!np_sock_check_waitable(L, s) || s->fd < 0) return np_sock_push_fail(L, "closed");
    if (read_would_wait(s)) s->want_write = 0;     /* (push_read's read(2) would have set it) */
    else if ((n = push_read(L, s, max))) return n;
    s->want = max;
    return wait_on(L, s, NP_OP_READ, timeout);
}

/* ---- peek: wait until n bytes are buffered, return them (up to a window), consume none ---- */

/* Reads what the socket has on the way, up to s->peek_most buffered, until at least n bytes
 * are: one pass takes whatever has arrived (within the window), so a caller that asks for one
 * byte more each time (a delimited read) costs one read per arrival, not one per byte.
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

        if (have >= s->peek_most) return 1;
        room = s->peek_most - have < READ_MAX ? s->peek_most - have : READ_MAX;
        got = np_sock_io_read(s, scratch, room);
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

/* Pushes the front of the read-ahead: all of it, or the peek's window. */
static void push_inbuf(lua_State *L, struct np_sock *s)
{
    size_t len = s->inbuf ? evbuffer_get_length(s->inbuf) : 0;

    if (len > s->peek_most) len = s->peek_most;
    if (len == 0) {
        lua_pushliteral(L, "");
        return;
    }
    lua_pushlstring(L, (const char *)evbuffer_pullup(s->inbuf, len), len);
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

/* sock:peek(n [, timeout [, most]]): most bounds what is read ahead and returned (a frugal
 * delimited read: the chunk size lines of an HTTP body whose data is spliced). */
static int sock_peek(lua_State *L)
{
    struct np_sock *s = np_sock_check(L, 1);
    lua_Integer n = luaL_checkinteger(L, 2);
    double timeout = np_sock_opt_timeout(L, 3, s->timeout);
    lua_Integer most = luaL_optinteger(L, 4, PEEK_MAX);
    int status;

    luaL_argcheck(L, n > 0 && n <= PEEK_MAX, 2, "must be 1..65551");
    luaL_argcheck(L, most >= n && most <= PEEK_MAX, 4, "must be n..65551");
    if (s->dgram) return luaL_error(L, "peek: a udp socket reads whole datagrams (use read)");
    if (!np_sock_check_waitable(L, s) || s->fd < 0) return np_sock_push_fail(L, "closed");
    s->peek_most = most;
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

/* The checked piece i (1-based) of the table at index 2: a string or a number. */
static const char *piece(lua_State *L, int i, size_t *len)
{
    lua_rawgeti(L, 2, i);
    if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
        luaL_error(L, "write: piece %d is a %s, not a string", i, luaL_typename(L, -1));
    return lua_tolstring(L, -1, len);
}

/* Replaces the table at index 2 by its pieces joined into one string. */
static void join_pieces(lua_State *L, int n)
{
    luaL_Buffer b;

    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        size_t len;
        piece(L, i, &len);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    lua_replace(L, 2);
}

/* sock:write({ piece, ... }): the pieces written in order with one writev, as OpenResty's
 * sock:send takes an array: a response's head and body go out without being joined into one
 * Lua string first (a copy of the body and, as Lua interns every string, a hash of it and a
 * comparison with an equal one). A TLS or UDP socket, or more than WRITE_PIECES pieces, has
 * them joined: 0, and index 2 holds the string. Else the results pushed, their count. */
static int write_pieces(lua_State *L, struct np_sock *s, double timeout)
{
    struct iovec iov[WRITE_PIECES];
    int n = (int)lua_objlen(L, 2), first = 0;
    size_t total = 0, sent = 0;

    if (s->ssl || s->dgram || n > WRITE_PIECES) {
        join_pieces(L, n);
        return 0;
    }
    for (int i = 0; i < n; i++) {
        iov[i].iov_base = (void *)piece(L, i + 1, &iov[i].iov_len);
        lua_pop(L, 1);                  /* the table keeps the string alive */
        total += iov[i].iov_len;
    }
    while (first < n) {
        ssize_t w;
        do {
            w = writev(s->wfd, iov + first, n - first);
        } while (w < 0 && errno == EINTR);
        if (w < 0 && errno == EAGAIN) break;
        if (w < 0) return np_sock_push_fail(L, np_err_token(errno));
        np_sock_count(s, 1, w);
        sent += w;
        for (; first < n && (size_t)w >= iov[first].iov_len; first++) w -= iov[first].iov_len;
        if (first < n) {
            iov[first].iov_base = (char *)iov[first].iov_base + w;
            iov[first].iov_len -= w;
        }
    }
    if (sent == total) {
        lua_pushinteger(L, total);
        return 1;
    }
    if (!s->outbuf && !(s->outbuf = evbuffer_new())) return np_sock_push_fail(L, "out of memory");
    for (int i = first; i < n; i++) evbuffer_add(s->outbuf, iov[i].iov_base, iov[i].iov_len);
    s->want_write = 1;
    s->want = total;
    return wait_on(L, s, NP_OP_WRITE, timeout);
}

static int sock_write(lua_State *L)
{
    struct np_sock *s = np_sock_check(L, 1);
    size_t len, sent = 0;
    const char *data;
    double timeout = np_sock_opt_timeout(L, 3, s->timeout);
    int results;

    if (!np_sock_check_waitable(L, s) || s->fd < 0) return np_sock_push_fail(L, "closed");
    if (lua_istable(L, 2) && (results = write_pieces(L, s, timeout))) return results;
    data = luaL_checklstring(L, 2, &len);
    if (s->dgram && len == 0) {         /* an empty datagram, which the loop below would skip */
        if (send(s->fd, data, 0, 0) < 0) return np_sock_push_fail(L, np_err_token(errno));
        lua_pushinteger(L, 0);
        return 1;
    }
    while (sent < len) {
        ssize_t n = np_sock_io_write(s, data + sent, len - sent);
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
        ssize_t n = np_sock_io_write(s, evbuffer_pullup(s->outbuf, len), len);
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
    int want_write = s->want_write;     /* what a waiting read waits for: not the flush's to change */
    int rc = 1;

    while (rc == 1 && evbuffer_get_length(s->sendbuf) > 0) {
        size_t len = evbuffer_get_length(s->sendbuf);
        if (len > READ_MAX) len = READ_MAX;
        ssize_t n = np_sock_io_write(s, evbuffer_pullup(s->sendbuf, len), len);
        if (n > 0) evbuffer_drain(s->sendbuf, n);
        else rc = n < 0 && errno == EAGAIN ? 0 : -1;
    }
    s->want_write = want_write;
    return rc;
}

/* A flush error ends the reader too: a coroutine waiting on this socket hears of it. */
static void send_failed(struct np_sock *s)
{
    s->send_failed = 1;
    evbuffer_drain(s->sendbuf, evbuffer_get_length(s->sendbuf));
    if (s->op == NP_OP_READ || s->op == NP_OP_PEEK || s->op == NP_OP_FLUSH)
        np_sock_resume(s, np_sock_push_fail(s->owner->co, s->err));
}

void np_sock_on_flush(evutil_socket_t fd, short what, void *arg)
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
        event_assign(&s->flush_ev, np_base, s->wfd, EV_WRITE, np_sock_on_flush, s);
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

    if (!np_sock_check_waitable(L, s) || s->fd < 0) return np_sock_push_fail(L, "closed");
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
        timeout = np_sock_opt_timeout(L, -1, timeout);
        lua_pop(L, 3);
    }
    if (!np_sock_check_waitable(L, s) || s->fd < 0) return np_sock_push_fail(L, "closed");
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

/* Whether the waiting op waits for readability: rev armed for it, with its deadline. */
static int waits_on_rev(const struct np_sock *s)
{
    if (s->op == NP_OP_SPLICE) return np_sock_splice_waits_on(s) && !s->want_write;
    return (s->op == NP_OP_READ || s->op == NP_OP_PEEK || s->op == NP_OP_HANDSHAKE) && !s->want_write;
}

void np_sock_on_event(evutil_socket_t fd, short what, void *arg)
{
    struct np_sock *s = arg;

    /* rev stays armed between reads (np_sock_resume): readiness while no read waits is left
     * for the next read, which will find it, and rev disarmed until then. A timeout only
     * ever comes from the event armed for the op (rev keeps no deadline between ops). */
    if ((what & EV_READ) && !waits_on_rev(s)) {
        event_del(&s->rev);
        return;
    }
    switch (s->op) {
    case NP_OP_READ:
    case NP_OP_PEEK: read_ready(s, what); break;
    case NP_OP_WRITE: write_ready(s, what); break;
    case NP_OP_HANDSHAKE: handshake_ready(s, what); break;
    case NP_OP_SPLICE: np_sock_splice_ready(s, what); break;
    case NP_OP_FLUSH:
    case NP_OP_NONE: break;
    }
}

const luaL_Reg np_sock_io_methods[] = {
    { "read", sock_read },
    { "peek", sock_peek },
    { "write", sock_write },
    { "send", sock_send },
    { "pending", sock_pending },
    { "flush", sock_flush },
    { "shutdown", sock_shutdown },
    { "tls", sock_tls },
    { NULL, NULL },
};
