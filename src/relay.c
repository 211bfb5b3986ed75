/* The relay: C pumps bytes both ways once both sides are connected. This file: the pump,
 * the events it arms, STARTTLS, and the relay's life; relay_io.c moves the bytes,
 * relay_filter.c runs the filters, relay_shape.c applies the bandwidth.
 *
 * A direction moves its bytes by splice() through a pooled pipe (zero copy) or, when
 * something must see them (a hook, TLS), through a bounded buffer. Either way a full receiver
 * stops the reads from the sender (backpressure), EOF becomes shutdown(SHUT_WR) (after a TLS
 * close_notify) once the pending bytes are out, and the connection ends when both directions
 * have ended or at the first error. A side may be upgraded to TLS while relaying (STARTTLS). */
#include "relay_impl.h"
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

static const char *const side_name[] = { "client", "server" };

static void on_kick(struct np_deferred *k);

/* ---------------------------------------------------------------- arming, stopping */

static void on_event(evutil_socket_t fd, short what, void *arg);

/* A socket's one event waits for what is wanted (a change of it is one epoll_ctl).
 *
 * A plain socket (no TLS, not standard input or output) is edge-triggered, as nginx's are:
 * once its reads are wanted they stay registered to the end, so neither backpressure nor
 * the peer's EOF costs an epoll_ctl (a level-triggered socket at EOF would wake the loop at
 * every turn: it had to be taken out). An edge comes only with new bytes (or room, a hang-up),
 * so everything that stops a direction before EAGAIN resumes it itself: the destination's
 * writability pumps the direction toward it (a read follows the flush in the same round), a
 * bucket's turn and the end of a STARTTLS handshake pump too, and a wake-up that used up
 * PUMP_BUDGET registers the socket again (rearm: the kernel then reports what is ready, as
 * a level-triggered one would). An edge is remembered in drained even while reads wait.
 * A short read empties a socket unless its FIN came with the bytes (no edge would follow):
 * EV_CLOSED (EPOLLRDHUP) says so, and then the direction reads on to the EOF (side->hup). */
static void arm_socket(struct side *s, short want)
{
    int again = s->rearm && s->et;

    s->rearm = 0;
    if (s->et) want |= s->armed & EV_READ;             /* reads stay registered */
    if (s->et && want) want |= EV_ET | (want & EV_READ ? EV_CLOSED : 0);
    if (want == s->armed && !again) return;
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
int np_relay_stop(struct np_relay *r, enum np_end how, const char *detail)
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

    if (err == EPROTO) return np_relay_stop(r, how, r->tls_err);
    if (err == ECONNRESET || err == EPIPE) return np_relay_stop(r, how, "");
    return np_relay_stop(r, how, strerror(err));
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
            n = np_relay_flush(r, d);
            if (n < 0 && errno != EAGAIN) return fail(r, dst_of(r, d), errno);
            if (n > 0) {
                *d->counter += n;
                if (d->more_counter) *d->more_counter += n;
                moved = progress = 1;
            }
        }
        if (can_read(r, d) && !d->drained && (allowed = np_relay_allowance(d)) > 0) {
            n = np_relay_fill(r, d, allowed);
            if (n == STOPPED) return -1;
            if (n < 0 && errno != EAGAIN) return fail(r, src_of(r, d), errno);
            if (n == 0) d->eof = 1;
            if (n > 0) {
                np_relay_charge(d, n);
                moved = 1;
            }
            if (n >= 0) progress = 1;
        }
        if (!progress) break;
    }
    if (moved) np_idle_touch(&r->idle);
    if (rounds < 0) src_of(r, d)->rearm = dst_of(r, d)->rearm = 1;    /* budget used up */
    if (d->splice && d->in_pipe == 0 && d->pipe.rfd >= 0) np_pipe_put(&d->pipe);
    if (d->eof && pending(d) == 0 && !d->done) {
        d->done = 1;
        /* the other way done too: closing the socket sends the FIN (TLS still says goodbye) */
        if (!r->dir[d->from ^ 1].done || tls_of(dst_of(r, d))) np_relay_shut_write(dst_of(r, d));
    }
    if (r->dir[0].done && r->dir[1].done) return np_relay_stop(r, NP_END_EOF, "");
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
void np_relay_settle(struct np_relay *r)
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
void np_relay_pump_both(struct np_relay *r, int first, int both)
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
        return np_relay_stop(r, s->idx ? NP_END_SERVER_STARTTLS : NP_END_CLIENT_STARTTLS, r->tls_err);
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
    s->rearm = s->et;           /* TLS is level-triggered: registered again without EV_ET */
    s->et = 0;
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
    /* edge-triggered: new bytes while reads wait (backpressure, EOF) wait with them */
    if (s->et && !can_read(r, &r->dir[s->idx])) return;
    /* with TLS, a write toward this side may have been waiting for it to be readable */
    if (s->upgrade != UPGRADE_HANDSHAKE || handshake_step(r, s) >= 0)
        np_relay_pump_both(r, s->idx, s->ssl != NULL);
    np_relay_settle(r);
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    struct side *s = arg;
    struct np_relay *r = s->relay;

    /* with TLS, a read from this side may have been waiting for it to be writable */
    if (s->upgrade != UPGRADE_HANDSHAKE || handshake_step(r, s) >= 0)
        np_relay_pump_both(r, s->idx ^ 1, s->ssl != NULL);
    np_relay_settle(r);
}

/* A socket's event: readable, writable or both. */
static void on_event(evutil_socket_t fd, short what, void *arg)
{
    struct side *s = arg;

    if (what & EV_CLOSED) s->hup = 1;
    if (what & (EV_READ | EV_CLOSED)) on_readable(fd, what, arg);
    if ((what & EV_WRITE) && !s->relay->halted) on_writable(fd, what, arg);
}

static void on_kick(struct np_deferred *k)
{
    struct np_relay *r = (struct np_relay *)((char *)k - offsetof(struct np_relay, kick));

    if (np_relay_settle_injections(r) == 0) np_relay_pump_both(r, CLIENT, 1);
    np_relay_settle(r);
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

    np_relay_stop(r, NP_END_IDLE_TIMEOUT, "");
    np_relay_settle(r);
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
    s->et = NP_RELAY_ET && !s->ssl;
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
        np_relay_put_shared(cfg);
        return NULL;
    }
    if (np_buf_append(&r->dir[CLIENT].buf, client->ahead, client->ahead_len) < 0 ||
        np_buf_append(&r->dir[SERVER].buf, server->ahead, server->ahead_len) < 0) {
        np_buf_release(&r->dir[CLIENT].buf);
        np_relay_put_shared(cfg);
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
    r->dir[CLIENT].drained = !client->readable;     /* read on the kick, without a wait */
    if (client->ssl || server->ssl)
        r->dir[CLIENT].splice = r->dir[SERVER].splice = r->dir[CLIENT].may_splice = r->dir[SERVER].may_splice = 0;
    shaped = np_relay_shape(&r->dir[CLIENT], cfg) == 0;         /* both: each takes its shared references */
    shaped &= np_relay_shape(&r->dir[SERVER], cfg) == 0;
    if (!shaped || side_init(r, CLIENT, client) < 0 || side_init(r, SERVER, server) < 0 ||
        (r->idle_timeout > 0 && np_idle_join(&r->idle, r->idle_timeout, on_idle) < 0)) {
        for (int i = 0; i < 2; i++) {
            if (r->side[i].out_ev) event_free(r->side[i].out_ev);
            np_buf_release(&r->dir[i].buf);
            np_relay_unshape(&r->dir[i]);
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
        np_relay_unshape(&r->dir[i]);
    }
    free(r);
}
