/* sock:splice_to(dst [, n [, timeout]]): a body moved from one cosocket to another without
 * passing through Lua, by splice(2) through a pooled pipe (the relay's, pipepool.c) so that
 * the bytes never enter user space; by a read/write copy in C when a side speaks TLS or
 * splice() refuses one (a terminal). The coroutine waits while either side would block, each
 * wait under its side's timeout; the bytes the source had read ahead (a peek, a delimited
 * read) go first. One side at a time: it reads only once what it read before is written,
 * as the relay's splice direction does. */
#include "sock_impl.h"
#include "errtoken.h"
#include "loop.h"
#include "pipepool.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define ROUNDS 16               /* reads and writes per wake-up before the loop's other work */
#define COPY_SIZE (64 * 1024)   /* the copy's buffer: a TLS record is at most 16 KiB */

enum { MOVING, MOVED, FAILED };
enum { SRC, DST };

struct np_sock_splice {
    struct np_sock *src, *dst;
    int dst_ref;                /* anchors dst while the coroutine waits (src: its self_ref) */
    int64_t left;               /* bytes still to take from src; -1: until its EOF */
    uint64_t moved;             /* bytes written to dst */
    double read_timeout;        /* each wait for src (the call's, else src's); dst's own for it */
    struct np_pipe pipe;        /* held while bytes are in it (rfd -1: none) */
    size_t in_pipe;
    int copy;                   /* read/write through buf: a TLS side, or splice() refused */
    char *buf;                  /* the copy's, and the read-ahead's (made when first needed) */
    size_t off, len;            /* buf[off..len) read, not yet written */
    int waiting;                /* SRC or DST: the side whose event is armed */
    int failed;                 /* SRC or DST, when the move failed */
    char err[200];
};

/* ---- the end ---- */

static void release_pipe(struct np_sock_splice *k)
{
    if (k->pipe.rfd < 0) return;
    if (k->in_pipe > 0) np_pipe_discard(&k->pipe);
    else np_pipe_put(&k->pipe);
    k->in_pipe = 0;
}

/* Everything k holds let go (the events of both ends, the pipe, the buffer, dst's anchor). */
static void free_splice(struct np_sock_splice *k)
{
    struct np_sock *src = k->src, *dst = k->dst;

    event_del(&dst->rev);
    event_del(&dst->wev);
    event_del(&src->rev);
    event_del(&src->wev);
    src->splicing = dst->splicing = NULL;
    src->op = dst->op = NP_OP_NONE;
    if (k->dst_ref != LUA_NOREF) luaL_unref(src->L, LUA_REGISTRYINDEX, k->dst_ref);
    release_pipe(k);
    free(k->buf);
    free(k);
}

void np_sock_stop_splicing(struct np_sock *s)
{
    if (s->splicing) free_splice(s->splicing);
}

/* Pushes the results on L: the count moved, or nil, why, "src" | "dst", the count moved. */
static int push_results(lua_State *L, struct np_sock_splice *k, int how)
{
    if (how == MOVED) {
        lua_pushinteger(L, (lua_Integer)k->moved);
        return 1;
    }
    lua_pushnil(L);
    lua_pushstring(L, k->err);
    lua_pushstring(L, k->failed == SRC ? "src" : "dst");
    lua_pushinteger(L, (lua_Integer)k->moved);
    return 4;
}

static int fail(struct np_sock_splice *k, int side, const char *why)
{
    k->failed = side;
    snprintf(k->err, sizeof k->err, "%s", why);
    return FAILED;
}

/* ---- writing to dst ---- */

/* Leaves splice for the copy: the bytes in the pipe move to the buffer. 0, or -1 (k->err). */
static int copy_from_now_on(struct np_sock_splice *k)
{
    k->copy = 1;
    if (!k->buf && !(k->buf = malloc(COPY_SIZE))) return fail(k, DST, "out of memory"), -1;
    k->off = 0;
    k->len = 0;
    if (k->in_pipe > COPY_SIZE) {       /* a pipe_size over 64 KiB: room for all it holds */
        char *more = realloc(k->buf, k->in_pipe);
        if (!more) return fail(k, DST, "out of memory"), -1;
        k->buf = more;
    }
    while (k->in_pipe > 0) {
        ssize_t n = read(k->pipe.rfd, k->buf + k->len, k->in_pipe);
        if (n <= 0) return fail(k, DST, "splice: the pipe could not be read"), -1;
        k->len += n;
        k->in_pipe -= n;
    }
    release_pipe(k);
    return 0;
}

/* Splices the pipe's bytes to dst: 1 all written, 0 would block, -1 failed, 2 dst cannot be
 * spliced to (the bytes are in the buffer now). */
static int flush_pipe(struct np_sock_splice *k)
{
    struct np_sock *dst = k->dst;

    while (k->in_pipe > 0) {
        ssize_t n = np_pipe_drain(&k->pipe, dst->wfd, k->in_pipe);

        if (n > 0) {
            k->in_pipe -= n;
            k->moved += n;
            np_sock_count(dst, 1, n);
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            dst->want_write = 1;
            return 0;
        }
        if (n < 0 && errno == EINVAL) return copy_from_now_on(k) < 0 ? -1 : 2;
        fail(k, DST, n == 0 ? "closed" : np_err_token(errno));
        return -1;
    }
    return 1;
}

/* Writes what the buffer holds to dst: 1 all written, 0 would block, -1 failed. */
static int flush_buf(struct np_sock_splice *k)
{
    while (k->off < k->len) {
        ssize_t n = np_sock_io_write(k->dst, k->buf + k->off, k->len - k->off);
        if (n > 0) {
            k->off += n;
            k->moved += n;
        } else if (n < 0 && errno == EAGAIN) {
            return 0;
        } else {
            fail(k, DST, n == 0 ? "closed" : k->dst->err);
            return -1;
        }
    }
    k->off = k->len = 0;
    return 1;
}

/* What was read goes out first: 1 nothing pending, 0 would block, -1 failed. */
static int flush(struct np_sock_splice *k)
{
    int rc = flush_pipe(k);

    if (rc == 2) rc = 1;                /* moved to the buffer: written below */
    if (rc != 1) return rc;
    return flush_buf(k);
}

/* ---- reading from src ---- */

static size_t want(struct np_sock_splice *k, size_t most)
{
    return k->left >= 0 && (uint64_t)k->left < most ? (size_t)k->left : most;
}

/* Splices src's next bytes into the pipe: >0, 0 EOF, -1 errno (EAGAIN, EINVAL: cannot splice
 * from it; else src->err set). */
static ssize_t fill_pipe(struct np_sock_splice *k)
{
    struct np_sock *src = k->src;
    ssize_t n;

    if (k->pipe.rfd < 0 && np_pipe_get(&k->pipe) < 0) {
        errno = EINVAL;                 /* no pipe to be had (fd limit): copy instead */
        return -1;
    }
    n = np_pipe_fill(&k->pipe, src->fd, want(k, np_pipepool_pipe_size()));
    src->want_write = 0;
    if (n > 0) {
        k->in_pipe = n;
        np_sock_count(src, 0, n);
        return n;
    }
    if (n < 0 && errno == EAGAIN) {
        release_pipe(k);                /* an idle wait holds no pipe */
        errno = EAGAIN;
    } else if (n < 0 && errno != EINVAL) {
        snprintf(src->err, sizeof src->err, "%s", np_err_token(errno));
    }
    return n;
}

/* Reads src's next bytes: the read-ahead first, then the pipe (splice) or the buffer (copy).
 * >0, 0 EOF, -1 errno (EAGAIN: wait; else src->err). */
static ssize_t fill(struct np_sock_splice *k)
{
    struct np_sock *src = k->src;
    size_t ahead = src->inbuf ? evbuffer_get_length(src->inbuf) : 0;
    ssize_t n;

    if (!k->copy && ahead == 0) {
        n = fill_pipe(k);
        if (n >= 0 || errno != EINVAL) return n;
        k->copy = 1;                    /* a source splice() cannot read (a terminal) */
    }
    if (!k->buf && !(k->buf = malloc(COPY_SIZE))) {
        snprintf(src->err, sizeof src->err, "out of memory");
        errno = ENOMEM;
        return -1;
    }
    if (ahead > 0) n = evbuffer_remove(src->inbuf, k->buf, want(k, COPY_SIZE));
    else n = np_sock_io_read(src, k->buf, want(k, COPY_SIZE));
    if (n > 0) k->len = n;
    return n;
}

/* ---- the moves ---- */

/* Arms side's event (what its last call said it waits for) under its timeout. */
static void wait_for(struct np_sock_splice *k, int side)
{
    struct np_sock *s = side == SRC ? k->src : k->dst;
    double timeout = side == SRC ? k->read_timeout : s->timeout;
    struct timeval tv = np_tv(timeout);

    /* rev is persistent (sock.c): the other end's, armed by an earlier wait or read, would
     * wake the op (or time it out) for a side it does not wait on */
    event_del(&k->src->rev);
    event_del(&k->src->wev);
    event_del(&k->dst->rev);
    event_del(&k->dst->wev);
    k->waiting = side;
    event_add(s->want_write ? &s->wev : &s->rev, timeout > 0 ? &tv : NULL);
}

/* Moves what can be moved now: MOVED, FAILED (k->err), or MOVING with an event armed. */
static int step(struct np_sock_splice *k)
{
    for (int round = 0; round < ROUNDS; round++) {
        int rc = flush(k);
        ssize_t n;

        if (rc < 0) return FAILED;
        if (rc == 0) {
            wait_for(k, DST);
            return MOVING;
        }
        if (k->left == 0) return MOVED;
        n = fill(k);
        if (n > 0) {
            if (k->left > 0) k->left -= n;
            continue;
        }
        if (n == 0) return k->left < 0 ? MOVED : fail(k, SRC, "closed");
        if (errno != EAGAIN) return fail(k, SRC, k->src->err);
        wait_for(k, SRC);
        return MOVING;
    }
    /* a busy pair gives the loop a turn: dst writable (as it was just now) wakes it next */
    k->dst->want_write = 1;
    wait_for(k, DST);
    return MOVING;
}

int np_sock_splice_waits_on(const struct np_sock *s)
{
    const struct np_sock_splice *k = s->splicing;

    return k && (k->waiting == SRC ? k->src : k->dst) == s;
}

void np_sock_splice_ready(struct np_sock *s, short what)
{
    struct np_sock_splice *k = s->splicing;
    struct np_sock *src;
    lua_State *co;
    int how;

    if (!k) return;
    src = k->src;
    co = src->owner->co;
    how = (what & EV_TIMEOUT) ? fail(k, k->waiting, "timeout") : step(k);
    if (how == MOVING) return;
    how = push_results(co, k, how);
    free_splice(k);
    np_sock_resume(src, how);
}

/* Checks an end: 0 when it can take part, else nil, why, side pushed (their count, 3). */
static int unusable(lua_State *L, struct np_sock *s, const char *side)
{
    const char *why = NULL;

    if (!np_sock_check_waitable(L, s) || s->fd < 0) why = "closed";
    else if (s->splicing) why = "socket busy";
    else if (s->send_failed) why = s->err;
    else if (s->sendbuf && evbuffer_get_length(s->sendbuf) > 0)
        why = "bytes kept by send are not written yet (sock:flush() first)";
    if (!why) return 0;
    lua_pushnil(L);
    lua_pushstring(L, why);
    lua_pushstring(L, side);
    lua_pushinteger(L, 0);
    return 4;
}

/* sock:splice_to(dst [, n [, timeout]]) -> bytes moved | nil, err, "src" | "dst", bytes moved
 * Moves exactly n bytes from sock to dst (n nil: until sock's EOF), waiting while either
 * side would block: each wait for sock at most timeout seconds (default: sock's settimeout),
 * each for dst at most dst's own. A sock that ends before n bytes fails with "closed". */
static int sock_splice_to(lua_State *L)
{
    struct np_sock *src = np_sock_check(L, 1), *dst = np_sock_check(L, 2);
    lua_Integer n = lua_isnoneornil(L, 3) ? -1 : luaL_checkinteger(L, 3);
    double timeout = np_sock_opt_timeout(L, 4, src->timeout);
    struct np_sock_splice *k;
    int how;

    luaL_argcheck(L, lua_isnoneornil(L, 3) || n >= 0, 3, "must be >= 0");
    if (src->dgram || dst->dgram) return luaL_error(L, "splice_to: not over a udp socket");
    if ((how = unusable(L, src, "src")) || (how = unusable(L, dst, "dst"))) return how;
    if (n == 0) {
        lua_pushinteger(L, 0);
        return 1;
    }
    if (!(k = malloc(sizeof *k))) return luaL_error(L, "splice_to: out of memory");
    *k = (struct np_sock_splice){ .src = src, .dst = dst, .dst_ref = LUA_NOREF, .left = n,
                                  .read_timeout = timeout, .pipe = { -1, -1 },
                                  .copy = src->ssl || dst->ssl };
    src->splicing = dst->splicing = k;
    how = step(k);
    if (how != MOVING) {
        how = push_results(L, k, how);
        free_splice(k);
        return how;
    }
    src->op = dst->op = NP_OP_SPLICE;
    lua_pushvalue(L, 2);
    k->dst_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return np_sock_yield(L, src, 1);
}

const luaL_Reg np_sock_splice_methods[] = {
    { "splice_to", sock_splice_to },
    { NULL, NULL },
};
