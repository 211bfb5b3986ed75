/* Deferred calls through one event: a queue of objects to call back on the next loop turn. */
#include "defer.h"
#include "loop.h"

#include <event2/event.h>
#include <event2/event_struct.h>

static struct np_deferred *head, *tail;
static struct event ev;
static int ready;

static void on_turn(evutil_socket_t fd, short what, void *arg)
{
    /* calls may queue more: those run in this turn too, after the ones before them */
    while (head) {
        struct np_deferred *d = head;
        np_defer_cancel(d);
        d->fn(d);
    }
}

void np_defer(struct np_deferred *d, void (*fn)(struct np_deferred *d))
{
    d->fn = fn;
    if (d->queued) return;
    d->queued = 1;
    d->prev = tail;
    d->next = NULL;
    if (tail) tail->next = d;
    else head = d;
    tail = d;
    if (!ready) event_assign(&ev, np_base, -1, 0, on_turn, NULL);
    ready = 1;
    event_active(&ev, EV_TIMEOUT, 0);
}

void np_defer_cancel(struct np_deferred *d)
{
    if (!d->queued) return;
    if (d->prev) d->prev->next = d->next;
    else head = d->next;
    if (d->next) d->next->prev = d->prev;
    else tail = d->prev;
    d->prev = d->next = NULL;
    d->queued = 0;
}
