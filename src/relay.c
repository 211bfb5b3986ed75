/* The relay: C pumps bytes both ways once both sides are connected. A direction moves its
 * bytes by splice() through a pooled pipe (zero copy) or, when something must see them,
 * through a bounded buffer. Either way a full receiver stops the reads from the sender
 * (backpressure), EOF becomes shutdown(SHUT_WR) once the pending bytes are out, and the
 * connection ends when both directions have ended or at the first error. */
#include "relay.h"
#include "buf.h"
#include "conn.h"
#include "hook.h"
#include "log.h"
#include "luavm.h"
#include "loop.h"
#include "pipepool.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PUMP_BUDGET 16          /* rounds per wakeup, so one busy connection cannot starve others */
#define ENDED (-2)              /* fill(): the connection has ended (a hook failed or closed it) */

enum { CLIENT = 0, SERVER = 1 };
static const char *const side_name[] = { "client", "server" };

struct side {
    struct np_relay *relay;
    int idx;
    int rfd, wfd;               /* the same socket, or standard input and output */
    struct event rev, wev;
    int reading, writing;       /* rev / wev armed */
};

/* Bytes from side `from` to side `from ^ 1`. */
struct direction {
    int from;
    int splice;
    struct np_pipe pipe;        /* held only while in_pipe > 0 */
    size_t in_pipe;
    struct np_buf buf;          /* the copying path, or bytes read ahead before the relay */
    struct np_buf injected;     /* conn:send() bytes, queued while a hook runs */
    int hook_ref;               /* LUA_NOREF: no hook */
    int eof, done;
    uint64_t *counter;
};

struct np_relay {
    struct np_conn *conn;
    struct side side[2];
    struct direction dir[2];    /* dir[CLIENT]: client -> server */
    size_t buffer_size;
    double idle_timeout, last_active;
    struct event idle;
    struct event kick;          /* pumps both directions on the next loop iteration */
    int conn_ref;
    double hook_budget;
    int closing;                /* conn:close() from a hook */
};

static size_t pending(const struct direction *d)
{
    return np_buf_len(&d->buf) + d->in_pipe;
}

/* May this direction read more now? Splice reads only into an empty pipe: a pipe whose
 * slots are full answers EAGAIN too, and that must never be mistaken for an idle socket. */
static int can_read(const struct np_relay *r, const struct direction *d)
{
    if (d->eof) return 0;
    if (d->splice) return pending(d) == 0;
    return np_buf_len(&d->buf) < r->buffer_size;
}

static void hold_pipe_release(struct direction *d)
{
    if (d->in_pipe == 0 && d->pipe.rfd >= 0) np_pipe_put(&d->pipe);
}

/* Moves bytes conn:send() queued into their directions' buffers. */
static void settle_injections(struct np_relay *r)
{
    for (int i = 0; i < 2; i++) {
        struct direction *d = &r->dir[i];
        if (np_buf_len(&d->injected) == 0) continue;
        if (np_buf_append(&d->buf, d->injected.data + d->injected.start,
                          np_buf_len(&d->injected)) < 0)
            r->closing = 1;
        np_buf_release(&d->injected);
    }
}

/* Passes the n bytes just read (the end of d->buf) through the direction's hook; at EOF
 * (n == 0) the hook is called once more with "" and true. Returns -1 once the connection
 * has ended. */
static int run_hook(struct np_relay *r, struct direction *d, size_t n)
{
    const char *chunk = d->buf.data ? d->buf.data + d->buf.end - n : "", *out;
    size_t outlen;
    char err[256];
    int rc = np_hook_call(r->conn, d->hook_ref, r->conn_ref, chunk, n, n == 0, r->hook_budget,
                          &out, &outlen, err, sizeof err);

    if (rc < 0) {
        np_clog(NP_ERR, r->conn->id, "%s: hook: %s", r->conn->proxy->name, err);
        np_conn_end(r->conn, "lua error: %s", err);
        return -1;
    }
    if (rc == 1) {
        d->buf.end -= n;
        if (np_buf_append(&d->buf, out, outlen) < 0) r->closing = 1;
        if (np_buf_len(&d->buf) == 0) np_buf_release(&d->buf);
        np_hook_done();
    }
    settle_injections(r);
    if (r->closing) {
        np_conn_end(r->conn, "closed by hook");
        return -1;
    }
    return 0;
}

/* Leaves the splice path for good: bytes still in the pipe move to the buffer first. */
static void copy_from_now_on(struct direction *d)
{
    d->splice = 0;
    while (d->in_pipe > 0) {
        char chunk[16384];
        ssize_t n = read(d->pipe.rfd, chunk, d->in_pipe < sizeof chunk ? d->in_pipe : sizeof chunk);
        if (n <= 0 || np_buf_append(&d->buf, chunk, n) < 0) break;
        d->in_pipe -= n;
    }
    if (d->in_pipe > 0) np_pipe_discard(&d->pipe);
    else if (d->pipe.rfd >= 0) np_pipe_put(&d->pipe);
    d->in_pipe = 0;
}

/* Reads from the source: >0 bytes, 0 EOF, -1 errno, ENDED. */
static ssize_t fill(struct np_relay *r, struct direction *d, int fd)
{
    ssize_t n;

    if (d->splice && d->pipe.rfd < 0 && np_pipe_get(&d->pipe) < 0) {
        /* No pipe to be had (fd limit): this direction copies from now on. */
        np_clog(NP_WARNING, r->conn->id, "no pipe for splice (%s): copying instead",
                strerror(errno));
        d->splice = 0;
    }
    if (!d->splice) {
        n = np_buf_read_fd(&d->buf, fd, r->buffer_size);
        if (n >= 0 && d->hook_ref != LUA_NOREF && run_hook(r, d, n) < 0) return ENDED;
        return n;
    }
    do {
        n = splice(fd, NULL, d->pipe.wfd, NULL, np_pipepool_pipe_size(),
                   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    } while (n < 0 && errno == EINTR);
    if (n > 0) d->in_pipe += n;
    if (n < 0 && errno == EINVAL) {     /* a source splice() cannot read (a terminal) */
        copy_from_now_on(d);
        return fill(r, d, fd);
    }
    return n;
}

/* Writes pending bytes to the destination: >0 bytes, -1 errno. */
static ssize_t flush(struct direction *d, int fd)
{
    ssize_t n;

    /* The pipe first: bytes queued in buf while it held some (conn:send) come after them.
     * Bytes read ahead before the relay are in buf with an empty pipe, and a splice
     * direction reads nothing until they are out. */
    if (d->in_pipe > 0) {
        do {
            n = splice(d->pipe.rfd, NULL, fd, NULL, d->in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        } while (n < 0 && errno == EINTR);
        if (n > 0) d->in_pipe -= n;
        if (n >= 0 || errno != EINVAL) return n;
        copy_from_now_on(d);            /* a destination splice() cannot write (a terminal) */
    }
    n = np_buf_write_fd(&d->buf, fd);
    if (n > 0 && np_buf_len(&d->buf) == 0) np_buf_release(&d->buf);
    return n;
}

static void arm(struct event *ev, int *on, int want)
{
    if (want && !*on) event_add(ev, NULL);
    if (!want && *on) event_del(ev);
    *on = want;
}

/* Records why the relay must stop; returns -1 for the caller to pass up. */
static int fail(struct np_relay *r, int side, int err)
{
    if (err == ECONNRESET || err == EPIPE)
        np_conn_end(r->conn, "%s reset", side_name[side]);
    else
        np_conn_end(r->conn, "%s error: %s", side_name[side], strerror(err));
    return -1;
}

/* The write half ends: shutdown(SHUT_WR) for a socket; closing standard output. */
static void shut_write(struct side *s)
{
    if (s->wfd != s->rfd) {
        event_del(&s->wev);
        s->writing = 0;
        close(s->wfd);
        s->wfd = -1;
    } else {
        shutdown(s->wfd, SHUT_WR);
    }
}

/* Moves what it can for one direction, then arms the events it waits on.
 * Returns -1 once the connection has ended (r is then freed). */
static int pump(struct np_relay *r, struct direction *d)
{
    struct side *src = &r->side[d->from], *dst = &r->side[d->from ^ 1];
    int rounds = PUMP_BUDGET, moved = 0;
    ssize_t n;

    /* Each round writes what is pending, then reads what there is room for; a blocked
     * writer still lets the buffer fill up to its bound. Stop when neither moves. */
    while (rounds-- > 0) {
        int progress = 0;
        if (pending(d) > 0) {
            n = flush(d, dst->wfd);
            if (n < 0 && errno != EAGAIN) return fail(r, dst->idx, errno);
            if (n > 0) {
                *d->counter += n;
                moved = progress = 1;
            }
        }
        if (can_read(r, d)) {
            n = fill(r, d, src->rfd);
            if (n == ENDED) return -1;
            if (n < 0 && errno != EAGAIN) return fail(r, src->idx, errno);
            if (n == 0) d->eof = 1;
            if (n >= 0) progress = 1;
        }
        if (!progress) break;
    }
    if (moved) r->last_active = np_now();
    if (d->splice) hold_pipe_release(d);
    if (d->eof && pending(d) == 0 && !d->done) {
        d->done = 1;
        shut_write(dst);
    }
    if (r->dir[0].done && r->dir[1].done) {
        np_conn_end(r->conn, "eof");
        return -1;
    }
    arm(&src->rev, &src->reading, can_read(r, d));
    arm(&dst->wev, &dst->writing, pending(d) > 0);
    /* a hook may have queued bytes for the other direction */
    struct direction *o = &r->dir[d->from ^ 1];
    if (pending(o) > 0) arm(&r->side[o->from ^ 1].wev, &r->side[o->from ^ 1].writing, 1);
    return 0;
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    struct side *s = arg;

    pump(s->relay, &s->relay->dir[s->idx]);
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    struct side *s = arg;

    pump(s->relay, &s->relay->dir[s->idx ^ 1]);
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    struct np_relay *r = arg;

    if (r->closing) {
        np_conn_end(r->conn, "closed by hook");
        return;
    }
    if (pump(r, &r->dir[NP_TO_SERVER]) == 0) pump(r, &r->dir[NP_TO_CLIENT]);
}

int np_relay_inject(struct np_relay *r, int dir, const char *data, size_t len)
{
    if (np_buf_append(&r->dir[dir].injected, data, len) < 0) return -1;
    event_active(&r->kick, EV_TIMEOUT, 0);  /* settled by the running hook, or on the kick */
    return 0;
}

void np_relay_close_soon(struct np_relay *r)
{
    r->closing = 1;
    event_active(&r->kick, EV_TIMEOUT, 0);
}

static void on_idle_check(evutil_socket_t fd, short what, void *arg)
{
    struct np_relay *r = arg;
    double quiet = np_now() - r->last_active;
    struct timeval tv;

    if (quiet >= r->idle_timeout) {
        np_conn_end(r->conn, "idle timeout");
        return;
    }
    tv = np_tv(r->idle_timeout - quiet);
    evtimer_add(&r->idle, &tv);
}

static void side_init(struct np_relay *r, int idx, int rfd, int wfd)
{
    struct side *s = &r->side[idx];

    s->relay = r;
    s->idx = idx;
    s->rfd = rfd;
    s->wfd = wfd;
    event_assign(&s->rev, np_base, rfd, EV_READ | EV_PERSIST, on_readable, s);
    event_assign(&s->wev, np_base, wfd, EV_WRITE | EV_PERSIST, on_writable, s);
}

/* Moves bytes read ahead during the negotiation into the direction's buffer. */
static int take_ahead(struct direction *d, struct evbuffer *ahead)
{
    int rc = 0;

    if (!ahead) return 0;
    size_t len = evbuffer_get_length(ahead);
    if (len > 0) rc = np_buf_append(&d->buf, evbuffer_pullup(ahead, -1), len);
    evbuffer_free(ahead);
    return rc;
}

static void release_refs(const struct np_relay_opts *o)
{
    for (int i = 0; i < 2; i++)
        if (o->hook_ref[i] != LUA_NOREF) luaL_unref(np_L, LUA_REGISTRYINDEX, o->hook_ref[i]);
    if (o->conn_ref != LUA_NOREF) luaL_unref(np_L, LUA_REGISTRYINDEX, o->conn_ref);
}

static const char *path_name(const struct direction *d)
{
    return d->hook_ref != LUA_NOREF ? "hook" : d->splice ? "splice" : "buffered";
}

void np_relay_start(struct np_conn *c, const struct np_relay_opts *opts,
                    const int client_fd[2], struct evbuffer *client_ahead,
                    const int server_fd[2], struct evbuffer *server_ahead)
{
    struct np_relay *r = calloc(1, sizeof *r);
    struct np_proxy *p = c->proxy;

    if (!r || take_ahead(&r->dir[CLIENT], client_ahead) < 0 ||
        take_ahead(&r->dir[SERVER], server_ahead) < 0) {
        if (r) {
            np_buf_release(&r->dir[CLIENT].buf);
            np_buf_release(&r->dir[SERVER].buf);
        }
        free(r);
        for (int i = 0; i < 2; i++) {
            if (i == 0 || client_fd[1] != client_fd[0]) close(client_fd[i]);
            if (i == 0 || server_fd[1] != server_fd[0]) close(server_fd[i]);
        }
        release_refs(opts);
        np_conn_end(c, "out of memory");
        return;
    }
    c->relay = r;
    r->conn = c;
    np_conn_negotiated(c);
    event_del(&c->deadline);
    r->buffer_size = p->buffer_size;
    r->idle_timeout = p->idle_timeout;
    r->last_active = np_now();
    r->conn_ref = opts->conn_ref;
    r->hook_budget = opts->hook_budget;
    side_init(r, CLIENT, client_fd[0], client_fd[1]);
    side_init(r, SERVER, server_fd[0], server_fd[1]);
    for (int i = 0; i < 2; i++) {
        struct direction *d = &r->dir[i];
        d->from = i;
        d->hook_ref = opts->hook_ref[i];
        /* a hook needs the bytes in user space; the other direction may still splice */
        d->splice = opts->mode != NP_RELAY_BUFFERED && d->hook_ref == LUA_NOREF;
        d->pipe.rfd = d->pipe.wfd = -1;
    }
    r->dir[CLIENT].counter = &c->bytes_in;
    r->dir[SERVER].counter = &c->bytes_out;
    evtimer_assign(&r->idle, np_base, on_idle_check, r);
    if (r->idle_timeout > 0) {
        struct timeval tv = np_tv(r->idle_timeout);
        evtimer_add(&r->idle, &tv);
    }
    if (!strcmp(path_name(&r->dir[0]), path_name(&r->dir[1])))
        np_clog(NP_INFO, c->id, "%s: relay: %s", p->name, path_name(&r->dir[0]));
    else
        np_clog(NP_INFO, c->id, "%s: relay: client->server %s, server->client %s", p->name,
                path_name(&r->dir[0]), path_name(&r->dir[1]));
    /* Bytes read ahead go out first, from the loop: hooks must not run inside the session
     * coroutine that is handing over. */
    evtimer_assign(&r->kick, np_base, on_kick, r);
    event_active(&r->kick, EV_TIMEOUT, 0);
}

void np_relay_free(struct np_relay *r)
{
    struct np_relay_opts refs = { .hook_ref = { r->dir[0].hook_ref, r->dir[1].hook_ref },
                                  .conn_ref = r->conn_ref };

    for (int i = 0; i < 2; i++) {
        struct side *sd = &r->side[i];
        event_del(&sd->rev);
        event_del(&sd->wev);
        if (sd->wfd >= 0 && sd->wfd != sd->rfd) close(sd->wfd);
        close(sd->rfd);
        np_buf_release(&r->dir[i].buf);
        np_buf_release(&r->dir[i].injected);
        if (r->dir[i].in_pipe > 0) np_pipe_discard(&r->dir[i].pipe);
        else if (r->dir[i].pipe.rfd >= 0) np_pipe_put(&r->dir[i].pipe);
    }
    event_del(&r->idle);
    event_del(&r->kick);
    release_refs(&refs);
    free(r);
}
