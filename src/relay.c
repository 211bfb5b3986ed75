/* The relay: C pumps bytes both ways once both sides are connected. A direction moves its
 * bytes by splice() through a pooled pipe (zero copy) or, when something must see them (a
 * hook, TLS), through a bounded buffer. Either way a full receiver stops the reads from the
 * sender (backpressure), EOF becomes shutdown(SHUT_WR) (after a TLS close_notify) once the
 * pending bytes are out, and the connection ends when both directions have ended or at the
 * first error. A side may be upgraded to TLS while relaying (STARTTLS).
 *
 * Bandwidth: a direction may read through token buckets (bucket.h: its own, its source's,
 * its proxy's). Every read, splice included, asks for at most what they all allow, so a
 * shaped direction still splices; when one is short it reads nothing and arms no read
 * event until that bucket's timer gives it its turn (on_turn). */
#include "relay.h"
#include "buf.h"
#include "defer.h"
#include "idle.h"
#include "log.h"
#include "loop.h"
#include "pipepool.h"
#include "text.h"
#include "tls.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define PUMP_BUDGET 16          /* rounds per wakeup, so one busy connection cannot starve others */
#define COPY_READ (16 * 1024)   /* auto: copied reads of at most this; one that fills it: splice */
#define STOPPED (-2)            /* fill(): the relay has stopped (a filter said so) */
#define UNSHAPED ((size_t)-1)   /* allowance() without a bucket */
#define MAX_BUCKETS 3           /* per direction: its own, its source's, its proxy's */

enum { CLIENT = NP_CLIENT, SERVER = NP_SERVER };
static const char *const side_name[] = { "client", "server" };

enum upgrade { UPGRADE_NONE, UPGRADE_FLUSHING, UPGRADE_HANDSHAKE };

struct side {
    struct np_relay *relay;
    int idx;
    int rfd, wfd;               /* the same socket, or standard input and output */
    struct event ev;            /* a socket's reads and writes; standard input's reads */
    struct event *out_ev;       /* standard output's writes, when it is another descriptor */
    short armed, out_armed;     /* what ev (and out_ev) wait for now */
    SSL *ssl;
    int read_wants_write;       /* TLS: the last read needs the socket writable */
    int write_wants_read;       /* TLS: the last write needs the socket readable */
    enum upgrade upgrade;       /* STARTTLS in progress on this side */
    int rfile, wfile;           /* stdin / stdout is a regular file: no epoll, always ready */
    int hs_wants_write;
};

/* Bytes from side `from` to side `from ^ 1`. */
struct direction {
    int from;
    int splice;                 /* moves its bytes through the pipe now */
    int may_splice;             /* auto: starts copying, splices once a read fills COPY_READ */
    struct np_pipe pipe;        /* held only while in_pipe > 0 */
    size_t in_pipe;
    struct np_buf buf;          /* the copying path, or bytes read ahead before the relay */
    struct np_buf injected;     /* np_relay_inject() bytes, queued while a filter runs */
    int filtered;               /* ops->filter sees this direction's bytes */
    int drained;                /* the last plain read was short: wait for readability */
    int eof, done;
    uint64_t *counter;          /* the owner's counters of bytes this way */
    uint64_t *more_counter;     /* may be NULL */
    struct np_relay *relay;
    struct shaped *shaped;      /* bandwidth, when the proxy sets it; NULL: not shaped */
    int starved;                /* waits for its turn on a bucket: reads nothing meanwhile */
};

/* A shaped direction's buckets, made only for a proxy with `bandwidth` (an idle connection of
 * another holds none of it). */
struct shaped {
    struct np_bucket *bucket[MAX_BUCKETS];  /* every read takes from each */
    int nbuckets;
    struct np_bucket_waiter waiter; /* queued on the bucket that was short */
    struct direction *d;
};

struct np_relay {
    const struct np_relay_ops *ops;
    void *arg;
    uint64_t id;                /* for log lines */
    const char *name;
    struct side side[2];
    struct direction dir[2];    /* dir[CLIENT]: client -> server */
    size_t buffer_size;
    double idle_timeout;
    struct np_idle idle;        /* in the list of relays with the same idle_timeout */
    struct np_deferred kick;    /* pumps both directions on the next loop turn */
    char tls_err[160];          /* why the last TLS call failed (either side) */
    int injection_failed;       /* out of memory while queueing injected bytes */
    enum np_end end;            /* why it stopped; NP_END_NONE while it runs */
    char detail[200];
    int reported, halted;
};

static void on_kick(struct np_deferred *k);

static struct side *src_of(struct np_relay *r, struct direction *d) { return &r->side[d->from]; }
static struct side *dst_of(struct np_relay *r, struct direction *d) { return &r->side[d->from ^ 1]; }

/* The TLS session a side reads and writes through: none while it still flushes clear text
 * before a STARTTLS handshake. */
static SSL *tls_of(const struct side *s)
{
    return s->upgrade == UPGRADE_NONE ? s->ssl : NULL;
}

static size_t pending(const struct direction *d)
{
    return np_buf_len(&d->buf) + d->in_pipe;
}

/* May this direction read more now? Not while either side is being upgraded; splice reads
 * only into an empty pipe (a pipe whose slots are full answers EAGAIN too, which must not
 * be mistaken for an idle socket); the copying path up to its bound. */
static inline int can_read(struct np_relay *r, const struct direction *d)
{
    if (d->eof || d->starved) return 0;
    if (r->side[0].upgrade || r->side[1].upgrade) return 0;
    if (d->splice) return pending(d) == 0;
    return np_buf_len(&d->buf) < r->buffer_size;
}

/* May it write? Not into a side that is in the middle of its TLS handshake. */
static int can_write(struct np_relay *r, struct direction *d)
{
    return pending(d) > 0 && dst_of(r, d)->upgrade != UPGRADE_HANDSHAKE;
}

/* ---------------------------------------------------------------- I/O */

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
    ssize_t n;

    do {
        n = splice(fd, NULL, d->pipe.wfd, NULL, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    } while (n < 0 && errno == EINTR);
    if (n > 0) d->in_pipe += n;
    return n;
}

static int run_filter(struct np_relay *r, struct direction *d, size_t n);

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
    d->drained = (size_t)n < asked && !src->rfile;
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
static ssize_t fill(struct np_relay *r, struct direction *d, size_t max)
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
     * waits for readability rather than cost a call that answers EAGAIN. */
    if (d->splice) {
        size_t asked = max < np_pipepool_pipe_size() ? max : np_pipepool_pipe_size();
        n = splice_fill(r, d, src->rfd, asked);
        d->drained = n > 0 && (size_t)n < asked;
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
        d->drained = n > 0 && (size_t)n < asked && !src->rfile;
    }
    if (n >= 0 && d->filtered && run_filter(r, d, n) < 0) return STOPPED;
    return n;
}

/* Writes pending bytes to the destination: >0 bytes, -1 errno. The pipe goes first:
 * bytes queued in buf while it held some (conn:send) come after them; bytes read ahead
 * before the relay are in buf with an empty pipe, and a splice direction reads nothing
 * until they are out. */
static ssize_t flush(struct np_relay *r, struct direction *d)
{
    struct side *dst = dst_of(r, d);
    ssize_t n;

    if (d->in_pipe > 0) {
        do {
            n = splice(d->pipe.rfd, NULL, dst->wfd, NULL, d->in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        } while (n < 0 && errno == EINTR);
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
static void shut_write(struct side *s)
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

static void on_event(evutil_socket_t fd, short what, void *arg);

/* A socket's one event waits for what is wanted (a change of it is one epoll_ctl). */
static void arm_socket(struct side *s, short want)
{
    if (want == s->armed) return;
    if (s->armed) event_del(&s->ev);
    if (want) {
        event_assign(&s->ev, np_base, s->rfd, want | EV_PERSIST, on_event, s);
        event_add(&s->ev, NULL);
    }
    s->armed = want;
}

/* Standard input and output: an event each; epoll refuses regular files (stdio redirected
 * to one), which are always ready: the callback runs on the next loop turn, and again as
 * long as it is wanted. */
static void arm_split(struct event *ev, short *armed, int want, int is_file, short what)
{
    if (is_file) {
        if (want) event_active(ev, what, 0);
        return;
    }
    if (want && !*armed) event_add(ev, NULL);
    if (!want && *armed) event_del(ev);
    *armed = want ? what : 0;
}

static void arm_side(struct side *s, int want_read, int want_write)
{
    if (s->out_ev == NULL) {
        arm_socket(s, (want_read ? EV_READ : 0) | (want_write ? EV_WRITE : 0));
        return;
    }
    arm_split(&s->ev, &s->armed, want_read, s->rfile, EV_READ);
    if (s->wfd >= 0) arm_split(s->out_ev, &s->out_armed, want_write, s->wfile, EV_WRITE);
}

/* Records why the relay stops (the first reason wins) and its detail for the log line;
 * returns -1 for the caller to pass up. The relay stays valid: the owner is told once the
 * event handler is done (settle). */
static int stop(struct np_relay *r, enum np_end how, const char *detail)
{
    if (r->end != NP_END_NONE) return -1;
    r->end = how;
    np_copy_text(r->detail, sizeof r->detail, detail);
    return -1;
}

/* An I/O error on side s. */
static int fail(struct np_relay *r, struct side *s, int err)
{
    enum np_end how = np_end_io(s->idx, err);

    if (err == EPROTO) return stop(r, how, r->tls_err);
    if (err == ECONNRESET || err == EPIPE) return stop(r, how, "");
    return stop(r, how, strerror(err));
}

/* ---------------------------------------------------------------- filters */

/* Moves injected bytes into their directions' buffers. -1 when out of memory. */
static int settle_injections(struct np_relay *r)
{
    for (int i = 0; i < 2; i++) {
        struct direction *d = &r->dir[i];
        if (np_buf_len(&d->injected) == 0) continue;
        if (np_buf_append(&d->buf, d->injected.data + d->injected.start,
                          np_buf_len(&d->injected)) < 0)
            r->injection_failed = 1;
        np_buf_release(&d->injected);
    }
    if (r->injection_failed) return stop(r, NP_END_NO_MEMORY, "injected bytes");
    return 0;
}

/* Passes the n bytes just read (the end of d->buf) through the direction's filter; at EOF
 * (n == 0) it is called once more with eof set. Returns -1 once the relay has stopped. */
static int run_filter(struct np_relay *r, struct direction *d, size_t n)
{
    const char *chunk = d->buf.data ? d->buf.data + d->buf.end - n : "", *out;
    size_t outlen;
    enum np_filter_rc rc = r->ops->filter(r->arg, d->from, chunk, n, n == 0, &out, &outlen);

    if (rc == NP_FILTER_STOP) return stop(r, NP_END_CLOSED, "by a filter");
    if (rc == NP_FILTER_REPLACE) {
        int appended;
        d->buf.end -= n;
        appended = np_buf_append(&d->buf, out, outlen);
        if (np_buf_len(&d->buf) == 0) np_buf_release(&d->buf);
        r->ops->filter_done(r->arg);
        if (appended < 0) return stop(r, NP_END_NO_MEMORY, "filtered bytes");
    }
    return settle_injections(r);
}

/* ---------------------------------------------------------------- shaping */

/* What the direction's buckets let it read now: the least of them, UNSHAPED without any.
 * 0 when one is short: the direction then queues on that one and reads nothing (no event
 * armed for its reads) until its turn (on_turn). */
static size_t allowance(struct direction *d)
{
    struct shaped *s = d->shaped;
    size_t allowed = UNSHAPED;

    for (int i = 0; s && i < s->nbuckets; i++) {
        size_t n = np_bucket_allows(s->bucket[i], &s->waiter);
        if (n == 0) {
            d->starved = 1;
            np_bucket_wait(s->bucket[i], &s->waiter);
            return 0;
        }
        if (n < allowed) allowed = n;
    }
    return allowed;
}

/* n bytes were read this way: taken from each bucket. */
static void charge(struct direction *d, size_t n)
{
    struct shaped *s = d->shaped;

    if (!s) return;
    for (int i = 0; i < s->nbuckets; i++) np_bucket_take(s->bucket[i], n);
    s->waiter.served += n;
}

static void pump_both(struct np_relay *r, int first, int both);
static void settle(struct np_relay *r);

/* A bucket's turn for a direction that waited: it reads what it allows, if the socket has
 * anything (else it waits for readability as usual). */
static void on_turn(struct np_bucket_waiter *w)
{
    struct direction *d = ((struct shaped *)((char *)w - offsetof(struct shaped, waiter)))->d;
    struct np_relay *r = d->relay;

    d->starved = 0;
    if (r->halted) return;
    pump_both(r, d->from, 0);
    settle(r);
}

/* The direction's buckets: the shared ones handed over (the references are the relay's
 * now, and are let go here on failure), then its own at the per_conn rate. 0, or -1 when
 * out of memory. */
static int shape(struct direction *d, const struct np_relay_config *cfg)
{
    struct np_bucket *const *shared = cfg->shared[d->from];
    struct shaped *s;

    if (!shared[0] && !shared[1] && cfg->rate <= 0) return 0;
    if (!(s = d->shaped = calloc(1, sizeof *s))) {
        for (int i = 0; i < 2; i++) np_bucket_put(shared[i]);
        return -1;
    }
    s->d = d;
    s->waiter.wake = on_turn;
    for (int i = 0; i < 2; i++)
        if (shared[i]) s->bucket[s->nbuckets++] = shared[i];
    if (cfg->rate <= 0) return 0;
    if (!(s->bucket[s->nbuckets] = np_bucket_new(cfg->rate))) return -1;
    s->nbuckets++;
    return 0;
}

/* The shared buckets of a relay that could not be made. */
static void put_shared(const struct np_relay_config *cfg)
{
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) np_bucket_put(cfg->shared[i][j]);
}

static void unshape(struct direction *d)
{
    struct shaped *s = d->shaped;

    if (!s) return;
    np_bucket_cancel(&s->waiter);
    for (int i = 0; i < s->nbuckets; i++) np_bucket_put(s->bucket[i]);
    free(s);
    d->shaped = NULL;
}

/* ---------------------------------------------------------------- the pump */

/* Moves what it can for one direction. Returns -1 once the relay has stopped. Each round writes what is pending, then reads what there is room for; a
 * blocked writer still lets the buffer fill up to its bound. Stop when neither moves. */
static int pump(struct np_relay *r, struct direction *d)
{
    int rounds = PUMP_BUDGET, moved = 0;
    size_t allowed;
    ssize_t n;

    while (rounds-- > 0) {
        int progress = 0;
        if (can_write(r, d)) {
            n = flush(r, d);
            if (n < 0 && errno != EAGAIN) return fail(r, dst_of(r, d), errno);
            if (n > 0) {
                *d->counter += n;
                if (d->more_counter) *d->more_counter += n;
                moved = progress = 1;
            }
        }
        if (can_read(r, d) && !d->drained && (allowed = allowance(d)) > 0) {
            n = fill(r, d, allowed);
            if (n == STOPPED) return -1;
            if (n < 0 && errno != EAGAIN) return fail(r, src_of(r, d), errno);
            if (n == 0) d->eof = 1;
            if (n > 0) {
                charge(d, n);
                moved = 1;
            }
            if (n >= 0) progress = 1;
        }
        if (!progress) break;
    }
    if (moved) np_idle_touch(&r->idle);
    if (d->splice && d->in_pipe == 0 && d->pipe.rfd >= 0) np_pipe_put(&d->pipe);
    if (d->eof && pending(d) == 0 && !d->done) {
        d->done = 1;
        /* the other way done too: closing the socket sends the FIN (TLS still says goodbye) */
        if (!r->dir[d->from ^ 1].done || tls_of(dst_of(r, d))) shut_write(dst_of(r, d));
    }
    if (r->dir[0].done && r->dir[1].done) return stop(r, NP_END_EOF, "");
    return 0;
}

static int start_handshake(struct np_relay *r, struct side *s);

/* STARTTLS: once the bytes toward an upgrading side are out in clear, its handshake starts. */
static int advance_upgrades(struct np_relay *r)
{
    for (int i = 0; i < 2; i++) {
        struct side *s = &r->side[i];
        if (s->upgrade == UPGRADE_FLUSHING && pending(&r->dir[i ^ 1]) == 0 &&
            start_handshake(r, s) < 0)
            return -1;
    }
    return 0;
}

/* Arms, for both sides, exactly the events that something waits for. */
static void update_events(struct np_relay *r)
{
    for (int i = 0; i < 2; i++) {
        struct side *s = &r->side[i];
        struct direction *out = &r->dir[i], *in = &r->dir[i ^ 1];   /* from s, toward s */
        int want_read, want_write;

        if (s->upgrade == UPGRADE_HANDSHAKE) {
            want_read = !s->hs_wants_write;
            want_write = s->hs_wants_write;
        } else {
            want_read = (can_read(r, out) && !s->read_wants_write) ||
                        (can_write(r, in) && s->write_wants_read);
            want_write = (can_write(r, in) && !s->write_wants_read) ||
                         (can_read(r, out) && s->read_wants_write);
        }
        arm_side(s, want_read, want_write);
        /* TLS may hold decrypted bytes the socket will never signal again */
        if (s->ssl && want_read && !s->upgrade && SSL_pending(s->ssl) > 0)
            event_active(&s->ev, EV_READ, 0);
    }
}

/* The last thing every event handler does: a relay that has stopped tells its owner (once)
 * and arms nothing more; else the events are armed for what it waits for. */
static void settle(struct np_relay *r)
{
    if (r->halted) return;
    if (r->end == NP_END_NONE) {
        update_events(r);
        return;
    }
    np_relay_halt(r);
    if (!r->reported) {
        r->reported = 1;
        r->ops->ended(r->arg, r->end, r->detail);
    }
}

/* Pumps direction first, and the other one too when asked, then starts the upgrades whose
 * clear text is out. */
static void pump_both(struct np_relay *r, int first, int both)
{
    if (pump(r, &r->dir[first]) < 0 || (both && pump(r, &r->dir[first ^ 1]) < 0)) return;
    advance_upgrades(r);
}

/* ---------------------------------------------------------------- STARTTLS */

static int handshake_step(struct np_relay *r, struct side *s)
{
    char info[160];

    switch (np_tls_handshake(s->ssl, r->tls_err, sizeof r->tls_err)) {
    case NP_TLS_DONE:
        s->upgrade = UPGRADE_NONE;
        np_tls_describe(s->ssl, info, sizeof info);
        np_clog(NP_INFO, r->id, "%s: starttls with the %s: %s", r->name, side_name[s->idx], info);
        return 1;
    case NP_TLS_WANT_READ: s->hs_wants_write = 0; return 0;
    case NP_TLS_WANT_WRITE: s->hs_wants_write = 1; return 0;
    default:
        return stop(r, s->idx ? NP_END_SERVER_STARTTLS : NP_END_CLIENT_STARTTLS, r->tls_err);
    }
}

static int start_handshake(struct np_relay *r, struct side *s)
{
    s->upgrade = UPGRADE_HANDSHAKE;
    return handshake_step(r, s) < 0 ? -1 : 0;
}

int np_relay_starttls(struct np_relay *r, int side, SSL_CTX *ctx, int server,
                      const char *sni, const char *verify_name)
{
    struct side *s = &r->side[side];

    if (s->ssl || s->upgrade || s->rfd != s->wfd) return -1;
    s->ssl = np_tls_new(ctx, server, s->rfd, sni, verify_name);
    if (!s->ssl) return -1;
    s->upgrade = UPGRADE_FLUSHING;
    if (!r->halted) np_defer(&r->kick, on_kick);
    return 0;
}

/* ---------------------------------------------------------------- events */

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    struct side *s = arg;
    struct np_relay *r = s->relay;

    r->dir[s->idx].drained = 0;
    /* with TLS, a write toward this side may have been waiting for it to be readable */
    if (s->upgrade != UPGRADE_HANDSHAKE || handshake_step(r, s) >= 0)
        pump_both(r, s->idx, s->ssl != NULL);
    settle(r);
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    struct side *s = arg;
    struct np_relay *r = s->relay;

    /* with TLS, a read from this side may have been waiting for it to be writable */
    if (s->upgrade != UPGRADE_HANDSHAKE || handshake_step(r, s) >= 0)
        pump_both(r, s->idx ^ 1, s->ssl != NULL);
    settle(r);
}

/* A socket's event: readable, writable or both. */
static void on_event(evutil_socket_t fd, short what, void *arg)
{
    struct side *s = arg;

    if (what & EV_READ) on_readable(fd, what, arg);
    if ((what & EV_WRITE) && !s->relay->halted) on_writable(fd, what, arg);
}

static void on_kick(struct np_deferred *k)
{
    struct np_relay *r = (struct np_relay *)((char *)k - offsetof(struct np_relay, kick));

    if (settle_injections(r) == 0) pump_both(r, CLIENT, 1);
    settle(r);
}

int np_relay_inject(struct np_relay *r, int dir, const char *data, size_t len)
{
    if (np_buf_append(&r->dir[dir].injected, data, len) < 0) return -1;
    /* settled after the running filter, or on the kick */
    if (!r->halted) np_defer(&r->kick, on_kick);
    return 0;
}

static void on_idle(struct np_idle *m)
{
    struct np_relay *r = (struct np_relay *)((char *)m - offsetof(struct np_relay, idle));

    stop(r, NP_END_IDLE_TIMEOUT, "");
    settle(r);
}

/* ---------------------------------------------------------------- life */

/* 0, or -1 when out of memory. */
static int side_init(struct np_relay *r, int idx, const struct np_relay_side *from)
{
    struct side *s = &r->side[idx];
    struct stat st;

    s->relay = r;
    s->idx = idx;
    s->rfd = from->rfd;
    s->wfd = from->wfd;
    s->ssl = from->ssl;
    /* a socket is never a regular file: only standard input and output may be one */
    if (s->rfd != s->wfd || s->rfd <= STDERR_FILENO) {
        s->rfile = fstat(s->rfd, &st) == 0 && S_ISREG(st.st_mode);
        s->wfile = fstat(s->wfd, &st) == 0 && S_ISREG(st.st_mode);
    }
    if (s->rfd != s->wfd || s->rfile) {     /* standard input and output: an event each */
        event_assign(&s->ev, np_base, s->rfd, EV_READ | EV_PERSIST, on_readable, s);
        s->out_ev = event_new(np_base, s->wfd, EV_WRITE | EV_PERSIST, on_writable, s);
        return s->out_ev ? 0 : -1;
    }
    event_assign(&s->ev, np_base, s->rfd, EV_READ | EV_PERSIST, on_event, s);
    return 0;
}

static const char *path_name(const struct direction *d)
{
    return d->filtered ? "hook" : d->splice || d->may_splice ? "splice" : "buffered";
}

int np_relay_client_fd(const struct np_relay *r)
{
    return r->side[NP_CLIENT].rfd;
}

int np_relay_server_fd(const struct np_relay *r)
{
    return r->side[NP_SERVER].rfd;
}

const char *np_relay_describe(const struct np_relay *r, char *out, size_t outlen)
{
    const char *a = path_name(&r->dir[0]), *b = path_name(&r->dir[1]);

    if (!strcmp(a, b)) np_copy_text(out, outlen, a);
    else snprintf(out, outlen, "client->server %s, server->client %s", a, b);
    return out;
}

static void direction_init(struct np_relay *r, struct direction *d, int from,
                           const struct np_relay_config *cfg)
{
    int spliceable = cfg->mode != NP_RELAY_BUFFERED && !cfg->filtered[from] && !cfg->may_starttls;

    d->from = from;
    d->filtered = cfg->filtered[from];
    /* bytes a filter or TLS must handle leave splice; the other direction may keep it. A
     * side declared for a later STARTTLS copies from the start. Forced splice splices at
     * once; auto copies until a read fills COPY_READ (HAProxy's splice-auto). */
    d->splice = spliceable && cfg->mode == NP_RELAY_SPLICE;
    d->may_splice = spliceable && cfg->mode == NP_RELAY_AUTO;
    d->pipe.rfd = d->pipe.wfd = -1;
    d->drained = 1;                 /* nothing read yet: the first read waits for readability */
    d->counter = cfg->bytes[from];
    d->more_counter = cfg->more_bytes[from];
    d->relay = r;
}

struct np_relay *np_relay_new(const struct np_relay_config *cfg, const struct np_relay_ops *ops,
                              void *arg, const struct np_relay_side *client,
                              const struct np_relay_side *server)
{
    struct np_relay *r = calloc(1, sizeof *r);
    int shaped;

    if (!r) {
        put_shared(cfg);
        return NULL;
    }
    if (np_buf_append(&r->dir[CLIENT].buf, client->ahead, client->ahead_len) < 0 ||
        np_buf_append(&r->dir[SERVER].buf, server->ahead, server->ahead_len) < 0) {
        np_buf_release(&r->dir[CLIENT].buf);
        put_shared(cfg);
        free(r);
        return NULL;
    }
    r->ops = ops;
    r->arg = arg;
    r->id = cfg->log_id;
    r->name = cfg->log_name;
    r->buffer_size = cfg->buffer_size;
    r->idle_timeout = cfg->idle_timeout;
    direction_init(r, &r->dir[CLIENT], CLIENT, cfg);
    direction_init(r, &r->dir[SERVER], SERVER, cfg);
    if (client->ssl || server->ssl)
        r->dir[CLIENT].splice = r->dir[SERVER].splice = r->dir[CLIENT].may_splice = r->dir[SERVER].may_splice = 0;
    shaped = shape(&r->dir[CLIENT], cfg) == 0;         /* both: each takes its shared references */
    shaped &= shape(&r->dir[SERVER], cfg) == 0;
    if (!shaped || side_init(r, CLIENT, client) < 0 || side_init(r, SERVER, server) < 0 ||
        (r->idle_timeout > 0 && np_idle_join(&r->idle, r->idle_timeout, on_idle) < 0)) {
        for (int i = 0; i < 2; i++) {
            if (r->side[i].out_ev) event_free(r->side[i].out_ev);
            np_buf_release(&r->dir[i].buf);
            unshape(&r->dir[i]);
        }
        free(r);
        return NULL;
    }
    /* Bytes read ahead go out first, from the loop: filters must not run inside the caller. */
    np_defer(&r->kick, on_kick);
    return r;
}

void np_relay_halt(struct np_relay *r)
{
    for (int i = 0; i < 2; i++) {
        struct side *sd = &r->side[i];
        /* an event on a regular file is made active, never added: armed does not say */
        if (sd->armed || sd->rfile) event_del(&sd->ev);
        if (sd->out_ev && (sd->out_armed || sd->wfile)) event_del(sd->out_ev);
        sd->armed = sd->out_armed = 0;
    }
    np_idle_leave(&r->idle);
    np_defer_cancel(&r->kick);
    for (int i = 0; i < 2; i++)
        if (r->dir[i].shaped) np_bucket_cancel(&r->dir[i].shaped->waiter);
    r->halted = 1;
}

void np_relay_free(struct np_relay *r)
{
    np_relay_halt(r);
    for (int i = 0; i < 2; i++) {
        struct side *sd = &r->side[i];
        if (sd->ssl) SSL_free(sd->ssl);
        if (sd->wfd >= 0 && sd->wfd != sd->rfd) close(sd->wfd);
        close(sd->rfd);
        np_buf_release(&r->dir[i].buf);
        np_buf_release(&r->dir[i].injected);
        if (r->dir[i].in_pipe > 0) np_pipe_discard(&r->dir[i].pipe);
        else if (r->dir[i].pipe.rfd >= 0) np_pipe_put(&r->dir[i].pipe);
        if (sd->out_ev) event_free(sd->out_ev);
        unshape(&r->dir[i]);
    }
    free(r);
}
