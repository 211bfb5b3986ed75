/* What relay.c (the pump, events, STARTTLS, life) shares with relay_io.c (moving bytes),
 * relay_filter.c (hooks' filters, injected bytes) and relay_shape.c (bandwidth): the relay's
 * fields and the steps one file calls in another. Not for other files. */
#ifndef NP_RELAY_IMPL_H
#define NP_RELAY_IMPL_H
#include "relay.h"
#include "buf.h"
#include "defer.h"
#include "idle.h"
#include "pipepool.h"

#include <event2/event_struct.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PUMP_BUDGET 16          /* rounds per wakeup, so one busy connection cannot starve others */
#ifndef NP_RELAY_ET
#define NP_RELAY_ET 1           /* plain sockets edge-triggered (bench/plain.sh builds it with 0) */
#endif
#define COPY_READ (16 * 1024)   /* auto: copied reads of at most this; one that fills it: splice */
#define STOPPED (-2)            /* np_relay_fill(): the relay has stopped (a filter said so) */
#define UNSHAPED ((size_t)-1)   /* np_relay_allowance() without a bucket */
#define MAX_BUCKETS 3           /* per direction: its own, its source's, its proxy's */

enum { CLIENT = NP_CLIENT, SERVER = NP_SERVER };

enum upgrade { UPGRADE_NONE, UPGRADE_FLUSHING, UPGRADE_HANDSHAKE };

struct side {
    struct np_relay *relay;
    int idx;
    int rfd, wfd;               /* the same socket, or standard input and output */
    struct event ev;            /* a socket's reads and writes; standard input's reads */
    struct event *out_ev;       /* standard output's writes, when it is another descriptor */
    short armed, out_armed;     /* what ev (and out_ev) wait for now (EV_ET included) */
    unsigned char et;           /* edge-triggered: a plain socket (relay.c, "arming") */
    unsigned char rearm;        /* et: register again, so the kernel reports what is ready */
    unsigned char hup;          /* et: the peer's FIN is in (EV_CLOSED): a short read did not
                                 * empty the socket, a read of its EOF is still to come */
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

static inline struct side *src_of(struct np_relay *r, struct direction *d) { return &r->side[d->from]; }
static inline struct side *dst_of(struct np_relay *r, struct direction *d) { return &r->side[d->from ^ 1]; }

/* The TLS session a side reads and writes through: none while it still flushes clear text
 * before a STARTTLS handshake. */
static inline SSL *tls_of(const struct side *s)
{
    return s->upgrade == UPGRADE_NONE ? s->ssl : NULL;
}

static inline size_t pending(const struct direction *d)
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
static inline int can_write(struct np_relay *r, struct direction *d)
{
    return pending(d) > 0 && dst_of(r, d)->upgrade != UPGRADE_HANDSHAKE;
}

/* relay.c. Records why the relay stops (the first reason wins); returns -1. */
int np_relay_stop(struct np_relay *r, enum np_end how, const char *detail);
/* Pumps direction first (and the other one when both), then starts the upgrades whose clear
 * text is out. */
void np_relay_pump_both(struct np_relay *r, int first, int both);
/* The last thing every event handler does: tells the owner of an end, else arms events. */
void np_relay_settle(struct np_relay *r);

/* relay_io.c. Reads at most max bytes from the source: >0 bytes, 0 EOF, -1 errno, STOPPED. */
ssize_t np_relay_fill(struct np_relay *r, struct direction *d, size_t max);
/* Writes pending bytes to the destination: >0 bytes, -1 errno. */
ssize_t np_relay_flush(struct np_relay *r, struct direction *d);
/* The write half of a side ends (TLS close_notify, then shutdown or closing stdout). */
void np_relay_shut_write(struct side *s);

/* relay_filter.c. Moves injected bytes into their directions' buffers: 0, -1 when out of
 * memory (the relay has stopped). */
int np_relay_settle_injections(struct np_relay *r);
/* Passes the n bytes just read through the direction's filter: -1 once the relay has stopped. */
int np_relay_run_filter(struct np_relay *r, struct direction *d, size_t n);

/* relay_shape.c. What the direction's buckets let it read now (UNSHAPED without any; 0: it
 * waits for its turn). */
size_t np_relay_allowance(struct direction *d);
/* n bytes were read this way: taken from each bucket. */
void np_relay_charge(struct direction *d, size_t n);
/* The direction's buckets from cfg (taking the shared references): 0, -1 out of memory. */
int np_relay_shape(struct direction *d, const struct np_relay_config *cfg);
/* The shared buckets of a relay that could not be made, let go. */
void np_relay_put_shared(const struct np_relay_config *cfg);
/* Frees the direction's buckets and leaves their queue. */
void np_relay_unshape(struct direction *d);

#endif
