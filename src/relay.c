/* The relay: C pumps bytes both ways once both sides are connected. A direction moves its
 * bytes by splice() through a pooled pipe (zero copy) or, when something must see them,
 * through a bounded buffer. Either way a full receiver stops the reads from the sender
 * (backpressure), EOF becomes shutdown(SHUT_WR) once the pending bytes are out, and the
 * connection ends when both directions have ended or at the first error. */
#include "relay.h"
#include "buf.h"
#include "conn.h"
#include "log.h"
#include "loop.h"
#include "pipepool.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PUMP_BUDGET 16          /* rounds per wakeup, so one busy connection cannot starve others */

enum { CLIENT = 0, SERVER = 1 };
static const char *const side_name[] = { "client", "server" };

struct side {
    struct np_relay *relay;
    int idx;
    int fd;
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

/* Reads from the source: >0 bytes, 0 EOF, -1 errno. */
static ssize_t fill(struct np_relay *r, struct direction *d, int fd)
{
    ssize_t n;

    if (d->splice && d->pipe.rfd < 0 && np_pipe_get(&d->pipe) < 0) {
        /* No pipe to be had (fd limit): this direction copies from now on. */
        np_clog(NP_WARNING, r->conn->id, "no pipe for splice (%s): copying instead",
                strerror(errno));
        d->splice = 0;
    }
    if (!d->splice) return np_buf_read_fd(&d->buf, fd, r->buffer_size);
    do {
        n = splice(fd, NULL, d->pipe.wfd, NULL, np_pipepool_pipe_size(),
                   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    } while (n < 0 && errno == EINTR);
    if (n > 0) d->in_pipe += n;
    return n;
}

/* Writes pending bytes to the destination: >0 bytes, -1 errno. */
static ssize_t flush(struct direction *d, int fd)
{
    ssize_t n;

    if (np_buf_len(&d->buf) > 0) {
        n = np_buf_write_fd(&d->buf, fd);
        if (n > 0 && np_buf_len(&d->buf) == 0) np_buf_release(&d->buf);
        return n;
    }
    do {
        n = splice(d->pipe.rfd, NULL, fd, NULL, d->in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    } while (n < 0 && errno == EINTR);
    if (n > 0) d->in_pipe -= n;
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
            n = flush(d, dst->fd);
            if (n < 0 && errno != EAGAIN) return fail(r, dst->idx, errno);
            if (n > 0) {
                *d->counter += n;
                moved = progress = 1;
            }
        }
        if (can_read(r, d)) {
            n = fill(r, d, src->fd);
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
        shutdown(dst->fd, SHUT_WR);
    }
    if (r->dir[0].done && r->dir[1].done) {
        np_conn_end(r->conn, "eof");
        return -1;
    }
    arm(&src->rev, &src->reading, can_read(r, d));
    arm(&dst->wev, &dst->writing, pending(d) > 0);
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

static void side_init(struct np_relay *r, int idx, int fd)
{
    struct side *s = &r->side[idx];

    s->relay = r;
    s->idx = idx;
    s->fd = fd;
    event_assign(&s->rev, np_base, fd, EV_READ | EV_PERSIST, on_readable, s);
    event_assign(&s->wev, np_base, fd, EV_WRITE | EV_PERSIST, on_writable, s);
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

void np_relay_start(struct np_conn *c, enum np_relay_mode mode,
                    int client_fd, struct evbuffer *client_ahead,
                    int server_fd, struct evbuffer *server_ahead)
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
        close(client_fd);
        close(server_fd);
        np_conn_end(c, "out of memory");
        return;
    }
    c->relay = r;
    r->conn = c;
    r->buffer_size = p->buffer_size;
    r->idle_timeout = p->idle_timeout;
    r->last_active = np_now();
    side_init(r, CLIENT, client_fd);
    side_init(r, SERVER, server_fd);
    for (int i = 0; i < 2; i++) {
        r->dir[i].from = i;
        r->dir[i].splice = mode != NP_RELAY_BUFFERED;
        r->dir[i].pipe.rfd = r->dir[i].pipe.wfd = -1;
    }
    r->dir[CLIENT].counter = &c->bytes_in;
    r->dir[SERVER].counter = &c->bytes_out;
    evtimer_assign(&r->idle, np_base, on_idle_check, r);
    if (r->idle_timeout > 0) {
        struct timeval tv = np_tv(r->idle_timeout);
        evtimer_add(&r->idle, &tv);
    }
    np_clog(NP_INFO, c->id, "%s: relay: %s", p->name,
            mode == NP_RELAY_BUFFERED ? "buffered" : "splice");
    /* Start both directions as if woken: bytes read ahead go out first. */
    if (pump(r, &r->dir[CLIENT]) == 0) pump(r, &r->dir[SERVER]);
}

void np_relay_free(struct np_relay *r)
{
    for (int i = 0; i < 2; i++) {
        event_del(&r->side[i].rev);
        event_del(&r->side[i].wev);
        close(r->side[i].fd);
        np_buf_release(&r->dir[i].buf);
        if (r->dir[i].in_pipe > 0) np_pipe_discard(&r->dir[i].pipe);
        else if (r->dir[i].pipe.rfd >= 0) np_pipe_put(&r->dir[i].pipe);
    }
    event_del(&r->idle);
    free(r);
}
