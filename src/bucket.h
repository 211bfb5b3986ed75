/* Token buckets for bandwidth shaping (`bandwidth = { per_conn, per_source, per_proxy }`):
 * one bucket is one direction's budget at one rate, refilled from the monotonic clock. A
 * reader takes at most what the bucket holds; when it is short, the reader queues on it and
 * is woken, in turn (the one that has read least first), by the bucket's one timer once a
 * slice has come in. A leaf: the relay asks it, it knows nothing of relays.
 *
 * The shared buckets (per proxy, per source address) live in a shaper, one per proxy per
 * worker process: a worker's connections share them, the workers do not (see docs/guide.md,
 * "Bandwidth"). */
#ifndef NP_BUCKET_H
#define NP_BUCKET_H

#include <stddef.h>

struct np_bucket;
struct np_shaper;

/* Something that reads through a bucket: queued on the bucket that was short, and woken
 * (wake) when it is its turn. Embedded in its owner, which adds what it reads to `served`.
 * The queue is in order of `served` (fair queueing by bytes, not by turns: a reader whose
 * turn found little to read comes back sooner); one that joins late starts level with the
 * last one served, so it neither waits for the others to catch up nor overtakes them. */
struct np_bucket_waiter {
    struct np_bucket_waiter *next, *prev;
    struct np_bucket *on;               /* the bucket it waits on, or NULL */
    double served;                      /* bytes, and the catching up of a late joiner */
    void (*wake)(struct np_bucket_waiter *w);
};

/* A bucket of its own (per_conn) at rate bytes per second (> 0); NULL when out of memory. */
struct np_bucket *np_bucket_new(double rate);

/* Lets a bucket go (a shared one leaves its shaper with its last user). NULL is fine. */
void np_bucket_put(struct np_bucket *b);

/* What w may read now: 0 while the bucket holds less than 1 KiB, or while others are
 * queued before w (then w must queue: np_bucket_wait, and its turn brings a slice). */
size_t np_bucket_allows(struct np_bucket *b, struct np_bucket_waiter *w);

/* n bytes were read through b. */
void np_bucket_take(struct np_bucket *b, size_t n);

/* Queues w on b until its turn (by `served`); b's timer is armed for the next slice. */
void np_bucket_wait(struct np_bucket *b, struct np_bucket_waiter *w);

/* Takes w out of its queue, if it is in one (idempotent). */
void np_bucket_cancel(struct np_bucket_waiter *w);

/* The shared buckets of a proxy: per_proxy and per_source rates in bytes per second (0:
 * none). NULL when both are 0, or out of memory. */
struct np_shaper *np_shaper_new(double per_proxy, double per_source);

/* The proxy lets its shaper go; the buckets still in use keep it until their last user. */
void np_shaper_put(struct np_shaper *s);

/* A connection's shared buckets, for each direction: out[dir][0] its source's (client is
 * the address as the log names it, "addr:port"; IPv6 by /64), out[dir][1] the proxy's;
 * NULL where the shaper has no such rate. Each is the caller's to np_bucket_put. 0, or -1
 * when out of memory (nothing taken then). */
int np_shaper_get(struct np_shaper *s, const char *client, struct np_bucket *out[2][2]);

#endif
