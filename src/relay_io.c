/* Moving a relay direction's bytes: reads from its source (splice into a pipe, a TLS read,
 * a plain or pass-through read into its buffer) and writes to its destination, and the end
 * of a side's write half. */
#include "relay_impl.h"
#include "buf.h"
#include "log.h"
#include "pipepool.h"
#include "tls.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Leaves the splice path for good: bytes still in the pipe move to the buffer first. */
static void copy_from_now_on(struct direction *d)
{
    d->splice = d->may_splice = 0;
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

/* TLS read into the direction's buffer: >0, 0 EOF, -1 errno (EAGAIN or EPROTO, src->err). */
static ssize_t tls_fill(struct np_relay *r, struct direction *d, struct side *src, size_t max)
{
    size_t room = r->buffer_size - np_buf_len(&d->buf);
    enum np_tls_want want = NP_TLS_WANT_READ;
    char *space;
    ssize_t n;

    if (room > max) room = max;
    space = np_buf_space(&d->buf, room);
    if (!space) {
        errno = ENOMEM;
        return -1;
    }
    n = np_tls_read(src->ssl, space, room, &want, r->tls_err, sizeof r->tls_err);
    if (n > 0) np_buf_commit(&d->buf, n);
    src->read_wants_write = n < 0 && errno == EAGAIN && want == NP_TLS_WANT_WRITE;
    return n;
}

/* Splices at most len bytes from fd into the pipe. */
static ssize_t splice_fill(struct np_relay *r, struct direction *d, int fd, size_t len)
{
    ssize_t n = np_pipe_fill(&d->pipe, fd, len);

    if (n > 0) d->in_pipe += n;
    return n;
}

/* Auto mode before splicing, plain both sides, no filter: a read into a scratch buffer,
 * written on at once (what the destination does not take waits in d->buf): short
 * exchanges cost two calls and no allocation. A read that fills the scratch buffer means
 * bulk: the direction splices from then on. >0 bytes read, 0 EOF, -1 errno. */
static ssize_t pass_through(struct np_relay *r, struct direction *d, struct side *src, size_t max)
{
    static char scratch[COPY_READ];
    struct side *dst = dst_of(r, d);
    size_t asked = max < sizeof scratch ? max : sizeof scratch;
    ssize_t n, w = 0;

    do {
        n = read(src->rfd, scratch, asked);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) return n;
    d->drained = (size_t)n < asked && !src->rfile && !src->hup;
    /* a full read is bulk; so is one that takes all a bucket allows (shaping keeps splice) */
    if ((size_t)n == asked) d->splice = d->may_splice;
    do {
        w = write(dst->wfd, scratch, n);
    } while (w < 0 && errno == EINTR);
    if (w < 0) w = 0;                   /* EAGAIN, or an error the next flush reports */
    if (w > 0) {
        *d->counter += w;
        if (d->more_counter) *d->more_counter += w;
    }
    if (w < n && np_buf_append(&d->buf, scratch + w, n - w) < 0) {
        errno = ENOMEM;
        return -1;
    }
    return n;
}

/* Reads at most max bytes from the source: >0 bytes, 0 EOF, -1 errno, STOPPED. */
ssize_t np_relay_fill(struct np_relay *r, struct direction *d, size_t max)
{
    struct side *src = src_of(r, d);
    ssize_t n;

    if (d->splice && d->pipe.rfd < 0 && np_pipe_get(&d->pipe) < 0) {
        /* No pipe to be had (fd limit): this direction copies from now on. */
        np_clog(NP_WARNING, r->id, "no pipe for splice (%s): copying instead",
                strerror(errno));
        d->splice = 0;
    }
    /* A plain read that returns less than it asked for emptied the socket: the next one
     * waits for readability rather than cost a call that answers EAGAIN. Not so a splice:
     * it also stops short when the pipe's slots are full (a unix socket's small buffers),
     * which an edge-triggered socket would never report again: it reads on to EAGAIN. */
    if (d->splice) {
        size_t asked = max < np_pipepool_pipe_size() ? max : np_pipepool_pipe_size();
        n = splice_fill(r, d, src->rfd, asked);
        d->drained = n > 0 && (size_t)n < asked && !src->hup && !src->et;
        if (n >= 0 || errno != EINVAL) return n;
        copy_from_now_on(d);            /* a source splice() cannot read (a terminal) */
    }
    if (d->may_splice && np_buf_len(&d->buf) == 0 && !tls_of(src) && !tls_of(dst_of(r, d)) &&
        dst_of(r, d)->upgrade == UPGRADE_NONE) {
        n = pass_through(r, d, src, max);
    } else if (tls_of(src)) {
        n = tls_fill(r, d, src, max);
    } else {
        size_t asked = r->buffer_size - np_buf_len(&d->buf);
        if (asked > max) asked = max;
        n = np_buf_read_fd(&d->buf, src->rfd, np_buf_len(&d->buf) + asked);
        d->drained = n > 0 && (size_t)n < asked && !src->rfile && !src->hup;
    }
    if (n >= 0 && d->filtered && np_relay_run_filter(r, d, n) < 0) return STOPPED;
    return n;
}

/* Writes pending bytes to the destination: >0 bytes, -1 errno. The pipe goes first:
 * bytes queued in buf while it held some (conn:send) come after them; bytes read ahead
 * before the relay are in buf with an empty pipe, and a splice direction reads nothing
 * until they are out. */
ssize_t np_relay_flush(struct np_relay *r, struct direction *d)
{
    struct side *dst = dst_of(r, d);
    ssize_t n;

    if (d->in_pipe > 0) {
        n = np_pipe_drain(&d->pipe, dst->wfd, d->in_pipe);
        if (n > 0) d->in_pipe -= n;
        if (n >= 0 || errno != EINVAL) return n;
        copy_from_now_on(d);            /* a destination splice() cannot write (a terminal) */
    }
    if (tls_of(dst)) {
        enum np_tls_want want = NP_TLS_WANT_WRITE;
        n = np_tls_write(dst->ssl, d->buf.data + d->buf.start, np_buf_len(&d->buf), &want,
                         r->tls_err, sizeof r->tls_err);
        if (n > 0) np_buf_consume(&d->buf, n);
        dst->write_wants_read = n < 0 && errno == EAGAIN && want == NP_TLS_WANT_READ;
    } else {
        n = np_buf_write_fd(&d->buf, dst->wfd);
    }
    if (n > 0 && np_buf_len(&d->buf) == 0) np_buf_release(&d->buf);
    return n;
}

/* The write half ends: a TLS close_notify, then shutdown(SHUT_WR) for a socket; closing
 * standard output. */
void np_relay_shut_write(struct side *s)
{
    if (tls_of(s)) {
        ERR_clear_error();
        SSL_shutdown(s->ssl);
    }
    if (s->wfd != s->rfd) {
        if (s->out_armed) event_del(s->out_ev);
        s->out_armed = 0;
        close(s->wfd);
        s->wfd = -1;
    } else {
        shutdown(s->wfd, SHUT_WR);
    }
}
