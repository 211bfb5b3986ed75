/* Deferred calls: "run this on the next loop turn", for many objects through one event. */
#ifndef NP_DEFER_H
#define NP_DEFER_H

struct np_deferred {
    struct np_deferred *prev, *next;
    int queued;
    void (*fn)(struct np_deferred *d);
};

/* Queues d (once: queuing it again before it ran does nothing) to call fn(d) from the loop,
 * after the running callback. */
void np_defer(struct np_deferred *d, void (*fn)(struct np_deferred *d));

/* Takes d off the queue (idempotent). */
void np_defer_cancel(struct np_deferred *d);

#endif
