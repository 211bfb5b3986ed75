/* A relay's bandwidth: a direction may read through token buckets (bucket.h: its own, its
 * source's, its proxy's).
 *
 * Every read, splice included, asks for at most what they all allow, so a shaped direction
 * still splices; when one is short it reads nothing and arms no read event until that
 * bucket's timer gives it its turn (on_turn). */
#include "relay_impl.h"
#include "bucket.h"

#include <stddef.h>
#include <stdlib.h>

/* What the direction's buckets let it read now: the least of them, UNSHAPED without any.
 * 0 when one is short: the direction then queues on that one and reads nothing (no event
 * armed for its reads) until its turn (on_turn). */
size_t np_relay_allowance(struct direction *d)
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
void np_relay_charge(struct direction *d, size_t n)
{
    struct shaped *s = d->shaped;

    if (!s) return;
    for (int i = 0; i < s->nbuckets; i++) np_bucket_take(s->bucket[i], n);
    s->waiter.served += n;
}

/* A bucket's turn for a direction that waited: it reads what it allows, if the socket has
 * anything (else it waits for readability as usual). */
static void on_turn(struct np_bucket_waiter *w)
{
    struct direction *d = ((struct shaped *)((char *)w - offsetof(struct shaped, waiter)))->d;
    struct np_relay *r = d->relay;

    d->starved = 0;
    if (r->halted) return;
    np_relay_pump_both(r, d->from, 0);
    np_relay_settle(r);
}

/* The direction's buckets: the shared ones handed over (the references are the relay's
 * now, and are let go here on failure), then its own at the per_conn rate. 0, or -1 when
 * out of memory. */
int np_relay_shape(struct direction *d, const struct np_relay_config *cfg)
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
void np_relay_put_shared(const struct np_relay_config *cfg)
{
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) np_bucket_put(cfg->shared[i][j]);
}

void np_relay_unshape(struct direction *d)
{
    struct shaped *s = d->shaped;

    if (!s) return;
    np_bucket_cancel(&s->waiter);
    for (int i = 0; i < s->nbuckets; i++) np_bucket_put(s->bucket[i]);
    free(s);
    d->shaped = NULL;
}
